/* Audit pipeline throughput: events/s from emit to the sink's
 * confirmation (Kafka: acked; file: written and fdatasync'ed), through
 * bg_audit_emit -> queue -> audit thread -> sink.
 *
 *   audit_bench file [N] [THREADS]              JSON-lines file sink (temp dir)
 *   audit_bench mock [N] [THREADS]              librdkafka mock cluster (in process)
 *   audit_bench kafka BOOTSTRAP TOPIC [N] [THREADS]   a real broker, PLAINTEXT
 *
 * AUDIT_BENCH_TUNED=1 adds producer batching properties (see main).
 * THREADS emitter threads share N events of a realistic size (a decision
 * with principal, groups, resource and rule; ~600 bytes of JSON) over 64
 * sessions. An emit refused because the queue is full (block mode) is
 * retried after a yield and counted. The clock runs from the first emit to
 * bg_audit_flush() returning. Prints one line per run; no pass/fail. */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit.h"
#include "broker/log.h"

typedef struct bench_s {
    bg_audit_t *a;
    long n;
    int threads, idx;
    _Atomic long retries;
} bench_t;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *emitter(void *arg)
{
    bench_t *b = arg;
    static _Atomic int next;
    int me = atomic_fetch_add(&next, 1);
    static const char *const groups[] = {"orders", "payments-readers", "platform"};
    bg_policy_resource_t res = {BG_RES_KAFKA_TOPIC, NULL, 0, "orders.eu.v1", 12};
    long retries = 0;
    for (long i = me; i < b->n; i += b->threads) {
        char sess[40];
        snprintf(sess, sizeof sess, "5f0c1b7e-2a3d-4c5e-8f90-%012ld", i % 64);
        bg_audit_event_t ev = {
            .kind = BG_AUDIT_EV_DECISION,
            .session_id = sess,
            .seq = (uint64_t)i,
            .protocol = "kafka",
            .peer = "10.1.2.3:51234",
            .principal = {"svc-orders", groups, 3, "https://idp.example.com/realms/prod",
                          "5ad1c0a2-58b1-4b0e-9d4e-8f1f2b3c4d5e"},
            .client_id = "orders-producer-7",
            .client_software_name = "librdkafka",
            .client_software_version = "2.16.0",
            .api = "Produce",
            .api_version = 10,
            .resources = &res,
            .nresources = 1,
            .verb = BG_VERB_WRITE,
            .decision = {BG_EFFECT_ALLOW, BG_EFFECT_ALLOW, "orders-producers", "busgate.yaml", 26,
                         BG_MODE_ENFORCE, NULL},
            .result = {0, NULL, 1536, 120, 3, 850},
            .has = BG_AUDIT_HAS_SEQ | BG_AUDIT_HAS_VERB | BG_AUDIT_HAS_DECISION |
                   BG_AUDIT_HAS_RESULT | BG_AUDIT_HAS_BYTES_OUT | BG_AUDIT_HAS_LATENCY |
                   BG_AUDIT_HAS_API_VERSION,
        };
        int rc;
        while ((rc = bg_audit_emit(b->a, &ev)) == BG_AUDIT_REFUSED) {
            retries++;
            sched_yield();
        }
        if (rc != BG_AUDIT_OK) {
            fprintf(stderr, "emit: %d\n", rc);
            exit(1);
        }
    }
    atomic_fetch_add(&b->retries, retries);
    return NULL;
}

static void run(const char *label, bg_audit_t *a, long n, int threads)
{
    bench_t b = {.a = a, .n = n, .threads = threads};
    pthread_t th[64];
    double t0 = now_s();
    for (int i = 0; i < threads; i++)
        pthread_create(&th[i], NULL, emitter, &b);
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    double t_emit = now_s() - t0;
    if (bg_audit_flush(a, 120000) != 0) {
        fprintf(stderr, "flush timed out\n");
        exit(1);
    }
    double t = now_s() - t0;
    bg_audit_stats_t st;
    bg_audit_stats(a, &st);
    printf("%-6s events=%ld threads=%d  %.0f events/s end to end (%.2f s; emit phase %.2f s, "
           "%.0f emits/s)  delivered=%llu spooled=%llu queue-full retries=%ld\n",
           label, n, threads, (double)n / t, t, t_emit, (double)n / t_emit,
           (unsigned long long)st.delivered, (unsigned long long)st.spooled,
           atomic_load(&b.retries));
}

int main(int argc, char **argv)
{
    char err[512] = "", dir[] = "/tmp/bg-audit-bench-XXXXXX", file[600];
    if (argc < 2) {
        fprintf(stderr, "usage: audit_bench file|mock [N] [THREADS] | kafka BOOTSTRAP TOPIC [N] [THREADS]\n");
        return 2;
    }
    bg_log_set_level(BG_LOG_ERROR);
    int kafka = strcmp(argv[1], "kafka") == 0;
    int arg = kafka ? 4 : 2;
    long n = argc > arg ? atol(argv[arg]) : 1000000;
    int threads = argc > arg + 1 ? atoi(argv[arg + 1]) : 2;
    threads = threads < 1 ? 1 : threads > 64 ? 64 : threads;
    if (!mkdtemp(dir))
        return 1;
    snprintf(file, sizeof file, "%s/audit.jsonl", dir);
    bg_config_audit_t cfg = {.enabled = 1, .queue_size = 65536, .on_failure = BG_AUDIT_BLOCK};
    rd_kafka_t *mrk = NULL;
    rd_kafka_mock_cluster_t *mc = NULL;
    bg_audit_kafka_conf_t kc = {0};
    /* AUDIT_BENCH_TUNED=1: batch as a high-volume producer would (extra
     * librdkafka properties); acks=all and idempotence stay. Default: the
     * sink's own settings, as busgate runs it. */
    const char *props[] = {"linger.ms", "20", "batch.size", "1000000", "compression.type", "lz4",
                           "queue.buffering.max.messages", "1000000"};
    if (getenv("AUDIT_BENCH_TUNED")) {
        kc.props = props;
        kc.nprops = 4;
    }
    if (strcmp(argv[1], "file") == 0) {
        cfg.file = file;
    } else if (strcmp(argv[1], "mock") == 0) {
        mrk = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), err, sizeof err);
        mc = mrk ? rd_kafka_mock_cluster_new(mrk, 1) : NULL;
        if (!mc || rd_kafka_mock_topic_create(mc, "busgate.audit", 6, 1) != 0)
            return 1;
        kc.bootstrap = rd_kafka_mock_cluster_bootstraps(mc);
        cfg.kafka_topic = "busgate.audit";
    } else if (kafka && argc >= 4) {
        kc.bootstrap = argv[2];
        cfg.kafka_topic = argv[3];
    } else {
        return 2;
    }
    bg_audit_t *a = bg_audit_new(&cfg, "bench", cfg.kafka_topic ? &kc : NULL, err, sizeof err);
    if (!a) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    run(argv[1], a, n, threads);
    bg_audit_free(a);
    if (mc)
        rd_kafka_mock_cluster_destroy(mc);
    if (mrk)
        rd_kafka_destroy(mrk);
    unlink(file);
    rmdir(dir);
    return 0;
}
