/* Kafka codec: one vector per message at its lowest and highest version.
 * Vectors are written field by field from the protocol description with the
 * independent builder of test_kafka_codec_util.h; each is decoded, checked
 * field by field, re-encoded byte for byte, and truncated at every byte. */
#include "test_kafka_codec_util.h"

static const char REC[] = "RECORDBYTE"; /* opaque record bytes: never parsed */

/* ---- ApiVersions ---- */

static void test_api_versions_req(void **state)
{
    kt_vec_t v;
    kt_init(&v, 0);
    bg_kafka_struct_t *s = KT_RT(bg_kafka_msg_api_versions_req, 0, v);
    assert_true(KT_S(s, BG_KAFKA_API_VERSIONS_REQ_CLIENT_SOFTWARE_NAME).len == 0);
    assert_int_equal(KT_I(s, BG_KAFKA_API_VERSIONS_REQ_NODE_ID), -1); /* default */

    kt_init(&v, 1);
    kt_str(&v, "busgate-test");
    kt_str(&v, "0.1");
    kt_str(&v, NULL);
    kt_i32(&v, 3);
    kt_tags0(&v);
    s = KT_RT(bg_kafka_msg_api_versions_req, 5, v);
    assert_true(
        kt_slice_eq(KT_S(s, BG_KAFKA_API_VERSIONS_REQ_CLIENT_SOFTWARE_NAME), "busgate-test"));
    assert_true(kt_slice_eq(KT_S(s, BG_KAFKA_API_VERSIONS_REQ_CLIENT_SOFTWARE_VERSION), "0.1"));
    assert_true(kt_slice_eq(KT_S(s, BG_KAFKA_API_VERSIONS_REQ_CLUSTER_ID), NULL));
    assert_int_equal(KT_I(s, BG_KAFKA_API_VERSIONS_REQ_NODE_ID), 3);
}

static void test_api_versions_resp(void **state)
{
    kt_vec_t v;
    kt_init(&v, 0);
    kt_i16(&v, 0);
    kt_arr(&v, 2);
    kt_i16(&v, 0), kt_i16(&v, 3), kt_i16(&v, 13);
    kt_i16(&v, 18), kt_i16(&v, 0), kt_i16(&v, 5);
    bg_kafka_struct_t *s = KT_RT(bg_kafka_msg_api_versions_resp, 0, v);
    assert_int_equal(KT_A(s, BG_KAFKA_API_VERSIONS_RESP_API_KEYS).n, 2);
    bg_kafka_struct_t *k = KT_A(s, BG_KAFKA_API_VERSIONS_RESP_API_KEYS).s[1];
    assert_int_equal(KT_I(k, BG_KAFKA_API_VERSIONS_RESP_API_KEYS_API_KEY), 18);
    assert_int_equal(KT_I(k, BG_KAFKA_API_VERSIONS_RESP_API_KEYS_MAX_VERSION), 5);

    /* v5 with known tagged fields 1 and 3 and an unknown tag 5 kept raw. */
    kt_vec_t t1, t3, t5;
    kt_init(&v, 1);
    kt_init(&t1, 1), kt_init(&t3, 1), kt_init(&t5, 1);
    kt_i64(&t1, 7);
    kt_i8(&t3, 1);
    kt_raw(&t5, "ab", 2);
    kt_i16(&v, 0);
    kt_arr(&v, 1);
    kt_i16(&v, 18), kt_i16(&v, 0), kt_i16(&v, 5), kt_tags0(&v);
    kt_i32(&v, 0);
    kt_uv(&v, 3);
    kt_tag(&v, 1, &t1), kt_tag(&v, 3, &t3), kt_tag(&v, 5, &t5);
    s = KT_RT(bg_kafka_msg_api_versions_resp, 5, v);
    assert_int_equal(KT_I(s, BG_KAFKA_API_VERSIONS_RESP_FINALIZED_FEATURES_EPOCH), 7);
    assert_int_equal(KT_I(s, BG_KAFKA_API_VERSIONS_RESP_ZK_MIGRATION_READY), 1);
    assert_int_equal(KT_A(s, BG_KAFKA_API_VERSIONS_RESP_SUPPORTED_FEATURES).n, 0);
    assert_int_equal(s->nunknown, 1);
    assert_int_equal(s->unknown[0].tag, 5);
    assert_int_equal(s->unknown[0].raw.len, 2);
}

/* ---- Metadata ---- */

static void test_metadata_req(void **state)
{
    kt_vec_t v;
    kt_init(&v, 0);
    kt_arr(&v, 1);
    kt_str(&v, "orders");
    bg_kafka_struct_t *s = KT_RT(bg_kafka_msg_metadata_req, 0, v);
    assert_int_equal(KT_A(s, BG_KAFKA_METADATA_REQ_TOPICS).n, 1);
    assert_true(kt_slice_eq(
        KT_S(KT_A(s, BG_KAFKA_METADATA_REQ_TOPICS).s[0], BG_KAFKA_METADATA_REQ_TOPICS_NAME),
        "orders"));
    assert_int_equal(KT_I(s, BG_KAFKA_METADATA_REQ_ALLOW_AUTO_TOPIC_CREATION),
                     1); /* default true */
    /* null topics (all of them) from v1 on; v0 has no null: empty is all */
    kt_init(&v, 0);
    kt_arr(&v, -1);
    s = KT_RT(bg_kafka_msg_metadata_req, 1, v);
    assert_int_equal(KT_A(s, BG_KAFKA_METADATA_REQ_TOPICS).n, -1);
    bg_rd_t rd;
    bg_rd_init(&rd, v.b, v.n);
    assert_int_equal(bg_kafka_decode(&bg_kafka_msg_metadata_req, 0, &rd, &kt_arena, &s),
                     BG_KAFKA_ERR_MALFORMED);
    assert_string_equal(rd.why, "null in non-nullable array");

    kt_init(&v, 1);
    kt_arr(&v, 2);
    kt_uuid(&v, 0xab), kt_str(&v, NULL), kt_tags0(&v);
    kt_uuid(&v, 0), kt_str(&v, "t2"), kt_tags0(&v);
    kt_i8(&v, 0);
    kt_i8(&v, 1);
    kt_tags0(&v);
    s = KT_RT(bg_kafka_msg_metadata_req, 13, v);
    bg_kafka_struct_t *t0 = KT_A(s, BG_KAFKA_METADATA_REQ_TOPICS).s[0];
    assert_int_equal(t0->f[BG_KAFKA_METADATA_REQ_TOPICS_TOPIC_ID].uuid[15], 0xab);
    assert_true(kt_slice_eq(KT_S(t0, BG_KAFKA_METADATA_REQ_TOPICS_NAME), NULL));
    assert_int_equal(KT_I(s, BG_KAFKA_METADATA_REQ_ALLOW_AUTO_TOPIC_CREATION), 0);
    assert_int_equal(KT_I(s, BG_KAFKA_METADATA_REQ_INCLUDE_TOPIC_AUTHORIZED_OPERATIONS), 1);
}

static void test_metadata_resp(void **state)
{
    kt_vec_t v;
    kt_init(&v, 0);
    kt_arr(&v, 1);
    kt_i32(&v, 1), kt_str(&v, "b1"), kt_i32(&v, 9092);
    kt_arr(&v, 1);
    kt_i16(&v, 0), kt_str(&v, "orders");
    kt_arr(&v, 1);
    kt_i16(&v, 0), kt_i32(&v, 0), kt_i32(&v, 1);
    kt_arr(&v, 1), kt_i32(&v, 1);
    kt_arr(&v, 1), kt_i32(&v, 1);
    bg_kafka_struct_t *s = KT_RT(bg_kafka_msg_metadata_resp, 0, v);
    bg_kafka_struct_t *b = KT_A(s, BG_KAFKA_METADATA_RESP_BROKERS).s[0];
    assert_true(kt_slice_eq(KT_S(b, BG_KAFKA_METADATA_RESP_BROKERS_HOST), "b1"));
    assert_int_equal(KT_I(b, BG_KAFKA_METADATA_RESP_BROKERS_PORT), 9092);
    assert_true(kt_slice_eq(KT_S(b, BG_KAFKA_METADATA_RESP_BROKERS_RACK), NULL)); /* default null */
    assert_int_equal(KT_I(s, BG_KAFKA_METADATA_RESP_CONTROLLER_ID), -1);
    bg_kafka_struct_t *p =
        KT_A(KT_A(s, BG_KAFKA_METADATA_RESP_TOPICS).s[0], BG_KAFKA_METADATA_RESP_TOPICS_PARTITIONS)
            .s[0];
    assert_int_equal(KT_I(p, BG_KAFKA_METADATA_RESP_TOPICS_PARTITIONS_LEADER_ID), 1);
    assert_int_equal(KT_A(p, BG_KAFKA_METADATA_RESP_TOPICS_PARTITIONS_ISR_NODES).v[0].i, 1);

    kt_init(&v, 1);
    kt_i32(&v, 0);
    kt_arr(&v, 1);
    kt_i32(&v, 1), kt_str(&v, "b1"), kt_i32(&v, 9092), kt_str(&v, NULL), kt_tags0(&v);
    kt_str(&v, "c1");
    kt_i32(&v, 1);
    kt_arr(&v, 1);
    kt_i16(&v, 0), kt_str(&v, "orders"), kt_uuid(&v, 0x11), kt_i8(&v, 0);
    kt_arr(&v, 1);
    kt_i16(&v, 0), kt_i32(&v, 0), kt_i32(&v, 1), kt_i32(&v, 5);
    kt_arr(&v, 1), kt_i32(&v, 1);
    kt_arr(&v, 1), kt_i32(&v, 1);
    kt_arr(&v, 0);
    kt_tags0(&v);
    kt_i32(&v, INT32_MIN);
    kt_tags0(&v);
    kt_i16(&v, 0);
    kt_tags0(&v);
    s = KT_RT(bg_kafka_msg_metadata_resp, 13, v);
    assert_true(kt_slice_eq(KT_S(s, BG_KAFKA_METADATA_RESP_CLUSTER_ID), "c1"));
    assert_int_equal(KT_I(s, BG_KAFKA_METADATA_RESP_CONTROLLER_ID), 1);
    p = KT_A(KT_A(s, BG_KAFKA_METADATA_RESP_TOPICS).s[0], BG_KAFKA_METADATA_RESP_TOPICS_PARTITIONS)
            .s[0];
    assert_int_equal(KT_I(p, BG_KAFKA_METADATA_RESP_TOPICS_PARTITIONS_LEADER_EPOCH), 5);
    assert_int_equal(KT_A(p, BG_KAFKA_METADATA_RESP_TOPICS_PARTITIONS_OFFLINE_REPLICAS).n, 0);
}

/* ---- Produce ---- */

static void test_produce_req(void **state)
{
    kt_vec_t v;
    kt_init(&v, 0);
    kt_str(&v, NULL);
    kt_i16(&v, -1);
    kt_i32(&v, 30000);
    kt_arr(&v, 1);
    kt_str(&v, "orders");
    kt_arr(&v, 2);
    kt_i32(&v, 0);
    size_t rec_off = v.n + 4;
    kt_bytes(&v, REC, 10);
    kt_i32(&v, 1), kt_bytes(&v, NULL, -1);
    bg_kafka_struct_t *s = KT_RT(bg_kafka_msg_produce_req, 3, v);
    assert_true(kt_slice_eq(KT_S(s, BG_KAFKA_PRODUCE_REQ_TRANSACTIONAL_ID), NULL));
    assert_int_equal(KT_I(s, BG_KAFKA_PRODUCE_REQ_ACKS), -1);
    assert_int_equal(KT_I(s, BG_KAFKA_PRODUCE_REQ_TIMEOUT_MS), 30000);
    bg_kafka_struct_t *t = KT_A(s, BG_KAFKA_PRODUCE_REQ_TOPIC_DATA).s[0];
    assert_true(kt_slice_eq(KT_S(t, BG_KAFKA_PRODUCE_REQ_TOPIC_DATA_NAME), "orders"));
    bg_kafka_struct_t **parts = KT_A(t, BG_KAFKA_PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA).s;
    bg_slice_t rec = KT_S(parts[0], BG_KAFKA_PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA_RECORDS);
    assert_ptr_equal(rec.p, v.b + rec_off); /* borrowed, not copied */
    assert_int_equal(rec.len, 10);
    assert_int_equal(KT_I(parts[1], BG_KAFKA_PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA_INDEX), 1);
    assert_int_equal(KT_S(parts[1], BG_KAFKA_PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA_RECORDS).len,
                     -1);

    kt_init(&v, 1);
    kt_str(&v, "tx1");
    kt_i16(&v, 1);
    kt_i32(&v, 1000);
    kt_arr(&v, 1);
    kt_uuid(&v, 0x22);
    kt_arr(&v, 1);
    kt_i32(&v, 4), kt_bytes(&v, REC, 10), kt_tags0(&v);
    kt_tags0(&v);
    kt_tags0(&v);
    s = KT_RT(bg_kafka_msg_produce_req, 13, v);
    assert_true(kt_slice_eq(KT_S(s, BG_KAFKA_PRODUCE_REQ_TRANSACTIONAL_ID), "tx1"));
    t = KT_A(s, BG_KAFKA_PRODUCE_REQ_TOPIC_DATA).s[0];
    assert_int_equal(t->f[BG_KAFKA_PRODUCE_REQ_TOPIC_DATA_TOPIC_ID].uuid[0], 0x22);
    assert_int_equal(KT_S(t, BG_KAFKA_PRODUCE_REQ_TOPIC_DATA_NAME).len, 0); /* absent in v13 */
}

static void test_produce_resp(void **state)
{
    kt_vec_t v;
    kt_init(&v, 0);
    kt_arr(&v, 1);
    kt_str(&v, "orders");
    kt_arr(&v, 1);
    kt_i32(&v, 0), kt_i16(&v, 0), kt_i64(&v, 100), kt_i64(&v, -1);
    kt_i32(&v, 0);
    bg_kafka_struct_t *s = KT_RT(bg_kafka_msg_produce_resp, 3, v);
    bg_kafka_struct_t *p = KT_A(KT_A(s, BG_KAFKA_PRODUCE_RESP_RESPONSES).s[0],
                                BG_KAFKA_PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES)
                               .s[0];
    assert_int_equal(KT_I(p, BG_KAFKA_PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES_BASE_OFFSET), 100);

    kt_vec_t leader, eps;
    kt_init(&leader, 1), kt_init(&eps, 1);
    kt_i32(&leader, 2), kt_i32(&leader, 9), kt_tags0(&leader);
    kt_arr(&eps, 1);
    kt_i32(&eps, 2), kt_str(&eps, "b2"), kt_i32(&eps, 9093), kt_str(&eps, NULL), kt_tags0(&eps);
    kt_init(&v, 1);
    kt_arr(&v, 1);
    kt_uuid(&v, 0x22);
    kt_arr(&v, 1);
    kt_i32(&v, 4), kt_i16(&v, 6), kt_i64(&v, -1), kt_i64(&v, -1), kt_i64(&v, 0);
    kt_arr(&v, 1);
    kt_i32(&v, 0), kt_str(&v, "bad"), kt_tags0(&v);
    kt_str(&v, NULL);
    kt_uv(&v, 1), kt_tag(&v, 0, &leader);
    kt_tags0(&v);
    kt_i32(&v, 0);
    kt_uv(&v, 1), kt_tag(&v, 0, &eps);
    s = KT_RT(bg_kafka_msg_produce_resp, 13, v);
    p = KT_A(KT_A(s, BG_KAFKA_PRODUCE_RESP_RESPONSES).s[0],
             BG_KAFKA_PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES)
            .s[0];
    assert_int_equal(KT_I(p, BG_KAFKA_PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES_ERROR_CODE), 6);
    bg_kafka_struct_t *cl =
        p->f[BG_KAFKA_PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES_CURRENT_LEADER].st;
    assert_int_equal(
        KT_I(cl, BG_KAFKA_PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES_CURRENT_LEADER_LEADER_EPOCH),
        9);
    bg_kafka_struct_t *ep = KT_A(s, BG_KAFKA_PRODUCE_RESP_NODE_ENDPOINTS).s[0];
    assert_int_equal(KT_I(ep, BG_KAFKA_PRODUCE_RESP_NODE_ENDPOINTS_PORT), 9093);
}

/* ---- Fetch ---- */

static void test_fetch_req(void **state)
{
    kt_vec_t v;
    kt_init(&v, 0);
    kt_i32(&v, -1), kt_i32(&v, 500), kt_i32(&v, 1), kt_i32(&v, 52428800), kt_i8(&v, 0);
    kt_arr(&v, 1);
    kt_str(&v, "orders");
    kt_arr(&v, 1);
    kt_i32(&v, 0), kt_i64(&v, 42), kt_i32(&v, 1048576);
    bg_kafka_struct_t *s = KT_RT(bg_kafka_msg_fetch_req, 4, v);
    assert_int_equal(KT_I(s, BG_KAFKA_FETCH_REQ_MAX_BYTES), 52428800);
    bg_kafka_struct_t *p =
        KT_A(KT_A(s, BG_KAFKA_FETCH_REQ_TOPICS).s[0], BG_KAFKA_FETCH_REQ_TOPICS_PARTITIONS).s[0];
    assert_int_equal(KT_I(p, BG_KAFKA_FETCH_REQ_TOPICS_PARTITIONS_FETCH_OFFSET), 42);
    assert_int_equal(KT_I(p, BG_KAFKA_FETCH_REQ_TOPICS_PARTITIONS_HIGH_WATERMARK), INT64_MAX);

    kt_vec_t hw, cid;
    kt_init(&hw, 1), kt_init(&cid, 1);
    kt_i64(&hw, 1000);
    kt_str(&cid, "clu");
    kt_init(&v, 1);
    kt_i32(&v, 500), kt_i32(&v, 1), kt_i32(&v, 52428800), kt_i8(&v, 1), kt_i32(&v, 0),
        kt_i32(&v, -1);
    kt_arr(&v, 1);
    kt_uuid(&v, 0x33);
    kt_arr(&v, 1);
    kt_i32(&v, 0), kt_i32(&v, 5), kt_i64(&v, 42), kt_i32(&v, -1), kt_i64(&v, -1),
        kt_i32(&v, 1048576);
    kt_uv(&v, 1), kt_tag(&v, 1, &hw);
    kt_tags0(&v);
    kt_arr(&v, 0);
    kt_str(&v, "rack-a");
    kt_uv(&v, 1), kt_tag(&v, 0, &cid);
    s = KT_RT(bg_kafka_msg_fetch_req, 18, v);
    assert_true(kt_slice_eq(KT_S(s, BG_KAFKA_FETCH_REQ_CLUSTER_ID), "clu"));
    assert_true(kt_slice_eq(KT_S(s, BG_KAFKA_FETCH_REQ_RACK_ID), "rack-a"));
    assert_int_equal(KT_I(s->f[BG_KAFKA_FETCH_REQ_REPLICA_STATE].st,
                          BG_KAFKA_FETCH_REQ_REPLICA_STATE_REPLICA_ID),
                     -1);
    p = KT_A(KT_A(s, BG_KAFKA_FETCH_REQ_TOPICS).s[0], BG_KAFKA_FETCH_REQ_TOPICS_PARTITIONS).s[0];
    assert_int_equal(KT_I(p, BG_KAFKA_FETCH_REQ_TOPICS_PARTITIONS_HIGH_WATERMARK), 1000);
    assert_int_equal(KT_I(p, BG_KAFKA_FETCH_REQ_TOPICS_PARTITIONS_CURRENT_LEADER_EPOCH), 5);
}

static void test_fetch_resp(void **state)
{
    kt_vec_t v;
    kt_init(&v, 0);
    kt_i32(&v, 0);
    kt_arr(&v, 1);
    kt_str(&v, "orders");
    kt_arr(&v, 1);
    kt_i32(&v, 0), kt_i16(&v, 0), kt_i64(&v, 100), kt_i64(&v, 100), kt_arr(&v, -1);
    kt_bytes(&v, REC, 10);
    bg_kafka_struct_t *s = KT_RT(bg_kafka_msg_fetch_resp, 4, v);
    bg_kafka_struct_t *p =
        KT_A(KT_A(s, BG_KAFKA_FETCH_RESP_RESPONSES).s[0], BG_KAFKA_FETCH_RESP_RESPONSES_PARTITIONS)
            .s[0];
    assert_int_equal(KT_A(p, BG_KAFKA_FETCH_RESP_RESPONSES_PARTITIONS_ABORTED_TRANSACTIONS).n, -1);
    assert_true(
        kt_slice_eq(KT_S(p, BG_KAFKA_FETCH_RESP_RESPONSES_PARTITIONS_RECORDS), "RECORDBYTE"));

    kt_vec_t leader, eps;
    kt_init(&leader, 1), kt_init(&eps, 1);
    kt_i32(&leader, 1), kt_i32(&leader, 5), kt_tags0(&leader);
    kt_arr(&eps, 1);
    kt_i32(&eps, 1), kt_str(&eps, "b1"), kt_i32(&eps, 9092), kt_str(&eps, "r1"), kt_tags0(&eps);
    kt_init(&v, 1);
    kt_i32(&v, 0), kt_i16(&v, 0), kt_i32(&v, 7);
    kt_arr(&v, 1);
    kt_uuid(&v, 0x33);
    kt_arr(&v, 1);
    kt_i32(&v, 0), kt_i16(&v, 0), kt_i64(&v, 100), kt_i64(&v, 100), kt_i64(&v, 0);
    kt_arr(&v, 1), kt_i64(&v, 9), kt_i64(&v, 50), kt_tags0(&v);
    kt_i32(&v, -1);
    kt_bytes(&v, REC, 10);
    kt_uv(&v, 1), kt_tag(&v, 1, &leader);
    kt_tags0(&v);
    kt_uv(&v, 1), kt_tag(&v, 0, &eps);
    s = KT_RT(bg_kafka_msg_fetch_resp, 18, v);
    assert_int_equal(KT_I(s, BG_KAFKA_FETCH_RESP_SESSION_ID), 7);
    p = KT_A(KT_A(s, BG_KAFKA_FETCH_RESP_RESPONSES).s[0], BG_KAFKA_FETCH_RESP_RESPONSES_PARTITIONS)
            .s[0];
    bg_kafka_struct_t *at =
        KT_A(p, BG_KAFKA_FETCH_RESP_RESPONSES_PARTITIONS_ABORTED_TRANSACTIONS).s[0];
    assert_int_equal(
        KT_I(at, BG_KAFKA_FETCH_RESP_RESPONSES_PARTITIONS_ABORTED_TRANSACTIONS_PRODUCER_ID), 9);
    bg_kafka_struct_t *cl = p->f[BG_KAFKA_FETCH_RESP_RESPONSES_PARTITIONS_CURRENT_LEADER].st;
    assert_int_equal(KT_I(cl, BG_KAFKA_FETCH_RESP_RESPONSES_PARTITIONS_CURRENT_LEADER_LEADER_ID),
                     1);
    bg_kafka_struct_t *de = p->f[BG_KAFKA_FETCH_RESP_RESPONSES_PARTITIONS_DIVERGING_EPOCH].st;
    assert_int_equal(KT_I(de, BG_KAFKA_FETCH_RESP_RESPONSES_PARTITIONS_DIVERGING_EPOCH_EPOCH), -1);
    assert_true(kt_slice_eq(KT_S(KT_A(s, BG_KAFKA_FETCH_RESP_NODE_ENDPOINTS).s[0],
                                 BG_KAFKA_FETCH_RESP_NODE_ENDPOINTS_RACK),
                            "r1"));
}

/* ---- FindCoordinator (single key v0-3, batched v4+) ---- */

static void test_find_coordinator_req(void **state)
{
    kt_vec_t v;
    kt_init(&v, 0);
    kt_str(&v, "grp");
    bg_kafka_struct_t *s = KT_RT(bg_kafka_msg_find_coordinator_req, 0, v);
    assert_true(kt_slice_eq(KT_S(s, BG_KAFKA_FIND_COORDINATOR_REQ_KEY), "grp"));

    kt_init(&v, 1);
    kt_str(&v, "grp"), kt_i8(&v, 0), kt_tags0(&v);
    s = KT_RT(bg_kafka_msg_find_coordinator_req, 3, v);
    assert_true(kt_slice_eq(KT_S(s, BG_KAFKA_FIND_COORDINATOR_REQ_KEY), "grp"));

    kt_init(&v, 1);
    kt_i8(&v, 1);
    kt_arr(&v, 2), kt_str(&v, "tx-a"), kt_str(&v, "tx-b");
    kt_tags0(&v);
    s = KT_RT(bg_kafka_msg_find_coordinator_req, 6, v);
    assert_int_equal(KT_I(s, BG_KAFKA_FIND_COORDINATOR_REQ_KEY_TYPE), 1);
    assert_int_equal(KT_A(s, BG_KAFKA_FIND_COORDINATOR_REQ_COORDINATOR_KEYS).n, 2);
    assert_true(
        kt_slice_eq(KT_A(s, BG_KAFKA_FIND_COORDINATOR_REQ_COORDINATOR_KEYS).v[1].s, "tx-b"));
}

static void test_find_coordinator_resp(void **state)
{
    kt_vec_t v;
    kt_init(&v, 0);
    kt_i16(&v, 0), kt_i32(&v, 1), kt_str(&v, "b1"), kt_i32(&v, 9092);
    bg_kafka_struct_t *s = KT_RT(bg_kafka_msg_find_coordinator_resp, 0, v);
    assert_true(kt_slice_eq(KT_S(s, BG_KAFKA_FIND_COORDINATOR_RESP_HOST), "b1"));
    assert_int_equal(KT_I(s, BG_KAFKA_FIND_COORDINATOR_RESP_PORT), 9092);

    kt_init(&v, 1);
    kt_i32(&v, 0), kt_i16(&v, 0), kt_str(&v, NULL), kt_i32(&v, 1), kt_str(&v, "b1"),
        kt_i32(&v, 9092), kt_tags0(&v);
    s = KT_RT(bg_kafka_msg_find_coordinator_resp, 3, v);
    assert_int_equal(KT_I(s, BG_KAFKA_FIND_COORDINATOR_RESP_NODE_ID), 1);

    kt_init(&v, 1);
    kt_i32(&v, 0);
    kt_arr(&v, 2);
    kt_str(&v, "tx-a"), kt_i32(&v, 1), kt_str(&v, "b1"), kt_i32(&v, 9092), kt_i16(&v, 0),
        kt_str(&v, NULL), kt_tags0(&v);
    kt_str(&v, "tx-b"), kt_i32(&v, -1), kt_str(&v, ""), kt_i32(&v, -1), kt_i16(&v, 15),
        kt_str(&v, "not available"), kt_tags0(&v);
    kt_tags0(&v);
    s = KT_RT(bg_kafka_msg_find_coordinator_resp, 6, v);
    bg_kafka_struct_t *c = KT_A(s, BG_KAFKA_FIND_COORDINATOR_RESP_COORDINATORS).s[1];
    assert_int_equal(KT_I(c, BG_KAFKA_FIND_COORDINATOR_RESP_COORDINATORS_ERROR_CODE), 15);
    assert_true(kt_slice_eq(KT_S(c, BG_KAFKA_FIND_COORDINATOR_RESP_COORDINATORS_ERROR_MESSAGE),
                            "not available"));
}

/* ---- SASL ---- */

static void test_sasl(void **state)
{
    for (int16_t ver = 0; ver <= 1; ver++) {
        kt_vec_t v;
        kt_init(&v, 0);
        kt_str(&v, "OAUTHBEARER");
        bg_kafka_struct_t *s = KT_RT(bg_kafka_msg_sasl_handshake_req, ver, v);
        assert_true(kt_slice_eq(KT_S(s, BG_KAFKA_SASL_HANDSHAKE_REQ_MECHANISM), "OAUTHBEARER"));
        kt_init(&v, 0);
        kt_i16(&v, 33);
        kt_arr(&v, 2), kt_str(&v, "PLAIN"), kt_str(&v, "OAUTHBEARER");
        s = KT_RT(bg_kafka_msg_sasl_handshake_resp, ver, v);
        assert_int_equal(KT_I(s, BG_KAFKA_SASL_HANDSHAKE_RESP_ERROR_CODE), 33);
        assert_true(
            kt_slice_eq(KT_A(s, BG_KAFKA_SASL_HANDSHAKE_RESP_MECHANISMS).v[1].s, "OAUTHBEARER"));
    }
    static const char msg[] = "n,,\x01"
                              "auth=Bearer x\x01\x01";
    kt_vec_t v;
    kt_init(&v, 0);
    kt_bytes(&v, msg, (int)strlen(msg));
    bg_kafka_struct_t *s = KT_RT(bg_kafka_msg_sasl_authenticate_req, 0, v);
    assert_true(kt_slice_eq(KT_S(s, BG_KAFKA_SASL_AUTHENTICATE_REQ_AUTH_BYTES), msg));
    kt_init(&v, 1);
    kt_bytes(&v, msg, (int)strlen(msg)), kt_tags0(&v);
    s = KT_RT(bg_kafka_msg_sasl_authenticate_req, 2, v);
    assert_true(kt_slice_eq(KT_S(s, BG_KAFKA_SASL_AUTHENTICATE_REQ_AUTH_BYTES), msg));

    kt_init(&v, 0);
    kt_i16(&v, 0), kt_str(&v, NULL), kt_bytes(&v, "", 0);
    s = KT_RT(bg_kafka_msg_sasl_authenticate_resp, 0, v);
    assert_int_equal(KT_I(s, BG_KAFKA_SASL_AUTHENTICATE_RESP_SESSION_LIFETIME_MS), 0);
    kt_init(&v, 1);
    kt_i16(&v, 0), kt_str(&v, NULL), kt_bytes(&v, "", 0), kt_i64(&v, 3600000), kt_tags0(&v);
    s = KT_RT(bg_kafka_msg_sasl_authenticate_resp, 2, v);
    assert_int_equal(KT_I(s, BG_KAFKA_SASL_AUTHENTICATE_RESP_SESSION_LIFETIME_MS), 3600000);
}

/* ---- CreateTopics / DeleteTopics ---- */

static void test_create_topics(void **state)
{
    kt_vec_t v;
    kt_init(&v, 0);
    kt_arr(&v, 1);
    kt_str(&v, "t"), kt_i32(&v, 3), kt_i16(&v, 1), kt_arr(&v, 0);
    kt_arr(&v, 1), kt_str(&v, "retention.ms"), kt_str(&v, "1000");
    kt_i32(&v, 60000), kt_i8(&v, 0);
    bg_kafka_struct_t *s = KT_RT(bg_kafka_msg_create_topics_req, 2, v);
    bg_kafka_struct_t *t = KT_A(s, BG_KAFKA_CREATE_TOPICS_REQ_TOPICS).s[0];
    assert_int_equal(KT_I(t, BG_KAFKA_CREATE_TOPICS_REQ_TOPICS_NUM_PARTITIONS), 3);
    assert_true(kt_slice_eq(KT_S(KT_A(t, BG_KAFKA_CREATE_TOPICS_REQ_TOPICS_CONFIGS).s[0],
                                 BG_KAFKA_CREATE_TOPICS_REQ_TOPICS_CONFIGS_VALUE),
                            "1000"));

    kt_init(&v, 1);
    kt_arr(&v, 1);
    kt_str(&v, "t"), kt_i32(&v, -1), kt_i16(&v, -1);
    kt_arr(&v, 1), kt_i32(&v, 0), kt_arr(&v, 2), kt_i32(&v, 1), kt_i32(&v, 2), kt_tags0(&v);
    kt_arr(&v, 1), kt_str(&v, "cleanup.policy"), kt_str(&v, NULL), kt_tags0(&v);
    kt_tags0(&v);
    kt_i32(&v, 60000), kt_i8(&v, 1), kt_tags0(&v);
    s = KT_RT(bg_kafka_msg_create_topics_req, 7, v);
    assert_int_equal(KT_I(s, BG_KAFKA_CREATE_TOPICS_REQ_VALIDATE_ONLY), 1);
    t = KT_A(s, BG_KAFKA_CREATE_TOPICS_REQ_TOPICS).s[0];
    bg_kafka_struct_t *as = KT_A(t, BG_KAFKA_CREATE_TOPICS_REQ_TOPICS_ASSIGNMENTS).s[0];
    assert_int_equal(KT_A(as, BG_KAFKA_CREATE_TOPICS_REQ_TOPICS_ASSIGNMENTS_BROKER_IDS).v[1].i, 2);

    kt_init(&v, 0);
    kt_i32(&v, 0);
    kt_arr(&v, 1), kt_str(&v, "t"), kt_i16(&v, 36), kt_str(&v, "exists");
    s = KT_RT(bg_kafka_msg_create_topics_resp, 2, v);
    t = KT_A(s, BG_KAFKA_CREATE_TOPICS_RESP_TOPICS).s[0];
    assert_int_equal(KT_I(t, BG_KAFKA_CREATE_TOPICS_RESP_TOPICS_ERROR_CODE), 36);

    kt_vec_t tce;
    kt_init(&tce, 1);
    kt_i16(&tce, 7);
    kt_init(&v, 1);
    kt_i32(&v, 0);
    kt_arr(&v, 1);
    kt_str(&v, "t"), kt_uuid(&v, 0x44), kt_i16(&v, 0), kt_str(&v, NULL), kt_i32(&v, 3),
        kt_i16(&v, 1), kt_arr(&v, -1);
    kt_uv(&v, 1), kt_tag(&v, 0, &tce);
    kt_tags0(&v);
    s = KT_RT(bg_kafka_msg_create_topics_resp, 7, v);
    t = KT_A(s, BG_KAFKA_CREATE_TOPICS_RESP_TOPICS).s[0];
    assert_int_equal(KT_I(t, BG_KAFKA_CREATE_TOPICS_RESP_TOPICS_TOPIC_CONFIG_ERROR_CODE), 7);
    assert_int_equal(KT_A(t, BG_KAFKA_CREATE_TOPICS_RESP_TOPICS_CONFIGS).n, -1);
}

static void test_delete_topics(void **state)
{
    kt_vec_t v;
    kt_init(&v, 0);
    kt_arr(&v, 2), kt_str(&v, "a"), kt_str(&v, "b"), kt_i32(&v, 30000);
    bg_kafka_struct_t *s = KT_RT(bg_kafka_msg_delete_topics_req, 1, v);
    assert_true(kt_slice_eq(KT_A(s, BG_KAFKA_DELETE_TOPICS_REQ_TOPIC_NAMES).v[0].s, "a"));

    kt_init(&v, 1);
    kt_arr(&v, 2);
    kt_str(&v, "a"), kt_uuid(&v, 0), kt_tags0(&v);
    kt_str(&v, NULL), kt_uuid(&v, 0x55), kt_tags0(&v);
    kt_i32(&v, 30000), kt_tags0(&v);
    s = KT_RT(bg_kafka_msg_delete_topics_req, 6, v);
    bg_kafka_struct_t *t = KT_A(s, BG_KAFKA_DELETE_TOPICS_REQ_TOPICS).s[1];
    assert_true(kt_slice_eq(KT_S(t, BG_KAFKA_DELETE_TOPICS_REQ_TOPICS_NAME), NULL));
    assert_int_equal(t->f[BG_KAFKA_DELETE_TOPICS_REQ_TOPICS_TOPIC_ID].uuid[3], 0x55);

    kt_init(&v, 0);
    kt_i32(&v, 0), kt_arr(&v, 1), kt_str(&v, "a"), kt_i16(&v, 0);
    s = KT_RT(bg_kafka_msg_delete_topics_resp, 1, v);
    assert_int_equal(KT_A(s, BG_KAFKA_DELETE_TOPICS_RESP_RESPONSES).n, 1);

    kt_init(&v, 1);
    kt_i32(&v, 0), kt_arr(&v, 1);
    kt_str(&v, NULL), kt_uuid(&v, 0x55), kt_i16(&v, 3), kt_str(&v, "unknown"), kt_tags0(&v);
    kt_tags0(&v);
    s = KT_RT(bg_kafka_msg_delete_topics_resp, 6, v);
    t = KT_A(s, BG_KAFKA_DELETE_TOPICS_RESP_RESPONSES).s[0];
    assert_int_equal(KT_I(t, BG_KAFKA_DELETE_TOPICS_RESP_RESPONSES_ERROR_CODE), 3);
}

/* ---- OffsetCommit / JoinGroup / DescribeCluster ---- */

static void test_offset_commit(void **state)
{
    kt_vec_t v;
    kt_init(&v, 0);
    kt_str(&v, "grp"), kt_i32(&v, 5), kt_str(&v, "member-1"), kt_i64(&v, -1);
    kt_arr(&v, 1), kt_str(&v, "orders");
    kt_arr(&v, 1), kt_i32(&v, 0), kt_i64(&v, 42), kt_str(&v, "meta");
    bg_kafka_struct_t *s = KT_RT(bg_kafka_msg_offset_commit_req, 2, v);
    assert_int_equal(KT_I(s, BG_KAFKA_OFFSET_COMMIT_REQ_GENERATION_ID_OR_MEMBER_EPOCH), 5);
    bg_kafka_struct_t *p = KT_A(KT_A(s, BG_KAFKA_OFFSET_COMMIT_REQ_TOPICS).s[0],
                                BG_KAFKA_OFFSET_COMMIT_REQ_TOPICS_PARTITIONS)
                               .s[0];
    assert_int_equal(KT_I(p, BG_KAFKA_OFFSET_COMMIT_REQ_TOPICS_PARTITIONS_COMMITTED_OFFSET), 42);

    kt_init(&v, 1);
    kt_str(&v, "grp"), kt_i32(&v, 5), kt_str(&v, "m1"), kt_str(&v, NULL);
    kt_arr(&v, 1), kt_uuid(&v, 0x66);
    kt_arr(&v, 1), kt_i32(&v, 0), kt_i64(&v, 42), kt_i32(&v, 3), kt_str(&v, NULL), kt_tags0(&v);
    kt_tags0(&v), kt_tags0(&v);
    s = KT_RT(bg_kafka_msg_offset_commit_req, 10, v);
    p = KT_A(KT_A(s, BG_KAFKA_OFFSET_COMMIT_REQ_TOPICS).s[0],
             BG_KAFKA_OFFSET_COMMIT_REQ_TOPICS_PARTITIONS)
            .s[0];
    assert_int_equal(KT_I(p, BG_KAFKA_OFFSET_COMMIT_REQ_TOPICS_PARTITIONS_COMMITTED_LEADER_EPOCH),
                     3);

    kt_init(&v, 0);
    kt_arr(&v, 1), kt_str(&v, "orders"), kt_arr(&v, 1), kt_i32(&v, 0), kt_i16(&v, 29);
    s = KT_RT(bg_kafka_msg_offset_commit_resp, 2, v);
    p = KT_A(KT_A(s, BG_KAFKA_OFFSET_COMMIT_RESP_TOPICS).s[0],
             BG_KAFKA_OFFSET_COMMIT_RESP_TOPICS_PARTITIONS)
            .s[0];
    assert_int_equal(KT_I(p, BG_KAFKA_OFFSET_COMMIT_RESP_TOPICS_PARTITIONS_ERROR_CODE), 29);

    kt_init(&v, 1);
    kt_i32(&v, 0), kt_arr(&v, 1), kt_uuid(&v, 0x66);
    kt_arr(&v, 1), kt_i32(&v, 0), kt_i16(&v, 0), kt_tags0(&v);
    kt_tags0(&v), kt_tags0(&v);
    s = KT_RT(bg_kafka_msg_offset_commit_resp, 10, v);
    assert_int_equal(KT_A(s, BG_KAFKA_OFFSET_COMMIT_RESP_TOPICS).n, 1);
}

static void test_join_group(void **state)
{
    kt_vec_t v;
    kt_init(&v, 0);
    kt_str(&v, "grp"), kt_i32(&v, 10000), kt_str(&v, ""), kt_str(&v, "consumer");
    kt_arr(&v, 1), kt_str(&v, "range"), kt_bytes(&v, "\x00\x01", 2);
    bg_kafka_struct_t *s = KT_RT(bg_kafka_msg_join_group_req, 0, v);
    assert_int_equal(KT_I(s, BG_KAFKA_JOIN_GROUP_REQ_SESSION_TIMEOUT_MS), 10000);
    assert_int_equal(KT_I(s, BG_KAFKA_JOIN_GROUP_REQ_REBALANCE_TIMEOUT_MS), -1);

    kt_init(&v, 1);
    kt_str(&v, "grp"), kt_i32(&v, 45000), kt_i32(&v, 300000), kt_str(&v, "m1"), kt_str(&v, NULL),
        kt_str(&v, "consumer");
    kt_arr(&v, 1), kt_str(&v, "range"), kt_bytes(&v, "\x00\x01", 2), kt_tags0(&v);
    kt_str(&v, "rejoin"), kt_tags0(&v);
    s = KT_RT(bg_kafka_msg_join_group_req, 9, v);
    assert_true(kt_slice_eq(KT_S(s, BG_KAFKA_JOIN_GROUP_REQ_REASON), "rejoin"));

    kt_init(&v, 0);
    kt_i16(&v, 0), kt_i32(&v, 1), kt_str(&v, "range"), kt_str(&v, "m1"), kt_str(&v, "m1");
    kt_arr(&v, 1), kt_str(&v, "m1"), kt_bytes(&v, "\x00\x01", 2);
    s = KT_RT(bg_kafka_msg_join_group_resp, 0, v);
    assert_int_equal(KT_I(s, BG_KAFKA_JOIN_GROUP_RESP_GENERATION_ID), 1);

    kt_init(&v, 1);
    kt_i32(&v, 0), kt_i16(&v, 0), kt_i32(&v, 1), kt_str(&v, "consumer"), kt_str(&v, "range"),
        kt_str(&v, "m1"), kt_i8(&v, 0), kt_str(&v, "m1");
    kt_arr(&v, 1), kt_str(&v, "m1"), kt_str(&v, NULL), kt_bytes(&v, "\x00\x01", 2), kt_tags0(&v);
    kt_tags0(&v);
    s = KT_RT(bg_kafka_msg_join_group_resp, 9, v);
    assert_true(kt_slice_eq(KT_S(s, BG_KAFKA_JOIN_GROUP_RESP_LEADER), "m1"));
    assert_int_equal(KT_S(KT_A(s, BG_KAFKA_JOIN_GROUP_RESP_MEMBERS).s[0],
                          BG_KAFKA_JOIN_GROUP_RESP_MEMBERS_METADATA)
                         .len,
                     2);
}

static void test_describe_cluster(void **state)
{
    kt_vec_t v;
    kt_init(&v, 1);
    kt_i8(&v, 0), kt_tags0(&v);
    bg_kafka_struct_t *s = KT_RT(bg_kafka_msg_describe_cluster_req, 0, v);
    assert_int_equal(KT_I(s, BG_KAFKA_DESCRIBE_CLUSTER_REQ_ENDPOINT_TYPE), 1); /* default */
    kt_init(&v, 1);
    kt_i8(&v, 1), kt_i8(&v, 2), kt_i8(&v, 0), kt_tags0(&v);
    s = KT_RT(bg_kafka_msg_describe_cluster_req, 2, v);
    assert_int_equal(KT_I(s, BG_KAFKA_DESCRIBE_CLUSTER_REQ_ENDPOINT_TYPE), 2);

    kt_init(&v, 1);
    kt_i32(&v, 0), kt_i16(&v, 0), kt_str(&v, NULL), kt_str(&v, "cid"), kt_i32(&v, 1);
    kt_arr(&v, 1), kt_i32(&v, 1), kt_str(&v, "b1"), kt_i32(&v, 9092), kt_str(&v, NULL),
        kt_tags0(&v);
    kt_i32(&v, INT32_MIN), kt_tags0(&v);
    s = KT_RT(bg_kafka_msg_describe_cluster_resp, 0, v);
    assert_true(kt_slice_eq(KT_S(s, BG_KAFKA_DESCRIBE_CLUSTER_RESP_CLUSTER_ID), "cid"));

    kt_init(&v, 1);
    kt_i32(&v, 0), kt_i16(&v, 0), kt_str(&v, NULL), kt_i8(&v, 1), kt_str(&v, "cid"), kt_i32(&v, 1);
    kt_arr(&v, 1), kt_i32(&v, 1), kt_str(&v, "b1"), kt_i32(&v, 9092), kt_str(&v, "r1"),
        kt_i8(&v, 1), kt_tags0(&v);
    kt_i32(&v, INT32_MIN), kt_tags0(&v);
    s = KT_RT(bg_kafka_msg_describe_cluster_resp, 2, v);
    bg_kafka_struct_t *b = KT_A(s, BG_KAFKA_DESCRIBE_CLUSTER_RESP_BROKERS).s[0];
    assert_int_equal(KT_I(b, BG_KAFKA_DESCRIBE_CLUSTER_RESP_BROKERS_IS_FENCED), 1);
    assert_int_equal(KT_I(b, BG_KAFKA_DESCRIBE_CLUSTER_RESP_BROKERS_PORT), 9092);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_api_versions_req, kt_setup, kt_teardown),
        cmocka_unit_test_setup_teardown(test_api_versions_resp, kt_setup, kt_teardown),
        cmocka_unit_test_setup_teardown(test_metadata_req, kt_setup, kt_teardown),
        cmocka_unit_test_setup_teardown(test_metadata_resp, kt_setup, kt_teardown),
        cmocka_unit_test_setup_teardown(test_produce_req, kt_setup, kt_teardown),
        cmocka_unit_test_setup_teardown(test_produce_resp, kt_setup, kt_teardown),
        cmocka_unit_test_setup_teardown(test_fetch_req, kt_setup, kt_teardown),
        cmocka_unit_test_setup_teardown(test_fetch_resp, kt_setup, kt_teardown),
        cmocka_unit_test_setup_teardown(test_find_coordinator_req, kt_setup, kt_teardown),
        cmocka_unit_test_setup_teardown(test_find_coordinator_resp, kt_setup, kt_teardown),
        cmocka_unit_test_setup_teardown(test_sasl, kt_setup, kt_teardown),
        cmocka_unit_test_setup_teardown(test_create_topics, kt_setup, kt_teardown),
        cmocka_unit_test_setup_teardown(test_delete_topics, kt_setup, kt_teardown),
        cmocka_unit_test_setup_teardown(test_offset_commit, kt_setup, kt_teardown),
        cmocka_unit_test_setup_teardown(test_join_group, kt_setup, kt_teardown),
        cmocka_unit_test_setup_teardown(test_describe_cluster, kt_setup, kt_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
