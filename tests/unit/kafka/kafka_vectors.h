/* The row type of the generated Kafka message vectors (kafka_vectors.inc,
 * from adapters/kafka/gen/gen_kafka_vectors.py): one encoded body per
 * message and version, with its decoded dump. Shared by the unit test
 * (test_kafka_vectors.c) and the codec oracle (tests/interop/kafka-codec). */
#ifndef BG_TEST_KAFKA_VECTORS_H
#define BG_TEST_KAFKA_VECTORS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name;
    int16_t api_key;
    uint8_t is_response;
    int16_t version;
    const uint8_t *bytes;
    size_t len;
    const char *dump;
} kv_vector_t;

#endif
