/* Topic id -> name, learned from the broker's answers (Metadata v10+,
 * DescribeTopicPartitions), for requests that name topics by id (Fetch
 * v13+, ShareFetch, ...). Ids are UUIDs Kafka never reuses, so an entry is
 * never wrong, only possibly unused (its topic deleted).
 *
 * Open addressing with linear probing, kept at most 3/4 full: the table
 * doubles from BG_KAFKA_TOPIC_IDS_MIN slots up to max_slots; once there, a
 * new id replaces an entry no lookup has used since the clock hand last
 * passed it (second chance), so a busy cluster's ids keep resolving while
 * memory stays bounded. Not thread-safe: the caller locks. */
#ifndef BG_KAFKA_TOPIC_IDS_H
#define BG_KAFKA_TOPIC_IDS_H

#include <stddef.h>
#include <stdint.h>

#define BG_KAFKA_TOPIC_IDS_MIN 4096u        /* slots at start (power of two) */
#define BG_KAFKA_TOPIC_IDS_MAX (1u << 18)   /* default bound: 196,608 ids */
#define BG_KAFKA_TOPIC_NAME_MAX 249         /* Kafka's longest topic name */

typedef struct bg_kafka_topic_ids_slot_s {
    uint8_t id[16];
    char *name; /* NULL: empty slot */
    uint8_t len;
    uint8_t used; /* looked up since the clock hand last passed */
} bg_kafka_topic_ids_slot_t;

typedef struct bg_kafka_topic_ids_s {
    bg_kafka_topic_ids_slot_t *slot;
    size_t cap, n, max, hand;
} bg_kafka_topic_ids_t;

/* max_slots: a power of two >= BG_KAFKA_TOPIC_IDS_MIN (0: the default).
 * 0, or -1 when out of memory. */
int bg_kafka_topic_ids_init(bg_kafka_topic_ids_t *t, size_t max_slots);
void bg_kafka_topic_ids_free(bg_kafka_topic_ids_t *t);
/* Records id -> name (1..BG_KAFKA_TOPIC_NAME_MAX bytes; the zero id and
 * other lengths are ignored). 0; 1 when the id is known under another name,
 * which is kept (Kafka never renames a topic id); -1 when out of memory
 * (nothing changed). */
int bg_kafka_topic_ids_put(bg_kafka_topic_ids_t *t, const uint8_t id[16], const uint8_t *name,
                           size_t len);
/* Copies id's name, NUL-terminated, into out (cap > BG_KAFKA_TOPIC_NAME_MAX
 * holds any); 1 when known, else 0. */
int bg_kafka_topic_ids_get(bg_kafka_topic_ids_t *t, const uint8_t id[16], char *out, size_t cap);

#endif
