/* kafka_upstream.c (included, for its static functions) against a loopback
 * listener that accepts and never answers: the connection turns on TCP
 * keepalive once connected; a handshake deadline that passes is reported
 * with the phase it stopped in (connect, TLS handshake, ApiVersions, the
 * SASL login or a re-authentication); a connection that cannot even start
 * says why, to the log and to its caller. */
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

static void bg_t_ready(void *arg)
{
    (void)arg;
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

static bg_kafka_up_t *bg_t_connect(bg_t_env_t *e)
{
    char why[400] = "unset";
    bg_kafka_up_t *u = bg_kafka_up_connect(e->base, NULL, &e->g, -1, &bg_t_cbs, e, why, sizeof why);
    assert_non_null(u);
    assert_string_equal(why, "");
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_keepalive_is_on_once_connected, bg_t_setup,
                                        bg_t_teardown),
        cmocka_unit_test_setup_teardown(test_a_timeout_names_the_phase, bg_t_setup, bg_t_teardown),
        cmocka_unit_test_setup_teardown(test_a_connection_that_cannot_start_says_why, bg_t_setup,
                                        bg_t_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
