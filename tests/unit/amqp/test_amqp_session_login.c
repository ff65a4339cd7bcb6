/* Logins that fail before busgate can read a start-ok, in-process:
 * busgate's runtime with the AMQP adapter on the main thread, a client on
 * a scenario thread (loopback ports from test_runtime_net.h). No RabbitMQ:
 * no login here gets as far as the upstream, which is a closed port.
 *
 * Each case sends the protocol header, reads connection.start and sends
 * one thing busgate refuses while it waits for start-ok. Every case must
 * be a failed login: an auth_failure event (no principal) and a count in
 * busgate_auth_failures_total, as a start-ok whose method cannot be
 * decoded (the last case) always was. Before, a frame busgate could not
 * read (bad end octet, too large, a heartbeat with a payload) and a frame
 * or method other than start-ok (a secure-ok, a content header) only
 * closed the connection. An empty heartbeat on a channel is readable, so
 * it is unauthenticated_request as other frames are (it was malformed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <signal.h>

#include "adapters/amqp/amqp_adapter.h"
#include "broker/log.h"
#include "broker/runtime.h"
#include "tests/unit/runtime/test_runtime_config.h"
#include "tests/unit/runtime/test_runtime_net.h"

typedef struct bg_t_case_s {
    const char *name;
    const uint8_t *bytes; /* sent after connection.start */
    size_t len;
    const char *reason; /* the auth_failure's */
} bg_t_case_t;

#define BG_T_FRAME_END 0xCE

/* start-ok (no client properties, PLAIN, "\0u\0token.x", en_US) ending in 0x00, not 0xCE. */
static const uint8_t bg_t_start_ok_bad_end[] = {
    1, 0, 0, 0,  0, 0,   34, 0,   10,  0,   11,  0,   0,   0,   0, 5,   'P', 'L', 'A', 'I', 'N',
    0, 0, 0, 10, 0, 'u', 0,  't', 'o', 'k', 'e', 'n', '.', 'x', 5, 'e', 'n', '_', 'U', 'S', 0x00};
/* A method frame's header saying 40000 bytes: above the 32 KiB allowed before tune. */
static const uint8_t bg_t_too_large[] = {1, 0, 0, 0, 0, 0x9C, 0x40};
static const uint8_t bg_t_heartbeat_payload[] = {8, 0, 0, 0, 0, 0, 1, 'x', BG_T_FRAME_END};
/* An empty heartbeat on channel 1: readable, out of place (505). */
static const uint8_t bg_t_heartbeat_channel[] = {8, 0, 1, 0, 0, 0, 0, BG_T_FRAME_END};
/* connection.secure-ok with a 4-byte response: well formed, never asked for. */
static const uint8_t bg_t_secure_ok[] = {1,  0, 0, 0, 0, 0,   12,  0,   10,  0,
                                         21, 0, 0, 0, 4, 'a', 'b', 'c', 'd', BG_T_FRAME_END};
/* A content header on channel 1: class 60, weight 0, body size 0, no properties. */
static const uint8_t bg_t_content_header[] = {2, 0, 1, 0, 0, 0, 14, 0, 60, 0, 0,
                                              0, 0, 0, 0, 0, 0, 0,  0, 0,  0, BG_T_FRAME_END};
/* The secure-ok ending in 0x00: a frame busgate cannot read, not a method
 * out of place (the start-ok above, read despite its end octet, would
 * still be a malformed login: its token is no JWT). */
static const uint8_t bg_t_secure_ok_bad_end[] = {1,  0, 0, 0, 0, 0,   12,  0,   10,  0,
                                                 21, 0, 0, 0, 4, 'a', 'b', 'c', 'd', 0x00};
/* connection.secure-ok whose response says 1000 bytes and holds 4. */
static const uint8_t bg_t_secure_ok_cut[] = {1,  0, 0, 0, 0,    0,   12,  0,   10,  0,
                                             21, 0, 0, 3, 0xE8, 'a', 'b', 'c', 'd', BG_T_FRAME_END};

static const bg_t_case_t bg_t_cases[] = {
    {"start-ok, bad end octet", bg_t_start_ok_bad_end, sizeof bg_t_start_ok_bad_end, "malformed"},
    {"frame too large", bg_t_too_large, sizeof bg_t_too_large, "malformed"},
    {"heartbeat with a payload", bg_t_heartbeat_payload, sizeof bg_t_heartbeat_payload,
     "malformed"},
    {"secure-ok", bg_t_secure_ok, sizeof bg_t_secure_ok, "unauthenticated_request"},
    {"secure-ok, bad end octet", bg_t_secure_ok_bad_end, sizeof bg_t_secure_ok_bad_end,
     "malformed"},
    {"content header", bg_t_content_header, sizeof bg_t_content_header, "unauthenticated_request"},
    {"heartbeat on channel 1", bg_t_heartbeat_channel, sizeof bg_t_heartbeat_channel,
     "unauthenticated_request"},
    {"secure-ok cut short", bg_t_secure_ok_cut, sizeof bg_t_secure_ok_cut, "malformed"},
};
#define BG_T_NCASES (sizeof bg_t_cases / sizeof bg_t_cases[0])

typedef struct bg_t_amqp_run_s {
    int listen_port, admin_port, up_port;
    char audit_path[64], log_path[64];
    char fail[512]; /* the first failed expectation (scenario thread) */
    int rc;
} bg_t_amqp_run_t;

static void bg_t_fail(bg_t_amqp_run_t *r, const char *fmt, ...)
{
    if (r->fail[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->fail, sizeof r->fail, fmt, ap);
    va_end(ap);
}

/* Reads frames until busgate's connection.close or the end of the
 * connection; 1 when either came. */
static int bg_t_until_closed(int fd)
{
    uint8_t h[7], payload[4096], end;
    for (;;) {
        int rc = bg_t_read_all(fd, h, sizeof h, BG_T_WAIT_MS);
        if (rc <= 0)
            return rc == 0;
        uint32_t size = (uint32_t)h[3] << 24 | (uint32_t)h[4] << 16 | (uint32_t)h[5] << 8 | h[6];
        if (size > sizeof payload || bg_t_read_all(fd, payload, size, BG_T_WAIT_MS) <= 0 ||
            bg_t_read_all(fd, &end, 1, BG_T_WAIT_MS) <= 0)
            return 0;
        if (h[0] == 1 && size >= 4 && payload[1] == 10 && payload[3] == 50)
            return 1; /* connection.close */
    }
}

static long long bg_t_amqp_failures(bg_t_amqp_run_t *r, long long want)
{
    long long v = -1;
    for (int i = 0; i < BG_T_WAIT_MS / 20; i++) {
        v = bg_t_metric(r->admin_port, "busgate_auth_failures_total{protocol=\"amqp\"}");
        if (v >= want)
            break;
        usleep(20 * 1000);
    }
    return v;
}

static void bg_t_one_case(bg_t_amqp_run_t *r, const bg_t_case_t *c, long long want)
{
    int fd = bg_t_connect(r->listen_port);
    if (fd < 0) {
        bg_t_fail(r, "%s: cannot connect to busgate", c->name);
        return;
    }
    uint8_t start[7];
    if (bg_t_write_all(fd, "AMQP\x00\x00\x09\x01", 8) != 0 ||
        bg_t_read_all(fd, start, sizeof start, BG_T_WAIT_MS) <= 0 || start[0] != 1) {
        bg_t_fail(r, "%s: no connection.start", c->name);
        close(fd);
        return;
    }
    uint32_t size =
        (uint32_t)start[3] << 24 | (uint32_t)start[4] << 16 | (uint32_t)start[5] << 8 | start[6];
    uint8_t rest[4096];
    if (size + 1 > sizeof rest || bg_t_read_all(fd, rest, size + 1, BG_T_WAIT_MS) <= 0) {
        bg_t_fail(r, "%s: connection.start not read", c->name);
        close(fd);
        return;
    }
    if (bg_t_write_all(fd, c->bytes, c->len) != 0 || !bg_t_until_closed(fd))
        bg_t_fail(r, "%s: busgate did not close the connection", c->name);
    close(fd);
    long long n = bg_t_amqp_failures(r, want);
    if (n != want)
        bg_t_fail(r, "%s: busgate_auth_failures_total %lld, expected %lld", c->name, n, want);
}

static void *bg_t_amqp_scenario(void *arg)
{
    bg_t_amqp_run_t *r = arg;
    if (bg_t_amqp_failures(r, 0) != 0)
        bg_t_fail(r, "no admin listener, or failures at start");
    for (size_t i = 0; i < BG_T_NCASES && !r->fail[0]; i++)
        bg_t_one_case(r, &bg_t_cases[i], (long long)i + 1);
    kill(getpid(), SIGTERM); /* busgate stops; bg_runtime_run returns */
    return NULL;
}

static void bg_t_amqp_ignore(int sig)
{
    (void)sig;
}

static void bg_t_amqp_config(bg_t_amqp_run_t *r, char *path, size_t cap)
{
    FILE *f = bg_t_config_open(path, cap, "amqp_session");
    fprintf(f,
            "amqp:\n"
            "  listen: 127.0.0.1:%d\n"
            "  upstream: {host: \"127.0.0.1:%d\", username: busgate, password: pw}\n"
            "policy:\n"
            "  default: deny\n"
            "audit:\n"
            "  file: %s\n"
            "admin:\n"
            "  listen: 127.0.0.1:%d\n",
            r->listen_port, r->up_port, r->audit_path, r->admin_port);
    fclose(f);
}

/* The events of the audit file with this reason (AMQP auth failures). */
static int bg_t_amqp_events(const bg_t_amqp_run_t *r, const char *reason)
{
    char want[96];
    snprintf(want, sizeof want, "\"auth_failure_reason\":\"%s\"", reason);
    return bg_t_file_lines(r->audit_path,
                           (const char *[]){"\"kind\":\"auth_failure\"", "\"protocol\":\"amqp\"",
                                            "\"peer\":\"127.0.0.1:", want, NULL});
}

static void test_unreadable_login_is_an_auth_failure(void **state)
{
    (void)state;
    assert_non_null(getenv("BG_SOURCE_DIR"));
    bg_t_amqp_run_t r = {0};
    struct sigaction sa = {.sa_handler = bg_t_amqp_ignore};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    int taken[3];
    r.listen_port = taken[0] = bg_t_pick_port(NULL, 0);
    r.admin_port = taken[1] = bg_t_pick_port(taken, 1);
    r.up_port = bg_t_pick_port(taken, 2); /* nothing listens there */
    assert_true(r.listen_port > 0 && r.admin_port > 0 && r.up_port > 0);
    snprintf(r.audit_path, sizeof r.audit_path, "/tmp/bg_t_audit_XXXXXX");
    snprintf(r.log_path, sizeof r.log_path, "/tmp/bg_t_log_XXXXXX");
    int afd = mkstemp(r.audit_path), lfd = mkstemp(r.log_path);
    assert_true(afd >= 0 && lfd >= 0);
    close(afd);
    char path[64];
    bg_t_amqp_config(&r, path, sizeof path);
    bg_log_set_fd(lfd);
    pthread_t sc;
    assert_int_equal(pthread_create(&sc, NULL, bg_t_amqp_scenario, &r), 0);
    static const bg_adapter_t *const adapters[] = {&bg_amqp_adapter};
    r.rc = bg_runtime_run(path, adapters, 1);
    pthread_join(sc, NULL);
    bg_log_set_fd(2);
    unlink(path);

    /* busgate has stopped: its audit file is complete. */
    int malformed = bg_t_amqp_events(&r, "malformed");
    int unauth = bg_t_amqp_events(&r, "unauthenticated_request");
    int principals = bg_t_file_lines(r.audit_path, (const char *[]){"\"principal\"", NULL});
    if (r.rc != 0)
        bg_t_fail(&r, "busgate exited with status %d", r.rc);
    if (malformed != 5 || unauth != 3 || principals != 0)
        bg_t_fail(&r, "audit file: %d malformed, %d unauthenticated_request, %d with a principal",
                  malformed, unauth, principals);
    if (r.fail[0]) {
        char line[4096];
        FILE *f = fopen(r.log_path, "r");
        fprintf(stderr, "busgate's log:\n");
        while (f && fgets(line, sizeof line, f))
            fputs(line, stderr);
        if (f)
            fclose(f);
    }
    close(lfd);
    unlink(r.log_path);
    unlink(r.audit_path);
    if (r.fail[0])
        fail_msg("%s", r.fail);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unreadable_login_is_an_auth_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
