/* Whole Kafka sessions in-process, for tests of what crosses busgate between
 * a broker and a client: bg_runtime_run with the Kafka adapter on the main
 * thread, a scripted broker (bg_t_up_*) and a client (bg_t_cli_*) on
 * loopback ports 33000-33999, tokens signed with the development key
 * (examples/dev-signing-key.pem, examples/jwks.json).
 *
 * The broker answers busgate's own requests itself: ApiVersions (client id
 * "busgate"; a version above 0 gets UNSUPPORTED_VERSION, then v0 is answered) and the
 * discovery Metadata (client id "busgate-discovery", node 0 at its own
 * address). Every other request is queued for the scenario, which answers
 * it with bg_t_up_reply / bg_t_up_send_raw or leaves it unanswered.
 *
 * The scenario runs on its own thread while busgate runs: cmocka's asserts
 * must not be used there (they jump out of the main thread's stack), so it
 * records the first failed expectation with bg_t_check and the test asserts
 * after the run. Every wait is bounded (BG_T_WAIT_MS). */

/* kafka_extra for a run whose checks see a connection closed before login:
 * busgate's auth_timeout (10 s by default) equals BG_T_WAIT_MS, so without
 * it the timeout's close could pass for the close a check expects. */
#define BG_T_AUTH_TIMEOUT_PAST_WAITS "  auth_timeout: 60s\n"
#ifndef TEST_KAFKA_SESSION_UTIL_H
#define TEST_KAFKA_SESSION_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "adapters/kafka/kafka_adapter.h"
#include "broker/identity.h"
#include "broker/log.h"
#include "broker/runtime.h"
#include "tests/unit/runtime/test_runtime_config.h"
#include "tests/unit/runtime/test_runtime_net.h"

#define BG_T_MAX_CONNS 16
#define BG_T_MAX_REQS 64
#define BG_T_LOG_CAP (1u << 20)

/* ---- a growable byte buffer, big-endian writers ---- */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} bg_t_buf_t;

static inline void bg_t_put(bg_t_buf_t *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p)
            abort();
        b->p = p, b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, src, n);
    b->len += n;
}

static inline void bg_t_i8(bg_t_buf_t *b, int8_t v) { bg_t_put(b, &v, 1); }

static inline void bg_t_i16(bg_t_buf_t *b, int16_t v)
{
    uint8_t x[2] = {(uint8_t)((uint16_t)v >> 8), (uint8_t)v};
    bg_t_put(b, x, 2);
}

static inline void bg_t_i32(bg_t_buf_t *b, int32_t v)
{
    uint32_t u = (uint32_t)v;
    uint8_t x[4] = {(uint8_t)(u >> 24), (uint8_t)(u >> 16), (uint8_t)(u >> 8), (uint8_t)u};
    bg_t_put(b, x, 4);
}

static inline void bg_t_i64(bg_t_buf_t *b, int64_t v)
{
    bg_t_i32(b, (int32_t)((uint64_t)v >> 32));
    bg_t_i32(b, (int32_t)(uint32_t)v);
}

/* A non-flexible string; NULL is the null string (length -1). */
static inline void bg_t_str(bg_t_buf_t *b, const char *s)
{
    bg_t_i16(b, s ? (int16_t)strlen(s) : -1);
    if (s)
        bg_t_put(b, s, strlen(s));
}

static inline void bg_t_buf_free(bg_t_buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static inline int32_t bg_t_get_i32(const uint8_t *p)
{
    return (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
}

static inline int16_t bg_t_get_i16(const uint8_t *p) { return (int16_t)((uint16_t)p[0] << 8 | p[1]); }

/* ---- frames ---- */

/* One frame (after its size field) into *out (malloc'd). 1 read, 0 closed,
 * -1 timeout or error. */
static inline int bg_t_read_frame(int fd, bg_t_buf_t *out, int ms)
{
    uint8_t hdr[4];
    int rc = bg_t_read_all(fd, hdr, 4, ms);
    if (rc <= 0)
        return rc;
    int32_t n = bg_t_get_i32(hdr);
    if (n < 0)
        return -1;
    out->len = 0;
    if ((size_t)n > out->cap) {
        uint8_t *p = realloc(out->p, (size_t)n);
        if (!p)
            return -1;
        out->p = p, out->cap = (size_t)n;
    }
    rc = bg_t_read_all(fd, out->p, (size_t)n, ms);
    out->len = rc > 0 ? (size_t)n : 0;
    return rc;
}

/* ---- the run ---- */

typedef struct bg_t_req_s {
    int fd; /* the broker-side connection it came on */
    int16_t api_key, api_version;
    int32_t corr;
} bg_t_req_t;

typedef struct bg_t_run_s bg_t_run_t;
typedef void bg_t_scenario_fn(bg_t_run_t *r);

struct bg_t_run_s {
    /* set by the test */
    const char *kafka_extra; /* lines added to the kafka section */
    int upstream_sasl;       /* busgate logs in to the broker with SASL PLAIN */
    int audit;               /* audit.file (audit_path) and the admin listener (admin_port) */
    bg_t_scenario_fn *scenario;
    const void *arg; /* the scenario's parameters */
    /* ports */
    int up_port, listen_port, base_port, admin_port;
    char audit_path[64]; /* with audit: removed by bg_t_finish */
    int up_lfd;
    /* the broker */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t up_accept;
    pthread_t up_conn[BG_T_MAX_CONNS];
    int up_fds[BG_T_MAX_CONNS];
    size_t nconns;
    bg_t_req_t reqs[BG_T_MAX_REQS]; /* forwarded requests not yet taken */
    size_t nreqs;
    int logins;     /* busgate's SaslAuthenticate requests (upstream_sasl) */
    int discovered; /* busgate's start-up discovery got its answer */
    int stop;
    /* the log, as busgate wrote it */
    int log_fd;
    pthread_t log_th;
    char *log;
    size_t log_len;
    /* the first failed expectation, "" while all held */
    char fail[512];
    char token[4096];
    int rc; /* bg_runtime_run's */
};

/* Records the first failed expectation (for the main thread to assert). */
static inline int bg_t_check(bg_t_run_t *r, int ok, const char *fmt, ...)
{
    if (ok)
        return 1;
    pthread_mutex_lock(&r->mu);
    if (!r->fail[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->fail, sizeof r->fail, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&r->mu);
    return 0;
}

static inline void bg_t_frame(int fd, const bg_t_buf_t *payload)
{
    bg_t_buf_t f = {0};
    bg_t_i32(&f, (int32_t)payload->len);
    bg_t_put(&f, payload->p, payload->len);
    (void)bg_t_write_all(fd, f.p, f.len);
    bg_t_buf_free(&f);
}

/* Answers corr on fd with body (response header v0). */
static inline void bg_t_up_reply(int fd, int32_t corr, const bg_t_buf_t *body)
{
    bg_t_buf_t p = {0};
    bg_t_i32(&p, corr);
    bg_t_put(&p, body->p, body->len);
    bg_t_frame(fd, &p);
    bg_t_buf_free(&p);
}

/* Writes bytes as they are (a frame with any size field). */
static inline void bg_t_up_send_raw(int fd, const void *p, size_t n) { (void)bg_t_write_all(fd, p, n); }

/* The broker's own answers. 1 when req was one of busgate's requests. */
static inline int bg_t_up_own(bg_t_run_t *r, int fd, const bg_t_req_t *q, const char *client_id)
{
    bg_t_buf_t b = {0};
    int own = 1;
    if (q->api_key == 18 && strcmp(client_id, "busgate") == 0) {
        /* (api key, min, max): busgate's handshake and what the tests send;
         * a Produce range wholly below busgate's and a 3.x broker's
         * ConsumerGroupHeartbeat v0, neither of which busgate offers. */
        static const int16_t apis[][3] = {
            {1, 4, 11}, {3, 0, 1}, {17, 0, 1}, {18, 0, 3}, {36, 0, 1}, {0, 0, 2}, {68, 0, 0},
        };
        if (q->api_version > 0) { /* UNSUPPORTED_VERSION in the v0 layout: v0 comes next */
            bg_t_i16(&b, 35);
        } else {
            bg_t_i16(&b, 0);
            bg_t_i32(&b, (int32_t)(sizeof apis / sizeof apis[0]));
            for (size_t i = 0; i < sizeof apis / sizeof apis[0]; i++)
                bg_t_i16(&b, apis[i][0]), bg_t_i16(&b, apis[i][1]), bg_t_i16(&b, apis[i][2]);
        }
    } else if (q->api_key == 17 && strcmp(client_id, "busgate") == 0) {
        bg_t_i16(&b, 0); /* SaslHandshake v1: PLAIN */
        bg_t_i32(&b, 1), bg_t_str(&b, "PLAIN");
    } else if (q->api_key == 36 && strcmp(client_id, "busgate") == 0) {
        bg_t_i16(&b, 0), bg_t_str(&b, NULL); /* SaslAuthenticate v1: ok */
        bg_t_i32(&b, 0), bg_t_i64(&b, 0);    /* no bytes, no session lifetime */
        pthread_mutex_lock(&r->mu);
        r->logins++;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
    } else if (q->api_key == 3 && strcmp(client_id, "busgate-discovery") == 0) {
        pthread_mutex_lock(&r->mu);
        r->discovered = 1;
        pthread_mutex_unlock(&r->mu);
        bg_t_i32(&b, 1); /* Metadata v1: node 0 here, no topics */
        bg_t_i32(&b, 0), bg_t_str(&b, "127.0.0.1"), bg_t_i32(&b, r->up_port), bg_t_str(&b, NULL);
        bg_t_i32(&b, 0), bg_t_i32(&b, 0);
    } else {
        own = 0;
    }
    if (own)
        bg_t_up_reply(fd, q->corr, &b);
    bg_t_buf_free(&b);
    return own;
}

typedef struct {
    bg_t_run_t *r;
    int fd;
} bg_t_conn_arg_t;

static inline void *bg_t_up_conn_main(void *arg)
{
    bg_t_conn_arg_t *c = arg;
    bg_t_run_t *r = c->r;
    int fd = c->fd;
    free(c);
    bg_t_buf_t f = {0};
    for (;;) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int ready = poll(&pf, 1, 200); /* then look at stop again */
        pthread_mutex_lock(&r->mu);
        int stop = r->stop;
        pthread_mutex_unlock(&r->mu);
        if (stop)
            break;
        if (ready <= 0)
            continue;
        if (bg_t_read_frame(fd, &f, BG_T_WAIT_MS) <= 0 || f.len < 10)
            break;
        bg_t_req_t q = {.fd = fd,
                        .api_key = bg_t_get_i16(f.p),
                        .api_version = bg_t_get_i16(f.p + 2),
                        .corr = bg_t_get_i32(f.p + 4)};
        int16_t n = bg_t_get_i16(f.p + 8);
        char client_id[64] = "";
        if (n > 0 && (size_t)n < sizeof client_id && f.len >= 10 + (size_t)n)
            memcpy(client_id, f.p + 10, (size_t)n), client_id[n] = 0;
        if (bg_t_up_own(r, fd, &q, client_id))
            continue;
        pthread_mutex_lock(&r->mu);
        if (r->nreqs < BG_T_MAX_REQS)
            r->reqs[r->nreqs++] = q;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
    }
    bg_t_buf_free(&f);
    return NULL;
}

static inline void *bg_t_up_accept_main(void *arg)
{
    bg_t_run_t *r = arg;
    for (;;) {
        struct pollfd pf = {.fd = r->up_lfd, .events = POLLIN};
        int ready = poll(&pf, 1, 100);
        pthread_mutex_lock(&r->mu);
        int stop = r->stop;
        pthread_mutex_unlock(&r->mu);
        if (stop)
            return NULL;
        if (ready <= 0)
            continue;
        int fd = accept(r->up_lfd, NULL, NULL);
        if (fd < 0)
            continue;
        bg_t_conn_arg_t *c = malloc(sizeof *c);
        pthread_mutex_lock(&r->mu);
        if (!c || r->nconns == BG_T_MAX_CONNS) {
            pthread_mutex_unlock(&r->mu);
            free(c);
            close(fd);
            continue;
        }
        c->r = r, c->fd = fd;
        r->up_fds[r->nconns] = fd;
        if (pthread_create(&r->up_conn[r->nconns], NULL, bg_t_up_conn_main, c) == 0)
            r->nconns++;
        else
            free(c), close(fd);
        pthread_mutex_unlock(&r->mu);
    }
}

/* The next request busgate forwarded (api_key), within BG_T_WAIT_MS. 1 got
 * it, 0 not (recorded as a failure). */
static inline int bg_t_up_next(bg_t_run_t *r, int16_t api_key, bg_t_req_t *out)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += BG_T_WAIT_MS / 1000;
    pthread_mutex_lock(&r->mu);
    while (r->nreqs == 0 && pthread_cond_timedwait(&r->cv, &r->mu, &until) == 0)
        ;
    int got = r->nreqs > 0;
    if (got) {
        *out = r->reqs[0];
        memmove(r->reqs, r->reqs + 1, (r->nreqs - 1) * sizeof r->reqs[0]);
        r->nreqs--;
    }
    pthread_mutex_unlock(&r->mu);
    if (!bg_t_check(r, got, "no request reached the broker"))
        return 0;
    return bg_t_check(r, out->api_key == api_key, "the broker got api %d, expected %d",
                      out->api_key, api_key);
}

/* ---- the client ---- */

/* Sends a request with header v1 (client id "bg-test"). */
static inline void bg_t_cli_send(int fd, int16_t api_key, int16_t version, int32_t corr,
                          const bg_t_buf_t *body)
{
    bg_t_buf_t p = {0};
    bg_t_i16(&p, api_key), bg_t_i16(&p, version), bg_t_i32(&p, corr);
    bg_t_str(&p, "bg-test");
    bg_t_put(&p, body->p, body->len);
    bg_t_frame(fd, &p);
    bg_t_buf_free(&p);
}

/* Connects to busgate's bootstrap port and logs in with OAUTHBEARER
 * (SaslHandshake v1, SaslAuthenticate v0). The socket, or -1 (recorded). */
static inline int bg_t_cli_login_on(bg_t_run_t *r, int fd);
static inline int bg_t_cli_login(bg_t_run_t *r)
{
    int fd = bg_t_connect(r->listen_port);
    if (!bg_t_check(r, fd >= 0, "cannot connect to busgate on %d", r->listen_port))
        return -1;
    return bg_t_cli_login_on(r, fd);
}

/* Logs in on fd as bg_t_cli_login does; fd, or -1 (closed, recorded). */
static inline int bg_t_cli_login_on(bg_t_run_t *r, int fd)
{
    bg_t_buf_t b = {0}, f = {0};
    bg_t_str(&b, "OAUTHBEARER");
    bg_t_cli_send(fd, 17, 1, 1, &b);
    int ok = bg_t_read_frame(fd, &f, BG_T_WAIT_MS) > 0 && f.len >= 6 &&
             bg_t_get_i32(f.p) == 1 && bg_t_get_i16(f.p + 4) == 0;
    if (bg_t_check(r, ok, "SaslHandshake failed")) {
        char msg[4200];
        int n = snprintf(msg, sizeof msg, "n,,\001auth=Bearer %s\001\001", r->token);
        b.len = 0;
        bg_t_i32(&b, n);
        bg_t_put(&b, msg, (size_t)n);
        bg_t_cli_send(fd, 36, 0, 2, &b);
        ok = bg_t_read_frame(fd, &f, BG_T_WAIT_MS) > 0 && f.len >= 6 &&
             bg_t_get_i32(f.p) == 2 && bg_t_get_i16(f.p + 4) == 0;
        bg_t_check(r, ok, "SaslAuthenticate failed");
    }
    bg_t_buf_free(&b);
    bg_t_buf_free(&f);
    if (!ok) {
        close(fd);
        return -1;
    }
    return fd;
}

/* 1 when busgate closed fd without sending anything more. */
static inline int bg_t_cli_closed(int fd)
{
    uint8_t b;
    return bg_t_read_all(fd, &b, 1, BG_T_WAIT_MS) == 0;
}

/* ---- running busgate ---- */

static inline void *bg_t_log_main(void *arg)
{
    bg_t_run_t *r = arg;
    char buf[4096];
    for (;;) {
        ssize_t n = read(r->log_fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return NULL;
        pthread_mutex_lock(&r->mu);
        if (r->log_len + (size_t)n < BG_T_LOG_CAP) {
            memcpy(r->log + r->log_len, buf, (size_t)n);
            r->log_len += (size_t)n;
            r->log[r->log_len] = 0;
        }
        pthread_mutex_unlock(&r->mu);
    }
}

static inline void *bg_t_scenario_main(void *arg)
{
    bg_t_run_t *r = arg;
    r->scenario(r);
    kill(getpid(), SIGTERM); /* busgate stops; bg_runtime_run returns */
    return NULL;
}

static inline void bg_t_mint(bg_t_run_t *r)
{
    char path[1024], err[256];
    snprintf(path, sizeof path, "%s/examples/dev-signing-key.pem", getenv("BG_SOURCE_DIR"));
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char pem[8192];
    size_t n = fread(pem, 1, sizeof pem, f);
    fclose(f);
    const char *groups[] = {"readers"};
    char *tok = bg_identity_mint(pem, n, "busgate-dev", "alice", groups, 1, 600, "busgate-dev",
                                 "busgate", err, sizeof err);
    assert_non_null(tok);
    assert_true(strlen(tok) < sizeof r->token);
    snprintf(r->token, sizeof r->token, "%s", tok);
    free(tok);
}

/* Group "readers" may read and describe topics keep-*; nothing else. */
static inline void bg_t_config(bg_t_run_t *r, char *path, size_t cap)
{
    FILE *f = bg_t_config_open(path, cap, "kafka_session");
    fprintf(f,
            "kafka:\n"
            "  listen: 127.0.0.1:%d\n"
            "  broker_port_base: %d\n"
            "%s"
            "  upstream:\n"
            "    bootstrap: [127.0.0.1:%d]\n"
            "%s"
            "policy:\n"
            "  default: deny\n"
            "  rules:\n"
            "    - name: readers-keep\n"
            "      subjects: [group:readers]\n"
            "      resources: [\"kafka:topic:keep-*\"]\n"
            "      verbs: [read, describe]\n"
            "      effect: allow\n",
            r->listen_port, r->base_port, r->kafka_extra ? r->kafka_extra : "", r->up_port,
            r->upstream_sasl ? "    security: sasl_plaintext\n"
                               "    sasl: {mechanism: PLAIN, username: busgate, password: pw}\n"
                             : "");
    if (r->audit)
        fprintf(f, "audit:\n  file: %s\nadmin:\n  listen: 127.0.0.1:%d\n", r->audit_path,
                r->admin_port);
    else
        fputs("audit: {enabled: false}\n", f); /* a listener needs one or the other */
    fclose(f);
}

static inline void bg_t_ignore(int sig) { (void)sig; }

/* Runs busgate with the broker and the scenario until the scenario ends.
 * bg_t_finish then checks the outcome and frees the run. */
static inline void bg_t_run(bg_t_run_t *r)
{
    assert_non_null(getenv("BG_SOURCE_DIR"));
    /* The scenario's SIGTERM must not end the test when busgate is not
     * running (it refused the configuration): busgate handles it while it
     * runs and puts this handler back when it stops. */
    struct sigaction sa = {.sa_handler = bg_t_ignore};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->log = calloc(1, BG_T_LOG_CAP + 1);
    assert_non_null(r->log);
    bg_t_mint(r);
    /* The broker listens first; busgate's ports are picked around it
     * (base + 0 is node 0's). */
    int taken[4];
    r->up_port = bg_t_pick_port(NULL, 0);
    assert_true(r->up_port > 0);
    r->up_lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(r->up_lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)r->up_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(r->up_lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(r->up_lfd, 16), 0);
    taken[0] = r->up_port;
    r->listen_port = bg_t_pick_port(taken, 1);
    taken[1] = r->listen_port;
    r->base_port = bg_t_pick_port(taken, 2);
    assert_true(r->listen_port > 0 && r->base_port > 0);
    if (r->audit) {
        taken[2] = r->base_port;
        r->admin_port = bg_t_pick_port(taken, 3);
        assert_true(r->admin_port > 0);
        snprintf(r->audit_path, sizeof r->audit_path, "/tmp/bg_t_audit_XXXXXX");
        int afd = mkstemp(r->audit_path);
        assert_true(afd >= 0);
        close(afd);
    }
    assert_int_equal(pthread_create(&r->up_accept, NULL, bg_t_up_accept_main, r), 0);

    char path[64];
    bg_t_config(r, path, sizeof path);
    int p[2];
    assert_int_equal(pipe(p), 0);
    r->log_fd = p[0];
    bg_log_set_fd(p[1]);
    assert_int_equal(pthread_create(&r->log_th, NULL, bg_t_log_main, r), 0);
    pthread_t sc;
    assert_int_equal(pthread_create(&sc, NULL, bg_t_scenario_main, r), 0);
    static const bg_adapter_t *const adapters[] = {&bg_kafka_adapter};
    r->rc = bg_runtime_run(path, adapters, 1);
    pthread_join(sc, NULL);
    bg_log_set_fd(2);
    close(p[1]);
    pthread_join(r->log_th, NULL);
    close(p[0]);
    unlink(path);

    pthread_mutex_lock(&r->mu);
    r->stop = 1;
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->up_accept, NULL);
    for (size_t i = 0; i < r->nconns; i++) {
        shutdown(r->up_fds[i], SHUT_RDWR);
        pthread_join(r->up_conn[i], NULL);
        close(r->up_fds[i]);
    }
    close(r->up_lfd);
}

/* Ends the test's run: asserts that no expectation failed, that busgate
 * stopped with status 0 and that its log holds every line of want (NULL
 * ended), after freeing the run (a failed assert does not return). */
static inline void bg_t_finish(bg_t_run_t *r, const char *const *want)
{
    static char why[1024];
    why[0] = 0;
    if (r->fail[0])
        snprintf(why, sizeof why, "%s", r->fail);
    else if (r->rc != 0)
        snprintf(why, sizeof why, "busgate exited with status %d", r->rc);
    for (size_t i = 0; !why[0] && want && want[i]; i++)
        if (!strstr(r->log, want[i]))
            snprintf(why, sizeof why, "not in busgate's log: %s", want[i]);
    if (why[0])
        fprintf(stderr, "busgate's log:\n%s\n", r->log);
    free(r->log);
    if (r->audit_path[0])
        unlink(r->audit_path);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    if (why[0])
        fail_msg("%s", why);
}

#endif
