#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* splice, F_SETPIPE_SZ */
#endif
#include "broker/util_splice.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#define BG_UTIL_SPLICE__PIPE_WANT (256u << 10) /* pipe size asked for (best effort) */
/* A smaller pipe (the per-user pipe page limit reached: new pipes get two
 * pages) would cost more system calls than the copying relay it replaces. */
#define BG_UTIL_SPLICE__PIPE_MIN (64u << 10)
#define BG_UTIL_SPLICE__ROUND_MAX (4u << 20) /* bytes per callback before yielding */

struct bg_util_splice_s {
    struct event_base *base;
    struct event *rd, *wr; /* one-shot: source readable, destination writable */
    int pipe_r, pipe_w;
    size_t pipe_cap;
    int src, dst;
    uint64_t left;   /* still to read from the source */
    size_t in_pipe;  /* read from the source, not yet written to the destination */
    uint64_t moved;  /* written to the destination */
    int busy;
    bg_util_splice_done_fn done;
    void *arg;
    int wr_timeout_ms; /* longest wait for the destination to take bytes; 0: none */
};

static void bg_util_splice__close_pipe(bg_util_splice_t *sp)
{
    if (sp->pipe_r >= 0)
        close(sp->pipe_r);
    if (sp->pipe_w >= 0)
        close(sp->pipe_w);
    sp->pipe_r = sp->pipe_w = -1;
}

static int bg_util_splice__open_pipe(bg_util_splice_t *sp)
{
    if (sp->pipe_r >= 0)
        return 0;
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
        return -1;
    sp->pipe_r = fds[0];
    sp->pipe_w = fds[1];
    (void)fcntl(sp->pipe_w, F_SETPIPE_SZ, (int)BG_UTIL_SPLICE__PIPE_WANT); /* may be refused */
    int cap = fcntl(sp->pipe_w, F_GETPIPE_SZ);
    if (cap < (int)BG_UTIL_SPLICE__PIPE_MIN) {
        bg_util_splice__close_pipe(sp);
        errno = ENOBUFS;
        return -1;
    }
    sp->pipe_cap = (size_t)cap;
    return 0;
}

static void bg_util_splice__stop_events(bg_util_splice_t *sp)
{
    if (sp->rd) {
        event_free(sp->rd);
        sp->rd = NULL;
    }
    if (sp->wr) {
        event_free(sp->wr);
        sp->wr = NULL;
    }
}

static void bg_util_splice__finish(bg_util_splice_t *sp, bg_util_splice_result_t rc, int err)
{
    bg_util_splice__stop_events(sp);
    sp->busy = 0;
    /* The pipe goes too (bytes of a failed relay must not lead the next
     * one): idle connections keep no descriptors or pipe pages, and a new
     * pipe per relay of 64 KiB or more costs a few system calls. */
    bg_util_splice__close_pipe(sp);
    sp->in_pipe = 0;
    sp->done(sp->arg, rc, err, sp->moved); /* may free sp: nothing after this */
}

/* One splice(2) of up to len bytes from `from` to `to`: > 0 bytes moved, 0
 * end of stream, -1 when the relay now waits for ev (added) or has finished
 * with `fail` (the caller returns at once then: done may have freed sp). */
static ssize_t bg_util_splice__step(bg_util_splice_t *sp, int from, int to, size_t len,
                                    struct event *ev, bg_util_splice_result_t fail)
{
    for (;;) {
        ssize_t n = splice(from, NULL, to, NULL, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        struct timeval tv = {sp->wr_timeout_ms / 1000, (sp->wr_timeout_ms % 1000) * 1000};
        int timed = ev == sp->wr && sp->wr_timeout_ms > 0;
        if (errno != EAGAIN)
            bg_util_splice__finish(sp, fail, errno);
        else if (event_add(ev, timed ? &tv : NULL) != 0)
            bg_util_splice__finish(sp, fail, ENOMEM);
        return -1;
    }
}

/* Moves what it can. Reads into the pipe only while the pipe is empty, so
 * EAGAIN from the source means "nothing waiting" (never "pipe full") and
 * waiting for a readable source cannot spin. */
static void bg_util_splice__pump(bg_util_splice_t *sp)
{
    size_t round = 0;
    while (round < BG_UTIL_SPLICE__ROUND_MAX) {
        if (sp->in_pipe > 0) {
            ssize_t w = bg_util_splice__step(sp, sp->pipe_r, sp->dst, sp->in_pipe, sp->wr,
                                             BG_UTIL_SPLICE_DST_ERROR);
            if (w < 0)
                return;
            if (w == 0) {
                bg_util_splice__finish(sp, BG_UTIL_SPLICE_DST_ERROR, EPIPE);
                return;
            }
            sp->in_pipe -= (size_t)w;
            sp->moved += (uint64_t)w;
            round += (size_t)w;
            continue;
        }
        if (sp->left == 0) {
            bg_util_splice__finish(sp, BG_UTIL_SPLICE_DONE, 0);
            return;
        }
        size_t want = sp->left < sp->pipe_cap ? (size_t)sp->left : sp->pipe_cap;
        ssize_t r = bg_util_splice__step(sp, sp->src, sp->pipe_w, want, sp->rd,
                                         BG_UTIL_SPLICE_SRC_ERROR);
        if (r < 0)
            return;
        /* 0 is end of stream (or urgent data waiting, which TCP protocols
         * like Kafka's and AMQP's never send). */
        if (r == 0) {
            bg_util_splice__finish(sp, BG_UTIL_SPLICE_SRC_EOF, 0);
            return;
        }
        sp->left -= (uint64_t)r;
        sp->in_pipe += (size_t)r;
    }
    /* Enough for one callback: let the loop serve other connections first. */
    event_active(sp->in_pipe ? sp->wr : sp->rd, sp->in_pipe ? EV_WRITE : EV_READ, 0);
}

static void bg_util_splice__on_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    if (what & EV_TIMEOUT) { /* only the destination's wait has one */
        bg_util_splice__finish(arg, BG_UTIL_SPLICE_DST_ERROR, ETIMEDOUT);
        return;
    }
    bg_util_splice__pump(arg);
}

void bg_util_splice_set_write_timeout(bg_util_splice_t *sp, int ms)
{
    sp->wr_timeout_ms = ms > 0 ? ms : 0;
}

bg_util_splice_t *bg_util_splice_new(struct event_base *base)
{
    bg_util_splice_t *sp = calloc(1, sizeof *sp);
    if (!sp)
        return NULL;
    sp->base = base;
    sp->pipe_r = sp->pipe_w = -1;
    return sp;
}

void bg_util_splice_free(bg_util_splice_t *sp)
{
    if (!sp)
        return;
    bg_util_splice__stop_events(sp);
    bg_util_splice__close_pipe(sp);
    free(sp);
}

int bg_util_splice_start(bg_util_splice_t *sp, int src, int dst, uint64_t n,
                         bg_util_splice_done_fn done, void *arg)
{
    if (sp->busy || n == 0 || !done) {
        errno = EINVAL;
        return -1;
    }
    if (bg_util_splice__open_pipe(sp) != 0)
        return -1;
    sp->rd = event_new(sp->base, src, EV_READ, bg_util_splice__on_event, sp);
    sp->wr = event_new(sp->base, dst, EV_WRITE, bg_util_splice__on_event, sp);
    if (!sp->rd || !sp->wr) {
        bg_util_splice__stop_events(sp);
        bg_util_splice__close_pipe(sp);
        errno = ENOMEM;
        return -1;
    }
    sp->src = src;
    sp->dst = dst;
    sp->left = n;
    sp->in_pipe = 0;
    sp->moved = 0;
    sp->done = done;
    sp->arg = arg;
    /* The caller has just drained the source: wait until it has more. */
    if (event_add(sp->rd, NULL) != 0) {
        bg_util_splice__stop_events(sp);
        bg_util_splice__close_pipe(sp);
        errno = ENOMEM;
        return -1;
    }
    sp->busy = 1;
    return 0;
}

int bg_util_splice_busy(const bg_util_splice_t *sp) { return sp && sp->busy; }

uint64_t bg_util_splice_moved(const bg_util_splice_t *sp) { return sp->moved; }
