/* Audit pipeline: file sink output, many emitting threads, queue bounds,
 * block vs drop, outage -> spool -> in-order drain, restart with a backlog.
 * A test sink stands in for the Kafka topic: it can fail or stall on demand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit.h"
#include "audit/audit_sink.h"
#include "audit/audit_spool.h"
#include "broker/log.h"

/* ---- test sink ---- */

typedef struct tsink_s {
    bg_audit_sink_t base;
    _Atomic int fail;    /* refuse every write */
    _Atomic int stall;   /* block inside write until cleared */
    _Atomic int entered; /* write was called */
    _Atomic int down;    /* up() says 0 until a write is delivered (as Kafka's sink) */
    pthread_mutex_t mu;
    char **json;
    size_t n, cap;
    /* Broker-like mode: writes stay pending until poll/flush, and a pending
     * group holding the record with seq == reject_seq is rejected whole, as
     * a broker refuses a whole produce request for one oversized record. */
    int async;
    _Atomic int64_t reject_seq, reject_seq2; /* set by the test thread */
    _Atomic int reject_all; /* every group is rejected: each record a culprit */
    _Atomic int live_delivered; /* delivered records not marked from_spool (no probe) */
    /* Async mode scripting: take at most take_max more records (-1: no
     * limit; then write takes a prefix, as librdkafka's QUEUE_FULL), and
     * with fail_live report the records not marked from_spool failed. */
    _Atomic int take_max, fail_live;
    /* Async mode: report every record failed without its bytes, as a sink
     * that cannot give a record back (out of memory, producer gone). */
    _Atomic int lose;
    bg_audit_rec_t pend[1024];
    size_t npend;
} tsink_t;

static int64_t seq_of(const char *json);

static void tsink_keep(tsink_t *t, const char *j, size_t jl)
{
    pthread_mutex_lock(&t->mu);
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 256;
        t->json = realloc(t->json, t->cap * sizeof *t->json);
    }
    t->json[t->n++] = strndup(j, jl);
    pthread_mutex_unlock(&t->mu);
}

/* Settles the pending group (async mode): all delivered, or all rejected. */
static void tsink_settle(tsink_t *t)
{
    int reject = atomic_load(&t->reject_all);
    for (size_t i = 0; i < t->npend; i++) {
        size_t jl;
        const char *j = bg_audit_rec_json(&t->pend[i], &jl);
        char *z = strndup(j, jl);
        reject |= seq_of(z) == t->reject_seq || seq_of(z) == t->reject_seq2;
        free(z);
    }
    size_t n = t->npend;
    t->npend = 0;
    for (size_t i = 0; i < n; i++) {
        size_t jl;
        const char *j = bg_audit_rec_json(&t->pend[i], &jl);
        if (reject) {
            t->base.cb.rejected(t->base.cb.core, &t->pend[i], "MSG_SIZE_TOO_LARGE");
        } else if (atomic_load(&t->lose)) {
            bg_audit_rec_t gone = t->pend[i];
            gone.data = NULL;
            gone.len = 0;
            t->base.cb.failed(t->base.cb.core, &gone);
        } else if (atomic_load(&t->fail_live) && !t->pend[i].from_spool) {
            t->base.cb.failed(t->base.cb.core, &t->pend[i]);
        } else {
            tsink_keep(t, j, jl);
            t->base.cb.delivered(t->base.cb.core, &t->pend[i]);
        }
        free((void *)t->pend[i].data);
    }
}

static void tsink_poll(bg_audit_sink_t *s) { tsink_settle((tsink_t *)s); }

static size_t tsink_pending(bg_audit_sink_t *s, int from_spool)
{
    tsink_t *t = (tsink_t *)s;
    size_t k = 0;
    for (size_t i = 0; i < t->npend; i++)
        k += !t->pend[i].from_spool == !from_spool;
    return k;
}

static size_t tsink_write(bg_audit_sink_t *s, const bg_audit_rec_t *recs, size_t n)
{
    tsink_t *t = (tsink_t *)s;
    atomic_store(&t->entered, 1);
    for (int i = 0; i < 10000 && atomic_load(&t->stall); i++)
        usleep(1000);
    if (atomic_load(&t->fail))
        return 0;
    if (t->async) {
        size_t k = 0;
        for (; k < n && t->npend < 1024 && atomic_load(&t->take_max) != 0; k++) {
            if (atomic_load(&t->take_max) > 0)
                atomic_fetch_sub(&t->take_max, 1);
            t->pend[t->npend] = recs[k];
            t->pend[t->npend++].data = memcpy(malloc(recs[k].len), recs[k].data, recs[k].len);
        }
        return k;
    }
    for (size_t i = 0; i < n; i++) {
        size_t jl;
        const char *j = bg_audit_rec_json(&recs[i], &jl);
        tsink_keep(t, j, jl);
    }
    atomic_store(&t->down, 0);
    for (size_t i = 0; i < n; i++) {
        atomic_fetch_add(&t->live_delivered, !recs[i].from_spool);
        s->cb.delivered(s->cb.core, &recs[i]);
    }
    return n;
}

static int tsink_up(bg_audit_sink_t *s) { return !atomic_load(&((tsink_t *)s)->down); }

static int tsink_flush(bg_audit_sink_t *s, int timeout_ms)
{
    tsink_settle((tsink_t *)s);
    return 0;
}

static void tsink_close(bg_audit_sink_t *s) { atomic_store(&((tsink_t *)s)->entered, 2); }

static tsink_t *tsink_new(void)
{
    tsink_t *t = calloc(1, sizeof *t);
    pthread_mutex_init(&t->mu, NULL);
    t->base.name = "test";
    t->base.write = tsink_write;
    t->base.flush = tsink_flush;
    t->base.close = tsink_close;
    t->base.up = tsink_up;
    t->reject_seq = t->reject_seq2 = -1;
    t->take_max = -1;
    return t;
}

/* A broker-like test sink that rejects every group holding seq culprit. */
static tsink_t *tsink_rejecting(int64_t culprit)
{
    tsink_t *t = tsink_new();
    t->async = 1;
    t->reject_seq = culprit;
    t->base.poll = tsink_poll;
    t->base.pending = tsink_pending;
    return t;
}

static void tsink_free(tsink_t *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->json[i]);
    free(t->json);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static size_t tsink_count(tsink_t *t)
{
    pthread_mutex_lock(&t->mu);
    size_t n = t->n;
    pthread_mutex_unlock(&t->mu);
    return n;
}

/* ---- helpers ---- */

/* Temp dirs live under the build tree (BG_BINARY_DIR, set by ctest). */
static char *tmp_template(const char *name)
{
    const char *base = getenv("BG_BINARY_DIR"); /* set by ctest */
    if (!base)
        base = getenv("TMPDIR"); /* run by hand: never in the checkout */
    char *t = malloc(4096);
    snprintf(t, 4096, "%s/%s-XXXXXX", base ? base : "/tmp", name);
    return t;
}

static char *mkdir_tmp(void)
{
    char *d = tmp_template("bg-audit-pipe");
    assert_non_null(mkdtemp(d));
    return d;
}

static void rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[4096];
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (unlink(p) != 0)
            rmdir(p); /* a directory under a segment's name (moved aside) */
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

static int emit_kind(bg_audit_t *a, bg_audit_kind_t kind, const char *session, uint64_t seq,
                     int (*emit)(bg_audit_t *, const bg_audit_event_t *))
{
    bg_audit_event_t ev = {.kind = kind, .session_id = session, .seq = seq, .protocol = "kafka",
                           .has = BG_AUDIT_HAS_SEQ};
    return emit(a, &ev);
}

static int emit_seq(bg_audit_t *a, const char *session, uint64_t seq)
{
    return emit_kind(a, BG_AUDIT_EV_DECISION, session, seq, bg_audit_emit);
}

static int64_t seq_of(const char *json)
{
    json_t *j = json_loads(json, 0, NULL);
    assert_non_null(j);
    int64_t s = json_integer_value(json_object_get(j, "seq"));
    json_decref(j);
    return s;
}

/* Waits (bounded) until cond holds once; cond is evaluated once per turn. */
#define WAIT_UNTIL(cond)                                                                           \
    do {                                                                                           \
        int ok_ = 0;                                                                               \
        for (int w_ = 0; w_ < 1500 && !(ok_ = (cond)); w_++)                                       \
            usleep(10000);                                                                         \
        assert_true(ok_);                                                                          \
    } while (0)

static bg_config_audit_t base_cfg(void)
{
    bg_config_audit_t c = {.enabled = 1, .on_failure = BG_AUDIT_BLOCK, .queue_size = 1024};
    return c;
}

/* A pipeline on cfg writing to t; fails the test with busgate's message
 * when it cannot be made. */
static bg_audit_t *pipeline_new(const bg_config_audit_t *cfg, tsink_t *t)
{
    char err[256] = "";
    bg_audit_t *a = bg_audit_new_with_sink(cfg, "i", &t->base, err, sizeof err);
    if (!a)
        fail_msg("bg_audit_new_with_sink: %s", err);
    return a;
}

/* ---- tests ---- */

typedef struct emitter_s {
    bg_audit_t *a;
    char session[16];
    int n;
} emitter_t;

static void *emitter(void *arg)
{
    emitter_t *e = arg;
    for (int i = 0; i < e->n; i++) {
        while (emit_seq(e->a, e->session, (uint64_t)i) != BG_AUDIT_OK)
            usleep(100); /* refused only while the queue is full */
    }
    return NULL;
}

static void count_cb(void *core, const bg_audit_rec_t *rec)
{
    (void)rec;
    (*(int *)core)++;
}

/* A short write (here: the file size limit, as a full disk would) must not
 * leave a partial line for the next line to be glued onto: the file holds
 * whole JSON lines only, and the cut records are reported failed. */
static void test_file_sink_short_write(void **state)
{
    char err[256] = "", *dir = mkdir_tmp(), path[4096];
    snprintf(path, sizeof path, "%s/audit.jsonl", dir);
    bg_audit_sink_t *s = bg_audit_file_sink_new(path, err, sizeof err);
    assert_non_null(s);
    int delivered = 0;
    s->cb = (bg_audit_sink_cb_t){&delivered, count_cb, NULL, NULL}; /* untaken records: not failed */
    uint8_t buf[3][256];
    bg_audit_rec_t recs[3];
    for (int i = 0; i < 3; i++) {
        char json[128];
        int n = snprintf(json, sizeof json, "{\"seq\":%d,\"pad\":\"%080d\"}", i, 0);
        recs[i] = (bg_audit_rec_t){
            .data = buf[i],
            .len = (uint32_t)bg_audit_rec_build(buf[i], sizeof buf[i], "k", 1, json, (size_t)n)};
        assert_true(recs[i].len > 0);
    }
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 150; /* one line (about 100 bytes) and part of the next */
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    size_t took = s->write(s, recs, 2);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    assert_int_equal(took, 1);
    assert_int_equal(delivered, 1);
    assert_int_equal(s->write(s, recs + 2, 1), 1);
    assert_int_equal(s->flush(s, 1000), 0);
    s->close(s);

    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[512];
    int seqs[4], n = 0;
    while (n < 4 && fgets(line, sizeof line, f)) {
        json_error_t e;
        json_t *j = json_loads(line, 0, &e);
        if (!j)
            fail_msg("not a whole JSON line: %s", line);
        seqs[n++] = (int)json_integer_value(json_object_get(j, "seq"));
        json_decref(j);
    }
    fclose(f);
    assert_int_equal(n, 2);
    assert_int_equal(seqs[0], 0);
    assert_int_equal(seqs[1], 2);
    rm_rf(dir);
    free(dir);
}

static void test_file_sink_many_threads(void **state)
{
    char err[256] = "", *dir = mkdir_tmp(), path[4096];
    snprintf(path, sizeof path, "%s/audit.jsonl", dir);
    bg_config_audit_t cfg = base_cfg();
    cfg.file = path;
    bg_audit_t *a = bg_audit_new(&cfg, "inst", NULL, err, sizeof err);
    assert_non_null(a);
    enum { T = 4, N = 2000 };
    emitter_t em[T];
    pthread_t th[T];
    for (int i = 0; i < T; i++) {
        em[i] = (emitter_t){a, "", N};
        snprintf(em[i].session, sizeof em[i].session, "s%d", i);
        pthread_create(&th[i], NULL, emitter, &em[i]);
    }
    for (int i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(bg_audit_flush(a, 10000), 0);
    bg_audit_stats_t st;
    bg_audit_stats(a, &st);
    assert_int_equal(st.emitted, T * N);
    assert_int_equal(st.delivered, T * N);
    assert_int_equal(st.queue_depth, 0);
    bg_audit_free(a);

    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[8192];
    int64_t next[T] = {0};
    int lines = 0;
    while (fgets(line, sizeof line, f)) {
        json_error_t e;
        json_t *j = json_loads(line, 0, &e);
        assert_non_null(j);
        const char *s = json_string_value(json_object_get(j, "session_id"));
        int t = s[1] - '0';
        /* per-session order is the emit order */
        assert_int_equal(json_integer_value(json_object_get(j, "seq")), next[t]++);
        assert_string_equal(json_string_value(json_object_get(j, "instance")), "inst");
        json_decref(j);
        lines++;
    }
    fclose(f);
    assert_int_equal(lines, T * N);
    rm_rf(dir);
    free(dir);
}

/* Queue bound: with the audit thread stuck in the sink, exactly queue_size
 * more events fit; block refuses the next, drop counts it. */
static void queue_bound(bg_audit_on_failure_t mode)
{
    tsink_t *t = tsink_new();
    atomic_store(&t->stall, 1);
    bg_config_audit_t cfg = base_cfg();
    cfg.queue_size = 8;
    cfg.on_failure = mode;
    bg_audit_t *a = pipeline_new(&cfg, t);
    assert_int_equal(emit_seq(a, "s", 0), BG_AUDIT_OK);
    WAIT_UNTIL(atomic_load(&t->entered) == 1); /* the thread holds event 0 */
    for (int i = 1; i <= 8; i++)
        assert_int_equal(emit_seq(a, "s", (uint64_t)i), BG_AUDIT_OK);
    int want = mode == BG_AUDIT_BLOCK ? BG_AUDIT_REFUSED : BG_AUDIT_DROPPED;
    assert_int_equal(emit_seq(a, "s", 9), want);
    assert_int_equal(bg_audit_admitting(a), mode == BG_AUDIT_BLOCK ? 0 : 1);
    /* Events of work already admitted: block mode still takes them (past
     * the bound), drop mode counts them like any other. An authentication
     * failure is not such an event. */
    assert_int_equal(emit_kind(a, BG_AUDIT_EV_AUTH_FAILURE, "s", 10, bg_audit_emit_session), want);
    int admitted = mode == BG_AUDIT_BLOCK ? BG_AUDIT_OK : BG_AUDIT_DROPPED;
    assert_int_equal(emit_kind(a, BG_AUDIT_EV_SESSION_START, "s", 11, bg_audit_emit_session),
                     admitted);
    assert_int_equal(emit_kind(a, BG_AUDIT_EV_DECISION, "s", 12, bg_audit_emit_session), admitted);
    assert_int_equal(emit_kind(a, BG_AUDIT_EV_SESSION_END, "s", 13, bg_audit_emit_session),
                     admitted);
    bg_audit_stats_t st;
    bg_audit_stats(a, &st);
    assert_int_equal(st.queue_depth, mode == BG_AUDIT_BLOCK ? 11 : 8);
    assert_int_equal(mode == BG_AUDIT_BLOCK ? st.refused : st.dropped,
                     mode == BG_AUDIT_BLOCK ? 2 : 5);
    atomic_store(&t->stall, 0);
    assert_int_equal(bg_audit_flush(a, 5000), 0);
    assert_int_equal(tsink_count(t), mode == BG_AUDIT_BLOCK ? 12 : 9);
    assert_int_equal(bg_audit_admitting(a), 1);
    bg_audit_free(a);
    tsink_free(t);
}

static void test_queue_bound_block(void **state) { queue_bound(BG_AUDIT_BLOCK); }
static void test_queue_bound_drop(void **state) { queue_bound(BG_AUDIT_DROP); }

/* Block mode, no spool, t failing: event 0 of session "s" is held and
 * the pipeline no longer admits. */
static bg_audit_t *held_pipeline(tsink_t *t)
{
    atomic_store(&t->fail, 1);
    bg_config_audit_t cfg = base_cfg();
    bg_audit_t *a = pipeline_new(&cfg, t);
    assert_int_equal(emit_seq(a, "s", 0), BG_AUDIT_OK);
    WAIT_UNTIL(!bg_audit_admitting(a));
    return a;
}

/* Primary down, no spool: block stops admitting and refuses (never drops),
 * then recovers by itself; drop counts the losses. */
static void test_no_spool_block_then_recover(void **state)
{
    tsink_t *t = tsink_new();
    bg_audit_t *a = held_pipeline(t);
    assert_int_equal(emit_seq(a, "s", 1), BG_AUDIT_REFUSED);
    /* The decision of a request admitted before the sink failed is held too. */
    assert_int_equal(emit_kind(a, BG_AUDIT_EV_DECISION, "s", 3, bg_audit_emit_admitted),
                     BG_AUDIT_OK);
    bg_audit_stats_t st;
    bg_audit_stats(a, &st);
    assert_int_equal(st.dropped, 0);
    atomic_store(&t->fail, 0);
    WAIT_UNTIL(bg_audit_admitting(a));
    assert_int_equal(emit_seq(a, "s", 2), BG_AUDIT_OK);
    assert_int_equal(bg_audit_flush(a, 5000), 0);
    /* The held event went first as a probe, then for real (the same bytes,
     * so the same event id: an at-least-once duplicate), then the admitted
     * one held behind it, then the new one. */
    assert_int_equal(tsink_count(t), 4);
    assert_int_equal(seq_of(t->json[0]), 0);
    assert_string_equal(t->json[0], t->json[1]);
    assert_int_equal(seq_of(t->json[2]), 3);
    assert_int_equal(seq_of(t->json[3]), 2);
    bg_audit_free(a);
    tsink_free(t);
}

/* Block mode, no spool: the sink fails, then works again while admitted
 * events keep arriving every 100 ms (decisions of requests in flight).
 * Each newly held event must not undo the probe that found the sink back:
 * admission returns within about a second, with few probes. */
static void test_no_spool_recovers_while_events_arrive(void **state)
{
    tsink_t *t = tsink_new();
    bg_audit_t *a = held_pipeline(t);
    atomic_store(&t->fail, 0);
    uint64_t seq = 1;
    /* The old code never admitted again while events kept coming; the
     * bound only ends the loop (10 s: no timing is asserted). */
    for (int i = 0; i < 100 && !bg_audit_admitting(a); i++) {
        assert_int_equal(emit_kind(a, BG_AUDIT_EV_DECISION, "s", seq++, bg_audit_emit_admitted),
                         BG_AUDIT_OK);
        usleep(100000);
    }
    assert_true(bg_audit_admitting(a));
    assert_int_equal(bg_audit_flush(a, 5000), 0);
    /* every event arrived for real, in order; probes are the only repeats */
    size_t n = tsink_count(t), probes = n - (size_t)atomic_load(&t->live_delivered);
    assert_int_equal(atomic_load(&t->live_delivered), (int)seq);
    assert_true(probes <= 2);
    for (size_t i = 1; i < n; i++)
        assert_true(seq_of(t->json[i]) >= seq_of(t->json[i - 1]));
    bg_audit_stats_t st;
    bg_audit_stats(a, &st);
    assert_int_equal(st.dropped, 0);
    bg_audit_free(a);
    tsink_free(t);
}

/* Block mode, no spool: events held while the sink failed are sent to it
 * at stop once it works again (before, stop offered them to the spool
 * only, and without one they were lost while the sink was up). */
static void test_no_spool_held_delivered_at_stop(void **state)
{
    tsink_t *t = tsink_new();
    bg_audit_t *a = held_pipeline(t);
    assert_int_equal(emit_kind(a, BG_AUDIT_EV_DECISION, "s", 1, bg_audit_emit_admitted),
                     BG_AUDIT_OK);
    atomic_store(&t->fail, 0);
    bg_audit_free(a); /* at once: no periodic retry has run since */
    assert_int_equal(atomic_load(&t->live_delivered), 2);
    size_t n = tsink_count(t);
    assert_int_equal(seq_of(t->json[n - 2]), 0);
    assert_int_equal(seq_of(t->json[n - 1]), 1);
    tsink_free(t);
}

/* Block mode, no spool, an asynchronous sink: held records sent for real
 * leave the held list when the sink takes them, before their outcome. Here
 * it takes five and refuses the sixth (queue full), then the five fail:
 * they must go back ahead of the records still held, so the session's
 * events still arrive in seq order (they came out 5..9 0..4). */
static void test_no_spool_failed_held_keep_order(void **state)
{
    tsink_t *t = tsink_rejecting(-1); /* async, rejects nothing */
    bg_audit_t *a = held_pipeline(t);
    for (uint64_t i = 1; i < 10; i++)
        assert_int_equal(emit_kind(a, BG_AUDIT_EV_DECISION, "s", i, bg_audit_emit_admitted),
                         BG_AUDIT_OK);
    usleep(300000); /* all ten held */
    atomic_store(&t->take_max, 6); /* the probe and five records */
    atomic_store(&t->fail_live, 1);
    atomic_store(&t->fail, 0);
    bg_audit_stats_t st;
    WAIT_UNTIL((bg_audit_stats(a, &st), st.sink_errors >= 5));
    atomic_store(&t->fail_live, 0);
    atomic_store(&t->take_max, -1);
    WAIT_UNTIL(bg_audit_admitting(a));
    assert_int_equal(bg_audit_flush(a, 5000), 0);
    int seen[10] = {0};
    for (size_t i = 0; i < tsink_count(t); i++) {
        seen[seq_of(t->json[i])] = 1;
        if (i > 0) /* repeats (probes) allowed, never a step back */
            assert_true(seq_of(t->json[i]) >= seq_of(t->json[i - 1]));
    }
    for (int i = 0; i < 10; i++)
        assert_true(seen[i]);
    bg_audit_free(a);
    tsink_free(t);
}

/* bg_audit_flush promises every event reached the primary or the spool:
 * while events are held (block mode, sink failing, no spool) it fails;
 * once the sink works it sends them itself and succeeds. */
static void test_flush_fails_while_held(void **state)
{
    tsink_t *t = tsink_new();
    bg_audit_t *a = held_pipeline(t);
    assert_int_equal(bg_audit_flush(a, 5000), -1);
    atomic_store(&t->fail, 0);
    assert_int_equal(bg_audit_flush(a, 5000), 0);
    assert_int_equal(atomic_load(&t->live_delivered), 1);
    assert_true(bg_audit_admitting(a));
    bg_audit_free(a);
    tsink_free(t);
}

static void test_no_spool_drop_counts(void **state)
{
    tsink_t *t = tsink_new();
    atomic_store(&t->fail, 1);
    bg_config_audit_t cfg = base_cfg();
    cfg.on_failure = BG_AUDIT_DROP;
    bg_audit_t *a = pipeline_new(&cfg, t);
    for (int i = 0; i < 10; i++)
        assert_int_equal(emit_seq(a, "s", (uint64_t)i), BG_AUDIT_OK);
    assert_int_equal(bg_audit_flush(a, 5000), 0);
    bg_audit_stats_t st;
    bg_audit_stats(a, &st);
    assert_int_equal(st.dropped, 10);
    assert_int_equal(bg_audit_admitting(a), 1);
    bg_audit_free(a);
    tsink_free(t);
}

/* Drop mode without a spool: a primary that said it was down is tried again
 * (every 5 s), so once it works events are delivered again, not dropped
 * for ever. */
static void test_drop_no_spool_primary_comes_back(void **state)
{
    tsink_t *t = tsink_new();
    atomic_store(&t->down, 1);
    atomic_store(&t->fail, 1);
    bg_config_audit_t cfg = base_cfg();
    cfg.on_failure = BG_AUDIT_DROP;
    bg_audit_t *a = pipeline_new(&cfg, t);
    assert_int_equal(emit_seq(a, "s", 0), BG_AUDIT_OK);
    assert_int_equal(bg_audit_flush(a, 5000), 0);
    atomic_store(&t->fail, 0); /* the brokers are back; the sink does not know */
    uint64_t seq = 1;
    for (int i = 0; i < 200 && tsink_count(t) == 0; i++) { /* at most ~10 s */
        assert_int_equal(emit_seq(a, "s", seq++), BG_AUDIT_OK);
        usleep(50000);
    }
    assert_true(tsink_count(t) > 0);
    assert_int_equal(emit_seq(a, "s", seq), BG_AUDIT_OK);
    assert_int_equal(bg_audit_flush(a, 5000), 0);
    assert_int_equal(seq_of(t->json[tsink_count(t) - 1]), (int64_t)seq); /* delivered again */
    bg_audit_stats_t st;
    bg_audit_stats(a, &st);
    assert_true(st.dropped >= 1);
    bg_audit_free(a);
    tsink_free(t);
}

/* Outage with a spool: everything is spooled, then drained in emit order
 * when the primary returns; nothing is lost or reordered. */
static void test_outage_spool_drain_in_order(void **state)
{
    char *dir = mkdir_tmp();
    tsink_t *t = tsink_new();
    bg_config_audit_t cfg = base_cfg();
    cfg.spool_dir = dir;
    bg_audit_t *a = pipeline_new(&cfg, t);
    int n = 0;
    for (; n < 100; n++)
        assert_int_equal(emit_seq(a, "s", (uint64_t)n), BG_AUDIT_OK);
    assert_int_equal(bg_audit_flush(a, 5000), 0);
    atomic_store(&t->fail, 1);
    for (; n < 600; n++)
        assert_int_equal(emit_seq(a, "s", (uint64_t)n), BG_AUDIT_OK);
    assert_int_equal(bg_audit_flush(a, 5000), 0);
    bg_audit_stats_t st;
    bg_audit_stats(a, &st);
    assert_int_equal(st.spooled, 500);
    assert_true(st.spool_bytes > 0);
    assert_int_equal(bg_audit_admitting(a), 1); /* the spool takes them: still admitting */
    atomic_store(&t->fail, 0);
    for (; n < 700; n++) /* emitted during the drain: must come after the backlog */
        assert_int_equal(emit_seq(a, "s", (uint64_t)n), BG_AUDIT_OK);
    WAIT_UNTIL(tsink_count(t) == 700);
    for (size_t i = 0; i < 700; i++)
        assert_int_equal(seq_of(t->json[i]), (int64_t)i);
    WAIT_UNTIL((bg_audit_stats(a, &st), st.drained == 600));
    bg_audit_free(a);
    tsink_free(t);
    rm_rf(dir);
    free(dir);
}

/* A decision event of session "s", seq 5, with every usual field and the
 * resources res[0..n). */
static bg_audit_event_t big_event(const bg_policy_resource_t *res, size_t n)
{
    static const char *const groups[] = {"orders", "payments"};
    bg_audit_event_t ev = {
        .kind = BG_AUDIT_EV_DECISION,
        .session_id = "s",
        .seq = 5,
        .protocol = "kafka",
        .peer = "127.0.0.1:5555",
        .principal = {"alice", groups, 2, "https://idp", "jti-1"},
        .client_id = "rdkafka",
        .api = "Fetch",
        .api_version = 12,
        .resources = res,
        .nresources = n,
        .verb = BG_VERB_READ,
        .decision = {BG_EFFECT_DENY, BG_EFFECT_DENY, NULL, NULL, 0, BG_MODE_ENFORCE, NULL},
        .result = {29, "TOPIC_AUTHORIZATION_FAILED", 123, 0, 0, 77},
        .has = BG_AUDIT_HAS_SEQ | BG_AUDIT_HAS_VERB | BG_AUDIT_HAS_DECISION | BG_AUDIT_HAS_RESULT |
               BG_AUDIT_HAS_BYTES_OUT | BG_AUDIT_HAS_LATENCY | BG_AUDIT_HAS_API_VERSION};
    return ev;
}

/* The events the sink got from index from on, checked as the parts of one
 * event: each valid JSON within a record, part 1..n of n in order, its own
 * event id, every other field (seq, time, decision, ...) the same in all,
 * and their resources together exactly res[0..nres) in order. Returns the
 * first part (the caller decrefs) and the number of parts in *nparts. */
static json_t *check_parts(tsink_t *t, size_t from, const bg_policy_resource_t *res, size_t nres,
                           size_t *nparts)
{
    size_t n = tsink_count(t) - from, at = 0;
    json_t *first = NULL, *same = NULL, *ids = json_object();
    assert_true(n >= 2);
    for (size_t p = 0; p < n; p++) {
        const char *s = t->json[from + p];
        json_error_t e;
        assert_true(strlen(s) < BG_AUDIT_SPOOL_MAX_RECORD / 2);
        json_t *j = json_loads(s, 0, &e);
        if (!j)
            fail_msg("part %zu is not JSON: %s", p + 1, e.text);
        assert_int_equal(json_integer_value(json_object_get(j, "part")), p + 1);
        assert_int_equal(json_integer_value(json_object_get(j, "parts")), n);
        const char *id = json_string_value(json_object_get(j, "event_id"));
        assert_int_equal(strlen(id), 36);
        assert_null(json_object_get(ids, id));
        json_object_set_new(ids, id, json_true());
        json_t *r = json_object_get(j, "resources"), *x;
        size_t i;
        assert_true(json_array_size(r) > 0);
        json_array_foreach(r, i, x)
        {
            json_t *name = json_object_get(x, "name");
            assert_true(at < nres);
            assert_int_equal(json_string_length(name), res[at].name_len);
            assert_memory_equal(json_string_value(name), res[at].name, res[at].name_len);
            at++;
        }
        json_t *rest = json_deep_copy(j);
        json_object_del(rest, "event_id");
        json_object_del(rest, "part");
        json_object_del(rest, "resources");
        if (!same)
            same = rest;
        else if (!json_equal(same, rest))
            fail_msg("part %zu differs from part 1 beyond id and resources", p + 1);
        else
            json_decref(rest);
        if (!first)
            first = j;
        else
            json_decref(j);
    }
    assert_int_equal(at, nres); /* every resource, once */
    json_decref(same);
    json_decref(ids);
    *nparts = n;
    return first;
}

/* Three huge names first (a Kafka name holds up to 32767 bytes, and each
 * control byte is six bytes of JSON) must not crowd out the resource behind
 * them: the event is written as parts, each within a record, with every
 * resource whole and in order (before, only the first resource was kept). */
static void test_huge_names_first_split(void **state)
{
    tsink_t *t = tsink_new();
    bg_config_audit_t cfg = base_cfg();
    bg_audit_t *a = pipeline_new(&cfg, t);
    static char name[32000];
    memset(name, 0x01, sizeof name); /* "\u0001" each: about 192 KiB of JSON */
    bg_policy_resource_t res[4];
    for (int i = 0; i < 3; i++)
        res[i] = (bg_policy_resource_t){BG_RES_KAFKA_TOPIC, NULL, 0, name, sizeof name};
    res[3] = (bg_policy_resource_t){BG_RES_KAFKA_TOPIC, NULL, 0, "orders", 6};
    bg_audit_event_t ev = big_event(res, 4);
    assert_int_equal(bg_audit_emit(a, &ev), BG_AUDIT_OK);
    assert_int_equal(bg_audit_flush(a, 5000), 0);
    size_t n;
    json_t *j = check_parts(t, 0, res, 4, &n);
    assert_int_equal(n, 2);
    assert_int_equal(json_integer_value(json_object_get(j, "seq")), 5);
    assert_null(json_object_get(j, "detail")); /* nothing was cut */
    bg_audit_stats_t st;
    bg_audit_stats(a, &st);
    assert_int_equal(st.emitted, 2); /* events written: the parts */
    json_decref(j);
    bg_audit_free(a);
    tsink_free(t);
}

/* A legitimate large request (a Fetch of thousands of topics) keeps every
 * topic: split greedily into a few full parts. */
static void test_thousands_of_resources_split(void **state)
{
    enum { N = 30000 };
    tsink_t *t = tsink_new();
    bg_config_audit_t cfg = base_cfg();
    bg_audit_t *a = pipeline_new(&cfg, t);
    static char names[N][16];
    static bg_policy_resource_t res[N];
    for (int i = 0; i < N; i++) {
        int k = snprintf(names[i], sizeof names[i], "topic-%05d", i);
        res[i] = (bg_policy_resource_t){BG_RES_KAFKA_TOPIC, NULL, 0, names[i], (size_t)k};
    }
    bg_audit_event_t ev = big_event(res, N);
    assert_int_equal(bg_audit_emit(a, &ev), BG_AUDIT_OK);
    assert_int_equal(bg_audit_flush(a, 5000), 0);
    size_t n;
    json_t *j = check_parts(t, 0, res, N, &n);
    assert_int_equal(n, 3); /* about 1.3 MB of resources: greedy parts are full */
    json_decref(j);
    bg_audit_free(a);
    tsink_free(t);
}

/* What is not resources is still cut down when it would crowd them out
 * (here 100000 groups, about 1 MB): the first 64 groups and the detail
 * saying so, on the one event or on every part; the resources all stay. */
static void test_huge_groups_cut_resources_kept(void **state)
{
    enum { G = 100000, N = 20000 };
    tsink_t *t = tsink_new();
    bg_config_audit_t cfg = base_cfg();
    bg_audit_t *a = pipeline_new(&cfg, t);
    static char gnames[G][8], names[N][16];
    static const char *groups[G];
    static bg_policy_resource_t res[N];
    for (int i = 0; i < G; i++) {
        snprintf(gnames[i], sizeof gnames[i], "g%06d", i);
        groups[i] = gnames[i];
    }
    for (int i = 0; i < N; i++) {
        int k = snprintf(names[i], sizeof names[i], "topic-%05d", i);
        res[i] = (bg_policy_resource_t){BG_RES_KAFKA_TOPIC, NULL, 0, names[i], (size_t)k};
    }
    bg_audit_event_t ev = big_event(res, 3);
    ev.principal.groups = groups;
    ev.principal.ngroups = G;
    assert_int_equal(bg_audit_emit(a, &ev), BG_AUDIT_OK); /* fits once cut: one event */
    ev.nresources = N;
    assert_int_equal(bg_audit_emit(a, &ev), BG_AUDIT_OK);
    assert_int_equal(bg_audit_flush(a, 5000), 0);
    json_t *one = json_loads(t->json[0], 0, NULL);
    assert_non_null(one);
    assert_null(json_object_get(one, "parts"));
    assert_int_equal(json_array_size(json_object_get(one, "resources")), 3);
    size_t n;
    json_t *j = check_parts(t, 1, res, N, &n);
    for (int k = 0; k < 2; k++) {
        json_t *e = k ? j : one;
        assert_string_equal(json_string_value(json_object_get(e, "detail")),
                            "(event truncated: too large)");
        json_t *g = json_object_get(json_object_get(e, "principal"), "groups");
        assert_int_equal(json_array_size(g), 64);
        assert_string_equal(json_string_value(json_array_get(g, 63)), "g000063");
    }
    json_decref(one);
    json_decref(j);
    bg_audit_free(a);
    tsink_free(t);
}

/* The parts of an event are admitted together: a queue without room for
 * all of them takes none (refused in block mode, every part counted as
 * dropped in drop mode), and an event of more parts than the queue holds is
 * taken by an empty queue (else it would never be). */
static void split_admission(bg_audit_on_failure_t mode)
{
    tsink_t *t = tsink_new();
    atomic_store(&t->stall, 1);
    bg_config_audit_t cfg = base_cfg();
    cfg.queue_size = 2;
    cfg.on_failure = mode;
    bg_audit_t *a = pipeline_new(&cfg, t);
    static char name[32000];
    memset(name, 0x01, sizeof name);
    bg_policy_resource_t res[5];
    for (int i = 0; i < 5; i++) /* three parts: two, two and one */
        res[i] = (bg_policy_resource_t){BG_RES_KAFKA_GROUP, NULL, 0, name, sizeof name};
    bg_audit_event_t ev = big_event(res, 5);
    assert_int_equal(emit_seq(a, "s", 0), BG_AUDIT_OK);
    WAIT_UNTIL(atomic_load(&t->entered) == 1);          /* the thread holds event 0 */
    assert_int_equal(emit_seq(a, "s", 1), BG_AUDIT_OK); /* one place left */
    assert_int_equal(bg_audit_emit(a, &ev),
                     mode == BG_AUDIT_BLOCK ? BG_AUDIT_REFUSED : BG_AUDIT_DROPPED);
    /* Drop mode bounds the events of admitted work too: only block mode
     * takes them past the bound. */
    if (mode == BG_AUDIT_DROP)
        assert_int_equal(bg_audit_emit_admitted(a, &ev), BG_AUDIT_DROPPED);
    bg_audit_stats_t st;
    bg_audit_stats(a, &st);
    assert_int_equal(st.queue_depth, 1); /* no part of it */
    assert_int_equal(st.emitted, 2);
    assert_int_equal(mode == BG_AUDIT_BLOCK ? st.refused : st.dropped,
                     mode == BG_AUDIT_BLOCK ? 1 : 6);
    atomic_store(&t->stall, 0);
    assert_int_equal(bg_audit_flush(a, 5000), 0);
    assert_int_equal(tsink_count(t), 2);
    assert_int_equal(bg_audit_emit(a, &ev), BG_AUDIT_OK); /* into the empty queue */
    assert_int_equal(bg_audit_flush(a, 5000), 0);
    size_t n;
    json_decref(check_parts(t, 2, res, 5, &n));
    assert_int_equal(n, 3);
    bg_audit_stats(a, &st);
    assert_int_equal(st.emitted, 5);
    bg_audit_free(a);
    tsink_free(t);
}

static void test_split_admission_block(void **state)
{
    split_admission(BG_AUDIT_BLOCK);
}
static void test_split_admission_drop(void **state)
{
    split_admission(BG_AUDIT_DROP);
}

/* n (at most 300) topics, each named by 32000 control bytes: about 190 KB
 * of JSON a name, escaped. */
static const bg_policy_resource_t *huge_topics(int n)
{
    static char name[32000];
    static bg_policy_resource_t res[300];
    assert_true(n <= 300);
    memset(name, 0x01, sizeof name);
    for (int i = 0; i < n; i++)
        res[i] = (bg_policy_resource_t){BG_RES_KAFKA_TOPIC, NULL, 0, name, sizeof name};
    return res;
}

/* An event naming far more than BG_AUDIT_MAX_EVENT_BYTES (300 names of
 * 32000 control bytes, about 57 MB of JSON; one Kafka request could name
 * them) is cut, not encoded whole: its first resources up to the budget, as
 * parts, each saying it was cut; counted in truncated. Before, all ~150
 * parts were encoded at once. */
static void test_over_budget_cut(void **state)
{
    enum { N = 300 };
    tsink_t *t = tsink_new();
    bg_config_audit_t cfg = base_cfg();
    bg_audit_t *a = pipeline_new(&cfg, t);
    const bg_policy_resource_t *res = huge_topics(N);
    size_t keep = bg_audit_resources_fit(res, N, BG_AUDIT_MAX_EVENT_BYTES);
    assert_true(keep > 0 && keep < N);
    assert_true(bg_audit_resources_json_len(res, keep) <= BG_AUDIT_MAX_EVENT_BYTES);
    assert_true(bg_audit_resources_json_len(res, keep + 1) > BG_AUDIT_MAX_EVENT_BYTES);
    bg_audit_event_t ev = big_event(res, N);
    assert_int_equal(bg_audit_emit(a, &ev), BG_AUDIT_OK);
    assert_int_equal(bg_audit_flush(a, 5000), 0);
    size_t n;
    json_t *j = check_parts(t, 0, res, keep, &n);
    assert_true(n <= 2 * BG_AUDIT_MAX_EVENT_BYTES / BG_AUDIT_RECORD_BYTES);
    assert_string_equal(json_string_value(json_object_get(j, "detail")),
                        "(event truncated: too large)");
    bg_audit_stats_t st;
    bg_audit_stats(a, &st);
    assert_int_equal(st.truncated, 1);
    assert_int_equal(st.emitted, n);
    json_decref(j);
    bg_audit_free(a);
    tsink_free(t);
}

/* Just under the budget (about 7.5 MB of resources): recorded whole, in
 * parts, nothing cut. */
static void test_under_budget_whole(void **state)
{
    enum { N = 43 };
    tsink_t *t = tsink_new();
    bg_config_audit_t cfg = base_cfg();
    bg_audit_t *a = pipeline_new(&cfg, t);
    const bg_policy_resource_t *res = huge_topics(N);
    assert_true(bg_audit_resources_json_len(res, N) <= BG_AUDIT_MAX_EVENT_BYTES);
    assert_true(bg_audit_resources_json_len(res, N) > BG_AUDIT_MAX_EVENT_BYTES - 200000);
    bg_audit_event_t ev = big_event(res, N);
    assert_int_equal(bg_audit_emit(a, &ev), BG_AUDIT_OK);
    assert_int_equal(bg_audit_flush(a, 5000), 0);
    size_t n;
    json_t *j = check_parts(t, 0, res, N, &n);
    assert_null(json_object_get(j, "detail"));
    bg_audit_stats_t st;
    bg_audit_stats(a, &st);
    assert_int_equal(st.truncated, 0);
    json_decref(j);
    bg_audit_free(a);
    tsink_free(t);
}

/* Drop mode with a full queue loses an event before encoding it: the loss
 * is logged as "queue full", not as what encoding it would have found
 * (here an event that cannot be encoded at all: "event too large"). */
static void test_drop_full_queue_not_encoded(void **state)
{
    char path[] = "/tmp/bg-audit-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    tsink_t *t = tsink_new();
    atomic_store(&t->stall, 1);
    bg_config_audit_t cfg = base_cfg();
    cfg.queue_size = 1;
    cfg.on_failure = BG_AUDIT_DROP;
    bg_audit_t *a = pipeline_new(&cfg, t);
    assert_int_equal(emit_seq(a, "s", 0), BG_AUDIT_OK);
    WAIT_UNTIL(atomic_load(&t->entered) == 1);          /* the thread holds event 0 */
    assert_int_equal(emit_seq(a, "s", 1), BG_AUDIT_OK); /* the queue is full */
    static char peer[BG_AUDIT_RECORD_BYTES + 1];
    memset(peer, 'p', sizeof peer - 1);
    bg_audit_event_t ev = big_event(NULL, 0);
    ev.peer = peer; /* no record holds it */
    bg_log_set_fd(fd);
    bg_log_set_level(BG_LOG_ERROR);
    assert_int_equal(bg_audit_emit(a, &ev), BG_AUDIT_DROPPED);
    bg_log_set_level(BG_LOG_OFF);
    bg_log_set_fd(2);
    char buf[4096] = "";
    ssize_t got = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    assert_true(got > 0);
    assert_non_null(strstr(buf, "audit events lost (queue full)"));
    bg_audit_stats_t st;
    bg_audit_stats(a, &st);
    assert_int_equal(st.dropped, 1);
    atomic_store(&t->stall, 0);
    assert_int_equal(bg_audit_flush(a, 5000), 0);
    bg_audit_free(a);
    tsink_free(t);
}

/* Spooled records are synced to disk soon after they are written, with no
 * flush asked for: during an outage the spool alone holds them. */
static void test_spool_synced_without_flush(void **state)
{
    char *dir = mkdir_tmp();
    tsink_t *t = tsink_new();
    bg_config_audit_t cfg = base_cfg();
    cfg.spool_dir = dir;
    bg_audit_t *a = pipeline_new(&cfg, t);
    atomic_store(&t->fail, 1);
    for (int n = 0; n < 50; n++)
        assert_int_equal(emit_seq(a, "s", (uint64_t)n), BG_AUDIT_OK);
    bg_audit_stats_t st;
    /* The spool gauges are published after the writes: wait for them to
     * show the bytes, so that unsynced == 0 means synced, not "not yet
     * published". */
    WAIT_UNTIL((bg_audit_stats(a, &st), st.spooled == 50 && st.spool_bytes > 0));
    WAIT_UNTIL((bg_audit_stats(a, &st), st.spool_unsynced == 0));
    atomic_store(&t->fail, 0);
    WAIT_UNTIL(tsink_count(t) == 50);
    bg_audit_free(a);
    tsink_free(t);
    rm_rf(dir);
    free(dir);
}

/* Spool full in block mode: stop admitting; recover when the primary returns. */
static void test_spool_full_blocks(void **state)
{
    char *dir = mkdir_tmp();
    tsink_t *t = tsink_new();
    atomic_store(&t->fail, 1);
    bg_config_audit_t cfg = base_cfg();
    cfg.spool_dir = dir;
    cfg.spool_max_bytes = 4096;
    bg_audit_t *a = pipeline_new(&cfg, t);
    int n = 0, refused = 0;
    for (; n < 2000 && !refused; n++) {
        int rc = emit_seq(a, "s", (uint64_t)n);
        refused = rc == BG_AUDIT_REFUSED;
        if (n % 10 == 0) { /* fails once events are held: the spool is full */
            int flushed = bg_audit_flush(a, 5000);
            assert_int_equal(flushed, bg_audit_admitting(a) ? 0 : -1);
        }
    }
    assert_true(refused);
    assert_int_equal(bg_audit_admitting(a), 0);
    int sent = n - 1; /* the last one was refused */
    atomic_store(&t->fail, 0);
    WAIT_UNTIL(bg_audit_admitting(a));
    WAIT_UNTIL(tsink_count(t) == (size_t)sent);
    for (int i = 0; i < sent; i++)
        assert_int_equal(seq_of(t->json[i]), i);
    bg_audit_free(a);
    tsink_free(t);
    rm_rf(dir);
    free(dir);
}

/* 1 when t holds every seq 0..last (in any order, repeats allowed). */
static int seqs_delivered(tsink_t *t, uint64_t last)
{
    char *seen = calloc(last + 1, 1);
    size_t c = tsink_count(t), k = 0;
    for (size_t i = 0; i < c; i++) {
        int64_t q = seq_of(t->json[i]);
        if (q >= 0 && (uint64_t)q <= last && !seen[q]++)
            k++;
    }
    free(seen);
    return k == last + 1;
}

/* Block mode, the spool full, events held: once the drain has emptied the
 * spool, a new event goes behind the held ones (older), never into the
 * spool ahead of them. The drain is stalled in the sink while the new
 * event is queued, so the audit thread routes it right after the drain,
 * before its next try of the held ones. */
static void test_new_event_waits_behind_held(void **state)
{
    char *dir = mkdir_tmp();
    tsink_t *t = tsink_new();
    atomic_store(&t->fail, 1);
    bg_config_audit_t cfg = base_cfg();
    cfg.spool_dir = dir;
    cfg.spool_max_bytes = 4096;
    bg_audit_t *a = pipeline_new(&cfg, t);
    uint64_t n = 0;
    while (n < 2000 && bg_audit_admitting(a)) {
        assert_int_equal(emit_kind(a, BG_AUDIT_EV_DECISION, "s", n++, bg_audit_emit_admitted),
                         BG_AUDIT_OK);
        if (n % 10 == 0)
            (void)bg_audit_flush(a, 5000); /* fails once events are held */
    }
    assert_false(bg_audit_admitting(a)); /* the spool is full: events held */
    atomic_store(&t->stall, 1);
    atomic_store(&t->entered, 0);
    atomic_store(&t->fail, 0);
    WAIT_UNTIL(atomic_load(&t->entered) == 1); /* the drain, stalled in the sink */
    assert_int_equal(emit_kind(a, BG_AUDIT_EV_DECISION, "s", n, bg_audit_emit_admitted),
                     BG_AUDIT_OK);
    atomic_store(&t->stall, 0);
    WAIT_UNTIL(bg_audit_admitting(a));
    assert_int_equal(bg_audit_flush(a, 5000), 0);
    WAIT_UNTIL(seqs_delivered(t, n));
    size_t c = tsink_count(t);
    for (size_t i = 1; i < c; i++) /* repeats allowed (at least once), never a step back */
        assert_true(seq_of(t->json[i]) >= seq_of(t->json[i - 1]));
    assert_int_equal(seq_of(t->json[0]), 0);
    bg_audit_free(a);
    tsink_free(t);
    rm_rf(dir);
    free(dir);
}

/* A record the primary reports failed without its bytes (it cannot give it
 * back) is lost: counted as dropped, not forgotten. */
static void test_failed_without_bytes_counted_dropped(void **state)
{
    tsink_t *t = tsink_rejecting(-1); /* async, rejects nothing */
    atomic_store(&t->lose, 1);
    bg_config_audit_t cfg = base_cfg();
    bg_audit_t *a = pipeline_new(&cfg, t);
    for (uint64_t i = 0; i < 3; i++)
        assert_int_equal(emit_seq(a, "s", i), BG_AUDIT_OK);
    assert_int_equal(bg_audit_flush(a, 5000), 0);
    bg_audit_stats_t st;
    bg_audit_stats(a, &st);
    assert_int_equal(st.sink_errors, 3);
    assert_int_equal(st.dropped, 3);
    assert_int_equal(tsink_count(t), 0);
    bg_audit_free(a);
    tsink_free(t);
}

/* Events spooled by a process that stops (or crashes) before the primary
 * returned are delivered, in order, by the next process at start-up. */
static void test_restart_drains_backlog(void **state)
{
    char *dir = mkdir_tmp();
    tsink_t *t = tsink_new();
    atomic_store(&t->fail, 1);
    bg_config_audit_t cfg = base_cfg();
    cfg.spool_dir = dir;
    bg_audit_t *a = pipeline_new(&cfg, t);
    for (int i = 0; i < 300; i++)
        assert_int_equal(emit_seq(a, "s", (uint64_t)i), BG_AUDIT_OK);
    bg_audit_free(a); /* nothing reached the primary */
    assert_int_equal(tsink_count(t), 0);
    tsink_free(t);

    t = tsink_new();
    a = pipeline_new(&cfg, t);
    WAIT_UNTIL(tsink_count(t) == 300);
    for (int i = 0; i < 300; i++)
        assert_int_equal(seq_of(t->json[i]), i);
    bg_audit_free(a);
    tsink_free(t);
    rm_rf(dir);
    free(dir);
}

/* Reads a JSON-lines file into seq numbers; returns how many. */
static size_t file_seqs(const char *path, int64_t *out, size_t max)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    size_t n = 0;
    while (f && n < max && fgets(line, sizeof line, f))
        out[n++] = seq_of(line);
    if (f)
        fclose(f);
    return n;
}

/* A record the primary refuses for good (too large for the topic) must not
 * hold up the spool for ever, nor take the records sent beside it down with
 * it: the rejected group is spooled, the drain finds the culprit by sending
 * one record at a time, writes it to the dead-letter file beside the spool,
 * and delivers everything else in order. */
static void test_rejected_record_dead_lettered(void **state)
{
    char *dir = mkdir_tmp(), path[4096];
    tsink_t *t = tsink_rejecting(50);
    bg_config_audit_t cfg = base_cfg();
    cfg.spool_dir = dir;
    bg_audit_t *a = pipeline_new(&cfg, t);
    for (int i = 0; i < 100; i++)
        assert_int_equal(emit_seq(a, "s", (uint64_t)i), BG_AUDIT_OK);
    bg_audit_stats_t st;
    WAIT_UNTIL(tsink_count(t) == 99 && (bg_audit_stats(a, &st), st.rejected == 1));
    for (int i = 0; i < 99; i++)
        assert_int_equal(seq_of(t->json[i]), i < 50 ? i : i + 1);
    snprintf(path, sizeof path, "%s/rejected.jsonl", dir);
    int64_t dead[4];
    assert_int_equal(file_seqs(path, dead, 4), 1);
    assert_int_equal(dead[0], 50);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(bg_audit_admitting(a), 1);
    WAIT_UNTIL((bg_audit_stats(a, &st), st.spool_bytes == 0)); /* acked past the culprit */
    assert_int_equal(emit_seq(a, "s", 100), BG_AUDIT_OK); /* and live again */
    WAIT_UNTIL(tsink_count(t) == 100);
    assert_int_equal(seq_of(t->json[99]), 100);
    /* The operator moves the file away: the next culprit starts a new one. */
    char moved[4200];
    snprintf(moved, sizeof moved, "%s/rejected.old", dir);
    assert_int_equal(rename(path, moved), 0);
    t->reject_seq2 = 150;
    for (int i = 101; i < 200; i++)
        assert_int_equal(emit_seq(a, "s", (uint64_t)i), BG_AUDIT_OK);
    WAIT_UNTIL(tsink_count(t) == 198 && (bg_audit_stats(a, &st), st.rejected == 2));
    assert_int_equal(file_seqs(path, dead, 4), 1);
    assert_int_equal(dead[0], 150);
    assert_int_equal(file_seqs(moved, dead, 4), 1);
    assert_int_equal(dead[0], 50);
    bg_audit_free(a);
    tsink_free(t);
    rm_rf(dir);
    free(dir);
}

/* Without a spool (block mode) the rejected group is held; the held records
 * then go one at a time, so the innocent ones are delivered and the culprit
 * alone is lost, counted as rejected and dropped, and admission resumes. */
static void test_rejected_record_without_spool(void **state)
{
    tsink_t *t = tsink_rejecting(5);
    bg_config_audit_t cfg = base_cfg();
    bg_audit_t *a = pipeline_new(&cfg, t);
    for (int i = 0; i < 10; i++)
        assert_int_equal(emit_seq(a, "s", (uint64_t)i), BG_AUDIT_OK);
    bg_audit_stats_t st;
    WAIT_UNTIL((bg_audit_stats(a, &st), st.rejected == 1) && bg_audit_admitting(a));
    assert_int_equal(bg_audit_flush(a, 5000), 0);
    bg_audit_stats(a, &st);
    assert_int_equal(st.dropped, 1);
    /* every other seq arrived (a probe may have sent one twice), 5 never */
    int seen[10] = {0};
    for (size_t i = 0; i < tsink_count(t); i++)
        seen[seq_of(t->json[i])]++;
    for (int i = 0; i < 10; i++)
        assert_true(i == 5 ? seen[i] == 0 : seen[i] >= 1);
    bg_audit_free(a);
    tsink_free(t);
}

/* Bytes in a file (0 when there is none). */
static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

/* The dead-letter file has a bound, a quarter of spool_max_bytes: a topic
 * that refuses every event (clients can make events large) must not fill
 * the disk through it. Drop mode: past the bound a culprit is lost,
 * counted as rejected and dropped, and the spool still drains. */
static void test_dead_letter_bounded_drop(void **state)
{
    char *dir = mkdir_tmp(), path[4096];
    tsink_t *t = tsink_rejecting(-1);
    atomic_store(&t->reject_all, 1);
    bg_config_audit_t cfg = base_cfg();
    cfg.on_failure = BG_AUDIT_DROP;
    cfg.spool_dir = dir;
    cfg.spool_max_bytes = 4 * 4096; /* the dead-letter file: 4096 */
    bg_audit_t *a = pipeline_new(&cfg, t);
    for (int i = 0; i < 40; i++)
        assert_int_equal(emit_seq(a, "s", (uint64_t)i), BG_AUDIT_OK);
    bg_audit_stats_t st;
    WAIT_UNTIL((bg_audit_stats(a, &st), st.rejected == 40 && st.spool_bytes == 0));
    snprintf(path, sizeof path, "%s/rejected.jsonl", dir);
    int64_t dead[64];
    size_t kept = file_seqs(path, dead, 64);
    long line = file_size(path) / (long)kept;
    assert_true(kept > 0 && kept < 40);
    assert_true(file_size(path) < 4096 + line); /* one record past the bound at most */
    assert_int_equal(st.dropped, 40 - kept);
    for (size_t i = 0; i < kept; i++) /* the first ones, in order */
        assert_int_equal(dead[i], (int64_t)i);
    bg_audit_free(a);
    tsink_free(t);
    rm_rf(dir);
    free(dir);
}

/* A dead-letter file of exactly its bound is full: a rejected record is
 * not appended (drop mode: lost, counted rejected and dropped). */
static void test_dead_letter_full_at_its_bound(void **state)
{
    char *dir = mkdir_tmp(), path[4096];
    snprintf(path, sizeof path, "%s/rejected.jsonl", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 4096; i++)
        fputc(i % 64 == 63 ? '\n' : 'x', f);
    fclose(f);
    tsink_t *t = tsink_rejecting(-1);
    atomic_store(&t->reject_all, 1);
    bg_config_audit_t cfg = base_cfg();
    cfg.on_failure = BG_AUDIT_DROP;
    cfg.spool_dir = dir;
    cfg.spool_max_bytes = 4 * 4096; /* the dead-letter file: 4096 */
    bg_audit_t *a = pipeline_new(&cfg, t);
    assert_int_equal(emit_seq(a, "s", 0), BG_AUDIT_OK);
    bg_audit_stats_t st;
    WAIT_UNTIL((bg_audit_stats(a, &st), st.rejected == 1 && st.spool_bytes == 0));
    assert_int_equal(st.dropped, 1);
    assert_int_equal(file_size(path), 4096);
    bg_audit_free(a);
    tsink_free(t);
    rm_rf(dir);
    free(dir);
}

/* Block mode: past the bound a culprit stays in the spool (nothing is
 * lost), as with a dead-letter file that cannot be written; once the
 * operator moves the file away, the rest is dead-lettered. */
static void test_dead_letter_bounded_block(void **state)
{
    char *dir = mkdir_tmp(), path[4096], moved[4200];
    tsink_t *t = tsink_rejecting(-1);
    atomic_store(&t->reject_all, 1);
    bg_config_audit_t cfg = base_cfg();
    cfg.spool_dir = dir;
    cfg.spool_max_bytes = 4 * 4096;
    bg_audit_t *a = pipeline_new(&cfg, t);
    for (int i = 0; i < 40; i++)
        assert_int_equal(emit_seq(a, "s", (uint64_t)i), BG_AUDIT_OK);
    snprintf(path, sizeof path, "%s/rejected.jsonl", dir);
    WAIT_UNTIL(file_size(path) >= 4096);
    /* The counter follows each write to the file: wait until it caught up
     * with what the file holds (reading it at once raced the last write). */
    bg_audit_stats_t st;
    int64_t seen[64];
    WAIT_UNTIL((bg_audit_stats(a, &st), st.rejected == (uint64_t)file_seqs(path, seen, 64)));
    uint64_t rejected = st.rejected;
    usleep(1500000); /* several drain retries */
    bg_audit_stats(a, &st);
    assert_int_equal(st.rejected, rejected); /* the file took no more */
    assert_true(rejected < 40);
    assert_int_equal(st.dropped, 0);
    assert_true(st.spool_bytes > 0); /* the rest waits in the spool */
    snprintf(moved, sizeof moved, "%s/rejected.old", dir);
    assert_int_equal(rename(path, moved), 0);
    WAIT_UNTIL((bg_audit_stats(a, &st), st.rejected == 40 && st.spool_bytes == 0));
    int64_t dead[64];
    size_t n1 = file_seqs(moved, dead, 64);
    size_t n2 = file_seqs(path, dead + n1, 64 - n1);
    assert_int_equal(n1, rejected);
    assert_int_equal(n1 + n2, 40);
    for (int i = 0; i < 40; i++)
        assert_int_equal(dead[i], i);
    assert_int_equal(st.dropped, 0);
    bg_audit_free(a);
    tsink_free(t);
    rm_rf(dir);
    free(dir);
}

/* Checks that the delivered events have ascending seq numbers. */
static void assert_ascending(tsink_t *t)
{
    pthread_mutex_lock(&t->mu);
    for (size_t i = 1; i < t->n; i++)
        assert_true(seq_of(t->json[i - 1]) < seq_of(t->json[i]));
    pthread_mutex_unlock(&t->mu);
}

/* An outage spooled over several segments; then segment 2 is deleted by an
 * operator (as_dir: replaced by a directory, which no read gets through,
 * as a segment that fails with EIO or EACCES) and the primary comes back.
 * The rest of the backlog is delivered, the spool empties, and live events
 * go to the primary directly again. Before: a deleted segment left its
 * bytes in the backlog for good (spool_bytes never 0, every live event
 * spooled, the drain spinning); an unreadable one stopped every delivery
 * behind it, with nothing in the log. */
static void segment_lost_in_outage(int as_dir)
{
    char *dir = mkdir_tmp(), p[4096];
    tsink_t *t = tsink_new();
    bg_config_audit_t cfg = base_cfg();
    cfg.spool_dir = dir;
    cfg.spool_max_bytes = 128u << 10; /* segments of 32 KiB: four */
    bg_audit_t *a = pipeline_new(&cfg, t);
    atomic_store(&t->fail, 1);
    for (int n = 0; n < 600; n++)
        assert_int_equal(emit_seq(a, "s", (uint64_t)n), BG_AUDIT_OK);
    assert_int_equal(bg_audit_flush(a, 5000), 0);
    snprintf(p, sizeof p, "%s/spool-000003.seg", dir);
    assert_int_equal(access(p, F_OK), 0); /* three segments at least */
    snprintf(p, sizeof p, "%s/spool-000002.seg", dir);
    assert_int_equal(unlink(p), 0);
    if (as_dir)
        assert_int_equal(mkdir(p, 0700), 0);
    atomic_store(&t->fail, 0);
    bg_audit_stats_t st;
    WAIT_UNTIL((bg_audit_stats(a, &st), st.spool_bytes == 0));
    assert_int_equal(st.spool_unreadable, as_dir ? 1 : 0);
    size_t backlog = tsink_count(t);
    assert_true(backlog > 0 && backlog < 600);
    assert_int_equal(atomic_load(&t->live_delivered), 0);
    for (int n = 600; n < 700; n++)
        assert_int_equal(emit_seq(a, "s", (uint64_t)n), BG_AUDIT_OK);
    WAIT_UNTIL(atomic_load(&t->live_delivered) == 100); /* not through the spool */
    assert_int_equal(tsink_count(t), backlog + 100);
    assert_ascending(t);
    if (as_dir) {
        snprintf(p, sizeof p, "%s/spool-000002.seg.unreadable", dir);
        assert_int_equal(access(p, F_OK), 0);
    }
    bg_audit_free(a);
    tsink_free(t);
    rm_rf(dir);
    free(dir);
}

static void test_deleted_segment_backlog_drains(void **state) { segment_lost_in_outage(0); }
static void test_unreadable_segment_backlog_drains(void **state) { segment_lost_in_outage(1); }

/* The active segment deleted during an outage: the events in it are
 * counted lost (dropped), not appended on into a file nobody reads; later
 * events go to a new segment and are delivered. */
static void test_deleted_active_segment_counted(void **state)
{
    char *dir = mkdir_tmp(), p[4096];
    tsink_t *t = tsink_new();
    bg_config_audit_t cfg = base_cfg();
    cfg.spool_dir = dir;
    bg_audit_t *a = pipeline_new(&cfg, t);
    atomic_store(&t->fail, 1);
    for (int n = 0; n < 50; n++)
        assert_int_equal(emit_seq(a, "s", (uint64_t)n), BG_AUDIT_OK);
    assert_int_equal(bg_audit_flush(a, 5000), 0);
    snprintf(p, sizeof p, "%s/spool-000001.seg", dir);
    assert_int_equal(unlink(p), 0);
    bg_audit_stats_t st;
    WAIT_UNTIL((bg_audit_stats(a, &st), st.dropped == 50));
    for (int n = 50; n < 60; n++) /* still down: spooled into a new segment */
        assert_int_equal(emit_seq(a, "s", (uint64_t)n), BG_AUDIT_OK);
    assert_int_equal(bg_audit_flush(a, 5000), 0);
    atomic_store(&t->fail, 0);
    WAIT_UNTIL(tsink_count(t) == 10);
    assert_int_equal(seq_of(t->json[0]), 50);
    assert_ascending(t);
    bg_audit_stats(a, &st);
    assert_int_equal(st.dropped, 50);
    bg_audit_free(a);
    tsink_free(t);
    rm_rf(dir);
    free(dir);
}

static void test_bad_config(void **state)
{
    char err[256] = "";
    bg_config_audit_t cfg = base_cfg();
    assert_null(bg_audit_new(&cfg, "i", NULL, err, sizeof err));
    assert_non_null(strstr(err, "kafka_topic"));
    cfg.kafka_topic = "busgate.audit";
    assert_null(bg_audit_new(&cfg, "i", NULL, err, sizeof err));
    cfg.kafka_topic = NULL;
    cfg.file = "/proc/bg-no-such-dir/audit.jsonl";
    assert_null(bg_audit_new(&cfg, "i", NULL, err, sizeof err));
    assert_non_null(strstr(err, "audit file"));
    assert_int_equal(bg_audit_emit(NULL, NULL), BG_AUDIT_EINVAL);
    bg_audit_free(NULL);
}

int main(void)
{
    bg_log_set_level(BG_LOG_OFF);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_sink_short_write),
        cmocka_unit_test(test_file_sink_many_threads),
        cmocka_unit_test(test_queue_bound_block),
        cmocka_unit_test(test_queue_bound_drop),
        cmocka_unit_test(test_no_spool_block_then_recover),
        cmocka_unit_test(test_no_spool_recovers_while_events_arrive),
        cmocka_unit_test(test_no_spool_held_delivered_at_stop),
        cmocka_unit_test(test_no_spool_failed_held_keep_order),
        cmocka_unit_test(test_flush_fails_while_held),
        cmocka_unit_test(test_no_spool_drop_counts),
        cmocka_unit_test(test_drop_no_spool_primary_comes_back),
        cmocka_unit_test(test_outage_spool_drain_in_order),
        cmocka_unit_test(test_spool_synced_without_flush),
        cmocka_unit_test(test_huge_names_first_split),
        cmocka_unit_test(test_thousands_of_resources_split),
        cmocka_unit_test(test_huge_groups_cut_resources_kept),
        cmocka_unit_test(test_split_admission_block),
        cmocka_unit_test(test_split_admission_drop),
        cmocka_unit_test(test_over_budget_cut),
        cmocka_unit_test(test_under_budget_whole),
        cmocka_unit_test(test_drop_full_queue_not_encoded),
        cmocka_unit_test(test_spool_full_blocks),
        cmocka_unit_test(test_new_event_waits_behind_held),
        cmocka_unit_test(test_failed_without_bytes_counted_dropped),
        cmocka_unit_test(test_restart_drains_backlog),
        cmocka_unit_test(test_rejected_record_dead_lettered),
        cmocka_unit_test(test_rejected_record_without_spool),
        cmocka_unit_test(test_dead_letter_bounded_drop),
        cmocka_unit_test(test_dead_letter_bounded_block),
        cmocka_unit_test(test_dead_letter_full_at_its_bound),
        cmocka_unit_test(test_deleted_segment_backlog_drains),
        cmocka_unit_test(test_unreadable_segment_backlog_drains),
        cmocka_unit_test(test_deleted_active_segment_counted),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
