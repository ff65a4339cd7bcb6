/* Kafka framing and headers (see kafka_frame.h). */
#include "adapters/kafka/kafka_frame.h"

int64_t bg_kafka_frame_peek(const uint8_t *p, size_t avail, uint32_t max, uint32_t *size)
{
    if (avail < 4)
        return 0;
    bg_rd_t rd;
    bg_rd_init(&rd, p, 4);
    int32_t n = bg_rd_i32(&rd);
    if (n < 0 || (uint32_t)n > max)
        return -1;
    *size = (uint32_t)n;
    if (avail - 4 < (size_t)n)
        return 0;
    return (int64_t)n + 4;
}

int bg_kafka_req_hdr_version(int16_t api_key, int16_t api_version)
{
    const bg_kafka_msg_desc_t *d = bg_kafka_msg_desc(api_key, 0);
    if (!d)
        return -1;
    return bg_kafka_is_flexible(d, api_version) ? 2 : 1;
}

int bg_kafka_resp_hdr_version(int16_t api_key, int16_t api_version)
{
    const bg_kafka_msg_desc_t *d = bg_kafka_msg_desc(api_key, 1);
    if (!d)
        return -1;
    if (api_key == BG_KAFKA_API_API_VERSIONS)
        return 0;
    return bg_kafka_is_flexible(d, api_version) ? 1 : 0;
}

/* Skips a tagged-field section, returning it raw (count included). */
static bg_slice_t bg_kafka__skip_tagged(bg_rd_t *rd)
{
    const uint8_t *start = rd->p;
    bg_slice_t s = {NULL, 0};
    uint32_t n = bg_rd_uvarint(rd);
    if (!rd->err && n > bg_rd_left(rd) / 2)
        bg_rd_fail(rd, "tagged field count exceeds input");
    for (uint32_t i = 0; i < n && !rd->err; i++) {
        (void)bg_rd_uvarint(rd); /* tag */
        bg_rd_skip(rd, bg_rd_uvarint(rd));
    }
    if (!rd->err) {
        s.p = start;
        s.len = (int32_t)(rd->p - start);
    }
    return s;
}

static int bg_kafka__hdr_status(const bg_rd_t *rd, const char **why)
{
    if (why)
        *why = rd->why;
    if (rd->why && rd->why[0] == 't' && rd->why[1] == 'r')
        return BG_KAFKA_ERR_TRUNCATED;
    return BG_KAFKA_ERR_MALFORMED;
}

static int bg_kafka__hdr_failed(const bg_rd_t *rd, const uint8_t *p, bg_kafka_req_hdr_t *h,
                                const char **why)
{
    h->err_offset = (uint32_t)(rd->p - p);
    return bg_kafka__hdr_status(rd, why);
}

int bg_kafka_req_hdr_parse(const uint8_t *p, size_t len, bg_kafka_req_hdr_t *h, const char **why)
{
    bg_rd_t rd;
    bg_rd_init(&rd, p, len);
    h->api_key = bg_rd_i16(&rd);
    h->api_version = bg_rd_i16(&rd);
    h->correlation_id = bg_rd_i32(&rd);
    h->client_id.p = NULL;
    h->client_id.len = -1;
    h->tagged.p = NULL;
    h->tagged.len = 0;
    h->hdr_version = 1;
    h->err_offset = 0;
    if (rd.err)
        return bg_kafka__hdr_failed(&rd, p, h, why);
    int hv = bg_kafka_req_hdr_version(h->api_key, h->api_version);
    if (hv < 0) {
        if (why)
            *why = "unknown api key";
        return BG_KAFKA_ERR_UNKNOWN_API;
    }
    h->hdr_version = (uint8_t)hv;
    int16_t n = bg_rd_i16(&rd);
    if (n < -1)
        bg_rd_fail(&rd, "bad client_id length");
    else if (n >= 0)
        h->client_id = bg_rd_bytes(&rd, n);
    if (hv == 2)
        h->tagged = bg_kafka__skip_tagged(&rd);
    if (rd.err)
        return bg_kafka__hdr_failed(&rd, p, h, why);
    return (int)(rd.p - p);
}

int bg_kafka_resp_hdr_parse(const uint8_t *p, size_t len, int hdr_version, int32_t *correlation_id,
                            bg_slice_t *tagged, const char **why)
{
    bg_rd_t rd;
    bg_rd_init(&rd, p, len);
    *correlation_id = bg_rd_i32(&rd);
    bg_slice_t t = {NULL, 0};
    if (hdr_version >= 1)
        t = bg_kafka__skip_tagged(&rd);
    if (rd.err)
        return bg_kafka__hdr_status(&rd, why);
    if (tagged)
        *tagged = t;
    return (int)(rd.p - p);
}

void bg_kafka_req_hdr_write(bg_wr_t *wr, const bg_kafka_req_hdr_t *h)
{
    bg_wr_i16(wr, h->api_key);
    bg_wr_i16(wr, h->api_version);
    bg_wr_i32(wr, h->correlation_id);
    if (h->client_id.len < 0) {
        bg_wr_i16(wr, -1);
    } else {
        bg_wr_i16(wr, (int16_t)(h->client_id.len > INT16_MAX ? INT16_MAX : h->client_id.len));
        bg_wr_bytes(wr, h->client_id.p,
                    (size_t)(h->client_id.len > INT16_MAX ? INT16_MAX : h->client_id.len));
    }
    if (h->hdr_version >= 2) {
        if (h->tagged.len > 0)
            bg_wr_bytes(wr, h->tagged.p, (size_t)h->tagged.len);
        else
            bg_wr_u8(wr, 0);
    }
}

void bg_kafka_resp_hdr_write(bg_wr_t *wr, int hdr_version, int32_t correlation_id)
{
    bg_wr_i32(wr, correlation_id);
    if (hdr_version >= 1)
        bg_wr_u8(wr, 0);
}
