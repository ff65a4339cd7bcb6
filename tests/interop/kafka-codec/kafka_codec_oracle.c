/* bg_kafka_codec_oracle: busgate's half of the differential check of the
 * Kafka codec against Apache Kafka's own generated message classes
 * (tests/interop/kafka-codec/run.sh runs both halves; docs/testing.md).
 *
 *   bg_kafka_codec_oracle vectors         prints kafka_vectors.inc, one line a vector
 *   bg_kafka_codec_oracle check FILE      each line of FILE (bytes Kafka wrote) decodes,
 *                                         consuming every byte, knowing every tagged
 *                                         field, and re-encodes byte for byte
 *   bg_kafka_codec_oracle defaults FILE   as check; FILE holds Kafka's default instance
 *                                         of each message at each version, so also
 *                                         busgate's new struct must encode to the same
 *                                         bytes, and every version of every descriptor
 *                                         must be in FILE
 *
 * A line is "NAME API_KEY IS_RESPONSE VERSION HEX" (HEX absent for an empty
 * body), NAME as Kafka calls the message ("ProduceRequest"). Every mismatch
 * prints one line naming the message and version. Exit 0 when every line
 * held, 1 on a mismatch, 2 on bad usage or unreadable input. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/kafka/kafka_codec.h"

#include "tests/unit/kafka/kafka_vectors.h"
#include "tests/unit/kafka/kafka_vectors.inc"

#define BG_ORACLE_MAX_VERSIONS 64 /* coverage bitmap width; Kafka is far below */

typedef struct {
    char name[128];
    int16_t api_key;
    int is_response;
    int16_t version;
    uint8_t *body; /* malloc'd, owned by the line; NULL when len == 0 */
    size_t len;
} bg_oracle_line_t;

typedef struct {
    int defaults; /* defaults mode: compare with new structs, check coverage */
    long ok, bad;
    uint64_t seen[BG_KAFKA_API_MAX_KEY + 1][2]; /* versions met, one bit each */
} bg_oracle_run_t;

static void bg_oracle_print_vectors(void)
{
    for (size_t i = 0; i < sizeof kv_vectors / sizeof kv_vectors[0]; i++) {
        const kv_vector_t *v = &kv_vectors[i];
        printf("%s %d %d %d ", v->name, v->api_key, v->is_response, v->version);
        for (size_t j = 0; j < v->len; j++)
            printf("%02x", v->bytes[j]);
        putchar('\n');
    }
}

static int bg_oracle_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes lowercase hex into l->body (malloc'd). 0, or -1 on bad hex. */
static int bg_oracle_unhex(bg_oracle_line_t *l, const char *hex)
{
    size_t n = strlen(hex);
    if (n % 2)
        return -1;
    l->len = n / 2;
    l->body = l->len ? malloc(l->len) : NULL;
    if (l->len && !l->body)
        return -1;
    for (size_t i = 0; i < l->len; i++) {
        int hi = bg_oracle_hexval(hex[2 * i]), lo = bg_oracle_hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        l->body[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

/* Parses one input line (newline already cut off) into l. 0, or -1 when
 * the line is not "NAME KEY 0|1 VERSION [HEX]"; l->body is then freed by
 * the caller as on success. */
static int bg_oracle_parse(bg_oracle_line_t *l, char *line)
{
    char *save = NULL, *tok[6] = {0};
    int n = 0;
    for (char *t = strtok_r(line, " ", &save); t && n < 6; t = strtok_r(NULL, " ", &save))
        tok[n++] = t;
    if (n < 4 || n > 5 || strlen(tok[0]) >= sizeof l->name)
        return -1;
    strcpy(l->name, tok[0]);
    char *end;
    long key = strtol(tok[1], &end, 10), resp, ver;
    if (*end || key < 0 || key > BG_KAFKA_API_MAX_KEY)
        return -1;
    resp = strtol(tok[2], &end, 10);
    if (*end || (resp != 0 && resp != 1))
        return -1;
    ver = strtol(tok[3], &end, 10);
    if (*end || ver < 0 || ver > INT16_MAX)
        return -1;
    l->api_key = (int16_t)key;
    l->is_response = (int)resp;
    l->version = (int16_t)ver;
    return bg_oracle_unhex(l, tok[4] ? tok[4] : "");
}

static void bg_oracle_fail(bg_oracle_run_t *run, const bg_oracle_line_t *l, const char *what)
{
    printf("MISMATCH %s v%d: %s\n", l->name, l->version, what);
    run->bad++;
}

/* Compares busgate's bytes with Kafka's; 0 when equal, else reports where
 * they first differ under the label what. */
static int bg_oracle_same(bg_oracle_run_t *run, const bg_oracle_line_t *l, const char *what,
                          const bg_wr_t *w)
{
    size_t i = 0;
    while (i < w->len && i < l->len && w->buf[i] == l->body[i])
        i++;
    if (i == w->len && i == l->len)
        return 0;
    char msg[200];
    snprintf(msg, sizeof msg, "%s: %zu bytes, Kafka's %zu, first difference at byte %zu", what,
             w->len, l->len, i);
    bg_oracle_fail(run, l, msg);
    return -1;
}

/* Why Kafka's bytes did not decode cleanly, into msg; 0 when they did. A
 * tagged field busgate does not know would be kept raw and re-encoded
 * unchanged, so it counts here: the re-encoding alone would hide it. */
static int bg_oracle_decode_problem(int rc, const bg_rd_t *rd, size_t len, char *msg, size_t cap)
{
    if (rc != BG_KAFKA_OK)
        snprintf(msg, cap, "decode: %s (%s) at byte %zu of %zu", bg_kafka_status_str(rc),
                 rd->why ? rd->why : "-", len - bg_rd_left(rd), len);
    else if (bg_rd_left(rd))
        snprintf(msg, cap, "decode left %zu of %zu bytes unread", bg_rd_left(rd), len);
    else if (rd->unknown_tags)
        snprintf(msg, cap, "decode met a tagged field busgate does not know");
    else
        return 0;
    return 1;
}

/* Decodes Kafka's bytes and encodes the tree again: 0 when that gave the
 * same bytes, else -1 with the mismatch reported. */
static int bg_oracle_roundtrip(bg_oracle_run_t *run, const bg_kafka_msg_desc_t *d,
                               const bg_oracle_line_t *l)
{
    bg_kafka_arena_t a;
    bg_kafka_struct_t *s = NULL;
    bg_wr_t w;
    bg_rd_t rd;
    const char *why = NULL;
    char msg[200];
    int res = -1;
    bg_kafka_arena_init(&a, 0);
    bg_wr_init(&w, 0, 0);
    bg_rd_init(&rd, l->body, l->len);
    int rc = bg_kafka_decode(d, l->version, &rd, &a, &s);
    if (bg_oracle_decode_problem(rc, &rd, l->len, msg, sizeof msg)) {
        bg_oracle_fail(run, l, msg);
        goto done;
    }
    rc = bg_kafka_encode(d, l->version, s, &w, &why);
    if (rc != BG_KAFKA_OK) {
        snprintf(msg, sizeof msg, "re-encode: %s (%s)", bg_kafka_status_str(rc), why ? why : "-");
        bg_oracle_fail(run, l, msg);
        goto done;
    }
    res = bg_oracle_same(run, l, "re-encoded", &w);
done:
    bg_wr_free(&w);
    bg_kafka_arena_free(&a);
    return res;
}

/* busgate's new struct (every field at its JSON default) must encode to
 * Kafka's default instance: null defaults and omitted tagged fields alike. */
static int bg_oracle_default(bg_oracle_run_t *run, const bg_kafka_msg_desc_t *d,
                             const bg_oracle_line_t *l)
{
    bg_kafka_arena_t a;
    bg_wr_t w;
    const char *why = NULL;
    int res = -1;
    bg_kafka_arena_init(&a, 0);
    bg_wr_init(&w, 0, 0);
    bg_kafka_struct_t *s = bg_kafka_struct_new(&a, d->body);
    int rc = s ? bg_kafka_encode(d, l->version, s, &w, &why) : BG_KAFKA_ERR_LIMIT;
    if (rc != BG_KAFKA_OK) {
        char msg[200];
        snprintf(msg, sizeof msg, "default encode: %s (%s)", bg_kafka_status_str(rc),
                 why ? why : "-");
        bg_oracle_fail(run, l, msg);
    } else
        res = bg_oracle_same(run, l, "new struct encoded", &w);
    bg_wr_free(&w);
    bg_kafka_arena_free(&a);
    return res;
}

static void bg_oracle_line(bg_oracle_run_t *run, const bg_oracle_line_t *l)
{
    const bg_kafka_msg_desc_t *d = bg_kafka_msg_desc(l->api_key, l->is_response);
    if (!d || strcmp(d->name, l->name)) {
        bg_oracle_fail(run, l, d ? "busgate names this api key differently" : "no descriptor");
        return;
    }
    if (l->version < BG_ORACLE_MAX_VERSIONS)
        run->seen[l->api_key][l->is_response] |= UINT64_C(1) << l->version;
    int bad = bg_oracle_roundtrip(run, d, l);
    if (run->defaults && bg_oracle_default(run, d, l))
        bad = -1;
    if (!bad)
        run->ok++;
}

/* Defaults mode: Kafka wrote every version it knows, so a version busgate
 * accepts and Kafka does not (a range drifted wider) is missing here. */
static void bg_oracle_coverage(bg_oracle_run_t *run)
{
    for (int k = 0; k <= BG_KAFKA_API_MAX_KEY; k++) {
        for (int r = 0; r < 2; r++) {
            const bg_kafka_msg_desc_t *d = bg_kafka_msg_desc((int16_t)k, r);
            for (int v = d ? d->valid_min : 1; d && v <= d->valid_max; v++) {
                if (v < BG_ORACLE_MAX_VERSIONS && (run->seen[k][r] >> v & 1))
                    continue;
                printf("MISMATCH %s v%d: busgate accepts it, Kafka has no such version\n", d->name,
                       v);
                run->bad++;
            }
        }
    }
}

/* Runs every line of path through the checks. 0, or -1 when the file
 * cannot be read or a line is malformed (reported on stderr). */
static int bg_oracle_file(bg_oracle_run_t *run, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "bg_kafka_codec_oracle: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    long no = 0;
    int res = 0;
    ssize_t n;
    while (res == 0 && (n = getline(&line, &cap, f)) > 0) {
        bg_oracle_line_t l = {0};
        no++;
        if (line[n - 1] == '\n')
            line[n - 1] = '\0';
        if (bg_oracle_parse(&l, line) == 0)
            bg_oracle_line(run, &l);
        else {
            fprintf(stderr, "bg_kafka_codec_oracle: %s:%ld: malformed line\n", path, no);
            res = -1;
        }
        free(l.body);
    }
    free(line);
    fclose(f);
    return res;
}

int main(int argc, char **argv)
{
    static bg_oracle_run_t run; /* static: the coverage bitmap is zeroed */
    if (argc == 2 && !strcmp(argv[1], "vectors")) {
        bg_oracle_print_vectors();
        return fflush(stdout) ? 2 : 0;
    }
    if (argc != 3 || (strcmp(argv[1], "check") && strcmp(argv[1], "defaults"))) {
        fprintf(stderr, "usage: bg_kafka_codec_oracle vectors | check FILE | defaults FILE\n");
        return 2;
    }
    run.defaults = !strcmp(argv[1], "defaults");
    if (bg_oracle_file(&run, argv[2]))
        return 2;
    if (run.ok + run.bad == 0) { /* an empty file would pass unseen */
        fprintf(stderr, "bg_kafka_codec_oracle: %s has no lines\n", argv[2]);
        return 2;
    }
    if (run.defaults)
        bg_oracle_coverage(&run);
    printf("busgate %s: %ld ok, %ld mismatched\n", argv[1], run.ok, run.bad);
    return run.bad ? 1 : 0;
}
