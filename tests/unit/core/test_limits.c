/* Client connection limits (broker/limits.c): each cap refuses with its
 * own reason and counts the refusal; a connection gives back its share
 * exactly once, when it authenticates and when it ends; addresses are
 * keyed per IPv4 address and per IPv6 /64; counts stay exact under
 * threads; refusals are warned about at a limited rate. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker/limits.h"
#include "broker/log.h"

static struct sockaddr_storage addr(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &a->sin_addr), 1);
    }
    return ss;
}

static bg_limits_verdict_t admit(bg_limits_t *l, const char *ip, bg_limits_conn_t *c)
{
    struct sockaddr_storage ss = addr(ip);
    return bg_limits_admit(l, BG_PROTO_KAFKA, 10, (struct sockaddr *)&ss, c);
}

static void init(bg_limits_t *l, uint64_t max, uint64_t unauth, uint64_t per_ip)
{
    bg_limits_conf_t c = {.max_connections = max,
                          .max_unauth = unauth,
                          .max_unauth_per_ip = per_ip,
                          .fd_limit = 0,
                          .fd_reserve = 0};
    assert_int_equal(bg_limits_init(l, &c), 0);
}

static int ip_entries(const bg_limits_t *l)
{
    int n = 0;
    for (size_t i = 0; i < BG_LIMITS_IP_BUCKETS; i++)
        n += l->ip[i] != NULL;
    return n;
}

/* The per-address cap counts only connections that have not
 * authenticated: one that does makes room for the next. */
static void test_per_ip(void **state)
{
    static bg_limits_t l;
    bg_limits_conn_t c[3], other, late;
    init(&l, 100, 100, 2);
    assert_int_equal(admit(&l, "127.0.0.1", &c[0]), BG_LIMITS_OK);
    assert_int_equal(admit(&l, "127.0.0.1", &c[1]), BG_LIMITS_OK);
    assert_int_equal(admit(&l, "127.0.0.1", &c[2]), BG_LIMITS_MAX_UNAUTH_PER_IP);
    assert_null(c[2].l); /* nothing to give back */
    assert_int_equal(l.refused[BG_PROTO_KAFKA][BG_LIMITS_MAX_UNAUTH_PER_IP], 1);
    assert_int_equal(admit(&l, "127.0.0.2", &other), BG_LIMITS_OK);
    assert_int_equal(l.open[BG_PROTO_KAFKA], 3);
    assert_int_equal(l.unauth[BG_PROTO_KAFKA], 3);
    bg_limits_authenticated(&c[0]);
    bg_limits_authenticated(&c[0]); /* once only */
    assert_int_equal(l.unauth[BG_PROTO_KAFKA], 2);
    assert_int_equal(admit(&l, "127.0.0.1", &late), BG_LIMITS_OK);
    assert_int_equal(admit(&l, "127.0.0.1", &c[2]), BG_LIMITS_MAX_UNAUTH_PER_IP);
    bg_limits_release(&c[1]); /* ended unauthenticated */
    bg_limits_release(&c[1]); /* zeroed: nothing more */
    assert_int_equal(admit(&l, "127.0.0.1", &c[2]), BG_LIMITS_OK);
    bg_limits_release(&c[0]);
    bg_limits_release(&c[2]);
    bg_limits_release(&late);
    bg_limits_release(&other);
    assert_int_equal(l.open[BG_PROTO_KAFKA], 0);
    assert_int_equal(l.unauth[BG_PROTO_KAFKA], 0);
    assert_int_equal(ip_entries(&l), 0);
    assert_int_equal(l.refused[BG_PROTO_KAFKA][BG_LIMITS_MAX_UNAUTH_PER_IP], 2);
    bg_limits_clear(&l);
}

/* max_connections counts authenticated connections too; the global
 * unauthenticated cap spans addresses. */
static void test_global_caps(void **state)
{
    static bg_limits_t l;
    bg_limits_conn_t a, b, c, d;
    init(&l, 3, 2, 0);
    assert_int_equal(admit(&l, "10.0.0.1", &a), BG_LIMITS_OK);
    assert_int_equal(admit(&l, "10.0.0.2", &b), BG_LIMITS_OK);
    assert_int_equal(admit(&l, "10.0.0.3", &c), BG_LIMITS_MAX_UNAUTH);
    bg_limits_authenticated(&a);
    assert_int_equal(admit(&l, "10.0.0.3", &c), BG_LIMITS_OK);
    bg_limits_authenticated(&b);
    bg_limits_authenticated(&c);
    assert_int_equal(admit(&l, "10.0.0.4", &d), BG_LIMITS_MAX_CONNECTIONS);
    assert_int_equal(l.refused[BG_PROTO_KAFKA][BG_LIMITS_MAX_CONNECTIONS], 1);
    assert_int_equal(l.refused[BG_PROTO_KAFKA][BG_LIMITS_MAX_UNAUTH], 1);
    assert_int_equal(l.unauth[BG_PROTO_KAFKA], 0);
    assert_int_equal(l.open[BG_PROTO_KAFKA], 3);
    bg_limits_release(&b);
    assert_int_equal(admit(&l, "10.0.0.4", &d), BG_LIMITS_OK);
    bg_limits_release(&a);
    bg_limits_release(&c);
    bg_limits_release(&d);
    assert_int_equal(l.open[BG_PROTO_KAFKA], 0);
    bg_limits_clear(&l);
}

/* Both protocols share the caps; each keeps its own gauges. */
static void test_protocols_share(void **state)
{
    static bg_limits_t l;
    bg_limits_conn_t k, a, x;
    struct sockaddr_storage ss = addr("192.0.2.1");
    init(&l, 2, 10, 10);
    assert_int_equal(bg_limits_admit(&l, BG_PROTO_KAFKA, 5, (struct sockaddr *)&ss, &k),
                     BG_LIMITS_OK);
    assert_int_equal(bg_limits_admit(&l, BG_PROTO_AMQP, 6, (struct sockaddr *)&ss, &a),
                     BG_LIMITS_OK);
    assert_int_equal(bg_limits_admit(&l, BG_PROTO_AMQP, 7, (struct sockaddr *)&ss, &x),
                     BG_LIMITS_MAX_CONNECTIONS);
    assert_int_equal(l.open[BG_PROTO_KAFKA], 1);
    assert_int_equal(l.open[BG_PROTO_AMQP], 1);
    assert_int_equal(l.refused[BG_PROTO_AMQP][BG_LIMITS_MAX_CONNECTIONS], 1);
    assert_int_equal(l.refused[BG_PROTO_KAFKA][BG_LIMITS_MAX_CONNECTIONS], 0);
    bg_limits_release(&k);
    bg_limits_release(&a);
    assert_int_equal(l.unauth[BG_PROTO_AMQP], 0);
    bg_limits_clear(&l);
}

/* IPv6 addresses of one /64 share a count, another /64 has its own;
 * IPv4 mapped into IPv6 counts per address. */
static void test_keys(void **state)
{
    static bg_limits_t l;
    bg_limits_conn_t a, b, c, d, e, f;
    init(&l, 100, 100, 1);
    assert_int_equal(admit(&l, "2001:db8:1:2::1", &a), BG_LIMITS_OK);
    assert_int_equal(admit(&l, "2001:db8:1:2:ffff::9", &b), BG_LIMITS_MAX_UNAUTH_PER_IP);
    assert_int_equal(admit(&l, "2001:db8:1:3::1", &c), BG_LIMITS_OK);
    assert_int_equal(admit(&l, "::ffff:192.0.2.1", &d), BG_LIMITS_OK);
    assert_int_equal(admit(&l, "::ffff:192.0.2.2", &e), BG_LIMITS_OK);
    assert_int_equal(admit(&l, "192.0.2.2", &f), BG_LIMITS_MAX_UNAUTH_PER_IP); /* same as e */
    bg_limits_release(&a);
    bg_limits_release(&c);
    bg_limits_release(&d);
    bg_limits_release(&e);
    assert_int_equal(ip_entries(&l), 0);
    bg_limits_clear(&l);
}

/* A descriptor whose number leaves only the reserve is refused. */
static void test_descriptors(void **state)
{
    static bg_limits_t l;
    bg_limits_conn_t c;
    struct sockaddr_storage ss = addr("127.0.0.1");
    bg_limits_conf_t conf = {.max_connections = 1000,
                             .max_unauth = 1000,
                             .max_unauth_per_ip = 0,
                             .fd_limit = 600,
                             .fd_reserve = 100};
    assert_int_equal(bg_limits_init(&l, &conf), 0);
    assert_int_equal(bg_limits_admit(&l, BG_PROTO_AMQP, 499, (struct sockaddr *)&ss, &c),
                     BG_LIMITS_OK);
    bg_limits_release(&c);
    assert_int_equal(bg_limits_admit(&l, BG_PROTO_AMQP, 500, (struct sockaddr *)&ss, &c),
                     BG_LIMITS_DESCRIPTORS);
    assert_int_equal(l.refused[BG_PROTO_AMQP][BG_LIMITS_DESCRIPTORS], 1);
    assert_int_equal(l.open[BG_PROTO_AMQP], 0);
    bg_limits_clear(&l);
    assert_int_equal(bg_limits_default_max(600, 100), 250);
    assert_int_equal(bg_limits_default_max(100, 128), 1);
    assert_int_equal(bg_limits_default_max(129, 128), 1); /* one left above the reserve: not 0 */
    assert_int_equal(bg_limits_default_max(130, 128), 1);
    assert_int_equal(bg_limits_default_max(0, 128), 1048576);
    assert_string_equal(bg_limits_reason(BG_LIMITS_MAX_UNAUTH_PER_IP),
                        "max_unauthenticated_per_ip");
}

/* No limits (a worker without them): everything admitted, nothing kept. */
static void test_no_limits(void **state)
{
    bg_limits_conn_t c;
    assert_int_equal(bg_limits_admit(NULL, BG_PROTO_KAFKA, 3, NULL, &c), BG_LIMITS_OK);
    assert_null(c.l);
    bg_limits_authenticated(&c);
    bg_limits_release(&c);
}

/* Refusals are warned about once per BG_LIMITS_WARN_MS, not once each (a
 * flood of connections would flood the log): three in a row log one line. */
static void test_refusal_warnings_rate_limited(void **state)
{
    static bg_limits_t l;
    bg_limits_conn_t a, b;
    char buf[4096] = "";
    FILE *logf = tmpfile();
    assert_non_null(logf);
    int fd = fileno(logf);
    init(&l, 1, 1, 0);
    bg_log_set_fd(fd);
    bg_log_set_level(BG_LOG_WARN);
    assert_int_equal(admit(&l, "10.0.0.1", &a), BG_LIMITS_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(admit(&l, "10.0.0.2", &b), BG_LIMITS_MAX_CONNECTIONS);
    bg_log_set_level(BG_LOG_OFF);
    bg_log_set_fd(2);
    ssize_t got = pread(fd, buf, sizeof buf - 1, 0);
    fclose(logf);
    assert_true(got > 0);
    int lines = 0;
    for (char *p = buf; (p = strstr(p, "refused: limits.max_connections")); p++)
        lines++;
    assert_int_equal(lines, 1);
    assert_int_equal(l.refused[BG_PROTO_KAFKA][BG_LIMITS_MAX_CONNECTIONS], 3);
    bg_limits_release(&a);
    bg_limits_clear(&l);
}

#define THREADS 4
#define ROUNDS 20000

static void *worker(void *arg)
{
    bg_limits_t *l = arg;
    bg_limits_conn_t held[8];
    memset(held, 0, sizeof held);
    for (int i = 0; i < ROUNDS; i++) {
        bg_limits_conn_t *c = &held[i % 8];
        bg_limits_release(c);
        char ip[32];
        snprintf(ip, sizeof ip, "10.0.%d.%d", i % 3, i % 5);
        struct sockaddr_storage ss = addr(ip);
        if (bg_limits_admit(l, (bg_proto_t)(i % 2), 10, (struct sockaddr *)&ss, c) ==
                BG_LIMITS_OK &&
            i % 3 == 0)
            bg_limits_authenticated(c);
    }
    for (int i = 0; i < 8; i++)
        bg_limits_release(&held[i]);
    return NULL;
}

/* Admissions, authentications and releases from several threads leave
 * every count at 0 and the address table empty. */
static void test_threads(void **state)
{
    static bg_limits_t l;
    pthread_t t[THREADS];
    init(&l, 20, 12, 3);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, worker, &l), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    for (int p = 0; p < BG_PROTO__COUNT; p++) {
        assert_int_equal(l.open[p], 0);
        assert_int_equal(l.unauth[p], 0);
    }
    assert_int_equal(l.open_all, 0);
    assert_int_equal(l.unauth_all, 0);
    assert_int_equal(ip_entries(&l), 0);
    bg_limits_clear(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_per_ip),          cmocka_unit_test(test_global_caps),
        cmocka_unit_test(test_protocols_share), cmocka_unit_test(test_keys),
        cmocka_unit_test(test_descriptors),     cmocka_unit_test(test_no_limits),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_refusal_warnings_rate_limited),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
