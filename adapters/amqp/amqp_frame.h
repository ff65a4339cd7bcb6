/* AMQP 0-9-1 framing. Pure: bytes in, values out; no I/O, no globals.
 *
 * A connection starts with the 8-byte protocol header "AMQP\0\0\x09\x01"
 * from the client. After it, both directions carry frames:
 *
 *   type(1) channel(2) size(4) payload(size) frame-end(0xCE)
 *
 * with type method(1), content header(2), content body(3) or heartbeat(8).
 * frame_max, as negotiated by connection.tune/tune-ok, is meant to bound the
 * whole frame (7-byte header + payload + end octet), and peers send no more;
 * RabbitMQ, though, refuses only a PAYLOAD larger than frame_max (its reader
 * allows 8 bytes more, FRAME_SIZE_FUDGE, for clients that get it wrong), and
 * so does busgate, which relays such a frame as it is. Before tune both peers
 * accept frames up to 4096 bytes (BG_AMQP_FRAME_MIN_SIZE), checked the same
 * way. busgate's client-facing side must accept a larger connection.start-ok
 * before tune, because the client's password is its JWT: use
 * BG_AMQP_PRETUNE_CLIENT_MAX there, and BG_AMQP_FRAME_MIN_SIZE toward the
 * upstream.
 *
 * Parse results follow the house rule: >0 bytes (complete), 0 need more,
 * <0 a bg_amqp_status_t with *why set to a short static reason.
 *
 * Everything returned by a parser (payload pointers, slices) borrows the
 * caller's buffer: valid while that buffer lives unmodified. Writers append
 * to a bg_wr_t; errors show in its sticky `failed` flag.
 *
 * Thread-safety: all functions are reentrant (no shared state). */
#ifndef BG_AMQP_FRAME_H
#define BG_AMQP_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "broker/bytes.h"

/* Status codes of every bg_amqp_ codec function (frame, validate, method). */
typedef enum {
    BG_AMQP_OK = 0,
    BG_AMQP_ERR_TRUNCATED = -1,      /* a field runs past the end of its frame/table/array */
    BG_AMQP_ERR_MALFORMED = -2,      /* bad value: unknown field type, weight != 0, a flag */
    BG_AMQP_ERR_FRAME = -3,          /* bad frame: end octet, unknown type, empty/short payload */
    BG_AMQP_ERR_TOO_LARGE = -4,      /* frame over the caller's max, body_size over the limit */
    BG_AMQP_ERR_LIMIT = -5,          /* table nesting or entry count over the limits */
    BG_AMQP_ERR_UNKNOWN_METHOD = -6, /* class/method id busgate does not know */
    BG_AMQP_ERR_CHANNEL = -7,        /* frame on the wrong channel (e.g. heartbeat on ch 1) */
    BG_AMQP_ERR_HEADER = -8,         /* bytes before the first frame are not "AMQP\0\0\x09\x01" */
    BG_AMQP_ERR_ENCODE = -9,         /* value cannot be encoded (string > 255, writer failed) */
    BG_AMQP_ERR_NOMEM = -10,         /* allocation failed while decoding */
    BG_AMQP_ERR_AUTH = -11,          /* start-ok response unusable (mechanism, format, sizes) */
    BG_AMQP_ERR_TRAILING = -12,      /* bytes after the last argument or property */
} bg_amqp_status_t;

/* Frame types (AMQP 0-9-1 constants). */
enum {
    BG_AMQP_FRAME_METHOD = 1,
    BG_AMQP_FRAME_HEADER = 2,
    BG_AMQP_FRAME_BODY = 3,
    BG_AMQP_FRAME_HEARTBEAT = 8,
};

#define BG_AMQP_FRAME_END 0xCE
#define BG_AMQP_FRAME_HEADER_SIZE 7 /* type + channel + size */
#define BG_AMQP_FRAME_OVERHEAD 8    /* header + end octet */
/* Both peers accept frames of this size before tune (spec frame-min-size). */
#define BG_AMQP_FRAME_MIN_SIZE 4096
/* Pre-tune bound on frames FROM CLIENTS: a start-ok carries a JWT of up to
 * 16 KiB (BG_AMQP_SASL_MAX_PASSWORD) plus client properties. */
#define BG_AMQP_PRETUNE_CLIENT_MAX 32768
/* RabbitMQ's default frame_max, channel_max, heartbeat. */
#define BG_AMQP_DEFAULT_FRAME_MAX 131072
#define BG_AMQP_DEFAULT_CHANNEL_MAX 2047
#define BG_AMQP_DEFAULT_HEARTBEAT 60

#define BG_AMQP_PROTOCOL_HEADER "AMQP\x00\x00\x09\x01"
#define BG_AMQP_PROTOCOL_HEADER_LEN 8

/* One frame as seen by bg_amqp_frame_peek. payload borrows the input. */
typedef struct bg_amqp_frame_s {
    uint8_t type;
    uint16_t channel;
    uint32_t size;          /* payload bytes */
    const uint8_t *payload; /* size bytes; NULL until the frame is complete */
} bg_amqp_frame_t;

/* Checks the protocol header a client sends first. Returns 8 when p starts
 * with "AMQP\0\0\x09\x01" (consume 8 bytes), 0 while the avail bytes seen so
 * far are a prefix of it, or BG_AMQP_ERR_HEADER (with *why) as soon as they
 * cannot be: then send bg_amqp_protocol_header_write's bytes and close, as
 * RabbitMQ does (the client learns the version busgate speaks). why may be NULL. */
int bg_amqp_protocol_header_check(const uint8_t *p, size_t avail, const char **why);

/* Appends the 8-byte AMQP 0-9-1 protocol header. */
void bg_amqp_protocol_header_write(bg_wr_t *wr);

/* Looks at the start of a stream of frames in p[0..avail).
 * max is the negotiated frame_max or a pre-tune bound, and bounds the payload
 * as RabbitMQ does: a whole frame is at most max + 8 bytes. Values below
 * BG_AMQP_FRAME_MIN_SIZE count as BG_AMQP_FRAME_MIN_SIZE (frame_max 0, "no
 * limit", must be replaced by the caller's own bound before calling).
 * Returns the whole frame length (>0) when complete: f is filled, payload
 * included; 0 when more bytes are needed (f->type/channel/size are filled once
 * the 7 header bytes are in, so the caller knows how much to wait for); or a
 * negative status with *why (why may be NULL), detected as early as possible:
 * BG_AMQP_ERR_FRAME (unknown type, end octet not 0xCE), BG_AMQP_ERR_TOO_LARGE.
 * After an error the stream cannot be resynchronised: close the connection
 * (RabbitMQ sends connection.close 501 FRAME_ERROR first). */
int64_t bg_amqp_frame_peek(const uint8_t *p, size_t avail, uint32_t max, bg_amqp_frame_t *f,
                           const char **why) __attribute__((warn_unused_result));

/* Frame writer: begin appends type and channel and reserves the size field,
 * returning its offset; the caller appends the payload; end fills the size
 * and appends the end octet. */
size_t bg_amqp_frame_begin(bg_wr_t *wr, uint8_t type, uint16_t channel);
void bg_amqp_frame_end(bg_wr_t *wr, size_t size_off);

/* Appends one whole frame with the given payload (copied). */
void bg_amqp_frame_write(bg_wr_t *wr, uint8_t type, uint16_t channel, const void *payload,
                         size_t len);

/* Appends a heartbeat frame (channel 0, empty payload). */
void bg_amqp_heartbeat_write(bg_wr_t *wr);

/* ---- content header frames ---- */

/* A parsed content header payload:
 *   class-id(2) weight(2)=0 body-size(8) property-flags(2) property-list
 * props is the raw property flags + list, borrowed from the payload, so a
 * session can re-emit the header with another body size (masking changes it)
 * without decoding the properties. */
typedef struct bg_amqp_content_header_s {
    uint16_t class_id;
    uint64_t body_size;
    uint16_t flags;   /* first property-flags word (copy of props.p[0..2)) */
    bg_slice_t props; /* flags + property list; borrowed */
} bg_amqp_content_header_t;

/* Parses a content header payload (the frame's payload, size len). Only the
 * fixed part is checked here (length >= 14, weight 0); run
 * bg_amqp_validate_header (amqp_validate.h) first on untrusted bytes.
 * Returns BG_AMQP_OK, or BG_AMQP_ERR_TRUNCATED / MALFORMED with *why. */
int bg_amqp_content_header_parse(const uint8_t *payload, size_t len, bg_amqp_content_header_t *h,
                                 const char **why) __attribute__((warn_unused_result));

/* Appends a whole content header frame on channel from h (class_id,
 * body_size, props; h->flags is ignored: props carries the flags). */
void bg_amqp_content_header_write(bg_wr_t *wr, uint16_t channel,
                                  const bg_amqp_content_header_t *h);

/* AMQP reply code a peer expects for a status when busgate closes the
 * connection over it (501 FRAME_ERROR, 502 SYNTAX_ERROR, 503 COMMAND_INVALID,
 * 504 CHANNEL_ERROR, 505 UNEXPECTED_FRAME, 506 RESOURCE_ERROR,
 * 540 NOT_IMPLEMENTED, 541 INTERNAL_ERROR; 403 ACCESS_REFUSED for AUTH). */
uint16_t bg_amqp_status_reply_code(int status);

/* The same for a method frame that does not decode (a status from
 * bg_amqp_method_decode). RabbitMQ matches a method's arguments against its
 * frame as a whole: a frame too short for them (TRUNCATED) or with bytes
 * after them (TRAILING) is 501 FRAME_ERROR ("cannot decode"), not 502. */
uint16_t bg_amqp_method_status_reply_code(int status);

#endif
