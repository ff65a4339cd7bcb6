/* Bounded big-endian reader and growable writer shared by the wire codecs
 * (Kafka, AMQP).
 *
 * Reader: every read goes through bg_rd_t {p, end}; a read past the end sets
 * a sticky error (err != 0, why = short static reason) and from then on every
 * read returns 0 / an empty slice and does not move p, so a codec can read a
 * whole structure and check rd->err once. On error p stays where the failing
 * read started, so (p - start) is the offset to log.
 *
 * Slices returned by the reader are borrowed views into the reader's buffer:
 * valid only while that buffer lives and is not modified.
 *
 * Writer: bg_wr_t owns a malloc'd buffer that grows up to a maximum; a failed
 * allocation or exceeding the maximum sets a sticky `failed` flag (writes
 * become no-ops); check it once before sending.
 *
 * Not thread-safe per object; no globals. */
#ifndef BG_BYTES_H
#define BG_BYTES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A borrowed byte range; len -1 means null (Kafka nullable string/bytes). */
typedef struct bg_slice_s {
    const uint8_t *p;
    int32_t len;
} bg_slice_t;

typedef struct bg_rd_s {
    const uint8_t *p, *end;
    int err;         /* sticky: non-zero after the first failed read */
    const char *why; /* static reason for err, NULL while err == 0 */
    int noncanon;    /* set when input used a non-minimal encoding (overlong varint, ...):
                        re-encoding will then not reproduce the input byte for byte */
    int unknown_tags; /* Kafka: a tagged field the descriptor does not know was kept raw */
} bg_rd_t;

static inline void bg_rd_init(bg_rd_t *rd, const void *p, size_t len)
{
    rd->p = (const uint8_t *)p;
    rd->end = len ? rd->p + len : rd->p; /* NULL + 0 is undefined in C */
    rd->err = 0;
    rd->why = NULL;
    rd->noncanon = 0;
    rd->unknown_tags = 0;
}

static inline size_t bg_rd_left(const bg_rd_t *rd)
{
    return (size_t)(rd->end - rd->p);
}

/* Records the first error; always returns 0 so callers can `return bg_rd_fail(...)`. */
static inline int bg_rd_fail(bg_rd_t *rd, const char *why)
{
    if (!rd->err) {
        rd->err = 1;
        rd->why = why;
    }
    return 0;
}

/* 1 when n more bytes are available and no error is pending; else fails. */
static inline int bg_rd_need(bg_rd_t *rd, size_t n)
{
    if (rd->err)
        return 0;
    if ((size_t)(rd->end - rd->p) < n)
        return bg_rd_fail(rd, "truncated");
    return 1;
}

static inline uint8_t bg_rd_u8(bg_rd_t *rd)
{
    if (!bg_rd_need(rd, 1))
        return 0;
    return *rd->p++;
}

static inline int8_t bg_rd_i8(bg_rd_t *rd)
{
    return (int8_t)bg_rd_u8(rd);
}

static inline uint16_t bg_rd_u16(bg_rd_t *rd)
{
    if (!bg_rd_need(rd, 2))
        return 0;
    uint16_t v = (uint16_t)((uint16_t)rd->p[0] << 8 | rd->p[1]);
    rd->p += 2;
    return v;
}

static inline int16_t bg_rd_i16(bg_rd_t *rd)
{
    return (int16_t)bg_rd_u16(rd);
}

static inline uint32_t bg_rd_u32(bg_rd_t *rd)
{
    if (!bg_rd_need(rd, 4))
        return 0;
    const uint8_t *p = rd->p;
    uint32_t v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    rd->p += 4;
    return v;
}

static inline int32_t bg_rd_i32(bg_rd_t *rd)
{
    return (int32_t)bg_rd_u32(rd);
}

static inline uint64_t bg_rd_u64(bg_rd_t *rd)
{
    if (!bg_rd_need(rd, 8))
        return 0;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | rd->p[i];
    rd->p += 8;
    return v;
}

static inline int64_t bg_rd_i64(bg_rd_t *rd)
{
    return (int64_t)bg_rd_u64(rd);
}

static inline double bg_rd_f64(bg_rd_t *rd)
{
    uint64_t u = bg_rd_u64(rd);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

/* Out of line: multi-byte varint paths (bytes.c). */
uint32_t bg_rd__uvarint_slow(bg_rd_t *rd);
uint64_t bg_rd_uvarlong(bg_rd_t *rd);

/* Unsigned LEB128 varint of at most 5 bytes (Kafka "unsigned varint", 32-bit).
 * Fails with "bad varint" when longer or when the value exceeds 32 bits. */
static inline uint32_t bg_rd_uvarint(bg_rd_t *rd)
{
    if (!rd->err && rd->p < rd->end && rd->p[0] < 0x80)
        return *rd->p++;
    return bg_rd__uvarint_slow(rd);
}

/* Zigzag-encoded signed varint (32-bit) and varlong (64-bit), as in Kafka records. */
static inline int32_t bg_rd_varint(bg_rd_t *rd)
{
    uint32_t u = bg_rd_uvarint(rd);
    return (int32_t)((u >> 1) ^ (~(u & 1) + 1));
}

static inline int64_t bg_rd_varlong(bg_rd_t *rd)
{
    uint64_t u = bg_rd_uvarlong(rd);
    return (int64_t)((u >> 1) ^ (~(u & 1) + 1));
}

/* Borrows the next n bytes. n < 0 or not enough bytes: fails and returns {NULL, 0}. */
static inline bg_slice_t bg_rd_bytes(bg_rd_t *rd, int32_t n)
{
    bg_slice_t s = {NULL, 0};
    if (n < 0) {
        bg_rd_fail(rd, "negative length");
        return s;
    }
    if (!bg_rd_need(rd, (size_t)n))
        return s;
    s.p = rd->p;
    s.len = n;
    rd->p += n;
    return s;
}

static inline void bg_rd_skip(bg_rd_t *rd, size_t n)
{
    if (bg_rd_need(rd, n))
        rd->p += n;
}

/* Makes *sub a reader over the next n bytes and advances rd past them.
 * Returns 1, or 0 (rd failed, *sub is an empty failed reader) when fewer than
 * n bytes are left. Errors in *sub do not propagate to rd: copy them if needed. */
static inline int bg_rd_sub(bg_rd_t *rd, size_t n, bg_rd_t *sub)
{
    if (!bg_rd_need(rd, n)) {
        bg_rd_init(sub, rd->p, 0);
        bg_rd_fail(sub, rd->why);
        return 0;
    }
    bg_rd_init(sub, rd->p, n);
    rd->p += n;
    return 1;
}

/* ---- writer ---- */

typedef struct bg_wr_s {
    uint8_t *buf;
    size_t len, cap;
    size_t max; /* hard bound on len; exceeding it sets failed */
    int failed; /* sticky: allocation failed or max exceeded */
} bg_wr_t;

/* Initialises an empty writer; no allocation until the first write.
 * max == 0 means SIZE_MAX/2. Free with bg_wr_free. */
void bg_wr_init(bg_wr_t *wr, size_t initial_cap, size_t max);
/* Frees the buffer; the writer may be re-initialised. */
void bg_wr_free(bg_wr_t *wr);
/* Empties the writer (keeps the buffer) and clears failed. */
static inline void bg_wr_reset(bg_wr_t *wr)
{
    wr->len = 0;
    wr->failed = 0;
}

/* Ensures room for n more bytes; returns a pointer to them (not yet counted in
 * len) or NULL when failed. Out of line slow path in bytes.c. */
uint8_t *bg_wr__grow(bg_wr_t *wr, size_t n);

static inline uint8_t *bg_wr_room(bg_wr_t *wr, size_t n)
{
    if (wr->failed)
        return NULL;
    if (wr->cap - wr->len >= n)
        return wr->buf + wr->len;
    return bg_wr__grow(wr, n);
}

static inline void bg_wr_bytes(bg_wr_t *wr, const void *p, size_t n)
{
    uint8_t *d = bg_wr_room(wr, n);
    if (!d)
        return;
    if (n)
        memcpy(d, p, n);
    wr->len += n;
}

static inline void bg_wr_u8(bg_wr_t *wr, uint8_t v)
{
    uint8_t *d = bg_wr_room(wr, 1);
    if (!d)
        return;
    d[0] = v;
    wr->len++;
}

static inline void bg_wr_i8(bg_wr_t *wr, int8_t v)
{
    bg_wr_u8(wr, (uint8_t)v);
}

static inline void bg_wr_u16(bg_wr_t *wr, uint16_t v)
{
    uint8_t *d = bg_wr_room(wr, 2);
    if (!d)
        return;
    d[0] = (uint8_t)(v >> 8);
    d[1] = (uint8_t)v;
    wr->len += 2;
}

static inline void bg_wr_i16(bg_wr_t *wr, int16_t v)
{
    bg_wr_u16(wr, (uint16_t)v);
}

static inline void bg_wr__put32(uint8_t *d, uint32_t v)
{
    d[0] = (uint8_t)(v >> 24);
    d[1] = (uint8_t)(v >> 16);
    d[2] = (uint8_t)(v >> 8);
    d[3] = (uint8_t)v;
}

static inline void bg_wr_u32(bg_wr_t *wr, uint32_t v)
{
    uint8_t *d = bg_wr_room(wr, 4);
    if (!d)
        return;
    bg_wr__put32(d, v);
    wr->len += 4;
}

static inline void bg_wr_i32(bg_wr_t *wr, int32_t v)
{
    bg_wr_u32(wr, (uint32_t)v);
}

static inline void bg_wr_u64(bg_wr_t *wr, uint64_t v)
{
    uint8_t *d = bg_wr_room(wr, 8);
    if (!d)
        return;
    for (int i = 7; i >= 0; i--, v >>= 8)
        d[i] = (uint8_t)v;
    wr->len += 8;
}

static inline void bg_wr_i64(bg_wr_t *wr, int64_t v)
{
    bg_wr_u64(wr, (uint64_t)v);
}

static inline void bg_wr_f64(bg_wr_t *wr, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    bg_wr_u64(wr, u);
}

/* Minimal-length unsigned LEB128 (up to 64 bits). */
static inline void bg_wr_uvarlong(bg_wr_t *wr, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    while (v >= 0x80) {
        tmp[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    tmp[n++] = (uint8_t)v;
    bg_wr_bytes(wr, tmp, n);
}

static inline void bg_wr_uvarint(bg_wr_t *wr, uint32_t v)
{
    bg_wr_uvarlong(wr, v);
}

static inline void bg_wr_varint(bg_wr_t *wr, int32_t v)
{
    bg_wr_uvarint(wr, ((uint32_t)v << 1) ^ (uint32_t)(v >> 31));
}

static inline void bg_wr_varlong(bg_wr_t *wr, int64_t v)
{
    bg_wr_uvarlong(wr, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

/* Reserves 4 bytes for a length written later; returns their offset
 * (meaningless when wr->failed). */
static inline size_t bg_wr_reserve_i32(bg_wr_t *wr)
{
    size_t off = wr->len;
    bg_wr_u32(wr, 0);
    return off;
}

/* Fills a reserved int32 at off. No-op when failed or off is out of range. */
static inline void bg_wr_patch_i32(bg_wr_t *wr, size_t off, int32_t v)
{
    if (wr->failed || off + 4 > wr->len)
        return;
    bg_wr__put32(wr->buf + off, (uint32_t)v);
}

#endif
