/* The policy section: fills bg_config_policy_t's spec, validating every
 * string with the policy module's parse helpers so that messages match
 * what `busgate explain` and the compiler say, then compiles it once (only
 * when the whole file was otherwise valid) to surface compiler errors. */
#include <stdio.h>
#include <string.h>

#include "broker/config-internal.h"

static const char *const bg_cfg__policy_keys[] = {"default", "mode", "rules", "masks", NULL};
static const char *const bg_cfg__rule_keys[] = {"name",   "subjects",  "resources", "verbs",
                                                "effect", "approvers", "mode",      NULL};
enum { R_NAME, R_SUBJ, R_RES, R_VERBS, R_EFFECT, R_APPR, R_MODE };
static const char *const bg_cfg__mask_keys[] = {"name",   "resources", "format", "fields",
                                                "strategy", "except",  NULL};
enum { M_NAME, M_RES, M_FORMAT, M_FIELDS, M_STRATEGY, M_EXCEPT };

/* Reads a scalar and hands it to one of the policy's enum parsers. */
typedef int (*bg_cfg_parse_fn)(const char *s, void *out, const char **why);

/* Adapters with a common signature (calling through a cast pointer would be
 * undefined behaviour). */
static int bg_cfg__p_verb(const char *s, void *o, const char **w)
{
    return bg_policy_parse_verb(s, o, w);
}
static int bg_cfg__p_effect(const char *s, void *o, const char **w)
{
    return bg_policy_parse_effect(s, o, w);
}
/* policy.default: hold needs a rule (approvers), so the hint leaves it out. */
static int bg_cfg__p_default(const char *s, void *o, const char **w)
{
    if (bg_policy_parse_effect(s, o, w) == 0)
        return 0;
    *w = "unknown effect (expected allow or deny)";
    return -1;
}
static int bg_cfg__p_mode(const char *s, void *o, const char **w)
{
    return bg_policy_parse_mode(s, o, w);
}
static int bg_cfg__p_format(const char *s, void *o, const char **w)
{
    return bg_policy_parse_mask_format(s, o, w);
}
static int bg_cfg__p_strategy(const char *s, void *o, const char **w)
{
    return bg_policy_parse_mask_strategy(s, o, w);
}

static int bg_cfg__policy_enum(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path,
                               bg_cfg_parse_fn fn, void *out)
{
    const char *v, *shown, *why = NULL;
    int r = bg_cfg__scalar(ctx, n, path, &v, &shown);
    if (r <= 0)
        return r;
    if (fn(v, out, &why) < 0) {
        bg_cfg__err_why(ctx, n, path, why, v, shown);
        return -1;
    }
    return 1;
}

static void bg_cfg__verbs(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path,
                          unsigned *verbs)
{
    size_t count;
    if (bg_cfg__seq(ctx, n, path, &count) <= 0)
        return;
    if (count == 0)
        bg_cfg__err(ctx, n, path, "must not be empty");
    void *it = NULL;
    struct fy_node *item;
    for (size_t i = 0; i < count && (item = fy_node_sequence_iterate(n, &it)); i++) {
        char p[BG_CFG_PATH_MAX];
        bg_verb_t v;
        bg_cfg__index(p, path, i);
        int r = bg_cfg__policy_enum(ctx, item, p, bg_cfg__p_verb, &v);
        if (r > 0)
            *verbs |= 1u << v;
        else if (r == 0)
            bg_cfg__err(ctx, item, p, "expected a verb, got null");
    }
}

/* Reports a second use of a rule or mask name, pointing at an earlier one. */
static void bg_cfg__dup_name(bg_cfg_ctx_t *ctx, struct fy_node *at, const char *path,
                             const char *what, const char *name, int prev_line)
{
    bg_cfg__err(ctx, at, path, "duplicate %s name '%s' (first defined at line %d)", what, name,
                prev_line);
}

static void bg_cfg__rule(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path,
                         bg_policy_rule_spec_t *r)
{
    bg_cfg_map_t m;
    char p[BG_CFG_PATH_MAX], **subj = NULL, **res = NULL, **appr = NULL;
    r->file = ctx->cfg->path;
    r->effect = BG_EFFECT_DENY;
    r->mode = BG_MODE_INHERIT;
    bg_cfg__pos(n, &r->line, &(int){0});
    int mr = bg_cfg__map(ctx, n, path, bg_cfg__rule_keys, &m);
    if (mr == 0)
        bg_cfg__err(ctx, n, path, "expected a mapping, got null");
    if (mr <= 0)
        return;
    for (size_t i = R_NAME; i <= R_EFFECT; i++)
        bg_cfg__require(ctx, &m, bg_cfg__rule_keys, i, path);
    bg_cfg__join(p, path, "name");
    bg_cfg__get_str(ctx, m.val[R_NAME], p, (char **)&r->name);
    bg_cfg__join(p, path, "subjects");
    bg_cfg__get_strlist(ctx, m.val[R_SUBJ], p, 1, bg_policy_check_subject, &subj, &r->nsubjects);
    bg_cfg__join(p, path, "resources");
    bg_cfg__get_strlist(ctx, m.val[R_RES], p, 1, bg_policy_check_resource_pattern, &res,
                        &r->nresources);
    bg_cfg__join(p, path, "verbs");
    bg_cfg__verbs(ctx, m.val[R_VERBS], p, &r->verbs);
    bg_cfg__join(p, path, "effect");
    bg_cfg__policy_enum(ctx, m.val[R_EFFECT], p, bg_cfg__p_effect,
                        &r->effect);
    bg_cfg__join(p, path, "approvers");
    bg_cfg__get_strlist(ctx, m.val[R_APPR], p, 0, bg_policy_check_subject, &appr,
                        &r->napprovers);
    bg_cfg__join(p, path, "mode");
    bg_cfg__policy_enum(ctx, m.val[R_MODE], p, bg_cfg__p_mode, &r->mode);
    r->subjects = (const char *const *)subj;
    r->resources = (const char *const *)res;
    r->approvers = (const char *const *)appr;
    if (r->effect == BG_EFFECT_HOLD && r->napprovers == 0 && !bg_cfg__is_null(m.val[R_EFFECT])) {
        bg_cfg__join(p, path, "approvers");
        bg_cfg__err(ctx, m.val[R_APPR] ? m.val[R_APPR] : m.val[R_EFFECT], p,
                    "effect hold needs at least one approver");
    }
}

static void bg_cfg__mask(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path,
                         bg_policy_mask_spec_t *k)
{
    bg_cfg_map_t m;
    char p[BG_CFG_PATH_MAX], **res = NULL, **fields = NULL, **except = NULL;
    k->file = ctx->cfg->path;
    k->format = BG_MASK_FORMAT_JSON;
    k->strategy = BG_MASK_REDACT;
    bg_cfg__pos(n, &k->line, &(int){0});
    int mr = bg_cfg__map(ctx, n, path, bg_cfg__mask_keys, &m);
    if (mr == 0)
        bg_cfg__err(ctx, n, path, "expected a mapping, got null");
    if (mr <= 0)
        return;
    bg_cfg__require(ctx, &m, bg_cfg__mask_keys, M_NAME, path);
    bg_cfg__require(ctx, &m, bg_cfg__mask_keys, M_RES, path);
    bg_cfg__require(ctx, &m, bg_cfg__mask_keys, M_FIELDS, path);
    bg_cfg__join(p, path, "name");
    bg_cfg__get_str(ctx, m.val[M_NAME], p, (char **)&k->name);
    bg_cfg__join(p, path, "resources");
    bg_cfg__get_strlist(ctx, m.val[M_RES], p, 1, bg_policy_check_resource_pattern, &res,
                        &k->nresources);
    bg_cfg__join(p, path, "format");
    bg_cfg__policy_enum(ctx, m.val[M_FORMAT], p, bg_cfg__p_format,
                        &k->format);
    bg_cfg__join(p, path, "fields");
    bg_cfg__get_strlist(ctx, m.val[M_FIELDS], p, 1, bg_policy_check_mask_field, &fields,
                        &k->nfields);
    bg_cfg__join(p, path, "strategy");
    /* An unquoted null (or ~, or nothing) is YAML's null, which would mean
     * "not set" and apply redact in silence where the null strategy was
     * meant; a written key must say which strategy. */
    if (m.key[M_STRATEGY] && bg_cfg__is_null(m.val[M_STRATEGY]))
        bg_cfg__err(ctx, m.key[M_STRATEGY], p,
                    "expected a strategy, got YAML null; write \"null\" (quoted) for the null "
                    "strategy");
    bg_cfg__policy_enum(ctx, m.val[M_STRATEGY], p, bg_cfg__p_strategy, &k->strategy);
    bg_cfg__join(p, path, "except");
    bg_cfg__get_strlist(ctx, m.val[M_EXCEPT], p, 0, bg_policy_check_subject, &except,
                        &k->nexcept);
    k->resources = (const char *const *)res;
    k->fields = (const char *const *)fields;
    k->except = (const char *const *)except;
}

/* The "name" node of a rule/mask mapping, for pointing at duplicates. */
static struct fy_node *bg_cfg__name_node(struct fy_node *item)
{
    return item && fy_node_is_mapping(item) ? fy_node_mapping_lookup_by_string(item, "name", 4)
                                            : item;
}

static void bg_cfg__rules(bg_cfg_ctx_t *ctx, struct fy_node *n)
{
    bg_config_policy_t *pol = &ctx->cfg->policy;
    size_t count;
    if (bg_cfg__seq(ctx, n, "policy.rules", &count) <= 0 || count == 0)
        return;
    if (!(pol->rules = bg_cfg__alloc(ctx, count * sizeof(*pol->rules))))
        return;
    bg_cfg_names_t names;
    bg_cfg__names_init(ctx, &names, count, 0);
    void *it = NULL;
    struct fy_node *item;
    for (size_t i = 0; i < count && (item = fy_node_sequence_iterate(n, &it)); i++) {
        char p[BG_CFG_PATH_MAX], np[BG_CFG_PATH_MAX];
        const char *name;
        bg_cfg__index(p, "policy.rules", i);
        bg_cfg__rule(ctx, item, p, &pol->rules[i]);
        bg_cfg__join(np, p, "name");
        name = pol->rules[i].name;
        /* Every earlier rule of that name, in order (the walk stops once
         * further errors would be dropped). */
        for (size_t j = bg_cfg__names_add(&names, name, i); j < i && !bg_cfg__gave_up(ctx);
             j = bg_cfg__names_next(&names, j))
            bg_cfg__dup_name(ctx, bg_cfg__name_node(item), np, "rule", name, pol->rules[j].line);
    }
    bg_cfg__names_free(&names);
    pol->spec.rules = pol->rules;
    pol->spec.nrules = count;
}

static void bg_cfg__masks(bg_cfg_ctx_t *ctx, struct fy_node *n)
{
    bg_config_policy_t *pol = &ctx->cfg->policy;
    size_t count;
    if (bg_cfg__seq(ctx, n, "policy.masks", &count) <= 0 || count == 0)
        return;
    if (!(pol->masks = bg_cfg__alloc(ctx, count * sizeof(*pol->masks))))
        return;
    bg_cfg_names_t names;
    bg_cfg__names_init(ctx, &names, count, 0);
    void *it = NULL;
    struct fy_node *item;
    for (size_t i = 0; i < count && (item = fy_node_sequence_iterate(n, &it)); i++) {
        char p[BG_CFG_PATH_MAX], np[BG_CFG_PATH_MAX];
        const char *name;
        bg_cfg__index(p, "policy.masks", i);
        bg_cfg__mask(ctx, item, p, &pol->masks[i]);
        bg_cfg__join(np, p, "name");
        name = pol->masks[i].name;
        for (size_t j = bg_cfg__names_add(&names, name, i); j < i && !bg_cfg__gave_up(ctx);
             j = bg_cfg__names_next(&names, j))
            bg_cfg__dup_name(ctx, bg_cfg__name_node(item), np, "mask", name, pol->masks[j].line);
    }
    bg_cfg__names_free(&names);
    pol->spec.masks = pol->masks;
    pol->spec.nmasks = count;
}

void bg_cfg__policy(bg_cfg_ctx_t *ctx, struct fy_node *n)
{
    bg_config_policy_t *pol = &ctx->cfg->policy;
    bg_cfg_map_t m;
    /* An absent policy is left disabled; the runtime then denies by default. */
    pol->spec.default_effect = BG_EFFECT_DENY;
    pol->spec.mode = BG_MODE_ENFORCE;
    if (bg_cfg__map(ctx, n, "policy", bg_cfg__policy_keys, &m) <= 0)
        return;
    pol->enabled = 1;
    if (bg_cfg__policy_enum(ctx, m.val[0], "policy.default", bg_cfg__p_default,
                            &pol->spec.default_effect) > 0 &&
        pol->spec.default_effect == BG_EFFECT_HOLD)
        bg_cfg__err(ctx, m.val[0], "policy.default", "must be allow or deny (hold needs a rule)");
    if (bg_cfg__policy_enum(ctx, m.val[1], "policy.mode", bg_cfg__p_mode,
                            &pol->spec.mode) > 0 &&
        pol->spec.mode == BG_MODE_INHERIT)
        bg_cfg__err(ctx, m.val[1], "policy.mode", "must be enforce or audit");
    bg_cfg__rules(ctx, m.val[2]);
    bg_cfg__masks(ctx, m.val[3]);
}

void bg_cfg__policy_compile(bg_cfg_ctx_t *ctx, struct fy_node *n)
{
    char err[512] = "";
    if (!ctx->cfg->policy.enabled)
        return;
    bg_policy_t *p = bg_policy_compile(&ctx->cfg->policy.spec, err, sizeof err);
    if (!p) {
        bg_cfg__err(ctx, n, "policy", "%s", err[0] ? err : "the policy does not compile");
        return;
    }
    bg_policy_free(p);
}
