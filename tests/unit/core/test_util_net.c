/* bg_util_bev_read_more: one read callback takes a whole burst from a socket
 * bufferevent (libevent 2.1 alone takes 4 KiB), leaves a drained socket
 * alone, and leaves end of stream for the bufferevent to report. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/util_net.h"

typedef struct {
    size_t calls;
    size_t first_len;  /* input length when the first callback ran */
    size_t more;       /* what bg_util_bev_read_more added then */
    size_t after;      /* input length after it */
    int eof;
} bg_t_state_t;

static void bg_t_read(struct bufferevent *bev, void *arg)
{
    bg_t_state_t *st = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (st->calls++ == 0) {
        st->first_len = evbuffer_get_length(in);
        st->more = bg_util_bev_read_more(bev, 1u << 20);
        st->after = evbuffer_get_length(in);
    }
}

static void bg_t_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    bg_t_state_t *st = arg;
    if (what & BEV_EVENT_EOF)
        st->eof = 1;
}

/* A socket pair with `n` bytes (a counting pattern) written into the far
 * end, the near end wrapped in a bufferevent; runs one loop round. */
static struct bufferevent *bg_t_setup(struct event_base *base, int sv[2], size_t n, int close_far,
                                      bg_t_state_t *st)
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int big = 1 << 20;
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    static unsigned char data[200000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i * 7);
    assert_true(n <= sizeof data);
    assert_int_equal(write(sv[1], data, n), (ssize_t)n);
    if (close_far)
        close(sv[1]);
    evutil_make_socket_nonblocking(sv[0]);
    struct bufferevent *bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(bev, bg_t_read, NULL, bg_t_event, st);
    bufferevent_enable(bev, EV_READ);
    event_base_loop(base, EVLOOP_ONCE);
    return bev;
}

static void test_burst_in_one_callback(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    int sv[2];
    bg_t_state_t st = {0};
    struct bufferevent *bev = bg_t_setup(base, sv, 100000, 0, &st);
    assert_int_equal(st.calls, 1);
    assert_int_equal(st.first_len, 4096); /* what libevent 2.1 reads alone */
    assert_int_equal(st.more, 100000 - 4096);
    assert_int_equal(st.after, 100000);
    /* the bytes are in order and whole */
    unsigned char got[100000];
    assert_int_equal(evbuffer_remove(bufferevent_get_input(bev), got, sizeof got), 100000);
    for (size_t i = 0; i < sizeof got; i++)
        assert_int_equal(got[i], (unsigned char)(i * 7));
    bufferevent_free(bev);
    close(sv[1]);
    event_base_free(base);
}

static void test_bounded_by_max(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    unsigned char data[50000] = {0};
    assert_int_equal(write(sv[1], data, sizeof data), (ssize_t)sizeof data);
    evutil_make_socket_nonblocking(sv[0]);
    struct bufferevent *bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_unfreeze(in, 0); /* as if libevent had just read (capped) */
    assert_int_equal(evbuffer_add(in, data, 4096), 0);
    evbuffer_freeze(in, 0);
    assert_int_equal(bg_util_bev_read_more(bev, 10000), 10000);
    assert_int_equal(evbuffer_get_length(in), 14096);
    bufferevent_free(bev);
    close(sv[1]);
    event_base_free(base);
}

static void test_small_read_left_alone(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    int sv[2];
    bg_t_state_t st = {0};
    struct bufferevent *bev = bg_t_setup(base, sv, 100, 0, &st);
    assert_int_equal(st.first_len, 100);
    assert_int_equal(st.more, 0);
    assert_int_equal(st.after, 100);
    bufferevent_free(bev);
    close(sv[1]);
    event_base_free(base);
}

static void test_end_of_stream_still_reported(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    int sv[2];
    bg_t_state_t st = {0};
    struct bufferevent *bev = bg_t_setup(base, sv, 9000, 1, &st);
    assert_int_equal(st.after, 9000); /* everything, then the end */
    assert_int_equal(st.eof, 0);
    event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(st.eof, 1);
    bufferevent_free(bev);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_in_one_callback),
        cmocka_unit_test(test_bounded_by_max),
        cmocka_unit_test(test_small_read_left_alone),
        cmocka_unit_test(test_end_of_stream_still_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
