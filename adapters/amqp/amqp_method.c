/* Method decode/encode over rabbitmq-c's amqp_framing.h (see amqp_method.h).
 *
 * rabbitmq-c 0.11 facts this relies on: amqp_decode_method reads the
 * arguments only (after the 4-byte class/method ids) and its strings point
 * into the input; amqp_encode_method writes the arguments only and returns
 * the bytes written (its header comment says 0) or a negative
 * amqp_status_enum, without telling "buffer too small" from "invalid". */
#include "adapters/amqp/amqp_method.h"

#include <string.h>

#define BG_AMQP__POOL_PAGE 4096
#define BG_AMQP__ENCODE_FIRST 512

void bg_amqp_arena_init(bg_amqp_arena_t *a)
{
    init_amqp_pool(&a->pool, BG_AMQP__POOL_PAGE);
}

void bg_amqp_arena_reset(bg_amqp_arena_t *a)
{
    recycle_amqp_pool(&a->pool);
}

void bg_amqp_arena_free(bg_amqp_arena_t *a)
{
    empty_amqp_pool(&a->pool);
}

static int bg_amqp__fail(const char **why, const char *reason, int status)
{
    if (why)
        *why = reason;
    return status;
}

/* rabbitmq-c takes non-const byte views; it never writes through them when
 * decoding. */
static amqp_bytes_t bg_amqp__bytes(const uint8_t *p, size_t len)
{
    amqp_bytes_t b;
    b.len = len;
    b.bytes = (void *)(uintptr_t)p;
    return b;
}

static int bg_amqp__decode_update_secret(const uint8_t *p, size_t len, bg_amqp_arena_t *a,
                                         void **out)
{
    bg_rd_t rd;
    bg_rd_init(&rd, p, len);
    uint32_t n = bg_rd_u32(&rd);
    bg_slice_t secret = bg_rd_bytes(&rd, n > INT32_MAX ? -1 : (int32_t)n);
    bg_slice_t reason = bg_rd_bytes(&rd, bg_rd_u8(&rd));
    if (rd.err || bg_rd_left(&rd))
        return BG_AMQP_ERR_MALFORMED;
    bg_amqp_update_secret_t *m = amqp_pool_alloc(&a->pool, sizeof *m);
    if (!m)
        return BG_AMQP_ERR_NOMEM;
    m->new_secret = bg_amqp__bytes(secret.p, (size_t)secret.len);
    m->reason = bg_amqp__bytes(reason.p, (size_t)reason.len);
    *out = m;
    return BG_AMQP_OK;
}

int bg_amqp_method_decode(const bg_amqp_frame_t *f, const bg_amqp_limits_t *lim,
                          bg_amqp_arena_t *a, bg_amqp_method_t *m, const char **why)
{
    if (f->type != BG_AMQP_FRAME_METHOD || !f->payload)
        return bg_amqp__fail(why, "not a complete method frame", BG_AMQP_ERR_FRAME);
    int rc = bg_amqp_validate_method(f->channel, f->payload, f->size, lim, why);
    if (rc != BG_AMQP_OK)
        return rc;
    /* Validated: at least 4 bytes, known id. */
    m->id = (uint32_t)f->payload[0] << 24 | (uint32_t)f->payload[1] << 16 |
            (uint32_t)f->payload[2] << 8 | f->payload[3];
    m->info = bg_amqp_method_info(m->id);
    m->decoded = NULL;
    const uint8_t *args = f->payload + 4;
    size_t args_len = f->size - 4;
    if (m->id == BG_AMQP_CONNECTION_UPDATE_SECRET_OK)
        return BG_AMQP_OK;
    if (m->id == BG_AMQP_CONNECTION_UPDATE_SECRET) {
        rc = bg_amqp__decode_update_secret(args, args_len, a, &m->decoded);
        return rc == BG_AMQP_OK ? rc : bg_amqp__fail(why, "bad connection.update-secret", rc);
    }
    rc = amqp_decode_method(m->id, &a->pool, bg_amqp__bytes(args, args_len), &m->decoded);
    if (rc == AMQP_STATUS_NO_MEMORY)
        return bg_amqp__fail(why, "out of memory decoding a method", BG_AMQP_ERR_NOMEM);
    if (rc < 0)
        return bg_amqp__fail(why, "rabbitmq-c refused a validated method", BG_AMQP_ERR_MALFORMED);
    return BG_AMQP_OK;
}

static int bg_amqp__encode_update_secret(bg_wr_t *wr, const bg_amqp_update_secret_t *m)
{
    if (m->new_secret.len > UINT32_MAX || m->reason.len > 255)
        return BG_AMQP_ERR_ENCODE;
    bg_wr_u32(wr, (uint32_t)m->new_secret.len);
    bg_wr_bytes(wr, m->new_secret.bytes, m->new_secret.len);
    bg_wr_u8(wr, (uint8_t)m->reason.len);
    bg_wr_bytes(wr, m->reason.bytes, m->reason.len);
    return BG_AMQP_OK;
}

/* Encodes rabbitmq-c arguments at the end of wr, growing the room until
 * they fit or the bound is reached (a failure at the bound is "invalid"). */
static int bg_amqp__encode_args(bg_wr_t *wr, uint32_t id, const void *decoded)
{
    size_t bound = wr->max - wr->len;
    if (bound > BG_AMQP_ENCODE_MAX)
        bound = BG_AMQP_ENCODE_MAX;
    for (size_t cap = BG_AMQP__ENCODE_FIRST;; cap *= 4) {
        if (cap > bound)
            cap = bound;
        uint8_t *room = bg_wr_room(wr, cap);
        if (!room)
            return BG_AMQP_ERR_ENCODE;
        amqp_bytes_t out = {cap, room};
        int n = amqp_encode_method(id, (void *)(uintptr_t)decoded, out);
        if (n >= 0 && (size_t)n <= cap) {
            wr->len += (size_t)n;
            return BG_AMQP_OK;
        }
        if (cap == bound)
            return BG_AMQP_ERR_ENCODE;
    }
}

int bg_amqp_method_encode(bg_wr_t *wr, uint16_t channel, uint32_t id, const void *decoded,
                          const char **why)
{
    const bg_amqp_method_info_t *info = bg_amqp_method_info(id);
    if (!info)
        return bg_amqp__fail(why, "unknown class or method", BG_AMQP_ERR_UNKNOWN_METHOD);
    if (wr->failed)
        return bg_amqp__fail(why, "writer failed", BG_AMQP_ERR_ENCODE);
    size_t start = wr->len;
    size_t off = bg_amqp_frame_begin(wr, BG_AMQP_FRAME_METHOD, channel);
    bg_wr_u32(wr, id);
    int rc = BG_AMQP_OK;
    if (id == BG_AMQP_CONNECTION_UPDATE_SECRET)
        rc = decoded ? bg_amqp__encode_update_secret(wr, decoded) : BG_AMQP_ERR_ENCODE;
    else if (info->args[0] != '\0')
        rc = decoded ? bg_amqp__encode_args(wr, id, decoded) : BG_AMQP_ERR_ENCODE;
    if (rc == BG_AMQP_OK && !wr->failed) {
        bg_amqp_frame_end(wr, off);
        if (!wr->failed)
            return BG_AMQP_OK;
    }
    if (!wr->failed)
        wr->len = start; /* leave no half frame behind */
    return bg_amqp__fail(why, "method cannot be encoded", BG_AMQP_ERR_ENCODE);
}

int bg_amqp_properties_decode(bg_slice_t props, const bg_amqp_limits_t *lim, bg_amqp_arena_t *a,
                              amqp_basic_properties_t **out, const char **why)
{
    size_t len = props.len > 0 ? (size_t)props.len : 0;
    int rc = bg_amqp_validate_properties(props.p, len, lim, why);
    if (rc != BG_AMQP_OK)
        return rc;
    void *decoded = NULL;
    rc = amqp_decode_properties(AMQP_BASIC_CLASS, &a->pool, bg_amqp__bytes(props.p, len),
                                &decoded);
    if (rc == AMQP_STATUS_NO_MEMORY)
        return bg_amqp__fail(why, "out of memory decoding properties", BG_AMQP_ERR_NOMEM);
    if (rc < 0 || !decoded)
        return bg_amqp__fail(why, "rabbitmq-c refused validated properties",
                             BG_AMQP_ERR_MALFORMED);
    *out = decoded;
    return BG_AMQP_OK;
}
