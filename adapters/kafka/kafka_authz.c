/* Kafka request authorization: the API table, the decision recorder and the
 * entry points. The per-API classifiers live in kafka_authz_topics.c,
 * kafka_authz_groups.c and kafka_authz_admin.c; response rewrites in
 * kafka_authz_rewrite.c. */
#include <string.h>

#include "adapters/kafka/kafka_authz-internal.h"

/* Version ranges: what the 4.x definitions describe, limited to what the
 * classifiers below understand. Kafka 4.0 removed some old versions from the
 * JSON (Produce v0-2, Fetch v0-3, ListOffsets v0, OffsetCommit v0-1,
 * CreateTopics v0-1, DeleteTopics v0, ...): those cannot be decoded, so they
 * are not advertised even when a 3.9 broker still speaks them. Versions the
 * definitions mark unstable are never advertised (bg_kafka_authz_supported
 * clamps to the descriptor). */
static const bg_kafka__api_t bg_kafka__apis[] = {
    [BG_KAFKA_API_PRODUCE] = {3, 13, bg_kafka__c_produce, bg_kafka__r_produce, 1, 10},
    /* Fetch stops at v15: from v16 a response may end with NodeEndpoints
     * (KIP-951), which busgate would have to rewrite, so every response would
     * have to be received whole before any byte could go on. Up to v15 a
     * fetch response is cut through as it arrives. Clients then learn of a
     * leader change by refreshing metadata, as before KIP-951. */
    [BG_KAFKA_API_FETCH] = {4, 15, bg_kafka__c_fetch, bg_kafka__r_fetch, 1, 16},
    [BG_KAFKA_API_LIST_OFFSETS] = {1, 11, bg_kafka__c_list_offsets, NULL, 0, 0},
    [BG_KAFKA_API_METADATA] = {0, 13, bg_kafka__c_metadata, bg_kafka__r_metadata, 1, 0},
    [BG_KAFKA_API_OFFSET_COMMIT] = {2, 10, bg_kafka__c_offset_commit, NULL, 0, 0},
    /* Not v10: its all-topics answer names topics by id only, which the
     * listing filter (by name) cannot check; see docs/kafka.md. */
    [BG_KAFKA_API_OFFSET_FETCH] = {1, 9, bg_kafka__c_offset_fetch, NULL, 0, 0},
    [BG_KAFKA_API_FIND_COORDINATOR] = {0, 6, bg_kafka__c_find_coordinator,
                                       bg_kafka__r_find_coordinator, 1, 0},
    [BG_KAFKA_API_JOIN_GROUP] = {0, 9, bg_kafka__c_join_group, NULL, 0, 0},
    [BG_KAFKA_API_HEARTBEAT] = {0, 4, bg_kafka__c_group_read, NULL, 0, 0},
    [BG_KAFKA_API_LEAVE_GROUP] = {0, 5, bg_kafka__c_group_read, NULL, 0, 0},
    [BG_KAFKA_API_SYNC_GROUP] = {0, 5, bg_kafka__c_group_read, NULL, 0, 0},
    /* v3+: AuthorizedOperations, made the principal's (kafka_authz_ops.c). */
    [BG_KAFKA_API_DESCRIBE_GROUPS] = {0, 6, bg_kafka__c_describe_groups, NULL, 1, 3},
    [BG_KAFKA_API_LIST_GROUPS] = {0, 5, bg_kafka__c_list_groups, NULL, 0, 0},
    /* v0 is advertised (librdkafka requires it to enable SASL) but a v0
     * handshake, which means raw SASL frames, is refused by the session. */
    [BG_KAFKA_API_SASL_HANDSHAKE] = {0, 1, NULL, NULL, 0, 0},
    [BG_KAFKA_API_API_VERSIONS] = {0, 5, NULL, NULL, 0, 0},
    [BG_KAFKA_API_CREATE_TOPICS] = {2, 7, bg_kafka__c_create_topics, bg_kafka__r_create_topics, 1,
                                    5},
    [BG_KAFKA_API_DELETE_TOPICS] = {1, 6, bg_kafka__c_delete_topics, NULL, 0, 0},
    [BG_KAFKA_API_DELETE_RECORDS] = {0, 2, bg_kafka__c_delete_records, NULL, 0, 0},
    /* Stops at v5: v6 (KIP-939) can open a two-phase transaction, which has
     * no timeout and which Kafka allows only with TWO_PHASE_COMMIT on the
     * transactional id, a verb the policy does not have. */
    [BG_KAFKA_API_INIT_PRODUCER_ID] = {0, 5, bg_kafka__c_init_producer_id, NULL, 0, 0},
    [BG_KAFKA_API_OFFSET_FOR_LEADER_EPOCH] = {2, 4, bg_kafka__c_offset_for_leader_epoch, NULL, 0,
                                              0},
    /* v4+ is the broker-to-coordinator batched form (verify-only): not a client API. */
    [BG_KAFKA_API_ADD_PARTITIONS_TO_TXN] = {0, 3, bg_kafka__c_add_partitions_to_txn, NULL, 0, 0},
    [BG_KAFKA_API_ADD_OFFSETS_TO_TXN] = {0, 4, bg_kafka__c_add_offsets_to_txn, NULL, 0, 0},
    [BG_KAFKA_API_END_TXN] = {0, 5, bg_kafka__c_end_txn, NULL, 0, 0},
    [BG_KAFKA_API_TXN_OFFSET_COMMIT] = {0, 5, bg_kafka__c_txn_offset_commit, NULL, 0, 0},
    /* What kafka-transactions.sh abort sends (KIP-664): alter cluster. */
    [BG_KAFKA_API_WRITE_TXN_MARKERS] = {1, 2, bg_kafka__c_write_txn_markers, NULL, 0, 0},
    [BG_KAFKA_API_DESCRIBE_ACLS] = {1, 3, bg_kafka__c_cluster_describe, NULL, 0, 0},
    [BG_KAFKA_API_CREATE_ACLS] = {1, 3, bg_kafka__c_acls, NULL, 0, 0},
    [BG_KAFKA_API_DELETE_ACLS] = {1, 3, bg_kafka__c_acls, NULL, 0, 0},
    [BG_KAFKA_API_DESCRIBE_CONFIGS] = {1, 4, bg_kafka__c_configs, bg_kafka__r_describe_configs, 1,
                                       1},
    [BG_KAFKA_API_ALTER_CONFIGS] = {0, 2, bg_kafka__c_configs, NULL, 0, 0},
    [BG_KAFKA_API_ALTER_REPLICA_LOG_DIRS] = {1, 2, bg_kafka__c_alter_replica_log_dirs, NULL, 0, 0},
    [BG_KAFKA_API_DESCRIBE_LOG_DIRS] = {1, 5, bg_kafka__c_cluster_describe, NULL, 0, 0},
    [BG_KAFKA_API_SASL_AUTHENTICATE] = {0, 2, NULL, NULL, 0, 0},
    [BG_KAFKA_API_CREATE_PARTITIONS] = {0, 3, bg_kafka__c_create_partitions, NULL, 0, 0},
    [BG_KAFKA_API_DELETE_GROUPS] = {0, 3, bg_kafka__c_delete_groups, NULL, 0, 0},
    [BG_KAFKA_API_ELECT_LEADERS] = {1, 2, bg_kafka__c_partition_admin, NULL, 0, 0},
    [BG_KAFKA_API_INCREMENTAL_ALTER_CONFIGS] = {0, 1, bg_kafka__c_configs, NULL, 0, 0},
    [BG_KAFKA_API_ALTER_PARTITION_REASSIGNMENTS] = {0, 1, bg_kafka__c_partition_admin, NULL, 0, 0},
    [BG_KAFKA_API_LIST_PARTITION_REASSIGNMENTS] = {0, 0, bg_kafka__c_cluster_describe, NULL, 0, 0},
    [BG_KAFKA_API_OFFSET_DELETE] = {0, 0, bg_kafka__c_offset_delete, NULL, 0, 0},
    [BG_KAFKA_API_DESCRIBE_CLUSTER] = {0, 2, bg_kafka__c_describe_cluster,
                                       bg_kafka__r_describe_cluster, 1, 0},
    [BG_KAFKA_API_DESCRIBE_PRODUCERS] = {0, 0, bg_kafka__c_describe_producers, NULL, 0, 0},
    [BG_KAFKA_API_DESCRIBE_TRANSACTIONS] = {0, 0, bg_kafka__c_describe_transactions,
                                            bg_kafka__r_describe_transactions, 1, 0},
    [BG_KAFKA_API_LIST_TRANSACTIONS] = {0, 2, bg_kafka__c_list_transactions, NULL, 0, 0},
    [BG_KAFKA_API_DESCRIBE_TOPIC_PARTITIONS] = {0, 0, bg_kafka__c_describe_topic_partitions,
                                                bg_kafka__r_describe_topic_partitions, 1, 0},
    /* KIP-848 consumer groups. Heartbeat v0 as 4.x defines it (Java 3.9
     * and librdkafka 2.4-2.9 speak it); a 3.x broker's early-access v0 was
     * laid out differently, so with a broker that lacks v1 the API is not
     * used at all (bg_kafka_authz_upstream_fits). v1 lets the broker resolve
     * a subscription pattern, which busgate refuses (see the classifier). */
    [BG_KAFKA_API_CONSUMER_GROUP_HEARTBEAT] = {0, 1, bg_kafka__c_consumer_group_heartbeat, NULL, 0,
                                               0},
    [BG_KAFKA_API_CONSUMER_GROUP_DESCRIBE] = {0, 1, bg_kafka__c_consumer_group_describe,
                                              bg_kafka__r_consumer_group_describe, 1, 0},
    /* KIP-932 share groups (kafka_authz_share.c). v0 was Kafka 4.0's early
     * access, laid out differently and gone from the definitions: a broker
     * offering only v0 gets an empty intersection and the APIs are not
     * advertised. Every ShareFetch/ShareAcknowledge response is decoded: its
     * NodeEndpoints are rewritten and its top-level error tells busgate's
     * share session tracker what the broker did. */
    [BG_KAFKA_API_SHARE_GROUP_HEARTBEAT] = {1, 1, bg_kafka__c_share_group_heartbeat, NULL, 0, 0},
    [BG_KAFKA_API_SHARE_GROUP_DESCRIBE] = {1, 1, bg_kafka__c_share_group_describe,
                                           bg_kafka__r_share_group_describe, 1, 0},
    [BG_KAFKA_API_SHARE_FETCH] = {1, 2, bg_kafka__c_share_fetch, bg_kafka__r_share_fetch, 1, 0},
    [BG_KAFKA_API_SHARE_ACKNOWLEDGE] = {1, 2, bg_kafka__c_share_acknowledge,
                                        bg_kafka__r_share_acknowledge, 1, 0},
};

#define BG_KAFKA__NAPIS ((int)(sizeof bg_kafka__apis / sizeof bg_kafka__apis[0]))

const bg_kafka__api_t *bg_kafka__api(int16_t api_key)
{
    if (api_key < 0 || api_key >= BG_KAFKA__NAPIS)
        return NULL;
    const bg_kafka__api_t *e = &bg_kafka__apis[api_key];
    /* Empty slots are zero: min 0, max 0, no classifier and not a session API. */
    if (!e->classify && api_key != BG_KAFKA_API_SASL_HANDSHAKE &&
        api_key != BG_KAFKA_API_API_VERSIONS && api_key != BG_KAFKA_API_SASL_AUTHENTICATE)
        return NULL;
    return e;
}

int bg_kafka_authz_supported(int16_t api_key, int16_t *min, int16_t *max)
{
    const bg_kafka__api_t *e = bg_kafka__api(api_key);
    const bg_kafka_msg_desc_t *d = bg_kafka_msg_desc(api_key, 0);
    if (!e || !d)
        return 0;
    int16_t hi = e->max, lo = e->min;
    int16_t dmax = (int16_t)(d->valid_max - (d->latest_unstable ? 1 : 0));
    if (hi > dmax)
        hi = dmax;
    if (lo < d->valid_min)
        lo = d->valid_min;
    if (lo > hi)
        return 0;
    *min = lo;
    *max = hi;
    return 1;
}

int bg_kafka_authz_upstream_fits(int16_t api_key, int16_t umin, int16_t umax)
{
    (void)umin;
    if (api_key == BG_KAFKA_API_CONSUMER_GROUP_HEARTBEAT)
        return umax >= 1; /* a 4.x broker */
    return 1;
}

/* ---- decisions ---- */

int16_t bg_kafka__deny_error(bg_res_type_t type)
{
    switch (type) {
    case BG_RES_KAFKA_TOPIC: return BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED;
    case BG_RES_KAFKA_GROUP: return BG_KAFKA_E_GROUP_AUTHORIZATION_FAILED;
    case BG_RES_KAFKA_TXN_ID: return BG_KAFKA_E_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    default: return BG_KAFKA_E_CLUSTER_AUTHORIZATION_FAILED;
    }
}

/* The decision busgate applies: a principal nothing vouches for any more
 * (ctx->unvouched) is denied everything; then the reserved topics (the audit topic,
 * Kafka's internal topics: anything but reading and describing them; and
 * creating their '.'/'_' twins), then
 * the policy; hold (no approvals in this build) and reading a topic a mask
 * applies to (no masking engine in this build: records a mask covers never
 * pass unmasked) fail closed. */
static const char *bg_kafka__decide_raw(const bg_kafka_authz_ctx_t *ctx, bg_res_type_t type,
                                        bg_slice_t name, bg_verb_t verb, bg_policy_decision_t *d)
{
    if (ctx->unvouched) {
        memset(d, 0, sizeof *d);
        d->effect = d->would = BG_EFFECT_DENY;
        d->mode = BG_MODE_ENFORCE;
        return ctx->unvouched;
    }
    const char *reserved = type != BG_RES_KAFKA_TOPIC || verb == BG_VERB_READ ||
                                   verb == BG_VERB_DESCRIBE ? NULL
                           : verb == BG_VERB_CREATE ? bg_kafka__reserved_create(ctx, name)
                                                    : bg_kafka__reserved(ctx, name);
    if (reserved) {
        memset(d, 0, sizeof *d);
        d->effect = d->would = BG_EFFECT_DENY;
        d->mode = BG_MODE_ENFORCE;
        return reserved;
    }
    bg_policy_resource_t r = {type, NULL, 0, (const char *)name.p,
                              name.len > 0 ? (size_t)name.len : 0};
    if (!r.name)
        r.name = "";
    bg_policy_decide(ctx->policy, ctx->principal, &r, verb, d);
    /* Every Kafka request that reads a topic fetches its records. */
    switch (bg_policy_unbuilt(d, bg_policy_moves_data(type, verb) == BG_POLICY_DATA_ALL)) {
    case BG_POLICY_UNBUILT_HOLD:
        d->effect = BG_EFFECT_DENY;
        return "hold: no approvals in this build";
    case BG_POLICY_UNBUILT_MASK:
        d->effect = BG_EFFECT_DENY;
        return "masked topic: no masking in this build";
    case BG_POLICY_UNBUILT_NONE: break;
    }
    return NULL;
}

int bg_kafka__permits(const bg_kafka_authz_ctx_t *ctx, bg_res_type_t type, bg_slice_t name,
                      bg_verb_t verb)
{
    bg_policy_decision_t d;
    bg_kafka__decide_raw(ctx, type, name, verb, &d);
    return d.effect == BG_EFFECT_ALLOW;
}

static int bg_kafka__same(const bg_kafka_decision_t *g, bg_verb_t verb,
                          const bg_policy_decision_t *d, int16_t err, const char *reason)
{
    const bg_policy_decision_t *o = &g->decision;
    if (g->verb != verb || o->effect != d->effect || o->would != d->would ||
        o->mode != d->mode || o->rule != d->rule || o->enforced != d->enforced ||
        g->error_code != err ||
        g->reason != reason || o->nmasks != d->nmasks)
        return 0;
    return memcmp(o->masks, d->masks, d->nmasks * sizeof d->masks[0]) == 0;
}

static bg_kafka__dgroup_t *bg_kafka__group(bg_kafka__az_t *az, bg_verb_t verb,
                                           const bg_policy_decision_t *d, int16_t err,
                                           const char *reason)
{
    for (size_t i = 0; i < az->ngroups; i++)
        if (bg_kafka__same(&az->groups[i].d, verb, d, err, reason))
            return &az->groups[i];
    if (az->ngroups == az->capgroups) {
        size_t cap = az->capgroups ? az->capgroups * 2 : 4;
        bg_kafka__dgroup_t *g = bg_kafka_arena_alloc(az->a, cap * sizeof *g);
        if (!g)
            return NULL;
        if (az->ngroups)
            memcpy(g, az->groups, az->ngroups * sizeof *g);
        az->groups = g;
        az->capgroups = cap;
    }
    bg_kafka__dgroup_t *g = &az->groups[az->ngroups++];
    memset(g, 0, sizeof *g);
    g->d.verb = verb;
    g->d.decision = *d;
    g->d.error_code = err;
    g->d.reason = reason;
    return g;
}

static void bg_kafka__record(bg_kafka__az_t *az, bg_res_type_t type, bg_slice_t name,
                             bg_verb_t verb, const bg_policy_decision_t *d, int16_t err,
                             const char *reason)
{
    bg_kafka__dgroup_t *g = bg_kafka__group(az, verb, d, err, reason);
    if (!g) {
        az->oom = 1;
        return;
    }
    az->last = (size_t)(g - az->groups) + 1;
    if (g->d.nresources == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 16;
        bg_policy_resource_t *r = bg_kafka_arena_alloc(az->a, cap * sizeof *r);
        if (!r) {
            az->oom = 1;
            return;
        }
        if (g->d.nresources)
            memcpy(r, g->d.resources, g->d.nresources * sizeof *r);
        g->d.resources = r;
        g->cap = cap;
    }
    bg_policy_resource_t *r = &g->d.resources[g->d.nresources++];
    memset(r, 0, sizeof *r);
    r->type = type;
    r->name = name.len > 0 ? (const char *)name.p : "";
    r->name_len = name.len > 0 ? (size_t)name.len : 0;
}

int bg_kafka__decide(bg_kafka__az_t *az, bg_res_type_t type, bg_slice_t name, bg_verb_t verb)
{
    bg_policy_decision_t d;
    const char *reason = bg_kafka__decide_raw(az->ctx, type, name, verb, &d);
    int ok = d.effect == BG_EFFECT_ALLOW;
    bg_kafka__record(az, type, name, verb, &d, ok ? 0 : bg_kafka__deny_error(type), reason);
    return ok;
}

void bg_kafka__record_denied(bg_kafka__az_t *az, bg_res_type_t type, bg_slice_t name,
                             bg_verb_t verb, int16_t err, const char *reason)
{
    bg_policy_decision_t d;
    memset(&d, 0, sizeof d);
    d.effect = d.would = BG_EFFECT_DENY;
    d.mode = BG_MODE_ENFORCE;
    bg_kafka__record(az, type, name, verb, &d, err, reason);
}

void bg_kafka__record_allowed(bg_kafka__az_t *az, bg_res_type_t type, bg_slice_t name,
                              bg_verb_t verb, const char *reason)
{
    /* What is open to every principal (a listing the filter empties, the
     * broker list) is still no allow for one nothing vouches for: its
     * decision is busgate's deny, with no error (the answer is as Kafka
     * gives it to a principal with no permission at all). */
    if (az->ctx->unvouched) {
        bg_kafka__record_denied(az, type, name, verb, 0, az->ctx->unvouched);
        return;
    }
    bg_policy_decision_t d;
    memset(&d, 0, sizeof d);
    d.effect = d.would = BG_EFFECT_ALLOW;
    d.mode = BG_MODE_ENFORCE;
    bg_kafka__record(az, type, name, verb, &d, 0, reason);
}

/* Recorded for a request for every entry (all topics, all groups): an allow
 * on the name "*" (no topic can be called that; a group can, the detail
 * tells them apart) with busgate's reason, so the listing itself is
 * audited; the entries the filter hides are not audited one by one. */
static const char bg_kafka__listing_reason[] =
    "listing: entries the principal may not describe are left out";

int bg_kafka__add_listing(bg_kafka__az_t *az, const bg_kafka__filter_t *f)
{
    int seen = 0; /* batched OffsetFetch: one listing per group, one record */
    for (size_t i = 0; i < az->ngroups && !seen; i++) {
        const bg_kafka_decision_t *g = &az->groups[i].d;
        seen = g->reason == bg_kafka__listing_reason && g->verb == f->verb &&
               g->nresources > 0 && g->resources[0].type == f->type;
    }
    if (!seen)
        bg_kafka__record_allowed(az, f->type, bg_kafka_cstr("*"), f->verb,
                                 bg_kafka__listing_reason);
    return bg_kafka__add_filter(az, f);
}

/* ---- verdict helpers ---- */

int bg_kafka__fail(bg_kafka__az_t *az, const char *why)
{
    az->v->action = BG_KAFKA_ACT_CLOSE;
    az->v->close_reason = why;
    return -1;
}

bg_kafka__merge_t *bg_kafka__merge(bg_kafka__az_t *az)
{
    if (!az->v->merge) {
        bg_kafka__merge_t *m = bg_kafka_arena_alloc(az->a, sizeof *m);
        if (!m) {
            az->oom = 1;
            return NULL;
        }
        memset(m, 0, sizeof *m);
        az->v->merge = m;
    }
    return az->v->merge;
}

int bg_kafka__add_append(bg_kafka__az_t *az, int arr, int key_idx, bg_slice_t key, int sub_arr,
                         bg_kafka_struct_t **ents, int32_t n)
{
    bg_kafka__merge_t *m = bg_kafka__merge(az);
    bg_kafka__append_t *ap = m ? bg_kafka_arena_alloc(az->a, sizeof *ap) : NULL;
    if (!ap) {
        az->oom = 1;
        return -1;
    }
    *ap = (bg_kafka__append_t){(int16_t)arr, (int16_t)key_idx, (int16_t)sub_arr, key, ents, n,
                               NULL};
    /* Keep request order: append at the tail. */
    bg_kafka__append_t **pp = &m->appends;
    while (*pp)
        pp = &(*pp)->next;
    *pp = ap;
    return 0;
}

int bg_kafka__add_insert(bg_kafka__az_t *az, int arr, const int32_t *pos,
                         bg_kafka_struct_t **ents, int32_t n)
{
    bg_kafka__merge_t *m = bg_kafka__merge(az);
    bg_kafka__insert_t *in = m ? bg_kafka_arena_alloc(az->a, sizeof *in) : NULL;
    if (!in) {
        az->oom = 1;
        return -1;
    }
    *in = (bg_kafka__insert_t){(int16_t)arr, pos, ents, n, m->inserts};
    m->inserts = in;
    return 0;
}

int bg_kafka__add_filter(bg_kafka__az_t *az, const bg_kafka__filter_t *f)
{
    bg_kafka__merge_t *m = bg_kafka__merge(az);
    bg_kafka__filter_t *c = m ? bg_kafka_arena_alloc(az->a, sizeof *c) : NULL;
    if (!c) {
        az->oom = 1;
        return -1;
    }
    *c = *f;
    c->next = m->filters;
    m->filters = c;
    return 0;
}

bg_kafka_struct_t *bg_kafka__resp_new(bg_kafka__az_t *az)
{
    const bg_kafka_msg_desc_t *d = bg_kafka_msg_desc(az->hdr->api_key, 1);
    bg_kafka_struct_t *s = d ? bg_kafka_struct_new(az->a, d->body) : NULL;
    if (!s)
        az->oom = 1;
    return s;
}

static int bg_kafka__field_named(const bg_kafka_struct_desc_t *d, const char *name, int16_t ver)
{
    for (int i = 0; i < d->nfields; i++)
        if (strcmp(d->fields[i].name, name) == 0 && bg_kafka__has(d, i, ver))
            return i;
    return -1;
}

int bg_kafka__set_top_error(const bg_kafka_struct_desc_t *d, int16_t ver, bg_kafka_struct_t *s,
                            int16_t err)
{
    int i = bg_kafka__field_named(d, "ErrorCode", ver);
    if (i < 0)
        return 0;
    s->f[i].i = err;
    return 1;
}

int bg_kafka__respond_error(bg_kafka__az_t *az, int16_t err)
{
    bg_kafka_struct_t *r = bg_kafka_authz_error_response(az->hdr, az->req, err, az->a);
    if (!r)
        return bg_kafka__fail(az, az->oom ? "arena limit" : "denied; no way to carry an error");
    az->v->action = BG_KAFKA_ACT_RESPOND;
    az->v->response = r;
    return 0;
}

/* ---- entry points ---- */

static void bg_kafka__finish_decisions(bg_kafka__az_t *az)
{
    bg_kafka_verdict_t *v = az->v;
    if (!az->ngroups)
        return;
    v->decisions = bg_kafka_arena_alloc(az->a, az->ngroups * sizeof *v->decisions);
    if (!v->decisions) {
        az->oom = 1;
        return;
    }
    for (size_t i = 0; i < az->ngroups; i++)
        v->decisions[i] = az->groups[i].d;
    v->ndecisions = az->ngroups;
}

int bg_kafka_authz_request(const bg_kafka_authz_ctx_t *ctx, const bg_kafka_req_hdr_t *hdr,
                           const bg_kafka_struct_t *req, bg_kafka_arena_t *arena,
                           bg_kafka_verdict_t *v)
{
    memset(v, 0, sizeof *v);
    bg_kafka__az_t az = {ctx, hdr, hdr->api_version, req, arena, v, NULL, 0, 0, 0, 0, NULL};
    const bg_kafka__api_t *api = bg_kafka__api(hdr->api_key);
    int16_t lo, hi;
    if (!api || !api->classify || !bg_kafka_authz_supported(hdr->api_key, &lo, &hi))
        return bg_kafka__fail(&az, "api not supported by busgate");
    if (hdr->api_version < lo || hdr->api_version > hi)
        return bg_kafka__fail(&az, "api version not supported by busgate");
    if (!req)
        return bg_kafka__fail(&az, "no request body");
    int rc = api->classify(&az);
    bg_kafka__finish_decisions(&az);
    if (az.oom) {
        bg_kafka__fail(&az, "arena limit");
        v->ndecisions = 0; /* as below: the close is the one decision */
        return -1;
    }
    if (rc < 0) {
        /* Refused by closing: what was decided before the refusal (a share
         * session's group and topics, say) never took effect. The close is
         * the one decision, audited with its reason. */
        v->ndecisions = 0;
        return -1;
    }
    if (v->action == BG_KAFKA_ACT_RESPOND || v->action == BG_KAFKA_ACT_CLOSE || v->no_response) {
        v->merge = NULL;
        v->share = NULL;
        v->needs_response = 0;
        return 0;
    }
    v->needs_response = v->merge != NULL || v->upstream_version > 0 || /* re-encoded */
                        (api->always_response && hdr->api_version >= api->always_from);
    return 0;
}

void bg_kafka_authz_refuse(const bg_kafka_req_hdr_t *hdr, const bg_kafka_struct_t *req,
                           int16_t error_code, const char *reason, bg_kafka_arena_t *arena,
                           bg_kafka_verdict_t *v)
{
    /* An answer to a request that expects none would carry a correlation id
     * the client never waits for: it would take it for the next one's. */
    int answer = !v->no_response && v->action != BG_KAFKA_ACT_CLOSE;
    bg_kafka_struct_t *r = answer ? bg_kafka_authz_error_response(hdr, req, error_code, arena) : NULL;
    if (v->action != BG_KAFKA_ACT_CLOSE || !v->close_reason)
        v->close_reason = reason;
    v->action = r ? BG_KAFKA_ACT_RESPOND : BG_KAFKA_ACT_CLOSE;
    v->response = r;
    v->request = NULL;
    v->merge = NULL;
    v->share = NULL;
    v->needs_response = 0;
    v->no_response = 0;
    v->ndecisions = 0;
}

/* A denied entry keeps only what the client asked for it by, as Kafka's
 * stub does: its name when asked by name (the id is zeroed), its id when
 * asked by id (the name goes). */
static void bg_kafka__filter_hide(const bg_kafka__filter_t *f, bg_kafka_struct_t *e)
{
    const bg_kafka__filter_ids_t *x = &f->ids;
    int32_t n = bg_kafka__n(x->req, x->rq_arr);
    for (int32_t i = 0; x->rq_id >= 0 && x->rs_id >= 0 && i < n; i++) {
        const bg_kafka_struct_t *t = x->req->f[x->rq_arr].a.s[i];
        if (t->f[x->rq_name].s.len < 0 &&
            memcmp(t->f[x->rq_id].uuid, e->f[x->rs_id].uuid, 16) == 0) {
            e->f[f->name_idx].s = bg_kafka_null_slice();
            return;
        }
    }
    if (x->rs_id >= 0)
        memset(e->f[x->rs_id].uuid, 0, 16);
}

/* Drops (or turns into authorization errors) the entries of one array. */
static void bg_kafka__filter_arr(const bg_kafka_authz_ctx_t *ctx, const bg_kafka__filter_t *f,
                                 bg_kafka_struct_t *s)
{
    int32_t n = bg_kafka__n(s, f->arr), k = 0;
    bg_kafka_struct_t **el = s->f[f->arr].a.s;
    for (int32_t i = 0; i < n; i++) {
        bg_kafka_struct_t *e = el[i];
        if (f->name_idx < 0)
            continue;
        /* The broker's own error for an entry that names nothing (Metadata
         * by id for a topic deleted meanwhile: UNKNOWN_TOPIC_ID, no name)
         * stays: there is no name to decide on or to hide, and the client
         * needs that error to refresh, as Kafka answers it. */
        if (f->err_idx >= 0 && e->f[f->name_idx].s.len < 0 && e->f[f->err_idx].i != 0) {
            el[k++] = e;
            continue;
        }
        if (bg_kafka__permits(ctx, f->type, e->f[f->name_idx].s, f->verb)) {
            el[k++] = e;
        } else if (f->err_idx >= 0) {
            e->f[f->err_idx].i = bg_kafka__deny_error(f->type);
            if (f->sub_idx >= 0)
                e->f[f->sub_idx].a.n = 0;
            if (f->ids.req)
                bg_kafka__filter_hide(f, e);
            el[k++] = e;
        }
    }
    if (s->f[f->arr].a.n >= 0)
        s->f[f->arr].a.n = k;
}

static bg_kafka_struct_t *bg_kafka__keyed(bg_kafka_struct_t *resp, int arr, int key_idx,
                                          bg_slice_t key)
{
    int32_t n = bg_kafka__n(resp, arr);
    for (int32_t i = 0; i < n; i++)
        if (bg_kafka__slice_eq(resp->f[arr].a.s[i]->f[key_idx].s, key))
            return resp->f[arr].a.s[i];
    return NULL;
}

static int bg_kafka__append_arr(bg_kafka_arena_t *a, bg_kafka_struct_t *s, int idx,
                                bg_kafka_struct_t **ents, int32_t n)
{
    int32_t old = bg_kafka__n(s, idx);
    bg_kafka_struct_t **el = bg_kafka_arena_alloc(a, (size_t)(old + n + 1) * sizeof *el);
    if (!el)
        return -1;
    if (old)
        memcpy(el, s->f[idx].a.s, (size_t)old * sizeof *el);
    memcpy(el + old, ents, (size_t)n * sizeof *el);
    s->f[idx].a.s = el;
    s->f[idx].a.n = old + n;
    return 0;
}

/* Puts ents back at their request positions among the upstream's entries
 * (positional results: CreateAcls, DeleteAcls). Should the upstream answer
 * fewer entries than it was sent, the rest go at the end. */
static int bg_kafka__insert_arr(bg_kafka_arena_t *a, bg_kafka_struct_t *s,
                                const bg_kafka__insert_t *in)
{
    int32_t old = bg_kafka__n(s, in->arr), total = old + in->n, j = 0, k = 0;
    bg_kafka_struct_t **el = bg_kafka_arena_alloc(a, (size_t)(total + 1) * sizeof *el);
    if (!el)
        return -1;
    for (int32_t i = 0; i < total; i++) {
        if (k < in->n && (in->pos[k] <= i || j >= old))
            el[i] = in->ents[k++];
        else
            el[i] = s->f[in->arr].a.s[j++];
    }
    s->f[in->arr].a.s = el;
    s->f[in->arr].a.n = total;
    return 0;
}

static int bg_kafka__apply_merge(const bg_kafka_authz_ctx_t *ctx, const bg_kafka__merge_t *m,
                                 bg_kafka_struct_t *resp, bg_kafka_arena_t *a)
{
    for (const bg_kafka__insert_t *in = m->inserts; in; in = in->next)
        if (bg_kafka__insert_arr(a, resp, in) < 0)
            return -1;
    for (const bg_kafka__filter_t *f = m->filters; f; f = f->next) {
        if (f->key_idx < 0) {
            bg_kafka__filter_arr(ctx, f, resp);
            continue;
        }
        bg_kafka_struct_t *e = bg_kafka__keyed(resp, f->arr, f->key_idx, f->key);
        if (e) {
            bg_kafka__filter_t sub = *f;
            sub.arr = f->sub_arr;
            bg_kafka__filter_arr(ctx, &sub, e);
        }
    }
    for (const bg_kafka__append_t *ap = m->appends; ap; ap = ap->next) {
        bg_kafka_struct_t *dst = resp;
        int idx = ap->arr;
        if (ap->key_idx >= 0) {
            dst = bg_kafka__keyed(resp, ap->arr, ap->key_idx, ap->key);
            idx = ap->sub_arr;
            if (!dst)
                continue; /* the upstream dropped the whole entry (its own error) */
        }
        if (bg_kafka__append_arr(a, dst, idx, ap->ents, ap->n) < 0)
            return -1;
    }
    return 0;
}

int bg_kafka_authz_response(const bg_kafka_authz_ctx_t *ctx, const bg_kafka_req_hdr_t *hdr,
                            const bg_kafka_verdict_t *v, bg_kafka_struct_t *resp,
                            bg_kafka_arena_t *arena, bg_kafka_struct_t **out, int32_t *nodes,
                            size_t *nnodes, bg_kafka_learn_topic_fn learn, void *learn_arg)
{
    size_t maxnodes = nnodes ? *nnodes : 0;
    if (nnodes)
        *nnodes = 0;
    *out = resp;
    const bg_kafka__api_t *api = bg_kafka__api(hdr->api_key);
    if (!api || !resp)
        return -1;
    /* Rewrites first: topic ids are learned from the full upstream answer,
     * before the filters hide what this principal may not describe. */
    if (api->on_response && api->on_response(ctx, hdr->api_version, resp, arena, nodes, nnodes,
                                             maxnodes, learn, learn_arg) < 0)
        return -1;
    if (v->merge && bg_kafka__apply_merge(ctx, v->merge, resp, arena) < 0)
        return -1;
    bg_kafka__fix_authorized_ops(ctx, hdr->api_key, hdr->api_version, resp);
    return 0;
}
