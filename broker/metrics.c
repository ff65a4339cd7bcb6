#include "broker/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "broker/log.h"
#include "broker/version.h"

static const char *const bg_metrics__proto[] = {"kafka", "amqp", "http"};

const char *bg_proto_name(bg_proto_t p) { return p < BG_PROTO__COUNT ? bg_metrics__proto[p] : "?"; }

void bg_metrics_appendf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    if (!*buf)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (*len + (size_t)n < *cap) {
            *len += (size_t)n;
            return;
        }
        char *nb = realloc(*buf, *cap * 2 + (size_t)n);
        if (!nb) {
            free(*buf);
            *buf = NULL;
            return;
        }
        *buf = nb;
        *cap = *cap * 2 + (size_t)n;
    }
}

static uint64_t bg_metrics__sum(bg_worker_metrics_t *const *w, size_t n, size_t off)
{
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += atomic_load_explicit((_Atomic uint64_t *)((char *)w[i] + off), memory_order_relaxed);
    return s;
}

#define BG_METRICS__OFF(field) offsetof(bg_worker_metrics_t, field)

static void bg_metrics__per_proto(char **b, size_t *l, size_t *c, bg_worker_metrics_t *const *w,
                                  size_t n, const char *name, const char *type, const char *help,
                                  size_t base_off)
{
    bg_metrics_appendf(b, l, c, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    for (int p = 0; p < BG_PROTO__COUNT; p++)
        bg_metrics_appendf(b, l, c, "%s{protocol=\"%s\"} %llu\n", name, bg_metrics__proto[p],
                           (unsigned long long)bg_metrics__sum(w, n, base_off + p * sizeof(uint64_t)));
}

char *bg_metrics_render(const bg_process_metrics_t *pm, bg_worker_metrics_t *const *w,
                        size_t n, bg_metrics_extra_fn extra, void *extra_arg)
{
    size_t cap = 8192, len = 0;
    char *b = malloc(cap);
    if (!b)
        return NULL;
    b[0] = '\0';
    bg_metrics_appendf(&b, &len, &cap,
                       "# HELP busgate_build_info Build information.\n"
                       "# TYPE busgate_build_info gauge\n"
                       "busgate_build_info{version=\"%s\"} 1\n"
                       "# HELP busgate_start_time_seconds Process start time.\n"
                       "# TYPE busgate_start_time_seconds gauge\n"
                       "busgate_start_time_seconds %lld\n"
                       "# HELP busgate_reloads_total Configuration reloads by result.\n"
                       "# TYPE busgate_reloads_total counter\n"
                       "busgate_reloads_total{result=\"ok\"} %llu\n"
                       "busgate_reloads_total{result=\"failed\"} %llu\n"
                       "# HELP busgate_policy_rules Rules in the active policy.\n"
                       "# TYPE busgate_policy_rules gauge\n"
                       "busgate_policy_rules %llu\n"
                       "# HELP busgate_policy_generation Generation of the active policy snapshot.\n"
                       "# TYPE busgate_policy_generation gauge\n"
                       "busgate_policy_generation %llu\n"
                       "# HELP busgate_log_lines_dropped_total Log lines dropped because the "
                       "log queue was full (standard error not taking them).\n"
                       "# TYPE busgate_log_lines_dropped_total counter\n"
                       "busgate_log_lines_dropped_total %llu\n"
                       "# HELP busgate_log_queue_bytes Bytes of log lines waiting to be "
                       "written to standard error.\n"
                       "# TYPE busgate_log_queue_bytes gauge\n"
                       "busgate_log_queue_bytes %zu\n",
                       BG_VERSION, (long long)pm->start_time,
                       (unsigned long long)pm->reloads_ok, (unsigned long long)pm->reloads_failed,
                       (unsigned long long)pm->policy_rules,
                       (unsigned long long)pm->policy_generation,
                       (unsigned long long)bg_log_dropped_total(), bg_log_queued_bytes());
    bg_metrics__per_proto(&b, &len, &cap, w, n, "busgate_connections_open", "gauge",
                          "Client connections currently open.", BG_METRICS__OFF(conn_open));
    bg_metrics__per_proto(&b, &len, &cap, w, n, "busgate_connections_total", "counter",
                          "Client connections accepted.", BG_METRICS__OFF(conn_total));
    bg_metrics__per_proto(&b, &len, &cap, w, n, "busgate_auth_success_total", "counter",
                          "Successful authentications.", BG_METRICS__OFF(auth_ok));
    bg_metrics__per_proto(&b, &len, &cap, w, n, "busgate_auth_failures_total", "counter",
                          "Rejected authentications.", BG_METRICS__OFF(auth_failed));
    bg_metrics__per_proto(&b, &len, &cap, w, n, "busgate_requests_total", "counter",
                          "Requests received from clients.", BG_METRICS__OFF(requests));
    bg_metrics__per_proto(&b, &len, &cap, w, n, "busgate_protocol_errors_total", "counter",
                          "Connections closed for malformed input.", BG_METRICS__OFF(protocol_errors));
    bg_metrics__per_proto(&b, &len, &cap, w, n, "busgate_bytes_in_total", "counter",
                          "Bytes received from clients.", BG_METRICS__OFF(bytes_in));
    bg_metrics__per_proto(&b, &len, &cap, w, n, "busgate_bytes_out_total", "counter",
                          "Bytes sent to clients.", BG_METRICS__OFF(bytes_out));
    bg_metrics__per_proto(&b, &len, &cap, w, n, "busgate_bytes_spliced_total", "counter",
                          "Bytes sent to clients socket to socket in the kernel (splice), "
                          "part of busgate_bytes_out_total.",
                          BG_METRICS__OFF(bytes_spliced));
    bg_metrics_appendf(&b, &len, &cap,
                       "# HELP busgate_decisions_total Policy decisions by applied effect.\n"
                       "# TYPE busgate_decisions_total counter\n");
    for (int p = 0; p < BG_PROTO__COUNT; p++)
        for (int e = 0; e < 3; e++)
            bg_metrics_appendf(&b, &len, &cap,
                               "busgate_decisions_total{protocol=\"%s\",effect=\"%s\"} %llu\n",
                               bg_metrics__proto[p], bg_effect_name((bg_effect_t)e),
                               (unsigned long long)bg_metrics__sum(
                                   w, n,
                                   BG_METRICS__OFF(decisions) + (p * 3 + e) * sizeof(uint64_t)));
    bg_metrics__per_proto(&b, &len, &cap, w, n, "busgate_decisions_audit_only_total", "counter",
                          "Decisions allowed only because of audit mode.",
                          BG_METRICS__OFF(decisions_audit_only));
    if (extra)
        extra(extra_arg, &b, &len, &cap);
    return b;
}
