/* busgate policy: rule model, compiler and evaluation.
 *
 * Protocol-neutral: a request is (principal, resource, verb). The config
 * loader fills a bg_policy_spec_t (validating each string with the parse
 * helpers below so errors carry FILE:LINE:COL), then bg_policy_compile()
 * builds an immutable snapshot. A snapshot is shared read-only by all worker
 * threads and swapped atomically on reload (see broker/). Evaluation
 * allocates nothing and takes no lock. */
#ifndef BG_POLICY_H
#define BG_POLICY_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    BG_VERB_READ = 0,
    BG_VERB_WRITE,
    BG_VERB_CREATE,
    BG_VERB_DELETE,
    BG_VERB_ALTER,
    BG_VERB_DESCRIBE,
    BG_VERB__COUNT
} bg_verb_t;

typedef enum { BG_EFFECT_ALLOW = 0, BG_EFFECT_DENY, BG_EFFECT_HOLD } bg_effect_t;

typedef enum { BG_MODE_ENFORCE = 0, BG_MODE_AUDIT, BG_MODE_INHERIT } bg_mode_t;

/* Resource types; the text form is "kafka:topic:P", "kafka:group:P",
 * "kafka:transactional-id:P", "kafka:cluster", "amqp:exchange:P",
 * "amqp:queue:P", "http:ROUTE:PATH". */
typedef enum {
    BG_RES_KAFKA_TOPIC = 0,
    BG_RES_KAFKA_GROUP,
    BG_RES_KAFKA_TXN_ID,
    BG_RES_KAFKA_CLUSTER,
    BG_RES_AMQP_EXCHANGE,
    BG_RES_AMQP_QUEUE,
    BG_RES_HTTP,
    BG_RES__COUNT
} bg_res_type_t;

typedef enum { BG_MASK_FORMAT_JSON = 0, BG_MASK_FORMAT_AVRO, BG_MASK_FORMAT_AUTO } bg_mask_format_t;
typedef enum { BG_MASK_REDACT = 0, BG_MASK_HASH, BG_MASK_LAST4, BG_MASK_NULL } bg_mask_strategy_t;

/* A concrete resource in a request. Strings are borrowed (not NUL-terminated
 * necessarily) for the duration of the call. route is used by BG_RES_HTTP
 * only (name = path); for BG_RES_KAFKA_CLUSTER name may be empty. */
typedef struct bg_policy_resource_s {
    bg_res_type_t type;
    const char *route;
    size_t route_len;
    const char *name;
    size_t name_len;
} bg_policy_resource_t;

/* ---- Source form, filled by the config loader. All strings are owned by
 * the caller (the config) and must outlive bg_policy_compile() only; the
 * compiled policy copies what it keeps. ---- */

typedef struct bg_policy_rule_spec_s {
    const char *name;
    const char *file; /* where the rule was written, for explain/audit */
    int line;
    const char *const *subjects; /* "group:NAME", "sub:NAME", "*" */
    size_t nsubjects;
    const char *const *resources; /* resource patterns, see above */
    size_t nresources;
    unsigned verbs; /* bitmask of 1u << bg_verb_t */
    bg_effect_t effect;
    const char *const *approvers; /* subjects, for effect hold */
    size_t napprovers;
    bg_mode_t mode; /* BG_MODE_INHERIT unless the rule sets mode */
} bg_policy_rule_spec_t;

typedef struct bg_policy_mask_spec_s {
    const char *name;
    const char *file;
    int line;
    const char *const *resources;
    size_t nresources;
    bg_mask_format_t format;
    const char *const *fields; /* "customer.email", "items[*].owner" */
    size_t nfields;
    bg_mask_strategy_t strategy;
    const char *const *except; /* subjects exempt from the mask */
    size_t nexcept;
} bg_policy_mask_spec_t;

typedef struct bg_policy_spec_s {
    bg_effect_t default_effect; /* allow or deny (hold is rejected) */
    bg_mode_t mode;             /* enforce or audit */
    const bg_policy_rule_spec_t *rules;
    size_t nrules;
    const bg_policy_mask_spec_t *masks;
    size_t nmasks;
} bg_policy_spec_t;

/* ---- Parse helpers for the config loader: return 0 when s is valid, else
 * -1 with *why set to a message. The message is static or lives in a
 * per-thread buffer valid until the next helper call on the same thread
 * (messages that quote the input, e.g. "unknown verb 'reed' (...)"): copy or
 * print it before calling another helper. Thread-safe. Pattern syntax is in
 * docs/policy.md: P is a literal, a prefix ("billing.*": a single '*' at the
 * end) or a glob ('*' = any run of characters, dots included, possibly empty;
 * '?' = exactly one UTF-8 character; no escapes; "**" is rejected). Names are
 * non-empty, at most 1024 bytes, without control characters. ---- */
int bg_policy_parse_verb(const char *s, bg_verb_t *out, const char **why);
int bg_policy_parse_effect(const char *s, bg_effect_t *out, const char **why);
int bg_policy_parse_mode(const char *s, bg_mode_t *out, const char **why);
int bg_policy_check_subject(const char *s, const char **why);
int bg_policy_check_resource_pattern(const char *s, const char **why);
int bg_policy_check_mask_field(const char *s, const char **why);
int bg_policy_parse_mask_format(const char *s, bg_mask_format_t *out, const char **why);
int bg_policy_parse_mask_strategy(const char *s, bg_mask_strategy_t *out, const char **why);
/* Parses a concrete resource "kafka:topic:orders" (no patterns) into out,
 * borrowing from s. For explain and tests. */
int bg_policy_parse_resource(const char *s, bg_policy_resource_t *out, const char **why);
/* 1 when the resource pattern (as a rule or mask writes it) matches r as a
 * decision would match it, else 0 (also for a pattern that does not
 * parse). For checks of a configuration (busgate check's warnings), which
 * ask about one pattern; decisions go through the compiled indexes. */
int bg_policy_pattern_matches(const char *pattern, const bg_policy_resource_t *r);

const char *bg_verb_name(bg_verb_t v);
const char *bg_effect_name(bg_effect_t e);
const char *bg_res_type_name(bg_res_type_t t); /* "kafka:topic", ... */

/* ---- Compiled policy ---- */
typedef struct bg_policy_s bg_policy_t;
typedef struct bg_policy_rule_s bg_policy_rule_t;
typedef struct bg_policy_mask_s bg_policy_mask_t;

/* Compiles spec. Returns NULL and writes a message to err on failure
 * (duplicate rule names are also caught here). The result is immutable and
 * safe to share between threads; free with bg_policy_free when the last
 * user is gone (broker/ reference-counts snapshots). */
bg_policy_t *bg_policy_compile(const bg_policy_spec_t *spec, char *err, size_t errlen);
void bg_policy_free(bg_policy_t *p);
/* Monotonic id of this compilation, distinct for every snapshot. */
uint64_t bg_policy_generation(const bg_policy_t *p);

/* Rule accessors (for audit/explain). Strings live as long as the policy. */
const char *bg_policy_rule_name(const bg_policy_rule_t *r);
const char *bg_policy_rule_file(const bg_policy_rule_t *r); /* "?" when the spec had none */
int bg_policy_rule_line(const bg_policy_rule_t *r);
bg_effect_t bg_policy_rule_effect(const bg_policy_rule_t *r);
/* Approvers of a hold rule: count and i-th subject string (NULL past the end). */
size_t bg_policy_rule_napprovers(const bg_policy_rule_t *r);
const char *bg_policy_rule_approver(const bg_policy_rule_t *r, size_t i);

/* Mask rule accessors. */
const char *bg_policy_mask_name(const bg_policy_mask_t *m);
const char *bg_policy_mask_file(const bg_policy_mask_t *m);
int bg_policy_mask_line(const bg_policy_mask_t *m);
bg_mask_format_t bg_policy_mask_format(const bg_policy_mask_t *m);
bg_mask_strategy_t bg_policy_mask_strategy(const bg_policy_mask_t *m);
size_t bg_policy_mask_nfields(const bg_policy_mask_t *m);
const char *bg_policy_mask_field(const bg_policy_mask_t *m, size_t i);

/* A principal prepared against one snapshot: groups interned to the
 * snapshot's ids. Prepare once per authentication (and again when the
 * snapshot's generation changes); evaluation then allocates nothing.
 * Groups that no rule, approver list or mask names are dropped (they cannot
 * match); ids are sorted and unique. sub may be NULL (matches no sub:
 * subject). Strings are copied; free with bg_policy_principal_clear.
 * Returns 0, or -1 when out of memory (out is then empty). Not thread-safe
 * (owned by one connection). */
typedef struct bg_policy_principal_s {
    uint64_t generation; /* snapshot it was prepared for */
    char *sub;
    uint32_t *group_ids; /* sorted interned ids of groups the policy names */
    size_t ngroup_ids;
} bg_policy_principal_t;

int bg_policy_principal_prepare(const bg_policy_t *p, const char *sub, const char *const *groups,
                                size_t ngroups, bg_policy_principal_t *out);
void bg_policy_principal_clear(bg_policy_principal_t *pr);

/* 1 when pr (prepared against the rule's policy) matches one of the rule's
 * approvers, else 0. Thread-safe. */
int bg_policy_rule_approved_by(const bg_policy_rule_t *r, const bg_policy_principal_t *pr);

#define BG_POLICY_MAX_MASKS 8

typedef struct bg_policy_decision_s {
    bg_effect_t effect;        /* what busgate does: under audit mode always allow */
    bg_effect_t would;         /* what the rules decided (= effect when enforced) */
    bg_mode_t mode;            /* BG_MODE_ENFORCE or BG_MODE_AUDIT */
    const bg_policy_rule_t *rule; /* deciding rule, NULL when decided by default */
    const bg_policy_rule_t *enforced; /* the rule whose effect is applied: = rule, except
                                         when an audit-mode rule decided `would` (rule is
                                         then that one); NULL: the default, or policy-wide
                                         audit mode */
    const bg_policy_mask_t *masks[BG_POLICY_MAX_MASKS]; /* masks that apply */
    size_t nmasks;
} bg_policy_decision_t;

/* Decides (principal, resource, verb). Precedence deny > hold > allow >
 * default; among rules of the same effect the first written decides.
 * Policy-wide audit: effect allow, would = what the rules decided, rule =
 * the rule that decided it (NULL for default), mode AUDIT. Per-rule audit:
 * effect comes from the enforce-mode rules (or default); when a matching
 * audit-mode rule has a strictly higher-precedence effect, would = its
 * effect, rule = that audit rule, mode AUDIT. masks = the first (in file
 * order) BG_POLICY_MAX_MASKS masks whose resources match and whose except
 * list does not match pr (verb irrelevant). pr may be NULL (anonymous: only
 * '*' subjects match). A principal prepared for another generation is
 * denied (effect and would deny, rule NULL, no masks): re-prepare it.
 * Allocates nothing; pointers in out live as long as p. Thread-safe. */
void bg_policy_decide(const bg_policy_t *p, const bg_policy_principal_t *pr,
                      const bg_policy_resource_t *res, bg_verb_t verb, bg_policy_decision_t *out);

/* What a request on a resource of type with verb can carry that a mask
 * covers: message data busgate or the broker moves out of or into it.
 * ALL: every such request does (reading a Kafka topic, reading an AMQP
 * queue: fetch, consume, get, dead-lettering out of it); SOME: some do
 * (reading or writing an AMQP exchange: publish, bind, alternate-exchange
 * and dead-letter routes do, unbinds do not; the AMQP adapter knows which
 * from the method); NONE: none does. */
typedef enum {
    BG_POLICY_DATA_NONE = 0,
    BG_POLICY_DATA_ALL,
    BG_POLICY_DATA_SOME
} bg_policy_data_t;
bg_policy_data_t bg_policy_moves_data(bg_res_type_t type, bg_verb_t verb);

/* What this build cannot carry out of decision d, which every adapter then
 * refuses (fails closed) instead: NONE when d is applied as it is; HOLD for
 * effect hold (approvals are not part of this build); MASK for effect allow
 * with a mask when the request moves message data (moves_data nonzero;
 * masking is not part of this build, and masked data never passes
 * unmasked). One rule for the adapters and for explain. */
typedef enum {
    BG_POLICY_UNBUILT_NONE = 0,
    BG_POLICY_UNBUILT_HOLD,
    BG_POLICY_UNBUILT_MASK
} bg_policy_unbuilt_t;
bg_policy_unbuilt_t bg_policy_unbuilt(const bg_policy_decision_t *d, int moves_data);

/* For questions about a whole resource type ("may pr write some topic?",
 * as Kafka's authorizeByResourceType asks): calls fn with names of type
 * that an allow rule for verb whose subjects match pr names, one per
 * pattern in file order (a literal itself, a prefix its head, a glob with
 * '*' empty and '?' as '_'; "*" for one that matches every name), then "*"
 * when the default allows or the whole
 * policy is in audit mode. Each name is only a candidate: fn decides it
 * (bg_policy_decide) and returns nonzero to stop, which is returned; 0 when
 * fn accepted none. A name the rules allow only in a form not sampled (an
 * allowed prefix whose head alone is denied) is not found: the answer errs
 * towards "no". Not for BG_RES_HTTP (returns 0), nor for a principal of
 * another generation. Allocates nothing. Thread-safe. */
typedef int (*bg_policy_name_fn)(void *ctx, const char *name, size_t len);
int bg_policy_allowed_names(const bg_policy_t *p, const bg_policy_principal_t *pr,
                            bg_res_type_t type, bg_verb_t verb, bg_policy_name_fn fn, void *ctx);

#endif
