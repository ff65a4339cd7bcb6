/* Fuzz target: a client's byte stream as busgate's Kafka listener sees it.
 * Frame peek -> request header -> body decode for whatever api key and
 * version the header names; bodies that decode are re-encoded and must give
 * the same bytes (exactly when the input was canonical; otherwise encoding
 * must be a fixpoint), and the header must re-encode to its input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/kafka/kafka_frame.h"

#define FUZZ_MAX_FRAME (1u << 20)

/* memcmp that accepts the NULL buffer of an empty writer. */
static int bg_fuzz__same(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static void bg_fuzz__check_fixpoint(const bg_kafka_msg_desc_t *d, int16_t ver, const bg_wr_t *w1)
{
    bg_kafka_arena_t a;
    bg_kafka_arena_init(&a, 0);
    bg_rd_t rd;
    bg_rd_init(&rd, w1->buf, w1->len);
    bg_kafka_struct_t *s;
    if (bg_kafka_decode(d, ver, &rd, &a, &s) != BG_KAFKA_OK || bg_rd_left(&rd))
        abort();
    bg_wr_t w2;
    bg_wr_init(&w2, 0, 0);
    const char *why;
    if (bg_kafka_encode(d, ver, s, &w2, &why) != BG_KAFKA_OK ||
        !bg_fuzz__same(w1->buf, w1->len, w2.buf, w2.len))
        abort();
    bg_wr_free(&w2);
    bg_kafka_arena_free(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t fsize;
    int64_t flen = bg_kafka_frame_peek(data, size, FUZZ_MAX_FRAME, &fsize);
    if (flen <= 0)
        return 0;
    const uint8_t *payload = data + 4;
    bg_kafka_req_hdr_t h;
    const char *why = NULL;
    int off = bg_kafka_req_hdr_parse(payload, fsize, &h, &why);
    if (off < 0)
        return 0;
    if ((uint32_t)off > fsize)
        abort();
    bg_wr_t hw;
    bg_wr_init(&hw, 0, 0);
    bg_kafka_req_hdr_write(&hw, &h);
    if (!bg_fuzz__same(hw.buf, hw.len, payload, (size_t)off))
        abort();
    bg_wr_free(&hw);

    const bg_kafka_msg_desc_t *d = bg_kafka_msg_desc(h.api_key, 0);
    if (!d)
        abort(); /* the header parser accepted an unknown api key */
    bg_kafka_arena_t a;
    bg_kafka_arena_init(&a, 16u << 20);
    bg_rd_t rd;
    bg_rd_init(&rd, payload + off, fsize - (uint32_t)off);
    bg_kafka_struct_t *s;
    int rc = bg_kafka_decode(d, h.api_version, &rd, &a, &s);
    if (rc != BG_KAFKA_OK) {
        if (rc >= 0 || !rd.why || rd.p < payload + off || rd.p > rd.end)
            abort();
        bg_kafka_arena_free(&a);
        return 0;
    }
    size_t used = (size_t)(rd.p - (payload + off));
    bg_wr_t wr;
    bg_wr_init(&wr, 0, 0);
    if (bg_kafka_encode(d, h.api_version, s, &wr, &why) != BG_KAFKA_OK)
        abort();
    if (!rd.noncanon && !bg_fuzz__same(wr.buf, wr.len, payload + off, used))
        abort();
    bg_fuzz__check_fixpoint(d, h.api_version, &wr);
    bg_wr_free(&wr);
    bg_kafka_arena_free(&a);
    return 0;
}
