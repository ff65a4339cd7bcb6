/* Audit event encoding: every field, escaping, omission of absent values,
 * and agreement with audit/audit-event.schema.json (keys and types). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "audit/audit_sink.h"

static const char *const groups[] = {"ops", "payments"};

static void full_event(bg_audit_event_t *ev, bg_policy_resource_t res[2])
{
    memset(ev, 0, sizeof *ev);
    res[0] = (bg_policy_resource_t){BG_RES_KAFKA_TOPIC, NULL, 0, "orders-XYZ", 6};
    res[1] = (bg_policy_resource_t){BG_RES_HTTP, "users-api", 9, "/users/42", 9};
    ev->kind = BG_AUDIT_EV_DECISION;
    ev->event_id = "0b7c6a8e-1d2f-4a3b-9c4d-5e6f7a8b9c0d";
    ev->time_ms = 1790000000123;
    ev->session_id = "s-1";
    ev->seq = 7;
    ev->protocol = "kafka";
    ev->peer = "127.0.0.1:5555";
    ev->principal = (bg_audit_principal_t){"alice", groups, 2, "https://idp", "jti-1"};
    ev->client_id = "rdkafka";
    ev->client_software_name = "librdkafka";
    ev->client_software_version = "2.0.2";
    ev->api = "Produce";
    ev->api_version = 7;
    ev->resources = res;
    ev->nresources = 2;
    ev->verb = BG_VERB_WRITE;
    ev->decision = (bg_audit_decision_t){BG_EFFECT_ALLOW, BG_EFFECT_DENY, "no-writes",
                                         "policy.yaml", 12, BG_MODE_AUDIT, "busgate",
                                         "writers", "policy.yaml", 5};
    ev->masked_fields = 3;
    ev->masked_records = 2;
    ev->approval_id = "ap-9";
    ev->approval_state = "pending";
    ev->result = (bg_audit_result_t){29, "TOPIC_AUTHORIZATION_FAILED", 100, 200, 5, 1234};
    ev->auth_failure_reason = "expired";
    ev->detail = "d";
    ev->has = BG_AUDIT_HAS_VERB | BG_AUDIT_HAS_DECISION | BG_AUDIT_HAS_RESULT |
              BG_AUDIT_HAS_BYTES_OUT | BG_AUDIT_HAS_LATENCY | BG_AUDIT_HAS_MASKING |
              BG_AUDIT_HAS_API_VERSION | BG_AUDIT_HAS_SEQ;
    ev->part = 2; /* part 2 of 3 of a split event */
    ev->parts = 3;
}

static json_t *encode_parse(const bg_audit_event_t *ev)
{
    char buf[8192];
    json_error_t e;
    size_t n = bg_audit_encode_json(ev, "inst-1", buf, sizeof buf);
    assert_true(n > 0);
    assert_int_equal(strlen(buf), n);
    assert_null(strchr(buf, '\n')); /* one line per event */
    json_t *j = json_loadb(buf, n, 0, &e);
    if (!j)
        fail_msg("not JSON: %s: %s", e.text, buf);
    return j;
}

static void test_full_values(void **state)
{
    bg_audit_event_t ev;
    bg_policy_resource_t res[2];
    full_event(&ev, res);
    json_t *j = encode_parse(&ev);
    assert_string_equal(json_string_value(json_object_get(j, "event_id")), ev.event_id);
    assert_string_equal(json_string_value(json_object_get(j, "kind")), "decision");
    assert_int_equal(json_integer_value(json_object_get(j, "time_ms")), 1790000000123);
    assert_string_equal(json_string_value(json_object_get(j, "instance")), "inst-1");
    assert_int_equal(json_integer_value(json_object_get(j, "seq")), 7);
    assert_int_equal(json_integer_value(json_object_get(j, "part")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "parts")), 3);
    json_t *p = json_object_get(j, "principal");
    assert_string_equal(json_string_value(json_object_get(p, "sub")), "alice");
    assert_int_equal(json_array_size(json_object_get(p, "groups")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(p, "groups"), 1)),
                        "payments");
    json_t *r = json_object_get(j, "resources");
    assert_int_equal(json_array_size(r), 2);
    /* name is a (ptr, len) view: only 6 bytes of "orders-XYZ" */
    assert_string_equal(json_string_value(json_object_get(json_array_get(r, 0), "name")), "orders");
    assert_string_equal(json_string_value(json_object_get(json_array_get(r, 0), "type")),
                        "kafka:topic");
    assert_string_equal(json_string_value(json_object_get(json_array_get(r, 1), "route")),
                        "users-api");
    assert_string_equal(json_string_value(json_object_get(j, "verb")), "write");
    json_t *d = json_object_get(j, "decision");
    assert_string_equal(json_string_value(json_object_get(d, "effect")), "allow");
    assert_string_equal(json_string_value(json_object_get(d, "would")), "deny");
    assert_string_equal(json_string_value(json_object_get(d, "mode")), "audit");
    assert_int_equal(json_integer_value(json_object_get(d, "rule_line")), 12);
    assert_string_equal(json_string_value(json_object_get(d, "by")), "busgate");
    json_t *enf = json_object_get(d, "enforced");
    assert_int_equal(json_object_size(enf), 3);
    assert_string_equal(json_string_value(json_object_get(enf, "rule")), "writers");
    assert_string_equal(json_string_value(json_object_get(enf, "rule_file")), "policy.yaml");
    assert_int_equal(json_integer_value(json_object_get(enf, "rule_line")), 5);
    json_t *res_o = json_object_get(j, "result");
    assert_int_equal(json_integer_value(json_object_get(res_o, "error_code")), 29);
    assert_int_equal(json_integer_value(json_object_get(res_o, "latency_us")), 1234);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "masking"), "fields")),
                     3);
    json_decref(j);
}

/* Checks v against a schema node: type, no undocumented keys, and (because
 * the event is fully populated) every documented key present. */
static void check_node_req(json_t *v, json_t *schema, const char *path, int require_all);

static void check_node(json_t *v, json_t *schema, const char *path)
{
    check_node_req(v, schema, path, 1);
}

/* Array items may each omit optional keys (route is http-only); together
 * they must cover every documented key. */
static void check_items(json_t *v, json_t *items, const char *path)
{
    size_t i;
    json_t *it, *seen = json_object();
    const char *k;
    json_t *sub;
    json_array_foreach(v, i, it)
    {
        check_node_req(it, items, path, 0);
        if (json_is_object(it))
            json_object_update(seen, it);
    }
    if (json_is_object(json_object_get(items, "properties"))) {
        json_object_foreach(json_object_get(items, "properties"), k, sub)
        {
            if (!json_object_get(seen, k))
                fail_msg("%s[].%s: documented key missing from a full event", path, k);
        }
    }
    json_decref(seen);
}

static void check_node_req(json_t *v, json_t *schema, const char *path, int require_all)
{
    const char *type = json_string_value(json_object_get(schema, "type"));
    assert_non_null(type);
    if (strcmp(type, "object") == 0) {
        if (!json_is_object(v))
            fail_msg("%s: not an object", path);
        json_t *props = json_object_get(schema, "properties");
        const char *k;
        json_t *sub;
        json_object_foreach(v, k, sub)
        {
            char p2[256];
            snprintf(p2, sizeof p2, "%s.%s", path, k);
            json_t *ps = json_object_get(props, k);
            if (!ps)
                fail_msg("%s: key not in the schema", p2);
            check_node(sub, ps, p2);
        }
        json_object_foreach(props, k, sub)
        {
            if (require_all && !json_object_get(v, k))
                fail_msg("%s.%s: documented key missing from a full event", path, k);
        }
    } else if (strcmp(type, "array") == 0) {
        if (!json_is_array(v))
            fail_msg("%s: not an array", path);
        check_items(v, json_object_get(schema, "items"), path);
    } else if (strcmp(type, "string") == 0) {
        if (!json_is_string(v))
            fail_msg("%s: not a string", path);
        json_t *en = json_object_get(schema, "enum");
        int found = en == NULL;
        size_t i;
        json_t *it;
        json_array_foreach(en, i, it) found |= strcmp(json_string_value(it), json_string_value(v)) == 0;
        if (!found)
            fail_msg("%s: %s not in enum", path, json_string_value(v));
    } else if (strcmp(type, "integer") == 0) {
        if (!json_is_integer(v))
            fail_msg("%s: not an integer", path);
    } else {
        fail_msg("%s: unexpected schema type %s", path, type);
    }
}

static json_t *load_schema(void)
{
    char path[4096];
    json_error_t e;
    const char *src = getenv("BG_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/audit/audit-event.schema.json", src ? src : ".");
    json_t *s = json_load_file(path, 0, &e);
    if (!s)
        fail_msg("%s: %s", path, e.text);
    return s;
}

/* Without an enforced rule (enforce mode, the default decided, a
 * policy-wide audit mode) the decision has no "enforced" member at all. */
static void test_no_enforced_rule(void **state)
{
    (void)state;
    bg_audit_event_t ev;
    bg_policy_resource_t res[2];
    full_event(&ev, res);
    ev.decision.enforced_rule = ev.decision.enforced_rule_file = NULL;
    ev.decision.enforced_rule_line = 5;
    json_t *j = encode_parse(&ev);
    json_t *d = json_object_get(j, "decision");
    assert_null(json_object_get(d, "enforced"));
    assert_string_equal(json_string_value(json_object_get(d, "rule")), "no-writes");
    assert_string_equal(json_string_value(json_object_get(d, "by")), "busgate");
    json_decref(j);
}

static void test_schema_agrees(void **state)
{
    bg_audit_event_t ev;
    bg_policy_resource_t res[2];
    full_event(&ev, res);
    json_t *schema = load_schema();
    json_t *j = encode_parse(&ev);
    check_node(j, schema, "$");
    json_decref(j);
    /* each kind name is in the schema's enum */
    for (int k = 0; k < BG_AUDIT_EV__COUNT; k++) {
        ev.kind = (bg_audit_kind_t)k;
        j = encode_parse(&ev);
        check_node(j, schema, "$");
        json_decref(j);
    }
    json_decref(schema);
}

/* The keys an object of a minimal event has (scalars: nested objects and
 * arrays come only with their has bits) are exactly the schema's required
 * ones: a reader may rely on every required key, and on nothing else. */
static void check_required(json_t *obj, json_t *node, const char *path)
{
    json_t *req = json_object_get(node, "required"), *props = json_object_get(node, "properties");
    json_t *v, *it;
    const char *k;
    size_t i;
    if (!json_is_object(obj))
        fail_msg("%s: not in the minimal event", path);
    json_array_foreach(req, i, it)
    {
        if (!json_object_get(obj, json_string_value(it)))
            fail_msg("%s.%s: required by the schema but not always written", path,
                     json_string_value(it));
    }
    json_object_foreach(obj, k, v)
    {
        int listed = 0;
        if (json_is_object(v) || json_is_array(v))
            continue;
        json_array_foreach(req, i, it) listed |= strcmp(json_string_value(it), k) == 0;
        if (!listed)
            fail_msg("%s.%s: always written but not required by the schema", path, k);
        assert_non_null(json_object_get(props, k));
    }
}

static void test_schema_required_is_always_written(void **state)
{
    (void)state;
    bg_audit_event_t ev;
    char buf[4096];
    json_error_t e;
    bg_policy_resource_t res = {BG_RES_KAFKA_TOPIC, NULL, 0, "t", 1};
    memset(&ev, 0, sizeof ev);
    ev.kind = BG_AUDIT_EV_DECISION;
    ev.resources = &res;
    ev.nresources = 1;
    /* every group an emitter can turn on, each with nothing optional in it
     * (an enforced rule always names its file) */
    ev.decision.enforced_rule = "writers";
    ev.decision.enforced_rule_file = "policy.yaml";
    ev.has = BG_AUDIT_HAS_DECISION | BG_AUDIT_HAS_RESULT | BG_AUDIT_HAS_MASKING;
    size_t n = bg_audit_encode_json(&ev, NULL, buf, sizeof buf);
    assert_true(n > 0);
    json_t *j = json_loadb(buf, n, 0, &e), *schema = load_schema();
    assert_non_null(j);
    json_t *props = json_object_get(schema, "properties");
    json_t *dec = json_object_get(props, "decision");
    check_required(j, schema, "$");
    check_required(json_object_get(j, "decision"), dec, "$.decision");
    check_required(json_object_get(json_object_get(j, "decision"), "enforced"),
                   json_object_get(json_object_get(dec, "properties"), "enforced"),
                   "$.decision.enforced");
    check_required(json_object_get(j, "result"), json_object_get(props, "result"), "$.result");
    check_required(json_object_get(j, "masking"), json_object_get(props, "masking"), "$.masking");
    check_required(json_array_get(json_object_get(j, "resources"), 0),
                   json_object_get(json_object_get(props, "resources"), "items"), "$.resources[]");
    json_decref(j);
    json_decref(schema);
}

static void test_no_secret_fields(void **state)
{
    bg_audit_event_t ev;
    bg_policy_resource_t res[2];
    full_event(&ev, res);
    json_t *schema = load_schema();
    json_t *j = encode_parse(&ev);
    /* the only token-ish key anywhere is token_id (the jti) */
    char *dump = json_dumps(j, JSON_SORT_KEYS);
    const char *needles[] = {"\"token\"", "password", "secret", "\"authorization\""};
    for (size_t i = 0; i < sizeof needles / sizeof *needles; i++)
        assert_null(strstr(dump, needles[i]));
    char *sdump = json_dumps(schema, 0);
    assert_null(strstr(sdump, "\"token\":"));
    assert_null(strstr(sdump, "password"));
    free(dump);
    free(sdump);
    json_decref(j);
    json_decref(schema);
}

/* Numbers at their extremes come out exactly (the encoder formats digits
 * itself): zero, negative, INT64_MIN and UINT64_MAX. */
static void test_number_extremes(void **state)
{
    (void)state;
    bg_audit_event_t ev;
    bg_policy_resource_t res[2];
    full_event(&ev, res);
    ev.result.error_code = -1;
    ev.result.latency_us = INT64_MIN;
    ev.result.bytes_in = UINT64_MAX;
    ev.result.bytes_out = 0;
    ev.seq = 1234567890123ull;
    char buf[8192];
    size_t n = bg_audit_encode_json(&ev, "inst-1", buf, sizeof buf);
    assert_true(n > 0);
    assert_non_null(strstr(buf, "\"error_code\":-1,"));
    assert_non_null(strstr(buf, "\"latency_us\":-9223372036854775808"));
    assert_non_null(strstr(buf, "\"bytes_in\":18446744073709551615,"));
    assert_non_null(strstr(buf, "\"bytes_out\":0,"));
    assert_non_null(strstr(buf, "\"seq\":1234567890123"));
    assert_non_null(strstr(buf, "\"time_ms\":1790000000123,"));
}

static void test_escaping(void **state)
{
    bg_audit_event_t ev = {.kind = BG_AUDIT_EV_ADMIN};
    /* quote, backslash, newline, tab, control, DEL, valid UTF-8, invalid bytes */
    ev.detail = "a\"b\\c\nd\te\x01" "f\x7f" "g\xc3\xa9h\xff\xc3i\xed\xa0\x80";
    ev.client_id = "</script>";
    json_t *j = encode_parse(&ev);
    const char *d = json_string_value(json_object_get(j, "detail"));
    assert_non_null(d);
    assert_string_equal(d, "a\"b\\c\nd\te\x01" "f\x7f" "g\xc3\xa9h\xef\xbf\xbd\xef\xbf\xbdi"
                           "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "client"), "id")),
                        "</script>");
    json_decref(j);
}

/* Resource names are written whole, NUL and all, however long (a Kafka
 * group id may have 32767 bytes): a name never reads as a shorter one. */
static void test_resource_names_whole(void **state)
{
    static char long_name[2000];
    memset(long_name, 'g', sizeof long_name);
    bg_policy_resource_t res[2] = {
        {BG_RES_KAFKA_GROUP, NULL, 0, "team-a-\0evil", 12},
        {BG_RES_KAFKA_TXN_ID, NULL, 0, long_name, sizeof long_name},
    };
    bg_audit_event_t ev = {.kind = BG_AUDIT_EV_DECISION, .resources = res, .nresources = 2};
    char buf[8192];
    json_error_t e;
    size_t n = bg_audit_encode_json(&ev, "i", buf, sizeof buf);
    assert_true(n > 0);
    json_t *j = json_loadb(buf, n, JSON_ALLOW_NUL, &e);
    if (!j)
        fail_msg("not JSON: %s", e.text);
    json_t *r0 = json_array_get(json_object_get(j, "resources"), 0);
    json_t *r1 = json_array_get(json_object_get(j, "resources"), 1);
    assert_int_equal(json_string_length(json_object_get(r0, "name")), 12);
    assert_memory_equal(json_string_value(json_object_get(r0, "name")), "team-a-\0evil", 12);
    assert_int_equal(json_string_length(json_object_get(r1, "name")), sizeof long_name);
    assert_memory_equal(json_string_value(json_object_get(r1, "name")), long_name,
                        sizeof long_name);
    json_decref(j);
}

static void test_absent_omitted(void **state)
{
    bg_audit_event_t ev = {.kind = BG_AUDIT_EV_SESSION_START};
    json_t *j = encode_parse(&ev);
    /* event_id generated, time now, instance from the pipeline; nothing else */
    assert_int_equal(json_object_size(j), 4);
    assert_int_equal(strlen(json_string_value(json_object_get(j, "event_id"))), 36);
    assert_true(json_integer_value(json_object_get(j, "time_ms")) > 1600000000000LL);
    json_decref(j);
    char buf[64];
    assert_int_equal(bg_audit_encode_json(&ev, "i", buf, 20), 0); /* too small */
}

/* A result without BG_AUDIT_HAS_BYTES_OUT / BG_AUDIT_HAS_LATENCY (an AMQP
 * decision) has no bytes_out or latency_us, not a 0 that reads as
 * measured; the other result fields stay. */
static void test_unmeasured_result_fields_omitted(void **state)
{
    (void)state;
    bg_audit_event_t ev;
    bg_policy_resource_t res[2];
    full_event(&ev, res);
    ev.has &= ~(BG_AUDIT_HAS_BYTES_OUT | BG_AUDIT_HAS_LATENCY);
    json_t *j = encode_parse(&ev);
    json_t *r = json_object_get(j, "result");
    assert_non_null(r);
    assert_null(json_object_get(r, "bytes_out"));
    assert_null(json_object_get(r, "latency_us"));
    assert_non_null(json_object_get(r, "bytes_in"));
    assert_non_null(json_object_get(r, "records"));
    assert_non_null(json_object_get(r, "error_code"));
    json_decref(j);
}

/* part and parts are written on split events only (parts >= 2); the
 * measuring functions the pipeline splits by agree with the encoder. */
static void test_parts_and_lengths(void **state)
{
    bg_audit_event_t ev;
    bg_policy_resource_t res[2];
    full_event(&ev, res);
    char buf[8192];
    for (uint32_t parts = 0; parts <= 1; parts++) {
        ev.part = parts;
        ev.parts = parts;
        json_t *j = encode_parse(&ev);
        assert_null(json_object_get(j, "part"));
        assert_null(json_object_get(j, "parts"));
        json_decref(j);
    }
    ev.part = 1;
    ev.parts = 2;
    size_t n = bg_audit_encode_json(&ev, "inst-1", buf, sizeof buf);
    assert_int_equal(bg_audit_json_len(&ev, "inst-1"), n);
    ev.event_id = NULL; /* measured as a generated id */
    ev.nresources = 1;
    n = bg_audit_encode_json(&ev, "inst-1", buf, sizeof buf);
    assert_int_equal(bg_audit_json_len(&ev, "inst-1"), n);
    const char *r = strstr(buf, "\"resources\":[") + strlen("\"resources\":[");
    assert_int_equal(bg_audit_json_resource_len(&res[0]), strchr(r, '}') + 1 - r);
    static char ctl[100];
    memset(ctl, 0x01, sizeof ctl); /* six bytes of JSON each */
    bg_policy_resource_t http = {BG_RES_HTTP, "users-api", 9, ctl, sizeof ctl};
    ev.resources = &http;
    n = bg_audit_encode_json(&ev, "inst-1", buf, sizeof buf);
    assert_int_equal(bg_audit_json_len(&ev, "inst-1"), n);
    r = strstr(buf, "\"resources\":[") + strlen("\"resources\":[");
    assert_int_equal(bg_audit_json_resource_len(&http), strchr(r, '}') + 1 - r);
}

static void test_uuid4(void **state)
{
    enum { N = 20000 };
    char(*ids)[37] = calloc(N, 37);
    for (int i = 0; i < N; i++) {
        bg_audit_uuid4(ids[i]);
        assert_int_equal(strlen(ids[i]), 36);
        assert_int_equal(ids[i][14], '4');
        assert_non_null(strchr("89ab", ids[i][19]));
        assert_int_equal(ids[i][8], '-');
        assert_int_equal(ids[i][23], '-');
    }
    qsort(ids, N, 37, (int (*)(const void *, const void *))strcmp);
    for (int i = 1; i < N; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
    free(ids);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_values),
        cmocka_unit_test(test_no_enforced_rule),
        cmocka_unit_test(test_schema_agrees),
        cmocka_unit_test(test_schema_required_is_always_written),
        cmocka_unit_test(test_no_secret_fields),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_resource_names_whole),
        cmocka_unit_test(test_number_extremes),
        cmocka_unit_test(test_absent_omitted),
        cmocka_unit_test(test_unmeasured_result_fields_omitted),
        cmocka_unit_test(test_parts_and_lengths),
        cmocka_unit_test(test_uuid4),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
