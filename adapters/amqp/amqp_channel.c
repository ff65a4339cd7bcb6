/* Channels: per-channel state on both legs, the client's methods (decoded,
 * decided, forwarded or refused) and the relay of everything else.
 *
 * A refusal is RabbitMQ's own: channel.close 403 ACCESS_REFUSED to the
 * client with the refused method's ids; the upstream channel is closed by
 * busgate too (its frames dropped, its close-ok swallowed) and so is the
 * client's close-ok. A refused publish is dropped whole: after the
 * channel.close every frame the client still sends on that channel is
 * discarded, as the spec asks of a peer that sent channel.close. Closing the
 * channel (rather than dropping one publish) also keeps publisher-confirm
 * sequence numbers in step on both legs.
 *
 * Closes are relayed: the client's channel.close goes upstream and
 * RabbitMQ's close-ok comes back to the client (the deliveries, get-oks and
 * returns RabbitMQ sends in between are dropped: the client discards them
 * after its close anyway); RabbitMQ's close goes to the client and the
 * client's close-ok goes upstream. A close that crosses one
 * busgate sent itself is answered by busgate. Each leg's handshakes are
 * tracked (bg_amqp_leg_t), so crossed closes on either leg end with every
 * close answered and the channel number free on both legs. */
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "adapters/amqp/amqp_session-internal.h"
#include "broker/log.h"

const char *bg_amqp_reply_name(uint16_t code)
{
    switch (code) {
    case BG_AMQP_CONNECTION_FORCED: return "CONNECTION_FORCED";
    case BG_AMQP_ACCESS_REFUSED: return "ACCESS_REFUSED";
    case BG_AMQP_NOT_FOUND: return "NOT_FOUND";
    case BG_AMQP_PRECONDITION_FAILED: return "PRECONDITION_FAILED";
    case BG_AMQP_FRAME_ERROR: return "FRAME_ERROR";
    case BG_AMQP_SYNTAX_ERROR: return "SYNTAX_ERROR";
    case BG_AMQP_COMMAND_INVALID: return "COMMAND_INVALID";
    case BG_AMQP_CHANNEL_ERROR: return "CHANNEL_ERROR";
    case BG_AMQP_UNEXPECTED_FRAME: return "UNEXPECTED_FRAME";
    case BG_AMQP_RESOURCE_ERROR: return "RESOURCE_ERROR";
    case BG_AMQP_NOT_ALLOWED: return "NOT_ALLOWED";
    case BG_AMQP_NOT_IMPLEMENTED: return "NOT_IMPLEMENTED";
    default: return "INTERNAL_ERROR";
    }
}

/* ---- channel state ---- */

static void bg_amqp_chan__free_list(bg_amqp_consumer_t *c)
{
    while (c) {
        bg_amqp_consumer_t *next = c->next;
        free(c->tag);
        free(c->queue);
        free(c);
        c = next;
    }
}

static void bg_amqp_chan__reset(bg_amqp_session_t *s, bg_amqp_channel_t *ch)
{
    s->nconsumers -= ch->nconsumers + ch->npending;
    bg_amqp_chan__free_list(ch->consumers);
    bg_amqp_chan__free_list(ch->pending);
    if (ch->held)
        evbuffer_free(ch->held);
    if (ch->up_held)
        evbuffer_free(ch->up_held);
    if (ch->pub)
        evbuffer_free(ch->pub);
    if (ch->deferred) {
        evbuffer_free(ch->deferred);
        s->ndeferred--;
    }
    memset(ch, 0, sizeof *ch);
}

void bg_amqp_chan_free_all(bg_amqp_session_t *s)
{
    if (!s->chans)
        return;
    for (size_t i = 0; i <= s->channel_max; i++)
        if (s->chans[i]) {
            bg_amqp_chan__reset(s, s->chans[i]);
            free(s->chans[i]);
            s->chans[i] = NULL;
        }
}

static void bg_amqp_chan__copy(char *dst, amqp_bytes_t b)
{
    size_t n = b.len < BG_AMQP_NAME_MAX - 1 ? b.len : BG_AMQP_NAME_MAX - 1;
    if (n)
        memcpy(dst, b.bytes, n);
    dst[n] = '\0';
}

/* A consumer tag: b's bytes whole (NULs included), NUL-terminated, its
 * length in *len. Owned by the caller; NULL when out of memory. */
static char *bg_amqp_chan__tag_dup(amqp_bytes_t b, size_t *len)
{
    char *p = malloc(b.len + 1);
    if (!p)
        return NULL;
    if (b.len)
        memcpy(p, b.bytes, b.len);
    p[b.len] = '\0';
    *len = b.len;
    return p;
}

/* 1 when tag (p, n) is b, byte for byte. */
static int bg_amqp_chan__tag_is(const char *p, size_t n, amqp_bytes_t b)
{
    return p && n == b.len && (n == 0 || memcmp(p, b.bytes, n) == 0);
}

/* A consumer on queue (a NUL-terminated name) under tag. NULL when out of
 * memory. */
static bg_amqp_consumer_t *bg_amqp_chan__consumer_new(const char *queue, amqp_bytes_t tag)
{
    bg_amqp_consumer_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->queue = strdup(queue);
    c->tag = bg_amqp_chan__tag_dup(tag, &c->tag_len);
    if (!c->queue || !c->tag) {
        bg_amqp_chan__free_list(c);
        return NULL;
    }
    return c;
}

/* The consumer tracked under tag on ch, live or pending; NULL when none.
 * Unless with_cancelled, a pending consume already ended (its consume-ok
 * will forget it) does not count: RabbitMQ no longer knows its tag. */
static bg_amqp_consumer_t *bg_amqp_chan__find(const bg_amqp_channel_t *ch, amqp_bytes_t tag,
                                              int with_cancelled)
{
    bg_amqp_consumer_t *lists[2] = {ch->consumers, ch->pending};
    for (int i = 0; i < 2; i++)
        for (bg_amqp_consumer_t *c = lists[i]; c; c = c->next)
            if (bg_amqp_chan__tag_is(c->tag, c->tag_len, tag) && (with_cancelled || !c->cancelled))
                return c;
    return NULL;
}

#define BG_AMQP_CTAG_PREFIX "amq.ctag-"
#define BG_AMQP_CTAG_LEN 31 /* the prefix and 22 base64url characters */

/* 16 bytes for a tag: the kernel's random bytes, or (getrandom failing,
 * which it does not once the system has booted) a mixed counter. They need
 * not be secret, only unlikely to be a tag the client picks; that one is
 * unused on the channel is checked by the caller. */
static void bg_amqp_chan__tag_bytes(uint8_t r[16])
{
    if (getrandom(r, 16, GRND_NONBLOCK) == 16)
        return;
    static _Thread_local uint64_t n;
    for (int h = 0; h < 2; h++) {
        uint64_t z = (n += 0x9e3779b97f4a7c15ULL) ^ (uint64_t)bg_amqp_mono_ms();
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        memcpy(r + 8 * h, &z, 8);
    }
}

/* A consumer tag of busgate's own for a basic.consume that asked for none,
 * in the form RabbitMQ gives such tags ("amq.ctag-" and 22 base64url
 * characters of 16 random bytes), and not tracked on ch: out holds
 * BG_AMQP_CTAG_LEN bytes and a NUL. */
static void bg_amqp_chan__new_tag(const bg_amqp_channel_t *ch, char out[BG_AMQP_CTAG_LEN + 1])
{
    static const char b64url[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    amqp_bytes_t tag = {BG_AMQP_CTAG_LEN, out};
    do {
        uint8_t r[16];
        bg_amqp_chan__tag_bytes(r);
        char *o = out + sizeof BG_AMQP_CTAG_PREFIX - 1;
        memcpy(out, BG_AMQP_CTAG_PREFIX, sizeof BG_AMQP_CTAG_PREFIX - 1);
        for (int i = 0; i < 16; i += 3) { /* 5 groups of 3 bytes, then 1 byte: 22 characters */
            uint32_t v = (uint32_t)r[i] << 16 | (i + 1 < 16 ? (uint32_t)r[i + 1] << 8 : 0) |
                         (i + 2 < 16 ? r[i + 2] : 0);
            int chars = i + 1 < 16 ? 4 : 2;
            for (int k = 0; k < chars; k++)
                *o++ = b64url[(v >> (18 - 6 * k)) & 63];
        }
        *o = '\0';
    } while (bg_amqp_chan__find(ch, tag, 1));
}

/* Tracks forwarded basic.consume bc on queue under tag (the client's or
 * busgate's own): awaiting its consume-ok, or (nowait: none comes) live at
 * once. -1 out of memory. The caller checked the bounds and that the tag is
 * not tracked on ch. */
static int bg_amqp_chan__consume_sent(bg_amqp_session_t *s, bg_amqp_channel_t *ch,
                                      const amqp_basic_consume_t *bc, const char *queue,
                                      amqp_bytes_t tag, int reply_to)
{
    bg_amqp_consumer_t *c = bg_amqp_chan__consumer_new(queue, tag);
    if (!c)
        return -1;
    c->reply_to = (uint8_t)reply_to;
    c->no_ack = bc->no_ack ? 1 : 0;
    if (bc->nowait) {
        c->next = ch->consumers;
        ch->consumers = c;
        ch->nconsumers++;
    } else {
        if (ch->pending_last)
            ch->pending_last->next = c;
        else
            ch->pending = c;
        ch->pending_last = c;
        ch->npending++;
    }
    s->nconsumers++;
    return 0;
}

/* The pending consume a consume-ok answers: the one with its tag (tags
 * are unique on the channel and never empty). RabbitMQ does not answer
 * consumes in order (a direct reply-to consume is answered at once, one on
 * a queue through the queue's process), so pairing them by order would
 * track a consumer under another's tag. Unlinked from the pending list;
 * NULL when none matches. */
static bg_amqp_consumer_t *bg_amqp_chan__take_pending(bg_amqp_channel_t *ch, amqp_bytes_t tag)
{
    bg_amqp_consumer_t *prev = NULL;
    for (bg_amqp_consumer_t **pc = &ch->pending; *pc; prev = *pc, pc = &(*pc)->next) {
        bg_amqp_consumer_t *c = *pc;
        if (!bg_amqp_chan__tag_is(c->tag, c->tag_len, tag))
            continue;
        *pc = c->next;
        if (ch->pending_last == c)
            ch->pending_last = prev;
        ch->npending--;
        c->next = NULL;
        return c;
    }
    return NULL;
}

/* consume-ok: the pending consume it answers becomes live. */
static void bg_amqp_chan__consume_ok(bg_amqp_session_t *s, bg_amqp_channel_t *ch,
                                     amqp_bytes_t tag)
{
    bg_amqp_consumer_t *c = bg_amqp_chan__take_pending(ch, tag);
    if (!c)
        return; /* not one busgate forwarded: nothing to name */
    if (c->cancelled) { /* already ended upstream */
        bg_amqp_chan__free_list(c);
        s->nconsumers--;
        return;
    }
    c->next = ch->consumers;
    ch->consumers = c;
    ch->nconsumers++;
}

/* Consumer c on ch has ended upstream: a live one is forgotten now, a
 * pending one when its consume-ok comes (RabbitMQ still sends it). */
static void bg_amqp_chan__end_consumer(bg_amqp_session_t *s, bg_amqp_channel_t *ch,
                                       bg_amqp_consumer_t *c)
{
    for (bg_amqp_consumer_t **pc = &ch->consumers; *pc; pc = &(*pc)->next)
        if (*pc == c) {
            *pc = c->next;
            c->next = NULL;
            bg_amqp_chan__free_list(c);
            ch->nconsumers--;
            s->nconsumers--;
            return;
        }
    c->cancelled = 1;
}

/* The client's basic.cancel of tag, about to be forwarded. RabbitMQ
 * handles a channel's methods in order, so the cancel ends what busgate
 * tracks under the tag now (the reply-to consumer included: RabbitMQ looks
 * that one up first, and busgate never lets a queue consumer share its
 * tag). The consumer ends at the cancel-ok, and only a cancel-ok of a
 * cancel that named a tracked consumer ends one: RabbitMQ answers a cancel
 * of a tag it does not know with a cancel-ok too, which must not end a
 * consumer that took the tag after that cancel.
 *
 * A nowait cancel of a tracked consumer is forwarded as a waiting one (the
 * caller clears the bit; returns 1 to ask) and its cancel-ok is not
 * relayed. Ending the consumer at once, without knowing when RabbitMQ saw
 * the cancel, let the tag be taken again while a basic.cancel RabbitMQ sent
 * for the old consumer (its queue deleted) was still on its way; that one
 * then ended the new consumer in busgate's table, never re-decided after a
 * reload. Until the cancel-ok the tag stays tracked (reusing it is refused). */
static int bg_amqp_chan__client_cancel(bg_amqp_session_t *s, bg_amqp_channel_t *ch,
                                       amqp_bytes_t tag, int nowait)
{
    (void)s;
    bg_amqp_consumer_t *c = bg_amqp_chan__find(ch, tag, 0);
    if (!c)
        return 0;
    c->cancels++;
    c->silent += nowait ? 1 : 0;
    return nowait;
}

/* RabbitMQ's cancel-ok: the consumer a forwarded cancel named ends once
 * every such cancel has its answer. Returns 1 when the client asked for no
 * cancel-ok (its nowait cancel went up as a waiting one): not relayed. The
 * cancel-oks of one tag are alike, so which of them are kept back does not
 * matter, only how many. */
static int bg_amqp_chan__cancel_ok(bg_amqp_session_t *s, bg_amqp_channel_t *ch, amqp_bytes_t tag)
{
    bg_amqp_consumer_t *lists[2] = {ch->consumers, ch->pending};
    for (int i = 0; i < 2; i++)
        for (bg_amqp_consumer_t *c = lists[i]; c; c = c->next)
            if (c->cancels && bg_amqp_chan__tag_is(c->tag, c->tag_len, tag)) {
                int quiet = c->silent > 0;
                c->silent -= quiet ? 1 : 0;
                if (--c->cancels == 0)
                    bg_amqp_chan__end_consumer(s, ch, c);
                return quiet;
            }
    return 0;
}

/* RabbitMQ's basic.cancel: a queue consumer ended without the client (its
 * queue was deleted, its node went down). RabbitMQ never sends one for the
 * direct reply-to consumer, which has no queue: one naming its tag ends
 * nothing. A consumer the client's cancel named stays tracked until that
 * cancel's cancel-ok (which still comes, and may be one busgate keeps
 * back): its tag cannot be taken again before, so this cancel is the old
 * consumer's. */
static void bg_amqp_chan__server_cancel(bg_amqp_session_t *s, bg_amqp_channel_t *ch,
                                        amqp_bytes_t tag)
{
    bg_amqp_consumer_t *c = bg_amqp_chan__find(ch, tag, 0);
    if (c && !c->reply_to && !c->cancels)
        bg_amqp_chan__end_consumer(s, ch, c);
}

/* A CLOSING leg whose handshakes are all done is CLOSED. */
static void bg_amqp_chan__settle(bg_amqp_leg_t *l)
{
    if (l->state == BG_AMQP_LEG_CLOSING && !l->sent && !l->got)
        memset(l, 0, sizeof *l);
}

/* busgate's own channel.close on this leg is awaiting its close-ok. */
static int bg_amqp_chan__own_close(const bg_amqp_leg_t *l)
{
    return l->sent && !l->sent_relay;
}

/* busgate is closing the upstream channel itself (a refusal): RabbitMQ's
 * frames on it are dropped, its close-ok swallowed. */
static int bg_amqp_chan__closing_up_itself(const bg_amqp_channel_t *ch)
{
    return ch->up.state == BG_AMQP_LEG_CLOSING && bg_amqp_chan__own_close(&ch->up);
}

/* busgate is closing the upstream channel and what RabbitMQ still sends on
 * it is dropped: a refusal already told to the client, or one that must
 * not let anything more through (a consumer refused after a reload). */
static int bg_amqp_chan__dropping_up(const bg_amqp_channel_t *ch)
{
    return bg_amqp_chan__closing_up_itself(ch) && !ch->deferred;
}

/* The client's own channel.close went upstream and awaits RabbitMQ's
 * close-ok. */
static int bg_amqp_chan__client_close_relayed(const bg_amqp_channel_t *ch)
{
    return ch->cli.got && ch->up.sent && ch->up.sent_relay;
}

/* A delivery, get-ok or return RabbitMQ starts on ch reaches the client:
 * not once busgate's refusal has gone out, nor after the client's own
 * channel.close. A peer that sent channel.close discards everything on the
 * channel but close and close-ok (AMQP 0-9-1), so dropping costs the client
 * nothing; relaying would hand it messages after a reload took its read
 * away, since consumers on a closing channel are not decided again. The
 * decision holds for the whole command: one already part-relayed ends. */
static int bg_amqp_chan__relays_content(const bg_amqp_channel_t *ch)
{
    return !bg_amqp_chan__dropping_up(ch) && !bg_amqp_chan__client_close_relayed(ch);
}

/* Both legs closed: the number may be opened again. */
static void bg_amqp_chan__maybe_closed(bg_amqp_session_t *s, uint16_t n, bg_amqp_channel_t *ch)
{
    bg_amqp_chan__settle(&ch->cli);
    bg_amqp_chan__settle(&ch->up);
    if (ch->cli.state != BG_AMQP_LEG_CLOSED || ch->up.state != BG_AMQP_LEG_CLOSED)
        return;
    bg_amqp_chan__reset(s, ch);
    if (s->stalled == n) {
        s->stalled = 0;
        bg_amqp_session_resume(s);
    }
}

/* ---- small senders ---- */

static void bg_amqp_chan__forward(bg_amqp_session_t *s, struct evbuffer *in, size_t len)
{
    evbuffer_remove_buffer(in, bg_amqp_up_out(s), len); /* moves chains, no copy */
}

static int bg_amqp_chan__to_client(bg_amqp_session_t *s, bg_wr_t *wr, int rc)
{
    rc = rc == BG_AMQP_OK ? bg_amqp_cli_send(s, wr) : -1;
    bg_wr_free(wr);
    if (rc != 0)
        bg_amqp_session_kill(s, 0, "cannot write to the client");
    return rc;
}

/* A command from RabbitMQ on ch is partly relayed: busgate's own frames to
 * the client on ch wait in ch->held. */
static int bg_amqp_chan__holding(const bg_amqp_channel_t *ch)
{
    return ch->down_expect && ch->down_relay;
}

/* busgate's own frame to the client on channel ch: written now, or held
 * while a command from RabbitMQ on the channel is still partly relayed. */
static int bg_amqp_chan__to_client_on(bg_amqp_session_t *s, bg_amqp_channel_t *ch, bg_wr_t *wr,
                                      int rc)
{
    if (!bg_amqp_chan__holding(ch))
        return bg_amqp_chan__to_client(s, wr, rc);
    if (rc == BG_AMQP_OK && !ch->held && !(ch->held = evbuffer_new()))
        rc = -1;
    rc = rc == BG_AMQP_OK && !wr->failed && evbuffer_add(ch->held, wr->buf, wr->len) == 0 ? 0
                                                                                           : -1;
    bg_wr_free(wr);
    if (rc != 0)
        bg_amqp_session_kill(s, 0, "out of memory");
    return rc;
}

/* The command RabbitMQ was sending on channel n is complete: what busgate
 * held goes out, and a close the client repeated meanwhile is read again. */
static void bg_amqp_chan__flush_held(bg_amqp_session_t *s, uint16_t n, bg_amqp_channel_t *ch)
{
    if (!ch->held || ch->down_expect)
        return;
    evbuffer_add_buffer(bg_amqp_cli_out(s), ch->held);
    ch->close_ok_held = 0;
    if (s->stalled == n) {
        s->stalled = 0;
        bg_amqp_session_resume(s);
    }
}

static int bg_amqp_chan__to_upstream(bg_amqp_session_t *s, bg_wr_t *wr, int rc)
{
    rc = rc == BG_AMQP_OK ? bg_amqp_up_send(s, wr) : -1;
    bg_wr_free(wr);
    if (rc != 0)
        bg_amqp_session_kill(s, 0, "cannot write to the upstream");
    return rc;
}

/* busgate's own frame to RabbitMQ on channel ch: written now, or held
 * while the client's publish body on the channel is still partly
 * forwarded (see up_held). */
static int bg_amqp_chan__to_upstream_on(bg_amqp_session_t *s, bg_amqp_channel_t *ch, bg_wr_t *wr,
                                        int rc)
{
    if (ch->expect != 2)
        return bg_amqp_chan__to_upstream(s, wr, rc);
    if (rc == BG_AMQP_OK && !ch->up_held && !(ch->up_held = evbuffer_new()))
        rc = -1;
    rc = rc == BG_AMQP_OK && !wr->failed && evbuffer_add(ch->up_held, wr->buf, wr->len) == 0
             ? 0
             : -1;
    bg_wr_free(wr);
    if (rc != 0)
        bg_amqp_session_kill(s, 0, "out of memory");
    return rc;
}

/* The publish the client was sending is complete upstream: what busgate
 * held for RabbitMQ goes out. */
static void bg_amqp_chan__flush_up_held(bg_amqp_session_t *s, bg_amqp_channel_t *ch)
{
    if (ch->up_held && !ch->expect)
        evbuffer_add_buffer(bg_amqp_up_out(s), ch->up_held);
}

/* The refusal held back for the client goes out now (after the command
 * RabbitMQ is still relaying on the channel, if any). */
static void bg_amqp_chan__send_deferred(bg_amqp_session_t *s, bg_amqp_channel_t *ch)
{
    if (!ch->deferred)
        return;
    if (ch->down_expect && ch->down_relay) {
        if (!ch->held && !(ch->held = evbuffer_new())) {
            bg_amqp_session_kill(s, 0, "out of memory");
            return;
        }
        evbuffer_add_buffer(ch->held, ch->deferred);
    } else {
        evbuffer_add_buffer(bg_amqp_cli_out(s), ch->deferred);
    }
    evbuffer_free(ch->deferred);
    ch->deferred = NULL;
    s->ndeferred--;
}

static void bg_amqp_chan__arm_refusals(bg_amqp_session_t *s, int64_t ms)
{
    if (!s->refusal_ev)
        return;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    event_add(s->refusal_ev, &tv);
}

/* 1 when a consumer on ch, live or awaiting its consume-ok, is no-ack. */
static int bg_amqp_chan__has_no_ack_consumer(const bg_amqp_channel_t *ch)
{
    const bg_amqp_consumer_t *lists[2] = {ch->consumers, ch->pending};
    for (int i = 0; i < 2; i++)
        for (const bg_amqp_consumer_t *c = lists[i]; c; c = c->next)
            if (c->no_ack && !c->cancelled)
                return 1;
    return 0;
}

void bg_amqp_chan_send_overdue_refusals(bg_amqp_session_t *s)
{
    int64_t now = bg_amqp_mono_ms(), next = -1;
    for (size_t n = 1; s->chans && n <= s->channel_max && s->ndeferred && !s->dead; n++) {
        bg_amqp_channel_t *ch = s->chans[n];
        if (!ch || !ch->deferred)
            continue;
        int64_t left = ch->deferred_at + BG_AMQP_REFUSAL_WAIT_MS - now;
        /* A channel with a no-ack consumer waits for the close-ok (dropped
         * deliveries would be lost), but the timer stays armed while any
         * refusal is held: a new refusal arms it only when it is the first. */
        if (left <= 0 && bg_amqp_chan__has_no_ack_consumer(ch))
            left = BG_AMQP_REFUSAL_WAIT_MS;
        if (left <= 0)
            bg_amqp_chan__send_deferred(s, ch); /* what RabbitMQ still sends is dropped */
        else if (next < 0 || left < next)
            next = left;
    }
    if (next >= 0 && !s->dead)
        bg_amqp_chan__arm_refusals(s, next);
}

/* Closes channel n with code/text toward the client (busgate's own close)
 * and, when it is open there, toward the upstream. With `after_up`, and the
 * channel open upstream, the client's close waits for RabbitMQ's close-ok
 * (see `deferred`); without, it goes at once and whatever RabbitMQ still
 * sends on the channel is dropped. */
static int bg_amqp_chan__refuse(bg_amqp_session_t *s, uint16_t n, bg_amqp_channel_t *ch,
                                uint16_t code, const char *text, uint32_t id, int after_up)
{
    bg_wr_t wr;
    bg_wr_init(&wr, 320, 4096);
    int rc = bg_amqp_write_channel_close(&wr, n, code, text, (uint16_t)(id >> 16), (uint16_t)id);
    if (after_up && ch->up.state == BG_AMQP_LEG_OPEN && rc == BG_AMQP_OK && !wr.failed) {
        if (!ch->deferred) {
            if (!(ch->deferred = evbuffer_new()))
                rc = -1;
            else if (s->ndeferred++ == 0)
                bg_amqp_chan__arm_refusals(s, BG_AMQP_REFUSAL_WAIT_MS);
            ch->deferred_at = bg_amqp_mono_ms();
        }
        if (rc == BG_AMQP_OK && evbuffer_add(ch->deferred, wr.buf, wr.len) != 0)
            rc = -1;
        bg_wr_free(&wr);
        if (rc != BG_AMQP_OK) {
            bg_amqp_session_kill(s, 0, "out of memory");
            return -1;
        }
    } else if (bg_amqp_chan__to_client_on(s, ch, &wr, rc) != 0) {
        return -1;
    }
    ch->cli = (bg_amqp_leg_t){.state = BG_AMQP_LEG_CLOSING, .sent = 1};
    /* A publish still held (its header not in) is dropped whole; the rest
     * of one already forwarded still goes up, ahead of busgate's close. */
    if (ch->expect == 1)
        ch->expect = 0;
    if (ch->pub)
        evbuffer_drain(ch->pub, evbuffer_get_length(ch->pub));
    if (ch->up.state == BG_AMQP_LEG_OPEN) {
        bg_wr_init(&wr, 128, 4096);
        rc = bg_amqp_write_channel_close(&wr, n, BG_AMQP_REPLY_SUCCESS,
                                         "busgate closed the channel", 0, 0);
        if (bg_amqp_chan__to_upstream_on(s, ch, &wr, rc) != 0)
            return -1;
        ch->up = (bg_amqp_leg_t){.state = BG_AMQP_LEG_CLOSING, .sent = 1};
    }
    return 0;
}

/* Answers a channel.close on n with busgate's own close-ok, to the client
 * (to_client) or upstream. */
static int bg_amqp_chan__answer_close(bg_amqp_session_t *s, uint16_t n, bg_amqp_channel_t *ch,
                                      int to_client)
{
    bg_wr_t wr;
    bg_wr_init(&wr, 16, 64);
    int rc = bg_amqp_write_channel_close_ok(&wr, n);
    return to_client ? bg_amqp_chan__to_client_on(s, ch, &wr, rc)
                     : bg_amqp_chan__to_upstream_on(s, ch, &wr, rc);
}

/* ---- consumers decided again ---- */

/* A decision that must be recorded while the audit pipeline refuses events
 * (on_failure: block, its queue or spool full): the connection closes with
 * 320 CONNECTION_FORCED, naming method id. No channel-level code means "try
 * again later" (the soft codes name the client's mistakes; 506 is a hard
 * error, never sent in a channel.close, and would count as the client's
 * protocol error). As at login: 320, which AMQP defines as retry later and
 * clients with automatic recovery reconnect on. Returns -1 (closing). */
static int bg_amqp_chan__audit_down(bg_amqp_session_t *s, uint32_t id)
{
    bg_amqp_session_close(s, BG_AMQP_CONNECTION_FORCED,
                          "CONNECTION_FORCED - busgate cannot record audit events now; retry",
                          (uint16_t)(id >> 16), (uint16_t)id);
    return -1;
}

/* The consumers on ch, decided again as basic.consume on their queues; the
 * first refused one closes the channel (a refusal already held back goes
 * out at once instead, so nothing more is relayed). Only refusals are audit
 * events: a consumer still allowed changes nothing. A refusal while the
 * audit pipeline refuses events closes the connection instead, as a client
 * method that needs a decision then does: the consumer still stops, and no
 * event goes past the pipeline's refusal. 0, or -1 when the
 * session is going. Consumers are all a session holds that moves messages
 * without a client method: the routes its binds and declare arguments
 * made live in RabbitMQ, outlive the session and are not undone here (an
 * operator removes them: docs/amqp.md, "Routes after a reload"). */
static int bg_amqp_chan__recheck_channel(bg_amqp_session_t *s, uint16_t n, bg_amqp_channel_t *ch)
{
    bg_amqp_consumer_t *lists[2] = {ch->consumers, ch->pending};
    for (int i = 0; i < 2; i++)
        for (bg_amqp_consumer_t *c = lists[i]; c; c = c->next) {
            if (c->cancelled)
                continue;
            amqp_basic_consume_t bc;
            memset(&bc, 0, sizeof bc);
            bc.queue = amqp_cstring_bytes(c->queue);
            bg_amqp_method_t m = {AMQP_BASIC_CONSUME_METHOD,
                                  bg_amqp_method_info(AMQP_BASIC_CONSUME_METHOD), &bc};
            bg_amqp_verdict_t v;
            bg_amqp_authz_classify(&m, ch, &v);
            bg_amqp_authz_decide(s->snap->policy, &s->pp, s->unvouched, &v);
            if (!v.denied)
                continue;
            if (!bg_amqp_audit_admitting(s))
                return bg_amqp_chan__audit_down(s, AMQP_BASIC_CONSUME_METHOD);
            bg_amqp_audit_decisions(s, &m, &v, 0);
            char text[256];
            bg_amqp_authz_text(&v, s->aw->g->cfg->amqp.upstream.vhost, s->user, text,
                               sizeof text);
            bg_log_fields(BG_LOG_INFO, "amqp",
                          (bg_log_field_t[]){{"session", s->id}, {"sub", s->principal.sub}}, 2,
                          "refused the consumers on channel %u: the policy or the principal "
                          "changed",
                          n);
            if (ch->deferred) { /* already refused: stop relaying now */
                bg_amqp_chan__send_deferred(s, ch);
                return s->dead ? -1 : 0;
            }
            return bg_amqp_chan__refuse(s, n, ch, BG_AMQP_ACCESS_REFUSED, text,
                                        AMQP_BASIC_CONSUME_METHOD, 0);
        }
    return 0;
}

int bg_amqp_chan_policy_refresh(bg_amqp_session_t *s, int force)
{
    if (bg_snapshot_refresh(&s->snap)) {
        /* The new policy is written for the names the new identity
         * configuration gives (an issuer's prefixes may have changed). */
        bg_policy_principal_clear(&s->pp);
        /* A reload that removed the issuer (its keys leaked) keeps the
         * connection, but denies every decision (s->unvouched), the
         * consumers' below included, until a reload puts the issuer back. */
        int renamed =
            bg_identity_reapply(s->snap->identity, &s->principal, &s->unvouched, "amqp", s->id);
        if (renamed < 0 ||
            bg_policy_principal_prepare(s->snap->policy, s->principal.sub,
                                        (const char *const *)s->principal.groups,
                                        s->principal.ngroups, &s->pp) != 0) {
            bg_amqp_session_kill(s, 0, "out of memory");
            return -1;
        }
        if (renamed && s->user_is_principal) /* reply texts name the new name */
            snprintf(s->user, sizeof s->user, "%s", s->principal.sub);
    } else if (!force) {
        return 0;
    }
    for (size_t n = 1; s->chans && n <= s->channel_max; n++) {
        bg_amqp_channel_t *ch = s->chans[n];
        int open = ch && ch->cli.state == BG_AMQP_LEG_OPEN && ch->up.state == BG_AMQP_LEG_OPEN;
        if (!ch || !(open || ch->deferred) || !(ch->consumers || ch->pending))
            continue;
        /* Also while the client is part-way through a publish body: the
         * refusal goes to the client at once and nothing more is relayed;
         * busgate's close goes up after the body (up_held). */
        if (bg_amqp_chan__recheck_channel(s, (uint16_t)n, ch) != 0)
            return -1;
    }
    return 0;
}

/* ---- client methods ---- */

/* A method RabbitMQ refuses before any permission (v->answer): busgate
 * answers it in RabbitMQ's words, a channel.close (after RabbitMQ's
 * close-ok, as a refusal) or for a hard error a connection.close, and
 * forwards nothing. Audited as busgate's own refusal with that code, as
 * the other refusals busgate builds (bg_amqp_audit_limit): no rule was
 * asked. 0 consumed, -1 closing. */
static int bg_amqp_chan__answer(bg_amqp_session_t *s, uint16_t n, bg_amqp_channel_t *ch,
                                const bg_amqp_method_t *m, const bg_amqp_verdict_t *v, size_t len)
{
    char text[256];
    uint16_t code = bg_amqp_authz_answer(v, s->aw->g->cfg->amqp.upstream.vhost, text,
                                         sizeof text);
    bg_amqp_audit_limit(s, m, &v->checks[0], code, text, len);
    bg_log_fields(BG_LOG_INFO, "amqp",
                  (bg_log_field_t[]){{"session", s->id}, {"sub", s->principal.sub}}, 2,
                  "answered %s on channel %u with %u, as RabbitMQ does", m->info->name, n,
                  code);
    if (code == BG_AMQP_NOT_IMPLEMENTED) {
        bg_amqp_session_close(s, code, text, (uint16_t)(m->id >> 16), (uint16_t)m->id);
        return -1;
    }
    return bg_amqp_chan__refuse(s, n, ch, code, text, m->id, 1) == 0 ? 0 : -1;
}

static int bg_amqp_chan__decide(bg_amqp_session_t *s, uint16_t n, bg_amqp_channel_t *ch,
                                const bg_amqp_method_t *m, size_t len)
{
    bg_amqp_verdict_t v;
    bg_amqp_authz_classify(m, ch, &v);
    if (v.n == 0)
        return 1;
    if (bg_amqp_chan_policy_refresh(s, 0) != 0) /* a reload: decide by the new policy */
        return -1;
    if (ch->cli.state != BG_AMQP_LEG_OPEN)
        return 0; /* a consumer on it is refused now: the channel is closing */
    if (!bg_amqp_audit_admitting(s))
        return bg_amqp_chan__audit_down(s, m->id);
    if (v.answer == BG_AMQP_ANSWER_ARG_TYPE) {
        /* RabbitMQ checks create on the declared queue or exchange first,
         * then the argument's type: only that check is decided. */
        v.n = 1;
        bg_amqp_authz_decide(s->snap->policy, &s->pp, s->unvouched, &v);
        if (!v.denied)
            return bg_amqp_chan__answer(s, n, ch, m, &v, len);
        v.answer = BG_AMQP_ANSWER_NONE;
    } else if (v.answer)
        return bg_amqp_chan__answer(s, n, ch, m, &v, len);
    else
        bg_amqp_authz_decide(s->snap->policy, &s->pp, s->unvouched, &v);
    bg_amqp_audit_decisions(s, m, &v, len);
    if (!v.denied)
        return 1;
    char text[256];
    bg_amqp_authz_text(&v, s->aw->g->cfg->amqp.upstream.vhost, s->user, text, sizeof text);
    bg_log_fields(BG_LOG_INFO, "amqp",
                  (bg_log_field_t[]){{"session", s->id}, {"sub", s->principal.sub}}, 2,
                  "refused %s on channel %u", m->info->name, n);
    return bg_amqp_chan__refuse(s, n, ch, BG_AMQP_ACCESS_REFUSED, text, m->id, 1) == 0 ? 0 : -1;
}

/* Connection-class methods while running. 1 consumed, -1 closing. */
static int bg_amqp_chan__connection_method(bg_amqp_session_t *s, const bg_amqp_method_t *m,
                                           struct evbuffer *in, size_t len)
{
    bg_wr_t wr;
    switch (m->id) {
    case AMQP_CONNECTION_CLOSE_METHOD:
        bg_wr_init(&wr, 64, 1024);
        int rc = bg_amqp_write_connection_close(&wr, 200, "client closed the connection", 0, 0);
        rc = rc == BG_AMQP_OK ? bg_amqp_up_send(s, &wr) : -1;
        bg_wr_free(&wr);
        if (rc == 0) { /* close-ok once the broker has everything before it */
            evbuffer_drain(in, len);
            bg_amqp_session_await_upstream_close_ok(s);
            return -1;
        }
        bg_wr_init(&wr, 16, 64);
        if (bg_amqp_chan__to_client(s, &wr, bg_amqp_write_connection_close_ok(&wr)) == 0)
            bg_amqp_session_kill(s, 1, NULL);
        return -1;
    case BG_AMQP_CONNECTION_UPDATE_SECRET:
        if (bg_amqp_hs_update_secret(s, m->decoded) != 0)
            return -1;
        evbuffer_drain(in, len);
        /* The new token's groups may allow less: the consumers again. */
        return bg_amqp_chan_policy_refresh(s, 1) == 0 ? 1 : -1;
    default: /* as RabbitMQ's reader: any other connection method is out of place */
        bg_amqp_session_close(s, BG_AMQP_CHANNEL_ERROR,
                              "CHANNEL_ERROR - unexpected method in connection state running",
                              (uint16_t)(m->id >> 16), (uint16_t)m->id);
        return -1;
    }
}

/* A method on a channel whose client leg is closing: only close and
 * close-ok matter, the rest is discarded, as after any channel.close.
 * Every close that crosses the one sent to the client is answered, as
 * RabbitMQ answers each; one at a time while a delivery is partly relayed
 * (see close_ok_held). */
static int bg_amqp_chan__closing_client(bg_amqp_session_t *s, uint16_t n, bg_amqp_channel_t *ch,
                                        const bg_amqp_method_t *m, struct evbuffer *in, size_t len)
{
    if (m->id == AMQP_CHANNEL_CLOSE_METHOD && ch->cli.sent && !ch->cli.got) {
        /* Crossed a close sent to the client (busgate's or RabbitMQ's): the
         * client now waits for a close-ok and still owes one. A refusal
         * still held back goes first, so the two cross as usual. */
        if (ch->close_ok_held) { /* a repeated close: after the delivery */
            s->stalled = n;
            return 0;
        }
        evbuffer_drain(in, len);
        ch->close_ok_held = (uint8_t)bg_amqp_chan__holding(ch);
        bg_amqp_chan__send_deferred(s, ch);
        return s->dead ? -1 : bg_amqp_chan__answer_close(s, n, ch, 1) == 0 ? 1 : -1;
    }
    if (m->id == AMQP_CHANNEL_CLOSE_OK_METHOD && ch->cli.sent) {
        if (ch->deferred) { /* it answers a refusal it never got: never send it */
            evbuffer_free(ch->deferred);
            ch->deferred = NULL;
            s->ndeferred--;
        }
        int relay = ch->cli.sent_relay;
        ch->cli.sent = ch->cli.sent_relay = 0;
        if (relay && ch->up.got) { /* answers RabbitMQ's close */
            ch->up.got = 0;
            bg_amqp_chan__forward(s, in, len);
        } else {
            evbuffer_drain(in, len);
        }
        bg_amqp_chan__maybe_closed(s, n, ch);
        return 1;
    }
    evbuffer_drain(in, len);
    return 1;
}

static bg_amqp_channel_t *bg_amqp_chan__get(bg_amqp_session_t *s, uint16_t n, int create)
{
    if (n == 0 || n > s->channel_max)
        return NULL;
    if (!s->chans[n] && create)
        s->chans[n] = calloc(1, sizeof *s->chans[n]);
    return s->chans[n];
}

/* ---- basic.consume ---- */

/* The queue RabbitMQ keeps apart: a channel's direct reply-to consumer is
 * outside its consumer table (so RabbitMQ lets a queue consumer take its
 * tag) and is answered at once, ahead of earlier consumes on queues. */
#define BG_AMQP_REPLY_TO "amq.rabbitmq.reply-to"

/* RabbitMQ's text for a reused tag, the tag's control bytes shown as '?'
 * (as in busgate's other reply texts). */
static void bg_amqp_chan__reuse_text(amqp_bytes_t tag, char *buf, size_t cap)
{
    static const char head[] = "NOT_ALLOWED - attempt to reuse consumer tag '";
    size_t o = sizeof head - 1;
    memcpy(buf, head, o);
    for (size_t i = 0; i < tag.len && o + 2 < cap; i++) {
        uint8_t b = ((const uint8_t *)tag.bytes)[i];
        buf[o++] = b < 0x20 || b == 0x7f ? '?' : (char)b;
    }
    buf[o++] = '\'';
    buf[o] = '\0';
}

/* An allowed basic.consume (method m, len bytes at the head of in) that
 * busgate refuses itself: audited as one more decision on its queue, after
 * the policy's allow, so the refusal is not hidden behind it. */
static void bg_amqp_chan__audit_consume_refusal(bg_amqp_session_t *s, bg_amqp_channel_t *ch,
                                                const bg_amqp_method_t *m, uint16_t code,
                                                const char *text, size_t len)
{
    bg_amqp_verdict_t v;
    bg_amqp_authz_classify(m, ch, &v);
    if (v.n)
        bg_amqp_audit_limit(s, m, &v.checks[0], code, text, len);
}

/* The bounds on tracked consumers (see amqp_session-internal.h), checked
 * for a basic.consume (method m, len bytes) the policy allowed. Returns 0,
 * or -1 after closing the connection as RabbitMQ does at its own consumer
 * limit: 530 NOT_ALLOWED (a connection error in AMQP 0-9-1). Checked after
 * the decision, so that the refusal is audited as busgate's own, after the
 * policy's allow, like every refusal busgate makes itself. */
static int bg_amqp_chan__consume_bounds(bg_amqp_session_t *s, uint16_t n, bg_amqp_channel_t *ch,
                                        const bg_amqp_method_t *m, size_t len)
{
    const char *scope = NULL;
    unsigned max = 0;
    if (ch->nconsumers + ch->npending >= BG_AMQP_MAX_CONSUMERS)
        scope = "channel", max = BG_AMQP_MAX_CONSUMERS;
    else if (s->nconsumers >= BG_AMQP_MAX_CONSUMERS_CONN)
        scope = "connection", max = BG_AMQP_MAX_CONSUMERS_CONN;
    if (!scope)
        return 0;
    char text[128];
    snprintf(text, sizeof text, "NOT_ALLOWED - reached maximum (%u) of consumers per %s", max,
             scope);
    bg_amqp_chan__audit_consume_refusal(s, ch, m, BG_AMQP_NOT_ALLOWED, text, len);
    bg_log_fields(BG_LOG_INFO, "amqp",
                  (bg_log_field_t[]){{"session", s->id}, {"sub", s->principal.sub}}, 2,
                  "refused basic.consume on channel %u: too many consumers per %s", n, scope);
    bg_amqp_session_close(s, BG_AMQP_NOT_ALLOWED, text, 60, 20);
    return -1;
}

/* Forwards the basic.consume at the head of in (len bytes; it asked for no
 * tag, its queue name queue_len bytes long) with tag instead: the other
 * bytes as they came. 0 sent, 1 when its payload would then pass frame_max
 * (nothing sent, in untouched), -1 when the session is going. */
static int bg_amqp_chan__forward_tagged(bg_amqp_session_t *s, uint16_t n, struct evbuffer *in,
                                        size_t len, size_t queue_len, const char *tag,
                                        size_t tag_len)
{
    /* payload: class, method, reserved-1 (2 bytes each), queue, consumer-tag, ... */
    size_t at = BG_AMQP_FRAME_HEADER_SIZE + 6 + 1 + queue_len; /* the tag's length octet */
    if (len - BG_AMQP_FRAME_OVERHEAD + tag_len > s->frame_max)
        return 1;
    const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)len);
    if (!p || at >= len - 1 || p[at] != 0) { /* decoded already: only out of memory */
        bg_amqp_session_kill(s, 0, "out of memory");
        return -1;
    }
    bg_wr_t wr;
    bg_wr_init(&wr, len + tag_len, len + tag_len);
    size_t size_off = bg_amqp_frame_begin(&wr, BG_AMQP_FRAME_METHOD, n);
    bg_wr_bytes(&wr, p + BG_AMQP_FRAME_HEADER_SIZE, at - BG_AMQP_FRAME_HEADER_SIZE);
    bg_wr_u8(&wr, (uint8_t)tag_len);
    bg_wr_bytes(&wr, tag, tag_len);
    bg_wr_bytes(&wr, p + at + 1, len - 1 - (at + 1)); /* the rest, without the end octet */
    bg_amqp_frame_end(&wr, size_off);
    evbuffer_drain(in, len);
    return bg_amqp_chan__to_upstream(s, &wr, wr.failed ? BG_AMQP_ERR_ENCODE : BG_AMQP_OK);
}

/* A basic.consume whose tag is tracked on the channel: refused as
 * RabbitMQ refuses the reuse of a tag in its consumer table, 530
 * NOT_ALLOWED, a connection error (530 is a hard error in AMQP 0-9-1), with
 * RabbitMQ's text and class/method 60/20; audited after the policy's allow.
 * Nothing of it goes upstream. Returns -1 (closing). */
static int bg_amqp_chan__refuse_reuse(bg_amqp_session_t *s, uint16_t n, bg_amqp_channel_t *ch,
                                      const bg_amqp_method_t *m, size_t len)
{
    char text[320];
    bg_amqp_chan__reuse_text(((const amqp_basic_consume_t *)m->decoded)->consumer_tag, text,
                             sizeof text);
    bg_amqp_chan__audit_consume_refusal(s, ch, m, BG_AMQP_NOT_ALLOWED, text, len);
    bg_log_fields(BG_LOG_INFO, "amqp",
                  (bg_log_field_t[]){{"session", s->id}, {"sub", s->principal.sub}}, 2,
                  "refused basic.consume on channel %u: its consumer tag is in use", n);
    bg_amqp_session_close(s, BG_AMQP_NOT_ALLOWED, text, 60, 20);
    return -1;
}

/* An allowed basic.consume that asked for no tag, on queue: it goes up
 * with busgate's own tag (RabbitMQ would make one up, and its consume-ok
 * could then only be matched by order, which RabbitMQ does not keep), and
 * is tracked under it. The client learns the tag from the consume-ok, as
 * from RabbitMQ. 1 consumed, -1 closing. */
static int bg_amqp_chan__consume_untagged(bg_amqp_session_t *s, uint16_t n, bg_amqp_channel_t *ch,
                                          const bg_amqp_method_t *m, struct evbuffer *in,
                                          size_t len, const char *queue, int reply_to)
{
    /* Its flags live in the arena, not in the frame the forward drains. */
    const amqp_basic_consume_t *c = m->decoded;
    char tag[BG_AMQP_CTAG_LEN + 1];
    bg_amqp_chan__new_tag(ch, tag);
    int rc = bg_amqp_chan__forward_tagged(s, n, in, len, c->queue.len, tag, BG_AMQP_CTAG_LEN);
    if (rc < 0)
        return -1;
    if (rc > 0) { /* at frame_max already: nothing of it went up */
        const char *text = "PRECONDITION_FAILED - basic.consume too large for busgate to add "
                           "a consumer tag; give it one";
        bg_amqp_chan__audit_consume_refusal(s, ch, m, BG_AMQP_PRECONDITION_FAILED, text, len);
        evbuffer_drain(in, len);
        return bg_amqp_chan__refuse(s, n, ch, BG_AMQP_PRECONDITION_FAILED, text,
                                    AMQP_BASIC_CONSUME_METHOD, 1) == 0
                   ? 1
                   : -1;
    }
    if (bg_amqp_chan__consume_sent(s, ch, c, queue, (amqp_bytes_t){BG_AMQP_CTAG_LEN, tag},
                                   reply_to) != 0) {
        bg_amqp_session_kill(s, 0, "out of memory");
        return -1;
    }
    return 1;
}

/* A basic.consume the policy allowed: refused at the bounds on consumers,
 * or when its tag is tracked on the channel (any tag busgate tracks, the
 * direct reply-to consumer's included, which RabbitMQ would let a queue
 * consumer share: a cancel of the tag would then end the reply-to consumer
 * while busgate forgot the queue's); else tracked and forwarded. 1
 * consumed, -1 closing. */
static int bg_amqp_chan__consume(bg_amqp_session_t *s, uint16_t n, bg_amqp_channel_t *ch,
                                 const bg_amqp_method_t *m, struct evbuffer *in, size_t len)
{
    const amqp_basic_consume_t *c = m->decoded;
    if (bg_amqp_chan__consume_bounds(s, n, ch, m, len) != 0)
        return -1;
    if (c->consumer_tag.len && bg_amqp_chan__find(ch, c->consumer_tag, 1))
        return bg_amqp_chan__refuse_reuse(s, n, ch, m, len);
    char queue[BG_AMQP_NAME_MAX];
    if (c->queue.len)
        bg_amqp_chan__copy(queue, c->queue);
    else
        memcpy(queue, ch->last_queue, sizeof queue);
    /* Only a consume naming amq.rabbitmq.reply-to is marked. RabbitMQ
     * expands "" to the last declared queue before it looks for direct
     * reply-to, and a queue.declare of amq.rabbitmq.reply-to is answered
     * with a declare-ok that makes it the last declared queue: a consume of
     * "" after it starts a reply-to consumer, tracked here as a queue's.
     * Its decision is the same (read on the queue amq.rabbitmq.reply-to,
     * which `queue` names either way); the mark only makes a basic.cancel
     * from RabbitMQ that names its tag end nothing, and RabbitMQ sends none
     * for a reply-to consumer. */
    int reply_to = c->queue.len == sizeof BG_AMQP_REPLY_TO - 1 &&
                   memcmp(c->queue.bytes, BG_AMQP_REPLY_TO, c->queue.len) == 0;
    if (!c->consumer_tag.len)
        return bg_amqp_chan__consume_untagged(s, n, ch, m, in, len, queue, reply_to);
    /* Tracked before it is forwarded: the tag borrows the frame. */
    if (bg_amqp_chan__consume_sent(s, ch, c, queue, c->consumer_tag, reply_to) != 0) {
        bg_amqp_session_kill(s, 0, "out of memory");
        return -1;
    }
    bg_amqp_chan__forward(s, in, len);
    return 1;
}

/* A method on an open channel. */
static int bg_amqp_chan__open_method(bg_amqp_session_t *s, uint16_t n, bg_amqp_channel_t *ch,
                                     const bg_amqp_method_t *m, struct evbuffer *in, size_t len)
{
    if (m->id == AMQP_CHANNEL_OPEN_METHOD) {
        bg_amqp_session_close(s, BG_AMQP_CHANNEL_ERROR, "CHANNEL_ERROR - second 'channel.open' seen",
                              20, 10);
        return -1;
    }
    int rc = bg_amqp_chan__decide(s, n, ch, m, len);
    if (rc <= 0) {
        if (rc == 0)
            evbuffer_drain(in, len);
        return rc < 0 ? -1 : 1;
    }
    switch (m->id) {
    case AMQP_CHANNEL_CLOSE_METHOD: /* relayed: RabbitMQ's close-ok answers it */
        ch->cli.state = BG_AMQP_LEG_CLOSING;
        ch->cli.got = 1;
        ch->up.state = BG_AMQP_LEG_CLOSING;
        ch->up.sent = ch->up.sent_relay = 1;
        break;
    case AMQP_CONFIRM_SELECT_METHOD: ch->confirm = 1; break;
    case AMQP_BASIC_PUBLISH_METHOD: /* held until its header says the size */
        ch->expect = 1;
        if (!ch->pub && !(ch->pub = evbuffer_new())) {
            bg_amqp_session_kill(s, 0, "out of memory");
            return -1;
        }
        evbuffer_remove_buffer(in, ch->pub, len);
        return 1;
    case AMQP_QUEUE_DECLARE_METHOD: {
        /* RabbitMQ makes the declared queue the channel's last queue when it
         * handles the declare (nowait too), before busgate sees a declare-ok;
         * a server-named queue is unknown until its declare-ok. */
        const amqp_queue_declare_t *q = m->decoded;
        ch->declared = 1;
        if (q->queue.len)
            bg_amqp_chan__copy(ch->last_queue, q->queue);
        else
            ch->last_queue[0] = '\0';
        ch->last_declare_waits = !q->nowait;
        if (!q->nowait)
            ch->declares_waiting++;
        break;
    }
    case AMQP_BASIC_CONSUME_METHOD:
        return bg_amqp_chan__consume(s, n, ch, m, in, len);
    case AMQP_BASIC_CANCEL_METHOD: {
        const amqp_basic_cancel_t *c = m->decoded;
        if (bg_amqp_chan__client_cancel(s, ch, c->consumer_tag, c->nowait)) {
            /* the no-wait bit: after the frame header (7), class and
             * method (4) and the tag (1 + length) */
            size_t at = BG_AMQP_FRAME_HEADER_SIZE + 4 + 1 + c->consumer_tag.len;
            uint8_t *fp = evbuffer_pullup(in, (ev_ssize_t)len);
            if (!fp || at >= len) {
                bg_amqp_session_kill(s, 0, "out of memory");
                return -1;
            }
            fp[at] &= (uint8_t)~1u;
        }
        break;
    }
    default: break;
    }
    bg_amqp_chan__forward(s, in, len);
    return 1;
}

/* A client method frame that does not decode (rc, why), or one it may not
 * send (rc BG_AMQP_OK), closed with the code RabbitMQ 3.10 answers it with
 * (checked against it: test_malformed_input_gets_rabbitmqs_reply_code), the
 * class/method ids naming the method when it is a known one:
 * - arguments that do not fill the frame exactly: 501 FRAME_ERROR (its
 *   decoder matches them against the frame);
 * - a connection method on another channel: 503 COMMAND_INVALID on an open
 *   channel (RabbitMQ's channel implements none), 504 CHANNEL_ERROR on one
 *   not opened ("expected 'channel.open'");
 * - on channel 0 a method other than connection.close and update-secret,
 *   server methods included: 504 CHANNEL_ERROR, as its reader answers any
 *   connection method out of place; a server method on a channel: 503. */
static int bg_amqp_chan__refuse_method(bg_amqp_session_t *s, const bg_amqp_channel_t *ch,
                                       const bg_amqp_frame_t *f, int rc, const char *why)
{
    uint16_t cls = 0, mid = 0;
    if (f->size >= 4) {
        uint16_t c = (uint16_t)(f->payload[0] << 8 | f->payload[1]);
        uint16_t m = (uint16_t)(f->payload[2] << 8 | f->payload[3]);
        if (bg_amqp_method_info(BG_AMQP_METHOD_ID(c, m)))
            cls = c, mid = m;
    }
    uint16_t code = bg_amqp_method_status_reply_code(rc);
    if (rc == BG_AMQP_OK && f->channel == 0) {
        code = BG_AMQP_CHANNEL_ERROR;
        why = "unexpected method in connection state running";
    } else if (rc == BG_AMQP_OK) {
        code = BG_AMQP_COMMAND_INVALID;
        why = "a server method sent by the client";
    } else if (rc == BG_AMQP_ERR_CHANNEL && f->channel != 0 && cls == 10) {
        int opened = ch && ch->cli.state != BG_AMQP_LEG_CLOSED;
        code = opened ? BG_AMQP_COMMAND_INVALID : BG_AMQP_CHANNEL_ERROR;
        why = opened ? "connection method on a channel" : "expected 'channel.open'";
    }
    char text[200];
    snprintf(text, sizeof text, "%s - %s", bg_amqp_reply_name(code), why ? why : "malformed");
    bg_amqp_session_close(s, code, text, cls, mid);
    return -1;
}

static int bg_amqp_chan__content_error(bg_amqp_session_t *s, uint16_t code, const char *text)
{
    bg_amqp_session_close(s, code, text, 0, 0);
    return -1;
}

/* Content on a channel that expects a method (no publish before it, or
 * not open): 505 in RabbitMQ's words, no method named. Always -1. */
static int bg_amqp_chan__content_unasked(bg_amqp_session_t *s)
{
    return bg_amqp_chan__content_error(
        s, BG_AMQP_UNEXPECTED_FRAME,
        "UNEXPECTED_FRAME - expected method frame, got non method frame instead");
}

/* A frame other than the content the channel's publish still expects
 * (ch->expect: 1 its header, 2 its body): 505 UNEXPECTED_FRAME naming
 * basic.publish, in the words of RabbitMQ's command assembler, which
 * names the command it was assembling. Always -1. */
static int bg_amqp_chan__content_expected(bg_amqp_session_t *s, const bg_amqp_channel_t *ch)
{
    bg_amqp_session_close(s, BG_AMQP_UNEXPECTED_FRAME,
                          ch->expect == 1 ? "UNEXPECTED_FRAME - expected content header for class "
                                            "60, got non content header frame instead"
                                          : "UNEXPECTED_FRAME - expected content body, got non "
                                            "content body frame instead",
                          60, 40);
    return -1;
}

static int bg_amqp_chan__client_method(bg_amqp_session_t *s, struct evbuffer *in,
                                       bg_amqp_frame_t *f, size_t len)
{
    uint16_t n = f->channel;
    bg_amqp_channel_t *ch = bg_amqp_chan__get(s, n, 0);
    if (ch && ch->cli.state == BG_AMQP_LEG_CLOSED && ch->up.state != BG_AMQP_LEG_CLOSED) {
        s->stalled = n; /* reopened before the upstream confirmed the close */
        return 0;
    }
    const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)len);
    if (!p) {
        bg_amqp_session_kill(s, 0, "out of memory");
        return -1;
    }
    f->payload = p + BG_AMQP_FRAME_HEADER_SIZE;
    bg_amqp_method_t m;
    const char *why = NULL;
    int rc = bg_amqp_method_decode(f, &s->lim, &s->arena, &m, &why);
    if (rc != BG_AMQP_OK || !(m.info->flags & BG_AMQP_M_CLIENT)) {
        bg_amqp_arena_reset(&s->arena);
        return bg_amqp_chan__refuse_method(s, ch, f, rc, why);
    }
    if (n == 0)
        rc = bg_amqp_chan__connection_method(s, &m, in, len);
    else if (ch && ch->expect)
        rc = bg_amqp_chan__content_expected(s, ch);
    else if (ch && ch->cli.state == BG_AMQP_LEG_CLOSING)
        rc = bg_amqp_chan__closing_client(s, n, ch, &m, in, len);
    else if (ch && ch->cli.state == BG_AMQP_LEG_OPEN)
        rc = bg_amqp_chan__open_method(s, n, ch, &m, in, len);
    else if (m.id == AMQP_CHANNEL_OPEN_METHOD && (ch = bg_amqp_chan__get(s, n, 1))) {
        ch->cli.state = BG_AMQP_LEG_OPEN;
        ch->up.state = BG_AMQP_LEG_OPEN;
        bg_amqp_chan__forward(s, in, len);
        rc = 1;
    } else {
        bg_amqp_session_close(s, BG_AMQP_CHANNEL_ERROR,
                              n > s->channel_max ? "CHANNEL_ERROR - channel number out of range"
                                                 : "CHANNEL_ERROR - expected 'channel.open'",
                              (uint16_t)(m.id >> 16), (uint16_t)m.id);
        rc = -1;
    }
    bg_amqp_arena_reset(&s->arena);
    return rc;
}

/* ---- client content ---- */

/* The publish held in ch->pub is refused by busgate itself (code, text)
 * although the policy allowed it: audited as one more decision on its
 * exchange, so the refusal is not hidden behind the publish's allow. */
static void bg_amqp_chan__audit_held_publish(bg_amqp_session_t *s, bg_amqp_channel_t *ch,
                                             uint16_t code, const char *text, uint64_t bytes_in)
{
    size_t n = evbuffer_get_length(ch->pub);
    const uint8_t *p = evbuffer_pullup(ch->pub, (ev_ssize_t)n);
    bg_amqp_frame_t f;
    bg_amqp_method_t m;
    const char *why = NULL;
    if (!p || bg_amqp_frame_peek(p, n, UINT32_MAX, &f, NULL) <= 0 ||
        bg_amqp_method_decode(&f, NULL, &s->arena, &m, &why) != BG_AMQP_OK) {
        bg_amqp_arena_reset(&s->arena);
        return; /* it was decoded when it came: only out of memory gets here */
    }
    bg_amqp_verdict_t v;
    bg_amqp_authz_classify(&m, ch, &v);
    if (v.n)
        bg_amqp_audit_limit(s, &m, &v.checks[0], code, text, bytes_in);
    bg_amqp_arena_reset(&s->arena);
}

/* The content header (len bytes at the head of in) of the publish held in
 * ch->pub, which busgate refuses itself (code, text) although the policy
 * allowed it: nothing of the message has gone upstream, so it is refused
 * on its channel and dropped whole (header now, bodies as they come);
 * audited as one more decision. 1 consumed, -1 closing. */
static int bg_amqp_chan__refuse_held_publish(bg_amqp_session_t *s, struct evbuffer *in,
                                             bg_amqp_channel_t *ch, const bg_amqp_frame_t *f,
                                             size_t len, uint16_t code, const char *text)
{
    evbuffer_drain(in, len);
    bg_amqp_chan__audit_held_publish(s, ch, code, text, len);
    return bg_amqp_chan__refuse(s, f->channel, ch, code, text, AMQP_BASIC_PUBLISH_METHOD, 1) == 0
               ? 1
               : -1;
}

/* The fixed part of a content header (payload p, size bytes) checked as
 * RabbitMQ's command assembler checks it, with its codes: shorter than its
 * fixed fields 501 FRAME_ERROR, another class than the publish's or a
 * weight other than 0 505 UNEXPECTED_FRAME naming basic.publish. 1 when
 * the connection closes. */
static int bg_amqp_chan__header_unexpected(bg_amqp_session_t *s, const uint8_t *p, uint32_t size)
{
    if (size < 12) {
        bg_amqp_session_close(s, BG_AMQP_FRAME_ERROR, "FRAME_ERROR - content header truncated", 0,
                              0);
        return 1;
    }
    uint16_t cls = (uint16_t)(p[0] << 8 | p[1]), weight = (uint16_t)(p[2] << 8 | p[3]);
    if (cls == AMQP_BASIC_CLASS && weight == 0)
        return 0;
    char text[160];
    if (cls != AMQP_BASIC_CLASS)
        snprintf(text, sizeof text,
                 "UNEXPECTED_FRAME - expected content header for class 60, got one for class %u "
                 "instead",
                 cls);
    else
        snprintf(text, sizeof text,
                 "UNEXPECTED_FRAME - expected content header for class 60, got non content "
                 "header frame instead");
    bg_amqp_session_close(s, BG_AMQP_UNEXPECTED_FRAME, text, 60, 40);
    return 1;
}

static int bg_amqp_chan__client_header(bg_amqp_session_t *s, struct evbuffer *in,
                                       bg_amqp_channel_t *ch, bg_amqp_frame_t *f, size_t len)
{
    if (ch->expect == 2)
        return bg_amqp_chan__content_expected(s, ch);
    if (ch->expect != 1)
        return bg_amqp_chan__content_unasked(s);
    const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)len);
    if (p && bg_amqp_chan__header_unexpected(s, p + BG_AMQP_FRAME_HEADER_SIZE, f->size))
        return -1;
    const char *why = NULL;
    bg_amqp_content_header_t h;
    int rc = p ? bg_amqp_validate_header(f->channel, p + BG_AMQP_FRAME_HEADER_SIZE, f->size,
                                         &s->lim, &why)
               : BG_AMQP_ERR_NOMEM;
    if (rc == BG_AMQP_ERR_TOO_LARGE && ch->pub && evbuffer_get_length(ch->pub) &&
        f->size >= 12) {
        /* Nothing of this publish has gone upstream: refuse it on its
         * channel, in RabbitMQ's words, and drop its content whole. */
        const uint8_t *q = p + BG_AMQP_FRAME_HEADER_SIZE + 4;
        unsigned long long size = 0;
        for (int i = 0; i < 8; i++)
            size = size << 8 | q[i];
        char text[160];
        snprintf(text, sizeof text,
                 "PRECONDITION_FAILED - message size %llu is larger than configured max size %llu",
                 size,
                 (unsigned long long)(s->lim.max_body_size ? s->lim.max_body_size
                                                           : BG_AMQP_MAX_BODY_DEFAULT));
        return bg_amqp_chan__refuse_held_publish(s, in, ch, f, len, BG_AMQP_PRECONDITION_FAILED,
                                                 text);
    }
    if (rc == BG_AMQP_OK)
        rc = bg_amqp_content_header_parse(p + BG_AMQP_FRAME_HEADER_SIZE, f->size, &h, &why);
    if (rc != BG_AMQP_OK) {
        uint16_t code = bg_amqp_status_reply_code(rc);
        char text[200];
        snprintf(text, sizeof text, "%s - content header: %s", bg_amqp_reply_name(code),
                 why ? why : "malformed");
        return bg_amqp_chan__content_error(s, code, text);
    }
    if (h.flags & AMQP_BASIC_USER_ID_FLAG)
        /* RabbitMQ checks user_id against the user that logged in, which
         * upstream is busgate's own for every client: the message would be
         * "validated" as busgate's, and a wrong value draws a 406 naming
         * busgate's upstream user. Refused in busgate's own words. */
        return bg_amqp_chan__refuse_held_publish(
            s, in, ch, f, len, BG_AMQP_PRECONDITION_FAILED,
            "PRECONDITION_FAILED - user_id property is not supported through busgate");
    ch->body_left = h.body_size;
    ch->expect = h.body_size ? 2 : 0;
    if (ch->pub) /* the publish it belongs to, then the header */
        evbuffer_add_buffer(bg_amqp_up_out(s), ch->pub);
    bg_amqp_chan__forward(s, in, len);
    return 1;
}

static int bg_amqp_chan__client_content(bg_amqp_session_t *s, struct evbuffer *in,
                                        bg_amqp_frame_t *f, size_t len)
{
    bg_amqp_channel_t *ch = bg_amqp_chan__get(s, f->channel, 0);
    if (!ch || ch->cli.state == BG_AMQP_LEG_CLOSED) /* its channel expects channel.open */
        return bg_amqp_chan__content_unasked(s);
    /* Closing: the rest of a refused publish is dropped; the rest of a
     * forwarded one still goes upstream, where RabbitMQ reads it whole even
     * on a channel it is closing (a cut would be 505 UNEXPECTED_FRAME). */
    if (ch->cli.state != BG_AMQP_LEG_OPEN && !ch->expect) {
        evbuffer_drain(in, len);
        return 1;
    }
    if (f->type == BG_AMQP_FRAME_HEADER)
        return bg_amqp_chan__client_header(s, in, ch, f, len);
    if (ch->expect == 1)
        return bg_amqp_chan__content_expected(s, ch);
    if (ch->expect != 2)
        return bg_amqp_chan__content_unasked(s);
    if (f->size > ch->body_left) /* RabbitMQ waits for a body size it cannot reach */
        return bg_amqp_chan__content_error(s, BG_AMQP_UNEXPECTED_FRAME,
                                           "UNEXPECTED_FRAME - body frame beyond the announced "
                                           "body size");
    ch->body_left -= f->size;
    if (ch->body_left == 0)
        ch->expect = 0;
    bg_amqp_chan__forward(s, in, len);
    bg_amqp_chan__flush_up_held(s, ch); /* a refusal's close waited for this body */
    return 1;
}

int bg_amqp_chan_client_frame(bg_amqp_session_t *s, struct evbuffer *in, const bg_amqp_frame_t *f,
                              size_t frame_len)
{
    bg_amqp_frame_t fr = *f;
    if (fr.type == BG_AMQP_FRAME_METHOD)
        return bg_amqp_chan__client_method(s, in, &fr, frame_len);
    if (fr.channel == 0)
        return bg_amqp_chan__content_error(s, BG_AMQP_UNEXPECTED_FRAME,
                                           "UNEXPECTED_FRAME - content frame on channel 0");
    return bg_amqp_chan__client_content(s, in, &fr, frame_len);
}

/* ---- upstream frames ---- */

static uint32_t bg_amqp_chan__peek_id(struct evbuffer *in, const bg_amqp_frame_t *f)
{
    uint8_t p[BG_AMQP_FRAME_HEADER_SIZE + 4];
    if (f->type != BG_AMQP_FRAME_METHOD || f->size < 4 ||
        evbuffer_copyout(in, p, sizeof p) != (ev_ssize_t)sizeof p)
        return 0;
    return (uint32_t)p[7] << 24 | (uint32_t)p[8] << 16 | (uint32_t)p[9] << 8 | p[10];
}

/* Methods whose arguments busgate tracks. */
static int bg_amqp_chan__tracked(uint32_t id)
{
    return id == AMQP_BASIC_CONSUME_OK_METHOD || id == AMQP_BASIC_CANCEL_METHOD ||
           id == AMQP_BASIC_CANCEL_OK_METHOD || id == AMQP_QUEUE_DECLARE_OK_METHOD ||
           id == AMQP_CONNECTION_CLOSE_METHOD;
}

/* A frame from the broker that must not reach the client (see
 * bg_amqp_session_broker_error): the reason names its channel. */
static void bg_amqp_chan__broker_error(bg_amqp_session_t *s, const bg_amqp_frame_t *f,
                                       const char *why)
{
    char msg[160];
    snprintf(msg, sizeof msg, "%s (frame type %u, channel %u)", why, f->type, f->channel);
    bg_amqp_session_broker_error(s, msg);
}

static int bg_amqp_chan__decode_up(bg_amqp_session_t *s, struct evbuffer *in,
                                   const bg_amqp_frame_t *f, size_t len, bg_amqp_method_t *m)
{
    const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)len);
    bg_amqp_frame_t fr = *f;
    const char *why = NULL;
    fr.payload = p ? p + BG_AMQP_FRAME_HEADER_SIZE : NULL;
    if (!p) {
        bg_amqp_session_kill(s, 0, "out of memory");
        return -1;
    }
    if (bg_amqp_method_decode(&fr, NULL, &s->arena, m, &why) != BG_AMQP_OK) {
        bg_amqp_chan__broker_error(s, f, why ? why : "undecodable method");
        return -1;
    }
    return 0;
}

/* Returns 1 when the method must not reach the client (a cancel-ok the
 * client asked not to get). */
static int bg_amqp_chan__track_up(bg_amqp_session_t *s, bg_amqp_channel_t *ch,
                                  const bg_amqp_method_t *m)
{
    switch (m->id) {
    case AMQP_BASIC_CONSUME_OK_METHOD:
        bg_amqp_chan__consume_ok(s, ch,
                                 ((const amqp_basic_consume_ok_t *)m->decoded)->consumer_tag);
        break;
    case AMQP_BASIC_CANCEL_METHOD:
        bg_amqp_chan__server_cancel(s, ch,
                                    ((const amqp_basic_cancel_t *)m->decoded)->consumer_tag);
        break;
    case AMQP_BASIC_CANCEL_OK_METHOD:
        return bg_amqp_chan__cancel_ok(s, ch,
                                       ((const amqp_basic_cancel_ok_t *)m->decoded)->consumer_tag);
    case AMQP_QUEUE_DECLARE_OK_METHOD:
        /* The answer to an earlier declare must not undo a later one. */
        if (ch->declares_waiting && --ch->declares_waiting == 0 && ch->last_declare_waits)
            bg_amqp_chan__copy(ch->last_queue,
                               ((const amqp_queue_declare_ok_t *)m->decoded)->queue);
        break;
    default: break;
    }
    return 0;
}

/* A method whose arguments busgate tracks (bg_amqp_chan__tracked), on ch
 * in any state: what RabbitMQ sent before it saw a close busgate sent still
 * ends consumers and answers declares, and a cancel-ok the client asked not
 * to get must stay back also when the frame is otherwise relayed (a
 * refusal waiting for RabbitMQ's close-ok). 1 when it must not reach the
 * client (drained), 0 to go on, -1 closing. */
static int bg_amqp_chan__up_track(bg_amqp_session_t *s, bg_amqp_channel_t *ch,
                                  const bg_amqp_frame_t *f, struct evbuffer *in, size_t len)
{
    bg_amqp_method_t m;
    if (bg_amqp_chan__decode_up(s, in, f, len, &m) != 0)
        return -1;
    int quiet = bg_amqp_chan__track_up(s, ch, &m);
    bg_amqp_arena_reset(&s->arena);
    if (quiet ||
        (m.id == AMQP_BASIC_CANCEL_METHOD && !(s->caps & BG_AMQP_CAP_CONSUMER_CANCEL_NOTIFY))) {
        evbuffer_drain(in, len); /* asked for busgate's count, not the client's */
        return 1;
    }
    return 0;
}

/* The broker closes the connection: relay its close, answer close-ok
 * upstream, wait for the client's close-ok. */
/* RabbitMQ names its user, which is busgate's, in some refusals ("access
 * to queue 'q' in vhost '/' refused for user 'busgate'"): the client gets
 * the close (channel n; 0: the connection) at the head of in with that name
 * taken out (bg_amqp_reply_text_unnamed). 1 when it was written to the
 * client so, 0 when it names no one (relay it as it is), -1 when the
 * session closed. */
static int bg_amqp_chan__close_unnamed(bg_amqp_session_t *s, uint16_t n, const bg_amqp_frame_t *f,
                                       struct evbuffer *in, size_t len)
{
    const char *user = s->aw->g->cfg->amqp.upstream.username;
    const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)len);
    if (!user || !user[0] || !p || !memmem(p, len, user, strlen(user)))
        return 0;
    bg_amqp_method_t m;
    if (bg_amqp_chan__decode_up(s, in, f, len, &m) != 0)
        return -1;
    uint16_t code, cls, mid;
    amqp_bytes_t t;
    if (n) {
        const amqp_channel_close_t *c = m.decoded;
        code = c->reply_code, t = c->reply_text, cls = c->class_id, mid = c->method_id;
    } else {
        const amqp_connection_close_t *c = m.decoded;
        code = c->reply_code, t = c->reply_text, cls = c->class_id, mid = c->method_id;
    }
    char text[2048]; /* the writer cuts it to a shortstr's 255 bytes */
    int named = bg_amqp_reply_text_unnamed(t.bytes, t.len, user, text, sizeof text);
    bg_amqp_arena_reset(&s->arena);
    if (!named)
        return 0;
    evbuffer_drain(in, len);
    bg_wr_t wr;
    bg_wr_init(&wr, 128, 1024);
    int rc = n ? bg_amqp_write_channel_close(&wr, n, code, text, cls, mid)
               : bg_amqp_write_connection_close(&wr, code, text, cls, mid);
    return bg_amqp_chan__to_client(s, &wr, rc) == 0 ? 1 : -1;
}

/* Logs the broker's connection.close at the head of in (its text as the
 * client gets it) and keeps it for session_end. 0, or -1 when it cannot be
 * decoded (the session closed). */
static int bg_amqp_chan__note_up_close(bg_amqp_session_t *s, const bg_amqp_frame_t *f,
                                       struct evbuffer *in, size_t len)
{
    bg_amqp_method_t m;
    if (bg_amqp_chan__decode_up(s, in, f, len, &m) != 0)
        return -1;
    const amqp_connection_close_t *c = m.decoded;
    const char *user = s->aw->g->cfg->amqp.upstream.username;
    char text[512];
    if (!user || !user[0] ||
        !bg_amqp_reply_text_unnamed(c->reply_text.bytes, c->reply_text.len, user, text,
                                    sizeof text))
        snprintf(text, sizeof text, "%.*s", (int)c->reply_text.len,
                 (const char *)c->reply_text.bytes);
    uint16_t code = c->reply_code;
    bg_amqp_arena_reset(&s->arena);
    bg_amqp_session_broker_closed(s, code, text);
    return 0;
}

static int bg_amqp_chan__up_connection_close(bg_amqp_session_t *s, const bg_amqp_frame_t *f,
                                             struct evbuffer *in, size_t len)
{
    if (bg_amqp_chan__note_up_close(s, f, in, len) != 0)
        return -1;
    int unnamed = bg_amqp_chan__close_unnamed(s, 0, f, in, len);
    if (unnamed < 0)
        return -1;
    if (!unnamed)
        evbuffer_remove_buffer(in, bg_amqp_cli_out(s), len);
    bg_wr_t wr;
    bg_wr_init(&wr, 16, 64);
    if (bg_amqp_write_connection_close_ok(&wr) == BG_AMQP_OK)
        (void)bg_amqp_up_send(s, &wr);
    bg_wr_free(&wr);
    bg_amqp_session_await_close_ok(s);
    return -1;
}

/* RabbitMQ closed channel n itself while busgate's refusal on it is held
 * (deferred): RabbitMQ refused something the client sent before the refused
 * method (a publish to a missing exchange: 404), and never saw that method.
 * The client gets RabbitMQ's close, as from RabbitMQ alone, in place of
 * busgate's refusal, which is dropped (its decision was audited when it was
 * made; nothing of it went upstream): a client without confirms learns
 * that its publish failed. What RabbitMQ sent before has reached the client
 * ahead of it. busgate answers RabbitMQ's close upstream, as for any close
 * crossing its own; the client leg keeps waiting for one close-ok, which
 * answers busgate's close there and is not forwarded (sent_relay stays 0).
 * 0, or -1 when the session closed. */
static int bg_amqp_chan__up_close_over_refusal(bg_amqp_session_t *s, uint16_t n,
                                               bg_amqp_channel_t *ch, const bg_amqp_frame_t *f,
                                               struct evbuffer *in, size_t len)
{
    evbuffer_free(ch->deferred);
    ch->deferred = NULL;
    s->ndeferred--;
    int rc = bg_amqp_chan__close_unnamed(s, n, f, in, len);
    if (rc < 0)
        return -1;
    if (rc == 0)
        evbuffer_remove_buffer(in, bg_amqp_cli_out(s), len);
    return bg_amqp_chan__answer_close(s, n, ch, 0) == 0 ? 0 : -1;
}

/* Frames of a channel busgate is closing upstream itself: dropped. A close
 * that crossed busgate's is answered (RabbitMQ still sends the close-ok to
 * busgate's); that close-ok ends the upstream leg. Tracked methods were
 * tracked before (bg_amqp_chan__up_track), and those the client must not
 * get are gone already. */
static int bg_amqp_chan__up_closing_bg(bg_amqp_session_t *s, uint16_t n, bg_amqp_channel_t *ch,
                                       const bg_amqp_frame_t *f, uint32_t id, struct evbuffer *in,
                                       size_t len)
{
    if (ch->deferred && id != AMQP_CHANNEL_CLOSE_METHOD && id != AMQP_CHANNEL_CLOSE_OK_METHOD) {
        /* Sent before RabbitMQ saw the close: the client still gets it,
         * ahead of the refusal. */
        evbuffer_remove_buffer(in, bg_amqp_cli_out(s), len);
        return 0;
    }
    if (ch->deferred && id == AMQP_CHANNEL_CLOSE_METHOD)
        return bg_amqp_chan__up_close_over_refusal(s, n, ch, f, in, len);
    evbuffer_drain(in, len);
    if (id == AMQP_CHANNEL_CLOSE_METHOD && bg_amqp_chan__answer_close(s, n, ch, 0) != 0)
        return -1;
    if (id == AMQP_CHANNEL_CLOSE_OK_METHOD) {
        bg_amqp_chan__send_deferred(s, ch);
        if (s->dead)
            return -1;
        ch->up.sent = 0;
        bg_amqp_chan__maybe_closed(s, n, ch);
    }
    return 0;
}

/* RabbitMQ's channel.close on a channel busgate is not closing itself:
 * relayed to the client, whose close-ok goes back. 1 relay it, 0 done. */
static int bg_amqp_chan__up_close(bg_amqp_session_t *s, uint16_t n, bg_amqp_channel_t *ch,
                                  struct evbuffer *in, size_t len)
{
    if (ch->up.got || ch->cli.state == BG_AMQP_LEG_CLOSED || ch->cli.sent) {
        /* Nobody on the client leg to answer it (a repeated close, or the
         * client's leg is done): busgate answers. */
        evbuffer_drain(in, len);
        return bg_amqp_chan__answer_close(s, n, ch, 0) == 0 ? 0 : -1;
    }
    ch->up.state = BG_AMQP_LEG_CLOSING;
    ch->up.got = 1;
    ch->cli.state = BG_AMQP_LEG_CLOSING;
    ch->cli.sent = ch->cli.sent_relay = 1;
    if (ch->pub && evbuffer_get_length(ch->pub)) { /* a publish that never went up: */
        evbuffer_drain(ch->pub, evbuffer_get_length(ch->pub)); /* it and its content */
        ch->expect = 0;                                          /* are dropped */
    }
    return 1;
}

/* RabbitMQ's channel.close-ok: relayed when it answers the client's close. */
static void bg_amqp_chan__up_close_ok(bg_amqp_session_t *s, uint16_t n, bg_amqp_channel_t *ch,
                                      struct evbuffer *in, size_t len)
{
    if (ch->up.sent && ch->up.sent_relay && ch->cli.got) {
        ch->cli.got = 0;
        evbuffer_remove_buffer(in, bg_amqp_cli_out(s), len);
    } else {
        evbuffer_drain(in, len); /* not one the client waits for */
    }
    ch->up.sent = ch->up.sent_relay = 0;
    bg_amqp_chan__maybe_closed(s, n, ch);
}

/* Methods RabbitMQ sends with content. */
static int bg_amqp_chan__has_content(uint32_t id)
{
    return id == AMQP_BASIC_DELIVER_METHOD || id == AMQP_BASIC_GET_OK_METHOD ||
           id == AMQP_BASIC_RETURN_METHOD;
}

/* A content frame from RabbitMQ: relayed when its method was, then what
 * busgate held for the client goes out once the command is complete. */
static int bg_amqp_chan__down_content(bg_amqp_session_t *s, uint16_t n, bg_amqp_channel_t *ch,
                                      const bg_amqp_frame_t *f, struct evbuffer *in, size_t len)
{
    int relay = ch->down_expect ? ch->down_relay : bg_amqp_chan__relays_content(ch);
    if (ch->down_expect == 1 && f->type == BG_AMQP_FRAME_HEADER) {
        uint8_t h[BG_AMQP_FRAME_HEADER_SIZE + 12];
        if (f->size < 12 || evbuffer_copyout(in, h, sizeof h) != (ev_ssize_t)sizeof h) {
            bg_amqp_chan__broker_error(s, f, "content header too short");
            return -1;
        } else {
            const uint8_t *p = h + BG_AMQP_FRAME_HEADER_SIZE + 4;
            uint64_t size = 0;
            for (int i = 0; i < 8; i++)
                size = size << 8 | p[i];
            ch->down_left = size;
            ch->down_expect = size ? 2 : 0;
        }
    } else if (ch->down_expect == 2 && f->type == BG_AMQP_FRAME_BODY) {
        ch->down_left -= f->size < ch->down_left ? f->size : ch->down_left;
        if (ch->down_left == 0)
            ch->down_expect = 0;
    }
    if (relay)
        evbuffer_remove_buffer(in, bg_amqp_cli_out(s), len);
    else
        evbuffer_drain(in, len);
    bg_amqp_chan__flush_held(s, n, ch);
    return 0;
}

int bg_amqp_chan_upstream_frame(bg_amqp_session_t *s, struct evbuffer *in,
                                const bg_amqp_frame_t *f, size_t frame_len)
{
    uint16_t n = f->channel;
    uint32_t id = bg_amqp_chan__peek_id(in, f);
    bg_amqp_channel_t *ch = bg_amqp_chan__get(s, n, 0);
    /* What RabbitMQ never sends (a channel the client never opened, content
     * with no delivery, a method busgate does not know) would reach the
     * client as if it were RabbitMQ's answer to something: not relayed. */
    const char *why = NULL;
    if (bg_amqp_validate_server_frame(f->type, n, id, ch && ch->up.state != BG_AMQP_LEG_CLOSED,
                                      ch ? ch->down_expect : 0, &why) != BG_AMQP_OK) {
        bg_amqp_chan__broker_error(s, f, why);
        return -1;
    }
    if (ch && (f->type == BG_AMQP_FRAME_HEADER || f->type == BG_AMQP_FRAME_BODY))
        return bg_amqp_chan__down_content(s, n, ch, f, in, frame_len);
    /* A delivery follows no client method: a reload that refused its
     * consumer must take effect here, before it is relayed. */
    if (ch && id == AMQP_BASIC_DELIVER_METHOD && bg_amqp_chan_policy_refresh(s, 0) != 0)
        return -1;
    if (ch && bg_amqp_chan__has_content(id)) {
        ch->down_expect = 1;
        ch->down_relay = (uint8_t)bg_amqp_chan__relays_content(ch);
        if (!ch->down_relay) { /* its content frames follow down_relay */
            evbuffer_drain(in, frame_len);
            return 0;
        }
    }
    if (n == 0 && id == AMQP_CONNECTION_CLOSE_METHOD)
        return bg_amqp_chan__up_connection_close(s, f, in, frame_len);
    if (n == 0 && (id == AMQP_CONNECTION_BLOCKED_METHOD || id == AMQP_CONNECTION_UNBLOCKED_METHOD) &&
        !(s->caps & BG_AMQP_CAP_CONNECTION_BLOCKED)) {
        evbuffer_drain(in, frame_len); /* the client did not ask for them */
        return 0;
    }
    /* Tracked first, whatever the channel's state (see up_track). */
    if (ch && bg_amqp_chan__tracked(id)) {
        int rc = bg_amqp_chan__up_track(s, ch, f, in, frame_len);
        if (rc != 0)
            return rc < 0 ? -1 : 0;
    }
    if (ch && bg_amqp_chan__closing_up_itself(ch))
        return bg_amqp_chan__up_closing_bg(s, n, ch, f, id, in, frame_len);
    if (ch && id == AMQP_CHANNEL_CLOSE_METHOD) {
        int rc = bg_amqp_chan__up_close(s, n, ch, in, frame_len);
        if (rc <= 0)
            return rc;
        if ((rc = bg_amqp_chan__close_unnamed(s, n, f, in, frame_len)) != 0)
            return rc < 0 ? -1 : 0;
    } else if (ch && id == AMQP_CHANNEL_CLOSE_OK_METHOD) {
        bg_amqp_chan__up_close_ok(s, n, ch, in, frame_len);
        return 0;
    }
    evbuffer_remove_buffer(in, bg_amqp_cli_out(s), frame_len); /* moves chains, no copy */
    return 0;
}
