/* The AMQP 0-9-1 method table (amqp0-9-1.xml plus RabbitMQ's extensions:
 * exchange.bind/unbind, basic.nack, confirm, connection.blocked/unblocked,
 * connection.update-secret).
 *
 * args is the argument signature the validator walks, one letter per
 * argument in spec order:
 *   o octet   h short (16)   l long (32)   q longlong (64)   t timestamp (64)
 *   s shortstr (u8 length)   S longstr (u32 length)   T field table
 *   b bit (consecutive bits share one octet, least significant bit first) */
#include "adapters/amqp/amqp_method.h"

#define C BG_AMQP_M_CLIENT
#define S BG_AMQP_M_SERVER
#define X BG_AMQP_M_CONTENT
#define M(cls, meth, name, args, flags) {BG_AMQP_METHOD_ID(cls, meth), name, args, flags}

/* Sorted by id (binary search). */
static const bg_amqp_method_info_t bg_amqp__methods[] = {
    M(10, 10, "connection.start", "ooTSS", S),
    M(10, 11, "connection.start-ok", "TsSs", C),
    M(10, 20, "connection.secure", "S", S),
    M(10, 21, "connection.secure-ok", "S", C),
    M(10, 30, "connection.tune", "hlh", S),
    M(10, 31, "connection.tune-ok", "hlh", C),
    M(10, 40, "connection.open", "ssb", C),
    M(10, 41, "connection.open-ok", "s", S),
    M(10, 50, "connection.close", "hshh", C | S),
    M(10, 51, "connection.close-ok", "", C | S),
    M(10, 60, "connection.blocked", "s", S),
    M(10, 61, "connection.unblocked", "", S),
    M(10, 70, "connection.update-secret", "Ss", C),
    M(10, 71, "connection.update-secret-ok", "", S),
    M(20, 10, "channel.open", "s", C),
    M(20, 11, "channel.open-ok", "S", S),
    M(20, 20, "channel.flow", "b", C | S),
    M(20, 21, "channel.flow-ok", "b", C | S),
    M(20, 40, "channel.close", "hshh", C | S),
    M(20, 41, "channel.close-ok", "", C | S),
    M(30, 10, "access.request", "sbbbbb", C),
    M(30, 11, "access.request-ok", "h", S),
    M(40, 10, "exchange.declare", "hssbbbbbT", C),
    M(40, 11, "exchange.declare-ok", "", S),
    M(40, 20, "exchange.delete", "hsbb", C),
    M(40, 21, "exchange.delete-ok", "", S),
    M(40, 30, "exchange.bind", "hsssbT", C),
    M(40, 31, "exchange.bind-ok", "", S),
    M(40, 40, "exchange.unbind", "hsssbT", C),
    M(40, 51, "exchange.unbind-ok", "", S),
    M(50, 10, "queue.declare", "hsbbbbbT", C),
    M(50, 11, "queue.declare-ok", "sll", S),
    M(50, 20, "queue.bind", "hsssbT", C),
    M(50, 21, "queue.bind-ok", "", S),
    M(50, 30, "queue.purge", "hsb", C),
    M(50, 31, "queue.purge-ok", "l", S),
    M(50, 40, "queue.delete", "hsbbb", C),
    M(50, 41, "queue.delete-ok", "l", S),
    M(50, 50, "queue.unbind", "hsssT", C),
    M(50, 51, "queue.unbind-ok", "", S),
    M(60, 10, "basic.qos", "lhb", C),
    M(60, 11, "basic.qos-ok", "", S),
    M(60, 20, "basic.consume", "hssbbbbT", C),
    M(60, 21, "basic.consume-ok", "s", S),
    M(60, 30, "basic.cancel", "sb", C | S),
    M(60, 31, "basic.cancel-ok", "s", C | S),
    M(60, 40, "basic.publish", "hssbb", C | X),
    M(60, 50, "basic.return", "hsss", S | X),
    M(60, 60, "basic.deliver", "sqbss", S | X),
    M(60, 70, "basic.get", "hsb", C),
    M(60, 71, "basic.get-ok", "qbssl", S | X),
    M(60, 72, "basic.get-empty", "s", S),
    M(60, 80, "basic.ack", "qb", C | S),
    M(60, 90, "basic.reject", "qb", C),
    M(60, 100, "basic.recover-async", "b", C),
    M(60, 110, "basic.recover", "b", C),
    M(60, 111, "basic.recover-ok", "", S),
    M(60, 120, "basic.nack", "qbb", C | S),
    M(85, 10, "confirm.select", "b", C),
    M(85, 11, "confirm.select-ok", "", S),
    M(90, 10, "tx.select", "", C),
    M(90, 11, "tx.select-ok", "", S),
    M(90, 20, "tx.commit", "", C),
    M(90, 21, "tx.commit-ok", "", S),
    M(90, 30, "tx.rollback", "", C),
    M(90, 31, "tx.rollback-ok", "", S),
};

const bg_amqp_method_info_t *bg_amqp_method_info(uint32_t id)
{
    size_t lo = 0, hi = sizeof bg_amqp__methods / sizeof bg_amqp__methods[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t v = bg_amqp__methods[mid].id;
        if (v == id)
            return &bg_amqp__methods[mid];
        if (v < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}
