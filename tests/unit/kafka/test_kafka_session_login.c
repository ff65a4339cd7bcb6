/* busgate's own login to the broker (test_kafka_session_util.h, with a
 * broker that takes SASL PLAIN): it is made for a client that has
 * authenticated, never for one that has not. A client's ApiVersions
 * before it authenticates, with no versions of the broker known yet, asks
 * the broker for them and nothing more. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_login_for_unauthenticated_clients),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
