/* bg_jwks_fetch over https against a loopback TLS server: the provider's
 * certificate is verified, chain and host name, before a byte of the key set
 * is taken, against the system's store (which holds no test CA) or the CA
 * file given (an issuer's jwks_ca). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "broker/config.h"
#include "broker/identity.h"
#include "broker/jwks.h"
#include "idtest.h"

#define BG_T_JWKS "{\"keys\":[]}"

/* A certificate for key pk named cn, with the extension values given (NULL:
 * left out), signed by issuer_key as issuer (NULL: self-signed). */
static X509 *bg_t_cert(EVP_PKEY *pk, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                       const char *basic, const char *san)
{
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), issuer ? 2 : 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
    X509_set_pubkey(x, pk);
    X509V3_CTX v;
    X509V3_set_ctx_nodb(&v);
    X509V3_set_ctx(&v, issuer ? issuer : x, x, NULL, NULL, 0);
    const struct {
        int nid;
        const char *value;
    } ext[] = {{NID_basic_constraints, basic}, {NID_subject_alt_name, san}};
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        if (!ext[i].value)
            continue;
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v, ext[i].nid, ext[i].value);
        assert_non_null(e);
        assert_int_equal(X509_add_ext(x, e, -1), 1);
        X509_EXTENSION_free(e);
    }
    assert_true(X509_sign(x, issuer_key ? issuer_key : pk, EVP_sha256()) > 0);
    return x;
}

/* A loopback https server answering every request with BG_T_JWKS; served
 * counts the requests it answered (after a completed handshake). */
typedef struct bg_t_srv_s {
    SSL_CTX *ctx;
    int fd;
    uint16_t port;
    pthread_t th;
    atomic_int served, stop;
} bg_t_srv_t;

static void bg_t_srv_answer(bg_t_srv_t *s, int c)
{
    SSL *ssl = SSL_new(s->ctx);
    assert_non_null(ssl);
    SSL_set_fd(ssl, c);
    char req[4096] = "";
    size_t len = 0;
    if (SSL_accept(ssl) == 1) {
        while (len < sizeof req - 1 && !strstr(req, "\r\n\r\n")) {
            int n = SSL_read(ssl, req + len, (int)(sizeof req - 1 - len));
            if (n <= 0)
                break;
            len += (size_t)n;
            req[len] = 0;
        }
        if (len > 0) {
            char resp[256];
            int n = snprintf(resp, sizeof resp,
                             "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                             strlen(BG_T_JWKS), BG_T_JWKS);
            if (SSL_write(ssl, resp, n) == n)
                atomic_fetch_add(&s->served, 1);
            SSL_shutdown(ssl);
        }
    }
    SSL_free(ssl);
    close(c);
}

static void *bg_t_srv_run(void *arg)
{
    bg_t_srv_t *s = arg;
    for (int c; (c = idt_accept(s->fd, &s->stop)) >= 0;) {
        struct timeval tv = {.tv_sec = 5};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        bg_t_srv_answer(s, c);
    }
    return NULL;
}

static void bg_t_srv_start(bg_t_srv_t *s, X509 *cert, EVP_PKEY *key)
{
    memset(s, 0, sizeof *s);
    s->ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(s->ctx);
    assert_int_equal(SSL_CTX_use_certificate(s->ctx, cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(s->ctx, key), 1);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->fd, 8), 0);
    assert_int_equal(getsockname(s->fd, (struct sockaddr *)&a, &alen), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->th, NULL, bg_t_srv_run, s), 0);
}

static void bg_t_srv_stop(bg_t_srv_t *s)
{
    atomic_store(&s->stop, 1);
    pthread_join(s->th, NULL);
    close(s->fd);
    SSL_CTX_free(s->ctx);
}

/* bg_jwks_fetch of https://127.0.0.1:port/jwks trusting the CAs in ca_file
 * (NULL: the system's store); 0 and the body, or -1 and err. */
static int bg_t_fetch(uint16_t port, const char *ca_file, char *err, size_t errlen)
{
    char url[64], *body = NULL;
    size_t len = 0;
    snprintf(url, sizeof url, "https://127.0.0.1:%u/jwks", port);
    err[0] = 0;
    int rc = bg_jwks_fetch(url, ca_file, 5000, NULL, &body, &len, err, errlen);
    if (rc == 0) {
        assert_int_equal(len, strlen(BG_T_JWKS));
        assert_string_equal(body, BG_T_JWKS);
    }
    free(body);
    return rc;
}

/* Writes cert as PEM to a new temporary file; returns its path (malloc'd). */
static char *bg_t_pem_file(X509 *cert)
{
    const char *base = getenv("TMPDIR");
    char *path = malloc(4096);
    assert_non_null(path);
    snprintf(path, 4096, "%s/bg-jwks-ca-XXXXXX", base ? base : "/tmp");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, cert), 1);
    assert_int_equal(fclose(f), 0);
    return path;
}

/* A provider whose certificate chains to no CA trusted, or chains to one
 * but names another host, is not fetched from: the handshake fails on the
 * certificate (CURLE_PEER_FAILED_VERIFICATION) and no request is sent.
 * Trusted are the system's store (which holds no test CA) or, given a CA
 * file, the CAs in it: another CA's file is refused too. The same server is
 * fetched from once its CA's file is given and the name matches, so the
 * refusals are the certificate checks' and nothing else's. */
static void test_https_provider_certificate_is_verified(void **state)
{
    (void)state;
    char err[256];
    EVP_PKEY *ca_key = EVP_EC_gen("P-256"), *key = EVP_EC_gen("P-256");
    EVP_PKEY *stranger_key = EVP_EC_gen("P-256");
    assert_non_null(ca_key);
    assert_non_null(key);
    assert_non_null(stranger_key);
    X509 *ca = bg_t_cert(ca_key, "busgate test CA", NULL, NULL, "critical,CA:TRUE", NULL);
    X509 *stranger = bg_t_cert(stranger_key, "another CA", NULL, NULL, "critical,CA:TRUE", NULL);
    X509 *here = bg_t_cert(key, "127.0.0.1", ca, ca_key, NULL, "IP:127.0.0.1");
    X509 *other = bg_t_cert(key, "other.invalid", ca, ca_key, NULL, "DNS:other.invalid");
    char *ca_file = bg_t_pem_file(ca), *stranger_file = bg_t_pem_file(stranger);
    const char *refused = "fetch failed: SSL peer certificate or SSH remote key was not OK";

    bg_t_srv_t s;
    bg_t_srv_start(&s, here, key);
    assert_int_equal(bg_t_fetch(s.port, NULL, err, sizeof err), -1); /* the system's store */
    assert_string_equal(err, refused);
    assert_int_equal(bg_t_fetch(s.port, stranger_file, err, sizeof err), -1);
    assert_string_equal(err, refused);
    assert_int_equal(atomic_load(&s.served), 0);
    assert_int_equal(bg_t_fetch(s.port, ca_file, err, sizeof err), 0);
    assert_int_equal(atomic_load(&s.served), 1);
    bg_t_srv_stop(&s);

    bg_t_srv_start(&s, other, key); /* trusted, for another host */
    assert_int_equal(bg_t_fetch(s.port, ca_file, err, sizeof err), -1);
    assert_string_equal(err, refused);
    assert_int_equal(atomic_load(&s.served), 0);
    bg_t_srv_stop(&s);

    unlink(ca_file);
    unlink(stranger_file);
    free(ca_file);
    free(stranger_file);
    X509_free(ca);
    X509_free(stranger);
    X509_free(here);
    X509_free(other);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(stranger_key);
    EVP_PKEY_free(key);
}

/* An issuer's jwks_ca reaches the fetch: its identity fetches from the
 * provider on the test CA only when jwks_ca names that CA's file (one
 * request served after the handshake), and not with the system's store. */
static void test_issuer_jwks_ca_is_used(void **state)
{
    (void)state;
    EVP_PKEY *ca_key = EVP_EC_gen("P-256"), *key = EVP_EC_gen("P-256");
    assert_non_null(ca_key);
    assert_non_null(key);
    X509 *ca = bg_t_cert(ca_key, "busgate test CA", NULL, NULL, "critical,CA:TRUE", NULL);
    X509 *here = bg_t_cert(key, "127.0.0.1", ca, ca_key, NULL, "IP:127.0.0.1");
    char *ca_file = bg_t_pem_file(ca), url[64], err[256] = "";
    bg_t_srv_t s;
    bg_t_srv_start(&s, here, key);
    snprintf(url, sizeof url, "https://127.0.0.1:%u/jwks", s.port);
    static char *auds[] = {"busgate"};
    for (int with_ca = 0; with_ca <= 1; with_ca++) {
        bg_config_issuer_t iss = {.issuer = "https://idp.test", .audiences = auds,
                                  .naudiences = 1, .jwks_url = url,
                                  .jwks_ca = with_ca ? ca_file : NULL,
                                  .jwks_refresh_ms = 3600 * 1000};
        bg_config_identity_t cfg = {.issuers = &iss, .nissuers = 1};
        bg_identity_t *id = bg_identity_new(&cfg, err, sizeof err);
        assert_non_null(id);
        /* the one attempt finishes; an empty key set leaves it not ready */
        assert_int_equal(bg_identity_wait_ready(id, 10000), -1);
        if (with_ca)
            assert_true(atomic_load(&s.served) >= 1);
        else
            assert_int_equal(atomic_load(&s.served), 0);
        bg_identity_free(id);
    }
    bg_t_srv_stop(&s);
    unlink(ca_file);
    free(ca_file);
    X509_free(ca);
    X509_free(here);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(key);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* the server's alert to a client that hung up */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_https_provider_certificate_is_verified),
        cmocka_unit_test(test_issuer_jwks_ca_is_used),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
