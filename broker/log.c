#include "broker/log.h"
#include "broker/utf8.h"

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

/* Room kept for what closes a line in any case: the message's closing
 * quote, the "truncated" marker, the closing brace and the newline. */
#define BG_LOG__CLOSE_ROOM 24

void bg_log_v(bg_log_level_t level, const char *module, const bg_log_field_t *fields, size_t n,
              const char *fmt, va_list ap)
{
    if ((int)level < bg_log__level || level >= BG_LOG_OFF)
        return;
    char line[4096], msg[2048], ts[32];
    size_t len = 0, cap = sizeof line - BG_LOG__CLOSE_ROOM;
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
