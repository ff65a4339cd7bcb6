/* Helpers shared by the Kafka codec tests: an independent spec-level byte
 * builder (so vectors are written from the protocol description, not with
 * the codec under test) and the decode / re-encode / truncation checks. */
#ifndef TEST_KAFKA_CODEC_UTIL_H
#define TEST_KAFKA_CODEC_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "adapters/kafka/kafka_codec.h"

/* Vector builder: appends raw encodings as the Kafka protocol guide gives them. */
typedef struct {
    uint8_t b[16384];
    size_t n;
    int flex; /* compact lengths + tagged sections */
} kt_vec_t;

static inline void kt_init(kt_vec_t *v, int flex)
{
    v->n = 0;
    v->flex = flex;
}
static inline void kt_raw(kt_vec_t *v, const void *p, size_t n)
{
    assert_true(v->n + n <= sizeof v->b);
    memcpy(v->b + v->n, p, n);
    v->n += n;
}
static inline void kt_be(kt_vec_t *v, uint64_t x, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--) {
        uint8_t c = (uint8_t)(x >> (8 * i));
        kt_raw(v, &c, 1);
    }
}
#define kt_i8(v, x) kt_be(v, (uint64_t)(int64_t)(x), 1)
#define kt_i16(v, x) kt_be(v, (uint64_t)(int64_t)(x), 2)
#define kt_i32(v, x) kt_be(v, (uint64_t)(int64_t)(x), 4)
#define kt_i64(v, x) kt_be(v, (uint64_t)(int64_t)(x), 8)
static inline void kt_uv(kt_vec_t *v, uint64_t x)
{
    while (x >= 0x80) {
        uint8_t c = (uint8_t)(x | 0x80);
        kt_raw(v, &c, 1);
        x >>= 7;
    }
    uint8_t c = (uint8_t)x;
    kt_raw(v, &c, 1);
}
/* string: classic int16 length / compact uvarint length+1; NULL = null. */
static inline void kt_str(kt_vec_t *v, const char *s)
{
    int n = s ? (int)strlen(s) : -1;
    if (v->flex)
        kt_uv(v, (uint64_t)(n + 1));
    else
        kt_i16(v, n);
    if (s)
        kt_raw(v, s, (size_t)n);
}
/* bytes/records: classic int32 length / compact uvarint length+1; len -1 = null. */
static inline void kt_bytes(kt_vec_t *v, const void *p, int len)
{
    if (v->flex)
        kt_uv(v, (uint64_t)(len + 1));
    else
        kt_i32(v, len);
    if (len > 0)
        kt_raw(v, p, (size_t)len);
}
/* array count: classic int32 / compact uvarint n+1; -1 = null. */
static inline void kt_arr(kt_vec_t *v, int n)
{
    if (v->flex)
        kt_uv(v, (uint64_t)(n + 1));
    else
        kt_i32(v, n);
}
/* empty tagged-field section (flexible versions only). */
static inline void kt_tags0(kt_vec_t *v)
{
    if (v->flex)
        kt_uv(v, 0);
}
static inline void kt_uuid(kt_vec_t *v, uint8_t fill)
{
    uint8_t u[16];
    memset(u, fill, 16);
    kt_raw(v, u, 16);
}

/* Appends one tagged field (tag, size, value bytes of val). */
static inline void kt_tag(kt_vec_t *v, uint32_t tag, const kt_vec_t *val)
{
    kt_uv(v, tag);
    kt_uv(v, val->n);
    kt_raw(v, val->b, val->n);
}

/* Parses hex with optional spaces into out; returns the length. */
static inline size_t kt_hex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = hex; *p;) {
        if (*p == ' ' || *p == '\n') {
            p++;
            continue;
        }
        unsigned x;
        assert_true(sscanf(p, "%2x", &x) == 1);
        assert_true(n < cap);
        out[n++] = (uint8_t)x;
        p += 2;
    }
    return n;
}

static bg_kafka_arena_t kt_arena;

static inline int kt_setup(void **state)
{
    bg_kafka_arena_init(&kt_arena, 0);
    return 0;
}
static inline int kt_teardown(void **state)
{
    bg_kafka_arena_free(&kt_arena);
    return 0;
}

static inline int kt_slice_eq(bg_slice_t s, const char *c)
{
    if (!c)
        return s.len == -1;
    return s.len == (int32_t)strlen(c) && memcmp(s.p, c, (size_t)s.len) == 0;
}

/* Every strict prefix must fail to decode, reading only inside its bytes
 * (each prefix is a fresh exact-size heap copy so ASan sees overreads). */
static inline void kt_truncations(const bg_kafka_msg_desc_t *d, int16_t ver, const uint8_t *p,
                                  size_t n)
{
    bg_kafka_arena_t a;
    bg_kafka_arena_init(&a, 0);
    for (size_t k = 0; k < n; k++) {
        uint8_t *copy = malloc(k ? k : 1);
        memcpy(copy, p, k);
        bg_rd_t rd;
        bg_rd_init(&rd, copy, k);
        bg_kafka_struct_t *s;
        int rc = bg_kafka_decode(d, ver, &rd, &a, &s);
        if (rc >= 0)
            fail_msg("%s v%d: prefix of %zu/%zu bytes decoded", d->name, ver, k, n);
        assert_non_null(rd.why);
        assert_true(rd.p >= copy && rd.p <= copy + k);
        free(copy);
        bg_kafka_arena_reset(&a);
    }
    bg_kafka_arena_free(&a);
}

/* With BG_KAFKA_DUMP_CORPUS=dir set, every round-tripped vector is also
 * written as fuzz seeds: dir/kafka_frame/ gets request frames (size prefix,
 * header, body), dir/kafka_response/ gets response bodies behind the 3-byte
 * selector (api key, version - valid_min, flags) that fuzzer reads. */
static inline void kt_dump_seed(const bg_kafka_msg_desc_t *d, int16_t ver, const uint8_t *p,
                                size_t n)
{
    const char *dir = getenv("BG_KAFKA_DUMP_CORPUS");
    if (!dir)
        return;
    uint8_t *buf = malloc(n + 64);
    size_t len = 0;
    if (!d->is_response) {
        int flex = ver >= d->flex_min;
        uint8_t hdr[] = {0,
                         0,
                         0,
                         0,
                         (uint8_t)(d->api_key >> 8),
                         (uint8_t)d->api_key,
                         (uint8_t)(ver >> 8),
                         (uint8_t)ver,
                         0,
                         0,
                         0,
                         7,
                         0,
                         2,
                         'k',
                         't'};
        memcpy(buf, hdr, sizeof hdr);
        len = sizeof hdr;
        if (flex)
            buf[len++] = 0;
        memcpy(buf + len, p, n);
        len += n;
        uint32_t sz = (uint32_t)(len - 4);
        buf[0] = (uint8_t)(sz >> 24), buf[1] = (uint8_t)(sz >> 16), buf[2] = (uint8_t)(sz >> 8),
        buf[3] = (uint8_t)sz;
    } else {
        buf[0] = (uint8_t)d->api_key;
        buf[1] = (uint8_t)(ver - d->valid_min);
        buf[2] = 0;
        memcpy(buf + 3, p, n);
        len = n + 3;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s-v%d-%zu", dir,
             d->is_response ? "kafka_response" : "kafka_frame", d->name, ver, n);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(buf, 1, len, f);
        fclose(f);
    }
    free(buf);
}

/* Decodes p[0..n) as d at ver: must succeed, consume all, be canonical and
 * re-encode to the same bytes; all prefixes must fail. Returns the tree
 * (valid until the next kt_setup and while p lives). */
static inline bg_kafka_struct_t *kt_roundtrip(const bg_kafka_msg_desc_t *d, int16_t ver,
                                              const uint8_t *p, size_t n)
{
    bg_rd_t rd;
    bg_rd_init(&rd, p, n);
    bg_kafka_struct_t *s = NULL;
    int rc = bg_kafka_decode(d, ver, &rd, &kt_arena, &s);
    if (rc != BG_KAFKA_OK)
        fail_msg("%s v%d: decode failed: %s at offset %td", d->name, ver, rd.why, rd.p - p);
    assert_non_null(s);
    if (bg_rd_left(&rd) != 0)
        fail_msg("%s v%d: %zu bytes left", d->name, ver, bg_rd_left(&rd));
    assert_int_equal(rd.noncanon, 0);
    bg_wr_t wr;
    bg_wr_init(&wr, 0, 0);
    const char *why = NULL;
    rc = bg_kafka_encode(d, ver, s, &wr, &why);
    if (rc != BG_KAFKA_OK)
        fail_msg("%s v%d: encode failed: %s", d->name, ver, why);
    assert_int_equal(wr.len, n);
    if (n)
        assert_memory_equal(wr.buf, p, n);
    bg_wr_free(&wr);
    kt_truncations(d, ver, p, n);
    kt_dump_seed(d, ver, p, n);
    return s;
}

#define KT_RT(desc, ver, vec) kt_roundtrip(&(desc), (ver), (vec).b, (vec).n)
#define KT_I(st, idx) ((st)->f[idx].i)
#define KT_S(st, idx) ((st)->f[idx].s)
#define KT_A(st, idx) ((st)->f[idx].a)

#endif
