/* Classifiers of the consumer-group APIs (and FindCoordinator), plus the
 * generic split of requests that name resources in a string array. */
#include <stdlib.h>
#include <string.h>

#include "adapters/kafka/kafka_authz-internal.h"
#include "adapters/kafka/kafka_subscription.h"

#define K(x) BG_KAFKA_##x

static const bg_slice_t bg_kafka__empty = {(const uint8_t *)"", 0};

/* ---- string-array requests ---- */

int bg_kafka__str_apply(bg_kafka__az_t *az, int rq_idx, bg_res_type_t type, bg_verb_t verb,
                        int rs_arr, bg_kafka__str_entry_fn entry, int16_t force)
{
    const bg_kafka_struct_t *r = az->req;
    int32_t n = bg_kafka__n(r, rq_idx), nk = 0, nd = 0;
    const bg_kafka_msg_desc_t *md = bg_kafka_msg_desc(az->hdr->api_key, 1);
    const bg_kafka_struct_desc_t *rd = md ? bg_kafka_sub_desc(md->body, rs_arr) : NULL;
    bg_kafka_val_t *keep = bg_kafka_arena_alloc(az->a, (size_t)(n + 1) * sizeof *keep);
    bg_kafka_struct_t **den = bg_kafka_arena_alloc(az->a, (size_t)(n + 1) * sizeof *den);
    if (!rd || !keep || !den) {
        az->oom = 1;
        return 0;
    }
    for (int32_t i = 0; i < n; i++) {
        bg_slice_t name = r->f[rq_idx].a.v[i].s;
        if (!force && bg_kafka__decide(az, type, name, verb)) {
            keep[nk++] = r->f[rq_idx].a.v[i];
            continue;
        }
        if (!(den[nd++] = entry(az->a, rd, name, force ? force : bg_kafka__deny_error(type)))) {
            az->oom = 1;
            return 0;
        }
    }
    bg_kafka_verdict_t *v = az->v;
    if (nd == 0 && !force) {
        v->action = BG_KAFKA_ACT_FORWARD;
        return 0;
    }
    if (nk == 0) {
        bg_kafka_struct_t *resp = bg_kafka__resp_new(az);
        if (!resp)
            return 0;
        resp->f[rs_arr].a.s = den;
        resp->f[rs_arr].a.n = nd;
        v->action = BG_KAFKA_ACT_RESPOND;
        v->response = resp;
        return 0;
    }
    bg_kafka_struct_t *c = bg_kafka_struct_clone(az->a, r);
    if (!c) {
        az->oom = 1;
        return 0;
    }
    c->f[rq_idx].a.v = keep;
    c->f[rq_idx].a.n = nk;
    v->action = BG_KAFKA_ACT_FORWARD_REWRITTEN;
    v->request = c;
    return bg_kafka__add_append(az, rs_arr, -1, bg_kafka_null_slice(), -1, den, nd);
}

bg_kafka_struct_t *bg_kafka__str_error(const bg_kafka_req_hdr_t *hdr,
                                       const bg_kafka_struct_t *req, int16_t err,
                                       bg_kafka_arena_t *a, int rq_idx, int rs_arr,
                                       bg_kafka__str_entry_fn entry)
{
    const bg_kafka_msg_desc_t *md = bg_kafka_msg_desc(hdr->api_key, 1);
    bg_kafka_struct_t *resp = md ? bg_kafka_struct_new(a, md->body) : NULL;
    int32_t n = bg_kafka__n(req, rq_idx);
    bg_kafka_struct_t **el = resp ? bg_kafka_array_new(a, resp, rs_arr, 0) : NULL;
    if (!el)
        return NULL;
    el = bg_kafka_arena_alloc(a, (size_t)(n + 1) * sizeof *el);
    if (!el)
        return NULL;
    const bg_kafka_struct_desc_t *rd = bg_kafka_sub_desc(md->body, rs_arr);
    for (int32_t i = 0; i < n; i++)
        if (!(el[i] = entry(a, rd, req->f[rq_idx].a.v[i].s, err)))
            return NULL;
    resp->f[rs_arr].a.s = el;
    resp->f[rs_arr].a.n = n;
    return resp;
}

static bg_kafka_struct_t *bg_kafka__e_describe_group(bg_kafka_arena_t *a,
                                                     const bg_kafka_struct_desc_t *rd,
                                                     bg_slice_t name, int16_t err)
{
    /* DescribeGroupsResponse.groupError: empty state/protocol, no members. */
    bg_kafka_struct_t *e = bg_kafka_struct_new(a, rd);
    if (e) {
        e->f[K(DESCRIBE_GROUPS_RESP_GROUPS_GROUP_ID)].s = name;
        e->f[K(DESCRIBE_GROUPS_RESP_GROUPS_ERROR_CODE)].i = err;
    }
    return e;
}

static bg_kafka_struct_t *bg_kafka__e_delete_group(bg_kafka_arena_t *a,
                                                   const bg_kafka_struct_desc_t *rd,
                                                   bg_slice_t name, int16_t err)
{
    bg_kafka_struct_t *e = bg_kafka_struct_new(a, rd);
    if (e) {
        e->f[K(DELETE_GROUPS_RESP_RESULTS_GROUP_ID)].s = name;
        e->f[K(DELETE_GROUPS_RESP_RESULTS_ERROR_CODE)].i = err;
    }
    return e;
}

static bg_kafka_struct_t *bg_kafka__e_coordinator(bg_kafka_arena_t *a,
                                                  const bg_kafka_struct_desc_t *rd,
                                                  bg_slice_t name, int16_t err)
{
    bg_kafka_struct_t *e = bg_kafka_struct_new(a, rd);
    if (e) {
        e->f[K(FIND_COORDINATOR_RESP_COORDINATORS_KEY)].s = name;
        e->f[K(FIND_COORDINATOR_RESP_COORDINATORS_NODE_ID)].i = -1;
        e->f[K(FIND_COORDINATOR_RESP_COORDINATORS_HOST)].s = bg_kafka__empty;
        e->f[K(FIND_COORDINATOR_RESP_COORDINATORS_PORT)].i = -1;
        e->f[K(FIND_COORDINATOR_RESP_COORDINATORS_ERROR_CODE)].i = err;
    }
    return e;
}

static bg_kafka_struct_t *bg_kafka__e_consumer_group(bg_kafka_arena_t *a,
                                                    const bg_kafka_struct_desc_t *rd,
                                                    bg_slice_t name, int16_t err)
{
    bg_kafka_struct_t *e = bg_kafka_struct_new(a, rd);
    if (e) {
        e->f[K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS_GROUP_ID)].s = name;
        e->f[K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS_ERROR_CODE)].i = err;
    }
    return e;
}

static bg_kafka_struct_t *bg_kafka__e_describe_txn(bg_kafka_arena_t *a,
                                                   const bg_kafka_struct_desc_t *rd,
                                                   bg_slice_t name, int16_t err)
{
    bg_kafka_struct_t *e = bg_kafka_struct_new(a, rd);
    if (e) {
        e->f[K(DESCRIBE_TRANSACTIONS_RESP_TRANSACTION_STATES_TRANSACTIONAL_ID)].s = name;
        e->f[K(DESCRIBE_TRANSACTIONS_RESP_TRANSACTION_STATES_ERROR_CODE)].i = err;
    }
    return e;
}

static bg_kafka_struct_t *bg_kafka__e_delete_topic(bg_kafka_arena_t *a,
                                                   const bg_kafka_struct_desc_t *rd,
                                                   bg_slice_t name, int16_t err)
{
    bg_kafka_struct_t *e = bg_kafka_struct_new(a, rd);
    if (e) {
        e->f[K(DELETE_TOPICS_RESP_RESPONSES_NAME)].s = name;
        e->f[K(DELETE_TOPICS_RESP_RESPONSES_ERROR_CODE)].i = err;
    }
    return e;
}

int bg_kafka__c_describe_groups(bg_kafka__az_t *az)
{
    return bg_kafka__str_apply(az, K(DESCRIBE_GROUPS_REQ_GROUPS), BG_RES_KAFKA_GROUP,
                               BG_VERB_DESCRIBE, K(DESCRIBE_GROUPS_RESP_GROUPS),
                               bg_kafka__e_describe_group, 0);
}

int bg_kafka__c_delete_groups(bg_kafka__az_t *az)
{
    return bg_kafka__str_apply(az, K(DELETE_GROUPS_REQ_GROUPS_NAMES), BG_RES_KAFKA_GROUP,
                               BG_VERB_DELETE, K(DELETE_GROUPS_RESP_RESULTS),
                               bg_kafka__e_delete_group, 0);
}

int bg_kafka__c_describe_transactions(bg_kafka__az_t *az)
{
    return bg_kafka__str_apply(az, K(DESCRIBE_TRANSACTIONS_REQ_TRANSACTIONAL_IDS),
                               BG_RES_KAFKA_TXN_ID, BG_VERB_DESCRIBE,
                               K(DESCRIBE_TRANSACTIONS_RESP_TRANSACTION_STATES),
                               bg_kafka__e_describe_txn, 0);
}

/* ListTransactions, with Kafka's semantics: no cluster check; the response
 * lists only the transactional ids the caller may describe (Kafka filters
 * by DESCRIBE on each; describe on the cluster does not widen it). The
 * broker answers for busgate's credential, so without the filter every
 * transaction on the cluster would be listed. */
int bg_kafka__c_list_transactions(bg_kafka__az_t *az)
{
    az->v->action = BG_KAFKA_ACT_FORWARD;
    bg_kafka__filter_t f = {K(LIST_TRANSACTIONS_RESP_TRANSACTION_STATES),
                            K(LIST_TRANSACTIONS_RESP_TRANSACTION_STATES_TRANSACTIONAL_ID),
                            -1, -1, -1, -1, bg_kafka_null_slice(), BG_RES_KAFKA_TXN_ID,
                            BG_VERB_DESCRIBE, NULL, BG_KAFKA__NAMES_ONLY};
    return bg_kafka__add_listing(az, &f);
}

/* DescribeTransactions response: as Kafka does, a transaction's topics
 * lists only the topics the principal may describe. */
int bg_kafka__r_describe_transactions(const bg_kafka_authz_ctx_t *ctx, int16_t ver,
                                      bg_kafka_struct_t *resp, bg_kafka_arena_t *a,
                                      int32_t *nodes, size_t *nnodes, size_t maxnodes,
                                      bg_kafka_learn_topic_fn learn, void *learn_arg)
{
    (void)ver, (void)a, (void)nodes, (void)nnodes, (void)maxnodes, (void)learn, (void)learn_arg;
    int si = K(DESCRIBE_TRANSACTIONS_RESP_TRANSACTION_STATES);
    int ti = K(DESCRIBE_TRANSACTIONS_RESP_TRANSACTION_STATES_TOPICS);
    for (int32_t s = 0; s < bg_kafka__n(resp, si); s++) {
        bg_kafka_struct_t *st = resp->f[si].a.s[s];
        int32_t n = bg_kafka__n(st, ti), k = 0;
        for (int32_t i = 0; i < n; i++) {
            bg_kafka_struct_t *t = st->f[ti].a.s[i];
            if (bg_kafka__permits(ctx, BG_RES_KAFKA_TOPIC,
                                  t->f[K(DESCRIBE_TRANSACTIONS_RESP_TRANSACTION_STATES_TOPICS_TOPIC)].s,
                                  BG_VERB_DESCRIBE))
                st->f[ti].a.s[k++] = t;
        }
        if (n > 0)
            st->f[ti].a.n = k;
    }
    return 0;
}

/* ConsumerGroupDescribe (KIP-848 groups): describe on each group, split
 * like DescribeGroups. The response is checked as well
 * (bg_kafka__r_consumer_group_describe). */
int bg_kafka__c_consumer_group_describe(bg_kafka__az_t *az)
{
    return bg_kafka__str_apply(az, K(CONSUMER_GROUP_DESCRIBE_REQ_GROUP_IDS), BG_RES_KAFKA_GROUP,
                               BG_VERB_DESCRIBE, K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS),
                               bg_kafka__e_consumer_group, 0);
}

static const char bg_kafka__assigned_denied[] =
    "The group has described topic(s) that the client is not authorized to describe.";

/* 1 when every topic named in the assignment may be described. */
static int bg_kafka__assignment_ok(const bg_kafka_authz_ctx_t *ctx, const bg_kafka_struct_t *as)
{
    if (!as)
        return 1;
    int tps = K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS_MEMBERS_ASSIGNMENT_TOPIC_PARTITIONS);
    int name =
        K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS_MEMBERS_ASSIGNMENT_TOPIC_PARTITIONS_TOPIC_NAME);
    int32_t n = bg_kafka__n(as, tps);
    for (int32_t i = 0; i < n; i++)
        if (!bg_kafka__permits(ctx, BG_RES_KAFKA_TOPIC, as->f[tps].a.s[i]->f[name].s,
                               BG_VERB_DESCRIBE))
            return 0;
    return 1;
}

/* 1 when every topic a member subscribes to by name may be described. */
static int bg_kafka__subscription_ok(const bg_kafka_authz_ctx_t *ctx, const bg_kafka_struct_t *mem)
{
    int ti = K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS_MEMBERS_SUBSCRIBED_TOPIC_NAMES);
    int32_t n = bg_kafka__n(mem, ti);
    for (int32_t i = 0; i < n; i++)
        if (!bg_kafka__permits(ctx, BG_RES_KAFKA_TOPIC, mem->f[ti].a.v[i].s, BG_VERB_DESCRIBE))
            return 0;
    return 1;
}

/* As Kafka does: a described group whose members' current or target
 * assignments name a topic the principal may not describe is answered with
 * TOPIC_AUTHORIZATION_FAILED and nothing else about the group. busgate also
 * counts the members' subscribed topic names (a subscription can name a
 * topic before any assignment does). The target assignment shares the
 * assignment's layout. */
int bg_kafka__r_consumer_group_describe(const bg_kafka_authz_ctx_t *ctx, int16_t ver,
                                        bg_kafka_struct_t *resp, bg_kafka_arena_t *a,
                                        int32_t *nodes, size_t *nnodes, size_t maxnodes,
                                        bg_kafka_learn_topic_fn learn, void *learn_arg)
{
    (void)ver, (void)nodes, (void)nnodes, (void)maxnodes, (void)learn, (void)learn_arg;
    int gi = K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS);
    int mi = K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS_MEMBERS);
    int32_t ng = bg_kafka__n(resp, gi);
    for (int32_t g = 0; g < ng; g++) {
        bg_kafka_struct_t *grp = resp->f[gi].a.s[g];
        int32_t nm = bg_kafka__n(grp, mi), ok = 1;
        for (int32_t m = 0; m < nm && ok; m++) {
            const bg_kafka_struct_t *mem = grp->f[mi].a.s[m];
            ok = bg_kafka__subscription_ok(ctx, mem) &&
                 bg_kafka__assignment_ok(
                     ctx, mem->f[K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS_MEMBERS_ASSIGNMENT)].st) &&
                 bg_kafka__assignment_ok(
                     ctx,
                     mem->f[K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS_MEMBERS_TARGET_ASSIGNMENT)].st);
        }
        if (ok)
            continue;
        bg_kafka_struct_t *e =
            bg_kafka__e_consumer_group(a, grp->desc,
                                       grp->f[K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS_GROUP_ID)].s,
                                       BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED);
        if (!e)
            return -1;
        e->f[K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS_ERROR_MESSAGE)].s =
            bg_kafka_cstr(bg_kafka__assigned_denied);
        resp->f[gi].a.s[g] = e;
    }
    return 0;
}

static const char bg_kafka__pattern_refused[] =
    "subscription patterns resolved by the broker are not supported by busgate: "
    "subscribe to topic names";

/* ConsumerGroupHeartbeat (KIP-848), decided as Kafka does: read on the group
 * (GROUP_AUTHORIZATION_FAILED), then describe on every subscribed topic name
 * the request carries (null: unchanged since the last heartbeat); any denied
 * fails the whole heartbeat with TOPIC_AUTHORIZATION_FAILED. A subscription
 * pattern (v1+) would be resolved by the broker under busgate's credential,
 * against every topic, so it is refused. */
int bg_kafka__c_consumer_group_heartbeat(bg_kafka__az_t *az)
{
    const bg_kafka_struct_t *r = az->req;
    if (!bg_kafka__decide(az, BG_RES_KAFKA_GROUP, r->f[K(CONSUMER_GROUP_HEARTBEAT_REQ_GROUP_ID)].s,
                          BG_VERB_READ))
        return bg_kafka__respond_error(az, BG_KAFKA_E_GROUP_AUTHORIZATION_FAILED);
    int ti = K(CONSUMER_GROUP_HEARTBEAT_REQ_SUBSCRIBED_TOPIC_NAMES);
    int xi = K(CONSUMER_GROUP_HEARTBEAT_REQ_SUBSCRIBED_TOPIC_REGEX);
    int32_t n = bg_kafka__n(r, ti), ok = 1;
    for (int32_t i = 0; i < n; i++)
        ok &= bg_kafka__decide(az, BG_RES_KAFKA_TOPIC, r->f[ti].a.v[i].s, BG_VERB_DESCRIBE);
    int pattern = bg_kafka__has(r->desc, xi, az->ver) && r->f[xi].s.len > 0;
    if (pattern)
        bg_kafka__record_denied(az, BG_RES_KAFKA_TOPIC, r->f[xi].s, BG_VERB_DESCRIBE,
                                BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED, bg_kafka__pattern_refused);
    if (ok && !pattern) {
        az->v->action = BG_KAFKA_ACT_FORWARD;
        return 0;
    }
    if (bg_kafka__respond_error(az, BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED) < 0)
        return -1;
    if (pattern)
        az->v->response->f[K(CONSUMER_GROUP_HEARTBEAT_RESP_ERROR_MESSAGE)].s =
            bg_kafka_cstr(bg_kafka__pattern_refused);
    return 0;
}

/* ListGroups, with Kafka's semantics: the response lists the groups the
 * caller may describe, all of them with describe on the cluster. Forwarded
 * either way (nothing to refuse); without cluster describe the response is
 * filtered by describe on each group. As with Metadata for all topics, the
 * hidden groups are not audited one by one: the cluster decision when it
 * allows, else the listing (an allow on group "*") is recorded. */
int bg_kafka__c_list_groups(bg_kafka__az_t *az)
{
    az->v->action = BG_KAFKA_ACT_FORWARD;
    if (bg_kafka__permits(az->ctx, BG_RES_KAFKA_CLUSTER, bg_kafka_cstr(""), BG_VERB_DESCRIBE)) {
        bg_kafka__decide(az, BG_RES_KAFKA_CLUSTER, bg_kafka_cstr(""), BG_VERB_DESCRIBE);
        return 0;
    }
    bg_kafka__filter_t f = {K(LIST_GROUPS_RESP_GROUPS), K(LIST_GROUPS_RESP_GROUPS_GROUP_ID), -1, -1,
                            -1, -1, bg_kafka_null_slice(), BG_RES_KAFKA_GROUP, BG_VERB_DESCRIBE,
                            NULL, BG_KAFKA__NAMES_ONLY};
    return bg_kafka__add_listing(az, &f);
}

/* SyncGroup, Heartbeat, LeaveGroup: read on the group (GroupId is field 0
 * in all three). */
int bg_kafka__c_group_read(bg_kafka__az_t *az)
{
    if (!bg_kafka__decide(az, BG_RES_KAFKA_GROUP, az->req->f[0].s, BG_VERB_READ))
        return bg_kafka__respond_error(az, BG_KAFKA_E_GROUP_AUTHORIZATION_FAILED);
    az->v->action = BG_KAFKA_ACT_FORWARD;
    return 0;
}

/* The topic names of a JoinGroup's subscriptions, gathered for sorting. */
typedef struct bg_kafka__names_s {
    bg_slice_t *v;
    size_t n;
} bg_kafka__names_t;

static void bg_kafka__names_add(void *arg, bg_slice_t name, int owned)
{
    (void)owned;
    bg_kafka__names_t *c = arg;
    c->v[c->n++] = name;
}

static int bg_kafka__names_cmp(const void *pa, const void *pb)
{
    const bg_slice_t *a = pa, *b = pb;
    size_t n = (size_t)(a->len < b->len ? a->len : b->len);
    int c = n ? memcmp(a->p, b->p, n) : 0;
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

/* Every topic name the subscriptions carry, sorted, repeats left in
 * (clients send one protocol per assignor, each with the same topics);
 * NULL on arena limit (az->oom set). */
static bg_kafka__names_t *bg_kafka__join_names(bg_kafka__az_t *az,
                                               const bg_kafka_subscription_t *subs, int32_t n)
{
    size_t total = 0;
    for (int32_t i = 0; i < n; i++)
        total += (size_t)subs[i].ntopics + (size_t)subs[i].nowned;
    /* Each name took two bytes or more of the request: total is bounded by
     * the frame, and the arena by its limit. */
    bg_kafka__names_t *c = bg_kafka_arena_alloc(az->a, sizeof *c);
    bg_slice_t *v = c ? bg_kafka_arena_alloc(az->a, (total + 1) * sizeof *v) : NULL;
    if (!v) {
        az->oom = 1;
        return NULL;
    }
    *c = (bg_kafka__names_t){v, 0};
    for (int32_t i = 0; i < n; i++)
        bg_kafka_subscription_each(&subs[i], bg_kafka__names_add, c);
    qsort(c->v, c->n, sizeof *c->v, bg_kafka__names_cmp);
    return c;
}

/* JoinGroup: read on the group (GROUP_AUTHORIZATION_FAILED), as Kafka. With
 * protocol type "consumer" each protocol's metadata is a member's
 * ConsumerProtocolSubscription, which a Kafka 4.x broker reads when the
 * group is a KIP-848 one: it then assigns the named topics' partitions
 * itself, unchecked, and SyncGroup answers with them. So, as for
 * ConsumerGroupHeartbeat, every topic named (subscribed or in
 * owned_partitions, each once) needs describe; one denied fails the join
 * with TOPIC_AUTHORIZATION_FAILED. Metadata that does not read as a
 * subscription is refused (INCONSISTENT_GROUP_PROTOCOL, busgate's reason):
 * busgate could not tell what the broker would read in it. Other protocol
 * types (connect, custom ones) are opaque to the broker: read on the group
 * only. */
int bg_kafka__c_join_group(bg_kafka__az_t *az)
{
    const bg_kafka_struct_t *r = az->req;
    bg_slice_t gid = r->f[K(JOIN_GROUP_REQ_GROUP_ID)].s;
    if (!bg_kafka__decide(az, BG_RES_KAFKA_GROUP, gid, BG_VERB_READ))
        return bg_kafka__respond_error(az, BG_KAFKA_E_GROUP_AUTHORIZATION_FAILED);
    az->v->action = BG_KAFKA_ACT_FORWARD;
    if (!bg_kafka__slice_eq(r->f[K(JOIN_GROUP_REQ_PROTOCOL_TYPE)].s, bg_kafka_cstr("consumer")))
        return 0;
    int pi = K(JOIN_GROUP_REQ_PROTOCOLS);
    int32_t np = bg_kafka__n(r, pi);
    bg_kafka_subscription_t *subs = bg_kafka_arena_alloc(az->a, (size_t)(np + 1) * sizeof *subs);
    if (!subs)
        return (az->oom = 1, 0);
    for (int32_t i = 0; i < np; i++) {
        const char *why = NULL;
        bg_slice_t meta = r->f[pi].a.s[i]->f[K(JOIN_GROUP_REQ_PROTOCOLS_METADATA)].s;
        if (bg_kafka_subscription_parse(meta, &subs[i], &why) == 0)
            continue;
        bg_kafka__record_denied(az, BG_RES_KAFKA_GROUP, gid, BG_VERB_READ,
                                BG_KAFKA_E_INCONSISTENT_GROUP_PROTOCOL, why);
        return bg_kafka__respond_error(az, BG_KAFKA_E_INCONSISTENT_GROUP_PROTOCOL);
    }
    bg_kafka__names_t *names = bg_kafka__join_names(az, subs, np);
    if (!names)
        return 0;
    int ok = 1;
    for (size_t i = 0; i < names->n; i++)
        if (i == 0 || !bg_kafka__slice_eq(names->v[i], names->v[i - 1]))
            ok &= bg_kafka__decide(az, BG_RES_KAFKA_TOPIC, names->v[i], BG_VERB_DESCRIBE);
    return ok ? 0 : bg_kafka__respond_error(az, BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED);
}

/* Key type 0 = group, 1 = transactional id. Returns the resource type or -1. */
static int bg_kafka__coord_type(int64_t key_type)
{
    return key_type == 0 ? BG_RES_KAFKA_GROUP : key_type == 1 ? BG_RES_KAFKA_TXN_ID : -1;
}

#define BG_KAFKA__COORD_SHARE 2 /* share-group state coordinator (KIP-932, v6+) */

static const char bg_kafka__share_coord[] =
    "share coordinator lookup: brokers only (CLUSTER_ACTION)";

/* The error for a key type that is not a group or a transactional id, as
 * Kafka's getCoordinator answers it: the share coordinator (brokers look it
 * up for share-group state) needs CLUSTER_ACTION on the cluster, which no
 * client gets through busgate, from v6, the first version that has it;
 * below v6, and for any other type, the request is invalid. Audited as a
 * deny on the cluster (alter, as for replica traffic), with the reason. */
static int16_t bg_kafka__coord_refusal(bg_kafka__az_t *az, int64_t key_type)
{
    if (key_type == BG_KAFKA__COORD_SHARE && az->ver >= 6) {
        bg_kafka__record_denied(az, BG_RES_KAFKA_CLUSTER, bg_kafka_cstr(""), BG_VERB_ALTER,
                                BG_KAFKA_E_CLUSTER_AUTHORIZATION_FAILED, bg_kafka__share_coord);
        return BG_KAFKA_E_CLUSTER_AUTHORIZATION_FAILED;
    }
    bg_kafka__record_denied(az, BG_RES_KAFKA_CLUSTER, bg_kafka_cstr(""), BG_VERB_DESCRIBE,
                            BG_KAFKA_E_INVALID_REQUEST, "coordinator key type not supported");
    return BG_KAFKA_E_INVALID_REQUEST;
}

int bg_kafka__c_find_coordinator(bg_kafka__az_t *az)
{
    const bg_kafka_struct_t *r = az->req;
    int64_t kt = az->ver >= 1 ? r->f[K(FIND_COORDINATOR_REQ_KEY_TYPE)].i : 0;
    int type = bg_kafka__coord_type(kt);
    int16_t refused = type < 0 ? bg_kafka__coord_refusal(az, kt) : 0;
    if (az->ver >= 4)
        return bg_kafka__str_apply(az, K(FIND_COORDINATOR_REQ_COORDINATOR_KEYS),
                                   type < 0 ? BG_RES_KAFKA_GROUP : (bg_res_type_t)type,
                                   BG_VERB_DESCRIBE, K(FIND_COORDINATOR_RESP_COORDINATORS),
                                   bg_kafka__e_coordinator, refused);
    if (refused)
        return bg_kafka__respond_error(az, refused);
    if (!bg_kafka__decide(az, (bg_res_type_t)type, r->f[K(FIND_COORDINATOR_REQ_KEY)].s,
                          BG_VERB_DESCRIBE))
        return bg_kafka__respond_error(az, bg_kafka__deny_error((bg_res_type_t)type));
    az->v->action = BG_KAFKA_ACT_FORWARD;
    return 0;
}

/* ---- offsets ---- */

static const bg_kafka__tp_shape_t bg_kafka__sh_offset_commit = {
    K(OFFSET_COMMIT_REQ_TOPICS), K(OFFSET_COMMIT_REQ_TOPICS_NAME),
    K(OFFSET_COMMIT_REQ_TOPICS_TOPIC_ID), K(OFFSET_COMMIT_REQ_TOPICS_PARTITIONS),
    K(OFFSET_COMMIT_REQ_TOPICS_PARTITIONS_PARTITION_INDEX), K(OFFSET_COMMIT_RESP_TOPICS),
    K(OFFSET_COMMIT_RESP_TOPICS_NAME), K(OFFSET_COMMIT_RESP_TOPICS_TOPIC_ID),
    K(OFFSET_COMMIT_RESP_TOPICS_PARTITIONS), K(OFFSET_COMMIT_RESP_TOPICS_PARTITIONS_PARTITION_INDEX),
    K(OFFSET_COMMIT_RESP_TOPICS_PARTITIONS_ERROR_CODE), NULL, NULL};

static const bg_kafka__tp_shape_t bg_kafka__sh_txn_offset_commit = {
    K(TXN_OFFSET_COMMIT_REQ_TOPICS), K(TXN_OFFSET_COMMIT_REQ_TOPICS_NAME),
    K(TXN_OFFSET_COMMIT_REQ_TOPICS_TOPIC_ID), K(TXN_OFFSET_COMMIT_REQ_TOPICS_PARTITIONS),
    K(TXN_OFFSET_COMMIT_REQ_TOPICS_PARTITIONS_PARTITION_INDEX), K(TXN_OFFSET_COMMIT_RESP_TOPICS),
    K(TXN_OFFSET_COMMIT_RESP_TOPICS_NAME), K(TXN_OFFSET_COMMIT_RESP_TOPICS_TOPIC_ID),
    K(TXN_OFFSET_COMMIT_RESP_TOPICS_PARTITIONS),
    K(TXN_OFFSET_COMMIT_RESP_TOPICS_PARTITIONS_PARTITION_INDEX),
    K(TXN_OFFSET_COMMIT_RESP_TOPICS_PARTITIONS_ERROR_CODE), NULL, NULL};

static const bg_kafka__tp_shape_t bg_kafka__sh_offset_delete = {
    K(OFFSET_DELETE_REQ_TOPICS), K(OFFSET_DELETE_REQ_TOPICS_NAME), -1,
    K(OFFSET_DELETE_REQ_TOPICS_PARTITIONS), K(OFFSET_DELETE_REQ_TOPICS_PARTITIONS_PARTITION_INDEX),
    K(OFFSET_DELETE_RESP_TOPICS), K(OFFSET_DELETE_RESP_TOPICS_NAME), -1,
    K(OFFSET_DELETE_RESP_TOPICS_PARTITIONS), K(OFFSET_DELETE_RESP_TOPICS_PARTITIONS_PARTITION_INDEX),
    K(OFFSET_DELETE_RESP_TOPICS_PARTITIONS_ERROR_CODE), NULL, NULL};

static void bg_kafka__fill_offset_fetch(bg_kafka_struct_t *p)
{
    /* OffsetFetchResponse.UNAUTHORIZED_PARTITION: offset -1, no epoch, "" metadata. */
    p->f[K(OFFSET_FETCH_RESP_TOPICS_PARTITIONS_COMMITTED_OFFSET)].i = -1;
    p->f[K(OFFSET_FETCH_RESP_TOPICS_PARTITIONS_COMMITTED_LEADER_EPOCH)].i = -1;
    p->f[K(OFFSET_FETCH_RESP_TOPICS_PARTITIONS_METADATA)].s = bg_kafka__empty;
}

static void bg_kafka__fill_offset_fetch_g(bg_kafka_struct_t *p)
{
    p->f[K(OFFSET_FETCH_RESP_GROUPS_TOPICS_PARTITIONS_COMMITTED_OFFSET)].i = -1;
    p->f[K(OFFSET_FETCH_RESP_GROUPS_TOPICS_PARTITIONS_COMMITTED_LEADER_EPOCH)].i = -1;
    p->f[K(OFFSET_FETCH_RESP_GROUPS_TOPICS_PARTITIONS_METADATA)].s = bg_kafka__empty;
}

static const bg_kafka__tp_shape_t bg_kafka__sh_offset_fetch = {
    K(OFFSET_FETCH_REQ_TOPICS), K(OFFSET_FETCH_REQ_TOPICS_NAME), -1,
    K(OFFSET_FETCH_REQ_TOPICS_PARTITION_INDEXES), -1, K(OFFSET_FETCH_RESP_TOPICS),
    K(OFFSET_FETCH_RESP_TOPICS_NAME), -1, K(OFFSET_FETCH_RESP_TOPICS_PARTITIONS),
    K(OFFSET_FETCH_RESP_TOPICS_PARTITIONS_PARTITION_INDEX),
    K(OFFSET_FETCH_RESP_TOPICS_PARTITIONS_ERROR_CODE), bg_kafka__fill_offset_fetch, NULL};

/* v8+: the same inside each group. */
static const bg_kafka__tp_shape_t bg_kafka__sh_offset_fetch_g = {
    K(OFFSET_FETCH_REQ_GROUPS_TOPICS), K(OFFSET_FETCH_REQ_GROUPS_TOPICS_NAME),
    K(OFFSET_FETCH_REQ_GROUPS_TOPICS_TOPIC_ID), K(OFFSET_FETCH_REQ_GROUPS_TOPICS_PARTITION_INDEXES),
    -1, K(OFFSET_FETCH_RESP_GROUPS_TOPICS), K(OFFSET_FETCH_RESP_GROUPS_TOPICS_NAME),
    K(OFFSET_FETCH_RESP_GROUPS_TOPICS_TOPIC_ID), K(OFFSET_FETCH_RESP_GROUPS_TOPICS_PARTITIONS),
    K(OFFSET_FETCH_RESP_GROUPS_TOPICS_PARTITIONS_PARTITION_INDEX),
    K(OFFSET_FETCH_RESP_GROUPS_TOPICS_PARTITIONS_ERROR_CODE), bg_kafka__fill_offset_fetch_g, NULL};

static int bg_kafka__group_then_topics(bg_kafka__az_t *az, const bg_kafka__tp_shape_t *sh,
                                       bg_slice_t group, int16_t force)
{
    if (!force && !bg_kafka__decide(az, BG_RES_KAFKA_GROUP, group, BG_VERB_READ))
        force = BG_KAFKA_E_GROUP_AUTHORIZATION_FAILED;
    return bg_kafka__tp_apply(az, sh, BG_VERB_READ, force);
}

int bg_kafka__c_offset_commit(bg_kafka__az_t *az)
{
    return bg_kafka__group_then_topics(az, &bg_kafka__sh_offset_commit,
                                       az->req->f[K(OFFSET_COMMIT_REQ_GROUP_ID)].s, 0);
}

int bg_kafka__c_txn_offset_commit(bg_kafka__az_t *az)
{
    const bg_kafka_struct_t *r = az->req;
    int16_t force = 0;
    if (!bg_kafka__decide(az, BG_RES_KAFKA_TXN_ID, r->f[K(TXN_OFFSET_COMMIT_REQ_TRANSACTIONAL_ID)].s,
                          BG_VERB_WRITE))
        force = BG_KAFKA_E_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    return bg_kafka__group_then_topics(az, &bg_kafka__sh_txn_offset_commit,
                                       r->f[K(TXN_OFFSET_COMMIT_REQ_GROUP_ID)].s, force);
}

int bg_kafka__c_offset_delete(bg_kafka__az_t *az)
{
    if (!bg_kafka__decide(az, BG_RES_KAFKA_GROUP, az->req->f[K(OFFSET_DELETE_REQ_GROUP_ID)].s,
                          BG_VERB_DELETE))
        return bg_kafka__respond_error(az, BG_KAFKA_E_GROUP_AUTHORIZATION_FAILED);
    return bg_kafka__tp_apply(az, &bg_kafka__sh_offset_delete, BG_VERB_READ, 0);
}

/* OffsetFetch v1-7: one group, topics null (v2+) = all. */
static int bg_kafka__offset_fetch_single(bg_kafka__az_t *az)
{
    const bg_kafka_struct_t *r = az->req;
    if (!bg_kafka__decide(az, BG_RES_KAFKA_GROUP, r->f[K(OFFSET_FETCH_REQ_GROUP_ID)].s,
                          BG_VERB_DESCRIBE))
        return bg_kafka__respond_error(az, BG_KAFKA_E_GROUP_AUTHORIZATION_FAILED);
    if (r->f[K(OFFSET_FETCH_REQ_TOPICS)].a.n < 0) {
        bg_kafka__filter_t f = {K(OFFSET_FETCH_RESP_TOPICS), K(OFFSET_FETCH_RESP_TOPICS_NAME), -1,
                                -1, -1, -1, bg_kafka_null_slice(), BG_RES_KAFKA_TOPIC,
                                BG_VERB_DESCRIBE, NULL, BG_KAFKA__NAMES_ONLY};
        az->v->action = BG_KAFKA_ACT_FORWARD;
        return bg_kafka__add_listing(az, &f);
    }
    return bg_kafka__tp_apply(az, &bg_kafka__sh_offset_fetch, BG_VERB_DESCRIBE, 0);
}

static bg_kafka_struct_t *bg_kafka__offset_fetch_group_err(bg_kafka_arena_t *a,
                                                           const bg_kafka_struct_desc_t *rd,
                                                           bg_slice_t group, int16_t err)
{
    bg_kafka_struct_t *g = bg_kafka_struct_new(a, rd);
    if (!g || !bg_kafka_array_new(a, g, K(OFFSET_FETCH_RESP_GROUPS_TOPICS), 0))
        return NULL;
    g->f[K(OFFSET_FETCH_RESP_GROUPS_GROUP_ID)].s = group;
    g->f[K(OFFSET_FETCH_RESP_GROUPS_ERROR_CODE)].i = err;
    return g;
}

/* One allowed group of a batched OffsetFetch: returns the (possibly cloned)
 * group to forward; denied topics are merged back into that group. */
static bg_kafka_struct_t *bg_kafka__offset_fetch_group(bg_kafka__az_t *az, bg_kafka_struct_t *g,
                                                       const bg_kafka_struct_desc_t *rtd)
{
    const bg_kafka__tp_shape_t *sh = &bg_kafka__sh_offset_fetch_g;
    bg_slice_t gid = g->f[K(OFFSET_FETCH_REQ_GROUPS_GROUP_ID)].s;
    if (g->f[sh->rq_topics].a.n < 0) {
        bg_kafka__filter_t f = {K(OFFSET_FETCH_RESP_GROUPS), K(OFFSET_FETCH_RESP_GROUPS_TOPICS_NAME),
                                -1, -1, K(OFFSET_FETCH_RESP_GROUPS_GROUP_ID),
                                K(OFFSET_FETCH_RESP_GROUPS_TOPICS), gid, BG_RES_KAFKA_TOPIC,
                                BG_VERB_DESCRIBE, NULL, BG_KAFKA__NAMES_ONLY};
        return bg_kafka__add_listing(az, &f) < 0 ? NULL : g;
    }
    bg_kafka__split_t sp;
    if (bg_kafka__tp_split(az, sh, rtd, g, BG_VERB_DESCRIBE, 0, &sp) < 0)
        return NULL;
    if (sp.ndenied &&
        bg_kafka__add_append(az, K(OFFSET_FETCH_RESP_GROUPS), K(OFFSET_FETCH_RESP_GROUPS_GROUP_ID),
                             gid, K(OFFSET_FETCH_RESP_GROUPS_TOPICS), sp.denied, sp.ndenied) < 0)
        return NULL;
    return sp.allowed;
}

#define BG_KAFKA_MAX_BATCHED_GROUPS 1024

static int bg_kafka__offset_fetch_batched(bg_kafka__az_t *az)
{
    const bg_kafka_struct_t *r = az->req;
    const bg_kafka_msg_desc_t *md = bg_kafka_msg_desc(BG_KAFKA_API_OFFSET_FETCH, 1);
    const bg_kafka_struct_desc_t *rgd = bg_kafka_sub_desc(md->body, K(OFFSET_FETCH_RESP_GROUPS));
    const bg_kafka_struct_desc_t *rtd = bg_kafka_sub_desc(rgd, K(OFFSET_FETCH_RESP_GROUPS_TOPICS));
    int32_t n = bg_kafka__n(r, K(OFFSET_FETCH_REQ_GROUPS)), nk = 0, nd = 0;
    bg_kafka_struct_t **keep = bg_kafka_arena_alloc(az->a, (size_t)(n + 1) * sizeof *keep);
    bg_kafka_struct_t **den = bg_kafka_arena_alloc(az->a, (size_t)(n + 1) * sizeof *den);
    if (!keep || !den)
        return (az->oom = 1, 0);
    /* The response filters find a group's entry by its id: a group named
     * twice could slip one unfiltered entry through. Kafka clients never
     * repeat a group, so such a request is refused whole (and so is one
     * naming more groups than any client batches, which bounds this check). */
    if (n > BG_KAFKA_MAX_BATCHED_GROUPS)
        return bg_kafka__fail(az, "too many groups in one OffsetFetch");
    for (int32_t i = 0; i < n; i++)
        for (int32_t j = 0; j < i; j++) {
            bg_slice_t a = r->f[K(OFFSET_FETCH_REQ_GROUPS)].a.s[i]->f[K(OFFSET_FETCH_REQ_GROUPS_GROUP_ID)].s;
            bg_slice_t b = r->f[K(OFFSET_FETCH_REQ_GROUPS)].a.s[j]->f[K(OFFSET_FETCH_REQ_GROUPS_GROUP_ID)].s;
            if (a.len == b.len && (a.len <= 0 || memcmp(a.p, b.p, (size_t)a.len) == 0))
                return bg_kafka__fail(az, "a group named twice in one OffsetFetch");
        }
    for (int32_t i = 0; i < n; i++) {
        bg_kafka_struct_t *g = r->f[K(OFFSET_FETCH_REQ_GROUPS)].a.s[i];
        bg_slice_t gid = g->f[K(OFFSET_FETCH_REQ_GROUPS_GROUP_ID)].s;
        if (bg_kafka__decide(az, BG_RES_KAFKA_GROUP, gid, BG_VERB_DESCRIBE)) {
            if (!(keep[nk++] = bg_kafka__offset_fetch_group(az, g, rtd)))
                return (az->oom = 1, 0);
        } else if (!(den[nd++] = bg_kafka__offset_fetch_group_err(
                         az->a, rgd, gid, BG_KAFKA_E_GROUP_AUTHORIZATION_FAILED))) {
            return (az->oom = 1, 0);
        }
    }
    if (nk == 0) {
        bg_kafka_struct_t *resp = bg_kafka__resp_new(az);
        if (!resp)
            return 0;
        resp->f[K(OFFSET_FETCH_RESP_GROUPS)].a.s = den;
        resp->f[K(OFFSET_FETCH_RESP_GROUPS)].a.n = nd;
        az->v->action = BG_KAFKA_ACT_RESPOND;
        az->v->response = resp;
        return 0;
    }
    bg_kafka_struct_t *c = bg_kafka_struct_clone(az->a, r);
    if (!c)
        return (az->oom = 1, 0);
    c->f[K(OFFSET_FETCH_REQ_GROUPS)].a.s = keep;
    c->f[K(OFFSET_FETCH_REQ_GROUPS)].a.n = nk;
    az->v->action = BG_KAFKA_ACT_FORWARD_REWRITTEN;
    az->v->request = c;
    if (nd)
        return bg_kafka__add_append(az, K(OFFSET_FETCH_RESP_GROUPS), -1, bg_kafka_null_slice(),
                                    -1, den, nd);
    return 0;
}

int bg_kafka__c_offset_fetch(bg_kafka__az_t *az)
{
    return az->ver >= 8 ? bg_kafka__offset_fetch_batched(az) : bg_kafka__offset_fetch_single(az);
}

/* ---- per-entry error responses of the APIs above ---- */

static bg_kafka_struct_t *bg_kafka__offset_fetch_error(const bg_kafka_req_hdr_t *hdr,
                                                       const bg_kafka_struct_t *req, int16_t err,
                                                       bg_kafka_arena_t *a)
{
    const bg_kafka_msg_desc_t *md = bg_kafka_msg_desc(BG_KAFKA_API_OFFSET_FETCH, 1);
    bg_kafka_struct_t *resp = bg_kafka_struct_new(a, md->body);
    if (!resp)
        return NULL;
    if (hdr->api_version < 8) { /* v1: no top-level error; per partition */
        const bg_kafka__tp_shape_t *sh = &bg_kafka__sh_offset_fetch;
        const bg_kafka_struct_desc_t *rtd = bg_kafka_sub_desc(md->body, sh->rs_topics);
        int32_t n = bg_kafka__n(req, sh->rq_topics);
        bg_kafka_struct_t **el = bg_kafka_array_new(a, resp, sh->rs_topics, n);
        for (int32_t i = 0; el && i < n; i++) {
            const bg_kafka_struct_t *t = req->f[sh->rq_topics].a.s[i];
            if (!(el[i] = bg_kafka__tp_deny_entry(a, sh, rtd, t, t->f[sh->rq_name].s, err)))
                return NULL;
        }
        return el ? resp : NULL;
    }
    const bg_kafka_struct_desc_t *rgd = bg_kafka_sub_desc(md->body, K(OFFSET_FETCH_RESP_GROUPS));
    int32_t n = bg_kafka__n(req, K(OFFSET_FETCH_REQ_GROUPS));
    bg_kafka_struct_t **el = bg_kafka_array_new(a, resp, K(OFFSET_FETCH_RESP_GROUPS), n);
    for (int32_t i = 0; el && i < n; i++) {
        bg_slice_t gid = req->f[K(OFFSET_FETCH_REQ_GROUPS)].a.s[i]->f[0].s;
        if (!(el[i] = bg_kafka__offset_fetch_group_err(a, rgd, gid, err)))
            return NULL;
    }
    return el ? resp : NULL;
}

bg_kafka_struct_t *bg_kafka__error_entries_groups(const bg_kafka_req_hdr_t *hdr,
                                                  const bg_kafka_struct_t *req, int16_t err,
                                                  bg_kafka_arena_t *a)
{
    switch (hdr->api_key) {
    case BG_KAFKA_API_OFFSET_COMMIT: /* every partition, as OffsetCommitRequest.getErrorResponse */
        return bg_kafka__tp_error_response(hdr, req, &bg_kafka__sh_offset_commit, err, a);
    case BG_KAFKA_API_TXN_OFFSET_COMMIT:
        return bg_kafka__tp_error_response(hdr, req, &bg_kafka__sh_txn_offset_commit, err, a);
    case BG_KAFKA_API_OFFSET_FETCH: return bg_kafka__offset_fetch_error(hdr, req, err, a);
    case BG_KAFKA_API_DESCRIBE_GROUPS:
        return bg_kafka__str_error(hdr, req, err, a, K(DESCRIBE_GROUPS_REQ_GROUPS),
                                   K(DESCRIBE_GROUPS_RESP_GROUPS), bg_kafka__e_describe_group);
    case BG_KAFKA_API_CONSUMER_GROUP_DESCRIBE:
        return bg_kafka__str_error(hdr, req, err, a, K(CONSUMER_GROUP_DESCRIBE_REQ_GROUP_IDS),
                                   K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS),
                                   bg_kafka__e_consumer_group);
    case BG_KAFKA_API_SHARE_GROUP_DESCRIBE:
        return bg_kafka__share_group_describe_error(hdr, req, err, a);
    case BG_KAFKA_API_DELETE_GROUPS:
        return bg_kafka__str_error(hdr, req, err, a, K(DELETE_GROUPS_REQ_GROUPS_NAMES),
                                   K(DELETE_GROUPS_RESP_RESULTS), bg_kafka__e_delete_group);
    case BG_KAFKA_API_FIND_COORDINATOR:
        return bg_kafka__str_error(hdr, req, err, a, K(FIND_COORDINATOR_REQ_COORDINATOR_KEYS),
                                   K(FIND_COORDINATOR_RESP_COORDINATORS), bg_kafka__e_coordinator);
    case BG_KAFKA_API_DESCRIBE_TRANSACTIONS:
        return bg_kafka__str_error(hdr, req, err, a, K(DESCRIBE_TRANSACTIONS_REQ_TRANSACTIONAL_IDS),
                                   K(DESCRIBE_TRANSACTIONS_RESP_TRANSACTION_STATES),
                                   bg_kafka__e_describe_txn);
    case BG_KAFKA_API_DELETE_TOPICS:
        return bg_kafka__str_error(hdr, req, err, a, K(DELETE_TOPICS_REQ_TOPIC_NAMES),
                                   K(DELETE_TOPICS_RESP_RESPONSES), bg_kafka__e_delete_topic);
    default: return NULL;
    }
}
