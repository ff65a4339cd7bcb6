/* The Kafka adapter as the runtime sees it (broker/adapter.h). */
#ifndef BG_KAFKA_ADAPTER_H
#define BG_KAFKA_ADAPTER_H

#include "broker/adapter.h"

extern const bg_adapter_t bg_kafka_adapter;

#endif
