#include "broker/admin.h"

/* Before libevent's headers: keyvalq_struct.h defines the TAILQ macros it
 * needs itself when they are missing, and TAILQ_FOREACH is not among them. */
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/log.h"
#include "broker/metrics.h"
#include "broker/util_net.h"

/* What one client of this unauthenticated port can hold. The admin
 * listener shares the process's descriptors and memory with the Kafka and
 * AMQP listeners: neither may run out because of it. */

/* Request line and headers, as evhttp counts them. */
#define BG_ADMIN_MAX_HEADERS 16384
/* Bytes read ahead of the request being answered. evhttp keeps reading
 * while an answer waits to be written, so pipelined requests from a client
 * that never reads its answers piled up without bound (gigabytes). Above
 * BG_ADMIN_MAX_HEADERS: any request evhttp accepts fits whole, so reading
 * never stops in the middle of the request evhttp waits for. */
#define BG_ADMIN_READ_MAX (2 * BG_ADMIN_MAX_HEADERS)
/* Connections open at once. One more closes the one that has been waiting
 * longest for its next request: refusing the newcomer instead would let 64
 * idle sockets keep every health probe out. */
#define BG_ADMIN_MAX_CONNS 64
/* Seconds a connection has to send a whole request, from its accept and
 * again from the arrival of each request (whose answer is written in that
 * time too). evhttp's own timeout restarts with every byte read: a request
 * trickled a byte at a time held its connection for ever. */
#define BG_ADMIN_DEADLINE_S 10

_Static_assert(BG_ADMIN_READ_MAX > BG_ADMIN_MAX_HEADERS, "a whole request must fit");

/* One accepted connection, from evhttp's bufferevent callback to its close. */
typedef struct bg_admin_conn_s {
    LIST_ENTRY(bg_admin_conn_s) link;
    bg_admin_t *admin;
    struct bufferevent *bev;         /* held (a reference) until adopted, then NULL */
    struct evhttp_connection *evcon; /* NULL until adopted */
    struct event *timer;             /* adoption at once, then the request deadline */
    int over_limit;                  /* closed on adoption, not counted in nconns */
    int evicted;                     /* closed by its timer, made due at once */
    struct timeval armed;            /* when its deadline last started */
} bg_admin_conn_t;

LIST_HEAD(bg_admin_conn_list_s, bg_admin_conn_s);

struct bg_admin_s {
    struct evhttp *http;
    bg_admin_ready_fn ready;
    bg_admin_ready_fn health;
    bg_admin_metrics_fn metrics;
    void *arg;
    bg_util_accept_guard_t guard; /* pauses the listener when accept() runs out of descriptors */
    struct bg_admin_conn_list_s conns;
    unsigned nconns;   /* of conns, those within BG_ADMIN_MAX_CONNS */
    uint64_t refused;  /* connections closed for the limit (main thread only) */
    uint64_t expired;  /* connections closed at their deadline */
};

/* evhttp owns the listener's callback argument (it passes its struct evhttp),
 * so the error callback finds the guard here: there is one admin listener
 * per process. */
static bg_admin_t *bg_admin__current;

static void bg_admin__on_listen_error(struct evconnlistener *l, void *arg)
{
    bg_admin_t *a = bg_admin__current;
    if (a && a->http == arg) {
        bg_util_accept_guard_failed(&a->guard);
        return;
    }
    /* Not the current admin's (a second one in one process): without its
     * guard, stop it rather than let a failing accept() spin. */
    bg_log_error("admin", "admin listener: accept failed; listener stopped");
    evconnlistener_disable(l);
}

/* Guards the bound socket's listener; evhttp alone would retry a failing
 * accept() at once, for ever, and log each failure on stderr. */
static int bg_admin__guard(bg_admin_t *a, struct evhttp_bound_socket *bound)
{
    struct evconnlistener *l = evhttp_bound_socket_get_listener(bound);
    if (bg_util_accept_guard_init(&a->guard, l, "admin", BG_UTIL_ACCEPT_PAUSE_MS) != 0)
        return -1;
    evconnlistener_set_error_cb(l, bg_admin__on_listen_error);
    bg_admin__current = a;
    return 0;
}

/* Forgets c: counts it out and frees what it holds (not the connection). */
static void bg_admin__release(bg_admin_conn_t *c)
{
    LIST_REMOVE(c, link);
    if (!c->over_limit)
        c->admin->nconns--;
    event_free(c->timer);
    if (c->bev)
        bufferevent_decref(c->bev);
    free(c);
}

/* Closes c's connection ourselves, so evhttp's close callback does not
 * run for it. */
static void bg_admin__close(bg_admin_conn_t *c, struct evhttp_connection *evcon)
{
    evhttp_connection_set_closecb(evcon, NULL, NULL);
    bg_admin__release(c);
    evhttp_connection_free(evcon);
}

/* (Re)starts c's deadline: the next request must be whole within it. */
static void bg_admin__arm(bg_admin_conn_t *c)
{
    /* Not one being evicted: adding the timer would take its activation
     * back (libevent), and a request every few seconds would then keep the
     * connection for ever past the limit. */
    if (c->evicted)
        return;
    struct timeval tv = {BG_ADMIN_DEADLINE_S, 0};
    evutil_gettimeofday(&c->armed, NULL);
    evtimer_add(c->timer, &tv);
}

/* Makes room for a new connection at the limit: the adopted connection
 * whose deadline started first (the longest without a request) is closed
 * from its timer, right after this accept. 0, or -1 when none can be. */
static int bg_admin__evict(bg_admin_t *a)
{
    bg_admin_conn_t *c, *oldest = NULL;
    LIST_FOREACH(c, &a->conns, link) {
        if (c->evcon && !c->over_limit && !c->evicted &&
            (!oldest || evutil_timercmp(&c->armed, &oldest->armed, <)))
            oldest = c;
    }
    if (!oldest)
        return -1;
    oldest->evicted = 1;
    event_active(oldest->timer, EV_TIMEOUT, 1);
    return 0;
}

/* evhttp's close callback: the client closed, evhttp gave up on it (its
 * timeout, a bad request, Connection: close) or the listener stops. */
static void bg_admin__on_close(struct evhttp_connection *evcon, void *arg)
{
    bg_admin__release(arg);
}

/* Runs just after evhttp has set the connection up, which happens after the
 * bufferevent callback returns: only now is its evhttp_connection known (the
 * bufferevent's callback argument), and only through it can busgate close
 * the connection or learn that it closed. */
static void bg_admin__adopt(bg_admin_conn_t *c)
{
    bufferevent_event_cb ecb;
    void *evcon;
    bufferevent_getcb(c->bev, NULL, NULL, &ecb, &evcon);
    if (!ecb) {
        /* evhttp dropped it already (out of memory). With no descriptor
         * set it never took the bufferevent, which is then ours to free. */
        if (bufferevent_getfd(c->bev) < 0)
            bufferevent_free(c->bev);
        bg_admin__release(c);
        return;
    }
    if (c->over_limit) {
        bg_admin__close(c, evcon);
        return;
    }
    bufferevent_decref(c->bev); /* evhttp holds its own reference */
    c->bev = NULL;
    c->evcon = evcon;
    evhttp_connection_set_closecb(evcon, bg_admin__on_close, c);
    bg_admin__arm(c);
}

static void bg_admin__on_timer(evutil_socket_t fd, short what, void *arg)
{
    bg_admin_conn_t *c = arg;
    if (!c->evcon) {
        bg_admin__adopt(c);
        return;
    }
    if (c->evicted)
        c->admin->refused++;
    else
        c->admin->expired++;
    bg_admin__close(c, c->evcon);
}

/* evhttp's bufferevent factory, called for every accepted connection before
 * evhttp sets it up (its descriptor and evhttp_connection come later). The
 * bufferevent stops reading at BG_ADMIN_READ_MAX buffered bytes (evhttp sets
 * no read watermark of its own); the connection is counted, and adopted as
 * soon as evhttp is done with it. */
static struct bufferevent *bg_admin__new_bev(struct event_base *base, void *arg)
{
    bg_admin_t *a = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, 0); /* evhttp closes the fd */
    if (!bev)
        return NULL; /* evhttp tries its own, and closes the connection if that fails too */
    bufferevent_setwatermark(bev, EV_READ, 0, BG_ADMIN_READ_MAX);
    bg_admin_conn_t *c = calloc(1, sizeof *c);
    if (!c || !(c->timer = evtimer_new(base, bg_admin__on_timer, c))) {
        /* Out of memory: served with bounded reads, but neither counted nor timed. */
        free(c);
        return bev;
    }
    c->admin = a;
    c->bev = bev;
    /* An eviction frees its slot a moment later: counted meanwhile, the
     * total stays at the limit plus the evictions under way. */
    c->over_limit = a->nconns >= BG_ADMIN_MAX_CONNS && bg_admin__evict(a) != 0;
    if (c->over_limit)
        a->refused++;
    else
        a->nconns++;
    /* Keeps the bufferevent's memory until adoption, even if evhttp frees
     * it first: adoption reads its callbacks. */
    bufferevent_incref(bev);
    LIST_INSERT_HEAD(&a->conns, c, link);
    event_active(c->timer, EV_TIMEOUT, 1);
    return bev;
}

/* A request has arrived whole on evcon and is answered now: the deadline
 * restarts for the next one. A linear search: at most BG_ADMIN_MAX_CONNS. */
static void bg_admin__restart_deadline(bg_admin_t *a, struct evhttp_connection *evcon)
{
    bg_admin_conn_t *c;
    LIST_FOREACH(c, &a->conns, link) {
        if (c->evcon == evcon && evcon) {
            bg_admin__arm(c);
            return;
        }
    }
}

/* Frees what connections not adopted yet hold; evhttp_free has closed
 * every connection (and released the adopted ones through their close
 * callback). */
static void bg_admin__release_all(bg_admin_t *a)
{
    while (!LIST_EMPTY(&a->conns))
        bg_admin__release(LIST_FIRST(&a->conns));
}

static void bg_admin__reply(struct evhttp_request *req, int code, const char *reason,
                            const char *ctype, const char *body)
{
    struct evbuffer *out = evbuffer_new();
    if (!out) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", ctype);
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        /* The headers a GET would get, no body: libevent 2.1 would write the
         * body after a HEAD answer, and a kept-alive client would read it as
         * the start of its next response. */
        char len[24];
        snprintf(len, sizeof len, "%zu", strlen(body));
        evhttp_add_header(h, "Content-Length", len);
    } else {
        evbuffer_add(out, body, strlen(body));
    }
    evhttp_send_reply(req, code, reason, out);
    evbuffer_free(out);
}

static int bg_admin__header_count(const struct evkeyvalq *h, const char *name)
{
    int n = 0;
    const struct evkeyval *kv;
    TAILQ_FOREACH(kv, h, next)
        n += evutil_ascii_strcasecmp(kv->key, name) == 0;
    return n;
}

/* Refuses a request that may carry a body; 1 when refused. No route takes
 * one, and libevent reads a body only for some methods and by the first
 * Content-Length only: what it leaves unread would be parsed as the next
 * request on the connection. "Content-Length: 0" then "Content-Length: 40"
 * passed for no body that way, so more than one is refused too (400). The
 * connection is closed after the answer. */
static int bg_admin__refuse_body(struct evhttp_request *req)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *clen = evhttp_find_header(in, "Content-Length");
    int code = 0;
    if (bg_admin__header_count(in, "Content-Length") > 1)
        code = 400;
    else if ((clen && (!*clen || strspn(clen, "0") != strlen(clen))) ||
             bg_admin__header_count(in, "Transfer-Encoding") > 0)
        code = 413;
    if (!code)
        return 0;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    evhttp_send_error(req, code, code == 400 ? "Bad Request" : "Request Entity Too Large");
    return 1;
}

/* The process's metrics, then the admin listener's own; NULL when out of
 * memory. */
static char *bg_admin__metrics_text(bg_admin_t *a)
{
    char *text = a->metrics(a->arg);
    if (!text)
        return NULL;
    size_t len = strlen(text), cap = len + 1;
    bg_metrics_appendf(&text, &len, &cap,
                       "# HELP busgate_admin_connections_open Admin listener connections open.\n"
                       "# TYPE busgate_admin_connections_open gauge\n"
                       "busgate_admin_connections_open %u\n"
                       "# HELP busgate_admin_connections_refused_total Admin connections closed "
                       "to make room: %d were open.\n"
                       "# TYPE busgate_admin_connections_refused_total counter\n"
                       "busgate_admin_connections_refused_total %llu\n"
                       "# HELP busgate_admin_connections_expired_total Admin connections closed "
                       "with no whole request %d s after their accept or last request.\n"
                       "# TYPE busgate_admin_connections_expired_total counter\n"
                       "busgate_admin_connections_expired_total %llu\n",
                       a->nconns, BG_ADMIN_MAX_CONNS, (unsigned long long)a->refused,
                       BG_ADMIN_DEADLINE_S, (unsigned long long)a->expired);
    return text;
}

/* Answers a probe: 200 {"status":yes}, or 503 {"status":no,"reason":...}
 * when check says 0. */
static void bg_admin__probe(struct evhttp_request *req, bg_admin_ready_fn check, void *arg,
                            const char *yes, const char *no)
{
    const char *why = "";
    char body[512], reason[400];
    size_t rlen = 0;
    int ok = check(arg, &why);
    /* A reason can carry configured text (an issuer's name). */
    bg_json_escape_into(reason, sizeof reason, &rlen, why, strlen(why));
    snprintf(body, sizeof body, "{\"status\":\"%s\"%s%s%s}\n", ok ? yes : no,
             ok ? "" : ",\"reason\":\"", ok ? "" : reason, ok ? "" : "\"");
    bg_admin__reply(req, ok ? 200 : 503, ok ? "OK" : "Service Unavailable", "application/json",
                    body);
}

static void bg_admin__route(struct evhttp_request *req, void *arg)
{
    bg_admin_t *a = arg;
    const char *uri = evhttp_request_get_uri(req);
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    bg_admin__restart_deadline(a, evhttp_request_get_connection(req));
    if (bg_admin__refuse_body(req))
        return;
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        bg_admin__reply(req, 405, "Method Not Allowed", "application/json",
                        "{\"error\":\"method not allowed\"}\n");
        return;
    }
    size_t plen = strcspn(uri, "?");
    if (plen == 8 && memcmp(uri, "/healthz", 8) == 0) {
        bg_admin__probe(req, a->health, a->arg, "ok", "stalled");
    } else if (plen == 7 && memcmp(uri, "/readyz", 7) == 0) {
        bg_admin__probe(req, a->ready, a->arg, "ready", "not_ready");
    } else if (plen == 8 && memcmp(uri, "/metrics", 8) == 0) {
        char *text = bg_admin__metrics_text(a);
        if (!text) {
            evhttp_send_error(req, 500, NULL);
            return;
        }
        bg_admin__reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", text);
        free(text);
    } else {
        bg_admin__reply(req, 404, "Not Found", "application/json", "{\"error\":\"not found\"}\n");
    }
}

bg_admin_t *bg_admin_start(struct event_base *base, const bg_addr_t *addr, bg_admin_ready_fn ready,
                           bg_admin_ready_fn health, bg_admin_metrics_fn metrics, void *arg,
                           char *err, size_t errlen)
{
    bg_admin_t *a = calloc(1, sizeof *a);
    if (!a || !(a->http = evhttp_new(base))) {
        snprintf(err, errlen, "out of memory");
        free(a);
        return NULL;
    }
    a->ready = ready, a->health = health, a->metrics = metrics, a->arg = arg;
    LIST_INIT(&a->conns);
    evhttp_set_gencb(a->http, bg_admin__route, a);
    evhttp_set_bevcb(a->http, bg_admin__new_bev, a);
    /* Every method libevent knows reaches the router, which serves GET and
     * HEAD and answers the others 405 with Allow (libevent alone would say
     * 501 without it, after reading the body); an unknown method still
     * gets libevent's 501. No route takes a body: a request that announces
     * one is refused (413, or 400 for a repeated Content-Length) before any
     * of it is read, except a chunked one, whose body libevent reads (for
     * every method but HEAD and TRACE) before the router sees it: then the
     * 413 comes once the chunks do, or the request deadline closes it. */
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_max_headers_size(a->http, BG_ADMIN_MAX_HEADERS);
    evhttp_set_max_body_size(a->http, 0);
    /* Inactivity, reading or writing; the request deadline is shorter. */
    evhttp_set_timeout(a->http, 30);
    struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(a->http, addr->host,
                                                                       addr->port);
    if (!bound || bg_admin__guard(a, bound) != 0) {
        if (bound)
            snprintf(err, errlen, "out of memory");
        else
            snprintf(err, errlen, "cannot listen on %s:%u: %s", addr->host, addr->port,
                     evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        evhttp_free(a->http);
        free(a);
        return NULL;
    }
    if (!bg_config_host_is_loopback(addr->host, strlen(addr->host)))
        bg_log_warn("admin",
                    "admin listener on %s:%u is not loopback: /metrics and /readyz answer "
                    "anyone who reaches it, without authentication; keep the port on a private "
                    "network",
                    addr->host, addr->port);
    return a;
}

void bg_admin_stop(bg_admin_t *a)
{
    if (!a)
        return;
    if (bg_admin__current == a)
        bg_admin__current = NULL;
    bg_util_accept_guard_clear(&a->guard);
    evhttp_free(a->http);
    bg_admin__release_all(a);
    free(a);
}
