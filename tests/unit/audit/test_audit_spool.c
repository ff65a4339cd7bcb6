/* Audit spool: framing, order, ack/restart, rotation and deletion, damage
 * (truncated tail, flipped byte) skipped without losing later records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit_spool.h"
#include "broker/log.h"

/* Linked with --wrap=opendir: while bg_t_opendir_errno is set, listing a
 * directory fails with it (EMFILE: out of descriptors, as under a flood of
 * client connections, while the segments themselves are fine). */
static int bg_t_opendir_errno;

DIR *__real_opendir(const char *name);
DIR *__wrap_opendir(const char *name);
DIR *__wrap_opendir(const char *name)
{
    if (bg_t_opendir_errno) {
        errno = bg_t_opendir_errno;
        return NULL;
    }
    return __real_opendir(name);
}

/* Linked with --wrap=renameat2 and --wrap=rename: while bg_t_rename_errno
 * is set, they fail with it (EINVAL: a file system without
 * RENAME_NOREPLACE; EROFS: no rename at all). */
static int bg_t_rename_errno;

int __real_rename(const char *from, const char *to);
int __wrap_rename(const char *from, const char *to);
int __wrap_rename(const char *from, const char *to)
{
    if (bg_t_rename_errno) {
        errno = bg_t_rename_errno;
        return -1;
    }
    return __real_rename(from, to);
}

int __real_renameat2(int ofd, const char *from, int nfd, const char *to, unsigned flags);
int __wrap_renameat2(int ofd, const char *from, int nfd, const char *to, unsigned flags);
int __wrap_renameat2(int ofd, const char *from, int nfd, const char *to, unsigned flags)
{
    if (bg_t_rename_errno) {
        errno = bg_t_rename_errno;
        return -1;
    }
    return __real_renameat2(ofd, from, nfd, to, flags);
}

typedef struct got_s {
    int n, bad;
    int vals[4096];
} got_t;

static int collect(void *arg, const uint8_t *p, size_t len, size_t off)
{
    got_t *g = arg;
    char b[32];
    assert_true(len < sizeof b);
    memcpy(b, p, len);
    b[len] = '\0';
    g->vals[g->n++] = atoi(b + 4); /* "rec-N" */
    return 0;
}

static void count_bad(void *arg, size_t off, size_t len) { ((got_t *)arg)->bad++; }

/* Temp dirs live under the build tree (BG_BINARY_DIR, set by ctest). */
static char *tmp_template(const char *name)
{
    const char *base = getenv("BG_BINARY_DIR");
    char *t = malloc(4096);
    snprintf(t, 4096, "%s/%s-XXXXXX", base ? base : "/tmp", name);
    return t;
}

static char *mkdir_tmp(void)
{
    char *d = tmp_template("bg-audit-spool");
    assert_non_null(mkdtemp(d));
    return d;
}

static void rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[4096];
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (unlink(p) != 0)
            rmdir(p); /* a directory under a segment's name (moved aside) */
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

static void append_n(bg_audit_spool_t *sp, int from, int to)
{
    for (int i = from; i < to; i++) {
        char b[32];
        int n = snprintf(b, sizeof b, "rec-%d", i);
        assert_int_equal(bg_audit_spool_append(sp, (const uint8_t *)b, (size_t)n), 0);
    }
}

static int count_segments(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)) != NULL)
        n += strstr(e->d_name, ".seg") != NULL;
    if (d)
        closedir(d);
    return n;
}

static void test_crc32c_known(void **state)
{
    /* RFC 3720 check value */
    assert_int_equal(bg_audit_crc32c(0, "123456789", 9), 0xe3069283u);
    uint8_t zeros[32] = {0};
    assert_int_equal(bg_audit_crc32c(0, zeros, 32), 0x8a9136aau);
}

static void test_write_read_order_ack(void **state)
{
    char err[256] = "", *dir = mkdir_tmp();
    bg_audit_spool_t *sp = bg_audit_spool_open(dir, 0, 256, err, sizeof err);
    assert_non_null(sp);
    assert_true(bg_audit_spool_empty(sp));
    append_n(sp, 0, 100);
    assert_false(bg_audit_spool_empty(sp));
    assert_true(count_segments(dir) > 3); /* rotated at 256 bytes */
    got_t g = {0};
    assert_int_equal(bg_audit_spool_read(sp, 30, collect, &g), 30);
    bg_audit_spool_rewind(sp); /* a failed drain: the same 30 again */
    g.n = 0;
    assert_int_equal(bg_audit_spool_read(sp, 30, collect, &g), 30);
    assert_int_equal(bg_audit_spool_ack(sp), 0);
    assert_int_equal(bg_audit_spool_read(sp, 1000, collect, &g), 70);
    assert_int_equal(g.n, 100);
    for (int i = 0; i < 100; i++)
        assert_int_equal(g.vals[i], i);
    assert_true(bg_audit_spool_empty(sp));
    assert_int_equal(bg_audit_spool_ack(sp), 0);
    assert_true(count_segments(dir) <= 1); /* drained segments deleted */
    append_n(sp, 100, 105);                /* appending after a full drain works */
    g.n = 0;
    assert_int_equal(bg_audit_spool_read(sp, 1000, collect, &g), 5);
    assert_int_equal(g.vals[4], 104);
    assert_int_equal(bg_audit_spool_corrupt(sp), 0);
    bg_audit_spool_close(sp);
    rm_rf(dir);
    free(dir);
}

/* Records written but not acked survive a "crash" (no ack, reopen); acked
 * ones are not read again. */
static void test_restart_without_ack(void **state)
{
    char err[256] = "", *dir = mkdir_tmp();
    bg_audit_spool_t *sp = bg_audit_spool_open(dir, 0, 512, err, sizeof err);
    append_n(sp, 0, 50);
    got_t g = {0};
    assert_int_equal(bg_audit_spool_read(sp, 20, collect, &g), 20);
    assert_int_equal(bg_audit_spool_ack(sp), 0);
    assert_int_equal(bg_audit_spool_read(sp, 10, collect, &g), 10); /* read, not acked */
    bg_audit_spool_close(sp);                                        /* crash */
    sp = bg_audit_spool_open(dir, 0, 512, err, sizeof err);
    assert_non_null(sp);
    append_n(sp, 50, 60); /* new segment after the old ones */
    g.n = 0;
    assert_int_equal(bg_audit_spool_read(sp, 1000, collect, &g), 40);
    for (int i = 0; i < 40; i++)
        assert_int_equal(g.vals[i], 20 + i);
    bg_audit_spool_close(sp);
    rm_rf(dir);
    free(dir);
}

/* A spool left by an earlier process (no appends by this one), drained to
 * its end: its segments are deleted and it takes no space any more; after a
 * reopen it is empty and appends work. */
static void test_drain_old_segments_frees_them(void **state)
{
    char err[256] = "", *dir = mkdir_tmp();
    bg_audit_spool_t *sp = bg_audit_spool_open(dir, 0, 0, err, sizeof err);
    append_n(sp, 0, 30);
    bg_audit_spool_close(sp); /* e.g. killed while the primary was down */
    sp = bg_audit_spool_open(dir, 0, 0, err, sizeof err);
    assert_non_null(sp);
    assert_true(bg_audit_spool_bytes(sp) > 0);
    got_t g = {0};
    assert_int_equal(bg_audit_spool_read(sp, 1000, collect, &g), 30);
    assert_int_equal(bg_audit_spool_ack(sp), 0);
    assert_true(bg_audit_spool_empty(sp));
    assert_int_equal(bg_audit_spool_bytes(sp), 0);
    assert_int_equal(count_segments(dir), 0);
    append_n(sp, 30, 35);
    bg_audit_spool_close(sp);
    sp = bg_audit_spool_open(dir, 0, 0, err, sizeof err);
    g.n = 0;
    assert_int_equal(bg_audit_spool_read(sp, 1000, collect, &g), 5);
    assert_int_equal(g.vals[0], 30);
    bg_audit_spool_close(sp);
    rm_rf(dir);
    free(dir);
}

static void seg_path(const char *dir, int n, char *out, size_t cap)
{
    snprintf(out, cap, "%s/spool-%06d.seg", dir, n);
}

static void write_ack_file(const char *dir, const char *line)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/spool.ack", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(line, f);
    fclose(f);
}

/* Reopens dir and reads everything unacknowledged: records from..to-1 expected. */
static void expect_all_unread(const char *dir, int from, int to)
{
    char err[256] = "";
    bg_audit_spool_t *sp = bg_audit_spool_open(dir, 0, 512, err, sizeof err);
    assert_non_null(sp);
    got_t g = {0};
    assert_int_equal(bg_audit_spool_read(sp, 4096, collect, &g), to - from);
    for (int i = 0; i < to - from; i++)
        assert_int_equal(g.vals[i], from + i);
    bg_audit_spool_close(sp);
}

/* A torn overwrite of spool.ack (its CRC does not match) is no position:
 * everything on disk is read again (duplicates, never a loss). So is the
 * CRC-less line of earlier versions when it names a segment past the last on
 * disk while segments exist: those versions could leave such a stale line. */
/* Keeps the lengths of the records read, in order (two at most). */
static int record_len(void *arg, const uint8_t *p, size_t len, size_t off)
{
    size_t *l = arg;
    l[l[0] ? 1 : 0] = len;
    return 0;
}

static void test_untrusted_ack_reads_everything(void **state)
{
    char err[256] = "", *dir = mkdir_tmp();
    bg_audit_spool_t *sp = bg_audit_spool_open(dir, 0, 512, err, sizeof err);
    append_n(sp, 0, 30);
    got_t g = {0};
    assert_int_equal(bg_audit_spool_read(sp, 10, collect, &g), 10);
    assert_int_equal(bg_audit_spool_ack(sp), 0);
    bg_audit_spool_close(sp);
    char ack[4096], line[64] = "";
    snprintf(ack, sizeof ack, "%s/spool.ack", dir);
    FILE *f = fopen(ack, "r+");
    assert_non_null(f);
    assert_int_equal(fread(line, 1, 41, f), 41);
    line[12] ^= 1; /* one digit of the offset */
    rewind(f);
    assert_int_equal(fwrite(line, 1, 41, f), 41);
    fclose(f);
    expect_all_unread(dir, 0, 30);
    write_ack_file(dir, "99 0\n"); /* legacy, stale: past every segment */
    expect_all_unread(dir, 0, 30);
    /* A line of today's width whose CRC field no longer reads as hex is no
     * position either: not taken for a legacy line, whose digits nothing
     * checks. */
    static const char damaged[] = "0000000001 00000000000000000026 zzzzzzzz\n";
    uint32_t aseg = 0;
    uint64_t aoff = 0;
    assert_int_equal(sizeof damaged - 1, 41);
    assert_int_equal(bg_audit_spool_parse_ack(damaged, sizeof damaged - 1, &aseg, &aoff), 0);
    write_ack_file(dir, damaged);
    expect_all_unread(dir, 0, 30);
    rm_rf(dir);
    free(dir);
}

/* A record of BG_AUDIT_SPOOL_MAX_RECORD bytes, the most a frame holds, is
 * appended and read back whole; one byte more is refused at the append,
 * not written as a frame the reader would skip as damage. */
static void test_largest_record_round_trips(void **state)
{
    char err[256] = "", *dir = mkdir_tmp();
    bg_audit_spool_t *sp = bg_audit_spool_open(dir, 0, 0, err, sizeof err);
    assert_non_null(sp);
    uint8_t *big = malloc(BG_AUDIT_SPOOL_MAX_RECORD + 1);
    assert_non_null(big);
    memset(big, 'x', BG_AUDIT_SPOOL_MAX_RECORD + 1);
    assert_int_equal(bg_audit_spool_append(sp, big, BG_AUDIT_SPOOL_MAX_RECORD + 1), -1);
    assert_int_equal(bg_audit_spool_append(sp, big, BG_AUDIT_SPOOL_MAX_RECORD), 0);
    append_n(sp, 0, 1);
    size_t len[2] = {0, 0};
    int n = bg_audit_spool_read(sp, 2, record_len, len);
    assert_int_equal(n, 2);
    assert_int_equal(len[0], BG_AUDIT_SPOOL_MAX_RECORD);
    assert_int_equal(len[1], 5); /* "rec-0" */
    assert_int_equal(bg_audit_spool_corrupt(sp), 0);
    free(big);
    bg_audit_spool_close(sp);
    rm_rf(dir);
    free(dir);
}

/* Moving the acknowledged position needs no new disk block (a spool that
 * filled the disk must still drain): spool.ack is overwritten in place (the
 * same inode, no temp file), and works while files may not grow (the file
 * size limit stands in for a full disk: segments cannot be appended to). */
static void test_ack_without_disk_space(void **state)
{
    char err[256] = "", *dir = mkdir_tmp(), ack[4096];
    snprintf(ack, sizeof ack, "%s/spool.ack", dir);
    bg_audit_spool_t *sp = bg_audit_spool_open(dir, 0, 512, err, sizeof err);
    append_n(sp, 0, 40);
    got_t g = {0};
    assert_int_equal(bg_audit_spool_read(sp, 10, collect, &g), 10);
    assert_int_equal(bg_audit_spool_ack(sp), 0); /* spool.ack exists from here on */
    struct stat before, after;
    assert_int_equal(stat(ack, &before), 0);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)before.st_size; /* nothing may grow past today's ack file */
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc_append = bg_audit_spool_append(sp, (const uint8_t *)"rec-99", 6);
    int nread = bg_audit_spool_read(sp, 1000, collect, &g);
    int rc_ack = bg_audit_spool_ack(sp);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    assert_int_equal(rc_append, -1); /* the limit does hold */
    assert_int_equal(nread, 30);
    assert_int_equal(rc_ack, 0);
    assert_int_equal(stat(ack, &after), 0);
    assert_true(after.st_ino == before.st_ino);
    assert_true(bg_audit_spool_empty(sp));
    assert_int_equal(count_segments(dir), 0);
    bg_audit_spool_close(sp);
    expect_all_unread(dir, 0, 0);
    rm_rf(dir);
    free(dir);
}

/* A spool drained to its end, then a clean stop: spool.ack names the next
 * segment to be written and the directory has none. The next process must
 * not number its segments below that position, or a later restart during an
 * outage would take the stale position for real and skip them. */
static void test_stale_ack_after_full_drain(void **state)
{
    char err[256] = "", *dir = mkdir_tmp();
    bg_audit_spool_t *sp = bg_audit_spool_open(dir, 0, 512, err, sizeof err);
    append_n(sp, 0, 40); /* several segments */
    got_t g = {0};
    assert_int_equal(bg_audit_spool_read(sp, 1000, collect, &g), 40);
    assert_int_equal(bg_audit_spool_ack(sp), 0);
    assert_int_equal(count_segments(dir), 0);
    bg_audit_spool_close(sp); /* clean stop */
    sp = bg_audit_spool_open(dir, 0, 512, err, sizeof err);
    append_n(sp, 100, 140); /* an outage: several segments again */
    bg_audit_spool_close(sp); /* restart before any drain */
    expect_all_unread(dir, 100, 140);
    rm_rf(dir);
    free(dir);
}

/* Killed after deleting a drained segment but before persisting the position
 * past it: spool.ack still names the deleted segment with an offset into it.
 * Records written after the restart must not be skipped by that offset, even
 * across one more restart before a drain. */
static void test_ack_naming_a_deleted_segment(void **state)
{
    char err[256] = "", *dir = mkdir_tmp();
    write_ack_file(dir, "1 300\n"); /* segment 1 is gone */
    bg_audit_spool_t *sp = bg_audit_spool_open(dir, 0, 512, err, sizeof err);
    assert_non_null(sp);
    append_n(sp, 0, 30);
    bg_audit_spool_close(sp);
    expect_all_unread(dir, 0, 30);
    /* An offset past the end of an existing segment means it was read. */
    rm_rf(dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    sp = bg_audit_spool_open(dir, 0, 0, err, sizeof err);
    append_n(sp, 0, 5);
    bg_audit_spool_close(sp);
    write_ack_file(dir, "1 999999\n");
    sp = bg_audit_spool_open(dir, 0, 0, err, sizeof err);
    append_n(sp, 5, 8);
    bg_audit_spool_close(sp);
    expect_all_unread(dir, 5, 8);
    rm_rf(dir);
    free(dir);
}

static void test_truncated_tail_and_flipped_byte(void **state)
{
    char err[256] = "", *dir = mkdir_tmp(), p[4096];
    bg_audit_spool_t *sp = bg_audit_spool_open(dir, 0, 1 << 20, err, sizeof err);
    append_n(sp, 0, 10); /* one segment, frames of 8 + 5 bytes */
    bg_audit_spool_close(sp);
    seg_path(dir, 1, p, sizeof p);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    /* crash mid-write: the last frame is cut in half */
    assert_int_equal(truncate(p, st.st_size - 3), 0);
    /* a flipped byte in the payload of record 4 */
    int fd = open(p, O_RDWR);
    off_t off = 4 * 13 + 8 + 2;
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= 0x20;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);

    sp = bg_audit_spool_open(dir, 0, 1 << 20, err, sizeof err);
    append_n(sp, 10, 12); /* goes to segment 2 */
    got_t g = {0};
    assert_int_equal(bg_audit_spool_read(sp, 1000, collect, &g), 10);
    int want[] = {0, 1, 2, 3, 5, 6, 7, 8, 10, 11};
    for (int i = 0; i < 10; i++)
        assert_int_equal(g.vals[i], want[i]);
    assert_int_equal(bg_audit_spool_corrupt(sp), 2);
    /* a rewind re-reads but does not count the damage twice */
    bg_audit_spool_rewind(sp);
    g.n = 0;
    assert_int_equal(bg_audit_spool_read(sp, 1000, collect, &g), 10);
    assert_int_equal(bg_audit_spool_corrupt(sp), 2);
    bg_audit_spool_close(sp);
    rm_rf(dir);
    free(dir);
}

/* A corrupt length field (pointing far past the end) must not hide the
 * frames after it. */
static void test_scan_bad_length_resync(void **state)
{
    uint8_t buf[256];
    size_t len = 0;
    for (int i = 0; i < 3; i++) {
        char r[16];
        int n = snprintf(r, sizeof r, "rec-%d", i);
        bg_audit_spool_frame(buf + len, (const uint8_t *)r, (uint32_t)n);
        memcpy(buf + len + 8, r, (size_t)n);
        len += 8 + (size_t)n;
    }
    buf[13 + 2] = 0x7f; /* record 1: length 0x7f0005 */
    got_t g = {0};
    assert_int_equal(bg_audit_spool_scan(buf, len, collect, count_bad, &g), len);
    assert_int_equal(g.bad, 1);
    assert_int_equal(g.n, 2);
    assert_int_equal(g.vals[0], 0);
    assert_int_equal(g.vals[1], 2);
    /* zero bytes never parse as records */
    uint8_t zeros[64] = {0};
    g.n = 0;
    assert_int_equal(bg_audit_spool_scan(zeros, sizeof zeros, collect, NULL, &g), sizeof zeros);
    assert_int_equal(g.n, 0);
}

static void test_full_spool_refuses(void **state)
{
    char err[256] = "", *dir = mkdir_tmp();
    bg_audit_spool_t *sp = bg_audit_spool_open(dir, 200, 1 << 20, err, sizeof err);
    int ok = 0;
    for (int i = 0; i < 100; i++)
        ok += bg_audit_spool_append(sp, (const uint8_t *)"rec-1", 5) == 0;
    assert_int_equal(ok, 200 / 13);
    assert_true(bg_audit_spool_bytes(sp) <= 200);
    got_t g = {0};
    assert_int_equal(bg_audit_spool_read(sp, 5, collect, &g), 5);
    bg_audit_spool_close(sp);
    /* unwritable location: open fails with a message */
    sp = bg_audit_spool_open("/proc/bg-no-such/spool", 0, 0, err, sizeof err);
    assert_null(sp);
    assert_true(strlen(err) > 0);
    rm_rf(dir);
    free(dir);
}

static void touch(const char *dir, const char *name)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("not a segment", f);
    fclose(f);
}

/* Stray files beside the segments are not segments: a backup copy, a
 * negative number, a number that does not fit (or whose next one would
 * wrap), something after ".seg", a number not written as busgate writes
 * it. Before, "spool-4294967295.seg.bak" counted as segment 4294967295 and
 * opening the spool never returned (the last segment + 1 wrapped to 0).
 * An empty file with a far segment number makes nothing walk through
 * every number below it either. The real segments are still drained. */
static void test_stray_names_ignored(void **state)
{
    char err[256] = "", *dir = mkdir_tmp(), p[4096];
    bg_audit_spool_t *sp = bg_audit_spool_open(dir, 0, 512, err, sizeof err);
    append_n(sp, 0, 200); /* several segments */
    bg_audit_spool_close(sp);
    int real = count_segments(dir);
    assert_true(real > 2);
    static const char *const stray[] = {
        "spool-4294967295.seg.bak", "spool--1.seg",      "spool-4294967295.seg",
        "spool-4294967296.seg",     "spool-99999999999.seg", "spool-000002.segment",
        "spool-2.seg",              "spool-+00003.seg",  "spool- 00004.seg",
        "spool-000002.seg.unreadable", "spool-000002.seg.unreadable.1"};
    for (size_t i = 0; i < sizeof stray / sizeof stray[0]; i++)
        touch(dir, stray[i]);
    snprintf(p, sizeof p, "%s/spool-2000000000.seg", dir); /* far, and empty */
    fclose(fopen(p, "w"));
    alarm(20); /* the old code hangs: fail instead */
    sp = bg_audit_spool_open(dir, 0, 512, err, sizeof err);
    assert_non_null(sp);
    got_t g = {0};
    assert_int_equal(bg_audit_spool_read(sp, 4096, collect, &g), 200);
    for (int i = 0; i < 200; i++)
        assert_int_equal(g.vals[i], i);
    assert_int_equal(g.bad, 0);
    assert_int_equal(bg_audit_spool_ack(sp), 0);
    assert_true(bg_audit_spool_empty(sp));
    append_n(sp, 200, 205); /* and the spool goes on after the far one */
    g.n = 0;
    assert_int_equal(bg_audit_spool_read(sp, 4096, collect, &g), 5);
    assert_int_equal(g.vals[0], 200);
    bg_audit_spool_close(sp);
    alarm(0);
    for (size_t i = 0; i < sizeof stray / sizeof stray[0]; i++) { /* left alone */
        snprintf(p, sizeof p, "%s/%s", dir, stray[i]);
        assert_int_equal(access(p, F_OK), 0);
    }
    uint32_t n = 0;
    assert_int_equal(bg_audit_spool_seg_no("spool-000007.seg", &n), 1);
    assert_int_equal(n, 7);
    assert_int_equal(bg_audit_spool_seg_no("spool-1234567.seg", &n), 1);
    assert_int_equal(n, 1234567);
    for (size_t i = 0; i < sizeof stray / sizeof stray[0]; i++)
        assert_int_equal(bg_audit_spool_seg_no(stray[i], &n), 0);
    assert_int_equal(bg_audit_spool_seg_no("spool-000000.seg", &n), 0);
    rm_rf(dir);
    free(dir);
}

/* ---- resync cost (review: a 2 MiB segment of "00 00 0f 00" repeated took
 * 1 min 40 s of CPU to scan: a CRC of up to 1 MiB at every offset) ---- */

/* Appends one frame of payload p[0..n) to buf at *len. */
static void put_frame(uint8_t *buf, size_t *len, const void *p, size_t n)
{
    bg_audit_spool_frame(buf + *len, p, (uint32_t)n);
    memcpy(buf + *len + BG_AUDIT_SPOOL_HDR, p, n);
    *len += BG_AUDIT_SPOOL_HDR + n;
}

/* Appends a record as the pipeline spools one: [u16 key length][session
 * id][event JSON], the JSON padded by pad bytes of detail text. */
static void put_event(uint8_t *buf, size_t *len, int seq, size_t pad)
{
    static char p[BG_AUDIT_SPOOL_MAX_RECORD];
    char key[40];
    int kl = snprintf(key, sizeof key, "5f2c0e1a-77b3-4d21-9a0e-%012d", seq);
    p[0] = (char)kl;
    p[1] = 0;
    memcpy(p + 2, key, (size_t)kl);
    size_t n = 2 + (size_t)kl;
    n += (size_t)snprintf(p + n, sizeof p - n,
                          "{\"event_id\":\"e-%d\",\"kind\":\"decision\",\"seq\":%d,\"detail\":\"",
                          seq, seq);
    memset(p + n, 'd', pad);
    n += pad;
    n += (size_t)snprintf(p + n, sizeof p - n, "\"}");
    put_frame(buf, len, p, n);
}

typedef struct seqs_s {
    int n, bad;
    int v[4096];
} seqs_t;

static int collect_seq(void *arg, const uint8_t *p, size_t len, size_t off)
{
    seqs_t *s = arg;
    const char *k = memmem(p, len, "\"seq\":", 6);
    assert_non_null(k);
    assert_true(s->n < 4096);
    s->v[s->n++] = atoi(k + 6);
    return 0;
}

static void count_seq_bad(void *arg, size_t off, size_t len) { ((seqs_t *)arg)->bad++; }

/* The most the scan of len bytes may spend on CRCs: the records it finds
 * (at most len) and the resync budget. */
static uint64_t work_bound(size_t len)
{
    return BG_AUDIT_SPOOL_RESYNC_BASE + (uint64_t)(BG_AUDIT_SPOOL_RESYNC_PER_BYTE + 1) * len;
}

/* Damage whose bytes read as a length in range at most offsets costs a
 * bounded amount of CRC work (counted, not timed), and the records after it
 * are still found. On the old code the first case alone ran about 7 GiB of
 * CRC, the reported one (2 MiB of 00 00 0f 00) about 250 GiB. */
static void test_resync_work_bounded(void **state)
{
    size_t cap = (2u << 20) + (64u << 10), len;
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);
    seqs_t *s = calloc(1, sizeof *s);
    /* 512 KiB of "00 00 01 00": a 64 KiB length at every fourth offset */
    len = 512u << 10;
    for (size_t i = 0; i < len; i += 4)
        memcpy(buf + i, "\x00\x00\x01\x00", 4);
    uint64_t w0 = bg_audit_spool_crc_work();
    assert_int_equal(bg_audit_spool_scan(buf, len, collect_seq, count_seq_bad, s), len);
    assert_true(bg_audit_spool_crc_work() - w0 <= work_bound(len));
    assert_int_equal(s->n, 0);
    /* the reported segment: 2 MiB of "00 00 0f 00" (960 KiB lengths), here
     * followed by ten records, which are still found */
    len = 2u << 20;
    for (size_t i = 0; i < len; i += 4)
        memcpy(buf + i, "\x00\x00\x0f\x00", 4);
    for (int i = 0; i < 10; i++)
        put_event(buf, &len, i, 200);
    memset(s, 0, sizeof *s);
    w0 = bg_audit_spool_crc_work();
    assert_int_equal(bg_audit_spool_scan(buf, len, collect_seq, count_seq_bad, s), len);
    assert_true(bg_audit_spool_crc_work() - w0 <= work_bound(len));
    assert_true(s->n >= 9); /* the first may fall to the budget; none after it */
    for (int i = 0; i < s->n; i++)
        assert_int_equal(s->v[i], 10 - s->n + i);
    /* nor is such an end taken for an append cut short: at most one frame is */
    assert_false(bg_audit_spool_torn(buf, 2u << 20));
    free(s);
    free(buf);
}

/* Damage as crashes and bad disks leave it (a torn append, a flipped bit in
 * a length, in a CRC and in a payload, a zeroed block, a run of random
 * bytes) is skipped region by region, and every record outside the damage
 * is found, a 900 KiB one too: the budget does not cost real damage a
 * record. */
static void test_real_damage_keeps_later_records(void **state)
{
    size_t cap = 4u << 20, len = 0, at[64];
    uint8_t *buf = calloc(1, cap);
    assert_non_null(buf);
    seqs_t *s = calloc(1, sizeof *s);
    for (int i = 0; i < 60; i++) {
        at[i] = len;
        if (i == 31) { /* random bytes between two records (a stray block) */
            uint32_t x = 2463534242u;
            for (int k = 0; k < (64 << 10); k++) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                buf[len++] = (uint8_t)x;
            }
            at[i] = len;
        }
        put_event(buf, &len, i, i == 40 ? 900u << 10 : (size_t)(100 + 37 * i));
    }
    /* 5: a torn append (its second half is missing, the next record follows) */
    memmove(buf + at[5] + (at[6] - at[5]) / 2, buf + at[6], len - at[6]);
    size_t cut = (at[6] - at[5]) - (at[6] - at[5]) / 2;
    len -= cut;
    for (int i = 6; i < 60; i++)
        at[i] -= cut;
    buf[at[12] + 2] ^= 0x08;    /* 12: length field now 512 KiB longer */
    buf[at[20] + 5] ^= 0x01;    /* 20: a bit of its CRC */
    buf[at[25] + 100] ^= 0x40;  /* 25: a bit of its JSON */
    memset(buf + at[50], 0, at[51] - at[50]); /* 50: zeroed */
    uint64_t w0 = bg_audit_spool_crc_work();
    assert_int_equal(bg_audit_spool_scan(buf, len, collect_seq, count_seq_bad, s), len);
    assert_true(bg_audit_spool_crc_work() - w0 <= work_bound(len));
    int want = 0, k = 0;
    for (int i = 0; i < 60; i++) {
        if (i == 5 || i == 12 || i == 20 || i == 25 || i == 50)
            continue;
        assert_true(k < s->n);
        assert_int_equal(s->v[k++], i);
        want++;
    }
    assert_int_equal(s->n, want);
    assert_int_equal(s->bad, 6); /* five damaged records and the random run */
    free(s);
    free(buf);
}

static int count_rec(void *arg, const uint8_t *p, size_t len, size_t off)
{
    ++*(int *)arg;
    return 0;
}

/* The daemon reads a segment in batches (one scan each): the budget is the
 * segment's, not each batch's, or damage between short batches would get a
 * fresh allowance every time. A segment of small records each followed by
 * four bytes that read as a 128 KiB length, read 8 records at a time. */
static void test_read_batches_share_budget(void **state)
{
    char err[256] = "", *dir = mkdir_tmp(), p[4096];
    size_t units = 20000, len = 0;
    uint8_t *buf = malloc(units * 17);
    assert_non_null(buf);
    for (size_t i = 0; i < units; i++) {
        char r[8];
        snprintf(r, sizeof r, "r%04zu", i % 10000);
        put_frame(buf, &len, r, 5);
        memcpy(buf + len, "\x00\x00\x02\x00", 4);
        len += 4;
    }
    seg_path(dir, 1, p, sizeof p);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    fclose(f);
    bg_audit_spool_t *sp = bg_audit_spool_open(dir, 0, 1 << 20, err, sizeof err);
    assert_non_null(sp);
    uint64_t w0 = bg_audit_spool_crc_work();
    int n = 0;
    for (size_t round = 0; round < units && !bg_audit_spool_empty(sp); round++)
        assert_true(bg_audit_spool_read(sp, 8, count_rec, &n) >= 0);
    assert_true(bg_audit_spool_empty(sp));
    assert_true(bg_audit_spool_crc_work() - w0 <= work_bound(len));
    assert_true(n > 0);
    bg_audit_spool_close(sp);
    rm_rf(dir);
    free(dir);
    free(buf);
}

/* An unparsed end is "an append cut short" only when it could be one: a
 * partial header, or a length in range that runs past the end. */
static void test_torn_tail_classified(void **state)
{
    uint8_t b[64] = {0};
    assert_false(bg_audit_spool_torn(b, 0));
    assert_true(bg_audit_spool_torn(b, 3));
    b[0] = 100; /* a 100-byte record, 50 of its 108 bytes there */
    assert_true(bg_audit_spool_torn(b, 50));
    b[0] = 20; /* a whole frame's room, yet no frame: damage */
    assert_false(bg_audit_spool_torn(b, 28));
    b[0] = 0; /* length 0 is never written */
    assert_false(bg_audit_spool_torn(b, 20));
    b[3] = 0x10; /* past 1 MiB */
    assert_false(bg_audit_spool_torn(b, 20));
}


/* Sum of the sizes of the segments in dir: what bytes must say. */
static uint64_t disk_bytes(const char *dir)
{
    uint32_t *v;
    size_t n;
    uint64_t sum = 0;
    char p[4096];
    struct stat st;
    assert_int_equal(bg_audit_spool_segs(dir, &v, &n), 0);
    for (size_t i = 0; i < n; i++) {
        seg_path(dir, (int)v[i], p, sizeof p);
        if (stat(p, &st) == 0)
            sum += (uint64_t)st.st_size;
    }
    free(v);
    return sum;
}

/* A segment an operator deletes while the spool is open is read past, and
 * its bytes leave the backlog: once the rest is read the spool is empty and
 * counts only what is on disk. Before, its size stayed in the unread count
 * for good (the spool never empty: every live event spooled, the drain
 * spinning) and in bytes (against spool_max_bytes). Also after a rewind,
 * and for a segment deleted behind the read cursor. */
static void test_deleted_segment_leaves_no_backlog(void **state)
{
    char err[256] = "", *dir = mkdir_tmp(), p[4096];
    bg_audit_spool_t *sp = bg_audit_spool_open(dir, 0, 98, err, sizeof err);
    assert_non_null(sp);
    append_n(sp, 10, 50); /* 7 records of 14 bytes a segment: 10-16, 17-23, ... 45-49 */
    assert_int_equal(count_segments(dir), 6);
    got_t g = {0};
    assert_int_equal(bg_audit_spool_read(sp, 3, collect, &g), 3); /* in segment 1 */
    seg_path(dir, 3, p, sizeof p);
    assert_int_equal(unlink(p), 0); /* ahead of the cursor */
    bg_audit_spool_rewind(sp);      /* a failed drain */
    g.n = 0;
    assert_int_equal(bg_audit_spool_read(sp, 4096, collect, &g), 33);
    assert_true(bg_audit_spool_empty(sp));
    assert_int_equal(g.vals[13], 23);
    assert_int_equal(g.vals[14], 31); /* 24..30 were in segment 3 */
    assert_int_equal(bg_audit_spool_bytes(sp), disk_bytes(dir));
    seg_path(dir, 1, p, sizeof p);
    assert_int_equal(unlink(p), 0); /* behind it, before the ack */
    bg_audit_spool_rewind(sp);
    g.n = 0;
    assert_int_equal(bg_audit_spool_read(sp, 4096, collect, &g), 26);
    assert_true(bg_audit_spool_empty(sp));
    assert_int_equal(bg_audit_spool_ack(sp), 0);
    assert_true(bg_audit_spool_empty(sp));
    assert_int_equal(bg_audit_spool_bytes(sp), 0);
    assert_int_equal(count_segments(dir), 0);
    append_n(sp, 50, 52); /* and it goes on */
    g.n = 0;
    assert_int_equal(bg_audit_spool_read(sp, 4096, collect, &g), 2);
    assert_int_equal(g.vals[0], 50);
    bg_audit_spool_close(sp);
    rm_rf(dir);
    free(dir);
}

/* The active segment deleted under the writer: appends would go on into a
 * file no reader can open, neither drained nor counted. The check finds it,
 * reports the records of it not yet acknowledged as lost, and the next
 * append starts a new segment that is read as usual. */
static void test_deleted_active_segment_counted_lost(void **state)
{
    char err[256] = "", *dir = mkdir_tmp(), p[4096];
    bg_audit_spool_t *sp = bg_audit_spool_open(dir, 0, 1 << 20, err, sizeof err);
    assert_non_null(sp);
    append_n(sp, 0, 5);
    assert_int_equal(bg_audit_spool_check(sp), 0); /* there: nothing lost */
    got_t g = {0};
    assert_int_equal(bg_audit_spool_read(sp, 2, collect, &g), 2);
    assert_int_equal(bg_audit_spool_ack(sp), 0); /* 0 and 1 delivered */
    seg_path(dir, 1, p, sizeof p);
    assert_int_equal(unlink(p), 0);
    append_n(sp, 5, 8);
    assert_int_equal(bg_audit_spool_check(sp), 6); /* 2..7 */
    assert_int_equal(bg_audit_spool_check(sp), 0); /* counted once */
    assert_true(bg_audit_spool_empty(sp));
    assert_int_equal(bg_audit_spool_bytes(sp), 0);
    append_n(sp, 8, 10);
    assert_int_equal(count_segments(dir), 1);
    g.n = 0;
    assert_int_equal(bg_audit_spool_read(sp, 4096, collect, &g), 2);
    assert_int_equal(g.vals[0], 8);
    assert_int_equal(g.vals[1], 9);
    assert_true(bg_audit_spool_empty(sp));
    bg_audit_spool_close(sp);
    rm_rf(dir);
    free(dir);
}

static int lines_with(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[2048];
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    if (f)
        fclose(f);
    return n;
}

/* A segment that cannot be read (here open(2) fails: a symbolic link to
 * itself stands in for EIO, or EACCES, which root would not get) held up
 * every segment after it for good, and nothing was logged. Now the records
 * before it are delivered, the read of it fails BG_AUDIT_SPOOL_READ_TRIES
 * times in a row (logged once, not at every try), then it is moved aside
 * under NAME.unreadable (logged, counted) and the rest is read. A directory
 * under a segment's name is moved aside at once. Neither name is taken for
 * a segment afterwards, after a reopen too. */
static void test_unreadable_segment_moved_aside(void **state)
{
    char err[256] = "", *dir = mkdir_tmp(), p[4096], q[4200], log[4200];
    bg_audit_spool_t *sp = bg_audit_spool_open(dir, 0, 98, err, sizeof err);
    append_n(sp, 10, 50); /* segments of records 10-16, 17-23, 24-30, 31-37, 38-44, 45-49 */
    bg_audit_spool_close(sp);
    seg_path(dir, 2, p, sizeof p);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(symlink("spool-000002.seg", p), 0); /* ELOOP */
    seg_path(dir, 4, p, sizeof p);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(log, sizeof log, "%s.log", dir);
    int lfd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(lfd >= 0);
    bg_log_set_fd(lfd);
    bg_log_set_level(BG_LOG_ERROR);
    sp = bg_audit_spool_open(dir, 0, 98, err, sizeof err);
    assert_non_null(sp);
    got_t g = {0};
    assert_int_equal(bg_audit_spool_read(sp, 4096, collect, &g), 7); /* up to segment 2 */
    assert_int_equal(bg_audit_spool_ack(sp), 0);
    for (unsigned i = 1; i < BG_AUDIT_SPOOL_READ_TRIES; i++) {
        assert_int_equal(bg_audit_spool_read(sp, 4096, collect, &g), -1);
        bg_audit_spool_rewind(sp);
        assert_int_equal(bg_audit_spool_unreadable(sp), 0);
    }
    /* moved aside: segment 3, then the directory is moved aside at once */
    assert_int_equal(bg_audit_spool_read(sp, 4096, collect, &g), 19);
    bg_log_set_level(BG_LOG_OFF);
    bg_log_set_fd(2);
    close(lfd);
    assert_int_equal(bg_audit_spool_unreadable(sp), 2);
    int want[] = {24, 25, 26, 27, 28, 29, 30, 38, 39};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_int_equal(g.vals[7 + i], want[i]);
    assert_int_equal(g.vals[7 + 18], 49);
    assert_true(bg_audit_spool_empty(sp));
    assert_int_equal(bg_audit_spool_ack(sp), 0);
    assert_true(bg_audit_spool_empty(sp));
    assert_int_equal(bg_audit_spool_bytes(sp), 0);
    /* one line when the reads start failing, one when it is moved aside */
    assert_int_equal(lines_with(log, "spool-000002.seg cannot be read"), 2);
    assert_int_equal(lines_with(log, "spool-000002.seg.unreadable"), 1);
    assert_int_equal(lines_with(log, "spool-000004.seg cannot be read (not a regular file)"), 1);
    for (int s = 2; s <= 4; s += 2) {
        struct stat st;
        seg_path(dir, s, p, sizeof p);
        snprintf(q, sizeof q, "%s.unreadable", p);
        assert_int_equal(lstat(p, &st), -1);
        assert_int_equal(lstat(q, &st), 0); /* kept for the operator */
    }
    append_n(sp, 50, 52);
    bg_audit_spool_close(sp);
    expect_all_unread(dir, 50, 52);
    unlink(log);
    rm_rf(dir);
    free(dir);
}

/* The highest segment number a name may carry (2^31 - 1) is on disk: the
 * next segment would get a number bg_audit_spool_seg_no rejects, invisible
 * after a restart (its events silently lost). The spool is refused with a
 * message instead. Below it the spool opens, fills the last number and then
 * refuses appends rather than start a segment past it. */
static void test_segment_numbers_used_up(void **state)
{
    char err[256] = "", *dir = mkdir_tmp(), p[4096];
    snprintf(p, sizeof p, "%s/spool-2147483646.seg", dir);
    fclose(fopen(p, "w"));
    bg_audit_spool_t *sp = bg_audit_spool_open(dir, 0, 98, err, sizeof err);
    assert_non_null(sp);
    int ok = 0;
    for (int i = 10; i < 30; i++)
        ok += bg_audit_spool_append(sp, (const uint8_t *)"rec-10", 6) == 0;
    assert_int_equal(ok, 7); /* one segment's worth, into 2147483647 */
    bg_audit_spool_close(sp);
    snprintf(p, sizeof p, "%s/spool-2147483647.seg", dir);
    assert_int_equal(access(p, F_OK), 0);
    assert_int_equal(count_segments(dir), 2);
    err[0] = '\0';
    assert_null(bg_audit_spool_open(dir, 0, 98, err, sizeof err));
    assert_non_null(strstr(err, "segment numbers used up"));
    rm_rf(dir);
    free(dir);
}

/* Running out of file descriptors (a flood of client connections) says
 * nothing about a segment: before, every failed open(2) with EMFILE counted
 * against it, and after BG_AUDIT_SPOOL_READ_TRIES drain rounds a healthy
 * segment was moved aside, its events never delivered. Now the read fails
 * (the drain tries again) as long as descriptors lack, however often, and
 * once they are back every record is read, nothing moved aside. */
static void test_descriptors_used_up_not_held_against_segment(void **state)
{
    char err[256] = "", *dir = mkdir_tmp();
    bg_audit_spool_t *sp = bg_audit_spool_open(dir, 0, 98, err, sizeof err);
    append_n(sp, 10, 38); /* segments 1..4: 10-16, 17-23, 24-30, 31-37 */
    bg_audit_spool_close(sp);
    sp = bg_audit_spool_open(dir, 0, 98, err, sizeof err);
    assert_non_null(sp);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    lim = old;
    lim.rlim_cur = 256;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &lim), 0);
    int fds[512], nf = 0, fd;
    while (nf < 512 && (fd = open("/dev/null", O_RDONLY)) >= 0)
        fds[nf++] = fd; /* every descriptor in use: open(2) fails with EMFILE */
    got_t g = {0};
    int fails = 0;
    for (unsigned i = 0; i < 2 * BG_AUDIT_SPOOL_READ_TRIES; i++) {
        fails += bg_audit_spool_read(sp, 4096, collect, &g) == -1;
        bg_audit_spool_rewind(sp);
    }
    while (nf > 0)
        close(fds[--nf]);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    assert_int_equal(fails, 2 * BG_AUDIT_SPOOL_READ_TRIES);
    assert_int_equal(bg_audit_spool_unreadable(sp), 0);
    assert_int_equal(g.n, 0);
    assert_int_equal(bg_audit_spool_read(sp, 4096, collect, &g), 28);
    for (int i = 0; i < 28; i++)
        assert_int_equal(g.vals[i], 10 + i);
    assert_int_equal(bg_audit_spool_unreadable(sp), 0);
    assert_int_equal(bg_audit_spool_ack(sp), 0);
    assert_true(bg_audit_spool_empty(sp));
    bg_audit_spool_close(sp);
    assert_int_equal(count_segments(dir), 0); /* all delivered, none moved aside */
    rm_rf(dir);
    free(dir);
}

/* The directory cannot be listed (out of descriptors) just when the read
 * steps past a missing segment, here one moved aside. Before, a failed
 * listing read as "no segment after it": the cursor jumped to the last
 * segment, and the acknowledgement after it passed (and later deleted)
 * every segment in between unread. Now the cursor stays (the read ends
 * there, later reads fail and the drain tries again), nothing is deleted,
 * and once the directory can be listed the segments in between are read. */
static void test_listing_failure_never_skips_segments(void **state)
{
    char err[256] = "", *dir = mkdir_tmp(), p[4096];
    bg_audit_spool_t *sp = bg_audit_spool_open(dir, 0, 98, err, sizeof err);
    append_n(sp, 10, 38); /* segments 1..4: 10-16, 17-23, 24-30, 31-37 */
    bg_audit_spool_close(sp);
    seg_path(dir, 2, p, sizeof p);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(mkdir(p, 0700), 0); /* moved aside at once */
    sp = bg_audit_spool_open(dir, 0, 98, err, sizeof err);
    assert_non_null(sp);
    got_t g = {0};
    bg_t_opendir_errno = EMFILE;
    assert_int_equal(bg_audit_spool_read(sp, 4096, collect, &g), 7); /* segment 1 */
    assert_int_equal(bg_audit_spool_ack(sp), 0);
    for (unsigned i = 0; i < BG_AUDIT_SPOOL_READ_TRIES; i++) {
        assert_int_equal(bg_audit_spool_read(sp, 4096, collect, &g), -1);
        bg_audit_spool_rewind(sp);
    }
    bg_t_opendir_errno = 0;
    for (int s = 3; s <= 4; s++) { /* nothing deleted meanwhile */
        seg_path(dir, s, p, sizeof p);
        assert_int_equal(access(p, F_OK), 0);
    }
    assert_int_equal(bg_audit_spool_read(sp, 4096, collect, &g), 14);
    assert_int_equal(g.n, 21);
    for (int i = 0; i < 7; i++)
        assert_int_equal(g.vals[i], 10 + i);
    for (int i = 7; i < 21; i++)
        assert_int_equal(g.vals[i], 17 + i); /* 24..37: only segment 2 is missing */
    assert_int_equal(bg_audit_spool_unreadable(sp), 1);
    assert_int_equal(bg_audit_spool_ack(sp), 0);
    assert_true(bg_audit_spool_empty(sp));
    bg_audit_spool_close(sp);
    rm_rf(dir);
    free(dir);
}

/* Moving a segment aside never replaces a file already under the name:
 * segment numbers can repeat (renumbered after the numbers ran out, a torn
 * spool.ack), and before, rename(2) silently replaced an earlier
 * NAME.unreadable whose events the operator had not recovered yet. The
 * segment takes the first free name of NAME.unreadable, NAME.unreadable.1,
 * ...; so too where RENAME_NOREPLACE is refused (link and unlink then).
 * Such names are never taken for a segment. */
static void test_move_aside_never_replaces(void **state)
{
    static const char old_text[] = "OLD EVENTS THE OPERATOR HAS NOT RECOVERED YET";
    for (int fallback = 0; fallback <= 1; fallback++) {
        char err[256] = "", *dir = mkdir_tmp(), p[4096], q[4200], buf[128];
        bg_audit_spool_t *sp = bg_audit_spool_open(dir, 0, 98, err, sizeof err);
        append_n(sp, 10, 31); /* segments 1..3: 10-16, 17-23, 24-30 */
        bg_audit_spool_close(sp);
        seg_path(dir, 2, p, sizeof p);
        for (int i = 0; i < 2; i++) { /* NAME.unreadable and NAME.unreadable.1 */
            snprintf(q, sizeof q, i ? "%s.unreadable.%d" : "%s.unreadable", p, i);
            FILE *f = fopen(q, "w");
            assert_non_null(f);
            fputs(old_text, f);
            fclose(f);
        }
        assert_int_equal(unlink(p), 0);
        assert_int_equal(symlink("spool-000002.seg", p), 0); /* ELOOP */
        sp = bg_audit_spool_open(dir, 0, 98, err, sizeof err);
        assert_non_null(sp);
        bg_t_rename_errno = fallback ? EINVAL : 0;
        got_t g = {0};
        assert_int_equal(bg_audit_spool_read(sp, 4096, collect, &g), 7);
        assert_int_equal(bg_audit_spool_ack(sp), 0);
        for (unsigned i = 1; i < BG_AUDIT_SPOOL_READ_TRIES; i++) {
            assert_int_equal(bg_audit_spool_read(sp, 4096, collect, &g), -1);
            bg_audit_spool_rewind(sp);
        }
        assert_int_equal(bg_audit_spool_read(sp, 4096, collect, &g), 7); /* segment 3 */
        bg_t_rename_errno = 0;
        assert_int_equal(g.vals[7], 24);
        assert_int_equal(bg_audit_spool_unreadable(sp), 1);
        for (int i = 0; i < 2; i++) { /* the earlier files untouched */
            snprintf(q, sizeof q, i ? "%s.unreadable.%d" : "%s.unreadable", p, i);
            FILE *f = fopen(q, "r");
            assert_non_null(f);
            assert_non_null(fgets(buf, sizeof buf, f));
            fclose(f);
            assert_string_equal(buf, old_text);
        }
        snprintf(q, sizeof q, "%s.unreadable.2", p);
        ssize_t n = readlink(q, buf, sizeof buf - 1);
        assert_int_equal(n, 16); /* the segment moved aside: the link itself */
        struct stat st;
        assert_int_equal(lstat(p, &st), -1);
        uint32_t seg;
        assert_int_equal(bg_audit_spool_seg_no("spool-000002.seg.unreadable.2", &seg), 0);
        assert_int_equal(bg_audit_spool_ack(sp), 0);
        bg_audit_spool_close(sp);
        assert_int_equal(count_segments(dir), 3); /* the three NAME.unreadable* only */
        rm_rf(dir);
        free(dir);
    }
}

/* Two segments that can be neither read nor moved aside are both skipped
 * and kept. Before, the spool remembered only the last one skipped: the
 * acknowledgement then deleted the first (its events never delivered,
 * nothing left for the operator to recover). */
static void test_two_skipped_segments_both_kept(void **state)
{
    char err[256] = "", *dir = mkdir_tmp(), p[4096];
    struct stat st;
    bg_audit_spool_t *sp = bg_audit_spool_open(dir, 0, 98, err, sizeof err);
    append_n(sp, 10, 38); /* segments 1..4: 10-16, 17-23, 24-30, 31-37 */
    bg_audit_spool_close(sp);
    for (int s = 2; s <= 3; s++) {
        seg_path(dir, s, p, sizeof p);
        assert_int_equal(unlink(p), 0);
        assert_int_equal(mkfifo(p, 0600), 0);
    }
    sp = bg_audit_spool_open(dir, 0, 98, err, sizeof err);
    assert_non_null(sp);
    bg_t_rename_errno = EROFS;
    got_t g = {0};
    assert_int_equal(bg_audit_spool_read(sp, 4096, collect, &g), 14); /* 1 and 4 */
    bg_t_rename_errno = 0;
    assert_int_equal(g.vals[7], 31);
    assert_int_equal(bg_audit_spool_unreadable(sp), 2);
    assert_int_equal(bg_audit_spool_ack(sp), 0);
    assert_true(bg_audit_spool_empty(sp));
    for (int s = 2; s <= 3; s++) {
        seg_path(dir, s, p, sizeof p);
        assert_int_equal(lstat(p, &st), 0);
    }
    bg_audit_spool_close(sp);
    rm_rf(dir);
    free(dir);
}

/* At most BG_AUDIT_SPOOL_SKIP_MAX segments are skipped (the renames fail
 * here); at the next one the read stops (the records before it delivered,
 * the skipped ones kept) rather than forget one that the acknowledgement
 * would then delete, and goes on once it can be moved aside. Before, the
 * read went on past any number of them. */
static void test_skipped_segments_never_deleted(void **state)
{
    enum { LAST = BG_AUDIT_SPOOL_SKIP_MAX + 3 }; /* 1 read, 2..LAST-1 FIFOs, LAST read */
    char err[256] = "", *dir = mkdir_tmp(), p[4096], q[4200];
    struct stat st;
    bg_audit_spool_t *sp = bg_audit_spool_open(dir, 0, 98, err, sizeof err);
    append_n(sp, 10, 10 + 7 * LAST); /* 7 records a segment: 10-16, 17-23, ... */
    bg_audit_spool_close(sp);
    for (int s = 2; s < LAST; s++) { /* not a regular file: moved aside at once */
        seg_path(dir, s, p, sizeof p);
        assert_int_equal(unlink(p), 0);
        assert_int_equal(mkfifo(p, 0600), 0);
    }
    sp = bg_audit_spool_open(dir, 0, 98, err, sizeof err);
    assert_non_null(sp);
    bg_t_rename_errno = EROFS;
    got_t g = {0};
    /* segment 1, then 2..SKIP_MAX+1 skipped; the next one stops the read */
    assert_int_equal(bg_audit_spool_read(sp, 4096, collect, &g), 7);
    assert_int_equal(bg_audit_spool_ack(sp), 0);
    assert_int_equal(bg_audit_spool_read(sp, 4096, collect, &g), -1);
    bg_audit_spool_rewind(sp);
    assert_int_equal(bg_audit_spool_unreadable(sp), BG_AUDIT_SPOOL_SKIP_MAX);
    for (int s = 2; s < LAST; s++) { /* every one kept */
        seg_path(dir, s, p, sizeof p);
        assert_int_equal(lstat(p, &st), 0);
        assert_true(S_ISFIFO(st.st_mode));
    }
    bg_t_rename_errno = 0;
    assert_int_equal(bg_audit_spool_read(sp, 4096, collect, &g), 7); /* segment LAST */
    assert_int_equal(g.n, 14);
    for (int i = 0; i < 7; i++) {
        assert_int_equal(g.vals[i], 10 + i);
        assert_int_equal(g.vals[7 + i], 10 + 7 * (LAST - 1) + i);
    }
    assert_int_equal(bg_audit_spool_unreadable(sp), BG_AUDIT_SPOOL_SKIP_MAX + 1);
    assert_int_equal(bg_audit_spool_ack(sp), 0);
    assert_true(bg_audit_spool_empty(sp));
    bg_audit_spool_close(sp);
    for (int s = 2; s < LAST - 1; s++) { /* the skipped ones: still there */
        seg_path(dir, s, p, sizeof p);
        assert_int_equal(lstat(p, &st), 0);
    }
    seg_path(dir, LAST - 1, p, sizeof p); /* the one the read stopped at: moved aside */
    snprintf(q, sizeof q, "%s.unreadable", p);
    assert_int_equal(lstat(p, &st), -1);
    assert_int_equal(lstat(q, &st), 0);
    rm_rf(dir);
    free(dir);
}

int main(void)
{
    bg_log_set_level(BG_LOG_OFF);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_known),
        cmocka_unit_test(test_write_read_order_ack),
        cmocka_unit_test(test_restart_without_ack),
        cmocka_unit_test(test_drain_old_segments_frees_them),
        cmocka_unit_test(test_untrusted_ack_reads_everything),
        cmocka_unit_test(test_largest_record_round_trips),
        cmocka_unit_test(test_ack_without_disk_space),
        cmocka_unit_test(test_stale_ack_after_full_drain),
        cmocka_unit_test(test_ack_naming_a_deleted_segment),
        cmocka_unit_test(test_truncated_tail_and_flipped_byte),
        cmocka_unit_test(test_scan_bad_length_resync),
        cmocka_unit_test(test_full_spool_refuses),
        cmocka_unit_test(test_stray_names_ignored),
        cmocka_unit_test(test_resync_work_bounded),
        cmocka_unit_test(test_real_damage_keeps_later_records),
        cmocka_unit_test(test_read_batches_share_budget),
        cmocka_unit_test(test_torn_tail_classified),
        cmocka_unit_test(test_deleted_segment_leaves_no_backlog),
        cmocka_unit_test(test_deleted_active_segment_counted_lost),
        cmocka_unit_test(test_unreadable_segment_moved_aside),
        cmocka_unit_test(test_segment_numbers_used_up),
        cmocka_unit_test(test_descriptors_used_up_not_held_against_segment),
        cmocka_unit_test(test_listing_failure_never_skips_segments),
        cmocka_unit_test(test_move_aside_never_replaces),
        cmocka_unit_test(test_two_skipped_segments_both_kept),
        cmocka_unit_test(test_skipped_segments_never_deleted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
