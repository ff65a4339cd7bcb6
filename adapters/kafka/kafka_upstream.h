/* One connection from busgate to an upstream Kafka broker, authenticated with
 * busgate's own credential (never the client's token): connect (optionally
 * TLS), ApiVersions (v4, falling back to the broker's maximum or v0), then
 * SaslHandshake + SaslAuthenticate with PLAIN or SCRAM-SHA-256/512 when
 * kafka.upstream.security is sasl_*. After that it relays frames for its session, and logs in
 * again on the same connection before the session lifetime the broker gave
 * ends (KIP-368; requests sent meanwhile are held, then go out in order).
 *
 * Lives on one worker thread with its session; not thread-safe. */
#ifndef BG_KAFKA_UPSTREAM_H
#define BG_KAFKA_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "adapters/kafka/kafka_adapter-internal.h"

struct event_base;
struct evdns_base;
struct evbuffer;

typedef struct bg_kafka_up_s bg_kafka_up_t;

typedef struct bg_kafka_up_cbs_s {
    /* Handshake done: versions known, frames may be sent. */
    void (*ready)(void *arg);
    /* Optional: the broker's versions are known while the login waits
     * (bg_kafka_up_hold_login); nothing may be sent yet. */
    void (*versions)(void *arg);
    /* The first 8 bytes (size, correlation id) of a response frame of
     * frame_len bytes (size prefix included) are at the head of in. Returns
     * 1 to stream it (then `stream` receives its bytes as they arrive, the
     * size prefix first), 0 to receive it whole through `frame`, -1 when the
     * callee closed the session. Optional (NULL: always whole). */
    int (*frame_begin)(void *arg, struct evbuffer *in, size_t frame_len);
    /* n bytes of the streamed frame are at the head of in (last: the frame
     * ends with them); the callee removes them. Returns -1 when it closed
     * the session. */
    int (*stream)(void *arg, struct evbuffer *in, size_t n, int last);
    /* Optional, with `spliced`: after `stream` took all that was buffered of
     * a streamed frame with much still to come, the rest may move in the
     * kernel from the broker's socket straight to a socket of the callee's
     * (plain TCP upstream only). Returns that socket, which must be plain TCP
     * with nothing queued for it and must not be written until `spliced`,
     * or -1 to keep streaming through `stream`. */
    int (*splice_to)(void *arg);
    /* n bytes of the rest of the streamed frame reached the splice_to
     * socket. err 0: the frame is complete; err > 0: writing to that socket
     * failed with errno err (the callee closes the session); err -1: the
     * broker's connection failed (`failed` follows unless this returns -1).
     * Returns -1 when the callee closed the session. */
    int (*spliced)(void *arg, uint64_t n, int err);
    /* A whole response frame of frame_len bytes (size prefix included) is at
     * the head of in; the callee removes it. Returns -1 when it closed the
     * session (then the upstream is gone too). */
    int (*frame)(void *arg, struct evbuffer *in, size_t frame_len);
    /* The connection failed or closed; the session must go. */
    void (*failed)(void *arg, const char *why);
    /* Output drained below the low watermark, or a re-authentication
     * ended and what it held went out (resume reading the client). */
    void (*drained)(void *arg);
    /* How many requests already sent still wait for their response (each
     * forwarded request gets exactly one). Optional: without it the
     * connection never re-authenticates (for short-lived users such as
     * discovery). */
    size_t (*outstanding)(void *arg);
} bg_kafka_up_cbs_t;

/* Starts connecting to node_id (-1: a bootstrap broker) on base, resolving
 * its host name with dns (the worker's resolver; NULL: a blocking lookup).
 * Returns NULL, with the reason in why[0..cap) (nothing to free then), when
 * the node is unknown, memory ran out or the connection could not start
 * (logged as a warn naming the broker); a failure after that comes through
 * `failed`. */
bg_kafka_up_t *bg_kafka_up_connect(struct event_base *base, struct evdns_base *dns,
                                   bg_kafka_global_t *g, int32_t node_id,
                                   const bg_kafka_up_cbs_t *cbs, void *arg, char *why, size_t cap);
void bg_kafka_up_free(bg_kafka_up_t *u);
/* "host:port (node N)", as the upstream's log lines name the broker;
 * borrowed, valid while u lives. */
const char *bg_kafka_up_where(const bg_kafka_up_t *u);
/* Right after bg_kafka_up_connect: stop after ApiVersions (no login with
 * busgate's credential) until bg_kafka_up_login; `versions` reports the
 * versions meanwhile. For a client that has not authenticated yet. */
void bg_kafka_up_hold_login(bg_kafka_up_t *u);
/* Goes on with the login bg_kafka_up_hold_login held (at once when the
 * versions are known, else after them). -1 when it cannot be sent (the
 * caller closes the session; no callback runs). */
int bg_kafka_up_login(bg_kafka_up_t *u);

/* 1 after the handshake completed; 0 for NULL (not connected yet). */
int bg_kafka_up_is_ready(const bg_kafka_up_t *u);
/* Bytes of the response being spliced that reached the client so far; 0
 * when none is. */
uint64_t bg_kafka_up_splice_moved(const bg_kafka_up_t *u);
/* The output buffer (append request frames; only once ready). While the
 * connection re-authenticates it is the hold buffer, sent when that ends. */
struct evbuffer *bg_kafka_up_output(bg_kafka_up_t *u);

/* Moves n bytes from src to the broker: written at once when nothing is
 * queued (plain TCP), the rest queued (bg_util_bev_send). The connection
 * must be ready. Returns 0, or -1 when src is short or queueing failed. */
int bg_kafka_up_send(bg_kafka_up_t *u, struct evbuffer *src, size_t n);

/* Enables/disables reading responses (backpressure). */
void bg_kafka_up_set_reading(bg_kafka_up_t *u, int on);
/* The upstream's version range for api_key: 1 when it supports it. */
int bg_kafka_up_versions(const bg_kafka_up_t *u, int16_t api_key, int16_t *min, int16_t *max);
/* The upstream's ApiVersions response body and the version it was decoded
 * at (for copying its feature fields); borrowed, valid while u lives. */
const uint8_t *bg_kafka_up_api_versions_body(const bg_kafka_up_t *u, size_t *len,
                                             int16_t *version);

#endif
