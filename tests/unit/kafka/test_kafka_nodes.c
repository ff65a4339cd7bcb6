/* The Kafka adapter's broker map (kafka_adapter.c): the address busgate
 * dials for a node follows the broker when it moves; a host longer than the
 * map holds or a port outside 1..65535 is not taken; busgate's port for a
 * node is broker_port_base + id, held by another process it is not served
 * until checked again, 65535 is served and 65536 or kafka.listen's own port
 * never; a worker opens each served node's port once, however often it is
 * told to open ports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "adapters/kafka/kafka_adapter-internal.h"
#include "broker/log.h"

typedef struct {
    bg_config_t cfg;
    bg_kafka_global_t *g;
} bg_t_env_t;

static int bg_t_setup(void **state)
{
    bg_t_env_t *e = calloc(1, sizeof *e);
    assert_non_null(e);
    e->g = calloc(1, sizeof *e->g);
    assert_non_null(e->g);
    e->cfg.kafka.listen.host = "127.0.0.1";
    e->cfg.kafka.listen.port = 1; /* a port no node below maps to */
    e->g->cfg = &e->cfg;
    pthread_mutex_init(&e->g->mu, NULL);
    bg_log_set_level(BG_LOG_OFF);
    *state = e;
    return 0;
}

static int bg_t_teardown(void **state)
{
    bg_t_env_t *e = *state;
    pthread_mutex_destroy(&e->g->mu);
    free(e->g);
    free(e);
    return 0;
}

/* A loopback socket listening on a port the kernel picked; its port. */
static int bg_t_squat(int *fd)
{
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    assert_int_equal(bind(*fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(*fd, 1), 0);
    assert_int_equal(getsockname(*fd, (struct sockaddr *)&a, &al), 0);
    return ntohs(a.sin_port);
}

/* The upstream port known for node id, or -1. */
static int bg_t_port_of(bg_kafka_global_t *g, int32_t id, char *host, size_t cap)
{
    uint16_t port = 0;
    return bg_kafka_global_node(g, id, host, cap, &port) == 0 ? port : -1;
}

static int bg_t_learn(bg_kafka_global_t *g, int32_t id, const char *host, int32_t port)
{
    return bg_kafka_global_learn_node(g, id, host, strlen(host), port);
}

/* A broker that moves (another port, then another host) is dialled where
 * it is now (the old address was kept when only the port changed). */
static void test_a_broker_that_moves_is_followed(void **state)
{
    bg_t_env_t *e = *state;
    int fd, free_port = bg_t_squat(&fd);
    close(fd); /* base + 1: a port nobody holds */
    e->cfg.kafka.broker_port_base = (uint16_t)(free_port - 1);
    char host[256];
    assert_int_equal(bg_t_learn(e->g, 1, "127.0.0.1", 9092), 1);
    assert_int_equal(bg_t_port_of(e->g, 1, host, sizeof host), 9092);
    assert_int_equal(bg_t_learn(e->g, 1, "127.0.0.1", 9093), 1);
    assert_int_equal(bg_t_port_of(e->g, 1, host, sizeof host), 9093);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(bg_t_learn(e->g, 1, "127.0.0.2", 9093), 1);
    assert_int_equal(bg_t_port_of(e->g, 1, host, sizeof host), 9093);
    assert_string_equal(host, "127.0.0.2");
    assert_int_equal(e->g->nnodes, 1);
}

/* A host of 255 bytes is taken, one of 256 (the map's room, with its NUL)
 * is not (it was written one byte past the host); port 0 and 65536 are
 * not ports a broker listens on (0 was taken and dialled). */
static void test_hosts_and_ports_the_map_cannot_hold(void **state)
{
    bg_t_env_t *e = *state;
    int fd, free_port = bg_t_squat(&fd);
    close(fd);
    e->cfg.kafka.broker_port_base = (uint16_t)(free_port - 2);
    char name[257], host[300];
    memset(name, 'h', 256);
    name[256] = 0;
    assert_int_equal(bg_kafka_global_learn_node(e->g, 2, name, 256, 9092), 0);
    assert_int_equal(bg_t_port_of(e->g, 2, host, sizeof host), -1);
    assert_int_equal(bg_kafka_global_learn_node(e->g, 2, name, 255, 9092), 1);
    assert_int_equal(bg_t_port_of(e->g, 2, host, sizeof host), 9092);
    assert_int_equal(strlen(host), 255);
    assert_int_equal(bg_t_learn(e->g, 3, "127.0.0.1", 0), 0);
    assert_int_equal(bg_t_port_of(e->g, 3, host, sizeof host), -1);
    assert_int_equal(bg_t_learn(e->g, 3, "127.0.0.1", 65536), 0);
    assert_int_equal(bg_t_port_of(e->g, 3, host, sizeof host), -1);
    (void)bg_t_learn(e->g, 3, "127.0.0.1", 1); /* served or held: known */
    assert_int_equal(bg_t_port_of(e->g, 3, host, sizeof host), 1);
}

/* Node 3's port (broker_port_base + 3) held by another socket: node 3 is
 * known but not served, while node 4 beside it is (the check looked at
 * another port than the one served). Once the socket is gone and the
 * recheck interval has passed, the next mention serves it (a held port was
 * never looked at again). */
static void test_a_held_port_is_not_served_until_it_is_free(void **state)
{
    bg_t_env_t *e = *state;
    int squatter, held = bg_t_squat(&squatter);
    e->cfg.kafka.broker_port_base = (uint16_t)(held - 3);
    char host[256];
    assert_int_equal(bg_t_learn(e->g, 3, "127.0.0.1", 9092), 0);
    assert_int_equal(bg_t_port_of(e->g, 3, host, sizeof host), 9092); /* known, held */
    assert_int_equal(e->g->nodes[0].port_taken, 1);
    assert_int_equal(bg_t_learn(e->g, 3, "127.0.0.1", 9092), 0); /* within the interval */
    close(squatter);
    assert_int_equal(bg_t_learn(e->g, 3, "127.0.0.1", 9092), 0); /* still within it */
    e->g->nodes[0].taken_checked_ms -= BG_KAFKA_PORT_RECHECK_MS;
    assert_int_equal(bg_t_learn(e->g, 3, "127.0.0.1", 9092), 1);
    assert_int_equal(e->g->nodes[0].port_taken, 0);
}

/* broker_port_base 65530: node 5 is on port 65535 and takes its entry
 * (served or held, as the port is free or not); node 6 (65536) never takes
 * one. broker_port_base + 7 equal to kafka.listen's port: never. */
static void test_the_last_port_and_the_bootstrap_port(void **state)
{
    bg_t_env_t *e = *state;
    char host[256];
    e->cfg.kafka.broker_port_base = 65530;
    (void)bg_t_learn(e->g, 5, "127.0.0.1", 9092);
    assert_int_equal(bg_t_port_of(e->g, 5, host, sizeof host), 9092);
    assert_int_equal(bg_t_learn(e->g, 6, "127.0.0.1", 9092), 0);
    assert_int_equal(bg_t_port_of(e->g, 6, host, sizeof host), -1);
    e->cfg.kafka.listen.port = 65530 - 100 + 7;
    e->cfg.kafka.broker_port_base = 65530 - 100;
    assert_int_equal(bg_t_learn(e->g, 7, "127.0.0.1", 9092), 0);
    assert_int_equal(bg_t_port_of(e->g, 7, host, sizeof host), -1);
    assert_int_equal(e->g->nnodes, 1);
}

/* A worker told three times to open ports (a discovery round, a response
 * naming the node, another worker's notice) has one listener for the node
 * (each call opened another on the same port: SO_REUSEPORT allows it, and
 * the descriptors and listener slots ran out). */
static void test_a_node_port_is_opened_once(void **state)
{
    bg_t_env_t *e = *state;
    int fd, free_port = bg_t_squat(&fd);
    close(fd);
    e->cfg.kafka.broker_port_base = (uint16_t)(free_port - 1);
    bg_worker_t w = {.index = 1, .base = event_base_new()};
    assert_non_null(w.base);
    bg_kafka_worker_t *kw = calloc(1, sizeof *kw);
    assert_non_null(kw);
    kw->w = &w;
    kw->g = e->g;
    assert_int_equal(bg_t_learn(e->g, 1, "127.0.0.1", 9092), 1);
    for (int i = 0; i < 3; i++)
        bg_kafka_worker_open_ports(kw);
    assert_int_equal(kw->nlisteners, 1);
    assert_int_equal(kw->listeners[0].node_id, 1);
    for (size_t i = 0; i < kw->nlisteners; i++) {
        bg_util_accept_guard_clear(&kw->listeners[i].guard);
        evconnlistener_free(kw->listeners[i].l);
    }
    free(kw);
    event_base_free(w.base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_broker_that_moves_is_followed, bg_t_setup,
                                        bg_t_teardown),
        cmocka_unit_test_setup_teardown(test_hosts_and_ports_the_map_cannot_hold, bg_t_setup,
                                        bg_t_teardown),
        cmocka_unit_test_setup_teardown(test_a_held_port_is_not_served_until_it_is_free,
                                        bg_t_setup, bg_t_teardown),
        cmocka_unit_test_setup_teardown(test_the_last_port_and_the_bootstrap_port, bg_t_setup,
                                        bg_t_teardown),
        cmocka_unit_test_setup_teardown(test_a_node_port_is_opened_once, bg_t_setup,
                                        bg_t_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
