/* The file sink's disk syncs: what it wrote reaches the disk on flush, on
 * close and from poll once its sync interval has passed; a failed sync is
 * reported and tried again. fdatasync is wrapped (-Wl,--wrap=fdatasync) to
 * count the calls and to fail on demand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit_sink.h"

int __real_fdatasync(int fd);

static int syncs;     /* fdatasync calls seen */
static int sync_fail; /* fail the next this many calls with EIO */

int __wrap_fdatasync(int fd)
{
    syncs++;
    if (sync_fail > 0) {
        sync_fail--;
        errno = EIO;
        return -1;
    }
    return __real_fdatasync(fd);
}

typedef struct fsink_s {
    char dir[4096], path[4200];
    bg_audit_sink_t *s;
    uint8_t buf[256];
    bg_audit_rec_t rec;
    int delivered;
} fsink_t;

static void count_cb(void *core, const bg_audit_rec_t *rec)
{
    (void)rec;
    (*(int *)core)++;
}

static void fsink_open(fsink_t *f)
{
    const char *base = getenv("TMPDIR");
    char err[256] = "";
    snprintf(f->dir, sizeof f->dir, "%s/bg-audit-file-XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/audit.jsonl", f->dir);
    f->s = bg_audit_file_sink_new(f->path, err, sizeof err);
    assert_non_null(f->s);
    f->s->cb = (bg_audit_sink_cb_t){&f->delivered, count_cb, NULL, NULL};
    static const char json[] = "{\"seq\":1}";
    f->rec = (bg_audit_rec_t){
        .data = f->buf,
        .len = (uint32_t)bg_audit_rec_build(f->buf, sizeof f->buf, "k", 1, json, sizeof json - 1)};
    assert_true(f->rec.len > 0);
    syncs = sync_fail = 0;
}

static void fsink_write(fsink_t *f)
{
    int before = f->delivered;
    assert_int_equal(f->s->write(f->s, &f->rec, 1), 1);
    assert_int_equal(f->delivered, before + 1);
}

static void fsink_remove(fsink_t *f)
{
    unlink(f->path);
    rmdir(f->dir);
}

/* flush syncs what was written, once; with nothing new written it does not
 * sync again; close syncs what is still unsynced. */
static void test_flush_and_close_sync_what_was_written(void **state)
{
    (void)state;
    fsink_t f = {0};
    fsink_open(&f);
    assert_int_equal(f.s->flush(f.s, 1000), 0);
    assert_int_equal(syncs, 0); /* nothing written yet */
    fsink_write(&f);
    assert_int_equal(f.s->flush(f.s, 1000), 0);
    assert_int_equal(syncs, 1);
    assert_int_equal(f.s->flush(f.s, 1000), 0);
    assert_int_equal(syncs, 1);
    fsink_write(&f);
    f.s->close(f.s);
    assert_int_equal(syncs, 2);
    fsink_remove(&f);
}

/* A failed sync makes flush fail, and the data stays to be synced: the next
 * flush tries again and succeeds. */
static void test_failed_sync_is_reported_and_retried(void **state)
{
    (void)state;
    fsink_t f = {0};
    fsink_open(&f);
    fsink_write(&f);
    sync_fail = 1;
    assert_int_equal(f.s->flush(f.s, 1000), -1);
    assert_int_equal(syncs, 1);
    assert_int_equal(f.s->flush(f.s, 1000), 0);
    assert_int_equal(syncs, 2);
    assert_int_equal(f.s->flush(f.s, 1000), 0);
    assert_int_equal(syncs, 2);
    f.s->close(f.s);
    assert_int_equal(syncs, 2);
    fsink_remove(&f);
}

/* poll syncs unsynced data once the sync interval (100 ms) has passed since
 * the last sync, and leaves a clean file alone however long it waited. */
static void test_poll_syncs_after_the_interval(void **state)
{
    (void)state;
    fsink_t f = {0};
    fsink_open(&f);
    struct timespec wait = {0, 150 * 1000000L};
    nanosleep(&wait, NULL);
    f.s->poll(f.s);
    assert_int_equal(syncs, 0); /* nothing written */
    fsink_write(&f);
    nanosleep(&wait, NULL);
    f.s->poll(f.s);
    assert_int_equal(syncs, 1);
    nanosleep(&wait, NULL);
    f.s->poll(f.s);
    assert_int_equal(syncs, 1);
    f.s->close(f.s);
    assert_int_equal(syncs, 1);
    fsink_remove(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flush_and_close_sync_what_was_written),
        cmocka_unit_test(test_failed_sync_is_reported_and_retried),
        cmocka_unit_test(test_poll_syncs_after_the_interval),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
