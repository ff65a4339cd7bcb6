/* Names of the Kafka error codes busgate emits or logs, and the default
 * messages of the ones it puts in entries it refuses. */
#include "adapters/kafka/kafka_authz-internal.h"

typedef struct bg_kafka__err_name_s {
    int16_t code;
    const char *name;
} bg_kafka__err_name_t;

static const bg_kafka__err_name_t bg_kafka__err_names[] = {
    {0, "NONE"},
    {3, "UNKNOWN_TOPIC_OR_PARTITION"},
    {6, "NOT_LEADER_OR_FOLLOWER"},
    {15, "COORDINATOR_NOT_AVAILABLE"},
    {19, "NOT_ENOUGH_REPLICAS"},
    {23, "INCONSISTENT_GROUP_PROTOCOL"},
    {29, "TOPIC_AUTHORIZATION_FAILED"},
    {30, "GROUP_AUTHORIZATION_FAILED"},
    {31, "CLUSTER_AUTHORIZATION_FAILED"},
    {33, "UNSUPPORTED_SASL_MECHANISM"},
    {34, "ILLEGAL_SASL_STATE"},
    {35, "UNSUPPORTED_VERSION"},
    {42, "INVALID_REQUEST"},
    {44, "POLICY_VIOLATION"},
    {53, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED"},
    {55, "OPERATION_NOT_ATTEMPTED"},
    {58, "SASL_AUTHENTICATION_FAILED"},
    {89, "THROTTLING_QUOTA_EXCEEDED"},
    {100, "UNKNOWN_TOPIC_ID"},
    {122, "SHARE_SESSION_NOT_FOUND"},
    {123, "INVALID_SHARE_SESSION_EPOCH"},
};

const char *bg_kafka_error_name(int16_t code)
{
    for (size_t i = 0; i < sizeof bg_kafka__err_names / sizeof bg_kafka__err_names[0]; i++)
        if (bg_kafka__err_names[i].code == code)
            return bg_kafka__err_names[i].name;
    return "UNKNOWN";
}

/* Kafka's Errors enum, the default exception messages. */
const char *bg_kafka__error_message(int16_t code)
{
    switch (code) {
    case BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED:
        return "Topic authorization failed.";
    case BG_KAFKA_E_GROUP_AUTHORIZATION_FAILED:
        return "Group authorization failed.";
    case BG_KAFKA_E_CLUSTER_AUTHORIZATION_FAILED:
        return "Cluster authorization failed.";
    case BG_KAFKA_E_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
        return "Transactional Id authorization failed";
    case BG_KAFKA_E_UNKNOWN_TOPIC_ID:
        return "This server does not host this topic ID.";
    default:
        return NULL;
    }
}

void bg_kafka__deny_message(bg_kafka_struct_t *e, int msg_idx, int16_t err)
{
    const char *m = bg_kafka__error_message(err);
    if (m)
        e->f[msg_idx].s = bg_kafka_cstr(m);
}
