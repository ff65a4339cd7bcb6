/* Private to kafka_authz*.c: the per-request working state, the decision
 * recorder, the API table and the generic split/merge machinery. */
#ifndef BG_KAFKA_AUTHZ_INTERNAL_H
#define BG_KAFKA_AUTHZ_INTERNAL_H

#include <string.h>

#include "adapters/kafka/kafka_authz.h"

/* Working state of one bg_kafka_authz_request call. */
typedef struct bg_kafka__dgroup_s {
    bg_kafka_decision_t d;
    size_t cap;
} bg_kafka__dgroup_t;

typedef struct bg_kafka__az_s {
    const bg_kafka_authz_ctx_t *ctx;
    const bg_kafka_req_hdr_t *hdr;
    int16_t ver;
    const bg_kafka_struct_t *req;
    bg_kafka_arena_t *a;
    bg_kafka_verdict_t *v;
    bg_kafka__dgroup_t *groups;
    size_t ngroups, capgroups;
    int oom; /* arena exhausted somewhere: the request is closed */
    size_t last; /* 1 + the group the last decision went to; 0: none */
    /* Produce: the records of each request topic, from one walk over the
     * batch headers; tp_split adds them to the topic's group. */
    const int64_t *topic_records;
} bg_kafka__az_t;

/* Response-side work recorded at request time (verdict->merge). Denied
 * entries are appended to a response array; when key_idx >= 0 they go into
 * sub_arr of the element of arr whose key_idx string equals key (nested
 * merges: OffsetFetch groups). */
typedef struct bg_kafka__append_s {
    int16_t arr, key_idx, sub_arr;
    bg_slice_t key;
    bg_kafka_struct_t **ents;
    int32_t n;
    struct bg_kafka__append_s *next;
} bg_kafka__append_t;

/* How the client named a filtered array's entries (Metadata,
 * DescribeTopicPartitions), so that an entry the filter turns into an
 * authorization error answers in the client's own terms, as Kafka's stub
 * does: asked by name, the broker's topic id is zeroed; asked by id, the
 * name goes. req: the decoded request (lives until the response); rq_arr,
 * rq_name, rq_id (-1: none): its topics and their name and id; rs_id: the
 * response entry's id. */
typedef struct {
    const bg_kafka_struct_t *req;
    int16_t rq_arr, rq_name, rq_id, rs_id;
} bg_kafka__filter_ids_t;
#define BG_KAFKA__NAMES_ONLY {NULL, -1, -1, -1, -1}

/* Drop (or replace by an authorization error) entries of a response array
 * the principal may not `verb`. Used by Metadata (all topics), OffsetFetch
 * (all topics) and DescribeTopicPartitions. key_idx as in append. */
typedef struct bg_kafka__filter_s {
    int16_t arr, name_idx, err_idx, sub_idx; /* err_idx/sub_idx: -1 = drop instead;
                                                name_idx -1 = drop every entry */
    int16_t key_idx, sub_arr;
    bg_slice_t key;
    bg_res_type_t type;
    bg_verb_t verb;
    struct bg_kafka__filter_s *next;
    bg_kafka__filter_ids_t ids; /* ids.req NULL: names only, no ids to hide */
} bg_kafka__filter_t;

/* Denied entries of a positional response array (results in request order,
 * no key: CreateAcls, DeleteAcls): ents[i] goes back at index pos[i]
 * (ascending) of the merged array. */
typedef struct bg_kafka__insert_s {
    int16_t arr;
    const int32_t *pos;
    bg_kafka_struct_t **ents;
    int32_t n;
    struct bg_kafka__insert_s *next;
} bg_kafka__insert_t;

typedef struct bg_kafka__merge_s {
    bg_kafka__append_t *appends;
    bg_kafka__filter_t *filters;
    bg_kafka__insert_t *inserts;
} bg_kafka__merge_t;

/* The API table (style.md: indexed by api key). classify returns 0, or -1
 * (invalid request; v->close_reason set). on_response may be NULL (only
 * merges/filters apply). */
typedef int (*bg_kafka__classify_fn)(bg_kafka__az_t *az);
/* The type of every response hook (bg_kafka__r_*): declared with it below. */
typedef int bg_kafka__resp_hook_t(const bg_kafka_authz_ctx_t *ctx, int16_t ver,
                                  bg_kafka_struct_t *resp, bg_kafka_arena_t *a, int32_t *nodes,
                                  size_t *nnodes, size_t maxnodes, bg_kafka_learn_topic_fn learn,
                                  void *learn_arg);
typedef bg_kafka__resp_hook_t *bg_kafka__resp_fn;
typedef struct bg_kafka__api_s {
    int16_t min, max; /* flexible versions: the generated descriptors' */
    bg_kafka__classify_fn classify; /* NULL: handled by the session (SASL, ApiVersions) */
    bg_kafka__resp_fn on_response;
    uint8_t always_response; /* 1: on_response rewrites every response */
    int16_t always_from;     /* ... from this version on */
} bg_kafka__api_t;

const bg_kafka__api_t *bg_kafka__api(int16_t api_key);

/* ---- decisions (kafka_authz.c) ---- */

/* Decides (type, name, verb) for the request, applying the reserved topics
 * and hold->deny, and records it. Returns 1 allowed, 0 denied. */
int bg_kafka__decide(bg_kafka__az_t *az, bg_res_type_t type, bg_slice_t name, bg_verb_t verb);
/* Records a denial that no policy rule made (unknown topic id, ...). */
void bg_kafka__record_denied(bg_kafka__az_t *az, bg_res_type_t type, bg_slice_t name,
                             bg_verb_t verb, int16_t err, const char *reason);
/* Records an allow that no policy rule made (busgate's own reason); for a
 * principal nothing vouches for (ctx->unvouched), busgate's deny with no
 * error instead. */
void bg_kafka__record_allowed(bg_kafka__az_t *az, bg_res_type_t type, bg_slice_t name,
                              bg_verb_t verb, const char *reason);
/* Pure check, nothing recorded (response filters, auto-create probe). */
int bg_kafka__permits(const bg_kafka_authz_ctx_t *ctx, bg_res_type_t type, bg_slice_t name,
                      bg_verb_t verb);
int16_t bg_kafka__deny_error(bg_res_type_t type);

/* ---- reserved topics (kafka_authz_reserved.c) ----
 * The audit topic and Kafka's internal topics (__consumer_offsets, ...):
 * never written, created, deleted or altered by a client. Each returns the
 * reason busgate records ("reserved audit topic", "reserved Kafka internal
 * topic"), or NULL. */

/* Why name is reserved; NULL when it is not (or is null). */
const char *bg_kafka__reserved(const bg_kafka_authz_ctx_t *ctx, bg_slice_t name);
/* Why creating name is refused: a reserved topic, or its twin (the same
 * name once '.' and '_' are taken as one, as Kafka does: the twin would
 * keep the reserved topic from ever being created). */
const char *bg_kafka__reserved_create(const bg_kafka_authz_ctx_t *ctx, bg_slice_t name);
/* Why a reserved topic starts with prefix (a PREFIXED ACL pattern). */
const char *bg_kafka__reserved_prefix(const bg_kafka_authz_ctx_t *ctx, bg_slice_t prefix);
/* Why a pattern that matches every name is refused (the first reserved topic's). */
const char *bg_kafka__reserved_any(const bg_kafka_authz_ctx_t *ctx);
/* The i-th reserved topic and why (i = 0: the audit topic, *name NULL when
 * none is set); 0 past the last. */
int bg_kafka__reserved_at(const bg_kafka_authz_ctx_t *ctx, size_t i, const char **name,
                          const char **why);

/* ---- verdict helpers ---- */
bg_kafka__merge_t *bg_kafka__merge(bg_kafka__az_t *az);
int bg_kafka__add_append(bg_kafka__az_t *az, int arr, int key_idx, bg_slice_t key, int sub_arr,
                         bg_kafka_struct_t **ents, int32_t n);
int bg_kafka__add_filter(bg_kafka__az_t *az, const bg_kafka__filter_t *f);
/* A request for every entry (all topics, all groups): records an allow on
 * "*" (reason "listing: ...") and adds the filter that hides what the
 * principal may not describe. */
int bg_kafka__add_listing(bg_kafka__az_t *az, const bg_kafka__filter_t *f);
int bg_kafka__add_insert(bg_kafka__az_t *az, int arr, const int32_t *pos,
                         bg_kafka_struct_t **ents, int32_t n);
/* A fresh response body of the request's api at its version (defaults). */
bg_kafka_struct_t *bg_kafka__resp_new(bg_kafka__az_t *az);
/* RESPOND with a top-level ErrorCode response (generic). */
int bg_kafka__respond_error(bg_kafka__az_t *az, int16_t err);
/* Sets the top-level ErrorCode of resp when the version has one; 1 if set. */
int bg_kafka__set_top_error(const bg_kafka_struct_desc_t *d, int16_t ver, bg_kafka_struct_t *s,
                            int16_t err);
int bg_kafka__fail(bg_kafka__az_t *az, const char *why);

static inline int bg_kafka__has(const bg_kafka_struct_desc_t *d, int idx, int16_t ver)
{
    return ver >= d->fields[idx].ver_min && ver <= d->fields[idx].ver_max;
}
static inline int32_t bg_kafka__n(const bg_kafka_struct_t *s, int idx)
{
    return s->f[idx].a.n > 0 ? s->f[idx].a.n : 0;
}
static inline int bg_kafka__slice_eq(bg_slice_t a, bg_slice_t b)
{
    return a.len == b.len && (a.len <= 0 || memcmp(a.p, b.p, (size_t)a.len) == 0);
}

/* ---- the generic topic -> partition shape (kafka_authz_topics.c) ---- */

typedef void (*bg_kafka__fill_fn)(bg_kafka_struct_t *entry);

typedef struct bg_kafka__tp_shape_s {
    /* request: topics array, name (-1: topics by id only), topic id (-1 none), partitions (-1: the
     * request has no partitions), partition index inside a partition struct
     * (-1: partitions is an int32 array) */
    int16_t rq_topics, rq_name, rq_id, rq_parts, rq_pidx;
    /* response: same, plus the error field (in the partition struct when
     * rs_parts >= 0, else in the topic struct) */
    int16_t rs_topics, rs_name, rs_id, rs_parts, rs_pidx, rs_err;
    bg_kafka__fill_fn fill; /* extra error-entry values (base_offset -1, ...) */
    /* A denial's own values (Kafka's message text), on each entry that holds
     * the error, for entries busgate refuses (not whole-request errors);
     * NULL: none. */
    void (*deny)(bg_kafka_struct_t *entry, int16_t err);
} bg_kafka__tp_shape_t;

/* Kafka's default message of an authorization error (Errors.message():
 * "Topic authorization failed.", ...) for the codes 29, 30, 31 and 53;
 * NULL for any other code. Static text. */
const char *bg_kafka__error_message(int16_t code);
/* Sets the message field msg_idx of entry e to the one above, if any. */
void bg_kafka__deny_message(bg_kafka_struct_t *e, int msg_idx, int16_t err);
/* Applies sh->deny to the entry for one refused topic (t, from
 * bg_kafka__tp_deny_entry). */
void bg_kafka__tp_deny_values(const bg_kafka__tp_shape_t *sh, bg_kafka_struct_t *t, int16_t err);

/* Builds the response entry for one request topic, every partition with err. */
bg_kafka_struct_t *bg_kafka__tp_deny_entry(bg_kafka_arena_t *a, const bg_kafka__tp_shape_t *sh,
                                           const bg_kafka_struct_desc_t *rs_topic_desc,
                                           const bg_kafka_struct_t *rq_topic, bg_slice_t name,
                                           int16_t err);

/* Splits the topics array of `parent` (the request body, or a nested struct
 * when key_idx >= 0) by (verb on each topic). force_err != 0 denies every
 * topic with that error (e.g. group denied). The allowed topics are stored
 * in out->allowed (a clone of parent sharing elements; parent itself when
 * nothing is denied); denied entries are stored in out->denied (out->ndenied).
 * Returns 0 or -1 (oom / invalid). */
typedef struct bg_kafka__split_s {
    bg_kafka_struct_t *allowed; /* parent or a clone with a subset array */
    bg_kafka_struct_t **denied; /* response entries */
    int32_t ndenied, nallowed;
    int16_t force; /* everything was denied up front (group, txn id, ...) */
} bg_kafka__split_t;

int bg_kafka__tp_split(bg_kafka__az_t *az, const bg_kafka__tp_shape_t *sh,
                       const bg_kafka_struct_desc_t *rs_topic_desc,
                       const bg_kafka_struct_t *parent, bg_verb_t verb, int16_t force_err,
                       bg_kafka__split_t *out);

/* Whole flow for a request whose only resources are its topics: split,
 * then FORWARD / FORWARD_REWRITTEN + merge / RESPOND. */
int bg_kafka__tp_apply(bg_kafka__az_t *az, const bg_kafka__tp_shape_t *sh, bg_verb_t verb,
                       int16_t force_err);
/* Applies a computed split of the top-level request: same as above. */
int bg_kafka__tp_finish(bg_kafka__az_t *az, const bg_kafka__tp_shape_t *sh,
                        const bg_kafka__split_t *sp, int rewritten);
/* Response topic descriptor of a shape for the request's api. */
const bg_kafka_struct_desc_t *bg_kafka__rs_topic_desc(int16_t api_key,
                                                      const bg_kafka__tp_shape_t *sh);
/* A response of the request's api carrying err on every partition (or
 * topic, when the shape has no partitions) of every topic of req, as
 * Kafka's getErrorResponse does for such APIs. Allocates from a; NULL at
 * the arena limit. */
bg_kafka_struct_t *bg_kafka__tp_error_response(const bg_kafka_req_hdr_t *hdr,
                                               const bg_kafka_struct_t *req,
                                               const bg_kafka__tp_shape_t *sh, int16_t err,
                                               bg_kafka_arena_t *a);
/* Per-entry error response for APIs without a top-level ErrorCode
 * (kafka_authz_groups.c: string-array requests). NULL when not handled. */
bg_kafka_struct_t *bg_kafka__error_entries_groups(const bg_kafka_req_hdr_t *hdr,
                                                  const bg_kafka_struct_t *req, int16_t err,
                                                  bg_kafka_arena_t *a);
bg_kafka_struct_t *bg_kafka__error_entries_admin(const bg_kafka_req_hdr_t *hdr,
                                                 const bg_kafka_struct_t *req, int16_t err,
                                                 bg_kafka_arena_t *a);
/* ElectLeaders / AlterPartitionReassignments refused whole, as Kafka's
 * getErrorResponse: every requested partition with err beside the
 * top-level code (kafka_authz_admin.c). NULL on oom. */
bg_kafka_struct_t *bg_kafka__partition_admin_error(const bg_kafka_req_hdr_t *hdr,
                                                   const bg_kafka_struct_t *req, int16_t err,
                                                   bg_kafka_arena_t *a);
/* 1 when id is the zero uuid (no topic id given). */
static inline int bg_kafka__uuid_zero(const uint8_t id[16])
{
    static const uint8_t z[16];
    return memcmp(id, z, 16) == 0;
}

/* Resolves the topic name of a request topic (by id through
 * ctx->topic_name when it has a non-zero one, else by name). Returns 1
 * known, 0 unknown id. */
int bg_kafka__topic_name(const bg_kafka__az_t *az, const bg_kafka__tp_shape_t *sh,
                         const bg_kafka_struct_t *t, bg_slice_t *name);

/* Requests naming resources in a string array (DescribeGroups,
 * DeleteGroups, FindCoordinator v4+, DescribeTransactions): split by
 * (type, verb); denied names become entries of response array rs_arr built
 * by entry(). force != 0 denies all with that error (nothing recorded). */
typedef bg_kafka_struct_t *(*bg_kafka__str_entry_fn)(bg_kafka_arena_t *a,
                                                     const bg_kafka_struct_desc_t *rd,
                                                     bg_slice_t name, int16_t err);
int bg_kafka__str_apply(bg_kafka__az_t *az, int rq_idx, bg_res_type_t type, bg_verb_t verb,
                        int rs_arr, bg_kafka__str_entry_fn entry, int16_t force);
bg_kafka_struct_t *bg_kafka__str_error(const bg_kafka_req_hdr_t *hdr,
                                       const bg_kafka_struct_t *req, int16_t err,
                                       bg_kafka_arena_t *a, int rq_idx, int rs_arr,
                                       bg_kafka__str_entry_fn entry);

/* Shapes and classifiers, one file per family. */
int bg_kafka__c_produce(bg_kafka__az_t *az);
int bg_kafka__c_fetch(bg_kafka__az_t *az);
int bg_kafka__c_list_offsets(bg_kafka__az_t *az);
int bg_kafka__c_offset_for_leader_epoch(bg_kafka__az_t *az);
int bg_kafka__c_metadata(bg_kafka__az_t *az);
int bg_kafka__c_describe_topic_partitions(bg_kafka__az_t *az);
int bg_kafka__c_create_topics(bg_kafka__az_t *az);
int bg_kafka__c_delete_topics(bg_kafka__az_t *az);
int bg_kafka__c_delete_records(bg_kafka__az_t *az);
int bg_kafka__c_create_partitions(bg_kafka__az_t *az);
int bg_kafka__c_describe_producers(bg_kafka__az_t *az);

int bg_kafka__c_offset_commit(bg_kafka__az_t *az);
int bg_kafka__c_txn_offset_commit(bg_kafka__az_t *az);
int bg_kafka__c_offset_fetch(bg_kafka__az_t *az);
int bg_kafka__c_offset_delete(bg_kafka__az_t *az);
int bg_kafka__c_group_read(bg_kafka__az_t *az);
int bg_kafka__c_join_group(bg_kafka__az_t *az);
int bg_kafka__c_find_coordinator(bg_kafka__az_t *az);
int bg_kafka__c_describe_groups(bg_kafka__az_t *az);
int bg_kafka__c_delete_groups(bg_kafka__az_t *az);
int bg_kafka__c_list_groups(bg_kafka__az_t *az);
int bg_kafka__c_consumer_group_heartbeat(bg_kafka__az_t *az);
int bg_kafka__c_consumer_group_describe(bg_kafka__az_t *az);

/* Share groups, KIP-932 (kafka_authz_share.c). */
int bg_kafka__c_share_group_heartbeat(bg_kafka__az_t *az);
int bg_kafka__c_share_group_describe(bg_kafka__az_t *az);
int bg_kafka__c_share_fetch(bg_kafka__az_t *az);
int bg_kafka__c_share_acknowledge(bg_kafka__az_t *az);
/* ShareGroupDescribe's whole-request error response (an entry per group). */
bg_kafka_struct_t *bg_kafka__share_group_describe_error(const bg_kafka_req_hdr_t *hdr,
                                                        const bg_kafka_struct_t *req, int16_t err,
                                                        bg_kafka_arena_t *a);

int bg_kafka__c_configs(bg_kafka__az_t *az);
int bg_kafka__c_cluster_describe(bg_kafka__az_t *az);
int bg_kafka__c_describe_cluster(bg_kafka__az_t *az);
int bg_kafka__c_cluster_alter(bg_kafka__az_t *az);
/* Cluster alter, and entries that could touch a reserved topic refused one
 * by one (kafka_authz_admin.c). */
int bg_kafka__c_acls(bg_kafka__az_t *az);
int bg_kafka__c_partition_admin(bg_kafka__az_t *az);
int bg_kafka__c_alter_replica_log_dirs(bg_kafka__az_t *az);
int bg_kafka__c_write_txn_markers(bg_kafka__az_t *az);
int bg_kafka__c_init_producer_id(bg_kafka__az_t *az);
int bg_kafka__c_add_partitions_to_txn(bg_kafka__az_t *az);
int bg_kafka__c_add_offsets_to_txn(bg_kafka__az_t *az);
int bg_kafka__c_end_txn(bg_kafka__az_t *az);
int bg_kafka__c_describe_transactions(bg_kafka__az_t *az);
int bg_kafka__c_list_transactions(bg_kafka__az_t *az);

/* Response rewrites (kafka_authz_rewrite.c). */
bg_kafka__resp_hook_t bg_kafka__r_metadata;
bg_kafka__resp_hook_t bg_kafka__r_find_coordinator;
bg_kafka__resp_hook_t bg_kafka__r_describe_cluster;
bg_kafka__resp_hook_t bg_kafka__r_produce;
bg_kafka__resp_hook_t bg_kafka__r_fetch;
bg_kafka__resp_hook_t bg_kafka__r_describe_topic_partitions;
bg_kafka__resp_hook_t bg_kafka__r_create_topics;
bg_kafka__resp_hook_t bg_kafka__r_describe_configs;
/* 1 for a broker configuration that names hosts and ports (listeners,
 * controller quorum, bootstrap servers, ...): hidden from DescribeConfigs,
 * never altered through busgate. */
int bg_kafka__addr_config(bg_slice_t name);

/* DescribeTransactions: topics the principal may not describe leave each
 * transaction's list (kafka_authz_groups.c). */
bg_kafka__resp_hook_t bg_kafka__r_describe_transactions;
/* ConsumerGroupDescribe: groups whose assignments name a topic the principal
 * may not describe (kafka_authz_groups.c). */
bg_kafka__resp_hook_t bg_kafka__r_consumer_group_describe;
/* ShareGroupDescribe: the same for share groups (kafka_authz_share.c). */
bg_kafka__resp_hook_t bg_kafka__r_share_group_describe;
/* ShareFetch / ShareAcknowledge: their NodeEndpoints (kafka_authz_rewrite.c). */
bg_kafka__resp_hook_t bg_kafka__r_share_fetch;
bg_kafka__resp_hook_t bg_kafka__r_share_acknowledge;

/* Authorized-operation fields (kafka_authz_ops.c): the broker's bits the
 * policy also allows the principal; INT32_MIN (not requested) unchanged. */
int32_t bg_kafka__authorized_ops(const bg_kafka_authz_ctx_t *ctx, bg_res_type_t type,
                                 bg_slice_t name, int32_t broker);
void bg_kafka__fix_authorized_ops(const bg_kafka_authz_ctx_t *ctx, int16_t api_key, int16_t ver,
                                  bg_kafka_struct_t *resp);

#endif
