/* Produce latency probe (bench/kafka/passthrough.sh, "latency" phase): a
 * librdkafka producer sends fixed-size records at a fixed rate for a fixed
 * time and measures, with microsecond resolution,
 *   - delivery latency: from produce() to the delivery report, per record;
 *   - request round trip: librdkafka's own per-broker "rtt" statistics
 *     (Produce request sent -> response received), one window per second.
 * Kafka's producer-perf-test prints whole milliseconds only, too coarse for
 * a budget of a fraction of a millisecond.
 *
 *   kafka_produce_latency BOOTSTRAP USER PASSWORD TOPIC RATE SECONDS [SIZE]
 *
 * SASL_PLAINTEXT with PLAIN; acks=all, lz4, linger.ms=5 and batch.size=16384
 * as the Java producer's defaults, and Nagle's algorithm off as the Java
 * client has it (librdkafka leaves it on by default: a pipelined request then
 * waits for the previous one's acknowledgement, which measures Nagle more
 * than the path). Prints one line of key=value pairs. */
#include <inttypes.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BG_LAT_BUCKETS 200000 /* 1 us buckets up to 200 ms; above counts in the last */
#define BG_LAT_WINDOWS 3600

typedef struct {
    uint64_t hist[BG_LAT_BUCKETS];
    uint64_t delivered, failed;
    double rtt_p50[BG_LAT_WINDOWS], rtt_p99[BG_LAT_WINDOWS];
    int windows;
    int measuring; /* stats windows count once the warm-up is over */
} bg_lat_t;

static bg_lat_t bg_lat;

static int64_t bg_lat_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void bg_lat_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk, (void)opaque;
    if (m->err) {
        bg_lat.failed++;
        return;
    }
    int64_t sent = (int64_t)(intptr_t)m->_private;
    if (sent == 0)
        return; /* warm-up record */
    int64_t us = bg_lat_now_us() - sent;
    bg_lat.hist[us < 0 ? 0 : us >= BG_LAT_BUCKETS ? BG_LAT_BUCKETS - 1 : us]++;
    bg_lat.delivered++;
}

/* One statistics window: the rtt percentiles of every broker that answered
 * requests in it (node ids >= 0; bootstrap entries are -1). */
static int bg_lat_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    (void)rk, (void)opaque;
    json_error_t err;
    json_t *root = json_loadb(json, len, 0, &err);
    json_t *brokers = root ? json_object_get(root, "brokers") : NULL;
    const char *name;
    json_t *b;
    json_object_foreach(brokers, name, b)
    {
        json_t *rtt = json_object_get(b, "rtt");
        if (json_integer_value(json_object_get(b, "nodeid")) < 0 || !rtt ||
            json_integer_value(json_object_get(rtt, "cnt")) == 0)
            continue;
        if (bg_lat.measuring && bg_lat.windows < BG_LAT_WINDOWS) {
            bg_lat.rtt_p50[bg_lat.windows] = (double)json_integer_value(json_object_get(rtt, "p50"));
            bg_lat.rtt_p99[bg_lat.windows] = (double)json_integer_value(json_object_get(rtt, "p99"));
            bg_lat.windows++;
        }
    }
    json_decref(root);
    return 0;
}

static double bg_lat_pct(double pct)
{
    uint64_t want = (uint64_t)((double)bg_lat.delivered * pct / 100.0);
    uint64_t seen = 0;
    for (int i = 0; i < BG_LAT_BUCKETS; i++) {
        seen += bg_lat.hist[i];
        if (seen > want)
            return i;
    }
    return BG_LAT_BUCKETS - 1;
}

static int bg_lat_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double bg_lat_median(double *v, int n)
{
    if (n == 0)
        return -1;
    qsort(v, (size_t)n, sizeof *v, bg_lat_cmp);
    return v[n / 2];
}

static rd_kafka_t *bg_lat_producer(char **argv)
{
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    const char *kv[][2] = {
        {"bootstrap.servers", argv[1]}, {"security.protocol", "SASL_PLAINTEXT"},
        {"sasl.mechanisms", "PLAIN"},   {"sasl.username", argv[2]},
        {"sasl.password", argv[3]},     {"acks", "all"},
        {"compression.type", "lz4"},    {"linger.ms", "5"},
        {"batch.size", "16384"},        {"statistics.interval.ms", "1000"},
        {"queue.buffering.max.messages", "1000000"},
        {"socket.nagle.disable", "true"},
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (rd_kafka_conf_set(c, kv[i][0], kv[i][1], err, sizeof err) != RD_KAFKA_CONF_OK) {
            fprintf(stderr, "%s: %s\n", kv[i][0], err);
            exit(2);
        }
    rd_kafka_conf_set_dr_msg_cb(c, bg_lat_dr);
    rd_kafka_conf_set_stats_cb(c, bg_lat_stats);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "producer: %s\n", err);
        exit(2);
    }
    return rk;
}

/* Sends `rate` records a second for `seconds`, pacing every millisecond;
 * `stamp` 0 marks warm-up records that are not measured. */
static void bg_lat_run(rd_kafka_t *rk, const char *topic, long rate, long seconds, size_t size,
                       int stamp)
{
    static char payload[1 << 20];
    memset(payload, 'x', size);
    int64_t start = bg_lat_now_us(), end = start + seconds * 1000000;
    long sent = 0;
    for (int64_t now = start; now < end; now = bg_lat_now_us()) {
        long due = (long)((now - start) * rate / 1000000);
        for (; sent < due; sent++) {
            void *ts = stamp ? (void *)(intptr_t)bg_lat_now_us() : NULL;
            while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_VALUE(payload, size),
                                     RD_KAFKA_V_OPAQUE(ts), RD_KAFKA_V_END) ==
                   RD_KAFKA_RESP_ERR__QUEUE_FULL)
                rd_kafka_poll(rk, 1);
        }
        rd_kafka_poll(rk, 0);
        struct timespec pause = {0, 200000};
        nanosleep(&pause, NULL);
    }
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: %s BOOTSTRAP USER PASSWORD TOPIC RATE SECONDS [SIZE]\n", argv[0]);
        return 2;
    }
    long rate = atol(argv[5]), seconds = atol(argv[6]);
    size_t size = argc > 7 ? (size_t)atol(argv[7]) : 1024;
    if (rate <= 0 || seconds <= 0 || size == 0 || size > (1u << 20)) {
        fprintf(stderr, "bad RATE, SECONDS or SIZE\n");
        return 2;
    }
    rd_kafka_t *rk = bg_lat_producer(argv);
    bg_lat_run(rk, argv[4], rate, 3, size, 0); /* warm-up: connections, metadata */
    rd_kafka_flush(rk, 30000);
    bg_lat.measuring = 1;
    bg_lat_run(rk, argv[4], rate, seconds, size, 1);
    rd_kafka_flush(rk, 30000);
    rd_kafka_poll(rk, 1100); /* one more statistics window */
    double mean = 0;
    for (int i = 0; i < BG_LAT_BUCKETS; i++)
        mean += (double)i * (double)bg_lat.hist[i];
    mean = bg_lat.delivered ? mean / (double)bg_lat.delivered : -1;
    double p99s[BG_LAT_WINDOWS];
    memcpy(p99s, bg_lat.rtt_p99, sizeof p99s);
    printf("delivered=%" PRIu64 " failed=%" PRIu64 " dr_mean_us=%.0f dr_p50_us=%.0f dr_p99_us=%.0f "
           "rtt_p50_us=%.0f rtt_p99_us=%.0f windows=%d\n",
           bg_lat.delivered, bg_lat.failed, mean, bg_lat_pct(50), bg_lat_pct(99),
           bg_lat_median(bg_lat.rtt_p50, bg_lat.windows), bg_lat_median(p99s, bg_lat.windows),
           bg_lat.windows);
    rd_kafka_destroy(rk);
    return bg_lat.failed ? 1 : 0;
}
