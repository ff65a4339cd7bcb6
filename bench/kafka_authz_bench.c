/* Kafka authorization benchmark: bg_kafka_authz_request on a Produce of 10
 * topics x 10 partitions (a decoded tree), (a) every topic allowed — the hot
 * path: classify + one policy decision per topic, nothing re-encoded — and
 * (b) half the topics denied — split into a rewritten request plus the
 * denied entries for the merge. The arena is reset between requests, as the
 * session does. Prints ns per request. Usage: kafka_authz_bench [iterations] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adapters/kafka/kafka_authz.h"

#define K(x) BG_KAFKA_##x
#define NTOPICS 10
#define NPARTS 10

static double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static bg_kafka_struct_t *bench_produce(bg_kafka_arena_t *a, char names[NTOPICS][32])
{
    bg_kafka_struct_t *r = bg_kafka_struct_new(a, bg_kafka_msg_produce_req.body);
    r->f[K(PRODUCE_REQ_ACKS)].i = -1;
    bg_kafka_struct_t **t = bg_kafka_array_new(a, r, K(PRODUCE_REQ_TOPIC_DATA), NTOPICS);
    for (int i = 0; i < NTOPICS; i++) {
        t[i]->f[K(PRODUCE_REQ_TOPIC_DATA_NAME)].s = bg_kafka_cstr(names[i]);
        bg_kafka_struct_t **p =
            bg_kafka_array_new(a, t[i], K(PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA), NPARTS);
        for (int j = 0; j < NPARTS; j++)
            p[j]->f[K(PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA_INDEX)].i = j;
    }
    return r;
}

static double bench_run(const bg_kafka_authz_ctx_t *ctx, const bg_kafka_struct_t *req,
                        long iters, bg_kafka_action_t expect)
{
    bg_kafka_arena_t a;
    bg_kafka_arena_init(&a, 0);
    bg_kafka_req_hdr_t h = {0, 9, 1, {NULL, -1}, {NULL, 0}, 2, 0};
    double t0 = bench_now();
    for (long i = 0; i < iters; i++) {
        bg_kafka_verdict_t v;
        if (bg_kafka_authz_request(ctx, &h, req, &a, &v) != 0 || v.action != expect) {
            fprintf(stderr, "unexpected verdict %d\n", v.action);
            exit(1);
        }
        bg_kafka_arena_reset(&a);
    }
    double ns = (bench_now() - t0) / (double)iters;
    bg_kafka_arena_free(&a);
    return ns;
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 200000;
    static const char *all[] = {"*"};
    static const char *res[] = {"kafka:topic:events.*"};
    bg_policy_rule_spec_t rule = {"events", "b.yaml", 1, all, 1, res, 1,
                                  1u << BG_VERB_WRITE, BG_EFFECT_ALLOW, NULL, 0, BG_MODE_INHERIT};
    bg_policy_spec_t spec = {BG_EFFECT_DENY, BG_MODE_ENFORCE, &rule, 1, NULL, 0};
    char err[128];
    bg_policy_t *pol = bg_policy_compile(&spec, err, sizeof err);
    bg_policy_principal_t pr;
    if (!pol || bg_policy_principal_prepare(pol, "bench", NULL, 0, &pr)) {
        fprintf(stderr, "policy: %s\n", err);
        return 1;
    }
    bg_kafka_authz_ctx_t ctx = {.policy = pol,
                                .principal = &pr,
                                .audit_topic = "busgate.audit",
                                .advertised_host = "gw",
                                .port_base = 19000};
    static char allowed[NTOPICS][32], half[NTOPICS][32];
    for (int i = 0; i < NTOPICS; i++) {
        snprintf(allowed[i], sizeof allowed[i], "events.t%d", i);
        snprintf(half[i], sizeof half[i], "%s.t%d", i % 2 ? "private" : "events", i);
    }
    bg_kafka_arena_t a;
    bg_kafka_arena_init(&a, 0);
    const bg_kafka_struct_t *r1 = bench_produce(&a, allowed), *r2 = bench_produce(&a, half);
    double ns1 = bench_run(&ctx, r1, iters, BG_KAFKA_ACT_FORWARD);
    double ns2 = bench_run(&ctx, r2, iters, BG_KAFKA_ACT_FORWARD_REWRITTEN);
    printf("produce %dx%d all allowed : %8.0f ns/request\n", NTOPICS, NPARTS, ns1);
    printf("produce %dx%d half denied : %8.0f ns/request (split)\n", NTOPICS, NPARTS, ns2);
    bg_kafka_arena_free(&a);
    bg_policy_principal_clear(&pr);
    bg_policy_free(pol);
    return 0;
}
