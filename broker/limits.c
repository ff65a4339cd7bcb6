#include "broker/limits.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "broker/log.h"
#include "broker/util_net.h"

/* Unauthenticated connections from one address key; freed at 0. */
struct bg_limits_ip_s {
    bg_limits_ip_t *next;
    uint8_t key[16];
    uint64_t n;
};

static const char *const bg_limits__reasons[BG_LIMITS__COUNT] = {
    "ok",          "max_connections", "max_unauthenticated", "max_unauthenticated_per_ip",
    "descriptors", "out_of_memory",
};

static const char *const bg_limits__protos[BG_PROTO__COUNT] = {"kafka", "amqp", "http"};

const char *bg_limits_reason(bg_limits_verdict_t v)
{
    return (unsigned)v < BG_LIMITS__COUNT ? bg_limits__reasons[v] : "?";
}

uint64_t bg_limits_default_max(uint64_t fd_limit, uint64_t fd_reserve)
{
    if (fd_limit == 0)
        return 1048576;
    return fd_limit > fd_reserve + 2 ? (fd_limit - fd_reserve) / 2 : 1;
}

int bg_limits_init(bg_limits_t *l, const bg_limits_conf_t *conf)
{
    memset(l, 0, sizeof *l);
    l->conf = *conf;
    return pthread_mutex_init(&l->mu, NULL) == 0 ? 0 : -1;
}

void bg_limits_clear(bg_limits_t *l)
{
    for (size_t i = 0; i < BG_LIMITS_IP_BUCKETS; i++) {
        while (l->ip[i]) {
            bg_limits_ip_t *e = l->ip[i];
            l->ip[i] = e->next;
            free(e);
        }
    }
}

/* The address key: an IPv6 address by its /64 (one site's hosts, or one
 * host's many privacy addresses, share it), an IPv4 one (also mapped into
 * IPv6 by a dual-stack listener) whole as ::ffff:a.b.c.d; anything else
 * is all zeros. */
static void bg_limits__key(const struct sockaddr *sa, uint8_t key[16])
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(key, 0, 16);
    if (sa && sa->sa_family == AF_INET) {
        memcpy(key, mapped, 12);
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa && sa->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        memcpy(key, a, memcmp(a, mapped, 12) == 0 ? 16 : 8);
    }
}

static bg_limits_ip_t **bg_limits__slot(bg_limits_t *l, const uint8_t key[16])
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 16777619u;
    bg_limits_ip_t **p = &l->ip[h % BG_LIMITS_IP_BUCKETS];
    while (*p && memcmp((*p)->key, key, 16) != 0)
        p = &(*p)->next;
    return p;
}

/* The count check and increment; under l->mu. */
static bg_limits_verdict_t bg_limits__count(bg_limits_t *l, const uint8_t key[16])
{
    if (l->open_all >= l->conf.max_connections)
        return BG_LIMITS_MAX_CONNECTIONS;
    if (l->unauth_all >= l->conf.max_unauth)
        return BG_LIMITS_MAX_UNAUTH;
    if (l->conf.max_unauth_per_ip > 0) {
        bg_limits_ip_t **p = bg_limits__slot(l, key);
        if (*p && (*p)->n >= l->conf.max_unauth_per_ip)
            return BG_LIMITS_MAX_UNAUTH_PER_IP;
        if (!*p) {
            if (!(*p = calloc(1, sizeof **p)))
                return BG_LIMITS_NO_MEMORY;
            memcpy((*p)->key, key, 16);
        }
        (*p)->n++;
    }
    l->open_all++;
    l->unauth_all++;
    return BG_LIMITS_OK;
}

/* Whether this refusal is warned about now; under l->mu. *more: how many
 * were not since the last warning. */
static int bg_limits__warn_due(bg_limits_t *l, unsigned long *more)
{
    long long now = bg_util_now_ms();
    if (now < l->warn_at_ms) {
        l->unlogged++;
        return 0;
    }
    *more = l->unlogged;
    l->unlogged = 0;
    l->warn_at_ms = now + BG_LIMITS_WARN_MS;
    return 1;
}

static void bg_limits__warn(const bg_limits_t *l, bg_proto_t proto, bg_limits_verdict_t v,
                            const struct sockaddr *peer, unsigned long more)
{
    static const char *const what[BG_LIMITS__COUNT] = {"",
                                                       "limits.max_connections",
                                                       "limits.max_unauthenticated",
                                                       "limits.max_unauthenticated_per_ip",
                                                       "limits.fd_reserve",
                                                       "out of memory"};
    const uint64_t *lim[BG_LIMITS__COUNT] = {NULL,
                                             &l->conf.max_connections,
                                             &l->conf.max_unauth,
                                             &l->conf.max_unauth_per_ip,
                                             &l->conf.fd_reserve,
                                             NULL};
    char who[80], value[40] = "", since[80] = "";
    bg_util_format_peer(peer, who, sizeof who);
    if (lim[v])
        snprintf(value, sizeof value, " (%llu)", (unsigned long long)*lim[v]);
    if (more)
        snprintf(since, sizeof since, " (%lu more refused since the last warning)", more);
    bg_log_warn(bg_limits__protos[proto], "connection from %s refused: %s%s%s", who, what[v], value,
                since);
}

bg_limits_verdict_t bg_limits_admit(bg_limits_t *l, bg_proto_t proto, int fd,
                                    const struct sockaddr *peer, bg_limits_conn_t *c)
{
    memset(c, 0, sizeof *c);
    if (!l)
        return BG_LIMITS_OK;
    if ((unsigned)proto >= BG_PROTO__COUNT)
        proto = BG_PROTO_KAFKA;
    bg_limits__key(peer, c->key);
    /* Descriptors are handed out lowest first: fd's number says that at
     * least fd + 1 are open, so this one leaves no more than the reserve. */
    bg_limits_verdict_t v = BG_LIMITS_OK;
    if (l->conf.fd_limit > 0 && fd >= 0 && (uint64_t)fd + l->conf.fd_reserve >= l->conf.fd_limit)
        v = BG_LIMITS_DESCRIPTORS;
    unsigned long more = 0;
    int warn = 0;
    pthread_mutex_lock(&l->mu);
    if (v == BG_LIMITS_OK)
        v = bg_limits__count(l, c->key);
    if (v == BG_LIMITS_OK) {
        atomic_fetch_add(&l->open[proto], 1);
        atomic_fetch_add(&l->unauth[proto], 1);
    } else {
        atomic_fetch_add(&l->refused[proto][v], 1);
        warn = bg_limits__warn_due(l, &more);
    }
    pthread_mutex_unlock(&l->mu);
    if (v != BG_LIMITS_OK) {
        if (warn)
            bg_limits__warn(l, proto, v, peer, more);
        memset(c, 0, sizeof *c);
        return v;
    }
    c->l = l, c->proto = (uint8_t)proto, c->unauth = 1;
    return BG_LIMITS_OK;
}

/* Takes c out of the unauthenticated counts; under l->mu. */
static void bg_limits__unauth_done(bg_limits_t *l, bg_limits_conn_t *c)
{
    if (!c->unauth)
        return;
    c->unauth = 0;
    l->unauth_all--;
    atomic_fetch_sub(&l->unauth[c->proto], 1);
    if (l->conf.max_unauth_per_ip == 0)
        return;
    bg_limits_ip_t **p = bg_limits__slot(l, c->key);
    if (*p && --(*p)->n == 0) {
        bg_limits_ip_t *e = *p;
        *p = e->next;
        free(e);
    }
}

void bg_limits_authenticated(bg_limits_conn_t *c)
{
    bg_limits_t *l = c->l;
    if (!l || !c->unauth)
        return;
    pthread_mutex_lock(&l->mu);
    bg_limits__unauth_done(l, c);
    pthread_mutex_unlock(&l->mu);
}

void bg_limits_release(bg_limits_conn_t *c)
{
    bg_limits_t *l = c->l;
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    bg_limits__unauth_done(l, c);
    l->open_all--;
    atomic_fetch_sub(&l->open[c->proto], 1);
    pthread_mutex_unlock(&l->mu);
    memset(c, 0, sizeof *c);
}
