/* Kafka authorization: InitProducerId without a transactional id (an
 * idempotent producer) needs write on the cluster or on some topic
 * (KIP-679), else CLUSTER_AUTHORIZATION_FAILED; the allow is recorded on
 * the resource that showed it. Also the policy question behind it,
 * bg_policy_allowed_names. */
#include "test_kafka_authz_util.h"

/* Installs: rule i of the given (resource pattern, verbs, effect) triples,
 * all for subject `subject`, default `def`. */
typedef struct {
    const char *res;
    unsigned verbs;
    bg_effect_t effect;
    const char *subject;
} rule_t;

static void install(ka_fix_t *f, const rule_t *r, size_t n, bg_effect_t def, bg_mode_t mode)
{
    static const char *res[8][1], *subj[8][1], *appr[] = {"group:sre"};
    bg_policy_rule_spec_t rules[8];
    static char names[8][16];
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++) {
        res[i][0] = r[i].res;
        subj[i][0] = r[i].subject ? r[i].subject : "*";
        snprintf(names[i], sizeof names[i], "r%d", (int)i);
        rules[i] = (bg_policy_rule_spec_t){names[i], "t.yaml", (int)i + 1, subj[i], 1, res[i], 1,
                                           r[i].verbs, r[i].effect,
                                           r[i].effect == BG_EFFECT_HOLD ? appr : NULL,
                                           r[i].effect == BG_EFFECT_HOLD, BG_MODE_INHERIT};
    }
    bg_policy_spec_t spec = {def, mode, rules, n, NULL, 0};
    ka_install_policy(f, &spec);
}

/* Sends InitProducerId v(ver) with transactional id txn (NULL: null). */
static void init_pid(ka_fix_t *f, int16_t ver, const char *txn, bg_kafka_verdict_t *v)
{
    bg_kafka_struct_t *r = ka_new(f, BG_KAFKA_API_INIT_PRODUCER_ID, 0);
    r->f[K(INIT_PRODUCER_ID_REQ_TRANSACTIONAL_ID)].s = txn ? ka_s(txn) : bg_kafka_null_slice();
    r->f[K(INIT_PRODUCER_ID_REQ_TRANSACTION_TIMEOUT_MS)].i = 60000;
    if (ver >= 3) {
        r->f[K(INIT_PRODUCER_ID_REQ_PRODUCER_ID)].i = -1;
        r->f[K(INIT_PRODUCER_ID_REQ_PRODUCER_EPOCH)].i = -1;
    }
    r = ka_rt(f, BG_KAFKA_API_INIT_PRODUCER_ID, 0, ver, r);
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_INIT_PRODUCER_ID, ver);
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, r, &f->a, v), 0);
}

static void assert_refused(ka_fix_t *f, const bg_kafka_verdict_t *v, int16_t ver)
{
    assert_int_equal(v->action, BG_KAFKA_ACT_RESPOND);
    bg_kafka_struct_t *resp = ka_rt(f, BG_KAFKA_API_INIT_PRODUCER_ID, 1, ver, v->response);
    assert_int_equal(resp->f[K(INIT_PRODUCER_ID_RESP_ERROR_CODE)].i,
                     BG_KAFKA_E_CLUSTER_AUTHORIZATION_FAILED);
    assert_int_equal(resp->f[K(INIT_PRODUCER_ID_RESP_PRODUCER_ID)].i, -1);
    assert_int_equal(resp->f[K(INIT_PRODUCER_ID_RESP_PRODUCER_EPOCH)].i, -1); /* as Kafka */
    const bg_kafka_decision_t *d = ka_find_decision(v, BG_RES_KAFKA_CLUSTER, "");
    assert_non_null(d);
    assert_int_equal(d->verb, BG_VERB_WRITE);
    assert_int_equal(d->decision.effect, BG_EFFECT_DENY);
    assert_int_equal(d->error_code, BG_KAFKA_E_CLUSTER_AUTHORIZATION_FAILED);
    assert_non_null(d->reason);
}

/* v6 (KIP-939 two-phase commit) is not offered: Kafka asks TWO_PHASE_COMMIT
 * on the transactional id for it, which the policy cannot express, and a
 * prepared transaction never times out. */
static void test_two_phase_commit_not_offered(void **st)
{
    (void)st;
    int16_t min = -1, max = -1;
    assert_int_equal(bg_kafka_authz_supported(BG_KAFKA_API_INIT_PRODUCER_ID, &min, &max), 1);
    assert_int_equal(min, 0);
    assert_int_equal(max, 5);
}

/* The fixture allows every verb on orders* to everyone. */
static void test_some_topic_writable(void **st)
{
    ka_fix_t *f = *st;
    for (int16_t ver = 0; ver <= 5; ver++) {
        bg_kafka_verdict_t v;
        init_pid(f, ver, NULL, &v);
        assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
        const bg_kafka_decision_t *d = ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "orders");
        assert_non_null(d);
        assert_int_equal(d->verb, BG_VERB_WRITE);
        assert_int_equal(d->decision.effect, BG_EFFECT_ALLOW);
        assert_string_equal(bg_policy_rule_name(d->decision.rule), "allow-orders");
    }
}

static void test_no_topic_writable(void **st)
{
    ka_fix_t *f = *st;
    rule_t r[] = {{"kafka:topic:public", 1u << BG_VERB_READ, BG_EFFECT_ALLOW, NULL},
                  {"kafka:topic:mine", 1u << BG_VERB_WRITE, BG_EFFECT_ALLOW, "sub:bob"}};
    install(f, r, 2, BG_EFFECT_DENY, BG_MODE_ENFORCE);
    for (int16_t ver = 0; ver <= 5; ver++) {
        bg_kafka_verdict_t v;
        init_pid(f, ver, NULL, &v);
        assert_refused(f, &v, ver);
    }
}

/* A deny that covers what the allow names, the reserved audit topic and a
 * hold (no approvals in this build) show nothing; a later allow does. */
static void test_denied_samples_skipped(void **st)
{
    ka_fix_t *f = *st;
    rule_t r[] = {{"kafka:topic:sales.*", 1u << BG_VERB_WRITE, BG_EFFECT_ALLOW, NULL},
                  {"kafka:topic:sales.*", 1u << BG_VERB_WRITE, BG_EFFECT_DENY, NULL},
                  {"kafka:topic:audit.log", 1u << BG_VERB_WRITE, BG_EFFECT_ALLOW, NULL},
                  {"kafka:topic:held", 1u << BG_VERB_WRITE, BG_EFFECT_HOLD, NULL},
                  {"kafka:topic:held", 1u << BG_VERB_WRITE, BG_EFFECT_ALLOW, NULL}};
    install(f, r, 5, BG_EFFECT_DENY, BG_MODE_ENFORCE);
    bg_kafka_verdict_t v;
    init_pid(f, 4, NULL, &v);
    assert_refused(f, &v, 4);

    rule_t r2[] = {r[0], r[1], r[2], {"kafka:topic:team?.*.out", 1u << BG_VERB_WRITE,
                                      BG_EFFECT_ALLOW, NULL}};
    install(f, r2, 4, BG_EFFECT_DENY, BG_MODE_ENFORCE);
    init_pid(f, 4, NULL, &v);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    const bg_kafka_decision_t *d = ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "team_..out");
    assert_non_null(d);
    assert_string_equal(bg_policy_rule_name(d->decision.rule), "r3");
}

/* Write on the cluster (Kafka's IDEMPOTENT_WRITE) is enough on its own. */
static void test_cluster_write(void **st)
{
    ka_fix_t *f = *st;
    rule_t r[] = {{"kafka:cluster", 1u << BG_VERB_WRITE, BG_EFFECT_ALLOW, NULL}};
    install(f, r, 1, BG_EFFECT_DENY, BG_MODE_ENFORCE);
    bg_kafka_verdict_t v;
    init_pid(f, 5, NULL, &v);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    const bg_kafka_decision_t *d = ka_find_decision(&v, BG_RES_KAFKA_CLUSTER, "");
    assert_non_null(d);
    assert_int_equal(d->decision.effect, BG_EFFECT_ALLOW);
    assert_null(ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "*"));
}

/* Default allow: the cluster is writable by default, as Kafka's
 * allow.everyone.if.no.acl.found; with cluster write denied, a topic name
 * no rule wrote is, unless a deny covers every name. A policy-wide audit
 * lets it through and records what enforcement would have done. */
static void test_default_and_audit(void **st)
{
    ka_fix_t *f = *st;
    rule_t none[] = {{"kafka:topic:x", 1u << BG_VERB_READ, BG_EFFECT_ALLOW, NULL}};
    install(f, none, 1, BG_EFFECT_ALLOW, BG_MODE_ENFORCE);
    bg_kafka_verdict_t v;
    init_pid(f, 5, NULL, &v);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    assert_non_null(ka_find_decision(&v, BG_RES_KAFKA_CLUSTER, ""));

    rule_t no_cluster[] = {{"kafka:cluster", 1u << BG_VERB_WRITE, BG_EFFECT_DENY, NULL}};
    install(f, no_cluster, 1, BG_EFFECT_ALLOW, BG_MODE_ENFORCE);
    init_pid(f, 5, NULL, &v);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    const bg_kafka_decision_t *d = ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "*");
    assert_non_null(d);
    assert_null(d->decision.rule);
    assert_int_equal(d->decision.effect, BG_EFFECT_ALLOW);

    rule_t all_denied[] = {no_cluster[0],
                           {"kafka:topic:*", 1u << BG_VERB_WRITE, BG_EFFECT_DENY, NULL}};
    install(f, all_denied, 2, BG_EFFECT_ALLOW, BG_MODE_ENFORCE);
    init_pid(f, 5, NULL, &v);
    assert_refused(f, &v, 5);

    install(f, all_denied, 2, BG_EFFECT_DENY, BG_MODE_AUDIT);
    init_pid(f, 5, NULL, &v);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    d = ka_find_decision(&v, BG_RES_KAFKA_CLUSTER, "");
    assert_non_null(d);
    assert_int_equal(d->decision.mode, BG_MODE_AUDIT);
    assert_int_equal(d->decision.would, BG_EFFECT_DENY);
}

/* A transactional id is decided as before: write on it, nothing else. A
 * denied one is TRANSACTIONAL_ID_AUTHORIZATION_FAILED at every version, with
 * no producer id, as KafkaApis answers it. */
static void test_transactional_unchanged(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_verdict_t v;
    init_pid(f, 5, "tx1", &v);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    assert_non_null(ka_find_decision(&v, BG_RES_KAFKA_TXN_ID, "tx1"));
    assert_null(ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "orders"));
    for (int16_t ver = 0; ver <= 5; ver++) {
        init_pid(f, ver, "tx2", &v);
        assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
        bg_kafka_struct_t *resp = ka_rt(f, BG_KAFKA_API_INIT_PRODUCER_ID, 1, ver, v.response);
        assert_int_equal(resp->f[K(INIT_PRODUCER_ID_RESP_ERROR_CODE)].i,
                         BG_KAFKA_E_TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
        assert_int_equal(resp->f[K(INIT_PRODUCER_ID_RESP_PRODUCER_ID)].i, -1);
        const bg_kafka_decision_t *d = ka_find_decision(&v, BG_RES_KAFKA_TXN_ID, "tx2");
        assert_non_null(d);
        assert_int_equal(d->decision.effect, BG_EFFECT_DENY);
        assert_int_equal(d->error_code, BG_KAFKA_E_TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
        assert_null(ka_find_decision(&v, BG_RES_KAFKA_CLUSTER, ""));
    }
}

/* ---- bg_policy_allowed_names ---- */

typedef struct {
    char seen[8][64];
    int n, stop_at;
} names_t;

static int collect(void *ctx, const char *name, size_t len)
{
    names_t *c = ctx;
    assert_true(c->n < 8 && len < 64);
    memcpy(c->seen[c->n], name, len);
    c->seen[c->n][len] = '\0';
    return ++c->n == c->stop_at ? 7 : 0;
}

static void test_allowed_names(void **st)
{
    ka_fix_t *f = *st;
    rule_t r[] = {{"kafka:topic:lit", 1u << BG_VERB_WRITE, BG_EFFECT_ALLOW, NULL},
                  {"kafka:topic:pre.*", 1u << BG_VERB_WRITE | 1u << BG_VERB_READ, BG_EFFECT_ALLOW,
                   NULL},
                  {"kafka:topic:a*b?c", 1u << BG_VERB_WRITE, BG_EFFECT_ALLOW, NULL},
                  {"kafka:topic:other", 1u << BG_VERB_WRITE, BG_EFFECT_ALLOW, "sub:bob"},
                  {"kafka:topic:deny", 1u << BG_VERB_WRITE, BG_EFFECT_DENY, NULL},
                  {"kafka:topic:readonly", 1u << BG_VERB_READ, BG_EFFECT_ALLOW, NULL},
                  {"kafka:group:g", 1u << BG_VERB_WRITE, BG_EFFECT_ALLOW, NULL}};
    install(f, r, 7, BG_EFFECT_DENY, BG_MODE_ENFORCE);
    rule_t all[] = {{"kafka:topic:*", 1u << BG_VERB_WRITE, BG_EFFECT_ALLOW, NULL}};
    names_t c = {.stop_at = -1};
    assert_int_equal(bg_policy_allowed_names(f->pol, &f->pr, BG_RES_KAFKA_TOPIC, BG_VERB_WRITE,
                                             collect, &c),
                     0);
    assert_int_equal(c.n, 3);
    assert_string_equal(c.seen[0], "lit");
    assert_string_equal(c.seen[1], "pre.");
    assert_string_equal(c.seen[2], "ab_c");

    c = (names_t){.stop_at = 2};
    assert_int_equal(bg_policy_allowed_names(f->pol, &f->pr, BG_RES_KAFKA_TOPIC, BG_VERB_WRITE,
                                             collect, &c),
                     7);
    assert_int_equal(c.n, 2);

    /* A pattern matching every name offers "*", not an empty name. */
    install(f, all, 1, BG_EFFECT_DENY, BG_MODE_ENFORCE);
    c = (names_t){.stop_at = -1};
    bg_policy_allowed_names(f->pol, &f->pr, BG_RES_KAFKA_TOPIC, BG_VERB_WRITE, collect, &c);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.seen[0], "*");

    /* Default allow adds "*"; HTTP and a stale principal get nothing. */
    install(f, r, 1, BG_EFFECT_ALLOW, BG_MODE_ENFORCE);
    c = (names_t){.stop_at = -1};
    bg_policy_allowed_names(f->pol, &f->pr, BG_RES_KAFKA_TOPIC, BG_VERB_WRITE, collect, &c);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.seen[1], "*");
    /* Under a policy-wide audit every name is let through: "*" too. */
    install(f, r, 1, BG_EFFECT_DENY, BG_MODE_AUDIT);
    c = (names_t){.stop_at = -1};
    bg_policy_allowed_names(f->pol, &f->pr, BG_RES_KAFKA_TOPIC, BG_VERB_WRITE, collect, &c);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.seen[0], "lit");
    assert_string_equal(c.seen[1], "*");
    c = (names_t){.stop_at = -1};
    bg_policy_allowed_names(f->pol, &f->pr, BG_RES_HTTP, BG_VERB_WRITE, collect, &c);
    assert_int_equal(c.n, 0);
    bg_policy_principal_t stale = f->pr;
    stale.generation++;
    bg_policy_allowed_names(f->pol, &stale, BG_RES_KAFKA_TOPIC, BG_VERB_WRITE, collect, &c);
    assert_int_equal(c.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_two_phase_commit_not_offered, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_some_topic_writable, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_no_topic_writable, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_denied_samples_skipped, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_cluster_write, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_default_and_audit, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_transactional_unchanged, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_allowed_names, ka_up, ka_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
