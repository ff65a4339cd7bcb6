/* Reserved topics: no client may write, create, delete or alter them through
 * busgate, whatever the policy says (reading and describing them follow the
 * policy). The audit topic, which holds the record of what every principal
 * did, and Kafka's internal topics. */
#include <string.h>

#include "adapters/kafka/kafka_authz-internal.h"

static const char bg_kafka__why_audit[] = "reserved audit topic";
static const char bg_kafka__why_internal[] = "reserved Kafka internal topic";

/* A broker appends to its internal topics for any principal with write on
 * them when the request's client id is "__admin_client" (KafkaApis'
 * internalTopicsAllowed), and busgate passes client ids on unchanged: a
 * principal allowed to write kafka:topic:* could forge any group's
 * committed offsets (past OffsetCommit's read on the group) or corrupt
 * transaction or share-group state. The first three are Kafka's
 * Topic.isInternal; the remote-log metadata topic and the KRaft metadata
 * log's name are reserved for completeness. All start with "__". */
static const char *const bg_kafka__internal[] = {
    "__consumer_offsets",    "__transaction_state", "__share_group_state",
    "__remote_log_metadata", "__cluster_metadata",
};
#define BG_KAFKA__NINTERNAL (sizeof bg_kafka__internal / sizeof bg_kafka__internal[0])

int bg_kafka__reserved_at(const bg_kafka_authz_ctx_t *ctx, size_t i, const char **name,
                          const char **why)
{
    if (i == 0) {
        *name = ctx->audit_topic; /* NULL: audit to the topic is off */
        *why = bg_kafka__why_audit;
        return 1;
    }
    if (i > BG_KAFKA__NINTERNAL)
        return 0;
    *name = bg_kafka__internal[i - 1];
    *why = bg_kafka__why_internal;
    return 1;
}

const char *bg_kafka__reserved(const bg_kafka_authz_ctx_t *ctx, bg_slice_t name)
{
    if (name.len < 0)
        return NULL;
    const char *t = ctx->audit_topic;
    if (t && strlen(t) == (size_t)name.len && memcmp(name.p, t, (size_t)name.len) == 0)
        return bg_kafka__why_audit;
    /* Every Produce decides each topic here: most names end at this test. */
    if (name.len < 2 || name.p[0] != '_' || name.p[1] != '_')
        return NULL;
    for (size_t i = 0; i < BG_KAFKA__NINTERNAL; i++)
        if (strlen(bg_kafka__internal[i]) == (size_t)name.len &&
            memcmp(name.p, bg_kafka__internal[i], (size_t)name.len) == 0)
            return bg_kafka__why_internal;
    return NULL;
}

/* Whether a and name are the same once '.' and '_' are one character
 * (Kafka's Topic.hasCollision). */
static int bg_kafka__twins(const char *a, bg_slice_t name)
{
    if (strlen(a) != (size_t)name.len)
        return 0;
    for (int32_t i = 0; i < name.len; i++) {
        char x = a[i] == '.' ? '_' : a[i], y = name.p[i] == '.' ? '_' : (char)name.p[i];
        if (x != y)
            return 0;
    }
    return 1;
}

const char *bg_kafka__reserved_create(const bg_kafka_authz_ctx_t *ctx, bg_slice_t name)
{
    if (name.len < 0)
        return NULL;
    const char *t, *why;
    for (size_t i = 0; bg_kafka__reserved_at(ctx, i, &t, &why); i++)
        if (t && bg_kafka__twins(t, name))
            return why;
    return NULL;
}

const char *bg_kafka__reserved_prefix(const bg_kafka_authz_ctx_t *ctx, bg_slice_t prefix)
{
    if (prefix.len < 0)
        return NULL;
    const char *t, *why;
    for (size_t i = 0; bg_kafka__reserved_at(ctx, i, &t, &why); i++)
        if (t && strlen(t) >= (size_t)prefix.len &&
            (prefix.len == 0 || memcmp(t, prefix.p, (size_t)prefix.len) == 0))
            return why;
    return NULL;
}

const char *bg_kafka__reserved_any(const bg_kafka_authz_ctx_t *ctx)
{
    return ctx->audit_topic ? bg_kafka__why_audit : bg_kafka__why_internal;
}
