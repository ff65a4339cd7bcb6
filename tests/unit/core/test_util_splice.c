/* bg_util_splice: moves exactly n bytes between two loopback TCP sockets
 * (more than the pipe and socket buffers hold), leaves what follows in the
 * source, and reports a source that closes early, a destination that went
 * away, a second start while busy, and a free while running. A destination
 * that takes a few KiB at a time gets every byte, a relay one byte short
 * waits for that byte, and the write timeout ends a wait for the
 * destination only, never a wait for a slow source. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/util_splice.h"

/* A connected loopback TCP pair, both ends non-blocking. */
static void bg_t_tcp_pair(int fds[2])
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(l >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &al), 0);
    fds[0] = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(fds[0], (struct sockaddr *)&a, sizeof a), 0);
    fds[1] = accept(l, NULL, NULL);
    assert_true(fds[1] >= 0);
    close(l);
    for (int i = 0; i < 2; i++)
        assert_int_equal(fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK), 0);
}

static unsigned char bg_t_byte(size_t i) { return (unsigned char)((i * 131u) ^ (i >> 9)); }

typedef struct {
    struct event_base *base;
    int in[2];  /* in[0]: the test writes; in[1]: the relay's source */
    int out[2]; /* out[0]: the relay's destination; out[1]: the test reads */
    size_t feed_total, fed;
    int close_after_feed;
    unsigned char *got;
    size_t got_len, got_cap;
    struct event *feed_ev, *drain_ev;
    int done_calls;
    bg_util_splice_result_t rc;
    int err;
    uint64_t moved;
} bg_t_rig_t;

static void bg_t_feed(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    bg_t_rig_t *r = arg;
    unsigned char chunk[65536];
    while (r->fed < r->feed_total) {
        size_t n = r->feed_total - r->fed < sizeof chunk ? r->feed_total - r->fed : sizeof chunk;
        for (size_t i = 0; i < n; i++)
            chunk[i] = bg_t_byte(r->fed + i);
        ssize_t w = write(fd, chunk, n);
        if (w <= 0)
            return; /* full: the persistent event calls again */
        r->fed += (size_t)w;
    }
    event_del(r->feed_ev);
    if (r->close_after_feed) {
        close(r->in[0]);
        r->in[0] = -1;
    }
}

static void bg_t_drain(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    bg_t_rig_t *r = arg;
    for (;;) {
        if (r->got_cap - r->got_len < 65536) {
            r->got_cap = r->got_cap * 2 + 65536;
            r->got = realloc(r->got, r->got_cap);
            assert_non_null(r->got);
        }
        ssize_t n = read(fd, r->got + r->got_len, r->got_cap - r->got_len);
        if (n <= 0)
            return;
        r->got_len += (size_t)n;
    }
}

static void bg_t_done(void *arg, bg_util_splice_result_t rc, int err, uint64_t moved)
{
    bg_t_rig_t *r = arg;
    r->done_calls++;
    r->rc = rc;
    r->err = err;
    r->moved = moved;
}

static void bg_t_rig_init(bg_t_rig_t *r, size_t feed_total, int close_after_feed)
{
    memset(r, 0, sizeof *r);
    r->base = event_base_new();
    assert_non_null(r->base);
    bg_t_tcp_pair(r->in);
    bg_t_tcp_pair(r->out);
    r->feed_total = feed_total;
    r->close_after_feed = close_after_feed;
    r->feed_ev = event_new(r->base, r->in[0], EV_WRITE | EV_PERSIST, bg_t_feed, r);
    r->drain_ev = event_new(r->base, r->out[1], EV_READ | EV_PERSIST, bg_t_drain, r);
    event_add(r->feed_ev, NULL);
    event_add(r->drain_ev, NULL);
}

/* Runs the loop until the relay reported and the reader has want bytes
 * (bounded: at most ~10 s). */
static void bg_t_run(bg_t_rig_t *r, size_t want)
{
    struct timeval tick = {0, 10000};
    for (int i = 0; i < 1000 && (r->done_calls == 0 || r->got_len < want); i++) {
        event_base_loopexit(r->base, &tick);
        event_base_dispatch(r->base);
    }
}

/* Runs the loop for n ticks of 10 ms, whatever happens. */
static void bg_t_run_ticks(bg_t_rig_t *r, int n)
{
    struct timeval tick = {0, 10000};
    for (int i = 0; i < n; i++) {
        event_base_loopexit(r->base, &tick);
        event_base_dispatch(r->base);
    }
}

static void bg_t_rig_free(bg_t_rig_t *r)
{
    event_free(r->feed_ev);
    event_free(r->drain_ev);
    for (int i = 0; i < 2; i++) {
        if (r->in[i] >= 0)
            close(r->in[i]);
        if (r->out[i] >= 0)
            close(r->out[i]);
    }
    free(r->got);
    event_base_free(r->base);
}

/* Open descriptors of this process. */
static int bg_t_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 1024; fd++)
        if (fcntl(fd, F_GETFD) != -1)
            n++;
    return n;
}

static void test_moves_exactly_n(void **state)
{
    (void)state;
    const size_t n = (3u << 20) + 12345, extra = 777;
    bg_t_rig_t r;
    bg_t_rig_init(&r, n + extra, 0);
    bg_util_splice_t *sp = bg_util_splice_new(r.base);
    assert_non_null(sp);
    int fds_before = bg_t_fds();
    assert_int_equal(bg_util_splice_start(sp, r.in[1], r.out[0], n, bg_t_done, &r), 0);
    assert_int_equal(bg_util_splice_busy(sp), 1);
    assert_int_equal(bg_t_fds(), fds_before + 2); /* the relay's pipe */
    bg_t_run(&r, n);
    assert_int_equal(bg_t_fds(), fds_before); /* closed with the relay */
    assert_int_equal(r.done_calls, 1);
    assert_int_equal(r.rc, BG_UTIL_SPLICE_DONE);
    assert_int_equal(r.moved, n);
    assert_int_equal(bg_util_splice_busy(sp), 0);
    assert_int_equal(r.got_len, n);
    for (size_t i = 0; i < n; i++)
        if (r.got[i] != bg_t_byte(i))
            fail_msg("byte %zu differs", i);
    /* What follows the n bytes is still in the source, in order. */
    unsigned char rest[1024];
    size_t have = 0;
    for (int i = 0; i < 1000 && have < extra; i++) {
        ssize_t k = read(r.in[1], rest + have, sizeof rest - have);
        if (k > 0)
            have += (size_t)k;
        else
            usleep(1000);
    }
    assert_int_equal(have, extra);
    for (size_t i = 0; i < extra; i++)
        assert_int_equal(rest[i], bg_t_byte(n + i));
    /* The object relays again (a second response). */
    r.done_calls = 0;
    r.got_len = 0;
    r.feed_total += 5000;
    event_add(r.feed_ev, NULL);
    assert_int_equal(bg_util_splice_start(sp, r.in[1], r.out[0], 5000, bg_t_done, &r), 0);
    bg_t_run(&r, 5000);
    assert_int_equal(r.rc, BG_UTIL_SPLICE_DONE);
    assert_int_equal(r.got_len, 5000);
    assert_int_equal(r.got[0], bg_t_byte(n + extra));
    bg_util_splice_free(sp);
    bg_t_rig_free(&r);
}

static void test_source_closes_early(void **state)
{
    (void)state;
    bg_t_rig_t r;
    bg_t_rig_init(&r, 1000, 1);
    bg_util_splice_t *sp = bg_util_splice_new(r.base);
    assert_int_equal(bg_util_splice_start(sp, r.in[1], r.out[0], 5000, bg_t_done, &r), 0);
    bg_t_run(&r, 1000);
    assert_int_equal(r.done_calls, 1);
    assert_int_equal(r.rc, BG_UTIL_SPLICE_SRC_EOF);
    assert_int_equal(r.moved, 1000);
    assert_int_equal(r.got_len, 1000);
    bg_util_splice_free(sp);
    bg_t_rig_free(&r);
}

static void test_destination_gone(void **state)
{
    (void)state;
    bg_t_rig_t r;
    bg_t_rig_init(&r, 4u << 20, 0);
    event_del(r.drain_ev);
    close(r.out[1]); /* the reader went away */
    r.out[1] = -1;
    bg_util_splice_t *sp = bg_util_splice_new(r.base);
    assert_int_equal(bg_util_splice_start(sp, r.in[1], r.out[0], 4u << 20, bg_t_done, &r), 0);
    bg_t_run(&r, 0);
    assert_int_equal(r.done_calls, 1);
    assert_int_equal(r.rc, BG_UTIL_SPLICE_DST_ERROR);
    assert_true(r.moved < (4u << 20));
    bg_util_splice_free(sp);
    bg_t_rig_free(&r);
}

static void test_busy_and_free_while_running(void **state)
{
    (void)state;
    bg_t_rig_t r;
    bg_t_rig_init(&r, 100000, 0);
    bg_util_splice_t *sp = bg_util_splice_new(r.base);
    assert_int_equal(bg_util_splice_start(sp, r.in[1], r.out[0], 1u << 20, bg_t_done, &r), 0);
    assert_int_equal(bg_util_splice_start(sp, r.in[1], r.out[0], 10, bg_t_done, &r), -1);
    bg_util_splice_t *idle = bg_util_splice_new(r.base);
    assert_int_equal(bg_util_splice_start(idle, r.in[1], r.out[0], 0, bg_t_done, &r), -1);
    bg_util_splice_free(idle);
    bg_t_run(&r, 100000); /* part moved, the relay still waits for more */
    assert_int_equal(r.done_calls, 0);
    assert_int_equal(r.got_len, 100000);
    bg_util_splice_free(sp); /* no callback afterwards */
    struct timeval tick = {0, 20000};
    event_base_loopexit(r.base, &tick);
    event_base_dispatch(r.base);
    assert_int_equal(r.done_calls, 0);
    bg_t_rig_free(&r);
}

/* The destination's socket buffers hold a few KiB: each write from the
 * 256 KiB pipe is short, and what it did not take is written next, none
 * dropped (a short write counted as whole left bytes in the pipe, closed
 * with it: the reader got less than n, with moved saying n or waiting for
 * ever). */
static void test_short_writes_lose_nothing(void **state)
{
    (void)state;
    const size_t n = (256u << 10) + 4321;
    bg_t_rig_t r;
    bg_t_rig_init(&r, n, 0);
    int small = 16384;
    assert_int_equal(setsockopt(r.out[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    assert_int_equal(setsockopt(r.out[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    bg_util_splice_t *sp = bg_util_splice_new(r.base);
    assert_int_equal(bg_util_splice_start(sp, r.in[1], r.out[0], n, bg_t_done, &r), 0);
    bg_t_run(&r, n);
    assert_int_equal(r.done_calls, 1);
    assert_int_equal(r.rc, BG_UTIL_SPLICE_DONE);
    assert_int_equal(r.moved, n);
    assert_int_equal(r.got_len, n);
    for (size_t i = 0; i < n; i++)
        if (r.got[i] != bg_t_byte(i))
            fail_msg("byte %zu differs", i);
    bg_util_splice_free(sp);
    bg_t_rig_free(&r);
}

/* 5,000 of 5,001 bytes have come: the relay waits for the last one and
 * ends when it comes (a relay that ended one byte early left it to be read
 * as the start of the next frame). */
static void test_one_byte_short_is_not_done(void **state)
{
    (void)state;
    bg_t_rig_t r;
    bg_t_rig_init(&r, 5000, 0);
    bg_util_splice_t *sp = bg_util_splice_new(r.base);
    assert_int_equal(bg_util_splice_start(sp, r.in[1], r.out[0], 5001, bg_t_done, &r), 0);
    for (int i = 0; i < 1000 && r.got_len < 5000; i++)
        bg_t_run_ticks(&r, 1);
    bg_t_run_ticks(&r, 5);
    assert_int_equal(r.got_len, 5000);
    assert_int_equal(r.done_calls, 0);
    assert_int_equal(bg_util_splice_busy(sp), 1);
    r.feed_total += 1;
    event_add(r.feed_ev, NULL);
    bg_t_run(&r, 5001);
    assert_int_equal(r.done_calls, 1);
    assert_int_equal(r.rc, BG_UTIL_SPLICE_DONE);
    assert_int_equal(r.moved, 5001);
    assert_int_equal(r.got_len, 5001);
    assert_int_equal(r.got[5000], bg_t_byte(5000));
    bg_util_splice_free(sp);
    bg_t_rig_free(&r);
}

/* A destination that stops reading: with a write timeout the relay ends
 * with DST_ERROR and ETIMEDOUT (without it, a client that never reads held
 * its connection and the broker's for ever). */
static void test_destination_that_stops_reading_times_out(void **state)
{
    (void)state;
    bg_t_rig_t r;
    bg_t_rig_init(&r, 4u << 20, 0);
    event_del(r.drain_ev); /* the reader is there and never reads */
    bg_util_splice_t *sp = bg_util_splice_new(r.base);
    bg_util_splice_set_write_timeout(sp, 100);
    assert_int_equal(bg_util_splice_start(sp, r.in[1], r.out[0], 4u << 20, bg_t_done, &r), 0);
    bg_t_run(&r, 0);
    assert_int_equal(r.done_calls, 1);
    assert_int_equal(r.rc, BG_UTIL_SPLICE_DST_ERROR);
    assert_int_equal(r.err, ETIMEDOUT);
    assert_true(r.moved < (4u << 20));
    bg_util_splice_free(sp);
    bg_t_rig_free(&r);
}

/* The write timeout is the destination's alone: a source silent for three
 * times as long (a broker still producing the response) does not end the
 * relay, which finishes when the rest comes. */
static void test_a_slow_source_is_not_timed_out(void **state)
{
    (void)state;
    bg_t_rig_t r;
    bg_t_rig_init(&r, 1000, 0);
    bg_util_splice_t *sp = bg_util_splice_new(r.base);
    bg_util_splice_set_write_timeout(sp, 100);
    assert_int_equal(bg_util_splice_start(sp, r.in[1], r.out[0], 2000, bg_t_done, &r), 0);
    for (int i = 0; i < 1000 && r.got_len < 1000; i++)
        bg_t_run_ticks(&r, 1);
    bg_t_run_ticks(&r, 30); /* 300 ms without a byte from the source */
    assert_int_equal(r.done_calls, 0);
    assert_int_equal(r.got_len, 1000);
    r.feed_total += 1000;
    event_add(r.feed_ev, NULL);
    bg_t_run(&r, 2000);
    assert_int_equal(r.done_calls, 1);
    assert_int_equal(r.rc, BG_UTIL_SPLICE_DONE);
    assert_int_equal(r.moved, 2000);
    assert_int_equal(r.got_len, 2000);
    bg_util_splice_free(sp);
    bg_t_rig_free(&r);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as busgate does (see util_splice.h) */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_moves_exactly_n),
        cmocka_unit_test(test_source_closes_early),
        cmocka_unit_test(test_destination_gone),
        cmocka_unit_test(test_busy_and_free_while_running),
        cmocka_unit_test(test_short_writes_lose_nothing),
        cmocka_unit_test(test_one_byte_short_is_not_done),
        cmocka_unit_test(test_destination_that_stops_reading_times_out),
        cmocka_unit_test(test_a_slow_source_is_not_timed_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
