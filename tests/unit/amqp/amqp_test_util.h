/* Helpers shared by the AMQP codec tests: building frames and payloads by
 * hand (independently of the builders under test) and loading captures. */
#ifndef BG_AMQP_TEST_UTIL_H
#define BG_AMQP_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "adapters/amqp/amqp_frame.h"
#include "broker/bytes.h"

/* A byte-string literal with its length (literals may hold \0). */
#define LIT(s) (const uint8_t *)(s), (sizeof(s) - 1)

static inline void t_shortstr(bg_wr_t *w, const char *s)
{
    bg_wr_u8(w, (uint8_t)strlen(s));
    bg_wr_bytes(w, s, strlen(s));
}

static inline void t_longstr(bg_wr_t *w, const char *s)
{
    bg_wr_u32(w, (uint32_t)strlen(s));
    bg_wr_bytes(w, s, strlen(s));
}

/* Appends a frame of type on channel whose payload is pl[0..n). */
static inline void t_frame(bg_wr_t *w, uint8_t type, uint16_t ch, const uint8_t *pl, size_t n)
{
    bg_wr_u8(w, type);
    bg_wr_u16(w, ch);
    bg_wr_u32(w, (uint32_t)n);
    bg_wr_bytes(w, pl, n);
    bg_wr_u8(w, 0xCE);
}

/* Peeks a buffer that must hold exactly one complete frame. */
static inline bg_amqp_frame_t t_peek_one(const uint8_t *p, size_t n, uint32_t max)
{
    bg_amqp_frame_t f;
    const char *why = NULL;
    int64_t r = bg_amqp_frame_peek(p, n, max, &f, &why);
    if (r != (int64_t)n)
        fail_msg("peek returned %lld for %zu bytes (%s)", (long long)r, n, why ? why : "-");
    return f;
}

/* Reads a file under the repository (BG_SOURCE_DIR); caller frees. */
static inline uint8_t *t_read_repo_file(const char *rel, size_t *len)
{
    const char *root = getenv("BG_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root ? root : ".", rel);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    uint8_t *buf = malloc(1 << 20);
    assert_non_null(buf);
    *len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

#endif
