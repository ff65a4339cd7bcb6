/* ConsumerProtocolSubscription reader (kafka_subscription.h). Every read goes
 * through bg_rd_t; every array count is checked against the bytes left (and
 * the name arrays against BG_KAFKA_SUBSCRIPTION_MAX_TOPICS) before its
 * elements are read, so a declared size never makes work the bytes do not
 * carry. */
#include <string.h>

#include "adapters/kafka/kafka_subscription.h"

#define BG_KAFKA_SUB__WHY(x) ("ConsumerProtocolSubscription: " x)
#define BG_KAFKA_SUB__STR(x) #x
#define BG_KAFKA_SUB__XSTR(x) BG_KAFKA_SUB__STR(x)

static const char bg_kafka_subscription__truncated[] = BG_KAFKA_SUB__WHY("truncated");

/* A non-nullable string (int16 length), as a topic name is. */
static bg_slice_t bg_kafka_subscription__name(bg_rd_t *rd)
{
    int16_t n = bg_rd_i16(rd);
    if (n < 0) {
        bg_rd_fail(rd, n == -1 ? BG_KAFKA_SUB__WHY("null topic name")
                               : BG_KAFKA_SUB__WHY("negative string length"));
        return (bg_slice_t){NULL, 0};
    }
    return bg_rd_bytes(rd, n);
}

/* Skips a nullable string or bytes value of length n (-1: null). */
static void bg_kafka_subscription__skip(bg_rd_t *rd, int32_t n)
{
    if (rd->err)
        return;
    if (n < -1)
        bg_rd_fail(rd, BG_KAFKA_SUB__WHY("negative length"));
    else if (n > 0)
        bg_rd_skip(rd, (size_t)n);
}

/* An array count: not null (no array here is nullable), at most max, and
 * no more elements than the bytes left hold at min bytes each. */
static int32_t bg_kafka_subscription__count(bg_rd_t *rd, int32_t max, size_t min)
{
    int32_t n = bg_rd_i32(rd);
    if (rd->err)
        return 0;
    if (n < 0)
        return bg_rd_fail(rd, n == -1 ? BG_KAFKA_SUB__WHY("null array")
                                      : BG_KAFKA_SUB__WHY("negative array count"));
    if (n > max)
        return bg_rd_fail(rd, BG_KAFKA_SUB__WHY("more than " BG_KAFKA_SUB__XSTR(
                                  BG_KAFKA_SUBSCRIPTION_MAX_TOPICS) " topics"));
    if ((size_t)n > bg_rd_left(rd) / min)
        return bg_rd_fail(rd, bg_kafka_subscription__truncated);
    return n;
}

/* One owned_partitions entry: its topic; the partitions are skipped. */
static bg_slice_t bg_kafka_subscription__owned(bg_rd_t *rd)
{
    bg_slice_t name = bg_kafka_subscription__name(rd);
    int32_t np = bg_kafka_subscription__count(rd, INT32_MAX, 4);
    bg_rd_skip(rd, (size_t)np * 4);
    return name;
}

static bg_slice_t bg_kafka_subscription__since(const uint8_t *start, const bg_rd_t *rd)
{
    return (bg_slice_t){start, (int32_t)(rd->p - start)};
}

int bg_kafka_subscription_parse(bg_slice_t meta, bg_kafka_subscription_t *out, const char **why)
{
    memset(out, 0, sizeof *out);
    if (meta.len < 0) {
        *why = BG_KAFKA_SUB__WHY("null metadata");
        return -1;
    }
    bg_rd_t rd;
    bg_rd_init(&rd, meta.p, (size_t)meta.len);
    int16_t ver = bg_rd_i16(&rd);
    if (!rd.err && ver < 0)
        bg_rd_fail(&rd, BG_KAFKA_SUB__WHY("negative version"));
    out->version = ver;
    out->ntopics = bg_kafka_subscription__count(&rd, BG_KAFKA_SUBSCRIPTION_MAX_TOPICS, 2);
    const uint8_t *start = rd.p;
    for (int32_t i = 0; i < out->ntopics && !rd.err; i++)
        bg_kafka_subscription__name(&rd);
    out->topics = bg_kafka_subscription__since(start, &rd);
    bg_kafka_subscription__skip(&rd, bg_rd_i32(&rd)); /* user_data */
    if (ver >= 1) {
        out->nowned = bg_kafka_subscription__count(&rd, BG_KAFKA_SUBSCRIPTION_MAX_TOPICS, 6);
        start = rd.p;
        for (int32_t i = 0; i < out->nowned && !rd.err; i++)
            bg_kafka_subscription__owned(&rd);
        out->owned = bg_kafka_subscription__since(start, &rd);
    }
    if (ver >= 2)
        bg_rd_i32(&rd); /* generation_id */
    if (ver >= 3)
        bg_kafka_subscription__skip(&rd, bg_rd_i16(&rd)); /* rack_id */
    if (!rd.err && ver <= 3 && bg_rd_left(&rd) > 0)
        bg_rd_fail(&rd, BG_KAFKA_SUB__WHY("bytes after the last field"));
    if (!rd.err)
        return 0;
    /* bytes.h's own reasons say "truncated" (a read past the end). */
    *why = strncmp(rd.why, "ConsumerProtocolSubscription", 28) == 0
               ? rd.why
               : bg_kafka_subscription__truncated;
    memset(out, 0, sizeof *out);
    return -1;
}

int32_t bg_kafka_subscription_each(const bg_kafka_subscription_t *s, bg_kafka_subscription_fn fn,
                                   void *arg)
{
    bg_rd_t rd;
    bg_rd_init(&rd, s->topics.p, (size_t)s->topics.len);
    for (int32_t i = 0; i < s->ntopics; i++)
        fn(arg, bg_kafka_subscription__name(&rd), 0);
    bg_rd_init(&rd, s->owned.p, (size_t)s->owned.len);
    for (int32_t i = 0; i < s->nowned; i++)
        fn(arg, bg_kafka_subscription__owned(&rd), 1);
    return s->ntopics + s->nowned;
}
