/* Fuzz target: arbitrary bytes as a JWKS document to bg_jwks_parse.
 *
 * busgate fetches the key set from each issuer's jwks_url, so these bytes
 * come from the network. The first byte's low bits are the parse flags
 * (BG_JWKS_ALLOW_OCT, BG_JWKS_SKIP_BROKEN); the rest is the document. Every key a successful parse returns
 * must be usable: it is asked to verify a signature that cannot be valid. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "broker/jwks.h"
#include "broker/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet) {
        bg_log_set_level(BG_LOG_OFF);
        quiet = 1;
    }
    if (size < 1)
        return 0;
    int flags = data[0] & (BG_JWKS_ALLOW_OCT | BG_JWKS_SKIP_BROKEN);
    int allow_oct = flags & BG_JWKS_ALLOW_OCT;
    bg_jwks_t set = {0};
    char err[256];
    if (bg_jwks_parse((const char *)data + 1, size - 1, flags, NULL, &set, err, sizeof err) == 0) {
        static const char input[] = "e30.e30";
        static const unsigned char sig[64] = {1};
        for (size_t i = 0; i < set.nkeys; i++) {
            const bg_jwk_t *k = &set.keys[i];
            if (k->kty == BG_JWK_OCT && (!allow_oct || !k->secret))
                abort(); /* an HMAC key where none may be, or one without a secret */
            if (k->kty != BG_JWK_OCT && !k->pkey)
                abort();
            for (unsigned a = 0; a < 32; a++)
                if ((k->algs & BG_JWK_ALG_BIT(a)) &&
                    bg_jwks_verify(k, (jwt_alg_t)a, input, sizeof input - 1, sig, sizeof sig))
                    abort(); /* a made-up signature verified */
        }
    }
    bg_jwks_clear(&set);
    return 0;
}
