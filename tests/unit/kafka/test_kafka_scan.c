/* The in-buffer scan of response bodies (kafka_scan.c): it must read a
 * body exactly as the codec does, or a response it calls untouched could
 * carry what busgate would have rewritten. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "adapters/kafka/kafka_msgs.h"
#include "adapters/kafka/kafka_scan.h"

#include "kafka_long_name.h"
#include "kafka_vectors.h"
#include "kafka_vectors.inc"

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

/* Scans len bytes of p, placed at offset 3 of a buffer that holds more
 * after them (as the next frame would be), as message d at version. */
static int scan(const bg_kafka_msg_desc_t *d, int16_t version, const uint8_t *p, size_t len,
                size_t extra, uint64_t *tags)
{
    static const uint8_t junk[] = {0x01, 0x01, 0x01};
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, junk, sizeof junk);
    evbuffer_add(b, p, len + extra);
    evbuffer_add(b, junk, sizeof junk);
    int rc = bg_kafka_scan_top_tags(b, sizeof junk, len, d, version, tags);
    evbuffer_free(b);
    return rc;
}

/* Every generated vector (every message at every version, every field
 * present, tagged ones included) scans whole, naming exactly the top-level
 * tags it carries; every strict prefix and the vector with one byte more
 * are refused, as the codec refuses them (a truncated body, bytes after the
 * body). */
static void test_scan_reads_every_vector(void **state)
{
    (void)state;
    size_t n = sizeof kv_vectors / sizeof kv_vectors[0], flexible = 0;
    for (size_t k = 0; k < n; k++) {
        const kv_vector_t *t = &kv_vectors[k];
        const bg_kafka_msg_desc_t *d = bg_kafka_msg_desc(t->api_key, t->is_response);
        assert_non_null(d);
        uint64_t want = 0, tags = 0;
        if (t->version >= d->flex_min) {
            flexible++;
            for (uint16_t i = 0; i < d->body->nfields; i++) {
                const bg_kafka_field_desc_t *f = &d->body->fields[i];
                if (f->tag >= 0 && t->version >= f->tag_min && t->version <= f->tag_max)
                    want |= 1ull << (f->tag < 63 ? f->tag : 63);
            }
        }
        if (scan(d, t->version, t->bytes, t->len, 0, &tags) != 0 || tags != want)
            fail_msg("%s v%d: not scanned whole (tags %#llx, want %#llx)", t->name, t->version,
                     (unsigned long long)tags, (unsigned long long)want);
        uint8_t *more = malloc(t->len + 1);
        memcpy(more, t->bytes, t->len);
        more[t->len] = 0;
        if (scan(d, t->version, more, t->len + 1, 0, &tags) != -1)
            fail_msg("%s v%d: a byte after the body was scanned", t->name, t->version);
        for (size_t len = 0; len < t->len; len++)
            if (scan(d, t->version, more, len, t->len + 1 - len, &tags) != -1)
                fail_msg("%s v%d: prefix of %zu/%zu bytes scanned", t->name, t->version, len,
                         t->len);
        free(more);
    }
    assert_true(flexible >= 300);
}

/* Bodies the codec refuses are refused by the scan too (a response it
 * passed would be forwarded untouched, where the codec would have closed
 * the connection), and one the codec reads is read. */
static void test_scan_refuses_what_the_codec_refuses(void **state)
{
    (void)state;
    const bg_kafka_msg_desc_t *produce = bg_kafka_msg_desc(BG_KAFKA_API_PRODUCE, 1);
    uint64_t tags;
    /* Produce v10 response: one topic, null name (compact 0): not nullable */
    static const uint8_t null_name[] = {0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    assert_int_equal(scan(produce, 10, null_name, sizeof null_name, 0, &tags), -1);
    /* Produce v10 response: a null responses array (not nullable) */
    static const uint8_t null_array[] = {0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    assert_int_equal(scan(produce, 10, null_array, sizeof null_array, 0, &tags), -1);
    /* Produce v8 response (classic): a topic name of length -2 */
    static const uint8_t bad_len[] = {0x00, 0x00, 0x00, 0x01, 0xff, 0xfe, 0x00, 0x00,
                                      0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    assert_int_equal(scan(produce, 8, bad_len, sizeof bad_len, 0, &tags), -1);
    /* DescribeTopicPartitions v0 request, Cursor marker 0: present (Kafka
     * reads any marker >= 0 so), its topic name and partition read */
    const bg_kafka_msg_desc_t *dtp = bg_kafka_msg_desc(BG_KAFKA_API_DESCRIBE_TOPIC_PARTITIONS, 0);
    static const uint8_t cursor0[] = {0x02, 0x02, 0x61, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00,
                                      0x02, 0x74, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00};
    assert_int_equal(scan(dtp, 0, cursor0, sizeof cursor0, 0, &tags), 0);
}

/* A compact string of more than 32767 bytes is refused, as the codec and
 * Kafka's readers refuse it; 32767 bytes scan. */
static void test_scan_compact_string_length_bound(void **state)
{
    (void)state;
    const bg_kafka_msg_desc_t *produce = bg_kafka_msg_desc(BG_KAFKA_API_PRODUCE, 1);
    static uint8_t b[32800];
    uint64_t tags;
    for (int32_t n = 32767; n <= 32768; n++) {
        /* Produce v10 response: one topic named by n bytes, no partitions */
        static const uint8_t tail[] = {0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
        size_t k = kt_long_name_body(b, n, tail, sizeof tail);
        assert_int_equal(scan(produce, 10, b, k, 0, &tags), n == 32767 ? 0 : -1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scan_varint_as_codec),
        cmocka_unit_test(test_scan_reads_every_vector),
        cmocka_unit_test(test_scan_refuses_what_the_codec_refuses),
        cmocka_unit_test(test_scan_compact_string_length_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
