/* busgate configuration loader: YAML document -> bg_config_t.
 *
 * libfyaml builds the whole document first (its syntax diagnostics are
 * collected, never printed; a second document in the file is an error);
 * the section parsers in config_sections.c and config_policy.c then walk
 * the tree with the typed readers of config_read.c, reporting every
 * problem rather than stopping at the first.
 * All memory of a config hangs off one arena freed by bg_config_free. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker/config-internal.h"
#include "broker/utf8.h"

/* A config file larger than this is surely a mistake (or an attack on the
 * loader); the limit keeps bg_config_load bounded. */
#define BG_CFG_MAX_FILE (16u << 20)

/* ---- arena: a list of malloc'd chunks, each one allocation ---- */

typedef struct bg_cfg_chunk_s {
    struct bg_cfg_chunk_s *next;
    size_t size; /* of data, so bg_config_free can wipe it */
    max_align_t data[];
} bg_cfg_chunk_t;

void *bg_cfg__alloc(bg_cfg_ctx_t *ctx, size_t size)
{
    bg_cfg_chunk_t *c = calloc(1, sizeof(*c) + size);
    if (!c) {
        bg_cfg__err_at(ctx, 1, 1, "", "out of memory");
        return NULL;
    }
    c->size = size;
    c->next = ctx->cfg->arena;
    ctx->cfg->arena = c;
    return c->data;
}

char *bg_cfg__strndup(bg_cfg_ctx_t *ctx, const char *s, size_t n)
{
    char *d = bg_cfg__alloc(ctx, n + 1);
    if (d)
        memcpy(d, s, n);
    return d;
}

char *bg_cfg__strdup(bg_cfg_ctx_t *ctx, const char *s)
{
    return s ? bg_cfg__strndup(ctx, s, strlen(s)) : NULL;
}

/* ---- errors ---- */

static void bg_cfg__push(bg_config_errors_t *errs, char *msg)
{
    if (!errs || !msg) {
        free(msg);
        return;
    }
    char **nm = realloc(errs->msgs, (errs->n + 1) * sizeof(*nm));
    if (!nm) {
        free(msg);
        return;
    }
    errs->msgs = nm;
    errs->msgs[errs->n++] = msg;
}

void bg_cfg__verr_at(bg_cfg_ctx_t *ctx, int line, int col, const char *path, const char *fmt,
                     va_list ap)
{
    if (!ctx->errs) {
        ctx->nerr++;
        return;
    }
    if (ctx->nerr > BG_CFG_MAX_ERRORS)
        return;
    char msg[768], *out = NULL;
    if (ctx->nerr == BG_CFG_MAX_ERRORS)
        snprintf(msg, sizeof msg, "too many errors, giving up");
    else
        vsnprintf(msg, sizeof msg, fmt, ap);
    int r = path && *path ? asprintf(&out, "%s:%d:%d: %s: %s", ctx->name, line, col, path, msg)
                          : asprintf(&out, "%s:%d:%d: %s", ctx->name, line, col, msg);
    ctx->nerr++;
    if (r >= 0)
        bg_cfg__push(ctx->errs, out);
}

void bg_cfg__err_at(bg_cfg_ctx_t *ctx, int line, int col, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bg_cfg__verr_at(ctx, line, col, path, fmt, ap);
    va_end(ap);
}

void bg_cfg__err(bg_cfg_ctx_t *ctx, struct fy_node *at, const char *path, const char *fmt, ...)
{
    int line = 1, col = 1;
    bg_cfg__pos(at, &line, &col);
    va_list ap;
    va_start(ap, fmt);
    bg_cfg__verr_at(ctx, line, col, path, fmt, ap);
    va_end(ap);
}

void bg_config_errors_clear(bg_config_errors_t *errs)
{
    if (!errs)
        return;
    for (size_t i = 0; i < errs->n; i++)
        free(errs->msgs[i]);
    free(errs->msgs);
    errs->msgs = NULL;
    errs->n = 0;
}

/* ---- positions ---- */

/* Position of n itself or of its first positioned descendant; libfyaml's
 * public API exposes marks only for scalar tokens (0-based). */
static int bg_cfg__pos_self(struct fy_node *n, int *line, int *col)
{
    if (!n)
        return -1;
    if (fy_node_is_scalar(n)) {
        struct fy_token *t = fy_node_get_scalar_token(n);
        const struct fy_mark *m = t ? fy_token_start_mark(t) : NULL;
        if (!m)
            return -1;
        /* Quoted scalars and aliases are marked after their opening quote
         * or '*': point at the value as written. */
        enum fy_node_style st = fy_node_get_style(n);
        int lead = (st == FYNS_SINGLE_QUOTED || st == FYNS_DOUBLE_QUOTED || st == FYNS_ALIAS) &&
                   m->column > 0;
        *line = m->line + 1;
        *col = m->column + 1 - lead;
        return 0;
    }
    void *it = NULL;
    if (fy_node_is_sequence(n)) {
        struct fy_node *item;
        while ((item = fy_node_sequence_iterate(n, &it)))
            if (bg_cfg__pos_self(item, line, col) == 0)
                return 0;
        return -1;
    }
    struct fy_node_pair *p;
    while ((p = fy_node_mapping_iterate(n, &it)))
        if (bg_cfg__pos_self(fy_node_pair_key(p), line, col) == 0 ||
            bg_cfg__pos_self(fy_node_pair_value(p), line, col) == 0)
            return 0;
    return -1;
}

/* The key whose value is n in mapping parent, or NULL. */
static struct fy_node *bg_cfg__key_of(struct fy_node *parent, struct fy_node *n)
{
    void *it = NULL;
    struct fy_node_pair *p;
    while ((p = fy_node_mapping_iterate(parent, &it)))
        if (fy_node_pair_value(p) == n)
            return fy_node_pair_key(p);
    return NULL;
}

int bg_cfg__pos(struct fy_node *n, int *line, int *col)
{
    /* An empty value ("key:") or empty collection has no mark of its own:
     * fall back to the key that introduced it, walking up sequences. */
    for (int depth = 0; n && depth < 256; depth++) {
        if (bg_cfg__pos_self(n, line, col) == 0)
            return 0;
        struct fy_node *parent = fy_node_get_parent(n);
        if (parent && fy_node_is_mapping(parent)) {
            struct fy_node *k = bg_cfg__key_of(parent, n);
            if (k && k != n && bg_cfg__pos_self(k, line, col) == 0)
                return 0;
        }
        n = parent;
    }
    *line = 1;
    *col = 1;
    return -1;
}

/* ---- paths ---- */

void bg_cfg__join(char *buf, const char *parent, const char *key)
{
    if (parent && *parent)
        snprintf(buf, BG_CFG_PATH_MAX, "%s.%s", parent, key);
    else
        snprintf(buf, BG_CFG_PATH_MAX, "%s", key);
}

void bg_cfg__index(char *buf, const char *parent, size_t i)
{
    snprintf(buf, BG_CFG_PATH_MAX, "%s[%zu]", parent, i);
}

/* ---- durations and addresses ---- */

static int64_t bg_cfg__duration_unit(const char *u)
{
    static const struct {
        const char *name;
        int64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(u, units[i].name) == 0)
            return units[i].ms;
    return -1;
}

int64_t bg_config_parse_duration(const char *s)
{
    if (!s || !isdigit((unsigned char)*s))
        return -1;
    int64_t n = 0;
    for (; isdigit((unsigned char)*s); s++) {
        if (n > (INT64_MAX - 9) / 10)
            return -1;
        n = n * 10 + (*s - '0');
    }
    if (*s == '\0')
        return n == 0 ? 0 : -1; /* a bare number has no unit: only 0 is unambiguous */
    int64_t mult = bg_cfg__duration_unit(s);
    if (mult < 0 || n > INT64_MAX / mult)
        return -1;
    return n * mult;
}

static int bg_cfg__check_host(const char *h, size_t len, const char **why)
{
    int dotted_digits = 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)h[i];
        if (!isalnum(c) && c != '.' && c != '-' && c != '_') {
            *why = "bad character in host name";
            return -1;
        }
        if (!isdigit(c) && c != '.')
            dotted_digits = 0;
    }
    if (dotted_digits) {
        char tmp[64];
        struct in_addr a4;
        if (len >= sizeof tmp || (memcpy(tmp, h, len), tmp[len] = '\0', 0) ||
            inet_pton(AF_INET, tmp, &a4) != 1) {
            *why = "bad IPv4 address";
            return -1;
        }
    }
    return 0;
}

static int bg_cfg__port(const char *p, uint16_t *out, const char **why)
{
    if (!*p) {
        *why = "missing port (expected host:port)";
        return -1;
    }
    long v = 0;
    for (const char *q = p; *q; q++) {
        if (!isdigit((unsigned char)*q) || q - p >= 6) {
            *why = isdigit((unsigned char)*q) ? "port out of range (0-65535)" : "bad port";
            return -1;
        }
        v = v * 10 + (*q - '0');
    }
    if (v > 65535) {
        *why = "port out of range (0-65535)";
        return -1;
    }
    *out = (uint16_t)v;
    return 0;
}

/* Splits s into a host (borrowed h, hlen) and a port. */
static int bg_cfg__split_addr(const char *s, const char **h, size_t *hlen, uint16_t *port,
                              const char **why)
{
    const char *colon;
    if (*s == '[') {
        const char *end = strchr(s, ']');
        char tmp[INET6_ADDRSTRLEN + 1];
        struct in6_addr a6;
        if (!end || (size_t)(end - s - 1) >= sizeof tmp) {
            *why = "bad IPv6 address (expected [addr]:port)";
            return -1;
        }
        memcpy(tmp, s + 1, end - s - 1);
        tmp[end - s - 1] = '\0';
        if (inet_pton(AF_INET6, tmp, &a6) != 1) {
            *why = "bad IPv6 address";
            return -1;
        }
        if (end[1] != ':') {
            *why = "missing port (expected [addr]:port)";
            return -1;
        }
        *h = s + 1;
        *hlen = end - s - 1;
        return bg_cfg__port(end + 2, port, why);
    }
    if (!(colon = strrchr(s, ':'))) {
        *why = "missing port (expected host:port)";
        return -1;
    }
    if (memchr(s, ':', colon - s)) {
        *why = "an IPv6 address needs brackets ([::1]:port)";
        return -1;
    }
    if (colon == s) {
        *why = "missing host (expected host:port)";
        return -1;
    }
    *h = s;
    *hlen = colon - s;
    if (bg_cfg__check_host(s, *hlen, why) < 0)
        return -1;
    return bg_cfg__port(colon + 1, port, why);
}

int bg_config_parse_addr(const char *s, bg_addr_t *out, const char **why)
{
    const char *h, *dummy;
    size_t hlen;
    uint16_t port;
    if (!why)
        why = &dummy;
    if (!s || !*s) {
        *why = "empty address";
        return -1;
    }
    if (bg_cfg__split_addr(s, &h, &hlen, &port, why) < 0)
        return -1;
    if (!(out->host = strndup(h, hlen))) {
        *why = "out of memory";
        return -1;
    }
    out->port = port;
    return 0;
}

/* ---- document ---- */

static void bg_cfg__diag_discard(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
    /* libfyaml also prints summaries ("fy_parse_load_document() failed");
     * the collected errors carry the useful part. */
}

/* YAML is Unicode text; rejecting invalid UTF-8 and control bytes up
 * front also keeps libfyaml 0.7.12 away from inputs it mis-scans (a
 * directive line with malformed UTF-8 made it loop, found by fuzzing). */
static int bg_cfg__check_text(bg_cfg_ctx_t *ctx, const char *yaml, size_t len)
{
    const unsigned char *p = (const unsigned char *)yaml;
    int line = 1, col = 1;
    for (size_t i = 0; i < len;) {
        size_t n = bg_utf8_len(p + i, len - i);
        if (n == 0 || (n == 1 && p[i] < 0x20 && p[i] != '\t' && p[i] != '\n' && p[i] != '\r') ||
            p[i] == 0x7F) {
            bg_cfg__err_at(ctx, line, col, "", "%s",
                           n == 0 ? "invalid UTF-8" : "control character in the file");
            return -1;
        }
        if (p[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
        i += n;
    }
    return 0;
}

/* Refuses a second document in the stream: busgate would enforce only the
 * first, so deny rules after a "---" (even an empty one) would be silently
 * dropped. The error points at where the second document starts. */
static void bg_cfg__no_second_doc(bg_cfg_ctx_t *ctx, struct fy_document *second)
{
    struct fy_document_state *st = fy_document_get_document_state(second);
    const struct fy_mark *m = st ? fy_document_state_start_mark(st) : NULL;
    bg_cfg__err_at(ctx, m ? m->line + 1 : 1, m ? m->column + 1 : 1, "",
                   "configuration has more than one YAML document (---); busgate reads "
                   "exactly one");
}

/* Parses the one document of the stream with the collecting diag. NULL
 * when there is none or the YAML is malformed (the diag has the errors). */
static struct fy_document *bg_cfg__parse(bg_cfg_ctx_t *ctx, struct fy_diag *diag,
                                         const char *yaml, size_t len)
{
    /* Duplicate keys are detected by bg_cfg__map, which names the path and
     * the first occurrence; libfyaml's own check would stop the parse. */
    struct fy_parse_cfg pcfg = {
        .flags = FYPCF_QUIET | FYPCF_COLLECT_DIAG | FYPCF_ALLOW_DUPLICATE_KEYS,
        .diag = diag,
    };
    struct fy_document *doc = NULL, *second = NULL;
    struct fy_parser *fyp = fy_parser_create(&pcfg);
    if (!fyp || fy_parser_set_string(fyp, yaml, len) != 0) {
        bg_cfg__err_at(ctx, 1, 1, "", "out of memory");
        goto done;
    }
    /* fy_document_build_from_string would stop after the first document;
     * asking for the next one is what finds a second. */
    doc = fy_parse_load_document(fyp);
    if (doc && !fy_parser_get_stream_error(fyp))
        second = fy_parse_load_document(fyp);
    if (second) {
        bg_cfg__no_second_doc(ctx, second);
        fy_parse_document_destroy(fyp, second);
    }
done:
    /* The document outlives its parser (as with fy_document_build_*); its
     * scalars point into yaml, which the caller keeps. */
    if (fyp)
        fy_parser_destroy(fyp);
    return doc;
}

/* Builds the document, reporting syntax errors as FILE:LINE:COL. */
static struct fy_document *bg_cfg__build(bg_cfg_ctx_t *ctx, const char *yaml, size_t len)
{
    struct fy_diag_cfg dcfg;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.output_fn = bg_cfg__diag_discard;
    dcfg.colorize = false;
    struct fy_diag *diag = fy_diag_create(&dcfg);
    if (!diag) {
        bg_cfg__err_at(ctx, 1, 1, "", "out of memory");
        return NULL;
    }
    fy_diag_set_collect_errors(diag, true);
    size_t before = ctx->nerr;
    struct fy_document *doc = bg_cfg__parse(ctx, diag, yaml, len);
    void *it = NULL;
    struct fy_diag_error *e;
    while ((e = fy_diag_errors_iterate(diag, &it)))
        if (e->type >= FYET_ERROR)
            bg_cfg__err_at(ctx, e->line > 0 ? e->line : 1, e->column > 0 ? e->column : 1, "",
                           "YAML syntax error: %s", e->msg ? e->msg : "invalid YAML");
    if (!doc && ctx->nerr == before)
        bg_cfg__err_at(ctx, 1, 1, "", "no YAML document (the file is empty)");
    if (doc && ctx->nerr != before) {
        fy_document_destroy(doc);
        doc = NULL;
    }
    fy_diag_destroy(diag);
    return doc;
}

static const char *const bg_cfg__root_keys[] = {
    "workers", "log_level", "instance", "identity", "kafka",  "amqp", "http",
    "policy",  "approvals", "audit",    "admin",    "limits", NULL,
};
enum {
    K_WORKERS,
    K_LOG_LEVEL,
    K_INSTANCE,
    K_IDENTITY,
    K_KAFKA,
    K_AMQP,
    K_HTTP,
    K_POLICY,
    K_APPROVALS,
    K_AUDIT,
    K_ADMIN,
    K_LIMITS
};

static void bg_cfg__toplevel(bg_cfg_ctx_t *ctx, const bg_cfg_map_t *m)
{
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    int64_t workers = 0;
    int level = 1;
    if (bg_cfg__get_int(ctx, m->val[K_WORKERS], "workers", 0, 256, &workers) > 0)
        ctx->cfg->workers = (int)workers;
    bg_cfg__get_enum(ctx, m->val[K_LOG_LEVEL], "log_level", levels, &level);
    ctx->cfg->log_level = bg_cfg__strdup(ctx, levels[level]);
    if (bg_cfg__get_str(ctx, m->val[K_INSTANCE], "instance", &ctx->cfg->instance) == 0) {
        char host[256] = "busgate";
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = '\0';
        ctx->cfg->instance = bg_cfg__strdup(ctx, host);
    }
}

static const int bg_cfg__restart_keys[BG_CONFIG_RESTART_SECTIONS] = {
    K_WORKERS, K_KAFKA, K_AMQP, K_HTTP, K_APPROVALS, K_AUDIT, K_ADMIN, K_INSTANCE, K_LIMITS};

const char *bg_config_restart_section(size_t i)
{
    return i < BG_CONFIG_RESTART_SECTIONS ? bg_cfg__root_keys[bg_cfg__restart_keys[i]] : "?";
}

/* FNV-1a of each restart-only section, emitted on one line: formatting and
 * comments do not count, any change of a value does. */
static void bg_cfg__restart_hashes(bg_cfg_ctx_t *ctx, const bg_cfg_map_t *m)
{
    for (size_t i = 0; i < BG_CONFIG_RESTART_SECTIONS; i++) {
        struct fy_node *n = m->val[bg_cfg__restart_keys[i]];
        char *text = n ? fy_emit_node_to_string(n, FYECF_MODE_FLOW_ONELINE | FYECF_WIDTH_INF)
                       : NULL;
        uint64_t h = 0;
        if (text) {
            h = 1469598103934665603ull;
            for (const char *p = text; *p; p++)
                h = (h ^ (unsigned char)*p) * 1099511628211ull;
            free(text);
        } else if (n) {
            h = 1; /* could not emit: count it as changed on every reload */
        }
        ctx->cfg->restart_hash[i] = h;
    }
}

/* Rules that span sections. */
static void bg_cfg__cross(bg_cfg_ctx_t *ctx, const bg_cfg_map_t *m)
{
    bg_config_t *c = ctx->cfg;
    if ((c->kafka.enabled || c->amqp.enabled || c->http.enabled) &&
        bg_cfg__is_null(m->val[K_IDENTITY]))
        bg_cfg__err(ctx, m->self, "identity",
                    "missing: a listener (kafka, amqp or http) needs identity.issuers to "
                    "authenticate clients");
    if (c->audit.kafka_topic && !c->kafka.enabled)
        bg_cfg__err(ctx, m->val[K_AUDIT], "audit.kafka_topic",
                    "needs the kafka section (the audit topic lives on the Kafka upstream)");
    else if (c->audit.kafka_topic && c->kafka.upstream.embedded)
        bg_cfg__err(ctx, m->val[K_AUDIT], "audit.kafka_topic",
                    "needs kafka.upstream.bootstrap: the embedded upstream is a test cluster "
                    "inside busgate and cannot hold the audit topic (use audit.file)");
    /* Fail closed: a listener without an audit section would decide every
     * request and record none; reported at the listener. A present section
     * reports its own gaps. */
    if ((c->kafka.enabled || c->amqp.enabled) && !m->key[K_AUDIT])
        bg_cfg__err(ctx, c->kafka.enabled ? m->key[K_KAFKA] : m->key[K_AMQP], "audit",
                    "no audit sink: every decision would go unrecorded; set audit.file or "
                    "audit.kafka_topic, or audit.enabled: false to run without audit");
}

static void bg_cfg__root(bg_cfg_ctx_t *ctx, struct fy_node *root)
{
    bg_cfg_map_t m;
    int r = bg_cfg__map(ctx, root, "", bg_cfg__root_keys, &m);
    if (r == 0)
        bg_cfg__err_at(ctx, 1, 1, "", "the configuration is empty (expected a mapping)");
    if (r <= 0)
        return;
    bg_cfg__toplevel(ctx, &m);
    bg_cfg__identity(ctx, m.val[K_IDENTITY]);
    bg_cfg__kafka(ctx, m.val[K_KAFKA]);
    bg_cfg__amqp(ctx, m.val[K_AMQP]);
    bg_cfg__http(ctx, m.val[K_HTTP]);
    bg_cfg__policy(ctx, m.val[K_POLICY]);
    bg_cfg__approvals(ctx, m.val[K_APPROVALS]);
    bg_cfg__audit(ctx, m.key[K_AUDIT], m.val[K_AUDIT]);
    bg_cfg__admin(ctx, m.val[K_ADMIN]);
    bg_cfg__limits(ctx, m.val[K_LIMITS]);
    bg_cfg__cross(ctx, &m);
    bg_cfg__restart_hashes(ctx, &m);
    if (ctx->nerr == 0)
        bg_cfg__policy_compile(ctx, m.val[K_POLICY]);
}

/* Position of a message "NAME:LINE:COL: ..." as one sortable number. */
static long long bg_cfg__msg_pos(const char *msg, size_t namelen)
{
    char *end;
    long line = strtol(msg + namelen + 1, &end, 10);
    long col = *end == ':' ? strtol(end + 1, NULL, 10) : 0;
    return (long long)line * 1000000 + col;
}

/* Orders this load's messages by position (stable) so they read top-down
 * although sections are checked in a fixed order. */
static void bg_cfg__sort_errors(bg_cfg_ctx_t *ctx, size_t first)
{
    bg_config_errors_t *e = ctx->errs;
    size_t nl = strlen(ctx->name);
    for (size_t i = first + 1; e && i < e->n; i++) {
        char *m = e->msgs[i];
        long long pos = bg_cfg__msg_pos(m, nl);
        size_t j = i;
        for (; j > first && bg_cfg__msg_pos(e->msgs[j - 1], nl) > pos; j--)
            e->msgs[j] = e->msgs[j - 1];
        e->msgs[j] = m;
    }
}

static const char *bg_cfg__dirname(bg_cfg_ctx_t *ctx, const char *name)
{
    const char *slash = strrchr(name, '/');
    if (!slash)
        return ".";
    if (slash == name)
        return "/";
    return bg_cfg__strndup(ctx, name, slash - name);
}

bg_config_t *bg_config_load_string(const char *name, const char *yaml, size_t len,
                                   bg_config_errors_t *errs)
{
    bg_config_t *cfg = calloc(1, sizeof(*cfg));
    bg_cfg_ctx_t ctx = {.cfg = cfg, .name = name ? name : "<string>", .errs = errs};
    size_t first = errs ? errs->n : 0;
    if (!cfg) {
        bg_cfg__push(errs, strdup("out of memory"));
        return NULL;
    }
    cfg->path = bg_cfg__strdup(&ctx, ctx.name);
    ctx.basedir = bg_cfg__dirname(&ctx, ctx.name);
    struct fy_document *doc = cfg->path && ctx.basedir && bg_cfg__check_text(&ctx, yaml, len) == 0
                                  ? bg_cfg__build(&ctx, yaml, len)
                                  : NULL;
    if (doc) {
        bg_cfg__root(&ctx, fy_document_root(doc));
        fy_document_destroy(doc);
    }
    bg_cfg__sort_errors(&ctx, first);
    if (ctx.nerr || !doc) {
        bg_config_free(cfg);
        return NULL;
    }
    return cfg;
}

/* Reads at most BG_CFG_MAX_FILE bytes of path into a malloc'd buffer. */
static char *bg_cfg__slurp(const char *path, size_t *len, const char **why)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    char *buf = NULL;
    *why = strerror(errno);
    if (fd < 0)
        return NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > BG_CFG_MAX_FILE) {
        *why = S_ISREG(st.st_mode) ? "file too large (max 16 MiB)" : "not a regular file";
        goto done;
    }
    if (!(buf = malloc((size_t)st.st_size + 1)))
        goto done;
    size_t n = 0, want = (size_t)st.st_size;
    ssize_t got = 1;
    while (n < want && (got = read(fd, buf + n, want - n)) != 0) {
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            break;
        n += (size_t)got;
    }
    /* A short read, or a file that changed while it was read, is not the
     * file: never parse part of it. */
    struct stat after;
    if (got < 0 || n != want || fstat(fd, &after) != 0 || after.st_size != st.st_size ||
        after.st_mtim.tv_sec != st.st_mtim.tv_sec || after.st_mtim.tv_nsec != st.st_mtim.tv_nsec) {
        *why = got < 0 ? strerror(errno) : "the file changed while it was read";
        free(buf);
        buf = NULL;
        goto done;
    }
    *len = n;
    buf[n] = '\0';
done:
    close(fd);
    return buf;
}

bg_config_t *bg_config_load(const char *path, bg_config_errors_t *errs)
{
    size_t len = 0;
    const char *why = "";
    char *buf = bg_cfg__slurp(path, &len, &why);
    if (!buf) {
        char *msg = NULL;
        if (asprintf(&msg, "%s:1:1: cannot read: %s", path, why) >= 0)
            bg_cfg__push(errs, msg);
        return NULL;
    }
    bg_config_t *c = bg_config_load_string(path, buf, len, errs);
    explicit_bzero(buf, len); /* a password may be written in the file itself */
    free(buf);
    return c;
}

void bg_config_free(bg_config_t *c)
{
    if (!c)
        return;
    bg_cfg_chunk_t *ch = c->arena;
    while (ch) {
        bg_cfg_chunk_t *next = ch->next;
        /* Every chunk, not only those known to hold ${file:}/${env:}
         * values (passwords, SASL secrets, header tokens): a config is
         * small and freed rarely, and nothing can be missed this way. */
        explicit_bzero(ch->data, ch->size);
        free(ch);
        ch = next;
    }
    free(c);
}

size_t bg_config_unbuilt(const bg_config_t *c, const char *msgs[3])
{
    size_t n = 0;
    if (c->http.enabled)
        msgs[n++] = "http: the HTTP adapter is not part of this build; section ignored";
    if (c->approvals.enabled)
        msgs[n++] = "approvals: not part of this build; hold rules refuse instead";
    if (c->policy.enabled && c->policy.spec.nmasks)
        msgs[n++] = "policy.masks: masking is not part of this build; reading a masked topic or "
                    "queue, and publishing to a masked exchange or routing messages out of or "
                    "into one, is refused";
    return n;
}

const char *bg_config_audit_off(const bg_config_t *c)
{
    return c->audit.disabled ? "audit.enabled is false: no decision is recorded (no audit "
                               "events, no busgate_audit_* metrics); meant for tests and "
                               "benchmarks"
                             : NULL;
}

const bg_policy_spec_t *bg_config_policy_spec(const bg_config_t *c)
{
    static const bg_policy_spec_t deny_all = {.default_effect = BG_EFFECT_DENY,
                                              .mode = BG_MODE_ENFORCE};
    return c->policy.enabled ? &c->policy.spec : &deny_all;
}
