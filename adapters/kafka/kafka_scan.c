#include "adapters/kafka/kafka_scan.h"

#include <event2/buffer.h>
#include <string.h>

#define BG_KAFKA_SCAN_MAX_DEPTH 24

typedef struct bg_kafka_cur_s {
    struct evbuffer *buf;
    struct evbuffer_ptr pos;
    size_t left;
    int flex;
    int16_t v;
    int err;
} bg_kafka_cur_t;

static int bg_kafka_cur__read(bg_kafka_cur_t *c, void *out, size_t n)
{
    if (c->err || n > c->left)
        return c->err = 1, -1;
    if (evbuffer_copyout_from(c->buf, &c->pos, out, n) != (ssize_t)n ||
        evbuffer_ptr_set(c->buf, &c->pos, n, EVBUFFER_PTR_ADD) != 0)
        return c->err = 1, -1;
    c->left -= n;
    return 0;
}

static int bg_kafka_cur__skip(bg_kafka_cur_t *c, uint64_t n)
{
    if (c->err || n > c->left)
        return c->err = 1, -1;
    if (n && evbuffer_ptr_set(c->buf, &c->pos, (size_t)n, EVBUFFER_PTR_ADD) != 0)
        return c->err = 1, -1;
    c->left -= (size_t)n;
    return 0;
}

/* An unsigned varint of at most 32 bits, read as the codec reads one
 * (bg_rd_uvarint): a fifth byte above 0x0f is an error, not a number that
 * Java clients would see truncated to 32 bits differently. */
static uint64_t bg_kafka_cur__uvarint(bg_kafka_cur_t *c)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 35; shift += 7) {
        uint8_t b;
        if (bg_kafka_cur__read(c, &b, 1) != 0)
            return 0;
        if (shift == 28 && b > 0x0f)
            break;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    c->err = 1;
    return 0;
}

static int64_t bg_kafka_cur__int(bg_kafka_cur_t *c, size_t n)
{
    uint8_t b[4] = {0};
    if (bg_kafka_cur__read(c, b, n) != 0)
        return 0;
    int64_t v = n == 2 ? (int16_t)(b[0] << 8 | b[1])
                       : (int32_t)((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
                                   (uint32_t)b[2] << 8 | b[3]);
    return v;
}

/* Length or count prefix: -1 null; -2 on error. */
static int64_t bg_kafka_cur__len(bg_kafka_cur_t *c, size_t classic_width)
{
    int64_t n = c->flex ? (int64_t)bg_kafka_cur__uvarint(c) - 1 : bg_kafka_cur__int(c, classic_width);
    if (c->err || n < -1)
        return c->err = 1, -2;
    return n;
}

static int bg_kafka_cur__struct(bg_kafka_cur_t *c, const bg_kafka_struct_desc_t *sd, int depth,
                                uint64_t *tags);

static int bg_kafka_cur__value(bg_kafka_cur_t *c, const bg_kafka_field_desc_t *fd, uint8_t type,
                               int nullable, int depth)
{
    static const uint8_t width[] = {
        [BG_KAFKA_T_BOOL] = 1,  [BG_KAFKA_T_INT8] = 1,   [BG_KAFKA_T_INT16] = 2,
        [BG_KAFKA_T_UINT16] = 2, [BG_KAFKA_T_INT32] = 4,  [BG_KAFKA_T_UINT32] = 4,
        [BG_KAFKA_T_INT64] = 8, [BG_KAFKA_T_FLOAT64] = 8, [BG_KAFKA_T_UUID] = 16};
    switch (type) {
    case BG_KAFKA_T_STRING:
    case BG_KAFKA_T_BYTES:
    case BG_KAFKA_T_RECORDS: {
        int64_t n = bg_kafka_cur__len(c, type == BG_KAFKA_T_STRING ? 2 : 4);
        if ((n == -1 && !nullable) || (type == BG_KAFKA_T_STRING && n > INT16_MAX))
            c->err = 1; /* INT16_MAX: as the codec, a compact string's bound */
        return n >= 0 ? bg_kafka_cur__skip(c, (uint64_t)n) : (c->err ? -1 : 0);
    }
    case BG_KAFKA_T_ARRAY: {
        int64_t n = bg_kafka_cur__len(c, 4);
        if (n == -1)
            return nullable ? 0 : (c->err = 1, -1);
        if (n < 0 || (uint64_t)n > c->left)
            return c->err = 1, -1;
        for (int64_t i = 0; i < n && !c->err; i++) {
            if (fd->elem == BG_KAFKA_T_STRUCT)
                bg_kafka_cur__struct(c, fd->sub, depth + 1, NULL);
            else
                bg_kafka_cur__value(c, fd, fd->elem, 0, depth);
        }
        return c->err ? -1 : 0;
    }
    case BG_KAFKA_T_STRUCT:
        if (nullable) {
            int8_t m;
            if (bg_kafka_cur__read(c, &m, 1) != 0 || m < 0)
                return c->err ? -1 : 0;
        }
        return bg_kafka_cur__struct(c, fd->sub, depth + 1, NULL);
    default:
        if (type >= sizeof width || !width[type])
            return c->err = 1, -1;
        return bg_kafka_cur__skip(c, width[type]);
    }
}

static int bg_kafka_cur__in(int16_t v, int16_t lo, int16_t hi) { return v >= lo && v <= hi; }

static int bg_kafka_cur__struct(bg_kafka_cur_t *c, const bg_kafka_struct_desc_t *sd, int depth,
                                uint64_t *tags)
{
    if (depth > BG_KAFKA_SCAN_MAX_DEPTH)
        return c->err = 1, -1;
    for (uint16_t i = 0; i < sd->nfields && !c->err; i++) {
        const bg_kafka_field_desc_t *fd = &sd->fields[i];
        if (!bg_kafka_cur__in(c->v, fd->ver_min, fd->ver_max) ||
            (fd->tag >= 0 && bg_kafka_cur__in(c->v, fd->tag_min, fd->tag_max)))
            continue; /* absent, or carried in the tagged section below */
        bg_kafka_cur__value(c, fd, fd->type, bg_kafka_cur__in(c->v, fd->null_min, fd->null_max),
                            depth);
    }
    if (!c->flex || c->err)
        return c->err ? -1 : 0;
    uint64_t n = bg_kafka_cur__uvarint(c);
    if (n > c->left / 2)
        return c->err = 1, -1;
    for (uint64_t k = 0; k < n && !c->err; k++) {
        uint64_t tag = bg_kafka_cur__uvarint(c), size = bg_kafka_cur__uvarint(c);
        if (tags)
            *tags |= 1ull << (tag < 63 ? tag : 63);
        bg_kafka_cur__skip(c, size);
    }
    return c->err ? -1 : 0;
}

int bg_kafka_scan_top_tags(struct evbuffer *buf, size_t off, size_t len,
                           const bg_kafka_msg_desc_t *d, int16_t version, uint64_t *tags)
{
    bg_kafka_cur_t c = {.buf = buf, .left = len, .v = version};
    *tags = 0;
    if (!d || version < d->valid_min || version > d->valid_max ||
        evbuffer_get_length(buf) < off + len ||
        evbuffer_ptr_set(buf, &c.pos, off, EVBUFFER_PTR_SET) != 0)
        return -1;
    c.flex = version >= d->flex_min;
    if (bg_kafka_cur__struct(&c, d->body, 0, tags) != 0 || c.left != 0)
        return -1;
    return 0;
}
