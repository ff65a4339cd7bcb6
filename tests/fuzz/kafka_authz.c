/* Fuzz target: arbitrary request bodies through bg_kafka_authz_request, then
 * the upstream response path.
 *
 * Input: api_key (int16 BE), api_version (int16 BE), then a request body of
 * that api/version; whatever follows the body is decoded as the upstream
 * response body and fed to bg_kafka_authz_response when the verdict asks
 * for it. Every tree the authorizer produces (rewritten request, local
 * response, merged response, whole-request error response) is encoded. The
 * policy is fixed: a mix of allowed, denied and held topics, groups and
 * transactional ids, cluster alter without cluster describe (so ACL and
 * partition-admin entries and the ListGroups filter are reached), plus a
 * reserved audit topic and a topic-id table. Each input starts with a share
 * session tracker holding one open session this connection owns (group
 * "g1", member "m": a partition of "orders" and one of a topic id nobody
 * knows), which a forwarded ShareFetch/ShareAcknowledge then updates as the
 * session would. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "adapters/kafka/kafka_authz.h"

static bg_policy_t *bg_fuzz_pol;
static bg_policy_principal_t bg_fuzz_pr;
static bg_kafka_share_owners_t *bg_fuzz_owners;

static int bg_fuzz_topic_name(void *arg, const uint8_t id[16], bg_slice_t *name)
{
    (void)arg;
    if (id[0] != 1)
        return 0;
    *name = bg_kafka_cstr("orders");
    return 1;
}

static void bg_fuzz_learn(void *arg, const uint8_t id[16], bg_slice_t name)
{
    (void)arg, (void)id, (void)name;
}

static void bg_fuzz_init(void)
{
    static const char *all[] = {"*"};
    static const char *r_allow[] = {"kafka:topic:orders*", "kafka:group:g*",
                                    "kafka:transactional-id:t*", "kafka:topic:audit"};
    static const char *r_hold[] = {"kafka:topic:held*"};
    static const char *appr[] = {"group:sre"};
    static const char *r_cluster[] = {"kafka:cluster"};
    bg_policy_rule_spec_t rules[] = {
        {"allow", "f.yaml", 1, all, 1, r_allow, 4, (1u << BG_VERB__COUNT) - 1, BG_EFFECT_ALLOW,
         NULL, 0, BG_MODE_INHERIT},
        {"hold", "f.yaml", 2, all, 1, r_hold, 1, (1u << BG_VERB__COUNT) - 1, BG_EFFECT_HOLD, appr,
         1, BG_MODE_INHERIT},
        {"cluster-alter", "f.yaml", 3, all, 1, r_cluster, 1, 1u << BG_VERB_ALTER, BG_EFFECT_ALLOW,
         NULL, 0, BG_MODE_INHERIT},
    };
    bg_policy_spec_t spec = {BG_EFFECT_DENY, BG_MODE_ENFORCE, rules, 3, NULL, 0};
    char err[128];
    bg_fuzz_pol = bg_policy_compile(&spec, err, sizeof err);
    if (!bg_fuzz_pol || bg_policy_principal_prepare(bg_fuzz_pol, "fuzz", NULL, 0, &bg_fuzz_pr))
        __builtin_trap();
}

static void bg_fuzz_encode(const bg_kafka_req_hdr_t *h, int resp, const bg_kafka_struct_t *s)
{
    if (!s)
        return;
    bg_wr_t wr;
    bg_wr_init(&wr, 256, 16u << 20);
    const char *why;
    /* The authorizer's trees must always encode: a failure is a bug. */
    if (bg_kafka_encode(bg_kafka_msg_desc(h->api_key, resp), h->api_version, s, &wr, &why) !=
        BG_KAFKA_OK)
        __builtin_trap();
    bg_wr_free(&wr);
}

/* A tracker with one session of group "g1", member "m", opened (answered
 * with error 0) on this connection. */
static bg_kafka_share_sessions_t *bg_fuzz_share(void)
{
    if (!bg_fuzz_owners && !(bg_fuzz_owners = bg_kafka_share_owners_new()))
        __builtin_trap();
    bg_kafka_share_sessions_t *t = bg_kafka_share_new(bg_fuzz_owners, 1);
    bg_kafka_share_tp_t tps[2] = {{{1}, 0, 0}, {{2}, 3, 0}};
    bg_kafka_share_update_t u = {BG_KAFKA_API_SHARE_FETCH, 0, bg_kafka_cstr("g1"),
                                 bg_kafka_cstr("m"), tps, 2, NULL, 0, 0, 0, 0};
    if (!t || bg_kafka_share_forwarded(t, &u) != 0)
        __builtin_trap();
    bg_kafka_share_answered(t, &u, 0);
    if (!bg_kafka_share_usable(t, bg_kafka_share_find(t, u.group, u.member)))
        __builtin_trap();
    return t;
}

static void bg_fuzz_response(const bg_kafka_authz_ctx_t *ctx, const bg_kafka_req_hdr_t *h,
                             const bg_kafka_verdict_t *v, bg_rd_t *rd, bg_kafka_arena_t *a)
{
    bg_kafka_struct_t *resp = NULL, *out = NULL;
    /* The upstream answers at the version the request went at. */
    int16_t ver = v->upstream_version > 0 ? v->upstream_version : h->api_version;
    if (bg_kafka_decode(bg_kafka_msg_desc(h->api_key, 1), ver, rd, a, &resp) != BG_KAFKA_OK)
        return;
    int32_t nodes[8];
    size_t nn = 8;
    if (bg_kafka_authz_response(ctx, h, v, resp, a, &out, nodes, &nn, bg_fuzz_learn, NULL) == 0)
        bg_fuzz_encode(h, 1, out);
    if (v->share) /* ShareFetch, ShareAcknowledge: ErrorCode is field 1 */
        bg_kafka_share_answered((bg_kafka_share_sessions_t *)ctx->share, v->share,
                                (int16_t)resp->f[BG_KAFKA_SHARE_FETCH_RESP_ERROR_CODE].i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!bg_fuzz_pol)
        bg_fuzz_init();
    if (size < 4)
        return 0;
    bg_kafka_req_hdr_t h;
    memset(&h, 0, sizeof h);
    h.api_key = (int16_t)(data[0] << 8 | data[1]);
    h.api_version = (int16_t)(data[2] << 8 | data[3]);
    const bg_kafka_msg_desc_t *d = bg_kafka_msg_desc(h.api_key, 0);
    if (!d)
        return 0;
    bg_kafka_share_sessions_t *share = bg_fuzz_share();
    bg_kafka_authz_ctx_t ctx = {.policy = bg_fuzz_pol,
                                .principal = &bg_fuzz_pr,
                                .audit_topic = "audit",
                                .topic_name = bg_fuzz_topic_name,
                                .advertised_host = "gw",
                                .port_base = 19000,
                                .share = share};
    bg_kafka_arena_t a;
    bg_kafka_arena_init(&a, 4u << 20);
    bg_rd_t rd;
    bg_rd_init(&rd, data + 4, size - 4);
    bg_kafka_struct_t *req = NULL;
    if (bg_kafka_decode(d, h.api_version, &rd, &a, &req) == BG_KAFKA_OK) {
        bg_kafka_verdict_t v;
        if (bg_kafka_authz_request(&ctx, &h, req, &a, &v) == 0) {
            bg_kafka_req_hdr_t up = h;
            if (v.upstream_version > 0)
                up.api_version = v.upstream_version;
            bg_fuzz_encode(&up, 0, v.request);
            bg_fuzz_encode(&h, 1, v.response);
            if (v.share && bg_kafka_share_forwarded(share, v.share) != 0)
                __builtin_trap();
            if (v.needs_response)
                bg_fuzz_response(&ctx, &h, &v, &rd, &a);
        }
        bg_fuzz_encode(&h, 1, bg_kafka_authz_error_response(&h, req, 35, &a));
    }
    bg_kafka_arena_free(&a);
    bg_kafka_share_free(share);
    return 0;
}
