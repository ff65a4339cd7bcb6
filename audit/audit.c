/* Audit pipeline: bounded MPSC queue from the workers to one audit thread
 * that writes the primary sink, the local file copy and the spool.
 *
 * Routing on the audit thread, per record, in order:
 *   1. records held back (block mode, nowhere to put them) go first;
 *   2. while the spool has a backlog, new records are appended behind it so
 *      the drain keeps the emit order;
 *   3. otherwise the primary sink takes them; what it refuses now, or fails
 *      later (Kafka delivery report), goes to the spool;
 *   3a. a new record bound for the spool while the primary still has live
 *      records pending (taken, no outcome yet) is parked in memory instead:
 *      any of those may still fail and must reach the spool first. Failed
 *      live records are collected too, because a sink does not report them
 *      in order (librdkafka purges its partition queue before the requests
 *      in flight). Once nothing live is pending, the failed ones go to the
 *      spool sorted by emit order, then the parked ones; the drain also
 *      waits for that. Parking is bounded: at audit.queue_size
 *      parked records the thread stops taking from the queue (back-pressure
 *      into emit);
 *   4. no spool, or spool full/unwritable: block mode holds the record and
 *      stops admitting; drop mode counts it lost.
 * The backlog drains through the primary with exponential backoff
 * (250 ms .. 5 s); a batch is acked in the spool only after the primary has
 * confirmed every record of it (at-least-once). */
#include "audit/audit.h"
#include "audit/audit_sink.h"
#include "audit/audit_spool.h"

#include "broker/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BG_AUDIT_BATCH 1024
#define BG_AUDIT_DRAIN_BATCH 512
#define BG_AUDIT_BACKOFF_MIN_MS 250
#define BG_AUDIT_BACKOFF_MAX_MS 5000
#define BG_AUDIT_TICK_MS 50
/* Spooled records reach the disk within this (plus a tick), as the file
 * sink's lines do: the spool holds events no sink has, so it must not keep
 * them in the page cache for as long as an outage lasts. */
#define BG_AUDIT_SPOOL_SYNC_MS 100
/* After a batch the audit thread naps this long before it asks emitters to
 * wake it again: under load events then arrive in batches instead of one
 * futex wake-up each (the data path pays for every wake-up, and on a
 * virtual machine a wake-up costs tens of microseconds). An emitter that
 * fills the queue to half its size wakes it at once. Kafka latency probe at
 * ~3,000 requests/s: busgate CPU with auditing vs without +34 % at 1 ms,
 * +11 % at 10 ms. */
#define BG_AUDIT_LINGER_US 10000

typedef struct bg_audit_qe_s {
    struct bg_audit_qe_s *next;
    uint64_t order; /* emit order (failed list) */
    uint32_t len;
    uint8_t data[];
} bg_audit_qe_t;

struct bg_audit_s {
    char *instance;
    bg_audit_on_failure_t on_failure;
    uint32_t qcap;

    pthread_mutex_t mu;
    pthread_cond_t wake, flushed;
    bg_audit_qe_t *head, *tail; /* queue, under mu */
    int stop;
    int idle;     /* the audit thread waits for a wake-up (emit signals only then) */
    int lingered; /* it has napped once since its last batch */
    uint64_t flush_req, flush_done;
    int flush_rc;
    pthread_t thread;
    int started;

    /* audit thread only */
    bg_audit_sink_t *primary, *copy;
    bg_audit_spool_t *spool;
    bg_audit_qe_t *held, *held_tail; /* block mode: nowhere to put them yet */
    bg_audit_qe_t *parked, *parked_tail; /* waiting for the primary's live pending (3a) */
    size_t nparked;
    bg_audit_qe_t *failed, *failed_tail; /* live records the primary failed (3a) */
    size_t nfailed;
    uint64_t order; /* last emit order handed to the primary */
    int64_t retry_at, backoff;
    int64_t held_retry_at;
    int64_t down_probe_at; /* drop mode, no spool: next write tried on a down primary */
    int held_probe_ok; /* a probe was delivered since the last hold */
    int drain_failed;
    /* Rejected records (see on_rejected): a drain round with a rejection is
     * retried one record at a time for isolate_left records; a record
     * rejected alone is the culprit and goes to the dead-letter file. */
    int drain_rejected;
    uint32_t isolate_left;
    bg_audit_qe_t *iso; /* the record of a one-record round */
    int probing;        /* a held-record probe is out */
    int probe_rejected; /* ...and the primary rejected it */
    int held_isolate;   /* a rejection was seen: held records go one at a time */
    int64_t last_reject_log;
    char *dead_path;    /* spool_dir/rejected.jsonl; NULL without a spool */
    uint64_t dead_max;  /* its bound: spool_max_bytes / 4 (0: none, as the spool) */
    int64_t last_dead_full_log;
    int dead_ok; /* the dead-letter file took the record */

    _Atomic uint32_t qlen;
    _Atomic int sink_ok; /* 0 while records are held (block mode) */
    _Atomic uint64_t emitted, delivered, spooled, drained, dropped, refused, sink_errors;
    _Atomic uint64_t rejected, truncated;
    _Atomic int64_t last_trunc_log;
    _Atomic uint64_t spool_bytes, spool_corrupt, spool_unreadable, spool_unsynced;
    _Atomic int64_t last_drop_log;
    int64_t spool_synced_ms; /* last periodic spool sync (audit thread) */
};

static int64_t bg_audit__mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* ---- emit (worker threads) ---- */

static void bg_audit__log_loss(bg_audit_t *a, const char *why)
{
    int64_t now = bg_audit__mono_ms(), last = atomic_load(&a->last_drop_log);
    if (now - last < 1000 || !atomic_compare_exchange_strong(&a->last_drop_log, &last, now))
        return;
    bg_log_error("audit", "audit events lost (%s); %llu dropped so far", why,
                 (unsigned long long)atomic_load(&a->dropped));
}

/* The largest JSON of one event (or part): its record, with the session id
 * in front, stays within a spool record (BG_AUDIT_SPOOL_MAX_RECORD). */
#define BG_AUDIT_JSON_MAX (BG_AUDIT_SPOOL_MAX_RECORD / 2)
/* What the member "resources" adds around its elements: ,"resources":[ ] */
#define BG_AUDIT_RES_OVERHEAD (sizeof ",\"resources\":[]" - 1)

/* The entries of one emit, in order (a split event has one per part). */
typedef struct bg_audit_qlist_s {
    bg_audit_qe_t *head, *tail;
    uint32_t n;
} bg_audit_qlist_t;

static void bg_audit__free_list(bg_audit_qe_t *e);

static int64_t bg_audit__wall_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Appends an entry for json[0..n) keyed by ev's session id; -1 when out of
 * memory. */
static int bg_audit__push(bg_audit_qlist_t *l, const bg_audit_event_t *ev, const char *json,
                          size_t n)
{
    const char *key = ev->session_id ? ev->session_id : "";
    size_t klen = strlen(key) > 0xffff ? 0xffff : strlen(key);
    bg_audit_qe_t *qe = malloc(sizeof *qe + 2 + klen + n);
    if (!qe)
        return -1;
    qe->next = NULL;
    qe->len = (uint32_t)bg_audit_rec_build(qe->data, 2 + klen + n, key, klen, json, n);
    if (l->tail)
        l->tail->next = qe;
    else
        l->head = qe;
    l->tail = qe;
    l->n++;
    return 0;
}

/* The JSON length of ev without its resources, part and parts counted at
 * their widest: what every part of it repeats. */
static size_t bg_audit__frame_len(const bg_audit_t *a, const bg_audit_event_t *ev)
{
    bg_audit_event_t f = *ev;
    f.resources = NULL;
    f.nresources = 0;
    f.part = f.parts = UINT32_MAX;
    return bg_audit_json_len(&f, a->instance);
}

/* Resources per part, greedily by encoded size: part p holds the next
 * cnt[p] resources. Returns the number of parts (>= 1), 0 when out of
 * memory. *cnt is malloc'd, the caller frees it. */
static uint32_t bg_audit__plan(const bg_audit_event_t *ev, const size_t *len, size_t room,
                               size_t **cnt)
{
    uint32_t parts = 0;
    size_t cap = 0, *c = NULL;
    for (size_t i = 0; i < ev->nresources;) {
        size_t used = 0, k = 0;
        while (i < ev->nresources && (k == 0 || used + 1 + len[i] <= room))
            used += (k++ ? 1 : 0) + len[i++];
        if (parts == cap) {
            size_t *m = realloc(c, (cap = cap ? cap * 2 : 8) * sizeof *c);
            if (!m) {
                free(c);
                return 0;
            }
            c = m;
        }
        c[parts++] = k;
    }
    *cnt = c;
    return parts;
}

/* Splits ev (all of it but the resources fits in json, of capacity
 * BG_AUDIT_JSON_MAX, with room for len-sized resources) into parts: every
 * field repeated, each part its own event id (the first keeps an id the
 * emitter set) and a consecutive slice of the resources. */
static int bg_audit__split(const bg_audit_t *a, const bg_audit_event_t *ev, const size_t *len,
                           size_t room, char *json, bg_audit_qlist_t *l)
{
    size_t *cnt = NULL, at = 0;
    uint32_t parts = bg_audit__plan(ev, len, room, &cnt);
    int rc = parts ? 0 : -1;
    for (uint32_t p = 0; rc == 0 && p < parts; p++) {
        bg_audit_event_t part = *ev;
        part.resources = ev->resources + at;
        part.nresources = cnt[p];
        part.part = p + 1;
        part.parts = parts;
        part.event_id = p == 0 ? ev->event_id : NULL;
        at += cnt[p];
        size_t n = bg_audit_encode_json(&part, a->instance, json, BG_AUDIT_JSON_MAX);
        rc = n ? bg_audit__push(l, &part, json, n) : -1;
    }
    free(cnt);
    return rc;
}

_Static_assert(BG_AUDIT_RECORD_BYTES == BG_AUDIT_JSON_MAX, "one record's JSON");

/* An emitter's event with more than BG_AUDIT_MAX_EVENT_BYTES of resources
 * (len[i] each): cut to the first that fit, detail saying so, counted and
 * logged (rate-limited). A safety net: the Kafka adapter refuses such a
 * request before it is decided, AMQP names three short ones at most.
 * Returns 1 when it cut. */
static int bg_audit__cut(bg_audit_t *a, bg_audit_event_t *e, const size_t *len)
{
    size_t used = 0, k = 0;
    for (; k < e->nresources; k++) {
        size_t add = (k ? 1 : 0) + len[k];
        if (used + add > BG_AUDIT_MAX_EVENT_BYTES)
            break;
        used += add;
    }
    if (k == e->nresources)
        return 0;
    size_t had = e->nresources;
    e->nresources = k;
    e->detail = "(event truncated: too large)";
    atomic_fetch_add(&a->truncated, 1);
    int64_t now = bg_audit__mono_ms(), last = atomic_load(&a->last_trunc_log);
    if (now - last >= 1000 && atomic_compare_exchange_strong(&a->last_trunc_log, &last, now))
        bg_log_warn("audit",
                    "audit event of %zu resources cut to the first %zu (more than %u "
                    "bytes of JSON); %llu cut so far",
                    had, k, BG_AUDIT_MAX_EVENT_BYTES,
                    (unsigned long long)atomic_load(&a->truncated));
    return 1;
}

/* An event too large for one record (BG_AUDIT_JSON_MAX): written as parts
 * that share every field but the resources, which are never dropped nor
 * cut. What is not resources is cut down only when it would crowd them out
 * (more than half a record, or no room for the largest resource): the
 * first 64 groups, and the detail "(event truncated: too large)". */
static int bg_audit__encode_large(bg_audit_t *a, const bg_audit_event_t *ev, char *json,
                                  bg_audit_qlist_t *l, const char **why)
{
    bg_audit_event_t e = *ev;
    size_t *len = e.nresources ? malloc(e.nresources * sizeof *len) : NULL, maxr = 0;
    if (e.nresources && !len)
        return -1;
    for (size_t i = 0; i < e.nresources; i++) {
        len[i] = bg_audit_json_resource_len(&e.resources[i]);
        maxr = len[i] > maxr ? len[i] : maxr;
    }
    size_t frame = bg_audit__frame_len(a, &e), lim = BG_AUDIT_JSON_MAX - 1; /* and a NUL */
    int rc = -1;
    if (frame > BG_AUDIT_JSON_MAX / 2 || frame + BG_AUDIT_RES_OVERHEAD + maxr > lim) {
        e.principal.ngroups = e.principal.ngroups > 64 ? 64 : e.principal.ngroups;
        e.detail = "(event truncated: too large)";
        frame = bg_audit__frame_len(a, &e);
        size_t n = bg_audit_encode_json(&e, a->instance, json, BG_AUDIT_JSON_MAX);
        if (n) { /* fits whole now */
            rc = bg_audit__push(l, &e, json, n);
            goto out;
        }
    }
    *why = "event too large";
    if (bg_audit__cut(a, &e, len)) /* past the budget: the rest is never encoded */
        frame = bg_audit__frame_len(a, &e);
    if (e.nresources && frame + BG_AUDIT_RES_OVERHEAD + maxr <= lim) {
        *why = "out of memory";
        rc = bg_audit__split(a, &e, len, lim - frame - BG_AUDIT_RES_OVERHEAD, json, l);
    }
out:
    free(len);
    return rc;
}

/* Encodes ev into fresh queue entries: one, or one per part of an event
 * too large for a record (see encode_large). Returns 0, or -1 with nothing
 * in l and why set. */
static int bg_audit__encode(bg_audit_t *a, const bg_audit_event_t *ev, bg_audit_qlist_t *l,
                            const char **why)
{
    char stack[8192], *json = stack;
    bg_audit_event_t e = *ev;
    e.part = e.parts = 0;
    *l = (bg_audit_qlist_t){NULL, NULL, 0};
    *why = "out of memory";
    size_t n = bg_audit_encode_json(&e, a->instance, json, sizeof stack);
    if (n)
        return bg_audit__push(l, &e, json, n);
    if (!(json = malloc(BG_AUDIT_JSON_MAX)))
        return -1;
    if (!e.time_ms) /* every part has the same time */
        e.time_ms = bg_audit__wall_ms();
    n = bg_audit_encode_json(&e, a->instance, json, BG_AUDIT_JSON_MAX);
    int rc = n ? bg_audit__push(l, &e, json, n) : bg_audit__encode_large(a, &e, json, l, why);
    free(json);
    if (rc != 0) {
        bg_audit__free_list(l->head);
        *l = (bg_audit_qlist_t){NULL, NULL, 0};
    }
    return rc;
}

/* n events lost (an event's parts): counted as dropped and logged
 * (rate-limited). */
static int bg_audit__dropped(bg_audit_t *a, uint32_t n, const char *why)
{
    atomic_fetch_add(&a->dropped, n);
    bg_audit__log_loss(a, why);
    return BG_AUDIT_DROPPED;
}

/* An event (of n parts) not taken: refused in block mode (the caller
 * refuses the request), dropped in drop mode. */
static int bg_audit__lost(bg_audit_t *a, uint32_t n, const char *why)
{
    if (a->on_failure == BG_AUDIT_BLOCK) {
        atomic_fetch_add(&a->refused, 1);
        return BG_AUDIT_REFUSED;
    }
    return bg_audit__dropped(a, n, why);
}

/* The queue cannot take n more entries. An event of more parts than the
 * queue holds is taken by an empty queue, or it would never be. */
static int bg_audit__full(const bg_audit_t *a, uint32_t n)
{
    uint64_t q = atomic_load(&a->qlen);
    return q >= a->qcap || (q > 0 && q + n > a->qcap);
}

static int bg_audit__emit(bg_audit_t *a, const bg_audit_event_t *ev, int admitted)
{
    if (!a || !ev || (unsigned)ev->kind >= BG_AUDIT_EV__COUNT)
        return BG_AUDIT_EINVAL;
    int must = admitted && a->on_failure == BG_AUDIT_BLOCK;
    /* Refuse before encoding: a blocked pipeline must stay cheap. */
    if (a->on_failure == BG_AUDIT_BLOCK && !must && !atomic_load(&a->sink_ok))
        return bg_audit__lost(a, 1, "sinks failing");
    /* Drop mode loses an event a full queue cannot take before paying its
     * encoding (up to BG_AUDIT_MAX_EVENT_BYTES): counted as one event, its
     * parts never made. Checked again below, under the lock. */
    if (a->on_failure == BG_AUDIT_DROP && bg_audit__full(a, 1))
        return bg_audit__dropped(a, 1, "queue full");
    bg_audit_qlist_t l;
    const char *why;
    if (bg_audit__encode(a, ev, &l, &why) != 0)
        return must ? bg_audit__dropped(a, 1, why) : bg_audit__lost(a, 1, why);
    /* All parts of an event or none: they are queued together. */
    pthread_mutex_lock(&a->mu);
    if ((!must && bg_audit__full(a, l.n)) || a->stop) {
        int stopping = a->stop;
        pthread_mutex_unlock(&a->mu);
        bg_audit__free_list(l.head);
        return must ? bg_audit__dropped(a, l.n, stopping ? "stopping" : "queue full")
                    : bg_audit__lost(a, l.n, "queue full");
    }
    if (a->tail)
        a->tail->next = l.head;
    else
        a->head = l.head;
    a->tail = l.tail;
    uint32_t was = atomic_fetch_add(&a->qlen, l.n), half = (a->qcap + 1) / 2;
    if ((was == 0 && a->idle) || (was < half && was + l.n >= half))
        pthread_cond_signal(&a->wake);
    atomic_fetch_add(&a->emitted, l.n);
    pthread_mutex_unlock(&a->mu);
    return BG_AUDIT_OK;
}

int bg_audit_emit(bg_audit_t *a, const bg_audit_event_t *ev)
{
    return bg_audit__emit(a, ev, 0);
}

int bg_audit_emit_admitted(bg_audit_t *a, const bg_audit_event_t *ev)
{
    return bg_audit__emit(a, ev, 1);
}

int bg_audit_emit_session(bg_audit_t *a, const bg_audit_event_t *ev)
{
    int admitted = ev && (ev->kind == BG_AUDIT_EV_DECISION || ev->kind == BG_AUDIT_EV_SESSION_END ||
                          ev->kind == BG_AUDIT_EV_SESSION_START);
    return bg_audit__emit(a, ev, admitted);
}

int bg_audit_admitting(const bg_audit_t *a)
{
    if (a->on_failure == BG_AUDIT_DROP)
        return 1; /* never refuses: losses are counted instead */
    return atomic_load(&a->sink_ok) && atomic_load(&a->qlen) < a->qcap;
}

void bg_audit_stats(const bg_audit_t *a, bg_audit_stats_t *o)
{
    memset(o, 0, sizeof *o);
    o->emitted = atomic_load(&a->emitted);
    o->delivered = atomic_load(&a->delivered);
    o->spooled = atomic_load(&a->spooled);
    o->drained = atomic_load(&a->drained);
    o->dropped = atomic_load(&a->dropped);
    o->refused = atomic_load(&a->refused);
    o->spool_corrupt = atomic_load(&a->spool_corrupt);
    o->spool_unreadable = atomic_load(&a->spool_unreadable);
    o->sink_errors = atomic_load(&a->sink_errors);
    o->rejected = atomic_load(&a->rejected);
    o->truncated = atomic_load(&a->truncated);
    o->queue_depth = atomic_load(&a->qlen);
    o->spool_bytes = atomic_load(&a->spool_bytes);
    o->spool_unsynced = atomic_load(&a->spool_unsynced);
    o->admitting = bg_audit_admitting(a);
}

/* ---- sink callbacks (audit thread) ---- */

/* Appends a copy of r to the list (*head, *tail); -1 (counted as dropped)
 * when out of memory. */
static int bg_audit__append(bg_audit_t *a, bg_audit_qe_t **head, bg_audit_qe_t **tail,
                            const bg_audit_rec_t *r)
{
    bg_audit_qe_t *qe = malloc(sizeof *qe + r->len);
    if (!qe) {
        atomic_fetch_add(&a->dropped, 1);
        bg_audit__log_loss(a, "out of memory");
        return -1;
    }
    qe->next = NULL;
    qe->order = r->order;
    qe->len = r->len;
    memcpy(qe->data, r->data, r->len);
    if (*tail)
        (*tail)->next = qe;
    else
        *head = qe;
    *tail = qe;
    return 0;
}

/* A record joins the held list. Only the first one starts a new hold and
 * asks for a new probe: the records held behind it say nothing about the
 * primary, and if each one undid the probe, admitted events arriving faster
 * than the retry (every 500 ms) would keep admission off for ever. What
 * does say the primary cannot deliver, a failure, undoes it (on_failed). */
static void bg_audit__hold(bg_audit_t *a, const bg_audit_rec_t *r)
{
    if (!a->held)
        a->held_probe_ok = 0;
    if (bg_audit__append(a, &a->held, &a->held_tail, r) == 0)
        atomic_store(&a->sink_ok, 0);
}

/* Records the primary has taken without reporting an outcome yet. */
static size_t bg_audit__pending(const bg_audit_t *a, int from_spool)
{
    return a->primary && a->primary->pending ? a->primary->pending(a->primary, from_spool) : 0;
}

/* The primary could not take r: spool it, else hold or drop it. */
static void bg_audit__spill(bg_audit_t *a, const bg_audit_rec_t *r)
{
    if (!a->held && a->spool && bg_audit_spool_append(a->spool, r->data, r->len) == 0) {
        atomic_fetch_add(&a->spooled, 1);
        if (a->retry_at == 0) {
            a->backoff = BG_AUDIT_BACKOFF_MIN_MS;
            a->retry_at = bg_audit__mono_ms() + a->backoff;
        }
        return;
    }
    if (a->on_failure == BG_AUDIT_BLOCK) {
        bg_audit__hold(a, r);
        return;
    }
    atomic_fetch_add(&a->dropped, 1);
    bg_audit__log_loss(a, a->spool ? "primary sink and spool failing" : "primary sink failing");
}

/* A new record that cannot go to the primary now: parked while live records
 * are pending (they may still fail and must be spooled first), else spilled. */
static void bg_audit__spill_new(bg_audit_t *a, const bg_audit_rec_t *r)
{
    if (a->parked || a->failed || bg_audit__pending(a, 0) > 0) {
        if (bg_audit__append(a, &a->parked, &a->parked_tail, r) == 0)
            a->nparked++;
        return;
    }
    bg_audit__spill(a, r);
}

static int bg_audit__cmp_order(const void *x, const void *y)
{
    uint64_t a = (*(bg_audit_qe_t *const *)x)->order, b = (*(bg_audit_qe_t *const *)y)->order;
    return a < b ? -1 : a > b;
}

/* Spills the failed live records sorted by emit order. While records are
 * held, every live record the primary took came off the front of the held
 * list (routing sends nothing past held ones, and a hold starts with
 * nothing live pending), and retry_held may have stopped part-way (the
 * primary took no more): the failed ones precede all still held, so they
 * are held (or spooled) ahead of those, not appended behind them. */
static void bg_audit__spill_failed(bg_audit_t *a)
{
    bg_audit_qe_t **v = malloc(a->nfailed * sizeof *v), *e = a->failed;
    bg_audit_qe_t *rest = a->held, *rest_tail = a->held_tail;
    size_t n = 0;
    a->held = a->held_tail = NULL;
    for (; e && v; e = e->next)
        v[n++] = e;
    if (v)
        qsort(v, n, sizeof *v, bg_audit__cmp_order);
    if (v) {
        for (size_t i = 0; i < n; i++)
            bg_audit__spill(a, &(bg_audit_rec_t){v[i]->data, v[i]->len, 0, v[i]->order});
    } else { /* out of memory: report order rather than lose anything */
        for (e = a->failed; e; e = e->next)
            bg_audit__spill(a, &(bg_audit_rec_t){e->data, e->len, 0, e->order});
    }
    for (e = a->failed; e;) {
        bg_audit_qe_t *next = e->next;
        free(e);
        e = next;
    }
    free(v);
    a->failed = a->failed_tail = NULL;
    a->nfailed = 0;
    if (rest) {
        if (a->held_tail)
            a->held_tail->next = rest;
        else
            a->held = rest;
        a->held_tail = rest_tail;
    }
}

/* Once the primary has no live record pending: the failed ones to the spool
 * in emit order, then every parked one (or held/dropped, see spill). */
static void bg_audit__unpark(bg_audit_t *a)
{
    if (a->failed)
        bg_audit__spill_failed(a);
    while (a->parked) {
        bg_audit_qe_t *qe = a->parked;
        bg_audit_rec_t r = {qe->data, qe->len, 0, 0};
        a->parked = qe->next;
        a->nparked--;
        bg_audit__spill(a, &r);
        free(qe);
    }
    a->parked_tail = NULL;
}

static void bg_audit__on_delivered(void *core, const bg_audit_rec_t *r)
{
    bg_audit_t *a = core;
    atomic_fetch_add(&a->delivered, 1);
    if (r->from_spool && a->probing) {
        a->probing = 0;
        a->held_probe_ok = 1; /* see retry_held */
        a->held_retry_at = 0; /* the held records go at the next turn */
    }
}

static void bg_audit__on_failed(void *core, const bg_audit_rec_t *r)
{
    bg_audit_t *a = core;
    atomic_fetch_add(&a->sink_errors, 1);
    a->held_probe_ok = 0; /* the primary takes but does not deliver: probe again */
    if (r->from_spool) {
        a->drain_failed = 1; /* still in the spool (or held): sent again later */
        a->probing = 0;
    } else if (!r->data) { /* the sink cannot give it back (out of memory, producer gone) */
        atomic_fetch_add(&a->dropped, 1);
        bg_audit__log_loss(a, "the sink could not give an undelivered event back");
    } else if (bg_audit__append(a, &a->failed, &a->failed_tail, r) == 0) {
        a->nfailed++; /* spooled in emit order once nothing live is pending */
    }
}

/* The primary refused the record's content for good. A live one goes the
 * way of a failed one (to the spool, or held): the broker may have refused
 * innocent records sent beside the culprit, and only a record sent alone
 * tells them apart. The drain and the held-record probe do that. */
static void bg_audit__on_rejected(void *core, const bg_audit_rec_t *r, const char *why)
{
    bg_audit_t *a = core;
    int64_t now = bg_audit__mono_ms();
    if (now - a->last_reject_log >= 1000) { /* a whole batch comes back at once */
        a->last_reject_log = now;
        bg_log_warn("audit", "audit primary rejected an event: %s", why);
    }
    if (!r->from_spool || a->probing)
        a->held_isolate = 1; /* it may come back held: see retry_held */
    if (r->from_spool) {
        a->drain_rejected = 1;
        a->probe_rejected |= a->probing;
    }
    bg_audit__on_failed(core, r);
}

static void bg_audit__copy_delivered(void *core, const bg_audit_rec_t *r) {}

static void bg_audit__copy_failed(void *core, const bg_audit_rec_t *r)
{
    bg_audit_t *a = core;
    atomic_fetch_add(&a->sink_errors, 1);
}

static void bg_audit__copy_rejected(void *core, const bg_audit_rec_t *r, const char *why)
{
    bg_audit__copy_failed(core, r);
}

static void bg_audit__dead_delivered(void *core, const bg_audit_rec_t *r)
{
    ((bg_audit_t *)core)->dead_ok = 1;
}

/* role: 0 primary, 1 local file copy, 2 dead-letter file */
static void bg_audit__attach(bg_audit_t *a, bg_audit_sink_t *s, int role)
{
    s->cb.core = a;
    s->cb.delivered = role == 0 ? bg_audit__on_delivered
                      : role == 1 ? bg_audit__copy_delivered : bg_audit__dead_delivered;
    s->cb.failed = role == 0 ? bg_audit__on_failed : bg_audit__copy_failed;
    s->cb.rejected = role == 0 ? bg_audit__on_rejected : bg_audit__copy_rejected;
}

/* 1 when the dead-letter file has reached its bound. Checked before a
 * record, not with it: a file under the bound takes one more whatever its
 * size, so an event larger than the bound (up to 512 KiB) is never stuck. */
static int bg_audit__dead_full(bg_audit_t *a)
{
    struct stat st;
    if (!a->dead_max || stat(a->dead_path, &st) != 0) /* none yet: empty */
        return 0;
    return (uint64_t)st.st_size >= a->dead_max;
}

/* The dead-letter file is full (clients can make events large, so a topic
 * with a small max.message.bytes could otherwise fill the spool's disk).
 * Handled as a full spool: block mode keeps the record where it is (it
 * stays in the spool, or held, and is tried again; the spool fills behind
 * it and admission stops) until the operator moves the file away; drop
 * mode loses it, counted as rejected and dropped. Returns as dead_letter. */
static int bg_audit__dead_full_record(bg_audit_t *a)
{
    if (a->on_failure == BG_AUDIT_BLOCK) {
        int64_t now = bg_audit__mono_ms();
        if (now - a->last_dead_full_log >= 1000) { /* retried every 0.5 to 5 s */
            a->last_dead_full_log = now;
            bg_log_error("audit", "audit dead-letter file full (%llu bytes, a quarter of "
                         "audit.spool_max_bytes): a rejected event waits in the spool; move "
                         "the file away", (unsigned long long)a->dead_max);
        }
        return -1;
    }
    atomic_fetch_add(&a->rejected, 1);
    atomic_fetch_add(&a->dropped, 1);
    bg_audit__log_loss(a, "rejected by the primary, dead-letter file full");
    return 0;
}

/* Keeps a rejected record out of the primary for good: appended to the
 * dead-letter file (JSON lines, synced) beside the spool, within its bound
 * (see dead_full_record past it). Without a spool it is lost: counted as
 * dropped. Returns 0, or -1 when the file cannot take it (the record stays
 * where it is and is tried again). */
static int bg_audit__dead_letter(bg_audit_t *a, const bg_audit_rec_t *r)
{
    size_t jl, kl;
    const char *json = bg_audit_rec_json(r, &jl);
    const char *sid = bg_audit_rec_key(r, &kl);
    if (a->dead_path && bg_audit__dead_full(a))
        return bg_audit__dead_full_record(a);
    if (a->dead_path) {
        /* Opened per record (rare): an operator may move the file away. */
        char err[256];
        int existed = access(a->dead_path, F_OK) == 0;
        bg_audit_sink_t *dead = bg_audit_file_sink_new(a->dead_path, err, sizeof err);
        if (!dead) {
            bg_log_error("audit", "audit dead-letter file: %s", err);
            return -1;
        }
        bg_audit__attach(a, dead, 2);
        a->dead_ok = 0;
        int ok = dead->write(dead, r, 1) == 1 && a->dead_ok && dead->flush(dead, 1000) == 0;
        dead->close(dead);
        /* A new file's directory entry must be durable before the spool is
         * acked past the record. */
        if (!ok || (!existed && a->spool && bg_audit_spool_sync_dir(a->spool) != 0))
            return -1;
    } else {
        atomic_fetch_add(&a->dropped, 1);
    }
    atomic_fetch_add(&a->rejected, 1);
    bg_log_error("audit", "audit event refused for good by the primary (session %.*s, %zu bytes): %s",
                 sid ? (int)(kl > 64 ? 64 : kl) : 0, sid ? sid : "", json ? jl : 0,
                 a->dead_path ? "kept in the dead-letter file" : "lost (no spool_dir)");
    return 0;
}

/* ---- routing (audit thread) ---- */

static int bg_audit__primary_up(bg_audit_t *a)
{
    return !a->primary->up || a->primary->up(a->primary);
}

/* A primary that says it is down learns it is up again only from a
 * delivery. Block mode probes with held records and a spool with its drain;
 * in drop mode without a spool nothing would ever be sent again, so a batch
 * is tried on the down primary every 5 s (losses meanwhile are counted). */
static int bg_audit__down_probe_due(bg_audit_t *a)
{
    if (a->on_failure != BG_AUDIT_DROP || a->spool)
        return 0;
    int64_t now = bg_audit__mono_ms();
    if (now < a->down_probe_at)
        return 0;
    a->down_probe_at = now + 5000;
    return 1;
}

static void bg_audit__route(bg_audit_t *a, const bg_audit_rec_t *recs, size_t n)
{
    size_t taken = 0;
    if (a->copy && a->copy->write(a->copy, recs, n) < n) {
        atomic_fetch_add(&a->sink_errors, 1);
        bg_log_warn("audit", "audit file copy failing");
    }
    int backlog = a->held || a->parked || a->failed ||
                  (a->spool && !bg_audit_spool_empty(a->spool));
    if (!backlog && (bg_audit__primary_up(a) || bg_audit__down_probe_due(a)))
        taken = a->primary->write(a->primary, recs, n);
    for (size_t i = taken; i < n; i++)
        bg_audit__spill_new(a, &recs[i]);
}

/* After a rejection the held records go one at a time, each sent alone and
 * waited for: delivered, or rejected (dead-lettered; then the others go the
 * usual way again). Anything else stops the round. Returns 1 when the head
 * may leave the held list. */
static int bg_audit__held_alone(bg_audit_t *a, bg_audit_rec_t *r)
{
    a->probing = 1;
    a->held_probe_ok = a->probe_rejected = 0;
    r->from_spool = 1; /* a failure is not re-spooled: it stays held */
    if (a->primary->write(a->primary, r, 1) == 1)
        (void)a->primary->flush(a->primary, 2000);
    int culprit = a->probe_rejected;
    int ok = a->held_probe_ok || (culprit && bg_audit__dead_letter(a, r) == 0);
    a->probing = a->held_probe_ok = a->probe_rejected = 0;
    if (ok && culprit)
        a->held_isolate = 0;
    return ok;
}

/* Retries held records (at most every 500 ms): into the spool, or directly
 * to the primary when there is no spool backlog. Before they go to the
 * primary, the oldest is sent as a probe marked like a drained record: a
 * failure is not re-spooled, and only once a probe is delivered are the
 * held records sent for real (the probed one again: a duplicate with the
 * same event id, never a loss). Without the probe, a primary that accepts
 * records but cannot deliver them (acks=all with too few replicas) would
 * make admission flap: held, sent, failed at the timeout, held again.
 * Records sent one at a time (after a rejection) go at most 64 per call, so
 * the audit thread keeps serving its queue and flush requests. */
static void bg_audit__retry_held(bg_audit_t *a)
{
    int64_t now = bg_audit__mono_ms();
    if (now < a->held_retry_at)
        return;
    a->held_retry_at = now + 500;
    for (int alone = 0; a->held;) {
        bg_audit_qe_t *qe = a->held;
        bg_audit_rec_t r = {qe->data, qe->len, 0, ++a->order};
        size_t live = bg_audit__pending(a, 0);
        int ok = 0, idle = bg_audit__pending(a, 1) == 0 && live == 0;
        /* Not into the spool past held records the primary took and may
         * still fail (they would be spooled behind this one). */
        if (a->spool && live == 0 && bg_audit_spool_append(a->spool, r.data, r.len) == 0) {
            atomic_fetch_add(&a->spooled, 1);
            ok = 1;
        } else if (!a->spool || bg_audit_spool_empty(a->spool)) {
            if (a->held_isolate) {
                if (alone++ == 64) {
                    a->held_retry_at = 0; /* go on at the next turn */
                    return;
                }
                ok = idle && bg_audit__held_alone(a, &r);
            } else if (a->held_probe_ok && bg_audit__primary_up(a)) {
                ok = a->primary->write(a->primary, &r, 1) == 1;
            } else if (bg_audit__pending(a, 1) == 0) {
                r.from_spool = 1;
                a->probing = 1;
                if (a->primary->write(a->primary, &r, 1) != 1) /* the probe */
                    a->probing = 0; /* not taken: no outcome will come */
            }
        }
        if (!ok)
            return;
        a->held = qe->next;
        if (!a->held)
            a->held_tail = NULL;
        free(qe);
    }
    a->held_retry_at = 0;
    a->held_isolate = 0;
    atomic_store(&a->sink_ok, 1);
    bg_log_info("audit", "audit pipeline recovered; admitting again");
}

static int bg_audit__drain_one(void *arg, const uint8_t *p, size_t n, size_t off)
{
    bg_audit_t *a = arg;
    bg_audit_rec_t r = {p, (uint32_t)n, 1, 0};
    if (a->drain_failed)
        return 1;
    if (a->isolate_left) { /* kept: it may turn out to be the culprit */
        free(a->iso);
        if ((a->iso = malloc(sizeof *a->iso + n))) {
            a->iso->len = (uint32_t)n;
            memcpy(a->iso->data, p, n);
        }
    }
    if (a->primary->write(a->primary, &r, 1) != 1) {
        a->drain_failed = 1;
        return 1;
    }
    return 0;
}

/* One drain round: a batch from the spool through the primary, acked only
 * when the primary confirmed all of it. A round the primary rejected is
 * read again one record per round until the record rejected alone is
 * found; that one goes to the dead-letter file and is acked past. Returns 1
 * to go on right away. */
static int bg_audit__drain(bg_audit_t *a)
{
    if (bg_audit__pending(a, 1) > 0) { /* a round must not mix with the last one's */
        a->retry_at = bg_audit__mono_ms();
        return 0;
    }
    a->drain_failed = a->drain_rejected = 0;
    size_t batch = a->isolate_left ? 1 : BG_AUDIT_DRAIN_BATCH;
    /* No up() check here: the drain is the probe that finds the primary back. */
    int n = bg_audit_spool_read(a->spool, batch, bg_audit__drain_one, a);
    int sent = n >= 0 && !a->drain_failed && a->primary->flush(a->primary, 2000) == 0 &&
               !a->drain_failed;
    int culprit = !sent && a->drain_rejected && batch == 1 && n == 1 && a->iso &&
                  bg_audit__dead_letter(a, &(bg_audit_rec_t){a->iso->data, a->iso->len, 1, 0}) == 0;
    if ((sent || culprit) && bg_audit_spool_ack(a->spool) == 0) {
        if (sent)
            atomic_fetch_add(&a->drained, (uint64_t)n);
        a->isolate_left = culprit || !a->isolate_left ? 0 : a->isolate_left - 1;
        if (!a->isolate_left) {
            free(a->iso);
            a->iso = NULL;
        }
        a->backoff = BG_AUDIT_BACKOFF_MIN_MS;
        a->retry_at = bg_audit_spool_empty(a->spool) ? 0 : bg_audit__mono_ms();
        if (a->retry_at == 0)
            bg_log_info("audit", "audit spool drained");
        return a->retry_at != 0;
    }
    bg_audit_spool_rewind(a->spool);
    if (a->drain_rejected && batch > 1 && n > 0) {
        a->isolate_left = (uint32_t)n;
        a->retry_at = bg_audit__mono_ms();
        return 1;
    }
    a->backoff = a->backoff * 2 > BG_AUDIT_BACKOFF_MAX_MS ? BG_AUDIT_BACKOFF_MAX_MS : a->backoff * 2;
    a->retry_at = bg_audit__mono_ms() + a->backoff;
    return 0;
}

static void bg_audit__housekeeping(bg_audit_t *a)
{
    if (a->primary->poll)
        a->primary->poll(a->primary);
    if (a->copy && a->copy->poll)
        a->copy->poll(a->copy);
    if ((a->parked || a->failed) && bg_audit__pending(a, 0) == 0)
        bg_audit__unpark(a);
    if (a->held)
        bg_audit__retry_held(a);
    /* A drain waits for every outcome of earlier sends: a record still
     * pending may yet fail and be spooled, and must not be overtaken. */
    if (a->spool && !bg_audit_spool_empty(a->spool) && !a->parked && !a->failed &&
        bg_audit__pending(a, 0) == 0 && bg_audit__pending(a, 1) == 0) {
        if (a->retry_at == 0)
            a->retry_at = bg_audit__mono_ms();
        for (int i = 0; i < 64 && bg_audit__mono_ms() >= a->retry_at; i++)
            if (!bg_audit__drain(a))
                break;
    }
    if (a->spool) {
        int64_t now = bg_audit__mono_ms();
        if (now - a->spool_synced_ms >= BG_AUDIT_SPOOL_SYNC_MS) {
            a->spool_synced_ms = now;
            /* An active segment deleted by hand would swallow every append. */
            uint64_t lost = bg_audit_spool_check(a->spool);
            if (lost) {
                atomic_fetch_add(&a->dropped, lost);
                bg_audit__log_loss(a, "spool segment deleted");
            }
            if (bg_audit_spool_unsynced(a->spool) && bg_audit_spool_sync(a->spool) != 0)
                bg_log_error("audit", "audit spool fdatasync: %s", strerror(errno));
        }
        atomic_store(&a->spool_bytes, bg_audit_spool_bytes(a->spool));
        atomic_store(&a->spool_corrupt, bg_audit_spool_corrupt(a->spool));
        atomic_store(&a->spool_unreadable, bg_audit_spool_unreadable(a->spool));
        atomic_store(&a->spool_unsynced, bg_audit_spool_unsynced(a->spool));
    }
}

/* Sends the held records within about timeout_ms (flush and stop): the
 * probe and then the records as retry_held sends them, without its 500 ms
 * pace, each turn waited for. Stops when a turn moves nothing. */
static void bg_audit__push_held(bg_audit_t *a, int timeout_ms)
{
    int64_t end = bg_audit__mono_ms() + timeout_ms;
    while (a->held) {
        int64_t left = end - bg_audit__mono_ms();
        bg_audit_qe_t *head = a->held;
        int probe_ok = a->held_probe_ok;
        if (left <= 0)
            return;
        a->held_retry_at = 0;
        bg_audit__retry_held(a);
        if (a->primary->flush(a->primary, (int)left) != 0)
            return;
        if ((a->parked || a->failed) && bg_audit__pending(a, 0) == 0)
            bg_audit__unpark(a);
        if (a->held == head && a->held_probe_ok == probe_ok)
            return;
    }
}

/* One deadline for the whole sync: the held records, then the primary's
 * last flush share timeout_ms (stop promises its bound). */
static int bg_audit__sync_all(bg_audit_t *a, int timeout_ms)
{
    int64_t end = bg_audit__mono_ms() + timeout_ms;
    if (a->held)
        bg_audit__push_held(a, timeout_ms);
    int64_t left = end - bg_audit__mono_ms();
    int rc = a->primary->flush(a->primary, left > 0 ? (int)left : 0);
    if ((a->parked || a->failed) && bg_audit__pending(a, 0) == 0)
        bg_audit__unpark(a);
    /* Held events reached neither the primary nor the spool. */
    if (a->parked || a->failed || a->held)
        rc = -1;
    if (a->copy && a->copy->flush(a->copy, timeout_ms) != 0)
        rc = -1;
    if (a->spool && bg_audit_spool_sync(a->spool) != 0)
        rc = -1;
    return rc;
}

static void bg_audit__process(bg_audit_t *a, bg_audit_qe_t *list)
{
    bg_audit_rec_t recs[64];
    bg_audit_qe_t *qes[64];
    size_t n = 0;
    while (list) {
        bg_audit_qe_t *next = list->next;
        qes[n] = list;
        recs[n++] = (bg_audit_rec_t){list->data, list->len, 0, ++a->order};
        if (n == 64 || !next) {
            bg_audit__route(a, recs, n);
            /* freed after routing: sinks and the spool copy what they keep */
            for (size_t i = 0; i < n; i++)
                free(qes[i]);
            n = 0;
        }
        list = next;
    }
}

/* Takes up to BG_AUDIT_BATCH entries off the queue; caller holds mu. */
static bg_audit_qe_t *bg_audit__take(bg_audit_t *a)
{
    bg_audit_qe_t *list = a->head, *last = NULL, *e = a->head;
    uint32_t k = 0;
    while (e && k < BG_AUDIT_BATCH) {
        last = e;
        e = e->next;
        k++;
    }
    if (!last)
        return NULL;
    last->next = NULL;
    a->head = e;
    if (!e)
        a->tail = NULL;
    atomic_fetch_sub(&a->qlen, k);
    return list;
}

static void bg_audit__wait_us(bg_audit_t *a, long us)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += us * 1000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&a->wake, &a->mu, &ts);
}

static void bg_audit__wait(bg_audit_t *a)
{
    if (!a->lingered) { /* nap first: emitters signal only a half-full queue meanwhile */
        a->lingered = 1;
        bg_audit__wait_us(a, BG_AUDIT_LINGER_US);
        if (a->head || a->stop || a->flush_req != a->flush_done)
            return;
    }
    a->idle = 1;
    bg_audit__wait_us(a, BG_AUDIT_TICK_MS * 1000L);
    a->idle = 0;
}

static void *bg_audit__main(void *arg)
{
    bg_audit_t *a = arg;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        /* Too much parked: stop taking, so the queue fills and emit feels it. */
        int full = a->nparked >= a->qcap;
        if (full || (!a->head && !a->stop && a->flush_req == a->flush_done))
            bg_audit__wait(a);
        bg_audit_qe_t *list = full ? NULL : bg_audit__take(a);
        if (list)
            a->lingered = 0;
        uint64_t req = a->flush_req;
        int stop = a->stop, empty = a->head == NULL;
        pthread_mutex_unlock(&a->mu);
        bg_audit__process(a, list);
        bg_audit__housekeeping(a);
        int rc = 0;
        if (empty && (req != a->flush_done || stop))
            rc = bg_audit__sync_all(a, stop ? 5000 : 1000);
        pthread_mutex_lock(&a->mu);
        if (empty && req != a->flush_done) {
            a->flush_done = req;
            a->flush_rc = rc;
            pthread_cond_broadcast(&a->flushed);
        }
        if (stop && empty && !a->head)
            break;
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

int bg_audit_flush(bg_audit_t *a, int timeout_ms)
{
    struct timespec ts;
    int rc = 0;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&a->mu);
    uint64_t my = ++a->flush_req;
    pthread_cond_signal(&a->wake);
    while (a->flush_done < my && rc == 0)
        rc = pthread_cond_timedwait(&a->flushed, &a->mu, &ts);
    int out = a->flush_done >= my ? a->flush_rc : -1;
    pthread_mutex_unlock(&a->mu);
    return out;
}

/* ---- lifecycle ---- */

static int bg_audit__init_sync(bg_audit_t *a)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return -1;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&a->wake, &ca) || pthread_cond_init(&a->flushed, &ca) ||
             pthread_mutex_init(&a->mu, NULL);
    pthread_condattr_destroy(&ca);
    return rc ? -1 : 0;
}

bg_audit_t *bg_audit_new_with_sink(const bg_config_audit_t *cfg, const char *instance,
                                   bg_audit_sink_t *primary, char *err, size_t errlen)
{
    bg_audit_t *a = calloc(1, sizeof *a);
    if (err && errlen)
        err[0] = '\0';
    if (!a || !primary || bg_audit__init_sync(a) != 0) {
        snprintf(err, errlen, "audit: out of memory");
        free(a);
        if (primary)
            primary->close(primary);
        return NULL;
    }
    a->instance = instance ? strdup(instance) : NULL;
    a->on_failure = cfg->on_failure;
    a->qcap = cfg->queue_size ? cfg->queue_size : 65536;
    a->primary = primary;
    atomic_store(&a->sink_ok, 1);
    bg_audit__attach(a, primary, 0);
    if (cfg->file && primary->name && strcmp(primary->name, "file") != 0) {
        if (!(a->copy = bg_audit_file_sink_new(cfg->file, err, errlen)))
            goto fail;
        bg_audit__attach(a, a->copy, 1);
    }
    /* Segments of at most a quarter of the bound, so a partial drain frees
     * space while the rest of the backlog waits. */
    uint64_t seg = cfg->spool_max_bytes ? cfg->spool_max_bytes / 4 : 0;
    seg = seg > (8u << 20) || seg == 0 ? 8u << 20 : seg;
    if (cfg->spool_dir &&
        !(a->spool = bg_audit_spool_open(cfg->spool_dir, cfg->spool_max_bytes, seg, err, errlen)))
        goto fail;
    a->dead_max = cfg->spool_max_bytes / 4;
    if (cfg->spool_dir && asprintf(&a->dead_path, "%s/rejected.jsonl", cfg->spool_dir) < 0) {
        a->dead_path = NULL;
        snprintf(err, errlen, "audit: out of memory");
        goto fail;
    }
    if (pthread_create(&a->thread, NULL, bg_audit__main, a) != 0) {
        snprintf(err, errlen, "audit: cannot start thread");
        goto fail;
    }
    a->started = 1;
    return a;
fail:
    bg_audit_free(a);
    return NULL;
}

bg_audit_t *bg_audit_new(const bg_config_audit_t *cfg, const char *instance,
                         const bg_audit_kafka_conf_t *kafka, char *err, size_t errlen)
{
    bg_audit_sink_t *primary = NULL;
    if (!cfg || (!cfg->kafka_topic && !cfg->file)) {
        snprintf(err, errlen, "audit: needs audit.kafka_topic or audit.file");
        return NULL;
    }
    if (cfg->kafka_topic) {
        if (!kafka || !kafka->bootstrap) {
            snprintf(err, errlen, "audit: kafka_topic needs the Kafka upstream");
            return NULL;
        }
        primary = bg_audit_kafka_sink_new(kafka, cfg->kafka_topic, err, errlen);
        if (primary && cfg->format == BG_AUDIT_AVRO &&
            bg_audit_kafka_sink_avro(primary, kafka->avro_schema_id > 0 ? kafka->avro_schema_id : -1,
                                     err, errlen) != 0) {
            primary->close(primary);
            return NULL;
        }
    } else {
        primary = bg_audit_file_sink_new(cfg->file, err, errlen);
    }
    if (!primary)
        return NULL;
    return bg_audit_new_with_sink(cfg, instance, primary, err, errlen);
}

static void bg_audit__free_list(bg_audit_qe_t *e)
{
    while (e) {
        bg_audit_qe_t *n = e->next;
        free(e);
        e = n;
    }
}

void bg_audit_free(bg_audit_t *a)
{
    if (!a)
        return;
    if (a->started) {
        pthread_mutex_lock(&a->mu);
        a->stop = 1;
        pthread_cond_signal(&a->wake);
        pthread_mutex_unlock(&a->mu);
        pthread_join(a->thread, NULL);
    }
    /* Closing the primary may fail records back to us (Kafka purge): they are
     * spooled, so the spool closes last. */
    if (a->primary)
        a->primary->close(a->primary);
    a->primary = NULL;
    bg_audit__unpark(a); /* nothing is pending once the primary is closed */
    if (a->copy)
        a->copy->close(a->copy);
    /* Held events were offered to the primary by the thread's last sync
     * (push_held); what it did not take gets one last try at the spool (it
     * may be writable again since the last retry). The rest is lost: counted. */
    uint64_t lost = 0;
    for (bg_audit_qe_t *qe = a->held; qe; qe = qe->next) {
        if (a->spool && bg_audit_spool_append(a->spool, qe->data, qe->len) == 0)
            atomic_fetch_add(&a->spooled, 1);
        else
            lost++;
    }
    if (a->spool && a->held && bg_audit_spool_sync(a->spool) != 0)
        bg_log_error("audit", "spool sync at stop: %s", strerror(errno));
    if (lost) {
        atomic_fetch_add(&a->dropped, lost);
        bg_log_error("audit", "audit stopped with %llu undeliverable event(s) held: lost",
                     (unsigned long long)lost);
    }
    bg_audit__free_list(a->held);
    bg_audit__free_list(a->head);
    free(a->dead_path);
    free(a->iso);
    bg_audit_spool_close(a->spool);
    pthread_cond_destroy(&a->wake);
    pthread_cond_destroy(&a->flushed);
    pthread_mutex_destroy(&a->mu);
    free(a->instance);
    free(a);
}
