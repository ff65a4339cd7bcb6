/* Fuzz target: resource patterns and subjects through the policy compiler,
 * and concrete resources through evaluation and explain.
 *
 * Input: fields separated by '\n': SUBJECT, PATTERN, RESOURCE, VERB, and
 * optionally GROUP (the principal's group). A tiny spec is compiled with
 * PATTERN (one rule for SUBJECT, one for '*', one mask), then RESOURCE is
 * decided, once as parsed text ("kafka:topic:x") and once as raw bytes
 * (type from its first byte, route and name split at the first ':', NULs
 * and all). Must never crash, leak or read out of bounds. It also checks
 * one invariant: the '*' rule (found by the decision's walk) and the mask
 * (found by the generic walk) share the pattern, so they match together. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"
#include "policy/policy_explain.h"

#define BG_FUZZ_FIELDS 5

/* Splits data at '\n' into NUL-terminated copies; missing fields are "". */
static void bg_fuzz__split(const uint8_t *data, size_t size, char *f[BG_FUZZ_FIELDS],
                           size_t flen[BG_FUZZ_FIELDS])
{
    size_t start = 0;
    for (int i = 0; i < BG_FUZZ_FIELDS; i++) {
        size_t end = start;
        while (end < size && (i == BG_FUZZ_FIELDS - 1 || data[end] != '\n'))
            end++;
        flen[i] = start < size ? end - start : 0;
        f[i] = malloc(flen[i] + 1);
        if (!f[i])
            abort();
        if (flen[i])
            memcpy(f[i], data + start, flen[i]);
        f[i][flen[i]] = '\0';
        start = end + 1;
    }
}

/* RESOURCE as raw bytes: any type, route and name with arbitrary content. */
static bg_policy_resource_t bg_fuzz__raw(const char *s, size_t n)
{
    bg_policy_resource_t r = {0};
    if (n == 0)
        return r;
    r.type = (bg_res_type_t)((unsigned char)s[0] % (BG_RES__COUNT + 1)); /* one invalid */
    const char *colon = memchr(s + 1, ':', n - 1);
    if (colon) {
        r.route = s + 1;
        r.route_len = (size_t)(colon - (s + 1));
        r.name = colon + 1;
        r.name_len = n - (size_t)(colon + 1 - s);
    } else {
        r.name = s + 1;
        r.name_len = n - 1;
    }
    return r;
}

static void bg_fuzz__decide(const bg_policy_t *p, const bg_policy_principal_t *pr,
                            const bg_policy_resource_t *res, bg_verb_t verb)
{
    bg_policy_decision_t d;
    char buf[512];
    bg_policy_decide(p, pr, res, verb, &d);
    if (d.nmasks > BG_POLICY_MAX_MASKS)
        abort();
    /* rule 1 ('*', all verbs) and mask 0 share the pattern */
    if ((unsigned)verb < BG_VERB__COUNT && (d.nmasks == 1) != (d.rule != NULL))
        abort();
    if (bg_policy_explain(p, pr, res, verb, buf, sizeof(buf), (int)(res->name_len & 1)) < 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *f[BG_FUZZ_FIELDS];
    size_t flen[BG_FUZZ_FIELDS];
    const char *why;
    bg_fuzz__split(data, size, f, flen);
    /* the config loader's checks, on every field */
    (void)bg_policy_check_subject(f[0], &why);
    (void)bg_policy_check_resource_pattern(f[1], &why);
    bg_verb_t verb = BG_VERB_READ;
    if (bg_policy_parse_verb(f[3], &verb, &why) < 0)
        verb = flen[3] ? (bg_verb_t)((unsigned char)f[3][0] % (BG_VERB__COUNT + 1)) : BG_VERB_READ;

    const char *subj[] = {f[0]}, *any[] = {"*"}, *res[] = {f[1]}, *fields[] = {"a.b"};
    const char *appr[] = {f[0]};
    bg_policy_rule_spec_t rules[2] = {
        {.name = "fuzzed-subject", .file = "fuzz.yaml", .line = 1, .subjects = subj,
         .nsubjects = 1, .resources = res, .nresources = 1, .verbs = 1u << BG_VERB_DELETE,
         .effect = BG_EFFECT_HOLD, .approvers = appr, .napprovers = 1, .mode = BG_MODE_AUDIT},
        {.name = "everyone", .file = "fuzz.yaml", .line = 2, .subjects = any, .nsubjects = 1,
         .resources = res, .nresources = 1, .verbs = (1u << BG_VERB__COUNT) - 1,
         .effect = BG_EFFECT_ALLOW, .mode = BG_MODE_INHERIT},
    };
    bg_policy_mask_spec_t mask = {.name = "m", .file = "fuzz.yaml", .line = 3, .resources = res,
                                  .nresources = 1, .fields = fields, .nfields = 1};
    bg_policy_spec_t spec = {BG_EFFECT_DENY, BG_MODE_ENFORCE, rules, 2, &mask, 1};
    char err[256];
    bg_policy_t *p = bg_policy_compile(&spec, err, sizeof(err));
    if (p) {
        bg_policy_principal_t pr;
        const char *groups[] = {f[4]};
        if (bg_policy_principal_prepare(p, f[0] + (flen[0] > 4 ? 4 : flen[0]), groups, 1, &pr) < 0)
            abort();
        bg_policy_resource_t parsed, raw = bg_fuzz__raw(f[2], flen[2]);
        if (bg_policy_parse_resource(f[2], &parsed, &why) == 0)
            bg_fuzz__decide(p, &pr, &parsed, verb);
        bg_fuzz__decide(p, &pr, &raw, verb);
        bg_fuzz__decide(p, NULL, &raw, verb);
        bg_policy_principal_clear(&pr);
        bg_policy_free(p);
    }
    for (int i = 0; i < BG_FUZZ_FIELDS; i++)
        free(f[i]);
    return 0;
}
