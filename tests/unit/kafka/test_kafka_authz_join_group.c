/* Kafka authorization of JoinGroup: read on the group, and with protocol
 * type "consumer" describe on every topic its subscriptions name (a Kafka
 * 4.x broker assigns them itself when the group is a KIP-848 one);
 * metadata that is no subscription is refused (INCONSISTENT_GROUP_PROTOCOL);
 * other protocol types are opaque. Fixture policy (test_kafka_authz_util.h):
 * orders* all verbs, public read + describe, groups g1 / g-* read +
 * describe + delete, "secret" nothing, default deny. Every request is
 * encoded and decoded at its version, every answer too. */
#include "test_kafka_authz_util.h"

#define JG BG_KAFKA_API_JOIN_GROUP

static int bg_t_be16(const uint8_t *p)
{
    return (int16_t)((uint16_t)p[0] << 8 | p[1]);
}

static void jg_str(bg_wr_t *w, const char *s)
{
    bg_wr_i16(w, (int16_t)strlen(s));
    bg_wr_bytes(w, s, strlen(s));
}

/* A ConsumerProtocolSubscription at ver naming topics (NULL-terminated)
 * and, from v1, owned (NULL-terminated, one partition each); kept in the
 * fixture's arena. */
static bg_slice_t jg_subscription(ka_fix_t *f, int16_t ver, const char *const *topics,
                                  const char *const *owned)
{
    bg_wr_t w;
    bg_wr_init(&w, 64, 0);
    bg_wr_i16(&w, ver);
    int32_t n = 0;
    while (topics[n])
        n++;
    bg_wr_i32(&w, n);
    for (int32_t i = 0; i < n; i++)
        jg_str(&w, topics[i]);
    bg_wr_i32(&w, -1); /* user_data */
    if (ver >= 1) {
        n = 0;
        while (owned && owned[n])
            n++;
        bg_wr_i32(&w, n);
        for (int32_t i = 0; i < n; i++) {
            jg_str(&w, owned[i]);
            bg_wr_i32(&w, 1);
            bg_wr_i32(&w, 0);
        }
    }
    if (ver >= 2)
        bg_wr_i32(&w, 3);
    if (ver >= 3)
        bg_wr_i16(&w, -1);
    assert_false(w.failed);
    uint8_t *copy = bg_kafka_arena_alloc(&f->a, w.len);
    assert_non_null(copy);
    memcpy(copy, w.buf, w.len);
    bg_slice_t s = {copy, (int32_t)w.len};
    bg_wr_free(&w);
    return s;
}

/* A JoinGroup at ver for group with protocol type ptype and n protocols
 * (names[i], metas[i]). */
static bg_kafka_struct_t *jg_request(ka_fix_t *f, int16_t ver, const char *group, const char *ptype,
                                     const char *const *names, const bg_slice_t *metas, int n)
{
    bg_kafka_struct_t *req = ka_new(f, JG, 0);
    req->f[K(JOIN_GROUP_REQ_GROUP_ID)].s = ka_s(group);
    req->f[K(JOIN_GROUP_REQ_SESSION_TIMEOUT_MS)].i = 10000;
    req->f[K(JOIN_GROUP_REQ_PROTOCOL_TYPE)].s = ka_s(ptype);
    bg_kafka_struct_t **p = bg_kafka_array_new(&f->a, req, K(JOIN_GROUP_REQ_PROTOCOLS), n);
    assert_non_null(p);
    for (int i = 0; i < n; i++) {
        p[i]->f[K(JOIN_GROUP_REQ_PROTOCOLS_NAME)].s = ka_s(names[i]);
        p[i]->f[K(JOIN_GROUP_REQ_PROTOCOLS_METADATA)].s = metas[i];
    }
    return ka_rt(f, JG, 0, ver, req);
}

static const char *const jg_protocols[] = {"range", "cooperative-sticky"};

/* How many times the decisions name the resource (type, name). */
static int jg_count(const bg_kafka_verdict_t *v, bg_res_type_t type, const char *name)
{
    int n = 0;
    for (size_t i = 0; i < v->ndecisions; i++)
        for (size_t j = 0; j < v->decisions[i].nresources; j++) {
            const bg_policy_resource_t *r = &v->decisions[i].resources[j];
            n += r->type == type && r->name_len == strlen(name) &&
                 memcmp(r->name, name, r->name_len) == 0;
        }
    return n;
}

static int16_t jg_answer(ka_fix_t *f, int16_t ver, const bg_kafka_verdict_t *v)
{
    assert_int_equal(v->action, BG_KAFKA_ACT_RESPOND);
    bg_kafka_struct_t *r = ka_rt(f, JG, 1, ver, v->response);
    return (int16_t)r->f[K(JOIN_GROUP_RESP_ERROR_CODE)].i;
}

static void jg_topic_decided(const bg_kafka_verdict_t *v, const char *name, bg_effect_t effect)
{
    assert_int_equal(jg_count(v, BG_RES_KAFKA_TOPIC, name), 1);
    const bg_kafka_decision_t *d = ka_find_decision(v, BG_RES_KAFKA_TOPIC, name);
    assert_int_equal(d->verb, BG_VERB_DESCRIBE);
    assert_int_equal(d->decision.effect, effect);
    assert_int_equal(d->error_code, effect == BG_EFFECT_ALLOW ? 0 : 29);
}

/* Two protocols, as the Java client sends them (one per assignor), v0 and
 * v3 metadata naming the same topics, v3 owning another: forwarded
 * untouched, each topic decided once. */
static void test_allowed(void **st)
{
    ka_fix_t *f = *st;
    static const char *const topics[] = {"public", "orders", NULL};
    static const char *const owned[] = {"orders.eu", "orders", NULL};
    for (int16_t ver = 0; ver <= 9; ver++) {
        bg_kafka_req_hdr_t h = ka_hdr(JG, ver);
        bg_slice_t metas[2] = {jg_subscription(f, 0, topics, NULL),
                               jg_subscription(f, 3, topics, owned)};
        bg_kafka_verdict_t v;
        assert_int_equal(
            bg_kafka_authz_request(&f->ctx, &h,
                                   jg_request(f, ver, "g1", "consumer", jg_protocols, metas, 2),
                                   &f->a, &v),
            0);
        assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
        assert_int_equal(v.needs_response, 0);
        const bg_kafka_decision_t *g = ka_find_decision(&v, BG_RES_KAFKA_GROUP, "g1");
        assert_non_null(g);
        assert_int_equal(g->verb, BG_VERB_READ);
        assert_int_equal(g->decision.effect, BG_EFFECT_ALLOW);
        jg_topic_decided(&v, "orders", BG_EFFECT_ALLOW);
        jg_topic_decided(&v, "orders.eu", BG_EFFECT_ALLOW);
        jg_topic_decided(&v, "public", BG_EFFECT_ALLOW);
    }
}

/* One subscribed topic the principal may not describe: the join fails with
 * TOPIC_AUTHORIZATION_FAILED, nothing goes upstream, and the decisions name
 * every topic checked. Each metadata version on its own. */
static void test_denied_subscription(void **st)
{
    ka_fix_t *f = *st;
    static const char *const topics[] = {"orders", "secret", NULL};
    for (int16_t mver = 0; mver <= 3; mver++)
        for (int16_t ver = 0; ver <= 9; ver += 3) {
            bg_kafka_req_hdr_t h = ka_hdr(JG, ver);
            bg_slice_t meta = jg_subscription(f, mver, topics, NULL);
            bg_kafka_verdict_t v;
            assert_int_equal(bg_kafka_authz_request(
                                 &f->ctx, &h,
                                 jg_request(f, ver, "g-1", "consumer", jg_protocols, &meta, 1),
                                 &f->a, &v),
                             0);
            assert_int_equal(jg_answer(f, ver, &v), 29);
            jg_topic_decided(&v, "secret", BG_EFFECT_DENY);
            jg_topic_decided(&v, "orders", BG_EFFECT_ALLOW);
        }
}

/* A topic named only among the owned partitions (v1+) counts too; so does
 * one only the second protocol names. */
static void test_denied_owned_and_second_protocol(void **st)
{
    ka_fix_t *f = *st;
    static const char *const topics[] = {"orders", NULL};
    static const char *const owned[] = {"secret", NULL};
    static const char *const more[] = {"orders", "secret", NULL};
    bg_kafka_req_hdr_t h = ka_hdr(JG, 9);
    bg_slice_t meta = jg_subscription(f, 1, topics, owned);
    bg_kafka_verdict_t v;
    assert_int_equal(
        bg_kafka_authz_request(
            &f->ctx, &h, jg_request(f, 9, "g1", "consumer", jg_protocols, &meta, 1), &f->a, &v),
        0);
    assert_int_equal(jg_answer(f, 9, &v), 29);
    jg_topic_decided(&v, "secret", BG_EFFECT_DENY);
    bg_slice_t metas[2] = {jg_subscription(f, 0, topics, NULL), jg_subscription(f, 0, more, NULL)};
    assert_int_equal(
        bg_kafka_authz_request(
            &f->ctx, &h, jg_request(f, 9, "g1", "consumer", jg_protocols, metas, 2), &f->a, &v),
        0);
    assert_int_equal(jg_answer(f, 9, &v), 29);
    jg_topic_decided(&v, "secret", BG_EFFECT_DENY);
    jg_topic_decided(&v, "orders", BG_EFFECT_ALLOW);
}

/* The group first, as Kafka: GROUP_AUTHORIZATION_FAILED, topics not looked at. */
static void test_group_denied_first(void **st)
{
    ka_fix_t *f = *st;
    static const char *const topics[] = {"secret", NULL};
    bg_kafka_req_hdr_t h = ka_hdr(JG, 5);
    bg_slice_t meta = jg_subscription(f, 0, topics, NULL);
    bg_kafka_verdict_t v;
    assert_int_equal(
        bg_kafka_authz_request(
            &f->ctx, &h, jg_request(f, 5, "other", "consumer", jg_protocols, &meta, 1), &f->a, &v),
        0);
    assert_int_equal(jg_answer(f, 5, &v), 30);
    assert_int_equal(v.ndecisions, 1);
    assert_null(ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "secret"));
}

/* Metadata that is no ConsumerProtocolSubscription, in any protocol:
 * INCONSISTENT_GROUP_PROTOCOL, decided by busgate on the group with the
 * reader's reason; no topic decided, nothing forwarded. */
static void test_malformed(void **st)
{
    ka_fix_t *f = *st;
    static const char *const topics[] = {"orders", NULL};
    bg_slice_t good = jg_subscription(f, 3, topics, NULL);
    /* v0 with one byte past its last field. */
    bg_slice_t v0 = jg_subscription(f, 0, topics, NULL);
    uint8_t *longer = bg_kafka_arena_alloc(&f->a, (size_t)v0.len + 1);
    assert_non_null(longer);
    memcpy(longer, v0.p, (size_t)v0.len);
    longer[v0.len] = 0;
    const bg_slice_t bad[4] = {
        {good.p, good.len - 1},                                    /* truncated */
        {good.p, 0},                                               /* empty */
        {(const uint8_t *)"\xff\xff\0\0\0\0\xff\xff\xff\xff", 10}, /* version -1 */
        {longer, v0.len + 1},
    };
    static const char *const want[] = {"truncated", "truncated", "negative version",
                                       "bytes after the last field"};
    for (int i = 0; i < 4; i++) {
        bg_kafka_req_hdr_t h = ka_hdr(JG, 7);
        bg_slice_t metas[2] = {good, bad[i]};
        bg_kafka_verdict_t v;
        assert_int_equal(
            bg_kafka_authz_request(
                &f->ctx, &h, jg_request(f, 7, "g1", "consumer", jg_protocols, metas, 2), &f->a, &v),
            0);
        assert_int_equal(jg_answer(f, 7, &v), 23);
        assert_null(ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "orders"));
        const bg_kafka_decision_t *d = NULL;
        for (size_t k = 0; k < v.ndecisions; k++)
            if (v.decisions[k].error_code == 23)
                d = &v.decisions[k];
        assert_non_null(d);
        assert_int_equal(d->nresources, 1);
        assert_int_equal(d->resources[0].type, BG_RES_KAFKA_GROUP);
        assert_int_equal(d->decision.effect, BG_EFFECT_DENY);
        assert_null(d->decision.rule);
        assert_non_null(d->reason);
        assert_non_null(strstr(d->reason, "ConsumerProtocolSubscription"));
        if (!strstr(d->reason, want[i]))
            fail_msg("reason \"%s\", wanted \"%s\"", d->reason, want[i]);
    }
}

/* Other protocol types are opaque to the broker: read on the group only,
 * whatever the metadata holds; "consumer" without protocols names nothing. */
static void test_other_protocol_types(void **st)
{
    ka_fix_t *f = *st;
    static const char *const types[] = {"connect", "", "Consumer", "my-assignor"};
    bg_slice_t junk = {(const uint8_t *)"\xff\xff\xff", 3};
    static const char *const topics[] = {"secret", NULL};
    for (int i = 0; i < 4; i++) {
        bg_kafka_req_hdr_t h = ka_hdr(JG, 9);
        bg_slice_t metas[2] = {junk, jg_subscription(f, 0, topics, NULL)};
        bg_kafka_verdict_t v;
        assert_int_equal(
            bg_kafka_authz_request(
                &f->ctx, &h, jg_request(f, 9, "g1", types[i], jg_protocols, metas, 2), &f->a, &v),
            0);
        assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
        assert_int_equal(v.ndecisions, 1);
    }
    bg_kafka_req_hdr_t h = ka_hdr(JG, 9);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(
                         &f->ctx, &h, jg_request(f, 9, "g1", "consumer", NULL, NULL, 0), &f->a, &v),
                     0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    assert_int_equal(v.ndecisions, 1);
}

/* A refused JoinGroup's answer on the wire: ProtocolName null from v7
 * (compact nullable string: 0x00), as Kafka's getErrorResponse sets it,
 * "" before (v6 compact: 0x01; v0-5: int16 0). Before, v7+ carried "". */
static void test_refused_protocol_name_wire(void **st)
{
    ka_fix_t *f = *st;
    static const char *const topics[] = {"orders", NULL};
    for (int16_t ver = 0; ver <= 9; ver++) {
        bg_kafka_req_hdr_t h = ka_hdr(JG, ver);
        bg_slice_t metas[1] = {jg_subscription(f, 0, topics, NULL)};
        bg_kafka_verdict_t v;
        assert_int_equal(
            bg_kafka_authz_request(&f->ctx, &h,
                                   jg_request(f, ver, "secret", "consumer", jg_protocols, metas, 1),
                                   &f->a, &v),
            0);
        assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
        bg_wr_t wr;
        const char *why = NULL;
        bg_wr_init(&wr, 256, 0);
        assert_int_equal(bg_kafka_encode(bg_kafka_msg_desc(JG, 1), ver, v.response, &wr, &why),
                         BG_KAFKA_OK);
        /* [throttle v2+] error generation [protocol type v7+] name */
        size_t at = (ver >= 2 ? 4 : 0) + 2 + 4;
        assert_true(wr.len > at + 2);
        assert_int_equal(bg_t_be16(wr.buf + (ver >= 2 ? 4 : 0)),
                         30); /* GROUP_AUTHORIZATION_FAILED */
        if (ver >= 7) {
            assert_int_equal(wr.buf[at], 0x00);     /* protocol type: null */
            assert_int_equal(wr.buf[at + 1], 0x00); /* protocol name: null */
        } else if (ver == 6) {
            assert_int_equal(wr.buf[at], 0x01); /* "" */
        } else {
            assert_int_equal(bg_t_be16(wr.buf + at), 0); /* "" */
        }
        bg_wr_free(&wr);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_allowed, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_denied_subscription, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_denied_owned_and_second_protocol, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_group_denied_first, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_malformed, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_other_protocol_types, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_refused_protocol_name_wire, ka_up, ka_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
