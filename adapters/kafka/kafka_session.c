/* A proxied Kafka client connection: the per-connection request pipeline.
 *
 * Every request that owes the client a response gets a queue entry in
 * request order; responses leave in that order whether they come from the
 * upstream broker, are built by busgate (ApiVersions, SASL, denials) or are
 * merged. Fully allowed requests are moved to the upstream untouched
 * (evbuffer chains, no copy); only what must be rewritten is re-encoded.
 * Closing never frees a session inside a callback: the session is marked
 * dead and freed from its own event. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>

#include "adapters/kafka/kafka_audit.h"
#include "audit/audit.h"
#include "adapters/kafka/kafka_scan.h"
#include "adapters/kafka/kafka_session-internal.h"
#include "broker/log.h"
#include "broker/util_net.h"
#include "broker/util_tls.h"

#define BG_KAFKA_CLI_HIGH_WATER (16u << 20)
#define BG_KAFKA_CLI_LOW_WATER (4u << 20)
/* Before a token: ApiVersions and SASL answers only, a few KiB each. */
#define BG_KAFKA_CLI_PREAUTH_HIGH_WATER (256u * 1024)
#define BG_KAFKA_READ_BURST (256u * 1024) /* one client read at most */
#define BG_KAFKA_UP_OUT_HIGH (16u << 20)
/* How long a closing session may take to write its last responses (and
 * wait for those still with the broker), as the shutdown drain. */
#define BG_KAFKA_CLOSE_GRACE_MS 10000
#define BG_KAFKA_HANGUP_CHECK_MS 500 /* how often a paused client's TCP state is checked */
/* A decoded response takes about 5-6.5 times its wire size (measured for
 * Metadata v1 and v12 with three replicas a partition); a rewritten one's
 * arena may hold 16 times the frame + 1 MiB on top of its request's tree.
 * Only input built to inflate (empty structs, say) gets near it. */
#define BG_KAFKA_RESP_ARENA_FACTOR 16u
#define BG_KAFKA_RESP_ARENA_SLACK (1u << 20)

int64_t bg_kafka_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const bg_config_kafka_t *bg_kafka__cfg(const bg_kafka_session_t *s)
{
    return &s->kw->g->cfg->kafka;
}

/* What a request's decoded tree (and what its verdict builds) may take: a
 * request is at most max_frame_bytes. */
static size_t bg_kafka__req_arena_limit(const bg_kafka_session_t *s)
{
    size_t max = (size_t)bg_kafka__cfg(s)->max_frame_bytes;
    if (max > (SIZE_MAX - (1u << 20)) / 4)
        return SIZE_MAX; /* saturates (32-bit builds), as the response budget */
    return max * 4 + (1u << 20);
}

/* What decoding and rewriting a response frame of len bytes may add to its
 * entry's arena: sized from the frame itself (at most max_response_bytes),
 * never from the request limit, and saturating rather than wrapping. */
static size_t bg_kafka__resp_arena_budget(size_t len)
{
    if (len > (SIZE_MAX - BG_KAFKA_RESP_ARENA_SLACK) / BG_KAFKA_RESP_ARENA_FACTOR)
        return SIZE_MAX;
    return len * BG_KAFKA_RESP_ARENA_FACTOR + BG_KAFKA_RESP_ARENA_SLACK;
}

/* ---- lifecycle ---- */

static void bg_kafka__pending_free(bg_kafka_pending_t *pe)
{
    bg_snapshot_release(pe->snap);
    if (pe->out)
        evbuffer_free(pe->out);
    bg_kafka_arena_free(&pe->arena);
    free(pe->req_copy);
    free(pe);
}

static void bg_kafka__count_out(bg_kafka_session_t *s, uint64_t n)
{
    s->bytes_out += n;
    bg_metric_add(&s->kw->w->metrics.bytes_out[BG_PROTO_KAFKA], n);
}

/* n bytes of pe's response, the one cut through, went from the broker's
 * socket to the client's in the kernel. */
static void bg_kafka__count_spliced(bg_kafka_session_t *s, bg_kafka_pending_t *pe, uint64_t n)
{
    bg_kafka__count_out(s, n);
    bg_metric_add(&s->kw->w->metrics.bytes_spliced[BG_PROTO_KAFKA], n);
    pe->bytes_out += n;
}

/* The decision events of an entry the session drops without answering it
 * (it ends, or the broker's connection did): forwarded and still with the
 * broker, or decided with its events waiting for the answer to go out. The
 * response being cut through, when part of it reached the client, was cut:
 * its bytes_out says how much (a splice under way reports its share only
 * when it ends, which a session ending first never sees). */
static void bg_kafka__audit_left(bg_kafka_session_t *s, bg_kafka_pending_t *pe)
{
    if (pe == s->streaming) {
        uint64_t moved = s->up ? bg_kafka_up_splice_moved(s->up) : 0;
        if (moved)
            bg_kafka__count_spliced(s, pe, moved);
        if (pe->bytes_out > 0) {
            bg_kafka_audit_cut(s, pe);
            pe->audit_due = 0;
            return;
        }
    }
    if (pe->audit_due || pe->state == BG_KAFKA_PE_WAIT_UPSTREAM)
        bg_kafka_audit_unanswered(s, pe);
    pe->audit_due = 0;
}

static void bg_kafka__free(bg_kafka_session_t *s)
{
    bg_kafka_worker_t *kw = s->kw;
    bg_kafka_pending_t *it;
    TAILQ_FOREACH(it, &s->q, link) /* decided, never answered: still audited, in order */
        bg_kafka__audit_left(s, it);
    bg_kafka_audit_refusal_emit(s); /* the request that closed it, after those before it */
    bg_kafka_audit_session_end(s);
    while (!TAILQ_EMPTY(&s->q)) {
        bg_kafka_pending_t *pe = TAILQ_FIRST(&s->q);
        TAILQ_REMOVE(&s->q, pe, link);
        bg_kafka__pending_free(pe);
    }
    if (s->spare)
        bg_kafka__pending_free(s->spare);
    if (s->cli)
        bg_util_tls_bev_free(s->cli, !s->cli_failed);
    bg_kafka_up_free(s->up);
    if (s->held)
        evbuffer_free(s->held);
    if (s->free_ev)
        event_free(s->free_ev);
    if (s->close_ev)
        event_free(s->close_ev);
    if (s->auth_ev)
        event_free(s->auth_ev);
    if (s->eof_ev)
        event_free(s->eof_ev);
    bg_kafka_share_free(s->share);
    bg_policy_principal_clear(&s->pp);
    bg_principal_clear(&s->principal);
    bg_snapshot_release(s->snap);
    TAILQ_REMOVE(&kw->sessions, s, link);
    kw->nsessions--;
    bg_metric_sub(&kw->w->metrics.conn_open[BG_PROTO_KAFKA], 1);
    bg_limits_release(&s->conn_lim);
    free(s);
}

static void bg_kafka__on_free(evutil_socket_t fd, short what, void *arg) { bg_kafka__free(arg); }

/* Marks s dead and schedules its release; safe inside any callback. */
static void bg_kafka__kill(bg_kafka_session_t *s)
{
    if (s->dead)
        return;
    s->dead = 1;
    if (s->cli)
        bufferevent_disable(s->cli, EV_READ | EV_WRITE);
    if (s->eof_ev)
        event_del(s->eof_ev);
    if (s->up)
        bg_kafka_up_set_reading(s->up, 0);
    event_active(s->free_ev, 0, 0);
}

/* Keeps the first reason the session is ending for its session_end event. */
static void bg_kafka__ending(bg_kafka_session_t *s, const char *why)
{
    if (why && !s->end_why[0])
        snprintf(s->end_why, sizeof s->end_why, "%s", why);
}

void bg_kafka_session_close(bg_kafka_session_t *s, int flush_first, const char *why)
{
    if (s->dead)
        return;
    bg_kafka__ending(s, why);
    if (why)
        bg_log_fields(BG_LOG_INFO, "kafka",
                      (bg_log_field_t[]){{"session", s->id}, {"peer", s->peer}}, 2,
                      "closing connection: %s", why);
    if (!flush_first) {
        bg_kafka__kill(s);
        return;
    }
    s->closing = 1;
    bufferevent_disable(s->cli, EV_READ);
    if (s->eof_ev) /* its last responses still go out (the close grace bounds that) */
        event_del(s->eof_ev);
    if (s->nq == 0 && evbuffer_get_length(bufferevent_get_output(s->cli)) == 0) {
        bg_kafka__kill(s);
        return;
    }
    /* Reading is off, and with it the idle timeout: a client that never
     * reads its last responses would keep the session for ever. */
    struct timeval tv = {BG_KAFKA_CLOSE_GRACE_MS / 1000, (BG_KAFKA_CLOSE_GRACE_MS % 1000) * 1000};
    event_add(s->close_ev, &tv);
}

void bg_kafka_session_malformed(bg_kafka_session_t *s, int16_t api_key, int16_t version,
                                long offset, size_t frame_len, const char *why)
{
    const bg_kafka_msg_desc_t *d = api_key >= 0 ? bg_kafka_msg_desc(api_key, 0) : NULL;
    const char *name = d ? d->name : api_key < 0 ? "not received" : "unknown api";
    bg_log_fields(BG_LOG_WARN, "kafka", (bg_log_field_t[]){{"session", s->id}, {"peer", s->peer}},
                  2, "malformed request: api %d (%s) version %d offset %ld: %s", api_key, name,
                  version, offset, why ? why : "malformed");
    bg_metric_add(&s->kw->w->metrics.protocol_errors[BG_PROTO_KAFKA], 1);
    char reason[200];
    snprintf(reason, sizeof reason, "malformed request: %s", why ? why : "malformed");
    bg_kafka__ending(s, reason);
    if (s->auth == BG_KAFKA_AUTH_OK) /* as Kafka's InvalidRequestException */
        bg_kafka_audit_refused(s, api_key, version, frame_len, BG_KAFKA_E_INVALID_REQUEST, reason);
    else /* before the login, whatever it was (header, api key, size): a failed login */
        bg_kafka_audit_auth_failure(s, "malformed");
    bg_kafka_session_close(s, 0, NULL);
}

static void bg_kafka__on_close_grace(evutil_socket_t fd, short what, void *arg)
{
    bg_kafka_session_t *s = arg;
    if (!s->dead)
        bg_log_fields(BG_LOG_INFO, "kafka",
                      (bg_log_field_t[]){{"session", s->id}, {"peer", s->peer}}, 2,
                      "closing connection: last responses not taken within %d ms",
                      BG_KAFKA_CLOSE_GRACE_MS);
    bg_kafka__kill(s);
}

/* ---- queue ---- */

bg_kafka_pending_t *bg_kafka_session_push(bg_kafka_session_t *s, const bg_kafka_req_hdr_t *h)
{
    bg_kafka_pending_t *pe = s->spare;
    s->spare = NULL;
    if (!pe) {
        pe = calloc(1, sizeof *pe);
        if (!pe || !(pe->out = evbuffer_new())) {
            free(pe);
            return NULL;
        }
        bg_kafka_arena_init(&pe->arena, 0);
    }
    /* Also for a recycled entry, whose last response raised it. */
    pe->arena.limit = bg_kafka__req_arena_limit(s);
    pe->state = BG_KAFKA_PE_READY;
    pe->audit_due = 0;
    pe->hdr = *h;
    /* The request's own client id, for a rewritten copy (quotas and broker
     * logs go by it); h's bytes live only as long as the input frame. */
    pe->hdr.client_id = bg_kafka_null_slice();
    if (h->client_id.p && h->client_id.len >= 0) {
        uint8_t *c = bg_kafka_arena_alloc(&pe->arena, (size_t)h->client_id.len + 1);
        if (c) {
            memcpy(c, h->client_id.p, (size_t)h->client_id.len);
            pe->hdr.client_id.p = c;
            pe->hdr.client_id.len = h->client_id.len;
        }
    }
    /* The header's tags are dropped here, so a request that had some must
     * be re-encoded (bg_kafka__decide) rather than forwarded as it came:
     * remember that they were there. An empty section is its count, 0. */
    pe->hdr_tags = h->tagged.len > 1;
    pe->hdr.tagged.p = NULL, pe->hdr.tagged.len = 0;
    pe->start_us = bg_util_now_us();
    pe->snap = s->snap;
    if (pe->snap)
        atomic_fetch_add(&pe->snap->refs, 1);
    TAILQ_INSERT_TAIL(&s->q, pe, link);
    s->nq++;
    return pe;
}

static void bg_kafka__pop(bg_kafka_session_t *s, bg_kafka_pending_t *pe)
{
    TAILQ_REMOVE(&s->q, pe, link);
    s->nq--;
    if (s->nq == 0 && s->reauth_wait) { /* the waiting re-authentication may go on */
        s->reauth_wait = 0;
        if (!s->dead && !s->closing)
            bufferevent_trigger(s->cli, EV_READ,
                                BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
    }
    bg_snapshot_release(pe->snap);
    pe->snap = NULL;
    if (s->spare) {
        bg_kafka__pending_free(pe);
        return;
    }
    bg_kafka_arena_reset(&pe->arena);
    evbuffer_drain(pe->out, evbuffer_get_length(pe->out));
    free(pe->req_copy);
    pe->req_copy = NULL;
    pe->req_copy_len = 0;
    memset(&pe->verdict, 0, sizeof pe->verdict);
    pe->needs_response = 0;
    pe->bytes_in = 0;
    pe->bytes_out = 0;
    s->spare = pe;
}

/* Memory the session's queued requests hold (decoded trees, prepared
 * responses, the request frames kept until a split or rewritten request is
 * answered). Reading stops above max_frame_bytes + 64 MiB, so pipelined
 * requests, each decoded before it is decided, cannot pin max_inflight
 * times a request's worth of memory. One request is always read. */
static int bg_kafka__mem_ok(const bg_kafka_session_t *s)
{
    size_t used = 0, cap = (size_t)bg_kafka__cfg(s)->max_frame_bytes + (64u << 20);
    const bg_kafka_pending_t *pe;
    TAILQ_FOREACH(pe, &s->q, link)
    {
        used += pe->arena.total + evbuffer_get_length(pe->out) + pe->req_copy_len;
        if (used >= cap)
            return 0;
    }
    return 1;
}

/* Answers waiting for the client (busgate's own and the broker's) stay
 * under the output watermark, a small one before authentication: a client
 * that sends requests busgate answers itself (ApiVersions, denials) and
 * never reads would otherwise grow the output without bound, since those
 * answers leave the queue at once. The write callback (low watermark)
 * reads again. */
static int bg_kafka__cli_out_ok(const bg_kafka_session_t *s)
{
    size_t cap = s->auth == BG_KAFKA_AUTH_OK || s->reauth ? BG_KAFKA_CLI_HIGH_WATER
                                                           : BG_KAFKA_CLI_PREAUTH_HIGH_WATER;
    return evbuffer_get_length(bufferevent_get_output(s->cli)) < cap;
}

/* Room for one more request: under the in-flight limit and the memory cap,
 * and the client reads its answers. */
static int bg_kafka__room(const bg_kafka_session_t *s)
{
    return s->nq < bg_kafka__cfg(s)->max_inflight && bg_kafka__mem_ok(s) &&
           bg_kafka__cli_out_ok(s) && !s->reauth_wait;
}

static void bg_kafka__update_reading(bg_kafka_session_t *s)
{
    if (s->dead)
        return;
    int up_ready = s->up && bg_kafka_up_is_ready(s->up);
    size_t up_out = up_ready ? evbuffer_get_length(bg_kafka_up_output(s->up)) : 0;
    int read_cli = !s->closing && bg_kafka__room(s) &&
                   up_out < BG_KAFKA_UP_OUT_HIGH &&
                   evbuffer_get_length(s->held) < BG_KAFKA_UP_OUT_HIGH;
    if (read_cli)
        bufferevent_enable(s->cli, EV_READ);
    else
        bufferevent_disable(s->cli, EV_READ);
    /* A paused client is not read, so its EOF would be seen only once the
     * broker answered (a held fetch: minutes), keeping the session and its
     * upstream connection: check for the hang-up meanwhile
     * (bg_kafka__on_hangup_check). Not while closing: its last responses
     * still go out (the close grace bounds that). */
    int watch = !read_cli && !s->closing;
    if (s->eof_ev && watch && !event_pending(s->eof_ev, EV_TIMEOUT, NULL)) {
        struct timeval tv = {BG_KAFKA_HANGUP_CHECK_MS / 1000,
                             (BG_KAFKA_HANGUP_CHECK_MS % 1000) * 1000};
        event_add(s->eof_ev, &tv);
    } else if (s->eof_ev && !watch) {
        event_del(s->eof_ev);
    }
    if (s->up)
        bg_kafka_up_set_reading(s->up, bg_kafka__cli_out_ok(s));
}

void bg_kafka_session_flush(bg_kafka_session_t *s)
{
    struct evbuffer *cout = bufferevent_get_output(s->cli);
    bg_kafka_pending_t *pe;
    while ((pe = TAILQ_FIRST(&s->q)) && pe->state == BG_KAFKA_PE_READY) {
        size_t n = evbuffer_get_length(pe->out);
        s->bytes_out += n;
        bg_metric_add(&s->kw->w->metrics.bytes_out[BG_PROTO_KAFKA], n);
        if (bg_util_bev_send(s->cli, pe->out, n, !s->kw->g->client_tls) != 0) {
            bg_kafka_session_close(s, 0, "cannot queue a response (out of memory)");
            return;
        }
        /* Audited now, in request order: the answer is the client's
         * (a close's: the session closes now, after the ones before). */
        if (pe->audit_due) {
            int64_t latency = bg_util_now_us() - pe->start_us;
            /* a forwarded acks=0 Produce has no answer: no latency */
            int none = pe->verdict.no_response && pe->verdict.action != BG_KAFKA_ACT_CLOSE;
            pe->audit_due = 0;
            bg_kafka_audit_decisions(s, pe, none ? NULL : &latency);
        }
        bg_kafka__pop(s, pe);
    }
    if (s->closing && s->nq == 0 && evbuffer_get_length(cout) == 0)
        bg_kafka__kill(s);
}

int bg_kafka_session_respond(bg_kafka_session_t *s, bg_kafka_pending_t *pe,
                             const bg_kafka_struct_t *body)
{
    const bg_kafka_msg_desc_t *d = bg_kafka_msg_desc(pe->hdr.api_key, 1);
    bg_wr_t wr;
    /* A rewritten response can outgrow the broker's (merged denials, longer
     * advertised host names), and busgate's own answers are small: the
     * response limit bounds both, as it bounds what the broker may send. */
    bg_wr_init(&wr, 256, (size_t)bg_kafka__cfg(s)->max_response_bytes + 4);
    size_t off = bg_kafka_frame_begin(&wr);
    bg_kafka_resp_hdr_write(&wr, bg_kafka_resp_hdr_version(pe->hdr.api_key, pe->hdr.api_version),
                            pe->hdr.correlation_id);
    const char *why = NULL;
    int rc = d ? bg_kafka_encode(d, pe->hdr.api_version, body, &wr, &why) : BG_KAFKA_ERR_UNKNOWN_API;
    bg_kafka_frame_end(&wr, off);
    if (rc == BG_KAFKA_OK && !wr.failed && evbuffer_add(pe->out, wr.buf, wr.len) == 0) {
        pe->state = BG_KAFKA_PE_READY;
        rc = 0;
    } else {
        if (why)
            bg_log_error("kafka", "cannot encode %s v%d response: %s", d ? d->name : "?",
                         pe->hdr.api_version, why);
        else
            bg_log_error("kafka",
                         "cannot encode %s v%d response: larger than kafka.max_response_bytes "
                         "(%llu) once rewritten, or out of memory",
                         d ? d->name : "?", pe->hdr.api_version,
                         (unsigned long long)bg_kafka__cfg(s)->max_response_bytes);
        rc = -1;
    }
    bg_wr_free(&wr);
    return rc;
}

/* ---- requests ---- */

static int bg_kafka__topic_name(void *arg, const uint8_t id[16], bg_slice_t *name)
{
    static __thread char buf[256];
    if (!bg_kafka_global_topic_name(arg, id, buf, sizeof buf))
        return 0;
    *name = bg_kafka_cstr(buf);
    return 1;
}

static void bg_kafka__learn_topic(void *arg, const uint8_t id[16], bg_slice_t name)
{
    if (name.len > 0)
        bg_kafka_global_learn_topic(arg, id, name.p, (size_t)name.len);
}

static int bg_kafka__learn_node(void *arg, int32_t id, bg_slice_t host, int32_t port)
{
    return bg_kafka_global_learn_node(arg, id, (const char *)host.p,
                                      host.len > 0 ? (size_t)host.len : 0, port);
}

static void bg_kafka__ctx(bg_kafka_session_t *s, const bg_snapshot_t *snap,
                          bg_kafka_authz_ctx_t *ctx)
{
    /* The reserved topic is the one the running audit pipeline writes: the
     * start-up configuration's (a reload does not move the pipeline). */
    const bg_config_t *cfg = s->kw->g->cfg;
    memset(ctx, 0, sizeof *ctx);
    ctx->policy = snap->policy;
    ctx->principal = &s->pp;
    ctx->audit_topic = cfg->audit.enabled ? cfg->audit.kafka_topic : NULL;
    ctx->upstream_user = cfg->kafka.upstream.sasl_username;
    ctx->topic_name = bg_kafka__topic_name;
    ctx->topic_name_arg = s->kw->g;
    ctx->advertised_host = s->kw->g->cfg->kafka.advertised_host;
    ctx->port_base = s->kw->g->cfg->kafka.broker_port_base;
    ctx->learn_node = bg_kafka__learn_node;
    ctx->learn_node_arg = s->kw->g;
    ctx->share = s->share;
    ctx->unvouched = s->unvouched;
}

/* Switches to a newer policy snapshot (reload) before deciding. The new
 * identity configuration may name the principal differently (its issuer's
 * prefixes changed): the new policy is written for the new names. Or it may
 * no longer have the principal's issuer (its keys leaked): the session
 * stays (a reload drops no connection), but every decision is then denied
 * (s->unvouched), until a reload puts the issuer back. */
static int bg_kafka__refresh_snapshot(bg_kafka_session_t *s)
{
    if (!bg_snapshot_refresh(&s->snap))
        return 0;
    bg_policy_principal_clear(&s->pp);
    if (bg_identity_reapply(s->snap->identity, &s->principal, &s->unvouched, "kafka", s->id) < 0)
        return -1;
    return bg_policy_principal_prepare(s->snap->policy, s->principal.sub,
                                       (const char *const *)s->principal.groups,
                                       s->principal.ngroups, &s->pp);
}

/* Where forwarded bytes go: the upstream, or the hold buffer until it is ready. */
static struct evbuffer *bg_kafka__up_target(bg_kafka_session_t *s)
{
    return bg_kafka_up_is_ready(s->up) ? bg_kafka_up_output(s->up) : s->held;
}

static int bg_kafka__send_rewritten(bg_kafka_session_t *s, const bg_kafka_pending_t *pe,
                                    const bg_kafka_struct_t *req)
{
    bg_wr_t wr;
    bg_wr_init(&wr, 1024, (size_t)bg_kafka__cfg(s)->max_frame_bytes + 4);
    size_t off = bg_kafka_frame_begin(&wr);
    bg_kafka_req_hdr_t h = pe->hdr; /* with the request's own client id */
    if (pe->verdict.upstream_version > 0) {
        h.api_version = pe->verdict.upstream_version;
        h.hdr_version = bg_kafka_req_hdr_version(h.api_key, h.api_version);
    }
    bg_kafka_req_hdr_write(&wr, &h);
    const char *why = NULL;
    int rc = bg_kafka_encode(bg_kafka_msg_desc(h.api_key, 0), h.api_version, req, &wr, &why);
    bg_kafka_frame_end(&wr, off);
    if (rc == BG_KAFKA_OK && !wr.failed)
        rc = evbuffer_add(bg_kafka__up_target(s), wr.buf, wr.len);
    else
        rc = -1;
    bg_wr_free(&wr);
    return rc;
}

/* Decodes p (frame payload) and decides it. The tree borrows p. */
static int bg_kafka__decide(bg_kafka_session_t *s, bg_kafka_pending_t *pe, const uint8_t *p,
                            size_t len, int body_off)
{
    const bg_kafka_req_hdr_t *h = &pe->hdr;
    bg_rd_t rd;
    bg_rd_init(&rd, p + body_off, len - (size_t)body_off);
    bg_kafka_struct_t *req = NULL;
    int rc = bg_kafka_decode(bg_kafka_msg_desc(h->api_key, 0), h->api_version, &rd, &pe->arena, &req);
    if (rc != BG_KAFKA_OK) { /* p is the frame after its size field */
        bg_kafka_session_malformed(s, h->api_key, h->api_version, 4 + (long)(rd.p - p), 4 + len,
                                   rd.why ? rd.why : bg_kafka_status_str(rc));
        return -1;
    }
    /* Tagged fields busgate does not know (a newer client or spec) are not
     * passed on: the broker might read a resource out of one. */
    int unknown = (rd.unknown_tags && bg_kafka_struct_drop_unknown(req, 0)) ||
                  pe->hdr_tags; /* Kafka defines no request header tags */
    bg_kafka_authz_ctx_t ctx;
    bg_kafka__ctx(s, pe->snap, &ctx);
    memset(&pe->verdict, 0, sizeof pe->verdict);
    if (bg_kafka_authz_request(&ctx, h, req, &pe->arena, &pe->verdict) != 0) {
        pe->verdict.action = BG_KAFKA_ACT_CLOSE;
        if (!pe->verdict.close_reason) /* named for the log, not as an audit refusal */
            pe->verdict.close_reason = "request could not be decided";
    }
    if (unknown && pe->verdict.action == BG_KAFKA_ACT_FORWARD) {
        pe->verdict.action = BG_KAFKA_ACT_FORWARD_REWRITTEN;
        pe->verdict.request = req;
    }
    if (s->kw->w->audit && !bg_kafka_audit_admitting(s)) /* refuse, retriably */
        bg_kafka_authz_refuse(h, req, 7 /* REQUEST_TIMED_OUT */, "audit pipeline unavailable",
                              &pe->arena, &pe->verdict);
    else /* more than an audit event records: refused, not forwarded */
        (void)bg_kafka_audit_budget(h, req, &pe->arena, &pe->verdict);
    return 0;
}

/* Copies the request frame out of the input and decides again from the copy,
 * so the verdict's merge state outlives the input buffer (split requests and
 * rewritten responses only: the common path never copies). */
static int bg_kafka__decide_from_copy(bg_kafka_session_t *s, bg_kafka_pending_t *pe,
                                      struct evbuffer *in, size_t frame_len, int body_off)
{
    pe->req_copy = malloc(frame_len);
    if (!pe->req_copy || evbuffer_remove(in, pe->req_copy, frame_len) != (int)frame_len)
        return -1;
    pe->req_copy_len = frame_len;
    bg_kafka_arena_reset(&pe->arena);
    /* The client id copy lived in the arena: point it into the copy, where
     * header v1+ has it after size, api key, version and correlation id. */
    if (pe->hdr.client_id.p && pe->hdr.hdr_version >= 1 &&
        frame_len >= 14 + (size_t)pe->hdr.client_id.len)
        pe->hdr.client_id.p = pe->req_copy + 14;
    else
        pe->hdr.client_id = bg_kafka_null_slice();
    return bg_kafka__decide(s, pe, pe->req_copy + 4, frame_len - 4, body_off);
}

/* A ShareFetch/ShareAcknowledge went upstream: its partitions join the
 * connection's tracked share session (kafka_share.h), owned in the
 * process-wide table under the upstream node the connection goes to. */
static int bg_kafka__share_forwarded(bg_kafka_session_t *s, bg_kafka_share_update_t *u)
{
    if (!s->share && !(s->share = bg_kafka_share_new(s->kw->g->share_owners, s->node_id)))
        return -1;
    return bg_kafka_share_forwarded(s->share, u);
}

/* Carries out pe's verdict for the frame at the head of in (or in req_copy).
 * Returns 0, 1 when the session is closing, -1 on failure. */
static int bg_kafka__act(bg_kafka_session_t *s, bg_kafka_pending_t *pe, struct evbuffer *in,
                         size_t frame_len)
{
    bg_kafka_verdict_t *v = &pe->verdict;
    bg_kafka_audit_count(s, v);
    /* A share session changes hands before its request leaves: if that
     * fails, nothing was sent that another connection's session could
     * answer. */
    if ((v->action == BG_KAFKA_ACT_FORWARD || v->action == BG_KAFKA_ACT_FORWARD_REWRITTEN) &&
        v->share && bg_kafka__share_forwarded(s, v->share) != 0)
        return -1;
    switch (v->action) {
    case BG_KAFKA_ACT_FORWARD:
        if (bg_kafka_audit_pin(s, pe) != 0) /* names must outlive the moved request bytes */
            return -1;
        if (pe->req_copy) {
            if (evbuffer_add(bg_kafka__up_target(s), pe->req_copy, frame_len) != 0)
                return -1;
        } else if (bg_kafka_up_is_ready(s->up) ? bg_kafka_up_send(s->up, in, frame_len) != 0
                   : evbuffer_remove_buffer(in, s->held, frame_len) != (int)frame_len) {
            return -1;
        }
        break;
    case BG_KAFKA_ACT_FORWARD_REWRITTEN:
        if (bg_kafka__send_rewritten(s, pe, v->request) != 0)
            return -1;
        break;
    case BG_KAFKA_ACT_RESPOND:
        /* busgate's own answer: audited when it goes out, behind the
         * answers before it (bg_kafka_session_flush), with the names it
         * needs copied now, as a forwarded request's are. */
        if (bg_kafka_audit_pin(s, pe) != 0)
            return -1;
        pe->audit_due = bg_kafka_audit_due(s, v);
        return bg_kafka_session_respond(s, pe, v->response);
    case BG_KAFKA_ACT_CLOSE:
    default:
        /* An entry without a response: the close comes after the
         * responses before it, and so does its event. */
        if (bg_kafka_audit_pin(s, pe) != 0)
            return -1;
        pe->audit_due = bg_kafka_audit_due(s, v);
        bg_kafka_session_close(s, 1, v->close_reason ? v->close_reason : "request refused");
        return 1;
    }
    if (v->no_response) {
        /* acks=0: no answer, no slot, unless requests before it still wait
         * for theirs and it has events: then it waits in its slot (no
         * response bytes, its names pinned) so that its events follow
         * theirs. */
        if (pe == TAILQ_FIRST(&s->q) || !s->kw->w->audit || !bg_kafka_audit_due(s, v)) {
            bg_kafka_audit_decisions(s, pe, NULL);
            bg_kafka__pop(s, pe);
        } else {
            pe->audit_due = 1;
        }
        return 0;
    }
    pe->needs_response = v->needs_response;
    pe->state = BG_KAFKA_PE_WAIT_UPSTREAM;
    return 0;
}

/* The upstream's range for api_key: its own once ready, before that the one
 * busgate's last connection to that broker saw. 1 listed, 0 not, -1 unknown. */
static int bg_kafka__up_range(bg_kafka_session_t *s, int16_t api_key, int16_t *umin,
                              int16_t *umax)
{
    if (bg_kafka_up_is_ready(s->up))
        return bg_kafka_up_versions(s->up, api_key, umin, umax);
    return bg_kafka_global_version_range(s->kw->g, s->node_id, api_key, umin, umax);
}

/* 1 when busgate handles (api_key, version): its own range, and once the
 * upstream's is known, the upstream's range and fit. */
static int bg_kafka__version_ok(bg_kafka_session_t *s, int16_t api_key, int16_t version)
{
    int16_t min, max, umin, umax;
    if (!bg_kafka_authz_supported(api_key, &min, &max) || version < min || version > max)
        return 0;
    int known = bg_kafka__up_range(s, api_key, &umin, &umax);
    if (known < 0)
        return 1; /* checked again before the held requests go upstream */
    return known && version >= umin && version <= umax &&
           bg_kafka_authz_upstream_fits(api_key, umin, umax);
}

/* As a Kafka broker does: a request it cannot handle closes the connection.
 * undecided: the request was refused before its decision (audited here as
 * the refusal); else it was decided and waits, audited as unanswered. */
static void bg_kafka__close_unsupported(bg_kafka_session_t *s, const bg_kafka_req_hdr_t *h,
                                        int undecided, size_t frame_len)
{
    char why[96];
    snprintf(why, sizeof why, "unsupported api %d version %d", h->api_key, h->api_version);
    if (undecided)
        bg_kafka_audit_refused(s, h->api_key, h->api_version, frame_len,
                               BG_KAFKA_E_UNSUPPORTED_VERSION, why);
    bg_kafka_session_close(s, 0, why);
}

/* An authenticated session whose token expired without re-authentication
 * is closed on its next request other than a SaslHandshake (which starts a
 * re-authentication), ApiVersions and SaslAuthenticate included, as Kafka's
 * broker does (it checks the session's end before it reads the request).
 * Returns -1 when it closed the session. */
static int bg_kafka__close_if_expired(bg_kafka_session_t *s, const bg_kafka_req_hdr_t *h,
                                      size_t frame_len)
{
    static const char why[] = "token expired without re-authentication";
    if (s->auth != BG_KAFKA_AUTH_OK || s->reauth || bg_kafka_now_ms() < s->exp_ms)
        return 0;
    bg_kafka_audit_refused(s, h->api_key, h->api_version, frame_len,
                           BG_KAFKA_E_SASL_AUTHENTICATION_FAILED, why);
    bg_kafka_session_close(s, 0, why);
    return -1;
}

/* A request that is not ApiVersions/SASL. Returns 0, or -1 to close. */
static int bg_kafka__on_api_request(bg_kafka_session_t *s, const bg_kafka_req_hdr_t *h,
                                    struct evbuffer *in, size_t frame_len, const uint8_t *p,
                                    int body_off)
{
    if (s->auth != BG_KAFKA_AUTH_OK || s->reauth) {
        bg_kafka_audit_auth_failure(s, "unauthenticated_request");
        bg_kafka_session_close(s, 0, "request before authentication");
        return -1;
    }
    if (bg_kafka__close_if_expired(s, h, frame_len) != 0)
        return -1;
    if (!bg_kafka__version_ok(s, h->api_key, h->api_version)) {
        bg_kafka__close_unsupported(s, h, 1, frame_len);
        return -1;
    }
    if (bg_kafka__refresh_snapshot(s) != 0) {
        /* The session is on the new snapshot with an empty principal: a
         * retry would decide with it. */
        bg_kafka_session_close(s, 0, "cannot prepare the principal for the new policy "
                                     "(out of memory)");
        return -1;
    }
    bg_kafka_pending_t *pe = bg_kafka_session_push(s, h);
    if (!pe) {
        bg_kafka_session_close(s, 0, "cannot queue the request (out of memory)");
        return -1;
    }
    pe->bytes_in = frame_len;
    if (bg_kafka__decide(s, pe, p + 4, frame_len - 4, body_off) != 0)
        return -1; /* closed */
    const bg_kafka_verdict_t *v = &pe->verdict;
    int keep = v->action == BG_KAFKA_ACT_FORWARD_REWRITTEN ||
               (v->action == BG_KAFKA_ACT_FORWARD && v->needs_response && v->merge);
    if (keep && bg_kafka__decide_from_copy(s, pe, in, frame_len, body_off) != 0) {
        bg_kafka_session_close(s, 0, "cannot keep a copy of the request (out of memory)");
        return -1;
    }
    int16_t umin, umax;
    if (v->upstream_version > 0 && bg_kafka__up_range(s, h->api_key, &umin, &umax) >= 0 &&
        !bg_kafka__version_ok(s, h->api_key, v->upstream_version)) {
        /* An upstream without Metadata v4 (librdkafka's mock cluster; Kafka
         * before 0.11) cannot be told not to auto-create: the request goes
         * at the client's version (docs/kafka.md). Held requests were
         * encoded for the upgrade already: on_upstream_ready closes those. */
        pe->verdict.upstream_version = 0;
    }
    /* FORWARD moves the frame out of in; a copy removed it already; else drain. */
    int drain = !keep && v->action != BG_KAFKA_ACT_FORWARD;
    int rc = bg_kafka__act(s, pe, in, frame_len);
    if (rc < 0) { /* e.g. larger than max_frame_bytes once re-encoded */
        bg_kafka_session_close(s, 0, "cannot forward the request");
        return -1;
    }
    if (drain)
        evbuffer_drain(in, frame_len);
    return rc > 0 ? -1 : 0;
}

/* Handles the complete frame of frame_len bytes at the head of in. */
static int bg_kafka__on_frame(bg_kafka_session_t *s, struct evbuffer *in, size_t frame_len)
{
    const uint8_t *p = evbuffer_pullup(in, (ssize_t)frame_len);
    if (!p) { /* returning with the frame still in the input would wedge the session */
        bg_kafka_session_close(s, 0, "cannot read the request frame (out of memory)");
        return -1;
    }
    bg_kafka_req_hdr_t h;
    const char *why = NULL;
    int off = bg_kafka_req_hdr_parse(p + 4, frame_len - 4, &h, &why);
    s->requests++;
    s->bytes_in += frame_len;
    bg_worker_metrics_t *m = &s->kw->w->metrics;
    bg_metric_add(&m->requests[BG_PROTO_KAFKA], 1);
    bg_metric_add(&m->bytes_in[BG_PROTO_KAFKA], frame_len);
    if (off < 0) {
        char msg[128];
        snprintf(msg, sizeof msg, "bad request header: %s", why ? why : bg_kafka_status_str(off));
        /* A frame too short to hold them names no API or version (-1). */
        int known = off == BG_KAFKA_ERR_UNKNOWN_API;
        bg_kafka_session_malformed(s, known || h.err_offset >= 2 ? h.api_key : -1,
                                   known || h.err_offset >= 4 ? h.api_version : -1,
                                   4 + (long)h.err_offset, frame_len, msg);
        return -1;
    }
    if (h.client_id.len > 0 && !s->client_id[0])
        snprintf(s->client_id, sizeof s->client_id, "%.*s", (int)h.client_id.len, h.client_id.p);
    if (h.api_key == BG_KAFKA_API_API_VERSIONS || h.api_key == BG_KAFKA_API_SASL_HANDSHAKE ||
        h.api_key == BG_KAFKA_API_SASL_AUTHENTICATE) {
        if (h.api_key != BG_KAFKA_API_SASL_HANDSHAKE &&
            bg_kafka__close_if_expired(s, &h, frame_len) != 0)
            return -1;
        if (bg_kafka_auth_handle(s, &h, p + 4, frame_len - 4, off) != 0)
            return -1;
        evbuffer_drain(in, frame_len);
        return 0;
    }
    return bg_kafka__on_api_request(s, &h, in, frame_len, p, off);
}

/* A size field that is negative or above the limit: the stream cannot be
 * resynchronised, so the frame is not read; its API and version are named
 * when they arrived with the size. */
static void bg_kafka__frame_too_large(bg_kafka_session_t *s, struct evbuffer *in, uint32_t max,
                                      const char *limit)
{
    uint8_t b[8];
    int16_t api = -1, ver = -1;
    if (evbuffer_copyout(in, b, sizeof b) == (ev_ssize_t)sizeof b) {
        api = (int16_t)((uint16_t)b[4] << 8 | b[5]);
        ver = (int16_t)((uint16_t)b[6] << 8 | b[7]);
    } else if (evbuffer_copyout(in, b, 4) != 4) {
        return;
    }
    int32_t size = (int32_t)((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]);
    char why[160];
    snprintf(why, sizeof why, "request frame larger than allowed (size = %ld, limit %u: %s)",
             (long)size, max, limit);
    bg_kafka_session_malformed(s, api, ver, 0, 0, why);
}

static void bg_kafka__on_client_read(struct bufferevent *bev, void *arg)
{
    bg_kafka_session_t *s = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    const bg_config_kafka_t *k = bg_kafka__cfg(s);
    /* Produce requests are large: take what is waiting in one read rather
     * than libevent's 4 KiB per wake-up. Not before authentication (frames
     * are small there), not on TLS, not while reading is paused. */
    if (s->auth == BG_KAFKA_AUTH_OK && !s->kw->g->client_tls &&
        (bufferevent_get_enabled(bev) & EV_READ) && evbuffer_get_length(in) < BG_KAFKA_READ_BURST)
        bg_util_bev_read_more(bev, BG_KAFKA_READ_BURST);
    while (!s->dead && !s->closing && bg_kafka__room(s)) {
        uint8_t hdr[6]; /* size field and API key */
        uint32_t size = 0;
        ev_ssize_t got = evbuffer_copyout(in, hdr, sizeof hdr);
        if (got < 4)
            break;
        /* SASL frames of a re-authentication too, as Kafka caps them by
         * sasl.server.max.receive.size whether or not the client logged in. */
        int full = s->auth == BG_KAFKA_AUTH_OK && !s->reauth;
        uint32_t max = full ? k->max_frame_bytes : k->preauth_max_frame_bytes;
        if (bg_kafka_frame_peek(hdr, 4, max, &size) < 0) {
            bg_kafka__frame_too_large(s, in, max,
                                      full ? "max_frame_bytes" : "preauth_max_frame_bytes");
            return;
        }
        if (evbuffer_get_length(in) < (size_t)size + 4)
            break;
        if (s->auth == BG_KAFKA_AUTH_OK && s->nq > 0 && size >= 2 && got == (ev_ssize_t)sizeof hdr &&
            ((uint16_t)hdr[4] << 8 | hdr[5]) == BG_KAFKA_API_SASL_HANDSHAKE) {
            s->reauth_wait = 1; /* until the queue is empty (bg_kafka__pop) */
            break;
        }
        if (bg_kafka__on_frame(s, in, (size_t)size + 4) != 0)
            break;
    }
    if (!s->dead) {
        size_t nq = s->nq;
        bg_kafka_session_flush(s);
        bg_kafka__update_reading(s);
        /* The flush answered requests busgate decided itself and made room:
         * whole requests already in the input would otherwise wait for more
         * bytes that may never come (the client waits for these answers). */
        uint8_t hdr[4];
        if (!s->dead && !s->closing && s->nq < nq && bg_kafka__room(s) &&
            evbuffer_copyout(in, hdr, 4) == 4)
            bufferevent_trigger(bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
    }
}

/* Requests may wait in the input while the in-flight limit or backpressure
 * paused reading; enabling EV_READ alone would not look at them again. */
static void bg_kafka__resume_input(bg_kafka_session_t *s)
{
    if (!s->dead && !s->closing && evbuffer_get_length(bufferevent_get_input(s->cli)) >= 4 &&
        bg_kafka__room(s))
        bg_kafka__on_client_read(s->cli, s);
}

/* ---- responses from the upstream broker ---- */

static bg_kafka_pending_t *bg_kafka__first_waiting(bg_kafka_session_t *s)
{
    bg_kafka_pending_t *pe;
    TAILQ_FOREACH(pe, &s->q, link)
    if (pe->state == BG_KAFKA_PE_WAIT_UPSTREAM)
        return pe;
    return NULL;
}

/* Decodes, post-processes and re-encodes the response for pe. */
static int bg_kafka__rewrite_response(bg_kafka_session_t *s, bg_kafka_pending_t *pe,
                                      const uint8_t *p, size_t len)
{
    const bg_kafka_req_hdr_t *h = &pe->hdr;
    int16_t ver = pe->verdict.upstream_version > 0 ? pe->verdict.upstream_version : h->api_version;
    int32_t corr;
    const char *why = NULL;
    int off = bg_kafka_resp_hdr_parse(p, len, bg_kafka_resp_hdr_version(h->api_key, ver), &corr,
                                      NULL, &why);
    if (off < 0)
        return -1;
    bg_rd_t rd;
    bg_rd_init(&rd, p + off, len - (size_t)off);
    bg_kafka_struct_t *resp = NULL, *out = NULL;
    /* The request's tree stays (the merge reads it); the response gets a
     * budget of its own on top, from its own size. */
    size_t budget = bg_kafka__resp_arena_budget(len);
    pe->arena.limit = pe->arena.total > SIZE_MAX - budget ? SIZE_MAX : pe->arena.total + budget;
    int rc = bg_kafka_decode(bg_kafka_msg_desc(h->api_key, 1), ver, &rd, &pe->arena, &resp);
    if (rc == BG_KAFKA_ERR_LIMIT && rd.why && strcmp(rd.why, "arena limit") == 0) {
        bg_log_warn("kafka",
                    "upstream response needs more memory than allowed: api %d version %d, "
                    "%zu bytes, decoded tree limited to %u times that + 1 MiB",
                    h->api_key, ver, len, BG_KAFKA_RESP_ARENA_FACTOR);
        return -1;
    }
    if (rc != BG_KAFKA_OK) {
        bg_log_warn("kafka", "malformed upstream response: api %d version %d offset %ld: %s",
                    h->api_key, ver, (long)(rd.p - p), rd.why ? rd.why : "?");
        return -1;
    }
    /* The body ended before the frame: the broker and busgate disagree on
     * the message's layout (a version mismatch or a desynchronised stream).
     * What follows is not passed on, nor dropped silently (the Produce scan
     * refuses the same, kafka_scan.c). */
    if (bg_rd_left(&rd) != 0) {
        bg_log_warn("kafka",
                    "malformed upstream response: api %d version %d offset %ld: %zu bytes after "
                    "the body",
                    h->api_key, ver, (long)(rd.p - p), bg_rd_left(&rd));
        return -1;
    }
    if (rd.unknown_tags)
        bg_kafka_struct_drop_unknown(resp, 0); /* nothing passes that busgate cannot read */
    /* The session's snapshot, the one its prepared principal (s->pp) belongs
     * to: a request decided before a reload is answered under the policy in
     * force now (the request's own snapshot and the re-prepared principal
     * would not match, and every topic would be hidden). */
    bg_kafka_authz_ctx_t ctx;
    bg_kafka__ctx(s, s->snap, &ctx);
    int32_t nodes[64];
    size_t nnodes = sizeof nodes / sizeof nodes[0];
    if (bg_kafka_authz_response(&ctx, h, &pe->verdict, resp, &pe->arena, &out, nodes, &nnodes,
                                bg_kafka__learn_topic, s->kw->g) != 0) {
        bg_log_warn("kafka",
                    "cannot rewrite the upstream response: api %d version %d, %zu bytes "
                    "(out of memory, or past its limit of %u times that + 1 MiB)",
                    h->api_key, ver, len, BG_KAFKA_RESP_ARENA_FACTOR);
        return -1;
    }
    /* Brokers it named (Metadata, DescribeCluster, a coordinator, new
     * leaders in NodeEndpoints) were learned as it was rewritten: their
     * ports open before the client reads it. */
    if (nnodes > 0)
        bg_kafka_worker_open_ports(s->kw);
    if (pe->verdict.share && s->share) /* ShareFetch, ShareAcknowledge: ErrorCode is field 1 */
        bg_kafka_share_answered(s->share, pe->verdict.share,
                                (int16_t)resp->f[BG_KAFKA_SHARE_FETCH_RESP_ERROR_CODE].i);
    return bg_kafka_session_respond(s, pe, out);
}

/* The entry a response frame at the head of in answers: the oldest request
 * still waiting for the upstream, with the same correlation id. NULL (and
 * the session closing) when the broker answered something else. */
static bg_kafka_pending_t *bg_kafka__match_response(bg_kafka_session_t *s, struct evbuffer *in)
{
    bg_kafka_pending_t *pe = bg_kafka__first_waiting(s);
    uint8_t hdr[8];
    if (evbuffer_copyout(in, hdr, 8) < 8) { /* the upstream checks the size first */
        bg_kafka_session_close(s, 0, "unexpected response from the upstream broker");
        return NULL;
    }
    int32_t corr = (int32_t)((uint32_t)hdr[4] << 24 | (uint32_t)hdr[5] << 16 |
                             (uint32_t)hdr[6] << 8 | hdr[7]);
    /* A protocol fault of the broker, as a bad frame size is: a warn naming
     * it, as the upstream's own (bg_kafka_up__fail). */
    if (!pe) {
        bg_log_warn("kafka",
                    "upstream %s: response with correlation id %d, but no request waits for one",
                    bg_kafka_up_where(s->up), (int)corr);
        bg_kafka_session_close(s, 0, "unexpected response from the upstream broker");
        return NULL;
    }
    if (corr != pe->hdr.correlation_id) {
        bg_log_warn("kafka", "upstream %s: correlation id mismatch: expected %d, received %d",
                    bg_kafka_up_where(s->up), (int)pe->hdr.correlation_id, (int)corr);
        bg_kafka_session_close(s, 0, "upstream correlation id mismatch");
        return NULL;
    }
    return pe;
}

/* Produce (v10+) responses are rewritten only for their top-level
 * NodeEndpoints field, which brokers send only when leadership moved.
 * Without it (and with nothing to merge) the response is forwarded
 * untouched: scanned in place, never linearised or re-encoded. The Fetch
 * branch is not reached today: Fetch is offered up to v15 (kafka_authz.c),
 * which has no NodeEndpoints, so a Fetch response needs rewriting only for
 * a merge, which is decided above. It stays for a Fetch v16+ range. */
static int bg_kafka__response_untouched(const bg_kafka_pending_t *pe, struct evbuffer *in,
                                        size_t frame_len)
{
    const bg_kafka_req_hdr_t *h = &pe->hdr;
    int idx;
    if (pe->verdict.merge)
        return 0;
    if (h->api_key == BG_KAFKA_API_FETCH)
        idx = BG_KAFKA_FETCH_RESP_NODE_ENDPOINTS;
    else if (h->api_key == BG_KAFKA_API_PRODUCE)
        idx = BG_KAFKA_PRODUCE_RESP_NODE_ENDPOINTS;
    else
        return 0;
    const bg_kafka_msg_desc_t *d = bg_kafka_msg_desc(h->api_key, 1);
    uint8_t hdr[9];
    /* Response header v1: size, correlation id, an empty tagged section. */
    if (bg_kafka_resp_hdr_version(h->api_key, h->api_version) != 1 || frame_len < 9 ||
        evbuffer_copyout(in, hdr, 9) != 9 || hdr[8] != 0)
        return 0;
    uint64_t tags;
    if (bg_kafka_scan_top_tags(in, 9, frame_len - 9, d, h->api_version, &tags) != 0)
        return 0;
    int32_t tag = d->body->fields[idx].tag;
    return tag < 0 || !(tags & (1ull << (tag < 63 ? tag : 63)));
}

static int bg_kafka__on_upstream_frame(void *arg, struct evbuffer *in, size_t frame_len)
{
    bg_kafka_session_t *s = arg;
    bg_kafka_pending_t *pe = bg_kafka__match_response(s, in);
    if (!pe)
        return -1;
    if (pe->needs_response && bg_kafka__response_untouched(pe, in, frame_len))
        pe->needs_response = 0;
    if (!pe->needs_response) {
        /* moves chains, no copy; a short move would send half a frame */
        if (evbuffer_remove_buffer(in, pe->out, frame_len) != (int)frame_len) {
            bg_kafka_session_close(s, 0, "cannot queue a response (out of memory)");
            return -1;
        }
    } else {
        const uint8_t *p = evbuffer_pullup(in, (ssize_t)frame_len);
        int rc = p ? bg_kafka__rewrite_response(s, pe, p + 4, frame_len - 4) : -1;
        evbuffer_drain(in, frame_len);
        if (rc != 0) {
            bg_kafka_session_close(s, 0, "cannot process the upstream response");
            return -1;
        }
    }
    pe->state = BG_KAFKA_PE_READY;
    pe->bytes_out = evbuffer_get_length(pe->out);
    pe->audit_due = 1; /* audited as it goes out (bg_kafka_session_flush), in order */
    bg_kafka_session_flush(s);
    bg_kafka__update_reading(s);
    bg_kafka__resume_input(s);
    return s->dead ? -1 : 0;
}

/* Cut-through: a response that is forwarded untouched goes to the client as
 * its bytes arrive instead of after the whole frame (a multi-megabyte fetch
 * response would otherwise cross busgate in two serial transfers). */
static int bg_kafka__on_upstream_frame_begin(void *arg, struct evbuffer *in, size_t frame_len)
{
    bg_kafka_session_t *s = arg;
    bg_kafka_pending_t *pe = bg_kafka__match_response(s, in);
    if (!pe)
        return -1;
    if (pe->needs_response)
        return 0;
    bg_kafka_session_flush(s); /* earlier responses are ready: pe becomes the head */
    s->streaming = pe;
    pe->bytes_out = 0; /* what reached the client, counted as it goes (a cut one's part) */
    return 1;
}

/* The streamed response is complete: audited, and the queue moves on. */
static int bg_kafka__stream_done(bg_kafka_session_t *s, bg_kafka_pending_t *pe, int head)
{
    s->streaming = NULL;
    if (head) { /* all of it has gone out: audited now */
        int64_t latency = bg_util_now_us() - pe->start_us;
        bg_kafka_audit_decisions(s, pe, &latency);
        bg_kafka__pop(s, pe);
    } else { /* audited as it goes out, behind the ones before it */
        pe->audit_due = 1;
        pe->state = BG_KAFKA_PE_READY;
        pe->bytes_out = evbuffer_get_length(pe->out);
    }
    bg_kafka_session_flush(s);
    bg_kafka__update_reading(s);
    bg_kafka__resume_input(s);
    return s->dead ? -1 : 0;
}

static int bg_kafka__on_upstream_stream(void *arg, struct evbuffer *in, size_t n, int last)
{
    bg_kafka_session_t *s = arg;
    bg_kafka_pending_t *pe = s->streaming;
    if (!pe || s->dead)
        return -1;
    int head = pe == TAILQ_FIRST(&s->q);
    size_t queued = head ? evbuffer_get_length(pe->out) : 0;
    /* Became the head mid-stream (what was ahead was answered meanwhile):
     * its bytes queued so far go first. No answer comes that way today
     * (an entry ahead is answered by the broker before this response or
     * is ready at once), but a held one would. */
    if (queued > 0) {
        if (bg_util_bev_send(s->cli, pe->out, queued, !s->kw->g->client_tls) != 0) {
            bg_kafka_session_close(s, 0, "cannot queue a response (out of memory)");
            return -1;
        }
        bg_kafka__count_out(s, queued);
        pe->bytes_out += queued;
    }
    int rc = head ? bg_util_bev_send(s->cli, in, n, !s->kw->g->client_tls) /* as it arrives */
                  : (evbuffer_remove_buffer(in, pe->out, n) == (int)n ? 0 : -1);
    if (rc != 0) { /* the stream would lose its place in the upstream's bytes */
        bg_kafka_session_close(s, 0, "cannot queue a response (out of memory)");
        return -1;
    }
    if (head) {
        bg_kafka__count_out(s, n);
        pe->bytes_out += n;
    }
    if (!last) {
        bg_kafka__update_reading(s);
        return s->dead ? -1 : 0;
    }
    return bg_kafka__stream_done(s, pe, head);
}

/* The rest of a streamed response may be spliced to the client's socket when
 * it is the response the client waits for next, the client connection is
 * plain TCP and nothing is queued ahead of it. */
static int bg_kafka__on_upstream_splice_to(void *arg)
{
    bg_kafka_session_t *s = arg;
    if (s->dead || !s->streaming || s->streaming != TAILQ_FIRST(&s->q) || s->kw->g->client_tls ||
        evbuffer_get_length(s->streaming->out) != 0 ||
        evbuffer_get_length(bufferevent_get_output(s->cli)) != 0)
        return -1;
    return (int)bufferevent_getfd(s->cli);
}

static int bg_kafka__on_upstream_spliced(void *arg, uint64_t n, int err)
{
    bg_kafka_session_t *s = arg;
    bg_kafka_pending_t *pe = s->streaming;
    if (!pe || s->dead)
        return -1;
    bg_kafka__count_spliced(s, pe, n);
    if (err < 0)
        return 0; /* the upstream reports its failure next */
    if (err == ETIMEDOUT) {
        bg_kafka_session_close(s, 0, "idle timeout: the client reads no responses");
        return -1;
    }
    if (err) {
        char msg[200];
        snprintf(msg, sizeof msg, "cannot send a response to the client: %s", strerror(err));
        bg_kafka_session_close(s, 0, msg);
        return -1;
    }
    return bg_kafka__stream_done(s, pe, 1);
}

/* The upstream's versions are known: kept for later sessions to this
 * broker, and the ApiVersions requests that waited for them answered. 0,
 * or -1 when the session was closed. */
static int bg_kafka__upstream_versions_known(bg_kafka_session_t *s)
{
    size_t vlen;
    int16_t vver, vmin[BG_KAFKA_VERSIONS_APIS], vmax[BG_KAFKA_VERSIONS_APIS];
    const uint8_t *vbody = bg_kafka_up_api_versions_body(s->up, &vlen, &vver);
    for (int16_t k = 0; k < BG_KAFKA_VERSIONS_APIS; k++)
        if (!bg_kafka_up_versions(s->up, k, &vmin[k], &vmax[k]))
            vmin[k] = vmax[k] = -1;
    bg_kafka_global_keep_versions(s->kw->g, s->node_id, vbody, vlen, vver, vmin, vmax);
    bg_kafka_pending_t *pe;
    TAILQ_FOREACH(pe, &s->q, link)
    if (pe->state == BG_KAFKA_PE_WAIT_VERSIONS && bg_kafka_auth_versions_ready(s, pe) != 0) {
        bg_kafka_session_close(s, 0, "cannot answer ApiVersions");
        return -1;
    }
    return 0;
}

/* Sends what became ready and reads the client again. */
static void bg_kafka__upstream_go_on(bg_kafka_session_t *s)
{
    bg_kafka_session_flush(s);
    if (s->dead)
        return;
    bg_kafka__update_reading(s);
    bg_kafka__resume_input(s); /* requests already buffered while the queue was full */
}

static void bg_kafka__on_upstream_ready(void *arg)
{
    bg_kafka_session_t *s = arg;
    bg_kafka_pending_t *pe;
    /* Requests decided before the upstream's versions were known: one the
     * upstream cannot take closes the session before any of them is sent. */
    TAILQ_FOREACH(pe, &s->q, link)
    if (pe->state == BG_KAFKA_PE_WAIT_UPSTREAM &&
        (!bg_kafka__version_ok(s, pe->hdr.api_key, pe->hdr.api_version) ||
         (pe->verdict.upstream_version > 0 &&
          !bg_kafka__version_ok(s, pe->hdr.api_key, pe->verdict.upstream_version)))) {
        bg_kafka_req_hdr_t h = pe->hdr;
        if (pe->verdict.upstream_version > 0) /* name the version that is missing */
            h.api_version = pe->verdict.upstream_version;
        bg_kafka__close_unsupported(s, &h, 0, 0);
        return;
    }
    if (bg_kafka__upstream_versions_known(s) != 0)
        return;
    if (evbuffer_add_buffer(bg_kafka_up_output(s->up), s->held) != 0) {
        bg_kafka_session_close(s, 0, "cannot forward the held requests (out of memory)");
        return;
    }
    bg_kafka__upstream_go_on(s);
}

/* The broker's versions, known before busgate logs in for a client that
 * has not authenticated yet (its ApiVersions waited for them). */
static void bg_kafka__on_upstream_versions(void *arg)
{
    bg_kafka_session_t *s = arg;
    if (bg_kafka__upstream_versions_known(s) == 0)
        bg_kafka__upstream_go_on(s);
}

/* The broker's connection ended. Responses it sent before are queued for
 * the client (a slow reader can have megabytes of them): they still go
 * out, as they would from the broker itself, within the close grace. The
 * requests it did not answer never will be, and nothing queued behind them
 * may overtake them: they are audited as unanswered and dropped. A response
 * being cut through cannot be completed: the client's stream ends now. */
static void bg_kafka__on_upstream_failed(void *arg, const char *why)
{
    bg_kafka_session_t *s = arg;
    char msg[160];
    snprintf(msg, sizeof msg, "upstream connection lost: %s", why);
    if (s->streaming) {
        bg_kafka_session_close(s, 0, msg);
        return;
    }
    bg_kafka_session_flush(s);
    if (s->dead)
        return;
    bg_kafka_pending_t *pe;
    while ((pe = TAILQ_FIRST(&s->q)) != NULL) {
        bg_kafka__audit_left(s, pe);
        bg_kafka__pop(s, pe);
    }
    bg_kafka_session_close(s, 1, msg);
}

static void bg_kafka__on_upstream_drained(void *arg)
{
    bg_kafka__update_reading(arg);
    bg_kafka__resume_input(arg);
}

static size_t bg_kafka__on_upstream_outstanding(void *arg)
{
    bg_kafka_session_t *s = arg;
    bg_kafka_pending_t *pe;
    size_t n = 0;
    TAILQ_FOREACH(pe, &s->q, link)
    n += pe->state == BG_KAFKA_PE_WAIT_UPSTREAM;
    return n;
}

static const bg_kafka_up_cbs_t bg_kafka__up_cbs = {
    .ready = bg_kafka__on_upstream_ready,
    .versions = bg_kafka__on_upstream_versions,
    .frame_begin = bg_kafka__on_upstream_frame_begin,
    .stream = bg_kafka__on_upstream_stream,
    .splice_to = bg_kafka__on_upstream_splice_to,
    .spliced = bg_kafka__on_upstream_spliced,
    .frame = bg_kafka__on_upstream_frame,
    .failed = bg_kafka__on_upstream_failed,
    .drained = bg_kafka__on_upstream_drained,
    .outstanding = bg_kafka__on_upstream_outstanding,
};

/* ---- client connection events ---- */

static void bg_kafka__on_client_write(struct bufferevent *bev, void *arg)
{
    bg_kafka_session_t *s = arg;
    if (s->dead)
        return;
    if (s->closing && s->nq == 0 && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        bg_kafka__kill(s);
        return;
    }
    bg_kafka__update_reading(s);
    bg_kafka__resume_input(s);
}

/* 1 while the client waits for the broker or reads what busgate sends it:
 * a request still with the broker (a JoinGroup waits for the whole
 * rebalance), output waiting (the write timeout closes a client that stopped
 * reading it), a response spliced or cut through to it that moved since the
 * last check (a stalled one does not count). */
static int bg_kafka__busy(bg_kafka_session_t *s)
{
    uint64_t mark = s->bytes_out + (s->up ? bg_kafka_up_splice_moved(s->up) : 0);
    int moved = mark != s->idle_mark;
    s->idle_mark = mark;
    if (evbuffer_get_length(bufferevent_get_output(s->cli)) > 0)
        return 1;
    if (s->streaming)
        return moved;
    return s->nq > 0;
}

/* While a client's reading is paused, its socket is not read, so neither
 * its EOF nor a reset would be seen before the broker answers (a held
 * fetch: minutes). The connection's TCP state tells without reading: the
 * peer's FIN (CLOSE_WAIT, also behind requests it sent meanwhile) or a
 * reset (CLOSE) ends the session as EOF does. Polled: epoll reports a reset
 * as readable, which a watch that may not read would see for ever. */
static void bg_kafka__on_hangup_check(evutil_socket_t fd, short what, void *arg)
{
    bg_kafka_session_t *s = arg;
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    (void)fd;
    (void)what;
    if (s->dead)
        return;
    evutil_socket_t cfd = bufferevent_getfd(s->cli);
    if (cfd < 0 || getsockopt(cfd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
        return; /* not TCP: seen once reading resumes */
    if (ti.tcpi_state == TCP_CLOSE_WAIT || ti.tcpi_state == TCP_CLOSE) {
        bg_kafka__ending(s, "client closed the connection");
        bg_kafka__kill(s);
    }
}

/* idle_timeout: the client sent nothing (reading) or took nothing of its
 * output (writing) for that long. */
static void bg_kafka__on_idle(bg_kafka_session_t *s, short what)
{
    if (what & BEV_EVENT_WRITING) {
        bg_kafka_session_close(s, 0, "idle timeout: the client reads no responses");
        return;
    }
    if (!bg_kafka__busy(s)) {
        bg_kafka_session_close(s, 0, "idle timeout");
        return;
    }
    /* A socket bufferevent stops reading at its timeout (an OpenSSL one does
     * not): reading again, if there is room, re-arms it. */
    bufferevent_disable(s->cli, EV_READ);
    bg_kafka__update_reading(s);
}

static void bg_kafka__on_client_event(struct bufferevent *bev, short what, void *arg)
{
    bg_kafka_session_t *s = arg;
    if (s->dead)
        return;
    if (what & BEV_EVENT_TIMEOUT)
        bg_kafka__on_idle(s, what);
    else if (what & BEV_EVENT_ERROR) {
        char why[400];
        s->cli_failed = 1;
        bg_util_tls_client_failure(bev, why, sizeof why);
        bg_kafka_session_close(s, 0, why);
    } else if (what & BEV_EVENT_EOF) {
        bg_kafka__ending(s, "client closed the connection");
        bg_kafka__kill(s);
    }
}

static void bg_kafka__on_auth_timeout(evutil_socket_t fd, short what, void *arg)
{
    bg_kafka_session_t *s = arg;
    (void)fd;
    (void)what;
    if (s->dead || s->auth == BG_KAFKA_AUTH_OK || s->reauth)
        return;
    bg_kafka_audit_auth_failure(s, "timeout");
    bg_kafka_session_close(s, 0, "not authenticated within kafka.auth_timeout");
}

void bg_kafka_session_accept(bg_kafka_worker_t *kw, int fd, const struct sockaddr *peer,
                             int peerlen, int32_t node_id, bg_limits_conn_t *lim)
{
    bg_kafka_session_t *s = calloc(1, sizeof *s);
    if (!s) {
        bg_limits_release(lim);
        evutil_closesocket(fd);
        return;
    }
    s->conn_lim = *lim;
    bg_util_nodelay(fd);
    s->kw = kw;
    s->node_id = node_id;
    s->started_ms = bg_util_now_ms();
    TAILQ_INIT(&s->q);
    bg_util_format_peer(peer, s->peer, sizeof s->peer);
    bg_audit_uuid4(s->id);
    TAILQ_INSERT_TAIL(&kw->sessions, s, link);
    kw->nsessions++;
    bg_metric_add(&kw->w->metrics.conn_open[BG_PROTO_KAFKA], 1);
    bg_metric_add(&kw->w->metrics.conn_total[BG_PROTO_KAFKA], 1);
    s->snap = bg_snapshot_acquire();
    s->free_ev = event_new(kw->w->base, -1, 0, bg_kafka__on_free, s);
    s->close_ev = evtimer_new(kw->w->base, bg_kafka__on_close_grace, s);
    s->auth_ev = evtimer_new(kw->w->base, bg_kafka__on_auth_timeout, s);
    s->eof_ev = event_new(kw->w->base, -1, EV_PERSIST, bg_kafka__on_hangup_check, s);
    s->held = evbuffer_new();
    s->cli = bg_util_tls_client_bev(kw->w->base, kw->g->client_tls, fd);
    if (!s->cli)
        evutil_closesocket(fd);
    if (!s->snap || !s->free_ev || !s->close_ev || !s->auth_ev || !s->held || !s->cli ||
        !s->eof_ev) {
        if (s->free_ev) {
            bg_kafka__kill(s);
        } else {
            bg_kafka__free(s);
        }
        return;
    }
    bufferevent_setcb(s->cli, bg_kafka__on_client_read, bg_kafka__on_client_write,
                      bg_kafka__on_client_event, s);
    bufferevent_setwatermark(s->cli, EV_WRITE, BG_KAFKA_CLI_LOW_WATER, 0);
    bufferevent_set_max_single_read(s->cli, 256 * 1024);
    bufferevent_set_max_single_write(s->cli, 1024 * 1024); /* libevent writes 16 KiB a loop by default */
    int64_t idle = kw->g->cfg->kafka.idle_timeout_ms;
    struct timeval tv = {(time_t)(idle / 1000), (suseconds_t)(idle % 1000) * 1000};
    /* Read: the client sent nothing; write: it took none of its output. */
    bufferevent_set_timeouts(s->cli, idle > 0 ? &tv : NULL, idle > 0 ? &tv : NULL);
    bufferevent_enable(s->cli, EV_READ | EV_WRITE);
    /* No upstream yet: busgate logs in to the broker only for a client
     * that authenticated (see bg_kafka_session_start_upstream), and one
     * that does not within kafka.auth_timeout is closed. */
    int64_t at = kw->g->cfg->kafka.auth_timeout_ms;
    struct timeval atv = {(time_t)(at / 1000), (suseconds_t)(at % 1000) * 1000};
    if (at > 0)
        event_add(s->auth_ev, &atv);
}

int bg_kafka_session_start_upstream(bg_kafka_session_t *s)
{
    /* busgate logs in with its own credential only for a client that has
     * authenticated: for one that has not, the broker is asked its
     * versions and nothing more (anyone who reaches the port could make
     * busgate open logins otherwise: against the broker's quotas, or failed
     * logins at will when busgate's credential is refused). */
    int login = s->auth == BG_KAFKA_AUTH_OK;
    if (s->up) {
        if (login && bg_kafka_up_login(s->up) != 0) {
            bg_kafka_session_close(s, 0, "cannot log in to the broker (out of memory)");
            return -1;
        }
        return 0;
    }
    char why[400];
    s->up = bg_kafka_up_connect(s->kw->w->base, s->kw->w->dns, s->kw->g, s->node_id,
                                &bg_kafka__up_cbs, s, why, sizeof why);
    if (!s->up) {
        bg_kafka_session_close(s, 0, why);
        return -1;
    }
    if (!login)
        bg_kafka_up_hold_login(s->up);
    return 0;
}

void bg_kafka_sessions_drain(bg_kafka_worker_t *kw)
{
    bg_kafka_session_t *s;
    TAILQ_FOREACH(s, &kw->sessions, link)
    bg_kafka_session_close(s, 1, NULL);
}

void bg_kafka_sessions_free(bg_kafka_worker_t *kw)
{
    while (!TAILQ_EMPTY(&kw->sessions))
        bg_kafka__free(TAILQ_FIRST(&kw->sessions));
}
