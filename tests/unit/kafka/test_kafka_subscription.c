/* ConsumerProtocolSubscription reader (kafka_subscription.c): versions 0-3
 * and a later one read as v3, the names it yields in wire order, and one
 * negative test per malformed case. Vectors are built field by field as
 * Kafka's ConsumerProtocolSubscription.json lays them out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "adapters/kafka/kafka_subscription.h"

static void ks_str(bg_wr_t *w, const char *s)
{
    if (!s) {
        bg_wr_i16(w, -1);
        return;
    }
    bg_wr_i16(w, (int16_t)strlen(s));
    bg_wr_bytes(w, s, strlen(s));
}

/* A subscription at ver: topics, user data "ud", then by version owned
 * partitions (owned[i] with partitions 0..i), generation 7 and rack "r1". */
static void ks_build(bg_wr_t *w, int16_t ver, const char *const *topics, int nt,
                     const char *const *owned, int no)
{
    bg_wr_init(w, 64, 0);
    bg_wr_i16(w, ver);
    bg_wr_i32(w, nt);
    for (int i = 0; i < nt; i++)
        ks_str(w, topics[i]);
    bg_wr_i32(w, 2);
    bg_wr_bytes(w, "ud", 2);
    if (ver >= 1) {
        bg_wr_i32(w, no);
        for (int i = 0; i < no; i++) {
            ks_str(w, owned[i]);
            bg_wr_i32(w, i + 1);
            for (int p = 0; p <= i; p++)
                bg_wr_i32(w, p);
        }
    }
    if (ver >= 2)
        bg_wr_i32(w, 7);
    if (ver >= 3)
        ks_str(w, "r1");
}

static bg_slice_t ks_slice(const bg_wr_t *w)
{
    return (bg_slice_t){w->buf, (int32_t)w->len};
}

typedef struct {
    char names[8][32];
    int owned[8];
    int n;
} ks_seen_t;

static void ks_collect(void *arg, bg_slice_t name, int owned)
{
    ks_seen_t *s = arg;
    assert_true(s->n < 8 && name.len >= 0 && name.len < 32);
    memcpy(s->names[s->n], name.p, (size_t)name.len);
    s->names[s->n][name.len] = 0;
    s->owned[s->n++] = owned;
}

static const char *const ks_topics[] = {"orders", "secret"};
static const char *const ks_owned[] = {"orders", "hidden"};

static void test_versions(void **st)
{
    (void)st;
    for (int16_t ver = 0; ver <= 3; ver++) {
        bg_wr_t w;
        ks_build(&w, ver, ks_topics, 2, ks_owned, 2);
        bg_kafka_subscription_t s;
        const char *why = NULL;
        assert_int_equal(bg_kafka_subscription_parse(ks_slice(&w), &s, &why), 0);
        assert_null(why);
        assert_int_equal(s.version, ver);
        assert_int_equal(s.ntopics, 2);
        assert_int_equal(s.nowned, ver >= 1 ? 2 : 0);
        ks_seen_t seen = {0};
        assert_int_equal(bg_kafka_subscription_each(&s, ks_collect, &seen), ver >= 1 ? 4 : 2);
        assert_int_equal(seen.n, ver >= 1 ? 4 : 2);
        assert_string_equal(seen.names[0], "orders");
        assert_string_equal(seen.names[1], "secret");
        assert_int_equal(seen.owned[0] + seen.owned[1], 0);
        if (ver >= 1) {
            assert_string_equal(seen.names[2], "orders");
            assert_string_equal(seen.names[3], "hidden");
            assert_int_equal(seen.owned[2] + seen.owned[3], 2);
        }
        bg_wr_free(&w);
    }
}

/* Null user data and rack, no topics at all: still a subscription. */
static void test_nulls_and_empty(void **st)
{
    (void)st;
    bg_wr_t w;
    bg_wr_init(&w, 64, 0);
    bg_wr_i16(&w, 3);
    bg_wr_i32(&w, 0);  /* topics */
    bg_wr_i32(&w, -1); /* user_data null */
    bg_wr_i32(&w, 0);  /* owned_partitions */
    bg_wr_i32(&w, -1); /* generation */
    bg_wr_i16(&w, -1); /* rack null */
    bg_kafka_subscription_t s;
    const char *why = NULL;
    assert_int_equal(bg_kafka_subscription_parse(ks_slice(&w), &s, &why), 0);
    ks_seen_t seen = {0};
    assert_int_equal(bg_kafka_subscription_each(&s, ks_collect, &seen), 0);
    bg_wr_free(&w);
}

/* A version above 3 is read as v3, as Kafka reads it; what follows is not
 * looked at (here it would not even read as anything). */
static void test_later_version_read_as_v3(void **st)
{
    (void)st;
    bg_wr_t w;
    ks_build(&w, 3, ks_topics, 2, ks_owned, 1);
    w.buf[1] = 9; /* version 9 */
    bg_wr_bytes(&w, "\xff\xff\xff", 3);
    bg_kafka_subscription_t s;
    const char *why = NULL;
    assert_int_equal(bg_kafka_subscription_parse(ks_slice(&w), &s, &why), 0);
    assert_int_equal(s.version, 9);
    ks_seen_t seen = {0};
    assert_int_equal(bg_kafka_subscription_each(&s, ks_collect, &seen), 3);
    assert_string_equal(seen.names[2], "orders");
    bg_wr_free(&w);
}

static void ks_refused(const bg_wr_t *w, const char *want)
{
    bg_kafka_subscription_t s;
    const char *why = NULL;
    assert_int_equal(bg_kafka_subscription_parse(ks_slice(w), &s, &why), -1);
    assert_non_null(why);
    if (strstr(why, want) == NULL)
        fail_msg("reason \"%s\", wanted \"%s\"", why, want);
    assert_int_equal(s.ntopics + s.nowned, 0);
}

/* Every strict prefix of a valid v3 subscription is refused (truncated). */
static void test_truncated(void **st)
{
    (void)st;
    bg_wr_t w;
    ks_build(&w, 3, ks_topics, 2, ks_owned, 2);
    size_t len = w.len;
    for (size_t cut = 0; cut < len; cut++) {
        w.len = cut;
        ks_refused(&w, "truncated");
    }
    bg_wr_free(&w);
    bg_kafka_subscription_t s;
    const char *why = NULL;
    assert_int_equal(bg_kafka_subscription_parse((bg_slice_t){NULL, -1}, &s, &why), -1);
    assert_non_null(why);
}

static void test_trailing_bytes(void **st)
{
    (void)st;
    for (int16_t ver = 0; ver <= 3; ver++) {
        bg_wr_t w;
        ks_build(&w, ver, ks_topics, 2, ks_owned, 1);
        bg_wr_u8(&w, 0);
        ks_refused(&w, "bytes after the last field");
        bg_wr_free(&w);
    }
}

static void test_negative_version(void **st)
{
    (void)st;
    bg_wr_t w;
    ks_build(&w, 0, ks_topics, 1, NULL, 0);
    w.buf[0] = 0xff; /* -1 */
    w.buf[1] = 0xff;
    ks_refused(&w, "negative version");
    bg_wr_free(&w);
}

/* The topics array: null, negative, more than the bytes hold, more than
 * the bound. */
static void test_bad_topic_counts(void **st)
{
    (void)st;
    static const int32_t counts[] = {-1, -2, 3, INT32_MAX};
    static const char *const want[] = {"null array", "negative array count", "truncated",
                                       "more than 65536 topics"};
    for (int i = 0; i < 4; i++) {
        bg_wr_t w;
        ks_build(&w, 0, ks_topics, 2, NULL, 0);
        bg_wr__put32(w.buf + 2, (uint32_t)counts[i]);
        ks_refused(&w, want[i]);
        bg_wr_free(&w);
    }
    /* Past the bound with the bytes there: 65537 empty names. */
    bg_wr_t w;
    bg_wr_init(&w, 1 << 18, 0);
    bg_wr_i16(&w, 0);
    bg_wr_i32(&w, BG_KAFKA_SUBSCRIPTION_MAX_TOPICS + 1);
    for (int i = 0; i <= BG_KAFKA_SUBSCRIPTION_MAX_TOPICS; i++)
        bg_wr_i16(&w, 0);
    bg_wr_i32(&w, -1);
    ks_refused(&w, "more than 65536 topics");
    bg_wr_free(&w);
}

/* A null topic name, a negative string length, a user data length below -1. */
static void test_bad_lengths(void **st)
{
    (void)st;
    bg_wr_t w;
    ks_build(&w, 0, ks_topics, 1, NULL, 0);
    w.buf[6] = 0xff, w.buf[7] = 0xff; /* topics[0] length -1 */
    ks_refused(&w, "null topic name");
    w.buf[7] = 0xfe; /* -2 */
    ks_refused(&w, "negative string length");
    bg_wr_free(&w);
    ks_build(&w, 0, ks_topics, 1, NULL, 0);
    bg_wr__put32(w.buf + 14, (uint32_t)-2); /* user_data length */
    ks_refused(&w, "negative length");
    bg_wr_free(&w);
}

/* owned_partitions: a null array, a null topic, a partitions count the
 * bytes do not hold, a null partitions array; a null rack is fine but a
 * rack length below -1 is not. */
static void test_bad_owned(void **st)
{
    (void)st;
    /* v1, topics ["orders"], user_data "ud": owned_partitions count at 20. */
    bg_wr_t w;
    ks_build(&w, 1, ks_topics, 1, ks_owned, 1);
    bg_wr__put32(w.buf + 20, (uint32_t)-1);
    ks_refused(&w, "null array");
    bg_wr_free(&w);
    ks_build(&w, 1, ks_topics, 1, ks_owned, 1);
    w.buf[24] = 0xff, w.buf[25] = 0xff; /* owned[0].topic */
    ks_refused(&w, "null topic name");
    bg_wr_free(&w);
    ks_build(&w, 1, ks_topics, 1, ks_owned, 1);
    bg_wr__put32(w.buf + 32, 1000000); /* owned[0].partitions count */
    ks_refused(&w, "truncated");
    bg_wr__put32(w.buf + 32, (uint32_t)-1);
    ks_refused(&w, "null array");
    bg_wr_free(&w);
    ks_build(&w, 3, ks_topics, 1, ks_owned, 1);
    w.buf[w.len - 4] = 0xff, w.buf[w.len - 3] = 0xfe; /* rack length -2 */
    ks_refused(&w, "negative length");
    bg_wr_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_nulls_and_empty),
        cmocka_unit_test(test_later_version_read_as_v3),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_trailing_bytes),
        cmocka_unit_test(test_negative_version),
        cmocka_unit_test(test_bad_topic_counts),
        cmocka_unit_test(test_bad_lengths),
        cmocka_unit_test(test_bad_owned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
