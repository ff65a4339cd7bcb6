/* Fuzz target: the in-buffer scan of a response body (kafka_scan.c), which
 * busgate runs on Fetch/Produce responses from the broker.
 * Input: [api key][version - valid_min (mod range)][chunk][body...]. The
 * body is split into libevent chains of `chunk` bytes so reads cross chain
 * boundaries. Property: whatever the codec decodes completely and
 * canonically, the scan walks too, and finds the same top-level tags. */
#include <event2/buffer.h>
#include <stdint.h>
#include <stdlib.h>

#include "adapters/kafka/kafka_codec.h"
#include "adapters/kafka/kafka_scan.h"

static uint64_t bg_fuzz__known_tags(const bg_kafka_struct_t *s, int16_t ver)
{
    uint64_t t = 0;
    for (uint32_t i = 0; i < s->nunknown; i++)
        t |= 1ull << (s->unknown[i].tag < 63 ? s->unknown[i].tag : 63);
    (void)ver;
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    const bg_kafka_msg_desc_t *d = bg_kafka_msg_desc(data[0], 1);
    if (!d || d->valid_max < d->valid_min)
        return 0;
    int16_t ver = (int16_t)(d->valid_min + data[1] % (d->valid_max - d->valid_min + 1));
    size_t chunk = (size_t)(data[2] % 16) + 1, len = size - 3;
    struct evbuffer *buf = evbuffer_new();
    for (size_t off = 0; buf && off < len; off += chunk) {
        struct evbuffer *piece = evbuffer_new();
        evbuffer_add(piece, data + 3 + off, len - off < chunk ? len - off : chunk);
        evbuffer_add_buffer(buf, piece); /* keeps it a chain of its own */
        evbuffer_free(piece);
    }
    if (!buf)
        return 0;
    uint64_t tags = 0;
    int scanned = bg_kafka_scan_top_tags(buf, 0, len, d, ver, &tags);

    bg_kafka_arena_t a;
    bg_kafka_arena_init(&a, 0);
    bg_rd_t rd;
    bg_rd_init(&rd, data + 3, len);
    bg_kafka_struct_t *s = NULL;
    int rc = bg_kafka_decode(d, ver, &rd, &a, &s);
    if (rc == BG_KAFKA_OK && bg_rd_left(&rd) == 0 && !rd.noncanon) {
        if (scanned != 0)
            abort(); /* the scan refused a body the codec accepts */
        /* Unknown tags the codec kept must be among those the scan saw. */
        uint64_t unknown = bg_fuzz__known_tags(s, ver);
        if ((unknown & tags) != unknown)
            abort();
    }
    bg_kafka_arena_free(&a);
    evbuffer_free(buf);
    return 0;
}
