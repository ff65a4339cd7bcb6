/* The seam between the process runtime and a protocol adapter.
 *
 * One adapter = one folder under adapters/; each exports one bg_adapter_t
 * and main.c lists them. The runtime never calls into an adapter except
 * through this table, and adapters never call each other. */
#ifndef BG_ADAPTER_H
#define BG_ADAPTER_H

#include <stddef.h>

#include "broker/config.h"
#include "broker/metrics.h"

typedef struct bg_worker_s bg_worker_t;

typedef struct bg_adapter_s {
    const char *name;
    bg_proto_t proto;
    /* 1 when cfg turns this adapter's listener on. */
    int (*enabled)(const bg_config_t *cfg);
    /* Process-wide set-up on the main thread before workers start (e.g. an
     * embedded upstream). 0 ok; -1 with err filled. Optional. */
    int (*global_init)(const bg_config_t *cfg, void **global, char *err, size_t errlen);
    void (*global_free)(void *global);
    /* 1 when the adapter can serve (e.g. its upstream answers). Optional;
     * called from the admin thread, must be thread-safe. */
    int (*ready)(void *global);
    /* On the worker thread: open listeners on w->base. 0 ok; -1 with err. */
    int (*worker_start)(bg_worker_t *w, void *global, void **state, char *err, size_t errlen);
    /* On the worker thread: stop accepting; sessions finish what is in
     * flight and close. */
    void (*worker_drain)(void *state);
    /* On the worker thread: sessions still open. */
    size_t (*worker_sessions)(void *state);
    /* On the worker thread, after its loop ended: free everything. */
    void (*worker_stop)(void *state);
} bg_adapter_t;

#endif
