/* Classifiers of the configuration, cluster and transaction APIs. */
#include <string.h>
#include <strings.h>

#include "adapters/kafka/kafka_authz-internal.h"

#define K(x) BG_KAFKA_##x

#define BG_KAFKA__E_INVALID_REQUEST 42
#define BG_KAFKA__E_OPERATION_NOT_ATTEMPTED 55

/* ---- configs: Describe/Alter/IncrementalAlterConfigs share the layout:
 * request Resources[] {ResourceType, ResourceName, ...}; response array
 * (field 1) of {ErrorCode, ErrorMessage, ResourceType, ResourceName}. ---- */

enum { BG_KAFKA__RQ_RES = 0, BG_KAFKA__RQ_RES_TYPE = 0, BG_KAFKA__RQ_RES_NAME = 1 };
enum {
    BG_KAFKA__RS_RES = 1,
    BG_KAFKA__RS_ERR = 0,
    BG_KAFKA__RS_MSG = 1,
    BG_KAFKA__RS_TYPE = 2,
    BG_KAFKA__RS_NAME = 3
};

/* Config resource type -> policy resource type; -1 when not classifiable. */
static int bg_kafka__config_res(int64_t t)
{
    switch (t) {
    case 2: return BG_RES_KAFKA_TOPIC;
    case 4:  /* BROKER */
    case 8:  /* BROKER_LOGGER */
    case 16: /* CLIENT_METRICS */
        return BG_RES_KAFKA_CLUSTER;
    case 32: return BG_RES_KAFKA_GROUP;
    default: return -1;
    }
}

/* The entry of one config resource with err. A refusal carries the
 * error's default message, as Kafka's (ConfigHelper for DescribeConfigs,
 * ControllerApis for the alters); a whole-request error none. */
static bg_kafka_struct_t *bg_kafka__config_entry(bg_kafka_arena_t *a,
                                                 const bg_kafka_struct_desc_t *rd,
                                                 const bg_kafka_struct_t *res, int16_t err)
{
    bg_kafka_struct_t *e = bg_kafka_struct_new(a, rd);
    if (!e)
        return NULL;
    e->f[BG_KAFKA__RS_ERR].i = err;
    bg_kafka__deny_message(e, BG_KAFKA__RS_MSG, err);
    e->f[BG_KAFKA__RS_TYPE].i = res->f[BG_KAFKA__RQ_RES_TYPE].i;
    e->f[BG_KAFKA__RS_NAME].s = res->f[BG_KAFKA__RQ_RES_NAME].s;
    return e;
}

static const char bg_kafka__addr_alter[] =
    "busgate does not let clients change a broker's listeners or addresses";
static const char bg_kafka__legacy_broker_alter[] =
    "legacy AlterConfigs replaces a broker's whole dynamic configuration, its listeners too: "
    "use IncrementalAlterConfigs";

/* Whether an Alter/IncrementalAlterConfigs resource (same layout: Configs
 * at 2, each Name at 0) sets a configuration that names hosts and ports. */
static int bg_kafka__alters_addresses(const bg_kafka_struct_t *res)
{
    int32_t n = bg_kafka__n(res, BG_KAFKA_ALTER_CONFIGS_REQ_RESOURCES_CONFIGS);
    for (int32_t i = 0; i < n; i++)
        if (bg_kafka__addr_config(res->f[BG_KAFKA_ALTER_CONFIGS_REQ_RESOURCES_CONFIGS]
                                      .a.s[i]
                                      ->f[BG_KAFKA_ALTER_CONFIGS_REQ_RESOURCES_CONFIGS_NAME]
                                      .s))
            return 1;
    return 0;
}

/* 0 when allowed, else the error for this resource. A broker's host-bearing
 * configurations are hidden from clients (bg_kafka__r_describe_configs),
 * so none may change them through busgate either: a new listener would be
 * a way past it. Legacy AlterConfigs of a broker is refused whatever it
 * names: the broker deletes every dynamic configuration the request leaves
 * out (listeners, per-listener keystores and SASL settings among them). */
static int16_t bg_kafka__config_check(bg_kafka__az_t *az, const bg_kafka_struct_t *res)
{
    bg_verb_t verb = az->hdr->api_key == BG_KAFKA_API_DESCRIBE_CONFIGS ? BG_VERB_DESCRIBE
                                                                        : BG_VERB_ALTER;
    if (verb == BG_VERB_ALTER && res->f[BG_KAFKA__RQ_RES_TYPE].i == 4 /* BROKER */) {
        const char *why = az->hdr->api_key == BG_KAFKA_API_ALTER_CONFIGS
                              ? bg_kafka__legacy_broker_alter
                          : bg_kafka__alters_addresses(res) ? bg_kafka__addr_alter
                                                            : NULL;
        if (why) {
            bg_kafka__record_denied(az, BG_RES_KAFKA_CLUSTER, bg_kafka_cstr(""), verb,
                                    BG_KAFKA_E_CLUSTER_AUTHORIZATION_FAILED, why);
            return BG_KAFKA_E_CLUSTER_AUTHORIZATION_FAILED;
        }
    }
    int type = bg_kafka__config_res(res->f[BG_KAFKA__RQ_RES_TYPE].i);
    if (type < 0) {
        bg_kafka__record_denied(az, BG_RES_KAFKA_CLUSTER, bg_kafka_cstr(""), verb,
                                BG_KAFKA__E_INVALID_REQUEST, "config resource type not supported");
        return BG_KAFKA__E_INVALID_REQUEST;
    }
    bg_slice_t name = res->f[BG_KAFKA__RQ_RES_NAME].s;
    if (type == BG_RES_KAFKA_CLUSTER)
        name = bg_kafka_cstr(""); /* the broker id is not a policy resource */
    return bg_kafka__decide(az, (bg_res_type_t)type, name, verb)
               ? 0
               : bg_kafka__deny_error((bg_res_type_t)type);
}

int bg_kafka__c_configs(bg_kafka__az_t *az)
{
    const bg_kafka_struct_t *r = az->req;
    const bg_kafka_msg_desc_t *md = bg_kafka_msg_desc(az->hdr->api_key, 1);
    const bg_kafka_struct_desc_t *rd = bg_kafka_sub_desc(md->body, BG_KAFKA__RS_RES);
    int32_t n = bg_kafka__n(r, BG_KAFKA__RQ_RES);
    bg_kafka__split_t sp = {(bg_kafka_struct_t *)r, NULL, 0, 0, 0};
    bg_kafka_struct_t **keep = bg_kafka_arena_alloc(az->a, (size_t)(n + 1) * sizeof *keep);
    sp.denied = bg_kafka_arena_alloc(az->a, (size_t)(n + 1) * sizeof *sp.denied);
    if (!keep || !sp.denied)
        return (az->oom = 1, 0);
    for (int32_t i = 0; i < n; i++) {
        const bg_kafka_struct_t *res = r->f[BG_KAFKA__RQ_RES].a.s[i];
        int16_t err = bg_kafka__config_check(az, res);
        if (!err)
            keep[sp.nallowed++] = r->f[BG_KAFKA__RQ_RES].a.s[i];
        else if (!(sp.denied[sp.ndenied++] = bg_kafka__config_entry(az->a, rd, res, err)))
            return (az->oom = 1, 0);
    }
    if (sp.ndenied && sp.nallowed) {
        if (!(sp.allowed = bg_kafka_struct_clone(az->a, r)))
            return (az->oom = 1, 0);
        sp.allowed->f[BG_KAFKA__RQ_RES].a.s = keep;
        sp.allowed->f[BG_KAFKA__RQ_RES].a.n = sp.nallowed;
    }
    static const bg_kafka__tp_shape_t sh = {0, 0, -1, -1, -1, BG_KAFKA__RS_RES, BG_KAFKA__RS_NAME,
                                            -1, -1, -1, BG_KAFKA__RS_ERR, NULL, NULL};
    return bg_kafka__tp_finish(az, &sh, &sp, 0);
}

/* ---- the cluster resource ---- */

static int bg_kafka__cluster(bg_kafka__az_t *az, bg_verb_t verb)
{
    if (!bg_kafka__decide(az, BG_RES_KAFKA_CLUSTER, bg_kafka_cstr(""), verb))
        return bg_kafka__respond_error(az, BG_KAFKA_E_CLUSTER_AUTHORIZATION_FAILED);
    az->v->action = BG_KAFKA_ACT_FORWARD;
    return 0;
}

int bg_kafka__c_cluster_describe(bg_kafka__az_t *az)
{
    return bg_kafka__cluster(az, BG_VERB_DESCRIBE);
}

/* DescribeCluster, as Kafka decides it: the broker list (busgate's own
 * addresses after the rewrite) is open to every principal, as Metadata is;
 * describe on the cluster only decides whether the cluster authorized
 * operations are filled in (0 without it, kafka_authz_ops.c). The Java
 * AdminClient asks for it before describeTopics. Recorded as the cluster
 * decision when that allows, else as an allow with busgate's reason. */
int bg_kafka__c_describe_cluster(bg_kafka__az_t *az)
{
    az->v->action = BG_KAFKA_ACT_FORWARD;
    if (bg_kafka__permits(az->ctx, BG_RES_KAFKA_CLUSTER, bg_kafka_cstr(""), BG_VERB_DESCRIBE)) {
        bg_kafka__decide(az, BG_RES_KAFKA_CLUSTER, bg_kafka_cstr(""), BG_VERB_DESCRIBE);
        return 0;
    }
    bg_kafka__record_allowed(az, BG_RES_KAFKA_CLUSTER, bg_kafka_cstr(""), BG_VERB_DESCRIBE,
                             "broker list: open to every principal as in Kafka; "
                             "no cluster authorized operations without describe on the cluster");
    return 0;
}

int bg_kafka__c_cluster_alter(bg_kafka__az_t *az)
{
    return bg_kafka__cluster(az, BG_VERB_ALTER);
}

/* ---- the reserved topics in ACL and partition-admin requests ----
 *
 * These APIs run with busgate's own upstream credential, so a principal the
 * policy allows `alter` on the cluster could otherwise delete the ACLs that
 * protect the audit topic or Kafka's internal topics, grant itself direct
 * access to them, or move and re-elect their partitions. busgate refuses,
 * entry by entry, whatever could touch a reserved topic
 * (kafka_authz_reserved.c), with CLUSTER_AUTHORIZATION_FAILED (what Kafka
 * answers an unauthorized entry) and the reason "reserved audit topic" or
 * "reserved Kafka internal topic". */

/* Kafka ACL codes (org.apache.kafka.common.resource). */
enum {
    BG_KAFKA__ACL_RT_TOPIC = 2,
    BG_KAFKA__ACL_RT_GROUP = 3,
    BG_KAFKA__ACL_RT_CLUSTER = 4,
    BG_KAFKA__ACL_RT_TXN_ID = 5,
    BG_KAFKA__ACL_RT_TOKEN = 6, /* DELEGATION_TOKEN */
    BG_KAFKA__ACL_RT_USER = 7
};
enum { BG_KAFKA__ACL_PT_ANY = 1, BG_KAFKA__ACL_PT_LITERAL = 3, BG_KAFKA__ACL_PT_PREFIXED = 4 };

/* Why an ACL binding or filter of a topic with this name and pattern type
 * could apply to a reserved topic (ResourcePatternFilter.matches and the
 * ACLs that authorize a topic: literal name, literal "*", prefixes); NULL
 * when it cannot. Fails closed: a null name matches every name; MATCH
 * (which always matches the literal "*" binding) and unknown pattern types
 * match. */
static const char *bg_kafka__acl_reserved(const bg_kafka__az_t *az, bg_slice_t name,
                                          int64_t pattern)
{
    if (name.len < 0 || (name.len == 1 && name.p[0] == '*' &&
                         (pattern == BG_KAFKA__ACL_PT_LITERAL || pattern == BG_KAFKA__ACL_PT_ANY)))
        return bg_kafka__reserved_any(az->ctx);
    const char *literal = bg_kafka__reserved(az->ctx, name);
    switch (pattern) {
    case BG_KAFKA__ACL_PT_LITERAL: return literal;
    case BG_KAFKA__ACL_PT_PREFIXED: return bg_kafka__reserved_prefix(az->ctx, name);
    case BG_KAFKA__ACL_PT_ANY: return literal ? literal : bg_kafka__reserved_prefix(az->ctx, name);
    default: return bg_kafka__reserved_any(az->ctx);
    }
}

static const char bg_kafka__acl_type_reason[] =
    "ACL on the cluster, a user or a delegation token: busgate's upstream credential "
    "would grant it";
static const char bg_kafka__acl_any_type_reason[] =
    "ACL of any or an unknown resource type: it could match cluster, user or "
    "delegation-token ACLs";
static const char bg_kafka__acl_self_reason[] = "ACL naming busgate's upstream principal";
static const char bg_kafka__acl_any_principal_reason[] =
    "ACL of any principal or User:*: it would apply to busgate's own principal too";

/* Whether principal (a binding's or a filter's, "Type:name") is busgate's
 * upstream one: User:<kafka.upstream sasl username>, User:ANONYMOUS without
 * SASL. The type is compared without case (fails closed), the name exactly,
 * as Kafka's authorizer compares principals. */
static int bg_kafka__acl_is_self(const bg_kafka__az_t *az, bg_slice_t principal)
{
    const char *user = az->ctx->upstream_user ? az->ctx->upstream_user : "ANONYMOUS";
    size_t ul = strlen(user);
    if (principal.len < 5 || (size_t)principal.len != 5 + ul ||
        strncasecmp((const char *)principal.p, "User:", 5) != 0)
        return 0;
    return memcmp(principal.p + 5, user, ul) == 0;
}

/* Why busgate refuses one CreateAcls binding (filter 0) or DeleteAcls
 * filter (filter 1), NULL when the policy's `alter` on the cluster decides
 * it. *topic is set for a topic ACL (a refusal is audited on the topic).
 * Only topics, groups and transactional ids are left to the policy: an ACL
 * on the cluster lets its principal, connecting to the broker directly,
 * alter anything (the audit topic too); one on a user (CREATE_TOKENS) or a
 * delegation token mints or uses a token for that user, busgate's own
 * included. busgate's own ACLs, and bindings for its principal or for
 * User:* (which includes it), are never changed through it. */
static const char *bg_kafka__acl_refusal(const bg_kafka__az_t *az, int64_t type, bg_slice_t name,
                                         int64_t pattern, bg_slice_t principal, int filter,
                                         int *topic)
{
    *topic = type == BG_KAFKA__ACL_RT_TOPIC;
    if (type != BG_KAFKA__ACL_RT_TOPIC && type != BG_KAFKA__ACL_RT_GROUP &&
        type != BG_KAFKA__ACL_RT_TXN_ID)
        return type == BG_KAFKA__ACL_RT_CLUSTER || type == BG_KAFKA__ACL_RT_TOKEN ||
                       type == BG_KAFKA__ACL_RT_USER
                   ? bg_kafka__acl_type_reason
                   : bg_kafka__acl_any_type_reason;
    const char *reserved = *topic ? bg_kafka__acl_reserved(az, name, pattern) : NULL;
    if (reserved)
        return reserved;
    if (principal.len >= 0 && bg_kafka__acl_is_self(az, principal))
        return bg_kafka__acl_self_reason;
    /* A filter of any principal deletes busgate's own ACLs with the rest;
     * a User:* binding (a DENY for everyone, say) binds busgate too. */
    if ((filter && principal.len < 0) ||
        (principal.len == 6 && strncasecmp((const char *)principal.p, "User:*", 6) == 0))
        return bg_kafka__acl_any_principal_reason;
    return NULL;
}

/* Field indices of CreateAcls / DeleteAcls: request entries and the
 * positional result entries. */
typedef struct bg_kafka__acl_shape_s {
    int16_t rq_arr, rq_type, rq_name, rq_pattern, rq_principal;
    int16_t rs_arr, rs_err, rs_msg;
} bg_kafka__acl_shape_t;

static const bg_kafka__acl_shape_t bg_kafka__sh_create_acls = {
    K(CREATE_ACLS_REQ_CREATIONS), K(CREATE_ACLS_REQ_CREATIONS_RESOURCE_TYPE),
    K(CREATE_ACLS_REQ_CREATIONS_RESOURCE_NAME), K(CREATE_ACLS_REQ_CREATIONS_RESOURCE_PATTERN_TYPE),
    K(CREATE_ACLS_REQ_CREATIONS_PRINCIPAL),
    K(CREATE_ACLS_RESP_RESULTS), K(CREATE_ACLS_RESP_RESULTS_ERROR_CODE),
    K(CREATE_ACLS_RESP_RESULTS_ERROR_MESSAGE)};

static const bg_kafka__acl_shape_t bg_kafka__sh_delete_acls = {
    K(DELETE_ACLS_REQ_FILTERS), K(DELETE_ACLS_REQ_FILTERS_RESOURCE_TYPE_FILTER),
    K(DELETE_ACLS_REQ_FILTERS_RESOURCE_NAME_FILTER), K(DELETE_ACLS_REQ_FILTERS_PATTERN_TYPE_FILTER),
    K(DELETE_ACLS_REQ_FILTERS_PRINCIPAL_FILTER),
    K(DELETE_ACLS_RESP_FILTER_RESULTS), K(DELETE_ACLS_RESP_FILTER_RESULTS_ERROR_CODE),
    K(DELETE_ACLS_RESP_FILTER_RESULTS_ERROR_MESSAGE)};

/* Work arrays of a positional split. */
typedef struct bg_kafka__pos_split_s {
    bg_kafka_struct_t **keep, **den;
    int32_t *pos;
    int32_t nk, nd;
} bg_kafka__pos_split_t;

static int bg_kafka__pos_split_init(bg_kafka__az_t *az, int32_t n, bg_kafka__pos_split_t *ps)
{
    memset(ps, 0, sizeof *ps);
    ps->keep = bg_kafka_arena_alloc(az->a, (size_t)(n + 1) * sizeof *ps->keep);
    ps->den = bg_kafka_arena_alloc(az->a, (size_t)(n + 1) * sizeof *ps->den);
    ps->pos = bg_kafka_arena_alloc(az->a, (size_t)(n + 1) * sizeof *ps->pos);
    if (!ps->keep || !ps->den || !ps->pos)
        return (az->oom = 1, -1);
    return 0;
}

/* The refused entry's result, and its audit record: alter on the topic
 * (topic set) or on the cluster. */
static bg_kafka_struct_t *bg_kafka__acl_refuse(bg_kafka__az_t *az, const bg_kafka__acl_shape_t *sh,
                                               const bg_kafka_struct_desc_t *rd, bg_slice_t name,
                                               int topic, const char *why)
{
    if (topic)
        bg_kafka__record_denied(az, BG_RES_KAFKA_TOPIC, name.len >= 0 ? name : bg_kafka_cstr("*"),
                                BG_VERB_ALTER, BG_KAFKA_E_CLUSTER_AUTHORIZATION_FAILED, why);
    else
        bg_kafka__record_denied(az, BG_RES_KAFKA_CLUSTER, bg_kafka_cstr(""), BG_VERB_ALTER,
                                BG_KAFKA_E_CLUSTER_AUTHORIZATION_FAILED, why);
    bg_kafka_struct_t *e = bg_kafka_struct_new(az->a, rd);
    if (!e)
        return (az->oom = 1, NULL);
    e->f[sh->rs_err].i = BG_KAFKA_E_CLUSTER_AUTHORIZATION_FAILED;
    e->f[sh->rs_msg].s = bg_kafka_cstr(why);
    return e;
}

/* FORWARD / FORWARD_REWRITTEN with the refused results inserted back at
 * their positions / RESPOND when every entry was refused. */
static int bg_kafka__pos_finish(bg_kafka__az_t *az, int rq_arr, int rs_arr,
                                const bg_kafka__pos_split_t *ps)
{
    if (!ps->nd) {
        az->v->action = BG_KAFKA_ACT_FORWARD;
        return 0;
    }
    if (!ps->nk) {
        bg_kafka_struct_t *resp = bg_kafka__resp_new(az);
        if (!resp)
            return 0;
        resp->f[rs_arr].a.s = ps->den;
        resp->f[rs_arr].a.n = ps->nd;
        az->v->action = BG_KAFKA_ACT_RESPOND;
        az->v->response = resp;
        return 0;
    }
    bg_kafka_struct_t *c = bg_kafka_struct_clone(az->a, az->req);
    if (!c)
        return (az->oom = 1, 0);
    c->f[rq_arr].a.s = ps->keep;
    c->f[rq_arr].a.n = ps->nk;
    az->v->action = BG_KAFKA_ACT_FORWARD_REWRITTEN;
    az->v->request = c;
    return bg_kafka__add_insert(az, rs_arr, ps->pos, ps->den, ps->nd);
}

/* CreateAcls / DeleteAcls: alter on the cluster, then every creation or
 * filter busgate refuses (bg_kafka__acl_refusal: the cluster, users,
 * delegation tokens, busgate's own principal and ACLs, reserved topics) is
 * refused on its own. */
int bg_kafka__c_acls(bg_kafka__az_t *az)
{
    const bg_kafka__acl_shape_t *sh = az->hdr->api_key == BG_KAFKA_API_CREATE_ACLS
                                          ? &bg_kafka__sh_create_acls
                                          : &bg_kafka__sh_delete_acls;
    if (bg_kafka__c_cluster_alter(az) != 0 || az->v->action != BG_KAFKA_ACT_FORWARD)
        return 0;
    const bg_kafka_struct_t *r = az->req;
    const bg_kafka_struct_desc_t *rd =
        bg_kafka_sub_desc(bg_kafka_msg_desc(az->hdr->api_key, 1)->body, sh->rs_arr);
    int32_t n = bg_kafka__n(r, sh->rq_arr);
    bg_kafka__pos_split_t ps;
    if (bg_kafka__pos_split_init(az, n, &ps) < 0)
        return 0;
    for (int32_t i = 0; i < n; i++) {
        bg_kafka_struct_t *e = r->f[sh->rq_arr].a.s[i];
        bg_slice_t name = e->f[sh->rq_name].s;
        int64_t pattern = bg_kafka__has(e->desc, sh->rq_pattern, az->ver)
                              ? e->f[sh->rq_pattern].i
                              : BG_KAFKA__ACL_PT_LITERAL; /* v0 had literal names only */
        int topic;
        const char *why = bg_kafka__acl_refusal(
            az, e->f[sh->rq_type].i, name, pattern, e->f[sh->rq_principal].s,
            az->hdr->api_key == BG_KAFKA_API_DELETE_ACLS, &topic);
        if (!why) {
            ps.keep[ps.nk++] = e;
            continue;
        }
        if (!(ps.den[ps.nd] = bg_kafka__acl_refuse(az, sh, rd, name, topic, why)))
            return 0;
        ps.pos[ps.nd++] = i;
    }
    return bg_kafka__pos_finish(az, sh->rq_arr, sh->rs_arr, &ps);
}

/* A partition refused in an ElectLeaders or AlterPartitionReassignments
 * (a reserved topic's): the error's default message, as Kafka's ApiError. */
static void bg_kafka__deny_elect(bg_kafka_struct_t *p, int16_t err)
{
    bg_kafka__deny_message(
        p, K(ELECT_LEADERS_RESP_REPLICA_ELECTION_RESULTS_PARTITION_RESULT_ERROR_MESSAGE), err);
}

static void bg_kafka__deny_reassign(bg_kafka_struct_t *p, int16_t err)
{
    bg_kafka__deny_message(
        p, K(ALTER_PARTITION_REASSIGNMENTS_RESP_RESPONSES_PARTITIONS_ERROR_MESSAGE), err);
}

static const bg_kafka__tp_shape_t bg_kafka__sh_reassign = {
    K(ALTER_PARTITION_REASSIGNMENTS_REQ_TOPICS), K(ALTER_PARTITION_REASSIGNMENTS_REQ_TOPICS_NAME),
    -1, K(ALTER_PARTITION_REASSIGNMENTS_REQ_TOPICS_PARTITIONS),
    K(ALTER_PARTITION_REASSIGNMENTS_REQ_TOPICS_PARTITIONS_PARTITION_INDEX),
    K(ALTER_PARTITION_REASSIGNMENTS_RESP_RESPONSES),
    K(ALTER_PARTITION_REASSIGNMENTS_RESP_RESPONSES_NAME), -1,
    K(ALTER_PARTITION_REASSIGNMENTS_RESP_RESPONSES_PARTITIONS),
    K(ALTER_PARTITION_REASSIGNMENTS_RESP_RESPONSES_PARTITIONS_PARTITION_INDEX),
    K(ALTER_PARTITION_REASSIGNMENTS_RESP_RESPONSES_PARTITIONS_ERROR_CODE), NULL,
    bg_kafka__deny_reassign};

static const bg_kafka__tp_shape_t bg_kafka__sh_elect = {
    K(ELECT_LEADERS_REQ_TOPIC_PARTITIONS), K(ELECT_LEADERS_REQ_TOPIC_PARTITIONS_TOPIC), -1,
    K(ELECT_LEADERS_REQ_TOPIC_PARTITIONS_PARTITIONS), -1,
    K(ELECT_LEADERS_RESP_REPLICA_ELECTION_RESULTS),
    K(ELECT_LEADERS_RESP_REPLICA_ELECTION_RESULTS_TOPIC), -1,
    K(ELECT_LEADERS_RESP_REPLICA_ELECTION_RESULTS_PARTITION_RESULT),
    K(ELECT_LEADERS_RESP_REPLICA_ELECTION_RESULTS_PARTITION_RESULT_PARTITION_ID),
    K(ELECT_LEADERS_RESP_REPLICA_ELECTION_RESULTS_PARTITION_RESULT_ERROR_CODE), NULL,
    bg_kafka__deny_elect};

static const bg_kafka__tp_shape_t bg_kafka__sh_log_dirs = {
    K(ALTER_REPLICA_LOG_DIRS_REQ_DIRS_TOPICS), K(ALTER_REPLICA_LOG_DIRS_REQ_DIRS_TOPICS_NAME), -1,
    K(ALTER_REPLICA_LOG_DIRS_REQ_DIRS_TOPICS_PARTITIONS), -1,
    K(ALTER_REPLICA_LOG_DIRS_RESP_RESULTS), K(ALTER_REPLICA_LOG_DIRS_RESP_RESULTS_TOPIC_NAME), -1,
    K(ALTER_REPLICA_LOG_DIRS_RESP_RESULTS_PARTITIONS),
    K(ALTER_REPLICA_LOG_DIRS_RESP_RESULTS_PARTITIONS_PARTITION_INDEX),
    K(ALTER_REPLICA_LOG_DIRS_RESP_RESULTS_PARTITIONS_ERROR_CODE), NULL, NULL};

/* Splits the topics of parent (the request, or one AlterReplicaLogDirs
 * dir): topics naming a reserved topic become denied entries appended to
 * den (capacity checked by the caller). Returns the kept topics' parent:
 * parent itself when nothing was refused, else a clone; NULL on oom. */
static bg_kafka_struct_t *bg_kafka__reserved_topics_split(bg_kafka__az_t *az,
                                                          const bg_kafka__tp_shape_t *sh,
                                                          const bg_kafka_struct_t *parent,
                                                          bg_kafka_struct_t **den, int32_t *nd)
{
    const bg_kafka_struct_desc_t *rd = bg_kafka__rs_topic_desc(az->hdr->api_key, sh);
    int32_t n = bg_kafka__n(parent, sh->rq_topics), nk = 0, before = *nd;
    bg_kafka_struct_t **keep = bg_kafka_arena_alloc(az->a, (size_t)(n + 1) * sizeof *keep);
    if (!keep || !rd)
        return (az->oom = 1, NULL);
    for (int32_t i = 0; i < n; i++) {
        const bg_kafka_struct_t *t = parent->f[sh->rq_topics].a.s[i];
        bg_slice_t name = t->f[sh->rq_name].s;
        const char *why = bg_kafka__reserved(az->ctx, name);
        if (!why) {
            keep[nk++] = parent->f[sh->rq_topics].a.s[i];
            continue;
        }
        bg_kafka__record_denied(az, BG_RES_KAFKA_TOPIC, name, BG_VERB_ALTER,
                                BG_KAFKA_E_CLUSTER_AUTHORIZATION_FAILED, why);
        if (!(den[(*nd)++] = bg_kafka__tp_deny_entry(az->a, sh, rd, t, name,
                                                      BG_KAFKA_E_CLUSTER_AUTHORIZATION_FAILED)))
            return (az->oom = 1, NULL);
        bg_kafka__tp_deny_values(sh, den[*nd - 1], BG_KAFKA_E_CLUSTER_AUTHORIZATION_FAILED);
    }
    if (*nd == before)
        return (bg_kafka_struct_t *)parent;
    bg_kafka_struct_t *c = bg_kafka_struct_clone(az->a, parent);
    if (!c)
        return (az->oom = 1, NULL);
    c->f[sh->rq_topics].a.s = keep;
    c->f[sh->rq_topics].a.n = nk;
    return c;
}

bg_kafka_struct_t *bg_kafka__partition_admin_error(const bg_kafka_req_hdr_t *hdr,
                                                   const bg_kafka_struct_t *req, int16_t err,
                                                   bg_kafka_arena_t *a)
{
    int elect = hdr->api_key == BG_KAFKA_API_ELECT_LEADERS;
    const bg_kafka__tp_shape_t *sh = elect ? &bg_kafka__sh_elect : &bg_kafka__sh_reassign;
    const bg_kafka_struct_desc_t *body = bg_kafka_msg_desc(hdr->api_key, 1)->body;
    bg_kafka_struct_t *r = bg_kafka__tp_error_response(hdr, req, sh, err, a);
    if (!r)
        return NULL;
    for (int32_t i = 0; i < bg_kafka__n(r, sh->rs_topics); i++)
        bg_kafka__tp_deny_values(sh, r->f[sh->rs_topics].a.s[i], err);
    bg_kafka__set_top_error(body, hdr->api_version, r, err); /* ElectLeaders v1+ */
    if (!elect)
        bg_kafka__deny_message(r, K(ALTER_PARTITION_REASSIGNMENTS_RESP_ERROR_MESSAGE), err);
    return r;
}

/* AlterPartitionReassignments, ElectLeaders: alter on the cluster; topics
 * naming a reserved topic are refused per partition. An election of every
 * partition (null topics) includes the reserved topics: refused whole, a
 * deny recorded for each of them. */
int bg_kafka__c_partition_admin(bg_kafka__az_t *az)
{
    const bg_kafka__tp_shape_t *sh = az->hdr->api_key == BG_KAFKA_API_ELECT_LEADERS
                                         ? &bg_kafka__sh_elect
                                         : &bg_kafka__sh_reassign;
    if (bg_kafka__c_cluster_alter(az) != 0 || az->v->action != BG_KAFKA_ACT_FORWARD)
        return 0;
    const bg_kafka_struct_t *r = az->req;
    if (r->f[sh->rq_topics].a.n < 0) {
        const char *t, *why;
        for (size_t i = 0; bg_kafka__reserved_at(az->ctx, i, &t, &why); i++)
            if (t)
                bg_kafka__record_denied(az, BG_RES_KAFKA_TOPIC, bg_kafka_cstr(t), BG_VERB_ALTER,
                                        BG_KAFKA_E_CLUSTER_AUTHORIZATION_FAILED, why);
        return bg_kafka__respond_error(az, BG_KAFKA_E_CLUSTER_AUTHORIZATION_FAILED);
    }
    int32_t n = bg_kafka__n(r, sh->rq_topics);
    bg_kafka__split_t sp = {NULL, NULL, 0, 0, 0};
    sp.denied = bg_kafka_arena_alloc(az->a, (size_t)(n + 1) * sizeof *sp.denied);
    if (!sp.denied ||
        !(sp.allowed = bg_kafka__reserved_topics_split(az, sh, r, sp.denied, &sp.ndenied)))
        return (az->oom = 1, 0);
    sp.nallowed = n - sp.ndenied;
    return bg_kafka__tp_finish(az, sh, &sp, 0);
}

static const char bg_kafka__commit_marker[] =
    "commit markers are refused: only aborting a hanging transaction is supported";

/* WriteTxnMarkers, the way `kafka-transactions.sh abort` (Admin
 * abortTransaction, KIP-664) ends a hanging transaction: as in Kafka, alter
 * on the cluster (brokers use it too, with CLUSTER_ACTION, but never through
 * busgate). Stricter than Kafka: only abort markers (a commit marker would
 * make part of someone else's transaction visible), and a marker for a
 * reserved topic (kafka_authz_reserved.c) refuses the whole request,
 * recorded as a write on that topic. */
int bg_kafka__c_write_txn_markers(bg_kafka__az_t *az)
{
    if (bg_kafka__c_cluster_alter(az) != 0 || az->v->action != BG_KAFKA_ACT_FORWARD)
        return 0;
    const bg_kafka_struct_t *r = az->req;
    int32_t nm = bg_kafka__n(r, K(WRITE_TXN_MARKERS_REQ_MARKERS));
    for (int32_t i = 0; i < nm; i++) {
        const bg_kafka_struct_t *m = r->f[K(WRITE_TXN_MARKERS_REQ_MARKERS)].a.s[i];
        if (m->f[K(WRITE_TXN_MARKERS_REQ_MARKERS_TRANSACTION_RESULT)].i) {
            bg_kafka__record_denied(az, BG_RES_KAFKA_CLUSTER, bg_kafka_cstr(""), BG_VERB_ALTER,
                                    BG_KAFKA_E_CLUSTER_AUTHORIZATION_FAILED,
                                    bg_kafka__commit_marker);
            return bg_kafka__respond_error(az, BG_KAFKA_E_CLUSTER_AUTHORIZATION_FAILED);
        }
        int32_t nt = bg_kafka__n(m, K(WRITE_TXN_MARKERS_REQ_MARKERS_TOPICS));
        for (int32_t j = 0; j < nt; j++) {
            bg_slice_t name = m->f[K(WRITE_TXN_MARKERS_REQ_MARKERS_TOPICS)]
                                  .a.s[j]
                                  ->f[K(WRITE_TXN_MARKERS_REQ_MARKERS_TOPICS_NAME)]
                                  .s;
            const char *why = bg_kafka__reserved(az->ctx, name);
            if (!why)
                continue;
            bg_kafka__record_denied(az, BG_RES_KAFKA_TOPIC, name, BG_VERB_WRITE,
                                    BG_KAFKA_E_CLUSTER_AUTHORIZATION_FAILED, why);
            return bg_kafka__respond_error(az, BG_KAFKA_E_CLUSTER_AUTHORIZATION_FAILED);
        }
    }
    return 0;
}

/* AlterReplicaLogDirs: the same, for the topics of every dir; a dir left
 * without topics is dropped from the forwarded request. */
int bg_kafka__c_alter_replica_log_dirs(bg_kafka__az_t *az)
{
    if (bg_kafka__c_cluster_alter(az) != 0 || az->v->action != BG_KAFKA_ACT_FORWARD)
        return 0;
    const bg_kafka__tp_shape_t *sh = &bg_kafka__sh_log_dirs;
    const bg_kafka_struct_t *r = az->req;
    int32_t nd = bg_kafka__n(r, K(ALTER_REPLICA_LOG_DIRS_REQ_DIRS)), nt = 0, kd = 0, kt = 0;
    for (int32_t i = 0; i < nd; i++)
        nt += bg_kafka__n(r->f[K(ALTER_REPLICA_LOG_DIRS_REQ_DIRS)].a.s[i], sh->rq_topics);
    bg_kafka__split_t sp = {NULL, NULL, 0, 0, 0};
    bg_kafka_struct_t **dirs = bg_kafka_arena_alloc(az->a, (size_t)(nd + 1) * sizeof *dirs);
    sp.denied = bg_kafka_arena_alloc(az->a, (size_t)(nt + 1) * sizeof *sp.denied);
    if (!dirs || !sp.denied)
        return (az->oom = 1, 0);
    for (int32_t i = 0; i < nd; i++) {
        bg_kafka_struct_t *d = bg_kafka__reserved_topics_split(
            az, sh, r->f[K(ALTER_REPLICA_LOG_DIRS_REQ_DIRS)].a.s[i], sp.denied, &sp.ndenied);
        if (!d)
            return 0;
        if (bg_kafka__n(d, sh->rq_topics) > 0) {
            dirs[kd++] = d;
            kt += bg_kafka__n(d, sh->rq_topics);
        }
    }
    sp.nallowed = kt;
    sp.allowed = (bg_kafka_struct_t *)r;
    if (sp.ndenied && kt && !(sp.allowed = bg_kafka_struct_clone(az->a, r)))
        return (az->oom = 1, 0);
    if (sp.ndenied && kt) {
        sp.allowed->f[K(ALTER_REPLICA_LOG_DIRS_REQ_DIRS)].a.s = dirs;
        sp.allowed->f[K(ALTER_REPLICA_LOG_DIRS_REQ_DIRS)].a.n = kd;
    }
    return bg_kafka__tp_finish(az, sh, &sp, 0);
}

/* ---- transactions ---- */

static int bg_kafka__txn_write(bg_kafka__az_t *az, bg_slice_t txn)
{
    return bg_kafka__decide(az, BG_RES_KAFKA_TXN_ID, txn, BG_VERB_WRITE);
}

/* A null transactional id is an idempotent producer. Kafka allows it with
 * IDEMPOTENT_WRITE on the cluster (here: write on the cluster) or, since
 * KIP-679, with write on some topic, and answers CLUSTER_AUTHORIZATION_FAILED
 * otherwise. The allow is recorded on the name that showed it. */
typedef struct bg_kafka__some_s {
    const bg_kafka_authz_ctx_t *ctx;
    bg_kafka_arena_t *a;
    bg_slice_t name;
} bg_kafka__some_t;

static int bg_kafka__some_topic(void *arg, const char *name, size_t len)
{
    bg_kafka__some_t *s = arg;
    bg_slice_t n = {(const uint8_t *)name, (int32_t)len};
    if (!bg_kafka__permits(s->ctx, BG_RES_KAFKA_TOPIC, n, BG_VERB_WRITE))
        return 0;
    uint8_t *copy = bg_kafka_arena_alloc(s->a, len ? len : 1);
    if (!copy)
        return -1;
    memcpy(copy, name, len);
    s->name = (bg_slice_t){copy, (int32_t)len};
    return 1;
}

static int bg_kafka__idempotent_write(bg_kafka__az_t *az)
{
    bg_slice_t cluster = bg_kafka_cstr("");
    if (bg_kafka__permits(az->ctx, BG_RES_KAFKA_CLUSTER, cluster, BG_VERB_WRITE))
        return bg_kafka__decide(az, BG_RES_KAFKA_CLUSTER, cluster, BG_VERB_WRITE);
    bg_kafka__some_t s = {az->ctx, az->a, {NULL, -1}};
    int rc = bg_policy_allowed_names(az->ctx->policy, az->ctx->principal, BG_RES_KAFKA_TOPIC,
                                     BG_VERB_WRITE, bg_kafka__some_topic, &s);
    if (rc < 0)
        return bg_kafka__fail(az, "out of memory");
    if (rc > 0)
        return bg_kafka__decide(az, BG_RES_KAFKA_TOPIC, s.name, BG_VERB_WRITE);
    bg_kafka__record_denied(az, BG_RES_KAFKA_CLUSTER, cluster, BG_VERB_WRITE,
                            BG_KAFKA_E_CLUSTER_AUTHORIZATION_FAILED,
                            "idempotent producer: no write on the cluster or on any topic");
    return 0;
}

int bg_kafka__c_init_producer_id(bg_kafka__az_t *az)
{
    bg_slice_t txn = az->req->f[K(INIT_PRODUCER_ID_REQ_TRANSACTIONAL_ID)].s;
    if (txn.len >= 0 && !bg_kafka__txn_write(az, txn))
        return bg_kafka__respond_error(az, BG_KAFKA_E_TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    if (txn.len < 0) {
        int ok = bg_kafka__idempotent_write(az);
        if (ok < 0)
            return -1;
        if (!ok)
            return bg_kafka__respond_error(az, BG_KAFKA_E_CLUSTER_AUTHORIZATION_FAILED);
    }
    az->v->action = BG_KAFKA_ACT_FORWARD;
    return 0;
}

int bg_kafka__c_end_txn(bg_kafka__az_t *az)
{
    if (!bg_kafka__txn_write(az, az->req->f[K(END_TXN_REQ_TRANSACTIONAL_ID)].s))
        return bg_kafka__respond_error(az, BG_KAFKA_E_TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    az->v->action = BG_KAFKA_ACT_FORWARD;
    return 0;
}

int bg_kafka__c_add_offsets_to_txn(bg_kafka__az_t *az)
{
    const bg_kafka_struct_t *r = az->req;
    if (!bg_kafka__txn_write(az, r->f[K(ADD_OFFSETS_TO_TXN_REQ_TRANSACTIONAL_ID)].s))
        return bg_kafka__respond_error(az, BG_KAFKA_E_TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    if (!bg_kafka__decide(az, BG_RES_KAFKA_GROUP, r->f[K(ADD_OFFSETS_TO_TXN_REQ_GROUP_ID)].s,
                          BG_VERB_READ))
        return bg_kafka__respond_error(az, BG_KAFKA_E_GROUP_AUTHORIZATION_FAILED);
    az->v->action = BG_KAFKA_ACT_FORWARD;
    return 0;
}

static const bg_kafka__tp_shape_t bg_kafka__sh_add_partitions = {
    K(ADD_PARTITIONS_TO_TXN_REQ_V3_AND_BELOW_TOPICS),
    K(ADD_PARTITIONS_TO_TXN_REQ_V3_AND_BELOW_TOPICS_NAME), -1,
    K(ADD_PARTITIONS_TO_TXN_REQ_V3_AND_BELOW_TOPICS_PARTITIONS), -1,
    K(ADD_PARTITIONS_TO_TXN_RESP_RESULTS_BY_TOPIC_V3_AND_BELOW),
    K(ADD_PARTITIONS_TO_TXN_RESP_RESULTS_BY_TOPIC_V3_AND_BELOW_NAME), -1,
    K(ADD_PARTITIONS_TO_TXN_RESP_RESULTS_BY_TOPIC_V3_AND_BELOW_RESULTS_BY_PARTITION),
    K(ADD_PARTITIONS_TO_TXN_RESP_RESULTS_BY_TOPIC_V3_AND_BELOW_RESULTS_BY_PARTITION_PARTITION_INDEX),
    K(ADD_PARTITIONS_TO_TXN_RESP_RESULTS_BY_TOPIC_V3_AND_BELOW_RESULTS_BY_PARTITION_PARTITION_ERROR_CODE),
    NULL, NULL};

/* AddPartitionsToTxn (client form, v0-3) is all-or-nothing in Kafka: when
 * any topic is denied, denied partitions get TOPIC_AUTHORIZATION_FAILED and
 * the others OPERATION_NOT_ATTEMPTED; nothing is forwarded. */
int bg_kafka__c_add_partitions_to_txn(bg_kafka__az_t *az)
{
    const bg_kafka_struct_t *r = az->req;
    const bg_kafka__tp_shape_t *sh = &bg_kafka__sh_add_partitions;
    int16_t force = 0;
    if (!bg_kafka__txn_write(az, r->f[K(ADD_PARTITIONS_TO_TXN_REQ_V3_AND_BELOW_TRANSACTIONAL_ID)].s))
        force = BG_KAFKA_E_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    const bg_kafka_struct_desc_t *rd = bg_kafka__rs_topic_desc(az->hdr->api_key, sh);
    bg_kafka__split_t sp;
    if (bg_kafka__tp_split(az, sh, rd, r, BG_VERB_WRITE, force, &sp) < 0)
        return 0;
    if (!sp.ndenied && !force) {
        az->v->action = BG_KAFKA_ACT_FORWARD;
        return 0;
    }
    int32_t na = bg_kafka__n(sp.allowed, sh->rq_topics);
    bg_kafka_struct_t **all = bg_kafka_arena_alloc(az->a, (size_t)(na + sp.ndenied + 1) *
                                                              sizeof *all);
    if (!all)
        return (az->oom = 1, 0);
    for (int32_t i = 0; i < na; i++) {
        const bg_kafka_struct_t *t = sp.allowed->f[sh->rq_topics].a.s[i];
        if (!(all[i] = bg_kafka__tp_deny_entry(az->a, sh, rd, t, t->f[sh->rq_name].s,
                                               BG_KAFKA__E_OPERATION_NOT_ATTEMPTED)))
            return (az->oom = 1, 0);
    }
    if (sp.ndenied)
        memcpy(all + na, sp.denied, (size_t)sp.ndenied * sizeof *all);
    bg_kafka_struct_t *resp = bg_kafka__resp_new(az);
    if (!resp)
        return 0;
    resp->f[sh->rs_topics].a.s = all;
    resp->f[sh->rs_topics].a.n = na + sp.ndenied;
    az->v->action = BG_KAFKA_ACT_RESPOND;
    az->v->response = resp;
    return 0;
}

/* ---- per-entry error responses of admin APIs without a top-level error ---- */

static bg_kafka_struct_t *bg_kafka__count_error(const bg_kafka_req_hdr_t *hdr,
                                                const bg_kafka_struct_t *req, int rq_arr,
                                                int rs_arr, int err_idx, int msg_idx,
                                                int16_t err, bg_kafka_arena_t *a)
{
    const bg_kafka_msg_desc_t *md = bg_kafka_msg_desc(hdr->api_key, 1);
    bg_kafka_struct_t *resp = bg_kafka_struct_new(a, md->body);
    int32_t n = bg_kafka__n(req, rq_arr);
    bg_kafka_struct_t **el = resp ? bg_kafka_array_new(a, resp, rs_arr, n) : NULL;
    if (!el)
        return NULL;
    for (int32_t i = 0; i < n; i++) {
        el[i]->f[err_idx].i = err;
        bg_kafka__deny_message(el[i], msg_idx, err);
    }
    return resp;
}

static bg_kafka_struct_t *bg_kafka__configs_error(const bg_kafka_req_hdr_t *hdr,
                                                  const bg_kafka_struct_t *req, int16_t err,
                                                  bg_kafka_arena_t *a)
{
    const bg_kafka_msg_desc_t *md = bg_kafka_msg_desc(hdr->api_key, 1);
    const bg_kafka_struct_desc_t *rd = bg_kafka_sub_desc(md->body, BG_KAFKA__RS_RES);
    bg_kafka_struct_t *resp = bg_kafka_struct_new(a, md->body);
    int32_t n = bg_kafka__n(req, BG_KAFKA__RQ_RES);
    bg_kafka_struct_t **el = resp ? bg_kafka_array_new(a, resp, BG_KAFKA__RS_RES, n) : NULL;
    for (int32_t i = 0; el && i < n; i++)
        if (!(el[i] = bg_kafka__config_entry(a, rd, req->f[BG_KAFKA__RQ_RES].a.s[i], err)))
            return NULL;
    return el ? resp : NULL;
}

static bg_kafka_struct_t *bg_kafka__log_dirs_error(const bg_kafka_req_hdr_t *hdr,
                                                   const bg_kafka_struct_t *req, int16_t err,
                                                   bg_kafka_arena_t *a)
{
    const bg_kafka__tp_shape_t sh = bg_kafka__sh_log_dirs;
    const bg_kafka_msg_desc_t *md = bg_kafka_msg_desc(hdr->api_key, 1);
    const bg_kafka_struct_desc_t *rd = bg_kafka_sub_desc(md->body, sh.rs_topics);
    bg_kafka_struct_t *resp = bg_kafka_struct_new(a, md->body);
    int32_t nd = bg_kafka__n(req, K(ALTER_REPLICA_LOG_DIRS_REQ_DIRS)), nt = 0;
    for (int32_t i = 0; i < nd; i++)
        nt += bg_kafka__n(req->f[K(ALTER_REPLICA_LOG_DIRS_REQ_DIRS)].a.s[i], sh.rq_topics);
    bg_kafka_struct_t **el = resp ? bg_kafka_array_new(a, resp, sh.rs_topics, nt) : NULL;
    if (!el)
        return NULL;
    for (int32_t i = 0, k = 0; i < nd; i++) {
        const bg_kafka_struct_t *d = req->f[K(ALTER_REPLICA_LOG_DIRS_REQ_DIRS)].a.s[i];
        for (int32_t j = 0; j < bg_kafka__n(d, sh.rq_topics); j++, k++) {
            const bg_kafka_struct_t *t = d->f[sh.rq_topics].a.s[j];
            if (!(el[k] = bg_kafka__tp_deny_entry(a, &sh, rd, t, t->f[sh.rq_name].s, err)))
                return NULL;
        }
    }
    return resp;
}

/* WriteTxnMarkers: every partition of every marker gets err. */
static bg_kafka_struct_t *bg_kafka__txn_markers_error(const bg_kafka_req_hdr_t *hdr,
                                                      const bg_kafka_struct_t *req, int16_t err,
                                                      bg_kafka_arena_t *a)
{
    static const bg_kafka__tp_shape_t sh = {
        K(WRITE_TXN_MARKERS_REQ_MARKERS_TOPICS),
        K(WRITE_TXN_MARKERS_REQ_MARKERS_TOPICS_NAME),
        -1,
        K(WRITE_TXN_MARKERS_REQ_MARKERS_TOPICS_PARTITION_INDEXES),
        -1,
        K(WRITE_TXN_MARKERS_RESP_MARKERS_TOPICS),
        K(WRITE_TXN_MARKERS_RESP_MARKERS_TOPICS_NAME),
        -1,
        K(WRITE_TXN_MARKERS_RESP_MARKERS_TOPICS_PARTITIONS),
        K(WRITE_TXN_MARKERS_RESP_MARKERS_TOPICS_PARTITIONS_PARTITION_INDEX),
        K(WRITE_TXN_MARKERS_RESP_MARKERS_TOPICS_PARTITIONS_ERROR_CODE),
        NULL, NULL};
    const bg_kafka_msg_desc_t *md = bg_kafka_msg_desc(hdr->api_key, 1);
    const bg_kafka_struct_desc_t *mrd =
        bg_kafka_sub_desc(md->body, K(WRITE_TXN_MARKERS_RESP_MARKERS));
    const bg_kafka_struct_desc_t *trd = mrd ? bg_kafka_sub_desc(mrd, sh.rs_topics) : NULL;
    bg_kafka_struct_t *resp = trd ? bg_kafka_struct_new(a, md->body) : NULL;
    int32_t nm = bg_kafka__n(req, K(WRITE_TXN_MARKERS_REQ_MARKERS));
    bg_kafka_struct_t **ms =
        resp ? bg_kafka_array_new(a, resp, K(WRITE_TXN_MARKERS_RESP_MARKERS), nm) : NULL;
    if (!ms)
        return NULL;
    for (int32_t i = 0; i < nm; i++) {
        const bg_kafka_struct_t *m = req->f[K(WRITE_TXN_MARKERS_REQ_MARKERS)].a.s[i];
        ms[i]->f[K(WRITE_TXN_MARKERS_RESP_MARKERS_PRODUCER_ID)].i =
            m->f[K(WRITE_TXN_MARKERS_REQ_MARKERS_PRODUCER_ID)].i;
        int32_t nt = bg_kafka__n(m, sh.rq_topics);
        bg_kafka_struct_t **ts = bg_kafka_array_new(a, ms[i], sh.rs_topics, nt);
        if (!ts)
            return NULL;
        for (int32_t j = 0; j < nt; j++) {
            const bg_kafka_struct_t *t = m->f[sh.rq_topics].a.s[j];
            if (!(ts[j] = bg_kafka__tp_deny_entry(a, &sh, trd, t, t->f[sh.rq_name].s, err)))
                return NULL;
        }
    }
    return resp;
}

bg_kafka_struct_t *bg_kafka__error_entries_admin(const bg_kafka_req_hdr_t *hdr,
                                                 const bg_kafka_struct_t *req, int16_t err,
                                                 bg_kafka_arena_t *a)
{
    const bg_kafka_msg_desc_t *md = bg_kafka_msg_desc(hdr->api_key, 1);
    switch (hdr->api_key) {
    case BG_KAFKA_API_CREATE_ACLS:
        return bg_kafka__count_error(hdr, req, K(CREATE_ACLS_REQ_CREATIONS),
                                     K(CREATE_ACLS_RESP_RESULTS),
                                     K(CREATE_ACLS_RESP_RESULTS_ERROR_CODE),
                                     K(CREATE_ACLS_RESP_RESULTS_ERROR_MESSAGE), err, a);
    case BG_KAFKA_API_DELETE_ACLS:
        return bg_kafka__count_error(hdr, req, K(DELETE_ACLS_REQ_FILTERS),
                                     K(DELETE_ACLS_RESP_FILTER_RESULTS),
                                     K(DELETE_ACLS_RESP_FILTER_RESULTS_ERROR_CODE),
                                     K(DELETE_ACLS_RESP_FILTER_RESULTS_ERROR_MESSAGE), err, a);
    case BG_KAFKA_API_DESCRIBE_CONFIGS:
    case BG_KAFKA_API_ALTER_CONFIGS:
    case BG_KAFKA_API_INCREMENTAL_ALTER_CONFIGS: return bg_kafka__configs_error(hdr, req, err, a);
    case BG_KAFKA_API_ALTER_REPLICA_LOG_DIRS: return bg_kafka__log_dirs_error(hdr, req, err, a);
    case BG_KAFKA_API_WRITE_TXN_MARKERS: return bg_kafka__txn_markers_error(hdr, req, err, a);
    case BG_KAFKA_API_ADD_PARTITIONS_TO_TXN: /* v0-3: every partition */
        return bg_kafka__tp_error_response(hdr, req, &bg_kafka__sh_add_partitions, err, a);
    case BG_KAFKA_API_DESCRIBE_LOG_DIRS:
        /* v1-2 have no error field: Kafka answers an unauthorized caller
         * with no log dirs at all. */
        return bg_kafka_struct_new(a, md->body);
    default: return NULL;
    }
}
