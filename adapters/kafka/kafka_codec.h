/* Kafka message body codec: one generic interpreter over the generated
 * descriptors of kafka_msgs.h. Pure: bytes in, values out; no I/O, no globals.
 *
 * A decoded body is a tree of bg_kafka_struct_t. Every field of a struct is
 * s->f[index] with index from kafka_msgs.h (BG_KAFKA_<MSG>_<REQ|RESP>_...).
 * Which member of bg_kafka_val_t is live follows the field's type:
 *   bool, int8..int64, uint16, uint32  -> .i  (bool is 0/1)
 *   float64                            -> .f
 *   string, bytes, records             -> .s  (len -1 = null)
 *   uuid                               -> .uuid
 *   array                              -> .a  (n -1 = null; .a.v for scalar
 *                                              elements, .a.s for structs)
 *   struct                             -> .st (NULL = null)
 * Fields that do not exist in the decoded version hold their JSON default.
 *
 * Lifetime: strings/bytes/records are borrowed slices of the input buffer
 * (records are never copied or parsed), so a tree is valid while BOTH the
 * input buffer and the arena (until bg_kafka_arena_reset/free) live.
 *
 * Building/modifying trees (e.g. a Produce response denying a topic):
 *
 *   bg_kafka_struct_t *resp = bg_kafka_struct_new(a, bg_kafka_msg_produce_resp.body);
 *   bg_kafka_struct_t **topics = bg_kafka_array_new(a, resp, BG_KAFKA_PRODUCE_RESP_RESPONSES, 1);
 *   topics[0]->f[BG_KAFKA_PRODUCE_RESP_RESPONSES_NAME].s = bg_kafka_cstr("orders");
 *   bg_kafka_struct_t **parts = bg_kafka_array_new(a, topics[0],
 *       BG_KAFKA_PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES, 1);
 *   parts[0]->f[BG_KAFKA_PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES_ERROR_CODE].i = 29;
 *   if (bg_kafka_encode(&bg_kafka_msg_produce_resp, ver, resp, wr, &why) != BG_KAFKA_OK) ...
 *
 * Splitting a request: bg_kafka_struct_clone() a struct (shallow), then point
 * its array at a subset of the original elements (.a.n / .a.s) — elements are
 * pointers, so nothing is copied. NULL returns mean the arena limit was hit.
 *
 * Thread-safety: none needed; a tree and an arena belong to one worker. */
#ifndef BG_KAFKA_CODEC_H
#define BG_KAFKA_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "adapters/kafka/kafka_msgs.h"
#include "broker/bytes.h"

typedef enum {
    BG_KAFKA_OK = 0,
    BG_KAFKA_ERR_TRUNCATED = -1,   /* input ended inside the message */
    BG_KAFKA_ERR_MALFORMED = -2,   /* bad varint, bad length/count, null where not nullable, ... */
    BG_KAFKA_ERR_VERSION = -3,     /* version outside the descriptor's validVersions */
    BG_KAFKA_ERR_LIMIT = -4,       /* arena limit or nesting depth exceeded */
    BG_KAFKA_ERR_ENCODE = -5,      /* tree does not fit the version, or writer failed */
    BG_KAFKA_ERR_UNKNOWN_API = -6, /* no descriptor for the api key (kafka_frame.h) */
} bg_kafka_status_t;

/* Nesting bound for decode/encode (the definitions nest far less). */
#define BG_KAFKA_MAX_DEPTH 24

/* ---- arena: bump allocator of chained blocks, reset per message ---- */

typedef struct bg_kafka_arena_blk_s bg_kafka_arena_blk_t;
typedef struct bg_kafka_arena_s {
    bg_kafka_arena_blk_t *blocks; /* newest first */
    uint8_t *cur, *end;
    size_t total; /* bytes of all blocks */
    size_t limit; /* bound on total */
} bg_kafka_arena_t;

/* Initialises an empty arena whose blocks may total at most limit bytes
 * (0 = 64 MiB). Decoding one byte of input can cost up to a few hundred bytes
 * of tree, so size the limit from the max frame size. No allocation yet. */
void bg_kafka_arena_init(bg_kafka_arena_t *a, size_t limit);
/* Invalidates every tree allocated from a; keeps one block for reuse. */
void bg_kafka_arena_reset(bg_kafka_arena_t *a);
/* Frees all blocks. */
void bg_kafka_arena_free(bg_kafka_arena_t *a);
/* n bytes, 8-aligned, zeroed NOT guaranteed; NULL past the limit or on ENOMEM. */
void *bg_kafka_arena_alloc(bg_kafka_arena_t *a, size_t n);
/* n bytes as bg_kafka_arena_alloc, even past the limit (by at most n plus
 * one block): for a copy the caller has bounded itself. NULL on ENOMEM. */
void *bg_kafka_arena_alloc_past_limit(bg_kafka_arena_t *a, size_t n);

/* ---- values ---- */

typedef struct bg_kafka_struct_s bg_kafka_struct_t;

typedef union bg_kafka_val_u {
    int64_t i;
    double f;
    bg_slice_t s;
    uint8_t uuid[16];
    struct {
        int32_t n; /* -1 = null array */
        union {
            union bg_kafka_val_u *v; /* scalar elements */
            bg_kafka_struct_t **s;   /* struct elements (never NULL when encoding) */
        };
    } a;
    bg_kafka_struct_t *st;
} bg_kafka_val_t;

/* A tagged field the descriptor does not know, kept raw for re-encoding. */
typedef struct bg_kafka_tagged_s {
    uint32_t tag;
    bg_slice_t raw; /* the field's value bytes (without tag and size) */
} bg_kafka_tagged_t;

struct bg_kafka_struct_s {
    const bg_kafka_struct_desc_t *desc;
    bg_kafka_tagged_t *unknown; /* sorted by tag; re-encoded in flexible versions */
    uint32_t nunknown;
    bg_kafka_val_t f[]; /* desc->nfields values */
};

/* ---- decode / encode ---- */

/* 1 when version is flexible (compact encodings, tagged fields) for d. */
static inline int bg_kafka_is_flexible(const bg_kafka_msg_desc_t *d, int16_t version)
{
    return version >= d->flex_min;
}

/* Decodes one body of message d at version from rd into a tree allocated
 * from arena; *out set on success. Consumes exactly the body: bytes left in
 * rd afterwards are the caller's business (bg_rd_left).
 * Returns BG_KAFKA_OK or a negative bg_kafka_status_t; on error rd->err is
 * set, rd->why is a static reason and rd->p points at the offending input
 * (offset for the log line "api, version, offset" = rd->p - start).
 * rd->noncanon is set when the input used a non-minimal encoding (then
 * re-encoding does not reproduce it byte for byte). */
int bg_kafka_decode(const bg_kafka_msg_desc_t *d, int16_t version, bg_rd_t *rd,
                    bg_kafka_arena_t *arena, bg_kafka_struct_t **out)
    __attribute__((warn_unused_result));

/* Same for one struct of descriptor sd (e.g. a nested or non-API schema);
 * flexible says whether compact encodings and tagged fields apply. No
 * version range check. */
int bg_kafka_decode_struct(const bg_kafka_struct_desc_t *sd, int16_t version, int flexible,
                           bg_rd_t *rd, bg_kafka_arena_t *arena, bg_kafka_struct_t **out)
    __attribute__((warn_unused_result));

/* Appends the body of s (a tree of d's body) at version to wr. Fields absent
 * in the version are not written. Known tagged fields are written when they
 * differ from their default, merged in tag order with s->unknown.
 * Returns BG_KAFKA_OK or a negative status with *why (if why != NULL) set to a
 * static reason; wr may then hold a partial body (truncate to its old len). */
int bg_kafka_encode(const bg_kafka_msg_desc_t *d, int16_t version, const bg_kafka_struct_t *s,
                    bg_wr_t *wr, const char **why) __attribute__((warn_unused_result));
int bg_kafka_encode_struct(const bg_kafka_struct_desc_t *sd, int16_t version, int flexible,
                           const bg_kafka_struct_t *s, bg_wr_t *wr, const char **why)
    __attribute__((warn_unused_result));

/* Short static name of a bg_kafka_status_t ("truncated", ...). */
const char *bg_kafka_status_str(int status);

/* ---- building trees ---- */

/* A new struct of descriptor sd with every field at its JSON default
 * (non-null struct defaults are built recursively). NULL on arena limit. */
bg_kafka_struct_t *bg_kafka_struct_new(bg_kafka_arena_t *a, const bg_kafka_struct_desc_t *sd);
/* Shallow copy of s (values copied; arrays, slices and sub-structs shared). */
bg_kafka_struct_t *bg_kafka_struct_clone(bg_kafka_arena_t *a, const bg_kafka_struct_t *s);
/* Forgets the tagged fields the descriptor does not know, in s and every
 * struct below it (call with depth 0), so encoding leaves them out. Returns
 * 1 when there were any. */
int bg_kafka_struct_drop_unknown(bg_kafka_struct_t *s, int depth);
/* Sets field idx of s (an array of structs) to n fresh elements at their
 * defaults and returns the element pointer array (== s->f[idx].a.s), which
 * the caller may fill, reorder or shorten (.a.n). NULL on arena limit, n < 0,
 * or idx not an array of structs (s is then unchanged). n == 0 gives an
 * empty, non-null array. Arena-owned, like the whole tree. */
bg_kafka_struct_t **bg_kafka_array_new(bg_kafka_arena_t *a, bg_kafka_struct_t *s, int idx,
                                       int32_t n);
/* Same for an array of scalars: n zeroed values (== s->f[idx].a.v). */
bg_kafka_val_t *bg_kafka_array_vals(bg_kafka_arena_t *a, bg_kafka_struct_t *s, int idx, int32_t n);
/* A slice borrowing a NUL-terminated string (static or outliving the tree). */
static inline bg_slice_t bg_kafka_cstr(const char *s)
{
    bg_slice_t r = {(const uint8_t *)s, (int32_t)strlen(s)};
    return r;
}
/* The null slice (null string/bytes/records). */
static inline bg_slice_t bg_kafka_null_slice(void)
{
    bg_slice_t r = {NULL, -1};
    return r;
}
/* Sub-descriptor of struct/array-of-struct field idx of sd (NULL otherwise). */
static inline const bg_kafka_struct_desc_t *bg_kafka_sub_desc(const bg_kafka_struct_desc_t *sd,
                                                              int idx)
{
    return sd->fields[idx].sub;
}

#endif
