/* Private to adapters/kafka: a proxied client connection. */
#ifndef BG_KAFKA_SESSION_INTERNAL_H
#define BG_KAFKA_SESSION_INTERNAL_H

#include <stdint.h>
#include <sys/queue.h>

#include "adapters/kafka/kafka_adapter-internal.h"
#include "adapters/kafka/kafka_authz.h"
#include "adapters/kafka/kafka_codec.h"
#include "adapters/kafka/kafka_frame.h"
#include "adapters/kafka/kafka_upstream.h"
#include "broker/identity.h"
#include "broker/snapshot.h"

struct bufferevent;
struct evbuffer;
struct event;

typedef enum {
    BG_KAFKA_PE_WAIT_UPSTREAM = 0, /* forwarded; its response will come from upstream */
    BG_KAFKA_PE_WAIT_VERSIONS,     /* ApiVersions waiting for the upstream's versions */
    BG_KAFKA_PE_READY,             /* response bytes in out */
} bg_kafka_pe_state_t;

/* One request that owes the client a response, in request order. */
typedef struct bg_kafka_pending_s {
    TAILQ_ENTRY(bg_kafka_pending_s) link;
    bg_kafka_pe_state_t state;
    bg_kafka_req_hdr_t hdr; /* client_id copied; tagged always empty (see hdr_tags) */
    int hdr_tags;           /* the client's header carried tagged fields: not passed on */
    struct evbuffer *out;   /* READY: the whole response frame */
    bg_kafka_arena_t arena; /* request tree, verdict, merge state */
    uint8_t *req_copy;      /* request frame kept for the response merge, or NULL */
    size_t req_copy_len;    /* its size: counted against the session's memory cap */
    bg_kafka_verdict_t verdict;
    bg_snapshot_t *snap; /* the policy the request was decided by (a reference) */
    int needs_response;
    /* Its decision events wait until its answer is queued for the client
     * (bg_kafka_session_flush), so a session's events keep request order
     * and the latency runs to that moment. Set once decided and audited. */
    int audit_due;
    int64_t start_us; /* monotonic (bg_util_now_us) */
    uint64_t bytes_in;
    uint64_t bytes_out; /* the broker's response frame sent on for it (0: none, or local) */
} bg_kafka_pending_t;

TAILQ_HEAD(bg_kafka_pending_list_s, bg_kafka_pending_s);

typedef enum {
    BG_KAFKA_AUTH_NONE = 0,    /* nothing yet: ApiVersions and SaslHandshake only */
    BG_KAFKA_AUTH_MECH,        /* handshake done: SaslAuthenticate next */
    BG_KAFKA_AUTH_CHALLENGED,  /* OAUTHBEARER error challenge sent: the client's 0x01 next */
    BG_KAFKA_AUTH_OK,          /* authenticated */
} bg_kafka_auth_state_t;

struct bg_kafka_session_s {
    TAILQ_ENTRY(bg_kafka_session_s) link;
    bg_kafka_worker_t *kw;
    struct bufferevent *cli;
    bg_kafka_up_t *up; /* NULL until the client authenticates (or needs its versions) */
    int32_t node_id;
    char peer[64];
    char id[37]; /* session id for logs and audit */
    bg_limits_conn_t conn_lim; /* its share of the connection limits */
    uint64_t seq;
    /* authentication */
    bg_kafka_auth_state_t auth;
    int reauth;            /* a re-authentication is in progress */
    /* A re-authentication's SaslHandshake waits in the input until every
     * earlier request is answered: their responses are filtered and
     * audited under the identity that sent them (Kafka, too, reads a
     * connection's next request only after answering the last). */
    int reauth_wait;
    unsigned mech;         /* BG_SASL_MECH_* chosen in the handshake */
    unsigned reauth_mech;  /* a re-authentication asked for another mechanism: refused */
    char auth_failure[64]; /* reason kept between the challenge and the 0x01 */
    int versions_done;     /* ApiVersions answered before SASL: no second one */
    bg_principal_t principal;
    bg_policy_principal_t pp;
    bg_snapshot_t *snap;
    /* Non-NULL when snap's identity no longer has the principal's issuer:
     * every decision is busgate's deny for this reason (static text). Set
     * with snap and pp at login and on every snapshot change. */
    const char *unvouched;
    int64_t exp_ms; /* token expiry */
    char client_id[128];
    char sw_name[64], sw_version[64];
    /* pipeline */
    struct bg_kafka_pending_list_s q;
    size_t nq;
    bg_kafka_pending_t *spare; /* one recycled entry */
    struct evbuffer *held;     /* requests written before the upstream is ready */
    bg_kafka_pending_t *streaming; /* the entry whose response is being cut through */
    bg_kafka_share_sessions_t *share; /* share fetch sessions forwarded (NULL: none yet) */
    int closing;               /* close once the queue and output are empty */
    int dead;                  /* closed: every callback returns at once; freed soon */
    int cli_failed;            /* the client connection failed: no TLS close_notify */
    struct event *free_ev;     /* frees a dead session outside any callback */
    struct event *close_ev;    /* bounds a closing session's last writes */
    struct event *auth_ev;     /* kafka.auth_timeout: SASL not done in time */
    struct event *eof_ev;      /* while reading is paused: checks that the client is there */
    uint64_t idle_mark;        /* output progress at the last idle check */
    int64_t started_ms; /* monotonic (bg_util_now_ms) */
    uint64_t bytes_in, bytes_out, requests;
    char end_why[200]; /* how the session ended (the first reason), for session_end */
    /* A request refused by closing before it was decided: its event waits
     * for the events of the requests before it (bg_kafka_audit_refused). */
    struct {
        int set;
        int16_t api_key, api_version, error_code;
        size_t bytes_in;
        char reason[200];
    } refusal;
};

/* ---- kafka_auth.c: ApiVersions and SASL, answered by busgate itself ---- */

/* Handles ApiVersions/SaslHandshake/SaslAuthenticate in p (the frame payload
 * without size prefix, body at body_off). Returns 0, or -1 when the session
 * was closed. */
int bg_kafka_auth_handle(bg_kafka_session_t *s, const bg_kafka_req_hdr_t *h, const uint8_t *p,
                         size_t len, int body_off);
/* Builds the ApiVersions answer of entry pe once the upstream's versions are
 * known. Returns 0 or -1 (close). */
int bg_kafka_auth_versions_ready(bg_kafka_session_t *s, bg_kafka_pending_t *pe);

/* ---- kafka_session.c, used by kafka_auth.c ---- */

/* A new queue entry for request h (appended). NULL on out of memory. */
bg_kafka_pending_t *bg_kafka_session_push(bg_kafka_session_t *s, const bg_kafka_req_hdr_t *h);
/* Encodes body as the response to pe's request into pe->out, READY.
 * Returns 0 or -1. */
int bg_kafka_session_respond(bg_kafka_session_t *s, bg_kafka_pending_t *pe,
                             const bg_kafka_struct_t *body);
/* Sends what is ready, in order. */
void bg_kafka_session_flush(bg_kafka_session_t *s);
/* Closes now (flush_first: after what is ready has been written). */
void bg_kafka_session_close(bg_kafka_session_t *s, int flush_first, const char *why);
/* Connects the session's upstream, once: when the client has authenticated,
 * or earlier when its ApiVersions needs the broker's versions and none are
 * known (then busgate's login waits until the client has authenticated and
 * this is called again). Returns 0, or -1 when the session was closed. */
int bg_kafka_session_start_upstream(bg_kafka_session_t *s);
/* A request that cannot be read: logs it (API, version, the byte offset in
 * the frame, size field included, where reading stopped, and why), counts
 * a protocol error, audits the refusal (frame_len: the frame's size, size
 * field included; 0 when it was not read) and closes the session. Before
 * the client has authenticated, a SaslHandshake or SaslAuthenticate is a
 * failed login: an auth_failure event (reason "malformed") and
 * busgate_auth_failures_total. api_key < 0: not received. */
void bg_kafka_session_malformed(bg_kafka_session_t *s, int16_t api_key, int16_t version,
                                long offset, size_t frame_len, const char *why);
/* Wall-clock milliseconds (token expiry); durations use bg_util_now_us/ms. */
int64_t bg_kafka_now_ms(void);

#endif
