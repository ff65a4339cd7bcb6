/* Fuzz target: the ConsumerProtocolSubscription reader (kafka_subscription.c),
 * which busgate runs on the protocol metadata of every JoinGroup with
 * protocol type "consumer". Input: the metadata bytes. Properties: an
 * accepted subscription yields exactly its counted names, each inside the
 * input; one of versions 0-3 ends with its last field, so the same bytes
 * less the last one are refused. */
#include <stdint.h>
#include <stdlib.h>

#include "adapters/kafka/kafka_subscription.h"

typedef struct {
    const uint8_t *start, *end;
    int32_t calls;
} bg_fuzz_sub_t;

static void bg_fuzz_name(void *arg, bg_slice_t name, int owned)
{
    bg_fuzz_sub_t *c = arg;
    if (name.len < 0 || (owned != 0 && owned != 1))
        abort();
    if (name.len > 0 && (name.p < c->start || name.p + name.len > c->end))
        abort();
    c->calls++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > INT32_MAX)
        return 0;
    bg_slice_t meta = {data, (int32_t)size};
    bg_kafka_subscription_t s;
    const char *why = NULL;
    if (bg_kafka_subscription_parse(meta, &s, &why) != 0) {
        if (!why)
            abort();
        return 0;
    }
    bg_fuzz_sub_t c = {data, data + size, 0};
    if (bg_kafka_subscription_each(&s, bg_fuzz_name, &c) != c.calls ||
        c.calls != s.ntopics + s.nowned || s.version < 0 ||
        s.ntopics > BG_KAFKA_SUBSCRIPTION_MAX_TOPICS || s.nowned > BG_KAFKA_SUBSCRIPTION_MAX_TOPICS)
        abort();
    if (s.version <= 3 && size > 0) {
        bg_kafka_subscription_t t;
        meta.len--;
        if (bg_kafka_subscription_parse(meta, &t, &why) == 0)
            abort();
    }
    return 0;
}
