/* Client-side CPU of busgate's upstream SCRAM-SHA-512 exchange (client-first
 * and client-final, 4096 iterations, Kafka's salt size): cold, with the
 * salted-password cache emptied before every exchange (PBKDF2 each time, as
 * before the cache), and cached (a reconnect storm: same credential, same
 * salt).
 *
 * Usage: kafka_scram_bench [exchanges]   (default 200)
 * Prints CPU time per exchange for both cases. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adapters/kafka/kafka_scram.h"

static double bg_bench__cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One exchange up to the client-final message; the server nonce extends
 * the client's as a broker's does. Returns 0 on success. */
static int bg_bench__exchange(void)
{
    const char *why = NULL;
    bg_wr_t wr;
    char sfirst[256];
    bg_kafka_scram_t *s = bg_kafka_scram_new(BG_KAFKA_SCRAM_SHA512, "busgate", "bench-password");
    if (!s)
        return -1;
    bg_wr_init(&wr, 256, 0);
    int rc = bg_kafka_scram_client_first(s, &wr, &why);
    if (rc == BG_KAFKA_SCRAM_OK) {
        /* "n,,n=busgate,r=<nonce>": the nonce starts at byte 15. */
        snprintf(sfirst, sizeof sfirst, "r=%.*sSRV,s=c2FsdHNhbHRzYWx0c2FsdHNhbHRzYQ==,i=4096",
                 (int)(wr.len - 15), (const char *)wr.buf + 15);
        bg_wr_reset(&wr);
        rc = bg_kafka_scram_client_final(s, (const uint8_t *)sfirst, strlen(sfirst), &wr, &why);
    }
    bg_wr_free(&wr);
    bg_kafka_scram_free(s);
    if (rc != BG_KAFKA_SCRAM_OK)
        fprintf(stderr, "exchange failed: %s\n", why ? why : "?");
    return rc == BG_KAFKA_SCRAM_OK ? 0 : -1;
}

static int bg_bench__run(const char *name, int n, int cold)
{
    double t0 = bg_bench__cpu();
    for (int i = 0; i < n; i++) {
        if (cold)
            bg_kafka_scram_cache_clear();
        if (bg_bench__exchange() != 0)
            return -1;
    }
    double us = (bg_bench__cpu() - t0) * 1e6 / n;
    uint64_t hits, misses;
    bg_kafka_scram__cache_stats(&hits, &misses);
    printf("%-8s %6d exchanges  %9.1f us CPU each  (cache hits %llu, misses %llu)\n", name, n,
           us, (unsigned long long)hits, (unsigned long long)misses);
    return 0;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 200;
    if (n <= 0)
        n = 200;
    if (bg_bench__run("cold", n, 1) != 0)
        return 1;
    bg_kafka_scram_cache_clear();
    if (bg_bench__run("cached", n, 0) != 0)
        return 1;
    bg_kafka_scram_cache_clear();
    return 0;
}
