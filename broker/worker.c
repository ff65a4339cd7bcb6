#include "broker/worker.h"

#include <event2/dns.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker/log.h"
#include "broker/util_net.h"

static size_t bg_worker__sessions(bg_worker_t *w)
{
    size_t n = 0;
    for (size_t i = 0; i < w->nadapters; i++)
        if (w->state[i] && w->adapters[i]->worker_sessions)
            n += w->adapters[i]->worker_sessions(w->state[i]);
    return n;
}

static void bg_worker__drain_tick(evutil_socket_t fd, short what, void *arg)
{
    bg_worker_t *w = arg;
    size_t open = bg_worker__sessions(w);
    if (open == 0 || bg_util_now_ms() >= atomic_load(&w->drain_deadline_ms)) {
        if (open)
            bg_log_warn("worker", "worker %d: drain deadline passed with %zu session(s) open",
                        w->index, open);
        event_base_loopbreak(w->base);
    }
}

static void bg_worker__tick(evutil_socket_t fd, short what, void *arg)
{
    bg_worker_t *w = arg;
    atomic_store(&w->tick_ms, bg_util_now_ms());
}

/* The first request stops accepting and asks the sessions to finish; a
 * later one (an earlier deadline) only checks the deadline again at once. */
static void bg_worker__drain_cb(evutil_socket_t fd, short what, void *arg)
{
    bg_worker_t *w = arg;
    if (!w->drain_timer) {
        for (size_t i = 0; i < w->nadapters; i++)
            if (w->state[i] && w->adapters[i]->worker_drain)
                w->adapters[i]->worker_drain(w->state[i]);
        struct timeval tv = {0, 50 * 1000};
        w->drain_timer = event_new(w->base, -1, EV_PERSIST, bg_worker__drain_tick, w);
        if (!w->drain_timer) {
            event_base_loopbreak(w->base);
            return;
        }
        event_add(w->drain_timer, &tv);
    }
    bg_worker__drain_tick(-1, 0, w);
}

static int bg_worker__open(bg_worker_t *w)
{
    for (size_t i = 0; i < w->nadapters; i++) {
        char err[200] = "";
        if (w->adapters[i]->worker_start(w, w->globals[i], &w->state[i], err, sizeof err) != 0) {
            snprintf(w->start_err, sizeof w->start_err, "%s: %s", w->adapters[i]->name, err);
            return -1;
        }
    }
    return 0;
}

static void bg_worker__close(bg_worker_t *w)
{
    for (size_t i = 0; i < w->nadapters; i++)
        if (w->state[i] && w->adapters[i]->worker_stop) {
            w->adapters[i]->worker_stop(w->state[i]);
            w->state[i] = NULL;
        }
}

/* Frees the resolver after the sessions. A session freed while its upstream
 * name was being looked up leaves the lookup running (libevent 2.1 does not
 * cancel it on bufferevent_free), and the lookup holds a reference to the
 * bufferevent. Failing the requests (fail_requests=1) hands each lookup
 * DNS_ERR_SHUTDOWN through a deferred callback, which drops that reference;
 * the non-blocking loop round runs those callbacks. With fail_requests=0
 * the lookups and their bufferevents would be dropped unfreed. The
 * bufferevents' own callbacks were cleared when they were freed, so no
 * session code runs. The drain timer is stopped first so that it cannot
 * break that round. */
static void bg_worker__free_dns(bg_worker_t *w)
{
    if (!w->dns)
        return;
    if (w->drain_timer)
        event_del(w->drain_timer);
    evdns_base_free(w->dns, 1);
    w->dns = NULL;
    event_base_loop(w->base, EVLOOP_NONBLOCK);
}

static void bg_worker__signal_started(bg_worker_t *w, int rc)
{
    pthread_mutex_lock(w->start_mu);
    w->start_rc = rc;
    (*w->started)++;
    pthread_cond_broadcast(w->start_cv);
    pthread_mutex_unlock(w->start_mu);
}

static void *bg_worker__main(void *arg)
{
    bg_worker_t *w = arg;
    int rc = bg_worker__open(w);
    bg_worker__signal_started(w, rc);
    if (rc == 0)
        event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
    /* After the loop: free sessions and listeners on the owning thread. */
    bg_worker__close(w);
    bg_worker__free_dns(w);
    atomic_store(&w->done, 1);
    return NULL;
}

static int bg_worker__init(bg_worker_t *w, int idx)
{
    w->index = idx;
    /* The epoll changelist coalesces the add/delete of a socket's write
     * interest within one loop round: a proxy enables and disables writing
     * for nearly every frame it relays, and each change is otherwise an
     * epoll_ctl system call. (busgate never dup()s a socket, the one case
     * where the changelist misbehaves.) */
    struct event_config *ec = event_config_new();
    if (!ec)
        return -1;
    event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    w->base = event_base_new_with_config(ec);
    event_config_free(ec);
    if (!w->base)
        return -1;
    /* Upstream names are resolved on the loop (a blocking getaddrinfo()
     * would stall every session of this worker while a resolver is slow).
     * INITIALIZE_NAMESERVERS reads /etc/resolv.conf (nameservers, search,
     * options) and /etc/hosts once, now; numeric addresses never reach a
     * nameserver. Without /etc/resolv.conf, or with none listed in it,
     * libevent asks 127.0.0.1, as the C library does. If the resolver
     * cannot be created, busgate still runs with blocking lookups. */
    w->dns = evdns_base_new(w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (!w->dns)
        bg_log_warn("worker", "worker %d: cannot create the DNS resolver; upstream names are "
                              "resolved with blocking lookups",
                    idx);
    w->drain_ev = event_new(w->base, -1, 0, bg_worker__drain_cb, w);
    atomic_store(&w->tick_ms, bg_util_now_ms());
    struct timeval tv = {BG_WORKER_TICK_MS / 1000, (BG_WORKER_TICK_MS % 1000) * 1000};
    w->tick_ev = event_new(w->base, -1, EV_PERSIST, bg_worker__tick, w);
    if (!w->drain_ev || !w->tick_ev || event_add(w->tick_ev, &tv) != 0)
        return -1;
    return 0;
}

static void bg_worker__free(bg_worker_t *w)
{
    if (w->dns) /* a worker whose thread never ran: no lookups pending */
        evdns_base_free(w->dns, 0);
    if (w->drain_timer)
        event_free(w->drain_timer);
    if (w->drain_ev)
        event_free(w->drain_ev);
    if (w->tick_ev)
        event_free(w->tick_ev);
    if (w->base)
        event_base_free(w->base);
}

bg_worker_t *bg_workers_start(int n, const bg_adapter_t *const *adapters, void *const *globals,
                              size_t nadapters, struct bg_audit_s *audit,
                              struct bg_limits_s *limits, const char *instance, char *err,
                              size_t errlen)
{
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    int started = 0, launched = 0, failed = 0;
    bg_worker_t *ws = calloc((size_t)n, sizeof *ws);
    if (!ws) {
        snprintf(err, errlen, "out of memory");
        free(ws);
        return NULL;
    }
    for (int i = 0; i < n && !failed; i++) {
        bg_worker_t *w = &ws[i];
        w->adapters = adapters, w->globals = globals, w->nadapters = nadapters;
        w->audit = audit, w->limits = limits, w->instance = instance;
        w->start_mu = &mu, w->start_cv = &cv, w->started = &started;
        if (bg_worker__init(w, i) != 0 || pthread_create(&w->thread, NULL, bg_worker__main, w)) {
            snprintf(err, errlen, "cannot start worker %d", i);
            failed = 1;
            break;
        }
        launched++;
    }
    pthread_mutex_lock(&mu);
    while (started < launched)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < launched && !failed; i++)
        if (ws[i].start_rc != 0) {
            snprintf(err, errlen, "%s", ws[i].start_err);
            failed = 1;
        }
    if (!failed)
        return ws;
    /* Not event_base_loopbreak: a worker that has not entered its loop yet
     * would clear the break when it does and never exit. An active drain
     * event runs whenever the loop starts. */
    bg_workers_drain(ws, launched, 0);
    for (int i = 0; i < launched; i++)
        pthread_join(ws[i].thread, NULL);
    for (int i = 0; i < n; i++)
        bg_worker__free(&ws[i]);
    free(ws);
    return NULL;
}

void bg_workers_drain(bg_worker_t *ws, int n, int grace_ms)
{
    long long deadline = bg_util_now_ms() + grace_ms;
    for (int i = 0; i < n; i++) {
        long long cur = atomic_load(&ws[i].drain_deadline_ms);
        if (cur == 0 || deadline < cur) /* 0: no drain asked for yet */
            atomic_store(&ws[i].drain_deadline_ms, deadline);
        event_active(ws[i].drain_ev, 0, 0);
    }
}

int bg_workers_done(bg_worker_t *ws, int n)
{
    for (int i = 0; i < n; i++)
        if (!atomic_load(&ws[i].done))
            return 0;
    return 1;
}

int bg_workers_stalled(bg_worker_t *ws, int n, long long now_ms, long long max_ms)
{
    for (int i = 0; i < n; i++)
        if (!atomic_load(&ws[i].done) && now_ms - atomic_load(&ws[i].tick_ms) > max_ms)
            return i;
    return -1;
}

void bg_workers_join(bg_worker_t *ws, int n)
{
    for (int i = 0; i < n; i++)
        pthread_join(ws[i].thread, NULL);
    for (int i = 0; i < n; i++)
        bg_worker__free(&ws[i]);
    free(ws);
}
