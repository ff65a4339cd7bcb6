#include "adapters/kafka/kafka_audit.h"

#include <stdio.h>
#include <string.h>

#include "audit/audit.h"
#include "broker/log.h"
#include "broker/util_net.h"

/* "ProduceRequest" -> "Produce". */
static const char *bg_kafka_audit__api(int16_t api, char *buf, size_t cap)
{
    const bg_kafka_msg_desc_t *d = bg_kafka_msg_desc(api, 0);
    if (!d) {
        snprintf(buf, cap, "api-%d", api);
        return buf;
    }
    size_t n = strlen(d->name);
    if (n > 7 && strcmp(d->name + n - 7, "Request") == 0)
        n -= 7;
    snprintf(buf, cap, "%.*s", (int)n, d->name);
    return buf;
}

static void bg_kafka_audit__base(bg_kafka_session_t *s, bg_audit_event_t *ev, bg_audit_kind_t kind)
{
    bg_audit_event_session(ev, kind, s->id, &s->seq, "kafka", s->peer, &s->principal,
                           s->client_id, s->sw_name, s->sw_version);
}

static void bg_kafka_audit__emit(bg_kafka_session_t *s, const bg_audit_event_t *ev)
{
    bg_audit_t *a = (bg_audit_t *)s->kw->w->audit;
    if (!a)
        return;
    /* Requests are refused before they are admitted (admitting()). A
     * decision is recorded when its answer is queued for the client, and
     * a session's end when it ends: both for work already let in, so the
     * pipeline takes them even if it stopped admitting meanwhile. */
    if (bg_audit_emit_session(a, ev) < 0)
        bg_log_debug("kafka", "audit event not queued");
}

void bg_kafka_audit_session_start(bg_kafka_session_t *s, int reauth)
{
    bg_audit_event_t ev;
    bg_kafka_audit__base(s, &ev, BG_AUDIT_EV_SESSION_START);
    ev.detail = reauth ? "re-authenticated" : NULL;
    bg_kafka_audit__emit(s, &ev);
}

void bg_kafka_audit_session_end(bg_kafka_session_t *s)
{
    if (!s->principal.sub) /* never authenticated: its auth failure was recorded */
        return;
    bg_audit_event_t ev;
    bg_kafka_audit__base(s, &ev, BG_AUDIT_EV_SESSION_END);
    ev.has |= BG_AUDIT_HAS_RESULT | BG_AUDIT_HAS_BYTES_OUT | BG_AUDIT_HAS_LATENCY;
    ev.result.bytes_in = s->bytes_in;
    ev.result.bytes_out = s->bytes_out;
    ev.result.records = s->requests;
    ev.result.latency_us = (bg_util_now_ms() - s->started_ms) * 1000;
    ev.detail = s->end_why[0] ? s->end_why : NULL; /* how it ended */
    bg_kafka_audit__emit(s, &ev);
}

void bg_kafka_audit_auth_failure(bg_kafka_session_t *s, const char *reason)
{
    bg_metric_add(&s->kw->w->metrics.auth_failed[BG_PROTO_KAFKA], 1);
    bg_audit_event_t ev;
    bg_kafka_audit__base(s, &ev, BG_AUDIT_EV_AUTH_FAILURE);
    ev.principal = (bg_audit_principal_t){0};
    ev.auth_failure_reason = reason;
    bg_kafka_audit__emit(s, &ev);
}

/* 1 for a request refused by closing the connection before any decision
 * was recorded (a group named twice in one OffsetFetch, too many share
 * sessions, a request past the arena limit): it is recorded as one deny
 * with the close reason, so every refusal leaves an event. Not when the
 * refusal is the audit pipeline's own (it takes no events). */
static int bg_kafka_audit__bare_close(bg_kafka_session_t *s, const bg_kafka_verdict_t *v)
{
    return v->action == BG_KAFKA_ACT_CLOSE && v->ndecisions == 0 && bg_kafka_audit_admitting(s);
}

int bg_kafka_audit_due(bg_kafka_session_t *s, const bg_kafka_verdict_t *v)
{
    return v->ndecisions > 0 || bg_kafka_audit__bare_close(s, v);
}

void bg_kafka_audit_count(bg_kafka_session_t *s, const bg_kafka_verdict_t *v)
{
    bg_worker_metrics_t *m = &s->kw->w->metrics;
    if (bg_kafka_audit__bare_close(s, v))
        bg_metric_add(&m->decisions[BG_PROTO_KAFKA][BG_EFFECT_DENY], 1);
    for (size_t i = 0; i < v->ndecisions; i++) {
        const bg_policy_decision_t *d = &v->decisions[i].decision;
        int applied = v->decisions[i].error_code ? BG_EFFECT_DENY : d->effect;
        bg_metric_add(&m->decisions[BG_PROTO_KAFKA][applied], 1);
        if (d->mode == BG_MODE_AUDIT && d->would != BG_EFFECT_ALLOW)
            bg_metric_add(&m->decisions_audit_only[BG_PROTO_KAFKA], 1);
    }
}

int bg_kafka_audit_pin(bg_kafka_session_t *s, bg_kafka_pending_t *pe)
{
    if (!s->kw->w->audit)
        return 0;
    bg_kafka_verdict_t *v = &pe->verdict;
    size_t need = 0;
    for (size_t i = 0; i < v->ndecisions; i++)
        for (size_t j = 0; j < v->decisions[i].nresources; j++)
            need += v->decisions[i].resources[j].name_len;
    if (need == 0)
        return 0;
    /* One copy of every name, past the request's arena limit if need be:
     * the names are a part of the request already held to max_frame_bytes
     * (times the decisions naming them), and an event must never lose one. */
    char *copy = bg_kafka_arena_alloc_past_limit(&pe->arena, need);
    if (!copy)
        return -1;
    for (size_t i = 0; i < v->ndecisions; i++)
        for (size_t j = 0; j < v->decisions[i].nresources; j++) {
            bg_policy_resource_t *r = &v->decisions[i].resources[j];
            memcpy(copy, r->name, r->name_len);
            r->name = r->name_len ? copy : NULL;
            copy += r->name_len;
        }
    return 0;
}

static void bg_kafka_audit__decisions(bg_kafka_session_t *s, bg_kafka_pending_t *pe,
                                      const int64_t *latency_us, const char *detail);

void bg_kafka_audit_decisions(bg_kafka_session_t *s, bg_kafka_pending_t *pe,
                              const int64_t *latency_us)
{
    bg_kafka_audit__decisions(s, pe, latency_us, NULL);
}

void bg_kafka_audit_unanswered(bg_kafka_session_t *s, bg_kafka_pending_t *pe)
{
    if (pe->verdict.action == BG_KAFKA_ACT_CLOSE) {
        int64_t latency = bg_util_now_us() - pe->start_us;
        bg_kafka_audit__decisions(s, pe, &latency, NULL);
        return;
    }
    bg_kafka_audit__decisions(s, pe, NULL, "no response: session closed");
}

void bg_kafka_audit_cut(bg_kafka_session_t *s, bg_kafka_pending_t *pe)
{
    bg_kafka_audit__decisions(s, pe, NULL, "response cut: session closed");
}

/* The one event of a request refused by closing before any resource was
 * decided: no verb or resource, busgate itself refused (enforced in either
 * policy mode), error_code and the reason say why. api_key -1: the header
 * did not say. */
static void bg_kafka_audit__close_event(bg_kafka_session_t *s, int16_t api_key, int16_t api_version,
                                        size_t bytes_in, int16_t error_code,
                                        const int64_t *latency_us, const char *reason)
{
    char api[64];
    bg_audit_event_t ev;
    bg_kafka_audit__base(s, &ev, BG_AUDIT_EV_DECISION);
    ev.api = api_key >= 0 ? bg_kafka_audit__api(api_key, api, sizeof api) : "unknown";
    ev.api_version = api_version;
    ev.has |= BG_AUDIT_HAS_DECISION | BG_AUDIT_HAS_RESULT | BG_AUDIT_HAS_BYTES_OUT |
              BG_AUDIT_HAS_LATENCY |
              (api_key >= 0 && api_version >= 0 ? BG_AUDIT_HAS_API_VERSION : 0);
    ev.decision.effect = BG_EFFECT_DENY;
    ev.decision.would = BG_EFFECT_DENY;
    ev.decision.mode = BG_MODE_ENFORCE;
    ev.decision.by = "busgate";
    ev.result.error_code = error_code;
    ev.result.error_name = bg_kafka_error_name(error_code);
    ev.result.bytes_in = bytes_in;
    ev.result.latency_us = latency_us ? *latency_us : 0;
    ev.detail = reason ? reason : "request refused";
    bg_kafka_audit__emit(s, &ev);
}

void bg_kafka_audit_refused(bg_kafka_session_t *s, int16_t api_key, int16_t api_version,
                            size_t bytes_in, int16_t error_code, const char *reason)
{
    if (!s->principal.sub)
        return; /* before authentication: an auth_failure says it */
    bg_metric_add(&s->kw->w->metrics.decisions[BG_PROTO_KAFKA][BG_EFFECT_DENY], 1);
    if (!s->kw->w->audit || s->refusal.set)
        return;
    s->refusal.set = 1;
    s->refusal.api_key = api_key;
    s->refusal.api_version = api_version;
    s->refusal.error_code = error_code;
    s->refusal.bytes_in = bytes_in;
    snprintf(s->refusal.reason, sizeof s->refusal.reason, "%s",
             reason ? reason : "request refused");
}

void bg_kafka_audit_refusal_emit(bg_kafka_session_t *s)
{
    if (!s->refusal.set)
        return;
    s->refusal.set = 0;
    bg_kafka_audit__close_event(s, s->refusal.api_key, s->refusal.api_version,
                                s->refusal.bytes_in, s->refusal.error_code, NULL,
                                s->refusal.reason);
}

static void bg_kafka_audit__decisions(bg_kafka_session_t *s, bg_kafka_pending_t *pe,
                                      const int64_t *latency_us, const char *detail)
{
    if (!s->kw->w->audit)
        return;
    char api[64];
    const bg_kafka_verdict_t *v = &pe->verdict;
    /* Only called for a refusal that leaves its event (bg_kafka_audit_due,
     * decided with the request): whether the pipeline admits now does not
     * matter. A decided request busgate cannot take (a group named twice,
     * past a limit, undecidable): INVALID_REQUEST, as for a body it cannot
     * read. */
    if (v->action == BG_KAFKA_ACT_CLOSE && v->ndecisions == 0) {
        bg_kafka_audit__close_event(s, pe->hdr.api_key, pe->hdr.api_version, pe->bytes_in,
                                    BG_KAFKA_E_INVALID_REQUEST, latency_us, v->close_reason);
        return;
    }
    for (size_t i = 0; i < v->ndecisions; i++) {
        const bg_kafka_decision_t *d = &v->decisions[i];
        bg_audit_event_t ev;
        bg_kafka_audit__base(s, &ev, BG_AUDIT_EV_DECISION);
        ev.api = bg_kafka_audit__api(pe->hdr.api_key, api, sizeof api);
        ev.api_version = pe->hdr.api_version;
        ev.resources = d->resources;
        ev.nresources = d->nresources;
        ev.verb = d->verb;
        ev.has |= BG_AUDIT_HAS_API_VERSION | BG_AUDIT_HAS_VERB | BG_AUDIT_HAS_DECISION |
                  BG_AUDIT_HAS_RESULT | BG_AUDIT_HAS_BYTES_OUT | BG_AUDIT_HAS_LATENCY;
        bg_audit_decision_set(&ev.decision, &d->decision);
        if (d->error_code)
            ev.decision.effect = BG_EFFECT_DENY;
        ev.result.error_code = d->error_code;
        ev.result.error_name = d->error_code ? bg_kafka_error_name(d->error_code) : NULL;
        ev.result.bytes_in = pe->bytes_in;
        ev.result.bytes_out = pe->bytes_out;
        ev.result.records = d->records;
        ev.result.latency_us = latency_us ? *latency_us : 0;
        /* busgate's own reason ("reserved audit topic", ...) says why a
         * decision has no rule; a closing session's note wins over it in
         * the detail, and decision.by still says who decided. */
        ev.decision.by = d->reason ? "busgate" : NULL;
        ev.detail = detail ? detail : d->reason;
        bg_kafka_audit__emit(s, &ev);
    }
}

int bg_kafka_audit_budget(const bg_kafka_req_hdr_t *h, const bg_kafka_struct_t *req,
                          bg_kafka_arena_t *arena, bg_kafka_verdict_t *v)
{
    size_t worst = 0, at = 0;
    for (size_t i = 0; i < v->ndecisions; i++) {
        size_t n =
            bg_audit_resources_json_len(v->decisions[i].resources, v->decisions[i].nresources);
        if (n > worst) {
            worst = n;
            at = i;
        }
    }
    if (worst <= BG_AUDIT_MAX_EVENT_BYTES)
        return 0;
    bg_kafka_decision_t *d = &v->decisions[at], one = *d;
    static const char fallback[] =
        "request names more resources than busgate records (8 MiB of audit record): refused";
    char *why = bg_kafka_arena_alloc_past_limit(arena, 160);
    if (why)
        snprintf(why, 160,
                 "request names %zu resources (%zu bytes of audit record), more than busgate "
                 "records (%u MiB): refused",
                 one.nresources, worst, BG_AUDIT_MAX_EVENT_BYTES >> 20);
    bg_kafka_authz_refuse(h, req, BG_KAFKA_E_POLICY_VIOLATION, "request too large to audit", arena,
                          v);
    /* One record's worth of the names (half a record: the other fields
     * have the rest), not all of them: the refusal is one whole event. */
    one.nresources =
        bg_audit_resources_fit(one.resources, one.nresources, BG_AUDIT_RECORD_BYTES / 2);
    one.decision = (bg_policy_decision_t){
        .effect = BG_EFFECT_DENY, .would = BG_EFFECT_DENY, .mode = BG_MODE_ENFORCE};
    one.error_code = BG_KAFKA_E_POLICY_VIOLATION;
    one.reason = why ? why : fallback;
    *d = one;
    v->decisions = d; /* in the arena, as before */
    v->ndecisions = 1;
    return 1;
}

int bg_kafka_audit_admitting(bg_kafka_session_t *s)
{
    bg_audit_t *a = (bg_audit_t *)s->kw->w->audit;
    return !a || bg_audit_admitting(a);
}
