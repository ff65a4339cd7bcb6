/* Table-driven decision tests (in the manner of pgbouncer's hba_test): each
 * case is a policy plus rows of (sub, groups, resource, verb) -> expected
 * effect, deciding rule (NULL = default), would, mode and masks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "policy/policy_explain.h"
#include "policy_test_util.h"

typedef struct pt_row_s {
    const char *sub, *groups, *resource, *verb;
    const char *effect; /* applied effect */
    const char *rule;   /* deciding rule; NULL = by default */
    const char *would;  /* NULL: same as effect */
    int audit;          /* decision mode is audit */
    const char *masks;  /* NULL: not checked; "" = none */
} pt_row_t;

typedef struct pt_case_s {
    const char *title;
    pt_policy_t policy;
    pt_row_t rows[48];
} pt_case_t;

#define ALL_GROUPS_50                                                                              \
    "x0 x1 x2 x3 x4 x5 x6 x7 x8 x9 x10 x11 x12 x13 x14 x15 x16 x17 x18 x19 x20 x21 x22 x23 x24 " \
    "x25 x26 x27 x28 x29 x30 x31 x32 x33 x34 x35 x36 x37 x38 x39 x40 x41 x42 x43 x44 x45 x46 "    \
    "x47 x48 g1"

static const pt_case_t pt_cases[] = {
    {"precedence deny > hold > allow > default, first written wins",
     {"deny", "enforce",
      {{"allow-all-read", "*", "kafka:topic:*", "read", "allow"},
       {"hold-del", "group:ops", "kafka:topic:orders", "delete", "hold", NULL, "group:sre"},
       {"deny-secret", "*", "kafka:topic:secret.*", "all", "deny"},
       {"allow-ops", "group:ops", "kafka:topic:orders", "all", "allow"},
       {"deny-late", "group:ops", "kafka:topic:orders", "delete", "deny"},
       {"allow-orders-read", "*", "kafka:topic:orders", "read", "allow"},
       {"hold-users", "group:ops", "kafka:topic:users.*", "delete alter", "hold", NULL, "sub:boss"},
       {"allow-users", "group:ops", "kafka:topic:users.*", "all", "allow"},
       {"hold-users-2", "group:ops", "kafka:topic:users.x", "delete", "hold", NULL, "sub:boss"}}},
     {{"alice", "", "kafka:topic:orders", "read", "allow", "allow-all-read"},
      {"bob", "ops", "kafka:topic:orders", "delete", "deny", "deny-late"},
      {"bob", "ops", "kafka:topic:orders", "write", "allow", "allow-ops"},
      {"bob", "ops", "kafka:topic:orders", "read", "allow", "allow-all-read"},
      {"x", "", "kafka:topic:orders", "write", "deny", NULL},
      {"bob", "ops", "kafka:topic:secret.k", "read", "deny", "deny-secret"},
      {"bob", "ops", "kafka:topic:users.x", "delete", "hold", "hold-users"},
      {"bob", "ops", "kafka:topic:users.x", "alter", "hold", "hold-users"},
      {"bob", "ops", "kafka:topic:users.x", "read", "allow", "allow-all-read"},
      {"bob", "ops", "kafka:topic:users.x", "write", "allow", "allow-users"},
      {"bob", "", "kafka:topic:users.x", "delete", "deny", NULL}}},

    {"literal vs prefix vs glob",
     {"deny", "enforce",
      {{"lit", "sub:a", "kafka:topic:billing.eu", "read", "allow"},
       {"pre", "sub:b", "kafka:topic:billing.*", "read", "allow"},
       {"glob", "sub:c", "kafka:topic:billing.*.v?", "read", "allow"},
       {"tail", "sub:d", "kafka:topic:*.audit", "read", "allow"},
       {"loose", "sub:e", "kafka:topic:*x*", "read", "allow"},
       {"q", "sub:f", "kafka:topic:a?c", "read", "allow"},
       {"star", "sub:g", "kafka:topic:*", "read", "allow"},
       {"two-res", "sub:h", "kafka:topic:one kafka:topic:tw?", "read", "allow"},
       {"star-q", "sub:i", "kafka:topic:*??c*", "read", "allow"}}},
     {{"a", "", "kafka:topic:billing.eu", "read", "allow", "lit"},
      {"a", "", "kafka:topic:billing.eu2", "read", "deny", NULL},
      {"a", "", "kafka:topic:billing.e", "read", "deny", NULL},
      {"b", "", "kafka:topic:billing.eu", "read", "allow", "pre"},
      {"b", "", "kafka:topic:billing.", "read", "allow", "pre"},
      {"b", "", "kafka:topic:billing", "read", "deny", NULL},
      {"b", "", "kafka:topic:billingx", "read", "deny", NULL},
      {"c", "", "kafka:topic:billing.eu.v1", "read", "allow", "glob"},
      {"c", "", "kafka:topic:billing.a.b.v2", "read", "allow", "glob"},
      {"c", "", "kafka:topic:billing..v2", "read", "allow", "glob"},
      {"c", "", "kafka:topic:billing.eu.v10", "read", "deny", NULL},
      {"c", "", "kafka:topic:billing.v1", "read", "deny", NULL},
      {"d", "", "kafka:topic:x.audit", "read", "allow", "tail"},
      {"d", "", "kafka:topic:.audit", "read", "allow", "tail"},
      {"d", "", "kafka:topic:audit", "read", "deny", NULL},
      {"d", "", "kafka:topic:x.audit.y", "read", "deny", NULL},
      {"e", "", "kafka:topic:abxc", "read", "allow", "loose"},
      {"e", "", "kafka:topic:x", "read", "allow", "loose"},
      {"e", "", "kafka:topic:abc", "read", "deny", NULL},
      {"f", "", "kafka:topic:abc", "read", "allow", "q"},
      {"f", "", "kafka:topic:a\xc3\xa9" "c", "read", "allow", "q"},
      {"f", "", "kafka:topic:ac", "read", "deny", NULL},
      {"f", "", "kafka:topic:abbc", "read", "deny", NULL},
      {"g", "", "kafka:topic:anything.at.all", "read", "allow", "star"},
      {"g", "", "kafka:group:anything", "read", "deny", NULL},
      {"h", "", "kafka:topic:one", "read", "allow", "two-res"},
      {"h", "", "kafka:topic:two", "read", "allow", "two-res"},
      {"h", "", "kafka:topic:three", "read", "deny", NULL},
      /* after a mismatch '*' moves on by a whole character: "\xe2\x82\xac" is one,
       * so "??c" finds no two characters before a 'c' (from the euro sign's
       * second byte it would) */
      {"i", "", "kafka:topic:\xe2\x82\xac" "cz", "read", "deny", NULL},
      {"i", "", "kafka:topic:\xe2\x82\xac" "xcz", "read", "allow", "star-q"}}},

    {"subjects: groups, sub:, '*', many and unknown groups",
     {"deny", "enforce",
      {{"r1", "group:g1 group:g5", "kafka:group:app", "read", "allow"},
       {"r2", "sub:svc-a", "kafka:group:app", "write", "allow"},
       {"r3", "*", "kafka:group:app", "describe", "allow"},
       {"r4", "sub:svc-b group:g9", "kafka:group:app", "delete", "allow"}}},
     {{"u", "zz g5 unknown", "kafka:group:app", "read", "allow", "r1"},
      {"u", "g2", "kafka:group:app", "read", "deny", NULL},
      {"u", ALL_GROUPS_50, "kafka:group:app", "read", "allow", "r1"},
      {"u", ALL_GROUPS_50, "kafka:group:app", "delete", "deny", NULL},
      {"svc-a", "", "kafka:group:app", "write", "allow", "r2"},
      {"svc-b", "", "kafka:group:app", "write", "deny", NULL},
      {"g1", "", "kafka:group:app", "read", "deny", NULL},
      {"svc-b", "", "kafka:group:app", "delete", "allow", "r4"},
      {"u", "g9", "kafka:group:app", "delete", "allow", "r4"},
      {"anyone", "", "kafka:group:app", "describe", "allow", "r3"},
      {"anyone", "", "kafka:group:app2", "describe", "deny", NULL}}},

    {"every resource type",
     {"deny", "enforce",
      {{"txn", "*", "kafka:transactional-id:tx-*", "write", "allow"},
       {"cluster", "group:admin", "kafka:cluster", "alter describe", "allow"},
       {"exch", "*", "amqp:exchange:ex", "write", "allow"},
       {"queue", "*", "amqp:queue:q.*", "read", "allow"},
       {"users-api", "*", "http:users-api:/users/*", "read", "allow"},
       {"health", "*", "http:*:/health", "read", "allow"},
       {"item-detail", "*", "http:users-api:/items/?/detail", "read", "allow"},
       {"any-route-glob", "*", "http:*:*/admin", "read", "deny"},
       {"topic-ex", "*", "kafka:topic:ex", "write", "allow"},
       {"json-route", "*", "http:users-api:*.json", "write", "deny"},
       {"json-any", "*", "http:*:*.json", "write", "allow"}}},
     {{"u", "", "kafka:transactional-id:tx-1", "write", "allow", "txn"},
      {"u", "", "kafka:topic:tx-1", "write", "deny", NULL},
      {"u", "admin", "kafka:cluster", "alter", "allow", "cluster"},
      {"u", "admin", "kafka:cluster", "create", "deny", NULL},
      {"u", "", "kafka:cluster", "alter", "deny", NULL},
      {"u", "", "amqp:exchange:ex", "write", "allow", "exch"},
      {"u", "", "amqp:queue:ex", "write", "deny", NULL},
      {"u", "", "kafka:topic:ex", "write", "allow", "topic-ex"},
      {"u", "", "amqp:queue:q.1", "read", "allow", "queue"},
      {"u", "", "amqp:exchange:q.1", "read", "deny", NULL},
      {"u", "", "http:users-api:/users/42", "read", "allow", "users-api"},
      {"u", "", "http:other-api:/users/42", "read", "deny", NULL},
      {"u", "", "http:users-api:/usersx", "read", "deny", NULL},
      {"u", "", "http:any:/health", "read", "allow", "health"},
      {"u", "", "http:users-api:/health", "read", "allow", "health"},
      {"u", "", "http:users-api:/health/x", "read", "deny", NULL},
      {"u", "", "http:users-api:/items/7/detail", "read", "allow", "item-detail"},
      {"u", "", "http:users-api:/items/77/detail", "read", "deny", NULL},
      {"u", "", "http:users-api:/users/admin", "read", "deny", "any-route-glob"},
      {"u", "", "http:x:/a/b/admin", "read", "deny", "any-route-glob"},
      {"u", "", "http:users-api:/a/b.json", "write", "deny", "json-route"},
      {"u", "", "http:other-api:/a/b.json", "write", "allow", "json-any"},
      {"u", "", "http:users-ap:/a/b.json", "write", "allow", "json-any"},
      /* a rule's literal route is the whole route, not its first bytes */
      {"u", "", "http:users-apix:/a/b.json", "write", "allow", "json-any"},
      {"u", "", "http:users-api:/a/b.jsonx", "write", "deny", NULL}}},

    {"default allow",
     {"allow", "enforce",
      {{"no-secrets", "*", "kafka:topic:secret.*", "all", "deny"},
       {"ok", "group:a", "kafka:topic:secret.ok", "read", "allow"},
       {"four-groups", "group:a1 group:a2 group:a3 group:a4", "kafka:topic:four", "read", "deny"}}},
     {{"u", "", "kafka:topic:public", "write", "allow", NULL},
      /* an index candidate holds up to three groups: four are checked in full */
      {"u", "a4", "kafka:topic:four", "read", "deny", "four-groups"},
      {"u", "a1", "kafka:topic:four", "read", "deny", "four-groups"},
      {"u", "a", "kafka:topic:four", "read", "allow", NULL},
      {"u", "", "kafka:topic:secret.x", "read", "deny", "no-secrets"},
      {"u", "a", "kafka:topic:secret.ok", "read", "deny", "no-secrets"},
      {"u", "", "amqp:queue:anything", "delete", "allow", NULL}}},

    {"policy-wide audit",
     {"deny", "audit",
      {{"x", "*", "kafka:topic:x", "all", "deny"},
       {"y", "*", "kafka:topic:y", "all", "allow"},
       {"z", "*", "kafka:topic:z", "all", "hold", NULL, "group:sre"},
       {"w", "*", "kafka:topic:w", "all", "deny", "audit"},
       {"w2", "*", "kafka:topic:w", "all", "allow", "enforce"}}},
     {{"u", "", "kafka:topic:x", "read", "allow", "x", "deny", 1},
      {"u", "", "kafka:topic:y", "read", "allow", "y", "allow", 1},
      {"u", "", "kafka:topic:z", "read", "allow", "z", "hold", 1},
      {"u", "", "kafka:topic:none", "read", "allow", NULL, "deny", 1},
      {"u", "", "kafka:topic:w", "read", "allow", "w", "deny", 1}}},

    {"per-rule audit",
     {"deny", "enforce",
      {{"a-deny", "*", "kafka:topic:t1", "read", "deny", "audit"},
       {"e-allow", "*", "kafka:topic:t1", "read", "allow"},
       {"a-allow", "*", "kafka:topic:t2", "read", "allow", "audit"},
       {"e-deny", "*", "kafka:topic:t3", "read", "deny"},
       {"a-hold", "*", "kafka:topic:t3 kafka:topic:t5", "read", "hold", "audit", "group:sre"},
       {"a-deny4", "*", "kafka:topic:t4", "read", "deny", "audit"},
       {"e-allow5", "*", "kafka:topic:t5", "read", "allow"},
       {"e-hold6", "*", "kafka:topic:t6", "read", "hold", "enforce", "group:sre"},
       {"a-deny6", "*", "kafka:topic:t6", "read", "deny", "audit"},
       {"a-allow6", "*", "kafka:topic:t6", "read", "allow", "audit"}}},
     {{"u", "", "kafka:topic:t1", "read", "allow", "a-deny", "deny", 1},
      {"u", "", "kafka:topic:t1", "write", "deny", NULL},
      {"u", "", "kafka:topic:t2", "read", "deny", NULL, "deny", 0},
      {"u", "", "kafka:topic:t3", "read", "deny", "e-deny", "deny", 0},
      {"u", "", "kafka:topic:t4", "read", "deny", NULL, "deny", 0},
      {"u", "", "kafka:topic:t5", "read", "allow", "a-hold", "hold", 1},
      {"u", "", "kafka:topic:t6", "read", "hold", "a-deny6", "deny", 1}}},

    {"per-rule audit with default allow",
     {"allow", "enforce",
      {{"a-deny", "*", "kafka:topic:t1", "read", "deny", "audit"},
       {"a-allow", "*", "kafka:topic:t2", "read", "allow", "audit"}}},
     {{"u", "", "kafka:topic:t1", "read", "allow", "a-deny", "deny", 1},
      {"u", "", "kafka:topic:t2", "read", "allow", NULL, "allow", 0}}},

    {"masks with except, verb irrelevant, first eight in order",
     {"deny", "enforce",
      {{"read", "*", "kafka:topic:*", "read", "allow"}},
      {{"pii", "kafka:topic:billing.*", "customer.email", "group:fraud"},
       {"inv", "amqp:queue:invoices", "x"},
       {"eu", "kafka:topic:*.eu", "y", "sub:auditor"},
       {"m0", "kafka:topic:many", "f"},
       {"m1", "kafka:topic:m*", "f"},
       {"m2", "kafka:topic:?any", "f", "group:m2-exempt"},
       {"m3", "kafka:topic:*y", "f"},
       {"m4", "kafka:topic:*", "f"},
       {"m5", "kafka:topic:many kafka:topic:man*", "f"},
       {"m6", "kafka:topic:ma*", "f"},
       {"m7", "kafka:topic:m?ny", "f"},
       {"m8", "kafka:topic:many", "f"}}},
     {{"u", "", "kafka:topic:billing.eu", "read", "allow", "read", NULL, 0, "pii eu m4"},
      {"u", "fraud", "kafka:topic:billing.eu", "write", "deny", NULL, NULL, 0, "eu m4"},
      {"auditor", "fraud", "kafka:topic:billing.eu", "read", "allow", "read", NULL, 0, "m4"},
      {"u", "", "amqp:queue:invoices", "read", "deny", NULL, NULL, 0, "inv"},
      {"u", "", "amqp:queue:other", "read", "deny", NULL, NULL, 0, ""},
      {"u", "", "kafka:topic:many", "read", "allow", "read", NULL, 0, "m0 m1 m2 m3 m4 m5 m6 m7"},
      {"u", "m2-exempt", "kafka:topic:many", "read", "allow", "read", NULL, 0,
       "m0 m1 m3 m4 m5 m6 m7 m8"}}},
};

static int pt_run_row(const bg_policy_t *p, const pt_case_t *c, size_t i)
{
    const pt_row_t *r = &c->rows[i];
    bg_policy_principal_t pr;
    bg_policy_resource_t res;
    bg_policy_decision_t d;
    bg_verb_t verb;
    const char *why;
    char masks[512];
    if (bg_policy_parse_resource(r->resource, &res, &why) != 0 ||
        bg_policy_parse_verb(r->verb, &verb, &why) != 0) {
        print_error("%s row %zu: bad row: %s\n", c->title, i, why);
        return 1;
    }
    pt_principal(p, r->sub, r->groups, &pr);
    bg_policy_decide(p, &pr, &res, verb, &d);
    bg_policy_principal_clear(&pr);
    const char *rule = d.rule ? bg_policy_rule_name(d.rule) : NULL;
    const char *would = r->would ? r->would : r->effect;
    int bad = strcmp(bg_effect_name(d.effect), r->effect) != 0 ||
              strcmp(bg_effect_name(d.would), would) != 0 ||
              (rule == NULL) != (r->rule == NULL) || (rule && strcmp(rule, r->rule) != 0) ||
              (d.mode == BG_MODE_AUDIT) != (r->audit != 0) ||
              (r->masks && strcmp(pt_masks(&d, masks, sizeof(masks)), r->masks) != 0);
    if (bad)
        print_error("%s row %zu (%s %s %s): got %s would %s by %s mode %d masks '%s'\n", c->title,
                    i, r->sub, r->resource, r->verb, bg_effect_name(d.effect),
                    bg_effect_name(d.would), rule ? rule : "default", d.mode,
                    pt_masks(&d, masks, sizeof(masks)));
    return bad;
}

static void test_tables(void **state)
{
    int failures = 0, rows = 0;
    for (size_t c = 0; c < sizeof(pt_cases) / sizeof(pt_cases[0]); c++) {
        char err[256];
        bg_policy_t *p = pt_compile(&pt_cases[c].policy, err, sizeof(err));
        if (!p) {
            print_error("%s: compile failed: %s\n", pt_cases[c].title, err);
            failures++;
            continue;
        }
        for (size_t i = 0; pt_cases[c].rows[i].sub; i++, rows++)
            failures += pt_run_row(p, &pt_cases[c], i);
        bg_policy_free(p);
    }
    assert_true(rows > 90);
    assert_int_equal(failures, 0);
}

/* Groups not named by the policy are dropped; ids come back sorted. */
static void test_principal_prepare(void **state)
{
    static const pt_policy_t t = {"deny", "enforce",
                                  {{"r", "group:b group:a", "kafka:topic:t", "read", "allow"},
                                   {"h", "*", "kafka:topic:h", "read", "hold", NULL, "group:sre"}},
                                  {{"m", "kafka:topic:t", "f", "group:c"}}};
    char err[256];
    bg_policy_t *p = pt_compile(&t, err, sizeof(err));
    assert_non_null(p);
    bg_policy_principal_t pr;
    pt_principal(p, "bob", "zz a unknown c a sre b", &pr);
    assert_int_equal(pr.ngroup_ids, 4); /* a b c sre, duplicates and unknowns gone */
    for (size_t i = 1; i < pr.ngroup_ids; i++)
        assert_true(pr.group_ids[i - 1] < pr.group_ids[i]);
    assert_string_equal(pr.sub, "bob");
    assert_int_equal(pr.generation, bg_policy_generation(p));
    bg_policy_principal_clear(&pr);

    /* approvers */
    bg_policy_resource_t res;
    bg_policy_decision_t d;
    const char *why;
    assert_int_equal(bg_policy_parse_resource("kafka:topic:h", &res, &why), 0);
    pt_principal(p, "bob", "", &pr);
    bg_policy_decide(p, &pr, &res, BG_VERB_READ, &d);
    assert_int_equal(d.effect, BG_EFFECT_HOLD);
    assert_int_equal(bg_policy_rule_napprovers(d.rule), 1);
    assert_string_equal(bg_policy_rule_approver(d.rule, 0), "group:sre");
    assert_int_equal(bg_policy_rule_approved_by(d.rule, &pr), 0);
    bg_policy_principal_clear(&pr);
    pt_principal(p, "alice", "sre", &pr);
    assert_int_equal(bg_policy_rule_approved_by(d.rule, &pr), 1);
    bg_policy_principal_clear(&pr);
    bg_policy_free(p);
}

/* Review cases: the rule a decision applies when an audit-mode rule says
 * what it would do; approvers across policy generations; `?` is one whole
 * character; control characters in rule names; a verb that is none. */
static void test_enforced_rule_and_edges(void **state)
{
    static const pt_policy_t t = {
        "allow",
        "enforce",
        {
            {"held", "*", "kafka:topic:t", "delete", "hold", NULL, "group:sre"},
            {"would-deny", "*", "kafka:topic:t", "delete", "deny", "audit"},
            {"one-char", "*", "amqp:queue:tmp.?", "read", "deny"},
        },
    };
    char err[256];
    bg_policy_t *p1 = pt_compile(&t, err, sizeof(err));
    assert_non_null(p1);
    bg_policy_principal_t pr;
    bg_policy_resource_t res;
    bg_policy_decision_t d;
    const char *why;
    pt_principal(p1, "alice", "sre", &pr);
    assert_int_equal(bg_policy_parse_resource("kafka:topic:t", &res, &why), 0);
    bg_policy_decide(p1, &pr, &res, BG_VERB_DELETE, &d);
    assert_int_equal(d.effect, BG_EFFECT_HOLD);
    assert_int_equal(d.would, BG_EFFECT_DENY);
    assert_string_equal(bg_policy_rule_name(d.rule), "would-deny");
    assert_non_null(d.enforced);
    assert_string_equal(bg_policy_rule_name(d.enforced), "held");
    assert_int_equal(bg_policy_rule_approved_by(d.enforced, &pr), 1);
    /* The same approver, prepared against another compile of the policy,
     * does not count: group ids are numbered per compile. */
    static const pt_policy_t t2 = {"deny", "enforce", {{"x", "group:dev", "kafka:topic:x", "read",
                                                       "allow"}}};
    bg_policy_t *p2 = pt_compile(&t2, err, sizeof(err));
    assert_non_null(p2);
    bg_policy_principal_t other;
    pt_principal(p2, "bob", "dev", &other);
    assert_int_equal(bg_policy_rule_approved_by(d.enforced, &other), 0);
    bg_policy_principal_clear(&other);
    /* `?` is one character: an ASCII byte and a stray continuation byte are two. */
    assert_int_equal(bg_policy_parse_resource("amqp:queue:tmp.a", &res, &why), 0);
    bg_policy_decide(p1, &pr, &res, BG_VERB_READ, &d);
    assert_int_equal(d.effect, BG_EFFECT_DENY);
    bg_policy_resource_t stray = {BG_RES_AMQP_QUEUE, NULL, 0, "tmp.a\x80", 6};
    bg_policy_decide(p1, &pr, &stray, BG_VERB_READ, &d);
    assert_int_equal(d.effect, BG_EFFECT_ALLOW); /* the default: the glob does not match */
    bg_policy_resource_t two = {BG_RES_AMQP_QUEUE, NULL, 0, "tmp.\xc3\xa9", 6};
    bg_policy_decide(p1, &pr, &two, BG_VERB_READ, &d);
    assert_int_equal(d.effect, BG_EFFECT_DENY); /* é is one character */
    /* Not a verb: denied, whatever the default (also the first number past them). */
    bg_policy_decide(p1, &pr, &res, (bg_verb_t)99, &d);
    assert_int_equal(d.effect, BG_EFFECT_DENY);
    bg_policy_decide(p1, &pr, &res, BG_VERB__COUNT, &d);
    assert_int_equal(d.effect, BG_EFFECT_DENY);
    bg_policy_principal_clear(&pr);
    bg_policy_free(p1);
    bg_policy_free(p2);
    static const pt_policy_t bad = {"deny", "enforce", {{"two\nlines", "*", "kafka:topic:x", "read",
                                                         "allow"}}};
    assert_null(pt_compile(&bad, err, sizeof(err)));
    assert_non_null(strstr(err, "control character"));
}

/* A principal prepared for another snapshot is denied, not misread. */
static void test_stale_principal(void **state)
{
    static const pt_policy_t t = {"allow", "enforce", {{"r", "*", "kafka:topic:t", "read", "allow"}}};
    char err[256];
    bg_policy_t *p1 = pt_compile(&t, err, sizeof(err));
    bg_policy_t *p2 = pt_compile(&t, err, sizeof(err));
    assert_non_null(p1);
    assert_non_null(p2);
    assert_true(bg_policy_generation(p1) != bg_policy_generation(p2));
    bg_policy_principal_t pr;
    bg_policy_resource_t res;
    bg_policy_decision_t d;
    const char *why;
    pt_principal(p1, "u", "", &pr);
    assert_int_equal(bg_policy_parse_resource("kafka:topic:t", &res, &why), 0);
    bg_policy_decide(p1, &pr, &res, BG_VERB_READ, &d);
    assert_int_equal(d.effect, BG_EFFECT_ALLOW);
    bg_policy_decide(p2, &pr, &res, BG_VERB_READ, &d);
    assert_int_equal(d.effect, BG_EFFECT_DENY);
    assert_null(d.rule);
    /* anonymous: only '*' subjects */
    bg_policy_decide(p2, NULL, &res, BG_VERB_READ, &d);
    assert_int_equal(d.effect, BG_EFFECT_ALLOW);
    assert_string_equal(bg_policy_rule_name(d.rule), "r");
    bg_policy_principal_clear(&pr);
    bg_policy_free(p1);
    bg_policy_free(p2);
    /* anonymous matches no sub: or group: subject (a rule with a sub: is
     * checked in full, not from its index candidate) */
    static const pt_policy_t named = {
        "deny", "enforce", {{"bob", "sub:bob group:a", "kafka:topic:t", "read", "allow"}}};
    bg_policy_t *p3 = pt_compile(&named, err, sizeof(err));
    assert_non_null(p3);
    bg_policy_decide(p3, NULL, &res, BG_VERB_READ, &d);
    assert_int_equal(d.effect, BG_EFFECT_DENY);
    assert_null(d.rule);
    pt_principal(p3, "bob", "", &pr);
    bg_policy_decide(p3, &pr, &res, BG_VERB_READ, &d);
    assert_int_equal(d.effect, BG_EFFECT_ALLOW);
    bg_policy_principal_clear(&pr);
    bg_policy_free(p3);
}

/* `?` is one character by the strict UTF-8 rule (docs/policy.md): a
 * well-formed sequence, or else one byte. An overlong form (E0 80 80) or an
 * encoded surrogate (ED A0 80) is no sequence, so each of its bytes is a
 * character: three for `???`. Each pattern shape lands in another index
 * structure (a glob by its literal head in the prefix trie, by its tail in
 * the reversed trie, or in the loose list), and explain walks them with the
 * generic visitor: every one must agree. */
static void test_question_mark_strict_utf8(void **state)
{
    static const char *const shapes[] = {"a???b", "a???b*", "*a???b", "*a???b*"};
    int failures = 0;
    static const struct {
        const char *mid; /* between "a" and "b" */
        int match;       /* `???` matches it */
    } rows[] = {
        {"\xE0\x80\x80", 1},             /* overlong '\0': three bytes, three characters */
        {"\xED\xA0\x80", 1},             /* a surrogate: likewise */
        {"\xF0\x80\x80\x80", 0},         /* overlong, four bytes: four characters */
        {"xyz", 1},                      /* ASCII */
        {"\xE2\x82\xAC" "xy", 1},        /* euro sign, x, y */
        {"\xE2\x82\xAC\xE2\x82\xAC\xE2\x82\xAC", 1},
        {"\xF0\x9F\x98\x80" "xy", 1},    /* a 4-byte character */
        {"\xED\x9F\xBF" "xy", 1},        /* U+D7FF, the last one below the surrogates */
        {"\xE2\x82\xAC" "x", 0},         /* two characters */
        {"\xE0\x80\x80" "x", 0},         /* four */
        {"\xED\x9F\xBF", 0},             /* one */
    };
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
        char pat[64], err[256], name[64], out[1024];
        snprintf(pat, sizeof pat, "amqp:queue:%s", shapes[k]);
        pt_policy_t t = {"allow", "enforce", {{"q", "*", pat, "read", "deny"}}};
        bg_policy_t *p = pt_compile(&t, err, sizeof err);
        assert_non_null(p);
        for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
            snprintf(name, sizeof name, "amqp:queue:a%sb", rows[i].mid);
            bg_policy_resource_t res;
            bg_policy_decision_t d;
            const char *why;
            assert_int_equal(bg_policy_parse_resource(name, &res, &why), 0);
            bg_policy_decide(p, NULL, &res, BG_VERB_READ, &d);
            bg_policy_explain(p, NULL, &res, BG_VERB_READ, out, sizeof out, 0);
            int denied = d.effect == BG_EFFECT_DENY;
            int explained = strncmp(out, "deny by rule 'q'", 16) == 0;
            if (denied != rows[i].match || explained != rows[i].match) {
                print_error("pattern %s, row %zu: decide %s, explain '%.*s', want %s\n",
                            shapes[k], i, bg_effect_name(d.effect), (int)strcspn(out, "\n"),
                            out, rows[i].match ? "deny" : "allow");
                failures++;
            }
        }
        bg_policy_free(p);
    }
    assert_int_equal(failures, 0);
}

/* More groups than the decision's bitset holds (64 * BG_POLICY_BITSET_WORDS
 * = 1024): the ids past it are found by search, through a rule naming them
 * all (checked in full) and through one naming one (from the candidate). */
#define PT_NGROUPS 1200
static void test_groups_past_the_bitset(void **state)
{
    static char names[PT_NGROUPS][16];
    static const char *subjects[PT_NGROUPS];
    static const char *const res_t[] = {"kafka:topic:t"}, *const res_u[] = {"kafka:topic:u"};
    static const char *const last[] = {"group:g1150"};
    for (int i = 0; i < PT_NGROUPS; i++) {
        snprintf(names[i], sizeof names[i], "group:g%d", i);
        subjects[i] = names[i];
    }
    bg_policy_rule_spec_t rules[] = {
        {.name = "all", .file = "t.yaml", .line = 1, .subjects = subjects, .nsubjects = PT_NGROUPS,
         .resources = res_t, .nresources = 1, .verbs = 1u << BG_VERB_READ,
         .effect = BG_EFFECT_DENY, .mode = BG_MODE_INHERIT},
        {.name = "one", .file = "t.yaml", .line = 2, .subjects = last, .nsubjects = 1,
         .resources = res_u, .nresources = 1, .verbs = 1u << BG_VERB_READ,
         .effect = BG_EFFECT_DENY, .mode = BG_MODE_INHERIT},
    };
    bg_policy_spec_t spec = {BG_EFFECT_ALLOW, BG_MODE_ENFORCE, rules, 2, NULL, 0};
    char err[256];
    bg_policy_t *p = bg_policy_compile(&spec, err, sizeof err);
    assert_non_null(p);
    static const struct {
        const char *groups, *resource, *rule; /* rule NULL: the default allows */
    } rows[] = {
        {"g1199", "kafka:topic:t", "all"}, {"g1100 g3", "kafka:topic:t", "all"},
        {"g0", "kafka:topic:t", "all"},    {"g1150", "kafka:topic:u", "one"},
        {"g1149", "kafka:topic:u", NULL},  {"g1200", "kafka:topic:t", NULL},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        bg_policy_principal_t pr;
        bg_policy_resource_t res;
        bg_policy_decision_t d;
        const char *why;
        assert_int_equal(bg_policy_parse_resource(rows[i].resource, &res, &why), 0);
        pt_principal(p, "u", rows[i].groups, &pr);
        bg_policy_decide(p, &pr, &res, BG_VERB_READ, &d);
        bg_policy_principal_clear(&pr);
        if (rows[i].rule) {
            assert_int_equal(d.effect, BG_EFFECT_DENY);
            assert_non_null(d.rule);
            assert_string_equal(bg_policy_rule_name(d.rule), rows[i].rule);
        } else {
            assert_int_equal(d.effect, BG_EFFECT_ALLOW);
            assert_null(d.rule);
        }
    }
    bg_policy_free(p);
}

/* The longest names: a literal http route of 1024 bytes is indexed with its
 * path (ROUTE '\0' PATH), and a path past 1024 bytes is cut for the walk but
 * never ends at a literal of its first 1024 bytes. */
static void test_http_longest_names(void **state)
{
    static char route[1025], path[1026], pat[1100];
    char err[256];
    bg_policy_decision_t d;
    memset(route, 'r', 1024);
    snprintf(pat, sizeof pat, "http:%s:/x", route);
    pt_policy_t deny_route = {"allow", "enforce", {{"long-route", "*", pat, "read", "deny"}}};
    bg_policy_t *p = pt_compile(&deny_route, err, sizeof err);
    assert_non_null(p);
    bg_policy_resource_t res = {BG_RES_HTTP, route, 1024, "/x", 2};
    bg_policy_decide(p, NULL, &res, BG_VERB_READ, &d);
    assert_int_equal(d.effect, BG_EFFECT_DENY);
    assert_non_null(d.rule);
    res.route_len = 1023;
    bg_policy_decide(p, NULL, &res, BG_VERB_READ, &d);
    assert_int_equal(d.effect, BG_EFFECT_ALLOW);
    bg_policy_free(p);

    path[0] = '/';
    memset(path + 1, 'p', 1023);
    snprintf(pat, sizeof pat, "http:api:%s", path);
    pt_policy_t allow_path = {"deny", "enforce", {{"long-path", "*", pat, "write", "allow"}}};
    p = pt_compile(&allow_path, err, sizeof err);
    assert_non_null(p);
    res = (bg_policy_resource_t){BG_RES_HTTP, "api", 3, path, 1024};
    bg_policy_decide(p, NULL, &res, BG_VERB_WRITE, &d);
    assert_int_equal(d.effect, BG_EFFECT_ALLOW);
    path[1024] = 'p';
    res.name_len = 1025;
    bg_policy_decide(p, NULL, &res, BG_VERB_WRITE, &d);
    assert_int_equal(d.effect, BG_EFFECT_DENY);
    assert_null(d.rule);
    bg_policy_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables),
        cmocka_unit_test(test_principal_prepare),
        cmocka_unit_test(test_stale_principal),
        cmocka_unit_test(test_enforced_rule_and_edges),
        cmocka_unit_test(test_question_mark_strict_utf8),
        cmocka_unit_test(test_groups_past_the_bitset),
        cmocka_unit_test(test_http_longest_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
