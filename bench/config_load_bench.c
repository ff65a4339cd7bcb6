/* Configuration load benchmark: bg_config_load_string() on a generated
 * configuration (identity, an embedded Kafka upstream, and a policy of N
 * rules plus N/100 masks, every name distinct), timed with clock_gettime
 * around the whole load: YAML parse, section checks and the one policy
 * compile. Prints, per size, the YAML size and the min and median load time
 * over the repetitions. Every load must succeed with no error.
 * Usage: config_load_bench [-r reps] [rules ...]   (default: 5 1000 10000 50000) */
#include "broker/config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_MAX_REPS 100

/* A growable buffer that exits on out of memory (a benchmark, not the broker). */
typedef struct {
    char *p;
    size_t len, cap;
} bench_buf_t;

static void bench_addf(bench_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bench_addf(bench_buf_t *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            exit(1);
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        b->cap = (b->cap + (size_t)n + 1) * 2;
        if (!(b->p = realloc(b->p, b->cap))) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
    }
}

/* Rules in block style, as people write them: 1-2 subjects, 2 resources,
 * 1-3 verbs, every tenth a deny. */
static char *bench_yaml(size_t nrules, size_t *len)
{
    static const char *const verbs[] = {"[read]", "[read, describe]", "[write, create, describe]"};
    bench_buf_t b = {0};
    bench_addf(&b, "identity:\n  issuers:\n    - issuer: https://idp.example\n"
                   "      audiences: [busgate]\n      jwks_file: jwks.json\n"
                   "kafka:\n  listen: 127.0.0.1:19092\n  upstream: {embedded: 1}\n"
                   "audit:\n  file: audit.jsonl\n"
                   "policy:\n  default: deny\n  rules:\n");
    for (size_t i = 0; i < nrules; i++) {
        bench_addf(&b, "    - name: team%zu-rule%zu\n", i % 100, i);
        bench_addf(&b, "      subjects: [group:g%zu%s]\n", i % 200,
                   i % 3 ? "" : ", sub:svc-orders");
        bench_addf(&b, "      resources: [kafka:topic:team%zu.svc%zu.*, "
                       "kafka:group:team%zu.g%zu]\n",
                   i % 100, i, i % 100, i);
        bench_addf(&b, "      verbs: %s\n      effect: %s\n", verbs[i % 3],
                   i % 10 ? "allow" : "deny");
    }
    bench_addf(&b, "  masks:\n");
    for (size_t i = 0; i < nrules / 100 + 1; i++)
        bench_addf(&b, "    - name: mask%zu\n      resources: [kafka:topic:team%zu.*]\n"
                       "      fields: [card.number, email]\n",
                   i, i);
    *len = b.len;
    return b.p;
}

static double bench_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int bench_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int bench_one(size_t nrules, int reps)
{
    double ms[BENCH_MAX_REPS];
    size_t len;
    char *yaml = bench_yaml(nrules, &len);
    for (int r = 0; r < reps; r++) {
        bg_config_errors_t errs = {0};
        double t0 = bench_now_ms();
        bg_config_t *c = bg_config_load_string("bench.yaml", yaml, len, &errs);
        ms[r] = bench_now_ms() - t0;
        if (!c || errs.n) {
            fprintf(stderr, "load failed: %s\n", errs.n ? errs.msgs[0] : "(no message)");
            bg_config_errors_clear(&errs);
            bg_config_free(c);
            free(yaml);
            return -1;
        }
        bg_config_free(c);
    }
    qsort(ms, (size_t)reps, sizeof(ms[0]), bench_cmp);
    printf("rules=%-7zu yaml=%7.1f KiB  load min %9.1f ms  median %9.1f ms  (%d runs)\n", nrules,
           (double)len / 1024, ms[0], ms[reps / 2], reps);
    fflush(stdout);
    free(yaml);
    return 0;
}

int main(int argc, char **argv)
{
    static const size_t defaults[] = {1000, 10000, 50000};
    int reps = 5, first = 1, rc = 0;
    if (argc > 2 && strcmp(argv[1], "-r") == 0) {
        reps = atoi(argv[2]);
        first = 3;
    }
    if (reps < 1 || reps > BENCH_MAX_REPS) {
        fprintf(stderr, "usage: %s [-r reps (1-%d)] [rules ...]\n", argv[0], BENCH_MAX_REPS);
        return 2;
    }
    if (first >= argc)
        for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
            rc |= bench_one(defaults[i], reps);
    for (int i = first; i < argc; i++) {
        long n = atol(argv[i]);
        if (n < 1) {
            fprintf(stderr, "bad rule count '%s'\n", argv[i]);
            return 2;
        }
        rc |= bench_one((size_t)n, reps);
    }
    return rc ? 1 : 0;
}
