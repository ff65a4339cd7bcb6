/* Kafka authorization: the entries busgate builds itself look as Kafka's
 * own: topics named twice in CreateTopics and DeleteTopics, the DeleteTopics
 * v6 entries Kafka refuses as they are (neither or both a name and an id, a
 * name next to its topic's id given twice), FindCoordinator
 * for the share coordinator, the error messages of denied entries. Requests and responses are
 * encoded and decoded at their version, so what is asserted is what goes on the wire. Fixture
 * (test_kafka_authz_util.h): orders* every verb, dropbox delete and create, secret nothing. */
#include "test_kafka_authz_util.h"

#define INVALID_REQUEST 42

static int uuid_zero(const uint8_t id[16])
{
    static const uint8_t z[16];
    return memcmp(id, z, 16) == 0;
}

/* The response the client gets for req: busgate's own answer, or the
 * upstream's (one error-free entry per forwarded name: entry_name field
 * of array rs_arr) merged with the denied entries. */
static bg_kafka_struct_t *answer(ka_fix_t *f, int16_t key, int16_t ver, bg_kafka_struct_t *req,
                                 int rs_arr, int entry_name, const char *const *fwd, int nfwd,
                                 bg_kafka_verdict_t *v)
{
    bg_kafka_req_hdr_t h = ka_hdr(key, ver);
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, v), 0);
    if (v->action == BG_KAFKA_ACT_RESPOND)
        return ka_rt(f, key, 1, ver, v->response);
    assert_int_equal(v->action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    bg_kafka_struct_t *up = ka_new(f, key, 1), *out;
    ka_topics(f, up, rs_arr, entry_name, fwd, nfwd, -1, -1, 0);
    size_t nn = 0;
    assert_int_equal(
        bg_kafka_authz_response(&f->ctx, &h, v, up, &f->a, &out, NULL, &nn, NULL, NULL), 0);
    return ka_rt(f, key, 1, ver, out);
}

/* The entry of resp's array arr whose field name_idx is name; exactly one. */
static const bg_kafka_struct_t *only_entry(const bg_kafka_struct_t *resp, int arr, int name_idx,
                                           const char *name)
{
    const bg_kafka_struct_t *found = NULL;
    for (int32_t i = 0; i < resp->f[arr].a.n; i++) {
        const bg_kafka_struct_t *e = resp->f[arr].a.s[i];
        if (!ka_eq(e->f[name_idx].s, name))
            continue;
        if (found)
            fail_msg("'%s' answered twice", name);
        found = e;
    }
    if (!found)
        fail_msg("'%s' not answered", name);
    return found;
}

static void assert_msg(bg_slice_t s, const char *want)
{
    if (!want) {
        assert_true(s.len < 0);
        return;
    }
    if (!ka_eq(s, want))
        fail_msg("message '%.*s', want '%s'", (int)(s.len > 0 ? s.len : 0),
                 s.len > 0 ? (const char *)s.p : "", want);
}

/* The one audit record of a duplicated name: busgate's, 42, never a policy
 * decision. */
static void assert_dup_record(const bg_kafka_verdict_t *v, const char *name, const char *reason)
{
    const bg_kafka_decision_t *d = ka_find_decision(v, BG_RES_KAFKA_TOPIC, name);
    assert_non_null(d);
    assert_int_equal(d->error_code, INVALID_REQUEST);
    assert_string_equal(d->reason, reason);
    int copies = 0;
    for (size_t i = 0; i < v->ndecisions; i++)
        for (size_t j = 0; j < v->decisions[i].nresources; j++)
            copies += v->decisions[i].resources[j].name_len == strlen(name) &&
                      memcmp(v->decisions[i].resources[j].name, name, strlen(name)) == 0;
    assert_int_equal(copies, 1);
}

/* CreateTopics, as Kafka's ControllerApis.createTopics: a name given more
 * than once gets one INVALID_REQUEST "Duplicate topic name." entry, whether
 * the principal may create it (orders.a) or not (secret), and none of its
 * copies is decided or forwarded; the rest is decided as before. */
static void test_create_topics_duplicates(void **st)
{
    ka_fix_t *f = *st;
    const char *names[] = {"orders.a", "secret", "orders.a", "secret", "orders.b", "secret"};
    const char *fwd[] = {"orders.b"};
    for (int16_t ver = 2; ver <= 7; ver++) {
        bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_CREATE_TOPICS, 0);
        ka_topics(f, req, K(CREATE_TOPICS_REQ_TOPICS), K(CREATE_TOPICS_REQ_TOPICS_NAME), names, 6,
                  -1, -1, 0);
        req = ka_rt(f, BG_KAFKA_API_CREATE_TOPICS, 0, ver, req);
        bg_kafka_verdict_t v;
        bg_kafka_struct_t *r =
            answer(f, BG_KAFKA_API_CREATE_TOPICS, ver, req, K(CREATE_TOPICS_RESP_TOPICS),
                   K(CREATE_TOPICS_RESP_TOPICS_NAME), fwd, 1, &v);
        /* Only orders.b went upstream. */
        assert_int_equal(v.request->f[K(CREATE_TOPICS_REQ_TOPICS)].a.n, 1);
        assert_true(ka_eq(
            ka_el(v.request, K(CREATE_TOPICS_REQ_TOPICS), 0)->f[K(CREATE_TOPICS_REQ_TOPICS_NAME)].s,
            "orders.b"));
        assert_int_equal(r->f[K(CREATE_TOPICS_RESP_TOPICS)].a.n, 3);
        for (int i = 0; i < 2; i++) { /* allowed and denied answered alike */
            const bg_kafka_struct_t *e = only_entry(r, K(CREATE_TOPICS_RESP_TOPICS),
                                                    K(CREATE_TOPICS_RESP_TOPICS_NAME), names[i]);
            assert_int_equal(e->f[K(CREATE_TOPICS_RESP_TOPICS_ERROR_CODE)].i, INVALID_REQUEST);
            assert_msg(e->f[K(CREATE_TOPICS_RESP_TOPICS_ERROR_MESSAGE)].s, "Duplicate topic name.");
            if (ver >= 5)
                assert_int_equal(e->f[K(CREATE_TOPICS_RESP_TOPICS_NUM_PARTITIONS)].i, -1);
            assert_dup_record(&v, names[i], "duplicate topic name");
        }
        assert_non_null(ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "orders.b"));
        assert_int_equal(ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "orders.b")->error_code, 0);

        /* Nothing but duplicates: answered here, nothing forwarded. */
        req = ka_new(f, BG_KAFKA_API_CREATE_TOPICS, 0);
        ka_topics(f, req, K(CREATE_TOPICS_REQ_TOPICS), K(CREATE_TOPICS_REQ_TOPICS_NAME), names, 4,
                  -1, -1, 0);
        req = ka_rt(f, BG_KAFKA_API_CREATE_TOPICS, 0, ver, req);
        r = answer(f, BG_KAFKA_API_CREATE_TOPICS, ver, req, 0, 0, NULL, 0, &v);
        assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
        assert_int_equal(r->f[K(CREATE_TOPICS_RESP_TOPICS)].a.n, 2);
        bg_kafka_arena_reset(&f->a);
    }
}

/* DeleteTopics v1-5 (names): the same, with the message from v5 (the
 * first version with the field). */
static void test_delete_topic_names_duplicates(void **st)
{
    ka_fix_t *f = *st;
    const char *names[] = {"orders.a", "orders.a", "secret", "dropbox", "secret"};
    const char *fwd[] = {"dropbox"};
    for (int16_t ver = 1; ver <= 5; ver++) {
        bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_DELETE_TOPICS, 0);
        bg_kafka_val_t *nv = bg_kafka_array_vals(&f->a, req, K(DELETE_TOPICS_REQ_TOPIC_NAMES), 5);
        for (int i = 0; i < 5; i++)
            nv[i].s = ka_s(names[i]);
        req = ka_rt(f, BG_KAFKA_API_DELETE_TOPICS, 0, ver, req);
        bg_kafka_verdict_t v;
        bg_kafka_struct_t *r =
            answer(f, BG_KAFKA_API_DELETE_TOPICS, ver, req, K(DELETE_TOPICS_RESP_RESPONSES),
                   K(DELETE_TOPICS_RESP_RESPONSES_NAME), fwd, 1, &v);
        assert_int_equal(v.request->f[K(DELETE_TOPICS_REQ_TOPIC_NAMES)].a.n, 1);
        assert_true(ka_eq(v.request->f[K(DELETE_TOPICS_REQ_TOPIC_NAMES)].a.v[0].s, "dropbox"));
        assert_int_equal(r->f[K(DELETE_TOPICS_RESP_RESPONSES)].a.n, 3);
        const char *dups[] = {"orders.a", "secret"};
        for (int i = 0; i < 2; i++) {
            const bg_kafka_struct_t *e = only_entry(r, K(DELETE_TOPICS_RESP_RESPONSES),
                                                    K(DELETE_TOPICS_RESP_RESPONSES_NAME), dups[i]);
            assert_int_equal(e->f[K(DELETE_TOPICS_RESP_RESPONSES_ERROR_CODE)].i, INVALID_REQUEST);
            assert_msg(e->f[K(DELETE_TOPICS_RESP_RESPONSES_ERROR_MESSAGE)].s,
                       ver >= 5 ? "Duplicate topic name." : NULL);
            assert_dup_record(&v, dups[i], "duplicate topic name");
        }
        bg_kafka_arena_reset(&f->a);
    }
}

/* DeleteTopics v6: names given twice, and ids given twice (alone, as
 * Kafka counts them: "Duplicate topic id.", no name, the id). */
static void test_delete_topics_v6_duplicates(void **st)
{
    ka_fix_t *f = *st;
    const char *fwd[] = {"dropbox"};
    bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_DELETE_TOPICS, 0);
    bg_kafka_struct_t **t = bg_kafka_array_new(&f->a, req, K(DELETE_TOPICS_REQ_TOPICS), 5);
    const char *names[] = {"secret", NULL, "dropbox", "secret", NULL};
    for (int i = 0; i < 5; i++) {
        t[i]->f[K(DELETE_TOPICS_REQ_TOPICS_NAME)].s =
            names[i] ? ka_s(names[i]) : bg_kafka_null_slice();
        if (!names[i])
            t[i]->f[K(DELETE_TOPICS_REQ_TOPICS_TOPIC_ID)].uuid[0] = 1; /* orders */
    }
    req = ka_rt(f, BG_KAFKA_API_DELETE_TOPICS, 0, 6, req);
    bg_kafka_verdict_t v;
    bg_kafka_struct_t *r =
        answer(f, BG_KAFKA_API_DELETE_TOPICS, 6, req, K(DELETE_TOPICS_RESP_RESPONSES),
               K(DELETE_TOPICS_RESP_RESPONSES_NAME), fwd, 1, &v);
    assert_int_equal(v.request->f[K(DELETE_TOPICS_REQ_TOPICS)].a.n, 1);
    assert_int_equal(r->f[K(DELETE_TOPICS_RESP_RESPONSES)].a.n, 3);
    const bg_kafka_struct_t *e = only_entry(r, K(DELETE_TOPICS_RESP_RESPONSES),
                                            K(DELETE_TOPICS_RESP_RESPONSES_NAME), "secret");
    assert_int_equal(e->f[K(DELETE_TOPICS_RESP_RESPONSES_ERROR_CODE)].i, INVALID_REQUEST);
    assert_msg(e->f[K(DELETE_TOPICS_RESP_RESPONSES_ERROR_MESSAGE)].s, "Duplicate topic name.");
    assert_true(uuid_zero(e->f[K(DELETE_TOPICS_RESP_RESPONSES_TOPIC_ID)].uuid));
    int by_id = 0;
    for (int32_t i = 0; i < r->f[K(DELETE_TOPICS_RESP_RESPONSES)].a.n; i++) {
        e = ka_el(r, K(DELETE_TOPICS_RESP_RESPONSES), i);
        if (e->f[K(DELETE_TOPICS_RESP_RESPONSES_TOPIC_ID)].uuid[0] != 1)
            continue;
        by_id++;
        assert_true(e->f[K(DELETE_TOPICS_RESP_RESPONSES_NAME)].s.len < 0);
        assert_int_equal(e->f[K(DELETE_TOPICS_RESP_RESPONSES_ERROR_CODE)].i, INVALID_REQUEST);
        assert_msg(e->f[K(DELETE_TOPICS_RESP_RESPONSES_ERROR_MESSAGE)].s, "Duplicate topic id.");
    }
    assert_int_equal(by_id, 1);
    assert_dup_record(&v, "secret", "duplicate topic name");
    assert_dup_record(&v, "orders", "duplicate topic id");
}

/* ---- DeleteTopics v6 entries Kafka's controller refuses on their own ---- */

#define DT(x) K(DELETE_TOPICS_RESP_RESPONSES_##x)
#define DT_ARR K(DELETE_TOPICS_RESP_RESPONSES)

/* A DeleteTopics v6 entry: its name (NULL: null) and the first byte of its
 * id (0: the zero id; otherwise a fixture id, 1 orders, 2 secret). */
typedef struct {
    const char *name;
    uint8_t id;
} dt_entry_t;

static bg_kafka_struct_t *delete_v6(ka_fix_t *f, const dt_entry_t *en, int n)
{
    bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_DELETE_TOPICS, 0);
    bg_kafka_struct_t **t = bg_kafka_array_new(&f->a, req, K(DELETE_TOPICS_REQ_TOPICS), n);
    assert_non_null(t);
    for (int i = 0; i < n; i++) {
        t[i]->f[K(DELETE_TOPICS_REQ_TOPICS_NAME)].s =
            en[i].name ? ka_s(en[i].name) : bg_kafka_null_slice();
        t[i]->f[K(DELETE_TOPICS_REQ_TOPICS_TOPIC_ID)].uuid[0] = en[i].id;
    }
    return ka_rt(f, BG_KAFKA_API_DELETE_TOPICS, 0, 6, req);
}

/* The one entry of a DeleteTopics response with this name (NULL: null) and
 * id byte, asserted to carry err and message msg. */
static void assert_dt_entry(const bg_kafka_struct_t *r, const char *name, uint8_t id, int16_t err,
                            const char *msg)
{
    int found = 0;
    for (int32_t i = 0; i < r->f[DT_ARR].a.n; i++) {
        const bg_kafka_struct_t *e = ka_el(r, DT_ARR, i);
        bg_slice_t nm = e->f[DT(NAME)].s;
        uint8_t want[16] = {id};
        if ((name ? !ka_eq(nm, name) : nm.len >= 0) || memcmp(e->f[DT(TOPIC_ID)].uuid, want, 16))
            continue;
        found++;
        assert_int_equal(e->f[DT(ERROR_CODE)].i, err);
        assert_msg(e->f[DT(ERROR_MESSAGE)].s, msg);
    }
    if (found != 1)
        fail_msg("entry (%s, id %d) answered %d times", name ? name : "null", id, found);
}

/* How many resources named name the audit records of v list with error err
 * and reason (NULL: any reason); err -1: any record. */
static int records(const bg_kafka_verdict_t *v, const char *name, int err, const char *reason)
{
    int n = 0;
    for (size_t i = 0; i < v->ndecisions; i++)
        for (size_t j = 0; j < v->decisions[i].nresources; j++) {
            const bg_policy_resource_t *rs = &v->decisions[i].resources[j];
            const bg_kafka_decision_t *d = &v->decisions[i];
            n += rs->name_len == strlen(name) && memcmp(rs->name, name, rs->name_len) == 0 &&
                 (err < 0 || (d->error_code == err &&
                              (!reason || (d->reason && strcmp(d->reason, reason) == 0))));
        }
    return n;
}

/* v forwards the one entry name (a rewritten DeleteTopics v6). */
static void assert_forwarded(const bg_kafka_verdict_t *v, const char *name)
{
    assert_int_equal(v->action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    assert_int_equal(v->request->f[K(DELETE_TOPICS_REQ_TOPICS)].a.n, 1);
    const bg_kafka_struct_t *t = ka_el(v->request, K(DELETE_TOPICS_REQ_TOPICS), 0);
    assert_true(ka_eq(t->f[K(DELETE_TOPICS_REQ_TOPICS_NAME)].s, name));
}

/* An entry with neither a name nor an id: INVALID_REQUEST "Neither topic
 * name nor id were specified.", name null, the zero id, each such entry on
 * its own (none is another's duplicate), nothing decided, each audited as
 * busgate's refusal. Was UNKNOWN_TOPIC_ID. */
static void test_delete_topics_v6_neither_name_nor_id(void **st)
{
    ka_fix_t *f = *st;
    const dt_entry_t en[] = {{NULL, 0}, {"orders.a", 0}, {NULL, 0}};
    const char *fwd[] = {"orders.a"};
    bg_kafka_verdict_t v;
    bg_kafka_struct_t *r = answer(f, BG_KAFKA_API_DELETE_TOPICS, 6, delete_v6(f, en, 3),
                                  DT_ARR, DT(NAME), fwd, 1, &v);
    assert_forwarded(&v, "orders.a");
    assert_int_equal(r->f[DT_ARR].a.n, 3);
    for (int32_t i = 0; i < 3; i++) {
        const bg_kafka_struct_t *e = ka_el(r, DT_ARR, i);
        if (ka_eq(e->f[DT(NAME)].s, "orders.a"))
            continue;
        assert_true(e->f[DT(NAME)].s.len < 0);
        assert_true(uuid_zero(e->f[DT(TOPIC_ID)].uuid));
        assert_int_equal(e->f[DT(ERROR_CODE)].i, INVALID_REQUEST);
        assert_msg(e->f[DT(ERROR_MESSAGE)].s, "Neither topic name nor id were specified.");
    }
    assert_int_equal(records(&v, "", INVALID_REQUEST, "neither topic name nor id"), 2);
    assert_int_equal(records(&v, "", -1, NULL), 2);
}

/* An entry with both a name and an id: INVALID_REQUEST "You may not specify
 * both topic name and topic id.", name and id as given, never decided nor
 * forwarded, whether the name (orders.a) or the id's topic (orders) may be
 * deleted or neither (secret, its own id). Was decided by the id. */
static void test_delete_topics_v6_name_and_id(void **st)
{
    ka_fix_t *f = *st;
    const dt_entry_t en[] = {{"secret", 2}, {"orders.a", 1}, {"orders.b", 0}};
    const char *fwd[] = {"orders.b"};
    const char *both = "You may not specify both topic name and topic id.";
    bg_kafka_verdict_t v;
    bg_kafka_struct_t *r = answer(f, BG_KAFKA_API_DELETE_TOPICS, 6, delete_v6(f, en, 3),
                                  DT_ARR, DT(NAME), fwd, 1, &v);
    assert_forwarded(&v, "orders.b");
    assert_int_equal(r->f[DT_ARR].a.n, 3);
    assert_dt_entry(r, "secret", 2, INVALID_REQUEST, both);
    assert_dt_entry(r, "orders.a", 1, INVALID_REQUEST, both);
    for (int i = 0; i < 2; i++) { /* busgate's refusals, no policy decision */
        assert_int_equal(records(&v, en[i].name, INVALID_REQUEST, "both topic name and topic id"),
                         1);
        assert_int_equal(records(&v, en[i].name, -1, NULL), 1);
    }
    assert_int_equal(records(&v, "orders", -1, NULL), 0); /* the id's topic */
}

/* A name whose topic's id is given more than once: Kafka's controller
 * answers the id "Duplicate topic id." and, when the name may be deleted,
 * the name "The provided topic name maps to an ID that was already
 * supplied." with that id; neither is deleted. A name that may not be
 * deleted (secret) is refused as any. Was: the name forwarded, the topic
 * deleted. */
static void test_delete_topics_v6_name_of_a_duplicate_id(void **st)
{
    ka_fix_t *f = *st;
    const dt_entry_t en[] = {{"orders", 0}, {NULL, 1}, {"secret", 0}, {NULL, 2},
                             {NULL, 1},     {NULL, 2}, {"orders.b", 0}};
    const char *fwd[] = {"orders.b"};
    bg_kafka_verdict_t v;
    bg_kafka_struct_t *r = answer(f, BG_KAFKA_API_DELETE_TOPICS, 6, delete_v6(f, en, 7),
                                  DT_ARR, DT(NAME), fwd, 1, &v);
    assert_forwarded(&v, "orders.b");
    assert_int_equal(r->f[DT_ARR].a.n, 5);
    assert_dt_entry(r, "orders", 1, INVALID_REQUEST,
                    "The provided topic name maps to an ID that was already supplied.");
    assert_dt_entry(r, NULL, 1, INVALID_REQUEST, "Duplicate topic id.");
    assert_dt_entry(r, NULL, 2, INVALID_REQUEST, "Duplicate topic id.");
    assert_dt_entry(r, "secret", 0, BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED,
                    "Topic authorization failed.");
    /* orders: the duplicate id's record and the name's, both busgate's;
     * secret: the duplicate id's and the policy's deny of the name. */
    assert_int_equal(records(&v, "orders", INVALID_REQUEST, "duplicate topic id"), 1);
    assert_int_equal(
        records(&v, "orders", INVALID_REQUEST, "topic name maps to a duplicate topic id"), 1);
    assert_int_equal(records(&v, "orders", -1, NULL), 2);
    assert_int_equal(records(&v, "secret", INVALID_REQUEST, "duplicate topic id"), 1);
    assert_int_equal(records(&v, "secret", BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED, NULL), 1);
    assert_int_equal(records(&v, "secret", -1, NULL), 2);
}

/* A name next to its topic's id given once goes upstream with it, both
 * decided: the broker answers the name "The provided topic name maps to an
 * ID that was already supplied." and deletes neither. Also beside an entry
 * busgate answers itself. */
static void test_delete_topics_v6_name_next_to_its_id(void **st)
{
    ka_fix_t *f = *st;
    const dt_entry_t en[] = {{"orders", 0}, {NULL, 1}, {NULL, 0}};
    for (int n = 2; n <= 3; n++) {
        bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_DELETE_TOPICS, 6);
        bg_kafka_verdict_t v;
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, delete_v6(f, en, n), &f->a, &v), 0);
        assert_int_equal(v.action, n == 2 ? BG_KAFKA_ACT_FORWARD : BG_KAFKA_ACT_FORWARD_REWRITTEN);
        if (n == 3) {
            const bg_kafka_struct_t *q = v.request;
            assert_int_equal(q->f[K(DELETE_TOPICS_REQ_TOPICS)].a.n, 2);
            assert_true(ka_eq(ka_el(q, K(DELETE_TOPICS_REQ_TOPICS), 0)
                                  ->f[K(DELETE_TOPICS_REQ_TOPICS_NAME)].s,
                              "orders"));
            assert_int_equal(ka_el(q, K(DELETE_TOPICS_REQ_TOPICS), 1)
                                 ->f[K(DELETE_TOPICS_REQ_TOPICS_TOPIC_ID)].uuid[0],
                             1);
        }
        /* the name's delete, the id's describe and delete: all allowed */
        assert_int_equal(records(&v, "orders", 0, NULL), 3);
        assert_int_equal(records(&v, "orders", -1, NULL), 3);
        bg_kafka_arena_reset(&f->a);
    }
}

/* FindCoordinator for the share coordinator (key type 2), as Kafka's
 * getCoordinator answers a principal without CLUSTER_ACTION (none gets it
 * through busgate): CLUSTER_AUTHORIZATION_FAILED for every key from v6,
 * the first version with the type, no node; INVALID_REQUEST below v6, and
 * for an unknown type. Never decided as a group, whatever the key. */
static void test_find_coordinator_share(void **st)
{
    ka_fix_t *f = *st;
    for (int16_t ver = 1; ver <= 6; ver++) {
        for (int64_t type = 2; type <= 3; type++) {
            bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_FIND_COORDINATOR, ver);
            bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_FIND_COORDINATOR, 0);
            req->f[K(FIND_COORDINATOR_REQ_KEY_TYPE)].i = type;
            req->f[K(FIND_COORDINATOR_REQ_KEY)].s = ka_s("g1"); /* v0-3 */
            bg_kafka_val_t *keys =
                bg_kafka_array_vals(&f->a, req, K(FIND_COORDINATOR_REQ_COORDINATOR_KEYS), 2);
            keys[0].s = ka_s("g1");
            keys[1].s = ka_s("g1:AAAAAAAAAAAAAAAAAAAAAA:0");
            req = ka_rt(f, BG_KAFKA_API_FIND_COORDINATOR, 0, ver, req);
            bg_kafka_verdict_t v;
            assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
            assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
            int share = type == 2 && ver >= 6;
            int16_t want = share ? BG_KAFKA_E_CLUSTER_AUTHORIZATION_FAILED : INVALID_REQUEST;
            bg_kafka_struct_t *r = ka_rt(f, BG_KAFKA_API_FIND_COORDINATOR, 1, ver, v.response);
            if (ver < 4) {
                assert_int_equal(r->f[K(FIND_COORDINATOR_RESP_ERROR_CODE)].i, want);
            } else {
                assert_int_equal(r->f[K(FIND_COORDINATOR_RESP_COORDINATORS)].a.n, 2);
                for (int i = 0; i < 2; i++) {
                    const bg_kafka_struct_t *c = ka_el(r, K(FIND_COORDINATOR_RESP_COORDINATORS), i);
                    assert_true(ka_eq(c->f[K(FIND_COORDINATOR_RESP_COORDINATORS_KEY)].s,
                                      keys[i].s.len == 2 ? "g1" : "g1:AAAAAAAAAAAAAAAAAAAAAA:0"));
                    assert_int_equal(c->f[K(FIND_COORDINATOR_RESP_COORDINATORS_ERROR_CODE)].i,
                                     want);
                    assert_int_equal(c->f[K(FIND_COORDINATOR_RESP_COORDINATORS_NODE_ID)].i, -1);
                    assert_true(ka_eq(c->f[K(FIND_COORDINATOR_RESP_COORDINATORS_HOST)].s, ""));
                    assert_int_equal(c->f[K(FIND_COORDINATOR_RESP_COORDINATORS_PORT)].i, -1);
                    /* Kafka sets no message: the definition's default "" */
                    assert_true(
                        ka_eq(c->f[K(FIND_COORDINATOR_RESP_COORDINATORS_ERROR_MESSAGE)].s, ""));
                }
            }
            /* One record: busgate's deny on the cluster; the group never decided. */
            assert_int_equal(v.ndecisions, 1);
            assert_int_equal(v.decisions[0].resources[0].type, BG_RES_KAFKA_CLUSTER);
            assert_int_equal(v.decisions[0].error_code, want);
            assert_int_equal(v.decisions[0].verb, share ? BG_VERB_ALTER : BG_VERB_DESCRIBE);
            assert_non_null(strstr(v.decisions[0].reason, share ? "CLUSTER_ACTION" : "key type"));
            bg_kafka_arena_reset(&f->a);
        }
    }
}

/* ---- messages of refused entries ---- */

/* Encodes resp (api key, ver) and asserts the bytes hold text as a string
 * of that version: int16 length, or uvarint length + 1 when flexible. */
static void assert_wire_text(int16_t key, int16_t ver, const bg_kafka_struct_t *resp,
                             const char *text)
{
    const bg_kafka_msg_desc_t *d = bg_kafka_msg_desc(key, 1);
    bg_wr_t wr;
    const char *why = NULL;
    bg_wr_init(&wr, 256, 0);
    assert_int_equal(bg_kafka_encode(d, ver, resp, &wr, &why), BG_KAFKA_OK);
    uint8_t want[128];
    size_t n = strlen(text), k = 0;
    if (bg_kafka_is_flexible(d, ver)) {
        want[k++] = (uint8_t)(n + 1); /* the texts here are short: one byte */
    } else {
        want[k++] = 0;
        want[k++] = (uint8_t)n;
    }
    memcpy(want + k, text, n);
    k += n;
    int found = 0;
    for (size_t i = 0; !found && i + k <= wr.len; i++)
        found = memcmp(wr.buf + i, want, k) == 0;
    bg_wr_free(&wr);
    if (!found)
        fail_msg("%s v%d: no '%s' on the wire", d->name, ver, text);
}

/* busgate's own answer (every entry refused) to req. */
static bg_kafka_struct_t *local(ka_fix_t *f, int16_t key, int16_t ver, bg_kafka_struct_t *req)
{
    bg_kafka_req_hdr_t h = ka_hdr(key, ver);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, ka_rt(f, key, 0, ver, req), &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    return v.response;
}

/* CreateTopics: ControllerApis' own words, "Authorization failed." (v2+
 * all have the field); DeleteTopics v5+: the default message. */
static void test_topic_denial_messages(void **st)
{
    ka_fix_t *f = *st;
    const char *secret[] = {"secret"};
    for (int16_t ver = 2; ver <= 7; ver++) {
        bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_CREATE_TOPICS, 0);
        ka_topics(f, req, K(CREATE_TOPICS_REQ_TOPICS), K(CREATE_TOPICS_REQ_TOPICS_NAME), secret, 1,
                  -1, -1, 0);
        bg_kafka_struct_t *r = local(f, BG_KAFKA_API_CREATE_TOPICS, ver, req);
        const bg_kafka_struct_t *e =
            ka_el(ka_rt(f, BG_KAFKA_API_CREATE_TOPICS, 1, ver, r), K(CREATE_TOPICS_RESP_TOPICS), 0);
        assert_int_equal(e->f[K(CREATE_TOPICS_RESP_TOPICS_ERROR_CODE)].i,
                         BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED);
        assert_msg(e->f[K(CREATE_TOPICS_RESP_TOPICS_ERROR_MESSAGE)].s, "Authorization failed.");
        assert_wire_text(BG_KAFKA_API_CREATE_TOPICS, ver, r, "Authorization failed.");
        bg_kafka_arena_reset(&f->a);
    }
    for (int16_t ver = 1; ver <= 6; ver++) {
        bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_DELETE_TOPICS, 0);
        if (ver < 6)
            bg_kafka_array_vals(&f->a, req, K(DELETE_TOPICS_REQ_TOPIC_NAMES), 1)[0].s =
                ka_s("secret");
        else
            ka_topics(f, req, K(DELETE_TOPICS_REQ_TOPICS), K(DELETE_TOPICS_REQ_TOPICS_NAME), secret,
                      1, -1, -1, 0);
        bg_kafka_struct_t *r = local(f, BG_KAFKA_API_DELETE_TOPICS, ver, req);
        const bg_kafka_struct_t *e = ka_el(ka_rt(f, BG_KAFKA_API_DELETE_TOPICS, 1, ver, r),
                                           K(DELETE_TOPICS_RESP_RESPONSES), 0);
        assert_int_equal(e->f[K(DELETE_TOPICS_RESP_RESPONSES_ERROR_CODE)].i,
                         BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED);
        if (ver >= 5) {
            assert_msg(e->f[K(DELETE_TOPICS_RESP_RESPONSES_ERROR_MESSAGE)].s,
                       "Topic authorization failed.");
            assert_wire_text(BG_KAFKA_API_DELETE_TOPICS, ver, r, "Topic authorization failed.");
        }
        bg_kafka_arena_reset(&f->a);
    }
}

/* A principal nothing vouches for any more (a reload removed its token's
 * issuer): a topic the policy lets it create is refused as a policy deny
 * is, recorded as busgate's deny with the reason and no rule; with the
 * issuer back, the same request is forwarded. */
static void test_unvouched_principal_denied(void **st)
{
    ka_fix_t *f = *st;
    static const char why[] = "the token's issuer is no longer configured";
    const char *orders[] = {"orders.new"};
    bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_CREATE_TOPICS, 0);
    ka_topics(f, req, K(CREATE_TOPICS_REQ_TOPICS), K(CREATE_TOPICS_REQ_TOPICS_NAME), orders, 1, -1,
              -1, 0);
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_CREATE_TOPICS, 7);
    bg_kafka_struct_t *rq = ka_rt(f, BG_KAFKA_API_CREATE_TOPICS, 0, 7, req);
    bg_kafka_verdict_t v;
    f->ctx.unvouched = why;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, rq, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    const bg_kafka_struct_t *e = ka_el(ka_rt(f, BG_KAFKA_API_CREATE_TOPICS, 1, 7, v.response),
                                       K(CREATE_TOPICS_RESP_TOPICS), 0);
    assert_int_equal(e->f[K(CREATE_TOPICS_RESP_TOPICS_ERROR_CODE)].i,
                     BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED);
    const bg_kafka_decision_t *d = ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "orders.new");
    assert_non_null(d);
    assert_int_equal(d->decision.effect, BG_EFFECT_DENY);
    assert_null(d->decision.rule);
    assert_int_equal(d->error_code, BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED);
    assert_ptr_equal(d->reason, why);
    f->ctx.unvouched = NULL;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, rq, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    d = ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "orders.new");
    assert_non_null(d);
    assert_int_equal(d->decision.effect, BG_EFFECT_ALLOW);
    assert_null(d->reason);
}

/* A config request with one resource per (type, name). */
static bg_kafka_struct_t *config_req(ka_fix_t *f, int16_t key, const int *types,
                                     const char *const *names, int n)
{
    bg_kafka_struct_t *req = ka_new(f, key, 0);
    bg_kafka_struct_t **res = bg_kafka_array_new(&f->a, req, 0, n); /* Resources */
    assert_non_null(res);
    for (int i = 0; i < n; i++) {
        res[i]->f[0].i = types[i]; /* ResourceType */
        res[i]->f[1].s = ka_s(names[i]);
    }
    return req;
}

/* DescribeConfigs (ConfigHelper), AlterConfigs and IncrementalAlterConfigs
 * (ControllerApis): each refused resource with its error's default
 * message; fields 0 (code) and 1 (message) of every result. Fixture:
 * describe on the cluster only. */
static void test_config_denial_messages(void **st)
{
    ka_fix_t *f = *st;
    static const struct {
        int16_t key, lo, hi;
        int types[3];
        const char *names[3];
        int16_t errs[3];
    } cases[] = {
        {BG_KAFKA_API_DESCRIBE_CONFIGS,
         1,
         4,
         {2, 32, 2},
         {"secret", "zz", "dropbox"},
         {29, 30, 29}},
        {BG_KAFKA_API_ALTER_CONFIGS, 0, 2, {2, 4, 32}, {"secret", "1", "zz"}, {29, 31, 30}},
        {BG_KAFKA_API_INCREMENTAL_ALTER_CONFIGS,
         0,
         1,
         {2, 4, 8},
         {"secret", "", "1"},
         {29, 31, 31}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int16_t ver = cases[c].lo; ver <= cases[c].hi; ver++) {
            bg_kafka_struct_t *r =
                local(f, cases[c].key, ver,
                      config_req(f, cases[c].key, cases[c].types, cases[c].names, 3));
            bg_kafka_struct_t *m = ka_rt(f, cases[c].key, 1, ver, r);
            assert_int_equal(m->f[1].a.n, 3);
            for (int i = 0; i < 3; i++) {
                const bg_kafka_struct_t *e = ka_el(m, 1, i);
                assert_int_equal(e->f[0].i, cases[c].errs[i]);
                assert_msg(e->f[1].s, cases[c].errs[i] == 29   ? "Topic authorization failed."
                                      : cases[c].errs[i] == 30 ? "Group authorization failed."
                                                               : "Cluster authorization failed.");
            }
            assert_wire_text(cases[c].key, ver, r, "Topic authorization failed.");
            bg_kafka_arena_reset(&f->a);
        }
}

/* ElectLeaders and AlterPartitionReassignments: a reserved topic's
 * partitions refused, each with the default message. */
static void test_partition_admin_denial_messages(void **st)
{
    ka_fix_t *f = *st;
    ka_set_policy(f, 1u << BG_VERB_ALTER | 1u << BG_VERB_DESCRIBE);
    const char *audit[] = {"audit.log"};
    for (int16_t ver = 1; ver <= 2; ver++) {
        bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_ELECT_LEADERS, 0);
        bg_kafka_struct_t **t =
            ka_topics(f, req, K(ELECT_LEADERS_REQ_TOPIC_PARTITIONS),
                      K(ELECT_LEADERS_REQ_TOPIC_PARTITIONS_TOPIC), audit, 1, -1, 0, 0);
        bg_kafka_val_t *pv =
            bg_kafka_array_vals(&f->a, t[0], K(ELECT_LEADERS_REQ_TOPIC_PARTITIONS_PARTITIONS), 2);
        pv[0].i = 0;
        pv[1].i = 1;
        bg_kafka_struct_t *r = local(f, BG_KAFKA_API_ELECT_LEADERS, ver, req);
        const bg_kafka_struct_t *e = ka_el(ka_rt(f, BG_KAFKA_API_ELECT_LEADERS, 1, ver, r),
                                           K(ELECT_LEADERS_RESP_REPLICA_ELECTION_RESULTS), 0);
        for (int i = 0; i < 2; i++) {
            const bg_kafka_struct_t *p =
                ka_el(e, K(ELECT_LEADERS_RESP_REPLICA_ELECTION_RESULTS_PARTITION_RESULT), i);
            assert_int_equal(
                p->f[K(ELECT_LEADERS_RESP_REPLICA_ELECTION_RESULTS_PARTITION_RESULT_ERROR_CODE)].i,
                BG_KAFKA_E_CLUSTER_AUTHORIZATION_FAILED);
            assert_msg(
                p->f[K(ELECT_LEADERS_RESP_REPLICA_ELECTION_RESULTS_PARTITION_RESULT_ERROR_MESSAGE)]
                    .s,
                "Cluster authorization failed.");
        }
        assert_wire_text(BG_KAFKA_API_ELECT_LEADERS, ver, r, "Cluster authorization failed.");
        bg_kafka_arena_reset(&f->a);
    }
    for (int16_t ver = 0; ver <= 1; ver++) {
        bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_ALTER_PARTITION_REASSIGNMENTS, 0);
        ka_topics(f, req, K(ALTER_PARTITION_REASSIGNMENTS_REQ_TOPICS),
                  K(ALTER_PARTITION_REASSIGNMENTS_REQ_TOPICS_NAME), audit, 1,
                  K(ALTER_PARTITION_REASSIGNMENTS_REQ_TOPICS_PARTITIONS),
                  K(ALTER_PARTITION_REASSIGNMENTS_REQ_TOPICS_PARTITIONS_PARTITION_INDEX), 2);
        bg_kafka_struct_t *r = local(f, BG_KAFKA_API_ALTER_PARTITION_REASSIGNMENTS, ver, req);
        const bg_kafka_struct_t *p =
            ka_el(ka_el(ka_rt(f, BG_KAFKA_API_ALTER_PARTITION_REASSIGNMENTS, 1, ver, r),
                        K(ALTER_PARTITION_REASSIGNMENTS_RESP_RESPONSES), 0),
                  K(ALTER_PARTITION_REASSIGNMENTS_RESP_RESPONSES_PARTITIONS), 1);
        assert_msg(p->f[K(ALTER_PARTITION_REASSIGNMENTS_RESP_RESPONSES_PARTITIONS_ERROR_MESSAGE)].s,
                   "Cluster authorization failed.");
        assert_wire_text(BG_KAFKA_API_ALTER_PARTITION_REASSIGNMENTS, ver, r,
                         "Cluster authorization failed.");
        bg_kafka_arena_reset(&f->a);
    }
}

/* A refused Fetch partition keeps an empty, non-null AbortedTransactions
 * (v4+): Kafka's FetchResponse.partitionResponse never sets the field, so
 * it goes out as the generated default, an empty list (the definition has
 * no "default": "null"), and KafkaApis copies it as it is. */
static void test_fetch_denied_aborted_transactions(void **st)
{
    ka_fix_t *f = *st;
    const char *secret[] = {"secret"};
    for (int16_t ver = 4; ver <= 15; ver++) {
        bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_FETCH, 0);
        bg_kafka_struct_t **t =
            ka_topics(f, req, K(FETCH_REQ_TOPICS), K(FETCH_REQ_TOPICS_TOPIC), secret, 1,
                      K(FETCH_REQ_TOPICS_PARTITIONS), K(FETCH_REQ_TOPICS_PARTITIONS_PARTITION), 1);
        t[0]->f[K(FETCH_REQ_TOPICS_TOPIC_ID)].uuid[0] = 2; /* secret */
        bg_kafka_struct_t *r = local(f, BG_KAFKA_API_FETCH, ver, req);
        const bg_kafka_struct_t *p =
            ka_el(ka_el(ka_rt(f, BG_KAFKA_API_FETCH, 1, ver, r), K(FETCH_RESP_RESPONSES), 0),
                  K(FETCH_RESP_RESPONSES_PARTITIONS), 0);
        assert_int_equal(p->f[K(FETCH_RESP_RESPONSES_PARTITIONS_ERROR_CODE)].i,
                         BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED);
        assert_int_equal(p->f[K(FETCH_RESP_RESPONSES_PARTITIONS_ABORTED_TRANSACTIONS)].a.n, 0);
        bg_kafka_arena_reset(&f->a);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_topics_duplicates, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_delete_topic_names_duplicates, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_delete_topics_v6_duplicates, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_delete_topics_v6_neither_name_nor_id, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_delete_topics_v6_name_and_id, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_delete_topics_v6_name_of_a_duplicate_id, ka_up,
                                        ka_down),
        cmocka_unit_test_setup_teardown(test_delete_topics_v6_name_next_to_its_id, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_find_coordinator_share, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_topic_denial_messages, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_unvouched_principal_denied, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_config_denial_messages, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_partition_admin_denial_messages, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_fetch_denied_aborted_transactions, ka_up, ka_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
