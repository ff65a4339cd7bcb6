/* The AMQP adapter's process-wide state and per-worker listeners: one
 * listener (amqp.listen) opened on every worker with SO_REUSEPORT; each
 * accepted client gets a session (amqp_session.c) and its own upstream
 * connection on the same worker. */
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/amqp/amqp_adapter-internal.h"
#include "adapters/amqp/amqp_probe.h"
#include "adapters/amqp/amqp_adapter.h"
#include "broker/log.h"
#include "broker/util_tls.h"

static void bg_amqp__global_free(void *arg)
{
    bg_amqp_global_t *g = arg;
    if (!g)
        return;
    if (g->client_tls)
        SSL_CTX_free(g->client_tls);
    if (g->upstream_tls)
        SSL_CTX_free(g->upstream_tls);
    free(g);
}

static int bg_amqp__global_init(const bg_config_t *cfg, void **out, char *err, size_t errlen)
{
    const bg_config_amqp_t *a = &cfg->amqp;
    bg_amqp_global_t *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    g->cfg = cfg;
    if (bg_util_port_unused(a->listen.host, a->listen.port, err, errlen) != 0)
        goto fail;
    /* A bad certificate, key or CA stops start-up: never serve plaintext
     * (or connect unverified) instead of what was configured. */
    if (a->tls.enabled &&
        !(g->client_tls = bg_util_tls_server_ctx(&a->tls, "amqp.tls", err, errlen)))
        goto fail;
    if (a->upstream.tls.enabled &&
        !(g->upstream_tls =
              bg_util_tls_client_ctx(&a->upstream.tls, "amqp.upstream.tls", err, errlen)))
        goto fail;
    *out = g;
    return 0;
fail:
    bg_amqp__global_free(g);
    return -1;
}

static int bg_amqp__ready(void *arg)
{
    bg_amqp_global_t *g = arg;
    return atomic_load(&g->upstream_seen_ok);
}

static void bg_amqp__on_accept(struct evconnlistener *l, evutil_socket_t fd,
                               struct sockaddr *peer, int peerlen, void *arg)
{
    bg_amqp_worker_t *aw = arg;
    bg_limits_conn_t lim;
    /* Over a limit, the connection is closed at once: it leaves the
     * backlog, and the client sees it refused instead of waiting. */
    if (aw->draining ||
        bg_limits_admit(aw->w->limits, BG_PROTO_AMQP, fd, peer, &lim) != BG_LIMITS_OK) {
        evutil_closesocket(fd);
        return;
    }
    bg_amqp_session_accept(aw, fd, peer, &lim);
}

static void bg_amqp__on_listen_error(struct evconnlistener *l, void *arg)
{
    bg_amqp_worker_t *aw = arg;
    bg_util_accept_guard_failed(&aw->guard);
}

static int bg_amqp__listen(bg_amqp_worker_t *aw, const bg_addr_t *a, char *err, size_t errlen)
{
    aw->listener = bg_util_listen_shared(aw->w->base, bg_amqp__on_accept, aw, a->host, a->port,
                                         err, errlen);
    if (!aw->listener)
        return -1;
    if (bg_util_accept_guard_init(&aw->guard, aw->listener, "amqp", BG_UTIL_ACCEPT_PAUSE_MS) != 0) {
        evconnlistener_free(aw->listener);
        aw->listener = NULL;
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    evconnlistener_set_error_cb(aw->listener, bg_amqp__on_listen_error);
    return 0;
}

static void bg_amqp__worker_stop(void *arg);

static int bg_amqp__worker_start(bg_worker_t *w, void *global, void **state, char *err,
                                 size_t errlen)
{
    bg_amqp_global_t *g = global;
    bg_amqp_worker_t *aw = calloc(1, sizeof *aw);
    if (!aw) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    aw->w = w;
    aw->g = g;
    TAILQ_INIT(&aw->sessions);
    if (bg_amqp__listen(aw, &g->cfg->amqp.listen, err, errlen) != 0) {
        free(aw);
        return -1;
    }
    if (w->index == 0 && !(aw->probe = bg_amqp_probe_start(aw))) {
        snprintf(err, errlen, "out of memory");
        bg_amqp__worker_stop(aw);
        return -1;
    }
    if (w->index == 0)
        bg_log_info("amqp", "listening on %s:%u%s, upstream %s:%u%s vhost %s",
                    g->cfg->amqp.listen.host, g->cfg->amqp.listen.port,
                    g->client_tls ? " (TLS)" : "", g->cfg->amqp.upstream.host.host,
                    g->cfg->amqp.upstream.host.port,
                    !g->upstream_tls                   ? ""
                    : g->cfg->amqp.upstream.tls.verify ? " (TLS)"
                                                       : " (TLS, not verified)",
                    g->cfg->amqp.upstream.vhost);
    *state = aw;
    return 0;
}

static void bg_amqp__close_listener(bg_amqp_worker_t *aw)
{
    if (aw->listener) {
        bg_util_accept_guard_clear(&aw->guard);
        evconnlistener_free(aw->listener);
        aw->listener = NULL;
    }
}

static void bg_amqp__worker_drain(void *arg)
{
    bg_amqp_worker_t *aw = arg;
    aw->draining = 1;
    bg_amqp__close_listener(aw);
    bg_amqp_sessions_drain(aw);
}

static size_t bg_amqp__worker_sessions(void *arg) { return ((bg_amqp_worker_t *)arg)->nsessions; }

static void bg_amqp__worker_stop(void *arg)
{
    bg_amqp_worker_t *aw = arg;
    bg_amqp__close_listener(aw);
    bg_amqp_probe_free(aw->probe);
    bg_amqp_sessions_free(aw);
    free(aw);
}

static int bg_amqp__enabled(const bg_config_t *cfg) { return cfg->amqp.enabled; }

const bg_adapter_t bg_amqp_adapter = {
    .name = "amqp",
    .proto = BG_PROTO_AMQP,
    .enabled = bg_amqp__enabled,
    .global_init = bg_amqp__global_init,
    .global_free = bg_amqp__global_free,
    .ready = bg_amqp__ready,
    .worker_start = bg_amqp__worker_start,
    .worker_drain = bg_amqp__worker_drain,
    .worker_sessions = bg_amqp__worker_sessions,
    .worker_stop = bg_amqp__worker_stop,
};
