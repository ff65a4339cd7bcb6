/* Kafka authorization of the share-group APIs (KIP-932), as Kafka's broker
 * decides them: ShareGroupHeartbeat (read group, describe every subscribed
 * topic), ShareGroupDescribe (describe group; groups naming a topic the
 * principal may not describe are hidden), ShareFetch and ShareAcknowledge
 * (read group, read every topic by id), and the share session tracker that
 * keeps an incremental ShareFetch from fetching a partition that may no
 * longer be read, from using a session another connection opened, and from
 * growing past its bounds. Fixture topic ids (test_kafka_authz_util.h): 1 orders,
 * 2 secret, 4 public; any other id is unknown. Every tree is encoded and
 * decoded at its version. */
#include "test_kafka_authz_util.h"

#define HB BG_KAFKA_API_SHARE_GROUP_HEARTBEAT
#define SGD BG_KAFKA_API_SHARE_GROUP_DESCRIBE
#define SF BG_KAFKA_API_SHARE_FETCH
#define SA BG_KAFKA_API_SHARE_ACKNOWLEDGE
#define G(x) K(SHARE_GROUP_DESCRIBE_RESP_GROUPS_##x)
#define RQ(x) K(SHARE_FETCH_REQ_##x)
#define RS(x) K(SHARE_FETCH_RESP_##x)

enum { ORDERS = 1, SECRET = 2, PUBLIC = 4, UNKNOWN = 9 };

/* Policy (default deny): groups g1 / g-* read + describe; public read +
 * describe; orders* every verb unless orders_denied (a reload that takes
 * reading orders away). */
/* Groups and topic public readable by all; orders* granted the verbs in
 * orders (none: no rule for it). */
static void share_policy(ka_fix_t *f, unsigned orders)
{
    static const char *all[] = {"*"};
    static const char *r_groups[] = {"kafka:group:g1", "kafka:group:g-*"};
    static const char *r_public[] = {"kafka:topic:public"};
    static const char *r_orders[] = {"kafka:topic:orders*"};
    unsigned rd = 1u << BG_VERB_READ | 1u << BG_VERB_DESCRIBE;
    bg_policy_rule_spec_t rules[] = {
        {"groups", "t.yaml", 1, all, 1, r_groups, 2, rd, BG_EFFECT_ALLOW, NULL, 0,
         BG_MODE_INHERIT},
        {"public", "t.yaml", 2, all, 1, r_public, 1, rd, BG_EFFECT_ALLOW, NULL, 0,
         BG_MODE_INHERIT},
        {"orders", "t.yaml", 3, all, 1, r_orders, 1, orders, BG_EFFECT_ALLOW, NULL, 0,
         BG_MODE_INHERIT},
    };
    bg_policy_spec_t spec = {BG_EFFECT_DENY, BG_MODE_ENFORCE, rules, orders ? 3 : 2, NULL, 0};
    ka_install_policy(f, &spec);
}

typedef struct {
    ka_fix_t *f;
    bg_kafka_share_owners_t *o; /* the process-wide owner table */
    bg_kafka_share_sessions_t *t; /* connection 1, to node 1 */
} fx_t;

static int setup(void **st)
{
    fx_t *x = calloc(1, sizeof *x);
    assert_non_null(x);
    x->f = ka_setup();
    share_policy(x->f, (1u << BG_VERB__COUNT) - 1);
    x->o = bg_kafka_share_owners_new();
    assert_non_null(x->o);
    x->t = bg_kafka_share_new(x->o, 1);
    assert_non_null(x->t);
    x->f->ctx.share = x->t;
    *st = x;
    return 0;
}
static int teardown(void **st)
{
    fx_t *x = *st;
    bg_kafka_share_free(x->t);
    bg_kafka_share_owners_free(x->o);
    ka_teardown(x->f);
    free(x);
    return 0;
}

static void set_id(uint8_t id[16], int topic)
{
    memset(id, 0, 16);
    id[0] = (uint8_t)topic;
    id[15] = 0x5a; /* never the zero uuid */
}

static int16_t top_error(ka_fix_t *f, int16_t key, int16_t ver, const bg_kafka_verdict_t *v)
{
    assert_int_equal(v->action, BG_KAFKA_ACT_RESPOND);
    bg_kafka_struct_t *r = ka_rt(f, key, 1, ver, v->response);
    return (int16_t)r->f[1].i; /* ErrorCode is field 1 in all three responses */
}

/* ---- versions ---- */

static void test_advertised(void **st)
{
    (void)st;
    int16_t lo, hi;
    static const int16_t keys[] = {HB, SGD, SF, SA}, want_hi[] = {1, 1, 2, 2};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(bg_kafka_authz_supported(keys[i], &lo, &hi), 1);
        assert_int_equal(lo, 1); /* v0 was 4.0's early access, laid out differently */
        assert_int_equal(hi, want_hi[i]);
        assert_int_equal(bg_kafka_authz_upstream_fits(keys[i], 1, 2), 1);
    }
}

/* ---- ShareGroupHeartbeat ---- */

static bg_kafka_struct_t *heartbeat(ka_fix_t *f, const char *group, const char *const *topics,
                                    int ntopics)
{
    bg_kafka_struct_t *req = ka_new(f, HB, 0);
    req->f[K(SHARE_GROUP_HEARTBEAT_REQ_GROUP_ID)].s = ka_s(group);
    req->f[K(SHARE_GROUP_HEARTBEAT_REQ_MEMBER_ID)].s = ka_s("m-1");
    if (ntopics >= 0) {
        bg_kafka_val_t *t = bg_kafka_array_vals(
            &f->a, req, K(SHARE_GROUP_HEARTBEAT_REQ_SUBSCRIBED_TOPIC_NAMES), ntopics);
        assert_non_null(t);
        for (int i = 0; i < ntopics; i++)
            t[i].s = ka_s(topics[i]);
    }
    return ka_rt(f, HB, 0, 1, req);
}

static void test_heartbeat(void **st)
{
    ka_fix_t *f = ((fx_t *)*st)->f;
    static const char *const ok[] = {"orders", "public"}, *const bad[] = {"orders", "secret"};
    bg_kafka_req_hdr_t h = ka_hdr(HB, 1);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, heartbeat(f, "g1", ok, 2), &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    const bg_kafka_decision_t *d = ka_find_decision(&v, BG_RES_KAFKA_GROUP, "g1");
    assert_non_null(d);
    assert_int_equal(d->verb, BG_VERB_READ);
    d = ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "public");
    assert_non_null(d);
    assert_int_equal(d->verb, BG_VERB_DESCRIBE);
    /* A heartbeat without a subscription (unchanged) checks the group only. */
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, heartbeat(f, "g1", NULL, -1), &f->a, &v),
                     0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    assert_int_equal(v.ndecisions, 1);
    /* Group first: GROUP_AUTHORIZATION_FAILED, topics not looked at. */
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, heartbeat(f, "other", ok, 2), &f->a, &v),
                     0);
    assert_int_equal(top_error(f, HB, 1, &v), 30);
    assert_int_equal(v.ndecisions, 1);
    /* One subscribed topic not describable fails the whole heartbeat. */
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, heartbeat(f, "g1", bad, 2), &f->a, &v),
                     0);
    assert_int_equal(top_error(f, HB, 1, &v), 29);
    d = ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "secret");
    assert_non_null(d);
    assert_int_equal(d->decision.effect, BG_EFFECT_DENY);
}

/* ---- ShareGroupDescribe ---- */

/* A response with one group per name; group i's only member subscribes to
 * subscribed[i] and is assigned assigned[i]. */
static bg_kafka_struct_t *describe_resp(ka_fix_t *f, const char *const *groups,
                                        const char *const *subscribed,
                                        const char *const *assigned, int n)
{
    bg_kafka_struct_t *resp = ka_new(f, SGD, 1);
    bg_kafka_struct_t **g = bg_kafka_array_new(&f->a, resp, K(SHARE_GROUP_DESCRIBE_RESP_GROUPS), n);
    assert_non_null(g);
    for (int i = 0; i < n; i++) {
        g[i]->f[G(GROUP_ID)].s = ka_s(groups[i]);
        g[i]->f[G(GROUP_STATE)].s = ka_s("Stable");
        g[i]->f[G(GROUP_EPOCH)].i = 5;
        g[i]->f[G(AUTHORIZED_OPERATIONS)].i = 1 << 3 | 1 << 8; /* READ, DESCRIBE */
        bg_kafka_struct_t **m = bg_kafka_array_new(&f->a, g[i], G(MEMBERS), 1);
        assert_non_null(m);
        m[0]->f[G(MEMBERS_MEMBER_ID)].s = ka_s("m-1");
        bg_kafka_val_t *sub =
            bg_kafka_array_vals(&f->a, m[0], G(MEMBERS_SUBSCRIBED_TOPIC_NAMES), 1);
        assert_non_null(sub);
        sub[0].s = ka_s(subscribed[i]);
        bg_kafka_struct_t *as = m[0]->f[G(MEMBERS_ASSIGNMENT)].st;
        assert_non_null(as);
        bg_kafka_struct_t **tp =
            bg_kafka_array_new(&f->a, as, G(MEMBERS_ASSIGNMENT_TOPIC_PARTITIONS), 1);
        assert_non_null(tp);
        tp[0]->f[G(MEMBERS_ASSIGNMENT_TOPIC_PARTITIONS_TOPIC_NAME)].s = ka_s(assigned[i]);
    }
    return resp;
}

static void test_describe(void **st)
{
    ka_fix_t *f = ((fx_t *)*st)->f;
    static const char *const groups[] = {"g1", "g-2", "g-3"};
    static const char *const subscribed[] = {"orders", "secret", "public"};
    static const char *const assigned[] = {"public", "orders", "secret"};
    bg_kafka_req_hdr_t h = ka_hdr(SGD, 1);
    bg_kafka_struct_t *req = ka_new(f, SGD, 0);
    bg_kafka_val_t *ids = bg_kafka_array_vals(&f->a, req, K(SHARE_GROUP_DESCRIBE_REQ_GROUP_IDS), 4);
    ids[0].s = ka_s("g1");
    ids[1].s = ka_s("other");
    ids[2].s = ka_s("g-2");
    ids[3].s = ka_s("g-3");
    req = ka_rt(f, SGD, 0, 1, req);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    assert_int_equal(v.needs_response, 1);
    assert_int_equal(v.request->f[K(SHARE_GROUP_DESCRIBE_REQ_GROUP_IDS)].a.n, 3);
    const bg_kafka_decision_t *d = ka_find_decision(&v, BG_RES_KAFKA_GROUP, "other");
    assert_non_null(d);
    assert_int_equal(d->verb, BG_VERB_DESCRIBE);
    assert_int_equal(d->decision.effect, BG_EFFECT_DENY);

    bg_kafka_struct_t *up = ka_rt(f, SGD, 1, 1, describe_resp(f, groups, subscribed, assigned, 3));
    bg_kafka_struct_t *out;
    size_t nn = 0;
    assert_int_equal(bg_kafka_authz_response(&f->ctx, &h, &v, up, &f->a, &out, NULL, &nn, NULL,
                                             NULL),
                     0);
    out = ka_rt(f, SGD, 1, 1, out);
    static const char *const want_id[] = {"g1", "g-2", "g-3", "other"};
    static const int want_err[] = {0, 29, 29, 30};
    assert_int_equal(out->f[K(SHARE_GROUP_DESCRIBE_RESP_GROUPS)].a.n, 4);
    for (int i = 0; i < 4; i++) {
        bg_kafka_struct_t *g = ka_el(out, K(SHARE_GROUP_DESCRIBE_RESP_GROUPS), i);
        assert_true(ka_eq(g->f[G(GROUP_ID)].s, want_id[i]));
        assert_int_equal(g->f[G(ERROR_CODE)].i, want_err[i]);
        if (want_err[i] == 0) {
            assert_int_equal(g->f[G(MEMBERS)].a.n, 1);
            /* READ and DESCRIBE both allowed by the policy: kept. */
            assert_int_equal(g->f[G(AUTHORIZED_OPERATIONS)].i, 1 << 3 | 1 << 8);
        } else {
            assert_int_equal(g->f[G(MEMBERS)].a.n, 0);
            assert_int_equal(g->f[G(GROUP_STATE)].s.len, 0);
            assert_int_not_equal(g->f[G(GROUP_EPOCH)].i, 5);
        }
        if (want_err[i] == 29)
            assert_true(ka_eq(g->f[G(ERROR_MESSAGE)].s, /* KafkaApis' words */
                              "The group has described topic(s) that the client is not "
                              "authorized to describe."));
    }
    /* Every group refused: busgate answers itself, nothing goes upstream. */
    bg_kafka_struct_t *only = ka_new(f, SGD, 0);
    bg_kafka_val_t *oid = bg_kafka_array_vals(&f->a, only, K(SHARE_GROUP_DESCRIBE_REQ_GROUP_IDS), 1);
    oid[0].s = ka_s("other");
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, ka_rt(f, SGD, 0, 1, only), &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    bg_kafka_struct_t *r = ka_rt(f, SGD, 1, 1, v.response);
    assert_int_equal(r->f[K(SHARE_GROUP_DESCRIBE_RESP_GROUPS)].a.n, 1);
    assert_int_equal(ka_el(r, K(SHARE_GROUP_DESCRIBE_RESP_GROUPS), 0)->f[G(ERROR_CODE)].i, 30);
    /* The generic error response (audit back-pressure) has an entry per group. */
    bg_kafka_struct_t *e = bg_kafka_authz_error_response(&h, req, 7, &f->a);
    assert_non_null(e);
    e = ka_rt(f, SGD, 1, 1, e);
    assert_int_equal(e->f[K(SHARE_GROUP_DESCRIBE_RESP_GROUPS)].a.n, 4);
    assert_int_equal(ka_el(e, K(SHARE_GROUP_DESCRIBE_RESP_GROUPS), 3)->f[G(ERROR_CODE)].i, 7);
}

/* ---- ShareFetch ---- */

typedef struct {
    int topic;   /* ORDERS, ... */
    int nparts;  /* partitions 0..nparts-1 */
    int acks;    /* partition 0 carries an acknowledgement batch */
} tp_spec_t;

/* A ShareFetch (or ShareAcknowledge with fetch = 0) of group g1, member m-1. */
static bg_kafka_struct_t *share_req(ka_fix_t *f, int16_t key, int16_t ver, const char *group,
                                    int32_t epoch, const tp_spec_t *tps, int n,
                                    const tp_spec_t *forget, int nforget)
{
    int fetch = key == SF;
    int topics = fetch ? RQ(TOPICS) : K(SHARE_ACKNOWLEDGE_REQ_TOPICS);
    bg_kafka_struct_t *req = ka_new(f, key, 0);
    req->f[0].s = ka_s(group); /* GroupId, MemberId, ShareSessionEpoch: fields 0-2 in both */
    req->f[1].s = ka_s("m-1");
    req->f[2].i = epoch;
    bg_kafka_struct_t **t = bg_kafka_array_new(&f->a, req, topics, n);
    assert_non_null(t);
    for (int i = 0; i < n; i++) {
        set_id(t[i]->f[0].uuid, tps[i].topic);
        bg_kafka_struct_t **p = bg_kafka_array_new(&f->a, t[i], 1, tps[i].nparts);
        assert_non_null(p);
        for (int j = 0; j < tps[i].nparts; j++) {
            p[j]->f[0].i = j;
            int ab = fetch ? RQ(TOPICS_PARTITIONS_ACKNOWLEDGEMENT_BATCHES)
                           : K(SHARE_ACKNOWLEDGE_REQ_TOPICS_PARTITIONS_ACKNOWLEDGEMENT_BATCHES);
            if (j == 0 && tps[i].acks) {
                bg_kafka_struct_t **b = bg_kafka_array_new(&f->a, p[j], ab, 1);
                assert_non_null(b);
                b[0]->f[1].i = 3; /* last offset */
                bg_kafka_val_t *ty = bg_kafka_array_vals(&f->a, b[0], 2, 1);
                ty[0].i = 1; /* accept */
            }
        }
    }
    if (fetch) {
        bg_kafka_struct_t **g = bg_kafka_array_new(&f->a, req, RQ(FORGOTTEN_TOPICS_DATA), nforget);
        assert_non_null(g);
        for (int i = 0; i < nforget; i++) {
            set_id(g[i]->f[0].uuid, forget[i].topic);
            bg_kafka_val_t *p = bg_kafka_array_vals(&f->a, g[i], 1, forget[i].nparts);
            for (int j = 0; j < forget[i].nparts; j++)
                p[j].i = j;
        }
    }
    return ka_rt(f, key, 0, ver, req);
}

static int decide_fetch(fx_t *x, int16_t ver, int32_t epoch, const tp_spec_t *tps, int n,
                        const tp_spec_t *forget, int nforget, bg_kafka_verdict_t *v)
{
    bg_kafka_req_hdr_t h = ka_hdr(SF, ver);
    return bg_kafka_authz_request(&x->f->ctx, &h,
                                  share_req(x->f, SF, ver, "g1", epoch, tps, n, forget, nforget),
                                  &x->f->a, v);
}

/* What the session does with a forwarded request answered with err. */
static void forward_and_answer(fx_t *x, bg_kafka_verdict_t *v, int16_t err)
{
    assert_true(v->action == BG_KAFKA_ACT_FORWARD || v->action == BG_KAFKA_ACT_FORWARD_REWRITTEN);
    assert_non_null(v->share);
    assert_int_equal(v->needs_response, 1); /* the answer is always decoded */
    assert_int_equal(bg_kafka_share_forwarded(x->t, v->share), 0);
    bg_kafka_share_answered(x->t, v->share, err);
}

static size_t tracked(fx_t *x)
{
    const bg_kafka_share_session_t *s =
        bg_kafka_share_find(x->t, ka_s("g1"), ka_s("m-1"));
    return s ? s->n : (size_t)-1;
}

static void test_fetch_group_denied(void **st)
{
    fx_t *x = *st;
    ka_fix_t *f = x->f;
    static const tp_spec_t tps[] = {{ORDERS, 1, 0}};
    for (int16_t ver = 1; ver <= 2; ver++) {
        bg_kafka_req_hdr_t h = ka_hdr(SF, ver);
        bg_kafka_verdict_t v;
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h,
                                                share_req(f, SF, ver, "other", 0, tps, 1, NULL, 0),
                                                &f->a, &v),
                         0);
        assert_int_equal(top_error(f, SF, ver, &v), 30);
        assert_null(v.share);
        const bg_kafka_decision_t *d = ka_find_decision(&v, BG_RES_KAFKA_GROUP, "other");
        assert_non_null(d);
        assert_int_equal(d->verb, BG_VERB_READ);
    }
}

/* Each topic decided by id; refused ones get TOPIC_AUTHORIZATION_FAILED
 * (AcknowledgeErrorCode too where they carried acknowledgements), an
 * unknown id UNKNOWN_TOPIC_ID, and only the allowed ones go upstream and
 * into the tracked session. */
static void test_fetch_new_session_split(void **st)
{
    fx_t *x = *st;
    ka_fix_t *f = x->f;
    static const tp_spec_t tps[] = {{ORDERS, 2, 1}, {SECRET, 2, 1}, {UNKNOWN, 1, 0}};
    static const tp_spec_t opening[] = {{ORDERS, 1, 0}, {SECRET, 1, 0}};
    for (int16_t ver = 1; ver <= 2; ver++) {
        bg_kafka_verdict_t v;
        /* A new session (acknowledgements are not allowed in it): secret
         * refused, orders 0 tracked. */
        assert_int_equal(decide_fetch(x, ver, 0, opening, 2, NULL, 0, &v), 0);
        assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
        assert_int_equal(v.share->nadd, 1);
        forward_and_answer(x, &v, 0);
        assert_int_equal(tracked(x), 1);
        /* The next request acknowledges and adds partitions. */
        assert_int_equal(decide_fetch(x, ver, 1, tps, 3, NULL, 0, &v), 0);
        assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
        bg_kafka_struct_t *fw = ka_rt(f, SF, 0, ver, v.request);
        assert_int_equal(fw->f[RQ(TOPICS)].a.n, 1);
        assert_int_equal(ka_el(fw, RQ(TOPICS), 0)->f[0].uuid[0], ORDERS);
        assert_non_null(v.share);
        assert_int_equal(v.share->nadd, 2);
        assert_int_equal(v.share->epoch, 1);
        const bg_kafka_decision_t *d = ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "secret");
        assert_non_null(d);
        assert_int_equal(d->verb, BG_VERB_READ);
        assert_int_equal(d->error_code, 29);

        /* The broker answers orders; the refused topics are merged in. */
        bg_kafka_struct_t *up = ka_new(f, SF, 1);
        bg_kafka_struct_t **t = bg_kafka_array_new(&f->a, up, RS(RESPONSES), 1);
        set_id(t[0]->f[0].uuid, ORDERS);
        bg_kafka_struct_t **p = bg_kafka_array_new(&f->a, t[0], RS(RESPONSES_PARTITIONS), 1);
        static const uint8_t none[1];
        p[0]->f[RS(RESPONSES_PARTITIONS_RECORDS)].s = (bg_slice_t){none, 0};
        bg_kafka_struct_t **ne = bg_kafka_array_new(&f->a, up, RS(NODE_ENDPOINTS), 1);
        ne[0]->f[RS(NODE_ENDPOINTS_NODE_ID)].i = 3;
        ne[0]->f[RS(NODE_ENDPOINTS_HOST)].s = ka_s("10.0.0.3");
        ne[0]->f[RS(NODE_ENDPOINTS_PORT)].i = 9092;
        up = ka_rt(f, SF, 1, ver, up);
        bg_kafka_req_hdr_t h = ka_hdr(SF, ver);
        bg_kafka_struct_t *out;
        int32_t nodes[4];
        size_t nn = 4;
        assert_int_equal(
            bg_kafka_authz_response(&f->ctx, &h, &v, up, &f->a, &out, nodes, &nn, NULL, NULL), 0);
        out = ka_rt(f, SF, 1, ver, out);
        assert_int_equal(out->f[RS(RESPONSES)].a.n, 3);
        bg_kafka_struct_t *sec = ka_el(out, RS(RESPONSES), 1);
        assert_int_equal(sec->f[0].uuid[0], SECRET);
        assert_int_equal(sec->f[RS(RESPONSES_PARTITIONS)].a.n, 2);
        bg_kafka_struct_t *p0 = ka_el(sec, RS(RESPONSES_PARTITIONS), 0);
        bg_kafka_struct_t *p1 = ka_el(sec, RS(RESPONSES_PARTITIONS), 1);
        assert_int_equal(p0->f[RS(RESPONSES_PARTITIONS_ERROR_CODE)].i, 29);
        assert_int_equal(p0->f[RS(RESPONSES_PARTITIONS_ACKNOWLEDGE_ERROR_CODE)].i, 29);
        assert_int_equal(p1->f[RS(RESPONSES_PARTITIONS_PARTITION_INDEX)].i, 1);
        assert_int_equal(p1->f[RS(RESPONSES_PARTITIONS_ERROR_CODE)].i, 29);
        assert_int_equal(p1->f[RS(RESPONSES_PARTITIONS_ACKNOWLEDGE_ERROR_CODE)].i, 0);
        assert_int_equal(p1->f[RS(RESPONSES_PARTITIONS_RECORDS)].s.len, 0); /* empty, not null */
        bg_kafka_struct_t *unk = ka_el(out, RS(RESPONSES), 2);
        assert_int_equal(unk->f[0].uuid[0], UNKNOWN);
        assert_int_equal(ka_el(unk, RS(RESPONSES_PARTITIONS), 0)->f[RS(RESPONSES_PARTITIONS_ERROR_CODE)].i,
                         100);
        /* NodeEndpoints point at busgate. */
        bg_kafka_struct_t *n0 = ka_el(out, RS(NODE_ENDPOINTS), 0);
        assert_true(ka_eq(n0->f[RS(NODE_ENDPOINTS_HOST)].s, "gw.example"));
        assert_int_equal(n0->f[RS(NODE_ENDPOINTS_PORT)].i, 19003);
        assert_int_equal(nn, 1);

        forward_and_answer(x, &v, 0);
        assert_int_equal(tracked(x), 2); /* orders 0 and 1 */
    }
}

/* Every topic refused: the request still goes upstream with none, so the
 * broker's session and epoch move on as the client expects. */
static void test_fetch_all_refused_still_forwarded(void **st)
{
    fx_t *x = *st;
    static const tp_spec_t tps[] = {{SECRET, 1, 0}};
    bg_kafka_verdict_t v;
    assert_int_equal(decide_fetch(x, 1, 0, tps, 1, NULL, 0, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    assert_int_equal(ka_rt(x->f, SF, 0, 1, v.request)->f[RQ(TOPICS)].a.n, 0);
    forward_and_answer(x, &v, 0);
    assert_int_equal(tracked(x), 0); /* tracked, empty: the next incremental one is known */
    assert_int_equal(decide_fetch(x, 1, 1, NULL, 0, NULL, 0, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
}

/* An incremental request for a session busgate does not know (another
 * connection's, or one it never forwarded) goes nowhere. */
static void test_fetch_unknown_session(void **st)
{
    fx_t *x = *st;
    static const tp_spec_t tps[] = {{ORDERS, 1, 0}};
    bg_kafka_verdict_t v;
    assert_int_equal(decide_fetch(x, 2, 5, tps, 1, NULL, 0, &v), 0);
    assert_int_equal(top_error(x->f, SF, 2, &v), BG_KAFKA_E_SHARE_SESSION_NOT_FOUND);
    assert_null(v.share);
    /* Without a tracker at all (no ShareFetch forwarded yet) likewise. */
    x->f->ctx.share = NULL;
    assert_int_equal(decide_fetch(x, 2, 1, NULL, 0, NULL, 0, &v), 0);
    assert_int_equal(top_error(x->f, SF, 2, &v), BG_KAFKA_E_SHARE_SESSION_NOT_FOUND);
}

/* The session's partitions are checked on every incremental request, also
 * those it does not name; a reload that takes one away answers
 * SHARE_SESSION_NOT_FOUND, and the new session the client then opens gets
 * the topic refused and never holds it again. */
static void test_fetch_session_reload(void **st)
{
    fx_t *x = *st;
    ka_fix_t *f = x->f;
    static const tp_spec_t both[] = {{ORDERS, 2, 0}, {PUBLIC, 1, 0}};
    bg_kafka_verdict_t v;
    assert_int_equal(decide_fetch(x, 2, 0, both, 2, NULL, 0, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    forward_and_answer(x, &v, 0);
    assert_int_equal(tracked(x), 3);
    /* Incremental, nothing named: orders and public both decided. */
    assert_int_equal(decide_fetch(x, 2, 1, NULL, 0, NULL, 0, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    assert_non_null(ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "orders"));
    assert_non_null(ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "public"));
    forward_and_answer(x, &v, 0);

    share_policy(f, 0); /* reload: orders may no longer be read */
    assert_int_equal(decide_fetch(x, 2, 2, NULL, 0, NULL, 0, &v), 0);
    assert_int_equal(top_error(f, SF, 2, &v), BG_KAFKA_E_SHARE_SESSION_NOT_FOUND);
    const bg_kafka_decision_t *d = ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "orders");
    assert_non_null(d);
    assert_int_equal(d->decision.effect, BG_EFFECT_DENY);
    assert_null(v.share);
    /* Naming it again (say, with acknowledgements) changes nothing. */
    static const tp_spec_t orders[] = {{ORDERS, 1, 1}};
    assert_int_equal(decide_fetch(x, 2, 2, orders, 1, NULL, 0, &v), 0);
    assert_int_equal(top_error(f, SF, 2, &v), BG_KAFKA_E_SHARE_SESSION_NOT_FOUND);
    /* Forgetting only its partition 0 leaves partition 1 to be fetched:
     * orders is still decided for that one, and refused. */
    static const tp_spec_t forget0[] = {{ORDERS, 1, 0}};
    assert_int_equal(decide_fetch(x, 2, 2, NULL, 0, forget0, 1, &v), 0);
    assert_int_equal(top_error(f, SF, 2, &v), BG_KAFKA_E_SHARE_SESSION_NOT_FOUND);
    d = ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "orders");
    assert_non_null(d);
    assert_int_equal(d->decision.effect, BG_EFFECT_DENY);
    /* Forgetting it is fine: the broker drops it before fetching. */
    static const tp_spec_t forget[] = {{ORDERS, 2, 0}};
    assert_int_equal(decide_fetch(x, 2, 2, NULL, 0, forget, 1, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    assert_null(ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "orders"));
    /* ... but only once the broker confirmed it. */
    assert_int_equal(bg_kafka_share_forwarded(x->t, v.share), 0);
    bg_kafka_share_answered(x->t, v.share, 123 /* INVALID_SHARE_SESSION_EPOCH */);
    assert_int_equal(tracked(x), 3);
    assert_int_equal(decide_fetch(x, 2, 3, NULL, 0, NULL, 0, &v), 0);
    assert_int_equal(top_error(f, SF, 2, &v), BG_KAFKA_E_SHARE_SESSION_NOT_FOUND);

    /* The client opens a new session naming everything: orders refused. */
    assert_int_equal(decide_fetch(x, 2, 0, both, 2, NULL, 0, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    bg_kafka_struct_t *fw = ka_rt(f, SF, 0, 2, v.request);
    assert_int_equal(fw->f[RQ(TOPICS)].a.n, 1);
    assert_int_equal(ka_el(fw, RQ(TOPICS), 0)->f[0].uuid[0], PUBLIC);
    forward_and_answer(x, &v, 0);
    assert_int_equal(tracked(x), 1); /* public 0 only */
    assert_int_equal(decide_fetch(x, 2, 1, NULL, 0, NULL, 0, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
}

/* A new session the broker refused is not tracked, and the old one may no
 * longer be used (sending the new one gave it up: the broker may have
 * dropped it); a final request that succeeds ends a session. */
static void test_fetch_failed_and_final(void **st)
{
    fx_t *x = *st;
    static const tp_spec_t orders[] = {{ORDERS, 1, 0}}, pub[] = {{PUBLIC, 1, 0}};
    bg_kafka_verdict_t v;
    assert_int_equal(decide_fetch(x, 1, 0, orders, 1, NULL, 0, &v), 0);
    forward_and_answer(x, &v, 0);
    assert_int_equal(decide_fetch(x, 1, 0, pub, 1, NULL, 0, &v), 0);
    forward_and_answer(x, &v, 42);
    assert_int_equal(tracked(x), (size_t)-1);
    assert_int_equal(decide_fetch(x, 1, 1, NULL, 0, NULL, 0, &v), 0);
    assert_int_equal(top_error(x->f, SF, 1, &v), BG_KAFKA_E_SHARE_SESSION_NOT_FOUND);
    /* Opened again, then ended. */
    assert_int_equal(decide_fetch(x, 1, 0, pub, 1, NULL, 0, &v), 0);
    forward_and_answer(x, &v, 0);
    assert_int_equal(tracked(x), 1);
    assert_int_equal(decide_fetch(x, 1, -1, NULL, 0, NULL, 0, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    forward_and_answer(x, &v, 0);
    assert_int_equal(tracked(x), (size_t)-1);
    assert_int_equal(x->t->n, 0);
}

/* A response is checked too: a request forwarded while this connection held
 * the session can reach the session another connection opened for the same
 * member meanwhile, or the read was taken away while it was out. Records of
 * a topic the principal may not read (now), or whose id busgate cannot name,
 * never reach the client: the partition gets TOPIC_AUTHORIZATION_FAILED and
 * loses its records and acquired ranges; readable ones are untouched. */
static void fetch_response_drops_unreadable(fx_t *x, unsigned orders_now)
{
    ka_fix_t *f = x->f;
    static const tp_spec_t orders[] = {{ORDERS, 1, 0}};
    bg_kafka_verdict_t v;
    assert_int_equal(decide_fetch(x, 1, 0, orders, 1, NULL, 0, &v), 0);
    forward_and_answer(x, &v, 0);
    assert_int_equal(decide_fetch(x, 1, 1, NULL, 0, NULL, 0, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    share_policy(f, orders_now); /* orders may no longer be read, perhaps still described */
    static const uint8_t recs[] = {1, 2, 3, 4};
    int topics[] = {ORDERS, PUBLIC, UNKNOWN};
    bg_kafka_struct_t *up = ka_new(f, SF, 1);
    bg_kafka_struct_t **t = bg_kafka_array_new(&f->a, up, RS(RESPONSES), 3);
    for (int i = 0; i < 3; i++) {
        set_id(t[i]->f[0].uuid, topics[i]);
        bg_kafka_struct_t **p = bg_kafka_array_new(&f->a, t[i], RS(RESPONSES_PARTITIONS), 1);
        p[0]->f[RS(RESPONSES_PARTITIONS_RECORDS)].s = (bg_slice_t){recs, sizeof recs};
        bg_kafka_struct_t **ar =
            bg_kafka_array_new(&f->a, p[0], RS(RESPONSES_PARTITIONS_ACQUIRED_RECORDS), 1);
        ar[0]->f[RS(RESPONSES_PARTITIONS_ACQUIRED_RECORDS_LAST_OFFSET)].i = 3;
    }
    up = ka_rt(f, SF, 1, 1, up);
    bg_kafka_req_hdr_t h = ka_hdr(SF, 1);
    bg_kafka_struct_t *out;
    size_t nn = 0;
    assert_int_equal(bg_kafka_authz_response(&f->ctx, &h, &v, up, &f->a, &out, NULL, &nn, NULL,
                                             NULL),
                     0);
    out = ka_rt(f, SF, 1, 1, out);
    assert_int_equal(out->f[RS(RESPONSES)].a.n, 3);
    for (int i = 0; i < 3; i++) {
        bg_kafka_struct_t *p = ka_el(ka_el(out, RS(RESPONSES), i), RS(RESPONSES_PARTITIONS), 0);
        int readable = topics[i] == PUBLIC;
        assert_int_equal(p->f[RS(RESPONSES_PARTITIONS_ERROR_CODE)].i, readable ? 0 : 29);
        assert_int_equal(p->f[RS(RESPONSES_PARTITIONS_RECORDS)].s.len,
                         readable ? (int32_t)sizeof recs : 0);
        assert_int_equal(p->f[RS(RESPONSES_PARTITIONS_ACQUIRED_RECORDS)].a.n, readable ? 1 : 0);
    }
}

static void test_fetch_response_drops_unreadable(void **st)
{
    fetch_response_drops_unreadable(*st, 0);
}

/* Describe is not read: the records of a topic the principal may still
 * describe, but no longer read, are dropped all the same. */
static void test_fetch_response_drops_describe_only(void **st)
{
    fetch_response_drops_unreadable(*st, 1u << BG_VERB_DESCRIBE);
}

/* A final request (epoch -1) releases every record the member holds, on
 * every partition: only the connection that holds the session may send it.
 * From any other it is answered SHARE_SESSION_NOT_FOUND, as the broker
 * answers when there is no session; from the holder it is forwarded. */
static void test_final_only_from_the_holder(void **st)
{
    fx_t *x = *st;
    static const tp_spec_t orders[] = {{ORDERS, 1, 0}};
    bg_kafka_verdict_t v;
    assert_int_equal(decide_fetch(x, 1, -1, NULL, 0, NULL, 0, &v), 0);
    assert_int_equal(top_error(x->f, SF, 1, &v), BG_KAFKA_E_SHARE_SESSION_NOT_FOUND);
    bg_kafka_req_hdr_t h = ka_hdr(SA, 1);
    assert_int_equal(bg_kafka_authz_request(&x->f->ctx, &h,
                                            share_req(x->f, SA, 1, "g1", -1, NULL, 0, NULL, 0),
                                            &x->f->a, &v),
                     0);
    assert_int_equal(top_error(x->f, SA, 1, &v), BG_KAFKA_E_SHARE_SESSION_NOT_FOUND);
    assert_int_equal(decide_fetch(x, 1, 0, orders, 1, NULL, 0, &v), 0);
    forward_and_answer(x, &v, 0);
    assert_int_equal(decide_fetch(x, 1, -1, NULL, 0, NULL, 0, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
}

/* Pipelined requests: an incremental request sent while the new session
 * is not answered yet is reset; the answer to one that forgets a partition
 * does not drop it when a later request, already sent, added it again. */
static void test_tracker_pipelined(void **st)
{
    fx_t *x = *st;
    static const tp_spec_t both[] = {{ORDERS, 1, 0}, {PUBLIC, 1, 0}}, pub[] = {{PUBLIC, 1, 0}};
    bg_kafka_verdict_t a, b;
    assert_int_equal(decide_fetch(x, 1, 0, both, 2, NULL, 0, &a), 0);
    assert_int_equal(bg_kafka_share_forwarded(x->t, a.share), 0);
    assert_int_equal(decide_fetch(x, 1, 1, pub, 1, NULL, 0, &b), 0);
    assert_int_equal(top_error(x->f, SF, 1, &b), BG_KAFKA_E_SHARE_SESSION_NOT_FOUND);
    bg_kafka_share_answered(x->t, a.share, 0);
    assert_int_equal(tracked(x), 2);
    /* Forgetting public, then adding it back before the first answer. */
    assert_int_equal(decide_fetch(x, 1, 1, NULL, 0, pub, 1, &a), 0);
    assert_int_equal(bg_kafka_share_forwarded(x->t, a.share), 0);
    assert_int_equal(decide_fetch(x, 1, 2, pub, 1, NULL, 0, &b), 0);
    assert_int_equal(bg_kafka_share_forwarded(x->t, b.share), 0);
    bg_kafka_share_answered(x->t, a.share, 0);
    assert_int_equal(tracked(x), 2);
    bg_kafka_share_answered(x->t, b.share, 0);
    assert_int_equal(tracked(x), 2);
}

static void test_fetch_limits(void **st)
{
    fx_t *x = *st;
    ka_fix_t *f = x->f;
    char member[BG_KAFKA_SHARE_MAX_SESSIONS][16];
    static const tp_spec_t pub[] = {{PUBLIC, 1, 0}};
    for (int i = 0; i < BG_KAFKA_SHARE_MAX_SESSIONS; i++) {
        bg_kafka_share_update_t u = {.api_key = SF, .epoch = 0, .group = ka_s("g1")};
        bg_kafka_share_tp_t tp = {{PUBLIC}, 0, 0};
        snprintf(member[i], sizeof member[i], "m%d", i);
        u.member = ka_s(member[i]);
        u.add = &tp;
        u.nadd = 1;
        assert_int_equal(bg_kafka_share_forwarded(x->t, &u), 0);
    }
    bg_kafka_verdict_t v;
    assert_int_equal(decide_fetch(x, 1, 0, pub, 1, NULL, 0, &v), -1);
    assert_int_equal(v.action, BG_KAFKA_ACT_CLOSE);
    assert_non_null(v.close_reason);
    assert_non_null(strstr(v.close_reason, "too many share sessions"));
    /* The group and topic were allowed before the limit refused the request:
     * those decisions never took effect, so none is left to be audited as
     * an allow (the close is audited as the one refusal, with the reason). */
    assert_int_equal(v.ndecisions, 0);
    (void)f;
}

/* ---- ShareAcknowledge ---- */

static void test_acknowledge(void **st)
{
    fx_t *x = *st;
    ka_fix_t *f = x->f;
    static const tp_spec_t tps[] = {{ORDERS, 1, 1}, {SECRET, 1, 1}};
    static const tp_spec_t orders[] = {{ORDERS, 1, 0}};
    for (int16_t ver = 1; ver <= 2; ver++) {
        bg_kafka_req_hdr_t h = ka_hdr(SA, ver);
        bg_kafka_verdict_t v;
        assert_int_equal(decide_fetch(x, ver, 0, orders, 1, NULL, 0, &v), 0);
        forward_and_answer(x, &v, 0);
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h,
                                                share_req(f, SA, ver, "other", 3, tps, 2, NULL, 0),
                                                &f->a, &v),
                         0);
        assert_int_equal(top_error(f, SA, ver, &v), 30);
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h,
                                                share_req(f, SA, ver, "g1", 3, tps, 2, NULL, 0),
                                                &f->a, &v),
                         0);
        assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
        assert_null(v.share); /* not final: the tracker is not touched */
        bg_kafka_struct_t *fw = ka_rt(f, SA, 0, ver, v.request);
        assert_int_equal(fw->f[K(SHARE_ACKNOWLEDGE_REQ_TOPICS)].a.n, 1);
        assert_int_equal(ka_el(fw, K(SHARE_ACKNOWLEDGE_REQ_TOPICS), 0)->f[0].uuid[0], ORDERS);
        bg_kafka_struct_t *up = ka_rt(f, SA, 1, ver, ka_new(f, SA, 1));
        bg_kafka_struct_t *out;
        size_t nn = 0;
        assert_int_equal(
            bg_kafka_authz_response(&f->ctx, &h, &v, up, &f->a, &out, NULL, &nn, NULL, NULL), 0);
        out = ka_rt(f, SA, 1, ver, out);
        bg_kafka_struct_t *t = ka_el(out, K(SHARE_ACKNOWLEDGE_RESP_RESPONSES), 0);
        assert_int_equal(t->f[0].uuid[0], SECRET);
        assert_int_equal(
            ka_el(t, K(SHARE_ACKNOWLEDGE_RESP_RESPONSES_PARTITIONS), 0)
                ->f[K(SHARE_ACKNOWLEDGE_RESP_RESPONSES_PARTITIONS_ERROR_CODE)].i,
            29);
        /* Everything refused: still forwarded, with no topics. */
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h,
                                                share_req(f, SA, ver, "g1", 4, tps + 1, 1, NULL, 0),
                                                &f->a, &v),
                         0);
        assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
        assert_int_equal(ka_rt(f, SA, 0, ver, v.request)->f[K(SHARE_ACKNOWLEDGE_REQ_TOPICS)].a.n,
                         0);
    }
    /* A final acknowledgement ends the tracked session once answered. */
    static const tp_spec_t pub[] = {{PUBLIC, 1, 0}};
    bg_kafka_verdict_t v;
    assert_int_equal(decide_fetch(x, 1, 0, pub, 1, NULL, 0, &v), 0);
    forward_and_answer(x, &v, 0);
    bg_kafka_req_hdr_t h = ka_hdr(SA, 1);
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h,
                                            share_req(f, SA, 1, "g1", -1, pub, 1, NULL, 0), &f->a,
                                            &v),
                     0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    forward_and_answer(x, &v, 0);
    assert_int_equal(tracked(x), (size_t)-1);
}

/* A refusal by busgate (audit pipeline unavailable) forwards nothing, so it
 * must not touch the tracker either. */
static void test_refuse_drops_update(void **st)
{
    fx_t *x = *st;
    static const tp_spec_t pub[] = {{PUBLIC, 1, 0}};
    bg_kafka_req_hdr_t h = ka_hdr(SF, 1);
    bg_kafka_struct_t *req = share_req(x->f, SF, 1, "g1", 0, pub, 1, NULL, 0);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&x->f->ctx, &h, req, &x->f->a, &v), 0);
    assert_non_null(v.share);
    bg_kafka_authz_refuse(&h, req, 7, "audit pipeline unavailable", &x->f->a, &v);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    assert_null(v.share);
    assert_int_equal(top_error(x->f, SF, 1, &v), 7);
}

/* ---- connections, ownership and bounds ---- */

/* Decides a ShareFetch of (g1, m-1) on connection t. */
static int conn_fetch(fx_t *x, bg_kafka_share_sessions_t *t, int32_t epoch, const tp_spec_t *tps,
                      int n, bg_kafka_verdict_t *v)
{
    x->f->ctx.share = t;
    int rc = decide_fetch(x, 1, epoch, tps, n, NULL, 0, v);
    x->f->ctx.share = x->t;
    return rc;
}

/* The request of v went upstream on t and the broker answered err. */
static void conn_answer(bg_kafka_share_sessions_t *t, bg_kafka_verdict_t *v, int16_t err)
{
    assert_non_null(v->share);
    assert_int_equal(bg_kafka_share_forwarded(t, v->share), 0);
    bg_kafka_share_answered(t, v->share, err);
}

/* 1 when connection t's incremental ShareFetch (nothing named) is reset by
 * busgate, 0 when it goes upstream. */
static int conn_reset(fx_t *x, bg_kafka_share_sessions_t *t, int32_t epoch)
{
    bg_kafka_verdict_t v;
    assert_int_equal(conn_fetch(x, t, epoch, NULL, 0, &v), 0);
    if (v.action == BG_KAFKA_ACT_RESPOND) {
        assert_int_equal(top_error(x->f, SF, 1, &v), BG_KAFKA_E_SHARE_SESSION_NOT_FOUND);
        assert_null(v.share);
        return 1;
    }
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    return 0;
}

/* The broker keys a session by (group, member) and takes an incremental
 * request from any connection. Connection 1 opens {orders}; connection 2
 * (same broker) sends a new session the broker refuses (say, carrying
 * nothing): it must not end up with a usable empty session through which
 * the broker would fetch orders after a reload took reading it away. */
static void test_cross_connection_refused_open(void **st)
{
    fx_t *x = *st;
    static const tp_spec_t ord[] = {{ORDERS, 1, 0}};
    bg_kafka_verdict_t v;
    assert_int_equal(conn_fetch(x, x->t, 0, ord, 1, &v), 0);
    conn_answer(x->t, &v, 0);
    assert_int_equal(conn_reset(x, x->t, 1), 0);
    bg_kafka_share_sessions_t *t2 = bg_kafka_share_new(x->o, 1);
    assert_non_null(t2);
    assert_int_equal(conn_fetch(x, t2, 0, NULL, 0, &v), 0);
    conn_answer(t2, &v, 42 /* INVALID_REQUEST */);
    share_policy(x->f, 0); /* reload: orders may no longer be read */
    assert_int_equal(conn_reset(x, t2, 1), 1);
    assert_int_equal(conn_reset(x, t2, 5), 1);
    /* Connection 1 gave the session up too: the broker may have replaced it. */
    assert_int_equal(conn_reset(x, x->t, 2), 1);
    bg_kafka_share_free(t2);
}

/* Whoever opened the session last (answered with error 0) holds it; the
 * others are reset locally, ShareAcknowledge as ShareFetch. */
static void test_cross_connection_owner(void **st)
{
    fx_t *x = *st;
    ka_fix_t *f = x->f;
    static const tp_spec_t ord[] = {{ORDERS, 1, 0}}, pub[] = {{PUBLIC, 1, 1}};
    bg_kafka_verdict_t v;
    bg_kafka_share_sessions_t *t2 = bg_kafka_share_new(x->o, 1);
    assert_non_null(t2);
    assert_int_equal(conn_fetch(x, x->t, 0, ord, 1, &v), 0);
    conn_answer(x->t, &v, 0);
    assert_int_equal(conn_fetch(x, t2, 0, NULL, 0, &v), 0);
    conn_answer(t2, &v, 0);
    assert_int_equal(conn_reset(x, t2, 1), 0);  /* connection 2's empty session */
    assert_int_equal(conn_reset(x, x->t, 1), 1); /* not connection 1's any more */
    bg_kafka_req_hdr_t h = ka_hdr(SA, 1);
    f->ctx.share = x->t;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, share_req(f, SA, 1, "g1", 2, pub, 1,
                                                                   NULL, 0),
                                            &f->a, &v),
                     0);
    assert_int_equal(top_error(f, SA, 1, &v), BG_KAFKA_E_SHARE_SESSION_NOT_FOUND);
    f->ctx.share = t2;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, share_req(f, SA, 1, "g1", 2, pub, 1,
                                                                   NULL, 0),
                                            &f->a, &v),
                     0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    f->ctx.share = x->t;
    /* Connection 1 opens again and holds it; connection 2 is reset. */
    assert_int_equal(conn_fetch(x, x->t, 0, ord, 1, &v), 0);
    conn_answer(x->t, &v, 0);
    assert_int_equal(conn_reset(x, x->t, 1), 0);
    assert_int_equal(conn_reset(x, t2, 2), 1);
    /* Connection 2 closing leaves connection 1's session alone. */
    bg_kafka_share_free(t2);
    assert_int_equal(conn_reset(x, x->t, 2), 0);
}

/* Two new sessions in flight at once from two connections: busgate cannot
 * tell which one the broker handled last, so neither is usable. Neither is
 * one left in flight by a connection that closed. */
static void test_cross_connection_race(void **st)
{
    fx_t *x = *st;
    static const tp_spec_t ord[] = {{ORDERS, 1, 0}}, pub[] = {{PUBLIC, 1, 0}};
    bg_kafka_verdict_t a, b;
    bg_kafka_share_sessions_t *t2 = bg_kafka_share_new(x->o, 1);
    assert_non_null(t2);
    assert_int_equal(conn_fetch(x, x->t, 0, ord, 1, &a), 0);
    assert_int_equal(bg_kafka_share_forwarded(x->t, a.share), 0);
    assert_int_equal(conn_fetch(x, t2, 0, pub, 1, &b), 0);
    assert_int_equal(bg_kafka_share_forwarded(t2, b.share), 0);
    bg_kafka_share_answered(t2, b.share, 0);
    bg_kafka_share_answered(x->t, a.share, 0);
    assert_int_equal(conn_reset(x, x->t, 1), 1);
    assert_int_equal(conn_reset(x, t2, 1), 1);
    /* Connection 2 sends a new session and closes before the answer. */
    assert_int_equal(conn_fetch(x, t2, 0, pub, 1, &b), 0);
    assert_int_equal(bg_kafka_share_forwarded(t2, b.share), 0);
    assert_int_equal(conn_fetch(x, x->t, 0, ord, 1, &a), 0);
    assert_int_equal(bg_kafka_share_forwarded(x->t, a.share), 0);
    bg_kafka_share_free(t2);
    bg_kafka_share_answered(x->t, a.share, 0);
    assert_int_equal(conn_reset(x, x->t, 1), 1);
    /* Alone, it opens. */
    assert_int_equal(conn_fetch(x, x->t, 0, ord, 1, &a), 0);
    conn_answer(x->t, &a, 0);
    assert_int_equal(conn_reset(x, x->t, 1), 0);
}

/* Sessions on different brokers are different sessions; a bootstrap
 * connection may reach any broker, so its new session takes every node's. */
static void test_cross_connection_nodes(void **st)
{
    fx_t *x = *st;
    static const tp_spec_t pub[] = {{PUBLIC, 1, 0}};
    bg_kafka_verdict_t v;
    bg_kafka_share_sessions_t *n2 = bg_kafka_share_new(x->o, 2);
    bg_kafka_share_sessions_t *boot = bg_kafka_share_new(x->o, -1);
    assert_non_null(n2);
    assert_non_null(boot);
    assert_int_equal(conn_fetch(x, x->t, 0, pub, 1, &v), 0);
    conn_answer(x->t, &v, 0);
    assert_int_equal(conn_fetch(x, n2, 0, pub, 1, &v), 0);
    conn_answer(n2, &v, 0);
    assert_int_equal(conn_reset(x, x->t, 1), 0);
    assert_int_equal(conn_reset(x, n2, 1), 0);
    assert_int_equal(conn_fetch(x, boot, 0, pub, 1, &v), 0);
    conn_answer(boot, &v, 0);
    assert_int_equal(conn_reset(x, boot, 1), 0);
    assert_int_equal(conn_reset(x, x->t, 2), 1);
    assert_int_equal(conn_reset(x, n2, 2), 1);
    /* A node's new session takes the bootstrap connection's. */
    assert_int_equal(conn_fetch(x, n2, 0, pub, 1, &v), 0);
    conn_answer(n2, &v, 0);
    assert_int_equal(conn_reset(x, boot, 2), 1);
    assert_int_equal(conn_reset(x, n2, 1), 0);
    bg_kafka_share_free(boot);
    bg_kafka_share_free(n2);
}

/* A new session from a node connection in flight when a bootstrap
 * connection sends one (which may reach the same broker): the node's is
 * not confirmed by its answer, nor is the bootstrap one's. */
static void test_cross_connection_bootstrap_in_flight(void **st)
{
    fx_t *x = *st;
    static const tp_spec_t pub[] = {{PUBLIC, 1, 0}};
    bg_kafka_verdict_t a, b;
    bg_kafka_share_sessions_t *boot = bg_kafka_share_new(x->o, -1);
    assert_non_null(boot);
    assert_int_equal(conn_fetch(x, x->t, 0, pub, 1, &a), 0);
    assert_int_equal(bg_kafka_share_forwarded(x->t, a.share), 0);
    assert_int_equal(conn_fetch(x, boot, 0, pub, 1, &b), 0);
    assert_int_equal(bg_kafka_share_forwarded(boot, b.share), 0);
    bg_kafka_share_answered(x->t, a.share, 0);
    assert_int_equal(conn_reset(x, x->t, 1), 1);
    bg_kafka_share_answered(boot, b.share, 0);
    assert_int_equal(conn_reset(x, boot, 1), 1);
    bg_kafka_share_free(boot);
}

/* Connection 2's second new session, sent while connection 1's is still
 * in flight (connection 2's first was answered meanwhile), is not
 * confirmed either: the broker may handle connection 1's after it. */
static void test_cross_connection_second_open_while_other_in_flight(void **st)
{
    fx_t *x = *st;
    static const tp_spec_t ord[] = {{ORDERS, 1, 0}}, pub[] = {{PUBLIC, 1, 0}};
    bg_kafka_verdict_t a, b1, b2;
    bg_kafka_share_sessions_t *t2 = bg_kafka_share_new(x->o, 1);
    assert_non_null(t2);
    assert_int_equal(conn_fetch(x, x->t, 0, ord, 1, &a), 0);
    assert_int_equal(bg_kafka_share_forwarded(x->t, a.share), 0);
    assert_int_equal(conn_fetch(x, t2, 0, pub, 1, &b1), 0);
    assert_int_equal(bg_kafka_share_forwarded(t2, b1.share), 0);
    bg_kafka_share_answered(t2, b1.share, 0);
    assert_int_equal(conn_fetch(x, t2, 0, pub, 1, &b2), 0);
    assert_int_equal(bg_kafka_share_forwarded(t2, b2.share), 0);
    bg_kafka_share_answered(x->t, a.share, 0);
    bg_kafka_share_answered(t2, b2.share, 0);
    assert_int_equal(conn_reset(x, t2, 1), 1);
    assert_int_equal(conn_reset(x, x->t, 1), 1);
    bg_kafka_share_free(t2);
}

/* One connection alone sends three new sessions in a row, the first
 * answered before the third goes: nothing contends with it, the last one
 * holds the session. */
static void test_one_connection_opens_three_times(void **st)
{
    fx_t *x = *st;
    static const tp_spec_t pub[] = {{PUBLIC, 1, 0}};
    bg_kafka_verdict_t a1, a2, a3;
    assert_int_equal(conn_fetch(x, x->t, 0, pub, 1, &a1), 0);
    assert_int_equal(bg_kafka_share_forwarded(x->t, a1.share), 0);
    assert_int_equal(conn_fetch(x, x->t, 0, pub, 1, &a2), 0);
    assert_int_equal(bg_kafka_share_forwarded(x->t, a2.share), 0);
    bg_kafka_share_answered(x->t, a1.share, 0);
    assert_int_equal(conn_fetch(x, x->t, 0, pub, 1, &a3), 0);
    assert_int_equal(bg_kafka_share_forwarded(x->t, a3.share), 0);
    bg_kafka_share_answered(x->t, a2.share, 0);
    bg_kafka_share_answered(x->t, a3.share, 0);
    assert_int_equal(conn_reset(x, x->t, 1), 0);
}

/* A final request and a new session sent right after it (a consumer
 * closing its session and opening another): the final one's answer keeps
 * the record for the new session, which then opens and is usable. */
static void test_final_then_new_session_pipelined(void **st)
{
    fx_t *x = *st;
    static const tp_spec_t pub[] = {{PUBLIC, 1, 0}};
    bg_kafka_verdict_t a, b;
    assert_int_equal(decide_fetch(x, 1, 0, pub, 1, NULL, 0, &a), 0);
    forward_and_answer(x, &a, 0);
    assert_int_equal(decide_fetch(x, 1, -1, NULL, 0, NULL, 0, &a), 0);
    assert_int_equal(bg_kafka_share_forwarded(x->t, a.share), 0);
    assert_int_equal(decide_fetch(x, 1, 0, pub, 1, NULL, 0, &b), 0);
    assert_int_equal(bg_kafka_share_forwarded(x->t, b.share), 0);
    bg_kafka_share_answered(x->t, a.share, 0);
    assert_int_equal(tracked(x), 1);
    bg_kafka_share_answered(x->t, b.share, 0);
    assert_int_equal(tracked(x), 1);
    assert_int_equal(conn_reset(x, x->t, 1), 0);
}

/* A ShareFetch of g1/m-1 at epoch naming partitions first..first+n-1 of
 * public (partition first acknowledging when acks), not round-tripped. */
static int big_fetch(fx_t *x, int32_t epoch, int first, int n, int acks, bg_kafka_verdict_t *v)
{
    ka_fix_t *f = x->f;
    bg_kafka_struct_t *req = ka_new(f, SF, 0);
    req->f[RQ(GROUP_ID)].s = ka_s("g1");
    req->f[RQ(MEMBER_ID)].s = ka_s("m-1");
    req->f[RQ(SHARE_SESSION_EPOCH)].i = epoch;
    bg_kafka_struct_t **t = bg_kafka_array_new(&f->a, req, RQ(TOPICS), 1);
    assert_non_null(t);
    set_id(t[0]->f[0].uuid, PUBLIC);
    bg_kafka_struct_t **p = bg_kafka_array_new(&f->a, t[0], RQ(TOPICS_PARTITIONS), n);
    assert_non_null(p);
    for (int j = 0; j < n; j++)
        p[j]->f[RQ(TOPICS_PARTITIONS_PARTITION_INDEX)].i = first + j;
    if (acks) {
        bg_kafka_struct_t **b =
            bg_kafka_array_new(&f->a, p[0], RQ(TOPICS_PARTITIONS_ACKNOWLEDGEMENT_BATCHES), 1);
        assert_non_null(b);
        bg_kafka_val_t *ty = bg_kafka_array_vals(&f->a, b[0], 2, 1);
        ty[0].i = 1;
    }
    bg_kafka_req_hdr_t h = ka_hdr(SF, 1);
    return bg_kafka_authz_request(&f->ctx, &h, req, &f->a, v);
}

/* A new session may not acknowledge (Kafka: INVALID_REQUEST), and a refused
 * new session leaves nothing tracked: repeating one cannot grow the tracker. */
static void test_growth_refused_open(void **st)
{
    fx_t *x = *st;
    bg_kafka_verdict_t v;
    assert_int_equal(big_fetch(x, 0, 0, 1000, 1, &v), 0);
    assert_int_equal(top_error(x->f, SF, 1, &v), BG_KAFKA_E_INVALID_REQUEST);
    assert_null(v.share);
    for (int r = 0; r < 4; r++) {
        assert_int_equal(big_fetch(x, 0, r * 10000, 10000, 0, &v), 0);
        assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
        forward_and_answer(x, &v, 42);
        assert_int_equal(tracked(x), (size_t)-1);
    }
}

/* The bound is on what the connection tracks in all: the union of a
 * session and an incremental request's partitions (those it holds already
 * are not counted twice), and every session of the connection. */
static void test_limits_union_and_budget(void **st)
{
    fx_t *x = *st;
    const int half = BG_KAFKA_SHARE_MAX_PARTITIONS / 2 + 1;
    bg_kafka_verdict_t v;
    assert_int_equal(big_fetch(x, 0, 0, BG_KAFKA_SHARE_MAX_PARTITIONS + 1, 0, &v), -1);
    assert_int_equal(v.action, BG_KAFKA_ACT_CLOSE);
    assert_int_equal(big_fetch(x, 0, 0, half, 0, &v), 0);
    forward_and_answer(x, &v, 0);
    assert_int_equal(tracked(x), (size_t)half);
    /* The same partitions named again (acknowledging): the union is unchanged. */
    assert_int_equal(big_fetch(x, 1, 0, half, 1, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    forward_and_answer(x, &v, 0);
    assert_int_equal(tracked(x), (size_t)half);
    /* New ones past the budget: refused, however the request is answered. */
    assert_int_equal(big_fetch(x, 2, half, half, 0, &v), -1);
    assert_int_equal(v.action, BG_KAFKA_ACT_CLOSE);
    /* Another session of the same connection counts too. */
    bg_kafka_share_update_t u = {.api_key = SF, .epoch = 0, .group = ka_s("g1"),
                                 .member = ka_s("m-2")};
    bg_kafka_share_tp_t *tps = calloc((size_t)half, sizeof *tps);
    assert_non_null(tps);
    for (int i = 0; i < half; i++) {
        set_id(tps[i].id, PUBLIC);
        tps[i].partition = i;
    }
    u.add = tps;
    u.nadd = (size_t)half;
    assert_int_equal(bg_kafka_share_forwarded(x->t, &u), 0);
    bg_kafka_share_answered(x->t, &u, 0);
    assert_null(bg_kafka_share_find(x->t, ka_s("g1"), ka_s("m-2"))); /* not kept: over budget */
    assert_int_equal(tracked(x), (size_t)half);
    free(tps);
}

/* Exactly the budget is within it: a new session of MAX - 1 partitions
 * and its ids' one unit is tracked whole. */
static void test_limits_exactly_the_budget(void **st)
{
    fx_t *x = *st;
    bg_kafka_verdict_t v;
    assert_int_equal(big_fetch(x, 0, 0, BG_KAFKA_SHARE_MAX_PARTITIONS, 0, &v), -1);
    assert_int_equal(v.action, BG_KAFKA_ACT_CLOSE);
    assert_int_equal(big_fetch(x, 0, 0, BG_KAFKA_SHARE_MAX_PARTITIONS - 1, 0, &v), 0);
    forward_and_answer(x, &v, 0);
    assert_int_equal(tracked(x), (size_t)BG_KAFKA_SHARE_MAX_PARTITIONS - 1);
}

/* The tracker keeps its own bound on sessions, whatever its caller checked:
 * a new session past BG_KAFKA_SHARE_MAX_SESSIONS is refused, the records
 * stay as they were. */
static void test_tracker_refuses_a_session_past_the_max(void **st)
{
    fx_t *x = *st;
    char g[BG_KAFKA_SHARE_MAX_SESSIONS + 1][16];
    for (int i = 0; i <= BG_KAFKA_SHARE_MAX_SESSIONS; i++) {
        snprintf(g[i], sizeof g[i], "g-%d", i);
        bg_kafka_share_update_t u = {.api_key = SF, .epoch = 0, .group = ka_s(g[i]),
                                     .member = ka_s("m-1")};
        assert_int_equal(bg_kafka_share_forwarded(x->t, &u),
                         i < BG_KAFKA_SHARE_MAX_SESSIONS ? 0 : -1);
    }
    assert_int_equal(x->t->n, BG_KAFKA_SHARE_MAX_SESSIONS);
    assert_null(bg_kafka_share_find(x->t, ka_s(g[BG_KAFKA_SHARE_MAX_SESSIONS]), ka_s("m-1")));
}

/* has_topic looks at the n partitions it is given, never one past them. */
static void test_has_topic_bounds(void **st)
{
    (void)st;
    bg_kafka_share_tp_t tps[2] = {{.partition = 0}, {.partition = 0}};
    set_id(tps[0].id, ORDERS);
    set_id(tps[1].id, PUBLIC);
    assert_true(bg_kafka_share_has_topic(tps, 2, tps[1].id));
    assert_true(bg_kafka_share_has_topic(tps, 1, tps[0].id));
    assert_false(bg_kafka_share_has_topic(tps, 1, tps[1].id));
    assert_false(bg_kafka_share_has_topic(NULL, 0, tps[1].id));
}

/* An epoch below -1 is refused as Kafka does and never tracked; a
 * ShareAcknowledge cannot open a session. */
static void test_epoch_below_final(void **st)
{
    fx_t *x = *st;
    ka_fix_t *f = x->f;
    static const tp_spec_t pub[] = {{PUBLIC, 1, 0}};
    char g[16];
    bg_kafka_verdict_t v;
    for (int i = 0; i < BG_KAFKA_SHARE_MAX_SESSIONS; i++) {
        snprintf(g, sizeof g, "g-%d", i);
        bg_kafka_req_hdr_t h = ka_hdr(SF, 1);
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h,
                                                share_req(f, SF, 1, g, 0, pub, 1, NULL, 0),
                                                &f->a, &v),
                         0);
        forward_and_answer(x, &v, 0);
    }
    static const int16_t keys[] = {SF, SA};
    static const int32_t epochs[] = {-2, INT32_MIN};
    for (int k = 0; k < 2; k++)
        for (int e = 0; e < 2; e++) {
            bg_kafka_req_hdr_t h = ka_hdr(keys[k], 1);
            assert_int_equal(bg_kafka_authz_request(
                                 &f->ctx, &h,
                                 share_req(f, keys[k], 1, "g-99", epochs[e], pub, 1, NULL, 0),
                                 &f->a, &v),
                             0);
            assert_int_equal(top_error(f, keys[k], 1, &v), BG_KAFKA_E_INVALID_SHARE_SESSION_EPOCH);
            assert_null(v.share);
        }
    bg_kafka_req_hdr_t h = ka_hdr(SA, 1);
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h,
                                            share_req(f, SA, 1, "g1", 0, pub, 1, NULL, 0), &f->a,
                                            &v),
                     0);
    assert_int_equal(top_error(f, SA, 1, &v), BG_KAFKA_E_INVALID_SHARE_SESSION_EPOCH);
    assert_int_equal(x->t->n, BG_KAFKA_SHARE_MAX_SESSIONS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_advertised, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_describe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_group_denied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_new_session_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_all_refused_still_forwarded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_unknown_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_session_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_failed_and_final, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_response_drops_unreadable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_response_drops_describe_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_final_only_from_the_holder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tracker_pipelined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acknowledge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_drops_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cross_connection_refused_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cross_connection_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cross_connection_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cross_connection_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cross_connection_bootstrap_in_flight, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cross_connection_second_open_while_other_in_flight,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_connection_opens_three_times, setup, teardown),
        cmocka_unit_test_setup_teardown(test_final_then_new_session_pipelined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_growth_refused_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits_union_and_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits_exactly_the_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tracker_refuses_a_session_past_the_max, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_has_topic_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_epoch_below_final, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
