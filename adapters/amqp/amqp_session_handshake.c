/* The client side of the AMQP handshake, answered by busgate itself, and the
 * credential's life on the connection.
 *
 *   client                     busgate                      RabbitMQ
 *   protocol header   ->
 *                     <-  connection.start (RabbitMQ's capabilities,
 *                         PLAIN AMQPLAIN)
 *   start-ok (JWT)    ->  verify the token; connect ->  header, start-ok
 *                                                        (own credential,
 *                                                        client's caps)
 *                                                   <-  connection.tune
 *                     <-  connection.tune (no larger than upstream's)
 *   tune-ok           ->                            ->  tune-ok (client's
 *                                                        frame/channel max),
 *                                                        open(vhost)
 *   open(vhost)       ->                            <-  open-ok
 *                     <-  open-ok
 *
 * Offering the client values no larger than the upstream's, then passing the
 * client's choice on, makes every relayed frame fit both legs. A bad token
 * gets RabbitMQ's answer to a bad password: connection.close 403
 * ACCESS_REFUSED, then the connection ends. The token's expiry closes the
 * connection (320 CONNECTION_FORCED) unless connection.update-secret brings
 * a newer token for the same subject first. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adapters/amqp/amqp_session-internal.h"
#include "broker/log.h"

static const bg_config_amqp_t *bg_amqp_hs__cfg(const bg_amqp_session_t *s)
{
    return &s->aw->g->cfg->amqp;
}

static int bg_amqp_hs__send(bg_amqp_session_t *s, bg_wr_t *wr, int rc)
{
    rc = rc == BG_AMQP_OK ? bg_amqp_cli_send(s, wr) : -1;
    bg_wr_free(wr);
    if (rc != 0)
        bg_amqp_session_kill(s, 0, "cannot write to the client");
    return rc;
}

/* Copies a UTF-8 string entry of a field table (client_properties). */
static void bg_amqp_hs__prop(const amqp_table_t *t, const char *key, char *out, size_t cap)
{
    size_t klen = strlen(key);
    for (int i = 0; i < t->num_entries; i++) {
        const amqp_table_entry_t *e = &t->entries[i];
        if (e->key.len == klen && memcmp(e->key.bytes, key, klen) == 0 &&
            (e->value.kind == AMQP_FIELD_KIND_UTF8 || e->value.kind == AMQP_FIELD_KIND_BYTES)) {
            size_t n = e->value.value.bytes.len;
            snprintf(out, cap, "%.*s", (int)(n > cap ? cap : n),
                     (const char *)e->value.value.bytes.bytes);
            for (char *c = out; *c; c++) /* logs and audit get printable text only */
                if ((unsigned char)*c < 0x20)
                    *c = '?';
            return;
        }
    }
}

static void bg_amqp_hs__arm_expiry(bg_amqp_session_t *s)
{
    int64_t left = s->principal.exp * 1000 - bg_amqp_wall_ms();
    if (left < 0)
        left = 0;
    struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
    event_add(s->expiry_ev, &tv);
}

/* Verifies token; on success takes the principal (same issuer and subject required
 * when one is already set). Returns BG_ID_OK or a reason; *why for logs. */
static bg_id_reason_t bg_amqp_hs__verify(bg_amqp_session_t *s, bg_slice_t token, const char **why)
{
    bg_snapshot_refresh(&s->snap); /* the newest key set and policy */
    bg_principal_t pr = {0};
    char detail[128] = "";
    bg_id_reason_t rc = bg_identity_verify(s->snap->identity, (const char *)token.p,
                                           (size_t)token.len, (int64_t)time(NULL), &pr, detail,
                                           sizeof detail);
    *why = bg_id_reason_str(rc);
    if (rc != BG_ID_OK)
        return rc;
    if (s->principal.sub && !bg_principal_same(&pr, &s->principal)) {
        bg_principal_clear(&pr);
        *why = "different_subject";
        return BG_ID_MALFORMED;
    }
    bg_policy_principal_clear(&s->pp);
    bg_principal_clear(&s->principal);
    s->principal = pr;
    s->unvouched = bg_identity_unvouched(s->snap->identity, &s->principal);
    if (s->user_is_principal) /* the name may have changed with a reload's prefixes */
        snprintf(s->user, sizeof s->user, "%s", pr.sub);
    if (bg_policy_principal_prepare(s->snap->policy, pr.sub, (const char *const *)pr.groups,
                                    pr.ngroups, &s->pp) != 0) {
        *why = "out_of_memory";
        return BG_ID_MALFORMED;
    }
    return BG_ID_OK;
}

static int bg_amqp_hs__login_refused(bg_amqp_session_t *s, const char *reason)
{
    bg_amqp_audit_auth_failure(s, reason);
    bg_log_fields(BG_LOG_INFO, "amqp",
                  (bg_log_field_t[]){{"session", s->id}, {"peer", s->peer}, {"reason", reason}}, 3,
                  "authentication failed");
    char text[160];
    snprintf(text, sizeof text,
             "ACCESS_REFUSED - Login was refused using authentication mechanism %s. "
             "For details see the broker logfile.",
             s->mech[0] ? s->mech : "PLAIN");
    bg_amqp_session_close(s, BG_AMQP_ACCESS_REFUSED, text, 0, 0);
    return -1;
}

/* A login (or a secret update) whose audit event could not be recorded is
 * not let happen: the connection closes with a code clients retry on. */
static int bg_amqp_hs__audit_down(bg_amqp_session_t *s)
{
    if (bg_amqp_audit_admitting(s))
        return 0;
    bg_amqp_session_close(s, BG_AMQP_CONNECTION_FORCED,
                         "CONNECTION_FORCED - busgate cannot record audit events now; retry", 0, 0);
    return 1;
}

static int bg_amqp_hs__start_ok(bg_amqp_session_t *s, const amqp_connection_start_ok_t *m)
{
    if (bg_amqp_hs__audit_down(s))
        return -1;
    snprintf(s->mech, sizeof s->mech, "%.*s", (int)(m->mechanism.len > 15 ? 15 : m->mechanism.len),
             (const char *)m->mechanism.bytes);
    s->caps = bg_amqp_caps_from_properties(&m->client_properties);
    bg_amqp_hs__prop(&m->client_properties, "product", s->product, sizeof s->product);
    bg_amqp_hs__prop(&m->client_properties, "version", s->version, sizeof s->version);
    bg_amqp_creds_t c;
    const char *why = NULL;
    if (bg_amqp_start_ok_creds(m, &c, &why) != BG_AMQP_OK)
        return bg_amqp_hs__login_refused(s, "malformed");
    snprintf(s->user, sizeof s->user, "%.*s", (int)(c.user.len > 127 ? 127 : c.user.len),
             (const char *)c.user.p);
    if (bg_amqp_hs__verify(s, c.password, &why) != BG_ID_OK)
        return bg_amqp_hs__login_refused(s, why);
    s->user_is_principal = !s->user[0];
    if (s->user_is_principal)
        snprintf(s->user, sizeof s->user, "%s", s->principal.sub);
    bg_metric_add(&s->aw->w->metrics.auth_ok[BG_PROTO_AMQP], 1);
    bg_limits_authenticated(&s->conn_lim); /* no longer held against the pre-auth caps */
    bg_amqp_audit_session_start(s, NULL);
    bg_log_fields(BG_LOG_INFO, "amqp",
                  (bg_log_field_t[]){{"session", s->id}, {"peer", s->peer},
                                     {"sub", s->principal.sub}},
                  3, "authenticated with %s", s->mech);
    bg_amqp_hs__arm_expiry(s);
    s->state = BG_AMQP_S_UP_TUNE;
    if (bg_amqp_session_connect_upstream(s) != 0) {
        bg_amqp_session_close(s, BG_AMQP_CONNECTION_FORCED,
                              "CONNECTION_FORCED - busgate cannot reach the broker", 0, 0);
        return -1;
    }
    return 0;
}

void bg_amqp_hs_up_tuned(bg_amqp_session_t *s, uint16_t channel_max, uint32_t frame_max,
                         uint16_t heartbeat)
{
    if (s->dead || s->state != BG_AMQP_S_UP_TUNE)
        return;
    const bg_config_amqp_t *a = bg_amqp_hs__cfg(s);
    s->up_channel_max = channel_max ? channel_max : 65535;
    s->up_frame_max = frame_max ? frame_max : UINT32_MAX;
    if (s->up_frame_max > a->max_frame_bytes)
        s->up_frame_max = a->max_frame_bytes;
    /* The upstream leg's heartbeat: busgate's setting, no more than the broker asks. */
    s->heartbeat = (uint16_t)a->heartbeat_s;
    if (heartbeat && (s->heartbeat == 0 || heartbeat < s->heartbeat))
        s->heartbeat = heartbeat;
    bg_wr_t wr;
    bg_wr_init(&wr, 64, 1024);
    int rc = bg_amqp_write_connection_tune(&wr, s->up_channel_max, s->up_frame_max,
                                           (uint16_t)a->heartbeat_s);
    if (bg_amqp_hs__send(s, &wr, rc) == 0)
        s->state = BG_AMQP_S_TUNE_OK;
}

/* RabbitMQ's check of one tune-ok value (rabbit_reader's
 * validate_negotiated_integer_value): below the protocol's minimum, or 0
 * ("no limit") or more than was offered, is refused. Taking a smaller value
 * instead would leave the client believing in the larger one, and its first
 * frame above ours would cost it the connection (501). Returns 0 when v is
 * acceptable, else 1 with RabbitMQ's reason in text. */
static int bg_amqp_hs__negotiated(const char *field, uint32_t v, uint32_t min, uint32_t offer,
                                  const char *zero_detail, char *text, size_t cap)
{
    if (v != 0 && v < min)
        snprintf(text, cap,
                 "NOT_ALLOWED - negotiated %s = %u is lower than the minimum allowed value (%u)",
                 field, v, min);
    else if (v == 0 || v > offer)
        snprintf(text, cap,
                 "NOT_ALLOWED - negotiated %s = %u%s is higher than the maximum allowed value (%u)",
                 field, v, v == 0 ? zero_detail : "", offer);
    else
        return 0;
    return 1;
}

static int bg_amqp_hs__tune_ok(bg_amqp_session_t *s, const amqp_connection_tune_ok_t *m)
{
    uint32_t fmax = m->frame_max;
    uint16_t cmax = m->channel_max;
    char text[160];
    /* busgate's offer is never 0 (bg_amqp_hs_up_tuned), so 0 is always
     * refused, as RabbitMQ refuses it against its own non-zero limits. */
    if (bg_amqp_hs__negotiated("frame_max", fmax, BG_AMQP_FRAME_MIN_SIZE, s->up_frame_max, "",
                               text, sizeof text) ||
        bg_amqp_hs__negotiated("channel_max", cmax, 1, s->up_channel_max, " (no limit)", text,
                               sizeof text)) {
        bg_amqp_session_close(s, BG_AMQP_NOT_ALLOWED, text, 10, 31);
        return -1;
    }
    s->frame_max = fmax;
    s->channel_max = cmax;
    s->chans = calloc((size_t)cmax + 1, sizeof *s->chans);
    if (!s->chans || bg_amqp_up_tune_ok(s->up, cmax, fmax, s->heartbeat) != 0) {
        bg_amqp_session_kill(s, 0, "cannot tune the upstream connection");
        return -1;
    }
    s->heartbeat = m->heartbeat; /* from now on: the client leg's */
    if (s->heartbeat) {
        struct timeval tv = {s->heartbeat > 1 ? s->heartbeat / 2 : 1, 0};
        event_add(s->hb_ev, &tv);
    }
    s->state = BG_AMQP_S_OPEN;
    return 0;
}

static void bg_amqp_hs__running(bg_amqp_session_t *s)
{
    bg_wr_t wr;
    bg_wr_init(&wr, 64, 1024);
    if (bg_amqp_hs__send(s, &wr, bg_amqp_write_connection_open_ok(&wr)) != 0)
        return;
    s->state = BG_AMQP_S_RUNNING;
    event_del(s->close_ev); /* the handshake deadline */
    /* RabbitMQ's frames after its open-ok waited for this open-ok. */
    bg_amqp_up_resume(s->up);
    bg_amqp_session_resume(s);
}

void bg_amqp_hs_up_ready(bg_amqp_session_t *s)
{
    if (!s->dead && s->state == BG_AMQP_S_UP_OPEN)
        bg_amqp_hs__running(s);
}

static int bg_amqp_hs__open(bg_amqp_session_t *s, const amqp_connection_open_t *m)
{
    const char *want = bg_amqp_hs__cfg(s)->upstream.vhost;
    if (m->virtual_host.len != strlen(want) ||
        memcmp(m->virtual_host.bytes, want, m->virtual_host.len) != 0) {
        char text[300];
        snprintf(text, sizeof text, "NOT_ALLOWED - vhost %.*s not found",
                 (int)(m->virtual_host.len > 200 ? 200 : m->virtual_host.len),
                 (const char *)m->virtual_host.bytes);
        bg_amqp_session_close(s, BG_AMQP_NOT_ALLOWED, text, 10, 40);
        return -1;
    }
    s->state = BG_AMQP_S_UP_OPEN;
    if (bg_amqp_up_is_ready(s->up))
        bg_amqp_hs__running(s);
    return 0;
}

static int bg_amqp_hs__method(bg_amqp_session_t *s, const bg_amqp_method_t *m)
{
    if (m->id == AMQP_CONNECTION_CLOSE_METHOD) { /* the client gives up */
        bg_wr_t wr;
        bg_wr_init(&wr, 16, 64);
        if (bg_amqp_write_connection_close_ok(&wr) == BG_AMQP_OK)
            (void)bg_amqp_cli_send(s, &wr);
        bg_wr_free(&wr);
        bg_amqp_session_kill(s, 1, NULL);
        return -1;
    }
    if (s->state == BG_AMQP_S_START_OK && m->id == AMQP_CONNECTION_START_OK_METHOD)
        return bg_amqp_hs__start_ok(s, m->decoded);
    if (s->state == BG_AMQP_S_TUNE_OK && m->id == AMQP_CONNECTION_TUNE_OK_METHOD)
        return bg_amqp_hs__tune_ok(s, m->decoded);
    if (s->state == BG_AMQP_S_OPEN && m->id == AMQP_CONNECTION_OPEN_METHOD)
        return bg_amqp_hs__open(s, m->decoded);
    if (s->state == BG_AMQP_S_START_OK) { /* e.g. secure-ok: nothing was asked */
        bg_amqp_audit_auth_failure(s, "unauthenticated_request");
        bg_amqp_session_kill(s, 0, "unexpected method before authentication");
        return -1;
    }
    char text[128];
    snprintf(text, sizeof text, "COMMAND_INVALID - unexpected %s during the handshake",
             m->info->name);
    bg_amqp_session_close(s, BG_AMQP_COMMAND_INVALID, text, (uint16_t)(m->id >> 16),
                          (uint16_t)m->id);
    return -1;
}

int bg_amqp_hs_client_frame(bg_amqp_session_t *s, const bg_amqp_frame_t *f)
{
    if (f->type != BG_AMQP_FRAME_METHOD || f->channel != 0) {
        if (s->state == BG_AMQP_S_START_OK) {
            bg_amqp_audit_auth_failure(s, "unauthenticated_request");
            bg_amqp_session_kill(s, 0, "unexpected frame before authentication");
        } else {
            bg_amqp_session_close(s, BG_AMQP_UNEXPECTED_FRAME,
                                  "UNEXPECTED_FRAME - only connection methods before open-ok", 0,
                                  0);
        }
        return -1;
    }
    bg_amqp_method_t m;
    const char *why = NULL;
    int rc = bg_amqp_method_decode(f, &s->lim, &s->arena, &m, &why);
    if (rc != BG_AMQP_OK) {
        uint16_t code = bg_amqp_status_reply_code(rc);
        char text[200];
        snprintf(text, sizeof text, "%s - %s", bg_amqp_reply_name(code),
                 why ? why : "malformed method");
        if (s->state == BG_AMQP_S_START_OK) {
            bg_amqp_audit_auth_failure(s, "malformed");
            bg_amqp_session_kill(s, 0, text);
        } else {
            bg_amqp_session_close(s, code, text, 0, 0);
        }
        return -1;
    }
    return bg_amqp_hs__method(s, &m);
}

int bg_amqp_hs_update_secret(bg_amqp_session_t *s, const bg_amqp_update_secret_t *m)
{
    bg_slice_t token = {(const uint8_t *)m->new_secret.bytes, (int32_t)m->new_secret.len};
    const char *why = NULL;
    if (bg_amqp_hs__audit_down(s))
        return -1;
    if (m->new_secret.len == 0 || m->new_secret.len > BG_IDENTITY_MAX_TOKEN ||
        bg_amqp_hs__verify(s, token, &why) != BG_ID_OK) {
        const char *reason = why ? why : "malformed";
        bg_amqp_audit_auth_failure(s, reason);
        char text[200];
        snprintf(text, sizeof text, "NOT_ALLOWED - new secret was refused: %s", reason);
        bg_amqp_session_close(s, BG_AMQP_NOT_ALLOWED, text, 10, 70);
        return -1;
    }
    bg_metric_add(&s->aw->w->metrics.auth_ok[BG_PROTO_AMQP], 1);
    bg_amqp_audit_session_start(s, "secret updated");
    bg_log_fields(BG_LOG_INFO, "amqp",
                  (bg_log_field_t[]){{"session", s->id}, {"sub", s->principal.sub}}, 2,
                  "secret updated");
    event_del(s->expiry_ev);
    bg_amqp_hs__arm_expiry(s);
    bg_wr_t wr;
    bg_wr_init(&wr, 16, 64);
    return bg_amqp_hs__send(s, &wr, bg_amqp_write_update_secret_ok(&wr));
}
