/* A flexible-version body that starts with a one-element array whose first
 * field is a compact string of n bytes ('a'), then tail: for the tests of
 * the 32767-byte bound on strings (the codec's and the response scan's). */
#ifndef BG_TEST_KAFKA_LONG_NAME_H
#define BG_TEST_KAFKA_LONG_NAME_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Writes the body into b (room for n + 4 + tail_len bytes; n + 1 < 2^21,
 * three varint bytes); returns its length. */
static inline size_t kt_long_name_body(uint8_t *b, int32_t n, const uint8_t *tail,
                                       size_t tail_len)
{
    size_t k = 0;
    uint32_t l = (uint32_t)n + 1;
    b[k++] = 0x02; /* one element */
    b[k++] = (uint8_t)(0x80 | (l & 0x7f));
    b[k++] = (uint8_t)(0x80 | ((l >> 7) & 0x7f));
    b[k++] = (uint8_t)(l >> 14);
    memset(b + k, 'a', (size_t)n);
    k += (size_t)n;
    memcpy(b + k, tail, tail_len);
    return k + tail_len;
}

#endif
