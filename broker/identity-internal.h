/* busgate identity internals shared by broker/identity*.c, tests and the fuzz
 * target. Not part of the module's public face (broker/identity.h). */
#ifndef BG_IDENTITY_INTERNAL_H
#define BG_IDENTITY_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "broker/config.h"
#include "broker/identity.h"
#include "broker/jwks.h"

/* Default minimum time between two fetches of one issuer's JWKS triggered
 * by unknown kids (also counts the periodic fetch). */
#define BG_ID_KID_REFRESH_INTERVAL_MS 10000
/* A failed fetch is retried after min(jwks_refresh, this). */
#define BG_ID_RETRY_MS 10000
#define BG_ID_DEFAULT_REFRESH_MS (5 * 60 * 1000)
#define BG_ID_FETCH_TIMEOUT_MS 10000

/* An immutable key set; verifiers hold a reference while they use it, the
 * refresh thread swaps the issuer's pointer and drops its own reference. */
typedef struct bg_id_keyset_s {
    atomic_int refs;
    bg_jwks_t jwks;
} bg_id_keyset_t;

typedef struct bg_id_issuer_s {
    /* copied from the config, read-only after bg_identity_new */
    char *issuer;
    char **audiences;
    size_t naudiences;
    char *subject_claim;
    char *groups_claim;
    char *subject_prefix; /* "" for none, never NULL */
    char *groups_prefix;
    int allow_hs256;
    char *jwks_url; /* NULL for file issuers */
    char *jwks_ca;  /* CA file for jwks_url's TLS; NULL: the system's store */
    int64_t refresh_ms;
    /* guarded by bg_identity_t.mu */
    bg_id_keyset_t *keys;      /* never NULL; empty until the first fetch */
    int64_t last_fetch_ms;     /* monotonic start of the last fetch, 0 = never */
    int64_t next_fetch_ms;     /* monotonic time of the next periodic fetch */
    int64_t wanted_at_ms;      /* an unknown kid asked too soon: fetch then; 0 = none */
    int attempted;             /* one fetch finished (success or not) */
    int refresh_wanted;        /* an unknown kid asked for a fetch now */
    int fetching;              /* a fetch is running now */
    unsigned long fetches;     /* fetch attempts finished; for tests */
} bg_id_issuer_t;

struct bg_identity_s {
    bg_id_issuer_t *issuers;
    size_t nissuers;
    size_t next_due; /* where the refresh thread's next search for a due issuer starts (mu) */
    int64_t clock_skew_ms;
    pthread_mutex_t mu;
    pthread_cond_t wake;  /* refresh thread: a fetch is wanted, or stop */
    pthread_cond_t ready; /* wait_ready: a fetch finished */
    pthread_t thread;
    int has_thread;
    atomic_int stop;
    int64_t kid_refresh_interval_ms; /* guarded by mu */
};

/* Builds a verifier whose every issuer uses the key set parsed from the JWKS
 * document jwks (jwks_file/jwks_url in cfg are ignored, no thread is
 * started). For the fuzz target and tests. NULL with err on failure. */
bg_identity_t *bg_identity_new_from_jwks_string(const bg_config_identity_t *cfg, const char *jwks,
                                                size_t len, char *err, size_t errlen);

/* Sets the minimum interval between unknown-kid refreshes of one issuer
 * (default BG_ID_KID_REFRESH_INTERVAL_MS). For tests. Thread-safe. */
void bg_identity_set_kid_refresh_interval(bg_identity_t *id, int64_t ms);

/* Number of JWKS fetch attempts (successful or not) finished for issuer
 * index i; the key set is already swapped when it counts. For tests. */
unsigned long bg_identity_fetch_count(bg_identity_t *id, size_t i);

/* Returns the issuer's current key set with a reference held (never NULL);
 * release it with bg_identity__keys_release. Thread-safe. */
bg_id_keyset_t *bg_identity__keys_acquire(bg_identity_t *id, bg_id_issuer_t *iss);
void bg_identity__keys_release(bg_id_keyset_t *ks);

/* Asks the refresh thread to fetch iss's JWKS now, unless the issuer has no
 * URL or was fetched less than kid_refresh_interval_ms ago. Never blocks on
 * the network. Thread-safe. */
void bg_identity__request_refresh(bg_identity_t *id, bg_id_issuer_t *iss);

#endif
