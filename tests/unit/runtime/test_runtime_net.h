/* Unit-test helpers for tests that run busgate's runtime in-process and
 * talk to it over loopback: bounded socket reads and writes, ports picked
 * from 33000-33999 (BG_T_PORT_LO..HI; BG_TEST_PORTS=LO-HI, as for the
 * integration suites, picks from that range instead), and what the admin listener and the
 * audit file say. Every wait is bounded (BG_T_WAIT_MS). Independent of the
 * protocol; used by tests/unit/kafka/test_kafka_session_util.h and the
 * AMQP session tests. */
#ifndef BG_TEST_RUNTIME_NET_H
#define BG_TEST_RUNTIME_NET_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BG_T_PORT_LO 33000
#define BG_T_PORT_HI 33999
#define BG_T_WAIT_MS 10000

static inline long long bg_t_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int bg_t_write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w, n -= (size_t)w;
    }
    return 0;
}

/* Reads exactly n bytes within ms milliseconds. 1 read, 0 the peer closed
 * (end of stream or reset), -1 timeout or error. */
static inline int bg_t_read_all(int fd, void *p, size_t n, int ms)
{
    uint8_t *b = p;
    long long deadline = bg_t_now_ms() + ms;
    while (n > 0) {
        long long left = deadline - bg_t_now_ms();
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
            return -1;
        ssize_t r = recv(fd, b, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return 0;
        if (r < 0)
            return -1;
        b += r, n -= (size_t)r;
    }
    return 1;
}

static inline int bg_t_port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* A free port in 33000-33999 (or BG_TEST_PORTS=LO-HI) other than those in
 * taken[0..n), from a random start (several runs at once pick different
 * ones). */
static inline int bg_t_pick_port(const int *taken, size_t n)
{
    int lo = BG_T_PORT_LO, hi = BG_T_PORT_HI, elo, ehi;
    const char *env = getenv("BG_TEST_PORTS");
    if (env && sscanf(env, "%d-%d", &elo, &ehi) == 2 && elo > 0 && elo <= ehi && ehi < 65536)
        lo = elo, hi = ehi;
    int span = hi - lo + 1;
    int start = (int)(((unsigned)getpid() * 7919u + (unsigned)bg_t_now_ms()) % (unsigned)span);
    for (int i = 0; i < span; i++) {
        int port = lo + (start + i) % span;
        int used = 0;
        for (size_t k = 0; k < n; k++)
            used |= taken[k] == port;
        if (!used && bg_t_port_free(port))
            return port;
    }
    return -1;
}

static inline int bg_t_connect(int port)
{
    long long deadline = bg_t_now_ms() + BG_T_WAIT_MS;
    while (bg_t_now_ms() < deadline) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0)
            return fd;
        if (fd >= 0)
            close(fd);
        usleep(50 * 1000);
    }
    return -1;
}

/* The value of one series of busgate's /metrics on the admin listener at
 * 127.0.0.1:port, e.g. "busgate_auth_failures_total{protocol=\"kafka\"}";
 * -1 when it cannot be read. */
static inline long long bg_t_metric(int port, const char *series)
{
    int fd = bg_t_connect(port);
    if (fd < 0)
        return -1;
    static const char req[] = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    char *body = calloc(1, 1 << 18);
    size_t n = 0;
    long long v = -1;
    if (body && bg_t_write_all(fd, req, sizeof req - 1) == 0) {
        /* HTTP/1.0: the answer ends when busgate closes the connection. */
        while (n < (1u << 18) - 1) {
            struct pollfd pf = {.fd = fd, .events = POLLIN};
            if (poll(&pf, 1, BG_T_WAIT_MS) <= 0)
                break;
            ssize_t r = recv(fd, body + n, (1u << 18) - 1 - n, 0);
            if (r <= 0)
                break;
            n += (size_t)r;
        }
        size_t sl = strlen(series);
        for (char *p = body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
            if (strncmp(p, series, sl) == 0 && p[sl] == ' ') {
                v = strtoll(p + sl + 1, NULL, 10);
                break;
            }
    }
    free(body);
    close(fd);
    return v;
}

/* The lines of the file at path that hold every string of want (NULL
 * ended); -1 when it cannot be read. For JSON-lines audit files and logs. */
static inline int bg_t_file_lines(const char *path, const char *const *want)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[8192];
    int count = 0;
    while (fgets(line, sizeof line, f)) {
        int all = 1;
        for (size_t i = 0; all && want[i]; i++)
            all = strstr(line, want[i]) != NULL;
        count += all;
    }
    fclose(f);
    return count;
}

#endif
