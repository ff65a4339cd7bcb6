/* Pre-validation (amqp_validate.h): a real pika/RabbitMQ session validates,
 * every method of the table matches rabbitmq-c's encoder; then one negative
 * test per malformed-input case. */
#include "amqp_test_util.h"

#include <amqp.h>
#include <amqp_framing.h>

#include "adapters/amqp/amqp_method.h"
#include "adapters/amqp/amqp_validate.h"

/* Method payload: class, method, then args appended by the caller. */
static void t_method_begin(bg_wr_t *w, uint16_t cls, uint16_t meth)
{
    bg_wr_init(w, 0, 0);
    bg_wr_u16(w, cls);
    bg_wr_u16(w, meth);
}

/* queue.declare "q" whose arguments table is given raw (size prefix included). */
static void t_queue_declare(bg_wr_t *w, const uint8_t *table, size_t n)
{
    t_method_begin(w, 50, 10);
    bg_wr_u16(w, 0);
    t_shortstr(w, "q");
    bg_wr_u8(w, 0);
    bg_wr_bytes(w, table, n);
}

static int t_validate(const bg_wr_t *w, uint16_t ch, const char **why)
{
    return bg_amqp_validate_method(ch, w->buf, w->len, NULL, why);
}

/* Appends a table nesting `levels` tables: {"a": {"a": ... {}}}. */
static void t_nested(bg_wr_t *w, int levels)
{
    size_t off = bg_wr_reserve_i32(w);
    if (levels > 1) {
        t_shortstr(w, "a");
        bg_wr_u8(w, 'F');
        t_nested(w, levels - 1);
    }
    bg_wr_patch_i32(w, off, (int32_t)(w->len - off - 4));
}

/* ---- positive ---- */

/* Every frame of a captured pika session (client side) and of RabbitMQ's
 * answers validates, and every method decodes. */
static void t_validate_capture(const char *rel, size_t skip)
{
    size_t len;
    uint8_t *buf = t_read_repo_file(rel, &len);
    size_t pos = skip, frames = 0;
    bg_amqp_arena_t a;
    bg_amqp_arena_init(&a);
    while (pos < len) {
        bg_amqp_frame_t f;
        const char *why = NULL;
        int64_t n = bg_amqp_frame_peek(buf + pos, len - pos, 131072, &f, &why);
        if (n <= 0)
            fail_msg("%s: frame at %zu: %lld (%s)", rel, pos, (long long)n, why ? why : "-");
        if (bg_amqp_validate_frame(&f, NULL, &why) != BG_AMQP_OK)
            fail_msg("%s: frame at %zu refused: %s", rel, pos, why);
        if (f.type == BG_AMQP_FRAME_METHOD) {
            bg_amqp_method_t m;
            assert_int_equal(bg_amqp_method_decode(&f, NULL, &a, &m, &why), BG_AMQP_OK);
            assert_non_null(m.info);
        }
        bg_amqp_arena_reset(&a);
        pos += (size_t)n;
        frames++;
    }
    assert_true(frames >= 10);
    bg_amqp_arena_free(&a);
    free(buf);
}

static void test_pika_session(void **state)
{
    t_validate_capture("tests/fuzz/corpus/amqp_frame/pika_session_c2s.bin", 8);
    t_validate_capture("tests/fuzz/corpus/amqp_frame/rabbitmq_session_s2c.bin", 0);
}

/* busgate's method table agrees with rabbitmq-c: the same ids exist (plus
 * update-secret), the content flag matches, and a zeroed struct encoded by
 * rabbitmq-c walks exactly per our argument signature. */
static void test_table_matches_rabbitmq_c(void **state)
{
    static const uint16_t classes[] = {10, 20, 30, 40, 50, 60, 85, 90};
    int known = 0;
    for (size_t c = 0; c < sizeof classes / sizeof classes[0]; c++) {
        for (uint16_t meth = 0; meth < 200; meth++) {
            uint32_t id = BG_AMQP_METHOD_ID(classes[c], meth);
            const bg_amqp_method_info_t *info = bg_amqp_method_info(id);
            int ours_only = id == BG_AMQP_CONNECTION_UPDATE_SECRET ||
                            id == BG_AMQP_CONNECTION_UPDATE_SECRET_OK;
            if (ours_only) {
                assert_non_null(info);
                continue;
            }
            if ((info != NULL) != (amqp_method_name(id) != NULL))
                fail_msg("method %u.%u: busgate %d rabbitmq-c %d", classes[c], meth,
                         info != NULL, amqp_method_name(id) != NULL);
            if (!info)
                continue;
            known++;
            assert_int_equal(!!(info->flags & BG_AMQP_M_CONTENT), !!amqp_method_has_content(id));
            uint64_t zero[64] = {0};
            uint8_t buf[512];
            bg_wr__put32(buf, id);
            amqp_bytes_t out = {sizeof buf - 4, buf + 4};
            int n = amqp_encode_method(id, zero, out);
            assert_true(n >= 0);
            const char *why = NULL;
            if (bg_amqp_validate_method(classes[c] == 10 ? 0 : 1, buf, (size_t)n + 4, NULL,
                                        &why) != BG_AMQP_OK)
                fail_msg("%s: %s", info->name, why);
        }
    }
    assert_int_equal(known, 64);
}

static void test_nesting_at_limit(void **state)
{
    bg_wr_t t, w;
    bg_wr_init(&t, 0, 0);
    t_nested(&t, BG_AMQP_MAX_DEPTH_DEFAULT);
    t_queue_declare(&w, t.buf, t.len);
    assert_int_equal(t_validate(&w, 1, NULL), BG_AMQP_OK);
    bg_wr_free(&t);
    bg_wr_free(&w);
}

/* Arrays count as nesting levels and their elements as entries. */
static void test_array_values(void **state)
{
    bg_wr_t t, w;
    bg_wr_init(&t, 0, 0);
    size_t off = bg_wr_reserve_i32(&t);
    t_shortstr(&t, "hops");
    bg_wr_u8(&t, 'A');
    size_t aoff = bg_wr_reserve_i32(&t);
    bg_wr_u8(&t, 'I');
    bg_wr_u32(&t, 1);
    bg_wr_u8(&t, 'S');
    t_longstr(&t, "two");
    bg_wr_u8(&t, 'D');
    bg_wr_bytes(&t, "\x02\0\0\0\x64", 5);
    bg_wr_patch_i32(&t, aoff, (int32_t)(t.len - aoff - 4));
    bg_wr_patch_i32(&t, off, (int32_t)(t.len - off - 4));
    t_queue_declare(&w, t.buf, t.len);
    assert_int_equal(t_validate(&w, 1, NULL), BG_AMQP_OK);
    bg_amqp_limits_t lim = {1, 0, 0};
    assert_int_equal(bg_amqp_validate_method(1, w.buf, w.len, &lim, NULL), BG_AMQP_ERR_LIMIT);
    lim = (bg_amqp_limits_t){0, 3, 0};
    assert_int_equal(bg_amqp_validate_method(1, w.buf, w.len, &lim, NULL), BG_AMQP_ERR_LIMIT);
    lim = (bg_amqp_limits_t){0, 4, 0};
    assert_int_equal(bg_amqp_validate_method(1, w.buf, w.len, &lim, NULL), BG_AMQP_OK);
    bg_wr_free(&t);
    bg_wr_free(&w);
}

/* ---- negative: one per malformed case ---- */

static void test_nesting_over_limit(void **state)
{
    bg_wr_t t, w;
    bg_wr_init(&t, 0, 0);
    t_nested(&t, BG_AMQP_MAX_DEPTH_DEFAULT + 1);
    t_queue_declare(&w, t.buf, t.len);
    const char *why = NULL;
    assert_int_equal(t_validate(&w, 1, &why), BG_AMQP_ERR_LIMIT);
    assert_string_equal(why, "field table nesting too deep");
    bg_wr_free(&t);
    bg_wr_free(&w);
}

/* Thousands of levels, as in the rabbitmq-c fuzzing crash: refused without
 * deep recursion even when the caller asks for a huge depth. */
static void test_nesting_huge(void **state)
{
    bg_wr_t t, w;
    bg_wr_init(&t, 0, 0);
    t_nested(&t, 5000);
    t_queue_declare(&w, t.buf, t.len);
    bg_amqp_limits_t lim = {1000000, 1000000, 0};
    assert_int_equal(bg_amqp_validate_method(1, w.buf, w.len, &lim, NULL), BG_AMQP_ERR_LIMIT);
    bg_wr_free(&t);
    bg_wr_free(&w);
}

/* A table of n entries "" -> void in a queue.declare's arguments. */
static int t_entries(int n, const char **why)
{
    bg_wr_t t, w;
    bg_wr_init(&t, 0, 0);
    size_t off = bg_wr_reserve_i32(&t);
    for (int i = 0; i < n; i++) {
        t_shortstr(&t, "");
        bg_wr_u8(&t, 'V');
    }
    bg_wr_patch_i32(&t, off, (int32_t)(t.len - off - 4));
    t_queue_declare(&w, t.buf, t.len);
    int rc = t_validate(&w, 1, why);
    bg_wr_free(&t);
    bg_wr_free(&w);
    return rc;
}

/* The limit is inclusive: exactly max_entries entries are taken (mutation
 * review Q-V02), one more is refused. */
static void test_too_many_entries(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_int_equal(t_entries(BG_AMQP_MAX_ENTRIES_DEFAULT, &why), BG_AMQP_OK);
    assert_int_equal(t_entries(BG_AMQP_MAX_ENTRIES_DEFAULT + 1, &why), BG_AMQP_ERR_LIMIT);
    assert_string_equal(why, "too many field table entries");
}

/* A nested table whose size runs past its parent's end (rabbitmq-c 0.11
 * reads on past the parent). */
static void test_nested_size_overruns_parent(void **state)
{
    /* outer size 8: key "a", 'F', inner size 100 (past the outer table). */
    static const uint8_t t[] = "\0\0\0\x08\x01" "a" "F\0\0\0\x64" "\0\0\0\0\0\0\0\0";
    bg_wr_t w;
    t_queue_declare(&w, t, sizeof t - 1);
    const char *why = NULL;
    assert_int_equal(t_validate(&w, 1, &why), BG_AMQP_ERR_TRUNCATED);
    assert_string_equal(why, "field table runs past its container");
    bg_wr_free(&w);
}

/* An entry whose value straddles its table's end. */
static void test_entry_straddles_table_end(void **state)
{
    /* size 4 = key "a" + 'I' + 1 byte of the 4-byte int. */
    static const uint8_t t[] = "\0\0\0\x04\x01" "aI\0\0\0\0";
    bg_wr_t w;
    t_queue_declare(&w, t, sizeof t - 1);
    assert_int_equal(t_validate(&w, 1, NULL), BG_AMQP_ERR_TRUNCATED);
    bg_wr_free(&w);
}

static void test_unknown_field_type(void **state)
{
    static const uint8_t t[] = "\0\0\0\x03\x01" "a?";
    bg_wr_t w;
    t_queue_declare(&w, t, sizeof t - 1);
    const char *why = NULL;
    assert_int_equal(t_validate(&w, 1, &why), BG_AMQP_ERR_MALFORMED);
    assert_string_equal(why, "unknown field value type");
    bg_wr_free(&w);
}

static void test_method_truncated_every_byte(void **state)
{
    bg_wr_t t, w;
    bg_wr_init(&t, 0, 0);
    t_nested(&t, 3);
    t_queue_declare(&w, t.buf, t.len);
    for (size_t n = 0; n < w.len; n++) {
        int rc = bg_amqp_validate_method(1, w.buf, n, NULL, NULL);
        /* A prefix ending right after the ids names a known method with
         * missing arguments: TRUNCATED as everything else. */
        if (rc != BG_AMQP_ERR_TRUNCATED)
            fail_msg("prefix %zu: %d", n, rc);
    }
    bg_wr_free(&t);
    bg_wr_free(&w);
}

static void test_method_trailing_bytes(void **state)
{
    bg_wr_t w;
    t_method_begin(&w, 20, 10);
    t_shortstr(&w, "");
    bg_wr_u8(&w, 0);
    const char *why = NULL;
    assert_int_equal(t_validate(&w, 1, &why), BG_AMQP_ERR_TRAILING);
    assert_string_equal(why, "trailing bytes after method arguments");
    bg_wr_free(&w);
}

static void test_unknown_class_method(void **state)
{
    bg_wr_t w;
    t_method_begin(&w, 60, 200);
    const char *why = NULL;
    assert_int_equal(t_validate(&w, 1, &why), BG_AMQP_ERR_UNKNOWN_METHOD);
    assert_string_equal(why, "unknown class or method");
    bg_wr_free(&w);
    t_method_begin(&w, 99, 10);
    assert_int_equal(t_validate(&w, 1, NULL), BG_AMQP_ERR_UNKNOWN_METHOD);
    bg_wr_free(&w);
}

static void test_method_wrong_channel(void **state)
{
    bg_wr_t w;
    t_method_begin(&w, 20, 10); /* channel.open on channel 0 */
    t_shortstr(&w, "");
    assert_int_equal(t_validate(&w, 0, NULL), BG_AMQP_ERR_CHANNEL);
    bg_wr_free(&w);
    t_method_begin(&w, 10, 51); /* connection.close-ok on channel 3 */
    assert_int_equal(t_validate(&w, 3, NULL), BG_AMQP_ERR_CHANNEL);
    bg_wr_free(&w);
}

/* Content header payload: class 60, weight 0, body size, flags, props. */
static void t_header(bg_wr_t *w, uint16_t cls, uint16_t weight, uint64_t size, uint16_t flags)
{
    bg_wr_init(w, 0, 0);
    bg_wr_u16(w, cls);
    bg_wr_u16(w, weight);
    bg_wr_u64(w, size);
    bg_wr_u16(w, flags);
}

static void test_header_all_properties(void **state)
{
    bg_wr_t w;
    t_header(&w, 60, 0, 10, 0xFFFC);
    t_shortstr(&w, "application/json"); /* content-type */
    t_shortstr(&w, "gzip");             /* content-encoding */
    bg_wr_bytes(&w, "\0\0\0\x07\x01k\x53\0\0\0\0", 11); /* headers {k: ""} */
    bg_wr_u8(&w, 2);                                    /* delivery-mode */
    bg_wr_u8(&w, 5);                                    /* priority */
    for (int i = 0; i < 4; i++)
        t_shortstr(&w, "x"); /* correlation-id reply-to expiration message-id */
    bg_wr_u64(&w, 1700000000);
    for (int i = 0; i < 4; i++)
        t_shortstr(&w, "y"); /* type user-id app-id cluster-id */
    const char *why = NULL;
    if (bg_amqp_validate_header(1, w.buf, w.len, NULL, &why) != BG_AMQP_OK)
        fail_msg("%s", why);
    /* rabbitmq-c agrees on the layout. */
    bg_amqp_content_header_t h;
    assert_int_equal(bg_amqp_content_header_parse(w.buf, w.len, &h, NULL), BG_AMQP_OK);
    bg_amqp_arena_t a;
    bg_amqp_arena_init(&a);
    amqp_basic_properties_t *p;
    assert_int_equal(bg_amqp_properties_decode(h.props, NULL, &a, &p, NULL), BG_AMQP_OK);
    assert_int_equal(p->delivery_mode, 2);
    assert_int_equal(p->priority, 5);
    assert_int_equal(p->timestamp, 1700000000);
    assert_int_equal(p->headers.num_entries, 1);
    assert_memory_equal(p->content_type.bytes, "application/json", 16);
    assert_memory_equal(p->cluster_id.bytes, "y", 1);
    bg_amqp_arena_free(&a);
    bg_wr_free(&w);
}

static void test_header_continuation_flag(void **state)
{
    bg_wr_t w;
    t_header(&w, 60, 0, 1, 0x0001);
    bg_wr_u16(&w, 0xFFFF); /* the continuation word rabbitmq-c 0.11 mishandles */
    const char *why = NULL;
    assert_int_equal(bg_amqp_validate_header(1, w.buf, w.len, NULL, &why), BG_AMQP_ERR_MALFORMED);
    assert_string_equal(why, "property flags continuation bit set");
    bg_wr_free(&w);
}

static void test_header_reserved_flag(void **state)
{
    bg_wr_t w;
    t_header(&w, 60, 0, 1, 0x0002);
    assert_int_equal(bg_amqp_validate_header(1, w.buf, w.len, NULL, NULL), BG_AMQP_ERR_MALFORMED);
    bg_wr_free(&w);
}

static void test_header_property_overruns(void **state)
{
    bg_wr_t w;
    t_header(&w, 60, 0, 1, 0x8000);
    bg_wr_u8(&w, 10); /* content-type of 10 bytes, 3 present */
    bg_wr_bytes(&w, "abc", 3);
    const char *why = NULL;
    assert_int_equal(bg_amqp_validate_header(1, w.buf, w.len, NULL, &why), BG_AMQP_ERR_TRUNCATED);
    assert_string_equal(why, "argument runs past the frame");
    bg_wr_free(&w);
}

static void test_header_trailing_bytes(void **state)
{
    bg_wr_t w;
    t_header(&w, 60, 0, 1, 0x1000);
    bg_wr_u8(&w, 2);
    bg_wr_u8(&w, 0);
    assert_int_equal(bg_amqp_validate_header(1, w.buf, w.len, NULL, NULL), BG_AMQP_ERR_TRAILING);
    bg_wr_free(&w);
}

static void test_header_headers_table_nesting(void **state)
{
    bg_wr_t w;
    t_header(&w, 60, 0, 1, 0x2000);
    t_nested(&w, BG_AMQP_MAX_DEPTH_DEFAULT + 1);
    assert_int_equal(bg_amqp_validate_header(1, w.buf, w.len, NULL, NULL), BG_AMQP_ERR_LIMIT);
    bg_wr_free(&w);
}

static void test_header_not_basic(void **state)
{
    bg_wr_t w;
    t_header(&w, 50, 0, 1, 0);
    const char *why = NULL;
    assert_int_equal(bg_amqp_validate_header(1, w.buf, w.len, NULL, &why), BG_AMQP_ERR_MALFORMED);
    assert_string_equal(why, "content header class is not basic");
    bg_wr_free(&w);
}

static void test_header_weight(void **state)
{
    bg_wr_t w;
    t_header(&w, 60, 1, 1, 0);
    assert_int_equal(bg_amqp_validate_header(1, w.buf, w.len, NULL, NULL), BG_AMQP_ERR_MALFORMED);
    bg_wr_free(&w);
}

static void test_header_body_too_large(void **state)
{
    bg_wr_t w;
    t_header(&w, 60, 0, BG_AMQP_MAX_BODY_DEFAULT + 1, 0);
    assert_int_equal(bg_amqp_validate_header(1, w.buf, w.len, NULL, NULL), BG_AMQP_ERR_TOO_LARGE);
    bg_amqp_limits_t lim = {0, 0, 100};
    bg_wr_free(&w);
    t_header(&w, 60, 0, 100, 0);
    assert_int_equal(bg_amqp_validate_header(1, w.buf, w.len, &lim, NULL), BG_AMQP_OK);
    bg_wr_free(&w);
    t_header(&w, 60, 0, 101, 0);
    assert_int_equal(bg_amqp_validate_header(1, w.buf, w.len, &lim, NULL), BG_AMQP_ERR_TOO_LARGE);
    bg_wr_free(&w);
}

static void test_header_on_channel_0(void **state)
{
    bg_wr_t w;
    t_header(&w, 60, 0, 1, 0);
    assert_int_equal(bg_amqp_validate_header(0, w.buf, w.len, NULL, NULL), BG_AMQP_ERR_CHANNEL);
    bg_wr_free(&w);
}

static void test_header_truncated_every_byte(void **state)
{
    bg_wr_t w;
    t_header(&w, 60, 0, 1, 0xA000); /* content-type + headers */
    t_shortstr(&w, "text/plain");
    t_nested(&w, 2);
    assert_int_equal(bg_amqp_validate_header(1, w.buf, w.len, NULL, NULL), BG_AMQP_OK);
    for (size_t n = 0; n < w.len; n++)
        assert_int_equal(bg_amqp_validate_header(1, w.buf, n, NULL, NULL), BG_AMQP_ERR_TRUNCATED);
    bg_wr_free(&w);
}

static void test_heartbeat_with_payload(void **state)
{
    const char *why = NULL;
    assert_int_equal(bg_amqp_validate_heartbeat(0, 0, NULL), BG_AMQP_OK);
    assert_int_equal(bg_amqp_validate_heartbeat(0, 1, &why), BG_AMQP_ERR_MALFORMED);
    assert_string_equal(why, "heartbeat with a payload");
}

static void test_heartbeat_on_channel(void **state)
{
    const char *why = NULL;
    uint8_t buf[8] = {8, 0, 1, 0, 0, 0, 0, 0xCE};
    bg_amqp_frame_t f = t_peek_one(buf, sizeof buf, 4096);
    assert_int_equal(bg_amqp_validate_frame(&f, NULL, &why), BG_AMQP_ERR_CHANNEL);
    assert_string_equal(why, "heartbeat on a non-zero channel");
}

static void test_body_on_channel_0(void **state)
{
    uint8_t buf[9] = {3, 0, 0, 0, 0, 0, 1, 'x', 0xCE};
    bg_amqp_frame_t f = t_peek_one(buf, sizeof buf, 4096);
    assert_int_equal(bg_amqp_validate_frame(&f, NULL, NULL), BG_AMQP_ERR_CHANNEL);
    buf[2] = 1;
    f = t_peek_one(buf, sizeof buf, 4096);
    assert_int_equal(bg_amqp_validate_frame(&f, NULL, NULL), BG_AMQP_OK);
}

/* What the broker may send past the handshake: a table of frames, each
 * with the channel's state, and the answer. */
static void test_server_frames(void **state)
{
    enum { M = BG_AMQP_FRAME_METHOD, H = BG_AMQP_FRAME_HEADER, B = BG_AMQP_FRAME_BODY };
    static const struct {
        uint8_t type;
        uint16_t channel;
        uint32_t id;
        int open, content, want;
        const char *why;
    } cases[] = {
        /* allowed */
        {M, 0, AMQP_CONNECTION_CLOSE_METHOD, 0, 0, BG_AMQP_OK, NULL},
        {M, 0, AMQP_CONNECTION_BLOCKED_METHOD, 0, 0, BG_AMQP_OK, NULL},
        {M, 1, AMQP_BASIC_DELIVER_METHOD, 1, 0, BG_AMQP_OK, NULL},
        {M, 1, AMQP_BASIC_RETURN_METHOD, 1, 0, BG_AMQP_OK, NULL},
        {M, 1, AMQP_BASIC_ACK_METHOD, 1, 0, BG_AMQP_OK, NULL},
        {M, 1, AMQP_BASIC_NACK_METHOD, 1, 0, BG_AMQP_OK, NULL},
        {M, 1, AMQP_BASIC_CANCEL_METHOD, 1, 0, BG_AMQP_OK, NULL},
        {M, 1, AMQP_CHANNEL_FLOW_METHOD, 1, 0, BG_AMQP_OK, NULL},
        {M, 1, AMQP_CHANNEL_CLOSE_METHOD, 1, 0, BG_AMQP_OK, NULL},
        {H, 1, 0, 1, 1, BG_AMQP_OK, NULL},
        {B, 1, 0, 1, 2, BG_AMQP_OK, NULL},
        /* refused */
        {M, 0, BG_AMQP_METHOD_ID(99, 1), 0, 0, BG_AMQP_ERR_UNKNOWN_METHOD, "unknown method"},
        {M, 1, BG_AMQP_METHOD_ID(99, 1), 1, 0, BG_AMQP_ERR_UNKNOWN_METHOD, "unknown method"},
        {M, 1, 0, 1, 0, BG_AMQP_ERR_UNKNOWN_METHOD, "unknown method"}, /* under 4 bytes */
        {M, 1, AMQP_BASIC_PUBLISH_METHOD, 1, 0, BG_AMQP_ERR_UNKNOWN_METHOD, "unknown method"},
        {M, 0, AMQP_BASIC_DELIVER_METHOD, 0, 0, BG_AMQP_ERR_CHANNEL,
         "channel method on channel 0"},
        {M, 1, AMQP_CONNECTION_CLOSE_METHOD, 1, 0, BG_AMQP_ERR_CHANNEL,
         "connection method on a channel other than 0"},
        {M, 5, AMQP_BASIC_DELIVER_METHOD, 0, 0, BG_AMQP_ERR_CHANNEL,
         "method on a channel that is not open"},
        {M, 7, AMQP_CHANNEL_CLOSE_METHOD, 0, 0, BG_AMQP_ERR_CHANNEL,
         "method on a channel that is not open"},
        {M, 1, AMQP_BASIC_ACK_METHOD, 1, 2, BG_AMQP_ERR_FRAME,
         "method frame in the middle of a content"},
        {H, 0, 0, 0, 0, BG_AMQP_ERR_CHANNEL, "content frame on channel 0"},
        {H, 5, 0, 0, 0, BG_AMQP_ERR_CHANNEL, "content frame on a channel that is not open"},
        {H, 1, 0, 1, 0, BG_AMQP_ERR_FRAME, "content frame with no delivery pending"},
        {B, 1, 0, 1, 0, BG_AMQP_ERR_FRAME, "content frame with no delivery pending"},
        {B, 1, 0, 1, 1, BG_AMQP_ERR_FRAME, "content body before its header"},
        {H, 1, 0, 1, 2, BG_AMQP_ERR_FRAME, "content header in the middle of a body"},
        {BG_AMQP_FRAME_HEARTBEAT, 0, 0, 0, 0, BG_AMQP_ERR_FRAME, "unexpected frame type"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *why = "unset";
        int rc = bg_amqp_validate_server_frame(cases[i].type, cases[i].channel, cases[i].id,
                                               cases[i].open, cases[i].content, &why);
        if (rc != cases[i].want)
            fail_msg("case %zu: %d, expected %d (%s)", i, rc, cases[i].want, why ? why : "-");
        if (cases[i].why)
            assert_string_equal(why, cases[i].why);
        else
            assert_null(why);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pika_session),
        cmocka_unit_test(test_table_matches_rabbitmq_c),
        cmocka_unit_test(test_nesting_at_limit),
        cmocka_unit_test(test_array_values),
        cmocka_unit_test(test_nesting_over_limit),
        cmocka_unit_test(test_nesting_huge),
        cmocka_unit_test(test_too_many_entries),
        cmocka_unit_test(test_nested_size_overruns_parent),
        cmocka_unit_test(test_entry_straddles_table_end),
        cmocka_unit_test(test_unknown_field_type),
        cmocka_unit_test(test_method_truncated_every_byte),
        cmocka_unit_test(test_method_trailing_bytes),
        cmocka_unit_test(test_unknown_class_method),
        cmocka_unit_test(test_method_wrong_channel),
        cmocka_unit_test(test_header_all_properties),
        cmocka_unit_test(test_header_continuation_flag),
        cmocka_unit_test(test_header_reserved_flag),
        cmocka_unit_test(test_header_property_overruns),
        cmocka_unit_test(test_header_trailing_bytes),
        cmocka_unit_test(test_header_headers_table_nesting),
        cmocka_unit_test(test_header_not_basic),
        cmocka_unit_test(test_header_weight),
        cmocka_unit_test(test_header_body_too_large),
        cmocka_unit_test(test_header_on_channel_0),
        cmocka_unit_test(test_header_truncated_every_byte),
        cmocka_unit_test(test_heartbeat_with_payload),
        cmocka_unit_test(test_heartbeat_on_channel),
        cmocka_unit_test(test_body_on_channel_0),
        cmocka_unit_test(test_server_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
