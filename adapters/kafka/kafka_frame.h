/* Kafka framing and request/response headers. Pure: no I/O, no globals.
 *
 * A frame is int32 size (big-endian) + payload. The payload starts with a
 * request header (v1: api_key, api_version, correlation_id, client_id; v2 adds
 * a tagged-field section) or a response header (v0: correlation_id; v1 adds a
 * tagged-field section), then the body (kafka_codec.h).
 *
 * Header versions: requests use v2 iff the request version is flexible, else
 * v1; responses use v1 iff flexible, except ApiVersions responses, always v0
 * (so a client can read them before it knows the broker's versions).
 * ControlledShutdown v0's header v0 is not supported (nobody sends it).
 *
 * Slices in parsed headers borrow the payload buffer. */
#ifndef BG_KAFKA_FRAME_H
#define BG_KAFKA_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "adapters/kafka/kafka_codec.h"
#include "broker/bytes.h"

/* Looks at the first bytes of a stream. Returns the complete frame length
 * including the 4-byte prefix (>0) when p[0..avail) holds a whole frame;
 * 0 when more bytes are needed (*size is set once the prefix is in);
 * -1 when the declared size is negative or larger than max (close the
 * connection: the stream cannot be resynchronised). */
int64_t bg_kafka_frame_peek(const uint8_t *p, size_t avail, uint32_t max, uint32_t *size);

typedef struct bg_kafka_req_hdr_s {
    int16_t api_key;
    int16_t api_version;
    int32_t correlation_id;
    bg_slice_t client_id; /* borrowed; len -1 = null. Classic int16 string even in v2 */
    bg_slice_t tagged;    /* v2: raw tagged section (count + fields); v1: {NULL, 0} */
    uint8_t hdr_version;  /* 1 or 2 */
    uint32_t err_offset;  /* after a failed parse: where in the payload reading stopped */
} bg_kafka_req_hdr_t;

/* Request header version for an api key and version: 2 when the request
 * version is flexible, else 1; -1 for an unknown api key. Versions beyond
 * validVersions still get an answer (flexibility is "N+"), so a too-new
 * request can be parsed far enough to refuse it properly. */
int bg_kafka_req_hdr_version(int16_t api_key, int16_t api_version);
/* Response header version: 1 when flexible, else 0; ApiVersions always 0;
 * -1 for an unknown api key. */
int bg_kafka_resp_hdr_version(int16_t api_key, int16_t api_version);

/* Parses the request header at the start of payload p[0..len) (the frame
 * without its size prefix). Returns the body offset (>0), or a negative
 * bg_kafka_status_t with *why set (why may be NULL):
 * BG_KAFKA_ERR_UNKNOWN_API (api_key, api_version and correlation_id are
 * still filled in, so the caller can answer or log), TRUNCATED, MALFORMED;
 * h->err_offset is then where reading stopped (0 for an unknown api key). */
int bg_kafka_req_hdr_parse(const uint8_t *p, size_t len, bg_kafka_req_hdr_t *h, const char **why)
    __attribute__((warn_unused_result));

/* Parses a response header of version hdr_version (0 or 1, from the request
 * it answers) at the start of payload p[0..len). Sets *correlation_id and,
 * when tagged != NULL, the raw tagged section (v1). Returns the body offset
 * (>0) or a negative status with *why set. */
int bg_kafka_resp_hdr_parse(const uint8_t *p, size_t len, int hdr_version, int32_t *correlation_id,
                            bg_slice_t *tagged, const char **why)
    __attribute__((warn_unused_result));

/* Appends a request header as h->hdr_version says; v2 writes h->tagged when
 * non-empty, else an empty tagged section. Errors show in wr->failed. */
void bg_kafka_req_hdr_write(bg_wr_t *wr, const bg_kafka_req_hdr_t *h);
/* Appends a response header of hdr_version (0 or 1; v1 with an empty tagged section). */
void bg_kafka_resp_hdr_write(bg_wr_t *wr, int hdr_version, int32_t correlation_id);

/* Frame helpers: begin reserves the size prefix and returns its offset; end
 * fills it with the bytes written since. */
static inline size_t bg_kafka_frame_begin(bg_wr_t *wr)
{
    return bg_wr_reserve_i32(wr);
}
static inline void bg_kafka_frame_end(bg_wr_t *wr, size_t off)
{
    bg_wr_patch_i32(wr, off, (int32_t)(wr->len - off - 4));
}

#endif
