/* Identity key management: per-issuer key set snapshots, the JWKS refresh
 * thread, construction and teardown of bg_identity_t. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "broker/identity-internal.h"
#include "broker/log.h"
#include "broker/util_net.h"

/* t + ms for a clock reading t and ms >= 0, saturating at INT64_MAX: the
 * configured jwks_refresh is bounded (BG_CONFIG_MAX_DURATION_MS), but a
 * schedule must not wrap into the past (and fetch in a loop) whatever the
 * caller passed in. */
static int64_t bg_identity__after(int64_t t, int64_t ms)
{
    return t > 0 && ms > INT64_MAX - t ? INT64_MAX : t + ms;
}

static bg_id_keyset_t *bg_identity__keyset_new(void)
{
    bg_id_keyset_t *ks = calloc(1, sizeof(*ks));
    if (ks)
        atomic_init(&ks->refs, 1);
    return ks;
}

bg_id_keyset_t *bg_identity__keys_acquire(bg_identity_t *id, bg_id_issuer_t *iss)
{
    pthread_mutex_lock(&id->mu);
    bg_id_keyset_t *ks = iss->keys;
    atomic_fetch_add(&ks->refs, 1);
    pthread_mutex_unlock(&id->mu);
    return ks;
}

void bg_identity__keys_release(bg_id_keyset_t *ks)
{
    if (ks && atomic_fetch_sub(&ks->refs, 1) == 1) {
        bg_jwks_clear(&ks->jwks);
        free(ks);
    }
}

/* Installs a freshly parsed key set; called with id->mu held. */
static void bg_identity__swap_locked(bg_id_issuer_t *iss, bg_id_keyset_t *ks)
{
    bg_id_keyset_t *old = iss->keys;
    iss->keys = ks;
    bg_identity__keys_release(old);
}

void bg_identity__request_refresh(bg_identity_t *id, bg_id_issuer_t *iss)
{
    if (!iss->jwks_url)
        return;
    pthread_mutex_lock(&id->mu);
    int64_t now = bg_util_now_ms();
    if (!iss->refresh_wanted &&
        (iss->last_fetch_ms == 0 || now - iss->last_fetch_ms >= id->kid_refresh_interval_ms)) {
        iss->refresh_wanted = 1;
        pthread_cond_signal(&id->wake);
    } else if (!iss->refresh_wanted) {
        /* Too soon after the last fetch: fetch once the interval is over
         * rather than wait for the next periodic one (a key rotated in just
         * after a fetch would otherwise stay unknown for jwks_refresh). Kept
         * apart from next_fetch_ms, which a fetch running now (one that may
         * have started before the key was rotated in) resets when it ends. */
        int64_t at = bg_identity__after(iss->last_fetch_ms, id->kid_refresh_interval_ms);
        if (iss->wanted_at_ms == 0 || at < iss->wanted_at_ms) {
            iss->wanted_at_ms = at;
            pthread_cond_signal(&id->wake);
        }
    }
    pthread_mutex_unlock(&id->mu);
}

void bg_identity_set_kid_refresh_interval(bg_identity_t *id, int64_t ms)
{
    pthread_mutex_lock(&id->mu);
    id->kid_refresh_interval_ms = ms;
    pthread_mutex_unlock(&id->mu);
}

unsigned long bg_identity_fetch_count(bg_identity_t *id, size_t i)
{
    pthread_mutex_lock(&id->mu);
    unsigned long n = i < id->nissuers ? id->issuers[i].fetches : 0;
    pthread_mutex_unlock(&id->mu);
    return n;
}

/* Downloads and parses iss's JWKS without holding the lock; NULL on failure
 * (logged), so the previous key set stays in force. A fetched document
 * without a usable key is a (empty) key set. */
static bg_id_keyset_t *bg_identity__fetch(bg_identity_t *id, const bg_id_issuer_t *iss)
{
    char err[256] = "out of memory", *body = NULL;
    size_t len = 0;
    bg_id_keyset_t *ks = NULL;
    if (bg_jwks_fetch(iss->jwks_url, iss->jwks_ca, BG_ID_FETCH_TIMEOUT_MS, &id->stop, &body, &len,
                      err, sizeof(err)) != 0)
        goto fail;
    /* The stop flag is read between keys too: bg_identity_free, on whichever
     * thread drops the last configuration, waits for one key at most. */
    if (!(ks = bg_identity__keyset_new()) ||
        bg_jwks_parse(body, len,
                      (iss->allow_hs256 ? BG_JWKS_ALLOW_OCT : 0) | BG_JWKS_SKIP_BROKEN, &id->stop,
                      &ks->jwks, err, sizeof(err)) != 0)
        goto fail;
    free(body);
    /* The provider's document is authoritative even with no usable key:
     * keeping the old set would keep keys it has withdrawn in force. */
    if (ks->jwks.nkeys == 0)
        bg_log_warn("identity",
                    "JWKS for issuer %s has no usable key: its tokens are refused until a fetch "
                    "brings one",
                    iss->issuer);
    else
        bg_log_info("identity", "JWKS for issuer %s loaded: %zu keys", iss->issuer,
                    ks->jwks.nkeys);
    return ks;
fail:
    if (!atomic_load(&id->stop))
        bg_log_warn("identity", "JWKS for issuer %s: %s", iss->issuer, err);
    free(body);
    bg_identity__keys_release(ks);
    return NULL;
}

/* The URL issuer that should be fetched now, or NULL; *next gets the
 * earliest future due time. The search starts after the issuer fetched
 * last, so one that is always due (a slow provider, tokens with unknown
 * kids every 10 s) cannot keep the issuers after it from their turn.
 * Called with id->mu held. */
static bg_id_issuer_t *bg_identity__due_locked(bg_identity_t *id, int64_t now, int64_t *next)
{
    *next = now + BG_ID_DEFAULT_REFRESH_MS;
    for (size_t k = 0; k < id->nissuers; k++) {
        size_t i = (id->next_due + k) % id->nissuers;
        bg_id_issuer_t *iss = &id->issuers[i];
        if (!iss->jwks_url)
            continue;
        if (!iss->attempted || iss->refresh_wanted || now >= iss->next_fetch_ms ||
            (iss->wanted_at_ms && now >= iss->wanted_at_ms)) {
            id->next_due = i + 1;
            return iss;
        }
        if (iss->next_fetch_ms < *next)
            *next = iss->next_fetch_ms;
        if (iss->wanted_at_ms && iss->wanted_at_ms < *next)
            *next = iss->wanted_at_ms;
    }
    return NULL;
}

static void bg_identity__wait_until_locked(bg_identity_t *id, pthread_cond_t *cv, int64_t mono_ms)
{
    struct timespec ts = {.tv_sec = mono_ms / 1000, .tv_nsec = (mono_ms % 1000) * 1000000};
    pthread_cond_timedwait(cv, &id->mu, &ts);
}

static void *bg_identity__refresh_main(void *arg)
{
    bg_identity_t *id = arg;
    pthread_mutex_lock(&id->mu);
    while (!atomic_load(&id->stop)) {
        int64_t now = bg_util_now_ms(), next;
        bg_id_issuer_t *iss = bg_identity__due_locked(id, now, &next);
        if (!iss) {
            bg_identity__wait_until_locked(id, &id->wake, next);
            continue;
        }
        /* This fetch starts after every request made so far: it serves
         * them. One made while it runs stays for the next. */
        iss->refresh_wanted = 0;
        iss->wanted_at_ms = 0;
        iss->last_fetch_ms = now;
        iss->fetching = 1;
        pthread_mutex_unlock(&id->mu);
        bg_id_keyset_t *ks = bg_identity__fetch(id, iss);
        pthread_mutex_lock(&id->mu);
        iss->fetching = 0;
        int64_t retry = iss->refresh_ms < BG_ID_RETRY_MS ? iss->refresh_ms : BG_ID_RETRY_MS;
        int64_t wait = ks && ks->jwks.nkeys > 0 ? iss->refresh_ms : retry;
        iss->next_fetch_ms = bg_identity__after(bg_util_now_ms(), wait);
        if (ks)
            bg_identity__swap_locked(iss, ks);
        iss->attempted = 1;
        iss->fetches++;
        pthread_cond_broadcast(&id->ready);
    }
    pthread_mutex_unlock(&id->mu);
    return NULL;
}

int bg_identity_wait_ready(bg_identity_t *id, int timeout_ms)
{
    int64_t deadline = bg_util_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    int ok = 1;
    pthread_mutex_lock(&id->mu);
    for (;;) {
        size_t pending = 0;
        for (size_t i = 0; i < id->nissuers; i++)
            pending += id->issuers[i].jwks_url && !id->issuers[i].attempted;
        if (pending == 0 || bg_util_now_ms() >= deadline)
            break;
        bg_identity__wait_until_locked(id, &id->ready, deadline);
    }
    for (size_t i = 0; i < id->nissuers; i++)
        ok &= id->issuers[i].keys->jwks.nkeys > 0;
    pthread_mutex_unlock(&id->mu);
    return ok ? 0 : -1;
}

size_t bg_identity_fetches_pending(bg_identity_t *id)
{
    size_t pending = 0;
    pthread_mutex_lock(&id->mu);
    for (size_t i = 0; i < id->nissuers; i++)
        pending += id->issuers[i].jwks_url && !id->issuers[i].attempted;
    pthread_mutex_unlock(&id->mu);
    return pending;
}

const char *bg_identity_issuer_without_keys(bg_identity_t *id)
{
    const char *missing = NULL;
    pthread_mutex_lock(&id->mu);
    for (size_t i = 0; i < id->nissuers && !missing; i++)
        if (id->issuers[i].keys->jwks.nkeys == 0)
            missing = id->issuers[i].issuer;
    pthread_mutex_unlock(&id->mu);
    return missing;
}

/* ---- construction ---- */

static char *bg_identity__dup(const char *s, const char *dflt)
{
    return strdup(s && *s ? s : dflt);
}

/* Copies the config of one issuer; 0 or -1 (out of memory / invalid). */
static int bg_identity__issuer_init(bg_id_issuer_t *iss, const bg_config_issuer_t *c, char *err,
                                    size_t errlen)
{
    if (!c->issuer || !*c->issuer || c->naudiences == 0) {
        snprintf(err, errlen, "issuer %s: issuer and at least one audience are required",
                 c->issuer ? c->issuer : "(null)");
        return -1;
    }
    iss->issuer = strdup(c->issuer);
    iss->subject_claim = bg_identity__dup(c->subject_claim, "sub");
    iss->groups_claim = bg_identity__dup(c->groups_claim, "groups");
    iss->subject_prefix = strdup(c->subject_prefix ? c->subject_prefix : "");
    iss->groups_prefix = strdup(c->groups_prefix ? c->groups_prefix : "");
    iss->jwks_url = c->jwks_url && *c->jwks_url ? strdup(c->jwks_url) : NULL;
    iss->jwks_ca = c->jwks_ca && *c->jwks_ca ? strdup(c->jwks_ca) : NULL;
    iss->allow_hs256 = c->allow_hs256;
    iss->refresh_ms = c->jwks_refresh_ms > 0 ? c->jwks_refresh_ms : BG_ID_DEFAULT_REFRESH_MS;
    iss->audiences = calloc(c->naudiences, sizeof(char *));
    iss->keys = bg_identity__keyset_new();
    int ok = iss->issuer && iss->subject_claim && iss->groups_claim && iss->subject_prefix &&
             iss->groups_prefix && iss->audiences && iss->keys &&
             (iss->jwks_url || !c->jwks_url || !*c->jwks_url) &&
             (iss->jwks_ca || !c->jwks_ca || !*c->jwks_ca);
    for (size_t i = 0; ok && i < c->naudiences; i++) {
        ok = c->audiences[i] && (iss->audiences[i] = strdup(c->audiences[i])) != NULL;
        iss->naudiences += ok;
    }
    if (!ok)
        snprintf(err, errlen, "issuer %s: out of memory or empty audience", c->issuer);
    return ok ? 0 : -1;
}

static void bg_identity__issuer_clear(bg_id_issuer_t *iss)
{
    free(iss->issuer);
    for (size_t i = 0; i < iss->naudiences; i++)
        free(iss->audiences[i]);
    free(iss->audiences);
    free(iss->subject_claim);
    free(iss->groups_claim);
    free(iss->subject_prefix);
    free(iss->groups_prefix);
    free(iss->jwks_url);
    free(iss->jwks_ca);
    bg_identity__keys_release(iss->keys);
}

/* Allocates id with its issuers copied from cfg; no keys loaded yet. */
static bg_identity_t *bg_identity__alloc(const bg_config_identity_t *cfg, char *err, size_t errlen)
{
    bg_identity_t *id = calloc(1, sizeof(*id));
    pthread_condattr_t ca;
    if (!id || (cfg->nissuers && !(id->issuers = calloc(cfg->nissuers, sizeof(bg_id_issuer_t))))) {
        free(id);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&id->mu, NULL);
    /* Waits are computed on the monotonic clock: wall-clock jumps must not
     * stall or spin the refresh thread. */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&id->wake, &ca);
    pthread_cond_init(&id->ready, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&id->stop, 0);
    id->clock_skew_ms = cfg->clock_skew_ms > 0 ? cfg->clock_skew_ms : 0;
    id->kid_refresh_interval_ms = BG_ID_KID_REFRESH_INTERVAL_MS;
    for (size_t i = 0; i < cfg->nissuers; i++) {
        id->nissuers++;
        if (bg_identity__issuer_init(&id->issuers[i], &cfg->issuers[i], err, errlen) != 0)
            goto fail;
        /* iss selects the keys: two entries for one issuer would be ambiguous. */
        for (size_t j = 0; j < i; j++) {
            if (strcmp(id->issuers[j].issuer, id->issuers[i].issuer) == 0) {
                snprintf(err, errlen, "issuer %s: listed twice", id->issuers[i].issuer);
                goto fail;
            }
        }
    }
    return id;
fail:
    bg_identity_free(id);
    return NULL;
}

/* Loads issuer i's jwks_file; an error names the configuration key, so an
 * operator finds the line (busgate check prints it). */
static int bg_identity__load_file(bg_id_issuer_t *iss, size_t i, const char *path, char *err,
                                  size_t errlen)
{
    char why[256];
    if (bg_jwks_load_file(path, iss->allow_hs256, &iss->keys->jwks, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "identity.issuers[%zu].jwks_file (issuer %s): %s", i, iss->issuer,
                 why);
        return -1;
    }
    if (iss->keys->jwks.nkeys == 0) {
        snprintf(err, errlen, "identity.issuers[%zu].jwks_file (issuer %s): no usable key in %s",
                 i, iss->issuer, path);
        return -1;
    }
    return 0;
}

static pthread_once_t bg_identity__curl_once = PTHREAD_ONCE_INIT;
static void bg_identity__curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Gives iss the keys and fetch schedule of prev's issuer of the same name,
 * URL, jwks_ca and allow_hs256, if there is one (keys fetched under another
 * CA are fetched again). */
static void bg_identity__inherit(bg_id_issuer_t *iss, bg_identity_t *prev)
{
    if (!prev || !iss->jwks_url)
        return;
    pthread_mutex_lock(&prev->mu);
    for (size_t i = 0; i < prev->nissuers; i++) {
        bg_id_issuer_t *old = &prev->issuers[i];
        if (!old->jwks_url || strcmp(old->issuer, iss->issuer) != 0 ||
            strcmp(old->jwks_url, iss->jwks_url) != 0 || old->allow_hs256 != iss->allow_hs256 ||
            !old->jwks_ca != !iss->jwks_ca ||
            (old->jwks_ca && strcmp(old->jwks_ca, iss->jwks_ca) != 0))
            continue;
        atomic_fetch_add(&old->keys->refs, 1);
        bg_identity__keys_release(iss->keys);
        iss->keys = old->keys;
        iss->attempted = old->attempted;
        iss->last_fetch_ms = old->last_fetch_ms;
        /* The refresh interval may have changed: the next fetch is due by the
         * new one at the latest. A fetch still running in prev (perhaps for
         * an unknown kid) is abandoned when prev retires: it is due at once. */
        iss->next_fetch_ms = old->next_fetch_ms;
        int64_t due = bg_identity__after(old->last_fetch_ms, iss->refresh_ms);
        if (old->last_fetch_ms && iss->next_fetch_ms > due)
            iss->next_fetch_ms = due;
        iss->refresh_wanted = old->refresh_wanted || old->fetching;
        iss->wanted_at_ms = old->wanted_at_ms;
        break;
    }
    pthread_mutex_unlock(&prev->mu);
}

bg_identity_t *bg_identity_new(const struct bg_config_identity_s *cfg, char *err, size_t errlen)
{
    return bg_identity_new_after(cfg, NULL, err, errlen);
}

bg_identity_t *bg_identity_new_after(const struct bg_config_identity_s *cfg, bg_identity_t *prev,
                                     char *err, size_t errlen)
{
    bg_identity_t *id = bg_identity__alloc(cfg, err, errlen);
    int need_thread = 0;
    for (size_t i = 0; id && i < id->nissuers; i++) {
        const bg_config_issuer_t *c = &cfg->issuers[i];
        int has_file = c->jwks_file && *c->jwks_file, has_url = id->issuers[i].jwks_url != NULL;
        if (has_file == has_url) {
            snprintf(err, errlen, "issuer %s: exactly one of jwks_file, jwks_url is required",
                     c->issuer);
            goto fail;
        }
        if (has_file && bg_identity__load_file(&id->issuers[i], i, c->jwks_file, err, errlen) != 0)
            goto fail;
        if (has_url)
            bg_identity__inherit(&id->issuers[i], prev);
        need_thread |= has_url;
    }
    if (id && need_thread) {
        pthread_once(&bg_identity__curl_once, bg_identity__curl_init);
        if (pthread_create(&id->thread, NULL, bg_identity__refresh_main, id) != 0) {
            snprintf(err, errlen, "cannot start the JWKS refresh thread");
            goto fail;
        }
        id->has_thread = 1;
    }
    return id;
fail:
    bg_identity_free(id);
    return NULL;
}

bg_identity_t *bg_identity_new_from_jwks_string(const bg_config_identity_t *cfg, const char *jwks,
                                                size_t len, char *err, size_t errlen)
{
    bg_identity_t *id = bg_identity__alloc(cfg, err, errlen);
    for (size_t i = 0; id && i < id->nissuers; i++) {
        bg_id_issuer_t *iss = &id->issuers[i];
        free(iss->jwks_url); /* static keys: never fetched */
        iss->jwks_url = NULL;
        if (bg_jwks_parse(jwks, len, iss->allow_hs256 ? BG_JWKS_ALLOW_OCT : 0, NULL,
                          &iss->keys->jwks, err, errlen) != 0) {
            bg_identity_free(id);
            return NULL;
        }
    }
    return id;
}

void bg_identity_retire(bg_identity_t *id)
{
    if (!id || !id->has_thread)
        return;
    pthread_mutex_lock(&id->mu);
    atomic_store(&id->stop, 1);
    pthread_cond_broadcast(&id->wake);
    pthread_mutex_unlock(&id->mu);
}

void bg_identity_free(bg_identity_t *id)
{
    if (!id)
        return;
    if (id->has_thread) {
        bg_identity_retire(id);
        pthread_join(id->thread, NULL);
    }
    for (size_t i = 0; i < id->nissuers; i++)
        bg_identity__issuer_clear(&id->issuers[i]);
    free(id->issuers);
    pthread_mutex_destroy(&id->mu);
    pthread_cond_destroy(&id->wake);
    pthread_cond_destroy(&id->ready);
    free(id);
}
