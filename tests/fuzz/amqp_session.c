/* Fuzzes the AMQP session's per-frame dispatcher: amqp_channel.c (channel
 * state on both legs, publish/header/body accounting, refusals, the reopen
 * hold, consumer tracking) and amqp_authz.c, driven through the fake session
 * of tests/unit/amqp/test_amqp_session_fake.h. The session itself
 * (amqp_session.c: sockets, timers) and the handshake are not in the loop:
 * each input starts on a RUNNING session (the handshake done, 4 channels)
 * with channel 1 already open on both legs.
 *
 * Input: records, each
 *   sel(1): bit 0-1: 0/3 client frame, 1 upstream frame, 2 raw client bytes
 *   type(1) channel(1) len(2, big-endian) payload(len)   [frames]
 *   len(1) bytes(len)                                     [raw]
 * Frames are built with a correct size and end octet, so the fuzzer spends
 * its time on payloads; raw bytes exercise the framing errors.
 *
 * Invariants checked after every record (abort on violation):
 * - every frame busgate wrote upstream is well-formed and passes
 *   bg_amqp_validate_frame: no client bytes reach the broker (or rabbitmq-c)
 *   unvalidated;
 * - every frame written to the client is well-formed;
 * - while every frame "RabbitMQ" sent kept each command's content frames
 *   together, so does busgate's output to the client: no frame of its own
 *   (a refusal, a close-ok) lands inside a delivery's content;
 * - channel state stays within its enums, content accounting is coherent,
 *   consumer lists match their counts and bound, every consumer has a
 *   non-empty tag and no two on a channel share one (busgate names untagged
 *   consumes and refuses a reused tag), a stall names a channel that is
 *   really waiting for the upstream's close-ok (a reopen) or for the end
 *   of a delivery (a repeated close). */
#include <stdint.h>
#include <stdlib.h>

#include "../unit/amqp/test_amqp_session_fake.h"

#include "adapters/amqp/amqp_authz.c"
#include "adapters/amqp/amqp_channel.c"
#include "policy_test_util.h"

#define FZ_CHANNEL_MAX 4

static bg_policy_t *fz_policy;

static const pt_policy_t fz_policy_table = {
    "deny",
    "enforce",
    {
        {"all", "group:apps", "amqp:queue:q* amqp:exchange:x*", "all", "allow"},
        {"default-exchange", "group:apps", "amqp:exchange:amq.default", "write", "allow"},
        {"server-named", "group:apps", "amqp:queue:amq.gen-*", "create read", "allow"},
        {"secret", "*", "amqp:queue:qs* amqp:exchange:xs*", "all", "deny"},
        {"held", "*", "amqp:queue:qh*", "delete", "hold", NULL, "group:sre"},
    },
};

static void fz_init(void)
{
    if (fz_policy)
        return;
    char err[256];
    fz_policy = pt_compile(&fz_policy_table, err, sizeof err);
    if (!fz_policy) {
        fprintf(stderr, "policy: %s\n", err);
        abort();
    }
    bg_log_set_level(BG_LOG_ERROR); /* refusals log at info: keep the fuzzer quiet */
}

/* Per channel: a method that carries content (basic.deliver, get-ok,
 * return), then its header, then bodies up to the announced size, and
 * nothing else on that channel in between. */
typedef struct fz_seq_s {
    uint8_t expect; /* 0 none, 1 header, 2 body */
    uint64_t left;
} fz_seq_t;

static fz_seq_t fz_up_in[FZ_CHANNEL_MAX + 2], fz_cli_seen[FZ_CHANNEL_MAX + 2];
static int fz_up_broken; /* the input broke that rule: the output need not keep it */

/* Steps q by frame (type, payload of size); -1 when it breaks the rule. */
static int fz_seq_step(fz_seq_t *q, uint8_t type, const uint8_t *p, size_t size)
{
    if (type == BG_AMQP_FRAME_METHOD) {
        if (q->expect)
            return -1;
        uint32_t id = size >= 4 ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | p[2] << 8 | p[3]
                                : 0;
        if (id == AMQP_BASIC_DELIVER_METHOD || id == AMQP_BASIC_GET_OK_METHOD ||
            id == AMQP_BASIC_RETURN_METHOD)
            q->expect = 1;
        return 0;
    }
    if (type == BG_AMQP_FRAME_HEADER) {
        if (q->expect != 1 || size < 12)
            return -1;
        uint64_t n = 0;
        for (int i = 4; i < 12; i++)
            n = n << 8 | p[i];
        q->left = n;
        q->expect = n ? 2 : 0;
        return 0;
    }
    if (type == BG_AMQP_FRAME_BODY) {
        if (q->expect != 2 || size > q->left)
            return -1;
        q->left -= size;
        if (q->left == 0)
            q->expect = 0;
    }
    return 0;
}

static void fz_check_out(struct evbuffer *out, int validate)
{
    static uint8_t buf[(1 << 16) + 64];
    bg_amqp_frame_t f;
    while (t_next(out, buf, sizeof buf, &f)) {
        if (!validate && !fz_up_broken && f.channel <= FZ_CHANNEL_MAX + 1 &&
            fz_seq_step(&fz_cli_seen[f.channel], f.type, f.payload, f.size) < 0) {
            fprintf(stderr, "frame type %u on channel %u inside a command's content\n", f.type,
                    f.channel);
            abort();
        }
        const char *why = NULL;
        if (validate && f.type != BG_AMQP_FRAME_HEARTBEAT &&
            bg_amqp_validate_frame(&f, NULL, &why) != BG_AMQP_OK) {
            fprintf(stderr, "invalid frame forwarded upstream: type %u channel %u: %s\n", f.type,
                    f.channel, why ? why : "?");
            abort();
        }
    }
}

/* A leg is OPEN or CLOSED without handshakes, or CLOSING with one. */
static int fz_leg_ok(const bg_amqp_leg_t *l)
{
    if (l->state > BG_AMQP_LEG_CLOSING || (l->sent_relay && !l->sent))
        return 0;
    if (l->state != BG_AMQP_LEG_CLOSING)
        return !l->sent && !l->sent_relay && !l->got;
    return l->sent || l->got;
}

/* 1 when two consumers tracked on ch (live or pending) share a tag. */
static int fz_duplicate_tags(const bg_amqp_channel_t *ch)
{
    const bg_amqp_consumer_t *lists[2] = {ch->consumers, ch->pending};
    for (int a = 0; a < 2; a++)
        for (const bg_amqp_consumer_t *c = lists[a]; c; c = c->next)
            for (int b = a; b < 2; b++)
                for (const bg_amqp_consumer_t *d = b == a ? c->next : lists[b]; d; d = d->next)
                    if (c->tag && d->tag && c->tag_len == d->tag_len &&
                        memcmp(c->tag, d->tag, c->tag_len) == 0)
                        return 1;
    return 0;
}

static void fz_check_state(const bg_amqp_session_t *s)
{
    size_t total = 0;
    for (size_t i = 0; i <= s->channel_max; i++) {
        const bg_amqp_channel_t *ch = s->chans[i];
        if (!ch)
            continue;
        size_t n = 0, np = 0, untagged = 0;
        for (const bg_amqp_consumer_t *c = ch->consumers; c; c = c->next)
            n++, untagged += !c->tag || !c->tag_len || c->cancelled;
        for (const bg_amqp_consumer_t *c = ch->pending; c; c = c->next)
            np++, untagged += !c->tag || !c->tag_len;
        untagged += fz_duplicate_tags(ch);
        total += n + np;
        /* Content still expected: the channel is open, or it was closed
         * toward the client (RabbitMQ's close, or busgate's refusal of a
         * consumer after a reload) and the rest of the forwarded publish
         * body is still on its way. */
        int content_ok = !ch->expect || ch->cli.state == BG_AMQP_LEG_OPEN ||
                         (ch->cli.state == BG_AMQP_LEG_CLOSING && ch->cli.sent_relay) ||
                         (ch->cli.state == BG_AMQP_LEG_CLOSING && ch->cli.sent && ch->expect == 2);
        /* busgate's frames to RabbitMQ wait only for such a body. */
        if (ch->up_held && evbuffer_get_length(ch->up_held) && ch->expect != 2)
            content_ok = 0;
        /* A held publish waits for exactly its header. */
        if (ch->pub && evbuffer_get_length(ch->pub) && ch->expect != 1)
            content_ok = 0;
        if (i == 0 || !fz_leg_ok(&ch->cli) || !fz_leg_ok(&ch->up) || ch->expect > 2 ||
            (ch->expect == 2 && ch->body_left == 0) || !content_ok || n != ch->nconsumers ||
            np != ch->npending || untagged || (np == 0) != (ch->pending_last == NULL) ||
            n + np > BG_AMQP_MAX_CONSUMERS || ch->last_queue[BG_AMQP_NAME_MAX - 1] != '\0') {
            fprintf(stderr,
                    "channel %zu in an impossible state: cli %u/%u%u%u up %u/%u%u%u expect %u "
                    "body_left %llu\n",
                    i, ch->cli.state, ch->cli.sent, ch->cli.sent_relay, ch->cli.got, ch->up.state,
                    ch->up.sent, ch->up.sent_relay, ch->up.got, ch->expect,
                    (unsigned long long)ch->body_left);
            abort();
        }
    }
    if (total != s->nconsumers || total > BG_AMQP_MAX_CONSUMERS_CONN) {
        fprintf(stderr, "%zu consumers tracked, the session counts %zu\n", total, s->nconsumers);
        abort();
    }
    if (s->stalled) {
        const bg_amqp_channel_t *ch = s->stalled <= s->channel_max ? s->chans[s->stalled] : NULL;
        int reopen =
            ch && ch->cli.state == BG_AMQP_LEG_CLOSED && ch->up.state != BG_AMQP_LEG_CLOSED;
        int repeat = ch && ch->close_ok_held && ch->down_expect; /* held not out yet */
        if (!reopen && !repeat) {
            fprintf(stderr, "stalled on channel %u that waits for nothing\n", s->stalled);
            abort();
        }
    }
}

/* Channel 1 opened on both legs: the valid prefix every input starts from. */
static void fz_prefix(t_fake_t *t, bg_wr_t *wr)
{
    amqp_channel_open_t o = {{0, NULL}};
    t_method(wr, 1, AMQP_CHANNEL_OPEN_METHOD, &o);
    t_client_wr(t, wr);
    amqp_channel_open_ok_t ok = {{0, NULL}};
    t_method(wr, 1, AMQP_CHANNEL_OPEN_OK_METHOD, &ok);
    t_up_wr(t, wr);
    evbuffer_drain(t->up.out, evbuffer_get_length(t->up.out));
    evbuffer_drain(t->cli_out, evbuffer_get_length(t->cli_out));
}

static const uint8_t fz_types[4] = {BG_AMQP_FRAME_METHOD, BG_AMQP_FRAME_HEADER, BG_AMQP_FRAME_BODY,
                                    BG_AMQP_FRAME_HEARTBEAT};

/* One record from p[0..n); returns the bytes used (0: stop). */
static size_t fz_record(t_fake_t *t, bg_wr_t *wr, const uint8_t *p, size_t n)
{
    if (n < 1)
        return 0;
    uint8_t sel = p[0] & 3;
    if (sel == 2) {
        if (n < 2)
            return 0;
        size_t len = p[1] <= n - 2 ? p[1] : n - 2;
        t_client(t, p + 2, len);
        return 2 + len;
    }
    if (n < 5)
        return 0;
    /* Any type from the client (unknown ones are framing errors); the
     * upstream's frames were framed by the broker, so only real types. */
    uint8_t type = sel != 1 && p[1] < 16 ? p[1] : fz_types[p[1] & 3];
    uint16_t channel = p[2] % (FZ_CHANNEL_MAX + 2);
    size_t len = (size_t)p[3] << 8 | p[4];
    if (len > n - 5)
        len = n - 5;
    bg_amqp_frame_write(wr, type, channel, p + 5, len);
    if (sel == 1 && fz_seq_step(&fz_up_in[channel], type, p + 5, len) < 0)
        fz_up_broken = 1;
    if (sel == 1) {
        t_up_wr(t, wr);
        /* As the session: a resumed stall makes it read the client again. */
        if (!t->s.stalled && evbuffer_get_length(t->in))
            t_client(t, NULL, 0);
    } else {
        t_client_wr(t, wr);
    }
    return 5 + len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    if (size < 1)
        return 0;
    static const char *const groups[] = {"apps"};
    t_fake_t *t = calloc(1, sizeof *t);
    if (!t)
        return 0;
    uint32_t caps = data[0] & 1 ? BG_AMQP_CAPS_ALL : 0;
    t_fake_init(t, fz_policy, "fuzz", groups, 1, FZ_CHANNEL_MAX, caps);
    /* RabbitMQ's closes naming this user reach the client rewritten
     * (bg_amqp_reply_text_unnamed): short, so the fuzzer finds it. */
    t->cfg.amqp.upstream.username = (char *)"bg";
    memset(fz_up_in, 0, sizeof fz_up_in);
    memset(fz_cli_seen, 0, sizeof fz_cli_seen);
    fz_up_broken = 0;
    bg_wr_t wr;
    bg_wr_init(&wr, 1024, 1u << 20);
    fz_prefix(t, &wr);
    size_t off = 1;
    while (off < size && !t->s.dead) {
        size_t used = fz_record(t, &wr, data + off, size - off);
        if (used == 0)
            break;
        off += used;
        fz_check_out(t->up.out, 1);
        fz_check_out(t->cli_out, 0);
        fz_check_state(&t->s);
        if (t->s.state != BG_AMQP_S_RUNNING) /* closing: the session relays nothing more */
            break;
    }
    bg_wr_free(&wr);
    t_fake_free(t);
    free(t);
    return 0;
}
