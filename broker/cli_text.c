/* Text the CLI prints from data it does not control (bg_cli_visible). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/cli.h"

/* 1 when v[i] starts a C1 control (U+0080..U+009F, UTF-8 C2 80..C2 9F). */
static int bg_cli__c1_at(const char *v, size_t len, size_t i)
{
    return (unsigned char)v[i] == 0xc2 && i + 1 < len && (unsigned char)v[i + 1] >= 0x80 &&
           (unsigned char)v[i + 1] <= 0x9f;
}

/* 1 when v[0..len) holds a byte bg_cli__put_visible escapes. */
static int bg_cli__needs_escape(const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)v[i];
        if (b == '\\' || b < 0x20 || b == 0x7f || bg_cli__c1_at(v, len, i))
            return 1;
    }
    return 0;
}

/* Writes v[0..len) to f escaped (see bg_cli_visible); allocates nothing,
 * so no shortage of memory can make it print a value raw. */
static void bg_cli__put_visible(FILE *f, const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)v[i];
        if (b == '\\')
            fputs("\\\\", f);
        else if (b < 0x20 || b == 0x7f)
            fprintf(f, "\\x%02x", b);
        else if (bg_cli__c1_at(v, len, i))
            fprintf(f, "\\u%04x", (unsigned char)v[++i]);
        else
            fputc(b, f);
    }
}

char *bg_cli_visible(const char *v, size_t len)
{
    char *o = NULL;
    size_t n = 0;
    if (!bg_cli__needs_escape(v, len))
        return NULL;
    FILE *f = open_memstream(&o, &n);
    if (!f)
        return NULL;
    bg_cli__put_visible(f, v, len);
    if (fclose(f) != 0) {
        free(o);
        return NULL;
    }
    return o;
}

void bg_cli_print_visible(FILE *f, const char *s)
{
    if (s)
        bg_cli__put_visible(f, s, strlen(s));
}
