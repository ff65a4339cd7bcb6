/* Policy evaluation benchmark: 10,000 rules (literals, prefixes, globs over
 * every resource type, 200 groups), principals in 1-20 groups, 1,000,000
 * decisions each timed with clock_gettime. Prints ns per decision (p50, p99,
 * p99.9, max; the timer's cost included), the timer's own cost sampled the
 * same way, decisions/s, and p50/p99 per resource type. Every decision is
 * evaluated: random (query, principal) pairs from 8,192 queries over ~10,000
 * names and 1,000 principals; nothing is cached between calls.
 * Usage: policy_bench [rules] [decisions] */
#include "policy/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NGROUPS 200
#define NPRINCIPALS 1000
#define NQUERIES 8192

static uint64_t bench_rng = 42;
static uint32_t rnd(uint32_t n)
{
    bench_rng ^= bench_rng << 13;
    bench_rng ^= bench_rng >> 7;
    bench_rng ^= bench_rng << 17;
    return (uint32_t)(bench_rng % n);
}

static const char *const kinds[] = {"events", "audit", "state", "dlq", "cmd"};
static const char *const types[] = {"kafka:topic", "kafka:group", "kafka:transactional-id",
                                    "amqp:exchange", "amqp:queue"};

/* A concrete name: teamN.svcM.KIND (or /teamN/svcM/KIND for http). */
static void name(char *buf, size_t len, char sep, int lead)
{
    snprintf(buf, len, "%steam%u%csvc%u%c%s", lead ? (char[]){sep, 0} : "", rnd(100), sep, rnd(20),
             sep, kinds[rnd(5)]);
}

static void pattern(char *buf, size_t len, char sep, int lead)
{
    const char *l = lead ? (sep == '/' ? "/" : ".") : "";
    uint32_t k = rnd(100);
    if (k < 45)
        name(buf, len, sep, lead);
    else if (k < 65)
        snprintf(buf, len, "%steam%u%c*", l, rnd(100), sep);
    else if (k < 80)
        snprintf(buf, len, "%steam%u%csvc%u%c*", l, rnd(100), sep, rnd(20), sep);
    else if (k < 92)
        snprintf(buf, len, "%steam%u%c*%c%s", l, rnd(100), sep, sep, kinds[rnd(5)]);
    else if (k < 97)
        snprintf(buf, len, "%steam%u%csvc?%c%s", l, rnd(100), sep, sep, kinds[rnd(5)]);
    else
        snprintf(buf, len, "*%c%s%u", sep, kinds[rnd(5)], rnd(10));
}

static char *resource_pattern(void)
{
    char buf[256], n[200];
    uint32_t t = rnd(100);
    if (t < 2)
        return strdup("kafka:cluster");
    if (t < 20) {
        pattern(n, sizeof(n), '/', 1);
        snprintf(buf, sizeof(buf), "http:%s:%s", rnd(4) ? "api" : "*", n);
    } else {
        pattern(n, sizeof(n), '.', 0);
        snprintf(buf, sizeof(buf), "%s:%s", types[t % 5], n);
    }
    return strdup(buf);
}

static bg_policy_t *build(size_t nrules)
{
    bg_policy_rule_spec_t *rules = calloc(nrules, sizeof(*rules));
    static const char *const sre[] = {"group:sre"};
    for (size_t i = 0; i < nrules; i++) {
        char buf[64];
        size_t ns = 1 + rnd(3), nr = 1 + rnd(2);
        const char **subj = calloc(ns, sizeof(char *)), **res = calloc(nr, sizeof(char *));
        for (size_t s = 0; s < ns; s++) {
            if (rnd(50) == 0)
                snprintf(buf, sizeof(buf), "sub:user%u", rnd(1000));
            else
                snprintf(buf, sizeof(buf), "group:g%u", rnd(NGROUPS));
            subj[s] = strdup(buf);
        }
        for (size_t r = 0; r < nr; r++)
            res[r] = resource_pattern();
        snprintf(buf, sizeof(buf), "rule-%zu", i);
        uint32_t e = rnd(10);
        rules[i] = (bg_policy_rule_spec_t){
            .name = strdup(buf), .file = "bench.yaml", .line = (int)i + 1, .subjects = subj,
            .nsubjects = ns, .resources = res, .nresources = nr,
            .verbs = 1u + rnd((1u << BG_VERB__COUNT) - 1),
            .effect = e < 7 ? BG_EFFECT_ALLOW : e < 9 ? BG_EFFECT_DENY : BG_EFFECT_HOLD,
            .approvers = sre, .napprovers = e == 9, .mode = rnd(20) ? BG_MODE_INHERIT : BG_MODE_AUDIT};
    }
    static const char *const fields[] = {"customer.email"};
    static const char *const mres[] = {"kafka:topic:team1.*", "kafka:topic:*.audit",
                                       "amqp:queue:team2.svc3.events"};
    static const char *const exc[] = {"group:g7"};
    bg_policy_mask_spec_t masks[3];
    for (int m = 0; m < 3; m++)
        masks[m] = (bg_policy_mask_spec_t){(const char *[]){"mask-a", "mask-b", "mask-c"}[m],
                                           "bench.yaml", 1, &mres[m], 1, BG_MASK_FORMAT_JSON,
                                           fields, 1, BG_MASK_REDACT, exc, 1};
    bg_policy_spec_t spec = {BG_EFFECT_DENY, BG_MODE_ENFORCE, rules, nrules, masks, 3};
    char err[256];
    bg_policy_t *p = bg_policy_compile(&spec, err, sizeof(err));
    if (!p)
        fprintf(stderr, "compile: %s\n", err);
    for (size_t i = 0; i < nrules; i++) {
        for (size_t s = 0; s < rules[i].nsubjects; s++)
            free((void *)rules[i].subjects[s]);
        for (size_t r = 0; r < rules[i].nresources; r++)
            free((void *)rules[i].resources[r]);
        free((void *)rules[i].subjects);
        free((void *)rules[i].resources);
        free((void *)rules[i].name);
    }
    free(rules);
    return p;
}

typedef struct query_s {
    bg_policy_resource_t res;
    char route[8];
    char name[64];
    bg_verb_t verb;
} query_t;

static void make_query(query_t *q)
{
    uint32_t t = rnd(100);
    memset(q, 0, sizeof(*q));
    q->verb = (bg_verb_t)rnd(BG_VERB__COUNT);
    if (t < 2) {
        q->res.type = BG_RES_KAFKA_CLUSTER;
        return;
    }
    static const bg_res_type_t map[] = {BG_RES_KAFKA_TOPIC, BG_RES_KAFKA_GROUP, BG_RES_KAFKA_TXN_ID,
                                        BG_RES_AMQP_EXCHANGE, BG_RES_AMQP_QUEUE};
    if (t < 20) {
        q->res.type = BG_RES_HTTP;
        snprintf(q->route, sizeof(q->route), "%s", rnd(4) ? "api" : "web");
        name(q->name, sizeof(q->name), '/', 1);
    } else {
        q->res.type = map[t % 5];
        name(q->name, sizeof(q->name), '.', 0);
    }
    q->res.route = q->route;
    q->res.route_len = strlen(q->route);
    q->res.name = q->name;
    q->res.name_len = strlen(q->name);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    size_t nrules = argc > 1 ? strtoul(argv[1], NULL, 10) : 10000;
    size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) : 1000000;
    uint64_t t0 = now_ns();
    bg_policy_t *p = build(nrules);
    if (!p)
        return 1;
    printf("compiled %zu rules in %.1f ms\n", nrules, (double)(now_ns() - t0) / 1e6);

    static bg_policy_principal_t prs[NPRINCIPALS];
    for (int i = 0; i < NPRINCIPALS; i++) {
        char gbuf[20][16], sub[16];
        const char *g[20];
        size_t ng = 1 + rnd(20);
        for (size_t k = 0; k < ng; k++) {
            snprintf(gbuf[k], 16, "g%u", rnd(NGROUPS + 50)); /* a few unknown */
            g[k] = gbuf[k];
        }
        snprintf(sub, sizeof(sub), "user%u", rnd(1000));
        if (bg_policy_principal_prepare(p, sub, g, ng, &prs[i]) != 0)
            return 1;
    }
    static query_t qs[NQUERIES];
    for (int i = 0; i < NQUERIES; i++)
        make_query(&qs[i]);

    uint32_t *lat = malloc(n * sizeof(*lat));
    /* per resource type, to show where the tail comes from */
    uint32_t *by_type[BG_RES__COUNT];
    size_t nby[BG_RES__COUNT] = {0};
    for (int t = 0; t < BG_RES__COUNT; t++)
        by_type[t] = malloc(n * sizeof(uint32_t));
    size_t effects[3] = {0}, by_rule = 0;
    bg_policy_decision_t d;
    uint64_t start = now_ns();
    for (size_t i = 0; i < n; i++) {
        const query_t *q = &qs[rnd(NQUERIES)];
        const bg_policy_principal_t *pr = &prs[rnd(NPRINCIPALS)];
        uint64_t a = now_ns();
        bg_policy_decide(p, pr, &q->res, q->verb, &d);
        uint64_t b = now_ns();
        lat[i] = (uint32_t)(b - a);
        by_type[q->res.type][nby[q->res.type]++] = lat[i];
        effects[d.would]++;
        by_rule += d.rule != NULL;
    }
    double wall = (double)(now_ns() - start) / 1e9;
    /* The timer's own cost, sampled the same way (back-to-back reads), so it
     * can be read against the decision figures (which include it). */
    enum { NCLOCK = 100000 };
    static uint32_t clk[NCLOCK];
    for (int i = 0; i < NCLOCK; i++) {
        uint64_t a = now_ns();
        clk[i] = (uint32_t)(now_ns() - a);
    }
    qsort(clk, NCLOCK, sizeof(uint32_t), cmp_u32);
    qsort(lat, n, sizeof(*lat), cmp_u32);
    printf("decisions: %zu (allow %zu, deny %zu, hold %zu; %zu by a rule)\n", n, effects[0],
           effects[1], effects[2], by_rule);
    printf("ns/decision: p50 %u  p99 %u  p99.9 %u  max %u  (timer included)\n", lat[n / 2],
           lat[n * 99 / 100], lat[n * 999 / 1000], lat[n - 1]);
    printf("timer alone: p50 %u  p99 %u  max %u ns per sample (clock_gettime MONOTONIC)\n",
           clk[NCLOCK / 2], clk[NCLOCK * 99 / 100], clk[NCLOCK - 1]);
    printf("throughput: %.0f decisions/s (single thread, incl. timing)\n", (double)n / wall);
    for (int t = 0; t < BG_RES__COUNT; t++) {
        size_t k = nby[t];
        if (k == 0)
            continue;
        qsort(by_type[t], k, sizeof(uint32_t), cmp_u32);
        printf("  %-24s %6.2f%% of decisions: p50 %u  p99 %u\n", bg_res_type_name((bg_res_type_t)t),
               100.0 * (double)k / (double)n, by_type[t][k / 2], by_type[t][k * 99 / 100]);
    }
    for (int t = 0; t < BG_RES__COUNT; t++)
        free(by_type[t]);
    for (int i = 0; i < NPRINCIPALS; i++)
        bg_policy_principal_clear(&prs[i]);
    free(lat);
    bg_policy_free(p);
    return 0;
}
