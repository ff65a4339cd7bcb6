/* One builder for the librdkafka settings of busgate's own Kafka clients:
 * the runtime's audit producer and the CLI's consumer once built them
 * apart, and the CLI missed tls.verify false (see the header). */
#include "broker/config_kafka_client.h"

#include <stdio.h>
#include <stdlib.h>
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

/* "host:port,[v6]:port,..." in a malloc'd string as long as the list
 * needs (a long bootstrap list cut at a fixed size would leave librdkafka a
 * partial host name). NULL when out of memory. */
static char *bg_config_kafka_client__join(const bg_config_kafka_t *k)
{
    size_t cap = 1, len = 0;
    for (size_t i = 0; i < k->upstream.nbootstrap; i++) /* ",[" host "]:" 65535 */
        cap += strlen(k->upstream.bootstrap[i].host) + 10;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    s[0] = '\0';
    for (size_t i = 0; i < k->upstream.nbootstrap; i++) {
        const bg_addr_t *a = &k->upstream.bootstrap[i];
        int v6 = strchr(a->host, ':') != NULL;
        len += (size_t)snprintf(s + len, cap - len, "%s%s%s%s:%u", i ? "," : "", v6 ? "[" : "",
                                a->host, v6 ? "]" : "", a->port);
    }
    return s;
}

int bg_config_kafka_client(const bg_config_kafka_t *k, bg_config_kafka_client_t *out)
{
    memset(out, 0, sizeof *out);
    if (!(out->bootstrap = bg_config_kafka_client__join(k)))
        return -1;
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
    return 0;
}

void bg_config_kafka_client_clear(bg_config_kafka_client_t *out)
{
    free(out->bootstrap);
    out->bootstrap = NULL;
}

const char *bg_config_kafka_client_scram_warning(const bg_config_t *c, int version, char *buf,
                                                 size_t cap)
{
    const char *m = c->kafka.upstream.sasl_mechanism;
    if (!c->audit.enabled || !c->audit.kafka_topic || !c->kafka.enabled || !m ||
        strncmp(m, "SCRAM-", 6) != 0 || version >= BG_CONFIG_KAFKA_CLIENT_SCRAM_FIXED)
        return NULL;
    snprintf(buf, cap,
             "audit.kafka_topic: the audit producer and `busgate audit` log in with "
             "kafka.upstream.sasl %s through librdkafka %d.%d.%d, which Kafka 4.x refuses as "
             "invalid credentials (librdkafka before 2.6.1 answers SCRAM's nonce wrongly; "
             "busgate's own data path is not affected): use PLAIN over TLS (security: "
             "sasl_ssl), a Kafka before 4.0, or build busgate with librdkafka 2.6.1 or newer",
             m, (version >> 24) & 0xff, (version >> 16) & 0xff, (version >> 8) & 0xff);
    return buf;
}
