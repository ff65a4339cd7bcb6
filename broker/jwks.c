/* JWKS parsing: JSON Web Keys -> PEM (or raw secret) plus allowed algorithms. */
#include "broker/jwks.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>

#include "broker/log.h"

#define BG_JWKS__RSA_ALGS                                                                          \
    (BG_JWK_ALG_BIT(JWT_ALG_RS256) | BG_JWK_ALG_BIT(JWT_ALG_RS384) |                               \
     BG_JWK_ALG_BIT(JWT_ALG_RS512) | BG_JWK_ALG_BIT(BG_JWT_ALG_PS256) |                            \
     BG_JWK_ALG_BIT(BG_JWT_ALG_PS384) | BG_JWK_ALG_BIT(BG_JWT_ALG_PS512))
#define BG_JWKS__OCT_ALGS                                                                          \
    (BG_JWK_ALG_BIT(JWT_ALG_HS256) | BG_JWK_ALG_BIT(JWT_ALG_HS384) | BG_JWK_ALG_BIT(JWT_ALG_HS512))

/* Outcome of converting one JWK: used, skipped (logged, not fatal), or broken. */
typedef enum { BG_JWKS__USED = 0, BG_JWKS__SKIP, BG_JWKS__BAD } bg_jwks__res_t;

static const struct {
    const char *name;
    jwt_alg_t alg;
} bg_jwks__algs[] = {
    {"HS256", JWT_ALG_HS256}, {"HS384", JWT_ALG_HS384}, {"HS512", JWT_ALG_HS512},
    {"RS256", JWT_ALG_RS256}, {"RS384", JWT_ALG_RS384}, {"RS512", JWT_ALG_RS512},
    {"ES256", JWT_ALG_ES256}, {"ES384", JWT_ALG_ES384}, {"ES512", JWT_ALG_ES512},
    {"PS256", BG_JWT_ALG_PS256}, {"PS384", BG_JWT_ALG_PS384}, {"PS512", BG_JWT_ALG_PS512},
};

/* EC curves by JWK crv: OpenSSL group name, coordinate size, algorithm. */
static const struct {
    const char *crv;
    const char *group;
    size_t coord_len;
    jwt_alg_t alg;
} bg_jwks__curves[] = {
    {"P-256", "prime256v1", 32, JWT_ALG_ES256},
    {"P-384", "secp384r1", 48, JWT_ALG_ES384},
    {"P-521", "secp521r1", 66, JWT_ALG_ES512},
};

jwt_alg_t bg_jwks_alg_from_name(const char *name)
{
    for (size_t i = 0; name && i < sizeof(bg_jwks__algs) / sizeof(bg_jwks__algs[0]); i++)
        if (strcmp(name, bg_jwks__algs[i].name) == 0)
            return bg_jwks__algs[i].alg;
    return JWT_ALG_INVAL;
}

static int bg_jwks__b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

unsigned char *bg_jwks_b64url_decode(const char *s, size_t len, size_t *out_len)
{
    /* A remainder of 1 character cannot encode a byte. */
    if (len % 4 == 1)
        return NULL;
    unsigned char *out = malloc(len / 4 * 3 + 3);
    if (!out)
        return NULL;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = bg_jwks__b64val((unsigned char)s[i]);
        if (v < 0)
            goto fail;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* Canonical encoding only: leftover bits must be zero, so one byte
     * string has exactly one accepted spelling. */
    if (acc != 0)
        goto fail;
    out[o] = 0;
    *out_len = o;
    return out;
fail:
    free(out);
    return NULL;
}

/* Base64url member `name` of jwk, decoded; NULL when absent or invalid. */
static unsigned char *bg_jwks__member_b64(json_t *jwk, const char *name, size_t *len)
{
    const char *s = json_string_value(json_object_get(jwk, name));
    if (!s || !*s)
        return NULL;
    return bg_jwks_b64url_decode(s, strlen(s), len);
}

/* Keeps pkey in k after OpenSSL's own consistency check (odd modulus, point
 * on the curve...). Takes ownership of pkey on success. */
static int bg_jwks__keep(EVP_PKEY *pkey, bg_jwk_t *k)
{
    EVP_PKEY_CTX *chk = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    int ok = chk && EVP_PKEY_public_check(chk) == 1;
    EVP_PKEY_CTX_free(chk);
    if (!ok)
        return -1;
    k->pkey = pkey;
    return 0;
}

/* Builds a public key of type `name` ("RSA" or "EC") from params. */
static EVP_PKEY *bg_jwks__fromdata(const char *name, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, name, NULL);
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

static bg_jwks__res_t bg_jwks__rsa(json_t *jwk, bg_jwk_t *k, const char **why)
{
    size_t nlen = 0, elen = 0;
    unsigned char *nb = bg_jwks__member_b64(jwk, "n", &nlen);
    unsigned char *eb = bg_jwks__member_b64(jwk, "e", &elen);
    BIGNUM *n = nb ? BN_bin2bn(nb, (int)nlen, NULL) : NULL;
    BIGNUM *e = eb ? BN_bin2bn(eb, (int)elen, NULL) : NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pkey = NULL;
    bg_jwks__res_t res = BG_JWKS__BAD;
    *why = "RSA key: bad or missing n/e";
    if (!n || !e || !bld || BN_is_zero(n) || BN_num_bits(e) > 64)
        goto out;
    if (BN_num_bits(n) < BG_JWKS_MIN_RSA_BITS) {
        *why = "RSA key shorter than 2048 bits";
        res = BG_JWKS__SKIP;
        goto out;
    }
    /* Before OpenSSL's key check, whose cost a provider would otherwise set
     * (about 0.8 s per 16384-bit key, on the refresh thread). */
    if (BN_num_bits(n) > BG_JWKS_MAX_RSA_BITS) {
        *why = "RSA key longer than 8192 bits";
        res = BG_JWKS__SKIP;
        goto out;
    }
    if (OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) != 1)
        goto out;
    *why = "RSA key rejected by OpenSSL";
    if (!(pkey = bg_jwks__fromdata("RSA", bld)) || bg_jwks__keep(pkey, k) != 0)
        goto out;
    pkey = NULL; /* now owned by k */
    k->kty = BG_JWK_RSA;
    k->algs = BG_JWKS__RSA_ALGS;
    res = BG_JWKS__USED;
out:
    EVP_PKEY_free(pkey);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    free(nb);
    free(eb);
    return res;
}

static bg_jwks__res_t bg_jwks__ec(json_t *jwk, bg_jwk_t *k, const char **why)
{
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    size_t ci = 0, ncurves = sizeof(bg_jwks__curves) / sizeof(bg_jwks__curves[0]);
    while (crv && ci < ncurves && strcmp(crv, bg_jwks__curves[ci].crv) != 0)
        ci++;
    if (!crv || ci == ncurves) {
        *why = "EC key: unsupported crv";
        return BG_JWKS__SKIP;
    }
    size_t clen = bg_jwks__curves[ci].coord_len, xlen = 0, ylen = 0;
    unsigned char *x = bg_jwks__member_b64(jwk, "x", &xlen);
    unsigned char *y = bg_jwks__member_b64(jwk, "y", &ylen);
    unsigned char pub[1 + 2 * 66];
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pkey = NULL;
    bg_jwks__res_t res = BG_JWKS__BAD;
    *why = "EC key: bad or missing x/y";
    /* RFC 7518 6.2.1.2: coordinates are full-length, so check sizes exactly. */
    if (!x || !y || !bld || xlen != clen || ylen != clen)
        goto out;
    pub[0] = 0x04; /* uncompressed point */
    memcpy(pub + 1, x, clen);
    memcpy(pub + 1 + clen, y, clen);
    if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                        bg_jwks__curves[ci].group, 0) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 1 + 2 * clen) != 1)
        goto out;
    *why = "EC key rejected by OpenSSL (point not on curve?)";
    if (!(pkey = bg_jwks__fromdata("EC", bld)) || bg_jwks__keep(pkey, k) != 0)
        goto out;
    pkey = NULL; /* now owned by k */
    k->kty = BG_JWK_EC;
    k->algs = BG_JWK_ALG_BIT(bg_jwks__curves[ci].alg);
    res = BG_JWKS__USED;
out:
    EVP_PKEY_free(pkey);
    OSSL_PARAM_BLD_free(bld);
    free(x);
    free(y);
    return res;
}

static bg_jwks__res_t bg_jwks__oct(json_t *jwk, int allow_oct, bg_jwk_t *k, const char **why)
{
    if (!allow_oct) {
        *why = "oct (HMAC) key ignored: allow_hs256 is off";
        return BG_JWKS__SKIP;
    }
    size_t len = 0;
    unsigned char *secret = bg_jwks__member_b64(jwk, "k", &len);
    if (!secret || len < BG_JWKS_MIN_OCT_BYTES) {
        free(secret);
        *why = "oct key: missing or shorter than 32 bytes";
        return BG_JWKS__BAD;
    }
    k->kty = BG_JWK_OCT;
    /* RFC 7518 3.2: the key is at least as long as the hash output. */
    k->algs = BG_JWK_ALG_BIT(JWT_ALG_HS256);
    if (len >= 48)
        k->algs |= BG_JWK_ALG_BIT(JWT_ALG_HS384);
    if (len >= 64)
        k->algs |= BG_JWK_ALG_BIT(JWT_ALG_HS512);
    k->secret = secret;
    k->secret_len = len;
    return BG_JWKS__USED;
}

/* Narrows k->algs to the JWK's "alg" when present. An alg that does not fit
 * the key type, or that busgate cannot verify (EdDSA, ...), makes the key
 * unusable. */
static bg_jwks__res_t bg_jwks__narrow_alg(json_t *jwk, bg_jwk_t *k, const char **why)
{
    json_t *a = json_object_get(jwk, "alg");
    if (!a)
        return BG_JWKS__USED;
    jwt_alg_t alg = bg_jwks_alg_from_name(json_string_value(a));
    if (alg == JWT_ALG_INVAL || !(k->algs & BG_JWK_ALG_BIT(alg))) {
        *why = "JWK alg unsupported or does not match its kty/crv";
        return BG_JWKS__SKIP;
    }
    k->algs = BG_JWK_ALG_BIT(alg);
    return BG_JWKS__USED;
}

static void bg_jwks__key_clear(bg_jwk_t *k)
{
    free(k->kid);
    EVP_PKEY_free(k->pkey);
    if (k->secret)
        OPENSSL_cleanse(k->secret, k->secret_len);
    free(k->secret);
    memset(k, 0, sizeof(*k));
}

/* Whether the JWK may verify signatures (RFC 7517 4.2, 4.3): "use", when
 * present, must be the string "sig"; "key_ops", when present, an array
 * naming "verify". Anything else is a key published for another purpose. */
static int bg_jwks__for_verify(json_t *jwk, const char **why)
{
    json_t *use = json_object_get(jwk, "use"), *ops = json_object_get(jwk, "key_ops"), *op;
    size_t i;
    if (use && !(json_is_string(use) && strcmp(json_string_value(use), "sig") == 0)) {
        *why = "use is not sig";
        return 0;
    }
    if (!ops)
        return 1;
    if (json_is_array(ops))
        json_array_foreach (ops, i, op)
            if (json_is_string(op) && strcmp(json_string_value(op), "verify") == 0)
                return 1;
    *why = "key_ops does not name verify";
    return 0;
}

static bg_jwks__res_t bg_jwks__one(json_t *jwk, int allow_oct, bg_jwk_t *k, const char **why)
{
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    json_t *kid = json_object_get(jwk, "kid");
    bg_jwks__res_t r;
    memset(k, 0, sizeof(*k));
    *why = "not a JSON object with a string kty";
    if (!json_is_object(jwk) || !kty || (kid && !json_is_string(kid)))
        return BG_JWKS__BAD;
    if (!bg_jwks__for_verify(jwk, why))
        return BG_JWKS__SKIP;
    if (strcmp(kty, "RSA") == 0)
        r = bg_jwks__rsa(jwk, k, why);
    else if (strcmp(kty, "EC") == 0)
        r = bg_jwks__ec(jwk, k, why);
    else if (strcmp(kty, "oct") == 0)
        r = bg_jwks__oct(jwk, allow_oct, k, why);
    else {
        *why = "unsupported kty";
        return BG_JWKS__SKIP;
    }
    if (r == BG_JWKS__USED)
        r = bg_jwks__narrow_alg(jwk, k, why);
    if (r == BG_JWKS__USED && kid && !(k->kid = strdup(json_string_value(kid)))) {
        *why = "out of memory";
        r = BG_JWKS__BAD;
    }
    if (r != BG_JWKS__USED)
        bg_jwks__key_clear(k);
    return r;
}

static int bg_jwks__dup_kid(const bg_jwks_t *set, const char *kid)
{
    for (size_t i = 0; kid && i < set->nkeys; i++)
        if (set->keys[i].kid && strcmp(set->keys[i].kid, kid) == 0)
            return 1;
    return 0;
}

int bg_jwks_parse(const char *json, size_t len, int flags, const atomic_int *abort_flag,
                  bg_jwks_t *out, char *err, size_t errlen)
{
    int allow_oct = flags & BG_JWKS_ALLOW_OCT;
    json_error_t jerr;
    memset(out, 0, sizeof(*out));
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *keys = json_object_get(root, "keys");
    size_t n = json_array_size(keys), i;
    if (!root || !json_is_array(keys)) {
        snprintf(err, errlen, "JWKS is not a JSON object with a keys array");
        goto fail;
    }
    /* Each entry may cost a key check: bound the document's work as a whole
     * (its bytes alone would allow hundreds of large RSA keys). */
    if (n > BG_JWKS_MAX_KEYS) {
        snprintf(err, errlen, "JWKS has %zu keys, more than %d", n, BG_JWKS_MAX_KEYS);
        goto fail;
    }
    if (n && !(out->keys = calloc(n, sizeof(bg_jwk_t)))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (i = 0; i < n; i++) {
        const char *why = NULL;
        /* Between keys: whoever stops the caller waits for one key's check
         * at most, not for the whole set. */
        if (abort_flag && atomic_load(abort_flag)) {
            snprintf(err, errlen, "stopped");
            goto fail;
        }
        bg_jwk_t *k = &out->keys[out->nkeys];
        bg_jwks__res_t r = bg_jwks__one(json_array_get(keys, i), allow_oct, k, &why);
        if (r == BG_JWKS__SKIP || (r == BG_JWKS__BAD && (flags & BG_JWKS_SKIP_BROKEN))) {
            bg_log_warn("identity", "JWKS key #%zu skipped: %s", i, why);
            continue;
        }
        if (r == BG_JWKS__USED && bg_jwks__dup_kid(out, k->kid)) {
            bg_jwks__key_clear(k);
            why = "duplicate kid";
            r = BG_JWKS__BAD;
        }
        if (r == BG_JWKS__BAD) {
            snprintf(err, errlen, "JWKS key #%zu: %s", i, why);
            goto fail;
        }
        out->nkeys++;
    }
    json_decref(root);
    return 0;
fail:
    json_decref(root);
    bg_jwks_clear(out);
    return -1;
}

void bg_jwks_clear(bg_jwks_t *set)
{
    for (size_t i = 0; i < set->nkeys; i++)
        bg_jwks__key_clear(&set->keys[i]);
    free(set->keys);
    set->keys = NULL;
    set->nkeys = 0;
}

int bg_jwks_load_file(const char *path, int allow_oct, bg_jwks_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *buf = malloc(BG_JWKS_MAX_BYTES + 1);
    size_t len = buf ? fread(buf, 1, BG_JWKS_MAX_BYTES + 1, f) : 0;
    int rc = -1;
    if (!buf)
        snprintf(err, errlen, "out of memory");
    else if (ferror(f))
        snprintf(err, errlen, "%s: read error", path);
    else if (len > BG_JWKS_MAX_BYTES)
        snprintf(err, errlen, "%s: larger than %d bytes", path, BG_JWKS_MAX_BYTES);
    else if (bg_jwks_parse(buf, len, allow_oct ? BG_JWKS_ALLOW_OCT : 0, NULL, out, err, errlen) ==
             0)
        rc = 0;
    free(buf);
    fclose(f);
    return rc;
}

static const EVP_MD *bg_jwks__md(jwt_alg_t alg)
{
    if (alg == BG_JWT_ALG_PS256)
        return EVP_sha256();
    if (alg == BG_JWT_ALG_PS384)
        return EVP_sha384();
    if (alg == BG_JWT_ALG_PS512)
        return EVP_sha512();
    switch (alg) {
    case JWT_ALG_HS256:
    case JWT_ALG_RS256:
    case JWT_ALG_ES256:
        return EVP_sha256();
    case JWT_ALG_HS384:
    case JWT_ALG_RS384:
    case JWT_ALG_ES384:
        return EVP_sha384();
    case JWT_ALG_HS512:
    case JWT_ALG_RS512:
    case JWT_ALG_ES512:
        return EVP_sha512();
    default:
        return NULL;
    }
}

static int bg_jwks__verify_hmac(const bg_jwk_t *k, const EVP_MD *md, const char *in, size_t len,
                                const unsigned char *sig, size_t sig_len)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (!HMAC(md, k->secret, (int)k->secret_len, (const unsigned char *)in, len, mac, &mac_len))
        return 0;
    return mac_len == sig_len && CRYPTO_memcmp(mac, sig, sig_len) == 0;
}

/* pss: RSASSA-PSS with MGF1 over the same hash and a salt as long as the
 * hash (RFC 7518 3.5); otherwise the key's default (PKCS #1 v1.5, ECDSA). */
static int bg_jwks__digest_verify(EVP_PKEY *pkey, const EVP_MD *md, int pss, const char *in,
                                  size_t len, const unsigned char *sig, size_t sig_len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    int ok = ctx && EVP_DigestVerifyInit(ctx, &pctx, md, NULL, pkey) == 1;
    if (ok && pss)
        ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) == 1 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1;
    ok = ok && EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *)in, len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

/* JOSE ECDSA signatures are R||S, each the curve's byte size (RFC 7518
 * 3.4); OpenSSL wants DER. Any other length is refused, not normalised. */
static int bg_jwks__verify_ec(const bg_jwk_t *k, const EVP_MD *md, const char *in, size_t len,
                              const unsigned char *sig, size_t sig_len)
{
    size_t half = ((size_t)EVP_PKEY_get_bits(k->pkey) + 7) / 8;
    unsigned char *der = NULL;
    int ok = 0, der_len;
    if (sig_len != 2 * half)
        return 0;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, (int)half, NULL), *s = BN_bin2bn(sig + half, (int)half, NULL);
    if (!es || !r || !s || ECDSA_SIG_set0(es, r, s) != 1) {
        BN_free(r);
        BN_free(s);
        goto out;
    }
    if ((der_len = i2d_ECDSA_SIG(es, &der)) > 0)
        ok = bg_jwks__digest_verify(k->pkey, md, 0, in, len, der, (size_t)der_len);
out:
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    return ok;
}

int bg_jwks_verify(const bg_jwk_t *k, jwt_alg_t alg, const char *input, size_t input_len,
                   const unsigned char *sig, size_t sig_len)
{
    const EVP_MD *md = bg_jwks__md(alg);
    if (!md || !(k->algs & BG_JWK_ALG_BIT(alg)) || sig_len == 0)
        return 0;
    switch (k->kty) {
    case BG_JWK_OCT:
        return k->secret && bg_jwks__verify_hmac(k, md, input, input_len, sig, sig_len);
    case BG_JWK_RSA:
        return k->pkey && bg_jwks__digest_verify(k->pkey, md,
                                                 alg == BG_JWT_ALG_PS256 ||
                                                     alg == BG_JWT_ALG_PS384 ||
                                                     alg == BG_JWT_ALG_PS512,
                                                 input, input_len, sig, sig_len);
    case BG_JWK_EC:
        return k->pkey && bg_jwks__verify_ec(k, md, input, input_len, sig, sig_len);
    }
    return 0;
}
