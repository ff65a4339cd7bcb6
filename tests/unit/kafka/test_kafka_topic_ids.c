/* The topic-id table: grows, then stays bounded by replacing entries no
 * lookup used (second chance); every entry stays reachable after the
 * removals that eviction makes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "adapters/kafka/kafka_topic_ids.h"

static void make_id(uint32_t i, uint8_t id[16])
{
    memset(id, 0, 16);
    uint64_t x = i * 0x9E3779B97F4A7C15ull + 1; /* spread, never zero */
    memcpy(id, &x, 8);
    memcpy(id + 8, &i, 4);
}

static void put(bg_kafka_topic_ids_t *t, uint32_t i)
{
    uint8_t id[16];
    char name[32];
    make_id(i, id);
    int n = snprintf(name, sizeof name, "topic-%u", i);
    assert_int_equal(bg_kafka_topic_ids_put(t, id, (const uint8_t *)name, (size_t)n), 0);
}

static int has(bg_kafka_topic_ids_t *t, uint32_t i)
{
    uint8_t id[16];
    char want[32], got[BG_KAFKA_TOPIC_NAME_MAX + 1];
    make_id(i, id);
    snprintf(want, sizeof want, "topic-%u", i);
    if (!bg_kafka_topic_ids_get(t, id, got, sizeof got))
        return 0;
    assert_string_equal(got, want);
    return 1;
}

/* Every stored entry is found from its home slot, and n counts them. */
static void assert_consistent(bg_kafka_topic_ids_t *t)
{
    size_t n = 0;
    char got[BG_KAFKA_TOPIC_NAME_MAX + 1];
    for (size_t s = 0; s < t->cap; s++) {
        if (!t->slot[s].name)
            continue;
        n++;
        uint8_t used = t->slot[s].used;
        assert_int_equal(bg_kafka_topic_ids_get(t, t->slot[s].id, got, sizeof got), 1);
        assert_string_equal(got, t->slot[s].name);
        t->slot[s].used = used; /* looking does not count as use here */
    }
    assert_int_equal(n, t->n);
    assert_true(t->n * 4 <= t->cap * 3);
}

static void test_grows_past_first_size(void **st)
{
    (void)st;
    bg_kafka_topic_ids_t t;
    assert_int_equal(bg_kafka_topic_ids_init(&t, 0), 0);
    for (uint32_t i = 0; i < 20000; i++)
        put(&t, i);
    for (uint32_t i = 0; i < 20000; i++)
        assert_true(has(&t, i));
    assert_int_equal(t.n, 20000);
    assert_consistent(&t);
    bg_kafka_topic_ids_free(&t);
}

/* At the bound the newest id always resolves, ids in use survive, and
 * entries stay reachable through every removal. */
static void test_bounded_keeps_used(void **st)
{
    (void)st;
    bg_kafka_topic_ids_t t;
    assert_int_equal(bg_kafka_topic_ids_init(&t, 4096), 0);
    for (uint32_t i = 0; i < 50000; i++) {
        put(&t, i);
        assert_true(has(&t, i));
        for (uint32_t hot = 0; hot < 16; hot++) /* a consumer's topics */
            assert_true(has(&t, 1000000 + hot) || i < 1);
        if (i == 0)
            for (uint32_t hot = 0; hot < 16; hot++)
                put(&t, 1000000 + hot);
        if (i % 5000 == 0)
            assert_consistent(&t);
    }
    assert_int_equal(t.cap, 4096);
    assert_true(t.n <= 3072);
    assert_consistent(&t);
    bg_kafka_topic_ids_free(&t);
}

static void test_ignored_and_renamed(void **st)
{
    (void)st;
    bg_kafka_topic_ids_t t;
    uint8_t zero[16] = {0}, id[16];
    char got[BG_KAFKA_TOPIC_NAME_MAX + 1], big[BG_KAFKA_TOPIC_NAME_MAX + 2];
    memset(big, 'a', sizeof big);
    assert_int_equal(bg_kafka_topic_ids_init(&t, 1000), -1); /* not a power of two */
    assert_int_equal(bg_kafka_topic_ids_init(&t, 0), 0);
    assert_int_equal(bg_kafka_topic_ids_put(&t, zero, (const uint8_t *)"z", 1), 0);
    make_id(7, id);
    assert_int_equal(bg_kafka_topic_ids_put(&t, id, (const uint8_t *)"", 0), 0);
    assert_int_equal(bg_kafka_topic_ids_put(&t, id, (const uint8_t *)big, sizeof big - 1), 0);
    assert_int_equal(t.n, 0);
    assert_int_equal(bg_kafka_topic_ids_get(&t, zero, got, sizeof got), 0);
    assert_int_equal(bg_kafka_topic_ids_put(&t, id, (const uint8_t *)big, sizeof big - 2), 0);
    assert_int_equal(bg_kafka_topic_ids_get(&t, id, got, sizeof got), 1);
    assert_int_equal(strlen(got), BG_KAFKA_TOPIC_NAME_MAX);
    /* Kafka never renames a topic id: another name for it is refused (1). */
    assert_int_equal(bg_kafka_topic_ids_put(&t, id, (const uint8_t *)"other", 5), 1);
    assert_int_equal(bg_kafka_topic_ids_get(&t, id, got, sizeof got), 1);
    assert_int_equal(strlen(got), BG_KAFKA_TOPIC_NAME_MAX);
    assert_int_equal(bg_kafka_topic_ids_put(&t, id, (const uint8_t *)big, sizeof big - 2), 0);
    assert_int_equal(t.n, 1);
    bg_kafka_topic_ids_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grows_past_first_size),
        cmocka_unit_test(test_bounded_keeps_used),
        cmocka_unit_test(test_ignored_and_renamed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
