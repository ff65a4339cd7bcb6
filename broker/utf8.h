/* Strict UTF-8: the one validator busgate's text writers share. */
#ifndef BG_UTF8_H
#define BG_UTF8_H

#include <stddef.h>

/* Length (1-4) of the valid UTF-8 sequence at p, of at most avail bytes; 0
 * when it is not one (a stray or truncated sequence, an overlong form, a
 * surrogate, beyond U+10FFFF). ASCII, control bytes included, is 1. */
static inline size_t bg_utf8_len(const unsigned char *p, size_t avail)
{
    unsigned c = p[0];
    size_t n = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                            : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (n == 0 || n > avail)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F) || (c == 0xF0 && p[1] < 0x90) ||
        (c == 0xF4 && p[1] > 0x8F))
        return 0;
    return n;
}

#endif
