/* Kafka request authorization: classification of every request into
 * (resource, verb) pairs following Kafka's ACL semantics, the policy
 * decision, and what to do with the request and its response:
 * forward it untouched, forward a rewritten (split) request and merge the
 * denied entries into the response, or answer locally with protocol-correct
 * errors. Also the response rewrites that do not depend on policy (broker
 * addresses in Metadata, FindCoordinator, DescribeCluster and the
 * NodeEndpoints of Produce/Fetch responses).
 *
 * Pure: works on codec trees (kafka_codec.h); no sockets, no libevent, no
 * globals except the read-only API table. The session (kafka_session.c) owns
 * the bytes and the I/O and calls these functions.
 *
 * Lifetime: every pointer stored in a bg_kafka_verdict_t is allocated from
 * the arena passed in, or borrows from the request tree/buffer; the session
 * keeps the request's arena and buffer alive until the response is done. */
#ifndef BG_KAFKA_AUTHZ_H
#define BG_KAFKA_AUTHZ_H

#include <stddef.h>
#include <stdint.h>

#include "adapters/kafka/kafka_codec.h"
#include "adapters/kafka/kafka_frame.h"
#include "adapters/kafka/kafka_share.h"
#include "broker/bytes.h"
#include "policy/policy.h"

/* ---- what busgate can decode and enforce ---- */

/* Version range busgate accepts for api_key (intersected with the upstream's
 * range by the session when it answers ApiVersions). Returns 0 when busgate
 * does not support the API at all (then it is not advertised and a request
 * for it is refused). */
int bg_kafka_authz_supported(int16_t api_key, int16_t *min, int16_t *max);
/* 0 when busgate must not use api_key at all with an upstream that lists
 * [umin, umax] for it (ConsumerGroupHeartbeat v0 on a 3.x broker is the
 * early-access layout), else 1. */
int bg_kafka_authz_upstream_fits(int16_t api_key, int16_t umin, int16_t umax);

/* ---- context for one decision ---- */

/* Looks up a topic name by topic id (from Metadata responses busgate has
 * seen). Returns 1 and sets *name (borrowed; valid for the duration of the
 * authorize call) when known, else 0. */
typedef int (*bg_kafka_topic_name_fn)(void *arg, const uint8_t id[16], bg_slice_t *name);
/* Told each broker a response names (its id, and host and port as the
 * broker gave them; an empty host when the entry has none) just before its
 * address is rewritten to busgate's, so the session can serve its port
 * before the client reads the response. Returns 1 when busgate serves the
 * node on port_base + id, 0 when it does not (that port is held by another
 * process, is out of range, or the node table is full): the node is then
 * left out of the response, never pointed at a port busgate does not hold. */
typedef int (*bg_kafka_learn_node_fn)(void *arg, int32_t id, bg_slice_t host, int32_t port);

typedef struct bg_kafka_authz_ctx_s {
    const bg_policy_t *policy;
    const bg_policy_principal_t *principal;
    /* Reserved, as Kafka's internal topics always are: never written,
     * created, deleted or altered by clients; NULL = none. */
    const char *audit_topic;
    /* busgate's own user name upstream (kafka.upstream's SASL user name;
     * NULL without SASL: User:ANONYMOUS), whose ACLs clients may not change. */
    const char *upstream_user;
    bg_kafka_topic_name_fn topic_name;
    void *topic_name_arg;
    /* Address rewriting: node N is served at advertised_host:port_base+N. */
    const char *advertised_host;
    uint16_t port_base;
    bg_kafka_learn_node_fn learn_node; /* NULL: nobody listens */
    void *learn_node_arg;
    /* The connection's share fetch sessions (KIP-932); NULL = none known. */
    const bg_kafka_share_sessions_t *share;
    /* Non-NULL: nothing configured vouches for the principal any more (a
     * reload removed its token's issuer), and every decision is busgate's
     * deny for this reason (static text), refused as a policy deny is. */
    const char *unvouched;
} bg_kafka_authz_ctx_t;

/* ---- decisions, for audit and metrics ---- */

/* One group of resources with the same verb and the same decision. */
typedef struct bg_kafka_decision_s {
    bg_verb_t verb;
    bg_policy_decision_t decision;
    bg_policy_resource_t *resources; /* names borrow the request buffer */
    size_t nresources;
    int16_t error_code; /* error returned for these resources (0 when allowed) */
    /* Static text when busgate itself decided, not a policy rule (rule is
     * then NULL): "reserved audit topic", "reserved Kafka internal topic",
     * "unknown topic id", "hold: no approvals in this build", the
     * context's unvouched reason. NULL for plain policy decisions. */
    const char *reason;
    /* Produce: the records in the batches sent for these topics (whether
     * forwarded or refused), from the batch headers; 0 for other requests. */
    int64_t records;
} bg_kafka_decision_t;

typedef enum {
    BG_KAFKA_ACT_FORWARD = 0,   /* send the original request bytes upstream */
    BG_KAFKA_ACT_FORWARD_REWRITTEN, /* send `request` (re-encoded body) upstream */
    BG_KAFKA_ACT_RESPOND,       /* answer with `response` (body tree); nothing upstream */
    BG_KAFKA_ACT_CLOSE,         /* close the connection (e.g. denied acks=0 produce) */
} bg_kafka_action_t;

typedef struct bg_kafka_verdict_s {
    bg_kafka_action_t action;
    /* FORWARD_REWRITTEN: the new request body (same api; same version
     * unless upstream_version is set). */
    bg_kafka_struct_t *request;
    /* FORWARD_REWRITTEN: > 0 when `request` goes upstream at this version
     * instead of the client's (its response comes back at this version and
     * is re-encoded at the client's): Metadata v0-3, which cannot say "do
     * not auto-create", goes upstream as v4. */
    int16_t upstream_version;
    /* RESPOND: the response body to send (same api/version). */
    bg_kafka_struct_t *response;
    /* 1 when the upstream response must be decoded and passed to
     * bg_kafka_authz_response (merge denied entries, hide topics, rewrite
     * addresses). 0: forward the response bytes untouched. */
    int needs_response;
    /* 1 when no response will come (Produce acks=0). */
    int no_response;
    /* Private merge state for bg_kafka_authz_response. */
    void *merge;
    /* ShareFetch/ShareAcknowledge going upstream: what the session applies
     * to its share session tracker once the request is sent
     * (bg_kafka_share_forwarded) and once it is answered
     * (bg_kafka_share_answered). NULL otherwise. */
    bg_kafka_share_update_t *share;
    /* What was decided, for audit events and metrics. */
    bg_kafka_decision_t *decisions;
    size_t ndecisions;
    const char *close_reason; /* ACT_CLOSE: static text for the log */
} bg_kafka_verdict_t;

/* Classifies and decides request `req` (decoded body of hdr->api_key at
 * hdr->api_version) and fills v. Allocates from arena. Returns 0, or -1
 * when the request is semantically invalid (then v->action = CLOSE and
 * v->close_reason says why). Never forwards what it could not classify. */
int bg_kafka_authz_request(const bg_kafka_authz_ctx_t *ctx, const bg_kafka_req_hdr_t *hdr,
                           const bg_kafka_struct_t *req, bg_kafka_arena_t *arena,
                           bg_kafka_verdict_t *v) __attribute__((warn_unused_result));

/* Turns verdict v of request req into a refusal that forwards nothing and
 * records no decision (the audit pipeline cannot take events). A request
 * that expects a response gets error_code wherever it can carry one; one
 * that expects none (Produce acks=0) cannot be told and closes the
 * connection (reason), as does a request the API cannot answer with an
 * error; a verdict that closed still closes, for its own reason. */
void bg_kafka_authz_refuse(const bg_kafka_req_hdr_t *hdr, const bg_kafka_struct_t *req,
                           int16_t error_code, const char *reason, bg_kafka_arena_t *arena,
                           bg_kafka_verdict_t *v);

/* 1 when a response of this api/version may need rewriting even though
 * v->needs_response is 0 — never: the verdict already says so. Provided for
 * the session's fast path: returns v->needs_response. */
static inline int bg_kafka_authz_needs_response(const bg_kafka_verdict_t *v)
{
    return v->needs_response;
}

/* Post-processes the decoded upstream response `resp` for a request whose
 * verdict is v: merges denied entries, hides topics the principal may not
 * describe, rewrites broker addresses. *out is the tree to encode (may be
 * resp itself, modified in place). Reports node ids seen in broker lists
 * through nodes (up to *nnodes entries; *nnodes set to the count) so the
 * session can open listeners for new brokers, and topic id/name pairs via
 * the session's learn callback. Returns 0 or -1 (then close the connection). */
typedef void (*bg_kafka_learn_topic_fn)(void *arg, const uint8_t id[16], bg_slice_t name);

int bg_kafka_authz_response(const bg_kafka_authz_ctx_t *ctx, const bg_kafka_req_hdr_t *hdr,
                            const bg_kafka_verdict_t *v, bg_kafka_struct_t *resp,
                            bg_kafka_arena_t *arena, bg_kafka_struct_t **out, int32_t *nodes,
                            size_t *nnodes, bg_kafka_learn_topic_fn learn, void *learn_arg)
    __attribute__((warn_unused_result));

/* A response for api/version carrying error_code everywhere it can (top-level
 * error and/or every entry named in req), built from req. For refusing a
 * whole request (e.g. audit pipeline refusing, unsupported version,
 * hold without approvals). NULL when the response has no way to carry an
 * error: among the APIs busgate offers, only Metadata v0-12 asking for all
 * topics (test_kafka_authz_refuse sweeps them all). */
bg_kafka_struct_t *bg_kafka_authz_error_response(const bg_kafka_req_hdr_t *hdr,
                                                 const bg_kafka_struct_t *req, int16_t error_code,
                                                 bg_kafka_arena_t *arena);

/* Kafka error codes used by busgate. */
enum {
    BG_KAFKA_E_NONE = 0,
    BG_KAFKA_E_UNKNOWN_TOPIC_OR_PARTITION = 3,
    BG_KAFKA_E_NOT_LEADER = 6,
    BG_KAFKA_E_COORDINATOR_NOT_AVAILABLE = 15,
    BG_KAFKA_E_NOT_ENOUGH_REPLICAS = 19,
    BG_KAFKA_E_INCONSISTENT_GROUP_PROTOCOL = 23,
    BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED = 29,
    BG_KAFKA_E_GROUP_AUTHORIZATION_FAILED = 30,
    BG_KAFKA_E_CLUSTER_AUTHORIZATION_FAILED = 31,
    BG_KAFKA_E_UNSUPPORTED_SASL_MECHANISM = 33,
    BG_KAFKA_E_ILLEGAL_SASL_STATE = 34,
    BG_KAFKA_E_UNSUPPORTED_VERSION = 35,
    BG_KAFKA_E_INVALID_REQUEST = 42,
    BG_KAFKA_E_POLICY_VIOLATION = 44,
    BG_KAFKA_E_TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53,
    BG_KAFKA_E_SASL_AUTHENTICATION_FAILED = 58,
    BG_KAFKA_E_UNKNOWN_TOPIC_ID = 100,
    BG_KAFKA_E_SHARE_SESSION_NOT_FOUND = 122,
    BG_KAFKA_E_INVALID_SHARE_SESSION_EPOCH = 123,
    BG_KAFKA_E_THROTTLING_QUOTA_EXCEEDED = 89,
};

/* "TOPIC_AUTHORIZATION_FAILED", ... ("UNKNOWN" for others). */
const char *bg_kafka_error_name(int16_t code);

#endif
