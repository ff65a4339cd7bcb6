/* busgate's own AMQP connection to RabbitMQ for one client session,
 * authenticated with busgate's credential (amqp.upstream), never the
 * client's token: protocol header, connection.start -> start-ok (PLAIN,
 * the client's capabilities mirrored), connection.tune -> (the session
 * decides) tune-ok + open(vhost) -> open-ok. Then it relays frames to its
 * session and keeps the heartbeat of this leg itself: a heartbeat frame
 * every heartbeat/2 seconds, the leg declared lost after 2 heartbeat
 * intervals without a byte; heartbeat frames are consumed here, never
 * passed on.
 *
 * Lives on one worker thread with its session; not thread-safe. */
#ifndef BG_AMQP_UPSTREAM_H
#define BG_AMQP_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "adapters/amqp/amqp_adapter-internal.h"
#include "adapters/amqp/amqp_frame.h"

/* What one read callback takes from a socket at most, either leg (libevent
 * 2.1 alone takes 4 KiB per wake-up; see bg_util_bev_read_more). */
#define BG_AMQP_READ_BURST (256u * 1024)

struct event_base;
struct evdns_base;
struct evbuffer;

typedef struct bg_amqp_up_s bg_amqp_up_t;

/* A reply text from RabbitMQ with busgate's upstream user unnamed (RabbitMQ
 * names its user, busgate's, in refusals such as "access to queue 'q' in
 * vhost '/' refused for user 'busgate'"): "user 'USER'" becomes "busgate's
 * upstream user", another quoted 'USER' "'busgate's upstream user'". 1 when
 * text named it (out: the new text, NUL-terminated, cut to cap - 1 bytes),
 * 0 when not (out unspecified). Pure (amqp_authz.c). */
int bg_amqp_reply_text_unnamed(const uint8_t *text, size_t len, const char *user, char *out,
                               size_t cap);

typedef struct bg_amqp_up_cbs_s {
    /* The upstream's connection.tune arrived; the session answers with
     * bg_amqp_up_tune_ok once it knows the client's choice. */
    void (*tuned)(void *arg, uint16_t channel_max, uint32_t frame_max, uint16_t heartbeat);
    /* connection.open-ok: frames may be relayed. */
    void (*ready)(void *arg);
    /* A whole non-heartbeat frame f of frame_len bytes is at the head of in
     * (f->payload is NULL: bodies are not linearised); the callee removes
     * it. Returns -1 to be passed no more frames of this read: the session
     * closed (u itself is freed later, by the session's own event), or it
     * left f in in, to be passed again after bg_amqp_up_resume. */
    int (*frame)(void *arg, struct evbuffer *in, const bg_amqp_frame_t *f, size_t frame_len);
    /* Every read callback ends with this (also after frame returned -1): the
     * session writes what it staged for the client. Optional. */
    void (*read_done)(void *arg);
    /* The connection failed or closed (or the broker refused busgate's own
     * login, or did not finish the handshake within 15 s: why says so); the
     * session must go. where: "HOST:PORT". Not logged here: the callee logs
     * it, once, with what it knows itself (the session). May run inside
     * bg_amqp_up_connect, before it returned u. */
    void (*failed)(void *arg, const char *where, const char *why);
    /* Output drained below the low watermark (resume reading the client). */
    void (*drained)(void *arg);
} bg_amqp_up_cbs_t;

/* Starts connecting to amqp.upstream.host on base, resolving its name with
 * dns (the worker's resolver; NULL: a blocking lookup); caps are the
 * client's capabilities to advertise. Returns NULL when out of memory or
 * the connect cannot start (nothing to free then). */
bg_amqp_up_t *bg_amqp_up_connect(struct event_base *base, struct evdns_base *dns,
                                 bg_amqp_global_t *g, uint32_t caps, const bg_amqp_up_cbs_t *cbs,
                                 void *arg);
void bg_amqp_up_free(bg_amqp_up_t *u);
/* Stops u without a callback: no more reads, timers or callbacks (the
 * session is closing). Safe inside any of u's callbacks; free later. */
void bg_amqp_up_detach(bg_amqp_up_t *u);

/* Answers the upstream's tune (tune-ok with these values, then
 * connection.open on the configured vhost). Returns 0 or -1. */
int bg_amqp_up_tune_ok(bg_amqp_up_t *u, uint16_t channel_max, uint32_t frame_max,
                       uint16_t heartbeat) __attribute__((warn_unused_result));

/* 1 after open-ok. */
int bg_amqp_up_is_ready(const bg_amqp_up_t *u);
/* "HOST:PORT" of the broker, for logs; valid while u lives. */
const char *bg_amqp_up_where(const bg_amqp_up_t *u);
/* The output buffer (append frames). */
struct evbuffer *bg_amqp_up_output(bg_amqp_up_t *u);
/* Moves all of src to the connection with bg_util_bev_send: written at once
 * when nothing is queued (plain TCP), else queued behind it. After
 * bg_amqp_up_detach or a failure src is dropped, as queued output is.
 * Returns 0, or -1 when queueing failed (src left as it is). */
int bg_amqp_up_write_buffer(bg_amqp_up_t *u, struct evbuffer *src);
/* Enables/disables reading (backpressure). */
void bg_amqp_up_set_reading(bg_amqp_up_t *u, int on);
/* Reads again, and passes the frames a frame callback left in the input
 * (returning -1) once more, from the event loop (not from inside this
 * call). */
void bg_amqp_up_resume(bg_amqp_up_t *u);

/* Frame helpers shared by both legs (amqp_upstream.c). */

/* Looks at the frame at the head of in without linearising it: 1 complete
 * (f filled, f->payload NULL; *frame_len set), 0 need more, <0 a
 * bg_amqp_status_t with *why (bad type, size over max, end octet). */
int bg_amqp_evbuf_peek(struct evbuffer *in, uint32_t max, bg_amqp_frame_t *f, size_t *frame_len,
                       const char **why);
/* Appends wr's bytes to out; -1 when wr failed or out of memory. wr is reset. */
int bg_amqp_evbuf_send(struct evbuffer *out, bg_wr_t *wr);

#endif
