/* Fuzz target: the pre-validators on their own, the first byte choosing
 * what the rest is: 0 method payload (channel from byte 1), 1 content
 * header payload, 2 property list, 3 table body, 4 PLAIN response,
 * 5 AMQPLAIN response. Invariant: what a validator accepts, rabbitmq-c
 * decodes without error (the reason validation exists). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/amqp/amqp_method.h"

static void bg_fuzz__method(uint16_t ch, const uint8_t *p, size_t n, bg_amqp_arena_t *a)
{
    const char *why = NULL;
    int rc = bg_amqp_validate_method(ch, p, n, NULL, &why);
    if (rc != BG_AMQP_OK) {
        if (rc > 0 || !why)
            abort();
        return;
    }
    bg_amqp_frame_t f = {BG_AMQP_FRAME_METHOD, ch, (uint32_t)n, p};
    bg_amqp_method_t m;
    if (bg_amqp_method_decode(&f, NULL, a, &m, NULL) != BG_AMQP_OK)
        abort();
}

static void bg_fuzz__header(const uint8_t *p, size_t n, bg_amqp_arena_t *a)
{
    if (bg_amqp_validate_header(1, p, n, NULL, NULL) != BG_AMQP_OK)
        return;
    bg_amqp_content_header_t h;
    amqp_basic_properties_t *props;
    if (bg_amqp_content_header_parse(p, n, &h, NULL) != BG_AMQP_OK ||
        bg_amqp_properties_decode(h.props, NULL, a, &props, NULL) != BG_AMQP_OK)
        abort();
}

static void bg_fuzz__props(const uint8_t *p, size_t n, bg_amqp_arena_t *a)
{
    bg_slice_t s = {p, (int32_t)n};
    amqp_basic_properties_t *props;
    int ok = bg_amqp_validate_properties(p, n, NULL, NULL) == BG_AMQP_OK;
    if (ok != (bg_amqp_properties_decode(s, NULL, a, &props, NULL) == BG_AMQP_OK))
        abort();
}

/* A table body that validates also decodes in rabbitmq-c once given its
 * size prefix, with the same entry count at the top. */
static void bg_fuzz__table(const uint8_t *p, size_t n, bg_amqp_arena_t *a)
{
    if (bg_amqp_validate_table_body(p, n, NULL, NULL) != BG_AMQP_OK)
        return;
    uint8_t *buf = malloc(n + 4);
    if (!buf)
        return;
    bg_wr__put32(buf, (uint32_t)n);
    if (n)
        memcpy(buf + 4, p, n);
    amqp_bytes_t enc = {n + 4, buf};
    amqp_table_t t;
    size_t off = 0;
    if (amqp_decode_table(enc, &a->pool, &t, &off) != AMQP_STATUS_OK || off != n + 4)
        abort();
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > (1u << 20))
        return 0;
    bg_amqp_arena_t a;
    bg_amqp_arena_init(&a);
    const uint8_t *p = data + 2;
    size_t n = size - 2;
    bg_amqp_creds_t c;
    switch (data[0] % 6) {
    case 0:
        bg_fuzz__method(data[1] & 3, p, n, &a);
        break;
    case 1:
        bg_fuzz__header(p, n, &a);
        break;
    case 2:
        bg_fuzz__props(p, n, &a);
        break;
    case 3:
        bg_fuzz__table(p, n, &a);
        break;
    case 4:
    default:
        /* Accepted credentials are never empty and stay inside the input. */
        if (bg_amqp_sasl_creds((const uint8_t *)(data[0] % 6 == 4 ? "PLAIN" : "AMQPLAIN"),
                               data[0] % 6 == 4 ? 5 : 8, p, n, &c, NULL) == BG_AMQP_OK &&
            (c.password.len <= 0 || c.password.p < p || c.password.p + c.password.len > p + n))
            abort();
        break;
    }
    bg_amqp_arena_free(&a);
    return 0;
}
