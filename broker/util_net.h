/* Small socket helpers shared by the adapters. */
#ifndef BG_UTIL_NET_H
#define BG_UTIL_NET_H

#include <stddef.h>

/* Turns off Nagle's algorithm on a TCP socket: a proxy must forward each
 * request and response at once, or every hop adds up to a delayed-ACK
 * timeout of latency. Errors (e.g. not a TCP socket) are ignored. */
void bg_util_nodelay(int fd);

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
 * Returns 0, or -1 when src holds fewer than n bytes or queueing failed.
 * Call from the bufferevent's own thread. */
int bg_util_bev_send(struct bufferevent *bev, struct evbuffer *src, size_t n, int plain);

#endif
