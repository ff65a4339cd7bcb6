/* bg_util_bev_read_more: one read callback takes a whole burst from a socket
 * bufferevent (libevent 2.1 alone takes 4 KiB), leaves a drained socket
 * alone, and leaves end of stream for the bufferevent to report.
 * bg_util_bev_send: small messages queue packed in few chunks, in order; a
 * direct write (plain) never overtakes what is queued, and what a short one
 * did not write is queued.
 * bg_util_port_unused: a port another socket listens on is not unused;
 * port 65535 is a port, 65536 is not.
 * bg_util_accept_guard: a listener out of descriptors pauses instead of
 * failing accept() in a loop, warns once, and accepts again later. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/log.h"
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

typedef struct {
    bg_util_accept_guard_t guard;
    int accepted, failed;
} bg_t_listen_t;

static void bg_t_on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                           int len, void *arg)
{
    (void)l, (void)sa, (void)len;
    ((bg_t_listen_t *)arg)->accepted++;
    close(fd);
}

static void bg_t_on_listen_error(struct evconnlistener *l, void *arg)
{
    (void)l;
    bg_t_listen_t *t = arg;
    t->failed++;
    bg_util_accept_guard_failed(&t->guard);
}

/* Runs up to n rounds of the loop without waiting. */
static void bg_t_spin(struct event_base *base, int n)
{
    for (int i = 0; i < n; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

/* Lines of the file at fd that contain needle. */
static int bg_t_count_lines(int fd, const char *needle)
{
    static char text[65536];
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    text[n > 0 ? n : 0] = 0;
    int count = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
        count += strstr(line, needle) != NULL;
    return count;
}

/* A peer that never reads gets 1,000 short answers, each built in its own
 * buffer: queued, they take a few chunks (moved, each would keep its own
 * 1 KiB+ chunk), in order and complete; a large one is queued whole. */
static void test_send_packs_small_messages(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct bufferevent *bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    struct evbuffer *out = bufferevent_get_output(bev);
    for (int i = 0; i < 1000; i++) {
        struct evbuffer *msg = evbuffer_new();
        char line[32];
        int n = snprintf(line, sizeof line, "answer %06d;", i);
        assert_int_equal(evbuffer_add(msg, line, (size_t)n), 0);
        assert_int_equal(bg_util_bev_send(bev, msg, (size_t)n, 0), 0);
        assert_int_equal(evbuffer_get_length(msg), 0);
        evbuffer_free(msg);
    }
    assert_int_equal(evbuffer_get_length(out), 1000 * 14);
    int chunks = evbuffer_peek(out, -1, NULL, NULL, 0);
    assert_true(chunks > 0 && chunks <= 16);
    unsigned char *all = evbuffer_pullup(out, -1);
    assert_memory_equal(all, "answer 000000;answer 000001;", 28);
    assert_memory_equal(all + 999 * 14, "answer 000999;", 14);
    struct evbuffer *big = evbuffer_new();
    static unsigned char blob[100000];
    assert_int_equal(evbuffer_add(big, blob, sizeof blob), 0);
    assert_int_equal(bg_util_bev_send(bev, big, sizeof blob - 1, 0), 0);
    assert_int_equal(evbuffer_get_length(big), 1);
    assert_int_equal(evbuffer_get_length(out), 1000 * 14 + sizeof blob - 1);
    assert_int_equal(bg_util_bev_send(bev, big, 2, 0), -1); /* fewer than asked */
    evbuffer_free(big);
    bufferevent_free(bev);
    close(sv[1]);
    event_base_free(base);
}

/* With the soft limit at the lowest free descriptor number, the next
 * accept() fails with EMFILE. Before the fix the error callback ran on
 * every loop round (the connection stays in the backlog). */
static void test_accept_guard_pauses_when_out_of_descriptors(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bg_t_listen_t t = {0};
    struct evconnlistener *l = evconnlistener_new_bind(base, bg_t_on_accept, &t,
                                                       LEV_OPT_CLOSE_ON_FREE, 16,
                                                       (struct sockaddr *)&sin, sizeof sin);
    assert_non_null(l);
    /* An hour: the test fires the resume timer itself, so nothing here
     * depends on how fast the loop runs. */
    assert_int_equal(bg_util_accept_guard_init(&t.guard, l, "test", 3600 * 1000), 0);
    evconnlistener_set_error_cb(l, bg_t_on_listen_error);
    socklen_t sl = sizeof sin;
    assert_int_equal(getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&sin, &sl), 0);
    int client = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(client, (struct sockaddr *)&sin, sizeof sin), 0); /* in the backlog */
    FILE *log = tmpfile();
    assert_non_null(log);
    bg_log_set_fd(fileno(log));

    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    int lowest = open("/dev/null", O_RDONLY);
    assert_true(lowest >= 0);
    close(lowest);
    struct rlimit low = {(rlim_t)lowest, old.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    bg_t_spin(base, 50);
    int failed_first = t.failed, paused = event_pending(t.guard.resume, EV_TIMEOUT, NULL);
    event_active(t.guard.resume, EV_TIMEOUT, 1); /* the pause ends, still no descriptor */
    bg_t_spin(base, 50);
    int failed_again = t.failed, paused_again = event_pending(t.guard.resume, EV_TIMEOUT, NULL);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);

    assert_int_equal(failed_first, 1);
    assert_true(paused);
    assert_int_equal(failed_again, 2);
    assert_true(paused_again);
    assert_int_equal(t.accepted, 0);
    event_active(t.guard.resume, EV_TIMEOUT, 1); /* a descriptor is free now */
    for (int i = 0; i < 50 && !t.accepted; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    assert_int_equal(t.accepted, 1);
    assert_int_equal(t.failed, 2);
    /* One warning for the two failures: the second is within the rate limit. */
    bg_log_set_fd(2);
    assert_int_equal(bg_t_count_lines(fileno(log), "accept failed: Too many open files"), 1);
    fclose(log);
    close(client);
    bg_util_accept_guard_clear(&t.guard);
    bg_util_accept_guard_clear(&t.guard); /* twice is harmless */
    evconnlistener_free(l);
    event_base_free(base);
}

/* Reads from fd until want bytes came or 2 s passed, running the loop so
 * that bev writes what it has queued. */
static size_t bg_t_read_peer(struct event_base *base, int fd, unsigned char *buf, size_t want)
{
    size_t got = 0;
    for (int i = 0; i < 2000 && got < want; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        ssize_t k = recv(fd, buf + got, want - got, MSG_DONTWAIT);
        if (k > 0)
            got += (size_t)k;
        else
            usleep(1000);
    }
    return got;
}

/* plain: the socket is written at once only when nothing is queued before
 * the message; behind queued bytes it is queued too (written at once it
 * would reach the peer before them: two responses swapped). */
static void test_send_plain_never_overtakes_the_queue(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    evutil_make_socket_nonblocking(sv[0]);
    struct bufferevent *bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    bufferevent_enable(bev, EV_WRITE);
    struct evbuffer *out = bufferevent_get_output(bev);
    assert_int_equal(evbuffer_add(out, "first;", 6), 0); /* queued: the loop has not run */
    struct evbuffer *msg = evbuffer_new();
    assert_int_equal(evbuffer_add(msg, "second;", 7), 0);
    assert_int_equal(bg_util_bev_send(bev, msg, 7, 1), 0);
    assert_int_equal(evbuffer_get_length(msg), 0);
    unsigned char got[13];
    assert_int_equal(bg_t_read_peer(base, sv[1], got, sizeof got), sizeof got);
    assert_memory_equal(got, "first;second;", sizeof got);
    evbuffer_free(msg);
    bufferevent_free(bev);
    close(sv[1]);
    event_base_free(base);
}

/* plain, nothing queued, a peer whose socket takes a few KiB: the direct
 * write is short and the rest is queued, in order, nothing left in the
 * source (a short write counted as whole lost the rest of the message). */
static void test_send_plain_short_write_queues_the_rest(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int small = 4096;
    assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    evutil_make_socket_nonblocking(sv[0]);
    struct bufferevent *bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    bufferevent_enable(bev, EV_WRITE);
    static unsigned char data[100000], got[100000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i * 13 + (i >> 8));
    struct evbuffer *msg = evbuffer_new();
    assert_int_equal(evbuffer_add(msg, data, sizeof data), 0);
    assert_int_equal(bg_util_bev_send(bev, msg, sizeof data, 1), 0);
    assert_int_equal(evbuffer_get_length(msg), 0);
    size_t queued = evbuffer_get_length(bufferevent_get_output(bev));
    assert_true(queued > 0 && queued < sizeof data); /* short: written in part */
    assert_int_equal(bg_t_read_peer(base, sv[1], got, sizeof got), sizeof got);
    assert_memory_equal(got, data, sizeof data);
    evbuffer_free(msg);
    bufferevent_free(bev);
    close(sv[1]);
    event_base_free(base);
}

/* A port a socket listens on is not unused, and the error says so; once
 * closed it is. 65535 is a port (whether free or not, never a bad
 * address); 65536 is a bad address. */
static void test_port_unused(void **state)
{
    (void)state;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &al), 0);
    unsigned port = ntohs(a.sin_port);
    char err[300] = "";
    assert_int_equal(bg_util_port_unused("127.0.0.1", port, err, sizeof err), -1);
    assert_non_null(strstr(err, "(another process listens there)"));
    close(l);
    assert_int_equal(bg_util_port_unused("127.0.0.1", port, err, sizeof err), 0);
    err[0] = 0;
    if (bg_util_port_unused("127.0.0.1", 65535, err, sizeof err) != 0)
        assert_null(strstr(err, "bad listen address"));
    assert_int_equal(bg_util_port_unused("127.0.0.1", 65536, err, sizeof err), -1);
    assert_string_equal(err, "bad listen address 127.0.0.1:65536");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_in_one_callback),
        cmocka_unit_test(test_bounded_by_max),
        cmocka_unit_test(test_small_read_left_alone),
        cmocka_unit_test(test_end_of_stream_still_reported),
        cmocka_unit_test(test_send_packs_small_messages),
        cmocka_unit_test(test_send_plain_never_overtakes_the_queue),
        cmocka_unit_test(test_send_plain_short_write_queues_the_rest),
        cmocka_unit_test(test_port_unused),
        cmocka_unit_test(test_accept_guard_pauses_when_out_of_descriptors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
