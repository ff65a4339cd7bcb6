/* Fuzz target: arbitrary bytes as a bearer token to bg_identity_verify.
 *
 * The key set is fixed (one RSA, one EC P-256 and one oct key, published
 * below as a JWKS document) so that inputs which get past parsing reach key
 * selection and signature checks. Seeds in corpus/jwt/ include tokens with
 * valid signatures: the private halves of these test keys were used once to
 * sign the seeds and then discarded. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "broker/config.h"
#include "broker/identity-internal.h"
#include "broker/log.h"

/* Test-only keys (generated for this file; never used anywhere else). */
static const char bg_fuzz_jwks[] =
    "{\"keys\":["
    "{\"kty\":\"RSA\",\"kid\":\"rsa1\",\"use\":\"sig\",\"e\":\"AQAB\",\"n\":"
    "\"mOjeCLhkevacjXEpF_N3eSDRz9tAVwvQaPR5x6FnC6AbGBikSdho7SluDcqRuwOeAMI19o"
    "mAcAqY5TyrbrbA1wVEC8T6tIeHv-3HdOdJqiCLXMJwWj23RxWVppg_fOiDtNiU6zfIHH-a"
    "0K0XmidEiesyap3Z11uLrchXLVPe9UfypBcIkVmuHoZ5bxnMHh0XL_sl9egYcVifQxYyO-"
    "joJlBMC45C1zk__bu9R400iTxHtVyVv79qXsXS4ixxPu_7h22pbBo6z7s5z0_LdhYZKO97"
    "xWCualmx5J1KMWJwbsw7AsthQcpuMPhEpqrZc4e6edPbnF-hUOXY4MhSYWLG2w\"},"
    "{\"kty\":\"EC\",\"kid\":\"ec1\",\"crv\":\"P-256\","
    "\"x\":\"9wUtM4nYAguTz7X5T-kwT5rdMO7ajzl9H6DVUcEfsV4\","
    "\"y\":\"mFN3UrgZRGRMCr7MChmres7TJSKTo54G008yqrwM0LU\"},"
    "{\"kty\":\"oct\",\"kid\":\"hs1\",\"k\":\"ZnV6ei1vbmx5LXNlY3JldC1mdXp6LW9ubHktc2VjcmV0IQ\"}"
    "]}";

static bg_identity_t *bg_fuzz_id;

static bg_identity_t *bg_fuzz_identity(void)
{
    static char *auds[] = {"busgate"};
    static bg_config_issuer_t iss[2] = {
        {.issuer = "https://idp.test", .audiences = auds, .naudiences = 1},
        {.issuer = "https://kc.test", .audiences = auds, .naudiences = 1,
         .groups_claim = "realm_access.roles", .allow_hs256 = 1},
    };
    bg_config_identity_t cfg = {.issuers = iss, .nissuers = 2, .clock_skew_ms = 30000};
    char err[256];
    bg_identity_t *id =
        bg_identity_new_from_jwks_string(&cfg, bg_fuzz_jwks, sizeof(bg_fuzz_jwks) - 1, err,
                                         sizeof(err));
    if (!id) {
        fprintf(stderr, "fuzz_jwt: %s\n", err);
        abort();
    }
    return id;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    bg_log_set_level(BG_LOG_OFF);
    bg_fuzz_id = bg_fuzz_identity();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* standalone.c does not call LLVMFuzzerInitialize. */
    if (!bg_fuzz_id)
        LLVMFuzzerInitialize(NULL, NULL);
    bg_principal_t p;
    char detail[128];
    bg_id_reason_t r =
        bg_identity_verify(bg_fuzz_id, (const char *)data, size, 1700000000, &p, detail,
                           sizeof(detail));
    if (r == BG_ID_OK && (!p.sub || !p.issuer))
        abort();
    if (r != BG_ID_OK && p.sub)
        abort();
    bg_principal_clear(&p);
    return 0;
}
