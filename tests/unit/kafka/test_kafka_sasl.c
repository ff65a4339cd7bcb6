/* Server-side SASL parsers (kafka_sasl.h): OAUTHBEARER (RFC 7628) and PLAIN
 * (RFC 4616). Valid messages first, then one negative test per malformation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "adapters/kafka/kafka_sasl.h"

#define JWT "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"

/* Parses a C-string literal of length n (literals may hold \0 and \x01). */
static int oauth(const char *msg, size_t n, bg_slice_t *tok, bg_slice_t *az, const char **why)
{
    return bg_kafka_sasl_parse_oauthbearer((const uint8_t *)msg, n, tok, az, why);
}
#define OAUTH(lit, tok, az, why) oauth(lit, sizeof(lit) - 1, tok, az, why)

static void assert_slice(bg_slice_t s, const char *want)
{
    assert_int_equal(s.len, (int32_t)strlen(want));
    assert_memory_equal(s.p, want, strlen(want));
}

/* ---- OAUTHBEARER: valid ---- */

static void test_oauth_minimal(void **state)
{
    bg_slice_t tok, az;
    const char *why = "unset";
    assert_int_equal(OAUTH("n,,\x01" "auth=Bearer " JWT "\x01\x01", &tok, &az, &why), BG_KAFKA_SASL_OK);
    assert_slice(tok, JWT);
    assert_int_equal(az.len, -1);
    assert_null(az.p);
    assert_string_equal(why, "unset"); /* untouched on success */
}

static void test_oauth_authzid(void **state)
{
    bg_slice_t tok, az;
    char name[64];
    assert_int_equal(OAUTH("n,a=al=2Cice=3D,\x01" "auth=Bearer " JWT "\x01\x01", &tok, &az, NULL),
                     BG_KAFKA_SASL_OK);
    assert_slice(az, "al=2Cice=3D");
    assert_int_equal(bg_kafka_sasl_saslname_decode(az, name, sizeof name), 7);
    assert_string_equal(name, "al,ice=");
    assert_slice(tok, JWT);
}

static void test_oauth_extra_kvpairs(void **state)
{
    bg_slice_t tok, az;
    /* host/port (RFC 7628) and a Kafka SASL extension around the auth pair. */
    assert_int_equal(OAUTH("y,,\x01host=kafka.example\x01port=9092\x01" "auth=bearer   abc-_.~+/x==\x01"
                           "traceId=a b\tc\x01\x01",
                           &tok, &az, NULL),
                     BG_KAFKA_SASL_OK);
    assert_slice(tok, "abc-_.~+/x==");
    assert_int_equal(az.len, -1);
}

static void test_oauth_dummy(void **state)
{
    const uint8_t one = 0x01, two[2] = {0x01, 0x01}, zero = 0;
    assert_true(bg_kafka_sasl_is_oauthbearer_dummy(&one, 1));
    assert_false(bg_kafka_sasl_is_oauthbearer_dummy(two, 2));
    assert_false(bg_kafka_sasl_is_oauthbearer_dummy(&zero, 1));
    assert_false(bg_kafka_sasl_is_oauthbearer_dummy(&one, 0));
    /* The dummy is not a valid first message. */
    bg_slice_t tok, az;
    assert_int_equal(bg_kafka_sasl_parse_oauthbearer(&one, 1, &tok, &az, NULL),
                     BG_KAFKA_SASL_MALFORMED);
}

static void test_oauth_error_json(void **state)
{
    char buf[64], tiny[8] = "xxxxxxx";
    int n = bg_kafka_sasl_oauthbearer_error(buf, sizeof buf);
    assert_int_equal(n, (int)strlen("{\"status\":\"invalid_token\"}"));
    assert_string_equal(buf, "{\"status\":\"invalid_token\"}");
    assert_int_equal(bg_kafka_sasl_oauthbearer_error(tiny, sizeof tiny), -1);
    assert_string_equal(tiny, "");
    assert_int_equal(bg_kafka_sasl_oauthbearer_error(buf, (size_t)n), -1); /* no room for NUL */
    assert_int_equal(bg_kafka_sasl_oauthbearer_error(buf, (size_t)n + 1), n);
}

/* ---- OAUTHBEARER: one negative test per malformation ---- */

static void expect_oauth_fail(const char *msg, size_t n, int rc, const char *why_part)
{
    bg_slice_t tok = {(const uint8_t *)"x", 1}, az = {(const uint8_t *)"x", 1};
    const char *why = NULL;
    assert_int_equal(oauth(msg, n, &tok, &az, &why), rc);
    assert_non_null(why);
    if (!strstr(why, why_part))
        fail_msg("why '%s' lacks '%s'", why, why_part);
    assert_int_equal(tok.len, -1);
    assert_int_equal(az.len, -1);
}
#define FAIL_OAUTH(lit, rc, part) expect_oauth_fail(lit, sizeof(lit) - 1, rc, part)

static void test_oauth_missing_gs2(void **state)
{
    FAIL_OAUTH("\x01" "auth=Bearer " JWT "\x01\x01", BG_KAFKA_SASL_MALFORMED, "gs2");
    FAIL_OAUTH(",,\x01" "auth=Bearer " JWT "\x01\x01", BG_KAFKA_SASL_MALFORMED, "gs2");
    FAIL_OAUTH("n\x01" "auth=Bearer " JWT "\x01\x01", BG_KAFKA_SASL_MALFORMED, "gs2");
    FAIL_OAUTH("", BG_KAFKA_SASL_MALFORMED, "gs2");
}

static void test_oauth_unterminated_gs2(void **state)
{
    FAIL_OAUTH("n,\x01" "auth=Bearer " JWT "\x01\x01", BG_KAFKA_SASL_MALFORMED, "gs2");
    FAIL_OAUTH("n,a=alice\x01" "auth=Bearer " JWT "\x01\x01", BG_KAFKA_SASL_MALFORMED, "gs2");
}

static void test_oauth_bad_authzid(void **state)
{
    FAIL_OAUTH("n,a=,\x01" "auth=Bearer " JWT "\x01\x01", BG_KAFKA_SASL_MALFORMED, "authzid");
    FAIL_OAUTH("n,a=b=2X,\x01" "auth=Bearer " JWT "\x01\x01", BG_KAFKA_SASL_MALFORMED, "authzid");
    FAIL_OAUTH("n,b=x,\x01" "auth=Bearer " JWT "\x01\x01", BG_KAFKA_SASL_MALFORMED, "gs2");
    /* "=2C" and "=3D" are the only escapes: "=3C" does not decode to '=' */
    FAIL_OAUTH("n,a=b=3C,\x01" "auth=Bearer " JWT "\x01\x01", BG_KAFKA_SASL_MALFORMED, "authzid");
    FAIL_OAUTH("n,a=b=2D,\x01" "auth=Bearer " JWT "\x01\x01", BG_KAFKA_SASL_MALFORMED, "authzid");
}

/* "n,a=<alen x 'a'>,\x01auth=Bearer abc\x01\x01" in a malloc'd buffer. */
static char *make_oauth_authzid(size_t alen, size_t *n)
{
    static const char tail[] = ",\x01" "auth=Bearer abc\x01\x01";
    size_t t = sizeof tail - 1;
    char *m = malloc(4 + alen + t);
    assert_non_null(m);
    memcpy(m, "n,a=", 4);
    memset(m + 4, 'a', alen);
    memcpy(m + 4 + alen, tail, t);
    *n = 4 + alen + t;
    return m;
}

static void test_oauth_authzid_size(void **state)
{
    bg_slice_t tok, az;
    size_t n;
    char *m = make_oauth_authzid(BG_KAFKA_SASL_MAX_NAME, &n);
    assert_int_equal(oauth(m, n, &tok, &az, NULL), BG_KAFKA_SASL_OK);
    assert_int_equal(az.len, BG_KAFKA_SASL_MAX_NAME);
    free(m);
    m = make_oauth_authzid(BG_KAFKA_SASL_MAX_NAME + 1, &n);
    expect_oauth_fail(m, n, BG_KAFKA_SASL_MALFORMED, "authzid");
    free(m);
}

static void test_oauth_gs2_flag(void **state)
{
    /* Only "n" and "y" (and the refused "p=") start a gs2 header. */
    FAIL_OAUTH("x,,\x01" "auth=Bearer " JWT "\x01\x01", BG_KAFKA_SASL_MALFORMED, "gs2");
    FAIL_OAUTH("N,,\x01" "auth=Bearer " JWT "\x01\x01", BG_KAFKA_SASL_MALFORMED, "gs2");
}

static void test_oauth_channel_binding(void **state)
{
    FAIL_OAUTH("p=tls-unique,,\x01" "auth=Bearer " JWT "\x01\x01", BG_KAFKA_SASL_UNSUPPORTED,
               "channel binding");
}

static void test_oauth_no_separator_after_gs2(void **state)
{
    FAIL_OAUTH("n,,auth=Bearer " JWT "\x01\x01", BG_KAFKA_SASL_MALFORMED, "\\x01");
}

static void test_oauth_missing_auth(void **state)
{
    FAIL_OAUTH("n,,\x01host=h\x01\x01", BG_KAFKA_SASL_MALFORMED, "no auth");
    FAIL_OAUTH("n,,\x01\x01", BG_KAFKA_SASL_MALFORMED, "no auth");
    /* A key that only starts with "auth" is another key. */
    FAIL_OAUTH("n,,\x01" "authz=Bearer abc\x01\x01", BG_KAFKA_SASL_MALFORMED, "no auth");
}

static void test_oauth_duplicate_auth(void **state)
{
    FAIL_OAUTH("n,,\x01" "auth=Bearer a\x01" "auth=Bearer b\x01\x01", BG_KAFKA_SASL_MALFORMED,
               "duplicate");
}

static void test_oauth_wrong_scheme(void **state)
{
    FAIL_OAUTH("n,,\x01" "auth=Basic dXNlcjpwdw==\x01\x01", BG_KAFKA_SASL_UNSUPPORTED, "Bearer");
    FAIL_OAUTH("n,,\x01" "auth=Bearerx " JWT "\x01\x01", BG_KAFKA_SASL_UNSUPPORTED, "Bearer");
    /* No space at all: not "Bearer <token>". */
    FAIL_OAUTH("n,,\x01" "auth=Bearer" JWT "\x01\x01", BG_KAFKA_SASL_MALFORMED, "Bearer");
}

static void test_oauth_bad_token(void **state)
{
    FAIL_OAUTH("n,,\x01" "auth=Bearer \x01\x01", BG_KAFKA_SASL_MALFORMED, "token");
    FAIL_OAUTH("n,,\x01" "auth=Bearer a b\x01\x01", BG_KAFKA_SASL_MALFORMED, "token");
    FAIL_OAUTH("n,,\x01" "auth=Bearer ab=c\x01\x01", BG_KAFKA_SASL_MALFORMED, "token");
    FAIL_OAUTH("n,,\x01" "auth=Bearer ==\x01\x01", BG_KAFKA_SASL_MALFORMED, "token");
}

static void test_oauth_missing_terminator(void **state)
{
    FAIL_OAUTH("n,,\x01" "auth=Bearer " JWT "\x01", BG_KAFKA_SASL_MALFORMED, "terminator");
    FAIL_OAUTH("n,,\x01" "auth=Bearer " JWT, BG_KAFKA_SASL_MALFORMED, "terminator");
}

static void test_oauth_trailing_bytes(void **state)
{
    FAIL_OAUTH("n,,\x01" "auth=Bearer " JWT "\x01\x01x", BG_KAFKA_SASL_MALFORMED, "after");
}

static void test_oauth_embedded_nul(void **state)
{
    FAIL_OAUTH("n,,\x01" "auth=Bearer ab\0cd\x01\x01", BG_KAFKA_SASL_MALFORMED, "pair");
    FAIL_OAUTH("n,,\x01ho\0st=h\x01" "auth=Bearer abc\x01\x01", BG_KAFKA_SASL_MALFORMED, "pair");
    FAIL_OAUTH("n,a=al\0ice,\x01" "auth=Bearer abc\x01\x01", BG_KAFKA_SASL_MALFORMED, "authzid");
}

static void test_oauth_bad_kvpair(void **state)
{
    FAIL_OAUTH("n,,\x01noequals\x01" "auth=Bearer abc\x01\x01", BG_KAFKA_SASL_MALFORMED, "pair");
    FAIL_OAUTH("n,,\x01" "=v\x01" "auth=Bearer abc\x01\x01", BG_KAFKA_SASL_MALFORMED, "pair");
    FAIL_OAUTH("n,,\x01k1=v\x01" "auth=Bearer abc\x01\x01", BG_KAFKA_SASL_MALFORMED, "pair");
    FAIL_OAUTH("n,,\x01k=\x7f\x01" "auth=Bearer abc\x01\x01", BG_KAFKA_SASL_MALFORMED, "pair");
}

/* "n,,\x01auth=Bearer <tlen x 'a'>\x01\x01" in a malloc'd buffer. */
static char *make_oauth(size_t tlen, size_t *n)
{
    static const char head[] = "n,,\x01" "auth=Bearer ";
    size_t h = sizeof head - 1;
    char *m = malloc(h + tlen + 2);
    assert_non_null(m);
    memcpy(m, head, h);
    memset(m + h, 'a', tlen);
    memcpy(m + h + tlen, "\x01\x01", 2);
    *n = h + tlen + 2;
    return m;
}

static void test_oauth_oversized(void **state)
{
    bg_slice_t tok, az;
    const char *why = NULL;
    size_t n;
    /* One byte over the token limit, the whole message still within MAX_MSG. */
    char *m = make_oauth(BG_KAFKA_SASL_MAX_TOKEN + 1, &n);
    assert_true(n <= BG_KAFKA_SASL_MAX_MSG);
    assert_int_equal(oauth(m, n, &tok, &az, &why), BG_KAFKA_SASL_TOO_LARGE);
    assert_string_equal(why, "token too large");
    free(m);
    /* Exactly at the limit is fine. */
    m = make_oauth(BG_KAFKA_SASL_MAX_TOKEN, &n);
    assert_int_equal(oauth(m, n, &tok, &az, &why), BG_KAFKA_SASL_OK);
    assert_int_equal(tok.len, BG_KAFKA_SASL_MAX_TOKEN);
    free(m);
    /* Whole message over MAX_MSG: refused before scanning. */
    m = calloc(1, BG_KAFKA_SASL_MAX_MSG + 1);
    assert_non_null(m);
    assert_int_equal(oauth(m, BG_KAFKA_SASL_MAX_MSG + 1, &tok, &az, &why), BG_KAFKA_SASL_TOO_LARGE);
    assert_string_equal(why, "message too large");
    free(m);
}

/* ---- PLAIN ---- */

static int plain(const char *msg, size_t n, bg_slice_t *az, bg_slice_t *ac, bg_slice_t *pw,
                 const char **why)
{
    return bg_kafka_sasl_parse_plain((const uint8_t *)msg, n, az, ac, pw, why);
}
#define PLAIN(lit, az, ac, pw, why) plain(lit, sizeof(lit) - 1, az, ac, pw, why)

static void test_plain_valid(void **state)
{
    bg_slice_t az, ac, pw;
    assert_int_equal(PLAIN("\0alice\0" JWT, &az, &ac, &pw, NULL), BG_KAFKA_SASL_OK);
    assert_int_equal(az.len, -1);
    assert_slice(ac, "alice");
    assert_slice(pw, JWT);
    assert_int_equal(PLAIN("admin\0alice\0" JWT, &az, &ac, &pw, NULL), BG_KAFKA_SASL_OK);
    assert_slice(az, "admin");
    assert_slice(ac, "alice");
    assert_slice(pw, JWT);
}

static void expect_plain_fail(const char *msg, size_t n, int rc)
{
    bg_slice_t az, ac, pw;
    const char *why = NULL;
    assert_int_equal(plain(msg, n, &az, &ac, &pw, &why), rc);
    assert_non_null(why);
    assert_int_equal(az.len, -1);
    assert_int_equal(ac.len, -1);
    assert_int_equal(pw.len, -1);
}
#define FAIL_PLAIN(lit, rc) expect_plain_fail(lit, sizeof(lit) - 1, rc)

static void test_plain_one_nul(void **state) { FAIL_PLAIN("alice\0" JWT, BG_KAFKA_SASL_MALFORMED); }
static void test_plain_no_nul(void **state) { FAIL_PLAIN("alice", BG_KAFKA_SASL_MALFORMED); }
static void test_plain_three_nuls(void **state)
{
    FAIL_PLAIN("\0alice\0pass\0word", BG_KAFKA_SASL_MALFORMED);
}
static void test_plain_empty_password(void **state)
{
    FAIL_PLAIN("\0alice\0", BG_KAFKA_SASL_MALFORMED);
}
static void test_plain_empty_user(void **state) { FAIL_PLAIN("\0\0" JWT, BG_KAFKA_SASL_MALFORMED); }
static void test_plain_empty(void **state) { FAIL_PLAIN("", BG_KAFKA_SASL_MALFORMED); }

static void test_plain_oversized(void **state)
{
    size_t n = 1 + 5 + 1 + BG_KAFKA_SASL_MAX_TOKEN + 1;
    char *m = malloc(n);
    assert_non_null(m);
    memcpy(m, "\0alice\0", 7);
    memset(m + 7, 'a', n - 7);
    expect_plain_fail(m, n, BG_KAFKA_SASL_TOO_LARGE); /* password one over */
    bg_slice_t az, ac, pw;
    assert_int_equal(plain(m, n - 1, &az, &ac, &pw, NULL), BG_KAFKA_SASL_OK);
    free(m);

    char name[BG_KAFKA_SASL_MAX_NAME + 8];
    memset(name, 'u', sizeof name);
    name[0] = '\0';
    name[BG_KAFKA_SASL_MAX_NAME + 2] = '\0'; /* authcid of MAX_NAME + 1 bytes */
    expect_plain_fail(name, sizeof name, BG_KAFKA_SASL_TOO_LARGE);

    /* authzid of MAX_NAME bytes is taken, one more is too large */
    char az_msg[BG_KAFKA_SASL_MAX_NAME + 1 + 9];
    memset(az_msg, 'z', BG_KAFKA_SASL_MAX_NAME + 1);
    memcpy(az_msg + BG_KAFKA_SASL_MAX_NAME + 1, "\0alice\0pw", 9);
    expect_plain_fail(az_msg, BG_KAFKA_SASL_MAX_NAME + 10, BG_KAFKA_SASL_TOO_LARGE);
    assert_int_equal(plain(az_msg + 1, BG_KAFKA_SASL_MAX_NAME + 9, &az, &ac, &pw, NULL),
                     BG_KAFKA_SASL_OK);
    assert_int_equal(az.len, BG_KAFKA_SASL_MAX_NAME);

    m = calloc(1, BG_KAFKA_SASL_MAX_MSG + 1);
    assert_non_null(m);
    expect_plain_fail(m, BG_KAFKA_SASL_MAX_MSG + 1, BG_KAFKA_SASL_TOO_LARGE);
    free(m);
}

static void test_plain_client(void **state)
{
    bg_wr_t wr;
    bg_slice_t az, ac, pw;
    bg_wr_init(&wr, 16, 0);
    assert_int_equal(bg_kafka_sasl_plain_client(&wr, "busgate", "s3cret"), 0);
    assert_int_equal(wr.len, 15);
    assert_memory_equal(wr.buf, "\0busgate\0s3cret", 15);
    /* Round trip through our own parser. */
    assert_int_equal(plain((const char *)wr.buf, wr.len, &az, &ac, &pw, NULL), BG_KAFKA_SASL_OK);
    assert_slice(ac, "busgate");
    assert_slice(pw, "s3cret");
    bg_wr_reset(&wr);
    assert_int_equal(bg_kafka_sasl_plain_client(&wr, "", "x"), -1);
    assert_int_equal(bg_kafka_sasl_plain_client(&wr, "u", ""), -1);
    assert_int_equal(wr.len, 0);
    bg_wr_free(&wr);
}

static void test_saslname_decode(void **state)
{
    char out[8];
    bg_slice_t s = {(const uint8_t *)"a=2Cb", 5};
    assert_int_equal(bg_kafka_sasl_saslname_decode(s, out, sizeof out), 3);
    assert_string_equal(out, "a,b");
    s.p = (const uint8_t *)"a=2";
    s.len = 3;
    assert_int_equal(bg_kafka_sasl_saslname_decode(s, out, sizeof out), -1);
    s.p = (const uint8_t *)"abcdefgh";
    s.len = 8;
    assert_int_equal(bg_kafka_sasl_saslname_decode(s, out, sizeof out), -1); /* no room for NUL */
    s.len = 7;
    assert_int_equal(bg_kafka_sasl_saslname_decode(s, out, sizeof out), 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oauth_minimal),
        cmocka_unit_test(test_oauth_authzid),
        cmocka_unit_test(test_oauth_extra_kvpairs),
        cmocka_unit_test(test_oauth_dummy),
        cmocka_unit_test(test_oauth_error_json),
        cmocka_unit_test(test_oauth_missing_gs2),
        cmocka_unit_test(test_oauth_unterminated_gs2),
        cmocka_unit_test(test_oauth_bad_authzid),
        cmocka_unit_test(test_oauth_authzid_size),
        cmocka_unit_test(test_oauth_gs2_flag),
        cmocka_unit_test(test_oauth_channel_binding),
        cmocka_unit_test(test_oauth_no_separator_after_gs2),
        cmocka_unit_test(test_oauth_missing_auth),
        cmocka_unit_test(test_oauth_duplicate_auth),
        cmocka_unit_test(test_oauth_wrong_scheme),
        cmocka_unit_test(test_oauth_bad_token),
        cmocka_unit_test(test_oauth_missing_terminator),
        cmocka_unit_test(test_oauth_trailing_bytes),
        cmocka_unit_test(test_oauth_embedded_nul),
        cmocka_unit_test(test_oauth_bad_kvpair),
        cmocka_unit_test(test_oauth_oversized),
        cmocka_unit_test(test_plain_valid),
        cmocka_unit_test(test_plain_one_nul),
        cmocka_unit_test(test_plain_no_nul),
        cmocka_unit_test(test_plain_three_nuls),
        cmocka_unit_test(test_plain_empty_password),
        cmocka_unit_test(test_plain_empty_user),
        cmocka_unit_test(test_plain_empty),
        cmocka_unit_test(test_plain_oversized),
        cmocka_unit_test(test_plain_client),
        cmocka_unit_test(test_saslname_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
