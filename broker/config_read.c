/* Typed readers over libfyaml nodes for the configuration loader. Every
 * reader reports its own errors at the offending node with the key path, so
 * section parsers stay declarative. See config-internal.h for the return
 * convention (1 stored, 0 absent, -1 error). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "broker/config-internal.h"

int bg_cfg__is_null(struct fy_node *n)
{
    if (!n)
        return 1;
    if (!fy_node_is_scalar(n) || fy_node_is_alias(n))
        return 0;
    enum fy_node_style st = fy_node_get_style(n);
    if (st != FYNS_PLAIN && st != FYNS_ANY)
        return 0; /* "null" in quotes is a string */
    size_t len;
    const char *s = fy_node_get_scalar(n, &len);
    static const char *const nulls[] = {"~", "null", "Null", "NULL"};
    if (!s || len == 0)
        return 1;
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
        if (strlen(nulls[i]) == len && memcmp(s, nulls[i], len) == 0)
            return 1;
    return 0;
}

const char *bg_cfg__kind(struct fy_node *n)
{
    if (!n)
        return "nothing";
    if (fy_node_is_alias(n))
        return "an alias (anchors and aliases are not supported)";
    if (fy_node_is_mapping(n))
        return "a mapping";
    if (fy_node_is_sequence(n))
        return "a sequence";
    return "a scalar";
}

/* Copies at most 64 bytes of a key for messages, replacing control bytes. */
static void bg_cfg__printable(char *dst, size_t cap, const char *s, size_t len)
{
    size_t i = 0;
    for (; i < len && i + 1 < cap && i < 64; i++)
        dst[i] = isprint((unsigned char)s[i]) ? s[i] : '?';
    dst[i] = '\0';
}

static void bg_cfg__allowed(char *buf, size_t cap, const char *const *keys)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; keys[i] && len < cap; i++)
        len += snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", keys[i]);
}

static void bg_cfg__map_pair(bg_cfg_ctx_t *ctx, const char *path, const char *const *keys,
                             bg_cfg_map_t *m, struct fy_node *k, struct fy_node *v)
{
    char kname[72], kpath[BG_CFG_PATH_MAX], allowed[512];
    size_t klen = 0;
    const char *ks = k && fy_node_is_scalar(k) && !fy_node_is_alias(k) ? fy_node_get_scalar(k, &klen)
                                                                      : NULL;
    if (!ks) {
        bg_cfg__err(ctx, k ? k : v, path, "keys must be plain strings, got %s", bg_cfg__kind(k));
        return;
    }
    bg_cfg__printable(kname, sizeof kname, ks, klen);
    bg_cfg__join(kpath, path, kname);
    for (size_t i = 0; keys[i]; i++) {
        if (strlen(keys[i]) != klen || memcmp(keys[i], ks, klen) != 0)
            continue;
        if (m->key[i]) {
            int line = 1, col = 1;
            bg_cfg__pos(m->key[i], &line, &col);
            bg_cfg__err(ctx, k, kpath, "duplicate key '%s' (first at line %d)", kname, line);
            return;
        }
        m->key[i] = k;
        m->val[i] = v;
        return;
    }
    bg_cfg__allowed(allowed, sizeof allowed, keys);
    bg_cfg__err(ctx, k, kpath, "unknown key '%s' (allowed: %s)", kname, allowed);
}

int bg_cfg__map(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, const char *const *keys,
                bg_cfg_map_t *m)
{
    memset(m, 0, sizeof(*m));
    m->self = n;
    if (bg_cfg__is_null(n))
        return 0;
    if (!fy_node_is_mapping(n)) {
        bg_cfg__err(ctx, n, path, "expected a mapping, got %s", bg_cfg__kind(n));
        return -1;
    }
    void *it = NULL;
    struct fy_node_pair *p;
    while ((p = fy_node_mapping_iterate(n, &it)))
        bg_cfg__map_pair(ctx, path, keys, m, fy_node_pair_key(p), fy_node_pair_value(p));
    return 1;
}

int bg_cfg__require(bg_cfg_ctx_t *ctx, const bg_cfg_map_t *m, const char *const *keys, size_t i,
                    const char *path)
{
    if (!bg_cfg__is_null(m->val[i]))
        return 0;
    if (m->key[i]) {
        char kpath[BG_CFG_PATH_MAX];
        bg_cfg__join(kpath, path, keys[i]);
        bg_cfg__err(ctx, m->key[i], kpath, "a value is required");
    } else {
        bg_cfg__err(ctx, m->self, path, "missing required key '%s'", keys[i]);
    }
    return -1;
}

int bg_cfg__seq(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, size_t *count)
{
    *count = 0;
    if (bg_cfg__is_null(n))
        return 0;
    if (!fy_node_is_sequence(n)) {
        bg_cfg__err(ctx, n, path, "expected a sequence, got %s", bg_cfg__kind(n));
        return -1;
    }
    int c = fy_node_sequence_item_count(n);
    *count = c > 0 ? (size_t)c : 0;
    return 1;
}

static int bg_cfg__scalar_as(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path,
                             const char *expected, const char **val, const char **shown)
{
    if (bg_cfg__is_null(n))
        return 0;
    if (!fy_node_is_scalar(n) || fy_node_is_alias(n)) {
        bg_cfg__err(ctx, n, path, "expected %s, got %s", expected, bg_cfg__kind(n));
        return -1;
    }
    size_t len;
    const char *raw = fy_node_get_scalar(n, &len);
    int expanded = 0;
    if (!raw || memchr(raw, '\0', len)) {
        bg_cfg__err(ctx, n, path, "the value contains a NUL byte");
        return -1;
    }
    char *v = bg_cfg__expand(ctx, n, path, raw, len, &expanded);
    if (!v)
        return -1;
    *val = v;
    *shown = expanded ? bg_cfg__strndup(ctx, raw, len) : v;
    return *shown ? 1 : -1;
}

int bg_cfg__scalar(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, const char **val,
                   const char **shown)
{
    return bg_cfg__scalar_as(ctx, n, path, "a string", val, shown);
}

int bg_cfg__get_str(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, char **out)
{
    const char *v, *shown;
    int r = bg_cfg__scalar(ctx, n, path, &v, &shown);
    if (r <= 0)
        return r;
    if (!*v) {
        bg_cfg__err(ctx, n, path, "expected a non-empty string");
        return -1;
    }
    *out = (char *)v;
    return 1;
}

char *bg_cfg__relpath(bg_cfg_ctx_t *ctx, const char *p)
{
    if (p[0] == '/' || strcmp(ctx->basedir, ".") == 0)
        return (char *)p;
    size_t bl = strlen(ctx->basedir), pl = strlen(p);
    char *out = bg_cfg__alloc(ctx, bl + pl + 2);
    if (out)
        snprintf(out, bl + pl + 2, "%s/%s", ctx->basedir, p);
    return out;
}

int bg_cfg__get_file(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, char **out)
{
    char *v;
    int r = bg_cfg__get_str(ctx, n, path, &v);
    if (r <= 0)
        return r;
    *out = bg_cfg__relpath(ctx, v);
    return *out ? 1 : -1;
}

int bg_cfg__get_url(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, char **out)
{
    const char *v, *shown;
    int r = bg_cfg__scalar_as(ctx, n, path, "a URL", &v, &shown);
    if (r <= 0)
        return r;
    size_t skip = strncmp(v, "http://", 7) == 0 ? 7 : strncmp(v, "https://", 8) == 0 ? 8 : 0;
    if (!skip || !v[skip] || v[skip] == '/') {
        bg_cfg__err(ctx, n, path, "expected an http:// or https:// URL with a host, got '%.80s'",
                    shown);
        return -1;
    }
    *out = (char *)v;
    return 1;
}

int bg_config_host_is_loopback(const char *h, size_t hl)
{
    if (hl == 5 && strncmp(h, "[::1]", 5) == 0)
        return 1;
    if ((hl == 3 && strncmp(h, "::1", 3) == 0) || (hl == 9 && strncasecmp(h, "localhost", 9) == 0))
        return 1;
    /* 127.0.0.0/8 written as a dotted quad */
    unsigned a, b, c, d;
    char tail, host[64];
    if (hl >= sizeof host)
        return 0;
    memcpy(host, h, hl);
    host[hl] = 0;
    return sscanf(host, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) == 4 && a == 127 && b < 256 &&
           c < 256 && d < 256;
}

int bg_cfg__url_plain_remote(const char *url)
{
    if (strncmp(url, "http://", 7) != 0)
        return 0;
    const char *h = url + 7, *at = strpbrk(h, "@/?#");
    if (at && *at == '@') /* user info before the host */
        h = at + 1;
    size_t n = strcspn(h, "/?#");
    if (n >= 5 && strncmp(h, "[::1]", 5) == 0 && (n == 5 || h[5] == ':'))
        return 0;
    size_t hl = h[0] == '[' ? n : strcspn(h, ":/?#");
    return !bg_config_host_is_loopback(h, hl);
}

int bg_cfg__get_bool(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, int *out)
{
    static const char *const yes[] = {"true", "True", "TRUE"}, *const no[] = {"false", "False",
                                                                              "FALSE"};
    const char *v, *shown;
    int r = bg_cfg__scalar_as(ctx, n, path, "a bool", &v, &shown);
    if (r <= 0)
        return r;
    for (size_t i = 0; i < 3; i++) {
        if (strcmp(v, yes[i]) == 0 || strcmp(v, no[i]) == 0) {
            *out = strcmp(v, yes[i]) == 0;
            return 1;
        }
    }
    bg_cfg__err(ctx, n, path, "expected a bool (true or false), got '%.80s'", shown);
    return -1;
}

int bg_cfg__get_int(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, int64_t min,
                    int64_t max, int64_t *out)
{
    const char *v, *shown;
    int r = bg_cfg__scalar_as(ctx, n, path, "an integer", &v, &shown);
    if (r <= 0)
        return r;
    const char *p = v + (*v == '-');
    int64_t x = 0;
    int ok = isdigit((unsigned char)*p);
    for (; ok && *p; p++) {
        if (!isdigit((unsigned char)*p) || x > (INT64_MAX - 9) / 10)
            ok = 0;
        else
            x = x * 10 + (*p - '0');
    }
    x = *v == '-' ? -x : x;
    if (!ok || x < min || x > max) {
        bg_cfg__err(ctx, n, path, "expected an integer between %lld and %lld, got '%.80s'",
                    (long long)min, (long long)max, shown);
        return -1;
    }
    *out = x;
    return 1;
}

int bg_cfg__get_duration(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, int64_t *out)
{
    const char *v, *shown;
    int r = bg_cfg__scalar_as(ctx, n, path, "a duration", &v, &shown);
    if (r <= 0)
        return r;
    int64_t ms = bg_config_parse_duration(v);
    if (ms < 0) {
        bg_cfg__err(ctx, n, path,
                    "bad duration '%.80s' (expected a number and a unit: ms, s, m, h or d, "
                    "e.g. 30s)",
                    shown);
        return -1;
    }
    if (ms > BG_CONFIG_MAX_DURATION_MS) {
        bg_cfg__err(ctx, n, path, "duration '%.80s' is too long (at most 365d)", shown);
        return -1;
    }
    *out = ms;
    return 1;
}

/* Parses "123", "64KiB", "100 MiB", "1GB" into bytes; -1 on error. */
static int bg_cfg__parse_size(const char *s, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {{"", 1},          {"B", 1},           {"KiB", 1ull << 10}, {"MiB", 1ull << 20},
                 {"GiB", 1ull << 30}, {"KB", 1000},     {"MB", 1000000},     {"GB", 1000000000}};
    uint64_t n = 0;
    if (!isdigit((unsigned char)*s))
        return -1;
    for (; isdigit((unsigned char)*s); s++) {
        if (n > (UINT64_MAX - 9) / 10)
            return -1;
        n = n * 10 + (uint64_t)(*s - '0');
    }
    if (*s == ' ')
        s++;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(s, units[i].unit) == 0) {
            if (n > UINT64_MAX / units[i].mult)
                return -1;
            *out = n * units[i].mult;
            return 0;
        }
    }
    return -1;
}

int bg_cfg__get_size(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, uint64_t min,
                     uint64_t max, uint64_t *out)
{
    const char *v, *shown;
    int r = bg_cfg__scalar_as(ctx, n, path, "a size", &v, &shown);
    if (r <= 0)
        return r;
    uint64_t b;
    if (bg_cfg__parse_size(v, &b) < 0) {
        bg_cfg__err(ctx, n, path,
                    "bad size '%.80s' (expected bytes or a number with KiB, MiB, GiB, KB, MB, "
                    "GB)",
                    shown);
        return -1;
    }
    if (b < min || b > max) {
        bg_cfg__err(ctx, n, path, "size %llu is out of range (%llu..%llu bytes)",
                    (unsigned long long)b, (unsigned long long)min, (unsigned long long)max);
        return -1;
    }
    *out = b;
    return 1;
}

int bg_cfg__get_addr(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, int upstream,
                     bg_addr_t *out)
{
    const char *v, *shown, *why = NULL;
    int r = bg_cfg__scalar_as(ctx, n, path, "an address (host:port)", &v, &shown);
    if (r <= 0)
        return r;
    bg_addr_t a = {0};
    if (bg_config_parse_addr(v, &a, &why) < 0) {
        bg_cfg__err(ctx, n, path, "bad address '%.80s': %s", shown, why);
        return -1;
    }
    out->host = bg_cfg__strdup(ctx, a.host);
    out->port = a.port;
    free(a.host);
    if (upstream && out->port == 0) {
        bg_cfg__err(ctx, n, path, "bad address '%.80s': port 0 is only valid for a listener",
                    shown);
        return -1;
    }
    return out->host ? 1 : -1;
}

int bg_cfg__get_enum(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path,
                     const char *const *names, int *out)
{
    const char *v, *shown;
    char alts[256];
    size_t len = 0;
    int r = bg_cfg__scalar(ctx, n, path, &v, &shown);
    if (r <= 0)
        return r;
    for (int i = 0; names[i]; i++) {
        if (strcmp(v, names[i]) == 0) {
            *out = i;
            return 1;
        }
    }
    alts[0] = '\0';
    for (int i = 0; names[i] && len < sizeof alts; i++)
        len += snprintf(alts + len, sizeof alts - len, "%s%s", i ? "|" : "", names[i]);
    bg_cfg__err(ctx, n, path, "unknown value '%.80s' (expected %s)", shown, alts);
    return -1;
}

void bg_cfg__err_why(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, const char *why,
                     const char *value, const char *shown)
{
    char msg[512];
    size_t len = 0, vlen = strnlen(value, 64);
    if (!why || !*why)
        why = "invalid value";
    if (!strchr(why, '\'')) {
        /* A why without the value ("subject names take no wildcards"):
         * quote the value after the first clause. */
        const char *paren = strstr(why, " (");
        size_t head = paren ? (size_t)(paren - why) : strlen(why);
        bg_cfg__err(ctx, n, path, "%.*s '%.80s'%s", (int)head, why, shown, why + head);
        return;
    }
    /* The helpers quote the value they were given: when it was expanded
     * from a ${...} reference, show the reference instead of the secret. */
    for (const char *w = why; *w && len + 1 < sizeof msg;) {
        if (vlen && value != shown && strncmp(w, value, vlen) == 0) {
            len += snprintf(msg + len, sizeof msg - len, "%.80s", shown);
            w += vlen;
        } else {
            msg[len++] = *w++;
        }
    }
    msg[len < sizeof msg ? len : sizeof msg - 1] = '\0';
    bg_cfg__err(ctx, n, path, "%s", msg);
}

int bg_cfg__get_strlist(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, int nonempty,
                        int (*check)(const char *s, const char **why), char ***out,
                        size_t *nout)
{
    size_t count, k = 0;
    int r = bg_cfg__seq(ctx, n, path, &count), bad = 0;
    if (r <= 0)
        return r;
    if (count == 0 && nonempty) {
        bg_cfg__err(ctx, n, path, "must not be empty");
        return -1;
    }
    char **arr = bg_cfg__alloc(ctx, (count + 1) * sizeof(*arr));
    if (!arr)
        return -1;
    void *it = NULL;
    struct fy_node *item;
    for (size_t i = 0; (item = fy_node_sequence_iterate(n, &it)); i++) {
        char ipath[BG_CFG_PATH_MAX];
        const char *v, *shown, *why = "invalid";
        bg_cfg__index(ipath, path, i);
        if (bg_cfg__scalar(ctx, item, ipath, &v, &shown) <= 0) {
            if (bg_cfg__is_null(item))
                bg_cfg__err(ctx, item, ipath, "expected a string, got null");
            bad = 1;
        } else if (!*v) {
            bg_cfg__err(ctx, item, ipath, "expected a non-empty string");
            bad = 1;
        } else if (check && check(v, &why) < 0) {
            bg_cfg__err_why(ctx, item, ipath, why, v, shown);
            bad = 1;
        } else {
            arr[k++] = (char *)v;
        }
    }
    if (bad)
        return -1;
    *out = arr;
    *nout = k;
    return 1;
}

/* ---- names seen in a sequence ---- */

struct bg_cfg_name_slot_s {
    const char *name; /* NULL: free slot */
    uint64_t hash;
    size_t first, last; /* items carrying this name */
};

static uint64_t bg_cfg__name_hash(const char *s, int nocase)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)(nocase ? tolower((unsigned char)*s) : *s)) * 1099511628211ull;
    return h;
}

/* The slot holding name, or the free slot where it would go. */
static struct bg_cfg_name_slot_s *bg_cfg__names_slot(const bg_cfg_names_t *t, const char *name,
                                                     uint64_t h)
{
    for (size_t k = (size_t)h & (t->cap - 1);; k = (k + 1) & (t->cap - 1)) {
        struct bg_cfg_name_slot_s *s = &t->slot[k];
        if (!s->name ||
            (s->hash == h && (t->nocase ? strcasecmp(s->name, name) : strcmp(s->name, name)) == 0))
            return s;
    }
}

void bg_cfg__names_init(bg_cfg_ctx_t *ctx, bg_cfg_names_t *t, size_t n, int nocase)
{
    size_t cap = 16;
    memset(t, 0, sizeof(*t));
    while (cap < 2 * n) /* load factor at most 1/2 */
        cap *= 2;
    t->slot = calloc(cap, sizeof(*t->slot));
    t->next = malloc((n ? n : 1) * sizeof(*t->next));
    if (!t->slot || !t->next) {
        bg_cfg__names_free(t);
        bg_cfg__err_at(ctx, 1, 1, "", "out of memory");
        return;
    }
    t->cap = cap;
    t->n = n;
    t->nocase = nocase;
}

size_t bg_cfg__names_add(bg_cfg_names_t *t, const char *name, size_t i)
{
    if (!name || !t->slot || i >= t->n)
        return SIZE_MAX;
    uint64_t h = bg_cfg__name_hash(name, t->nocase);
    struct bg_cfg_name_slot_s *s = bg_cfg__names_slot(t, name, h);
    t->next[i] = SIZE_MAX;
    if (!s->name) {
        *s = (struct bg_cfg_name_slot_s){name, h, i, i};
        return SIZE_MAX;
    }
    t->next[s->last] = i;
    s->last = i;
    return s->first;
}

size_t bg_cfg__names_first(const bg_cfg_names_t *t, const char *name)
{
    if (!name || !t->slot)
        return SIZE_MAX;
    const struct bg_cfg_name_slot_s *s =
        bg_cfg__names_slot(t, name, bg_cfg__name_hash(name, t->nocase));
    return s->name ? s->first : SIZE_MAX;
}

size_t bg_cfg__names_next(const bg_cfg_names_t *t, size_t j)
{
    return j < t->n ? t->next[j] : SIZE_MAX;
}

void bg_cfg__names_free(bg_cfg_names_t *t)
{
    free(t->slot);
    free(t->next);
    memset(t, 0, sizeof(*t));
}

int bg_cfg__gave_up(const bg_cfg_ctx_t *ctx)
{
    return ctx->nerr > BG_CFG_MAX_ERRORS;
}
