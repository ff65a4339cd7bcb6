/* Server side of the SASL mechanisms busgate terminates for Kafka clients:
 * parsers for the auth_bytes of a SaslAuthenticate request (or of a raw
 * v0 SaslHandshake token) and the OAUTHBEARER failure challenge. Also the
 * trivial PLAIN client message busgate sends upstream.
 *
 * Pure: bytes in, values out; no I/O, no globals, no allocation. Every parsed
 * string is a borrowed view (bg_slice_t) into the caller's input buffer, valid
 * while that buffer lives and is not modified. A view with len -1 (p NULL)
 * means "absent". Thread-safe (no shared state).
 *
 * ---- OAUTHBEARER failure sequence (what Kafka's broker does, and busgate copies) ----
 * Checked against apache/kafka OAuthBearerSaslServer.evaluateResponse and
 * SaslServerAuthenticator.handleSaslToken (SaslAuthenticate path, i.e. after a
 * SaslHandshake v1):
 *   - A client first message that does not parse (bad GS2 header, no auth,
 *     non-Bearer scheme, ...) makes the SaslServer throw SaslException; the
 *     broker answers SaslAuthenticate with error_code 58
 *     SASL_AUTHENTICATION_FAILED, error_message "Authentication failed during
 *     authentication due to invalid credentials with SASL mechanism
 *     OAUTHBEARER", and closes the connection (after
 *     connection.failed.authentication.delay.ms).
 *   - A well-formed message whose token fails validation does NOT fail yet:
 *     evaluateResponse returns the RFC 7628 §3.2.2 JSON challenge
 *     ({"status":"invalid_token"}, optionally scope/openid-configuration);
 *     the broker answers error_code 0 (NONE), auth_bytes = the JSON,
 *     session_lifetime_ms 0. The client (Java OAuthBearerSaslClient,
 *     librdkafka) answers with a SaslAuthenticate whose auth_bytes is the
 *     single byte 0x01; the server then throws SaslAuthenticationException
 *     (whose message, in Kafka, is the JSON string itself), and the broker
 *     answers error_code 58 with that message and closes the connection.
 *   - A 0x01 message when no error challenge is pending is parsed as a
 *     client first message (and so fails as malformed).
 * A re-authentication (a SaslHandshake on an authenticated connection,
 * KIP-368) goes through the same SaslServerAuthenticator and SaslServer, so
 * it has the same sequence.
 * busgate's session uses exactly this shape, for a login and a
 * re-authentication alike:
 *   1. SaslAuthenticate, malformed auth_bytes -> error_code 58, message
 *      "invalid OAUTHBEARER client first message: <why>", close.
 *   2. SaslAuthenticate, bad token -> error_code 0, auth_bytes =
 *      bg_kafka_sasl_oauthbearer_error(), session_lifetime_ms 0; remember the
 *      failure reason.
 *   3. Next SaslAuthenticate: bg_kafka_sasl_is_oauthbearer_dummy() ->
 *      error_code 58, message "invalid token: <reason>" (a short reason from
 *      the identity module, never the token), then close. Anything else in
 *      that state: also 58 + close.
 * With PLAIN there is no challenge: a bad token answers 58 at once.
 */
#ifndef BG_KAFKA_SASL_H
#define BG_KAFKA_SASL_H

#include <stddef.h>
#include <stdint.h>

#include "broker/bytes.h"

/* Largest token (JWT) accepted, and largest whole message: the token plus
 * room for the GS2 header, authzid, host/port and a few extensions. Checked
 * before anything else, so unauthenticated clients cannot make us scan more. */
#define BG_KAFKA_SASL_MAX_TOKEN 16384
#define BG_KAFKA_SASL_MAX_MSG (BG_KAFKA_SASL_MAX_TOKEN + 1024)
/* Bound on an authzid / PLAIN authcid (RFC 4616 suggests 255). */
#define BG_KAFKA_SASL_MAX_NAME 255

typedef enum {
    BG_KAFKA_SASL_OK = 0,
    BG_KAFKA_SASL_MALFORMED = -1,   /* does not follow the mechanism's grammar */
    BG_KAFKA_SASL_TOO_LARGE = -2,   /* message, token or name over the limits above */
    BG_KAFKA_SASL_UNSUPPORTED = -3, /* well-formed but refused: channel binding, non-Bearer scheme */
} bg_kafka_sasl_status_t;

/* Parses an OAUTHBEARER client initial response (RFC 7628 §3.1):
 *   gs2-header  = ("n" / "y") "," ["a=" saslname] ","   ("p=..." refused)
 *   message     = gs2-header %x01 *(key "=" value %x01) %x01
 *   key = 1*ALPHA; value = *(VCHAR / SP / HTAB / CR / LF)
 *   auth value  = "Bearer" 1*SP b64token  (scheme case-insensitive; RFC 6750
 *                 allows several spaces and so does Kafka's broker)
 * Exactly one "auth" key is required; other keys (host, port, Kafka SASL
 * extensions) are accepted and ignored.
 * On BG_KAFKA_SASL_OK: *token = the b64token (1..BG_KAFKA_SASL_MAX_TOKEN
 * bytes); *authzid = the authzid as sent (still "=2C"/"=3D"-escaped, see
 * bg_kafka_sasl_saslname_decode) or {NULL, -1} when absent. Both are views
 * into p. On error: returns a negative bg_kafka_sasl_status_t, *why (if why
 * != NULL) = a short static reason that never contains input bytes; outputs
 * are then {NULL, -1}. */
int bg_kafka_sasl_parse_oauthbearer(const uint8_t *p, size_t len, bg_slice_t *token,
                                    bg_slice_t *authzid, const char **why)
    __attribute__((warn_unused_result));

/* 1 when p is the OAUTHBEARER client's answer to an error challenge (the
 * single byte 0x01, RFC 7628 §3.2.3), else 0. Only meaningful in the state
 * "error challenge sent"; see the sequence at the top of this file. */
static inline int bg_kafka_sasl_is_oauthbearer_dummy(const uint8_t *p, size_t len)
{
    return len == 1 && p != NULL && p[0] == 0x01;
}

/* Writes the OAUTHBEARER error challenge {"status":"invalid_token"}
 * (RFC 7628 §3.2.2, no scope / openid-configuration) into buf, NUL
 * terminated. Returns its length without the NUL (the auth_bytes length), or
 * -1 when cap is too small (buf then holds an empty string if cap > 0). */
int bg_kafka_sasl_oauthbearer_error(char *buf, size_t cap);

/* Parses a PLAIN message (RFC 4616): [authzid] NUL authcid NUL passwd, where
 * passwd is the client's JWT. Exactly two NULs; authcid 1..BG_KAFKA_SASL_MAX_NAME
 * bytes, authzid 0..BG_KAFKA_SASL_MAX_NAME, passwd 1..BG_KAFKA_SASL_MAX_TOKEN.
 * On BG_KAFKA_SASL_OK the three views point into p; *authzid is {NULL, -1}
 * when empty. Errors as for bg_kafka_sasl_parse_oauthbearer. */
int bg_kafka_sasl_parse_plain(const uint8_t *p, size_t len, bg_slice_t *authzid,
                              bg_slice_t *authcid, bg_slice_t *passwd, const char **why)
    __attribute__((warn_unused_result));

/* Decodes a GS2/SCRAM saslname ("=2C" -> ',', "=3D" -> '=') into out (cap
 * bytes, NUL terminated). Returns the decoded length, or -1 on a bad escape, a
 * NUL byte or when it does not fit. */
int bg_kafka_sasl_saslname_decode(bg_slice_t in, char *out, size_t cap);

/* Appends a PLAIN client message "\0user\0password" (no authzid) to out, as
 * busgate authenticates to the upstream broker. Returns 0, or -1 when user or
 * password is empty, contains NUL (impossible for C strings, so: empty) or
 * when out->failed. The password bytes end up in out: the caller cleanses
 * out (OPENSSL_cleanse) after sending. */
int bg_kafka_sasl_plain_client(bg_wr_t *out, const char *user, const char *password)
    __attribute__((warn_unused_result));

#endif
