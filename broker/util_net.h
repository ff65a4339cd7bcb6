/* Small socket helpers shared by the adapters. */
#ifndef BG_UTIL_NET_H
#define BG_UTIL_NET_H

#include <stddef.h>
#include <stdint.h>

/* Turns off Nagle's algorithm on a TCP socket: a proxy must forward each
 * request and response at once, or every hop adds up to a delayed-ACK
 * timeout of latency. Errors (e.g. not a TCP socket) are ignored. */
void bg_util_nodelay(int fd);

/* Turns on TCP keepalive (SO_KEEPALIVE, the system's probe timing) on a
 * connected socket, as Kafka's Java client does for its broker connections:
 * a peer that vanished without a FIN or reset (a host gone, a NAT or
 * firewall that dropped the flow) is found even while the connection is
 * idle. Errors (e.g. not a socket) are ignored. */
void bg_util_keepalive(int fd);

struct sockaddr;
/* Writes "ip:port" ("[ip]:port" for IPv6, "unknown" otherwise) into out. */
void bg_util_format_peer(const struct sockaddr *sa, char *out, size_t cap);

struct bufferevent;
/* Reads up to max more bytes that are already waiting on a socket
 * bufferevent's descriptor into its input buffer, in one readv. libevent 2.1
 * reads at most 4 KiB per wake-up on a socket bufferevent (its
 * EVBUFFER_MAX_READ; there is no setting before 2.2): a read callback that
 * relays bulk data calls this first, so a burst costs one system call
 * instead of one wake-up per 4 KiB. Only for plain (not TLS) bufferevents:
 * the bytes bypass any filter. Does nothing while the input holds less than
 * one libevent read (4 KiB): then that read was not capped and the socket
 * is drained. Returns the bytes read; 0 when none are waiting, at end of
 * stream or on an error, which are left for the bufferevent's own next read
 * to report (the socket stays readable).
 * Call from the bufferevent's own thread (its read callback). */
size_t bg_util_bev_read_more(struct bufferevent *bev, size_t max);

struct evbuffer;
/* Moves the first n bytes of src to a socket bufferevent: when its output
 * is empty and `plain` (not TLS), as much as the socket takes is written at
 * once and only the rest is queued. A relay would otherwise queue every
 * message, wait for a write event (two epoll_ctl calls and a loop round) and
 * write then. Order is kept: nothing is written ahead of queued bytes. A
 * write error is left for the bufferevent's own next write to report.
 * What is queued of up to BG_UTIL_SEND_COPY_MAX bytes is copied into the
 * output's last chunk rather than moved with its own, so many small
 * messages queue in few chunks.
 * Returns 0, or -1 when src holds fewer than n bytes or queueing failed.
 * Call from the bufferevent's own thread. */
#define BG_UTIL_SEND_COPY_MAX 2048
int bg_util_bev_send(struct bufferevent *bev, struct evbuffer *src, size_t n, int plain);

struct evdns_base;
/* Starts a bufferevent's connection to host:port with libevent's resolver
 * (bufferevent_socket_connect_hostname; the name lookup first, unless
 * numeric). NULL when it started: a failure after that reaches the event
 * callback. Else why it could not start: port 0, the system's error, or
 * "libevent refused the address" (libevent 2.1 refuses an address family
 * or a port it cannot dial without setting errno). */
const char *bg_util_bev_connect(struct bufferevent *bev, struct evdns_base *dns, const char *host,
                                uint16_t port);

struct evconnlistener;
struct event;
struct event_base;
/* Opens a listener on host:port (a numeric address; IPv6 without brackets)
 * with SO_REUSEPORT, so each worker has its own and the kernel spreads
 * connections among them. cb is libevent's evconnlistener_cb. NULL with the
 * reason in err ("cannot listen on HOST:PORT: why"). */
struct evconnlistener *bg_util_listen_shared(struct event_base *base, void *cb, void *arg,
                                             const char *host, unsigned port, char *err,
                                             size_t errlen);
/* 0 when nothing listens on host:port yet: a socket that does not share its
 * port binds there. Call before the first bg_util_listen_shared of an
 * address: another process of the same user could otherwise join the
 * SO_REUSEPORT group unnoticed and take part of the connections. -1 with
 * the reason in err. */
int bg_util_port_unused(const char *host, unsigned port, char *err, size_t errlen);

/* Milliseconds and microseconds of CLOCK_MONOTONIC: for durations (a
 * step of the wall clock must not make them negative). */
long long bg_util_now_ms(void);
long long bg_util_now_us(void);

/* Keeps a listener from spinning when accept() fails for want of
 * descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): the connection
 * stays in the backlog, so the listening socket stays readable and libevent
 * would call the error callback again at once, for ever, at 100% CPU. On
 * those errors the guard disables the listener and enables it again after
 * pause_ms (the connection is accepted then, once something was closed).
 * Every failure is counted, but a warning is logged at most every
 * BG_UTIL_ACCEPT_WARN_MS per listener. One guard per listener, used on
 * the listener's own thread. */
#define BG_UTIL_ACCEPT_PAUSE_MS 250
#define BG_UTIL_ACCEPT_WARN_MS 10000
typedef struct bg_util_accept_guard_s {
    struct evconnlistener *l;
    struct event *resume;  /* one-shot timer that enables l again */
    const char *module;    /* log module, e.g. "kafka" */
    int pause_ms;
    long long warn_at_ms;  /* no warning before this (monotonic ms) */
    unsigned long unlogged; /* failures since the last warning */
} bg_util_accept_guard_t;

/* Guards l (on l's event_base). Returns 0, or -1 when out of memory. */
int bg_util_accept_guard_init(bg_util_accept_guard_t *g, struct evconnlistener *l,
                              const char *module, int pause_ms);
/* Call from l's error callback (errno still holds accept()'s error). */
void bg_util_accept_guard_failed(bg_util_accept_guard_t *g);
/* Frees the timer. Call before freeing the listener; harmless when g was
 * never initialised (zeroed) or is already cleared. */
void bg_util_accept_guard_clear(bg_util_accept_guard_t *g);

#endif
