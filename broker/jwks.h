/* busgate JWKS: a JSON Web Key Set turned into verification keys.
 *
 * RSA (n, e) and EC (crv, x, y) keys are rebuilt with OpenSSL 3
 * (EVP_PKEY_fromdata) and checked. Each key records the algorithms it may
 * verify, derived from kty/crv and narrowed by the JWK's own "alg": the
 * verifier refuses a token whose header alg is not in that set, which is what
 * stops HS256-signed-with-the-RSA-key confusion.
 *
 * Signatures are checked here with OpenSSL rather than with libjwt 1.10's
 * jwt_decode: that function refuses every token whose "typ" header is not
 * "JWT" (RFC 9068 access tokens carry "at+jwt"), cannot take a key object
 * (it re-parses a PEM per call) and reports every failure as EINVAL. libjwt is
 * still used for its algorithm enum and for minting. Private to
 * broker/identity*.c and broker/jwks*.c. */
#ifndef BG_JWKS_H
#define BG_JWKS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <jwt.h>
#include <openssl/evp.h>

/* Largest JWKS document accepted (file or URL). */
#define BG_JWKS_MAX_BYTES (1024 * 1024)
/* Smallest RSA modulus accepted: weaker keys are skipped. */
#define BG_JWKS_MIN_RSA_BITS 2048
/* Largest RSA modulus accepted: bigger keys are skipped before OpenSSL
 * checks them. The check's cost grows steeply with the size (about 0.8 s for
 * 16384 bits, OpenSSL's own limit), and a provider decides how many keys it
 * serves; 8192 bits is twice what providers use. */
#define BG_JWKS_MAX_RSA_BITS 8192
/* Most entries (usable or not) in one JWKS document: a longer one is refused
 * as a whole. Providers serve a handful; with the 8192-bit cap this bounds
 * the work one document can cost. */
#define BG_JWKS_MAX_KEYS 100
/* Smallest HMAC secret accepted (RFC 7518 3.2: at least the hash size). */
#define BG_JWKS_MIN_OCT_BYTES 32

typedef enum { BG_JWK_RSA = 1, BG_JWK_EC, BG_JWK_OCT } bg_jwk_kty_t;

/* One verification key. kid may be NULL (a JWKS entry without kid). */
typedef struct bg_jwk_s {
    char *kid;
    bg_jwk_kty_t kty;
    unsigned algs;         /* bit (1u << jwt_alg_t) for each allowed algorithm */
    EVP_PKEY *pkey;        /* RSA, EC: public key, shared read-only by threads */
    unsigned char *secret; /* oct: raw HMAC secret */
    size_t secret_len;
} bg_jwk_t;

typedef struct bg_jwks_s {
    bg_jwk_t *keys;
    size_t nkeys;
} bg_jwks_t;

#define BG_JWK_ALG_BIT(a) (1u << (unsigned)(a))

/* RSASSA-PSS (RFC 7518 3.5): libjwt 1.10 has no ids for them; busgate
 * verifies signatures itself and numbers them after libjwt's. */
#define BG_JWT_ALG_PS256 ((jwt_alg_t)(JWT_ALG_TERM + 1))
#define BG_JWT_ALG_PS384 ((jwt_alg_t)(JWT_ALG_TERM + 2))
#define BG_JWT_ALG_PS512 ((jwt_alg_t)(JWT_ALG_TERM + 3))

/* Flags of bg_jwks_parse. */
#define BG_JWKS_ALLOW_OCT 1    /* load oct (HMAC) keys */
#define BG_JWKS_SKIP_BROKEN 2  /* skip (and log) a supported entry with broken parameters */

/* Parses a JWKS document ({"keys":[...]}) into out (caller clears it).
 * Entries that are not signature keys (use != "sig"), of an unsupported kty
 * or curve, RSA keys under BG_JWKS_MIN_RSA_BITS or over
 * BG_JWKS_MAX_RSA_BITS, and oct keys without BG_JWKS_ALLOW_OCT, are skipped
 * and logged. A supported entry with broken parameters (bad base64url, point
 * not on the curve) is an error, or with BG_JWKS_SKIP_BROKEN skipped and
 * logged (a fetched set: one bad entry must not keep the previous set, with
 * keys the provider has withdrawn, in force). A duplicate kid, or more than
 * BG_JWKS_MAX_KEYS entries, is always an error. *abort_flag, when non-NULL,
 * is read before each entry and a non-zero value ends the parse as an error.
 * Returns 0, or -1 with err filled. Thread-safe (no shared state). */
int bg_jwks_parse(const char *json, size_t len, int flags, const atomic_int *abort_flag,
                  bg_jwks_t *out, char *err, size_t errlen) __attribute__((warn_unused_result));
/* Frees every key of set and empties it; safe on an empty set. */
void bg_jwks_clear(bg_jwks_t *set);

/* Checks sig over input (the "header.payload" bytes) with key k for alg.
 * The caller has already checked that alg is in k->algs; this re-checks.
 * ES signatures are the JOSE raw R||S form. Returns 1 when valid, 0
 * otherwise. Thread-safe: k is only read. */
int bg_jwks_verify(const bg_jwk_t *k, jwt_alg_t alg, const char *input, size_t input_len,
                   const unsigned char *sig, size_t sig_len);

/* Reads a JWKS file (at most BG_JWKS_MAX_BYTES) and parses it as above. */
int bg_jwks_load_file(const char *path, int allow_oct, bg_jwks_t *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Fetches url (http or https only, TLS verified, redirects limited to the
 * same schemes) with the given overall timeout; the server's certificate
 * chains to a CA in ca_file (PEM) when given, else to the system's store; the body must be at most
 * BG_JWKS_MAX_BYTES and the status 200. *abort_flag, when non-NULL, is polled
 * during the transfer and a non-zero value cancels it. On success returns 0
 * and a malloc'd NUL-terminated body in *body (caller frees). Blocking; call
 * from a background thread only. */
int bg_jwks_fetch(const char *url, const char *ca_file, long timeout_ms,
                  const atomic_int *abort_flag, char **body, size_t *len, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Strict base64url (RFC 4648 section 5) without padding or whitespace.
 * Returns a malloc'd buffer (NUL-terminated for convenience, the NUL not
 * counted in *out_len), or NULL on an invalid character, impossible length or
 * non-zero trailing bits. */
unsigned char *bg_jwks_b64url_decode(const char *s, size_t len, size_t *out_len);

/* Maps a JOSE algorithm name to libjwt's enum; JWT_ALG_INVAL when the name
 * is unknown or "none" (compared exactly, case-sensitively). */
jwt_alg_t bg_jwks_alg_from_name(const char *name);

#endif
