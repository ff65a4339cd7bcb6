/* busgate logging: one JSON object per line on stderr.
 *
 * {"time":"2026-11-26T15:17:19.123Z","level":"info","module":"config","msg":"...", ...fields}
 *
 * Never pass a token, password or secret value as a message or field: the
 * logger cannot tell them apart from other strings. Thread-safe (one write(2)
 * per line).
 *
 * Until bg_log_async_start, and after bg_log_async_stop, the calling thread
 * writes each line itself (start-up, the CLI commands). In between, lines
 * are queued for one log thread and the callers never wait for the fd. */
#ifndef BG_LOG_H
#define BG_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

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

/* Bytes of lines the log thread may have waiting (busgate run). */
#define BG_LOG_QUEUE_BYTES (1024 * 1024)

/* From now on lines go through a queue of queue_bytes (at least two
 * longest lines) to a log thread that writes them, in order, to the fd: a
 * fd that does not take them (a pipe nobody reads) never blocks a caller.
 * A line that does not fit is dropped and counted (bg_log_dropped_total);
 * once lines fit again a warning "N log lines dropped" stands where they
 * were. Returns 0, or -1 (lines are still written synchronously) when the
 * thread cannot start or the queue was stopped for good before. Set the
 * fd (bg_log_set_fd) before, not while the queue runs. */
int bg_log_async_start(size_t queue_bytes);

/* Writes what is queued and ends the log thread; later lines are written
 * synchronously again. When the fd has not taken the queued lines within
 * deadline_ms, returns anyway (about 200 ms later at most): the rest and
 * every later line are dropped and counted, so a stuck fd cannot hold the
 * exit up. No-op when the queue is not running. */
void bg_log_async_stop(int deadline_ms);

/* Lines dropped since the process started (queue full, or after a stop
 * whose deadline passed). Any thread. */
uint64_t bg_log_dropped_total(void);
/* Bytes of lines waiting for the log thread now. Any thread. */
size_t bg_log_queued_bytes(void);

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
