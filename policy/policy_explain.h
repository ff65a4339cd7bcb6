/* busgate policy: explanations for `busgate explain` and the admin API.
 *
 * Text form (json = 0), one item per line:
 *   line 1: "<allow|deny|hold> by rule '<name>' (<file>:<line>)" or
 *           "<effect> by default" -- always the effect that is applied;
 *   then, when the decision is in audit mode:
 *           "mode: audit (would <effect> by rule '<name>' (<file>:<line>))" or
 *           "mode: audit (would <effect> by default)";
 *   then one line per other matching rule, in file order:
 *           "also matched: <effect> by rule '<name>' (<file>:<line>)[ (mode: audit)]";
 *   then one line per mask that applies:
 *           "mask: '<name>' (<file>:<line>) <strategy> <format> <field>[, <field>...]";
 *   then, when this build refuses what the policy holds or allows
 *   (bg_policy_unbuilt: a hold, or a masked read as the adapters refuse it):
 *           "note: this build refuses it: <why>" (for an AMQP exchange,
 *           "note: this build refuses it when it moves message bodies ...").
 * Under a policy-wide audit mode nothing decides the applied allow, so line 1
 * is "allow by default" and line 2 says what the rules decided.
 * JSON form (json = 1): one object
 *   {"effect","would","mode","rule":{"name","file","line"}|null,
 *    "enforced_rule":{...}|null,"matched":[{"name","file","line","effect","mode"}...],
 *    "masks":[{"name","file","line","format","strategy","fields":[...]}...],
 *    "refused_by_build":"<the note's text after 'note: '>"|null}
 * where rule is bg_policy_decision_t.rule, enforced_rule the rule whose
 * effect is applied, and matched lists every matching rule in file order. */
#ifndef BG_POLICY_EXPLAIN_H
#define BG_POLICY_EXPLAIN_H

#include "policy/policy.h"

/* Writes the explanation of (pr, res, verb) into buf (NUL-terminated,
 * truncated to len; buf may be NULL when len is 0). Returns the length the
 * full text needs (excluding the NUL, like snprintf), or -1 when out of
 * memory: a caller that must not truncate sizes buf from a first call. Allocates scratch memory
 * (unlike bg_policy_decide); thread-safe on a shared policy. */
int bg_policy_explain(const bg_policy_t *p, const bg_policy_principal_t *pr,
                      const bg_policy_resource_t *res, bg_verb_t verb, char *buf, size_t len,
                      int json);

#endif
