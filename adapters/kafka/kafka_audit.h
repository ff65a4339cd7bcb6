/* Audit events and decision metrics of Kafka sessions (audit/audit.h is the
 * protocol-neutral pipeline; this file maps a session onto it). All calls are
 * no-ops for the audit part when audit is off. Worker thread only. */
#ifndef BG_KAFKA_AUDIT_H
#define BG_KAFKA_AUDIT_H

#include <stdint.h>

#include "adapters/kafka/kafka_session-internal.h"

/* A session authenticated (reauth: again, on the same connection). */
void bg_kafka_audit_session_start(bg_kafka_session_t *s, int reauth);
void bg_kafka_audit_session_end(bg_kafka_session_t *s);
/* Authentication refused, with the identity module's reason code. */
void bg_kafka_audit_auth_failure(bg_kafka_session_t *s, const char *reason);
/* Counts v's decisions in the worker's metrics. */
void bg_kafka_audit_count(bg_kafka_session_t *s, const bg_kafka_verdict_t *v);
/* Copies the resource names of pe's decisions into pe's arena, so they
 * outlive the request bytes; -1 when memory ran out (the caller closes). */
int bg_kafka_audit_pin(bg_kafka_session_t *s, bg_kafka_pending_t *pe);
/* 1 when the decided request in v leaves decision events (its decisions, or
 * the one event of a request refused by closing before anything was
 * decided, unless that refusal is the audit pipeline's own). Decided when
 * the request is, as bg_kafka_audit_count counts it. */
int bg_kafka_audit_due(bg_kafka_session_t *s, const bg_kafka_verdict_t *v);
/* One event per decision group of pe (for a request refused by closing with
 * nothing decided, its one refusal event); latency_us: request to the
 * moment its answer was queued for the client (NULL: none was). Called when
 * that happens, in request order (bg_kafka_pending_t.audit_due). */
void bg_kafka_audit_decisions(bg_kafka_session_t *s, bg_kafka_pending_t *pe,
                              const int64_t *latency_us);
/* For a decided request whose answer never reached the client (the session
 * ended first: a response the broker never sent, or one queued behind it):
 * its decision events, with detail "no response: session closed", so every
 * counted decision has its event. A request refused by closing gets its
 * own events, its latency running to now: the close did take effect. */
void bg_kafka_audit_unanswered(bg_kafka_session_t *s, bg_kafka_pending_t *pe);
/* For a request whose response was being cut through to the client when
 * the session ended (the broker's connection or the client's ended
 * mid-frame): its decision events, with detail "response cut: session
 * closed", pe->bytes_out the part of the frame that reached the client and
 * no latency (the response never completed). */
void bg_kafka_audit_cut(bg_kafka_session_t *s, bg_kafka_pending_t *pe);
/* A request of an authenticated session refused by closing before it was
 * decided (unsupported version, undecodable, expired token): one deny event
 * with the reason and error_code (the Kafka code busgate records for the
 * refusal, see docs/audit.md; nothing of it reaches the client, whose
 * connection closes), counted as a decision now. The event is kept on the
 * session (reason copied) and written by bg_kafka_audit_refusal_emit, after
 * the events of the requests before it; the caller closes the session at
 * once. api_key/api_version -1 when the header did not name them. Nothing
 * before authentication. */
void bg_kafka_audit_refused(bg_kafka_session_t *s, int16_t api_key, int16_t api_version,
                            size_t bytes_in, int16_t error_code, const char *reason);
/* Writes the event kept by bg_kafka_audit_refused, if any (once). */
void bg_kafka_audit_refusal_emit(bg_kafka_session_t *s);
/* Refuses the decided request in v when one of its decisions names more
 * resources than an audit event records (BG_AUDIT_MAX_EVENT_BYTES of JSON):
 * every entry answered with POLICY_VIOLATION in the API's error shape (a
 * close where it has none, or the request expects no answer), nothing
 * forwarded, and v's decisions replaced by one deny decided by busgate that
 * names the first of those resources that fit in one record, its reason
 * saying why (allocated in arena). Whether audit is on or off, so a request
 * is let in or not by the same rule. Returns 1 when it refused, else 0. */
int bg_kafka_audit_budget(const bg_kafka_req_hdr_t *h, const bg_kafka_struct_t *req,
                          bg_kafka_arena_t *arena, bg_kafka_verdict_t *v);
/* 1 when the audit pipeline accepts events (or audit is off). */
int bg_kafka_audit_admitting(bg_kafka_session_t *s);

#endif
