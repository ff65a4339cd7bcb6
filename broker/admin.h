/* Admin HTTP listener (libevent evhttp on the main thread's event_base):
 * GET (and HEAD) /healthz, /readyz, /metrics; other methods 405, request
 * bodies refused unread. At most 64 connections, 10 s for each request and
 * 32 KiB read ahead (docs/operations.md). Later: /v1/approvals. */
#ifndef BG_ADMIN_H
#define BG_ADMIN_H

#include "broker/config.h"

struct event_base;
typedef struct bg_admin_s bg_admin_t;

/* Answers the readiness probe (or the liveness probe): 1 ready (alive);
 * else 0 with a short reason. Main thread. */
typedef int (*bg_admin_ready_fn)(void *arg, const char **reason);
/* Renders /metrics: malloc'd text the admin frees. */
typedef char *(*bg_admin_metrics_fn)(void *arg);

/* Binds addr on base. /readyz asks ready, /healthz asks health (200
 * {"status":"ok"}, or 503 {"status":"stalled","reason":...}). Returns NULL
 * with err filled when the bind fails. */
bg_admin_t *bg_admin_start(struct event_base *base, const bg_addr_t *addr, bg_admin_ready_fn ready,
                           bg_admin_ready_fn health, bg_admin_metrics_fn metrics, void *arg,
                           char *err, size_t errlen);
void bg_admin_stop(bg_admin_t *a);

#endif
