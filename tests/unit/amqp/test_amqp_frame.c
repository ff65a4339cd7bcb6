/* AMQP framing (amqp_frame.h): protocol header, frame peek for every frame
 * type, the writers, content header parse/re-emit; then one negative test
 * per malformed-input case. */
#include "amqp_test_util.h"

/* Hand-written vectors, one per frame type. */
static const uint8_t v_heartbeat[] = {8, 0, 0, 0, 0, 0, 0, 0xCE};
/* channel.open on channel 1: class 20 method 10, reserved shortstr "". */
static const uint8_t v_channel_open[] = {1, 0, 1, 0, 0, 0, 5, 0, 20, 0, 10, 0, 0xCE};
/* basic content header: body 5, flags content-type + delivery-mode. */
static const uint8_t v_header[] = {2,   0,   1,   0,   0,   0,   20,  0,   60,  0,   0,   0,
                                   0,   0,   0,   0,   0,   0,   5,   0x90, 0,  4,   't', 'e',
                                   'x', 't', 2,   0xCE};
static const uint8_t v_body[] = {3, 0, 1, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o', 0xCE};

/* ---- protocol header ---- */

static void test_protocol_header_ok(void **state)
{
    assert_int_equal(bg_amqp_protocol_header_check(LIT("AMQP\0\0\x09\x01"), NULL), 8);
    /* Extra bytes after it belong to the first frame. */
    assert_int_equal(bg_amqp_protocol_header_check(LIT("AMQP\0\0\x09\x01\x01"), NULL), 8);
}

static void test_protocol_header_need_more(void **state)
{
    static const uint8_t h[] = "AMQP\0\0\x09\x01";
    for (size_t n = 0; n < 8; n++)
        assert_int_equal(bg_amqp_protocol_header_check(h, n, NULL), 0);
}

static void test_protocol_header_not_amqp(void **state)
{
    const char *why = NULL;
    assert_int_equal(bg_amqp_protocol_header_check(LIT("GET / HTTP/1.1\r\n"), &why),
                     BG_AMQP_ERR_HEADER);
    assert_string_equal(why, "not an AMQP protocol header");
    /* Refused at the first wrong byte, without waiting for 8. */
    assert_int_equal(bg_amqp_protocol_header_check(LIT("G"), NULL), BG_AMQP_ERR_HEADER);
}

static void test_protocol_header_other_version(void **state)
{
    const char *why = NULL;
    /* AMQP 1.0 and 0-8 headers. */
    assert_int_equal(bg_amqp_protocol_header_check(LIT("AMQP\0\x01\0\0"), &why),
                     BG_AMQP_ERR_HEADER);
    assert_non_null(strstr(why, "version"));
    assert_int_equal(bg_amqp_protocol_header_check(LIT("AMQP\x01\x01\x08\x00"), NULL),
                     BG_AMQP_ERR_HEADER);
}

/* The header's last two bytes are the version: 0-9-0 and 0-9-2 are other
 * versions, refused as such; a wrong fourth byte is no AMQP header at all. */
static void test_protocol_header_revision(void **state)
{
    const char *why = NULL;
    assert_int_equal(bg_amqp_protocol_header_check(LIT("AMQP\0\0\x09\x00"), &why),
                     BG_AMQP_ERR_HEADER);
    assert_non_null(strstr(why, "version"));
    assert_int_equal(bg_amqp_protocol_header_check(LIT("AMQP\0\0\x09\x02"), NULL),
                     BG_AMQP_ERR_HEADER);
    why = NULL;
    assert_int_equal(bg_amqp_protocol_header_check(LIT("AMQX\0\0\x09\x01"), &why),
                     BG_AMQP_ERR_HEADER);
    assert_string_equal(why, "not an AMQP protocol header");
}

static void test_protocol_header_write(void **state)
{
    bg_wr_t w;
    bg_wr_init(&w, 0, 0);
    bg_amqp_protocol_header_write(&w);
    assert_int_equal(w.len, 8);
    assert_memory_equal(w.buf, "AMQP\0\0\x09\x01", 8);
    bg_wr_free(&w);
}

/* ---- peek: every frame type ---- */

static void test_peek_heartbeat(void **state)
{
    bg_amqp_frame_t f = t_peek_one(v_heartbeat, sizeof v_heartbeat, 4096);
    assert_int_equal(f.type, BG_AMQP_FRAME_HEARTBEAT);
    assert_int_equal(f.channel, 0);
    assert_int_equal(f.size, 0);
    assert_ptr_equal(f.payload, v_heartbeat + 7);
}

static void test_peek_method(void **state)
{
    bg_amqp_frame_t f = t_peek_one(v_channel_open, sizeof v_channel_open, 4096);
    assert_int_equal(f.type, BG_AMQP_FRAME_METHOD);
    assert_int_equal(f.channel, 1);
    assert_int_equal(f.size, 5);
    assert_memory_equal(f.payload, "\0\x14\0\x0a\0", 5);
}

static void test_peek_header(void **state)
{
    bg_amqp_frame_t f = t_peek_one(v_header, sizeof v_header, 4096);
    assert_int_equal(f.type, BG_AMQP_FRAME_HEADER);
    assert_int_equal(f.size, 20);
}

static void test_peek_body(void **state)
{
    bg_amqp_frame_t f = t_peek_one(v_body, sizeof v_body, 4096);
    assert_int_equal(f.type, BG_AMQP_FRAME_BODY);
    assert_memory_equal(f.payload, "hello", 5);
}

/* Two frames back to back: peek returns the first only. */
static void test_peek_stream(void **state)
{
    uint8_t buf[sizeof v_body + sizeof v_heartbeat];
    memcpy(buf, v_body, sizeof v_body);
    memcpy(buf + sizeof v_body, v_heartbeat, sizeof v_heartbeat);
    bg_amqp_frame_t f;
    assert_int_equal(bg_amqp_frame_peek(buf, sizeof buf, 4096, &f, NULL), sizeof v_body);
    assert_int_equal(f.type, BG_AMQP_FRAME_BODY);
}

/* Every proper prefix of each vector needs more bytes; the header fields
 * are known once 7 bytes are in. */
static void test_peek_truncated_every_byte(void **state)
{
    const uint8_t *vs[] = {v_heartbeat, v_channel_open, v_header, v_body};
    size_t ns[] = {sizeof v_heartbeat, sizeof v_channel_open, sizeof v_header, sizeof v_body};
    for (size_t i = 0; i < 4; i++) {
        for (size_t n = 0; n < ns[i]; n++) {
            bg_amqp_frame_t f;
            assert_int_equal(bg_amqp_frame_peek(vs[i], n, 4096, &f, NULL), 0);
            assert_null(f.payload);
            if (n >= 7)
                assert_int_equal(f.size, ns[i] - 8);
        }
    }
}

/* A start-ok with a JWT is larger than 4096: the client side's pre-tune
 * bound admits it, RabbitMQ's 4096 does not. */
static void test_peek_pretune_client_max(void **state)
{
    size_t n = 20000;
    uint8_t *buf = calloc(1, n);
    buf[0] = 1;
    bg_wr__put32(buf + 3, (uint32_t)(n - 8));
    buf[n - 1] = 0xCE;
    bg_amqp_frame_t f;
    assert_int_equal(bg_amqp_frame_peek(buf, n, BG_AMQP_PRETUNE_CLIENT_MAX, &f, NULL), n);
    assert_int_equal(bg_amqp_frame_peek(buf, n, BG_AMQP_FRAME_MIN_SIZE, &f, NULL),
                     BG_AMQP_ERR_TOO_LARGE);
    free(buf);
}

/* max bounds the payload, as RabbitMQ's reader checks frame_max (it allows
 * the 8 bytes of header and end octet on top): a payload of exactly max
 * passes, one byte more is refused; max < 4096 counts as 4096. */
static void test_peek_max_bounds_the_payload(void **state)
{
    uint8_t hdr[7] = {3, 0, 1};
    bg_amqp_frame_t f;
    bg_wr__put32(hdr + 3, 4096);
    assert_int_equal(bg_amqp_frame_peek(hdr, 7, 4096, &f, NULL), 0);
    assert_int_equal(bg_amqp_frame_peek(hdr, 7, 0, &f, NULL), 0);
    bg_wr__put32(hdr + 3, 4097);
    assert_int_equal(bg_amqp_frame_peek(hdr, 7, 4096, &f, NULL), BG_AMQP_ERR_TOO_LARGE);
    /* A whole frame of max + 8 bytes. */
    size_t n = 4096 + 8;
    uint8_t *buf = calloc(1, n);
    buf[0] = 3;
    buf[2] = 1;
    bg_wr__put32(buf + 3, 4096);
    buf[n - 1] = 0xCE;
    assert_int_equal(bg_amqp_frame_peek(buf, n, 4096, &f, NULL), n);
    assert_int_equal(f.size, 4096);
    free(buf);
}

/* ---- writers ---- */

static void test_write_heartbeat(void **state)
{
    bg_wr_t w;
    bg_wr_init(&w, 0, 0);
    bg_amqp_heartbeat_write(&w);
    assert_int_equal(w.len, sizeof v_heartbeat);
    assert_memory_equal(w.buf, v_heartbeat, sizeof v_heartbeat);
    bg_wr_free(&w);
}

static void test_write_frame(void **state)
{
    bg_wr_t w;
    bg_wr_init(&w, 0, 0);
    bg_amqp_frame_write(&w, BG_AMQP_FRAME_BODY, 1, "hello", 5);
    assert_int_equal(w.len, sizeof v_body);
    assert_memory_equal(w.buf, v_body, sizeof v_body);
    /* begin/end around a payload written piecewise. */
    bg_wr_reset(&w);
    size_t off = bg_amqp_frame_begin(&w, BG_AMQP_FRAME_METHOD, 1);
    bg_wr_u16(&w, 20);
    bg_wr_u16(&w, 10);
    bg_wr_u8(&w, 0);
    bg_amqp_frame_end(&w, off);
    assert_int_equal(w.len, sizeof v_channel_open);
    assert_memory_equal(w.buf, v_channel_open, sizeof v_channel_open);
    bg_wr_free(&w);
}

/* ---- content header ---- */

static void test_content_header_parse_and_rewrite(void **state)
{
    bg_amqp_frame_t f = t_peek_one(v_header, sizeof v_header, 4096);
    bg_amqp_content_header_t h;
    assert_int_equal(bg_amqp_content_header_parse(f.payload, f.size, &h, NULL), BG_AMQP_OK);
    assert_int_equal(h.class_id, 60);
    assert_int_equal(h.body_size, 5);
    assert_int_equal(h.flags, 0x9000);
    assert_int_equal(h.props.len, 8);
    assert_ptr_equal(h.props.p, f.payload + 12);
    /* Re-emitted with a new body size, everything else byte for byte. */
    h.body_size = 0x0102030405ull;
    bg_wr_t w;
    bg_wr_init(&w, 0, 0);
    bg_amqp_content_header_write(&w, 1, &h);
    assert_int_equal(w.len, sizeof v_header);
    assert_memory_equal(w.buf, v_header, 11);
    assert_memory_equal(w.buf + 11, "\x00\x00\x00\x01\x02\x03\x04\x05", 8);
    assert_memory_equal(w.buf + 19, v_header + 19, sizeof v_header - 19);
    bg_wr_free(&w);
}

/* ---- negative: one per malformed case ---- */

static void test_bad_frame_end(void **state)
{
    uint8_t buf[sizeof v_body];
    memcpy(buf, v_body, sizeof buf);
    buf[sizeof buf - 1] = 0xCD;
    bg_amqp_frame_t f;
    const char *why = NULL;
    assert_int_equal(bg_amqp_frame_peek(buf, sizeof buf, 4096, &f, &why), BG_AMQP_ERR_FRAME);
    assert_string_equal(why, "bad frame end octet");
}

static void test_unknown_frame_type(void **state)
{
    bg_amqp_frame_t f;
    const char *why = NULL;
    /* 0-8's oob-method (4) and trace (6) frames; detected from 1 byte. */
    assert_int_equal(bg_amqp_frame_peek(LIT("\x04"), 4096, &f, &why), BG_AMQP_ERR_FRAME);
    assert_string_equal(why, "unknown frame type");
    assert_int_equal(bg_amqp_frame_peek(LIT("\x06\0\0\0\0\0\0\xce"), 4096, &f, NULL),
                     BG_AMQP_ERR_FRAME);
    /* Below method (0), between body and heartbeat (5), above heartbeat. */
    static const uint8_t others[] = {0, 5, 7, 9, 0xCE, 0xFF};
    for (size_t i = 0; i < sizeof others; i++) {
        uint8_t v[8] = {others[i], 0, 0, 0, 0, 0, 0, 0xCE};
        assert_int_equal(bg_amqp_frame_peek(v, sizeof v, 4096, &f, NULL), BG_AMQP_ERR_FRAME);
    }
}

static void test_oversized_frame(void **state)
{
    /* Size 0xFFFFFFFF: refused from the 7 header bytes alone, no 64-bit wrap. */
    bg_amqp_frame_t f;
    const char *why = NULL;
    assert_int_equal(bg_amqp_frame_peek(LIT("\x01\0\0\xff\xff\xff\xff"), 131072, &f, &why),
                     BG_AMQP_ERR_TOO_LARGE);
    assert_string_equal(why, "frame larger than frame_max");
    /* Under no limit it is a frame to wait for: its length does not wrap. */
    assert_int_equal(bg_amqp_frame_peek(LIT("\x01\0\0\xff\xff\xff\xff"), UINT32_MAX, &f, NULL), 0);
    assert_int_equal(bg_amqp_frame_peek(LIT("\x03\0\x01\0\x02\0\x01"), 131072, &f, NULL),
                     BG_AMQP_ERR_TOO_LARGE);
}

static void test_content_header_truncated(void **state)
{
    bg_amqp_content_header_t h;
    for (size_t n = 0; n < 14; n++)
        assert_int_equal(bg_amqp_content_header_parse(v_header + 7, n, &h, NULL),
                         BG_AMQP_ERR_TRUNCATED);
}

static void test_content_header_weight(void **state)
{
    uint8_t pl[20];
    memcpy(pl, v_header + 7, sizeof pl);
    pl[3] = 1;
    bg_amqp_content_header_t h;
    assert_int_equal(bg_amqp_content_header_parse(pl, sizeof pl, &h, NULL),
                     BG_AMQP_ERR_MALFORMED);
}

static void test_status_reply_codes(void **state)
{
    assert_int_equal(bg_amqp_status_reply_code(BG_AMQP_ERR_FRAME), 501);
    assert_int_equal(bg_amqp_status_reply_code(BG_AMQP_ERR_TOO_LARGE), 501);
    assert_int_equal(bg_amqp_status_reply_code(BG_AMQP_ERR_HEADER), 501);
    assert_int_equal(bg_amqp_status_reply_code(BG_AMQP_ERR_TRUNCATED), 502);
    assert_int_equal(bg_amqp_status_reply_code(BG_AMQP_ERR_CHANNEL), 504);
    assert_int_equal(bg_amqp_status_reply_code(BG_AMQP_ERR_LIMIT), 506);
    assert_int_equal(bg_amqp_status_reply_code(BG_AMQP_ERR_MALFORMED), 502);
    assert_int_equal(bg_amqp_status_reply_code(BG_AMQP_ERR_UNKNOWN_METHOD), 540);
    assert_int_equal(bg_amqp_status_reply_code(BG_AMQP_ERR_AUTH), 403);
    assert_int_equal(bg_amqp_status_reply_code(BG_AMQP_ERR_TRAILING), 502);
    /* A method frame whose arguments do not fill it exactly is a frame
     * error to RabbitMQ ("cannot decode"); the rest as for any frame. */
    assert_int_equal(bg_amqp_method_status_reply_code(BG_AMQP_ERR_TRUNCATED), 501);
    assert_int_equal(bg_amqp_method_status_reply_code(BG_AMQP_ERR_TRAILING), 501);
    assert_int_equal(bg_amqp_method_status_reply_code(BG_AMQP_ERR_MALFORMED), 502);
    assert_int_equal(bg_amqp_method_status_reply_code(BG_AMQP_ERR_CHANNEL), 504);
    assert_int_equal(bg_amqp_method_status_reply_code(BG_AMQP_ERR_LIMIT), 506);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_protocol_header_ok),
        cmocka_unit_test(test_protocol_header_need_more),
        cmocka_unit_test(test_protocol_header_not_amqp),
        cmocka_unit_test(test_protocol_header_other_version),
        cmocka_unit_test(test_protocol_header_revision),
        cmocka_unit_test(test_protocol_header_write),
        cmocka_unit_test(test_peek_heartbeat),
        cmocka_unit_test(test_peek_method),
        cmocka_unit_test(test_peek_header),
        cmocka_unit_test(test_peek_body),
        cmocka_unit_test(test_peek_stream),
        cmocka_unit_test(test_peek_truncated_every_byte),
        cmocka_unit_test(test_peek_pretune_client_max),
        cmocka_unit_test(test_peek_max_bounds_the_payload),
        cmocka_unit_test(test_write_heartbeat),
        cmocka_unit_test(test_write_frame),
        cmocka_unit_test(test_content_header_parse_and_rewrite),
        cmocka_unit_test(test_bad_frame_end),
        cmocka_unit_test(test_unknown_frame_type),
        cmocka_unit_test(test_oversized_frame),
        cmocka_unit_test(test_content_header_truncated),
        cmocka_unit_test(test_content_header_weight),
        cmocka_unit_test(test_status_reply_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
