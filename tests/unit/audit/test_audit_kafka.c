/* Audit Kafka sink against librdkafka's mock cluster: events reach the
 * topic keyed by session; an outage (all brokers down) sends them to the
 * spool, and they are drained when the cluster returns. Counted by distinct
 * event id: at-least-once allows duplicates, never losses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit.h"
#include "broker/log.h"

#define TOPIC "busgate.audit"
#define SESSIONS 3

/* Waits (bounded) until cond holds once; cond is evaluated once per turn. */
#define WAIT_UNTIL(cond)                                                                           \
    do {                                                                                           \
        int ok_ = 0;                                                                               \
        for (int w_ = 0; w_ < 3000 && !(ok_ = (cond)); w_++)                                       \
            usleep(10000);                                                                         \
        assert_true(ok_);                                                                          \
    } while (0)

static void rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[4096];
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

static void emit_range(bg_audit_t *a, int from, int to)
{
    for (int i = from; i < to; i++) {
        char sess[8];
        snprintf(sess, sizeof sess, "s%d", i % SESSIONS);
        bg_audit_event_t ev = {.kind = BG_AUDIT_EV_DECISION, .session_id = sess,
                               .seq = (uint64_t)i, .has = BG_AUDIT_HAS_SEQ};
        assert_int_equal(bg_audit_emit(a, &ev), BG_AUDIT_OK);
    }
}

typedef struct seen_s {
    char (*ids)[37];
    int nids;
    int64_t last[SESSIONS];
    int total, misordered;
} seen_t;

static void seen_add(seen_t *s, const rd_kafka_message_t *m)
{
    json_t *j = json_loadb(m->payload, m->len, 0, NULL);
    assert_non_null(j);
    const char *id = json_string_value(json_object_get(j, "event_id"));
    const char *sess = json_string_value(json_object_get(j, "session_id"));
    int64_t seq = json_integer_value(json_object_get(j, "seq"));
    /* the key is the session id */
    assert_int_equal(m->key_len, strlen(sess));
    assert_memory_equal(m->key, sess, m->key_len);
    s->total++;
    for (int i = 0; i < s->nids; i++)
        if (strcmp(s->ids[i], id) == 0) {
            json_decref(j);
            return; /* a duplicate (at-least-once) */
        }
    strcpy(s->ids[s->nids++], id);
    int k = sess[1] - '0';
    if (seq <= s->last[k]) {
        s->misordered++;
        print_message("session %s: seq %lld after %lld (partition %d offset %lld)\n", sess,
                      (long long)seq, (long long)s->last[k], (int)m->partition,
                      (long long)m->offset);
    }
    s->last[k] = seq;
    json_decref(j);
}

static int64_t test_clock_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void consume_all(const char *bootstraps, seen_t *s, int want)
{
    char err[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", bootstraps, err, sizeof err);
    rd_kafka_conf_set(c, "group.id", "audit-test-reader", err, sizeof err);
    rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof err);
    assert_non_null(rk);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(SESSIONS);
    for (int p = 0; p < SESSIONS; p++)
        rd_kafka_topic_partition_list_add(parts, TOPIC, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(rk, parts), 0);
    rd_kafka_topic_partition_list_destroy(parts);
    /* bounded by time, not by polls: duplicates make the message count vary */
    for (int64_t end = test_clock_ms() + 20000; test_clock_ms() < end && s->nids < want;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (!m->err)
            seen_add(s, m);
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

/* Reads partition 0 of the topic from the beginning to its end (bounded). */
static void consume_to_end(const char *bootstraps, seen_t *s)
{
    char err[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", bootstraps, err, sizeof err);
    rd_kafka_conf_set(c, "group.id", "audit-test-reader-end", err, sizeof err);
    rd_kafka_conf_set(c, "enable.partition.eof", "true", err, sizeof err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof err);
    assert_non_null(rk);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, TOPIC, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(rk, parts), 0);
    rd_kafka_topic_partition_list_destroy(parts);
    int eof = 0;
    for (int64_t end = test_clock_ms() + 20000; test_clock_ms() < end && !eof;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
            eof = 1;
        else if (!m->err)
            seen_add(s, m);
        rd_kafka_message_destroy(m);
    }
    assert_true(eof);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

static void test_kafka_outage_spool_recovery(void **state)
{
    char err[512] = "", dir[4096];
    const char *base = getenv("BG_BINARY_DIR");
    snprintf(dir, sizeof dir, "%s/bg-audit-kafka-XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(dir));
    rd_kafka_conf_t *mc = rd_kafka_conf_new();
    rd_kafka_t *mrk = rd_kafka_new(RD_KAFKA_PRODUCER, mc, err, sizeof err);
    assert_non_null(mrk);
    rd_kafka_mock_cluster_t *mcluster = rd_kafka_mock_cluster_new(mrk, 3);
    assert_non_null(mcluster);
    assert_int_equal(rd_kafka_mock_topic_create(mcluster, TOPIC, SESSIONS, 1), 0);
    const char *boot = rd_kafka_mock_cluster_bootstraps(mcluster);

    /* a short message timeout so the outage is noticed within the test */
    const char *props[] = {"message.timeout.ms", "2000", "reconnect.backoff.max.ms", "200"};
    bg_audit_kafka_conf_t kc = {.bootstrap = boot, .props = props, .nprops = 2};
    bg_config_audit_t cfg = {.enabled = 1, .kafka_topic = TOPIC, .spool_dir = dir,
                             .on_failure = BG_AUDIT_BLOCK, .queue_size = 4096};
    bg_audit_t *a = bg_audit_new(&cfg, "inst", &kc, err, sizeof err);
    if (!a)
        fail_msg("%s", err);

    emit_range(a, 0, 100);
    assert_int_equal(bg_audit_flush(a, 10000), 0);
    bg_audit_stats_t st;
    bg_audit_stats(a, &st);
    assert_int_equal(st.delivered, 100);
    assert_int_equal(st.spooled, 0);

    /* outage */
    for (int b = 1; b <= 3; b++)
        rd_kafka_mock_broker_set_down(mcluster, b);
    emit_range(a, 100, 300);
    WAIT_UNTIL((bg_audit_stats(a, &st), st.spooled >= 200));
    assert_int_equal(bg_audit_admitting(a), 1); /* the spool holds them */
    emit_range(a, 300, 350);                      /* straight behind the backlog */

    /* recovery */
    for (int b = 1; b <= 3; b++)
        rd_kafka_mock_broker_set_up(mcluster, b);
    WAIT_UNTIL((bg_audit_stats(a, &st), st.drained >= 250 && st.spool_bytes == 0));
    emit_range(a, 350, 400);
    assert_int_equal(bg_audit_flush(a, 10000), 0);
    bg_audit_stats(a, &st);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.refused, 0);
    bg_audit_free(a);

    seen_t s = {.ids = calloc(1000, 37)};
    for (int i = 0; i < SESSIONS; i++)
        s.last[i] = -1;
    consume_all(boot, &s, 400);
    assert_int_equal(s.nids, 400);  /* every event, by distinct id (duplicates allowed) */
    assert_int_equal(s.misordered, 0); /* per-session emit order kept */
    free(s.ids);

    rd_kafka_mock_cluster_destroy(mcluster);
    rd_kafka_destroy(mrk);
    rm_rf(dir);
}

/* Emits events at a steady pace from another thread while the test takes
 * the cluster down and up, so the outage lands in the middle of the stream
 * with messages queued and in flight (a broker round trip of 30 ms keeps
 * some in flight at any moment). Those are the ones that used to fail only
 * at message.timeout.ms and be spooled behind newer events. */
typedef struct pacer_s {
    bg_audit_t *a;
    int n, emitted;
} pacer_t;

static void *pacer_main(void *arg)
{
    pacer_t *p = arg;
    for (int i = 0; i < p->n; i++) {
        char sess[8];
        snprintf(sess, sizeof sess, "s%d", i % SESSIONS);
        bg_audit_event_t ev = {.kind = BG_AUDIT_EV_DECISION, .session_id = sess,
                               .seq = (uint64_t)i, .has = BG_AUDIT_HAS_SEQ};
        if (bg_audit_emit(p->a, &ev) != BG_AUDIT_OK)
            break;
        p->emitted++;
        usleep(1000);
    }
    return NULL;
}

static void run_midstream_outage(int round)
{
    char err[512] = "", dir[4096];
    const char *base = getenv("BG_BINARY_DIR");
    snprintf(dir, sizeof dir, "%s/bg-audit-kafka-XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(dir));
    rd_kafka_conf_t *mc = rd_kafka_conf_new();
    rd_kafka_t *mrk = rd_kafka_new(RD_KAFKA_PRODUCER, mc, err, sizeof err);
    assert_non_null(mrk);
    rd_kafka_mock_cluster_t *mcluster = rd_kafka_mock_cluster_new(mrk, 3);
    assert_non_null(mcluster);
    assert_int_equal(rd_kafka_mock_topic_create(mcluster, TOPIC, SESSIONS, 1), 0);
    for (int b = 1; b <= 3; b++)
        rd_kafka_mock_broker_set_rtt(mcluster, b, 30);
    const char *boot = rd_kafka_mock_cluster_bootstraps(mcluster);
    const char *props[] = {"message.timeout.ms", "1500", "reconnect.backoff.max.ms", "200",
                           "linger.ms", "1"};
    bg_audit_kafka_conf_t kc = {.bootstrap = boot, .props = props, .nprops = 3};
    bg_config_audit_t cfg = {.enabled = 1, .kafka_topic = TOPIC, .spool_dir = dir,
                             .on_failure = BG_AUDIT_BLOCK, .queue_size = 65536};
    bg_audit_t *a = bg_audit_new(&cfg, "inst", &kc, err, sizeof err);
    if (!a)
        fail_msg("%s", err);

    pacer_t p = {.a = a, .n = 2400};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, pacer_main, &p), 0);
    usleep(400000 + 37000 * round); /* a different phase each round */
    for (int b = 1; b <= 3; b++)
        rd_kafka_mock_broker_set_down(mcluster, b);
    usleep(2500000); /* longer than message.timeout.ms */
    for (int b = 1; b <= 3; b++)
        rd_kafka_mock_broker_set_up(mcluster, b);
    pthread_join(th, NULL);
    assert_int_equal(p.emitted, p.n);
    bg_audit_stats_t st;
    WAIT_UNTIL((bg_audit_stats(a, &st), st.spool_bytes == 0 && st.queue_depth == 0));
    assert_int_equal(bg_audit_flush(a, 10000), 0);
    bg_audit_stats(a, &st);
    assert_true(st.spooled > 0); /* the outage really sent events to the spool */
    assert_int_equal(st.dropped + st.refused, 0);
    bg_audit_free(a);

    seen_t s = {.ids = calloc((size_t)p.n, 37)};
    for (int i = 0; i < SESSIONS; i++)
        s.last[i] = -1;
    consume_all(boot, &s, p.n);
    assert_int_equal(s.nids, p.n);
    assert_int_equal(s.misordered, 0);
    free(s.ids);
    rd_kafka_mock_cluster_destroy(mcluster);
    rd_kafka_destroy(mrk);
    rm_rf(dir);
}

static void test_kafka_midstream_outage_keeps_order(void **state)
{
    for (int round = 0; round < 3; round++)
        run_midstream_outage(round);
}

/* audit.format avro with a schema id: every message value in the topic is
 * [0][u32 BE id][Avro], including events that went through the spool
 * during an outage (the spool keeps the JSON form; the sink encodes at
 * produce time). The event id is the first Avro field: a string of 36
 * bytes, length zigzag-encoded as 0x48. */
static void test_kafka_avro_values(void **state)
{
    char err[512] = "", dir[4096];
    const char *base = getenv("BG_BINARY_DIR");
    snprintf(dir, sizeof dir, "%s/bg-audit-kafka-XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(dir));
    rd_kafka_t *mrk = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), err, sizeof err);
    rd_kafka_mock_cluster_t *mcluster = rd_kafka_mock_cluster_new(mrk, 1);
    assert_int_equal(rd_kafka_mock_topic_create(mcluster, TOPIC, 1, 1), 0);
    const char *boot = rd_kafka_mock_cluster_bootstraps(mcluster);
    const char *props[] = {"message.timeout.ms", "1000", "reconnect.backoff.max.ms", "200"};
    bg_audit_kafka_conf_t kc = {.bootstrap = boot, .props = props, .nprops = 2,
                                .avro_schema_id = 7};
    bg_config_audit_t cfg = {.enabled = 1, .kafka_topic = TOPIC, .spool_dir = dir,
                             .format = BG_AUDIT_AVRO, .queue_size = 4096};
    bg_audit_t *a = bg_audit_new(&cfg, "inst", &kc, err, sizeof err);
    if (!a)
        fail_msg("%s", err);
    emit_range(a, 0, 30);
    assert_int_equal(bg_audit_flush(a, 10000), 0);
    rd_kafka_mock_broker_set_down(mcluster, 1);
    emit_range(a, 30, 60);
    bg_audit_stats_t st;
    WAIT_UNTIL((bg_audit_stats(a, &st), st.spooled >= 30));
    rd_kafka_mock_broker_set_up(mcluster, 1);
    WAIT_UNTIL((bg_audit_stats(a, &st), st.drained >= 30 && st.spool_bytes == 0));
    bg_audit_free(a);

    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", boot, err, sizeof err);
    rd_kafka_conf_set(c, "group.id", "audit-avro-reader", err, sizeof err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof err);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, TOPIC, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(rk, parts), 0);
    rd_kafka_topic_partition_list_destroy(parts);
    char (*ids)[37] = calloc(200, 37);
    int nids = 0;
    for (int64_t end = test_clock_ms() + 15000; test_clock_ms() < end && nids < 60;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (!m->err) {
            const uint8_t *v = m->payload;
            const uint8_t hdr[5] = {0, 0, 0, 0, 7};
            assert_true(m->len > 42);
            assert_memory_equal(v, hdr, 5);
            assert_int_equal(v[5], 0x48);
            int dup = 0;
            for (int i = 0; i < nids; i++)
                dup |= memcmp(ids[i], v + 6, 36) == 0;
            if (!dup)
                memcpy(ids[nids++], v + 6, 36);
        }
        rd_kafka_message_destroy(m);
    }
    assert_int_equal(nids, 60);
    free(ids);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    rd_kafka_mock_cluster_destroy(mcluster);
    rd_kafka_destroy(mrk);
    rm_rf(dir);
}

/* Starts a one-broker mock cluster with the audit topic and a pipeline
 * (spool in a fresh dir) on it; errors are pushed before the producer
 * starts, so they hit its first requests of that API. */
typedef struct mock_env_s {
    rd_kafka_t *mrk;
    rd_kafka_mock_cluster_t *mc;
    bg_audit_t *a;
    char dir[4096];
} mock_env_t;

static void mock_env_start(mock_env_t *e, int parts, int16_t api, size_t nerr,
                           rd_kafka_resp_err_t err1)
{
    char err[512] = "";
    const char *base = getenv("BG_BINARY_DIR");
    snprintf(e->dir, sizeof e->dir, "%s/bg-audit-kafka-XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(e->dir));
    e->mrk = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), err, sizeof err);
    e->mc = rd_kafka_mock_cluster_new(e->mrk, 1);
    assert_int_equal(rd_kafka_mock_topic_create(e->mc, TOPIC, parts, 1), 0);
    rd_kafka_resp_err_t errs[8];
    for (size_t i = 0; i < nerr && i < 8; i++)
        errs[i] = err1;
    rd_kafka_mock_push_request_errors_array(e->mc, api, nerr, errs);
    const char *props[] = {"message.timeout.ms", "3000", "reconnect.backoff.max.ms", "200"};
    bg_audit_kafka_conf_t kc = {.bootstrap = rd_kafka_mock_cluster_bootstraps(e->mc),
                                .props = props, .nprops = 2};
    bg_config_audit_t cfg = {.enabled = 1, .kafka_topic = TOPIC, .spool_dir = e->dir,
                             .queue_size = 4096};
    if (!(e->a = bg_audit_new(&cfg, "inst", &kc, err, sizeof err)))
        fail_msg("%s", err);
}

static void mock_env_stop(mock_env_t *e)
{
    rd_kafka_mock_cluster_destroy(e->mc);
    rd_kafka_destroy(e->mrk);
    rm_rf(e->dir);
}

/* A fatal error (here: the broker refused the idempotent producer id once)
 * leaves a librdkafka producer refusing everything for good. The sink
 * replaces it, and every event, spooled meanwhile, reaches the topic. */
static void test_kafka_fatal_error_replaces_producer(void **state)
{
    mock_env_t e;
    mock_env_start(&e, SESSIONS, 22 /* InitProducerId */, 1, RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED);
    emit_range(e.a, 0, 60);
    bg_audit_stats_t st;
    WAIT_UNTIL((bg_audit_stats(e.a, &st), st.delivered >= 60 && st.spool_bytes == 0));
    assert_true(st.spooled > 0); /* they did fail first */
    bg_audit_free(e.a);
    seen_t s = {.ids = calloc(200, 37), .last = {-1, -1, -1}};
    consume_all(rd_kafka_mock_cluster_bootstraps(e.mc), &s, 60);
    assert_int_equal(s.nids, 60);
    assert_int_equal(s.misordered, 0);
    free(s.ids);
    mock_env_stop(&e);
}

/* The broker rejects produce requests as too large (the next 8 of them;
 * one partition, so each request is one batch): the records of a rejected
 * request go to the spool, the drain isolates records one by one, and a
 * record rejected alone goes to the dead-letter file. Live sends use at
 * most a few of the errors; the rest alternate between a drain batch and a
 * single record, so some records are dead-lettered. Nothing is stuck and
 * nothing is lost: every event is in the topic or in that file, never in
 * both. */
static void test_kafka_rejected_records_dead_lettered(void **state)
{
    mock_env_t e;
    mock_env_start(&e, 1, 0 /* Produce */, 8, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
    emit_range(e.a, 0, 60);
    bg_audit_stats_t st;
    WAIT_UNTIL((bg_audit_stats(e.a, &st), st.rejected >= 1 && st.spool_bytes == 0 &&
                st.delivered + st.rejected >= 60));
    assert_int_equal(st.dropped, 0);
    assert_true(st.rejected <= 8);
    bg_audit_free(e.a);
    seen_t s = {.ids = calloc(200, 37), .last = {-1, -1, -1}};
    consume_to_end(rd_kafka_mock_cluster_bootstraps(e.mc), &s);
    char path[4200], line[4096];
    snprintf(path, sizeof path, "%s/rejected.jsonl", e.dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int dead = 0;
    while (fgets(line, sizeof line, f)) {
        json_t *j = json_loads(line, 0, NULL);
        assert_non_null(j);
        const char *id = json_string_value(json_object_get(j, "event_id"));
        for (int i = 0; i < s.nids; i++)
            assert_string_not_equal(s.ids[i], id);
        dead++;
        json_decref(j);
    }
    fclose(f);
    assert_int_equal(dead, (int)st.rejected);
    assert_int_equal(s.nids + dead, 60);
    free(s.ids);
    mock_env_stop(&e);
}

int main(void)
{
    if (!getenv("BG_AUDIT_TEST_LOG")) bg_log_set_level(BG_LOG_OFF);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kafka_outage_spool_recovery),
        cmocka_unit_test(test_kafka_midstream_outage_keeps_order),
        cmocka_unit_test(test_kafka_avro_values),
        cmocka_unit_test(test_kafka_fatal_error_replaces_producer),
        cmocka_unit_test(test_kafka_rejected_records_dead_lettered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
