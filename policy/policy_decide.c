/* Policy evaluation: gathers candidate rules and masks from the indexes of
 * the request's resource slot (policy_lookup.c) and keeps the best by
 * precedence, then order.
 * Allocates nothing; reads only immutable state, so any number of threads
 * may decide against one compiled policy. */
#include "policy/policy-internal.h"

#include <string.h>

/* ---- rules ---- */

/* Interns the principal's groups as a bitset for the lookup: a group test
 * is then one load instead of a search. Ids past the bitset (policies with
 * more than 64 * BG_POLICY_BITSET_WORDS groups) are searched. */
static void bg_policy__rctx_init(bg_policy_rctx_t *rc, const bg_policy_t *p,
                                 const bg_policy_principal_t *pr, bg_verb_t verb)
{
    uint32_t words = (p->ngroups + 63) / 64;
    if (words > BG_POLICY_BITSET_WORDS)
        words = BG_POLICY_BITSET_WORDS;
    rc->p = p;
    rc->pr = pr;
    rc->vbit = (unsigned)verb < BG_VERB__COUNT ? 1u << verb : 0u;
    rc->nbits = words * 64;
    memset(rc->best, 0xff, sizeof(rc->best));
    memset(rc->bits, 0, words * sizeof(rc->bits[0]));
    for (size_t i = 0; pr && i < pr->ngroup_ids; i++)
        if (pr->group_ids[i] < rc->nbits)
            rc->bits[pr->group_ids[i] >> 6] |= 1ull << (pr->group_ids[i] & 63);
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
    bg_policy_visitor_t v = {bg_policy__want_mask, bg_policy__hit_mask, &mc};
    if (p->nmasks)
        bg_policy__visit(p, res, true, BG_VERB_READ, &v);
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
    bg_policy_rctx_t rc;
    memset(out, 0, sizeof(*out));
    if (pr && pr->generation != p->generation) { /* ids mean nothing here: fail closed */
        out->effect = out->would = BG_EFFECT_DENY;
        if (enforced)
            *enforced = NULL;
        return;
    }
    bg_policy__rctx_init(&rc, p, pr, verb);
    if (!rc.vbit) { /* not a verb: no rule speaks of it, and the default must not */
        out->effect = out->would = BG_EFFECT_DENY;
        if (enforced)
            *enforced = NULL;
        return;
    }
    bg_policy__decide_rules(&rc, res, verb);
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
    out->enforced = p->audit ? NULL : e;
    if (enforced)
        *enforced = out->enforced;
    bg_policy__masks(p, pr, res, out);
}

void bg_policy_decide(const bg_policy_t *p, const bg_policy_principal_t *pr,
                      const bg_policy_resource_t *res, bg_verb_t verb, bg_policy_decision_t *out)
{
    bg_policy__decide(p, pr, res, verb, out, NULL);
}

bg_policy_data_t bg_policy_moves_data(bg_res_type_t type, bg_verb_t verb)
{
    if ((type == BG_RES_KAFKA_TOPIC || type == BG_RES_AMQP_QUEUE) && verb == BG_VERB_READ)
        return BG_POLICY_DATA_ALL;
    if (type == BG_RES_AMQP_EXCHANGE && (verb == BG_VERB_READ || verb == BG_VERB_WRITE))
        return BG_POLICY_DATA_SOME;
    return BG_POLICY_DATA_NONE;
}

bg_policy_unbuilt_t bg_policy_unbuilt(const bg_policy_decision_t *d, int moves_data)
{
    if (d->effect == BG_EFFECT_HOLD)
        return BG_POLICY_UNBUILT_HOLD;
    if (d->effect == BG_EFFECT_ALLOW && d->nmasks && moves_data)
        return BG_POLICY_UNBUILT_MASK;
    return BG_POLICY_UNBUILT_NONE;
}
