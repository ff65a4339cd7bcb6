/* Kafka codec throughput: decode and re-encode of the hot-path messages, a
 * Produce request and a Fetch response with 10 topics x 10 partitions and a
 * 1 KiB record batch per partition (records are borrowed, never parsed).
 *
 * Usage: kafka_codec_bench [iterations]   (default 200000)
 * Prints one line per case: messages/s and ns per message for decode only,
 * encode only, and decode+encode. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adapters/kafka/kafka_codec.h"

#define TOPICS 10
#define PARTS 10
#define REC_BYTES 1024

static uint8_t bg_bench__records[REC_BYTES];
static char bg_bench__names[TOPICS][16];

static double bg_bench__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bg_kafka_struct_t *bg_bench__produce(bg_kafka_arena_t *a)
{
    bg_kafka_struct_t *r = bg_kafka_struct_new(a, bg_kafka_msg_produce_req.body);
    r->f[BG_KAFKA_PRODUCE_REQ_ACKS].i = -1;
    r->f[BG_KAFKA_PRODUCE_REQ_TIMEOUT_MS].i = 30000;
    bg_kafka_struct_t **t = bg_kafka_array_new(a, r, BG_KAFKA_PRODUCE_REQ_TOPIC_DATA, TOPICS);
    for (int i = 0; i < TOPICS; i++) {
        t[i]->f[BG_KAFKA_PRODUCE_REQ_TOPIC_DATA_NAME].s = bg_kafka_cstr(bg_bench__names[i]);
        memset(t[i]->f[BG_KAFKA_PRODUCE_REQ_TOPIC_DATA_TOPIC_ID].uuid, i + 1, 16);
        bg_kafka_struct_t **p =
            bg_kafka_array_new(a, t[i], BG_KAFKA_PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA, PARTS);
        for (int j = 0; j < PARTS; j++) {
            p[j]->f[BG_KAFKA_PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA_INDEX].i = j;
            bg_slice_t rec = {bg_bench__records, REC_BYTES};
            p[j]->f[BG_KAFKA_PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA_RECORDS].s = rec;
        }
    }
    return r;
}

static bg_kafka_struct_t *bg_bench__fetch(bg_kafka_arena_t *a)
{
    bg_kafka_struct_t *r = bg_kafka_struct_new(a, bg_kafka_msg_fetch_resp.body);
    r->f[BG_KAFKA_FETCH_RESP_SESSION_ID].i = 12345;
    bg_kafka_struct_t **t = bg_kafka_array_new(a, r, BG_KAFKA_FETCH_RESP_RESPONSES, TOPICS);
    for (int i = 0; i < TOPICS; i++) {
        t[i]->f[BG_KAFKA_FETCH_RESP_RESPONSES_TOPIC].s = bg_kafka_cstr(bg_bench__names[i]);
        memset(t[i]->f[BG_KAFKA_FETCH_RESP_RESPONSES_TOPIC_ID].uuid, i + 1, 16);
        bg_kafka_struct_t **p =
            bg_kafka_array_new(a, t[i], BG_KAFKA_FETCH_RESP_RESPONSES_PARTITIONS, PARTS);
        for (int j = 0; j < PARTS; j++) {
            p[j]->f[BG_KAFKA_FETCH_RESP_RESPONSES_PARTITIONS_PARTITION_INDEX].i = j;
            p[j]->f[BG_KAFKA_FETCH_RESP_RESPONSES_PARTITIONS_HIGH_WATERMARK].i = 1000000 + j;
            p[j]->f[BG_KAFKA_FETCH_RESP_RESPONSES_PARTITIONS_LAST_STABLE_OFFSET].i = 1000000 + j;
            p[j]->f[BG_KAFKA_FETCH_RESP_RESPONSES_PARTITIONS_LOG_START_OFFSET].i = 0;
            p[j]->f[BG_KAFKA_FETCH_RESP_RESPONSES_PARTITIONS_ABORTED_TRANSACTIONS].a.n = -1;
            bg_slice_t rec = {bg_bench__records, REC_BYTES};
            p[j]->f[BG_KAFKA_FETCH_RESP_RESPONSES_PARTITIONS_RECORDS].s = rec;
        }
    }
    return r;
}

static void bg_bench__run(const char *label, const bg_kafka_msg_desc_t *d, int16_t ver,
                          bg_kafka_struct_t *(*build)(bg_kafka_arena_t *), long iters)
{
    bg_kafka_arena_t a;
    bg_kafka_arena_init(&a, 0);
    bg_wr_t msg, wr;
    bg_wr_init(&msg, 0, 0);
    bg_wr_init(&wr, 1 << 20, 0);
    const char *why = NULL;
    if (bg_kafka_encode(d, ver, build(&a), &msg, &why) != BG_KAFKA_OK) {
        fprintf(stderr, "%s: build failed: %s\n", label, why);
        exit(1);
    }
    bg_kafka_struct_t *s = NULL;
    double t0 = bg_bench__now();
    for (long i = 0; i < iters; i++) {
        bg_kafka_arena_reset(&a);
        bg_rd_t rd;
        bg_rd_init(&rd, msg.buf, msg.len);
        if (bg_kafka_decode(d, ver, &rd, &a, &s) != BG_KAFKA_OK)
            exit(1);
    }
    double t1 = bg_bench__now();
    for (long i = 0; i < iters; i++) {
        bg_wr_reset(&wr);
        if (bg_kafka_encode(d, ver, s, &wr, &why) != BG_KAFKA_OK)
            exit(1);
    }
    double t2 = bg_bench__now();
    if (wr.len != msg.len || memcmp(wr.buf, msg.buf, msg.len) != 0) {
        fprintf(stderr, "%s: re-encoding differs\n", label);
        exit(1);
    }
    double dec = (t1 - t0) / (double)iters, enc = (t2 - t1) / (double)iters;
    printf("%-28s %6zu B  decode %8.0f msg/s %7.0f ns | encode %8.0f msg/s %7.0f ns | both %8.0f "
           "msg/s %7.0f ns\n",
           label, msg.len, 1 / dec, dec * 1e9, 1 / enc, enc * 1e9, 1 / (dec + enc),
           (dec + enc) * 1e9);
    bg_wr_free(&msg);
    bg_wr_free(&wr);
    bg_kafka_arena_free(&a);
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 200000;
    if (iters <= 0)
        iters = 1;
    for (int i = 0; i < REC_BYTES; i++)
        bg_bench__records[i] = (uint8_t)(i * 31);
    for (int i = 0; i < TOPICS; i++)
        snprintf(bg_bench__names[i], sizeof bg_bench__names[i], "topic-%02d", i);
    printf("kafka codec, %d topics x %d partitions, %d B records each, %ld iterations\n", TOPICS,
           PARTS, REC_BYTES, iters);
    bg_bench__run("Produce request v7", &bg_kafka_msg_produce_req, 7, bg_bench__produce, iters);
    bg_bench__run("Produce request v12 (flex)", &bg_kafka_msg_produce_req, 12, bg_bench__produce,
                  iters);
    bg_bench__run("Fetch response v11", &bg_kafka_msg_fetch_resp, 11, bg_bench__fetch, iters);
    bg_bench__run("Fetch response v16 (flex)", &bg_kafka_msg_fetch_resp, 16, bg_bench__fetch,
                  iters);
    return 0;
}
