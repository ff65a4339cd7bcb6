/* Share fetch sessions tracked per connection, and the process-wide table
 * of who owns each (see kafka_share.h). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/kafka/kafka_share.h"

static int bg_kafka_share__cmp(const void *a, const void *b)
{
    const bg_kafka_share_tp_t *x = a, *y = b;
    int c = memcmp(x->id, y->id, 16);
    if (c)
        return c;
    return x->partition < y->partition ? -1 : x->partition > y->partition;
}

size_t bg_kafka_share_sort(bg_kafka_share_tp_t *tps, size_t n)
{
    if (n < 2)
        return n;
    qsort(tps, n, sizeof *tps, bg_kafka_share__cmp);
    size_t k = 1;
    for (size_t i = 1; i < n; i++) {
        if (bg_kafka_share__cmp(&tps[i], &tps[k - 1]) != 0)
            tps[k++] = tps[i];
        else if (tps[i].seq > tps[k - 1].seq)
            tps[k - 1].seq = tps[i].seq;
    }
    return k;
}

int bg_kafka_share_contains(const bg_kafka_share_tp_t *tps, size_t n, const bg_kafka_share_tp_t *tp)
{
    return n && bsearch(tp, tps, n, sizeof *tps, bg_kafka_share__cmp) != NULL;
}

int bg_kafka_share_has_topic(const bg_kafka_share_tp_t *tps, size_t n, const uint8_t id[16])
{
    /* First element >= (id, INT32_MIN): sorted by id first. */
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (memcmp(tps[mid].id, id, 16) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && memcmp(tps[lo].id, id, 16) == 0;
}

/* ---- owner table ---- */

#define BG_KAFKA_SHARE_OWNER_BUCKETS 1024 /* power of two */
#define BG_KAFKA_SHARE_CONN_SEVERAL UINT64_MAX

/* One (node, group, member) a connection opened a session for, or has an
 * opening request in flight for. Exists while owned or in flight. */
typedef struct bg_kafka_share_owner_s {
    struct bg_kafka_share_owner_s *next;
    int32_t node;
    uint64_t owner;         /* connection, 0: nobody */
    uint64_t gen;           /* bumped by every opening request that may replace it */
    unsigned inflight;      /* opening requests forwarded, not answered */
    uint64_t inflight_conn; /* their connection, or BG_KAFKA_SHARE_CONN_SEVERAL */
    size_t group_len, member_len;
    char key[]; /* group, then member */
} bg_kafka_share_owner_t;

struct bg_kafka_share_owners_s {
    pthread_mutex_t mu; /* guards everything below */
    uint64_t conns;     /* connection numbers handed out */
    uint64_t gen;
    bg_kafka_share_owner_t *b[BG_KAFKA_SHARE_OWNER_BUCKETS];
};

bg_kafka_share_owners_t *bg_kafka_share_owners_new(void)
{
    bg_kafka_share_owners_t *o = calloc(1, sizeof *o);
    if (o && pthread_mutex_init(&o->mu, NULL) != 0) {
        free(o);
        return NULL;
    }
    return o;
}

void bg_kafka_share_owners_free(bg_kafka_share_owners_t *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < BG_KAFKA_SHARE_OWNER_BUCKETS; i++)
        while (o->b[i]) {
            bg_kafka_share_owner_t *e = o->b[i];
            o->b[i] = e->next;
            free(e);
        }
    pthread_mutex_destroy(&o->mu);
    free(o);
}

/* The bucket of (group, member): every node's entry of one member shares it,
 * so the conflicting ones are found together. */
static size_t bg_kafka_share__bucket(const bg_kafka_share_session_t *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a over both ids and their lengths */
    const unsigned char *parts[2] = {(const unsigned char *)s->group,
                                     (const unsigned char *)s->member};
    size_t lens[2] = {s->group_len, s->member_len};
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < lens[k]; i++)
            h = (h ^ parts[k][i]) * 1099511628211ull;
        h = (h ^ (lens[k] & 0xff) ^ 0x100) * 1099511628211ull;
    }
    return (size_t)(h & (BG_KAFKA_SHARE_OWNER_BUCKETS - 1));
}

static int bg_kafka_share__same_ids(const bg_kafka_share_owner_t *e,
                                    const bg_kafka_share_session_t *s)
{
    return e->group_len == s->group_len && e->member_len == s->member_len &&
           memcmp(e->key, s->group, s->group_len) == 0 &&
           memcmp(e->key + s->group_len, s->member, s->member_len) == 0;
}

/* 1 when an opening request on node a may replace the session another
 * connection holds on node b: the same broker, or a bootstrap connection,
 * which may reach any broker. */
static int bg_kafka_share__conflict(int32_t a, int32_t b)
{
    return a == b || a < 0 || b < 0;
}

static bg_kafka_share_owner_t *bg_kafka_share__entry(bg_kafka_share_owners_t *o,
                                                     const bg_kafka_share_sessions_t *t,
                                                     const bg_kafka_share_session_t *s,
                                                     int create)
{
    bg_kafka_share_owner_t **b = &o->b[bg_kafka_share__bucket(s)];
    for (bg_kafka_share_owner_t *e = *b; e; e = e->next)
        if (e->node == t->node && bg_kafka_share__same_ids(e, s))
            return e;
    if (!create)
        return NULL;
    bg_kafka_share_owner_t *e = calloc(1, sizeof *e + s->group_len + s->member_len);
    if (!e)
        return NULL;
    e->node = t->node;
    e->group_len = s->group_len;
    e->member_len = s->member_len;
    memcpy(e->key, s->group, s->group_len);
    memcpy(e->key + s->group_len, s->member, s->member_len);
    e->next = *b;
    *b = e;
    return e;
}

/* Frees e once nobody owns it and nothing is in flight for it. */
static void bg_kafka_share__entry_drop(bg_kafka_share_owners_t *o, bg_kafka_share_owner_t *e)
{
    if (e->owner || e->inflight)
        return;
    bg_kafka_share_owner_t **p = &o->b[bg_kafka_share__bucket(&(bg_kafka_share_session_t){
        .group = e->key, .group_len = e->group_len, .member = e->key + e->group_len,
        .member_len = e->member_len})];
    while (*p != e)
        p = &(*p)->next;
    *p = e->next;
    free(e);
}

/* Every entry an opening request of t for s may replace loses its owner,
 * and a claim in flight for it can no longer be confirmed. Returns 1 when
 * another connection's opening request was in flight for one of them. */
static int bg_kafka_share__revoke(bg_kafka_share_owners_t *o, const bg_kafka_share_sessions_t *t,
                                  const bg_kafka_share_session_t *s)
{
    int contended = 0;
    bg_kafka_share_owner_t *e = o->b[bg_kafka_share__bucket(s)], *next;
    for (; e; e = next) {
        next = e->next;
        if (!bg_kafka_share__conflict(e->node, t->node) || !bg_kafka_share__same_ids(e, s))
            continue;
        if (e->inflight && e->inflight_conn != t->conn)
            contended = 1;
        e->owner = 0;
        e->gen = ++o->gen;
        bg_kafka_share__entry_drop(o, e);
    }
    return contended;
}

/* An opening request of t for s goes upstream. Returns 0, -1 on out of
 * memory. */
static int bg_kafka_share__claim(bg_kafka_share_sessions_t *t, const bg_kafka_share_session_t *s,
                                 bg_kafka_share_update_t *u)
{
    bg_kafka_share_owners_t *o = t->owners;
    if (!o)
        return 0;
    pthread_mutex_lock(&o->mu);
    u->contended = bg_kafka_share__revoke(o, t, s);
    bg_kafka_share_owner_t *e = bg_kafka_share__entry(o, t, s, 1);
    if (e) {
        e->inflight_conn = !e->inflight || e->inflight_conn == t->conn
                               ? t->conn
                               : BG_KAFKA_SHARE_CONN_SEVERAL;
        e->inflight++;
        u->gen = e->gen = ++o->gen;
    }
    pthread_mutex_unlock(&o->mu);
    return e ? 0 : -1;
}

/* The opening request u of t for s was answered (ok: with error 0).
 * Returns 1 when t now owns the broker's session: ok, and no opening
 * request that may have replaced it was sent since u or in flight with it
 * from another connection. */
static int bg_kafka_share__settle(bg_kafka_share_sessions_t *t, const bg_kafka_share_session_t *s,
                                  const bg_kafka_share_update_t *u, int ok)
{
    bg_kafka_share_owners_t *o = t->owners;
    if (!o)
        return 0;
    int owned = 0;
    pthread_mutex_lock(&o->mu);
    bg_kafka_share_owner_t *e = bg_kafka_share__entry(o, t, s, 0);
    if (e && e->inflight) {
        if (--e->inflight == 0)
            e->inflight_conn = 0;
        if (ok && !u->contended && e->gen == u->gen) {
            e->owner = t->conn;
            owned = 1;
        }
        bg_kafka_share__entry_drop(o, e);
    }
    pthread_mutex_unlock(&o->mu);
    return owned;
}

/* Gives up what t holds in the table for s: ownership, and n opening
 * requests that will never be answered (the broker may still handle them,
 * so no claim in flight for the session can be confirmed either). */
static void bg_kafka_share__release(bg_kafka_share_sessions_t *t,
                                    const bg_kafka_share_session_t *s, unsigned n)
{
    bg_kafka_share_owners_t *o = t->owners;
    if (!o)
        return;
    pthread_mutex_lock(&o->mu);
    if (n)
        (void)bg_kafka_share__revoke(o, t, s);
    bg_kafka_share_owner_t *e = bg_kafka_share__entry(o, t, s, 0);
    if (e) {
        if (e->owner == t->conn)
            e->owner = 0;
        e->inflight = e->inflight > n ? e->inflight - n : 0;
        if (!e->inflight)
            e->inflight_conn = 0;
        bg_kafka_share__entry_drop(o, e);
    }
    pthread_mutex_unlock(&o->mu);
}

static int bg_kafka_share__owns(const bg_kafka_share_sessions_t *t,
                                const bg_kafka_share_session_t *s)
{
    bg_kafka_share_owners_t *o = t->owners;
    if (!o)
        return 0;
    pthread_mutex_lock(&o->mu);
    const bg_kafka_share_owner_t *e = bg_kafka_share__entry(o, t, s, 0);
    int owns = e && e->owner == t->conn;
    pthread_mutex_unlock(&o->mu);
    return owns;
}

/* ---- tracker ---- */

bg_kafka_share_sessions_t *bg_kafka_share_new(bg_kafka_share_owners_t *owners, int32_t node)
{
    bg_kafka_share_sessions_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->owners = owners;
    t->node = node < 0 ? -1 : node;
    if (owners) {
        pthread_mutex_lock(&owners->mu);
        t->conn = ++owners->conns;
        pthread_mutex_unlock(&owners->mu);
    }
    return t;
}

/* Budget units of the ids of a record. */
static size_t bg_kafka_share__id_units(size_t group_len, size_t member_len)
{
    return (group_len + member_len) / 32 + 1;
}

static size_t bg_kafka_share__units(const bg_kafka_share_session_t *s)
{
    return s->n + bg_kafka_share__id_units(s->group_len, s->member_len);
}

static void bg_kafka_share__clear(bg_kafka_share_session_t *s)
{
    free(s->group);
    free(s->member);
    free(s->tps);
    memset(s, 0, sizeof *s);
}

void bg_kafka_share_free(bg_kafka_share_sessions_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++) {
        bg_kafka_share__release(t, &t->s[i], t->s[i].opening);
        bg_kafka_share__clear(&t->s[i]);
    }
    free(t);
}

static size_t bg_kafka_share__len(bg_slice_t s) { return s.len > 0 ? (size_t)s.len : 0; }

static int bg_kafka_share__eq(const char *p, size_t n, bg_slice_t s)
{
    size_t len = bg_kafka_share__len(s);
    return n == len && (len == 0 || memcmp(p, s.p, len) == 0);
}

const bg_kafka_share_session_t *bg_kafka_share_find(const bg_kafka_share_sessions_t *t,
                                                    bg_slice_t group, bg_slice_t member)
{
    for (size_t i = 0; t && i < t->n; i++)
        if (bg_kafka_share__eq(t->s[i].group, t->s[i].group_len, group) &&
            bg_kafka_share__eq(t->s[i].member, t->s[i].member_len, member))
            return &t->s[i];
    return NULL;
}

int bg_kafka_share_usable(const bg_kafka_share_sessions_t *t, const bg_kafka_share_session_t *s)
{
    return t && s && s->open && s->opening == 0 && bg_kafka_share__owns(t, s);
}

size_t bg_kafka_share_units_after(const bg_kafka_share_sessions_t *t,
                                  const bg_kafka_share_session_t *s, bg_slice_t group,
                                  bg_slice_t member, size_t new_n)
{
    size_t used = t ? t->units : 0;
    if (s)
        used -= bg_kafka_share__units(s);
    return used + new_n +
           bg_kafka_share__id_units(bg_kafka_share__len(group), bg_kafka_share__len(member));
}

size_t bg_kafka_share_union(const bg_kafka_share_session_t *s, const bg_kafka_share_tp_t *add,
                            size_t nadd)
{
    if (!s)
        return nadd;
    size_t n = s->n;
    for (size_t i = 0; i < nadd; i++)
        n += !bg_kafka_share_contains(s->tps, s->n, &add[i]);
    return n;
}

static char *bg_kafka_share__dup(bg_slice_t s, size_t *len)
{
    *len = bg_kafka_share__len(s);
    char *p = malloc(*len + 1);
    if (p) {
        if (*len)
            memcpy(p, s.p, *len);
        p[*len] = '\0';
    }
    return p;
}

/* The record of u's (group, member), created (closed, empty) when there is
 * none; NULL when there is no room or memory. */
static bg_kafka_share_session_t *bg_kafka_share__get(bg_kafka_share_sessions_t *t,
                                                     const bg_kafka_share_update_t *u)
{
    bg_kafka_share_session_t *s =
        (bg_kafka_share_session_t *)bg_kafka_share_find(t, u->group, u->member);
    if (s)
        return s;
    if (t->n == BG_KAFKA_SHARE_MAX_SESSIONS ||
        bg_kafka_share_units_after(t, NULL, u->group, u->member, 0) >
            BG_KAFKA_SHARE_MAX_PARTITIONS) /* the classifier refuses these first */
        return NULL;
    s = &t->s[t->n];
    s->group = bg_kafka_share__dup(u->group, &s->group_len);
    s->member = bg_kafka_share__dup(u->member, &s->member_len);
    if (!s->group || !s->member) {
        bg_kafka_share__clear(s);
        return NULL;
    }
    t->n++;
    t->units += bg_kafka_share__units(s);
    return s;
}

static void bg_kafka_share__remove(bg_kafka_share_sessions_t *t, bg_kafka_share_session_t *s)
{
    bg_kafka_share__release(t, s, 0);
    t->units -= bg_kafka_share__units(s);
    bg_kafka_share__clear(s);
    size_t i = (size_t)(s - t->s);
    memmove(&t->s[i], &t->s[i + 1], (t->n - i - 1) * sizeof t->s[0]);
    memset(&t->s[--t->n], 0, sizeof t->s[0]);
}

/* s's partitions become its own and tps[0..n) (numbered seq), deduplicated,
 * in an array of the exact size. Returns 0, -1 on out of memory or over the
 * budget (s unchanged). */
static int bg_kafka_share__merge(bg_kafka_share_sessions_t *t, bg_kafka_share_session_t *s,
                                 const bg_kafka_share_tp_t *tps, size_t n, uint64_t seq, int keep)
{
    size_t old = keep ? s->n : 0;
    size_t want = bg_kafka_share_union(keep ? s : NULL, tps, n);
    if (t->units - s->n + want > BG_KAFKA_SHARE_MAX_PARTITIONS)
        return -1;
    bg_kafka_share_tp_t *p = malloc((old + n + 1) * sizeof *p);
    if (!p)
        return -1;
    if (old)
        memcpy(p, s->tps, old * sizeof *p);
    if (n)
        memcpy(p + old, tps, n * sizeof *p);
    for (size_t i = old; i < old + n; i++)
        p[i].seq = seq;
    size_t k = bg_kafka_share_sort(p, old + n);
    bg_kafka_share_tp_t *q = realloc(p, (k + 1) * sizeof *p); /* shrinking: keeps p on failure */
    free(s->tps);
    s->tps = q ? q : p;
    t->units = t->units - s->n + k;
    s->n = s->cap = k;
    return 0;
}

int bg_kafka_share_forwarded(bg_kafka_share_sessions_t *t, bg_kafka_share_update_t *u)
{
    u->seq = ++t->seq;
    if (u->epoch < 0) /* final: answered later; below -1 never forwarded */
        return 0;
    if (u->epoch == 0) {
        bg_kafka_share_session_t *s = bg_kafka_share__get(t, u);
        if (!s || bg_kafka_share__claim(t, s, u) != 0)
            return -1;
        s->opening++;
        s->opening_seq = u->seq;
        return 0;
    }
    bg_kafka_share_session_t *s =
        (bg_kafka_share_session_t *)bg_kafka_share_find(t, u->group, u->member);
    if (!s) /* the classifier forwards no incremental request without one */
        return -1;
    return u->nadd ? bg_kafka_share__merge(t, s, u->add, u->nadd, u->seq, 1) : 0;
}

/* 1 when the answer to the incremental request u removes tp from its session. */
static int bg_kafka_share__drops(const bg_kafka_share_update_t *u, const bg_kafka_share_tp_t *tp)
{
    return tp->seq <= u->seq /* not added again by a later request */ &&
           bg_kafka_share_contains(u->forget, u->nforget, tp);
}

static void bg_kafka_share__opened(bg_kafka_share_sessions_t *t, bg_kafka_share_session_t *s,
                                   const bg_kafka_share_update_t *u, int16_t err)
{
    if (s->opening == 0) /* never: each opening request is counted when sent */
        return;
    s->opening--;
    int owned = bg_kafka_share__settle(t, s, u, err == 0);
    if (u->seq != s->opening_seq) /* a later opening request decides */
        return;
    /* Not open and owned: nobody may use the record. Refused: the broker may
     * still hold the old session, but this connection gave its ownership up
     * when it sent u. */
    if (!owned || bg_kafka_share__merge(t, s, u->add, u->nadd, u->seq, 0) != 0) {
        if (s->opening == 0)
            bg_kafka_share__remove(t, s);
        return;
    }
    s->open = 1;
}

void bg_kafka_share_answered(bg_kafka_share_sessions_t *t, const bg_kafka_share_update_t *u,
                             int16_t err)
{
    bg_kafka_share_session_t *s =
        (bg_kafka_share_session_t *)bg_kafka_share_find(t, u->group, u->member);
    if (!s || u->epoch < -1)
        return;
    if (u->epoch == 0) {
        bg_kafka_share__opened(t, s, u, err);
        return;
    }
    if (err != 0)
        return;
    if (u->epoch == -1) {
        if (s->opening == 0)
            bg_kafka_share__remove(t, s);
        else
            s->open = 0;
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++)
        if (!bg_kafka_share__drops(u, &s->tps[i]))
            s->tps[k++] = s->tps[i];
    t->units -= s->n - k;
    s->n = k;
}
