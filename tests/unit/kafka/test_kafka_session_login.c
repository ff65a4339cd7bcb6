/* Logins (test_kafka_session_util.h). busgate's own login to the broker
 * (with a broker that takes SASL PLAIN): it is made for a client that has
 * authenticated, never for one that has not. A client's ApiVersions
 * before it authenticates, with no versions of the broker known yet, asks
 * the broker for them and nothing more. A client's login busgate cannot
 * read is a failed login, audited and counted. */
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
    bg_t_run_t r = {.audit = 1, .scenario = bg_t_scenario_malformed_login};
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
    bg_t_run_t r = {.audit = 1, .scenario = bg_t_scenario_malformed_preauth};
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_login_for_unauthenticated_clients),
        cmocka_unit_test(test_malformed_login_is_an_auth_failure),
        cmocka_unit_test(test_malformed_request_before_login_is_an_auth_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
