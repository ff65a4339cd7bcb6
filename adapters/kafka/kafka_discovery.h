/* Periodic discovery of the upstream brokers (worker 0 only). */
#ifndef BG_KAFKA_DISCOVERY_H
#define BG_KAFKA_DISCOVERY_H

#include "adapters/kafka/kafka_adapter-internal.h"

typedef struct bg_kafka_discovery_s bg_kafka_discovery_t;

/* Starts discovering at once and then every minute on kw's loop. NULL on
 * out of memory. */
bg_kafka_discovery_t *bg_kafka_discovery_start(bg_kafka_worker_t *kw);
/* Stops and frees (worker thread). NULL is fine. */
void bg_kafka_discovery_free(bg_kafka_discovery_t *d);

#endif
