/* Resource indexes of a compiled policy: literal hash table, prefix trie,
 * reversed-tail trie and loose glob list (see policy-internal.h). Built once
 * per compilation into the policy's arena; lookups allocate nothing. */
#include "policy/policy-internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- arena ---- */

struct bg_policy_arena_chunk_s {
    bg_policy_arena_chunk_t *next;
    size_t cap;
    _Alignas(16) unsigned char data[];
};

void *bg_policy__alloc(bg_policy_arena_t *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (!a->head || a->cap - a->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        bg_policy_arena_chunk_t *c = malloc(sizeof(*c) + cap);
        if (!c)
            return NULL;
        c->next = a->head;
        c->cap = cap;
        a->head = c;
        a->used = 0;
        a->cap = cap;
    }
    void *p = a->head->data + a->used;
    a->used += n;
    memset(p, 0, n);
    return p;
}

char *bg_policy__strndup(bg_policy_arena_t *a, const char *s, size_t n)
{
    char *d = bg_policy__alloc(a, n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

void bg_policy__arena_free(bg_policy_arena_t *a)
{
    bg_policy_arena_chunk_t *c = a->head;
    while (c) {
        bg_policy_arena_chunk_t *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->used = a->cap = 0;
}

/* ---- key views ---- */

uint64_t bg_policy__hash(const bg_policy_key_t *k)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a: keys are short */
    for (int p = 0; p < 3; p++)
        for (size_t i = 0; i < k->len[p]; i++)
            h = (h ^ (unsigned char)k->part[p][i]) * 0x100000001b3ull;
    return h;
}

static inline unsigned char bg_policy__key_at(const bg_policy_key_t *k, size_t pos)
{
    if (pos < k->len[0])
        return (unsigned char)k->part[0][pos];
    pos -= k->len[0];
    if (pos < k->len[1])
        return (unsigned char)k->part[1][pos];
    return (unsigned char)k->part[2][pos - k->len[1]];
}

/* Does key[pos, pos+n) equal s? Caller checks pos + n <= total. */
static bool bg_policy__key_eq(const bg_policy_key_t *k, size_t pos, const char *s, size_t n)
{
    for (int p = 0; p < 3 && n > 0; p++) {
        if (pos >= k->len[p]) {
            pos -= k->len[p];
            continue;
        }
        size_t take = k->len[p] - pos < n ? k->len[p] - pos : n;
        if (memcmp(k->part[p] + pos, s, take) != 0)
            return false;
        s += take;
        n -= take;
        pos = 0;
    }
    return true;
}

/* ---- builder ---- */

typedef struct bg_policy_kc_s { /* (key, candidate) pair */
    const char *key;
    uint32_t len;
    bg_policy_cand_t cand;
} bg_policy_kc_t;

static int bg_policy__kc_cmp(const void *a, const void *b)
{
    const bg_policy_kc_t *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->key, y->key, n);
    if (c)
        return c;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    if (x->cand.item != y->cand.item)
        return x->cand.item < y->cand.item ? -1 : 1;
    return x->cand.glob < y->cand.glob ? -1 : x->cand.glob > y->cand.glob;
}

/* Sorts pairs, drops duplicates; returns the new count. */
static size_t bg_policy__kc_sort(bg_policy_kc_t *kc, size_t n)
{
    size_t out = 0;
    if (n == 0)
        return 0;
    qsort(kc, n, sizeof(*kc), bg_policy__kc_cmp);
    for (size_t i = 0; i < n; i++)
        if (out == 0 || bg_policy__kc_cmp(&kc[out - 1], &kc[i]) != 0)
            kc[out++] = kc[i];
    return out;
}

static bool bg_policy__same_key(const bg_policy_kc_t *a, const bg_policy_kc_t *b)
{
    return a->len == b->len && memcmp(a->key, b->key, a->len) == 0;
}

static int bg_policy__build_hash(bg_policy_arena_t *a, bg_policy_index_t *ix,
                                 const bg_policy_kc_t *kc, size_t n, uint32_t *ncands)
{
    size_t nkeys = 0, cap = 4;
    for (size_t i = 0; i < n; i++)
        nkeys += i == 0 || !bg_policy__same_key(&kc[i - 1], &kc[i]);
    if (nkeys == 0)
        return 0;
    while (cap < nkeys * 2)
        cap *= 2;
    ix->ht = bg_policy__alloc(a, cap * sizeof(*ix->ht));
    if (!ix->ht)
        return -1;
    ix->ht_mask = (uint32_t)(cap - 1);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && bg_policy__same_key(&kc[i], &kc[j]))
            ix->cands[(*ncands)++] = kc[j++].cand;
        bg_policy_key_t k = {{kc[i].key, "", ""}, {kc[i].len, 0, 0}, kc[i].len};
        uint64_t h = bg_policy__hash(&k);
        uint32_t s = (uint32_t)h & ix->ht_mask;
        while (ix->ht[s].key)
            s = (s + 1) & ix->ht_mask;
        ix->ht[s] = (bg_policy_hent_t){h, kc[i].key, kc[i].len, *ncands - (uint32_t)(j - i),
                                       (uint32_t)(j - i)};
        i = j;
    }
    return 0;
}

typedef struct bg_policy_tb_s { /* trie builder state */
    bg_policy_trie_t *t;
    const bg_policy_kc_t *kc;
    bg_policy_cand_t *cands;
    uint32_t *ncands;
} bg_policy_tb_t;

static size_t bg_policy__lcp(const bg_policy_kc_t *a, const bg_policy_kc_t *b, size_t from)
{
    size_t n = a->len < b->len ? a->len : b->len;
    while (from < n && a->key[from] == b->key[from])
        from++;
    return from;
}

/* kc[lo, hi) share their first depth bytes and end at or below node. Keys
 * equal to the node's path come first (sorted); the rest are grouped by
 * their next byte, one child per group, children stored contiguously. */
static void bg_policy__trie_fill(bg_policy_tb_t *b, uint32_t node, size_t lo, size_t hi,
                                 size_t depth)
{
    bg_policy_trie_t *t = b->t;
    t->cand_off[node] = *b->ncands;
    while (lo < hi && b->kc[lo].len == depth)
        b->cands[(*b->ncands)++] = b->kc[lo++].cand;
    t->ncand[node] = *b->ncands - t->cand_off[node];
    uint32_t nchild = 0;
    for (size_t i = lo; i < hi; i++)
        nchild += i == lo || b->kc[i].key[depth] != b->kc[i - 1].key[depth];
    t->child_first[node] = t->nnodes;
    t->nchild[node] = (uint16_t)nchild;
    uint32_t child = t->nnodes;
    t->nnodes += nchild;
    for (size_t i = lo; i < hi; child++) {
        size_t j = i;
        while (j < hi && b->kc[j].key[depth] == b->kc[i].key[depth])
            j++;
        size_t lcp = bg_policy__lcp(&b->kc[i], &b->kc[j - 1], depth + 1);
        t->label[child] = b->kc[i].key + depth;
        t->label_len[child] = (uint32_t)(lcp - depth);
        t->first_byte[child] = (unsigned char)b->kc[i].key[depth];
        bg_policy__trie_fill(b, child, i, j, lcp);
        i = j;
    }
}

static int bg_policy__build_trie(bg_policy_arena_t *a, bg_policy_trie_t *t,
                                 const bg_policy_kc_t *kc, size_t n, bg_policy_cand_t *cands,
                                 uint32_t *ncands)
{
    size_t cap = 2 * n + 1;
    t->label = bg_policy__alloc(a, cap * sizeof(*t->label));
    t->label_len = bg_policy__alloc(a, cap * sizeof(*t->label_len));
    t->child_first = bg_policy__alloc(a, cap * sizeof(*t->child_first));
    t->nchild = bg_policy__alloc(a, cap * sizeof(*t->nchild));
    t->first_byte = bg_policy__alloc(a, cap);
    t->cand_off = bg_policy__alloc(a, cap * sizeof(*t->cand_off));
    t->ncand = bg_policy__alloc(a, cap * sizeof(*t->ncand));
    if (!t->label || !t->label_len || !t->child_first || !t->nchild || !t->first_byte ||
        !t->cand_off || !t->ncand)
        return -1;
    t->nnodes = 1;
    bg_policy_tb_t b = {t, kc, cands, ncands};
    bg_policy__trie_fill(&b, 0, 0, n, 0);
    return 0;
}

/* Bytes before the first wildcard, bytes after the last one, and the
 * minimum length of a match. */
static void bg_policy__glob_shape(const char *s, size_t n, size_t *head, size_t *tail,
                                  uint32_t *minlen)
{
    size_t first = n, last = 0;
    uint32_t min = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '*' || s[i] == '?') {
            if (first == n)
                first = i;
            last = i;
        }
        min += s[i] != '*';
    }
    *head = first;
    *tail = n - last - 1;
    *minlen = min;
}

/* Index key of a pattern: ROUTE '\0' NAME for http with a literal route. */
static const char *bg_policy__pattern_key(bg_policy_arena_t *a, const bg_policy_pattern_t *p,
                                          size_t name_len, uint32_t *len)
{
    if (p->type != BG_RES_HTTP || p->route_any) {
        *len = (uint32_t)name_len;
        return p->name;
    }
    char *k = bg_policy__alloc(a, p->route_len + 1 + name_len + 1);
    if (!k)
        return NULL;
    memcpy(k, p->route, p->route_len);
    memcpy(k + p->route_len + 1, p->name, name_len);
    *len = (uint32_t)(p->route_len + 1 + name_len);
    return k;
}

typedef struct bg_policy_ib_s { /* index builder scratch */
    bg_policy_kc_t *lit, *pre, *suf;
    size_t nlit, npre, nsuf;
} bg_policy_ib_t;

static int bg_policy__add_glob(bg_policy_arena_t *a, bg_policy_index_t *ix, bg_policy_ib_t *b,
                               const bg_policy_ientry_t *e)
{
    size_t head, tail;
    uint32_t id = ix->nglobs++, len;
    bg_policy_glob_t *g = &ix->globs[id];
    bg_policy_cand_t c = {e->bloom, e->item, id, {e->g[0], e->g[1]}, e->meta, e->subj};
    bg_policy__glob_shape(e->pat.name, e->pat.name_len, &head, &tail, &g->minlen);
    g->pat = e->pat.name;
    g->plen = (uint32_t)e->pat.name_len;
    const char *key = bg_policy__pattern_key(a, &e->pat, head, &len);
    if (!key)
        return -1;
    bool route_only = e->pat.type == BG_RES_HTTP && !e->pat.route_any && head == 0;
    if (route_only && tail > 0) {
        /* "ROUTE '\0'" alone would put this glob on every request to the
         * route; the path tail is far more selective. */
        g->route = e->pat.route;
        g->route_len = (uint32_t)e->pat.route_len;
        len = 0;
    }
    if (len > 0) {
        b->pre[b->npre++] = (bg_policy_kc_t){key, len, c};
    } else if (tail > 0) {
        char *rev = bg_policy__alloc(a, tail);
        if (!rev)
            return -1;
        for (size_t i = 0; i < tail; i++)
            rev[i] = e->pat.name[e->pat.name_len - 1 - i];
        b->suf[b->nsuf++] = (bg_policy_kc_t){rev, (uint32_t)tail, c};
    } else
        ix->loose[ix->nloose++] = c;
    return 0;
}

static int bg_policy__classify_entries(bg_policy_arena_t *a, bg_policy_index_t *ix,
                                       bg_policy_ib_t *b, const bg_policy_ientry_t *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t len;
        bg_policy_cand_t c = {e[i].bloom, e[i].item, BG_POLICY_NO_GLOB, {e[i].g[0], e[i].g[1]},
                              e[i].meta, e[i].subj};
        if (e[i].pat.kind == BG_PAT_GLOB) {
            if (bg_policy__add_glob(a, ix, b, &e[i]) < 0)
                return -1;
            continue;
        }
        const char *key = bg_policy__pattern_key(a, &e[i].pat, e[i].pat.name_len, &len);
        if (!key)
            return -1;
        if (e[i].pat.kind == BG_PAT_LITERAL)
            b->lit[b->nlit++] = (bg_policy_kc_t){key, len, c};
        else
            b->pre[b->npre++] = (bg_policy_kc_t){key, len, c};
    }
    return 0;
}

int bg_policy__index_build(bg_policy_arena_t *a, bg_policy_index_t *ix,
                           const bg_policy_ientry_t *e, size_t n)
{
    int rc = -1;
    uint32_t ncands = 0;
    bg_policy_ib_t b = {0};
    memset(ix, 0, sizeof(*ix));
    b.lit = malloc((n + 1) * sizeof(*b.lit));
    b.pre = malloc((n + 1) * sizeof(*b.pre));
    b.suf = malloc((n + 1) * sizeof(*b.suf));
    ix->globs = bg_policy__alloc(a, (n + 1) * sizeof(*ix->globs));
    ix->loose = bg_policy__alloc(a, (n + 1) * sizeof(*ix->loose));
    ix->cands = bg_policy__alloc(a, (n + 1) * sizeof(*ix->cands));
    if (!b.lit || !b.pre || !b.suf || !ix->globs || !ix->loose || !ix->cands)
        goto fail;
    if (bg_policy__classify_entries(a, ix, &b, e, n) < 0)
        goto fail;
    b.nlit = bg_policy__kc_sort(b.lit, b.nlit);
    b.npre = bg_policy__kc_sort(b.pre, b.npre);
    b.nsuf = bg_policy__kc_sort(b.suf, b.nsuf);
    if (bg_policy__build_hash(a, ix, b.lit, b.nlit, &ncands) < 0 ||
        bg_policy__build_trie(a, &ix->prefix, b.pre, b.npre, ix->cands, &ncands) < 0 ||
        bg_policy__build_trie(a, &ix->suffix, b.suf, b.nsuf, ix->cands, &ncands) < 0)
        goto fail;
    rc = 0;
fail:
    free(b.lit);
    free(b.pre);
    free(b.suf);
    return rc;
}

/* ---- lookup ---- */

typedef struct bg_policy_vis_s {
    const bg_policy_index_t *ix;
    const char *name;
    size_t name_len;
    const bg_policy_visitor_t *v;
    uint64_t bloom;
    const bg_policy_key_t *key; /* for http, part 0 is the route */
} bg_policy_vis_t;

static inline bool bg_policy__glob_ok(const bg_policy_vis_t *v, uint32_t glob)
{
    const bg_policy_glob_t *g = &v->ix->globs[glob];
    if (g->route && (v->key->len[0] != g->route_len ||
                     memcmp(v->key->part[0], g->route, g->route_len) != 0))
        return false;
    return v->name_len >= g->minlen && bg_policy__glob_match(g->pat, g->plen, v->name, v->name_len);
}

static inline void bg_policy__emit(const bg_policy_vis_t *v, const bg_policy_cand_t *c, uint32_t n)
{
    static const uint32_t none = UINT32_MAX;
    const uint32_t *cutoff = v->v->cutoff ? v->v->cutoff : &none;
    for (uint32_t i = 0; i < n && c[i].item <= *cutoff; i++) {
        if (!(c[i].bloom & v->bloom) || !v->v->want(v->v->ctx, &c[i]))
            continue;
        if (c[i].glob == BG_POLICY_NO_GLOB || bg_policy__glob_ok(v, c[i].glob))
            v->v->hit(v->v->ctx, c[i].item);
    }
}

static uint32_t bg_policy__child(const bg_policy_trie_t *t, uint32_t node, unsigned char c)
{
    uint32_t lo = t->child_first[node], hi = lo + t->nchild[node];
    while (lo < hi) { /* children sorted by first byte */
        uint32_t mid = (lo + hi) / 2;
        if (t->first_byte[mid] < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < t->child_first[node] + t->nchild[node] && t->first_byte[lo] == c ? lo : 0;
}

static void bg_policy__walk_prefix(const bg_policy_vis_t *v, const bg_policy_key_t *k)
{
    const bg_policy_trie_t *t = &v->ix->prefix;
    uint32_t node = 0;
    size_t pos = 0;
    bg_policy__emit(v, v->ix->cands + t->cand_off[0], t->ncand[0]);
    while (pos < k->total) {
        uint32_t c = bg_policy__child(t, node, bg_policy__key_at(k, pos));
        if (!c || pos + t->label_len[c] > k->total ||
            !bg_policy__key_eq(k, pos, t->label[c], t->label_len[c]))
            return;
        pos += t->label_len[c];
        node = c;
        bg_policy__emit(v, v->ix->cands + t->cand_off[node], t->ncand[node]);
    }
}

/* Walks the reversed-tail trie from the end of the name. */
static void bg_policy__walk_suffix(const bg_policy_vis_t *v)
{
    const bg_policy_trie_t *t = &v->ix->suffix;
    const unsigned char *s = (const unsigned char *)v->name;
    size_t n = v->name_len, pos = 0;
    uint32_t node = 0;
    while (pos < n) {
        uint32_t c = bg_policy__child(t, node, s[n - 1 - pos]);
        uint32_t L = c ? t->label_len[c] : 0;
        if (!c || pos + L > n)
            return;
        for (uint32_t j = 0; j < L; j++)
            if ((unsigned char)t->label[c][j] != s[n - 1 - pos - j])
                return;
        pos += L;
        node = c;
        bg_policy__emit(v, v->ix->cands + t->cand_off[node], t->ncand[node]);
    }
}

void bg_policy__index_visit(const bg_policy_index_t *ix, const bg_policy_key_t *key,
                            const char *name, size_t name_len, const bg_policy_visitor_t *visitor)
{
    bg_policy_vis_t v = {ix, name, name_len, visitor, visitor->bloom, key};
    if (ix->ht) {
        uint64_t h = bg_policy__hash(key);
        for (uint32_t s = (uint32_t)h & ix->ht_mask; ix->ht[s].key; s = (s + 1) & ix->ht_mask) {
            const bg_policy_hent_t *e = &ix->ht[s];
            if (e->hash == h && e->key_len == key->total && bg_policy__key_eq(key, 0, e->key, e->key_len)) {
                bg_policy__emit(&v, ix->cands + e->cand_off, e->ncand);
                break;
            }
        }
    }
    if (ix->prefix.nnodes)
        bg_policy__walk_prefix(&v, key);
    if (ix->suffix.nnodes > 1)
        bg_policy__walk_suffix(&v);
    bg_policy__emit(&v, ix->loose, ix->nloose);
}
