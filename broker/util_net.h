/* Small socket helpers shared by the adapters. */
#ifndef BG_UTIL_NET_H
#define BG_UTIL_NET_H

/* Turns off Nagle's algorithm on a TCP socket: a proxy must forward each
 * request and response at once, or every hop adds up to a delayed-ACK
 * timeout of latency. Errors (e.g. not a TCP socket) are ignored. */
void bg_util_nodelay(int fd);

#endif
