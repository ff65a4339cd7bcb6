/* ${file:PATH} and ${env:NAME} expansion inside scalar values.
 *
 * Secrets stay out of the config file: the operator writes a reference and
 * the loader substitutes it. Messages name the reference (a path or a
 * variable name), never the value it resolved to. "$${" is a literal "${". */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker/config-internal.h"

#define BG_CFG_MAX_SECRET (64u << 10)
#define BG_CFG_MAX_VALUE (1u << 20)

typedef struct bg_cfg_buf_s {
    char *p;
    size_t len, cap;
    int failed;
} bg_cfg_buf_t;

/* Moves b into a block of cap bytes. Not realloc: the old block may hold a
 * secret, and realloc would hand it back to the allocator unwiped. */
static int bg_cfg__buf_grow(bg_cfg_buf_t *b, size_t cap)
{
    char *np = malloc(cap);
    if (!np)
        return -1;
    if (b->p) {
        memcpy(np, b->p, b->len + 1);
        explicit_bzero(b->p, b->cap);
        free(b->p);
    }
    b->p = np;
    b->cap = cap;
    return 0;
}

static void bg_cfg__buf_add(bg_cfg_buf_t *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > BG_CFG_MAX_VALUE) {
        b->failed = 1;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (bg_cfg__buf_grow(b, cap) != 0) {
            b->failed = 1;
            return;
        }
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* Reads a secret file (regular, at most 64 KiB) into b, dropping one
 * trailing newline. Returns NULL or a static reason. */
static const char *bg_cfg__read_secret(const char *path, bg_cfg_buf_t *b)
{
    char tmp[BG_CFG_MAX_SECRET + 1];
    struct stat st;
    /* O_NONBLOCK: a FIFO named here must not hang the loader. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return strerror(errno);
    const char *why = NULL;
    ssize_t n = 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        why = "not a regular file";
    else if (st.st_size > BG_CFG_MAX_SECRET)
        why = "file too large (max 64 KiB)";
    else if ((n = read(fd, tmp, sizeof tmp)) < 0)
        why = strerror(errno);
    else if (memchr(tmp, '\0', (size_t)n))
        why = "file contains a NUL byte";
    close(fd);
    if (why) {
        if (n > 0)
            explicit_bzero(tmp, (size_t)n);
        return why;
    }
    if (n > 0 && tmp[n - 1] == '\n')
        n -= (n > 1 && tmp[n - 2] == '\r') ? 2 : 1;
    bg_cfg__buf_add(b, tmp, (size_t)n);
    explicit_bzero(tmp, (size_t)n);
    return NULL;
}

static int bg_cfg__env_name_ok(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!(c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (i > 0 && c >= '0' && c <= '9')))
            return 0;
    }
    return 1;
}

/* Resolves one reference (text between "${" and "}") into b. */
static int bg_cfg__resolve(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path,
                           const char *ref, size_t len, bg_cfg_buf_t *b)
{
    char name[512];
    if (len >= 4 && memcmp(ref, "env:", 4) == 0) {
        snprintf(name, sizeof name, "%.*s", (int)(len - 4), ref + 4);
        const char *v = bg_cfg__env_name_ok(ref + 4, len - 4) ? getenv(name) : NULL;
        if (!bg_cfg__env_name_ok(ref + 4, len - 4))
            bg_cfg__err(ctx, n, path, "bad environment variable name in '${env:%.80s}'", name);
        else if (!v)
            bg_cfg__err(ctx, n, path, "environment variable '%s' is not set", name);
        else
            bg_cfg__buf_add(b, v, strlen(v));
        return v ? 0 : -1;
    }
    if (len > 5 && len - 5 < sizeof name && memcmp(ref, "file:", 5) == 0) {
        memcpy(name, ref + 5, len - 5);
        name[len - 5] = '\0';
        const char *full = bg_cfg__relpath(ctx, name);
        const char *why = full ? bg_cfg__read_secret(full, b) : "out of memory";
        if (why)
            bg_cfg__err(ctx, n, path, "cannot read '${file:%s}' (%s): %s", name,
                        full ? full : name, why);
        return why ? -1 : 0;
    }
    bg_cfg__err(ctx, n, path, "unknown reference '${%.*s}' (expected ${file:PATH} or ${env:NAME})",
                (int)(len > 80 ? 80 : len), ref);
    return -1;
}

char *bg_cfg__expand(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, const char *raw,
                     size_t len, int *expanded)
{
    const char *p = raw, *end = raw + len;
    bg_cfg_buf_t b = {0};
    int bad = 0;
    *expanded = 0;
    bg_cfg__buf_add(&b, "", 0);
    while (p < end) {
        const char *d = memchr(p, '$', end - p);
        if (!d) {
            bg_cfg__buf_add(&b, p, end - p);
            break;
        }
        bg_cfg__buf_add(&b, p, d - p);
        if (end - d >= 3 && d[1] == '$' && d[2] == '{') {
            bg_cfg__buf_add(&b, "${", 2); /* escaped */
            p = d + 3;
            continue;
        }
        if (end - d < 2 || d[1] != '{') {
            bg_cfg__buf_add(&b, d, 1);
            p = d + 1;
            continue;
        }
        const char *close = memchr(d + 2, '}', end - d - 2);
        if (!close) {
            bg_cfg__err(ctx, n, path, "unterminated '${' (write '$${' for a literal '${')");
            bad = 1;
            break;
        }
        *expanded = 1;
        if (bg_cfg__resolve(ctx, n, path, d + 2, close - d - 2, &b) < 0)
            bad = 1;
        p = close + 1;
    }
    if (b.failed && !bad)
        bg_cfg__err(ctx, n, path, "value too large after expansion (max 1 MiB)");
    char *out = bad || b.failed ? NULL : bg_cfg__strndup(ctx, b.p, b.len);
    if (b.p) {
        explicit_bzero(b.p, b.cap); /* may hold a secret */
        free(b.p);
    }
    return out;
}
