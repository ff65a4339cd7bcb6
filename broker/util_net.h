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

#endif
