#include "idtest.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

EVP_PKEY *idt_rsa(void)
{
    return EVP_RSA_gen(2048);
}

EVP_PKEY *idt_ec(const char *curve)
{
    return EVP_EC_gen(curve);
}

char *idt_b64url(const void *p, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    int len = EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    while (len > 0 && out[len - 1] == '=')
        len--;
    out[len] = 0;
    for (int i = 0; i < len; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    return out;
}

static char *idt_bn_b64(EVP_PKEY *k, const char *name)
{
    BIGNUM *bn = NULL;
    EVP_PKEY_get_bn_param(k, name, &bn);
    unsigned char buf[1024];
    int n = BN_bn2bin(bn, buf);
    BN_free(bn);
    return idt_b64url(buf, (size_t)n);
}

char *idt_jwk(EVP_PKEY *k, const char *kid, const char *alg)
{
    char *out = malloc(4096), algs[64] = "";
    if (alg)
        snprintf(algs, sizeof(algs), ",\"alg\":\"%s\"", alg);
    if (EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA) {
        char *n = idt_bn_b64(k, OSSL_PKEY_PARAM_RSA_N), *e = idt_bn_b64(k, OSSL_PKEY_PARAM_RSA_E);
        snprintf(out, 4096,
                 "{\"kty\":\"RSA\",\"kid\":\"%s\",\"use\":\"sig\",\"n\":\"%s\",\"e\":\"%s\"%s}",
                 kid, n, e, algs);
        free(n);
        free(e);
        return out;
    }
    unsigned char pub[256];
    size_t plen = 0;
    char group[64];
    EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub), &plen);
    EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL);
    size_t c = (plen - 1) / 2;
    char *x = idt_b64url(pub + 1, c), *y = idt_b64url(pub + 1 + c, c);
    const char *crv = strcmp(group, "prime256v1") == 0 ? "P-256" : "P-384";
    snprintf(out, 4096,
             "{\"kty\":\"EC\",\"kid\":\"%s\",\"crv\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"%s}", kid,
             crv, x, y, algs);
    free(x);
    free(y);
    return out;
}

char *idt_jwk_rsa_pow(EVP_PKEY *k, int power, const char *kid)
{
    BIGNUM *n = NULL, *p = BN_new(), *pn = BN_new();
    BN_CTX *ctx = BN_CTX_new();
    EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n);
    BN_set_word(p, (BN_ULONG)power);
    BN_exp(pn, n, p, ctx);
    size_t len = (size_t)BN_num_bytes(pn);
    unsigned char *buf = malloc(len);
    BN_bn2bin(pn, buf);
    char *b64 = idt_b64url(buf, len), *out = malloc(strlen(b64) + strlen(kid) + 128);
    sprintf(out, "{\"kty\":\"RSA\",\"kid\":\"%s\",\"use\":\"sig\",\"n\":\"%s\",\"e\":\"AQAB\"}",
            kid, b64);
    free(b64);
    free(buf);
    BN_CTX_free(ctx);
    BN_free(pn);
    BN_free(p);
    BN_free(n);
    return out;
}

char *idt_jwk_oct(const void *secret, size_t n, const char *kid)
{
    char *k = idt_b64url(secret, n), *out = malloc(strlen(k) + 128);
    sprintf(out, "{\"kty\":\"oct\",\"kid\":\"%s\",\"k\":\"%s\"}", kid, k);
    free(k);
    return out;
}

char *idt_jwks(const char *const *jwks, size_t n)
{
    size_t len = 32;
    for (size_t i = 0; i < n; i++)
        len += strlen(jwks[i]) + 1;
    char *out = malloc(len);
    strcpy(out, "{\"keys\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(out, ",");
        strcat(out, jwks[i]);
    }
    strcat(out, "]}");
    return out;
}

static char *idt_bio_str(BIO *b)
{
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *out = malloc((size_t)n + 1);
    memcpy(out, data, (size_t)n);
    out[n] = 0;
    BIO_free(b);
    return out;
}

char *idt_pub_pem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, k);
    return idt_bio_str(b);
}

char *idt_priv_pem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    return idt_bio_str(b);
}

static const EVP_MD *idt_md(const char *alg)
{
    const char *bits = alg + 2;
    return strcmp(bits, "512") == 0 ? EVP_sha512() : strcmp(bits, "384") == 0 ? EVP_sha384()
                                                                               : EVP_sha256();
}

size_t idt_sign(const char *alg, EVP_PKEY *k, const void *secret, size_t n, const char *input,
                unsigned char *sig)
{
    size_t len = 0;
    if (alg[0] == 'H') {
        unsigned int l = 0;
        HMAC(idt_md(alg), secret, (int)n, (const unsigned char *)input, strlen(input), sig, &l);
        return l;
    }
    if (alg[0] != 'R' && alg[0] != 'E' && alg[0] != 'P')
        return 0;
    unsigned char der[1024];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    len = sizeof(der);
    EVP_DigestSignInit(ctx, &pctx, idt_md(alg), NULL, k);
    if (alg[0] == 'P') { /* RSASSA-PSS, RFC 7518 3.5 */
        EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
        EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, idt_md(alg));
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
    }
    EVP_DigestSign(ctx, alg[0] == 'E' ? der : sig, &len, (const unsigned char *)input,
                   strlen(input));
    EVP_MD_CTX_free(ctx);
    if (alg[0] != 'E')
        return len;
    /* DER -> JOSE R||S */
    const unsigned char *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)len);
    size_t half = ((size_t)EVP_PKEY_get_bits(k) + 7) / 8;
    BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, (int)half);
    BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + half, (int)half);
    ECDSA_SIG_free(es);
    return 2 * half;
}

char *idt_signing_input(const char *header_json, const char *payload_json)
{
    char *h = idt_b64url(header_json, strlen(header_json));
    char *p = idt_b64url(payload_json, strlen(payload_json));
    size_t inlen = strlen(h) + strlen(p) + 2;
    char *input = malloc(inlen);
    snprintf(input, inlen, "%s.%s", h, p);
    free(h);
    free(p);
    return input;
}

char *idt_with_sig(const char *input, const void *sig, size_t n)
{
    char *s = idt_b64url(sig, n);
    char *out = malloc(strlen(input) + strlen(s) + 2);
    sprintf(out, "%s.%s", input, s);
    free(s);
    return out;
}

char *idt_token(const char *header_json, const char *payload_json, const char *alg, EVP_PKEY *k,
                const void *secret, size_t n)
{
    char *input = idt_signing_input(header_json, payload_json);
    unsigned char sig[1024];
    size_t slen = idt_sign(alg, k, secret, n, input, sig);
    char *out = idt_with_sig(input, sig, slen);
    free(input);
    return out;
}

char *idt_write_tmp(const char *s)
{
    /* ctest sets BG_BINARY_DIR; otherwise the system temp dir. */
    const char *dir = getenv("BG_BINARY_DIR");
    if (!dir || !*dir)
        dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = P_tmpdir;
    char *path = malloc(strlen(dir) + 32);
    sprintf(path, "%s/bg-idtest-XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0)
        return NULL;
    size_t len = strlen(s);
    if (write(fd, s, len) != (ssize_t)len) {
        close(fd);
        return NULL;
    }
    close(fd);
    return path;
}

int idt_accept(int fd, const atomic_int *stop)
{
    while (!atomic_load(stop)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int c = accept(fd, NULL, NULL);
        if (c >= 0)
            return c;
    }
    return -1;
}
