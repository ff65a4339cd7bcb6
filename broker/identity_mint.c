/* `busgate token mint`: signs development/test tokens with libjwt. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "broker/identity.h"

/* RS256 for RSA keys, ES256 for P-256 keys, JWT_ALG_INVAL otherwise. */
static jwt_alg_t bg_identity__mint_alg(const char *pem, size_t len)
{
    jwt_alg_t alg = JWT_ALG_INVAL;
    char group[64];
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    if (pkey && EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA)
        alg = JWT_ALG_RS256;
    else if (pkey && EVP_PKEY_get_base_id(pkey) == EVP_PKEY_EC &&
             EVP_PKEY_get_utf8_string_param(pkey, "group", group, sizeof(group), NULL) == 1 &&
             strcmp(group, "prime256v1") == 0)
        alg = JWT_ALG_ES256;
    EVP_PKEY_free(pkey);
    BIO_free(bio);
    return alg;
}

/* A random (version 4) UUID for jti. */
static int bg_identity__uuid(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1)
        return -1;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
    return 0;
}

/* Adds "groups": [...] through libjwt's JSON entry point (it has no array
 * setter). */
static int bg_identity__add_groups(jwt_t *jwt, const char *const *groups, size_t n)
{
    json_t *obj = json_object(), *arr = json_array();
    int rc = -1;
    if (!obj || !arr)
        goto out;
    for (size_t i = 0; i < n; i++)
        if (json_array_append_new(arr, json_string(groups[i])) != 0)
            goto out;
    if (json_object_set(obj, "groups", arr) != 0)
        goto out;
    char *s = json_dumps(obj, JSON_COMPACT);
    rc = s && jwt_add_grants_json(jwt, s) == 0 ? 0 : -1;
    free(s);
out:
    json_decref(arr);
    json_decref(obj);
    return rc;
}

static int bg_identity__mint_claims(jwt_t *jwt, const char *kid, const char *sub,
                                    const char *const *groups, size_t ngroups, int64_t ttl_s,
                                    const char *iss, const char *aud)
{
    char jti[37];
    long now = (long)time(NULL);
    if (bg_identity__uuid(jti) != 0)
        return -1;
    int rc = jwt_add_grant(jwt, "sub", sub) | jwt_add_grant(jwt, "jti", jti) |
             jwt_add_grant_int(jwt, "iat", now) | jwt_add_grant_int(jwt, "exp", now + (long)ttl_s);
    if (iss)
        rc |= jwt_add_grant(jwt, "iss", iss);
    if (aud)
        rc |= jwt_add_grant(jwt, "aud", aud);
    if (kid)
        rc |= jwt_add_header(jwt, "kid", kid);
    if (rc == 0 && groups && ngroups)
        rc = bg_identity__add_groups(jwt, groups, ngroups);
    return rc ? -1 : 0;
}

char *bg_identity_mint(const char *key_pem, size_t key_len, const char *kid, const char *sub,
                       const char *const *groups, size_t ngroups, int64_t ttl_s, const char *iss,
                       const char *aud, char *err, size_t errlen)
{
    jwt_t *jwt = NULL;
    char *tok = NULL, *out = NULL;
    jwt_alg_t alg = key_pem ? bg_identity__mint_alg(key_pem, key_len) : JWT_ALG_INVAL;
    if (alg == JWT_ALG_INVAL) {
        snprintf(err, errlen, "key is not an RSA or EC P-256 private key PEM");
        return NULL;
    }
    if (!sub || !*sub || ttl_s <= 0) {
        snprintf(err, errlen, "sub and a positive ttl are required");
        return NULL;
    }
    if (jwt_new(&jwt) != 0 ||
        bg_identity__mint_claims(jwt, kid, sub, groups, ngroups, ttl_s, iss, aud) != 0 ||
        jwt_set_alg(jwt, alg, (const unsigned char *)key_pem, (int)key_len) != 0 ||
        !(tok = jwt_encode_str(jwt))) {
        snprintf(err, errlen, "signing failed");
        goto out;
    }
    /* Hand back memory from our own allocator, whatever libjwt uses. */
    if (!(out = strdup(tok)))
        snprintf(err, errlen, "out of memory");
out:
    free(tok);
    jwt_free(jwt);
    return out;
}
