/* Test helpers: build policies from compact tables.
 * Lists are space-separated strings ("group:a sub:bob"). */
#ifndef BG_POLICY_TEST_UTIL_H
#define BG_POLICY_TEST_UTIL_H

#include "policy/policy.h"

typedef struct pt_rule_s {
    const char *name;
    const char *subjects;
    const char *resources;
    const char *verbs; /* "read write" or "all" */
    const char *effect;
    const char *mode;      /* NULL: inherit */
    const char *approvers; /* NULL: none */
} pt_rule_t;

typedef struct pt_mask_s {
    const char *name;
    const char *resources;
    const char *fields;
    const char *except; /* NULL: none */
} pt_mask_t;

#define PT_MAX 64

typedef struct pt_policy_s {
    const char *def;  /* "allow" / "deny" */
    const char *mode; /* "enforce" / "audit" */
    pt_rule_t rules[PT_MAX];
    pt_mask_t masks[PT_MAX];
} pt_policy_t;

/* Compiles t; on failure returns NULL with the message in err. The file of
 * rule i is "t.yaml", its line 10 + i (masks: 100 + i). */
bg_policy_t *pt_compile(const pt_policy_t *t, char *err, size_t errlen);

/* Splits s on spaces into a NULL-terminated vector (static storage, 4 slots
 * rotating, 64 words each). */
const char *const *pt_split(const char *s, size_t *n);

/* Prepares a principal from "group1 group2". */
void pt_principal(const bg_policy_t *p, const char *sub, const char *groups,
                  bg_policy_principal_t *out);

/* Space-separated names of the decision's masks ("" when none). */
const char *pt_masks(const bg_policy_decision_t *d, char *buf, size_t len);

#endif
