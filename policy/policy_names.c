/* Names the rules allow, for questions about a whole resource type rather
 * than one name: "may this principal write some topic?" (Kafka's
 * authorizeByResourceType, which KIP-679 uses for idempotent producers).
 * The indexes answer per name only, so each allow rule that could apply
 * offers one name its pattern matches, and the caller decides that name
 * with bg_policy_decide: denies, holds and the default keep their say. */
#include "policy/policy-internal.h"

#include <string.h>

/* One name pat matches: a literal itself, a prefix its head, a glob with
 * each '*' empty and each '?' as '_'; "*" for a pattern matching every name
 * (an empty sample would read as no name at all in an audit event). buf
 * holds BG_POLICY_MAX_PATTERN + 1. */
static size_t bg_policy__sample(const bg_policy_pattern_t *pat, char *buf)
{
    size_t n = 0;
    for (size_t i = 0; i < pat->name_len && n < BG_POLICY_MAX_PATTERN; i++) {
        char c = pat->name[i];
        if (pat->kind == BG_PAT_GLOB && c == '*')
            continue;
        buf[n++] = pat->kind == BG_PAT_GLOB && c == '?' ? '_' : c;
    }
    if (n == 0 && pat->kind != BG_PAT_LITERAL)
        buf[n++] = '*';
    buf[n] = '\0';
    return n;
}

int bg_policy_allowed_names(const bg_policy_t *p, const bg_policy_principal_t *pr,
                            bg_res_type_t type, bg_verb_t verb, bg_policy_name_fn fn, void *ctx)
{
    if ((unsigned)type >= BG_RES__COUNT || type == BG_RES_HTTP ||
        (unsigned)verb >= BG_VERB__COUNT || (pr && pr->generation != p->generation))
        return 0;
    char buf[BG_POLICY_MAX_PATTERN + 1];
    for (size_t i = 0; i < p->nrules; i++) {
        const bg_policy_rule_t *r = &p->rules[i];
        if (r->effect != BG_EFFECT_ALLOW || !(r->verbs & (1u << verb)) ||
            !bg_policy__subjects_match(r->subj, pr))
            continue;
        for (uint32_t k = 0; k < r->npats; k++) {
            if (r->pats[k].type != type)
                continue;
            size_t n = bg_policy__sample(&r->pats[k], buf);
            int rc = fn(ctx, buf, n);
            if (rc)
                return rc;
        }
    }
    /* Names no rule wrote fall to the default (or, under a policy-wide
     * audit, are allowed whatever the rules say): offer one. */
    if (p->default_effect == BG_EFFECT_ALLOW || p->audit)
        return fn(ctx, "*", 1);
    return 0;
}
