/* Replica traffic: Fetch, ListOffsets and OffsetForLeaderEpoch with any
 * replica id other than a consumer's -1 are refused for every topic, like a
 * follower's fetch. -3 (Kafka's future local replica) fetches to the log
 * end, past the high watermark and whatever the isolation level; -2 is the
 * debugging id; ListOffsets answers any id but -1 without isolation. */
#include "test_kafka_authz_util.h"

static const char *const orders[] = {"orders"};

/* Fetch of "orders" (2 partitions) from replica id at ver: ReplicaId up to
 * v14, ReplicaState.ReplicaId from v15 (topics by id there: 1 = orders);
 * through the codec, as it would arrive. */
static bg_kafka_struct_t *fetch_from(ka_fix_t *f, int16_t ver, int32_t id)
{
    bg_kafka_struct_t *r = ka_new(f, BG_KAFKA_API_FETCH, 0);
    bg_kafka_struct_t **t = ka_topics(f, r, K(FETCH_REQ_TOPICS), K(FETCH_REQ_TOPICS_TOPIC), orders,
                                      1, K(FETCH_REQ_TOPICS_PARTITIONS),
                                      K(FETCH_REQ_TOPICS_PARTITIONS_PARTITION), 2);
    t[0]->f[K(FETCH_REQ_TOPICS_TOPIC_ID)].uuid[0] = 1;
    if (ver < 15) {
        r->f[K(FETCH_REQ_REPLICA_ID)].i = id;
    } else {
        bg_kafka_struct_t *rs =
            bg_kafka_struct_new(&f->a, bg_kafka_sub_desc(r->desc, K(FETCH_REQ_REPLICA_STATE)));
        assert_non_null(rs);
        rs->f[K(FETCH_REQ_REPLICA_STATE_REPLICA_ID)].i = id;
        r->f[K(FETCH_REQ_REPLICA_STATE)].st = rs;
    }
    return ka_rt(f, BG_KAFKA_API_FETCH, 0, ver, r);
}

static bg_kafka_struct_t *list_offsets_from(ka_fix_t *f, int16_t ver, int32_t id)
{
    bg_kafka_struct_t *r = ka_new(f, BG_KAFKA_API_LIST_OFFSETS, 0);
    r->f[K(LIST_OFFSETS_REQ_REPLICA_ID)].i = id;
    ka_topics(f, r, K(LIST_OFFSETS_REQ_TOPICS), K(LIST_OFFSETS_REQ_TOPICS_NAME), orders, 1,
              K(LIST_OFFSETS_REQ_TOPICS_PARTITIONS),
              K(LIST_OFFSETS_REQ_TOPICS_PARTITIONS_PARTITION_INDEX), 2);
    return ka_rt(f, BG_KAFKA_API_LIST_OFFSETS, 0, ver, r);
}

static bg_kafka_struct_t *olep_from(ka_fix_t *f, int16_t ver, int32_t id)
{
    bg_kafka_struct_t *r = ka_new(f, BG_KAFKA_API_OFFSET_FOR_LEADER_EPOCH, 0);
    r->f[K(OFFSET_FOR_LEADER_EPOCH_REQ_REPLICA_ID)].i = id;
    ka_topics(f, r, K(OFFSET_FOR_LEADER_EPOCH_REQ_TOPICS),
              K(OFFSET_FOR_LEADER_EPOCH_REQ_TOPICS_TOPIC), orders, 1,
              K(OFFSET_FOR_LEADER_EPOCH_REQ_TOPICS_PARTITIONS),
              K(OFFSET_FOR_LEADER_EPOCH_REQ_TOPICS_PARTITIONS_PARTITION), 2);
    return ka_rt(f, BG_KAFKA_API_OFFSET_FOR_LEADER_EPOCH, 0, ver, r);
}

/* Field indices of a topic -> partition response: topics, partitions, the
 * partition's error. */
typedef struct {
    int topics, parts, err;
} shape_t;

static const shape_t sh_fetch = {K(FETCH_RESP_RESPONSES), K(FETCH_RESP_RESPONSES_PARTITIONS),
                                 K(FETCH_RESP_RESPONSES_PARTITIONS_ERROR_CODE)};
static const shape_t sh_list_offsets = {K(LIST_OFFSETS_RESP_TOPICS),
                                        K(LIST_OFFSETS_RESP_TOPICS_PARTITIONS),
                                        K(LIST_OFFSETS_RESP_TOPICS_PARTITIONS_ERROR_CODE)};
static const shape_t sh_olep = {K(OFFSET_FOR_LEADER_EPOCH_RESP_TOPICS),
                                K(OFFSET_FOR_LEADER_EPOCH_RESP_TOPICS_PARTITIONS),
                                K(OFFSET_FOR_LEADER_EPOCH_RESP_TOPICS_PARTITIONS_ERROR_CODE)};

/* Decides req and checks it was refused as replica traffic, as a follower's
 * fetch is: nothing forwarded, both partitions TOPIC_AUTHORIZATION_FAILED,
 * and a deny of alter on the cluster with busgate's reason `why` (the topic,
 * which the policy lets alice read and describe, is not even decided). */
static void assert_refused(ka_fix_t *f, int16_t key, int16_t ver, bg_kafka_struct_t *req,
                           const shape_t *sh, const char *why)
{
    bg_kafka_req_hdr_t h = ka_hdr(key, ver);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    assert_null(v.request);
    assert_int_equal(v.ndecisions, 1);
    const bg_kafka_decision_t *d = ka_find_decision(&v, BG_RES_KAFKA_CLUSTER, "");
    assert_non_null(d);
    assert_int_equal(d->verb, BG_VERB_ALTER);
    assert_int_equal(d->decision.effect, BG_EFFECT_DENY);
    assert_null(d->decision.rule);
    assert_int_equal(d->error_code, BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED);
    assert_string_equal(d->reason, why);
    bg_kafka_struct_t *r = ka_rt(f, key, 1, ver, v.response);
    bg_kafka_struct_t *t = ka_el(r, sh->topics, 0);
    assert_int_equal(t->f[sh->parts].a.n, 2);
    for (int i = 0; i < 2; i++)
        assert_int_equal(ka_el(t, sh->parts, i)->f[sh->err].i,
                         BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED);
}

/* Decides req and checks it goes upstream as sent, decided by the policy
 * alone (no replica refusal). */
static void assert_forwarded(ka_fix_t *f, int16_t key, int16_t ver, bg_kafka_struct_t *req)
{
    bg_kafka_req_hdr_t h = ka_hdr(key, ver);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    assert_null(ka_find_decision(&v, BG_RES_KAFKA_CLUSTER, ""));
    assert_non_null(ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "orders"));
    assert_int_equal(v.decisions[0].decision.effect, BG_EFFECT_ALLOW);
}

/* Fetch v12 from -3 (future local replica: reads to the log end) and -2
 * (the debugging id): refused like a follower's fetch. */
static void test_fetch_special_replica_ids_refused(void **st)
{
    ka_fix_t *f = *st;
    const int32_t ids[] = {-3, -2, -4, 1};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        assert_refused(f, BG_KAFKA_API_FETCH, 12, fetch_from(f, 12, ids[i]), &sh_fetch,
                       "replica fetch");
}

/* Fetch v15 names the replica in ReplicaState: -3 there is refused too. */
static void test_fetch_v15_replica_state_refused(void **st)
{
    ka_fix_t *f = *st;
    assert_refused(f, BG_KAFKA_API_FETCH, 15, fetch_from(f, 15, -3), &sh_fetch, "replica fetch");
    assert_refused(f, BG_KAFKA_API_FETCH, 15, fetch_from(f, 15, -2), &sh_fetch, "replica fetch");
}

/* ListOffsets from any id but -1 is answered without isolation (the log end
 * instead of the high watermark or last stable offset): refused. */
static void test_list_offsets_replica_refused(void **st)
{
    ka_fix_t *f = *st;
    for (int16_t ver = 1; ver <= 10; ver += 9) {
        assert_refused(f, BG_KAFKA_API_LIST_OFFSETS, ver, list_offsets_from(f, ver, -2),
                       &sh_list_offsets, "replica request");
        assert_refused(f, BG_KAFKA_API_LIST_OFFSETS, ver, list_offsets_from(f, ver, 0),
                       &sh_list_offsets, "replica request");
    }
}

/* OffsetForLeaderEpoch v3+ from -3: refused like a follower's (id >= 0). */
static void test_offset_for_leader_epoch_special_replica_refused(void **st)
{
    ka_fix_t *f = *st;
    for (int16_t ver = 3; ver <= 4; ver++) {
        assert_refused(f, BG_KAFKA_API_OFFSET_FOR_LEADER_EPOCH, ver, olep_from(f, ver, -3),
                       &sh_olep, "replica request");
        /* the definitions' default, which no client sends */
        assert_refused(f, BG_KAFKA_API_OFFSET_FOR_LEADER_EPOCH, ver, olep_from(f, ver, -2),
                       &sh_olep, "replica request");
    }
}

/* What clients send, -1 (and v0-2 of OffsetForLeaderEpoch, which carry no
 * replica id; a v15 Fetch without ReplicaState), still goes upstream. */
static void test_consumer_replica_id_forwarded(void **st)
{
    ka_fix_t *f = *st;
    assert_forwarded(f, BG_KAFKA_API_FETCH, 4, fetch_from(f, 4, -1));
    assert_forwarded(f, BG_KAFKA_API_FETCH, 12, fetch_from(f, 12, -1));
    assert_forwarded(f, BG_KAFKA_API_FETCH, 15, fetch_from(f, 15, -1));
    bg_kafka_struct_t *r = fetch_from(f, 15, -1);
    r->f[K(FETCH_REQ_REPLICA_STATE)].st = NULL;
    assert_forwarded(f, BG_KAFKA_API_FETCH, 15, ka_rt(f, BG_KAFKA_API_FETCH, 0, 15, r));
    for (int16_t ver = 1; ver <= 10; ver += 9)
        assert_forwarded(f, BG_KAFKA_API_LIST_OFFSETS, ver, list_offsets_from(f, ver, -1));
    for (int16_t ver = 2; ver <= 4; ver++)
        assert_forwarded(f, BG_KAFKA_API_OFFSET_FOR_LEADER_EPOCH, ver,
                         olep_from(f, ver, ver < 3 ? 5 : -1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fetch_special_replica_ids_refused, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_fetch_v15_replica_state_refused, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_list_offsets_replica_refused, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_offset_for_leader_epoch_special_replica_refused,
                                        ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_consumer_replica_id_forwarded, ka_up, ka_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
