/* Section parsers: identity, kafka, amqp, http, approvals, audit, admin,
 * limits.
 * Key lists are the design's configuration sketch (part of the contract);
 * each parser presets defaults, reads what is present, then applies the
 * section's cross-field rules. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "broker/config-internal.h"
#include "broker/utf8.h"

#define BG_CFG_KIB (1ull << 10)
#define BG_CFG_MIB (1ull << 20)
#define BG_CFG_GIB (1ull << 30)

/* Reads a mapping that must be present (a sequence item, say). */
static int bg_cfg__item_map(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path,
                            const char *const *keys, bg_cfg_map_t *m)
{
    int r = bg_cfg__map(ctx, n, path, keys, m);
    if (r == 0)
        bg_cfg__err(ctx, n, path, "expected a mapping, got null");
    return r;
}

/* ---- tls ---- */

static const char *const bg_cfg__ltls_keys[] = {"cert", "key", "client_ca", NULL};
static const char *const bg_cfg__utls_keys[] = {"ca", "cert", "key", "verify", NULL};

/* A tls key with nothing under it (its children commented out, say) is an
 * error at the key, not "not set" as a null is elsewhere: not set means
 * plaintext here, and writing tls must never give plaintext silently (a
 * password sent in the clear, a listener without TLS). how says what to
 * write instead. Returns 1 after reporting, 0 when key is absent or has a
 * value. */
static int bg_cfg__tls_empty(bg_cfg_ctx_t *ctx, struct fy_node *key, struct fy_node *val,
                             const char *path, const char *how)
{
    if (!key || !bg_cfg__is_null(val))
        return 0;
    bg_cfg__err(ctx, key, path, "empty: %s", how);
    return 1;
}

/* Listener TLS {cert, key, client_ca}: cert and key go together. key and n
 * are the tls key and its value in the section (both NULL when absent). */
static void bg_cfg__listen_tls(bg_cfg_ctx_t *ctx, struct fy_node *key, struct fy_node *n,
                               const char *path, bg_config_tls_t *t)
{
    bg_cfg_map_t m;
    char p[BG_CFG_PATH_MAX];
    t->verify = 1;
    if (bg_cfg__tls_empty(ctx, key, n, path,
                          "a listener's TLS needs cert and key (tls: {cert: PATH, key: PATH}); "
                          "remove the key to serve plaintext"))
        return;
    if (bg_cfg__map(ctx, n, path, bg_cfg__ltls_keys, &m) <= 0)
        return;
    t->enabled = 1;
    bg_cfg__require(ctx, &m, bg_cfg__ltls_keys, 0, path);
    bg_cfg__require(ctx, &m, bg_cfg__ltls_keys, 1, path);
    bg_cfg__join(p, path, "cert");
    bg_cfg__get_file(ctx, m.val[0], p, &t->cert);
    bg_cfg__join(p, path, "key");
    bg_cfg__get_file(ctx, m.val[1], p, &t->key);
    bg_cfg__join(p, path, "client_ca");
    bg_cfg__get_file(ctx, m.val[2], p, &t->client_ca);
}

/* Upstream TLS {ca, cert, key, verify}: a client certificate needs its key.
 * key and n as for bg_cfg__listen_tls. */
static void bg_cfg__upstream_tls(bg_cfg_ctx_t *ctx, struct fy_node *key, struct fy_node *n,
                                 const char *path, bg_config_tls_t *t)
{
    bg_cfg_map_t m;
    char p[BG_CFG_PATH_MAX];
    t->verify = 1;
    if (bg_cfg__tls_empty(ctx, key, n, path,
                          "write tls: {} for the default TLS settings (the system's CAs, verify "
                          "true), or remove the key"))
        return;
    if (bg_cfg__map(ctx, n, path, bg_cfg__utls_keys, &m) <= 0)
        return;
    t->enabled = 1;
    bg_cfg__join(p, path, "ca");
    bg_cfg__get_file(ctx, m.val[0], p, &t->ca);
    bg_cfg__join(p, path, "cert");
    bg_cfg__get_file(ctx, m.val[1], p, &t->cert);
    bg_cfg__join(p, path, "key");
    bg_cfg__get_file(ctx, m.val[2], p, &t->key);
    bg_cfg__join(p, path, "verify");
    bg_cfg__get_bool(ctx, m.val[3], p, &t->verify);
    if (!m.val[1] != !m.val[2])
        bg_cfg__err(ctx, m.val[1] ? m.key[1] : m.key[2], path,
                    "cert and key must be given together");
}

/* ---- identity ---- */

static const char *const bg_cfg__issuer_keys[] = {
    "issuer",         "audiences",     "jwks_file",    "jwks_url",
    "jwks_refresh",   "subject_claim", "groups_claim", "allow_hs256",
    "subject_prefix", "groups_prefix", "jwks_ca",      NULL,
};
enum {
    I_ISSUER,
    I_AUD,
    I_JFILE,
    I_JURL,
    I_REFRESH,
    I_SUB,
    I_GROUPS,
    I_HS256,
    I_SPFX,
    I_GPFX,
    I_JCA
};

/* What is wrong with a principal name prefix, or NULL. It becomes part of
 * every name in logs, audit events and policy subjects: UTF-8 without
 * control characters (C0, DEL, C1), and without '*' or '?', which subjects
 * cannot write (no rule could name the issuer's principals). */
static const char *bg_cfg__prefix_why(const char *s)
{
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        const unsigned char *p = (const unsigned char *)s + i;
        size_t n = bg_utf8_len(p, len - i);
        if (n == 0)
            return "is not valid UTF-8";
        if (p[0] < 0x20 || p[0] == 0x7f || (p[0] == 0xC2 && p[1] < 0xA0))
            return "contains a control character";
        if (p[0] == '*' || p[0] == '?')
            return "contains '*' or '?' (policy subjects take no wildcards, so no rule could "
                   "name these principals)";
        i += n;
    }
    return NULL;
}

/* subject_prefix / groups_prefix: a string, "" (the default) for none. */
static void bg_cfg__issuer_prefix(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path,
                                  char **out)
{
    const char *v, *shown, *why;
    if (bg_cfg__scalar(ctx, n, path, &v, &shown) <= 0)
        return;
    if (strlen(v) > BG_CONFIG_PREFIX_MAX) {
        bg_cfg__err(ctx, n, path, "must be at most %d bytes", BG_CONFIG_PREFIX_MAX);
        return;
    }
    if ((why = bg_cfg__prefix_why(v)) != NULL) {
        bg_cfg__err(ctx, n, path, "%s", why);
        return;
    }
    *out = (char *)v;
}

static void bg_cfg__issuer(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path,
                           bg_config_issuer_t *is)
{
    bg_cfg_map_t m;
    char p[BG_CFG_PATH_MAX];
    is->jwks_refresh_ms = 5 * 60000;
    is->subject_claim = bg_cfg__strdup(ctx, "sub");
    is->groups_claim = bg_cfg__strdup(ctx, "groups");
    is->subject_prefix = bg_cfg__strdup(ctx, "");
    is->groups_prefix = bg_cfg__strdup(ctx, "");
    if (bg_cfg__item_map(ctx, n, path, bg_cfg__issuer_keys, &m) <= 0)
        return;
    bg_cfg__require(ctx, &m, bg_cfg__issuer_keys, I_ISSUER, path);
    bg_cfg__require(ctx, &m, bg_cfg__issuer_keys, I_AUD, path);
    static const int order[] = {I_ISSUER, I_SUB, I_GROUPS};
    char **dst[] = {&is->issuer, &is->subject_claim, &is->groups_claim};
    for (size_t i = 0; i < 3; i++) {
        bg_cfg__join(p, path, bg_cfg__issuer_keys[order[i]]);
        bg_cfg__get_str(ctx, m.val[order[i]], p, dst[i]);
    }
    bg_cfg__join(p, path, "audiences");
    bg_cfg__get_strlist(ctx, m.val[I_AUD], p, 1, NULL, &is->audiences, &is->naudiences);
    bg_cfg__join(p, path, "jwks_file");
    bg_cfg__get_file(ctx, m.val[I_JFILE], p, &is->jwks_file);
    bg_cfg__join(p, path, "jwks_url");
    if (bg_cfg__get_url(ctx, m.val[I_JURL], p, &is->jwks_url) > 0 &&
        bg_cfg__url_plain_remote(is->jwks_url))
        bg_cfg__err(ctx, m.val[I_JURL], p,
                    "signing keys must come over https:// (plain http:// only from a loopback "
                    "host): keys fetched in the clear can be replaced on the way");
    bg_cfg__join(p, path, "jwks_ca");
    if (bg_cfg__get_file(ctx, m.val[I_JCA], p, &is->jwks_ca) > 0 && bg_cfg__is_null(m.val[I_JURL]))
        bg_cfg__err(ctx, m.val[I_JCA], p,
                    "is the CA for jwks_url's https: set jwks_url, or remove it");
    bg_cfg__join(p, path, "jwks_refresh");
    if (bg_cfg__get_duration(ctx, m.val[I_REFRESH], p, &is->jwks_refresh_ms) > 0 &&
        is->jwks_refresh_ms < 1000)
        bg_cfg__err(ctx, m.val[I_REFRESH], p, "must be at least 1s");
    bg_cfg__join(p, path, "allow_hs256");
    /* A JWKS endpoint is normally public: an HMAC secret served there lets
     * anyone who reads it mint tokens. Shared secrets come from a file. */
    if (bg_cfg__get_bool(ctx, m.val[I_HS256], p, &is->allow_hs256) > 0 && is->allow_hs256 &&
        !bg_cfg__is_null(m.val[I_JURL]))
        bg_cfg__err(ctx, m.val[I_HS256], p,
                    "HS256 needs jwks_file: a shared secret served at a jwks_url (normally "
                    "public) would let anyone who can fetch it mint tokens");
    bg_cfg__join(p, path, "subject_prefix");
    bg_cfg__issuer_prefix(ctx, m.val[I_SPFX], p, &is->subject_prefix);
    bg_cfg__join(p, path, "groups_prefix");
    bg_cfg__issuer_prefix(ctx, m.val[I_GPFX], p, &is->groups_prefix);
    if (m.val[I_JFILE] && m.val[I_JURL]) {
        bg_cfg__join(p, path, "jwks_url");
        bg_cfg__err(ctx, m.key[I_JURL], p,
                    "jwks_file and jwks_url are mutually exclusive (set exactly one)");
    } else if (bg_cfg__is_null(m.val[I_JFILE]) && bg_cfg__is_null(m.val[I_JURL])) {
        bg_cfg__err(ctx, n, path, "missing jwks_file or jwks_url (set exactly one)");
    }
}

static const char *const bg_cfg__identity_keys[] = {"issuers", "clock_skew", NULL};

void bg_cfg__identity(bg_cfg_ctx_t *ctx, struct fy_node *n)
{
    bg_config_identity_t *id = &ctx->cfg->identity;
    bg_cfg_map_t m;
    size_t count;
    id->clock_skew_ms = 30000;
    if (bg_cfg__map(ctx, n, "identity", bg_cfg__identity_keys, &m) <= 0)
        return;
    if (bg_cfg__get_duration(ctx, m.val[1], "identity.clock_skew", &id->clock_skew_ms) > 0 &&
        id->clock_skew_ms > 3600000)
        bg_cfg__err(ctx, m.val[1], "identity.clock_skew", "must be at most 1h");
    if (bg_cfg__require(ctx, &m, bg_cfg__identity_keys, 0, "identity") < 0 ||
        bg_cfg__seq(ctx, m.val[0], "identity.issuers", &count) <= 0)
        return;
    if (count == 0) {
        bg_cfg__err(ctx, m.val[0], "identity.issuers", "must not be empty");
        return;
    }
    if (!(id->issuers = bg_cfg__alloc(ctx, count * sizeof(*id->issuers))))
        return;
    bg_cfg_names_t seen;
    bg_cfg__names_init(ctx, &seen, count, 0);
    void *it = NULL;
    struct fy_node *item;
    for (size_t i = 0; i < count && (item = fy_node_sequence_iterate(m.val[0], &it)); i++) {
        char p[BG_CFG_PATH_MAX];
        const char *iss;
        bg_cfg__index(p, "identity.issuers", i);
        bg_cfg__issuer(ctx, item, p, &id->issuers[i]);
        iss = id->issuers[i].issuer;
        for (size_t j = bg_cfg__names_add(&seen, iss, i); j < i && !bg_cfg__gave_up(ctx);
             j = bg_cfg__names_next(&seen, j))
            bg_cfg__err(ctx, item, p, "duplicate issuer '%.80s' (also issuers[%zu])", iss, j);
    }
    bg_cfg__names_free(&seen);
    id->nissuers = count;
}

/* ---- kafka ---- */

static const char *const bg_cfg__kafka_keys[] = {
    "listen", "advertised_host", "broker_port_base", "sasl_mechanisms", "tls",
    "upstream", "max_frame_bytes", "preauth_max_frame_bytes", "max_response_bytes",
    "max_inflight", "idle_timeout", "auth_timeout", NULL,
};
enum {
    KF_LISTEN, KF_ADV, KF_BASE, KF_MECHS, KF_TLS, KF_UP, KF_MAXF, KF_PREF, KF_MAXR, KF_INFL,
    KF_IDLE, KF_AUTHT
};

static const char *const bg_cfg__kup_keys[] = {"bootstrap", "embedded", "security", "sasl",
                                               "tls",       NULL};
enum { KU_BOOT, KU_EMB, KU_SEC, KU_SASL, KU_TLS };
static const char *const bg_cfg__sasl_keys[] = {"mechanism", "username", "password", NULL};

static int bg_cfg__check_mech(const char *s, const char **why)
{
    *why = "unknown SASL mechanism (expected OAUTHBEARER or PLAIN)";
    return strcmp(s, "OAUTHBEARER") == 0 || strcmp(s, "PLAIN") == 0 ? 0 : -1;
}

static void bg_cfg__kafka_bootstrap(bg_cfg_ctx_t *ctx, struct fy_node *n)
{
    bg_config_kafka_t *k = &ctx->cfg->kafka;
    const char *path = "kafka.upstream.bootstrap";
    size_t count;
    if (bg_cfg__seq(ctx, n, path, &count) <= 0)
        return;
    if (count == 0) {
        bg_cfg__err(ctx, n, path, "must not be empty");
        return;
    }
    if (!(k->upstream.bootstrap = bg_cfg__alloc(ctx, count * sizeof(bg_addr_t))))
        return;
    void *it = NULL;
    struct fy_node *item;
    for (size_t i = 0; i < count && (item = fy_node_sequence_iterate(n, &it)); i++) {
        char p[BG_CFG_PATH_MAX];
        bg_cfg__index(p, path, i);
        if (bg_cfg__get_addr(ctx, item, p, 1, &k->upstream.bootstrap[i]) == 0)
            bg_cfg__err(ctx, item, p, "expected an address (host:port), got null");
    }
    k->upstream.nbootstrap = count;
}

static void bg_cfg__kafka_sasl(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path)
{
    static const char *const mechs[] = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", NULL};
    bg_config_kafka_t *k = &ctx->cfg->kafka;
    bg_cfg_map_t m;
    char p[BG_CFG_PATH_MAX];
    int mech = 0;
    if (bg_cfg__map(ctx, n, path, bg_cfg__sasl_keys, &m) <= 0)
        return;
    for (size_t i = 0; i < 3; i++)
        bg_cfg__require(ctx, &m, bg_cfg__sasl_keys, i, path);
    bg_cfg__join(p, path, "mechanism");
    if (bg_cfg__get_enum(ctx, m.val[0], p, mechs, &mech) > 0)
        k->upstream.sasl_mechanism = bg_cfg__strdup(ctx, mechs[mech]);
    bg_cfg__join(p, path, "username");
    bg_cfg__get_str(ctx, m.val[1], p, &k->upstream.sasl_username);
    bg_cfg__join(p, path, "password");
    bg_cfg__get_str(ctx, m.val[2], p, &k->upstream.sasl_password);
}

static void bg_cfg__kafka_upstream(bg_cfg_ctx_t *ctx, struct fy_node *n)
{
    static const char *const secs[] = {"plaintext", "sasl_plaintext", "ssl", "sasl_ssl", NULL};
    const char *path = "kafka.upstream";
    bg_config_kafka_t *k = &ctx->cfg->kafka;
    bg_cfg_map_t m;
    int64_t emb = 0;
    int sec = 0;
    if (bg_cfg__item_map(ctx, n, path, bg_cfg__kup_keys, &m) <= 0)
        return;
    bg_cfg__kafka_bootstrap(ctx, m.val[KU_BOOT]);
    if (bg_cfg__get_int(ctx, m.val[KU_EMB], "kafka.upstream.embedded", 1, 32, &emb) > 0)
        k->upstream.embedded = (int)emb;
    if (bg_cfg__get_enum(ctx, m.val[KU_SEC], "kafka.upstream.security", secs, &sec) > 0)
        k->upstream.security = (bg_security_t)sec;
    bg_cfg__kafka_sasl(ctx, m.val[KU_SASL], "kafka.upstream.sasl");
    bg_cfg__upstream_tls(ctx, m.key[KU_TLS], m.val[KU_TLS], "kafka.upstream.tls",
                         &k->upstream.tls);
    int sasl = sec == BG_SEC_SASL_PLAINTEXT || sec == BG_SEC_SASL_SSL;
    int tls = sec == BG_SEC_SSL || sec == BG_SEC_SASL_SSL;
    if (m.val[KU_BOOT] && m.val[KU_EMB])
        bg_cfg__err(ctx, m.key[KU_EMB], "kafka.upstream.embedded",
                    "bootstrap and embedded are mutually exclusive (set exactly one)");
    else if (bg_cfg__is_null(m.val[KU_BOOT]) && bg_cfg__is_null(m.val[KU_EMB]))
        bg_cfg__err(ctx, n, path, "missing bootstrap or embedded (set exactly one)");
    if (sasl && bg_cfg__is_null(m.val[KU_SASL]))
        bg_cfg__err(ctx, m.val[KU_SEC], "kafka.upstream.security",
                    "security %s needs kafka.upstream.sasl", secs[sec]);
    if (!sasl && m.val[KU_SASL])
        bg_cfg__err(ctx, m.key[KU_SASL], "kafka.upstream.sasl",
                    "sasl is set but security is %s (use sasl_plaintext or sasl_ssl)", secs[sec]);
    if (!tls && !bg_cfg__is_null(m.val[KU_TLS])) /* an empty tls is reported above */
        bg_cfg__err(ctx, m.key[KU_TLS], "kafka.upstream.tls",
                    "tls is set but security is %s (use ssl or sasl_ssl)", secs[sec]);
    if (m.val[KU_EMB] && sec != BG_SEC_PLAINTEXT)
        bg_cfg__err(ctx, m.val[KU_SEC], "kafka.upstream.security",
                    "the embedded mock cluster supports plaintext only");
    k->upstream.tls.enabled = tls;
}

static int bg_cfg__wildcard(const char *host)
{
    return strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0;
}

static void bg_cfg__kafka_limits(bg_cfg_ctx_t *ctx, const bg_cfg_map_t *m)
{
    bg_config_kafka_t *k = &ctx->cfg->kafka;
    uint64_t v;
    int64_t i;
    k->max_frame_bytes = 100 * BG_CFG_MIB;
    k->preauth_max_frame_bytes = 64 * BG_CFG_KIB;
    /* Responses are sized by the client (fetch.max.bytes, 50 MiB by default
     * in the Java client and librdkafka) and by the cluster (Metadata), not
     * by what busgate accepts from clients: their own limit, far above any
     * normal response, only stops a broken or hostile upstream. */
    k->max_response_bytes = 256 * BG_CFG_MIB;
    k->max_inflight = 100;
    k->idle_timeout_ms = 10 * 60000;
    k->auth_timeout_ms = 10000;
    /* Kafka sizes are int32 on the wire. */
    if (bg_cfg__get_size(ctx, m->val[KF_MAXF], "kafka.max_frame_bytes", 4 * BG_CFG_KIB,
                         INT32_MAX, &v) > 0)
        k->max_frame_bytes = (uint32_t)v;
    if (bg_cfg__get_size(ctx, m->val[KF_PREF], "kafka.preauth_max_frame_bytes", 1 * BG_CFG_KIB,
                         k->max_frame_bytes, &v) > 0)
        k->preauth_max_frame_bytes = (uint32_t)v;
    else if (k->preauth_max_frame_bytes > k->max_frame_bytes)
        k->preauth_max_frame_bytes = k->max_frame_bytes; /* never above the main limit */
    if (bg_cfg__get_size(ctx, m->val[KF_MAXR], "kafka.max_response_bytes", 64 * BG_CFG_KIB,
                         INT32_MAX, &v) > 0)
        k->max_response_bytes = (uint32_t)v;
    if (bg_cfg__get_int(ctx, m->val[KF_INFL], "kafka.max_inflight", 1, 100000, &i) > 0)
        k->max_inflight = (uint32_t)i;
    bg_cfg__get_duration(ctx, m->val[KF_IDLE], "kafka.idle_timeout", &k->idle_timeout_ms);
    bg_cfg__get_duration(ctx, m->val[KF_AUTHT], "kafka.auth_timeout", &k->auth_timeout_ms);
}

static void bg_cfg__kafka_ports(bg_cfg_ctx_t *ctx, const bg_cfg_map_t *m)
{
    bg_config_kafka_t *k = &ctx->cfg->kafka;
    int64_t base = 0;
    if (bg_cfg__get_str(ctx, m->val[KF_ADV], "kafka.advertised_host", &k->advertised_host) == 0 &&
        k->listen.host) {
        k->advertised_host = k->listen.host;
        if (bg_cfg__wildcard(k->listen.host))
            bg_cfg__err(ctx, m->val[KF_LISTEN], "kafka.advertised_host",
                        "required when kafka.listen is a wildcard address (%s)", k->listen.host);
    }
    if (bg_cfg__get_int(ctx, m->val[KF_BASE], "kafka.broker_port_base", 1, 65535, &base) > 0)
        k->broker_port_base = (uint16_t)base;
    else if (bg_cfg__is_null(m->val[KF_BASE]) && k->listen.host) {
        if (k->listen.port == 0 || k->listen.port == 65535)
            bg_cfg__err(ctx, m->val[KF_LISTEN], "kafka.broker_port_base",
                        "required when kafka.listen's port is %u", k->listen.port);
        k->broker_port_base = (uint16_t)(k->listen.port + 1);
    }
}

void bg_cfg__kafka(bg_cfg_ctx_t *ctx, struct fy_node *n)
{
    bg_config_kafka_t *k = &ctx->cfg->kafka;
    bg_cfg_map_t m;
    char **mechs = NULL;
    size_t nmechs = 0;
    k->sasl_mechanisms = BG_SASL_MECH_OAUTHBEARER | BG_SASL_MECH_PLAIN;
    bg_cfg__kafka_limits(ctx, &(bg_cfg_map_t){0});
    if (bg_cfg__map(ctx, n, "kafka", bg_cfg__kafka_keys, &m) <= 0)
        return;
    k->enabled = 1;
    bg_cfg__require(ctx, &m, bg_cfg__kafka_keys, KF_LISTEN, "kafka");
    bg_cfg__require(ctx, &m, bg_cfg__kafka_keys, KF_UP, "kafka");
    bg_cfg__get_addr(ctx, m.val[KF_LISTEN], "kafka.listen", 0, &k->listen);
    bg_cfg__kafka_ports(ctx, &m);
    if (bg_cfg__get_strlist(ctx, m.val[KF_MECHS], "kafka.sasl_mechanisms", 1, bg_cfg__check_mech,
                            &mechs, &nmechs) > 0) {
        k->sasl_mechanisms = 0;
        for (size_t i = 0; i < nmechs; i++)
            k->sasl_mechanisms |= strcmp(mechs[i], "PLAIN") == 0 ? BG_SASL_MECH_PLAIN
                                                                 : BG_SASL_MECH_OAUTHBEARER;
    }
    bg_cfg__listen_tls(ctx, m.key[KF_TLS], m.val[KF_TLS], "kafka.tls", &k->tls);
    if (m.val[KF_UP])
        bg_cfg__kafka_upstream(ctx, m.val[KF_UP]);
    bg_cfg__kafka_limits(ctx, &m);
}

/* ---- amqp ---- */

static const char *const bg_cfg__amqp_keys[] = {"listen",          "tls",            "upstream",
                                                "max_frame_bytes", "max_body_bytes", "heartbeat",
                                                NULL};
static const char *const bg_cfg__aup_keys[] = {"host", "vhost", "username", "password", "tls",
                                               NULL};

static void bg_cfg__amqp_upstream(bg_cfg_ctx_t *ctx, struct fy_node *n)
{
    const char *path = "amqp.upstream";
    bg_config_amqp_t *a = &ctx->cfg->amqp;
    bg_cfg_map_t m;
    a->upstream.vhost = bg_cfg__strdup(ctx, "/");
    if (bg_cfg__item_map(ctx, n, path, bg_cfg__aup_keys, &m) <= 0)
        return;
    bg_cfg__require(ctx, &m, bg_cfg__aup_keys, 0, path);
    bg_cfg__require(ctx, &m, bg_cfg__aup_keys, 2, path);
    bg_cfg__require(ctx, &m, bg_cfg__aup_keys, 3, path);
    bg_cfg__get_addr(ctx, m.val[0], "amqp.upstream.host", 1, &a->upstream.host);
    bg_cfg__get_str(ctx, m.val[1], "amqp.upstream.vhost", &a->upstream.vhost);
    bg_cfg__get_str(ctx, m.val[2], "amqp.upstream.username", &a->upstream.username);
    bg_cfg__get_str(ctx, m.val[3], "amqp.upstream.password", &a->upstream.password);
    bg_cfg__upstream_tls(ctx, m.key[4], m.val[4], "amqp.upstream.tls", &a->upstream.tls);
}

/* heartbeat: whole seconds, as an integer or a duration ("60" or "60s"). */
static void bg_cfg__heartbeat(bg_cfg_ctx_t *ctx, struct fy_node *n, int *out)
{
    const char *v, *shown;
    int64_t ms;
    if (bg_cfg__scalar(ctx, n, "amqp.heartbeat", &v, &shown) <= 0)
        return;
    size_t digits = strspn(v, "0123456789");
    if (digits > 0 && digits < 7 && v[digits] == '\0')
        ms = (int64_t)atoi(v) * 1000;
    else
        ms = bg_config_parse_duration(v);
    if (ms < 0 || ms % 1000 != 0 || ms / 1000 > 65535) {
        bg_cfg__err(ctx, n, "amqp.heartbeat",
                    "bad heartbeat '%.80s' (expected whole seconds 0..65535, e.g. 60 or 60s)",
                    shown);
        return;
    }
    *out = (int)(ms / 1000);
}

void bg_cfg__amqp(bg_cfg_ctx_t *ctx, struct fy_node *n)
{
    bg_config_amqp_t *a = &ctx->cfg->amqp;
    bg_cfg_map_t m;
    uint64_t v;
    a->max_frame_bytes = 128 * BG_CFG_KIB;
    a->max_body_bytes = 128 * BG_CFG_MIB;
    a->heartbeat_s = 60;
    if (bg_cfg__map(ctx, n, "amqp", bg_cfg__amqp_keys, &m) <= 0)
        return;
    a->enabled = 1;
    bg_cfg__require(ctx, &m, bg_cfg__amqp_keys, 0, "amqp");
    bg_cfg__require(ctx, &m, bg_cfg__amqp_keys, 2, "amqp");
    bg_cfg__get_addr(ctx, m.val[0], "amqp.listen", 0, &a->listen);
    bg_cfg__listen_tls(ctx, m.key[1], m.val[1], "amqp.tls", &a->tls);
    if (m.val[2])
        bg_cfg__amqp_upstream(ctx, m.val[2]);
    /* 4096 is the AMQP minimum frame_max every peer must accept. */
    if (bg_cfg__get_size(ctx, m.val[3], "amqp.max_frame_bytes", 4096, INT32_MAX, &v) > 0)
        a->max_frame_bytes = (uint32_t)v;
    if (bg_cfg__get_size(ctx, m.val[4], "amqp.max_body_bytes", 1, UINT32_MAX, &v) > 0)
        a->max_body_bytes = (uint32_t)v;
    bg_cfg__heartbeat(ctx, m.val[5], &a->heartbeat_s);
}

/* ---- http ---- */

static const char *const bg_cfg__http_keys[] = {"listen", "routes", NULL};
static const char *const bg_cfg__route_keys[] = {"name", "prefix", "upstream", "headers", NULL};

static int bg_cfg__header_name_ok(const char *s, size_t len)
{
    /* RFC 9110 token characters. */
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!strchr("!#$%&'*+-.^_`|~", s[i]) && !(s[i] >= '0' && s[i] <= '9') &&
            !((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'z'))
            return 0;
    return 1;
}

/* A field value is VCHAR, obs-text, SP and HTAB (RFC 9110 5.5): a CR or LF
 * would end the header and start another one (header injection), other
 * controls are refused by servers or read differently by each. */
static int bg_cfg__header_value_ok(const char *s)
{
    for (; *s; s++)
        if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
            return 0;
    return 1;
}

static void bg_cfg__headers(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path,
                            bg_config_route_t *rt)
{
    if (bg_cfg__is_null(n))
        return;
    if (!fy_node_is_mapping(n)) {
        bg_cfg__err(ctx, n, path, "expected a mapping, got %s", bg_cfg__kind(n));
        return;
    }
    int count = fy_node_mapping_item_count(n);
    if (count <= 0 || !(rt->headers = bg_cfg__alloc(ctx, (size_t)count * sizeof(*rt->headers))))
        return;
    bg_cfg_names_t seen; /* the headers kept so far, by name */
    bg_cfg__names_init(ctx, &seen, (size_t)count, 1);
    void *it = NULL;
    struct fy_node_pair *pr;
    while ((pr = fy_node_mapping_iterate(n, &it))) {
        struct fy_node *k = fy_node_pair_key(pr);
        char p[BG_CFG_PATH_MAX];
        const char *name;
        size_t len;
        const char *raw = k && fy_node_is_scalar(k) ? fy_node_get_scalar(k, &len) : NULL;
        if (!raw || fy_node_is_alias(k) || !bg_cfg__header_name_ok(raw, len)) {
            bg_cfg__err(ctx, k ? k : n, path, "bad header name (expected an HTTP token)");
            continue;
        }
        name = bg_cfg__strndup(ctx, raw, len);
        bg_cfg__join(p, path, name ? name : "?");
        for (size_t j = bg_cfg__names_first(&seen, name); j != SIZE_MAX && !bg_cfg__gave_up(ctx);
             j = bg_cfg__names_next(&seen, j))
            bg_cfg__err(ctx, k, p, "duplicate header '%s'", name);
        bg_config_header_t *h = &rt->headers[rt->nheaders];
        struct fy_node *v = fy_node_pair_value(pr);
        /* Non-empty, like every other string (an empty ${env:} too); a
         * YAML null (nothing after the colon, ~) is no value either: it is
         * refused, never a header silently left out. */
        if (name && bg_cfg__is_null(v)) {
            bg_cfg__err(ctx, v ? v : k, p, "expected a non-empty string, got null");
            continue;
        }
        if (!name || bg_cfg__get_str(ctx, v, p, &h->value) <= 0)
            continue;
        /* Checked after ${file:}/${env:}: a secret file may hold a line
         * break too. The value is not quoted, it may be that secret. */
        if (!bg_cfg__header_value_ok(h->value)) {
            bg_cfg__err(ctx, v, p,
                        "control character in the header value (CR, LF and other bytes below "
                        "0x20 except tab, and DEL, are not allowed)");
            continue;
        }
        h->name = (char *)name;
        bg_cfg__names_add(&seen, name, rt->nheaders++);
    }
    bg_cfg__names_free(&seen);
}

static void bg_cfg__route(bg_cfg_ctx_t *ctx, struct fy_node *n, const char *path,
                          bg_config_route_t *rt)
{
    bg_cfg_map_t m;
    char p[BG_CFG_PATH_MAX];
    if (bg_cfg__item_map(ctx, n, path, bg_cfg__route_keys, &m) <= 0)
        return;
    for (size_t i = 0; i < 3; i++)
        bg_cfg__require(ctx, &m, bg_cfg__route_keys, i, path);
    bg_cfg__join(p, path, "name");
    bg_cfg__get_str(ctx, m.val[0], p, &rt->name);
    bg_cfg__join(p, path, "prefix");
    if (bg_cfg__get_str(ctx, m.val[1], p, &rt->prefix) > 0 && rt->prefix[0] != '/')
        bg_cfg__err(ctx, m.val[1], p, "must start with '/'");
    bg_cfg__join(p, path, "upstream");
    bg_cfg__get_url(ctx, m.val[2], p, &rt->upstream);
    bg_cfg__join(p, path, "headers");
    bg_cfg__headers(ctx, m.val[3], p, rt);
}

void bg_cfg__http(bg_cfg_ctx_t *ctx, struct fy_node *n)
{
    bg_config_http_t *h = &ctx->cfg->http;
    bg_cfg_map_t m;
    size_t count;
    if (bg_cfg__map(ctx, n, "http", bg_cfg__http_keys, &m) <= 0)
        return;
    h->enabled = 1;
    bg_cfg__require(ctx, &m, bg_cfg__http_keys, 0, "http");
    bg_cfg__get_addr(ctx, m.val[0], "http.listen", 0, &h->listen);
    if (bg_cfg__require(ctx, &m, bg_cfg__http_keys, 1, "http") < 0 ||
        bg_cfg__seq(ctx, m.val[1], "http.routes", &count) <= 0)
        return;
    if (count == 0 || !(h->routes = bg_cfg__alloc(ctx, count * sizeof(*h->routes)))) {
        if (count == 0)
            bg_cfg__err(ctx, m.val[1], "http.routes", "must not be empty");
        return;
    }
    bg_cfg_names_t seen;
    bg_cfg__names_init(ctx, &seen, count, 0);
    void *it = NULL;
    struct fy_node *item;
    for (size_t i = 0; i < count && (item = fy_node_sequence_iterate(m.val[1], &it)); i++) {
        char p[BG_CFG_PATH_MAX];
        const char *name;
        bg_cfg__index(p, "http.routes", i);
        bg_cfg__route(ctx, item, p, &h->routes[i]);
        name = h->routes[i].name;
        for (size_t j = bg_cfg__names_add(&seen, name, i); j < i && !bg_cfg__gave_up(ctx);
             j = bg_cfg__names_next(&seen, j))
            bg_cfg__err(ctx, item, p, "duplicate route name '%s' (also routes[%zu])", name, j);
    }
    bg_cfg__names_free(&seen);
    h->nroutes = count;
}

/* ---- approvals, audit, admin ---- */

static const char *const bg_cfg__appr_keys[] = {"hold_for", "grant_ttl", "store", "webhook",
                                                NULL};

void bg_cfg__approvals(bg_cfg_ctx_t *ctx, struct fy_node *n)
{
    bg_config_approvals_t *a = &ctx->cfg->approvals;
    bg_cfg_map_t m;
    a->hold_for_ms = 20000;
    a->grant_ttl_ms = 15 * 60000;
    if (bg_cfg__map(ctx, n, "approvals", bg_cfg__appr_keys, &m) <= 0)
        return;
    a->enabled = 1;
    if (bg_cfg__get_duration(ctx, m.val[0], "approvals.hold_for", &a->hold_for_ms) > 0 &&
        a->hold_for_ms == 0)
        bg_cfg__err(ctx, m.val[0], "approvals.hold_for", "must be greater than 0");
    bg_cfg__get_duration(ctx, m.val[1], "approvals.grant_ttl", &a->grant_ttl_ms);
    bg_cfg__get_file(ctx, m.val[2], "approvals.store", &a->store);
    bg_cfg__get_url(ctx, m.val[3], "approvals.webhook", &a->webhook);
}

static const char *const bg_cfg__audit_keys[] = {
    "kafka_topic", "file", "spool_dir", "on_failure", "format", "queue_size", "spool_max_bytes",
    "avro_schema_id", "enabled", NULL,
};

static int bg_cfg__topic_ok(const char *t)
{
    size_t len = strlen(t);
    return len > 0 && len <= 249 && strcmp(t, ".") && strcmp(t, "..") &&
           strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == len;
}

/* key and n are the audit key and its value at the root (both NULL when
 * absent). An absent section is the cross-section rule's business
 * (bg_cfg__cross): it is an error only with a listener. */
void bg_cfg__audit(bg_cfg_ctx_t *ctx, struct fy_node *key, struct fy_node *n)
{
    static const char *const fails[] = {"block", "drop", NULL}, *const fmts[] = {"json", "avro",
                                                                                 NULL};
    bg_config_audit_t *a = &ctx->cfg->audit;
    bg_cfg_map_t m;
    int e = 0;
    int64_t q;
    a->queue_size = 65536;
    a->spool_max_bytes = BG_CFG_GIB;
    /* Like an empty tls: an audit key with nothing under it (its lines
     * commented out) is not "not set", which would mean no record of any
     * decision. */
    if (key && bg_cfg__is_null(n)) {
        bg_cfg__err(ctx, key, "audit",
                    "empty: set audit.file or audit.kafka_topic, or audit.enabled: false to run "
                    "without audit");
        return;
    }
    if (bg_cfg__map(ctx, n, "audit", bg_cfg__audit_keys, &m) <= 0)
        return;
    int on = 1;
    bg_cfg__get_bool(ctx, m.val[8], "audit.enabled", &on);
    a->enabled = on;
    a->disabled = !on;
    if (bg_cfg__get_str(ctx, m.val[0], "audit.kafka_topic", &a->kafka_topic) > 0 &&
        !bg_cfg__topic_ok(a->kafka_topic))
        bg_cfg__err(ctx, m.val[0], "audit.kafka_topic",
                    "bad topic name (1-249 characters of [a-zA-Z0-9._-])");
    bg_cfg__get_file(ctx, m.val[1], "audit.file", &a->file);
    bg_cfg__get_file(ctx, m.val[2], "audit.spool_dir", &a->spool_dir);
    if (bg_cfg__get_enum(ctx, m.val[3], "audit.on_failure", fails, &e) > 0)
        a->on_failure = (bg_audit_on_failure_t)e;
    if (bg_cfg__get_enum(ctx, m.val[4], "audit.format", fmts, &e) > 0)
        a->format = (bg_audit_format_t)e;
    if (bg_cfg__get_int(ctx, m.val[5], "audit.queue_size", 1, 1 << 24, &q) > 0)
        a->queue_size = (uint32_t)q;
    bg_cfg__get_size(ctx, m.val[6], "audit.spool_max_bytes", BG_CFG_MIB, 1ull << 50,
                     &a->spool_max_bytes);
    if (bg_cfg__get_int(ctx, m.val[7], "audit.avro_schema_id", 1, INT32_MAX, &q) > 0) {
        a->avro_schema_id = (int32_t)q;
        if (a->format != BG_AUDIT_AVRO)
            bg_cfg__err(ctx, m.val[7], "audit.avro_schema_id", "needs format: avro");
    }
    if (!on) { /* the other keys are checked all the same, and ignored */
        for (int i = 0; i < 3; i++)
            if (!bg_cfg__is_null(m.val[i])) {
                bg_cfg__err(ctx, m.val[8], "audit.enabled",
                            "false contradicts audit.%s: remove the sinks to run without "
                            "audit, or remove enabled: false to record every decision",
                            bg_cfg__audit_keys[i]);
                break;
            }
    } else if (bg_cfg__is_null(m.val[0]) && bg_cfg__is_null(m.val[1])) {
        bg_cfg__err(ctx, n, "audit",
                    "needs a sink: set kafka_topic and/or file, or enabled: false to run without "
                    "audit");
    }
}

static const char *const bg_cfg__admin_keys[] = {"listen", NULL};

void bg_cfg__admin(bg_cfg_ctx_t *ctx, struct fy_node *n)
{
    bg_cfg_map_t m;
    if (bg_cfg__map(ctx, n, "admin", bg_cfg__admin_keys, &m) <= 0)
        return;
    ctx->cfg->admin.enabled = 1;
    bg_cfg__require(ctx, &m, bg_cfg__admin_keys, 0, "admin");
    bg_cfg__get_addr(ctx, m.val[0], "admin.listen", 0, &ctx->cfg->admin.listen);
}

static const char *const bg_cfg__limits_keys[] = {
    "max_connections", "max_unauthenticated", "max_unauthenticated_per_ip", "fd_reserve", NULL,
};

/* Defaults apply with the section absent too: every listener is limited. */
void bg_cfg__limits(bg_cfg_ctx_t *ctx, struct fy_node *n)
{
    bg_config_limits_t *l = &ctx->cfg->limits;
    bg_cfg_map_t m;
    int64_t v;
    l->max_connections = 0;
    l->max_unauthenticated = 1024;
    l->max_unauthenticated_per_ip = 64;
    l->fd_reserve = 128;
    if (bg_cfg__map(ctx, n, "limits", bg_cfg__limits_keys, &m) <= 0)
        return;
    if (bg_cfg__get_int(ctx, m.val[0], "limits.max_connections", 1, 10000000, &v) > 0)
        l->max_connections = (uint64_t)v;
    if (bg_cfg__get_int(ctx, m.val[1], "limits.max_unauthenticated", 1, 10000000, &v) > 0)
        l->max_unauthenticated = (uint64_t)v;
    if (bg_cfg__get_int(ctx, m.val[2], "limits.max_unauthenticated_per_ip", 0, 10000000, &v) > 0)
        l->max_unauthenticated_per_ip = (uint64_t)v;
    if (bg_cfg__get_int(ctx, m.val[3], "limits.fd_reserve", 0, 1000000, &v) > 0)
        l->fd_reserve = (uint64_t)v;
}
