/* Kafka authorization: ACL and partition-admin APIs never touch the
 * reserved topics (fixture: audit topic "audit.log"; Kafka's internal
 * topics), even for a principal allowed `alter` on the cluster. Requests are encoded and
 * decoded at their version so every tree is a valid message. */
#include "test_kafka_authz_util.h"

/* Kafka codes (org.apache.kafka.common.resource / acl). */
enum { RT_ANY = 1, RT_TOPIC = 2, RT_GROUP = 3, RT_CLUSTER = 4, RT_TXN = 5, RT_TOKEN = 6, RT_USER = 7 };
enum { PT_ANY = 1, PT_MATCH = 2, PT_LITERAL = 3, PT_PREFIXED = 4 };

static int setup(void **st)
{
    ka_fix_t *f = ka_setup();
    ka_set_policy(f, 1u << BG_VERB_ALTER | 1u << BG_VERB_DESCRIBE);
    *st = f;
    return 0;
}

typedef struct {
    int type;
    const char *name; /* NULL: a null name (filters) */
    int pattern;
} acl_t;

/* A CreateAcls or DeleteAcls request, round-tripped at ver; principal i
 * from pr (NULL: all "User:x"; "-": a null principal filter). */
static bg_kafka_struct_t *acl_req_pr(ka_fix_t *f, int16_t key, int16_t ver, const acl_t *acls,
                                     const char *const *pr, int n)
{
    bg_kafka_struct_t *r = ka_new(f, key, 0);
    bg_kafka_struct_t **e = bg_kafka_array_new(&f->a, r, 0, n);
    assert_non_null(e);
    for (int i = 0; i < n; i++) {
        e[i]->f[0].i = acls[i].type; /* ResourceType(Filter) */
        e[i]->f[1].s = acls[i].name ? ka_s(acls[i].name) : bg_kafka_null_slice();
        e[i]->f[2].i = acls[i].pattern;
        const char *who = pr ? pr[i] : "User:x";
        e[i]->f[3].s = strcmp(who, "-") ? ka_s(who) : bg_kafka_null_slice(); /* Principal(Filter) */
        e[i]->f[4].s = ka_s("*");      /* Host(Filter) */
        e[i]->f[5].i = 3;              /* READ */
        e[i]->f[6].i = 3;              /* ALLOW */
    }
    return ka_rt(f, key, 0, ver, r);
}

static bg_kafka_struct_t *acl_req(ka_fix_t *f, int16_t key, int16_t ver, const acl_t *acls, int n)
{
    return acl_req_pr(f, key, ver, acls, NULL, n);
}

/* The upstream's answer for the forwarded entries: results tagged "upN". */
static bg_kafka_struct_t *acl_resp(ka_fix_t *f, int16_t key, int n)
{
    static const char *tags[] = {"up0", "up1", "up2", "up3", "up4", "up5"};
    bg_kafka_struct_t *r = ka_new(f, key, 1);
    bg_kafka_struct_t **e = bg_kafka_array_new(&f->a, r, 1, n);
    assert_non_null(e);
    for (int i = 0; i < n; i++)
        e[i]->f[1].s = ka_s(tags[i]); /* ErrorMessage */
    return r;
}

/* Error code and message of result i (fields 0 and 1 in both APIs). */
static void assert_result(const bg_kafka_struct_t *resp, int i, int err, const char *msg)
{
    const bg_kafka_struct_t *e = ka_el(resp, 1, i);
    assert_int_equal(e->f[0].i, err);
    if (!ka_eq(e->f[1].s, msg))
        fail_msg("result %d: message '%.*s', want '%s'", i, (int)e->f[1].s.len,
                 (const char *)e->f[1].s.p, msg);
}

/* The one decision group busgate recorded for the audit topic. */
static const bg_kafka_decision_t *reserved(const bg_kafka_verdict_t *v)
{
    for (size_t i = 0; i < v->ndecisions; i++)
        if (v->decisions[i].reason && strcmp(v->decisions[i].reason, "reserved audit topic") == 0)
            return &v->decisions[i];
    return NULL;
}

/* Forwards req; merges the upstream's answer for nfwd entries; returns the
 * merged response decoded again. */
static bg_kafka_struct_t *merged(ka_fix_t *f, int16_t key, int16_t ver, bg_kafka_verdict_t *v,
                                 int nfwd)
{
    bg_kafka_req_hdr_t h = ka_hdr(key, ver);
    bg_kafka_struct_t *out;
    size_t nn = 0;
    assert_int_equal(bg_kafka_authz_response(&f->ctx, &h, v,
                                             ka_rt(f, key, 1, ver, acl_resp(f, key, nfwd)), &f->a,
                                             &out, NULL, &nn, NULL, NULL),
                     0);
    return ka_rt(f, key, 1, ver, out);
}

#define ANY_TYPE                                                                              \
    "ACL of any or an unknown resource type: it could match cluster, user or "                 \
    "delegation-token ACLs"
#define TYPE_REASON                                                                           \
    "ACL on the cluster, a user or a delegation token: busgate's upstream credential would "   \
    "grant it"
#define SELF "ACL naming busgate's upstream principal"
#define ANY_PRINCIPAL "ACL of any principal or User:*: it would apply to busgate's own principal too"

/* The decision group busgate recorded with reason why, NULL when none. */
static const bg_kafka_decision_t *by_reason(const bg_kafka_verdict_t *v, const char *why)
{
    for (size_t i = 0; i < v->ndecisions; i++)
        if (v->decisions[i].reason && strcmp(v->decisions[i].reason, why) == 0)
            return &v->decisions[i];
    return NULL;
}

static void test_create_acls(void **st)
{
    ka_fix_t *f = *st;
    static const acl_t acls[] = {
        {RT_TOPIC, "orders", PT_LITERAL},   /* 0 forwarded */
        {RT_TOPIC, "audit.log", PT_LITERAL}, /* 1 the audit topic */
        {RT_TOPIC, "aud", PT_PREFIXED},      /* 2 a prefix of it */
        {RT_TOPIC, "*", PT_LITERAL},         /* 3 the wildcard */
        {RT_GROUP, "audit.log", PT_LITERAL}, /* 4 forwarded: a group */
        {RT_TOPIC, "orders", PT_PREFIXED},   /* 5 forwarded */
        {RT_ANY, "x", PT_MATCH},             /* 6 any resource type: refused */
    };
    for (int16_t ver = 1; ver <= 3; ver += 2) {
        bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_CREATE_ACLS, ver);
        bg_kafka_verdict_t v;
        bg_kafka_struct_t *req = acl_req(f, BG_KAFKA_API_CREATE_ACLS, ver, acls, 7);
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
        assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
        assert_int_equal(v.needs_response, 1);
        bg_kafka_struct_t *fw = ka_rt(f, BG_KAFKA_API_CREATE_ACLS, 0, ver, v.request);
        assert_int_equal(fw->f[K(CREATE_ACLS_REQ_CREATIONS)].a.n, 3);
        assert_int_equal(ka_el(fw, 0, 1)->f[0].i, RT_GROUP);
        assert_int_equal(ka_el(fw, 0, 2)->f[2].i, PT_PREFIXED);
        const bg_kafka_decision_t *d = reserved(&v);
        assert_non_null(d);
        assert_int_equal(d->nresources, 3);
        assert_int_equal(d->error_code, 31);
        assert_int_equal(d->resources[0].type, BG_RES_KAFKA_TOPIC);
        /* Results come back in request order. */
        bg_kafka_struct_t *m = merged(f, BG_KAFKA_API_CREATE_ACLS, ver, &v, 3);
        assert_int_equal(m->f[1].a.n, 7);
        assert_result(m, 0, 0, "up0");
        assert_result(m, 1, 31, "reserved audit topic");
        assert_result(m, 2, 31, "reserved audit topic");
        assert_result(m, 3, 31, "reserved audit topic");
        assert_result(m, 4, 0, "up1");
        assert_result(m, 5, 0, "up2");
        assert_result(m, 6, 31, ANY_TYPE);
        bg_kafka_arena_reset(&f->a);
    }
}

/* A CreateAcls v3 of acls (n of them) that busgate answers itself: the
 * answer, with one result per ACL. */
static bg_kafka_struct_t *create_acls_answered(ka_fix_t *f, const acl_t *acls, int n)
{
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_CREATE_ACLS, 3);
    bg_kafka_verdict_t v;
    bg_kafka_struct_t *req = acl_req(f, BG_KAFKA_API_CREATE_ACLS, 3, acls, n);
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    bg_kafka_struct_t *r = ka_rt(f, BG_KAFKA_API_CREATE_ACLS, 1, 3, v.response);
    assert_int_equal(r->f[1].a.n, n);
    return r;
}

/* a PREFIXED ACL whose prefix is the audit topic's whole name matches
 * it (Kafka: name.startsWith(prefix)): refused as the audit topic's. */
static void test_create_acls_prefix_is_the_audit_topic(void **st)
{
    static const acl_t acls[] = {{RT_TOPIC, "audit.log", PT_PREFIXED}};
    assert_result(create_acls_answered(*st, acls, 1), 0, 31, "reserved audit topic");
}

static void test_create_acls_whole(void **st)
{
    ka_fix_t *f = *st;
    static const acl_t acls[] = {{RT_TOPIC, "audit.log", PT_LITERAL}, {RT_TOPIC, "", PT_PREFIXED}};
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_CREATE_ACLS, 3);
    bg_kafka_verdict_t v;
    /* Every entry refused: answered locally, nothing forwarded. */
    bg_kafka_struct_t *r = create_acls_answered(f, acls, 2);
    assert_result(r, 0, 31, "reserved audit topic");
    assert_result(r, 1, 31, "reserved audit topic");
    bg_kafka_struct_t *req = acl_req(f, BG_KAFKA_API_CREATE_ACLS, 3, acls, 2);
    /* Nothing near the audit topic: forwarded untouched. */
    static const acl_t ok[] = {{RT_TOPIC, "orders", PT_LITERAL}, {RT_TOPIC, "b", PT_PREFIXED}};
    assert_int_equal(
        bg_kafka_authz_request(&f->ctx, &h, acl_req(f, BG_KAFKA_API_CREATE_ACLS, 3, ok, 2), &f->a,
                               &v),
        0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
    assert_int_equal(v.needs_response, 0);
    assert_null(reserved(&v));
    /* No audit topic configured: it is not reserved, Kafka's internal
     * topics still are (the empty prefix is one of "__consumer_offsets"). */
    f->ctx.audit_topic = NULL;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    assert_int_equal(ka_rt(f, BG_KAFKA_API_CREATE_ACLS, 0, 3, v.request)
                         ->f[K(CREATE_ACLS_REQ_CREATIONS)]
                         .a.n,
                     1);
    assert_null(reserved(&v));
    r = merged(f, BG_KAFKA_API_CREATE_ACLS, 3, &v, 1);
    assert_result(r, 0, 0, "up0");
    assert_result(r, 1, 31, "reserved Kafka internal topic");
    f->ctx.audit_topic = "audit.log";
    /* Without cluster alter: the whole request is refused, each entry with
     * Kafka's default message for the code (as its ApiError carries one),
     * CreateAcls and DeleteAcls alike. */
    ka_set_policy(f, 1u << BG_VERB_DESCRIBE);
    static const int16_t apis[] = {BG_KAFKA_API_CREATE_ACLS, BG_KAFKA_API_DELETE_ACLS};
    for (size_t k = 0; k < 2; k++) {
        bg_kafka_req_hdr_t hk = ka_hdr(apis[k], 3);
        assert_int_equal(
            bg_kafka_authz_request(&f->ctx, &hk, acl_req(f, apis[k], 3, ok, 2), &f->a, &v), 0);
        assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
        r = ka_rt(f, apis[k], 1, 3, v.response);
        assert_int_equal(r->f[1].a.n, 2);
        assert_result(r, 0, 31, "Cluster authorization failed.");
        assert_result(r, 1, 31, "Cluster authorization failed.");
    }
}

static void test_delete_acls(void **st)
{
    ka_fix_t *f = *st;
    static const acl_t filters[] = {
        {RT_TOPIC, NULL, PT_ANY},           /* 0 every topic */
        {RT_TOPIC, "orders", PT_LITERAL},   /* 1 forwarded */
        {RT_TOPIC, "orders", PT_MATCH},     /* 2 MATCH also matches the literal "*" */
        {RT_TOPIC, "orders", PT_ANY},       /* 3 forwarded: patterns named "orders" only */
        {RT_GROUP, NULL, PT_ANY},           /* 4 forwarded: groups */
        {RT_TOPIC, "audit", PT_PREFIXED},   /* 5 a prefix of the audit topic */
        {RT_ANY, "*", PT_LITERAL},          /* 6 any resource type */
        {RT_TOPIC, "audit.log", PT_ANY},    /* 7 the audit topic itself */
    };
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_DELETE_ACLS, 3);
    bg_kafka_verdict_t v;
    bg_kafka_struct_t *req = acl_req(f, BG_KAFKA_API_DELETE_ACLS, 3, filters, 8);
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    bg_kafka_struct_t *fw = ka_rt(f, BG_KAFKA_API_DELETE_ACLS, 0, 3, v.request);
    assert_int_equal(fw->f[K(DELETE_ACLS_REQ_FILTERS)].a.n, 3);
    assert_int_equal(ka_el(fw, 0, 0)->f[2].i, PT_LITERAL);
    assert_int_equal(ka_el(fw, 0, 1)->f[2].i, PT_ANY);
    assert_int_equal(ka_el(fw, 0, 2)->f[0].i, RT_GROUP);
    const bg_kafka_decision_t *d = reserved(&v);
    assert_non_null(d);
    assert_int_equal(d->nresources, 4);
    assert_int_equal(d->resources[0].name_len, 1); /* a null name is recorded as "*" */
    assert_memory_equal(d->resources[0].name, "*", 1);
    bg_kafka_struct_t *m = merged(f, BG_KAFKA_API_DELETE_ACLS, 3, &v, 3);
    assert_int_equal(m->f[1].a.n, 8);
    static const int want[] = {31, 0, 31, 0, 0, 31, 31, 31};
    static const char *msg[] = {NULL, "up0", NULL, "up1", "up2", NULL, NULL, NULL};
    for (int i = 0; i < 8; i++) {
        assert_result(m, i, want[i], msg[i] ? msg[i] : i == 6 ? ANY_TYPE : "reserved audit topic");
        if (want[i])
            assert_int_equal(ka_el(m, 1, i)->f[2].a.n, 0); /* no matching ACLs */
    }
}

/* A filter of pattern ANY matches the literal, the prefixed and the "*"
 * bindings of its name: the name "*" matches the literal "*" binding,
 * which applies to every topic, and a name a reserved topic starts with
 * matches the PREFIXED binding of that name, which covers it. Both are
 * refused with the reserved topic's reason; a name no reserved topic
 * starts with goes through. */
static void test_delete_acls_any_pattern(void **st)
{
    ka_fix_t *f = *st;
    static const acl_t filters[] = {
        {RT_TOPIC, "*", PT_ANY},          /* 0 the literal "*" binding */
        {RT_TOPIC, "audit", PT_ANY},      /* 1 PREFIXED "audit" covers audit.log */
        {RT_TOPIC, "__consumer", PT_ANY}, /* 2 PREFIXED "__consumer" covers __consumer_offsets */
        {RT_TOPIC, "orders", PT_ANY},     /* 3 forwarded */
    };
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_DELETE_ACLS, 3);
    bg_kafka_verdict_t v;
    bg_kafka_struct_t *req = acl_req(f, BG_KAFKA_API_DELETE_ACLS, 3, filters, 4);
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    bg_kafka_struct_t *fw = ka_rt(f, BG_KAFKA_API_DELETE_ACLS, 0, 3, v.request);
    assert_int_equal(fw->f[K(DELETE_ACLS_REQ_FILTERS)].a.n, 1);
    assert_true(ka_eq(ka_el(fw, 0, 0)->f[1].s, "orders"));
    bg_kafka_struct_t *m = merged(f, BG_KAFKA_API_DELETE_ACLS, 3, &v, 1);
    assert_int_equal(m->f[1].a.n, 4);
    assert_result(m, 0, 31, "reserved audit topic");
    assert_result(m, 1, 31, "reserved audit topic");
    assert_result(m, 2, 31, "reserved Kafka internal topic");
    assert_result(m, 3, 0, "up0");
}

/* The upstream reports fewer results than it was sent: the refused ones
 * still come back, after what it answered. */
static void test_delete_acls_short_answer(void **st)
{
    ka_fix_t *f = *st;
    static const acl_t filters[] = {{RT_TOPIC, "orders", PT_LITERAL},
                                    {RT_TOPIC, "orders.x", PT_LITERAL},
                                    {RT_TOPIC, "audit.log", PT_LITERAL}};
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_DELETE_ACLS, 2);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(
                         &f->ctx, &h, acl_req(f, BG_KAFKA_API_DELETE_ACLS, 2, filters, 3), &f->a,
                         &v),
                     0);
    bg_kafka_struct_t *m = merged(f, BG_KAFKA_API_DELETE_ACLS, 2, &v, 1);
    assert_int_equal(m->f[1].a.n, 2);
    assert_result(m, 0, 0, "up0");
    assert_result(m, 1, 31, "reserved audit topic");
}

/* ACLs busgate's upstream credential would grant beyond topics, groups and
 * transactional ids (the cluster, users, delegation tokens), bindings of
 * busgate's own principal, and filters that could delete busgate's own ACLs
 * are refused entry by entry, whatever the policy allows; groups and
 * transactional ids of other principals go through. */
static void test_acls_beyond_topics(void **st)
{
    ka_fix_t *f = *st;
    f->ctx.upstream_user = "busgate";
    static const acl_t creations[] = {
        {RT_CLUSTER, "kafka-cluster", PT_LITERAL}, /* 0 */
        {RT_USER, "User:busgate", PT_LITERAL},     /* 1 CREATE_TOKENS for busgate */
        {RT_TOKEN, "tok", PT_LITERAL},             /* 2 */
        {RT_GROUP, "g", PT_LITERAL},               /* 3 busgate's own principal */
        {RT_TOPIC, "orders", PT_LITERAL},          /* 4 the type without case */
        {RT_GROUP, "g", PT_LITERAL},               /* 5 forwarded */
        {RT_TXN, "t", PT_PREFIXED},                /* 6 forwarded: another user */
        {0, "x", PT_LITERAL},                      /* 7 UNKNOWN */
        {RT_GROUP, "g", PT_LITERAL},               /* 8 User:*: binds busgate too */
    };
    static const char *const cpr[] = {"User:x",       "User:x", "User:x",        "User:busgate",
                                      "user:busgate", "User:x", "User:busgate2", "User:x",
                                      "User:*"};
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_CREATE_ACLS, 3);
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h,
                                            acl_req_pr(f, BG_KAFKA_API_CREATE_ACLS, 3, creations, cpr, 9),
                                            &f->a, &v),
                     0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    bg_kafka_struct_t *fw = ka_rt(f, BG_KAFKA_API_CREATE_ACLS, 0, 3, v.request);
    assert_int_equal(fw->f[K(CREATE_ACLS_REQ_CREATIONS)].a.n, 2);
    assert_int_equal(ka_el(fw, 0, 0)->f[0].i, RT_GROUP);
    assert_int_equal(ka_el(fw, 0, 1)->f[0].i, RT_TXN);
    const bg_kafka_decision_t *d = by_reason(&v, TYPE_REASON);
    assert_non_null(d);
    assert_int_equal(d->resources[0].type, BG_RES_KAFKA_CLUSTER);
    assert_int_equal(d->error_code, 31);
    assert_non_null(d = by_reason(&v, SELF));
    assert_int_equal(d->nresources, 2); /* the cluster (the group ACL), topic orders */
    d = ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "orders");
    assert_non_null(d);
    assert_string_equal(d->reason, SELF);
    bg_kafka_struct_t *m = merged(f, BG_KAFKA_API_CREATE_ACLS, 3, &v, 2);
    assert_int_equal(m->f[1].a.n, 9);
    static const char *const cmsg[] = {TYPE_REASON, TYPE_REASON, TYPE_REASON, SELF,         SELF,
                                       "up0",       "up1",       ANY_TYPE,    ANY_PRINCIPAL};
    for (int i = 0; i < 9; i++)
        assert_result(m, i, i == 5 || i == 6 ? 0 : 31, cmsg[i]);
    bg_kafka_arena_reset(&f->a);

    static const acl_t dfilters[] = {
        {RT_GROUP, "g", PT_LITERAL},      /* 0 any principal: busgate's too */
        {RT_GROUP, "g", PT_LITERAL},      /* 1 the wildcard principal's ACLs */
        {RT_GROUP, "g", PT_LITERAL},      /* 2 busgate's */
        {RT_GROUP, "g", PT_LITERAL},      /* 3 forwarded */
        {RT_ANY, "g", PT_LITERAL},        /* 4 could be the cluster's */
        {RT_CLUSTER, NULL, PT_ANY},       /* 5 */
        {RT_TXN, NULL, PT_ANY},           /* 6 forwarded */
        {RT_TOPIC, "orders", PT_LITERAL}, /* 7 any principal on a topic */
    };
    static const char *const fpr[] = {"-",      "User:*", "User:busgate", "User:x",
                                      "User:x", "User:x", "User:y",       "-"};
    h = ka_hdr(BG_KAFKA_API_DELETE_ACLS, 2);
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h,
                                            acl_req_pr(f, BG_KAFKA_API_DELETE_ACLS, 2, dfilters, fpr, 8),
                                            &f->a, &v),
                     0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    fw = ka_rt(f, BG_KAFKA_API_DELETE_ACLS, 0, 2, v.request);
    assert_int_equal(fw->f[K(DELETE_ACLS_REQ_FILTERS)].a.n, 2);
    assert_true(ka_eq(ka_el(fw, 0, 0)->f[3].s, "User:x"));
    assert_int_equal(ka_el(fw, 0, 1)->f[0].i, RT_TXN);
    m = merged(f, BG_KAFKA_API_DELETE_ACLS, 2, &v, 2);
    static const char *const dmsg[] = {ANY_PRINCIPAL, ANY_PRINCIPAL, SELF,        "up0",
                                       ANY_TYPE,      TYPE_REASON,   "up1",       ANY_PRINCIPAL};
    for (int i = 0; i < 8; i++)
        assert_result(m, i, i == 3 || i == 6 ? 0 : 31, dmsg[i]);

    /* Without SASL upstream, busgate is User:ANONYMOUS there. */
    bg_kafka_arena_reset(&f->a);
    f->ctx.upstream_user = NULL;
    static const acl_t anon[] = {{RT_GROUP, "g", PT_LITERAL}, {RT_GROUP, "g", PT_LITERAL}};
    static const char *const apr[] = {"User:ANONYMOUS", "User:busgate"};
    h = ka_hdr(BG_KAFKA_API_CREATE_ACLS, 1);
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h,
                                            acl_req_pr(f, BG_KAFKA_API_CREATE_ACLS, 1, anon, apr, 2),
                                            &f->a, &v),
                     0);
    m = merged(f, BG_KAFKA_API_CREATE_ACLS, 1, &v, 1);
    assert_result(m, 0, 31, SELF);
    assert_result(m, 1, 0, "up0");
}

/* Topics[] of AlterPartitionReassignments / ElectLeaders: name, 2 partitions. */
static bg_kafka_struct_t *tp_req(ka_fix_t *f, int16_t key, int16_t ver, const char *const *names,
                                 int n)
{
    bg_kafka_struct_t *r = ka_new(f, key, 0);
    if (key == BG_KAFKA_API_ELECT_LEADERS) {
        bg_kafka_struct_t **t = ka_topics(f, r, K(ELECT_LEADERS_REQ_TOPIC_PARTITIONS),
                                          K(ELECT_LEADERS_REQ_TOPIC_PARTITIONS_TOPIC), names, n,
                                          -1, -1, 0);
        for (int i = 0; i < n; i++) {
            bg_kafka_val_t *p = bg_kafka_array_vals(
                &f->a, t[i], K(ELECT_LEADERS_REQ_TOPIC_PARTITIONS_PARTITIONS), 2);
            p[0].i = 0, p[1].i = 1;
        }
    } else {
        ka_topics(f, r, K(ALTER_PARTITION_REASSIGNMENTS_REQ_TOPICS),
                  K(ALTER_PARTITION_REASSIGNMENTS_REQ_TOPICS_NAME), names, n,
                  K(ALTER_PARTITION_REASSIGNMENTS_REQ_TOPICS_PARTITIONS),
                  K(ALTER_PARTITION_REASSIGNMENTS_REQ_TOPICS_PARTITIONS_PARTITION_INDEX), 2);
    }
    return ka_rt(f, key, 0, ver, r);
}

/* Refused whole for lack of `alter` on the cluster: as Kafka's
 * getErrorResponse, every requested partition with 31 beside the top-level
 * code (the Java Admin fails an answer without them as "too less results"). */
static void test_partition_admin_refused_whole(void **st)
{
    ka_fix_t *f = *st;
    static const char *const names[] = {"orders", "payments"};
    ka_set_policy(f, 1u << BG_VERB_DESCRIBE);
    for (int api = 0; api < 2; api++) {
        int16_t key = api ? BG_KAFKA_API_ELECT_LEADERS : BG_KAFKA_API_ALTER_PARTITION_REASSIGNMENTS;
        int16_t top = api ? K(ELECT_LEADERS_RESP_ERROR_CODE)
                          : K(ALTER_PARTITION_REASSIGNMENTS_RESP_ERROR_CODE);
        int16_t arr = api ? K(ELECT_LEADERS_RESP_REPLICA_ELECTION_RESULTS)
                          : K(ALTER_PARTITION_REASSIGNMENTS_RESP_RESPONSES);
        int16_t parts = api ? K(ELECT_LEADERS_RESP_REPLICA_ELECTION_RESULTS_PARTITION_RESULT)
                            : K(ALTER_PARTITION_REASSIGNMENTS_RESP_RESPONSES_PARTITIONS);
        int16_t pidx = api ? K(ELECT_LEADERS_RESP_REPLICA_ELECTION_RESULTS_PARTITION_RESULT_PARTITION_ID)
                           : K(ALTER_PARTITION_REASSIGNMENTS_RESP_RESPONSES_PARTITIONS_PARTITION_INDEX);
        int16_t perr = api ? K(ELECT_LEADERS_RESP_REPLICA_ELECTION_RESULTS_PARTITION_RESULT_ERROR_CODE)
                           : K(ALTER_PARTITION_REASSIGNMENTS_RESP_RESPONSES_PARTITIONS_ERROR_CODE);
        int16_t pmsg = api
                           ? K(ELECT_LEADERS_RESP_REPLICA_ELECTION_RESULTS_PARTITION_RESULT_ERROR_MESSAGE)
                           : K(ALTER_PARTITION_REASSIGNMENTS_RESP_RESPONSES_PARTITIONS_ERROR_MESSAGE);
        for (int16_t ver = api; ver <= api + 1; ver++) { /* busgate's versions */
            bg_kafka_req_hdr_t h = ka_hdr(key, ver);
            bg_kafka_verdict_t v;
            assert_int_equal(
                bg_kafka_authz_request(&f->ctx, &h, tp_req(f, key, ver, names, 2), &f->a, &v), 0);
            assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
            bg_kafka_struct_t *r = ka_rt(f, key, 1, ver, v.response);
            assert_int_equal(r->f[top].i, 31);
            assert_int_equal(r->f[arr].a.n, 2);
            for (int i = 0; i < 2; i++) {
                const bg_kafka_struct_t *t = ka_el(r, arr, i);
                assert_int_equal(t->f[parts].a.n, 2);
                for (int j = 0; j < 2; j++) {
                    const bg_kafka_struct_t *p = ka_el(t, parts, j);
                    assert_int_equal(p->f[pidx].i, j);
                    assert_int_equal(p->f[perr].i, 31);
                    assert_true(ka_eq(p->f[pmsg].s, "Cluster authorization failed."));
                }
            }
            bg_kafka_arena_reset(&f->a);
        }
    }
}

static void test_reassign_and_elect(void **st)
{
    ka_fix_t *f = *st;
    static const char *const both[] = {"orders", "audit.log"};
    static const char *const audit[] = {"audit.log"};
    bg_kafka_verdict_t v;

    /* AlterPartitionReassignments: the audit topic's partitions refused. */
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_ALTER_PARTITION_REASSIGNMENTS, 0);
    bg_kafka_struct_t *req = tp_req(f, BG_KAFKA_API_ALTER_PARTITION_REASSIGNMENTS, 0, both, 2);
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, req, &f->a, &v), 0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    bg_kafka_struct_t *fw = ka_rt(f, BG_KAFKA_API_ALTER_PARTITION_REASSIGNMENTS, 0, 0, v.request);
    assert_int_equal(fw->f[K(ALTER_PARTITION_REASSIGNMENTS_REQ_TOPICS)].a.n, 1);
    assert_true(ka_eq(ka_el(fw, K(ALTER_PARTITION_REASSIGNMENTS_REQ_TOPICS), 0)
                          ->f[K(ALTER_PARTITION_REASSIGNMENTS_REQ_TOPICS_NAME)].s,
                      "orders"));
    assert_non_null(reserved(&v));
    bg_kafka_struct_t *up = ka_new(f, BG_KAFKA_API_ALTER_PARTITION_REASSIGNMENTS, 1), *out;
    size_t nn = 0;
    assert_int_equal(
        bg_kafka_authz_response(&f->ctx, &h, &v, up, &f->a, &out, NULL, &nn, NULL, NULL), 0);
    out = ka_rt(f, BG_KAFKA_API_ALTER_PARTITION_REASSIGNMENTS, 1, 0, out);
    bg_kafka_struct_t *t = ka_el(out, K(ALTER_PARTITION_REASSIGNMENTS_RESP_RESPONSES), 0);
    assert_true(ka_eq(t->f[K(ALTER_PARTITION_REASSIGNMENTS_RESP_RESPONSES_NAME)].s, "audit.log"));
    for (int i = 0; i < 2; i++)
        assert_int_equal(ka_el(t, K(ALTER_PARTITION_REASSIGNMENTS_RESP_RESPONSES_PARTITIONS), i)
                             ->f[K(ALTER_PARTITION_REASSIGNMENTS_RESP_RESPONSES_PARTITIONS_ERROR_CODE)]
                             .i,
                         31);

    /* ElectLeaders naming only the audit topic: answered locally. */
    h = ka_hdr(BG_KAFKA_API_ELECT_LEADERS, 2);
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h,
                                            tp_req(f, BG_KAFKA_API_ELECT_LEADERS, 2, audit, 1),
                                            &f->a, &v),
                     0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    out = ka_rt(f, BG_KAFKA_API_ELECT_LEADERS, 1, 2, v.response);
    t = ka_el(out, K(ELECT_LEADERS_RESP_REPLICA_ELECTION_RESULTS), 0);
    assert_int_equal(t->f[K(ELECT_LEADERS_RESP_REPLICA_ELECTION_RESULTS_PARTITION_RESULT)].a.n, 2);
    assert_int_equal(
        ka_el(t, K(ELECT_LEADERS_RESP_REPLICA_ELECTION_RESULTS_PARTITION_RESULT), 1)
            ->f[K(ELECT_LEADERS_RESP_REPLICA_ELECTION_RESULTS_PARTITION_RESULT_ERROR_CODE)]
            .i,
        31);
    /* ElectLeaders of every partition (null topics) includes it: refused whole. */
    req = ka_new(f, BG_KAFKA_API_ELECT_LEADERS, 0);
    req->f[K(ELECT_LEADERS_REQ_TOPIC_PARTITIONS)].a.n = -1;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h,
                                            ka_rt(f, BG_KAFKA_API_ELECT_LEADERS, 0, 2, req),
                                            &f->a, &v),
                     0);
    assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
    assert_int_equal(
        ka_rt(f, BG_KAFKA_API_ELECT_LEADERS, 1, 2, v.response)->f[K(ELECT_LEADERS_RESP_ERROR_CODE)].i,
        31);
    /* Other topics: forwarded untouched. */
    static const char *const orders[] = {"orders"};
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h,
                                            tp_req(f, BG_KAFKA_API_ELECT_LEADERS, 2, orders, 1),
                                            &f->a, &v),
                     0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
}

static void test_alter_replica_log_dirs(void **st)
{
    ka_fix_t *f = *st;
    static const char *const d1[] = {"orders", "audit.log"};
    static const char *const d2[] = {"audit.log"};
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_ALTER_REPLICA_LOG_DIRS, 2);
    bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_ALTER_REPLICA_LOG_DIRS, 0);
    bg_kafka_struct_t **dirs =
        bg_kafka_array_new(&f->a, req, K(ALTER_REPLICA_LOG_DIRS_REQ_DIRS), 2);
    for (int i = 0; i < 2; i++) {
        dirs[i]->f[K(ALTER_REPLICA_LOG_DIRS_REQ_DIRS_PATH)].s = ka_s(i ? "/d2" : "/d1");
        bg_kafka_struct_t **t = ka_topics(f, dirs[i], K(ALTER_REPLICA_LOG_DIRS_REQ_DIRS_TOPICS),
                                          K(ALTER_REPLICA_LOG_DIRS_REQ_DIRS_TOPICS_NAME),
                                          i ? d2 : d1, i ? 1 : 2, -1, -1, 0);
        for (int j = 0; j < (i ? 1 : 2); j++)
            bg_kafka_array_vals(&f->a, t[j], K(ALTER_REPLICA_LOG_DIRS_REQ_DIRS_TOPICS_PARTITIONS),
                                1)[0]
                .i = i;
    }
    bg_kafka_verdict_t v;
    assert_int_equal(bg_kafka_authz_request(&f->ctx, &h,
                                            ka_rt(f, BG_KAFKA_API_ALTER_REPLICA_LOG_DIRS, 0, 2, req),
                                            &f->a, &v),
                     0);
    assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    bg_kafka_struct_t *fw = ka_rt(f, BG_KAFKA_API_ALTER_REPLICA_LOG_DIRS, 0, 2, v.request);
    assert_int_equal(fw->f[K(ALTER_REPLICA_LOG_DIRS_REQ_DIRS)].a.n, 1); /* /d2 left empty */
    bg_kafka_struct_t *d = ka_el(fw, K(ALTER_REPLICA_LOG_DIRS_REQ_DIRS), 0);
    assert_int_equal(d->f[K(ALTER_REPLICA_LOG_DIRS_REQ_DIRS_TOPICS)].a.n, 1);
    assert_true(ka_eq(ka_el(d, K(ALTER_REPLICA_LOG_DIRS_REQ_DIRS_TOPICS), 0)
                          ->f[K(ALTER_REPLICA_LOG_DIRS_REQ_DIRS_TOPICS_NAME)].s,
                      "orders"));
    assert_int_equal(reserved(&v)->nresources, 2);
    bg_kafka_struct_t *up = ka_new(f, BG_KAFKA_API_ALTER_REPLICA_LOG_DIRS, 1), *out;
    size_t nn = 0;
    assert_int_equal(
        bg_kafka_authz_response(&f->ctx, &h, &v, up, &f->a, &out, NULL, &nn, NULL, NULL), 0);
    out = ka_rt(f, BG_KAFKA_API_ALTER_REPLICA_LOG_DIRS, 1, 2, out);
    assert_int_equal(out->f[K(ALTER_REPLICA_LOG_DIRS_RESP_RESULTS)].a.n, 2);
    bg_kafka_struct_t *t = ka_el(out, K(ALTER_REPLICA_LOG_DIRS_RESP_RESULTS), 1);
    assert_true(ka_eq(t->f[K(ALTER_REPLICA_LOG_DIRS_RESP_RESULTS_TOPIC_NAME)].s, "audit.log"));
    bg_kafka_struct_t *p = ka_el(t, K(ALTER_REPLICA_LOG_DIRS_RESP_RESULTS_PARTITIONS), 0);
    assert_int_equal(p->f[K(ALTER_REPLICA_LOG_DIRS_RESP_RESULTS_PARTITIONS_PARTITION_INDEX)].i, 1);
    assert_int_equal(p->f[K(ALTER_REPLICA_LOG_DIRS_RESP_RESULTS_PARTITIONS_ERROR_CODE)].i, 31);
}

/* WriteTxnMarkers (kafka-transactions.sh abort): forwarded with alter on the
 * cluster; a marker for the audit topic refuses the whole request with an
 * error for every partition of every marker; without alter, the same
 * CLUSTER_AUTHORIZATION_FAILED. */
static bg_kafka_struct_t *markers_req_result(ka_fix_t *f, int16_t ver, const char *t1,
                                             const char *t2, int commit)
{
    bg_kafka_struct_t *r = ka_new(f, BG_KAFKA_API_WRITE_TXN_MARKERS, 0);
    bg_kafka_struct_t **m = bg_kafka_array_new(&f->a, r, K(WRITE_TXN_MARKERS_REQ_MARKERS), 2);
    assert_non_null(m);
    const char *names[2] = {t1, t2};
    for (int i = 0; i < 2; i++) {
        m[i]->f[K(WRITE_TXN_MARKERS_REQ_MARKERS_PRODUCER_ID)].i = 1000 + i;
        m[i]->f[K(WRITE_TXN_MARKERS_REQ_MARKERS_TRANSACTION_RESULT)].i = commit && i == 1;
        bg_kafka_struct_t **t =
            bg_kafka_array_new(&f->a, m[i], K(WRITE_TXN_MARKERS_REQ_MARKERS_TOPICS), 1);
        assert_non_null(t);
        t[0]->f[K(WRITE_TXN_MARKERS_REQ_MARKERS_TOPICS_NAME)].s = ka_s(names[i]);
        bg_kafka_val_t *p = bg_kafka_array_vals(
            &f->a, t[0], K(WRITE_TXN_MARKERS_REQ_MARKERS_TOPICS_PARTITION_INDEXES), 2);
        assert_non_null(p);
        p[0].i = 0;
        p[1].i = 3;
    }
    return ka_rt(f, BG_KAFKA_API_WRITE_TXN_MARKERS, 0, ver, r);
}

static bg_kafka_struct_t *markers_req(ka_fix_t *f, int16_t ver, const char *t1, const char *t2)
{
    return markers_req_result(f, ver, t1, t2, 0);
}

static void assert_markers_refused(ka_fix_t *f, int16_t ver, const bg_kafka_verdict_t *v)
{
    assert_int_equal(v->action, BG_KAFKA_ACT_RESPOND);
    bg_kafka_struct_t *r = ka_rt(f, BG_KAFKA_API_WRITE_TXN_MARKERS, 1, ver, v->response);
    assert_int_equal(r->f[K(WRITE_TXN_MARKERS_RESP_MARKERS)].a.n, 2);
    for (int i = 0; i < 2; i++) {
        const bg_kafka_struct_t *m = ka_el(r, K(WRITE_TXN_MARKERS_RESP_MARKERS), i);
        assert_int_equal(m->f[K(WRITE_TXN_MARKERS_RESP_MARKERS_PRODUCER_ID)].i, 1000 + i);
        const bg_kafka_struct_t *t = ka_el(m, K(WRITE_TXN_MARKERS_RESP_MARKERS_TOPICS), 0);
        assert_int_equal(t->f[K(WRITE_TXN_MARKERS_RESP_MARKERS_TOPICS_PARTITIONS)].a.n, 2);
        const bg_kafka_struct_t *p =
            ka_el(t, K(WRITE_TXN_MARKERS_RESP_MARKERS_TOPICS_PARTITIONS), 1);
        assert_int_equal(
            p->f[K(WRITE_TXN_MARKERS_RESP_MARKERS_TOPICS_PARTITIONS_PARTITION_INDEX)].i, 3);
        assert_int_equal(p->f[K(WRITE_TXN_MARKERS_RESP_MARKERS_TOPICS_PARTITIONS_ERROR_CODE)].i,
                         31);
    }
}

static void test_write_txn_markers(void **st)
{
    ka_fix_t *f = *st;
    int16_t lo, hi;
    assert_int_equal(bg_kafka_authz_supported(BG_KAFKA_API_WRITE_TXN_MARKERS, &lo, &hi), 1);
    assert_int_equal(lo, 1);
    assert_int_equal(hi, 2);
    for (int16_t ver = 1; ver <= 2; ver++) {
        bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_WRITE_TXN_MARKERS, ver);
        bg_kafka_verdict_t v;
        assert_int_equal(
            bg_kafka_authz_request(&f->ctx, &h, markers_req(f, ver, "orders", "held"), &f->a, &v),
            0);
        assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD);
        assert_int_equal(v.ndecisions, 1);
        assert_int_equal(v.decisions[0].verb, BG_VERB_ALTER);
        assert_int_equal(v.decisions[0].resources[0].type, BG_RES_KAFKA_CLUSTER);
        /* A marker for the audit topic: refused whole, recorded as a write on it. */
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h,
                                                markers_req(f, ver, "orders", "audit.log"), &f->a,
                                                &v),
                         0);
        assert_markers_refused(f, ver, &v);
        const bg_kafka_decision_t *d = reserved(&v);
        assert_non_null(d);
        assert_int_equal(d->verb, BG_VERB_WRITE);
        /* A commit marker (true) is refused: only aborts, stricter than Kafka. */
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h,
                                                markers_req_result(f, ver, "orders", "orders", 1),
                                                &f->a, &v),
                         0);
        assert_markers_refused(f, ver, &v);
        int found = 0;
        for (size_t i = 0; i < v.ndecisions; i++)
            found |= v.decisions[i].reason && strstr(v.decisions[i].reason, "commit markers");
        assert_true(found);
    }
    /* Without alter on the cluster. */
    ka_set_policy(f, 1u << BG_VERB_DESCRIBE);
    bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_WRITE_TXN_MARKERS, 2);
    bg_kafka_verdict_t v;
    assert_int_equal(
        bg_kafka_authz_request(&f->ctx, &h, markers_req(f, 2, "orders", "orders"), &f->a, &v), 0);
    assert_markers_refused(f, 2, &v);
    assert_int_equal(v.decisions[0].decision.effect, BG_EFFECT_DENY);
}

/* The decision group busgate recorded for Kafka's internal topics. */
static const bg_kafka_decision_t *internal(const bg_kafka_verdict_t *v)
{
    for (size_t i = 0; i < v->ndecisions; i++)
        if (v->decisions[i].reason &&
            strcmp(v->decisions[i].reason, "reserved Kafka internal topic") == 0)
            return &v->decisions[i];
    return NULL;
}

/* Kafka's internal topics are reserved in these requests as the audit topic
 * is, also with no audit topic configured: ACLs that could apply to them,
 * reassigning or electing their partitions, moving their logs, and markers
 * written to them (an abort marker on __consumer_offsets would drop a
 * group's pending transactional offsets). */
static void test_internal_topics_in_admin_requests(void **st)
{
    ka_fix_t *f = *st;
    for (int with_audit = 1; with_audit >= 0; with_audit--) {
        f->ctx.audit_topic = with_audit ? "audit.log" : NULL;
        bg_kafka_verdict_t v;
        /* CreateAcls / DeleteAcls. */
        static const acl_t acls[] = {
            {RT_TOPIC, "orders", PT_LITERAL},             /* 0 forwarded */
            {RT_TOPIC, "__consumer_offsets", PT_LITERAL}, /* 1 */
            {RT_TOPIC, "__", PT_PREFIXED},                /* 2 a prefix of them all */
            {RT_TOPIC, "__transaction_state", PT_ANY},    /* 3 */
            {RT_TOPIC, "__consumer", PT_LITERAL},         /* 4 forwarded: no such topic */
        };
        for (int api = 0; api < 2; api++) {
            int16_t key = api ? BG_KAFKA_API_DELETE_ACLS : BG_KAFKA_API_CREATE_ACLS;
            bg_kafka_req_hdr_t h = ka_hdr(key, 3);
            assert_int_equal(
                bg_kafka_authz_request(&f->ctx, &h, acl_req(f, key, 3, acls, 5), &f->a, &v), 0);
            assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
            assert_int_equal(internal(&v)->nresources, 3);
            assert_null(reserved(&v));
            bg_kafka_struct_t *m = merged(f, key, 3, &v, 2);
            static const int want[] = {0, 31, 31, 31, 0};
            static const char *msg[] = {"up0", NULL, NULL, NULL, "up1"};
            for (int i = 0; i < 5; i++)
                assert_result(m, i, want[i], msg[i] ? msg[i] : "reserved Kafka internal topic");
        }
        /* AlterPartitionReassignments: __consumer_offsets's partitions refused. */
        static const char *const both[] = {"orders", "__consumer_offsets"};
        bg_kafka_req_hdr_t h = ka_hdr(BG_KAFKA_API_ALTER_PARTITION_REASSIGNMENTS, 0);
        bg_kafka_struct_t *re = tp_req(f, BG_KAFKA_API_ALTER_PARTITION_REASSIGNMENTS, 0, both, 2);
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, re, &f->a, &v), 0);
        assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
        assert_int_equal(v.request->f[K(ALTER_PARTITION_REASSIGNMENTS_REQ_TOPICS)].a.n, 1);
        assert_int_equal(internal(&v)->error_code, 31);
        /* ElectLeaders naming __transaction_state: answered here. */
        static const char *const txn[] = {"__transaction_state"};
        h = ka_hdr(BG_KAFKA_API_ELECT_LEADERS, 2);
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h,
                                                tp_req(f, BG_KAFKA_API_ELECT_LEADERS, 2, txn, 1),
                                                &f->a, &v),
                         0);
        assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
        assert_non_null(internal(&v));
        /* ElectLeaders of every partition: refused whole, a deny recorded
         * for each reserved topic it includes. */
        bg_kafka_struct_t *req = ka_new(f, BG_KAFKA_API_ELECT_LEADERS, 0);
        req->f[K(ELECT_LEADERS_REQ_TOPIC_PARTITIONS)].a.n = -1;
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h,
                                                ka_rt(f, BG_KAFKA_API_ELECT_LEADERS, 0, 2, req),
                                                &f->a, &v),
                         0);
        assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
        assert_int_equal(internal(&v)->nresources, 5);
        assert_non_null(ka_find_decision(&v, BG_RES_KAFKA_TOPIC, "__share_group_state"));
        if (with_audit)
            assert_int_equal(reserved(&v)->nresources, 1);
        else
            assert_null(reserved(&v));
        /* WriteTxnMarkers for __consumer_offsets: refused whole, a write on it. */
        h = ka_hdr(BG_KAFKA_API_WRITE_TXN_MARKERS, 1);
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h,
                                                markers_req(f, 1, "orders", "__consumer_offsets"),
                                                &f->a, &v),
                         0);
        assert_markers_refused(f, 1, &v);
        assert_int_equal(internal(&v)->verb, BG_VERB_WRITE);
        /* AlterReplicaLogDirs moving a __cluster_metadata log: refused. */
        bg_kafka_struct_t *ld = ka_new(f, BG_KAFKA_API_ALTER_REPLICA_LOG_DIRS, 0);
        bg_kafka_struct_t **dirs =
            bg_kafka_array_new(&f->a, ld, K(ALTER_REPLICA_LOG_DIRS_REQ_DIRS), 1);
        dirs[0]->f[K(ALTER_REPLICA_LOG_DIRS_REQ_DIRS_PATH)].s = ka_s("/d1");
        static const char *const meta[] = {"__cluster_metadata"};
        bg_kafka_struct_t **t = ka_topics(f, dirs[0], K(ALTER_REPLICA_LOG_DIRS_REQ_DIRS_TOPICS),
                                          K(ALTER_REPLICA_LOG_DIRS_REQ_DIRS_TOPICS_NAME), meta, 1,
                                          -1, -1, 0);
        bg_kafka_array_vals(&f->a, t[0], K(ALTER_REPLICA_LOG_DIRS_REQ_DIRS_TOPICS_PARTITIONS), 1)[0]
            .i = 0;
        h = ka_hdr(BG_KAFKA_API_ALTER_REPLICA_LOG_DIRS, 2);
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h,
                                                ka_rt(f, BG_KAFKA_API_ALTER_REPLICA_LOG_DIRS, 0, 2,
                                                      ld),
                                                &f->a, &v),
                         0);
        assert_int_equal(v.action, BG_KAFKA_ACT_RESPOND);
        assert_non_null(internal(&v));
        bg_kafka_arena_reset(&f->a);
    }
    f->ctx.audit_topic = "audit.log";
}

/* A broker's host-bearing configurations are never changed through
 * busgate. IncrementalAlterConfigs is refused per broker that sets one
 * (broker 2, setting log.retention.ms, is forwarded); legacy AlterConfigs
 * of a broker is refused whatever it names, because the broker deletes
 * every dynamic configuration the request leaves out (an empty list wipes
 * its listeners). A topic beside them is forwarded with either API. */
static void test_broker_addresses_not_altered(void **st)
{
#define Q(x) K(ALTER_CONFIGS_REQ_RESOURCES_##x)
    ka_fix_t *f = *st;
    static const char *const cfg[] = {"listeners", "log.retention.ms",
                                      "listener.name.external.ssl.keystore.location",
                                      "retention.ms"};
    static const char *const ids[] = {"1", "2", "3", "orders-t1"};
    for (int api = 0; api < 2; api++) {
        int16_t key = api ? BG_KAFKA_API_INCREMENTAL_ALTER_CONFIGS : BG_KAFKA_API_ALTER_CONFIGS;
        int16_t ver = api ? 1 : 2;
        const char *why = api ? "listeners or addresses" : "use IncrementalAlterConfigs";
        bg_kafka_req_hdr_t h = ka_hdr(key, ver);
        bg_kafka_struct_t *req = ka_new(f, key, 0);
        bg_kafka_struct_t **rs = bg_kafka_array_new(&f->a, req, K(ALTER_CONFIGS_REQ_RESOURCES), 4);
        for (int i = 0; i < 4; i++) {
            rs[i]->f[Q(RESOURCE_TYPE)].i = i < 3 ? 4 : 2; /* BROKER, TOPIC */
            rs[i]->f[Q(RESOURCE_NAME)].s = ka_s(ids[i]);
            /* legacy broker 3 names nothing: it would delete everything */
            int n = api == 0 && i == 2 ? 0 : 1;
            bg_kafka_struct_t **c = bg_kafka_array_new(&f->a, rs[i], Q(CONFIGS), n);
            if (n) {
                c[0]->f[Q(CONFIGS_NAME)].s = ka_s(cfg[i]);
                c[0]->f[Q(CONFIGS_VALUE)].s = ka_s("PLAINTEXT://0.0.0.0:9999");
            }
        }
        bg_kafka_verdict_t v;
        assert_int_equal(bg_kafka_authz_request(&f->ctx, &h, ka_rt(f, key, 0, ver, req), &f->a, &v),
                         0);
        assert_int_equal(v.action, BG_KAFKA_ACT_FORWARD_REWRITTEN);
        int32_t fwd = v.request->f[K(ALTER_CONFIGS_REQ_RESOURCES)].a.n;
        assert_int_equal(fwd, api ? 2 : 1);
        for (int32_t i = 0; i < fwd; i++)
            assert_true(ka_eq(
                ka_el(v.request, K(ALTER_CONFIGS_REQ_RESOURCES), i)->f[Q(RESOURCE_NAME)].s,
                api && i == 0 ? "2" : "orders-t1"));
        int refused = 0;
        for (size_t i = 0; i < v.ndecisions; i++)
            refused += v.decisions[i].error_code == 31 && v.decisions[i].reason &&
                       strstr(v.decisions[i].reason, why) != NULL;
        assert_true(refused >= 1); /* one decision group for the brokers */
        /* The answer merges the refusals back beside the forwarded results. */
        bg_kafka_struct_t *up = ka_new(f, key, 1), *out;
        bg_kafka_struct_t **e = bg_kafka_array_new(&f->a, up, K(ALTER_CONFIGS_RESP_RESPONSES), fwd);
        for (int32_t i = 0; i < fwd; i++) {
            int topic = !(api && i == 0);
            e[i]->f[K(ALTER_CONFIGS_RESP_RESPONSES_RESOURCE_TYPE)].i = topic ? 2 : 4;
            e[i]->f[K(ALTER_CONFIGS_RESP_RESPONSES_RESOURCE_NAME)].s = ka_s(topic ? "orders-t1" : "2");
        }
        size_t nn = 0;
        assert_int_equal(bg_kafka_authz_response(&f->ctx, &h, &v, ka_rt(f, key, 1, ver, up), &f->a,
                                                 &out, NULL, &nn, NULL, NULL),
                         0);
        out = ka_rt(f, key, 1, ver, out);
        assert_int_equal(out->f[K(ALTER_CONFIGS_RESP_RESPONSES)].a.n, 4);
        for (int i = 0; i < 4; i++) {
            bg_kafka_struct_t *r = ka_el(out, K(ALTER_CONFIGS_RESP_RESPONSES), i);
            bg_slice_t name = r->f[K(ALTER_CONFIGS_RESP_RESPONSES_RESOURCE_NAME)].s;
            int ok = ka_eq(name, "orders-t1") || (api && ka_eq(name, "2"));
            assert_int_equal(r->f[K(ALTER_CONFIGS_RESP_RESPONSES_ERROR_CODE)].i, ok ? 0 : 31);
        }
    }
#undef Q
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_acls, setup, ka_down),
        cmocka_unit_test_setup_teardown(test_create_acls_prefix_is_the_audit_topic, setup, ka_down),
        cmocka_unit_test_setup_teardown(test_create_acls_whole, setup, ka_down),
        cmocka_unit_test_setup_teardown(test_delete_acls, setup, ka_down),
        cmocka_unit_test_setup_teardown(test_delete_acls_any_pattern, setup, ka_down),
        cmocka_unit_test_setup_teardown(test_delete_acls_short_answer, setup, ka_down),
        cmocka_unit_test_setup_teardown(test_acls_beyond_topics, setup, ka_down),
        cmocka_unit_test_setup_teardown(test_partition_admin_refused_whole, setup, ka_down),
        cmocka_unit_test_setup_teardown(test_reassign_and_elect, setup, ka_down),
        cmocka_unit_test_setup_teardown(test_alter_replica_log_dirs, setup, ka_down),
        cmocka_unit_test_setup_teardown(test_write_txn_markers, setup, ka_down),
        cmocka_unit_test_setup_teardown(test_broker_addresses_not_altered, setup, ka_down),
        cmocka_unit_test_setup_teardown(test_internal_topics_in_admin_requests, setup, ka_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
