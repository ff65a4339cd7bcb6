/* The logger writes one valid JSON object per line whatever it is given:
 * messages and fields cut to fit are closed properly and marked, invalid
 * UTF-8 becomes U+FFFD, and no UTF-8 sequence or escape is split. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/log.h"

/* Logs through a pipe and returns the one line written, parsed. */
/* Logs through a pipe and returns the one line written, as it is (static
 * buffer); *len gets its length. */
static const char *logged_line(const bg_log_field_t *fields, size_t n, const char *msg,
                               ssize_t *len)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    bg_log_set_fd(p[1]);
    bg_log_fields(BG_LOG_ERROR, "test", fields, n, "%s", msg);
    bg_log_set_fd(2);
    close(p[1]);
    static char buf[65536];
    ssize_t got = read(p[0], buf, sizeof buf - 1);
    close(p[0]);
    assert_true(got > 0);
    buf[got] = '\0';
    *len = got;
    return buf;
}

static json_t *logged(const bg_log_field_t *fields, size_t n, const char *msg)
{
    ssize_t got;
    const char *buf = logged_line(fields, n, msg, &got);
    assert_int_equal(buf[got - 1], '\n');
    assert_null(memchr(buf, '\n', (size_t)got - 1)); /* one line */
    json_error_t e;
    json_t *j = json_loadb(buf, (size_t)got - 1, 0, &e); /* strict: valid UTF-8 only */
    if (!j)
        fail_msg("not JSON (%s): %.200s", e.text, buf);
    return j;
}

static void test_plain_line(void **state)
{
    (void)state;
    bg_log_field_t f[] = {{"peer", "127.0.0.1:1"}, {"none", NULL}};
    json_t *j = logged(f, 2, "hello \"world\"\n\x01");
    assert_string_equal(json_string_value(json_object_get(j, "msg")), "hello \"world\"\n\x01");
    assert_string_equal(json_string_value(json_object_get(j, "peer")), "127.0.0.1:1");
    assert_true(json_is_null(json_object_get(j, "none")));
    assert_null(json_object_get(j, "truncated"));
    json_decref(j);
}

static void test_invalid_utf8_replaced(void **state)
{
    (void)state;
    bg_log_field_t f[] = {{"name", "a\xff" "b\xc3"}};
    json_t *j = logged(f, 1, "x\xed\xa0\x80y\xc3\xa9");
    assert_string_equal(json_string_value(json_object_get(j, "msg")),
                        "x\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdy\xc3\xa9");
    assert_string_equal(json_string_value(json_object_get(j, "name")),
                        "a\xef\xbf\xbd" "b\xef\xbf\xbd");
    json_decref(j);
}

/* Characters from clients that a terminal would act on or that make text
 * read other than it is (C1 controls, U+009B an 8-bit CSI; U+2028/9;
 * bidirectional controls) are written as \uXXXX escapes, not raw; other
 * non-ASCII text stays as it is. */
static void test_terminal_controls_escaped(void **state)
{
    (void)state;
    const char *sub = "mallory\xc2\x9b" "2J\xc2\x85\xe2\x80\xaetxet\xe2\x80\xa8\xe2\x81\xa6"
                      "\xe2\x80\x8f caf\xc3\xa9 \xe2\x82\xac";
    bg_log_field_t f[] = {{"sub", sub}};
    ssize_t got;
    const char *buf = logged_line(f, 1, "login", &got);
    assert_non_null(strstr(buf, "\"sub\":\"mallory\\u009b2J\\u0085\\u202etxet\\u2028\\u2066"
                                "\\u200f caf\xc3\xa9 \xe2\x82\xac\""));
    json_t *j = logged(f, 1, "again"); /* and the line reads back as the same text */
    assert_string_equal(json_string_value(json_object_get(j, "sub")), sub);
    json_decref(j);
}

/* Client text cannot end a JSON string early: a backslash is escaped too
 * (raw, the one before a quote paired with the quote's own escape, so
 * `x\","admin":"yes` closed the value after `x\` and the rest of the line
 * was no JSON). Each edge of the escaped ranges, alone in a value:
 * 0x1f and DEL (JSON or a terminal), U+0080 and U+009F (the C1 controls'
 * ends), U+202A and U+2069 (the bidirectional controls' ends). */
static void test_escapes_at_the_edges(void **state)
{
    (void)state;
    bg_log_field_t f[] = {{"client", "x\\\",\"admin\":\"yes\\"}};
    ssize_t got;
    const char *buf = logged_line(f, 1, "m", &got);
    assert_non_null(strstr(buf, ",\"client\":\"x\\\\\\\",\\\"admin\\\":\\\"yes\\\\\"}"));
    json_t *j = logged(f, 1, "m");
    assert_string_equal(json_string_value(json_object_get(j, "client")), f[0].value);
    assert_null(json_object_get(j, "admin"));
    json_decref(j);
    static const struct {
        const char *raw, *escaped;
    } edges[] = {{"\x1f", "\\u001f"},         {"\x7f", "\\u007f"},
                 {"\xc2\x80", "\\u0080"},     {"\xc2\x9f", "\\u009f"},
                 {"\xe2\x80\xaa", "\\u202a"}, {"\xe2\x81\xa9", "\\u2069"}};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        char want[32];
        snprintf(want, sizeof want, ",\"v\":\"%s\"}", edges[i].escaped);
        bg_log_field_t e[] = {{"v", edges[i].raw}};
        buf = logged_line(e, 1, "m", &got);
        if (!strstr(buf, want))
            fail_msg("%s not in %s", want, buf);
    }
}

/* The escaper always leaves room for its NUL (the admin listener's
 * readiness reason is used as a string): text that would exactly fill the
 * buffer is cut one character short and says so. */
static void test_escape_keeps_room_for_nul(void **state)
{
    (void)state;
    char dst[8];
    memset(dst, 'z', sizeof dst);
    size_t len = 0;
    assert_int_equal(bg_json_escape_into(dst, sizeof dst, &len, "abcdefgh", 8), -1);
    assert_int_equal(len, 7);
    assert_string_equal(dst, "abcdefg");
    len = 0;
    assert_int_equal(bg_json_escape_into(dst, sizeof dst, &len, "abcdefg", 7), 0);
    assert_string_equal(dst, "abcdefg");
}

/* A message that escapes to more than the line holds, and one cut by the
 * message buffer in the middle of a UTF-8 sequence: closed and marked. */
static void test_long_message_cut_and_marked(void **state)
{
    (void)state;
    static char quotes[3000], accents[3001];
    memset(quotes, '"', sizeof quotes - 1);
    for (size_t i = 0; i + 1 < sizeof accents; i += 2)
        memcpy(accents + i, "\xc3\xa9", 2);
    bg_log_field_t f[] = {{"after", "x"}};
    json_t *j = logged(f, 1, quotes);
    assert_true(json_is_true(json_object_get(j, "truncated")));
    assert_string_equal(json_string_value(json_object_get(j, "after")), "x"); /* room kept */
    size_t ml = json_string_length(json_object_get(j, "msg"));
    assert_true(ml > 500 && ml < 2048);
    json_decref(j);
    j = logged(NULL, 0, accents); /* the 2047-byte message cut ends with a lone lead byte */
    assert_true(json_is_true(json_object_get(j, "truncated")));
    const char *m = json_string_value(json_object_get(j, "msg"));
    size_t n = strlen(m);
    assert_true(n >= 2040 && n % 2 == 0); /* whole sequences only, none replaced */
    assert_memory_equal(m + n - 2, "\xc3\xa9", 2);
    json_decref(j);
    /* 512 four-byte characters: the cut leaves three bytes of the last. */
    static char emoji[2049];
    for (size_t i = 0; i + 4 < sizeof emoji; i += 4)
        memcpy(emoji + i, "\xf0\x9f\x98\x80", 4);
    j = logged(NULL, 0, emoji);
    assert_true(json_is_true(json_object_get(j, "truncated")));
    m = json_string_value(json_object_get(j, "msg"));
    assert_int_equal(strlen(m), 2044); /* 511 whole, none replaced */
    assert_memory_equal(m + 2040, "\xf0\x9f\x98\x80", 4);
    json_decref(j);
}

/* A long message leaves room for the fields after it. */
static void test_fields_kept_beside_long_message(void **state)
{
    (void)state;
    static char quotes[2000];
    memset(quotes, '"', sizeof quotes - 1);
    bg_log_field_t f[] = {{"session", "0b7c6a8e-1d2f-4a3b-9c4d-5e6f7a8b9c0d"}};
    json_t *j = logged(f, 1, quotes);
    assert_true(json_is_true(json_object_get(j, "truncated")));
    assert_string_equal(json_string_value(json_object_get(j, "session")),
                        "0b7c6a8e-1d2f-4a3b-9c4d-5e6f7a8b9c0d");
    json_decref(j);
}

/* Fields that no longer fit are left out whole, never half written. */
static void test_fields_dropped_whole(void **state)
{
    (void)state;
    static char big[1500];
    memset(big, 'v', sizeof big - 1);
    bg_log_field_t f[] = {{"a", big}, {"b", big}, {"c", big}, {"d", big}};
    json_t *j = logged(f, 4, "m");
    assert_true(json_is_true(json_object_get(j, "truncated")));
    assert_string_equal(json_string_value(json_object_get(j, "a")), big);
    assert_string_equal(json_string_value(json_object_get(j, "b")), big);
    assert_null(json_object_get(j, "c"));
    json_decref(j);
}

/* Fields longer than the line leave the message half of it, never less
 * than none: a long message beside them is cut, not written past the line
 * (the message's room was the line less the fields' size, which wrapped
 * below zero). */
static void test_long_message_beside_oversized_fields(void **state)
{
    (void)state;
    static char big[1500], quotes[2048];
    memset(big, 'v', sizeof big - 1);
    memset(quotes, '"', sizeof quotes - 1);
    bg_log_field_t f[] = {{"a", big}, {"b", big}, {"c", big}, {"d", big}};
    ssize_t got;
    (void)logged_line(f, 4, quotes, &got);
    assert_true(got <= 4096);
    json_t *j = logged(f, 4, quotes);
    assert_true(json_is_true(json_object_get(j, "truncated")));
    size_t ml = json_string_length(json_object_get(j, "msg"));
    assert_true(ml > 500 && ml < 1100);
    assert_string_equal(json_string_value(json_object_get(j, "a")), big);
    assert_null(json_object_get(j, "b"));
    json_decref(j);
}

/* ---- the queue ---- */

typedef struct {
    int fd;
    char *buf;
    size_t len, cap;
} reader_t;

/* Reads fd to its end into a growing buffer. */
static void *read_all(void *arg)
{
    reader_t *r = arg;
    for (;;) {
        if (r->cap - r->len < 65536) {
            r->cap = r->cap * 2 + 65536;
            r->buf = realloc(r->buf, r->cap);
            assert_non_null(r->buf);
        }
        ssize_t n = read(r->fd, r->buf + r->len, r->cap - r->len - 1);
        if (n <= 0)
            break;
        r->len += (size_t)n;
    }
    r->buf[r->len] = '\0';
    return NULL;
}

/* A pipe that holds one page (4096 bytes): nobody reads it yet. */
static void small_pipe(int p[2])
{
    assert_int_equal(pipe(p), 0);
    assert_true(fcntl(p[1], F_SETPIPE_SZ, 4096) > 0);
}

/* Lines logged while the fd takes nothing are queued up to the queue's
 * size, the rest dropped and counted; the caller never waits (the test
 * would hang in write(2) otherwise). Once the fd is read, everything
 * queued comes out in order, with notices of the drops where they were,
 * then the lines logged after. */
static void queue_drops_and_counts(int log_after)
{
    int p[2];
    small_pipe(p);
    bg_log_set_fd(p[1]);
    uint64_t before = bg_log_dropped_total();
    assert_int_equal(bg_log_async_start(16384), 0);
    enum { N = 500 };
    for (int i = 0; i < N; i++)
        bg_log_fields(BG_LOG_ERROR, "test", NULL, 0, "line %d", i);
    uint64_t dropped = bg_log_dropped_total() - before;
    assert_true(dropped > 0 && dropped < N);
    reader_t r = {.fd = p[0]};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, read_all, &r), 0);
    while (bg_log_queued_bytes() > 0) /* written, the notice of the drops too */
        usleep(1000);
    if (log_after)
        bg_log_fields(BG_LOG_ERROR, "test", NULL, 0, "after");
    bg_log_async_stop(10000);
    bg_log_set_fd(2);
    close(p[1]);
    pthread_join(t, NULL);
    close(p[0]);
    assert_int_equal(bg_log_dropped_total() - before, dropped); /* all written at the stop */

    /* next: the number the next line must have, each notice of n drops
     * standing for the n lines before it. */
    int next = 0, lines = 0, after = 0;
    unsigned long long noted = 0;
    for (char *at = r.buf, *nl; (nl = strchr(at, '\n')) != NULL; at = nl + 1) {
        json_error_t e;
        json_t *j = json_loadb(at, (size_t)(nl - at), 0, &e);
        if (!j)
            fail_msg("not JSON (%s): %.200s", e.text, at);
        const char *msg = json_string_value(json_object_get(j, "msg"));
        int i;
        unsigned long long n;
        assert_int_equal(after, 0); /* "after" is the last line */
        if (sscanf(msg, "line %d", &i) == 1) {
            assert_int_equal(i, next); /* in order, and the drops where they were said */
            next++;
            lines++;
        } else if (sscanf(msg, "%llu log lines dropped", &n) == 1) {
            assert_string_equal(json_string_value(json_object_get(j, "level")), "warn");
            noted += n;
            next += (int)n;
        } else {
            assert_string_equal(msg, "after");
            after = 1;
        }
        json_decref(j);
    }
    free(r.buf);
    assert_int_equal(after, log_after);
    assert_int_equal(noted, dropped);
    assert_int_equal(lines + dropped, N); /* every line written or counted */
    assert_int_equal(next, N);
}

static void test_queue_drops_and_counts(void **state)
{
    (void)state;
    queue_drops_and_counts(1);
}

/* Drops that no later line follows are said all the same, once the queue
 * has room (the log thread writes the notice itself). */
static void test_queue_says_drops_nothing_follows(void **state)
{
    (void)state;
    queue_drops_and_counts(0);
}

/* A line queued after drops comes with the notice of them, so it is taken
 * only when both fit: one that fits alone is dropped and counted too (taken
 * with its notice, the two ran past the ring and over the oldest lines). */
static void test_queue_line_needs_room_for_its_notice(void **state)
{
    (void)state;
    int p[2];
    small_pipe(p);
    static char junk[4096], big[2001], small[4096];
    memset(junk, '.', sizeof junk);
    assert_int_equal(write(p[1], junk, sizeof junk), (ssize_t)sizeof junk); /* the pipe is full */
    bg_log_set_fd(p[1]);
    assert_int_equal(bg_log_async_start(16384), 0);
    bg_log_fields(BG_LOG_ERROR, "test", NULL, 0, "first"); /* the log thread waits with it */
    for (int i = 0; i < 10000 && bg_log_queued_bytes() > 0; i++)
        usleep(1000);
    assert_int_equal(bg_log_queued_bytes(), 0);
    bg_log_fields(BG_LOG_ERROR, "test", NULL, 0, "%s", "");
    size_t head = bg_log_queued_bytes() - 2; /* a line with an empty message */
    memset(big, 'x', sizeof big - 1);
    uint64_t before = bg_log_dropped_total();
    for (int i = 0; i < 20 && bg_log_dropped_total() == before; i++)
        bg_log_fields(BG_LOG_ERROR, "test", NULL, 0, "%s", big);
    assert_int_equal(bg_log_dropped_total() - before, 1);
    size_t room = 16384 - bg_log_queued_bytes();
    assert_true(room >= head + 2 && room - head - 2 < sizeof small);
    memset(small, 'y', room - head - 2); /* the longest line that fits, alone */
    bg_log_fields(BG_LOG_ERROR, "test", NULL, 0, "%s", small);
    assert_int_equal(bg_log_dropped_total() - before, 2);
    assert_int_equal(bg_log_queued_bytes(), 16384 - room);
    reader_t r = {.fd = p[0]};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, read_all, &r), 0);
    bg_log_async_stop(10000);
    bg_log_set_fd(2);
    close(p[1]);
    pthread_join(t, NULL);
    close(p[0]);
    assert_true(r.len > sizeof junk);
    int lines = 0;
    for (char *at = r.buf + sizeof junk, *nl; (nl = strchr(at, '\n')) != NULL; at = nl + 1) {
        json_error_t e;
        json_t *j = json_loadb(at, (size_t)(nl - at), 0, &e);
        if (!j)
            fail_msg("not JSON (%s): %.200s", e.text, at);
        json_decref(j);
        lines++;
    }
    assert_true(lines >= 4); /* first, the empty one, the big ones, the notice */
    free(r.buf);
}

/* Without a queue (never started, or stopped) lines are written at once. */
static void test_sync_after_stop(void **state)
{
    (void)state;
    ssize_t len;
    const char *line = logged_line(NULL, 0, "plain", &len);
    assert_non_null(strstr(line, "\"msg\":\"plain\""));
}

/* Last: the queue stays stopped for good. A fd that never takes its lines
 * does not hold the stop up beyond its deadline; the lines still queued
 * and every later one are dropped and counted, and logging never waits. */
static void test_stop_with_stuck_fd_returns(void **state)
{
    (void)state;
    int p[2];
    small_pipe(p);
    bg_log_set_fd(p[1]);
    uint64_t before = bg_log_dropped_total();
    assert_int_equal(bg_log_async_start(16384), 0);
    for (int i = 0; i < 300; i++)
        bg_log_fields(BG_LOG_ERROR, "test", NULL, 0, "line %d", i);
    bg_log_async_stop(200); /* the pipe is full and nobody reads it */
    uint64_t at_stop = bg_log_dropped_total() - before;
    bg_log_fields(BG_LOG_ERROR, "test", NULL, 0, "later");
    assert_int_equal(bg_log_dropped_total() - before, at_stop + 1);
    /* Only what the pipe took got out. */
    char buf[8192];
    ssize_t got = read(p[0], buf, sizeof buf - 1);
    assert_true(got > 0 && got <= 4096);
    buf[got] = '\0';
    uint64_t out = 0;
    for (const char *at = buf; (at = strstr(at, "\"msg\":\"line ")) != NULL; at++)
        out++;
    assert_int_equal(out + at_stop, 300);               /* each line written or counted */
    assert_int_not_equal(bg_log_async_start(16384), 0); /* stopped for good */
    bg_log_set_fd(2);
    close(p[1]);
    close(p[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_line),
        cmocka_unit_test(test_invalid_utf8_replaced),
        cmocka_unit_test(test_terminal_controls_escaped),
        cmocka_unit_test(test_escapes_at_the_edges),
        cmocka_unit_test(test_escape_keeps_room_for_nul),
        cmocka_unit_test(test_long_message_cut_and_marked),
        cmocka_unit_test(test_long_message_beside_oversized_fields),
        cmocka_unit_test(test_fields_kept_beside_long_message),
        cmocka_unit_test(test_fields_dropped_whole),
        cmocka_unit_test(test_queue_drops_and_counts),
        cmocka_unit_test(test_queue_says_drops_nothing_follows),
        cmocka_unit_test(test_queue_line_needs_room_for_its_notice),
        cmocka_unit_test(test_sync_after_stop),
        cmocka_unit_test(test_stop_with_stuck_fd_returns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
