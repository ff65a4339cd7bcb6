/* jwks_url issuers: background fetch, rotation picked up after an unknown
 * kid (rate-limited), failed or refused fetches keep the old keys, an empty
 * set retried soon, reloads, a stop seen during a parse, wait_ready. A tiny
 * HTTP server on 127.0.0.1 serves the JWKS. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker/config.h"
#include "broker/identity-internal.h"
#include "broker/identity.h"
#include "broker/log.h"
#include "idtest.h"

#define NOW 1700000000LL
#define ISS "https://idp.test"
#define CLAIMS "{\"iss\":\"" ISS "\",\"aud\":\"busgate\",\"sub\":\"u\",\"exp\":1700000600}"

/* One-connection-at-a-time HTTP server answering every request with body. */
typedef struct srv_s {
    int fd;
    uint16_t port;
    pthread_t th;
    pthread_mutex_t mu;
    char *body; /* guarded by mu */
    int status; /* guarded by mu */
    int requests;
    int hold; /* guarded by mu: answers wait (with what was served when asked) */
    int delay_ms; /* guarded by mu: every answer is sent this late (a slow provider) */
    char *location; /* guarded by mu: a Location header to send, or NULL */
    int no_length;  /* guarded by mu: no Content-Length (the body ends at the close) */
    atomic_int stop;
} srv_t;

static void srv_set(srv_t *s, int status, const char *body)
{
    pthread_mutex_lock(&s->mu);
    free(s->body);
    s->body = strdup(body);
    s->status = status;
    pthread_mutex_unlock(&s->mu);
}

/* While held, a request is counted and its answer fixed at once, but the
 * answer is sent only when released: a fetch that stays in progress. */
static void srv_hold(srv_t *s, int hold)
{
    pthread_mutex_lock(&s->mu);
    s->hold = hold;
    pthread_mutex_unlock(&s->mu);
}

static int srv_held(srv_t *s)
{
    pthread_mutex_lock(&s->mu);
    int h = s->hold;
    pthread_mutex_unlock(&s->mu);
    return h;
}

static int srv_requests(srv_t *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->requests;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static void srv_answer(srv_t *s, int c)
{
    char req[4096];
    size_t len = 0;
    /* Read the request head (bounded); the body of a GET is empty. */
    while (len < sizeof(req) - 1) {
        struct pollfd p = {.fd = c, .events = POLLIN};
        if (poll(&p, 1, 2000) <= 0)
            return;
        ssize_t n = read(c, req + len, sizeof(req) - 1 - len);
        if (n <= 0)
            return;
        len += (size_t)n;
        req[len] = 0;
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    pthread_mutex_lock(&s->mu);
    s->requests++;
    char head[512], length[64] = "";
    size_t blen = strlen(s->body);
    if (!s->no_length)
        snprintf(length, sizeof(length), "Content-Length: %zu\r\n", blen);
    int hl = snprintf(head, sizeof(head),
                      "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n%s%s%s%s"
                      "Connection: close\r\n\r\n",
                      s->status, s->location ? "Location: " : "",
                      s->location ? s->location : "", s->location ? "\r\n" : "", length);
    char *resp = malloc((size_t)hl + blen);
    memcpy(resp, head, (size_t)hl);
    memcpy(resp + hl, s->body, blen);
    int delay = s->delay_ms;
    pthread_mutex_unlock(&s->mu);
    if (delay > 0) {
        struct timespec ts = {.tv_sec = delay / 1000, .tv_nsec = (delay % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    while (srv_held(s) && !atomic_load(&s->stop)) {
        struct timespec ts = {.tv_nsec = 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    size_t off = 0, total = (size_t)hl + blen;
    while (off < total) {
        ssize_t n = send(c, resp + off, total - off, MSG_NOSIGNAL);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    free(resp);
}

static void *srv_main(void *arg)
{
    srv_t *s = arg;
    for (int c; (c = idt_accept(s->fd, &s->stop)) >= 0; close(c))
        srv_answer(s, c);
    return NULL;
}

static void srv_start(srv_t *s, const char *body)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    srv_set(s, 200, body);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->fd, 8), 0);
    getsockname(s->fd, (struct sockaddr *)&a, &al);
    s->port = ntohs(a.sin_port);
    pthread_create(&s->th, NULL, srv_main, s);
}

static void srv_stop(srv_t *s)
{
    atomic_store(&s->stop, 1);
    pthread_join(s->th, NULL);
    close(s->fd);
    free(s->body);
    free(s->location);
    pthread_mutex_destroy(&s->mu);
}

/* An identity with one jwks_url issuer at port (path /jwks, or path when
 * given), built as a reload after prev when prev is not NULL. */
static bg_identity_t *new_url_after(uint16_t port, const char *path, int64_t refresh_ms,
                                    bg_identity_t *prev)
{
    static char *auds[] = {"busgate"};
    char url[96], err[256] = "";
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path ? path : "/jwks");
    bg_config_issuer_t iss = {.issuer = ISS, .audiences = auds, .naudiences = 1, .jwks_url = url,
                              .jwks_refresh_ms = refresh_ms};
    bg_config_identity_t cfg = {.issuers = &iss, .nissuers = 1, .clock_skew_ms = 0};
    bg_identity_t *id = bg_identity_new_after(&cfg, prev, err, sizeof(err));
    if (!id)
        fail_msg("bg_identity_new_after: %s", err);
    return id;
}

/* As new_url_after (path /jwks, an hour's refresh) with jwks_ca set. */
static bg_identity_t *new_url_ca_after(uint16_t port, const char *ca, bg_identity_t *prev)
{
    static char *auds[] = {"busgate"};
    char url[96], err[256] = "";
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/jwks", port);
    bg_config_issuer_t iss = {.issuer = ISS, .audiences = auds, .naudiences = 1, .jwks_url = url,
                              .jwks_ca = (char *)ca, .jwks_refresh_ms = 3600 * 1000};
    bg_config_identity_t cfg = {.issuers = &iss, .nissuers = 1, .clock_skew_ms = 0};
    bg_identity_t *id = bg_identity_new_after(&cfg, prev, err, sizeof(err));
    if (!id)
        fail_msg("bg_identity_new_after: %s", err);
    return id;
}

static bg_identity_t *new_url(uint16_t port, int64_t refresh_ms)
{
    return new_url_after(port, NULL, refresh_ms, NULL);
}

static bg_id_reason_t verify(bg_identity_t *id, const char *t)
{
    bg_principal_t p;
    bg_id_reason_t r = bg_identity_verify(id, t, strlen(t), NOW, &p, NULL, 0);
    bg_principal_clear(&p);
    return r;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Retries verify for up to 5 s (the client's retry after unknown_kid). */
static bg_id_reason_t verify_until_ok(bg_identity_t *id, const char *t)
{
    bg_id_reason_t r = BG_ID_UNKNOWN_KID;
    for (int i = 0; i < 1500 && (r = verify(id, t)) != BG_ID_OK; i++)
        sleep_ms(20);
    return r;
}

/* Frees a test's keys (either may be NULL) and the NULL-terminated list
 * of strings after them. */
static void free_test_data(EVP_PKEY *k1, EVP_PKEY *k2, ...)
{
    va_list ap;
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
    va_start(ap, k2);
    for (char *p; (p = va_arg(ap, char *)) != NULL;)
        free(p);
    va_end(ap);
}

static void test_rotation(void **state)
{
    EVP_PKEY *k1 = idt_rsa(), *k2 = idt_ec("P-256");
    char *j1 = idt_jwk(k1, "k1", NULL), *j2 = idt_jwk(k2, "k2", NULL);
    const char *both[] = {j1, j2};
    char *set1 = idt_jwks((const char *const *)&j1, 1), *set12 = idt_jwks(both, 2);
    char *t1 = idt_token("{\"alg\":\"RS256\",\"kid\":\"k1\"}", CLAIMS, "RS256", k1, NULL, 0);
    char *t2 = idt_token("{\"alg\":\"ES256\",\"kid\":\"k2\"}", CLAIMS, "ES256", k2, NULL, 0);
    srv_t s;
    srv_start(&s, set1);
    bg_identity_t *id = new_url(s.port, 3600 * 1000);
    assert_int_equal(bg_identity_wait_ready(id, 5000), 0);
    assert_null(bg_identity_issuer_without_keys(id));
    assert_int_equal(verify(id, t1), BG_ID_OK);
    assert_int_equal(srv_requests(&s), 1);

    /* The IdP rotates in k2. With the default 10 s limit, a k2 token right
     * after the first fetch gets unknown_kid and causes no fetch. */
    srv_set(&s, 200, set12);
    assert_int_equal(verify(id, t2), BG_ID_UNKNOWN_KID);
    sleep_ms(300);
    assert_int_equal(verify(id, t2), BG_ID_UNKNOWN_KID);
    assert_int_equal(srv_requests(&s), 1);
    assert_int_equal(bg_identity_fetch_count(id, 0), 1);

    /* Once the interval has passed, the next unknown kid triggers one
     * fetch; the verify itself still answers unknown_kid at once. */
    bg_identity_set_kid_refresh_interval(id, 100);
    assert_int_equal(verify(id, t2), BG_ID_UNKNOWN_KID);
    assert_int_equal(verify_until_ok(id, t2), BG_ID_OK);
    assert_int_equal(verify(id, t1), BG_ID_OK);
    assert_true(srv_requests(&s) >= 2);

    bg_identity_free(id);
    srv_stop(&s);
    free_test_data(k1, k2, j1, j2, set1, set12, t1, t2, NULL);
}

/* Waits (bounded) until the issuer has finished at least n fetches. */
static void wait_fetches(bg_identity_t *id, unsigned long n)
{
    for (int i = 0; i < 1500 && bg_identity_fetch_count(id, 0) < n; i++)
        sleep_ms(20);
    assert_true(bg_identity_fetch_count(id, 0) >= n);
}

static void test_bad_fetch_keeps_keys(void **state)
{
    EVP_PKEY *k1 = idt_rsa(), *k2 = idt_rsa();
    char *j1 = idt_jwk(k1, "k1", NULL), *set1 = idt_jwks((const char *const *)&j1, 1);
    char *j2 = idt_jwk(k2, "k2", NULL), *set2 = idt_jwks((const char *const *)&j2, 1);
    char *t1 = idt_token("{\"alg\":\"RS256\",\"kid\":\"k1\"}", CLAIMS, "RS256", k1, NULL, 0);
    char *tx = idt_token("{\"alg\":\"RS256\",\"kid\":\"k2\"}", CLAIMS, "RS256", k2, NULL, 0);
    srv_t s;
    srv_start(&s, set1);
    bg_identity_t *id = new_url(s.port, 3600 * 1000);
    assert_int_equal(bg_identity_wait_ready(id, 5000), 0);
    bg_identity_set_kid_refresh_interval(id, 0);

    const char *broken[] = {"not json", "{\"keys\":{}}"};
    for (int i = 0; i < 2; i++) {
        unsigned long before = bg_identity_fetch_count(id, 0);
        srv_set(&s, 200, broken[i]);
        assert_int_equal(verify(id, tx), BG_ID_UNKNOWN_KID);
        wait_fetches(id, before + 1);
        assert_int_equal(verify(id, t1), BG_ID_OK);
    }
    /* A valid JWKS with k2 behind a status other than 200 (an error, or
     * another 2xx: only 200 is the key set itself), or padded past the
     * size cap, is not installed: k2 stays unknown, k1 keeps working. */
    unsigned long before;
    const int not_ok[] = {404, 203};
    for (int i = 0; i < 2; i++) {
        before = bg_identity_fetch_count(id, 0);
        srv_set(&s, not_ok[i], set2);
        assert_int_equal(verify(id, tx), BG_ID_UNKNOWN_KID);
        wait_fetches(id, before + 1);
        assert_int_equal(verify(id, tx), BG_ID_UNKNOWN_KID);
        assert_int_equal(verify(id, t1), BG_ID_OK);
    }
    char *huge = malloc(BG_JWKS_MAX_BYTES + 2);
    memset(huge, ' ', BG_JWKS_MAX_BYTES + 1);
    memcpy(huge, set2, strlen(set2)); /* trailing spaces are valid JSON */
    huge[BG_JWKS_MAX_BYTES + 1] = 0;
    before = bg_identity_fetch_count(id, 0);
    srv_set(&s, 200, huge);
    free(huge);
    assert_int_equal(verify(id, tx), BG_ID_UNKNOWN_KID);
    wait_fetches(id, before + 1);
    assert_int_equal(verify(id, tx), BG_ID_UNKNOWN_KID);
    assert_int_equal(verify(id, t1), BG_ID_OK);
    /* Nor is one with k2 among more than BG_JWKS_MAX_KEYS entries. A fetch
     * still asked for above may end after the new body is set, so count
     * the server's requests instead: once a second one has come after the
     * body was set, the fetch of the first (which got it) is over. */
    char *many = malloc(strlen(set2) + 64 * (BG_JWKS_MAX_KEYS + 1));
    int off = sprintf(many, "{\"keys\":[%s", j2);
    for (int i = 0; i < BG_JWKS_MAX_KEYS; i++)
        off += sprintf(many + off, ",{\"kty\":\"RSA\",\"use\":\"enc\",\"kid\":\"e%d\"}", i);
    strcpy(many + off, "]}");
    srv_set(&s, 200, many);
    free(many);
    int asked = srv_requests(&s);
    for (int i = 0; i < 1500 && srv_requests(&s) < asked + 2; i++) {
        assert_int_equal(verify(id, tx), BG_ID_UNKNOWN_KID); /* each asks for a fetch */
        sleep_ms(20);
    }
    assert_true(srv_requests(&s) >= asked + 2);
    assert_int_equal(verify(id, tx), BG_ID_UNKNOWN_KID);
    assert_int_equal(verify(id, t1), BG_ID_OK);
    /* A fetched set with one broken entry is installed without it: the
     * provider's other keys apply, and the previous set (keys it may have
     * withdrawn) does not stay in force. */
    char broken_entry[4096];
    snprintf(broken_entry, sizeof broken_entry,
             "{\"keys\":[{\"kty\":\"EC\",\"kid\":\"bad\",\"crv\":\"P-256\",\"x\":\"AA\","
             "\"y\":\"AA\"},%s]}",
             j2);
    srv_set(&s, 200, broken_entry);
    assert_int_equal(verify_until_ok(id, tx), BG_ID_OK);
    assert_int_equal(verify(id, t1), BG_ID_UNKNOWN_KID);
    srv_set(&s, 200, set1);
    assert_int_equal(verify_until_ok(id, t1), BG_ID_OK);
    /* The same document within the cap is installed (k2 replaces k1). */
    srv_set(&s, 200, set2);
    assert_int_equal(verify_until_ok(id, tx), BG_ID_OK);
    assert_int_equal(verify(id, t1), BG_ID_UNKNOWN_KID);

    bg_identity_free(id);
    srv_stop(&s);
    free_test_data(k1, k2, j1, j2, set1, set2, t1, tx, NULL);
}

/* Verifies t (asking for fetches when its kid is unknown) until the answer
 * is want, bounded; returns the last answer. */
static bg_id_reason_t verify_until(bg_identity_t *id, const char *t, const char *ask,
                                   bg_id_reason_t want)
{
    bg_id_reason_t r = BG_ID_OK;
    for (int i = 0; i < 1500 && (r = verify(id, t)) != want; i++) {
        verify(id, ask);
        sleep_ms(20);
    }
    return r;
}

/* A fetched JWKS without a usable key (none at all, or only keys for
 * encryption) is the provider's word: the issuer's tokens are refused from
 * then on (keeping the old set would keep withdrawn keys in force), the
 * issuer shows as without keys, and the next document with a key is
 * installed within the retry interval. */
static void test_empty_set_withdraws_keys(void **state)
{
    EVP_PKEY *k1 = idt_rsa();
    char *j1 = idt_jwk(k1, "k1", NULL), *set1 = idt_jwks((const char *const *)&j1, 1);
    char *t1 = idt_token("{\"alg\":\"RS256\",\"kid\":\"k1\"}", CLAIMS, "RS256", k1, NULL, 0);
    char *tk = idt_token("{\"alg\":\"RS256\",\"kid\":\"k9\"}", CLAIMS, "RS256", k1, NULL, 0);
    const char *empty[] = {"{\"keys\":[]}",
                           "{\"keys\":[{\"kty\":\"RSA\",\"use\":\"enc\",\"kid\":\"e\"}]}"};
    srv_t s;
    srv_start(&s, set1);
    bg_identity_t *id = new_url(s.port, 3600 * 1000);
    assert_int_equal(bg_identity_wait_ready(id, 5000), 0);
    bg_identity_set_kid_refresh_interval(id, 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(verify(id, t1), BG_ID_OK);
        assert_null(bg_identity_issuer_without_keys(id));
        srv_set(&s, 200, empty[i]);
        /* tk's unknown kid asks for the fetch that brings the empty set. */
        assert_int_equal(verify_until(id, t1, tk, BG_ID_UNKNOWN_KID), BG_ID_UNKNOWN_KID);
        assert_non_null(bg_identity_issuer_without_keys(id));
        srv_set(&s, 200, set1);
        assert_int_equal(verify_until_ok(id, t1), BG_ID_OK);
    }
    bg_identity_free(id);
    srv_stop(&s);
    free_test_data(k1, NULL, j1, set1, t1, tk, NULL);
}

/* An unknown kid too soon after a fetch is not forgotten: the fetch comes
 * when the interval is over, without another token having to ask. */
static void test_unknown_kid_fetch_deferred(void **state)
{
    EVP_PKEY *k1 = idt_rsa(), *k2 = idt_rsa();
    char *j1 = idt_jwk(k1, "k1", NULL), *j2 = idt_jwk(k2, "k2", NULL);
    const char *both[] = {j1, j2};
    char *set1 = idt_jwks((const char *const *)&j1, 1), *set12 = idt_jwks(both, 2);
    char *t2 = idt_token("{\"alg\":\"RS256\",\"kid\":\"k2\"}", CLAIMS, "RS256", k2, NULL, 0);
    srv_t s;
    srv_start(&s, set1);
    bg_identity_t *id = new_url(s.port, 3600 * 1000);
    bg_identity_set_kid_refresh_interval(id, 1000);
    assert_int_equal(bg_identity_wait_ready(id, 5000), 0);
    srv_set(&s, 200, set12);
    assert_int_equal(verify(id, t2), BG_ID_UNKNOWN_KID); /* too soon: no fetch now */
    assert_int_equal(bg_identity_fetch_count(id, 0), 1);
    wait_fetches(id, 2); /* about a second later, by itself */
    assert_int_equal(verify(id, t2), BG_ID_OK);
    bg_identity_free(id);
    srv_stop(&s);
    free_test_data(k1, k2, j1, j2, set1, set12, t2, NULL);
}

/* Keys k1 and k2 and their sets, tokens signed by k1 (t1), k2 (t2) and
 * by k1 under an unknown kid (tx). */
typedef struct {
    EVP_PKEY *k1, *k2;
    char *j1, *j2, *set1, *set12, *t1, *t2, *tx;
} rot_t;

static void rot_init(rot_t *r)
{
    r->k1 = idt_rsa(), r->k2 = idt_rsa();
    r->j1 = idt_jwk(r->k1, "k1", NULL), r->j2 = idt_jwk(r->k2, "k2", NULL);
    const char *both[] = {r->j1, r->j2};
    r->set1 = idt_jwks((const char *const *)&r->j1, 1), r->set12 = idt_jwks(both, 2);
    r->t1 = idt_token("{\"alg\":\"RS256\",\"kid\":\"k1\"}", CLAIMS, "RS256", r->k1, NULL, 0);
    r->t2 = idt_token("{\"alg\":\"RS256\",\"kid\":\"k2\"}", CLAIMS, "RS256", r->k2, NULL, 0);
    r->tx = idt_token("{\"alg\":\"RS256\",\"kid\":\"kx\"}", CLAIMS, "RS256", r->k1, NULL, 0);
}

static void rot_free(rot_t *r)
{
    free_test_data(r->k1, r->k2, r->j1, r->j2, r->set1, r->set12, r->t1, r->t2, r->tx, NULL);
}

/* An unknown kid makes id start a second fetch, which the provider s
 * holds; returns once it has arrived. */
static void held_kid_fetch(srv_t *s, bg_identity_t *id, const rot_t *r)
{
    srv_hold(s, 1);
    bg_identity_set_kid_refresh_interval(id, 0);
    assert_int_equal(verify(id, r->tx), BG_ID_UNKNOWN_KID);
    for (int i = 0; i < 1500 && srv_requests(s) < 2; i++)
        sleep_ms(20);
    assert_int_equal(srv_requests(s), 2);
}

/* An unknown kid seen while a fetch is running (the fetch began before the
 * key was rotated in, so it cannot bring it) is too soon for another fetch;
 * it is made when the rate-limit interval is over, not dropped when the
 * running fetch ends and schedules the next periodic one (an hour here). */
static void test_unknown_kid_during_fetch(void **state)
{
    rot_t r;
    rot_init(&r);
    srv_t s;
    srv_start(&s, r.set1);
    bg_identity_t *id = new_url(s.port, 3600 * 1000);
    assert_int_equal(bg_identity_wait_ready(id, 5000), 0);

    /* A second fetch starts and is held by the provider: it answers set1. */
    held_kid_fetch(&s, id, &r);
    /* Meanwhile k2 is rotated in and a client presents it: too soon after
     * the fetch's start for another one now. */
    bg_identity_set_kid_refresh_interval(id, 2000);
    srv_set(&s, 200, r.set12);
    assert_int_equal(verify(id, r.t2), BG_ID_UNKNOWN_KID);
    srv_hold(&s, 0);
    /* Nobody asks again: the deferred fetch comes by itself. Waiting on the
     * fetch count, not on verify(t2), which would ask anew. */
    for (int i = 0; i < 1500 && bg_identity_fetch_count(id, 0) < 3; i++)
        sleep_ms(20);
    assert_true(bg_identity_fetch_count(id, 0) >= 3);
    assert_int_equal(verify(id, r.t2), BG_ID_OK);
    assert_int_equal(verify(id, r.t1), BG_ID_OK);

    bg_identity_free(id);
    srv_stop(&s);
    rot_free(&r);
}

/* After a fetched set without a usable key the issuer refuses all its
 * tokens: the next fetch comes after the retry interval, min(jwks_refresh,
 * 10 s), not after jwks_refresh (10 min here, 5 min by default). Nobody
 * presents a token meanwhile (an unknown kid would ask for a fetch after
 * 10 s too): the test waits on the fetch count. */
static void test_empty_set_retried_soon(void **state)
{
    EVP_PKEY *k1 = idt_rsa();
    char *j1 = idt_jwk(k1, "k1", NULL), *set1 = idt_jwks((const char *const *)&j1, 1);
    char *t1 = idt_token("{\"alg\":\"RS256\",\"kid\":\"k1\"}", CLAIMS, "RS256", k1, NULL, 0);
    srv_t s;
    srv_start(&s, "{\"keys\":[]}");
    bg_identity_t *id = new_url(s.port, 600 * 1000);
    assert_int_equal(bg_identity_wait_ready(id, 5000), -1);
    assert_int_equal(bg_identity_fetch_count(id, 0), 1);
    assert_string_equal(bg_identity_issuer_without_keys(id), ISS);
    srv_set(&s, 200, set1);
    wait_fetches(id, 2); /* about 10 s; bounded at 30 s and more */
    assert_null(bg_identity_issuer_without_keys(id));
    assert_int_equal(verify(id, t1), BG_ID_OK);
    bg_identity_free(id);
    srv_stop(&s);
    free_test_data(k1, NULL, j1, set1, t1, NULL);
}

/* A token without kid that gets unknown_kid (several keys allow its alg)
 * asks for no fetch: a refresh cannot tell which key it means. An unknown
 * kid just after the first fetch, for contrast, asks for one deferred to
 * the end of the 10 s interval. Read under the lock, the issuer's requests
 * show it at once: nothing is wanted, and no fetch is running or done
 * (the refresh thread clears a request only by starting a fetch). */
static void test_no_kid_asks_no_fetch(void **state)
{
    EVP_PKEY *k1 = idt_rsa(), *k2 = idt_rsa();
    char *j1 = idt_jwk(k1, "k1", NULL), *j2 = idt_jwk(k2, "k2", NULL);
    const char *both[] = {j1, j2};
    char *set12 = idt_jwks(both, 2);
    char *t0 = idt_token("{\"alg\":\"RS256\"}", CLAIMS, "RS256", k1, NULL, 0);
    char *tx = idt_token("{\"alg\":\"RS256\",\"kid\":\"kx\"}", CLAIMS, "RS256", k1, NULL, 0);
    srv_t s;
    srv_start(&s, set12);
    bg_identity_t *id = new_url(s.port, 3600 * 1000);
    assert_int_equal(bg_identity_wait_ready(id, 5000), 0);
    bg_id_issuer_t *iss = &id->issuers[0];

    assert_int_equal(verify(id, t0), BG_ID_UNKNOWN_KID);
    pthread_mutex_lock(&id->mu);
    int wanted = iss->refresh_wanted || iss->wanted_at_ms != 0 || iss->fetching;
    unsigned long fetches = iss->fetches;
    pthread_mutex_unlock(&id->mu);
    assert_false(wanted);
    assert_int_equal(fetches, 1);
    assert_int_equal(srv_requests(&s), 1);

    assert_int_equal(verify(id, tx), BG_ID_UNKNOWN_KID);
    pthread_mutex_lock(&id->mu);
    wanted = iss->refresh_wanted || iss->wanted_at_ms != 0 || iss->fetching || iss->fetches > 1;
    pthread_mutex_unlock(&id->mu);
    assert_true(wanted);

    bg_identity_free(id);
    srv_stop(&s);
    free_test_data(k1, k2, j1, j2, set12, t0, tx, NULL);
}

typedef struct {
    bg_identity_t *id;
    const char *token;
    atomic_int stop;
} asker_t;

/* Presents a token with a kid its issuer lacks, again and again: with no
 * rate limit, its issuer always wants a fetch. */
static void *asker_main(void *arg)
{
    asker_t *a = arg;
    while (!atomic_load(&a->stop))
        verify(a->id, a->token);
    return NULL;
}

/* One issuer that always wants a fetch (a slow provider, and a client that
 * keeps presenting unknown kids while each fetch runs) must not keep the
 * issuers after it from their periodic fetches: the refresh thread takes
 * due issuers in turn. Before, it took the first due one, so issuer 1 was
 * not fetched again while issuer 0 was wanted. */
static void test_due_issuers_take_turns(void **state)
{
    EVP_PKEY *k = idt_rsa();
    char *j = idt_jwk(k, "k1", NULL);
    char *set = idt_jwks((const char *const *)&j, 1);
    char *tx = idt_token("{\"alg\":\"RS256\",\"kid\":\"kx\"}", CLAIMS, "RS256", k, NULL, 0);
    srv_t sa, sb;
    srv_start(&sa, set);
    srv_start(&sb, set);
    static char *auds[] = {"busgate"};
    char ua[96], ub[96], err[256] = "";
    snprintf(ua, sizeof ua, "http://127.0.0.1:%u/jwks", sa.port);
    snprintf(ub, sizeof ub, "http://127.0.0.1:%u/jwks", sb.port);
    bg_config_issuer_t iss[2] = {
        {.issuer = ISS, .audiences = auds, .naudiences = 1, .jwks_url = ua,
         .jwks_refresh_ms = 3600 * 1000},
        {.issuer = "https://b.example", .audiences = auds, .naudiences = 1, .jwks_url = ub,
         .jwks_refresh_ms = 1000}};
    bg_config_identity_t cfg = {.issuers = iss, .nissuers = 2, .clock_skew_ms = 0};
    bg_identity_t *id = bg_identity_new_after(&cfg, NULL, err, sizeof err);
    if (!id)
        fail_msg("bg_identity_new_after: %s", err);
    assert_int_equal(bg_identity_wait_ready(id, 5000), 0);
    bg_identity_set_kid_refresh_interval(id, 0);
    pthread_mutex_lock(&sa.mu);
    sa.delay_ms = 200;
    pthread_mutex_unlock(&sa.mu);
    asker_t a = {.id = id, .token = tx};
    atomic_init(&a.stop, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, asker_main, &a), 0);
    unsigned long b0 = bg_identity_fetch_count(id, 1);
    /* issuer 1 is due every second; the bound only ends the wait */
    for (int i = 0; i < 1500 && bg_identity_fetch_count(id, 1) < b0 + 2; i++)
        sleep_ms(20);
    unsigned long b = bg_identity_fetch_count(id, 1), fa = bg_identity_fetch_count(id, 0);
    atomic_store(&a.stop, 1);
    pthread_join(th, NULL);
    assert_true(fa > 2); /* issuer 0 was fetched again and again meanwhile */
    assert_true(b >= b0 + 2);
    bg_identity_free(id);
    srv_stop(&sa);
    srv_stop(&sb);
    free_test_data(k, NULL, j, set, tx, NULL);
}

/* Appends what fd has now (waiting up to 20 ms for it) to buf, kept
 * NUL-terminated; bytes beyond cap are read and dropped. With step > 0 one
 * read of at most step bytes: a writer that keeps the pipe full cannot keep
 * the reader draining. */
static void read_log_step(int fd, char *buf, size_t cap, size_t *len, size_t step)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char chunk[4096];
    ssize_t n;
    if (poll(&p, 1, 20) <= 0)
        return;
    while ((n = read(fd, chunk, step ? step : sizeof chunk)) > 0) {
        size_t keep = (size_t)n < cap - 1 - *len ? (size_t)n : cap - 1 - *len;
        memcpy(buf + *len, chunk, keep);
        *len += keep;
        buf[*len] = 0;
        if (step)
            return;
    }
}

static void read_log(int fd, char *buf, size_t cap, size_t *len)
{
    read_log_step(fd, buf, cap, len, 0);
}

/* A stop (a reload retired the identity, or it is being freed) is seen
 * between two keys of the set being parsed: the rest of the set is not
 * worked through first (a set may hold BG_JWKS_MAX_KEYS keys of 8192 bits).
 * The log line of each skipped key shows how far the parse got. The log goes
 * to a pipe of one page that the test reads, 256 bytes at a time, only until
 * it sees the first key's line: the parse, blocked on a full pipe, can log
 * at most about one page of lines more before the identity is retired, far
 * fewer than the set's keys. (Reading until the pipe is empty let a fast
 * parse refill it as fast as it was drained, and get through the set.) */
static void test_stop_between_keys(void **state)
{
    char *set = malloc(64 * BG_JWKS_MAX_KEYS + 32), last[64];
    int off = sprintf(set, "{\"keys\":[");
    for (int i = 0; i < BG_JWKS_MAX_KEYS; i++)
        off += sprintf(set + off, "%s{\"kty\":\"RSA\",\"use\":\"enc\",\"kid\":\"e%d\"}",
                       i ? "," : "", i);
    strcpy(set + off, "]}");
    snprintf(last, sizeof last, "JWKS key #%d skipped", BG_JWKS_MAX_KEYS - 1);
    static char log[256 * 1024];
    size_t len = 0;
    log[0] = 0;
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    assert_true(fcntl(p[1], F_SETPIPE_SZ, 4096) > 0);
    assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
    srv_t s;
    srv_start(&s, set);
    bg_log_set_fd(p[1]);
    bg_identity_t *id = new_url(s.port, 3600 * 1000);
    for (int i = 0; i < 1000 && !strstr(log, "JWKS key #0 skipped"); i++)
        read_log_step(p[0], log, sizeof log, &len, 256);
    bg_identity_retire(id);
    for (int i = 0; i < 1500 && bg_identity_fetch_count(id, 0) < 1; i++)
        read_log(p[0], log, sizeof log, &len);
    unsigned long fetches = bg_identity_fetch_count(id, 0);
    bg_identity_free(id);
    bg_log_set_fd(2);
    read_log(p[0], log, sizeof log, &len);
    close(p[0]);
    close(p[1]);
    srv_stop(&s);
    free(set);
    assert_non_null(strstr(log, "JWKS key #0 skipped"));
    assert_int_equal(fetches, 1);
    if (strstr(log, last))
        fail_msg("the parse went on to the last key after the stop");
    assert_null(strstr(log, "JWKS for issuer")); /* neither loaded nor refused */
}

static void test_wait_ready_unreachable(void **state)
{
    /* A port bound but not listening: connection refused. It stays bound
     * until the end, so no other test's listener can take it meanwhile. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    bg_identity_t *id = new_url(ntohs(a.sin_port), 60000);
    assert_int_equal(bg_identity_wait_ready(id, 3000), -1);
    assert_int_equal(bg_identity_fetch_count(id, 0), 1);
    assert_string_equal(bg_identity_issuer_without_keys(id), ISS); /* /readyz names it */
    /* Nothing loaded: every kid is unknown, and free() does not hang. */
    EVP_PKEY *k = idt_rsa();
    char *t = idt_token("{\"alg\":\"RS256\",\"kid\":\"k1\"}", CLAIMS, "RS256", k, NULL, 0);
    assert_int_equal(verify(id, t), BG_ID_UNKNOWN_KID);
    /* Without a kid too: no key to select is unknown_kid, as for a kid
     * (not alg_not_allowed, which says the token's alg is at fault). */
    char *t0 = idt_token("{\"alg\":\"RS256\"}", CLAIMS, "RS256", k, NULL, 0);
    assert_int_equal(verify(id, t0), BG_ID_UNKNOWN_KID);
    bg_identity_free(id);
    EVP_PKEY_free(k);
    free(t);
    free(t0);
    close(fd);
}

/* A reload builds a new identity. An unchanged jwks_url issuer carries the
 * running keys over: logins keep working at once, and while the provider is
 * down; the replaced identity fetches nothing more once retired. A changed
 * URL starts empty and fetches. */
static void test_reload_keeps_keys(void **state)
{
    EVP_PKEY *k1 = idt_rsa();
    char *j1 = idt_jwk(k1, "k1", NULL), *set1 = idt_jwks((const char *const *)&j1, 1);
    char *t1 = idt_token("{\"alg\":\"RS256\",\"kid\":\"k1\"}", CLAIMS, "RS256", k1, NULL, 0);
    srv_t s;
    srv_start(&s, set1);
    bg_identity_t *id1 = new_url(s.port, 3600 * 1000);
    assert_int_equal(bg_identity_wait_ready(id1, 5000), 0);
    assert_int_equal(verify(id1, t1), BG_ID_OK);
    assert_int_equal(srv_requests(&s), 1);

    /* The provider goes down, then the configuration is reloaded. */
    srv_set(&s, 503, "down");
    bg_identity_t *id2 = new_url_after(s.port, NULL, 3600 * 1000, id1);
    bg_identity_retire(id1);
    assert_int_equal(bg_identity_wait_ready(id2, 5000), 0);
    assert_int_equal(verify(id2, t1), BG_ID_OK);
    sleep_ms(200);
    assert_int_equal(srv_requests(&s), 1); /* no fetch: the keys are an hour old at most */
    assert_int_equal(bg_identity_fetch_count(id2, 0), 0);
    /* The retired identity still verifies, and its unknown kids fetch nothing. */
    bg_identity_set_kid_refresh_interval(id1, 0);
    assert_int_equal(verify(id1, t1), BG_ID_OK);
    char *tx = idt_token("{\"alg\":\"RS256\",\"kid\":\"kx\"}", CLAIMS, "RS256", k1, NULL, 0);
    assert_int_equal(verify(id1, tx), BG_ID_UNKNOWN_KID);
    sleep_ms(200);
    assert_int_equal(srv_requests(&s), 1);
    bg_identity_free(id1); /* the new identity holds its own reference to the keys */
    assert_int_equal(verify(id2, t1), BG_ID_OK);

    /* Another URL is another key source: nothing carried over. */
    bg_identity_t *id3 = new_url_after(s.port, "/other", 3600 * 1000, id2);
    assert_int_equal(bg_identity_wait_ready(id3, 5000), -1);
    assert_string_equal(bg_identity_issuer_without_keys(id3), ISS);
    assert_null(bg_identity_issuer_without_keys(id2));
    assert_int_equal(verify(id3, t1), BG_ID_UNKNOWN_KID);
    assert_int_equal(srv_requests(&s), 2);
    /* Back up: the new source's keys arrive with the next fetch. */
    srv_set(&s, 200, set1);
    bg_identity_set_kid_refresh_interval(id3, 0);
    assert_int_equal(verify_until_ok(id3, t1), BG_ID_OK);
    assert_null(bg_identity_issuer_without_keys(id3));

    bg_identity_free(id3);
    bg_identity_free(id2);
    srv_stop(&s);
    free_test_data(k1, NULL, j1, set1, t1, tx, NULL);
}

/* Keys fetched under one trust (jwks_ca, or the system's store) are not
 * carried over to a reload that names another CA for the same URL: it
 * fetches them again; the same CA again carries them over. (The URL is
 * plain http on loopback, so the CA is not used by the fetch itself.) */
static void test_reload_with_another_ca_fetches_again(void **state)
{
    EVP_PKEY *k1 = idt_rsa();
    char *j1 = idt_jwk(k1, "k1", NULL), *set1 = idt_jwks((const char *const *)&j1, 1);
    srv_t s;
    srv_start(&s, set1);
    bg_identity_t *id1 = new_url(s.port, 3600 * 1000);
    assert_int_equal(bg_identity_wait_ready(id1, 5000), 0);
    assert_int_equal(srv_requests(&s), 1);
    bg_identity_t *id2 = new_url_ca_after(s.port, "/etc/busgate/idp-ca.pem", id1);
    bg_identity_free(id1);
    assert_int_equal(bg_identity_wait_ready(id2, 5000), 0);
    assert_int_equal(bg_identity_fetch_count(id2, 0), 1);
    assert_int_equal(srv_requests(&s), 2);
    bg_identity_t *id3 = new_url_ca_after(s.port, "/etc/busgate/idp-ca.pem", id2);
    bg_identity_free(id2);
    assert_int_equal(bg_identity_wait_ready(id3, 5000), 0);
    sleep_ms(200);
    assert_int_equal(bg_identity_fetch_count(id3, 0), 0);
    assert_int_equal(srv_requests(&s), 2);
    bg_identity_t *id4 = new_url_ca_after(s.port, "/etc/busgate/other-ca.pem", id3);
    bg_identity_free(id3);
    assert_int_equal(bg_identity_wait_ready(id4, 5000), 0);
    assert_int_equal(srv_requests(&s), 3);
    bg_identity_free(id4);
    srv_stop(&s);
    free_test_data(k1, NULL, j1, set1, NULL, NULL, NULL);
}

/* A reload while a fetch runs (here one asked for by an unknown kid, held
 * by the provider) abandons that fetch with the old configuration: the new
 * one fetches at once, so a key rotated in meanwhile becomes known without
 * waiting for the next periodic fetch (an hour here). Nobody asks on the
 * new identity (an unknown kid would ask for a fetch of its own): the test
 * waits on its fetch count. Before, the new identity took the old one's
 * schedule without the running fetch and fetched only an hour later. */
static void test_reload_during_fetch(void **state)
{
    rot_t r;
    rot_init(&r);
    srv_t s;
    srv_start(&s, r.set1);
    bg_identity_t *id1 = new_url(s.port, 3600 * 1000);
    assert_int_equal(bg_identity_wait_ready(id1, 5000), 0);

    /* An unknown kid starts a second fetch; the provider holds it. */
    held_kid_fetch(&s, id1, &r);
    /* k2 is rotated in, and the configuration is reloaded meanwhile. */
    srv_set(&s, 200, r.set12);
    bg_identity_t *id2 = new_url_after(s.port, NULL, 3600 * 1000, id1);
    bg_identity_retire(id1);
    srv_hold(&s, 0);
    wait_fetches(id2, 1);
    assert_int_equal(verify(id2, r.t2), BG_ID_OK);
    assert_int_equal(verify(id2, r.t1), BG_ID_OK);

    bg_identity_free(id1);
    bg_identity_free(id2);
    srv_stop(&s);
    rot_free(&r);
}

/* A jwks_refresh near INT64_MAX (the config caps it at 365d; the identity
 * does not rely on that) schedules the next fetch "never": mono_ms() +
 * refresh_ms and, on reload, last_fetch_ms + refresh_ms overflowed (UBSan
 * aborts; a plain build wrapped into the past and fetched in a loop). */
static void test_huge_refresh_does_not_wrap(void **state)
{
    const int64_t huge = INT64_MAX - 1000;
    EVP_PKEY *k1 = idt_rsa();
    char *j1 = idt_jwk(k1, "k1", NULL), *set1 = idt_jwks((const char *const *)&j1, 1);
    char *t1 = idt_token("{\"alg\":\"RS256\",\"kid\":\"k1\"}", CLAIMS, "RS256", k1, NULL, 0);
    srv_t s;
    srv_start(&s, set1);
    bg_identity_t *id1 = new_url(s.port, huge);
    assert_int_equal(bg_identity_wait_ready(id1, 5000), 0);
    assert_int_equal(verify(id1, t1), BG_ID_OK);
    pthread_mutex_lock(&id1->mu);
    assert_true(id1->issuers[0].next_fetch_ms == INT64_MAX);
    pthread_mutex_unlock(&id1->mu);

    /* A reload carries the schedule over, bounded by the new refresh. */
    bg_identity_t *id2 = new_url_after(s.port, NULL, huge, id1);
    bg_identity_retire(id1);
    pthread_mutex_lock(&id2->mu);
    assert_true(id2->issuers[0].next_fetch_ms == INT64_MAX);
    pthread_mutex_unlock(&id2->mu);
    assert_int_equal(verify(id2, t1), BG_ID_OK);

    bg_identity_free(id1);
    bg_identity_free(id2);
    srv_stop(&s);
    free_test_data(k1, NULL, j1, set1, t1, NULL);
}

/* Where a fetch may go, and how much it reads: a redirect to plain http is
 * not followed (redirects go to https only, whatever the configured URL
 * is), and a body without Content-Length that runs past the size cap is
 * refused as one with it is (the write callback counts it, not the
 * header). Either way the issuer gets no keys. */
static void test_fetch_redirect_and_unsized_body(void **state)
{
    EVP_PKEY *k1 = idt_rsa();
    char *j1 = idt_jwk(k1, "k1", NULL), *set1 = idt_jwks((const char *const *)&j1, 1);
    char *t1 = idt_token("{\"alg\":\"RS256\",\"kid\":\"k1\"}", CLAIMS, "RS256", k1, NULL, 0);
    srv_t keys, redir;
    srv_start(&keys, set1);
    srv_start(&redir, "");
    char where[64];
    snprintf(where, sizeof(where), "http://127.0.0.1:%u/jwks", keys.port);
    pthread_mutex_lock(&redir.mu);
    redir.status = 302;
    redir.location = strdup(where);
    pthread_mutex_unlock(&redir.mu);
    bg_identity_t *id = new_url(redir.port, 3600 * 1000);
    assert_int_equal(bg_identity_wait_ready(id, 5000), -1);
    assert_int_equal(srv_requests(&redir), 1);
    assert_int_equal(srv_requests(&keys), 0);
    assert_int_equal(verify(id, t1), BG_ID_UNKNOWN_KID);
    bg_identity_free(id);

    /* The same set without Content-Length loads; padded past the cap
     * (trailing spaces are valid JSON) it does not. */
    pthread_mutex_lock(&keys.mu);
    keys.no_length = 1;
    pthread_mutex_unlock(&keys.mu);
    id = new_url(keys.port, 3600 * 1000);
    assert_int_equal(bg_identity_wait_ready(id, 5000), 0);
    assert_int_equal(verify(id, t1), BG_ID_OK);
    bg_identity_free(id);
    char *huge = malloc(BG_JWKS_MAX_BYTES + 2);
    memset(huge, ' ', BG_JWKS_MAX_BYTES + 1);
    memcpy(huge, set1, strlen(set1));
    huge[BG_JWKS_MAX_BYTES + 1] = 0;
    srv_set(&keys, 200, huge);
    free(huge);
    id = new_url(keys.port, 3600 * 1000);
    assert_int_equal(bg_identity_wait_ready(id, 5000), -1);
    assert_int_equal(srv_requests(&keys), 2);
    assert_int_equal(verify(id, t1), BG_ID_UNKNOWN_KID);
    bg_identity_free(id);

    srv_stop(&keys);
    srv_stop(&redir);
    free_test_data(k1, NULL, j1, set1, t1, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_bad_fetch_keeps_keys),
        cmocka_unit_test(test_empty_set_withdraws_keys),
        cmocka_unit_test(test_wait_ready_unreachable),
        cmocka_unit_test(test_reload_keeps_keys),
        cmocka_unit_test(test_reload_with_another_ca_fetches_again),
        cmocka_unit_test(test_unknown_kid_fetch_deferred),
        cmocka_unit_test(test_huge_refresh_does_not_wrap),
        cmocka_unit_test(test_unknown_kid_during_fetch),
        cmocka_unit_test(test_stop_between_keys),
        cmocka_unit_test(test_due_issuers_take_turns),
        cmocka_unit_test(test_fetch_redirect_and_unsized_body),
        cmocka_unit_test(test_reload_during_fetch),
        cmocka_unit_test(test_empty_set_retried_soon),
        cmocka_unit_test(test_no_kid_asks_no_fetch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
