/* bg_util_tls_upstream_failure: the reason an upstream connection failed,
 * shared by the Kafka and AMQP adapters (the TLS reasons are checked by the
 * integration suites against real TLS listeners). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/util_tls.h"

static void test_upstream_failure_texts(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    assert_non_null(base);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct bufferevent *bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(bev);
    char why[400];

    assert_int_equal(bg_util_tls_upstream_failure(bev, BEV_EVENT_CONNECTED, 1, why, sizeof why),
                     0);
    assert_int_equal(bg_util_tls_upstream_failure(bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, 0,
                                                  why, sizeof why),
                     1);
    assert_string_equal(why, "timed out");
    assert_int_equal(
        bg_util_tls_upstream_failure(bev, BEV_EVENT_READING | BEV_EVENT_EOF, 0, why, sizeof why),
        1);
    assert_string_equal(why, "closed by the broker");
    /* A plain socket error: the socket's own error text, no "TLS". */
    errno = ECONNREFUSED;
    assert_int_equal(
        bg_util_tls_upstream_failure(bev, BEV_EVENT_ERROR, 1, why, sizeof why), 1);
    assert_string_equal(why, strerror(ECONNREFUSED));

    bufferevent_free(bev);
    close(sv[1]);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upstream_failure_texts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
