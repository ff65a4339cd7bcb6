/* Method decode/encode (amqp_method.h): every builder round-trips through
 * rabbitmq-c's decoder, update-secret both ways, PLAIN/AMQPLAIN credentials,
 * a captured RabbitMQ connection.start; then the negative cases. */
#include "amqp_test_util.h"

#include "adapters/amqp/amqp_method.h"

typedef struct {
    bg_wr_t w;
    bg_amqp_arena_t a;
    bg_amqp_method_t m;
    bg_amqp_frame_t f;
} t_ctx_t;

static int setup(void **state)
{
    t_ctx_t *c = calloc(1, sizeof *c);
    bg_wr_init(&c->w, 0, 0);
    bg_amqp_arena_init(&c->a);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    t_ctx_t *c = *state;
    bg_wr_free(&c->w);
    bg_amqp_arena_free(&c->a);
    free(c);
    return 0;
}

/* Peeks the single frame in c->w, validates and decodes it, and checks the
 * id and channel; returns the decoded struct. */
static void *t_decode(t_ctx_t *c, uint32_t id, uint16_t channel)
{
    c->f = t_peek_one(c->w.buf, c->w.len, BG_AMQP_PRETUNE_CLIENT_MAX);
    assert_int_equal(c->f.channel, channel);
    const char *why = NULL;
    if (bg_amqp_method_decode(&c->f, NULL, &c->a, &c->m, &why) != BG_AMQP_OK)
        fail_msg("decode: %s", why);
    assert_int_equal(c->m.id, id);
    return c->m.decoded;
}

static void assert_bytes(amqp_bytes_t b, const char *want)
{
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.bytes, want, b.len);
}

/* ---- builders ---- */

static void test_connection_start(void **state)
{
    t_ctx_t *c = *state;
    assert_int_equal(bg_amqp_write_connection_start(&c->w, BG_AMQP_CAPS_ALL, NULL, "1.2.3", "bg1"),
                     BG_AMQP_OK);
    amqp_connection_start_t *m = t_decode(c, AMQP_CONNECTION_START_METHOD, 0);
    assert_int_equal(m->version_major, 0);
    assert_int_equal(m->version_minor, 9);
    assert_bytes(m->mechanisms, "PLAIN AMQPLAIN");
    assert_bytes(m->locales, "en_US");
    assert_int_equal(bg_amqp_caps_from_properties(&m->server_properties), BG_AMQP_CAPS_ALL);
    int seen = 0;
    for (int i = 0; i < m->server_properties.num_entries; i++) {
        amqp_table_entry_t *e = &m->server_properties.entries[i];
        if (e->key.len == 7 && memcmp(e->key.bytes, "version", 7) == 0) {
            assert_bytes(e->value.value.bytes, "1.2.3");
            seen++;
        } else if (e->key.len == 7 && memcmp(e->key.bytes, "product", 7) == 0) {
            assert_bytes(e->value.value.bytes, "busgate");
            seen++;
        } else if (e->key.len == 12 && memcmp(e->key.bytes, "cluster_name", 12) == 0) {
            assert_bytes(e->value.value.bytes, "bg1");
            seen++;
        }
    }
    assert_int_equal(seen, 3);
}

/* Only the requested capabilities are advertised. */
static void test_connection_start_caps_subset(void **state)
{
    t_ctx_t *c = *state;
    uint32_t caps = BG_AMQP_CAP_PUBLISHER_CONFIRMS | BG_AMQP_CAP_BASIC_NACK;
    assert_int_equal(bg_amqp_write_connection_start(&c->w, caps, NULL, NULL, NULL), BG_AMQP_OK);
    amqp_connection_start_t *m = t_decode(c, AMQP_CONNECTION_START_METHOD, 0);
    assert_int_equal(bg_amqp_caps_from_properties(&m->server_properties), caps);
}

/* RabbitMQ 3.10.8's own connection.start (captured): validates, decodes, and
 * advertises exactly what busgate's builder advertises with CAPS_ALL. */
static void test_rabbitmq_connection_start(void **state)
{
    t_ctx_t *c = *state;
    size_t len;
    uint8_t *buf = t_read_repo_file("tests/fuzz/corpus/amqp_frame/rabbitmq_session_s2c.bin", &len);
    bg_amqp_frame_t f;
    int64_t n = bg_amqp_frame_peek(buf, len, 131072, &f, NULL);
    assert_true(n > 0);
    assert_int_equal(bg_amqp_method_decode(&f, NULL, &c->a, &c->m, NULL), BG_AMQP_OK);
    assert_int_equal(c->m.id, AMQP_CONNECTION_START_METHOD);
    amqp_connection_start_t *m = c->m.decoded;
    assert_int_equal(bg_amqp_caps_from_properties(&m->server_properties), BG_AMQP_CAPS_ALL);
    assert_bytes(m->mechanisms, "PLAIN AMQPLAIN");
    free(buf);
}

static void test_connection_tune(void **state)
{
    t_ctx_t *c = *state;
    assert_int_equal(bg_amqp_write_connection_tune(&c->w, 2047, 131072, 60), BG_AMQP_OK);
    amqp_connection_tune_t *m = t_decode(c, AMQP_CONNECTION_TUNE_METHOD, 0);
    assert_int_equal(m->channel_max, 2047);
    assert_int_equal(m->frame_max, 131072);
    assert_int_equal(m->heartbeat, 60);
    bg_wr_reset(&c->w);
    assert_int_equal(bg_amqp_write_connection_tune_ok(&c->w, 10, 4096, 0), BG_AMQP_OK);
    amqp_connection_tune_ok_t *k = t_decode(c, AMQP_CONNECTION_TUNE_OK_METHOD, 0);
    assert_int_equal(k->channel_max, 10);
    assert_int_equal(k->frame_max, 4096);
    assert_int_equal(k->heartbeat, 0);
}

static void test_connection_open(void **state)
{
    t_ctx_t *c = *state;
    assert_int_equal(bg_amqp_write_connection_open(&c->w, "/prod"), BG_AMQP_OK);
    amqp_connection_open_t *m = t_decode(c, AMQP_CONNECTION_OPEN_METHOD, 0);
    assert_bytes(m->virtual_host, "/prod");
    bg_wr_reset(&c->w);
    assert_int_equal(bg_amqp_write_connection_open_ok(&c->w), BG_AMQP_OK);
    amqp_connection_open_ok_t *k = t_decode(c, AMQP_CONNECTION_OPEN_OK_METHOD, 0);
    assert_int_equal(k->known_hosts.len, 0);
}

static void test_connection_close(void **state)
{
    t_ctx_t *c = *state;
    assert_int_equal(bg_amqp_write_connection_close(&c->w, 501, "FRAME_ERROR - bad", 0, 0),
                     BG_AMQP_OK);
    amqp_connection_close_t *m = t_decode(c, AMQP_CONNECTION_CLOSE_METHOD, 0);
    assert_int_equal(m->reply_code, 501);
    assert_bytes(m->reply_text, "FRAME_ERROR - bad");
    bg_wr_reset(&c->w);
    assert_int_equal(bg_amqp_write_connection_close_ok(&c->w), BG_AMQP_OK);
    t_decode(c, AMQP_CONNECTION_CLOSE_OK_METHOD, 0);
    assert_int_equal(c->f.size, 4);
}

static void test_channel_close_denial(void **state)
{
    t_ctx_t *c = *state;
    const char *text = "ACCESS_REFUSED - write access to exchange 'x' in vhost '/' refused "
                       "for user 'u' (rule deny-x)";
    assert_int_equal(bg_amqp_write_channel_close(&c->w, 7, 403, text, 60, 40), BG_AMQP_OK);
    amqp_channel_close_t *m = t_decode(c, AMQP_CHANNEL_CLOSE_METHOD, 7);
    assert_int_equal(m->reply_code, 403);
    assert_bytes(m->reply_text, text);
    assert_int_equal(m->class_id, 60);
    assert_int_equal(m->method_id, 40);
    bg_wr_reset(&c->w);
    assert_int_equal(bg_amqp_write_channel_close_ok(&c->w, 7), BG_AMQP_OK);
    t_decode(c, AMQP_CHANNEL_CLOSE_OK_METHOD, 7);
}

/* Reply texts are cut to 255 bytes, never inside a UTF-8 character. */
static void test_close_text_truncated(void **state)
{
    t_ctx_t *c = *state;
    char text[400];
    memset(text, 'a', 254);
    strcpy(text + 254, "\xc3\xa9 and more"); /* 'é' straddles byte 255 */
    assert_int_equal(bg_amqp_write_channel_close(&c->w, 1, 403, text, 0, 0), BG_AMQP_OK);
    amqp_channel_close_t *m = t_decode(c, AMQP_CHANNEL_CLOSE_METHOD, 1);
    assert_int_equal(m->reply_text.len, 254);
    bg_wr_reset(&c->w);
    memset(text, 'b', sizeof text - 1);
    text[sizeof text - 1] = 0;
    assert_int_equal(bg_amqp_write_connection_close(&c->w, 320, text, 0, 0), BG_AMQP_OK);
    amqp_connection_close_t *k = t_decode(c, AMQP_CONNECTION_CLOSE_METHOD, 0);
    assert_int_equal(k->reply_text.len, 255);
}

/* busgate's upstream start-ok: PLAIN, parsed back by busgate's own parser. */
static void test_connection_start_ok(void **state)
{
    t_ctx_t *c = *state;
    uint32_t caps = BG_AMQP_CAP_CONNECTION_BLOCKED | BG_AMQP_CAP_CONSUMER_CANCEL_NOTIFY;
    assert_int_equal(bg_amqp_write_connection_start_ok(&c->w, caps, "busgate", "s3cret"),
                     BG_AMQP_OK);
    amqp_connection_start_ok_t *m = t_decode(c, AMQP_CONNECTION_START_OK_METHOD, 0);
    assert_bytes(m->mechanism, "PLAIN");
    assert_bytes(m->locale, "en_US");
    /* The client's capabilities, plus authentication_failure_close: busgate's
     * own login failing must come back as connection.close 403. */
    assert_int_equal(bg_amqp_caps_from_properties(&m->client_properties),
                     caps | BG_AMQP_CAP_AUTHENTICATION_FAILURE_CLOSE);
    bg_amqp_creds_t cr;
    assert_int_equal(bg_amqp_start_ok_creds(m, &cr, NULL), BG_AMQP_OK);
    assert_int_equal(cr.user.len, 7);
    assert_memory_equal(cr.user.p, "busgate", 7);
    assert_int_equal(cr.password.len, 6);
    assert_memory_equal(cr.password.p, "s3cret", 6);
}

/* A 16 KiB token: larger than RabbitMQ's pre-tune 4096, within busgate's
 * client-side bound. */
static void test_start_ok_large_token(void **state)
{
    t_ctx_t *c = *state;
    char *tok = malloc(BG_AMQP_SASL_MAX_PASSWORD + 1);
    memset(tok, 'J', BG_AMQP_SASL_MAX_PASSWORD);
    tok[BG_AMQP_SASL_MAX_PASSWORD] = 0;
    assert_int_equal(bg_amqp_write_connection_start_ok(&c->w, 0, "svc", tok), BG_AMQP_OK);
    assert_true(c->w.len > BG_AMQP_FRAME_MIN_SIZE);
    amqp_connection_start_ok_t *m = t_decode(c, AMQP_CONNECTION_START_OK_METHOD, 0);
    bg_amqp_creds_t cr;
    assert_int_equal(bg_amqp_start_ok_creds(m, &cr, NULL), BG_AMQP_OK);
    assert_int_equal(cr.password.len, BG_AMQP_SASL_MAX_PASSWORD);
    free(tok);
}

/* ---- capabilities ---- */

static amqp_table_entry_t t_cap(const char *name, amqp_field_value_t v)
{
    amqp_table_entry_t e = {{strlen(name), (void *)name}, v};
    return e;
}

static const amqp_field_value_t t_true = {AMQP_FIELD_KIND_BOOLEAN, {.boolean = 1}};

/* A capability counts when it is a boolean true under its exact name: a
 * false one, one given as another type (the string "true", the integer 1)
 * or a name that only starts with a known one does not. */
static void test_caps_only_true_booleans_by_exact_name(void **state)
{
    amqp_table_entry_t caps[] = {
        t_cap("publisher_confirms", t_true),
        t_cap("basic.nack", (amqp_field_value_t){AMQP_FIELD_KIND_BOOLEAN, {.boolean = 0}}),
        t_cap("connection.blocked",
              (amqp_field_value_t){AMQP_FIELD_KIND_UTF8, {.bytes = {4, (void *)"true"}}}),
        t_cap("consumer_cancel_notify", (amqp_field_value_t){AMQP_FIELD_KIND_I8, {.i8 = 1}}),
        t_cap("direct_reply_to_v2", t_true),
    };
    amqp_table_entry_t props[] = {
        t_cap("capabilities", (amqp_field_value_t){AMQP_FIELD_KIND_TABLE, {.table = {5, caps}}}),
    };
    amqp_table_t t = {1, props};
    assert_int_equal(bg_amqp_caps_from_properties(&t), BG_AMQP_CAP_PUBLISHER_CONFIRMS);
}

/* The capabilities are the table under the exact key "capabilities": a
 * longer key is another property, and a "capabilities" that is not a table
 * (here an empty string after the table) is not read as one. */
static void test_caps_only_the_capabilities_table(void **state)
{
    amqp_table_entry_t caps[] = {t_cap("basic.nack", t_true)};
    amqp_field_value_t tv = {AMQP_FIELD_KIND_TABLE, {.table = {1, caps}}};
    amqp_table_entry_t longer[] = {t_cap("capabilities2", tv)};
    amqp_table_t t = {1, longer};
    assert_int_equal(bg_amqp_caps_from_properties(&t), 0);
    amqp_table_entry_t str_after[] = {
        t_cap("capabilities", tv),
        t_cap("capabilities", (amqp_field_value_t){AMQP_FIELD_KIND_UTF8, {.bytes = {0, NULL}}}),
    };
    t = (amqp_table_t){2, str_after};
    assert_int_equal(bg_amqp_caps_from_properties(&t), BG_AMQP_CAP_BASIC_NACK);
}

/* ---- update-secret (not in rabbitmq-c 0.11) ---- */

static void test_update_secret_roundtrip(void **state)
{
    t_ctx_t *c = *state;
    bg_amqp_update_secret_t us = {{5, "tok-2"}, {7, "refresh"}};
    assert_int_equal(bg_amqp_method_encode(&c->w, 0, BG_AMQP_CONNECTION_UPDATE_SECRET, &us, NULL),
                     BG_AMQP_OK);
    /* Wire layout by hand: ids 10/70, longstr, shortstr. */
    static const uint8_t want[] = "\x01\0\0\0\0\0\x15\0\x0a\0\x46\0\0\0\x05tok-2\x07refresh\xce";
    assert_int_equal(c->w.len, sizeof want - 1);
    assert_memory_equal(c->w.buf, want, sizeof want - 1);
    bg_amqp_update_secret_t *m = t_decode(c, BG_AMQP_CONNECTION_UPDATE_SECRET, 0);
    assert_bytes(m->new_secret, "tok-2");
    assert_bytes(m->reason, "refresh");
    assert_string_equal(c->m.info->name, "connection.update-secret");
    bg_wr_reset(&c->w);
    assert_int_equal(bg_amqp_write_update_secret_ok(&c->w), BG_AMQP_OK);
    assert_int_equal(c->w.len, 12);
    assert_memory_equal(c->w.buf, "\x01\0\0\0\0\0\x04\0\x0a\0\x47\xce", 12);
    assert_null(t_decode(c, BG_AMQP_CONNECTION_UPDATE_SECRET_OK, 0));
}

static void test_update_secret_malformed(void **state)
{
    t_ctx_t *c = *state;
    /* longstr length 9 with 5 bytes present. */
    static const uint8_t bad[] = "\x01\0\0\0\0\0\x0e\0\x0a\0\x46\0\0\0\x09tok-2\x00\xce";
    c->f = t_peek_one(bad, sizeof bad - 1, 4096);
    assert_int_equal(bg_amqp_method_decode(&c->f, NULL, &c->a, &c->m, NULL),
                     BG_AMQP_ERR_TRUNCATED);
}

/* A reason is a shortstr: 255 bytes are written, 256 cannot be (its length
 * octet would say 0 and the rest would run into the next frame), and the
 * writer is left as it was. */
static void test_update_secret_reason_bound(void **state)
{
    t_ctx_t *c = *state;
    char reason[256];
    memset(reason, 'r', sizeof reason);
    bg_amqp_update_secret_t us = {{3, "tok"}, {255, reason}};
    assert_int_equal(bg_amqp_method_encode(&c->w, 0, BG_AMQP_CONNECTION_UPDATE_SECRET, &us, NULL),
                     BG_AMQP_OK);
    bg_amqp_update_secret_t *m = t_decode(c, BG_AMQP_CONNECTION_UPDATE_SECRET, 0);
    assert_int_equal(m->reason.len, 255);
    bg_wr_reset(&c->w);
    us.reason.len = 256;
    assert_int_equal(bg_amqp_method_encode(&c->w, 0, BG_AMQP_CONNECTION_UPDATE_SECRET, &us, NULL),
                     BG_AMQP_ERR_ENCODE);
    assert_int_equal(c->w.len, 0);
}

/* ---- encode errors ---- */

static void test_encode_unknown_method(void **state)
{
    t_ctx_t *c = *state;
    const char *why = NULL;
    assert_int_equal(bg_amqp_method_encode(&c->w, 1, BG_AMQP_METHOD_ID(60, 200), NULL, &why),
                     BG_AMQP_ERR_UNKNOWN_METHOD);
    assert_int_equal(c->w.len, 0);
}

static void test_encode_shortstr_too_long(void **state)
{
    t_ctx_t *c = *state;
    bg_wr_u8(&c->w, 0x42); /* earlier content must survive */
    char name[300];
    memset(name, 'q', sizeof name);
    amqp_queue_declare_t qd = {0};
    qd.queue.bytes = name;
    qd.queue.len = sizeof name;
    assert_int_equal(bg_amqp_method_encode(&c->w, 1, AMQP_QUEUE_DECLARE_METHOD, &qd, NULL),
                     BG_AMQP_ERR_ENCODE);
    assert_int_equal(c->w.len, 1);
    assert_false(c->w.failed);
}

static void test_decode_not_a_method(void **state)
{
    t_ctx_t *c = *state;
    static const uint8_t body[] = {3, 0, 1, 0, 0, 0, 1, 'x', 0xCE};
    c->f = t_peek_one(body, sizeof body, 4096);
    assert_int_equal(bg_amqp_method_decode(&c->f, NULL, &c->a, &c->m, NULL), BG_AMQP_ERR_FRAME);
}

/* ---- the method table ---- */

/* Appends a field table nesting `levels` tables: {"a": {"a": ... {}}}. */
static void t_deep(bg_wr_t *w, int levels)
{
    size_t off = bg_wr_reserve_i32(w);
    if (levels > 1) {
        t_shortstr(w, "a");
        bg_wr_u8(w, 'F');
        t_deep(w, levels - 1);
    }
    bg_wr_patch_i32(w, off, (int32_t)(w->len - off - 4));
}

/* Every method that carries a field table has it walked, with the limits,
 * as a table: one nested a level too deep is refused in each. The
 * signatures are amqp0-9-1.xml's, written out here apart from the table
 * under test (bits share an octet). */
static void test_every_field_table_is_walked(void **state)
{
    static const struct {
        uint16_t cls, meth;
        const char *sig;
    } ms[] = {
        {10, 10, "ooTSS"},  {10, 11, "TsSs"},   {40, 10, "hssbT"},
        {40, 30, "hsssbT"}, {40, 40, "hsssbT"}, {50, 10, "hsbT"},
        {50, 20, "hsssbT"}, {50, 50, "hsssT"},  {60, 20, "hssbT"},
    };
    bg_wr_t deep;
    bg_wr_init(&deep, 0, 0);
    t_deep(&deep, BG_AMQP_MAX_DEPTH_DEFAULT + 1);
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        bg_wr_t w;
        bg_wr_init(&w, 0, 0);
        bg_wr_u16(&w, ms[i].cls);
        bg_wr_u16(&w, ms[i].meth);
        for (const char *c = ms[i].sig; *c; c++) {
            if (*c == 'o' || *c == 'b')
                bg_wr_u8(&w, 0);
            else if (*c == 'h')
                bg_wr_u16(&w, 0);
            else if (*c == 's')
                t_shortstr(&w, "a");
            else if (*c == 'S')
                t_longstr(&w, "a");
            else
                bg_wr_bytes(&w, deep.buf, deep.len);
        }
        const char *why = NULL;
        int rc = bg_amqp_validate_method(ms[i].cls == 10 ? 0 : 1, w.buf, w.len, NULL, &why);
        if (rc != BG_AMQP_ERR_LIMIT)
            fail_msg("%u.%u: %d (%s), expected the nesting limit", ms[i].cls, ms[i].meth, rc,
                     why ? why : "-");
        bg_wr_free(&w);
    }
    bg_wr_free(&deep);
}

/* Methods only a client sends: from the broker each is an unknown method,
 * never relayed to the client as if it answered something. */
static void test_client_methods_from_the_broker_are_refused(void **state)
{
    static const uint32_t client_only[] = {
        AMQP_CONNECTION_START_OK_METHOD,
        AMQP_CONNECTION_SECURE_OK_METHOD,
        AMQP_CONNECTION_TUNE_OK_METHOD,
        AMQP_CONNECTION_OPEN_METHOD,
        BG_AMQP_CONNECTION_UPDATE_SECRET,
        AMQP_CHANNEL_OPEN_METHOD,
        AMQP_ACCESS_REQUEST_METHOD,
        AMQP_EXCHANGE_DECLARE_METHOD,
        AMQP_EXCHANGE_DELETE_METHOD,
        AMQP_EXCHANGE_BIND_METHOD,
        AMQP_EXCHANGE_UNBIND_METHOD,
        AMQP_QUEUE_DECLARE_METHOD,
        AMQP_QUEUE_BIND_METHOD,
        AMQP_QUEUE_PURGE_METHOD,
        AMQP_QUEUE_DELETE_METHOD,
        AMQP_QUEUE_UNBIND_METHOD,
        AMQP_BASIC_QOS_METHOD,
        AMQP_BASIC_CONSUME_METHOD,
        AMQP_BASIC_PUBLISH_METHOD,
        AMQP_BASIC_GET_METHOD,
        AMQP_BASIC_REJECT_METHOD,
        AMQP_BASIC_RECOVER_ASYNC_METHOD,
        AMQP_BASIC_RECOVER_METHOD,
        AMQP_CONFIRM_SELECT_METHOD,
        AMQP_TX_SELECT_METHOD,
        AMQP_TX_COMMIT_METHOD,
        AMQP_TX_ROLLBACK_METHOD,
    };
    for (size_t i = 0; i < sizeof client_only / sizeof client_only[0]; i++) {
        uint32_t id = client_only[i];
        const char *why = NULL;
        int rc = bg_amqp_validate_server_frame(BG_AMQP_FRAME_METHOD, id >> 16 == 10 ? 0 : 1, id, 1,
                                               0, &why);
        if (rc != BG_AMQP_ERR_UNKNOWN_METHOD)
            fail_msg("%u.%u from the broker: %d, expected unknown method", id >> 16, id & 0xFFFF,
                     rc);
    }
}

/* ---- credentials ---- */

static int t_creds(const char *mech, const uint8_t *resp, size_t n, bg_amqp_creds_t *cr,
                   const char **why)
{
    return bg_amqp_sasl_creds((const uint8_t *)mech, strlen(mech), resp, n, cr, why);
}

static void test_plain(void **state)
{
    bg_amqp_creds_t cr;
    assert_int_equal(t_creds("PLAIN", LIT("\0svc\0eyJ.a.b"), &cr, NULL), BG_AMQP_OK);
    assert_int_equal(cr.user.len, 3);
    assert_memory_equal(cr.password.p, "eyJ.a.b", 7);
    /* An authzid is ignored; an empty user is allowed (the token names the caller). */
    assert_int_equal(t_creds("PLAIN", LIT("admin\0svc\0tok"), &cr, NULL), BG_AMQP_OK);
    assert_memory_equal(cr.user.p, "svc", 3);
    assert_int_equal(t_creds("PLAIN", LIT("\0\0tok"), &cr, NULL), BG_AMQP_OK);
    assert_int_equal(cr.user.len, 0);
}

static void t_amqplain(bg_wr_t *w, const char *login, const char *pass, char pass_kind)
{
    bg_wr_init(w, 0, 0);
    t_shortstr(w, "LOGIN");
    bg_wr_u8(w, 'S');
    t_longstr(w, login);
    t_shortstr(w, "other");
    bg_wr_u8(w, 'I');
    bg_wr_u32(w, 7);
    if (pass) {
        t_shortstr(w, "PASSWORD");
        bg_wr_u8(w, (uint8_t)pass_kind);
        t_longstr(w, pass);
    }
}

static void test_amqplain(void **state)
{
    bg_wr_t w;
    bg_amqp_creds_t cr;
    t_amqplain(&w, "svc", "eyJ.tok", 'S');
    assert_int_equal(t_creds("AMQPLAIN", w.buf, w.len, &cr, NULL), BG_AMQP_OK);
    assert_memory_equal(cr.user.p, "svc", 3);
    assert_int_equal(cr.password.len, 7);
    assert_memory_equal(cr.password.p, "eyJ.tok", 7);
    bg_wr_free(&w);
}

static void test_plain_no_separator(void **state)
{
    bg_amqp_creds_t cr;
    const char *why = NULL;
    assert_int_equal(t_creds("PLAIN", LIT("svc:tok"), &cr, &why), BG_AMQP_ERR_AUTH);
    assert_string_equal(why, "PLAIN response without NUL separators");
    assert_int_equal(t_creds("PLAIN", LIT("\0svc"), &cr, NULL), BG_AMQP_ERR_AUTH);
    assert_int_equal(t_creds("PLAIN", NULL, 0, &cr, NULL), BG_AMQP_ERR_AUTH);
}

static void test_plain_empty_password(void **state)
{
    bg_amqp_creds_t cr;
    assert_int_equal(t_creds("PLAIN", LIT("\0svc\0"), &cr, NULL), BG_AMQP_ERR_AUTH);
}

static void test_plain_nul_in_password(void **state)
{
    bg_amqp_creds_t cr;
    const char *why = NULL;
    assert_int_equal(t_creds("PLAIN", LIT("\0svc\0to\0k"), &cr, &why), BG_AMQP_ERR_AUTH);
    assert_string_equal(why, "NUL in password");
}

static void test_plain_password_too_long(void **state)
{
    size_t n = 5 + BG_AMQP_SASL_MAX_PASSWORD + 1;
    uint8_t *r = malloc(n);
    memcpy(r, "\0svc\0", 5);
    memset(r + 5, 'J', n - 5);
    bg_amqp_creds_t cr;
    assert_int_equal(t_creds("PLAIN", r, n, &cr, NULL), BG_AMQP_ERR_AUTH);
    assert_int_equal(t_creds("PLAIN", r, n - 1, &cr, NULL), BG_AMQP_OK);
    free(r);
}

static void test_amqplain_missing_password(void **state)
{
    bg_wr_t w;
    bg_amqp_creds_t cr;
    t_amqplain(&w, "svc", NULL, 'S');
    assert_int_equal(t_creds("AMQPLAIN", w.buf, w.len, &cr, NULL), BG_AMQP_ERR_AUTH);
    bg_wr_free(&w);
}

static void test_amqplain_password_not_longstr(void **state)
{
    bg_wr_t w;
    bg_amqp_creds_t cr;
    t_amqplain(&w, "svc", "tok", 'x');
    const char *why = NULL;
    assert_int_equal(t_creds("AMQPLAIN", w.buf, w.len, &cr, &why), BG_AMQP_ERR_AUTH);
    assert_string_equal(why, "AMQPLAIN LOGIN or PASSWORD is not a longstr");
    bg_wr_free(&w);
}

static void test_amqplain_malformed(void **state)
{
    bg_wr_t w;
    bg_amqp_creds_t cr;
    t_amqplain(&w, "svc", "tok", 'S');
    /* Cut inside the password: the table no longer walks. */
    assert_int_equal(t_creds("AMQPLAIN", w.buf, w.len - 1, &cr, NULL), BG_AMQP_ERR_AUTH);
    /* With a 4-byte size prefix (not how RabbitMQ reads AMQPLAIN). */
    uint8_t pre[4] = {0, 0, 0, (uint8_t)w.len};
    bg_wr_t p;
    bg_wr_init(&p, 0, 0);
    bg_wr_bytes(&p, pre, 4);
    bg_wr_bytes(&p, w.buf, w.len);
    assert_int_equal(t_creds("AMQPLAIN", p.buf, p.len, &cr, NULL), BG_AMQP_ERR_AUTH);
    bg_wr_free(&p);
    bg_wr_free(&w);
}

/* A user name of BG_AMQP_SASL_MAX_USER bytes is taken, one byte more is
 * refused (mutation review Q-S01). */
static void test_user_at_its_bound(void **state)
{
    enum { MAX = BG_AMQP_SASL_MAX_USER };
    uint8_t r[1 + MAX + 1 + 1 + 3];
    r[0] = 0;
    memset(r + 1, 'u', MAX + 1);
    r[1 + MAX] = 0;
    memcpy(r + 2 + MAX, "tok", 3);
    bg_amqp_creds_t cr;
    assert_int_equal(t_creds("PLAIN", r, MAX + 5, &cr, NULL), BG_AMQP_OK);
    assert_int_equal(cr.user.len, MAX);
    r[1 + MAX] = 'u';
    r[2 + MAX] = 0;
    memcpy(r + 3 + MAX, "tok", 3);
    const char *why = NULL;
    assert_int_equal(t_creds("PLAIN", r, MAX + 6, &cr, &why), BG_AMQP_ERR_AUTH);
    assert_string_equal(why, "user name too long");
}

/* AMQPLAIN carries the user name as a longstr, which may hold a NUL (PLAIN
 * cannot: NUL ends it): refused as PLAIN refuses one in the password, not
 * cut there in logs and audit (mutation review Q-S03). */
static void test_amqplain_nul_in_login(void **state)
{
    bg_wr_t w;
    bg_wr_init(&w, 0, 0);
    t_shortstr(&w, "LOGIN");
    bg_wr_u8(&w, 'S');
    bg_wr_u32(&w, 7);
    bg_wr_bytes(&w, "svc\0adm", 7);
    t_shortstr(&w, "PASSWORD");
    bg_wr_u8(&w, 'S');
    t_longstr(&w, "tok");
    bg_amqp_creds_t cr;
    const char *why = NULL;
    assert_int_equal(t_creds("AMQPLAIN", w.buf, w.len, &cr, &why), BG_AMQP_ERR_AUTH);
    assert_string_equal(why, "NUL in user name");
    bg_wr_free(&w);
}

/* The whole AMQPLAIN table is read, not only up to LOGIN and PASSWORD: an
 * entry after them that is no field value refuses the login (mutation
 * review Q-S06), and only keys spelled exactly LOGIN and PASSWORD are the
 * credentials, not keys they start (Q-V23). */
static void test_amqplain_whole_table_exact_keys(void **state)
{
    bg_wr_t w;
    bg_amqp_creds_t cr;
    const char *why = NULL;
    t_amqplain(&w, "svc", "tok", 'S');
    t_shortstr(&w, "late");
    bg_wr_u8(&w, 'Z'); /* no field type */
    assert_int_equal(t_creds("AMQPLAIN", w.buf, w.len, &cr, &why), BG_AMQP_ERR_AUTH);
    assert_string_equal(why, "AMQPLAIN response is not a field table");
    bg_wr_free(&w);

    static const char *const keys[][2] = {{"LOGINX", "PASSWORD"}, {"LOGIN", "PASSWORDX"}};
    for (size_t i = 0; i < 2; i++) {
        bg_wr_init(&w, 0, 0);
        t_shortstr(&w, keys[i][0]);
        bg_wr_u8(&w, 'S');
        t_longstr(&w, "svc");
        t_shortstr(&w, keys[i][1]);
        bg_wr_u8(&w, 'S');
        t_longstr(&w, "tok");
        why = NULL;
        assert_int_equal(t_creds("AMQPLAIN", w.buf, w.len, &cr, &why), BG_AMQP_ERR_AUTH);
        assert_string_equal(why, "AMQPLAIN response without LOGIN and PASSWORD");
        bg_wr_free(&w);
    }
}

static void test_unsupported_mechanism(void **state)
{
    bg_amqp_creds_t cr;
    const char *why = NULL;
    assert_int_equal(t_creds("EXTERNAL", LIT("\0svc\0tok"), &cr, &why), BG_AMQP_ERR_AUTH);
    assert_string_equal(why, "unsupported SASL mechanism");
    assert_int_equal(t_creds("PLAINX", LIT("\0svc\0tok"), &cr, NULL), BG_AMQP_ERR_AUTH);
}

/* ---- properties ---- */

static void test_properties_continuation_refused(void **state)
{
    t_ctx_t *c = *state;
    static const uint8_t props[] = {0x80, 0x01, 0x01, 'a', 0xFF, 0xFF};
    bg_slice_t s = {props, sizeof props};
    amqp_basic_properties_t *p = NULL;
    assert_int_equal(bg_amqp_properties_decode(s, NULL, &c->a, &p, NULL), BG_AMQP_ERR_MALFORMED);
    assert_null(p);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_connection_start),
        T(test_connection_start_caps_subset),
        T(test_rabbitmq_connection_start),
        T(test_connection_tune),
        T(test_connection_open),
        T(test_connection_close),
        T(test_channel_close_denial),
        T(test_close_text_truncated),
        T(test_connection_start_ok),
        T(test_start_ok_large_token),
        T(test_caps_only_true_booleans_by_exact_name),
        T(test_caps_only_the_capabilities_table),
        T(test_update_secret_roundtrip),
        T(test_update_secret_malformed),
        T(test_update_secret_reason_bound),
        T(test_encode_unknown_method),
        T(test_encode_shortstr_too_long),
        T(test_decode_not_a_method),
        T(test_every_field_table_is_walked),
        T(test_client_methods_from_the_broker_are_refused),
        T(test_plain),
        T(test_amqplain),
        T(test_plain_no_separator),
        T(test_plain_empty_password),
        T(test_plain_nul_in_password),
        T(test_plain_password_too_long),
        T(test_amqplain_missing_password),
        T(test_amqplain_password_not_longstr),
        T(test_amqplain_malformed),
        T(test_user_at_its_bound),
        T(test_amqplain_nul_in_login),
        T(test_amqplain_whole_table_exact_keys),
        T(test_unsupported_mechanism),
        T(test_properties_continuation_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
