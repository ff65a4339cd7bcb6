/* Kafka authorization of the KIP-848 consumer-group APIs:
 * ConsumerGroupHeartbeat (read group, describe every subscribed topic, no
 * broker-resolved subscription pattern) and ConsumerGroupDescribe (describe
 * group, and no assignment that names a topic the principal may not
 * describe). Fixture policy (test_kafka_authz_util.h): orders* all verbs,
 * groups g1 / g-* read + describe, default deny. Every tree is encoded and
 * decoded at its version. */
#include "test_kafka_authz_util.h"

#define HB BG_KAFKA_API_CONSUMER_GROUP_HEARTBEAT
#define CGD BG_KAFKA_API_CONSUMER_GROUP_DESCRIBE
#define G(x) K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS_##x)

static int setup(void **st)
{
    ka_fix_t *f = ka_setup();
    ka_set_policy(f, 0);
    *st = f;
    return 0;
}

static bg_kafka_struct_t *heartbeat(ka_fix_t *f, int16_t ver, const char *group,
                                    const char *const *topics, int ntopics, const char *regex)
{
    bg_kafka_struct_t *req = ka_new(f, HB, 0);
    req->f[K(CONSUMER_GROUP_HEARTBEAT_REQ_GROUP_ID)].s = ka_s(group);
    if (ntopics >= 0) {
        bg_kafka_val_t *t = bg_kafka_array_vals(
            &f->a, req, K(CONSUMER_GROUP_HEARTBEAT_REQ_SUBSCRIBED_TOPIC_NAMES), ntopics);
        assert_non_null(t);
        for (int i = 0; i < ntopics; i++)
            t[i].s = ka_s(topics[i]);
    }
    if (regex)
        req->f[K(CONSUMER_GROUP_HEARTBEAT_REQ_SUBSCRIBED_TOPIC_REGEX)].s = ka_s(regex);
    return ka_rt(f, HB, 0, ver, req);
}

static void test_advertised(void **st)
{
    (void)st;
    int16_t lo, hi;
    assert_int_equal(bg_kafka_authz_supported(HB, &lo, &hi), 1);
    assert_int_equal(lo, 0);
    assert_int_equal(hi, 1);
    /* Not used at all with a broker that lacks v1: its v0 is a 3.x broker's
     * early-access layout. */
    assert_int_equal(bg_kafka_authz_upstream_fits(HB, 0, 0), 0);
    assert_int_equal(bg_kafka_authz_upstream_fits(HB, 0, 1), 1);
    assert_int_equal(bg_kafka_authz_upstream_fits(CGD, 0, 0), 1);
    assert_int_equal(bg_kafka_authz_supported(CGD, &lo, &hi), 1);
    assert_int_equal(lo, 0);
    assert_int_equal(hi, 1);
}

static void test_heartbeat_allowed(void **st)
{
    ka_fix_t *f = *st;
    static const char *const topics[] = {"orders", "orders.eu"};
    for (int16_t ver = 0; ver <= 1; ver++) {
        bg_kafka_req_hdr_t h = ka_hdr(HB, ver);
        bg_kafka_verdict_t v;
        assert_int_equal(
            bg_kafka_authz_request(&f->ctx, &h, heartbeat(f, ver, "g-1", topics, 2, NULL), &f->a,
                                   &v),
            0);
        assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
        assert_int_equal(v.needs_response, 0);
        const bg_kafka_decision_t *g = ka_find_decision(&v, BG_RES_KAFKA_GROUP, "g-1");
        assert_non_null(g);
        assert_int_equal(g->verb, BG_VERB_READ);
        assert_int_equal(g->decision.effect, BG_EFFECT_ALLOW);
        const bg_kafka_decision_t *t = ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "orders.eu");
        assert_non_null(t);
        assert_int_equal(t->verb, BG_VERB_DESCRIBE);
        assert_int_equal(t->decision.effect, BG_EFFECT_ALLOW);
        /* A later heartbeat carries no subscription (null: unchanged). */
        assert_int_equal(
            bg_kafka_authz_request(&f->ctx, &h, heartbeat(f, ver, "g1", NULL, -1, NULL), &f->a,
                                   &v),
            0);
        assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
        assert_int_equal(v.ndecisions, 1);
    }
}

static int16_t heartbeat_error(ka_fix_t *f, int16_t ver, const bg_kafka_verdict_t *v,
                               bg_slice_t *msg)
{
    assert_int_equal(v->action, BG_KAFKA_ACT_RESPOND);
    bg_kafka_struct_t *r = ka_rt(f, HB, 1, ver, v->response);
    *msg = r->f[K(CONSUMER_GROUP_HEARTBEAT_RESP_ERROR_MESSAGE)].s;
    return (int16_t)r->f[K(CONSUMER_GROUP_HEARTBEAT_RESP_ERROR_CODE)].i;
}

static void test_heartbeat_denied(void **st)
{
    ka_fix_t *f = *st;
    static const char *const topics[] = {"orders", "secret"};
    bg_slice_t msg;
    for (int16_t ver = 0; ver <= 1; ver++) {
        bg_kafka_req_hdr_t h = ka_hdr(HB, ver);
        bg_kafka_verdict_t v;
        /* Group first, as Kafka: GROUP_AUTHORIZATION_FAILED, topics not looked at. */
        assert_int_equal(
            bg_kafka_authz_request(&f->ctx, &h, heartbeat(f, ver, "other", topics, 2, NULL),
                                   &f->a, &v),
            0);
        assert_int_equal(heartbeat_error(f, ver, &v, &msg), 30);
        assert_int_equal(v.ndecisions, 1);
        /* One subscribed topic not describable: the whole heartbeat fails. */
        assert_int_equal(
            bg_kafka_authz_request(&f->ctx, &h, heartbeat(f, ver, "g1", topics, 2, NULL), &f->a,
                                   &v),
            0);
        assert_int_equal(heartbeat_error(f, ver, &v, &msg), 29);
        const bg_kafka_decision_t *t = ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "secret");
        assert_non_null(t);
        assert_int_equal(t->decision.effect, BG_EFFECT_DENY);
        assert_int_equal(t->error_code, 29);
        t = ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "orders");
        assert_non_null(t);
        assert_int_equal(t->decision.effect, BG_EFFECT_ALLOW);
    }
}

/* v1: a subscription pattern would be resolved by the broker under busgate's
 * own credential: refused, even when every name the pattern could match is
 * allowed, and recorded with busgate's reason. */
static void test_heartbeat_pattern_refused(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_req_hdr_t h = ka_hdr(HB, 1);
    bg_kafka_verdict_t v;
    bg_slice_t msg;
    bg_kafka_struct_t *req = heartbeat(f, 1, "g1", NULL, -1, "orders.*");
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(heartbeat_error(f, 1, &v, &msg), 29);
    assert_true(msg.len > 0 && memmem(msg.p, (size_t)msg.len, "topic names", 11) != NULL);
    const bg_kafka_decision_t *t = ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "orders.*");
    assert_non_null(t);
    assert_int_equal(t->decision.effect, BG_EFFECT_DENY);
    assert_non_null(t->reason);
    /* A pattern of one character is one (".": every one-letter topic). */
    assert_int_equal(
        bg_kafka_authz_request(&f->ctx, &h, heartbeat(f, 1, "g1", NULL, -1, "."), &f->a, &v), 0);
    assert_int_equal(heartbeat_error(f, 1, &v, &msg), 29);
    /* An empty pattern is no pattern. */
    static const char *const topics[] = {"orders"};
    assert_int_equal(
        bg_kafka_authz_request(&f->ctx, &h, heartbeat(f, 1, "g1", topics, 1, ""), &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
}

/* A ConsumerGroupDescribe response with one group per name; group i's only
 * member subscribes to subscribed[i] and has assignment topic assigned[i]
 * and target topic target[i]. */
static bg_kafka_struct_t *describe_resp(ka_fix_t *f, const char *const *groups,
                                        const char *const *subscribed,
                                        const char *const *assigned, const char *const *target,
                                        int n)
{
    bg_kafka_struct_t *resp = ka_new(f, CGD, 1);
    bg_kafka_struct_t **g =
        bg_kafka_array_new(&f->a, resp, K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS), n);
    assert_non_null(g);
    for (int i = 0; i < n; i++) {
        g[i]->f[G(GROUP_ID)].s = ka_s(groups[i]);
        g[i]->f[G(GROUP_STATE)].s = ka_s("Stable");
        bg_kafka_struct_t **m = bg_kafka_array_new(&f->a, g[i], G(MEMBERS), 1);
        assert_non_null(m);
        m[0]->f[G(MEMBERS_MEMBER_ID)].s = ka_s("m-1");
        bg_kafka_val_t *sub =
            bg_kafka_array_vals(&f->a, m[0], G(MEMBERS_SUBSCRIBED_TOPIC_NAMES), 1);
        assert_non_null(sub);
        sub[0].s = ka_s(subscribed[i]);
        g[i]->f[G(GROUP_EPOCH)].i = 5;
        g[i]->f[G(ASSIGNOR_NAME)].s = ka_s("uniform");
        g[i]->f[G(AUTHORIZED_OPERATIONS)].i = 1 << 8; /* DESCRIBE */
        int as[2] = {G(MEMBERS_ASSIGNMENT), G(MEMBERS_TARGET_ASSIGNMENT)};
        const char *names[2] = {assigned[i], target[i]};
        for (int k = 0; k < 2; k++) {
            bg_kafka_struct_t *a = m[0]->f[as[k]].st;
            assert_non_null(a);
            bg_kafka_struct_t **tp =
                bg_kafka_array_new(&f->a, a, G(MEMBERS_ASSIGNMENT_TOPIC_PARTITIONS), 1);
            assert_non_null(tp);
            tp[0]->f[G(MEMBERS_ASSIGNMENT_TOPIC_PARTITIONS_TOPIC_NAME)].s = ka_s(names[k]);
        }
    }
    return resp;
}

static void test_describe(void **st)
{
    ka_fix_t *f = *st;
    static const char *const groups[] = {"g1", "g-2", "g-3", "g-4"};
    static const char *const subscribed[] = {"orders", "orders", "orders", "secret"};
    static const char *const assigned[] = {"orders", "orders", "secret", "orders"};
    static const char *const target[] = {"orders.eu", "secret", "orders", "orders"};
    for (int16_t ver = 0; ver <= 1; ver++) {
        bg_kafka_req_hdr_t h = ka_hdr(CGD, ver);
        bg_kafka_struct_t *req = ka_new(f, CGD, 0);
        bg_kafka_val_t *ids =
            bg_kafka_array_vals(&f->a, req, K(CONSUMER_GROUP_DESCRIBE_REQ_GROUP_IDS), 5);
        ids[0].s = ka_s("g1");
        ids[1].s = ka_s("other");
        ids[2].s = ka_s("g-2");
        ids[3].s = ka_s("g-3");
        ids[4].s = ka_s("g-4");
        req = ka_rt(f, CGD, 0, ver, req);
        bg_kafka_verdict_t v;
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
        assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
        assert_int_equal(v.needs_response, 1);
        assert_int_equal(v.request->f[K(CONSUMER_GROUP_DESCRIBE_REQ_GROUP_IDS)].a.n, 4);
        const bg_kafka_decision_t *d = ka_find_decision(&v, BG_RES_KAFKA_GROUP, "other");
        assert_non_null(d);
        assert_int_equal(d->decision.effect, BG_EFFECT_DENY);

        bg_kafka_struct_t *up =
            ka_rt(f, CGD, 1, ver, describe_resp(f, groups, subscribed, assigned, target, 4));
        bg_kafka_struct_t *out;
        size_t nn = 0;
        assert_int_equal(
            bg_kafka_authz_response(&f->ctx, &h, &v, up, &f->a, &out, NULL, &nn, NULL, NULL), 0);
        out = ka_rt(f, CGD, 1, ver, out);
        assert_int_equal(out->f[K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS)].a.n, 5);
        static const char *const want_id[] = {"g1", "g-2", "g-3", "g-4", "other"};
        static const int want_err[] = {0, 29, 29, 29, 30};
        static const int want_members[] = {1, 0, 0, 0, 0};
        for (int i = 0; i < 5; i++) {
            bg_kafka_struct_t *g = ka_el(out, K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS), i);
            assert_true(ka_eq(g->f[G(GROUP_ID)].s, want_id[i]));
            assert_int_equal(g->f[G(ERROR_CODE)].i, want_err[i]);
            assert_int_equal(g->f[G(MEMBERS)].a.n,
                             want_members[i]);
            if (want_err[i] == 29) {
                /* A fresh entry: nothing of the hidden group but its id. */
                assert_true(ka_eq(g->f[G(ERROR_MESSAGE)].s, /* KafkaApis' words */
                              "The group has described topic(s) that the client is not "
                              "authorized to describe."));
                assert_int_equal(g->f[G(GROUP_STATE)].s.len, 0);
                assert_int_equal(g->f[G(ASSIGNOR_NAME)].s.len, 0);
                assert_int_not_equal(g->f[G(GROUP_EPOCH)].i, 5);
                assert_int_equal(g->f[G(AUTHORIZED_OPERATIONS)].i, INT32_MIN);
            } else if (want_err[i] == 0) {
                assert_int_equal(g->f[G(AUTHORIZED_OPERATIONS)].i, 1 << 8);
            }
        }
    }
}

/* Every group denied: busgate answers itself; and the generic error
 * response (audit back-pressure, ...) carries an entry per group. */
static void test_describe_all_denied_and_error_response(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_req_hdr_t h = ka_hdr(CGD, 1);
    bg_kafka_struct_t *req = ka_new(f, CGD, 0);
    bg_kafka_val_t *ids =
        bg_kafka_array_vals(&f->a, req, K(CONSUMER_GROUP_DESCRIBE_REQ_GROUP_IDS), 2);
    ids[0].s = ka_s("x");
    ids[1].s = ka_s("y");
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    bg_kafka_struct_t *r = ka_rt(f, CGD, 1, 1, v.response);
    assert_int_equal(r->f[K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS)].a.n, 2);
    assert_int_equal(
        ka_el(r, K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS), 1)->f[G(ERROR_CODE)].i,
        30);
    r = bg_kafka_authz_error_response(&h, req, 7 /* REQUEST_TIMED_OUT */, &f->a);
    assert_non_null(r);
    r = ka_rt(f, CGD, 1, 1, r);
    assert_int_equal(r->f[K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS)].a.n, 2);
    assert_int_equal(
        ka_el(r, K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS), 0)->f[G(ERROR_CODE)].i,
        7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_advertised, setup, ka_down),
        cmocka_unit_test_setup_teardown(test_heartbeat_allowed, setup, ka_down),
        cmocka_unit_test_setup_teardown(test_heartbeat_denied, setup, ka_down),
        cmocka_unit_test_setup_teardown(test_heartbeat_pattern_refused, setup, ka_down),
        cmocka_unit_test_setup_teardown(test_describe, setup, ka_down),
        cmocka_unit_test_setup_teardown(test_describe_all_denied_and_error_response, setup,
                                        ka_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
