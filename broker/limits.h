/* Client connection limits shared by every adapter and worker (the
 * `limits` configuration section): a cap on all client connections, on
 * those that have not authenticated yet (in all and per source address),
 * and descriptors held back from client sockets for upstream connects,
 * audit, the admin listener and reloads.
 *
 * One bg_limits_t per process; workers admit connections on their own
 * threads. The decision and the counts change under one mutex (an accept
 * takes it once, an authentication or a close once more), and the counts
 * are atomics so a /metrics scrape reads whole values without it. */
#ifndef BG_LIMITS_H
#define BG_LIMITS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "broker/metrics.h"

/* Why a connection was refused; BG_LIMITS_OK when it was let in. */
typedef enum {
    BG_LIMITS_OK = 0,
    BG_LIMITS_MAX_CONNECTIONS,   /* limits.max_connections reached */
    BG_LIMITS_MAX_UNAUTH,        /* limits.max_unauthenticated reached */
    BG_LIMITS_MAX_UNAUTH_PER_IP, /* limits.max_unauthenticated_per_ip reached */
    BG_LIMITS_DESCRIPTORS,       /* only limits.fd_reserve descriptors were left */
    BG_LIMITS_NO_MEMORY,         /* the per-address count could not be kept */
    BG_LIMITS__COUNT
} bg_limits_verdict_t;

/* The metric label of v: "max_connections", "max_unauthenticated",
 * "max_unauthenticated_per_ip", "descriptors", "out_of_memory" ("ok"). */
const char *bg_limits_reason(bg_limits_verdict_t v);

typedef struct bg_limits_conf_s {
    uint64_t max_connections;   /* client connections of every protocol; >0 */
    uint64_t max_unauth;        /* of them not authenticated yet; >0 */
    uint64_t max_unauth_per_ip; /* not authenticated, per address (IPv6: /64); 0 = no cap */
    uint64_t fd_limit;          /* the open file limit; 0 = unlimited (no descriptor check) */
    uint64_t fd_reserve;        /* descriptors client sockets never take */
} bg_limits_conf_t;

/* The default of limits.max_connections: half of what the open file limit
 * leaves above the reserve (each client connection may hold an upstream
 * one), at least 1. fd_limit 0 (unlimited): 1048576. */
uint64_t bg_limits_default_max(uint64_t fd_limit, uint64_t fd_reserve);

#define BG_LIMITS_IP_BUCKETS 1024
#define BG_LIMITS_WARN_MS 10000

typedef struct bg_limits_ip_s bg_limits_ip_t;

typedef struct bg_limits_s {
    bg_limits_conf_t conf;
    _Atomic uint64_t open[BG_PROTO__COUNT];   /* admitted, not yet released */
    _Atomic uint64_t unauth[BG_PROTO__COUNT]; /* of them not authenticated */
    _Atomic uint64_t refused[BG_PROTO__COUNT][BG_LIMITS__COUNT];
    /* private to limits.c, under mu */
    pthread_mutex_t mu;
    uint64_t open_all, unauth_all;
    bg_limits_ip_t *ip[BG_LIMITS_IP_BUCKETS]; /* addresses with unauthenticated connections */
    long long warn_at_ms;                     /* no refusal warning before (monotonic ms) */
    unsigned long unlogged;                   /* refusals since the last warning */
} bg_limits_t;

/* One connection's share of the counts, filled by bg_limits_admit and
 * given back exactly once by bg_limits_authenticated / bg_limits_release
 * (both idempotent). Zeroed, it holds nothing (release is a no-op). */
typedef struct bg_limits_conn_s {
    bg_limits_t *l;  /* NULL: nothing counted */
    uint8_t key[16]; /* source address key (IPv6 /64, IPv4 as ::ffff:a.b.c.d) */
    uint8_t proto;
    uint8_t unauth; /* still counted as not authenticated */
} bg_limits_conn_t;

/* Sets l up with conf. Returns 0, or -1 when the mutex cannot be made. */
int bg_limits_init(bg_limits_t *l, const bg_limits_conf_t *conf);
/* Frees the per-address table. Call after every connection was released
 * (workers joined). Harmless on a zeroed l. */
void bg_limits_clear(bg_limits_t *l);

struct sockaddr;
/* Decides on a client connection just accepted as fd from peer (may be
 * NULL). BG_LIMITS_OK: it is counted open and not authenticated, *c holds
 * its share. Otherwise nothing is counted (*c zeroed), the refusal is
 * counted under its reason and a warning logged (at most one every
 * BG_LIMITS_WARN_MS, saying how many were not); the caller closes fd at
 * once. l NULL: always BG_LIMITS_OK, nothing counted. Any thread. */
bg_limits_verdict_t bg_limits_admit(bg_limits_t *l, bg_proto_t proto, int fd,
                                    const struct sockaddr *peer, bg_limits_conn_t *c);
/* The connection authenticated: it no longer counts as unauthenticated.
 * Later calls do nothing. Any thread. */
void bg_limits_authenticated(bg_limits_conn_t *c);
/* The connection ended: everything it still counts in is given back; c is
 * zeroed. Any thread. */
void bg_limits_release(bg_limits_conn_t *c);

#endif
