/* Logins (test_kafka_session_util.h). busgate's own login to the broker
 * (with a broker that takes SASL PLAIN): it is made for a client that has
 * authenticated, never for one that has not. A client's ApiVersions
 * before it authenticates, with no versions of the broker known yet, asks
 * the broker for them and nothing more. A client's login busgate cannot
 * read is a failed login, audited and counted. The SASL exchange keeps
 * Kafka's order and offers only the configured mechanisms; a refused login
 * closes its connection; ApiVersions lists what busgate and the broker both
 * speak. */
#include "test_kafka_session_util.h"

/* The logins busgate made so far, beside its start-up discovery's. */
static int bg_t_base;
static int bg_t_logins(bg_t_run_t *r)
{
    pthread_mutex_lock(&r->mu);
    int n = r->logins - bg_t_base;
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* Waits (bounded) for the start-up discovery (busgate's own login and
 * Metadata request) to be over; 1 when it is. */
static int bg_t_discovered(bg_t_run_t *r)
{
    int done = 0;
    for (int i = 0; i < BG_T_WAIT_MS / 20 && !done; i++) {
        pthread_mutex_lock(&r->mu);
        done = r->discovered;
        bg_t_base = r->logins;
        pthread_mutex_unlock(&r->mu);
        if (!done)
            usleep(20 * 1000);
    }
    return bg_t_check(r, done && bg_t_base == 1, "discovery: %d login(s), done %d", bg_t_base,
                      done);
}

/* Waits (bounded) until busgate made n logins; 1 when it did. */
static int bg_t_wait_logins(bg_t_run_t *r, int n)
{
    for (int i = 0; i < BG_T_WAIT_MS / 20 && bg_t_logins(r) < n; i++)
        usleep(20 * 1000);
    return bg_t_logins(r) >= n;
}

/* ApiVersions v0 on fd (correlation id corr): 1 when answered without error. */
static int bg_t_api_versions(bg_t_run_t *r, int fd, int32_t corr)
{
    bg_t_buf_t b = {0}, f = {0};
    bg_t_cli_send(fd, 18, 0, corr, &b);
    int ok = bg_t_read_frame(fd, &f, BG_T_WAIT_MS) > 0 && f.len >= 6 &&
             bg_t_get_i32(f.p) == corr && bg_t_get_i16(f.p + 4) == 0;
    bg_t_buf_free(&b);
    bg_t_buf_free(&f);
    return bg_t_check(r, ok, "ApiVersions before authentication not answered");
}

static void bg_t_scenario_preauth(bg_t_run_t *r)
{
    if (!bg_t_discovered(r))
        return;
    int fd = bg_t_connect(r->listen_port);
    if (!bg_t_check(r, fd >= 0, "cannot connect to busgate") || !bg_t_api_versions(r, fd, 7))
        goto out;
    /* The broker answered busgate's ApiVersions (the client has its answer);
     * a second client that never authenticates asks too. Half a second is
     * long enough for a login that follows the versions at once, as it
     * did; none may come at all. */
    int fd2 = bg_t_connect(r->listen_port);
    if (fd2 >= 0) {
        bg_t_api_versions(r, fd2, 8);
        usleep(500 * 1000);
        close(fd2);
    }
    if (!bg_t_check(r, bg_t_logins(r) == 0,
                    "busgate logged in to the broker %d time(s) for clients that have not "
                    "authenticated", bg_t_logins(r)))
        goto out;
    /* Once the first client authenticates, busgate logs in for it; a
     * request sent right behind the login waits for it and goes through. */
    fd = bg_t_cli_login_on(r, fd);
    if (fd < 0)
        goto out;
    bg_t_buf_t req = {0}, f = {0};
    bg_t_i32(&req, 0); /* Metadata v1: no topics */
    bg_t_cli_send(fd, 3, 1, 9, &req);
    bg_t_req_t q = {0};
    if (bg_t_up_next(r, 3, &q)) {
        bg_t_buf_t body = {0};
        bg_t_i32(&body, 1); /* broker 0 here, no topics */
        bg_t_i32(&body, 0), bg_t_str(&body, "127.0.0.1"), bg_t_i32(&body, r->up_port);
        bg_t_str(&body, NULL), bg_t_i32(&body, 0), bg_t_i32(&body, 0);
        bg_t_up_reply(q.fd, q.corr, &body);
        bg_t_buf_free(&body);
        bg_t_check(r, bg_t_read_frame(fd, &f, BG_T_WAIT_MS) > 0 && bg_t_get_i32(f.p) == 9,
                   "no Metadata response after the login");
    }
    bg_t_buf_free(&req);
    bg_t_buf_free(&f);
    bg_t_check(r, bg_t_wait_logins(r, 1) && bg_t_logins(r) == 1,
               "%d logins for one authenticated client", bg_t_logins(r));
out:
    if (fd >= 0)
        close(fd);
}

/* Before, the first client's ApiVersions (no broker versions known yet)
 * made busgate log in to the broker at once with its own credential,
 * whether or not the client ever authenticated: one login per
 * unauthenticated connection, and failed logins at will when busgate's
 * credential was refused. */
static void test_no_login_for_unauthenticated_clients(void **state)
{
    (void)state;
    bg_t_run_t r = {.upstream_sasl = 1, .scenario = bg_t_scenario_preauth};
    bg_t_run(&r);
    bg_t_finish(&r, NULL);
}

/* ---- a login that cannot be read ---- */

/* busgate_auth_failures_total{protocol="kafka"} once it reaches want
 * (bounded wait); its last value otherwise. */
static long long bg_t_auth_failures(bg_t_run_t *r, long long want)
{
    long long v = -1;
    for (int i = 0; i < BG_T_WAIT_MS / 20; i++) {
        v = bg_t_metric(r->admin_port, "busgate_auth_failures_total{protocol=\"kafka\"}");
        if (v >= want)
            break;
        usleep(20 * 1000);
    }
    return v;
}

/* SaslHandshake v1 for PLAIN on fd: 1 when accepted. */
static int bg_t_handshake_plain(bg_t_run_t *r, int fd)
{
    bg_t_buf_t b = {0}, f = {0};
    bg_t_str(&b, "PLAIN");
    bg_t_cli_send(fd, 17, 1, 1, &b);
    int ok = bg_t_read_frame(fd, &f, BG_T_WAIT_MS) > 0 && f.len >= 6 && bg_t_get_i32(f.p) == 1 &&
             bg_t_get_i16(f.p + 4) == 0;
    bg_t_buf_free(&b);
    bg_t_buf_free(&f);
    return bg_t_check(r, ok, "SaslHandshake PLAIN refused");
}

/* Sends a request whose body is cut short on a new connection; 1 when
 * busgate then closed it (after the handshake, when handshake_first). */
static int bg_t_send_cut(bg_t_run_t *r, int handshake_first, int16_t api, int16_t ver,
                         const bg_t_buf_t *body)
{
    int fd = bg_t_connect(r->listen_port);
    if (!bg_t_check(r, fd >= 0, "cannot connect to busgate"))
        return 0;
    int ok = !handshake_first || bg_t_handshake_plain(r, fd);
    if (ok) {
        bg_t_cli_send(fd, api, ver, 2, body);
        ok = bg_t_check(r, bg_t_cli_closed(fd), "api %d with a cut body was answered", api);
    }
    close(fd);
    return ok;
}

static void bg_t_scenario_malformed_login(bg_t_run_t *r)
{
    if (!bg_t_check(r, bg_t_auth_failures(r, 0) == 0, "no admin listener, or failures at start"))
        return;
    /* SaslAuthenticate v0 whose auth bytes say 1000 and hold 4. */
    bg_t_buf_t b = {0};
    bg_t_i32(&b, 1000);
    bg_t_put(&b, "n,,\001", 4);
    int ok = bg_t_send_cut(r, 1, 36, 0, &b);
    long long n = ok ? bg_t_auth_failures(r, 1) : -1;
    ok = ok && bg_t_check(r, n == 1, "after a cut SaslAuthenticate: %lld auth failures", n);
    /* SaslHandshake v1 whose mechanism says 100 bytes and holds 5. */
    b.len = 0;
    bg_t_i16(&b, 100);
    bg_t_put(&b, "PLAIN", 5);
    ok = ok && bg_t_send_cut(r, 0, 17, 1, &b);
    n = ok ? bg_t_auth_failures(r, 2) : -1;
    if (ok)
        bg_t_check(r, n == 2, "after a cut SaslHandshake: %lld auth failures", n);
    bg_t_buf_free(&b);
}

/* A SaslAuthenticate or SaslHandshake busgate cannot read, before the
 * client has authenticated, is a failed login: an auth_failure event
 * (reason malformed, the peer, no principal) and a count in
 * busgate_auth_failures_total, then the connection closes as before.
 * Before, it was logged and closed only: no event, no count. */
static void test_malformed_login_is_an_auth_failure(void **state)
{
    (void)state;
    bg_t_run_t r = {.audit = 1,
                    .kafka_extra = BG_T_AUTH_TIMEOUT_PAST_WAITS,
                    .scenario = bg_t_scenario_malformed_login};
    bg_t_run(&r);
    /* busgate has stopped: its audit file is complete. */
    int events = bg_t_file_lines(
        r.audit_path,
        (const char *[]){"\"kind\":\"auth_failure\"", "\"auth_failure_reason\":\"malformed\"",
                         "\"protocol\":\"kafka\"", "\"peer\":\"127.0.0.1:", NULL});
    int with_principal = bg_t_file_lines(r.audit_path, (const char *[]){"\"principal\"", NULL});
    if (!r.fail[0] && events != 2)
        snprintf(r.fail, sizeof r.fail, "%d malformed auth_failure events in the audit file",
                 events);
    if (!r.fail[0] && with_principal != 0)
        snprintf(r.fail, sizeof r.fail, "%d events with a principal", with_principal);
    bg_t_finish(&r, (const char *[]){"malformed request: api 36 (SaslAuthenticateRequest)",
                                     "malformed request: api 17 (SaslHandshakeRequest)", NULL});
}

/* Sends raw bytes on a new connection; 1 when busgate then closed it. */
static int bg_t_send_raw_closed(bg_t_run_t *r, const void *p, size_t n, const char *what)
{
    int fd = bg_t_connect(r->listen_port);
    if (!bg_t_check(r, fd >= 0, "cannot connect to busgate"))
        return 0;
    (void)bg_t_write_all(fd, p, n);
    int ok = bg_t_check(r, bg_t_cli_closed(fd), "%s was answered", what);
    close(fd);
    return ok;
}

static void bg_t_scenario_malformed_preauth(bg_t_run_t *r)
{
    if (!bg_t_check(r, bg_t_auth_failures(r, 0) == 0, "no admin listener, or failures at start"))
        return;
    /* A Metadata v1 header whose client id says 1000 bytes and holds 1. */
    static const uint8_t bad_header[] = {0, 0, 0, 11, 0, 3, 0, 1, 0, 0, 0, 1, 0x03, 0xe8, 'x'};
    /* Api key 9999, which no Kafka has. */
    static const uint8_t unknown_api[] = {0, 0, 0, 10, 0x27, 0x0f, 0, 0, 0, 0, 0, 1, 0xff, 0xff};
    /* A Metadata frame of 1 MiB, above preauth_max_frame_bytes (64 KiB). */
    static const uint8_t too_large[] = {0, 0x10, 0, 0, 0, 3, 0, 1, 0, 0, 0, 1};
    const struct {
        const uint8_t *p;
        size_t n;
        const char *what;
    } cases[] = {{bad_header, sizeof bad_header, "an unreadable header"},
                 {unknown_api, sizeof unknown_api, "an unknown api key"},
                 {too_large, sizeof too_large, "a frame above preauth_max_frame_bytes"}};
    for (int i = 0; i < 3; i++) {
        if (!bg_t_send_raw_closed(r, cases[i].p, cases[i].n, cases[i].what))
            return;
        long long n = bg_t_auth_failures(r, i + 1);
        if (!bg_t_check(r, n == i + 1, "after %s: %lld auth failures", cases[i].what, n))
            return;
    }
}

/* Any request busgate cannot read before the client has authenticated
 * (a header it cannot read, an unknown api key, a frame above
 * preauth_max_frame_bytes) is a failed login: an auth_failure event,
 * reason malformed, counted. Before, only an unreadable SaslHandshake or
 * SaslAuthenticate was; these were logged and closed, with no event. */
static void test_malformed_request_before_login_is_an_auth_failure(void **state)
{
    (void)state;
    bg_t_run_t r = {.audit = 1,
                    .kafka_extra = BG_T_AUTH_TIMEOUT_PAST_WAITS,
                    .scenario = bg_t_scenario_malformed_preauth};
    bg_t_run(&r);
    int events = bg_t_file_lines(r.audit_path,
                                 (const char *[]){"\"kind\":\"auth_failure\"",
                                                  "\"auth_failure_reason\":\"malformed\"", NULL});
    if (!r.fail[0] && events != 3)
        snprintf(r.fail, sizeof r.fail, "%d malformed auth_failure events in the audit file",
                 events);
    bg_t_finish(&r, (const char *[]){"malformed request: api 3 (MetadataRequest)",
                                     "malformed request: api 9999 (unknown api)", NULL});
}

/* ---- the SASL exchange's order and names ---- */

/* SaslHandshake v<ver> for mech on fd (correlation id 1): its error code,
 * or -1 when busgate closed the connection without an answer. */
static int bg_t_handshake(int fd, int16_t ver, const char *mech)
{
    bg_t_buf_t b = {0}, f = {0};
    bg_t_str(&b, mech);
    bg_t_cli_send(fd, 17, ver, 1, &b);
    int rc = bg_t_read_frame(fd, &f, BG_T_WAIT_MS) > 0 && f.len >= 6 && bg_t_get_i32(f.p) == 1
                 ? bg_t_get_i16(f.p + 4)
                 : -1;
    bg_t_buf_free(&b);
    bg_t_buf_free(&f);
    return rc;
}

/* SaslAuthenticate v0 with the auth bytes msg (correlation id 2): its
 * error code, or -1 when busgate closed the connection without one. */
static int bg_t_authenticate(int fd, const char *msg)
{
    bg_t_buf_t b = {0}, f = {0};
    bg_t_i32(&b, (int32_t)strlen(msg));
    bg_t_put(&b, msg, strlen(msg));
    bg_t_cli_send(fd, 36, 0, 2, &b);
    int rc = bg_t_read_frame(fd, &f, BG_T_WAIT_MS) > 0 && f.len >= 6 && bg_t_get_i32(f.p) == 2
                 ? bg_t_get_i16(f.p + 4)
                 : -1;
    bg_t_buf_free(&b);
    bg_t_buf_free(&f);
    return rc;
}

static void bg_t_scenario_sasl_order(bg_t_run_t *r)
{
    int fd = -1;
    /* One ApiVersions before SASL, as Kafka's broker: a second one closes. */
    fd = bg_t_connect(r->listen_port);
    if (!bg_t_check(r, fd >= 0, "cannot connect to busgate") || !bg_t_api_versions(r, fd, 7))
        goto out;
    bg_t_buf_t empty = {0};
    bg_t_cli_send(fd, 18, 0, 8, &empty);
    if (!bg_t_check(r, bg_t_cli_closed(fd), "a second ApiVersions before SASL was answered"))
        goto out;
    close(fd);
    /* SaslHandshake v0 (raw SASL frames after it) is refused: closed unanswered. */
    fd = bg_t_connect(r->listen_port);
    if (!bg_t_check(r, fd >= 0, "cannot connect to busgate") ||
        !bg_t_check(r, bg_t_handshake(fd, 0, "OAUTHBEARER") == -1,
                    "SaslHandshake v0 was answered"))
        goto out;
    close(fd);
    /* After a refused token's challenge only the client's 0x01 may follow:
     * a new SaslHandshake (to try another token) closes. */
    fd = bg_t_connect(r->listen_port);
    if (!bg_t_check(r, fd >= 0, "cannot connect to busgate") ||
        !bg_t_check(r, bg_t_handshake(fd, 1, "OAUTHBEARER") == 0, "SaslHandshake refused") ||
        !bg_t_check(r, bg_t_authenticate(fd, "n,,\001auth=Bearer abc\001\001") == 0,
                    "a bad token got no challenge"))
        goto out;
    bg_t_check(r, bg_t_handshake(fd, 1, "OAUTHBEARER") == -1,
               "a SaslHandshake after the challenge was answered");
out:
    if (fd >= 0)
        close(fd);
}

/* The SASL exchange goes in Kafka's order: one ApiVersions before it,
 * SaslHandshake v1 and up, and after a refused OAUTHBEARER token's
 * challenge no new SaslHandshake (a second try on the same connection). */
static void test_sasl_exchange_order(void **state)
{
    (void)state;
    bg_t_run_t r = {.kafka_extra = BG_T_AUTH_TIMEOUT_PAST_WAITS,
                    .scenario = bg_t_scenario_sasl_order};
    bg_t_run(&r);
    bg_t_finish(&r, NULL);
}

static void bg_t_scenario_sasl_names(bg_t_run_t *r)
{
    static const char *const refused[] = {"PLAIN", "OAUTHBEARER2", "OAUTHBEARE"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        int fd = bg_t_connect(r->listen_port);
        if (!bg_t_check(r, fd >= 0, "cannot connect to busgate"))
            return;
        int rc = bg_t_handshake(fd, 1, refused[i]);
        int ok = bg_t_check(r, rc == 33, "SaslHandshake %s: error %d, not 33", refused[i], rc) &&
                 bg_t_check(r, bg_t_cli_closed(fd), "open after SaslHandshake %s", refused[i]);
        close(fd);
        if (!ok)
            return;
    }
    int fd = bg_t_connect(r->listen_port);
    if (bg_t_check(r, fd >= 0, "cannot connect to busgate"))
        bg_t_check(r, bg_t_handshake(fd, 1, "OAUTHBEARER") == 0,
                   "SaslHandshake OAUTHBEARER refused");
    if (fd >= 0)
        close(fd);
}

/* sasl_mechanisms is what the SaslHandshake takes: with OAUTHBEARER alone
 * PLAIN is UNSUPPORTED_SASL_MECHANISM (33) and closes; so is a name that
 * only starts with OAUTHBEARER, or is cut short of it. */
static void test_sasl_mechanisms_offered_only(void **state)
{
    (void)state;
    bg_t_run_t r = {.kafka_extra = "  sasl_mechanisms: [OAUTHBEARER]\n" BG_T_AUTH_TIMEOUT_PAST_WAITS,
                    .scenario = bg_t_scenario_sasl_names};
    bg_t_run(&r);
    bg_t_finish(&r, NULL);
}

/* SaslAuthenticate v0 with n bytes at msg (correlation id 2): its error
 * code, or -1 when busgate closed the connection without one. */
static int bg_t_authenticate_n(int fd, const char *msg, size_t n)
{
    bg_t_buf_t b = {0}, f = {0};
    bg_t_i32(&b, (int32_t)n);
    bg_t_put(&b, msg, n);
    bg_t_cli_send(fd, 36, 0, 2, &b);
    int rc = bg_t_read_frame(fd, &f, BG_T_WAIT_MS) > 0 && f.len >= 6 && bg_t_get_i32(f.p) == 2
                 ? bg_t_get_i16(f.p + 4)
                 : -1;
    bg_t_buf_free(&b);
    bg_t_buf_free(&f);
    return rc;
}

/* After a refusal on fd: a second try with the good token is not answered
 * (busgate closed the connection at the refusal; waiting for its pre-auth
 * timeout would race it). 1 when so. */
static int bg_t_no_second_try(bg_t_run_t *r, int fd, const char *what)
{
    char msg[4200];
    int n = snprintf(msg, sizeof msg, "n,,\001auth=Bearer %s\001\001", r->token);
    int rc = bg_t_authenticate_n(fd, msg, (size_t)n);
    return bg_t_check(r, rc == -1, "%s: a second try on the connection got %d", what, rc);
}

/* On a new connection: SaslHandshake mech, then SaslAuthenticate with n
 * bytes at msg; 1 when that is answered SASL_AUTHENTICATION_FAILED (58)
 * and the connection takes no second try. */
static int bg_t_login_refused(bg_t_run_t *r, const char *mech, const char *msg, size_t n,
                              const char *what)
{
    int fd = bg_t_connect(r->listen_port);
    if (!bg_t_check(r, fd >= 0, "cannot connect to busgate"))
        return 0;
    int ok = bg_t_check(r, bg_t_handshake(fd, 1, mech) == 0, "SaslHandshake %s refused", mech);
    int rc = ok ? bg_t_authenticate_n(fd, msg, n) : -1;
    ok = ok && bg_t_check(r, rc == 58, "%s: error %d, not 58", what, rc) &&
         bg_t_no_second_try(r, fd, what);
    close(fd);
    return ok;
}

/* A token for sub (group readers) from the key bg_t_mint uses, into out. */
static void bg_t_mint_sub(const char *sub, char *out, size_t cap)
{
    char path[1024], err[256], pem[8192];
    snprintf(path, sizeof path, "%s/examples/dev-signing-key.pem", getenv("BG_SOURCE_DIR"));
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(pem, 1, sizeof pem, f) : 0;
    if (f)
        fclose(f);
    const char *groups[] = {"readers"};
    char *tok = n ? bg_identity_mint(pem, n, "busgate-dev", sub, groups, 1, 600, "busgate-dev",
                                     "busgate", err, sizeof err)
                  : NULL;
    snprintf(out, cap, "%s", tok ? tok : "");
    free(tok);
}

static void bg_t_scenario_refusals(bg_t_run_t *r)
{
    char msg[4200];
    /* PLAIN: an authorization id must be the whole user name. */
    int n = snprintf(msg, sizeof msg, "alic%calice%c%s", 0, 0, r->token);
    if (!bg_t_login_refused(r, "PLAIN", msg, (size_t)n, "PLAIN authzid alic for user alice"))
        return;
    /* PLAIN: a bad token is a failure, closed at once. */
    n = snprintf(msg, sizeof msg, "%calice%cabc", 0, 0);
    if (!bg_t_login_refused(r, "PLAIN", msg, (size_t)n, "PLAIN bad token"))
        return;
    /* OAUTHBEARER: the challenge, then the client's 0x01 is a failure,
     * closed at once. */
    int fd = bg_t_connect(r->listen_port);
    if (!bg_t_check(r, fd >= 0, "cannot connect to busgate"))
        return;
    int ok = bg_t_check(r, bg_t_handshake(fd, 1, "OAUTHBEARER") == 0, "SaslHandshake refused") &&
             bg_t_check(r, bg_t_authenticate(fd, "n,,\001auth=Bearer abc\001\001") == 0,
                        "a bad token got no challenge");
    int rc = ok ? bg_t_authenticate(fd, "\001") : -1;
    ok = ok && bg_t_check(r, rc == 58, "0x01 after the challenge: error %d, not 58", rc) &&
         bg_t_no_second_try(r, fd, "0x01 after the challenge");
    close(fd);
    if (!ok)
        return;
    /* A re-authentication's authorization id is checked as the login's. */
    fd = bg_t_cli_login(r);
    if (fd < 0)
        return;
    n = snprintf(msg, sizeof msg, "n,a=bob,\001auth=Bearer %s\001\001", r->token);
    ok = bg_t_check(r, bg_t_handshake(fd, 1, "OAUTHBEARER") == 0, "re-authentication refused");
    rc = ok ? bg_t_authenticate_n(fd, msg, (size_t)n) : -1;
    ok = ok && bg_t_check(r, rc == 58, "re-authentication as bob: error %d, not 58", rc) &&
         bg_t_no_second_try(r, fd, "re-authentication as bob");
    close(fd);
    if (!ok)
        return;
    /* A re-authentication keeps the principal: bob's own valid token on
     * alice's connection is refused. */
    char bob[4096];
    bg_t_mint_sub("bob", bob, sizeof bob);
    if (!bg_t_check(r, bob[0] != 0, "cannot mint a token for bob"))
        return;
    fd = bg_t_cli_login(r);
    if (fd < 0)
        return;
    n = snprintf(msg, sizeof msg, "n,,\001auth=Bearer %s\001\001", bob);
    ok = bg_t_check(r, bg_t_handshake(fd, 1, "OAUTHBEARER") == 0, "re-authentication refused");
    rc = ok ? bg_t_authenticate_n(fd, msg, (size_t)n) : -1;
    if (ok && bg_t_check(r, rc == 58, "re-authentication with bob's token: error %d, not 58", rc))
        bg_t_no_second_try(r, fd, "re-authentication with bob's token");
    close(fd);
}

/* A refused login closes its connection after the answer (a second try on
 * it with a good token is not answered): a PLAIN authorization id that
 * only begins the user name, a bad PLAIN token, the client's 0x01 after an
 * OAUTHBEARER challenge; and a re-authentication that asks to act as
 * someone else, or brings another principal's token, is refused and closes
 * too. */
static void test_refused_logins_close(void **state)
{
    (void)state;
    bg_t_run_t r = {.scenario = bg_t_scenario_refusals};
    bg_t_run(&r);
    bg_t_finish(&r, NULL);
}

/* The (min, max) of api in an ApiVersions v0 answer f (after its
 * correlation id); 0 when the api is not listed. */
static int bg_t_listed(const bg_t_buf_t *f, int16_t api, int16_t *lo, int16_t *hi)
{
    if (f->len < 10)
        return 0;
    int32_t n = bg_t_get_i32(f->p + 6);
    for (int32_t i = 0; i < n && 10 + 6 * (size_t)(i + 1) <= f->len; i++) {
        const uint8_t *e = f->p + 10 + 6 * (size_t)i;
        if (bg_t_get_i16(e) == api) {
            *lo = bg_t_get_i16(e + 2), *hi = bg_t_get_i16(e + 4);
            return 1;
        }
    }
    return 0;
}

static void bg_t_scenario_versions(bg_t_run_t *r)
{
    int fd = bg_t_connect(r->listen_port);
    if (!bg_t_check(r, fd >= 0, "cannot connect to busgate"))
        return;
    bg_t_buf_t b = {0}, f = {0};
    bg_t_cli_send(fd, 18, 0, 7, &b);
    int ok = bg_t_check(r, bg_t_read_frame(fd, &f, BG_T_WAIT_MS) > 0 && f.len >= 10 &&
                               bg_t_get_i32(f.p) == 7 && bg_t_get_i16(f.p + 4) == 0,
                        "ApiVersions not answered");
    int16_t lo = -1, hi = -1;
    /* The broker's Fetch 4-11 and Metadata 0-1: below busgate's own maxima. */
    int in = ok && bg_t_listed(&f, 1, &lo, &hi);
    ok = ok && bg_t_check(r, in && lo == 4 && hi == 11,
                          "Fetch listed as %d-%d, not the broker's 4-11", lo, hi);
    in = ok && bg_t_listed(&f, 3, &lo, &hi);
    ok = ok && bg_t_check(r, in && lo == 0 && hi == 1,
                          "Metadata listed as %d-%d, not the broker's 0-1", lo, hi);
    /* Produce 0-2 only: no version both speak (Produce's minimum is widened
     * to the broker's only where the ranges meet). */
    in = ok && bg_t_listed(&f, 0, &lo, &hi);
    ok = ok && bg_t_check(r, !in, "Produce listed as %d-%d", lo, hi);
    /* A 3.x broker's ConsumerGroupHeartbeat v0 is laid out differently. */
    in = ok && bg_t_listed(&f, 68, &lo, &hi);
    if (ok)
        bg_t_check(r, !in, "ConsumerGroupHeartbeat listed as %d-%d for a broker with v0 only",
                   lo, hi);
    bg_t_buf_free(&b);
    bg_t_buf_free(&f);
    close(fd);
}

/* A client's ApiVersions lists what both busgate and the broker speak: the
 * broker's maximum where it is below busgate's, no API the two share no
 * version of, and no ConsumerGroupHeartbeat from a broker without v1. */
static void test_api_versions_are_what_both_speak(void **state)
{
    (void)state;
    bg_t_run_t r = {.scenario = bg_t_scenario_versions};
    bg_t_run(&r);
    bg_t_finish(&r, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_login_for_unauthenticated_clients),
        cmocka_unit_test(test_malformed_login_is_an_auth_failure),
        cmocka_unit_test(test_malformed_request_before_login_is_an_auth_failure),
        cmocka_unit_test(test_sasl_exchange_order),
        cmocka_unit_test(test_sasl_mechanisms_offered_only),
        cmocka_unit_test(test_refused_logins_close),
        cmocka_unit_test(test_api_versions_are_what_both_speak),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
