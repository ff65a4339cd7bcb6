/* Audit events and decision metrics of AMQP sessions (audit/audit.h is the
 * protocol-neutral pipeline; this file maps a session onto it). The audit
 * part of every call is a no-op when audit is off. Worker thread only. */
#include <stdio.h>
#include <string.h>

#include "adapters/amqp/amqp_session-internal.h"
#include "audit/audit.h"
#include "broker/log.h"
#include "broker/util_net.h"

static void bg_amqp_audit__base(bg_amqp_session_t *s, bg_audit_event_t *ev, bg_audit_kind_t kind)
{
    bg_audit_event_session(ev, kind, s->id, &s->seq, "amqp", s->peer, &s->principal,
                           s->principal.client_id, s->product, s->version);
}

static void bg_amqp_audit__emit(bg_amqp_session_t *s, const bg_audit_event_t *ev)
{
    struct bg_audit_s *a = s->aw->w->audit;
    /* Decisions follow an admitting() check and a session's end follows
     * its work: the pipeline takes both even if it stopped admitting. */
    if (a && bg_audit_emit_session(a, ev) < 0)
        bg_log_debug("amqp", "audit event not queued");
}

void bg_amqp_audit_session_start(bg_amqp_session_t *s, const char *detail)
{
    bg_audit_event_t ev;
    bg_amqp_audit__base(s, &ev, BG_AUDIT_EV_SESSION_START);
    ev.detail = detail;
    bg_amqp_audit__emit(s, &ev);
}

void bg_amqp_audit_session_end(bg_amqp_session_t *s)
{
    if (!s->principal.sub) /* never authenticated: its auth failure was recorded */
        return;
    bg_audit_event_t ev;
    bg_amqp_audit__base(s, &ev, BG_AUDIT_EV_SESSION_END);
    ev.has |= BG_AUDIT_HAS_RESULT | BG_AUDIT_HAS_BYTES_OUT | BG_AUDIT_HAS_LATENCY;
    ev.result.bytes_in = s->bytes_in;
    ev.result.bytes_out = s->bytes_out;
    ev.result.records = s->methods;
    ev.result.latency_us = (bg_util_now_ms() - s->started_ms) * 1000;
    ev.detail = s->end_why[0] ? s->end_why : NULL; /* how it ended */
    bg_amqp_audit__emit(s, &ev);
}

void bg_amqp_audit_auth_failure(bg_amqp_session_t *s, const char *reason)
{
    bg_metric_add(&s->aw->w->metrics.auth_failed[BG_PROTO_AMQP], 1);
    bg_audit_event_t ev;
    bg_amqp_audit__base(s, &ev, BG_AUDIT_EV_AUTH_FAILURE);
    ev.principal = (bg_audit_principal_t){0};
    ev.client_id = NULL;
    ev.auth_failure_reason = reason;
    bg_amqp_audit__emit(s, &ev);
}

/* The decision event of check c of method m, before its decision and
 * result fields. r: its one resource, named whole, NULs included (AMQP
 * names are length-prefixed; the encoder takes the length). */
static void bg_amqp_audit__check_event(bg_amqp_session_t *s, const bg_amqp_method_t *m,
                                       const bg_amqp_check_t *c, bg_policy_resource_t *r,
                                       bg_audit_event_t *ev, uint64_t bytes_in)
{
    *r = (bg_policy_resource_t){c->type, NULL, 0, c->name, c->name_len};
    bg_amqp_audit__base(s, ev, BG_AUDIT_EV_DECISION);
    ev->api = m->info->name;
    ev->resources = r;
    ev->nresources = 1;
    ev->verb = c->verb;
    /* No bytes_out or latency_us: the broker's answer is not matched to
     * the method (docs/audit.md), so neither is measured. */
    ev->has |= BG_AUDIT_HAS_VERB | BG_AUDIT_HAS_DECISION | BG_AUDIT_HAS_RESULT;
    ev->result.bytes_in = bytes_in;
    ev->result.records = m->id == AMQP_BASIC_PUBLISH_METHOD; /* the one message it carries */
}

void bg_amqp_audit_decisions(bg_amqp_session_t *s, const bg_amqp_method_t *m,
                             const bg_amqp_verdict_t *v, uint64_t bytes_in)
{
    bg_worker_metrics_t *mt = &s->aw->w->metrics;
    for (size_t i = 0; i < v->n; i++) {
        const bg_amqp_check_t *c = &v->checks[i];
        bg_metric_add(&mt->decisions[BG_PROTO_AMQP][c->decision.effect], 1);
        if (c->decision.mode == BG_MODE_AUDIT && c->decision.would != BG_EFFECT_ALLOW)
            bg_metric_add(&mt->decisions_audit_only[BG_PROTO_AMQP], 1);
        if (!s->aw->w->audit)
            continue;
        bg_policy_resource_t r;
        bg_audit_event_t ev;
        bg_amqp_audit__check_event(s, m, c, &r, &ev, bytes_in);
        bg_audit_decision_set(&ev.decision, &c->decision);
        /* Only the check that refused carries the code: the others were
         * allowed, and an operator looking for who lacks what must not see
         * a 403 on an allowed resource. */
        if (c->decision.effect != BG_EFFECT_ALLOW) {
            ev.result.error_code = BG_AMQP_ACCESS_REFUSED;
            ev.result.error_name = "ACCESS_REFUSED";
        }
        ev.decision.by = c->refusal ? "busgate" : NULL;
        ev.detail = c->refusal;
        bg_amqp_audit__emit(s, &ev);
    }
}

void bg_amqp_audit_limit(bg_amqp_session_t *s, const bg_amqp_method_t *m,
                         const bg_amqp_check_t *c, uint16_t code, const char *why,
                         uint64_t bytes_in)
{
    /* A decision like any other (busgate's, not a rule's), so the decision
     * events still add up to the decision metrics. */
    bg_metric_add(&s->aw->w->metrics.decisions[BG_PROTO_AMQP][BG_EFFECT_DENY], 1);
    if (!s->aw->w->audit)
        return;
    bg_policy_resource_t r;
    bg_audit_event_t ev;
    bg_amqp_audit__check_event(s, m, c, &r, &ev, bytes_in);
    ev.decision.effect = BG_EFFECT_DENY;
    ev.decision.would = BG_EFFECT_DENY;
    ev.decision.mode = BG_MODE_ENFORCE;
    ev.decision.by = "busgate";
    ev.result.error_code = code;
    ev.result.error_name = bg_amqp_reply_name(code);
    ev.detail = why;
    bg_amqp_audit__emit(s, &ev);
}

int bg_amqp_audit_admitting(bg_amqp_session_t *s)
{
    struct bg_audit_s *a = s->aw->w->audit;
    return !a || bg_audit_admitting(a);
}
