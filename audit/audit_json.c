/* Audit event -> JSON. Hand-written writer: one pass, no allocation, about a
 * microsecond per event. Field names are a contract (audit-event.schema.json,
 * docs/audit.md): add fields, never rename them. Absent values are omitted,
 * never written as null, so consumers test for presence only. */
#include "audit/audit.h"
#include "audit/audit_sink.h"
#include "broker/utf8.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

typedef struct bg_audit_w_s {
    char *p; /* NULL: only measures (len grows, never fails) */
    size_t cap, len;
    int failed; /* sticky: checked once at the end */
    int first;  /* no comma before the next member */
} bg_audit_w_t;

static void bg_audit__raw(bg_audit_w_t *w, const char *s, size_t n)
{
    if (!w->p) {
        w->len += n;
        return;
    }
    if (w->failed || w->len + n >= w->cap) {
        w->failed = 1;
        return;
    }
    memcpy(w->p + w->len, s, n);
    w->len += n;
}

static void bg_audit__ch(bg_audit_w_t *w, char c) { bg_audit__raw(w, &c, 1); }

/* A JSON string of the n bytes at s: NUL and other controls escaped, invalid
 * UTF-8 replaced by U+FFFD. */
static void bg_audit__strn(bg_audit_w_t *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;
    bg_audit__ch(w, '"');
    while (i < n) {
        unsigned c = u[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x7f) {
            run++, i++;
            continue;
        }
        bg_audit__raw(w, s + i - run, run);
        run = 0;
        if (c >= 0x80) {
            size_t k = bg_utf8_len(u + i, n - i);
            if (k)
                bg_audit__raw(w, s + i, k);
            else
                bg_audit__raw(w, "\\ufffd", 6);
            i += k ? k : 1;
            continue;
        }
        char esc[6] = {'\\', (char)c, 0, 0, 0, 0};
        if (c == '\n')
            esc[1] = 'n';
        else if (c == '\t')
            esc[1] = 't';
        else if (c == '\r')
            esc[1] = 'r';
        if (c == '"' || c == '\\' || c == '\n' || c == '\t' || c == '\r') {
            bg_audit__raw(w, esc, 2);
        } else {
            char u6[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            bg_audit__raw(w, u6, 6);
        }
        i++;
    }
    bg_audit__raw(w, s + i - run, run);
    bg_audit__ch(w, '"');
}

static void bg_audit__str(bg_audit_w_t *w, const char *s)
{
    bg_audit__strn(w, s, strlen(s));
}

static void bg_audit__key(bg_audit_w_t *w, const char *k)
{
    if (!w->first)
        bg_audit__ch(w, ',');
    w->first = 0;
    bg_audit__ch(w, '"');
    bg_audit__raw(w, k, strlen(k));
    bg_audit__raw(w, "\":", 2);
}

static void bg_audit__kstr(bg_audit_w_t *w, const char *k, const char *v)
{
    if (!v)
        return;
    bg_audit__key(w, k);
    bg_audit__str(w, v);
}

/* Decimal digits of v, written backwards from the end of b[24]; returns
 * where they start. snprintf was a fifth of the encoder's time (an event
 * has a dozen numbers). */
static char *bg_audit__digits(char b[24], uint64_t v, int negative)
{
    char *p = b + 24;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (negative)
        *--p = '-';
    return p;
}

static void bg_audit__kuint(bg_audit_w_t *w, const char *k, uint64_t v)
{
    char b[24], *p = bg_audit__digits(b, v, 0);
    bg_audit__key(w, k);
    bg_audit__raw(w, p, (size_t)(b + 24 - p));
}

static void bg_audit__kint(bg_audit_w_t *w, const char *k, int64_t v)
{
    /* the magnitude of INT64_MIN does not fit int64_t: negate as unsigned */
    uint64_t mag = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    char b[24], *p = bg_audit__digits(b, mag, v < 0);
    bg_audit__key(w, k);
    bg_audit__raw(w, p, (size_t)(b + 24 - p));
}

static void bg_audit__open(bg_audit_w_t *w, const char *k, char c)
{
    bg_audit__key(w, k);
    bg_audit__ch(w, c);
    w->first = 1;
}

static void bg_audit__close(bg_audit_w_t *w, char c)
{
    bg_audit__ch(w, c);
    w->first = 0;
}

/* Local name tables: the JSON contract must not change if policy/ renames. */
static const char *bg_audit__verb(bg_verb_t v)
{
    static const char *const n[] = {"read", "write", "create", "delete", "alter", "describe"};
    return (unsigned)v < BG_VERB__COUNT ? n[v] : "unknown";
}

static const char *bg_audit__effect(bg_effect_t e)
{
    static const char *const n[] = {"allow", "deny", "hold"};
    return (unsigned)e <= BG_EFFECT_HOLD ? n[e] : "unknown";
}

static const char *bg_audit__mode(bg_mode_t m) { return m == BG_MODE_AUDIT ? "audit" : "enforce"; }

static const char *bg_audit__res_type(bg_res_type_t t)
{
    static const char *const n[] = {"kafka:topic",   "kafka:group", "kafka:transactional-id",
                                    "kafka:cluster", "amqp:exchange", "amqp:queue", "http"};
    return (unsigned)t < BG_RES__COUNT ? n[t] : "unknown";
}

const char *bg_audit_kind_name(bg_audit_kind_t k)
{
    static const char *const n[] = {"session_start", "session_end", "auth_failure", "decision",
                                    "reload",        "approval",    "admin"};
    return (unsigned)k < BG_AUDIT_EV__COUNT ? n[k] : "unknown";
}

/* Resource names are (ptr, len) views and may hold any byte, NUL included
 * (Kafka group and transactional ids are arbitrary strings of up to 32767
 * bytes): written whole, so no name reads as another's. An event too large
 * for one record is split by resources into parts, never by name (audit.c). */
static void bg_audit__kview(bg_audit_w_t *w, const char *k, const char *p, size_t n)
{
    bg_audit__key(w, k);
    bg_audit__strn(w, p ? p : "", p ? n : 0);
}

static void bg_audit__principal(bg_audit_w_t *w, const bg_audit_principal_t *pr)
{
    if (!pr->sub && !pr->issuer && !pr->token_id && pr->ngroups == 0)
        return;
    bg_audit__open(w, "principal", '{');
    bg_audit__kstr(w, "sub", pr->sub);
    if (pr->ngroups > 0 && pr->groups) {
        bg_audit__open(w, "groups", '[');
        for (size_t i = 0; i < pr->ngroups; i++) {
            if (i)
                bg_audit__ch(w, ',');
            bg_audit__str(w, pr->groups[i] ? pr->groups[i] : "");
        }
        bg_audit__close(w, ']');
    }
    bg_audit__kstr(w, "issuer", pr->issuer);
    bg_audit__kstr(w, "token_id", pr->token_id);
    bg_audit__close(w, '}');
}

static void bg_audit__client_api(bg_audit_w_t *w, const bg_audit_event_t *ev)
{
    if (ev->client_id || ev->client_software_name || ev->client_software_version) {
        bg_audit__open(w, "client", '{');
        bg_audit__kstr(w, "id", ev->client_id);
        bg_audit__kstr(w, "software_name", ev->client_software_name);
        bg_audit__kstr(w, "software_version", ev->client_software_version);
        bg_audit__close(w, '}');
    }
    if (ev->api || (ev->has & BG_AUDIT_HAS_API_VERSION)) {
        bg_audit__open(w, "api", '{');
        bg_audit__kstr(w, "name", ev->api);
        if (ev->has & BG_AUDIT_HAS_API_VERSION)
            bg_audit__kint(w, "version", ev->api_version);
        bg_audit__close(w, '}');
    }
}

static void bg_audit__resource(bg_audit_w_t *w, const bg_policy_resource_t *r)
{
    bg_audit__ch(w, '{');
    w->first = 1;
    bg_audit__kstr(w, "type", bg_audit__res_type(r->type));
    if (r->type == BG_RES_HTTP)
        bg_audit__kview(w, "route", r->route, r->route_len);
    bg_audit__kview(w, "name", r->name, r->name_len);
    bg_audit__close(w, '}');
}

static void bg_audit__resources(bg_audit_w_t *w, const bg_audit_event_t *ev)
{
    if (ev->nresources > 0 && ev->resources) {
        bg_audit__open(w, "resources", '[');
        for (size_t i = 0; i < ev->nresources; i++) {
            if (i)
                bg_audit__ch(w, ',');
            bg_audit__resource(w, &ev->resources[i]);
        }
        bg_audit__close(w, ']');
    }
    if (ev->has & BG_AUDIT_HAS_VERB)
        bg_audit__kstr(w, "verb", bg_audit__verb(ev->verb));
}

static void bg_audit__decision(bg_audit_w_t *w, const bg_audit_event_t *ev)
{
    if (!(ev->has & BG_AUDIT_HAS_DECISION))
        return;
    const bg_audit_decision_t *d = &ev->decision;
    bg_audit__open(w, "decision", '{');
    bg_audit__kstr(w, "effect", bg_audit__effect(d->effect));
    bg_audit__kstr(w, "would", bg_audit__effect(d->would));
    bg_audit__kstr(w, "rule", d->rule);
    bg_audit__kstr(w, "rule_file", d->rule_file);
    if (d->rule)
        bg_audit__kint(w, "rule_line", d->rule_line);
    bg_audit__kstr(w, "mode", bg_audit__mode(d->mode));
    bg_audit__kstr(w, "by", d->by);
    if (d->enforced_rule) {
        bg_audit__open(w, "enforced", '{');
        bg_audit__kstr(w, "rule", d->enforced_rule);
        bg_audit__kstr(w, "rule_file", d->enforced_rule_file);
        bg_audit__kint(w, "rule_line", d->enforced_rule_line);
        bg_audit__close(w, '}');
    }
    bg_audit__close(w, '}');
}

static void bg_audit__outcome(bg_audit_w_t *w, const bg_audit_event_t *ev)
{
    if (ev->has & BG_AUDIT_HAS_MASKING) {
        bg_audit__open(w, "masking", '{');
        bg_audit__kuint(w, "fields", ev->masked_fields);
        bg_audit__kuint(w, "records", ev->masked_records);
        bg_audit__close(w, '}');
    }
    if (ev->approval_id || ev->approval_state) {
        bg_audit__open(w, "approval", '{');
        bg_audit__kstr(w, "id", ev->approval_id);
        bg_audit__kstr(w, "state", ev->approval_state);
        bg_audit__close(w, '}');
    }
    if (ev->has & BG_AUDIT_HAS_RESULT) {
        const bg_audit_result_t *r = &ev->result;
        bg_audit__open(w, "result", '{');
        bg_audit__kint(w, "error_code", r->error_code);
        bg_audit__kstr(w, "error_name", r->error_name);
        bg_audit__kuint(w, "bytes_in", r->bytes_in);
        if (ev->has & BG_AUDIT_HAS_BYTES_OUT)
            bg_audit__kuint(w, "bytes_out", r->bytes_out);
        bg_audit__kuint(w, "records", r->records);
        if (ev->has & BG_AUDIT_HAS_LATENCY)
            bg_audit__kint(w, "latency_us", r->latency_us);
        bg_audit__close(w, '}');
    }
    bg_audit__kstr(w, "auth_failure_reason", ev->auth_failure_reason);
    bg_audit__kstr(w, "detail", ev->detail);
}

/* xorshift-style generator seeded per thread from getrandom(): event ids need
 * uniqueness, not secrecy, and a syscall per event would cost more than the
 * whole encoding. */
static uint64_t bg_audit__rand64(void)
{
    static _Thread_local uint64_t s[2];
    if (!s[0] && !s[1]) {
        if (getrandom(s, sizeof s, 0) != (ssize_t)sizeof s || (!s[0] && !s[1])) {
            struct timespec t;
            clock_gettime(CLOCK_REALTIME, &t);
            s[0] = (uint64_t)t.tv_nsec ^ ((uint64_t)t.tv_sec << 20) ^ (uintptr_t)&t;
            s[1] = 0x9e3779b97f4a7c15ull;
        }
    }
    uint64_t a = s[0], b = s[1];
    s[0] = b;
    a ^= a << 23;
    s[1] = a ^ b ^ (a >> 17) ^ (b >> 26);
    return s[1] + b;
}

void bg_audit_uuid4(char out[37])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t b[16];
    uint64_t r0 = bg_audit__rand64(), r1 = bg_audit__rand64();
    memcpy(b, &r0, 8);
    memcpy(b + 8, &r1, 8);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* variant 10 */
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

static int64_t bg_audit__now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void bg_audit__event(bg_audit_w_t *w, const bg_audit_event_t *ev, const char *instance,
                            const char *id)
{
    bg_audit__ch(w, '{');
    bg_audit__kstr(w, "event_id", id);
    bg_audit__kstr(w, "kind", bg_audit_kind_name(ev->kind));
    bg_audit__kint(w, "time_ms", ev->time_ms ? ev->time_ms : bg_audit__now_ms());
    bg_audit__kstr(w, "instance", instance);
    bg_audit__kstr(w, "session_id", ev->session_id);
    if (ev->has & BG_AUDIT_HAS_SEQ)
        bg_audit__kuint(w, "seq", ev->seq);
    if (ev->parts >= 2) {
        bg_audit__kuint(w, "part", ev->part);
        bg_audit__kuint(w, "parts", ev->parts);
    }
    bg_audit__kstr(w, "protocol", ev->protocol);
    bg_audit__kstr(w, "peer", ev->peer);
    bg_audit__principal(w, &ev->principal);
    bg_audit__client_api(w, ev);
    bg_audit__resources(w, ev);
    bg_audit__decision(w, ev);
    bg_audit__outcome(w, ev);
    bg_audit__ch(w, '}');
}

size_t bg_audit_encode_json(const bg_audit_event_t *ev, const char *instance, char *dst, size_t cap)
{
    bg_audit_w_t w = {.p = dst, .cap = cap, .first = 1};
    char id[37];
    if (!ev || !dst || cap == 0)
        return 0;
    if (!ev->event_id)
        bg_audit_uuid4(id);
    bg_audit__event(&w, ev, instance, ev->event_id ? ev->event_id : id);
    if (w.failed)
        return 0;
    dst[w.len] = '\0';
    return w.len;
}

size_t bg_audit_json_len(const bg_audit_event_t *ev, const char *instance)
{
    bg_audit_w_t w = {.first = 1};
    /* a generated id has the length of any other */
    bg_audit__event(&w, ev, instance,
                    ev->event_id ? ev->event_id : "00000000-0000-4000-8000-000000000000");
    return w.len;
}

size_t bg_audit_json_resource_len(const bg_policy_resource_t *r)
{
    bg_audit_w_t w = {.first = 1};
    bg_audit__resource(&w, r);
    return w.len;
}

size_t bg_audit_resources_json_len(const bg_policy_resource_t *res, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += (i ? 1 : 0) + bg_audit_json_resource_len(&res[i]);
    return total;
}

size_t bg_audit_resources_fit(const bg_policy_resource_t *res, size_t n, size_t budget)
{
    size_t used = 0, k = 0;
    for (; k < n; k++) {
        size_t add = (k ? 1 : 0) + bg_audit_json_resource_len(&res[k]);
        if (used + add > budget)
            break;
        used += add;
    }
    return k;
}

/* ---- record payload: [u16 LE key length][key][json] ---- */

size_t bg_audit_rec_build(uint8_t *dst, size_t cap, const char *key, size_t klen, const char *json,
                          size_t jlen)
{
    if (klen > 0xffff)
        klen = 0xffff;
    if (2 + klen + jlen > cap)
        return 0;
    dst[0] = (uint8_t)(klen & 0xff);
    dst[1] = (uint8_t)(klen >> 8);
    if (klen)
        memcpy(dst + 2, key, klen);
    memcpy(dst + 2 + klen, json, jlen);
    return 2 + klen + jlen;
}

const char *bg_audit_rec_key(const bg_audit_rec_t *r, size_t *len)
{
    *len = 0;
    if (r->len < 2)
        return NULL;
    size_t k = (size_t)r->data[0] | ((size_t)r->data[1] << 8);
    if (2 + k > r->len)
        return NULL;
    *len = k;
    return (const char *)r->data + 2;
}

const char *bg_audit_rec_json(const bg_audit_rec_t *r, size_t *len)
{
    *len = 0;
    if (r->len < 2)
        return NULL;
    size_t k = (size_t)r->data[0] | ((size_t)r->data[1] << 8);
    if (2 + k > r->len)
        return NULL;
    *len = r->len - 2 - k;
    return (const char *)r->data + 2 + k;
}
