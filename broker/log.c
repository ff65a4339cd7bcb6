#include "broker/log.h"
#include "broker/utf8.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int bg_log__level = BG_LOG_INFO;
static _Atomic int bg_log__fd = 2;

static const char *const bg_log__names[] = {"debug", "info", "warn", "error", "off"};

void bg_log_set_level(bg_log_level_t level) { bg_log__level = level; }
bg_log_level_t bg_log_get_level(void) { return (bg_log_level_t)bg_log__level; }
void bg_log_set_fd(int fd) { bg_log__fd = fd; }

int bg_log_level_parse(const char *s)
{
    for (int i = 0; i <= BG_LOG_OFF; i++)
        if (strcmp(s, bg_log__names[i]) == 0)
            return i;
    return -1;
}

/* The code point of the valid UTF-8 sequence of n (2-4) bytes at p. */
static unsigned bg_log__code_point(const unsigned char *p, size_t n)
{
    unsigned cp = p[0] & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
    for (size_t k = 1; k < n; k++)
        cp = cp << 6 | (p[k] & 0x3F);
    return cp;
}

/* Characters a log line must not carry raw, as they come from clients
 * (token subjects, client ids): C1 controls (U+009B is an 8-bit CSI that
 * terminals obey), the line and paragraph separators, and the bidirectional
 * controls that make text read other than it is. */
static int bg_log__invisible(unsigned cp)
{
    return (cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x200E || cp == 0x200F || (cp >= 0x202A && cp <= 0x202E) ||
           (cp >= 0x2066 && cp <= 0x2069);
}

int bg_json_escape_into(char *dst, size_t cap, size_t *len, const char *s, size_t slen)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = *len, i = 0;
    while (i < slen) {
        unsigned char c = (unsigned char)s[i];
        char esc[7];
        size_t n = 0, take = 1;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            n = 2;
        } else if (c == '\n') {
            memcpy(esc, "\\n", 2);
            n = 2;
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        } else if (c < 0x80) {
            esc[0] = (char)c;
            n = 1;
        } else if ((take = bg_utf8_len((const unsigned char *)s + i, slen - i)) != 0) {
            unsigned cp = bg_log__code_point((const unsigned char *)s + i, take);
            if (bg_log__invisible(cp)) { /* a terminal would act on it: written as \uXXXX */
                memcpy(esc, "\\u", 2);
                for (int k = 0; k < 4; k++)
                    esc[2 + k] = hex[(cp >> (12 - 4 * k)) & 15];
                n = 6;
            } else {
                memcpy(esc, s + i, take); /* a whole sequence, never half of one */
                n = take;
            }
        } else {
            memcpy(esc, "\\ufffd", 6); /* invalid UTF-8 would make the line invalid JSON */
            n = 6;
            take = 1;
        }
        if (o + n + 1 > cap)
            break;
        memcpy(dst + o, esc, n);
        o += n;
        i += take;
    }
    if (o < cap)
        dst[o] = '\0';
    *len = o;
    return i == slen ? 0 : -1;
}

/* Appends s whole, or nothing (-1) when it does not fit. */
static int bg_log__lit(char *dst, size_t cap, size_t *len, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 1 > cap)
        return -1;
    memcpy(dst + *len, s, n);
    *len += n;
    dst[*len] = '\0';
    return 0;
}

/* ,"key":"value" (or null) whole, or nothing (-1) when it does not fit. */
static int bg_log__field(char *dst, size_t cap, size_t *len, const bg_log_field_t *f)
{
    size_t at = *len;
    int rc = bg_log__lit(dst, cap, len, ",\"");
    rc = rc ? rc : bg_json_escape_into(dst, cap, len, f->key, strlen(f->key));
    if (f->value) {
        rc = rc ? rc : bg_log__lit(dst, cap, len, "\":\"");
        rc = rc ? rc : bg_json_escape_into(dst, cap, len, f->value, strlen(f->value));
        rc = rc ? rc : bg_log__lit(dst, cap, len, "\"");
    } else {
        rc = rc ? rc : bg_log__lit(dst, cap, len, "\":null");
    }
    if (rc)
        *len = at;
    return rc;
}

/* ---- the queue (bg_log_async_start) ----
 * Lines wait in a ring of bytes, each as its length (2 bytes) and its
 * text, for the log thread, the only writer of the fd while it runs: a
 * thread that logs never waits for the fd (a pipe whose reader stalls,
 * journald pushing back). A line that does not fit is dropped and counted;
 * the next one that fits comes after a line saying how many were dropped,
 * where they would have been. */

enum { BG_LOG__SYNC = 0, BG_LOG__QUEUED, BG_LOG__DISCARD };

/* Below PIPE_BUF (4096), so one write(2) of a line is never interleaved
 * with another writer's on a pipe. */
#define BG_LOG__LINE_MAX 4096

typedef struct bg_log__queue_s {
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* to the log thread: a line is queued, or stop */
    pthread_cond_t done_cv; /* to bg_log_async_stop: the log thread ended */
    pthread_t thread;
    unsigned char *ring;
    size_t cap, head, used; /* head: the oldest byte */
    uint64_t gap;           /* lines dropped since the last notice */
    int ended, stuck;
    _Atomic long long stop_ms; /* monotonic deadline of the final flush; 0: running */
} bg_log__queue_t;

static bg_log__queue_t bg_log__q = {.mu = PTHREAD_MUTEX_INITIALIZER,
                                    .cv = PTHREAD_COND_INITIALIZER};
static _Atomic int bg_log__mode = BG_LOG__SYNC;
static _Atomic uint64_t bg_log__dropped;

static size_t bg_log__format(char *line, bg_log_level_t level, const char *module,
                             const bg_log_field_t *fields, size_t n, const char *fmt, va_list ap);

static long long bg_log__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t bg_log__formatf(char *line, bg_log_level_t level, const char *module, const char *fmt,
                              ...) __attribute__((format(printf, 4, 5)));
static size_t bg_log__formatf(char *line, bg_log_level_t level, const char *module, const char *fmt,
                              ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t len = bg_log__format(line, level, module, NULL, 0, fmt, ap);
    va_end(ap);
    return len;
}

static void bg_log__ring_put(const void *p, size_t n)
{
    bg_log__queue_t *q = &bg_log__q;
    size_t tail = (q->head + q->used) % q->cap;
    size_t first = n < q->cap - tail ? n : q->cap - tail;
    memcpy(q->ring + tail, p, first);
    memcpy(q->ring, (const unsigned char *)p + first, n - first);
    q->used += n;
}

static void bg_log__ring_get(void *p, size_t n)
{
    bg_log__queue_t *q = &bg_log__q;
    size_t first = n < q->cap - q->head ? n : q->cap - q->head;
    memcpy(p, q->ring + q->head, first);
    memcpy((unsigned char *)p + first, q->ring, n - first);
    q->head = (q->head + n) % q->cap;
    q->used -= n;
}

/* A notice of drops is marked in its length: the lines it stands for are
 * counted already, it never is. */
#define BG_LOG__NOTICE 0x8000u

static void bg_log__push(const char *line, size_t len, unsigned notice)
{
    uint16_t l = (uint16_t)(len | notice);
    bg_log__ring_put(&l, sizeof l);
    bg_log__ring_put(line, len);
}

/* Takes the oldest entry into line; returns its length, *notice whether
 * it is a notice of drops. */
static size_t bg_log__pop(char *line, unsigned *notice)
{
    uint16_t l;
    bg_log__ring_get(&l, sizeof l);
    *notice = l & BG_LOG__NOTICE;
    l &= (uint16_t)~BG_LOG__NOTICE;
    bg_log__ring_get(line, l);
    return l;
}

/* Queues line after the notice of the lines dropped before it, both or
 * neither. Holding mu. */
static void bg_log__enqueue(const char *line, size_t len)
{
    bg_log__queue_t *q = &bg_log__q;
    char note[BG_LOG__LINE_MAX];
    size_t nl = q->gap ? bg_log__formatf(note, BG_LOG_WARN, "log", "%llu log lines dropped",
                                         (unsigned long long)q->gap)
                       : 0;
    size_t need = len + 2 + (nl ? nl + 2 : 0);
    if (q->used + need > q->cap) {
        q->gap++;
        atomic_fetch_add(&bg_log__dropped, 1);
        return;
    }
    if (nl)
        bg_log__push(note, nl, BG_LOG__NOTICE);
    q->gap = 0;
    bg_log__push(line, len, 0);
    pthread_cond_signal(&q->cv);
}

/* Writes the whole line, waiting for the fd as long as it takes while the
 * log runs, and until the stop deadline once it stops: -1 when that passed
 * with the fd still not taking it. A line the fd refuses (EPIPE, EBADF) is
 * given up. */
static int bg_log__write_line(const char *line, size_t len)
{
    size_t off = 0;
    while (off < len) {
        struct pollfd pf = {.fd = bg_log__fd, .events = POLLOUT};
        int pr = poll(&pf, 1, 100);
        long long stop = atomic_load(&bg_log__q.stop_ms);
        if (pr == 0 || (pr < 0 && errno == EINTR)) {
            if (stop && bg_log__now_ms() >= stop)
                return -1;
            continue;
        }
        ssize_t w = write(bg_log__fd, line + off, len - off);
        if (w > 0)
            off += (size_t)w;
        else if (w < 0 && errno != EINTR && errno != EAGAIN)
            return 0;
    }
    return 0;
}

static void *bg_log__main(void *arg)
{
    (void)arg;
    bg_log__queue_t *q = &bg_log__q;
    char line[BG_LOG__LINE_MAX];
    pthread_mutex_lock(&q->mu);
    for (;;) {
        if (q->used == 0 && q->gap) { /* the drops were the last lines so far */
            size_t nl = bg_log__formatf(line, BG_LOG_WARN, "log", "%llu log lines dropped",
                                        (unsigned long long)q->gap);
            q->gap = 0;
            bg_log__push(line, nl, BG_LOG__NOTICE);
        }
        if (q->used == 0) {
            if (atomic_load(&q->stop_ms))
                break;
            pthread_cond_wait(&q->cv, &q->mu);
            continue;
        }
        unsigned notice;
        size_t l = bg_log__pop(line, &notice);
        pthread_mutex_unlock(&q->mu);
        int rc = bg_log__write_line(line, l);
        pthread_mutex_lock(&q->mu);
        if (rc != 0) { /* this line is lost too */
            if (!notice)
                atomic_fetch_add(&bg_log__dropped, 1);
            q->stuck = 1;
            break;
        }
    }
    q->ended = 1;
    pthread_cond_broadcast(&q->done_cv);
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

int bg_log_async_start(size_t queue_bytes)
{
    bg_log__queue_t *q = &bg_log__q;
    int rc = -1;
    pthread_mutex_lock(&q->mu);
    if (atomic_load(&bg_log__mode) != BG_LOG__SYNC)
        goto done;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->done_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (queue_bytes < 2 * (BG_LOG__LINE_MAX + 2)) /* a longest line and a notice */
        queue_bytes = 2 * (BG_LOG__LINE_MAX + 2);
    q->ring = malloc(queue_bytes);
    if (!q->ring)
        goto done;
    q->cap = queue_bytes, q->head = q->used = 0, q->gap = 0;
    q->ended = q->stuck = 0;
    atomic_store(&q->stop_ms, 0);
    /* Signals go to the threads that handle them, never to this one. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int cr = pthread_create(&q->thread, NULL, bg_log__main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (cr != 0) {
        free(q->ring);
        q->ring = NULL;
        goto done;
    }
    atomic_store(&bg_log__mode, BG_LOG__QUEUED);
    rc = 0;
done:
    pthread_mutex_unlock(&q->mu);
    return rc;
}

void bg_log_async_stop(int deadline_ms)
{
    bg_log__queue_t *q = &bg_log__q;
    pthread_mutex_lock(&q->mu);
    if (atomic_load(&bg_log__mode) != BG_LOG__QUEUED) {
        pthread_mutex_unlock(&q->mu);
        return;
    }
    long long stop = bg_log__now_ms() + (deadline_ms > 0 ? deadline_ms : 0);
    atomic_store(&q->stop_ms, stop);
    pthread_cond_signal(&q->cv);
    struct timespec until = {.tv_sec = (stop + 200) / 1000,
                             .tv_nsec = (stop + 200) % 1000 * 1000000};
    while (!q->ended && pthread_cond_timedwait(&q->done_cv, &q->mu, &until) != ETIMEDOUT)
        ;
    if (q->ended && !q->stuck) {
        /* Lines queued after the thread saw the queue empty, before now. */
        while (q->used) {
            char rest[BG_LOG__LINE_MAX];
            unsigned notice;
            size_t l = bg_log__pop(rest, &notice);
            if (bg_log__write_line(rest, l) != 0 && !notice)
                atomic_fetch_add(&bg_log__dropped, 1);
        }
        atomic_store(&bg_log__mode, BG_LOG__SYNC);
        pthread_mutex_unlock(&q->mu);
        pthread_join(q->thread, NULL);
        pthread_mutex_lock(&q->mu);
        free(q->ring);
        q->ring = NULL;
        pthread_mutex_unlock(&q->mu);
        return;
    }
    /* The fd did not take the queued lines in time: they and every later
     * line are dropped (a synchronous write would hold the exit up). */
    while (q->used) {
        char skip[BG_LOG__LINE_MAX];
        unsigned notice;
        (void)bg_log__pop(skip, &notice);
        if (!notice)
            atomic_fetch_add(&bg_log__dropped, 1);
    }
    atomic_store(&bg_log__mode, BG_LOG__DISCARD);
    int ended = q->ended;
    pthread_mutex_unlock(&q->mu);
    if (ended)
        pthread_join(q->thread, NULL);
    else
        pthread_detach(q->thread); /* ends by itself within 100 ms: the deadline passed */
}

uint64_t bg_log_dropped_total(void)
{
    return atomic_load(&bg_log__dropped);
}

size_t bg_log_queued_bytes(void)
{
    pthread_mutex_lock(&bg_log__q.mu);
    size_t n = bg_log__q.used;
    pthread_mutex_unlock(&bg_log__q.mu);
    return n;
}

/* Writes the line at once, queues it or drops it, as the mode says. */
static void bg_log__emit(const char *line, size_t len)
{
    if (atomic_load(&bg_log__mode) != BG_LOG__SYNC) {
        pthread_mutex_lock(&bg_log__q.mu);
        int mode = atomic_load(&bg_log__mode);
        if (mode == BG_LOG__QUEUED)
            bg_log__enqueue(line, len);
        else if (mode == BG_LOG__DISCARD)
            atomic_fetch_add(&bg_log__dropped, 1);
        pthread_mutex_unlock(&bg_log__q.mu);
        if (mode != BG_LOG__SYNC)
            return;
    }
    ssize_t w = write(bg_log__fd, line, len);
    (void)w;
}

/* Room kept for what closes a line in any case: the message's closing
 * quote, the "truncated" marker, the closing brace and the newline. */
#define BG_LOG__CLOSE_ROOM 24

/* Formats one line into line (BG_LOG__LINE_MAX bytes); returns its length,
 * the newline included. */
static size_t bg_log__format(char *line, bg_log_level_t level, const char *module,
                             const bg_log_field_t *fields, size_t n, const char *fmt, va_list ap)
{
    char msg[2048], ts[32];
    size_t len = 0, cap = BG_LOG__LINE_MAX - BG_LOG__CLOSE_ROOM;
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t tl = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof ts - tl, ".%03ldZ", now.tv_nsec / 1000000);
    int cut = vsnprintf(msg, sizeof msg, fmt, ap) >= (int)sizeof msg;
    if (cut) { /* the cut may have split a UTF-8 sequence: end before it */
        size_t ml = strlen(msg), k = ml;
        while (k > 0 && ml - k < 3 && ((unsigned char)msg[k - 1] & 0xC0) == 0x80)
            k--;
        if (k > 0 && (unsigned char)msg[k - 1] >= 0xC0 &&
            bg_utf8_len((const unsigned char *)msg + k - 1, ml - (k - 1)) == 0)
            msg[k - 1] = '\0';
    }
    /* Room for the fields (session ids and the like) before the message may
     * take it all: what they need unescaped, at most half the line. */
    size_t fields_room = 2; /* the message's closing quote, the writer's NUL */
    for (size_t i = 0; i < n; i++) /* ,"key":"value" */
        fields_room += strlen(fields[i].key) + (fields[i].value ? strlen(fields[i].value) : 4) + 6;
    size_t msg_cap = cap - (fields_room < cap / 2 ? fields_room : cap / 2);

    /* The fixed head always fits; a module name is a short constant. */
    (void)bg_log__lit(line, cap, &len, "{\"time\":\"");
    (void)bg_log__lit(line, cap, &len, ts);
    (void)bg_log__lit(line, cap, &len, "\",\"level\":\"");
    (void)bg_log__lit(line, cap, &len, bg_log__names[level]);
    (void)bg_log__lit(line, cap, &len, "\",\"module\":\"");
    (void)bg_json_escape_into(line, cap, &len, module, strlen(module));
    (void)bg_log__lit(line, cap, &len, "\",\"msg\":\"");
    cut |= bg_json_escape_into(line, msg_cap, &len, msg, strlen(msg)) != 0;
    line[len++] = '"'; /* within the kept room */
    for (size_t i = 0; i < n; i++)
        if (bg_log__field(line, cap, &len, &fields[i]) != 0) {
            cut = 1; /* this one and the rest left out */
            break;
        }
    if (cut) {
        memcpy(line + len, ",\"truncated\":true", 17);
        len += 17;
    }
    line[len++] = '}';
    line[len++] = '\n';
    return len;
}

void bg_log_v(bg_log_level_t level, const char *module, const bg_log_field_t *fields, size_t n,
              const char *fmt, va_list ap)
{
    if ((int)level < bg_log__level || level >= BG_LOG_OFF)
        return;
    char line[BG_LOG__LINE_MAX];
    size_t len = bg_log__format(line, level, module, fields, n, fmt, ap);
    bg_log__emit(line, len);
}

void bg_log_fields(bg_log_level_t level, const char *module, const bg_log_field_t *fields, size_t n,
                   const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bg_log_v(level, module, fields, n, fmt, ap);
    va_end(ap);
}
