/*
 * rabbitmq-c interop client for busgate's AMQP tests: runs one scenario
 * against an AMQP 0-9-1 server (busgate or RabbitMQ) with the plain
 * rabbitmq-c API, as any application would, and prints one JSON line.
 *
 *   amqp_interop_c HOST PORT USER SCENARIO ARGS...
 *     roundtrip EXCHANGE QUEUE N   declare a direct exchange and a queue, bind
 *                                  them, publish N with publisher confirms,
 *                                  consume the N back (manual acks), delete both
 *     publish-denied EXCHANGE      publish on a confirm channel; report the
 *                                  channel.close the server sends
 *     consume-denied QUEUE         basic.consume; report the channel.close
 *
 * The password (for busgate: the token) comes from BG_AMQP_PASSWORD, not the
 * command line. BG_INTEROP_TIMEOUT_MS (default 30000) bounds every wait and,
 * through alarm(), the whole run. Exit 0 when the scenario ran to its end
 * (the test judges the reported values), 1 on an unexpected error or
 * timeout, 2 on bad usage.
 */
#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define CLIENT "rabbitmq-c"
#define CH_WORK 1
#define CH_PROBE 2

static long timeout_ms = 30000;
/* The scenario's result fields, printed only once the run ended well. */
static FILE *out;

/* What a server channel.close said; code 0 when none came. */
struct close_info {
    int code;
    char text[512];
    int class_id, method_id;
};

static void on_alarm(int sig)
{
    static const char msg[] = "{\"client\":\"" CLIENT "\",\"ok\":false,\"error\":\"timeout\"}\n";
    (void)sig;
    (void)!write(STDOUT_FILENO, msg, sizeof msg - 1);
    _exit(1);
}

static void json_string(FILE *f, const char *s, size_t len)
{
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* Prints {"client":..,"ok":false,"error":...} and exits 1. */
static void fail(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    printf("{\"client\":\"" CLIENT "\",\"ok\":false,\"error\":");
    json_string(stdout, buf, strlen(buf));
    printf("}\n");
    exit(1);
}

static struct timeval wait_tv(void)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    return tv;
}

/* Fails the run unless reply is a normal RPC reply. */
static void check_reply(amqp_rpc_reply_t r, const char *what)
{
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return;
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION)
        fail("%s: %s", what, amqp_error_string2(r.library_error));
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        amqp_channel_close_t *c = r.reply.decoded;
        fail("%s: channel closed %u %.*s", what, c->reply_code, (int)c->reply_text.len,
             (char *)c->reply_text.bytes);
    }
    fail("%s: server exception (method 0x%08x)", what, (unsigned)r.reply.id);
}

static amqp_connection_state_t open_connection(const char *host, int port, const char *user)
{
    amqp_connection_state_t conn = amqp_new_connection();
    amqp_socket_t *sock = amqp_tcp_socket_new(conn);
    struct timeval tv = wait_tv();
    const char *password = getenv("BG_AMQP_PASSWORD");
    if (!sock)
        fail("amqp_tcp_socket_new failed");
    int st = amqp_socket_open_noblock(sock, host, port, &tv);
    if (st != AMQP_STATUS_OK)
        fail("connect %s:%d: %s", host, port, amqp_error_string2(st));
    amqp_set_rpc_timeout(conn, &tv);
    check_reply(amqp_login(conn, "/", 0, AMQP_DEFAULT_FRAME_SIZE, 0, AMQP_SASL_METHOD_PLAIN, user,
                           password ? password : ""),
                "login");
    return conn;
}

static void open_channel(amqp_connection_state_t conn, amqp_channel_t ch)
{
    amqp_channel_open(conn, ch);
    check_reply(amqp_get_rpc_reply(conn), "channel.open");
}

static void confirm_select(amqp_connection_state_t conn, amqp_channel_t ch)
{
    amqp_confirm_select(conn, ch);
    check_reply(amqp_get_rpc_reply(conn), "confirm.select");
}

/* Publishes message seq: body {"seq":N,"client":"rabbitmq-c"}, header seq. */
static void publish_seq(amqp_connection_state_t conn, const char *exchange, int seq)
{
    char body[64];
    amqp_table_entry_t hdr = {.key = amqp_cstring_bytes("seq")};
    amqp_basic_properties_t props = {0};
    hdr.value.kind = AMQP_FIELD_KIND_I32;
    hdr.value.value.i32 = seq;
    props._flags = AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    props.headers.num_entries = 1;
    props.headers.entries = &hdr;
    snprintf(body, sizeof body, "{\"seq\":%d,\"client\":\"" CLIENT "\"}", seq);
    int st = amqp_basic_publish(conn, CH_WORK, amqp_cstring_bytes(exchange), amqp_cstring_bytes("rk"),
                                0, 0, &props, amqp_cstring_bytes(body));
    if (st != AMQP_STATUS_OK)
        fail("basic.publish: %s", amqp_error_string2(st));
}

/* Copies a channel.close into dst and answers it with close-ok. */
static void take_close(amqp_connection_state_t conn, amqp_channel_t ch, const amqp_channel_close_t *c,
                       struct close_info *dst)
{
    amqp_channel_close_ok_t ok = {0};
    dst->code = c->reply_code;
    snprintf(dst->text, sizeof dst->text, "%.*s", (int)c->reply_text.len, (char *)c->reply_text.bytes);
    dst->class_id = c->class_id;
    dst->method_id = c->method_id;
    amqp_send_method(conn, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
}

/*
 * Reads frames until `expected` publishes are confirmed or a channel.close
 * arrives (recorded in closed). Counts acks/nacks, honouring `multiple`.
 */
static void await_confirms(amqp_connection_state_t conn, int expected, int *acked, int *nacked,
                           struct close_info *closed)
{
    uint64_t done = 0;
    while ((int)done < expected) {
        amqp_frame_t f;
        struct timeval tv = wait_tv();
        int st = amqp_simple_wait_frame_noblock(conn, &f, &tv);
        if (st != AMQP_STATUS_OK)
            fail("waiting for confirms: %s", amqp_error_string2(st));
        if (f.frame_type != AMQP_FRAME_METHOD)
            continue;
        amqp_method_t *m = &f.payload.method;
        if (m->id == AMQP_CHANNEL_CLOSE_METHOD) {
            take_close(conn, f.channel, m->decoded, closed);
            return;
        }
        uint64_t tag = 0;
        int multiple = 0, is_ack = m->id == AMQP_BASIC_ACK_METHOD;
        if (is_ack) {
            amqp_basic_ack_t *a = m->decoded;
            tag = a->delivery_tag, multiple = a->multiple;
        } else if (m->id == AMQP_BASIC_NACK_METHOD) {
            amqp_basic_nack_t *n = m->decoded;
            tag = n->delivery_tag, multiple = n->multiple;
        } else {
            continue;
        }
        uint64_t count = multiple ? tag - done : 1;
        *(is_ack ? acked : nacked) += (int)count;
        done += count;
    }
}

/* True when the envelope's body and header both carry sequence number want. */
static int envelope_is(const amqp_envelope_t *e, int want)
{
    int seq = -1, hdr = -1;
    char body[128];
    snprintf(body, sizeof body, "%.*s", (int)e->message.body.len, (char *)e->message.body.bytes);
    if (sscanf(body, "{\"seq\":%d,", &seq) != 1)
        return 0;
    const amqp_table_t *h = &e->message.properties.headers;
    if (e->message.properties._flags & AMQP_BASIC_HEADERS_FLAG) {
        for (int i = 0; i < h->num_entries; i++) {
            const amqp_table_entry_t *t = &h->entries[i];
            if (t->key.len == 3 && memcmp(t->key.bytes, "seq", 3) == 0)
                hdr = t->value.kind == AMQP_FIELD_KIND_I32   ? t->value.value.i32
                      : t->value.kind == AMQP_FIELD_KIND_I64 ? (int)t->value.value.i64
                                                              : -1;
        }
    }
    return seq == want && hdr == want;
}

/* Consumes up to n messages from queue with manual acks; returns how many. */
static int consume_n(amqp_connection_state_t conn, const char *queue, int n, int *in_order)
{
    amqp_basic_qos(conn, CH_WORK, 0, 50, 0);
    check_reply(amqp_get_rpc_reply(conn), "basic.qos");
    amqp_basic_consume_ok_t *ok = amqp_basic_consume(conn, CH_WORK, amqp_cstring_bytes(queue),
                                                     amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    check_reply(amqp_get_rpc_reply(conn), "basic.consume");
    amqp_bytes_t tag = amqp_bytes_malloc_dup(ok->consumer_tag);
    int got = 0;
    *in_order = 1;
    while (got < n) {
        amqp_envelope_t e;
        struct timeval tv = wait_tv();
        amqp_maybe_release_buffers(conn);
        amqp_rpc_reply_t r = amqp_consume_message(conn, &e, &tv, 0);
        if (r.reply_type != AMQP_RESPONSE_NORMAL)
            break;
        if (!envelope_is(&e, got))
            *in_order = 0;
        amqp_basic_ack(conn, CH_WORK, e.delivery_tag, 0);
        amqp_destroy_envelope(&e);
        got++;
    }
    amqp_basic_cancel(conn, CH_WORK, tag);
    check_reply(amqp_get_rpc_reply(conn), "basic.cancel");
    amqp_bytes_free(tag);
    return got;
}

static void roundtrip(amqp_connection_state_t conn, const char *exchange, const char *queue, int n)
{
    struct close_info closed = {0};
    int acked = 0, nacked = 0, in_order = 0;
    open_channel(conn, CH_WORK);
    amqp_exchange_declare(conn, CH_WORK, amqp_cstring_bytes(exchange), amqp_cstring_bytes("direct"), 0, 0,
                          0, 0, amqp_empty_table);
    check_reply(amqp_get_rpc_reply(conn), "exchange.declare");
    amqp_queue_declare(conn, CH_WORK, amqp_cstring_bytes(queue), 0, 0, 0, 0, amqp_empty_table);
    check_reply(amqp_get_rpc_reply(conn), "queue.declare");
    amqp_queue_bind(conn, CH_WORK, amqp_cstring_bytes(queue), amqp_cstring_bytes(exchange),
                    amqp_cstring_bytes("rk"), amqp_empty_table);
    check_reply(amqp_get_rpc_reply(conn), "queue.bind");
    confirm_select(conn, CH_WORK);
    for (int i = 0; i < n; i++)
        publish_seq(conn, exchange, i);
    await_confirms(conn, n, &acked, &nacked, &closed);
    if (closed.code)
        fail("channel closed while confirming: %d %s", closed.code, closed.text);
    int got = consume_n(conn, queue, n, &in_order);
    amqp_queue_delete(conn, CH_WORK, amqp_cstring_bytes(queue), 0, 0);
    check_reply(amqp_get_rpc_reply(conn), "queue.delete");
    amqp_exchange_delete(conn, CH_WORK, amqp_cstring_bytes(exchange), 0);
    check_reply(amqp_get_rpc_reply(conn), "exchange.delete");
    check_reply(amqp_channel_close(conn, CH_WORK, AMQP_REPLY_SUCCESS), "channel.close");
    fprintf(out, "\"published\":%d,\"confirmed\":%d,\"nacked\":%d,\"consumed\":%d,\"in_order\":%s", n, acked,
           nacked, got, in_order && got == n ? "true" : "false");
}

/* A fresh channel and a basic.qos round trip: the connection survived. */
static int connection_alive(amqp_connection_state_t conn)
{
    open_channel(conn, CH_PROBE);
    amqp_basic_qos(conn, CH_PROBE, 0, 1, 0);
    check_reply(amqp_get_rpc_reply(conn), "basic.qos after the refusal");
    check_reply(amqp_channel_close(conn, CH_PROBE, AMQP_REPLY_SUCCESS), "channel.close");
    return 1;
}

static void print_close(const char *key, int ok_flag, const struct close_info *c, int alive)
{
    fprintf(out, "\"%s\":%s,\"closed\":", key, ok_flag ? "true" : "false");
    if (!c->code) {
        fprintf(out, "null");
    } else {
        fprintf(out, "{\"code\":%d,\"text\":", c->code);
        json_string(out, c->text, strlen(c->text));
        fprintf(out, ",\"class_id\":%d,\"method_id\":%d}", c->class_id, c->method_id);
    }
    fprintf(out, ",\"connection_alive\":%s", alive ? "true" : "false");
}

static void publish_denied(amqp_connection_state_t conn, const char *exchange)
{
    struct close_info closed = {0};
    int acked = 0, nacked = 0;
    open_channel(conn, CH_WORK);
    confirm_select(conn, CH_WORK);
    publish_seq(conn, exchange, 0);
    await_confirms(conn, 1, &acked, &nacked, &closed);
    print_close("confirmed", acked == 1, &closed, connection_alive(conn));
}

static void consume_denied(amqp_connection_state_t conn, const char *queue)
{
    struct close_info closed = {0};
    open_channel(conn, CH_WORK);
    amqp_basic_consume(conn, CH_WORK, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 1, 0, amqp_empty_table);
    amqp_rpc_reply_t r = amqp_get_rpc_reply(conn);
    int consumed = r.reply_type == AMQP_RESPONSE_NORMAL;
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD)
        take_close(conn, CH_WORK, r.reply.decoded, &closed);
    else if (!consumed)
        check_reply(r, "basic.consume");
    print_close("consume_ok", consumed, &closed, connection_alive(conn));
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s HOST PORT USER SCENARIO ARGS...\n", argv[0]);
        return 2;
    }
    const char *t = getenv("BG_INTEROP_TIMEOUT_MS");
    if (t && atol(t) > 0)
        timeout_ms = atol(t);
    signal(SIGALRM, on_alarm);
    alarm((unsigned)(timeout_ms / 1000 + 5));
    const char *scenario = argv[4];
    int nargs = argc - 5;
    if (!((strcmp(scenario, "roundtrip") == 0 && nargs == 3) ||
          (strcmp(scenario, "publish-denied") == 0 && nargs == 1) ||
          (strcmp(scenario, "consume-denied") == 0 && nargs == 1))) {
        fprintf(stderr, "unknown scenario or wrong arguments\n");
        return 2;
    }
    char *fields = NULL;
    size_t fields_len = 0;
    out = open_memstream(&fields, &fields_len);
    if (!out)
        fail("open_memstream failed");
    amqp_connection_state_t conn = open_connection(argv[1], atoi(argv[2]), argv[3]);
    if (strcmp(scenario, "roundtrip") == 0)
        roundtrip(conn, argv[5], argv[6], atoi(argv[7]));
    else if (strcmp(scenario, "publish-denied") == 0)
        publish_denied(conn, argv[5]);
    else
        consume_denied(conn, argv[5]);
    check_reply(amqp_connection_close(conn, AMQP_REPLY_SUCCESS), "connection.close");
    amqp_destroy_connection(conn);
    fclose(out);
    printf("{\"client\":\"" CLIENT "\",\"scenario\":\"%s\",%s,\"ok\":true}\n", scenario, fields);
    free(fields);
    return 0;
}
