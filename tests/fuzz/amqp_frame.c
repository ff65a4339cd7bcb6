/* Fuzz target: a client's byte stream as busgate's AMQP listener sees it.
 * Protocol header (when present), then frame peek -> validate -> method
 * decode / content header parse + property decode, frame after frame.
 * Invariants: whatever validation accepts, rabbitmq-c decodes; a decoded
 * method re-encodes to a frame that validates and decodes again; a parsed
 * content header re-emits to a frame that validates. The whole input is also
 * read as a broker's connection.start mechanisms list: bg_amqp_start_offers
 * finds PLAIN exactly when a whole space-separated word is PLAIN. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/amqp/amqp_method.h"

static void bg_fuzz__reencode(const bg_amqp_frame_t *f, const bg_amqp_method_t *m)
{
    bg_wr_t w;
    bg_wr_init(&w, 0, 0);
    if (bg_amqp_method_encode(&w, f->channel, m->id, m->decoded, NULL) != BG_AMQP_OK)
        abort();
    bg_amqp_frame_t g;
    if (bg_amqp_frame_peek(w.buf, w.len, UINT32_MAX, &g, NULL) != (int64_t)w.len)
        abort();
    bg_amqp_arena_t a;
    bg_amqp_arena_init(&a);
    bg_amqp_method_t m2;
    if (bg_amqp_method_decode(&g, NULL, &a, &m2, NULL) != BG_AMQP_OK || m2.id != m->id)
        abort();
    bg_amqp_arena_free(&a);
    bg_wr_free(&w);
}

static void bg_fuzz__header(const bg_amqp_frame_t *f, bg_amqp_arena_t *a)
{
    bg_amqp_content_header_t h;
    if (bg_amqp_content_header_parse(f->payload, f->size, &h, NULL) != BG_AMQP_OK)
        abort();
    amqp_basic_properties_t *p;
    if (bg_amqp_properties_decode(h.props, NULL, a, &p, NULL) != BG_AMQP_OK)
        abort();
    bg_wr_t w;
    bg_wr_init(&w, 0, 0);
    h.body_size /= 2; /* as masking would */
    bg_amqp_content_header_write(&w, f->channel, &h);
    bg_amqp_frame_t g;
    if (bg_amqp_frame_peek(w.buf, w.len, UINT32_MAX, &g, NULL) != (int64_t)w.len ||
        bg_amqp_validate_frame(&g, NULL, NULL) != BG_AMQP_OK)
        abort();
    bg_wr_free(&w);
}

/* The same answer as bg_amqp_start_offers(list, "PLAIN"), found another
 * way: PLAIN alone, first, last, or between two spaces. */
static int bg_fuzz__plain_word(const uint8_t *d, size_t n)
{
    return (n == 5 && memcmp(d, "PLAIN", 5) == 0) || (n > 5 && memcmp(d, "PLAIN ", 6) == 0) ||
           (n > 5 && memcmp(d + n - 6, " PLAIN", 6) == 0) || memmem(d, n, " PLAIN ", 7) != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    amqp_bytes_t list = {size, (void *)data};
    if (bg_amqp_start_offers(&list, "PLAIN") != bg_fuzz__plain_word(data, size))
        abort();
    size_t pos = 0;
    uint32_t max = BG_AMQP_PRETUNE_CLIENT_MAX;
    int hdr = bg_amqp_protocol_header_check(data, size, NULL);
    if (hdr > 0)
        pos = (size_t)hdr;
    bg_amqp_arena_t a;
    bg_amqp_arena_init(&a);
    for (int frames = 0; pos < size && frames < 256; frames++) {
        bg_amqp_frame_t f;
        const char *why = NULL;
        int64_t n = bg_amqp_frame_peek(data + pos, size - pos, max, &f, &why);
        if ((n < 0 && !why) || (n > 0 && f.size > max))
            abort(); /* a refusal says why; max bounds the payload */
        if (n <= 0)
            break;
        max = BG_AMQP_DEFAULT_FRAME_MAX; /* as after tune */
        pos += (size_t)n;
        if (bg_amqp_validate_frame(&f, NULL, &why) != BG_AMQP_OK) {
            if (!why)
                abort();
            continue;
        }
        if (f.type == BG_AMQP_FRAME_METHOD) {
            bg_amqp_method_t m;
            if (bg_amqp_method_decode(&f, NULL, &a, &m, NULL) != BG_AMQP_OK)
                abort(); /* validated input rabbitmq-c cannot decode */
            if (m.id == AMQP_CONNECTION_START_OK_METHOD) {
                bg_amqp_creds_t c;
                if (bg_amqp_start_ok_creds(m.decoded, &c, NULL) == BG_AMQP_OK &&
                    (c.password.p < f.payload || c.password.p >= f.payload + f.size))
                    abort(); /* the token must borrow the frame */
            }
            bg_fuzz__reencode(&f, &m);
        } else if (f.type == BG_AMQP_FRAME_HEADER) {
            bg_fuzz__header(&f, &a);
        }
        bg_amqp_arena_reset(&a);
    }
    bg_amqp_arena_free(&a);
    return 0;
}
