/* ConsumerProtocolSubscription: what a member of a classic group with
 * protocol type "consumer" puts in the metadata of each JoinGroup protocol
 * (Kafka's ConsumerProtocolSubscription.json; the Java consumer, librdkafka
 * and Kafka Streams write it, each with user data of its own). A Kafka 4.x
 * broker reads it when such a member joins a KIP-848 group, and assigns the
 * named topics' partitions itself. Non-flexible, big-endian:
 *
 *   v0+  version int16, topics [string], user_data nullable bytes
 *   v1+  owned_partitions [{topic string, partitions [int32]}]
 *   v2+  generation_id int32
 *   v3+  rack_id nullable string
 *
 * A version above 3 is read as v3, as Kafka reads it (later versions only
 * add fields at the end); what follows the v3 fields is not looked at. A
 * version 0-3 must end with its last field (no client writes more).
 *
 * Pure: no allocation, no globals; the result borrows the metadata bytes. */
#ifndef BG_KAFKA_SUBSCRIPTION_H
#define BG_KAFKA_SUBSCRIPTION_H

#include <stdint.h>

#include "broker/bytes.h"

/* Bound on each array (topics, owned_partitions): more names than any
 * subscription carries; past it the metadata is refused. */
#define BG_KAFKA_SUBSCRIPTION_MAX_TOPICS 65536

/* A checked subscription: the encoded elements of its two name arrays. */
typedef struct bg_kafka_subscription_s {
    int16_t version;          /* as sent (may be above 3) */
    int32_t ntopics;          /* subscribed topic names */
    int32_t nowned;           /* owned_partitions entries (0 before v1) */
    bg_slice_t topics, owned; /* the arrays' elements, after their counts */
} bg_kafka_subscription_t;

/* Reads meta (one JoinGroup protocol's metadata) as a whole. Returns 0 and
 * fills *out, or -1 with *why a static reason (audited as is). out's slices
 * borrow meta: valid while meta is. */
int bg_kafka_subscription_parse(bg_slice_t meta, bg_kafka_subscription_t *out, const char **why)
    __attribute__((warn_unused_result));

/* Called for each topic name: owned 0 for a subscribed topic, 1 for the
 * topic of an owned_partitions entry. name borrows the metadata bytes. */
typedef void (*bg_kafka_subscription_fn)(void *arg, bg_slice_t name, int owned);

/* Calls fn for every subscribed topic, then every owned_partitions topic,
 * in wire order. s must come from a successful parse. Returns the number
 * of calls. */
int32_t bg_kafka_subscription_each(const bg_kafka_subscription_t *s, bg_kafka_subscription_fn fn,
                                   void *arg);

#endif
