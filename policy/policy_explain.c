/* Explanations of a decision (format in policy_explain.h). Uses the same
 * indexes as bg_policy_decide so it reports what enforcement sees. */
#include "policy/policy_explain.h"
#include "policy/policy-internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bg_policy_out_s { /* snprintf-style appender */
    char *buf;
    size_t cap;
    size_t len; /* bytes the full text needs */
} bg_policy_out_t;

static void bg_policy__putn(bg_policy_out_t *o, const char *s, size_t n)
{
    if (o->len < o->cap) {
        size_t room = o->cap - 1 - o->len;
        memcpy(o->buf + o->len, s, n < room ? n : room);
        o->buf[o->len + (n < room ? n : room)] = '\0';
    }
    o->len += n;
}

static void bg_policy__printf(bg_policy_out_t *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void bg_policy__printf(bg_policy_out_t *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    /* vsnprintf truncates and terminates; it returns the full length. */
    int n = o->len < o->cap ? vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap)
                            : vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n;
}

/* Writes s as a quoted JSON string. */
static void bg_policy__json_str(bg_policy_out_t *o, const char *s)
{
    bg_policy__putn(o, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            bg_policy__printf(o, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            bg_policy__printf(o, "\\u%04x", c);
        else
            bg_policy__putn(o, s, 1);
    }
    bg_policy__putn(o, "\"", 1);
}

static const char *bg_policy__mode_name(bg_mode_t m)
{
    return m == BG_MODE_AUDIT ? "audit" : "enforce";
}

static const char *bg_policy__format_name(bg_mask_format_t f)
{
    return f == BG_MASK_FORMAT_JSON ? "json" : f == BG_MASK_FORMAT_AVRO ? "avro" : "auto";
}

static const char *bg_policy__strategy_name(bg_mask_strategy_t s)
{
    static const char *const names[] = {"redact", "hash", "last4", "null"};
    return (unsigned)s <= BG_MASK_NULL ? names[s] : "?";
}

/* "<effect> by rule 'x' (f:3)" or "<effect> by default". */
static void bg_policy__by(bg_policy_out_t *o, bg_effect_t e, const bg_policy_rule_t *r)
{
    if (r)
        bg_policy__printf(o, "%s by rule '%s' (%s:%d)", bg_effect_name(e), r->name, r->file,
                          r->line);
    else
        bg_policy__printf(o, "%s by default", bg_effect_name(e));
}

/* ---- matching rules, in file order ---- */

typedef struct bg_policy_xctx_s {
    const bg_policy_t *p;
    const bg_policy_principal_t *pr;
    unsigned vbit;
    unsigned char *hit; /* per rule */
} bg_policy_xctx_t;

static bool bg_policy__x_want(void *ctx, const bg_policy_cand_t *cand)
{
    bg_policy_xctx_t *c = ctx;
    uint32_t id = cand->item;
    return (BG_POLICY_META_VERBS(cand->meta) & c->vbit) && !c->hit[id] &&
           bg_policy__subjects_match(c->p->rules[id].subj, c->pr);
}

static void bg_policy__x_hit(void *ctx, uint32_t id)
{
    ((bg_policy_xctx_t *)ctx)->hit[id] = 1;
}

/* What this build refuses of decision d for (res, verb), by the rule the
 * adapters apply (bg_policy_unbuilt), as the note explain prints; NULL when
 * d is applied as it is. For an AMQP exchange only the requests that move
 * bodies are refused: explain has no method to tell which one is meant. */
static const char *bg_policy__unbuilt_note(const bg_policy_decision_t *d,
                                           const bg_policy_resource_t *res, bg_verb_t verb)
{
    bg_policy_data_t data = bg_policy_moves_data(res->type, verb);
    switch (bg_policy_unbuilt(d, data != BG_POLICY_DATA_NONE)) {
    case BG_POLICY_UNBUILT_HOLD:
        return "this build refuses it: hold rules refuse in this build (approvals are not part "
               "of it)";
    case BG_POLICY_UNBUILT_MASK:
        return data == BG_POLICY_DATA_ALL
                   ? "this build refuses it: masking is not part of this build"
                   : "this build refuses it when it moves message bodies (publish, bind, "
                     "alternate-exchange and dead-letter routes; not unbind): masking is not "
                     "part of this build";
    case BG_POLICY_UNBUILT_NONE: break;
    }
    return NULL;
}

static void bg_policy__text(bg_policy_out_t *o, const bg_policy_t *p,
                            const bg_policy_decision_t *d, const bg_policy_rule_t *enf,
                            const unsigned char *hit, const char *note)
{
    bg_policy__by(o, d->effect, enf);
    if (d->mode == BG_MODE_AUDIT) {
        bg_policy__printf(o, "\nmode: audit (would ");
        bg_policy__by(o, d->would, d->rule);
        bg_policy__printf(o, ")");
    }
    for (size_t i = 0; i < p->nrules; i++) {
        const bg_policy_rule_t *r = &p->rules[i];
        if (!hit[i] || r == enf || r == d->rule)
            continue;
        bg_policy__printf(o, "\nalso matched: ");
        bg_policy__by(o, (bg_effect_t)r->effect, r);
        if (r->audit)
            bg_policy__printf(o, " (mode: audit)");
    }
    for (size_t i = 0; i < d->nmasks; i++) {
        const bg_policy_mask_t *m = d->masks[i];
        bg_policy__printf(o, "\nmask: '%s' (%s:%d) %s %s ", m->name, m->file, m->line,
                          bg_policy__strategy_name(m->strategy), bg_policy__format_name(m->format));
        for (size_t f = 0; f < m->nfields; f++)
            bg_policy__printf(o, "%s%s", f ? ", " : "", m->fields[f]);
    }
    if (note)
        bg_policy__printf(o, "\nnote: %s", note);
    bg_policy__printf(o, "\n");
}

static void bg_policy__json_rule(bg_policy_out_t *o, const bg_policy_rule_t *r, int full)
{
    if (!r) {
        bg_policy__printf(o, "null");
        return;
    }
    bg_policy__printf(o, "{\"name\":");
    bg_policy__json_str(o, r->name);
    bg_policy__printf(o, ",\"file\":");
    bg_policy__json_str(o, r->file);
    bg_policy__printf(o, ",\"line\":%d", r->line);
    if (full)
        bg_policy__printf(o, ",\"effect\":\"%s\",\"mode\":\"%s\"",
                          bg_effect_name((bg_effect_t)r->effect), r->audit ? "audit" : "enforce");
    bg_policy__printf(o, "}");
}

static void bg_policy__json_mask(bg_policy_out_t *o, const bg_policy_mask_t *m)
{
    bg_policy__printf(o, "{\"name\":");
    bg_policy__json_str(o, m->name);
    bg_policy__printf(o, ",\"file\":");
    bg_policy__json_str(o, m->file);
    bg_policy__printf(o, ",\"line\":%d,\"format\":\"%s\",\"strategy\":\"%s\",\"fields\":[",
                      m->line, bg_policy__format_name(m->format),
                      bg_policy__strategy_name(m->strategy));
    for (size_t f = 0; f < m->nfields; f++) {
        if (f)
            bg_policy__putn(o, ",", 1);
        bg_policy__json_str(o, m->fields[f]);
    }
    bg_policy__printf(o, "]}");
}

static void bg_policy__json(bg_policy_out_t *o, const bg_policy_t *p,
                            const bg_policy_decision_t *d, const bg_policy_rule_t *enf,
                            const unsigned char *hit, const char *note)
{
    bg_policy__printf(o, "{\"effect\":\"%s\",\"would\":\"%s\",\"mode\":\"%s\",\"rule\":",
                      bg_effect_name(d->effect), bg_effect_name(d->would),
                      bg_policy__mode_name(d->mode));
    bg_policy__json_rule(o, d->rule, 0);
    bg_policy__printf(o, ",\"enforced_rule\":");
    bg_policy__json_rule(o, enf, 0);
    bg_policy__printf(o, ",\"matched\":[");
    int first = 1;
    for (size_t i = 0; i < p->nrules; i++) {
        if (!hit[i])
            continue;
        if (!first)
            bg_policy__putn(o, ",", 1);
        first = 0;
        bg_policy__json_rule(o, &p->rules[i], 1);
    }
    bg_policy__printf(o, "],\"masks\":[");
    for (size_t i = 0; i < d->nmasks; i++) {
        if (i)
            bg_policy__putn(o, ",", 1);
        bg_policy__json_mask(o, d->masks[i]);
    }
    bg_policy__printf(o, "],\"refused_by_build\":");
    if (note)
        bg_policy__json_str(o, note);
    else
        bg_policy__printf(o, "null");
    bg_policy__printf(o, "}\n");
}

int bg_policy_explain(const bg_policy_t *p, const bg_policy_principal_t *pr,
                      const bg_policy_resource_t *res, bg_verb_t verb, char *buf, size_t len,
                      int json)
{
    bg_policy_out_t o = {buf, len, 0};
    bg_policy_decision_t d;
    const bg_policy_rule_t *enf;
    bg_policy_xctx_t x = {p, pr, (unsigned)verb < BG_VERB__COUNT ? 1u << verb : 0u, NULL};
    if (len)
        buf[0] = '\0';
    x.hit = calloc(p->nrules + 1, 1);
    if (!x.hit)
        return -1;
    bg_policy__decide(p, pr, res, verb, &d, &enf);
    if (x.vbit && !(pr && pr->generation != p->generation))
        bg_policy__visit(p, res, false, verb,
                         &(bg_policy_visitor_t){bg_policy__x_want, bg_policy__x_hit, &x});
    const char *note = bg_policy__unbuilt_note(&d, res, verb);
    if (json)
        bg_policy__json(&o, p, &d, enf, x.hit, note);
    else
        bg_policy__text(&o, p, &d, enf, x.hit, note);
    free(x.hit);
    return o.len > (size_t)INT32_MAX ? INT32_MAX : (int)o.len;
}
