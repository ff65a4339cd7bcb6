/* The librdkafka settings of busgate's own Kafka clients (audit producer,
 * `busgate audit` consumer), built once from kafka.upstream. The consumer
 * used to build its own and left out tls.verify false, so `busgate audit
 * tail` could not connect where busgate could. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "broker/config_kafka_client.h"

/* The value set for key, or NULL. */
static const char *get(const bg_config_kafka_client_t *c, const char *key)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->kv[2 * i], key) == 0)
            return c->kv[2 * i + 1];
    return NULL;
}

static void build(const bg_config_kafka_t *k, bg_config_kafka_client_t *c)
{
    assert_int_equal(bg_config_kafka_client(k, c), 0);
}

static bg_config_kafka_t upstream(bg_security_t sec, int verify)
{
    static bg_addr_t boot[2] = {{.host = "10.0.0.1", .port = 9093},
                                {.host = "::1", .port = 9094}};
    bg_config_kafka_t k = {0};
    k.upstream.bootstrap = boot;
    k.upstream.nbootstrap = 2;
    k.upstream.security = sec;
    k.upstream.sasl_mechanism = "PLAIN";
    k.upstream.sasl_username = "busgate";
    k.upstream.sasl_password = "secret";
    k.upstream.tls.verify = verify;
    k.upstream.tls.ca = "ca.pem";
    k.upstream.tls.cert = "client.pem";
    k.upstream.tls.key = "client.key";
    return k;
}

static void test_tls_without_verification(void **state)
{
    bg_config_kafka_t k = upstream(BG_SEC_SASL_SSL, 0);
    bg_config_kafka_client_t c;
    build(&k, &c);
    assert_string_equal(get(&c, "bootstrap.servers"), "10.0.0.1:9093,[::1]:9094");
    assert_string_equal(get(&c, "security.protocol"), "sasl_ssl");
    assert_string_equal(get(&c, "sasl.mechanism"), "PLAIN");
    assert_string_equal(get(&c, "sasl.username"), "busgate");
    assert_string_equal(get(&c, "sasl.password"), "secret");
    assert_string_equal(get(&c, "enable.ssl.certificate.verification"), "false");
    assert_string_equal(get(&c, "ssl.endpoint.identification.algorithm"), "none");
    assert_string_equal(get(&c, "ssl.ca.location"), "ca.pem");
    assert_string_equal(get(&c, "ssl.certificate.location"), "client.pem");
    assert_string_equal(get(&c, "ssl.key.location"), "client.key");
    bg_config_kafka_client_clear(&c);
}

static void test_tls_verified_by_default(void **state)
{
    bg_config_kafka_t k = upstream(BG_SEC_SSL, 1);
    bg_config_kafka_client_t c;
    build(&k, &c);
    assert_string_equal(get(&c, "security.protocol"), "ssl");
    assert_null(get(&c, "enable.ssl.certificate.verification"));
    assert_null(get(&c, "ssl.endpoint.identification.algorithm"));
    bg_config_kafka_client_clear(&c);
}

/* verify false means nothing without TLS; absent settings are not set. */
static void test_plaintext(void **state)
{
    bg_config_kafka_t k = upstream(BG_SEC_PLAINTEXT, 0);
    k.upstream.sasl_mechanism = k.upstream.sasl_username = k.upstream.sasl_password = NULL;
    k.upstream.tls.ca = k.upstream.tls.cert = k.upstream.tls.key = NULL;
    bg_config_kafka_client_t c;
    build(&k, &c);
    assert_int_equal(c.n, 2);
    assert_string_equal(get(&c, "security.protocol"), "plaintext");
    assert_string_equal(get(&c, "bootstrap.servers"), "10.0.0.1:9093,[::1]:9094");
    bg_config_kafka_client_clear(&c);
}

/* A long bootstrap list (here about 5 KiB) reaches librdkafka whole: it
 * was cut at 2047 bytes, in the middle of a host name. */
static void test_long_bootstrap_not_truncated(void **state)
{
    enum { N = 100 };
    static char hosts[N][64];
    static bg_addr_t boot[N];
    char want[N * 80] = "";
    size_t len = 0;
    for (size_t i = 0; i < N; i++) {
        snprintf(hosts[i], sizeof hosts[i], "kafka-broker-%03zu.a-long-zone.example.internal", i);
        boot[i] = (bg_addr_t){.host = hosts[i], .port = (uint16_t)(9092 + i)};
        len += (size_t)snprintf(want + len, sizeof want - len, "%s%s:%zu", i ? "," : "", hosts[i],
                                9092 + i);
    }
    bg_config_kafka_t k = upstream(BG_SEC_PLAINTEXT, 1);
    k.upstream.bootstrap = boot;
    k.upstream.nbootstrap = N;
    bg_config_kafka_client_t c;
    build(&k, &c);
    assert_true(strlen(want) > 4096);
    assert_string_equal(get(&c, "bootstrap.servers"), want);
    bg_config_kafka_client_clear(&c);
}

/* The SCRAM warning: an audit topic read and written through a librdkafka
 * older than 2.6.1 with a SCRAM upstream login (Kafka 4.x refuses it as
 * invalid credentials, while the data path logs in: the examples' own
 * configuration hit it against Kafka 4.x). */
static const char *scram_warning(const char *mech, const char *topic, int enabled, int version)
{
    static char buf[512];
    bg_config_t c = {0};
    c.kafka.enabled = 1;
    c.kafka.upstream.sasl_mechanism = (char *)mech;
    c.audit.enabled = enabled;
    c.audit.kafka_topic = (char *)topic;
    memset(buf, 'x', sizeof buf);
    return bg_config_kafka_client_scram_warning(&c, version, buf, sizeof buf);
}

static void test_scram_warning_for_an_old_librdkafka(void **state)
{
    const char *w = scram_warning("SCRAM-SHA-512", "busgate.audit", 1, 0x020002ff); /* 2.0.2 */
    assert_non_null(w);
    assert_non_null(strstr(w, "audit.kafka_topic: "));
    assert_non_null(strstr(w, "kafka.upstream.sasl SCRAM-SHA-512 through librdkafka 2.0.2,"));
    assert_non_null(strstr(w, "Kafka 4.x refuses as invalid credentials"));
    assert_non_null(scram_warning("SCRAM-SHA-256", "t", 1, 0x020002ff));
    /* 2.6.0 still has the bug (a release and a release candidate of it);
     * 2.6.1, its candidates and later ones do not. */
    assert_non_null(w = scram_warning("SCRAM-SHA-256", "t", 1, 0x020600ff));
    assert_non_null(strstr(w, "librdkafka 2.6.0,"));
    assert_non_null(scram_warning("SCRAM-SHA-256", "t", 1, 0x020600fe));
    assert_null(scram_warning("SCRAM-SHA-256", "t", 1, 0x02060100));
    assert_null(scram_warning("SCRAM-SHA-256", "t", 1, 0x020601ff));
    assert_null(scram_warning("SCRAM-SHA-512", "t", 1, 0x020c01ff));
}

/* Nothing to warn about: PLAIN or no SASL (librdkafka's PLAIN works), no
 * audit topic (a file sink: no librdkafka client logs in), audit off. */
static void test_no_scram_warning_otherwise(void **state)
{
    assert_null(scram_warning("PLAIN", "t", 1, 0x020002ff));
    assert_null(scram_warning(NULL, "t", 1, 0x020002ff));
    assert_null(scram_warning("SCRAM-SHA-512", NULL, 1, 0x020002ff));
    assert_null(scram_warning("SCRAM-SHA-512", "t", 0, 0x020002ff));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls_without_verification),
        cmocka_unit_test(test_tls_verified_by_default),
        cmocka_unit_test(test_plaintext),
        cmocka_unit_test(test_long_bootstrap_not_truncated),
        cmocka_unit_test(test_scram_warning_for_an_old_librdkafka),
        cmocka_unit_test(test_no_scram_warning_otherwise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
