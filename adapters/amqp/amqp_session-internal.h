/* Private to adapters/amqp: a proxied client connection, its channels and
 * the functions the session's files share.
 *
 * Files: amqp_session.c (lifecycle, I/O, backpressure, timers, upstream
 * callbacks), amqp_session_handshake.c (client-side handshake, token
 * verification, update-secret, expiry), amqp_channel.c (per-channel state,
 * method and content relay both ways), amqp_authz.c (method -> resources,
 * verbs and decisions; denial texts), amqp_audit.c (audit events, metrics). */
#ifndef BG_AMQP_SESSION_INTERNAL_H
#define BG_AMQP_SESSION_INTERNAL_H

#include <stdint.h>
#include <sys/queue.h>

#include "adapters/amqp/amqp_adapter-internal.h"
#include "adapters/amqp/amqp_frame.h"
#include "adapters/amqp/amqp_method.h"
#include "adapters/amqp/amqp_upstream.h"
#include "broker/identity.h"
#include "broker/snapshot.h"
#include "policy/policy.h"

struct bufferevent;
struct evbuffer;
struct event;

/* Bounds on per-connection state. A basic.consume that would pass either
 * consumer bound is refused as RabbitMQ refuses one beyond its
 * consumer_max_per_channel: connection.close 530 NOT_ALLOWED. Both count
 * consumers busgate tracks: consume-oks awaited plus live consumer tags. */
#define BG_AMQP_MAX_CONSUMERS 1024      /* per channel */
#define BG_AMQP_MAX_CONSUMERS_CONN 4096 /* per connection, all channels */
#define BG_AMQP_NAME_MAX 256            /* queue/exchange names are shortstrs */

/* ---- channels (amqp_channel.c) ---- */

/* One leg of a channel: busgate <-> client or busgate <-> RabbitMQ. A
 * channel.close is a handshake on each leg (close, then close-ok), and
 * closes may cross: a peer that sent channel.close and then gets one answers
 * it with close-ok and still waits for the close-ok to its own (AMQP 0-9-1,
 * as RabbitMQ, pika and the Java client do). A leg is CLOSING while a
 * handshake on it runs, CLOSED when none does any more. */
typedef enum {
    BG_AMQP_LEG_CLOSED = 0,
    BG_AMQP_LEG_OPEN,
    BG_AMQP_LEG_CLOSING,
} bg_amqp_leg_state_t;

typedef struct bg_amqp_leg_s {
    uint8_t state;      /* bg_amqp_leg_state_t */
    uint8_t sent;       /* a channel.close went out on this leg: its close-ok is awaited */
    uint8_t sent_relay; /* that close was the other leg's, relayed: its close-ok goes back */
    uint8_t got;        /* a channel.close came in on this leg and went on to the other
                           leg: the close-ok from there answers it */
} bg_amqp_leg_t;

/* A consumer, by the tag RabbitMQ knows it by: the client's, or busgate's
 * own for a basic.consume that asked for none (busgate never forwards an
 * empty tag, so every consume-ok, cancel and cancel-ok names exactly one
 * consumer and none is matched by order). Tags are unique on a channel:
 * a basic.consume with a tag tracked there is refused (530).
 *
 * Tags are shortstrs, bytes with a length: a NUL is one more byte (a tag
 * cut there would never match its consume-ok or cancel again). The tag is a
 * NUL-terminated copy too, for logs and tests. Queue names are never
 * tracked with a control byte in them: such names are refused. */
typedef struct bg_amqp_consumer_s {
    struct bg_amqp_consumer_s *next;
    char *tag;
    size_t tag_len;
    char *queue;
    uint8_t reply_to;  /* on amq.rabbitmq.reply-to: RabbitMQ keeps it apart from its
                          consumer table and never cancels it itself */
    uint8_t no_ack;    /* basic.consume's no_ack: RabbitMQ counts each delivery delivered
                          as it sends it, so one busgate drops is lost (see `deferred`) */
    uint8_t cancelled; /* pending: ended (a nowait cancel, RabbitMQ's basic.cancel)
                          before its consume-ok, which then forgets it */
    uint32_t cancels;  /* basic.cancels forwarded while it was tracked, whose cancel-ok
                          has not come: the last one ends it */
    uint32_t silent;   /* of those, nowait ones busgate forwarded as waiting: that many
                          cancel-oks are not relayed (the client expects none) */
} bg_amqp_consumer_t;

typedef struct bg_amqp_channel_s {
    bg_amqp_leg_t cli, up;   /* the client's leg and the upstream's */
    uint8_t confirm;         /* confirm.select seen */
    uint8_t expect;          /* content of a forwarded publish: 0 none, 1 header, 2 body;
                                kept when the broker closes the channel meanwhile, since
                                RabbitMQ still reads the rest of that content */
    uint8_t discard;         /* content of a refused publish: dropped whole */
    uint64_t body_left;      /* body bytes still expected */
    /* busgate's own frames to RabbitMQ on this channel (a refusal's
     * channel.close, a close-ok) while the body of a publish busgate already
     * forwarded is still coming from the client (expect 2): they go up after
     * its last body frame, since RabbitMQ reads a message's content whole
     * and a method in between costs the whole connection (505). */
    struct evbuffer *up_held;
    /* The command RabbitMQ is sending on the channel (basic.deliver,
     * get-ok, return: method, header, bodies), which may span many reads:
     * down_expect 0 none, 1 header, 2 body; down_relay it goes to the
     * client. busgate's own frames to the client on this channel (a
     * refusal's channel.close, a close-ok) wait in `held` until it is
     * complete, since no frame may come between a command's content frames. */
    uint8_t down_expect, down_relay;
    uint64_t down_left;
    struct evbuffer *held;
    /* busgate's close-ok to a client channel.close that crossed busgate's
     * own close waits in `held`. RabbitMQ answers every channel.close on a
     * closing channel, and so does busgate, but one at a time here: a
     * further close stalls the session (s->stalled) until `held` has gone
     * out, or a client repeating its close would grow `held` without bound
     * (backpressure counts only what is queued). */
    uint8_t close_ok_held;
    /* A refusal's channel.close to the client, sent once RabbitMQ has
     * confirmed busgate's own close of the channel (its close-ok): until
     * then what RabbitMQ sent on the channel before it saw that close
     * (deliveries, confirms) is still relayed, as RabbitMQ itself sends its
     * own 403 after them. Sooner when the client closes the channel, or
     * after BG_AMQP_REFUSAL_WAIT_MS (a RabbitMQ that stopped reading
     * busgate's connection, a memory alarm, must not keep the client
     * waiting for its answer), unless the channel has a no-ack consumer:
     * what RabbitMQ sends after the refusal went out is dropped, and a
     * no-ack delivery dropped is lost (RabbitMQ counted it delivered), so
     * such a channel waits for the close-ok, as the client would wait on
     * RabbitMQ itself, which during an alarm would not have read the
     * refused method either. Dropped when RabbitMQ closes the channel
     * itself first (an error in a method before the refused one): the
     * client gets RabbitMQ's close instead. */
    struct evbuffer *deferred;
    int64_t deferred_at; /* monotonic ms */
    /* An allowed basic.publish waits here for its content header: only then
     * is it known whether the body is within max_body_bytes, and a message
     * too large is refused on its channel (406, as RabbitMQ does) before
     * anything of it has gone upstream. */
    struct evbuffer *pub;
    /* What "" names: RabbitMQ's most recently declared queue, set by the
     * declare busgate forwards last (nowait and passive too); "" while it
     * is a server-named queue whose declare-ok has not come back. A
     * declare-ok's name is taken only when it answers that last declare:
     * declares_waiting counts forwarded declares without their declare-ok,
     * last_declare_waits says the last one expects one. */
    char last_queue[BG_AMQP_NAME_MAX];
    uint32_t declares_waiting;
    uint8_t last_declare_waits;
    uint8_t declared; /* a queue.declare was forwarded on the channel: without one, ""
                         names no queue at all (RabbitMQ: 404 "no previously declared
                         queue"), not one busgate has yet to learn */
    /* basic.consumes forwarded whose consume-ok has not come back, oldest
     * first. A consume-ok belongs to the one with its tag: RabbitMQ does not
     * answer a channel's consumes in order (a direct reply-to consume at
     * once, one on a queue through the queue's process). */
    bg_amqp_consumer_t *pending, *pending_last;
    size_t npending;
    bg_amqp_consumer_t *consumers; /* consumer tag -> queue */
    size_t nconsumers;
} bg_amqp_channel_t;

/* ---- the session ---- */

typedef enum {
    BG_AMQP_S_HEADER = 0, /* waiting for the client's protocol header */
    BG_AMQP_S_START_OK,   /* connection.start sent */
    BG_AMQP_S_UP_TUNE,    /* authenticated: waiting for the upstream's tune */
    BG_AMQP_S_TUNE_OK,    /* connection.tune sent to the client */
    BG_AMQP_S_OPEN,       /* the client's tune-ok seen: connection.open next */
    BG_AMQP_S_UP_OPEN,    /* the client's open seen: waiting for the upstream's open-ok */
    BG_AMQP_S_RUNNING,
    BG_AMQP_S_CLOSING,    /* connection.close sent to the client: its close-ok next */
    BG_AMQP_S_CLOSING_UP, /* the client's connection.close forwarded: the broker's
                           * close-ok next, then close-ok to the client */
} bg_amqp_sess_state_t;

struct bg_amqp_session_s {
    TAILQ_ENTRY(bg_amqp_session_s) link;
    bg_amqp_worker_t *aw;
    struct bufferevent *cli;
    bg_amqp_up_t *up;
    bg_amqp_sess_state_t state;
    char peer[64];
    char id[37];
    bg_limits_conn_t conn_lim; /* its share of the connection limits */
    uint64_t seq;
    /* identity */
    bg_principal_t principal;
    bg_policy_principal_t pp;
    bg_snapshot_t *snap;
    /* Non-NULL when snap's identity no longer has the principal's issuer:
     * every decision is busgate's deny for this reason (static text). Set
     * with snap and pp at login and on every snapshot change. */
    const char *unvouched;
    char user[128];      /* the login name the client sent (for reply texts) */
    int user_is_principal; /* the client sent none: user is the principal name */
    char mech[16];       /* PLAIN | AMQPLAIN */
    char product[64], version[64];
    uint32_t caps;       /* the client's capabilities */
    /* negotiated */
    uint16_t up_channel_max, channel_max;
    uint32_t up_frame_max, frame_max;
    uint16_t heartbeat;  /* client leg, seconds (0 off) */
    bg_amqp_limits_t lim;
    bg_amqp_arena_t arena; /* per decoded client frame */
    bg_amqp_channel_t **chans; /* [channel_max + 1], allocated on channel.open */
    uint16_t stalled;    /* channel whose next client frame waits (a reopen for the
                            upstream's close-ok, a repeated close for the end of a
                            delivery: close_ok_held); 0 none */
    size_t nconsumers;   /* pending + tracked consumers over all channels */
    /* lifecycle */
    int dead;
    int cli_failed;          /* the client connection failed: no TLS close_notify */
    int in_read;             /* inside the client read loop (no re-entry) */
    int flush_die;           /* die once the client's output is flushed */
    int cli_gone;            /* the client disconnected after its close went upstream
                                (CLOSING_UP): the broker leg goes on until the broker's
                                close-ok or the close timeout; nothing is sent to the client */
    struct event *free_ev;
    struct event *hb_ev;     /* client-leg heartbeat */
    struct event *expiry_ev; /* token expiry */
    struct event *refusal_ev; /* refusals RabbitMQ has not confirmed in time */
    size_t hb_out_mark;       /* the client's queued output at the last heartbeat tick */
    int cli_held;             /* client not read: its output and its input are both full */
    size_t ndeferred;         /* channels with a refusal held back */
    struct event *close_ev;  /* bound on waiting for the client's close-ok */
    int64_t last_recv_ms;    /* when bytes last arrived from the client */
    size_t in_left;          /* client input the last pass over it left unprocessed */
    int64_t started_ms; /* monotonic (bg_util_now_ms) */
    /* bytes_out: counted as it enters the client's stage or output
     * (bg_amqp__count_out). bytes_in and methods: every frame (method
     * frame) read from the client after its protocol header, in every
     * state, whatever busgate did with it (bg_amqp__count_in). */
    uint64_t bytes_in, bytes_out, methods;
    int cli_moving;                        /* the stage is being moved on: not counted again */
    char end_why[320]; /* how the session ended (the first reason), for session_end */
    /* Staging: while busgate handles one read callback of a leg, what it
     * sends to the other leg collects here and leaves in one write at the
     * callback's end (a delivery is 3 frames; appending each to an idle
     * bufferevent costs a write-event round trip: 2 epoll_ctl and a loop
     * round). up_stage fills during a client read callback, cli_stage during
     * an upstream one. Empty whenever its flag is off: every writer goes
     * through bg_amqp_cli_out / bg_amqp_up_out, so order holds. */
    struct evbuffer *cli_stage, *up_stage;
    int cli_staging, up_staging;
};

/* ---- amqp_session.c ---- */

/* Monotonic and wall-clock milliseconds. */
int64_t bg_amqp_mono_ms(void);
int64_t bg_amqp_wall_ms(void);
/* Where bytes for the client go: its stage while staging (inside an
 * upstream read callback), else its bufferevent's output. Append only; its
 * length says nothing about what is queued. */
struct evbuffer *bg_amqp_cli_out(bg_amqp_session_t *s);
/* The same for the upstream leg (staged inside a client read callback);
 * s->up must be set. */
struct evbuffer *bg_amqp_up_out(bg_amqp_session_t *s);
/* Appends wr to the client (counted in bytes_out); -1 on failure. wr reset. */
int bg_amqp_cli_send(bg_amqp_session_t *s, bg_wr_t *wr);
/* Appends wr to the upstream; -1 on failure. wr reset. */
int bg_amqp_up_send(bg_amqp_session_t *s, bg_wr_t *wr);
/* Ends the session now (after flushing what is queued to the client when
 * flush is set). Safe inside any callback: freed from its own event. */
void bg_amqp_session_kill(bg_amqp_session_t *s, int flush, const char *why);
/* Sends connection.close(code, text, class, method) to the client, stops
 * relaying and waits (bounded) for its close-ok; a protocol error counts in
 * the metrics when code >= 500. */
void bg_amqp_session_close(bg_amqp_session_t *s, uint16_t code, const char *text,
                           uint16_t class_id, uint16_t method_id);
/* The broker's connection.close was relayed: wait (bounded) for the
 * client's close-ok, relaying nothing more. */
void bg_amqp_session_await_close_ok(bg_amqp_session_t *s);
/* The client closed the connection: its close has gone upstream (after
 * everything it sent before); the client gets close-ok only once the broker
 * answered close-ok, i.e. once the broker has taken every earlier frame
 * (a close-ok at once could lose publishes still on their way). When the
 * broker does not confirm (no close-ok within the close timeout, its
 * connection lost, its own connection.close) the client gets 320
 * CONNECTION_FORCED (or the broker's close) instead. A client that
 * disconnects meanwhile leaves the broker leg running until then. */
void bg_amqp_session_await_upstream_close_ok(bg_amqp_session_t *s);
/* The broker's connection.close (code, text: NUL-terminated, what the
 * client got) is being relayed: logged once, with the broker's address, and
 * kept for the session_end detail ("CODE TEXT (closed by the broker)"). */
void bg_amqp_session_broker_closed(bg_amqp_session_t *s, uint16_t code, const char *text);
/* A frame from the broker busgate will not relay (why: a short reason, no
 * payload): logged once with the broker's address; the client gets
 * connection.close 320 CONNECTION_FORCED - malformed frame from the broker,
 * and session_end that text with why in parentheses. */
void bg_amqp_session_broker_error(bg_amqp_session_t *s, const char *why);
/* Starts busgate's own upstream connection (after the client authenticated). */
int bg_amqp_session_connect_upstream(bg_amqp_session_t *s);
/* Re-reads input after a stall or backpressure ended. */
void bg_amqp_session_resume(bg_amqp_session_t *s);

/* ---- amqp_session_handshake.c ---- */

/* Handles a frame from the client before RUNNING (f complete, payload set).
 * Returns 0, or -1 when the session is closing. */
int bg_amqp_hs_client_frame(bg_amqp_session_t *s, const bg_amqp_frame_t *f);
/* Upstream callbacks for the handshake. */
void bg_amqp_hs_up_tuned(bg_amqp_session_t *s, uint16_t channel_max, uint32_t frame_max,
                         uint16_t heartbeat);
void bg_amqp_hs_up_ready(bg_amqp_session_t *s);
/* connection.update-secret from the client. Returns 0 or -1 (closing). */
int bg_amqp_hs_update_secret(bg_amqp_session_t *s, const bg_amqp_update_secret_t *m);

/* ---- amqp_channel.c ---- */

/* A frame from the client while RUNNING, at the head of in (f: header only).
 * Returns 1 consumed, 0 stalled (leave it in in, stop reading), -1 closing. */
int bg_amqp_chan_client_frame(bg_amqp_session_t *s, struct evbuffer *in, const bg_amqp_frame_t *f,
                              size_t frame_len);
/* A frame from the upstream while RUNNING (f: header only). 0 or -1 closing. */
int bg_amqp_chan_upstream_frame(bg_amqp_session_t *s, struct evbuffer *in,
                                const bg_amqp_frame_t *f, size_t frame_len);
/* Frees every channel's state. */
void bg_amqp_chan_free_all(bg_amqp_session_t *s);
/* Picks up the newest policy snapshot. When it changed, or with force (the
 * principal changed: update-secret), every consumer on every channel is
 * decided again as a basic.consume on its queue, since deliveries follow
 * without any client method to decide; a channel with one now refused is
 * closed with 403 as a refused basic.consume would be. 0, or -1 when the
 * session is going (out of memory, or writing failed). */
int bg_amqp_chan_policy_refresh(bg_amqp_session_t *s, int force);
/* Sends the refusals held back for longer than BG_AMQP_REFUSAL_WAIT_MS, but
 * not on a channel with a no-ack consumer (see `deferred`), and re-arms
 * s->refusal_ev for the others (s->refusal_ev's callback). */
void bg_amqp_chan_send_overdue_refusals(bg_amqp_session_t *s);
#define BG_AMQP_REFUSAL_WAIT_MS 2000
/* The name of an AMQP reply code ("SYNTAX_ERROR" for 502), so a reply
 * text's prefix always matches its code. Static storage. */
const char *bg_amqp_reply_name(uint16_t code);

/* ---- amqp_authz.c ---- */

#define BG_AMQP_MAX_CHECKS 3

/* One (resource, verb) a method needs. name points into the method or a
 * session buffer: valid while the frame is handled. */
typedef struct bg_amqp_check_s {
    bg_res_type_t type;
    const char *name;
    size_t name_len;
    bg_verb_t verb;
    bg_policy_decision_t decision;
    const char *refusal; /* busgate's own reason to refuse (hold), or NULL */
    int bodies;          /* bodies cross busgate (publish, consume, get) or the broker moves
                            them along the route it makes (binds, alternate and
                            dead-letter exchanges): refused where a mask applies */
    int unmasked;        /* refused because a mask applies and this build cannot mask */
} bg_amqp_check_t;

/* A method RabbitMQ refuses before it looks at any permission, whatever
 * the policy says: busgate answers it itself, in RabbitMQ's words
 * (bg_amqp_authz_answer), and decides no rule for it. */
typedef enum {
    BG_AMQP_ANSWER_NONE = 0,
    BG_AMQP_ANSWER_NO_LAST_QUEUE, /* "" for the last declared queue on a channel that
                                     declared none: 404 NOT_FOUND */
    BG_AMQP_ANSWER_PASSIVE_EMPTY, /* passive queue.declare of "" (RabbitMQ takes it
                                     literally; no queue has that name): 404 NOT_FOUND */
    BG_AMQP_ANSWER_IMMEDIATE,     /* basic.publish with immediate set: connection.close
                                     540 NOT_IMPLEMENTED */
    BG_AMQP_ANSWER_ARG_TYPE,      /* an x-dead-letter-exchange / alternate-exchange
                                     argument that is not a longstr: 406
                                     PRECONDITION_FAILED, once create on the declared
                                     queue or exchange (checks[0]) is allowed */
} bg_amqp_answer_t;

typedef struct bg_amqp_verdict_s {
    bg_amqp_check_t checks[BG_AMQP_MAX_CHECKS];
    size_t n;
    int denied;       /* index of the first refused check + 1; 0 = allowed */
    int answer;       /* bg_amqp_answer_t: not to be decided, answered (about checks[0]) */
    const char *arg_key;  /* ARG_TYPE: the argument's name and RabbitMQ's name of */
    const char *arg_type; /* its type */
} bg_amqp_verdict_t;

/* The checks method m (decoded, on a channel with state ch) needs: 0 of them
 * for methods that name no resource. Pure. */
void bg_amqp_authz_classify(const bg_amqp_method_t *m, const bg_amqp_channel_t *ch,
                            bg_amqp_verdict_t *v);
/* The reply busgate sends for v->answer (not NONE): its text in buf (cap
 * bytes, RabbitMQ's wording; vhost names the upstream vhost) and, returned,
 * its code: a channel-level one or, for a hard error, a connection.close's.
 * Pure. */
uint16_t bg_amqp_authz_answer(const bg_amqp_verdict_t *v, const char *vhost, char *buf,
                              size_t cap);
/* Decides every check of v with policy p for principal pr; when unvouched
 * is non-NULL (nothing configured vouches for pr any more: a reload removed
 * its token's issuer), every check is instead busgate's deny for that
 * reason. Pure. */
void bg_amqp_authz_decide(const bg_policy_t *p, const bg_policy_principal_t *pr,
                          const char *unvouched, bg_amqp_verdict_t *v);
/* The RabbitMQ-style refusal text of v's refused check into buf (<= 255
 * bytes): "ACCESS_REFUSED - write access to exchange 'x' in vhost '/'
 * refused for user 'u' (busgate rule 'r')". */
void bg_amqp_authz_text(const bg_amqp_verdict_t *v, const char *vhost, const char *user, char *buf,
                        size_t cap);

/* ---- amqp_audit.c ---- */

void bg_amqp_audit_session_start(bg_amqp_session_t *s, const char *detail);
void bg_amqp_audit_session_end(bg_amqp_session_t *s);
void bg_amqp_audit_auth_failure(bg_amqp_session_t *s, const char *reason);
/* One event per check of v for method m; counts the decisions. */
void bg_amqp_audit_decisions(bg_amqp_session_t *s, const bg_amqp_method_t *m,
                             const bg_amqp_verdict_t *v, uint64_t bytes_in);
/* A refusal busgate makes itself after the policy allowed method m on
 * check c (a message over max_body_bytes): one more decision event, deny,
 * no rule, result code (e.g. 406) and why as its detail; counted as a deny.
 * Strings are borrowed during the call. */
void bg_amqp_audit_limit(bg_amqp_session_t *s, const bg_amqp_method_t *m,
                         const bg_amqp_check_t *c, uint16_t code, const char *why,
                         uint64_t bytes_in);
/* 1 when the audit pipeline accepts events (or audit is off). */
int bg_amqp_audit_admitting(bg_amqp_session_t *s);

#endif
