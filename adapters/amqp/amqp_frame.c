/* AMQP 0-9-1 framing (see amqp_frame.h). */
#include "adapters/amqp/amqp_frame.h"

static int bg_amqp__fail(const char **why, const char *reason, int status)
{
    if (why)
        *why = reason;
    return status;
}

int bg_amqp_protocol_header_check(const uint8_t *p, size_t avail, const char **why)
{
    static const uint8_t want[BG_AMQP_PROTOCOL_HEADER_LEN] = BG_AMQP_PROTOCOL_HEADER;
    size_t n = avail < BG_AMQP_PROTOCOL_HEADER_LEN ? avail : BG_AMQP_PROTOCOL_HEADER_LEN;
    /* Refuse at the first wrong byte: a client that sent "GET /" must not sit
     * waiting for 8 bytes that never come. */
    for (size_t i = 0; i < n; i++) {
        if (p[i] == want[i])
            continue;
        if (i < 4)
            return bg_amqp__fail(why, "not an AMQP protocol header", BG_AMQP_ERR_HEADER);
        return bg_amqp__fail(why, "AMQP protocol version not supported (0-9-1 only)",
                             BG_AMQP_ERR_HEADER);
    }
    return n == BG_AMQP_PROTOCOL_HEADER_LEN ? BG_AMQP_PROTOCOL_HEADER_LEN : 0;
}

void bg_amqp_protocol_header_write(bg_wr_t *wr)
{
    bg_wr_bytes(wr, BG_AMQP_PROTOCOL_HEADER, BG_AMQP_PROTOCOL_HEADER_LEN);
}

static int bg_amqp__known_type(uint8_t type)
{
    return type == BG_AMQP_FRAME_METHOD || type == BG_AMQP_FRAME_HEADER ||
           type == BG_AMQP_FRAME_BODY || type == BG_AMQP_FRAME_HEARTBEAT;
}

int64_t bg_amqp_frame_peek(const uint8_t *p, size_t avail, uint32_t max, bg_amqp_frame_t *f,
                           const char **why)
{
    if (max < BG_AMQP_FRAME_MIN_SIZE)
        max = BG_AMQP_FRAME_MIN_SIZE;
    f->payload = NULL;
    if (avail == 0)
        return 0;
    if (!bg_amqp__known_type(p[0]))
        return bg_amqp__fail(why, "unknown frame type", BG_AMQP_ERR_FRAME);
    if (avail < BG_AMQP_FRAME_HEADER_SIZE)
        return 0;
    bg_rd_t rd;
    bg_rd_init(&rd, p, BG_AMQP_FRAME_HEADER_SIZE);
    f->type = bg_rd_u8(&rd);
    f->channel = bg_rd_u16(&rd);
    f->size = bg_rd_u32(&rd);
    /* The payload, as RabbitMQ checks it (see amqp_frame.h). */
    if (f->size > max)
        return bg_amqp__fail(why, "frame larger than frame_max", BG_AMQP_ERR_TOO_LARGE);
    /* In 64 bits: size + 8 may not fit 32. */
    uint64_t total = (uint64_t)f->size + BG_AMQP_FRAME_OVERHEAD;
    if (avail < total)
        return 0;
    if (p[total - 1] != BG_AMQP_FRAME_END)
        return bg_amqp__fail(why, "bad frame end octet", BG_AMQP_ERR_FRAME);
    f->payload = p + BG_AMQP_FRAME_HEADER_SIZE;
    return (int64_t)total;
}

size_t bg_amqp_frame_begin(bg_wr_t *wr, uint8_t type, uint16_t channel)
{
    bg_wr_u8(wr, type);
    bg_wr_u16(wr, channel);
    return bg_wr_reserve_i32(wr);
}

void bg_amqp_frame_end(bg_wr_t *wr, size_t size_off)
{
    bg_wr_patch_i32(wr, size_off, (int32_t)(uint32_t)(wr->len - size_off - 4));
    bg_wr_u8(wr, BG_AMQP_FRAME_END);
}

void bg_amqp_frame_write(bg_wr_t *wr, uint8_t type, uint16_t channel, const void *payload,
                         size_t len)
{
    if (len > UINT32_MAX) {
        wr->failed = 1;
        return;
    }
    size_t off = bg_amqp_frame_begin(wr, type, channel);
    bg_wr_bytes(wr, payload, len);
    bg_amqp_frame_end(wr, off);
}

void bg_amqp_heartbeat_write(bg_wr_t *wr)
{
    bg_amqp_frame_write(wr, BG_AMQP_FRAME_HEARTBEAT, 0, NULL, 0);
}

int bg_amqp_content_header_parse(const uint8_t *payload, size_t len, bg_amqp_content_header_t *h,
                                 const char **why)
{
    if (len > INT32_MAX)
        return bg_amqp__fail(why, "content header too large", BG_AMQP_ERR_TOO_LARGE);
    bg_rd_t rd;
    bg_rd_init(&rd, payload, len);
    h->class_id = bg_rd_u16(&rd);
    uint16_t weight = bg_rd_u16(&rd);
    h->body_size = bg_rd_u64(&rd);
    const uint8_t *props = rd.p;
    h->flags = bg_rd_u16(&rd);
    if (rd.err)
        return bg_amqp__fail(why, "content header truncated", BG_AMQP_ERR_TRUNCATED);
    if (weight != 0)
        return bg_amqp__fail(why, "content header weight not 0", BG_AMQP_ERR_MALFORMED);
    h->props.p = props;
    h->props.len = (int32_t)(rd.end - props);
    return BG_AMQP_OK;
}

void bg_amqp_content_header_write(bg_wr_t *wr, uint16_t channel,
                                  const bg_amqp_content_header_t *h)
{
    size_t off = bg_amqp_frame_begin(wr, BG_AMQP_FRAME_HEADER, channel);
    bg_wr_u16(wr, h->class_id);
    bg_wr_u16(wr, 0);
    bg_wr_u64(wr, h->body_size);
    if (h->props.len > 0)
        bg_wr_bytes(wr, h->props.p, (size_t)h->props.len);
    bg_amqp_frame_end(wr, off);
}

uint16_t bg_amqp_status_reply_code(int status)
{
    switch (status) {
    case BG_AMQP_ERR_FRAME:
    case BG_AMQP_ERR_TOO_LARGE:
    case BG_AMQP_ERR_HEADER:
        return 501;
    case BG_AMQP_ERR_TRUNCATED:
    case BG_AMQP_ERR_MALFORMED:
    case BG_AMQP_ERR_TRAILING:
        return 502;
    case BG_AMQP_ERR_CHANNEL:
        return 504;
    case BG_AMQP_ERR_LIMIT:
        return 506;
    case BG_AMQP_ERR_UNKNOWN_METHOD:
        return 540;
    case BG_AMQP_ERR_AUTH:
        return 403;
    default:
        return 541;
    }
}

uint16_t bg_amqp_method_status_reply_code(int status)
{
    if (status == BG_AMQP_ERR_TRUNCATED || status == BG_AMQP_ERR_TRAILING)
        return 501;
    return bg_amqp_status_reply_code(status);
}
