/* Private to adapters/amqp: the adapter's process-wide state and the
 * per-worker state (listener, sessions). */
#ifndef BG_AMQP_ADAPTER_INTERNAL_H
#define BG_AMQP_ADAPTER_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "broker/config.h"
#include "broker/limits.h"
#include "broker/util_net.h"
#include "broker/worker.h"

struct evconnlistener;
typedef struct ssl_ctx_st SSL_CTX;

typedef struct bg_amqp_global_s {
    const bg_config_t *cfg;       /* the start-up configuration, held for the run */
    _Atomic int upstream_seen_ok; /* an upstream handshake has succeeded */
    SSL_CTX *client_tls;          /* amqp.tls; NULL: plaintext listener */
    SSL_CTX *upstream_tls;        /* amqp.upstream.tls; NULL: plaintext upstream */
} bg_amqp_global_t;

typedef struct bg_amqp_session_s bg_amqp_session_t;
TAILQ_HEAD(bg_amqp_session_list_s, bg_amqp_session_s);

typedef struct bg_amqp_worker_s {
    bg_worker_t *w;
    bg_amqp_global_t *g;
    struct evconnlistener *listener;
    bg_util_accept_guard_t guard; /* pauses listener when accept() runs out of descriptors */
    struct bg_amqp_session_list_s sessions;
    size_t nsessions;
    int draining;
    struct bg_amqp_probe_s *probe; /* worker 0: start-up login for readiness */
} bg_amqp_worker_t;

/* ---- sessions (amqp_session.c) ---- */

/* Starts a session for an accepted client socket on worker aw. Takes fd
 * (closes it on failure) and lim, the connection's share of the limits
 * (released when the session ends, or at once on failure). Worker thread. */
void bg_amqp_session_accept(bg_amqp_worker_t *aw, int fd, const struct sockaddr *peer,
                            bg_limits_conn_t *lim);
/* Asks every session of aw to close (connection.close 320 to its client). */
void bg_amqp_sessions_drain(bg_amqp_worker_t *aw);
/* Frees every session of aw at once (worker stop). */
void bg_amqp_sessions_free(bg_amqp_worker_t *aw);

#endif
