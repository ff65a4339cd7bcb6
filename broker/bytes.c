/* Out-of-line parts of the bounded reader/writer (see bytes.h). */
#include "broker/bytes.h"

#include <stdlib.h>

uint32_t bg_rd__uvarint_slow(bg_rd_t *rd)
{
    if (rd->err)
        return 0;
    const uint8_t *p = rd->p;
    uint32_t v = 0;
    for (int shift = 0; shift <= 28; shift += 7) {
        if (p >= rd->end) {
            bg_rd_fail(rd, "truncated varint");
            return 0;
        }
        uint8_t b = *p++;
        /* The 5th byte carries bits 28..31 only and must end the varint. */
        if (shift == 28 && b > 0x0f)
            break;
        v |= (uint32_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            if (b == 0 && shift > 0)
                rd->noncanon = 1; /* overlong: re-encodes shorter */
            rd->p = p;
            return v;
        }
    }
    bg_rd_fail(rd, "bad varint");
    return 0;
}

uint64_t bg_rd_uvarlong(bg_rd_t *rd)
{
    if (rd->err)
        return 0;
    const uint8_t *p = rd->p;
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (p >= rd->end) {
            bg_rd_fail(rd, "truncated varint");
            return 0;
        }
        uint8_t b = *p++;
        if (shift == 63 && b > 1)
            break;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            /* A trailing zero group (e.g. 80 00 for 0) decodes fine but would be
             * re-encoded shorter. */
            if (b == 0 && shift > 0)
                rd->noncanon = 1;
            rd->p = p;
            return v;
        }
    }
    bg_rd_fail(rd, "bad varint");
    return 0;
}

void bg_wr_init(bg_wr_t *wr, size_t initial_cap, size_t max)
{
    wr->buf = NULL;
    wr->len = 0;
    wr->cap = 0;
    wr->max = max ? max : SIZE_MAX / 2;
    wr->failed = 0;
    if (initial_cap && initial_cap <= wr->max) {
        wr->buf = malloc(initial_cap);
        if (wr->buf)
            wr->cap = initial_cap;
    }
}

void bg_wr_free(bg_wr_t *wr)
{
    free(wr->buf);
    wr->buf = NULL;
    wr->len = wr->cap = 0;
}

uint8_t *bg_wr__grow(bg_wr_t *wr, size_t n)
{
    if (wr->failed)
        return NULL;
    if (n > wr->max - wr->len) {
        wr->failed = 1;
        return NULL;
    }
    size_t need = wr->len + n;
    size_t cap = wr->cap ? wr->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 4 ? need : cap * 2;
    if (cap > wr->max)
        cap = wr->max;
    uint8_t *nb = realloc(wr->buf, cap);
    if (!nb) {
        wr->failed = 1;
        return NULL;
    }
    wr->buf = nb;
    wr->cap = cap;
    return wr->buf + wr->len;
}
