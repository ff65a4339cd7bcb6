/* busgate audit: one event per decision, session start/end, auth failure,
 * reload, approval and admin action.
 *
 * Flow: a worker fills a bg_audit_event_t with BORROWED pointers (valid only
 * during the call) and calls bg_audit_emit(). Emit encodes the event to JSON
 * right away into a private queue entry (one per part of an event too large
 * for one record, queued together) and returns; it never touches the
 * network or the disk. One audit thread pops entries and writes the sinks:
 *   - primary: the Kafka topic (audit.kafka_topic), or the JSON-lines file
 *     (audit.file) when no topic is configured;
 *   - audit.file is also written as a local copy when a topic is the primary;
 *   - the spool (audit.spool_dir): when the primary cannot take events they
 *     are appended there and drained, in order, when it returns (and first
 *     thing at start-up).
 * Delivery is at-least-once: a drained or retried event may arrive twice,
 * always with the same event_id.
 *
 * audit.on_failure=block: when the pipeline cannot guarantee delivery (queue
 * full, or primary down and spool full/unwritable/absent) emit returns
 * BG_AUDIT_REFUSED and bg_audit_admitting() is 0 until it recovers by itself;
 * the adapter refuses the request with a retriable protocol error.
 * audit.on_failure=drop: the event is counted as dropped (metric plus a
 * rate-limited log line) and emit returns BG_AUDIT_DROPPED.
 *
 * No field of the event can carry a credential: there is no token field, only
 * the token's id (jti). */
#ifndef BG_AUDIT_H
#define BG_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "broker/config.h"
#include "policy/policy.h"

typedef struct bg_audit_s bg_audit_t;

/* The JSON of one audit record (an event, or a part of a split one). */
#define BG_AUDIT_RECORD_BYTES (512u << 10)
/* The most JSON of resources busgate records for one event (16 records'
 * worth): one request could otherwise make its audit many times its own
 * size. The Kafka adapter refuses a request naming more than this in one
 * decision; the pipeline cuts any event past it (a safety net, counted in
 * truncated, its detail "(event truncated: too large)"). */
#define BG_AUDIT_MAX_EVENT_BYTES (16u * BG_AUDIT_RECORD_BYTES)

/* bg_audit_emit results. >= 0: the request may proceed. */
enum {
    BG_AUDIT_OK = 0,       /* queued */
    BG_AUDIT_DROPPED = 1,  /* on_failure=drop and the event was lost (counted) */
    BG_AUDIT_REFUSED = -1, /* on_failure=block: refuse the request (retriable) */
    BG_AUDIT_EINVAL = -2   /* NULL audit/event or unknown kind */
};

typedef enum {
    BG_AUDIT_EV_SESSION_START = 0,
    BG_AUDIT_EV_SESSION_END,
    BG_AUDIT_EV_AUTH_FAILURE,
    BG_AUDIT_EV_DECISION,
    BG_AUDIT_EV_RELOAD,
    BG_AUDIT_EV_APPROVAL,
    BG_AUDIT_EV_ADMIN,
    BG_AUDIT_EV__COUNT
} bg_audit_kind_t;

/* Which optional non-string groups of bg_audit_event_t are present. String
 * fields are present when non-NULL. */
#define BG_AUDIT_HAS_VERB 0x01u
#define BG_AUDIT_HAS_DECISION 0x02u
#define BG_AUDIT_HAS_RESULT 0x04u
#define BG_AUDIT_HAS_MASKING 0x08u
#define BG_AUDIT_HAS_API_VERSION 0x10u
#define BG_AUDIT_HAS_SEQ 0x20u
/* Within the result group (with BG_AUDIT_HAS_RESULT): the two values not
 * every event measures (an AMQP decision has neither); without the bit
 * the encoders leave the field out. */
#define BG_AUDIT_HAS_BYTES_OUT 0x40u
#define BG_AUDIT_HAS_LATENCY 0x80u

typedef struct bg_audit_principal_s {
    const char *sub;
    const char *const *groups;
    size_t ngroups;
    const char *issuer;
    const char *token_id; /* the token's jti, never the token */
} bg_audit_principal_t;

typedef struct bg_audit_decision_s {
    bg_effect_t effect; /* applied */
    bg_effect_t would;  /* what the policy decided (differs from effect in audit mode) */
    const char *rule;   /* NULL: decided by the default */
    const char *rule_file;
    int rule_line;
    bg_mode_t mode; /* BG_MODE_ENFORCE or BG_MODE_AUDIT */
    /* "busgate" when busgate's own reason set the effect (the reserved audit
     * topic, a filtered listing, a malformed or unsupported request, a size
     * limit; the event's detail says which), NULL when the policy did. */
    const char *by;
    /* Only with mode BG_MODE_AUDIT, when rule is an audit-mode rule that
     * says what would happen: the enforce-mode rule whose effect the policy
     * applied (bg_policy_decision_t.enforced). NULL when the default decided
     * it, under a policy-wide audit mode (nothing enforced), and in enforce
     * mode (rule is then that rule). enforced_rule_line goes with it. */
    const char *enforced_rule;
    const char *enforced_rule_file;
    int enforced_rule_line;
} bg_audit_decision_t;

typedef struct bg_audit_result_s {
    int32_t error_code;     /* protocol error code, 0 = success */
    const char *error_name; /* e.g. "TOPIC_AUTHORIZATION_FAILED"; NULL = none */
    uint64_t bytes_in;
    uint64_t bytes_out; /* with BG_AUDIT_HAS_BYTES_OUT */
    uint64_t records;
    int64_t latency_us; /* with BG_AUDIT_HAS_LATENCY */
} bg_audit_result_t;

/* All pointers are borrowed for the duration of bg_audit_emit() only; strings
 * are NUL-terminated, NULL means absent. Zero-initialise, then set what you
 * have. */
typedef struct bg_audit_event_s {
    bg_audit_kind_t kind;
    const char *event_id; /* NULL: a UUID v4 is generated at emit time */
    int64_t time_ms;      /* unix ms; 0: now */
    const char *session_id;
    uint64_t seq;         /* with BG_AUDIT_HAS_SEQ: order within the session */
    const char *protocol; /* "kafka" | "amqp" | "http" */
    const char *peer;     /* "ip:port" */
    bg_audit_principal_t principal;
    const char *client_id;
    const char *client_software_name;
    const char *client_software_version;
    const char *api; /* "Produce", "basic.publish", "GET" */
    int api_version; /* with BG_AUDIT_HAS_API_VERSION */
    const bg_policy_resource_t *resources;
    size_t nresources;
    bg_verb_t verb; /* with BG_AUDIT_HAS_VERB */
    bg_audit_decision_t decision; /* with BG_AUDIT_HAS_DECISION */
    uint64_t masked_fields;       /* with BG_AUDIT_HAS_MASKING */
    uint64_t masked_records;
    const char *approval_id;
    const char *approval_state; /* "pending" | "approved" | "denied" | "expired" */
    bg_audit_result_t result;   /* with BG_AUDIT_HAS_RESULT */
    const char *auth_failure_reason;
    const char *detail; /* free-form, e.g. reload summary or admin action */
    unsigned has;       /* BG_AUDIT_HAS_* bits */
    /* Set by the pipeline, never by an emitter (emit clears them): an event
     * too large for one record is written as parts 1..parts (parts >= 2),
     * each with all the other fields and a consecutive slice of resources.
     * The encoder writes part and parts when parts >= 2. */
    uint32_t part, parts;
} bg_audit_event_t;

/* Producer settings of the Kafka topic sink, mapped by the runtime from
 * kafka.upstream. Strings are copied by bg_audit_new(). props are extra
 * librdkafka key/value pairs (props[2i] = key, props[2i+1] = value), e.g.
 * "ssl.ca.location" or "message.timeout.ms". password is never logged. */
typedef struct bg_audit_kafka_conf_s {
    const char *bootstrap;         /* "host:port,host:port" */
    const char *security_protocol; /* "plaintext" | "sasl_plaintext" | "ssl" | "sasl_ssl"; NULL = plaintext */
    const char *sasl_mechanism;    /* "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512" */
    const char *username;
    const char *password;
    const char *const *props;
    size_t nprops;
    /* With audit.format avro: > 0 frames each value in the Confluent wire
     * format with this schema id; 0 writes plain Avro binary. */
    int32_t avro_schema_id;
} bg_audit_kafka_conf_t;

/* Counters for /metrics; all monotonic except queue_depth and admitting. */
typedef struct bg_audit_stats_s {
    uint64_t emitted;        /* events queued by emit (each part of a split event counts) */
    uint64_t delivered;      /* accepted by the primary sink (Kafka: acked) */
    uint64_t spooled;        /* appended to the spool */
    uint64_t drained;        /* read back from the spool and delivered */
    uint64_t dropped;        /* events lost (on_failure: drop; a deleted active spool segment) */
    uint64_t refused;        /* emits refused (on_failure=block), however many parts */
    uint64_t spool_corrupt;  /* corrupt/truncated spool regions skipped */
    uint64_t spool_unreadable; /* spool segments moved aside: they cannot be read */
    uint64_t sink_errors;    /* failed writes, any sink */
    uint64_t rejected;       /* refused for good by the primary: dead-lettered (or dropped) */
    uint64_t truncated;      /* events cut to BG_AUDIT_MAX_EVENT_BYTES of resources */
    uint64_t queue_depth;    /* current */
    uint64_t spool_bytes;    /* current size of the spool on disk */
    uint64_t spool_unsynced; /* current: spooled bytes not yet fdatasync'ed */
    int admitting;           /* current */
} bg_audit_stats_t;

/* Creates the pipeline and starts its thread. cfg must be enabled and name
 * a kafka_topic or a file; kafka is required when cfg->kafka_topic is set
 * (ignored otherwise). instance names this process in every event. Opens the
 * file sink and the spool and schedules the spool drain. Copies everything it
 * keeps. Returns NULL with a message in err on failure. */
bg_audit_t *bg_audit_new(const bg_config_audit_t *cfg, const char *instance,
                         const bg_audit_kafka_conf_t *kafka, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Encodes ev and queues it. Thread-safe, called from any worker thread; takes
 * a mutex briefly, never blocks on I/O. ev and its strings are only read during
 * the call. Returns BG_AUDIT_OK, BG_AUDIT_DROPPED, BG_AUDIT_REFUSED or
 * BG_AUDIT_EINVAL (see above). */
int bg_audit_emit(bg_audit_t *a, const bg_audit_event_t *ev) __attribute__((warn_unused_result));
/* The same for an event of work already admitted (bg_audit_admitting() was
 * true when the request was let in: its decision recorded when the response
 * comes, its session's end). In block mode it is queued even while the
 * sinks fail or the queue is at audit.queue_size: refusing it could no
 * longer stop the request, only lose its record. Memory stays bounded by
 * the requests in flight. In drop mode it behaves as bg_audit_emit(). */
int bg_audit_emit_admitted(bg_audit_t *a, const bg_audit_event_t *ev)
    __attribute__((warn_unused_result));
/* For an adapter's session events: decisions and session starts (the
 * adapters check bg_audit_admitting() before they decide and before they
 * verify a token) and session ends are admitted work
 * (bg_audit_emit_admitted); authentication failures are not (bg_audit_emit:
 * refused, counted, while the pipeline does not admit). */
int bg_audit_emit_session(bg_audit_t *a, const bg_audit_event_t *ev)
    __attribute__((warn_unused_result));

/* 1 when emit would currently queue events (readiness), 0 when on_failure=block
 * would refuse them. Lock-free, any thread. */
int bg_audit_admitting(const bg_audit_t *a);

/* Snapshot of the counters. Any thread. */
void bg_audit_stats(const bg_audit_t *a, bg_audit_stats_t *out);

/* Waits until every event emitted before the call has reached the primary sink
 * or the spool, and the file/spool are synced. Events held in block mode
 * are sent to the primary first. Returns 0, or -1 on timeout or when some
 * event reached neither (still held). Any thread except the audit thread. */
int bg_audit_flush(bg_audit_t *a, int timeout_ms);

/* Flushes (bounded wait), stops the thread and closes the sinks. Events still
 * queued go to the primary or the spool. NULL is a no-op. */
void bg_audit_free(bg_audit_t *a);

/* Writes a random UUID v4 ("xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx") into out.
 * For emitters that need the id before emitting (e.g. to link an approval). */
void bg_audit_uuid4(char out[37]);

/* Encodes ev as one JSON object (no newline) into dst of capacity cap, NUL-
 * terminated. A NULL ev->event_id gets a fresh UUID v4 and time_ms 0 the
 * current time; instance may be NULL. Returns the length, or 0 when cap is too
 * small. Thread-safe, no allocation; what emit uses (for each part of an event
 * it splits), exposed for tests/tools. */
size_t bg_audit_encode_json(const bg_audit_event_t *ev, const char *instance, char *dst, size_t cap);

/* The JSON length of res[0..n) as the elements of "resources" (commas
 * included): the measure the pipeline splits and cuts an event by. Any
 * thread, no allocation. */
size_t bg_audit_resources_json_len(const bg_policy_resource_t *res, size_t n);
/* How many of res[0..n), from the first, fit in budget bytes of that JSON. */
size_t bg_audit_resources_fit(const bg_policy_resource_t *res, size_t n, size_t budget);

const char *bg_audit_kind_name(bg_audit_kind_t k); /* "decision", ... */

/* Fills d's effect, would, mode, rule and, for an audit-mode rule reported
 * over an enforce-mode one, enforced_rule from the policy decision pd (by
 * is left alone). The strings are the policy's: valid while it is. */
void bg_audit_decision_set(bg_audit_decision_t *d, const bg_policy_decision_t *pd);

struct bg_principal_s;
/* Starts an event of a protocol session: zeroes ev, then sets kind, the
 * session id, the next sequence number (++*seq), protocol, peer, the
 * principal's sub/groups/issuer/token id (p may be NULL before
 * authentication) and the client id and software (empty strings count as
 * absent). Every pointer is borrowed: ev is valid while they are. Any thread. */
void bg_audit_event_session(bg_audit_event_t *ev, bg_audit_kind_t kind, const char *session_id,
                            uint64_t *seq, const char *protocol, const char *peer,
                            const struct bg_principal_s *p, const char *client_id,
                            const char *sw_name, const char *sw_version);

#endif
