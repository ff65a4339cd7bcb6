/* Response rewrites that do not depend on policy: broker addresses become
 * busgate's (advertised_host : port_base + node_id) in Metadata,
 * FindCoordinator, DescribeCluster and the NodeEndpoints of Produce (v10+),
 * ShareFetch and ShareAcknowledge (a ControllerId that names a broker left
 * out becomes -1); node ids and topic id/name pairs are
 * reported to the session. Fetch is offered up to v15 only (kafka_authz.c),
 * which has no NodeEndpoints: bg_kafka__r_fetch's v16+ branch is not
 * reached while that cap stands. */
#include <string.h>

#include "adapters/kafka/kafka_authz-internal.h"

#define K(x) BG_KAFKA_##x

static void bg_kafka__note_node(int32_t id, int32_t *nodes, size_t *nnodes, size_t maxnodes)
{
    if (!nodes || !nnodes || id < 0)
        return;
    for (size_t i = 0; i < *nnodes; i++)
        if (nodes[i] == id)
            return;
    if (*nnodes < maxnodes)
        nodes[(*nnodes)++] = id;
}

/* Rewrites host/port of one broker entry to busgate's; rack and everything
 * else kept. An entry without a node (id < 0: error entries) keeps no
 * address (an empty host, port -1, as Kafka sends it). Returns -1 for a
 * node busgate does not serve on port_base + id (learn_node): the caller
 * leaves it out, since a client told of that port would reach whatever
 * else listens there, and hand it its token. */
static int bg_kafka__addr(const bg_kafka_authz_ctx_t *ctx, bg_kafka_struct_t *b, int id_idx,
                          int host_idx, int port_idx, int32_t *nodes, size_t *nnodes,
                          size_t maxnodes)
{
    int64_t id = b->f[id_idx].i;
    if (!ctx->advertised_host)
        return 0; /* nothing rewritten (tests of other parts) */
    if (id < 0) {
        b->f[host_idx].s = bg_kafka_cstr("");
        b->f[port_idx].i = -1;
        return 0;
    }
    bg_kafka__note_node((int32_t)id, nodes, nnodes, maxnodes);
    int served = (int64_t)ctx->port_base + id <= 65535;
    if (ctx->learn_node &&
        !ctx->learn_node(ctx->learn_node_arg, (int32_t)id, b->f[host_idx].s,
                         (int32_t)b->f[port_idx].i))
        served = 0;
    if (!served)
        return -1;
    b->f[host_idx].s = bg_kafka_cstr(ctx->advertised_host);
    b->f[port_idx].i = (int64_t)ctx->port_base + id;
    return 0;
}

/* Rewrites every broker entry of an array; those busgate does not serve
 * are left out (a partition led by one then names a leader the client
 * cannot find, and it asks for metadata again, as for any broker that is
 * not in the list). */
static void bg_kafka__addr_arr(const bg_kafka_authz_ctx_t *ctx, bg_kafka_struct_t *s, int arr,
                               int id_idx, int host_idx, int port_idx, int32_t *nodes,
                               size_t *nnodes, size_t maxnodes)
{
    int32_t n = bg_kafka__n(s, arr), k = 0;
    bg_kafka_struct_t **el = s->f[arr].a.s;
    for (int32_t i = 0; i < n; i++)
        if (bg_kafka__addr(ctx, el[i], id_idx, host_idx, port_idx, nodes, nnodes, maxnodes) == 0)
            el[k++] = el[i];
    if (n > 0)
        s->f[arr].a.n = k;
}

/* The controller a response names, ctl_idx of s, kept only when it is among
 * the brokers left in arr (id at id_idx) after the rewrite: a client told
 * of a controller it has no address for would wait for it. Otherwise -1,
 * Kafka's "no controller known". */
static void bg_kafka__controller(const bg_kafka_authz_ctx_t *ctx, bg_kafka_struct_t *s, int ctl_idx,
                                 int arr, int id_idx)
{
    int64_t ctl = s->f[ctl_idx].i;
    if (!ctx->advertised_host || ctl < 0)
        return;
    int32_t n = bg_kafka__n(s, arr);
    for (int32_t i = 0; i < n; i++)
        if (s->f[arr].a.s[i]->f[id_idx].i == ctl)
            return;
    s->f[ctl_idx].i = -1;
}

/* A coordinator busgate does not serve is answered COORDINATOR_NOT_AVAILABLE
 * (retriable) without an address, as Kafka answers while it has none. */
static void bg_kafka__coordinator(const bg_kafka_authz_ctx_t *ctx, bg_kafka_struct_t *c,
                                  int id_idx, int host_idx, int port_idx, int err_idx,
                                  int msg_idx, int32_t *nodes, size_t *nnodes, size_t maxnodes)
{
    if (bg_kafka__addr(ctx, c, id_idx, host_idx, port_idx, nodes, nnodes, maxnodes) == 0)
        return;
    c->f[id_idx].i = -1;
    c->f[host_idx].s = bg_kafka_cstr("");
    c->f[port_idx].i = -1;
    c->f[err_idx].i = BG_KAFKA_E_COORDINATOR_NOT_AVAILABLE;
    c->f[msg_idx].s = bg_kafka_cstr("busgate does not serve the coordinator's broker");
}

/* Learns the id -> name pairs of the entries the broker answered without an
 * error: an error entry may echo the request's own name and id (Kafka's
 * error form of a Metadata answer copies every request entry), and a
 * client must not be able to name an id as it likes. */
static void bg_kafka__learn_arr(bg_kafka_struct_t *s, int arr, int err_idx, int name_idx,
                                int id_idx, bg_kafka_learn_topic_fn learn, void *arg)
{
    int32_t n = bg_kafka__n(s, arr);
    for (int32_t i = 0; learn && i < n; i++) {
        bg_kafka_struct_t *t = s->f[arr].a.s[i];
        if (t->f[err_idx].i == 0 && t->f[name_idx].s.len > 0 &&
            !bg_kafka__uuid_zero(t->f[id_idx].uuid))
            learn(arg, t->f[id_idx].uuid, t->f[name_idx].s);
    }
}

int bg_kafka__r_metadata(const bg_kafka_authz_ctx_t *ctx, int16_t ver, bg_kafka_struct_t *resp,
                         bg_kafka_arena_t *a, int32_t *nodes, size_t *nnodes, size_t maxnodes,
                         bg_kafka_learn_topic_fn learn, void *learn_arg)
{
    (void)a;
    bg_kafka__addr_arr(ctx, resp, K(METADATA_RESP_BROKERS), K(METADATA_RESP_BROKERS_NODE_ID),
                       K(METADATA_RESP_BROKERS_HOST), K(METADATA_RESP_BROKERS_PORT), nodes, nnodes,
                       maxnodes);
    bg_kafka__controller(ctx, resp, K(METADATA_RESP_CONTROLLER_ID), K(METADATA_RESP_BROKERS),
                         K(METADATA_RESP_BROKERS_NODE_ID));
    if (ver >= 10)
        bg_kafka__learn_arr(resp, K(METADATA_RESP_TOPICS), K(METADATA_RESP_TOPICS_ERROR_CODE),
                            K(METADATA_RESP_TOPICS_NAME), K(METADATA_RESP_TOPICS_TOPIC_ID), learn,
                            learn_arg);
    return 0;
}

int bg_kafka__r_describe_topic_partitions(const bg_kafka_authz_ctx_t *ctx, int16_t ver,
                                          bg_kafka_struct_t *resp, bg_kafka_arena_t *a,
                                          int32_t *nodes, size_t *nnodes, size_t maxnodes,
                                          bg_kafka_learn_topic_fn learn, void *learn_arg)
{
    (void)ctx, (void)ver, (void)a, (void)nodes, (void)nnodes, (void)maxnodes;
    bg_kafka__learn_arr(resp, K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS),
                        K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_ERROR_CODE),
                        K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_NAME),
                        K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_TOPIC_ID), learn, learn_arg);
    return 0;
}

int bg_kafka__r_find_coordinator(const bg_kafka_authz_ctx_t *ctx, int16_t ver,
                                 bg_kafka_struct_t *resp, bg_kafka_arena_t *a, int32_t *nodes,
                                 size_t *nnodes, size_t maxnodes, bg_kafka_learn_topic_fn learn,
                                 void *learn_arg)
{
    (void)a, (void)learn, (void)learn_arg;
#define C(x) K(FIND_COORDINATOR_RESP_COORDINATORS_##x)
    int32_t n = ver >= 4 ? bg_kafka__n(resp, K(FIND_COORDINATOR_RESP_COORDINATORS)) : 0;
    for (int32_t i = 0; i < n; i++)
        bg_kafka__coordinator(ctx, resp->f[K(FIND_COORDINATOR_RESP_COORDINATORS)].a.s[i],
                              C(NODE_ID), C(HOST), C(PORT), C(ERROR_CODE), C(ERROR_MESSAGE), nodes,
                              nnodes, maxnodes);
#undef C
    if (ver < 4)
        bg_kafka__coordinator(ctx, resp, K(FIND_COORDINATOR_RESP_NODE_ID),
                              K(FIND_COORDINATOR_RESP_HOST), K(FIND_COORDINATOR_RESP_PORT),
                              K(FIND_COORDINATOR_RESP_ERROR_CODE),
                              K(FIND_COORDINATOR_RESP_ERROR_MESSAGE), nodes, nnodes, maxnodes);
    return 0;
}

int bg_kafka__r_describe_cluster(const bg_kafka_authz_ctx_t *ctx, int16_t ver,
                                 bg_kafka_struct_t *resp, bg_kafka_arena_t *a, int32_t *nodes,
                                 size_t *nnodes, size_t maxnodes, bg_kafka_learn_topic_fn learn,
                                 void *learn_arg)
{
    (void)ver, (void)a, (void)learn, (void)learn_arg;
    bg_kafka__addr_arr(ctx, resp, K(DESCRIBE_CLUSTER_RESP_BROKERS),
                       K(DESCRIBE_CLUSTER_RESP_BROKERS_BROKER_ID),
                       K(DESCRIBE_CLUSTER_RESP_BROKERS_HOST), K(DESCRIBE_CLUSTER_RESP_BROKERS_PORT),
                       nodes, nnodes, maxnodes);
    bg_kafka__controller(ctx, resp, K(DESCRIBE_CLUSTER_RESP_CONTROLLER_ID),
                         K(DESCRIBE_CLUSTER_RESP_BROKERS),
                         K(DESCRIBE_CLUSTER_RESP_BROKERS_BROKER_ID));
    return 0;
}

int bg_kafka__r_produce(const bg_kafka_authz_ctx_t *ctx, int16_t ver, bg_kafka_struct_t *resp,
                        bg_kafka_arena_t *a, int32_t *nodes, size_t *nnodes, size_t maxnodes,
                        bg_kafka_learn_topic_fn learn, void *learn_arg)
{
    (void)a, (void)learn, (void)learn_arg;
    if (ver >= 10)
        bg_kafka__addr_arr(ctx, resp, K(PRODUCE_RESP_NODE_ENDPOINTS),
                           K(PRODUCE_RESP_NODE_ENDPOINTS_NODE_ID),
                           K(PRODUCE_RESP_NODE_ENDPOINTS_HOST), K(PRODUCE_RESP_NODE_ENDPOINTS_PORT),
                           nodes, nnodes, maxnodes);
    return 0;
}

int bg_kafka__r_fetch(const bg_kafka_authz_ctx_t *ctx, int16_t ver, bg_kafka_struct_t *resp,
                      bg_kafka_arena_t *a, int32_t *nodes, size_t *nnodes, size_t maxnodes,
                      bg_kafka_learn_topic_fn learn, void *learn_arg)
{
    (void)a, (void)learn, (void)learn_arg;
    /* Never true today (Fetch stops at v15, see kafka_authz.c): kept so
     * that raising the cap cannot leak upstream addresses. */
    if (ver >= 16)
        bg_kafka__addr_arr(ctx, resp, K(FETCH_RESP_NODE_ENDPOINTS),
                           K(FETCH_RESP_NODE_ENDPOINTS_NODE_ID), K(FETCH_RESP_NODE_ENDPOINTS_HOST),
                           K(FETCH_RESP_NODE_ENDPOINTS_PORT), nodes, nnodes, maxnodes);
    return 0;
}

/* Whichever session the broker answered a ShareFetch from, records of a
 * topic the principal may not read now never reach the client. The broker
 * takes an incremental request from any connection whose epoch matches, so
 * a request forwarded while this connection held (group, member) reaches
 * the session another connection opened for it meanwhile; the request-side
 * checks cannot see that. Such a partition (or one whose topic id busgate
 * cannot name) loses its records (empty) and acquired ranges and gets
 * TOPIC_AUTHORIZATION_FAILED; the broker releases the records it acquired
 * for it when their acquisition lock times out. Not a separate audit event
 * (the ShareFetch's decisions are). */
static const uint8_t bg_kafka__no_records[1];

static void bg_kafka__share_fetch_drop_unreadable(const bg_kafka_authz_ctx_t *ctx,
                                                  bg_kafka_struct_t *resp)
{
#define R(x) K(SHARE_FETCH_RESP_RESPONSES_##x)
#define P(x) K(SHARE_FETCH_RESP_RESPONSES_PARTITIONS_##x)
    int32_t nt = bg_kafka__n(resp, K(SHARE_FETCH_RESP_RESPONSES));
    for (int32_t i = 0; i < nt; i++) {
        bg_kafka_struct_t *t = resp->f[K(SHARE_FETCH_RESP_RESPONSES)].a.s[i];
        bg_slice_t name = bg_kafka_null_slice();
        if (ctx->topic_name && ctx->topic_name(ctx->topic_name_arg, t->f[R(TOPIC_ID)].uuid, &name) &&
            name.len > 0 && bg_kafka__permits(ctx, BG_RES_KAFKA_TOPIC, name, BG_VERB_READ))
            continue;
        int32_t np = bg_kafka__n(t, R(PARTITIONS));
        for (int32_t j = 0; j < np; j++) {
            bg_kafka_struct_t *p = t->f[R(PARTITIONS)].a.s[j];
            p->f[P(ERROR_CODE)].i = BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED;
            p->f[P(ERROR_MESSAGE)].s = bg_kafka_null_slice();
            p->f[P(RECORDS)].s = (bg_slice_t){bg_kafka__no_records, 0}; /* not nullable */
            p->f[P(ACQUIRED_RECORDS)].a.n = 0;
        }
    }
#undef R
#undef P
}

/* ShareFetch and ShareAcknowledge name, in NodeEndpoints, the new leaders of
 * partitions answered NOT_LEADER_OR_FOLLOWER. */
int bg_kafka__r_share_fetch(const bg_kafka_authz_ctx_t *ctx, int16_t ver, bg_kafka_struct_t *resp,
                            bg_kafka_arena_t *a, int32_t *nodes, size_t *nnodes, size_t maxnodes,
                            bg_kafka_learn_topic_fn learn, void *learn_arg)
{
    (void)ver, (void)a, (void)learn, (void)learn_arg;
    bg_kafka__share_fetch_drop_unreadable(ctx, resp);
    bg_kafka__addr_arr(ctx, resp, K(SHARE_FETCH_RESP_NODE_ENDPOINTS),
                       K(SHARE_FETCH_RESP_NODE_ENDPOINTS_NODE_ID),
                       K(SHARE_FETCH_RESP_NODE_ENDPOINTS_HOST),
                       K(SHARE_FETCH_RESP_NODE_ENDPOINTS_PORT), nodes, nnodes, maxnodes);
    return 0;
}

int bg_kafka__r_share_acknowledge(const bg_kafka_authz_ctx_t *ctx, int16_t ver,
                                  bg_kafka_struct_t *resp, bg_kafka_arena_t *a, int32_t *nodes,
                                  size_t *nnodes, size_t maxnodes, bg_kafka_learn_topic_fn learn,
                                  void *learn_arg)
{
    (void)ver, (void)a, (void)learn, (void)learn_arg;
    bg_kafka__addr_arr(ctx, resp, K(SHARE_ACKNOWLEDGE_RESP_NODE_ENDPOINTS),
                       K(SHARE_ACKNOWLEDGE_RESP_NODE_ENDPOINTS_NODE_ID),
                       K(SHARE_ACKNOWLEDGE_RESP_NODE_ENDPOINTS_HOST),
                       K(SHARE_ACKNOWLEDGE_RESP_NODE_ENDPOINTS_PORT), nodes, nnodes, maxnodes);
    return 0;
}

/* CreateTopics v5+ returns the new topic's configs and counts: only to a
 * principal that may describe the topic (Kafka: DESCRIBE_CONFIGS); others get
 * TOPIC_AUTHORIZATION_FAILED in TopicConfigErrorCode, no configs and -1
 * counts, as in Kafka. */
int bg_kafka__r_create_topics(const bg_kafka_authz_ctx_t *ctx, int16_t ver,
                              bg_kafka_struct_t *resp, bg_kafka_arena_t *a, int32_t *nodes,
                              size_t *nnodes, size_t maxnodes, bg_kafka_learn_topic_fn learn,
                              void *learn_arg)
{
    (void)a, (void)nodes, (void)nnodes, (void)maxnodes, (void)learn, (void)learn_arg;
    if (ver < 5)
        return 0;
    int32_t n = bg_kafka__n(resp, K(CREATE_TOPICS_RESP_TOPICS));
    for (int32_t i = 0; i < n; i++) {
        bg_kafka_struct_t *t = resp->f[K(CREATE_TOPICS_RESP_TOPICS)].a.s[i];
        if (bg_kafka__permits(ctx, BG_RES_KAFKA_TOPIC, t->f[K(CREATE_TOPICS_RESP_TOPICS_NAME)].s,
                              BG_VERB_DESCRIBE))
            continue;
        t->f[K(CREATE_TOPICS_RESP_TOPICS_TOPIC_CONFIG_ERROR_CODE)].i =
            BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED;
        t->f[K(CREATE_TOPICS_RESP_TOPICS_NUM_PARTITIONS)].i = -1;
        t->f[K(CREATE_TOPICS_RESP_TOPICS_REPLICATION_FACTOR)].i = -1;
        if (t->f[K(CREATE_TOPICS_RESP_TOPICS_CONFIGS)].a.n > 0)
            t->f[K(CREATE_TOPICS_RESP_TOPICS_CONFIGS)].a.n = 0;
    }
    return 0;
}

/* Broker configurations that name hosts and ports: the broker's listeners
 * (unauthenticated ones among them), the controller quorum, ZooKeeper, and
 * any client's bootstrap servers (remote log metadata, metrics reporters).
 * A client that learnt them could connect past busgate. Every per-listener
 * setting (listener.name.*) goes too. */
int bg_kafka__addr_config(bg_slice_t name)
{
    static const char *const exact[] = {"listeners", "advertised.listeners",
                                        "controller.quorum.voters",
                                        "controller.quorum.bootstrap.servers",
                                        "zookeeper.connect", "host.name", "port",
                                        "advertised.host.name", "advertised.port"};
    static const char prefix[] = "listener.name.", suffix[] = "bootstrap.servers";
    if (name.len <= 0)
        return 0;
    size_t n = (size_t)name.len;
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (strlen(exact[i]) == n && memcmp(exact[i], name.p, n) == 0)
            return 1;
    if (n >= sizeof prefix - 1 && memcmp(name.p, prefix, sizeof prefix - 1) == 0)
        return 1;
    return n >= sizeof suffix - 1 &&
           memcmp(name.p + n - (sizeof suffix - 1), suffix, sizeof suffix - 1) == 0;
}

/* DescribeConfigs of a broker: the configurations above come back as Kafka
 * shows a sensitive one (no value, IsSensitive, synonyms without values),
 * so clients never learn an upstream address from them either. */
int bg_kafka__r_describe_configs(const bg_kafka_authz_ctx_t *ctx, int16_t ver,
                                 bg_kafka_struct_t *resp, bg_kafka_arena_t *a, int32_t *nodes,
                                 size_t *nnodes, size_t maxnodes, bg_kafka_learn_topic_fn learn,
                                 void *learn_arg)
{
#define R(x) K(DESCRIBE_CONFIGS_RESP_RESULTS_##x)
#define C(x) K(DESCRIBE_CONFIGS_RESP_RESULTS_CONFIGS_##x)
    (void)ctx, (void)ver, (void)a, (void)nodes, (void)nnodes, (void)maxnodes, (void)learn,
        (void)learn_arg;
    int32_t nr = bg_kafka__n(resp, K(DESCRIBE_CONFIGS_RESP_RESULTS));
    for (int32_t i = 0; i < nr; i++) {
        bg_kafka_struct_t *r = resp->f[K(DESCRIBE_CONFIGS_RESP_RESULTS)].a.s[i];
        if (r->f[R(RESOURCE_TYPE)].i != 4) /* BROKER */
            continue;
        int32_t nc = bg_kafka__n(r, R(CONFIGS));
        for (int32_t j = 0; j < nc; j++) {
            bg_kafka_struct_t *c = r->f[R(CONFIGS)].a.s[j];
            if (!bg_kafka__addr_config(c->f[C(NAME)].s))
                continue;
            c->f[C(VALUE)].s = bg_kafka_null_slice();
            c->f[C(IS_SENSITIVE)].i = 1;
            int32_t ns = bg_kafka__n(c, C(SYNONYMS));
            for (int32_t k = 0; k < ns; k++)
                c->f[C(SYNONYMS)].a.s[k]->f[C(SYNONYMS_VALUE)].s = bg_kafka_null_slice();
        }
    }
    return 0;
#undef R
#undef C
}
