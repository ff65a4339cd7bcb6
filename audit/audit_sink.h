/* busgate audit sinks: the pluggable vtable the audit thread writes to.
 *
 * Every sink method runs on the audit thread only, so a sink needs no locks.
 * A record is one encoded event in spool payload form (see audit_spool.h):
 *   [u16 LE key length][key = session id][JSON object]
 * so the same bytes go to the spool, come back from it, and still carry the
 * Kafka message key. */
#ifndef BG_AUDIT_SINK_H
#define BG_AUDIT_SINK_H

#include <stddef.h>
#include <stdint.h>

#include "audit/audit.h"

typedef struct bg_audit_rec_s {
    const uint8_t *data; /* owned by whoever handed the record over */
    uint32_t len;
    int from_spool; /* 1 while draining the spool: never re-spooled on failure */
    uint64_t order; /* live records: emit order, set by the pipeline; an
                       asynchronous sink hands it back with the outcome */
} bg_audit_rec_t;

/* Views into a record; return NULL (len 0) when the record is malformed. */
const char *bg_audit_rec_key(const bg_audit_rec_t *r, size_t *len);
const char *bg_audit_rec_json(const bg_audit_rec_t *r, size_t *len);
/* Builds a record payload into dst (cap bytes) from key and json; returns the
 * length or 0 when it does not fit (key longer than 65535 is cut). */
size_t bg_audit_rec_build(uint8_t *dst, size_t cap, const char *key, size_t klen, const char *json,
                          size_t jlen);

/* Measures without writing: the length bg_audit_encode_json would give ev
 * (an absent event_id counts as a generated one), and the JSON length of
 * one resource as an element of "resources" (no comma). Thread-safe, no
 * allocation; the pipeline splits a large event by them. */
size_t bg_audit_json_len(const bg_audit_event_t *ev, const char *instance);
size_t bg_audit_json_resource_len(const bg_policy_resource_t *r);

typedef struct bg_audit_sink_s bg_audit_sink_t;

/* How a sink reports outcomes back to the pipeline. delivered/failed/rejected
 * are called on the audit thread, from write() (synchronous sinks) or from
 * poll()/flush() (asynchronous ones, e.g. Kafka delivery reports), once per
 * record written. failed: may succeed later (outage, timeout). rejected: the
 * destination refused the record's content and will refuse it again (Kafka:
 * message too large for the topic); a broker refuses the whole request, so
 * records sent beside the culprit are rejected with it. The rec passed is a
 * view valid during the call only. */
typedef struct bg_audit_sink_cb_s {
    void *core;
    void (*delivered)(void *core, const bg_audit_rec_t *rec);
    void (*failed)(void *core, const bg_audit_rec_t *rec);
    void (*rejected)(void *core, const bg_audit_rec_t *rec, const char *why);
} bg_audit_sink_cb_t;

struct bg_audit_sink_s {
    const char *name;
    /* Takes recs[0..n) in order and returns how many it took: a prefix. The
     * ones not taken are the caller's again (spooled). Records taken must be
     * reported delivered, failed or rejected exactly once, later or during
     * the call. The sink copies what it keeps. */
    size_t (*write)(bg_audit_sink_t *s, const bg_audit_rec_t *recs, size_t n);
    /* Makes everything taken durable/delivered within timeout_ms (reporting
     * outcomes). Returns 0 when nothing taken is still pending, -1 otherwise. */
    int (*flush)(bg_audit_sink_t *s, int timeout_ms);
    /* Optional: serves asynchronous outcomes without waiting. */
    void (*poll)(bg_audit_sink_t *s);
    /* Optional (asynchronous sinks): how many records taken have no outcome
     * reported yet; from_spool selects the drained ones (1)
     * or the live ones (0). The pipeline parks new records in memory while
     * live ones are pending and the spool is the destination, because a
     * pending one that fails later must be spooled ahead of them. */
    size_t (*pending)(bg_audit_sink_t *s, int from_spool);
    /* Optional: 0 when the sink knows it is down (e.g. all brokers down), so
     * the pipeline spools without trying. */
    int (*up)(bg_audit_sink_t *s);
    /* Flushes with a short bound and frees the sink. */
    void (*close)(bg_audit_sink_t *s);
    bg_audit_sink_cb_t cb; /* set by the pipeline before the first write */
};

/* JSON-lines file sink: appends each record's JSON plus '\n' (O_APPEND),
 * one write per batch, fdatasync at most every 100 ms and on flush. Returns
 * NULL with err filled when the file cannot be opened. */
bg_audit_sink_t *bg_audit_file_sink_new(const char *path, char *err, size_t errlen);

/* Kafka topic sink (librdkafka idempotent producer, acks=all, key = session
 * id, delivery reports). Returns NULL with err filled on a config error. */
bg_audit_sink_t *bg_audit_kafka_sink_new(const bg_audit_kafka_conf_t *kc, const char *topic,
                                         char *err, size_t errlen);

/* Switches a Kafka sink (before its first write) to Avro message values
 * (audit/busgate-audit.avsc); schema_id >= 0 adds the Confluent wire-format
 * header with that id. The file and the spool keep the JSON form. Returns 0,
 * or -1 with err filled. */
int bg_audit_kafka_sink_avro(bg_audit_sink_t *s, int32_t schema_id, char *err, size_t errlen);

/* Like bg_audit_new() but with primary as the primary sink instead of the one
 * cfg names (cfg->kafka_topic is then ignored; cfg->file, if set, is still the
 * local copy). Takes ownership of primary (closed by bg_audit_free, or here on
 * failure). For tests and embedders. */
bg_audit_t *bg_audit_new_with_sink(const bg_config_audit_t *cfg, const char *instance,
                                   bg_audit_sink_t *primary, char *err, size_t errlen)
    __attribute__((warn_unused_result));

#endif
