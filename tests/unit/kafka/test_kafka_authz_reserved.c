/* Kafka's internal topics (__consumer_offsets, __transaction_state, ...)
 * are reserved like the audit topic: never written, created, deleted or
 * altered by a client, whatever the policy says; reading and describing
 * them follow the policy. A broker appends to them for any principal with
 * write whose client id is "__admin_client", so write on kafka:topic:*
 * would otherwise forge any group's committed offsets. (The ACL and
 * partition-admin entries: test_kafka_authz_admin.c.) */
#include "test_kafka_authz_util.h"

static const char internal_why[] = "reserved Kafka internal topic";

/* alice may do everything on every topic, and describe the cluster. */
static int setup(void **st)
{
    static const char *all[] = {"*"};
    static const char *r_topics[] = {"kafka:topic:*"};
    static const char *r_cluster[] = {"kafka:cluster"};
    bg_policy_rule_spec_t rules[] = {
        {"everything", "t.yaml", 1, all, 1, r_topics, 1, (1u << BG_VERB__COUNT) - 1,
         BG_EFFECT_ALLOW, NULL, 0, BG_MODE_INHERIT},
        {"cluster", "t.yaml", 2, all, 1, r_cluster, 1, 1u << BG_VERB_DESCRIBE, BG_EFFECT_ALLOW,
         NULL, 0, BG_MODE_INHERIT},
    };
    bg_policy_spec_t spec = {BG_EFFECT_DENY, BG_MODE_ENFORCE, rules, 2, NULL, 0};
    ka_fix_t *f = ka_setup();
    ka_install_policy(f, &spec);
    *st = f;
    return 0;
}

static bg_kafka_req_hdr_t admin_client_hdr(int16_t key, int16_t ver)
{
    bg_kafka_req_hdr_t h = ka_hdr(key, ver);
    h.client_id = ka_s("__admin_client"); /* what lets a broker append to them */
    return h;
}

static bg_kafka_struct_t *produce_req(ka_fix_t *f, const char *const *names, int n, int acks)
{
    bg_kafka_struct_t *r = ka_new(f, BG_KAFKA_API_PRODUCE, 0);
    r->f[K(PRODUCE_REQ_ACKS)].i = acks;
    ka_topics(f, r, K(PRODUCE_REQ_TOPIC_DATA), K(PRODUCE_REQ_TOPIC_DATA_NAME), names, n,
              K(PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA),
              K(PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA_INDEX), 2);
    return ka_rt(f, BG_KAFKA_API_PRODUCE, 0, 9, r);
}

/* The decision about topic name: a deny by busgate (no rule) for reason
 * why, with TOPIC_AUTHORIZATION_FAILED. */
static void assert_reserved(const bg_kafka_verdict_t *v, const char *name, bg_verb_t verb,
                            const char *why)
{
    const bg_kafka_decision_t *d = ka_find_decision(v, BG_RES_KAFKA_TOPIC, name);
    if (!d)
        fail_msg("no decision on %s", name);
    assert_int_equal(d->verb, verb);
    assert_int_equal(d->decision.effect, BG_EFFECT_DENY);
    assert_null(d->decision.rule);
    assert_string_equal(d->reason, why);
    assert_int_equal(d->error_code, BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED);
}

/* Produce to __consumer_offsets, though the policy allows write on
 * kafka:topic:*: refused (29 for each partition), audited as busgate's deny. */
static void test_produce_consumer_offsets_refused(void **st)
{
    ka_fix_t *f = *st;
    const char *const names[] = {"__consumer_offsets"};
    bg_kafka_req_hdr_t h = admin_client_hdr(BG_KAFKA_API_PRODUCE, 9);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, produce_req(f, names, 1, 1), &f->a, &v),
                     0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    assert_int_equal(v.ndecisions, 1);
    assert_reserved(&v, "__consumer_offsets", BG_VERB_WRITE, internal_why);
    bg_kafka_struct_t *t = ka_el(ka_rt(f, BG_KAFKA_API_PRODUCE, 1, 9, v.response),
                                 K(PRODUCE_RESP_RESPONSES), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(ka_el(t, K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES), i)
                             ->f[K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES_ERROR_CODE)]
                             .i,
                         29);
    /* acks=0: no response to carry the error, so the connection closes. */
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, produce_req(f, names, 1, 0), &f->a, &v),
                     0);
    assert_int_equal(v.action, BG_KAFKA_ACT_CLOSE);
}

/* Every internal name, next to a topic the policy lets through: the
 * internal ones are split off, the other is forwarded. Names that only look
 * alike are ordinary topics. */
static void test_produce_every_internal_topic_refused(void **st)
{
    ka_fix_t *f = *st;
    const char *const names[] = {"orders",
                                 "__consumer_offsets",
                                 "__transaction_state",
                                 "__share_group_state",
                                 "__remote_log_metadata",
                                 "__cluster_metadata",
                                 "__consumer_offsets2",
                                 "_consumer_offsets",
                                 "__Consumer_offsets",
                                 "__"};
    bg_kafka_req_hdr_t h = admin_client_hdr(BG_KAFKA_API_PRODUCE, 9);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, produce_req(f, names, 10, 1), &f->a, &v),
                     0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    bg_kafka_struct_t *fw = ka_rt(f, BG_KAFKA_API_PRODUCE, 0, 9, v.request);
    assert_int_equal(fw->f[K(PRODUCE_REQ_TOPIC_DATA)].a.n, 5);
    for (int i = 1; i <= 5; i++)
        assert_reserved(&v, names[i], BG_VERB_WRITE, internal_why);
    for (int i = 0; i < 5; i++) {
        const char *ok = i ? names[5 + i] : names[0];
        assert_true(ka_eq(ka_el(fw, K(PRODUCE_REQ_TOPIC_DATA), i)
                              ->f[K(PRODUCE_REQ_TOPIC_DATA_NAME)]
                              .s,
                          ok));
        const bg_kafka_decision_t *d = ka_find_decision(&v, BG_RES_KAFKA_TOPIC, ok);
        assert_non_null(d);
        assert_int_equal(d->decision.effect, BG_EFFECT_ALLOW);
    }
}

/* Deleting records of __transaction_state, adding partitions to it, and
 * the other topic admin requests on internal topics: refused whatever the
 * policy allows, as for the audit topic. */
static void test_topic_admin_on_internal_topics_refused(void **st)
{
    ka_fix_t *f = *st;
    const char *const names[] = {"__transaction_state"};
    bg_kafka_struct_t *dr = ka_new(f, BG_KAFKA_API_DELETE_RECORDS, 0);
    ka_topics(f, dr, K(DELETE_RECORDS_REQ_TOPICS), K(DELETE_RECORDS_REQ_TOPICS_NAME), names, 1,
              K(DELETE_RECORDS_REQ_TOPICS_PARTITIONS),
              K(DELETE_RECORDS_REQ_TOPICS_PARTITIONS_PARTITION_INDEX), 1);
    bg_kafka_struct_t *cp = ka_new(f, BG_KAFKA_API_CREATE_PARTITIONS, 0);
    ka_topics(f, cp, K(CREATE_PARTITIONS_REQ_TOPICS), K(CREATE_PARTITIONS_REQ_TOPICS_NAME), names,
              1, -1, -1, 0);
    bg_kafka_struct_t *ct = ka_new(f, BG_KAFKA_API_CREATE_TOPICS, 0);
    ka_topics(f, ct, K(CREATE_TOPICS_REQ_TOPICS), K(CREATE_TOPICS_REQ_TOPICS_NAME), names, 1, -1,
              -1, 0);
    bg_kafka_struct_t *dt = ka_new(f, BG_KAFKA_API_DELETE_TOPICS, 0);
    ka_topics(f, dt, K(DELETE_TOPICS_REQ_TOPICS), K(DELETE_TOPICS_REQ_TOPICS_NAME), names, 1, -1,
              -1, 0);
    bg_kafka_struct_t *iac = ka_new(f, BG_KAFKA_API_INCREMENTAL_ALTER_CONFIGS, 0);
    bg_kafka_struct_t **res =
        ka_topics(f, iac, K(INCREMENTAL_ALTER_CONFIGS_REQ_RESOURCES),
                  K(INCREMENTAL_ALTER_CONFIGS_REQ_RESOURCES_RESOURCE_NAME), names, 1, -1, -1, 0);
    res[0]->f[K(INCREMENTAL_ALTER_CONFIGS_REQ_RESOURCES_RESOURCE_TYPE)].i = 2; /* topic */
    const struct {
        int16_t api, ver;
        bg_kafka_struct_t *req;
        bg_verb_t verb;
    } reqs[] = {{BG_KAFKA_API_DELETE_RECORDS, 2, dr, BG_VERB_DELETE},
                {BG_KAFKA_API_CREATE_PARTITIONS, 3, cp, BG_VERB_ALTER},
                {BG_KAFKA_API_CREATE_TOPICS, 7, ct, BG_VERB_CREATE},
                {BG_KAFKA_API_DELETE_TOPICS, 6, dt, BG_VERB_DELETE},
                {BG_KAFKA_API_INCREMENTAL_ALTER_CONFIGS, 1, iac, BG_VERB_ALTER}};
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        bg_kafka_req_hdr_t h = admin_client_hdr(reqs[i].api, reqs[i].ver);
        bg_kafka_verdict_t v;
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h,
                                                ka_rt(f, reqs[i].api, 0, reqs[i].ver, reqs[i].req),
                                                &f->a, &v),
                         0);
        assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
        assert_int_equal(v.ndecisions, 1);
        assert_reserved(&v, "__transaction_state", reqs[i].verb, internal_why);
        ka_rt(f, reqs[i].api, 1, reqs[i].ver, v.response);
    }
}

/* Creating a twin of a reserved topic (the same name once '.' and '_' are
 * one, as Kafka compares them) is refused: Kafka would then never create
 * the reserved one (the lazily created __transaction_state, an audit topic
 * not yet made). Topics that merely look alike, and writing to a twin,
 * follow the policy. */
static void test_reserved_twins_not_created(void **st)
{
    ka_fix_t *f = *st;
    const char *audit_topic = f->ctx.audit_topic;
    f->ctx.audit_topic = "busgate.audit";
    const char *const names[] = {"__transaction.state", "busgate_audit", "__share.group_state",
                                 "busgate_audit2", "__transaction-state"};
    bg_kafka_struct_t *ct = ka_new(f, BG_KAFKA_API_CREATE_TOPICS, 0);
    ka_topics(f, ct, K(CREATE_TOPICS_REQ_TOPICS), K(CREATE_TOPICS_REQ_TOPICS_NAME), names, 5, -1,
              -1, 0);
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_CREATE_TOPICS, 7);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h,
                                            ka_rt(f, BG_KAFKA_API_CREATE_TOPICS, 0, 7, ct), &f->a,
                                            &v),
                     0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    assert_reserved(&v, "__transaction.state", BG_VERB_CREATE, internal_why);
    assert_reserved(&v, "busgate_audit", BG_VERB_CREATE, "reserved audit topic");
    assert_reserved(&v, "__share.group_state", BG_VERB_CREATE, internal_why);
    bg_kafka_struct_t *fwd = v.request;
    assert_int_equal(fwd->f[K(CREATE_TOPICS_REQ_TOPICS)].a.n, 2);
    assert_true(ka_eq(ka_el(fwd, K(CREATE_TOPICS_REQ_TOPICS), 0)->f[K(CREATE_TOPICS_REQ_TOPICS_NAME)].s,
                      "busgate_audit2"));
    assert_true(ka_eq(ka_el(fwd, K(CREATE_TOPICS_REQ_TOPICS), 1)->f[K(CREATE_TOPICS_REQ_TOPICS_NAME)].s,
                      "__transaction-state"));
    bg_kafka_arena_reset(&f->a);
    /* Writing to an existing twin is the policy's to decide. */
    const char *const twin[] = {"busgate_audit"};
    h = ka_hdr(BG_KAFKA_API_PRODUCE, 9);
    bg_kafka_struct_t *pr = ka_new(f, BG_KAFKA_API_PRODUCE, 0);
    pr->f[K(PRODUCE_REQ_ACKS)].i = 1;
    ka_topics(f, pr, K(PRODUCE_REQ_TOPIC_DATA), K(PRODUCE_REQ_TOPIC_DATA_NAME), twin, 1,
              K(PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA),
              K(PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA_INDEX), 1);
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, ka_rt(f, BG_KAFKA_API_PRODUCE, 0, 9, pr),
                                            &f->a, &v),
                     0);
    const bg_kafka_decision_t *d = ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "busgate_audit");
    assert_non_null(d);
    assert_int_equal(d->decision.effect, BG_EFFECT_ALLOW);
    f->ctx.audit_topic = audit_topic;
}

/* Metadata, ListOffsets, Fetch and DescribeConfigs of __consumer_offsets
 * (what monitoring tools ask) are still decided by the policy: allowed by
 * its rule here, and denied by it when no rule allows them. */
static void test_internal_topics_read_describe_by_policy(void **st)
{
    ka_fix_t *f = *st;
    const char *const names[] = {"__consumer_offsets"};
    bg_kafka_struct_t *md = ka_new(f, BG_KAFKA_API_METADATA, 0);
    ka_topics(f, md, K(METADATA_REQ_TOPICS), K(METADATA_REQ_TOPICS_NAME), names, 1, -1, -1, 0);
    md->f[K(METADATA_REQ_ALLOW_AUTO_TOPIC_CREATION)].i = 0;
    bg_kafka_struct_t *lo = ka_new(f, BG_KAFKA_API_LIST_OFFSETS, 0);
    lo->f[K(LIST_OFFSETS_REQ_REPLICA_ID)].i = -1;
    ka_topics(f, lo, K(LIST_OFFSETS_REQ_TOPICS), K(LIST_OFFSETS_REQ_TOPICS_NAME), names, 1,
              K(LIST_OFFSETS_REQ_TOPICS_PARTITIONS),
              K(LIST_OFFSETS_REQ_TOPICS_PARTITIONS_PARTITION_INDEX), 1);
    bg_kafka_struct_t *fe = ka_new(f, BG_KAFKA_API_FETCH, 0);
    fe->f[K(FETCH_REQ_REPLICA_ID)].i = -1;
    ka_topics(f, fe, K(FETCH_REQ_TOPICS), K(FETCH_REQ_TOPICS_TOPIC), names, 1,
              K(FETCH_REQ_TOPICS_PARTITIONS), K(FETCH_REQ_TOPICS_PARTITIONS_PARTITION), 1);
    bg_kafka_struct_t *dc = ka_new(f, BG_KAFKA_API_DESCRIBE_CONFIGS, 0);
    bg_kafka_struct_t **res =
        ka_topics(f, dc, K(DESCRIBE_CONFIGS_REQ_RESOURCES),
                  K(DESCRIBE_CONFIGS_REQ_RESOURCES_RESOURCE_NAME), names, 1, -1, -1, 0);
    res[0]->f[K(DESCRIBE_CONFIGS_REQ_RESOURCES_RESOURCE_TYPE)].i = 2; /* topic */
    const struct {
        int16_t api, ver;
        bg_kafka_struct_t *req;
        bg_verb_t verb;
    } reqs[] = {{BG_KAFKA_API_METADATA, 12, md, BG_VERB_DESCRIBE},
                {BG_KAFKA_API_LIST_OFFSETS, 10, lo, BG_VERB_DESCRIBE},
                {BG_KAFKA_API_FETCH, 12, fe, BG_VERB_READ},
                {BG_KAFKA_API_DESCRIBE_CONFIGS, 4, dc, BG_VERB_DESCRIBE}};
    for (int pass = 0; pass < 2; pass++) {
        if (pass) /* no rule on topics: the policy's default (deny) decides */
            ka_set_policy(f, 1u << BG_VERB_DESCRIBE);
        for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
            bg_kafka_req_hdr_t h = ka_hdr(reqs[i].api, reqs[i].ver);
            bg_kafka_verdict_t v;
            assert_int_equal(
                bg_kafka_authz_request(&f->ctx, &h,
                                       ka_rt(f, reqs[i].api, 0, reqs[i].ver, reqs[i].req), &f->a,
                                       &v),
                0);
            const bg_kafka_decision_t *d =
                ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "__consumer_offsets");
            assert_non_null(d);
            assert_int_equal(d->verb, reqs[i].verb);
            assert_null(d->reason);
            if (!pass) {
                assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
                assert_int_equal(d->decision.effect, BG_EFFECT_ALLOW);
                assert_string_equal(bg_policy_rule_name(d->decision.rule), "everything");
            } else {
                assert_int_equal(d->decision.effect, BG_EFFECT_DENY);
            }
        }
    }
}

/* A Metadata request that lets the broker auto-create what it names goes
 * upstream with auto-creation off when it names an internal topic: creating
 * one is refused like any other create. */
static void test_metadata_does_not_auto_create_internal_topics(void **st)
{
    ka_fix_t *f = *st;
    const char *const names[] = {"__transaction_state"};
    bg_kafka_struct_t *md = ka_new(f, BG_KAFKA_API_METADATA, 0);
    ka_topics(f, md, K(METADATA_REQ_TOPICS), K(METADATA_REQ_TOPICS_NAME), names, 1, -1, -1, 0);
    md->f[K(METADATA_REQ_ALLOW_AUTO_TOPIC_CREATION)].i = 1;
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_METADATA, 12);
    bg_kafka_verdict_t v;
    assert_int_equal(
        bg_kafka_authz_request(&f->ctx, &h, ka_rt(f, BG_KAFKA_API_METADATA, 0, 12, md), &f->a, &v),
        0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    assert_int_equal(v.request->f[K(METADATA_REQ_ALLOW_AUTO_TOPIC_CREATION)].i, 0);
    assert_int_equal(v.request->f[K(METADATA_REQ_TOPICS)].a.n, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_produce_consumer_offsets_refused, setup, ka_down),
        cmocka_unit_test_setup_teardown(test_produce_every_internal_topic_refused, setup,
                                        ka_down),
        cmocka_unit_test_setup_teardown(test_topic_admin_on_internal_topics_refused, setup,
                                        ka_down),
        cmocka_unit_test_setup_teardown(test_reserved_twins_not_created, setup, ka_down),
        cmocka_unit_test_setup_teardown(test_internal_topics_read_describe_by_policy, setup,
                                        ka_down),
        cmocka_unit_test_setup_teardown(test_metadata_does_not_auto_create_internal_topics, setup,
                                        ka_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
