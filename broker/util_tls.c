/* Shared TLS contexts (see util_tls.h). */
#include "broker/util_tls.h"

#include <arpa/inet.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

static void bg_util_tls__err(char *err, size_t errlen, const char *what, const char *part)
{
    char e[200];
    ERR_error_string_n(ERR_get_error(), e, sizeof e);
    snprintf(err, errlen, "%s%s: %s", what, part, e);
}

/* OpenSSL's default asks for an encrypted key's pass phrase on the
 * terminal (a start-up that hangs); busgate has none to give. */
static int bg_util_tls__no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

/* Whether the PEM file at path holds an encrypted private key (PKCS#8
 * "ENCRYPTED PRIVATE KEY" or a traditional key with "Proc-Type: 4,ENCRYPTED"),
 * to say so instead of OpenSSL's reason for the failed load. */
static int bg_util_tls__key_encrypted(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[256];
    int enc = 0;
    while (!enc && fgets(line, sizeof line, f))
        enc = strstr(line, "-----BEGIN ENCRYPTED PRIVATE KEY-----") != NULL ||
              strstr(line, "Proc-Type: 4,ENCRYPTED") != NULL;
    fclose(f);
    return enc;
}

/* Loads cert (a chain) and key into ctx; on failure err says why: an
 * encrypted key by name, else OpenSSL's reason. */
static int bg_util_tls__load_pair(SSL_CTX *ctx, const char *cert, const char *key, const char *what,
                                  const char *part, char *err, size_t errlen)
{
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        bg_util_tls__err(err, errlen, what, part);
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1)
        return 0;
    if (bg_util_tls__key_encrypted(key)) {
        ERR_clear_error();
        snprintf(err, errlen, "%s%s: encrypted private keys are not supported (%s)", what, part,
                 key);
    } else {
        bg_util_tls__err(err, errlen, what, part);
    }
    return -1;
}

/* Settings both context builders share: TLS 1.2 at least, no pass phrase
 * prompt, and a peer closing its socket without close_notify read as a close
 * (OpenSSL 3 otherwise fails the read with "unexpected eof while reading",
 * an error where the header promises an end). */
static void bg_util_tls__common(SSL_CTX *ctx)
{
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_default_passwd_cb(ctx, bg_util_tls__no_passphrase);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
}

SSL_CTX *bg_util_tls_server_ctx(const bg_config_tls_t *t, const char *what, char *err,
                                size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        bg_util_tls__err(err, errlen, what, "");
        return NULL;
    }
    bg_util_tls__common(ctx);
    if (bg_util_tls__load_pair(ctx, t->cert, t->key, what, " cert/key", err, errlen) != 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (t->client_ca) {
        if (SSL_CTX_load_verify_locations(ctx, t->client_ca, NULL) != 1) {
            bg_util_tls__err(err, errlen, what, ".client_ca");
            SSL_CTX_free(ctx);
            return NULL;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        /* Clients are told which CAs are accepted (to pick a certificate),
         * and session resumption with a client certificate needs a session
         * id context, or OpenSSL fails the resumed handshake. */
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->client_ca);
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
        static const unsigned char sid_ctx[] = "busgate";
        SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    }
    return ctx;
}

SSL_CTX *bg_util_tls_client_ctx(const bg_config_tls_t *t, const char *what, char *err,
                                size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        bg_util_tls__err(err, errlen, what, "");
        return NULL;
    }
    bg_util_tls__common(ctx);
    int ok = t->ca ? SSL_CTX_load_verify_locations(ctx, t->ca, NULL)
                   : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1)
        bg_util_tls__err(err, errlen, what, "");
    else if (t->cert && bg_util_tls__load_pair(ctx, t->cert, t->key, what, "", err, errlen) != 0)
        ok = 0;
    if (ok != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, t->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    return ctx;
}

SSL *bg_util_tls_client_ssl(SSL_CTX *ctx, const char *host, int verify)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return NULL;
    /* SSL_set1_host takes IP literals too (OpenSSL 3 matches them against
     * the certificate's IP addresses), so "127.0.0.1" works as a host; SNI
     * must name a host, never an address (RFC 6066), so it is left out then. */
    unsigned char addr[16];
    int is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
    if ((!is_ip && SSL_set_tlsext_host_name(ssl, host) != 1) ||
        (verify && SSL_set1_host(ssl, host) != 1)) {
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

void bg_util_tls_reason(const SSL *ssl, unsigned long e, char *out, size_t cap)
{
    char reason[200];
    ERR_error_string_n(e, reason, sizeof reason);
    /* With verify off the verdict is recorded but did not fail anything. */
    long vr = ssl && (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) ? SSL_get_verify_result(ssl)
                                                                  : X509_V_OK;
    snprintf(out, cap, "%s%s%s%s", reason, vr != X509_V_OK ? " (" : "",
             vr != X509_V_OK ? X509_verify_cert_error_string(vr) : "", vr != X509_V_OK ? ")" : "");
}

struct bufferevent *bg_util_tls_upstream_bev(struct event_base *base, SSL_CTX *ctx,
                                             const char *host, int verify)
{
    if (!ctx)
        return bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    SSL *ssl = bg_util_tls_client_ssl(ctx, host, verify);
    if (!ssl)
        return NULL;
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev)
        SSL_free(ssl);
    else
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

struct bufferevent *bg_util_tls_client_bev(struct event_base *base, SSL_CTX *ctx, int fd)
{
    if (!ctx)
        return bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return NULL;
    struct bufferevent *bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                             BEV_OPT_CLOSE_ON_FREE);
    if (!bev)
        SSL_free(ssl);
    else
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

int bg_util_tls_bev_error(struct bufferevent *bev, char *out, size_t cap)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    unsigned long e = 0, next;
    while ((next = bufferevent_get_openssl_error(bev)) != 0)
        if (!e)
            e = next;
    if (!ssl || !e) {
        snprintf(out, cap, "%s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        return 0;
    }
    bg_util_tls_reason(ssl, e, out, cap);
    return 1;
}

void bg_util_tls_client_failure(struct bufferevent *bev, char *out, size_t cap)
{
    char reason[300];
    int tls = bg_util_tls_bev_error(bev, reason, sizeof reason);
    snprintf(out, cap, "client connection error: %s%s", tls ? "TLS " : "", reason);
}

void bg_util_tls_bev_free(struct bufferevent *bev, int notify)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    /* Not after a failed handshake or a fatal error (OpenSSL forbids it),
     * and not when output is left unsent: an abrupt close then tells the
     * peer it did not get everything. */
    if (ssl && notify && SSL_is_init_finished(ssl) &&
        !(SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN) &&
        evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        (void)SSL_shutdown(ssl); /* one non-blocking write; the peer's is not awaited */
        ERR_clear_error();       /* never left for another connection's error text */
    }
    bufferevent_free(bev);
}

int bg_util_tls_upstream_failure(struct bufferevent *bev, short what, int connecting, char *out,
                                 size_t cap)
{
    char reason[300];
    int dns;
    if (what & BEV_EVENT_TIMEOUT)
        snprintf(out, cap, "timed out");
    else if (what & BEV_EVENT_EOF)
        snprintf(out, cap, "closed by the broker");
    else if (!(what & BEV_EVENT_ERROR))
        return 0;
    /* Set only by a failed bufferevent_socket_connect_hostname lookup (0
     * after a successful one): a resolver error, not in errno. */
    else if ((dns = bufferevent_socket_get_dns_error(bev)) != 0)
        snprintf(out, cap, "name lookup failed: %s", evutil_gai_strerror(dns));
    else if (!bg_util_tls_bev_error(bev, reason, sizeof reason))
        snprintf(out, cap, "%s", reason);
    else
        snprintf(out, cap, "TLS %s: %s", connecting ? "handshake failed" : "error", reason);
    return 1;
}
