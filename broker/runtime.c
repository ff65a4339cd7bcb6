#include "broker/runtime.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "audit/audit.h"
#include "broker/admin.h"
#include "broker/config_kafka_client.h"
#include "broker/limits.h"
#include "broker/log.h"
#include "broker/snapshot.h"
#include "broker/util_net.h"
#include "broker/worker.h"

#define BG_RUNTIME_DRAIN_GRACE_MS 10000
#define BG_RUNTIME_WATCH_MS 1000
/* How long after a reload loaded a new file its own in-place changes
 * are still taken as the rest of its writing (`cp` over a moved-away file). */
#define BG_RUNTIME_NEW_FILE_MS 10000
/* How long a reload waits for the first fetch of a new jwks_url, and how
 * often the main loop looks whether it is done meanwhile. */
#define BG_RUNTIME_RELOAD_WAIT_MS 5000
#define BG_RUNTIME_RELOAD_POLL_MS 50
/* /healthz turns 503 when a worker's loop has not ticked for this long. */
#define BG_RUNTIME_STALL_MS 10000
/* How long the log queue may take to flush at exit. */
#define BG_RUNTIME_LOG_FLUSH_MS 2000

typedef struct bg_runtime_s {
    const char *path;
    const bg_adapter_t *active[BG_MAX_ADAPTERS];
    void *globals[BG_MAX_ADAPTERS];
    size_t nactive;
    bg_worker_t *workers;
    int nworkers;
    struct event_base *base;
    struct event *sig_term, *sig_int, *sig_hup, *watch, *stop_poll, *pending_poll;
    bg_admin_t *admin;
    bg_audit_t *audit;
    bg_process_metrics_t pm;
    bg_limits_t limits; /* client connection limits, for the whole run */
    int limits_on;      /* limits was set up */
    int draining; /* 1 draining; 2 and more: asked again, stopping now */
    struct stat seen;    /* the config file as last loaded */
    int seen_fd;         /* it, held open: its inode number is never reused meanwhile */
    int64_t new_file_ms; /* when a reload loaded a new file (inode); 0: not lately */
    struct stat changed; /* as last seen by the watcher when it differed from seen */
    struct stat in_place; /* the last in-place change the watcher warned about */
    const bg_config_t *boot_cfg; /* the start-up configuration, held for the whole run */
    char ready_reason[320];      /* /readyz's reason when it is composed */
    int identity_was_ready;      /* every issuer has had keys once */
    char health_reason[128];     /* /healthz's reason when it is composed */
    /* A reload built and waiting (on the loop, by pending_poll) for the
     * first fetch of its new JWKS URLs before it is installed. */
    bg_snapshot_t *pending;
    int64_t pending_until_ms;
    char pending_why[32];
} bg_runtime_t;

static void bg_runtime__log_errors(const bg_config_errors_t *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        bg_log_error("config", "%s", errs->msgs[i]);
}

/* Notes the file about to be loaded, and holds it open: a file that
 * replaces it then always has another inode number (ext4 hands a freed
 * number straight out again, so two `sed -i` in a row could otherwise look
 * like one change in place). One that cannot be opened (its reload fails)
 * is noted all the same, so the watcher does not retry it every tick.
 * reload: not the start-up load (a file loaded as new by a reload may still
 * change in place for BG_RUNTIME_NEW_FILE_MS: the rest of its writing). */
static void bg_runtime__remember_file(bg_runtime_t *rt, int reload)
{
    struct stat old = rt->seen;
    int fd = open(rt->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 || fstat(fd, &rt->seen) != 0) {
        if (fd >= 0)
            close(fd);
        fd = -1;
        if (stat(rt->path, &rt->seen) != 0)
            memset(&rt->seen, 0, sizeof rt->seen);
    }
    if (rt->seen_fd >= 0)
        close(rt->seen_fd);
    rt->seen_fd = fd;
    int fresh = rt->seen.st_ino != old.st_ino || rt->seen.st_dev != old.st_dev;
    if (fresh)
        rt->new_file_ms = reload && fd >= 0 ? bg_util_now_ms() : 0;
}

/* Loads the file into a new snapshot; NULL (after logging why) when invalid. */
static bg_snapshot_t *bg_runtime__load(bg_runtime_t *rt)
{
    bg_config_errors_t errs = {0};
    bg_config_t *cfg = bg_config_load(rt->path, &errs);
    if (!cfg) {
        bg_runtime__log_errors(&errs);
        bg_log_error("config", "%s: %zu error(s)", rt->path, errs.n);
        bg_config_errors_clear(&errs);
        return NULL;
    }
    bg_config_errors_clear(&errs);
    char err[512];
    bg_snapshot_t *s = bg_snapshot_build(cfg, err, sizeof err);
    if (!s)
        bg_log_error("config", "%s: %s", rt->path, err);
    return s;
}

/* Settings that only a restart applies: say so rather than half-apply.
 * running is the start-up configuration those settings come from. */
static void bg_runtime__warn_restart(const bg_config_t *running, const bg_config_t *nw)
{
    for (size_t i = 0; i < BG_CONFIG_RESTART_SECTIONS; i++)
        if (running->restart_hash[i] != nw->restart_hash[i])
            bg_log_warn("config", "%s: changed, but only a restart applies it; the running "
                                  "settings stay until then",
                        bg_config_restart_section(i));
}

static void bg_runtime__publish(bg_runtime_t *rt, bg_snapshot_t *s)
{
    rt->pm.policy_rules = s->config->policy.enabled ? s->config->policy.spec.nrules : 0;
    rt->pm.policy_generation = s->generation;
    int lvl = bg_log_level_parse(s->config->log_level ? s->config->log_level : "info");
    if (lvl >= 0)
        bg_log_set_level((bg_log_level_t)lvl);
    bg_snapshot_install(s);
}

/* docs/audit.md: every reload, successful or not, is an audit event. */
static void bg_runtime__audit_reload(bg_runtime_t *rt, const char *detail)
{
    if (!rt->audit)
        return;
    bg_audit_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = BG_AUDIT_EV_RELOAD;
    ev.detail = detail;
    if (bg_audit_emit_admitted(rt->audit, &ev) < 0) /* the reload itself stands */
        bg_log_warn("config", "reload audit event not queued");
}

/* Installs the reload s (why: what asked for it), logs and audits it. */
static void bg_runtime__reload_finish(bg_runtime_t *rt, bg_snapshot_t *s, const char *why)
{
    char detail[160];
    if (bg_identity_wait_ready(s->identity, 0) != 0) /* not waiting: the fetches are done */
        bg_log_warn("identity", "reload: some JWKS URLs have no keys yet; tokens from them fail "
                                "until a fetch succeeds");
    bg_snapshot_t *old = bg_snapshot_acquire(); /* had every issuer keys before this reload? */
    if (old && !bg_identity_issuer_without_keys(old->identity))
        rt->identity_was_ready = 1;
    bg_snapshot_release(old);
    bg_runtime__publish(rt, s);
    rt->pm.reloads_ok++;
    bg_log_info("config", "reloaded %s (%s): generation %llu", rt->path, why,
                (unsigned long long)s->generation);
    snprintf(detail, sizeof detail, "reloaded (%s): generation %llu", why,
             (unsigned long long)s->generation);
    bg_runtime__audit_reload(rt, detail);
}

/* The waiting reload is installed once its new JWKS URLs have had their
 * first fetch, or after BG_RUNTIME_RELOAD_WAIT_MS without. */
static void bg_runtime__on_pending_poll(evutil_socket_t fd, short what, void *arg)
{
    bg_runtime_t *rt = arg;
    if (!rt->pending || (bg_identity_fetches_pending(rt->pending->identity) > 0 &&
                         bg_util_now_ms() < rt->pending_until_ms))
        return;
    event_del(rt->pending_poll);
    bg_snapshot_t *s = rt->pending;
    rt->pending = NULL;
    bg_runtime__reload_finish(rt, s, rt->pending_why);
}

static void bg_runtime__reload(bg_runtime_t *rt, const char *why)
{
    char detail[160];
    bg_runtime__remember_file(rt, 1);
    bg_snapshot_t *s = bg_runtime__load(rt);
    if (!s) {
        rt->pm.reloads_failed++;
        bg_log_error("config", "reload (%s) failed: keeping the running configuration", why);
        snprintf(detail, sizeof detail, "reload (%s) failed: keeping the running configuration",
                 why);
        bg_runtime__audit_reload(rt, detail);
        return;
    }
    if (rt->boot_cfg)
        bg_runtime__warn_restart(rt->boot_cfg, s->config);
    if (rt->pending) { /* the file changed again: the newer one is what counts */
        bg_log_info("config", "reload (%s) replaces the one (%s) still waiting for JWKS URLs", why,
                    rt->pending_why);
        snprintf(detail, sizeof detail, "reload (%s) not applied: replaced by a later one",
                 rt->pending_why);
        bg_runtime__audit_reload(rt, detail);
        bg_snapshot_release(rt->pending);
        rt->pending = NULL;
        event_del(rt->pending_poll);
    }
    /* Unchanged jwks_url issuers keep their keys; a new one gets its first
     * fetch (bounded) before it replaces anything, as at start-up. The
     * wait is on the loop's timer, so the admin listener and signals are
     * served meanwhile. */
    if (bg_identity_fetches_pending(s->identity) == 0) {
        bg_runtime__reload_finish(rt, s, why);
        return;
    }
    struct timeval tv = {0, BG_RUNTIME_RELOAD_POLL_MS * 1000};
    if (event_add(rt->pending_poll, &tv) != 0) { /* cannot wait on the loop: install now */
        bg_runtime__reload_finish(rt, s, why);
        return;
    }
    rt->pending = s;
    rt->pending_until_ms = bg_util_now_ms() + BG_RUNTIME_RELOAD_WAIT_MS;
    snprintf(rt->pending_why, sizeof rt->pending_why, "%s", why);
    bg_log_info("config", "reload (%s): waiting up to %d s for the first fetch of new JWKS URLs",
                why, BG_RUNTIME_RELOAD_WAIT_MS / 1000);
}

static void bg_runtime__on_hup(evutil_socket_t sig, short what, void *arg)
{
    bg_runtime__reload(arg, "SIGHUP");
}

static int bg_runtime__same_file(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Reloads when the file was replaced (a new inode: `mv`, a ConfigMap's
 * symlink swap, most editors), once that has held still for one tick. A
 * change in place (`cat > file`) is not applied: nothing tells a finished
 * write from a writer that paused, and a half-written file can be valid YAML
 * with its later deny rules missing. It is logged once; SIGHUP applies it.
 * Only a file a reload loaded as new within BG_RUNTIME_NEW_FILE_MS may
 * still change in place: that is the rest of its own writing. */
static void bg_runtime__on_watch(evutil_socket_t fd, short what, void *arg)
{
    bg_runtime_t *rt = arg;
    struct stat st;
    if (stat(rt->path, &st) != 0 || bg_runtime__same_file(&st, &rt->seen))
        return;
    if (st.st_ino == rt->seen.st_ino && st.st_dev == rt->seen.st_dev &&
        !(rt->new_file_ms && bg_util_now_ms() - rt->new_file_ms <= BG_RUNTIME_NEW_FILE_MS)) {
        if (!bg_runtime__same_file(&st, &rt->in_place)) {
            rt->in_place = st;
            bg_log_warn("config",
                        "%s changed in place: not reloaded by itself (it may be half written); "
                        "send SIGHUP to apply it, or replace the file (mv) next time",
                        rt->path);
        }
        return;
    }
    if (!bg_runtime__same_file(&st, &rt->changed)) {
        rt->changed = st;
        return;
    }
    bg_runtime__reload(rt, "file changed");
}

static void bg_runtime__on_stop_poll(evutil_socket_t fd, short what, void *arg)
{
    bg_runtime_t *rt = arg;
    if (bg_workers_done(rt->workers, rt->nworkers))
        event_base_loopbreak(rt->base);
}

/* The first SIGTERM/SIGINT drains; a second one during the drain stops
 * now: sessions still open are closed, the audit pipeline still flushes. */
static void bg_runtime__on_term(evutil_socket_t sig, short what, void *arg)
{
    bg_runtime_t *rt = arg;
    if (rt->draining) {
        if (rt->draining == 1) {
            rt->draining = 2;
            bg_log_warn("runtime", "signal %d again: stopping now, closing open sessions",
                        (int)sig);
            bg_workers_drain(rt->workers, rt->nworkers, 0);
        }
        return;
    }
    rt->draining = 1;
    bg_log_info("runtime", "signal %d: draining (up to %d ms)", (int)sig, BG_RUNTIME_DRAIN_GRACE_MS);
    bg_workers_drain(rt->workers, rt->nworkers, BG_RUNTIME_DRAIN_GRACE_MS);
    struct timeval tv = {0, 20 * 1000};
    rt->stop_poll = event_new(rt->base, -1, EV_PERSIST, bg_runtime__on_stop_poll, rt);
    if (!rt->stop_poll || event_add(rt->stop_poll, &tv) != 0)
        event_base_loopbreak(rt->base);
}

/* Every token from an issuer without keys is refused (its jwks_url has not
 * answered yet): a pod starting up that cannot log those callers in is not
 * ready. Once every issuer has had keys, a reload that adds an unreachable
 * one is logged, not reported here: the same reload reaches every pod, and
 * readiness failing everywhere would take the whole fleet, and the callers
 * of every other issuer, out of rotation. */
static int bg_runtime__identity_ready(bg_runtime_t *rt, const char **reason)
{
    if (rt->identity_was_ready)
        return 1;
    bg_snapshot_t *s = bg_snapshot_acquire();
    const char *iss = s ? bg_identity_issuer_without_keys(s->identity) : NULL;
    if (iss) {
        snprintf(rt->ready_reason, sizeof rt->ready_reason, "identity: no keys for issuer %s",
                 iss);
        *reason = rt->ready_reason;
    }
    bg_snapshot_release(s);
    rt->identity_was_ready = s && iss == NULL;
    return iss == NULL;
}

/* /healthz: every worker's loop has run lately (a worker blocked in a
 * system call would leave its clients unanswered while the process looks
 * alive). */
static int bg_runtime__health(void *arg, const char **reason)
{
    bg_runtime_t *rt = arg;
    int i = bg_workers_stalled(rt->workers, rt->nworkers, bg_util_now_ms(), BG_RUNTIME_STALL_MS);
    if (i < 0)
        return 1;
    snprintf(rt->health_reason, sizeof rt->health_reason,
             "worker %d: its event loop has not run for over %d s", i, BG_RUNTIME_STALL_MS / 1000);
    *reason = rt->health_reason;
    return 0;
}

static int bg_runtime__ready(void *arg, const char **reason)
{
    bg_runtime_t *rt = arg;
    if (rt->draining) {
        *reason = "draining";
        return 0;
    }
    if (rt->audit && !bg_audit_admitting(rt->audit)) {
        *reason = "audit pipeline cannot take events";
        return 0;
    }
    if (!bg_runtime__identity_ready(rt, reason))
        return 0;
    for (size_t i = 0; i < rt->nactive; i++)
        if (rt->active[i]->ready && !rt->active[i]->ready(rt->globals[i])) {
            *reason = rt->active[i]->name;
            return 0;
        }
    return 1;
}

static void bg_runtime__audit_metrics(void *arg, char **b, size_t *l, size_t *c)
{
    bg_audit_stats_t st;
    bg_audit_stats(arg, &st);
    bg_metrics_appendf(b, l, c,
                       "# HELP busgate_audit_events_total Audit events by outcome.\n"
                       "# TYPE busgate_audit_events_total counter\n"
                       "busgate_audit_events_total{outcome=\"emitted\"} %llu\n"
                       "busgate_audit_events_total{outcome=\"delivered\"} %llu\n"
                       "busgate_audit_events_total{outcome=\"spooled\"} %llu\n"
                       "busgate_audit_events_total{outcome=\"drained\"} %llu\n"
                       "busgate_audit_events_total{outcome=\"dropped\"} %llu\n"
                       "busgate_audit_events_total{outcome=\"refused\"} %llu\n"
                       "busgate_audit_events_total{outcome=\"rejected\"} %llu\n"
                       "# HELP busgate_audit_events_truncated_total Audit events cut to the "
                       "resources budget.\n"
                       "# TYPE busgate_audit_events_truncated_total counter\n"
                       "busgate_audit_events_truncated_total %llu\n"
                       "# HELP busgate_audit_spool_corrupt_total Corrupt spool regions skipped.\n"
                       "# TYPE busgate_audit_spool_corrupt_total counter\n"
                       "busgate_audit_spool_corrupt_total %llu\n"
                       "# HELP busgate_audit_spool_unreadable_total Spool segments moved aside "
                       "because they cannot be read.\n"
                       "# TYPE busgate_audit_spool_unreadable_total counter\n"
                       "busgate_audit_spool_unreadable_total %llu\n"
                       "# HELP busgate_audit_sink_errors_total Failed sink writes.\n"
                       "# TYPE busgate_audit_sink_errors_total counter\n"
                       "busgate_audit_sink_errors_total %llu\n"
                       "# HELP busgate_audit_queue_depth Events waiting for the audit thread.\n"
                       "# TYPE busgate_audit_queue_depth gauge\n"
                       "busgate_audit_queue_depth %llu\n"
                       "# HELP busgate_audit_spool_bytes Bytes in the audit spool.\n"
                       "# TYPE busgate_audit_spool_bytes gauge\n"
                       "busgate_audit_spool_bytes %llu\n"
                       "# HELP busgate_audit_admitting 1 while the audit pipeline accepts events.\n"
                       "# TYPE busgate_audit_admitting gauge\n"
                       "busgate_audit_admitting %d\n",
                       (unsigned long long)st.emitted, (unsigned long long)st.delivered,
                       (unsigned long long)st.spooled, (unsigned long long)st.drained,
                       (unsigned long long)st.dropped, (unsigned long long)st.refused,
                       (unsigned long long)st.rejected, (unsigned long long)st.truncated,
                       (unsigned long long)st.spool_corrupt,
                       (unsigned long long)st.spool_unreadable, (unsigned long long)st.sink_errors,
                       (unsigned long long)st.queue_depth, (unsigned long long)st.spool_bytes,
                       st.admitting);
}

/* The limits' gauges and refusal counters (busgate_connections_open is
 * the workers' own count, rendered with the other per-protocol metrics). */
static void bg_runtime__limits_metrics(const bg_limits_t *l, char **b, size_t *len, size_t *cap)
{
    bg_metrics_appendf(b, len, cap,
                       "# HELP busgate_connections_max Client connections admitted at most "
                       "(limits.max_connections, all protocols together).\n"
                       "# TYPE busgate_connections_max gauge\n"
                       "busgate_connections_max %llu\n"
                       "# HELP busgate_connections_unauthenticated Client connections open that "
                       "have not authenticated yet.\n"
                       "# TYPE busgate_connections_unauthenticated gauge\n",
                       (unsigned long long)l->conf.max_connections);
    for (int p = 0; p < BG_PROTO__COUNT; p++)
        bg_metrics_appendf(
            b, len, cap, "busgate_connections_unauthenticated{protocol=\"%s\"} %llu\n",
            bg_proto_name((bg_proto_t)p), (unsigned long long)atomic_load(&l->unauth[p]));
    bg_metrics_appendf(b, len, cap,
                       "# HELP busgate_connections_refused_total Client connections closed at "
                       "once by a limit.\n"
                       "# TYPE busgate_connections_refused_total counter\n");
    for (int p = 0; p < BG_PROTO__COUNT; p++)
        for (int r = 1; r < BG_LIMITS__COUNT; r++)
            bg_metrics_appendf(b, len, cap,
                               "busgate_connections_refused_total{protocol=\"%s\",reason=\"%s\"} "
                               "%llu\n",
                               bg_proto_name((bg_proto_t)p),
                               bg_limits_reason((bg_limits_verdict_t)r),
                               (unsigned long long)atomic_load(&l->refused[p][r]));
}

static void bg_runtime__extra_metrics(void *arg, char **b, size_t *len, size_t *cap)
{
    bg_runtime_t *rt = arg;
    if (rt->limits_on)
        bg_runtime__limits_metrics(&rt->limits, b, len, cap);
    if (rt->audit)
        bg_runtime__audit_metrics(rt->audit, b, len, cap);
}

static char *bg_runtime__metrics(void *arg)
{
    bg_runtime_t *rt = arg;
    bg_worker_metrics_t *wm[256];
    size_t n = 0;
    for (int i = 0; i < rt->nworkers && n < 256; i++)
        wm[n++] = &rt->workers[i].metrics;
    return bg_metrics_render(&rt->pm, wm, n, bg_runtime__extra_metrics, rt);
}

static int bg_runtime__init_adapters(bg_runtime_t *rt, const bg_config_t *cfg,
                                     const bg_adapter_t *const *adapters, size_t n)
{
    for (size_t i = 0; i < n && rt->nactive < BG_MAX_ADAPTERS; i++) {
        if (!adapters[i]->enabled(cfg))
            continue;
        char err[256] = "";
        void *g = NULL;
        if (adapters[i]->global_init && adapters[i]->global_init(cfg, &g, err, sizeof err) != 0) {
            bg_log_error("runtime", "%s: %s", adapters[i]->name, err);
            return -1;
        }
        rt->active[rt->nactive] = adapters[i];
        rt->globals[rt->nactive++] = g;
    }
    const char *unbuilt[3];
    for (size_t i = 0, n = bg_config_unbuilt(cfg, unbuilt); i < n; i++)
        bg_log_warn("runtime", "%s", unbuilt[i]);
    return 0;
}

static void bg_runtime__free_adapters(bg_runtime_t *rt)
{
    for (size_t i = 0; i < rt->nactive; i++)
        if (rt->active[i]->global_free)
            rt->active[i]->global_free(rt->globals[i]);
    rt->nactive = 0;
}

/* Starts the audit pipeline; its Kafka sink uses busgate's upstream credential. */
static int bg_runtime__start_audit(bg_runtime_t *rt, const bg_config_t *cfg)
{
    if (!cfg->audit.enabled) {
        const char *off = bg_config_audit_off(cfg);
        if (off)
            bg_log_warn("audit", "%s", off);
        return 0;
    }
    /* The audit producer reaches the brokers as the data path does (and as
     * `busgate audit` does: the same builder). */
    bg_config_kafka_client_t kcc;
    if (bg_config_kafka_client(&cfg->kafka, &kcc) != 0) {
        bg_config_kafka_client_clear(&kcc);
        bg_log_error("audit", "out of memory");
        return -1;
    }
    bg_audit_kafka_conf_t kc = {.bootstrap = kcc.bootstrap,
                                .props = kcc.kv,
                                .nprops = kcc.n,
                                .avro_schema_id = cfg->audit.avro_schema_id};
    char err[512] = "";
    /* bg_audit_new copies the strings: kcc is done with after it. */
    rt->audit = bg_audit_new(&cfg->audit, cfg->instance, cfg->audit.kafka_topic ? &kc : NULL, err,
                             sizeof err);
    bg_config_kafka_client_clear(&kcc);
    if (!rt->audit) {
        bg_log_error("audit", "%s", err);
        return -1;
    }
    char scram[512];
    if (bg_config_kafka_client_scram_warning(cfg, rd_kafka_version(), scram, sizeof scram))
        bg_log_warn("audit", "%s", scram);
    return 0;
}

/* A SIGHUP that reaches no handler of libevent's lands here: none while
 * the main loop runs. */
static void bg_runtime__hup_noop(int sig)
{
    (void)sig;
}

/* SIGHUP, the reload signal, kills by default, and libevent's handler only
 * goes in after the configuration is loaded and the JWKS URLs have been
 * waited for (up to 5 s), and only serves while the loop runs. So from the
 * start of the run: a no-op handler (libevent puts it back when its own
 * goes, so a SIGHUP while stopping does nothing), and SIGHUP blocked in
 * this thread until the loop is about to run (a pending one is kept, not
 * lost as SIG_IGN would). Threads started meanwhile (identity, audit,
 * workers) inherit the block: the main thread is where SIGHUP lands, and
 * start-up calls see no EINTR. *old receives the caller's mask. */
static void bg_runtime__hup_hold(sigset_t *old)
{
    struct sigaction sa;
    sigset_t hup;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = bg_runtime__hup_noop;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGHUP, &sa, NULL);
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &hup, old);
}

/* Once libevent's SIGHUP handler is in and every start-up thread exists: a
 * SIGHUP held since start-up is delivered on unblocking and becomes a
 * reload as soon as the loop runs (the file may have changed after it was
 * read). */
static void bg_runtime__hup_listen(void)
{
    sigset_t pending, hup;
    if (sigpending(&pending) == 0 && sigismember(&pending, SIGHUP))
        bg_log_info("runtime", "SIGHUP during start-up: reloading once running");
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    pthread_sigmask(SIG_UNBLOCK, &hup, NULL);
}

static int bg_runtime__events(bg_runtime_t *rt)
{
    rt->sig_term = evsignal_new(rt->base, SIGTERM, bg_runtime__on_term, rt);
    rt->sig_int = evsignal_new(rt->base, SIGINT, bg_runtime__on_term, rt);
    rt->sig_hup = evsignal_new(rt->base, SIGHUP, bg_runtime__on_hup, rt);
    rt->watch = event_new(rt->base, -1, EV_PERSIST, bg_runtime__on_watch, rt);
    rt->pending_poll = event_new(rt->base, -1, EV_PERSIST, bg_runtime__on_pending_poll, rt);
    struct timeval tv = {BG_RUNTIME_WATCH_MS / 1000, (BG_RUNTIME_WATCH_MS % 1000) * 1000};
    if (!rt->sig_term || !rt->sig_int || !rt->sig_hup || !rt->watch || !rt->pending_poll)
        return -1;
    if (evsignal_add(rt->sig_term, NULL) || evsignal_add(rt->sig_int, NULL) ||
        evsignal_add(rt->sig_hup, NULL) || event_add(rt->watch, &tv))
        return -1;
    return 0;
}

static void bg_runtime__free_events(bg_runtime_t *rt)
{
    struct event *evs[] = {rt->sig_term, rt->sig_int,   rt->sig_hup,
                           rt->watch,    rt->stop_poll, rt->pending_poll};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i])
            event_free(evs[i]);
}

static int bg_runtime__worker_count(const bg_config_t *cfg)
{
    if (cfg->workers > 0)
        return cfg->workers > 256 ? 256 : cfg->workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)(n > 256 ? 256 : n) : 1;
}

/* Every client connection takes a descriptor and its upstream another: the
 * usual soft limit of 1024 would cap busgate far below what the hard limit
 * (the administrator's choice) allows. */
static uint64_t bg_runtime__raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit want = {rl.rlim_max, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            rl = want;
        else
            bg_log_warn("runtime", "cannot raise the open file limit to its hard limit");
    }
    if (rl.rlim_cur == RLIM_INFINITY) {
        bg_log_info("runtime", "open file limit: unlimited");
        return 0;
    }
    bg_log_info("runtime", "open file limit: %llu", (unsigned long long)rl.rlim_cur);
    return (uint64_t)rl.rlim_cur;
}

/* The process-wide client limits from cfg's limits section and the open
 * file limit (0: unlimited). A max_connections whose clients and their
 * upstream connections could take the reserve is kept, with a warning:
 * then the descriptor check (limits.fd_reserve) refuses them first. */
static int bg_runtime__limits(bg_runtime_t *rt, const bg_config_t *cfg, uint64_t nofile)
{
    const bg_config_limits_t *c = &cfg->limits;
    bg_limits_conf_t lc = {.max_connections = c->max_connections,
                           .max_unauth = c->max_unauthenticated,
                           .max_unauth_per_ip = c->max_unauthenticated_per_ip,
                           .fd_limit = nofile,
                           .fd_reserve = c->fd_reserve};
    uint64_t derived = bg_limits_default_max(nofile, c->fd_reserve);
    if (lc.max_connections == 0)
        lc.max_connections = derived;
    else if (lc.max_connections > derived)
        bg_log_warn("runtime",
                    "limits.max_connections %llu: with their upstream connections, clients "
                    "could use more than the open file limit leaves above limits.fd_reserve; "
                    "past %llu, connections are refused for want of descriptors",
                    (unsigned long long)lc.max_connections, (unsigned long long)derived);
    if (nofile > 0 && c->fd_reserve >= nofile)
        bg_log_warn("runtime",
                    "limits.fd_reserve %llu is not below the open file limit %llu: "
                    "every client connection is refused",
                    (unsigned long long)c->fd_reserve, (unsigned long long)nofile);
    if (bg_limits_init(&rt->limits, &lc) != 0)
        return -1;
    rt->limits_on = 1;
    bg_log_info("runtime",
                "client connections: at most %llu, %llu of them unauthenticated (%llu per "
                "address); %llu descriptors reserved",
                (unsigned long long)lc.max_connections, (unsigned long long)lc.max_unauth,
                (unsigned long long)lc.max_unauth_per_ip, (unsigned long long)lc.fd_reserve);
    return 0;
}

/* libevent's own messages (its warnings about sockets, evhttp, epoll) go
 * through busgate's logger: plain text on stderr would break the one JSON
 * object per line that log collectors read. */
static void bg_runtime__libevent_log(int severity, const char *msg)
{
    bg_log_level_t l = severity == EVENT_LOG_DEBUG ? BG_LOG_DEBUG
                       : severity == EVENT_LOG_MSG ? BG_LOG_INFO
                       : severity == EVENT_LOG_WARN ? BG_LOG_WARN
                                                    : BG_LOG_ERROR;
    bg_log_fields(l, "libevent", NULL, 0, "%s", msg);
}

/* Turns on libevent's thread support, before any event_base exists
 * (libevent's rule; its debug mode aborts otherwise): only bases created
 * after it get the locks that let the main thread wake a worker's loop.
 * Once per process: a second set-up after a base exists is refused too. */
static int bg_runtime__threads(void)
{
    static int on;
    if (!on && evthread_use_pthreads() == 0)
        on = 1;
    return on ? 0 : -1;
}

/* Runs the main loop until a drain has finished: 0. If the loop itself
 * fails, nothing is left to watch signals or the drain, so the workers are
 * told to stop at once (also cutting a drain short) and the status is 2. */
static int bg_runtime__loop(bg_runtime_t *rt)
{
    if (event_base_loop(rt->base, EVLOOP_NO_EXIT_ON_EMPTY) >= 0)
        return 0;
    bg_log_error("runtime", "the main event loop failed: stopping the workers");
    rt->draining = 2;
    bg_workers_drain(rt->workers, rt->nworkers, 0);
    return 2;
}

/* bg_runtime_run inside bg_runtime__hup_hold. */
static int bg_runtime__run(const char *path, const bg_adapter_t *const *adapters,
                           size_t nadapters)
{
    bg_runtime_t rt = {.path = path, .seen_fd = -1};
    int rc = 2;
    event_set_log_callback(bg_runtime__libevent_log);
    if (bg_runtime__threads() != 0) {
        bg_log_error("runtime", "cannot enable libevent's thread support");
        return 2;
    }
    rt.pm.start_time = (int64_t)time(NULL);
    bg_runtime__remember_file(&rt, 0);
    bg_snapshot_t *snap = bg_runtime__load(&rt);
    if (!snap) {
        if (rt.seen_fd >= 0)
            close(rt.seen_fd);
        return 1;
    }
    bg_runtime__publish(&rt, snap);
    /* From here on no thread waits for stderr (a stalled log reader): the
     * errors of a configuration that does not load were written above. */
    if (bg_log_async_start(BG_LOG_QUEUE_BYTES) != 0)
        bg_log_warn("runtime", "cannot start the log thread: logging synchronously");
    uint64_t nofile = bg_runtime__raise_nofile();
    /* Listeners and adapters keep using the start-up configuration (listener
     * changes need a restart), so hold it for the whole run. */
    bg_snapshot_t *boot = bg_snapshot_acquire();
    const bg_config_t *cfg = boot->config;
    rt.boot_cfg = cfg;
    if (bg_identity_wait_ready(snap->identity, 5000) != 0)
        bg_log_warn("identity", "some JWKS URLs have no keys yet; tokens from them fail until "
                                "a fetch succeeds");
    else
        rt.identity_was_ready = 1; /* whether /readyz was asked yet or not */
    rt.base = event_base_new();
    if (!rt.base || bg_runtime__events(&rt) != 0) {
        bg_log_error("runtime", "cannot set up the main event loop");
        goto done;
    }
    char err[512];
    /* The admin listener is bound before any client listener: once a client
     * port accepts, /healthz, /readyz and /metrics answer too (its callbacks
     * run only in the loop below, when the workers exist). */
    if (cfg->admin.enabled) {
        rt.admin = bg_admin_start(rt.base, &cfg->admin.listen, bg_runtime__ready,
                                  bg_runtime__health, bg_runtime__metrics, &rt, err, sizeof err);
        if (!rt.admin) {
            bg_log_error("admin", "%s", err);
            goto done;
        }
    }
    if (bg_runtime__start_audit(&rt, cfg) != 0)
        goto done;
    if (bg_runtime__init_adapters(&rt, cfg, adapters, nadapters) != 0)
        goto done;
    if (bg_runtime__limits(&rt, cfg, nofile) != 0) {
        bg_log_error("runtime", "cannot set up the connection limits");
        goto done;
    }
    rt.nworkers = bg_runtime__worker_count(cfg);
    rt.workers =
        bg_workers_start(rt.nworkers, rt.active, rt.globals, rt.nactive,
                         (struct bg_audit_s *)rt.audit, &rt.limits, cfg->instance, err, sizeof err);
    if (!rt.workers) {
        bg_log_error("runtime", "%s", err);
        goto done;
    }
    bg_runtime__hup_listen();
    bg_log_info("runtime", "busgate running: %d worker(s), %zu adapter(s), config %s", rt.nworkers,
                rt.nactive, path);
    rc = bg_runtime__loop(&rt);
    bg_workers_join(rt.workers, rt.nworkers);
    rt.workers = NULL;
    bg_log_info("runtime", "stopped");
done:
    bg_admin_stop(rt.admin);
    bg_runtime__free_adapters(&rt);
    bg_audit_free(rt.audit); /* after the workers: their last events are flushed */
    if (rt.limits_on)        /* the workers are gone: every connection was released */
        bg_limits_clear(&rt.limits);
    bg_snapshot_release(rt.pending); /* a reload still waiting when busgate stopped */
    bg_runtime__free_events(&rt);
    if (rt.base)
        event_base_free(rt.base);
    bg_snapshot_release(boot);
    bg_snapshot_shutdown();
    if (rt.seen_fd >= 0)
        close(rt.seen_fd);
    bg_log_async_stop(BG_RUNTIME_LOG_FLUSH_MS);
    return rc;
}

int bg_runtime_run(const char *path, const bg_adapter_t *const *adapters, size_t nadapters)
{
    sigset_t old;
    signal(SIGPIPE, SIG_IGN);
    bg_runtime__hup_hold(&old);
    int rc = bg_runtime__run(path, adapters, nadapters);
    pthread_sigmask(SIG_SETMASK, &old, NULL); /* a SIGHUP still held goes to the no-op */
    return rc;
}
