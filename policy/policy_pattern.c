/* Parse and check helpers for the policy's text forms: verbs, effects,
 * modes, subjects, resource patterns, concrete resources and mask fields;
 * and one pattern matched against one resource (for busgate check). */
#include "policy/policy-internal.h"

#include "broker/utf8.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const bg_policy__verbs[BG_VERB__COUNT] = {"read",  "write", "create",
                                                             "delete", "alter", "describe"};
static const char *const bg_policy__effects[] = {"allow", "deny", "hold"};
static const char *const bg_policy__types[BG_RES__COUNT] = {
    "kafka:topic",   "kafka:group", "kafka:transactional-id", "kafka:cluster",
    "amqp:exchange", "amqp:queue",  "http"};

/* Messages that quote the offending input cannot be static; they live in a
 * per-thread buffer valid until the next helper call on the same thread. */
const char *bg_policy__whyf(const char *fmt, ...)
{
    static __thread char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return buf;
}

const char *bg_verb_name(bg_verb_t v)
{
    return (unsigned)v < BG_VERB__COUNT ? bg_policy__verbs[v] : "?";
}

const char *bg_effect_name(bg_effect_t e)
{
    return (unsigned)e <= BG_EFFECT_HOLD ? bg_policy__effects[e] : "?";
}

const char *bg_res_type_name(bg_res_type_t t)
{
    return (unsigned)t < BG_RES__COUNT ? bg_policy__types[t] : "?";
}

int bg_policy_parse_verb(const char *s, bg_verb_t *out, const char **why)
{
    for (int v = 0; v < BG_VERB__COUNT; v++) {
        if (s && strcmp(s, bg_policy__verbs[v]) == 0) {
            *out = (bg_verb_t)v;
            return 0;
        }
    }
    *why = bg_policy__whyf("unknown verb '%.64s' (expected read, write, create, delete, alter, "
                           "describe)",
                           s ? s : "");
    return -1;
}

int bg_policy_parse_effect(const char *s, bg_effect_t *out, const char **why)
{
    for (int e = 0; e <= BG_EFFECT_HOLD; e++) {
        if (s && strcmp(s, bg_policy__effects[e]) == 0) {
            *out = (bg_effect_t)e;
            return 0;
        }
    }
    *why = bg_policy__whyf("unknown effect '%.64s' (expected allow, deny or hold)", s ? s : "");
    return -1;
}

int bg_policy_parse_mode(const char *s, bg_mode_t *out, const char **why)
{
    if (s && strcmp(s, "enforce") == 0) {
        *out = BG_MODE_ENFORCE;
        return 0;
    }
    if (s && strcmp(s, "audit") == 0) {
        *out = BG_MODE_AUDIT;
        return 0;
    }
    *why = bg_policy__whyf("unknown mode '%.64s' (expected enforce or audit)", s ? s : "");
    return -1;
}

int bg_policy_parse_mask_format(const char *s, bg_mask_format_t *out, const char **why)
{
    static const char *const names[] = {"json", "avro", "auto"};
    for (int i = 0; i < 3; i++) {
        if (s && strcmp(s, names[i]) == 0) {
            *out = (bg_mask_format_t)i;
            return 0;
        }
    }
    *why = bg_policy__whyf("unknown mask format '%.64s' (expected json, avro or auto)", s ? s : "");
    return -1;
}

int bg_policy_parse_mask_strategy(const char *s, bg_mask_strategy_t *out, const char **why)
{
    static const char *const names[] = {"redact", "hash", "last4", "null"};
    for (int i = 0; i < 4; i++) {
        if (s && strcmp(s, names[i]) == 0) {
            *out = (bg_mask_strategy_t)i;
            return 0;
        }
    }
    *why = bg_policy__whyf("unknown mask strategy '%.64s' (expected redact, hash, last4 or null)",
                           s ? s : "");
    return -1;
}

/* Shared by names in subjects, patterns and resources: non-empty, bounded,
 * no control characters (they would corrupt logs and explain output). A
 * name in the policy (utf8 set) must also be valid UTF-8: wildcards step
 * over whole characters while literal parts compare bytes, so a literal
 * holding part of a character (a pattern read through ${file:} or ${env:},
 * which YAML's own check does not see) could match the first bytes of
 * another character. A concrete resource to decide may be any bytes, as
 * the names clients send. */
static int bg_policy__check_name_(const char *s, size_t n, const char *what, int utf8,
                                  const char **why)
{
    if (n == 0) {
        *why = bg_policy__whyf("%s is empty", what);
        return -1;
    }
    if (n > BG_POLICY_MAX_PATTERN) {
        *why = bg_policy__whyf("%s is longer than %d bytes", what, BG_POLICY_MAX_PATTERN);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            *why = bg_policy__whyf("%s contains a control character", what);
            return -1;
        }
    }
    for (size_t i = 0, len; utf8 && i < n; i += len)
        if ((len = bg_utf8_len((const unsigned char *)s + i, n - i)) == 0) {
            *why = bg_policy__whyf("%s is not valid UTF-8", what);
            return -1;
        }
    return 0;
}

static int bg_policy__check_name(const char *s, size_t n, const char *what, const char **why)
{
    return bg_policy__check_name_(s, n, what, 1, why);
}

int bg_policy_check_subject(const char *s, const char **why)
{
    const char *name;
    if (!s) {
        *why = "subject is missing";
        return -1;
    }
    if (strcmp(s, "*") == 0)
        return 0;
    if (strncmp(s, "group:", 6) == 0)
        name = s + 6;
    else if (strncmp(s, "sub:", 4) == 0)
        name = s + 4;
    else {
        *why = bg_policy__whyf("subject '%.64s' must be group:NAME, sub:NAME or '*'", s);
        return -1;
    }
    if (bg_policy__check_name(name, strlen(name), "subject name", why) < 0)
        return -1;
    if (strpbrk(name, "*?")) {
        *why = "subject names take no wildcards (use '*' alone for everyone)";
        return -1;
    }
    return 0;
}

/* Splits "TYPE:REST" into the type and REST; kafka:cluster has no REST. */
static int bg_policy__split_type(const char *s, bg_res_type_t *type, const char **rest,
                                 const char **why)
{
    if (!s || (strncmp(s, "kafka:", 6) && strncmp(s, "amqp:", 5) && strncmp(s, "http:", 5))) {
        *why = "resource pattern must start with kafka:, amqp: or http:";
        return -1;
    }
    if (strcmp(s, "kafka:cluster") == 0) {
        *type = BG_RES_KAFKA_CLUSTER;
        *rest = "";
        return 0;
    }
    if (strncmp(s, "kafka:cluster:", 14) == 0) {
        *why = "kafka:cluster takes no name";
        return -1;
    }
    for (int t = 0; t < BG_RES__COUNT; t++) {
        size_t n = strlen(bg_policy__types[t]);
        if (t != BG_RES_KAFKA_CLUSTER && strncmp(s, bg_policy__types[t], n) == 0 && s[n] == ':') {
            *type = (bg_res_type_t)t;
            *rest = s + n + 1;
            return 0;
        }
    }
    if (strncmp(s, "kafka:", 6) == 0)
        *why = "unknown kafka resource (expected kafka:topic:, kafka:group:, "
               "kafka:transactional-id: or kafka:cluster)";
    else if (strncmp(s, "amqp:", 5) == 0)
        *why = "unknown amqp resource (expected amqp:exchange: or amqp:queue:)";
    else
        *why = "http resource must be http:ROUTE:PATH";
    return -1;
}

/* Literal, prefix ("x*": one '*', at the end) or glob. */
static int bg_policy__classify(const char *s, size_t n, bg_pat_kind_t *kind, const char **why)
{
    size_t stars = 0, qs = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '*') {
            stars++;
            if (i + 1 < n && s[i + 1] == '*') {
                *why = "'**' is not allowed ('*' already matches any run, dots included)";
                return -1;
            }
        } else if (s[i] == '?')
            qs++;
    }
    if (stars == 0 && qs == 0)
        *kind = BG_PAT_LITERAL;
    else if (stars == 1 && qs == 0 && s[n - 1] == '*')
        *kind = BG_PAT_PREFIX;
    else
        *kind = BG_PAT_GLOB;
    return 0;
}

static int bg_policy__parse_http(const char *rest, bg_policy_pattern_t *out, int utf8,
                                 const char **why)
{
    const char *colon = strchr(rest, ':');
    if (!colon) {
        *why = "http resource must be http:ROUTE:PATH";
        return -1;
    }
    out->route = rest;
    out->route_len = (size_t)(colon - rest);
    if (bg_policy__check_name_(out->route, out->route_len, "http route", utf8, why) < 0)
        return -1;
    out->route_any = out->route_len == 1 && rest[0] == '*';
    if (!out->route_any && memchr(out->route, '*', out->route_len)) {
        *why = "http route must be a literal name or '*'";
        return -1;
    }
    if (!out->route_any && memchr(out->route, '?', out->route_len)) {
        *why = "http route must be a literal name or '*'";
        return -1;
    }
    out->name = colon + 1;
    if (out->name[0] != '/' && out->name[0] != '*') {
        *why = "http path pattern must start with '/' or '*'";
        return -1;
    }
    return 0;
}

/* utf8: a pattern of the policy (see bg_policy__check_name_), not a
 * concrete resource. */
static int bg_policy__parse_any(const char *s, bg_policy_pattern_t *out, int utf8,
                                const char **why)
{
    const char *rest;
    memset(out, 0, sizeof(*out));
    if (bg_policy__split_type(s, &out->type, &rest, why) < 0)
        return -1;
    if (out->type == BG_RES_KAFKA_CLUSTER) {
        out->name = rest;
        out->kind = BG_PAT_LITERAL;
        return 0;
    }
    if (out->type == BG_RES_HTTP) {
        if (bg_policy__parse_http(rest, out, utf8, why) < 0)
            return -1;
    } else
        out->name = rest;
    out->name_len = strlen(out->name);
    if (bg_policy__check_name_(out->name, out->name_len, "resource name", utf8, why) < 0)
        return -1;
    if (bg_policy__classify(out->name, out->name_len, &out->kind, why) < 0)
        return -1;
    if (out->kind == BG_PAT_PREFIX)
        out->name_len--;
    return 0;
}

int bg_policy__parse_pattern(const char *s, bg_policy_pattern_t *out, const char **why)
{
    return bg_policy__parse_any(s, out, 1, why);
}

int bg_policy_check_resource_pattern(const char *s, const char **why)
{
    bg_policy_pattern_t pat;
    return bg_policy__parse_pattern(s, &pat, why);
}

int bg_policy_parse_resource(const char *s, bg_policy_resource_t *out, const char **why)
{
    bg_policy_pattern_t pat;
    if (bg_policy__parse_any(s, &pat, 0, why) < 0)
        return -1;
    if (pat.kind != BG_PAT_LITERAL || pat.route_any) {
        *why = "a concrete resource takes no wildcards";
        return -1;
    }
    out->type = pat.type;
    out->route = pat.route;
    out->route_len = pat.route_len;
    out->name = pat.name;
    out->name_len = pat.name_len;
    return 0;
}

/* One segment of a mask field: NAME followed by any number of [*] or [N]. */
static int bg_policy__check_segment(const char *s, size_t n, const char **why)
{
    size_t i = 0;
    while (i < n && s[i] != '[')
        i++;
    if (i == 0) {
        *why = "mask field has an empty segment (expected a.b.c or items[*].owner)";
        return -1;
    }
    while (i < n) {
        if (s[i] != '[') {
            *why = "mask field: text after ']' must start a new segment with '.'";
            return -1;
        }
        size_t j = i + 1;
        if (j < n && s[j] == '*')
            j++;
        else
            while (j < n && s[j] >= '0' && s[j] <= '9')
                j++;
        if (j == i + 1 || j >= n || s[j] != ']') {
            *why = "mask field index must be [*] or [N]";
            return -1;
        }
        i = j + 1;
    }
    return 0;
}

int bg_policy_check_mask_field(const char *s, const char **why)
{
    if (!s) {
        *why = "mask field is missing";
        return -1;
    }
    size_t n = strlen(s);
    if (bg_policy__check_name(s, n, "mask field", why) < 0)
        return -1;
    const char *seg = s;
    for (;;) {
        const char *dot = memchr(seg, '.', (size_t)(s + n - seg));
        size_t len = dot ? (size_t)(dot - seg) : (size_t)(s + n - seg);
        if (memchr(seg, ']', len) && !memchr(seg, '[', len)) {
            *why = "mask field has ']' without '['";
            return -1;
        }
        if (bg_policy__check_segment(seg, len, why) < 0)
            return -1;
        if (!dot)
            return 0;
        seg = dot + 1;
    }
}

/* Bytes of the character starting at s[0], for '?' and for a '*' moving
 * on: a well-formed UTF-8 sequence by the strict rule the log and audit
 * writers share, else one byte. A lead byte followed by continuation bytes
 * is not enough: an overlong form (E0 80 AE, a '.' to a lax decoder) or an
 * encoded surrogate is no character, so each of its bytes counts as one. */
static size_t bg_policy__char_len(const char *s, size_t n)
{
    size_t len = bg_utf8_len((const unsigned char *)s, n);
    return len ? len : 1;
}

/* Iterative matcher: on mismatch, retry from the last '*' one character
 * further on. Without nested backtracking this is O(plen * slen) worst case
 * and linear for the patterns people write. */
bool bg_policy__glob_match(const char *pat, size_t plen, const char *s, size_t slen)
{
    size_t p = 0, i = 0, star_p = (size_t)-1, star_i = 0;
    while (i < slen) {
        if (p < plen && pat[p] == '*') {
            star_p = ++p;
            star_i = i;
        } else if (p < plen && pat[p] == '?') {
            p++;
            i += bg_policy__char_len(s + i, slen - i);
        } else if (p < plen && pat[p] == s[i]) {
            p++;
            i++;
        } else if (star_p != (size_t)-1) {
            p = star_p;
            star_i += bg_policy__char_len(s + star_i, slen - star_i);
            i = star_i;
        } else
            return false;
    }
    while (p < plen && pat[p] == '*')
        p++;
    return p == plen;
}

int bg_policy_pattern_matches(const char *pattern, const bg_policy_resource_t *r)
{
    bg_policy_pattern_t pat;
    const char *why;
    if (!pattern || bg_policy__parse_pattern(pattern, &pat, &why) < 0 || pat.type != r->type)
        return 0;
    if (pat.type == BG_RES_KAFKA_CLUSTER) /* one cluster: the name is irrelevant */
        return 1;
    if (pat.type == BG_RES_HTTP && !pat.route_any &&
        (pat.route_len != r->route_len || memcmp(pat.route, r->route, r->route_len) != 0))
        return 0;
    switch (pat.kind) {
    case BG_PAT_LITERAL:
        return pat.name_len == r->name_len && memcmp(pat.name, r->name, r->name_len) == 0;
    case BG_PAT_PREFIX:
        return r->name_len >= pat.name_len && memcmp(pat.name, r->name, pat.name_len) == 0;
    default: return bg_policy__glob_match(pat.name, pat.name_len, r->name, r->name_len);
    }
}
