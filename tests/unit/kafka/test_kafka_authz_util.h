/* Shared fixture of the Kafka authorization tests: a small compiled policy,
 * a prepared principal, a topic-id table, and tree helpers (build, encode +
 * decode round trips). */
#ifndef TEST_KAFKA_AUTHZ_UTIL_H
#define TEST_KAFKA_AUTHZ_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "adapters/kafka/kafka_authz.h"

#define K(x) BG_KAFKA_##x

typedef struct {
    bg_policy_t *pol;
    bg_policy_principal_t pr;
    bg_kafka_authz_ctx_t ctx;
    bg_kafka_arena_t a;
} ka_fix_t;

/* Topic ids the "session" knows: id byte 0 = 1 -> "orders", 2 -> "secret",
 * 3 -> "dropbox", 4 -> "public". */
static int ka_topic_name(void *arg, const uint8_t id[16], bg_slice_t *name)
{
    (void)arg;
    if (id[0] == 1) {
        *name = bg_kafka_cstr("orders");
        return 1;
    }
    if (id[0] == 2) {
        *name = bg_kafka_cstr("secret");
        return 1;
    }
    if (id[0] == 3) {
        *name = bg_kafka_cstr("dropbox");
        return 1;
    }
    if (id[0] == 4) {
        *name = bg_kafka_cstr("public");
        return 1;
    }
    return 0;
}

/* Policy (default deny):
 *   orders*        : all verbs          (rule allow-orders)
 *   public         : read, describe     (rule public-read)
 *   held           : write -> hold      (rule hold-held)
 *   audit.log      : all verbs allowed  (the reservation must still win)
 *   group g1, g-*  : read, describe, delete
 *   txn tx1        : write, describe
 *   cluster        : describe
 *   dropbox        : delete, create (not describe)
 * and the mask pii on orders.pii (field email), except group:fraud. */
static ka_fix_t *ka_setup(void)
{
    static const char *all[] = {"*"};
    static const char *r_orders[] = {"kafka:topic:orders*"};
    static const char *r_public[] = {"kafka:topic:public"};
    static const char *r_held[] = {"kafka:topic:held"};
    static const char *r_audit[] = {"kafka:topic:audit.log"};
    static const char *r_groups[] = {"kafka:group:g1", "kafka:group:g-*"};
    static const char *r_txn[] = {"kafka:transactional-id:tx1"};
    static const char *r_cluster[] = {"kafka:cluster"};
    static const char *r_dropbox[] = {"kafka:topic:dropbox"};
    static const char *appr[] = {"group:sre"};
    static const char *r_pii[] = {"kafka:topic:orders.pii"};
    static const char *f_pii[] = {"email"};
    static const char *x_pii[] = {"group:fraud"};
    unsigned allv = (1u << BG_VERB__COUNT) - 1;
    bg_policy_rule_spec_t rules[] = {
        {"allow-orders", "t.yaml", 1, all, 1, r_orders, 1, allv, BG_EFFECT_ALLOW, NULL, 0,
         BG_MODE_INHERIT},
        {"public-read", "t.yaml", 2, all, 1, r_public, 1,
         1u << BG_VERB_READ | 1u << BG_VERB_DESCRIBE, BG_EFFECT_ALLOW, NULL, 0, BG_MODE_INHERIT},
        {"hold-held", "t.yaml", 3, all, 1, r_held, 1, 1u << BG_VERB_WRITE, BG_EFFECT_HOLD, appr,
         1, BG_MODE_INHERIT},
        {"audit-all", "t.yaml", 4, all, 1, r_audit, 1, allv, BG_EFFECT_ALLOW, NULL, 0,
         BG_MODE_INHERIT},
        {"groups", "t.yaml", 5, all, 1, r_groups, 2,
         1u << BG_VERB_READ | 1u << BG_VERB_DESCRIBE | 1u << BG_VERB_DELETE, BG_EFFECT_ALLOW,
         NULL, 0, BG_MODE_INHERIT},
        {"txn", "t.yaml", 6, all, 1, r_txn, 1, 1u << BG_VERB_WRITE | 1u << BG_VERB_DESCRIBE,
         BG_EFFECT_ALLOW, NULL, 0, BG_MODE_INHERIT},
        {"cluster", "t.yaml", 7, all, 1, r_cluster, 1, 1u << BG_VERB_DESCRIBE, BG_EFFECT_ALLOW,
         NULL, 0, BG_MODE_INHERIT},
        {"dropbox", "t.yaml", 9, all, 1, r_dropbox, 1, 1u << BG_VERB_DELETE | 1u << BG_VERB_CREATE,
         BG_EFFECT_ALLOW, NULL, 0, BG_MODE_INHERIT},
    };
    bg_policy_mask_spec_t masks[] = {{"pii", "t.yaml", 8, r_pii, 1, BG_MASK_FORMAT_JSON, f_pii, 1,
                                      BG_MASK_REDACT, x_pii, 1}};
    bg_policy_spec_t spec = {BG_EFFECT_DENY, BG_MODE_ENFORCE, rules,
                             sizeof rules / sizeof rules[0], masks, 1};
    char err[256];
    ka_fix_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->pol = bg_policy_compile(&spec, err, sizeof err);
    if (!f->pol)
        fail_msg("policy: %s", err);
    assert_int_equal(bg_policy_principal_prepare(f->pol, "alice", NULL, 0, &f->pr), 0);
    f->ctx.policy = f->pol;
    f->ctx.principal = &f->pr;
    f->ctx.audit_topic = "audit.log";
    f->ctx.topic_name = ka_topic_name;
    f->ctx.advertised_host = "gw.example";
    f->ctx.port_base = 19000;
    bg_kafka_arena_init(&f->a, 0);
    return f;
}

/* Replaces the fixture's policy by the one spec compiles to; the
 * principal is prepared again. */
static inline void ka_install_policy(ka_fix_t *f, const bg_policy_spec_t *spec)
{
    char err[256];
    bg_policy_principal_clear(&f->pr);
    bg_policy_free(f->pol);
    f->pol = bg_policy_compile(spec, err, sizeof err);
    if (!f->pol)
        fail_msg("policy: %s", err);
    assert_int_equal(bg_policy_principal_prepare(f->pol, "alice", NULL, 0, &f->pr), 0);
    f->ctx.policy = f->pol;
}

/* Replaces the fixture's policy by: orders* all verbs, groups g1 / g-*
 * read+describe, and the cluster with cluster_verbs (a verb bit mask; 0 =
 * no cluster rule). Default deny; the principal is prepared again. */
static inline void ka_set_policy(ka_fix_t *f, unsigned cluster_verbs)
{
    static const char *all[] = {"*"};
    static const char *r_orders[] = {"kafka:topic:orders*"};
    static const char *r_groups[] = {"kafka:group:g1", "kafka:group:g-*"};
    static const char *r_cluster[] = {"kafka:cluster"};
    bg_policy_rule_spec_t rules[] = {
        {"allow-orders", "t.yaml", 1, all, 1, r_orders, 1, (1u << BG_VERB__COUNT) - 1,
         BG_EFFECT_ALLOW, NULL, 0, BG_MODE_INHERIT},
        {"groups", "t.yaml", 2, all, 1, r_groups, 2, 1u << BG_VERB_READ | 1u << BG_VERB_DESCRIBE,
         BG_EFFECT_ALLOW, NULL, 0, BG_MODE_INHERIT},
        {"cluster", "t.yaml", 3, all, 1, r_cluster, 1, cluster_verbs, BG_EFFECT_ALLOW, NULL, 0,
         BG_MODE_INHERIT},
    };
    bg_policy_spec_t spec = {BG_EFFECT_DENY, BG_MODE_ENFORCE, rules, cluster_verbs ? 3 : 2, NULL,
                             0};
    ka_install_policy(f, &spec);
}

/* The decision of a verdict about the resource (type, name), or NULL. */
static inline const bg_kafka_decision_t *ka_find_decision(const bg_kafka_verdict_t *v,
                                                          bg_res_type_t type, const char *name)
{
    for (size_t i = 0; i < v->ndecisions; i++)
        for (size_t j = 0; j < v->decisions[i].nresources; j++) {
            const bg_policy_resource_t *r = &v->decisions[i].resources[j];
            if (r->type == type && r->name_len == strlen(name) &&
                memcmp(r->name, name, r->name_len) == 0)
                return &v->decisions[i];
        }
    return NULL;
}

static void ka_teardown(ka_fix_t *f)
{
    bg_kafka_arena_free(&f->a);
    bg_policy_principal_clear(&f->pr);
    bg_policy_free(f->pol);
    free(f);
}

/* cmocka setup/teardown with the fixture above. */
static inline int ka_up(void **st)
{
    *st = ka_setup();
    return 0;
}
static inline int ka_down(void **st)
{
    ka_teardown(*st);
    return 0;
}

static inline bg_kafka_req_hdr_t ka_hdr(int16_t key, int16_t ver)
{
    bg_kafka_req_hdr_t h;
    memset(&h, 0, sizeof h);
    h.api_key = key;
    h.api_version = ver;
    h.correlation_id = 7;
    h.hdr_version = (uint8_t)bg_kafka_req_hdr_version(key, ver);
    return h;
}

static inline bg_kafka_struct_t *ka_new(ka_fix_t *f, int16_t key, int resp)
{
    bg_kafka_struct_t *s = bg_kafka_struct_new(&f->a, bg_kafka_msg_desc(key, resp)->body);
    assert_non_null(s);
    return s;
}

/* Encodes s at ver and decodes it back (the tree must be a valid message). */
static bg_kafka_struct_t *ka_rt(ka_fix_t *f, int16_t key, int resp, int16_t ver,
                                const bg_kafka_struct_t *s)
{
    const bg_kafka_msg_desc_t *d = bg_kafka_msg_desc(key, resp);
    bg_wr_t wr;
    const char *why = NULL;
    bg_wr_init(&wr, 256, 0);
    int rc = bg_kafka_encode(d, ver, s, &wr, &why);
    if (rc != BG_KAFKA_OK)
        fail_msg("encode %s v%d: %s", d->name, ver, why ? why : "?");
    /* The decoded tree borrows the bytes: keep them in the arena. */
    uint8_t *copy = bg_kafka_arena_alloc(&f->a, wr.len + 1);
    assert_non_null(copy);
    memcpy(copy, wr.buf, wr.len);
    bg_rd_t rd;
    bg_rd_init(&rd, copy, wr.len);
    bg_kafka_struct_t *out = NULL;
    rc = bg_kafka_decode(d, ver, &rd, &f->a, &out);
    if (rc != BG_KAFKA_OK)
        fail_msg("decode %s v%d: %s", d->name, ver, rd.why ? rd.why : "?");
    assert_int_equal(bg_rd_left(&rd), 0);
    bg_wr_free(&wr);
    return out;
}

static inline bg_slice_t ka_s(const char *s) { return bg_kafka_cstr(s); }

static inline int ka_eq(bg_slice_t s, const char *c)
{
    return s.len == (int32_t)strlen(c) && memcmp(s.p, c, (size_t)s.len) == 0;
}

/* Adds `ntopics` topics (names[]) with `nparts` partitions each to array idx
 * of s; partition struct field pidx = partition number. Returns the topics. */
static inline bg_kafka_struct_t **ka_topics(ka_fix_t *f, bg_kafka_struct_t *s, int idx, int name_idx,
                                     const char *const *names, int ntopics, int parts_idx,
                                     int pidx, int nparts)
{
    bg_kafka_struct_t **t = bg_kafka_array_new(&f->a, s, idx, ntopics);
    assert_non_null(t);
    for (int i = 0; i < ntopics; i++) {
        if (name_idx >= 0)
            t[i]->f[name_idx].s = ka_s(names[i]);
        if (parts_idx < 0)
            continue;
        bg_kafka_struct_t **p = bg_kafka_array_new(&f->a, t[i], parts_idx, nparts);
        assert_non_null(p);
        for (int j = 0; j < nparts; j++)
            p[j]->f[pidx].i = j;
    }
    return t;
}

static inline bg_kafka_struct_t *ka_el(const bg_kafka_struct_t *s, int idx, int i)
{
    assert_true(i < s->f[idx].a.n);
    return s->f[idx].a.s[i];
}

#endif
