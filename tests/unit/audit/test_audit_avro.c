/* Avro encoding of audit events: the embedded schema is the one in
 * audit/busgate-audit.avsc; a fully populated event encoded by busgate and
 * decoded with avro-c has the same field values as its JSON form; absent
 * optional groups decode as null; the Confluent wire format header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <avro.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "audit/audit_avro.h"
#include "audit/audit_sink.h"

/* avro-c leaks the string it was reading when the input ends inside it (its
 * error path; the decode tests cut events short on purpose). */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libavro\n"; }

static const char *const groups[] = {"orders", "payments"};

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
    ev->result = (bg_audit_result_t){29, "TOPIC_AUTHORIZATION_FAILED", 100, 200, 5, 1234};
    ev->detail = "d";
    ev->has = BG_AUDIT_HAS_VERB | BG_AUDIT_HAS_DECISION | BG_AUDIT_HAS_RESULT |
              BG_AUDIT_HAS_BYTES_OUT | BG_AUDIT_HAS_LATENCY | BG_AUDIT_HAS_MASKING |
              BG_AUDIT_HAS_API_VERSION | BG_AUDIT_HAS_SEQ;
    ev->part = 2;
    ev->parts = 3;
}

static char *slurp(const char *rel, size_t *len)
{
    char path[4096];
    const char *root = getenv("BG_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/%s", root ? root : ".", rel);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(*len + 1);
    assert_int_equal(fread(b, 1, *len, f), *len);
    b[*len] = '\0';
    fclose(f);
    return b;
}

static void test_schema_file_matches(void **state)
{
    size_t len;
    char *text = slurp("audit/busgate-audit.avsc", &len);
    avro_schema_t file, mine;
    assert_int_equal(avro_schema_from_json_length(text, len, &file), 0);
    const char *m = bg_audit_avro_schema();
    assert_int_equal(avro_schema_from_json_length(m, strlen(m), &mine), 0);
    assert_true(avro_schema_equal(file, mine));
    avro_schema_decref(file);
    avro_schema_decref(mine);
    free(text);
}

/* Decodes buf[0..n) as an AuditEvent into *out (caller decrefs). */
static void decode(const uint8_t *buf, size_t n, avro_value_t *out, avro_value_iface_t **iface,
                   avro_schema_t *schema)
{
    const char *m = bg_audit_avro_schema();
    assert_int_equal(avro_schema_from_json_length(m, strlen(m), schema), 0);
    *iface = avro_generic_class_from_schema(*schema);
    assert_non_null(*iface);
    assert_int_equal(avro_generic_value_new(*iface, out), 0);
    avro_reader_t r = avro_reader_memory((const char *)buf, (int64_t)n);
    assert_int_equal(avro_value_read(r, out), 0);
    avro_reader_free(r);
}

static const char *str_at(avro_value_t *v, const char *path)
{
    /* path like "principal.sub": descends records and non-null union branches */
    char buf[128], *save = NULL;
    snprintf(buf, sizeof buf, "%s", path);
    avro_value_t cur = *v, next;
    for (char *t = strtok_r(buf, ".", &save); t; t = strtok_r(NULL, ".", &save)) {
        if (avro_value_get_type(&cur) == AVRO_UNION) {
            assert_int_equal(avro_value_get_current_branch(&cur, &next), 0);
            cur = next;
        }
        assert_int_equal(avro_value_get_by_name(&cur, t, &next, NULL), 0);
        cur = next;
    }
    if (avro_value_get_type(&cur) == AVRO_UNION) {
        int disc = 0;
        avro_value_get_discriminant(&cur, &disc);
        if (disc == 0)
            return NULL;
        avro_value_get_current_branch(&cur, &next);
        cur = next;
    }
    const char *s = NULL;
    size_t sl;
    if (avro_value_get_type(&cur) == AVRO_STRING) {
        assert_int_equal(avro_value_get_string(&cur, &s, &sl), 0);
        return s;
    }
    static char num[32];
    int64_t l = 0;
    assert_int_equal(avro_value_get_long(&cur, &l), 0);
    snprintf(num, sizeof num, "%lld", (long long)l);
    return num;
}

static void test_full_event_roundtrip(void **state)
{
    bg_audit_event_t ev;
    bg_policy_resource_t res[2];
    full_event(&ev, res);
    char json[8192];
    size_t jl = bg_audit_encode_json(&ev, "inst-1", json, sizeof json);
    assert_true(jl > 0);
    char err[256] = "";
    bg_audit_avro_t *av = bg_audit_avro_new(42, err, sizeof err);
    if (!av)
        fail_msg("%s", err);
    uint8_t buf[8192];
    size_t n = bg_audit_avro_encode(av, json, jl, buf, sizeof buf);
    assert_true(n > 5 && n < jl); /* binary, smaller than the JSON */
    const uint8_t hdr[5] = {0, 0, 0, 0, 42};
    assert_memory_equal(buf, hdr, 5);

    avro_value_t v;
    avro_value_iface_t *iface;
    avro_schema_t schema;
    decode(buf + 5, n - 5, &v, &iface, &schema);
    assert_string_equal(str_at(&v, "event_id"), ev.event_id);
    assert_string_equal(str_at(&v, "kind"), "decision");
    assert_string_equal(str_at(&v, "time_ms"), "1790000000123");
    assert_string_equal(str_at(&v, "instance"), "inst-1");
    assert_string_equal(str_at(&v, "seq"), "7");
    assert_string_equal(str_at(&v, "principal.sub"), "alice");
    assert_string_equal(str_at(&v, "principal.token_id"), "jti-1");
    assert_string_equal(str_at(&v, "client.id"), "rdkafka");
    assert_null(str_at(&v, "client.software_name")); /* absent in the event */
    assert_string_equal(str_at(&v, "api.name"), "Produce");
    assert_string_equal(str_at(&v, "api.version"), "7");
    assert_string_equal(str_at(&v, "verb"), "write");
    assert_string_equal(str_at(&v, "decision.effect"), "allow");
    assert_string_equal(str_at(&v, "decision.would"), "deny");
    assert_string_equal(str_at(&v, "decision.rule"), "no-writes");
    assert_string_equal(str_at(&v, "decision.rule_line"), "12");
    assert_string_equal(str_at(&v, "decision.mode"), "audit");
    assert_string_equal(str_at(&v, "decision.by"), "busgate");
    assert_string_equal(str_at(&v, "decision.enforced.rule"), "writers");
    assert_string_equal(str_at(&v, "decision.enforced.rule_file"), "policy.yaml");
    assert_string_equal(str_at(&v, "decision.enforced.rule_line"), "5");
    assert_string_equal(str_at(&v, "masking.fields"), "3");
    assert_string_equal(str_at(&v, "result.error_name"), "TOPIC_AUTHORIZATION_FAILED");
    assert_string_equal(str_at(&v, "result.latency_us"), "1234");
    assert_string_equal(str_at(&v, "result.bytes_out"), "200");
    assert_null(str_at(&v, "approval")); /* no approval: the null branch */
    assert_null(str_at(&v, "auth_failure_reason"));
    assert_string_equal(str_at(&v, "detail"), "d");
    assert_string_equal(str_at(&v, "part"), "2");
    assert_string_equal(str_at(&v, "parts"), "3");
    /* arrays */
    avro_value_t arr, el, f;
    size_t count = 0;
    assert_int_equal(avro_value_get_by_name(&v, "resources", &arr, NULL), 0);
    assert_int_equal(avro_value_get_size(&arr, &count), 0);
    assert_int_equal(count, 2);
    assert_int_equal(avro_value_get_by_index(&arr, 1, &el, NULL), 0);
    assert_string_equal(str_at(&el, "type"), "http");
    assert_string_equal(str_at(&el, "name"), "/users/42");
    assert_string_equal(str_at(&el, "route"), "users-api");
    assert_int_equal(avro_value_get_by_name(&v, "principal", &f, NULL), 0);
    assert_int_equal(avro_value_get_current_branch(&f, &el), 0);
    assert_int_equal(avro_value_get_by_name(&el, "groups", &arr, NULL), 0);
    assert_int_equal(avro_value_get_size(&arr, &count), 0);
    assert_int_equal(count, 2);
    assert_int_equal(avro_value_get_by_index(&arr, 1, &f, NULL), 0);
    const char *g;
    size_t gl;
    assert_int_equal(avro_value_get_string(&f, &g, &gl), 0);
    assert_string_equal(g, "payments");

    avro_value_decref(&v);
    avro_value_iface_decref(iface);
    avro_schema_decref(schema);
    bg_audit_avro_free(av);
}

/* Avro back to JSON (what `busgate audit tail/replay` reads from an Avro
 * topic): every field of the JSON event comes back with its value; with the
 * wire header, without it. What is not one whole event of the schema is
 * malformed, never read in part: cut short, a wrong header, a byte after
 * the event (a newer version's fields this reader does not know, or two
 * messages run together), a string that is not UTF-8 (it would be left out
 * of the JSON, and the event shown without, say, its principal). */
static void test_decode_back_to_json(void **state)
{
    bg_audit_event_t ev;
    bg_policy_resource_t res[2];
    full_event(&ev, res);
    char json[8192], err[256] = "";
    size_t jl = bg_audit_encode_json(&ev, "inst-1", json, sizeof json);
    json_t *orig = json_loadb(json, jl, 0, NULL);
    assert_non_null(orig);
    for (int32_t id = -1; id <= 42; id += 43) {
        bg_audit_avro_t *av = bg_audit_avro_new(id, err, sizeof err);
        assert_non_null(av);
        uint8_t buf[8192];
        size_t n = bg_audit_avro_encode(av, json, jl, buf, sizeof buf - 1);
        assert_true(n > 0);
        char *back = bg_audit_avro_decode(av, buf, n);
        assert_non_null(back);
        json_t *j = json_loads(back, 0, NULL);
        assert_non_null(j);
        const char *key;
        json_t *val;
        json_object_foreach(orig, key, val) {
            if (!json_equal(val, json_object_get(j, key)))
                fail_msg("field %s differs: %s", key, back);
        }
        json_decref(j);
        free(back);
        assert_null(bg_audit_avro_decode(av, buf, n - 1)); /* cut short */
        buf[n] = 0; /* one more byte: a null union tag, a zero length */
        assert_null(bg_audit_avro_decode(av, buf, n + 1));
        size_t at = 0;
        while (at + 5 <= n && memcmp(buf + at, "alice", 5) != 0)
            at++;
        assert_true(at + 5 <= n);
        buf[at] ^= 0x80; /* the principal's sub, no longer UTF-8 */
        assert_null(bg_audit_avro_decode(av, buf, n));
        buf[at] ^= 0x80;
        buf[0] ^= 0xff; /* a wrong header, or a garbage length (-128 + ...) */
        assert_null(bg_audit_avro_decode(av, buf, n));
        bg_audit_avro_free(av);
    }
    json_decref(orig);
}

/* An event that did not measure bytes_out and latency_us (an AMQP
 * decision) has null for them in Avro, and decoding back to JSON leaves
 * them out rather than writing 0. */
static void test_unmeasured_result_fields_null(void **state)
{
    (void)state;
    bg_audit_event_t ev;
    bg_policy_resource_t res[2];
    full_event(&ev, res);
    ev.has &= ~(BG_AUDIT_HAS_BYTES_OUT | BG_AUDIT_HAS_LATENCY);
    char json[8192], err[256] = "";
    size_t jl = bg_audit_encode_json(&ev, "inst-1", json, sizeof json);
    assert_true(jl > 0);
    bg_audit_avro_t *av = bg_audit_avro_new(42, err, sizeof err);
    if (!av)
        fail_msg("%s", err);
    uint8_t buf[8192];
    size_t n = bg_audit_avro_encode(av, json, jl, buf, sizeof buf);
    assert_true(n > 5);
    avro_value_t v;
    avro_value_iface_t *iface;
    avro_schema_t schema;
    decode(buf + 5, n - 5, &v, &iface, &schema);
    assert_null(str_at(&v, "result.bytes_out"));
    assert_null(str_at(&v, "result.latency_us"));
    assert_string_equal(str_at(&v, "result.bytes_in"), "100");
    avro_value_decref(&v);
    avro_value_iface_decref(iface);
    avro_schema_decref(schema);
    char *back = bg_audit_avro_decode(av, buf, n);
    assert_non_null(back);
    json_t *j = json_loads(back, 0, NULL);
    json_t *r = json_object_get(j, "result");
    assert_non_null(r);
    assert_null(json_object_get(r, "bytes_out"));
    assert_null(json_object_get(r, "latency_us"));
    assert_non_null(json_object_get(r, "records"));
    json_decref(j);
    free(back);
    bg_audit_avro_free(av);
}

/* A name holding NUL, and a long one, survive Avro and back whole. */
static void test_names_with_nul_roundtrip(void **state)
{
    static char long_name[1500];
    memset(long_name, 'x', sizeof long_name);
    bg_policy_resource_t res[2] = {
        {BG_RES_KAFKA_GROUP, NULL, 0, "g\0h", 3},
        {BG_RES_KAFKA_GROUP, NULL, 0, long_name, sizeof long_name},
    };
    bg_audit_event_t ev = {.kind = BG_AUDIT_EV_DECISION, .resources = res, .nresources = 2};
    char json[8192], err[256] = "";
    size_t jl = bg_audit_encode_json(&ev, "inst-1", json, sizeof json);
    assert_true(jl > 0);
    bg_audit_avro_t *av = bg_audit_avro_new(-1, err, sizeof err);
    assert_non_null(av);
    uint8_t buf[8192];
    size_t n = bg_audit_avro_encode(av, json, jl, buf, sizeof buf);
    assert_true(n > 0);
    char *back = bg_audit_avro_decode(av, buf, n);
    assert_non_null(back);
    json_t *a = json_loadb(json, jl, JSON_ALLOW_NUL, NULL), *b = json_loads(back, JSON_ALLOW_NUL, NULL);
    assert_non_null(a);
    assert_non_null(b);
    json_t *ra = json_object_get(a, "resources"), *rb = json_object_get(b, "resources");
    if (!json_equal(ra, rb))
        fail_msg("resources differ: %s", back);
    assert_int_equal(json_string_length(json_object_get(json_array_get(rb, 0), "name")), 3);
    assert_int_equal(json_string_length(json_object_get(json_array_get(rb, 1), "name")), 1500);
    json_decref(a);
    json_decref(b);
    free(back);
    bg_audit_avro_free(av);
}

/* A minimal event (auth failure: no principal), plain Avro (no header);
 * the encoder is reused, so nothing of the previous event may leak in. */
static void test_minimal_plain_and_errors(void **state)
{
    char err[256];
    bg_audit_avro_t *av = bg_audit_avro_new(-1, err, sizeof err);
    assert_non_null(av);
    uint8_t buf[4096];
    bg_audit_event_t ev;
    bg_policy_resource_t res[2];
    full_event(&ev, res);
    char json[8192];
    size_t jl = bg_audit_encode_json(&ev, "i", json, sizeof json);
    assert_true(bg_audit_avro_encode(av, json, jl, buf, sizeof buf) > 0);
    memset(&ev, 0, sizeof ev);
    ev.kind = BG_AUDIT_EV_AUTH_FAILURE;
    ev.auth_failure_reason = "bad signature";
    ev.peer = "10.0.0.1:1";
    jl = bg_audit_encode_json(&ev, NULL, json, sizeof json);
    size_t n = bg_audit_avro_encode(av, json, jl, buf, sizeof buf);
    assert_true(n > 0);
    avro_value_t v;
    avro_value_iface_t *iface;
    avro_schema_t schema;
    decode(buf, n, &v, &iface, &schema);
    assert_string_equal(str_at(&v, "kind"), "auth_failure");
    assert_string_equal(str_at(&v, "auth_failure_reason"), "bad signature");
    assert_null(str_at(&v, "principal"));
    assert_null(str_at(&v, "decision"));
    assert_null(str_at(&v, "part")); /* not split: null */
    assert_null(str_at(&v, "parts"));
    avro_value_t arr;
    size_t count = 99;
    assert_int_equal(avro_value_get_by_name(&v, "resources", &arr, NULL), 0);
    assert_int_equal(avro_value_get_size(&arr, &count), 0);
    assert_int_equal(count, 0);
    avro_value_decref(&v);
    avro_value_iface_decref(iface);
    avro_schema_decref(schema);

    assert_int_equal(bg_audit_avro_encode(av, "{not json", 9, buf, sizeof buf), 0);
    assert_int_equal(bg_audit_avro_encode(av, json, jl, buf, 4), 0); /* too small */
    bg_audit_avro_free(av);
}

/* ---- split events ---- */

/* A sink that keeps what it is given (the JSON of each record). */
typedef struct keep_sink_s {
    bg_audit_sink_t base;
    char *json[16];
    size_t len[16], n;
} keep_sink_t;

static size_t keep_write(bg_audit_sink_t *s, const bg_audit_rec_t *recs, size_t n)
{
    keep_sink_t *k = (keep_sink_t *)s;
    for (size_t i = 0; i < n; i++) {
        size_t jl;
        const char *j = bg_audit_rec_json(&recs[i], &jl);
        assert_true(k->n < 16);
        k->len[k->n] = jl;
        k->json[k->n++] = memcpy(malloc(jl), j, jl);
        s->cb.delivered(s->cb.core, &recs[i]);
    }
    return n;
}

static int keep_flush(bg_audit_sink_t *s, int timeout_ms)
{
    return 0;
}
static void keep_close(bg_audit_sink_t *s) {}

/* The parts of an event the pipeline split (three huge names first, an
 * ordinary one behind them) go through Avro and back unchanged, part and
 * parts included, with the wire header and without. */
static void test_split_event_roundtrip(void **state)
{
    keep_sink_t k = {
        .base = {.name = "keep", .write = keep_write, .flush = keep_flush, .close = keep_close}};
    bg_config_audit_t cfg = {.enabled = 1, .on_failure = BG_AUDIT_BLOCK, .queue_size = 64};
    char err[256] = "";
    bg_audit_t *a = bg_audit_new_with_sink(&cfg, "i", &k.base, err, sizeof err);
    assert_non_null(a);
    static char name[32000];
    memset(name, 0x01, sizeof name);
    bg_policy_resource_t res[4];
    for (int i = 0; i < 3; i++)
        res[i] = (bg_policy_resource_t){BG_RES_KAFKA_TOPIC, NULL, 0, name, sizeof name};
    res[3] = (bg_policy_resource_t){BG_RES_KAFKA_TOPIC, NULL, 0, "orders", 6};
    bg_audit_event_t ev = {.kind = BG_AUDIT_EV_DECISION,
                           .session_id = "s",
                           .seq = 9,
                           .api = "Fetch",
                           .resources = res,
                           .nresources = 4,
                           .has = BG_AUDIT_HAS_SEQ};
    assert_int_equal(bg_audit_emit(a, &ev), BG_AUDIT_OK);
    assert_int_equal(bg_audit_flush(a, 5000), 0);
    bg_audit_free(a);
    assert_int_equal(k.n, 2);
    for (int32_t id = -1; id <= 7; id += 8) {
        bg_audit_avro_t *av = bg_audit_avro_new(id, err, sizeof err);
        assert_non_null(av);
        for (size_t p = 0; p < k.n; p++) {
            size_t cap = k.len[p] + 64;
            uint8_t *buf = malloc(cap);
            size_t n = bg_audit_avro_encode(av, k.json[p], k.len[p], buf, cap);
            assert_true(n > 0);
            char *back = bg_audit_avro_decode(av, buf, n);
            assert_non_null(back);
            json_t *orig = json_loadb(k.json[p], k.len[p], 0, NULL), *j = json_loads(back, 0, NULL);
            assert_non_null(orig);
            assert_non_null(j);
            assert_int_equal(json_integer_value(json_object_get(j, "part")), p + 1);
            assert_int_equal(json_integer_value(json_object_get(j, "parts")), 2);
            if (!json_equal(orig, j))
                fail_msg("part %zu changed through Avro", p + 1);
            json_decref(orig);
            json_decref(j);
            free(back);
            free(buf);
        }
        bg_audit_avro_free(av);
    }
    for (size_t p = 0; p < k.n; p++)
        free(k.json[p]);
}

/* The schema file with its changes up to older version k undone: 1 =
 * before decision.enforced, 2 = also before part and parts. */
static avro_schema_t older_schema(int k)
{
    size_t len;
    char *text = slurp("audit/busgate-audit.avsc", &len);
    json_t *sj = json_loads(text, 0, NULL), *fields = json_object_get(sj, "fields"), *f;
    size_t i;
    json_array_foreach(fields, i, f)
    {
        if (strcmp(json_string_value(json_object_get(f, "name")), "decision") != 0)
            continue;
        json_t *df = json_object_get(json_array_get(json_object_get(f, "type"), 1), "fields");
        json_t *last = json_array_get(df, json_array_size(df) - 1);
        assert_string_equal(json_string_value(json_object_get(last, "name")), "enforced");
        json_array_remove(df, json_array_size(df) - 1);
    }
    if (k >= 2) {
        assert_string_equal(json_string_value(json_object_get(
                                json_array_get(fields, json_array_size(fields) - 1), "name")),
                            "parts");
        json_array_remove(fields, json_array_size(fields) - 1);
        json_array_remove(fields, json_array_size(fields) - 1);
    }
    char *old_text = json_dumps(sj, JSON_COMPACT);
    avro_schema_t old;
    assert_int_equal(avro_schema_from_json_length(old_text, strlen(old_text), &old), 0);
    free(old_text);
    json_decref(sj);
    free(text);
    return old;
}

/* cur[0..n) (an event of this schema, after the 5-byte header) rewritten as
 * an event of the older schema old into out (header copied); its length. */
static size_t write_as(avro_schema_t old, const uint8_t *cur, size_t n, uint8_t *out, size_t cap)
{
    avro_value_t v, view;
    avro_value_iface_t *iface;
    avro_schema_t schema;
    decode(cur + 5, n - 5, &v, &iface, &schema);
    avro_value_iface_t *res = avro_resolved_reader_new(schema, old);
    assert_non_null(res);
    assert_int_equal(avro_resolved_reader_new_value(res, &view), 0);
    avro_resolved_reader_set_source(&view, &v);
    avro_writer_t w = avro_writer_memory((char *)out + 5, (int64_t)(cap - 5));
    assert_int_equal(avro_value_write(w, &view), 0);
    size_t len = 5 + (size_t)avro_writer_tell(w);
    avro_writer_free(w);
    memcpy(out, cur, 5);
    avro_value_decref(&view);
    avro_value_iface_decref(res);
    avro_value_decref(&v);
    avro_value_iface_decref(iface);
    avro_schema_decref(schema);
    return len;
}

/* Events written before decision.enforced, and before part and parts (an
 * audit topic keeps a year of them), still decode, to the JSON they had:
 * a decision event in audit mode and one without a decision. */
static void test_older_version_events_decode(void **state)
{
    (void)state;
    char err[256] = "";
    bg_audit_avro_t *av = bg_audit_avro_new(3, err, sizeof err);
    assert_non_null(av);
    for (int kind = 0; kind < 2; kind++) {
        bg_audit_event_t ev;
        bg_policy_resource_t res[2];
        full_event(&ev, res);
        ev.part = ev.parts = 0;
        if (kind == 1) {
            ev.kind = BG_AUDIT_EV_SESSION_START;
            ev.has &= ~BG_AUDIT_HAS_DECISION;
        }
        char json[8192];
        size_t jl = bg_audit_encode_json(&ev, "inst-1", json, sizeof json);
        uint8_t buf[8192], old_buf[8192];
        size_t n = bg_audit_avro_encode(av, json, jl, buf, sizeof buf);
        assert_true(n > 7);
        /* what the older busgate wrote: the same event without the field */
        ev.decision.enforced_rule = NULL;
        jl = bg_audit_encode_json(&ev, "inst-1", json, sizeof json);
        json_t *want = json_loadb(json, jl, 0, NULL);
        for (int k = 1; k <= 2; k++) {
            avro_schema_t old = older_schema(k);
            size_t on = write_as(old, buf, n, old_buf, sizeof old_buf);
            avro_schema_decref(old);
            if (kind == 0)
                assert_true(on < n); /* the enforced union is gone */
            char *back = bg_audit_avro_decode(av, old_buf, on);
            if (!back)
                fail_msg("version -%d of a %s event not decoded", k, kind ? "session" : "decision");
            json_t *j = json_loads(back, 0, NULL);
            if (!json_equal(want, j))
                fail_msg("version -%d event decoded differently: %s", k, back);
            json_decref(j);
            free(back);
            assert_null(bg_audit_avro_decode(av, old_buf, on - 1)); /* no version */
        }
        json_decref(want);
    }
    bg_audit_avro_free(av);
}

/* The Confluent header carries the whole schema id, big-endian: an id
 * above 255 (registries hand out ids in the thousands) is not its low byte
 * alone, nor little-endian. */
static void test_wire_header_schema_id_big_endian(void **state)
{
    (void)state;
    bg_audit_event_t ev;
    bg_policy_resource_t res[2];
    full_event(&ev, res);
    char json[8192], err[256] = "";
    size_t jl = bg_audit_encode_json(&ev, "inst-1", json, sizeof json);
    assert_true(jl > 0);
    bg_audit_avro_t *av = bg_audit_avro_new(0x01020304, err, sizeof err);
    assert_non_null(av);
    uint8_t buf[8192];
    size_t n = bg_audit_avro_encode(av, json, jl, buf, sizeof buf);
    assert_true(n > 5);
    const uint8_t hdr[5] = {0, 1, 2, 3, 4};
    assert_memory_equal(buf, hdr, 5);
    bg_audit_avro_free(av);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema_file_matches),
        cmocka_unit_test(test_full_event_roundtrip),
        cmocka_unit_test(test_decode_back_to_json),
        cmocka_unit_test(test_unmeasured_result_fields_null),
        cmocka_unit_test(test_names_with_nul_roundtrip),
        cmocka_unit_test(test_minimal_plain_and_errors),
        cmocka_unit_test(test_split_event_roundtrip),
        cmocka_unit_test(test_older_version_events_decode),
        cmocka_unit_test(test_wire_header_schema_id_big_endian),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
