/* Randomized cross-check (fixed seed): 10,000 rules and 100 masks across all
 * resource types, decided through the compiled indexes and through a naive
 * reference evaluator that scans every rule with a recursive glob matcher. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy_test_util.h"

#define NRULES 10000
#define NMASKS 100
#define NGROUPS 200

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static const char *const segs[] = {"billing", "orders", "users", "eu", "us",
                                   "v1",      "v2",     "audit", "tmp", "x"};

/* Random concrete name: 1-4 segments joined by sep ('.' or '/'). */
static void rand_name(char *buf, size_t len, char sep, int http)
{
    size_t off = 0;
    int n = 1 + (int)rnd(4);
    for (int i = 0; i < n; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%s", (i || http) ? (char[]){sep, 0} : "",
                                segs[rnd(10)]);
}

static void rand_pattern(char *buf, size_t len, char sep, int http)
{
    char name[128];
    rand_name(name, sizeof(name), sep, http);
    uint32_t k = rnd(10);
    size_t n = strlen(name);
    if (k < 4) /* literal */
        snprintf(buf, len, "%s", name);
    else if (k < 7) /* prefix, cut anywhere */
        snprintf(buf, len, "%.*s*", (int)(rnd(200) == 0 ? 0 : 1 + rnd((uint32_t)n)), name);
    else if (k == 7) { /* one character replaced by '?', maybe a '*' later */
        size_t at = rnd((uint32_t)n);
        name[at] = '?';
        snprintf(buf, len, "%s%s", name, rnd(2) ? "" : "*.v1");
    } else if (k == 8) /* wildcard head, literal tail */
        snprintf(buf, len, "*%c%s", sep, segs[rnd(10)]);
    else /* a middle run */
        snprintf(buf, len, "%s*%s*", http ? "*" : "", segs[rnd(10)]);
}

typedef struct ref_res_s { /* a pattern or a concrete resource, split */
    int type;              /* bg_res_type_t */
    char route[32];
    char name[128];
} ref_res_t;

static void rand_res(ref_res_t *r, int pattern)
{
    r->type = (int)rnd(BG_RES__COUNT);
    r->route[0] = '\0';
    r->name[0] = '\0';
    if (r->type == BG_RES_KAFKA_CLUSTER)
        return;
    int http = r->type == BG_RES_HTTP;
    if (http)
        snprintf(r->route, sizeof(r->route), "%s", pattern && rnd(4) == 0 ? "*" : rnd(2) ? "api" : "web");
    if (pattern)
        rand_pattern(r->name, sizeof(r->name), http ? '/' : '.', http);
    else
        rand_name(r->name, sizeof(r->name), http ? '/' : '.', http);
}

static void res_string(const ref_res_t *r, char *buf, size_t len)
{
    if (r->type == BG_RES_KAFKA_CLUSTER)
        snprintf(buf, len, "kafka:cluster");
    else if (r->type == BG_RES_HTTP)
        snprintf(buf, len, "http:%s:%s", r->route, r->name);
    else
        snprintf(buf, len, "%s:%s", bg_res_type_name((bg_res_type_t)r->type), r->name);
}

static int ref_glob(const char *p, const char *s)
{
    if (!*p)
        return !*s;
    if (*p == '*')
        return ref_glob(p + 1, s) || (*s && ref_glob(p, s + 1));
    if (*p == '?')
        return *s && ref_glob(p + 1, s + 1);
    return *p == *s && ref_glob(p + 1, s + 1);
}

static int ref_res_match(const ref_res_t *pat, const ref_res_t *r)
{
    if (pat->type != r->type)
        return 0;
    if (r->type == BG_RES_KAFKA_CLUSTER)
        return 1;
    if (r->type == BG_RES_HTTP && strcmp(pat->route, "*") && strcmp(pat->route, r->route))
        return 0;
    return ref_glob(pat->name, r->name);
}

typedef struct ref_rule_s {
    int nsubj;
    char subj[3][16];
    int nres;
    ref_res_t res[2];
} ref_rule_t;

typedef struct ref_pr_s {
    char sub[16];
    int ngroups;
    char groups[24][16];
} ref_pr_t;

static int ref_subj_match(char (*subj)[16], int n, const ref_pr_t *pr)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(subj[i], "*") == 0)
            return 1;
        if (strncmp(subj[i], "sub:", 4) == 0 && strcmp(subj[i] + 4, pr->sub) == 0)
            return 1;
        for (int g = 0; g < pr->ngroups; g++)
            if (strncmp(subj[i], "group:", 6) == 0 && strcmp(subj[i] + 6, pr->groups[g]) == 0)
                return 1;
    }
    return 0;
}

static int ref_rule_match(const ref_rule_t *r, const ref_pr_t *pr, const ref_res_t *res)
{
    if (!ref_subj_match((char(*)[16])r->subj, r->nsubj, pr))
        return 0;
    for (int i = 0; i < r->nres; i++)
        if (ref_res_match(&r->res[i], res))
            return 1;
    return 0;
}

static int rank(bg_effect_t e) { return e == BG_EFFECT_DENY ? 3 : e == BG_EFFECT_HOLD ? 2 : 1; }

/* The reference decision: scan every rule, keep the first of each (mode,
 * effect), then apply the documented precedence and audit semantics. */
static void ref_decide(const bg_policy_spec_t *spec, const ref_rule_t *rr, const ref_pr_t *pr,
                       const ref_res_t *res, bg_verb_t verb, bg_effect_t *effect,
                       bg_effect_t *would, int *audit, long *rule)
{
    long best[2] = {-1, -1};
    for (size_t i = 0; i < spec->nrules; i++) {
        const bg_policy_rule_spec_t *s = &spec->rules[i];
        int m = s->mode == BG_MODE_AUDIT && spec->mode != BG_MODE_AUDIT;
        if (!(s->verbs & (1u << verb)) || !ref_rule_match(&rr[i], pr, res))
            continue;
        if (best[m] < 0 || rank(s->effect) > rank(spec->rules[best[m]].effect))
            best[m] = (long)i;
    }
    bg_effect_t e = best[0] >= 0 ? spec->rules[best[0]].effect : spec->default_effect;
    *effect = *would = e;
    *rule = best[0];
    *audit = 0;
    if (spec->mode == BG_MODE_AUDIT) {
        *effect = BG_EFFECT_ALLOW;
        *audit = 1;
    } else if (best[1] >= 0 && rank(spec->rules[best[1]].effect) > rank(e)) {
        *would = spec->rules[best[1]].effect;
        *rule = best[1];
        *audit = 1;
    }
}

typedef struct fixture_s {
    bg_policy_spec_t spec;
    bg_policy_rule_spec_t rules[NRULES];
    bg_policy_mask_spec_t masks[NMASKS];
    ref_rule_t rr[NRULES];
    ref_rule_t rm[NMASKS]; /* subj = except */
    char *strs[NRULES * 8];
    size_t nstrs;
} fixture_t;

static const char *keep(fixture_t *f, const char *s)
{
    return f->strs[f->nstrs++] = strdup(s);
}

static void rand_subjects(fixture_t *f, ref_rule_t *r, int n, const char **out)
{
    r->nsubj = n;
    for (int i = 0; i < n; i++) {
        uint32_t k = rnd(100);
        if (k < 80)
            snprintf(r->subj[i], 16, "group:g%u", rnd(NGROUPS));
        else if (k < 97)
            snprintf(r->subj[i], 16, "sub:u%u", rnd(50));
        else
            snprintf(r->subj[i], 16, "*");
        out[i] = keep(f, r->subj[i]);
    }
}

static void rand_resources(fixture_t *f, ref_rule_t *r, const char **out)
{
    char buf[256];
    const char *why;
    r->nres = 1 + (int)rnd(2);
    for (int i = 0; i < r->nres; i++) {
        do {
            rand_res(&r->res[i], 1);
            res_string(&r->res[i], buf, sizeof(buf));
        } while (bg_policy_check_resource_pattern(buf, &why) != 0);
        out[i] = keep(f, buf);
    }
}

static void build(fixture_t *f)
{
    static const char *const sre[] = {"group:sre"};
    for (int i = 0; i < NRULES; i++) {
        bg_policy_rule_spec_t *s = &f->rules[i];
        const char **subj = calloc(3, sizeof(char *)), **res = calloc(2, sizeof(char *));
        char name[32];
        snprintf(name, sizeof(name), "r%d", i);
        s->name = keep(f, name);
        s->file = "rand.yaml";
        s->line = i + 1;
        rand_subjects(f, &f->rr[i], 1 + (int)rnd(3), subj);
        rand_resources(f, &f->rr[i], res);
        s->subjects = subj;
        s->nsubjects = (size_t)f->rr[i].nsubj;
        s->resources = res;
        s->nresources = (size_t)f->rr[i].nres;
        s->verbs = 1u + rnd((1u << BG_VERB__COUNT) - 1);
        uint32_t e = rnd(10);
        s->effect = e < 7 ? BG_EFFECT_ALLOW : e < 9 ? BG_EFFECT_DENY : BG_EFFECT_HOLD;
        s->approvers = s->effect == BG_EFFECT_HOLD ? sre : NULL;
        s->napprovers = s->effect == BG_EFFECT_HOLD;
        s->mode = rnd(10) == 0 ? BG_MODE_AUDIT : BG_MODE_INHERIT;
    }
    static const char *const fields[] = {"a.b"};
    for (int i = 0; i < NMASKS; i++) {
        bg_policy_mask_spec_t *m = &f->masks[i];
        const char **exc = calloc(1, sizeof(char *)), **res = calloc(2, sizeof(char *));
        char name[32];
        snprintf(name, sizeof(name), "m%d", i);
        m->name = keep(f, name);
        m->file = "rand.yaml";
        m->line = 50000 + i;
        rand_subjects(f, &f->rm[i], (int)rnd(2), exc);
        rand_resources(f, &f->rm[i], res);
        m->except = exc;
        m->nexcept = (size_t)f->rm[i].nsubj;
        m->resources = res;
        m->nresources = (size_t)f->rm[i].nres;
        m->fields = fields;
        m->nfields = 1;
    }
    f->spec = (bg_policy_spec_t){BG_EFFECT_DENY, BG_MODE_ENFORCE, f->rules, NRULES, f->masks, NMASKS};
}

static void release(fixture_t *f)
{
    for (int i = 0; i < NRULES; i++) {
        free((void *)f->rules[i].subjects);
        free((void *)f->rules[i].resources);
    }
    for (int i = 0; i < NMASKS; i++) {
        free((void *)f->masks[i].except);
        free((void *)f->masks[i].resources);
    }
    for (size_t i = 0; i < f->nstrs; i++)
        free(f->strs[i]);
}

static void rand_principal(ref_pr_t *pr)
{
    snprintf(pr->sub, sizeof(pr->sub), "u%u", rnd(60));
    pr->ngroups = 1 + (int)rnd(20);
    for (int g = 0; g < pr->ngroups; g++)
        snprintf(pr->groups[g], 16, "g%u", rnd(NGROUPS + 20)); /* some unknown */
}

/* Checks one random query; returns 1 on mismatch. */
static int check_one(const fixture_t *f, const bg_policy_t *p, int *nonDefault)
{
    ref_pr_t rp;
    ref_res_t rr;
    char buf[256], masks[512], want[512] = "";
    const char *why, *groups[24];
    bg_policy_principal_t pr;
    bg_policy_resource_t res;
    bg_policy_decision_t d;
    rand_principal(&rp);
    rand_res(&rr, 0);
    res_string(&rr, buf, sizeof(buf));
    bg_verb_t verb = (bg_verb_t)rnd(BG_VERB__COUNT);
    for (int g = 0; g < rp.ngroups; g++)
        groups[g] = rp.groups[g];
    assert_int_equal(bg_policy_principal_prepare(p, rp.sub, groups, (size_t)rp.ngroups, &pr), 0);
    assert_int_equal(bg_policy_parse_resource(buf, &res, &why), 0);
    bg_policy_decide(p, &pr, &res, verb, &d);
    bg_policy_principal_clear(&pr);

    bg_effect_t effect, would;
    int audit;
    long rule;
    ref_decide(&f->spec, f->rr, &rp, &rr, verb, &effect, &would, &audit, &rule);
    size_t off = 0, nm = 0;
    for (int i = 0; i < NMASKS && nm < BG_POLICY_MAX_MASKS; i++) {
        const ref_rule_t *m = &f->rm[i];
        int hit = 0;
        for (int k = 0; k < m->nres; k++)
            hit |= ref_res_match(&m->res[k], &rr);
        if (hit && !ref_subj_match((char(*)[16])m->subj, m->nsubj, &rp)) {
            off += (size_t)snprintf(want + off, sizeof(want) - off, "%s%s", nm ? " " : "",
                                    f->masks[i].name);
            nm++;
        }
    }
    const char *got = d.rule ? bg_policy_rule_name(d.rule) : "default";
    const char *exp = rule >= 0 ? f->rules[rule].name : "default";
    *nonDefault += rule >= 0;
    int bad = d.effect != effect || d.would != would || (d.mode == BG_MODE_AUDIT) != audit ||
              strcmp(got, exp) != 0 || strcmp(pt_masks(&d, masks, sizeof(masks)), want) != 0;
    if (bad)
        print_error("%s %s %s: got %s/%s %s masks '%s', want %s/%s %s masks '%s'\n", rp.sub, buf,
                    bg_verb_name(verb), bg_effect_name(d.effect), bg_effect_name(d.would), got,
                    masks, bg_effect_name(effect), bg_effect_name(would), exp, want);
    return bad;
}

static void run(bg_mode_t mode, int queries)
{
    static fixture_t f;
    char err[256];
    memset(&f, 0, sizeof(f));
    build(&f);
    f.spec.mode = mode;
    bg_policy_t *p = bg_policy_compile(&f.spec, err, sizeof(err));
    if (!p)
        print_error("compile: %s\n", err);
    assert_non_null(p);
    int failures = 0, decided = 0;
    for (int q = 0; q < queries && failures < 10; q++)
        failures += check_one(&f, p, &decided);
    print_message("%d queries, %d decided by a rule\n", queries, decided);
    assert_int_equal(failures, 0);
    assert_true(decided > queries / 10); /* the data must exercise the rules */
    bg_policy_free(p);
    release(&f);
}

static void test_random_enforce(void **state) { run(BG_MODE_ENFORCE, 4000); }
static void test_random_audit(void **state) { run(BG_MODE_AUDIT, 1000); }

/* bg_policy_pattern_matches (one pattern, for busgate check) against the
 * reference matcher: same answer for random patterns and names, most of
 * them of the pattern's type. Run last: it draws from the same generator. */
static void test_random_pattern_matches(void **state)
{
    int failures = 0, matched = 0;
    for (int q = 0; q < 20000 && failures < 10; q++) {
        ref_res_t pat, r;
        char ps[256], rs[256];
        const char *why;
        bg_policy_resource_t res;
        do {
            rand_res(&pat, 1);
            res_string(&pat, ps, sizeof(ps));
        } while (bg_policy_check_resource_pattern(ps, &why) != 0);
        do
            rand_res(&r, 0);
        while (rnd(4) != 0 && r.type != pat.type);
        res_string(&r, rs, sizeof(rs));
        assert_int_equal(bg_policy_parse_resource(rs, &res, &why), 0);
        int got = bg_policy_pattern_matches(ps, &res), want = ref_res_match(&pat, &r);
        matched += want;
        if (got != want) {
            print_error("%s vs %s: got %d, want %d\n", ps, rs, got, want);
            failures++;
        }
    }
    assert_int_equal(failures, 0);
    assert_true(matched > 1000); /* the data must exercise matches */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_enforce),
        cmocka_unit_test(test_random_audit),
        cmocka_unit_test(test_random_pattern_matches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
