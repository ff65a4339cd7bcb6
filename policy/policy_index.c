/* Resource indexes of a compiled policy: literal/prefix trie, reversed-tail
 * trie and loose glob list (see policy-internal.h). Built once per
 * compilation into the policy's arena; policy_lookup.c walks them. */
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

uint64_t bg_policy__hash(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a: group names are short */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

/* ---- builder ---- */

typedef struct bg_policy_kc_s { /* (key, candidate) pair */
    const char *key;
    uint32_t len;
    bool exact; /* literal: applies only when the key ends at its node */
    bg_policy_cand_t cand;
} bg_policy_kc_t;

/* Candidate order inside one list: finals (enforced denies) first, then
 * file order; the lookup relies on it to stop early. */
static int bg_policy__cand_cmp(const bg_policy_cand_t *x, const bg_policy_cand_t *y)
{
    unsigned fx = BG_POLICY_META_FINAL(x->meta), fy = BG_POLICY_META_FINAL(y->meta);
    if (fx != fy)
        return fx > fy ? -1 : 1;
    if (x->item != y->item)
        return x->item < y->item ? -1 : 1;
    return x->glob < y->glob ? -1 : x->glob > y->glob;
}

static int bg_policy__cand_qcmp(const void *a, const void *b)
{
    return bg_policy__cand_cmp(a, b);
}

static int bg_policy__kc_cmp(const void *a, const void *b)
{
    const bg_policy_kc_t *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->key, y->key, n);
    if (c)
        return c;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    if (x->exact != y->exact)
        return x->exact ? -1 : 1;
    return bg_policy__cand_cmp(&x->cand, &y->cand);
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
 * equal to the node's path come first (exact ones, then prefixes, each in
 * candidate order); the rest are grouped by their next byte, one child per
 * group, children stored contiguously. */
static void bg_policy__trie_fill(bg_policy_tb_t *b, uint32_t node, size_t lo, size_t hi,
                                 size_t depth)
{
    bg_policy_trie_t *t = b->t;
    bg_policy_node_t *nd = &t->node[node];
    nd->cand = *b->ncands;
    while (lo < hi && b->kc[lo].len == depth) {
        nd->nexact += b->kc[lo].exact;
        nd->nprefix += !b->kc[lo].exact;
        b->cands[(*b->ncands)++] = b->kc[lo++].cand;
    }
    uint32_t nchild = 0;
    for (size_t i = lo; i < hi; i++)
        nchild += i == lo || b->kc[i].key[depth] != b->kc[i - 1].key[depth];
    nd->child = t->nnodes;
    nd->nchild = (uint16_t)nchild;
    uint32_t child = t->nnodes;
    t->nnodes += nchild;
    for (size_t i = lo; i < hi; child++) {
        size_t j = i;
        while (j < hi && b->kc[j].key[depth] == b->kc[i].key[depth])
            j++;
        size_t lcp = bg_policy__lcp(&b->kc[i], &b->kc[j - 1], depth + 1);
        bg_policy_node_t *c = &t->node[child];
        c->label_len = (uint16_t)(lcp - depth);
        if (c->label_len <= BG_POLICY_LABEL_INLINE)
            memcpy(c->label.inl, b->kc[i].key + depth, c->label_len);
        else
            c->label.ptr = b->kc[i].key + depth;
        t->first[child] = (unsigned char)b->kc[i].key[depth];
        if (nchild <= BG_POLICY_KIDS_INLINE)
            nd->kids[child - nd->child] = t->first[child];
        bg_policy__trie_fill(b, child, i, j, lcp);
        i = j;
    }
}

static int bg_policy__build_trie(bg_policy_arena_t *a, bg_policy_trie_t *t,
                                 const bg_policy_kc_t *kc, size_t n, bg_policy_cand_t *cands,
                                 uint32_t *ncands)
{
    size_t cap = 2 * n + 1;
    t->node = bg_policy__alloc(a, cap * sizeof(*t->node));
    t->first = bg_policy__alloc(a, cap);
    if (!t->node || !t->first)
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
    bg_policy_kc_t *pre, *suf;
    size_t npre, nsuf;
} bg_policy_ib_t;

static int bg_policy__add_glob(bg_policy_arena_t *a, bg_policy_index_t *ix, bg_policy_ib_t *b,
                               const bg_policy_ientry_t *e)
{
    size_t head, tail;
    uint32_t id = ix->nglobs++, len;
    bg_policy_glob_t *g = &ix->globs[id];
    bg_policy_cand_t c = e->cand;
    c.glob = id;
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
        b->pre[b->npre++] = (bg_policy_kc_t){key, len, false, c};
    } else if (tail > 0) {
        char *rev = bg_policy__alloc(a, tail);
        if (!rev)
            return -1;
        for (size_t i = 0; i < tail; i++)
            rev[i] = e->pat.name[e->pat.name_len - 1 - i];
        b->suf[b->nsuf++] = (bg_policy_kc_t){rev, (uint32_t)tail, false, c};
    } else
        ix->loose[ix->nloose++] = c;
    return 0;
}

static int bg_policy__classify_entries(bg_policy_arena_t *a, bg_policy_index_t *ix,
                                       bg_policy_ib_t *b, const bg_policy_ientry_t *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t len;
        bg_policy_cand_t c = e[i].cand;
        c.glob = BG_POLICY_NO_GLOB;
        if (e[i].pat.kind == BG_PAT_GLOB) {
            if (bg_policy__add_glob(a, ix, b, &e[i]) < 0)
                return -1;
            continue;
        }
        const char *key = bg_policy__pattern_key(a, &e[i].pat, e[i].pat.name_len, &len);
        if (!key)
            return -1;
        b->pre[b->npre++] = (bg_policy_kc_t){key, len, e[i].pat.kind == BG_PAT_LITERAL, c};
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
    b.pre = malloc((n + 1) * sizeof(*b.pre));
    b.suf = malloc((n + 1) * sizeof(*b.suf));
    ix->globs = bg_policy__alloc(a, (n + 1) * sizeof(*ix->globs));
    ix->loose = bg_policy__alloc(a, (n + 1) * sizeof(*ix->loose));
    ix->cands = bg_policy__alloc(a, (n + 1) * sizeof(*ix->cands));
    if (!b.pre || !b.suf || !ix->globs || !ix->loose || !ix->cands)
        goto fail;
    if (bg_policy__classify_entries(a, ix, &b, e, n) < 0)
        goto fail;
    b.npre = bg_policy__kc_sort(b.pre, b.npre);
    b.nsuf = bg_policy__kc_sort(b.suf, b.nsuf);
    qsort(ix->loose, ix->nloose, sizeof(*ix->loose), bg_policy__cand_qcmp);
    if (bg_policy__build_trie(a, &ix->prefix, b.pre, b.npre, ix->cands, &ncands) < 0 ||
        bg_policy__build_trie(a, &ix->suffix, b.suf, b.nsuf, ix->cands, &ncands) < 0)
        goto fail;
    ix->ncands = ncands + ix->nloose;
    rc = 0;
fail:
    free(b.pre);
    free(b.suf);
    return rc;
}
