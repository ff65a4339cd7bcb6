/* Kafka authorization: authorized-operation bit fields (KIP-430) in
 * responses become the broker's bits that busgate's policy also allows the
 * principal. Fixture policy (test_kafka_authz_util.h): orders* all verbs,
 * public read + describe, groups g1 / g-* read + describe + delete, cluster
 * describe; default deny. */
#include "test_kafka_authz_util.h"

/* AclOperation codes. */
enum {
    OP_READ = 3,
    OP_WRITE,
    OP_CREATE,
    OP_DELETE,
    OP_ALTER,
    OP_DESCRIBE,
    OP_CLUSTER_ACTION,
    OP_DESCRIBE_CONFIGS,
    OP_ALTER_CONFIGS,
    OP_IDEMPOTENT_WRITE,
};
#define B(op) (1 << (op))
#define TOPIC_OPS                                                                                \
    (B(OP_READ) | B(OP_WRITE) | B(OP_CREATE) | B(OP_DELETE) | B(OP_ALTER) | B(OP_DESCRIBE) |     \
     B(OP_DESCRIBE_CONFIGS) | B(OP_ALTER_CONFIGS))
#define GROUP_OPS                                                                                \
    (B(OP_READ) | B(OP_DESCRIBE) | B(OP_DELETE) | B(OP_DESCRIBE_CONFIGS) | B(OP_ALTER_CONFIGS))
#define CLUSTER_OPS                                                                              \
    (B(OP_CREATE) | B(OP_CLUSTER_ACTION) | B(OP_DESCRIBE_CONFIGS) | B(OP_ALTER_CONFIGS) |        \
     B(OP_IDEMPOTENT_WRITE) | B(OP_ALTER) | B(OP_DESCRIBE))
#define OMITTED INT32_MIN

/* Forwards req (key, ver) and runs the upstream response resp through
 * busgate; returns what the client gets, round-tripped. */
static bg_kafka_struct_t *through(ka_fix_t *f, int16_t key, int16_t ver, bg_kafka_struct_t *req,
                                  bg_kafka_struct_t *resp)
{
    bg_kafka_req_hdr_t h = ka_hdr(key, ver);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, ka_rt(f, key, 0, ver, req), &f->a, &v),
                     0);
    assert_true(v.action == BG_KAFKA_ACT_FORWARD || v.action == BG_KAFKA_ACT_FORWARD_REWRITTEN);
    assert_int_equal(v.needs_response, 1);
    bg_kafka_struct_t *out;
    size_t nn = 0;
    assert_int_equal(bg_kafka_authz_response(&f->ctx, &h, &v, ka_rt(f, key, 1, ver, resp), &f->a,
                                             &out, NULL, &nn, NULL, NULL),
                     0);
    return ka_rt(f, key, 1, ver, out);
}

static void test_metadata(void **st)
{
    ka_fix_t *f = *st;
    const char *const names[] = {"orders", "public"};
    for (int16_t ver = 8; ver <= 13; ver += 2) {
        bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_METADATA, 0);
        ka_topics(f, req, K(METADATA_REQ_TOPICS), K(METADATA_REQ_TOPICS_NAME), names, 2, -1, -1,
                  0);
        req->f[K(METADATA_REQ_INCLUDE_TOPIC_AUTHORIZED_OPERATIONS)].i = 1;
        bg_kafka_struct_t *resp = ka_new(f, BG_KAFKA_API_METADATA, 1);
        bg_kafka_struct_t **t = ka_topics(f, resp, K(METADATA_RESP_TOPICS),
                                          K(METADATA_RESP_TOPICS_NAME), names, 2, -1, -1, 0);
        t[0]->f[K(METADATA_RESP_TOPICS_TOPIC_AUTHORIZED_OPERATIONS)].i = TOPIC_OPS;
        /* The broker's bits bound the result: no READ from it, none out. */
        t[1]->f[K(METADATA_RESP_TOPICS_TOPIC_AUTHORIZED_OPERATIONS)].i = TOPIC_OPS & ~B(OP_READ);
        if (ver <= 10)
            resp->f[K(METADATA_RESP_CLUSTER_AUTHORIZED_OPERATIONS)].i = CLUSTER_OPS;
        bg_kafka_struct_t *out = through(f, BG_KAFKA_API_METADATA, ver, req, resp);
        bg_kafka_struct_t *o = ka_el(out, K(METADATA_RESP_TOPICS), 0);
        bg_kafka_struct_t *p = ka_el(out, K(METADATA_RESP_TOPICS), 1);
        assert_int_equal(o->f[K(METADATA_RESP_TOPICS_TOPIC_AUTHORIZED_OPERATIONS)].i, TOPIC_OPS);
        assert_int_equal(p->f[K(METADATA_RESP_TOPICS_TOPIC_AUTHORIZED_OPERATIONS)].i,
                         B(OP_DESCRIBE) | B(OP_DESCRIBE_CONFIGS));
        if (ver <= 10)
            assert_int_equal(out->f[K(METADATA_RESP_CLUSTER_AUTHORIZED_OPERATIONS)].i,
                             B(OP_DESCRIBE) | B(OP_DESCRIBE_CONFIGS));
    }
}

/* All topics: an entry the principal may not describe is dropped by the
 * listing filter; with explicit names it becomes an authorization error
 * and carries no operations ("omitted"), whatever else the policy allows. */
static void test_undescribable_topic(void **st)
{
    ka_fix_t *f = *st;
    const char *const names[] = {"held", "orders"};
    bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_METADATA, 0);
    ka_topics(f, req, K(METADATA_REQ_TOPICS), K(METADATA_REQ_TOPICS_NAME), names, 2, -1, -1, 0);
    req->f[K(METADATA_REQ_INCLUDE_TOPIC_AUTHORIZED_OPERATIONS)].i = 1;
    bg_kafka_struct_t *resp = ka_new(f, BG_KAFKA_API_METADATA, 1);
    bg_kafka_struct_t **t = ka_topics(f, resp, K(METADATA_RESP_TOPICS),
                                      K(METADATA_RESP_TOPICS_NAME), names + 1, 1, -1, -1, 0);
    t[0]->f[K(METADATA_RESP_TOPICS_TOPIC_AUTHORIZED_OPERATIONS)].i = TOPIC_OPS;
    bg_kafka_struct_t *out = through(f, BG_KAFKA_API_METADATA, 12, req, resp);
    assert_int_equal(out->f[K(METADATA_RESP_TOPICS)].a.n, 2);
    for (int i = 0; i < 2; i++) {
        bg_kafka_struct_t *e = ka_el(out, K(METADATA_RESP_TOPICS), i);
        int held = ka_eq(e->f[K(METADATA_RESP_TOPICS_NAME)].s, "held");
        assert_int_equal(e->f[K(METADATA_RESP_TOPICS_ERROR_CODE)].i, held ? 29 : 0);
        assert_int_equal(e->f[K(METADATA_RESP_TOPICS_TOPIC_AUTHORIZED_OPERATIONS)].i,
                         held ? OMITTED : TOPIC_OPS);
    }
}

static void test_describe_topic_partitions(void **st)
{
    ka_fix_t *f = *st;
    const char *const names[] = {"public"};
    bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_DESCRIBE_TOPIC_PARTITIONS, 0);
    ka_topics(f, req, K(DESCRIBE_TOPIC_PARTITIONS_REQ_TOPICS),
              K(DESCRIBE_TOPIC_PARTITIONS_REQ_TOPICS_NAME), names, 1, -1, -1, 0);
    bg_kafka_struct_t *resp = ka_new(f, BG_KAFKA_API_DESCRIBE_TOPIC_PARTITIONS, 1);
    bg_kafka_struct_t **t =
        ka_topics(f, resp, K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS),
                  K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_NAME), names, 1, -1, -1, 0);
    t[0]->f[K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_TOPIC_AUTHORIZED_OPERATIONS)].i = TOPIC_OPS;
    bg_kafka_struct_t *out = through(f, BG_KAFKA_API_DESCRIBE_TOPIC_PARTITIONS, 0, req, resp);
    assert_int_equal(ka_el(out, K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS), 0)
                         ->f[K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_TOPIC_AUTHORIZED_OPERATIONS)]
                         .i,
                     B(OP_READ) | B(OP_DESCRIBE) | B(OP_DESCRIBE_CONFIGS));
}

/* A lookup by a topic id busgate has not seen goes to the broker; the
 * response names the topic, and the filter turns an entry the principal may
 * not describe into an authorization error: without the broker's
 * operations. */
static void test_lookup_by_id_undescribable(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_METADATA, 0);
    bg_kafka_struct_t **rt = bg_kafka_array_new(&f->a, req, K(METADATA_REQ_TOPICS), 1);
    rt[0]->f[K(METADATA_REQ_TOPICS_NAME)].s = bg_kafka_null_slice();
    rt[0]->f[K(METADATA_REQ_TOPICS_TOPIC_ID)].uuid[0] = 9;
    req->f[K(METADATA_REQ_INCLUDE_TOPIC_AUTHORIZED_OPERATIONS)].i = 1;
    bg_kafka_struct_t *resp = ka_new(f, BG_KAFKA_API_METADATA, 1);
    const char *const names[] = {"held"};
    bg_kafka_struct_t **t = ka_topics(f, resp, K(METADATA_RESP_TOPICS),
                                      K(METADATA_RESP_TOPICS_NAME), names, 1, -1, -1, 0);
    t[0]->f[K(METADATA_RESP_TOPICS_TOPIC_ID)].uuid[0] = 9;
    t[0]->f[K(METADATA_RESP_TOPICS_TOPIC_AUTHORIZED_OPERATIONS)].i = TOPIC_OPS;
    bg_kafka_struct_t *out = through(f, BG_KAFKA_API_METADATA, 12, req, resp);
    bg_kafka_struct_t *e = ka_el(out, K(METADATA_RESP_TOPICS), 0);
    assert_int_equal(e->f[K(METADATA_RESP_TOPICS_ERROR_CODE)].i, 29);
    assert_int_equal(e->f[K(METADATA_RESP_TOPICS_TOPIC_AUTHORIZED_OPERATIONS)].i, OMITTED);
}

/* The topic behind an id was deleted: the broker answers UNKNOWN_TOPIC_ID
 * with no name. Nothing to decide or hide, and the client needs that error
 * to refresh: it reaches the client as the broker said it (it was turned
 * into TOPIC_AUTHORIZATION_FAILED). */
static void test_lookup_by_id_deleted_topic(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_METADATA, 0);
    bg_kafka_struct_t **rt = bg_kafka_array_new(&f->a, req, K(METADATA_REQ_TOPICS), 1);
    rt[0]->f[K(METADATA_REQ_TOPICS_NAME)].s = bg_kafka_null_slice();
    rt[0]->f[K(METADATA_REQ_TOPICS_TOPIC_ID)].uuid[0] = 9;
    bg_kafka_struct_t *resp = ka_new(f, BG_KAFKA_API_METADATA, 1);
    bg_kafka_struct_t **t = bg_kafka_array_new(&f->a, resp, K(METADATA_RESP_TOPICS), 1);
    t[0]->f[K(METADATA_RESP_TOPICS_NAME)].s = bg_kafka_null_slice();
    t[0]->f[K(METADATA_RESP_TOPICS_TOPIC_ID)].uuid[0] = 9;
    t[0]->f[K(METADATA_RESP_TOPICS_ERROR_CODE)].i = BG_KAFKA_E_UNKNOWN_TOPIC_ID;
    bg_kafka_struct_t *out = through(f, BG_KAFKA_API_METADATA, 12, req, resp);
    bg_kafka_struct_t *e = ka_el(out, K(METADATA_RESP_TOPICS), 0);
    assert_int_equal(e->f[K(METADATA_RESP_TOPICS_ERROR_CODE)].i, BG_KAFKA_E_UNKNOWN_TOPIC_ID);
    assert_int_equal(e->f[K(METADATA_RESP_TOPICS_TOPIC_ID)].uuid[0], 9);
}

/* Not asked for: the field keeps its "omitted" value. */
static void test_omitted_unchanged(void **st)
{
    ka_fix_t *f = *st;
    const char *const names[] = {"orders"};
    bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_METADATA, 0);
    ka_topics(f, req, K(METADATA_REQ_TOPICS), K(METADATA_REQ_TOPICS_NAME), names, 1, -1, -1, 0);
    bg_kafka_struct_t *resp = ka_new(f, BG_KAFKA_API_METADATA, 1);
    bg_kafka_struct_t **t = ka_topics(f, resp, K(METADATA_RESP_TOPICS),
                                      K(METADATA_RESP_TOPICS_NAME), names, 1, -1, -1, 0);
    t[0]->f[K(METADATA_RESP_TOPICS_TOPIC_AUTHORIZED_OPERATIONS)].i = OMITTED;
    bg_kafka_struct_t *out = through(f, BG_KAFKA_API_METADATA, 12, req, resp);
    assert_int_equal(
        ka_el(out, K(METADATA_RESP_TOPICS), 0)->f[K(METADATA_RESP_TOPICS_TOPIC_AUTHORIZED_OPERATIONS)].i,
        OMITTED);
}

static void test_describe_cluster(void **st)
{
    ka_fix_t *f = *st;
    for (int16_t ver = 0; ver <= 2; ver += 2) {
        bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_DESCRIBE_CLUSTER, 0);
        req->f[K(DESCRIBE_CLUSTER_REQ_INCLUDE_CLUSTER_AUTHORIZED_OPERATIONS)].i = 1;
        bg_kafka_struct_t *resp = ka_new(f, BG_KAFKA_API_DESCRIBE_CLUSTER, 1);
        resp->f[K(DESCRIBE_CLUSTER_RESP_CLUSTER_AUTHORIZED_OPERATIONS)].i = CLUSTER_OPS;
        bg_kafka_struct_t *out = through(f, BG_KAFKA_API_DESCRIBE_CLUSTER, ver, req, resp);
        assert_int_equal(out->f[K(DESCRIBE_CLUSTER_RESP_CLUSTER_AUTHORIZED_OPERATIONS)].i,
                         B(OP_DESCRIBE) | B(OP_DESCRIBE_CONFIGS));
    }
}

/* IDEMPOTENT_WRITE is `write` on the cluster: kept when the policy allows
 * it, as InitProducerId would be. */
static void test_cluster_idempotent_write(void **st)
{
    ka_fix_t *f = *st;
    ka_set_policy(f, 1u << BG_VERB_DESCRIBE | 1u << BG_VERB_WRITE);
    bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_DESCRIBE_CLUSTER, 0);
    req->f[K(DESCRIBE_CLUSTER_REQ_INCLUDE_CLUSTER_AUTHORIZED_OPERATIONS)].i = 1;
    bg_kafka_struct_t *resp = ka_new(f, BG_KAFKA_API_DESCRIBE_CLUSTER, 1);
    resp->f[K(DESCRIBE_CLUSTER_RESP_CLUSTER_AUTHORIZED_OPERATIONS)].i = CLUSTER_OPS;
    bg_kafka_struct_t *out = through(f, BG_KAFKA_API_DESCRIBE_CLUSTER, 1, req, resp);
    assert_int_equal(out->f[K(DESCRIBE_CLUSTER_RESP_CLUSTER_AUTHORIZED_OPERATIONS)].i,
                     B(OP_DESCRIBE) | B(OP_DESCRIBE_CONFIGS) | B(OP_IDEMPOTENT_WRITE));
}

/* Without describe on the cluster DescribeCluster still passes (the broker
 * list is open, as in Kafka), is recorded as an allow with busgate's reason,
 * and carries no cluster operation at all. */
static void test_describe_cluster_without_describe(void **st)
{
    ka_fix_t *f = *st;
    ka_set_policy(f, 1u << BG_VERB_ALTER);
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_DESCRIBE_CLUSTER, 1);
    bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_DESCRIBE_CLUSTER, 0);
    req->f[K(DESCRIBE_CLUSTER_REQ_INCLUDE_CLUSTER_AUTHORIZED_OPERATIONS)].i = 1;
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    assert_int_equal(v.ndecisions, 1);
    assert_int_equal(v.decisions[0].decision.effect, BG_EFFECT_ALLOW);
    assert_null(v.decisions[0].decision.rule);
    assert_non_null(strstr(v.decisions[0].reason, "open to every principal"));
    bg_kafka_struct_t *resp = ka_new(f, BG_KAFKA_API_DESCRIBE_CLUSTER, 1);
    resp->f[K(DESCRIBE_CLUSTER_RESP_CLUSTER_AUTHORIZED_OPERATIONS)].i = CLUSTER_OPS;
    bg_kafka_struct_t *out = through(f, BG_KAFKA_API_DESCRIBE_CLUSTER, 1, req, resp);
    assert_int_equal(out->f[K(DESCRIBE_CLUSTER_RESP_CLUSTER_AUTHORIZED_OPERATIONS)].i, 0);
    /* With describe it is the cluster rule's decision. */
    ka_set_policy(f, 1u << BG_VERB_DESCRIBE);
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.ndecisions, 1);
    assert_string_equal(bg_policy_rule_name(v.decisions[0].decision.rule), "cluster");
    assert_null(v.decisions[0].reason);
}

static void test_describe_groups(void **st)
{
    ka_fix_t *f = *st;
    for (int16_t ver = 3; ver <= 6; ver += 3) {
        bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_DESCRIBE_GROUPS, 0);
        bg_kafka_val_t *g = bg_kafka_array_vals(&f->a, req, K(DESCRIBE_GROUPS_REQ_GROUPS), 1);
        g[0].s = ka_s("g1");
        req->f[K(DESCRIBE_GROUPS_REQ_INCLUDE_AUTHORIZED_OPERATIONS)].i = 1;
        bg_kafka_struct_t *resp = ka_new(f, BG_KAFKA_API_DESCRIBE_GROUPS, 1);
        bg_kafka_struct_t **e = bg_kafka_array_new(&f->a, resp, K(DESCRIBE_GROUPS_RESP_GROUPS), 1);
        e[0]->f[K(DESCRIBE_GROUPS_RESP_GROUPS_GROUP_ID)].s = ka_s("g1");
        e[0]->f[K(DESCRIBE_GROUPS_RESP_GROUPS_AUTHORIZED_OPERATIONS)].i = GROUP_OPS;
        bg_kafka_struct_t *out = through(f, BG_KAFKA_API_DESCRIBE_GROUPS, ver, req, resp);
        assert_int_equal(
            ka_el(out, K(DESCRIBE_GROUPS_RESP_GROUPS), 0)->f[K(DESCRIBE_GROUPS_RESP_GROUPS_AUTHORIZED_OPERATIONS)].i,
            B(OP_READ) | B(OP_DESCRIBE) | B(OP_DELETE) | B(OP_DESCRIBE_CONFIGS));
    }
    /* Before v3 there is no such field: no response work. */
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_DESCRIBE_GROUPS, 2);
    bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_DESCRIBE_GROUPS, 0);
    bg_kafka_val_t *g = bg_kafka_array_vals(&f->a, req, K(DESCRIBE_GROUPS_REQ_GROUPS), 1);
    g[0].s = ka_s("g1");
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.needs_response, 0);
}

static void test_consumer_group_describe(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_CONSUMER_GROUP_DESCRIBE, 0);
    bg_kafka_val_t *g =
        bg_kafka_array_vals(&f->a, req, K(CONSUMER_GROUP_DESCRIBE_REQ_GROUP_IDS), 1);
    g[0].s = ka_s("g-7");
    req->f[K(CONSUMER_GROUP_DESCRIBE_REQ_INCLUDE_AUTHORIZED_OPERATIONS)].i = 1;
    bg_kafka_struct_t *resp = ka_new(f, BG_KAFKA_API_CONSUMER_GROUP_DESCRIBE, 1);
    bg_kafka_struct_t **e =
        bg_kafka_array_new(&f->a, resp, K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS), 1);
    e[0]->f[K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS_GROUP_ID)].s = ka_s("g-7");
    e[0]->f[K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS_AUTHORIZED_OPERATIONS)].i = GROUP_OPS;
    bg_kafka_struct_t *out = through(f, BG_KAFKA_API_CONSUMER_GROUP_DESCRIBE, 1, req, resp);
    assert_int_equal(ka_el(out, K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS), 0)
                         ->f[K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS_AUTHORIZED_OPERATIONS)]
                         .i,
                     B(OP_READ) | B(OP_DESCRIBE) | B(OP_DELETE) | B(OP_DESCRIBE_CONFIGS));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_metadata, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_omitted_unchanged, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_undescribable_topic, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_lookup_by_id_undescribable, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_lookup_by_id_deleted_topic, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_describe_topic_partitions, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_describe_cluster, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_cluster_idempotent_write, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_describe_cluster_without_describe, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_describe_groups, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_consumer_group_describe, ka_up, ka_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
