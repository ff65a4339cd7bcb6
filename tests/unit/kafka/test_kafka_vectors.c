/* Kafka codec against vectors of every message at every valid version
 * (kafka_vectors.inc, written from Kafka's JSON definitions by
 * adapters/kafka/gen/gen_kafka_vectors.py with an encoder of its own).
 * Each vector decodes with busgate's descriptors, consuming every byte; the
 * decoded fields, listed in order with their values, equal the generator's
 * listing (so each field is read at its place, in its versions, with its
 * encoding); and it re-encodes byte for byte: encode(decode(x)) == x. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "adapters/kafka/kafka_codec.h"

#include "kafka_vectors.h"
#include "kafka_vectors.inc"

typedef struct {
    char *p;
    size_t len, cap;
} kv_out_t;

static void kv_printf(kv_out_t *o, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        assert_true(n >= 0);
        if (o->len + (size_t)n < o->cap) {
            o->len += (size_t)n;
            return;
        }
        o->cap = (o->cap + (size_t)n + 64) * 2;
        o->p = realloc(o->p, o->cap);
        assert_non_null(o->p);
    }
}

static void kv_hex(kv_out_t *o, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        kv_printf(o, "%02x", p[i]);
}

static void kv_scalar(kv_out_t *o, uint8_t type, const bg_kafka_val_t *v)
{
    switch (type) {
    case BG_KAFKA_T_FLOAT64:
        kv_printf(o, "%.17g", v->f);
        break;
    case BG_KAFKA_T_STRING:
        if (v->s.len < 0)
            kv_printf(o, "null");
        else
            kv_printf(o, "%.*s", (int)v->s.len, (const char *)v->s.p);
        break;
    case BG_KAFKA_T_BYTES:
    case BG_KAFKA_T_RECORDS:
        if (v->s.len < 0)
            kv_printf(o, "null");
        else
            kv_hex(o, v->s.p, (size_t)v->s.len);
        break;
    case BG_KAFKA_T_UUID:
        kv_hex(o, v->uuid, 16);
        break;
    default: /* bool and the integers */
        kv_printf(o, "%lld", (long long)v->i);
    }
}

static void kv_struct(kv_out_t *o, const bg_kafka_struct_t *s, const bg_kafka_struct_desc_t *sd,
                      int16_t ver, int flex, const char *path);

static void kv_field(kv_out_t *o, const bg_kafka_field_desc_t *f, const bg_kafka_val_t *v,
                     int16_t ver, int flex, const char *path)
{
    char sub[512];
    if (f->type == BG_KAFKA_T_ARRAY) {
        if (v->a.n < 0) {
            kv_printf(o, "%s#=null\n", path);
            return;
        }
        kv_printf(o, "%s#=%d\n", path, (int)v->a.n);
        for (int32_t i = 0; i < v->a.n; i++) {
            if (snprintf(sub, sizeof sub, "%s[%d]", path, (int)i) >= (int)sizeof sub)
                fail_msg("field path too long: %s", path);
            if (f->elem == BG_KAFKA_T_STRUCT) {
                kv_struct(o, v->a.s[i], f->sub, ver, flex, sub);
            } else {
                kv_printf(o, "%s=", sub);
                kv_scalar(o, f->elem, &v->a.v[i]);
                kv_printf(o, "\n");
            }
        }
    } else if (f->type == BG_KAFKA_T_STRUCT) {
        if (!v->st)
            kv_printf(o, "%s=null\n", path);
        else
            kv_struct(o, v->st, f->sub, ver, flex, path);
    } else {
        kv_printf(o, "%s=", path);
        kv_scalar(o, f->type, v);
        kv_printf(o, "\n");
    }
}

/* Regular fields of the version in order, then (flexible) its tagged ones
 * in field order: the generator lists them so. */
static void kv_struct(kv_out_t *o, const bg_kafka_struct_t *s, const bg_kafka_struct_desc_t *sd,
                      int16_t ver, int flex, const char *path)
{
    char sub[512];
    for (int pass = 0; pass < 2; pass++) {
        for (uint16_t i = 0; i < sd->nfields; i++) {
            const bg_kafka_field_desc_t *f = &sd->fields[i];
            int present = pass == 0 ? f->tag < 0 && ver >= f->ver_min && ver <= f->ver_max
                                    : flex && f->tag >= 0 && ver >= f->tag_min && ver <= f->tag_max;
            if (!present)
                continue;
            if (snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", f->name) >=
                (int)sizeof sub)
                fail_msg("field path too long: %s", path);
            kv_field(o, f, &s->f[i], ver, flex, sub);
        }
    }
}

/* The first line where got and want differ, for the failure message. */
static void kv_first_diff(const char *got, const char *want, char *out, size_t cap)
{
    size_t line = 1;
    while (*got && *got == *want) {
        line += *got == '\n';
        got++, want++;
    }
    while (line > 1 && got[-1] != '\n')
        got--, want--;
    snprintf(out, cap, "line %zu: got \"%.*s\", want \"%.*s\"", line, (int)strcspn(got, "\n"), got,
             (int)strcspn(want, "\n"), want);
}

static void test_every_message_every_version(void **state)
{
    (void)state;
    size_t n = sizeof kv_vectors / sizeof kv_vectors[0], checked = 0;
    int seen[BG_KAFKA_API_MAX_KEY + 1][2] = {{0}};
    for (size_t k = 0; k < n; k++) {
        const kv_vector_t *t = &kv_vectors[k];
        const bg_kafka_msg_desc_t *d = bg_kafka_msg_desc(t->api_key, t->is_response);
        if (!d)
            fail_msg("%s: no descriptor for api %d", t->name, t->api_key);
        assert_string_equal(d->name, t->name);
        if (t->version < d->valid_min || t->version > d->valid_max)
            fail_msg("%s v%d: outside its versions %d-%d", t->name, t->version, d->valid_min,
                     d->valid_max);
        bg_kafka_arena_t a;
        bg_kafka_arena_init(&a, 0);
        bg_rd_t rd;
        bg_rd_init(&rd, t->bytes, t->len);
        bg_kafka_struct_t *s = NULL;
        int rc = bg_kafka_decode(d, t->version, &rd, &a, &s);
        if (rc != BG_KAFKA_OK || bg_rd_left(&rd) != 0)
            fail_msg("%s v%d: decode %d (%s) at offset %td, %zu byte(s) left", t->name,
                     t->version, rc, rd.why ? rd.why : "-", rd.p - t->bytes, bg_rd_left(&rd));
        kv_out_t o = {NULL, 0, 0};
        kv_printf(&o, "%s", "");
        kv_struct(&o, s, d->body, t->version, bg_kafka_is_flexible(d, t->version), "");
        if (strcmp(o.p, t->dump) != 0) {
            char why[1024];
            kv_first_diff(o.p, t->dump, why, sizeof why);
            fail_msg("%s v%d: decoded fields differ, %s", t->name, t->version, why);
        }
        free(o.p);
        bg_wr_t w;
        bg_wr_init(&w, 0, 0);
        const char *why = NULL;
        if (bg_kafka_encode(d, t->version, s, &w, &why) != BG_KAFKA_OK)
            fail_msg("%s v%d: encode failed: %s", t->name, t->version, why ? why : "-");
        if (w.len != t->len || (t->len && memcmp(w.buf, t->bytes, t->len) != 0))
            fail_msg("%s v%d: re-encoded %zu byte(s), not the vector's %zu", t->name, t->version,
                     w.len, t->len);
        bg_wr_free(&w);
        bg_kafka_arena_free(&a);
        seen[t->api_key][t->is_response]++;
        checked++;
    }
    /* every request and response busgate has a descriptor for, every
     * version once (the table holds no duplicates: same order as generated) */
    for (int key = 0; key <= BG_KAFKA_API_MAX_KEY; key++)
        for (int r = 0; r < 2; r++) {
            const bg_kafka_msg_desc_t *d = bg_kafka_msg_desc((int16_t)key, r);
            if (d && d->valid_min <= d->valid_max &&
                seen[key][r] != d->valid_max - d->valid_min + 1)
                fail_msg("%s: %d vector(s) for %d version(s)", d->name, seen[key][r],
                         d->valid_max - d->valid_min + 1);
        }
    assert_true(checked >= 600);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_message_every_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
