/* bg_runtime_run as a whole, in-process and without adapters: it starts,
 * serves its main loop and stops on SIGTERM with status 0 — with libevent's
 * debug mode on, which aborts when thread support is enabled after an
 * event_base already exists; when its main loop fails it stops the workers
 * and returns 2 (it used to wait for them for ever); while it drains,
 * /readyz says 503. The workers' drain ends as soon as no session is open,
 * and a second drain with an earlier deadline shortens the first. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <event2/event.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "broker/adapter.h"
#include "broker/log.h"
#include "broker/runtime.h"
#include "broker/worker.h"
#include "tests/unit/runtime/test_runtime_config.h"
#include "tests/unit/runtime/test_runtime_net.h"

/* Linked with --wrap=event_base_loop: while bg_t_fail_main_loop is set, the
 * loop run on the test's main thread (bg_runtime_run's) fails at once;
 * workers' loops run as usual. */
int __real_event_base_loop(struct event_base *base, int flags);
static atomic_int bg_t_fail_main_loop;
static pthread_t bg_t_main_thread;

int __wrap_event_base_loop(struct event_base *base, int flags)
{
    if (atomic_load(&bg_t_fail_main_loop) && pthread_equal(pthread_self(), bg_t_main_thread))
        return -1;
    return __real_event_base_loop(base, flags);
}

typedef struct {
    int log_fd;          /* read end of the log pipe */
    const char *after;   /* send the signals once a log line contains this */
    int signals;         /* how many SIGTERMs to send */
    int sent;
} bg_t_stopper_t;

/* One wait (at most 100 ms) for busgate's log on fd: what came is added
 * to text (len bytes so far, NUL-ended; dropped once cap would be passed).
 * 0 when the wait ended (data or none), -1 when the pipe closed. */
static int bg_t_log_more(int fd, char *text, size_t cap, size_t *len)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 100) <= 0)
        return 0;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0)
        return -1;
    if (*len + (size_t)n < cap) {
        memcpy(text + *len, buf, (size_t)n);
        *len += (size_t)n;
        text[*len] = 0;
    }
    return 0;
}

/* Reads the log (at most 30 s) until `after` shows, then sends the signals,
 * and keeps draining the pipe until it closes so busgate never blocks on it. */
static void *bg_t_stopper(void *arg)
{
    bg_t_stopper_t *st = arg;
    static char text[1 << 16];
    size_t len = 0;
    long long deadline = bg_t_now_ms() + 30000;
    while (bg_t_now_ms() < deadline && bg_t_log_more(st->log_fd, text, sizeof text, &len) == 0) {
        if (!st->sent && strstr(text, st->after)) {
            for (int i = 0; i < st->signals; i++)
                kill(getpid(), SIGTERM);
            st->sent = 1;
        }
    }
    return NULL;
}

/* Writes a configuration without adapters into a temporary file. */
static void bg_t_config(char *path, size_t cap)
{
    FILE *f = bg_t_config_open(path, cap, "runtime");
    fprintf(f, "policy:\n"
               "  default: deny\n");
    fclose(f);
}

/* Runs busgate until `after` is logged, sends `signals` SIGTERMs, returns
 * bg_runtime_run's status. */
static int bg_t_run(const char *after, int signals)
{
    char path[64];
    bg_t_config(path, sizeof path);
    int p[2];
    assert_int_equal(pipe(p), 0);
    bg_log_set_fd(p[1]);
    bg_t_stopper_t st = {.log_fd = p[0], .after = after, .signals = signals};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, bg_t_stopper, &st), 0);
    int rc = bg_runtime_run(path, NULL, 0);
    bg_log_set_fd(2);
    close(p[1]);
    pthread_join(th, NULL);
    close(p[0]);
    unlink(path);
    assert_true(st.sent);
    return rc;
}

static void test_starts_and_stops_in_debug_mode(void **state)
{
    (void)state;
    assert_int_equal(bg_t_run("busgate running", 1), 0);
}

static void test_failed_main_loop_stops_workers(void **state)
{
    (void)state;
    atomic_store(&bg_t_fail_main_loop, 1);
    int rc = bg_t_run("busgate running", 0);
    atomic_store(&bg_t_fail_main_loop, 0);
    assert_int_equal(rc, 2);
}

/* An adapter without a listener whose one session stays open until the
 * test lets it go: it holds busgate's drain open for as long as it likes. */
static atomic_int bg_t_held;
static int bg_t_hold_enabled(const bg_config_t *cfg)
{
    (void)cfg;
    return 1;
}
static int bg_t_hold_start(bg_worker_t *w, void *global, void **state, char *err, size_t errlen)
{
    (void)w, (void)global, (void)err, (void)errlen;
    *state = (void *)&bg_t_held;
    return 0;
}
static void bg_t_hold_drain(void *state) { (void)state; }
static size_t bg_t_hold_sessions(void *state) { return (size_t)atomic_load((atomic_int *)state); }
static void bg_t_hold_stop(void *state) { (void)state; }
static const bg_adapter_t bg_t_hold_adapter = {
    .name = "hold",
    .enabled = bg_t_hold_enabled,
    .worker_start = bg_t_hold_start,
    .worker_drain = bg_t_hold_drain,
    .worker_sessions = bg_t_hold_sessions,
    .worker_stop = bg_t_hold_stop,
};

/* The status of GET path on the admin listener at port, its body in
 * body[cap]; -1 when it cannot be read within BG_T_WAIT_MS. */
static int bg_t_admin_get(int port, const char *path, char *body, size_t cap)
{
    int fd = bg_t_connect(port), status = -1;
    char req[128], buf[2048];
    size_t n = 0;
    if (fd < 0)
        return -1;
    snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (bg_t_write_all(fd, req, strlen(req)) == 0) {
        /* HTTP/1.0: the answer ends when busgate closes the connection. */
        while (n < sizeof buf - 1) {
            struct pollfd pf = {.fd = fd, .events = POLLIN};
            if (poll(&pf, 1, BG_T_WAIT_MS) <= 0)
                break;
            ssize_t r = recv(fd, buf + n, sizeof buf - 1 - n, 0);
            if (r <= 0)
                break;
            n += (size_t)r;
        }
    }
    close(fd);
    buf[n] = '\0';
    const char *b = strstr(buf, "\r\n\r\n");
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        status = -1;
    snprintf(body, cap, "%s", b ? b + 4 : "");
    return status;
}

typedef struct {
    int log_fd, admin_port;
    int ready_running, ready_draining; /* /readyz's status before and during the drain */
    char draining_body[256];
} bg_t_drain_probe_t;

/* Reads the log (busgate's whole run, at most 30 s), asking /readyz once
 * busgate runs and again once it drains, then lets the held session go. */
static void *bg_t_drain_probe(void *arg)
{
    bg_t_drain_probe_t *pr = arg;
    static char text[1 << 16];
    size_t len = 0;
    int step = 0;
    long long deadline = bg_t_now_ms() + 30000;
    while (bg_t_now_ms() < deadline && bg_t_log_more(pr->log_fd, text, sizeof text, &len) == 0) {
        if (step == 0 && strstr(text, "busgate running")) {
            char body[256];
            pr->ready_running = bg_t_admin_get(pr->admin_port, "/readyz", body, sizeof body);
            kill(getpid(), SIGTERM);
            step = 1;
        }
        if (step == 1 && strstr(text, "draining (up to")) {
            pr->ready_draining = bg_t_admin_get(pr->admin_port, "/readyz", pr->draining_body,
                                                sizeof pr->draining_body);
            atomic_store(&bg_t_held, 0);
            step = 2;
        }
    }
    atomic_store(&bg_t_held, 0); /* never leave busgate waiting */
    return NULL;
}

/* SIGTERM starts the drain: until the last session has gone (here, until
 * the test lets it go), /readyz says 503 "draining", so that no new client
 * is sent to a busgate that is going away. */
static void test_readyz_not_ready_while_draining(void **state)
{
    (void)state;
    char path[64];
    bg_t_drain_probe_t pr = {.admin_port = bg_t_pick_port(NULL, 0)};
    assert_true(pr.admin_port > 0);
    FILE *f = bg_t_config_open(path, sizeof path, "drain");
    fprintf(f, "policy:\n  default: deny\nadmin:\n  listen: 127.0.0.1:%d\n", pr.admin_port);
    fclose(f);
    int p[2];
    assert_int_equal(pipe(p), 0);
    pr.log_fd = p[0];
    bg_log_set_fd(p[1]);
    atomic_store(&bg_t_held, 1);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, bg_t_drain_probe, &pr), 0);
    const bg_adapter_t *adapters[] = {&bg_t_hold_adapter};
    int rc = bg_runtime_run(path, adapters, 1);
    bg_log_set_fd(2);
    close(p[1]);
    pthread_join(th, NULL);
    close(p[0]);
    unlink(path);
    assert_int_equal(rc, 0);
    assert_int_equal(pr.ready_running, 200);
    assert_int_equal(pr.ready_draining, 503);
    assert_non_null(strstr(pr.draining_body, "\"reason\":\"draining\""));
}

/* /healthz's check: a running worker whose loop has not ticked for more
 * than the limit is named; one whose loop ended (drained) is not. */
static void test_workers_stalled(void **state)
{
    (void)state;
    bg_worker_t w[3];
    memset(w, 0, sizeof w);
    atomic_store(&w[0].tick_ms, 100000);
    atomic_store(&w[1].tick_ms, 95000);
    atomic_store(&w[2].tick_ms, 80000);
    assert_int_equal(bg_workers_stalled(w, 2, 100000, 10000), -1);
    assert_int_equal(bg_workers_stalled(w, 2, 105000, 10000), -1);
    assert_int_equal(bg_workers_stalled(w, 2, 105001, 10000), 1);
    assert_int_equal(bg_workers_stalled(w, 3, 100000, 10000), 2);
    atomic_store(&w[2].done, 1);
    assert_int_equal(bg_workers_stalled(w, 3, 100000, 10000), -1);
}

/* Waits (BG_T_WAIT_MS at most) until every worker's loop has ended. */
static int bg_t_workers_end(bg_worker_t *ws, int n)
{
    for (int i = 0; i < BG_T_WAIT_MS / 10 && !bg_workers_done(ws, n); i++)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    return bg_workers_done(ws, n);
}

/* A drain with an hour's grace and no session open ends at once (it waited
 * out the hour); with the held session open it waits, and a second drain
 * with no grace (a second SIGTERM) ends it (the first deadline was kept). */
static void test_drain_ends_without_sessions_and_when_asked_again(void **state)
{
    (void)state;
    const bg_adapter_t *adapters[] = {&bg_t_hold_adapter};
    void *globals[] = {NULL};
    char err[256] = "";
    atomic_store(&bg_t_held, 0);
    bg_worker_t *ws = bg_workers_start(2, adapters, globals, 1, NULL, NULL, "test", err, sizeof err);
    assert_non_null(ws);
    bg_workers_drain(ws, 2, 3600 * 1000);
    assert_true(bg_t_workers_end(ws, 2));
    bg_workers_join(ws, 2);

    atomic_store(&bg_t_held, 1);
    ws = bg_workers_start(2, adapters, globals, 1, NULL, NULL, "test", err, sizeof err);
    assert_non_null(ws);
    bg_workers_drain(ws, 2, 3600 * 1000);
    nanosleep(&(struct timespec){0, 200 * 1000 * 1000}, NULL);
    assert_false(bg_workers_done(ws, 2)); /* the session holds the drain */
    bg_workers_drain(ws, 2, 0);
    assert_true(bg_t_workers_end(ws, 2));
    bg_workers_join(ws, 2);
    atomic_store(&bg_t_held, 0);
}

int main(void)
{
    bg_t_main_thread = pthread_self();
    /* Before anything of libevent's: debug mode checks the order of what
     * bg_runtime_run sets up. */
    event_enable_debug_mode();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_starts_and_stops_in_debug_mode),
        cmocka_unit_test(test_failed_main_loop_stops_workers),
        cmocka_unit_test(test_readyz_not_ready_while_draining),
        cmocka_unit_test(test_workers_stalled),
        cmocka_unit_test(test_drain_ends_without_sessions_and_when_asked_again),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
