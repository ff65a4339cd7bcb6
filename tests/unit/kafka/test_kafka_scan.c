/* The in-buffer scan of response bodies (kafka_scan.c): it must read a
 * body exactly as the codec does, or a response it calls untouched could
 * carry what busgate would have rewritten. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "adapters/kafka/kafka_msgs.h"
#include "adapters/kafka/kafka_scan.h"

/* The scanner reads tag numbers as the codec does: a varint whose fifth
 * byte is above 0x0f is an error (the decoding path then reports it), not
 * a tag number the client would read differently. */
static void test_scan_varint_as_codec(void **state)
{
    (void)state;
    const bg_kafka_msg_desc_t *d = bg_kafka_msg_desc(BG_KAFKA_API_PRODUCE, 1);
    /* Produce response v10: no responses, throttle 0, one tagged field. */
    static const uint8_t bad[] = {0x01, 0, 0, 0, 0, 0x01, 0x80, 0x80, 0x80, 0x80, 0x10, 0x00};
    static const uint8_t ok[] = {0x01, 0, 0, 0, 0, 0x01, 0x80, 0x80, 0x80, 0x80, 0x0f, 0x00};
    struct evbuffer *b = evbuffer_new();
    uint64_t tags = 0;
    evbuffer_add(b, bad, sizeof bad);
    assert_int_equal(bg_kafka_scan_top_tags(b, 0, sizeof bad, d, 10, &tags), -1);
    evbuffer_drain(b, sizeof bad);
    evbuffer_add(b, ok, sizeof ok);
    assert_int_equal(bg_kafka_scan_top_tags(b, 0, sizeof ok, d, 10, &tags), 0);
    assert_true(tags & (1ull << 63)); /* tag 0xf0000000: beyond 62 */
    evbuffer_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scan_varint_as_codec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
