/* TLS contexts and connections shared by the adapters (OpenSSL 3): the
 * listener side (busgate as a TLS server toward clients) and the upstream
 * side (busgate as a TLS client toward a broker, verified). One place, so
 * every protocol gets the same minimum version, the same certificate checks
 * and the same error texts. */
#ifndef BG_UTIL_TLS_H
#define BG_UTIL_TLS_H

#include <stddef.h>

#include "broker/config.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

/* A server context for a client-facing listener from t (cert, key, and
 * client_ca: when set, clients must present a certificate it signed).
 * TLS 1.2 at least; a peer's close without close_notify reads as a close.
 * what names the config key in errors ("amqp.tls"). Returns a context the
 * caller frees with SSL_CTX_free, or NULL with err set (the OpenSSL reason,
 * or "encrypted private keys are not supported (FILE)": there is never a
 * pass phrase prompt; never key material). Call at start-up. */
SSL_CTX *bg_util_tls_server_ctx(const bg_config_tls_t *t, const char *what, char *err,
                                size_t errlen);

/* A client context for busgate's upstream connections from t: ca (or the
 * system's default paths), an optional client certificate (cert + key),
 * peer verification unless t->verify is 0. TLS 1.2 at least, closes as for
 * bg_util_tls_server_ctx. Returns a context the caller frees with
 * SSL_CTX_free, or NULL with err set (as bg_util_tls_server_ctx's). */
SSL_CTX *bg_util_tls_client_ctx(const bg_config_tls_t *t, const char *what, char *err,
                                size_t errlen);

/* A new SSL for one upstream connection to host: SNI set to host (not when
 * host is an IP address: SNI names hosts only) and, when
 * verify is set, the certificate must name host (a DNS name or an IP
 * address literal). Returns an SSL the caller owns (SSL_free, or hand it to
 * a bufferevent that frees it), NULL when out of memory. */
SSL *bg_util_tls_client_ssl(SSL_CTX *ctx, const char *host, int verify);

/* Why a TLS connection failed, into out: OpenSSL's reason for error code e
 * plus, when ssl verifies its peer and the check failed, the verdict
 * ("certificate verify failed (self-signed certificate)"). ssl may be NULL.
 * Pure formatting; any thread. */
void bg_util_tls_reason(const SSL *ssl, unsigned long e, char *out, size_t cap);

struct bufferevent;
struct event_base;
/* A not yet connected bufferevent for an upstream connection to host:
 * plain when ctx is NULL, else TLS in connecting mode with
 * bg_util_tls_client_ssl's checks; a close without close_notify is taken
 * as a close (brokers do that after their protocol's own close). NULL when
 * out of memory. Owned by the caller; the worker's thread. */
struct bufferevent *bg_util_tls_upstream_bev(struct event_base *base, SSL_CTX *ctx,
                                             const char *host, int verify);

/* A bufferevent for an accepted client socket fd: plain when ctx is NULL,
 * else TLS in accepting mode (the handshake runs before the first read; a
 * server context with a client CA requires the client's certificate). A
 * client closing without close_notify is taken as a close. Takes fd on
 * success only; NULL when out of memory. The worker's thread. */
struct bufferevent *bg_util_tls_client_bev(struct event_base *base, SSL_CTX *ctx, int fd);

/* Why bev failed, into out: OpenSSL's reason (bg_util_tls_reason) when it is
 * a TLS bufferevent with a queued OpenSSL error (returns 1), else the socket
 * error's text (returns 0). Drains the bufferevent's OpenSSL errors; the
 * first is the cause, the rest follow from it. */
int bg_util_tls_bev_error(struct bufferevent *bev, char *out, size_t cap);

/* Why a client connection failed, for the log and session_end:
 * "client connection error: TLS REASON" with OpenSSL's reason (a failed
 * handshake: plaintext to a TLS listener, no or an untrusted client
 * certificate, a client that does not trust busgate), else "client
 * connection error: ERRNO TEXT". Drains bev's OpenSSL errors. */
void bg_util_tls_client_failure(struct bufferevent *bev, char *out, size_t cap);

/* Frees bev (closing its socket). When it is a TLS bufferevent and notify
 * is set (busgate closes deliberately: a refusal, an idle timeout, an
 * answer to the peer's close), first sends close_notify once, best effort:
 * only after a finished handshake, without a fatal error, with all its
 * output written; never waits for the peer's. The worker's thread. */
void bg_util_tls_bev_free(struct bufferevent *bev, int notify);

/* What an upstream bufferevent's event callback reports, as the reason a
 * broker connection failed: "timed out", "closed by the broker", the socket
 * error, "name lookup failed: ..." with the resolver's reason when the
 * broker's host name did not resolve (errno says nothing then), or "TLS
 * handshake failed: ..." (while connecting) / "TLS error: ..." with
 * OpenSSL's reason (on a TLS bufferevent errno says nothing). Returns 1
 * with the text in out when `what` is a failure, 0 otherwise (connected). */
int bg_util_tls_upstream_failure(struct bufferevent *bev, short what, int connecting, char *out,
                                 size_t cap);

#endif
