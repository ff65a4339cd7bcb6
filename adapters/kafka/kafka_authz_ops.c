/* Authorized-operation bit fields (KIP-430) in responses. The broker
 * computes them for busgate's own credential; busgate's policy decides what
 * the client's principal may do, so each field becomes the broker's bits
 * that the policy also allows. Bits with no policy verb are cleared
 * (CLUSTER_ACTION, the delegation-token operations, anything unknown).
 * IDEMPOTENT_WRITE is `write` on the cluster, as InitProducerId decides it
 * (which also accepts write on some topic, KIP-679). A topic or group
 * the principal may not describe gets the "not requested" value, the
 * cluster without describe 0, as Kafka does. Applied after the merges and
 * filters, so entries busgate added or turned into errors are covered. */
#include <stdint.h>

#include "adapters/kafka/kafka_authz-internal.h"

#define K(x) BG_KAFKA_##x

/* org.apache.kafka.common.acl.AclOperation codes: bit (1 << code). */
enum {
    BG_KAFKA__OP_READ = 3,
    BG_KAFKA__OP_WRITE = 4,
    BG_KAFKA__OP_CREATE = 5,
    BG_KAFKA__OP_DELETE = 6,
    BG_KAFKA__OP_ALTER = 7,
    BG_KAFKA__OP_DESCRIBE = 8,
    BG_KAFKA__OP_DESCRIBE_CONFIGS = 10,
    BG_KAFKA__OP_ALTER_CONFIGS = 11,
    BG_KAFKA__OP_IDEMPOTENT_WRITE = 12,
};

/* "Not requested" (the field's default): left alone. */
#define BG_KAFKA__OPS_OMITTED INT32_MIN

static const struct {
    uint8_t op;
    bg_verb_t verb;
} bg_kafka__op_verbs[] = {
    {BG_KAFKA__OP_READ, BG_VERB_READ},
    {BG_KAFKA__OP_WRITE, BG_VERB_WRITE},
    {BG_KAFKA__OP_CREATE, BG_VERB_CREATE},
    {BG_KAFKA__OP_DELETE, BG_VERB_DELETE},
    {BG_KAFKA__OP_ALTER, BG_VERB_ALTER},
    {BG_KAFKA__OP_DESCRIBE, BG_VERB_DESCRIBE},
    {BG_KAFKA__OP_DESCRIBE_CONFIGS, BG_VERB_DESCRIBE},
    {BG_KAFKA__OP_ALTER_CONFIGS, BG_VERB_ALTER},
    {BG_KAFKA__OP_IDEMPOTENT_WRITE, BG_VERB_WRITE},
};

int32_t bg_kafka__authorized_ops(const bg_kafka_authz_ctx_t *ctx, bg_res_type_t type,
                                 bg_slice_t name, int32_t broker)
{
    if (broker == BG_KAFKA__OPS_OMITTED)
        return broker;
    /* Nothing about a topic or group the principal may not describe (an
     * entry a filter turned into an authorization error, a hidden group),
     * nor about one without a name (an entry asked by id whose name a
     * filter took away: a null name would be decided as ""). */
    if (type != BG_RES_KAFKA_CLUSTER &&
        (name.len < 0 || !bg_kafka__permits(ctx, type, name, BG_VERB_DESCRIBE)))
        return BG_KAFKA__OPS_OMITTED;
    uint32_t in = (uint32_t)broker, out = 0;
    unsigned done = 0; /* verbs decided already (two ops share a verb) */
    unsigned allowed = 0;
    for (size_t i = 0; i < sizeof bg_kafka__op_verbs / sizeof bg_kafka__op_verbs[0]; i++) {
        uint32_t bit = 1u << bg_kafka__op_verbs[i].op;
        bg_verb_t verb = bg_kafka__op_verbs[i].verb;
        if (!(in & bit))
            continue;
        if (!(done & (1u << verb))) {
            done |= 1u << verb;
            if (bg_kafka__permits(ctx, type, name, verb))
                allowed |= 1u << verb;
        }
        if (allowed & (1u << verb))
            out |= bit;
    }
    return (int32_t)out;
}

static void bg_kafka__ops_arr(const bg_kafka_authz_ctx_t *ctx, bg_kafka_struct_t *s, int arr,
                              int name_idx, int ops_idx, bg_res_type_t type)
{
    int32_t n = bg_kafka__n(s, arr);
    for (int32_t i = 0; i < n; i++) {
        bg_kafka_struct_t *e = s->f[arr].a.s[i];
        e->f[ops_idx].i =
            bg_kafka__authorized_ops(ctx, type, e->f[name_idx].s, (int32_t)e->f[ops_idx].i);
    }
}

/* As Kafka: without describe on the cluster, no cluster operation at all. */
static void bg_kafka__ops_cluster(const bg_kafka_authz_ctx_t *ctx, bg_kafka_struct_t *s,
                                  int ops_idx)
{
    int32_t broker = (int32_t)s->f[ops_idx].i;
    if (broker != BG_KAFKA__OPS_OMITTED &&
        !bg_kafka__permits(ctx, BG_RES_KAFKA_CLUSTER, bg_kafka_cstr(""), BG_VERB_DESCRIBE)) {
        s->f[ops_idx].i = 0;
        return;
    }
    s->f[ops_idx].i =
        bg_kafka__authorized_ops(ctx, BG_RES_KAFKA_CLUSTER, bg_kafka_cstr(""), broker);
}

void bg_kafka__fix_authorized_ops(const bg_kafka_authz_ctx_t *ctx, int16_t api_key, int16_t ver,
                                  bg_kafka_struct_t *resp)
{
    const bg_kafka_struct_desc_t *d = resp->desc;
    switch (api_key) {
    case BG_KAFKA_API_METADATA:
        if (ver < 8)
            return;
        bg_kafka__ops_arr(ctx, resp, K(METADATA_RESP_TOPICS), K(METADATA_RESP_TOPICS_NAME),
                          K(METADATA_RESP_TOPICS_TOPIC_AUTHORIZED_OPERATIONS), BG_RES_KAFKA_TOPIC);
        if (bg_kafka__has(d, K(METADATA_RESP_CLUSTER_AUTHORIZED_OPERATIONS), ver))
            bg_kafka__ops_cluster(ctx, resp, K(METADATA_RESP_CLUSTER_AUTHORIZED_OPERATIONS));
        return;
    case BG_KAFKA_API_DESCRIBE_TOPIC_PARTITIONS:
        bg_kafka__ops_arr(ctx, resp, K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS),
                          K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_NAME),
                          K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_TOPIC_AUTHORIZED_OPERATIONS),
                          BG_RES_KAFKA_TOPIC);
        return;
    case BG_KAFKA_API_DESCRIBE_CLUSTER:
        bg_kafka__ops_cluster(ctx, resp, K(DESCRIBE_CLUSTER_RESP_CLUSTER_AUTHORIZED_OPERATIONS));
        return;
    case BG_KAFKA_API_DESCRIBE_GROUPS:
        if (ver >= 3)
            bg_kafka__ops_arr(ctx, resp, K(DESCRIBE_GROUPS_RESP_GROUPS),
                              K(DESCRIBE_GROUPS_RESP_GROUPS_GROUP_ID),
                              K(DESCRIBE_GROUPS_RESP_GROUPS_AUTHORIZED_OPERATIONS),
                              BG_RES_KAFKA_GROUP);
        return;
    case BG_KAFKA_API_CONSUMER_GROUP_DESCRIBE:
        bg_kafka__ops_arr(ctx, resp, K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS),
                          K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS_GROUP_ID),
                          K(CONSUMER_GROUP_DESCRIBE_RESP_GROUPS_AUTHORIZED_OPERATIONS),
                          BG_RES_KAFKA_GROUP);
        return;
    case BG_KAFKA_API_SHARE_GROUP_DESCRIBE:
        bg_kafka__ops_arr(ctx, resp, K(SHARE_GROUP_DESCRIBE_RESP_GROUPS),
                          K(SHARE_GROUP_DESCRIBE_RESP_GROUPS_GROUP_ID),
                          K(SHARE_GROUP_DESCRIBE_RESP_GROUPS_AUTHORIZED_OPERATIONS),
                          BG_RES_KAFKA_GROUP);
        return;
    default: return;
    }
}
