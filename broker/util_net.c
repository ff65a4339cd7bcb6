#include "broker/util_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "broker/log.h"

void bg_util_nodelay(int fd)
{
    int one = 1;
    if (fd >= 0)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

const char *bg_util_bev_connect(struct bufferevent *bev, struct evdns_base *dns, const char *host,
                                uint16_t port)
{
    if (port == 0)
        return "port 0 cannot be dialled";
    errno = 0;
    if (bufferevent_socket_connect_hostname(bev, dns, AF_UNSPEC, host, port) == 0)
        return NULL;
    return errno ? strerror(errno) : "libevent refused the address";
}

void bg_util_keepalive(int fd)
{
    int one = 1;
    if (fd >= 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
}

void bg_util_format_peer(const struct sockaddr *sa, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa && sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        snprintf(out, cap, "%s:%u", ip, ntohs(in->sin_port));
    } else if (sa && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        snprintf(out, cap, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else {
        snprintf(out, cap, "unknown");
    }
}

#define BG_UTIL__LIBEVENT_MAX_READ 4096 /* libevent 2.1's EVBUFFER_MAX_READ */

/* One readv of up to max bytes into space reserved at buf's end. */
static size_t bg_util__read_into(struct evbuffer *buf, int fd, size_t max)
{
    struct evbuffer_iovec v[2];
    int nv = evbuffer_reserve_space(buf, (ev_ssize_t)max, v, 2);
    if (nv <= 0)
        return 0;
    size_t room = 0;
    struct iovec io[2];
    for (int i = 0; i < nv; i++) {
        size_t take = v[i].iov_len < max - room ? v[i].iov_len : max - room;
        io[i].iov_base = v[i].iov_base, io[i].iov_len = take;
        room += take;
    }
    ssize_t n = readv(fd, io, nv);
    if (n <= 0) {
        evbuffer_commit_space(buf, v, 0);
        return 0;
    }
    size_t left = (size_t)n;
    int used = 0;
    for (; used < nv && left > 0; used++) {
        v[used].iov_len = left < io[used].iov_len ? left : io[used].iov_len;
        left -= v[used].iov_len;
    }
    evbuffer_commit_space(buf, v, used);
    return (size_t)n;
}

size_t bg_util_bev_read_more(struct bufferevent *bev, size_t max)
{
    /* libevent keeps the end of a bufferevent's input frozen outside its
     * own reads; this is one more of those reads. */
    struct evbuffer *in = bufferevent_get_input(bev);
    /* Less than libevent's one read in the buffer: that read was not capped,
     * so the socket is drained and another readv would only say EAGAIN. */
    if (evbuffer_get_length(in) < BG_UTIL__LIBEVENT_MAX_READ)
        return 0;
    evbuffer_unfreeze(in, 0);
    size_t n = bg_util__read_into(in, bufferevent_getfd(bev), max);
    evbuffer_freeze(in, 0);
    return n;
}

int bg_util_bev_send(struct bufferevent *bev, struct evbuffer *src, size_t n, int plain)
{
    if (evbuffer_get_length(src) < n)
        return -1;
    struct evbuffer *out = bufferevent_get_output(bev);
    size_t done = 0;
    if (plain && n > 0 && evbuffer_get_length(out) == 0) {
        int w = evbuffer_write_atmost(src, bufferevent_getfd(bev), (ev_ssize_t)n);
        done = w > 0 ? (size_t)w : 0;
    }
    if (done == n)
        return 0;
    size_t left = n - done;
    if (left <= BG_UTIL_SEND_COPY_MAX) {
        /* A small message is copied into the output's last chunk: moved,
         * its own chunk (1 KiB or more, however short the message) would
         * stay queued with it, and a peer that sends many requests busgate
         * answers itself while never reading would hold ~50 times more
         * memory than the queued bytes the output limit counts. */
        unsigned char tmp[BG_UTIL_SEND_COPY_MAX];
        if (evbuffer_remove(src, tmp, left) != (int)left)
            return -1;
        return evbuffer_add(out, tmp, left);
    }
    return evbuffer_remove_buffer(src, out, left) == (int)left ? 0 : -1;
}

long long bg_util_now_ms(void) { return bg_util_now_us() / 1000; }

long long bg_util_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Errors that last until something else in the process lets go of a
 * descriptor or memory: retrying at once cannot succeed. */
static int bg_util__accept_resource_error(int e)
{
    return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

static void bg_util__accept_resume(evutil_socket_t fd, short what, void *arg)
{
    bg_util_accept_guard_t *g = arg;
    evconnlistener_enable(g->l);
}

int bg_util_accept_guard_init(bg_util_accept_guard_t *g, struct evconnlistener *l,
                              const char *module, int pause_ms)
{
    memset(g, 0, sizeof *g);
    g->resume = event_new(evconnlistener_get_base(l), -1, 0, bg_util__accept_resume, g);
    if (!g->resume)
        return -1;
    g->l = l, g->module = module, g->pause_ms = pause_ms;
    return 0;
}

/* The first failure is logged at once, later ones at most every
 * BG_UTIL_ACCEPT_WARN_MS with how many were not. */
static void bg_util__accept_warn(bg_util_accept_guard_t *g, int e, int paused)
{
    long long now = bg_util_now_ms();
    if (now < g->warn_at_ms) {
        g->unlogged++;
        return;
    }
    char pause[64] = "", since[80] = "";
    if (paused)
        snprintf(pause, sizeof pause, "; pausing accepts, retrying every %d ms", g->pause_ms);
    if (g->unlogged)
        snprintf(since, sizeof since, " (%lu more since the last warning)", g->unlogged);
    bg_log_warn(g->module, "accept failed: %s%s%s", evutil_socket_error_to_string(e), pause,
                since);
    g->warn_at_ms = now + BG_UTIL_ACCEPT_WARN_MS;
    g->unlogged = 0;
}

void bg_util_accept_guard_failed(bg_util_accept_guard_t *g)
{
    int e = EVUTIL_SOCKET_ERROR();
    struct timeval tv = {g->pause_ms / 1000, (g->pause_ms % 1000) * 1000};
    int pause = bg_util__accept_resource_error(e) && g->resume && event_add(g->resume, &tv) == 0;
    if (pause)
        evconnlistener_disable(g->l);
    bg_util__accept_warn(g, e, pause);
}

void bg_util_accept_guard_clear(bg_util_accept_guard_t *g)
{
    if (g->resume)
        event_free(g->resume);
    g->resume = NULL;
    g->l = NULL;
}

/* host:port as a socket address; spec gets "host:port" ("[host]:port"). */
static int bg_util__sockaddr(const char *host, unsigned port, struct sockaddr_storage *ss,
                             int *sslen, char *spec, size_t speccap)
{
    snprintf(spec, speccap, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
    *sslen = (int)sizeof *ss;
    return port <= 65535 && evutil_parse_sockaddr_port(spec, (struct sockaddr *)ss, sslen) == 0
               ? 0
               : -1;
}

struct evconnlistener *bg_util_listen_shared(struct event_base *base, void *cb, void *arg,
                                             const char *host, unsigned port, char *err,
                                             size_t errlen)
{
    char spec[300];
    struct sockaddr_storage ss;
    int sslen;
    if (bg_util__sockaddr(host, port, &ss, &sslen, spec, sizeof spec) != 0) {
        snprintf(err, errlen, "bad listen address %s", spec);
        return NULL;
    }
    struct evconnlistener *l = evconnlistener_new_bind(
        base, (evconnlistener_cb)cb, arg,
        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_EXEC,
        512, (struct sockaddr *)&ss, sslen);
    if (!l)
        snprintf(err, errlen, "cannot listen on %s: %s", spec,
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    return l;
}

int bg_util_port_unused(const char *host, unsigned port, char *err, size_t errlen)
{
    char spec[300];
    struct sockaddr_storage ss;
    int sslen;
    if (bg_util__sockaddr(host, port, &ss, &sslen, spec, sizeof spec) != 0) {
        snprintf(err, errlen, "bad listen address %s", spec);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", spec, strerror(errno));
        return -1;
    }
    int one = 1; /* SO_REUSEADDR alone: old TIME_WAIT connections do not count */
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int rc = bind(fd, (struct sockaddr *)&ss, (socklen_t)sslen);
    int e = errno;
    close(fd);
    if (rc == 0)
        return 0;
    snprintf(err, errlen, "cannot listen on %s: %s%s", spec, strerror(e),
             e == EADDRINUSE ? " (another process listens there)" : "");
    return -1;
}
