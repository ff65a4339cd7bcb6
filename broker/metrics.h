/* busgate metrics: per-worker counters (no sharing on the data path),
 * summed when /metrics is scraped. Prometheus text exposition format. */
#ifndef BG_METRICS_H
#define BG_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/policy.h"

typedef enum { BG_PROTO_KAFKA = 0, BG_PROTO_AMQP, BG_PROTO_HTTP, BG_PROTO__COUNT } bg_proto_t;

const char *bg_proto_name(bg_proto_t p);

/* Written only by the owning worker thread (relaxed atomics so a scrape from
 * another thread reads whole values); read by the admin thread. */
typedef struct bg_worker_metrics_s {
    _Atomic uint64_t conn_open[BG_PROTO__COUNT];
    _Atomic uint64_t conn_total[BG_PROTO__COUNT];
    _Atomic uint64_t auth_ok[BG_PROTO__COUNT];
    _Atomic uint64_t auth_failed[BG_PROTO__COUNT];
    _Atomic uint64_t decisions[BG_PROTO__COUNT][3]; /* by bg_effect_t, as applied */
    _Atomic uint64_t decisions_audit_only[BG_PROTO__COUNT]; /* audit mode would-not-allow */
    _Atomic uint64_t requests[BG_PROTO__COUNT];
    _Atomic uint64_t protocol_errors[BG_PROTO__COUNT];
    _Atomic uint64_t bytes_in[BG_PROTO__COUNT];
    _Atomic uint64_t bytes_out[BG_PROTO__COUNT];
    _Atomic uint64_t bytes_spliced[BG_PROTO__COUNT]; /* of bytes_out: moved in the kernel */
} bg_worker_metrics_t;

static inline void bg_metric_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}
static inline void bg_metric_sub(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) - n,
                          memory_order_relaxed);
}

/* Process-wide counters, updated outside the data path (main thread). */
typedef struct bg_process_metrics_s {
    _Atomic uint64_t reloads_ok;
    _Atomic uint64_t reloads_failed;
    _Atomic uint64_t policy_rules;
    _Atomic uint64_t policy_generation;
    _Atomic int64_t start_time;
} bg_process_metrics_t;

/* Extra lines appended by other modules (audit, adapters) at scrape time. */
typedef void (*bg_metrics_extra_fn)(void *arg, char **buf, size_t *len, size_t *cap);

/* Renders the exposition text for the given workers into a malloc'd NUL-
 * terminated buffer (caller frees); NULL on allocation failure. */
char *bg_metrics_render(const bg_process_metrics_t *pm, bg_worker_metrics_t *const *workers,
                        size_t nworkers, bg_metrics_extra_fn extra, void *extra_arg);

/* printf-append into a growable buffer (for bg_metrics_extra_fn implementers). */
void bg_metrics_appendf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
