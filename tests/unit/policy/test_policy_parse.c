/* Parse helpers and compile errors: one row per malformed input, each with
 * the substring its message must carry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "policy_test_util.h"

typedef int (*pt_check_fn)(const char *s, const char **why);

static int pt_verb(const char *s, const char **why)
{
    bg_verb_t v;
    return bg_policy_parse_verb(s, &v, why);
}
static int pt_effect(const char *s, const char **why)
{
    bg_effect_t e;
    return bg_policy_parse_effect(s, &e, why);
}
static int pt_mode(const char *s, const char **why)
{
    bg_mode_t m;
    return bg_policy_parse_mode(s, &m, why);
}
static int pt_format(const char *s, const char **why)
{
    bg_mask_format_t f;
    return bg_policy_parse_mask_format(s, &f, why);
}
static int pt_strategy(const char *s, const char **why)
{
    bg_mask_strategy_t f;
    return bg_policy_parse_mask_strategy(s, &f, why);
}
static int pt_resource(const char *s, const char **why)
{
    bg_policy_resource_t r;
    return bg_policy_parse_resource(s, &r, why);
}

typedef struct pt_prow_s {
    pt_check_fn fn;
    const char *input;
    const char *why; /* NULL: valid; else a substring of the message */
} pt_prow_t;

static const pt_prow_t pt_prows[] = {
    {pt_verb, "read", NULL},
    {pt_verb, "describe", NULL},
    {pt_verb, "reed", "unknown verb 'reed' (expected read, write, create, delete, alter, describe)"},
    {pt_verb, "", "unknown verb ''"},
    {pt_verb, "READ", "unknown verb"},
    {pt_effect, "hold", NULL},
    {pt_effect, "permit", "unknown effect 'permit' (expected allow, deny or hold)"},
    {pt_mode, "audit", NULL},
    {pt_mode, "enforcing", "unknown mode 'enforcing'"},
    {pt_format, "avro", NULL},
    {pt_format, "xml", "unknown mask format 'xml'"},
    {pt_strategy, "last4", NULL},
    {pt_strategy, "scramble", "unknown mask strategy 'scramble'"},
    {bg_policy_check_subject, "*", NULL},
    {bg_policy_check_subject, "group:ops", NULL},
    {bg_policy_check_subject, "sub:svc-a", NULL},
    {bg_policy_check_subject, "user:bob", "must be group:NAME, sub:NAME or '*'"},
    {bg_policy_check_subject, "group:", "subject name is empty"},
    {bg_policy_check_subject, "sub:", "subject name is empty"},
    {bg_policy_check_subject, "group:a*", "no wildcards"},
    {bg_policy_check_subject, "group:a\tb", "control character"},
    {bg_policy_check_subject, "group:a?", "no wildcards"},
    {bg_policy_check_subject, "**", "must be group:NAME"},
    {bg_policy_check_resource_pattern, "kafka:topic:billing.*", NULL},
    {bg_policy_check_resource_pattern, "kafka:topic:*", NULL},
    {bg_policy_check_resource_pattern, "kafka:topic:a?b*c", NULL},
    {bg_policy_check_resource_pattern, "kafka:group:g", NULL},
    {bg_policy_check_resource_pattern, "kafka:transactional-id:tx-*", NULL},
    {bg_policy_check_resource_pattern, "kafka:cluster", NULL},
    {bg_policy_check_resource_pattern, "amqp:exchange:ex", NULL},
    {bg_policy_check_resource_pattern, "amqp:queue:q.*", NULL},
    {bg_policy_check_resource_pattern, "http:api:/users/*", NULL},
    {bg_policy_check_resource_pattern, "http:*:/health", NULL},
    {bg_policy_check_resource_pattern, "http:*:*", NULL},
    {bg_policy_check_resource_pattern, "topic:orders",
     "resource pattern must start with kafka:, amqp: or http:"},
    {bg_policy_check_resource_pattern, "kafka:topic:a**", "'**' is not allowed"},
    {bg_policy_check_resource_pattern, "kafka:topic:**", "'**' is not allowed"},
    {bg_policy_check_resource_pattern, "kafka:cluster:x", "kafka:cluster takes no name"},
    {bg_policy_check_resource_pattern, "kafka:topic:", "resource name is empty"},
    {bg_policy_check_resource_pattern, "amqp:queue:", "resource name is empty"},
    {bg_policy_check_resource_pattern, "kafka:topic:a\nb", "control character"},
    {bg_policy_check_resource_pattern, "kafka:topic:a\x7f", "control character"},
    {bg_policy_check_resource_pattern, "kafka:topic:a\x1f", "control character"},
    /* part of a character: literal bytes would match inside another one */
    {bg_policy_check_resource_pattern, "amqp:queue:\xe2*\x82\xac", "not valid UTF-8"},
    {bg_policy_check_resource_pattern, "amqp:queue:\xe2\x82\xac*", NULL},
    {bg_policy_check_subject, "group:\xff", "not valid UTF-8"},
    {bg_policy_check_resource_pattern, "kafka:topics:x", "unknown kafka resource"},
    {bg_policy_check_resource_pattern, "kafka:topic", "unknown kafka resource"},
    {bg_policy_check_resource_pattern, "amqp:binding:x", "unknown amqp resource"},
    {bg_policy_check_resource_pattern, "http:api", "http resource must be http:ROUTE:PATH"},
    {bg_policy_check_resource_pattern, "http::/x", "http route is empty"},
    {bg_policy_check_resource_pattern, "http:api*:/x", "http route must be a literal name or '*'"},
    {bg_policy_check_resource_pattern, "http:a?:/x", "http route must be a literal name or '*'"},
    /* only '*' alone is every route: "*api" is no route name */
    {bg_policy_check_resource_pattern, "http:*api:/x", "http route must be a literal name or '*'"},
    {bg_policy_check_resource_pattern, "http:api:users", "must start with '/' or '*'"},
    {bg_policy_check_resource_pattern, "http:api:", "must start with '/' or '*'"},
    {bg_policy_check_resource_pattern, NULL, "must start with kafka:"},
    {pt_resource, "kafka:topic:orders", NULL},
    {pt_resource, "kafka:cluster", NULL},
    {pt_resource, "http:api:/users/1", NULL},
    {pt_resource, "kafka:topic:orders.*", "takes no wildcards"},
    {pt_resource, "http:*:/x", "takes no wildcards"},
    {pt_resource, "kafka:topic:", "resource name is empty"},
    {bg_policy_check_mask_field, "customer.email", NULL},
    {bg_policy_check_mask_field, "items[*].owner", NULL},
    {bg_policy_check_mask_field, "a[0][1].b", NULL},
    {bg_policy_check_mask_field, "", "mask field is empty"},
    {bg_policy_check_mask_field, "a..b", "empty segment"},
    {bg_policy_check_mask_field, ".a", "empty segment"},
    {bg_policy_check_mask_field, "a.", "empty segment"},
    {bg_policy_check_mask_field, "[*].a", "empty segment"},
    {bg_policy_check_mask_field, "a[x]", "must be [*] or [N]"},
    {bg_policy_check_mask_field, "a[", "must be [*] or [N]"},
    {bg_policy_check_mask_field, "a[]", "must be [*] or [N]"},
    {bg_policy_check_mask_field, "a[*]b", "must start a new segment"},
    {bg_policy_check_mask_field, "a]", "']' without '['"},
};

static void test_parse_rows(void **state)
{
    int failures = 0;
    for (size_t i = 0; i < sizeof(pt_prows) / sizeof(pt_prows[0]); i++) {
        const pt_prow_t *r = &pt_prows[i];
        const char *why = NULL;
        int rc = r->fn(r->input, &why);
        int ok = r->why ? rc == -1 && why && strstr(why, r->why) : rc == 0;
        if (!ok) {
            print_error("row %zu '%s': rc %d why '%s'\n", i, r->input ? r->input : "(null)", rc,
                        why ? why : "");
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

static void test_parse_values(void **state)
{
    bg_policy_resource_t r;
    bg_verb_t v;
    const char *why;
    assert_int_equal(bg_policy_parse_verb("alter", &v, &why), 0);
    assert_int_equal(v, BG_VERB_ALTER);
    assert_string_equal(bg_verb_name(BG_VERB_DESCRIBE), "describe");
    assert_string_equal(bg_res_type_name(BG_RES_KAFKA_TXN_ID), "kafka:transactional-id");
    assert_int_equal(bg_policy_parse_resource("http:users-api:/a:b", &r, &why), 0);
    assert_int_equal(r.type, BG_RES_HTTP);
    assert_int_equal(r.route_len, 9);
    assert_memory_equal(r.route, "users-api", 9);
    assert_int_equal(r.name_len, 4);
    assert_memory_equal(r.name, "/a:b", 4);
    assert_int_equal(bg_policy_parse_resource("kafka:transactional-id:tx", &r, &why), 0);
    assert_int_equal(r.type, BG_RES_KAFKA_TXN_ID);
    assert_int_equal(bg_policy_parse_resource("kafka:cluster", &r, &why), 0);
    assert_int_equal(r.type, BG_RES_KAFKA_CLUSTER);
    assert_int_equal(r.name_len, 0);
}

/* One pattern against one resource, as busgate check asks it: each kind of
 * pattern, http routes, the cluster, and patterns that do not parse. */
static void test_pattern_matches(void **state)
{
    static const struct {
        const char *pattern, *resource;
        int want;
    } rows[] = {
        {"amqp:exchange:*", "amqp:exchange:amq.rabbitmq.trace", 1},
        {"amqp:exchange:amq.*", "amqp:exchange:amq.rabbitmq.trace", 1},
        {"amqp:exchange:amq.rabbitmq.trace", "amqp:exchange:amq.rabbitmq.trace", 1},
        {"amqp:exchange:*.trace", "amqp:exchange:amq.rabbitmq.trace", 1},
        {"amqp:exchange:amq.rabbitmq.?race", "amqp:exchange:amq.rabbitmq.trace", 1},
        {"amqp:exchange:amq.default", "amqp:exchange:amq.rabbitmq.trace", 0},
        {"amqp:exchange:amq.rabbitmq.trace.*", "amqp:exchange:amq.rabbitmq.trace", 0},
        {"amqp:queue:*", "amqp:exchange:amq.rabbitmq.trace", 0},
        {"amqp:exchange:amq.rabbitmq.tracex", "amqp:exchange:amq.rabbitmq.trace", 0},
        {"http:*:/users/*", "http:api:/users/1", 1},
        {"http:api:/users/*", "http:api:/users/1", 1},
        {"http:web:/users/*", "http:api:/users/1", 0},
        {"kafka:cluster", "kafka:cluster", 1},
        {"kafka:topic:a**", "kafka:topic:ab", 0},
        {"nonsense", "kafka:topic:ab", 0},
    };
    int failures = 0;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        bg_policy_resource_t r;
        const char *why;
        assert_int_equal(bg_policy_parse_resource(rows[i].resource, &r, &why), 0);
        int got = bg_policy_pattern_matches(rows[i].pattern, &r);
        if (got != rows[i].want) {
            print_error("%s vs %s: got %d\n", rows[i].pattern, rows[i].resource, got);
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

/* ---- compile errors ---- */

typedef struct pt_crow_s {
    pt_policy_t policy;
    const char *err; /* substring */
} pt_crow_t;

static const pt_crow_t pt_crows[] = {
    {{"deny", "enforce",
      {{"a", "*", "kafka:topic:t", "read", "allow"},
       {"b", "*", "kafka:topic:t", "read", "allow"},
       {"a", "*", "kafka:topic:u", "read", "allow"}}},
     "t.yaml:12: duplicate rule name 'a' (first at t.yaml:10)"},
    {{"deny", "enforce",
      {{"a", "*", "kafka:topic:t", "read", "allow"}},
      {{"m", "kafka:topic:t", "f"}, {"m", "kafka:topic:u", "f"}}},
     "t.yaml:101: duplicate mask name 'm' (first at t.yaml:100)"},
    {{"deny", "enforce", {{"h", "*", "kafka:topic:t", "read", "hold"}}},
     "t.yaml:10: rule 'h': effect hold needs approvers"},
    {{"hold", "enforce", {{"a", "*", "kafka:topic:t", "read", "allow"}}},
     "policy default must be allow or deny"},
    {{"deny", "enforce", {{"a", "*", "kafka:topic:t", "", "allow"}}}, "rule 'a' has no verbs"},
    {{"deny", "enforce", {{"a", "", "kafka:topic:t", "read", "allow"}}}, "rule 'a' has no subjects"},
    {{"deny", "enforce", {{"a", "*", "", "read", "allow"}}}, "t.yaml:10: rule has no resources"},
    {{"deny", "enforce", {{"a", "user:x", "kafka:topic:t", "read", "allow"}}},
     "subjects: subject 'user:x' must be"},
    {{"deny", "enforce", {{"a", "*", "kafka:topic:a**", "read", "allow"}}},
     "resource 'kafka:topic:a**': '**' is not allowed"},
    {{"deny", "enforce", {{"a", "*", "kafka:topic:t", "read", "allow", NULL, "group:x"}}},
     "approvers are only used with effect hold"},
    {{"deny", "enforce", {{"a", "*", "kafka:topic:t", "read", "hold", NULL, "bad"}}},
     "approvers: subject 'bad'"},
    {{"deny", "enforce", {{"a", "*", "kafka:topic:t", "read", "maybe"}}}, "unknown effect"},
    {{"deny", "enforce", {{"", "*", "kafka:topic:t", "read", "allow"}}}, "rule has no name"},
    {{"deny", "enforce", {{"a\x7f", "*", "kafka:topic:t", "read", "allow"}}},
     "rule name has a control character"},
    {{"deny", "enforce", {{0}}, {{"m", "kafka:topic:t", "a..b"}}}, "mask 'm': mask field"},
    {{"deny", "enforce", {{0}}, {{"m", "kafka:topic:t", ""}}}, "mask 'm' has no fields"},
    {{"deny", "enforce", {{0}}, {{"m", "kafka:cluster:x", "f"}}}, "kafka:cluster takes no name"},
    {{"deny", "enforce", {{0}}, {{"m", "kafka:topic:t", "f", "nobody"}}}, "except: subject"},
};

static void test_compile_errors(void **state)
{
    int failures = 0;
    for (size_t i = 0; i < sizeof(pt_crows) / sizeof(pt_crows[0]); i++) {
        char err[512] = "";
        bg_policy_t *p = pt_compile(&pt_crows[i].policy, err, sizeof(err));
        if (p || !strstr(err, pt_crows[i].err)) {
            print_error("compile row %zu: got %s '%s'\n", i, p ? "success" : "error", err);
            failures++;
        }
        bg_policy_free(p);
    }
    assert_int_equal(failures, 0);
}

static void test_compile_empty(void **state)
{
    static const pt_policy_t t = {"allow", "enforce"};
    char err[64];
    bg_policy_t *p = pt_compile(&t, err, sizeof(err));
    assert_non_null(p);
    bg_policy_resource_t r;
    bg_policy_decision_t d;
    const char *why;
    assert_int_equal(bg_policy_parse_resource("http:x:/y", &r, &why), 0);
    bg_policy_decide(p, NULL, &r, BG_VERB_WRITE, &d);
    assert_int_equal(d.effect, BG_EFFECT_ALLOW);
    assert_null(d.rule);
    assert_int_equal(d.nmasks, 0);
    bg_policy_free(p);
}

/* Names are at most 1024 bytes (docs/policy.md): in a pattern, a subject
 * and a concrete resource, 1024 is taken and 1025 refused. */
static void test_name_length_bound(void **state)
{
    static char s[1100];
    const char *why;
    bg_policy_resource_t r;
    for (size_t n = 1024; n <= 1025; n++) {
        int want = n <= 1024 ? 0 : -1;
        memcpy(s, "kafka:topic:", 12);
        memset(s + 12, 'a', n);
        s[12 + n] = '\0';
        assert_int_equal(bg_policy_check_resource_pattern(s, &why), want);
        if (want)
            assert_non_null(strstr(why, "longer than 1024 bytes"));
        assert_int_equal(bg_policy_parse_resource(s, &r, &why), want);
        s[12 + n - 1] = '*'; /* a prefix counts its '*' */
        assert_int_equal(bg_policy_check_resource_pattern(s, &why), want);
        memcpy(s, "group:", 6);
        memset(s + 6, 'g', n);
        s[6 + n] = '\0';
        assert_int_equal(bg_policy_check_subject(s, &why), want);
    }
}

/* What the config loader cannot produce but the compiler still refuses: a
 * verb bit past the six, and more subjects than a rule's count holds. */
static void test_compile_limits(void **state)
{
    static const char *subjects[65536];
    static const char *const res[] = {"kafka:topic:t"};
    char err[256];
    bg_policy_rule_spec_t rule = {.name = "r", .file = "t.yaml", .line = 1, .subjects = subjects,
                                  .nsubjects = 1, .resources = res, .nresources = 1,
                                  .verbs = 1u << BG_VERB__COUNT, .effect = BG_EFFECT_ALLOW,
                                  .mode = BG_MODE_INHERIT};
    bg_policy_spec_t spec = {BG_EFFECT_DENY, BG_MODE_ENFORCE, &rule, 1, NULL, 0};
    for (size_t i = 0; i < 65536; i++)
        subjects[i] = "*";
    assert_null(bg_policy_compile(&spec, err, sizeof err));
    assert_non_null(strstr(err, "rule 'r' has an unknown verb"));
    rule.verbs = 1u << BG_VERB_READ;
    rule.nsubjects = 65535;
    bg_policy_t *p = bg_policy_compile(&spec, err, sizeof err);
    assert_non_null(p);
    bg_policy_free(p);
    rule.nsubjects = 65536;
    assert_null(bg_policy_compile(&spec, err, sizeof err));
    assert_non_null(strstr(err, "t.yaml:1: too many subjects"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_rows),
        cmocka_unit_test(test_parse_values),
        cmocka_unit_test(test_pattern_matches),
        cmocka_unit_test(test_compile_errors),
        cmocka_unit_test(test_compile_empty),
        cmocka_unit_test(test_name_length_bound),
        cmocka_unit_test(test_compile_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
