/* Worker threads: each owns one libevent event_base; a client connection and
 * its upstream connection(s) live on one worker, so the data path takes no
 * lock. Listeners are opened per worker with SO_REUSEPORT and the kernel
 * spreads connections. */
#ifndef BG_WORKER_H
#define BG_WORKER_H

#include <pthread.h>
#include <stdatomic.h>

#include "broker/adapter.h"
#include "broker/metrics.h"

#define BG_MAX_ADAPTERS 4

struct event_base;
struct event;
struct evdns_base;
struct bg_audit_s;
struct bg_limits_s;

struct bg_worker_s {
    int index;
    struct event_base *base;
    /* The worker's asynchronous resolver for upstream names (nameservers
     * from /etc/resolv.conf, /etc/hosts), on base. NULL when it could not be
     * created: then libevent resolves with a blocking getaddrinfo() in the
     * loop. Pass it to every bufferevent_socket_connect_hostname. */
    struct evdns_base *dns;
    pthread_t thread;
    bg_worker_metrics_t metrics;
    struct bg_audit_s *audit; /* process-wide, thread-safe emit; NULL when audit is off */
    const char *instance;     /* instance name for audit/logs */
    /* Process-wide client connection limits: an adapter admits each
     * accepted client through them (broker/limits.h). NULL: no limits. */
    struct bg_limits_s *limits;
    /* private to worker.c */
    const bg_adapter_t *const *adapters;
    void *const *globals;
    size_t nadapters;
    void *state[BG_MAX_ADAPTERS];
    struct event *drain_ev;
    struct event *drain_timer;
    _Atomic long long drain_deadline_ms; /* monotonic; 0 until a drain is asked for */
    _Atomic int done; /* set by the worker thread when its loop ended */
    /* Monotonic ms of the last liveness tick: a timer on the worker's loop
     * sets it every BG_WORKER_TICK_MS, so a loop held up (a call that
     * blocks) shows in /healthz (bg_workers_stalled). */
    _Atomic long long tick_ms;
    struct event *tick_ev;
    int start_rc;
    char start_err[256];
    pthread_mutex_t *start_mu;
    pthread_cond_t *start_cv;
    int *started;
};

/* Starts n workers running the given adapters, admitting clients through
 * limits (may be NULL; must outlive the workers). Blocks until every worker has
 * opened its listeners. Returns the array, or NULL with err filled (then no
 * worker is left running). libevent's threading must be on already
 * (evthread_use_pthreads before any event_base: bg_runtime_run does it
 * first): other threads wake a worker's base. */
bg_worker_t *bg_workers_start(int n, const bg_adapter_t *const *adapters, void *const *globals,
                              size_t nadapters, struct bg_audit_s *audit,
                              struct bg_limits_s *limits, const char *instance, char *err,
                              size_t errlen);

/* Asks every worker to drain: stop accepting, let sessions finish within
 * grace_ms, then end its loop (closing what is still open). Asked again,
 * an earlier deadline replaces the running one (grace 0: stop now); a
 * later one is ignored. Returns immediately; main thread. */
void bg_workers_drain(bg_worker_t *w, int n, int grace_ms);

/* 1 when every worker's loop has ended (after a drain). Any thread. */
int bg_workers_done(bg_worker_t *w, int n);

#define BG_WORKER_TICK_MS 1000

/* The index of the first worker whose loop has not ticked for more than
 * max_ms at now_ms (monotonic), or -1 when every running loop has; a
 * worker whose loop ended (after a drain) is not counted. Any thread. */
int bg_workers_stalled(bg_worker_t *w, int n, long long now_ms, long long max_ms);

/* Waits for all workers to end and frees them. */
void bg_workers_join(bg_worker_t *w, int n);

#endif
