/* Fuzz target: a Kafka response body as busgate reads it from a broker.
 * Input: [api key][version - valid_min (mod range)][flags][body...]; flags
 * bit 0 decodes the request schema instead (same engine, more shapes), bits
 * 1-3 pick a small arena limit to exercise the limit paths. Bodies that
 * decode are re-encoded: exactly the input when canonical, else a fixpoint.
 * The whole input is also read as a response header (v0 and flexible v1),
 * the part busgate parses of every response before it decides anything. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/kafka/kafka_codec.h"
#include "adapters/kafka/kafka_frame.h"

/* memcmp that accepts the NULL buffer of an empty writer. */
static int bg_fuzz__same(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* A response header's parse stays inside the input and says why it fails. */
static void bg_fuzz__resp_hdr(const uint8_t *data, size_t size)
{
    for (int hv = 0; hv <= 1; hv++) {
        int32_t corr;
        bg_slice_t tagged = {NULL, 0};
        const char *why = NULL;
        int n = bg_kafka_resp_hdr_parse(data, size, hv, &corr, &tagged, &why);
        if (n < 0 ? !why : (n < 4 || (size_t)n > size))
            abort();
        if (n >= 0 && tagged.len &&
            (tagged.p < data || tagged.p + tagged.len > data + n))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bg_fuzz__resp_hdr(data, size);
    if (size < 3)
        return 0;
    const bg_kafka_msg_desc_t *d = bg_kafka_msg_desc(data[0], !(data[2] & 1));
    if (!d)
        return 0;
    int range = d->valid_max - d->valid_min + 1;
    if (range <= 0)
        return 0; /* api removed from Kafka ("validVersions": "none") */
    int16_t ver = (int16_t)(d->valid_min + data[1] % range);
    unsigned lim = (data[2] >> 1) & 7;
    bg_kafka_arena_t a;
    bg_kafka_arena_init(&a, lim ? (size_t)2048 << lim : 0);
    bg_rd_t rd;
    bg_rd_init(&rd, data + 3, size - 3);
    bg_kafka_struct_t *s;
    int rc = bg_kafka_decode(d, ver, &rd, &a, &s);
    if (rc != BG_KAFKA_OK) {
        if (rc >= 0 || !rd.why || rd.p < data + 3 || rd.p > data + size)
            abort();
        bg_kafka_arena_free(&a);
        return 0;
    }
    size_t used = (size_t)(rd.p - (data + 3));
    bg_wr_t w1, w2;
    bg_wr_init(&w1, 0, 0);
    bg_wr_init(&w2, 0, 0);
    const char *why;
    if (bg_kafka_encode(d, ver, s, &w1, &why) != BG_KAFKA_OK)
        abort();
    if (!rd.noncanon && !bg_fuzz__same(w1.buf, w1.len, data + 3, used))
        abort();
    /* fixpoint: re-encoding what was re-encoded changes nothing */
    bg_kafka_arena_free(&a);
    bg_kafka_arena_init(&a, 0);
    bg_rd_init(&rd, w1.buf, w1.len);
    if (bg_kafka_decode(d, ver, &rd, &a, &s) != BG_KAFKA_OK || bg_rd_left(&rd))
        abort();
    if (bg_kafka_encode(d, ver, s, &w2, &why) != BG_KAFKA_OK ||
        !bg_fuzz__same(w1.buf, w1.len, w2.buf, w2.len))
        abort();
    bg_wr_free(&w1);
    bg_wr_free(&w2);
    bg_kafka_arena_free(&a);
    return 0;
}
