/* The Kafka adapter's process-wide state and per-worker listeners.
 *
 * Port model: a bootstrap listener (kafka.listen) plus one listener per
 * upstream broker at broker_port_base + node_id, opened on every worker with
 * SO_REUSEPORT. Brokers are discovered by worker 0 (kafka_discovery.c: a
 * Metadata request made with busgate's own upstream credential, at start-up
 * and every minute) and from the Metadata/DescribeCluster/FindCoordinator
 * responses busgate relays; a new broker makes every worker open its port. */
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/kafka/kafka_adapter-internal.h"
#include "adapters/kafka/kafka_scram.h"
#include "adapters/kafka/kafka_adapter.h"
#include "adapters/kafka/kafka_discovery.h"
#include "adapters/kafka/kafka_share.h"
#include "broker/log.h"
#include "broker/util_tls.h"


/* ---- broker and topic-id maps ---- */

int bg_kafka_global_node(bg_kafka_global_t *g, int32_t id, char *host, size_t hostlen,
                         uint16_t *port)
{
    int rc = -1;
    pthread_mutex_lock(&g->mu);
    for (size_t i = 0; i < g->nnodes; i++)
        if (g->nodes[i].id == id) {
            snprintf(host, hostlen, "%s", g->nodes[i].host);
            *port = g->nodes[i].port;
            rc = 0;
            break;
        }
    pthread_mutex_unlock(&g->mu);
    return rc;
}

/* Splits "h:p,h:p" and returns the i-th (mod count) entry. */
void bg_kafka_global_bootstrap(bg_kafka_global_t *g, char *host, size_t hostlen, uint16_t *port)
{
    size_t count = 1;
    for (const char *p = g->bootstrap; *p; p++)
        count += *p == ',';
    size_t pick = atomic_fetch_add(&g->boot_rr, 1) % count;
    const char *s = g->bootstrap;
    for (size_t i = 0; i < pick; i++)
        s = strchr(s, ',') + 1;
    size_t len = strcspn(s, ",");
    char one[300];
    snprintf(one, sizeof one, "%.*s", (int)len, s);
    bg_addr_t a = {0};
    if (bg_config_parse_addr(one, &a, NULL) == 0) {
        snprintf(host, hostlen, "%s", a.host);
        *port = a.port;
        free(a.host);
    } else {
        snprintf(host, hostlen, "127.0.0.1");
        *port = 9092;
    }
}

static void bg_kafka__notify_workers(bg_kafka_global_t *g)
{
    for (size_t i = 0; i < g->nworkers; i++)
        if (g->workers[i]->nodes_ev)
            event_active(g->workers[i]->nodes_ev, 0, 0);
}

/* Whether busgate's port for node n is free (under g->mu): checked before
 * any worker opens it (see bg_util_port_unused). */
static int bg_kafka__port_free(bg_kafka_global_t *g, bg_kafka_node_t *n, char *taken,
                               size_t takenlen)
{
    long own = (long)g->cfg->kafka.broker_port_base + n->id; /* <= 65535: never_served */
    n->taken_checked_ms = bg_util_now_ms();
    return bg_util_port_unused(g->cfg->kafka.listen.host, (unsigned)own, taken, takenlen) == 0;
}

/* Whether busgate can never serve node id, whatever happens while it runs:
 * its port (broker_port_base + id) is above 65535, or is the bootstrap
 * listener's own. Such an id takes no slot in g->nodes. */
static int bg_kafka__never_served(const bg_kafka_global_t *g, int32_t id, char *why, size_t cap)
{
    const bg_config_kafka_t *k = &g->cfg->kafka;
    long own = (long)k->broker_port_base + id;
    if (own > 65535)
        snprintf(why, cap, "port %ld is above 65535 (kafka.broker_port_base + node id)", own);
    else if (own == (long)k->listen.port)
        snprintf(why, cap, "port %ld is kafka.listen's own (kafka.broker_port_base + node id)",
                 own);
    else
        return 0;
    return 1;
}

/* Whether to log that node id is not served (g->mu held): once per id, for
 * the first BG_KAFKA_MAX_REFUSED ids (kept in a small list, only for
 * that); *full is set once, when the list has just run out, so the caller
 * says no more will be logged. */
static int bg_kafka__refusal_to_log(bg_kafka_global_t *g, int32_t id, int *full)
{
    *full = 0;
    for (size_t i = 0; i < g->nrefused; i++)
        if (g->refused[i] == id)
            return 0;
    if (g->nrefused < BG_KAFKA_MAX_REFUSED) {
        g->refused[g->nrefused++] = id;
        return 1;
    }
    if (!g->refused_full)
        g->refused_full = *full = 1;
    return 0;
}

static void bg_kafka__log_refusal_full(int full)
{
    if (full)
        bg_log_warn("kafka", "more than %d brokers busgate does not serve: not logged further",
                    BG_KAFKA_MAX_REFUSED);
}

int bg_kafka_global_learn_node(bg_kafka_global_t *g, int32_t id, const char *host, size_t hostlen,
                               int32_t port)
{
    if (id < 0 || hostlen >= sizeof g->nodes[0].host)
        return 0;
    char never[160];
    int log, full = 0;
    if (bg_kafka__never_served(g, id, never, sizeof never)) {
        pthread_mutex_lock(&g->mu);
        log = bg_kafka__refusal_to_log(g, id, &full);
        pthread_mutex_unlock(&g->mu);
        if (log)
            bg_log_error("kafka",
                         "broker %d: %s; never served: left out of the responses busgate relays",
                         (int)id, never);
        bg_kafka__log_refusal_full(full);
        return 0;
    }
    /* A port no TCP connection can have: cut to 16 bits it would be
     * dialled somewhere else. The node is not served. */
    if (hostlen > 0 && (port < 1 || port > 65535)) {
        bg_log_warn("kafka", "broker %d: the broker names port %d; not served", (int)id,
                    (int)port);
        return 0;
    }
    pthread_mutex_lock(&g->mu);
    size_t i;
    for (i = 0; i < g->nnodes; i++)
        if (g->nodes[i].id == id)
            break;
    int fresh = i == g->nnodes;
    if (fresh && (hostlen == 0 || g->nnodes == BG_KAFKA_MAX_NODES)) {
        /* Entries are kept until busgate stops (a departed broker's too):
         * past BG_KAFKA_MAX_NODES ids a new broker is not served. */
        log = hostlen > 0 && bg_kafka__refusal_to_log(g, id, &full);
        pthread_mutex_unlock(&g->mu);
        if (log)
            bg_log_warn("kafka", "broker %d: more than %d brokers; not served", (int)id,
                        BG_KAFKA_MAX_NODES);
        if (hostlen > 0)
            bg_kafka__log_refusal_full(full);
        return 0;
    }
    bg_kafka_node_t *n = &g->nodes[i];
    int changed = hostlen > 0 && (fresh || n->port != port || strlen(n->host) != hostlen ||
                                  memcmp(n->host, host, hostlen) != 0);
    char taken[300] = "";
    if (changed) {
        n->id = id;
        memcpy(n->host, host, hostlen);
        n->host[hostlen] = '\0';
        n->port = (uint16_t)port;
        if (fresh) {
            g->nnodes++;
            n->port_taken = !bg_kafka__port_free(g, n, taken, sizeof taken);
        }
    }
    int freed = 0;
    if (!fresh && n->port_taken &&
        bg_util_now_ms() - n->taken_checked_ms >= BG_KAFKA_PORT_RECHECK_MS) {
        char still[300];
        freed = bg_kafka__port_free(g, n, still, sizeof still);
        n->port_taken = !freed;
    }
    int served = !n->port_taken;
    if (fresh || freed)
        bg_kafka__notify_workers(g);
    pthread_mutex_unlock(&g->mu);
    if (changed)
        bg_log_info("kafka", "upstream broker %d at %.*s:%u", (int)id, (int)hostlen, host, port);
    if (taken[0])
        bg_log_error("kafka",
                     "broker %d: %s; not served: left out of the responses busgate relays "
                     "(checked again every %d s)",
                     (int)id, taken, BG_KAFKA_PORT_RECHECK_MS / 1000);
    if (freed)
        bg_log_info("kafka", "broker %d: its port is free now; served", (int)id);
    return served;
}

void bg_kafka_global_learn_topic(bg_kafka_global_t *g, const uint8_t id[16], const uint8_t *name,
                                 size_t len)
{
    pthread_mutex_lock(&g->mu);
    int rc = bg_kafka_topic_ids_put(&g->topic_ids, id, name, len);
    pthread_mutex_unlock(&g->mu);
    if (rc < 0) /* the id stays unknown: its requests are answered UNKNOWN_TOPIC_ID */
        bg_log_warn("kafka", "out of memory: topic id of %.*s not recorded", (int)len,
                    (const char *)name);
    else if (rc > 0)
        bg_log_warn("kafka", "the broker named a known topic id %.*s: the first name is kept",
                    (int)len, (const char *)name);
}

int bg_kafka_global_topic_name(bg_kafka_global_t *g, const uint8_t id[16], char *out, size_t cap)
{
    pthread_mutex_lock(&g->mu);
    int found = bg_kafka_topic_ids_get(&g->topic_ids, id, out, cap);
    pthread_mutex_unlock(&g->mu);
    return found;
}

/* Slot 0 the bootstrap brokers, slot i + 1 the broker in nodes[i] (node
 * ids are the brokers', any int32; entries are never removed). g->mu held. */
static struct bg_kafka_versions_s *bg_kafka__versions_slot(bg_kafka_global_t *g, int32_t node)
{
    if (node == -1)
        return &g->versions[0];
    for (size_t i = 0; i < g->nnodes; i++)
        if (g->nodes[i].id == node)
            return &g->versions[i + 1];
    return NULL;
}

void bg_kafka_global_keep_versions(bg_kafka_global_t *g, int32_t node, const uint8_t *body,
                                   size_t len, int16_t ver, const int16_t *vmin,
                                   const int16_t *vmax)
{
    uint8_t *copy = body && len ? malloc(len) : NULL;
    if (!copy)
        return;
    memcpy(copy, body, len);
    pthread_mutex_lock(&g->mu);
    struct bg_kafka_versions_s *v = bg_kafka__versions_slot(g, node);
    if (!v) {
        pthread_mutex_unlock(&g->mu);
        free(copy);
        return;
    }
    uint8_t *old = v->body;
    v->body = copy;
    v->len = len;
    v->ver = ver;
    memcpy(v->vmin, vmin, sizeof v->vmin);
    memcpy(v->vmax, vmax, sizeof v->vmax);
    pthread_mutex_unlock(&g->mu);
    free(old);
}

int bg_kafka_global_version_range(bg_kafka_global_t *g, int32_t node, int16_t api, int16_t *min,
                                  int16_t *max)
{
    int rc = -1;
    pthread_mutex_lock(&g->mu);
    struct bg_kafka_versions_s *v = bg_kafka__versions_slot(g, node);
    if (v && v->body) {
        rc = api >= 0 && api < BG_KAFKA_VERSIONS_APIS && v->vmax[api] >= 0;
        if (rc) {
            *min = v->vmin[api];
            *max = v->vmax[api];
        }
    }
    pthread_mutex_unlock(&g->mu);
    return rc;
}

int bg_kafka_global_versions(bg_kafka_global_t *g, int32_t node, bg_kafka_arena_t *arena,
                             const uint8_t **body, size_t *len, int16_t *ver)
{
    int found = 0;
    pthread_mutex_lock(&g->mu);
    struct bg_kafka_versions_s *v = bg_kafka__versions_slot(g, node);
    uint8_t *copy = v && v->body ? bg_kafka_arena_alloc(arena, v->len) : NULL;
    if (copy) {
        memcpy(copy, v->body, v->len);
        *body = copy;
        *len = v->len;
        *ver = v->ver;
        found = 1;
    }
    pthread_mutex_unlock(&g->mu);
    return found;
}

/* ---- start-up: embedded cluster, discovery, TLS ---- */

static int bg_kafka__start_mock(bg_kafka_global_t *g, int n, char *err, size_t errlen)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "log_level", "3", NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, errlen);
    if (!rk) {
        rd_kafka_conf_destroy(c);
        return -1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, n);
    if (!mc) {
        snprintf(err, errlen, "cannot start the embedded mock cluster");
        rd_kafka_destroy(rk);
        return -1;
    }
    g->mock_rk = rk;
    g->mock = mc;
    g->bootstrap = strdup(rd_kafka_mock_cluster_bootstraps(mc));
    bg_log_info("kafka", "embedded mock cluster with %d broker(s) at %s", n, g->bootstrap);
    return g->bootstrap ? 0 : -1;
}

static char *bg_kafka__join_bootstrap(const bg_config_kafka_t *k)
{
    size_t cap = 1;
    for (size_t i = 0; i < k->upstream.nbootstrap; i++)
        cap += strlen(k->upstream.bootstrap[i].host) + 10;
    char *s = calloc(1, cap);
    size_t len = 0;
    for (size_t i = 0; s && i < k->upstream.nbootstrap; i++) {
        const bg_addr_t *a = &k->upstream.bootstrap[i];
        int v6 = strchr(a->host, ':') != NULL;
        len += (size_t)snprintf(s + len, cap - len, "%s%s%s%s:%u", i ? "," : "", v6 ? "[" : "",
                                a->host, v6 ? "]" : "", a->port);
    }
    return s;
}

static void bg_kafka__global_free(void *arg)
{
    bg_kafka_global_t *g = arg;
    if (!g)
        return;
    if (g->mock)
        rd_kafka_mock_cluster_destroy(g->mock);
    if (g->mock_rk)
        rd_kafka_destroy(g->mock_rk);
    if (g->client_tls)
        SSL_CTX_free(g->client_tls);
    if (g->upstream_tls)
        SSL_CTX_free(g->upstream_tls);
    pthread_mutex_destroy(&g->mu);
    bg_kafka_scram_cache_clear(); /* no salted password outlives its configuration */
    bg_kafka_topic_ids_free(&g->topic_ids);
    for (size_t i = 0; i < sizeof g->versions / sizeof g->versions[0]; i++)
        free(g->versions[i].body);
    bg_kafka_share_owners_free(g->share_owners); /* the sessions are gone */
    free(g->bootstrap);
    free(g);
}

static int bg_kafka__global_init(const bg_config_t *cfg, void **out, char *err, size_t errlen)
{
    const bg_config_kafka_t *k = &cfg->kafka;
    bg_kafka_global_t *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&g->mu, NULL);
    g->cfg = cfg;
    g->share_owners = bg_kafka_share_owners_new();
    if (bg_kafka_topic_ids_init(&g->topic_ids, 0) < 0 || !g->share_owners)
        goto fail;
    if (k->upstream.embedded > 0) {
        if (bg_kafka__start_mock(g, k->upstream.embedded, err, errlen) != 0)
            goto fail;
    } else if (!(g->bootstrap = bg_kafka__join_bootstrap(k))) {
        goto fail;
    }
    if (bg_util_port_unused(k->listen.host, k->listen.port, err, errlen) != 0)
        goto fail;
    if (k->tls.enabled &&
        !(g->client_tls = bg_util_tls_server_ctx(&k->tls, "kafka.tls", err, errlen)))
        goto fail;
    int up_tls = k->upstream.security == BG_SEC_SSL || k->upstream.security == BG_SEC_SASL_SSL;
    if (up_tls && !(g->upstream_tls = bg_util_tls_client_ctx(&k->upstream.tls,
                                                             "kafka.upstream.tls", err, errlen)))
        goto fail;
    *out = g;
    return 0;
fail:
    if (!err[0])
        snprintf(err, errlen, "out of memory");
    bg_kafka__global_free(g);
    return -1;
}

static int bg_kafka__ready(void *arg)
{
    bg_kafka_global_t *g = arg;
    return atomic_load(&g->upstream_seen_ok);
}

/* ---- per-worker listeners ---- */

static void bg_kafka__on_accept(struct evconnlistener *l, evutil_socket_t fd,
                                struct sockaddr *peer, int peerlen, void *arg)
{
    bg_kafka_listener_t *kl = arg;
    bg_limits_conn_t lim;
    /* Over a limit, the connection is closed at once: it leaves the
     * backlog, and the client sees it refused instead of waiting. */
    if (kl->kw->draining ||
        bg_limits_admit(kl->kw->w->limits, BG_PROTO_KAFKA, fd, peer, &lim) != BG_LIMITS_OK) {
        evutil_closesocket(fd);
        return;
    }
    bg_kafka_session_accept(kl->kw, fd, peer, peerlen, kl->node_id, &lim);
}

static void bg_kafka__on_listen_error(struct evconnlistener *l, void *arg)
{
    bg_kafka_listener_t *kl = arg;
    bg_util_accept_guard_failed(&kl->guard);
}

/* Opens one listener on host:port for node_id on this worker. */
static int bg_kafka__listen(bg_kafka_worker_t *kw, const char *host, uint16_t port, int32_t node_id,
                            char *err, size_t errlen)
{
    if (kw->nlisteners == sizeof kw->listeners / sizeof kw->listeners[0]) {
        snprintf(err, errlen, "too many listeners");
        return -1;
    }
    bg_kafka_listener_t *kl = &kw->listeners[kw->nlisteners];
    kl->kw = kw;
    kl->node_id = node_id;
    kl->l = bg_util_listen_shared(kw->w->base, bg_kafka__on_accept, kl, host, port, err, errlen);
    if (!kl->l)
        return -1;
    if (bg_util_accept_guard_init(&kl->guard, kl->l, "kafka", BG_UTIL_ACCEPT_PAUSE_MS) != 0) {
        evconnlistener_free(kl->l);
        kl->l = NULL;
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    evconnlistener_set_error_cb(kl->l, bg_kafka__on_listen_error);
    kw->nlisteners++;
    return 0;
}

static int bg_kafka__has_listener(const bg_kafka_worker_t *kw, int32_t node_id)
{
    for (size_t i = 0; i < kw->nlisteners; i++)
        if (kw->listeners[i].node_id == node_id)
            return 1;
    return 0;
}

void bg_kafka_worker_open_ports(bg_kafka_worker_t *kw)
{
    bg_kafka_global_t *g = kw->g;
    const bg_config_kafka_t *k = &g->cfg->kafka;
    int32_t ids[BG_KAFKA_MAX_NODES];
    size_t n = 0;
    pthread_mutex_lock(&g->mu);
    for (size_t i = 0; i < g->nnodes; i++)
        if (!g->nodes[i].port_taken)
            ids[n++] = g->nodes[i].id;
    pthread_mutex_unlock(&g->mu);
    for (size_t i = 0; i < n; i++) {
        if (kw->draining || bg_kafka__has_listener(kw, ids[i]))
            continue;
        long port = (long)k->broker_port_base + ids[i];
        char err[256];
        if (port > 65535) {
            bg_log_error("kafka", "broker %d: port %ld out of range", (int)ids[i], port);
            continue;
        }
        if (bg_kafka__listen(kw, k->listen.host, (uint16_t)port, ids[i], err, sizeof err) != 0)
            bg_log_error("kafka", "broker %d: %s", (int)ids[i], err);
        else if (kw->w->index == 0)
            bg_log_info("kafka", "serving upstream broker %d on port %ld%s", (int)ids[i], port,
                        kw->g->client_tls ? " (TLS)" : "");
    }
}

static void bg_kafka__on_nodes(evutil_socket_t fd, short what, void *arg)
{
    bg_kafka_worker_open_ports(arg);
}

static void bg_kafka__worker_stop(void *arg);

static int bg_kafka__worker_start(bg_worker_t *w, void *global, void **state, char *err,
                                  size_t errlen)
{
    bg_kafka_global_t *g = global;
    bg_kafka_worker_t *kw = calloc(1, sizeof *kw);
    if (!kw) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    kw->w = w;
    kw->g = g;
    TAILQ_INIT(&kw->sessions);
    kw->nodes_ev = event_new(w->base, -1, 0, bg_kafka__on_nodes, kw);
    const bg_addr_t *l = &g->cfg->kafka.listen;
    if (!kw->nodes_ev || bg_kafka__listen(kw, l->host, l->port, -1, err, errlen) != 0) {
        bg_kafka__worker_stop(kw);
        return -1;
    }
    pthread_mutex_lock(&g->mu);
    if (g->nworkers < BG_KAFKA_MAX_WORKERS)
        g->workers[g->nworkers++] = kw;
    pthread_mutex_unlock(&g->mu);
    if (w->index == 0) /* the same words as the AMQP adapter's line */
        bg_log_info("kafka", "listening on %s:%u%s, upstream %s%s", l->host, l->port,
                    g->client_tls ? " (TLS)" : "", g->bootstrap,
                    !g->upstream_tls                    ? ""
                    : g->cfg->kafka.upstream.tls.verify ? " (TLS)"
                                                        : " (TLS, not verified)");
    bg_kafka_worker_open_ports(kw);
    if (w->index == 0 && !(kw->discovery = bg_kafka_discovery_start(kw))) {
        snprintf(err, errlen, "out of memory");
        bg_kafka__worker_stop(kw);
        return -1;
    }
    *state = kw;
    return 0;
}

static void bg_kafka__close_listeners(bg_kafka_worker_t *kw)
{
    for (size_t i = 0; i < kw->nlisteners; i++)
        if (kw->listeners[i].l) {
            bg_util_accept_guard_clear(&kw->listeners[i].guard);
            evconnlistener_free(kw->listeners[i].l);
            kw->listeners[i].l = NULL;
        }
}

static void bg_kafka__worker_drain(void *arg)
{
    bg_kafka_worker_t *kw = arg;
    kw->draining = 1;
    bg_kafka__close_listeners(kw);
    bg_kafka_sessions_drain(kw);
}

static size_t bg_kafka__worker_sessions(void *arg)
{
    return ((bg_kafka_worker_t *)arg)->nsessions;
}

static void bg_kafka__worker_stop(void *arg)
{
    bg_kafka_worker_t *kw = arg;
    bg_kafka_global_t *g = kw->g;
    pthread_mutex_lock(&g->mu);
    for (size_t i = 0; i < g->nworkers; i++)
        if (g->workers[i] == kw) {
            g->workers[i] = g->workers[--g->nworkers];
            break;
        }
    pthread_mutex_unlock(&g->mu);
    bg_kafka__close_listeners(kw);
    bg_kafka_discovery_free(kw->discovery);
    bg_kafka_sessions_free(kw);
    if (kw->nodes_ev)
        event_free(kw->nodes_ev);
    free(kw);
}

static int bg_kafka__enabled(const bg_config_t *cfg) { return cfg->kafka.enabled; }

const bg_adapter_t bg_kafka_adapter = {
    .name = "kafka",
    .proto = BG_PROTO_KAFKA,
    .enabled = bg_kafka__enabled,
    .global_init = bg_kafka__global_init,
    .global_free = bg_kafka__global_free,
    .ready = bg_kafka__ready,
    .worker_start = bg_kafka__worker_start,
    .worker_drain = bg_kafka__worker_drain,
    .worker_sessions = bg_kafka__worker_sessions,
    .worker_stop = bg_kafka__worker_stop,
};
