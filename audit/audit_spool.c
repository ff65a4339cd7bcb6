/* Audit spool: framed records in rotated segment files, a persisted read
 * position, resync past damage. Format and recovery rules: audit_spool.h. */
#include "audit/audit_spool.h"

#include "broker/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

/* ---- CRC-32C ---- */

static uint32_t bg_audit__crc_table[256];

static void bg_audit__crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        bg_audit__crc_table[i] = c;
    }
}

static uint32_t bg_audit__crc_sw(uint32_t crc, const uint8_t *p, size_t n)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, bg_audit__crc_init);
    while (n--)
        crc = bg_audit__crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t bg_audit__crc_hw(uint32_t crc, const uint8_t *p,
                                                                   size_t n)
{
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--)
        c32 = _mm_crc32_u8(c32, *p++);
    return c32;
}
#endif

uint32_t bg_audit_crc32c(uint32_t crc, const void *p, size_t n)
{
    crc = ~crc;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2"))
        return ~bg_audit__crc_hw(crc, p, n);
#endif
    return ~bg_audit__crc_sw(crc, p, n);
}

/* ---- frame parser (pure) ---- */

static uint32_t bg_audit__le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void bg_audit__put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t bg_audit__frame_crc(const uint8_t *lenbytes, const uint8_t *p, uint32_t n)
{
    return bg_audit_crc32c(bg_audit_crc32c(0, lenbytes, 4), p, n);
}

void bg_audit_spool_frame(uint8_t hdr[BG_AUDIT_SPOOL_HDR], const uint8_t *p, uint32_t n)
{
    bg_audit__put32(hdr, n);
    bg_audit__put32(hdr + 4, bg_audit__frame_crc(hdr, p, n));
}

/* CRC bytes the frame parser ran in this thread (bg_audit_spool_crc_work):
 * thread-local, so spools of several threads never race on it. */
static _Thread_local uint64_t bg_audit__crc_work;

uint64_t bg_audit_spool_crc_work(void) { return bg_audit__crc_work; }

/* What a scan may still spend on frames that do not validate. Resync
 * checks a frame at every offset whose length field is in range, each
 * with a CRC over that length (up to 1 MiB): bytes that read as such a
 * length at every offset (a segment of "00 00 0f 00" repeated) made one
 * scan of 2 MiB run for minutes, and the daemon's start-up drain uses the
 * same scanner. Real damage stays far below the allowance: the payload is
 * JSON text, whose bytes never read as a length in range, so candidates
 * come only from the few binary header bytes around the damage. */
typedef struct bg_audit__budget_s {
    uint64_t spent; /* CRC bytes of candidates that did not validate */
} bg_audit__budget_t;

/* 1 when a CRC over n bytes may be spent on the candidate at absolute
 * offset at (its segment's): the allowance grows with the bytes scanned, so
 * the wasted work stays linear in the segment, and a candidate it cannot
 * pay for is left unchecked, part of the corrupt region around it. */
static int bg_audit__affordable(const bg_audit__budget_t *b, uint64_t at, uint64_t n)
{
    uint64_t allowed = BG_AUDIT_SPOOL_RESYNC_BASE + BG_AUDIT_SPOOL_RESYNC_PER_BYTE * at;
    return b->spent + n <= allowed;
}

/* Length of the valid frame at buf[off], 0 when there is none (or the
 * budget cannot pay for checking it). base: buf's offset in its segment. */
static size_t bg_audit__frame_at(const uint8_t *buf, size_t len, size_t off, uint64_t base,
                                 bg_audit__budget_t *b)
{
    if (len - off < BG_AUDIT_SPOOL_HDR)
        return 0;
    uint32_t n = bg_audit__le32(buf + off);
    if (n == 0 || n > BG_AUDIT_SPOOL_MAX_RECORD || n > len - off - BG_AUDIT_SPOOL_HDR)
        return 0;
    uint64_t cost = 4u + (uint64_t)n; /* the length field and the payload */
    if (!bg_audit__affordable(b, base + off, cost))
        return 0;
    bg_audit__crc_work += cost;
    const uint8_t *p = buf + off + BG_AUDIT_SPOOL_HDR;
    if (bg_audit__le32(buf + off + 4) != bg_audit__frame_crc(buf + off, p, n)) {
        b->spent += cost;
        return 0;
    }
    return BG_AUDIT_SPOOL_HDR + n;
}

/* bg_audit_spool_scan with the budget of its segment: buf starts at offset
 * base of it, and b carries what earlier scans of it spent. */
static size_t bg_audit__scan(const uint8_t *buf, size_t len, uint64_t base, bg_audit__budget_t *b,
                             bg_audit_spool_rec_cb rec, bg_audit_spool_bad_cb bad, void *arg)
{
    size_t off = 0;
    while (off < len) {
        size_t f = bg_audit__frame_at(buf, len, off, base, b);
        if (f == 0) {
            /* Resync: the next offset where a whole frame validates. Linear
             * work per byte, plus CRCs bounded by the budget. */
            size_t next = off + 1;
            while (next < len && bg_audit__frame_at(buf, len, next, base, b) == 0)
                next++;
            if (bad)
                bad(arg, off, next - off);
            off = next;
            continue;
        }
        size_t at = off;
        off += f;
        if (rec && rec(arg, buf + at + BG_AUDIT_SPOOL_HDR, f - BG_AUDIT_SPOOL_HDR, at) != 0)
            break;
    }
    return off;
}

size_t bg_audit_spool_scan(const uint8_t *buf, size_t len, bg_audit_spool_rec_cb rec,
                           bg_audit_spool_bad_cb bad, void *arg)
{
    bg_audit__budget_t b = {0};
    return bg_audit__scan(buf, len, 0, &b, rec, bad, arg);
}

int bg_audit_spool_torn(const uint8_t *p, size_t n)
{
    if (n < 4)
        return n > 0; /* not even a length yet */
    uint32_t len = bg_audit__le32(p);
    return len >= 1 && len <= BG_AUDIT_SPOOL_MAX_RECORD && n < BG_AUDIT_SPOOL_HDR + (size_t)len;
}

/* ---- spool directory ---- */

struct bg_audit_spool_s {
    char *dir;
    uint64_t max_bytes, seg_bytes;
    int wfd;        /* active segment, -1 until the first append */
    uint32_t wseg;  /* segment the next append goes to */
    uint64_t woff;  /* its size */
    uint32_t first; /* lowest segment that may exist */
    uint32_t rseg, aseg;
    uint64_t roff, aoff;
    uint64_t bytes;                 /* on disk */
    uint64_t unread, unread_at_ack; /* bytes after the read/ack cursor */
    uint64_t corrupt;
    uint64_t unsynced; /* bytes appended to the active segment since its last fdatasync */
    uint32_t bad_seg; /* furthest corruption reported, so a rewind does not recount */
    uint64_t bad_off;
    uint32_t budget_seg;        /* the segment budget belongs to (0: none yet) */
    bg_audit__budget_t budget; /* resync work spent in it since it was first read */
    uint8_t *buf; /* cache of segment bufseg, bytes [0, buflen) */
    size_t buflen, bufcap;
    uint32_t bufseg;
    time_t last_err_log;
    uint64_t unreadable;   /* segments moved aside (or skipped) because they cannot be read */
    uint32_t fail_seg;     /* the segment the last reads failed on (0: none) */
    unsigned fail_rounds;  /* ...in that many reads in a row */
    uint32_t fail_log_seg; /* read errors are logged once per segment and minute */
    time_t fail_log_at;
    time_t transient_log_at; /* errors of the process, not of a segment: once a minute */
    /* Unreadable and could not be moved aside: read as missing, never
     * deleted (each one's events wait for the operator). */
    uint32_t skip[BG_AUDIT_SPOOL_SKIP_MAX];
    unsigned nskip;
    /* Records appended to the active segment, and records of the segment
     * at the read/ack cursor before it: what is lost when the active
     * segment is deleted under the writer (bg_audit_spool_check). */
    uint64_t wrecs, rrecs, arecs;
};

/* 1 when segment seg is one skipped as unreadable (see skip). */
static int bg_audit__skipped(const bg_audit_spool_t *sp, uint32_t seg)
{
    for (unsigned i = 0; i < sp->nskip; i++)
        if (sp->skip[i] == seg)
            return 1;
    return 0;
}

static void bg_audit__seg_path(const bg_audit_spool_t *sp, uint32_t seg, char *out, size_t cap)
{
    snprintf(out, cap, "%s/spool-%06" PRIu32 ".seg", sp->dir, seg);
}

static uint64_t bg_audit__seg_size(const bg_audit_spool_t *sp, uint32_t seg)
{
    char path[4096];
    struct stat st;
    bg_audit__seg_path(sp, seg, path, sizeof path);
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

int bg_audit_spool_seg_no(const char *name, uint32_t *n)
{
    char canon[32];
    uint64_t v = 0;
    const char *p = name;
    if (strncmp(p, "spool-", 6) != 0)
        return 0;
    for (p += 6; *p >= '0' && *p <= '9' && v <= BG_AUDIT_SPOOL_SEG_MAX; p++)
        v = v * 10 + (uint64_t)(*p - '0');
    if (v == 0 || v > BG_AUDIT_SPOOL_SEG_MAX)
        return 0;
    /* Only the exact form: a number written otherwise ("spool-7.seg",
     * leading zeros past six digits) names a file bg_audit__seg_path would
     * never open. */
    snprintf(canon, sizeof canon, "spool-%06" PRIu32 ".seg", (uint32_t)v);
    if (strcmp(canon, name) != 0)
        return 0;
    *n = (uint32_t)v;
    return 1;
}

static int bg_audit__cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

int bg_audit_spool_segs(const char *dir, uint32_t **out, size_t *n)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    uint32_t *v = NULL, seg;
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL) {
        if (!bg_audit_spool_seg_no(e->d_name, &seg))
            continue;
        if (*n == cap) {
            uint32_t *nv = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof *v);
            if (!nv) {
                free(v);
                closedir(d);
                errno = ENOMEM;
                return -1;
            }
            v = nv;
        }
        v[(*n)++] = seg;
    }
    closedir(d);
    if (*n)
        qsort(v, *n, sizeof *v, bg_audit__cmp_u32);
    *out = v;
    return 0;
}

int bg_audit_spool_list(const char *dir, uint32_t *lo, uint32_t *hi)
{
    uint32_t *v;
    size_t n;
    *lo = *hi = 0;
    if (bg_audit_spool_segs(dir, &v, &n) != 0)
        return -1;
    if (n) {
        *lo = v[0];
        *hi = v[n - 1];
    }
    free(v);
    return 0;
}

/* The lowest segment on disk after seg into *out, none when there is none.
 * Segments are numbered without gaps, but a gap exists where an operator
 * removed one or a stray name sits far ahead: stepping one number at a
 * time could take for ever. -1 (errno set) when the directory cannot be
 * listed (out of descriptors, say): the caller must not move, since taking
 * that for "none" skipped every segment in between, and the acknowledgement
 * after it deleted them unread. */
static int bg_audit__seg_after(const bg_audit_spool_t *sp, uint32_t seg, uint32_t none,
                               uint32_t *out)
{
    uint32_t *v;
    size_t n;
    if (bg_audit_spool_segs(sp->dir, &v, &n) != 0)
        return -1;
    *out = none;
    for (size_t i = 0; i < n; i++)
        if (v[i] > seg) {
            *out = v[i] < none ? v[i] : none;
            break;
        }
    free(v);
    return 0;
}

/* Bytes after position (seg, off) in the segments segs[0..n). */
static uint64_t bg_audit__after(const bg_audit_spool_t *sp, const uint32_t *segs,
                                const uint64_t *sizes, size_t n, uint32_t seg, uint64_t off)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (bg_audit__skipped(sp, segs[i]) || segs[i] < seg)
            continue;
        if (segs[i] > seg)
            sum += sizes[i];
        else if (sizes[i] > off)
            sum += sizes[i] - off;
    }
    return sum;
}

/* Derives bytes, unread and unread_at_ack from the segments on disk. The
 * running counts assume every segment is still there: one deleted by an
 * operator (or moved aside) would stay counted for ever, and the spool
 * would never be empty again. -1 when dir cannot be listed (counts kept). */
static int bg_audit__recount(bg_audit_spool_t *sp)
{
    uint32_t *segs;
    size_t n;
    if (bg_audit_spool_segs(sp->dir, &segs, &n) != 0)
        return -1;
    uint64_t *sizes = n ? calloc(n, sizeof *sizes) : NULL;
    if (n && !sizes) {
        free(segs);
        return -1;
    }
    sp->bytes = 0;
    for (size_t i = 0; i < n; i++) {
        sizes[i] = bg_audit__seg_size(sp, segs[i]);
        sp->bytes += sizes[i];
    }
    sp->unread = bg_audit__after(sp, segs, sizes, n, sp->rseg, sp->roff);
    sp->unread_at_ack = bg_audit__after(sp, segs, sizes, n, sp->aseg, sp->aoff);
    free(sizes);
    free(segs);
    return 0;
}

static int bg_audit__sync_dir(const bg_audit_spool_t *sp)
{
    int dfd = open(sp->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -1;
    int rc = fsync(dfd);
    close(dfd);
    return rc;
}

int bg_audit_spool_sync_dir(const bg_audit_spool_t *sp)
{
    return bg_audit__sync_dir(sp);
}

/* spool.ack: "SEGNO OFFSET CRC\n", fixed width, CRC-32C of what precedes
 * it; the file is overwritten in place (see bg_audit__write_ack). */
#define BG_AUDIT__ACK_POS 31 /* "%010u %020llu" */
#define BG_AUDIT__ACK_LEN 41 /* plus " %08x\n" */

enum { BG_AUDIT__ACK_NONE = 0, BG_AUDIT__ACK_OK, BG_AUDIT__ACK_LEGACY };

int bg_audit_spool_parse_ack(const char *text, size_t n, uint32_t *aseg, uint64_t *aoff)
{
    char line[64];
    unsigned seg, crc;
    unsigned long long off;
    if (n >= sizeof line)
        return BG_AUDIT__ACK_NONE; /* longer than any position busgate writes */
    memcpy(line, text, n);
    line[n] = '\0';
    if (n == BG_AUDIT__ACK_LEN && sscanf(line, "%10u %20llu %8x", &seg, &off, &crc) == 3) {
        if (seg == 0 || crc != bg_audit_crc32c(0, line, BG_AUDIT__ACK_POS))
            return BG_AUDIT__ACK_NONE;
        *aseg = seg;
        *aoff = off;
        return BG_AUDIT__ACK_OK;
    }
    if (n && n < BG_AUDIT__ACK_POS && sscanf(line, "%u %llu", &seg, &off) == 2 && seg > 0) {
        *aseg = seg;
        *aoff = off;
        return BG_AUDIT__ACK_LEGACY;
    }
    return BG_AUDIT__ACK_NONE;
}

int bg_audit_spool_read_ack(const char *dir, uint32_t *aseg, uint64_t *aoff)
{
    char path[4096], line[64];
    snprintf(path, sizeof path, "%s/spool.ack", dir);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(line, 1, sizeof line - 1, f) : 0;
    if (f)
        fclose(f);
    return bg_audit_spool_parse_ack(line, n, aseg, aoff);
}

/* Reads spool.ack into aseg/aoff: NONE, OK or LEGACY (see the header). */
static int bg_audit__read_ack(bg_audit_spool_t *sp)
{
    return bg_audit_spool_read_ack(sp->dir, &sp->aseg, &sp->aoff);
}

static int bg_audit__write_ack(bg_audit_spool_t *sp);

bg_audit_spool_t *bg_audit_spool_open(const char *dir, uint64_t max_bytes, uint64_t seg_bytes,
                                      char *err, size_t errlen)
{
    bg_audit_spool_t *sp = calloc(1, sizeof *sp);
    uint32_t lo = 0, hi = 0, *segs = NULL;
    size_t nsegs = 0;
    if (!sp || !(sp->dir = strdup(dir)))
        goto fail;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "audit spool %s: %s", dir, strerror(errno));
        goto fail;
    }
    if (bg_audit_spool_segs(dir, &segs, &nsegs) != 0) {
        snprintf(err, errlen, "audit spool %s: %s", dir, strerror(errno));
        goto fail;
    }
    if (nsegs) {
        lo = segs[0];
        hi = segs[nsegs - 1];
    }
    sp->max_bytes = max_bytes;
    sp->seg_bytes = seg_bytes ? seg_bytes : 8u << 20;
    sp->wfd = -1;
    /* The acknowledged position names the next record to read. Segment
     * numbers are never reused, so it cannot point into a segment written
     * after it: a segment it names that is gone was read to the end and
     * deleted (so reading goes on at the next one), one it names past the
     * last on disk is the next to be written. A position before the
     * oldest segment on disk is older than all of them: start there. */
    int had_ack = bg_audit__read_ack(sp), fixed = 1;
    uint32_t first = hi ? lo : 1;
    if (!had_ack || sp->aseg < first ||
        (had_ack == BG_AUDIT__ACK_LEGACY && sp->aseg > hi && hi)) {
        /* No (trustworthy) position: read everything on disk again
         * (duplicates with the same event ids, never a loss). */
        sp->aseg = first;
        sp->aoff = 0;
    } else if (sp->aseg > hi || bg_audit__seg_size(sp, sp->aseg) < sp->aoff) {
        if (sp->aseg > hi && sp->aoff > 0)
            sp->aseg++;
        else if (sp->aseg <= hi)
            sp->aoff = bg_audit__seg_size(sp, sp->aseg);
        if (sp->aseg > hi)
            sp->aoff = 0;
    } else {
        fixed = had_ack != BG_AUDIT__ACK_OK; /* rewritten in today's format */
    }
    /* Never a number bg_audit_spool_seg_no rejects: a segment so named
     * would be invisible after a restart, its events silently lost. */
    uint64_t wseg = (uint64_t)hi + 1 > sp->aseg ? (uint64_t)hi + 1 : sp->aseg;
    if (wseg > BG_AUDIT_SPOOL_SEG_MAX) {
        snprintf(err, errlen,
                 "audit spool %s: segment numbers used up (the next would be %" PRIu64
                 ", the highest allowed is %u): with busgate stopped, renumber the segments "
                 "lower in the same order and delete spool.ack, or move the directory away "
                 "(docs/audit.md)",
                 dir, wseg, BG_AUDIT_SPOOL_SEG_MAX);
        goto fail;
    }
    sp->wseg = (uint32_t)wseg; /* never after a possibly torn tail */
    sp->first = hi ? lo : sp->wseg;
    free(segs);
    segs = NULL;
    sp->rseg = sp->aseg;
    sp->roff = sp->aoff;
    sp->bufseg = 0;
    if (bg_audit__recount(sp) != 0) {
        snprintf(err, errlen, "audit spool %s: %s", dir, strerror(errno));
        goto fail;
    }
    /* Persist a corrected position before anything is written after it. A
     * spool without a position gets one now, while there is room: moving it
     * later needs no new block. */
    if (fixed && bg_audit__write_ack(sp) != 0) {
        if (had_ack) {
            snprintf(err, errlen, "audit spool %s: cannot write spool.ack: %s", dir,
                     strerror(errno));
            goto fail;
        }
        bg_log_warn("audit", "spool %s: cannot write spool.ack yet: %s", dir, strerror(errno));
    }
    return sp;
fail:
    if (err && errlen && !err[0])
        snprintf(err, errlen, "audit spool %s: out of memory", dir);
    free(segs);
    if (sp)
        free(sp->dir);
    free(sp);
    return NULL;
}

/* Closes the active segment: the next append starts a new one. */
static void bg_audit__retire_active(bg_audit_spool_t *sp)
{
    if (sp->wfd < 0)
        return;
    if (fdatasync(sp->wfd) != 0)
        bg_log_warn("audit", "spool fdatasync: %s", strerror(errno));
    close(sp->wfd);
    sp->wfd = -1;
    sp->wseg++;
    sp->unsynced = 0;
}

static int bg_audit__open_seg(bg_audit_spool_t *sp)
{
    char path[4096];
    bg_audit__retire_active(sp);
    bg_audit__seg_path(sp, sp->wseg, path, sizeof path);
    if (sp->wseg > BG_AUDIT_SPOOL_SEG_MAX) /* a name no listing would take for a segment */
        errno = EOVERFLOW;
    else
        sp->wfd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (sp->wfd < 0) {
        time_t now = time(NULL); /* a broken spool is retried often: log once a minute */
        if (now - sp->last_err_log >= 60) {
            sp->last_err_log = now;
            bg_log_error("audit", "spool segment %s: %s", path, strerror(errno));
        }
        return -1;
    }
    sp->woff = 0;
    sp->wrecs = 0;
    /* The new name must survive a power loss as well as its bytes. */
    if (bg_audit__sync_dir(sp) != 0)
        bg_log_warn("audit", "spool directory fsync: %s", strerror(errno));
    return 0;
}

int bg_audit_spool_append(bg_audit_spool_t *sp, const uint8_t *p, size_t n)
{
    uint8_t hdr[BG_AUDIT_SPOOL_HDR];
    if (n == 0 || n > BG_AUDIT_SPOOL_MAX_RECORD)
        return -1;
    if (sp->max_bytes && sp->bytes + BG_AUDIT_SPOOL_HDR + n > sp->max_bytes)
        return -1;
    if ((sp->wfd < 0 || sp->woff >= sp->seg_bytes) && bg_audit__open_seg(sp) != 0)
        return -1;
    bg_audit_spool_frame(hdr, p, (uint32_t)n);
    struct iovec iov[2] = {{hdr, sizeof hdr}, {(void *)p, n}};
    ssize_t w = writev(sp->wfd, iov, 2);
    if (w != (ssize_t)(sizeof hdr + n)) {
        /* Leave no partial frame behind: the next append would follow it. */
        if (w > 0 && ftruncate(sp->wfd, (off_t)sp->woff) != 0)
            bg_log_error("audit", "spool truncate: %s", strerror(errno));
        return -1;
    }
    sp->woff += (uint64_t)w;
    sp->unsynced += (uint64_t)w;
    sp->bytes += (uint64_t)w;
    sp->unread += (uint64_t)w; /* behind both cursors */
    sp->unread_at_ack += (uint64_t)w;
    sp->wrecs++;
    return 0;
}

int bg_audit_spool_sync(bg_audit_spool_t *sp)
{
    if (sp->wfd < 0 || sp->unsynced == 0)
        return 0;
    if (fdatasync(sp->wfd) != 0)
        return -1;
    sp->unsynced = 0;
    return 0;
}

uint64_t bg_audit_spool_unsynced(const bg_audit_spool_t *sp) { return sp->unsynced; }

/* What bg_audit__fill found. */
enum { BG_AUDIT__FILL_NOTREG = -2, BG_AUDIT__FILL_ERR = -1, BG_AUDIT__FILL_GONE = 0,
       BG_AUDIT__FILL_OK = 1 };

/* Loads the bytes of segment rseg not yet cached: OK, GONE (no such file,
 * or the one skipped as unreadable), NOTREG (a directory, a FIFO... under
 * a segment's name) or ERR (errno set). */
static int bg_audit__fill(bg_audit_spool_t *sp)
{
    char path[4096];
    struct stat st;
    int e;
    if (sp->bufseg != sp->rseg) {
        sp->bufseg = sp->rseg;
        sp->buflen = 0;
    }
    if (bg_audit__skipped(sp, sp->rseg))
        return BG_AUDIT__FILL_GONE;
    bg_audit__seg_path(sp, sp->rseg, path, sizeof path);
    /* O_NONBLOCK: a FIFO under a segment's name must not hang the audit
     * thread in open(2); regular files ignore it. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? BG_AUDIT__FILL_GONE : BG_AUDIT__FILL_ERR;
    if (fstat(fd, &st) != 0)
        goto fail;
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return BG_AUDIT__FILL_NOTREG;
    }
    size_t size = (size_t)st.st_size;
    if (size > sp->bufcap) {
        uint8_t *nb = realloc(sp->buf, size);
        if (!nb)
            goto fail;
        sp->buf = nb;
        sp->bufcap = size;
    }
    while (sp->buflen < size) {
        ssize_t r = pread(fd, sp->buf + sp->buflen, size - sp->buflen, (off_t)sp->buflen);
        if (r < 0)
            goto fail;
        if (r == 0) /* shorter than fstat said: a failed append truncated back */
            break;
        sp->buflen += (size_t)r;
    }
    close(fd);
    return BG_AUDIT__FILL_OK;
fail:
    e = errno; /* for the log line, past close(2) */
    close(fd);
    errno = e;
    return BG_AUDIT__FILL_ERR;
}

typedef struct bg_audit_rd_s {
    bg_audit_spool_t *sp;
    bg_audit_spool_rec_cb cb;
    void *arg;
    size_t base, left, count;
} bg_audit_rd_t;

static int bg_audit__rd_rec(void *arg, const uint8_t *p, size_t n, size_t off)
{
    bg_audit_rd_t *rd = arg;
    rd->count++;
    rd->left--;
    rd->sp->rrecs++;
    if (rd->cb(rd->arg, p, n, rd->base + off) != 0)
        return 1;
    return rd->left == 0;
}

static void bg_audit__rd_bad(void *arg, size_t off, size_t len)
{
    bg_audit_rd_t *rd = arg;
    bg_audit_spool_t *sp = rd->sp;
    uint64_t at = rd->base + off;
    if (sp->rseg < sp->bad_seg || (sp->rseg == sp->bad_seg && at < sp->bad_off))
        return;
    sp->bad_seg = sp->rseg;
    sp->bad_off = at + len;
    sp->corrupt++;
    bg_log_warn("audit", "spool segment %" PRIu32 ": skipped %zu corrupt byte(s) at offset %" PRIu64,
                sp->rseg, len, at);
}

/* Moves the read cursor to the next segment: 1, or 0 when there is none.
 * Past a missing one, to the next on disk (see bg_audit__seg_after); -1
 * (errno set, the cursor where it was) when that cannot be listed. */
static int bg_audit__next_seg(bg_audit_spool_t *sp, int missing)
{
    uint32_t last = sp->wfd >= 0 ? sp->wseg : sp->wseg - 1, next = sp->rseg + 1;
    if (sp->rseg >= last)
        return 0;
    if (missing && bg_audit__seg_after(sp, sp->rseg, last, &next) != 0)
        return -1;
    sp->rseg = next;
    sp->roff = 0;
    sp->rrecs = 0;
    return 1;
}

/* Renames from to to, failing (EEXIST) rather than replace a file there. */
static int bg_audit__rename_noreplace(const char *from, const char *to)
{
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    /* A file system (or kernel) without RENAME_NOREPLACE: link(2) never
     * replaces either, and unlinking the old name completes the move. */
    if (link(from, to) != 0)
        return -1;
    if (unlink(from) != 0) {
        int e = errno;
        unlink(to); /* the segment stays under its own name only */
        errno = e;
        return -1;
    }
    return 0;
}

/* Renames segment file path to the first free name of path.unreadable,
 * path.unreadable.1, ... (BG_AUDIT_SPOOL_ASIDE_NAMES in all), the name
 * taken in to. Never onto an existing file: segment numbers can repeat
 * (renumbered after the numbers ran out, a torn spool.ack restarting at
 * 1), and replacing an earlier NAME.unreadable lost the events the
 * operator had not recovered yet. -1 (errno set) when none is free or the
 * rename fails. */
static int bg_audit__rename_aside(const char *path, char *to, size_t cap)
{
    for (unsigned i = 0; i < BG_AUDIT_SPOOL_ASIDE_NAMES; i++) {
        if (i == 0)
            snprintf(to, cap, "%s.unreadable", path);
        else
            snprintf(to, cap, "%s.unreadable.%u", path, i);
        if (bg_audit__rename_noreplace(path, to) == 0)
            return 0;
        if (errno != EEXIST)
            return -1;
    }
    return -1; /* errno EEXIST: every name taken */
}

/* Whether a failure of segment rseg is to be logged now: the first one of
 * a segment, then once a minute (the drain retries often, failing alike). */
static int bg_audit__fail_log_due(bg_audit_spool_t *sp)
{
    time_t now = time(NULL);
    if (sp->fail_log_seg == sp->rseg && now - sp->fail_log_at < 60)
        return 0;
    sp->fail_log_seg = sp->rseg;
    sp->fail_log_at = now;
    return 1;
}

/* The segment at path (rseg) can be neither read nor moved aside (errno
 * e): skipped until the restart, read as missing and never deleted. 0 when
 * BG_AUDIT_SPOOL_SKIP_MAX are skipped already: a segment forgotten from the
 * set would be deleted by the next acknowledgement, so the drain stops at
 * this one instead (logged once a minute) and tries again. */
static int bg_audit__skip(bg_audit_spool_t *sp, const char *path, const char *why, int e)
{
    if (sp->nskip == BG_AUDIT_SPOOL_SKIP_MAX) {
        if (bg_audit__fail_log_due(sp))
            bg_log_error("audit",
                         "spool segment %s cannot be read (%s) nor moved aside (%s), and %u "
                         "segments are skipped already: the spool drain stops here until it "
                         "can be moved aside or busgate restarts (docs/operations.md)",
                         path, why, strerror(e), BG_AUDIT_SPOOL_SKIP_MAX);
        return 0;
    }
    sp->skip[sp->nskip++] = sp->rseg;
    bg_log_error("audit",
                 "spool segment %s cannot be read (%s) nor moved aside (%s): skipped until "
                 "busgate restarts, its events are not delivered",
                 path, why, strerror(e));
    return 1;
}

/* Renames segment rseg to NAME.unreadable beside the others, where the
 * operator can recover it and where busgate and `busgate audit tail` no
 * longer take it for a segment; when that fails it is skipped until the
 * restart. Either way the read goes on past it (1): the cursor stays on
 * the name, which now reads as missing, and bg_audit_spool_read steps past
 * it as past any missing segment (or, when the directory cannot be listed
 * now, at a later drain). 0: neither was possible, the read stops here. */
static int bg_audit__move_aside(bg_audit_spool_t *sp, const char *why)
{
    char path[4096], to[4200];
    uint32_t seg = sp->rseg;
    if (seg == sp->wseg && sp->wfd >= 0)
        bg_audit__retire_active(sp); /* never append to a file moved aside */
    bg_audit__seg_path(sp, seg, path, sizeof path);
    if (bg_audit__rename_aside(path, to, sizeof to) == 0) {
        if (bg_audit__sync_dir(sp) != 0)
            bg_log_warn("audit", "spool directory fsync: %s", strerror(errno));
        bg_log_error("audit",
                     "spool segment %s cannot be read (%s): moved aside to %s, its events are "
                     "not delivered until it is recovered (docs/operations.md)",
                     path, why, to);
    } else if (!bg_audit__skip(sp, path, why, errno)) {
        return 0; /* fail_rounds kept: the next round tries the move again */
    }
    sp->unreadable++;
    sp->fail_seg = 0;
    sp->fail_rounds = 0;
    return 1;
}

/* 1 when a read failing with e says nothing about the segment: the process
 * (or the system) is out of descriptors, memory or buffers, or a signal
 * interrupted it. Counted against the segment, a flood of client
 * connections that used up the descriptors for a few seconds moved healthy
 * segments aside and their events were never delivered. */
static int bg_audit__transient(int e)
{
    switch (e) {
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case ENOBUFS:
    case EINTR:
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
        return 1;
    default:
        return 0;
    }
}

/* Logs a transient failure of the spool (what: the file or the step),
 * once a minute: the drain retries often and every retry fails alike. */
static void bg_audit__log_transient(bg_audit_spool_t *sp, const char *what, int e)
{
    time_t now = time(NULL);
    if (sp->transient_log_at && now - sp->transient_log_at < 60)
        return;
    sp->transient_log_at = now;
    bg_log_error("audit",
                 "spool %s: %s (not held against the segment; the spool drain waits and "
                 "tries again)",
                 what, strerror(e));
}

/* A read of segment rseg failed (fill result f, errno set). Logs it (once
 * per segment and minute: the drain retries often). A segment that is not
 * a regular file is moved aside at once, one that fails in
 * BG_AUDIT_SPOOL_READ_TRIES reads in a row then: the segments after it and
 * every live event appended behind them would otherwise wait for ever.
 * 1: moved aside (or skipped), read on; 0: try again later. */
static int bg_audit__read_failed(bg_audit_spool_t *sp, int f)
{
    char path[4096];
    int e = errno;
    if (f == BG_AUDIT__FILL_NOTREG)
        return bg_audit__move_aside(sp, "not a regular file");
    bg_audit__seg_path(sp, sp->rseg, path, sizeof path);
    if (bg_audit__transient(e)) {
        bg_audit__log_transient(sp, path, e);
        return 0;
    }
    if (sp->fail_seg != sp->rseg) {
        sp->fail_seg = sp->rseg;
        sp->fail_rounds = 0;
    }
    if (++sp->fail_rounds >= BG_AUDIT_SPOOL_READ_TRIES)
        return bg_audit__move_aside(sp, strerror(e));
    if (bg_audit__fail_log_due(sp))
        bg_log_error("audit",
                     "spool segment %s cannot be read: %s (attempt %u of %u, then it is moved "
                     "aside); the spool drain waits for it",
                     path, strerror(e), sp->fail_rounds, BG_AUDIT_SPOOL_READ_TRIES);
    return 0;
}

int bg_audit_spool_read(bg_audit_spool_t *sp, size_t max, bg_audit_spool_rec_cb cb, void *arg)
{
    bg_audit_rd_t rd = {.sp = sp, .cb = cb, .arg = arg};
    while (rd.count < max && sp->unread > 0) {
        int f = bg_audit__fill(sp);
        if (f < 0) {
            if (f == BG_AUDIT__FILL_ERR && rd.count > 0) /* deliver the records before it first */
                break;
            if (bg_audit__read_failed(sp, f))
                continue;
            /* Stuck here: the records before it go out, it is tried again next time. */
            return rd.count > 0 ? (int)rd.count : -1;
        }
        if (f == BG_AUDIT__FILL_OK && sp->fail_seg == sp->rseg) { /* "in a row" ends */
            sp->fail_seg = 0;
            sp->fail_rounds = 0;
        }
        if (f == BG_AUDIT__FILL_GONE)
            bg_audit__recount(sp); /* deleted under us: its bytes are no backlog */
        if (f == BG_AUDIT__FILL_GONE || sp->roff >= sp->buflen) {
            int next = bg_audit__next_seg(sp, f == BG_AUDIT__FILL_GONE);
            if (next < 0) { /* where to go on is unknown: stay, the drain retries */
                bg_audit__log_transient(sp, "directory listing", errno);
                if (rd.count > 0)
                    break;
                return -1;
            }
            if (next == 0) {
                sp->unread = 0; /* no further segment: nothing after the cursor */
                break;
            }
            continue;
        }
        rd.base = (size_t)sp->roff;
        rd.left = max - rd.count;
        if (sp->budget_seg != sp->rseg) { /* a read in batches shares one budget per segment */
            sp->budget_seg = sp->rseg;
            sp->budget.spent = 0;
        }
        size_t end = bg_audit__scan(sp->buf + sp->roff, sp->buflen - sp->roff, sp->roff,
                                    &sp->budget, bg_audit__rd_rec, bg_audit__rd_bad, &rd);
        sp->unread -= end <= sp->unread ? end : sp->unread;
        sp->roff += end;
    }
    return (int)rd.count;
}

/* Overwrites spool.ack in place with a fixed-width line: once the file
 * exists this needs no new disk block, so a full disk (the spool filled it)
 * cannot stop the position from moving and the drain from freeing space. A
 * torn line reads as no position: the spool is then read from its oldest
 * segment again (duplicates with the same event ids, never a loss). */
static int bg_audit__write_ack(bg_audit_spool_t *sp)
{
    char path[4096], line[64];
    snprintf(path, sizeof path, "%s/spool.ack", sp->dir);
    snprintf(line, sizeof line, "%010" PRIu32 " %020" PRIu64, sp->rseg, sp->roff);
    int n = BG_AUDIT__ACK_POS;
    n += snprintf(line + n, sizeof line - (size_t)n, " %08" PRIx32 "\n",
                  bg_audit_crc32c(0, line, BG_AUDIT__ACK_POS));
    struct stat st;
    int created = stat(path, &st) != 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    int ok = n == BG_AUDIT__ACK_LEN && pwrite(fd, line, (size_t)n, 0) == n && fdatasync(fd) == 0;
    close(fd);
    if (ok && created) /* the new name must survive a power loss too */
        ok = bg_audit__sync_dir(sp) == 0;
    return ok ? 0 : -1;
}

/* Deletes the segments on disk before the ack position (every one of
 * them, not every number: see bg_audit__seg_after). */
static void bg_audit__delete_before(bg_audit_spool_t *sp)
{
    uint32_t *v;
    size_t n;
    if (bg_audit_spool_segs(sp->dir, &v, &n) != 0)
        return; /* tried again at the next acknowledgement */
    for (size_t i = 0; i < n && v[i] < sp->aseg; i++) {
        char path[4096];
        if (bg_audit__skipped(sp, v[i]))
            continue; /* unreadable, left for the operator */
        bg_audit__seg_path(sp, v[i], path, sizeof path);
        unlink(path);
    }
    free(v);
    sp->first = sp->aseg;
    bg_audit__recount(sp); /* what is on disk now, whoever deleted what */
}

int bg_audit_spool_ack(bg_audit_spool_t *sp)
{
    if (sp->rseg == sp->aseg && sp->roff == sp->aoff)
        return 0;
    if (bg_audit__write_ack(sp) != 0) {
        bg_log_error("audit", "spool ack: %s", strerror(errno));
        return -1;
    }
    sp->aseg = sp->rseg;
    sp->aoff = sp->roff;
    sp->unread_at_ack = sp->unread;
    sp->arecs = sp->rrecs;
    /* A segment left by an earlier process and now read to its end is done
     * too (it never grows again): step past it so it is deleted below. */
    int stepped = 0;
    uint32_t next;
    while (sp->aseg < sp->wseg && sp->unread == 0 &&
           sp->aoff >= bg_audit__seg_size(sp, sp->aseg) &&
           bg_audit__seg_after(sp, sp->aseg, sp->wseg, &next) == 0) { /* else: next time */
        sp->rseg = sp->aseg = next;
        sp->roff = sp->aoff = 0;
        sp->rrecs = sp->arecs = 0;
        stepped = 1;
    }
    /* The acknowledgement above stands (persisted): what follows only tidies
     * up, and is done again at the next acknowledgement if it fails now. */
    if (stepped && bg_audit__write_ack(sp) != 0) {
        bg_log_error("audit", "spool ack (past a finished segment): %s", strerror(errno));
        return 0;
    }
    if (sp->first < sp->aseg)
        bg_audit__delete_before(sp);
    /* The active segment, once fully drained, goes too: the space counts
     * against max_bytes, and the next append starts a fresh segment. */
    if (sp->wfd >= 0 && sp->aseg == sp->wseg && sp->aoff == sp->woff) {
        /* The position moves past it (persisted) before it is deleted: a
         * crash in between leaves a segment that is simply read past. */
        sp->rseg = sp->wseg + 1;
        sp->roff = 0;
        if (bg_audit__write_ack(sp) != 0) {
            bg_log_error("audit", "spool ack (past the drained segment): %s", strerror(errno));
            sp->rseg = sp->aseg;
            sp->roff = sp->aoff;
            return 0;
        }
        close(sp->wfd);
        sp->wfd = -1;
        sp->unsynced = 0; /* deleted: nothing of it is waiting for the disk */
        char path[4096];
        bg_audit__seg_path(sp, sp->wseg, path, sizeof path);
        unlink(path);
        sp->bytes -= sp->woff;
        sp->wseg++;
        sp->first = sp->aseg = sp->rseg = sp->wseg;
        sp->aoff = sp->roff = sp->woff = 0;
        sp->rrecs = sp->arecs = 0;
    }
    return 0;
}

void bg_audit_spool_rewind(bg_audit_spool_t *sp)
{
    sp->rseg = sp->aseg;
    sp->roff = sp->aoff;
    sp->unread = sp->unread_at_ack;
    sp->rrecs = sp->arecs;
    sp->budget_seg = 0; /* read again with the whole allowance, not what the failed read left */
}

int bg_audit_spool_empty(const bg_audit_spool_t *sp) { return sp->unread == 0; }
uint64_t bg_audit_spool_bytes(const bg_audit_spool_t *sp) { return sp->bytes; }
uint64_t bg_audit_spool_corrupt(const bg_audit_spool_t *sp) { return sp->corrupt; }
uint64_t bg_audit_spool_unreadable(const bg_audit_spool_t *sp) { return sp->unreadable; }

uint64_t bg_audit_spool_check(bg_audit_spool_t *sp)
{
    struct stat st;
    char path[4096];
    if (sp->wfd < 0 || fstat(sp->wfd, &st) != 0 || st.st_nlink > 0)
        return 0;
    /* Deleted under the writer: appends would go on into a file no reader
     * can open. What was not delivered of it is gone. */
    uint64_t done = sp->aseg == sp->wseg ? sp->arecs : 0;
    uint64_t lost = sp->wrecs > done ? sp->wrecs - done : 0;
    bg_audit__seg_path(sp, sp->wseg, path, sizeof path);
    bg_log_error("audit",
                 "spool segment %s was deleted while busgate wrote to it: %" PRIu64
                 " event(s) in it not delivered are lost; a new segment is started",
                 path, lost);
    close(sp->wfd); /* no sync: nothing can read it */
    sp->wfd = -1;
    sp->wseg++;
    sp->unsynced = 0;
    sp->wrecs = 0;
    bg_audit__recount(sp);
    return lost;
}

void bg_audit_spool_close(bg_audit_spool_t *sp)
{
    if (!sp)
        return;
    if (sp->wfd >= 0) {
        if (fdatasync(sp->wfd) != 0)
            bg_log_warn("audit", "spool fdatasync: %s", strerror(errno));
        close(sp->wfd);
    }
    free(sp->buf);
    free(sp->dir);
    free(sp);
}
