#include "policy_test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const *pt_split(const char *s, size_t *n)
{
    static char bufs[8][2048];
    static const char *vecs[8][65];
    static int turn;
    int t = turn++ % 8;
    size_t k = 0;
    snprintf(bufs[t], sizeof(bufs[t]), "%s", s ? s : "");
    for (char *save, *w = strtok_r(bufs[t], " ", &save); w && k < 64;
         w = strtok_r(NULL, " ", &save))
        vecs[t][k++] = w;
    vecs[t][k] = NULL;
    *n = k;
    return vecs[t];
}

static unsigned pt_verbs(const char *s)
{
    size_t n;
    unsigned v = 0;
    if (strcmp(s, "all") == 0)
        return (1u << BG_VERB__COUNT) - 1;
    const char *const *w = pt_split(s, &n);
    for (size_t i = 0; i < n; i++) {
        bg_verb_t verb;
        const char *why;
        if (bg_policy_parse_verb(w[i], &verb, &why) == 0)
            v |= 1u << verb;
    }
    return v;
}

/* Owned copies of a split vector (pt_split's storage rotates). */
static const char **pt_dupv(const char *s, size_t *n)
{
    const char *const *w = pt_split(s, n);
    const char **out = calloc(*n + 1, sizeof(*out));
    for (size_t i = 0; i < *n; i++)
        out[i] = strdup(w[i]);
    return out;
}

static void pt_freev(const char *const *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free((void *)v[i]);
    free((void *)v);
}

bg_policy_t *pt_compile(const pt_policy_t *t, char *err, size_t errlen)
{
    bg_policy_rule_spec_t rules[PT_MAX];
    bg_policy_mask_spec_t masks[PT_MAX];
    bg_policy_spec_t spec = {0};
    const char *why;
    size_t nr = 0, nm = 0;
    memset(rules, 0, sizeof(rules));
    memset(masks, 0, sizeof(masks));
    bg_policy_parse_effect(t->def ? t->def : "deny", &spec.default_effect, &why);
    bg_policy_parse_mode(t->mode ? t->mode : "enforce", &spec.mode, &why);
    for (; nr < PT_MAX && t->rules[nr].name; nr++) {
        const pt_rule_t *r = &t->rules[nr];
        bg_policy_rule_spec_t *s = &rules[nr];
        s->name = r->name;
        s->file = "t.yaml";
        s->line = 10 + (int)nr;
        s->subjects = pt_dupv(r->subjects, &s->nsubjects);
        s->resources = pt_dupv(r->resources, &s->nresources);
        s->approvers = pt_dupv(r->approvers, &s->napprovers);
        s->verbs = pt_verbs(r->verbs);
        s->mode = BG_MODE_INHERIT;
        if (r->mode)
            bg_policy_parse_mode(r->mode, &s->mode, &why);
        if (bg_policy_parse_effect(r->effect, &s->effect, &why) < 0)
            s->effect = (bg_effect_t)99;
    }
    for (; nm < PT_MAX && t->masks[nm].name; nm++) {
        const pt_mask_t *m = &t->masks[nm];
        bg_policy_mask_spec_t *s = &masks[nm];
        s->name = m->name;
        s->file = "t.yaml";
        s->line = 100 + (int)nm;
        s->resources = pt_dupv(m->resources, &s->nresources);
        s->fields = pt_dupv(m->fields, &s->nfields);
        s->except = pt_dupv(m->except, &s->nexcept);
    }
    spec.rules = rules;
    spec.nrules = nr;
    spec.masks = masks;
    spec.nmasks = nm;
    bg_policy_t *p = bg_policy_compile(&spec, err, errlen);
    for (size_t i = 0; i < nr; i++) {
        pt_freev(rules[i].subjects, rules[i].nsubjects);
        pt_freev(rules[i].resources, rules[i].nresources);
        pt_freev(rules[i].approvers, rules[i].napprovers);
    }
    for (size_t i = 0; i < nm; i++) {
        pt_freev(masks[i].resources, masks[i].nresources);
        pt_freev(masks[i].fields, masks[i].nfields);
        pt_freev(masks[i].except, masks[i].nexcept);
    }
    return p;
}

void pt_principal(const bg_policy_t *p, const char *sub, const char *groups,
                  bg_policy_principal_t *out)
{
    size_t n;
    const char **g = pt_dupv(groups, &n);
    if (bg_policy_principal_prepare(p, sub, g, n, out) != 0)
        abort();
    pt_freev(g, n);
}

const char *pt_masks(const bg_policy_decision_t *d, char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < d->nmasks; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? " " : "",
                                bg_policy_mask_name(d->masks[i]));
    return buf;
}
