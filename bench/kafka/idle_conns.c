/*
 * idle_conns: opens N Kafka connections to busgate, authenticates each
 * (ApiVersions v0, SaslHandshake v1 PLAIN, SaslAuthenticate v1 with a
 * token as the PLAIN password), then holds them idle so that
 * bench/kafka/idle_connections.sh can read busgate's memory.
 *
 *   idle_conns HOST PORT N TOKEN_FILE [HOLD_SECONDS] [MAX_PENDING]
 *
 * One process, non-blocking sockets, epoll. At most MAX_PENDING (default
 * 64) connections are in their handshake at a time, so the measurement is
 * not a connection storm against the listen backlog. Prints
 * "READY authenticated=A failed=F seconds=S" once every connection has
 * finished (or failed), then "HOLDING", sleeps HOLD_SECONDS (default 600,
 * or until SIGTERM/SIGINT) while counting connections the server closes,
 * and prints "DONE closed_by_server=C". Exit 0 when all N authenticated.
 * The wire encoder is deliberately minimal and local to this benchmark.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { ST_CONNECTING, ST_APIVERSIONS, ST_HANDSHAKE, ST_AUTH, ST_DONE, ST_FAILED };

typedef struct {
    int fd;
    int state;
    size_t out_len, out_off; /* pending request bytes */
    uint8_t *out;
    size_t in_len; /* received bytes of the current response */
    uint8_t in[4096];
} conn_t;

static volatile sig_atomic_t g_stop;
static const char *g_token;
static size_t g_token_len;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Request header v1 (size, api key, version, correlation id = api key,
 * client id "idle") followed by body; replaces c->out. */
static int build_request(conn_t *c, uint16_t key, uint16_t ver, const uint8_t *body, size_t blen)
{
    static const char cid[] = "idle";
    size_t hlen = 2 + 2 + 4 + 2 + (sizeof cid - 1);
    uint8_t *p = malloc(4 + hlen + blen);
    if (!p)
        return -1;
    put32(p, (uint32_t)(hlen + blen));
    put16(p + 4, key);
    put16(p + 6, ver);
    put32(p + 8, key);
    put16(p + 12, sizeof cid - 1);
    memcpy(p + 14, cid, sizeof cid - 1);
    if (blen)
        memcpy(p + 4 + hlen, body, blen);
    free(c->out);
    c->out = p;
    c->out_len = 4 + hlen + blen;
    c->out_off = 0;
    c->in_len = 0;
    return 0;
}

static int next_request(conn_t *c)
{
    if (c->state == ST_APIVERSIONS)
        return build_request(c, 18, 0, NULL, 0);
    if (c->state == ST_HANDSHAKE) {
        uint8_t b[2 + 5];
        put16(b, 5);
        memcpy(b + 2, "PLAIN", 5);
        return build_request(c, 17, 1, b, sizeof b);
    }
    /* SaslAuthenticate v1: bytes = authzid NUL username NUL password. */
    size_t n = 1 + 5 + 1 + g_token_len;
    uint8_t *b = malloc(4 + n);
    if (!b)
        return -1;
    put32(b, (uint32_t)n);
    b[4] = 0;
    memcpy(b + 5, "bench", 5);
    b[10] = 0;
    memcpy(b + 11, g_token, g_token_len);
    int rc = build_request(c, 36, 1, b, 4 + n);
    free(b);
    return rc;
}

/* A complete response in c->in: checks correlation id and error code (the
 * first body field of all three responses); 0 when it succeeded. */
static int check_response(const conn_t *c, uint16_t key)
{
    if (c->in_len < 4 + 4 + 2 || get32(c->in + 4) != key)
        return -1;
    uint16_t err = get16(c->in + 8);
    if (err != 0) {
        static int reported;
        if (reported++ < 5)
            fprintf(stderr, "idle_conns: api %u returned error %u\n", key, err);
        return -1;
    }
    return 0;
}

static void fail(conn_t *c, int *pending, int *failed)
{
    if (c->state != ST_FAILED) {
        close(c->fd);
        c->state = ST_FAILED;
        (*pending)--;
        (*failed)++;
    }
}

static int flush_out(conn_t *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        c->out_off += (size_t)n;
    }
    return 0;
}

/* Reads what is available; returns 1 when a whole response is in c->in,
 * 0 when more is needed, -1 on error or close. */
static int read_response(conn_t *c)
{
    for (;;) {
        size_t want = sizeof c->in - c->in_len;
        if (c->in_len >= 4) {
            uint32_t size = get32(c->in);
            if (size > sizeof c->in - 4)
                return -1;
            if (c->in_len >= 4 + size)
                return 1;
            want = 4 + size - c->in_len;
        } else {
            want = 4 - c->in_len;
        }
        ssize_t n = recv(c->fd, c->in + c->in_len, want, 0);
        if (n == 0)
            return -1;
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        c->in_len += (size_t)n;
    }
}

static const uint16_t k_state_key[] = {[ST_APIVERSIONS] = 18, [ST_HANDSHAKE] = 17, [ST_AUTH] = 36};

/* Advances one connection on an epoll event. */
static void step(conn_t *c, uint32_t ev, int *pending, int *failed, int *done)
{
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            fail(c, pending, failed);
            return;
        }
        c->state = ST_APIVERSIONS;
        if (next_request(c) != 0) {
            fail(c, pending, failed);
            return;
        }
    }
    if (flush_out(c) != 0) {
        fail(c, pending, failed);
        return;
    }
    if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    int r = read_response(c);
    if (r < 0 || (r == 1 && check_response(c, k_state_key[c->state]) != 0)) {
        fail(c, pending, failed);
        return;
    }
    if (r == 0)
        return;
    if (c->state == ST_AUTH) {
        c->state = ST_DONE;
        free(c->out);
        c->out = NULL;
        (*pending)--;
        (*done)++;
        return;
    }
    c->state++;
    if (next_request(c) != 0 || flush_out(c) != 0)
        fail(c, pending, failed);
}

/* Interest set for c's state: writable only while a request is pending. */
static void watch(int ep, const conn_t *c, uint32_t idx)
{
    if (c->state == ST_FAILED)
        return; /* closed: the descriptor left the epoll set with it */
    uint32_t want = EPOLLIN | EPOLLRDHUP;
    if (c->state == ST_CONNECTING || (c->state != ST_DONE && c->out_off < c->out_len))
        want |= EPOLLOUT;
    struct epoll_event ev = {.events = want, .data.u32 = idx};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static int open_conn(conn_t *c, int ep, const struct sockaddr_in *sa, int idx)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->state = ST_CONNECTING;
    if (connect(c->fd, (const struct sockaddr *)sa, sizeof *sa) != 0 && errno != EINPROGRESS) {
        close(c->fd);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.u32 = (uint32_t)idx};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        close(c->fd);
        return -1;
    }
    return 0;
}

static char *read_token(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    static char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    buf[n] = 0;
    *len = n;
    return n ? buf : NULL;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Handshake phase: keeps up to max_pending connections in progress until
 * all n are done or failed (or 600 s pass). */
static void handshake_all(conn_t *cs, int n, int ep, const struct sockaddr_in *sa, int max_pending,
                          int *done, int *failed)
{
    int opened = 0, pending = 0;
    double deadline = now_s() + 600;
    struct epoll_event evs[256];
    while ((*done + *failed) < n && !g_stop && now_s() < deadline) {
        while (opened < n && pending < max_pending) {
            if (open_conn(&cs[opened], ep, sa, opened) != 0) {
                cs[opened].state = ST_FAILED;
                (*failed)++;
            } else {
                pending++;
            }
            opened++;
        }
        int k = epoll_wait(ep, evs, 256, 1000);
        for (int i = 0; i < k; i++) {
            conn_t *c = &cs[evs[i].data.u32];
            if (c->state == ST_DONE) { /* closed by busgate (or unexpected bytes) */
                close(c->fd);
                c->state = ST_FAILED;
                (*done)--;
                (*failed)++;
                continue;
            }
            if (c->state != ST_FAILED) {
                step(c, evs[i].events, &pending, failed, done);
                watch(ep, c, evs[i].data.u32);
            }
        }
    }
}

/* Idle phase: after authentication only closes are expected. */
static int hold(conn_t *cs, int ep, double seconds)
{
    int closed = 0;
    double end = now_s() + seconds;
    struct epoll_event evs[256];
    while (!g_stop && now_s() < end) {
        int k = epoll_wait(ep, evs, 256, 500);
        for (int i = 0; i < k; i++) {
            conn_t *c = &cs[evs[i].data.u32];
            if (c->state != ST_DONE)
                continue;
            close(c->fd);
            c->state = ST_FAILED;
            closed++;
        }
    }
    return closed;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s HOST PORT N TOKEN_FILE [HOLD_SECONDS] [MAX_PENDING]\n", argv[0]);
        return 2;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    int n = atoi(argv[3]);
    double hold_s = argc > 5 ? atof(argv[5]) : 600;
    int max_pending = argc > 6 ? atoi(argv[6]) : 64;
    if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1 || n <= 0 || max_pending <= 0) {
        fprintf(stderr, "idle_conns: bad arguments\n");
        return 2;
    }
    g_token = read_token(argv[4], &g_token_len);
    if (!g_token) {
        fprintf(stderr, "idle_conns: cannot read a token from %s\n", argv[4]);
        return 2;
    }
    raise_nofile();
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    conn_t *cs = calloc((size_t)n, sizeof *cs);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (!cs || ep < 0) {
        perror("idle_conns");
        return 1;
    }
    int done = 0, failed = 0;
    double t0 = now_s();
    handshake_all(cs, n, ep, &sa, max_pending, &done, &failed);
    printf("READY authenticated=%d failed=%d seconds=%.1f\nHOLDING\n", done, failed, now_s() - t0);
    fflush(stdout);
    int closed = hold(cs, ep, hold_s);
    printf("DONE closed_by_server=%d\n", closed);
    fflush(stdout);
    return done == n && closed == 0 ? 0 : 1;
}
