/* Classifiers of the share-group APIs (KIP-932), decided as Kafka's broker
 * decides them (KafkaApis): ShareGroupHeartbeat (read group, describe every
 * subscribed topic), ShareGroupDescribe (describe each group; a group whose
 * members name a topic the principal may not describe is hidden),
 * ShareFetch and ShareAcknowledge (read group, read every topic; topics by
 * id, resolved with the ids busgate has learned).
 *
 * Share fetch sessions: an incremental ShareFetch (epoch > 0) makes the
 * broker fetch from every partition of the session, named or not, and
 * Kafka authorizes all of them on every request. busgate tracks the
 * partitions of each session it forwarded (kafka_share.h) and checks them
 * all; when one of them may no longer be read (a policy reload), or the
 * connection cannot use the session (busgate never saw it opened with error
 * 0, its opening is still in flight, or another connection opened it since:
 * bg_kafka_share_usable), the request is answered SHARE_SESSION_NOT_FOUND
 * and nothing goes upstream. The client then opens a new session (epoch 0)
 * naming all its partitions, each decided again: the refused ones get
 * TOPIC_AUTHORIZATION_FAILED and never reach the broker's new session.
 * ShareAcknowledge carries the same session epoch and the broker takes it
 * from any connection, so it gets the same ownership check. */
#include <string.h>

#include "adapters/kafka/kafka_authz-internal.h"

#define K(x) BG_KAFKA_##x

/* The session reads the top-level error of both answers at one index. */
_Static_assert(BG_KAFKA_SHARE_FETCH_RESP_ERROR_CODE == BG_KAFKA_SHARE_ACKNOWLEDGE_RESP_ERROR_CODE,
               "ShareFetch and ShareAcknowledge responses keep ErrorCode at one index");

static const char bg_kafka__share_reset[] =
    "share session: a partition may no longer be read, or this connection does not hold the "
    "session; the client opens a new one";

/* ---- shapes ---- */

static void bg_kafka__fill_share_fetch(bg_kafka_struct_t *p)
{
    /* ShareFetchResponse.partitionResponse(error): MemoryRecords.EMPTY. */
    static const uint8_t empty[1];
    p->f[K(SHARE_FETCH_RESP_RESPONSES_PARTITIONS_RECORDS)].s = (bg_slice_t){empty, 0};
}

static const bg_kafka__tp_shape_t bg_kafka__sh_share_fetch = {
    K(SHARE_FETCH_REQ_TOPICS), -1, K(SHARE_FETCH_REQ_TOPICS_TOPIC_ID),
    K(SHARE_FETCH_REQ_TOPICS_PARTITIONS), K(SHARE_FETCH_REQ_TOPICS_PARTITIONS_PARTITION_INDEX),
    K(SHARE_FETCH_RESP_RESPONSES), -1, K(SHARE_FETCH_RESP_RESPONSES_TOPIC_ID),
    K(SHARE_FETCH_RESP_RESPONSES_PARTITIONS),
    K(SHARE_FETCH_RESP_RESPONSES_PARTITIONS_PARTITION_INDEX),
    K(SHARE_FETCH_RESP_RESPONSES_PARTITIONS_ERROR_CODE), bg_kafka__fill_share_fetch, NULL};

static const bg_kafka__tp_shape_t bg_kafka__sh_share_ack = {
    K(SHARE_ACKNOWLEDGE_REQ_TOPICS), -1, K(SHARE_ACKNOWLEDGE_REQ_TOPICS_TOPIC_ID),
    K(SHARE_ACKNOWLEDGE_REQ_TOPICS_PARTITIONS),
    K(SHARE_ACKNOWLEDGE_REQ_TOPICS_PARTITIONS_PARTITION_INDEX), K(SHARE_ACKNOWLEDGE_RESP_RESPONSES),
    -1, K(SHARE_ACKNOWLEDGE_RESP_RESPONSES_TOPIC_ID), K(SHARE_ACKNOWLEDGE_RESP_RESPONSES_PARTITIONS),
    K(SHARE_ACKNOWLEDGE_RESP_RESPONSES_PARTITIONS_PARTITION_INDEX),
    K(SHARE_ACKNOWLEDGE_RESP_RESPONSES_PARTITIONS_ERROR_CODE), NULL, NULL};

/* ---- ShareGroupHeartbeat ---- */

/* As Kafka: read on the group (GROUP_AUTHORIZATION_FAILED), then describe on
 * every subscribed topic name the heartbeat carries (null: unchanged); one
 * denied fails the heartbeat with TOPIC_AUTHORIZATION_FAILED. The
 * assignment in the answer names topics by id; fetching them is checked by
 * ShareFetch. */
int bg_kafka__c_share_group_heartbeat(bg_kafka__az_t *az)
{
    const bg_kafka_struct_t *r = az->req;
    if (!bg_kafka__decide(az, BG_RES_KAFKA_GROUP, r->f[K(SHARE_GROUP_HEARTBEAT_REQ_GROUP_ID)].s,
                          BG_VERB_READ))
        return bg_kafka__respond_error(az, BG_KAFKA_E_GROUP_AUTHORIZATION_FAILED);
    int ti = K(SHARE_GROUP_HEARTBEAT_REQ_SUBSCRIBED_TOPIC_NAMES);
    int32_t n = bg_kafka__n(r, ti), ok = 1;
    for (int32_t i = 0; i < n; i++)
        ok &= bg_kafka__decide(az, BG_RES_KAFKA_TOPIC, r->f[ti].a.v[i].s, BG_VERB_DESCRIBE);
    if (!ok)
        return bg_kafka__respond_error(az, BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED);
    az->v->action = BG_KAFKA_ACT_FORWARD;
    return 0;
}

/* ---- ShareGroupDescribe ---- */

static bg_kafka_struct_t *bg_kafka__e_share_group(bg_kafka_arena_t *a,
                                                 const bg_kafka_struct_desc_t *rd,
                                                 bg_slice_t name, int16_t err)
{
    bg_kafka_struct_t *e = bg_kafka_struct_new(a, rd);
    if (e) {
        e->f[K(SHARE_GROUP_DESCRIBE_RESP_GROUPS_GROUP_ID)].s = name;
        e->f[K(SHARE_GROUP_DESCRIBE_RESP_GROUPS_ERROR_CODE)].i = err;
    }
    return e;
}

int bg_kafka__c_share_group_describe(bg_kafka__az_t *az)
{
    return bg_kafka__str_apply(az, K(SHARE_GROUP_DESCRIBE_REQ_GROUP_IDS), BG_RES_KAFKA_GROUP,
                               BG_VERB_DESCRIBE, K(SHARE_GROUP_DESCRIBE_RESP_GROUPS),
                               bg_kafka__e_share_group, 0);
}

bg_kafka_struct_t *bg_kafka__share_group_describe_error(const bg_kafka_req_hdr_t *hdr,
                                                        const bg_kafka_struct_t *req, int16_t err,
                                                        bg_kafka_arena_t *a)
{
    return bg_kafka__str_error(hdr, req, err, a, K(SHARE_GROUP_DESCRIBE_REQ_GROUP_IDS),
                               K(SHARE_GROUP_DESCRIBE_RESP_GROUPS), bg_kafka__e_share_group);
}

static const char bg_kafka__share_hidden[] =
    "The group has described topic(s) that the client is not authorized to describe.";

/* 1 when every topic a member subscribes to or is assigned may be described. */
static int bg_kafka__share_member_ok(const bg_kafka_authz_ctx_t *ctx, const bg_kafka_struct_t *m)
{
#define M(x) K(SHARE_GROUP_DESCRIBE_RESP_GROUPS_MEMBERS_##x)
    int32_t n = bg_kafka__n(m, M(SUBSCRIBED_TOPIC_NAMES));
    for (int32_t i = 0; i < n; i++)
        if (!bg_kafka__permits(ctx, BG_RES_KAFKA_TOPIC, m->f[M(SUBSCRIBED_TOPIC_NAMES)].a.v[i].s,
                               BG_VERB_DESCRIBE))
            return 0;
    const bg_kafka_struct_t *as = m->f[M(ASSIGNMENT)].st;
    n = as ? bg_kafka__n(as, M(ASSIGNMENT_TOPIC_PARTITIONS)) : 0;
    for (int32_t i = 0; i < n; i++) {
        const bg_kafka_struct_t *tp = as->f[M(ASSIGNMENT_TOPIC_PARTITIONS)].a.s[i];
        if (!bg_kafka__permits(ctx, BG_RES_KAFKA_TOPIC,
                               tp->f[M(ASSIGNMENT_TOPIC_PARTITIONS_TOPIC_NAME)].s,
                               BG_VERB_DESCRIBE))
            return 0;
    }
    return 1;
#undef M
}

/* As Kafka: a described group whose members' assignments name a topic the
 * principal may not describe becomes TOPIC_AUTHORIZATION_FAILED with nothing
 * but its id; busgate also counts the members' subscribed topic names, as
 * for ConsumerGroupDescribe. */
int bg_kafka__r_share_group_describe(const bg_kafka_authz_ctx_t *ctx, int16_t ver,
                                     bg_kafka_struct_t *resp, bg_kafka_arena_t *a, int32_t *nodes,
                                     size_t *nnodes, size_t maxnodes,
                                     bg_kafka_learn_topic_fn learn, void *learn_arg)
{
    (void)ver, (void)nodes, (void)nnodes, (void)maxnodes, (void)learn, (void)learn_arg;
    int gi = K(SHARE_GROUP_DESCRIBE_RESP_GROUPS), mi = K(SHARE_GROUP_DESCRIBE_RESP_GROUPS_MEMBERS);
    for (int32_t g = 0; g < bg_kafka__n(resp, gi); g++) {
        bg_kafka_struct_t *grp = resp->f[gi].a.s[g];
        int ok = 1;
        for (int32_t m = 0; m < bg_kafka__n(grp, mi) && ok; m++)
            ok = bg_kafka__share_member_ok(ctx, grp->f[mi].a.s[m]);
        if (ok)
            continue;
        bg_kafka_struct_t *e = bg_kafka__e_share_group(
            a, grp->desc, grp->f[K(SHARE_GROUP_DESCRIBE_RESP_GROUPS_GROUP_ID)].s,
            BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED);
        if (!e)
            return -1;
        e->f[K(SHARE_GROUP_DESCRIBE_RESP_GROUPS_ERROR_MESSAGE)].s =
            bg_kafka_cstr(bg_kafka__share_hidden);
        resp->f[gi].a.s[g] = e;
    }
    return 0;
}

/* ---- ShareFetch / ShareAcknowledge ---- */

/* Answers the request with SHARE_SESSION_NOT_FOUND: nothing goes upstream,
 * the client opens a new session. */
static int bg_kafka__share_reset_session(bg_kafka__az_t *az, bg_slice_t group)
{
    bg_kafka__record_denied(az, BG_RES_KAFKA_GROUP, group, BG_VERB_READ,
                            BG_KAFKA_E_SHARE_SESSION_NOT_FOUND, bg_kafka__share_reset);
    if (bg_kafka__respond_error(az, BG_KAFKA_E_SHARE_SESSION_NOT_FOUND) < 0)
        return -1;
    az->v->response->f[K(SHARE_FETCH_RESP_ERROR_MESSAGE)].s = bg_kafka_cstr(bg_kafka__share_reset);
    return 0;
}

/* Topic i of a topic-id array (request topics or forgotten topics). */
static const uint8_t *bg_kafka__share_id(const bg_kafka_struct_t *r, int arr, int32_t i)
{
    return r->f[arr].a.s[i]->f[0].uuid; /* TopicId is field 0 in all of them */
}

/* The (topic id, partition) pairs of array arr of r (partitions at parts of
 * each topic: structs with the index at pidx, or int32s when pidx < 0),
 * copied into the arena and sorted. */
static bg_kafka_share_tp_t *bg_kafka__share_tps(bg_kafka__az_t *az, const bg_kafka_struct_t *r,
                                                int arr, int parts, int pidx, size_t *n)
{
    size_t total = 0;
    for (int32_t i = 0; i < bg_kafka__n(r, arr); i++)
        total += (size_t)bg_kafka__n(r->f[arr].a.s[i], parts);
    bg_kafka_share_tp_t *tps = bg_kafka_arena_alloc(az->a, (total + 1) * sizeof *tps);
    if (!tps) {
        az->oom = 1;
        return NULL;
    }
    size_t k = 0;
    for (int32_t i = 0; i < bg_kafka__n(r, arr); i++) {
        const bg_kafka_struct_t *t = r->f[arr].a.s[i];
        for (int32_t j = 0; j < bg_kafka__n(t, parts); j++, k++) {
            memcpy(tps[k].id, bg_kafka__share_id(r, arr, i), 16);
            tps[k].partition =
                (int32_t)(pidx >= 0 ? t->f[parts].a.s[j]->f[pidx].i : t->f[parts].a.v[j].i);
            tps[k].seq = 0;
        }
    }
    *n = bg_kafka_share_sort(tps, k);
    return tps;
}

static bg_slice_t bg_kafka__share_copy(bg_kafka__az_t *az, bg_slice_t s)
{
    if (s.len <= 0)
        return s;
    uint8_t *p = bg_kafka_arena_alloc(az->a, (size_t)s.len);
    if (!p) {
        az->oom = 1;
        return bg_kafka_null_slice();
    }
    memcpy(p, s.p, (size_t)s.len);
    return (bg_slice_t){p, s.len};
}

/* The update the session applies once the request is sent and answered;
 * everything copied into the arena (the request bytes may have left). */
static bg_kafka_share_update_t *bg_kafka__share_update(bg_kafka__az_t *az, bg_slice_t group,
                                                       bg_slice_t member, int32_t epoch)
{
    bg_kafka_share_update_t *u = bg_kafka_arena_alloc(az->a, sizeof *u);
    if (!u) {
        az->oom = 1;
        return NULL;
    }
    memset(u, 0, sizeof *u);
    u->api_key = az->hdr->api_key;
    u->epoch = epoch;
    u->group = bg_kafka__share_copy(az, group);
    u->member = bg_kafka__share_copy(az, member);
    return u;
}

/* 1 when every partition of the tracked session s that the request neither
 * names (named: its partitions, sorted; the split decides those) nor
 * forgets may still be read; one decision per topic. A topic id busgate can
 * no longer resolve counts as refused. */
static int bg_kafka__share_session_ok(bg_kafka__az_t *az, const bg_kafka_share_session_t *s,
                                      const bg_kafka_share_tp_t *named, size_t nnamed,
                                      const bg_kafka_share_tp_t *forget, size_t nforget)
{
    int ok = 1;
    for (size_t i = 0; i < s->n; i++) {
        const uint8_t *id = s->tps[i].id;
        if (bg_kafka_share_contains(forget, nforget, &s->tps[i]) ||
            bg_kafka_share_has_topic(named, nnamed, id))
            continue;
        if (i > 0 && memcmp(id, s->tps[i - 1].id, 16) == 0 &&
            !bg_kafka_share_contains(forget, nforget, &s->tps[i - 1]))
            continue; /* decided with the partition before */
        bg_slice_t name;
        if (!az->ctx->topic_name || !az->ctx->topic_name(az->ctx->topic_name_arg, id, &name) ||
            name.len < 0) {
            bg_kafka__record_denied(az, BG_RES_KAFKA_TOPIC, bg_kafka_null_slice(), BG_VERB_READ,
                                    BG_KAFKA_E_UNKNOWN_TOPIC_ID, "unknown topic id");
            ok = 0;
            continue;
        }
        name = bg_kafka__share_copy(az, name); /* the callback's name lives for this call */
        if (!bg_kafka__decide(az, BG_RES_KAFKA_TOPIC, name, BG_VERB_READ))
            ok = 0;
    }
    return ok;
}

/* 1 when a topic the split refused is one the tracked session s holds: the
 * broker would go on fetching it whatever this request says. */
static int bg_kafka__share_denied_in_session(const bg_kafka__split_t *sp,
                                             const bg_kafka_share_session_t *s)
{
    int id = K(SHARE_FETCH_RESP_RESPONSES_TOPIC_ID);
    for (int32_t i = 0; i < sp->ndenied; i++)
        if (bg_kafka_share_has_topic(s->tps, s->n, sp->denied[i]->f[id].uuid))
            return 1;
    return 0;
}

/* ShareFetch: AcknowledgeErrorCode too on the refused partitions that carried
 * acknowledgements (Kafka: TOPIC_AUTHORIZATION_FAILED for those acks). The
 * split's refused entries are in request order, partitions as requested. */
static void bg_kafka__share_ack_errors(const bg_kafka_struct_t *r, const bg_kafka__split_t *sp)
{
#define RQ(x) K(SHARE_FETCH_REQ_TOPICS_##x)
#define RS(x) K(SHARE_FETCH_RESP_RESPONSES_##x)
    int32_t d = 0;
    for (int32_t i = 0; i < bg_kafka__n(r, K(SHARE_FETCH_REQ_TOPICS)) && d < sp->ndenied; i++) {
        const bg_kafka_struct_t *t = r->f[K(SHARE_FETCH_REQ_TOPICS)].a.s[i];
        bg_kafka_struct_t *e = sp->denied[d];
        if (memcmp(t->f[RQ(TOPIC_ID)].uuid, e->f[RS(TOPIC_ID)].uuid, 16) != 0 ||
            bg_kafka__n(t, RQ(PARTITIONS)) != bg_kafka__n(e, RS(PARTITIONS)))
            continue;
        d++;
        for (int32_t j = 0; j < bg_kafka__n(t, RQ(PARTITIONS)); j++) {
            bg_kafka_struct_t *p = e->f[RS(PARTITIONS)].a.s[j];
            if (bg_kafka__n(t->f[RQ(PARTITIONS)].a.s[j], RQ(PARTITIONS_ACKNOWLEDGEMENT_BATCHES)))
                p->f[RS(PARTITIONS_ACKNOWLEDGE_ERROR_CODE)].i = p->f[RS(PARTITIONS_ERROR_CODE)].i;
        }
    }
#undef RQ
#undef RS
}

/* Forwards what the split allowed, also when that is no topic at all: the
 * broker must still see the request (it moves the session's epoch on, and
 * an incremental one fetches from the session's other partitions, all
 * checked). The refused entries are merged into the answer. */
static int bg_kafka__share_forward(bg_kafka__az_t *az, const bg_kafka__tp_shape_t *sh,
                                   bg_kafka__split_t *sp)
{
    bg_kafka_verdict_t *v = az->v;
    if (sp->ndenied == 0) {
        v->action = BG_KAFKA_ACT_FORWARD;
        return 0;
    }
    v->action = BG_KAFKA_ACT_FORWARD_REWRITTEN;
    v->request = sp->allowed;
    return bg_kafka__add_append(az, sh->rs_topics, -1, bg_kafka_null_slice(), -1, sp->denied,
                                sp->ndenied);
}

/* The tracker's bounds (kafka_share.h), checked on what the tracker would
 * hold once the request is answered: an opening request replaces the
 * session's partitions, an incremental one adds to them (the union). */
static int bg_kafka__share_limits(bg_kafka__az_t *az, const bg_kafka_share_session_t *s,
                                  const bg_kafka_share_update_t *u)
{
    const bg_kafka_share_sessions_t *t = az->ctx->share;
    if (u->epoch < 0)
        return 0; /* final: adds nothing */
    if (!s && u->epoch == 0 && t && t->n >= BG_KAFKA_SHARE_MAX_SESSIONS)
        return bg_kafka__fail(az, "too many share sessions on one connection");
    size_t n = u->epoch == 0 ? u->nadd : bg_kafka_share_union(s, u->add, u->nadd);
    if (bg_kafka_share_units_after(t, s, u->group, u->member, n) > BG_KAFKA_SHARE_MAX_PARTITIONS)
        return bg_kafka__fail(az, "too many partitions in the share sessions of one connection");
    return 0;
}

/* 1 when a partition of topic array arr of r (partitions at parts) carries
 * acknowledgement batches (at batches). */
static int bg_kafka__share_has_acks(const bg_kafka_struct_t *r, int arr, int parts, int batches)
{
    for (int32_t i = 0; i < bg_kafka__n(r, arr); i++) {
        const bg_kafka_struct_t *t = r->f[arr].a.s[i];
        for (int32_t j = 0; j < bg_kafka__n(t, parts); j++)
            if (bg_kafka__n(t->f[parts].a.s[j], batches) > 0)
                return 1;
    }
    return 0;
}

/* As Kafka before it looks at any session: an epoch below -1 is
 * INVALID_SHARE_SESSION_EPOCH; an opening ShareFetch may not acknowledge
 * (INVALID_REQUEST), and ShareAcknowledge cannot open one
 * (INVALID_SHARE_SESSION_EPOCH). Returns 1 when answered so. */
static int bg_kafka__share_bad_epoch(bg_kafka__az_t *az, int32_t epoch, int acks, int *rc)
{
    int fetch = az->hdr->api_key == BG_KAFKA_API_SHARE_FETCH;
    int16_t err = 0;
    if (epoch < -1 || (epoch == 0 && !fetch))
        err = BG_KAFKA_E_INVALID_SHARE_SESSION_EPOCH;
    else if (epoch == 0 && acks)
        err = BG_KAFKA_E_INVALID_REQUEST;
    if (!err)
        return 0;
    *rc = bg_kafka__respond_error(az, err);
    return 1;
}

/* The tracked record of (group, member) when this connection may use it for
 * an incremental request (epoch > 0), else NULL. */
static const bg_kafka_share_session_t *bg_kafka__share_usable(bg_kafka__az_t *az,
                                                              bg_slice_t group, bg_slice_t member)
{
    const bg_kafka_share_sessions_t *t = az->ctx->share;
    const bg_kafka_share_session_t *s = t ? bg_kafka_share_find(t, group, member) : NULL;
    return bg_kafka_share_usable(t, s) ? s : NULL;
}

/* What every ShareFetch and ShareAcknowledge passes first: read on the
 * group, an epoch Kafka takes (acks: an acknowledgement is carried), and
 * for an incremental or final request the session this connection holds
 * (*s; NULL at epoch 0). 1 when busgate answered it (*rc: the classifier's
 * return), 0 to go on. */
static int bg_kafka__share_gate(bg_kafka__az_t *az, bg_slice_t group, bg_slice_t member,
                                int32_t epoch, int acks, const bg_kafka_share_session_t **s,
                                int *rc)
{
    *s = NULL;
    if (!bg_kafka__decide(az, BG_RES_KAFKA_GROUP, group, BG_VERB_READ)) {
        *rc = bg_kafka__respond_error(az, BG_KAFKA_E_GROUP_AUTHORIZATION_FAILED);
        return 1;
    }
    if (bg_kafka__share_bad_epoch(az, epoch, acks, rc))
        return 1;
    /* A final request releases every record the member holds: only from
     * the connection that holds the session, like an incremental one. */
    if (epoch != 0 && !(*s = bg_kafka__share_usable(az, group, member))) {
        *rc = bg_kafka__share_reset_session(az, group);
        return 1;
    }
    return 0;
}

int bg_kafka__c_share_fetch(bg_kafka__az_t *az)
{
#define F(x) K(SHARE_FETCH_REQ_##x)
    const bg_kafka_struct_t *r = az->req;
    const bg_kafka__tp_shape_t *sh = &bg_kafka__sh_share_fetch;
    bg_slice_t group = r->f[F(GROUP_ID)].s, member = r->f[F(MEMBER_ID)].s;
    int32_t epoch = (int32_t)r->f[F(SHARE_SESSION_EPOCH)].i;
    int rc = 0;
    int acks = bg_kafka__share_has_acks(r, F(TOPICS), F(TOPICS_PARTITIONS),
                                        F(TOPICS_PARTITIONS_ACKNOWLEDGEMENT_BATCHES));
    const bg_kafka_share_session_t *s;
    if (bg_kafka__share_gate(az, group, member, epoch, acks, &s, &rc))
        return rc;
    if (epoch == 0 && az->ctx->share) /* the record it replaces, for the limits */
        s = bg_kafka_share_find(az->ctx->share, group, member);
    size_t nforget = 0, nnamed = 0;
    bg_kafka_share_tp_t *forget =
        bg_kafka__share_tps(az, r, F(FORGOTTEN_TOPICS_DATA), F(FORGOTTEN_TOPICS_DATA_PARTITIONS),
                            -1, &nforget);
    bg_kafka_share_tp_t *named = bg_kafka__share_tps(az, r, F(TOPICS), F(TOPICS_PARTITIONS),
                                                     F(TOPICS_PARTITIONS_PARTITION_INDEX), &nnamed);
    bg_kafka__split_t sp;
    const bg_kafka_struct_desc_t *rd = bg_kafka__rs_topic_desc(az->hdr->api_key, sh);
    if (!forget || !named || !rd || bg_kafka__tp_split(az, sh, rd, r, BG_VERB_READ, 0, &sp) < 0)
        return az->oom ? 0 : -1;
    if (epoch > 0) {
        int ok = bg_kafka__share_session_ok(az, s, named, nnamed, forget, nforget);
        if (!ok || bg_kafka__share_denied_in_session(&sp, s))
            return bg_kafka__share_reset_session(az, group);
    }
    bg_kafka__share_ack_errors(r, &sp);
    bg_kafka_share_update_t *u = bg_kafka__share_update(az, group, member, epoch);
    if (!u)
        return 0;
    u->add = bg_kafka__share_tps(az, sp.allowed, F(TOPICS), F(TOPICS_PARTITIONS),
                                 F(TOPICS_PARTITIONS_PARTITION_INDEX), &u->nadd);
    u->forget = forget;
    u->nforget = nforget;
    if (!u->add || bg_kafka__share_limits(az, s, u) < 0)
        return az->oom ? 0 : -1;
    az->v->share = u;
    return bg_kafka__share_forward(az, sh, &sp);
#undef F
}

/* ShareAcknowledge: read on the group, then on every topic named; refused
 * partitions get TOPIC_AUTHORIZATION_FAILED and their acknowledgements never
 * reach the broker. It fetches nothing, so the session's other partitions
 * need no check; but it moves the session's epoch on, and the broker takes
 * it from any connection, so an incremental or final one must come from
 * the connection that holds the session. A final one (epoch -1) ends the
 * tracked session. */
int bg_kafka__c_share_acknowledge(bg_kafka__az_t *az)
{
#define A(x) K(SHARE_ACKNOWLEDGE_REQ_##x)
    const bg_kafka_struct_t *r = az->req;
    const bg_kafka__tp_shape_t *sh = &bg_kafka__sh_share_ack;
    bg_slice_t group = r->f[A(GROUP_ID)].s, member = r->f[A(MEMBER_ID)].s;
    int32_t epoch = (int32_t)r->f[A(SHARE_SESSION_EPOCH)].i;
    int rc = 0;
    const bg_kafka_share_session_t *s;
    if (bg_kafka__share_gate(az, group, member, epoch, 0, &s, &rc))
        return rc;
    bg_kafka__split_t sp;
    const bg_kafka_struct_desc_t *rd = bg_kafka__rs_topic_desc(az->hdr->api_key, sh);
    if (!rd || bg_kafka__tp_split(az, sh, rd, r, BG_VERB_READ, 0, &sp) < 0)
        return az->oom ? 0 : -1;
    if (epoch == -1 && !(az->v->share = bg_kafka__share_update(az, group, member, epoch)))
        return 0;
    return bg_kafka__share_forward(az, sh, &sp);
#undef A
}
