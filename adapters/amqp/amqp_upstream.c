/* busgate's connection to RabbitMQ (see amqp_upstream.h). */
#include "adapters/amqp/amqp_upstream.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adapters/amqp/amqp_method.h"
#include "adapters/amqp/amqp_validate.h"
#include "broker/log.h"
#include "broker/util_net.h"
#include "broker/util_tls.h"

#define BG_AMQP_UP_LOW_WATER (1u << 20)
#define BG_AMQP_UP_CONNECT_TIMEOUT_S 10
/* Connect to open-ok, whatever the broker sends meanwhile. Longer than a
 * session's own handshake deadline (10 s from the client's connect, before
 * this leg starts), which answers the client in its own words first: this
 * one bounds the readiness probe, which has no other. */
#define BG_AMQP_UP_HANDSHAKE_S 15

typedef enum {
    BG_AMQP_UP_CONNECTING = 0,
    BG_AMQP_UP_START,  /* header sent: connection.start next */
    BG_AMQP_UP_TUNE,   /* start-ok sent: connection.tune next */
    BG_AMQP_UP_TUNED,  /* tune seen: waiting for the session's tune-ok */
    BG_AMQP_UP_OPEN,   /* tune-ok + open sent: open-ok next */
    BG_AMQP_UP_READY,
    BG_AMQP_UP_FAILED,
} bg_amqp_up_state_t;

struct bg_amqp_up_s {
    bg_amqp_global_t *g;
    struct bufferevent *bev;
    struct event *hb_ev;
    struct event *hs_ev; /* the handshake deadline, until open-ok */
    bg_amqp_up_cbs_t cbs;
    void *arg;
    bg_amqp_up_state_t state;
    uint32_t caps;
    uint32_t frame_max; /* negotiated; BG_AMQP_FRAME_MIN_SIZE before tune */
    uint16_t heartbeat;
    int64_t last_recv_ms;
    bg_amqp_arena_t arena;
    char where[300];
};

static int64_t bg_amqp_up__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int bg_amqp_up_is_ready(const bg_amqp_up_t *u) { return u->state == BG_AMQP_UP_READY; }
const char *bg_amqp_up_where(const bg_amqp_up_t *u) { return u->where; }
struct evbuffer *bg_amqp_up_output(bg_amqp_up_t *u) { return bufferevent_get_output(u->bev); }

int bg_amqp_up_write_buffer(bg_amqp_up_t *u, struct evbuffer *src)
{
    size_t n = evbuffer_get_length(src);
    if (u->state == BG_AMQP_UP_FAILED) {
        evbuffer_drain(src, n);
        return 0;
    }
    return bg_util_bev_send(u->bev, src, n, !u->g->upstream_tls);
}

void bg_amqp_up_set_reading(bg_amqp_up_t *u, int on)
{
    if (on)
        bufferevent_enable(u->bev, EV_READ);
    else
        bufferevent_disable(u->bev, EV_READ);
}

void bg_amqp_up_resume(bg_amqp_up_t *u)
{
    if (u->state == BG_AMQP_UP_FAILED)
        return;
    bufferevent_enable(u->bev, EV_READ);
    /* Bytes already read bring no read event: one deferred run takes them. */
    if (evbuffer_get_length(bufferevent_get_input(u->bev)) > 0)
        bufferevent_trigger(u->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

/* ---- frame helpers ---- */

int bg_amqp_evbuf_peek(struct evbuffer *in, uint32_t max, bg_amqp_frame_t *f, size_t *frame_len,
                       const char **why)
{
    uint8_t hdr[BG_AMQP_FRAME_HEADER_SIZE];
    size_t avail = evbuffer_get_length(in);
    if (avail < sizeof hdr || evbuffer_copyout(in, hdr, sizeof hdr) != (ev_ssize_t)sizeof hdr)
        return 0;
    int64_t rc = bg_amqp_frame_peek(hdr, sizeof hdr, max, f, why);
    if (rc < 0)
        return (int)rc;
    size_t total = (size_t)f->size + BG_AMQP_FRAME_OVERHEAD;
    if (avail < total)
        return 0;
    struct evbuffer_ptr pos;
    uint8_t end = 0;
    if (evbuffer_ptr_set(in, &pos, total - 1, EVBUFFER_PTR_SET) != 0 ||
        evbuffer_copyout_from(in, &pos, &end, 1) != 1 || end != BG_AMQP_FRAME_END) {
        if (why)
            *why = "frame end octet is not 0xCE";
        return BG_AMQP_ERR_FRAME;
    }
    f->payload = NULL;
    *frame_len = total;
    return 1;
}

int bg_amqp_evbuf_send(struct evbuffer *out, bg_wr_t *wr)
{
    int rc = (!wr->failed && evbuffer_add(out, wr->buf, wr->len) == 0) ? 0 : -1;
    bg_wr_reset(wr);
    return rc;
}

/* ---- handshake ---- */

static void bg_amqp_up__fail(bg_amqp_up_t *u, const char *why)
{
    if (u->state == BG_AMQP_UP_FAILED)
        return;
    u->state = BG_AMQP_UP_FAILED;
    if (u->hb_ev)
        event_del(u->hb_ev);
    if (u->hs_ev)
        event_del(u->hs_ev);
    u->cbs.failed(u->arg, u->where, why); /* logs it, with the session */
}

static int bg_amqp_up__write(bg_amqp_up_t *u, bg_wr_t *wr, int secret)
{
    int rc = (!wr->failed && evbuffer_add(bufferevent_get_output(u->bev), wr->buf, wr->len) == 0)
                 ? 0
                 : -1;
    if (secret && wr->buf)
        OPENSSL_cleanse(wr->buf, wr->len); /* start-ok carries busgate's password */
    bg_wr_free(wr);
    return rc;
}

static int bg_amqp_up__on_start(bg_amqp_up_t *u, const amqp_connection_start_t *m)
{
    if (!bg_amqp_start_offers(&m->mechanisms, "PLAIN")) {
        bg_amqp_up__fail(u, "the broker does not offer PLAIN");
        return -1;
    }
    const bg_config_amqp_t *a = &u->g->cfg->amqp;
    bg_wr_t wr;
    bg_wr_init(&wr, 512, 1u << 16);
    if (bg_amqp_write_connection_start_ok(&wr, u->caps, a->upstream.username,
                                          a->upstream.password) != BG_AMQP_OK ||
        bg_amqp_up__write(u, &wr, 1) != 0) {
        bg_amqp_up__fail(u, "cannot send connection.start-ok");
        return -1;
    }
    u->state = BG_AMQP_UP_TUNE;
    return 0;
}

/* The broker closed during the handshake: usually busgate's own login
 * refused (403) or the vhost missing (530). Its text, which goes to the log
 * and to the session_end detail, never names busgate's upstream user. */
static int bg_amqp_up__on_close(bg_amqp_up_t *u, const amqp_connection_close_t *m)
{
    char why[400], text[256];
    size_t len = m->reply_text.len > 200 ? 200 : m->reply_text.len;
    if (!bg_amqp_reply_text_unnamed(m->reply_text.bytes, len, u->g->cfg->amqp.upstream.username,
                                    text, sizeof text))
        snprintf(text, sizeof text, "%.*s", (int)len, (const char *)m->reply_text.bytes);
    snprintf(why, sizeof why, "broker closed the connection during the handshake: %u %s",
             m->reply_code, text);
    bg_amqp_up__fail(u, why);
    return -1;
}

static int bg_amqp_up__on_handshake_method(bg_amqp_up_t *u, const bg_amqp_method_t *m)
{
    if (m->id == AMQP_CONNECTION_CLOSE_METHOD)
        return bg_amqp_up__on_close(u, m->decoded);
    if (u->state == BG_AMQP_UP_START && m->id == AMQP_CONNECTION_START_METHOD)
        return bg_amqp_up__on_start(u, m->decoded);
    if (u->state == BG_AMQP_UP_TUNE && m->id == AMQP_CONNECTION_TUNE_METHOD) {
        const amqp_connection_tune_t *t = m->decoded;
        u->state = BG_AMQP_UP_TUNED;
        u->cbs.tuned(u->arg, t->channel_max, t->frame_max, t->heartbeat);
        return 0;
    }
    if (u->state == BG_AMQP_UP_OPEN && m->id == AMQP_CONNECTION_OPEN_OK_METHOD) {
        u->state = BG_AMQP_UP_READY;
        event_del(u->hs_ev);
        atomic_store(&u->g->upstream_seen_ok, 1);
        u->cbs.ready(u->arg);
        return 0;
    }
    bg_amqp_up__fail(u, "unexpected method during the handshake");
    return -1;
}

/* A heartbeat frame from the broker: dropped (this leg's heartbeat is
 * busgate's own); one with a payload or on a channel other than 0 is a
 * framing error, as on the client leg. 0, or -1 when u failed. */
static int bg_amqp_up__heartbeat(bg_amqp_up_t *u, struct evbuffer *in, const bg_amqp_frame_t *f,
                                 size_t frame_len)
{
    const char *why = NULL;
    if (bg_amqp_validate_heartbeat(f->channel, f->size, &why) != BG_AMQP_OK) {
        char msg[160];
        snprintf(msg, sizeof msg, "bad frame from the broker: %s", why);
        bg_amqp_up__fail(u, msg);
        return -1;
    }
    evbuffer_drain(in, frame_len);
    return 0;
}

static int bg_amqp_up__on_handshake_frame(bg_amqp_up_t *u, struct evbuffer *in,
                                          bg_amqp_frame_t *f, size_t frame_len)
{
    if (f->type == BG_AMQP_FRAME_HEARTBEAT)
        return bg_amqp_up__heartbeat(u, in, f, frame_len);
    const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)frame_len);
    const char *why = NULL;
    bg_amqp_method_t m;
    f->payload = p ? p + BG_AMQP_FRAME_HEADER_SIZE : NULL;
    int rc = (p && f->type == BG_AMQP_FRAME_METHOD)
                 ? bg_amqp_method_decode(f, NULL, &u->arena, &m, &why)
                 : BG_AMQP_ERR_FRAME;
    if (rc != BG_AMQP_OK) {
        char msg[160];
        snprintf(msg, sizeof msg, "bad handshake frame: %s", why ? why : "not a method");
        bg_amqp_up__fail(u, msg);
        return -1;
    }
    rc = bg_amqp_up__on_handshake_method(u, &m);
    bg_amqp_arena_reset(&u->arena);
    if (u->state != BG_AMQP_UP_FAILED)
        evbuffer_drain(in, frame_len);
    return rc;
}

/* Handles the whole frames in in, until one is missing or u failed. */
static void bg_amqp_up__frames(bg_amqp_up_t *u, struct evbuffer *in)
{
    while (u->state != BG_AMQP_UP_FAILED) {
        bg_amqp_frame_t f;
        size_t len = 0;
        const char *why = NULL;
        int rc = bg_amqp_evbuf_peek(in, u->frame_max, &f, &len, &why);
        if (rc == 0)
            return;
        if (rc < 0) {
            char msg[160];
            snprintf(msg, sizeof msg, "bad frame from the broker: %s", why ? why : "?");
            bg_amqp_up__fail(u, msg);
            return;
        }
        if (u->state != BG_AMQP_UP_READY) {
            if (bg_amqp_up__on_handshake_frame(u, in, &f, len) != 0)
                return;
            continue;
        }
        if (f.type == BG_AMQP_FRAME_HEARTBEAT) {
            if (bg_amqp_up__heartbeat(u, in, &f, len) != 0)
                return;
            continue;
        }
        if (u->cbs.frame(u->arg, in, &f, len) != 0)
            return; /* the session is closing: nothing more is relayed */
    }
}

static void bg_amqp_up__on_read(struct bufferevent *bev, void *arg)
{
    bg_amqp_up_t *u = arg;
    u->last_recv_ms = bg_amqp_up__now_ms();
    if (u->state == BG_AMQP_UP_READY && !u->g->upstream_tls)
        bg_util_bev_read_more(bev, BG_AMQP_READ_BURST); /* deliveries, in one read */
    bg_amqp_up__frames(u, bufferevent_get_input(bev));
    /* u outlives its callbacks (the session frees it from its own event). */
    if (u->cbs.read_done)
        u->cbs.read_done(u->arg);
}

int bg_amqp_up_tune_ok(bg_amqp_up_t *u, uint16_t channel_max, uint32_t frame_max,
                       uint16_t heartbeat)
{
    bg_wr_t wr;
    bg_wr_init(&wr, 256, 1u << 16);
    if (bg_amqp_write_connection_tune_ok(&wr, channel_max, frame_max, heartbeat) != BG_AMQP_OK ||
        bg_amqp_write_connection_open(&wr, u->g->cfg->amqp.upstream.vhost) != BG_AMQP_OK ||
        bg_amqp_up__write(u, &wr, 0) != 0)
        return -1;
    u->frame_max = frame_max;
    u->heartbeat = heartbeat;
    u->state = BG_AMQP_UP_OPEN;
    if (heartbeat > 0) {
        struct timeval tv = {heartbeat > 1 ? heartbeat / 2 : 1, 0};
        event_add(u->hb_ev, &tv);
    }
    /* The connect timeout no longer applies: heartbeats take over (and,
     * until open-ok, the handshake deadline: hs_ev). */
    bufferevent_set_timeouts(u->bev, NULL, NULL);
    return 0;
}

/* ---- heartbeats, I/O events ---- */

static void bg_amqp_up__on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    bg_amqp_up_t *u = arg;
    if (u->state == BG_AMQP_UP_FAILED)
        return;
    /* While busgate does not read this leg (the client is slow to take what
     * RabbitMQ sends), RabbitMQ's heartbeats sit unread in the socket:
     * silence says nothing about RabbitMQ then. */
    if (!(bufferevent_get_enabled(u->bev) & EV_READ))
        u->last_recv_ms = bg_amqp_up__now_ms();
    if (bg_amqp_up__now_ms() - u->last_recv_ms > (int64_t)u->heartbeat * 2000) {
        bg_amqp_up__fail(u, "missed heartbeats");
        return;
    }
    static const uint8_t hb[BG_AMQP_FRAME_OVERHEAD] = {BG_AMQP_FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0,
                                                        BG_AMQP_FRAME_END};
    evbuffer_add(bufferevent_get_output(u->bev), hb, sizeof hb);
}

/* No open-ok by the deadline: a broker that tunes and then says nothing
 * would otherwise hold the connection for good (with heartbeat 0, as the
 * readiness probe asks, no timeout is left on it). */
static void bg_amqp_up__on_deadline(evutil_socket_t fd, short what, void *arg)
{
    bg_amqp_up_t *u = arg;
    if (u->state == BG_AMQP_UP_READY || u->state == BG_AMQP_UP_FAILED)
        return;
    char why[96];
    snprintf(why, sizeof why, "handshake not done within %d s (no %s from the broker)",
             BG_AMQP_UP_HANDSHAKE_S,
             u->state >= BG_AMQP_UP_TUNED  ? "connection.open-ok"
             : u->state == BG_AMQP_UP_TUNE ? "connection.tune"
                                           : "connection.start");
    bg_amqp_up__fail(u, why);
}

static void bg_amqp_up__on_write(struct bufferevent *bev, void *arg)
{
    bg_amqp_up_t *u = arg;
    if (u->state == BG_AMQP_UP_READY && u->cbs.drained)
        u->cbs.drained(u->arg);
}

static void bg_amqp_up__on_event(struct bufferevent *bev, short what, void *arg)
{
    bg_amqp_up_t *u = arg;
    if (what & BEV_EVENT_CONNECTED) {
        bg_util_nodelay(bufferevent_getfd(bev));
        bg_util_keepalive(bufferevent_getfd(bev));
        u->last_recv_ms = bg_amqp_up__now_ms();
        u->state = BG_AMQP_UP_START;
        if (evbuffer_add(bufferevent_get_output(bev), BG_AMQP_PROTOCOL_HEADER,
                         BG_AMQP_PROTOCOL_HEADER_LEN) != 0)
            bg_amqp_up__fail(u, "out of memory");
        return;
    }
    char why[400];
    if (bg_util_tls_upstream_failure(bev, what, u->state == BG_AMQP_UP_CONNECTING, why,
                                     sizeof why))
        bg_amqp_up__fail(u, why);
}

/* The upstream bufferevent: plain, or TLS when amqp.upstream.tls is set
 * (SNI and, with verify, the certificate must name the configured host). */
static struct bufferevent *bg_amqp_up__bev(struct event_base *base, bg_amqp_global_t *g,
                                           const char *host)
{
    return bg_util_tls_upstream_bev(base, g->upstream_tls, host, g->cfg->amqp.upstream.tls.verify);
}

bg_amqp_up_t *bg_amqp_up_connect(struct event_base *base, struct evdns_base *dns,
                                 bg_amqp_global_t *g, uint32_t caps, const bg_amqp_up_cbs_t *cbs,
                                 void *arg)
{
    const bg_addr_t *h = &g->cfg->amqp.upstream.host;
    bg_amqp_up_t *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    u->g = g, u->cbs = *cbs, u->arg = arg, u->caps = caps;
    u->frame_max = BG_AMQP_FRAME_MIN_SIZE;
    bg_amqp_arena_init(&u->arena);
    snprintf(u->where, sizeof u->where, "%s:%u", h->host, h->port);
    u->bev = bg_amqp_up__bev(base, g, h->host);
    u->hb_ev = event_new(base, -1, EV_PERSIST, bg_amqp_up__on_heartbeat, u);
    u->hs_ev = evtimer_new(base, bg_amqp_up__on_deadline, u);
    if (!u->bev || !u->hb_ev || !u->hs_ev) {
        bg_amqp_up_free(u);
        return NULL;
    }
    bufferevent_setcb(u->bev, bg_amqp_up__on_read, bg_amqp_up__on_write, bg_amqp_up__on_event, u);
    bufferevent_setwatermark(u->bev, EV_WRITE, BG_AMQP_UP_LOW_WATER, 0);
    bufferevent_set_max_single_read(u->bev, 256 * 1024);
    struct timeval tv = {BG_AMQP_UP_CONNECT_TIMEOUT_S, 0};
    bufferevent_set_timeouts(u->bev, &tv, &tv);
    struct timeval hs = {BG_AMQP_UP_HANDSHAKE_S, 0};
    event_add(u->hs_ev, &hs);
    bufferevent_enable(u->bev, EV_READ | EV_WRITE);
    /* The worker's evdns base resolves on the loop; a failed lookup reaches
     * on_event as BEV_EVENT_ERROR with the resolver's error. */
    const char *fail = bg_util_bev_connect(u->bev, dns, h->host, h->port);
    if (fail) {
        bg_log_warn("amqp", "upstream %s: cannot connect: %s", u->where, fail);
        bg_amqp_up_free(u);
        return NULL;
    }
    return u;
}

void bg_amqp_up_detach(bg_amqp_up_t *u)
{
    u->state = BG_AMQP_UP_FAILED;
    if (u->hb_ev)
        event_del(u->hb_ev);
    if (u->hs_ev)
        event_del(u->hs_ev);
    if (u->bev)
        bufferevent_disable(u->bev, EV_READ | EV_WRITE);
}

void bg_amqp_up_free(bg_amqp_up_t *u)
{
    if (!u)
        return;
    if (u->hb_ev)
        event_free(u->hb_ev);
    if (u->hs_ev)
        event_free(u->hs_ev);
    if (u->bev)
        bufferevent_free(u->bev);
    bg_amqp_arena_free(&u->arena);
    free(u);
}
