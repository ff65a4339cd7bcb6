/* Index lookups: walks the literal/prefix trie, the reversed-tail trie and
 * the loose globs of the request's slot, handing each candidate list to an
 * emitter. Two emitters share one walk (inlined into each): the decision's,
 * with every check inline and early exits, and a generic visitor's for masks
 * and explain. Allocates nothing; reads only immutable state. */
#include "policy/policy-internal.h"

#include <string.h>

#define BG_POLICY_INLINE static inline __attribute__((always_inline))

/* One walk over one index. key is what the prefix trie is keyed by (the name,
 * or ROUTE '\0' NAME for http with a literal route), possibly cut short at
 * klen bytes: no trie key is longer, and total keeps the real length so a
 * cut key never ends exactly at a node. Globs are checked against name. */
typedef struct bg_policy_walk_s {
    const bg_policy_index_t *ix;
    const unsigned char *key;
    size_t klen, total;
    const char *name;
    size_t name_len;
    const char *route; /* for http globs with a literal route; NULL otherwise */
    size_t route_len;
    void *ctx;
} bg_policy_walk_t;

typedef void (*bg_policy_emit_fn)(const bg_policy_walk_t *w, const bg_policy_cand_t *c,
                                  uint32_t n);

BG_POLICY_INLINE bool bg_policy__glob_ok(const bg_policy_walk_t *w, uint32_t glob)
{
    const bg_policy_glob_t *g = &w->ix->globs[glob];
    if (g->route && (!w->route || w->route_len != g->route_len ||
                     memcmp(w->route, g->route, g->route_len) != 0))
        return false;
    return w->name_len >= g->minlen && bg_policy__glob_match(g->pat, g->plen, w->name, w->name_len);
}

/* Child of node starting with byte c, or 0. Most nodes have a handful of
 * children: a linear scan of their first bytes beats a binary search. */
static inline uint32_t bg_policy__child(const bg_policy_trie_t *t, const bg_policy_node_t *nd,
                                        unsigned char c)
{
    uint32_t n = nd->nchild;
    if (n <= BG_POLICY_KIDS_INLINE) { /* no second cache line */
        for (uint32_t i = 0; i < n; i++)
            if (nd->kids[i] == c)
                return nd->child + i;
        return 0;
    }
    const unsigned char *f = t->first + nd->child;
    if (n <= 16) {
        for (uint32_t i = 0; i < n; i++)
            if (f[i] == c)
                return nd->child + i;
        return 0;
    }
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (f[mid] < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && f[lo] == c ? nd->child + lo : 0;
}

static inline const char *bg_policy__label(const bg_policy_node_t *nd)
{
    return nd->label_len <= BG_POLICY_LABEL_INLINE ? nd->label.inl : nd->label.ptr;
}

static inline bool bg_policy__bytes_eq(const unsigned char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) /* labels are a few bytes: no memcmp call */
        if (a[i] != (unsigned char)b[i])
            return false;
    return true;
}

/* Emits the candidates of every node on the key's path (prefixes) and of the
 * node the key ends at (literals): one pass, no hashing. */
BG_POLICY_INLINE void bg_policy__walk_prefix(const bg_policy_walk_t *w, bg_policy_emit_fn emit)
{
    const bg_policy_trie_t *t = &w->ix->prefix;
    const bg_policy_node_t *nd = t->node;
    size_t pos = 0;
    for (;;) {
        if (nd->nprefix)
            emit(w, w->ix->cands + nd->cand + nd->nexact, nd->nprefix);
        if (nd->nexact && pos == w->total)
            emit(w, w->ix->cands + nd->cand, nd->nexact);
        if (pos >= w->klen)
            return;
        uint32_t c = bg_policy__child(t, nd, w->key[pos]);
        if (!c)
            return;
        nd = &t->node[c];
        if (w->klen - pos < nd->label_len ||
            !bg_policy__bytes_eq(w->key + pos, bg_policy__label(nd), nd->label_len))
            return;
        pos += nd->label_len;
    }
}

/* Walks the reversed-tail trie from the end of the name. */
BG_POLICY_INLINE void bg_policy__walk_suffix(const bg_policy_walk_t *w, bg_policy_emit_fn emit)
{
    const bg_policy_trie_t *t = &w->ix->suffix;
    const unsigned char *s = (const unsigned char *)w->name;
    const bg_policy_node_t *nd = t->node;
    size_t n = w->name_len, pos = 0;
    while (pos < n) {
        uint32_t c = bg_policy__child(t, nd, s[n - 1 - pos]);
        if (!c)
            return;
        nd = &t->node[c];
        if (pos + nd->label_len > n)
            return;
        const char *label = bg_policy__label(nd);
        for (uint32_t j = 0; j < nd->label_len; j++)
            if ((unsigned char)label[j] != s[n - 1 - pos - j])
                return;
        pos += nd->label_len;
        if (nd->nprefix)
            emit(w, w->ix->cands + nd->cand + nd->nexact, nd->nprefix);
    }
}

BG_POLICY_INLINE void bg_policy__walk(const bg_policy_walk_t *w, bg_policy_emit_fn emit)
{
    if (w->ix->ncands == 0) /* e.g. a slot no mask names */
        return;
    bg_policy__walk_prefix(w, emit);
    if (w->ix->suffix.nnodes > 1)
        bg_policy__walk_suffix(w, emit);
    if (w->ix->nloose)
        emit(w, w->ix->loose, w->ix->nloose);
}

/* Room for the longest trie key: ROUTE (<= max) '\0' PATH (<= max). */
#define BG_POLICY_KEYBUF (2 * BG_POLICY_MAX_PATTERN + 1)

/* Runs the walk over every index of res's slot(s). */
BG_POLICY_INLINE void bg_policy__walk_res(const bg_policy_index_t *ix,
                                          const bg_policy_resource_t *res, void *ctx,
                                          bg_policy_emit_fn emit)
{
    const char *name = res->name ? res->name : "";
    size_t name_len = res->name ? res->name_len : 0;
    bg_policy_walk_t w = {.key = (const unsigned char *)name, .klen = name_len,
                          .total = name_len, .name = name, .name_len = name_len, .ctx = ctx};
    if ((unsigned)res->type >= BG_RES__COUNT)
        return;
    if (res->type == BG_RES_KAFKA_CLUSTER) { /* one cluster: the name is irrelevant */
        w.ix = &ix[BG_RES_KAFKA_CLUSTER];
        w.klen = w.total = w.name_len = 0;
        w.name = "";
        bg_policy__walk(&w, emit);
        return;
    }
    w.ix = &ix[res->type == BG_RES_HTTP ? BG_POLICY_SLOT_HTTP_ANY : res->type];
    bg_policy__walk(&w, emit);
    if (res->type != BG_RES_HTTP || ix[BG_RES_HTTP].ncands == 0)
        return;
    const char *route = res->route ? res->route : "";
    size_t route_len = res->route ? res->route_len : 0;
    /* A literal route is at most BG_POLICY_MAX_PATTERN bytes and never holds
     * '\0' (the key separator): other routes only match route '*' rules. */
    if (route_len > BG_POLICY_MAX_PATTERN || memchr(route, '\0', route_len))
        return;
    unsigned char kb[BG_POLICY_KEYBUF];
    size_t cut = name_len < BG_POLICY_MAX_PATTERN ? name_len : BG_POLICY_MAX_PATTERN;
    memcpy(kb, route, route_len);
    kb[route_len] = '\0';
    memcpy(kb + route_len + 1, name, cut);
    w.ix = &ix[BG_RES_HTTP];
    w.key = kb;
    w.klen = route_len + 1 + cut;
    w.total = route_len + 1 + name_len;
    w.route = route;
    w.route_len = route_len;
    bg_policy__walk(&w, emit);
}

/* ---- generic visitor ---- */

static void bg_policy__emit_visitor(const bg_policy_walk_t *w, const bg_policy_cand_t *c,
                                    uint32_t n)
{
    const bg_policy_visitor_t *v = w->ctx;
    for (uint32_t i = 0; i < n; i++) {
        if (!v->want(v->ctx, &c[i]))
            continue;
        if (c[i].glob == BG_POLICY_NO_GLOB || bg_policy__glob_ok(w, c[i].glob))
            v->hit(v->ctx, c[i].item);
    }
}

void bg_policy__visit(const bg_policy_t *p, const bg_policy_resource_t *res, bool masks,
                      bg_verb_t verb, const bg_policy_visitor_t *v)
{
    if (!masks && (unsigned)verb >= BG_VERB__COUNT)
        return;
    bg_policy__walk_res(masks ? p->mask_ix : p->rule_ix[verb], res, (void *)v,
                        bg_policy__emit_visitor);
}

/* ---- decisions ---- */

BG_POLICY_INLINE bool bg_policy__in_group(const bg_policy_rctx_t *rc, uint32_t id)
{
    if (id < rc->nbits)
        return (rc->bits[id >> 6] >> (id & 63)) & 1u;
    return rc->pr && bg_policy__has_group(rc->pr, id);
}

/* Subjects of a rule the candidate could not summarise (subs, > 3 groups). */
static bool bg_policy__subjects_full(const bg_policy_rctx_t *rc, uint32_t id)
{
    const bg_policy_subjects_t *s = &rc->p->rsubj[id];
    if (s->any)
        return true;
    if (!rc->pr)
        return false;
    if (rc->pr->sub)
        for (uint16_t i = 0; i < s->nsubs; i++)
            if (strcmp(s->subs[i], rc->pr->sub) == 0)
                return true;
    for (uint16_t i = 0; i < s->ngroups; i++)
        if (bg_policy__in_group(rc, s->groups[i]))
            return true;
    return false;
}

BG_POLICY_INLINE bool bg_policy__subject_ok(const bg_policy_rctx_t *rc, const bg_policy_cand_t *c)
{
    if (c->subj == BG_POLICY_SUBJ_GROUPS)
        return bg_policy__in_group(rc, c->g[0]) || bg_policy__in_group(rc, c->g[1]) ||
               bg_policy__in_group(rc, c->g[2]);
    return c->subj == BG_POLICY_SUBJ_ANY || bg_policy__subjects_full(rc, c->item);
}

/* The index is the verb's own (no verb test). Lists are ordered finals
 * first, then by item (bg_policy_cand_t): once an enforced deny is known
 * only an earlier one matters, and the first final that matches in a list
 * is that list's best. */
static void bg_policy__emit_rules(const bg_policy_walk_t *w, const bg_policy_cand_t *c, uint32_t n)
{
    bg_policy_rctx_t *rc = w->ctx;
    uint32_t *deny = &rc->best[0][BG_EFFECT_DENY];
    for (uint32_t i = 0; i < n; i++) {
        unsigned meta = c[i].meta;
        if (*deny != UINT32_MAX && (!BG_POLICY_META_FINAL(meta) || c[i].item >= *deny))
            return;
        uint32_t *best = &rc->best[BG_POLICY_META_AUDIT(meta)][BG_POLICY_META_EFFECT(meta)];
        if (c[i].item >= *best || !bg_policy__subject_ok(rc, &c[i]))
            continue;
        if (c[i].glob != BG_POLICY_NO_GLOB && !bg_policy__glob_ok(w, c[i].glob))
            continue;
        *best = c[i].item;
    }
}

void bg_policy__decide_rules(bg_policy_rctx_t *rc, const bg_policy_resource_t *res,
                             bg_verb_t verb)
{
    bg_policy__walk_res(rc->p->rule_ix[verb], res, rc, bg_policy__emit_rules);
}
