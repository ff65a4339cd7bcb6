/* AMQP 0-9-1 methods: the method table, decode/encode on top of rabbitmq-c's
 * amqp_framing.h, connection.update-secret (absent from rabbitmq-c 0.11), the
 * builders for what busgate sends, and the start-ok credential parser.
 *
 * Decoded methods ARE rabbitmq-c's structs (amqp_basic_publish_t, ...,
 * selected by id = AMQP_*_METHOD from <amqp_framing.h>), plus
 * bg_amqp_update_secret_t for BG_AMQP_CONNECTION_UPDATE_SECRET. Their
 * amqp_bytes_t strings point INTO the frame payload that was decoded, and
 * their tables/structs live in a bg_amqp_arena_t: a decoded method is valid
 * while both the payload buffer and the arena (until reset/free) live.
 * Reset the arena after each frame is handled.
 *
 * Pure: no I/O, no globals; an arena and what was decoded into it belong to
 * one thread (the connection's worker). */
#ifndef BG_AMQP_METHOD_H
#define BG_AMQP_METHOD_H

#include <amqp.h>
#include <amqp_framing.h>
#include <stddef.h>
#include <stdint.h>

#include "adapters/amqp/amqp_frame.h"
#include "adapters/amqp/amqp_validate.h"

/* Method id = class << 16 | method, the same numbers as amqp_method_number_t. */
#define BG_AMQP_METHOD_ID(cls, meth) (((uint32_t)(cls) << 16) | (uint32_t)(meth))
#define BG_AMQP_CONNECTION_UPDATE_SECRET BG_AMQP_METHOD_ID(10, 70)
#define BG_AMQP_CONNECTION_UPDATE_SECRET_OK BG_AMQP_METHOD_ID(10, 71)

/* Reply codes busgate sends (AMQP 0-9-1 constants). */
enum {
    BG_AMQP_REPLY_SUCCESS = 200,
    BG_AMQP_CONNECTION_FORCED = 320,
    BG_AMQP_ACCESS_REFUSED = 403,
    BG_AMQP_NOT_FOUND = 404,
    BG_AMQP_PRECONDITION_FAILED = 406,
    BG_AMQP_FRAME_ERROR = 501,
    BG_AMQP_SYNTAX_ERROR = 502,
    BG_AMQP_COMMAND_INVALID = 503,
    BG_AMQP_CHANNEL_ERROR = 504,
    BG_AMQP_UNEXPECTED_FRAME = 505,
    BG_AMQP_RESOURCE_ERROR = 506,
    BG_AMQP_NOT_ALLOWED = 530,
    BG_AMQP_NOT_IMPLEMENTED = 540,
    BG_AMQP_INTERNAL_ERROR = 541,
};

/* ---- method table ---- */

/* Who may send a method, and whether content frames follow it. */
enum {
    BG_AMQP_M_CLIENT = 1,  /* client -> server */
    BG_AMQP_M_SERVER = 2,  /* server -> client */
    BG_AMQP_M_CONTENT = 4, /* followed by a content header + bodies */
};

typedef struct bg_amqp_method_info_s {
    uint32_t id;      /* BG_AMQP_METHOD_ID(class, method) */
    const char *name; /* "basic.publish" (for logs and audit) */
    const char *args; /* argument signature, see amqp_method_table.c */
    uint8_t flags;    /* BG_AMQP_M_* */
} bg_amqp_method_info_t;

/* The entry for a method id, or NULL when busgate does not know it (which
 * validation then refuses). Static storage; thread-safe. */
const bg_amqp_method_info_t *bg_amqp_method_info(uint32_t id);

/* ---- arena (rabbitmq-c's pool) ---- */

typedef struct bg_amqp_arena_s {
    amqp_pool_t pool;
} bg_amqp_arena_t;

/* Initialises an empty arena; allocates nothing yet. */
void bg_amqp_arena_init(bg_amqp_arena_t *a);
/* Invalidates everything decoded into a; keeps pages for reuse (per frame). */
void bg_amqp_arena_reset(bg_amqp_arena_t *a);
/* Frees all memory; a may be initialised again. */
void bg_amqp_arena_free(bg_amqp_arena_t *a);

/* ---- decode / encode ---- */

typedef struct bg_amqp_update_secret_s {
    amqp_bytes_t new_secret; /* longstr: the client's new JWT */
    amqp_bytes_t reason;     /* shortstr */
} bg_amqp_update_secret_t;

typedef struct bg_amqp_method_s {
    uint32_t id; /* class << 16 | method */
    const bg_amqp_method_info_t *info;
    void *decoded; /* the rabbitmq-c struct for id (NULL for update-secret-ok) */
} bg_amqp_method_t;

/* Decodes a method frame f (type BG_AMQP_FRAME_METHOD, complete, from
 * bg_amqp_frame_peek). It first runs bg_amqp_validate_method(f->channel, ...)
 * with lim (NULL = defaults), so rabbitmq-c never sees bytes the validator
 * refused. Returns BG_AMQP_OK with *m filled (see the lifetime note at the
 * top: strings borrow f->payload, structs live in a), or a negative status
 * with *why. */
int bg_amqp_method_decode(const bg_amqp_frame_t *f, const bg_amqp_limits_t *lim,
                          bg_amqp_arena_t *a, bg_amqp_method_t *m, const char **why)
    __attribute__((warn_unused_result));

/* Bound on the arguments of one encoded method. */
#define BG_AMQP_ENCODE_MAX (1u << 20)

/* Appends one whole method frame on channel: id and the matching struct
 * (rabbitmq-c's, or bg_amqp_update_secret_t; NULL for methods without
 * arguments). Returns BG_AMQP_OK, or BG_AMQP_ERR_UNKNOWN_METHOD /
 * BG_AMQP_ERR_ENCODE (struct not encodable, e.g. a shortstr > 255 bytes, or
 * more than BG_AMQP_ENCODE_MAX bytes, or the writer failed); on error the
 * writer is left as it was before the call unless wr->failed is set.
 * It does not validate what it writes: tests check that the builders'
 * output passes bg_amqp_validate_frame. */
int bg_amqp_method_encode(bg_wr_t *wr, uint16_t channel, uint32_t id, const void *decoded,
                          const char **why) __attribute__((warn_unused_result));

/* ---- builders for what busgate sends (each appends one whole frame) ---- */

/* Capabilities in connection.start's server-properties and start-ok's
 * client-properties. BG_AMQP_CAPS_ALL is what RabbitMQ 3.10 advertises. */
enum {
    BG_AMQP_CAP_PUBLISHER_CONFIRMS = 1 << 0,
    BG_AMQP_CAP_EXCHANGE_EXCHANGE_BINDINGS = 1 << 1,
    BG_AMQP_CAP_BASIC_NACK = 1 << 2,
    BG_AMQP_CAP_CONSUMER_CANCEL_NOTIFY = 1 << 3,
    BG_AMQP_CAP_CONNECTION_BLOCKED = 1 << 4,
    BG_AMQP_CAP_CONSUMER_PRIORITIES = 1 << 5,
    BG_AMQP_CAP_AUTHENTICATION_FAILURE_CLOSE = 1 << 6,
    BG_AMQP_CAP_PER_CONSUMER_QOS = 1 << 7,
    BG_AMQP_CAP_DIRECT_REPLY_TO = 1 << 8,
    BG_AMQP_CAPS_ALL = (1 << 9) - 1,
};

/* The capability bits set to true in a peer's properties table (its
 * "capabilities" entry); 0 when there is none. E.g. on a client's start-ok
 * client_properties, to advertise the same upstream. */
uint32_t bg_amqp_caps_from_properties(const amqp_table_t *props);

/* 1 when connection.start's mechanisms (a space-separated list, from the
 * broker) name mech exactly: "XPLAIN" or "PLAINX" is no offer of PLAIN. */
int bg_amqp_start_offers(const amqp_bytes_t *mechanisms, const char *mech);

/* connection.start (version 0-9): server-properties {capabilities (caps),
 * product, version, platform "busgate", cluster_name when non-NULL},
 * mechanisms "PLAIN AMQPLAIN", locales "en_US". product/version NULL =
 * "busgate" / "0". */
int bg_amqp_write_connection_start(bg_wr_t *wr, uint32_t caps, const char *product,
                                   const char *version, const char *cluster_name)
    __attribute__((warn_unused_result));

/* connection.tune / tune-ok. */
int bg_amqp_write_connection_tune(bg_wr_t *wr, uint16_t channel_max, uint32_t frame_max,
                                  uint16_t heartbeat) __attribute__((warn_unused_result));
int bg_amqp_write_connection_tune_ok(bg_wr_t *wr, uint16_t channel_max, uint32_t frame_max,
                                     uint16_t heartbeat) __attribute__((warn_unused_result));

/* connection.open (vhost, client side) / open-ok (server side). */
int bg_amqp_write_connection_open(bg_wr_t *wr, const char *vhost)
    __attribute__((warn_unused_result));
int bg_amqp_write_connection_open_ok(bg_wr_t *wr) __attribute__((warn_unused_result));

/* connection.close / channel.close with reply code, text and the failing
 * method's ids (0, 0 when none). text is cut to 255 bytes (never inside a
 * UTF-8 sequence): RabbitMQ's reply texts are shortstrs.
 * This pair is the single place busgate's protocol-level refusals come from
 * (a 403 ACCESS_REFUSED denial is bg_amqp_write_channel_close). */
int bg_amqp_write_connection_close(bg_wr_t *wr, uint16_t code, const char *text,
                                   uint16_t class_id, uint16_t method_id)
    __attribute__((warn_unused_result));
int bg_amqp_write_channel_close(bg_wr_t *wr, uint16_t channel, uint16_t code, const char *text,
                                uint16_t class_id, uint16_t method_id)
    __attribute__((warn_unused_result));
int bg_amqp_write_connection_close_ok(bg_wr_t *wr) __attribute__((warn_unused_result));
int bg_amqp_write_channel_close_ok(bg_wr_t *wr, uint16_t channel)
    __attribute__((warn_unused_result));

/* connection.start-ok toward RabbitMQ: client-properties {product "busgate",
 * capabilities (caps, plus authentication_failure_close)}, mechanism PLAIN, response "\0user\0password", locale
 * "en_US". The password is written to wr only. */
int bg_amqp_write_connection_start_ok(bg_wr_t *wr, uint32_t caps, const char *user,
                                      const char *password) __attribute__((warn_unused_result));

/* connection.update-secret-ok (to a client after a successful update). */
int bg_amqp_write_update_secret_ok(bg_wr_t *wr) __attribute__((warn_unused_result));

/* ---- the client's credentials ---- */

#define BG_AMQP_SASL_MAX_USER 1024
#define BG_AMQP_SASL_MAX_PASSWORD 16384 /* a JWT */

typedef struct bg_amqp_creds_s {
    bg_slice_t user;     /* borrowed from the start-ok's response */
    bg_slice_t password; /* the client's JWT; borrowed; never log it */
} bg_amqp_creds_t;

/* Extracts user and password from a decoded start-ok:
 *   PLAIN:    response "[authzid]\0user\0password" (RFC 4616; authzid ignored)
 *   AMQPLAIN: response = field-table entries without the size prefix (as
 *             RabbitMQ parses it) with LOGIN and PASSWORD longstrs
 * The password must be non-empty; user may be empty. Sizes are bounded by
 * BG_AMQP_SASL_MAX_USER / _PASSWORD; no NUL inside either. Returns
 * BG_AMQP_OK, or BG_AMQP_ERR_AUTH with *why (a reason that never quotes the
 * secret). The slices borrow the start-ok's payload. */
int bg_amqp_start_ok_creds(const amqp_connection_start_ok_t *m, bg_amqp_creds_t *c,
                           const char **why) __attribute__((warn_unused_result));

/* Same for the raw mechanism name and response bytes (e.g. connection.secure-ok). */
int bg_amqp_sasl_creds(const uint8_t *mech, size_t mech_len, const uint8_t *resp, size_t resp_len,
                       bg_amqp_creds_t *c, const char **why) __attribute__((warn_unused_result));

/* ---- content properties ---- */

/* Decodes a basic-class content header's raw properties
 * (bg_amqp_content_header_t.props: flags + list) into a rabbitmq-c
 * amqp_basic_properties_t allocated in a; strings borrow props. The property
 * list is validated first (same rules and lim as bg_amqp_validate_header;
 * NULL = defaults). Returns BG_AMQP_OK or a negative status with *why. */
int bg_amqp_properties_decode(bg_slice_t props, const bg_amqp_limits_t *lim, bg_amqp_arena_t *a,
                              amqp_basic_properties_t **out, const char **why)
    __attribute__((warn_unused_result));

#endif
