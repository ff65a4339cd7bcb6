/* A librdkafka mock cluster in its own process, for integration tests.
 *
 * usage: bg_mockcluster [BROKERS]   (default 3)
 *
 * Prints the bootstrap list (host:port,...) as the first line on stdout,
 * then reads one command per line on stdin and answers "ok" or "err WHY":
 *
 *   create TOPIC PARTITIONS RF
 *   leader TOPIC PARTITION BROKER_ID
 *   down BROKER_ID
 *   up BROKER_ID
 *   quit
 *
 * End of input is the same as quit. The mock cluster runs on librdkafka's
 * own threads, so the main thread only parses commands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/* Parses a decimal integer in [lo, hi]; returns 0 on success. */
static int bg_mock__int(const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    if (!s)
        return -1;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static void bg_mock__reply(rd_kafka_resp_err_t err)
{
    if (err)
        printf("err %s\n", rd_kafka_err2str(err));
    else
        printf("ok\n");
    fflush(stdout);
}

/* Runs one command line; returns 1 on quit. */
static int bg_mock__command(rd_kafka_mock_cluster_t *mc, char *line)
{
    char *save = NULL;
    char *cmd = strtok_r(line, " \t\r\n", &save);
    char *a1 = strtok_r(NULL, " \t\r\n", &save);
    char *a2 = strtok_r(NULL, " \t\r\n", &save);
    char *a3 = strtok_r(NULL, " \t\r\n", &save);
    long x, y;
    if (!cmd)
        return 0; /* blank line */
    if (strcmp(cmd, "quit") == 0)
        return 1;
    if (strcmp(cmd, "create") == 0 && a1 && bg_mock__int(a2, 1, 10000, &x) == 0 &&
        bg_mock__int(a3, 1, 100, &y) == 0) {
        bg_mock__reply(rd_kafka_mock_topic_create(mc, a1, (int)x, (int)y));
    } else if (strcmp(cmd, "leader") == 0 && a1 && bg_mock__int(a2, 0, 10000, &x) == 0 &&
               bg_mock__int(a3, -1, 1000, &y) == 0) {
        bg_mock__reply(rd_kafka_mock_partition_set_leader(mc, a1, (int32_t)x, (int32_t)y));
    } else if (strcmp(cmd, "down") == 0 && bg_mock__int(a1, 0, 1000, &x) == 0) {
        bg_mock__reply(rd_kafka_mock_broker_set_down(mc, (int32_t)x));
    } else if (strcmp(cmd, "up") == 0 && bg_mock__int(a1, 0, 1000, &x) == 0) {
        bg_mock__reply(rd_kafka_mock_broker_set_up(mc, (int32_t)x));
    } else {
        printf("err bad command\n");
        fflush(stdout);
    }
    return 0;
}

int main(int argc, char **argv)
{
    long n = 3;
    if (argc > 2 || (argc == 2 && bg_mock__int(argv[1], 1, 32, &n) != 0)) {
        fprintf(stderr, "usage: %s [BROKERS 1..32]\n", argv[0]);
        return 2;
    }
    char err[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "log_level", "3", NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "rd_kafka_new: %s\n", err);
        rd_kafka_conf_destroy(c);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, (int)n);
    if (!mc) {
        fprintf(stderr, "cannot create the mock cluster\n");
        rd_kafka_destroy(rk);
        return 1;
    }
    printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);
    char line[1024];
    while (fgets(line, sizeof line, stdin))
        if (bg_mock__command(mc, line))
            break;
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
