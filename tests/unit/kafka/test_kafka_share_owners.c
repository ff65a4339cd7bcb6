/* The share session owner table (kafka_share.c included, for its bucket
 * function): an entry is one (node, group, member), compared by both ids
 * and their lengths. Two sessions whose ids run together to the same bytes
 * are different sessions, also when they land in the same bucket: opening
 * one takes nothing from the connection that holds the other. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "adapters/kafka/kafka_share.c"

static bg_slice_t sl(const char *s) { return (bg_slice_t){(const uint8_t *)s, (int32_t)strlen(s)}; }

/* The bucket of (group, member). */
static size_t bucket_of(const char *group, const char *member)
{
    bg_kafka_share_session_t s = {.group = (char *)group, .group_len = strlen(group),
                                  .member = (char *)member, .member_len = strlen(member)};
    return bg_kafka_share__bucket(&s);
}

/* Connection t opens (group, member), answered with error 0. */
static void open_session(bg_kafka_share_sessions_t *t, const char *group, const char *member)
{
    bg_kafka_share_update_t u = {.api_key = 78, .epoch = 0, .group = sl(group),
                                 .member = sl(member)};
    assert_int_equal(bg_kafka_share_forwarded(t, &u), 0);
    bg_kafka_share_answered(t, &u, 0);
}

static int usable(bg_kafka_share_sessions_t *t, const char *group, const char *member)
{
    return bg_kafka_share_usable(t, bg_kafka_share_find(t, sl(group), sl(member)));
}

/* Connections a and b (one broker) open (ga, ma) and (gb, mb), in one
 * bucket: each holds its own session whoever opened last. */
static void check_apart(const char *ga, const char *ma, const char *gb, const char *mb)
{
    bg_kafka_share_owners_t *o = bg_kafka_share_owners_new();
    assert_non_null(o);
    bg_kafka_share_sessions_t *a = bg_kafka_share_new(o, 1), *b = bg_kafka_share_new(o, 1);
    assert_non_null(a);
    assert_non_null(b);
    open_session(a, ga, ma);
    assert_true(usable(a, ga, ma));
    open_session(b, gb, mb);
    assert_true(usable(b, gb, mb));
    assert_true(usable(a, ga, ma));
    open_session(a, ga, ma);
    assert_true(usable(b, gb, mb));
    assert_true(usable(a, ga, ma));
    bg_kafka_share_free(a);
    bg_kafka_share_free(b);
    bg_kafka_share_owners_free(o);
}

/* Group "q<i>x" with member "m" and group "q<i>" with member "x" (the
 * first key starts with the second's bytes, the member lengths are equal);
 * group "r<i>" with members "my" and "m" (the group lengths are equal). */
static void test_ids_that_run_together(void **st)
{
    (void)st;
    char ge[32], gs[32];
    int found = 0;
    for (int i = 0; i < 1000000 && !found; i++) {
        snprintf(ge, sizeof ge, "q%dx", i);
        snprintf(gs, sizeof gs, "q%d", i);
        found = bucket_of(ge, "m") == bucket_of(gs, "x");
    }
    assert_true(found);
    check_apart(ge, "m", gs, "x");
    found = 0;
    for (int i = 0; i < 1000000 && !found; i++) {
        snprintf(ge, sizeof ge, "r%d", i);
        found = bucket_of(ge, "my") == bucket_of(ge, "m");
    }
    assert_true(found);
    check_apart(ge, "my", ge, "m");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_that_run_together),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
