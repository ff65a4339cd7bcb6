/* Private to adapters/kafka: the process-wide state of the Kafka adapter
 * (upstream broker map, topic-id map, TLS contexts) and the per-worker state
 * (listeners, sessions). */
#ifndef BG_KAFKA_ADAPTER_INTERNAL_H
#define BG_KAFKA_ADAPTER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "broker/config.h"
#include "broker/limits.h"
#include "broker/util_net.h"
#include "adapters/kafka/kafka_codec.h"
#include "adapters/kafka/kafka_topic_ids.h"
#include "broker/worker.h"

struct evconnlistener;
struct event;
typedef struct ssl_ctx_st SSL_CTX;

#define BG_KAFKA_MAX_NODES 256
#define BG_KAFKA_MAX_REFUSED 64 /* node ids whose refusal is logged, once each */
#define BG_KAFKA_PORT_RECHECK_MS 30000
#define BG_KAFKA_MAX_WORKERS 256
#define BG_KAFKA_VERSIONS_APIS 128 /* api keys whose upstream ranges are kept */

typedef struct bg_kafka_node_s {
    int32_t id;
    char host[256];
    uint16_t port;
    int port_taken; /* broker_port_base + id was held by another process: not served
                       (checked again, see below); ids whose port can never be served
                       (above 65535, kafka.listen's) are not stored at all */
    long long taken_checked_ms; /* monotonic time of the last check of a held port */
} bg_kafka_node_t;

typedef struct bg_kafka_worker_s bg_kafka_worker_t;

typedef struct bg_kafka_global_s {
    const bg_config_t *cfg; /* the start-up configuration, held for the run */
    void *mock_rk;          /* rd_kafka_t * owning the embedded mock cluster */
    void *mock;             /* rd_kafka_mock_cluster_t * */
    char *bootstrap;        /* upstream bootstrap list "h:p,h:p" */
    pthread_mutex_t mu;     /* guards nodes, workers, topic ids */
    bg_kafka_node_t nodes[BG_KAFKA_MAX_NODES];
    size_t nnodes;
    int32_t refused[BG_KAFKA_MAX_REFUSED]; /* ids whose refusal was logged */
    size_t nrefused;
    int refused_full; /* the list was full, and the log said so */
    bg_kafka_worker_t *workers[BG_KAFKA_MAX_WORKERS];
    size_t nworkers;
    bg_kafka_topic_ids_t topic_ids; /* id -> name, bounded (kafka_topic_ids.h) */
    /* Upstream ApiVersions bodies by node (bg_kafka_global_keep_versions):
     * slot 0 the bootstrap brokers, slot i + 1 the broker in nodes[i]. */
    struct bg_kafka_versions_s {
        uint8_t *body;
        size_t len;
        int16_t ver;
        int16_t vmin[BG_KAFKA_VERSIONS_APIS], vmax[BG_KAFKA_VERSIONS_APIS];
    } versions[BG_KAFKA_MAX_NODES + 1];
    _Atomic unsigned boot_rr;       /* round robin over bootstrap upstreams */
    SSL_CTX *client_tls;            /* NULL: plaintext listeners */
    SSL_CTX *upstream_tls;          /* NULL: plaintext upstream */
    _Atomic int upstream_seen_ok;   /* an upstream handshake has succeeded */
    /* Which connection holds each share session (kafka_share.h); its own lock. */
    struct bg_kafka_share_owners_s *share_owners;
} bg_kafka_global_t;

typedef struct bg_kafka_session_s bg_kafka_session_t;
TAILQ_HEAD(bg_kafka_session_list_s, bg_kafka_session_s);

typedef struct bg_kafka_listener_s {
    bg_kafka_worker_t *kw;
    int32_t node_id; /* -1: bootstrap */
    struct evconnlistener *l;
    bg_util_accept_guard_t guard; /* pauses l when accept() runs out of descriptors */
} bg_kafka_listener_t;

struct bg_kafka_worker_s {
    bg_worker_t *w;
    bg_kafka_global_t *g;
    bg_kafka_listener_t listeners[BG_KAFKA_MAX_NODES + 1];
    size_t nlisteners;
    struct event *nodes_ev; /* activated by any thread when a new broker appears */
    struct bg_kafka_discovery_s *discovery; /* worker 0 only */
    struct bg_kafka_session_list_s sessions;
    size_t nsessions;
    int draining;
};

/* ---- global (kafka_adapter.c) ---- */

/* Upstream address of node id into host/port; 0 found, -1 unknown. Any thread. */
int bg_kafka_global_node(bg_kafka_global_t *g, int32_t id, char *host, size_t hostlen,
                         uint16_t *port);
/* Picks the next bootstrap upstream address (round robin). Any thread. */
void bg_kafka_global_bootstrap(bg_kafka_global_t *g, char *host, size_t hostlen, uint16_t *port);
/* Records a broker seen in a Metadata/DescribeCluster/FindCoordinator
 * response or in a Produce/ShareFetch/ShareAcknowledge NodeEndpoints field
 * (Fetch has one from v16, which busgate does not offer); when it is new
 * every worker opens its listener. An empty host only asks. Returns 1 when
 * busgate serves the node on broker_port_base + id, 0 when not (the port is
 * held by another process, the broker names a port outside 1..65535, or the
 * node table is full: BG_KAFKA_MAX_NODES ids, kept until busgate stops). A
 * held port is checked again at most every BG_KAFKA_PORT_RECHECK_MS, when a
 * response names the node. An id busgate can never serve (its port above
 * 65535 or kafka.listen's own) is not stored and takes no slot. Any thread. */
int bg_kafka_global_learn_node(bg_kafka_global_t *g, int32_t id, const char *host, size_t hostlen,
                               int32_t port);
/* Opens on kw the ports of known brokers it does not serve yet. Called on
 * kw's thread right after learning brokers from a response, so a port is
 * open before the client that reads the response can connect to it (other
 * workers follow asynchronously). */
void bg_kafka_worker_open_ports(bg_kafka_worker_t *kw);
/* Topic-id map learned from responses. Any thread. */
void bg_kafka_global_learn_topic(bg_kafka_global_t *g, const uint8_t id[16], const uint8_t *name,
                                 size_t len);
/* Copies the name of topic id into out (NUL terminated); 1 found, 0 not. */
int bg_kafka_global_topic_name(bg_kafka_global_t *g, const uint8_t id[16], char *out, size_t cap);
/* The last ApiVersions response body (at version ver) an upstream
 * connection to node (-1: the bootstrap brokers) received, and its ranges
 * (vmin/vmax per api key below BG_KAFKA_VERSIONS_APIS, vmax -1: not listed):
 * kept so that a client's ApiVersions before authentication is answered, and
 * its first requests checked, without busgate logging in to the broker for a
 * client that may never authenticate. keep: copies in (nothing kept when out
 * of memory). versions: a copy of the body in arena, 1 when one is kept,
 * else 0. range: 1 listed (min/max set), 0 not listed, -1 nothing kept.
 * Any thread. */
void bg_kafka_global_keep_versions(bg_kafka_global_t *g, int32_t node, const uint8_t *body,
                                   size_t len, int16_t ver, const int16_t *vmin,
                                   const int16_t *vmax);
int bg_kafka_global_versions(bg_kafka_global_t *g, int32_t node, bg_kafka_arena_t *arena,
                             const uint8_t **body, size_t *len, int16_t *ver);
int bg_kafka_global_version_range(bg_kafka_global_t *g, int32_t node, int16_t api, int16_t *min,
                                  int16_t *max);

/* ---- sessions (kafka_session.c) ---- */

/* Starts a session for an accepted client socket on worker kw, proxying to
 * upstream node node_id (-1: a bootstrap broker). Takes fd (closes it on
 * failure) and lim, the connection's share of the limits (released when
 * the session ends, or at once on failure). */
void bg_kafka_session_accept(bg_kafka_worker_t *kw, int fd, const struct sockaddr *peer,
                             int peerlen, int32_t node_id, bg_limits_conn_t *lim);
/* Asks every session of kw to close once its in-flight responses are sent. */
void bg_kafka_sessions_drain(bg_kafka_worker_t *kw);
/* Frees every session of kw at once (worker stop). */
void bg_kafka_sessions_free(bg_kafka_worker_t *kw);

#endif
