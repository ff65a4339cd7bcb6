/* Kafka authorization: Metadata and ListGroups filtering and the
 * policy-independent response rewrites (broker addresses, node ids, topic
 * id learning). */
#include "test_kafka_authz_util.h"

typedef struct {
    int n;
    uint8_t id0[8];
    char names[8][16];
} learned_t;

static void learn(void *arg, const uint8_t id[16], bg_slice_t name)
{
    learned_t *l = arg;
    if (l->n < 8 && name.len < 16) {
        l->id0[l->n] = id[0];
        memcpy(l->names[l->n], name.p, (size_t)name.len);
        l->names[l->n][name.len] = 0;
        l->n++;
    }
}

/* Upstream Metadata response: brokers 1 and 2, topics orders / secret / public. */
static bg_kafka_struct_t *md_resp(ka_fix_t *f)
{
    bg_kafka_struct_t *r = ka_new(f, 3, 1);
    bg_kafka_struct_t **b = bg_kafka_array_new(&f->a, r, K(METADATA_RESP_BROKERS), 2);
    for (int i = 0; i < 2; i++) {
        b[i]->f[K(METADATA_RESP_BROKERS_NODE_ID)].i = i + 1;
        b[i]->f[K(METADATA_RESP_BROKERS_HOST)].s = ka_s("10.0.0.1");
        b[i]->f[K(METADATA_RESP_BROKERS_PORT)].i = 9092;
        b[i]->f[K(METADATA_RESP_BROKERS_RACK)].s = ka_s("r1");
    }
    const char *const names[] = {"orders", "secret", "public"};
    bg_kafka_struct_t **t = ka_topics(f, r, K(METADATA_RESP_TOPICS), K(METADATA_RESP_TOPICS_NAME),
                                      names, 3, K(METADATA_RESP_TOPICS_PARTITIONS),
                                      K(METADATA_RESP_TOPICS_PARTITIONS_PARTITION_INDEX), 1);
    for (int i = 0; i < 3; i++)
        t[i]->f[K(METADATA_RESP_TOPICS_TOPIC_ID)].uuid[0] = (uint8_t)(i + 1);
    return r;
}

static void test_metadata_all_topics(void **st)
{
    ka_fix_t *f = *st;
    for (int16_t ver = 1; ver <= 13; ver += 12) {
        bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_METADATA, ver);
        bg_kafka_struct_t *req = ka_new(f, 3, 0);
        req->f[K(METADATA_REQ_TOPICS)].a.n = -1;
        bg_kafka_verdict_t v;
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, ka_rt(f, 3, 0, ver, req), &f->a, &v),
                         0);
        assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
        assert_int_equal(v.needs_response, 1);
        /* The listing itself is recorded (an allow on "*"), not the hidden topics. */
        assert_int_equal(v.ndecisions, 1);
        assert_int_equal(v.decisions[0].decision.effect, BG_EFFECT_ALLOW);
        assert_int_equal(v.decisions[0].verb, BG_VERB_DESCRIBE);
        assert_int_equal(v.decisions[0].nresources, 1);
        assert_int_equal(v.decisions[0].resources[0].type, BG_RES_KAFKA_TOPIC);
        assert_memory_equal(v.decisions[0].resources[0].name, "*", 1);
        assert_int_equal(v.decisions[0].resources[0].name_len, 1);
        assert_non_null(strstr(v.decisions[0].reason, "listing"));
        bg_kafka_struct_t *out;
        int32_t nodes[4];
        size_t nn = 4;
        learned_t l = {0};
        assert_int_equal(bg_kafka_authz_response(&f->ctx, &h, &v, ka_rt(f, 3, 1, ver, md_resp(f)),
                                                 &f->a, &out, nodes, &nn, learn, &l),
                         0);
        bg_kafka_struct_t *m = ka_rt(f, 3, 1, ver, out);
        /* secret is hidden entirely; orders and public stay. */
        assert_int_equal(m->f[K(METADATA_RESP_TOPICS)].a.n, 2);
        assert_true(ka_eq(ka_el(m, K(METADATA_RESP_TOPICS), 0)->f[K(METADATA_RESP_TOPICS_NAME)].s,
                          "orders"));
        assert_true(ka_eq(ka_el(m, K(METADATA_RESP_TOPICS), 1)->f[K(METADATA_RESP_TOPICS_NAME)].s,
                          "public"));
        /* Brokers rewritten, rack kept, nodes reported. */
        bg_kafka_struct_t *b = ka_el(m, K(METADATA_RESP_BROKERS), 1);
        assert_true(ka_eq(b->f[K(METADATA_RESP_BROKERS_HOST)].s, "gw.example"));
        assert_int_equal(b->f[K(METADATA_RESP_BROKERS_PORT)].i, 19002);
        if (ver >= 1)
            assert_true(ka_eq(b->f[K(METADATA_RESP_BROKERS_RACK)].s, "r1"));
        assert_int_equal(nn, 2);
        assert_int_equal(nodes[0], 1);
        assert_int_equal(nodes[1], 2);
        /* Topic ids learned from v10+ (all three: before filtering). */
        assert_int_equal(l.n, ver >= 10 ? 3 : 0);
        if (ver >= 10)
            assert_string_equal(l.names[1], "secret");
    }
}

/* an error entry (ErrorCode != 0) teaches no topic id, even one the
 * table has not seen: Kafka's error form echoes the request's own name and
 * id (kafka_authz_rewrite.c learn_arr). */
static void test_metadata_error_entry_teaches_no_id(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_METADATA, 12);
    bg_kafka_struct_t *req = ka_new(f, 3, 0);
    req->f[K(METADATA_REQ_TOPICS)].a.n = -1;
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, ka_rt(f, 3, 0, 12, req), &f->a, &v), 0);
    bg_kafka_struct_t *up = md_resp(f), *out;
    ka_el(up, K(METADATA_RESP_TOPICS), 1)->f[K(METADATA_RESP_TOPICS_ERROR_CODE)].i = 3;
    int32_t nodes[4];
    size_t nn = 4;
    learned_t l = {0};
    assert_int_equal(bg_kafka_authz_response(&f->ctx, &h, &v, ka_rt(f, 3, 1, 12, up), &f->a, &out,
                                             nodes, &nn, learn, &l),
                     0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.names[0], "orders");
    assert_string_equal(l.names[1], "public");
}

/* The v12 Metadata response the client gets for verdict v when the broker
 * answers with the one topic "orders". */
static bg_kafka_struct_t *md_merged_orders(ka_fix_t *f, const bg_kafka_req_hdr_t *h,
                                           const bg_kafka_verdict_t *v)
{
    bg_kafka_struct_t *up = ka_new(f, 3, 1), *out;
    const char *const one[] = {"orders"};
    ka_topics(f, up, K(METADATA_RESP_TOPICS), K(METADATA_RESP_TOPICS_NAME), one, 1, -1, -1, 0);
    size_t nn = 0;
    assert_int_equal(
        bg_kafka_authz_response(&f->ctx, h, v, up, &f->a, &out, NULL, &nn, NULL, NULL), 0);
    return ka_rt(f, 3, 1, 12, out);
}

static void test_metadata_explicit(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_METADATA, 12);
    bg_kafka_struct_t *req = ka_new(f, 3, 0);
    const char *const names[] = {"orders", "secret"};
    ka_topics(f, req, K(METADATA_REQ_TOPICS), K(METADATA_REQ_TOPICS_NAME), names, 2, -1, -1, 0);
    req->f[K(METADATA_REQ_ALLOW_AUTO_TOPIC_CREATION)].i = 1;
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, ka_rt(f, 3, 0, 12, req), &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    assert_int_equal(v.request->f[K(METADATA_REQ_TOPICS)].a.n, 1);
    /* orders may be created: auto-creation kept. */
    assert_int_equal(v.request->f[K(METADATA_REQ_ALLOW_AUTO_TOPIC_CREATION)].i, 1);
    bg_kafka_struct_t *m = md_merged_orders(f, &h, &v);
    assert_int_equal(m->f[K(METADATA_RESP_TOPICS)].a.n, 2);
    bg_kafka_struct_t *t = ka_el(m, K(METADATA_RESP_TOPICS), 1);
    assert_true(ka_eq(t->f[K(METADATA_RESP_TOPICS_NAME)].s, "secret"));
    assert_int_equal(t->f[K(METADATA_RESP_TOPICS_ERROR_CODE)].i, 29);
    assert_int_equal(t->f[K(METADATA_RESP_TOPICS_PARTITIONS)].a.n, 0);

    /* public: describable but not creatable -> auto-creation switched off. */
    const char *const pub[] = {"public"};
    req = ka_new(f, 3, 0);
    ka_topics(f, req, K(METADATA_REQ_TOPICS), K(METADATA_REQ_TOPICS_NAME), pub, 1, -1, -1, 0);
    req->f[K(METADATA_REQ_ALLOW_AUTO_TOPIC_CREATION)].i = 1;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    assert_int_equal(v.request->f[K(METADATA_REQ_ALLOW_AUTO_TOPIC_CREATION)].i, 0);
    assert_int_equal(v.request->f[K(METADATA_REQ_TOPICS)].a.n, 1);

    /* v0-3 cannot switch auto-creation off, and a broker auto-creates the
     * named topics: with a topic the principal may not create, the request
     * goes upstream as v4 with auto-creation off (the response comes back
     * at v4 and is re-encoded at the client's version). All creatable: kept. */
    for (int16_t ver = 0; ver <= 3; ver++) {
        bg_kafka_req_hdr_t h1 = ka_hdr(BG_KAFKA_API_METADATA, ver);
        for (int creatable = 0; creatable < 2; creatable++) {
            const char *const one[] = {creatable ? "orders.new" : "public"};
            req = ka_new(f, 3, 0);
            ka_topics(f, req, K(METADATA_REQ_TOPICS), K(METADATA_REQ_TOPICS_NAME), one, 1, -1, -1,
                      0);
            req = ka_rt(f, 3, 0, ver, req);
            assert_int_equal(bg_kafka_authz_request(&f->ctx, &h1, req, &f->a, &v), 0);
            if (creatable) {
                assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
                assert_int_equal(v.upstream_version, 0);
                continue;
            }
            assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
            assert_int_equal(v.upstream_version, 4);
            bg_kafka_struct_t *up4 = ka_rt(f, 3, 0, 4, v.request);
            assert_int_equal(up4->f[K(METADATA_REQ_ALLOW_AUTO_TOPIC_CREATION)].i, 0);
            assert_true(ka_eq(ka_el(up4, K(METADATA_REQ_TOPICS), 0)->f[K(METADATA_REQ_TOPICS_NAME)].s,
                              "public"));
        }
    }

    /* Everything denied: still forwarded (brokers are needed), with no topics. */
    const char *const sec[] = {"secret"};
    req = ka_new(f, 3, 0);
    ka_topics(f, req, K(METADATA_REQ_TOPICS), K(METADATA_REQ_TOPICS_NAME), sec, 1, -1, -1, 0);
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    assert_int_equal(v.request->f[K(METADATA_REQ_TOPICS)].a.n, 0);
}

/* Metadata v12+ by topic id: the broker goes by the id, so busgate decides
 * on the id's topic even when the entry also carries an allowed name, and
 * refuses it without the name (as Kafka does: the name would tell what the
 * id is). */
static void test_metadata_by_id(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_METADATA, 12);
    bg_kafka_struct_t *req = ka_new(f, 3, 0);
    const char *const names[] = {"orders", "orders"};
    ka_topics(f, req, K(METADATA_REQ_TOPICS), K(METADATA_REQ_TOPICS_NAME), names, 2, -1, -1, 0);
    /* 2 = secret (with the name "orders" beside it), 1 = orders. */
    ka_el(req, K(METADATA_REQ_TOPICS), 0)->f[K(METADATA_REQ_TOPICS_TOPIC_ID)].uuid[0] = 2;
    ka_el(req, K(METADATA_REQ_TOPICS), 1)->f[K(METADATA_REQ_TOPICS_TOPIC_ID)].uuid[0] = 1;
    ka_el(req, K(METADATA_REQ_TOPICS), 1)->f[K(METADATA_REQ_TOPICS_NAME)].s =
        bg_kafka_null_slice();
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, ka_rt(f, 3, 0, 12, req), &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    assert_int_equal(v.request->f[K(METADATA_REQ_TOPICS)].a.n, 1);
    assert_int_equal(
        ka_el(v.request, K(METADATA_REQ_TOPICS), 0)->f[K(METADATA_REQ_TOPICS_TOPIC_ID)].uuid[0], 1);
    bg_kafka_struct_t *m = md_merged_orders(f, &h, &v);
    assert_int_equal(m->f[K(METADATA_RESP_TOPICS)].a.n, 2);
    bg_kafka_struct_t *t = ka_el(m, K(METADATA_RESP_TOPICS), 1);
    assert_int_equal(t->f[K(METADATA_RESP_TOPICS_ERROR_CODE)].i, 29);
    assert_int_equal(t->f[K(METADATA_RESP_TOPICS_TOPIC_ID)].uuid[0], 2);
    assert_true(t->f[K(METADATA_RESP_TOPICS_NAME)].s.len < 0); /* null: secret stays unnamed */
    /* The decision names the id's topic. */
    int found = 0;
    for (size_t i = 0; i < v.ndecisions; i++) {
        const bg_policy_resource_t *r = &v.decisions[i].resources[0];
        if (v.decisions[i].error_code == 29)
            found = r->name_len == 6 && memcmp(r->name, "secret", 6) == 0;
    }
    assert_true(found);
    /* Entries the broker answers without a name: its own error (an id
     * deleted meanwhile, UNKNOWN_TOPIC_ID) stays as it is; one without an
     * error is never passed on undecided (no name: denied, no partitions). */
    bg_kafka_struct_t *up = ka_new(f, 3, 1), *out;
    const char *const three[] = {"orders", "x", "y"};
    bg_kafka_struct_t **ut = ka_topics(f, up, K(METADATA_RESP_TOPICS), K(METADATA_RESP_TOPICS_NAME),
                                       three, 3, K(METADATA_RESP_TOPICS_PARTITIONS),
                                       K(METADATA_RESP_TOPICS_PARTITIONS_PARTITION_INDEX), 1);
    for (int i = 0; i < 3; i++)
        ut[i]->f[K(METADATA_RESP_TOPICS_TOPIC_ID)].uuid[0] = (uint8_t)(i ? 7 + i : 1);
    for (int i = 1; i < 3; i++)
        ut[i]->f[K(METADATA_RESP_TOPICS_NAME)].s = bg_kafka_null_slice();
    ut[1]->f[K(METADATA_RESP_TOPICS_ERROR_CODE)].i = 100; /* UNKNOWN_TOPIC_ID */
    ut[1]->f[K(METADATA_RESP_TOPICS_PARTITIONS)].a.n = 0;
    size_t nn = 0;
    assert_int_equal(bg_kafka_authz_response(&f->ctx, &h, &v, ka_rt(f, 3, 1, 12, up), &f->a, &out,
                                             NULL, &nn, NULL, NULL),
                     0);
    m = ka_rt(f, 3, 1, 12, out);
    assert_int_equal(m->f[K(METADATA_RESP_TOPICS)].a.n, 4); /* with secret's stub */
    t = ka_el(m, K(METADATA_RESP_TOPICS), 1);
    assert_int_equal(t->f[K(METADATA_RESP_TOPICS_ERROR_CODE)].i, 100);
    assert_int_equal(t->f[K(METADATA_RESP_TOPICS_TOPIC_ID)].uuid[0], 8);
    t = ka_el(m, K(METADATA_RESP_TOPICS), 2);
    assert_int_equal(t->f[K(METADATA_RESP_TOPICS_ERROR_CODE)].i, 29);
    assert_int_equal(t->f[K(METADATA_RESP_TOPICS_PARTITIONS)].a.n, 0);
    /* v10-11 carry the id field, but Kafka refuses ids there: so does busgate. */
    bg_kafka_req_hdr_t h11 = ka_hdr(BG_KAFKA_API_METADATA, 11);
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h11, req, &f->a, &v), -1);
    assert_int_equal(v.action, BG_KAFKA_ACT_CLOSE);
}

/* learn_node: what the broker said of each node, before the rewrite. */
typedef struct {
    int n;
    int32_t id[4], port[4];
    char host[4][16];
    int32_t unserved; /* the node busgate does not serve (its port is taken) */
} nodes_seen_t;

static int seen_node(void *arg, int32_t id, bg_slice_t host, int32_t port)
{
    nodes_seen_t *ns = arg;
    if (id == ns->unserved)
        return 0;
    assert_true(ns->n < 4 && host.len > 0 && host.len < 16);
    ns->id[ns->n] = id;
    ns->port[ns->n] = port;
    memcpy(ns->host[ns->n], host.p, (size_t)host.len);
    ns->host[ns->n][host.len] = '\0';
    ns->n++;
    return 1;
}

static void test_find_coordinator(void **st)
{
    ka_fix_t *f = *st;
    nodes_seen_t seen = {.unserved = -1};
    f->ctx.learn_node = seen_node;
    f->ctx.learn_node_arg = &seen;
    /* v3 single form. */
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_FIND_COORDINATOR, 3);
    bg_kafka_struct_t *req = ka_new(f, 10, 0);
    req->f[K(FIND_COORDINATOR_REQ_KEY)].s = ka_s("g1");
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    assert_int_equal(v.needs_response, 1);
    bg_kafka_struct_t *up = ka_new(f, 10, 1), *out;
    up->f[K(FIND_COORDINATOR_RESP_NODE_ID)].i = 3;
    up->f[K(FIND_COORDINATOR_RESP_HOST)].s = ka_s("b3");
    up->f[K(FIND_COORDINATOR_RESP_PORT)].i = 9092;
    int32_t nodes[4];
    size_t nn = 4;
    assert_int_equal(
        bg_kafka_authz_response(&f->ctx, &h, &v, up, &f->a, &out, nodes, &nn, NULL, NULL), 0);
    bg_kafka_struct_t *m = ka_rt(f, 10, 1, 3, out);
    assert_true(ka_eq(m->f[K(FIND_COORDINATOR_RESP_HOST)].s, "gw.example"));
    assert_int_equal(m->f[K(FIND_COORDINATOR_RESP_PORT)].i, 19003);
    assert_int_equal(nn, 1);
    assert_int_equal(nodes[0], 3);
    /* The broker's own address reached learn_node before the rewrite. */
    assert_int_equal(seen.n, 1);
    assert_int_equal(seen.id[0], 3);
    assert_string_equal(seen.host[0], "b3");
    assert_int_equal(seen.port[0], 9092);
    /* Transactional key denied: TRANSACTIONAL_ID_AUTHORIZATION_FAILED. */
    req->f[K(FIND_COORDINATOR_REQ_KEY)].s = ka_s("tx-no");
    req->f[K(FIND_COORDINATOR_REQ_KEY_TYPE)].i = 1;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    m = ka_rt(f, 10, 1, 3, v.response);
    assert_int_equal(m->f[K(FIND_COORDINATOR_RESP_ERROR_CODE)].i, 53);
    /* no node, as Kafka's Node.noNode() (node 0 is a real broker) */
    assert_int_equal(m->f[K(FIND_COORDINATOR_RESP_NODE_ID)].i, -1);
    assert_int_equal(m->f[K(FIND_COORDINATOR_RESP_HOST)].s.len, 0);
    assert_int_equal(m->f[K(FIND_COORDINATOR_RESP_PORT)].i, -1);
    /* Key type 2 (share group): INVALID_REQUEST, and the refusal is audited. */
    req->f[K(FIND_COORDINATOR_REQ_KEY_TYPE)].i = 2;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    assert_int_equal(ka_rt(f, 10, 1, 3, v.response)->f[K(FIND_COORDINATOR_RESP_ERROR_CODE)].i, 42);
    assert_int_equal(v.ndecisions, 1);
    assert_int_equal(v.decisions[0].decision.effect, BG_EFFECT_DENY);
    assert_non_null(strstr(v.decisions[0].reason, "key type"));

    /* v6 batched: one key allowed, one denied. */
    h = ka_hdr(BG_KAFKA_API_FIND_COORDINATOR, 6);
    req = ka_new(f, 10, 0);
    bg_kafka_val_t *keys = bg_kafka_array_vals(&f->a, req, K(FIND_COORDINATOR_REQ_COORDINATOR_KEYS), 2);
    keys[0].s = ka_s("g1");
    keys[1].s = ka_s("zz");
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, ka_rt(f, 10, 0, 6, req), &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    assert_int_equal(v.request->f[K(FIND_COORDINATOR_REQ_COORDINATOR_KEYS)].a.n, 1);
    up = ka_new(f, 10, 1);
    bg_kafka_struct_t **c = bg_kafka_array_new(&f->a, up, K(FIND_COORDINATOR_RESP_COORDINATORS), 1);
    c[0]->f[K(FIND_COORDINATOR_RESP_COORDINATORS_KEY)].s = ka_s("g1");
    c[0]->f[K(FIND_COORDINATOR_RESP_COORDINATORS_NODE_ID)].i = 5;
    c[0]->f[K(FIND_COORDINATOR_RESP_COORDINATORS_HOST)].s = ka_s("b5");
    c[0]->f[K(FIND_COORDINATOR_RESP_COORDINATORS_PORT)].i = 9095;
    nn = 4;
    assert_int_equal(
        bg_kafka_authz_response(&f->ctx, &h, &v, up, &f->a, &out, nodes, &nn, NULL, NULL), 0);
    m = ka_rt(f, 10, 1, 6, out);
    assert_int_equal(m->f[K(FIND_COORDINATOR_RESP_COORDINATORS)].a.n, 2);
    bg_kafka_struct_t *c0 = ka_el(m, K(FIND_COORDINATOR_RESP_COORDINATORS), 0);
    bg_kafka_struct_t *c1 = ka_el(m, K(FIND_COORDINATOR_RESP_COORDINATORS), 1);
    assert_int_equal(c0->f[K(FIND_COORDINATOR_RESP_COORDINATORS_PORT)].i, 19005);
    assert_true(ka_eq(c1->f[K(FIND_COORDINATOR_RESP_COORDINATORS_KEY)].s, "zz"));
    assert_int_equal(c1->f[K(FIND_COORDINATOR_RESP_COORDINATORS_ERROR_CODE)].i, 30);
    assert_int_equal(c1->f[K(FIND_COORDINATOR_RESP_COORDINATORS_NODE_ID)].i, -1);
    assert_int_equal(nn, 1);
    /* Only the coordinator found; the refused key's entry names no broker. */
    assert_int_equal(seen.n, 2);
    assert_int_equal(seen.id[1], 5);
    assert_string_equal(seen.host[1], "b5");
    assert_int_equal(seen.port[1], 9095);
    f->ctx.learn_node = NULL;
}

static void test_describe_cluster(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_DESCRIBE_CLUSTER, 1);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, ka_new(f, 60, 0), &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    assert_int_equal(v.needs_response, 1);
    bg_kafka_struct_t *up = ka_new(f, 60, 1), *out;
    bg_kafka_struct_t **b = bg_kafka_array_new(&f->a, up, K(DESCRIBE_CLUSTER_RESP_BROKERS), 1);
    b[0]->f[K(DESCRIBE_CLUSTER_RESP_BROKERS_BROKER_ID)].i = 7;
    b[0]->f[K(DESCRIBE_CLUSTER_RESP_BROKERS_HOST)].s = ka_s("b7");
    int32_t nodes[2];
    size_t nn = 2;
    assert_int_equal(
        bg_kafka_authz_response(&f->ctx, &h, &v, up, &f->a, &out, nodes, &nn, NULL, NULL), 0);
    bg_kafka_struct_t *m = ka_rt(f, 60, 1, 1, out);
    b[0] = ka_el(m, K(DESCRIBE_CLUSTER_RESP_BROKERS), 0);
    assert_true(ka_eq(b[0]->f[K(DESCRIBE_CLUSTER_RESP_BROKERS_HOST)].s, "gw.example"));
    assert_int_equal(b[0]->f[K(DESCRIBE_CLUSTER_RESP_BROKERS_PORT)].i, 19007);
    assert_int_equal(nodes[0], 7);
}

static void test_node_endpoints(void **st)
{
    ka_fix_t *f = *st;
    /* Produce v10: NodeEndpoints tagged field. */
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_PRODUCE, 10);
    bg_kafka_struct_t *req = ka_new(f, 0, 0);
    req->f[K(PRODUCE_REQ_ACKS)].i = 1;
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.needs_response, 1);
    bg_kafka_struct_t *up = ka_new(f, 0, 1), *out;
    bg_kafka_struct_t **e = bg_kafka_array_new(&f->a, up, K(PRODUCE_RESP_NODE_ENDPOINTS), 1);
    e[0]->f[K(PRODUCE_RESP_NODE_ENDPOINTS_NODE_ID)].i = 4;
    e[0]->f[K(PRODUCE_RESP_NODE_ENDPOINTS_HOST)].s = ka_s("b4");
    e[0]->f[K(PRODUCE_RESP_NODE_ENDPOINTS_PORT)].i = 9092;
    up = ka_rt(f, 0, 1, 10, up);
    int32_t nodes[2];
    size_t nn = 2;
    assert_int_equal(
        bg_kafka_authz_response(&f->ctx, &h, &v, up, &f->a, &out, nodes, &nn, NULL, NULL), 0);
    bg_kafka_struct_t *m = ka_rt(f, 0, 1, 10, out);
    e[0] = ka_el(m, K(PRODUCE_RESP_NODE_ENDPOINTS), 0);
    assert_true(ka_eq(e[0]->f[K(PRODUCE_RESP_NODE_ENDPOINTS_HOST)].s, "gw.example"));
    assert_int_equal(e[0]->f[K(PRODUCE_RESP_NODE_ENDPOINTS_PORT)].i, 19004);
    assert_int_equal(nn, 1);
    /* Fetch v16+ is not advertised (responses must cut through busgate) and
     * a v16 request is refused; the NodeEndpoints rewrite stays correct for
     * the day it is. */
    h = ka_hdr(BG_KAFKA_API_FETCH, 16);
    req = ka_new(f, 1, 0);
    req->f[K(FETCH_REQ_SESSION_EPOCH)].i = -1;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), -1);
    assert_int_equal(v.action, BG_KAFKA_ACT_CLOSE);
    memset(&v, 0, sizeof v);
    v.action = BG_KAFKA_ACT_FORWARD;
    v.needs_response = 1;
    up = ka_new(f, 1, 1);
    e = bg_kafka_array_new(&f->a, up, K(FETCH_RESP_NODE_ENDPOINTS), 1);
    e[0]->f[K(FETCH_RESP_NODE_ENDPOINTS_NODE_ID)].i = 2;
    e[0]->f[K(FETCH_RESP_NODE_ENDPOINTS_HOST)].s = ka_s("b2");
    nn = 2;
    assert_int_equal(
        bg_kafka_authz_response(&f->ctx, &h, &v, up, &f->a, &out, nodes, &nn, NULL, NULL), 0);
    m = ka_rt(f, 1, 1, 16, out);
    assert_int_equal(ka_el(m, K(FETCH_RESP_NODE_ENDPOINTS), 0)->f[K(FETCH_RESP_NODE_ENDPOINTS_PORT)].i,
                     19002);
    /* Fetch v15: fast path, no response processing. */
    h = ka_hdr(BG_KAFKA_API_FETCH, 15);
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.needs_response, 0);
}

/* A node busgate does not serve on port_base + id (its port held by
 * another process, or above 65535) is never pointed at: left out of broker
 * lists and NodeEndpoints, and a coordinator on it is answered
 * COORDINATOR_NOT_AVAILABLE without an address. An entry without a node
 * (id < 0) keeps no broker address. */
static void test_unserved_nodes(void **st)
{
    ka_fix_t *f = *st;
    nodes_seen_t seen = {.unserved = 6};
    f->ctx.learn_node = seen_node;
    f->ctx.learn_node_arg = &seen;
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_METADATA, 12);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, ka_new(f, 3, 0), &f->a, &v), 0);
    bg_kafka_struct_t *up = ka_new(f, 3, 1), *out;
    const int32_t ids[] = {1, 6, 50000, -1}; /* served, taken, above 65535, none */
    bg_kafka_struct_t **b = bg_kafka_array_new(&f->a, up, K(METADATA_RESP_BROKERS), 4);
    for (int i = 0; i < 4; i++) {
        b[i]->f[K(METADATA_RESP_BROKERS_NODE_ID)].i = ids[i];
        b[i]->f[K(METADATA_RESP_BROKERS_HOST)].s = ka_s("internal.b");
        b[i]->f[K(METADATA_RESP_BROKERS_PORT)].i = 9092;
    }
    int32_t nodes[4];
    size_t nn = 4;
    assert_int_equal(bg_kafka_authz_response(&f->ctx, &h, &v, ka_rt(f, 3, 1, 12, up), &f->a, &out,
                                             nodes, &nn, NULL, NULL),
                     0);
    bg_kafka_struct_t *m = ka_rt(f, 3, 1, 12, out);
    assert_int_equal(m->f[K(METADATA_RESP_BROKERS)].a.n, 2);
    bg_kafka_struct_t *b0 = ka_el(m, K(METADATA_RESP_BROKERS), 0);
    bg_kafka_struct_t *b1 = ka_el(m, K(METADATA_RESP_BROKERS), 1);
    assert_int_equal(b0->f[K(METADATA_RESP_BROKERS_PORT)].i, 19001);
    assert_int_equal(b1->f[K(METADATA_RESP_BROKERS_NODE_ID)].i, -1);
    assert_int_equal(b1->f[K(METADATA_RESP_BROKERS_HOST)].s.len, 0);
    assert_int_equal(b1->f[K(METADATA_RESP_BROKERS_PORT)].i, -1);

    /* Produce v10 NodeEndpoints: the unserved leader is left out. */
    h = ka_hdr(BG_KAFKA_API_PRODUCE, 10);
    bg_kafka_struct_t *req = ka_new(f, 0, 0);
    req->f[K(PRODUCE_REQ_ACKS)].i = 1;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    up = ka_new(f, 0, 1);
    bg_kafka_struct_t **e = bg_kafka_array_new(&f->a, up, K(PRODUCE_RESP_NODE_ENDPOINTS), 2);
    for (int i = 0; i < 2; i++) {
        e[i]->f[K(PRODUCE_RESP_NODE_ENDPOINTS_NODE_ID)].i = i ? 6 : 1;
        e[i]->f[K(PRODUCE_RESP_NODE_ENDPOINTS_HOST)].s = ka_s("internal.b");
        e[i]->f[K(PRODUCE_RESP_NODE_ENDPOINTS_PORT)].i = 9092;
    }
    nn = 4;
    assert_int_equal(bg_kafka_authz_response(&f->ctx, &h, &v, ka_rt(f, 0, 1, 10, up), &f->a, &out,
                                             nodes, &nn, NULL, NULL),
                     0);
    m = ka_rt(f, 0, 1, 10, out);
    assert_int_equal(m->f[K(PRODUCE_RESP_NODE_ENDPOINTS)].a.n, 1);
    assert_int_equal(ka_el(m, K(PRODUCE_RESP_NODE_ENDPOINTS), 0)
                         ->f[K(PRODUCE_RESP_NODE_ENDPOINTS_NODE_ID)]
                         .i,
                     1);

    /* FindCoordinator v3 and v4: the coordinator on node 6 is unavailable. */
    for (int16_t ver = 3; ver <= 4; ver++) {
        h = ka_hdr(BG_KAFKA_API_FIND_COORDINATOR, ver);
        req = ka_new(f, 10, 0);
        if (ver < 4)
            req->f[K(FIND_COORDINATOR_REQ_KEY)].s = ka_s("g1");
        else
            bg_kafka_array_vals(&f->a, req, K(FIND_COORDINATOR_REQ_COORDINATOR_KEYS), 1)[0].s =
                ka_s("g1");
        assert_int_equal(
            bg_kafka_authz_request(&f->ctx, &h, ka_rt(f, 10, 0, ver, req), &f->a, &v), 0);
        assert_int_equal(v.needs_response, 1);
        up = ka_new(f, 10, 1);
        bg_kafka_struct_t *c = up;
        if (ver >= 4) {
            c = bg_kafka_array_new(&f->a, up, K(FIND_COORDINATOR_RESP_COORDINATORS), 1)[0];
            c->f[K(FIND_COORDINATOR_RESP_COORDINATORS_KEY)].s = ka_s("g1");
        }
        if (ver >= 4) {
            c->f[K(FIND_COORDINATOR_RESP_COORDINATORS_NODE_ID)].i = 6;
            c->f[K(FIND_COORDINATOR_RESP_COORDINATORS_HOST)].s = ka_s("internal.b");
            c->f[K(FIND_COORDINATOR_RESP_COORDINATORS_PORT)].i = 9092;
        } else {
            c->f[K(FIND_COORDINATOR_RESP_NODE_ID)].i = 6;
            c->f[K(FIND_COORDINATOR_RESP_HOST)].s = ka_s("internal.b");
            c->f[K(FIND_COORDINATOR_RESP_PORT)].i = 9092;
        }
        nn = 4;
        assert_int_equal(bg_kafka_authz_response(&f->ctx, &h, &v, ka_rt(f, 10, 1, ver, up), &f->a,
                                                 &out, nodes, &nn, NULL, NULL),
                         0);
        m = ka_rt(f, 10, 1, ver, out);
        if (ver >= 4) {
            c = ka_el(m, K(FIND_COORDINATOR_RESP_COORDINATORS), 0);
            assert_int_equal(c->f[K(FIND_COORDINATOR_RESP_COORDINATORS_ERROR_CODE)].i, 15);
            assert_int_equal(c->f[K(FIND_COORDINATOR_RESP_COORDINATORS_NODE_ID)].i, -1);
            assert_int_equal(c->f[K(FIND_COORDINATOR_RESP_COORDINATORS_HOST)].s.len, 0);
            assert_int_equal(c->f[K(FIND_COORDINATOR_RESP_COORDINATORS_PORT)].i, -1);
        } else {
            assert_int_equal(m->f[K(FIND_COORDINATOR_RESP_ERROR_CODE)].i, 15);
            assert_int_equal(m->f[K(FIND_COORDINATOR_RESP_NODE_ID)].i, -1);
            assert_int_equal(m->f[K(FIND_COORDINATOR_RESP_HOST)].s.len, 0);
            assert_int_equal(m->f[K(FIND_COORDINATOR_RESP_PORT)].i, -1);
        }
    }
    f->ctx.learn_node = NULL;
}

/* The ControllerId of a Metadata or DescribeCluster answer, after the
 * rewrite, when the upstream named controller ctl among brokers 1 and 6
 * (6: busgate does not serve it). */
static int64_t controller_after(ka_fix_t *f, int16_t api, int16_t ver, int64_t ctl)
{
    nodes_seen_t seen = {.unserved = 6};
    f->ctx.learn_node = seen_node;
    f->ctx.learn_node_arg = &seen;
    int md = api == BG_KAFKA_API_METADATA;
    int arr = md ? K(METADATA_RESP_BROKERS) : K(DESCRIBE_CLUSTER_RESP_BROKERS);
    int ctl_idx = md ? K(METADATA_RESP_CONTROLLER_ID) : K(DESCRIBE_CLUSTER_RESP_CONTROLLER_ID);
    bg_kafka_req_hdr_t h = ka_hdr(api, ver);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, ka_new(f, api, 0), &f->a, &v), 0);
    bg_kafka_struct_t *up = ka_new(f, api, 1), *out;
    bg_kafka_struct_t **b = bg_kafka_array_new(&f->a, up, arr, 2);
    for (int i = 0; i < 2; i++) {
        b[i]->f[md ? K(METADATA_RESP_BROKERS_NODE_ID) : K(DESCRIBE_CLUSTER_RESP_BROKERS_BROKER_ID)]
            .i = i ? 6 : 1;
        b[i]->f[md ? K(METADATA_RESP_BROKERS_HOST) : K(DESCRIBE_CLUSTER_RESP_BROKERS_HOST)].s =
            ka_s("internal.b");
        b[i]->f[md ? K(METADATA_RESP_BROKERS_PORT) : K(DESCRIBE_CLUSTER_RESP_BROKERS_PORT)].i =
            9092;
    }
    up->f[ctl_idx].i = ctl;
    int32_t nodes[4];
    size_t nn = 4;
    assert_int_equal(bg_kafka_authz_response(&f->ctx, &h, &v, ka_rt(f, api, 1, ver, up), &f->a,
                                             &out, nodes, &nn, NULL, NULL),
                     0);
    bg_kafka_struct_t *m = ka_rt(f, api, 1, ver, out);
    assert_int_equal(m->f[arr].a.n, 1); /* node 6 left out */
    f->ctx.learn_node = NULL;
    return m->f[ctl_idx].i;
}

/* A controller among the brokers the client is told of stays; one left out
 * (6), never listed (9) or unknown (-1) is -1, Kafka's "none known". */
static void test_controller_not_served(void **st)
{
    ka_fix_t *f = *st;
    static const int16_t apis[][2] = {{BG_KAFKA_API_METADATA, 1},
                                      {BG_KAFKA_API_METADATA, 12},
                                      {BG_KAFKA_API_DESCRIBE_CLUSTER, 0},
                                      {BG_KAFKA_API_DESCRIBE_CLUSTER, 1}};
    for (size_t i = 0; i < sizeof apis / sizeof apis[0]; i++) {
        assert_int_equal(controller_after(f, apis[i][0], apis[i][1], 1), 1);
        assert_int_equal(controller_after(f, apis[i][0], apis[i][1], 6), -1);
        assert_int_equal(controller_after(f, apis[i][0], apis[i][1], 9), -1);
        assert_int_equal(controller_after(f, apis[i][0], apis[i][1], -1), -1);
    }
}

static void test_describe_topic_partitions(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_DESCRIBE_TOPIC_PARTITIONS, 0);
    bg_kafka_struct_t *req = ka_new(f, 75, 0);
    const char *const names[] = {"secret"};
    ka_topics(f, req, K(DESCRIBE_TOPIC_PARTITIONS_REQ_TOPICS),
              K(DESCRIBE_TOPIC_PARTITIONS_REQ_TOPICS_NAME), names, 1, -1, -1, 0);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    bg_kafka_struct_t *m = ka_rt(f, 75, 1, 0, v.response);
    assert_int_equal(ka_el(m, K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS), 0)
                         ->f[K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_ERROR_CODE)]
                         .i,
                     29);
    /* Named topics, one allowed: forwarded without the denied one, its id
     * learned from the answer, the denied one merged back. */
    req = ka_new(f, 75, 0);
    ka_topics(f, req, K(DESCRIBE_TOPIC_PARTITIONS_REQ_TOPICS),
              K(DESCRIBE_TOPIC_PARTITIONS_REQ_TOPICS_NAME), (const char *const[]){"orders", "secret"},
              2, -1, -1, 0);
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    assert_int_equal(v.request->f[K(DESCRIBE_TOPIC_PARTITIONS_REQ_TOPICS)].a.n, 1);
    bg_kafka_struct_t *up = ka_new(f, 75, 1), *out;
    const char *const orders[] = {"orders"};
    bg_kafka_struct_t **t = ka_topics(f, up, K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS),
                                      K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_NAME), orders, 1, -1,
                                      -1, 0);
    t[0]->f[K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_TOPIC_ID)].uuid[0] = 1;
    learned_t l = {0};
    size_t nn = 0;
    assert_int_equal(bg_kafka_authz_response(&f->ctx, &h, &v, ka_rt(f, 75, 1, 0, up), &f->a,
                                             &out, NULL, &nn, learn, &l),
                     0);
    out = ka_rt(f, 75, 1, 0, out);
    assert_int_equal(out->f[K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS)].a.n, 2);
    assert_true(ka_eq(ka_el(out, K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS), 1)
                          ->f[K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_NAME)]
                          .s,
                      "secret"));
    assert_int_equal(ka_el(out, K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS), 1)
                         ->f[K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_ERROR_CODE)]
                         .i,
                     29);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.id0[0], 1);
}

static int id_is_zero(const uint8_t id[16])
{
    static const uint8_t zero[16];
    return memcmp(id, zero, 16) == 0;
}

/* What a reload between a request and its response can leave: every topic
 * describable except orders* and public, which are denied. (The wildcard
 * would also allow an empty name.) */
static void deny_all_topics(ka_fix_t *f)
{
    static const char *all[] = {"*"};
    static const char *r_any[] = {"kafka:topic:*"};
    static const char *r_gone[] = {"kafka:topic:orders*", "kafka:topic:public"};
    unsigned allv = (1u << BG_VERB__COUNT) - 1;
    bg_policy_rule_spec_t rules[] = {
        {"any", "t.yaml", 1, all, 1, r_any, 1, allv, BG_EFFECT_ALLOW, NULL, 0, BG_MODE_INHERIT},
        {"gone", "t.yaml", 2, all, 1, r_gone, 2, allv, BG_EFFECT_DENY, NULL, 0, BG_MODE_INHERIT},
    };
    bg_policy_spec_t spec = {BG_EFFECT_DENY, BG_MODE_ENFORCE, rules, 2, NULL, 0};
    ka_install_policy(f, &spec);
}

/* A reload lands between an allowed request and its response: the response
 * filter turns the entries into TOPIC_AUTHORIZATION_FAILED in the client's
 * own terms, as Kafka's stub: a topic asked by name keeps its name and
 * loses the broker's id; one asked by id keeps the id and loses its name.
 * A topic asked by name that the broker answers with no id (it does not
 * exist) keeps its name too: the zero id is no id it was asked by. */
static void test_reload_denied_entries_hide_what_was_not_asked(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_METADATA, 12);
    bg_kafka_struct_t *req = ka_new(f, 3, 0);
    const char *const names[] = {"public", "orders", "orders.gone"};
    ka_topics(f, req, K(METADATA_REQ_TOPICS), K(METADATA_REQ_TOPICS_NAME), names, 3, -1, -1, 0);
    bg_kafka_struct_t *by_id = ka_el(req, K(METADATA_REQ_TOPICS), 1);
    by_id->f[K(METADATA_REQ_TOPICS_NAME)].s = bg_kafka_null_slice();
    by_id->f[K(METADATA_REQ_TOPICS_TOPIC_ID)].uuid[0] = 1; /* orders */
    req->f[K(METADATA_REQ_INCLUDE_TOPIC_AUTHORIZED_OPERATIONS)].i = 1;
    req = ka_rt(f, 3, 0, 12, req);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_true(v.action == BG_KAFKA_ACT_FORWARD || v.action == BG_KAFKA_ACT_FORWARD_REWRITTEN);
    assert_int_equal((v.request ? v.request : req)->f[K(METADATA_REQ_TOPICS)].a.n, 3);
    deny_all_topics(f);
    bg_kafka_struct_t *up = ka_new(f, 3, 1), *out;
    const char *const answered[] = {"public", "orders", "orders.gone"};
    bg_kafka_struct_t **t = ka_topics(f, up, K(METADATA_RESP_TOPICS), K(METADATA_RESP_TOPICS_NAME),
                                      answered, 3, K(METADATA_RESP_TOPICS_PARTITIONS),
                                      K(METADATA_RESP_TOPICS_PARTITIONS_PARTITION_INDEX), 1);
    t[0]->f[K(METADATA_RESP_TOPICS_TOPIC_ID)].uuid[0] = 3;
    t[1]->f[K(METADATA_RESP_TOPICS_TOPIC_ID)].uuid[0] = 1;
    t[2]->f[K(METADATA_RESP_TOPICS_ERROR_CODE)].i = 3; /* UNKNOWN_TOPIC_OR_PARTITION, no id */
    t[2]->f[K(METADATA_RESP_TOPICS_PARTITIONS)].a.n = 0;
    for (int i = 0; i < 3; i++) /* describe, write, read, ... as the broker lists them */
        t[i]->f[K(METADATA_RESP_TOPICS_TOPIC_AUTHORIZED_OPERATIONS)].i = 0xDF8;
    size_t nn = 0;
    assert_int_equal(bg_kafka_authz_response(&f->ctx, &h, &v, ka_rt(f, 3, 1, 12, up), &f->a, &out,
                                             NULL, &nn, NULL, NULL),
                     0);
    out = ka_rt(f, 3, 1, 12, out);
    assert_int_equal(out->f[K(METADATA_RESP_TOPICS)].a.n, 3);
    for (int i = 0; i < 3; i++) {
        bg_kafka_struct_t *e = ka_el(out, K(METADATA_RESP_TOPICS), i);
        assert_int_equal(e->f[K(METADATA_RESP_TOPICS_ERROR_CODE)].i, 29);
        assert_int_equal(e->f[K(METADATA_RESP_TOPICS_PARTITIONS)].a.n, 0);
        /* nothing about what the principal could do with it (Kafka: INT32_MIN) */
        assert_int_equal(e->f[K(METADATA_RESP_TOPICS_TOPIC_AUTHORIZED_OPERATIONS)].i, INT32_MIN);
        if (i != 1) { /* asked by name */
            assert_true(ka_eq(e->f[K(METADATA_RESP_TOPICS_NAME)].s, names[i]));
            assert_true(id_is_zero(e->f[K(METADATA_RESP_TOPICS_TOPIC_ID)].uuid));
        } else { /* asked by id */
            assert_true(e->f[K(METADATA_RESP_TOPICS_NAME)].s.len < 0);
            assert_int_equal(e->f[K(METADATA_RESP_TOPICS_TOPIC_ID)].uuid[0], 1);
        }
    }

    /* DescribeTopicPartitions asks by name only. */
    ka_fix_t *g = ka_setup();
    bg_kafka_req_hdr_t hd = ka_hdr(BG_KAFKA_API_DESCRIBE_TOPIC_PARTITIONS, 0);
    req = ka_new(g, 75, 0);
    ka_topics(g, req, K(DESCRIBE_TOPIC_PARTITIONS_REQ_TOPICS),
              K(DESCRIBE_TOPIC_PARTITIONS_REQ_TOPICS_NAME), (const char *const[]){"orders"}, 1, -1,
              -1, 0);
    assert_int_equal(bg_kafka_authz_request(&g->ctx, &hd, req, &g->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    deny_all_topics(g);
    up = ka_new(g, 75, 1);
    t = ka_topics(g, up, K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS),
                  K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_NAME), (const char *const[]){"orders"}, 1,
                  -1, -1, 0);
    t[0]->f[K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_TOPIC_ID)].uuid[0] = 1;
    assert_int_equal(bg_kafka_authz_response(&g->ctx, &hd, &v, ka_rt(g, 75, 1, 0, up), &g->a, &out,
                                             NULL, &nn, NULL, NULL),
                     0);
    out = ka_rt(g, 75, 1, 0, out);
    bg_kafka_struct_t *e = ka_el(out, K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS), 0);
    assert_int_equal(e->f[K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_ERROR_CODE)].i, 29);
    assert_true(ka_eq(e->f[K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_NAME)].s, "orders"));
    assert_true(id_is_zero(e->f[K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_TOPIC_ID)].uuid));
    ka_teardown(g);
}

/* DescribeConfigs of a broker: configurations naming hosts and ports (its
 * listeners, the controller quorum, bootstrap servers, per-listener
 * settings) come back as Kafka shows sensitive ones, no value and no
 * synonym values; other configurations, and a topic's, are untouched. */
static void test_describe_configs_hides_broker_addresses(void **st)
{
#define R(x) K(DESCRIBE_CONFIGS_RESP_RESULTS_##x)
#define C(x) K(DESCRIBE_CONFIGS_RESP_RESULTS_CONFIGS_##x)
    ka_fix_t *f = *st;
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_DESCRIBE_CONFIGS, 4);
    bg_kafka_struct_t *req = ka_new(f, 32, 0);
    bg_kafka_struct_t **rs = bg_kafka_array_new(&f->a, req, K(DESCRIBE_CONFIGS_REQ_RESOURCES), 2);
    rs[0]->f[K(DESCRIBE_CONFIGS_REQ_RESOURCES_RESOURCE_TYPE)].i = 4;
    rs[0]->f[K(DESCRIBE_CONFIGS_REQ_RESOURCES_RESOURCE_NAME)].s = ka_s("1");
    rs[1]->f[K(DESCRIBE_CONFIGS_REQ_RESOURCES_RESOURCE_TYPE)].i = 2;
    rs[1]->f[K(DESCRIBE_CONFIGS_REQ_RESOURCES_RESOURCE_NAME)].s = ka_s("orders");
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, ka_rt(f, 32, 0, 4, req), &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    static const char *const names[] = {"advertised.listeners", "listeners",
                                        "controller.quorum.voters",
                                        "listener.name.internal.ssl.keystore.location",
                                        "remote.log.metadata.common.client.bootstrap.servers",
                                        "log.retention.ms"};
    enum { NCFG = 6, NHIDDEN = 5 };
    bg_kafka_struct_t *up = ka_new(f, 32, 1), *out;
    bg_kafka_struct_t **res = bg_kafka_array_new(&f->a, up, K(DESCRIBE_CONFIGS_RESP_RESULTS), 2);
    for (int r = 0; r < 2; r++) {
        res[r]->f[R(RESOURCE_TYPE)].i = r ? 2 : 4;
        res[r]->f[R(RESOURCE_NAME)].s = ka_s(r ? "orders" : "1");
        bg_kafka_struct_t **c = bg_kafka_array_new(&f->a, res[r], R(CONFIGS), NCFG);
        for (int i = 0; i < NCFG; i++) {
            c[i]->f[C(NAME)].s = ka_s(names[i]);
            c[i]->f[C(VALUE)].s = ka_s("PLAINTEXT://10.9.8.7:9092");
            bg_kafka_struct_t **syn = bg_kafka_array_new(&f->a, c[i], C(SYNONYMS), 1);
            syn[0]->f[C(SYNONYMS_NAME)].s = ka_s(names[i]);
            syn[0]->f[C(SYNONYMS_VALUE)].s = ka_s("PLAINTEXT://10.9.8.7:9092");
        }
    }
    size_t nn = 0;
    assert_int_equal(bg_kafka_authz_response(&f->ctx, &h, &v, ka_rt(f, 32, 1, 4, up), &f->a, &out,
                                             NULL, &nn, NULL, NULL),
                     0);
    out = ka_rt(f, 32, 1, 4, out);
    for (int r = 0; r < 2; r++) {
        bg_kafka_struct_t *res_r = ka_el(out, K(DESCRIBE_CONFIGS_RESP_RESULTS), r);
        for (int i = 0; i < NCFG; i++) {
            bg_kafka_struct_t *c = ka_el(res_r, R(CONFIGS), i);
            bg_kafka_struct_t *syn = ka_el(c, C(SYNONYMS), 0);
            int hidden = r == 0 && i < NHIDDEN;
            assert_true(ka_eq(c->f[C(NAME)].s, names[i]));
            assert_int_equal(c->f[C(VALUE)].s.len < 0, hidden);
            assert_int_equal(c->f[C(IS_SENSITIVE)].i, hidden);
            assert_int_equal(syn->f[C(SYNONYMS_VALUE)].s.len < 0, hidden);
        }
    }
#undef R
#undef C
}

/* CreateTopics v5+ (v5, the first with them, and v7): the new topic's
 * configs go only to a principal that may describe it; dropbox may be
 * created but not described. */
static void test_create_topics_configs(void **st)
{
    ka_fix_t *f = *st;
    for (int16_t ver = 5; ver <= 7; ver += 2) {
        bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_CREATE_TOPICS, ver);
        const char *const names[] = {"orders.x", "dropbox"};
        bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_CREATE_TOPICS, 0);
        ka_topics(f, req, K(CREATE_TOPICS_REQ_TOPICS), K(CREATE_TOPICS_REQ_TOPICS_NAME), names, 2,
                  -1, -1, 0);
        bg_kafka_verdict_t v;
        assert_int_equal(
            bg_kafka_authz_request(&f->ctx, &h, ka_rt(f, 19, 0, ver, req), &f->a, &v), 0);
        assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
        assert_int_equal(v.needs_response, 1);
        bg_kafka_struct_t *up = ka_new(f, BG_KAFKA_API_CREATE_TOPICS, 1), *out;
        bg_kafka_struct_t **t = ka_topics(f, up, K(CREATE_TOPICS_RESP_TOPICS),
                                          K(CREATE_TOPICS_RESP_TOPICS_NAME), names, 2, -1, -1, 0);
        for (int i = 0; i < 2; i++) {
            bg_kafka_struct_t **c =
                bg_kafka_array_new(&f->a, t[i], K(CREATE_TOPICS_RESP_TOPICS_CONFIGS), 1);
            c[0]->f[K(CREATE_TOPICS_RESP_TOPICS_CONFIGS_NAME)].s = ka_s("retention.ms");
            c[0]->f[K(CREATE_TOPICS_RESP_TOPICS_CONFIGS_VALUE)].s = ka_s("604800000");
            t[i]->f[K(CREATE_TOPICS_RESP_TOPICS_NUM_PARTITIONS)].i = 3;
        }
        size_t nn = 0;
        assert_int_equal(bg_kafka_authz_response(&f->ctx, &h, &v, ka_rt(f, 19, 1, ver, up), &f->a,
                                                 &out, NULL, &nn, NULL, NULL),
                         0);
        out = ka_rt(f, 19, 1, ver, out);
        bg_kafka_struct_t *o = ka_el(out, K(CREATE_TOPICS_RESP_TOPICS), 0);
        bg_kafka_struct_t *d = ka_el(out, K(CREATE_TOPICS_RESP_TOPICS), 1);
        assert_int_equal(o->f[K(CREATE_TOPICS_RESP_TOPICS_TOPIC_CONFIG_ERROR_CODE)].i, 0);
        assert_int_equal(o->f[K(CREATE_TOPICS_RESP_TOPICS_CONFIGS)].a.n, 1);
        assert_int_equal(d->f[K(CREATE_TOPICS_RESP_TOPICS_TOPIC_CONFIG_ERROR_CODE)].i, 29);
        assert_int_equal(d->f[K(CREATE_TOPICS_RESP_TOPICS_CONFIGS)].a.n, 0);
        assert_int_equal(d->f[K(CREATE_TOPICS_RESP_TOPICS_NUM_PARTITIONS)].i, -1);
        assert_int_equal(o->f[K(CREATE_TOPICS_RESP_TOPICS_NUM_PARTITIONS)].i, 3);
    }
}

/* Upstream ListGroups response: groups g1, secret-group, g-x. */
static bg_kafka_struct_t *lg_resp(ka_fix_t *f)
{
    static const char *const ids[] = {"g1", "secret-group", "g-x"};
    bg_kafka_struct_t *r = ka_new(f, BG_KAFKA_API_LIST_GROUPS, 1);
    bg_kafka_struct_t **g = bg_kafka_array_new(&f->a, r, K(LIST_GROUPS_RESP_GROUPS), 3);
    assert_non_null(g);
    for (int i = 0; i < 3; i++) {
        g[i]->f[K(LIST_GROUPS_RESP_GROUPS_GROUP_ID)].s = ka_s(ids[i]);
        g[i]->f[K(LIST_GROUPS_RESP_GROUPS_PROTOCOL_TYPE)].s = ka_s("consumer");
        g[i]->f[K(LIST_GROUPS_RESP_GROUPS_GROUP_STATE)].s = ka_s("Stable");
        g[i]->f[K(LIST_GROUPS_RESP_GROUPS_GROUP_TYPE)].s = ka_s("classic");
    }
    return r;
}

/* ListGroups as Kafka does it: without describe on the cluster, only the
 * groups the principal may describe; with it, all, untouched. */
static void test_list_groups_filtered(void **st)
{
    ka_fix_t *f = *st;
    ka_set_policy(f, 0); /* no cluster rule: groups g1, g-* describable */
    for (int16_t ver = 0; ver <= 5; ver += 5) {
        bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_LIST_GROUPS, ver);
        bg_kafka_struct_t *req = ka_rt(f, BG_KAFKA_API_LIST_GROUPS, 0, ver,
                                       ka_new(f, BG_KAFKA_API_LIST_GROUPS, 0));
        bg_kafka_verdict_t v;
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
        assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
        assert_int_equal(v.needs_response, 1);
        /* The listing is recorded (an allow on group "*"), not the hidden groups. */
        assert_int_equal(v.ndecisions, 1);
        assert_int_equal(v.decisions[0].decision.effect, BG_EFFECT_ALLOW);
        assert_int_equal(v.decisions[0].resources[0].type, BG_RES_KAFKA_GROUP);
        assert_int_equal(v.decisions[0].resources[0].name_len, 1);
        assert_memory_equal(v.decisions[0].resources[0].name, "*", 1);
        assert_non_null(strstr(v.decisions[0].reason, "listing"));
        bg_kafka_struct_t *out;
        size_t nn = 0;
        assert_int_equal(bg_kafka_authz_response(
                             &f->ctx, &h, &v, ka_rt(f, BG_KAFKA_API_LIST_GROUPS, 1, ver, lg_resp(f)),
                             &f->a, &out, NULL, &nn, NULL, NULL),
                         0);
        bg_kafka_struct_t *m = ka_rt(f, BG_KAFKA_API_LIST_GROUPS, 1, ver, out);
        assert_int_equal(m->f[K(LIST_GROUPS_RESP_GROUPS)].a.n, 2);
        assert_true(ka_eq(ka_el(m, K(LIST_GROUPS_RESP_GROUPS), 0)
                              ->f[K(LIST_GROUPS_RESP_GROUPS_GROUP_ID)].s,
                          "g1"));
        assert_true(ka_eq(ka_el(m, K(LIST_GROUPS_RESP_GROUPS), 1)
                              ->f[K(LIST_GROUPS_RESP_GROUPS_GROUP_ID)].s,
                          "g-x"));
        assert_int_equal(m->f[K(LIST_GROUPS_RESP_ERROR_CODE)].i, 0);
    }
    /* Describe on the cluster: all groups, the response is not even decoded. */
    ka_set_policy(f, 1u << BG_VERB_DESCRIBE);
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_LIST_GROUPS, 4);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, ka_new(f, BG_KAFKA_API_LIST_GROUPS, 0),
                                            &f->a, &v),
                     0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    assert_int_equal(v.needs_response, 0);
    assert_int_equal(v.ndecisions, 1);
    assert_int_equal(v.decisions[0].verb, BG_VERB_DESCRIBE);
    assert_int_equal(v.decisions[0].decision.effect, BG_EFFECT_ALLOW);
    assert_int_equal(v.decisions[0].resources[0].type, BG_RES_KAFKA_CLUSTER);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_metadata_all_topics, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_metadata_error_entry_teaches_no_id, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_metadata_explicit, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_metadata_by_id, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_find_coordinator, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_describe_cluster, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_node_endpoints, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_unserved_nodes, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_controller_not_served, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_describe_topic_partitions, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_reload_denied_entries_hide_what_was_not_asked, ka_up,
                                        ka_down),
        cmocka_unit_test_setup_teardown(test_create_topics_configs, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_describe_configs_hides_broker_addresses, ka_up,
                                        ka_down),
        cmocka_unit_test_setup_teardown(test_list_groups_filtered, ka_up, ka_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
