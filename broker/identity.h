/* busgate identity: OIDC JWT verification against configured issuers.
 *
 * libjwt 1.10 verifies signatures only; busgate adds: the algorithm must be
 * the one the key (JWK kty/alg) allows, alg none is always refused, exp/nbf
 * with clock skew, iss exact, aud contains a configured audience, kid looked
 * up only in the trusted key set (jku/x5u/jwk headers ignored), size limit. */
#ifndef BG_IDENTITY_H
#define BG_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#define BG_IDENTITY_MAX_TOKEN 16384

typedef enum {
    BG_ID_OK = 0,
    BG_ID_EXPIRED,
    BG_ID_NOT_YET_VALID,
    BG_ID_BAD_SIGNATURE,
    BG_ID_UNKNOWN_KID,
    BG_ID_ALG_NOT_ALLOWED,
    BG_ID_WRONG_ISSUER,
    BG_ID_WRONG_AUDIENCE,
    BG_ID_MALFORMED,
    BG_ID_TOO_LARGE,
} bg_id_reason_t;

/* "ok", "expired", "not_yet_valid", "bad_signature", "unknown_kid",
 * "alg_not_allowed", "wrong_issuer", "wrong_audience", "malformed", "too_large". */
const char *bg_id_reason_str(bg_id_reason_t r);

/* An authenticated caller. All strings owned by the struct. sub and groups
 * are principal names, the names policy subjects match: the issuer's
 * subject_prefix / groups_prefix (identity.issuers[], "" by default)
 * followed by the token's subject / group claim. */
typedef struct bg_principal_s {
    char *sub;
    char **groups;
    size_t ngroups;
    size_t sub_prefix_len;    /* leading bytes of sub that are the subject_prefix */
    size_t groups_prefix_len; /* leading bytes of each group that are the groups_prefix */
    char *issuer;
    char *token_id; /* jti, may be NULL */
    char *client_id; /* client_id / azp claim, may be NULL */
    int64_t exp;     /* seconds since epoch */
    int64_t iat;     /* 0 when absent */
    /* What the token was accepted with, so that bg_identity_unvouched can
     * tell after a reload whether the new configuration would still accept
     * it. audiences: the token's aud values that are strings, in order
     * (pointers and strings in one allocation, bounded by the token's size
     * limit). alg: the header's alg ("RS256", ...). The two claim names: the
     * issuer's subject_claim and groups_claim that sub and groups came from. */
    char **audiences;
    size_t naudiences;
    char alg[8];
    char *subject_claim_name;
    char *groups_claim_name;
} bg_principal_t;

void bg_principal_clear(bg_principal_t *p);
/* The token's own subject claim: sub without the issuer's subject_prefix.
 * Borrowed from p. */
const char *bg_principal_subject_claim(const bg_principal_t *p);
/* 1 when a and b are the same principal: the same issuer and subject claim
 * (two trusted issuers may each have a subject with the same sub; the
 * prefixes are left aside, as a reload may have changed them since a was
 * verified). 0 when either lacks one. */
int bg_principal_same(const bg_principal_t *a, const bg_principal_t *b);
/* Deep copy; returns 0 or -1 on allocation failure. */
int bg_principal_copy(bg_principal_t *dst, const bg_principal_t *src);

struct bg_config_identity_s;
typedef struct bg_identity_s bg_identity_t;

/* Builds a verifier from the identity config: loads jwks_file keys now;
 * for jwks_url issuers starts a background fetch thread (libcurl) that
 * refreshes periodically. Returns NULL with err filled on failure (bad
 * JWKS file, unusable key). Thread-safe to use from many workers. */
bg_identity_t *bg_identity_new(const struct bg_config_identity_s *cfg, char *err, size_t errlen);
/* As bg_identity_new, for a reload: a jwks_url issuer that prev also has
 * (same issuer, URL, jwks_ca and allow_hs256) starts with prev's current keys and
 * fetch schedule instead of an empty set, so a reload neither locks logins
 * out until the next fetch nor loses keys while the provider is down. prev
 * may be NULL; it is only read. */
bg_identity_t *bg_identity_new_after(const struct bg_config_identity_s *cfg, bg_identity_t *prev,
                                     char *err, size_t errlen);
/* Stops id's JWKS refresh thread (an identity a reload replaced): it still
 * verifies with the keys it has until freed, but fetches nothing more, and
 * bg_identity_free then does not wait for a fetch: a download is cancelled
 * and a key set being parsed is left after the key being checked (an
 * 8192-bit RSA check at most). Never blocks. */
void bg_identity_retire(bg_identity_t *id);
void bg_identity_free(bg_identity_t *id);

/* Verifies token (not NUL-terminated necessarily) at time now (seconds since
 * epoch). On BG_ID_OK fills out (caller clears it). On failure out is left
 * empty and, when detail is non-NULL, a short human message (never
 * containing the token) is written to it. An unknown kid triggers one
 * rate-limited JWKS refresh for URL issuers. */
bg_id_reason_t bg_identity_verify(bg_identity_t *id, const char *token, size_t len, int64_t now,
                                  bg_principal_t *out, char *detail, size_t detail_len);

/* Gives p, verified earlier (perhaps by the identity a reload replaced),
 * the names id gives its issuer's principals now: the subject and group
 * claims under id's subject_prefix and groups_prefix for p's issuer. So a
 * session opened before a reload that changed the prefixes is decided by
 * the new policy under the names that policy was written for. Returns 1
 * when the names changed, 0 when they did not (also when id is NULL or no
 * longer has p's issuer: the names stay, and bg_identity_unvouched says
 * so), -1 when out of memory (p unchanged). id is only read. */
int bg_identity_rename(const bg_identity_t *id, bg_principal_t *p);

/* Why id no longer vouches for p, verified earlier perhaps by the identity a
 * reload replaced: a login with p's token would not be accepted by id, its
 * expiry and id's keys aside. In order: id does not have p's issuer (an
 * operator removes an issuer whose keys leaked); none of the token's
 * audiences is among the issuer's audiences; the token's alg is HS* and
 * the issuer no longer sets allow_hs256; the issuer's subject_claim or
 * groups_claim is not the one p's names came from (they cannot be
 * recomputed without the token). The session then keeps its connection,
 * but every decision for it is busgate's deny for this reason (static
 * text); NULL while id would accept the token. Also the issuer's reason
 * when id is NULL or p has no issuer: nothing configured vouches for it.
 * Keys withdrawn from the issuer's JWKS are not looked at. id is only read. */
const char *bg_identity_unvouched(const bg_identity_t *id, const bg_principal_t *p);

/* A live session's principal p under id, a reload's new identity: renames
 * it (bg_identity_rename) and sets *unvouched (bg_identity_unvouched), each
 * change logged for the session (module, session id). Returns 1 when the
 * names changed, 0 when not, -1 when out of memory (p unchanged). */
int bg_identity_reapply(const bg_identity_t *id, bg_principal_t *p, const char **unvouched,
                        const char *module, const char *session);

/* Blocks until every jwks_url issuer has had one fetch attempt, or timeout_ms
 * passes; returns 0 if all issuers have keys. Used at start-up. */
int bg_identity_wait_ready(bg_identity_t *id, int timeout_ms);

/* How many jwks_url issuers have not had one fetch attempt finish yet:
 * what bg_identity_wait_ready waits for, without waiting. Thread-safe. */
size_t bg_identity_fetches_pending(bg_identity_t *id);

/* The name (`issuer`) of the first issuer that has no usable key now (a
 * jwks_url none of whose fetches has succeeded yet), or NULL when every
 * issuer has keys: every token from such an issuer is refused. The string
 * lives as long as id. Never waits for a fetch. Thread-safe. */
const char *bg_identity_issuer_without_keys(bg_identity_t *id);

/* Development/test helper behind `busgate token mint`: signs a JWT with the
 * private key PEM (RS256 for RSA keys, ES256 for P-256 keys). Returns a
 * malloc'd token or NULL with err filled. */
char *bg_identity_mint(const char *key_pem, size_t key_len, const char *kid, const char *sub,
                       const char *const *groups, size_t ngroups, int64_t ttl_s, const char *iss,
                       const char *aud, char *err, size_t errlen);

#endif
