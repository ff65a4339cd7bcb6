/* Start-up login to RabbitMQ for readiness (worker 0 only). */
#ifndef BG_AMQP_PROBE_H
#define BG_AMQP_PROBE_H

#include "adapters/amqp/amqp_adapter-internal.h"

typedef struct bg_amqp_probe_s bg_amqp_probe_t;

/* Starts at once on aw's loop; retries until a login succeeded. NULL on out
 * of memory. Worker thread. */
bg_amqp_probe_t *bg_amqp_probe_start(bg_amqp_worker_t *aw);
/* Stops and frees (worker thread). NULL is fine. */
void bg_amqp_probe_free(bg_amqp_probe_t *p);

#endif
