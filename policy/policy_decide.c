/* Policy evaluation: gathers candidate rules and masks from the indexes of
 * the request's resource slot and keeps the best by precedence, then order.
 * Allocates nothing; reads only immutable state, so any number of threads
 * may decide against one compiled policy. */
#include "policy/policy-internal.h"

#include <string.h>

void bg_policy__visit(const bg_policy_t *p, const bg_policy_resource_t *res, bool masks,
                      const bg_policy_visitor_t *v)
{
    const bg_policy_index_t *ix = masks ? p->mask_ix : p->rule_ix;
    const char *name = res->name ? res->name : "";
    size_t name_len = res->name ? res->name_len : 0;
    bg_policy_key_t k = {{name, "", ""}, {name_len, 0, 0}, name_len};
    if ((unsigned)res->type >= BG_RES__COUNT)
        return;
    if (res->type == BG_RES_KAFKA_CLUSTER) { /* one cluster: the name is irrelevant */
        k.len[0] = k.total = 0;
        bg_policy__index_visit(&ix[BG_RES_KAFKA_CLUSTER], &k, "", 0, v);
        return;
    }
    if (res->type != BG_RES_HTTP) {
        bg_policy__index_visit(&ix[res->type], &k, name, name_len, v);
        return;
    }
    bg_policy__index_visit(&ix[BG_POLICY_SLOT_HTTP_ANY], &k, name, name_len, v);
    const char *route = res->route ? res->route : "";
    size_t route_len = res->route ? res->route_len : 0;
    /* Literal routes never contain '\0' (the key separator): such a route
     * can only match route '*' rules. */
    if (memchr(route, '\0', route_len))
        return;
    bg_policy_key_t hk = {{route, "", name}, {route_len, 1, name_len}, route_len + 1 + name_len};
    bg_policy__index_visit(&ix[BG_RES_HTTP], &hk, name, name_len, v);
}

/* ---- rules ---- */

typedef struct bg_policy_rctx_s {
    const bg_policy_t *p;
    const bg_policy_principal_t *pr;
    unsigned vbit;
    uint32_t best[2][3]; /* [enforce, audit][effect]: lowest matching rule index */
} bg_policy_rctx_t;

/* Once an enforced deny is known, only an earlier deny can change the
 * decision (nothing outranks deny, audit rules included). */
#define BG_POLICY_CUTOFF(rc) (&(rc)->best[0][BG_EFFECT_DENY])

/* Cheap checks first: verbs and precedence from the candidate's meta, then
 * the rule's compact subject set; globs are verified only after. */
static bool bg_policy__want_rule(void *ctx, const bg_policy_cand_t *cand)
{
    bg_policy_rctx_t *c = ctx;
    uint32_t id = cand->item;
    unsigned meta = cand->meta;
    if (!(BG_POLICY_META_VERBS(meta) & c->vbit))
        return false;
    int m = BG_POLICY_META_AUDIT(meta) && !c->p->audit; /* global audit: all rules alike */
    if (id >= c->best[m][BG_POLICY_META_EFFECT(meta)])
        return false;
    if (cand->subj == BG_POLICY_SUBJ_ANY)
        return true;
    if (cand->subj == BG_POLICY_SUBJ_GROUPS)
        return c->pr && (bg_policy__has_group(c->pr, cand->g[0]) ||
                         (cand->g[1] != cand->g[0] && bg_policy__has_group(c->pr, cand->g[1])));
    return bg_policy__subjects_match(&c->p->rsubj[id], c->pr);
}

static void bg_policy__hit_rule(void *ctx, uint32_t id)
{
    bg_policy_rctx_t *c = ctx;
    const bg_policy_rule_t *r = &c->p->rules[id];
    int m = r->audit && !c->p->audit;
    if (id < c->best[m][r->effect])
        c->best[m][r->effect] = id;
}

/* Best of one mode by precedence deny > hold > allow; NULL when none. */
static const bg_policy_rule_t *bg_policy__pick(const bg_policy_t *p, const uint32_t best[3])
{
    static const bg_effect_t order[3] = {BG_EFFECT_DENY, BG_EFFECT_HOLD, BG_EFFECT_ALLOW};
    for (int i = 0; i < 3; i++)
        if (best[order[i]] != UINT32_MAX)
            return &p->rules[best[order[i]]];
    return NULL;
}

/* ---- masks ---- */

typedef struct bg_policy_mctx_s {
    const bg_policy_t *p;
    const bg_policy_principal_t *pr;
    uint32_t ids[BG_POLICY_MAX_MASKS]; /* sorted: the first masks written win */
    size_t n;
} bg_policy_mctx_t;

static size_t bg_policy__mask_pos(const bg_policy_mctx_t *c, uint32_t id)
{
    size_t pos = 0;
    while (pos < c->n && c->ids[pos] < id)
        pos++;
    return pos;
}

static bool bg_policy__want_mask(void *ctx, const bg_policy_cand_t *cand)
{
    bg_policy_mctx_t *c = ctx;
    uint32_t id = cand->item;
    size_t pos = bg_policy__mask_pos(c, id);
    if ((pos < c->n && c->ids[pos] == id) || pos == BG_POLICY_MAX_MASKS)
        return false;
    return !bg_policy__subjects_match(&c->p->masks[id].except, c->pr);
}

static void bg_policy__hit_mask(void *ctx, uint32_t id)
{
    bg_policy_mctx_t *c = ctx;
    size_t pos = bg_policy__mask_pos(c, id);
    if ((pos < c->n && c->ids[pos] == id) || pos == BG_POLICY_MAX_MASKS)
        return;
    if (c->n == BG_POLICY_MAX_MASKS)
        c->n--; /* drop the last (highest index) */
    memmove(&c->ids[pos + 1], &c->ids[pos], (c->n - pos) * sizeof(c->ids[0]));
    c->ids[pos] = id;
    c->n++;
}

static void bg_policy__masks(const bg_policy_t *p, const bg_policy_principal_t *pr,
                             const bg_policy_resource_t *res, bg_policy_decision_t *out)
{
    bg_policy_mctx_t mc = {.p = p, .pr = pr};
    bg_policy_visitor_t v = {bg_policy__want_mask, bg_policy__hit_mask, &mc, ~0ull, NULL};
    if (p->nmasks)
        bg_policy__visit(p, res, true, &v);
    for (size_t i = 0; i < mc.n; i++)
        out->masks[i] = &p->masks[mc.ids[i]];
    out->nmasks = mc.n;
}

/* Fills out and, when enforced is not NULL, the rule whose effect is
 * applied (differs from out->rule when an audit-mode rule overrides). */
void bg_policy__decide(const bg_policy_t *p, const bg_policy_principal_t *pr,
                       const bg_policy_resource_t *res, bg_verb_t verb, bg_policy_decision_t *out,
                       const bg_policy_rule_t **enforced)
{
    bg_policy_rctx_t rc = {p, pr, (unsigned)verb < BG_VERB__COUNT ? 1u << verb : 0u, {{UINT32_MAX, UINT32_MAX, UINT32_MAX},
                                                {UINT32_MAX, UINT32_MAX, UINT32_MAX}}};
    memset(out, 0, sizeof(*out));
    if (pr && pr->generation != p->generation) { /* ids mean nothing here: fail closed */
        out->effect = out->would = BG_EFFECT_DENY;
        if (enforced)
            *enforced = NULL;
        return;
    }
    bg_policy_visitor_t v = {bg_policy__want_rule, bg_policy__hit_rule, &rc,
                             bg_policy__principal_bloom(pr), BG_POLICY_CUTOFF(&rc)};
    if (rc.vbit)
        bg_policy__visit(p, res, false, &v);
    const bg_policy_rule_t *e = bg_policy__pick(p, rc.best[0]);
    const bg_policy_rule_t *a = bg_policy__pick(p, rc.best[1]);
    bg_effect_t ee = e ? (bg_effect_t)e->effect : p->default_effect;
    out->effect = out->would = ee;
    out->rule = e;
    out->mode = BG_MODE_ENFORCE;
    if (p->audit) {
        out->effect = BG_EFFECT_ALLOW;
        out->mode = BG_MODE_AUDIT;
    } else if (a && bg_policy__effect_rank(a->effect) > bg_policy__effect_rank(ee)) {
        out->would = (bg_effect_t)a->effect;
        out->rule = a;
        out->mode = BG_MODE_AUDIT;
    }
    if (enforced)
        *enforced = p->audit ? NULL : e;
    bg_policy__masks(p, pr, res, out);
}

void bg_policy_decide(const bg_policy_t *p, const bg_policy_principal_t *pr,
                      const bg_policy_resource_t *res, bg_verb_t verb, bg_policy_decision_t *out)
{
    bg_policy__decide(p, pr, res, verb, out, NULL);
}
