/* Pre-validation of AMQP 0-9-1 frames, before any byte reaches rabbitmq-c.
 *
 * Why: Debian's rabbitmq-c 0.11 predates upstream fuzzing fixes — unbounded
 * field-table nesting (recursion, fixed in 0.14), undefined behaviour on
 * property-flag continuation words (0.17), undersized/oversized frames
 * (0.16/0.17) — and its table decoder does not check that a nested table or
 * an entry stays inside its parent's declared size. So busgate walks every
 * frame from a client (and, cheaply, from the upstream) per the AMQP 0-9-1
 * spec first, and refuses anything that is not exactly well-formed:
 *
 * - method frames: a known class/method (amqp_method.h's table, which
 *   includes connection.update-secret), every argument in order, every
 *   length inside the frame, no trailing bytes; connection-class methods only
 *   on channel 0, all others only on channels != 0;
 * - field tables and arrays (in arguments and in the headers property): sizes
 *   nest exactly (every entry ends inside its table, every nested table inside
 *   its parent), value types among t b B s u I i l L f d D S A T F V x,
 *   nesting depth <= limits.max_depth (the outermost table is depth 1),
 *   at most limits.max_entries table entries + array elements per frame;
 * - content header frames: channel != 0, class 60 (basic, the only content
 *   class in 0-9-1), weight 0, body_size <= limits.max_body_size, property
 *   flags without the continuation bit (bit 0) or the reserved bit 1, the
 *   property list exactly filling the rest of the frame;
 * - body frames: channel != 0;
 * - heartbeat frames: channel 0, empty payload.
 *
 * The frame itself (type, size, end octet) is bg_amqp_frame_peek's job.
 * Every refusal returns a negative bg_amqp_status_t and a short static reason
 * in *why (why may be NULL); BG_AMQP_OK otherwise. Pure and reentrant. */
#ifndef BG_AMQP_VALIDATE_H
#define BG_AMQP_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#include "adapters/amqp/amqp_frame.h"

typedef struct bg_amqp_limits_s {
    uint32_t max_depth;     /* nesting of tables/arrays; 1 = flat tables only */
    uint32_t max_entries;   /* table entries + array elements per frame */
    uint64_t max_body_size; /* content header body_size */
} bg_amqp_limits_t;

/* Defaults: depth 8 (RabbitMQ's own x-death header nests 4), 4096 entries
 * (bounds rabbitmq-c's per-frame allocation to ~160 KiB whatever frame_max),
 * body 128 MiB (RabbitMQ 3.10's max_message_size default). */
#define BG_AMQP_MAX_DEPTH_DEFAULT 8
#define BG_AMQP_MAX_ENTRIES_DEFAULT 4096
#define BG_AMQP_MAX_BODY_DEFAULT (128ull << 20)
#define BG_AMQP_LIMITS_DEFAULT                                                                     \
    {                                                                                              \
        BG_AMQP_MAX_DEPTH_DEFAULT, BG_AMQP_MAX_ENTRIES_DEFAULT, BG_AMQP_MAX_BODY_DEFAULT           \
    }

/* Validates a complete frame (from bg_amqp_frame_peek) by its type: method,
 * header, body or heartbeat as described above. lim NULL = defaults. */
int bg_amqp_validate_frame(const bg_amqp_frame_t *f, const bg_amqp_limits_t *lim,
                           const char **why) __attribute__((warn_unused_result));

/* Method frame payload p[0..len) on channel: class-id(2) method-id(2)
 * arguments. Errors: TRUNCATED, TRAILING, MALFORMED, LIMIT, UNKNOWN_METHOD,
 * CHANNEL. */
int bg_amqp_validate_method(uint16_t channel, const uint8_t *p, size_t len,
                            const bg_amqp_limits_t *lim, const char **why)
    __attribute__((warn_unused_result));

/* Content header payload p[0..len) on channel. Errors: TRUNCATED, TRAILING,
 * MALFORMED, TOO_LARGE (body_size), LIMIT (headers table), CHANNEL. */
int bg_amqp_validate_header(uint16_t channel, const uint8_t *p, size_t len,
                            const bg_amqp_limits_t *lim, const char **why)
    __attribute__((warn_unused_result));

/* Heartbeat frame: channel 0 and len 0, else CHANNEL / MALFORMED. */
int bg_amqp_validate_heartbeat(uint16_t channel, size_t len, const char **why)
    __attribute__((warn_unused_result));

/* Whether the broker may send a frame of this type now, on a connection
 * past its handshake (heartbeats aside: bg_amqp_validate_heartbeat). id:
 * a method frame's class and method (0 when it has fewer than 4 bytes);
 * open: channel is open on the broker leg (its channel.open went up, and
 * its close has not been confirmed); content: the channel's delivery, get-ok
 * or return in progress, 0 none, 1 content header next, 2 body frames
 * next. Refused: a method busgate does not know or a client's, a
 * connection method on a channel or another on channel 0, a frame on a
 * channel that is not open, content with no such command or out of order
 * (UNKNOWN_METHOD, CHANNEL, FRAME with *why). Pure. */
int bg_amqp_validate_server_frame(uint8_t type, uint16_t channel, uint32_t id, int open,
                                  int content, const char **why)
    __attribute__((warn_unused_result));

/* A basic-class property list: flags word(s) + properties, exactly filling
 * p[0..len) (the props slice of bg_amqp_content_header_t). Errors:
 * TRUNCATED, TRAILING, MALFORMED (continuation/reserved flag), LIMIT. */
int bg_amqp_validate_properties(const uint8_t *p, size_t len, const bg_amqp_limits_t *lim,
                                const char **why) __attribute__((warn_unused_result));

/* A field table's entries WITHOUT the 4-byte size prefix, exactly filling
 * p[0..len), at depth 1 — the form of an AMQPLAIN response. */
int bg_amqp_validate_table_body(const uint8_t *p, size_t len, const bg_amqp_limits_t *lim,
                                const char **why) __attribute__((warn_unused_result));

/* Finds key in a table body (as for bg_amqp_validate_table_body, which must
 * have accepted it). Returns 1 with *kind (the field type letter) and *value
 * (the raw value bytes after the type letter; for 'S'/'x' the string WITHOUT
 * its length, for 'F'/'A' the body WITHOUT its size) borrowed from p, or 0
 * when absent or on malformed input. The first matching entry wins. */
int bg_amqp_table_body_find(const uint8_t *p, size_t len, const char *key, uint8_t *kind,
                            bg_slice_t *value);

#endif
