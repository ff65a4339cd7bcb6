/* Avro encoding of audit events (audit.format: avro), with avro-c.
 *
 * The schema is audit/busgate-audit.avsc; the copy below is what busgate
 * uses, and a unit test checks that both parse to the same schema. The
 * encoder converts the event's JSON form (what the pipeline, the spool and
 * the file carry) field by field, walking the Avro schema: a record field
 * takes the JSON member of the same name, an optional field (union with
 * null) takes the null branch when the member is absent. So the JSON
 * schema stays the single description of the content, and only the Kafka
 * message value changes form.
 *
 * With a schema id >= 0 the output is in the Confluent wire format:
 * [0x00][u32 BE schema id][Avro binary]. */
#include "audit/audit_avro.h"

#include <avro.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char bg_audit__avsc[] =
    "{\"type\":\"record\",\"name\":\"AuditEvent\",\"fields\":[{\"name\":\"event_id\",\"type\":\"string\","
    "\"doc\":\"UUID v4; the same on every copy of a re-delivered event\"},{\"name\":\"kind\",\"type\":\"s"
    "tring\",\"doc\":\"session_start, session_end, auth_failure, decision, reload, approval, admin\"},{\""
    "name\":\"time_ms\",\"type\":\"long\",\"doc\":\"Unix time in milliseconds\"},{\"name\":\"instance\",\""
    "type\":[\"null\",\"string\"],\"default\":null},{\"name\":\"session_id\",\"type\":[\"null\",\"string\""
    "],\"default\":null},{\"name\":\"seq\",\"type\":[\"null\",\"long\"],\"default\":null},{\"name\":\"pro"
    "tocol\",\"type\":[\"null\",\"string\"],\"default\":null},{\"name\":\"peer\",\"type\":[\"null\",\"str"
    "ing\"],\"default\":null},{\"name\":\"principal\",\"type\":[\"null\",{\"type\":\"record\",\"name\":\""
    "Principal\",\"fields\":[{\"name\":\"sub\",\"type\":[\"null\",\"string\"],\"default\":null},{\"name\""
    ":\"groups\",\"type\":{\"type\":\"array\",\"items\":\"string\"},\"default\":[]},{\"name\":\"issuer\","
    "\"type\":[\"null\",\"string\"],\"default\":null},{\"name\":\"token_id\",\"type\":[\"null\",\"string\""
    "],\"default\":null}]}],\"default\":null},{\"name\":\"client\",\"type\":[\"null\",{\"type\":\"record\""
    ",\"name\":\"Client\",\"fields\":[{\"name\":\"id\",\"type\":[\"null\",\"string\"],\"default\":null},{"
    "\"name\":\"software_name\",\"type\":[\"null\",\"string\"],\"default\":null},{\"name\":\"software_ver"
    "sion\",\"type\":[\"null\",\"string\"],\"default\":null}]}],\"default\":null},{\"name\":\"api\",\"typ"
    "e\":[\"null\",{\"type\":\"record\",\"name\":\"Api\",\"fields\":[{\"name\":\"name\",\"type\":[\"null\""
    ",\"string\"],\"default\":null},{\"name\":\"version\",\"type\":[\"null\",\"long\"],\"default\":null}]"
    "}],\"default\":null},{\"name\":\"resources\",\"type\":{\"type\":\"array\",\"items\":{\"type\":\"reco"
    "rd\",\"name\":\"Resource\",\"fields\":[{\"name\":\"type\",\"type\":\"string\"},{\"name\":\"name\",\""
    "type\":\"string\"},{\"name\":\"route\",\"type\":[\"null\",\"string\"],\"default\":null}]}},\"default"
    "\":[]},{\"name\":\"verb\",\"type\":[\"null\",\"string\"],\"default\":null},{\"name\":\"decision\",\""
    "type\":[\"null\",{\"type\":\"record\",\"name\":\"Decision\",\"fields\":[{\"name\":\"effect\",\"type\""
    ":[\"null\",\"string\"],\"default\":null},{\"name\":\"would\",\"type\":[\"null\",\"string\"],\"defaul"
    "t\":null},{\"name\":\"rule\",\"type\":[\"null\",\"string\"],\"default\":null},{\"name\":\"rule_file\""
    ",\"type\":[\"null\",\"string\"],\"default\":null},{\"name\":\"rule_line\",\"type\":[\"null\",\"long\""
    "],\"default\":null},{\"name\":\"mode\",\"type\":[\"null\",\"string\"],\"default\":null},{\"name\":\""
    "by\",\"type\":[\"null\",\"string\"],\"default\":null},{\"name\":\"enforced\",\"type\":[\"null\",{\"t"
    "ype\":\"record\",\"name\":\"EnforcedRule\",\"fields\":[{\"name\":\"rule\",\"type\":[\"null\",\"strin"
    "g\"],\"default\":null},{\"name\":\"rule_file\",\"type\":[\"null\",\"string\"],\"default\":null},{\"n"
    "ame\":\"rule_line\",\"type\":[\"null\",\"long\"],\"default\":null}]}],\"default\":null,\"doc\":\"Onl"
    "y in audit mode, when rule is an audit-mode rule: the enforce-mode rule whose effect was applied\"}]"
    "}],\"default\":null},{\"name\":\"masking\",\"type\":[\"null\",{\"type\":\"record\",\"name\":\"Maskin"
    "g\",\"fields\":[{\"name\":\"fields\",\"type\":[\"null\",\"long\"],\"default\":null},{\"name\":\"reco"
    "rds\",\"type\":[\"null\",\"long\"],\"default\":null}]}],\"default\":null},{\"name\":\"approval\",\"t"
    "ype\":[\"null\",{\"type\":\"record\",\"name\":\"Approval\",\"fields\":[{\"name\":\"id\",\"type\":[\""
    "null\",\"string\"],\"default\":null},{\"name\":\"state\",\"type\":[\"null\",\"string\"],\"default\":"
    "null}]}],\"default\":null},{\"name\":\"result\",\"type\":[\"null\",{\"type\":\"record\",\"name\":\"R"
    "esult\",\"fields\":[{\"name\":\"error_code\",\"type\":[\"null\",\"long\"],\"default\":null},{\"name\""
    ":\"error_name\",\"type\":[\"null\",\"string\"],\"default\":null},{\"name\":\"bytes_in\",\"type\":[\""
    "null\",\"long\"],\"default\":null},{\"name\":\"bytes_out\",\"type\":[\"null\",\"long\"],\"default\":"
    "null},{\"name\":\"records\",\"type\":[\"null\",\"long\"],\"default\":null},{\"name\":\"latency_us\","
    "\"type\":[\"null\",\"long\"],\"default\":null}]}],\"default\":null},{\"name\":\"auth_failure_reason\""
    ",\"type\":[\"null\",\"string\"],\"default\":null},{\"name\":\"detail\",\"type\":[\"null\",\"string\""
    "],\"default\":null},{\"name\":\"part\",\"type\":[\"null\",\"long\"],\"default\":null,\"doc\":\"Only "
    "on an event split because it was too large for one record: which part this is (1-based)\"},{\"name\""
    ":\"parts\",\"type\":[\"null\",\"long\"],\"default\":null,\"doc\":\"Only on a split event: how many p"
    "arts it has\"}],\"doc\":\"busgate audit event (Avro form of audit-event.schema.json). Optional value"
    "s are unions with null.\",\"namespace\":\"dev.busgate.audit\"}";

/* The schema's changes, newest first, each an optional field appended to
 * a record: decision.enforced, then (before it) part and parts at the end
 * of the event. A topic may hold events written before any of them: the
 * decoder tries this schema, then each older version in turn (the schema
 * with the changes up to it undone). An event without part and parts ends
 * where they would begin, so it never reads whole as a newer one. Events
 * without a decision are the same bytes with or without decision.enforced;
 * an older decision event read as a newer one reads its union tags one
 * field off (without an error code the tag read is bytes_in's value, no
 * valid tag; with one, strings of garbage that would also have to be
 * UTF-8 and end exactly at the event's end), which fails in practice. */
#define BG_AUDIT__AVRO_OLDER 2

/* One version of the schema, ready to read or write values. */
typedef struct bg_audit__avro_form_s {
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t val;
    int has_val;
} bg_audit__avro_form_t;

struct bg_audit_avro_s {
    bg_audit__avro_form_t cur;                         /* this schema */
    bg_audit__avro_form_t prev[BG_AUDIT__AVRO_OLDER]; /* the older versions, newest first */
    int32_t schema_id;
};

const char *bg_audit_avro_schema(void) { return bg_audit__avsc; }

/* avro-c's allocator, bounded: a decoded length field is trusted by avro-c
 * and sized straight into an allocation, so garbage (a huge or negative
 * string length) would ask for exabytes. No audit event needs more than
 * 16 MiB in one piece, and while a message is decoded nothing in it can
 * need much more than the message itself (a string is at most as long);
 * larger requests fail, and the decode with them. */
static _Thread_local size_t bg_audit__avro_limit;

static void *bg_audit__avro_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud, (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    size_t limit = bg_audit__avro_limit ? bg_audit__avro_limit : 16u << 20;
    return nsize > limit ? NULL : realloc(ptr, nsize);
}

static int bg_audit__avro_form(bg_audit__avro_form_t *f, const char *text, size_t len)
{
    if (avro_schema_from_json_length(text, len, &f->schema) != 0 ||
        !(f->iface = avro_generic_class_from_schema(f->schema)) ||
        avro_generic_value_new(f->iface, &f->val) != 0)
        return -1;
    f->has_val = 1;
    return 0;
}

static void bg_audit__avro_form_free(bg_audit__avro_form_t *f)
{
    if (f->has_val)
        avro_value_decref(&f->val);
    if (f->iface)
        avro_value_iface_decref(f->iface);
    if (f->schema)
        avro_schema_decref(f->schema);
}

/* The index of the named field in record rec's fields, or -1. */
static long bg_audit__avro_field(json_t *rec, const char *name)
{
    json_t *fields = json_object_get(rec, "fields");
    for (size_t i = 0; i < json_array_size(fields); i++) {
        const char *n = json_string_value(json_object_get(json_array_get(fields, i), "name"));
        if (n && strcmp(n, name) == 0)
            return (long)i;
    }
    return -1;
}

/* The named field of record rec's fields, removed; 0 when it was there. */
static int bg_audit__avro_drop(json_t *rec, const char *name)
{
    long i = bg_audit__avro_field(rec, name);
    return i < 0 ? -1 : json_array_remove(json_object_get(rec, "fields"), (size_t)i);
}

/* Undoes change k (0 = the newest) of schema j, in place; 0 on success. */
static int bg_audit__avro_undo(json_t *j, int k)
{
    if (k == 1)
        return bg_audit__avro_drop(j, "parts") || bg_audit__avro_drop(j, "part");
    long d = bg_audit__avro_field(j, "decision"); /* ["null", Decision] */
    json_t *decision = d < 0 ? NULL : json_array_get(json_object_get(j, "fields"), (size_t)d);
    return bg_audit__avro_drop(json_array_get(json_object_get(decision, "type"), 1), "enforced");
}

/* The older versions of the schema, newest first. */
static int bg_audit__avro_older(bg_audit_avro_t *av)
{
    json_t *j = json_loadb(bg_audit__avsc, sizeof bg_audit__avsc - 1, 0, NULL);
    int rc = j ? 0 : -1;
    for (int k = 0; rc == 0 && k < BG_AUDIT__AVRO_OLDER; k++) {
        char *text = NULL;
        rc = bg_audit__avro_undo(j, k) != 0 ||
                     !(text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER))
                 ? -1
                 : bg_audit__avro_form(&av->prev[k], text, strlen(text));
        free(text);
    }
    json_decref(j);
    return rc;
}

bg_audit_avro_t *bg_audit_avro_new(int32_t schema_id, char *err, size_t errlen)
{
    avro_set_allocator(bg_audit__avro_alloc, NULL); /* process-wide, idempotent */
    bg_audit_avro_t *av = calloc(1, sizeof *av);
    if (!av) {
        snprintf(err, errlen, "audit avro: out of memory");
        return NULL;
    }
    av->schema_id = schema_id;
    if (bg_audit__avro_form(&av->cur, bg_audit__avsc, sizeof bg_audit__avsc - 1) != 0 ||
        bg_audit__avro_older(av) != 0) {
        snprintf(err, errlen, "audit avro: %s", avro_strerror());
        bg_audit_avro_free(av);
        return NULL;
    }
    return av;
}

void bg_audit_avro_free(bg_audit_avro_t *av)
{
    if (!av)
        return;
    bg_audit__avro_form_free(&av->cur);
    for (int k = 0; k < BG_AUDIT__AVRO_OLDER; k++)
        bg_audit__avro_form_free(&av->prev[k]);
    free(av);
}

/* Fills v (of any schema type used above) from j; j NULL = absent. */
static int bg_audit__avro_fill(avro_value_t *v, json_t *j)
{
    avro_value_t sub;
    size_t n, i;
    const char *name;
    switch (avro_value_get_type(v)) {
    case AVRO_RECORD:
        if (avro_value_get_size(v, &n) != 0)
            return -1;
        for (i = 0; i < n; i++)
            if (avro_value_get_by_index(v, i, &sub, &name) != 0 ||
                bg_audit__avro_fill(&sub, j ? json_object_get(j, name) : NULL) != 0)
                return -1;
        return 0;
    case AVRO_UNION: /* ["null", T] */
        if (!j || json_is_null(j))
            return avro_value_set_branch(v, 0, &sub) || avro_value_set_null(&sub);
        return avro_value_set_branch(v, 1, &sub) || bg_audit__avro_fill(&sub, j);
    case AVRO_STRING:
        if (!j || !json_is_string(j))
            return avro_value_set_string(v, "");
        /* the size counts a terminating NUL; names may hold NUL themselves */
        return avro_value_set_string_len(v, json_string_value(j), json_string_length(j) + 1);
    case AVRO_INT64:
        return avro_value_set_long(v, j ? (int64_t)json_integer_value(j) : 0);
    case AVRO_INT32:
        return avro_value_set_int(v, j ? (int32_t)json_integer_value(j) : 0);
    case AVRO_ARRAY:
        for (i = 0; j && i < json_array_size(j); i++)
            if (avro_value_append(v, &sub, NULL) != 0 ||
                bg_audit__avro_fill(&sub, json_array_get(j, i)) != 0)
                return -1;
        return 0;
    case AVRO_NULL:
        return avro_value_set_null(v);
    default:
        return -1;
    }
}

size_t bg_audit_avro_encode(bg_audit_avro_t *av, const char *json, size_t len, uint8_t *dst,
                            size_t cap)
{
    size_t hdr = av->schema_id >= 0 ? 5 : 0;
    json_t *j = json_loadb(json, len, JSON_ALLOW_NUL, NULL);
    if (!j || cap <= hdr) {
        json_decref(j);
        return 0;
    }
    avro_value_reset(&av->cur.val);
    int rc = bg_audit__avro_fill(&av->cur.val, j);
    json_decref(j);
    if (rc != 0)
        return 0;
    avro_writer_t w = avro_writer_memory((char *)dst + hdr, (int64_t)(cap - hdr));
    if (!w)
        return 0;
    rc = avro_value_write(w, &av->cur.val);
    size_t n = rc == 0 ? hdr + (size_t)avro_writer_tell(w) : 0;
    avro_writer_free(w);
    if (n && hdr) {
        uint32_t id = (uint32_t)av->schema_id;
        dst[0] = 0; /* Confluent magic byte, then the id big-endian */
        dst[1] = (uint8_t)(id >> 24);
        dst[2] = (uint8_t)(id >> 16);
        dst[3] = (uint8_t)(id >> 8);
        dst[4] = (uint8_t)id;
    }
    return n;
}

/* The JSON of Avro value v (the inverse of bg_audit__avro_fill); NULL for an
 * absent union member, which the caller leaves out. *bad set on failure. */
static json_t *bg_audit__avro_json(const avro_value_t *v, int *bad)
{
    avro_value_t sub;
    size_t n, i;
    const char *name, *str;
    int64_t l;
    int32_t k;
    json_t *j;
    switch (avro_value_get_type(v)) {
    case AVRO_RECORD:
        if (avro_value_get_size(v, &n) != 0 || !(j = json_object()))
            break;
        for (i = 0; i < n; i++) {
            if (avro_value_get_by_index(v, i, &sub, &name) != 0) {
                json_decref(j);
                goto bad;
            }
            json_t *f = bg_audit__avro_json(&sub, bad);
            if (f && json_is_array(f) && json_array_size(f) == 0) {
                json_decref(f); /* the JSON form leaves empty lists out */
                continue;
            }
            if (f && json_object_set_new(j, name, f) != 0)
                *bad = 1;
        }
        return j;
    case AVRO_UNION:
        if (avro_value_get_discriminant(v, &k) != 0 || avro_value_get_current_branch(v, &sub) != 0)
            break;
        return k == 0 ? NULL : bg_audit__avro_json(&sub, bad);
    case AVRO_STRING: /* n counts a terminating NUL; a name may hold NUL too */
        if (avro_value_get_string(v, &str, &n) != 0 ||
            !(j = json_stringn(str, n ? n - 1 : 0))) /* NULL: not UTF-8 */
            break;
        return j;
    case AVRO_INT64:
        if (avro_value_get_long(v, &l) != 0)
            break;
        return json_integer(l);
    case AVRO_INT32:
        if (avro_value_get_int(v, &k) != 0)
            break;
        return json_integer(k);
    case AVRO_ARRAY:
        if (avro_value_get_size(v, &n) != 0 || !(j = json_array()))
            break;
        for (i = 0; i < n; i++) {
            json_t *e = avro_value_get_by_index(v, i, &sub, NULL) == 0
                            ? bg_audit__avro_json(&sub, bad) : NULL;
            if (!e || json_array_append_new(j, e) != 0)
                *bad = 1;
        }
        return j;
    case AVRO_NULL:
        return NULL;
    default:
        break;
    }
bad:
    *bad = 1;
    return NULL;
}

/* Reads one whole event p[0..n) as form f; 0 when it is one. */
static int bg_audit__avro_read(bg_audit__avro_form_t *f, const uint8_t *p, size_t n)
{
    avro_reader_t r = avro_reader_memory((const char *)p, (int64_t)n);
    if (!r)
        return -1;
    avro_value_reset(&f->val);
    bg_audit__avro_limit = 64 * n + (64u << 10) < (16u << 20) ? 64 * n + (64u << 10) : 16u << 20;
    int rc = avro_value_read(r, &f->val);
    bg_audit__avro_limit = 0;
    char extra;
    int whole = rc == 0 && avro_read(r, &extra, 1) != 0; /* nothing may follow the event */
    avro_reader_free(r);
    return rc == 0 && whole ? 0 : -1;
}

char *bg_audit_avro_decode(bg_audit_avro_t *av, const uint8_t *p, size_t n)
{
    if (av->schema_id >= 0) {
        if (n < 5 || p[0] != 0)
            return NULL;
        p += 5;
        n -= 5;
    }
    bg_audit__avro_form_t *f = &av->cur;
    for (int k = 0; bg_audit__avro_read(f, p, n) != 0; k++) {
        if (k == BG_AUDIT__AVRO_OLDER)
            return NULL;
        f = &av->prev[k];
    }
    int bad = 0;
    json_t *j = bg_audit__avro_json(&f->val, &bad);
    char *out = j && !bad ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    return out;
}
