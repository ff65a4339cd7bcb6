/* Private to policy/: the compiled form of a policy and its indexes.
 *
 * A compiled policy owns one arena; everything below lives in it and is
 * immutable after bg_policy_compile(). Rules are indexed per verb and per
 * "slot" (one per resource type, plus one for http rules whose route is '*'),
 * masks per slot. An index has three structures, all mapping keys to
 * candidate item ids:
 *   - a path-compressed trie of literal names and prefixes; a node holds the
 *     literals that end there (exact), the prefixes that end there and the
 *     globs whose literal head ends there (those still need a glob match),
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
 * character: a well-formed UTF-8 sequence, else one byte). No escapes. */
bool bg_policy__glob_match(const char *pat, size_t plen, const char *s, size_t slen);
/* Thread-local scratch for formatted "why" messages. */
const char *bg_policy__whyf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- index (policy_index.c builds, policy_lookup.c walks) ---- */
typedef struct bg_policy_glob_s {
    const char *pat; /* path/name pattern, checked against the name only */
    uint32_t plen;
    uint32_t minlen; /* bytes any match needs: quick reject */
    /* http glob with a literal route indexed by its path tail: the route is
     * then checked here against the request's route (NULL: nothing to check) */
    const char *route;
    uint32_t route_len;
} bg_policy_glob_t;

/* One candidate of an index entry, 24 bytes. meta and g[] carry what the
 * checks need (verbs, effect, mode, the rule's groups) so that a candidate
 * is usually decided without touching the rule, its subjects or the glob. */
typedef struct bg_policy_cand_s {
    uint32_t item;
    uint32_t glob; /* BG_POLICY_NO_GLOB, or a glob to verify against the name */
    uint32_t g[3]; /* subj BG_POLICY_SUBJ_GROUPS: the rule's 1-3 group ids (repeated) */
    uint16_t meta;
    uint8_t subj; /* BG_POLICY_SUBJ_* */
} bg_policy_cand_t;

/* How a candidate's subjects are checked: the common shapes ('*', one to
 * three groups) are decided from the candidate alone. */
enum { BG_POLICY_SUBJ_FULL = 0, BG_POLICY_SUBJ_ANY, BG_POLICY_SUBJ_GROUPS };

/* meta: verbs in bits 0-5, effect in 6-7; bit 8 "audit": the rule is judged
 * as an audit-mode rule (its own mode is audit and the policy's is not);
 * bit 9 "final": an enforced deny, which nothing can outrank. Every
 * candidate list is ordered finals first, then by item (file order), so a
 * walk stops at the first matching final. */
#define BG_POLICY_META(verbs, effect, audit, final)                                                \
    ((uint16_t)((verbs) | (effect) << 6 | (audit) << 8 | (final) << 9))
#define BG_POLICY_META_VERBS(m) ((m)&0x3fu)
#define BG_POLICY_META_EFFECT(m) (((m) >> 6) & 3u)
#define BG_POLICY_META_AUDIT(m) (((m) >> 8) & 1u)
#define BG_POLICY_META_FINAL(m) (((m) >> 9) & 1u)

/* A trie node, one 32-byte record so that a step of the walk usually
 * touches one cache line: labels of up to 8 bytes live in the node, and so
 * do the first bytes of up to 4 children. Children are contiguous nodes
 * [child, +nchild), sorted by first label byte (also in
 * bg_policy_trie_t.first, for nodes with more children).
 * Candidates: [cand, +nexact) apply when the key ends exactly here
 * (literals), [cand + nexact, +nprefix) when the key reaches here
 * (prefixes, globs by their literal head). */
#define BG_POLICY_LABEL_INLINE 8
#define BG_POLICY_KIDS_INLINE 4
typedef struct bg_policy_node_s {
    union {
        char inl[BG_POLICY_LABEL_INLINE]; /* label_len <= BG_POLICY_LABEL_INLINE */
        const char *ptr;                  /* longer labels */
    } label;                              /* edge label into the node */
    uint32_t child;
    uint32_t cand;
    uint32_t nexact;
    uint32_t nprefix;
    uint16_t label_len;
    uint16_t nchild;
    unsigned char kids[BG_POLICY_KIDS_INLINE]; /* first bytes, nchild <= 4 */
} bg_policy_node_t;
_Static_assert(sizeof(bg_policy_node_t) == 32, "a trie node is half a cache line");

typedef struct bg_policy_trie_s {
    uint32_t nnodes; /* node 0 is the root */
    bg_policy_node_t *node;
    unsigned char *first; /* first label byte of node i (i > 0) */
} bg_policy_trie_t;

typedef struct bg_policy_index_s {
    uint32_t ncands;         /* 0: nothing indexed, skip the walk */
    bg_policy_trie_t prefix; /* literals and prefixes (and glob heads) */
    bg_policy_trie_t suffix; /* reversed literal tails of globs starting with a wildcard */
    bg_policy_cand_t *loose; /* globs with no literal head or tail */
    uint32_t nloose;
    bg_policy_glob_t *globs;
    uint32_t nglobs;
    bg_policy_cand_t *cands; /* all candidate lists */
} bg_policy_index_t;

/* Builder input: one (pattern, item) pair; cand.glob is set by the builder. */
typedef struct bg_policy_ientry_s {
    bg_policy_pattern_t pat;
    bg_policy_cand_t cand;
} bg_policy_ientry_t;

int bg_policy__index_build(bg_policy_arena_t *a, bg_policy_index_t *ix,
                           const bg_policy_ientry_t *e, size_t n);
/* FNV-1a over n bytes (group interning). */
uint64_t bg_policy__hash(const char *s, size_t n);

/* Generic visit (masks, explain): want() does the cheap checks; only then
 * is a glob verified and hit() called. An item may be offered more than
 * once. Decisions use bg_policy__decide_rules instead (inlined checks). */
typedef struct bg_policy_visitor_s {
    bool (*want)(void *ctx, const bg_policy_cand_t *c);
    void (*hit)(void *ctx, uint32_t item);
    void *ctx;
} bg_policy_visitor_t;

/* State of one rule decision (policy_decide.c fills it, the lookup walks).
 * bits: the principal's interned group ids as a bitset, for ids below
 * nbits; larger ids fall back to a binary search of pr->group_ids. */
#define BG_POLICY_BITSET_WORDS 16
typedef struct bg_policy_rctx_s {
    const bg_policy_t *p;
    const bg_policy_principal_t *pr;
    unsigned vbit;
    uint32_t nbits;
    uint32_t best[2][3]; /* [enforce, audit][effect]: lowest matching rule index */
    uint64_t bits[BG_POLICY_BITSET_WORDS];
} bg_policy_rctx_t;

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
    uint64_t generation; /* its policy's: group ids in appr mean nothing elsewhere */
    const bg_policy_pattern_t *pats; /* its resources, parsed (bg_policy_allowed_names) */
    uint32_t npats;
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
    bg_policy_index_t rule_ix[BG_VERB__COUNT][BG_POLICY_NSLOTS]; /* per verb */
    bg_policy_index_t mask_ix[BG_POLICY_NSLOTS];
};

bool bg_policy__subjects_match(const bg_policy_subjects_t *s, const bg_policy_principal_t *pr);
bool bg_policy__has_group(const bg_policy_principal_t *pr, uint32_t id);
/* Visits the rules with verb (masks=false) or the masks (verb ignored)
 * matching res, deduplication left to the visitor (policy_lookup.c). */
void bg_policy__visit(const bg_policy_t *p, const bg_policy_resource_t *res, bool masks,
                      bg_verb_t verb, const bg_policy_visitor_t *v);
/* Lowers rc->best to the first matching rule of each (mode, effect) for
 * (res, verb); rc must be set up by the caller (policy_decide.c), verb valid. */
void bg_policy__decide_rules(bg_policy_rctx_t *rc, const bg_policy_resource_t *res,
                             bg_verb_t verb);
int bg_policy__effect_rank(bg_effect_t e); /* allow 1, hold 2, deny 3 */
/* bg_policy_decide that also reports the rule whose effect is applied (NULL
 * for the default or under a policy-wide audit). */
void bg_policy__decide(const bg_policy_t *p, const bg_policy_principal_t *pr,
                       const bg_policy_resource_t *res, bg_verb_t verb, bg_policy_decision_t *out,
                       const bg_policy_rule_t **enforced);

#endif
