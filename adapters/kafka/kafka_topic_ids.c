/* The topic-id table (see kafka_topic_ids.h). */
#include "adapters/kafka/kafka_topic_ids.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t bg_kafka__tid_home(const bg_kafka_topic_ids_t *t, const uint8_t id[16])
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a: ids are random already */
    for (int i = 0; i < 16; i++)
        h = (h ^ id[i]) * 1099511628211ULL;
    return (size_t)(h & (t->cap - 1));
}

/* The slot holding id, or the empty slot where it would go. */
static size_t bg_kafka__tid_find(const bg_kafka_topic_ids_t *t, const uint8_t id[16])
{
    size_t s = bg_kafka__tid_home(t, id);
    while (t->slot[s].name && memcmp(t->slot[s].id, id, 16) != 0)
        s = (s + 1) & (t->cap - 1);
    return s;
}

int bg_kafka_topic_ids_init(bg_kafka_topic_ids_t *t, size_t max_slots)
{
    memset(t, 0, sizeof *t);
    if (max_slots == 0)
        max_slots = BG_KAFKA_TOPIC_IDS_MAX;
    if (max_slots < BG_KAFKA_TOPIC_IDS_MIN || (max_slots & (max_slots - 1)))
        return -1;
    t->slot = calloc(BG_KAFKA_TOPIC_IDS_MIN, sizeof *t->slot);
    if (!t->slot)
        return -1;
    t->cap = BG_KAFKA_TOPIC_IDS_MIN;
    t->max = max_slots;
    return 0;
}

void bg_kafka_topic_ids_free(bg_kafka_topic_ids_t *t)
{
    for (size_t i = 0; t->slot && i < t->cap; i++)
        free(t->slot[i].name);
    free(t->slot);
    memset(t, 0, sizeof *t);
}

static int bg_kafka__tid_grow(bg_kafka_topic_ids_t *t)
{
    bg_kafka_topic_ids_t bigger = *t;
    bigger.cap = t->cap * 2;
    bigger.slot = calloc(bigger.cap, sizeof *bigger.slot);
    if (!bigger.slot)
        return -1;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slot[i].name)
            bigger.slot[bg_kafka__tid_find(&bigger, t->slot[i].id)] = t->slot[i];
    free(t->slot);
    bigger.hand = 0;
    *t = bigger;
    return 0;
}

/* Empties slot s and moves later entries of its probe run back, so every
 * entry stays reachable from its home slot without tombstones. */
static void bg_kafka__tid_remove(bg_kafka_topic_ids_t *t, size_t s)
{
    size_t mask = t->cap - 1;
    free(t->slot[s].name);
    t->slot[s].name = NULL;
    t->n--;
    for (size_t j = (s + 1) & mask; t->slot[j].name; j = (j + 1) & mask) {
        size_t home = bg_kafka__tid_home(t, t->slot[j].id);
        /* j's entry may move to s when s lies on its way from home to j. */
        if (((j - home) & mask) >= ((j - s) & mask)) {
            t->slot[s] = t->slot[j];
            t->slot[j].name = NULL;
            s = j;
        }
    }
}

/* Second chance: clears the used mark of entries the hand passes and
 * removes the first one found unmarked. */
static void bg_kafka__tid_evict(bg_kafka_topic_ids_t *t)
{
    for (size_t steps = 0; steps < 2 * t->cap + 1; steps++) {
        size_t s = t->hand;
        t->hand = (t->hand + 1) & (t->cap - 1);
        bg_kafka_topic_ids_slot_t *e = &t->slot[s];
        if (!e->name)
            continue;
        if (e->used) {
            e->used = 0;
            continue;
        }
        bg_kafka__tid_remove(t, s);
        return;
    }
}

int bg_kafka_topic_ids_put(bg_kafka_topic_ids_t *t, const uint8_t id[16], const uint8_t *name,
                           size_t len)
{
    static const uint8_t zero[16];
    if (!t->slot || len == 0 || len > BG_KAFKA_TOPIC_NAME_MAX || memcmp(id, zero, 16) == 0)
        return 0;
    size_t s = bg_kafka__tid_find(t, id);
    bg_kafka_topic_ids_slot_t *e = &t->slot[s];
    if (e->name) /* Kafka never renames: another name for a known id is kept out */
        return e->len == len && memcmp(e->name, name, len) == 0 ? 0 : 1;
    char *copy = malloc(len + 1);
    if (!copy)
        return -1;
    memcpy(copy, name, len);
    copy[len] = '\0';
    if ((t->n + 1) * 4 > t->cap * 3) {
        if (t->cap < t->max) {
            if (bg_kafka__tid_grow(t) < 0) {
                free(copy);
                return -1;
            }
        } else {
            bg_kafka__tid_evict(t);
        }
        s = bg_kafka__tid_find(t, id);
        e = &t->slot[s];
    }
    memcpy(e->id, id, 16);
    e->name = copy;
    e->len = (uint8_t)len;
    e->used = 1;
    t->n++;
    return 0;
}

int bg_kafka_topic_ids_get(bg_kafka_topic_ids_t *t, const uint8_t id[16], char *out, size_t cap)
{
    if (!t->slot)
        return 0;
    bg_kafka_topic_ids_slot_t *e = &t->slot[bg_kafka__tid_find(t, id)];
    if (!e->name)
        return 0;
    e->used = 1;
    snprintf(out, cap, "%s", e->name);
    return 1;
}
