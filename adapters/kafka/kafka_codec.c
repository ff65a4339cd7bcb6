/* Generic Kafka body codec driven by the generated descriptors (kafka_msgs.c).
 * See kafka_codec.h for the value model. */
#include "adapters/kafka/kafka_codec.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- arena -- */

/* The first block is small: an idle connection keeps one block per arena
 * (reset keeps the oldest), and 10,000 idle connections must stay cheap.
 * Larger messages chain 64 KiB blocks that reset returns. */
#define BG_KAFKA_ARENA_FIRST (4u * 1024u)
#define BG_KAFKA_ARENA_BLOCK (64u * 1024u)

struct bg_kafka_arena_blk_s {
    bg_kafka_arena_blk_t *next;
    size_t cap;
    _Alignas(16) uint8_t data[];
};

void bg_kafka_arena_init(bg_kafka_arena_t *a, size_t limit)
{
    a->blocks = NULL;
    a->cur = a->end = NULL;
    a->total = 0;
    a->limit = limit ? limit : 64u * 1024u * 1024u;
}

void bg_kafka_arena_free(bg_kafka_arena_t *a)
{
    bg_kafka_arena_blk_t *b = a->blocks, *n;
    for (; b; b = n) {
        n = b->next;
        free(b);
    }
    a->blocks = NULL;
    a->cur = a->end = NULL;
    a->total = 0;
}

void bg_kafka_arena_reset(bg_kafka_arena_t *a)
{
    /* Keep the oldest block (the common case fits in it); free the rest. */
    bg_kafka_arena_blk_t *b = a->blocks, *keep = NULL;
    while (b) {
        bg_kafka_arena_blk_t *n = b->next;
        if (!n)
            keep = b;
        else
            free(b);
        b = n;
    }
    a->blocks = keep;
    a->total = keep ? keep->cap : 0;
    a->cur = keep ? keep->data : NULL;
    a->end = keep ? keep->data + keep->cap : NULL;
}

static void *bg_kafka__arena_grow(bg_kafka_arena_t *a, size_t n)
{
    size_t unit = a->blocks ? BG_KAFKA_ARENA_BLOCK : BG_KAFKA_ARENA_FIRST;
    size_t cap = n > unit ? n : unit;
    if (cap > a->limit || a->total > a->limit - cap)
        return NULL;
    bg_kafka_arena_blk_t *b = malloc(sizeof *b + cap);
    if (!b)
        return NULL;
    b->cap = cap;
    b->next = a->blocks;
    a->blocks = b;
    a->total += cap;
    a->cur = b->data + n;
    a->end = b->data + cap;
    return b->data;
}

void *bg_kafka_arena_alloc(bg_kafka_arena_t *a, size_t n)
{
    if (n > SIZE_MAX / 2)
        return NULL; /* rounding below would wrap */
    n = (n + 7) & ~(size_t)7;
    if (n == 0)
        n = 8;
    if (a->cur && (size_t)(a->end - a->cur) >= n) {
        void *p = a->cur;
        a->cur += n;
        return p;
    }
    return bg_kafka__arena_grow(a, n);
}

void *bg_kafka_arena_alloc_past_limit(bg_kafka_arena_t *a, size_t n)
{
    size_t limit = a->limit, unit = n > BG_KAFKA_ARENA_BLOCK ? n : BG_KAFKA_ARENA_BLOCK;
    if (n > SIZE_MAX / 4 || a->total > SIZE_MAX / 2)
        return NULL;
    if (a->limit < a->total + unit + 8)
        a->limit = a->total + unit + 8;
    void *p = bg_kafka_arena_alloc(a, n);
    a->limit = limit;
    return p;
}

/* --------------------------------------------------------------- values -- */

static inline size_t bg_kafka__struct_size(const bg_kafka_struct_desc_t *sd)
{
    return sizeof(bg_kafka_struct_t) + (size_t)sd->nfields * sizeof(bg_kafka_val_t);
}

static void bg_kafka__set_default(bg_kafka_val_t *v, const bg_kafka_field_desc_t *fd)
{
    int dnull = (fd->flags & BG_KAFKA_FF_DEF_NULL) != 0;
    memset(v, 0, sizeof *v);
    switch (fd->type) {
    case BG_KAFKA_T_FLOAT64:
        v->f = fd->def_f;
        break;
    case BG_KAFKA_T_STRING:
    case BG_KAFKA_T_BYTES:
    case BG_KAFKA_T_RECORDS:
        v->s.p = dnull ? NULL : (const uint8_t *)"";
        v->s.len = dnull ? -1 : 0;
        break;
    case BG_KAFKA_T_UUID:
        break;
    case BG_KAFKA_T_ARRAY:
        v->a.n = dnull ? -1 : 0;
        break;
    case BG_KAFKA_T_STRUCT:
        v->st = NULL; /* filled by the caller when the default is not null */
        break;
    default:
        v->i = fd->def_i;
    }
}

/* Initialises s for sd with defaults; non-null struct defaults are built when
 * deep is set (bounded by the static descriptor nesting). */
static int bg_kafka__init_defaults(bg_kafka_arena_t *a, bg_kafka_struct_t *s,
                                   const bg_kafka_struct_desc_t *sd, int deep)
{
    s->desc = sd;
    s->unknown = NULL;
    s->nunknown = 0;
    for (uint16_t i = 0; i < sd->nfields; i++) {
        const bg_kafka_field_desc_t *fd = &sd->fields[i];
        bg_kafka__set_default(&s->f[i], fd);
        if (deep && fd->type == BG_KAFKA_T_STRUCT && !(fd->flags & BG_KAFKA_FF_DEF_NULL)) {
            s->f[i].st = bg_kafka_struct_new(a, fd->sub);
            if (!s->f[i].st)
                return -1;
        }
    }
    return 0;
}

bg_kafka_struct_t *bg_kafka_struct_new(bg_kafka_arena_t *a, const bg_kafka_struct_desc_t *sd)
{
    bg_kafka_struct_t *s = bg_kafka_arena_alloc(a, bg_kafka__struct_size(sd));
    if (!s || bg_kafka__init_defaults(a, s, sd, 1) != 0)
        return NULL;
    return s;
}

bg_kafka_struct_t *bg_kafka_struct_clone(bg_kafka_arena_t *a, const bg_kafka_struct_t *s)
{
    size_t n = bg_kafka__struct_size(s->desc);
    bg_kafka_struct_t *c = bg_kafka_arena_alloc(a, n);
    if (c)
        memcpy(c, s, n);
    return c;
}

int bg_kafka_struct_drop_unknown(bg_kafka_struct_t *s, int depth)
{
    if (!s || depth > 64)
        return 0;
    int dropped = s->nunknown > 0;
    s->nunknown = 0;
    for (uint16_t i = 0; i < s->desc->nfields; i++) {
        const bg_kafka_field_desc_t *fd = &s->desc->fields[i];
        if (fd->type == BG_KAFKA_T_STRUCT)
            dropped |= bg_kafka_struct_drop_unknown(s->f[i].st, depth + 1);
        else if (fd->type == BG_KAFKA_T_ARRAY && fd->elem == BG_KAFKA_T_STRUCT)
            for (int32_t k = 0; k < s->f[i].a.n; k++)
                dropped |= bg_kafka_struct_drop_unknown(s->f[i].a.s[k], depth + 1);
    }
    return dropped;
}

bg_kafka_struct_t **bg_kafka_array_new(bg_kafka_arena_t *a, bg_kafka_struct_t *s, int idx,
                                       int32_t n)
{
    const bg_kafka_field_desc_t *fd = &s->desc->fields[idx];
    if (fd->type != BG_KAFKA_T_ARRAY || fd->elem != BG_KAFKA_T_STRUCT || n < 0)
        return NULL;
    bg_kafka_struct_t **items = bg_kafka_arena_alloc(a, (size_t)n * sizeof *items);
    if (!items)
        return NULL;
    for (int32_t i = 0; i < n; i++) {
        items[i] = bg_kafka_struct_new(a, fd->sub);
        if (!items[i])
            return NULL;
    }
    s->f[idx].a.n = n;
    s->f[idx].a.s = items;
    return items;
}

bg_kafka_val_t *bg_kafka_array_vals(bg_kafka_arena_t *a, bg_kafka_struct_t *s, int idx, int32_t n)
{
    const bg_kafka_field_desc_t *fd = &s->desc->fields[idx];
    if (fd->type != BG_KAFKA_T_ARRAY || fd->elem == BG_KAFKA_T_STRUCT || n < 0)
        return NULL;
    bg_kafka_val_t *v = bg_kafka_arena_alloc(a, (size_t)n * sizeof *v);
    if (!v)
        return NULL;
    memset(v, 0, (size_t)n * sizeof *v);
    s->f[idx].a.n = n;
    s->f[idx].a.v = v;
    return v;
}

const char *bg_kafka_status_str(int status)
{
    switch (status) {
    case BG_KAFKA_OK:
        return "ok";
    case BG_KAFKA_ERR_TRUNCATED:
        return "truncated";
    case BG_KAFKA_ERR_MALFORMED:
        return "malformed";
    case BG_KAFKA_ERR_VERSION:
        return "unsupported version";
    case BG_KAFKA_ERR_LIMIT:
        return "limit exceeded";
    case BG_KAFKA_ERR_ENCODE:
        return "cannot encode";
    case BG_KAFKA_ERR_UNKNOWN_API:
        return "unknown api key";
    }
    return "unknown status";
}

/* ---------------------------------------------------------------- decode -- */

typedef struct bg_kafka__ctx_s {
    bg_kafka_arena_t *a;
    int16_t v;
    int flex;
    int status; /* set for errors that the reader's why cannot classify */
    const char *why;
} bg_kafka__ctx_t;

static int bg_kafka__dec_struct(bg_kafka__ctx_t *c, bg_rd_t *rd, const bg_kafka_struct_desc_t *sd,
                                bg_kafka_struct_t *s, int depth);

static inline int bg_kafka__tagged_in(const bg_kafka_field_desc_t *fd, int16_t v)
{
    return fd->tag >= 0 && bg_kafka_vin(v, fd->tag_min, fd->tag_max);
}

static inline int bg_kafka__nullable(const bg_kafka_field_desc_t *fd, int16_t v)
{
    return bg_kafka_vin(v, fd->null_min, fd->null_max);
}

static void *bg_kafka__alloc(bg_kafka__ctx_t *c, bg_rd_t *rd, size_t n)
{
    void *p = bg_kafka_arena_alloc(c->a, n);
    if (!p) {
        c->status = BG_KAFKA_ERR_LIMIT;
        bg_rd_fail(rd, "arena limit");
    }
    return p;
}

/* Length prefix of string/bytes/records; -1 = null. -2 on error. */
static int64_t bg_kafka__dec_len(bg_kafka__ctx_t *c, bg_rd_t *rd, uint8_t type, int nullable)
{
    int64_t n;
    if (c->flex)
        n = (int64_t)bg_rd_uvarint(rd) - 1;
    else if (type == BG_KAFKA_T_STRING)
        n = bg_rd_i16(rd);
    else
        n = bg_rd_i32(rd);
    if (rd->err)
        return -2;
    if (n < -1 || n > INT32_MAX)
        return bg_rd_fail(rd, "bad length"), -2;
    /* A compact string's length can say more than an INT16 one; Kafka's
     * readers refuse it ("had invalid length"), and so does busgate. */
    if (type == BG_KAFKA_T_STRING && n > INT16_MAX)
        return bg_rd_fail(rd, "string too long"), -2;
    if (n == -1 && !nullable)
        return bg_rd_fail(rd, "null in non-nullable field"), -2;
    return n;
}

static void bg_kafka__dec_slice(bg_kafka__ctx_t *c, bg_rd_t *rd, uint8_t type, int nullable,
                                bg_slice_t *out)
{
    int64_t n = bg_kafka__dec_len(c, rd, type, nullable);
    if (n == -1) {
        out->p = NULL;
        out->len = -1;
    } else if (n >= 0) {
        *out = bg_rd_bytes(rd, (int32_t)n);
    }
}

static int bg_kafka__dec_value(bg_kafka__ctx_t *c, bg_rd_t *rd, const bg_kafka_field_desc_t *fd,
                               uint8_t type, int nullable, bg_kafka_val_t *v, int depth);

static void bg_kafka__dec_array(bg_kafka__ctx_t *c, bg_rd_t *rd, const bg_kafka_field_desc_t *fd,
                                int nullable, bg_kafka_val_t *v, int depth)
{
    int64_t n = c->flex ? (int64_t)bg_rd_uvarint(rd) - 1 : bg_rd_i32(rd);
    if (rd->err)
        return;
    if (n < -1)
        return (void)bg_rd_fail(rd, "bad array count");
    if (n == -1) {
        if (!nullable)
            bg_rd_fail(rd, "null in non-nullable array");
        v->a.n = -1;
        v->a.v = NULL;
        return;
    }
    /* Every element takes at least one byte, except structs whose fields are
     * all absent in a classic version: the remaining input bounds them too. */
    if ((uint64_t)n > bg_rd_left(rd))
        return (void)bg_rd_fail(rd, "array count exceeds input");
    v->a.n = (int32_t)n;
    if (fd->elem != BG_KAFKA_T_STRUCT) {
        v->a.v = bg_kafka__alloc(c, rd, (size_t)n * sizeof(bg_kafka_val_t));
        for (int32_t i = 0; v->a.v && i < n && !rd->err; i++)
            bg_kafka__dec_value(c, rd, fd, fd->elem, 0, &v->a.v[i], depth);
        return;
    }
    size_t ssz = bg_kafka__struct_size(fd->sub);
    uint8_t *mem = bg_kafka__alloc(c, rd, (size_t)n * (sizeof(bg_kafka_struct_t *) + ssz));
    if (!mem)
        return;
    v->a.s = (bg_kafka_struct_t **)mem;
    mem += (size_t)n * sizeof(bg_kafka_struct_t *);
    for (int32_t i = 0; i < n && !rd->err; i++) {
        v->a.s[i] = (bg_kafka_struct_t *)(mem + (size_t)i * ssz);
        bg_kafka__dec_struct(c, rd, fd->sub, v->a.s[i], depth + 1);
    }
}

static int bg_kafka__dec_value(bg_kafka__ctx_t *c, bg_rd_t *rd, const bg_kafka_field_desc_t *fd,
                               uint8_t type, int nullable, bg_kafka_val_t *v, int depth)
{
    switch (type) {
    case BG_KAFKA_T_BOOL: {
        uint8_t b = bg_rd_u8(rd);
        if (b > 1)
            rd->noncanon = 1;
        v->i = b != 0;
        break;
    }
    case BG_KAFKA_T_INT8:
        v->i = bg_rd_i8(rd);
        break;
    case BG_KAFKA_T_INT16:
        v->i = bg_rd_i16(rd);
        break;
    case BG_KAFKA_T_UINT16:
        v->i = bg_rd_u16(rd);
        break;
    case BG_KAFKA_T_INT32:
        v->i = bg_rd_i32(rd);
        break;
    case BG_KAFKA_T_UINT32:
        v->i = bg_rd_u32(rd);
        break;
    case BG_KAFKA_T_INT64:
        v->i = bg_rd_i64(rd);
        break;
    case BG_KAFKA_T_FLOAT64:
        v->f = bg_rd_f64(rd);
        break;
    case BG_KAFKA_T_STRING:
    case BG_KAFKA_T_BYTES:
    case BG_KAFKA_T_RECORDS:
        bg_kafka__dec_slice(c, rd, type, nullable, &v->s);
        break;
    case BG_KAFKA_T_UUID:
        if (bg_rd_need(rd, 16)) {
            memcpy(v->uuid, rd->p, 16);
            rd->p += 16;
        }
        break;
    case BG_KAFKA_T_ARRAY:
        bg_kafka__dec_array(c, rd, fd, nullable, v, depth);
        break;
    case BG_KAFKA_T_STRUCT: {
        if (nullable) {
            int8_t m = bg_rd_i8(rd);
            if (m != -1 && m != 1)
                rd->noncanon = 1;
            if (rd->err || m < 0) {
                v->st = NULL;
                break;
            }
        }
        v->st = bg_kafka__alloc(c, rd, bg_kafka__struct_size(fd->sub));
        if (v->st)
            bg_kafka__dec_struct(c, rd, fd->sub, v->st, depth + 1);
        break;
    }
    default:
        bg_rd_fail(rd, "bad descriptor type");
    }
    return rd->err ? -1 : 0;
}

static int bg_kafka__is_default(const bg_kafka_field_desc_t *fd, const bg_kafka_val_t *v);

static int bg_kafka__struct_is_default(const bg_kafka_struct_t *s)
{
    if (s->nunknown)
        return 0;
    for (uint16_t i = 0; i < s->desc->nfields; i++)
        if (!bg_kafka__is_default(&s->desc->fields[i], &s->f[i]))
            return 0;
    return 1;
}

/* Kafka writes a tagged field only when it differs from its default. */
static int bg_kafka__is_default(const bg_kafka_field_desc_t *fd, const bg_kafka_val_t *v)
{
    int dnull = (fd->flags & BG_KAFKA_FF_DEF_NULL) != 0;
    static const uint8_t zero[16];
    switch (fd->type) {
    case BG_KAFKA_T_FLOAT64:
        return v->f == fd->def_f;
    case BG_KAFKA_T_STRING:
    case BG_KAFKA_T_BYTES:
    case BG_KAFKA_T_RECORDS:
        return dnull ? v->s.len == -1 : v->s.len == 0;
    case BG_KAFKA_T_UUID:
        return memcmp(v->uuid, zero, 16) == 0;
    case BG_KAFKA_T_ARRAY:
        return dnull ? v->a.n == -1 : v->a.n == 0;
    case BG_KAFKA_T_STRUCT:
        if (dnull || !v->st)
            return v->st == NULL;
        return bg_kafka__struct_is_default(v->st);
    default:
        return v->i == fd->def_i;
    }
}

static const bg_kafka_field_desc_t *bg_kafka__find_tag(const bg_kafka_struct_desc_t *sd,
                                                       uint32_t tag, int16_t v, uint16_t *idx)
{
    for (uint16_t j = 0; j < sd->ntagged; j++) {
        const bg_kafka_field_desc_t *fd = &sd->fields[sd->tag_order[j]];
        if ((uint32_t)fd->tag == tag && bg_kafka__tagged_in(fd, v)) {
            *idx = sd->tag_order[j];
            return fd;
        }
    }
    return NULL;
}

/* Copies a failed sub-reader's error into its parent, pointing at the failure. */
static void bg_kafka__sub_fail(bg_rd_t *rd, const bg_rd_t *sub)
{
    bg_rd_fail(rd, sub->why);
    rd->p = sub->p;
}

static void bg_kafka__dec_one_tag(bg_kafka__ctx_t *c, bg_rd_t *rd, bg_kafka_struct_t *s,
                                  uint32_t tag, bg_rd_t *sub, uint32_t max, int depth)
{
    uint16_t idx;
    const bg_kafka_field_desc_t *fd = bg_kafka__find_tag(s->desc, tag, c->v, &idx);
    if (fd) {
        bg_kafka__dec_value(c, sub, fd, fd->type, bg_kafka__nullable(fd, c->v), &s->f[idx], depth);
        if (!sub->err && bg_rd_left(sub))
            bg_rd_fail(sub, "tagged field size mismatch");
        if (sub->err)
            return bg_kafka__sub_fail(rd, sub);
        if (sub->noncanon || bg_kafka__is_default(fd, &s->f[idx]))
            rd->noncanon = 1;
        rd->unknown_tags |= sub->unknown_tags;
        return;
    }
    if (!s->unknown) {
        s->unknown = bg_kafka__alloc(c, rd, (size_t)max * sizeof *s->unknown);
        if (!s->unknown)
            return;
    }
    s->unknown[s->nunknown].tag = tag;
    s->unknown[s->nunknown].raw.p = sub->p;
    s->unknown[s->nunknown].raw.len = (int32_t)bg_rd_left(sub);
    s->nunknown++;
    rd->unknown_tags = 1;
}

/* By tag, then input position: duplicates keep their order. */
static int bg_kafka__tag_cmp(const void *x, const void *y)
{
    const bg_kafka_tagged_t *a = x, *b = y;
    if (a->tag != b->tag)
        return a->tag < b->tag ? -1 : 1;
    return a->raw.p < b->raw.p ? -1 : a->raw.p > b->raw.p;
}

static void bg_kafka__dec_tagged(bg_kafka__ctx_t *c, bg_rd_t *rd, bg_kafka_struct_t *s, int depth)
{
    uint32_t n = bg_rd_uvarint(rd);
    /* Each tagged field takes at least two bytes (tag, size). */
    if (!rd->err && n > bg_rd_left(rd) / 2)
        bg_rd_fail(rd, "tagged field count exceeds input");
    int64_t prev = -1;
    for (uint32_t k = 0; k < n && !rd->err; k++) {
        uint32_t tag = bg_rd_uvarint(rd);
        uint32_t size = bg_rd_uvarint(rd);
        bg_rd_t sub;
        if (rd->err || !bg_rd_sub(rd, size, &sub))
            return;
        if ((int64_t)tag <= prev)
            rd->noncanon = 1; /* out of order or repeated: re-encoded sorted */
        prev = tag;
        bg_kafka__dec_one_tag(c, rd, s, tag, &sub, n, depth);
    }
    /* Keep unknown tags sorted (the encoder merges them in order). Only
     * out-of-order input needs it; qsort keeps hostile counts O(n log n). */
    int sorted = 1;
    for (uint32_t i = 1; i < s->nunknown && sorted; i++)
        sorted = s->unknown[i - 1].tag <= s->unknown[i].tag;
    if (!sorted)
        qsort(s->unknown, s->nunknown, sizeof *s->unknown, bg_kafka__tag_cmp);
}

static int bg_kafka__dec_struct(bg_kafka__ctx_t *c, bg_rd_t *rd, const bg_kafka_struct_desc_t *sd,
                                bg_kafka_struct_t *s, int depth)
{
    if (depth > BG_KAFKA_MAX_DEPTH) {
        c->status = BG_KAFKA_ERR_LIMIT;
        return bg_rd_fail(rd, "nesting too deep"), -1;
    }
    s->desc = sd;
    s->unknown = NULL;
    s->nunknown = 0;
    for (uint16_t i = 0; i < sd->nfields && !rd->err; i++) {
        const bg_kafka_field_desc_t *fd = &sd->fields[i];
        bg_kafka_val_t *v = &s->f[i];
        if (!bg_kafka_vin(c->v, fd->ver_min, fd->ver_max) || bg_kafka__tagged_in(fd, c->v)) {
            bg_kafka__set_default(v, fd);
            if (fd->type == BG_KAFKA_T_STRUCT && !(fd->flags & BG_KAFKA_FF_DEF_NULL))
                v->st = bg_kafka_struct_new(c->a, fd->sub);
            if (fd->type == BG_KAFKA_T_STRUCT && !(fd->flags & BG_KAFKA_FF_DEF_NULL) && !v->st) {
                c->status = BG_KAFKA_ERR_LIMIT;
                bg_rd_fail(rd, "arena limit");
            }
            continue;
        }
        bg_kafka__dec_value(c, rd, fd, fd->type, bg_kafka__nullable(fd, c->v), v, depth);
    }
    if (c->flex && !rd->err)
        bg_kafka__dec_tagged(c, rd, s, depth);
    return rd->err ? -1 : 0;
}

static int bg_kafka__dec_status(const bg_kafka__ctx_t *c, const bg_rd_t *rd)
{
    if (c->status)
        return c->status;
    if (rd->why && strncmp(rd->why, "truncated", 9) == 0)
        return BG_KAFKA_ERR_TRUNCATED;
    return BG_KAFKA_ERR_MALFORMED;
}

int bg_kafka_decode_struct(const bg_kafka_struct_desc_t *sd, int16_t version, int flexible,
                           bg_rd_t *rd, bg_kafka_arena_t *arena, bg_kafka_struct_t **out)
{
    bg_kafka__ctx_t c = {arena, version, flexible, 0, NULL};
    *out = NULL;
    if (rd->err)
        return BG_KAFKA_ERR_MALFORMED;
    bg_kafka_struct_t *s = bg_kafka__alloc(&c, rd, bg_kafka__struct_size(sd));
    if (!s || bg_kafka__dec_struct(&c, rd, sd, s, 0) != 0)
        return bg_kafka__dec_status(&c, rd);
    *out = s;
    return BG_KAFKA_OK;
}

int bg_kafka_decode(const bg_kafka_msg_desc_t *d, int16_t version, bg_rd_t *rd,
                    bg_kafka_arena_t *arena, bg_kafka_struct_t **out)
{
    *out = NULL;
    if (!bg_kafka_vin(version, d->valid_min, d->valid_max)) {
        bg_rd_fail(rd, "unsupported version");
        return BG_KAFKA_ERR_VERSION;
    }
    return bg_kafka_decode_struct(d->body, version, bg_kafka_is_flexible(d, version), rd, arena,
                                  out);
}

/* ---------------------------------------------------------------- encode -- */

static int bg_kafka__enc_struct(bg_kafka__ctx_t *c, bg_wr_t *wr, const bg_kafka_struct_desc_t *sd,
                                const bg_kafka_struct_t *s, int depth);

static int bg_kafka__enc_fail(bg_kafka__ctx_t *c, const char *why)
{
    if (!c->why)
        c->why = why;
    return -1;
}

static int bg_kafka__enc_null(bg_kafka__ctx_t *c, bg_wr_t *wr, uint8_t type, int nullable)
{
    if (!nullable)
        return bg_kafka__enc_fail(c, "null in non-nullable field");
    if (c->flex)
        bg_wr_u8(wr, 0);
    else if (type == BG_KAFKA_T_STRING)
        bg_wr_i16(wr, -1);
    else
        bg_wr_i32(wr, -1);
    return 0;
}

static int bg_kafka__enc_slice(bg_kafka__ctx_t *c, bg_wr_t *wr, uint8_t type, int nullable,
                               bg_slice_t s)
{
    if (s.len < 0)
        return bg_kafka__enc_null(c, wr, type, nullable);
    if (type == BG_KAFKA_T_STRING && s.len > INT16_MAX)
        return bg_kafka__enc_fail(c, "string too long");
    if (c->flex)
        bg_wr_uvarint(wr, (uint32_t)s.len + 1);
    else if (type == BG_KAFKA_T_STRING)
        bg_wr_i16(wr, (int16_t)s.len);
    else
        bg_wr_i32(wr, s.len);
    bg_wr_bytes(wr, s.p, (size_t)s.len);
    return 0;
}

static int bg_kafka__enc_value(bg_kafka__ctx_t *c, bg_wr_t *wr, const bg_kafka_field_desc_t *fd,
                               uint8_t type, int nullable, const bg_kafka_val_t *v, int depth);

static int bg_kafka__enc_array(bg_kafka__ctx_t *c, bg_wr_t *wr, const bg_kafka_field_desc_t *fd,
                               int nullable, const bg_kafka_val_t *v, int depth)
{
    if (v->a.n < 0)
        return bg_kafka__enc_null(c, wr, BG_KAFKA_T_ARRAY, nullable);
    if (c->flex)
        bg_wr_uvarint(wr, (uint32_t)v->a.n + 1);
    else
        bg_wr_i32(wr, v->a.n);
    for (int32_t i = 0; i < v->a.n; i++) {
        int rc;
        if (fd->elem != BG_KAFKA_T_STRUCT)
            rc = bg_kafka__enc_value(c, wr, fd, fd->elem, 0, &v->a.v[i], depth);
        else if (!v->a.s[i])
            rc = bg_kafka__enc_fail(c, "null array element");
        else
            rc = bg_kafka__enc_struct(c, wr, fd->sub, v->a.s[i], depth + 1);
        if (rc)
            return rc;
    }
    return 0;
}

static int bg_kafka__enc_value(bg_kafka__ctx_t *c, bg_wr_t *wr, const bg_kafka_field_desc_t *fd,
                               uint8_t type, int nullable, const bg_kafka_val_t *v, int depth)
{
    switch (type) {
    case BG_KAFKA_T_BOOL:
        bg_wr_u8(wr, v->i != 0);
        return 0;
    case BG_KAFKA_T_INT8:
        bg_wr_i8(wr, (int8_t)v->i);
        return 0;
    case BG_KAFKA_T_INT16:
    case BG_KAFKA_T_UINT16:
        bg_wr_u16(wr, (uint16_t)v->i);
        return 0;
    case BG_KAFKA_T_INT32:
    case BG_KAFKA_T_UINT32:
        bg_wr_u32(wr, (uint32_t)v->i);
        return 0;
    case BG_KAFKA_T_INT64:
        bg_wr_i64(wr, v->i);
        return 0;
    case BG_KAFKA_T_FLOAT64:
        bg_wr_f64(wr, v->f);
        return 0;
    case BG_KAFKA_T_STRING:
    case BG_KAFKA_T_BYTES:
    case BG_KAFKA_T_RECORDS:
        return bg_kafka__enc_slice(c, wr, type, nullable, v->s);
    case BG_KAFKA_T_UUID:
        bg_wr_bytes(wr, v->uuid, 16);
        return 0;
    case BG_KAFKA_T_ARRAY:
        return bg_kafka__enc_array(c, wr, fd, nullable, v, depth);
    case BG_KAFKA_T_STRUCT:
        if (nullable) {
            bg_wr_i8(wr, v->st ? 1 : -1);
            if (!v->st)
                return 0;
        } else if (!v->st) {
            return bg_kafka__enc_fail(c, "null in non-nullable struct");
        }
        return bg_kafka__enc_struct(c, wr, fd->sub, v->st, depth + 1);
    }
    return bg_kafka__enc_fail(c, "bad descriptor type");
}

/* Writes a known tagged field: tag, size, value. The size precedes the value
 * but is only known after encoding it, so the value is shifted right. */
static int bg_kafka__enc_tag(bg_kafka__ctx_t *c, bg_wr_t *wr, const bg_kafka_field_desc_t *fd,
                             const bg_kafka_val_t *v, int depth)
{
    bg_wr_uvarint(wr, (uint32_t)fd->tag);
    size_t off = wr->len;
    if (bg_kafka__enc_value(c, wr, fd, fd->type, bg_kafka__nullable(fd, c->v), v, depth))
        return -1;
    if (wr->failed)
        return bg_kafka__enc_fail(c, "writer failed");
    size_t n = wr->len - off;
    if (n > UINT32_MAX)
        return bg_kafka__enc_fail(c, "tagged field too large");
    uint8_t hdr[5];
    size_t k = 0;
    for (uint32_t x = (uint32_t)n; k == 0 || x; x >>= 7)
        hdr[k++] = (uint8_t)((x & 0x7f) | (x >= 0x80 ? 0x80 : 0));
    if (!bg_wr_room(wr, k))
        return bg_kafka__enc_fail(c, "writer failed");
    memmove(wr->buf + off + k, wr->buf + off, n);
    memcpy(wr->buf + off, hdr, k);
    wr->len += k;
    return 0;
}

static int bg_kafka__enc_tagged(bg_kafka__ctx_t *c, bg_wr_t *wr, const bg_kafka_struct_t *s,
                                int depth)
{
    const bg_kafka_struct_desc_t *sd = s->desc;
    uint32_t count = s->nunknown;
    uint64_t write = 0; /* bit j: tag_order[j] is written (the generator caps ntagged at 64) */
    for (uint16_t j = 0; j < sd->ntagged && j < 64; j++) {
        uint16_t i = sd->tag_order[j];
        if (bg_kafka__tagged_in(&sd->fields[i], c->v) &&
            !bg_kafka__is_default(&sd->fields[i], &s->f[i])) {
            write |= (uint64_t)1 << j;
            count++;
        }
    }
    bg_wr_uvarint(wr, count);
    uint32_t u = 0;
    for (uint16_t j = 0; j <= sd->ntagged && j <= 64; j++) {
        int last = j == sd->ntagged || j == 64;
        const bg_kafka_field_desc_t *fd = last ? NULL : &sd->fields[sd->tag_order[j]];
        uint32_t tag = fd ? (uint32_t)fd->tag : UINT32_MAX;
        for (; u < s->nunknown && (s->unknown[u].tag < tag || !fd); u++) {
            bg_wr_uvarint(wr, s->unknown[u].tag);
            bg_wr_uvarint(wr, (uint32_t)s->unknown[u].raw.len);
            bg_wr_bytes(wr, s->unknown[u].raw.p, (size_t)s->unknown[u].raw.len);
        }
        if (!fd)
            break;
        if ((write >> j & 1) && bg_kafka__enc_tag(c, wr, fd, &s->f[sd->tag_order[j]], depth))
            return -1;
    }
    return 0;
}

static int bg_kafka__enc_struct(bg_kafka__ctx_t *c, bg_wr_t *wr, const bg_kafka_struct_desc_t *sd,
                                const bg_kafka_struct_t *s, int depth)
{
    if (depth > BG_KAFKA_MAX_DEPTH)
        return bg_kafka__enc_fail(c, "nesting too deep");
    if (s->desc != sd)
        return bg_kafka__enc_fail(c, "struct of the wrong descriptor");
    for (uint16_t i = 0; i < sd->nfields; i++) {
        const bg_kafka_field_desc_t *fd = &sd->fields[i];
        if (!bg_kafka_vin(c->v, fd->ver_min, fd->ver_max) || bg_kafka__tagged_in(fd, c->v))
            continue;
        int nullable = bg_kafka__nullable(fd, c->v);
        if (bg_kafka__enc_value(c, wr, fd, fd->type, nullable, &s->f[i], depth))
            return -1;
    }
    if (c->flex)
        return bg_kafka__enc_tagged(c, wr, s, depth);
    return 0;
}

int bg_kafka_encode_struct(const bg_kafka_struct_desc_t *sd, int16_t version, int flexible,
                           const bg_kafka_struct_t *s, bg_wr_t *wr, const char **why)
{
    bg_kafka__ctx_t c = {NULL, version, flexible, 0, NULL};
    int rc = bg_kafka__enc_struct(&c, wr, sd, s, 0);
    if (!rc && wr->failed)
        rc = bg_kafka__enc_fail(&c, "writer failed");
    if (why)
        *why = c.why;
    return rc ? BG_KAFKA_ERR_ENCODE : BG_KAFKA_OK;
}

int bg_kafka_encode(const bg_kafka_msg_desc_t *d, int16_t version, const bg_kafka_struct_t *s,
                    bg_wr_t *wr, const char **why)
{
    if (!bg_kafka_vin(version, d->valid_min, d->valid_max)) {
        if (why)
            *why = "unsupported version";
        return BG_KAFKA_ERR_VERSION;
    }
    return bg_kafka_encode_struct(d->body, version, bg_kafka_is_flexible(d, version), s, wr, why);
}
