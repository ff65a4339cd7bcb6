/* A bare TCP relay for the pass-through benchmarks: the floor of what any
 * proxy costs on this machine. It accepts on 127.0.0.1:LISTEN_PORT, dials
 * UPSTREAM_HOST:UPSTREAM_PORT for each client and moves bytes both ways,
 * inspecting nothing: one thread, level-triggered epoll, TCP_NODELAY on
 * both legs (as busgate sets it), a 64 KiB buffer per direction, a read
 * then a write per wake-up (busgate's own shape, without its parsing,
 * policy and audit). A benchmark that runs direct / relay / busgate in the
 * same invocation separates the cost of an extra hop from busgate's own.
 *
 * With --splice the bytes never enter the relay's memory: each direction
 * is a pipe, filled from one socket and drained into the other with
 * splice(2) (up to the pipe's size a call: 1 MiB, or the default 64 KiB
 * where the system refuses a larger pipe), the least a user-space relay can
 * do.
 *
 * usage: tcp_relay [--splice] LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT
 * Runs until SIGTERM or SIGINT. Not a product part: no limits, no TLS. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* splice, F_SETPIPE_SZ: before the first system header */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define RELAY_BUF (64 * 1024)
#define RELAY_PIPE (1024 * 1024)

typedef struct relay_dir {
    int from, to;
    size_t off, len; /* bytes of buf (or the pipe) read from `from`, not yet written to `to` */
    int pipe[2];     /* --splice: the direction's pipe, else -1 */
    char buf[RELAY_BUF];
} relay_dir_t;

typedef struct relay_pair {
    int fd[2];         /* 0 client, 1 upstream */
    uint32_t armed[2]; /* the epoll interest registered for each socket */
    int hup[2];        /* the socket hung up while its bytes still wait to be
                        * written on: off epoll until they are (no spinning) */
    int closed;        /* freed after the current batch of events */
    relay_dir_t d[2];  /* 0 client->upstream, 1 upstream->client */
} relay_pair_t;

/* What an epoll event names: a pair and which of its sockets. */
typedef struct relay_ref {
    relay_pair_t *p;
    int side;
} relay_ref_t;

static volatile sig_atomic_t g_stop;
static int g_splice; /* --splice */

static void relay_on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void relay_nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* The epoll interest of side s of pair p: reading while its direction's
 * buffer is empty, writing while the other direction has bytes for it.
 * Changed only when it differs from what is registered (in the steady
 * state a read is written on at once, and nothing changes). */
static void relay_arm(int ep, relay_pair_t *p, relay_ref_t *refs, int s, int op)
{
    if (p->hup[s])
        return;
    struct epoll_event ev = {0};
    ev.events = (p->d[s].len == 0 ? EPOLLIN : 0) | (p->d[1 - s].len ? EPOLLOUT : 0);
    if (op == EPOLL_CTL_MOD && ev.events == p->armed[s])
        return;
    ev.data.ptr = &refs[s];
    p->armed[s] = ev.events;
    (void)epoll_ctl(ep, op, p->fd[s], &ev);
}

/* Closes both legs; the pair is freed by the caller after the batch. */
static void relay_close(int ep, relay_pair_t *p)
{
    for (int s = 0; s < 2; s++) {
        (void)epoll_ctl(ep, EPOLL_CTL_DEL, p->fd[s], NULL);
        close(p->fd[s]);
        for (int k = 0; k < 2; k++)
            if (p->d[s].pipe[k] >= 0)
                close(p->d[s].pipe[k]);
    }
    p->closed = 1;
}

/* Writes what direction d holds; 0 ok (maybe partly), -1 the peer is gone. */
static int relay_flush(relay_dir_t *d)
{
    while (d->len) {
        ssize_t n = g_splice ? splice(d->pipe[0], NULL, d->to, NULL, d->len,
                                      SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
                             : write(d->to, d->buf + d->off, d->len);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        d->off += (size_t)n;
        d->len -= (size_t)n;
    }
    d->off = 0;
    return 0;
}

static int relay_dial(const struct addrinfo *up)
{
    int fd = socket(up->ai_family, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, up->ai_addr, up->ai_addrlen) != 0) {
        close(fd);
        return -1;
    }
    relay_nodelay(fd);
    (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* A client accepted: its upstream dialled (blocking, on loopback) and both
 * sockets registered. A client whose upstream cannot be dialled is closed. */
static void relay_accept(int ep, int lfd, const struct addrinfo *up)
{
    int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
    if (c < 0)
        return;
    relay_nodelay(c);
    int u = relay_dial(up);
    relay_pair_t *p = u >= 0 ? calloc(1, sizeof *p) : NULL;
    relay_ref_t *refs = p ? calloc(2, sizeof *refs) : NULL;
    if (!refs) {
        free(p);
        close(c);
        if (u >= 0)
            close(u);
        return;
    }
    p->fd[0] = c;
    p->fd[1] = u;
    p->d[0].from = c;
    p->d[0].to = u;
    p->d[1].from = u;
    p->d[1].to = c;
    for (int s = 0; s < 2; s++)
        p->d[s].pipe[0] = p->d[s].pipe[1] = -1;
    for (int s = 0; g_splice && s < 2; s++) {
        if (pipe2(p->d[s].pipe, O_NONBLOCK) != 0) { /* no pipe, no splice: drop the client */
            relay_close(ep, p);
            free(p);
            free(refs);
            return;
        }
        (void)fcntl(p->d[s].pipe[1], F_SETPIPE_SZ, RELAY_PIPE);
    }
    for (int s = 0; s < 2; s++) {
        refs[s] = (relay_ref_t){p, s};
        relay_arm(ep, p, refs, s, EPOLL_CTL_ADD);
    }
}

/* Side s of pair p is ready (events ev): write to it what waits for it,
 * read from it what it sent and pass that on at once. -1 when the pair
 * is done (a close or an error on either leg). */
static int relay_event(int ep, relay_pair_t *p, int s, uint32_t ev)
{
    if ((ev & EPOLLOUT) && relay_flush(&p->d[1 - s]) != 0)
        return -1;
    if (p->hup[1 - s] && p->d[1 - s].len == 0) /* the last of a side that hung up is out */
        return -1;
    relay_dir_t *d = &p->d[s];
    if ((ev & (EPOLLHUP | EPOLLERR)) && d->len) {
        /* Hung up while what it sent still waits for the other side: off
         * epoll, which would report it again at once, until that is out. */
        p->hup[s] = 1;
        (void)epoll_ctl(ep, EPOLL_CTL_DEL, p->fd[s], NULL);
        return 0;
    }
    if ((ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) && d->len == 0) {
        ssize_t n = g_splice ? splice(d->from, NULL, d->pipe[1], NULL, RELAY_PIPE,
                                      SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
                             : read(d->from, d->buf, sizeof d->buf);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return -1;
        if (n > 0) {
            d->off = 0;
            d->len = (size_t)n;
            if (relay_flush(d) != 0)
                return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--splice") == 0) {
        g_splice = 1;
        argv++;
        argc--;
    }
    if (argc != 4) {
        fprintf(stderr, "usage: tcp_relay [--splice] LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT\n");
        return 2;
    }
    struct addrinfo hints = {0}, *up = NULL;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(argv[2], argv[3], &hints, &up) != 0 || !up) {
        fprintf(stderr, "tcp_relay: cannot resolve %s:%s\n", argv[2], argv[3]);
        return 1;
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)atoi(argv[1]));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    (void)setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 128) != 0) {
        perror("tcp_relay: listen");
        return 1;
    }
    struct sigaction act = {0};
    act.sa_handler = relay_on_signal;
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);
    signal(SIGPIPE, SIG_IGN);
    int ep = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    struct epoll_event evs[64];
    relay_ref_t *done[64];
    while (!g_stop) {
        int n = epoll_wait(ep, evs, 64, 500), ndone = 0;
        for (int i = 0; i < n; i++) {
            relay_ref_t *r = evs[i].data.ptr;
            if (!r) {
                relay_accept(ep, lfd, up);
                continue;
            }
            relay_pair_t *p = r->p;
            if (p->closed) /* closed earlier in this batch */
                continue;
            if (relay_event(ep, p, r->side, evs[i].events) != 0) {
                relay_close(ep, p);
                done[ndone++] = r - r->side;
                continue;
            }
            for (int s = 0; s < 2; s++)
                relay_arm(ep, p, r - r->side, s, EPOLL_CTL_MOD);
        }
        for (int i = 0; i < ndone; i++) {
            free(done[i]->p);
            free(done[i]);
        }
    }
    freeaddrinfo(up);
    return 0;
}
