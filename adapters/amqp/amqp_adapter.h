/* The AMQP 0-9-1 adapter as the runtime sees it (broker/adapter.h). */
#ifndef BG_AMQP_ADAPTER_H
#define BG_AMQP_ADAPTER_H

#include "broker/adapter.h"

extern const bg_adapter_t bg_amqp_adapter;

#endif
