/* Private to broker/config*.c: the loader's context, arena and the typed
 * node readers shared by the section parsers.
 *
 * Reader convention: every bg_cfg__get_* takes a node that may be NULL
 * (key absent) and returns 1 when a value was stored in *out, 0 when the
 * value is absent or a YAML null (out untouched, so callers preset
 * defaults), -1 after reporting an error. Strings they return live in the
 * config's arena. */
#ifndef BG_CONFIG_INTERNAL_H
#define BG_CONFIG_INTERNAL_H

#include <libfyaml.h>
#include <stdarg.h>
#include <stdint.h>

#include "broker/config.h"

#define BG_CFG_MAX_KEYS 16
#define BG_CFG_MAX_ERRORS 200
#define BG_CFG_PATH_MAX 256

typedef struct bg_cfg_ctx_s {
    bg_config_t *cfg;
    const char *name;    /* file name used in messages */
    const char *basedir; /* directory relative paths resolve against */
    bg_config_errors_t *errs;
    size_t nerr; /* errors reported by this load */
} bg_cfg_ctx_t;

/* The keys of one mapping, indexed like the NULL-terminated key list given
 * to bg_cfg__map. val[i] is NULL when key i is absent. */
typedef struct bg_cfg_map_s {
    struct fy_node *self;
    struct fy_node *key[BG_CFG_MAX_KEYS];
    struct fy_node *val[BG_CFG_MAX_KEYS];
} bg_cfg_map_t;

/* ---- arena (config.c) ---- */
void *bg_cfg__alloc(bg_cfg_ctx_t *ctx, size_t size); /* zeroed; NULL on OOM */
char *bg_cfg__strdup(bg_cfg_ctx_t *ctx, const char *s);
char *bg_cfg__strndup(bg_cfg_ctx_t *ctx, const char *s, size_t n);

/* ---- errors and positions (config.c) ---- */
/* 1-based position of n: a scalar's own mark, a collection's first scalar,
 * else the key that introduced n. 0 on success. */
int bg_cfg__pos(struct fy_node *n, int *line, int *col);
void bg_cfg__err(bg_cfg_ctx_t *ctx, struct fy_node *at, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void bg_cfg__err_at(bg_cfg_ctx_t *ctx, int line, int col, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void bg_cfg__verr_at(bg_cfg_ctx_t *ctx, int line, int col, const char *path, const char *fmt,
                     va_list ap);

/* ---- paths ---- */
void bg_cfg__join(char *buf, const char *parent, const char *key);
void bg_cfg__index(char *buf, const char *parent, size_t i);

/* ---- node readers (config_read.c) ---- */
int bg_cfg__is_null(struct fy_node *n);
const char *bg_cfg__kind(struct fy_node *n);
/* Checks n is a mapping; reports unknown and duplicate keys; fills m.
 * Returns 1 when n is a mapping, 0 when absent/null, -1 on error. */
int bg_cfg__map(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, const char *const *keys,
                bg_cfg_map_t *m);
/* Reports "missing required key" when m has no value for keys[i]. */
int bg_cfg__require(bg_cfg_ctx_t *ctx, const bg_cfg_map_t *m, const char *const *keys, size_t i,
                    const char *path);
/* Checks n is a sequence; *count = its length. Same returns as bg_cfg__map. */
int bg_cfg__seq(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, size_t *count);
/* A scalar with ${file:}/${env:} resolved. *shown is what error messages
 * may print: the unresolved text when a reference was expanded. */
int bg_cfg__scalar(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, const char **val,
                   const char **shown);
int bg_cfg__get_str(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, char **out);
/* A file path; a relative one is made relative to the config's directory. */
int bg_cfg__get_file(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, char **out);
/* An http:// or https:// URL. */
/* 1 when url is plain http:// to a host that is not loopback (localhost,
 * 127.0.0.0/8, [::1]). */
int bg_cfg__url_plain_remote(const char *url);
int bg_cfg__get_url(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, char **out);
int bg_cfg__get_bool(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, int *out);
int bg_cfg__get_int(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, int64_t min,
                    int64_t max, int64_t *out);
/* A duration in ms, 0..BG_CONFIG_MAX_DURATION_MS. */
int bg_cfg__get_duration(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, int64_t *out);
int bg_cfg__get_size(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, uint64_t min,
                     uint64_t max, uint64_t *out);
/* upstream = 1 rejects port 0 (which a listener may use for "any free port"). */
int bg_cfg__get_addr(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, int upstream,
                     bg_addr_t *out);
/* One of names (NULL-terminated); *out = its index. */
int bg_cfg__get_enum(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path,
                     const char *const *names, int *out);
/* Reports a policy helper's `why` about value, never quoting a secret:
 * shown (the unexpanded text) replaces value wherever it appears. */
void bg_cfg__err_why(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, const char *why,
                     const char *value, const char *shown);
/* A sequence of strings, each checked by check (may be NULL) whose `why`
 * becomes the message. An empty sequence is an error when nonempty is set. */
int bg_cfg__get_strlist(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, int nonempty,
                        int (*check)(const char *s, const char **why), char ***out,
                        size_t *nout);

/* Earlier items of one sequence with the same name, found in one pass (a
 * hash of the distinct names, each chaining its items in order) instead of
 * comparing every item with all before it. Names are borrowed: they must
 * outlive the table (arena strings do). */
typedef struct bg_cfg_names_s {
    struct bg_cfg_name_slot_s *slot; /* open addressing, cap a power of 2 */
    size_t cap;
    size_t *next; /* next item with the same name, SIZE_MAX at the end */
    size_t n;     /* items the table was sized for */
    int nocase;   /* ASCII case-insensitive names (HTTP headers) */
} bg_cfg_names_t;
/* Sizes the table for n items (malloc'd, freed by bg_cfg__names_free). On
 * out of memory reports it and leaves the table empty: every add then
 * returns SIZE_MAX, and the load fails on the reported error. */
void bg_cfg__names_init(bg_cfg_ctx_t *ctx, bg_cfg_names_t *t, size_t n, int nocase);
/* Records name (may be NULL: not recorded) as item i, items added in
 * increasing order. Returns the first earlier item with that name, or
 * SIZE_MAX; bg_cfg__names_next walks the rest in order, ending at i. */
size_t bg_cfg__names_add(bg_cfg_names_t *t, const char *name, size_t i);
/* The first item recorded with name, recording nothing; SIZE_MAX if none.
 * bg_cfg__names_next then walks the others up to the last recorded. */
size_t bg_cfg__names_first(const bg_cfg_names_t *t, const char *name);
size_t bg_cfg__names_next(const bg_cfg_names_t *t, size_t j);
void bg_cfg__names_free(bg_cfg_names_t *t);
/* 1 once errors past the reporting limit are dropped (a load that reports
 * more cannot change its outcome), so long walks can stop. */
int bg_cfg__gave_up(const bg_cfg_ctx_t *ctx);

/* ---- secrets (config_secret.c) ---- */
/* Expands ${file:PATH} and ${env:NAME} in raw (len bytes). Returns an arena
 * string, or NULL after reporting an error at n (never quoting a secret).
 * *expanded is set when a reference was found. */
char *bg_cfg__expand(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path, const char *raw,
                     size_t len, int *expanded);
/* Joins a relative path onto ctx->basedir (absolute paths kept). */
char *bg_cfg__relpath(bg_cfg_ctx_t *ctx, const char *p);

/* ---- sections (config_sections.c, config_policy.c) ---- */
void bg_cfg__identity(bg_cfg_ctx_t *ctx, struct fy_node *n);
void bg_cfg__kafka(bg_cfg_ctx_t *ctx, struct fy_node *n);
void bg_cfg__amqp(bg_cfg_ctx_t *ctx, struct fy_node *n);
void bg_cfg__http(bg_cfg_ctx_t *ctx, struct fy_node *n);
void bg_cfg__approvals(bg_cfg_ctx_t *ctx, struct fy_node *n);
void bg_cfg__audit(bg_cfg_ctx_t *ctx, struct fy_node *key, struct fy_node *n);
void bg_cfg__admin(bg_cfg_ctx_t *ctx, struct fy_node *n);
void bg_cfg__limits(bg_cfg_ctx_t *ctx, struct fy_node *n);
void bg_cfg__policy(bg_cfg_ctx_t *ctx, struct fy_node *n);
/* Compiles the parsed policy once to surface compiler errors. */
void bg_cfg__policy_compile(bg_cfg_ctx_t *ctx, struct fy_node *n);

#endif
