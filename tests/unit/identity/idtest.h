/* Helpers for the identity tests: test keys, JWKS documents and hand-made
 * tokens (signed with OpenSSL directly, independent of the code under test). */
#ifndef BG_IDTEST_H
#define BG_IDTEST_H

#include <stdatomic.h>
#include <stddef.h>

#include <openssl/evp.h>

/* Fresh keys: RSA 2048 or an EC key on curve ("P-256", "P-384"). */
EVP_PKEY *idt_rsa(void);
EVP_PKEY *idt_ec(const char *curve);

/* base64url without padding; malloc'd. */
char *idt_b64url(const void *p, size_t n);

/* One public JWK as a JSON object text; alg may be NULL. malloc'd. */
char *idt_jwk(EVP_PKEY *k, const char *kid, const char *alg);
/* An RSA JWK whose modulus is k's raised to power: p^power * q^power is
 * composite with no small factor, so OpenSSL's public-key check passes, and
 * it is power times k's size without generating so large a key. malloc'd. */
char *idt_jwk_rsa_pow(EVP_PKEY *k, int power, const char *kid);
/* An oct JWK for an HMAC secret. malloc'd. */
char *idt_jwk_oct(const void *secret, size_t n, const char *kid);
/* {"keys":[jwks...]} from n JWK texts. malloc'd. */
char *idt_jwks(const char *const *jwks, size_t n);

/* Public key PEM (SubjectPublicKeyInfo) and private key PEM; malloc'd. */
char *idt_pub_pem(EVP_PKEY *k);
char *idt_priv_pem(EVP_PKEY *k);

/* header_json.payload_json, base64url-encoded and signed for alg:
 * "RS256"/"RS384"/"RS512" (k RSA), "ES256"/"ES384" (k EC, raw R||S),
 * "HS256"/... (secret, n), anything else: empty signature. malloc'd. */
char *idt_token(const char *header_json, const char *payload_json, const char *alg, EVP_PKEY *k,
                const void *secret, size_t n);

/* The pieces of idt_token, for tests that alter a signature: the signing
 * input (base64url header "." base64url payload; malloc'd), its signature
 * by idt_token's rules (written to sig, which holds 1024 bytes; returns
 * its length), and input "." base64url(sig) (malloc'd). */
char *idt_signing_input(const char *header_json, const char *payload_json);
size_t idt_sign(const char *alg, EVP_PKEY *k, const void *secret, size_t n, const char *input,
                unsigned char *sig);
char *idt_with_sig(const char *input, const void *sig, size_t n);

/* Writes s to a new temp file; returns its malloc'd path. */
char *idt_write_tmp(const char *s);

/* The next connection to the listening socket fd (waits in 50 ms rounds),
 * or -1 once *stop is set: a test server's accept loop. */
int idt_accept(int fd, const atomic_int *stop);

#endif
