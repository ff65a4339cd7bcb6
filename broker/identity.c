/* JWT verification: header and key selection, signature, then claims.
 *
 * Order matters: nothing from the payload is trusted before the signature
 * has been checked, except `iss`, which only selects whose keys to try. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "broker/identity-internal.h"
#include "broker/log.h"

/* A token split into its parts. buf is a NUL-terminated copy. */
typedef struct bg_id__tok_s {
    char *buf;
    size_t len;
    size_t hlen, plen; /* header, payload segment lengths; sig follows */
    json_t *hdr, *claims;
    jwt_alg_t alg;
    const char *kid; /* borrowed from hdr, NULL when absent */
} bg_id__tok_t;

static const char *const bg_id__reasons[] = {
    "ok",         "expired",        "not_yet_valid",  "bad_signature", "unknown_kid",
    "alg_not_allowed", "wrong_issuer", "wrong_audience", "malformed",   "too_large",
};

const char *bg_id_reason_str(bg_id_reason_t r)
{
    if ((unsigned)r < sizeof(bg_id__reasons) / sizeof(bg_id__reasons[0]))
        return bg_id__reasons[r];
    return "unknown";
}

/* Writes a short message (never token bytes) and returns r. */
static bg_id_reason_t bg_id__fail(char *detail, size_t n, bg_id_reason_t r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bg_id_reason_t bg_id__fail(char *detail, size_t n, bg_id_reason_t r, const char *fmt, ...)
{
    if (detail && n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(detail, n, fmt, ap);
        va_end(ap);
    }
    return r;
}

/* Exactly three base64url segments separated by two dots, header and
 * payload non-empty. Anything else (padding, whitespace, a fourth part)
 * is malformed before any decoding. */
static int bg_id__split(bg_id__tok_t *t)
{
    size_t dots[2], nd = 0;
    for (size_t i = 0; i < t->len; i++) {
        unsigned char c = (unsigned char)t->buf[i];
        if (c == '.') {
            if (nd == 2)
                return -1;
            dots[nd++] = i;
        } else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '_')) {
            return -1;
        }
    }
    if (nd != 2 || dots[0] == 0 || dots[1] == dots[0] + 1)
        return -1;
    t->hlen = dots[0];
    t->plen = dots[1] - dots[0] - 1;
    return 0;
}

/* Decodes one segment into a JSON object; duplicate members are refused so
 * that no other parser can read a different value from the same bytes. */
static json_t *bg_id__segment_json(const char *s, size_t len)
{
    size_t n = 0;
    unsigned char *raw = bg_jwks_b64url_decode(s, len, &n);
    if (!raw)
        return NULL;
    json_t *j = json_loadb((const char *)raw, n, JSON_REJECT_DUPLICATES, NULL);
    free(raw);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

static bg_id_reason_t bg_id__parse(bg_id__tok_t *t, char *detail, size_t dn)
{
    if (bg_id__split(t) != 0)
        return bg_id__fail(detail, dn, BG_ID_MALFORMED, "not a compact JWS (3 base64url parts)");
    if (!(t->hdr = bg_id__segment_json(t->buf, t->hlen)))
        return bg_id__fail(detail, dn, BG_ID_MALFORMED, "header is not a base64url JSON object");
    json_t *alg = json_object_get(t->hdr, "alg"), *kid = json_object_get(t->hdr, "kid");
    if (!json_is_string(alg))
        return bg_id__fail(detail, dn, BG_ID_MALFORMED, "header has no alg");
    /* jku, x5u, jwk and x5c are never read: keys come from the trusted set
     * only. crit names extensions we would have to understand (RFC 7515
     * 4.1.11), and we understand none. */
    if (json_object_get(t->hdr, "crit"))
        return bg_id__fail(detail, dn, BG_ID_MALFORMED, "crit header not supported");
    if (kid && !json_is_string(kid))
        return bg_id__fail(detail, dn, BG_ID_MALFORMED, "kid is not a string");
    t->kid = json_string_value(kid);
    t->alg = bg_jwks_alg_from_name(json_string_value(alg));
    if (t->alg == JWT_ALG_INVAL) /* includes "none" in any spelling */
        return bg_id__fail(detail, dn, BG_ID_ALG_NOT_ALLOWED, "alg not supported");
    if (!(t->claims = bg_id__segment_json(t->buf + t->hlen + 1, t->plen)))
        return bg_id__fail(detail, dn, BG_ID_MALFORMED, "payload is not a base64url JSON object");
    return BG_ID_OK;
}

static bg_id_issuer_t *bg_id__find_issuer(const bg_identity_t *id, const char *iss)
{
    for (size_t i = 0; iss && i < id->nissuers; i++)
        if (strcmp(id->issuers[i].issuer, iss) == 0)
            return &id->issuers[i];
    return NULL;
}

/* Picks the key: by kid among the issuer's keys; without kid, the only key
 * usable for alg (none usable: alg_not_allowed; several: unknown_kid). An
 * issuer with no keys at all (no fetch has succeeded yet) is unknown_kid
 * with or without kid: the token's alg is not what is wrong. */
static bg_id_reason_t bg_id__select_key(const bg_jwks_t *set, const bg_id__tok_t *t,
                                        const bg_jwk_t **out, char *detail, size_t dn)
{
    size_t usable = 0;
    for (size_t i = 0; i < set->nkeys; i++) {
        const bg_jwk_t *k = &set->keys[i];
        if (t->kid && k->kid && strcmp(k->kid, t->kid) == 0) {
            *out = k;
            if (!(k->algs & BG_JWK_ALG_BIT(t->alg)))
                return bg_id__fail(detail, dn, BG_ID_ALG_NOT_ALLOWED,
                                   "alg does not match the key's type");
            return BG_ID_OK;
        }
        if (!t->kid && (k->algs & BG_JWK_ALG_BIT(t->alg))) {
            *out = k;
            usable++;
        }
    }
    if (t->kid)
        return bg_id__fail(detail, dn, BG_ID_UNKNOWN_KID, "kid not in the issuer's key set");
    if (usable == 1)
        return BG_ID_OK;
    if (set->nkeys == 0)
        return bg_id__fail(detail, dn, BG_ID_UNKNOWN_KID, "the issuer has no keys yet");
    if (usable == 0)
        return bg_id__fail(detail, dn, BG_ID_ALG_NOT_ALLOWED, "no key of the issuer allows alg");
    return bg_id__fail(detail, dn, BG_ID_UNKNOWN_KID, "no kid and several candidate keys");
}

static bg_id_reason_t bg_id__check_sig(const bg_id__tok_t *t, const bg_jwk_t *k, char *detail,
                                       size_t dn)
{
    size_t input_len = t->hlen + 1 + t->plen, sig_len = 0;
    const char *sig = t->buf + input_len + 1;
    unsigned char *raw = bg_jwks_b64url_decode(sig, t->len - input_len - 1, &sig_len);
    int ok = raw && bg_jwks_verify(k, t->alg, t->buf, input_len, raw, sig_len);
    free(raw);
    if (!ok)
        return bg_id__fail(detail, dn, BG_ID_BAD_SIGNATURE, "signature does not verify");
    return BG_ID_OK;
}

/* Resolves a claim name: the literal member first (namespaced claims such
 * as "https://example.com/roles" contain dots), then a dotted path. */
static json_t *bg_id__claim(json_t *claims, const char *name)
{
    json_t *v = json_object_get(claims, name);
    if (v || !strchr(name, '.'))
        return v;
    const char *p = name;
    v = claims;
    while (v && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        v = json_is_object(v) ? json_object_getn(v, p, n) : NULL;
        p += n + (dot != NULL);
    }
    return v;
}

/* A NumericDate (RFC 7519 2) as milliseconds; -1 when absent or invalid. */
static int64_t bg_id__date_ms(json_t *claims, const char *name)
{
    json_t *v = json_object_get(claims, name);
    if (!json_is_number(v))
        return -1;
    double d = json_number_value(v);
    if (!isfinite(d) || d < 0 || d > 1e13) /* year ~318857: beyond any sane token */
        return -1;
    return (int64_t)(d * 1000.0);
}

static bg_id_reason_t bg_id__check_times(const bg_identity_t *id, json_t *claims, int64_t now,
                                         char *detail, size_t dn)
{
    int64_t now_ms = now * 1000, exp = bg_id__date_ms(claims, "exp");
    /* A token without exp would be valid forever: treated as malformed. */
    if (exp < 0)
        return bg_id__fail(detail, dn, BG_ID_MALFORMED, "exp missing or not a number");
    if (now_ms >= exp + id->clock_skew_ms)
        return bg_id__fail(detail, dn, BG_ID_EXPIRED, "token expired");
    json_t *nbf = json_object_get(claims, "nbf");
    int64_t nbf_ms = bg_id__date_ms(claims, "nbf");
    if (nbf && nbf_ms < 0)
        return bg_id__fail(detail, dn, BG_ID_MALFORMED, "nbf not a number");
    if (nbf && now_ms + id->clock_skew_ms < nbf_ms)
        return bg_id__fail(detail, dn, BG_ID_NOT_YET_VALID, "token not yet valid (nbf)");
    json_t *iat = json_object_get(claims, "iat");
    int64_t iat_ms = bg_id__date_ms(claims, "iat");
    if (iat && iat_ms < 0)
        return bg_id__fail(detail, dn, BG_ID_MALFORMED, "iat not a number");
    /* Issued in the future: a provider clock out of step (Kafka's own
     * validator refuses it too). */
    if (iat && now_ms + id->clock_skew_ms < iat_ms)
        return bg_id__fail(detail, dn, BG_ID_NOT_YET_VALID, "token issued in the future (iat)");
    return BG_ID_OK;
}

static int bg_id__aud_ok(const bg_id_issuer_t *iss, const char *aud)
{
    for (size_t i = 0; aud && i < iss->naudiences; i++)
        if (strcmp(iss->audiences[i], aud) == 0)
            return 1;
    return 0;
}

static bg_id_reason_t bg_id__check_aud(const bg_id_issuer_t *iss, json_t *claims, char *detail,
                                       size_t dn)
{
    json_t *aud = json_object_get(claims, "aud"), *v;
    size_t i;
    if (json_is_string(aud) && bg_id__aud_ok(iss, json_string_value(aud)))
        return BG_ID_OK;
    json_array_foreach(aud, i, v)
    {
        if (bg_id__aud_ok(iss, json_string_value(v)))
            return BG_ID_OK;
    }
    return bg_id__fail(detail, dn, BG_ID_WRONG_AUDIENCE,
                       "aud has none of the configured audiences");
}

static char *bg_id__opt_str(json_t *claims, const char *name)
{
    const char *s = json_string_value(json_object_get(claims, name));
    return s ? strdup(s) : NULL;
}

/* A principal name: prefix (plen bytes) then the claim's value; malloc'd. */
static char *bg_id__named(const char *prefix, size_t plen, const char *value)
{
    size_t n = strlen(value);
    char *s = malloc(plen + n + 1);
    if (s) {
        memcpy(s, prefix, plen);
        memcpy(s + plen, value, n + 1);
    }
    return s;
}

/* groups: a string (one group) or an array of strings; absent = none. Each
 * is named with the issuer's groups_prefix. */
static int bg_id__fill_groups(const bg_id_issuer_t *iss, json_t *claims, bg_principal_t *p)
{
    json_t *g = bg_id__claim(claims, iss->groups_claim), *v;
    size_t i, plen = strlen(iss->groups_prefix);
    p->groups_prefix_len = plen;
    if (!g)
        return 0;
    if (json_is_string(g)) {
        if (!(p->groups = calloc(1, sizeof(char *))) ||
            !(p->groups[0] = bg_id__named(iss->groups_prefix, plen, json_string_value(g))))
            return -1;
        p->ngroups = 1;
        return 0;
    }
    if (!json_is_array(g) || !(p->groups = calloc(json_array_size(g) + 1, sizeof(char *))))
        return -1;
    json_array_foreach(g, i, v)
    {
        if (!json_is_string(v) ||
            !(p->groups[p->ngroups] = bg_id__named(iss->groups_prefix, plen, json_string_value(v))))
            return -1;
        p->ngroups++;
    }
    return 0;
}

/* n strings (NULL entries skipped) as one allocation: the pointer array,
 * NULL-terminated, then the strings. *out is NULL when none is left; -1
 * when out of memory. */
static int bg_id__pack(const char *const *v, size_t n, char ***out, size_t *nout)
{
    size_t bytes = 0, k = 0;
    *out = NULL;
    *nout = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i]) {
            bytes += strlen(v[i]) + 1;
            k++;
        }
    if (k == 0)
        return 0;
    char **a = malloc((k + 1) * sizeof(char *) + bytes);
    if (!a)
        return -1;
    char *s = (char *)(a + k + 1);
    for (size_t i = 0, j = 0; i < n; i++) {
        if (!v[i])
            continue;
        size_t len = strlen(v[i]) + 1;
        memcpy(s, v[i], len);
        a[j++] = s;
        s += len;
    }
    a[k] = NULL;
    *out = a;
    *nout = k;
    return 0;
}

/* The token's aud values that are strings (aud a string or an array), for
 * bg_identity_unvouched after a reload. Their number and size are bounded
 * by the token's (BG_IDENTITY_MAX_TOKEN). */
static int bg_id__keep_auds(json_t *claims, bg_principal_t *p)
{
    json_t *aud = json_object_get(claims, "aud"), *v;
    if (json_is_string(aud)) {
        const char *one = json_string_value(aud);
        return bg_id__pack(&one, 1, &p->audiences, &p->naudiences);
    }
    size_t n = json_array_size(aud), i;
    if (n == 0)
        return 0;
    const char **tmp = calloc(n, sizeof(char *));
    if (!tmp)
        return -1;
    json_array_foreach(aud, i, v)
    {
        tmp[i] = json_string_value(v); /* NULL for a non-string: skipped */
    }
    int rc = bg_id__pack(tmp, n, &p->audiences, &p->naudiences);
    free(tmp);
    return rc;
}

/* Fills the principal from the verified token. The prefixes are added here,
 * once, so that every consumer (policy, audit, logs, re-authentication)
 * sees one name: with several issuers, a name without a prefix would match
 * policy subjects whichever issuer vouched for it. */
static bg_id_reason_t bg_id__fill(const bg_id_issuer_t *iss, const bg_id__tok_t *t,
                                  bg_principal_t *p, char *detail, size_t dn)
{
    json_t *claims = t->claims;
    const char *sub = json_string_value(bg_id__claim(claims, iss->subject_claim));
    if (!sub || !*sub)
        return bg_id__fail(detail, dn, BG_ID_MALFORMED, "subject claim missing or not a string");
    if (bg_id__fill_groups(iss, claims, p) != 0)
        return bg_id__fail(detail, dn, BG_ID_MALFORMED,
                           "groups claim not a string or array of strings");
    p->sub_prefix_len = strlen(iss->subject_prefix);
    p->sub = bg_id__named(iss->subject_prefix, p->sub_prefix_len, sub);
    p->issuer = strdup(iss->issuer);
    p->token_id = bg_id__opt_str(claims, "jti");
    p->client_id = bg_id__opt_str(claims, "client_id");
    if (!p->client_id)
        p->client_id = bg_id__opt_str(claims, "azp");
    p->exp = bg_id__date_ms(claims, "exp") / 1000;
    int64_t iat = bg_id__date_ms(claims, "iat");
    p->iat = iat > 0 ? iat / 1000 : 0;
    snprintf(p->alg, sizeof(p->alg), "%s", json_string_value(json_object_get(t->hdr, "alg")));
    p->subject_claim_name = strdup(iss->subject_claim);
    p->groups_claim_name = strdup(iss->groups_claim);
    if (!p->sub || !p->issuer || !p->subject_claim_name || !p->groups_claim_name ||
        bg_id__keep_auds(claims, p) != 0)
        return bg_id__fail(detail, dn, BG_ID_MALFORMED, "out of memory");
    return BG_ID_OK;
}

/* Steps after parsing: issuer, key, signature, then the claims. */
static bg_id_reason_t bg_id__verify_parsed(bg_identity_t *id, bg_id__tok_t *t, int64_t now,
                                           bg_principal_t *out, char *detail, size_t dn)
{
    json_t *issv = json_object_get(t->claims, "iss");
    if (!json_is_string(issv))
        return bg_id__fail(detail, dn, BG_ID_MALFORMED, "iss missing or not a string");
    bg_id_issuer_t *iss = bg_id__find_issuer(id, json_string_value(issv));
    if (!iss)
        return bg_id__fail(detail, dn, BG_ID_WRONG_ISSUER, "iss is not a configured issuer");
    bg_id_keyset_t *ks = bg_identity__keys_acquire(id, iss);
    const bg_jwk_t *key = NULL;
    bg_id_reason_t r = bg_id__select_key(&ks->jwks, t, &key, detail, dn);
    if (r == BG_ID_OK)
        r = bg_id__check_sig(t, key, detail, dn);
    bg_identity__keys_release(ks);
    /* Only a kid we have never seen can be cured by a refresh; the caller
     * gets unknown_kid now and retries (we never block on the network). */
    if (r == BG_ID_UNKNOWN_KID && t->kid)
        bg_identity__request_refresh(id, iss);
    if (r == BG_ID_OK)
        r = bg_id__check_times(id, t->claims, now, detail, dn);
    if (r == BG_ID_OK)
        r = bg_id__check_aud(iss, t->claims, detail, dn);
    if (r == BG_ID_OK)
        r = bg_id__fill(iss, t, out, detail, dn);
    return r;
}

bg_id_reason_t bg_identity_verify(bg_identity_t *id, const char *token, size_t len, int64_t now,
                                  bg_principal_t *out, char *detail, size_t detail_len)
{
    bg_id__tok_t t = {0};
    bg_id_reason_t r;
    memset(out, 0, sizeof(*out));
    if (detail && detail_len)
        detail[0] = 0;
    if (len > BG_IDENTITY_MAX_TOKEN)
        return bg_id__fail(detail, detail_len, BG_ID_TOO_LARGE, "token larger than %d bytes",
                           BG_IDENTITY_MAX_TOKEN);
    if (!token || len == 0)
        return bg_id__fail(detail, detail_len, BG_ID_MALFORMED, "empty token");
    if (!(t.buf = malloc(len + 1)))
        return bg_id__fail(detail, detail_len, BG_ID_MALFORMED, "out of memory");
    memcpy(t.buf, token, len);
    t.buf[len] = 0;
    t.len = len;
    r = bg_id__parse(&t, detail, detail_len);
    if (r == BG_ID_OK)
        r = bg_id__verify_parsed(id, &t, now, out, detail, detail_len);
    if (r != BG_ID_OK)
        bg_principal_clear(out);
    json_decref(t.hdr);
    json_decref(t.claims);
    free(t.buf);
    return r;
}

void bg_principal_clear(bg_principal_t *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->ngroups; i++)
        free(p->groups[i]);
    free(p->groups);
    free(p->sub);
    free(p->issuer);
    free(p->token_id);
    free(p->client_id);
    free(p->audiences); /* one allocation with its strings */
    free(p->subject_claim_name);
    free(p->groups_claim_name);
    memset(p, 0, sizeof(*p));
}

const char *bg_principal_subject_claim(const bg_principal_t *p)
{
    return p->sub ? p->sub + p->sub_prefix_len : NULL;
}

int bg_principal_same(const bg_principal_t *a, const bg_principal_t *b)
{
    if (!a->sub || !b->sub || !a->issuer || !b->issuer)
        return 0;
    return strcmp(bg_principal_subject_claim(a), bg_principal_subject_claim(b)) == 0 &&
           strcmp(a->issuer, b->issuer) == 0;
}

/* 1 when name starts with exactly prefix, as the first have bytes. */
static int bg_id__named_by(const char *name, size_t have, const char *prefix, size_t plen)
{
    return have == plen && memcmp(name, prefix, plen) == 0;
}

int bg_identity_rename(const bg_identity_t *id, bg_principal_t *p)
{
    const bg_id_issuer_t *iss = id && p->sub ? bg_id__find_issuer(id, p->issuer) : NULL;
    if (!iss)
        return 0;
    size_t sl = strlen(iss->subject_prefix), gl = strlen(iss->groups_prefix);
    if (bg_id__named_by(p->sub, p->sub_prefix_len, iss->subject_prefix, sl) &&
        (p->ngroups == 0 ||
         bg_id__named_by(p->groups[0], p->groups_prefix_len, iss->groups_prefix, gl))) {
        p->groups_prefix_len = gl; /* no group to rename */
        return 0;
    }
    char *sub = bg_id__named(iss->subject_prefix, sl, bg_principal_subject_claim(p));
    char **groups = calloc(p->ngroups + 1, sizeof(char *));
    size_t n = 0;
    if (!sub || !groups)
        goto fail;
    for (; n < p->ngroups; n++)
        if (!(groups[n] = bg_id__named(iss->groups_prefix, gl,
                                       p->groups[n] + p->groups_prefix_len)))
            goto fail;
    for (size_t i = 0; i < p->ngroups; i++)
        free(p->groups[i]);
    free(p->groups);
    free(p->sub);
    p->sub = sub;
    p->groups = groups;
    p->sub_prefix_len = sl;
    p->groups_prefix_len = gl;
    return 1;
fail:
    while (n > 0)
        free(groups[--n]);
    free(groups);
    free(sub);
    return -1;
}

/* 1 when one of p's token audiences is among iss's audiences. */
static int bg_id__auds_accepted(const bg_id_issuer_t *iss, const bg_principal_t *p)
{
    for (size_t i = 0; i < p->naudiences; i++)
        if (bg_id__aud_ok(iss, p->audiences[i]))
            return 1;
    return 0;
}

static int bg_id__same_opt(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

const char *bg_identity_unvouched(const bg_identity_t *id, const bg_principal_t *p)
{
    const bg_id_issuer_t *iss = id && p->issuer ? bg_id__find_issuer(id, p->issuer) : NULL;
    if (!iss)
        return "the token's issuer is no longer configured";
    if (!bg_id__auds_accepted(iss, p))
        return "the token's audience is no longer accepted";
    /* HS* tokens verify only with oct keys, loaded only under allow_hs256. */
    if (strncmp(p->alg, "HS", 2) == 0 && !iss->allow_hs256)
        return "the token's algorithm is no longer allowed";
    if (!bg_id__same_opt(p->subject_claim_name, iss->subject_claim) ||
        !bg_id__same_opt(p->groups_claim_name, iss->groups_claim))
        return "the issuer's subject or groups claim changed; log in again";
    return NULL;
}

int bg_identity_reapply(const bg_identity_t *id, bg_principal_t *p, const char **unvouched,
                        const char *module, const char *session)
{
    int renamed = bg_identity_rename(id, p);
    if (renamed < 0)
        return -1;
    bg_log_field_t f[] = {{"session", session}, {"sub", p->sub}};
    if (renamed)
        bg_log_fields(BG_LOG_INFO, module, f, 2,
                      "principal renamed by a reload (its issuer's prefixes changed)");
    const char *was = *unvouched;
    *unvouched = bg_identity_unvouched(id, p);
    if (*unvouched && (!was || strcmp(was, *unvouched) != 0))
        bg_log_fields(BG_LOG_WARN, module, f, 2, "every decision is a deny from now on: %s",
                      *unvouched);
    else if (was && !*unvouched)
        bg_log_fields(BG_LOG_INFO, module, f, 2,
                      "decided by the policy again: the identity configuration accepts the "
                      "token again");
    return renamed;
}

static int bg_id__dup_opt(char **dst, const char *src)
{
    *dst = src ? strdup(src) : NULL;
    return src && !*dst ? -1 : 0;
}

int bg_principal_copy(bg_principal_t *dst, const bg_principal_t *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->exp = src->exp;
    dst->iat = src->iat;
    dst->sub_prefix_len = src->sub_prefix_len;
    dst->groups_prefix_len = src->groups_prefix_len;
    memcpy(dst->alg, src->alg, sizeof(dst->alg));
    int rc = bg_id__dup_opt(&dst->sub, src->sub) | bg_id__dup_opt(&dst->issuer, src->issuer) |
             bg_id__dup_opt(&dst->token_id, src->token_id) |
             bg_id__dup_opt(&dst->client_id, src->client_id) |
             bg_id__dup_opt(&dst->subject_claim_name, src->subject_claim_name) |
             bg_id__dup_opt(&dst->groups_claim_name, src->groups_claim_name) |
             bg_id__pack((const char *const *)src->audiences, src->naudiences, &dst->audiences,
                         &dst->naudiences);
    if (rc == 0 && src->ngroups) {
        dst->groups = calloc(src->ngroups, sizeof(char *));
        for (size_t i = 0; dst->groups && i < src->ngroups; i++, dst->ngroups++)
            if (bg_id__dup_opt(&dst->groups[i], src->groups[i]) != 0)
                break;
        rc = dst->groups && dst->ngroups == src->ngroups ? 0 : -1;
    }
    if (rc != 0)
        bg_principal_clear(dst);
    return rc;
}
