#include "broker/snapshot.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static pthread_mutex_t bg_snapshot__mu = PTHREAD_MUTEX_INITIALIZER;
static bg_snapshot_t *bg_snapshot__cur;
static _Atomic uint64_t bg_snapshot__gen;
static _Atomic uint64_t bg_snapshot__next_gen = 1;

static void bg_snapshot__free(bg_snapshot_t *s)
{
    if (s->identity)
        bg_identity_free(s->identity);
    if (s->policy)
        bg_policy_free(s->policy);
    bg_config_free(s->config);
    free(s);
}

bg_snapshot_t *bg_snapshot_build(bg_config_t *config, char *err, size_t errlen)
{
    bg_snapshot_t *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        bg_config_free(config);
        return NULL;
    }
    s->config = config;
    s->policy = bg_policy_compile(bg_config_policy_spec(config), err, errlen);
    if (!s->policy)
        goto fail;
    /* A reload carries the running key sets of unchanged jwks_url issuers. */
    bg_snapshot_t *cur = bg_snapshot_acquire();
    s->identity = bg_identity_new_after(&config->identity, cur ? cur->identity : NULL, err, errlen);
    bg_snapshot_release(cur);
    if (!s->identity)
        goto fail;
    s->refs = 1;
    s->generation = atomic_fetch_add(&bg_snapshot__next_gen, 1);
    return s;
fail:
    bg_snapshot__free(s);
    return NULL;
}

void bg_snapshot_install(bg_snapshot_t *s)
{
    pthread_mutex_lock(&bg_snapshot__mu);
    bg_snapshot_t *old = bg_snapshot__cur;
    bg_snapshot__cur = s;
    atomic_store_explicit(&bg_snapshot__gen, s ? s->generation : 0, memory_order_release);
    pthread_mutex_unlock(&bg_snapshot__mu);
    if (old) {
        /* Its key refreshes stop now: the new identity fetches for both, and
         * whichever thread frees the old one need not wait for a download. */
        bg_identity_retire(old->identity);
        bg_snapshot_release(old);
    }
}

bg_snapshot_t *bg_snapshot_acquire(void)
{
    pthread_mutex_lock(&bg_snapshot__mu);
    bg_snapshot_t *s = bg_snapshot__cur;
    if (s)
        atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&bg_snapshot__mu);
    return s;
}

void bg_snapshot_release(bg_snapshot_t *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1)
        bg_snapshot__free(s);
}

uint64_t bg_snapshot_current_generation(void)
{
    return atomic_load_explicit(&bg_snapshot__gen, memory_order_acquire);
}

int bg_snapshot_refresh(bg_snapshot_t **held)
{
    uint64_t g = bg_snapshot_current_generation();
    if (*held && (*held)->generation == g)
        return 0;
    bg_snapshot_t *n = bg_snapshot_acquire();
    if (!n)
        return 0;
    bg_snapshot_release(*held);
    *held = n;
    return 1;
}

void bg_snapshot_shutdown(void) { bg_snapshot_install(NULL); }
