/* Kafka authorization: classification, split/merge, denials, audit topic,
 * hold, acks=0, fetch sessions, topic ids, unsupported APIs. */
#include "test_kafka_authz_util.h"

static const char *const two[] = {"orders", "secret"};

static bg_kafka_struct_t *produce_req(ka_fix_t *f, const char *const *names, int n, int acks)
{
    bg_kafka_struct_t *r = ka_new(f, BG_KAFKA_API_PRODUCE, 0);
    r->f[K(PRODUCE_REQ_ACKS)].i = acks;
    ka_topics(f, r, K(PRODUCE_REQ_TOPIC_DATA), K(PRODUCE_REQ_TOPIC_DATA_NAME), names, n,
              K(PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA), K(PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA_INDEX),
              2);
    return r;
}

/* Upstream response for the allowed topics of a (rewritten) produce. */
static bg_kafka_struct_t *produce_resp(ka_fix_t *f, const bg_kafka_struct_t *req)
{
    bg_kafka_struct_t *r = ka_new(f, BG_KAFKA_API_PRODUCE, 1);
    int32_t n = req->f[K(PRODUCE_REQ_TOPIC_DATA)].a.n;
    bg_kafka_struct_t **t = bg_kafka_array_new(&f->a, r, K(PRODUCE_RESP_RESPONSES), n);
    for (int i = 0; i < n; i++) {
        const bg_kafka_struct_t *rt = req->f[K(PRODUCE_REQ_TOPIC_DATA)].a.s[i];
        t[i]->f[K(PRODUCE_RESP_RESPONSES_NAME)].s = rt->f[K(PRODUCE_REQ_TOPIC_DATA_NAME)].s;
        bg_kafka_struct_t **p = bg_kafka_array_new(
            &f->a, t[i], K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES), 1);
        p[0]->f[K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES_BASE_OFFSET)].i = 42;
    }
    return r;
}

static void test_produce_allowed(void **st)
{
    ka_fix_t *f = *st;
    const char *const names[] = {"orders", "orders.eu"};
    for (int16_t ver = 3; ver <= 13; ver += 10) {
        bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_PRODUCE, ver);
        bg_kafka_struct_t *req = produce_req(f, names, 2, 1);
        for (int i = 0; i < 2 && ver >= 13; i++) /* v13 names topics by id (1 = orders) */
            ka_el(req, K(PRODUCE_REQ_TOPIC_DATA), i)->f[K(PRODUCE_REQ_TOPIC_DATA_TOPIC_ID)].uuid[0] = 1;
        req = ka_rt(f, 0, 0, ver, req);
        bg_kafka_verdict_t v;
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
        assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
        assert_null(v.request);
        assert_int_equal(v.needs_response, ver >= 10);
        assert_int_equal(v.ndecisions, 1);
        assert_int_equal(v.decisions[0].verb, BG_VERB_WRITE);
        assert_int_equal(v.decisions[0].decision.effect, BG_EFFECT_ALLOW);
        assert_int_equal(v.decisions[0].nresources, 2);
        assert_string_equal(bg_policy_rule_name(v.decisions[0].decision.rule), "allow-orders");
    }
}

static void test_produce_split_merge(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_PRODUCE, 9);
    bg_kafka_struct_t *req = ka_rt(f, 0, 0, 9, produce_req(f, two, 2, -1));
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    assert_int_equal(v.needs_response, 1);
    assert_int_equal(v.request->f[K(PRODUCE_REQ_TOPIC_DATA)].a.n, 1);
    /* Shares the original element: nothing copied. */
    assert_ptr_equal(ka_el(v.request, K(PRODUCE_REQ_TOPIC_DATA), 0),
                     ka_el(req, K(PRODUCE_REQ_TOPIC_DATA), 0));
    assert_int_equal(req->f[K(PRODUCE_REQ_TOPIC_DATA)].a.n, 2); /* original untouched */
    assert_int_equal(v.ndecisions, 2);
    int denied = v.decisions[0].error_code ? 0 : 1;
    assert_int_equal(v.decisions[denied].error_code, 29);
    assert_true(ka_eq((bg_slice_t){(const uint8_t *)v.decisions[denied].resources[0].name,
                                   (int32_t)v.decisions[denied].resources[0].name_len},
                      "secret"));
    ka_rt(f, 0, 0, 9, v.request);

    bg_kafka_struct_t *up = ka_rt(f, 0, 1, 9, produce_resp(f, v.request)), *out = NULL;
    int32_t nodes[4];
    size_t nn = 4;
    assert_int_equal(bg_kafka_authz_response(&f->ctx, &h, &v, up, &f->a, &out, nodes, &nn, NULL,
                                             NULL),
                     0);
    bg_kafka_struct_t *m = ka_rt(f, 0, 1, 9, out);
    assert_int_equal(m->f[K(PRODUCE_RESP_RESPONSES)].a.n, 2);
    bg_kafka_struct_t *t0 = ka_el(m, K(PRODUCE_RESP_RESPONSES), 0);
    bg_kafka_struct_t *t1 = ka_el(m, K(PRODUCE_RESP_RESPONSES), 1);
    assert_true(ka_eq(t0->f[K(PRODUCE_RESP_RESPONSES_NAME)].s, "orders"));
    assert_int_equal(ka_el(t0, K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES), 0)
                         ->f[K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES_BASE_OFFSET)]
                         .i,
                     42);
    assert_true(ka_eq(t1->f[K(PRODUCE_RESP_RESPONSES_NAME)].s, "secret"));
    assert_int_equal(t1->f[K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES)].a.n, 2);
    for (int i = 0; i < 2; i++) {
        bg_kafka_struct_t *p = ka_el(t1, K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES), i);
        assert_int_equal(p->f[K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES_INDEX)].i, i);
        assert_int_equal(p->f[K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES_ERROR_CODE)].i, 29);
        assert_int_equal(p->f[K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES_BASE_OFFSET)].i, -1);
    }
}

/* A v2 record batch header (61 bytes) claiming count records, followed by
 * extra bytes of record data; batchLength covers both. */
static size_t batch(uint8_t *b, int32_t count, size_t extra)
{
    memset(b, 0, 61 + extra);
    uint32_t blen = (uint32_t)(49 + extra);
    b[8] = (uint8_t)(blen >> 24), b[9] = (uint8_t)(blen >> 16);
    b[10] = (uint8_t)(blen >> 8), b[11] = (uint8_t)blen;
    b[16] = 2; /* magic */
    b[57] = (uint8_t)((uint32_t)count >> 24), b[58] = (uint8_t)((uint32_t)count >> 16);
    b[59] = (uint8_t)((uint32_t)count >> 8), b[60] = (uint8_t)count;
    return 61 + extra;
}

static void set_records(bg_kafka_struct_t *req, int topic, int part, const uint8_t *p, size_t n)
{
    ka_el(ka_el(req, K(PRODUCE_REQ_TOPIC_DATA), topic), K(PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA),
          part)
        ->f[K(PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA_RECORDS)]
        .s = (bg_slice_t){p, (int32_t)n};
}

/* Each decision of a Produce carries the records its topics' batches hold,
 * allowed or refused; a legacy message counts one; a cut batch ends the
 * count. */
static void test_produce_records_counted(void **st)
{
    ka_fix_t *f = *st;
    static uint8_t o0[200], o1[100], s0[100], s1[100];
    size_t n0 = batch(o0, 3, 10);
    n0 += batch(o0 + n0, 4, 0);
    size_t n1 = batch(o1, 5, 7);
    size_t m0 = batch(s0, 7, 0);
    memcpy(s0 + m0, s0, 12); /* a second batch cut after its length: not counted */
    s0[m0 + 11] = 60;
    m0 += 12;
    memset(s1, 0, 40); /* a legacy message: offset, size 28, crc, magic 1, ... */
    s1[11] = 28, s1[16] = 1;
    for (int16_t ver = 3; ver <= 12; ver += 9) {
        bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_PRODUCE, ver);
        bg_kafka_struct_t *req = produce_req(f, two, 2, -1);
        set_records(req, 0, 0, o0, n0);
        set_records(req, 0, 1, o1, n1);
        set_records(req, 1, 0, s0, m0);
        set_records(req, 1, 1, s1, 40);
        req = ka_rt(f, 0, 0, ver, req);
        bg_kafka_verdict_t v;
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
        assert_int_equal(v.ndecisions, 2);
        int denied = v.decisions[0].error_code ? 0 : 1;
        assert_int_equal(v.decisions[1 - denied].records, 12);
        assert_int_equal(v.decisions[denied].records, 8);
    }
    /* Partitions without records count none. */
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_PRODUCE, 9);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, produce_req(f, two, 2, -1), &f->a, &v),
                     0);
    assert_int_equal(v.decisions[0].records + v.decisions[1].records, 0);
}

static void test_produce_all_denied_respond(void **st)
{
    ka_fix_t *f = *st;
    const char *const names[] = {"secret", "other"};
    for (int16_t ver = 3; ver <= 12; ver += 9) {
        bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_PRODUCE, ver);
        bg_kafka_verdict_t v;
        assert_int_equal(
            bg_kafka_authz_request(&f->ctx, &h, produce_req(f, names, 2, 1), &f->a, &v), 0);
        assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
        assert_int_equal(v.needs_response, 0);
        bg_kafka_struct_t *r = ka_rt(f, 0, 1, ver, v.response);
        assert_int_equal(r->f[K(PRODUCE_RESP_RESPONSES)].a.n, 2);
        for (int i = 0; i < 2; i++) {
            bg_kafka_struct_t *t = ka_el(r, K(PRODUCE_RESP_RESPONSES), i);
            assert_true(ka_eq(t->f[K(PRODUCE_RESP_RESPONSES_NAME)].s, names[i]));
            assert_int_equal(ka_el(t, K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES), 1)
                                 ->f[K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES_ERROR_CODE)]
                                 .i,
                             29);
        }
    }
}

static void test_produce_acks0(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_PRODUCE, 8);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, produce_req(f, two, 2, 0), &f->a, &v),
                     0);
    assert_int_equal(v.action, BG_KAFKA_ACT_CLOSE);
    assert_non_null(v.close_reason);
    assert_int_equal(
        bg_kafka_authz_request(&f->ctx, &h, produce_req(f, two, 1, 0), &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    assert_int_equal(v.no_response, 1);
    assert_int_equal(v.needs_response, 0);
    /* A denied transactional id with no topics at all is not forwarded. */
    bg_kafka_struct_t *req = produce_req(f, two, 0, 0);
    req->f[K(PRODUCE_REQ_TRANSACTIONAL_ID)].s = ka_s("tx-other");
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_CLOSE);
    assert_int_equal(v.decisions[0].error_code, BG_KAFKA_E_TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
}

/* The audit pipeline refusing: a request that expects a response gets
 * REQUEST_TIMED_OUT; an acks=0 produce (allowed or denied) gets none and
 * closes; nothing is recorded. */
static void test_refuse_unaudited(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_PRODUCE, 8);
    bg_kafka_struct_t *req = produce_req(f, two, 1, 1);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    bg_kafka_authz_refuse(&h, req, 7, "audit down", &f->a, &v);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    assert_int_equal(v.ndecisions, 0);
    bg_kafka_struct_t *t = ka_el(ka_rt(f, 0, 1, 8, v.response), K(PRODUCE_RESP_RESPONSES), 0);
    assert_int_equal(ka_el(t, K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES), 0)
                         ->f[K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES_ERROR_CODE)]
                         .i,
                     7);

    req = produce_req(f, two, 1, 0); /* acks=0, allowed: forwarded without a response */
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.no_response, 1);
    bg_kafka_authz_refuse(&h, req, 7, "audit down", &f->a, &v);
    assert_int_equal(v.action, BG_KAFKA_ACT_CLOSE);
    assert_null(v.response);
    assert_string_equal(v.close_reason, "audit down");
    assert_int_equal(v.ndecisions, 0);

    req = produce_req(f, two, 2, 0); /* acks=0, denied: closes for its own reason */
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_CLOSE);
    const char *why = v.close_reason;
    bg_kafka_authz_refuse(&h, req, 7, "audit down", &f->a, &v);
    assert_int_equal(v.action, BG_KAFKA_ACT_CLOSE);
    assert_null(v.response);
    assert_string_equal(v.close_reason, why);
    assert_int_equal(v.ndecisions, 0);
}

static void test_produce_txn_denied(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_PRODUCE, 7);
    bg_kafka_struct_t *req = produce_req(f, two, 1, -1);
    req->f[K(PRODUCE_REQ_TRANSACTIONAL_ID)].s = ka_s("tx-other");
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    bg_kafka_struct_t *r = ka_rt(f, 0, 1, 7, v.response);
    bg_kafka_struct_t *t = ka_el(r, K(PRODUCE_RESP_RESPONSES), 0);
    assert_int_equal(ka_el(t, K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES), 0)
                         ->f[K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES_ERROR_CODE)]
                         .i,
                     53);
    req->f[K(PRODUCE_REQ_TRANSACTIONAL_ID)].s = ka_s("tx1");
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    /* An empty transactional id is an id (Kafka decides write on ""), not
     * the null of an idempotent producer: refused without write on it. */
    req->f[K(PRODUCE_REQ_TRANSACTIONAL_ID)].s = ka_s("");
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    const bg_kafka_decision_t *d = ka_find_decision(&v, BG_RES_KAFKA_TXN_ID, "");
    assert_non_null(d);
    assert_int_equal(d->decision.effect, BG_EFFECT_DENY);
    assert_int_equal(d->error_code, 53);
}

/* A Produce without a transactional id whose batches are marked
 * transactional (attributes bit 4) is refused whole, as Kafka refuses it:
 * TRANSACTIONAL_ID_AUTHORIZATION_FAILED for every partition, whatever the
 * topics allow, audited as a deny of write on the (missing) transactional
 * id. With an allowed transactional id, or without the bit, it goes on. */
static void test_produce_transactional_batches_need_txn_id(void **st)
{
    ka_fix_t *f = *st;
    const char *const names[] = {"orders", "orders.eu"};
    static uint8_t plain[100], txn[100], later[200], other[100];
    size_t np = batch(plain, 2, 0);
    size_t nt = batch(txn, 3, 0);
    txn[22] = 0x10; /* attributes: transactional */
    size_t nl = batch(later, 1, 0); /* a plain batch, then a transactional one */
    nl += batch(later + nl, 1, 0);
    later[nl - 61 + 22] = 0x10;
    size_t no = batch(other, 1, 0);
    other[21] = 0x10, other[22] = 0x2f; /* every attribute bit but the transactional one */
    const uint8_t *refused[] = {txn, later};
    const size_t nrefused[] = {nt, nl};
    for (int k = 0; k < 2; k++) {
        for (int16_t ver = 3; ver <= 12; ver += 9) {
            bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_PRODUCE, ver);
            bg_kafka_struct_t *req = produce_req(f, names, 2, -1);
            set_records(req, 0, 0, plain, np);
            set_records(req, 1, 1, refused[k], nrefused[k]);
            req = ka_rt(f, 0, 0, ver, req);
            bg_kafka_verdict_t v;
            assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
            assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
            assert_int_equal(v.ndecisions, 1);
            const bg_kafka_decision_t *d = ka_find_decision(&v, BG_RES_KAFKA_TXN_ID, "");
            assert_non_null(d);
            assert_int_equal(d->verb, BG_VERB_WRITE);
            assert_int_equal(d->decision.effect, BG_EFFECT_DENY);
            assert_null(d->decision.rule);
            assert_int_equal(d->error_code, 53);
            assert_string_equal(d->reason, "transactional records without a transactional id");
            bg_kafka_struct_t *r = ka_rt(f, 0, 1, ver, v.response);
            assert_int_equal(r->f[K(PRODUCE_RESP_RESPONSES)].a.n, 2);
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++)
                    assert_int_equal(
                        ka_el(ka_el(r, K(PRODUCE_RESP_RESPONSES), i),
                              K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES), j)
                            ->f[K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES_ERROR_CODE)]
                            .i,
                        53);
            /* acks=0: no response to carry the error; the connection closes. */
            req->f[K(PRODUCE_REQ_ACKS)].i = 0;
            assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
            assert_int_equal(v.action, BG_KAFKA_ACT_CLOSE);
            /* With a transactional id alice may write: forwarded. */
            req->f[K(PRODUCE_REQ_ACKS)].i = -1;
            req->f[K(PRODUCE_REQ_TRANSACTIONAL_ID)].s = ka_s("tx1");
            assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
            assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
        }
    }
    /* No transactional bit (the other attributes set): an ordinary produce. */
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_PRODUCE, 9);
    bg_kafka_struct_t *req = produce_req(f, names, 2, -1);
    set_records(req, 0, 0, plain, np);
    set_records(req, 1, 1, other, no);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, ka_rt(f, 0, 0, 9, req), &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    assert_int_equal(v.ndecisions, 1);
    assert_int_equal(v.decisions[0].records, 3);
}

static void test_audit_topic_reserved(void **st)
{
    ka_fix_t *f = *st;
    const char *const names[] = {"audit.log"};
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_PRODUCE, 9);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, produce_req(f, names, 1, 1), &f->a, &v),
                     0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    assert_int_equal(v.ndecisions, 1);
    assert_null(v.decisions[0].decision.rule);
    assert_int_equal(v.decisions[0].decision.effect, BG_EFFECT_DENY);
    assert_string_equal(v.decisions[0].reason, "reserved audit topic");
    /* CreateTopics / DeleteTopics too. */
    bg_kafka_struct_t *ct = ka_new(f, BG_KAFKA_API_CREATE_TOPICS, 0);
    ka_topics(f, ct, K(CREATE_TOPICS_REQ_TOPICS), K(CREATE_TOPICS_REQ_TOPICS_NAME), names, 1, -1,
              -1, 0);
    h = ka_hdr(BG_KAFKA_API_CREATE_TOPICS, 7);
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, ct, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    /* Altering it in any way is refused too, though audit-all allows every
     * verb: configs (retention), partitions, records. */
    bg_kafka_struct_t *iac = ka_new(f, BG_KAFKA_API_INCREMENTAL_ALTER_CONFIGS, 0);
    bg_kafka_struct_t **res =
        ka_topics(f, iac, K(INCREMENTAL_ALTER_CONFIGS_REQ_RESOURCES),
                  K(INCREMENTAL_ALTER_CONFIGS_REQ_RESOURCES_RESOURCE_NAME), names, 1, -1, -1, 0);
    res[0]->f[K(INCREMENTAL_ALTER_CONFIGS_REQ_RESOURCES_RESOURCE_TYPE)].i = 2; /* topic */
    bg_kafka_struct_t *cp = ka_new(f, BG_KAFKA_API_CREATE_PARTITIONS, 0);
    ka_topics(f, cp, K(CREATE_PARTITIONS_REQ_TOPICS), K(CREATE_PARTITIONS_REQ_TOPICS_NAME), names,
              1, -1, -1, 0);
    bg_kafka_struct_t *dr = ka_new(f, BG_KAFKA_API_DELETE_RECORDS, 0);
    ka_topics(f, dr, K(DELETE_RECORDS_REQ_TOPICS), K(DELETE_RECORDS_REQ_TOPICS_NAME), names, 1,
              K(DELETE_RECORDS_REQ_TOPICS_PARTITIONS),
              K(DELETE_RECORDS_REQ_TOPICS_PARTITIONS_PARTITION_INDEX), 1);
    const struct {
        int16_t api, ver;
        bg_kafka_struct_t *req;
    } alters[] = {{BG_KAFKA_API_INCREMENTAL_ALTER_CONFIGS, 1, iac},
                  {BG_KAFKA_API_CREATE_PARTITIONS, 3, cp},
                  {BG_KAFKA_API_DELETE_RECORDS, 2, dr}};
    for (size_t i = 0; i < sizeof alters / sizeof alters[0]; i++) {
        h = ka_hdr(alters[i].api, alters[i].ver);
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, alters[i].req, &f->a, &v), 0);
        assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
        assert_int_equal(v.ndecisions, 1);
        assert_int_equal(v.decisions[0].decision.effect, BG_EFFECT_DENY);
        assert_string_equal(v.decisions[0].reason, "reserved audit topic");
    }
    /* Reading it follows the policy (allowed by audit-all). */
    bg_kafka_struct_t *lo = ka_new(f, BG_KAFKA_API_LIST_OFFSETS, 0);
    lo->f[K(LIST_OFFSETS_REQ_REPLICA_ID)].i = -1; /* a consumer */
    ka_topics(f, lo, K(LIST_OFFSETS_REQ_TOPICS), K(LIST_OFFSETS_REQ_TOPICS_NAME), names, 1,
              K(LIST_OFFSETS_REQ_TOPICS_PARTITIONS),
              K(LIST_OFFSETS_REQ_TOPICS_PARTITIONS_PARTITION_INDEX), 1);
    h = ka_hdr(BG_KAFKA_API_LIST_OFFSETS, 5);
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, lo, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    assert_null(v.decisions[0].reason);
    /* Only the audit topic's whole name is reserved: a name it starts with
     * follows the policy. */
    f->ctx.audit_topic = "orders.audit";
    const char *const stem[] = {"orders", "orders.audit"};
    h = ka_hdr(BG_KAFKA_API_PRODUCE, 9);
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, produce_req(f, stem, 1, 1), &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    assert_int_equal(
        bg_kafka_authz_request(&f->ctx, &h, produce_req(f, stem + 1, 1, 1), &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    assert_string_equal(v.decisions[0].reason, "reserved audit topic");
}

static void test_hold_is_deny(void **st)
{
    ka_fix_t *f = *st;
    const char *const names[] = {"held"};
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_PRODUCE, 9);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, produce_req(f, names, 1, 1), &f->a, &v),
                     0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    assert_int_equal(v.decisions[0].decision.effect, BG_EFFECT_DENY);
    assert_int_equal(v.decisions[0].decision.would, BG_EFFECT_HOLD);
    assert_string_equal(bg_policy_rule_name(v.decisions[0].decision.rule), "hold-held");
    assert_int_equal(v.decisions[0].error_code, 29);
}

static bg_kafka_struct_t *fetch_req(ka_fix_t *f, const char *const *names, int n)
{
    bg_kafka_struct_t *r = ka_new(f, BG_KAFKA_API_FETCH, 0);
    r->f[K(FETCH_REQ_REPLICA_ID)].i = -1;
    ka_topics(f, r, K(FETCH_REQ_TOPICS), K(FETCH_REQ_TOPICS_TOPIC), names, n,
              K(FETCH_REQ_TOPICS_PARTITIONS), K(FETCH_REQ_TOPICS_PARTITIONS_PARTITION), 2);
    return r;
}

static void test_fetch_split_merge_min(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_FETCH, 4);
    bg_kafka_struct_t *req = ka_rt(f, 1, 0, 4, fetch_req(f, two, 2));
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    assert_int_equal(v.request->f[K(FETCH_REQ_TOPICS)].a.n, 1);
    bg_kafka_struct_t *up = ka_new(f, 1, 1), *out;
    const char *const one[] = {"orders"};
    ka_topics(f, up, K(FETCH_RESP_RESPONSES), K(FETCH_RESP_RESPONSES_TOPIC), one, 1,
              K(FETCH_RESP_RESPONSES_PARTITIONS), K(FETCH_RESP_RESPONSES_PARTITIONS_PARTITION_INDEX),
              2);
    size_t nn = 0;
    assert_int_equal(
        bg_kafka_authz_response(&f->ctx, &h, &v, up, &f->a, &out, NULL, &nn, NULL, NULL), 0);
    bg_kafka_struct_t *m = ka_rt(f, 1, 1, 4, out);
    assert_int_equal(m->f[K(FETCH_RESP_RESPONSES)].a.n, 2);
    bg_kafka_struct_t *t = ka_el(m, K(FETCH_RESP_RESPONSES), 1);
    assert_true(ka_eq(t->f[K(FETCH_RESP_RESPONSES_TOPIC)].s, "secret"));
    bg_kafka_struct_t *p = ka_el(t, K(FETCH_RESP_RESPONSES_PARTITIONS), 1);
    assert_int_equal(p->f[K(FETCH_RESP_RESPONSES_PARTITIONS_ERROR_CODE)].i, 29);
    assert_int_equal(p->f[K(FETCH_RESP_RESPONSES_PARTITIONS_HIGH_WATERMARK)].i, -1);
    assert_int_equal(p->f[K(FETCH_RESP_RESPONSES_PARTITIONS_RECORDS)].s.len, 0);
}

/* No masking engine in this build: a fetch of a topic a mask applies to is
 * refused for that topic only, with busgate's reason; a produce to it and a
 * principal the mask excepts are not affected. */
static void test_fetch_masked_topic_refused(void **st)
{
    ka_fix_t *f = *st;
    const char *const names[] = {"orders", "orders.pii"};
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_FETCH, 12);
    bg_kafka_verdict_t v;
    assert_int_equal(
        bg_kafka_authz_request(&f->ctx, &h, ka_rt(f, 1, 0, 12, fetch_req(f, names, 2)), &f->a, &v),
        0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    assert_int_equal(v.request->f[K(FETCH_REQ_TOPICS)].a.n, 1);
    assert_true(ka_eq(ka_el(v.request, K(FETCH_REQ_TOPICS), 0)->f[K(FETCH_REQ_TOPICS_TOPIC)].s,
                      "orders"));
    assert_int_equal(v.ndecisions, 2);
    const bg_kafka_decision_t *d = v.decisions[0].error_code ? &v.decisions[0] : &v.decisions[1];
    assert_int_equal(d->error_code, BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED);
    assert_int_equal(d->decision.effect, BG_EFFECT_DENY);
    assert_int_equal(d->decision.would, BG_EFFECT_ALLOW);
    assert_string_equal(bg_policy_rule_name(d->decision.rule), "allow-orders");
    assert_string_equal(d->reason, "masked topic: no masking in this build");
    assert_int_equal(d->decision.nmasks, 1);
    assert_string_equal(bg_policy_mask_name(d->decision.masks[0]), "pii");

    const char *const pii[] = {"orders.pii"};
    bg_kafka_req_hdr_t hp = ka_hdr(BG_KAFKA_API_PRODUCE, 9);
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &hp, produce_req(f, pii, 1, 1), &f->a, &v),
                     0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);

    /* The mask's except group sees the topic as the rule allows it. */
    const char *const fraud[] = {"fraud"};
    bg_policy_principal_t pr;
    assert_int_equal(bg_policy_principal_prepare(f->pol, "carol", fraud, 1, &pr), 0);
    f->ctx.principal = &pr;
    assert_int_equal(
        bg_kafka_authz_request(&f->ctx, &h, ka_rt(f, 1, 0, 12, fetch_req(f, names, 2)), &f->a, &v),
        0);
    f->ctx.principal = &f->pr;
    bg_policy_principal_clear(&pr);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    assert_int_equal(v.decisions[0].decision.nmasks, 0);
}

static void test_fetch_topic_ids(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_FETCH, 13);
    bg_kafka_struct_t *req = fetch_req(f, two, 2);
    /* By id: 1 = orders (allowed), 9 = unknown. */
    ka_el(req, K(FETCH_REQ_TOPICS), 0)->f[K(FETCH_REQ_TOPICS_TOPIC_ID)].uuid[0] = 1;
    ka_el(req, K(FETCH_REQ_TOPICS), 1)->f[K(FETCH_REQ_TOPICS_TOPIC_ID)].uuid[0] = 9;
    req->f[K(FETCH_REQ_SESSION_EPOCH)].i = -1;
    req = ka_rt(f, 1, 0, 13, req);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    assert_int_equal(v.request->f[K(FETCH_REQ_TOPICS)].a.n, 1);
    assert_int_equal(
        ka_el(v.request, K(FETCH_REQ_TOPICS), 0)->f[K(FETCH_REQ_TOPICS_TOPIC_ID)].uuid[0], 1);
    bg_kafka_struct_t *up = ka_new(f, 1, 1), *out;
    size_t nn = 0;
    assert_int_equal(
        bg_kafka_authz_response(&f->ctx, &h, &v, up, &f->a, &out, NULL, &nn, NULL, NULL), 0);
    bg_kafka_struct_t *m = ka_rt(f, 1, 1, 13, out);
    bg_kafka_struct_t *t = ka_el(m, K(FETCH_RESP_RESPONSES), 0);
    assert_int_equal(t->f[K(FETCH_RESP_RESPONSES_TOPIC_ID)].uuid[0], 9);
    assert_int_equal(
        ka_el(t, K(FETCH_RESP_RESPONSES_PARTITIONS), 0)->f[K(FETCH_RESP_RESPONSES_PARTITIONS_ERROR_CODE)].i,
        BG_KAFKA_E_UNKNOWN_TOPIC_ID);
    /* Every id unknown: answered locally, never forwarded. */
    ka_el(req, K(FETCH_REQ_TOPICS), 0)->f[K(FETCH_REQ_TOPICS_TOPIC_ID)].uuid[0] = 7;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    ka_rt(f, 1, 1, 13, v.response);
}

static void test_fetch_session_rewrite(void **st)
{
    ka_fix_t *f = *st;
    const char *const one[] = {"orders"};
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_FETCH, 12);
    bg_kafka_struct_t *req = fetch_req(f, one, 1);
    req->f[K(FETCH_REQ_SESSION_ID)].i = 77;
    req->f[K(FETCH_REQ_SESSION_EPOCH)].i = 3;
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    assert_int_equal(v.request->f[K(FETCH_REQ_SESSION_ID)].i, 0);
    assert_int_equal(v.request->f[K(FETCH_REQ_SESSION_EPOCH)].i, -1);
    assert_int_equal(req->f[K(FETCH_REQ_SESSION_ID)].i, 77);
    ka_rt(f, 1, 0, 12, v.request);
    /* v7, the first version with sessions, is made sessionless as well,
     * and a full fetch forgets nothing: the incremental request's
     * forgotten topics do not go up. */
    bg_kafka_req_hdr_t h7 = ka_hdr(BG_KAFKA_API_FETCH, 7);
    bg_kafka_struct_t **fg =
        bg_kafka_array_new(&f->a, req, K(FETCH_REQ_FORGOTTEN_TOPICS_DATA), 1);
    assert_non_null(fg);
    fg[0]->f[K(FETCH_REQ_FORGOTTEN_TOPICS_DATA_TOPIC)].s = ka_s("orders.old");
    bg_kafka_struct_t *req7 = ka_rt(f, 1, 0, 7, req);
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h7, req7, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    assert_int_equal(v.request->f[K(FETCH_REQ_SESSION_ID)].i, 0);
    assert_int_equal(v.request->f[K(FETCH_REQ_SESSION_EPOCH)].i, -1);
    assert_int_equal(v.request->f[K(FETCH_REQ_FORGOTTEN_TOPICS_DATA)].a.n, 0);
    assert_int_equal(v.request->f[K(FETCH_REQ_TOPICS)].a.n, 1);
    ka_rt(f, 1, 0, 7, v.request);
    req->f[K(FETCH_REQ_FORGOTTEN_TOPICS_DATA)].a.n = 0;
    /* Already sessionless: untouched, fast path. */
    req->f[K(FETCH_REQ_SESSION_ID)].i = 0;
    req->f[K(FETCH_REQ_SESSION_EPOCH)].i = -1;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    assert_int_equal(v.needs_response, 0);
    /* An initial session request (epoch 0) is rewritten too. */
    req->f[K(FETCH_REQ_SESSION_EPOCH)].i = 0;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    /* No topic at all, naming a session busgate never let this client have
     * (another client's, a follower's): it must not reach that session. */
    bg_kafka_struct_t *empty = fetch_req(f, one, 0);
    empty->f[K(FETCH_REQ_SESSION_ID)].i = 12345;
    empty->f[K(FETCH_REQ_SESSION_EPOCH)].i = 7;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, empty, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    assert_int_equal(v.request->f[K(FETCH_REQ_SESSION_ID)].i, 0);
    assert_int_equal(v.request->f[K(FETCH_REQ_SESSION_EPOCH)].i, -1);
    assert_int_equal(v.request->f[K(FETCH_REQ_TOPICS)].a.n, 0);
    assert_int_equal(v.request->f[K(FETCH_REQ_FORGOTTEN_TOPICS_DATA)].a.n, 0);
    ka_rt(f, 1, 0, 12, v.request);
}

/* OffsetForLeaderEpoch from a follower (replica id >= 0): refused for
 * every topic, and audited as a replica request. */
static void test_offset_for_leader_epoch_replica(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_OFFSET_FOR_LEADER_EPOCH, 4);
    bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_OFFSET_FOR_LEADER_EPOCH, 0);
    const char *const names[] = {"orders"};
    ka_topics(f, req, K(OFFSET_FOR_LEADER_EPOCH_REQ_TOPICS),
              K(OFFSET_FOR_LEADER_EPOCH_REQ_TOPICS_TOPIC), names, 1, -1, -1, 0);
    req->f[K(OFFSET_FOR_LEADER_EPOCH_REQ_REPLICA_ID)].i = 2;
    bg_kafka_verdict_t v;
    assert_int_equal(
        bg_kafka_authz_request(&f->ctx, &h, ka_rt(f, 23, 0, 4, req), &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    int replica = 0;
    for (size_t i = 0; i < v.ndecisions; i++)
        replica |= v.decisions[i].reason && strstr(v.decisions[i].reason, "replica") &&
                   v.decisions[i].decision.effect == BG_EFFECT_DENY;
    assert_true(replica);
}

static void test_list_offsets_split(void **st)
{
    ka_fix_t *f = *st;
    for (int16_t ver = 1; ver <= 10; ver += 9) {
        bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_LIST_OFFSETS, ver);
        bg_kafka_struct_t *req = ka_new(f, 2, 0);
        req->f[K(LIST_OFFSETS_REQ_REPLICA_ID)].i = -1; /* a consumer */
        const char *const names[] = {"secret", "public"};
        ka_topics(f, req, K(LIST_OFFSETS_REQ_TOPICS), K(LIST_OFFSETS_REQ_TOPICS_NAME), names, 2,
                  K(LIST_OFFSETS_REQ_TOPICS_PARTITIONS),
                  K(LIST_OFFSETS_REQ_TOPICS_PARTITIONS_PARTITION_INDEX), 1);
        bg_kafka_verdict_t v;
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, ka_rt(f, 2, 0, ver, req), &f->a, &v),
                         0);
        assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
        assert_true(ka_eq(ka_el(v.request, K(LIST_OFFSETS_REQ_TOPICS), 0)
                              ->f[K(LIST_OFFSETS_REQ_TOPICS_NAME)]
                              .s,
                          "public"));
        bg_kafka_struct_t *up = ka_new(f, 2, 1), *out;
        const char *const one[] = {"public"};
        ka_topics(f, up, K(LIST_OFFSETS_RESP_TOPICS), K(LIST_OFFSETS_RESP_TOPICS_NAME), one, 1,
                  K(LIST_OFFSETS_RESP_TOPICS_PARTITIONS),
                  K(LIST_OFFSETS_RESP_TOPICS_PARTITIONS_PARTITION_INDEX), 1);
        size_t nn = 0;
        assert_int_equal(
            bg_kafka_authz_response(&f->ctx, &h, &v, up, &f->a, &out, NULL, &nn, NULL, NULL), 0);
        bg_kafka_struct_t *m = ka_rt(f, 2, 1, ver, out);
        assert_int_equal(m->f[K(LIST_OFFSETS_RESP_TOPICS)].a.n, 2);
        bg_kafka_struct_t *p = ka_el(ka_el(m, K(LIST_OFFSETS_RESP_TOPICS), 1),
                                     K(LIST_OFFSETS_RESP_TOPICS_PARTITIONS), 0);
        assert_int_equal(p->f[K(LIST_OFFSETS_RESP_TOPICS_PARTITIONS_ERROR_CODE)].i, 29);
        assert_int_equal(p->f[K(LIST_OFFSETS_RESP_TOPICS_PARTITIONS_OFFSET)].i, -1);
    }
}

static void test_offset_commit(void **st)
{
    ka_fix_t *f = *st;
    for (int16_t ver = 2; ver <= 9; ver += 7) {
        bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_OFFSET_COMMIT, ver);
        bg_kafka_struct_t *req = ka_new(f, 8, 0);
        req->f[K(OFFSET_COMMIT_REQ_GROUP_ID)].s = ka_s("g1");
        ka_topics(f, req, K(OFFSET_COMMIT_REQ_TOPICS), K(OFFSET_COMMIT_REQ_TOPICS_NAME), two, 2,
                  K(OFFSET_COMMIT_REQ_TOPICS_PARTITIONS),
                  K(OFFSET_COMMIT_REQ_TOPICS_PARTITIONS_PARTITION_INDEX), 3);
        bg_kafka_verdict_t v;
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
        assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
        bg_kafka_struct_t *up = ka_new(f, 8, 1), *out;
        size_t nn = 0;
        assert_int_equal(
            bg_kafka_authz_response(&f->ctx, &h, &v, up, &f->a, &out, NULL, &nn, NULL, NULL), 0);
        bg_kafka_struct_t *m = ka_rt(f, 8, 1, ver, out);
        bg_kafka_struct_t *t = ka_el(m, K(OFFSET_COMMIT_RESP_TOPICS), 0);
        assert_true(ka_eq(t->f[K(OFFSET_COMMIT_RESP_TOPICS_NAME)].s, "secret"));
        assert_int_equal(t->f[K(OFFSET_COMMIT_RESP_TOPICS_PARTITIONS)].a.n, 3);
        /* Group denied: every partition GROUP_AUTHORIZATION_FAILED, local answer. */
        req->f[K(OFFSET_COMMIT_REQ_GROUP_ID)].s = ka_s("other");
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
        assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
        m = ka_rt(f, 8, 1, ver, v.response);
        assert_int_equal(m->f[K(OFFSET_COMMIT_RESP_TOPICS)].a.n, 2);
        t = ka_el(m, K(OFFSET_COMMIT_RESP_TOPICS), 0);
        assert_int_equal(ka_el(t, K(OFFSET_COMMIT_RESP_TOPICS_PARTITIONS), 2)
                             ->f[K(OFFSET_COMMIT_RESP_TOPICS_PARTITIONS_ERROR_CODE)]
                             .i,
                         30);
    }
}

static void test_offset_fetch_single(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_OFFSET_FETCH, 7);
    bg_kafka_struct_t *req = ka_new(f, 9, 0);
    req->f[K(OFFSET_FETCH_REQ_GROUP_ID)].s = ka_s("g1");
    bg_kafka_struct_t **t = ka_topics(f, req, K(OFFSET_FETCH_REQ_TOPICS),
                                      K(OFFSET_FETCH_REQ_TOPICS_NAME), two, 2, -1, -1, 0);
    for (int i = 0; i < 2; i++) {
        bg_kafka_val_t *pv = bg_kafka_array_vals(&f->a, t[i], K(OFFSET_FETCH_REQ_TOPICS_PARTITION_INDEXES), 2);
        pv[0].i = 0;
        pv[1].i = 5;
    }
    req = ka_rt(f, 9, 0, 7, req);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    bg_kafka_struct_t *up = ka_new(f, 9, 1), *out;
    size_t nn = 0;
    assert_int_equal(
        bg_kafka_authz_response(&f->ctx, &h, &v, up, &f->a, &out, NULL, &nn, NULL, NULL), 0);
    bg_kafka_struct_t *m = ka_rt(f, 9, 1, 7, out);
    bg_kafka_struct_t *p = ka_el(ka_el(m, K(OFFSET_FETCH_RESP_TOPICS), 0),
                                 K(OFFSET_FETCH_RESP_TOPICS_PARTITIONS), 1);
    assert_int_equal(p->f[K(OFFSET_FETCH_RESP_TOPICS_PARTITIONS_PARTITION_INDEX)].i, 5);
    assert_int_equal(p->f[K(OFFSET_FETCH_RESP_TOPICS_PARTITIONS_ERROR_CODE)].i, 29);
    assert_int_equal(p->f[K(OFFSET_FETCH_RESP_TOPICS_PARTITIONS_COMMITTED_OFFSET)].i, -1);
    /* All topics (null): forwarded, response filtered. */
    req->f[K(OFFSET_FETCH_REQ_TOPICS)].a.n = -1;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    assert_int_equal(v.needs_response, 1);
    up = ka_new(f, 9, 1);
    ka_topics(f, up, K(OFFSET_FETCH_RESP_TOPICS), K(OFFSET_FETCH_RESP_TOPICS_NAME), two, 2, -1,
              -1, 0);
    assert_int_equal(
        bg_kafka_authz_response(&f->ctx, &h, &v, up, &f->a, &out, NULL, &nn, NULL, NULL), 0);
    assert_int_equal(out->f[K(OFFSET_FETCH_RESP_TOPICS)].a.n, 1);
    /* Group denied: top-level error (v2+). */
    req->f[K(OFFSET_FETCH_REQ_GROUP_ID)].s = ka_s("nope");
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    assert_int_equal(ka_rt(f, 9, 1, 7, v.response)->f[K(OFFSET_FETCH_RESP_ERROR_CODE)].i, 30);
}

/* Listings are audited once per request as an allow on "*": a batched
 * OffsetFetch whose two groups both ask for all their topics records one
 * listing (not one per group), next to the group decision; an all-topics
 * DescribeTopicPartitions records one too. */
static void test_listing_recorded_once(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_OFFSET_FETCH, 9);
    bg_kafka_struct_t *req = ka_new(f, 9, 0);
    const char *const groups[] = {"g1", "g-2"};
    bg_kafka_struct_t **g = ka_topics(f, req, K(OFFSET_FETCH_REQ_GROUPS),
                                      K(OFFSET_FETCH_REQ_GROUPS_GROUP_ID), groups, 2, -1, -1, 0);
    g[0]->f[K(OFFSET_FETCH_REQ_GROUPS_TOPICS)].a.n = -1; /* all topics */
    g[1]->f[K(OFFSET_FETCH_REQ_GROUPS_TOPICS)].a.n = -1;
    req = ka_rt(f, 9, 0, 9, req);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    size_t listings = 0, group_decisions = 0;
    for (size_t i = 0; i < v.ndecisions; i++) {
        const bg_kafka_decision_t *d = &v.decisions[i];
        if (d->reason && strstr(d->reason, "listing")) {
            listings++;
            assert_int_equal(d->decision.effect, BG_EFFECT_ALLOW);
            assert_int_equal(d->nresources, 1);
            assert_int_equal(d->resources[0].type, BG_RES_KAFKA_TOPIC);
            assert_int_equal(d->resources[0].name_len, 1);
            assert_memory_equal(d->resources[0].name, "*", 1);
        } else {
            group_decisions++;
            assert_int_equal(d->resources[0].type, BG_RES_KAFKA_GROUP);
        }
    }
    assert_int_equal(listings, 1);
    assert_int_equal(group_decisions, 1); /* g1 and g-2: one rule, one group decision */

    h = ka_hdr(BG_KAFKA_API_DESCRIBE_TOPIC_PARTITIONS, 0);
    bg_kafka_struct_t *dtp = ka_new(f, BG_KAFKA_API_DESCRIBE_TOPIC_PARTITIONS, 0);
    assert_non_null(bg_kafka_array_new(&f->a, dtp, K(DESCRIBE_TOPIC_PARTITIONS_REQ_TOPICS), 0));
    /* DescribeTopicPartitions for all topics is refused (its pages would
     * show where hidden topics are): the connection closes, audited as a
     * deny on "*". */
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, dtp, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_CLOSE);
    assert_non_null(strstr(v.close_reason, "name the topics"));
    assert_int_equal(v.ndecisions, 1);
    assert_int_equal(v.decisions[0].decision.effect, BG_EFFECT_DENY);
    assert_non_null(strstr(v.decisions[0].reason, "name the topics"));
    assert_memory_equal(v.decisions[0].resources[0].name, "*", 1);

    /* Only denied names, all before the cursor: answered here with no
     * topics. Before, the request went up with an empty list, which the
     * broker reads as every topic from the cursor on. */
    const char *const hidden[] = {"nope"};
    dtp = ka_new(f, BG_KAFKA_API_DESCRIBE_TOPIC_PARTITIONS, 0);
    ka_topics(f, dtp, K(DESCRIBE_TOPIC_PARTITIONS_REQ_TOPICS),
              K(DESCRIBE_TOPIC_PARTITIONS_REQ_TOPICS_NAME), hidden, 1, -1, -1, 0);
    bg_kafka_struct_t *cur = bg_kafka_struct_new(
        &f->a, bg_kafka_sub_desc(dtp->desc, K(DESCRIBE_TOPIC_PARTITIONS_REQ_CURSOR)));
    assert_non_null(cur);
    cur->f[K(DESCRIBE_TOPIC_PARTITIONS_REQ_CURSOR_TOPIC_NAME)].s = ka_s("o");
    dtp->f[K(DESCRIBE_TOPIC_PARTITIONS_REQ_CURSOR)].st = cur;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, dtp, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    assert_non_null(v.response);
    assert_int_equal(v.response->f[K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS)].a.n, 0);
    assert_null(v.response->f[K(DESCRIBE_TOPIC_PARTITIONS_RESP_NEXT_CURSOR)].st);
    assert_int_equal(v.ndecisions, 1);
    assert_int_equal(v.decisions[0].decision.effect, BG_EFFECT_DENY);
}

/* DescribeTopicPartitions with a cursor on a denied topic: the denied
 * topic's stub is answered (it is at the cursor, as Kafka answers it) and
 * the broker gets the first allowed name after it as the cursor, from its
 * partition 0, not the denied topic's partition. */
static void test_dtp_cursor_on_denied_topic(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_DESCRIBE_TOPIC_PARTITIONS, 0);
    const char *const names[] = {"nope", "orders.b", "orders.a"};
    bg_kafka_struct_t *dtp = ka_new(f, BG_KAFKA_API_DESCRIBE_TOPIC_PARTITIONS, 0);
    ka_topics(f, dtp, K(DESCRIBE_TOPIC_PARTITIONS_REQ_TOPICS),
              K(DESCRIBE_TOPIC_PARTITIONS_REQ_TOPICS_NAME), names, 3, -1, -1, 0);
    bg_kafka_struct_t *cur = bg_kafka_struct_new(
        &f->a, bg_kafka_sub_desc(dtp->desc, K(DESCRIBE_TOPIC_PARTITIONS_REQ_CURSOR)));
    assert_non_null(cur);
    cur->f[K(DESCRIBE_TOPIC_PARTITIONS_REQ_CURSOR_TOPIC_NAME)].s = ka_s("nope");
    cur->f[K(DESCRIBE_TOPIC_PARTITIONS_REQ_CURSOR_PARTITION_INDEX)].i = 3;
    dtp->f[K(DESCRIBE_TOPIC_PARTITIONS_REQ_CURSOR)].st = cur;
    dtp = ka_rt(f, BG_KAFKA_API_DESCRIBE_TOPIC_PARTITIONS, 0, 0, dtp);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, dtp, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    bg_kafka_struct_t *up = ka_rt(f, BG_KAFKA_API_DESCRIBE_TOPIC_PARTITIONS, 0, 0, v.request);
    assert_int_equal(up->f[K(DESCRIBE_TOPIC_PARTITIONS_REQ_TOPICS)].a.n, 2);
    const bg_kafka_struct_t *nc = up->f[K(DESCRIBE_TOPIC_PARTITIONS_REQ_CURSOR)].st;
    assert_non_null(nc);
    assert_true(ka_eq(nc->f[K(DESCRIBE_TOPIC_PARTITIONS_REQ_CURSOR_TOPIC_NAME)].s, "orders.a"));
    assert_int_equal(nc->f[K(DESCRIBE_TOPIC_PARTITIONS_REQ_CURSOR_PARTITION_INDEX)].i, 0);
    /* The broker answers the allowed names; the denied one's stub is added. */
    bg_kafka_struct_t *resp = ka_new(f, BG_KAFKA_API_DESCRIBE_TOPIC_PARTITIONS, 1), *out;
    ka_topics(f, resp, K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS),
              K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_NAME), names + 1, 2, -1, -1, 0);
    size_t nn = 0;
    assert_int_equal(
        bg_kafka_authz_response(&f->ctx, &h, &v, resp, &f->a, &out, NULL, &nn, NULL, NULL), 0);
    bg_kafka_struct_t *m = ka_rt(f, BG_KAFKA_API_DESCRIBE_TOPIC_PARTITIONS, 1, 0, out);
    assert_int_equal(m->f[K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS)].a.n, 3);
    bg_kafka_struct_t *stub = ka_el(m, K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS), 2);
    assert_true(ka_eq(stub->f[K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_NAME)].s, "nope"));
    assert_int_equal(stub->f[K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_ERROR_CODE)].i, 29);
}

static void test_offset_fetch_batched(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_OFFSET_FETCH, 9);
    bg_kafka_struct_t *req = ka_new(f, 9, 0);
    const char *const groups[] = {"g1", "bad"};
    bg_kafka_struct_t **g = ka_topics(f, req, K(OFFSET_FETCH_REQ_GROUPS),
                                      K(OFFSET_FETCH_REQ_GROUPS_GROUP_ID), groups, 2, -1, -1, 0);
    ka_topics(f, g[0], K(OFFSET_FETCH_REQ_GROUPS_TOPICS), K(OFFSET_FETCH_REQ_GROUPS_TOPICS_NAME),
              two, 2, -1, -1, 0);
    req = ka_rt(f, 9, 0, 9, req);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    assert_int_equal(v.request->f[K(OFFSET_FETCH_REQ_GROUPS)].a.n, 1);
    bg_kafka_struct_t *fg = ka_el(v.request, K(OFFSET_FETCH_REQ_GROUPS), 0);
    assert_int_equal(fg->f[K(OFFSET_FETCH_REQ_GROUPS_TOPICS)].a.n, 1);
    ka_rt(f, 9, 0, 9, v.request);
    /* Upstream answers group g1 with orders. */
    bg_kafka_struct_t *up = ka_new(f, 9, 1), *out;
    const char *const g1[] = {"g1"}, *const orders[] = {"orders"};
    bg_kafka_struct_t **ug = ka_topics(f, up, K(OFFSET_FETCH_RESP_GROUPS),
                                       K(OFFSET_FETCH_RESP_GROUPS_GROUP_ID), g1, 1, -1, -1, 0);
    ka_topics(f, ug[0], K(OFFSET_FETCH_RESP_GROUPS_TOPICS), K(OFFSET_FETCH_RESP_GROUPS_TOPICS_NAME),
              orders, 1, -1, -1, 0);
    size_t nn = 0;
    assert_int_equal(
        bg_kafka_authz_response(&f->ctx, &h, &v, up, &f->a, &out, NULL, &nn, NULL, NULL), 0);
    bg_kafka_struct_t *m = ka_rt(f, 9, 1, 9, out);
    assert_int_equal(m->f[K(OFFSET_FETCH_RESP_GROUPS)].a.n, 2);
    bg_kafka_struct_t *mg0 = ka_el(m, K(OFFSET_FETCH_RESP_GROUPS), 0);
    assert_int_equal(mg0->f[K(OFFSET_FETCH_RESP_GROUPS_TOPICS)].a.n, 2);
    assert_true(ka_eq(ka_el(mg0, K(OFFSET_FETCH_RESP_GROUPS_TOPICS), 1)
                          ->f[K(OFFSET_FETCH_RESP_GROUPS_TOPICS_NAME)]
                          .s,
                      "secret"));
    bg_kafka_struct_t *mg1 = ka_el(m, K(OFFSET_FETCH_RESP_GROUPS), 1);
    assert_true(ka_eq(mg1->f[K(OFFSET_FETCH_RESP_GROUPS_GROUP_ID)].s, "bad"));
    assert_int_equal(mg1->f[K(OFFSET_FETCH_RESP_GROUPS_ERROR_CODE)].i, 30);
}

/* A batched OffsetFetch of up to 1024 distinct groups is decided; one more
 * closes the connection (the bound of the duplicate-group check). */
static void test_offset_fetch_batched_group_bound(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_OFFSET_FETCH, 9);
    for (int n = 1024; n <= 1025; n++) {
        bg_kafka_struct_t *req = ka_new(f, 9, 0);
        bg_kafka_struct_t **g = bg_kafka_array_new(&f->a, req, K(OFFSET_FETCH_REQ_GROUPS), n);
        assert_non_null(g);
        for (int i = 0; i < n; i++) {
            char *id = bg_kafka_arena_alloc(&f->a, 16);
            assert_non_null(id);
            snprintf(id, 16, "g-%d", i);
            g[i]->f[K(OFFSET_FETCH_REQ_GROUPS_GROUP_ID)].s = ka_s(id);
            assert_non_null(bg_kafka_array_new(&f->a, g[i], K(OFFSET_FETCH_REQ_GROUPS_TOPICS), 0));
        }
        bg_kafka_verdict_t v;
        int rc = bg_kafka_authz_request(&f->ctx, &h, ka_rt(f, 9, 0, 9, req), &f->a, &v);
        if (n == 1024) {
            assert_int_equal(rc, 0);
            assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
            assert_int_equal(v.request->f[K(OFFSET_FETCH_REQ_GROUPS)].a.n, 1024);
        } else {
            assert_int_equal(rc, -1);
            assert_int_equal(v.action, BG_KAFKA_ACT_CLOSE);
            assert_string_equal(v.close_reason, "too many groups in one OffsetFetch");
        }
    }
}

static void test_create_delete_topics(void **st)
{
    ka_fix_t *f = *st;
    for (int16_t ver = 2; ver <= 7; ver += 5) {
        bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_CREATE_TOPICS, ver);
        bg_kafka_struct_t *req = ka_new(f, 19, 0);
        ka_topics(f, req, K(CREATE_TOPICS_REQ_TOPICS), K(CREATE_TOPICS_REQ_TOPICS_NAME), two, 2, -1,
                  -1, 0);
        bg_kafka_verdict_t v;
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
        assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
        bg_kafka_struct_t *up = ka_new(f, 19, 1), *out;
        const char *const one[] = {"orders"};
        ka_topics(f, up, K(CREATE_TOPICS_RESP_TOPICS), K(CREATE_TOPICS_RESP_TOPICS_NAME), one, 1,
                  -1, -1, 0);
        size_t nn = 0;
        assert_int_equal(
            bg_kafka_authz_response(&f->ctx, &h, &v, up, &f->a, &out, NULL, &nn, NULL, NULL), 0);
        bg_kafka_struct_t *m = ka_rt(f, 19, 1, ver, out);
        assert_int_equal(m->f[K(CREATE_TOPICS_RESP_TOPICS)].a.n, 2);
        bg_kafka_struct_t *t = ka_el(m, K(CREATE_TOPICS_RESP_TOPICS), 1);
        assert_int_equal(t->f[K(CREATE_TOPICS_RESP_TOPICS_ERROR_CODE)].i, 29);
    }
    /* DeleteTopics v1 (names) and v6 (topic ids). */
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_DELETE_TOPICS, 1);
    bg_kafka_struct_t *req = ka_new(f, 20, 0);
    bg_kafka_val_t *nv = bg_kafka_array_vals(&f->a, req, K(DELETE_TOPICS_REQ_TOPIC_NAMES), 2);
    nv[0].s = ka_s("orders");
    nv[1].s = ka_s("public");
    req = ka_rt(f, 20, 0, 1, req);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    assert_int_equal(v.request->f[K(DELETE_TOPICS_REQ_TOPIC_NAMES)].a.n, 1);
    bg_kafka_struct_t *out, *up = ka_new(f, 20, 1);
    size_t nn = 0;
    assert_int_equal(
        bg_kafka_authz_response(&f->ctx, &h, &v, up, &f->a, &out, NULL, &nn, NULL, NULL), 0);
    bg_kafka_struct_t *m = ka_rt(f, 20, 1, 1, out);
    bg_kafka_struct_t *e = ka_el(m, K(DELETE_TOPICS_RESP_RESPONSES), 0);
    assert_true(ka_eq(e->f[K(DELETE_TOPICS_RESP_RESPONSES_NAME)].s, "public"));
    assert_int_equal(e->f[K(DELETE_TOPICS_RESP_RESPONSES_ERROR_CODE)].i, 29);

    h = ka_hdr(BG_KAFKA_API_DELETE_TOPICS, 6);
    req = ka_new(f, 20, 0);
    bg_kafka_struct_t **t = bg_kafka_array_new(&f->a, req, K(DELETE_TOPICS_REQ_TOPICS), 1);
    t[0]->f[K(DELETE_TOPICS_REQ_TOPICS_NAME)].s = bg_kafka_null_slice();
    t[0]->f[K(DELETE_TOPICS_REQ_TOPICS_TOPIC_ID)].uuid[0] = 2; /* secret */
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, ka_rt(f, 20, 0, 6, req), &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    m = ka_rt(f, 20, 1, 6, v.response);
    e = ka_el(m, K(DELETE_TOPICS_RESP_RESPONSES), 0);
    assert_int_equal(e->f[K(DELETE_TOPICS_RESP_RESPONSES_ERROR_CODE)].i, 29);
    assert_int_equal(e->f[K(DELETE_TOPICS_RESP_RESPONSES_TOPIC_ID)].uuid[0], 2);
    t[0]->f[K(DELETE_TOPICS_REQ_TOPICS_TOPIC_ID)].uuid[0] = 1; /* orders */
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    /* By id, delete without describe: refused without the name, as Kafka
     * does (the answer would say which topic the id is). By name: deleted. */
    t[0]->f[K(DELETE_TOPICS_REQ_TOPICS_TOPIC_ID)].uuid[0] = 3; /* dropbox */
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    e = ka_el(ka_rt(f, 20, 1, 6, v.response), K(DELETE_TOPICS_RESP_RESPONSES), 0);
    assert_int_equal(e->f[K(DELETE_TOPICS_RESP_RESPONSES_ERROR_CODE)].i, 29);
    assert_true(e->f[K(DELETE_TOPICS_RESP_RESPONSES_NAME)].s.len < 0);
    for (size_t i = 0; i < v.ndecisions; i++) /* audited as refused, never as a delete allowed */
        assert_int_equal(v.decisions[i].decision.effect, BG_EFFECT_DENY);
    /* By id, describe allowed but not delete: refused with the name, as
     * Kafka does (the principal may know it). */
    t[0]->f[K(DELETE_TOPICS_REQ_TOPICS_TOPIC_ID)].uuid[0] = 4; /* public */
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    e = ka_el(ka_rt(f, 20, 1, 6, v.response), K(DELETE_TOPICS_RESP_RESPONSES), 0);
    assert_int_equal(e->f[K(DELETE_TOPICS_RESP_RESPONSES_ERROR_CODE)].i, 29);
    assert_true(ka_eq(e->f[K(DELETE_TOPICS_RESP_RESPONSES_NAME)].s, "public"));
    memset(t[0]->f[K(DELETE_TOPICS_REQ_TOPICS_TOPIC_ID)].uuid, 0, 16);
    t[0]->f[K(DELETE_TOPICS_REQ_TOPICS_NAME)].s = bg_kafka_cstr("dropbox");
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
}

static void test_describe_configs(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_DESCRIBE_CONFIGS, 4);
    bg_kafka_struct_t *req = ka_new(f, 32, 0);
    const char *const names[] = {"public", "1", "secret"};
    bg_kafka_struct_t **r = ka_topics(f, req, K(DESCRIBE_CONFIGS_REQ_RESOURCES),
                                      K(DESCRIBE_CONFIGS_REQ_RESOURCES_RESOURCE_NAME), names, 3,
                                      -1, -1, 0);
    r[0]->f[K(DESCRIBE_CONFIGS_REQ_RESOURCES_RESOURCE_TYPE)].i = 2;
    r[1]->f[K(DESCRIBE_CONFIGS_REQ_RESOURCES_RESOURCE_TYPE)].i = 4; /* broker: cluster describe */
    r[2]->f[K(DESCRIBE_CONFIGS_REQ_RESOURCES_RESOURCE_TYPE)].i = 2;
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, ka_rt(f, 32, 0, 4, req), &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    assert_int_equal(v.request->f[K(DESCRIBE_CONFIGS_REQ_RESOURCES)].a.n, 2);
    bg_kafka_struct_t *out, *up = ka_new(f, 32, 1);
    size_t nn = 0;
    assert_int_equal(
        bg_kafka_authz_response(&f->ctx, &h, &v, up, &f->a, &out, NULL, &nn, NULL, NULL), 0);
    bg_kafka_struct_t *m = ka_rt(f, 32, 1, 4, out);
    bg_kafka_struct_t *e = ka_el(m, K(DESCRIBE_CONFIGS_RESP_RESULTS), 0);
    assert_true(ka_eq(e->f[K(DESCRIBE_CONFIGS_RESP_RESULTS_RESOURCE_NAME)].s, "secret"));
    assert_int_equal(e->f[K(DESCRIBE_CONFIGS_RESP_RESULTS_RESOURCE_TYPE)].i, 2);
    assert_int_equal(e->f[K(DESCRIBE_CONFIGS_RESP_RESULTS_ERROR_CODE)].i, 29);
    /* A topic and a group denied alike (describe, no rule) are two audit
     * decisions, each with its own error: 29 for the topic, 30 for the group. */
    const char *const tg[] = {"secret", "gx"};
    req = ka_new(f, 32, 0);
    r = ka_topics(f, req, K(DESCRIBE_CONFIGS_REQ_RESOURCES),
                  K(DESCRIBE_CONFIGS_REQ_RESOURCES_RESOURCE_NAME), tg, 2, -1, -1, 0);
    r[0]->f[K(DESCRIBE_CONFIGS_REQ_RESOURCES_RESOURCE_TYPE)].i = 2;  /* topic */
    r[1]->f[K(DESCRIBE_CONFIGS_REQ_RESOURCES_RESOURCE_TYPE)].i = 32; /* group */
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, ka_rt(f, 32, 0, 4, req), &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    assert_int_equal(v.ndecisions, 2);
    const bg_kafka_decision_t *dt = ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "secret");
    const bg_kafka_decision_t *dg = ka_find_decision(&v, BG_RES_KAFKA_GROUP, "gx");
    assert_non_null(dt);
    assert_non_null(dg);
    assert_int_equal(dt->error_code, 29);
    assert_int_equal(dg->error_code, 30);
    /* AlterConfigs on a broker: cluster alter is denied -> 31. */
    h = ka_hdr(BG_KAFKA_API_ALTER_CONFIGS, 0);
    req = ka_new(f, 33, 0);
    r = ka_topics(f, req, K(ALTER_CONFIGS_REQ_RESOURCES), K(ALTER_CONFIGS_REQ_RESOURCES_RESOURCE_NAME),
                  names + 1, 1, -1, -1, 0);
    r[0]->f[K(ALTER_CONFIGS_REQ_RESOURCES_RESOURCE_TYPE)].i = 4;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    m = ka_rt(f, 33, 1, 0, v.response);
    assert_int_equal(ka_el(m, K(ALTER_CONFIGS_RESP_RESPONSES), 0)->f[K(ALTER_CONFIGS_RESP_RESPONSES_ERROR_CODE)].i, 31);
}

static void test_groups(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_verdict_t v;
    /* JoinGroup min/max: top-level error. */
    for (int16_t ver = 0; ver <= 9; ver += 9) {
        bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_JOIN_GROUP, ver);
        bg_kafka_struct_t *req = ka_new(f, 11, 0);
        req->f[K(JOIN_GROUP_REQ_GROUP_ID)].s = ka_s("g-x");
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
        assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
        req->f[K(JOIN_GROUP_REQ_GROUP_ID)].s = ka_s("h");
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
        assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
        assert_int_equal(ka_rt(f, 11, 1, ver, v.response)->f[K(JOIN_GROUP_RESP_ERROR_CODE)].i, 30);
    }
    /* DescribeGroups split. */
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_DESCRIBE_GROUPS, 5);
    bg_kafka_struct_t *req = ka_new(f, 15, 0);
    bg_kafka_val_t *g = bg_kafka_array_vals(&f->a, req, K(DESCRIBE_GROUPS_REQ_GROUPS), 2);
    g[0].s = ka_s("nope");
    g[1].s = ka_s("g1");
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    assert_true(ka_eq(v.request->f[K(DESCRIBE_GROUPS_REQ_GROUPS)].a.v[0].s, "g1"));
    bg_kafka_struct_t *out, *up = ka_new(f, 15, 1);
    size_t nn = 0;
    assert_int_equal(
        bg_kafka_authz_response(&f->ctx, &h, &v, up, &f->a, &out, NULL, &nn, NULL, NULL), 0);
    bg_kafka_struct_t *e = ka_el(ka_rt(f, 15, 1, 5, out), K(DESCRIBE_GROUPS_RESP_GROUPS), 0);
    assert_int_equal(e->f[K(DESCRIBE_GROUPS_RESP_GROUPS_ERROR_CODE)].i, 30);
    /* DeleteGroups all denied. */
    for (int16_t ver = 2; ver <= 3; ver++) { /* v3: per-group ErrorMessage */
        h = ka_hdr(BG_KAFKA_API_DELETE_GROUPS, ver);
        req = ka_new(f, 42, 0);
        g = bg_kafka_array_vals(&f->a, req, K(DELETE_GROUPS_REQ_GROUPS_NAMES), 1);
        g[0].s = ka_s("nope");
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
        assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
        e = ka_el(ka_rt(f, 42, 1, ver, v.response), K(DELETE_GROUPS_RESP_RESULTS), 0);
        assert_int_equal(e->f[K(DELETE_GROUPS_RESP_RESULTS_ERROR_CODE)].i, 30);
    }
}

/* busgate's verdict on request key v(ver) whose string field idx is name
 * (and field idx2, when >= 0, name2): 0 when it goes to the broker, else the
 * error code (field err_idx) of busgate's own answer. */
static int16_t refusal_code(ka_fix_t *f, int16_t key, int16_t ver, int idx, const char *name,
                            int idx2, const char *name2, int err_idx)
{
    bg_kafka_req_hdr_t h = ka_hdr(key, ver);
    bg_kafka_struct_t *req = ka_new(f, key, 0);
    req->f[idx].s = ka_s(name);
    if (idx2 >= 0)
        req->f[idx2].s = ka_s(name2);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, ka_rt(f, key, 0, ver, req), &f->a, &v), 0);
    if (v.action == BG_KAFKA_ACT_FORWARD)
        return 0;
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    return (int16_t)ka_rt(f, key, 1, ver, v.response)->f[err_idx].i;
}

/* Kafka's codes (KafkaApis) for the group and transaction requests busgate
 * refuses whole, at every version: SyncGroup, Heartbeat and LeaveGroup
 * without read on the group, OffsetDelete without delete on it:
 * GROUP_AUTHORIZATION_FAILED; EndTxn without write on the transactional
 * id: TRANSACTIONAL_ID_AUTHORIZATION_FAILED; AddOffsetsToTxn checks the id
 * first (53), then read on the group (30). Fixture: groups g1 / g-* read,
 * describe, delete; transactional id tx1 write. */
static void test_group_and_txn_refusal_codes(void **st)
{
    ka_fix_t *f = *st;
    static const struct {
        int16_t key, lo, hi;
        int group, err;
    } groups[] = {
        {BG_KAFKA_API_SYNC_GROUP, 0, 5, K(SYNC_GROUP_REQ_GROUP_ID), K(SYNC_GROUP_RESP_ERROR_CODE)},
        {BG_KAFKA_API_HEARTBEAT, 0, 4, K(HEARTBEAT_REQ_GROUP_ID), K(HEARTBEAT_RESP_ERROR_CODE)},
        {BG_KAFKA_API_LEAVE_GROUP, 0, 5, K(LEAVE_GROUP_REQ_GROUP_ID),
         K(LEAVE_GROUP_RESP_ERROR_CODE)},
        {BG_KAFKA_API_OFFSET_DELETE, 0, 0, K(OFFSET_DELETE_REQ_GROUP_ID),
         K(OFFSET_DELETE_RESP_ERROR_CODE)},
    };
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
        for (int16_t ver = groups[i].lo; ver <= groups[i].hi; ver++) {
            assert_int_equal(
                refusal_code(f, groups[i].key, ver, groups[i].group, "h", -1, NULL, groups[i].err),
                BG_KAFKA_E_GROUP_AUTHORIZATION_FAILED);
            assert_int_equal(refusal_code(f, groups[i].key, ver, groups[i].group, "g-1", -1, NULL,
                                          groups[i].err),
                             0);
        }
    const int end_id = K(END_TXN_REQ_TRANSACTIONAL_ID), end_err = K(END_TXN_RESP_ERROR_CODE);
    for (int16_t ver = 0; ver <= 5; ver++) {
        assert_int_equal(
            refusal_code(f, BG_KAFKA_API_END_TXN, ver, end_id, "tx2", -1, NULL, end_err),
            BG_KAFKA_E_TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
        assert_int_equal(
            refusal_code(f, BG_KAFKA_API_END_TXN, ver, end_id, "tx1", -1, NULL, end_err), 0);
    }
    const int add_id = K(ADD_OFFSETS_TO_TXN_REQ_TRANSACTIONAL_ID),
              add_group = K(ADD_OFFSETS_TO_TXN_REQ_GROUP_ID),
              add_err = K(ADD_OFFSETS_TO_TXN_RESP_ERROR_CODE);
    static const struct {
        const char *id, *group;
        int16_t want;
    } adds[] = {
        {"tx2", "g1", BG_KAFKA_E_TRANSACTIONAL_ID_AUTHORIZATION_FAILED},
        {"tx2", "h", BG_KAFKA_E_TRANSACTIONAL_ID_AUTHORIZATION_FAILED},
        {"tx1", "h", BG_KAFKA_E_GROUP_AUTHORIZATION_FAILED},
        {"tx1", "g1", 0},
    };
    for (int16_t ver = 0; ver <= 4; ver++)
        for (size_t i = 0; i < sizeof adds / sizeof adds[0]; i++)
            assert_int_equal(refusal_code(f, BG_KAFKA_API_ADD_OFFSETS_TO_TXN, ver, add_id,
                                          adds[i].id, add_group, adds[i].group, add_err),
                             adds[i].want);
    /* OffsetDelete asks delete on the group: read and describe are not enough. */
    ka_set_policy(f, 0); /* g1 / g-*: read and describe only */
    assert_int_equal(refusal_code(f, BG_KAFKA_API_OFFSET_DELETE, 0, K(OFFSET_DELETE_REQ_GROUP_ID),
                                  "g-1", -1, NULL, K(OFFSET_DELETE_RESP_ERROR_CODE)),
                     BG_KAFKA_E_GROUP_AUTHORIZATION_FAILED);
}

/* DescribeTransactions: tx1 may be described; its topics list keeps only
 * the topics the principal may describe, as Kafka's does. */
static void test_describe_transactions_hides_topics(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_DESCRIBE_TRANSACTIONS, 0);
    bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_DESCRIBE_TRANSACTIONS, 0);
    bg_kafka_array_vals(&f->a, req, K(DESCRIBE_TRANSACTIONS_REQ_TRANSACTIONAL_IDS), 1)[0].s =
        ka_s("tx1");
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    assert_int_equal(v.needs_response, 1);
    bg_kafka_struct_t *up = ka_new(f, BG_KAFKA_API_DESCRIBE_TRANSACTIONS, 1), *out;
    bg_kafka_struct_t **st_ =
        bg_kafka_array_new(&f->a, up, K(DESCRIBE_TRANSACTIONS_RESP_TRANSACTION_STATES), 1);
    st_[0]->f[K(DESCRIBE_TRANSACTIONS_RESP_TRANSACTION_STATES_TRANSACTIONAL_ID)].s = ka_s("tx1");
    st_[0]->f[K(DESCRIBE_TRANSACTIONS_RESP_TRANSACTION_STATES_TRANSACTION_STATE)].s =
        ka_s("Ongoing");
    const char *const names[] = {"secret", "orders", "public"};
    ka_topics(f, st_[0], K(DESCRIBE_TRANSACTIONS_RESP_TRANSACTION_STATES_TOPICS),
              K(DESCRIBE_TRANSACTIONS_RESP_TRANSACTION_STATES_TOPICS_TOPIC), names, 3, -1, -1, 0);
    size_t nn = 0;
    assert_int_equal(
        bg_kafka_authz_response(&f->ctx, &h, &v, up, &f->a, &out, NULL, &nn, NULL, NULL), 0);
    bg_kafka_struct_t *m = ka_rt(f, BG_KAFKA_API_DESCRIBE_TRANSACTIONS, 1, 0, out);
    bg_kafka_struct_t *s = ka_el(m, K(DESCRIBE_TRANSACTIONS_RESP_TRANSACTION_STATES), 0);
    int ti = K(DESCRIBE_TRANSACTIONS_RESP_TRANSACTION_STATES_TOPICS);
    assert_int_equal(s->f[ti].a.n, 2);
    assert_true(
        ka_eq(ka_el(s, ti, 0)->f[K(DESCRIBE_TRANSACTIONS_RESP_TRANSACTION_STATES_TOPICS_TOPIC)].s,
              "orders"));
    assert_true(
        ka_eq(ka_el(s, ti, 1)->f[K(DESCRIBE_TRANSACTIONS_RESP_TRANSACTION_STATES_TOPICS_TOPIC)].s,
              "public"));
}

static void test_unsupported(void **st)
{
    ka_fix_t *f = *st;
    int16_t lo, hi;
    /* 83-87: share-group state (broker to share coordinator); 90-92: share
     * group offset admin, not supported yet. */
    static const int16_t refused[] = {4,  5,  6,  7,  38, 50, 51, 52, 58, 62, 63, 67,
                                      71, 72, 80, 83, 84, 85, 86, 87, 90, 91, 92};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        assert_int_equal(bg_kafka_authz_supported(refused[i], &lo, &hi), 0);
    assert_int_equal(bg_kafka_authz_supported(18, &lo, &hi), 1);
    assert_int_equal(lo, 0);
    assert_int_equal(hi, 5);
    /* SaslHandshake: v0 advertised for librdkafka; the session refuses a v0 handshake. */
    assert_int_equal(bg_kafka_authz_supported(17, &lo, &hi), 1);
    assert_int_equal(lo, 0);
    assert_int_equal(hi, 1);
    assert_int_equal(bg_kafka_authz_supported(36, &lo, &hi), 1);
    assert_int_equal(hi, 2);
    assert_int_equal(bg_kafka_authz_supported(0, &lo, &hi), 1);
    assert_int_equal(lo, 3);
    bg_kafka_req_hdr_t h = ka_hdr(50, 0);
    bg_kafka_verdict_t v;
    bg_kafka_struct_t *req = ka_new(f, 50, 0);
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), -1);
    assert_int_equal(v.action, BG_KAFKA_ACT_CLOSE);
    /* Session APIs are never authorized here. */
    h = ka_hdr(18, 3);
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, ka_new(f, 18, 0), &f->a, &v), -1);
    /* Out of range version. */
    h = ka_hdr(0, 2);
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, ka_new(f, 0, 0), &f->a, &v), -1);
}

static void test_error_response(void **st)
{
    ka_fix_t *f = *st;
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_PRODUCE, 9);
    bg_kafka_struct_t *r = bg_kafka_authz_error_response(&h, produce_req(f, two, 2, 1), 35, &f->a);
    assert_non_null(r);
    r = ka_rt(f, 0, 1, 9, r);
    bg_kafka_struct_t *t = ka_el(r, K(PRODUCE_RESP_RESPONSES), 1);
    assert_int_equal(ka_el(t, K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES), 1)
                         ->f[K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES_ERROR_CODE)]
                         .i,
                     35);
    h = ka_hdr(BG_KAFKA_API_FETCH, 12);
    r = bg_kafka_authz_error_response(&h, fetch_req(f, two, 2), 35, &f->a);
    assert_int_equal(ka_rt(f, 1, 1, 12, r)->f[K(FETCH_RESP_ERROR_CODE)].i, 35);
    h = ka_hdr(BG_KAFKA_API_HEARTBEAT, 4);
    r = bg_kafka_authz_error_response(&h, ka_new(f, 12, 0), 35, &f->a);
    assert_int_equal(ka_rt(f, 12, 1, 4, r)->f[K(HEARTBEAT_RESP_ERROR_CODE)].i, 35);
    assert_string_equal(bg_kafka_error_name(29), "TOPIC_AUTHORIZATION_FAILED");
    assert_string_equal(bg_kafka_error_name(100), "UNKNOWN_TOPIC_ID");
    assert_string_equal(bg_kafka_error_name(-77), "UNKNOWN");
}

/* Every supported API at its min and max version: a default request is
 * classified without crashing and whatever comes out encodes. With the
 * default-deny cluster/groups, most end up answered locally. Closed: an
 * acks=0 Produce (0) and DescribeTopicPartitions without names (75). */
static void test_all_apis_min_max(void **st)
{
    ka_fix_t *f = *st;
    int16_t olo, ohi;
    assert_true(bg_kafka_authz_supported(BG_KAFKA_API_OFFSET_FETCH, &olo, &ohi));
    assert_int_equal(ohi, 9); /* v10's all-topics answer is by id only: not offered */
    for (int16_t key = 0; key < 100; key++) {
        int16_t lo, hi;
        if (!bg_kafka_authz_supported(key, &lo, &hi) || key == 17 || key == 18 || key == 36)
            continue;
        for (int16_t ver = lo; ver <= hi; ver = (int16_t)(ver == hi ? hi + 1 : hi)) {
            bg_kafka_req_hdr_t h = ka_hdr(key, ver);
            bg_kafka_struct_t *req = ka_rt(f, key, 0, ver, ka_new(f, key, 0));
            bg_kafka_verdict_t v;
            int rc = bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v);
            assert_int_equal(rc, 0);
            assert_true(v.action != BG_KAFKA_ACT_CLOSE || key == 0 || key == 75);
            if (v.action == BG_KAFKA_ACT_RESPOND)
                ka_rt(f, key, 1, ver, v.response);
            if (v.action == BG_KAFKA_ACT_FORWARD_REWRITTEN)
                ka_rt(f, key, 0, ver, v.request);
            bg_kafka_struct_t *e = bg_kafka_authz_error_response(&h, req, 35, &f->a);
            if (e)
                ka_rt(f, key, 1, ver, e);
            bg_kafka_arena_reset(&f->a);
        }
    }
}

/* A request that runs out of arena part-way (arena limits from 4 KiB up)
 * closes the connection with "arena limit", and what it decided before
 * that never took effect: no decision is left to be audited (the close is
 * the one refusal). */
static void test_arena_limit_leaves_no_decisions(void **st)
{
    ka_fix_t *f = *st;
    enum { N = 400 };
    static char names[N][32];
    const char *np[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], i % 2 ? "secret-%d" : "orders-%d", i);
        np[i] = names[i];
    }
    bg_kafka_struct_t *r = ka_new(f, BG_KAFKA_API_METADATA, 0);
    ka_topics(f, r, K(METADATA_REQ_TOPICS), K(METADATA_REQ_TOPICS_NAME), np, N, -1, 0, 0);
    r = ka_rt(f, BG_KAFKA_API_METADATA, 0, 12, r);
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_METADATA, 12);
    int limited = 0, decided = 0;
    for (size_t lim = 4096; lim < (1u << 22) && !decided; lim += 512) {
        bg_kafka_arena_t b;
        bg_kafka_arena_init(&b, lim);
        bg_kafka_verdict_t v;
        if (bg_kafka_authz_request(&f->ctx, &h, r, &b, &v) == 0) {
            decided = 1; /* large enough from here on */
        } else {
            assert_int_equal(v.action, BG_KAFKA_ACT_CLOSE);
            assert_string_equal(v.close_reason, "arena limit");
            assert_int_equal(v.ndecisions, 0);
            limited++;
        }
        bg_kafka_arena_free(&b);
    }
    assert_true(limited > 0 && decided);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_arena_limit_leaves_no_decisions, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_produce_allowed, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_produce_split_merge, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_produce_records_counted, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_produce_all_denied_respond, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_produce_acks0, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_refuse_unaudited, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_produce_txn_denied, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_produce_transactional_batches_need_txn_id, ka_up,
                                        ka_down),
        cmocka_unit_test_setup_teardown(test_audit_topic_reserved, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_listing_recorded_once, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_hold_is_deny, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_fetch_masked_topic_refused, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_fetch_split_merge_min, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_fetch_topic_ids, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_fetch_session_rewrite, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_offset_for_leader_epoch_replica, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_list_offsets_split, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_offset_commit, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_offset_fetch_single, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_dtp_cursor_on_denied_topic, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_offset_fetch_batched, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_offset_fetch_batched_group_bound, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_create_delete_topics, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_describe_configs, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_groups, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_group_and_txn_refusal_codes, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_describe_transactions_hides_topics, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_unsupported, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_error_response, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_all_apis_min_max, ka_up, ka_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
