/* JSON-lines file sink: each batch is one writev(2) in O_APPEND mode, so
 * concurrent tailers never see half a line from us; fdatasync at most every
 * 100 ms (poll) and on flush, trading at most 100 ms of events on power loss
 * for not paying a disk sync per event. */
#include "audit/audit_sink.h"

#include "broker/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define BG_AUDIT_FILE_SYNC_MS 100
#define BG_AUDIT_FILE_IOV 128 /* 64 records: line + newline each */

typedef struct bg_audit_file_s {
    bg_audit_sink_t base;
    int fd;
    int dirty;
    int torn; /* a partial line could be neither removed nor ended: end it first */
    int64_t last_sync;
    char *path;
} bg_audit_file_t;

static int64_t bg_audit__file_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int bg_audit__file_sync(bg_audit_file_t *f)
{
    if (!f->dirty)
        return 0;
    f->last_sync = bg_audit__file_now();
    if (fdatasync(f->fd) != 0) {
        bg_log_error("audit", "audit file %s: fdatasync: %s", f->path, strerror(errno));
        return -1;
    }
    f->dirty = 0;
    return 0;
}

/* Removes the partial line a short write left (its last `partial` bytes);
 * when that fails, it is ended with '\n' now or, failing that too, before
 * the next write, so no later line is ever glued onto it. */
static void bg_audit__file_untear(bg_audit_file_t *f, size_t partial)
{
    off_t end = lseek(f->fd, 0, SEEK_END);
    if (end >= (off_t)partial && ftruncate(f->fd, end - (off_t)partial) == 0)
        return;
    f->torn = write(f->fd, "\n", 1) != 1;
    bg_log_error("audit", "audit file %s: a partial line stays (%s)", f->path,
                 f->torn ? "not ended yet" : "ended");
}

/* Writes recs[0..n) (n <= 64) as one writev; returns how many lines made it
 * whole. A short write's partial line is removed again (or ended, see
 * bg_audit__file_untear); the records that did not make it are reported
 * failed and go to the spool. */
static size_t bg_audit__file_chunk(bg_audit_file_t *f, const bg_audit_rec_t *recs, size_t n)
{
    struct iovec iov[BG_AUDIT_FILE_IOV];
    size_t lens[64], total = 0;
    if (f->torn) {
        if (write(f->fd, "\n", 1) != 1) {
            bg_log_error("audit", "audit file %s: write: %s", f->path, strerror(errno));
            return 0;
        }
        f->torn = 0;
    }
    for (size_t i = 0; i < n; i++) {
        size_t jl;
        const char *j = bg_audit_rec_json(&recs[i], &jl);
        iov[2 * i] = (struct iovec){(void *)(j ? j : ""), j ? jl : 0};
        iov[2 * i + 1] = (struct iovec){"\n", 1};
        lens[i] = (j ? jl : 0) + 1;
        total += lens[i];
    }
    ssize_t w = writev(f->fd, iov, (int)(2 * n));
    if (w == (ssize_t)total)
        return n;
    size_t ok = 0, acc = 0;
    while (w > 0 && ok < n && acc + lens[ok] <= (size_t)w)
        acc += lens[ok++];
    if (w > 0 && acc < (size_t)w)
        bg_audit__file_untear(f, (size_t)w - acc);
    bg_log_error("audit", "audit file %s: write: %s", f->path, w < 0 ? strerror(errno) : "short");
    return ok;
}

static size_t bg_audit__file_write(bg_audit_sink_t *s, const bg_audit_rec_t *recs, size_t n)
{
    bg_audit_file_t *f = (bg_audit_file_t *)s;
    size_t done = 0;
    while (done < n) {
        size_t k = n - done > 64 ? 64 : n - done;
        size_t ok = bg_audit__file_chunk(f, recs + done, k);
        f->dirty |= ok > 0;
        for (size_t i = 0; i < ok; i++)
            s->cb.delivered(s->cb.core, &recs[done + i]);
        done += ok;
        if (ok < k)
            break;
    }
    return done;
}

static int bg_audit__file_flush(bg_audit_sink_t *s, int timeout_ms)
{
    return bg_audit__file_sync((bg_audit_file_t *)s);
}

static void bg_audit__file_poll(bg_audit_sink_t *s)
{
    bg_audit_file_t *f = (bg_audit_file_t *)s;
    if (f->dirty && bg_audit__file_now() - f->last_sync >= BG_AUDIT_FILE_SYNC_MS)
        bg_audit__file_sync(f);
}

static void bg_audit__file_close(bg_audit_sink_t *s)
{
    bg_audit_file_t *f = (bg_audit_file_t *)s;
    bg_audit__file_sync(f);
    close(f->fd);
    free(f->path);
    free(f);
}

bg_audit_sink_t *bg_audit_file_sink_new(const char *path, char *err, size_t errlen)
{
    bg_audit_file_t *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        snprintf(err, errlen, "audit file: out of memory");
        free(f);
        return NULL;
    }
    f->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (f->fd < 0) {
        snprintf(err, errlen, "audit file %s: %s", path, strerror(errno));
        free(f->path);
        free(f);
        return NULL;
    }
    f->base.name = "file";
    f->base.write = bg_audit__file_write;
    f->base.flush = bg_audit__file_flush;
    f->base.poll = bg_audit__file_poll;
    f->base.close = bg_audit__file_close;
    f->last_sync = bg_audit__file_now();
    return &f->base;
}
