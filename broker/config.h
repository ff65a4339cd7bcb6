/* busgate configuration: YAML (libfyaml) -> bg_config_t.
 *
 * Keys are exactly those of the design's configuration sketch; unknown keys,
 * wrong types, bad durations/addresses, duplicate rule names, unknown
 * verbs/effects and malformed resource patterns are errors reported as
 * "FILE:LINE:COL: key.path: message". ${file:PATH} and ${env:NAME} are
 * resolved inside scalar values. A section that is absent leaves its
 * `enabled` flag 0 (its listener off). */
#ifndef BG_CONFIG_H
#define BG_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "policy/policy.h"

/* host:port, "[::1]:port" for IPv6. host is owned. */
typedef struct bg_addr_s {
    char *host;
    uint16_t port;
} bg_addr_t;

typedef struct bg_config_tls_s {
    int enabled;
    char *cert, *key, *client_ca, *ca; /* paths; NULL when absent */
    int verify;                        /* upstream: verify the server (default 1) */
} bg_config_tls_t;

typedef struct bg_config_issuer_s {
    char *issuer;
    char **audiences;
    size_t naudiences;
    char *jwks_file; /* exactly one of jwks_file / jwks_url */
    char *jwks_url;
    char *jwks_ca;           /* CA file (PEM) for an https jwks_url; NULL: the system's store */
    int64_t jwks_refresh_ms; /* jwks_refresh, default 5m */
    char *subject_claim;     /* default "sub" */
    char *groups_claim;      /* default "groups"; dotted path */
    /* Prepended to the principal's subject and to each of its groups, so
     * that policy subjects can tell issuers apart; default "" (never NULL
     * when loaded). At most BG_CONFIG_PREFIX_MAX bytes of UTF-8, no control
     * characters, no '*' or '?'. */
    char *subject_prefix;
    char *groups_prefix;
    int allow_hs256;         /* oct keys are honoured only when set */
} bg_config_issuer_t;

#define BG_CONFIG_PREFIX_MAX 128

typedef struct bg_config_identity_s {
    bg_config_issuer_t *issuers;
    size_t nissuers;
    int64_t clock_skew_ms; /* default 30s */
} bg_config_identity_t;

typedef enum {
    BG_SEC_PLAINTEXT = 0,
    BG_SEC_SASL_PLAINTEXT,
    BG_SEC_SSL,
    BG_SEC_SASL_SSL
} bg_security_t;

#define BG_SASL_MECH_OAUTHBEARER 1u
#define BG_SASL_MECH_PLAIN 2u

typedef struct bg_config_kafka_s {
    int enabled;
    bg_addr_t listen;
    char *advertised_host;
    uint16_t broker_port_base;
    unsigned sasl_mechanisms; /* BG_SASL_MECH_* bits; default both */
    bg_config_tls_t tls;
    struct {
        bg_addr_t *bootstrap;
        size_t nbootstrap;
        int embedded; /* >0: run librdkafka's mock cluster with this many brokers */
        bg_security_t security;
        char *sasl_mechanism; /* PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512 */
        char *sasl_username;
        char *sasl_password; /* secret: never logged */
        bg_config_tls_t tls;
    } upstream;
    /* limits */
    uint32_t max_frame_bytes;      /* default 100 MiB */
    uint32_t preauth_max_frame_bytes; /* default 64 KiB */
    uint32_t max_response_bytes;   /* upstream response frames, default 256 MiB */
    uint32_t max_inflight;         /* per connection, default 100 */
    int64_t idle_timeout_ms;       /* default 10m */
    int64_t auth_timeout_ms;       /* from accept to SASL done, default 10s; 0 = none */
} bg_config_kafka_t;

typedef struct bg_config_amqp_s {
    int enabled;
    bg_addr_t listen;
    bg_config_tls_t tls;
    struct {
        bg_addr_t host;
        char *vhost;
        char *username;
        char *password; /* secret */
        bg_config_tls_t tls;
    } upstream;
    uint32_t max_frame_bytes; /* default 128 KiB */
    uint32_t max_body_bytes;  /* default 128 MiB */
    int heartbeat_s;          /* default 60 */
} bg_config_amqp_t;

typedef struct bg_config_header_s {
    char *name;
    char *value; /* may be a secret */
} bg_config_header_t;

typedef struct bg_config_route_s {
    char *name;
    char *prefix;
    char *upstream;
    bg_config_header_t *headers;
    size_t nheaders;
} bg_config_route_t;

typedef struct bg_config_http_s {
    int enabled;
    bg_addr_t listen;
    bg_config_route_t *routes;
    size_t nroutes;
} bg_config_http_t;

typedef struct bg_config_approvals_s {
    int enabled;
    int64_t hold_for_ms;  /* default 20s */
    int64_t grant_ttl_ms; /* default 15m */
    char *store;
    char *webhook;
} bg_config_approvals_t;

typedef enum { BG_AUDIT_BLOCK = 0, BG_AUDIT_DROP } bg_audit_on_failure_t;
typedef enum { BG_AUDIT_JSON = 0, BG_AUDIT_AVRO } bg_audit_format_t;

typedef struct bg_config_audit_s {
    int enabled;  /* a sink is configured: the audit pipeline runs */
    int disabled; /* audit.enabled: false, the explicit opt-out (enabled is 0) */
    char *kafka_topic;
    char *file;
    char *spool_dir;
    bg_audit_on_failure_t on_failure;
    bg_audit_format_t format;
    uint32_t queue_size; /* default 65536 events */
    uint64_t spool_max_bytes; /* default 1 GiB */
    int32_t avro_schema_id;   /* >0: Avro in the Confluent wire format with this schema id */
} bg_config_audit_t;

typedef struct bg_config_admin_s {
    int enabled;
    bg_addr_t listen;
} bg_config_admin_t;

/* Policy as parsed: the spec points into the arrays below (owned here). */
typedef struct bg_config_policy_s {
    int enabled;
    bg_policy_spec_t spec;
    bg_policy_rule_spec_t *rules;
    bg_policy_mask_spec_t *masks;
} bg_config_policy_t;

/* Client connection limits (see broker/limits.h). */
typedef struct bg_config_limits_s {
    uint64_t max_connections;            /* 0 (default): derived from the open file limit */
    uint64_t max_unauthenticated;        /* default 1024 */
    uint64_t max_unauthenticated_per_ip; /* default 64; 0 = no per-address cap */
    uint64_t fd_reserve;                 /* default 128 */
} bg_config_limits_t;

#define BG_CONFIG_RESTART_SECTIONS 9

typedef struct bg_config_s {
    char *path;        /* the file it was read from */
    int workers;       /* 0 = number of cores */
    char *log_level;   /* default "info" */
    char *instance;    /* instance name for audit; default hostname */
    bg_config_identity_t identity;
    bg_config_kafka_t kafka;
    bg_config_amqp_t amqp;
    bg_config_http_t http;
    bg_config_policy_t policy;
    bg_config_approvals_t approvals;
    bg_config_audit_t audit;
    bg_config_admin_t admin;
    bg_config_limits_t limits;
    /* A hash of each section that only a restart applies, as written
     * (0 when absent), so a reload can say which of them it left alone;
     * named by bg_config_restart_section(i). */
    uint64_t restart_hash[BG_CONFIG_RESTART_SECTIONS];
    void *arena; /* private: owns every string and array above */
} bg_config_t;

/* The name of restart-only section i (< BG_CONFIG_RESTART_SECTIONS):
 * workers, kafka, amqp, http, approvals, audit, admin, instance, limits. Everything
 * else (identity, policy, log_level) applies on reload. */
const char *bg_config_restart_section(size_t i);

/* Error list filled by the loader: each entry "FILE:LINE:COL: path: message". */
typedef struct bg_config_errors_s {
    char **msgs;
    size_t n;
} bg_config_errors_t;

/* Loads and validates path. Returns a config, or NULL with every error
 * appended to errs (caller frees errs with bg_config_errors_clear). Does not
 * open sockets or read JWKS/TLS files beyond checking ${file:} references. */
bg_config_t *bg_config_load(const char *path, bg_config_errors_t *errs);
/* Same, from a memory buffer; name is used in error messages. */
bg_config_t *bg_config_load_string(const char *name, const char *yaml, size_t len,
                                   bg_config_errors_t *errs);
/* Frees c and all it owns (NULL: nothing), zeroing that memory first: it
 * holds the values ${file:}/${env:} expanded to (passwords, tokens). */
void bg_config_free(bg_config_t *c);
/* The policy to compile: the configured one, or deny-everything when the
 * file has no policy section. Borrowed from c (or static). */
const bg_policy_spec_t *bg_config_policy_spec(const bg_config_t *c);
void bg_config_errors_clear(bg_config_errors_t *errs);
/* The sections of c this build does not carry out, as messages ("http: ...")
 * that `busgate run` logs and `busgate check` prints as warnings; returns
 * how many (at most 3) were put in msgs. */
size_t bg_config_unbuilt(const bg_config_t *c, const char *msgs[3]);
/* The warning `busgate run` logs at start-up and `busgate check` prints when
 * c turns audit off (audit.enabled: false); NULL when it does not. Static. */
const char *bg_config_audit_off(const bg_config_t *c);

/* 1 when the host name (hl bytes at h) is loopback: localhost, a dotted
 * 127.0.0.0/8 address, ::1 (with or without brackets). */
int bg_config_host_is_loopback(const char *h, size_t hl);
/* Parses "30s", "250ms", "5m", "1h", "2d" into milliseconds; -1 on error. */
int64_t bg_config_parse_duration(const char *s);
/* The longest duration a configuration key accepts (365d). Code adding a
 * configured duration to a clock reading relies on it; nothing needs more,
 * and a larger value is more likely a typo than a wish. */
#define BG_CONFIG_MAX_DURATION_MS (365LL * 86400 * 1000)
/* Parses "host:port" / "[v6]:port" into out (host malloc'd); 0 ok, -1 error. */
int bg_config_parse_addr(const char *s, bg_addr_t *out, const char **why);

#endif
