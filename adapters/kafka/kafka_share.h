/* Share fetch sessions (KIP-932) as busgate tracks them, per client
 * connection.
 *
 * A ShareFetch with ShareSessionEpoch > 0 names only what changed: the broker
 * fetches from every partition of the session it keeps for (group, member),
 * named or not. busgate therefore remembers, per connection, a superset of
 * the partitions each session it forwarded holds, so every request can be
 * checked against all of them (kafka_authz_share.c). Partitions are added
 * when a request carrying them goes upstream; they leave only when the
 * broker confirmed (top-level error 0) the request that dropped them
 * (ForgottenTopicsData, or a new session replacing the old one), so a
 * request the broker refuses can never make busgate forget what the broker
 * still fetches.
 *
 * Pure: malloc only, no I/O. One tracker per connection, used from that
 * connection's worker thread only. */
#ifndef BG_KAFKA_SHARE_H
#define BG_KAFKA_SHARE_H

#include <stddef.h>
#include <stdint.h>

#include "broker/bytes.h"

/* Bounds: a request that would exceed them is refused (the connection
 * closes) before anything goes upstream. */
#define BG_KAFKA_SHARE_MAX_SESSIONS 16
#define BG_KAFKA_SHARE_MAX_PARTITIONS 65536

typedef struct bg_kafka_share_tp_s {
    uint8_t id[16]; /* topic id */
    int32_t partition;
    /* Tracker: the sequence number of the last forwarded request that added
     * it (requests may be pipelined: an answer removes only what no later
     * request added again). Ignored in comparisons. */
    uint64_t seq;
} bg_kafka_share_tp_t;

/* One tracked session: tps sorted by (id, partition), no duplicates. */
typedef struct bg_kafka_share_session_s {
    char *group, *member;
    size_t group_len, member_len;
    bg_kafka_share_tp_t *tps;
    size_t n, cap;
} bg_kafka_share_session_t;

typedef struct bg_kafka_share_sessions_s {
    bg_kafka_share_session_t s[BG_KAFKA_SHARE_MAX_SESSIONS];
    size_t n;
    uint64_t seq; /* forwarded requests so far */
} bg_kafka_share_sessions_t;

/* What a forwarded ShareFetch/ShareAcknowledge does to the tracker, built by
 * the classifier in the request's arena (everything copied there: it is
 * applied after the request bytes have left). */
typedef struct bg_kafka_share_update_s {
    int16_t api_key;
    int32_t epoch; /* the request's ShareSessionEpoch */
    bg_slice_t group, member;
    const bg_kafka_share_tp_t *add; /* partitions forwarded in the request (sorted) */
    size_t nadd;
    const bg_kafka_share_tp_t *forget; /* ForgottenTopicsData (sorted) */
    size_t nforget;
    uint64_t seq; /* set by bg_kafka_share_forwarded */
} bg_kafka_share_update_t;

/* A zeroed tracker, or NULL on out of memory. Free with bg_kafka_share_free. */
bg_kafka_share_sessions_t *bg_kafka_share_new(void);
void bg_kafka_share_free(bg_kafka_share_sessions_t *t);

/* The tracked session of (group, member), or NULL. Borrowed from t, valid
 * until t next changes. */
const bg_kafka_share_session_t *bg_kafka_share_find(const bg_kafka_share_sessions_t *t,
                                                    bg_slice_t group, bg_slice_t member);

/* 1 when the sorted array tps holds a partition of topic id. */
int bg_kafka_share_has_topic(const bg_kafka_share_tp_t *tps, size_t n, const uint8_t id[16]);

/* Sorts tps by (id, partition) and drops duplicates (keeping the highest
 * seq); returns the new count. */
size_t bg_kafka_share_sort(bg_kafka_share_tp_t *tps, size_t n);

/* 1 when tp is in the sorted array tps. */
int bg_kafka_share_contains(const bg_kafka_share_tp_t *tps, size_t n, const bg_kafka_share_tp_t *tp);

/* The request of u went upstream (numbered: u->seq): its partitions join
 * the session (a new one for (group, member) when none is tracked). A final
 * request (epoch -1) adds nothing. Returns 0, or -1 on out of memory (the
 * caller closes the connection: the tracker may no longer cover the
 * broker's session). */
int bg_kafka_share_forwarded(bg_kafka_share_sessions_t *t, bg_kafka_share_update_t *u)
    __attribute__((warn_unused_result));

/* The broker answered u's request with top-level error err. On success a
 * new session (epoch 0) loses what it held before but u->add, an
 * incremental one loses u->forget, a final one (epoch -1) everything;
 * partitions a later forwarded request added stay. On an error nothing is
 * removed. */
void bg_kafka_share_answered(bg_kafka_share_sessions_t *t, const bg_kafka_share_update_t *u,
                             int16_t err);

#endif
