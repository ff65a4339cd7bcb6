/* Client side of SCRAM-SHA-256 / SCRAM-SHA-512 (RFC 5802, RFC 7677) as
 * Kafka's ScramSaslClient speaks it: busgate authenticating to the upstream
 * broker. Pure computation: the session sends what client_first/client_final
 * produce as SaslAuthenticate auth_bytes and feeds the server's auth_bytes
 * back; no I/O, no globals (randomness from OpenSSL RAND_bytes).
 *
 * Exchange:
 *   s = bg_kafka_scram_new(BG_KAFKA_SCRAM_SHA512, user, password);
 *   bg_kafka_scram_client_first(s, wr)                    -> "n,,n=<user>,r=<cnonce>"
 *   bg_kafka_scram_client_final(s, server_first, n, wr)   -> "c=biws,r=<nonce>,p=<proof>"
 *   bg_kafka_scram_verify_server_final(s, server_final, n) -> BG_KAFKA_SCRAM_OK = done
 *   bg_kafka_scram_free(s);
 * Any error moves the object to a failed state: every later call fails.
 *
 * Like Kafka (ScramFormatter.normalize), the password is used as its UTF-8
 * bytes without SASLprep. Kafka's limits are enforced on the server's
 * iteration count: 4096 <= i <= 16384 (ScramMechanism min/maxIterations), the
 * upper bound also caps the PBKDF2 time spent on a worker thread.
 *
 * Secrets (password, salted password, keys) live only inside the object and
 * are OPENSSL_cleanse'd when no longer needed and on free; nothing here logs.
 * The one exception is a small process-wide cache of salted passwords (a few
 * slots keyed by mechanism, password digest, salt and iterations) so that
 * reconnects do not each pay for PBKDF2; its entries are cleansed when
 * replaced and by bg_kafka_scram_cache_clear.
 * Thread-safety: one object per connection, not shared; the cache is
 * mutex-protected and may be used from any thread. */
#ifndef BG_KAFKA_SCRAM_H
#define BG_KAFKA_SCRAM_H

#include <stddef.h>
#include <stdint.h>

#include "broker/bytes.h"

#define BG_KAFKA_SCRAM_MIN_ITERATIONS 4096
#define BG_KAFKA_SCRAM_MAX_ITERATIONS 16384
/* Bound on a server message (nonce + salt + extensions are far smaller). */
#define BG_KAFKA_SCRAM_MAX_MSG 4096

typedef enum {
    BG_KAFKA_SCRAM_SHA256 = 1,
    BG_KAFKA_SCRAM_SHA512 = 2,
} bg_kafka_scram_mech_t;

typedef enum {
    BG_KAFKA_SCRAM_OK = 0,
    BG_KAFKA_SCRAM_ERR_MALFORMED = -1, /* server message does not parse */
    BG_KAFKA_SCRAM_ERR_REFUSED = -2,   /* parses, but unacceptable: nonce, iterations, m=, bad signature */
    BG_KAFKA_SCRAM_ERR_SERVER = -3,    /* server-final "e=": see bg_kafka_scram_server_error */
    BG_KAFKA_SCRAM_ERR_STATE = -4,     /* call out of order, or after a failure */
    BG_KAFKA_SCRAM_ERR_INTERNAL = -5,  /* OpenSSL / allocation / writer failure */
} bg_kafka_scram_status_t;

typedef struct bg_kafka_scram_s bg_kafka_scram_t;

/* Maps "SCRAM-SHA-256" / "SCRAM-SHA-512" (exact, as in SaslHandshake) to a
 * mechanism; returns 0 when unknown. */
bg_kafka_scram_mech_t bg_kafka_scram_mech_parse(const char *name);
/* The SaslHandshake mechanism name, or NULL for an unknown value. Static string. */
const char *bg_kafka_scram_mech_name(bg_kafka_scram_mech_t mech);

/* Creates an exchange for user/password (both non-empty C strings; copied,
 * the caller may wipe its own copies). Returns NULL on a bad argument or
 * allocation failure. Free with bg_kafka_scram_free. */
bg_kafka_scram_t *bg_kafka_scram_new(bg_kafka_scram_mech_t mech, const char *user,
                                     const char *password);
/* Cleanses all secrets and frees s. NULL is fine. */
void bg_kafka_scram_free(bg_kafka_scram_t *s);

/* Appends the client-first message "n,,n=<saslname>,r=<nonce>" to out, with a
 * fresh nonce (24 RAND_bytes, base64) unless one was fixed by the test hook.
 * Returns BG_KAFKA_SCRAM_OK or a negative status (*why static, if why != NULL). */
int bg_kafka_scram_client_first(bg_kafka_scram_t *s, bg_wr_t *out, const char **why)
    __attribute__((warn_unused_result));

/* Parses the server-first message (p, len: the SaslAuthenticate auth_bytes,
 * not NUL terminated) "r=<nonce>,s=<salt>,i=<count>[,ext...]", checks the
 * nonce extends ours, 4096 <= i <= 16384 and no "m=", runs PBKDF2 and
 * appends the client-final "c=biws,r=<nonce>,p=<proof>" to out.
 * Takes up to a few ms (PBKDF2) unless the salted password is cached. Returns BG_KAFKA_SCRAM_OK or a negative
 * status with *why. The password is cleansed from s afterwards either way. */
int bg_kafka_scram_client_final(bg_kafka_scram_t *s, const uint8_t *p, size_t len, bg_wr_t *out,
                                const char **why) __attribute__((warn_unused_result));

/* Checks the server-final message "v=<ServerSignature>[,ext...]" in constant
 * time. Returns BG_KAFKA_SCRAM_OK when the server proved it knows the
 * credential (the exchange is then complete), BG_KAFKA_SCRAM_ERR_SERVER for
 * "e=<error>" (text via bg_kafka_scram_server_error), or another negative
 * status with *why. */
int bg_kafka_scram_verify_server_final(bg_kafka_scram_t *s, const uint8_t *p, size_t len,
                                       const char **why) __attribute__((warn_unused_result));

/* The server's "e=" error value (printable ASCII, at most 127 bytes, other
 * bytes replaced by '?'), or NULL when there was none. Owned by s, valid until
 * bg_kafka_scram_free. */
const char *bg_kafka_scram_server_error(const bg_kafka_scram_t *s);

/* 1 after a successful bg_kafka_scram_verify_server_final, else 0. */
int bg_kafka_scram_done(const bg_kafka_scram_t *s);

/* Cleanses and empties the process-wide salted-password cache and resets
 * its counters. Thread-safe; for shutdown and tests. */
void bg_kafka_scram_cache_clear(void);

/* Test hook: derivations served from the cache (hits) and computed with
 * PBKDF2 (misses) since the last bg_kafka_scram_cache_clear. Thread-safe. */
void bg_kafka_scram__cache_stats(uint64_t *hits, uint64_t *misses);

/* Test hook (unit tests, fuzz target): uses nonce (printable, no ',', 1..64
 * bytes) instead of random bytes in the next client_first. Returns 0, or -1
 * when the nonce is not acceptable or client_first was already called. */
int bg_kafka_scram__set_client_nonce(bg_kafka_scram_t *s, const char *nonce);

#endif
