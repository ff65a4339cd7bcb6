/* A fake AMQP session for tests of amqp_channel.c / amqp_authz.c without
 * sockets: the client's and the upstream's output are plain evbuffers, the
 * session's lifecycle calls (close, kill, resume, ...) are recorded instead
 * of acted on, and the policy is a compiled test policy. The channel code
 * under test is the real one: the test (or fuzz target) #includes
 * amqp_channel.c and amqp_authz.c after this header.
 *
 * Used by tests/unit/amqp/test_amqp_channel*.c and tests/fuzz/amqp_session.c;
 * independent of cmocka. One fake at a time (t_cur). */
#ifndef BG_TEST_AMQP_SESSION_FAKE_H
#define BG_TEST_AMQP_SESSION_FAKE_H

#include <event2/buffer.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/amqp/amqp_session-internal.h"
#include "broker/worker.h"

/* ---- the fake ---- */

struct bg_amqp_up_s {
    struct evbuffer *out;
};

typedef struct t_fake_s {
    bg_amqp_session_t s;
    bg_amqp_worker_t aw;
    bg_amqp_global_t g;
    bg_config_t cfg;
    bg_worker_t w;
    bg_snapshot_t snap;
    struct bg_amqp_up_s up;
    struct evbuffer *cli_out; /* busgate -> client */
    struct evbuffer *in;      /* client -> busgate, not yet consumed */
    struct evbuffer *up_in;   /* upstream -> busgate, not yet consumed */
    bg_amqp_arena_t arena;    /* decoding what busgate sent */
    int admitting;
    int killed, kill_flush;
    int closed; /* bg_amqp_session_close calls that took effect */
    uint16_t close_code, close_class, close_method;
    char close_text[256];
    char broker_error[160];       /* the last bg_amqp_session_broker_error's why */
    uint16_t broker_close_code;   /* the last bg_amqp_session_broker_closed */
    char broker_close_text[512];
    int awaiting_close_ok, resumes, decisions, update_secrets;
    uint16_t limit_code;    /* the last bg_amqp_audit_limit: its code, method, resource */
    uint32_t limit_method;
    char limit_name[256];
    const bg_policy_t *next_policy; /* the next bg_snapshot_refresh installs it */
    const char *rename_group;       /* the next bg_identity_rename: the one group's new name */
    const char *rename_sub;         /* ... and, when set, the principal's new name */
    const char *renamed[1];
    const char *unvouched;          /* what bg_identity_unvouched answers */
    int64_t now_ms;                 /* bg_amqp_mono_ms */
} t_fake_t;

static t_fake_t *t_cur;

struct evbuffer *bg_amqp_up_output(bg_amqp_up_t *u) { return u->out; }

struct evbuffer *bg_amqp_cli_out(bg_amqp_session_t *s)
{
    (void)s;
    return t_cur->cli_out;
}

struct evbuffer *bg_amqp_up_out(bg_amqp_session_t *s) { return s->up->out; }

static inline int t_fake__add(struct evbuffer *out, bg_wr_t *wr)
{
    int rc = (!wr->failed && evbuffer_add(out, wr->buf, wr->len) == 0) ? 0 : -1;
    bg_wr_reset(wr);
    return rc;
}

int bg_amqp_cli_send(bg_amqp_session_t *s, bg_wr_t *wr)
{
    (void)s;
    return t_fake__add(t_cur->cli_out, wr);
}

int bg_amqp_up_send(bg_amqp_session_t *s, bg_wr_t *wr)
{
    return s->up ? t_fake__add(s->up->out, wr) : -1;
}

void bg_amqp_session_kill(bg_amqp_session_t *s, int flush, const char *why)
{
    (void)why;
    if (s->dead)
        return;
    t_cur->killed = 1;
    t_cur->kill_flush = flush;
    s->dead = 1;
}

/* As the real one: the first close wins, later ones are ignored. */
void bg_amqp_session_close(bg_amqp_session_t *s, uint16_t code, const char *text,
                           uint16_t class_id, uint16_t method_id)
{
    if (s->dead || s->state == BG_AMQP_S_CLOSING)
        return;
    t_cur->closed++;
    t_cur->close_code = code;
    t_cur->close_class = class_id;
    t_cur->close_method = method_id;
    snprintf(t_cur->close_text, sizeof t_cur->close_text, "%s", text);
    s->state = BG_AMQP_S_CLOSING;
}

/* As the real one, minus the log and the session_end detail. */
void bg_amqp_session_broker_error(bg_amqp_session_t *s, const char *why)
{
    snprintf(t_cur->broker_error, sizeof t_cur->broker_error, "%s", why);
    bg_amqp_session_close(s, BG_AMQP_CONNECTION_FORCED,
                          "CONNECTION_FORCED - malformed frame from the broker", 0, 0);
}

void bg_amqp_session_broker_closed(bg_amqp_session_t *s, uint16_t code, const char *text)
{
    (void)s;
    t_cur->broker_close_code = code;
    snprintf(t_cur->broker_close_text, sizeof t_cur->broker_close_text, "%s", text);
}

void bg_amqp_session_await_close_ok(bg_amqp_session_t *s)
{
    s->state = BG_AMQP_S_CLOSING;
    t_cur->awaiting_close_ok = 1;
}

void bg_amqp_session_await_upstream_close_ok(bg_amqp_session_t *s)
{
    s->state = BG_AMQP_S_CLOSING_UP;
}

void bg_amqp_session_resume(bg_amqp_session_t *s)
{
    (void)s;
    t_cur->resumes++;
}

int bg_amqp_hs_update_secret(bg_amqp_session_t *s, const bg_amqp_update_secret_t *m)
{
    (void)s;
    (void)m;
    t_cur->update_secrets++;
    return 0;
}

int bg_amqp_audit_admitting(bg_amqp_session_t *s)
{
    (void)s;
    return t_cur->admitting;
}

void bg_amqp_audit_decisions(bg_amqp_session_t *s, const bg_amqp_method_t *m,
                             const bg_amqp_verdict_t *v, uint64_t bytes_in)
{
    (void)s, (void)m, (void)bytes_in;
    t_cur->decisions += (int)v->n;
}

void bg_amqp_audit_limit(bg_amqp_session_t *s, const bg_amqp_method_t *m,
                         const bg_amqp_check_t *c, uint16_t code, const char *why,
                         uint64_t bytes_in)
{
    (void)s, (void)why, (void)bytes_in;
    t_cur->decisions++;
    t_cur->limit_code = code;
    t_cur->limit_method = m->id;
    snprintf(t_cur->limit_name, sizeof t_cur->limit_name, "%.*s", (int)c->name_len, c->name);
}

int64_t bg_amqp_mono_ms(void) { return t_cur->now_ms; }

int bg_snapshot_refresh(bg_snapshot_t **held)
{
    if (!t_cur->next_policy)
        return 0; /* no reload */
    (*held)->policy = (bg_policy_t *)t_cur->next_policy; /* a reload */
    t_cur->next_policy = NULL;
    return 1;
}

/* The identity module is not linked and the fake snapshot has none: a
 * reload renames the principal only as a test asks (rename_group, as a
 * changed groups_prefix would). */
int bg_identity_rename(const bg_identity_t *id, bg_principal_t *p)
{
    (void)id;
    if (!t_cur->rename_group)
        return 0;
    t_cur->renamed[0] = t_cur->rename_group; /* borrowed, as the fake's groups are */
    p->groups = (char **)t_cur->renamed;
    p->ngroups = 1;
    if (t_cur->rename_sub)
        p->sub = (char *)t_cur->rename_sub; /* borrowed, as the fake's sub is */
    t_cur->rename_group = t_cur->rename_sub = NULL;
    return 1;
}

/* As a test asks: NULL (the issuer is configured) unless unvouched is set,
 * as a reload that removed the principal's issuer would. */
const char *bg_identity_unvouched(const bg_identity_t *id, const bg_principal_t *p)
{
    (void)id, (void)p;
    return t_cur->unvouched;
}

/* bg_identity_reapply of the two fakes above, without its log lines. */
int bg_identity_reapply(const bg_identity_t *id, bg_principal_t *p, const char **unvouched,
                        const char *module, const char *session)
{
    (void)module, (void)session;
    int renamed = bg_identity_rename(id, p);
    *unvouched = bg_identity_unvouched(id, p);
    return renamed;
}

/* A RUNNING session with policy p for principal sub (groups: space-separated
 * list), channel_max channels, frame_max 131072, client caps. */
static inline void t_fake_init(t_fake_t *t, const bg_policy_t *p, const char *sub,
                        const char *const *groups, size_t ngroups, uint16_t channel_max,
                        uint32_t caps)
{
    memset(t, 0, sizeof *t);
    t_cur = t;
    t->cfg.amqp.upstream.vhost = (char *)"/";
    t->g.cfg = &t->cfg;
    t->aw.w = &t->w;
    t->aw.g = &t->g;
    t->snap.policy = (bg_policy_t *)p;
    t->up.out = evbuffer_new();
    t->cli_out = evbuffer_new();
    t->in = evbuffer_new();
    t->up_in = evbuffer_new();
    bg_amqp_arena_init(&t->arena);
    t->admitting = 1;
    bg_amqp_session_t *s = &t->s;
    s->aw = &t->aw;
    s->snap = &t->snap;
    s->up = &t->up;
    s->state = BG_AMQP_S_RUNNING;
    s->caps = caps;
    s->channel_max = channel_max;
    s->frame_max = BG_AMQP_DEFAULT_FRAME_MAX;
    s->lim = (bg_amqp_limits_t)BG_AMQP_LIMITS_DEFAULT;
    bg_amqp_arena_init(&s->arena);
    s->chans = calloc((size_t)channel_max + 1, sizeof *s->chans);
    snprintf(s->id, sizeof s->id, "fake-session");
    snprintf(s->user, sizeof s->user, "svc");
    s->principal.sub = (char *)sub;
    s->principal.groups = (char **)groups; /* borrowed: never freed by the fake */
    s->principal.ngroups = ngroups;
    if (bg_policy_principal_prepare(p, sub, groups, ngroups, &s->pp) != 0)
        abort();
}

static inline void t_fake_free(t_fake_t *t)
{
    bg_amqp_chan_free_all(&t->s);
    free(t->s.chans);
    bg_amqp_arena_free(&t->s.arena);
    bg_amqp_arena_free(&t->arena);
    bg_policy_principal_clear(&t->s.pp);
    evbuffer_free(t->up.out);
    evbuffer_free(t->cli_out);
    evbuffer_free(t->in);
    evbuffer_free(t->up_in);
    t_cur = NULL;
}

/* ---- driving it as amqp_session.c does ---- */

/* The whole frame at the head of in: 1 (f, *len set), 0 need more, <0 bad. */
static inline int t_peek(struct evbuffer *in, uint32_t max, bg_amqp_frame_t *f, size_t *len)
{
    size_t avail = evbuffer_get_length(in);
    if (avail == 0)
        return 0;
    const uint8_t *p = evbuffer_pullup(in, -1);
    int64_t r = bg_amqp_frame_peek(p, avail, max, f, NULL);
    if (r <= 0)
        return (int)r;
    f->payload = NULL; /* as bg_amqp_evbuf_peek: the header only */
    *len = (size_t)r;
    return 1;
}

/* Feeds n client bytes and runs the session's read loop over them (stops
 * when the session closes, dies or stalls; a bad frame is a FRAME_ERROR
 * close as in amqp_session.c). Returns the last handler result. */
static inline int t_client(t_fake_t *t, const void *p, size_t n)
{
    bg_amqp_session_t *s = &t->s;
    if (n)
        evbuffer_add(t->in, p, n);
    int rc = 1;
    while (!s->dead && !s->stalled && s->state == BG_AMQP_S_RUNNING) {
        bg_amqp_frame_t f;
        size_t len = 0;
        rc = t_peek(t->in, s->frame_max, &f, &len);
        if (rc < 0) {
            bg_amqp_session_close(s, BG_AMQP_FRAME_ERROR, "FRAME_ERROR - bad frame", 0, 0);
            return -1;
        }
        if (rc == 0)
            return 1;
        if (f.type == BG_AMQP_FRAME_HEARTBEAT) {
            evbuffer_drain(t->in, len);
            continue;
        }
        rc = bg_amqp_chan_client_frame(s, t->in, &f, len);
        if (rc <= 0)
            return rc;
    }
    return rc;
}

/* Feeds n upstream bytes through bg_amqp_chan_upstream_frame (heartbeats are
 * the upstream leg's own and never reach it). Returns 0 or -1 (closing). */
static inline int t_up(t_fake_t *t, const void *p, size_t n)
{
    bg_amqp_session_t *s = &t->s;
    if (n)
        evbuffer_add(t->up_in, p, n);
    while (!s->dead && s->state == BG_AMQP_S_RUNNING) {
        bg_amqp_frame_t f;
        size_t len = 0;
        int rc = t_peek(t->up_in, UINT32_MAX, &f, &len);
        if (rc <= 0)
            return rc < 0 ? -1 : 0;
        if (f.type == BG_AMQP_FRAME_HEARTBEAT) {
            evbuffer_drain(t->up_in, len);
            continue;
        }
        if (bg_amqp_chan_upstream_frame(s, t->up_in, &f, len) != 0)
            return -1;
    }
    return 0;
}

/* ---- frames ---- */

/* A method frame (rabbitmq-c struct or NULL for argument-less methods). */
static inline size_t t_method(bg_wr_t *wr, uint16_t ch, uint32_t id, const void *args)
{
    size_t before = wr->len;
    const char *why = NULL;
    if (bg_amqp_method_encode(wr, ch, id, args, &why) != BG_AMQP_OK) {
        fprintf(stderr, "cannot encode method %08x: %s\n", id, why ? why : "?");
        abort();
    }
    return wr->len - before;
}

/* A basic content header with no properties. */
static inline void t_header(bg_wr_t *wr, uint16_t ch, uint64_t body_size)
{
    static const uint8_t no_props[2] = {0, 0};
    bg_amqp_content_header_t h = {60, body_size, 0, {no_props, 2}};
    bg_amqp_content_header_write(wr, ch, &h);
}

static inline void t_body(bg_wr_t *wr, uint16_t ch, const char *p, size_t n)
{
    bg_amqp_frame_write(wr, BG_AMQP_FRAME_BODY, ch, p, n);
}

static inline amqp_bytes_t t_str(const char *s)
{
    amqp_bytes_t b = {strlen(s), (void *)s};
    return b;
}

/* Sends wr's bytes as the client / as the upstream, then empties wr. */
static inline int t_client_wr(t_fake_t *t, bg_wr_t *wr)
{
    int rc = t_client(t, wr->buf, wr->len);
    bg_wr_reset(wr);
    return rc;
}

static inline int t_up_wr(t_fake_t *t, bg_wr_t *wr)
{
    int rc = t_up(t, wr->buf, wr->len);
    bg_wr_reset(wr);
    return rc;
}

/* Removes the next frame of out into buf (cap bytes); 1 with f (payload in
 * buf), 0 when out is empty. Aborts on a malformed frame: busgate's output
 * must always be well-formed. */
static inline int t_next(struct evbuffer *out, uint8_t *buf, size_t cap, bg_amqp_frame_t *f)
{
    size_t len = 0;
    int rc = t_peek(out, UINT32_MAX, f, &len);
    if (rc == 0)
        return 0;
    if (rc < 0 || len > cap) {
        fprintf(stderr, "malformed or oversized frame in busgate's output\n");
        abort();
    }
    evbuffer_remove(out, buf, len);
    f->payload = buf + BG_AMQP_FRAME_HEADER_SIZE;
    return 1;
}

/* Decodes a method frame taken by t_next (into t->arena); 0 or -1. */
static inline int t_decode(t_fake_t *t, const bg_amqp_frame_t *f, bg_amqp_method_t *m)
{
    const char *why = NULL;
    if (f->type != BG_AMQP_FRAME_METHOD)
        return -1;
    return bg_amqp_method_decode(f, NULL, &t->arena, m, &why) == BG_AMQP_OK ? 0 : -1;
}

#endif
