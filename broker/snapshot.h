/* Immutable, reference-counted snapshot of what a request is decided by:
 * the configuration, its compiled policy and the identity verifier.
 *
 * The runtime swaps the current snapshot on reload. Connections hold a
 * reference and, before each request, compare their snapshot's generation
 * with bg_snapshot_current_generation() (one relaxed atomic load); when it
 * changed they take the new one. Reload therefore never drops a connection
 * and a new policy applies from the next request on. */
#ifndef BG_SNAPSHOT_H
#define BG_SNAPSHOT_H

#include <stdatomic.h>
#include <stdint.h>

#include "broker/config.h"
#include "broker/identity.h"
#include "policy/policy.h"

typedef struct bg_snapshot_s {
    _Atomic int refs;
    uint64_t generation;
    bg_config_t *config;
    bg_policy_t *policy; /* never NULL: an empty default-deny policy when none is configured */
    bg_identity_t *identity;
} bg_snapshot_t;

/* Builds a snapshot that owns config (taken over even on failure). Returns
 * NULL with err filled when the policy does not compile or the identity
 * verifier cannot be built (e.g. unreadable JWKS file). */
bg_snapshot_t *bg_snapshot_build(bg_config_t *config, char *err, size_t errlen);

/* Installs s as the current snapshot (takes the caller's reference) and
 * releases the previous one. Main thread only. */
void bg_snapshot_install(bg_snapshot_t *s);

/* Returns the current snapshot with a new reference (caller releases with
 * bg_snapshot_release), or NULL before the first install. Any thread. */
bg_snapshot_t *bg_snapshot_acquire(void);
void bg_snapshot_release(bg_snapshot_t *s);

/* Generation of the current snapshot; 0 before the first install. */
uint64_t bg_snapshot_current_generation(void);

/* Replaces *held with the current snapshot when a newer one is installed.
 * Cheap when nothing changed. Returns 1 when it changed. */
int bg_snapshot_refresh(bg_snapshot_t **held);

/* Drops the current snapshot (at exit). */
void bg_snapshot_shutdown(void);

#endif
