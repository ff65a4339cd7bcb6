/* Share fetch sessions tracked per connection (see kafka_share.h). */
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

bg_kafka_share_sessions_t *bg_kafka_share_new(void)
{
    return calloc(1, sizeof(bg_kafka_share_sessions_t));
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
    for (size_t i = 0; i < t->n; i++)
        bg_kafka_share__clear(&t->s[i]);
    free(t);
}

static int bg_kafka_share__eq(const char *p, size_t n, bg_slice_t s)
{
    size_t len = s.len > 0 ? (size_t)s.len : 0;
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

static char *bg_kafka_share__dup(bg_slice_t s, size_t *len)
{
    *len = s.len > 0 ? (size_t)s.len : 0;
    char *p = malloc(*len + 1);
    if (p) {
        if (*len)
            memcpy(p, s.p, *len);
        p[*len] = '\0';
    }
    return p;
}

static bg_kafka_share_session_t *bg_kafka_share__get(bg_kafka_share_sessions_t *t,
                                                     const bg_kafka_share_update_t *u)
{
    bg_kafka_share_session_t *s =
        (bg_kafka_share_session_t *)bg_kafka_share_find(t, u->group, u->member);
    if (s)
        return s;
    if (t->n == BG_KAFKA_SHARE_MAX_SESSIONS) /* the classifier refuses this first */
        return NULL;
    s = &t->s[t->n];
    s->group = bg_kafka_share__dup(u->group, &s->group_len);
    s->member = bg_kafka_share__dup(u->member, &s->member_len);
    if (!s->group || !s->member) {
        bg_kafka_share__clear(s);
        return NULL;
    }
    t->n++;
    return s;
}

int bg_kafka_share_forwarded(bg_kafka_share_sessions_t *t, bg_kafka_share_update_t *u)
{
    u->seq = ++t->seq;
    /* A new session is tracked even when empty (every partition it named was
     * refused): the client's next, incremental request must find it. */
    if (u->epoch == -1 || (u->nadd == 0 && u->epoch != 0))
        return 0;
    bg_kafka_share_session_t *s = bg_kafka_share__get(t, u);
    if (!s)
        return -1;
    if (s->n + u->nadd > s->cap) {
        size_t cap = s->cap ? s->cap : 16;
        while (cap < s->n + u->nadd)
            cap *= 2;
        bg_kafka_share_tp_t *p = realloc(s->tps, cap * sizeof *p);
        if (!p)
            return -1;
        s->tps = p;
        s->cap = cap;
    }
    if (u->nadd == 0)
        return 0;
    memcpy(s->tps + s->n, u->add, u->nadd * sizeof *u->add);
    for (size_t i = 0; i < u->nadd; i++)
        s->tps[s->n + i].seq = u->seq;
    s->n = bg_kafka_share_sort(s->tps, s->n + u->nadd);
    return 0;
}

static void bg_kafka_share__remove(bg_kafka_share_sessions_t *t, bg_kafka_share_session_t *s)
{
    bg_kafka_share__clear(s);
    size_t i = (size_t)(s - t->s);
    memmove(&t->s[i], &t->s[i + 1], (t->n - i - 1) * sizeof t->s[0]);
    memset(&t->s[--t->n], 0, sizeof t->s[0]);
}

/* 1 when the answer to u removes tp from its session. */
static int bg_kafka_share__drops(const bg_kafka_share_update_t *u, const bg_kafka_share_tp_t *tp)
{
    if (tp->seq > u->seq) /* added again by a later request */
        return 0;
    if (u->epoch == -1)
        return 1;
    if (u->epoch == 0)
        return !bg_kafka_share_contains(u->add, u->nadd, tp);
    return bg_kafka_share_contains(u->forget, u->nforget, tp);
}

void bg_kafka_share_answered(bg_kafka_share_sessions_t *t, const bg_kafka_share_update_t *u,
                             int16_t err)
{
    bg_kafka_share_session_t *s =
        (bg_kafka_share_session_t *)bg_kafka_share_find(t, u->group, u->member);
    if (err != 0 || !s)
        return;
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++)
        if (!bg_kafka_share__drops(u, &s->tps[i]))
            s->tps[k++] = s->tps[i];
    s->n = k;
    if (u->epoch == -1 && k == 0)
        bg_kafka_share__remove(t, s);
}
