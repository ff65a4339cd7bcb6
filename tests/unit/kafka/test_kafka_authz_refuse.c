/* Kafka authorization: a request refused because the audit pipeline takes
 * no events (bg_kafka_authz_refuse with REQUEST_TIMED_OUT) is answered in
 * Kafka's own error shape wherever the response can carry the code, and
 * the connection closes only where it cannot: the APIs and versions listed
 * in docs/kafka.md and docs/audit.md, which a sweep over every supported
 * API and version checks. Responses are encoded and decoded at their
 * version, so what is asserted is what goes on the wire. */
#include "test_kafka_authz_util.h"

#define TIMED_OUT 7 /* REQUEST_TIMED_OUT */

static const char *const two[] = {"orders", "public"};

/* The verdict of an allowed request turned into an audit refusal. */
static bg_kafka_verdict_t refused(ka_fix_t *f, int16_t key, int16_t ver, bg_kafka_struct_t *req)
{
    bg_kafka_req_hdr_t h = ka_hdr(key, ver);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_true(v.action == BG_KAFKA_ACT_FORWARD || v.action == BG_KAFKA_ACT_FORWARD_REWRITTEN);
    bg_kafka_authz_refuse(&h, req, TIMED_OUT, "audit pipeline unavailable", &f->a, &v);
    return v;
}

/* Every partition of every topic of resp (arrays ti, pi; error ei) carries
 * TIMED_OUT, nparts partitions per topic. */
static void assert_all_timed_out(const bg_kafka_struct_t *resp, int ti, int pi, int ei, int ntopics,
                                 int nparts)
{
    assert_int_equal(resp->f[ti].a.n, ntopics);
    for (int t = 0; t < ntopics; t++) {
        const bg_kafka_struct_t *tp = ka_el(resp, ti, t);
        assert_int_equal(tp->f[pi].a.n, nparts);
        for (int p = 0; p < nparts; p++)
            assert_int_equal(ka_el(tp, pi, p)->f[ei].i, TIMED_OUT);
    }
}

/* The reviewer's probe: an allowed OffsetCommit (v8, and v10 by topic id)
 * is answered, every partition REQUEST_TIMED_OUT, instead of closing. */
static void test_offset_commit_answered(void **st)
{
    ka_fix_t *f = *st;
    for (int16_t ver = 2; ver <= 10; ver++) {
        bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_OFFSET_COMMIT, 0);
        req->f[K(OFFSET_COMMIT_REQ_GROUP_ID)].s = ka_s("g1");
        bg_kafka_struct_t **t =
            ka_topics(f, req, K(OFFSET_COMMIT_REQ_TOPICS), K(OFFSET_COMMIT_REQ_TOPICS_NAME), two, 2,
                      K(OFFSET_COMMIT_REQ_TOPICS_PARTITIONS),
                      K(OFFSET_COMMIT_REQ_TOPICS_PARTITIONS_PARTITION_INDEX), 3);
        t[0]->f[K(OFFSET_COMMIT_REQ_TOPICS_TOPIC_ID)].uuid[0] = 1; /* orders */
        t[1]->f[K(OFFSET_COMMIT_REQ_TOPICS_TOPIC_ID)].uuid[0] = 4; /* public */
        req = ka_rt(f, BG_KAFKA_API_OFFSET_COMMIT, 0, ver, req);
        bg_kafka_verdict_t v = refused(f, BG_KAFKA_API_OFFSET_COMMIT, ver, req);
        assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
        assert_int_equal(v.ndecisions, 0);
        bg_kafka_struct_t *r = ka_rt(f, BG_KAFKA_API_OFFSET_COMMIT, 1, ver, v.response);
        assert_all_timed_out(r, K(OFFSET_COMMIT_RESP_TOPICS),
                             K(OFFSET_COMMIT_RESP_TOPICS_PARTITIONS),
                             K(OFFSET_COMMIT_RESP_TOPICS_PARTITIONS_ERROR_CODE), 2, 3);
        const bg_kafka_struct_t *t1 = ka_el(r, K(OFFSET_COMMIT_RESP_TOPICS), 1);
        if (ver < 10)
            assert_true(ka_eq(t1->f[K(OFFSET_COMMIT_RESP_TOPICS_NAME)].s, "public"));
        else
            assert_int_equal(t1->f[K(OFFSET_COMMIT_RESP_TOPICS_TOPIC_ID)].uuid[0], 4);
        assert_int_equal(ka_el(t1, K(OFFSET_COMMIT_RESP_TOPICS_PARTITIONS), 2)
                             ->f[K(OFFSET_COMMIT_RESP_TOPICS_PARTITIONS_PARTITION_INDEX)]
                             .i,
                         2);
        bg_kafka_arena_reset(&f->a);
    }
}

static void test_txn_offset_commit_answered(void **st)
{
    ka_fix_t *f = *st;
    for (int16_t ver = 0; ver <= 5; ver++) {
        bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_TXN_OFFSET_COMMIT, 0);
        req->f[K(TXN_OFFSET_COMMIT_REQ_TRANSACTIONAL_ID)].s = ka_s("tx1");
        req->f[K(TXN_OFFSET_COMMIT_REQ_GROUP_ID)].s = ka_s("g1");
        ka_topics(f, req, K(TXN_OFFSET_COMMIT_REQ_TOPICS), K(TXN_OFFSET_COMMIT_REQ_TOPICS_NAME),
                  two, 2, K(TXN_OFFSET_COMMIT_REQ_TOPICS_PARTITIONS),
                  K(TXN_OFFSET_COMMIT_REQ_TOPICS_PARTITIONS_PARTITION_INDEX), 2);
        req = ka_rt(f, BG_KAFKA_API_TXN_OFFSET_COMMIT, 0, ver, req);
        bg_kafka_verdict_t v = refused(f, BG_KAFKA_API_TXN_OFFSET_COMMIT, ver, req);
        assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
        bg_kafka_struct_t *r = ka_rt(f, BG_KAFKA_API_TXN_OFFSET_COMMIT, 1, ver, v.response);
        assert_all_timed_out(r, K(TXN_OFFSET_COMMIT_RESP_TOPICS),
                             K(TXN_OFFSET_COMMIT_RESP_TOPICS_PARTITIONS),
                             K(TXN_OFFSET_COMMIT_RESP_TOPICS_PARTITIONS_ERROR_CODE), 2, 2);
        assert_true(ka_eq(ka_el(r, K(TXN_OFFSET_COMMIT_RESP_TOPICS), 0)
                              ->f[K(TXN_OFFSET_COMMIT_RESP_TOPICS_NAME)]
                              .s,
                          "orders"));
        bg_kafka_arena_reset(&f->a);
    }
}

static void test_add_partitions_to_txn_answered(void **st)
{
    ka_fix_t *f = *st;
    const char *orders[] = {"orders", "orders.eu"};
    for (int16_t ver = 0; ver <= 3; ver++) {
        bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_ADD_PARTITIONS_TO_TXN, 0);
        req->f[K(ADD_PARTITIONS_TO_TXN_REQ_V3_AND_BELOW_TRANSACTIONAL_ID)].s = ka_s("tx1");
        bg_kafka_struct_t **t =
            ka_topics(f, req, K(ADD_PARTITIONS_TO_TXN_REQ_V3_AND_BELOW_TOPICS),
                      K(ADD_PARTITIONS_TO_TXN_REQ_V3_AND_BELOW_TOPICS_NAME), orders, 2, -1, 0, 0);
        for (int i = 0; i < 2; i++) {
            bg_kafka_val_t *pv = bg_kafka_array_vals(
                &f->a, t[i], K(ADD_PARTITIONS_TO_TXN_REQ_V3_AND_BELOW_TOPICS_PARTITIONS), 2);
            pv[0].i = 0;
            pv[1].i = 7;
        }
        req = ka_rt(f, BG_KAFKA_API_ADD_PARTITIONS_TO_TXN, 0, ver, req);
        bg_kafka_verdict_t v = refused(f, BG_KAFKA_API_ADD_PARTITIONS_TO_TXN, ver, req);
        assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
        bg_kafka_struct_t *r = ka_rt(f, BG_KAFKA_API_ADD_PARTITIONS_TO_TXN, 1, ver, v.response);
        assert_all_timed_out(
            r, K(ADD_PARTITIONS_TO_TXN_RESP_RESULTS_BY_TOPIC_V3_AND_BELOW),
            K(ADD_PARTITIONS_TO_TXN_RESP_RESULTS_BY_TOPIC_V3_AND_BELOW_RESULTS_BY_PARTITION),
            K(ADD_PARTITIONS_TO_TXN_RESP_RESULTS_BY_TOPIC_V3_AND_BELOW_RESULTS_BY_PARTITION_PARTITION_ERROR_CODE),
            2, 2);
        assert_int_equal(
            ka_el(ka_el(r, K(ADD_PARTITIONS_TO_TXN_RESP_RESULTS_BY_TOPIC_V3_AND_BELOW), 1),
                  K(ADD_PARTITIONS_TO_TXN_RESP_RESULTS_BY_TOPIC_V3_AND_BELOW_RESULTS_BY_PARTITION),
                  1)
                ->f[K(
                    ADD_PARTITIONS_TO_TXN_RESP_RESULTS_BY_TOPIC_V3_AND_BELOW_RESULTS_BY_PARTITION_PARTITION_INDEX)]
                .i,
            7);
        bg_kafka_arena_reset(&f->a);
    }
}

/* Metadata naming topics, as Kafka's MetadataRequest.getErrorResponse: an
 * entry per named topic with the error, no partitions, no brokers (the
 * Java client takes a response without brokers as a failed update and
 * retries), a topic asked by id keeps its id and gets the name "", and v13
 * carries the top-level code too. For all topics only v13 can answer. */
static void test_metadata_answered(void **st)
{
    ka_fix_t *f = *st;
    for (int16_t ver = 0; ver <= 13; ver++) {
        bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_METADATA, 0);
        bg_kafka_struct_t **t = ka_topics(f, req, K(METADATA_REQ_TOPICS),
                                          K(METADATA_REQ_TOPICS_NAME), two, 2, -1, 0, 0);
        if (ver >= 12) { /* the second by id only */
            t[1]->f[K(METADATA_REQ_TOPICS_NAME)].s = bg_kafka_null_slice();
            t[1]->f[K(METADATA_REQ_TOPICS_TOPIC_ID)].uuid[0] = 4;
        }
        req = ka_rt(f, BG_KAFKA_API_METADATA, 0, ver, req);
        bg_kafka_verdict_t v = refused(f, BG_KAFKA_API_METADATA, ver, req);
        assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
        bg_kafka_struct_t *r = ka_rt(f, BG_KAFKA_API_METADATA, 1, ver, v.response);
        assert_int_equal(r->f[K(METADATA_RESP_BROKERS)].a.n, 0);
        assert_int_equal(r->f[K(METADATA_RESP_TOPICS)].a.n, 2);
        for (int i = 0; i < 2; i++) {
            const bg_kafka_struct_t *e = ka_el(r, K(METADATA_RESP_TOPICS), i);
            assert_int_equal(e->f[K(METADATA_RESP_TOPICS_ERROR_CODE)].i, TIMED_OUT);
            assert_int_equal(e->f[K(METADATA_RESP_TOPICS_PARTITIONS)].a.n, 0);
            assert_int_equal(e->f[K(METADATA_RESP_TOPICS_IS_INTERNAL)].i, 0);
        }
        const bg_kafka_struct_t *e1 = ka_el(r, K(METADATA_RESP_TOPICS), 1);
        assert_true(ka_eq(e1->f[K(METADATA_RESP_TOPICS_NAME)].s, ver >= 12 ? "" : "public"));
        if (ver >= 12)
            assert_int_equal(e1->f[K(METADATA_RESP_TOPICS_TOPIC_ID)].uuid[0], 4);
        if (ver == 13)
            assert_int_equal(r->f[K(METADATA_RESP_ERROR_CODE)].i, TIMED_OUT);

        /* All topics: null (v1+) or an empty list (v0). */
        req = ka_new(f, BG_KAFKA_API_METADATA, 0);
        req->f[K(METADATA_REQ_TOPICS)].a.n = ver == 0 ? 0 : -1;
        req = ka_rt(f, BG_KAFKA_API_METADATA, 0, ver, req);
        v = refused(f, BG_KAFKA_API_METADATA, ver, req);
        if (ver < 13) {
            assert_int_equal(v.action, BG_KAFKA_ACT_CLOSE);
            assert_string_equal(v.close_reason, "audit pipeline unavailable");
        } else {
            assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
            r = ka_rt(f, BG_KAFKA_API_METADATA, 1, ver, v.response);
            assert_int_equal(r->f[K(METADATA_RESP_ERROR_CODE)].i, TIMED_OUT);
            assert_int_equal(r->f[K(METADATA_RESP_TOPICS)].a.n, 0);
        }
        bg_kafka_arena_reset(&f->a);
    }
}

/* ---- the sweep ---- */

typedef struct {
    char items[16][96];
    int n;
} closes_t;

/* Adds "<Api> v<lo>[-<hi>]<label>" for a run of closing versions. */
static void closes_add(closes_t *c, int16_t key, int16_t lo, int16_t hi, const char *label)
{
    assert_true(c->n < 16);
    if (lo == hi)
        snprintf(c->items[c->n++], sizeof c->items[0], "%s v%d%s", bg_kafka_api_name(key), lo,
                 label);
    else
        snprintf(c->items[c->n++], sizeof c->items[0], "%s v%d-%d%s", bg_kafka_api_name(key), lo,
                 hi, label);
}

/* 1 when bg_kafka_authz_refuse closes (rather than answers) req, an
 * allowed request of key/ver. */
static int refuse_closes(ka_fix_t *f, int16_t key, int16_t ver, bg_kafka_struct_t *req)
{
    bg_kafka_req_hdr_t h = ka_hdr(key, ver);
    bg_kafka_verdict_t v;
    memset(&v, 0, sizeof v);
    v.action = BG_KAFKA_ACT_FORWARD; /* as the classifier left an allowed request */
    bg_kafka_authz_refuse(&h, req, TIMED_OUT, "audit pipeline unavailable", &f->a, &v);
    if (v.action == BG_KAFKA_ACT_RESPOND)
        ka_rt(f, key, 1, ver, v.response); /* and what it answers encodes */
    return v.action == BG_KAFKA_ACT_CLOSE;
}

/* The request forms swept: every API's default request (its arrays empty);
 * Metadata also for all topics (null topics; at v0 the empty list, so
 * there its default request is that form). NULL: no such form. */
enum { FORM_DEFAULT, FORM_ALL_TOPICS, FORM__COUNT };
static const char *const form_label[] = {"", " for all topics"};

static bg_kafka_struct_t *form_req(ka_fix_t *f, int16_t key, int16_t ver, int form)
{
    int metadata = key == BG_KAFKA_API_METADATA;
    if (form == FORM_ALL_TOPICS ? !metadata : metadata && ver == 0)
        return NULL;
    bg_kafka_struct_t *req = ka_new(f, key, 0);
    if (form == FORM_ALL_TOPICS)
        req->f[K(METADATA_REQ_TOPICS)].a.n = ver == 0 ? 0 : -1;
    return ka_rt(f, key, 0, ver, req);
}

/* Every supported API (but the session's own: SaslHandshake,
 * ApiVersions, SaslAuthenticate) at every version it is offered. */
static void sweep(ka_fix_t *f, closes_t *c)
{
    memset(c, 0, sizeof *c);
    for (int16_t key = 0; key < 100; key++) {
        int16_t lo, hi;
        if (!bg_kafka_authz_supported(key, &lo, &hi) || key == BG_KAFKA_API_SASL_HANDSHAKE ||
            key == BG_KAFKA_API_API_VERSIONS || key == BG_KAFKA_API_SASL_AUTHENTICATE)
            continue;
        for (int form = 0; form < FORM__COUNT; form++) {
            int16_t run = -1;
            for (int16_t ver = lo; ver <= hi + 1; ver++) {
                bg_kafka_struct_t *req = ver <= hi ? form_req(f, key, ver, form) : NULL;
                int closes = req && refuse_closes(f, key, ver, req);
                bg_kafka_arena_reset(&f->a);
                if (closes && run < 0)
                    run = ver;
                if (!closes && run >= 0) {
                    closes_add(c, key, run, (int16_t)(ver - 1), form_label[form]);
                    run = -1;
                }
            }
        }
    }
}

/* The text of the paragraph of a file under the repository that starts
 * with marker (up to the next blank line), whitespace runs made one space,
 * into out (cap bytes). */
static void doc_paragraph(const char *rel, const char *marker, char *out, size_t cap)
{
    const char *root = getenv("BG_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root ? root : ".", rel);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        fail_msg("cannot open %s", path);
    static char buf[1 << 20];
    size_t len = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[len] = 0;
    char *p = strstr(buf, marker);
    if (!p)
        fail_msg("%s: no paragraph starting with '%s'", rel, marker);
    char *end = strstr(p, "\n\n");
    size_t n = end ? (size_t)(end - p) : strlen(p);
    assert_true(n < cap);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int ws = p[i] == ' ' || p[i] == '\n';
        if (ws && k && out[k - 1] == ' ')
            continue;
        out[k++] = ws ? ' ' : p[i];
    }
    out[k] = 0;
}

/* The code spans of text that name an API and a version ("`Metadata
 * v0-12 ...`"): the list a doc gives of the requests that close. */
static void doc_closes(const char *text, closes_t *c)
{
    memset(c, 0, sizeof *c);
    for (const char *p = strchr(text, '`'); p; p = strchr(p + 1, '`')) {
        const char *q = strchr(p + 1, '`');
        if (!q)
            break;
        size_t n = (size_t)(q - p - 1);
        char span[96];
        if (n < sizeof span) {
            memcpy(span, p + 1, n);
            span[n] = 0;
            const char *sp = strstr(span, " v");
            int is_api = 0;
            for (int16_t key = 0; sp && key < 100 && !is_api; key++) {
                const char *name = bg_kafka_api_name(key);
                is_api = name && strlen(name) == (size_t)(sp - span) &&
                         memcmp(name, span, strlen(name)) == 0 && sp[2] >= '0' && sp[2] <= '9';
            }
            if (is_api) {
                assert_true(c->n < 16);
                snprintf(c->items[c->n++], sizeof c->items[0], "%s", span);
            }
        }
        p = q;
    }
}

static void assert_same(const closes_t *got, const closes_t *doc, const char *rel)
{
    int same = got->n == doc->n;
    for (int i = 0; same && i < got->n; i++) {
        int found = 0;
        for (int j = 0; j < doc->n && !found; j++)
            found = strcmp(got->items[i], doc->items[j]) == 0;
        same = found;
    }
    if (same)
        return;
    char list[1024] = "";
    for (int i = 0; i < got->n; i++) {
        strncat(list, got->items[i], sizeof list - strlen(list) - 1);
        strncat(list, "; ", sizeof list - strlen(list) - 1);
    }
    fail_msg("%s lists %d requests that close when audit refuses; they are: %s", rel, doc->n, list);
}

/* Every supported API and version through bg_kafka_authz_refuse: the ones
 * that still close are exactly those docs/kafka.md and docs/audit.md name
 * (only Metadata below v13 for all topics: no field for the error). */
static void test_refuse_sweep_matches_docs(void **st)
{
    ka_fix_t *f = *st;
    closes_t got, doc;
    sweep(f, &got);
    assert_int_equal(got.n, 1);
    assert_string_equal(got.items[0], "Metadata v0-12 for all topics");
    static char text[1 << 16];
    doc_paragraph("docs/kafka.md", "- When the audit pipeline refuses events", text, sizeof text);
    doc_closes(text, &doc);
    assert_same(&got, &doc, "docs/kafka.md");
    doc_paragraph("docs/audit.md", "While it stops admitting", text, sizeof text);
    doc_closes(text, &doc);
    assert_same(&got, &doc, "docs/audit.md");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_offset_commit_answered, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_txn_offset_commit_answered, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_add_partitions_to_txn_answered, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_metadata_answered, ka_up, ka_down),
        cmocka_unit_test_setup_teardown(test_refuse_sweep_matches_docs, ka_up, ka_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
