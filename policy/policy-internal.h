/* Private to policy/: the compiled form of a policy and its indexes.
 *
 * A compiled policy owns one arena; everything below lives in it and is
 * immutable after bg_policy_compile(). Rules and masks are each indexed per
 * "slot" (one per resource type, plus one for http rules whose route is '*').
 * A slot has three structures, all mapping keys to candidate item ids:
 *   - a hash table of literal names,
 *   - a path-compressed trie of literal prefixes; a node holds the items whose
 *     prefix pattern ends there and the globs whose literal head ends there
 *     (those still need a glob match),
 *   - a trie of reversed literal tails for globs that start with a wildcard,
 *     and a plain list for globs with neither head nor tail.
 * For http rules with a literal route the key is ROUTE '\0' PATH, so one walk
 * checks the route and the path prefix together. */
#ifndef BG_POLICY_INTERNAL_H
#define BG_POLICY_INTERNAL_H

#include "policy/policy.h"

#include <stdbool.h>

#define BG_POLICY_SLOT_HTTP_ANY BG_RES__COUNT /* http rules with route '*' */
#define BG_POLICY_NSLOTS (BG_RES__COUNT + 1)
#define BG_POLICY_MAX_PATTERN 1024 /* bytes in one resource pattern or name */
#define BG_POLICY_MAX_ITEMS 0x00ffffffu /* rules or masks in one policy */
#define BG_POLICY_NO_GLOB UINT32_MAX

/* ---- arena ---- */
typedef struct bg_policy_arena_chunk_s bg_policy_arena_chunk_t;
typedef struct bg_policy_arena_s {
    bg_policy_arena_chunk_t *head;
    size_t used, cap;
} bg_policy_arena_t;

void *bg_policy__alloc(bg_policy_arena_t *a, size_t n);
char *bg_policy__strndup(bg_policy_arena_t *a, const char *s, size_t n);
void bg_policy__arena_free(bg_policy_arena_t *a);

/* ---- pattern classification (policy_pattern.c) ---- */
typedef enum { BG_PAT_LITERAL = 0, BG_PAT_PREFIX, BG_PAT_GLOB } bg_pat_kind_t;

/* A resource pattern split into its index key. For http the route is kept
 * apart (route_any when it is '*'); name is the path pattern. For prefixes
 * name_len excludes the trailing '*'. Borrowed from the source string. */
typedef struct bg_policy_pattern_s {
    bg_res_type_t type;
    bg_pat_kind_t kind;
    bool route_any;
    const char *route;
    size_t route_len;
    const char *name;
    size_t name_len;
} bg_policy_pattern_t;

int bg_policy__parse_pattern(const char *s, bg_policy_pattern_t *out, const char **why);
/* Glob match with '*' (any run, may be empty, crosses dots) and '?' (one
 * UTF-8 character). No escapes. */
bool bg_policy__glob_match(const char *pat, size_t plen, const char *s, size_t slen);
/* Thread-local scratch for formatted "why" messages. */
const char *bg_policy__whyf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- key view: up to three byte runs read as one string ---- */
typedef struct bg_policy_key_s {
    const char *part[3];
    size_t len[3];
    size_t total;
} bg_policy_key_t;

/* ---- index (policy_index.c) ---- */
typedef struct bg_policy_glob_s {
    const char *pat; /* path/name pattern, checked against the name only */
    uint32_t plen;
    uint32_t minlen; /* bytes any match needs: quick reject */
    /* http glob with a literal route indexed by its path tail: the route is
     * then checked here against key part 0 (NULL: nothing to check) */
    const char *route;
    uint32_t route_len;
} bg_policy_glob_t;

/* One candidate of an index entry. meta carries what the cheap checks need
 * (rules: verbs in bits 0-5, effect in 6-7, audit in 8) so that most
 * candidates are rejected without touching the rule or the glob. */
typedef struct bg_policy_cand_s {
    uint64_t bloom; /* rules: subject filter, see bg_policy__subjects_bloom */
    uint32_t item;
    uint32_t glob; /* BG_POLICY_NO_GLOB, or a glob to verify against the name */
    uint32_t g[2]; /* subj BG_POLICY_SUBJ_GROUPS: the rule's one or two group ids */
    uint16_t meta;
    uint8_t subj; /* BG_POLICY_SUBJ_* */
} bg_policy_cand_t;

/* How a candidate's subjects are checked: the common shapes ('*', one or two
 * groups) are decided from the candidate alone, without reading the rule. */
enum { BG_POLICY_SUBJ_FULL = 0, BG_POLICY_SUBJ_ANY, BG_POLICY_SUBJ_GROUPS };

#define BG_POLICY_META(verbs, effect, audit) ((uint16_t)((verbs) | (effect) << 6 | (audit) << 8))
#define BG_POLICY_META_VERBS(m) ((m)&0x3fu)
#define BG_POLICY_META_EFFECT(m) (((m) >> 6) & 3u)
#define BG_POLICY_META_AUDIT(m) (((m) >> 8) & 1u)

typedef struct bg_policy_trie_s {
    uint32_t nnodes;
    /* node i: edge label into it, children [child_first, +nchild) sorted by
     * first label byte, candidates [cand_off, +ncand). Node 0 is the root. */
    const char **label;
    uint32_t *label_len;
    uint32_t *child_first;
    uint16_t *nchild;
    unsigned char *first_byte; /* first label byte of node i (i > 0) */
    uint32_t *cand_off;
    uint32_t *ncand;
} bg_policy_trie_t;

typedef struct bg_policy_hent_s {
    uint64_t hash;
    const char *key; /* NULL: empty slot */
    uint32_t key_len;
    uint32_t cand_off;
    uint32_t ncand;
} bg_policy_hent_t;

typedef struct bg_policy_index_s {
    bg_policy_hent_t *ht;
    uint32_t ht_mask; /* capacity - 1; 0 with ht NULL when empty */
    bg_policy_trie_t prefix;
    bg_policy_trie_t suffix; /* labels reversed */
    bg_policy_cand_t *loose; /* globs with no literal head or tail */
    uint32_t nloose;
    bg_policy_glob_t *globs;
    uint32_t nglobs;
    bg_policy_cand_t *cands; /* all candidate lists */
} bg_policy_index_t;

/* Builder input: one (pattern, item) pair. */
typedef struct bg_policy_ientry_s {
    bg_policy_pattern_t pat;
    uint32_t item;
    uint16_t meta;
    uint64_t bloom;
    uint8_t subj;
    uint32_t g[2];
} bg_policy_ientry_t;

int bg_policy__index_build(bg_policy_arena_t *a, bg_policy_index_t *ix,
                           const bg_policy_ientry_t *e, size_t n);

/* For each candidate of a matching index entry: want() does the cheap
 * checks (verbs, precedence, subjects); only then is a glob verified and
 * hit() called. An item may be offered more than once. */
typedef struct bg_policy_visitor_s {
    bool (*want)(void *ctx, const bg_policy_cand_t *c);
    void (*hit)(void *ctx, uint32_t item);
    void *ctx;
    uint64_t bloom; /* candidates whose bloom shares no bit are skipped; ~0 = none */
    /* Candidate lists are sorted by item: items above *cutoff cannot change
     * the outcome (e.g. after a deny), so the rest of a list is skipped.
     * NULL: visit everything. */
    const uint32_t *cutoff;
} bg_policy_visitor_t;

/* Visits the candidates whose pattern matches key (name = the part globs
 * are checked against). */
void bg_policy__index_visit(const bg_policy_index_t *ix, const bg_policy_key_t *key,
                            const char *name, size_t name_len, const bg_policy_visitor_t *v);
uint64_t bg_policy__hash(const bg_policy_key_t *k);

/* ---- compiled policy ---- */
typedef struct bg_policy_subjects_s {
    bool any;
    uint16_t ngroups, nsubs;
    uint32_t inl[3];        /* groups live here when there are at most 3 */
    const uint32_t *groups; /* sorted interned ids */
    const char *const *subs;
} bg_policy_subjects_t;

struct bg_policy_rule_s {
    /* hot: read by every candidate check */
    uint8_t verbs;
    uint8_t effect;
    uint8_t audit; /* rule-level mode: audit */
    const bg_policy_subjects_t *subj; /* in bg_policy_t.rsubj (compact, cache-friendly) */
    /* cold */
    const char *name;
    const char *file;
    int line;
    uint32_t index;
    const char *const *approvers;
    size_t napprovers;
    bg_policy_subjects_t appr;
};

struct bg_policy_mask_s {
    bg_policy_subjects_t except;
    const char *name;
    const char *file;
    int line;
    uint32_t index;
    bg_mask_format_t format;
    bg_mask_strategy_t strategy;
    const char *const *fields;
    size_t nfields;
};

typedef struct bg_policy_group_s {
    const char *name; /* NULL: empty slot */
    uint64_t hash;
    uint32_t id;
} bg_policy_group_t;

struct bg_policy_s {
    bg_policy_arena_t arena;
    uint64_t generation;
    bg_effect_t default_effect;
    bool audit; /* policy-level mode: audit */
    bg_policy_rule_t *rules;
    bg_policy_subjects_t *rsubj; /* subjects of rule i, hot in evaluation */
    size_t nrules;
    bg_policy_mask_t *masks;
    size_t nmasks;
    bg_policy_group_t *groups; /* open addressing, name -> id */
    uint32_t groups_mask;
    uint32_t ngroups;
    bg_policy_index_t rule_ix[BG_POLICY_NSLOTS];
    bg_policy_index_t mask_ix[BG_POLICY_NSLOTS];
};

bool bg_policy__subjects_match(const bg_policy_subjects_t *s, const bg_policy_principal_t *pr);
bool bg_policy__has_group(const bg_policy_principal_t *pr, uint32_t id);
/* 64-bit Bloom filters over subjects: one bit per group id and per sub name.
 * A rule whose filter shares no bit with the principal's cannot match it, so
 * most candidates are rejected without reading the rule. '*' sets all bits. */
uint64_t bg_policy__subjects_bloom(const bg_policy_subjects_t *s);
uint64_t bg_policy__principal_bloom(const bg_policy_principal_t *pr);
/* Visits the rules (masks=false) or masks matching res, deduplication left to
 * the visitor. */
void bg_policy__visit(const bg_policy_t *p, const bg_policy_resource_t *res, bool masks,
                      const bg_policy_visitor_t *v);
int bg_policy__effect_rank(bg_effect_t e); /* allow 1, hold 2, deny 3 */
/* bg_policy_decide that also reports the rule whose effect is applied (NULL
 * for the default or under a policy-wide audit). */
void bg_policy__decide(const bg_policy_t *p, const bg_policy_principal_t *pr,
                       const bg_policy_resource_t *res, bg_verb_t verb, bg_policy_decision_t *out,
                       const bg_policy_rule_t **enforced);

#endif
