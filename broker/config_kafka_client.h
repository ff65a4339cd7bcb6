/* The librdkafka settings of busgate's own Kafka clients, the audit
 * producer (runtime) and the `busgate audit` consumer (CLI), built in one
 * place from kafka.upstream so both reach the brokers the way the data
 * path does (same security protocol, credential, TLS files and TLS
 * verification). Pure: no librdkafka, no I/O. */
#ifndef BG_CONFIG_KAFKA_CLIENT_H
#define BG_CONFIG_KAFKA_CLIENT_H

#include <stddef.h>

#include "broker/config.h"

#define BG_CONFIG_KAFKA_CLIENT_MAX 10 /* key/value pairs at most */

typedef struct bg_config_kafka_client_s {
    char *bootstrap; /* "host:port,[v6]:port", malloc'd to size: never cut */
    /* kv[2i] = librdkafka key, kv[2i+1] = value; values point into the
     * config (or bootstrap above). sasl.password is among them: never log
     * a value. */
    const char *kv[2 * BG_CONFIG_KAFKA_CLIENT_MAX];
    size_t n; /* pairs */
} bg_config_kafka_client_t;

/* Fills out from k->upstream: bootstrap.servers, security.protocol, the
 * SASL mechanism and credential when set, and for TLS the CA, certificate
 * and key files and, with tls.verify false, certificate and host name
 * verification off. out borrows from k: valid while k is; out->bootstrap
 * is its own (release with bg_config_kafka_client_clear, also after a
 * failure). 0, or -1 when out of memory. Any thread. */
int bg_config_kafka_client(const bg_config_kafka_t *k, bg_config_kafka_client_t *out)
    __attribute__((warn_unused_result));
/* Frees what bg_config_kafka_client allocated; out may be zeroed. */
void bg_config_kafka_client_clear(bg_config_kafka_client_t *out);

/* The librdkafka that answers a SCRAM login right: older ones send the
 * server's nonce with the client's appended again (confluentinc/librdkafka
 * #4895, fixed in 2.6.1). Kafka 4.x checks the nonce strictly and refuses
 * that login as invalid credentials; busgate's own SCRAM client (the data
 * path) is not affected. As rd_kafka_version() gives it: 0xMMmmrrpp. */
#define BG_CONFIG_KAFKA_CLIENT_SCRAM_FIXED 0x02060100

/* The warning `busgate run` logs at start-up and `busgate check` prints
 * when busgate's librdkafka clients (the audit producer, `busgate audit`
 * reading audit.kafka_topic) log in with a SCRAM kafka.upstream.sasl
 * through a librdkafka (version: rd_kafka_version()) older than
 * BG_CONFIG_KAFKA_CLIENT_SCRAM_FIXED; written into buf (cap bytes), which
 * is returned. NULL when it does not apply (no audit topic, no SCRAM, or a
 * fixed librdkafka). */
const char *bg_config_kafka_client_scram_warning(const bg_config_t *c, int version, char *buf,
                                                 size_t cap);

#endif
