#include "broker/log.h"

#include <stdatomic.h>
#include <stdio.h>
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

void bg_json_escape_into(char *dst, size_t cap, size_t *len, const char *s, size_t slen)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = *len;
    for (size_t i = 0; i < slen; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[7];
        size_t n = 0;
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
        } else {
            esc[0] = (char)c;
            n = 1;
        }
        if (o + n + 1 > cap)
            break;
        memcpy(dst + o, esc, n);
        o += n;
    }
    if (o < cap)
        dst[o] = '\0';
    *len = o;
}

static void bg_log__lit(char *dst, size_t cap, size_t *len, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 1 > cap)
        n = cap - *len - 1;
    memcpy(dst + *len, s, n);
    *len += n;
    dst[*len] = '\0';
}

void bg_log_v(bg_log_level_t level, const char *module, const bg_log_field_t *fields, size_t n,
              const char *fmt, va_list ap)
{
    if ((int)level < bg_log__level || level >= BG_LOG_OFF)
        return;
    char line[4096], msg[2048], ts[32];
    size_t len = 0;
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t tl = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof ts - tl, ".%03ldZ", now.tv_nsec / 1000000);
    vsnprintf(msg, sizeof msg, fmt, ap);

    bg_log__lit(line, sizeof line - 2, &len, "{\"time\":\"");
    bg_log__lit(line, sizeof line - 2, &len, ts);
    bg_log__lit(line, sizeof line - 2, &len, "\",\"level\":\"");
    bg_log__lit(line, sizeof line - 2, &len, bg_log__names[level]);
    bg_log__lit(line, sizeof line - 2, &len, "\",\"module\":\"");
    bg_json_escape_into(line, sizeof line - 2, &len, module, strlen(module));
    bg_log__lit(line, sizeof line - 2, &len, "\",\"msg\":\"");
    bg_json_escape_into(line, sizeof line - 2, &len, msg, strlen(msg));
    bg_log__lit(line, sizeof line - 2, &len, "\"");
    for (size_t i = 0; i < n; i++) {
        bg_log__lit(line, sizeof line - 2, &len, ",\"");
        bg_json_escape_into(line, sizeof line - 2, &len, fields[i].key, strlen(fields[i].key));
        if (fields[i].value) {
            bg_log__lit(line, sizeof line - 2, &len, "\":\"");
            bg_json_escape_into(line, sizeof line - 2, &len, fields[i].value, strlen(fields[i].value));
            bg_log__lit(line, sizeof line - 2, &len, "\"");
        } else {
            bg_log__lit(line, sizeof line - 2, &len, "\":null");
        }
    }
    line[len++] = '}';
    line[len++] = '\n';
    ssize_t w = write(bg_log__fd, line, len);
    (void)w;
}

void bg_log_fields(bg_log_level_t level, const char *module, const bg_log_field_t *fields, size_t n,
                   const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bg_log_v(level, module, fields, n, fmt, ap);
    va_end(ap);
}
