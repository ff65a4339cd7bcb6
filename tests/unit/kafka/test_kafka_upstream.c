/* kafka_upstream.c (included, for its static functions) against a loopback
 * listener that accepts and never answers: the connection turns on TCP
 * keepalive once connected; a handshake deadline that passes is reported
 * with the phase it stopped in (connect, TLS handshake, ApiVersions, the
 * SASL login or a re-authentication); a connection that cannot even start
 * says why, to the log and to its caller. The handshake takes an answer
 * only with its own correlation id and keeps no api key past its table; a
 * re-authentication is armed at 85-95 % of the broker's session lifetime,
 * never sooner than 1.1 s and never past a lifetime of 2^40 ms. The rest
 * of a large response is spliced from a plain upstream only, never from a
 * TLS one. A due re-authentication starts once the responses awaited have
 * come, a spliced one counted, and never in the middle of a response. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "adapters/kafka/kafka_upstream.c"
#include "broker/config.h"

typedef struct {
    struct event_base *base;
    int srv;            /* the silent broker's listening socket */
    char bootstrap[64]; /* "127.0.0.1:port" */
    bg_config_t cfg;
    bg_kafka_global_t g;
    char failed[480]; /* the last `failed` reason */
    int nfailed;
} bg_t_env_t;

static int bg_t_nready;

static void bg_t_ready(void *arg)
{
    (void)arg;
    bg_t_nready++;
}

static void bg_t_failed(void *arg, const char *why)
{
    bg_t_env_t *e = arg;
    snprintf(e->failed, sizeof e->failed, "%s", why);
    e->nfailed++;
}

static int bg_t_frame(void *arg, struct evbuffer *in, size_t frame_len)
{
    (void)arg;
    evbuffer_drain(in, frame_len);
    return 0;
}

static const bg_kafka_up_cbs_t bg_t_cbs = {
    .ready = bg_t_ready, .frame = bg_t_frame, .failed = bg_t_failed};

static int bg_t_setup(void **state)
{
    bg_t_env_t *e = calloc(1, sizeof *e);
    assert_non_null(e);
    e->base = event_base_new();
    assert_non_null(e->base);
    e->srv = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(e->srv, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(e->srv, 8), 0);
    assert_int_equal(getsockname(e->srv, (struct sockaddr *)&a, &len), 0);
    snprintf(e->bootstrap, sizeof e->bootstrap, "127.0.0.1:%u", ntohs(a.sin_port));
    e->cfg.kafka.max_response_bytes = 1u << 20;
    e->g.cfg = &e->cfg;
    e->g.bootstrap = e->bootstrap;
    pthread_mutex_init(&e->g.mu, NULL);
    bg_log_set_level(BG_LOG_OFF);
    *state = e;
    return 0;
}

static int bg_t_teardown(void **state)
{
    bg_t_env_t *e = *state;
    close(e->srv);
    if (e->g.upstream_tls)
        SSL_CTX_free(e->g.upstream_tls);
    pthread_mutex_destroy(&e->g.mu);
    event_base_free(e->base);
    free(e);
    return 0;
}

/* Runs the loop until u is connected (it sent its ApiVersions), 5 s at most. */
static void bg_t_wait_connected(bg_t_env_t *e, bg_kafka_up_t *u)
{
    for (int i = 0; i < 500 && u->state == BG_KAFKA_UP_CONNECTING; i++) {
        event_base_loop(e->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        if (u->state == BG_KAFKA_UP_CONNECTING)
            nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    assert_int_equal(u->state, BG_KAFKA_UP_VERSIONS);
}

/* A connection to the bootstrap broker with these callbacks. */
static bg_kafka_up_t *bg_t_connect_cbs(bg_t_env_t *e, const bg_kafka_up_cbs_t *cbs)
{
    char why[400] = "unset";
    bg_kafka_up_t *u = bg_kafka_up_connect(e->base, NULL, &e->g, -1, cbs, e, why, sizeof why);
    assert_non_null(u);
    assert_string_equal(why, "");
    return u;
}

static bg_kafka_up_t *bg_t_connect(bg_t_env_t *e)
{
    return bg_t_connect_cbs(e, &bg_t_cbs);
}

/* Connected, and then taken for logged in (READY) without a handshake. */
static bg_kafka_up_t *bg_t_logged_in(bg_t_env_t *e, const bg_kafka_up_cbs_t *cbs)
{
    bg_kafka_up_t *u = bg_t_connect_cbs(e, cbs);
    bg_t_wait_connected(e, u);
    u->state = BG_KAFKA_UP_READY;
    return u;
}

static void test_keepalive_is_on_once_connected(void **state)
{
    bg_t_env_t *e = *state;
    bg_kafka_up_t *u = bg_t_connect(e);
    bg_t_wait_connected(e, u);
    int on = 0;
    socklen_t len = sizeof on;
    assert_int_equal(getsockopt(bufferevent_getfd(u->bev), SOL_SOCKET, SO_KEEPALIVE, &on, &len), 0);
    assert_int_equal(on, 1);
    bg_kafka_up_free(u);
}

/* The reason `failed` gets when the deadline passes in u's present state. */
static const char *bg_t_timeout(bg_t_env_t *e, bg_kafka_up_t *u, bg_kafka_up_state_t st,
                                bg_kafka_up_reauth_t reauth)
{
    u->state = st;
    u->reauth = reauth;
    e->nfailed = 0;
    bg_kafka_up__on_event(u->bev, BEV_EVENT_TIMEOUT | BEV_EVENT_READING, u);
    assert_int_equal(e->nfailed, 1);
    return e->failed;
}

static void test_a_timeout_names_the_phase(void **state)
{
    bg_t_env_t *e = *state;
    bg_kafka_up_t *u = bg_t_connect(e);
    /* Before the TCP connection is up (the loop has not run). */
    assert_string_equal(bg_t_timeout(e, u, BG_KAFKA_UP_CONNECTING, BG_KAFKA_UP_REAUTH_NONE),
                        "connect timed out after 10 s");
    u->state = BG_KAFKA_UP_CONNECTING; /* failing marked it failed: connecting still */
    bg_t_wait_connected(e, u);
    assert_string_equal(bg_t_timeout(e, u, BG_KAFKA_UP_VERSIONS, BG_KAFKA_UP_REAUTH_NONE),
                        "ApiVersions timed out after 10 s");
    assert_string_equal(bg_t_timeout(e, u, BG_KAFKA_UP_HANDSHAKE, BG_KAFKA_UP_REAUTH_NONE),
                        "SASL login (SaslHandshake) timed out after 10 s");
    assert_string_equal(bg_t_timeout(e, u, BG_KAFKA_UP_AUTH, BG_KAFKA_UP_REAUTH_NONE),
                        "SASL login (SaslAuthenticate) timed out after 10 s");
    assert_string_equal(bg_t_timeout(e, u, BG_KAFKA_UP_AUTH, BG_KAFKA_UP_REAUTH_RUNNING),
                        "re-authentication with busgate's credential failed: SASL login "
                        "(SaslAuthenticate) timed out after 10 s");
    /* Connected, still connecting: with TLS upstream, the TLS handshake. */
    e->g.upstream_tls = SSL_CTX_new(TLS_client_method());
    assert_non_null(e->g.upstream_tls);
    assert_string_equal(bg_t_timeout(e, u, BG_KAFKA_UP_CONNECTING, BG_KAFKA_UP_REAUTH_NONE),
                        "TLS handshake timed out after 10 s");
    bg_kafka_up_free(u);
}

static void test_a_connection_that_cannot_start_says_why(void **state)
{
    bg_t_env_t *e = *state;
    char why[400] = "";
    /* libevent refuses port 0 before any system call (no errno). */
    e->g.bootstrap = "127.0.0.1:0";
    assert_null(bg_kafka_up_connect(e->base, NULL, &e->g, -1, &bg_t_cbs, e, why, sizeof why));
    assert_string_equal(why, "cannot connect to the broker 127.0.0.1:0 (node -1): port 0 cannot "
                             "be dialled");
    /* A node no metadata named. */
    assert_null(bg_kafka_up_connect(e->base, NULL, &e->g, 5, &bg_t_cbs, e, why, sizeof why));
    assert_string_equal(why, "no address known for broker 5");
    assert_int_equal(e->nfailed, 0);
}

/* An ApiVersions v4 response (header v0) with correlation id corr listing
 * apis [(key, min, max)], into out; its length. */
static size_t bg_t_versions_v4(uint8_t *out, int32_t corr, const int16_t (*apis)[3], size_t n)
{
    size_t o = 0;
    for (int i = 3; i >= 0; i--)
        out[o++] = (uint8_t)((uint32_t)corr >> (8 * i));
    out[o++] = 0, out[o++] = 0; /* error */
    out[o++] = (uint8_t)(n + 1); /* compact array (n < 127) */
    for (size_t k = 0; k < n; k++) {
        for (int j = 0; j < 3; j++)
            out[o++] = (uint8_t)((uint16_t)apis[k][j] >> 8), out[o++] = (uint8_t)apis[k][j];
        out[o++] = 0; /* no tagged fields */
    }
    memset(out + o, 0, 5); /* throttle 0, no tagged fields */
    return o + 5;
}

/* ApiVersions answered with a correlation id other than the one busgate
 * sent is a failed handshake (it was taken: an answer meant for another
 * request read as this one's); with its own it is taken. An api key of
 * 128, one past busgate's table, is skipped (it was written past vmin,
 * over vmax[0] and beyond). */
static void test_the_handshake_takes_its_own_answer_only(void **state)
{
    bg_t_env_t *e = *state;
    bg_kafka_up_t *u = bg_t_connect(e);
    bg_t_wait_connected(e, u);
    assert_int_equal(u->sent_api, BG_KAFKA_API_API_VERSIONS);
    assert_int_equal(u->sent_ver, 4);
    static const int16_t apis[][3] = {{0, 3, 9}, {128, 7, 8}, {18, 0, 4}};
    uint8_t p[128];
    char why[300] = "";
    size_t len = bg_t_versions_v4(p, u->corr + 1, apis, 3);
    assert_int_equal(bg_kafka_up__on_handshake_frame(u, p, len, why, sizeof why), -1);
    assert_int_equal(u->state, BG_KAFKA_UP_VERSIONS);
    int16_t min = 0, max = 0;
    assert_int_equal(bg_kafka_up_versions(u, 18, &min, &max), 0);
    bg_t_nready = 0;
    len = bg_t_versions_v4(p, u->corr, apis, 3);
    assert_int_equal(bg_kafka_up__on_handshake_frame(u, p, len, why, sizeof why), 0);
    assert_int_equal(u->state, BG_KAFKA_UP_READY);
    assert_int_equal(bg_t_nready, 1);
    assert_int_equal(bg_kafka_up_versions(u, 0, &min, &max), 1);
    assert_int_equal(min, 3);
    assert_int_equal(max, 9);
    assert_int_equal(bg_kafka_up_versions(u, 18, &min, &max), 1);
    assert_int_equal(max, 4);
    assert_int_equal(bg_kafka_up_versions(u, 128, &min, &max), 0);
    size_t blen = 0;
    int16_t ver = -1;
    const uint8_t *body = bg_kafka_up_api_versions_body(u, &blen, &ver);
    assert_int_equal(blen, len - 4);
    assert_memory_equal(body, p + 4, blen);
    assert_int_equal(ver, 4);
    bg_kafka_up_free(u);
}

static size_t bg_t_outstanding(void *arg)
{
    (void)arg;
    return 0;
}

/* Arms the re-authentication for a session lifetime of life_ms: the delay
 * the upstream armed its timer with (the timer is checked to be pending;
 * its delay is read from what was armed, not from the clocks, which a
 * loaded machine moves between the two readings). */
static long long bg_t_reauth_in(bg_kafka_up_t *u, int64_t life_ms)
{
    u->lifetime_ms = life_ms;
    long long ms = (long long)bg_kafka_up__schedule_reauth(u);
    assert_true(event_pending(u->reauth_timer, EV_TIMEOUT, NULL));
    return ms;
}

/* The timer's delay for a lifetime of 100 s is 85-95 s (a 95-105 % window
 * re-authenticated after the broker had ended the session); for 500 ms it
 * is 1.1 s, Kafka's floor between two logins, not 425-475 ms; for the
 * largest lifetime it is 85-95 % of 2^40 ms (without the cap the
 * arithmetic overflowed into the 1.1 s floor). */
static void test_reauth_is_armed_within_the_lifetime(void **state)
{
    bg_t_env_t *e = *state;
    bg_kafka_up_cbs_t cbs = bg_t_cbs;
    cbs.outstanding = bg_t_outstanding;
    bg_kafka_up_t *u = bg_t_connect_cbs(e, &cbs);
    assert_non_null(u->reauth_timer);
    for (int i = 0; i < 16; i++) { /* the point in the window is random */
        long long ms = bg_t_reauth_in(u, 100000);
        assert_true(ms >= 85000 && ms <= 95000);
    }
    assert_int_equal(bg_t_reauth_in(u, 500), 1100);
    const long long cap = 1ll << 40;
    long long ms = bg_t_reauth_in(u, INT64_MAX);
    assert_true(ms >= cap * 85 / 100 && ms <= cap * 95 / 100);
    bg_kafka_up_free(u);
}

static int bg_t_splice_fd = -1;

static int bg_t_splice_to(void *arg)
{
    (void)arg;
    return bg_t_splice_fd;
}

static int bg_t_spliced(void *arg, uint64_t n, int err)
{
    (void)arg, (void)n, (void)err;
    return 0;
}

/* 1 MiB of a response still to come, nothing buffered, the session offers
 * its plain socket: from a TLS upstream the bytes stay in the buffered
 * relay, which decrypts them (spliced, the client got the broker's TLS
 * records); from a plain one they are spliced. */
static void test_no_splice_from_a_tls_upstream(void **state)
{
    bg_t_env_t *e = *state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    bg_t_splice_fd = sv[0];
    bg_kafka_up_cbs_t cbs = bg_t_cbs;
    cbs.splice_to = bg_t_splice_to;
    cbs.spliced = bg_t_spliced;
    bg_kafka_up_t *u = bg_t_logged_in(e, &cbs);
    u->stream_left = 1u << 20;
    e->g.upstream_tls = SSL_CTX_new(TLS_client_method());
    assert_non_null(e->g.upstream_tls);
    assert_int_equal(bg_kafka_up__try_splice(u), 0);
    assert_int_equal(u->splicing, 0);
    SSL_CTX_free(e->g.upstream_tls);
    e->g.upstream_tls = NULL;
    assert_int_equal(bg_kafka_up__try_splice(u), 1);
    assert_int_equal(u->splicing, 1);
    bg_kafka_up_free(u);
    close(sv[0]);
    close(sv[1]);
}

/* A re-authentication fell due with one response awaited, the rest of
 * which is being spliced: it waits while that response is still coming
 * (even once counted: it started mid-stream, the broker's bytes then read as
 * the login's answer), and starts when the splice ends (the spliced
 * response was not counted, or the count had to pass the awaited one: the
 * login never started and the requests held meanwhile were never sent). */
static void test_reauth_waits_for_a_spliced_response(void **state)
{
    bg_t_env_t *e = *state;
    e->cfg.kafka.upstream.sasl_mechanism = "PLAIN";
    bg_kafka_up_cbs_t cbs = bg_t_cbs;
    cbs.outstanding = bg_t_outstanding;
    cbs.spliced = bg_t_spliced;
    bg_kafka_up_t *u = bg_t_logged_in(e, &cbs);
    u->reauth = BG_KAFKA_UP_REAUTH_DUE;
    u->responses = 5;
    u->reauth_after = 6;
    u->splicing = 1;
    u->stream_left = 70000;
    bg_kafka_up__maybe_reauth(u);
    assert_int_equal(u->reauth, BG_KAFKA_UP_REAUTH_DUE);
    u->responses = 6; /* as if counted already: the stream still runs */
    bg_kafka_up__maybe_reauth(u);
    assert_int_equal(u->reauth, BG_KAFKA_UP_REAUTH_DUE);
    u->responses = 5;
    bg_kafka_up__spliced(u, BG_UTIL_SPLICE_DONE, 0, 70000);
    assert_int_equal(u->responses, 6);
    assert_int_equal(u->reauth, BG_KAFKA_UP_REAUTH_RUNNING);
    assert_int_equal(u->state, BG_KAFKA_UP_HANDSHAKE);
    assert_int_equal(u->sent_api, BG_KAFKA_API_SASL_HANDSHAKE);
    bg_kafka_up_free(u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_keepalive_is_on_once_connected, bg_t_setup,
                                        bg_t_teardown),
        cmocka_unit_test_setup_teardown(test_a_timeout_names_the_phase, bg_t_setup, bg_t_teardown),
        cmocka_unit_test_setup_teardown(test_a_connection_that_cannot_start_says_why, bg_t_setup,
                                        bg_t_teardown),
        cmocka_unit_test_setup_teardown(test_the_handshake_takes_its_own_answer_only, bg_t_setup,
                                        bg_t_teardown),
        cmocka_unit_test_setup_teardown(test_reauth_is_armed_within_the_lifetime, bg_t_setup,
                                        bg_t_teardown),
        cmocka_unit_test_setup_teardown(test_no_splice_from_a_tls_upstream, bg_t_setup,
                                        bg_t_teardown),
        cmocka_unit_test_setup_teardown(test_reauth_waits_for_a_spliced_response, bg_t_setup,
                                        bg_t_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
