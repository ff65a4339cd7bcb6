/* Share fetch sessions (KIP-932) as busgate tracks them, per client
 * connection, and who owns each one across connections.
 *
 * A ShareFetch with ShareSessionEpoch > 0 names only what changed: the broker
 * fetches from every partition of the session it keeps for (group, member),
 * named or not. busgate therefore remembers, per connection, a superset of
 * the partitions each session it forwarded holds, so every request can be
 * checked against all of them (kafka_authz_share.c). A session is tracked
 * only once the broker answered its opening request (epoch 0) with error 0:
 * its partitions are then exactly what that request carried. Partitions an
 * incremental request adds join when it goes upstream; they leave only when
 * the broker confirmed (top-level error 0) the request that dropped them
 * (ForgottenTopicsData, a new session replacing the old one), so a request
 * the broker refuses can never make busgate forget what the broker still
 * fetches.
 *
 * The broker keys a session by (group, member) alone and accepts an
 * incremental request from any connection. The owner table (one per process,
 * shared by the workers) therefore records which connection opened the
 * session a broker holds; only that connection's tracker may be used. An
 * opening request forwarded from any connection takes the ownership away
 * from every other, and two opening requests in flight at once (from
 * different connections) leave the session owned by nobody: busgate cannot
 * tell which of them the broker handled last.
 *
 * The tracker is pure (malloc only, no I/O), one per connection, used from
 * that connection's worker thread only; the owner table takes its own lock
 * and may be used from any thread. */
#ifndef BG_KAFKA_SHARE_H
#define BG_KAFKA_SHARE_H

#include <stddef.h>
#include <stdint.h>

#include "broker/bytes.h"

/* Bounds: a request that would exceed them is refused (the connection
 * closes) before anything goes upstream. The budget is per connection: the
 * partitions of all its tracked sessions, plus one unit per 32 bytes of
 * their group and member ids (the owner table keeps a copy of those too).
 * A partition costs sizeof(bg_kafka_share_tp_t) = 32 bytes, so a tracker
 * holds at most 512 KiB of partitions and ids (docs/kafka.md). */
#define BG_KAFKA_SHARE_MAX_SESSIONS 16
#define BG_KAFKA_SHARE_MAX_PARTITIONS 16384 /* per connection, all sessions */

typedef struct bg_kafka_share_tp_s {
    uint8_t id[16]; /* topic id */
    int32_t partition;
    /* Tracker: the sequence number of the last forwarded request that added
     * it (requests may be pipelined: an answer removes only what no later
     * request added again). Ignored in comparisons. */
    uint64_t seq;
} bg_kafka_share_tp_t;

/* One tracked (group, member): tps sorted by (id, partition), no
 * duplicates. A record exists from the first opening request forwarded;
 * its partitions may be used only when open (an opening request was
 * answered with error 0), nothing opening is in flight and the connection
 * owns the session (bg_kafka_share_usable). */
typedef struct bg_kafka_share_session_s {
    char *group, *member;
    size_t group_len, member_len;
    bg_kafka_share_tp_t *tps;
    size_t n, cap;
    int open;
    unsigned opening;      /* opening requests (epoch 0) forwarded, not answered */
    uint64_t opening_seq;  /* the last of them */
} bg_kafka_share_session_t;

typedef struct bg_kafka_share_owners_s bg_kafka_share_owners_t;

typedef struct bg_kafka_share_sessions_s {
    bg_kafka_share_session_t s[BG_KAFKA_SHARE_MAX_SESSIONS];
    size_t n;
    uint64_t seq;   /* forwarded requests so far */
    size_t units;   /* budget used: partitions + id units of every record */
    bg_kafka_share_owners_t *owners; /* borrowed; NULL: nothing is ever usable */
    int32_t node;   /* upstream broker node id, < 0 a bootstrap connection */
    uint64_t conn;  /* this connection in the owner table */
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
    uint64_t seq;     /* set by bg_kafka_share_forwarded */
    uint64_t gen;     /* opening: the owner table's generation when it was sent */
    int contended;    /* opening: another connection's was in flight */
} bg_kafka_share_update_t;

/* ---- owner table (process-wide, any thread) ---- */

/* A new, empty table, or NULL on out of memory. */
bg_kafka_share_owners_t *bg_kafka_share_owners_new(void);
/* Frees the table; every tracker using it must be freed first. */
void bg_kafka_share_owners_free(bg_kafka_share_owners_t *o);

/* ---- tracker (one connection's thread) ---- */

/* A zeroed tracker for a connection to upstream node (< 0: a bootstrap
 * broker, which may be any node) that records ownership in owners
 * (borrowed, must outlive the tracker; NULL: no session is ever usable), or
 * NULL on out of memory. Free with bg_kafka_share_free, which gives up
 * whatever the connection owns. */
bg_kafka_share_sessions_t *bg_kafka_share_new(bg_kafka_share_owners_t *owners, int32_t node);
void bg_kafka_share_free(bg_kafka_share_sessions_t *t);

/* The tracked record of (group, member), or NULL. Borrowed from t, valid
 * until t next changes. */
const bg_kafka_share_session_t *bg_kafka_share_find(const bg_kafka_share_sessions_t *t,
                                                    bg_slice_t group, bg_slice_t member);

/* 1 when an incremental request for s (a record of t) may be checked
 * against s and forwarded: s is open, no opening request of it is in
 * flight, and this connection owns the broker's session (locks the owner
 * table). 0 otherwise: the request must not go upstream. */
int bg_kafka_share_usable(const bg_kafka_share_sessions_t *t, const bg_kafka_share_session_t *s);

/* The budget units a request would leave t using when a record of
 * (group, member) (s, or none yet) ends up holding new_n partitions. */
size_t bg_kafka_share_units_after(const bg_kafka_share_sessions_t *t,
                                  const bg_kafka_share_session_t *s, bg_slice_t group,
                                  bg_slice_t member, size_t new_n);

/* How many partitions s would hold after adding the sorted add (the union). */
size_t bg_kafka_share_union(const bg_kafka_share_session_t *s, const bg_kafka_share_tp_t *add,
                            size_t nadd);

/* 1 when the sorted array tps holds a partition of topic id. */
int bg_kafka_share_has_topic(const bg_kafka_share_tp_t *tps, size_t n, const uint8_t id[16]);

/* Sorts tps by (id, partition) and drops duplicates (keeping the highest
 * seq); returns the new count. */
size_t bg_kafka_share_sort(bg_kafka_share_tp_t *tps, size_t n);

/* 1 when tp is in the sorted array tps. */
int bg_kafka_share_contains(const bg_kafka_share_tp_t *tps, size_t n, const bg_kafka_share_tp_t *tp);

/* The request of u went upstream (numbered: u->seq). An opening request
 * (epoch 0) creates the record if need be and takes the session's
 * ownership from every other connection; its partitions are kept in u (its
 * arena must live until the answer) and join only with a successful answer.
 * An incremental request's partitions join the record now. A final request
 * (epoch -1) changes nothing yet. Returns 0, or -1 on out of memory or over
 * the limits (the caller closes the connection). */
int bg_kafka_share_forwarded(bg_kafka_share_sessions_t *t, bg_kafka_share_update_t *u)
    __attribute__((warn_unused_result));

/* The broker answered u's request with top-level error err. An opening
 * request answered with 0 makes the record hold exactly its partitions and
 * open, owned by this connection unless another opening request raced it
 * (or, when it cannot be kept, removes the record: never tracked is safe);
 * an incremental one answered with 0 drops u->forget, a final one the whole
 * record; partitions a later forwarded request added stay. On an error
 * nothing is removed. */
void bg_kafka_share_answered(bg_kafka_share_sessions_t *t, const bg_kafka_share_update_t *u,
                             int16_t err);

#endif
