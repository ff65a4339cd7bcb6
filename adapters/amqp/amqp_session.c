/* A proxied AMQP 0-9-1 client connection: lifecycle, I/O, backpressure and
 * timers. busgate terminates the handshake on both legs
 * (amqp_session_handshake.c), then relays frames, deciding every method
 * that names a resource (amqp_channel.c). Pass-through frames are moved
 * between evbuffers, never copied; only method and content-header frames
 * from the client are linearised to be validated and decoded.
 * Closing never frees a session inside a callback: it is marked dead and
 * freed from its own event. */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adapters/amqp/amqp_session-internal.h"
#include "audit/audit.h"
#include "broker/log.h"
#include "broker/util_net.h"
#include "broker/util_tls.h"

#define BG_AMQP_HIGH_WATER (8u << 20) /* pause the other side above this */
#define BG_AMQP_INPUT_SLACK (1u << 20) /* client input beyond one frame (read watermark) */
#define BG_AMQP_LOW_WATER (1u << 20)
#define BG_AMQP_CLOSE_WAIT_S 5 /* bound on waiting for a close-ok */
/* What a client is told when the broker leg fails, whatever the cause. */
#define BG_AMQP__UP_LOST "CONNECTION_FORCED - busgate lost its connection to the broker"
#define BG_AMQP__UP_MALFORMED "CONNECTION_FORCED - malformed frame from the broker"

int64_t bg_amqp_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t bg_amqp_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- output: staged or queued ---- */

struct evbuffer *bg_amqp_cli_out(bg_amqp_session_t *s)
{
    return s->cli_staging ? s->cli_stage : bufferevent_get_output(s->cli);
}

struct evbuffer *bg_amqp_up_out(bg_amqp_session_t *s)
{
    return s->up_staging ? s->up_stage : bg_amqp_up_output(s->up);
}

/* Bytes on their way to the client / the upstream (backpressure). */
static size_t bg_amqp__cli_queued(bg_amqp_session_t *s)
{
    return evbuffer_get_length(bufferevent_get_output(s->cli)) + evbuffer_get_length(s->cli_stage);
}

static size_t bg_amqp__up_queued(bg_amqp_session_t *s)
{
    if (!s->up)
        return 0;
    return evbuffer_get_length(bg_amqp_up_output(s->up)) + evbuffer_get_length(s->up_stage);
}

static void bg_amqp__die(bg_amqp_session_t *s);

/* Writes the client's stage (one writev when nothing is queued before it).
 * A session that only waits for its output to flush ends here when the
 * write left nothing queued (no write event will tell). -1 when out of
 * memory (the stage is dropped then). */
static int bg_amqp__flush_cli(bg_amqp_session_t *s)
{
    size_t n = evbuffer_get_length(s->cli_stage);
    if (n == 0)
        return 0;
    s->cli_moving = 1; /* counted when staged (bg_amqp__count_out) */
    int rc = s->dead ? -1 : bg_util_bev_send(s->cli, s->cli_stage, n, !s->aw->g->client_tls);
    s->cli_moving = 0;
    if (rc != 0) {
        evbuffer_drain(s->cli_stage, evbuffer_get_length(s->cli_stage));
        return s->dead ? 0 : -1;
    }
    if (s->flush_die && evbuffer_get_length(bufferevent_get_output(s->cli)) == 0)
        bg_amqp__die(s);
    return 0;
}

/* Writes the upstream's stage; -1 when out of memory (dropped then). */
static int bg_amqp__flush_up(bg_amqp_session_t *s)
{
    if (evbuffer_get_length(s->up_stage) == 0)
        return 0;
    if (s->dead || !s->up || bg_amqp_up_write_buffer(s->up, s->up_stage) != 0) {
        evbuffer_drain(s->up_stage, evbuffer_get_length(s->up_stage));
        return s->dead ? 0 : -1;
    }
    return 0;
}

int bg_amqp_cli_send(bg_amqp_session_t *s, bg_wr_t *wr)
{
    return bg_amqp_evbuf_send(bg_amqp_cli_out(s), wr);
}

/* Every byte for the client enters its stage or its output buffer: counted
 * there, once (a stage moved on to the output is not counted again), so
 * bytes_out is what busgate sent the client, whichever path sent it. */
static void bg_amqp__count_out(struct evbuffer *b, const struct evbuffer_cb_info *info,
                               void *arg)
{
    bg_amqp_session_t *s = arg;
    (void)b;
    if (info->n_added == 0 || s->cli_moving)
        return;
    s->bytes_out += info->n_added;
    bg_metric_add(&s->aw->w->metrics.bytes_out[BG_PROTO_AMQP], info->n_added);
}

int bg_amqp_up_send(bg_amqp_session_t *s, bg_wr_t *wr)
{
    if (!s->up)
        return -1;
    return bg_amqp_evbuf_send(bg_amqp_up_out(s), wr);
}

static void bg_amqp__log(bg_amqp_session_t *s, bg_log_level_t lvl, const char *msg)
{
    bg_log_fields(lvl, "amqp", (bg_log_field_t[]){{"session", s->id}, {"peer", s->peer}}, 2, "%s",
                  msg);
}

/* A line about the broker leg: it also names the broker ("upstream"). */
static void bg_amqp__log_up(bg_amqp_session_t *s, bg_log_level_t lvl, const char *msg)
{
    const char *where = s->up ? bg_amqp_up_where(s->up) : "";
    bg_log_fields(lvl, "amqp",
                  (bg_log_field_t[]){{"session", s->id}, {"peer", s->peer}, {"upstream", where}},
                  3, "%s", msg);
}

/* ---- lifecycle ---- */

static void bg_amqp__free(bg_amqp_session_t *s)
{
    bg_amqp_worker_t *aw = s->aw;
    bg_amqp_audit_session_end(s);
    bg_amqp_chan_free_all(s);
    free(s->chans);
    if (s->cli)
        bg_util_tls_bev_free(s->cli, !s->cli_failed);
    bg_amqp_up_free(s->up);
    if (s->cli_stage)
        evbuffer_free(s->cli_stage);
    if (s->up_stage)
        evbuffer_free(s->up_stage);
    struct event *evs[] = {s->free_ev, s->hb_ev, s->expiry_ev, s->close_ev, s->refusal_ev};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i])
            event_free(evs[i]);
    bg_amqp_arena_free(&s->arena);
    bg_policy_principal_clear(&s->pp);
    bg_principal_clear(&s->principal);
    bg_snapshot_release(s->snap);
    TAILQ_REMOVE(&aw->sessions, s, link);
    aw->nsessions--;
    bg_metric_sub(&aw->w->metrics.conn_open[BG_PROTO_AMQP], 1);
    bg_limits_release(&s->conn_lim);
    free(s);
}

static void bg_amqp__on_free(evutil_socket_t fd, short what, void *arg) { bg_amqp__free(arg); }

static void bg_amqp__die(bg_amqp_session_t *s)
{
    if (s->dead)
        return;
    s->dead = 1;
    if (s->cli)
        bufferevent_disable(s->cli, EV_READ | EV_WRITE);
    if (s->up)
        bg_amqp_up_detach(s->up);
    event_active(s->free_ev, 0, 0);
}

/* Keeps the first reason the session is ending for its session_end event. */
static void bg_amqp__ending(bg_amqp_session_t *s, const char *why)
{
    if (why && !s->end_why[0])
        snprintf(s->end_why, sizeof s->end_why, "%s", why);
}

void bg_amqp_session_kill(bg_amqp_session_t *s, int flush, const char *why)
{
    if (s->dead)
        return;
    bg_amqp__ending(s, why);
    if (why)
        bg_amqp__log(s, BG_LOG_INFO, why);
    if (s->cli_gone) /* nothing can reach it any more */
        flush = 0;
    /* What is staged for the client is part of what must be flushed. */
    if (flush && bg_amqp__flush_cli(s) != 0)
        flush = 0;
    if (!flush || evbuffer_get_length(bufferevent_get_output(s->cli)) == 0) {
        bg_amqp__die(s);
        return;
    }
    /* The write callback ends it once the output is flushed; close_ev bounds it. */
    s->state = BG_AMQP_S_CLOSING;
    bufferevent_disable(s->cli, EV_READ);
    if (s->up)
        bg_amqp_up_detach(s->up);
    bufferevent_setwatermark(s->cli, EV_WRITE, 0, 0);
    struct timeval tv = {BG_AMQP_CLOSE_WAIT_S, 0};
    event_add(s->close_ev, &tv);
    s->flush_die = 1;
}

/* Closing: the client's close-ok must be read, even if reading was held
 * for a channel reopened too early (that channel no longer matters). */
static void bg_amqp__read_for_close_ok(bg_amqp_session_t *s)
{
    if (!s->cli)
        return;
    /* Also input left unprocessed while the broker's open-ok was awaited. */
    int was_stopped =
        s->stalled != 0 || s->cli_held || !(bufferevent_get_enabled(s->cli) & EV_READ);
    s->stalled = 0;
    s->cli_held = 0;
    bufferevent_enable(s->cli, EV_READ);
    /* What the stall (or a full output) left unread is read from the event
     * loop, not from inside whatever callback is closing the session now. */
    if (was_stopped && evbuffer_get_length(bufferevent_get_input(s->cli)) > 0)
        bufferevent_trigger(s->cli, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

void bg_amqp_session_close(bg_amqp_session_t *s, uint16_t code, const char *text,
                           uint16_t class_id, uint16_t method_id)
{
    if (s->dead || s->state == BG_AMQP_S_CLOSING)
        return;
    if (s->cli_gone) {
        bg_amqp__die(s);
        return;
    }
    char msg[320];
    snprintf(msg, sizeof msg, "closing connection: %u %s", code, text);
    bg_amqp__ending(s, msg + strlen("closing connection: ")); /* "320 CONNECTION_FORCED - ..." */
    bg_amqp__log(s, code >= 500 ? BG_LOG_WARN : BG_LOG_INFO, msg);
    if (code >= 500)
        bg_metric_add(&s->aw->w->metrics.protocol_errors[BG_PROTO_AMQP], 1);
    bg_wr_t wr;
    bg_wr_init(&wr, 320, 1u << 12);
    int rc = bg_amqp_write_connection_close(&wr, code, text, class_id, method_id);
    rc = rc == BG_AMQP_OK ? bg_amqp_cli_send(s, &wr) : -1;
    bg_wr_free(&wr);
    if (rc != 0) {
        bg_amqp__die(s);
        return;
    }
    if (s->up && bg_amqp_up_is_ready(s->up)) {
        bg_wr_init(&wr, 64, 1u << 12);
        if (bg_amqp_write_connection_close(&wr, 200, "client connection closed by busgate", 0, 0) ==
            BG_AMQP_OK)
            (void)bg_amqp_up_send(s, &wr);
        bg_wr_free(&wr);
    }
    s->state = BG_AMQP_S_CLOSING;
    bg_amqp__read_for_close_ok(s);
    if (s->expiry_ev)
        event_del(s->expiry_ev);
    if (s->refusal_ev)
        event_del(s->refusal_ev);
    struct timeval tv = {BG_AMQP_CLOSE_WAIT_S, 0};
    event_add(s->close_ev, &tv);
}

void bg_amqp_session_await_close_ok(bg_amqp_session_t *s)
{
    s->state = BG_AMQP_S_CLOSING;
    bg_amqp__read_for_close_ok(s);
    event_del(s->expiry_ev);
    event_del(s->refusal_ev);
    struct timeval tv = {BG_AMQP_CLOSE_WAIT_S, 0};
    event_add(s->close_ev, &tv);
}

void bg_amqp_session_await_upstream_close_ok(bg_amqp_session_t *s)
{
    s->state = BG_AMQP_S_CLOSING_UP;
    event_del(s->expiry_ev);
    event_del(s->refusal_ev);
    struct timeval tv = {BG_AMQP_CLOSE_WAIT_S, 0};
    event_add(s->close_ev, &tv);
}

void bg_amqp_session_broker_closed(bg_amqp_session_t *s, uint16_t code, const char *text)
{
    char msg[400], detail[sizeof s->end_why];
    snprintf(msg, sizeof msg, "the broker closed the connection: %u %s", code, text);
    bg_amqp__log_up(s, BG_LOG_WARN, msg);
    snprintf(detail, sizeof detail, "%u %.200s (closed by the broker)", code, text);
    bg_amqp__ending(s, detail);
}

void bg_amqp_session_broker_error(bg_amqp_session_t *s, const char *why)
{
    char msg[400], detail[sizeof s->end_why];
    snprintf(msg, sizeof msg, "malformed frame from the broker: %s", why);
    bg_amqp__log_up(s, BG_LOG_WARN, msg);
    snprintf(detail, sizeof detail, "%u %s (%.200s)", BG_AMQP_CONNECTION_FORCED,
             BG_AMQP__UP_MALFORMED, why);
    bg_amqp__ending(s, detail);
    bg_amqp_session_close(s, BG_AMQP_CONNECTION_FORCED, BG_AMQP__UP_MALFORMED, 0, 0);
}

/* The end of a client-initiated close the broker confirmed: close-ok to the
 * client, then gone once it is written. */
static void bg_amqp__finish_client_close(bg_amqp_session_t *s)
{
    bg_amqp__ending(s, "client closed the connection");
    if (s->cli_gone) {
        bg_amqp__die(s);
        return;
    }
    bg_wr_t wr;
    bg_wr_init(&wr, 16, 64);
    int ok = bg_amqp_write_connection_close_ok(&wr) == BG_AMQP_OK && bg_amqp_cli_send(s, &wr) == 0;
    bg_wr_free(&wr);
    bg_amqp_session_kill(s, ok, NULL);
}

/* The broker did not confirm the client's close: no close-ok within the
 * close timeout, or its connection was lost first. What busgate still held
 * for it (publishes, the close itself) may never have reached it, and a
 * close-ok would tell the client they had: it gets 320 CONNECTION_FORCED
 * instead, as for any broker loss (pika raises ConnectionClosedByBroker
 * from close(); amqplib and the Java client answer close-ok and report the
 * connection lost). cause goes to the log and the session_end detail. */
static void bg_amqp__close_unconfirmed(bg_amqp_session_t *s, const char *cause)
{
    char why[320];
    snprintf(why, sizeof why, "the broker did not confirm the client's close: %s", cause);
    bg_amqp__log_up(s, BG_LOG_WARN, why);
    if (s->up)
        bg_amqp_up_detach(s->up);
    if (s->cli_gone) {
        snprintf(why, sizeof why, "client closed the connection; the broker did not confirm: %s",
                 cause);
        bg_amqp__ending(s, why);
        bg_amqp__die(s);
        return;
    }
    snprintf(why, sizeof why, "320 CONNECTION_FORCED - broker did not confirm the close (%s)",
             cause);
    bg_amqp__ending(s, why);
    bg_amqp_session_close(s, BG_AMQP_CONNECTION_FORCED,
                          "CONNECTION_FORCED - broker did not confirm the close", 0, 0);
}

/* The client disconnected after its close went upstream: the broker leg
 * goes on until the broker confirmed that close (or the close timeout), so
 * what the client sent before it still reaches the broker. */
static void bg_amqp__client_gone(bg_amqp_session_t *s)
{
    s->cli_gone = 1;
    bufferevent_disable(s->cli, EV_READ | EV_WRITE);
    evbuffer_drain(bufferevent_get_input(s->cli),
                   evbuffer_get_length(bufferevent_get_input(s->cli)));
    bg_amqp__log(s, BG_LOG_INFO,
                 "client disconnected after its close: waiting for the broker's close-ok");
}

static void bg_amqp__on_close_timeout(evutil_socket_t fd, short what, void *arg)
{
    bg_amqp_session_t *s = arg;
    if (s->dead)
        return;
    switch (s->state) {
    case BG_AMQP_S_CLOSING_UP: {
        char cause[64];
        snprintf(cause, sizeof cause, "no close-ok within %d s", BG_AMQP_CLOSE_WAIT_S);
        bg_amqp__close_unconfirmed(s, cause);
        return;
    }
    case BG_AMQP_S_UP_TUNE:
    case BG_AMQP_S_UP_OPEN:
        /* The handshake deadline with the client logged in, the broker's
         * tune or open-ok awaited: the client is told, as when the broker
         * connection is lost, rather than losing its socket, which clients
         * take for a refused login (pika: ProbableAuthenticationError). */
        bg_amqp__log_up(s, BG_LOG_WARN, "handshake deadline: the broker did not answer busgate");
        if (s->up)
            bg_amqp_up_detach(s->up);
        bg_amqp_session_close(s, BG_AMQP_CONNECTION_FORCED,
                              "CONNECTION_FORCED - broker did not answer", 0, 0);
        return;
    case BG_AMQP_S_HEADER:
    case BG_AMQP_S_START_OK:
        /* Not logged in by the deadline: an authentication failure, as
         * kafka.auth_timeout records it. */
        bg_amqp_audit_auth_failure(s, "timeout");
        bg_amqp__log(s, BG_LOG_INFO, "not logged in within the handshake deadline");
        bg_amqp__die(s);
        return;
    default:
        bg_amqp__die(s);
    }
}

/* A broker frame while the client's close waits for the broker's close-ok:
 * the close-ok ends it; anything else is dropped, as the closing client
 * discards it. A connection.close crossing the client's is relayed: the
 * broker closed without confirming (it drops what follows its own close),
 * as the client would learn from RabbitMQ itself. */
static int bg_amqp__up_closing_frame(bg_amqp_session_t *s, struct evbuffer *in,
                                     const bg_amqp_frame_t *f, size_t len)
{
    uint8_t p[BG_AMQP_FRAME_HEADER_SIZE + 4];
    uint32_t id = 0;
    if (f->type == BG_AMQP_FRAME_METHOD && f->channel == 0 && f->size >= 4 &&
        evbuffer_copyout(in, p, sizeof p) == (ev_ssize_t)sizeof p)
        id = (uint32_t)p[7] << 24 | (uint32_t)p[8] << 16 | (uint32_t)p[9] << 8 | p[10];
    if (id == AMQP_CONNECTION_CLOSE_METHOD && !s->cli_gone) {
        bg_amqp__ending(s, "client closed the connection; the broker closed it too");
        (void)bg_amqp_chan_upstream_frame(s, in, f, len);
        return -1;
    }
    evbuffer_drain(in, len);
    if (id == AMQP_CONNECTION_CLOSE_OK_METHOD)
        bg_amqp__finish_client_close(s);
    else if (id == AMQP_CONNECTION_CLOSE_METHOD)
        bg_amqp__close_unconfirmed(s, "the broker closed the connection itself");
    else
        return 0;
    return -1;
}

/* ---- timers ---- */

/* busgate itself has stopped reading the client: its upstream is not
 * draining (e.g. RabbitMQ blocks a publisher; reading resumes only below the
 * low watermark) or a channel reopen waits. */
static int bg_amqp__reading_paused(bg_amqp_session_t *s)
{
    return !(bufferevent_get_enabled(s->cli) & EV_READ);
}

static void bg_amqp__on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    bg_amqp_session_t *s = arg;
    if (s->dead || s->heartbeat == 0)
        return;
    static const uint8_t hb[BG_AMQP_FRAME_OVERHEAD] = {BG_AMQP_FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0,
                                                       BG_AMQP_FRAME_END};
    /* The client's close waits for the broker's close-ok, which the close
     * timeout bounds: a silent client must not end the broker leg first. */
    if (s->state == BG_AMQP_S_CLOSING_UP) {
        if (!s->cli_gone)
            evbuffer_add(bg_amqp_cli_out(s), hb, sizeof hb);
        return;
    }
    /* While busgate does not read, the client's heartbeats sit unread in the
     * socket: silence says nothing about the client then (RabbitMQ, too,
     * pauses its heartbeat monitor on a blocked connection). A client that
     * does not take its own output is still read until its unprocessed input
     * fills the read watermark; past that it counts as alive only while its
     * output shrinks (a hung consumer must still be dropped), also when
     * that output went below the high watermark but reading has not resumed
     * yet (cli_held is cleared when it does). */
    size_t out = bg_amqp__cli_queued(s);
    int took = out < s->hb_out_mark;
    s->hb_out_mark = out;
    if (bg_amqp__reading_paused(s) && ((out < BG_AMQP_HIGH_WATER && !s->cli_held) || took))
        s->last_recv_ms = bg_amqp_mono_ms();
    if (bg_amqp_mono_ms() - s->last_recv_ms > (int64_t)s->heartbeat * 2000) {
        bg_amqp_session_kill(s, 0, "client missed heartbeats");
        return;
    }
    evbuffer_add(bg_amqp_cli_out(s), hb, sizeof hb);
}

static void bg_amqp__on_expiry(evutil_socket_t fd, short what, void *arg)
{
    bg_amqp_session_t *s = arg;
    int64_t left = s->principal.exp * 1000 - bg_amqp_wall_ms();
    if (left > 0) { /* extended by update-secret meanwhile, or an early wake-up */
        struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
        event_add(s->expiry_ev, &tv);
        return;
    }
    bg_amqp_session_close(s, BG_AMQP_CONNECTION_FORCED, "CONNECTION_FORCED - credential expired", 0,
                          0);
}

/* ---- client input ---- */

/* The client's read watermark: one frame more than the slack. */
static size_t bg_amqp__read_mark(const bg_amqp_session_t *s)
{
    return (size_t)s->aw->g->cfg->amqp.max_frame_bytes + BG_AMQP_INPUT_SLACK;
}

/* Frames a client pipelines behind connection.open (channel.open, ...)
 * wait unprocessed, and unread beyond them, until the broker's open-ok has
 * been relayed: only then is the session RUNNING (RabbitMQ itself takes
 * them). The handshake deadline still runs, and what was read before
 * reading stopped is bounded by the read watermark. */
static int bg_amqp__awaits_open_ok(const bg_amqp_session_t *s)
{
    return s->state == BG_AMQP_S_UP_OPEN;
}

/* Whether the upstream is read: not before the client's connection.open
 * has been answered (what RabbitMQ sends after its open-ok waits for
 * bg_amqp_hs__running), else while the client's output has room. */
static int bg_amqp__up_readable(bg_amqp_session_t *s)
{
    if (s->state < BG_AMQP_S_RUNNING)
        return 0;
    return bg_amqp__cli_queued(s) < BG_AMQP_HIGH_WATER;
}

static void bg_amqp__update_reading(bg_amqp_session_t *s)
{
    if (s->dead)
        return;
    if (s->cli_gone) {
        if (s->up && bg_amqp_up_is_ready(s->up))
            bg_amqp_up_set_reading(s->up, 1);
        return;
    }
    /* A client whose own output is full is still read (its heartbeats say
     * it is alive), but its frames wait unprocessed in the input, which the
     * read watermark bounds (bg_amqp_session_accept): what busgate answers
     * itself (close-oks, refusals) cannot grow without bound for a client
     * that sends and never reads. Once that input is full too, reading is
     * disabled, not left to the watermark: libevent 2.1 re-runs the read
     * callback (deferred) after every run that leaves the input at the
     * watermark with EV_READ enabled, and each run processes nothing, so
     * the worker would spin until the client reads. */
    int was_held = s->cli_held;
    s->cli_held = bg_amqp__cli_queued(s) >= BG_AMQP_HIGH_WATER &&
                  evbuffer_get_length(bufferevent_get_input(s->cli)) >= bg_amqp__read_mark(s);
    int up_full = bg_amqp__up_queued(s) >= BG_AMQP_HIGH_WATER;
    if (!up_full && !s->stalled && !s->cli_held && !bg_amqp__awaits_open_ok(s) &&
        s->state != BG_AMQP_S_CLOSING) {
        bufferevent_enable(s->cli, EV_READ);
        /* Input at the watermark is not read from the socket, so no read
         * event would come to process it: one deferred run does. */
        if (was_held)
            bufferevent_trigger(s->cli, EV_READ,
                                BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
    }
    else if (s->state != BG_AMQP_S_CLOSING)
        bufferevent_disable(s->cli, EV_READ);
    if (s->up && bg_amqp_up_is_ready(s->up))
        bg_amqp_up_set_reading(s->up, bg_amqp__up_readable(s));
}

/* While closing, only the client's close-ok (or a crossing close) matters. */
static int bg_amqp__closing_frame(bg_amqp_session_t *s, struct evbuffer *in,
                                  const bg_amqp_frame_t *f, size_t len)
{
    uint8_t p[BG_AMQP_FRAME_HEADER_SIZE + 4];
    if (f->type == BG_AMQP_FRAME_METHOD && f->channel == 0 && f->size >= 4 &&
        evbuffer_copyout(in, p, sizeof p) == (ev_ssize_t)sizeof p) {
        uint32_t id = (uint32_t)p[7] << 24 | (uint32_t)p[8] << 16 | (uint32_t)p[9] << 8 | p[10];
        if (id == AMQP_CONNECTION_CLOSE_OK_METHOD) {
            bg_amqp_session_kill(s, 0, NULL);
            return -1;
        }
        if (id == AMQP_CONNECTION_CLOSE_METHOD) {
            bg_wr_t wr;
            bg_wr_init(&wr, 16, 64);
            if (bg_amqp_write_connection_close_ok(&wr) == BG_AMQP_OK)
                (void)bg_amqp_cli_send(s, &wr);
            bg_wr_free(&wr);
            bg_amqp_session_kill(s, 1, NULL);
            return -1;
        }
    }
    evbuffer_drain(in, len);
    return 0;
}

/* A linearised frame before RUNNING (or a heartbeat). */
static int bg_amqp__handshake_frame(bg_amqp_session_t *s, struct evbuffer *in, bg_amqp_frame_t *f,
                                    size_t len)
{
    const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)len);
    if (!p) {
        bg_amqp_session_kill(s, 0, "out of memory");
        return -1;
    }
    f->payload = p + BG_AMQP_FRAME_HEADER_SIZE;
    int rc = bg_amqp_hs_client_frame(s, f);
    bg_amqp_arena_reset(&s->arena);
    if (!s->dead)
        evbuffer_drain(in, len);
    return rc;
}

static uint32_t bg_amqp__max_in(const bg_amqp_session_t *s)
{
    return s->state < BG_AMQP_S_OPEN ? BG_AMQP_PRETUNE_CLIENT_MAX : s->frame_max;
}

/* The protocol header: 1 done, 0 need more, -1 refused (session closing). */
static int bg_amqp__header(bg_amqp_session_t *s, struct evbuffer *in)
{
    uint8_t h[BG_AMQP_PROTOCOL_HEADER_LEN];
    ev_ssize_t n = evbuffer_copyout(in, h, sizeof h);
    int rc = bg_amqp_protocol_header_check(h, n > 0 ? (size_t)n : 0, NULL);
    if (rc == 0)
        return 0;
    if (rc < 0) {
        /* As RabbitMQ: answer with the version busgate speaks, then close. */
        evbuffer_add(bg_amqp_cli_out(s), BG_AMQP_PROTOCOL_HEADER, BG_AMQP_PROTOCOL_HEADER_LEN);
        bg_metric_add(&s->aw->w->metrics.protocol_errors[BG_PROTO_AMQP], 1);
        bg_amqp_session_kill(s, 1, "bad protocol header");
        return -1;
    }
    evbuffer_drain(in, BG_AMQP_PROTOCOL_HEADER_LEN);
    s->bytes_in += BG_AMQP_PROTOCOL_HEADER_LEN;
    bg_metric_add(&s->aw->w->metrics.bytes_in[BG_PROTO_AMQP], BG_AMQP_PROTOCOL_HEADER_LEN);
    bg_wr_t wr;
    bg_wr_init(&wr, 1024, 1u << 16);
    rc = bg_amqp_write_connection_start(&wr, BG_AMQP_CAPS_ALL, NULL, NULL, NULL);
    rc = rc == BG_AMQP_OK ? bg_amqp_cli_send(s, &wr) : -1;
    bg_wr_free(&wr);
    if (rc != 0) {
        bg_amqp_session_kill(s, 0, "cannot send connection.start");
        return -1;
    }
    s->state = BG_AMQP_S_START_OK;
    return 1;
}

/* A frame refused while busgate waits for the client's start-ok ends its
 * login: a failed one, audited and counted as any other (a start-ok whose
 * method cannot be decoded is, in amqp_session_handshake.c). */
static void bg_amqp__login_unreadable(bg_amqp_session_t *s)
{
    if (s->state == BG_AMQP_S_START_OK)
        bg_amqp_audit_auth_failure(s, "malformed");
}

/* Counts a whole frame read from the client (sign 1), or takes it back
 * (sign -1) when it stays in the input to be read again. Every frame
 * counts, whatever busgate does with it: forwarded, answered, refused, or
 * dropped while the connection closes; method frames are the session's
 * methods (session_end's records) and busgate_requests_total, the
 * handshake's included, as Kafka counts its pre-auth requests. */
static void bg_amqp__count_in(bg_amqp_session_t *s, const bg_amqp_frame_t *f, size_t len, int sign)
{
    bg_worker_metrics_t *m = &s->aw->w->metrics;
    int method = f->type == BG_AMQP_FRAME_METHOD;
    if (sign > 0) {
        s->bytes_in += len;
        s->methods += (uint64_t)method;
        bg_metric_add(&m->bytes_in[BG_PROTO_AMQP], len);
        bg_metric_add(&m->requests[BG_PROTO_AMQP], (uint64_t)method);
    } else {
        s->bytes_in -= len;
        s->methods -= (uint64_t)method;
        bg_metric_sub(&m->bytes_in[BG_PROTO_AMQP], len);
        bg_metric_sub(&m->requests[BG_PROTO_AMQP], (uint64_t)method);
    }
}

/* One frame at the head of in. 1 go on, 0 stop (need more / stalled), -1 closing. */
static int bg_amqp__client_frame(bg_amqp_session_t *s, struct evbuffer *in)
{
    bg_amqp_frame_t f;
    size_t len = 0;
    const char *why = NULL;
    int rc = bg_amqp_evbuf_peek(in, bg_amqp__max_in(s), &f, &len, &why);
    if (rc == 0)
        return 0;
    if (rc < 0) {
        char text[200];
        snprintf(text, sizeof text, "FRAME_ERROR - %s", why ? why : "bad frame");
        bg_amqp__login_unreadable(s);
        bg_amqp_session_close(s, BG_AMQP_FRAME_ERROR, text, 0, 0);
        /* The stream cannot be resynchronised: discard what is buffered, or
         * a client that keeps sending would pile its bytes up here until the
         * close times out. Reading goes on (closing the socket on unread
         * bytes would reset it, and the client might never see the close);
         * its close-ok is found if it comes at the next frame boundary. */
        evbuffer_drain(in, evbuffer_get_length(in));
        return -1;
    }
    bg_amqp__count_in(s, &f, len, 1);
    if (s->state == BG_AMQP_S_CLOSING)
        return bg_amqp__closing_frame(s, in, &f, len) < 0 ? -1 : 1;
    if (s->state == BG_AMQP_S_CLOSING_UP) { /* nothing may follow a close */
        evbuffer_drain(in, len);
        return 1;
    }
    if (f.type == BG_AMQP_FRAME_HEARTBEAT) {
        if (bg_amqp_validate_heartbeat(f.channel, f.size, &why) != BG_AMQP_OK) {
            /* As RabbitMQ: a heartbeat with a payload is not a frame it can
             * read (501); an empty one on a channel is out of place (505):
             * before the login, a frame other than start-ok, as a content
             * frame is (unauthenticated_request, not malformed). */
            if (f.size == 0) {
                if (s->state == BG_AMQP_S_START_OK)
                    bg_amqp_audit_auth_failure(s, "unauthenticated_request");
                bg_amqp_session_close(s, BG_AMQP_UNEXPECTED_FRAME,
                                      "UNEXPECTED_FRAME - heartbeat on a non-zero channel", 0, 0);
            } else {
                bg_amqp__login_unreadable(s);
                bg_amqp_session_close(s, BG_AMQP_FRAME_ERROR, "FRAME_ERROR - bad heartbeat frame",
                                      0, 0);
            }
            return -1;
        }
        evbuffer_drain(in, len); /* this leg's heartbeat is busgate's own */
        return 1;
    }
    if (s->state != BG_AMQP_S_RUNNING)
        return bg_amqp__handshake_frame(s, in, &f, len) < 0 ? -1 : 1;
    rc = bg_amqp_chan_client_frame(s, in, &f, len);
    if (rc == 0)
        bg_amqp__count_in(s, &f, len, -1); /* not consumed yet: counted when it is */
    return rc;
}

/* One pass over the client's input: frames are processed until it runs
 * out, the session stalls or closes, or an output is full. Says nothing
 * about the client's liveness (bg_amqp__on_client_read does). */
static void bg_amqp__client_input(bg_amqp_session_t *s)
{
    struct bufferevent *bev = s->cli;
    struct evbuffer *in = bufferevent_get_input(bev);
    /* Publishes are bulk data: take what is waiting in one read rather than
     * libevent's 4 KiB per wake-up (not on TLS, not while reading is paused). */
    if (s->state == BG_AMQP_S_RUNNING && !s->aw->g->client_tls &&
        (bufferevent_get_enabled(bev) & EV_READ) && evbuffer_get_length(in) < BG_AMQP_READ_BURST &&
        bg_util_bev_read_more(bev, BG_AMQP_READ_BURST) > 0)
        s->last_recv_ms = bg_amqp_mono_ms();
    s->in_read = 1;
    /* Frames for the upstream leave in one write at the end (staging). */
    int stage = s->state == BG_AMQP_S_RUNNING && !s->up_staging;
    if (stage)
        s->up_staging = 1;
    while (!s->dead && !s->stalled && !bg_amqp__awaits_open_ok(s)) {
        /* Closing, nothing goes upstream: the client's close-ok (or what is
         * discarded before it) is read even when the upstream is full. */
        if ((bg_amqp__up_queued(s) >= BG_AMQP_HIGH_WATER ||
             bg_amqp__cli_queued(s) >= BG_AMQP_HIGH_WATER) &&
            s->state != BG_AMQP_S_CLOSING)
            break;
        int rc = s->state == BG_AMQP_S_HEADER ? bg_amqp__header(s, in) : bg_amqp__client_frame(s, in);
        if (rc <= 0)
            break;
    }
    if (stage) {
        s->up_staging = 0;
        if (bg_amqp__flush_up(s) != 0)
            bg_amqp_session_kill(s, 0, "cannot write to the upstream");
    }
    s->in_read = 0;
    s->in_left = evbuffer_get_length(in);
    bg_amqp__update_reading(s);
}

static void bg_amqp__on_client_read(struct bufferevent *bev, void *arg)
{
    bg_amqp_session_t *s = arg;
    /* Only new bytes say the client is alive, not a run of this callback:
     * libevent also runs it over input it already holds (at the read
     * watermark, on a trigger). The input is drained only in
     * bg_amqp__client_input, so growth since its last pass is new bytes. */
    if (evbuffer_get_length(bufferevent_get_input(bev)) > s->in_left)
        s->last_recv_ms = bg_amqp_mono_ms();
    bg_amqp__client_input(s);
}

void bg_amqp_session_resume(bg_amqp_session_t *s)
{
    if (s->dead || s->in_read || s->cli_gone) /* the running read loop goes on by itself */
        return;
    bg_amqp__update_reading(s);
    if (evbuffer_get_length(bufferevent_get_input(s->cli)) > 0 && !s->stalled)
        bg_amqp__client_input(s);
}

static void bg_amqp__on_client_write(struct bufferevent *bev, void *arg)
{
    bg_amqp_session_t *s = arg;
    if (s->dead)
        return;
    if (s->flush_die &&
        evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        bg_amqp__die(s);
        return;
    }
    /* Frames already read may wait in the input (reading stopped on a full
     * output): go on with them, not only with what arrives next. */
    bg_amqp_session_resume(s);
}

static void bg_amqp__on_client_event(struct bufferevent *bev, short what, void *arg)
{
    bg_amqp_session_t *s = arg;
    if (s->dead)
        return;
    if (what & BEV_EVENT_ERROR)
        s->cli_failed = 1;
    if (s->state == BG_AMQP_S_CLOSING_UP && (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF))) {
        if (!s->cli_gone)
            bg_amqp__client_gone(s);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        char why[400];
        bg_util_tls_client_failure(bev, why, sizeof why);
        bg_amqp_session_kill(s, 0, why);
    }
    else if (what & BEV_EVENT_EOF)
        bg_amqp_session_kill(s, 0, s->state == BG_AMQP_S_CLOSING ? NULL : "client closed the connection");
}

/* ---- upstream callbacks ---- */

static void bg_amqp__up_tuned(void *arg, uint16_t channel_max, uint32_t frame_max,
                              uint16_t heartbeat)
{
    bg_amqp_hs_up_tuned(arg, channel_max, frame_max, heartbeat);
}

static void bg_amqp__up_ready(void *arg) { bg_amqp_hs_up_ready(arg); }

static int bg_amqp__up_frame(void *arg, struct evbuffer *in, const bg_amqp_frame_t *f,
                             size_t frame_len)
{
    bg_amqp_session_t *s = arg;
    if (s->dead)
        return -1;
    if (s->state == BG_AMQP_S_CLOSING_UP)
        return bg_amqp__up_closing_frame(s, in, f, frame_len);
    if (s->state < BG_AMQP_S_RUNNING) {
        /* RabbitMQ's open-ok came before the client's connection.open was
         * answered. What RabbitMQ sends next (a connection.close, a
         * connection.blocked) must reach the client after busgate's open-ok:
         * it waits in the input, unread beyond it, until
         * bg_amqp_hs__running. */
        bg_amqp_up_set_reading(s->up, 0);
        return -1;
    }
    if (s->state != BG_AMQP_S_RUNNING) {
        evbuffer_drain(in, frame_len); /* closing: nothing more reaches the client */
        return 0;
    }
    s->cli_staging = 1; /* until bg_amqp__up_read_done */
    if (bg_amqp_chan_upstream_frame(s, in, f, frame_len) != 0)
        return -1;
    if (bg_amqp__cli_queued(s) >= BG_AMQP_HIGH_WATER)
        bg_amqp_up_set_reading(s->up, 0);
    return s->dead || s->state != BG_AMQP_S_RUNNING ? -1 : 0;
}

/* The end of an upstream read callback: what it relayed to the client
 * leaves in one write. */
static void bg_amqp__up_read_done(void *arg)
{
    bg_amqp_session_t *s = arg;
    if (!s->cli_staging)
        return;
    s->cli_staging = 0;
    if (bg_amqp__flush_cli(s) != 0)
        bg_amqp_session_kill(s, 0, "cannot write to the client");
    /* Reading may have paused on the staged bytes, which the write above
     * took at once: no write event would resume it. */
    bg_amqp__update_reading(s);
}

/* The broker leg failed (why: the upstream's reason). Logged here, once,
 * with the session and the broker's address; why goes to the session_end
 * detail, not to the client, whose reply text stays busgate's own. */
static void bg_amqp__up_failed(void *arg, const char *where, const char *why)
{
    bg_amqp_session_t *s = arg;
    if (s->dead)
        return;
    if (s->state == BG_AMQP_S_CLOSING) {
        /* A close is with the client already (the broker's, relayed, or
         * busgate's): the broker leg ending now is its expected end. The
         * client's close-ok, or the close timeout, ends the session, as
         * RabbitMQ itself waits for it; its socket is not cut first. */
        if (s->up)
            bg_amqp_up_detach(s->up);
        return;
    }
    if (s->state == BG_AMQP_S_CLOSING_UP) {
        char cause[240];
        snprintf(cause, sizeof cause, "broker connection lost: %s", why);
        bg_amqp__close_unconfirmed(s, cause);
        return;
    }
    char msg[400];
    char detail[sizeof s->end_why];
    snprintf(msg, sizeof msg, "upstream connection lost: %s: %s", where, why);
    bg_log_fields(BG_LOG_WARN, "amqp",
                  (bg_log_field_t[]){{"session", s->id}, {"peer", s->peer}, {"upstream", where}},
                  3, "%s", msg);
    snprintf(detail, sizeof detail, "%u %s (%.200s)", BG_AMQP_CONNECTION_FORCED, BG_AMQP__UP_LOST,
             why);
    bg_amqp__ending(s, detail);
    bg_amqp_session_close(s, BG_AMQP_CONNECTION_FORCED, BG_AMQP__UP_LOST, 0, 0);
}

static void bg_amqp__up_drained(void *arg) { bg_amqp_session_resume(arg); }

static const bg_amqp_up_cbs_t bg_amqp__up_cbs = {
    .tuned = bg_amqp__up_tuned,
    .ready = bg_amqp__up_ready,
    .frame = bg_amqp__up_frame,
    .read_done = bg_amqp__up_read_done,
    .failed = bg_amqp__up_failed,
    .drained = bg_amqp__up_drained,
};

int bg_amqp_session_connect_upstream(bg_amqp_session_t *s)
{
    /* RabbitMQ is always asked for consumer cancel notifications: without
     * them a consumer whose queue is deleted ends silently and busgate's
     * count of the client's consumers would never go down. Clients that did
     * not ask for them do not get them (bg_amqp_chan_upstream_frame). */
    s->up = bg_amqp_up_connect(s->aw->w->base, s->aw->w->dns, s->aw->g,
                               s->caps | BG_AMQP_CAP_CONSUMER_CANCEL_NOTIFY, &bg_amqp__up_cbs, s);
    return s->up ? 0 : -1;
}

static void bg_amqp__on_refusal_timeout(evutil_socket_t fd, short what, void *arg)
{
    bg_amqp_session_t *s = arg;
    if (s->dead || s->state != BG_AMQP_S_RUNNING)
        return; /* the connection is closing: no channel.close after its close */
    bg_amqp_chan_send_overdue_refusals(s);
    bg_amqp__update_reading(s);
}

/* ---- accept ---- */

static int bg_amqp__events(bg_amqp_session_t *s)
{
    struct event_base *base = s->aw->w->base;
    s->free_ev = event_new(base, -1, 0, bg_amqp__on_free, s);
    s->hb_ev = event_new(base, -1, EV_PERSIST, bg_amqp__on_heartbeat, s);
    s->expiry_ev = event_new(base, -1, 0, bg_amqp__on_expiry, s);
    s->close_ev = event_new(base, -1, 0, bg_amqp__on_close_timeout, s);
    s->refusal_ev = event_new(base, -1, 0, bg_amqp__on_refusal_timeout, s);
    return s->free_ev && s->hb_ev && s->expiry_ev && s->close_ev && s->refusal_ev ? 0 : -1;
}

void bg_amqp_session_accept(bg_amqp_worker_t *aw, int fd, const struct sockaddr *peer,
                            bg_limits_conn_t *lim)
{
    bg_amqp_session_t *s = calloc(1, sizeof *s);
    if (!s) {
        bg_limits_release(lim);
        evutil_closesocket(fd);
        return;
    }
    s->conn_lim = *lim;
    bg_util_nodelay(fd);
    s->aw = aw;
    s->started_ms = bg_util_now_ms();
    s->last_recv_ms = bg_amqp_mono_ms();
    s->lim = (bg_amqp_limits_t)BG_AMQP_LIMITS_DEFAULT;
    s->lim.max_body_size = aw->g->cfg->amqp.max_body_bytes;
    s->frame_max = BG_AMQP_PRETUNE_CLIENT_MAX;
    bg_amqp_arena_init(&s->arena);
    bg_util_format_peer(peer, s->peer, sizeof s->peer);
    bg_audit_uuid4(s->id);
    TAILQ_INSERT_TAIL(&aw->sessions, s, link);
    aw->nsessions++;
    bg_metric_add(&aw->w->metrics.conn_open[BG_PROTO_AMQP], 1);
    bg_metric_add(&aw->w->metrics.conn_total[BG_PROTO_AMQP], 1);
    s->snap = bg_snapshot_acquire();
    s->cli_stage = evbuffer_new();
    s->up_stage = evbuffer_new();
    s->cli = bg_util_tls_client_bev(aw->w->base, aw->g->client_tls, fd);
    if (!s->cli)
        evutil_closesocket(fd);
    if (s->cli && s->cli_stage &&
        (!evbuffer_add_cb(s->cli_stage, bg_amqp__count_out, s) ||
         !evbuffer_add_cb(bufferevent_get_output(s->cli), bg_amqp__count_out, s))) {
        bufferevent_free(s->cli); /* closes fd */
        s->cli = NULL;
    }
    if (bg_amqp__events(s) != 0 || !s->snap || !s->cli || !s->cli_stage || !s->up_stage) {
        if (s->free_ev)
            bg_amqp__die(s);
        else
            bg_amqp__free(s);
        return;
    }
    bufferevent_setcb(s->cli, bg_amqp__on_client_read, bg_amqp__on_client_write,
                      bg_amqp__on_client_event, s);
    bufferevent_setwatermark(s->cli, EV_WRITE, BG_AMQP_LOW_WATER, 0);
    /* Input waits unprocessed only while the client's output is full: one
     * frame more than that is all it may hold. */
    bufferevent_setwatermark(s->cli, EV_READ, 0, bg_amqp__read_mark(s));
    bufferevent_set_max_single_read(s->cli, 256 * 1024);
    bufferevent_enable(s->cli, EV_READ | EV_WRITE);
    /* A client that never finishes the handshake is dropped (RabbitMQ: 10 s). */
    struct timeval tv = {10, 0};
    event_add(s->close_ev, &tv);
}

void bg_amqp_sessions_drain(bg_amqp_worker_t *aw)
{
    bg_amqp_session_t *s;
    TAILQ_FOREACH(s, &aw->sessions, link)
    {
        /* A client's close waiting for the broker's close-ok ends by
         * itself, within the close timeout: close-ok or 320. */
        if (s->state == BG_AMQP_S_CLOSING_UP)
            continue;
        if (s->state >= BG_AMQP_S_TUNE_OK)
            bg_amqp_session_close(s, BG_AMQP_CONNECTION_FORCED,
                                  "CONNECTION_FORCED - busgate is shutting down", 0, 0);
        else
            bg_amqp_session_kill(s, 0, NULL);
    }
}

void bg_amqp_sessions_free(bg_amqp_worker_t *aw)
{
    while (!TAILQ_EMPTY(&aw->sessions))
        bg_amqp__free(TAILQ_FIRST(&aw->sessions));
}
