/* One builder for the librdkafka settings of busgate's own Kafka clients:
 * the runtime's audit producer and the CLI's consumer once built them
 * apart, and the CLI missed tls.verify false (see the header). */
#include "broker/config_kafka_client.h"

#include <stdio.h>
#include <string.h>

static const char *bg_config_kafka_client__security(bg_security_t s)
{
    switch (s) {
    case BG_SEC_SASL_PLAINTEXT: return "sasl_plaintext";
    case BG_SEC_SSL: return "ssl";
    case BG_SEC_SASL_SSL: return "sasl_ssl";
    default: return "plaintext";
    }
}

static void bg_config_kafka_client__add(bg_config_kafka_client_t *out, const char *k,
                                        const char *v)
{
    if (!v || out->n == BG_CONFIG_KAFKA_CLIENT_MAX)
        return;
    out->kv[2 * out->n] = k;
    out->kv[2 * out->n + 1] = v;
    out->n++;
}

void bg_config_kafka_client(const bg_config_kafka_t *k, bg_config_kafka_client_t *out)
{
    size_t len = 0;
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < k->upstream.nbootstrap && len < sizeof out->bootstrap; i++) {
        const bg_addr_t *a = &k->upstream.bootstrap[i];
        int v6 = strchr(a->host, ':') != NULL;
        len += (size_t)snprintf(out->bootstrap + len, sizeof out->bootstrap - len, "%s%s%s%s:%u",
                                i ? "," : "", v6 ? "[" : "", a->host, v6 ? "]" : "", a->port);
    }
    bg_security_t sec = k->upstream.security;
    bg_config_kafka_client__add(out, "bootstrap.servers", out->bootstrap);
    bg_config_kafka_client__add(out, "security.protocol", bg_config_kafka_client__security(sec));
    bg_config_kafka_client__add(out, "sasl.mechanism", k->upstream.sasl_mechanism);
    bg_config_kafka_client__add(out, "sasl.username", k->upstream.sasl_username);
    bg_config_kafka_client__add(out, "sasl.password", k->upstream.sasl_password);
    /* Trust the brokers exactly as the data path does. */
    if (!k->upstream.tls.verify && (sec == BG_SEC_SSL || sec == BG_SEC_SASL_SSL)) {
        bg_config_kafka_client__add(out, "enable.ssl.certificate.verification", "false");
        bg_config_kafka_client__add(out, "ssl.endpoint.identification.algorithm", "none");
    }
    bg_config_kafka_client__add(out, "ssl.ca.location", k->upstream.tls.ca);
    bg_config_kafka_client__add(out, "ssl.certificate.location", k->upstream.tls.cert);
    bg_config_kafka_client__add(out, "ssl.key.location", k->upstream.tls.key);
}
