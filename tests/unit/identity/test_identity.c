/* Identity verification: an attack table (each refused with its exact
 * reason), valid tokens with their principal, JWKS loading, minting. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/rsa.h>

#include "broker/config.h"
#include "broker/identity-internal.h"
#include "broker/identity.h"
#include "idtest.h"
#include "policy/policy.h"

#define NOW 1700000000LL
#define ISS "https://idp.test"
#define KC "https://kc.test"
#define HS "https://hs.test"

static const unsigned char hs_secret[] = "0123456789abcdef0123456789abcdef-hs";

static struct {
    EVP_PKEY *rsa, *ec, *foreign, *ec384;
    char *jwks_path, *hs_path;
    bg_identity_t *id;
} g;

static char *auds[] = {"other", "busgate"};

static bg_config_issuer_t mk_issuer(const char *iss, const char *file, const char *groups)
{
    bg_config_issuer_t c = {0};
    c.issuer = (char *)iss;
    c.audiences = auds;
    c.naudiences = 2;
    c.jwks_file = (char *)file;
    c.groups_claim = (char *)groups;
    return c;
}

static int setup(void **state)
{
    g.rsa = idt_rsa();
    g.ec = idt_ec("P-256");
    g.ec384 = idt_ec("P-384");
    g.foreign = idt_rsa();
    char *k[3] = {idt_jwk(g.rsa, "rsa1", NULL), idt_jwk(g.ec, "ec1", NULL),
                  idt_jwk_oct(hs_secret, 32, "hs1")};
    char *jwks = idt_jwks((const char *const *)k, 3);
    char *hsk = idt_jwks((const char *const *)&k[2], 1);
    g.jwks_path = idt_write_tmp(jwks);
    g.hs_path = idt_write_tmp(hsk);
    bg_config_issuer_t iss[3] = {mk_issuer(ISS, g.jwks_path, NULL),
                                 mk_issuer(KC, g.jwks_path, "realm_access.roles"),
                                 mk_issuer(HS, g.hs_path, NULL)};
    iss[2].allow_hs256 = 1;
    bg_config_identity_t cfg = {.issuers = iss, .nissuers = 3, .clock_skew_ms = 30000};
    char err[256] = "";
    g.id = bg_identity_new(&cfg, err, sizeof(err));
    for (int i = 0; i < 3; i++)
        free(k[i]);
    free(jwks);
    free(hsk);
    if (!g.id)
        fprintf(stderr, "bg_identity_new: %s\n", err);
    return g.id ? 0 : -1;
}

static int teardown(void **state)
{
    bg_identity_free(g.id);
    unlink(g.jwks_path);
    unlink(g.hs_path);
    free(g.jwks_path);
    free(g.hs_path);
    EVP_PKEY_free(g.rsa);
    EVP_PKEY_free(g.ec);
    EVP_PKEY_free(g.ec384);
    EVP_PKEY_free(g.foreign);
    return 0;
}

static bg_id_reason_t verify(const char *tok, size_t len, bg_principal_t *p)
{
    char detail[128] = "";
    bg_id_reason_t r = bg_identity_verify(g.id, tok, len, NOW, p, detail, sizeof(detail));
    /* The detail never echoes token bytes. */
    if (len > 20) {
        char probe[21];
        memcpy(probe, tok + len - 20, 20);
        probe[20] = 0;
        assert_null(strstr(detail, probe));
    }
    if (r != BG_ID_OK)
        assert_true(detail[0] != 0);
    return r;
}

/* ---- the attack table ---- */

#define GOOD "\"iss\":\"" ISS "\",\"aud\":\"busgate\",\"sub\":\"alice\""
#define EXP_OK "\"exp\":1700000600"

typedef enum {
    M_NONE = 0,
    M_TAMPER,      /* replace the payload after signing */
    M_TRUNC_SIG,   /* cut the token in the middle of the signature */
    M_TRUNC_BODY,  /* cut it in the middle of the payload */
    M_BAD_CHAR,    /* a '+' (base64, not base64url) in the payload */
    M_PAD,         /* '=' padding after the signature */
    M_SPACE,       /* trailing whitespace */
    M_SIG_RSA,     /* alg none, but an RS256 signature appended */
    M_NONCANON,    /* the signature's unused last bits set: same bytes, another spelling */
} mutation_t;

typedef struct {
    const char *name;
    const char *hdr, *claims, *alg;
    int signer; /* 0 rsa, 1 ec, 2 foreign rsa, 3 HMAC with RSA public PEM, 4 HMAC secret, 5 ec384 */
    mutation_t m;
    bg_id_reason_t want;
} attack_t;

static const attack_t attacks[] = {
    {"alg none, no signature", "{\"alg\":\"none\",\"typ\":\"JWT\"}", "{" GOOD "," EXP_OK "}",
     "none", 0, M_NONE, BG_ID_ALG_NOT_ALLOWED},
    {"alg none with a signature", "{\"alg\":\"none\",\"kid\":\"rsa1\"}", "{" GOOD "," EXP_OK "}",
     "none", 0, M_SIG_RSA, BG_ID_ALG_NOT_ALLOWED},
    {"alg None spelling", "{\"alg\":\"None\"}", "{" GOOD "," EXP_OK "}", "none", 0, M_NONE,
     BG_ID_ALG_NOT_ALLOWED},
    {"HS256 keyed with the RSA public PEM", "{\"alg\":\"HS256\",\"kid\":\"rsa1\"}",
     "{" GOOD "," EXP_OK "}", "HS256", 3, M_NONE, BG_ID_ALG_NOT_ALLOWED},
    {"HS256 keyed with the RSA public PEM, no kid", "{\"alg\":\"HS256\"}", "{" GOOD "," EXP_OK "}",
     "HS256", 3, M_NONE, BG_ID_ALG_NOT_ALLOWED},
    {"HS256 with an oct key the issuer does not allow", "{\"alg\":\"HS256\",\"kid\":\"hs1\"}",
     "{" GOOD "," EXP_OK "}", "HS256", 4, M_NONE, BG_ID_UNKNOWN_KID},
    {"RS256 by a foreign key with our kid", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{" GOOD "," EXP_OK "}", "RS256", 2, M_NONE, BG_ID_BAD_SIGNATURE},
    {"RS256 by a foreign key, no kid", "{\"alg\":\"RS256\"}", "{" GOOD "," EXP_OK "}", "RS256", 2,
     M_NONE, BG_ID_BAD_SIGNATURE},
    {"tampered payload", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", "{" GOOD "," EXP_OK "}", "RS256",
     0, M_TAMPER, BG_ID_BAD_SIGNATURE},
    {"RS256 header on the EC key", "{\"alg\":\"RS256\",\"kid\":\"ec1\"}", "{" GOOD "," EXP_OK "}",
     "RS256", 0, M_NONE, BG_ID_ALG_NOT_ALLOWED},
    {"ES256 header on the RSA key", "{\"alg\":\"ES256\",\"kid\":\"rsa1\"}", "{" GOOD "," EXP_OK "}",
     "ES256", 1, M_NONE, BG_ID_ALG_NOT_ALLOWED},
    {"ES384 on a P-256 key", "{\"alg\":\"ES384\",\"kid\":\"ec1\"}", "{" GOOD "," EXP_OK "}",
     "ES384", 5, M_NONE, BG_ID_ALG_NOT_ALLOWED},
    {"PS256 by our key", "{\"alg\":\"PS256\",\"kid\":\"rsa1\"}", "{" GOOD "," EXP_OK "}",
     "PS256", 0, M_NONE, BG_ID_OK},
    {"PS512 by our key", "{\"alg\":\"PS512\",\"kid\":\"rsa1\"}", "{" GOOD "," EXP_OK "}",
     "PS512", 0, M_NONE, BG_ID_OK},
    {"PS256 by a foreign key with our kid", "{\"alg\":\"PS256\",\"kid\":\"rsa1\"}",
     "{" GOOD "," EXP_OK "}", "PS256", 2, M_NONE, BG_ID_BAD_SIGNATURE},
    {"PS256 header, PKCS #1 v1.5 signature", "{\"alg\":\"PS256\",\"kid\":\"rsa1\"}",
     "{" GOOD "," EXP_OK "}", "RS256", 0, M_NONE, BG_ID_BAD_SIGNATURE},
    {"RS256 header, PSS signature", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{" GOOD "," EXP_OK "}", "PS256", 0, M_NONE, BG_ID_BAD_SIGNATURE},
    {"PS256 header on the EC key", "{\"alg\":\"PS256\",\"kid\":\"ec1\"}",
     "{" GOOD "," EXP_OK "}", "PS256", 0, M_NONE, BG_ID_ALG_NOT_ALLOWED},
    {"EdDSA (unsupported)", "{\"alg\":\"EdDSA\",\"kid\":\"rsa1\"}", "{" GOOD "," EXP_OK "}",
     "RS256", 0, M_NONE, BG_ID_ALG_NOT_ALLOWED},
    {"expired", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", "{" GOOD ",\"exp\":1699999000}", "RS256",
     0, M_NONE, BG_ID_EXPIRED},
    {"expired just beyond the skew", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{" GOOD ",\"exp\":1699999970}", "RS256", 0, M_NONE, BG_ID_EXPIRED},
    {"expired within the skew", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{" GOOD ",\"exp\":1699999990}", "RS256", 0, M_NONE, BG_ID_OK},
    {"nbf in the future", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{" GOOD ",\"nbf\":1700000100,\"exp\":1700001200}", "RS256", 0, M_NONE,
     BG_ID_NOT_YET_VALID},
    {"nbf within the skew", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{" GOOD ",\"nbf\":1700000020,\"exp\":1700001200}", "RS256", 0, M_NONE, BG_ID_OK},
    {"iat in the future", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{" GOOD ",\"iat\":1700000100,\"exp\":1700001200}", "RS256", 0, M_NONE,
     BG_ID_NOT_YET_VALID},
    {"iat within the skew", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{" GOOD ",\"iat\":1700000020,\"exp\":1700001200}", "RS256", 0, M_NONE, BG_ID_OK},
    {"exp beyond year 318857", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{" GOOD ",\"exp\":10000000000001}", "RS256", 0, M_NONE, BG_ID_MALFORMED},
    {"nbf at the edge of the skew", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{" GOOD ",\"nbf\":1700000030,\"exp\":1700001200}", "RS256", 0, M_NONE, BG_ID_OK},
    {"nbf just beyond the skew", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{" GOOD ",\"nbf\":1700000031,\"exp\":1700001200}", "RS256", 0, M_NONE,
     BG_ID_NOT_YET_VALID},
    {"nbf as a string", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{" GOOD ",\"nbf\":\"1700000100\",\"exp\":1700001200}", "RS256", 0, M_NONE,
     BG_ID_MALFORMED},
    {"iat at the edge of the skew", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{" GOOD ",\"iat\":1700000030,\"exp\":1700001200}", "RS256", 0, M_NONE, BG_ID_OK},
    {"iat just beyond the skew", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{" GOOD ",\"iat\":1700000031,\"exp\":1700001200}", "RS256", 0, M_NONE,
     BG_ID_NOT_YET_VALID},
    {"iat as a string", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{" GOOD ",\"iat\":\"1700000100\",\"exp\":1700001200}", "RS256", 0, M_NONE,
     BG_ID_MALFORMED},
    {"wrong iss", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{\"iss\":\"https://evil.test\",\"aud\":\"busgate\",\"sub\":\"a\"," EXP_OK "}", "RS256", 0,
     M_NONE, BG_ID_WRONG_ISSUER},
    {"iss with a trailing slash", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{\"iss\":\"" ISS "/\",\"aud\":\"busgate\",\"sub\":\"a\"," EXP_OK "}", "RS256", 0, M_NONE,
     BG_ID_WRONG_ISSUER},
    {"wrong aud", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{\"iss\":\"" ISS "\",\"aud\":\"kafka\",\"sub\":\"a\"," EXP_OK "}", "RS256", 0, M_NONE,
     BG_ID_WRONG_AUDIENCE},
    {"aud array without ours", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{\"iss\":\"" ISS "\",\"aud\":[\"a\",\"b\"],\"sub\":\"a\"," EXP_OK "}", "RS256", 0, M_NONE,
     BG_ID_WRONG_AUDIENCE},
    {"aud only starting with ours", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{\"iss\":\"" ISS "\",\"aud\":\"busgate-evil\",\"sub\":\"a\"," EXP_OK "}", "RS256", 0,
     M_NONE, BG_ID_WRONG_AUDIENCE},
    {"aud array, one only starting with ours", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{\"iss\":\"" ISS "\",\"aud\":[\"busgatex\"],\"sub\":\"a\"," EXP_OK "}", "RS256", 0,
     M_NONE, BG_ID_WRONG_AUDIENCE},
    {"aud missing", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{\"iss\":\"" ISS "\",\"sub\":\"a\"," EXP_OK "}", "RS256", 0, M_NONE, BG_ID_WRONG_AUDIENCE},
    {"aud array with ours", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{\"iss\":\"" ISS "\",\"aud\":[\"x\",\"busgate\"],\"sub\":\"a\"," EXP_OK "}", "RS256", 0,
     M_NONE, BG_ID_OK},
    {"missing exp", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", "{" GOOD "}", "RS256", 0, M_NONE,
     BG_ID_MALFORMED},
    {"exp as a string", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", "{" GOOD ",\"exp\":\"1700000600\"}",
     "RS256", 0, M_NONE, BG_ID_MALFORMED},
    {"missing sub", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{\"iss\":\"" ISS "\",\"aud\":\"busgate\"," EXP_OK "}", "RS256", 0, M_NONE, BG_ID_MALFORMED},
    {"empty sub", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{\"iss\":\"" ISS "\",\"aud\":\"busgate\",\"sub\":\"\"," EXP_OK "}", "RS256", 0, M_NONE,
     BG_ID_MALFORMED},
    {"missing iss", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{\"aud\":\"busgate\",\"sub\":\"a\"," EXP_OK "}", "RS256", 0, M_NONE, BG_ID_MALFORMED},
    {"groups of the wrong type", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{" GOOD "," EXP_OK ",\"groups\":[\"a\",3]}", "RS256", 0, M_NONE, BG_ID_MALFORMED},
    {"groups an object", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{" GOOD "," EXP_OK ",\"groups\":{\"admin\":true}}", "RS256", 0, M_NONE, BG_ID_MALFORMED},
    {"groups a number", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{" GOOD "," EXP_OK ",\"groups\":7}", "RS256", 0, M_NONE, BG_ID_MALFORMED},
    {"duplicate claim", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{" GOOD "," EXP_OK ",\"sub\":\"root\"}", "RS256", 0, M_NONE, BG_ID_MALFORMED},
    {"kid not in the set", "{\"alg\":\"RS256\",\"kid\":\"rsa9\"}", "{" GOOD "," EXP_OK "}",
     "RS256", 0, M_NONE, BG_ID_UNKNOWN_KID},
    {"kid with ../", "{\"alg\":\"RS256\",\"kid\":\"../../../dev/null\"}",
     "{" GOOD "," EXP_OK "}", "RS256", 2, M_NONE, BG_ID_UNKNOWN_KID},
    {"kid not a string", "{\"alg\":\"RS256\",\"kid\":7}", "{" GOOD "," EXP_OK "}", "RS256", 0,
     M_NONE, BG_ID_MALFORMED},
    {"jku to the attacker, attacker kid",
     "{\"alg\":\"RS256\",\"kid\":\"evil\",\"jku\":\"http://127.0.0.1:1/jwks.json\"}",
     "{" GOOD "," EXP_OK "}", "RS256", 2, M_NONE, BG_ID_UNKNOWN_KID},
    {"jku to the attacker, our kid",
     "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"jku\":\"http://127.0.0.1:1/jwks.json\"}",
     "{" GOOD "," EXP_OK "}", "RS256", 2, M_NONE, BG_ID_BAD_SIGNATURE},
    {"x5u to the attacker", "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"x5u\":\"http://127.0.0.1:1/c\"}",
     "{" GOOD "," EXP_OK "}", "RS256", 2, M_NONE, BG_ID_BAD_SIGNATURE},
    {"crit header", "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"crit\":[\"exp\"]}",
     "{" GOOD "," EXP_OK "}", "RS256", 0, M_NONE, BG_ID_MALFORMED},
    {"header without alg", "{\"kid\":\"rsa1\"}", "{" GOOD "," EXP_OK "}", "RS256", 0, M_NONE,
     BG_ID_MALFORMED},
    {"header not an object", "[\"RS256\"]", "{" GOOD "," EXP_OK "}", "RS256", 0, M_NONE,
     BG_ID_MALFORMED},
    {"payload not JSON", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", "iss=" ISS, "RS256", 0, M_NONE,
     BG_ID_MALFORMED},
    {"truncated signature", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", "{" GOOD "," EXP_OK "}",
     "RS256", 0, M_TRUNC_SIG, BG_ID_BAD_SIGNATURE},
    {"truncated payload", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", "{" GOOD "," EXP_OK "}", "RS256",
     0, M_TRUNC_BODY, BG_ID_MALFORMED},
    {"signature spelled with its unused bits set", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}",
     "{" GOOD "," EXP_OK "}", "RS256", 0, M_NONCANON, BG_ID_BAD_SIGNATURE},
    {"base64 '+' in the payload", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", "{" GOOD "," EXP_OK "}",
     "RS256", 0, M_BAD_CHAR, BG_ID_MALFORMED},
    {"padding", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", "{" GOOD "," EXP_OK "}", "RS256", 0, M_PAD,
     BG_ID_MALFORMED},
    {"trailing whitespace", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", "{" GOOD "," EXP_OK "}",
     "RS256", 0, M_SPACE, BG_ID_MALFORMED},
};

static char *attack_token(const attack_t *a)
{
    static const char *pem_cache;
    EVP_PKEY *keys[] = {g.rsa, g.ec, g.foreign, NULL, NULL, g.ec384};
    const void *secret = hs_secret;
    size_t n = 32;
    if (a->signer == 3) {
        /* The classic confusion: the public key PEM, which the attacker
         * knows, used as an HMAC secret. */
        pem_cache = idt_pub_pem(g.rsa);
        secret = pem_cache;
        n = strlen(pem_cache);
    }
    char *t = idt_token(a->hdr, a->claims, a->alg, keys[a->signer], secret, n);
    if (a->signer == 3)
        free((void *)pem_cache);
    char *d1 = strchr(t, '.'), *d2 = strrchr(t, '.');
    size_t len = strlen(t);
    switch (a->m) {
    case M_NONE:
        break;
    case M_TAMPER: {
        const char *evil = "{\"iss\":\"" ISS "\",\"aud\":\"busgate\",\"sub\":\"root\"," EXP_OK "}";
        char *p = idt_b64url(evil, strlen(evil)), *out = malloc(len + strlen(p) + 1);
        sprintf(out, "%.*s.%s%s", (int)(d1 - t), t, p, d2);
        free(p);
        free(t);
        return out;
    }
    case M_TRUNC_SIG:
        t[len - (len - (size_t)(d2 - t)) / 2] = 0;
        break;
    case M_TRUNC_BODY:
        t[(size_t)(d1 - t) + (size_t)(d2 - d1) / 2] = 0;
        break;
    case M_BAD_CHAR:
        d1[3] = '+';
        break;
    case M_PAD:
    case M_SPACE:
        t = realloc(t, len + 3);
        strcat(t, a->m == M_PAD ? "==" : " ");
        break;
    case M_SIG_RSA: {
        char *s = idt_token(a->hdr, a->claims, "RS256", g.rsa, NULL, 0);
        free(t);
        return s;
    }
    case M_NONCANON: {
        /* 256 bytes are 342 characters whose last 4 bits encode nothing
         * (zero when canonical): setting one decodes to the same bytes. */
        static const char b64[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        char *c = &t[len - 1];
        *c = b64[(strchr(b64, *c) - b64) | 1];
        break;
    }
    }
    return t;
}

static void test_attack_table(void **state)
{
    for (size_t i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++) {
        const attack_t *a = &attacks[i];
        char *t = attack_token(a);
        bg_principal_t p;
        bg_id_reason_t r = verify(t, strlen(t), &p);
        if (r != a->want)
            fail_msg("%s: got %s, want %s", a->name, bg_id_reason_str(r),
                     bg_id_reason_str(a->want));
        if (r != BG_ID_OK)
            assert_null(p.sub);
        bg_principal_clear(&p);
        free(t);
    }
}

static void test_size_and_shape(void **state)
{
    bg_principal_t p;
    size_t big = 1024 * 1024;
    char *t = malloc(big);
    memset(t, 'A', big);
    t[100] = '.';
    t[200] = '.';
    assert_int_equal(verify(t, big, &p), BG_ID_TOO_LARGE);
    assert_int_equal(verify(t, BG_IDENTITY_MAX_TOKEN + 1, &p), BG_ID_TOO_LARGE);
    /* At the limit it is parsed (and found malformed: 'AAAA' is not JSON). */
    assert_int_equal(verify(t, BG_IDENTITY_MAX_TOKEN, &p), BG_ID_MALFORMED);
    free(t);
    assert_int_equal(verify("", 0, &p), BG_ID_MALFORMED);
    assert_int_equal(verify(NULL, 0, &p), BG_ID_MALFORMED);
    assert_int_equal(verify("...", 3, &p), BG_ID_MALFORMED);
    assert_int_equal(verify("..", 2, &p), BG_ID_MALFORMED);
    assert_int_equal(verify("a.b.c.d", 7, &p), BG_ID_MALFORMED);
    assert_int_equal(verify("not a token", 11, &p), BG_ID_MALFORMED);
    /* Not NUL-terminated: only len bytes are read. */
    const char *hdr = "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}";
    char *good = idt_token(hdr, "{" GOOD "," EXP_OK "}", "RS256", g.rsa, NULL, 0);
    size_t gl = strlen(good);
    char *padded = malloc(gl + 8);
    memcpy(padded, good, gl);
    memcpy(padded + gl, "garbage!", 8);
    assert_int_equal(verify(padded, gl, &p), BG_ID_OK);
    bg_principal_clear(&p);
    assert_int_equal(verify(padded, gl + 8, &p), BG_ID_MALFORMED);
    free(padded);
    free(good);
}

static void test_valid_rs256(void **state)
{
    const char *claims = "{" GOOD ",\"exp\":1700000600,\"iat\":1699999900,\"jti\":\"j-1\","
                         "\"azp\":\"cli\",\"groups\":[\"dev\",\"ops\"]}";
    char *t = idt_token("{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"typ\":\"JWT\"}", claims, "RS256",
                        g.rsa, NULL, 0);
    bg_principal_t p, c;
    assert_int_equal(verify(t, strlen(t), &p), BG_ID_OK);
    assert_string_equal(p.sub, "alice");
    assert_string_equal(p.issuer, ISS);
    assert_string_equal(p.token_id, "j-1");
    assert_string_equal(p.client_id, "cli");
    assert_int_equal(p.exp, 1700000600);
    assert_int_equal(p.iat, 1699999900);
    assert_int_equal(p.ngroups, 2);
    assert_string_equal(p.groups[0], "dev");
    assert_string_equal(p.groups[1], "ops");
    assert_int_equal(bg_principal_copy(&c, &p), 0);
    assert_true(bg_principal_same(&c, &p));
    free(c.issuer); /* same sub from another issuer: someone else */
    c.issuer = strdup("https://other.example");
    assert_false(bg_principal_same(&c, &p));
    free(c.issuer);
    c.issuer = NULL;
    assert_false(bg_principal_same(&c, &p));
    bg_principal_clear(&p);
    assert_string_equal(c.sub, "alice");
    assert_string_equal(c.groups[1], "ops");
    assert_string_equal(c.client_id, "cli");
    bg_principal_clear(&c);
    assert_null(c.sub);
    free(t);
}

static void test_valid_es256_and_typ(void **state)
{
    /* RFC 9068 access tokens say typ at+jwt (libjwt 1.10 would refuse it). */
    const char *claims = "{" GOOD "," EXP_OK ",\"client_id\":\"svc\",\"groups\":\"solo\"}";
    char *t = idt_token("{\"alg\":\"ES256\",\"kid\":\"ec1\",\"typ\":\"at+jwt\"}", claims, "ES256",
                        g.ec, NULL, 0);
    bg_principal_t p;
    assert_int_equal(verify(t, strlen(t), &p), BG_ID_OK);
    assert_string_equal(p.client_id, "svc");
    assert_null(p.token_id);
    assert_int_equal(p.iat, 0);
    assert_int_equal(p.ngroups, 1);
    assert_string_equal(p.groups[0], "solo");
    bg_principal_clear(&p);
    /* Change one character of the signature (to another base64url one). */
    char *c = &t[strlen(t) - 5];
    *c = *c == 'A' ? 'B' : 'A';
    assert_int_equal(verify(t, strlen(t), &p), BG_ID_BAD_SIGNATURE);
    free(t);
}

static void test_no_kid_single_usable_key(void **state)
{
    /* The set has one RSA and one EC key: RS256 without kid picks the RSA one. */
    bg_principal_t p;
    char *t = idt_token("{\"alg\":\"RS256\"}", "{" GOOD "," EXP_OK "}", "RS256", g.rsa, NULL, 0);
    assert_int_equal(verify(t, strlen(t), &p), BG_ID_OK);
    assert_int_equal(p.ngroups, 0);
    bg_principal_clear(&p);
    free(t);
    t = idt_token("{\"alg\":\"ES256\"}", "{" GOOD "," EXP_OK "}", "ES256", g.ec, NULL, 0);
    assert_int_equal(verify(t, strlen(t), &p), BG_ID_OK);
    bg_principal_clear(&p);
    free(t);
    /* Two RSA keys: RS256 without kid is unknown_kid, whichever signed it,
     * not a try of one of them (nor of both). */
    char err[256] = "", *k[2] = {idt_jwk(g.rsa, "a", NULL), idt_jwk(g.foreign, "b", NULL)};
    char *set = idt_jwks((const char *const *)k, 2), *path = idt_write_tmp(set);
    bg_config_issuer_t iss = mk_issuer(ISS, path, NULL);
    bg_config_identity_t cfg = {.issuers = &iss, .nissuers = 1};
    bg_identity_t *two = bg_identity_new(&cfg, err, sizeof err);
    if (!two)
        fail_msg("two RSA keys: %s", err);
    for (int i = 0; i < 2; i++) {
        t = idt_token("{\"alg\":\"RS256\"}", "{" GOOD "," EXP_OK "}", "RS256",
                      i ? g.foreign : g.rsa, NULL, 0);
        assert_int_equal(bg_identity_verify(two, t, strlen(t), NOW, &p, NULL, 0),
                         BG_ID_UNKNOWN_KID);
        assert_null(p.sub);
        free(t);
    }
    bg_identity_free(two);
    unlink(path);
    free(path);
    free(set);
    free(k[0]);
    free(k[1]);
}

static void test_groups_dotted_path(void **state)
{
    const char *claims = "{\"iss\":\"" KC "\",\"aud\":[\"busgate\"],\"sub\":\"bob\"," EXP_OK
                         ",\"realm_access\":{\"roles\":[\"admin\",\"reader\"]},"
                         "\"groups\":[\"ignored\"]}";
    char *t = idt_token("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", claims, "RS256", g.rsa, NULL, 0);
    bg_principal_t p;
    assert_int_equal(verify(t, strlen(t), &p), BG_ID_OK);
    assert_string_equal(p.issuer, KC);
    assert_int_equal(p.ngroups, 2);
    assert_string_equal(p.groups[0], "admin");
    assert_string_equal(p.groups[1], "reader");
    bg_principal_clear(&p);
    free(t);
    /* Path absent: no groups, still authenticated. */
    claims = "{\"iss\":\"" KC "\",\"aud\":\"busgate\",\"sub\":\"bob\"," EXP_OK
             ",\"realm_access\":{}}";
    t = idt_token("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", claims, "RS256", g.rsa, NULL, 0);
    assert_int_equal(verify(t, strlen(t), &p), BG_ID_OK);
    assert_int_equal(p.ngroups, 0);
    bg_principal_clear(&p);
    free(t);
}

static void test_hs256_when_allowed(void **state)
{
    const char *claims = "{\"iss\":\"" HS "\",\"aud\":\"busgate\",\"sub\":\"h\"," EXP_OK "}";
    const char *hdr = "{\"alg\":\"HS256\",\"kid\":\"hs1\"}";
    char *t = idt_token(hdr, claims, "HS256", NULL, hs_secret, 32);
    bg_principal_t p;
    assert_int_equal(verify(t, strlen(t), &p), BG_ID_OK);
    bg_principal_clear(&p);
    free(t);
    /* Same issuer, wrong secret. */
    t = idt_token("{\"alg\":\"HS256\",\"kid\":\"hs1\"}", claims, "HS256", NULL,
                  "another-secret-of-32-bytes-long!", 32);
    assert_int_equal(verify(t, strlen(t), &p), BG_ID_BAD_SIGNATURE);
    free(t);
    /* RS256 on an oct key. */
    t = idt_token("{\"alg\":\"RS256\",\"kid\":\"hs1\"}", claims, "RS256", g.rsa, NULL, 0);
    assert_int_equal(verify(t, strlen(t), &p), BG_ID_ALG_NOT_ALLOWED);
    free(t);
    /* RFC 7518 3.2: a 32-byte key is too short for HS384 and HS512. */
    t = idt_token("{\"alg\":\"HS384\",\"kid\":\"hs1\"}", claims, "HS384", NULL, hs_secret, 32);
    assert_int_equal(verify(t, strlen(t), &p), BG_ID_ALG_NOT_ALLOWED);
    free(t);
    t = idt_token("{\"alg\":\"HS512\",\"kid\":\"hs1\"}", claims, "HS512", NULL, hs_secret, 32);
    assert_int_equal(verify(t, strlen(t), &p), BG_ID_ALG_NOT_ALLOWED);
    free(t);
}

static void test_reason_strings(void **state)
{
    const char *want[] = {"ok",           "expired",         "not_yet_valid", "bad_signature",
                          "unknown_kid",  "alg_not_allowed", "wrong_issuer",  "wrong_audience",
                          "malformed",    "too_large"};
    for (int r = BG_ID_OK; r <= BG_ID_TOO_LARGE; r++)
        assert_string_equal(bg_id_reason_str((bg_id_reason_t)r), want[r]);
}

/* ---- JWKS loading ---- */

static bg_identity_t *new_with_jwks(const char *jwks, int allow_hs, char *err, size_t n)
{
    char *path = idt_write_tmp(jwks);
    bg_config_issuer_t iss = mk_issuer(ISS, path, NULL);
    iss.allow_hs256 = allow_hs;
    bg_config_identity_t cfg = {.issuers = &iss, .nissuers = 1};
    bg_identity_t *id = bg_identity_new(&cfg, err, n);
    unlink(path);
    free(path);
    return id;
}

static void test_jwks_errors(void **state)
{
    char err[256];
    EVP_PKEY *small = EVP_RSA_gen(1024);
    char *k_small = idt_jwk(small, "s", NULL), *k_rsa = idt_jwk(g.rsa, "a", NULL);
    char *k_ec = idt_jwk(g.ec, "e", NULL), *k_mis = idt_jwk(g.rsa, "m", "ES256");
    /* A usable RSA key but for its kid, a number; an HMAC secret one byte
     * short of 32. */
    char *num_kid = strdup(k_rsa), *kid_at = strstr(num_kid, "\"kid\":\"a\"");
    assert_non_null(kid_at);
    memcpy(kid_at, "\"kid\":7  ", 9); /* as long as "kid":"a" */
    char *num_kid_set = idt_jwks((const char *const *)&num_kid, 1);
    char *k31 = idt_b64url(hs_secret, 31), short_oct[128];
    snprintf(short_oct, sizeof short_oct, "{\"keys\":[{\"kty\":\"oct\",\"k\":\"%s\"}]}", k31);
    const char *bad[] = {
        num_kid_set, short_oct,
        "not json", "{\"keys\":{}}", "[]",
        "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"x\",\"n\":\"AQAB\"}]}",           /* no e */
        "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"x\",\"n\":\"A+B\",\"e\":\"AQAB\"}]}", /* bad b64 */
        "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"x\",\"k\":\"c2hvcnQ\"}]}",        /* short secret */
        "{\"keys\":[]}",                                                          /* no key */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        bg_identity_t *id = new_with_jwks(bad[i], 1, err, sizeof(err));
        if (id)
            fail_msg("JWKS #%zu accepted", i);
        assert_true(err[0] != 0);
    }
    /* Skipped keys: 1024-bit RSA, alg that does not fit the kty, oct without
     * allow_hs256, unknown kty, enc keys. Alone they leave no usable key. */
    char *only_small = idt_jwks((const char *const *)&k_small, 1);
    assert_null(new_with_jwks(only_small, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "no usable key"));
    char *only_mis = idt_jwks((const char *const *)&k_mis, 1);
    assert_null(new_with_jwks(only_mis, 0, err, sizeof(err)));
    const char *oct = "{\"keys\":[{\"kty\":\"oct\",\"k\":"
                      "\"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY\"},"
                      "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AA\"}]}";
    assert_null(new_with_jwks(oct, 0, err, sizeof(err)));
    bg_identity_t *id = new_with_jwks(oct, 1, err, sizeof(err));
    assert_non_null(id);
    bg_identity_free(id);
    /* Keys published for another purpose (RFC 7517 4.2, 4.3) are skipped: a
     * use that is not the string "sig", a key_ops without "verify". With
     * "use":"sig" or key_ops naming verify the same key is used. */
    const char *not_for_verify[] = {"\"use\":\"enc\"", "\"use\":5", "\"use\":null",
                                    "\"use\":\"SIG\"", "\"key_ops\":[\"encrypt\"]",
                                    "\"key_ops\":[]", "\"key_ops\":\"verify\"",
                                    "\"use\":\"sig\",\"key_ops\":[\"sign\",5]"};
    const char *for_verify[] = {"\"use\":\"sig\"", "\"key_ops\":[\"sign\",\"verify\"]",
                                "\"use\":\"sig\",\"key_ops\":[\"verify\"]"};
    char *bare = strdup(k_rsa), *use = strstr(bare, ",\"use\":\"sig\""); /* idt_jwk's */
    assert_non_null(use);
    memmove(use, use + 12, strlen(use + 12) + 1);
    for (size_t i = 0; i < 8 + 3; i++) {
        const char *member = i < 8 ? not_for_verify[i] : for_verify[i - 8];
        char set[4096];
        snprintf(set, sizeof(set), "{\"keys\":[{%s,%s]}", member, bare + 1); /* bare ends in } */
        err[0] = 0;
        id = new_with_jwks(set, 0, err, sizeof(err));
        if ((id != NULL) != (i >= 8))
            fail_msg("JWK with %s: %s", member, id ? "used" : err);
        if (!id && !strstr(err, "no usable key"))
            fail_msg("JWK with %s: %s", member, err);
        bg_identity_free(id);
    }
    free(bare);
    /* Duplicate kid. */
    const char *dup[] = {k_rsa, k_rsa};
    char *dupj = idt_jwks(dup, 2);
    assert_null(new_with_jwks(dupj, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "duplicate kid"));
    /* EC point moved off the curve: y coordinate altered. */
    char *off = strdup(k_ec), *y = strstr(off, "\"y\":\"") + 5;
    y[0] = y[0] == 'A' ? 'B' : 'A';
    char *offj = idt_jwks((const char *const *)&off, 1);
    assert_null(new_with_jwks(offj, 0, err, sizeof(err)));
    EVP_PKEY_free(small);
    free(num_kid);
    free(num_kid_set);
    free(k31);
    free(k_small);
    free(k_rsa);
    free(k_ec);
    free(k_mis);
    free(only_small);
    free(only_mis);
    free(dupj);
    free(off);
    free(offj);
}

/* Verifies t against id (not g.id) at NOW. */
static bg_id_reason_t verify_with(bg_identity_t *id, const char *t)
{
    bg_principal_t p;
    bg_id_reason_t r = bg_identity_verify(id, t, strlen(t), NOW, &p, NULL, 0);
    bg_principal_clear(&p);
    return r;
}

/* A signature is exactly the algorithm's: an HMAC not cut short (a 16-byte
 * prefix of the right MAC is not a MAC), an ES256 R||S of 64 bytes with
 * nothing after it, an RSASSA-PSS salt as long as the hash (RFC 7518 3.2,
 * 3.4, 3.5). Each is checked against the same token with the exact
 * signature, which verifies. */
static void test_signature_bytes_exact(void **state)
{
    const char *hs_claims = "{\"iss\":\"" HS "\",\"aud\":\"busgate\",\"sub\":\"h\"," EXP_OK "}";
    unsigned char sig[1024];
    bg_principal_t p;
    char *in = idt_signing_input("{\"alg\":\"HS256\",\"kid\":\"hs1\"}", hs_claims);
    size_t n = idt_sign("HS256", NULL, hs_secret, 32, in, sig);
    assert_int_equal(n, 32);
    char *t = idt_with_sig(in, sig, n);
    assert_int_equal(verify(t, strlen(t), &p), BG_ID_OK);
    bg_principal_clear(&p);
    free(t);
    t = idt_with_sig(in, sig, 16);
    assert_int_equal(verify(t, strlen(t), &p), BG_ID_BAD_SIGNATURE);
    free(t);
    free(in);

    in = idt_signing_input("{\"alg\":\"ES256\",\"kid\":\"ec1\"}", "{" GOOD "," EXP_OK "}");
    n = idt_sign("ES256", g.ec, NULL, 0, in, sig);
    assert_int_equal(n, 64);
    t = idt_with_sig(in, sig, n);
    assert_int_equal(verify(t, strlen(t), &p), BG_ID_OK);
    bg_principal_clear(&p);
    free(t);
    sig[64] = sig[65] = 0;
    t = idt_with_sig(in, sig, 66);
    assert_int_equal(verify(t, strlen(t), &p), BG_ID_BAD_SIGNATURE);
    free(t);
    free(in);

    in = idt_signing_input("{\"alg\":\"PS256\",\"kid\":\"rsa1\"}", "{" GOOD "," EXP_OK "}");
    for (int salt = 0; salt <= 64; salt += 32) {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        EVP_PKEY_CTX *pctx = NULL;
        n = sizeof sig;
        assert_int_equal(EVP_DigestSignInit(ctx, &pctx, EVP_sha256(), NULL, g.rsa), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, salt), 1);
        assert_int_equal(EVP_DigestSign(ctx, sig, &n, (const unsigned char *)in, strlen(in)), 1);
        EVP_MD_CTX_free(ctx);
        t = idt_with_sig(in, sig, n);
        bg_id_reason_t r = verify(t, strlen(t), &p);
        if (r != (salt == 32 ? BG_ID_OK : BG_ID_BAD_SIGNATURE))
            fail_msg("PS256 with a %d-byte salt: %s", salt, bg_id_reason_str(r));
        bg_principal_clear(&p);
        free(t);
    }
    free(in);
}

/* A JWK's alg narrows its key to that one algorithm (RFC 7517 4.4): an RSA
 * key published for RS256 verifies no PS256 or RS512 token, even one its
 * private half signed. */
static void test_jwk_alg_narrows_the_key(void **state)
{
    char err[256] = "", *k = idt_jwk(g.rsa, "r", "RS256");
    char *set = idt_jwks((const char *const *)&k, 1);
    bg_identity_t *id = new_with_jwks(set, 0, err, sizeof err);
    if (!id)
        fail_msg("RS256 key refused: %s", err);
    const char *algs[] = {"RS256", "PS256", "RS512"};
    for (int i = 0; i < 3; i++) {
        char hdr[64];
        snprintf(hdr, sizeof hdr, "{\"alg\":\"%s\",\"kid\":\"r\"}", algs[i]);
        char *t = idt_token(hdr, "{" GOOD "," EXP_OK "}", algs[i], g.rsa, NULL, 0);
        bg_id_reason_t r = verify_with(id, t);
        if (r != (i == 0 ? BG_ID_OK : BG_ID_ALG_NOT_ALLOWED))
            fail_msg("%s on an RS256 JWK: %s", algs[i], bg_id_reason_str(r));
        free(t);
    }
    bg_identity_free(id);
    free(set);
    free(k);
}

/* An RSA key above 8192 bits is skipped before OpenSSL looks at it (its
 * public-key check takes about a second at 16384 bits, and a provider
 * controls how many such keys it serves); the rest of the set loads. A key
 * of 8192 bits or fewer is still checked and kept. */
static void test_jwks_rsa_over_8192_skipped(void **state)
{
    char err[256] = "";
    char *k_big = idt_jwk_rsa_pow(g.rsa, 5, "big"); /* about 10240 bits */
    char *k_edge = idt_jwk_rsa_pow(g.rsa, 4, "edge"); /* at most 8192 bits */
    char *k_rsa = idt_jwk(g.rsa, "a", NULL);
    const char *keys[] = {k_big, k_edge, k_rsa};
    char *set = idt_jwks(keys, 3);
    bg_identity_t *id = new_with_jwks(set, 0, err, sizeof(err));
    if (!id)
        fail_msg("set refused: %s", err);
    const char *claims = "{" GOOD "," EXP_OK "}";
    char *t_a = idt_token("{\"alg\":\"RS256\",\"kid\":\"a\"}", claims, "RS256", g.rsa, NULL, 0);
    char *t_big =
        idt_token("{\"alg\":\"RS256\",\"kid\":\"big\"}", claims, "RS256", g.rsa, NULL, 0);
    char *t_edge =
        idt_token("{\"alg\":\"RS256\",\"kid\":\"edge\"}", claims, "RS256", g.rsa, NULL, 0);
    assert_int_equal(verify_with(id, t_a), BG_ID_OK);
    assert_int_equal(verify_with(id, t_big), BG_ID_UNKNOWN_KID); /* not loaded */
    assert_int_equal(verify_with(id, t_edge), BG_ID_BAD_SIGNATURE); /* loaded, other key */
    bg_identity_free(id);
    free(k_big);
    free(k_edge);
    free(k_rsa);
    free(set);
    free(t_a);
    free(t_big);
    free(t_edge);
}

/* At most BG_JWKS_MAX_KEYS entries, usable or not: a longer set is refused
 * as a whole (a jwks_file fails to load, a fetched one keeps the old keys),
 * since every entry may cost an OpenSSL key check. */
static void test_jwks_key_count_cap(void **state)
{
    char err[256] = "";
    size_t n = BG_JWKS_MAX_KEYS + 1;
    char **keys = calloc(n, sizeof(char *));
    keys[0] = idt_jwk(g.rsa, "a", NULL);
    for (size_t i = 1; i < n; i++) {
        keys[i] = malloc(64);
        snprintf(keys[i], 64, "{\"kty\":\"RSA\",\"use\":\"enc\",\"kid\":\"e%zu\"}", i);
    }
    char *at_cap = idt_jwks((const char *const *)keys, n - 1);
    char *over = idt_jwks((const char *const *)keys, n);
    bg_identity_t *id = new_with_jwks(at_cap, 0, err, sizeof(err));
    if (!id)
        fail_msg("set of %d entries refused: %s", BG_JWKS_MAX_KEYS, err);
    bg_identity_free(id);
    err[0] = 0;
    assert_null(new_with_jwks(over, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "more than"));
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
    free(at_cap);
    free(over);
}

static void test_config_errors(void **state)
{
    char err[256];
    /* Missing file, and a file and a URL together. */
    bg_config_issuer_t iss = mk_issuer(ISS, "no-such-dir/jwks.json", NULL);
    bg_config_identity_t cfg = {.issuers = &iss, .nissuers = 1};
    assert_null(bg_identity_new(&cfg, err, sizeof(err)));
    iss.jwks_url = "http://127.0.0.1:1/jwks";
    iss.jwks_file = g.jwks_path;
    assert_null(bg_identity_new(&cfg, err, sizeof(err)));
    iss.jwks_url = NULL;
    iss.naudiences = 0;
    assert_null(bg_identity_new(&cfg, err, sizeof(err)));
    /* The same issuer twice. */
    bg_config_issuer_t two[2] = {mk_issuer(ISS, g.jwks_path, NULL),
                                 mk_issuer(ISS, g.jwks_path, NULL)};
    bg_config_identity_t cfg2 = {.issuers = two, .nissuers = 2};
    assert_null(bg_identity_new(&cfg2, err, sizeof(err)));
    assert_non_null(strstr(err, "listed twice"));
}

/* ---- minting ---- */

static void test_mint(void **state)
{
    char err[128];
    const char *groups[] = {"dev", "ops"};
    char *pem = idt_priv_pem(g.rsa);
    int64_t before = (int64_t)time(NULL);
    char *t = bg_identity_mint(pem, strlen(pem), "rsa1", "carol", groups, 2, 300, ISS, "busgate",
                               err, sizeof(err));
    assert_non_null(t);
    bg_principal_t p;
    int64_t now = (int64_t)time(NULL);
    assert_int_equal(bg_identity_verify(g.id, t, strlen(t), now, &p, NULL, 0), BG_ID_OK);
    assert_string_equal(p.sub, "carol");
    assert_int_equal(p.ngroups, 2);
    assert_string_equal(p.groups[1], "ops");
    assert_non_null(p.token_id);
    assert_int_equal(strlen(p.token_id), 36);
    assert_true(p.exp >= before + 300 && p.exp <= now + 300); /* issued in between */
    bg_principal_clear(&p);
    /* Past its ttl it is expired. */
    assert_int_equal(bg_identity_verify(g.id, t, strlen(t), now + 400, &p, NULL, 0),
                     BG_ID_EXPIRED);
    free(t);
    free(pem);

    pem = idt_priv_pem(g.ec);
    t = bg_identity_mint(pem, strlen(pem), "ec1", "dave", NULL, 0, 60, ISS, "busgate", err,
                         sizeof(err));
    assert_non_null(t);
    assert_int_equal(bg_identity_verify(g.id, t, strlen(t), now, &p, NULL, 0), BG_ID_OK);
    assert_string_equal(p.sub, "dave");
    assert_int_equal(p.ngroups, 0);
    bg_principal_clear(&p);
    free(t);
    free(pem);

    pem = idt_priv_pem(g.ec384);
    assert_null(bg_identity_mint(pem, strlen(pem), NULL, "x", NULL, 0, 60, ISS, "busgate", err,
                                 sizeof(err)));
    free(pem);
    assert_null(bg_identity_mint("junk", 4, NULL, "x", NULL, 0, 60, ISS, "busgate", err,
                                 sizeof(err)));
}

/* ---- issuer prefixes ---- */

#define PARTNER "https://partner.test"

/* Two trusted issuers, the second with subject_prefix and groups_prefix,
 * and a policy that writes principal names. */
static const char prefix_yaml[] =
    "identity:\n"
    "  issuers:\n"
    "    - issuer: " ISS "\n"
    "      audiences: [busgate]\n"
    "      jwks_file: %s\n"
    "    - issuer: " PARTNER "\n"
    "      audiences: [busgate]\n"
    "      jwks_file: %s\n"
    "      subject_prefix: partner/\n"
    "      groups_prefix: \"partner:\"\n"
    "kafka:\n"
    "  listen: 127.0.0.1:19092\n"
    "  upstream: {embedded: 1}\n"
    "policy:\n"
    "  default: deny\n"
    "  rules:\n"
    "    - name: ours\n"
    "      subjects: [sub:billing-service]\n"
    "      resources: [kafka:topic:invoices]\n"
    "      verbs: [write]\n"
    "      effect: allow\n"
    "    - name: theirs\n"
    "      subjects: [sub:partner/billing-service]\n"
    "      resources: [kafka:topic:partner.invoices]\n"
    "      verbs: [write]\n"
    "      effect: allow\n"
    "    - name: our-admins\n"
    "      subjects: [group:admins]\n"
    "      resources: [kafka:cluster]\n"
    "      verbs: [alter]\n"
    "      effect: allow\n"
    "    - name: their-admins\n"
    "      subjects: [\"group:partner:admins\"]\n"
    "      resources: [kafka:topic:partner.invoices]\n"
    "      verbs: [delete]\n"
    "      effect: allow\n"
    "audit: {enabled: false}\n";

/* The effect p decides for (principal, resource, verb). */
static bg_effect_t prefix_decide(const bg_policy_t *pol, const bg_principal_t *pr,
                                 const char *resource, bg_verb_t verb)
{
    bg_policy_principal_t pp;
    bg_policy_resource_t res;
    bg_policy_decision_t d;
    const char *why;
    assert_int_equal(bg_policy_parse_resource(resource, &res, &why), 0);
    assert_int_equal(bg_policy_principal_prepare(pol, pr->sub, (const char *const *)pr->groups,
                                                 pr->ngroups, &pp),
                     0);
    bg_policy_decide(pol, &pp, &res, verb, &d);
    bg_policy_principal_clear(&pp);
    return d.effect;
}

/* A token of iss for sub billing-service in group admins. */
static char *prefix_token(const char *iss)
{
    char claims[256];
    snprintf(claims, sizeof claims,
             "{\"iss\":\"%s\",\"aud\":\"busgate\",\"sub\":\"billing-service\"," EXP_OK
             ",\"groups\":[\"admins\"]}",
             iss);
    return idt_token("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", claims, "RS256", g.rsa, NULL, 0);
}

/* The same sub and group from two issuers are two principals once their
 * prefixes differ: a rule for one issuer's names does not admit the
 * other's token (as Kubernetes' --oidc-username-prefix / -groups-prefix). */
static void test_issuer_prefixes_name_principals(void **state)
{
    char yaml[sizeof prefix_yaml + 2 * 256], err[256];
    snprintf(yaml, sizeof yaml, prefix_yaml, g.jwks_path, g.jwks_path);
    bg_config_errors_t errs = {0};
    bg_config_t *cfg = bg_config_load_string("p.yaml", yaml, strlen(yaml), &errs);
    for (size_t i = 0; i < errs.n; i++)
        print_error("%s\n", errs.msgs[i]);
    bg_config_errors_clear(&errs);
    assert_non_null(cfg);
    bg_identity_t *id = bg_identity_new(&cfg->identity, err, sizeof err);
    assert_non_null(id);
    bg_policy_t *pol = bg_policy_compile(bg_config_policy_spec(cfg), err, sizeof err);
    assert_non_null(pol);

    char *t_ours = prefix_token(ISS), *t_theirs = prefix_token(PARTNER);
    bg_principal_t ours, theirs, again;
    assert_int_equal(bg_identity_verify(id, t_ours, strlen(t_ours), NOW, &ours, NULL, 0),
                     BG_ID_OK);
    assert_int_equal(bg_identity_verify(id, t_theirs, strlen(t_theirs), NOW, &theirs, NULL, 0),
                     BG_ID_OK);
    /* No prefix: the claims as they are. */
    assert_string_equal(ours.sub, "billing-service");
    assert_int_equal(ours.ngroups, 1);
    assert_string_equal(ours.groups[0], "admins");
    assert_string_equal(ours.issuer, ISS);
    /* The partner's: prefixed names, the issuer kept apart. */
    assert_string_equal(theirs.sub, "partner/billing-service");
    assert_int_equal(theirs.ngroups, 1);
    assert_string_equal(theirs.groups[0], "partner:admins");
    assert_string_equal(theirs.issuer, PARTNER);

    /* Each issuer's token gets its own rules and none of the other's. */
    assert_int_equal(prefix_decide(pol, &ours, "kafka:topic:invoices", BG_VERB_WRITE),
                     BG_EFFECT_ALLOW);
    assert_int_equal(prefix_decide(pol, &theirs, "kafka:topic:invoices", BG_VERB_WRITE),
                     BG_EFFECT_DENY);
    assert_int_equal(prefix_decide(pol, &theirs, "kafka:topic:partner.invoices", BG_VERB_WRITE),
                     BG_EFFECT_ALLOW);
    assert_int_equal(prefix_decide(pol, &ours, "kafka:topic:partner.invoices", BG_VERB_WRITE),
                     BG_EFFECT_DENY);
    assert_int_equal(prefix_decide(pol, &ours, "kafka:cluster", BG_VERB_ALTER), BG_EFFECT_ALLOW);
    assert_int_equal(prefix_decide(pol, &theirs, "kafka:cluster", BG_VERB_ALTER), BG_EFFECT_DENY);
    assert_int_equal(prefix_decide(pol, &theirs, "kafka:topic:partner.invoices", BG_VERB_DELETE),
                     BG_EFFECT_ALLOW);
    assert_int_equal(prefix_decide(pol, &ours, "kafka:topic:partner.invoices", BG_VERB_DELETE),
                     BG_EFFECT_DENY);

    /* Re-authentication's "same principal": the same issuer and subject. */
    assert_false(bg_principal_same(&ours, &theirs));
    assert_int_equal(bg_identity_verify(id, t_theirs, strlen(t_theirs), NOW, &again, NULL, 0),
                     BG_ID_OK);
    assert_true(bg_principal_same(&again, &theirs));
    assert_false(bg_principal_same(&again, &ours));
    bg_principal_clear(&again);

    bg_principal_clear(&ours);
    bg_principal_clear(&theirs);
    free(t_ours);
    free(t_theirs);
    bg_policy_free(pol);
    bg_identity_free(id);
    bg_config_free(cfg);
}

/* A reload that changes an issuer's prefixes: a principal verified before
 * it gets the names the new configuration gives (bg_identity_rename, which
 * the adapters call when a session takes a new snapshot), and stays the
 * same principal for re-authentication. */
static void test_issuer_prefixes_after_reload(void **state)
{
    bg_config_issuer_t before = mk_issuer(ISS, g.jwks_path, NULL), after = before,
                       other = mk_issuer(KC, g.jwks_path, NULL);
    after.subject_prefix = "idp/";
    after.groups_prefix = "idp:";
    other.subject_prefix = "kc/";
    bg_config_identity_t c1 = {.issuers = &before, .nissuers = 1},
                         c2 = {.issuers = &after, .nissuers = 1},
                         c3 = {.issuers = &other, .nissuers = 1};
    char err[256];
    bg_identity_t *id1 = bg_identity_new(&c1, err, sizeof err),
                  *id2 = bg_identity_new(&c2, err, sizeof err),
                  *id3 = bg_identity_new(&c3, err, sizeof err);
    assert_true(id1 && id2 && id3);
    const char *claims = "{" GOOD "," EXP_OK ",\"groups\":[\"dev\",\"ops\"]}";
    char *t = idt_token("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", claims, "RS256", g.rsa, NULL, 0);
    bg_principal_t p, old, fresh, copy;
    assert_int_equal(bg_identity_verify(id1, t, strlen(t), NOW, &p, NULL, 0), BG_ID_OK);
    assert_int_equal(bg_principal_copy(&old, &p), 0);

    assert_int_equal(bg_identity_rename(id2, &p), 1);
    assert_string_equal(p.sub, "idp/alice");
    assert_string_equal(bg_principal_subject_claim(&p), "alice");
    assert_int_equal(p.ngroups, 2);
    assert_string_equal(p.groups[0], "idp:dev");
    assert_string_equal(p.groups[1], "idp:ops");
    assert_string_equal(p.issuer, ISS);
    assert_int_equal(bg_identity_rename(id2, &p), 0); /* already so named */
    /* As a token verified under the new configuration names it; and the
     * same principal as before the reload, whatever the names. */
    assert_int_equal(bg_identity_verify(id2, t, strlen(t), NOW, &fresh, NULL, 0), BG_ID_OK);
    assert_string_equal(fresh.sub, p.sub);
    assert_string_equal(fresh.groups[1], p.groups[1]);
    assert_true(bg_principal_same(&fresh, &p));
    assert_true(bg_principal_same(&fresh, &old));
    assert_int_equal(bg_principal_copy(&copy, &fresh), 0); /* the copy knows its prefixes */
    assert_int_equal(bg_identity_rename(id2, &copy), 0);
    assert_string_equal(bg_principal_subject_claim(&copy), "alice");
    bg_principal_clear(&copy);

    /* An identity without the issuer (or none) leaves the names alone, and
     * no longer vouches for the principal: the adapters deny its session
     * everything until an identity with the issuer comes back. */
    assert_null(bg_identity_unvouched(id2, &p));
    assert_int_equal(bg_identity_rename(id3, &p), 0);
    assert_int_equal(bg_identity_rename(NULL, &p), 0);
    assert_string_equal(p.sub, "idp/alice");
    assert_string_equal(bg_identity_unvouched(id3, &p),
                        "the token's issuer is no longer configured");
    assert_non_null(bg_identity_unvouched(NULL, &p));
    assert_null(bg_identity_unvouched(id1, &p));
    /* What the adapters call on a reload: both at once. */
    const char *unvouched = NULL;
    assert_int_equal(bg_identity_reapply(id3, &p, &unvouched, "test", "s1"), 0);
    assert_string_equal(unvouched, "the token's issuer is no longer configured");
    assert_string_equal(p.sub, "idp/alice");
    /* Back to no prefixes. */
    assert_int_equal(bg_identity_reapply(id1, &p, &unvouched, "test", "s1"), 1);
    assert_null(unvouched);
    assert_string_equal(p.sub, "alice");
    assert_string_equal(p.groups[0], "dev");
    assert_true(bg_principal_same(&p, &fresh));
    bg_principal_clear(&p);
    bg_principal_clear(&fresh);
    free(t);

    /* No groups: only the subject changes. */
    t = idt_token("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", "{" GOOD "," EXP_OK "}", "RS256", g.rsa,
                  NULL, 0);
    assert_int_equal(bg_identity_verify(id1, t, strlen(t), NOW, &p, NULL, 0), BG_ID_OK);
    assert_int_equal(bg_identity_rename(id2, &p), 1);
    assert_string_equal(p.sub, "idp/alice");
    assert_int_equal(p.ngroups, 0);
    bg_principal_clear(&p);
    free(t);
    bg_principal_clear(&old);
    bg_identity_free(id1);
    bg_identity_free(id2);
    bg_identity_free(id3);
}

/* ---- concurrency ---- */

/* The identity a reload builds from issuer c (only c), for unvouched_in. */
static const char *unvouched_in(bg_config_issuer_t c, const bg_principal_t *p)
{
    bg_config_identity_t cfg = {.issuers = &c, .nissuers = 1};
    char err[256];
    bg_identity_t *id = bg_identity_new(&cfg, err, sizeof err);
    assert_non_null(id);
    const char *why = bg_identity_unvouched(id, p);
    bg_identity_free(id);
    return why;
}

#define UV_AUD "the token's audience is no longer accepted"
#define UV_ALG "the token's algorithm is no longer allowed"
#define UV_CLAIM "the issuer's subject or groups claim changed; log in again"

/* A reload that changes what the verifier requires of the issuer's tokens:
 * a principal verified before it is unvouched when a login with its token
 * would now be refused (its keys and expiry aside), and vouched for again
 * when the configuration accepts it again. */
static void test_unvouched_after_reload(void **state)
{
    const char *claims = "{\"iss\":\"" ISS "\",\"aud\":[7,\"x\",\"busgate\"],\"sub\":\"alice\","
                         "\"groups\":[\"dev\"]," EXP_OK "}";
    char *t = idt_token("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", claims, "RS256", g.rsa, NULL, 0);
    bg_principal_t p, copy;
    assert_int_equal(verify(t, strlen(t), &p), BG_ID_OK);
    free(t);
    /* What was kept of the token: its string audiences, alg, claim names. */
    assert_int_equal(p.naudiences, 2);
    assert_string_equal(p.audiences[0], "x");
    assert_string_equal(p.audiences[1], "busgate");
    assert_string_equal(p.alg, "RS256");
    assert_string_equal(p.subject_claim_name, "sub");
    assert_string_equal(p.groups_claim_name, "groups");
    assert_int_equal(bg_principal_copy(&copy, &p), 0);
    assert_int_equal(copy.naudiences, 2);
    assert_string_equal(copy.audiences[1], "busgate");
    assert_ptr_not_equal(copy.audiences, p.audiences);
    assert_string_equal(copy.alg, "RS256");
    assert_string_equal(copy.groups_claim_name, "groups");

    /* The same configuration (or one allowing HS256 besides): vouched for. */
    bg_config_issuer_t same = mk_issuer(ISS, g.jwks_path, NULL), c = same;
    assert_null(unvouched_in(same, &p));
    assert_null(unvouched_in(same, &copy));
    assert_null(bg_identity_unvouched(g.id, &p));
    c.allow_hs256 = 1;
    assert_null(unvouched_in(c, &p));
    /* Audiences: one of the token's is enough; none is a reason. */
    char *only_x[] = {"x"}, *elsewhere[] = {"elsewhere", "other"};
    c = same;
    c.audiences = only_x;
    c.naudiences = 1;
    assert_null(unvouched_in(c, &p));
    c.audiences = elsewhere;
    c.naudiences = 2;
    assert_string_equal(unvouched_in(c, &p), UV_AUD);
    assert_string_equal(unvouched_in(c, &copy), UV_AUD);
    /* The claims the names came from. */
    c = same;
    c.subject_claim = "preferred_username";
    assert_string_equal(unvouched_in(c, &p), UV_CLAIM);
    c = same;
    c.groups_claim = "realm_access.roles";
    assert_string_equal(unvouched_in(c, &copy), UV_CLAIM);
    c.groups_claim = "groups"; /* the default spelled out: the same claim */
    c.subject_claim = "sub";
    assert_null(unvouched_in(c, &p));
    /* The issuer's own reason comes first. */
    c = mk_issuer(KC, g.jwks_path, NULL);
    assert_string_equal(unvouched_in(c, &p), "the token's issuer is no longer configured");

    /* What the adapters call: each reason, then vouched for again. */
    bg_config_issuer_t moved = same;
    moved.audiences = elsewhere;
    bg_config_identity_t cm = {.issuers = &moved, .nissuers = 1},
                         cs = {.issuers = &same, .nissuers = 1};
    char err[256];
    bg_identity_t *idm = bg_identity_new(&cm, err, sizeof err),
                  *ids = bg_identity_new(&cs, err, sizeof err);
    assert_true(idm && ids);
    const char *unvouched = NULL;
    assert_int_equal(bg_identity_reapply(idm, &p, &unvouched, "test", "s1"), 0);
    assert_string_equal(unvouched, UV_AUD);
    assert_int_equal(bg_identity_reapply(ids, &p, &unvouched, "test", "s1"), 0);
    assert_null(unvouched);
    bg_identity_free(idm);
    bg_identity_free(ids);
    bg_principal_clear(&copy);
    bg_principal_clear(&p);

    /* An HS256 token: its issuer no longer allowing HS256 is a reason, an
     * RS256 token's is not (above). aud a single string is kept too. */
    const char *hs_claims = "{\"iss\":\"" HS "\",\"aud\":\"busgate\",\"sub\":\"h\"," EXP_OK "}";
    t = idt_token("{\"alg\":\"HS256\",\"kid\":\"hs1\"}", hs_claims, "HS256", NULL, hs_secret, 32);
    assert_int_equal(verify(t, strlen(t), &p), BG_ID_OK);
    free(t);
    assert_int_equal(p.naudiences, 1);
    assert_string_equal(p.audiences[0], "busgate");
    assert_string_equal(p.alg, "HS256");
    bg_config_issuer_t hs = mk_issuer(HS, g.jwks_path, NULL);
    hs.allow_hs256 = 1;
    assert_null(unvouched_in(hs, &p));
    hs.allow_hs256 = 0;
    assert_string_equal(unvouched_in(hs, &p), UV_ALG);
    bg_principal_clear(&p);
    /* A principal that was never verified (nothing kept) is vouched for by
     * nothing. */
    memset(&p, 0, sizeof p);
    p.issuer = ISS;
    assert_string_equal(unvouched_in(same, &p), UV_AUD);
}

static void *verify_many(void *arg)
{
    const char *t = arg;
    long ok = 0;
    for (int i = 0; i < 200; i++) {
        bg_principal_t p;
        ok += bg_identity_verify(g.id, t, strlen(t), NOW, &p, NULL, 0) == BG_ID_OK;
        bg_principal_clear(&p);
    }
    return (void *)ok;
}

static void test_concurrent_verify(void **state)
{
    char *t = idt_token("{\"alg\":\"ES256\",\"kid\":\"ec1\"}", "{" GOOD "," EXP_OK "}", "ES256",
                        g.ec, NULL, 0);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, verify_many, t);
    for (int i = 0; i < 4; i++) {
        void *ok;
        pthread_join(th[i], &ok);
        assert_int_equal((long)ok, 200);
    }
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attack_table),
        cmocka_unit_test(test_size_and_shape),
        cmocka_unit_test(test_valid_rs256),
        cmocka_unit_test(test_valid_es256_and_typ),
        cmocka_unit_test(test_no_kid_single_usable_key),
        cmocka_unit_test(test_groups_dotted_path),
        cmocka_unit_test(test_hs256_when_allowed),
        cmocka_unit_test(test_signature_bytes_exact),
        cmocka_unit_test(test_reason_strings),
        cmocka_unit_test(test_jwks_errors),
        cmocka_unit_test(test_jwk_alg_narrows_the_key),
        cmocka_unit_test(test_jwks_rsa_over_8192_skipped),
        cmocka_unit_test(test_jwks_key_count_cap),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_mint),
        cmocka_unit_test(test_concurrent_verify),
        cmocka_unit_test(test_issuer_prefixes_name_principals),
        cmocka_unit_test(test_issuer_prefixes_after_reload),
        cmocka_unit_test(test_unvouched_after_reload),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
