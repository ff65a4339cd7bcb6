/* Requests too large to audit (test_kafka_session_util.h): a request one
 * of whose decisions names more than an audit event records
 * (BG_AUDIT_MAX_EVENT_BYTES of JSON) is refused by busgate itself, nothing
 * forwarded, every entry answered POLICY_VIOLATION, and audited as one
 * event of at most one record; one just under the budget goes through and
 * is recorded whole, in parts. */
#include <jansson.h>

#include "audit/audit.h"
#include "test_kafka_session_util.h"

#define BG_T_NAME_LEN 32767 /* the longest Kafka string */

typedef struct {
    int names;   /* topics the Metadata names */
    int refused; /* expected: refused by busgate */
} bg_t_budget_t;

/* Metadata v1 naming n distinct topics "keep-" + control bytes, each
 * BG_T_NAME_LEN long: about 192 KiB of JSON each in an audit record. */
static void bg_t_metadata_names(bg_t_buf_t *b, int n)
{
    static char name[BG_T_NAME_LEN];
    memset(name, 0x01, sizeof name);
    memcpy(name, "keep-", 5);
    bg_t_i32(b, n);
    for (int i = 0; i < n; i++) {
        for (int k = 0, v = i; k < 5; k++, v /= 10)
            name[9 - k] = (char)('0' + v % 10);
        bg_t_i16(b, BG_T_NAME_LEN);
        bg_t_put(b, name, sizeof name);
    }
}

/* 1 when every one of the n topics of the Metadata v1 response f (after
 * its correlation id) carries error code err. */
static int bg_t_all_topics_error(const bg_t_buf_t *f, int n, int16_t err)
{
    const uint8_t *p = f->p + 4, *end = f->p + f->len;
#define BG_T_NEED(k)                                                                               \
    do {                                                                                           \
        if ((size_t)(end - p) < (size_t)(k))                                                       \
            return 0;                                                                              \
    } while (0)
    BG_T_NEED(4);
    int32_t nb = bg_t_get_i32(p);
    p += 4;
    for (int32_t i = 0; i < nb; i++) {
        BG_T_NEED(6);
        p += 4;
        int16_t hl = bg_t_get_i16(p);
        p += 2;
        BG_T_NEED(hl + 6);
        p += hl + 4;
        int16_t rl = bg_t_get_i16(p);
        p += 2;
        BG_T_NEED(rl > 0 ? rl : 0);
        p += rl > 0 ? rl : 0;
    }
    BG_T_NEED(8);
    p += 4; /* controller */
    if (bg_t_get_i32(p) != n)
        return 0;
    p += 4;
    for (int i = 0; i < n; i++) {
        BG_T_NEED(4);
        if (bg_t_get_i16(p) != err)
            return 0;
        int16_t nl = bg_t_get_i16(p + 2);
        p += 4;
        BG_T_NEED(nl + 5);
        p += nl + 1;
        p += 4; /* partitions: none */
    }
#undef BG_T_NEED
    return p == end;
}

/* A Metadata response with broker 0 and no topics, for version v (1-8). */
static void bg_t_metadata_reply(bg_t_run_t *r, const bg_t_req_t *q)
{
    bg_t_buf_t body = {0};
    int16_t v = q->api_version;
    if (v >= 3)
        bg_t_i32(&body, 0); /* throttle */
    bg_t_i32(&body, 1);
    bg_t_i32(&body, 0), bg_t_str(&body, "127.0.0.1"), bg_t_i32(&body, r->up_port);
    bg_t_str(&body, NULL);
    if (v >= 2)
        bg_t_str(&body, NULL); /* cluster id */
    bg_t_i32(&body, 0);        /* controller */
    bg_t_i32(&body, 0);        /* topics */
    if (v >= 8)
        bg_t_i32(&body, 0); /* cluster authorized operations */
    bg_t_up_reply(q->fd, q->corr, &body);
    bg_t_buf_free(&body);
}

static void bg_t_scenario_budget(bg_t_run_t *r)
{
    const bg_t_budget_t *b = r->arg;
    int fd = bg_t_cli_login(r);
    if (fd < 0)
        return;
    bg_t_buf_t req = {0}, f = {0};
    /* First a Metadata of all topics (null), answered: busgate's upstream
     * is ready and its versions known (Metadata v0-1), so the named one
     * goes at v1, not upgraded to v4 (which this broker would not take). */
    bg_t_i32(&req, -1);
    bg_t_cli_send(fd, 3, 1, 8, &req);
    bg_t_req_t q0 = {0};
    if (!bg_t_up_next(r, 3, &q0))
        goto out;
    bg_t_metadata_reply(r, &q0);
    if (!bg_t_check(r, bg_t_read_frame(fd, &f, BG_T_WAIT_MS) > 0 && bg_t_get_i32(f.p) == 8,
                    "no answer to the Metadata of all topics"))
        goto out;
    req.len = 0;
    bg_t_metadata_names(&req, b->names);
    bg_t_cli_send(fd, 3, 1, 9, &req);
    if (b->refused) {
        int got = bg_t_read_frame(fd, &f, BG_T_WAIT_MS) > 0 && f.len >= 4 && bg_t_get_i32(f.p) == 9;
        if (bg_t_check(r, got, "no answer to the Metadata too large to audit")) {
            bg_t_check(r, bg_t_all_topics_error(&f, b->names, 44),
                       "not every topic answered POLICY_VIOLATION");
            pthread_mutex_lock(&r->mu);
            size_t forwarded = r->nreqs;
            pthread_mutex_unlock(&r->mu);
            bg_t_check(r, forwarded == 0, "%zu request(s) reached the broker", forwarded);
        }
    } else {
        bg_t_req_t q = {0};
        if (bg_t_up_next(r, 3, &q)) {
            bg_t_metadata_reply(r, &q);
            bg_t_check(r, bg_t_read_frame(fd, &f, BG_T_WAIT_MS) > 0 && bg_t_get_i32(f.p) == 9,
                       "no Metadata response");
        }
    }
out:
    bg_t_buf_free(&req);
    bg_t_buf_free(&f);
    close(fd);
}

/* The decision events of the named Metadata in the audit file (busgate
 * has stopped): how many lines, the longest, and the resources they name
 * together. */
typedef struct {
    int events, parts_max, by_busgate, err44;
    size_t longest, resources;
    char detail[256];
} bg_t_seen_t;

static void bg_t_read_audit(const char *path, bg_t_seen_t *s)
{
    memset(s, 0, sizeof *s);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, fp)) > 0) {
        json_t *j = json_loads(line, 0, NULL);
        assert_non_null(j);
        const char *kind = json_string_value(json_object_get(j, "kind"));
        const char *api = json_string_value(json_object_get(json_object_get(j, "api"), "name"));
        json_t *res = json_object_get(j, "resources");
        const char *first = json_string_value(json_object_get(json_array_get(res, 0), "name"));
        /* the named request's, not the listing of all topics before it */
        if (kind && api && !strcmp(kind, "decision") && !strcmp(api, "Metadata") && first &&
            !strncmp(first, "keep-", 5)) {
            s->events++;
            s->longest = (size_t)n > s->longest ? (size_t)n : s->longest;
            s->resources += json_array_size(res);
            int parts = (int)json_integer_value(json_object_get(j, "parts"));
            s->parts_max = parts > s->parts_max ? parts : s->parts_max;
            const char *by =
                json_string_value(json_object_get(json_object_get(j, "decision"), "by"));
            s->by_busgate += by && !strcmp(by, "busgate");
            s->err44 += json_integer_value(
                            json_object_get(json_object_get(j, "result"), "error_code")) == 44;
            const char *d = json_string_value(json_object_get(j, "detail"));
            if (d)
                snprintf(s->detail, sizeof s->detail, "%s", d);
        }
        json_decref(j);
    }
    free(line);
    fclose(fp);
}

/* 60 names of 32767 control bytes (about 11.5 MB of audit JSON, 2 MB of
 * request): refused, not forwarded, one event of one record naming the
 * first that fit in half a record. Before, it was forwarded and audited as
 * 30 parts (and 600 such names as 300 parts, 118 MB, all encoded at once). */
static void test_metadata_too_large_to_audit_is_refused(void **state)
{
    (void)state;
    bg_t_budget_t b = {60, 1};
    bg_t_run_t r = {.audit = 1, .scenario = bg_t_scenario_budget, .arg = &b};
    bg_t_run(&r);
    bg_t_seen_t s;
    bg_t_read_audit(r.audit_path, &s);
    if (!r.fail[0] && (s.events != 1 || s.parts_max != 0 || s.by_busgate != 1 || s.err44 != 1))
        snprintf(r.fail, sizeof r.fail,
                 "%d Metadata events (parts %d, by busgate %d, error 44 %d), want one", s.events,
                 s.parts_max, s.by_busgate, s.err44);
    if (!r.fail[0] && (s.longest > BG_AUDIT_RECORD_BYTES || s.resources == 0 || s.resources >= 60))
        snprintf(r.fail, sizeof r.fail, "the event is %zu bytes naming %zu resources", s.longest,
                 s.resources);
    if (!r.fail[0] && !strstr(s.detail, "request names 60 resources ("))
        snprintf(r.fail, sizeof r.fail, "detail: %s", s.detail);
    if (!r.fail[0] && !strstr(s.detail, "more than busgate records (8 MiB): refused"))
        snprintf(r.fail, sizeof r.fail, "detail: %s", s.detail);
    bg_t_finish(&r, NULL);
}

/* 40 such names (about 7.9 MB of audit JSON): under the budget, forwarded
 * and recorded whole, as parts. */
static void test_metadata_under_the_budget_is_recorded_whole(void **state)
{
    (void)state;
    bg_t_budget_t b = {40, 0};
    bg_t_run_t r = {.audit = 1, .scenario = bg_t_scenario_budget, .arg = &b};
    bg_t_run(&r);
    bg_t_seen_t s;
    bg_t_read_audit(r.audit_path, &s);
    if (!r.fail[0] && (s.resources != 40 || s.parts_max < 2 || s.events != s.parts_max ||
                       s.by_busgate != 0 || s.detail[0]))
        snprintf(r.fail, sizeof r.fail,
                 "%d Metadata events (parts %d) naming %zu resources, detail \"%s\"", s.events,
                 s.parts_max, s.resources, s.detail);
    bg_t_finish(&r, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metadata_too_large_to_audit_is_refused),
        cmocka_unit_test(test_metadata_under_the_budget_is_recorded_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
