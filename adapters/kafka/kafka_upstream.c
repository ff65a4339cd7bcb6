#include "adapters/kafka/kafka_upstream.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "adapters/kafka/kafka_authz.h"
#include "adapters/kafka/kafka_codec.h"
#include "adapters/kafka/kafka_frame.h"
#include "adapters/kafka/kafka_sasl.h"
#include "adapters/kafka/kafka_scram.h"
#include "broker/log.h"
#include "broker/util_net.h"
#include "broker/util_splice.h"
#include "broker/util_tls.h"
#include "broker/version.h"

#define BG_KAFKA_UP_MAX_API 128
#define BG_KAFKA_UP_HIGH_WATER (8u << 20)
#define BG_KAFKA_UP_LOW_WATER (1u << 20)
#define BG_KAFKA_UP_CONNECT_TIMEOUT_S 10
/* The ApiVersions version busgate asks its upstream first: the highest its
 * codec takes without the cluster and node ids of v5 (KIP-1242), which
 * busgate does not know. v4 because at v0-v3 a broker omits the features
 * whose MinVersion is 0 (KAFKA-17011), and busgate relays this list to
 * clients that ask v4 or v5. */
#define BG_KAFKA_UP_VERSIONS_VER 4
/* What one read callback takes from the socket at most (libevent alone
 * would take 4 KiB): big enough that a fetch response crosses in a few
 * reads, small enough to keep other connections of the worker served. */
#define BG_KAFKA_UP_READ_BURST (256u * 1024)
/* A streamed frame with at least this much still to come goes from the
 * broker's socket to the client's in the kernel (splice) when both are plain
 * TCP: a fetch response's record batches are then never copied through
 * busgate's memory. Below it the buffered relay costs less than the pipe
 * round. */
#define BG_KAFKA_UP_SPLICE_MIN (64u * 1024)
/* Re-authentication (KIP-368): a broker with connections.max.reauth.ms
 * gives busgate's login a session lifetime and closes the connection on the
 * first request after it ends. busgate logs in again on the same connection
 * at 85-95 % of the lifetime (as Kafka's Java client does), once the
 * responses to every request sent before have arrived: requests meanwhile
 * wait in a hold buffer, so every frame the broker sends during the exchange
 * is an authentication answer. Kafka refuses a re-authentication within 1 s
 * of the previous one, and a lifetime is capped so the timer math cannot
 * overflow. */
#define BG_KAFKA_UP_REAUTH_TIMEOUT_S 10
#define BG_KAFKA_UP_REAUTH_MIN_MS 1100
#define BG_KAFKA_UP_REAUTH_MAX_MS (1ll << 40)

typedef enum {
    BG_KAFKA_UP_REAUTH_NONE = 0,
    BG_KAFKA_UP_REAUTH_DUE,     /* waiting until no response is outstanding */
    BG_KAFKA_UP_REAUTH_RUNNING, /* SaslHandshake + SaslAuthenticate in flight */
} bg_kafka_up_reauth_t;

typedef enum {
    BG_KAFKA_UP_CONNECTING = 0,
    BG_KAFKA_UP_VERSIONS,
    BG_KAFKA_UP_VERSIONED, /* versions known, the login held (bg_kafka_up_hold_login) */
    BG_KAFKA_UP_HANDSHAKE,
    BG_KAFKA_UP_AUTH,
    BG_KAFKA_UP_READY,
    BG_KAFKA_UP_FAILED,
} bg_kafka_up_state_t;

struct bg_kafka_up_s {
    bg_kafka_global_t *g;
    struct bufferevent *bev;
    bg_kafka_up_cbs_t cbs;
    void *arg;
    bg_kafka_up_state_t state;
    int login_held;         /* bg_kafka_up_hold_login until bg_kafka_up_login */
    struct event *login_ev; /* goes on with a held login from the loop */
    int16_t sent_api, sent_ver; /* the handshake request in flight */
    int32_t corr;
    int16_t vmin[BG_KAFKA_UP_MAX_API], vmax[BG_KAFKA_UP_MAX_API];
    uint8_t *versions_body; /* the upstream's ApiVersions response body */
    size_t versions_len;
    int16_t versions_ver;
    bg_kafka_scram_t *scram;
    int auth_round;
    int64_t lifetime_ms;        /* the broker's session lifetime; 0: none */
    bg_kafka_up_reauth_t reauth;
    struct event *reauth_timer; /* the next re-authentication */
    uint64_t responses;         /* response frames relayed so far */
    uint64_t reauth_after;      /* re-authenticate once responses reach this */
    struct evbuffer *hold;      /* requests sent while re-authenticating */
    uint32_t max_frame;    /* largest size field accepted: kafka.max_response_bytes */
    uint64_t stream_left;  /* bytes of the frame being streamed still to come */
    bg_util_splice_t *splice; /* made by the first spliced frame */
    int splicing;             /* the rest of the streamed frame is being spliced */
    int whole;             /* the frame at the head is wanted whole */
    bg_kafka_arena_t arena;
    char where[300]; /* "host:port (node N)" for logs */
};

int bg_kafka_up_is_ready(const bg_kafka_up_t *u)
{
    if (!u) /* not connected yet: the client has not authenticated */
        return 0;
    return u->state == BG_KAFKA_UP_READY || u->reauth != BG_KAFKA_UP_REAUTH_NONE;
}

uint64_t bg_kafka_up_splice_moved(const bg_kafka_up_t *u)
{
    return u->splicing && u->splice ? bg_util_splice_moved(u->splice) : 0;
}
struct evbuffer *bg_kafka_up_output(bg_kafka_up_t *u)
{
    return u->reauth != BG_KAFKA_UP_REAUTH_NONE ? u->hold : bufferevent_get_output(u->bev);
}

int bg_kafka_up_send(bg_kafka_up_t *u, struct evbuffer *src, size_t n)
{
    if (u->reauth != BG_KAFKA_UP_REAUTH_NONE)
        return evbuffer_remove_buffer(src, u->hold, n) == (int)n ? 0 : -1;
    return bg_util_bev_send(u->bev, src, n, !u->g->upstream_tls);
}

void bg_kafka_up_set_reading(bg_kafka_up_t *u, int on)
{
    if (u->splicing) /* the splice reads the socket (and waits for the client) itself */
        return;
    if (on && u->state == BG_KAFKA_UP_FAILED) /* its session is only flushing to the client */
        return;
    if (on)
        bufferevent_enable(u->bev, EV_READ);
    else
        bufferevent_disable(u->bev, EV_READ);
}

int bg_kafka_up_versions(const bg_kafka_up_t *u, int16_t api_key, int16_t *min, int16_t *max)
{
    if (api_key < 0 || api_key >= BG_KAFKA_UP_MAX_API || u->vmax[api_key] < 0)
        return 0;
    *min = u->vmin[api_key];
    *max = u->vmax[api_key];
    return 1;
}

const uint8_t *bg_kafka_up_api_versions_body(const bg_kafka_up_t *u, size_t *len, int16_t *version)
{
    *len = u->versions_len;
    *version = u->versions_ver;
    return u->versions_body;
}

static void bg_kafka_up__fail(bg_kafka_up_t *u, const char *why)
{
    if (u->state == BG_KAFKA_UP_FAILED)
        return;
    u->state = BG_KAFKA_UP_FAILED;
    bg_log_warn("kafka", "upstream %s: %s", u->where, why);
    u->cbs.failed(u->arg, why);
}

/* Sends a handshake request whose body is the tree `body`. 0 ok, -1 failed. */
static int bg_kafka_up__send(bg_kafka_up_t *u, int16_t api, int16_t ver,
                             const bg_kafka_struct_t *body)
{
    const bg_kafka_msg_desc_t *d = bg_kafka_msg_desc(api, 0);
    bg_wr_t wr;
    bg_wr_init(&wr, 256, 1u << 20);
    size_t off = bg_kafka_frame_begin(&wr);
    bg_kafka_req_hdr_t h = {.api_key = api,
                            .api_version = ver,
                            .correlation_id = ++u->corr,
                            .client_id = bg_kafka_cstr("busgate"),
                            .hdr_version = (uint8_t)bg_kafka_req_hdr_version(api, ver)};
    bg_kafka_req_hdr_write(&wr, &h);
    const char *why = NULL;
    int rc = d ? bg_kafka_encode(d, ver, body, &wr, &why) : BG_KAFKA_ERR_UNKNOWN_API;
    bg_kafka_frame_end(&wr, off);
    if (rc == BG_KAFKA_OK && !wr.failed)
        rc = evbuffer_add(bufferevent_get_output(u->bev), wr.buf, wr.len) == 0 ? 0 : -1;
    else
        rc = -1;
    if (wr.buf)
        OPENSSL_cleanse(wr.buf, wr.len); /* SASL requests carry the credential */
    bg_wr_free(&wr);
    u->sent_api = api;
    u->sent_ver = ver;
    return rc;
}

static int bg_kafka_up__send_versions(bg_kafka_up_t *u, int16_t ver)
{
    bg_kafka_arena_reset(&u->arena);
    bg_kafka_struct_t *b = bg_kafka_struct_new(&u->arena, bg_kafka_msg_api_versions_req.body);
    if (!b)
        return -1;
    b->f[BG_KAFKA_API_VERSIONS_REQ_CLIENT_SOFTWARE_NAME].s = bg_kafka_cstr("busgate");
    b->f[BG_KAFKA_API_VERSIONS_REQ_CLIENT_SOFTWARE_VERSION].s = bg_kafka_cstr(BG_VERSION);
    u->state = BG_KAFKA_UP_VERSIONS;
    return bg_kafka_up__send(u, BG_KAFKA_API_API_VERSIONS, ver, b);
}

static int bg_kafka_up__send_handshake(bg_kafka_up_t *u)
{
    bg_kafka_arena_reset(&u->arena);
    bg_kafka_struct_t *b = bg_kafka_struct_new(&u->arena, bg_kafka_msg_sasl_handshake_req.body);
    if (!b)
        return -1;
    b->f[BG_KAFKA_SASL_HANDSHAKE_REQ_MECHANISM].s =
        bg_kafka_cstr(u->g->cfg->kafka.upstream.sasl_mechanism);
    u->state = BG_KAFKA_UP_HANDSHAKE;
    return bg_kafka_up__send(u, BG_KAFKA_API_SASL_HANDSHAKE, 1, b);
}

static int bg_kafka_up__send_auth_bytes(bg_kafka_up_t *u, const bg_wr_t *msg)
{
    int16_t min, max, ver = 1;
    if (bg_kafka_up_versions(u, BG_KAFKA_API_SASL_AUTHENTICATE, &min, &max))
        ver = max >= 2 ? 2 : max;
    bg_kafka_arena_reset(&u->arena);
    bg_kafka_struct_t *b = bg_kafka_struct_new(&u->arena, bg_kafka_msg_sasl_authenticate_req.body);
    if (!b)
        return -1;
    b->f[BG_KAFKA_SASL_AUTHENTICATE_REQ_AUTH_BYTES].s.p = msg->buf;
    b->f[BG_KAFKA_SASL_AUTHENTICATE_REQ_AUTH_BYTES].s.len = (int32_t)msg->len;
    u->state = BG_KAFKA_UP_AUTH;
    return bg_kafka_up__send(u, BG_KAFKA_API_SASL_AUTHENTICATE, ver, b);
}

/* First SaslAuthenticate: PLAIN's only message or SCRAM's client-first. */
static int bg_kafka_up__start_auth(bg_kafka_up_t *u)
{
    const bg_config_kafka_t *k = &u->g->cfg->kafka;
    bg_wr_t msg;
    bg_wr_init(&msg, 128, 4096);
    int rc = -1;
    const char *why = NULL;
    bg_kafka_scram_mech_t mech = bg_kafka_scram_mech_parse(k->upstream.sasl_mechanism);
    u->auth_round = 0;
    u->lifetime_ms = 0;
    if (mech) {
        bg_kafka_scram_free(u->scram); /* a re-authentication starts afresh */
        u->scram = bg_kafka_scram_new(mech, k->upstream.sasl_username, k->upstream.sasl_password);
        if (u->scram && bg_kafka_scram_client_first(u->scram, &msg, &why) == BG_KAFKA_SCRAM_OK)
            rc = 0;
    } else {
        rc = bg_kafka_sasl_plain_client(&msg, k->upstream.sasl_username, k->upstream.sasl_password);
    }
    if (rc == 0)
        rc = bg_kafka_up__send_auth_bytes(u, &msg);
    if (msg.buf)
        OPENSSL_cleanse(msg.buf, msg.len);
    bg_wr_free(&msg);
    return rc;
}

/* Arms the next re-authentication at 85-95 % of the session lifetime the
 * broker gave (none without one, and none for a user that never says
 * whether a response is outstanding). Returns the delay armed in ms, 0
 * when none. */
static int64_t bg_kafka_up__schedule_reauth(bg_kafka_up_t *u)
{
    if (u->lifetime_ms <= 0 || !u->cbs.outstanding || !u->reauth_timer)
        return 0;
    uint16_t r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof r) != 1)
        r = 0;
    int64_t life = u->lifetime_ms < BG_KAFKA_UP_REAUTH_MAX_MS ? u->lifetime_ms
                                                               : BG_KAFKA_UP_REAUTH_MAX_MS;
    int64_t ms = life * 85 / 100 + (life / 10) * r / 65535;
    if (ms < BG_KAFKA_UP_REAUTH_MIN_MS)
        ms = BG_KAFKA_UP_REAUTH_MIN_MS;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return event_add(u->reauth_timer, &tv) == 0 ? ms : 0;
}

static void bg_kafka_up__become_ready(bg_kafka_up_t *u)
{
    u->state = BG_KAFKA_UP_READY;
    (void)bg_kafka_up__schedule_reauth(u);
    if (u->reauth != BG_KAFKA_UP_REAUTH_NONE) {
        /* Logged in again: what was held goes out behind the exchange. */
        u->reauth = BG_KAFKA_UP_REAUTH_NONE;
        bufferevent_set_timeouts(u->bev, NULL, NULL);
        bg_kafka_arena_free(&u->arena);
        bg_log_debug("kafka", "upstream %s: re-authenticated (session lifetime %lld ms)",
                     u->where, (long long)u->lifetime_ms);
        size_t held = evbuffer_get_length(u->hold);
        if (held)
            bg_log_debug("kafka", "upstream %s: %zu byte(s) of requests held meanwhile sent now",
                         u->where, held);
        if (evbuffer_add_buffer(bufferevent_get_output(u->bev), u->hold) != 0) {
            bg_kafka_up__fail(u, "cannot queue requests after re-authentication (out of memory)");
            return;
        }
        if (u->cbs.drained)
            u->cbs.drained(u->arg); /* reading the client may resume */
        return;
    }
    atomic_store(&u->g->upstream_seen_ok, 1);
    /* The handshake had a deadline; a ready connection lives as long as its
     * session (long-poll fetches may be silent for a while). */
    bufferevent_set_timeouts(u->bev, NULL, NULL);
    bg_kafka_arena_free(&u->arena); /* handshakes are over: keep idle connections small */
    u->cbs.ready(u->arg);
}

/* Starts a due re-authentication once every request sent before it became
 * due has its response; called when it becomes due and after each response.
 * Only while ready and between frames. */
static void bg_kafka_up__maybe_reauth(bg_kafka_up_t *u)
{
    if (u->reauth != BG_KAFKA_UP_REAUTH_DUE || u->state != BG_KAFKA_UP_READY ||
        u->responses < u->reauth_after || u->stream_left || u->splicing || u->whole ||
        evbuffer_get_length(bufferevent_get_input(u->bev)) != 0)
        return;
    u->reauth = BG_KAFKA_UP_REAUTH_RUNNING;
    struct timeval tv = {BG_KAFKA_UP_REAUTH_TIMEOUT_S, 0};
    bufferevent_set_timeouts(u->bev, &tv, &tv);
    if (bg_kafka_up__send_handshake(u) != 0)
        bg_kafka_up__fail(u, "cannot send SaslHandshake to re-authenticate");
}

static void bg_kafka_up__on_reauth_timer(evutil_socket_t fd, short what, void *arg)
{
    bg_kafka_up_t *u = arg;
    if (u->reauth != BG_KAFKA_UP_REAUTH_NONE || u->state != BG_KAFKA_UP_READY)
        return;
    /* From now on requests wait in hold; those already sent are answered
     * first. */
    u->reauth = BG_KAFKA_UP_REAUTH_DUE;
    size_t outstanding = u->cbs.outstanding(u->arg);
    u->reauth_after = u->responses + (uint64_t)outstanding;
    if (outstanding)
        bg_log_debug("kafka", "upstream %s: re-authentication due; %zu response(s) awaited first",
                     u->where, outstanding);
    bg_kafka_up__maybe_reauth(u);
}

static int bg_kafka_up__after_versions(bg_kafka_up_t *u)
{
    if (u->login_held) {
        /* Nothing more until the client has authenticated: no login with
         * busgate's credential for a connection that may never do so. Its
         * session's auth_timeout bounds the wait. */
        u->state = BG_KAFKA_UP_VERSIONED;
        bufferevent_set_timeouts(u->bev, NULL, NULL);
        if (u->cbs.versions)
            u->cbs.versions(u->arg);
        return 0;
    }
    int sasl = u->g->cfg->kafka.upstream.security == BG_SEC_SASL_PLAINTEXT ||
               u->g->cfg->kafka.upstream.security == BG_SEC_SASL_SSL;
    if (!sasl) {
        bg_kafka_up__become_ready(u);
        return 0;
    }
    return bg_kafka_up__send_handshake(u);
}

static void bg_kafka_up__on_login(evutil_socket_t fd, short what, void *arg)
{
    bg_kafka_up_t *u = arg;
    if (u->state != BG_KAFKA_UP_VERSIONED)
        return;
    struct timeval tv = {BG_KAFKA_UP_CONNECT_TIMEOUT_S, 0};
    bufferevent_set_timeouts(u->bev, &tv, &tv);
    if (bg_kafka_up__after_versions(u) != 0)
        bg_kafka_up__fail(u, "cannot send SaslHandshake");
}

void bg_kafka_up_hold_login(bg_kafka_up_t *u) { u->login_held = 1; }

int bg_kafka_up_login(bg_kafka_up_t *u)
{
    if (!u->login_held)
        return 0;
    u->login_held = 0;
    if (u->state != BG_KAFKA_UP_VERSIONED)
        return 0; /* the login follows the versions */
    /* From the loop, not from the caller's stack: becoming ready calls back
     * into the session, which is in the middle of answering its client. */
    if (!u->login_ev &&
        !(u->login_ev = evtimer_new(bufferevent_get_base(u->bev), bg_kafka_up__on_login, u)))
        return -1;
    event_active(u->login_ev, EV_TIMEOUT, 0);
    return 0;
}

static int bg_kafka_up__on_versions(bg_kafka_up_t *u, const bg_kafka_struct_t *r,
                                    const uint8_t *body, size_t len)
{
    int16_t err = (int16_t)r->f[BG_KAFKA_API_VERSIONS_RESP_ERROR_CODE].i;
    if (err == 35 && u->sent_ver > 0) /* UNSUPPORTED_VERSION: retry with v0, as clients do */
        return bg_kafka_up__send_versions(u, 0);
    if (err != 0)
        return -1;
    const bg_kafka_val_t *keys = &r->f[BG_KAFKA_API_VERSIONS_RESP_API_KEYS];
    for (int32_t i = 0; i < keys->a.n; i++) {
        const bg_kafka_struct_t *k = keys->a.s[i];
        int64_t api = k->f[BG_KAFKA_API_VERSIONS_RESP_API_KEYS_API_KEY].i;
        if (api < 0 || api >= BG_KAFKA_UP_MAX_API)
            continue;
        u->vmin[api] = (int16_t)k->f[BG_KAFKA_API_VERSIONS_RESP_API_KEYS_MIN_VERSION].i;
        u->vmax[api] = (int16_t)k->f[BG_KAFKA_API_VERSIONS_RESP_API_KEYS_MAX_VERSION].i;
    }
    free(u->versions_body);
    u->versions_body = malloc(len ? len : 1);
    if (!u->versions_body)
        return -1;
    memcpy(u->versions_body, body, len);
    u->versions_len = len;
    u->versions_ver = u->sent_ver;
    return bg_kafka_up__after_versions(u);
}

/* The broker's reason for refusing busgate's login, into why (for the log:
 * Kafka's messages name the mechanism, never the credential). */
static void bg_kafka_up__broker_refusal(const char *api, int16_t err, bg_slice_t msg, char *why,
                                        size_t cap)
{
    int n = msg.len > 0 && msg.len < 200 ? (int)msg.len : 0;
    snprintf(why, cap, "%s error %d %s%s%.*s", api, (int)err, bg_kafka_error_name(err),
             n ? ": " : "", n, n ? (const char *)msg.p : "");
}

static int bg_kafka_up__on_auth(bg_kafka_up_t *u, const bg_kafka_struct_t *r, char *why_out,
                                size_t cap)
{
    int16_t err = (int16_t)r->f[BG_KAFKA_SASL_AUTHENTICATE_RESP_ERROR_CODE].i;
    if (err != 0) {
        bg_kafka_up__broker_refusal("SaslAuthenticate", err,
                                    r->f[BG_KAFKA_SASL_AUTHENTICATE_RESP_ERROR_MESSAGE].s, why_out,
                                    cap);
        return -1;
    }
    bg_slice_t in = r->f[BG_KAFKA_SASL_AUTHENTICATE_RESP_AUTH_BYTES].s;
    if (u->sent_ver >= 1 && r->f[BG_KAFKA_SASL_AUTHENTICATE_RESP_SESSION_LIFETIME_MS].i > 0)
        u->lifetime_ms = r->f[BG_KAFKA_SASL_AUTHENTICATE_RESP_SESSION_LIFETIME_MS].i;
    if (!u->scram) { /* PLAIN: one round */
        bg_kafka_up__become_ready(u);
        return 0;
    }
    const char *why = NULL;
    if (u->auth_round++ == 0) {
        bg_wr_t msg;
        bg_wr_init(&msg, 256, 4096);
        int rc = bg_kafka_scram_client_final(u->scram, in.p, in.len < 0 ? 0 : (size_t)in.len, &msg,
                                             &why) == BG_KAFKA_SCRAM_OK
                     ? bg_kafka_up__send_auth_bytes(u, &msg)
                     : -1;
        bg_wr_free(&msg);
        return rc;
    }
    if (bg_kafka_scram_verify_server_final(u->scram, in.p, in.len < 0 ? 0 : (size_t)in.len,
                                           &why) != BG_KAFKA_SCRAM_OK) {
        snprintf(why_out, cap, "SCRAM server-final: %s", why ? why : "invalid");
        return -1;
    }
    bg_kafka_scram_free(u->scram);
    u->scram = NULL;
    bg_kafka_up__become_ready(u);
    return 0;
}

/* The ApiVersions version to ask again after UNSUPPORTED_VERSION, whose v0
 * layout body is in p[0..len): as Kafka's clients do, the broker's own
 * ApiVersions maximum when it lists one below the version sent, else v0. */
static int16_t bg_kafka_up__versions_retry(const bg_kafka_up_t *u, const uint8_t *p, size_t len)
{
    bg_rd_t rd;
    bg_rd_init(&rd, p, len);
    (void)bg_rd_i16(&rd); /* the error code */
    int32_t n = bg_rd_i32(&rd);
    for (int32_t i = 0; i < n && !rd.err; i++) {
        int16_t key = bg_rd_i16(&rd);
        (void)bg_rd_i16(&rd);
        int16_t max = bg_rd_i16(&rd);
        if (!rd.err && key == BG_KAFKA_API_API_VERSIONS && max >= 0 && max < u->sent_ver)
            return max;
    }
    return 0;
}

/* One handshake response in p[0..len) (frame without size prefix). On
 * failure the broker's reason, when it gave one, is in why[0..cap). */
static int bg_kafka_up__on_handshake_frame(bg_kafka_up_t *u, const uint8_t *p, size_t len,
                                           char *why_out, size_t cap)
{
    int32_t corr;
    const char *why = NULL;
    int off = bg_kafka_resp_hdr_parse(p, len, bg_kafka_resp_hdr_version(u->sent_api, u->sent_ver),
                                      &corr, NULL, &why);
    if (off < 0 || corr != u->corr)
        return -1;
    /* A broker that does not know our ApiVersions version answers
     * UNSUPPORTED_VERSION in the v0 layout, which the flexible decoder of
     * the version sent would refuse: look at the error code first. */
    if (u->state == BG_KAFKA_UP_VERSIONS && u->sent_ver > 0 && len - (size_t)off >= 2 &&
        (int16_t)((uint16_t)p[off] << 8 | p[off + 1]) == 35)
        return bg_kafka_up__send_versions(u, bg_kafka_up__versions_retry(u, p + off,
                                                                         len - (size_t)off));
    bg_rd_t rd;
    bg_rd_init(&rd, p + off, len - (size_t)off);
    bg_kafka_struct_t *r = NULL;
    bg_kafka_arena_reset(&u->arena);
    if (bg_kafka_decode(bg_kafka_msg_desc(u->sent_api, 1), u->sent_ver, &rd, &u->arena, &r) !=
        BG_KAFKA_OK)
        return -1;
    switch (u->state) {
    case BG_KAFKA_UP_VERSIONS: return bg_kafka_up__on_versions(u, r, p + off, len - (size_t)off);
    case BG_KAFKA_UP_HANDSHAKE:
        if (r->f[BG_KAFKA_SASL_HANDSHAKE_RESP_ERROR_CODE].i != 0) {
            bg_kafka_up__broker_refusal(
                "SaslHandshake", (int16_t)r->f[BG_KAFKA_SASL_HANDSHAKE_RESP_ERROR_CODE].i,
                (bg_slice_t){0}, why_out, cap);
            return -1;
        }
        return bg_kafka_up__start_auth(u);
    case BG_KAFKA_UP_AUTH: return bg_kafka_up__on_auth(u, r, why_out, cap);
    default: return -1;
    }
}

static void bg_kafka_up__spliced(void *arg, bg_util_splice_result_t rc, int err, uint64_t moved)
{
    bg_kafka_up_t *u = arg;
    u->splicing = 0;
    if (rc == BG_UTIL_SPLICE_DONE) {
        u->stream_left = 0;
        u->responses++;
        /* The session ends the frame and sets reading for the next one. */
        (void)u->cbs.spliced(u->arg, moved, 0);
        bg_kafka_up__maybe_reauth(u); /* freeing is deferred: u is still here */
        return;
    }
    if (rc == BG_UTIL_SPLICE_DST_ERROR) {
        (void)u->cbs.spliced(u->arg, moved, err ? err : EPIPE);
        return;
    }
    if (u->cbs.spliced(u->arg, moved, -1) != 0) /* counts what reached the client */
        return;
    char why[300];
    if (rc == BG_UTIL_SPLICE_SRC_EOF)
        snprintf(why, sizeof why, "closed by the broker");
    else
        snprintf(why, sizeof why, "read failed: %s", strerror(err));
    bg_kafka_up__fail(u, why);
}

/* The rest of the streamed frame (the input is empty) goes to the session's
 * socket in the kernel, if the session offers one. 1 when the splice runs. */
static int bg_kafka_up__try_splice(bg_kafka_up_t *u)
{
    if (u->g->upstream_tls || !u->cbs.splice_to || u->stream_left < BG_KAFKA_UP_SPLICE_MIN ||
        evbuffer_get_length(bufferevent_get_input(u->bev)) != 0)
        return 0;
    int fd = u->cbs.splice_to(u->arg);
    if (fd < 0)
        return 0;
    if (!u->splice && !(u->splice = bg_util_splice_new(bufferevent_get_base(u->bev))))
        return 0;
    /* A client that stops taking the response is closed after idle_timeout,
     * as the buffered relay's write timeout would close it. */
    int64_t idle = u->g->cfg->kafka.idle_timeout_ms;
    bg_util_splice_set_write_timeout(u->splice, idle > INT32_MAX ? INT32_MAX : (int)idle);
    if (bg_util_splice_start(u->splice, bufferevent_getfd(u->bev), fd, u->stream_left,
                             bg_kafka_up__spliced, u) != 0)
        return 0; /* no pipe (descriptor limit): the buffered relay goes on */
    bufferevent_disable(u->bev, EV_READ);
    u->splicing = 1;
    return 1;
}

/* Cut-through: passes what has arrived of a streamed frame. 1 when the
 * frame is complete (or nothing is left to pass), 0 to wait for more, -1 when
 * the session went away. */
static int bg_kafka_up__stream(bg_kafka_up_t *u, struct evbuffer *in)
{
    size_t avail = evbuffer_get_length(in);
    if (avail == 0)
        return 0;
    size_t n = avail < u->stream_left ? avail : (size_t)u->stream_left;
    int last = n == u->stream_left;
    u->stream_left -= n;
    u->responses += (uint64_t)last;
    if (u->cbs.stream(u->arg, in, n, last) != 0)
        return -1;
    if (!last && bg_kafka_up__try_splice(u))
        return 0; /* the splice finishes the frame and calls `spliced` */
    return last;
}

/* A response while ready: streamed, or delivered whole. 1 to go on, 0 to
 * wait for more bytes, -1 when the session went away. */
static int bg_kafka_up__relay(bg_kafka_up_t *u, struct evbuffer *in, uint32_t size)
{
    if (u->stream_left)
        return bg_kafka_up__stream(u, in);
    if (!u->whole && u->cbs.frame_begin) {
        if (evbuffer_get_length(in) < 8)
            return 0;
        int rc = u->cbs.frame_begin(u->arg, in, (size_t)size + 4);
        if (rc < 0)
            return -1;
        if (rc == 1) {
            u->stream_left = (uint64_t)size + 4;
            return bg_kafka_up__stream(u, in);
        }
        u->whole = 1;
    }
    if (evbuffer_get_length(in) < (size_t)size + 4)
        return 0;
    u->whole = 0;
    u->responses++;
    return u->cbs.frame(u->arg, in, (size_t)size + 4) != 0 ? -1 : 1;
}

/* A plaintext connection whose first answer is a TLS record (an alert or a
 * handshake, content type 21/22, version 3.x): the listener wants TLS. Said
 * plainly because the bytes otherwise read as an absurd frame size. */
static int bg_kafka_up__looks_like_tls(const bg_kafka_up_t *u, const uint8_t hdr[4])
{
    return !u->g->upstream_tls && u->state == BG_KAFKA_UP_VERSIONS &&
           (hdr[0] == 0x15 || hdr[0] == 0x16) && hdr[1] == 0x03;
}

/* A size field that is negative or above kafka.max_response_bytes: a
 * desynchronised or hostile broker (a frame of 2 GiB announced), never a
 * normal response. The stream cannot be resynchronised and no byte of the
 * frame has reached the client (the size is checked before a response is
 * streamed), so the connection fails. */
static void bg_kafka_up__frame_too_large(bg_kafka_up_t *u, const uint8_t hdr[4])
{
    char why[200];
    if (bg_kafka_up__looks_like_tls(u, hdr)) {
        bg_kafka_up__fail(u, "the broker answered with TLS: use security ssl or sasl_ssl");
        return;
    }
    int32_t size = (int32_t)((uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
                             (uint32_t)hdr[2] << 8 | hdr[3]);
    snprintf(why, sizeof why,
             "response frame larger than allowed (size = %ld, limit %u: kafka.max_response_bytes)",
             (long)size, u->max_frame);
    bg_kafka_up__fail(u, why);
}

static void bg_kafka_up__on_read(struct bufferevent *bev, void *arg)
{
    bg_kafka_up_t *u = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (!u->g->upstream_tls)
        bg_util_bev_read_more(bev, BG_KAFKA_UP_READ_BURST);
    while (u->state != BG_KAFKA_UP_FAILED) {
        uint8_t hdr[4];
        uint32_t size = 0;
        if (u->state == BG_KAFKA_UP_READY && u->stream_left) {
            int rc = bg_kafka_up__relay(u, in, 0);
            if (rc <= 0)
                return; /* wait for more, or the session (and u) are gone */
            continue;
        }
        if (evbuffer_copyout(in, hdr, 4) < 4) {
            bg_kafka_up__maybe_reauth(u); /* between frames: maybe the moment */
            return;
        }
        int64_t n = bg_kafka_frame_peek(hdr, 4, u->max_frame, &size);
        if (n < 0) {
            bg_kafka_up__frame_too_large(u, hdr);
            return;
        }
        if (size < 4) { /* every response starts with its correlation id */
            bg_kafka_up__fail(u, "response frame shorter than a correlation id");
            return;
        }
        if (u->state == BG_KAFKA_UP_READY) {
            int rc = bg_kafka_up__relay(u, in, size);
            if (rc <= 0)
                return;
            continue;
        }
        if (evbuffer_get_length(in) < (size_t)size + 4)
            return;
        const uint8_t *p = evbuffer_pullup(in, (ssize_t)size + 4);
        char why[300] = "", msg[400];
        int rc = p ? bg_kafka_up__on_handshake_frame(u, p + 4, size, why, sizeof why) : -1;
        evbuffer_drain(in, (size_t)size + 4);
        if (rc != 0) {
            snprintf(msg, sizeof msg, "%s%s%s%s",
                     u->reauth != BG_KAFKA_UP_REAUTH_NONE ? "re-" : "",
                     u->state == BG_KAFKA_UP_AUTH || u->state == BG_KAFKA_UP_HANDSHAKE
                         ? "authentication with busgate's credential failed"
                         : "handshake failed",
                     why[0] ? ": " : "", why);
            bg_kafka_up__fail(u, msg);
            return;
        }
    }
}

static void bg_kafka_up__on_write(struct bufferevent *bev, void *arg)
{
    bg_kafka_up_t *u = arg;
    if (u->state == BG_KAFKA_UP_READY && u->cbs.drained)
        u->cbs.drained(u->arg);
}

/* What the connection was doing when its handshake deadline passed: the
 * TCP connect, the TLS handshake (the socket is connected, no TLS session
 * yet), or the request whose answer did not come. */
static const char *bg_kafka_up__phase(const bg_kafka_up_t *u)
{
    struct sockaddr_storage peer;
    socklen_t len = sizeof peer;
    evutil_socket_t fd;
    switch (u->state) {
    case BG_KAFKA_UP_CONNECTING:
        fd = bufferevent_getfd(u->bev);
        return u->g->upstream_tls && fd >= 0 &&
                       getpeername(fd, (struct sockaddr *)&peer, &len) == 0
                   ? "TLS handshake"
                   : "connect";
    case BG_KAFKA_UP_VERSIONS: return "ApiVersions";
    case BG_KAFKA_UP_HANDSHAKE: return "SASL login (SaslHandshake)";
    case BG_KAFKA_UP_AUTH: return "SASL login (SaslAuthenticate)";
    default: return NULL; /* no deadline is armed in the other states */
    }
}

static void bg_kafka_up__on_event(struct bufferevent *bev, short what, void *arg)
{
    bg_kafka_up_t *u = arg;
    if (what & BEV_EVENT_CONNECTED) {
        bg_util_nodelay(bufferevent_getfd(bev));
        bg_util_keepalive(bufferevent_getfd(bev));
        if (bg_kafka_up__send_versions(u, BG_KAFKA_UP_VERSIONS_VER) != 0)
            bg_kafka_up__fail(u, "cannot send ApiVersions");
        return;
    }
    char why[400], msg[480];
    const char *phase = what & BEV_EVENT_TIMEOUT ? bg_kafka_up__phase(u) : NULL;
    int failed = 1;
    if (phase) /* both deadlines (handshake, re-authentication) are 10 s */
        snprintf(why, sizeof why, "%s timed out after %d s", phase,
                 u->reauth == BG_KAFKA_UP_REAUTH_RUNNING ? BG_KAFKA_UP_REAUTH_TIMEOUT_S
                                                         : BG_KAFKA_UP_CONNECT_TIMEOUT_S);
    else
        failed = bg_util_tls_upstream_failure(bev, what, u->state == BG_KAFKA_UP_CONNECTING, why,
                                              sizeof why);
    if (failed) {
        snprintf(msg, sizeof msg, "%s%s",
                 u->reauth == BG_KAFKA_UP_REAUTH_RUNNING
                     ? "re-authentication with busgate's credential failed: "
                     : "",
                 why);
        bg_kafka_up__fail(u, msg);
    }
}

static struct bufferevent *bg_kafka_up__bev(struct event_base *base, bg_kafka_global_t *g,
                                            const char *host)
{
    return bg_util_tls_upstream_bev(base, g->upstream_tls, host,
                                    g->cfg->kafka.upstream.tls.verify);
}

bg_kafka_up_t *bg_kafka_up_connect(struct event_base *base, struct evdns_base *dns,
                                   bg_kafka_global_t *g, int32_t node_id,
                                   const bg_kafka_up_cbs_t *cbs, void *arg, char *why, size_t cap)
{
    char host[256];
    uint16_t port = 0;
    if (node_id < 0) {
        bg_kafka_global_bootstrap(g, host, sizeof host, &port);
    } else if (bg_kafka_global_node(g, node_id, host, sizeof host, &port) != 0) {
        snprintf(why, cap, "no address known for broker %d", (int)node_id);
        return NULL;
    }
    snprintf(why, cap, "cannot connect to the broker (out of memory)");
    bg_kafka_up_t *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    memset(u->vmax, 0xff, sizeof u->vmax); /* -1: unsupported until told */
    u->g = g, u->cbs = *cbs, u->arg = arg;
    /* Responses have their own limit: a fetch response is as large as the
     * client's fetch.max.bytes, whatever busgate accepts as a request. */
    u->max_frame = g->cfg->kafka.max_response_bytes;
    bg_kafka_arena_init(&u->arena, 4u << 20);
    snprintf(u->where, sizeof u->where, "%s:%u (node %d)", host, port, (int)node_id);
    u->bev = bg_kafka_up__bev(base, g, host);
    if (cbs->outstanding) {
        u->hold = evbuffer_new();
        u->reauth_timer = evtimer_new(base, bg_kafka_up__on_reauth_timer, u);
    }
    if (!u->bev || (cbs->outstanding && (!u->hold || !u->reauth_timer))) {
        bg_kafka_up_free(u);
        return NULL;
    }
    bufferevent_setcb(u->bev, bg_kafka_up__on_read, bg_kafka_up__on_write, bg_kafka_up__on_event,
                      u);
    bufferevent_setwatermark(u->bev, EV_WRITE, BG_KAFKA_UP_LOW_WATER, 0);
    bufferevent_set_max_single_read(u->bev, 256 * 1024);
    bufferevent_set_max_single_write(u->bev, 1024 * 1024);
    struct timeval tv = {BG_KAFKA_UP_CONNECT_TIMEOUT_S, 0};
    bufferevent_set_timeouts(u->bev, &tv, &tv);
    bufferevent_enable(u->bev, EV_READ | EV_WRITE);
    /* With the worker's evdns base the lookup runs on the loop (a name that
     * is numeric or in /etc/hosts resolves at once); its failure reaches
     * on_event as BEV_EVENT_ERROR with the resolver's error. */
    const char *fail = bg_util_bev_connect(u->bev, dns, host, port);
    if (fail) {
        bg_log_warn("kafka", "upstream %s: cannot connect: %s", u->where, fail);
        snprintf(why, cap, "cannot connect to the broker %s: %s", u->where, fail);
        bg_kafka_up_free(u);
        return NULL;
    }
    why[0] = '\0';
    return u;
}

const char *bg_kafka_up_where(const bg_kafka_up_t *u) { return u->where; }

void bg_kafka_up_free(bg_kafka_up_t *u)
{
    if (!u)
        return;
    if (u->reauth_timer)
        event_free(u->reauth_timer);
    if (u->login_ev)
        event_free(u->login_ev);
    if (u->hold)
        evbuffer_free(u->hold);
    bg_util_splice_free(u->splice); /* before the socket it reads */
    if (u->bev)
        bufferevent_free(u->bev);
    bg_kafka_scram_free(u->scram);
    bg_kafka_arena_free(&u->arena);
    free(u->versions_body);
    free(u);
}
