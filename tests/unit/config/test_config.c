/* Configuration loader: the shipped examples load, defaults apply, and each
 * kind of mistake is reported at its exact FILE:LINE:COL with its key path.
 * Temporary files go under $BG_BINARY_DIR (set by ctest). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker/config.h"

/* identity on lines 1-5, kafka on lines 6-8: tests append from line 9. */
#define BASE_ID                                                                                    \
    "identity:\n"                                                                                  \
    "  issuers:\n"                                                                                 \
    "    - issuer: https://idp.example\n"                                                          \
    "      audiences: [busgate]\n"                                                                 \
    "      jwks_file: jwks.json\n"
#define BASE_KAFKA                                                                                 \
    "kafka:\n"                                                                                     \
    "  listen: 127.0.0.1:19092\n"                                                                  \
    "  upstream: {embedded: 1}\n"
#define BASE BASE_ID BASE_KAFKA

static bg_config_t *load_as_is(const char *yaml, bg_config_errors_t *errs)
{
    return bg_config_load_string("t.yaml", yaml, strlen(yaml), errs);
}

/* 1 when yaml has a line that starts with text. */
static int has_line(const char *yaml, const char *text)
{
    size_t n = strlen(text);
    for (const char *p = yaml; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, text, n) == 0)
            return 1;
    return 0;
}

/* Loads yaml; a listener with no audit section gets `audit: {enabled:
 * false}` appended, so that tests about other sections need not repeat it
 * (at the end: the positions they expect do not move). Not after a
 * document marker (a second document would be tested). Tests of the audit
 * rules write their own section or use load_as_is. */
static bg_config_t *load(const char *yaml, bg_config_errors_t *errs)
{
    size_t len = strlen(yaml);
    if (len == 0 || yaml[len - 1] != '\n' || has_line(yaml, "audit:") ||
        !(has_line(yaml, "kafka:") || has_line(yaml, "amqp:")) || has_line(yaml, "---") ||
        has_line(yaml, "..."))
        return load_as_is(yaml, errs);
    char *full = NULL;
    assert_true(asprintf(&full, "%saudit: {enabled: false}\n", yaml) > 0);
    bg_config_t *c = load_as_is(full, errs);
    free(full);
    return c;
}

static void dump(const bg_config_errors_t *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        fprintf(stderr, "  error: %s\n", errs->msgs[i]);
}

/* Asserts that loading (with ld) fails and one error message starts with
 * want. */
static void expect_error_by(bg_config_t *(*ld)(const char *, bg_config_errors_t *),
                            const char *yaml, const char *want)
{
    bg_config_errors_t errs = {0};
    bg_config_t *c = ld(yaml, &errs);
    int found = 0;
    for (size_t i = 0; i < errs.n; i++)
        found |= strncmp(errs.msgs[i], want, strlen(want)) == 0;
    if (!found || c) {
        fprintf(stderr, "expected an error starting with: %s\n", want);
        dump(&errs);
    }
    assert_null(c);
    assert_true(found);
    bg_config_errors_clear(&errs);
}

static void expect_error(const char *yaml, const char *want)
{
    expect_error_by(load, yaml, want);
}

static bg_config_t *expect_ok(const char *yaml)
{
    bg_config_errors_t errs = {0};
    bg_config_t *c = load(yaml, &errs);
    dump(&errs);
    assert_non_null(c);
    assert_int_equal(errs.n, 0);
    return c;
}

static char *src_path(const char *rel)
{
    const char *src = getenv("BG_SOURCE_DIR");
    char *p = NULL;
    assert_non_null(src);
    assert_true(asprintf(&p, "%s/%s", src, rel) > 0);
    return p;
}

/* A fresh directory under the build tree for files a test writes. */
static char *tmp_dir(void)
{
    const char *bin = getenv("BG_BINARY_DIR");
    char *p = NULL;
    assert_non_null(bin);
    assert_true(asprintf(&p, "%s/config-test-XXXXXX", bin) > 0);
    assert_non_null(mkdtemp(p));
    return p;
}

static char *write_file(const char *dir, const char *name, const char *content)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    return p;
}

/* ---- the examples ---- */

static void test_example_loads(void **state)
{
    char *path = src_path("examples/busgate.yaml"), *jwks = src_path("examples/idp-jwks.json");
    char *spool = src_path("examples/spool");
    bg_config_errors_t errs = {0};
    bg_config_t *c = bg_config_load(path, &errs);
    dump(&errs);
    assert_non_null(c);
    assert_string_equal(c->identity.issuers[0].jwks_file, jwks);
    assert_int_equal(c->identity.issuers[0].jwks_refresh_ms, 5 * 60000);
    assert_int_equal(c->kafka.listen.port, 19092);
    assert_int_equal(c->kafka.broker_port_base, 19100);
    assert_int_equal(c->kafka.upstream.security, BG_SEC_SASL_PLAINTEXT);
    assert_string_equal(c->kafka.upstream.sasl_mechanism, "SCRAM-SHA-512");
    /* ${file:} relative to the example, trailing newline dropped */
    assert_string_equal(c->kafka.upstream.sasl_password, "dev-kafka-password-change-me");
    assert_string_equal(c->amqp.upstream.password, "dev-rabbit-password-change-me");
    assert_int_equal(c->amqp.heartbeat_s, 60);
    assert_int_equal(c->http.nroutes, 1);
    assert_string_equal(c->http.routes[0].headers[0].value,
                        "Bearer dev-users-api-token-change-me");
    assert_int_equal(c->policy.spec.nrules, 6);
    assert_int_equal(c->policy.rules[5].effect, BG_EFFECT_HOLD);
    assert_int_equal(c->policy.rules[5].napprovers, 1);
    assert_int_equal(c->policy.rules[3].mode, BG_MODE_INHERIT);
    assert_int_equal(c->policy.rules[4].mode, BG_MODE_AUDIT); /* the dry-run deny */
    assert_int_equal(c->policy.rules[4].effect, BG_EFFECT_DENY);
    assert_int_equal(c->policy.rules[0].verbs, (1u << BG_VERB_READ) | (1u << BG_VERB_DESCRIBE));
    assert_int_equal(c->policy.spec.nmasks, 1);
    assert_int_equal(c->policy.masks[0].nfields, 3);
    assert_string_equal(c->audit.spool_dir, spool);
    assert_int_equal(c->audit.spool_max_bytes, 1ull << 30);
    assert_true(c->approvals.enabled && c->admin.enabled && c->amqp.enabled);
    bg_config_free(c);
    free(path);
    free(jwks);
    free(spool);
}

static void test_quickstart_loads(void **state)
{
    char *path = src_path("examples/quickstart.yaml");
    bg_config_errors_t errs = {0};
    bg_config_t *c = bg_config_load(path, &errs);
    dump(&errs);
    assert_non_null(c);
    assert_int_equal(c->kafka.upstream.embedded, 3);
    assert_int_equal(c->kafka.upstream.nbootstrap, 0);
    assert_true(c->policy.enabled);
    assert_true(c->admin.enabled);
    assert_non_null(c->audit.file);
    assert_false(c->amqp.enabled || c->http.enabled || c->approvals.enabled);
    bg_config_free(c);
    free(path);
}

static void test_defaults(void **state)
{
    bg_config_t *c = expect_ok(BASE);
    const bg_config_issuer_t *is = &c->identity.issuers[0];
    assert_int_equal(c->identity.clock_skew_ms, 30000);
    assert_int_equal(is->jwks_refresh_ms, 300000);
    assert_string_equal(is->subject_claim, "sub");
    assert_string_equal(is->groups_claim, "groups");
    assert_string_equal(is->subject_prefix, "");
    assert_string_equal(is->groups_prefix, "");
    assert_int_equal(is->allow_hs256, 0);
    assert_string_equal(c->kafka.advertised_host, "127.0.0.1");
    assert_int_equal(c->kafka.broker_port_base, 19093);
    assert_int_equal(c->kafka.sasl_mechanisms, BG_SASL_MECH_OAUTHBEARER | BG_SASL_MECH_PLAIN);
    assert_int_equal(c->kafka.max_frame_bytes, 100u << 20);
    assert_int_equal(c->kafka.preauth_max_frame_bytes, 64u << 10);
    assert_int_equal(c->kafka.max_response_bytes, 256u << 20);
    assert_int_equal(c->kafka.max_inflight, 100);
    assert_int_equal(c->kafka.idle_timeout_ms, 600000);
    assert_int_equal(c->kafka.upstream.security, BG_SEC_PLAINTEXT);
    assert_false(c->amqp.enabled || c->http.enabled || c->policy.enabled ||
                 c->approvals.enabled || c->audit.enabled || c->admin.enabled);
    assert_string_equal(c->log_level, "info");
    assert_int_equal(c->workers, 0);
    assert_true(c->instance && *c->instance);
    assert_string_equal(c->path, "t.yaml");
    bg_config_free(c);
}

static void test_sizes_and_lists(void **state)
{
    bg_config_t *c = expect_ok(BASE "  max_frame_bytes: 1MiB\n"
                                    "  preauth_max_frame_bytes: 4096\n"
                                    "  max_response_bytes: 64KiB\n" /* not tied to requests */
                                    "  sasl_mechanisms: [PLAIN]\n"
                                    "workers: 4\n"
                                    "log_level: debug\n");
    assert_int_equal(c->kafka.max_frame_bytes, 1u << 20);
    assert_int_equal(c->kafka.preauth_max_frame_bytes, 4096);
    assert_int_equal(c->kafka.max_response_bytes, 64u << 10);
    assert_int_equal(c->kafka.sasl_mechanisms, BG_SASL_MECH_PLAIN);
    assert_int_equal(c->workers, 4);
    assert_string_equal(c->log_level, "debug");
    bg_config_free(c);
}

/* A reload says which restart-only sections changed: the hash of each
 * changes with any value in it, not with layout or comments, and sections
 * that apply on reload (policy, identity, log_level) have none. */
static void test_restart_hashes(void **state)
{
    bg_config_t *a = expect_ok(BASE "log_level: info\n");
    bg_config_t *same = expect_ok(BASE_ID "# a comment\nkafka:\n  listen:   127.0.0.1:19092\n"
                                          "  upstream:\n    embedded: 1\nlog_level: debug\n"
                                          "policy: {default: allow}\n");
    bg_config_t *other = expect_ok(BASE "  max_inflight: 7\nworkers: 2\n");
    const char *changed[BG_CONFIG_RESTART_SECTIONS] = {0};
    for (size_t i = 0; i < BG_CONFIG_RESTART_SECTIONS; i++) {
        assert_true(a->restart_hash[i] == same->restart_hash[i]);
        if (a->restart_hash[i] != other->restart_hash[i])
            changed[i] = bg_config_restart_section(i);
    }
    assert_string_equal(changed[0], "workers");
    assert_string_equal(changed[1], "kafka");
    for (size_t i = 2; i < BG_CONFIG_RESTART_SECTIONS; i++)
        assert_null(changed[i]);
    assert_int_equal(a->restart_hash[2], 0); /* amqp absent */
    bg_config_free(a);
    bg_config_free(same);
    bg_config_free(other);
}

/* limits: defaults with the section absent; each key read; a change is a
 * restart-only change; out-of-range values are errors at their key. */
static void test_limits(void **state)
{
    bg_config_t *d = expect_ok(BASE);
    assert_int_equal(d->limits.max_connections, 0); /* derived at start-up */
    assert_int_equal(d->limits.max_unauthenticated, 1024);
    assert_int_equal(d->limits.max_unauthenticated_per_ip, 64);
    assert_int_equal(d->limits.fd_reserve, 128);
    bg_config_t *c = expect_ok(BASE "limits:\n  max_connections: 500\n"
                                    "  max_unauthenticated: 40\n"
                                    "  max_unauthenticated_per_ip: 0\n  fd_reserve: 32\n");
    assert_int_equal(c->limits.max_connections, 500);
    assert_int_equal(c->limits.max_unauthenticated, 40);
    assert_int_equal(c->limits.max_unauthenticated_per_ip, 0);
    assert_int_equal(c->limits.fd_reserve, 32);
    size_t changed = 0;
    for (size_t i = 0; i < BG_CONFIG_RESTART_SECTIONS; i++)
        if (d->restart_hash[i] != c->restart_hash[i]) {
            assert_string_equal(bg_config_restart_section(i), "limits");
            changed++;
        }
    assert_int_equal(changed, 1);
    bg_config_free(d);
    bg_config_free(c);
    expect_error(BASE "limits: {max_connections: 0}\n",
                 "t.yaml:9:27: limits.max_connections: expected an integer between 1 and");
    expect_error(BASE "limits: {max_unauthenticated: 0}\n",
                 "t.yaml:9:31: limits.max_unauthenticated: expected an integer between 1 and");
    expect_error(BASE "limits: {fd_reserve: -1}\n",
                 "t.yaml:9:22: limits.fd_reserve: expected an integer between 0 and");
    expect_error(BASE "limits: {max_conections: 5}\n",
                 "t.yaml:9:10: limits.max_conections: unknown key");
}

/* ---- parsers ---- */

static void test_parse_duration(void **state)
{
    static const struct {
        const char *s;
        int64_t ms;
    } cases[] = {{"250ms", 250}, {"30s", 30000},  {"5m", 300000},  {"1h", 3600000},
                 {"2d", 172800000}, {"0", 0},     {"0s", 0},       {"30", -1},
                 {"30x", -1},    {"", -1},        {"s", -1},       {"-1s", -1},
                 {"1.5s", -1},   {"1 s", -1},     {"99999999999999999999d", -1},
                 {"9999999999999999d", -1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (bg_config_parse_duration(cases[i].s) != cases[i].ms)
            fprintf(stderr, "duration '%s'\n", cases[i].s);
        assert_int_equal(bg_config_parse_duration(cases[i].s), cases[i].ms);
    }
    assert_int_equal(bg_config_parse_duration(NULL), -1);
}

static void test_parse_addr(void **state)
{
    static const struct {
        const char *s, *host;
        int port;
        const char *why;
    } cases[] = {
        {"127.0.0.1:9092", "127.0.0.1", 9092, NULL},
        {"[::1]:80", "::1", 80, NULL},
        {"kafka-1.example_x:1", "kafka-1.example_x", 1, NULL},
        {"0.0.0.0:0", "0.0.0.0", 0, NULL},
        {"127.0.0.1:65535", "127.0.0.1", 65535, NULL},
        /* one past the last port: not port 0 (a listener on a port the
         * kernel picks) */
        {"127.0.0.1:65536", NULL, 0, "port out of range"},
        {"127.0.0.1:99999", NULL, 0, "port out of range"},
        {"127.0.0.1:655350", NULL, 0, "port out of range"},
        {"127.0.0.1", NULL, 0, "missing port"},
        {"127.0.0.1:", NULL, 0, "missing port"},
        {"::1:80", NULL, 0, "an IPv6 address needs brackets"},
        {":80", NULL, 0, "missing host"},
        {"[::1]", NULL, 0, "missing port"},
        {"[zz]:80", NULL, 0, "bad IPv6 address"},
        {"256.1.1.1:80", NULL, 0, "bad IPv4 address"},
        {"host:8a", NULL, 0, "bad port"},
        {"ho st:80", NULL, 0, "bad character"},
        {"", NULL, 0, "empty address"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bg_addr_t a = {0};
        const char *why = NULL;
        int r = bg_config_parse_addr(cases[i].s, &a, &why);
        if (cases[i].host) {
            assert_int_equal(r, 0);
            assert_string_equal(a.host, cases[i].host);
            assert_int_equal(a.port, cases[i].port);
            free(a.host);
        } else {
            if (r == 0 || strncmp(why, cases[i].why, strlen(cases[i].why)) != 0)
                fprintf(stderr, "addr '%s': %s\n", cases[i].s, why ? why : "(ok)");
            assert_int_equal(r, -1);
            assert_null(a.host);
            assert_memory_equal(why, cases[i].why, strlen(cases[i].why));
        }
    }
}

/* ---- one negative test per kind of error ---- */

static void test_err_unknown_key(void **state)
{
    expect_error(BASE "  listn: 1\n", "t.yaml:9:3: kafka.listn: unknown key 'listn' (allowed: listen,");
    expect_error(BASE "kafak: {}\n", "t.yaml:9:1: kafak: unknown key 'kafak' (allowed: workers,");
    /* A key is known by its whole name, not by being the start of one. */
    expect_error(BASE "  max_in: 5\n", "t.yaml:9:3: kafka.max_in: unknown key 'max_in'");
    expect_error(BASE "work: 4\n", "t.yaml:9:1: work: unknown key 'work'");
}

static void test_err_wrong_type(void **state)
{
    expect_error(BASE "workers: many\n",
                 "t.yaml:9:10: workers: expected an integer between 0 and 256, got 'many'");
    expect_error(BASE "  max_inflight: [1]\n",
                 "t.yaml:9:18: kafka.max_inflight: expected an integer, got a sequence");
    expect_error(BASE_KAFKA "identity: [a]\n",
                 "t.yaml:4:12: identity: expected a mapping, got a sequence");
    expect_error(BASE_KAFKA "identity:\n  issuers: https://idp\n",
                 "t.yaml:5:12: identity.issuers: expected a sequence, got a scalar");
    expect_error(BASE "admin: {listen: {a: b}}\n",
                 "t.yaml:9:18: admin.listen: expected an address (host:port), got a mapping");
    expect_error(BASE_KAFKA "identity:\n  issuers:\n    - issuer: i\n      audiences: [a]\n"
                            "      jwks_file: j\n      allow_hs256: yes\n",
                 "t.yaml:9:20: identity.issuers[0].allow_hs256: expected a bool (true or false), "
                 "got 'yes'");
}

static void test_err_duration(void **state)
{
    expect_error(BASE "  idle_timeout: 30x\n",
                 "t.yaml:9:17: kafka.idle_timeout: bad duration '30x'");
    expect_error(BASE "  idle_timeout: 30\n", "t.yaml:9:17: kafka.idle_timeout: bad duration '30'");
}

/* Every duration has one ceiling: a huge jwks_refresh overflowed the
 * refresh schedule (mono_ms() + refresh_ms). */
static void test_err_duration_too_long(void **state)
{
    bg_config_t *c = expect_ok(BASE "  idle_timeout: 365d\n  auth_timeout: 8760h\n");
    assert_int_equal(c->kafka.idle_timeout_ms, 365LL * 86400 * 1000);
    assert_int_equal(c->kafka.auth_timeout_ms, 365LL * 86400 * 1000);
    bg_config_free(c);
    expect_error(BASE "  idle_timeout: 366d\n",
                 "t.yaml:9:17: kafka.idle_timeout: duration '366d' is too long (at most 365d)");
    expect_error(BASE "  auth_timeout: 31536000001ms\n",
                 "t.yaml:9:17: kafka.auth_timeout: duration '31536000001ms' is too long");
    expect_error(BASE_KAFKA "identity:\n  issuers:\n    - issuer: i\n      audiences: [a]\n"
                            "      jwks_file: j\n      jwks_refresh: 9223372036854775000ms\n",
                 "t.yaml:9:21: identity.issuers[0].jwks_refresh: duration "
                 "'9223372036854775000ms' is too long (at most 365d)");
    expect_error(BASE "approvals:\n  grant_ttl: 100000d\n",
                 "t.yaml:10:14: approvals.grant_ttl: duration '100000d' is too long");
    expect_error(BASE "approvals:\n  hold_for: 9999h\n",
                 "t.yaml:10:13: approvals.hold_for: duration '9999h' is too long");
}

/* jwks_ca: the CA file for jwks_url's https, a path like any other file
 * (relative to the configuration's directory); meaningless, so refused,
 * beside jwks_file. */
static void test_jwks_ca(void **state)
{
    bg_config_t *c = expect_ok(BASE_KAFKA "identity:\n  issuers:\n    - issuer: i\n"
                                          "      audiences: [a]\n"
                                          "      jwks_url: https://idp.example/jwks\n"
                                          "      jwks_ca: /etc/busgate/idp-ca.pem\n");
    assert_string_equal(c->identity.issuers[0].jwks_ca, "/etc/busgate/idp-ca.pem");
    bg_config_free(c);
    c = expect_ok(BASE);
    assert_null(c->identity.issuers[0].jwks_ca);
    bg_config_free(c);
    expect_error(BASE_KAFKA "identity:\n  issuers:\n    - issuer: i\n      audiences: [a]\n"
                            "      jwks_file: j\n      jwks_ca: /etc/busgate/idp-ca.pem\n",
                 "t.yaml:9:16: identity.issuers[0].jwks_ca: is the CA for jwks_url's https: set "
                 "jwks_url, or remove it");
}

static void test_err_address(void **state)
{
    expect_error(BASE_ID "kafka:\n  listen: 127.0.0.1:99999\n  upstream: {embedded: 1}\n",
                 "t.yaml:7:11: kafka.listen: bad address '127.0.0.1:99999': port out of range");
    expect_error(BASE_ID "kafka:\n  listen: 127.0.0.1\n  upstream: {embedded: 1}\n",
                 "t.yaml:7:11: kafka.listen: bad address '127.0.0.1': missing port");
    expect_error(BASE_ID "kafka:\n  listen: 127.0.0.1:1\n  upstream: {bootstrap: [a:1, b:0]}\n",
                 "t.yaml:8:31: kafka.upstream.bootstrap[1]: bad address 'b:0': port 0 is only");
}

static void test_err_size(void **state)
{
    expect_error(BASE "  max_frame_bytes: 10 parsecs\n",
                 "t.yaml:9:20: kafka.max_frame_bytes: bad size '10 parsecs'");
    expect_error(BASE "  max_frame_bytes: 1MiB\n  preauth_max_frame_bytes: 2MiB\n",
                 "t.yaml:10:28: kafka.preauth_max_frame_bytes: size 2097152 is out of range");
    expect_error(BASE "  max_response_bytes: 1KiB\n",
                 "t.yaml:9:23: kafka.max_response_bytes: size 1024 is out of range");
    expect_error(BASE "  max_response_bytes: 2GiB\n",
                 "t.yaml:9:23: kafka.max_response_bytes: size 2147483648 is out of range");
}

#define POLICY_HDR "policy:\n  rules:\n" /* lines 9-10 */
#define RULE(name, verbs, effect)                                                                  \
    "    - name: " name "\n"                                                                       \
    "      subjects: [group:g]\n"                                                                  \
    "      resources: [kafka:topic:t]\n"                                                           \
    "      verbs: " verbs "\n"                                                                     \
    "      effect: " effect "\n"

static void test_policy_ok(void **state)
{
    bg_config_t *c = expect_ok(BASE POLICY_HDR RULE("a", "[read, write]", "allow")
                                   RULE("b", "[delete]", "deny"));
    assert_true(c->policy.enabled);
    assert_int_equal(c->policy.spec.nrules, 2);
    assert_int_equal(c->policy.spec.default_effect, BG_EFFECT_DENY);
    assert_int_equal(c->policy.spec.mode, BG_MODE_ENFORCE);
    assert_int_equal(c->policy.rules[0].line, 11);
    assert_int_equal(c->policy.rules[1].line, 16);
    assert_string_equal(c->policy.rules[1].file, "t.yaml");
    assert_int_equal(c->policy.rules[1].mode, BG_MODE_INHERIT);
    assert_string_equal(c->policy.rules[0].subjects[0], "group:g");
    bg_config_free(c);
}

static void test_err_duplicate_rule(void **state)
{
    expect_error(BASE POLICY_HDR RULE("a", "[read]", "allow") RULE("a", "[read]", "allow"),
                 "t.yaml:16:13: policy.rules[1].name: duplicate rule name 'a' (first defined at "
                 "line 11)");
}

/* Asserts that loading fails with exactly the messages want, in order. */
static void expect_errors(const char *yaml, const char *const *want, size_t n)
{
    bg_config_errors_t errs = {0};
    bg_config_t *c = load(yaml, &errs);
    if (errs.n != n)
        dump(&errs);
    assert_null(c);
    assert_int_equal(errs.n, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(errs.msgs[i], want[i]);
    bg_config_errors_clear(&errs);
}

/* Each repeated name is reported once per earlier use, earliest first, at
 * the repeat (rules, masks, issuers, routes). */
static void test_err_duplicate_names_all_reported(void **state)
{
    static const char *const policy[] = {
        "t.yaml:21:13: policy.rules[2].name: duplicate rule name 'a' (first defined at line 11)",
        "t.yaml:26:13: policy.rules[3].name: duplicate rule name 'a' (first defined at line 11)",
        "t.yaml:26:13: policy.rules[3].name: duplicate rule name 'a' (first defined at line 21)",
        "t.yaml:35:13: policy.masks[1].name: duplicate mask name 'm' (first defined at line 32)",
    };
    expect_errors(BASE POLICY_HDR RULE("a", "[read]", "allow") RULE("b", "[read]", "allow")
                      RULE("a", "[read]", "allow") RULE("a", "[read]", "allow")
                  "  masks:\n"
                  "    - name: m\n      resources: [kafka:topic:t]\n      fields: [a]\n"
                  "    - name: m\n      resources: [kafka:topic:t]\n      fields: [a]\n",
                  policy, 4);
#define ISS(i) "    - {issuer: " i ", audiences: [b], jwks_file: j.json}\n"
#define RT(r) "    - {name: " r ", prefix: /, upstream: https://up.example}\n"
    static const char *const sections[] = {
        "t.yaml:5:8: identity.issuers[2]: duplicate issuer 'https://a' (also issuers[0])",
        "t.yaml:6:8: identity.issuers[3]: duplicate issuer 'https://a' (also issuers[0])",
        "t.yaml:6:8: identity.issuers[3]: duplicate issuer 'https://a' (also issuers[2])",
        "t.yaml:12:8: http.routes[2]: duplicate route name 'r' (also routes[0])",
        "t.yaml:13:8: http.routes[3]: duplicate route name 'r' (also routes[0])",
        "t.yaml:13:8: http.routes[3]: duplicate route name 'r' (also routes[2])",
    };
    expect_errors("identity:\n  issuers:\n" ISS("https://a") ISS("https://b") ISS("https://a")
                      ISS("https://a") "http:\n  listen: 127.0.0.1:8080\n  routes:\n" RT("r")
                          RT("s") RT("r") RT("r"),
                  sections, 6);
#undef ISS
#undef RT
}

/* Many distinct names (the name table grows past its first size and its
 * probes collide): only the one repeat is reported, pointing at its first
 * use; a name used hundreds of times stops at the error limit. */
static void test_err_duplicate_among_many(void **state)
{
    size_t cap = 1 << 20, len = 0;
    char *yaml = malloc(cap);
    assert_non_null(yaml);
    len += (size_t)snprintf(yaml, cap, "%s", BASE POLICY_HDR);
    for (int i = 0; i < 3000; i++)
        len += (size_t)snprintf(yaml + len, cap - len,
                                "    - {name: r%d, subjects: [group:g], "
                                "resources: [kafka:topic:t], verbs: [read], effect: allow}\n",
                                i == 2999 ? 1234 : i);
    static const char *const one[] = {
        "t.yaml:3010:14: policy.rules[2999].name: duplicate rule name 'r1234' (first defined at "
        "line 1245)",
    };
    expect_errors(yaml, one, 1);
    len = (size_t)snprintf(yaml, cap, "%s", BASE POLICY_HDR);
    for (int i = 0; i < 400; i++)
        len += (size_t)snprintf(yaml + len, cap - len, RULE("same", "[read]", "allow"));
    bg_config_errors_t errs = {0};
    assert_null(load(yaml, &errs));
    assert_int_equal(errs.n, 201); /* BG_CFG_MAX_ERRORS, then "giving up" */
    assert_string_equal(errs.msgs[0], "t.yaml:16:13: policy.rules[1].name: duplicate rule name "
                                      "'same' (first defined at line 11)");
    assert_non_null(strstr(errs.msgs[200], "too many errors, giving up"));
    bg_config_errors_clear(&errs);
    free(yaml);
}

static void test_err_unknown_verb_effect(void **state)
{
    expect_error(BASE POLICY_HDR RULE("a", "[read, reed]", "allow"),
                 "t.yaml:14:21: policy.rules[0].verbs[1]: unknown verb 'reed' (expected read,");
    expect_error(BASE POLICY_HDR RULE("a", "[read]", "permit"),
                 "t.yaml:15:15: policy.rules[0].effect: unknown effect 'permit'");
    expect_error(BASE "policy: {default: hold}\n",
                 "t.yaml:9:19: policy.default: must be allow or deny");
    /* the hint offers only what policy.default takes (before: "..., deny or hold") */
    expect_error(BASE "policy: {default: denny}\n",
                 "t.yaml:9:19: policy.default: unknown effect 'denny' (expected allow or deny)");
}

static void test_err_resource_subject(void **state)
{
    expect_error(BASE POLICY_HDR "    - name: a\n      subjects: [group:g]\n"
                                 "      resources: [kafka:topic:t, nats:subject:x]\n"
                                 "      verbs: [read]\n      effect: allow\n",
                 "t.yaml:13:34: policy.rules[0].resources[1]: resource pattern must start with");
    expect_error(BASE POLICY_HDR "    - name: a\n      subjects: [team:x]\n"
                                 "      resources: [kafka:topic:t]\n"
                                 "      verbs: [read]\n      effect: allow\n",
                 "t.yaml:12:18: policy.rules[0].subjects[0]: subject 'team:x' must be");
}

static void test_err_hold_without_approvers(void **state)
{
    expect_error(BASE POLICY_HDR RULE("a", "[delete]", "hold"),
                 "t.yaml:15:15: policy.rules[0].approvers: effect hold needs at least one "
                 "approver");
}

/* An empty verb list is the loader's error, at the list; approvers on a rule
 * that does not hold are only the compiler's: the loader reports it too. */
static void test_err_policy_only_compiled(void **state)
{
    expect_error(BASE POLICY_HDR RULE("a", "[]", "allow"),
                 "t.yaml:14:7: policy.rules[0].verbs: must not be empty");
    expect_error(BASE POLICY_HDR RULE("a", "[read]", "allow") "      approvers: [group:sre]\n",
                 "t.yaml:10:3: policy: t.yaml:11: rule 'a': approvers are only used with effect "
                 "hold");
}

/* An unquoted null is YAML's null: it used to read as "strategy not set" and
 * apply redact in silence where the null strategy was meant. */
#define MASK_HDR                                                                                   \
    "policy:\n  masks:\n    - name: m\n      resources: [kafka:topic:t]\n"                         \
    "      fields: [a]\n" /* lines 9-13 */

static void test_err_mask_strategy_yaml_null(void **state)
{
    static const char *const nulls[] = {"null", "~", "Null", "NULL", ""};
    for (size_t i = 0; i < sizeof nulls / sizeof *nulls; i++) {
        char yaml[1024];
        snprintf(yaml, sizeof yaml, BASE MASK_HDR "      strategy: %s\n", nulls[i]);
        expect_error(yaml, "t.yaml:14:7: policy.masks[0].strategy: expected a strategy, got YAML "
                           "null; write \"null\" (quoted) for the null strategy");
    }
    bg_config_t *c = expect_ok(BASE MASK_HDR "      strategy: \"null\"\n");
    assert_int_equal(c->policy.masks[0].strategy, BG_MASK_NULL);
    bg_config_free(c);
    c = expect_ok(BASE MASK_HDR "      strategy: 'null'\n");
    assert_int_equal(c->policy.masks[0].strategy, BG_MASK_NULL);
    bg_config_free(c);
    c = expect_ok(BASE MASK_HDR);
    assert_int_equal(c->policy.masks[0].strategy, BG_MASK_REDACT); /* absent: the default */
    bg_config_free(c);
}

static void test_err_duplicate_key(void **state)
{
    expect_error(BASE "  max_inflight: 1\n  max_inflight: 2\n",
                 "t.yaml:10:3: kafka.max_inflight: duplicate key 'max_inflight' (first at line 9)");
}

static void test_err_missing_required(void **state)
{
    expect_error(BASE_ID "kafka:\n  listen: 127.0.0.1:1\n",
                 "t.yaml:7:3: kafka: missing required key 'upstream'");
    expect_error(BASE_KAFKA "identity:\n  issuers:\n    - audiences: [a]\n      jwks_file: j\n",
                 "t.yaml:6:7: identity.issuers[0]: missing required key 'issuer'");
    expect_error(BASE "admin:\n  listen:\n", "t.yaml:10:3: admin.listen: a value is required");
    expect_error(BASE_KAFKA, "t.yaml:1:1: identity: missing: a listener");
    /* A rule without its effect is an error, not a deny by default. */
    expect_error(BASE POLICY_HDR "    - name: a\n      subjects: [group:g]\n"
                                 "      resources: [kafka:topic:t]\n      verbs: [read]\n",
                 "t.yaml:11:7: policy.rules[0]: missing required key 'effect'");
    /* RabbitMQ's credentials are both required (no login without a password). */
    expect_error(BASE "amqp:\n  listen: 127.0.0.1:15672\n"
                      "  upstream: {host: 'rabbit:5671', username: u}\n",
                 "t.yaml:11:14: amqp.upstream: missing required key 'password'");
}

static void test_err_cross_fields(void **state)
{
    expect_error(BASE_KAFKA "identity:\n  issuers:\n    - issuer: i\n      audiences: [a]\n"
                            "      jwks_file: j\n      jwks_url: https://idp/jwks\n",
                 "t.yaml:9:7: identity.issuers[0].jwks_url: jwks_file and jwks_url are mutually "
                 "exclusive");
    expect_error(BASE_KAFKA "identity:\n  issuers:\n    - issuer: i\n      audiences: [a]\n",
                 "t.yaml:6:7: identity.issuers[0]: missing jwks_file or jwks_url");
    expect_error(BASE_ID "kafka:\n  listen: 127.0.0.1:1\n"
                         "  upstream: {embedded: 1, bootstrap: [h:1]}\n",
                 "t.yaml:8:14: kafka.upstream.embedded: bootstrap and embedded are mutually");
    expect_error(BASE_ID "kafka:\n  listen: 127.0.0.1:1\n  upstream: {}\n",
                 "t.yaml:8:3: kafka.upstream: missing bootstrap or embedded (set exactly one)");
    expect_error(BASE_ID "kafka:\n  listen: 127.0.0.1:1\n  upstream:\n"
                         "    bootstrap: [h:1]\n    security: sasl_ssl\n",
                 "t.yaml:10:15: kafka.upstream.security: security sasl_ssl needs "
                 "kafka.upstream.sasl");
    expect_error(BASE_ID "kafka:\n  listen: 0.0.0.0:9092\n  upstream: {embedded: 1}\n",
                 "t.yaml:7:11: kafka.advertised_host: required when kafka.listen is a wildcard");
    expect_error(BASE_ID "kafka:\n  listen: 127.0.0.1:1\n  upstream: {embedded: 1}\n"
                         "audit:\n  kafka_topic: a\n",
                 "t.yaml:10:3: audit.kafka_topic: needs kafka.upstream.bootstrap");
    expect_error(BASE_KAFKA "identity:\n", "t.yaml:1:1: identity: missing: a listener");
    expect_error(BASE_KAFKA "identity:\n  issuers:\n    - issuer: i\n      audiences: [\"\"]\n"
                            "      jwks_file: j\n",
                 "t.yaml:7:19: identity.issuers[0].audiences[0]: expected a non-empty string");
    /* Upstream settings the security mode would ignore: credentials never
     * sent, or TLS settings on a plaintext connection, are errors. */
    expect_error(BASE_ID "kafka:\n  listen: 127.0.0.1:1\n  upstream:\n    bootstrap: [h:1]\n"
                         "    sasl: {mechanism: PLAIN, username: u, password: p}\n",
                 "t.yaml:10:5: kafka.upstream.sasl: sasl is set but security is plaintext");
    expect_error(BASE_ID "kafka:\n  listen: 127.0.0.1:1\n  upstream:\n    bootstrap: [h:1]\n"
                         "    tls: {ca: ca.pem}\n",
                 "t.yaml:10:5: kafka.upstream.tls: tls is set but security is plaintext");
    expect_error(BASE_ID "kafka:\n  listen: 127.0.0.1:1\n  upstream:\n    bootstrap: [h:1]\n"
                         "    security: ssl\n    tls: {cert: c.pem}\n",
                 "t.yaml:11:11: kafka.upstream.tls: cert and key must be given together");
    /* The last port leaves no port after it for the brokers. */
    expect_error(BASE_ID "kafka:\n  listen: 127.0.0.1:65535\n  upstream: {embedded: 1}\n",
                 "t.yaml:7:11: kafka.broker_port_base: required when kafka.listen's port is "
                 "65535");
}

/* A tls key with nothing under it (its children commented out) is an error
 * at the key: before, it read as "not set", so busgate served plaintext on
 * the listener and logged in to RabbitMQ in the clear. tls: {} is an
 * upstream's default TLS settings. */
#define AMQP_AT9                                                                                   \
    "amqp:\n  listen: 127.0.0.1:15672\n" /* lines 9-10 */                                          \
    "  upstream:\n    host: rabbit:5671\n    username: u\n    password: p\n" /* 11-14 */
static void test_err_empty_tls(void **state)
{
    expect_error(BASE "  tls:\n    # cert: c.pem\n    # key: k.pem\n",
                 "t.yaml:9:3: kafka.tls: empty: a listener's TLS needs cert and key (tls: "
                 "{cert: PATH, key: PATH}); remove the key to serve plaintext");
    expect_error(BASE "amqp:\n  listen: 127.0.0.1:15672\n  tls: ~\n"
                      "  upstream: {host: 'rabbit:5671', username: u, password: p}\n",
                 "t.yaml:11:3: amqp.tls: empty: a listener's TLS needs cert and key");
    expect_error(BASE AMQP_AT9 "    tls:\n      # ca: ca.pem\n",
                 "t.yaml:15:5: amqp.upstream.tls: empty: write tls: {} for the default TLS "
                 "settings (the system's CAs, verify true), or remove the key");
    expect_error(BASE_ID "kafka:\n  listen: 127.0.0.1:1\n  upstream:\n    bootstrap: [h:1]\n"
                         "    security: ssl\n    tls:\n",
                 "t.yaml:11:5: kafka.upstream.tls: empty: write tls: {} for the default TLS");
    bg_config_t *c = expect_ok(BASE AMQP_AT9 "    tls: {}\n");
    assert_true(c->amqp.upstream.tls.enabled && c->amqp.upstream.tls.verify);
    assert_null(c->amqp.upstream.tls.ca);
    assert_false(c->amqp.tls.enabled);
    bg_config_free(c);
    expect_error(BASE AMQP_AT9 "  tls: {}\n", "t.yaml:15:3: amqp.tls: missing required key 'cert'");
}

/* identity.issuers[].subject_prefix / groups_prefix: optional strings (""
 * is no prefix), at most 128 bytes of UTF-8 without control characters or
 * the wildcards policy subjects cannot write. */
#define ISSUER_WITH(extra)                                                                         \
    BASE_KAFKA "identity:\n  issuers:\n    - issuer: i\n      audiences: [a]\n"                   \
               "      jwks_file: j\n" extra /* extra from line 9 */
#define X64 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" /* 64 bytes */

static void test_issuer_prefixes(void **state)
{
    bg_config_t *c = expect_ok(ISSUER_WITH("      subject_prefix: partner/\n"
                                           "      groups_prefix: \"partner: \"\n"));
    assert_string_equal(c->identity.issuers[0].subject_prefix, "partner/");
    assert_string_equal(c->identity.issuers[0].groups_prefix, "partner: ");
    bg_config_free(c);
    c = expect_ok(ISSUER_WITH("      subject_prefix: \"\"\n"
                              "      groups_prefix: \"\\u00e9quipe/\"\n"));
    assert_string_equal(c->identity.issuers[0].subject_prefix, "");
    assert_string_equal(c->identity.issuers[0].groups_prefix, "\xc3\xa9quipe/");
    bg_config_free(c);
    /* 128 bytes is the most. */
    c = expect_ok(ISSUER_WITH("      subject_prefix: " X64 X64 "\n"));
    assert_int_equal(strlen(c->identity.issuers[0].subject_prefix), 128);
    bg_config_free(c);
    expect_error(ISSUER_WITH("      subject_prefix: \"a\\x01b\"\n"),
                 "t.yaml:9:23: identity.issuers[0].subject_prefix: contains a control character");
    expect_error(ISSUER_WITH("      groups_prefix: \"a\\x7f\"\n"),
                 "t.yaml:9:22: identity.issuers[0].groups_prefix: contains a control character");
    expect_error(ISSUER_WITH("      groups_prefix: \"\\u0085/\"\n"),
                 "t.yaml:9:22: identity.issuers[0].groups_prefix: contains a control character");
    expect_error(ISSUER_WITH("      subject_prefix: " X64 X64 "x\n"),
                 "t.yaml:9:23: identity.issuers[0].subject_prefix: must be at most 128 bytes");
    expect_error(ISSUER_WITH("      subject_prefix: \"p*/\"\n"),
                 "t.yaml:9:23: identity.issuers[0].subject_prefix: contains '*' or '?'");
    expect_error(ISSUER_WITH("      groups_prefix: [a]\n"),
                 "t.yaml:9:23: identity.issuers[0].groups_prefix: expected a string, got a "
                 "sequence");
    /* Bytes from the environment are checked as well. */
    setenv("BG_TEST_PREFIX", "\xff/", 1);
    expect_error(ISSUER_WITH("      subject_prefix: ${env:BG_TEST_PREFIX}\n"),
                 "t.yaml:9:23: identity.issuers[0].subject_prefix: is not valid UTF-8");
    unsetenv("BG_TEST_PREFIX");
}

/* Signing keys come over TLS; plain http only from this machine. */
static void test_jwks_url_transport(void **state)
{
    static const char *const ok[] = {"https://idp.example/jwks", "http://127.0.0.1:8080/jwks",
                                     "http://127.1.2.3/k", "http://localhost:9/jwks",
                                     "http://LOCALHOST/jwks", "http://[::1]:9/jwks",
                                     "http://u@127.0.0.1/jwks"};
    static const char *const bad[] = {"http://idp.example/jwks", "http://127.0.0.1.nip.io/jwks",
                                      "http://127.0.0.1@idp.example/jwks",
                                      "http://localhost.example/jwks", "http://[::1].x/jwks",
                                      "http://10.0.0.1/jwks", "http://[::2]/jwks"};
    char yaml[512];
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        snprintf(yaml, sizeof yaml,
                 BASE_KAFKA "identity:\n  issuers:\n    - issuer: i\n      audiences: [a]\n"
                            "      jwks_url: \"%s\"\n",
                 ok[i]);
        bg_config_free(expect_ok(yaml));
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(yaml, sizeof yaml,
                 BASE_KAFKA "identity:\n  issuers:\n    - issuer: i\n      audiences: [a]\n"
                            "      jwks_url: \"%s\"\n",
                 bad[i]);
        expect_error(yaml, "t.yaml:8:17: identity.issuers[0].jwks_url: signing keys must come "
                           "over https://");
    }
}

/* A JWKS endpoint is normally public: an HMAC secret served there would let
 * anyone mint tokens, so shared-secret keys come only from a jwks_file. */
static void test_hs256_needs_jwks_file(void **state)
{
    expect_error(BASE_KAFKA "identity:\n  issuers:\n    - issuer: i\n      audiences: [a]\n"
                            "      jwks_url: https://idp/jwks\n      allow_hs256: true\n",
                 "t.yaml:9:20: identity.issuers[0].allow_hs256: HS256 needs jwks_file");
    bg_config_free(
        expect_ok(BASE_KAFKA "identity:\n  issuers:\n    - issuer: i\n      audiences: [a]\n"
                             "      jwks_url: https://idp/jwks\n      allow_hs256: false\n"));
    bg_config_free(
        expect_ok(BASE_KAFKA "identity:\n  issuers:\n    - issuer: i\n      audiences: [a]\n"
                             "      jwks_file: j\n      allow_hs256: true\n"));
}

static void test_limits_clamped(void **state)
{
    bg_config_t *c = expect_ok(BASE "  max_frame_bytes: 8KiB\n");
    assert_int_equal(c->kafka.preauth_max_frame_bytes, 8 * 1024);
    bg_config_free(c);
    expect_error(BASE "workers: 257\n", "t.yaml:9:10: workers: ");
    expect_error(BASE_ID "  clock_skew: 2h\n" BASE_KAFKA,
                 "t.yaml:6:15: identity.clock_skew: must be at most 1h");
}

/* Numbers past 64 bits are refused, never wrapped into range (2^64 + 4
 * workers read as 4; 2^54 + 8 KiB as 8 KiB). */
static void test_err_number_overflow(void **state)
{
    expect_error(BASE "workers: 18446744073709551620\n",
                 "t.yaml:9:10: workers: expected an integer between 0 and 256, got "
                 "'18446744073709551620'");
    expect_error(BASE "  max_frame_bytes: 18014398509481992KiB\n",
                 "t.yaml:9:20: kafka.max_frame_bytes: bad size '18014398509481992KiB'");
}

/* A list that must say something is refused empty: an issuer without
 * audiences, a listener without issuers or login mechanisms, a rule that
 * names no subject. */
static void test_err_empty_lists(void **state)
{
    expect_error(BASE_KAFKA "identity:\n  issuers:\n    - issuer: i\n      audiences: []\n"
                            "      jwks_file: j\n",
                 "t.yaml:7:7: identity.issuers[0].audiences: must not be empty");
    expect_error(BASE_KAFKA "identity:\n  issuers: []\n",
                 "t.yaml:5:3: identity.issuers: must not be empty");
    expect_error(BASE "  sasl_mechanisms: []\n",
                 "t.yaml:9:3: kafka.sasl_mechanisms: must not be empty");
    expect_error(BASE POLICY_HDR "    - name: a\n      subjects: []\n"
                                 "      resources: [kafka:topic:t]\n"
                                 "      verbs: [read]\n      effect: allow\n",
                 "t.yaml:12:7: policy.rules[0].subjects: must not be empty");
}

/* The edges of the ranges the documentation gives: the last value in is
 * taken, the first one out refused. */
static void test_range_edges(void **state)
{
    bg_config_t *c = expect_ok(BASE_ID "  clock_skew: 1h\n" BASE_KAFKA);
    assert_int_equal(c->identity.clock_skew_ms, 3600000);
    bg_config_free(c);
    c = expect_ok(ISSUER_WITH("      jwks_refresh: 1s\n"));
    assert_int_equal(c->identity.issuers[0].jwks_refresh_ms, 1000);
    bg_config_free(c);
    expect_error(ISSUER_WITH("      jwks_refresh: 999ms\n"),
                 "t.yaml:9:21: identity.issuers[0].jwks_refresh: must be at least 1s");
    /* heartbeat is a 16-bit field: 65536 would go out as 0, no heartbeat */
    c = expect_ok(BASE AMQP_AT9 "  heartbeat: 65535\n  max_frame_bytes: 4096\n");
    assert_int_equal(c->amqp.heartbeat_s, 65535);
    assert_int_equal(c->amqp.max_frame_bytes, 4096);
    bg_config_free(c);
    expect_error(BASE AMQP_AT9 "  heartbeat: 65536\n",
                 "t.yaml:15:14: amqp.heartbeat: bad heartbeat");
    expect_error(BASE AMQP_AT9 "  heartbeat: 65536s\n",
                 "t.yaml:15:14: amqp.heartbeat: bad heartbeat");
    /* AMQP's frame_max minimum */
    expect_error(BASE AMQP_AT9 "  max_frame_bytes: 4095\n",
                 "t.yaml:15:20: amqp.max_frame_bytes: size 4095 is out of range");
    /* Kafka's topic names: at most 249 characters */
    char yaml[1024], topic[251];
    memset(topic, 't', 250);
    topic[249] = 0;
    snprintf(yaml, sizeof yaml, BASE "audit: {kafka_topic: %s}\n", topic);
    expect_error(yaml, "t.yaml:9:9: audit.kafka_topic: needs kafka.upstream.bootstrap");
    topic[249] = 't';
    topic[250] = 0;
    snprintf(yaml, sizeof yaml, BASE "audit: {kafka_topic: %s}\n", topic);
    expect_error(yaml, "t.yaml:9:22: audit.kafka_topic: bad topic name (1-249 characters");
}

/* Fail closed: a listener with no audit sink is an error unless audit is
 * turned off in words (audit.enabled: false), which `busgate check` and
 * `busgate run` then warn about. */
static void test_audit_required(void **state)
{
    bg_config_errors_t errs = {0};
    /* no audit section: the error, at the listener, names the keys that
     * fix it */
    assert_null(load_as_is(BASE, &errs));
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.msgs[0],
                        "t.yaml:6:1: audit: no audit sink: every decision would go unrecorded; "
                        "set audit.file or audit.kafka_topic, or audit.enabled: false to run "
                        "without audit");
    bg_config_errors_clear(&errs);
    /* an amqp listener alone needs it too */
    expect_error_by(load_as_is,
                    BASE_ID "amqp:\n  listen: 127.0.0.1:5673\n"
                            "  upstream: {host: 127.0.0.1:5672, username: u, password: p}\n",
                    "t.yaml:6:1: audit: no audit sink: every decision would go unrecorded");
    /* no listener, nothing to record: no error */
    bg_config_free(expect_ok(BASE_ID));
    /* audit: with every line commented out is a YAML null: an error at
     * the key, as for tls, not "not set" */
    expect_error(BASE "audit:\n#  file: a.jsonl\n",
                 "t.yaml:9:1: audit: empty: set audit.file or audit.kafka_topic, or "
                 "audit.enabled: false to run without audit");
    expect_error(BASE_ID "audit:\n", "t.yaml:6:1: audit: empty:");
    /* a section without a sink says how to turn audit off */
    expect_error(BASE "audit:\n  on_failure: drop\n",
                 "t.yaml:10:3: audit: needs a sink: set kafka_topic and/or file, or enabled: "
                 "false to run without audit");
    /* enabled: false and a sink contradict each other */
    expect_error(BASE "audit:\n  enabled: false\n  file: a.jsonl\n",
                 "t.yaml:10:12: audit.enabled: false contradicts audit.file: remove the sinks "
                 "to run without audit, or remove enabled: false to record every decision");
    expect_error(BASE "audit: {spool_dir: s, enabled: false}\n",
                 "t.yaml:9:32: audit.enabled: false contradicts audit.spool_dir");
    expect_error(BASE "audit: {enabled: maybe}\n", "t.yaml:9:18: audit.enabled:");
    /* the other keys are still checked with audit off */
    expect_error(BASE "audit: {enabled: false, on_failure: lose}\n",
                 "t.yaml:9:37: audit.on_failure:");
    /* the opt-out: loads, runs no pipeline, and is warned about */
    bg_config_t *c = expect_ok(BASE "audit:\n  enabled: false\n");
    assert_false(c->audit.enabled);
    assert_true(c->audit.disabled);
    assert_non_null(bg_config_audit_off(c));
    assert_non_null(strstr(bg_config_audit_off(c), "audit.enabled is false: no decision is "
                                                   "recorded"));
    bg_config_free(c);
    /* enabled: true is the default: it still needs a sink */
    expect_error(BASE "audit: {enabled: true}\n", "t.yaml:9:9: audit: needs a sink:");
    c = expect_ok(BASE "audit: {enabled: true, file: a.jsonl}\n");
    assert_true(c->audit.enabled);
    assert_false(c->audit.disabled);
    assert_null(bg_config_audit_off(c));
    bg_config_free(c);
}

static void test_audit_avro_schema_id(void **state)
{
    bg_config_t *c = expect_ok(BASE "audit:\n  file: a.jsonl\n  format: avro\n"
                                    "  avro_schema_id: 7\n");
    assert_int_equal(c->audit.avro_schema_id, 7);
    bg_config_free(c);
    expect_error(BASE "audit:\n  file: a.jsonl\n  avro_schema_id: 7\n",
                 "t.yaml:11:19: audit.avro_schema_id: needs format: avro");
    expect_error(BASE "audit:\n  file: a.jsonl\n  format: avro\n  avro_schema_id: 0\n",
                 "t.yaml:12:19: audit.avro_schema_id:");
}

static void test_err_yaml_syntax(void **state)
{
    expect_error_by(load_as_is, "kafka:\n  listen: [a, b\n", "t.yaml:3:1: YAML syntax error:");
    expect_error("a: b: c\n", "t.yaml:1:5: YAML syntax error:");
    expect_error("", "t.yaml:1:1: no YAML document");
    expect_error("a: 1\nb: \xe0\x9e\x8a\n", "t.yaml:2:4: invalid UTF-8");
    expect_error("a: 1\nb: \xc3\xa9\x01\n", "t.yaml:2:5: control character");
    expect_error("a: 1\nb: c\x7f\n", "t.yaml:2:5: control character"); /* DEL */
    expect_error(BASE "workers: &w 1\ninstance: *w\n",
                 "t.yaml:10:11: instance: expected a string, got an alias");
}

/* A second document was never read: its rules were not enforced although
 * check said ok. Any "---" after the first document is refused, an empty
 * one included; a leading "---" and a closing "..." are still one. */
static void test_err_second_document(void **state)
{
    const char *msg = "configuration has more than one YAML document (---); busgate reads "
                      "exactly one";
    char want[256];
    snprintf(want, sizeof want, "t.yaml:10:1: %s", msg);
    expect_error(BASE "policy: {default: allow}\n---\npolicy: {default: deny}\n", want);
    expect_error(BASE "policy: {default: allow}\n---\n", want);
    expect_error(BASE "policy: {default: allow}\n---\n# deny rules to come\n", want);
    snprintf(want, sizeof want, "t.yaml:11:1: %s", msg);
    expect_error(BASE "policy: {default: allow}\n...\npolicy: {default: deny}\n", want);
    expect_error(BASE "policy: {default: allow}\n---\npolicy: [\n", "t.yaml:");
    bg_config_free(expect_ok("---\n" BASE "policy: {default: allow}\naudit: {enabled: false}\n"));
    bg_config_free(expect_ok(BASE "policy: {default: allow}\naudit: {enabled: false}\n...\n"));
}

/* A header value with a line break would add headers of its own to every
 * upstream request; names were already HTTP tokens. */
#define ROUTE                                                                                      \
    "http:\n  listen: 127.0.0.1:8080\n  routes:\n    - name: r\n      prefix: /\n"                 \
    "      upstream: https://up.example\n      headers:\n" /* lines 9-15 */

static void test_err_header_control_chars(void **state)
{
    bg_config_t *c = expect_ok(BASE ROUTE "        Authorization: \"Bearer x\\ty\"\n"
                                          "        X-Obs: \"caf\xc3\xa9\"\n");
    assert_string_equal(c->http.routes[0].headers[0].value, "Bearer x\ty");
    bg_config_free(c);
    static const char *const bad[] = {"Bearer x\\r\\nX-Injected: 1", "a\\nb", "a\\rb",
                                      "a\\x01b", "a\\x7fb", "a\\eb"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char yaml[1024];
        snprintf(yaml, sizeof yaml, BASE ROUTE "        Authorization: \"%s\"\n", bad[i]);
        expect_error(yaml, "t.yaml:16:24: http.routes[0].headers.Authorization: control "
                           "character in the header value");
    }
    expect_error(BASE ROUTE "        \"X-A\\r\\nX-B\": v\n",
                 "t.yaml:16:9: http.routes[0].headers: bad header name");
    /* A secret is checked after expansion, and not quoted. */
    setenv("BG_TEST_HDR", "s3cr3t\r\nX-Injected: 1", 1);
    bg_config_errors_t errs = {0};
    assert_null(load(BASE ROUTE "        Authorization: \"Bearer ${env:BG_TEST_HDR}\"\n", &errs));
    assert_int_equal(errs.n, 1);
    assert_non_null(strstr(errs.msgs[0], "control character in the header value"));
    assert_null(strstr(errs.msgs[0], "s3cr3t"));
    bg_config_errors_clear(&errs);
}

/* An empty header value passed check although other strings may not be
 * empty; it is refused with their message, after expansion too. */
/* Header names compare without case; one message per earlier kept header of
 * that name (a refused header is not kept). */
static void test_err_duplicate_header(void **state)
{
    static const char *const want[] = {
        "t.yaml:17:9: http.routes[0].headers.x-a: duplicate header 'x-a'",
        "t.yaml:18:14: http.routes[0].headers.X-B: expected a non-empty string, got null",
        "t.yaml:20:9: http.routes[0].headers.X-A: duplicate header 'X-A'",
        "t.yaml:20:9: http.routes[0].headers.X-A: duplicate header 'X-A'",
    };
    expect_errors(BASE ROUTE "        X-A: v\n        x-a: w\n        X-B: ~\n        x-b: v\n"
                             "        X-A: v3\n",
                  want, 4);
}

static void test_err_header_empty_value(void **state)
{
    expect_error(BASE ROUTE "        X-A: ''\n",
                 "t.yaml:16:14: http.routes[0].headers.X-A: expected a non-empty string");
    expect_error(BASE ROUTE "        X-A: \"\"\n",
                 "t.yaml:16:14: http.routes[0].headers.X-A: expected a non-empty string");
    setenv("BG_TEST_EMPTY", "", 1);
    expect_error(BASE ROUTE "        X-A: \"${env:BG_TEST_EMPTY}\"\n",
                 "t.yaml:16:14: http.routes[0].headers.X-A: expected a non-empty string");
    /* a YAML null is no value either (it was left out without a word) */
    expect_error(BASE ROUTE "        X-A: ~\n",
                 "t.yaml:16:14: http.routes[0].headers.X-A: expected a non-empty string, got null");
    expect_error(BASE ROUTE "        X-A:\n",
                 "t.yaml:16:9: http.routes[0].headers.X-A: expected a non-empty string, got null");
    bg_config_t *c = expect_ok(BASE ROUTE "        X-A: \" \"\n");
    assert_string_equal(c->http.routes[0].headers[0].value, " ");
    bg_config_free(c);
}

static void test_collects_all_errors(void **state)
{
    bg_config_errors_t errs = {0};
    bg_config_t *c = load(BASE "  listn: 1\n  idle_timeout: 3x\nworkers: -1\n", &errs);
    dump(&errs);
    assert_null(c);
    assert_int_equal(errs.n, 3);
    assert_non_null(strstr(errs.msgs[0], "t.yaml:9:3: kafka.listn"));
    assert_non_null(strstr(errs.msgs[1], "t.yaml:10:17: kafka.idle_timeout"));
    assert_non_null(strstr(errs.msgs[2], "t.yaml:11:10: workers"));
    bg_config_errors_clear(&errs);
    assert_int_equal(errs.n, 0);
}

static void test_load_missing_file(void **state)
{
    bg_config_errors_t errs = {0};
    assert_null(bg_config_load("no-such-dir/busgate.yaml", &errs));
    assert_int_equal(errs.n, 1);
    assert_non_null(strstr(errs.msgs[0], "no-such-dir/busgate.yaml:1:1: cannot read"));
    bg_config_errors_clear(&errs);
}

/* ---- ${env:} and ${file:} ---- */

static void test_env_resolution(void **state)
{
    setenv("BG_TEST_USER", "svc", 1);
    setenv("BG_TEST_PW", "pa55", 1);
    bg_config_t *c = expect_ok(BASE_KAFKA BASE_ID
                               "amqp:\n  listen: 127.0.0.1:15672\n  upstream:\n"
                               "    host: 127.0.0.1:5672\n    username: ${env:BG_TEST_USER}\n"
                               "    password: \"x-${env:BG_TEST_PW}-${env:BG_TEST_USER}\"\n"
                               "    vhost: \"$${literal}\"\n");
    assert_string_equal(c->amqp.upstream.username, "svc");
    assert_string_equal(c->amqp.upstream.password, "x-pa55-svc");
    assert_string_equal(c->amqp.upstream.vhost, "${literal}");
    bg_config_free(c);
    unsetenv("BG_TEST_UNSET");
    expect_error(BASE "instance: \"${env:BG_TEST_UNSET}\"\n",
                 "t.yaml:9:11: instance: environment variable 'BG_TEST_UNSET' is not set");
    expect_error(BASE "instance: \"${env:BG_TEST_PW\"\n", "t.yaml:9:11: instance: unterminated");
    expect_error(BASE "instance: \"${vault:x}\"\n", "t.yaml:9:11: instance: unknown reference");
    /* a variable name starts with a letter or '_' */
    setenv("9BG_TEST", "x", 1);
    expect_error(BASE "instance: \"${env:9BG_TEST}\"\n",
                 "t.yaml:9:11: instance: bad environment variable name in '${env:9BG_TEST}'");
    unsetenv("9BG_TEST");
}

static void test_file_resolution(void **state)
{
    char *dir = tmp_dir(), *cfgpath = NULL;
    char *secret = write_file(dir, "pw", "from-file\n");
    char *two = write_file(dir, "two", "line1\nline2\n\n");
    char *yaml = write_file(dir, "c.yaml",
                            BASE_ID "kafka:\n  listen: 127.0.0.1:1\n  upstream:\n"
                                    "    bootstrap: [h:1]\n    security: sasl_plaintext\n"
                                    "    sasl: {mechanism: PLAIN, username: u, password: "
                                    "\"${file:pw}\"}\n"
                                    "instance: \"<${file:two}>\"\n"
                                    "audit: {enabled: false}\n");
    bg_config_errors_t errs = {0};
    bg_config_t *c = bg_config_load(yaml, &errs);
    dump(&errs);
    assert_non_null(c);
    assert_string_equal(c->kafka.upstream.sasl_password, "from-file");
    assert_string_equal(c->instance, "<line1\nline2\n>"); /* only one newline dropped */
    assert_true(asprintf(&cfgpath, "%s/jwks.json", dir) > 0);
    assert_string_equal(c->identity.issuers[0].jwks_file, cfgpath); /* relative to the file */
    bg_config_free(c);
    expect_error(BASE "instance: \"${file:no-such-secret}\"\n",
                 "t.yaml:9:11: instance: cannot read '${file:no-such-secret}'");
    unlink(secret);
    unlink(two);
    unlink(yaml);
    rmdir(dir);
    free(secret);
    free(two);
    free(yaml);
    free(dir);
    free(cfgpath);
}

/* Loads a configuration file in dir whose Kafka SASL password is value;
 * NULL with the errors in errs on failure. */
static bg_config_t *load_password(const char *dir, const char *value, bg_config_errors_t *errs)
{
    char *yaml = NULL, *path = NULL;
    assert_true(asprintf(&yaml,
                         BASE_ID "kafka:\n  listen: 127.0.0.1:1\n  upstream:\n"
                                 "    bootstrap: [h:1]\n    security: sasl_plaintext\n"
                                 "    sasl: {mechanism: PLAIN, username: u, password: \"%s\"}\n"
                                 "audit: {enabled: false}\n",
                         value) > 0);
    free(write_file(dir, "c.yaml", yaml));
    assert_true(asprintf(&path, "%s/c.yaml", dir) > 0);
    bg_config_t *c = bg_config_load(path, errs);
    unlink(path);
    free(path);
    free(yaml);
    return c;
}

/* 1 when one of errs' messages contains want. */
static int errs_have(const bg_config_errors_t *errs, const char *want)
{
    for (size_t i = 0; i < errs->n; i++)
        if (strstr(errs->msgs[i], want))
            return 1;
    return 0;
}

/* What ${file:} reads, and the bound on an expanded value: a CRLF ending is
 * dropped whole; a file with a NUL byte (which would cut the secret short),
 * one that is not a regular file (a FIFO would read as an empty secret),
 * one over 64 KiB, and a value over 1 MiB after expansion are errors. */
static void test_secret_file_limits(void **state)
{
    char *dir = tmp_dir(), *p = NULL;
    bg_config_errors_t errs = {0};
    free(write_file(dir, "crlf", "pw\r\n"));
    bg_config_t *c = load_password(dir, "${file:crlf}", &errs);
    dump(&errs);
    assert_non_null(c);
    assert_string_equal(c->kafka.upstream.sasl_password, "pw");
    bg_config_free(c);

    assert_true(asprintf(&p, "%s/nul", dir) > 0);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(fwrite("ab\0cd", 1, 5, f), 5);
    fclose(f);
    assert_null(load_password(dir, "${file:nul}", &errs));
    assert_true(errs_have(&errs, "file contains a NUL byte"));
    bg_config_errors_clear(&errs);
    unlink(p);
    free(p);

    assert_true(asprintf(&p, "%s/fifo", dir) > 0);
    assert_int_equal(mkfifo(p, 0600), 0);
    assert_null(load_password(dir, "${file:fifo}", &errs));
    assert_true(errs_have(&errs, "not a regular file"));
    bg_config_errors_clear(&errs);
    unlink(p);
    free(p);

    char *big = malloc((64u << 10) + 2);
    memset(big, 'x', (64u << 10) + 1);
    big[64u << 10] = 0; /* exactly 64 KiB: read whole */
    free(write_file(dir, "max", big));
    c = load_password(dir, "${file:max}", &errs);
    dump(&errs);
    assert_non_null(c);
    assert_int_equal(strlen(c->kafka.upstream.sasl_password), 64u << 10);
    bg_config_free(c);
    big[64u << 10] = 'x';
    big[(64u << 10) + 1] = 0;
    free(write_file(dir, "over", big));
    assert_null(load_password(dir, "${file:over}", &errs));
    assert_true(errs_have(&errs, "file too large (max 64 KiB)"));
    bg_config_errors_clear(&errs);
    free(big);

    /* Two 600 KiB variables: 1.2 MiB once expanded. */
    big = malloc(600u << 10);
    memset(big, 'y', (600u << 10) - 1);
    big[(600u << 10) - 1] = 0;
    setenv("BG_TEST_BIG", big, 1);
    free(big);
    assert_null(load_password(dir, "${env:BG_TEST_BIG}${env:BG_TEST_BIG}", &errs));
    assert_true(errs_have(&errs, "value too large after expansion (max 1 MiB)"));
    bg_config_errors_clear(&errs);
    unsetenv("BG_TEST_BIG");

    const char *names[] = {"crlf", "max", "over"};
    for (int i = 0; i < 3; i++) {
        assert_true(asprintf(&p, "%s/%s", dir, names[i]) > 0);
        unlink(p);
        free(p);
    }
    rmdir(dir);
    free(dir);
}

static void test_secret_not_printed(void **state)
{
    setenv("BG_TEST_SECRET", "s3cr3t-value", 1);
    bg_config_errors_t errs = {0};
    bg_config_t *c = load(BASE "admin: {listen: \"${env:BG_TEST_SECRET}:99999\"}\n"
                               "policy:\n  rules:\n    - name: a\n"
                               "      subjects: [\"team:${env:BG_TEST_SECRET}\"]\n"
                               "      resources: [kafka:topic:t]\n      verbs: [read]\n"
                               "      effect: allow\n",
                          &errs);
    assert_null(c);
    assert_int_equal(errs.n, 2);
    for (size_t i = 0; i < errs.n; i++) {
        assert_null(strstr(errs.msgs[i], "s3cr3t"));
        assert_non_null(strstr(errs.msgs[i], "${env:BG_TEST_SECRET}"));
    }
    assert_non_null(strstr(errs.msgs[0], "t.yaml:9:17: admin.listen: bad address"));
    assert_non_null(strstr(errs.msgs[1], "t.yaml:13:18: policy.rules[0].subjects[0]:"));
    bg_config_errors_clear(&errs);
}

/* Every typed reader quotes the reference, not what it resolved to, when
 * the value is refused. */
static void test_secret_not_printed_by_any_reader(void **state)
{
    setenv("BG_TEST_SECRET", "s3cr3t-value", 1);
    static const char *const where[] = {
        "t.yaml:9:20: kafka.max_frame_bytes: bad size",
        "t.yaml:10:17: kafka.idle_timeout: bad duration",
        "t.yaml:11:17: kafka.max_inflight: expected an integer",
        "t.yaml:12:12: log_level: unknown value",
        "t.yaml:14:12: approvals.webhook: expected an http:// or https:// URL",
        "t.yaml:16:12: audit.enabled: expected a bool",
    };
    bg_config_errors_t errs = {0};
    bg_config_t *c = load_as_is(BASE "  max_frame_bytes: \"${env:BG_TEST_SECRET}\"\n"
                                     "  idle_timeout: \"${env:BG_TEST_SECRET}\"\n"
                                     "  max_inflight: \"${env:BG_TEST_SECRET}\"\n"
                                     "log_level: \"${env:BG_TEST_SECRET}\"\n"
                                     "approvals:\n  webhook: \"${env:BG_TEST_SECRET}\"\n"
                                     "audit:\n  enabled: \"${env:BG_TEST_SECRET}\"\n"
                                     "  file: a.jsonl\n",
                                &errs);
    if (errs.n != 6)
        dump(&errs);
    assert_null(c);
    assert_int_equal(errs.n, 6);
    for (size_t i = 0; i < errs.n; i++) {
        assert_null(strstr(errs.msgs[i], "s3cr3t"));
        assert_non_null(strstr(errs.msgs[i], "'${env:BG_TEST_SECRET}'"));
        assert_memory_equal(errs.msgs[i], where[i], strlen(where[i]));
    }
    bg_config_errors_clear(&errs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_loads),
        cmocka_unit_test(test_quickstart_loads),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_restart_hashes),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_sizes_and_lists),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_addr),
        cmocka_unit_test(test_err_unknown_key),
        cmocka_unit_test(test_err_wrong_type),
        cmocka_unit_test(test_err_duration),
        cmocka_unit_test(test_err_duration_too_long),
        cmocka_unit_test(test_jwks_ca),
        cmocka_unit_test(test_err_address),
        cmocka_unit_test(test_err_size),
        cmocka_unit_test(test_policy_ok),
        cmocka_unit_test(test_err_policy_only_compiled),
        cmocka_unit_test(test_err_duplicate_rule),
        cmocka_unit_test(test_err_duplicate_names_all_reported),
        cmocka_unit_test(test_err_duplicate_among_many),
        cmocka_unit_test(test_err_unknown_verb_effect),
        cmocka_unit_test(test_err_mask_strategy_yaml_null),
        cmocka_unit_test(test_err_resource_subject),
        cmocka_unit_test(test_err_hold_without_approvers),
        cmocka_unit_test(test_err_duplicate_key),
        cmocka_unit_test(test_err_missing_required),
        cmocka_unit_test(test_err_cross_fields),
        cmocka_unit_test(test_err_empty_tls),
        cmocka_unit_test(test_err_yaml_syntax),
        cmocka_unit_test(test_err_second_document),
        cmocka_unit_test(test_err_header_control_chars),
        cmocka_unit_test(test_err_header_empty_value),
        cmocka_unit_test(test_err_duplicate_header),
        cmocka_unit_test(test_audit_required),
        cmocka_unit_test(test_audit_avro_schema_id),
        cmocka_unit_test(test_jwks_url_transport),
        cmocka_unit_test(test_hs256_needs_jwks_file),
        cmocka_unit_test(test_issuer_prefixes),
        cmocka_unit_test(test_limits_clamped),
        cmocka_unit_test(test_err_number_overflow),
        cmocka_unit_test(test_err_empty_lists),
        cmocka_unit_test(test_range_edges),
        cmocka_unit_test(test_collects_all_errors),
        cmocka_unit_test(test_load_missing_file),
        cmocka_unit_test(test_env_resolution),
        cmocka_unit_test(test_file_resolution),
        cmocka_unit_test(test_secret_file_limits),
        cmocka_unit_test(test_secret_not_printed),
        cmocka_unit_test(test_secret_not_printed_by_any_reader),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
