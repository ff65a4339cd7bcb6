/* busgate logging: one JSON object per line on stderr.
 *
 * {"time":"2026-11-26T15:17:19.123Z","level":"info","module":"config","msg":"...", ...fields}
 *
 * Never pass a token, password or secret value as a message or field: the
 * logger cannot tell them apart from other strings. Thread-safe (one write(2)
 * per line). */
#ifndef BG_LOG_H
#define BG_LOG_H

#include <stdarg.h>
#include <stddef.h>

typedef enum { BG_LOG_DEBUG = 0, BG_LOG_INFO, BG_LOG_WARN, BG_LOG_ERROR, BG_LOG_OFF } bg_log_level_t;

/* One extra field of a log line; value NULL is logged as null. */
typedef struct bg_log_field_s {
    const char *key;
    const char *value;
} bg_log_field_t;

/* Sets the lowest level that is written. Default BG_LOG_INFO. */
void bg_log_set_level(bg_log_level_t level);
bg_log_level_t bg_log_get_level(void);
/* Parses "debug|info|warn|error|off"; returns -1 when unknown. */
int bg_log_level_parse(const char *s);
/* Redirects output to fd (default 2). For tests. */
void bg_log_set_fd(int fd);

/* Writes one line with message printf(fmt, ...) and the n given fields. */
void bg_log_fields(bg_log_level_t level, const char *module, const bg_log_field_t *fields, size_t n,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void bg_log_v(bg_log_level_t level, const char *module, const bg_log_field_t *fields, size_t n,
              const char *fmt, va_list ap);

#define bg_log_debug(mod, ...) bg_log_fields(BG_LOG_DEBUG, mod, NULL, 0, __VA_ARGS__)
#define bg_log_info(mod, ...) bg_log_fields(BG_LOG_INFO, mod, NULL, 0, __VA_ARGS__)
#define bg_log_warn(mod, ...) bg_log_fields(BG_LOG_WARN, mod, NULL, 0, __VA_ARGS__)
#define bg_log_error(mod, ...) bg_log_fields(BG_LOG_ERROR, mod, NULL, 0, __VA_ARGS__)

/* Appends s as a JSON string body (without quotes) to dst of capacity cap,
 * starting at *len; escapes control characters and quotes, writes invalid
 * UTF-8 as U+FFFD; stops before an escape or a UTF-8 sequence that does not
 * fit whole. Returns 0, or -1 when it had to stop (s was cut). */
int bg_json_escape_into(char *dst, size_t cap, size_t *len, const char *s, size_t slen);

#endif
