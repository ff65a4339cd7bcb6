/* A walk over a Kafka message body that stays inside a libevent buffer:
 * no copy of the message, no allocation, no tree. It answers one question the
 * fast path needs — which tagged fields does the top level of this body
 * carry? — so that a large Fetch response whose only possible rewrite is the
 * top-level NodeEndpoints field can be forwarded untouched when that field is
 * absent (the common case), instead of being linearised, decoded and
 * re-encoded.
 *
 * Driven by the same generated descriptors as the codec; record bytes are
 * skipped, never read. Untrusted input: every length is checked against what
 * is left of the body. Not thread-safe per buffer; no globals. */
#ifndef BG_KAFKA_SCAN_H
#define BG_KAFKA_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "adapters/kafka/kafka_msgs.h"

struct evbuffer;

/* Walks the body of message d at version that starts off bytes into buf and
 * is len bytes long. On success sets *tags to the set of top-level tagged
 * field numbers present (bit t for tag t < 64; bit 63 also stands for any
 * tag >= 63) and returns 0. Returns -1 when the body does not parse, is not
 * exactly len bytes, or nests too deep: the caller then takes the decoding
 * path, which reports the error properly. */
int bg_kafka_scan_top_tags(struct evbuffer *buf, size_t off, size_t len,
                           const bg_kafka_msg_desc_t *d, int16_t version, uint64_t *tags);

#endif
