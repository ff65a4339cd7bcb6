/* SCRAM-SHA-256/512 client (kafka_scram.h): the RFC 7677 test vector, a
 * SHA-512 round trip against a server written here (RFC 5802 §3 math, with
 * Hi() done by hand rather than PKCS5_PBKDF2_HMAC), one negative test per
 * malformed or unacceptable server message, and the salted-password cache
 * (hits give the same keys; key, bound and threads). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "adapters/kafka/kafka_scram.h"

/* RFC 7677 §3 */
#define V_NONCE "rOprNGfwEbeRWgbNEkqO"
#define V_SNONCE V_NONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define V_SALT "W22ZaJ0SNY7soEsUEjb6gQ=="
#define V_SERVER_FIRST "r=" V_SNONCE ",s=" V_SALT ",i=4096"
#define V_CLIENT_FINAL "c=biws,r=" V_SNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define V_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

static const uint8_t *u8(const char *s) { return (const uint8_t *)s; }

static void assert_wr(const bg_wr_t *wr, const char *want)
{
    if (wr->len != strlen(want) || memcmp(wr->buf, want, wr->len) != 0)
        fail_msg("got '%.*s', want '%s'", (int)wr->len, (const char *)wr->buf, want);
}

/* A SHA-256 exchange on the RFC 7677 vector, advanced through client_first. */
static bg_kafka_scram_t *vector_after_first(bg_wr_t *wr)
{
    const char *why = NULL;
    bg_kafka_scram_t *s = bg_kafka_scram_new(BG_KAFKA_SCRAM_SHA256, "user", "pencil");
    assert_non_null(s);
    assert_int_equal(bg_kafka_scram__set_client_nonce(s, V_NONCE), 0);
    bg_wr_init(wr, 64, 0);
    assert_int_equal(bg_kafka_scram_client_first(s, wr, &why), BG_KAFKA_SCRAM_OK);
    assert_wr(wr, "n,,n=user,r=" V_NONCE);
    bg_wr_reset(wr);
    return s;
}

static void test_rfc7677_vector(void **state)
{
    bg_wr_t wr;
    const char *why = NULL;
    bg_kafka_scram_t *s = vector_after_first(&wr);
    assert_int_equal(bg_kafka_scram_client_final(s, u8(V_SERVER_FIRST), strlen(V_SERVER_FIRST),
                                                 &wr, &why),
                     BG_KAFKA_SCRAM_OK);
    assert_wr(&wr, V_CLIENT_FINAL);
    assert_false(bg_kafka_scram_done(s));
    assert_int_equal(
        bg_kafka_scram_verify_server_final(s, u8(V_SERVER_FINAL), strlen(V_SERVER_FINAL), &why),
        BG_KAFKA_SCRAM_OK);
    assert_true(bg_kafka_scram_done(s));
    assert_null(bg_kafka_scram_server_error(s));
    /* Complete: nothing more is accepted. */
    assert_int_equal(
        bg_kafka_scram_verify_server_final(s, u8(V_SERVER_FINAL), strlen(V_SERVER_FINAL), &why),
        BG_KAFKA_SCRAM_ERR_STATE);
    bg_wr_free(&wr);
    bg_kafka_scram_free(s);
}

/* Runs the vector's client_final on a modified server-first; returns the status. */
static int vector_first(const char *server_first, const char **why)
{
    bg_wr_t wr;
    bg_kafka_scram_t *s = vector_after_first(&wr);
    int rc = bg_kafka_scram_client_final(s, u8(server_first), strlen(server_first), &wr, why);
    if (rc != BG_KAFKA_SCRAM_OK)
        assert_int_equal(wr.len, 0); /* nothing to send on failure */
    /* Any failure is final. */
    if (rc != BG_KAFKA_SCRAM_OK)
        assert_int_equal(bg_kafka_scram_verify_server_final(s, u8(V_SERVER_FINAL),
                                                            strlen(V_SERVER_FINAL), NULL),
                         BG_KAFKA_SCRAM_ERR_STATE);
    bg_wr_free(&wr);
    bg_kafka_scram_free(s);
    return rc;
}

static void expect_first(const char *server_first, int rc, const char *why_part)
{
    const char *why = NULL;
    int got = vector_first(server_first, &why);
    if (got != rc)
        fail_msg("'%s': rc %d, want %d (why %s)", server_first, got, rc, why ? why : "-");
    if (rc != BG_KAFKA_SCRAM_OK && (!why || !strstr(why, why_part)))
        fail_msg("'%s': why '%s' lacks '%s'", server_first, why ? why : "(null)", why_part);
}

static void test_iterations(void **state)
{
    expect_first("r=" V_SNONCE ",s=" V_SALT ",i=4095", BG_KAFKA_SCRAM_ERR_REFUSED, "4096");
    expect_first("r=" V_SNONCE ",s=" V_SALT ",i=1", BG_KAFKA_SCRAM_ERR_REFUSED, "4096");
    expect_first("r=" V_SNONCE ",s=" V_SALT ",i=16385", BG_KAFKA_SCRAM_ERR_REFUSED, "16384");
    expect_first("r=" V_SNONCE ",s=" V_SALT ",i=999999999", BG_KAFKA_SCRAM_ERR_REFUSED, "16384");
    expect_first("r=" V_SNONCE ",s=" V_SALT ",i=99999999999999999999", BG_KAFKA_SCRAM_ERR_MALFORMED,
                 "iteration");
    expect_first("r=" V_SNONCE ",s=" V_SALT ",i=0", BG_KAFKA_SCRAM_ERR_MALFORMED, "iteration");
    expect_first("r=" V_SNONCE ",s=" V_SALT ",i=-4096", BG_KAFKA_SCRAM_ERR_MALFORMED, "iteration");
    expect_first("r=" V_SNONCE ",s=" V_SALT ",i=4096x", BG_KAFKA_SCRAM_ERR_MALFORMED, "iteration");
    /* 2^32 + 4096: ten digits are refused before they could wrap to 4096 */
    expect_first("r=" V_SNONCE ",s=" V_SALT ",i=4294971392", BG_KAFKA_SCRAM_ERR_MALFORMED,
                 "iteration");
    expect_first("r=" V_SNONCE ",s=" V_SALT ",i=", BG_KAFKA_SCRAM_ERR_MALFORMED, "iteration");
    expect_first("r=" V_SNONCE ",s=" V_SALT ",i=16384", BG_KAFKA_SCRAM_OK, "");
}

static void test_nonce_mismatch(void **state)
{
    expect_first("r=xOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaT,s=" V_SALT ",i=4096",
                 BG_KAFKA_SCRAM_ERR_REFUSED, "nonce");
    /* The server must add its own part. */
    expect_first("r=" V_NONCE ",s=" V_SALT ",i=4096", BG_KAFKA_SCRAM_ERR_REFUSED, "nonce");
    expect_first("r=rOprNGfwEbeRWgbNEkq,s=" V_SALT ",i=4096", BG_KAFKA_SCRAM_ERR_REFUSED, "nonce");
    expect_first("r=,s=" V_SALT ",i=4096", BG_KAFKA_SCRAM_ERR_MALFORMED, "nonce");
    expect_first("r=" V_NONCE "ab\x7f,s=" V_SALT ",i=4096", BG_KAFKA_SCRAM_ERR_MALFORMED, "nonce");
}

static void test_first_missing_fields(void **state)
{
    expect_first("", BG_KAFKA_SCRAM_ERR_MALFORMED, "r=");
    expect_first("s=" V_SALT ",i=4096", BG_KAFKA_SCRAM_ERR_MALFORMED, "r=");
    expect_first("r=" V_SNONCE ",i=4096", BG_KAFKA_SCRAM_ERR_MALFORMED, "s=");
    expect_first("r=" V_SNONCE ",s=" V_SALT, BG_KAFKA_SCRAM_ERR_MALFORMED, "i=");
    expect_first("r=" V_SNONCE ",i=4096,s=" V_SALT, BG_KAFKA_SCRAM_ERR_MALFORMED, "s=");
    expect_first("R=" V_SNONCE ",s=" V_SALT ",i=4096", BG_KAFKA_SCRAM_ERR_MALFORMED, "r=");
}

static void test_first_bad_salt(void **state)
{
    expect_first("r=" V_SNONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ=,i=4096", BG_KAFKA_SCRAM_ERR_MALFORMED,
                 "salt");
    expect_first("r=" V_SNONCE ",s=W22ZaJ0SNY7soEsUEjb6g!==,i=4096", BG_KAFKA_SCRAM_ERR_MALFORMED,
                 "salt");
    expect_first("r=" V_SNONCE ",s=W2=ZaJ0SNY7soEsUEjb6gQ==,i=4096", BG_KAFKA_SCRAM_ERR_MALFORMED,
                 "salt");
    expect_first("r=" V_SNONCE ",s=W22ZaJ0SNY7soEsUEjb6gR==,i=4096", BG_KAFKA_SCRAM_ERR_MALFORMED,
                 "salt"); /* non-zero unused bits: not canonical */
    expect_first("r=" V_SNONCE ",s=QUJ=,i=4096", BG_KAFKA_SCRAM_ERR_MALFORMED,
                 "salt"); /* the same with one '=' ("QUI=" is canonical) */
    expect_first("r=" V_SNONCE ",s=QUI=,i=4096", BG_KAFKA_SCRAM_OK, "");
    expect_first("r=" V_SNONCE ",s=QQ==QUJD,i=4096", BG_KAFKA_SCRAM_ERR_MALFORMED,
                 "salt"); /* padding only in the last quantum */
    expect_first("r=" V_SNONCE ",s=,i=4096", BG_KAFKA_SCRAM_ERR_MALFORMED, "salt");
}

static void test_first_extensions(void **state)
{
    expect_first("m=required,r=" V_SNONCE ",s=" V_SALT ",i=4096", BG_KAFKA_SCRAM_ERR_REFUSED,
                 "m=");
    /* Optional extensions after i= are ignored, as Kafka does... */
    expect_first(V_SERVER_FIRST ",x=whatever", BG_KAFKA_SCRAM_OK, "");
    /* ...but must be well-formed. */
    expect_first(V_SERVER_FIRST ",", BG_KAFKA_SCRAM_ERR_MALFORMED, "comma");
    expect_first(V_SERVER_FIRST ",1=x", BG_KAFKA_SCRAM_ERR_MALFORMED, "extension");
    expect_first(V_SERVER_FIRST ",x=", BG_KAFKA_SCRAM_ERR_MALFORMED, "extension");
    expect_first(V_SERVER_FIRST ",x=a,", BG_KAFKA_SCRAM_ERR_MALFORMED, "extension");
}

static void test_first_oversized(void **state)
{
    size_t n = BG_KAFKA_SCRAM_MAX_MSG + 1;
    char *m = malloc(n + 1);
    assert_non_null(m);
    snprintf(m, n + 1, "%s,x=", V_SERVER_FIRST);
    size_t h = strlen(m);
    memset(m + h, 'a', n - h);
    m[n] = '\0';
    expect_first(m, BG_KAFKA_SCRAM_ERR_MALFORMED, "too large");
    m[n - 1] = '\0'; /* exactly MAX_MSG: accepted */
    expect_first(m, BG_KAFKA_SCRAM_OK, "");
    free(m);
}

/* Runs the vector up to client_final, then verify on server_final. */
static int vector_final(const char *server_final, const char **why, bg_kafka_scram_t **out)
{
    bg_wr_t wr;
    bg_kafka_scram_t *s = vector_after_first(&wr);
    assert_int_equal(bg_kafka_scram_client_final(s, u8(V_SERVER_FIRST), strlen(V_SERVER_FIRST),
                                                 &wr, NULL),
                     BG_KAFKA_SCRAM_OK);
    bg_wr_free(&wr);
    int rc = bg_kafka_scram_verify_server_final(s, u8(server_final), strlen(server_final), why);
    *out = s;
    return rc;
}

static void test_bad_server_signature(void **state)
{
    static const char *bad[] = {
        "v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", /* one byte differs */
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4AAAA", /* not base64-aligned */
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl9", /* shorter */
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G8=", /* last byte differs */
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4AAAA=", /* the signature and 3 bytes more */
        "v=",
        "x=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        "",
    };
    static const int want[] = {BG_KAFKA_SCRAM_ERR_REFUSED, BG_KAFKA_SCRAM_ERR_MALFORMED,
                               BG_KAFKA_SCRAM_ERR_REFUSED, BG_KAFKA_SCRAM_ERR_REFUSED,
                               BG_KAFKA_SCRAM_ERR_REFUSED, BG_KAFKA_SCRAM_ERR_REFUSED,
                               BG_KAFKA_SCRAM_ERR_MALFORMED, BG_KAFKA_SCRAM_ERR_MALFORMED};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bg_kafka_scram_t *s;
        const char *why = NULL;
        int rc = vector_final(bad[i], &why, &s);
        if (rc != want[i])
            fail_msg("'%s': rc %d want %d (%s)", bad[i], rc, want[i], why ? why : "-");
        assert_non_null(why);
        assert_false(bg_kafka_scram_done(s));
        bg_kafka_scram_free(s);
    }
    /* Extensions after v= are ignored. */
    bg_kafka_scram_t *s;
    assert_int_equal(vector_final(V_SERVER_FINAL ",x=1", NULL, &s), BG_KAFKA_SCRAM_OK);
    bg_kafka_scram_free(s);
}

/* A server-final of MAX_MSG bytes is read, one byte more is refused unread
 * even with the right signature in it. */
static void test_server_final_oversized(void **state)
{
    size_t n = BG_KAFKA_SCRAM_MAX_MSG + 1;
    char *m = malloc(n + 1);
    assert_non_null(m);
    snprintf(m, n + 1, "%s,x=", V_SERVER_FINAL);
    size_t h = strlen(m);
    memset(m + h, 'a', n - h);
    m[n] = '\0';
    bg_kafka_scram_t *s;
    const char *why = NULL;
    assert_int_equal(vector_final(m, &why, &s), BG_KAFKA_SCRAM_ERR_MALFORMED);
    assert_non_null(why);
    assert_non_null(strstr(why, "too large"));
    bg_kafka_scram_free(s);
    m[n - 1] = '\0';
    assert_int_equal(vector_final(m, NULL, &s), BG_KAFKA_SCRAM_OK);
    bg_kafka_scram_free(s);
    free(m);
}

static void test_server_error(void **state)
{
    bg_kafka_scram_t *s;
    const char *why = NULL;
    assert_int_equal(vector_final("e=invalid-proof", &why, &s), BG_KAFKA_SCRAM_ERR_SERVER);
    assert_non_null(why);
    assert_string_equal(bg_kafka_scram_server_error(s), "invalid-proof");
    assert_false(bg_kafka_scram_done(s));
    bg_kafka_scram_free(s);
    /* Control bytes are not passed on verbatim; the length is bounded. */
    char big[400] = "e=bad\n";
    memset(big + 6, 'x', sizeof big - 7);
    big[sizeof big - 1] = '\0';
    assert_int_equal(vector_final(big, &why, &s), BG_KAFKA_SCRAM_ERR_SERVER);
    assert_int_equal(strncmp(bg_kafka_scram_server_error(s), "bad?xxx", 7), 0);
    assert_int_equal(strlen(bg_kafka_scram_server_error(s)), 127);
    bg_kafka_scram_free(s);
}

static void test_state_order(void **state)
{
    bg_wr_t wr;
    const char *why = NULL;
    bg_wr_init(&wr, 64, 0);
    bg_kafka_scram_t *s = bg_kafka_scram_new(BG_KAFKA_SCRAM_SHA256, "user", "pencil");
    assert_non_null(s);
    assert_int_equal(bg_kafka_scram_client_final(s, u8(V_SERVER_FIRST), strlen(V_SERVER_FIRST),
                                                 &wr, &why),
                     BG_KAFKA_SCRAM_ERR_STATE);
    assert_int_equal(bg_kafka_scram_client_first(s, &wr, &why), BG_KAFKA_SCRAM_ERR_STATE);
    assert_int_equal(wr.len, 0);
    bg_kafka_scram_free(s);

    s = bg_kafka_scram_new(BG_KAFKA_SCRAM_SHA256, "user", "pencil");
    assert_int_equal(bg_kafka_scram_client_first(s, &wr, &why), BG_KAFKA_SCRAM_OK);
    assert_int_equal(bg_kafka_scram__set_client_nonce(s, "abc"), -1); /* too late */
    assert_int_equal(bg_kafka_scram_client_first(s, &wr, &why), BG_KAFKA_SCRAM_ERR_STATE);
    bg_kafka_scram_free(s);
    bg_wr_free(&wr);
}

static void test_new_args(void **state)
{
    assert_null(bg_kafka_scram_new(BG_KAFKA_SCRAM_SHA256, "", "pw"));
    assert_null(bg_kafka_scram_new(BG_KAFKA_SCRAM_SHA256, "u", ""));
    assert_null(bg_kafka_scram_new(BG_KAFKA_SCRAM_SHA256, NULL, "pw"));
    assert_null(bg_kafka_scram_new((bg_kafka_scram_mech_t)7, "u", "pw"));
    assert_int_equal(bg_kafka_scram_mech_parse("SCRAM-SHA-256"), BG_KAFKA_SCRAM_SHA256);
    assert_int_equal(bg_kafka_scram_mech_parse("SCRAM-SHA-512"), BG_KAFKA_SCRAM_SHA512);
    assert_int_equal(bg_kafka_scram_mech_parse("scram-sha-512"), 0);
    assert_int_equal(bg_kafka_scram_mech_parse("PLAIN"), 0);
    assert_string_equal(bg_kafka_scram_mech_name(BG_KAFKA_SCRAM_SHA512), "SCRAM-SHA-512");
    assert_null(bg_kafka_scram_mech_name((bg_kafka_scram_mech_t)0));
    bg_kafka_scram_t *s = bg_kafka_scram_new(BG_KAFKA_SCRAM_SHA256, "u", "pw");
    assert_int_equal(bg_kafka_scram__set_client_nonce(s, "a,b"), -1);
    assert_int_equal(bg_kafka_scram__set_client_nonce(s, "a b"), -1);
    assert_int_equal(bg_kafka_scram__set_client_nonce(s, ""), -1);
    bg_kafka_scram_free(s);
    bg_kafka_scram_free(NULL);
}

static void test_saslname_and_random_nonce(void **state)
{
    bg_wr_t a, b;
    bg_wr_init(&a, 64, 0);
    bg_wr_init(&b, 64, 0);
    bg_kafka_scram_t *s1 = bg_kafka_scram_new(BG_KAFKA_SCRAM_SHA512, "a,b=c", "pw");
    bg_kafka_scram_t *s2 = bg_kafka_scram_new(BG_KAFKA_SCRAM_SHA512, "a,b=c", "pw");
    assert_int_equal(bg_kafka_scram_client_first(s1, &a, NULL), BG_KAFKA_SCRAM_OK);
    assert_int_equal(bg_kafka_scram_client_first(s2, &b, NULL), BG_KAFKA_SCRAM_OK);
    const char *pre = "n,,n=a=2Cb=3Dc,r=";
    size_t pl = strlen(pre);
    assert_int_equal(a.len, pl + 32); /* 24 random bytes -> 32 base64 chars */
    assert_memory_equal(a.buf, pre, pl);
    for (size_t i = pl; i < a.len; i++)
        assert_true(a.buf[i] > 0x20 && a.buf[i] < 0x7f && a.buf[i] != ',');
    assert_int_equal(b.len, a.len);
    assert_memory_not_equal(a.buf + pl, b.buf + pl, 32);
    bg_kafka_scram_free(s1);
    bg_kafka_scram_free(s2);
    bg_wr_free(&a);
    bg_wr_free(&b);
}

/* ---- a SCRAM server, written here independently, for round trips ---- */

typedef struct srv_s {
    const EVP_MD *md;
    size_t hlen;
    uint8_t stored_key[64], server_key[64];
} srv_t;

static void hmac(const srv_t *sv, const uint8_t *k, size_t kl, const void *m, size_t ml,
                 uint8_t *out)
{
    unsigned int n = 0;
    assert_non_null(HMAC(sv->md, k, (int)kl, m, ml, out, &n));
    assert_int_equal(n, sv->hlen);
}

/* RFC 5802 Hi(): U1 = HMAC(p, salt || INT(1)), Ui = HMAC(p, Ui-1), xor of all. */
static void hi(const srv_t *sv, const char *pw, const uint8_t *salt, size_t sl, int iter,
               uint8_t *out)
{
    uint8_t u[64], buf[128];
    memcpy(buf, salt, sl);
    memcpy(buf + sl, "\0\0\0\1", 4);
    hmac(sv, u8(pw), strlen(pw), buf, sl + 4, u);
    memcpy(out, u, sv->hlen);
    for (int i = 1; i < iter; i++) {
        hmac(sv, u8(pw), strlen(pw), u, sv->hlen, u);
        for (size_t j = 0; j < sv->hlen; j++)
            out[j] ^= u[j];
    }
}

static void srv_init(srv_t *sv, const EVP_MD *md, const char *pw, const uint8_t *salt, size_t sl,
                     int iter)
{
    uint8_t salted[64], ck[64];
    unsigned int n;
    sv->md = md;
    sv->hlen = (size_t)EVP_MD_get_size(md);
    hi(sv, pw, salt, sl, iter, salted);
    hmac(sv, salted, sv->hlen, "Client Key", 10, ck);
    assert_int_equal(EVP_Digest(ck, sv->hlen, sv->stored_key, &n, md, NULL), 1);
    hmac(sv, salted, sv->hlen, "Server Key", 10, sv->server_key);
}

static size_t b64(const uint8_t *in, size_t n, char *out)
{
    return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* Checks the client's proof; fills the server-final message. Returns 1 when valid. */
static int srv_check(const srv_t *sv, const char *auth_msg, const char *proof_b64, char *final)
{
    uint8_t proof[80], sig[64], ck[64], stored[64], ssig[64];
    unsigned int n;
    int pl = EVP_DecodeBlock(proof, u8(proof_b64), (int)strlen(proof_b64));
    assert_true(pl >= (int)sv->hlen);
    hmac(sv, sv->stored_key, sv->hlen, auth_msg, strlen(auth_msg), sig);
    for (size_t i = 0; i < sv->hlen; i++)
        ck[i] = proof[i] ^ sig[i];
    assert_int_equal(EVP_Digest(ck, sv->hlen, stored, &n, sv->md, NULL), 1);
    hmac(sv, sv->server_key, sv->hlen, auth_msg, strlen(auth_msg), ssig);
    strcpy(final, "v=");
    b64(ssig, sv->hlen, final + 2);
    return memcmp(stored, sv->stored_key, sv->hlen) == 0;
}

/* Full SHA-512 exchange; server_pw is what the server has stored. Returns
 * 1 when the server accepted the proof (and then the client verified it). */
static int round_trip_512(const char *client_pw, const char *server_pw)
{
    uint8_t salt[16];
    char sfirst[320], auth_msg[1024], sfinal[128], cfinal[512];
    bg_wr_t wr;
    srv_t sv;
    assert_int_equal(RAND_bytes(salt, sizeof salt), 1);
    srv_init(&sv, EVP_sha512(), server_pw, salt, sizeof salt, 4096);

    bg_kafka_scram_t *s = bg_kafka_scram_new(BG_KAFKA_SCRAM_SHA512, "busgate", client_pw);
    bg_wr_init(&wr, 64, 0);
    assert_int_equal(bg_kafka_scram_client_first(s, &wr, NULL), BG_KAFKA_SCRAM_OK);
    char cfirst[256];
    snprintf(cfirst, sizeof cfirst, "%.*s", (int)wr.len, (const char *)wr.buf);
    assert_int_equal(strncmp(cfirst, "n,,n=busgate,r=", 15), 0);
    const char *cnonce = cfirst + 15;

    char salt64[32];
    b64(salt, sizeof salt, salt64);
    snprintf(sfirst, sizeof sfirst, "r=%sSERVERpart,s=%s,i=4096", cnonce, salt64);
    bg_wr_reset(&wr);
    assert_int_equal(bg_kafka_scram_client_final(s, u8(sfirst), strlen(sfirst), &wr, NULL),
                     BG_KAFKA_SCRAM_OK);
    snprintf(cfinal, sizeof cfinal, "%.*s", (int)wr.len, (const char *)wr.buf);
    char *p = strstr(cfinal, ",p=");
    assert_non_null(p);
    *p = '\0';
    snprintf(auth_msg, sizeof auth_msg, "%s,%s,%s", cfirst + 3, sfirst, cfinal);
    int ok = srv_check(&sv, auth_msg, p + 3, sfinal);
    if (ok)
        assert_int_equal(bg_kafka_scram_verify_server_final(s, u8(sfinal), strlen(sfinal), NULL),
                         BG_KAFKA_SCRAM_OK);
    assert_int_equal(bg_kafka_scram_done(s), ok);
    bg_wr_free(&wr);
    bg_kafka_scram_free(s);
    return ok;
}

static void test_sha512_round_trip(void **state)
{
    assert_true(round_trip_512("Secr3t,=pw", "Secr3t,=pw"));
    assert_false(round_trip_512("wrong", "Secr3t,=pw"));
}

/* The test server itself must agree with the RFC 7677 vector (else the round
 * trip above would prove nothing). */
static void test_server_matches_vector(void **state)
{
    uint8_t salt[32];
    char sfinal[128];
    srv_t sv;
    int sl = EVP_DecodeBlock(salt, u8(V_SALT), (int)strlen(V_SALT)) - 2; /* "==" */
    srv_init(&sv, EVP_sha256(), "pencil", salt, (size_t)sl, 4096);
    const char *am = "n=user,r=" V_NONCE "," V_SERVER_FIRST ",c=biws,r=" V_SNONCE;
    assert_true(srv_check(&sv, am, "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", sfinal));
    assert_string_equal(sfinal, V_SERVER_FINAL);
}

/* ---- the process-wide salted-password cache ---- */

/* One exchange up to the client-final message with the vector's nonces;
 * returns the client-final in out (cap bytes). */
static void cached_final(bg_kafka_scram_mech_t mech, const char *pw, const char *salt64, int iter,
                         char *out, size_t cap)
{
    char sfirst[256];
    bg_wr_t wr;
    bg_kafka_scram_t *s = bg_kafka_scram_new(mech, "user", pw);
    assert_non_null(s);
    assert_int_equal(bg_kafka_scram__set_client_nonce(s, V_NONCE), 0);
    bg_wr_init(&wr, 64, 0);
    assert_int_equal(bg_kafka_scram_client_first(s, &wr, NULL), BG_KAFKA_SCRAM_OK);
    bg_wr_reset(&wr);
    snprintf(sfirst, sizeof sfirst, "r=%s,s=%s,i=%d", V_SNONCE, salt64, iter);
    assert_int_equal(bg_kafka_scram_client_final(s, u8(sfirst), strlen(sfirst), &wr, NULL),
                     BG_KAFKA_SCRAM_OK);
    snprintf(out, cap, "%.*s", (int)wr.len, (const char *)wr.buf);
    bg_wr_free(&wr);
    bg_kafka_scram_free(s);
}

static void assert_stats(uint64_t hits, uint64_t misses)
{
    uint64_t h, m;
    bg_kafka_scram__cache_stats(&h, &m);
    if (h != hits || m != misses)
        fail_msg("cache hits %llu misses %llu, want %llu / %llu", (unsigned long long)h,
                 (unsigned long long)m, (unsigned long long)hits, (unsigned long long)misses);
}

/* The second derivation of the same credential comes from the cache and
 * yields the same proof and the same server signature check. */
static void test_cache_hit_same_keys(void **state)
{
    char a[256];
    bg_wr_t wr;
    bg_kafka_scram_cache_clear();
    cached_final(BG_KAFKA_SCRAM_SHA256, "pencil", V_SALT, 4096, a, sizeof a);
    assert_string_equal(a, V_CLIENT_FINAL);
    assert_stats(0, 1);
    /* Again, through the whole exchange: same proof, server-final verifies. */
    bg_kafka_scram_t *s = vector_after_first(&wr);
    assert_int_equal(bg_kafka_scram_client_final(s, u8(V_SERVER_FIRST), strlen(V_SERVER_FIRST),
                                                 &wr, NULL),
                     BG_KAFKA_SCRAM_OK);
    assert_wr(&wr, V_CLIENT_FINAL);
    assert_stats(1, 1);
    assert_int_equal(bg_kafka_scram_verify_server_final(s, u8(V_SERVER_FINAL),
                                                        strlen(V_SERVER_FINAL), NULL),
                     BG_KAFKA_SCRAM_OK);
    bg_wr_free(&wr);
    bg_kafka_scram_free(s);
    bg_kafka_scram_cache_clear();
    assert_stats(0, 0);
    cached_final(BG_KAFKA_SCRAM_SHA256, "pencil", V_SALT, 4096, a, sizeof a);
    assert_stats(0, 1); /* cleared: derived again */
}

/* The password, the mechanism and the iteration count are part of the key:
 * a reload that fixes the password must not reuse the old derivation even
 * though the broker's salt is unchanged. */
static void test_cache_key(void **state)
{
    char a[256], b[256];
    bg_kafka_scram_cache_clear();
    cached_final(BG_KAFKA_SCRAM_SHA256, "pencil", V_SALT, 4096, a, sizeof a);
    cached_final(BG_KAFKA_SCRAM_SHA256, "pencil2", V_SALT, 4096, b, sizeof b);
    assert_stats(0, 2);
    assert_string_not_equal(a, b);
    cached_final(BG_KAFKA_SCRAM_SHA512, "pencil", V_SALT, 4096, b, sizeof b);
    cached_final(BG_KAFKA_SCRAM_SHA256, "pencil", V_SALT, 4097, b, sizeof b);
    assert_stats(0, 4);
    assert_string_not_equal(a, b);
    cached_final(BG_KAFKA_SCRAM_SHA256, "pencil", V_SALT, 4096, b, sizeof b);
    assert_stats(1, 4);
    assert_string_equal(a, b);
}

/* A cached salt that the new salt is a prefix of is another salt: the
 * proof is the one a fresh derivation gives. */
static void test_cache_key_salt_length(void **state)
{
    char fresh[256], got[256];
    bg_kafka_scram_cache_clear();
    cached_final(BG_KAFKA_SCRAM_SHA256, "pencil", "QUJD", 4096, fresh, sizeof fresh); /* "ABC" */
    bg_kafka_scram_cache_clear();
    cached_final(BG_KAFKA_SCRAM_SHA256, "pencil", "QUJDRA==", 4096, got, sizeof got); /* "ABCD" */
    cached_final(BG_KAFKA_SCRAM_SHA256, "pencil", "QUJD", 4096, got, sizeof got);
    assert_stats(0, 2);
    assert_string_equal(got, fresh);
    bg_kafka_scram_cache_clear();
}

/* A few slots, least recently used replaced. */
static void test_cache_bounded(void **state)
{
    static const char *salts[] = {"AAAAAAAAAAAAAAAAAAAAAA==", "AQEBAQEBAQEBAQEBAQEBAQ==",
                                  "AgICAgICAgICAgICAgICAg==", "AwMDAwMDAwMDAwMDAwMDAw==",
                                  "BAQEBAQEBAQEBAQEBAQEBA=="};
    char a[256];
    bg_kafka_scram_cache_clear();
    for (int i = 0; i < 5; i++)
        cached_final(BG_KAFKA_SCRAM_SHA256, "pencil", salts[i], 4096, a, sizeof a);
    assert_stats(0, 5);
    cached_final(BG_KAFKA_SCRAM_SHA256, "pencil", salts[4], 4096, a, sizeof a);
    assert_stats(1, 5);
    cached_final(BG_KAFKA_SCRAM_SHA256, "pencil", salts[0], 4096, a, sizeof a);
    assert_stats(1, 6); /* the oldest was replaced */
    bg_kafka_scram_cache_clear();
}

#define CACHE_THREADS 4
#define CACHE_ROUNDS 3

static void *cache_thread(void *arg)
{
    int *ok = arg;
    char a[256];
    for (int i = 0; i < CACHE_ROUNDS; i++) {
        cached_final(BG_KAFKA_SCRAM_SHA256, "pencil", V_SALT, 4096, a, sizeof a);
        if (strcmp(a, V_CLIENT_FINAL) != 0)
            *ok = 0;
    }
    return NULL;
}

/* Worker threads share the cache: every proof right, every lookup counted,
 * at most one PBKDF2 per thread. */
static void test_cache_threads(void **state)
{
    pthread_t t[CACHE_THREADS];
    int ok[CACHE_THREADS];
    uint64_t h, m;
    bg_kafka_scram_cache_clear();
    for (int i = 0; i < CACHE_THREADS; i++) {
        ok[i] = 1;
        assert_int_equal(pthread_create(&t[i], NULL, cache_thread, &ok[i]), 0);
    }
    for (int i = 0; i < CACHE_THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_true(ok[i]);
    }
    bg_kafka_scram__cache_stats(&h, &m);
    assert_int_equal(h + m, CACHE_THREADS * CACHE_ROUNDS);
    assert_true(m >= 1 && m <= CACHE_THREADS);
    bg_kafka_scram_cache_clear();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7677_vector),
        cmocka_unit_test(test_iterations),
        cmocka_unit_test(test_nonce_mismatch),
        cmocka_unit_test(test_first_missing_fields),
        cmocka_unit_test(test_first_bad_salt),
        cmocka_unit_test(test_first_extensions),
        cmocka_unit_test(test_first_oversized),
        cmocka_unit_test(test_bad_server_signature),
        cmocka_unit_test(test_server_final_oversized),
        cmocka_unit_test(test_server_error),
        cmocka_unit_test(test_state_order),
        cmocka_unit_test(test_new_args),
        cmocka_unit_test(test_saslname_and_random_nonce),
        cmocka_unit_test(test_server_matches_vector),
        cmocka_unit_test(test_sha512_round_trip),
        cmocka_unit_test(test_cache_hit_same_keys),
        cmocka_unit_test(test_cache_key),
        cmocka_unit_test(test_cache_key_salt_length),
        cmocka_unit_test(test_cache_bounded),
        cmocka_unit_test(test_cache_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
