/* bg_util_tls_upstream_failure and bg_util_tls_client_failure: the reason a
 * connection failed, shared by the Kafka and AMQP adapters (the TLS reasons
 * are checked by the integration suites against real TLS listeners); the
 * context builders' refusal of an encrypted private key. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/util_tls.h"

/* A plain bufferevent on one end of a socket pair (the other end: peer). */
typedef struct bg_test_pair_s {
    struct event_base *base;
    struct bufferevent *bev;
    int peer;
} bg_test_pair_t;

static bg_test_pair_t bg_test_pair(void)
{
    bg_test_pair_t t = {event_base_new(), NULL, -1};
    assert_non_null(t.base);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    t.bev = bufferevent_socket_new(t.base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(t.bev);
    t.peer = sv[1];
    return t;
}

/* After the test freed t->bev. */
static void bg_test_pair_end(bg_test_pair_t *t)
{
    close(t->peer);
    event_base_free(t->base);
}

static void test_upstream_failure_texts(void **state)
{
    (void)state;
    bg_test_pair_t t = bg_test_pair();
    struct bufferevent *bev = t.bev;
    char why[400];

    assert_int_equal(bg_util_tls_upstream_failure(bev, BEV_EVENT_CONNECTED, 1, why, sizeof why),
                     0);
    assert_int_equal(bg_util_tls_upstream_failure(bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, 0,
                                                  why, sizeof why),
                     1);
    assert_string_equal(why, "timed out");
    assert_int_equal(
        bg_util_tls_upstream_failure(bev, BEV_EVENT_READING | BEV_EVENT_EOF, 0, why, sizeof why),
        1);
    assert_string_equal(why, "closed by the broker");
    /* A plain socket error: the socket's own error text, no "TLS". */
    errno = ECONNREFUSED;
    assert_int_equal(
        bg_util_tls_upstream_failure(bev, BEV_EVENT_ERROR, 1, why, sizeof why), 1);
    assert_string_equal(why, strerror(ECONNREFUSED));

    bufferevent_free(bev);
    bg_test_pair_end(&t);
}

static void test_client_failure_text_plain(void **state)
{
    (void)state;
    bg_test_pair_t t = bg_test_pair();
    struct bufferevent *bev = t.bev;
    char why[400], want[400];
    errno = ECONNRESET;
    bg_util_tls_client_failure(bev, why, sizeof why);
    snprintf(want, sizeof want, "client connection error: %s", strerror(ECONNRESET));
    assert_string_equal(why, want);
    bg_util_tls_bev_free(bev, 1); /* not TLS: freed, nothing sent */
    bg_test_pair_end(&t);
}

/* Writes a self-signed certificate and its key, encrypted with pass phrase
 * "x", into a fresh directory; the paths go to cert and key (64 bytes). */
static void bg_test__encrypted_pair(char *dir, char *cert, char *key)
{
    assert_non_null(mkdtemp(dir));
    snprintf(cert, 64, "%s/c.pem", dir);
    snprintf(key, 64, "%s/k.pem", dir);
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    assert_non_null(pk);
    assert_non_null(x);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"t", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_set_pubkey(x, pk);
    assert_true(X509_sign(x, pk, EVP_sha256()) > 0);
    FILE *f = fopen(cert, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
    f = fopen(key, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PKCS8PrivateKey(f, pk, EVP_aes_256_cbc(), "x", 1, NULL, NULL), 1);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(pk);
}

/* Never a pass phrase prompt (the test would wait on the terminal): the
 * error names the key file. */
static void test_encrypted_key_refused(void **state)
{
    (void)state;
    char dir[] = "/tmp/bg-tls-XXXXXX", cert[64], key[64], err[512], want[512];
    bg_test__encrypted_pair(dir, cert, key);
    bg_config_tls_t t = {.enabled = 1, .cert = cert, .key = key, .verify = 1};
    assert_null(bg_util_tls_server_ctx(&t, "kafka.tls", err, sizeof err));
    snprintf(want, sizeof want, "kafka.tls cert/key: encrypted private keys are not supported (%s)",
             key);
    assert_string_equal(err, want);
    assert_null(bg_util_tls_client_ctx(&t, "amqp.upstream.tls", err, sizeof err));
    snprintf(want, sizeof want,
             "amqp.upstream.tls: encrypted private keys are not supported (%s)", key);
    assert_string_equal(err, want);
    unlink(cert);
    unlink(key);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upstream_failure_texts),
        cmocka_unit_test(test_client_failure_text_plain),
        cmocka_unit_test(test_encrypted_key_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
