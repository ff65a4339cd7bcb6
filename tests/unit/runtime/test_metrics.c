/* The metrics text builder: bg_metrics_appendf grows its buffer whenever
 * the text would not fit whole, the last byte included (vsnprintf leaves
 * room for its NUL, so a text exactly as long as the room left came out one
 * byte short before it grew). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "broker/metrics.h"

static void test_appendf_fills_to_the_last_byte(void **state)
{
    (void)state;
    size_t cap = 4, len = 0;
    char *b = malloc(cap);
    assert_non_null(b);
    b[0] = '\0';
    bg_metrics_appendf(&b, &len, &cap, "%s", "abc"); /* 3 bytes and the NUL: fits */
    assert_int_equal(len, 3);
    assert_int_equal(cap, 4);
    bg_metrics_appendf(&b, &len, &cap, "%s", "d"); /* no room for the NUL after it */
    assert_non_null(b);
    assert_int_equal(len, 4);
    assert_true(cap > 5);
    assert_string_equal(b, "abcd");
    bg_metrics_appendf(&b, &len, &cap, "x%dy", 42);
    assert_string_equal(b, "abcdx42y");
    assert_int_equal(len, strlen(b));
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_appendf_fills_to_the_last_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
