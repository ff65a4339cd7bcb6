/* ApiVersions and client authentication, answered by busgate itself.
 *
 * ApiVersions: the intersection of the upstream broker's ranges and what
 * busgate can decode and enforce (bg_kafka_authz_supported); busgate's own
 * ranges for ApiVersions and the SASL APIs. A version above ApiVersions' max
 * is answered with UNSUPPORTED_VERSION in the v0 layout, as Kafka does, and
 * the client retries lower.
 * SASL: SaslHandshake v1 then SaslAuthenticate v0-v2 with OAUTHBEARER (RFC
 * 7628) or PLAIN (the token as password); the token is verified by the
 * identity module; session_lifetime_ms is the time left on the token, so
 * clients re-authenticate on the same connection before it ends. The
 * OAUTHBEARER failure sequence follows Kafka's broker (kafka_sasl.h), for a
 * re-authentication too. A SaslAuthenticate once authenticated, without a
 * SaslHandshake, is answered ILLEGAL_SASL_STATE and the session goes on,
 * as Kafka's broker does. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "adapters/kafka/kafka_audit.h"
#include "adapters/kafka/kafka_sasl.h"
#include "adapters/kafka/kafka_session-internal.h"
#include "broker/log.h"

/* v5 (KIP-1242) adds the cluster and node id the client expects; busgate
 * does not check them yet (a 4.4 broker refuses a mismatch). */
#define BG_KAFKA_APIVERSIONS_MAX 5

/* Decodes the request body at p+off (p: the frame after its size field)
 * into pe's arena. NULL when it cannot be read: the session is closed. */
static bg_kafka_struct_t *bg_kafka_auth__decode(bg_kafka_session_t *s, bg_kafka_pending_t *pe,
                                                const uint8_t *p, size_t len, int off)
{
    bg_rd_t rd;
    bg_rd_init(&rd, p + off, len - (size_t)off);
    bg_kafka_struct_t *r = NULL;
    int rc = bg_kafka_decode(bg_kafka_msg_desc(pe->hdr.api_key, 0), pe->hdr.api_version, &rd,
                             &pe->arena, &r);
    if (rc != BG_KAFKA_OK) {
        bg_kafka_session_malformed(s, pe->hdr.api_key, pe->hdr.api_version, 4 + (long)(rd.p - p),
                                   4 + len, rd.why ? rd.why : bg_kafka_status_str(rc));
        return NULL;
    }
    return r;
}

static bg_kafka_struct_t *bg_kafka_auth__new_resp(bg_kafka_pending_t *pe)
{
    return bg_kafka_struct_new(&pe->arena, bg_kafka_msg_desc(pe->hdr.api_key, 1)->body);
}

/* ---- ApiVersions ---- */

static int bg_kafka_auth__own_api(int16_t key)
{
    return key == BG_KAFKA_API_API_VERSIONS || key == BG_KAFKA_API_SASL_HANDSHAKE ||
           key == BG_KAFKA_API_SASL_AUTHENTICATE;
}

/* Intersected range of key, 0 when busgate will not advertise it. */
static int bg_kafka_auth__range(bg_kafka_session_t *s, int16_t key, int16_t umin, int16_t umax,
                                int16_t *lo, int16_t *hi)
{
    int16_t bmin, bmax;
    if (!bg_kafka_authz_supported(key, &bmin, &bmax))
        return 0;
    if (bg_kafka_auth__own_api(key)) {
        *lo = bmin, *hi = bmax;
        return 1;
    }
    if (!bg_kafka_authz_upstream_fits(key, umin, umax))
        return 0;
    *lo = bmin > umin ? bmin : umin;
    *hi = bmax < umax ? bmax : umax;
    /* Produce v0-2 are gone since Kafka 4.0, but a 4.x broker still lists
     * them (KAFKA-18659): librdkafka up to 2.11 compresses only when the
     * broker's Produce range includes v0, and silently sends uncompressed
     * batches otherwise. So busgate lists the upstream's minimum too; a
     * request below busgate's own minimum still closes the connection. */
    if (key == BG_KAFKA_API_PRODUCE && umin < *lo && *lo <= *hi)
        *lo = umin;
    return *lo <= *hi;
}

/* Below v4 Kafka's broker leaves out the supported features whose
 * MinVersion is 0 (KAFKA-17011: older clients refuse them); busgate asks
 * its upstream v4 and does the same for a client asking v0-v3. r is a
 * shallow clone: its array is pointed at the kept elements, arena-owned.
 * -1 on the arena limit. */
static int bg_kafka_auth__features_below_v4(bg_kafka_pending_t *pe, bg_kafka_struct_t *r)
{
    bg_kafka_val_t *f = &r->f[BG_KAFKA_API_VERSIONS_RESP_SUPPORTED_FEATURES];
    if (pe->hdr.api_version >= 4 || f->a.n <= 0)
        return 0;
    bg_kafka_struct_t **kept = bg_kafka_arena_alloc(&pe->arena, (size_t)f->a.n * sizeof *kept);
    if (!kept)
        return -1;
    int32_t n = 0;
    for (int32_t i = 0; i < f->a.n; i++)
        if (f->a.s[i]->f[BG_KAFKA_API_VERSIONS_RESP_SUPPORTED_FEATURES_MIN_VERSION].i != 0)
            kept[n++] = f->a.s[i];
    f->a.s = kept;
    f->a.n = n;
    return 0;
}

int bg_kafka_auth_versions_ready(bg_kafka_session_t *s, bg_kafka_pending_t *pe)
{
    size_t len = 0;
    int16_t uver = 0;
    const uint8_t *body = NULL;
    if (bg_kafka_up_is_ready(s->up))
        body = bg_kafka_up_api_versions_body(s->up, &len, &uver);
    else if (!bg_kafka_global_versions(s->kw->g, s->node_id, &pe->arena, &body, &len, &uver))
        return -1;
    bg_rd_t rd;
    bg_rd_init(&rd, body, len);
    bg_kafka_struct_t *up = NULL;
    if (!body || bg_kafka_decode(&bg_kafka_msg_api_versions_resp, uver, &rd, &pe->arena, &up) !=
                     BG_KAFKA_OK)
        return -1;
    bg_kafka_struct_t *r = bg_kafka_struct_clone(&pe->arena, up);
    const bg_kafka_val_t *ukeys = &up->f[BG_KAFKA_API_VERSIONS_RESP_API_KEYS];
    static const int16_t own[] = {BG_KAFKA_API_SASL_HANDSHAKE, BG_KAFKA_API_API_VERSIONS,
                                  BG_KAFKA_API_SASL_AUTHENTICATE};
    int32_t nown = (int32_t)(sizeof own / sizeof own[0]);
    bg_kafka_struct_t **keys =
        r ? bg_kafka_array_new(&pe->arena, r, BG_KAFKA_API_VERSIONS_RESP_API_KEYS,
                               ukeys->a.n + nown)
          : NULL;
    if (!keys || bg_kafka_auth__features_below_v4(pe, r) != 0)
        return -1;
    int32_t n = 0;
    for (int32_t i = 0; i < ukeys->a.n + nown; i++) {
        /* The upstream's APIs, then busgate's own (the upstream may lack SASL). */
        int16_t key, umin = 0, umax = 0, lo, hi;
        if (i < ukeys->a.n) {
            const bg_kafka_struct_t *k = ukeys->a.s[i];
            key = (int16_t)k->f[BG_KAFKA_API_VERSIONS_RESP_API_KEYS_API_KEY].i;
            umin = (int16_t)k->f[BG_KAFKA_API_VERSIONS_RESP_API_KEYS_MIN_VERSION].i;
            umax = (int16_t)k->f[BG_KAFKA_API_VERSIONS_RESP_API_KEYS_MAX_VERSION].i;
            if (bg_kafka_auth__own_api(key))
                continue;
        } else {
            key = own[i - ukeys->a.n];
        }
        if (!bg_kafka_auth__range(s, key, umin, umax, &lo, &hi))
            continue;
        bg_kafka_struct_t *e = keys[n++];
        e->f[BG_KAFKA_API_VERSIONS_RESP_API_KEYS_API_KEY].i = key;
        e->f[BG_KAFKA_API_VERSIONS_RESP_API_KEYS_MIN_VERSION].i = lo;
        e->f[BG_KAFKA_API_VERSIONS_RESP_API_KEYS_MAX_VERSION].i = hi;
    }
    r->f[BG_KAFKA_API_VERSIONS_RESP_API_KEYS].a.n = n;
    r->f[BG_KAFKA_API_VERSIONS_RESP_ERROR_CODE].i = 0;
    r->f[BG_KAFKA_API_VERSIONS_RESP_THROTTLE_TIME_MS].i = 0;
    return bg_kafka_session_respond(s, pe, r);
}

/* A version above what busgate speaks: UNSUPPORTED_VERSION in the v0 layout,
 * listing ApiVersions' own range so the client can retry. */
static int bg_kafka_auth__versions_unsupported(bg_kafka_session_t *s, bg_kafka_pending_t *pe)
{
    pe->hdr.api_version = 0;
    bg_kafka_struct_t *r = bg_kafka_auth__new_resp(pe);
    bg_kafka_struct_t **k =
        r ? bg_kafka_array_new(&pe->arena, r, BG_KAFKA_API_VERSIONS_RESP_API_KEYS, 1) : NULL;
    if (!k)
        return -1;
    r->f[BG_KAFKA_API_VERSIONS_RESP_ERROR_CODE].i = BG_KAFKA_E_UNSUPPORTED_VERSION;
    k[0]->f[BG_KAFKA_API_VERSIONS_RESP_API_KEYS_API_KEY].i = BG_KAFKA_API_API_VERSIONS;
    k[0]->f[BG_KAFKA_API_VERSIONS_RESP_API_KEYS_MIN_VERSION].i = 0;
    k[0]->f[BG_KAFKA_API_VERSIONS_RESP_API_KEYS_MAX_VERSION].i = BG_KAFKA_APIVERSIONS_MAX;
    return bg_kafka_session_respond(s, pe, r);
}

static void bg_kafka_auth__copy(char *dst, size_t cap, bg_slice_t v)
{
    if (v.len > 0)
        snprintf(dst, cap, "%.*s", (int)v.len, (const char *)v.p);
}

/* As Kafka's SaslServerAuthenticator: before SASL one ApiVersions (an
 * UNSUPPORTED_VERSION answer does not count: the client retries lower),
 * none from SaslHandshake until authenticated (a re-authentication
 * included); once authenticated any number, as the broker's request
 * handler answers them. */
static int bg_kafka_auth__versions_allowed(const bg_kafka_session_t *s)
{
    if (s->auth == BG_KAFKA_AUTH_OK)
        return !s->reauth;
    return s->auth == BG_KAFKA_AUTH_NONE && !s->versions_done;
}

static int bg_kafka_auth__api_versions(bg_kafka_session_t *s, bg_kafka_pending_t *pe,
                                       const uint8_t *p, size_t len, int off)
{
    if (!bg_kafka_auth__versions_allowed(s)) {
        bg_kafka_session_close(s, 0, "unexpected ApiVersions request during SASL authentication");
        return 1;
    }
    if (pe->hdr.api_version > BG_KAFKA_APIVERSIONS_MAX || pe->hdr.api_version < 0)
        return bg_kafka_auth__versions_unsupported(s, pe);
    const bg_kafka_struct_t *req = bg_kafka_auth__decode(s, pe, p, len, off);
    if (!req)
        return -1;
    s->versions_done = 1;
    bg_kafka_auth__copy(s->sw_name, sizeof s->sw_name,
                        req->f[BG_KAFKA_API_VERSIONS_REQ_CLIENT_SOFTWARE_NAME].s);
    bg_kafka_auth__copy(s->sw_version, sizeof s->sw_version,
                        req->f[BG_KAFKA_API_VERSIONS_REQ_CLIENT_SOFTWARE_VERSION].s);
    /* The broker's versions as an earlier connection to it saw them, when
     * the session has no upstream yet; else wait for its own. */
    size_t klen;
    int16_t kver;
    const uint8_t *kept;
    if (!bg_kafka_up_is_ready(s->up) &&
        !bg_kafka_global_versions(s->kw->g, s->node_id, &pe->arena, &kept, &klen, &kver)) {
        if (bg_kafka_session_start_upstream(s) != 0)
            return 1;
        pe->state = BG_KAFKA_PE_WAIT_VERSIONS;
        return 0;
    }
    return bg_kafka_auth_versions_ready(s, pe);
}

/* ---- SASL ---- */

static const char *bg_kafka_auth__mech_name(unsigned mech)
{
    return mech == BG_SASL_MECH_OAUTHBEARER ? "OAUTHBEARER" : "PLAIN";
}

static int bg_kafka_auth__handshake(bg_kafka_session_t *s, bg_kafka_pending_t *pe,
                                    const uint8_t *p, size_t len, int off)
{
    const bg_kafka_struct_t *req = bg_kafka_auth__decode(s, pe, p, len, off);
    bg_kafka_struct_t *r = bg_kafka_auth__new_resp(pe);
    unsigned enabled = s->kw->g->cfg->kafka.sasl_mechanisms;
    if (!req || !r)
        return -1;
    if (pe->hdr.api_version < 1) {
        /* v0 means raw SASL frames: advertised (librdkafka wants it in the
         * range), refused (docs/kafka.md) */
        bg_kafka_audit_auth_failure(s, "unsupported_version");
        return -1;
    }
    if (s->auth == BG_KAFKA_AUTH_MECH || s->auth == BG_KAFKA_AUTH_CHALLENGED || s->reauth) {
        bg_kafka_audit_auth_failure(s, "unexpected_handshake"); /* a second one, no token between */
        return -1;
    }
    bg_slice_t m = req->f[BG_KAFKA_SASL_HANDSHAKE_REQ_MECHANISM].s;
    unsigned chosen = 0;
    if (m.len == 11 && memcmp(m.p, "OAUTHBEARER", 11) == 0)
        chosen = BG_SASL_MECH_OAUTHBEARER;
    else if (m.len == 5 && memcmp(m.p, "PLAIN", 5) == 0)
        chosen = BG_SASL_MECH_PLAIN;
    int32_t n = (enabled & BG_SASL_MECH_OAUTHBEARER ? 1 : 0) + (enabled & BG_SASL_MECH_PLAIN ? 1 : 0);
    bg_kafka_val_t *mechs =
        bg_kafka_array_vals(&pe->arena, r, BG_KAFKA_SASL_HANDSHAKE_RESP_MECHANISMS, n);
    if (!mechs)
        return -1;
    int32_t i = 0;
    if (enabled & BG_SASL_MECH_OAUTHBEARER)
        mechs[i++].s = bg_kafka_cstr("OAUTHBEARER");
    if (enabled & BG_SASL_MECH_PLAIN)
        mechs[i++].s = bg_kafka_cstr("PLAIN");
    if (!(chosen & enabled)) {
        bg_kafka_audit_auth_failure(s, "unsupported_mechanism");
        r->f[BG_KAFKA_SASL_HANDSHAKE_RESP_ERROR_CODE].i = BG_KAFKA_E_UNSUPPORTED_SASL_MECHANISM;
        if (bg_kafka_session_respond(s, pe, r) != 0)
            return -1;
        bg_kafka_session_close(s, 1, "unsupported SASL mechanism");
        return 1;
    }
    s->reauth = s->auth == BG_KAFKA_AUTH_OK;
    if (!s->reauth)
        s->auth = BG_KAFKA_AUTH_MECH;
    /* As Kafka: the handshake succeeds, the SaslAuthenticate after it fails
     * (a second handshake to undo it closes the session, above). */
    s->reauth_mech = s->reauth && chosen != s->mech ? chosen : 0;
    if (!s->reauth_mech)
        s->mech = chosen;
    return bg_kafka_session_respond(s, pe, r);
}

/* Answers code with msg (copied into pe's arena), no auth bytes. Returns 0
 * or -1. */
static int bg_kafka_auth__answer_code(bg_kafka_session_t *s, bg_kafka_pending_t *pe,
                                      bg_kafka_struct_t *r, int16_t code, const char *msg)
{
    char *copy = bg_kafka_arena_alloc(&pe->arena, strlen(msg) + 1);
    if (!copy)
        return -1;
    strcpy(copy, msg);
    r->f[BG_KAFKA_SASL_AUTHENTICATE_RESP_ERROR_CODE].i = code;
    r->f[BG_KAFKA_SASL_AUTHENTICATE_RESP_ERROR_MESSAGE].s = bg_kafka_cstr(copy);
    r->f[BG_KAFKA_SASL_AUTHENTICATE_RESP_AUTH_BYTES].s.p = (const uint8_t *)"";
    r->f[BG_KAFKA_SASL_AUTHENTICATE_RESP_AUTH_BYTES].s.len = 0;
    return bg_kafka_session_respond(s, pe, r);
}

/* Answers code with msg and closes after sending it. */
static int bg_kafka_auth__fail_code(bg_kafka_session_t *s, bg_kafka_pending_t *pe,
                                    bg_kafka_struct_t *r, int16_t code, const char *msg)
{
    if (bg_kafka_auth__answer_code(s, pe, r, code, msg) != 0)
        return -1;
    bg_kafka_session_close(s, 1, msg);
    return 1;
}

/* Answers SASL_AUTHENTICATION_FAILED with msg and closes after sending it. */
static int bg_kafka_auth__fail(bg_kafka_session_t *s, bg_kafka_pending_t *pe, bg_kafka_struct_t *r,
                               const char *msg)
{
    return bg_kafka_auth__fail_code(s, pe, r, BG_KAFKA_E_SASL_AUTHENTICATION_FAILED, msg);
}

/* The parts of the mechanism's message: the token, and the authorization id
 * the client asked for (and PLAIN's user name); {NULL, -1} when absent. */
typedef struct bg_kafka_auth__msg_s {
    bg_slice_t token, authzid, authcid;
} bg_kafka_auth__msg_t;

/* Splits the mechanism's message; NULL why on success. */
static int bg_kafka_auth__token(const bg_kafka_session_t *s, bg_slice_t in,
                                bg_kafka_auth__msg_t *m, const char **why)
{
    size_t n = in.len < 0 ? 0 : (size_t)in.len;
    m->authcid = (bg_slice_t){NULL, -1};
    if (s->mech == BG_SASL_MECH_OAUTHBEARER)
        return bg_kafka_sasl_parse_oauthbearer(in.p, n, &m->token, &m->authzid, why);
    return bg_kafka_sasl_parse_plain(in.p, n, &m->authzid, &m->authcid, &m->token, why);
}

/* Kafka refuses a client that asks to act as someone else: an OAUTHBEARER
 * authorization id must be the token's subject, a PLAIN one the user name.
 * The subject may be given as the principal name or as the token's own
 * claim: a client knows its token, not the issuer's subject_prefix, and
 * both name this principal. NULL when the request is consistent, else the
 * refusal. */
static const char *bg_kafka_auth__authzid_refused(const bg_kafka_session_t *s,
                                                  const bg_kafka_auth__msg_t *m,
                                                  const bg_principal_t *pr)
{
    if (m->authzid.len <= 0)
        return NULL;
    if (s->mech == BG_SASL_MECH_OAUTHBEARER) {
        char name[512];
        if (bg_kafka_sasl_saslname_decode(m->authzid, name, sizeof name) < 0 ||
            (strcmp(name, pr->sub) != 0 && strcmp(name, bg_principal_subject_claim(pr)) != 0))
            return "Authentication failed: client requested an authorization id that is "
                   "different from the token's principal name";
        return NULL;
    }
    if (m->authcid.len != m->authzid.len ||
        memcmp(m->authcid.p, m->authzid.p, (size_t)m->authzid.len) != 0)
        return "Authentication failed: client requested an authorization id that is different "
               "from username";
    return NULL;
}

/* The token verified with snapshot *cur: (re)establish the session's
 * principal, under that snapshot (s->snap and s->pp change together). */
static int bg_kafka_auth__accept(bg_kafka_session_t *s, bg_kafka_pending_t *pe,
                                 bg_kafka_struct_t *r, bg_principal_t *pr, bg_snapshot_t **cur)
{
    if (s->reauth && !bg_principal_same(pr, &s->principal)) {
        bg_principal_clear(pr);
        bg_kafka_audit_auth_failure(s, "different_subject");
        return bg_kafka_auth__fail(s, pe, r, "re-authentication must keep the same principal");
    }
    if (*cur && *cur != s->snap) {
        bg_snapshot_release(s->snap);
        s->snap = *cur;
        *cur = NULL;
    }
    bg_policy_principal_clear(&s->pp);
    bg_principal_clear(&s->principal);
    s->principal = *pr;
    s->unvouched = bg_identity_unvouched(s->snap->identity, &s->principal);
    if (bg_policy_principal_prepare(s->snap->policy, pr->sub, (const char *const *)pr->groups,
                                    pr->ngroups, &s->pp) != 0) {
        bg_kafka_session_close(s, 0, "cannot prepare the principal (out of memory)");
        return 1;
    }
    int64_t now = bg_kafka_now_ms();
    /* As Kafka's broker: the session ends at the token's own exp; the clock
     * skew only widens what is accepted (a token accepted within it gets a
     * session that ends at once, and the client re-authenticates). */
    s->exp_ms = pr->exp * 1000;
    int was_reauth = s->reauth;
    s->auth = BG_KAFKA_AUTH_OK;
    s->reauth = 0;
    bg_limits_authenticated(&s->conn_lim); /* the first time: no longer held against the caps */
    r->f[BG_KAFKA_SASL_AUTHENTICATE_RESP_ERROR_CODE].i = 0;
    r->f[BG_KAFKA_SASL_AUTHENTICATE_RESP_AUTH_BYTES].s.p = (const uint8_t *)"";
    r->f[BG_KAFKA_SASL_AUTHENTICATE_RESP_AUTH_BYTES].s.len = 0;
    r->f[BG_KAFKA_SASL_AUTHENTICATE_RESP_SESSION_LIFETIME_MS].i =
        s->exp_ms > now ? s->exp_ms - now : 1;
    bg_metric_add(&s->kw->w->metrics.auth_ok[BG_PROTO_KAFKA], 1);
    bg_kafka_audit_session_start(s, was_reauth);
    bg_log_fields(BG_LOG_INFO, "kafka",
                  (bg_log_field_t[]){{"session", s->id}, {"peer", s->peer}, {"sub", pr->sub}}, 3,
                  "%s with %s", was_reauth ? "re-authenticated" : "authenticated",
                  bg_kafka_auth__mech_name(s->mech));
    if (bg_kafka_session_start_upstream(s) != 0)
        return 1;
    return bg_kafka_session_respond(s, pe, r);
}

/* 1 when the session is authenticated and no re-authentication has begun. */
static int bg_kafka_auth__settled(const bg_kafka_session_t *s)
{
    return s->auth == BG_KAFKA_AUTH_OK && !s->reauth;
}

/* A SaslAuthenticate of an authenticated session with no SaslHandshake
 * before it: answered as Kafka's broker does (KafkaApis, not the SASL
 * server), in order and without closing: ILLEGAL_SASL_STATE with Kafka's
 * message. It changes nothing, but it is a refused login attempt (its
 * bytes may well be credentials), so it is audited as one; the event has
 * no principal, as every auth_failure. Returns 0 or -1. */
static int bg_kafka_auth__after_login(bg_kafka_session_t *s, bg_kafka_pending_t *pe,
                                      bg_kafka_struct_t *r)
{
    bg_kafka_audit_auth_failure(s, "no_handshake");
    return bg_kafka_auth__answer_code(s, pe, r, BG_KAFKA_E_ILLEGAL_SASL_STATE,
                                      "SaslAuthenticate request received after successful "
                                      "authentication");
}

static int bg_kafka_auth__authenticate(bg_kafka_session_t *s, bg_kafka_pending_t *pe,
                                       const uint8_t *p, size_t len, int off)
{
    const bg_kafka_struct_t *req = bg_kafka_auth__decode(s, pe, p, len, off);
    bg_kafka_struct_t *r = bg_kafka_auth__new_resp(pe);
    if (!req || !r)
        return -1;
    if (bg_kafka_auth__settled(s))
        return bg_kafka_auth__after_login(s, pe, r);
    if (!(s->auth == BG_KAFKA_AUTH_MECH || s->auth == BG_KAFKA_AUTH_CHALLENGED || s->reauth)) {
        bg_kafka_audit_auth_failure(s, "no_handshake");
        return bg_kafka_auth__fail_code(s, pe, r, BG_KAFKA_E_ILLEGAL_SASL_STATE,
                                        "SaslAuthenticate without SaslHandshake");
    }
    if (s->kw->w->audit && !bg_kafka_audit_admitting(s)) {
        /* Neither a login nor a failed one may go unrecorded: the client
         * reconnects and tries again, as after any dropped connection. */
        bg_kafka_session_close(s, 0, "audit pipeline unavailable: authentication refused");
        return -1;
    }
    char msg[200];
    if (s->reauth && s->reauth_mech) {
        bg_kafka_audit_auth_failure(s, "mechanism_changed");
        snprintf(msg, sizeof msg,
                 "SASL mechanism '%s' requested by client is not supported for "
                 "re-authentication of mechanism '%s'",
                 bg_kafka_auth__mech_name(s->reauth_mech), bg_kafka_auth__mech_name(s->mech));
        return bg_kafka_auth__fail(s, pe, r, msg);
    }
    if (s->auth == BG_KAFKA_AUTH_CHALLENGED) { /* the client's 0x01 after the challenge */
        snprintf(msg, sizeof msg, "invalid token: %s", s->auth_failure);
        return bg_kafka_auth__fail(s, pe, r, msg);
    }
    bg_kafka_auth__msg_t m;
    const char *why = NULL;
    if (bg_kafka_auth__token(s, req->f[BG_KAFKA_SASL_AUTHENTICATE_REQ_AUTH_BYTES].s, &m, &why) != 0) {
        bg_kafka_audit_auth_failure(s, "malformed");
        snprintf(msg, sizeof msg, "invalid %s client message: %s",
                 bg_kafka_auth__mech_name(s->mech), why ? why : "malformed");
        return bg_kafka_auth__fail(s, pe, r, msg);
    }
    /* The newest key set, without switching the session's snapshot yet: its
     * prepared principal belongs to the one it has until accept. */
    bg_snapshot_t *cur = bg_snapshot_acquire();
    bg_principal_t pr = {0};
    char detail[128] = "";
    bg_id_reason_t rc = bg_identity_verify((cur ? cur : s->snap)->identity,
                                           (const char *)m.token.p, (size_t)m.token.len,
                                           (int64_t)time(NULL), &pr, detail, sizeof detail);
    const char *refused = rc == BG_ID_OK ? bg_kafka_auth__authzid_refused(s, &m, &pr) : NULL;
    if (refused) {
        bg_snapshot_release(cur);
        bg_principal_clear(&pr);
        bg_kafka_audit_auth_failure(s, "authzid_mismatch");
        return bg_kafka_auth__fail(s, pe, r, refused);
    }
    if (rc == BG_ID_OK) {
        int arc = bg_kafka_auth__accept(s, pe, r, &pr, &cur);
        bg_snapshot_release(cur);
        return arc;
    }
    bg_snapshot_release(cur);
    bg_kafka_audit_auth_failure(s, bg_id_reason_str(rc));
    bg_log_fields(BG_LOG_INFO, "kafka",
                  (bg_log_field_t[]){{"session", s->id}, {"peer", s->peer},
                                     {"reason", bg_id_reason_str(rc)}},
                  3, "authentication failed");
    if (s->mech == BG_SASL_MECH_OAUTHBEARER) {
        /* RFC 7628: an error challenge, then the client's 0x01, then
         * failure. A re-authentication too: Kafka's broker runs it through
         * the same SASL server. The session stays s->reauth, so its
         * principal stays until the close. */
        char json[128];
        int n = bg_kafka_sasl_oauthbearer_error(json, sizeof json);
        char *copy = n > 0 ? bg_kafka_arena_alloc(&pe->arena, (size_t)n) : NULL;
        if (!copy)
            return -1;
        memcpy(copy, json, (size_t)n);
        r->f[BG_KAFKA_SASL_AUTHENTICATE_RESP_AUTH_BYTES].s.p = (const uint8_t *)copy;
        r->f[BG_KAFKA_SASL_AUTHENTICATE_RESP_AUTH_BYTES].s.len = n;
        snprintf(s->auth_failure, sizeof s->auth_failure, "%s", bg_id_reason_str(rc));
        s->auth = BG_KAFKA_AUTH_CHALLENGED;
        return bg_kafka_session_respond(s, pe, r);
    }
    snprintf(msg, sizeof msg, "invalid token: %s", bg_id_reason_str(rc));
    return bg_kafka_auth__fail(s, pe, r, msg);
}

int bg_kafka_auth_handle(bg_kafka_session_t *s, const bg_kafka_req_hdr_t *h, const uint8_t *p,
                         size_t len, int body_off)
{
    bg_kafka_pending_t *pe = bg_kafka_session_push(s, h);
    if (!pe) {
        bg_kafka_session_close(s, 0, "cannot queue the request (out of memory)");
        return -1;
    }
    int rc;
    switch (h->api_key) {
    case BG_KAFKA_API_API_VERSIONS: rc = bg_kafka_auth__api_versions(s, pe, p, len, body_off); break;
    case BG_KAFKA_API_SASL_HANDSHAKE: rc = bg_kafka_auth__handshake(s, pe, p, len, body_off); break;
    default: rc = bg_kafka_auth__authenticate(s, pe, p, len, body_off); break;
    }
    if (rc < 0) { /* a malformed request closed the session already */
        char why[96];
        snprintf(why, sizeof why, "%s version %d refused", bg_kafka_msg_desc(h->api_key, 0)->name,
                 h->api_version);
        bg_kafka_session_close(s, 0, why);
        return -1;
    }
    return rc > 0 ? -1 : 0;
}
