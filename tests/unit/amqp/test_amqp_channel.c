/* amqp_channel.c through a fake session (test_amqp_session_fake.h): channel
 * open/close on both legs, publish -> header -> bodies accounting, refusals
 * and what follows them (discarded content, swallowed close-oks, the
 * channel-reopen hold), consumer tag -> queue tracking, upstream methods
 * relayed or filtered, and the fail-closed answers to frames that do not fit
 * the channel's state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <event2/event.h>

#include "test_amqp_session_fake.h"

#include "adapters/amqp/amqp_authz.c"
#include "adapters/amqp/amqp_channel.c"
#include "policy_test_util.h"

static bg_policy_t *policy, *policy_narrow;

/* What a reload installs in the re-decision tests: ok.q and ok.r no longer
 * readable, ok.keep and direct reply-to still. */
static const pt_policy_t policy_narrow_table = {
    "deny",
    "enforce",
    {
        {"keep-only", "group:apps", "amqp:queue:ok.keep*", "read", "allow"},
        {"reply-to", "group:apps", "amqp:queue:amq.rabbitmq.reply-to", "read", "allow"},
    },
};

static const pt_policy_t policy_table = {
    "deny",
    "enforce",
    {
        {"apps-all", "group:apps", "amqp:queue:ok.* amqp:exchange:ok.*", "all", "allow"},
        {"default-exchange", "group:apps", "amqp:exchange:amq.default", "write", "allow"},
        {"no-secret", "*", "amqp:queue:ok.secret* amqp:exchange:ok.secret*", "all", "deny"},
        {"server-named", "group:apps", "amqp:queue:amq.gen-*", "create read", "allow"},
        {"look-only", "group:apps", "amqp:queue:look.*", "describe", "allow"},
        {"reply-to", "group:apps", "amqp:queue:amq.rabbitmq.reply-to", "read", "allow"},
    },
};

static int group_setup(void **state)
{
    (void)state;
    bg_log_set_level(BG_LOG_OFF); /* refusals log; the assertions check them */
    char err[256];
    policy = pt_compile(&policy_table, err, sizeof err);
    if (!policy)
        fail_msg("policy: %s", err);
    policy_narrow = pt_compile(&policy_narrow_table, err, sizeof err);
    if (!policy_narrow)
        fail_msg("policy: %s", err);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    bg_policy_free(policy);
    bg_policy_free(policy_narrow);
    return 0;
}

typedef struct ctx_s {
    t_fake_t f;
    bg_wr_t wr;
    uint8_t buf[1 << 18];
} ctx_t;

static int setup_caps(void **state, uint32_t caps)
{
    ctx_t *c = calloc(1, sizeof *c);
    static const char *const groups[] = {"apps"};
    t_fake_init(&c->f, policy, "alice", groups, 1, 16, caps);
    bg_wr_init(&c->wr, 4096, 1u << 20);
    *state = c;
    return 0;
}

static int setup(void **state) { return setup_caps(state, BG_AMQP_CAPS_ALL); }
static int setup_nocaps(void **state) { return setup_caps(state, 0); }

static int teardown(void **state)
{
    ctx_t *c = *state;
    t_fake_free(&c->f);
    bg_wr_free(&c->wr);
    free(c);
    return 0;
}

/* ---- helpers ---- */

static int cli(ctx_t *c, uint16_t ch, uint32_t id, const void *args)
{
    t_method(&c->wr, ch, id, args);
    return t_client_wr(&c->f, &c->wr);
}

static int up(ctx_t *c, uint16_t ch, uint32_t id, const void *args)
{
    t_method(&c->wr, ch, id, args);
    return t_up_wr(&c->f, &c->wr);
}

/* The next frame busgate wrote to out must be method id on channel ch. */
static bg_amqp_method_t expect_method(ctx_t *c, struct evbuffer *out, uint16_t ch, uint32_t id)
{
    bg_amqp_frame_t f;
    bg_amqp_method_t m;
    if (!t_next(out, c->buf, sizeof c->buf, &f))
        fail_msg("no frame, expected method %08x on channel %u", id, ch);
    assert_int_equal(f.type, BG_AMQP_FRAME_METHOD);
    assert_int_equal(f.channel, ch);
    assert_int_equal(t_decode(&c->f, &f, &m), 0);
    if (m.id != id)
        fail_msg("method %s, expected %08x", m.info->name, id);
    return m;
}

static void expect_frame(ctx_t *c, struct evbuffer *out, uint8_t type, uint16_t ch,
                         uint32_t size)
{
    bg_amqp_frame_t f;
    assert_true(t_next(out, c->buf, sizeof c->buf, &f));
    assert_int_equal(f.type, type);
    assert_int_equal(f.channel, ch);
    assert_int_equal(f.size, size);
}

static void expect_nothing(struct evbuffer *out) { assert_int_equal(evbuffer_get_length(out), 0); }

static struct evbuffer *UP(ctx_t *c) { return c->f.up.out; }
static struct evbuffer *CLI(ctx_t *c) { return c->f.cli_out; }

static bg_amqp_channel_t *chan(ctx_t *c, uint16_t n) { return c->f.s.chans[n]; }

/* Opens channel n on both legs. */
static void open_channel(ctx_t *c, uint16_t n)
{
    amqp_channel_open_t o = {{0, NULL}};
    assert_int_equal(cli(c, n, AMQP_CHANNEL_OPEN_METHOD, &o), 1);
    expect_method(c, UP(c), n, AMQP_CHANNEL_OPEN_METHOD);
    amqp_channel_open_ok_t ok = {{0, NULL}};
    assert_int_equal(up(c, n, AMQP_CHANNEL_OPEN_OK_METHOD, &ok), 0);
    expect_method(c, CLI(c), n, AMQP_CHANNEL_OPEN_OK_METHOD);
    assert_int_equal(chan(c, n)->cli.state, BG_AMQP_LEG_OPEN);
    assert_int_equal(chan(c, n)->up.state, BG_AMQP_LEG_OPEN);
}

static void publish_method(ctx_t *c, uint16_t n, const char *exchange)
{
    amqp_basic_publish_t p;
    memset(&p, 0, sizeof p);
    p.exchange = t_str(exchange);
    p.routing_key = t_str("rk");
    t_method(&c->wr, n, AMQP_BASIC_PUBLISH_METHOD, &p);
}

static void assert_closed_with(ctx_t *c, uint16_t code, const char *prefix)
{
    assert_int_equal(c->f.closed, 1);
    assert_int_equal(c->f.close_code, code);
    if (strncmp(c->f.close_text, prefix, strlen(prefix)) != 0)
        fail_msg("close text '%s', expected '%s...'", c->f.close_text, prefix);
}

/* The tag RabbitMQ will know the consumer of forwarded basic.consume m by,
 * into out: the tag that went up, or, when none did, `fallback`, as
 * RabbitMQ would name the consumer itself. */
static const char *sent_tag(const bg_amqp_method_t *m, const char *fallback, char *out,
                            size_t cap)
{
    const amqp_basic_consume_t *bc = m->decoded;
    if (bc->consumer_tag.len)
        snprintf(out, cap, "%.*s", (int)bc->consumer_tag.len, (const char *)bc->consumer_tag.bytes);
    else
        snprintf(out, cap, "%s", fallback);
    return out;
}

/* ---- channel lifecycle ---- */

static void test_open_and_client_close(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    amqp_channel_close_t cl = {200, t_str("bye"), 0, 0};
    assert_int_equal(cli(c, 1, AMQP_CHANNEL_CLOSE_METHOD, &cl), 1);
    expect_method(c, UP(c), 1, AMQP_CHANNEL_CLOSE_METHOD);
    assert_int_equal(chan(c, 1)->cli.state, BG_AMQP_LEG_CLOSING);
    assert_true(chan(c, 1)->cli.got && chan(c, 1)->up.sent && chan(c, 1)->up.sent_relay);
    /* Frames the client sends meanwhile are discarded. */
    assert_int_equal(cli(c, 1, AMQP_BASIC_QOS_METHOD, &(amqp_basic_qos_t){0, 10, 0}), 1);
    expect_nothing(UP(c));
    assert_int_equal(up(c, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 0);
    expect_method(c, CLI(c), 1, AMQP_CHANNEL_CLOSE_OK_METHOD);
    assert_int_equal(chan(c, 1)->cli.state, BG_AMQP_LEG_CLOSED);
    assert_int_equal(chan(c, 1)->up.state, BG_AMQP_LEG_CLOSED);
    /* The number can be opened again. */
    open_channel(c, 1);
    assert_int_equal(c->f.closed, 0);
}

static void test_server_close(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 2);
    amqp_channel_close_t cl = {404, t_str("NOT_FOUND - no queue 'x'"), 50, 10};
    assert_int_equal(up(c, 2, AMQP_CHANNEL_CLOSE_METHOD, &cl), 0);
    bg_amqp_method_t m = expect_method(c, CLI(c), 2, AMQP_CHANNEL_CLOSE_METHOD);
    assert_int_equal(((amqp_channel_close_t *)m.decoded)->reply_code, 404);
    assert_int_equal(chan(c, 2)->cli.state, BG_AMQP_LEG_CLOSING);
    assert_true(chan(c, 2)->cli.sent && chan(c, 2)->cli.sent_relay && chan(c, 2)->up.got);
    assert_int_equal(cli(c, 2, AMQP_BASIC_QOS_METHOD, &(amqp_basic_qos_t){0, 1, 0}), 1);
    expect_nothing(UP(c)); /* discarded until the close-ok */
    assert_int_equal(cli(c, 2, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 1);
    expect_method(c, UP(c), 2, AMQP_CHANNEL_CLOSE_OK_METHOD);
    assert_int_equal(chan(c, 2)->cli.state, BG_AMQP_LEG_CLOSED);
    assert_int_equal(chan(c, 2)->up.state, BG_AMQP_LEG_CLOSED);
    open_channel(c, 2);
}

static void test_method_on_unopened_channel(void **state)
{
    ctx_t *c = *state;
    assert_int_equal(cli(c, 3, AMQP_BASIC_QOS_METHOD, &(amqp_basic_qos_t){0, 1, 0}), -1);
    assert_closed_with(c, BG_AMQP_CHANNEL_ERROR, "CHANNEL_ERROR - expected 'channel.open'");
    assert_int_equal(c->f.close_class, 60);
    assert_int_equal(c->f.close_method, 10);
    expect_nothing(UP(c));
}

static void test_channel_out_of_range(void **state)
{
    ctx_t *c = *state;
    amqp_channel_open_t o = {{0, NULL}};
    assert_int_equal(cli(c, 17, AMQP_CHANNEL_OPEN_METHOD, &o), -1);
    assert_closed_with(c, BG_AMQP_CHANNEL_ERROR, "CHANNEL_ERROR - channel number out of range");
    expect_nothing(UP(c));
}

static void test_second_open(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    amqp_channel_open_t o = {{0, NULL}};
    assert_int_equal(cli(c, 1, AMQP_CHANNEL_OPEN_METHOD, &o), -1);
    assert_closed_with(c, BG_AMQP_CHANNEL_ERROR, "CHANNEL_ERROR - second 'channel.open'");
    expect_nothing(UP(c));
}

/* ---- publish accounting ---- */

static void test_publish_bodies_split(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    publish_method(c, 1, "ok.x");
    t_header(&c->wr, 1, 10);
    t_body(&c->wr, 1, "abc", 3);
    t_body(&c->wr, 1, "", 0);
    t_body(&c->wr, 1, "defg", 4);
    assert_int_equal(t_client_wr(&c->f, &c->wr), 1);
    assert_int_equal(chan(c, 1)->expect, 2);
    assert_int_equal(chan(c, 1)->body_left, 3);
    t_body(&c->wr, 1, "hij", 3);
    assert_int_equal(t_client_wr(&c->f, &c->wr), 1);
    assert_int_equal(chan(c, 1)->expect, 0);
    expect_method(c, UP(c), 1, AMQP_BASIC_PUBLISH_METHOD);
    expect_frame(c, UP(c), BG_AMQP_FRAME_HEADER, 1, 14);
    expect_frame(c, UP(c), BG_AMQP_FRAME_BODY, 1, 3);
    expect_frame(c, UP(c), BG_AMQP_FRAME_BODY, 1, 0);
    expect_frame(c, UP(c), BG_AMQP_FRAME_BODY, 1, 4);
    expect_frame(c, UP(c), BG_AMQP_FRAME_BODY, 1, 3);
    expect_nothing(UP(c));
    /* An empty message: header only, then the next method is fine. */
    publish_method(c, 1, "");
    t_header(&c->wr, 1, 0);
    t_method(&c->wr, 1, AMQP_BASIC_QOS_METHOD, &(amqp_basic_qos_t){0, 1, 0});
    assert_int_equal(t_client_wr(&c->f, &c->wr), 1);
    assert_int_equal(c->f.closed, 0);
    assert_int_equal(c->f.decisions, 2);
}

/* Content on two channels interleaved: each is counted on its own. */
static void test_publish_interleaved_channels(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    open_channel(c, 2);
    publish_method(c, 1, "ok.a");
    publish_method(c, 2, "ok.b");
    t_header(&c->wr, 2, 2);
    t_header(&c->wr, 1, 4);
    t_body(&c->wr, 1, "aa", 2);
    t_body(&c->wr, 2, "bb", 2);
    t_body(&c->wr, 1, "aa", 2);
    assert_int_equal(t_client_wr(&c->f, &c->wr), 1);
    assert_int_equal(chan(c, 1)->expect, 0);
    assert_int_equal(chan(c, 2)->expect, 0);
    assert_int_equal(c->f.closed, 0);
}

static void test_body_beyond_announced_size(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    publish_method(c, 1, "ok.x");
    t_header(&c->wr, 1, 4);
    t_body(&c->wr, 1, "abc", 3);
    t_body(&c->wr, 1, "de", 2);
    assert_int_equal(t_client_wr(&c->f, &c->wr), -1);
    assert_closed_with(c, BG_AMQP_UNEXPECTED_FRAME, "UNEXPECTED_FRAME - body frame beyond");
    /* The over-long body never reached the broker. */
    expect_method(c, UP(c), 1, AMQP_BASIC_PUBLISH_METHOD);
    expect_frame(c, UP(c), BG_AMQP_FRAME_HEADER, 1, 14);
    expect_frame(c, UP(c), BG_AMQP_FRAME_BODY, 1, 3);
    expect_nothing(UP(c));
}

static void test_header_without_publish(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    t_header(&c->wr, 1, 4);
    assert_int_equal(t_client_wr(&c->f, &c->wr), -1);
    assert_closed_with(c, BG_AMQP_UNEXPECTED_FRAME,
                       "UNEXPECTED_FRAME - expected method frame, got non method frame instead");
    expect_nothing(UP(c));
}

static void test_body_without_publish(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    t_body(&c->wr, 1, "x", 1);
    assert_int_equal(t_client_wr(&c->f, &c->wr), -1);
    assert_closed_with(c, BG_AMQP_UNEXPECTED_FRAME,
                       "UNEXPECTED_FRAME - expected method frame, got non method frame instead");
    assert_int_equal(c->f.close_class, 0);
    expect_nothing(UP(c));
}

static void test_second_header(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    publish_method(c, 1, "ok.x");
    t_header(&c->wr, 1, 4);
    t_header(&c->wr, 1, 4);
    assert_int_equal(t_client_wr(&c->f, &c->wr), -1);
    assert_closed_with(c, BG_AMQP_UNEXPECTED_FRAME,
                       "UNEXPECTED_FRAME - expected content body, got non content body frame "
                       "instead");
    assert_int_equal(c->f.close_class, 60);
    assert_int_equal(c->f.close_method, 40);
}

static void test_method_instead_of_content(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    publish_method(c, 1, "ok.x");
    t_method(&c->wr, 1, AMQP_BASIC_QOS_METHOD, &(amqp_basic_qos_t){0, 1, 0});
    assert_int_equal(t_client_wr(&c->f, &c->wr), -1);
    /* RabbitMQ's command assembler names the publish it was assembling
     * (60/40), not the method that came instead (basic.qos, 60/10). */
    assert_closed_with(c, BG_AMQP_UNEXPECTED_FRAME,
                       "UNEXPECTED_FRAME - expected content header for class 60, got non content "
                       "header frame instead");
    assert_int_equal(c->f.close_class, 60);
    assert_int_equal(c->f.close_method, 40);
}

static void test_content_on_channel_0_and_closed(void **state)
{
    ctx_t *c = *state;
    t_body(&c->wr, 0, "x", 1);
    assert_int_equal(t_client_wr(&c->f, &c->wr), -1);
    assert_closed_with(c, BG_AMQP_UNEXPECTED_FRAME, "UNEXPECTED_FRAME - content frame on channel 0");
    teardown(state);
    setup(state);
    c = *state;
    /* On a channel not opened, or closed: RabbitMQ's channel then expects
     * channel.open, a method (505, no method named). */
    t_header(&c->wr, 5, 1);
    assert_int_equal(t_client_wr(&c->f, &c->wr), -1);
    assert_closed_with(c, BG_AMQP_UNEXPECTED_FRAME,
                       "UNEXPECTED_FRAME - expected method frame, got non method frame instead");
    assert_int_equal(c->f.close_class, 0);
    expect_nothing(UP(c));
}

/* A content header after a publish whose fixed part RabbitMQ's command
 * assembler refuses: too short 501, another class or a weight 505 naming
 * basic.publish. */
static void test_header_fixed_part_refused(void **state)
{
    static const struct {
        uint8_t payload[14];
        size_t len;
        uint16_t code, cls;
        const char *prefix;
    } cases[] = {
        {{0, 60, 0, 0, 0}, 5, BG_AMQP_FRAME_ERROR, 0, "FRAME_ERROR - content header truncated"},
        {{0, 50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
         14,
         BG_AMQP_UNEXPECTED_FRAME,
         60,
         "UNEXPECTED_FRAME - expected content header for class 60, got one for class 50 "
         "instead"},
        {{0, 60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
         14,
         BG_AMQP_UNEXPECTED_FRAME,
         60,
         "UNEXPECTED_FRAME - expected content header for class 60, got non content header"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        teardown(state);
        setup(state);
        ctx_t *c = *state;
        open_channel(c, 1);
        publish_method(c, 1, "ok.x");
        bg_amqp_frame_write(&c->wr, BG_AMQP_FRAME_HEADER, 1, cases[i].payload, cases[i].len);
        assert_int_equal(t_client_wr(&c->f, &c->wr), -1);
        assert_closed_with(c, cases[i].code, cases[i].prefix);
        assert_int_equal(c->f.close_class, cases[i].cls);
        assert_int_equal(c->f.close_method, cases[i].cls ? 40 : 0);
        expect_nothing(UP(c));
    }
}

/* A header whose properties carry the continuation flag is refused before
 * rabbitmq-c sees it (0.11 has UB there). */
static void test_header_continuation_flag(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    publish_method(c, 1, "ok.x");
    static const uint8_t props[2] = {0, 1}; /* bit 0: continuation */
    bg_amqp_content_header_t h = {60, 1, 0, {props, 2}};
    bg_amqp_content_header_write(&c->wr, 1, &h);
    assert_int_equal(t_client_wr(&c->f, &c->wr), -1);
    assert_int_equal(c->f.close_code, BG_AMQP_SYNTAX_ERROR);
    assert_non_null(strstr(c->f.close_text, "content header"));
    expect_nothing(UP(c)); /* the publish waited for its header: nothing of it went up */
}

/* A headers table nested deeper than the limit: refused, and the reply
 * text's name matches its code. */
static void test_header_table_too_deep(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    publish_method(c, 1, "ok.x");
    /* props: flags (headers = bit 13), then a table nesting 10 tables. */
    bg_wr_t p;
    bg_wr_init(&p, 256, 4096);
    bg_wr_u16(&p, 1u << 13);
    int depth = 10;
    size_t inner = 0; /* the innermost table is empty */
    /* Each level: u32 size + key "k"(shortstr) + 'F' + nested table. */
    size_t sizes[16];
    for (int i = depth - 1; i >= 0; i--) {
        sizes[i] = inner;
        inner = 2 + 1 + 4 + inner; /* shortstr "k", 'F', nested size field */
    }
    bg_wr_u32(&p, (uint32_t)inner);
    for (int i = 0; i < depth; i++) {
        bg_wr_u8(&p, 1);
        bg_wr_u8(&p, 'k');
        bg_wr_u8(&p, 'F');
        bg_wr_u32(&p, (uint32_t)sizes[i]);
    }
    bg_amqp_content_header_t h = {60, 1, 0, {p.buf, (int32_t)p.len}};
    bg_amqp_content_header_write(&c->wr, 1, &h);
    bg_wr_free(&p);
    assert_int_equal(t_client_wr(&c->f, &c->wr), -1);
    assert_int_equal(c->f.close_code, BG_AMQP_RESOURCE_ERROR);
    assert_closed_with(c, BG_AMQP_RESOURCE_ERROR, "RESOURCE_ERROR - content header");
    expect_nothing(UP(c)); /* nothing of the publish went up */
}


/* busgate's own refusal of the publish on channel 1 of exchange ok.x (too
 * large, or user_id set): audited as a limit, its channel.close goes up
 * alone, and once RabbitMQ confirmed it the client gets 406 for
 * basic.publish (60/40). Returns the reply text (valid until the next
 * frame is read). */
static amqp_bytes_t expect_publish_refused(ctx_t *c)
{
    assert_int_equal(c->f.limit_code, BG_AMQP_PRECONDITION_FAILED);
    assert_int_equal(c->f.limit_method, AMQP_BASIC_PUBLISH_METHOD);
    assert_string_equal(c->f.limit_name, "ok.x");
    expect_method(c, UP(c), 1, AMQP_CHANNEL_CLOSE_METHOD); /* busgate's, nothing else */
    expect_nothing(UP(c));
    expect_nothing(CLI(c));
    assert_int_equal(up(c, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 0);
    bg_amqp_method_t m = expect_method(c, CLI(c), 1, AMQP_CHANNEL_CLOSE_METHOD);
    const amqp_channel_close_t *cl = m.decoded;
    assert_int_equal(cl->reply_code, BG_AMQP_PRECONDITION_FAILED);
    assert_int_equal(cl->class_id, 60);
    assert_int_equal(cl->method_id, 40);
    return cl->reply_text;
}

/* A message larger than max_body_bytes: refused on its channel with
 * RabbitMQ's 406 before anything of it went upstream; the bodies that
 * follow are dropped; the connection and the channel number live on. */
static void test_body_too_large_refused_on_channel(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    open_channel(c, 2);
    uint64_t max = c->f.s.lim.max_body_size ? c->f.s.lim.max_body_size : BG_AMQP_MAX_BODY_DEFAULT;
    publish_method(c, 1, "ok.x");
    t_header(&c->wr, 1, max + 1);
    t_body(&c->wr, 1, "abc", 3);
    int before = c->f.decisions;
    assert_int_equal(t_client_wr(&c->f, &c->wr), 1);
    /* The policy's allow, then busgate's own refusal: audited on its own. */
    assert_int_equal(c->f.decisions, before + 2);
    amqp_bytes_t text = expect_publish_refused(c);
    char want[128];
    snprintf(want, sizeof want, "PRECONDITION_FAILED - message size %llu is larger than",
             (unsigned long long)max + 1);
    assert_true(text.len >= strlen(want));
    assert_memory_equal(text.bytes, want, strlen(want));
    assert_int_equal(c->f.closed, 0);
    /* Channel 2 works; the publish there goes up with its header. */
    publish_method(c, 2, "ok.x");
    t_header(&c->wr, 2, 0);
    assert_int_equal(t_client_wr(&c->f, &c->wr), 1);
    expect_method(c, UP(c), 2, AMQP_BASIC_PUBLISH_METHOD);
    expect_frame(c, UP(c), BG_AMQP_FRAME_HEADER, 2, 14);
}

/* A publish whose content header sets the user_id property. RabbitMQ checks
 * user_id against the user that logged in, which upstream is busgate's own
 * for every client: a client could publish messages RabbitMQ "validated" as
 * busgate's identity, and a wrong value drew RabbitMQ's 406 naming
 * busgate's upstream user. busgate refuses the publish whole itself, as it
 * refuses a message too large: nothing of it goes up, its bodies are
 * dropped, the client gets busgate's own 406 (naming no user), and the
 * refusal is audited after the policy's allow. Other properties pass. */
static void test_user_id_property_refused(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    open_channel(c, 2);
    static const uint8_t with_user_id[] = {0x00, 0x10, 7, 'b', 'u', 's', 'g', 'a', 't', 'e'};
    bg_amqp_content_header_t h = {60, 5, 0, {with_user_id, sizeof with_user_id}};
    publish_method(c, 1, "ok.x");
    bg_amqp_content_header_write(&c->wr, 1, &h);
    t_body(&c->wr, 1, "ab", 2);
    t_body(&c->wr, 1, "cde", 3);
    int before = c->f.decisions;
    assert_int_equal(t_client_wr(&c->f, &c->wr), 1);
    assert_int_equal(c->f.decisions, before + 2); /* the policy's allow, busgate's deny */
    amqp_bytes_t text = expect_publish_refused(c);
    const char *want = "PRECONDITION_FAILED - user_id property is not supported through busgate";
    assert_int_equal(text.len, strlen(want));
    assert_memory_equal(text.bytes, want, strlen(want));
    assert_int_equal(c->f.closed, 0);
    /* content-type and app-id: forwarded with the publish, bodies after. */
    static const uint8_t other[] = {0x80, 0x08, 4, 't', 'e', 'x', 't', 3, 'a', 'p', 'p'};
    h = (bg_amqp_content_header_t){60, 2, 0, {other, sizeof other}};
    publish_method(c, 2, "ok.x");
    bg_amqp_content_header_write(&c->wr, 2, &h);
    t_body(&c->wr, 2, "ok", 2);
    assert_int_equal(t_client_wr(&c->f, &c->wr), 1);
    expect_method(c, UP(c), 2, AMQP_BASIC_PUBLISH_METHOD);
    expect_frame(c, UP(c), BG_AMQP_FRAME_HEADER, 2, 14 + sizeof other - 2);
    expect_frame(c, UP(c), BG_AMQP_FRAME_BODY, 2, 2);
    expect_nothing(UP(c));
    assert_int_equal(c->f.decisions, before + 3);
}

/* ---- refusals ---- */

/* The client's publish to a denied exchange, with its content: busgate
 * closes the channel upstream at once (nothing of the publish goes up); the
 * client's 403 waits for RabbitMQ's close-ok. */
static void refuse_publish_pending(ctx_t *c, uint16_t n)
{
    publish_method(c, n, "ok.secret-x");
    t_header(&c->wr, n, 5);
    t_body(&c->wr, n, "se", 2);
    t_body(&c->wr, n, "cret", 3);
    assert_int_equal(t_client_wr(&c->f, &c->wr), 1);
    bg_amqp_method_t m = expect_method(c, UP(c), n, AMQP_CHANNEL_CLOSE_METHOD);
    assert_int_equal(((amqp_channel_close_t *)m.decoded)->reply_code, 200);
    expect_nothing(UP(c));
    expect_nothing(CLI(c));
    assert_non_null(chan(c, n)->deferred);
    assert_true(chan(c, n)->cli.state == BG_AMQP_LEG_CLOSING && chan(c, n)->cli.sent &&
                !chan(c, n)->cli.sent_relay);
    assert_true(chan(c, n)->up.state == BG_AMQP_LEG_CLOSING && chan(c, n)->up.sent &&
                !chan(c, n)->up.sent_relay);
}

/* The refusal the client gets: RabbitMQ's words, busgate's rule. */
static void expect_publish_refusal(ctx_t *c, uint16_t n)
{
    bg_amqp_method_t m = expect_method(c, CLI(c), n, AMQP_CHANNEL_CLOSE_METHOD);
    const amqp_channel_close_t *cl = m.decoded;
    assert_int_equal(cl->reply_code, 403);
    assert_int_equal(cl->class_id, 60);
    assert_int_equal(cl->method_id, 40);
    const char *want = "ACCESS_REFUSED - write access to exchange 'ok.secret-x' in vhost '/' "
                       "refused for user 'svc' (busgate rule 'no-secret')";
    assert_int_equal(cl->reply_text.len, strlen(want));
    assert_memory_equal(cl->reply_text.bytes, want, strlen(want));
}

/* The whole refusal: pending, RabbitMQ's close-ok (swallowed), then the 403. */
static void refuse_publish(ctx_t *c, uint16_t n)
{
    refuse_publish_pending(c, n);
    assert_int_equal(up(c, n, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 0);
    expect_publish_refusal(c, n);
    expect_nothing(CLI(c));
    assert_int_equal(chan(c, n)->up.state, BG_AMQP_LEG_CLOSED);
    assert_null(chan(c, n)->deferred);
}

static void test_refused_publish(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    open_channel(c, 2);
    refuse_publish_pending(c, 1);
    /* What RabbitMQ sent before it saw busgate's close (a confirm here)
     * still reaches the client, ahead of the refusal, as RabbitMQ's own 403
     * would come after it. */
    amqp_basic_ack_t ack = {1, 0};
    assert_int_equal(up(c, 1, AMQP_BASIC_ACK_METHOD, &ack), 0);
    expect_method(c, CLI(c), 1, AMQP_BASIC_ACK_METHOD);
    /* RabbitMQ's close-ok is swallowed and lets the refusal go out; the
     * client's close-ok to it is swallowed too. */
    assert_int_equal(up(c, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 0);
    expect_publish_refusal(c, 1);
    expect_nothing(CLI(c));
    assert_int_equal(cli(c, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 1);
    expect_nothing(UP(c));
    assert_int_equal(chan(c, 1)->cli.state, BG_AMQP_LEG_CLOSED);
    assert_int_equal(chan(c, 1)->up.state, BG_AMQP_LEG_CLOSED);
    assert_int_equal(c->f.s.stalled, 0);
    /* The other channel never noticed; channel 1 can be reopened. */
    publish_method(c, 2, "ok.x");
    t_header(&c->wr, 2, 0);
    assert_int_equal(t_client_wr(&c->f, &c->wr), 1);
    expect_method(c, UP(c), 2, AMQP_BASIC_PUBLISH_METHOD);
    expect_frame(c, UP(c), BG_AMQP_FRAME_HEADER, 2, 14);
    open_channel(c, 1);
    assert_int_equal(c->f.closed, 0);
}

/* A delivery RabbitMQ sent before it saw busgate's close reaches the client
 * whole, before the refusal: with auto-ack it counts as delivered, so
 * dropping it would lose it. After the refusal went out nothing more is
 * relayed. */
static void test_delivery_before_refusal_is_relayed(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    refuse_publish_pending(c, 1);
    amqp_basic_deliver_t d = {t_str("ctag"), 1, 0, t_str("ok.x"), t_str("rk")};
    assert_int_equal(up(c, 1, AMQP_BASIC_DELIVER_METHOD, &d), 0);
    t_header(&c->wr, 1, 5);
    t_body(&c->wr, 1, "hello", 5);
    assert_int_equal(t_up_wr(&c->f, &c->wr), 0);
    expect_method(c, CLI(c), 1, AMQP_BASIC_DELIVER_METHOD);
    expect_frame(c, CLI(c), BG_AMQP_FRAME_HEADER, 1, 14);
    expect_frame(c, CLI(c), BG_AMQP_FRAME_BODY, 1, 5);
    expect_nothing(CLI(c));
    assert_int_equal(up(c, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 0);
    expect_publish_refusal(c, 1);
    expect_nothing(CLI(c));
    /* The client's answer ends the channel; it can be opened again. */
    assert_int_equal(cli(c, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 1);
    expect_nothing(UP(c));
    assert_int_equal(chan(c, 1)->cli.state, BG_AMQP_LEG_CLOSED);
    open_channel(c, 1);
    assert_int_equal(c->f.closed, 0);
}

/* The close-oks after a refusal already sent: RabbitMQ's ends the upstream
 * leg unseen by the client, the client's ends its leg. */
static void refusal_close_oks(ctx_t *c, uint16_t n)
{
    assert_int_equal(up(c, n, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 0);
    expect_nothing(CLI(c));
    assert_int_equal(cli(c, n, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 1);
    assert_int_equal(chan(c, n)->cli.state, BG_AMQP_LEG_CLOSED);
    assert_int_equal(chan(c, n)->up.state, BG_AMQP_LEG_CLOSED);
}

/* A RabbitMQ that does not confirm busgate's close (it stopped reading the
 * connection: a memory alarm) holds the refusal back for
 * BG_AMQP_REFUSAL_WAIT_MS at most; after that it goes out, and what
 * RabbitMQ sends later on the channel is dropped. */
static void test_refusal_not_confirmed_in_time_goes_out(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    c->f.now_ms = 1000;
    refuse_publish_pending(c, 1);
    assert_int_equal(c->f.s.ndeferred, 1);
    c->f.now_ms += BG_AMQP_REFUSAL_WAIT_MS - 1;
    bg_amqp_chan_send_overdue_refusals(&c->f.s);
    expect_nothing(CLI(c));
    c->f.now_ms += 1;
    bg_amqp_chan_send_overdue_refusals(&c->f.s);
    expect_publish_refusal(c, 1);
    assert_int_equal(c->f.s.ndeferred, 0);
    amqp_basic_ack_t ack = {1, 0};
    assert_int_equal(up(c, 1, AMQP_BASIC_ACK_METHOD, &ack), 0);
    expect_nothing(CLI(c));
    refusal_close_oks(c, 1);
}

/* With confirms on, a refused publish closes the channel (both legs) rather
 * than dropping one message and shifting the later delivery tags. */
static void test_refused_publish_with_confirms(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    assert_int_equal(cli(c, 1, AMQP_CONFIRM_SELECT_METHOD, &(amqp_confirm_select_t){0}), 1);
    expect_method(c, UP(c), 1, AMQP_CONFIRM_SELECT_METHOD);
    assert_int_equal(chan(c, 1)->confirm, 1);
    publish_method(c, 1, "ok.x");
    t_header(&c->wr, 1, 0);
    assert_int_equal(t_client_wr(&c->f, &c->wr), 1);
    expect_method(c, UP(c), 1, AMQP_BASIC_PUBLISH_METHOD);
    expect_frame(c, UP(c), BG_AMQP_FRAME_HEADER, 1, 14);
    refuse_publish(c, 1);
    /* A publish the client pipelined after the refused one is discarded too. */
    publish_method(c, 1, "ok.x");
    t_header(&c->wr, 1, 1);
    t_body(&c->wr, 1, "z", 1);
    assert_int_equal(t_client_wr(&c->f, &c->wr), 1);
    expect_nothing(UP(c));
    assert_int_equal(c->f.closed, 0);
}

/* Closes that cross (AMQP 0-9-1, as RabbitMQ does): a peer that sent
 * channel.close and then gets one answers it with close-ok and still waits
 * for the close-ok to its own. The client's close after busgate's refusal
 * is answered by busgate; the client's close-ok to the refusal still comes
 * and ends the client leg. RabbitMQ's close crossing busgate's is answered
 * too, and RabbitMQ's close-ok to busgate's ends the upstream leg. */
static void test_refusal_crossing_client_close(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    refuse_publish_pending(c, 1);
    /* The client closes the channel before the refusal went out: the
     * refusal goes first, then the close-ok, so the closes cross as usual. */
    amqp_channel_close_t cl = {200, t_str("bye"), 0, 0};
    assert_int_equal(cli(c, 1, AMQP_CHANNEL_CLOSE_METHOD, &cl), 1);
    expect_publish_refusal(c, 1);
    expect_method(c, CLI(c), 1, AMQP_CHANNEL_CLOSE_OK_METHOD);
    expect_nothing(UP(c));
    assert_int_equal(chan(c, 1)->cli.state, BG_AMQP_LEG_CLOSING);
    assert_int_equal(cli(c, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 1);
    expect_nothing(UP(c));
    assert_int_equal(chan(c, 1)->cli.state, BG_AMQP_LEG_CLOSED);
    /* Upstream crossing too: busgate answers its channel.close upstream. */
    amqp_channel_close_t ucl = {406, t_str("PRECONDITION_FAILED"), 0, 0};
    assert_int_equal(up(c, 1, AMQP_CHANNEL_CLOSE_METHOD, &ucl), 0);
    expect_method(c, UP(c), 1, AMQP_CHANNEL_CLOSE_OK_METHOD);
    expect_nothing(CLI(c));
    assert_int_equal(chan(c, 1)->up.state, BG_AMQP_LEG_CLOSING);
    assert_int_equal(up(c, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 0);
    expect_nothing(CLI(c));
    assert_int_equal(chan(c, 1)->up.state, BG_AMQP_LEG_CLOSED);
    open_channel(c, 1);
    assert_int_equal(c->f.closed, 0);
}

/* The client's close crosses RabbitMQ's: both are relayed, both close-oks
 * too, and the number is free on both legs. */
static void test_client_close_crossing_server_close(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    amqp_channel_close_t cl = {200, t_str("bye"), 0, 0};
    assert_int_equal(cli(c, 1, AMQP_CHANNEL_CLOSE_METHOD, &cl), 1);
    expect_method(c, UP(c), 1, AMQP_CHANNEL_CLOSE_METHOD);
    amqp_channel_close_t ucl = {404, t_str("NOT_FOUND - no exchange 'x'"), 60, 40};
    assert_int_equal(up(c, 1, AMQP_CHANNEL_CLOSE_METHOD, &ucl), 0);
    bg_amqp_method_t m = expect_method(c, CLI(c), 1, AMQP_CHANNEL_CLOSE_METHOD);
    assert_int_equal(((amqp_channel_close_t *)m.decoded)->reply_code, 404);
    /* RabbitMQ answers the client's close; the client answers RabbitMQ's. */
    assert_int_equal(up(c, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 0);
    expect_method(c, CLI(c), 1, AMQP_CHANNEL_CLOSE_OK_METHOD);
    assert_int_equal(cli(c, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 1);
    expect_method(c, UP(c), 1, AMQP_CHANNEL_CLOSE_OK_METHOD);
    expect_nothing(UP(c));
    expect_nothing(CLI(c));
    assert_int_equal(chan(c, 1)->cli.state, BG_AMQP_LEG_CLOSED);
    assert_int_equal(chan(c, 1)->up.state, BG_AMQP_LEG_CLOSED);
    open_channel(c, 1);
    assert_int_equal(c->f.closed, 0);
}

/* RabbitMQ closed first and the client's own close crosses it: busgate
 * answers the client's close (RabbitMQ's channel is closing already); the
 * client's close-ok still answers RabbitMQ. */
static void test_server_close_crossing_client_close(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    amqp_channel_close_t ucl = {406, t_str("PRECONDITION_FAILED - unknown delivery tag 9"), 60,
                                80};
    assert_int_equal(up(c, 1, AMQP_CHANNEL_CLOSE_METHOD, &ucl), 0);
    expect_method(c, CLI(c), 1, AMQP_CHANNEL_CLOSE_METHOD);
    amqp_channel_close_t cl = {200, t_str("bye"), 0, 0};
    assert_int_equal(cli(c, 1, AMQP_CHANNEL_CLOSE_METHOD, &cl), 1);
    expect_method(c, CLI(c), 1, AMQP_CHANNEL_CLOSE_OK_METHOD);
    expect_nothing(UP(c));
    assert_int_equal(cli(c, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 1);
    expect_method(c, UP(c), 1, AMQP_CHANNEL_CLOSE_OK_METHOD);
    assert_int_equal(chan(c, 1)->cli.state, BG_AMQP_LEG_CLOSED);
    assert_int_equal(chan(c, 1)->up.state, BG_AMQP_LEG_CLOSED);
    open_channel(c, 1);
    assert_int_equal(c->f.closed, 0);
}

/* busgate refuses a method while RabbitMQ's close for an earlier error is on
 * its way (a publish to a missing exchange, then a refused method): the
 * client gets RabbitMQ's close in place of busgate's held refusal, which is
 * dropped; RabbitMQ's close is answered upstream, and the client's one
 * close-ok answers busgate's close and goes nowhere. */
static void test_refusal_crossing_server_close(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    refuse_publish_pending(c, 1);
    amqp_channel_close_t ucl = {404, t_str("NOT_FOUND - no exchange 'ok.x'"), 60, 40};
    assert_int_equal(up(c, 1, AMQP_CHANNEL_CLOSE_METHOD, &ucl), 0);
    expect_method(c, UP(c), 1, AMQP_CHANNEL_CLOSE_OK_METHOD);
    bg_amqp_method_t m = expect_method(c, CLI(c), 1, AMQP_CHANNEL_CLOSE_METHOD);
    const amqp_channel_close_t *cl = m.decoded;
    assert_int_equal(cl->reply_code, 404);
    assert_int_equal(cl->class_id, 60);
    assert_int_equal(cl->method_id, 40);
    expect_nothing(CLI(c));
    assert_null(chan(c, 1)->deferred);
    assert_int_equal(c->f.s.ndeferred, 0);
    assert_int_equal(up(c, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 0);
    expect_nothing(CLI(c)); /* the refusal stays dropped */
    assert_int_equal(chan(c, 1)->up.state, BG_AMQP_LEG_CLOSED);
    assert_int_equal(cli(c, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 1);
    expect_nothing(UP(c)); /* RabbitMQ's close was answered already */
    assert_int_equal(chan(c, 1)->cli.state, BG_AMQP_LEG_CLOSED);
    open_channel(c, 1);
    assert_int_equal(c->f.closed, 0);
}

/* RabbitMQ closes the channel while the bodies of a forwarded publish are
 * still coming: they go upstream before the client's close-ok (RabbitMQ
 * reads the whole content even on a closing channel). */
static void test_server_close_mid_content(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    publish_method(c, 1, "ok.x");
    t_header(&c->wr, 1, 6);
    t_body(&c->wr, 1, "abc", 3);
    assert_int_equal(t_client_wr(&c->f, &c->wr), 1);
    expect_method(c, UP(c), 1, AMQP_BASIC_PUBLISH_METHOD);
    expect_frame(c, UP(c), BG_AMQP_FRAME_HEADER, 1, 14);
    expect_frame(c, UP(c), BG_AMQP_FRAME_BODY, 1, 3);
    amqp_channel_close_t ucl = {404, t_str("NOT_FOUND - no exchange 'ok.x'"), 60, 40};
    assert_int_equal(up(c, 1, AMQP_CHANNEL_CLOSE_METHOD, &ucl), 0);
    expect_method(c, CLI(c), 1, AMQP_CHANNEL_CLOSE_METHOD);
    t_body(&c->wr, 1, "def", 3);
    t_method(&c->wr, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL);
    assert_int_equal(t_client_wr(&c->f, &c->wr), 1);
    expect_frame(c, UP(c), BG_AMQP_FRAME_BODY, 1, 3);
    expect_method(c, UP(c), 1, AMQP_CHANNEL_CLOSE_OK_METHOD);
    assert_int_equal(chan(c, 1)->cli.state, BG_AMQP_LEG_CLOSED);
    assert_int_equal(chan(c, 1)->up.state, BG_AMQP_LEG_CLOSED);
    /* A publish the client sends after RabbitMQ's close is not forwarded. */
    open_channel(c, 2);
    assert_int_equal(up(c, 2, AMQP_CHANNEL_CLOSE_METHOD, &ucl), 0);
    expect_method(c, CLI(c), 2, AMQP_CHANNEL_CLOSE_METHOD);
    publish_method(c, 2, "ok.x");
    t_header(&c->wr, 2, 1);
    t_body(&c->wr, 2, "z", 1);
    assert_int_equal(t_client_wr(&c->f, &c->wr), 1);
    expect_nothing(UP(c));
    assert_int_equal(c->f.closed, 0);
}

/* Both legs' close handshakes of channel n end (the client's close-ok,
 * then RabbitMQ's): nothing more goes either way, and the number is free
 * again: it opens, the connection still up. */
static void both_closes_end_and_reopen(ctx_t *c, uint16_t n)
{
    assert_int_equal(cli(c, n, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 1);
    assert_int_equal(up(c, n, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 0);
    expect_nothing(UP(c));
    expect_nothing(CLI(c));
    assert_int_equal(chan(c, n)->cli.state, BG_AMQP_LEG_CLOSED);
    assert_int_equal(chan(c, n)->up.state, BG_AMQP_LEG_CLOSED);
    open_channel(c, n);
    assert_int_equal(c->f.closed, 0);
}

/* Channel 1 is relaying a delivery from RabbitMQ (6 body bytes, 3 sent:
 * d, its deliver) when busgate refuses a publish of the client's on it: the
 * refusal's channel.close went upstream, the client's copy waits (held). */
static void refused_mid_delivery(ctx_t *c, amqp_basic_deliver_t *d)
{
    open_channel(c, 1);
    *d = (amqp_basic_deliver_t){t_str("ctag"), 1, 0, t_str("ok.x"), t_str("rk")};
    assert_int_equal(up(c, 1, AMQP_BASIC_DELIVER_METHOD, d), 0);
    t_header(&c->wr, 1, 6);
    t_body(&c->wr, 1, "abc", 3);
    assert_int_equal(t_up_wr(&c->f, &c->wr), 0);
    expect_method(c, CLI(c), 1, AMQP_BASIC_DELIVER_METHOD);
    expect_frame(c, CLI(c), BG_AMQP_FRAME_HEADER, 1, 14);
    expect_frame(c, CLI(c), BG_AMQP_FRAME_BODY, 1, 3);
    /* The client publishes somewhere it may not. */
    publish_method(c, 1, "ok.secret-x");
    t_header(&c->wr, 1, 0);
    assert_int_equal(t_client_wr(&c->f, &c->wr), 1);
    expect_method(c, UP(c), 1, AMQP_CHANNEL_CLOSE_METHOD);
    expect_nothing(CLI(c)); /* held */
}

/* A refusal while a delivery from RabbitMQ is only partly relayed: the
 * refusal's channel.close waits until the delivery's last body frame, since
 * no frame may come between a command's content frames. Later deliveries
 * (sent before RabbitMQ saw busgate's close) are dropped whole. */
static void test_refusal_during_delivery(void **state)
{
    ctx_t *c = *state;
    amqp_basic_deliver_t d;
    refused_mid_delivery(c, &d);
    /* It also closes the channel itself: the close-ok waits too. */
    amqp_channel_close_t cl = {200, t_str("bye"), 0, 0};
    assert_int_equal(cli(c, 1, AMQP_CHANNEL_CLOSE_METHOD, &cl), 1);
    expect_nothing(CLI(c));
    /* The rest of the delivery, then a new one RabbitMQ sent before it saw
     * busgate's close. */
    t_body(&c->wr, 1, "def", 3);
    assert_int_equal(t_up_wr(&c->f, &c->wr), 0);
    expect_frame(c, CLI(c), BG_AMQP_FRAME_BODY, 1, 3);
    bg_amqp_method_t m = expect_method(c, CLI(c), 1, AMQP_CHANNEL_CLOSE_METHOD);
    assert_int_equal(((amqp_channel_close_t *)m.decoded)->reply_code, 403);
    expect_method(c, CLI(c), 1, AMQP_CHANNEL_CLOSE_OK_METHOD);
    expect_nothing(CLI(c));
    d.delivery_tag = 2;
    assert_int_equal(up(c, 1, AMQP_BASIC_DELIVER_METHOD, &d), 0);
    t_header(&c->wr, 1, 2);
    t_body(&c->wr, 1, "zz", 2);
    assert_int_equal(t_up_wr(&c->f, &c->wr), 0);
    expect_nothing(CLI(c));
    both_closes_end_and_reopen(c, 1);
}

/* A client that sends channel.close again and again on a channel busgate
 * closed, while a delivery on it is only partly relayed. Each is answered,
 * as RabbitMQ answers every close on a closing channel, but only one
 * answer waits for the delivery's end: the next close waits in the
 * client's input (the session stalls) rather than growing what busgate
 * holds with every close the client sends. */
static void test_repeated_close_during_delivery_waits(void **state)
{
    ctx_t *c = *state;
    amqp_basic_deliver_t d;
    refused_mid_delivery(c, &d);
    amqp_channel_close_t cl = {200, t_str("bye"), 0, 0};
    assert_int_equal(cli(c, 1, AMQP_CHANNEL_CLOSE_METHOD, &cl), 1);
    size_t held = evbuffer_get_length(chan(c, 1)->held);
    size_t one = t_method(&c->wr, 1, AMQP_CHANNEL_CLOSE_METHOD, &cl);
    for (int i = 1; i < 1000; i++)
        t_method(&c->wr, 1, AMQP_CHANNEL_CLOSE_METHOD, &cl);
    int rc = t_client_wr(&c->f, &c->wr);
    assert_int_equal(evbuffer_get_length(chan(c, 1)->held), held);
    assert_int_equal(rc, 0); /* stalled */
    assert_int_equal(c->f.s.stalled, 1);
    assert_int_equal(evbuffer_get_length(c->f.in), 1000 * one);
    expect_nothing(CLI(c));
    expect_nothing(UP(c));
    /* The delivery ends: its last body, the refusal, the close-ok; then the
     * client is read again and every further close is answered at once. */
    int resumes = c->f.resumes;
    t_body(&c->wr, 1, "def", 3);
    assert_int_equal(t_up_wr(&c->f, &c->wr), 0);
    assert_int_equal(c->f.s.stalled, 0);
    assert_int_equal(c->f.resumes, resumes + 1);
    expect_frame(c, CLI(c), BG_AMQP_FRAME_BODY, 1, 3);
    bg_amqp_method_t m = expect_method(c, CLI(c), 1, AMQP_CHANNEL_CLOSE_METHOD);
    assert_int_equal(((amqp_channel_close_t *)m.decoded)->reply_code, 403);
    expect_method(c, CLI(c), 1, AMQP_CHANNEL_CLOSE_OK_METHOD);
    expect_nothing(CLI(c));
    assert_int_equal(t_client(&c->f, NULL, 0), 1);
    for (int i = 0; i < 1000; i++)
        expect_method(c, CLI(c), 1, AMQP_CHANNEL_CLOSE_OK_METHOD);
    expect_nothing(CLI(c));
    expect_nothing(UP(c));
    both_closes_end_and_reopen(c, 1);
}

/* The client reopens a refused channel before the upstream confirmed
 * busgate's close: reading stalls until the upstream's close-ok, then the
 * open goes through. The client pipelines everything in one write. */
static void test_reopen_hold(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    evbuffer_drain(UP(c), evbuffer_get_length(UP(c)));
    publish_method(c, 1, "ok.secret-x");
    t_header(&c->wr, 1, 0);
    /* The client closes the channel itself before it hears of the refusal:
     * it gets the refusal and the close-ok at once, answers the refusal and
     * reopens, all before RabbitMQ has confirmed busgate's close. */
    amqp_channel_close_t cl = {200, t_str("bye"), 0, 0};
    t_method(&c->wr, 1, AMQP_CHANNEL_CLOSE_METHOD, &cl);
    t_method(&c->wr, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL);
    amqp_channel_open_t o = {{0, NULL}};
    t_method(&c->wr, 1, AMQP_CHANNEL_OPEN_METHOD, &o);
    assert_int_equal(t_client_wr(&c->f, &c->wr), 0); /* stalled */
    assert_int_equal(c->f.s.stalled, 1);
    expect_method(c, CLI(c), 1, AMQP_CHANNEL_CLOSE_METHOD);
    expect_method(c, CLI(c), 1, AMQP_CHANNEL_CLOSE_OK_METHOD);
    expect_method(c, UP(c), 1, AMQP_CHANNEL_CLOSE_METHOD);
    expect_nothing(UP(c)); /* the open waits */
    assert_true(evbuffer_get_length(c->f.in) > 0);
    int resumes = c->f.resumes;
    assert_int_equal(up(c, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 0);
    assert_int_equal(c->f.s.stalled, 0);
    assert_int_equal(c->f.resumes, resumes + 1);
    expect_nothing(CLI(c));
    /* The session re-reads: the held open is forwarded now. */
    assert_int_equal(t_client(&c->f, NULL, 0), 1);
    expect_method(c, UP(c), 1, AMQP_CHANNEL_OPEN_METHOD);
    assert_int_equal(chan(c, 1)->cli.state, BG_AMQP_LEG_OPEN);
    assert_int_equal(c->f.closed, 0);
}

/* While the audit pipeline cannot record events, a method that needs a
 * decision closes the connection with 320 CONNECTION_FORCED (retry later, as
 * at login), its class/method ids; nothing goes upstream. 506 would be a
 * hard error in a channel.close, which no AMQP peer sends. Methods that
 * name no resource need no audit: not refused. */
static void test_audit_not_admitting(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    c->f.admitting = 0;
    assert_int_equal(cli(c, 1, AMQP_BASIC_QOS_METHOD, &(amqp_basic_qos_t){0, 1, 0}), 1);
    expect_method(c, UP(c), 1, AMQP_BASIC_QOS_METHOD);
    amqp_queue_declare_t d;
    memset(&d, 0, sizeof d);
    d.queue = t_str("ok.q");
    assert_int_equal(cli(c, 1, AMQP_QUEUE_DECLARE_METHOD, &d), -1);
    assert_closed_with(c, BG_AMQP_CONNECTION_FORCED,
                       "CONNECTION_FORCED - busgate cannot record audit events now; retry");
    assert_int_equal(c->f.close_class, 50);
    assert_int_equal(c->f.close_method, 10);
    expect_nothing(UP(c));
    expect_nothing(CLI(c));
    assert_int_equal(c->f.decisions, 0);
}

/* The client declares queue name on channel n (forwarded upstream). */
static void declare(ctx_t *c, uint16_t n, const char *name, int passive, int nowait)
{
    amqp_queue_declare_t qd;
    memset(&qd, 0, sizeof qd);
    qd.queue = t_str(name);
    qd.passive = (amqp_boolean_t)passive;
    qd.nowait = (amqp_boolean_t)nowait;
    assert_int_equal(cli(c, n, AMQP_QUEUE_DECLARE_METHOD, &qd), 1);
    expect_method(c, UP(c), n, AMQP_QUEUE_DECLARE_METHOD);
}

/* The broker's declare-ok naming queue name on channel n (relayed). */
static void declare_ok(ctx_t *c, uint16_t n, const char *name)
{
    amqp_queue_declare_ok_t dok = {t_str(name), 0, 0};
    assert_int_equal(up(c, n, AMQP_QUEUE_DECLARE_OK_METHOD, &dok), 0);
    expect_method(c, CLI(c), n, AMQP_QUEUE_DECLARE_OK_METHOD);
}

/* ---- consumers ---- */

static void test_consumer_tracking(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    /* queue.declare "" -> declare-ok names the queue; consume "" uses it. */
    declare(c, 1, "", 0, 0);
    assert_string_equal(chan(c, 1)->last_queue, "");
    declare_ok(c, 1, "amq.gen-1");
    assert_string_equal(chan(c, 1)->last_queue, "amq.gen-1");
    amqp_basic_consume_t bc;
    memset(&bc, 0, sizeof bc);
    char t1[64], t2[64];
    assert_int_equal(cli(c, 1, AMQP_BASIC_CONSUME_METHOD, &bc), 1);
    bg_amqp_method_t m = expect_method(c, UP(c), 1, AMQP_BASIC_CONSUME_METHOD);
    amqp_basic_consume_ok_t cok = {t_str(sent_tag(&m, "ctag-1", t1, sizeof t1))};
    assert_int_equal(up(c, 1, AMQP_BASIC_CONSUME_OK_METHOD, &cok), 0);
    expect_method(c, CLI(c), 1, AMQP_BASIC_CONSUME_OK_METHOD);
    bc.queue = t_str("ok.other");
    assert_int_equal(cli(c, 1, AMQP_BASIC_CONSUME_METHOD, &bc), 1);
    m = expect_method(c, UP(c), 1, AMQP_BASIC_CONSUME_METHOD);
    cok.consumer_tag = t_str(sent_tag(&m, "ctag-2", t2, sizeof t2));
    assert_int_equal(up(c, 1, AMQP_BASIC_CONSUME_OK_METHOD, &cok), 0);
    expect_method(c, CLI(c), 1, AMQP_BASIC_CONSUME_OK_METHOD);
    bg_amqp_channel_t *ch = chan(c, 1);
    assert_int_equal(ch->nconsumers, 2);
    int seen = 0;
    for (bg_amqp_consumer_t *k = ch->consumers; k; k = k->next) {
        if (strcmp(k->tag, t1) == 0)
            assert_string_equal(k->queue, "amq.gen-1"), seen |= 1;
        if (strcmp(k->tag, t2) == 0)
            assert_string_equal(k->queue, "ok.other"), seen |= 2;
    }
    assert_int_equal(seen, 3);
    /* The broker's cancel notification (queue deleted) is relayed and forgets it. */
    amqp_basic_cancel_t cn = {t_str(t1), 1};
    assert_int_equal(up(c, 1, AMQP_BASIC_CANCEL_METHOD, &cn), 0);
    expect_method(c, CLI(c), 1, AMQP_BASIC_CANCEL_METHOD);
    assert_int_equal(ch->nconsumers, 1);
    /* The client's cancel: its cancel-ok ends the consumer. */
    amqp_basic_cancel_t ccn = {t_str(t2), 0};
    assert_int_equal(cli(c, 1, AMQP_BASIC_CANCEL_METHOD, &ccn), 1);
    expect_method(c, UP(c), 1, AMQP_BASIC_CANCEL_METHOD);
    assert_int_equal(ch->nconsumers, 1);
    amqp_basic_cancel_ok_t cnok = {t_str(t2)};
    assert_int_equal(up(c, 1, AMQP_BASIC_CANCEL_OK_METHOD, &cnok), 0);
    assert_int_equal(ch->nconsumers, 0);
    assert_null(ch->consumers);
    assert_int_equal(c->f.closed, 0);
}

/* The declare-ok of an earlier declare does not undo a later declare: ""
 * keeps naming the queue RabbitMQ declared last (here a passive nowait
 * declare of a queue the principal may only describe), so consuming from ""
 * is decided on that queue and refused. */
static void test_stale_declare_ok_keeps_last_queue(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    declare(c, 1, "ok.mine", 0, 0);
    declare(c, 1, "look.victim", 1, 1);
    declare_ok(c, 1, "ok.mine");
    assert_string_equal(chan(c, 1)->last_queue, "look.victim");
    amqp_basic_consume_t bc;
    memset(&bc, 0, sizeof bc);
    assert_int_equal(cli(c, 1, AMQP_BASIC_CONSUME_METHOD, &bc), 1);
    expect_method(c, UP(c), 1, AMQP_CHANNEL_CLOSE_METHOD);
    expect_nothing(UP(c));
    assert_int_equal(up(c, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 0);
    bg_amqp_method_t m = expect_method(c, CLI(c), 1, AMQP_CHANNEL_CLOSE_METHOD);
    assert_int_equal(((amqp_channel_close_t *)m.decoded)->reply_code, 403);
}

/* Two named declares pipelined: the first declare-ok leaves the second
 * queue as the last one; a declare-ok with no declare waiting changes
 * nothing. */
static void test_pipelined_declares(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    const char *names[] = {"ok.a", "ok.b"};
    for (int i = 0; i < 2; i++)
        declare(c, 1, names[i], 0, 0);
    for (int i = 0; i < 3; i++) {
        declare_ok(c, 1, i < 2 ? names[i] : "ok.stray");
        assert_string_equal(chan(c, 1)->last_queue, "ok.b");
    }
    assert_int_equal(chan(c, 1)->declares_waiting, 0);
}

/* The queue tracked for tag on channel n, or NULL. */
static const char *consumer_queue(ctx_t *c, uint16_t n, const char *tag)
{
    for (bg_amqp_consumer_t *k = chan(c, n)->consumers; k; k = k->next)
        if (strcmp(k->tag, tag) == 0)
            return k->queue;
    return NULL;
}

/* Fails unless tag names a live consumer on queue (channel n). */
static void assert_consumer(ctx_t *c, uint16_t n, const char *tag, const char *queue)
{
    const char *q = consumer_queue(c, n, tag);
    if (!q || strcmp(q, queue) != 0)
        fail_msg("consumer '%s' on channel %u: queue %s, expected %s", tag, n, q ? q : "(none)",
                 queue);
}

/* The client's basic.consume on queue, forwarded; no_ack as a direct
 * reply-to consume needs it. Returns the tag RabbitMQ will use (see
 * sent_tag; fallback for one that went up without a tag) in out. */
static const char *consume_as(ctx_t *c, uint16_t n, const char *queue, const char *tag,
                              int nowait, int no_ack, const char *fallback, char *out, size_t cap)
{
    amqp_basic_consume_t bc;
    memset(&bc, 0, sizeof bc);
    bc.queue = t_str(queue);
    bc.consumer_tag = t_str(tag);
    bc.nowait = (amqp_boolean_t)nowait;
    bc.no_ack = (amqp_boolean_t)no_ack;
    assert_int_equal(cli(c, n, AMQP_BASIC_CONSUME_METHOD, &bc), 1);
    bg_amqp_method_t m = expect_method(c, UP(c), n, AMQP_BASIC_CONSUME_METHOD);
    return sent_tag(&m, fallback, out, cap);
}

static void consume(ctx_t *c, uint16_t n, const char *queue, const char *tag, int nowait)
{
    char t[64];
    consume_as(c, n, queue, tag, nowait, 0, "", t, sizeof t);
}

/* The client's basic.cancel of tag (forwarded), and with wait RabbitMQ's
 * cancel-ok (relayed). */
static void cancel(ctx_t *c, uint16_t n, const char *tag, int nowait)
{
    amqp_basic_cancel_t cn = {t_str(tag), (amqp_boolean_t)nowait};
    assert_int_equal(cli(c, n, AMQP_BASIC_CANCEL_METHOD, &cn), 1);
    expect_method(c, UP(c), n, AMQP_BASIC_CANCEL_METHOD);
}

static void consume_ok(ctx_t *c, uint16_t n, const char *tag);

/* A consumer on queue under tag, live (its consume-ok came). */
static void consume_live(ctx_t *c, uint16_t n, const char *queue, const char *tag)
{
    consume(c, n, queue, tag, 0);
    consume_ok(c, n, tag);
}

static void cancel_ok(ctx_t *c, uint16_t n, const char *tag)
{
    amqp_basic_cancel_ok_t ok = {t_str(tag)};
    assert_int_equal(up(c, n, AMQP_BASIC_CANCEL_OK_METHOD, &ok), 0);
    expect_method(c, CLI(c), n, AMQP_BASIC_CANCEL_OK_METHOD);
}

/* The client's nowait basic.cancel of a tracked consumer: forwarded as a
 * waiting one (no-wait bit cleared), the consumer still tracked. */
static void cancel_nowait_tracked(ctx_t *c, uint16_t n, amqp_bytes_t tag)
{
    amqp_basic_cancel_t cn = {tag, 1};
    assert_int_equal(cli(c, n, AMQP_BASIC_CANCEL_METHOD, &cn), 1);
    bg_amqp_method_t m = expect_method(c, UP(c), n, AMQP_BASIC_CANCEL_METHOD);
    const amqp_basic_cancel_t *up_cn = m.decoded;
    assert_int_equal(up_cn->nowait, 0);
    assert_int_equal(up_cn->consumer_tag.len, tag.len);
    assert_memory_equal(up_cn->consumer_tag.bytes, tag.bytes, tag.len);
}

/* RabbitMQ's cancel-ok for a cancel the client sent with nowait: not
 * relayed (the client expects none). */
static void cancel_ok_quiet(ctx_t *c, uint16_t n, amqp_bytes_t tag)
{
    amqp_basic_cancel_ok_t ok = {tag};
    assert_int_equal(up(c, n, AMQP_BASIC_CANCEL_OK_METHOD, &ok), 0);
    expect_nothing(CLI(c));
}

static void consume_ok(ctx_t *c, uint16_t n, const char *tag)
{
    amqp_basic_consume_ok_t ok = {t_str(tag)};
    assert_int_equal(up(c, n, AMQP_BASIC_CONSUME_OK_METHOD, &ok), 0);
    expect_method(c, CLI(c), n, AMQP_BASIC_CONSUME_OK_METHOD);
}

/* A consumer on queue under tag, no_ack or not, live (its consume-ok came). */
static void consume_as_live(ctx_t *c, uint16_t n, const char *queue, const char *tag, int no_ack)
{
    char t[64];
    consume_as(c, n, queue, tag, 0, no_ack, "", t, sizeof t);
    consume_ok(c, n, tag);
}

/* Consumes sent before the first consume-ok, without tags: busgate names
 * each (the tag it sent up), and each consume-ok goes to the consume with
 * its tag. */
static void test_pipelined_consumes(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    char t1[64], t2[64], t3[64];
    consume_as(c, 1, "ok.a", "", 0, 0, "amq.ctag-1", t1, sizeof t1);
    consume_as(c, 1, "ok.b", "", 0, 0, "amq.ctag-2", t2, sizeof t2);
    declare(c, 1, "ok.c", 0, 0);
    consume_as(c, 1, "", "", 0, 0, "amq.ctag-3", t3, sizeof t3); /* "" = the last declared, ok.c */
    consume(c, 1, "ok.d", "mine", 1);  /* nowait: tracked at once */
    assert_int_equal(chan(c, 1)->npending, 3);
    assert_string_equal(consumer_queue(c, 1, "mine"), "ok.d");
    declare_ok(c, 1, "ok.c");
    consume_ok(c, 1, t1);
    consume_ok(c, 1, t2);
    consume_ok(c, 1, t3);
    assert_string_equal(consumer_queue(c, 1, t1), "ok.a");
    assert_string_equal(consumer_queue(c, 1, t2), "ok.b");
    assert_string_equal(consumer_queue(c, 1, t3), "ok.c");
    assert_int_equal(chan(c, 1)->npending, 0);
    assert_int_equal(chan(c, 1)->nconsumers, 4);
    assert_int_equal(c->f.s.nconsumers, 4);
    /* A stray consume-ok (none pending) names nothing. */
    consume_ok(c, 1, "amq.ctag-9");
    assert_null(consumer_queue(c, 1, "amq.ctag-9"));
    /* basic.cancel nowait: forwarded as a waiting one; the tag goes at its
     * cancel-ok, which the client does not get. */
    cancel_nowait_tracked(c, 1, t_str("mine"));
    assert_string_equal(consumer_queue(c, 1, "mine"), "ok.d");
    cancel_ok_quiet(c, 1, t_str("mine"));
    assert_null(consumer_queue(c, 1, "mine"));
    assert_int_equal(c->f.s.nconsumers, 3);
    assert_int_equal(c->f.closed, 0);
}

/* A nowait cancel of a consume whose consume-ok has not come yet: RabbitMQ
 * creates the consumer and then cancels it, so the consume-ok must not
 * leave a consumer counted against the bounds. */
static void test_nowait_cancel_of_pending_consume(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    for (int i = 0; i < 3; i++) {
        consume(c, 1, "ok.q", "t", 0);
        cancel_nowait_tracked(c, 1, t_str("t"));
        consume_ok(c, 1, "t");
        cancel_ok_quiet(c, 1, t_str("t"));
        assert_null(consumer_queue(c, 1, "t"));
        assert_int_equal(chan(c, 1)->npending, 0);
        assert_int_equal(chan(c, 1)->nconsumers, 0);
        assert_int_equal(c->f.s.nconsumers, 0);
    }
}

/* RabbitMQ answers consumes out of order (a direct reply-to consume at once,
 * one on a queue through the queue's process): a consume-ok goes to the
 * consume with its tag, the client's or busgate's own. */
static void test_consume_oks_out_of_order(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    char t1[64], t2[64];
    consume(c, 1, "ok.q", "A", 0);
    consume_as(c, 1, "ok.r", "", 0, 0, "amq.ctag-1", t1, sizeof t1);
    consume_live(c, 1, "ok.reply", "B");
    consume_ok(c, 1, t1);
    consume_ok(c, 1, "A");
    assert_string_equal(consumer_queue(c, 1, "A"), "ok.q");
    assert_string_equal(consumer_queue(c, 1, "B"), "ok.reply");
    assert_string_equal(consumer_queue(c, 1, t1), "ok.r");
    assert_int_equal(chan(c, 1)->npending, 0);
    assert_int_equal(chan(c, 1)->nconsumers, 3);
    /* The pending list was relinked correctly: a new consume still pairs. */
    consume_as(c, 1, "ok.s", "", 0, 0, "amq.ctag-2", t2, sizeof t2);
    consume_ok(c, 1, t2);
    assert_string_equal(consumer_queue(c, 1, t2), "ok.s");
}

/* A cancel (waiting for its cancel-ok) of a tag RabbitMQ does not know is
 * answered with a cancel-ok all the same. That cancel-ok must not end a
 * later consume that asked for the tag: the consumer would live on
 * uncounted, and the bound could be passed without end. */
static void test_cancel_ok_of_unknown_tag_keeps_pending_consume(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    amqp_basic_cancel_t cn = {t_str("T"), 0};
    assert_int_equal(cli(c, 1, AMQP_BASIC_CANCEL_METHOD, &cn), 1);
    expect_method(c, UP(c), 1, AMQP_BASIC_CANCEL_METHOD);
    consume(c, 1, "ok.q", "T", 0);
    amqp_basic_cancel_ok_t cnok = {t_str("T")};
    assert_int_equal(up(c, 1, AMQP_BASIC_CANCEL_OK_METHOD, &cnok), 0);
    expect_method(c, CLI(c), 1, AMQP_BASIC_CANCEL_OK_METHOD);
    consume_ok(c, 1, "T");
    assert_string_equal(consumer_queue(c, 1, "T"), "ok.q");
    assert_int_equal(chan(c, 1)->nconsumers, 1);
    assert_int_equal(c->f.s.nconsumers, 1);
}

/* The channel.close 403 busgate sends for a refused basic.consume. */
static void expect_consume_refused(ctx_t *c, uint16_t n)
{
    bg_amqp_method_t m = expect_method(c, CLI(c), n, AMQP_CHANNEL_CLOSE_METHOD);
    const amqp_channel_close_t *cl = m.decoded;
    assert_int_equal(cl->reply_code, BG_AMQP_ACCESS_REFUSED);
    assert_int_equal(cl->class_id, 60);
    assert_int_equal(cl->method_id, 20);
    expect_method(c, UP(c), n, AMQP_CHANNEL_CLOSE_METHOD);
}

static void expect_consume_refused_client_only(ctx_t *c, uint16_t n)
{
    bg_amqp_method_t m = expect_method(c, CLI(c), n, AMQP_CHANNEL_CLOSE_METHOD);
    const amqp_channel_close_t *cl = m.decoded;
    assert_int_equal(cl->reply_code, BG_AMQP_ACCESS_REFUSED);
    assert_int_equal(cl->class_id, 60);
    assert_int_equal(cl->method_id, 20);
}

static void deliver(ctx_t *c, uint16_t n, const char *tag)
{
    amqp_basic_deliver_t d;
    memset(&d, 0, sizeof d);
    d.consumer_tag = t_str(tag);
    d.delivery_tag = 1;
    d.exchange = t_str("");
    d.routing_key = t_str("k");
    assert_int_equal(up(c, n, AMQP_BASIC_DELIVER_METHOD, &d), 0);
}

/* RabbitMQ's delivery d on channel n (method, header, a 5-byte body). */
static void deliver_whole(ctx_t *c, uint16_t n, amqp_basic_deliver_t *d)
{
    t_method(&c->wr, n, AMQP_BASIC_DELIVER_METHOD, d);
    t_header(&c->wr, n, 5);
    t_body(&c->wr, n, "hello", 5);
    assert_int_equal(t_up_wr(&c->f, &c->wr), 0);
}

static void expect_delivery(ctx_t *c, uint16_t n)
{
    expect_method(c, CLI(c), n, AMQP_BASIC_DELIVER_METHOD);
    expect_frame(c, CLI(c), BG_AMQP_FRAME_HEADER, n, 14);
    expect_frame(c, CLI(c), BG_AMQP_FRAME_BODY, n, 5);
}

static void on_refusal_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
}

/* The refusal timer has fired (no longer pending): as its callback would,
 * the overdue refusals go out. 1 when it is armed again. */
static int refusal_timer_fires(ctx_t *c)
{
    event_del(c->f.s.refusal_ev);
    bg_amqp_chan_send_overdue_refusals(&c->f.s);
    return event_pending(c->f.s.refusal_ev, EV_TIMEOUT, NULL) != 0;
}

/* A channel with a no-ack consumer: RabbitMQ counts each delivery delivered
 * as it sends it, so one dropped after the refusal went out would be lost.
 * The refusal waits for RabbitMQ's close-ok however long it takes (a
 * memory alarm), relaying the deliveries ahead of it; a no-ack consume
 * still awaiting its consume-ok counts too. The timer stays armed
 * meanwhile, so a later refusal on a manual-ack channel still goes out in
 * time. The loop's event base is never run: the test fires the timer. */
static void test_refusal_waits_for_close_ok_with_no_ack_consumer(void **state)
{
    ctx_t *c = *state;
    struct event_base *base = event_base_new();
    assert_non_null(base);
    c->f.s.refusal_ev = evtimer_new(base, on_refusal_timer, NULL);
    assert_non_null(c->f.s.refusal_ev);
    open_channel(c, 1);
    open_channel(c, 2);
    open_channel(c, 3);
    consume_as_live(c, 1, "ok.q", "A", 1);
    char t[64];
    consume_as(c, 2, "ok.q", "B", 0, 1, "", t, sizeof t); /* no consume-ok yet */
    c->f.now_ms = 1000;
    refuse_publish_pending(c, 1);
    refuse_publish_pending(c, 2);
    amqp_basic_deliver_t d = {t_str("A"), 1, 0, t_str(""), t_str("ok.q")};
    for (int i = 1; i <= 3; i++) {
        c->f.now_ms += BG_AMQP_REFUSAL_WAIT_MS;
        assert_true(refusal_timer_fires(c));
        expect_nothing(CLI(c));
        assert_int_equal(c->f.s.ndeferred, 2);
        d.delivery_tag = (uint64_t)i;
        deliver_whole(c, 1, &d);
        expect_delivery(c, 1);
        expect_nothing(CLI(c));
    }
    /* Channel 3 has no consumer: its refusal keeps the time limit. */
    refuse_publish_pending(c, 3);
    c->f.now_ms += BG_AMQP_REFUSAL_WAIT_MS;
    assert_true(refusal_timer_fires(c));
    expect_publish_refusal(c, 3);
    expect_nothing(CLI(c));
    assert_int_equal(c->f.s.ndeferred, 2);
    for (uint16_t n = 1; n <= 2; n++) {
        assert_int_equal(up(c, n, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 0);
        expect_publish_refusal(c, n);
        expect_nothing(CLI(c));
        assert_int_equal(cli(c, n, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 1);
        assert_int_equal(chan(c, n)->cli.state, BG_AMQP_LEG_CLOSED);
        assert_int_equal(chan(c, n)->up.state, BG_AMQP_LEG_CLOSED);
    }
    assert_int_equal(c->f.s.ndeferred, 0);
    assert_int_equal(c->f.closed, 0);
    event_free(c->f.s.refusal_ev);
    c->f.s.refusal_ev = NULL;
    event_base_free(base);
}

/* A manual-ack consumer keeps the time limit: its unacknowledged deliveries
 * go back to the queue when RabbitMQ closes the channel, so the refusal
 * goes out after BG_AMQP_REFUSAL_WAIT_MS and later deliveries are dropped. */
static void test_refusal_times_out_with_manual_ack_consumer(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    consume_as_live(c, 1, "ok.q", "A", 0);
    c->f.now_ms = 1000;
    refuse_publish_pending(c, 1);
    amqp_basic_deliver_t d = {t_str("A"), 1, 0, t_str(""), t_str("ok.q")};
    deliver_whole(c, 1, &d);
    expect_delivery(c, 1);
    c->f.now_ms += BG_AMQP_REFUSAL_WAIT_MS;
    bg_amqp_chan_send_overdue_refusals(&c->f.s);
    expect_publish_refusal(c, 1);
    assert_int_equal(c->f.s.ndeferred, 0);
    d.delivery_tag = 2;
    deliver_whole(c, 1, &d);
    expect_nothing(CLI(c));
    refusal_close_oks(c, 1);
}

/* The client closed channel n itself (relayed upstream): it discards
 * everything on the channel but close and close-ok (AMQP 0-9-1), and its
 * consumers are no longer decided again after a reload, so a delivery,
 * get-ok or return RabbitMQ sends before its close-ok is dropped whole;
 * the close-ok still comes through. */
static void test_client_close_drops_content(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    consume_live(c, 1, "ok.q", "A");
    amqp_channel_close_t cl = {200, t_str("bye"), 0, 0};
    assert_int_equal(cli(c, 1, AMQP_CHANNEL_CLOSE_METHOD, &cl), 1);
    expect_method(c, UP(c), 1, AMQP_CHANNEL_CLOSE_METHOD);
    amqp_basic_deliver_t d = {t_str("A"), 1, 0, t_str(""), t_str("ok.q")};
    deliver_whole(c, 1, &d);
    amqp_basic_get_ok_t g = {2, 0, t_str(""), t_str("ok.q"), 0};
    t_method(&c->wr, 1, AMQP_BASIC_GET_OK_METHOD, &g);
    t_header(&c->wr, 1, 0);
    amqp_basic_return_t r = {312, t_str("NO_ROUTE"), t_str("ok.x"), t_str("rk")};
    t_method(&c->wr, 1, AMQP_BASIC_RETURN_METHOD, &r);
    t_header(&c->wr, 1, 2);
    t_body(&c->wr, 1, "z", 1);
    t_body(&c->wr, 1, "z", 1);
    assert_int_equal(t_up_wr(&c->f, &c->wr), 0);
    expect_nothing(CLI(c));
    assert_int_equal(up(c, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 0);
    expect_method(c, CLI(c), 1, AMQP_CHANNEL_CLOSE_OK_METHOD);
    expect_nothing(CLI(c));
    assert_int_equal(chan(c, 1)->cli.state, BG_AMQP_LEG_CLOSED);
    assert_int_equal(chan(c, 1)->up.state, BG_AMQP_LEG_CLOSED);
    open_channel(c, 1);
    assert_int_equal(c->f.closed, 0);
}

/* A delivery already partly relayed when the client closes its channel
 * ends whole (no client may get a method between a command's content
 * frames); only the commands RabbitMQ starts after the close are dropped. */
static void test_client_close_mid_delivery_ends_it(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    consume_live(c, 1, "ok.q", "A");
    amqp_basic_deliver_t d = {t_str("A"), 1, 0, t_str(""), t_str("ok.q")};
    t_method(&c->wr, 1, AMQP_BASIC_DELIVER_METHOD, &d);
    t_header(&c->wr, 1, 6);
    t_body(&c->wr, 1, "abc", 3);
    assert_int_equal(t_up_wr(&c->f, &c->wr), 0);
    expect_method(c, CLI(c), 1, AMQP_BASIC_DELIVER_METHOD);
    expect_frame(c, CLI(c), BG_AMQP_FRAME_HEADER, 1, 14);
    expect_frame(c, CLI(c), BG_AMQP_FRAME_BODY, 1, 3);
    amqp_channel_close_t cl = {200, t_str("bye"), 0, 0};
    assert_int_equal(cli(c, 1, AMQP_CHANNEL_CLOSE_METHOD, &cl), 1);
    expect_method(c, UP(c), 1, AMQP_CHANNEL_CLOSE_METHOD);
    t_body(&c->wr, 1, "def", 3);
    assert_int_equal(t_up_wr(&c->f, &c->wr), 0);
    expect_frame(c, CLI(c), BG_AMQP_FRAME_BODY, 1, 3);
    d.delivery_tag = 2;
    deliver_whole(c, 1, &d);
    expect_nothing(CLI(c));
    assert_int_equal(up(c, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 0);
    expect_method(c, CLI(c), 1, AMQP_CHANNEL_CLOSE_OK_METHOD);
    expect_nothing(CLI(c));
    assert_int_equal(chan(c, 1)->cli.state, BG_AMQP_LEG_CLOSED);
}

/* Deliveries follow no client method: after a reload that no longer lets
 * the principal read a consumer's queue, the next delivery finds the
 * consumer decided again and its channel closed 403 (as a refused
 * basic.consume); the delivery is not relayed. Channels whose consumers are
 * still allowed carry on. Untagged nowait consumers are decided too. */
static void test_reload_decides_consumers_again(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    open_channel(c, 2);
    open_channel(c, 3);
    consume_live(c, 1, "ok.q", "A");
    consume_live(c, 2, "ok.keep", "K");
    consume(c, 3, "ok.r", "", 1); /* untagged nowait */
    int before = c->f.decisions;
    c->f.next_policy = policy_narrow;
    deliver(c, 2, "K"); /* the reload is noticed here: every consumer again */
    assert_int_equal(c->f.decisions, before + 2); /* the two refusals are audited */
    expect_consume_refused(c, 1);
    expect_consume_refused(c, 3);
    expect_method(c, CLI(c), 2, AMQP_BASIC_DELIVER_METHOD);
    expect_nothing(CLI(c));
    deliver(c, 1, "A"); /* on the refused channel: dropped */
    expect_nothing(CLI(c));
    assert_int_equal(chan(c, 2)->cli.state, BG_AMQP_LEG_OPEN);
    assert_int_equal(c->f.closed, 0);
}

/* A reload that renames the principal (its issuer's groups_prefix changed):
 * the consumers are decided again under the new name, which the policy
 * does not name, so they are refused; a reload that renames nothing keeps
 * them. */
static void test_reload_decides_under_the_new_names(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    consume_live(c, 1, "ok.q", "A");
    c->f.next_policy = policy; /* a reload, same policy, same names */
    deliver(c, 1, "A");
    t_header(&c->wr, 1, 0);
    assert_int_equal(t_up_wr(&c->f, &c->wr), 0);
    expect_method(c, CLI(c), 1, AMQP_BASIC_DELIVER_METHOD);
    expect_frame(c, CLI(c), BG_AMQP_FRAME_HEADER, 1, 14);
    expect_nothing(CLI(c));
    c->f.next_policy = policy;
    c->f.rename_group = "partner/apps";
    deliver(c, 1, "A");
    expect_consume_refused(c, 1);
    expect_nothing(CLI(c));
    assert_string_equal(c->f.s.principal.groups[0], "partner/apps");
}

/* A client that sent no user name is named by its principal name in reply
 * texts; a reload that renames the principal renames it there too (the
 * texts kept the name from before the reload). */
static void test_reload_rename_reaches_reply_texts(void **state)
{
    ctx_t *c = *state;
    snprintf(c->f.s.user, sizeof c->f.s.user, "%s", c->f.s.principal.sub);
    c->f.s.user_is_principal = 1;
    open_channel(c, 1);
    consume_live(c, 1, "ok.q", "A");
    c->f.next_policy = policy;
    c->f.rename_group = "partner/apps";
    c->f.rename_sub = "partner/svc-x";
    deliver(c, 1, "A");
    bg_amqp_method_t m = expect_method(c, CLI(c), 1, AMQP_CHANNEL_CLOSE_METHOD);
    const amqp_channel_close_t *cl = m.decoded;
    assert_int_equal(cl->reply_code, BG_AMQP_ACCESS_REFUSED);
    assert_non_null(memmem(cl->reply_text.bytes, cl->reply_text.len, "'partner/svc-x'", 15));
    assert_string_equal(c->f.s.user, "partner/svc-x");
}

/* A reload that removed the principal's issuer (its keys leaked) keeps the
 * connection, but every decision is busgate's deny: the consumers are
 * refused at the next delivery, in a text naming the reason, and so is a
 * new basic.consume the policy allows. A later reload that puts the issuer
 * back decides by the policy again. */
static void test_reload_removing_the_issuer_denies_everything(void **state)
{
    ctx_t *c = *state;
    static const char why[] = "the token's issuer is no longer configured";
    open_channel(c, 1);
    open_channel(c, 2);
    consume_live(c, 1, "ok.q", "A");
    int before = c->f.decisions;
    c->f.next_policy = policy; /* the same policy: only the issuer went */
    c->f.unvouched = why;
    deliver(c, 1, "A");
    assert_int_equal(c->f.decisions, before + 1);
    bg_amqp_method_t m = expect_method(c, CLI(c), 1, AMQP_CHANNEL_CLOSE_METHOD);
    const amqp_channel_close_t *cl = m.decoded;
    assert_int_equal(cl->reply_code, BG_AMQP_ACCESS_REFUSED);
    assert_int_equal(cl->method_id, 20);
    assert_non_null(memmem(cl->reply_text.bytes, cl->reply_text.len, "(busgate: ", 10));
    assert_non_null(memmem(cl->reply_text.bytes, cl->reply_text.len, why, strlen(why)));
    expect_method(c, UP(c), 1, AMQP_CHANNEL_CLOSE_METHOD);
    expect_nothing(CLI(c));
    amqp_basic_consume_t bc;
    memset(&bc, 0, sizeof bc);
    bc.queue = t_str("ok.q");
    bc.consumer_tag = t_str("B");
    assert_int_equal(cli(c, 2, AMQP_BASIC_CONSUME_METHOD, &bc), 1);
    m = expect_method(c, UP(c), 2, AMQP_CHANNEL_CLOSE_METHOD); /* not the consume */
    assert_int_equal(((amqp_channel_close_t *)m.decoded)->reply_code, 200);
    expect_nothing(UP(c));
    assert_int_equal(up(c, 2, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 0);
    m = expect_method(c, CLI(c), 2, AMQP_CHANNEL_CLOSE_METHOD);
    cl = m.decoded;
    assert_int_equal(cl->reply_code, BG_AMQP_ACCESS_REFUSED);
    assert_non_null(memmem(cl->reply_text.bytes, cl->reply_text.len, why, strlen(why)));
    assert_int_equal(c->f.decisions, before + 2);
    assert_int_equal(c->f.closed, 0);
    c->f.next_policy = policy; /* the issuer is back */
    c->f.unvouched = NULL;
    open_channel(c, 3);
    consume_live(c, 3, "ok.q", "C");
}

/* A reload noticed while the client is part-way through a publish body on
 * the consumer's channel. The client controls when that body ends, so the
 * consumer is refused at once: the 403 goes to the client and nothing more
 * RabbitMQ sends on the channel is relayed (not the delivery that revealed
 * the reload, nor later ones). RabbitMQ reads a message's content whole (a
 * cut would cost the whole connection, 505), so the rest of the forwarded
 * body still goes up, and busgate's close after its last frame; a close
 * RabbitMQ sends meanwhile is answered there too. A channel that already has
 * a refusal held back lets it go out at once. */
static void test_reload_during_publish_body_refuses_at_once(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    open_channel(c, 2);
    consume_live(c, 1, "ok.q", "A");
    publish_method(c, 1, "ok.x");
    t_header(&c->wr, 1, 10);
    t_body(&c->wr, 1, "abc", 3);
    assert_int_equal(t_client_wr(&c->f, &c->wr), 1);
    expect_method(c, UP(c), 1, AMQP_BASIC_PUBLISH_METHOD);
    expect_frame(c, UP(c), BG_AMQP_FRAME_HEADER, 1, 14);
    expect_frame(c, UP(c), BG_AMQP_FRAME_BODY, 1, 3);
    /* Channel 2: a refusal waiting for RabbitMQ's close-ok, and a consumer. */
    consume_live(c, 2, "ok.r", "R");
    refuse_publish_pending(c, 2);
    c->f.next_policy = policy_narrow;
    deliver(c, 1, "A");
    t_header(&c->wr, 1, 3);
    t_body(&c->wr, 1, "msg", 3);
    assert_int_equal(t_up_wr(&c->f, &c->wr), 0);
    expect_consume_refused_client_only(c, 1); /* at once; the delivery is dropped */
    expect_publish_refusal(c, 2);             /* let out at once: ok.r is refused now */
    expect_nothing(CLI(c));
    expect_nothing(UP(c)); /* busgate's close waits for the body */
    /* RabbitMQ delivers again and closes the channel itself, before it has
     * the body: nothing reaches the client, its close is answered later. */
    deliver(c, 1, "A");
    t_header(&c->wr, 1, 0);
    assert_int_equal(t_up_wr(&c->f, &c->wr), 0);
    amqp_channel_close_t ucl = {404, t_str("NOT_FOUND - no exchange 'ok.x'"), 60, 40};
    assert_int_equal(up(c, 1, AMQP_CHANNEL_CLOSE_METHOD, &ucl), 0);
    expect_nothing(CLI(c));
    expect_nothing(UP(c));
    /* The body whole, then busgate's close and its close-ok to RabbitMQ's. */
    t_body(&c->wr, 1, "defg", 4);
    t_body(&c->wr, 1, "hij", 3);
    assert_int_equal(t_client_wr(&c->f, &c->wr), 1);
    expect_frame(c, UP(c), BG_AMQP_FRAME_BODY, 1, 4);
    expect_frame(c, UP(c), BG_AMQP_FRAME_BODY, 1, 3);
    bg_amqp_method_t m = expect_method(c, UP(c), 1, AMQP_CHANNEL_CLOSE_METHOD);
    assert_int_equal(((amqp_channel_close_t *)m.decoded)->reply_code, 200);
    expect_method(c, UP(c), 1, AMQP_CHANNEL_CLOSE_OK_METHOD);
    expect_nothing(UP(c));
    both_closes_end_and_reopen(c, 1);
}

/* update-secret: the new token's groups may allow less, so the consumers
 * are decided again at once, whether or not the policy changed. */
static void test_update_secret_decides_consumers_again(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    consume_live(c, 1, "ok.q", "A");
    int before = c->f.decisions;
    amqp_bytes_t secret = t_str("token");
    bg_amqp_update_secret_t us = {secret, t_str("renewed")};
    assert_int_equal(cli(c, 0, BG_AMQP_CONNECTION_UPDATE_SECRET, &us), 1);
    assert_int_equal(c->f.update_secrets, 1);
    assert_int_equal(c->f.decisions, before); /* still allowed: nothing sent, nothing audited */
    expect_nothing(CLI(c));
    /* The same with a policy that no longer allows it: refused. */
    c->f.next_policy = policy_narrow;
    assert_int_equal(cli(c, 0, BG_AMQP_CONNECTION_UPDATE_SECRET, &us), 1);
    expect_consume_refused(c, 1);
}

/* A reload noticed at a client method on the very channel whose consumer
 * the new policy refuses: the channel is refused (busgate's channel.close
 * to both sides), and the method that arrived on it is neither decided nor
 * forwarded: it was sent on a channel that is closing. */
static void test_reload_at_a_method_on_the_refused_channel(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    consume_live(c, 1, "ok.q", "A");
    c->f.next_policy = policy_narrow;
    int before = c->f.decisions;
    amqp_queue_declare_t d;
    memset(&d, 0, sizeof d);
    d.queue = t_str("ok.keep"); /* allowed by the new policy too */
    d.passive = 1;
    assert_int_equal(cli(c, 1, AMQP_QUEUE_DECLARE_METHOD, &d), 1);
    assert_int_equal(c->f.decisions, before + 1); /* the consumer's refusal only */
    expect_consume_refused(c, 1);
    expect_nothing(UP(c));
    expect_nothing(CLI(c));
}

static void restart(ctx_t *c);

/* A reload noticed while the audit pipeline is not admitting (on_failure:
 * block, queue or spool full): a consumer the new policy refuses could not
 * have its decision recorded, so, as for a client method that needs a
 * decision then, the connection closes with 320 CONNECTION_FORCED (retry
 * later), with the refused basic.consume's class/method ids. Nothing more is
 * relayed and no event is emitted past the pipeline's refusal (it used to
 * be, and the channel was refused as if audited). Whether the reload shows
 * at a delivery or at the client's next method. A reload that refuses no
 * consumer needs no event and closes nothing. */
static void test_reload_while_audit_not_admitting(void **state)
{
    ctx_t *c = *state;
    for (int at_method = 0; at_method < 2; at_method++) {
        restart(c);
        open_channel(c, 1);
        open_channel(c, 2);
        consume_live(c, 1, "ok.keep", "K");
        consume_live(c, 2, "ok.q", "A"); /* decided before the audit stopped */
        c->f.admitting = 0;
        c->f.next_policy = policy; /* a reload that refuses nothing */
        deliver(c, 1, "K");
        expect_method(c, CLI(c), 1, AMQP_BASIC_DELIVER_METHOD);
        assert_int_equal(c->f.closed, 0);
        c->f.next_policy = policy_narrow; /* ok.keep still, ok.q no longer */
        int before = c->f.decisions;
        if (at_method) {
            amqp_queue_declare_t d;
            memset(&d, 0, sizeof d);
            d.queue = t_str("ok.keep");
            assert_int_equal(cli(c, 1, AMQP_QUEUE_DECLARE_METHOD, &d), -1);
        } else {
            amqp_basic_deliver_t d;
            memset(&d, 0, sizeof d);
            d.consumer_tag = t_str("A");
            d.exchange = t_str("");
            d.routing_key = t_str("k");
            assert_int_equal(up(c, 2, AMQP_BASIC_DELIVER_METHOD, &d), -1);
        }
        assert_closed_with(c, BG_AMQP_CONNECTION_FORCED,
                           "CONNECTION_FORCED - busgate cannot record audit events now; retry");
        assert_int_equal(c->f.close_class, 60);
        assert_int_equal(c->f.close_method, 20);
        assert_int_equal(c->f.decisions, before);
        expect_nothing(CLI(c));
        expect_nothing(UP(c));
    }
}

/* ---- direct reply-to and consumer tags ---- */

#define REPLY_TO "amq.rabbitmq.reply-to"

/* A fresh session in place of one a connection error ended. */
static void restart(ctx_t *c)
{
    static const char *const groups[] = {"apps"};
    t_fake_free(&c->f);
    t_fake_init(&c->f, policy, "alice", groups, 1, 16, BG_AMQP_CAPS_ALL);
}

/* A consume without a tag goes up with busgate's own, in RabbitMQ's form
 * (amq.ctag- and 22 base64url characters), a new one each time; the
 * consume-ok naming it reaches the client unchanged, so the client learns
 * the tag as it would from RabbitMQ. A tag the client names goes up as it
 * is. */
static void test_untagged_consume_gets_busgate_tag(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    char t1[64], t2[64], t3[64];
    consume_as(c, 1, "ok.q", "", 0, 0, "", t1, sizeof t1);
    consume_as(c, 1, "ok.q", "", 0, 0, "", t2, sizeof t2);
    consume_as(c, 1, "ok.q", "mine", 0, 0, "", t3, sizeof t3);
    const char *tags[] = {t1, t2};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(strlen(tags[i]), 31);
        assert_memory_equal(tags[i], "amq.ctag-", 9);
        for (const char *p = tags[i] + 9; *p; p++)
            assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                   "0123456789-_",
                                   *p));
    }
    assert_string_not_equal(t1, t2);
    assert_string_equal(t3, "mine");
    amqp_basic_consume_ok_t ok = {t_str(t2)};
    assert_int_equal(up(c, 1, AMQP_BASIC_CONSUME_OK_METHOD, &ok), 0);
    bg_amqp_method_t m = expect_method(c, CLI(c), 1, AMQP_BASIC_CONSUME_OK_METHOD);
    const amqp_basic_consume_ok_t *got = m.decoded;
    assert_int_equal(got->consumer_tag.len, 31);
    assert_memory_equal(got->consumer_tag.bytes, t2, 31);
    assert_consumer(c, 1, t2, "ok.q");
    assert_int_equal(chan(c, 1)->npending, 2);
    assert_int_equal(c->f.closed, 0);
}

/* A consume without a tag, re-encoded with busgate's tag: its other fields
 * (queue, flags, arguments) go up as they came. One whose payload would
 * then pass frame_max is refused on its channel (406, audited, nothing of it
 * sent); at exactly frame_max it goes up (RabbitMQ bounds the payload, not
 * the whole frame), and a tagged one is never re-encoded. */
static void test_untagged_consume_reencoded(void **state)
{
    ctx_t *c = *state;
    c->f.s.frame_max = 4096;
    static char pad[4096];
    memset(pad, 'p', sizeof pad);
    /* frame: 8 overhead + 4 ids + 2 reserved + 1+4 queue + 1 tag + 1 bits
     * + 4 table size + 1+5 key + 1 type + 4 length + pad = 36 + pad bytes. */
    static const struct {
        size_t pad;
        const char *tag;
        int refused;
    } cases[] = {
        {4104 - 36 - 31, "", 0}, /* a payload of 4096 with busgate's tag */
        {4104 - 36 - 30, "", 1}, /* 4097 */
        {4104 - 36 - 4, "mine", 0},
    };
    for (uint16_t i = 0; i < 3; i++) {
        uint16_t n = (uint16_t)(i + 1);
        open_channel(c, n);
        amqp_table_entry_t e;
        e.key = t_str("x-pad");
        e.value.kind = AMQP_FIELD_KIND_UTF8;
        e.value.value.bytes = (amqp_bytes_t){cases[i].pad, pad};
        amqp_basic_consume_t bc;
        memset(&bc, 0, sizeof bc);
        bc.queue = t_str("ok.q");
        bc.consumer_tag = t_str(cases[i].tag);
        bc.no_ack = 1;
        bc.exclusive = 1;
        bc.arguments = (amqp_table_t){1, &e};
        int before = c->f.decisions;
        assert_int_equal(cli(c, n, AMQP_BASIC_CONSUME_METHOD, &bc), 1);
        if (cases[i].refused) {
            assert_int_equal(c->f.decisions, before + 2);
            assert_int_equal(c->f.limit_code, BG_AMQP_PRECONDITION_FAILED);
            assert_int_equal(c->f.limit_method, AMQP_BASIC_CONSUME_METHOD);
            expect_method(c, UP(c), n, AMQP_CHANNEL_CLOSE_METHOD);
            expect_nothing(UP(c));
            assert_int_equal(up(c, n, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 0);
            bg_amqp_method_t m = expect_method(c, CLI(c), n, AMQP_CHANNEL_CLOSE_METHOD);
            const amqp_channel_close_t *cl = m.decoded;
            assert_int_equal(cl->reply_code, BG_AMQP_PRECONDITION_FAILED);
            assert_int_equal(cl->class_id, 60);
            assert_int_equal(cl->method_id, 20);
            assert_null(chan(c, n)->pending);
            continue;
        }
        bg_amqp_frame_t f;
        assert_true(t_next(UP(c), c->buf, sizeof c->buf, &f));
        assert_int_equal(f.size, 4096);
        bg_amqp_method_t m;
        assert_int_equal(t_decode(&c->f, &f, &m), 0);
        const amqp_basic_consume_t *got = m.decoded;
        assert_int_equal(got->queue.len, 4);
        assert_memory_equal(got->queue.bytes, "ok.q", 4);
        assert_int_equal(got->consumer_tag.len, i == 0 ? 31 : 4);
        assert_true(got->no_ack && got->exclusive && !got->nowait && !got->no_local);
        assert_int_equal(got->arguments.num_entries, 1);
        assert_int_equal(got->arguments.entries[0].value.value.bytes.len, cases[i].pad);
        assert_int_equal(chan(c, n)->npending, 1);
        expect_nothing(UP(c));
    }
    assert_int_equal(c->f.closed, 0);
}

/* Channel 1 with a queue consumer (ok.q) and the reply-to consumer, both
 * consumes sent untagged and pipelined, the reply-to consume's consume-ok
 * first (as RabbitMQ answers them); tq and tr (64 bytes) get their tags. */
static void queue_and_reply_to_consumers(ctx_t *c, char *tq, char *tr)
{
    open_channel(c, 1);
    consume_as(c, 1, "ok.q", "", 0, 0, "amq.ctag-rabbit-q", tq, 64);
    consume_as(c, 1, REPLY_TO, "", 0, 1, "amq.ctag-rabbit-r", tr, 64);
    consume_ok(c, 1, tr);
    consume_ok(c, 1, tq);
}

/* RabbitMQ answers a direct reply-to consume at once, ahead of the
 * consume-ok of a queue consume sent before it (measured on 3.10: always,
 * for pipelined consumes). With both sent without a tag, busgate used to
 * give the first consume-ok to the oldest untagged consume: the queue
 * consumer was tracked under the reply-to consumer's tag, so cancelling the
 * reply-to consumer forgot the queue consumer, and a reload that took read
 * on the queue away let its deliveries through. busgate now names both
 * itself, each consume-ok goes to the consume with its tag, and the reload
 * refuses the queue consumer. */
static void test_reply_to_consume_ok_overtaking(void **state)
{
    ctx_t *c = *state;
    char tq[64], tr[64];
    queue_and_reply_to_consumers(c, tq, tr);
    cancel(c, 1, tr, 0); /* the reply-to consumer ends */
    cancel_ok(c, 1, tr);
    c->f.next_policy = policy_narrow;
    deliver(c, 1, tq); /* ok.q is no longer readable */
    expect_consume_refused(c, 1);
    expect_nothing(CLI(c));
    assert_null(consumer_queue(c, 1, tr));
    assert_consumer(c, 1, tq, "ok.q");
}

/* The same, the other way round (RabbitMQ answers the cancel of the
 * reply-to consumer at once too): cancels of both, the reply-to's
 * cancel-ok overtaking the queue's; each ends its own consumer. */
static void test_reply_to_cancel_ok_overtaking(void **state)
{
    ctx_t *c = *state;
    char tq[64], tr[64];
    queue_and_reply_to_consumers(c, tq, tr);
    cancel(c, 1, tq, 0);
    cancel(c, 1, tr, 0);
    cancel_ok(c, 1, tr);
    assert_null(consumer_queue(c, 1, tr));
    assert_consumer(c, 1, tq, "ok.q"); /* until its own cancel-ok */
    cancel_ok(c, 1, tq);
    assert_null(chan(c, 1)->consumers);
    assert_int_equal(c->f.s.nconsumers, 0);
}

/* RabbitMQ keeps the direct reply-to consumer outside its consumer table,
 * so it lets a queue consumer take the reply-to consumer's tag, and a
 * cancel of that tag then ends the reply-to consumer: busgate forgot the
 * queue consumer instead, and a reload let its deliveries through. busgate
 * now refuses a basic.consume whose tag it tracks on the channel (a live
 * consumer, a consume awaiting its consume-ok, a consumer awaiting its
 * cancel-ok), as RabbitMQ refuses the reuse of a tag in its table: 530
 * NOT_ALLOWED, a connection error, class/method 60/20, nothing forwarded;
 * audited after the policy's allow as busgate's own deny. */
static void test_consumer_tag_reuse_refused(void **state)
{
    ctx_t *c = *state;
    static const struct {
        const char *what, *queue, *tag;
        int no_ack, nowait;
    } cases[] = {
        {"a live reply-to consumer's tag, on a queue", "ok.q", "T", 0, 0},
        {"a pending consume's tag, on reply-to", REPLY_TO, "T", 1, 0},
        {"a consumer awaiting its cancel-ok", "ok.r", "T", 0, 0},
        {"busgate's own tag", "ok.r", NULL, 0, 0},
        {"a nowait consumer's tag, nowait", "ok.q", "T", 0, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        restart(c);
        open_channel(c, 1);
        char t[64] = "T";
        switch (i) {
        case 0:
            consume_as(c, 1, REPLY_TO, "T", 0, 1, "", t, sizeof t);
            consume_ok(c, 1, "T");
            break;
        case 1: consume(c, 1, "ok.q", "T", 0); break;
        case 2:
            consume(c, 1, "ok.q", "T", 0);
            consume_ok(c, 1, "T");
            cancel(c, 1, "T", 0);
            break;
        case 3:
            consume_as(c, 1, "ok.q", "", 0, 0, "amq.ctag-rabbit", t, sizeof t);
            consume_ok(c, 1, t);
            break;
        default: consume(c, 1, "ok.q", "T", 1); break;
        }
        amqp_basic_consume_t bc;
        memset(&bc, 0, sizeof bc);
        bc.queue = t_str(cases[i].queue);
        bc.consumer_tag = t_str(cases[i].tag ? cases[i].tag : t);
        bc.no_ack = (amqp_boolean_t)cases[i].no_ack;
        bc.nowait = (amqp_boolean_t)cases[i].nowait;
        int before = c->f.decisions;
        int rc = cli(c, 1, AMQP_BASIC_CONSUME_METHOD, &bc);
        char want[128];
        snprintf(want, sizeof want, "NOT_ALLOWED - attempt to reuse consumer tag '%s'", t);
        if (rc != -1 || c->f.closed != 1 || c->f.close_code != BG_AMQP_NOT_ALLOWED ||
            strcmp(c->f.close_text, want) != 0)
            fail_msg("%s: rc %d, closed %d %u '%s', expected 530 '%s'", cases[i].what, rc,
                     c->f.closed, c->f.close_code, c->f.close_text, want);
        assert_int_equal(c->f.close_class, 60);
        assert_int_equal(c->f.close_method, 20);
        expect_nothing(UP(c));
        assert_int_equal(c->f.decisions, before + 2);
        assert_int_equal(c->f.limit_code, BG_AMQP_NOT_ALLOWED);
        assert_int_equal(c->f.limit_method, AMQP_BASIC_CONSUME_METHOD);
        assert_string_equal(c->f.limit_name, cases[i].queue);
    }
    /* A tag is free again once its cancel-ok came (with nowait too: that
     * cancel-ok is not relayed). */
    restart(c);
    open_channel(c, 1);
    consume_live(c, 1, "ok.q", "T");
    cancel(c, 1, "T", 0);
    cancel_ok(c, 1, "T");
    consume(c, 1, REPLY_TO, "T", 1);
    cancel_nowait_tracked(c, 1, t_str("T"));
    cancel_ok_quiet(c, 1, t_str("T"));
    consume(c, 1, "ok.r", "T", 0);
    assert_int_equal(c->f.closed, 0);
}

/* A basic.cancel RabbitMQ sent for a consumer (its queue deleted) can still
 * be on its way when the client cancels the same consumer with nowait and
 * takes the tag again. busgate used to forget the consumer at the nowait
 * cancel, track the new one under the tag, and then let the late
 * basic.cancel end the new one in its table: it was not decided again after
 * a reload. Now the nowait cancel goes up as a waiting one, the tag stays
 * taken until its cancel-ok (reuse before: 530), and the late basic.cancel
 * ends nothing busgate must still decide. */
static void test_stale_server_cancel_after_nowait_cancel(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    consume_live(c, 1, "ok.q", "T");
    cancel_nowait_tracked(c, 1, t_str("T"));
    /* the client takes the tag again at once: refused, never forwarded */
    amqp_basic_consume_t bc;
    memset(&bc, 0, sizeof bc);
    bc.queue = t_str("ok.r");
    bc.consumer_tag = t_str("T");
    bc.nowait = 1;
    assert_int_equal(cli(c, 1, AMQP_BASIC_CONSUME_METHOD, &bc), -1);
    assert_int_equal(c->f.close_code, BG_AMQP_NOT_ALLOWED);
    expect_nothing(UP(c));

    /* In order: the late basic.cancel (relayed, the client asked for
     * notifications), then the cancel-ok (kept back); then the tag is free. */
    restart(c);
    open_channel(c, 1);
    consume_live(c, 1, "ok.q", "T");
    cancel_nowait_tracked(c, 1, t_str("T"));
    amqp_basic_cancel_t sc = {t_str("T"), 1};
    assert_int_equal(up(c, 1, AMQP_BASIC_CANCEL_METHOD, &sc), 0);
    expect_method(c, CLI(c), 1, AMQP_BASIC_CANCEL_METHOD);
    assert_string_equal(consumer_queue(c, 1, "T"), "ok.q"); /* until the cancel-ok */
    cancel_ok_quiet(c, 1, t_str("T"));
    assert_null(consumer_queue(c, 1, "T"));
    consume(c, 1, "ok.r", "T", 1);
    /* a later reload decides the ok.r consumer */
    c->f.next_policy = policy_narrow;
    deliver(c, 1, "T");
    expect_consume_refused(c, 1);
}

/* A refusal waiting for RabbitMQ's close-ok lets through what RabbitMQ sent
 * before it saw busgate's close; such methods are tracked as on an open
 * channel. The cancel-ok of a nowait cancel (sent up as a waiting one) used
 * to be relayed then, untracked: the client, which asked for none, took it
 * as the answer to its next call, and the consumer stayed counted. Now it
 * is kept back and ends the consumer; a waiting cancel's cancel-ok, a
 * basic.cancel from RabbitMQ and a declare-ok are relayed and counted. */
static void test_quiet_cancel_ok_during_deferred_refusal(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    consume_live(c, 1, "ok.q", "T1");
    consume_live(c, 1, "ok.r", "T2");
    consume_live(c, 1, "ok.s", "T3");
    cancel_nowait_tracked(c, 1, t_str("T1"));
    cancel(c, 1, "T2", 0);
    declare(c, 1, "ok.d", 0, 0);
    refuse_publish_pending(c, 1);
    cancel_ok_quiet(c, 1, t_str("T1"));
    assert_null(consumer_queue(c, 1, "T1"));
    cancel_ok(c, 1, "T2");
    assert_null(consumer_queue(c, 1, "T2"));
    amqp_basic_cancel_t sc = {t_str("T3"), 1}; /* ok.s deleted */
    assert_int_equal(up(c, 1, AMQP_BASIC_CANCEL_METHOD, &sc), 0);
    expect_method(c, CLI(c), 1, AMQP_BASIC_CANCEL_METHOD);
    assert_null(consumer_queue(c, 1, "T3"));
    assert_int_equal(c->f.s.nconsumers, 0);
    declare_ok(c, 1, "ok.d");
    assert_int_equal(chan(c, 1)->declares_waiting, 0);
    assert_int_equal(up(c, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 0);
    expect_publish_refusal(c, 1);
    expect_nothing(CLI(c));
    assert_int_equal(c->f.closed, 0);
}

/* RabbitMQ answers a cancel of a tag it does not know with a cancel-ok.
 * That cancel-ok ends nothing: here a nowait consume takes the tag after
 * the cancel (live at once), and the cancel-ok must leave it tracked, so a
 * reload still refuses it (busgate used to forget it there). */
static void test_stray_cancel_ok_keeps_live_consumer(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    cancel(c, 1, "T", 0);
    consume(c, 1, "ok.q", "T", 1);
    cancel_ok(c, 1, "T");
    assert_consumer(c, 1, "T", "ok.q");
    c->f.next_policy = policy_narrow;
    deliver(c, 1, "T");
    expect_consume_refused(c, 1);
    expect_nothing(CLI(c));
}

/* RabbitMQ's basic.cancel (the queue went away) names queue consumers only,
 * never the direct reply-to consumer, which has no queue: one naming the
 * reply-to consumer's tag ends nothing (fail closed). One naming a consume
 * whose consume-ok has not come yet ends it when the consume-ok comes. */
static void test_server_cancel_and_reply_to(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    consume_live(c, 1, REPLY_TO, "R");
    amqp_basic_cancel_t cn = {t_str("R"), 1};
    assert_int_equal(up(c, 1, AMQP_BASIC_CANCEL_METHOD, &cn), 0);
    expect_method(c, CLI(c), 1, AMQP_BASIC_CANCEL_METHOD);
    assert_consumer(c, 1, "R", REPLY_TO);
    consume(c, 1, "ok.q", "Q", 0);
    cn.consumer_tag = t_str("Q");
    assert_int_equal(up(c, 1, AMQP_BASIC_CANCEL_METHOD, &cn), 0);
    expect_method(c, CLI(c), 1, AMQP_BASIC_CANCEL_METHOD);
    consume_ok(c, 1, "Q");
    assert_null(consumer_queue(c, 1, "Q"));
    assert_int_equal(chan(c, 1)->npending, 0);
    assert_int_equal(c->f.s.nconsumers, 1);
}

/* nowait consumes with no tag: busgate names them too, so each is tracked
 * under its own tag at once (and ends like any other, here by RabbitMQ's
 * cancel notification), and they count against the bound. */
static void test_untagged_nowait_consumes_tracked(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    char t[64];
    consume_as(c, 1, "ok.q", "", 1, 0, "", t, sizeof t);
    assert_true(strlen(t) > 0); /* never forwarded without a tag */
    assert_consumer(c, 1, t, "ok.q");
    amqp_basic_cancel_t cn = {t_str(t), 1};
    assert_int_equal(up(c, 1, AMQP_BASIC_CANCEL_METHOD, &cn), 0);
    expect_method(c, CLI(c), 1, AMQP_BASIC_CANCEL_METHOD);
    assert_null(consumer_queue(c, 1, t));
    assert_int_equal(c->f.s.nconsumers, 0);
    for (int i = 0; i < BG_AMQP_MAX_CONSUMERS; i++)
        consume(c, 1, "ok.q", "", 1);
    assert_int_equal(chan(c, 1)->nconsumers, BG_AMQP_MAX_CONSUMERS);
    assert_int_equal(c->f.s.nconsumers, BG_AMQP_MAX_CONSUMERS);
    amqp_basic_consume_t bc;
    memset(&bc, 0, sizeof bc);
    bc.queue = t_str("ok.q");
    bc.nowait = 1;
    assert_int_equal(cli(c, 1, AMQP_BASIC_CONSUME_METHOD, &bc), -1);
    assert_closed_with(c, BG_AMQP_NOT_ALLOWED,
                       "NOT_ALLOWED - reached maximum (1024) of consumers per channel");
}

/* Consumer tags are shortstrs: a NUL is a byte like any other. Tags that
 * differ only after a NUL are different consumers, and a tag with a NUL is
 * matched whole by its consume-ok and its cancel-ok, so consume + cancel
 * leaves nothing tracked: 1025 rounds stay below the per-channel bound
 * (cut at the NUL, every round left an entry behind and the 1025th consume
 * was refused 530). */
static void test_consumer_tags_with_nul(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    char tag[32];
    for (int i = 0; i <= BG_AMQP_MAX_CONSUMERS; i++) {
        int n = snprintf(tag, sizeof tag, "t%c%d", 0, i);
        amqp_bytes_t t = {(size_t)n, tag};
        amqp_basic_consume_t bc;
        memset(&bc, 0, sizeof bc);
        bc.queue = t_str("ok.q");
        bc.consumer_tag = t;
        assert_int_equal(cli(c, 1, AMQP_BASIC_CONSUME_METHOD, &bc), 1);
        expect_method(c, UP(c), 1, AMQP_BASIC_CONSUME_METHOD);
        amqp_basic_consume_ok_t ok = {t};
        assert_int_equal(up(c, 1, AMQP_BASIC_CONSUME_OK_METHOD, &ok), 0);
        expect_method(c, CLI(c), 1, AMQP_BASIC_CONSUME_OK_METHOD);
        assert_int_equal(chan(c, 1)->npending, 0);
        assert_int_equal(chan(c, 1)->nconsumers, 1);
        assert_int_equal(chan(c, 1)->consumers->tag_len, (size_t)n);
        amqp_basic_cancel_t cn = {t, 0};
        assert_int_equal(cli(c, 1, AMQP_BASIC_CANCEL_METHOD, &cn), 1);
        expect_method(c, UP(c), 1, AMQP_BASIC_CANCEL_METHOD);
        amqp_basic_cancel_ok_t cok = {t};
        assert_int_equal(up(c, 1, AMQP_BASIC_CANCEL_OK_METHOD, &cok), 0);
        expect_method(c, CLI(c), 1, AMQP_BASIC_CANCEL_OK_METHOD);
        assert_int_equal(chan(c, 1)->nconsumers, 0);
        assert_int_equal(c->f.s.nconsumers, 0);
    }
    /* "t\0a" and "t\0b" are two consumers; cancelling one keeps the other. */
    amqp_bytes_t a = {3, "t\0a"}, b = {3, "t\0b"};
    amqp_basic_consume_t bc;
    memset(&bc, 0, sizeof bc);
    bc.queue = t_str("ok.q");
    bc.nowait = 1;
    bc.consumer_tag = a;
    assert_int_equal(cli(c, 1, AMQP_BASIC_CONSUME_METHOD, &bc), 1);
    expect_method(c, UP(c), 1, AMQP_BASIC_CONSUME_METHOD);
    bc.consumer_tag = b;
    assert_int_equal(cli(c, 1, AMQP_BASIC_CONSUME_METHOD, &bc), 1);
    expect_method(c, UP(c), 1, AMQP_BASIC_CONSUME_METHOD);
    assert_int_equal(chan(c, 1)->nconsumers, 2);
    cancel_nowait_tracked(c, 1, a);
    cancel_ok_quiet(c, 1, a);
    assert_int_equal(chan(c, 1)->nconsumers, 1);
    assert_memory_equal(chan(c, 1)->consumers->tag, "t\0b", 3);
    assert_int_equal(c->f.closed, 0);
}

/* 1024 consumers on channel n, half awaiting their consume-ok, half nowait. */
static void fill_channel(ctx_t *c, uint16_t n)
{
    char tag[32];
    for (int i = 0; i < BG_AMQP_MAX_CONSUMERS; i++) {
        snprintf(tag, sizeof tag, "t%d", i);
        consume(c, n, "ok.q", tag, i % 2);
    }
    assert_int_equal(chan(c, n)->nconsumers + chan(c, n)->npending, BG_AMQP_MAX_CONSUMERS);
}

/* The consume after the channel's 1024th is refused as RabbitMQ refuses one
 * beyond its consumer_max_per_channel (530, a connection error), decided
 * first and then audited as busgate's own deny, as every refusal busgate
 * makes itself (it used to be refused before any decision, and left no
 * decision event). A consume the policy denies is the policy's refusal. */
static void test_consumer_bound_per_channel(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    fill_channel(c, 1);
    amqp_basic_consume_t bc;
    memset(&bc, 0, sizeof bc);
    bc.queue = t_str("ok.q");
    int before = c->f.decisions;
    assert_int_equal(cli(c, 1, AMQP_BASIC_CONSUME_METHOD, &bc), -1);
    assert_closed_with(c, BG_AMQP_NOT_ALLOWED,
                       "NOT_ALLOWED - reached maximum (1024) of consumers per channel");
    assert_int_equal(c->f.close_class, 60);
    assert_int_equal(c->f.close_method, 20);
    expect_nothing(UP(c));
    assert_int_equal(c->f.decisions, before + 2); /* the policy's allow, busgate's deny */
    assert_int_equal(c->f.limit_code, BG_AMQP_NOT_ALLOWED);
    assert_int_equal(c->f.limit_method, AMQP_BASIC_CONSUME_METHOD);
    assert_string_equal(c->f.limit_name, "ok.q");

    restart(c);
    open_channel(c, 1);
    fill_channel(c, 1);
    bc.queue = t_str("ok.secret-q");
    before = c->f.decisions;
    assert_int_equal(cli(c, 1, AMQP_BASIC_CONSUME_METHOD, &bc), 1);
    assert_int_equal(c->f.decisions, before + 1);
    assert_int_equal(c->f.closed, 0);
    bg_amqp_method_t m = expect_method(c, UP(c), 1, AMQP_CHANNEL_CLOSE_METHOD);
    assert_int_equal(((amqp_channel_close_t *)m.decoded)->reply_code, 200);
}

static void test_consumer_bound_per_connection(void **state)
{
    ctx_t *c = *state;
    const int per = BG_AMQP_MAX_CONSUMERS_CONN / BG_AMQP_MAX_CONSUMERS + 1;
    int n = 0;
    char tag[32];
    for (uint16_t ch = 1; n < BG_AMQP_MAX_CONSUMERS_CONN; ch++) {
        open_channel(c, ch);
        for (int i = 0; i < BG_AMQP_MAX_CONSUMERS_CONN / per && n < BG_AMQP_MAX_CONSUMERS_CONN;
             i++, n++) {
            snprintf(tag, sizeof tag, "t%d", n);
            consume(c, ch, "ok.q", tag, 1);
        }
    }
    assert_int_equal(c->f.s.nconsumers, BG_AMQP_MAX_CONSUMERS_CONN);
    /* Cancelling one makes room for one. */
    amqp_basic_cancel_t cn = {t_str("t0"), 0};
    assert_int_equal(cli(c, 1, AMQP_BASIC_CANCEL_METHOD, &cn), 1);
    expect_method(c, UP(c), 1, AMQP_BASIC_CANCEL_METHOD);
    amqp_basic_cancel_ok_t cnok = {t_str("t0")};
    assert_int_equal(up(c, 1, AMQP_BASIC_CANCEL_OK_METHOD, &cnok), 0);
    expect_method(c, CLI(c), 1, AMQP_BASIC_CANCEL_OK_METHOD);
    consume(c, 1, "ok.q", "again", 0);
    /* Closing a channel gives its consumers back (the sanitizer checks leaks). */
    size_t on1 = chan(c, 1)->nconsumers + chan(c, 1)->npending;
    amqp_channel_close_t ucl = {320, t_str("CONNECTION_FORCED"), 0, 0};
    assert_int_equal(up(c, 1, AMQP_CHANNEL_CLOSE_METHOD, &ucl), 0);
    expect_method(c, CLI(c), 1, AMQP_CHANNEL_CLOSE_METHOD);
    assert_int_equal(cli(c, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 1);
    expect_method(c, UP(c), 1, AMQP_CHANNEL_CLOSE_OK_METHOD);
    assert_int_equal(c->f.s.nconsumers, BG_AMQP_MAX_CONSUMERS_CONN - on1);
    open_channel(c, 1);
    for (size_t i = 0; i < on1; i++) {
        snprintf(tag, sizeof tag, "u%zu", i);
        consume(c, 1, "ok.q", tag, 0);
    }
    amqp_basic_consume_t bc;
    memset(&bc, 0, sizeof bc);
    bc.queue = t_str("ok.q");
    uint16_t last = 0;
    for (uint16_t ch = 1; ch < 16 && chan(c, ch); ch++)
        last = ch;
    open_channel(c, (uint16_t)(last + 1));
    int before = c->f.decisions;
    assert_int_equal(cli(c, (uint16_t)(last + 1), AMQP_BASIC_CONSUME_METHOD, &bc), -1);
    assert_closed_with(c, BG_AMQP_NOT_ALLOWED,
                       "NOT_ALLOWED - reached maximum (4096) of consumers per connection");
    expect_nothing(UP(c));
    assert_int_equal(c->f.decisions, before + 2); /* the policy's allow, busgate's deny */
    assert_int_equal(c->f.limit_code, BG_AMQP_NOT_ALLOWED);
    assert_string_equal(c->f.limit_name, "ok.q");
}

/* ---- upstream connection-class frames ---- */

static void test_blocked_relayed_with_capability(void **state)
{
    ctx_t *c = *state;
    amqp_connection_blocked_t b = {t_str("low on memory")};
    assert_int_equal(up(c, 0, AMQP_CONNECTION_BLOCKED_METHOD, &b), 0);
    expect_method(c, CLI(c), 0, AMQP_CONNECTION_BLOCKED_METHOD);
    assert_int_equal(up(c, 0, AMQP_CONNECTION_UNBLOCKED_METHOD, NULL), 0);
    expect_method(c, CLI(c), 0, AMQP_CONNECTION_UNBLOCKED_METHOD);
}

static void test_blocked_dropped_without_capability(void **state)
{
    ctx_t *c = *state;
    amqp_connection_blocked_t b = {t_str("low on memory")};
    assert_int_equal(up(c, 0, AMQP_CONNECTION_BLOCKED_METHOD, &b), 0);
    assert_int_equal(up(c, 0, AMQP_CONNECTION_UNBLOCKED_METHOD, NULL), 0);
    expect_nothing(CLI(c));
    assert_int_equal(c->f.closed, 0);
}

/* RabbitMQ's consumer cancel notification (its queue was deleted) ends the
 * consumer in busgate's count; a client that did not ask for such
 * notifications does not get it (busgate asks RabbitMQ for them always). */
static void test_server_cancel_without_capability(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    consume_live(c, 1, "ok.q", "t1");
    assert_int_equal(chan(c, 1)->nconsumers, 1);
    size_t before = c->f.s.nconsumers;
    amqp_basic_cancel_t cn = {t_str("t1"), 1};
    assert_int_equal(up(c, 1, AMQP_BASIC_CANCEL_METHOD, &cn), 0);
    expect_nothing(CLI(c));
    assert_int_equal(chan(c, 1)->nconsumers, 0);
    assert_int_equal(c->f.s.nconsumers, before - 1);
    assert_int_equal(c->f.closed, 0);
}

static void test_upstream_connection_close(void **state)
{
    ctx_t *c = *state;
    amqp_connection_close_t cl = {320, t_str("CONNECTION_FORCED - broker forced"), 0, 0};
    assert_int_equal(up(c, 0, AMQP_CONNECTION_CLOSE_METHOD, &cl), -1);
    expect_method(c, CLI(c), 0, AMQP_CONNECTION_CLOSE_METHOD);
    expect_method(c, UP(c), 0, AMQP_CONNECTION_CLOSE_OK_METHOD);
    assert_int_equal(c->f.awaiting_close_ok, 1);
}

/* The broker's close is noted for the log and session_end, its text as the
 * client gets it. */
static void test_upstream_connection_close_noted(void **state)
{
    ctx_t *c = *state;
    amqp_connection_close_t cl = {320, t_str("CONNECTION_FORCED - Closed via management plugin"),
                                  0, 0};
    assert_int_equal(up(c, 0, AMQP_CONNECTION_CLOSE_METHOD, &cl), -1);
    assert_int_equal(c->f.broker_close_code, 320);
    assert_string_equal(c->f.broker_close_text, "CONNECTION_FORCED - Closed via management plugin");
    expect_method(c, CLI(c), 0, AMQP_CONNECTION_CLOSE_METHOD);
}

/* A frame from the broker that fits no state busgate tracks is not
 * relayed: the client gets 320 "malformed frame from the broker", as for a
 * method busgate cannot decode. One case per kind. */
static void t_broker_error(ctx_t *c, const char *why)
{
    assert_int_equal(c->f.closed, 1);
    assert_int_equal(c->f.close_code, 320);
    assert_string_equal(c->f.close_text, "CONNECTION_FORCED - malformed frame from the broker");
    if (strncmp(c->f.broker_error, why, strlen(why)) != 0)
        fail_msg("broker error '%s', expected '%s...'", c->f.broker_error, why);
    expect_nothing(CLI(c));
}

static void test_upstream_deliver_on_unopened_channel(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    amqp_basic_deliver_t d = {t_str("ctag"), 1, 0, t_str(""), t_str("fk.q")};
    assert_int_equal(up(c, 5, AMQP_BASIC_DELIVER_METHOD, &d), -1);
    t_broker_error(c, "method on a channel that is not open (frame type 1, channel 5)");
}

static void test_upstream_channel_close_on_unopened_channel(void **state)
{
    ctx_t *c = *state;
    amqp_channel_close_t cl = {404, t_str("NOT_FOUND"), 50, 10};
    assert_int_equal(up(c, 7, AMQP_CHANNEL_CLOSE_METHOD, &cl), -1);
    t_broker_error(c, "method on a channel that is not open");
}

/* The channel was open and both legs closed (the client's close, confirmed):
 * RabbitMQ sends nothing more on it. */
static void test_upstream_frame_after_channel_closed(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 2);
    amqp_channel_close_t cl = {200, t_str("bye"), 0, 0};
    assert_int_equal(cli(c, 2, AMQP_CHANNEL_CLOSE_METHOD, &cl), 1);
    expect_method(c, UP(c), 2, AMQP_CHANNEL_CLOSE_METHOD);
    assert_int_equal(up(c, 2, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 0);
    expect_method(c, CLI(c), 2, AMQP_CHANNEL_CLOSE_OK_METHOD);
    amqp_basic_ack_t a = {1, 0};
    assert_int_equal(up(c, 2, AMQP_BASIC_ACK_METHOD, &a), -1);
    t_broker_error(c, "method on a channel that is not open");
}

static void test_upstream_content_without_delivery(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    t_header(&c->wr, 1, 3);
    assert_int_equal(t_up_wr(&c->f, &c->wr), -1);
    t_broker_error(c, "content frame with no delivery pending (frame type 2, channel 1)");
}

static void test_upstream_body_before_header(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    amqp_basic_deliver_t d = {t_str("ctag"), 1, 0, t_str(""), t_str("ok.q")};
    assert_int_equal(up(c, 1, AMQP_BASIC_DELIVER_METHOD, &d), 0);
    expect_method(c, CLI(c), 1, AMQP_BASIC_DELIVER_METHOD);
    t_body(&c->wr, 1, "abc", 3);
    assert_int_equal(t_up_wr(&c->f, &c->wr), -1);
    t_broker_error(c, "content body before its header");
}

static void test_upstream_unknown_method(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    static const uint8_t unknown[] = {1, 0, 1, 0, 0, 0, 7, 0, 99, 0, 1, 'x', 'y', 'z', 0xCE};
    assert_int_equal(t_up(&c->f, unknown, sizeof unknown), -1);
    t_broker_error(c, "unknown method (frame type 1, channel 1)");
}

/* Whether the bytes b are the text want. */
static int t_text_is(amqp_bytes_t b, const char *want)
{
    return b.len == strlen(want) && memcmp(b.bytes, want, b.len) == 0;
}

/* RabbitMQ names its user, busgate's, in refusals: the client gets the
 * close (channel or connection) with that name taken out, and the rest of
 * the text, the code and the ids as RabbitMQ sent them. A text that does
 * not name it is relayed untouched. */
static void test_upstream_user_unnamed_in_closes(void **state)
{
    ctx_t *c = *state;
    c->f.cfg.amqp.upstream.username = (char *)"svc-busgate";
    open_channel(c, 3);
    amqp_channel_close_t cl = {403,
                               t_str("ACCESS_REFUSED - access to queue 'q1' in vhost '/' refused "
                                     "for user 'svc-busgate'"),
                               50, 10};
    assert_int_equal(up(c, 3, AMQP_CHANNEL_CLOSE_METHOD, &cl), 0);
    bg_amqp_method_t m = expect_method(c, CLI(c), 3, AMQP_CHANNEL_CLOSE_METHOD);
    const amqp_channel_close_t *got = m.decoded;
    assert_int_equal(got->reply_code, 403);
    assert_int_equal(got->class_id, 50);
    assert_int_equal(got->method_id, 10);
    assert_true(t_text_is(got->reply_text, "ACCESS_REFUSED - access to queue 'q1' in vhost '/' "
                                           "refused for busgate's upstream user"));
    assert_true(chan(c, 3)->cli.sent && chan(c, 3)->up.got); /* relayed as RabbitMQ's close */
    assert_int_equal(cli(c, 3, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 1);
    expect_method(c, UP(c), 3, AMQP_CHANNEL_CLOSE_OK_METHOD);
    /* Another text with the name alone, and one without it. */
    open_channel(c, 4);
    cl = (amqp_channel_close_t){406, t_str("PRECONDITION_FAILED - user 'x' is not 'svc-busgate'"),
                                60, 40};
    assert_int_equal(up(c, 4, AMQP_CHANNEL_CLOSE_METHOD, &cl), 0);
    m = expect_method(c, CLI(c), 4, AMQP_CHANNEL_CLOSE_METHOD);
    assert_true(t_text_is(((amqp_channel_close_t *)m.decoded)->reply_text,
                          "PRECONDITION_FAILED - user 'x' is not 'busgate's upstream user'"));
    assert_int_equal(cli(c, 4, AMQP_CHANNEL_CLOSE_OK_METHOD, NULL), 1);
    expect_method(c, UP(c), 4, AMQP_CHANNEL_CLOSE_OK_METHOD);
    open_channel(c, 5);
    cl = (amqp_channel_close_t){404, t_str("NOT_FOUND - no queue 'svc-busgate-q'"), 50, 10};
    assert_int_equal(up(c, 5, AMQP_CHANNEL_CLOSE_METHOD, &cl), 0);
    m = expect_method(c, CLI(c), 5, AMQP_CHANNEL_CLOSE_METHOD);
    assert_true(t_text_is(((amqp_channel_close_t *)m.decoded)->reply_text,
                          "NOT_FOUND - no queue 'svc-busgate-q'"));
    amqp_connection_close_t cc = {530,
                                  t_str("NOT_ALLOWED - number of channels opened for user "
                                        "'svc-busgate' has reached the maximum allowed limit of (2)"),
                                  0, 0};
    assert_int_equal(up(c, 0, AMQP_CONNECTION_CLOSE_METHOD, &cc), -1);
    m = expect_method(c, CLI(c), 0, AMQP_CONNECTION_CLOSE_METHOD);
    assert_true(t_text_is(((amqp_connection_close_t *)m.decoded)->reply_text,
                          "NOT_ALLOWED - number of channels opened for busgate's upstream user "
                          "has reached the maximum allowed limit of (2)"));
    expect_method(c, UP(c), 0, AMQP_CONNECTION_CLOSE_OK_METHOD);
}

/* ---- client connection-class and invalid methods ---- */

static void test_client_connection_close(void **state)
{
    ctx_t *c = *state;
    amqp_connection_close_t cl = {200, t_str("bye"), 0, 0};
    assert_int_equal(cli(c, 0, AMQP_CONNECTION_CLOSE_METHOD, &cl), -1);
    /* the close goes upstream behind everything sent before it; the client's
     * close-ok waits for the broker's (the session answers it then) */
    expect_method(c, UP(c), 0, AMQP_CONNECTION_CLOSE_METHOD);
    expect_nothing(CLI(c));
    assert_int_equal(c->f.s.state, BG_AMQP_S_CLOSING_UP);
    assert_false(c->f.killed);
}

static void test_update_secret_while_running(void **state)
{
    ctx_t *c = *state;
    bg_amqp_update_secret_t us = {t_str("a.b.c"), t_str("refresh")};
    assert_int_equal(cli(c, 0, BG_AMQP_CONNECTION_UPDATE_SECRET, &us), 1);
    assert_int_equal(c->f.update_secrets, 1);
    expect_nothing(UP(c)); /* the client's token never goes upstream */
}

/* As RabbitMQ's reader: a connection method out of place on channel 0 is
 * 504 CHANNEL_ERROR naming it, a client method (tune-ok, close-ok) or a
 * server one (connection.blocked) alike. */
static void test_connection_method_out_of_place(void **state)
{
    ctx_t *c = *state;
    amqp_connection_tune_ok_t t = {10, 131072, 0};
    assert_int_equal(cli(c, 0, AMQP_CONNECTION_TUNE_OK_METHOD, &t), -1);
    assert_closed_with(c, BG_AMQP_CHANNEL_ERROR,
                       "CHANNEL_ERROR - unexpected method in connection state running");
    assert_int_equal(c->f.close_class, 10);
    assert_int_equal(c->f.close_method, 31);
    expect_nothing(UP(c));
    teardown(state);
    setup(state);
    c = *state;
    assert_int_equal(cli(c, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, NULL), -1);
    assert_closed_with(c, BG_AMQP_CHANNEL_ERROR, "CHANNEL_ERROR - unexpected method");
    assert_int_equal(c->f.close_method, 51);
    teardown(state);
    setup(state);
    c = *state;
    amqp_connection_blocked_t b = {t_str("x")};
    assert_int_equal(cli(c, 0, AMQP_CONNECTION_BLOCKED_METHOD, &b), -1);
    assert_closed_with(c, BG_AMQP_CHANNEL_ERROR, "CHANNEL_ERROR - unexpected method");
    assert_int_equal(c->f.close_method, 60);
    expect_nothing(UP(c));
}

static void test_server_method_from_client(void **state)
{
    ctx_t *c = *state;
    open_channel(c, 1);
    amqp_basic_consume_ok_t ok = {t_str("x")};
    assert_int_equal(cli(c, 1, AMQP_BASIC_CONSUME_OK_METHOD, &ok), -1);
    assert_closed_with(c, BG_AMQP_COMMAND_INVALID, "COMMAND_INVALID");
    assert_int_equal(c->f.close_class, 60);
    assert_int_equal(c->f.close_method, 21);
    expect_nothing(UP(c));
}

/* Hand-made method frames busgate must refuse, each with the code its
 * reply text names and RabbitMQ's class/method ids (the method's, when it
 * is a known one; RabbitMQ 3.10 answers each the same way). */
static void test_malformed_methods(void **state)
{
    static const struct {
        const char *what;
        uint16_t channel;
        uint8_t payload[16];
        size_t len;
        uint16_t code;
        const char *prefix;
        uint16_t cls, mid;
    } cases[] = {
        {"unknown method", 1, {0, 60, 0, 99}, 4, BG_AMQP_NOT_IMPLEMENTED, "NOT_IMPLEMENTED", 0, 0},
        {"unknown class", 1, {0, 99, 0, 10}, 4, BG_AMQP_NOT_IMPLEMENTED, "NOT_IMPLEMENTED", 0, 0},
        {"truncated qos", 1, {0, 60, 0, 10, 0, 0}, 6, BG_AMQP_FRAME_ERROR, "FRAME_ERROR", 60, 10},
        {"trailing bytes",
         1,
         {0, 60, 0, 10, 0, 0, 0, 0, 0, 1, 0, 7},
         12,
         BG_AMQP_FRAME_ERROR,
         "FRAME_ERROR",
         60,
         10},
        {"basic method on channel 0",
         0,
         {0, 60, 0, 10, 0, 0, 0, 0, 0, 1, 0},
         11,
         BG_AMQP_CHANNEL_ERROR,
         "CHANNEL_ERROR",
         60,
         10},
        {"connection method on open channel 1",
         1,
         {0, 10, 0, 51},
         4,
         BG_AMQP_COMMAND_INVALID,
         "COMMAND_INVALID",
         10,
         51},
        {"connection method on unopened channel 2",
         2,
         {0, 10, 0, 51},
         4,
         BG_AMQP_CHANNEL_ERROR,
         "CHANNEL_ERROR - expected 'channel.open'",
         10,
         51},
        {"short method id", 1, {0, 60}, 2, BG_AMQP_FRAME_ERROR, "FRAME_ERROR", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        teardown(state);
        setup(state);
        ctx_t *c = *state;
        open_channel(c, 1);
        bg_amqp_frame_write(&c->wr, BG_AMQP_FRAME_METHOD, cases[i].channel, cases[i].payload,
                            cases[i].len);
        int rc = t_client_wr(&c->f, &c->wr);
        if (rc != -1 || c->f.close_code != cases[i].code ||
            strncmp(c->f.close_text, cases[i].prefix, strlen(cases[i].prefix)) != 0 ||
            c->f.close_class != cases[i].cls || c->f.close_method != cases[i].mid)
            fail_msg("%s: rc %d, closed %u '%s' %u/%u, expected %u '%s...' %u/%u", cases[i].what,
                     rc, c->f.close_code, c->f.close_text, c->f.close_class, c->f.close_method,
                     cases[i].code, cases[i].prefix, cases[i].cls, cases[i].mid);
        expect_nothing(UP(c));
    }
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_open_and_client_close),
        T(test_server_close),
        T(test_method_on_unopened_channel),
        T(test_channel_out_of_range),
        T(test_second_open),
        T(test_publish_bodies_split),
        T(test_publish_interleaved_channels),
        T(test_body_beyond_announced_size),
        T(test_header_without_publish),
        T(test_body_without_publish),
        T(test_second_header),
        T(test_method_instead_of_content),
        T(test_content_on_channel_0_and_closed),
        T(test_header_fixed_part_refused),
        T(test_header_continuation_flag),
        T(test_header_table_too_deep),
        T(test_refused_publish),
        T(test_refused_publish_with_confirms),
        T(test_delivery_before_refusal_is_relayed),
        T(test_refusal_not_confirmed_in_time_goes_out),
        T(test_refusal_waits_for_close_ok_with_no_ack_consumer),
        T(test_refusal_times_out_with_manual_ack_consumer),
        T(test_client_close_drops_content),
        T(test_client_close_mid_delivery_ends_it),
        T(test_refusal_crossing_client_close),
        T(test_client_close_crossing_server_close),
        T(test_server_close_crossing_client_close),
        T(test_refusal_crossing_server_close),
        T(test_server_close_mid_content),
        T(test_refusal_during_delivery),
        T(test_repeated_close_during_delivery_waits),
        T(test_body_too_large_refused_on_channel),
        T(test_user_id_property_refused),
        T(test_reopen_hold),
        T(test_stale_declare_ok_keeps_last_queue),
        T(test_pipelined_declares),
        T(test_audit_not_admitting),
        T(test_consumer_tracking),
        T(test_pipelined_consumes),
        T(test_nowait_cancel_of_pending_consume),
        T(test_consume_oks_out_of_order),
        T(test_cancel_ok_of_unknown_tag_keeps_pending_consume),
        T(test_reload_decides_consumers_again),
        T(test_reload_decides_under_the_new_names),
        T(test_reload_removing_the_issuer_denies_everything),
        T(test_update_secret_decides_consumers_again),
        T(test_reload_at_a_method_on_the_refused_channel),
        T(test_reload_while_audit_not_admitting),
        T(test_reload_during_publish_body_refuses_at_once),
        T(test_reload_rename_reaches_reply_texts),
        T(test_untagged_consume_gets_busgate_tag),
        T(test_untagged_consume_reencoded),
        T(test_reply_to_consume_ok_overtaking),
        T(test_reply_to_cancel_ok_overtaking),
        T(test_consumer_tag_reuse_refused),
        T(test_stale_server_cancel_after_nowait_cancel),
        T(test_quiet_cancel_ok_during_deferred_refusal),
        T(test_stray_cancel_ok_keeps_live_consumer),
        T(test_server_cancel_and_reply_to),
        T(test_untagged_nowait_consumes_tracked),
        T(test_consumer_tags_with_nul),
        T(test_consumer_bound_per_channel),
        T(test_consumer_bound_per_connection),
        T(test_blocked_relayed_with_capability),
        cmocka_unit_test_setup_teardown(test_blocked_dropped_without_capability, setup_nocaps,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_server_cancel_without_capability, setup_nocaps,
                                        teardown),
        T(test_upstream_connection_close),
        T(test_upstream_connection_close_noted),
        T(test_upstream_deliver_on_unopened_channel),
        T(test_upstream_channel_close_on_unopened_channel),
        T(test_upstream_frame_after_channel_closed),
        T(test_upstream_content_without_delivery),
        T(test_upstream_body_before_header),
        T(test_upstream_unknown_method),
        T(test_upstream_user_unnamed_in_closes),
        T(test_client_connection_close),
        T(test_update_secret_while_running),
        T(test_connection_method_out_of_place),
        T(test_server_method_from_client),
        T(test_malformed_methods),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
