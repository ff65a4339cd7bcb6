/* bg_policy_explain: exact text for each decision shape, JSON shape, and
 * snprintf-style truncation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "policy/policy_explain.h"
#include "policy_test_util.h"

static const pt_policy_t pt_pol = {
    "deny",
    "enforce",
    {{"x", "*", "kafka:topic:t", "read", "allow"},
     {"y", "group:dev", "kafka:topic:t*", "read", "deny", "audit"},
     {"z", "*", "kafka:topic:t", "read write", "allow"},
     {"q", "*", "kafka:topic:\"q\"", "read", "allow"}},
    {{"pii", "kafka:topic:t", "customer.email card.number", "group:fraud"}}};

typedef struct pt_xrow_s {
    const char *groups, *resource;
    int json;
    const char *want;
} pt_xrow_t;

static const pt_xrow_t pt_xrows[] = {
    {"", "kafka:topic:t", 0,
     "allow by rule 'x' (t.yaml:10)\n"
     "also matched: allow by rule 'z' (t.yaml:12)\n"
     "mask: 'pii' (t.yaml:100) redact json customer.email, card.number\n"
     "note: this build refuses it: masking is not part of this build\n"},
    {"dev", "kafka:topic:t", 0,
     "allow by rule 'x' (t.yaml:10)\n"
     "mode: audit (would deny by rule 'y' (t.yaml:11))\n"
     "also matched: allow by rule 'z' (t.yaml:12)\n"
     "mask: 'pii' (t.yaml:100) redact json customer.email, card.number\n"
     "note: this build refuses it: masking is not part of this build\n"},
    {"fraud", "kafka:topic:u", 0, "deny by default\n"},
    {"dev", "kafka:topic:tx", 0, "deny by default\nalso matched: deny by rule 'y' (t.yaml:11) (mode: audit)\n"},
    {"fraud", "kafka:topic:\"q\"", 1,
     "{\"effect\":\"allow\",\"would\":\"allow\",\"mode\":\"enforce\","
     "\"rule\":{\"name\":\"q\",\"file\":\"t.yaml\",\"line\":13},"
     "\"enforced_rule\":{\"name\":\"q\",\"file\":\"t.yaml\",\"line\":13},"
     "\"matched\":[{\"name\":\"q\",\"file\":\"t.yaml\",\"line\":13,\"effect\":\"allow\","
     "\"mode\":\"enforce\"}],\"masks\":[],\"refused_by_build\":null}\n"},
    {"dev", "kafka:topic:t", 1,
     "{\"effect\":\"allow\",\"would\":\"deny\",\"mode\":\"audit\","
     "\"rule\":{\"name\":\"y\",\"file\":\"t.yaml\",\"line\":11},"
     "\"enforced_rule\":{\"name\":\"x\",\"file\":\"t.yaml\",\"line\":10},"
     "\"matched\":[{\"name\":\"x\",\"file\":\"t.yaml\",\"line\":10,\"effect\":\"allow\","
     "\"mode\":\"enforce\"},{\"name\":\"y\",\"file\":\"t.yaml\",\"line\":11,\"effect\":\"deny\","
     "\"mode\":\"audit\"},{\"name\":\"z\",\"file\":\"t.yaml\",\"line\":12,\"effect\":\"allow\","
     "\"mode\":\"enforce\"}],\"masks\":[{\"name\":\"pii\",\"file\":\"t.yaml\",\"line\":100,"
     "\"format\":\"json\",\"strategy\":\"redact\",\"fields\":[\"customer.email\","
     "\"card.number\"]}],"
     "\"refused_by_build\":\"this build refuses it: masking is not part of this build\"}\n"},
};

static void test_explain_rows(void **state)
{
    char err[256], buf[2048];
    bg_policy_t *p = pt_compile(&pt_pol, err, sizeof(err));
    assert_non_null(p);
    int failures = 0;
    for (size_t i = 0; i < sizeof(pt_xrows) / sizeof(pt_xrows[0]); i++) {
        bg_policy_principal_t pr;
        bg_policy_resource_t res;
        const char *why;
        pt_principal(p, "u", pt_xrows[i].groups, &pr);
        assert_int_equal(bg_policy_parse_resource(pt_xrows[i].resource, &res, &why), 0);
        int n = bg_policy_explain(p, &pr, &res, BG_VERB_READ, buf, sizeof(buf), pt_xrows[i].json);
        bg_policy_principal_clear(&pr);
        if (n != (int)strlen(pt_xrows[i].want) || strcmp(buf, pt_xrows[i].want) != 0) {
            print_error("row %zu: got (%d)\n%s\nwant\n%s\n", i, n, buf, pt_xrows[i].want);
            failures++;
        }
    }
    bg_policy_free(p);
    assert_int_equal(failures, 0);
}

static void test_explain_global_audit(void **state)
{
    pt_policy_t t = pt_pol;
    char err[256], buf[512];
    t.mode = "audit";
    bg_policy_t *p = pt_compile(&t, err, sizeof(err));
    assert_non_null(p);
    bg_policy_principal_t pr;
    bg_policy_resource_t res;
    const char *why;
    pt_principal(p, "u", "dev", &pr);
    assert_int_equal(bg_policy_parse_resource("kafka:topic:t", &res, &why), 0);
    bg_policy_explain(p, &pr, &res, BG_VERB_READ, buf, sizeof(buf), 0);
    assert_string_equal(buf, "allow by default\n"
                             "mode: audit (would deny by rule 'y' (t.yaml:11))\n"
                             "also matched: allow by rule 'x' (t.yaml:10)\n"
                             "also matched: allow by rule 'z' (t.yaml:12)\n"
                             "mask: 'pii' (t.yaml:100) redact json customer.email, card.number\n"
                             "note: this build refuses it: masking is not part of this build\n");
    assert_int_equal(bg_policy_parse_resource("kafka:topic:none", &res, &why), 0);
    bg_policy_explain(p, &pr, &res, BG_VERB_READ, buf, sizeof(buf), 0);
    assert_string_equal(buf, "allow by default\nmode: audit (would deny by default)\n");

    /* truncation: returns the full length, stays terminated */
    char small[10];
    int n = bg_policy_explain(p, &pr, &res, BG_VERB_READ, small, sizeof(small), 0);
    assert_int_equal(n, (int)strlen("allow by default\nmode: audit (would deny by default)\n"));
    assert_string_equal(small, "allow by ");
    bg_policy_principal_clear(&pr);
    bg_policy_free(p);
}

/* The note on what this build refuses follows the adapters' rule
 * (bg_policy_unbuilt): a hold always; an allow a mask applies to only for a
 * verb that moves data (reading a topic or queue; for an AMQP exchange,
 * reading or writing it, when the request moves bodies). */
static const pt_policy_t pt_unbuilt_pol = {
    "deny",
    "enforce",
    {{"h", "*", "kafka:topic:held", "read", "hold", NULL, "group:ops"},
     {"a", "*", "kafka:topic:m amqp:queue:m amqp:exchange:m", "read write", "allow"}},
    {{"pii", "kafka:topic:m amqp:queue:m amqp:exchange:m", "card.number"}}};

typedef struct pt_nrow_s {
    const char *resource;
    bg_verb_t verb;
    const char *note; /* the last line, or NULL: no note */
} pt_nrow_t;

static const pt_nrow_t pt_nrows[] = {
    {"kafka:topic:held", BG_VERB_READ,
     "note: this build refuses it: hold rules refuse in this build (approvals are not part of "
     "it)\n"},
    {"kafka:topic:m", BG_VERB_READ,
     "note: this build refuses it: masking is not part of this build\n"},
    {"kafka:topic:m", BG_VERB_WRITE, NULL},
    {"amqp:queue:m", BG_VERB_READ, "note: this build refuses it: masking is not part of this build\n"},
    {"amqp:queue:m", BG_VERB_WRITE, NULL},
    {"amqp:exchange:m", BG_VERB_WRITE,
     "note: this build refuses it when it moves message bodies (publish, bind, alternate-exchange "
     "and dead-letter routes; not unbind): masking is not part of this build\n"},
    {"kafka:topic:m", BG_VERB_DELETE, NULL}, /* denied by default: nothing to refuse */
};

static void test_explain_unbuilt_notes(void **state)
{
    char err[256], buf[2048];
    bg_policy_t *p = pt_compile(&pt_unbuilt_pol, err, sizeof(err));
    assert_non_null(p);
    int failures = 0;
    for (size_t i = 0; i < sizeof(pt_nrows) / sizeof(pt_nrows[0]); i++) {
        bg_policy_principal_t pr;
        bg_policy_resource_t res;
        const char *why;
        pt_principal(p, "u", "", &pr);
        assert_int_equal(bg_policy_parse_resource(pt_nrows[i].resource, &res, &why), 0);
        bg_policy_explain(p, &pr, &res, pt_nrows[i].verb, buf, sizeof(buf), 0);
        bg_policy_principal_clear(&pr);
        const char *note = strstr(buf, "note: ");
        int ok = pt_nrows[i].note ? note && strcmp(note, pt_nrows[i].note) == 0 : !note;
        if (!ok) {
            print_error("row %zu: got\n%s\nwant the note %s\n", i, buf,
                        pt_nrows[i].note ? pt_nrows[i].note : "(none)");
            failures++;
        }
    }
    bg_policy_free(p);
    assert_int_equal(failures, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_explain_rows),
        cmocka_unit_test(test_explain_global_audit),
        cmocka_unit_test(test_explain_unbuilt_notes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
