/* Policy compiler: validates a bg_policy_spec_t, interns groups and builds
 * the per-slot indexes (policy_index.c) into one arena. Evaluation lives in
 * policy_decide.c. */
#include "policy/policy-internal.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Atomic uint64_t bg_policy__next_generation = 1;

typedef struct bg_policy_cc_s { /* compile context */
    bg_policy_t *p;
    const bg_policy_spec_t *spec;
    char *err;
    size_t errlen;
    bg_policy_ientry_t *ent[2][BG_POLICY_NSLOTS]; /* [rules/masks][slot] */
    size_t nent[2][BG_POLICY_NSLOTS];
    size_t capent[2][BG_POLICY_NSLOTS]; /* allocated entries of ent */
} bg_policy_cc_t;

static int bg_policy__fail(bg_policy_cc_t *cc, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int bg_policy__fail(bg_policy_cc_t *cc, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    int n = 0;
    if (!cc->err || cc->errlen == 0)
        return -1;
    if (file)
        n = snprintf(cc->err, cc->errlen, "%s:%d: ", file, line);
    if (n < 0 || (size_t)n >= cc->errlen)
        return -1;
    va_start(ap, fmt);
    vsnprintf(cc->err + n, cc->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

int bg_policy__effect_rank(bg_effect_t e)
{
    return e == BG_EFFECT_DENY ? 3 : e == BG_EFFECT_HOLD ? 2 : 1;
}

/* ---- groups ---- */

static uint64_t bg_policy__str_hash(const char *s, size_t n)
{
    return bg_policy__hash(s, n);
}

static const bg_policy_group_t *bg_policy__group_find(const bg_policy_t *p, const char *name)
{
    if (!p->groups)
        return NULL;
    size_t n = strlen(name);
    uint64_t h = bg_policy__str_hash(name, n);
    for (uint32_t s = (uint32_t)h & p->groups_mask; p->groups[s].name; s = (s + 1) & p->groups_mask)
        if (p->groups[s].hash == h && strcmp(p->groups[s].name, name) == 0)
            return &p->groups[s];
    return NULL;
}

/* Interns "group:NAME" subjects; other subjects are ignored. */
static int bg_policy__group_add(bg_policy_t *p, const char *subject)
{
    if (strncmp(subject, "group:", 6) != 0 || bg_policy__group_find(p, subject + 6))
        return 0;
    const char *name = subject + 6;
    uint64_t h = bg_policy__str_hash(name, strlen(name));
    uint32_t s = (uint32_t)h & p->groups_mask;
    while (p->groups[s].name)
        s = (s + 1) & p->groups_mask;
    p->groups[s].name = bg_policy__strndup(&p->arena, name, strlen(name));
    p->groups[s].hash = h;
    p->groups[s].id = p->ngroups++;
    return p->groups[s].name ? 0 : -1;
}

static int bg_policy__intern_list(bg_policy_t *p, const char *const *subj, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (subj[i] && bg_policy__group_add(p, subj[i]) < 0)
            return -1;
    return 0;
}

static int bg_policy__intern_groups(bg_policy_t *p, const bg_policy_spec_t *spec)
{
    size_t total = 0, cap = 16;
    for (size_t i = 0; i < spec->nrules; i++)
        total += spec->rules[i].nsubjects + spec->rules[i].napprovers;
    for (size_t i = 0; i < spec->nmasks; i++)
        total += spec->masks[i].nexcept;
    while (cap < total * 2)
        cap *= 2;
    p->groups = bg_policy__alloc(&p->arena, cap * sizeof(*p->groups));
    if (!p->groups)
        return -1;
    p->groups_mask = (uint32_t)(cap - 1);
    for (size_t i = 0; i < spec->nrules; i++) {
        const bg_policy_rule_spec_t *r = &spec->rules[i];
        if (bg_policy__intern_list(p, r->subjects, r->nsubjects) < 0 ||
            bg_policy__intern_list(p, r->approvers, r->napprovers) < 0)
            return -1;
    }
    for (size_t i = 0; i < spec->nmasks; i++)
        if (bg_policy__intern_list(p, spec->masks[i].except, spec->masks[i].nexcept) < 0)
            return -1;
    return 0;
}

/* ---- subjects ---- */

static int bg_policy__u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Builds a subject set from checked strings; what names the list in errors. */
static int bg_policy__subjects_build(bg_policy_cc_t *cc, bg_policy_subjects_t *out,
                                     const char *const *subj, size_t n, const char *file,
                                     int line, const char *what)
{
    bg_policy_arena_t *a = &cc->p->arena;
    uint32_t *groups = bg_policy__alloc(a, (n + 1) * sizeof(*groups));
    const char **subs = bg_policy__alloc(a, (n + 1) * sizeof(*subs));
    const char *why;
    if (!groups || !subs)
        return bg_policy__fail(cc, NULL, 0, "out of memory");
    if (n > UINT16_MAX)
        return bg_policy__fail(cc, file, line, "too many %s", what);
    for (size_t i = 0; i < n; i++) {
        if (bg_policy_check_subject(subj[i], &why) < 0)
            return bg_policy__fail(cc, file, line, "%s: %s", what, why);
        if (strcmp(subj[i], "*") == 0)
            out->any = true;
        else if (strncmp(subj[i], "group:", 6) == 0)
            groups[out->ngroups++] = bg_policy__group_find(cc->p, subj[i] + 6)->id;
        else if (!(subs[out->nsubs++] = bg_policy__strndup(a, subj[i] + 4, strlen(subj[i] + 4))))
            return bg_policy__fail(cc, NULL, 0, "out of memory");
    }
    qsort(groups, out->ngroups, sizeof(*groups), bg_policy__u32_cmp);
    out->groups = groups;
    if (out->ngroups <= 3) { /* same cache line as the flags */
        memcpy(out->inl, groups, out->ngroups * sizeof(*groups));
        out->groups = out->inl;
    }
    out->subs = subs;
    return 0;
}

bool bg_policy__has_group(const bg_policy_principal_t *pr, uint32_t id)
{
    size_t lo = 0, hi = pr->ngroup_ids; /* sorted: binary search */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (pr->group_ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < pr->ngroup_ids && pr->group_ids[lo] == id;
}

bool bg_policy__subjects_match(const bg_policy_subjects_t *s, const bg_policy_principal_t *pr)
{
    if (s->any)
        return true;
    if (!pr)
        return false;
    if (pr->sub)
        for (uint16_t i = 0; i < s->nsubs; i++)
            if (strcmp(s->subs[i], pr->sub) == 0)
                return true;
    for (uint16_t i = 0; i < s->ngroups; i++)
        if (bg_policy__has_group(pr, s->groups[i]))
            return true;
    return false;
}

/* ---- resources ---- */

static int bg_policy__slot(const bg_policy_pattern_t *pat)
{
    return pat->type == BG_RES_HTTP && pat->route_any ? BG_POLICY_SLOT_HTTP_ANY : (int)pat->type;
}

/* The candidate fields that let the lookup decide most candidates from the
 * index entry alone (see bg_policy_cand_t). */
static bg_policy_cand_t bg_policy__cand(uint32_t item, uint16_t meta,
                                        const bg_policy_subjects_t *subj)
{
    bg_policy_cand_t c = {.item = item, .meta = meta, .subj = BG_POLICY_SUBJ_FULL};
    if (!subj)
        return c;
    if (subj->any) {
        c.subj = BG_POLICY_SUBJ_ANY;
    } else if (subj->nsubs == 0 && subj->ngroups >= 1 && subj->ngroups <= 3) {
        c.subj = BG_POLICY_SUBJ_GROUPS;
        for (int i = 0; i < 3; i++) /* repeat the last id: no "unused" marker */
            c.g[i] = subj->groups[i < subj->ngroups ? i : subj->ngroups - 1];
    }
    return c;
}

/* Copies and parses each pattern, queueing it for the kind's index; also
 * into pats[0..n) when pats is not NULL. */
static int bg_policy__add_resources(bg_policy_cc_t *cc, int kind, bg_policy_cand_t cand,
                                    const char *const *res, size_t n, const char *file, int line,
                                    bg_policy_pattern_t *pats)
{
    const char *why;
    if (n == 0)
        return bg_policy__fail(cc, file, line, "%s has no resources", kind ? "mask" : "rule");
    for (size_t i = 0; i < n; i++) {
        bg_policy_ientry_t e = {.cand = cand};
        if (!res[i])
            return bg_policy__fail(cc, file, line, "resource is missing");
        char *copy = bg_policy__strndup(&cc->p->arena, res[i], strlen(res[i]));
        if (!copy)
            return bg_policy__fail(cc, NULL, 0, "out of memory");
        if (bg_policy__parse_pattern(copy, &e.pat, &why) < 0)
            return bg_policy__fail(cc, file, line, "resource '%.200s': %s", res[i], why);
        if (pats)
            pats[i] = e.pat;
        int slot = bg_policy__slot(&e.pat);
        size_t k = cc->nent[kind][slot];
        if (k == cc->capent[kind][slot]) { /* doubling: one realloc per entry was quadratic */
            size_t cap = k ? 2 * k : 64;
            bg_policy_ientry_t *grown = realloc(cc->ent[kind][slot], cap * sizeof(e));
            if (!grown) /* the old block stays in ent, freed with the rest */
                return bg_policy__fail(cc, NULL, 0, "out of memory");
            cc->ent[kind][slot] = grown;
            cc->capent[kind][slot] = cap;
        }
        cc->ent[kind][slot][k] = e;
        cc->nent[kind][slot] = k + 1;
    }
    return 0;
}

/* ---- names ---- */

typedef struct bg_policy_named_s {
    const char *name;
    size_t index;
} bg_policy_named_t;

static int bg_policy__named_cmp(const void *a, const void *b)
{
    const bg_policy_named_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->index < y->index ? -1 : x->index > y->index);
}

/* Finds the first (in file order) item whose name repeats an earlier one.
 * Returns its index or -1; *first gets the earlier item's index. */
static long bg_policy__find_dup(const char *const *names, size_t n, size_t *first)
{
    long dup = -1;
    bg_policy_named_t *v = malloc((n + 1) * sizeof(*v));
    if (!v)
        return -2;
    for (size_t i = 0; i < n; i++)
        v[i] = (bg_policy_named_t){names[i], i};
    qsort(v, n, sizeof(*v), bg_policy__named_cmp);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(v[i].name, v[i - 1].name) != 0 || (dup >= 0 && (long)v[i].index >= dup))
            continue;
        size_t j = i - 1; /* earliest of this name */
        while (j > 0 && strcmp(v[j - 1].name, v[i].name) == 0)
            j--;
        dup = (long)v[i].index;
        *first = v[j].index;
    }
    free(v);
    return dup;
}

static int bg_policy__check_dups(bg_policy_cc_t *cc, const char **names, size_t n, int masks)
{
    size_t first = 0;
    long d = bg_policy__find_dup(names, n, &first);
    if (d == -2)
        return bg_policy__fail(cc, NULL, 0, "out of memory");
    if (d < 0)
        return 0;
    const bg_policy_spec_t *s = cc->spec;
    const char *file = masks ? s->masks[d].file : s->rules[d].file;
    int line = masks ? s->masks[d].line : s->rules[d].line;
    const char *ffile = masks ? s->masks[first].file : s->rules[first].file;
    int fline = masks ? s->masks[first].line : s->rules[first].line;
    return bg_policy__fail(cc, file, line, "duplicate %s name '%.200s' (first at %s:%d)",
                           masks ? "mask" : "rule", names[d], ffile ? ffile : "?", fline);
}

static int bg_policy__check_names(bg_policy_cc_t *cc)
{
    const bg_policy_spec_t *s = cc->spec;
    size_t n = s->nrules > s->nmasks ? s->nrules : s->nmasks;
    const char **names = malloc((n + 1) * sizeof(*names));
    int rc = -1;
    if (!names)
        return bg_policy__fail(cc, NULL, 0, "out of memory");
    for (size_t i = 0; i < s->nrules; i++) {
        names[i] = s->rules[i].name;
        if (!names[i] || !names[i][0]) {
            bg_policy__fail(cc, s->rules[i].file, s->rules[i].line, "rule has no name");
            goto out;
        }
    }
    if (bg_policy__check_dups(cc, names, s->nrules, 0) < 0)
        goto out;
    for (size_t i = 0; i < s->nmasks; i++) {
        names[i] = s->masks[i].name;
        if (!names[i] || !names[i][0]) {
            bg_policy__fail(cc, s->masks[i].file, s->masks[i].line, "mask has no name");
            goto out;
        }
    }
    rc = bg_policy__check_dups(cc, names, s->nmasks, 1);
out:
    free(names);
    return rc;
}

/* ---- rules and masks ---- */

static const char *const *bg_policy__strv_copy(bg_policy_arena_t *a, const char *const *v,
                                               size_t n)
{
    const char **out = bg_policy__alloc(a, (n + 1) * sizeof(*out));
    for (size_t i = 0; out && i < n; i++)
        if (!(out[i] = bg_policy__strndup(a, v[i], strlen(v[i]))))
            return NULL;
    return out;
}

/* 1 when name has a byte below 0x20 or DEL: such names could forge lines
 * in explain output and logs. */
static int bg_policy__name_has_control(const char *name)
{
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return 1;
    return 0;
}

static int bg_policy__rule_header(bg_policy_cc_t *cc, const bg_policy_rule_spec_t *s)
{
    if (bg_policy__name_has_control(s->name))
        return bg_policy__fail(cc, s->file, s->line, "rule name has a control character");
    if (s->verbs == 0)
        return bg_policy__fail(cc, s->file, s->line, "rule '%s' has no verbs", s->name);
    if (s->verbs >> BG_VERB__COUNT)
        return bg_policy__fail(cc, s->file, s->line, "rule '%s' has an unknown verb", s->name);
    if ((unsigned)s->effect > BG_EFFECT_HOLD)
        return bg_policy__fail(cc, s->file, s->line, "rule '%s' has an unknown effect", s->name);
    if ((unsigned)s->mode > BG_MODE_INHERIT)
        return bg_policy__fail(cc, s->file, s->line, "rule '%s' has an unknown mode", s->name);
    if (s->nsubjects == 0)
        return bg_policy__fail(cc, s->file, s->line, "rule '%s' has no subjects", s->name);
    if (s->effect == BG_EFFECT_HOLD && s->napprovers == 0)
        return bg_policy__fail(cc, s->file, s->line,
                               "rule '%s': effect hold needs approvers (subjects who may release "
                               "held requests)",
                               s->name);
    if (s->effect != BG_EFFECT_HOLD && s->napprovers > 0)
        return bg_policy__fail(cc, s->file, s->line,
                               "rule '%s': approvers are only used with effect hold", s->name);
    return 0;
}

static int bg_policy__rule_build(bg_policy_cc_t *cc, uint32_t i)
{
    const bg_policy_rule_spec_t *s = &cc->spec->rules[i];
    bg_policy_rule_t *r = &cc->p->rules[i];
    bg_policy_arena_t *a = &cc->p->arena;
    if (bg_policy__rule_header(cc, s) < 0)
        return -1;
    r->verbs = (uint8_t)s->verbs;
    r->effect = (uint8_t)s->effect;
    r->audit = s->mode == BG_MODE_AUDIT;
    r->index = i;
    r->line = s->line;
    r->name = bg_policy__strndup(a, s->name, strlen(s->name));
    r->file = bg_policy__strndup(a, s->file ? s->file : "?", strlen(s->file ? s->file : "?"));
    if (!r->name || !r->file)
        return bg_policy__fail(cc, NULL, 0, "out of memory");
    r->subj = &cc->p->rsubj[i];
    if (bg_policy__subjects_build(cc, &cc->p->rsubj[i], s->subjects, s->nsubjects, s->file,
                                  s->line, "subjects") < 0 ||
        bg_policy__subjects_build(cc, &r->appr, s->approvers, s->napprovers, s->file, s->line,
                                  "approvers") < 0)
        return -1;
    r->approvers = bg_policy__strv_copy(a, s->approvers, s->napprovers);
    r->napprovers = s->napprovers;
    if (!r->approvers)
        return bg_policy__fail(cc, NULL, 0, "out of memory");
    /* A policy-wide audit judges every rule alike (see bg_policy_decide). */
    bool audit = r->audit && !cc->p->audit;
    bool final = r->effect == BG_EFFECT_DENY && !audit;
    uint16_t meta = BG_POLICY_META(r->verbs, r->effect, audit, final);
    bg_policy_pattern_t *pats = NULL;
    if (s->nresources &&
        !(pats = bg_policy__alloc(a, s->nresources * sizeof(*pats))))
        return bg_policy__fail(cc, NULL, 0, "out of memory");
    r->pats = pats;
    r->npats = (uint32_t)s->nresources;
    return bg_policy__add_resources(cc, 0, bg_policy__cand(i, meta, r->subj), s->resources,
                                    s->nresources, s->file, s->line, pats);
}

static int bg_policy__mask_build(bg_policy_cc_t *cc, uint32_t i)
{
    const bg_policy_mask_spec_t *s = &cc->spec->masks[i];
    bg_policy_mask_t *m = &cc->p->masks[i];
    bg_policy_arena_t *a = &cc->p->arena;
    const char *why;
    if ((unsigned)s->format > BG_MASK_FORMAT_AUTO || (unsigned)s->strategy > BG_MASK_NULL)
        return bg_policy__fail(cc, s->file, s->line, "mask '%s': unknown format or strategy",
                               s->name);
    if (bg_policy__name_has_control(s->name))
        return bg_policy__fail(cc, s->file, s->line, "mask name has a control character");
    if (s->nfields == 0)
        return bg_policy__fail(cc, s->file, s->line, "mask '%s' has no fields", s->name);
    for (size_t f = 0; f < s->nfields; f++)
        if (bg_policy_check_mask_field(s->fields[f], &why) < 0)
            return bg_policy__fail(cc, s->file, s->line, "mask '%s': %s", s->name, why);
    m->index = i;
    m->line = s->line;
    m->format = s->format;
    m->strategy = s->strategy;
    m->name = bg_policy__strndup(a, s->name, strlen(s->name));
    m->file = bg_policy__strndup(a, s->file ? s->file : "?", strlen(s->file ? s->file : "?"));
    m->fields = bg_policy__strv_copy(a, s->fields, s->nfields);
    m->nfields = s->nfields;
    if (!m->name || !m->file || !m->fields)
        return bg_policy__fail(cc, NULL, 0, "out of memory");
    if (bg_policy__subjects_build(cc, &m->except, s->except, s->nexcept, s->file, s->line,
                                  "except") < 0)
        return -1;
    return bg_policy__add_resources(cc, 1, bg_policy__cand(i, 0, NULL), s->resources,
                                    s->nresources, s->file, s->line, NULL);
}

/* One rule index per verb of the slot: a decision then never looks at a
 * rule without its verb (with random verb sets, a per-candidate verb test
 * was the most mispredicted branch of the walk). */
static int bg_policy__rule_indexes(bg_policy_cc_t *cc, int slot)
{
    const bg_policy_ientry_t *e = cc->ent[0][slot];
    size_t n = cc->nent[0][slot];
    bg_policy_ientry_t *sel = malloc((n + 1) * sizeof(*sel));
    if (!sel)
        return -1;
    for (int v = 0; v < BG_VERB__COUNT; v++) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (BG_POLICY_META_VERBS(e[i].cand.meta) & (1u << v))
                sel[k++] = e[i];
        if (bg_policy__index_build(&cc->p->arena, &cc->p->rule_ix[v][slot], sel, k) < 0) {
            free(sel);
            return -1;
        }
    }
    free(sel);
    return 0;
}

static int bg_policy__compile_body(bg_policy_cc_t *cc)
{
    const bg_policy_spec_t *spec = cc->spec;
    bg_policy_t *p = cc->p;
    if (spec->default_effect != BG_EFFECT_ALLOW && spec->default_effect != BG_EFFECT_DENY)
        return bg_policy__fail(cc, NULL, 0, "policy default must be allow or deny");
    if ((unsigned)spec->mode > BG_MODE_INHERIT)
        return bg_policy__fail(cc, NULL, 0, "policy mode must be enforce or audit");
    if (spec->nrules > BG_POLICY_MAX_ITEMS || spec->nmasks > BG_POLICY_MAX_ITEMS)
        return bg_policy__fail(cc, NULL, 0, "too many rules");
    if (bg_policy__check_names(cc) < 0)
        return -1;
    p->rules = bg_policy__alloc(&p->arena, (spec->nrules + 1) * sizeof(*p->rules));
    p->masks = bg_policy__alloc(&p->arena, (spec->nmasks + 1) * sizeof(*p->masks));
    p->rsubj = bg_policy__alloc(&p->arena, (spec->nrules + 1) * sizeof(*p->rsubj));
    if (!p->rules || !p->masks || !p->rsubj || bg_policy__intern_groups(p, spec) < 0)
        return bg_policy__fail(cc, NULL, 0, "out of memory");
    for (uint32_t i = 0; i < spec->nrules; i++)
        if (bg_policy__rule_build(cc, i) < 0)
            return -1;
    for (uint32_t i = 0; i < spec->nmasks; i++)
        if (bg_policy__mask_build(cc, i) < 0)
            return -1;
    for (int s = 0; s < BG_POLICY_NSLOTS; s++)
        if (bg_policy__rule_indexes(cc, s) < 0 ||
            bg_policy__index_build(&p->arena, &p->mask_ix[s], cc->ent[1][s], cc->nent[1][s]) < 0)
            return bg_policy__fail(cc, NULL, 0, "out of memory");
    return 0;
}

bg_policy_t *bg_policy_compile(const bg_policy_spec_t *spec, char *err, size_t errlen)
{
    bg_policy_cc_t cc = {.spec = spec, .err = err, .errlen = errlen};
    if (err && errlen)
        err[0] = '\0';
    cc.p = calloc(1, sizeof(*cc.p));
    if (!cc.p) {
        bg_policy__fail(&cc, NULL, 0, "out of memory");
        return NULL;
    }
    cc.p->default_effect = spec->default_effect;
    cc.p->audit = spec->mode == BG_MODE_AUDIT;
    cc.p->nrules = spec->nrules;
    cc.p->nmasks = spec->nmasks;
    int rc = bg_policy__compile_body(&cc);
    for (int k = 0; k < 2; k++)
        for (int s = 0; s < BG_POLICY_NSLOTS; s++)
            free(cc.ent[k][s]);
    if (rc < 0) {
        bg_policy_free(cc.p);
        return NULL;
    }
    cc.p->generation = atomic_fetch_add(&bg_policy__next_generation, 1);
    for (size_t i = 0; i < cc.p->nrules; i++)
        cc.p->rules[i].generation = cc.p->generation;
    return cc.p;
}

void bg_policy_free(bg_policy_t *p)
{
    if (!p)
        return;
    bg_policy__arena_free(&p->arena);
    free(p);
}

uint64_t bg_policy_generation(const bg_policy_t *p) { return p->generation; }

/* ---- accessors ---- */

const char *bg_policy_rule_name(const bg_policy_rule_t *r) { return r->name; }
const char *bg_policy_rule_file(const bg_policy_rule_t *r) { return r->file; }
int bg_policy_rule_line(const bg_policy_rule_t *r) { return r->line; }
bg_effect_t bg_policy_rule_effect(const bg_policy_rule_t *r) { return (bg_effect_t)r->effect; }
size_t bg_policy_rule_napprovers(const bg_policy_rule_t *r) { return r->napprovers; }

const char *bg_policy_rule_approver(const bg_policy_rule_t *r, size_t i)
{
    return i < r->napprovers ? r->approvers[i] : NULL;
}

int bg_policy_rule_approved_by(const bg_policy_rule_t *r, const bg_policy_principal_t *pr)
{
    /* Group ids are numbered per compile: a principal prepared against
     * another policy (a reload since the request was held) is not matched. */
    return r->napprovers > 0 && pr && pr->generation == r->generation &&
           bg_policy__subjects_match(&r->appr, pr);
}

const char *bg_policy_mask_name(const bg_policy_mask_t *m) { return m->name; }
const char *bg_policy_mask_file(const bg_policy_mask_t *m) { return m->file; }
int bg_policy_mask_line(const bg_policy_mask_t *m) { return m->line; }
bg_mask_format_t bg_policy_mask_format(const bg_policy_mask_t *m) { return m->format; }
bg_mask_strategy_t bg_policy_mask_strategy(const bg_policy_mask_t *m) { return m->strategy; }
size_t bg_policy_mask_nfields(const bg_policy_mask_t *m) { return m->nfields; }

const char *bg_policy_mask_field(const bg_policy_mask_t *m, size_t i)
{
    return i < m->nfields ? m->fields[i] : NULL;
}

/* ---- principals ---- */

int bg_policy_principal_prepare(const bg_policy_t *p, const char *sub, const char *const *groups,
                                size_t ngroups, bg_policy_principal_t *out)
{
    memset(out, 0, sizeof(*out));
    out->generation = p->generation;
    out->group_ids = malloc((ngroups + 1) * sizeof(*out->group_ids));
    out->sub = sub ? strdup(sub) : NULL;
    if (!out->group_ids || (sub && !out->sub)) {
        bg_policy_principal_clear(out);
        return -1;
    }
    for (size_t i = 0; i < ngroups; i++) {
        const bg_policy_group_t *g = groups[i] ? bg_policy__group_find(p, groups[i]) : NULL;
        if (g) /* groups no rule names cannot match anything */
            out->group_ids[out->ngroup_ids++] = g->id;
    }
    qsort(out->group_ids, out->ngroup_ids, sizeof(uint32_t), bg_policy__u32_cmp);
    size_t n = 0;
    for (size_t i = 0; i < out->ngroup_ids; i++)
        if (n == 0 || out->group_ids[n - 1] != out->group_ids[i])
            out->group_ids[n++] = out->group_ids[i];
    out->ngroup_ids = n;
    return 0;
}

void bg_policy_principal_clear(bg_policy_principal_t *pr)
{
    if (!pr)
        return;
    free(pr->sub);
    free(pr->group_ids);
    memset(pr, 0, sizeof(*pr));
}
