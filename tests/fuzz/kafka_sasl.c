/* Fuzz target for the Kafka adapter's SASL parsers. The first input byte
 * picks the parser (mod 4), the rest is the message:
 *   0  OAUTHBEARER client initial response (bg_kafka_sasl_parse_oauthbearer)
 *   1  PLAIN message (bg_kafka_sasl_parse_plain)
 *   2  SCRAM server-first, after a client-first with a fixed nonce
 *   3  SCRAM server-final, after the RFC 7677 exchange up to client-final
 * Besides "no crash", it checks that returned views lie inside the input and
 * that a successful parse obeys the documented limits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/kafka/kafka_sasl.h"
#include "adapters/kafka/kafka_scram.h"

#define FZ_NONCE "rOprNGfwEbeRWgbNEkqO"
#define FZ_SERVER_FIRST                                                                            \
    "r=" FZ_NONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"

static void fz_inside(bg_slice_t s, const uint8_t *p, size_t len)
{
    if (s.len < 0) {
        if (s.p != NULL)
            abort();
        return;
    }
    if (s.p < p || s.p + s.len > p + len)
        abort();
}

static void fz_oauth(const uint8_t *p, size_t len)
{
    bg_slice_t tok, az;
    const char *why = NULL;
    char name[BG_KAFKA_SASL_MAX_NAME + 1];
    int rc = bg_kafka_sasl_parse_oauthbearer(p, len, &tok, &az, &why);
    if (rc != BG_KAFKA_SASL_OK) {
        if (!why || tok.len != -1 || az.len != -1)
            abort();
        return;
    }
    fz_inside(tok, p, len);
    fz_inside(az, p, len);
    if (tok.len < 1 || tok.len > BG_KAFKA_SASL_MAX_TOKEN)
        abort();
    if (az.len >= 0 && bg_kafka_sasl_saslname_decode(az, name, sizeof name) < 0)
        abort(); /* an accepted authzid must decode */
}

static void fz_plain(const uint8_t *p, size_t len)
{
    bg_slice_t az, ac, pw;
    const char *why = NULL;
    int rc = bg_kafka_sasl_parse_plain(p, len, &az, &ac, &pw, &why);
    if (rc != BG_KAFKA_SASL_OK) {
        if (!why)
            abort();
        return;
    }
    fz_inside(az, p, len);
    fz_inside(ac, p, len);
    fz_inside(pw, p, len);
    if (ac.len < 1 || pw.len < 1 || memchr(pw.p, 0, (size_t)pw.len))
        abort();
}

/* A SHA-256 exchange with a fixed nonce, advanced past client_first. */
static bg_kafka_scram_t *fz_scram_started(bg_wr_t *wr)
{
    bg_kafka_scram_t *s = bg_kafka_scram_new(BG_KAFKA_SCRAM_SHA256, "user", "pencil");
    if (!s || bg_kafka_scram__set_client_nonce(s, FZ_NONCE) != 0 ||
        bg_kafka_scram_client_first(s, wr, NULL) != BG_KAFKA_SCRAM_OK)
        abort();
    bg_wr_reset(wr);
    return s;
}

static void fz_scram_first(const uint8_t *p, size_t len)
{
    bg_wr_t wr;
    const char *why = NULL;
    bg_wr_init(&wr, 128, 0);
    bg_kafka_scram_t *s = fz_scram_started(&wr);
    int rc = bg_kafka_scram_client_final(s, p, len, &wr, &why);
    if (rc == BG_KAFKA_SCRAM_OK ? (wr.len < 9 || memcmp(wr.buf, "c=biws,r=", 9) != 0)
                                : (why == NULL || wr.len != 0))
        abort();
    bg_kafka_scram_free(s);
    bg_wr_free(&wr);
}

static void fz_scram_final(const uint8_t *p, size_t len)
{
    bg_wr_t wr;
    const char *why = NULL;
    bg_wr_init(&wr, 128, 0);
    bg_kafka_scram_t *s = fz_scram_started(&wr);
    if (bg_kafka_scram_client_final(s, (const uint8_t *)FZ_SERVER_FIRST,
                                    sizeof FZ_SERVER_FIRST - 1, &wr, NULL) != BG_KAFKA_SCRAM_OK)
        abort();
    int rc = bg_kafka_scram_verify_server_final(s, p, len, &why);
    if (rc != BG_KAFKA_SCRAM_OK && !why)
        abort();
    if (rc == BG_KAFKA_SCRAM_ERR_SERVER && !bg_kafka_scram_server_error(s))
        abort();
    if ((rc == BG_KAFKA_SCRAM_OK) != bg_kafka_scram_done(s))
        abort();
    bg_kafka_scram_free(s);
    bg_wr_free(&wr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* Copy the message so out-of-bounds reads past it are caught by ASan. */
    size_t len = size - 1;
    uint8_t *p = malloc(len ? len : 1);
    if (!p)
        return 0;
    memcpy(p, data + 1, len);
    switch (data[0] % 4) {
    case 0:
        fz_oauth(p, len);
        break;
    case 1:
        fz_plain(p, len);
        break;
    case 2:
        fz_scram_first(p, len);
        break;
    default:
        fz_scram_final(p, len);
        break;
    }
    free(p);
    return 0;
}
