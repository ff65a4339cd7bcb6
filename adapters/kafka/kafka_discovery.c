/* Upstream broker discovery on worker 0: an upstream connection with
 * busgate's own credential (kafka_upstream.c, so SCRAM and TLS work exactly
 * as on the data path), one Metadata request, every broker learned, close.
 * Repeated every BG_KAFKA_DISCOVERY_EVERY_S so new brokers get their ports
 * even before a client's Metadata response names them. */
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/kafka/kafka_codec.h"
#include "adapters/kafka/kafka_discovery.h"
#include "adapters/kafka/kafka_frame.h"
#include "adapters/kafka/kafka_upstream.h"
#include "broker/log.h"

#define BG_KAFKA_DISCOVERY_EVERY_S 60
#define BG_KAFKA_DISCOVERY_RETRY_S 5
/* A round (connect, handshake, Metadata) that has not finished by then is
 * given up: an upstream that went silent must not stop discovery for good. */
#define BG_KAFKA_DISCOVERY_DEADLINE_S 10
#define BG_KAFKA_DISCOVERY_CORR 0x7ffffff0

struct bg_kafka_discovery_s {
    bg_kafka_worker_t *kw;
    bg_kafka_up_t *up;
    struct event *timer;
    struct event *reap; /* frees a finished connection outside its callbacks */
    int16_t version;
    int done_once;
};

static void bg_kafka_disc__schedule(bg_kafka_discovery_t *d, int seconds)
{
    struct timeval tv = {seconds, 0};
    event_add(d->timer, &tv);
}

static void bg_kafka_disc__finish(bg_kafka_discovery_t *d, int ok)
{
    event_active(d->reap, 0, 0);
    bg_kafka_disc__schedule(d, ok ? BG_KAFKA_DISCOVERY_EVERY_S : BG_KAFKA_DISCOVERY_RETRY_S);
}

static void bg_kafka_disc__on_reap(evutil_socket_t fd, short what, void *arg)
{
    bg_kafka_discovery_t *d = arg;
    bg_kafka_up_free(d->up);
    d->up = NULL;
}

static int bg_kafka_disc__send(bg_kafka_discovery_t *d)
{
    int16_t min, max;
    if (!bg_kafka_up_versions(d->up, BG_KAFKA_API_METADATA, &min, &max))
        return -1;
    d->version = max > 12 ? 12 : max; /* any version lists the brokers */
    if (d->version < min)
        return -1;
    bg_kafka_arena_t a;
    bg_kafka_arena_init(&a, 1u << 20);
    bg_kafka_struct_t *b = bg_kafka_struct_new(&a, bg_kafka_msg_metadata_req.body);
    bg_wr_t wr;
    bg_wr_init(&wr, 128, 1u << 16);
    int rc = -1;
    if (b && bg_kafka_array_new(&a, b, BG_KAFKA_METADATA_REQ_TOPICS, 0)) {
        size_t off = bg_kafka_frame_begin(&wr);
        bg_kafka_req_hdr_t h = {.api_key = BG_KAFKA_API_METADATA,
                                .api_version = d->version,
                                .correlation_id = BG_KAFKA_DISCOVERY_CORR,
                                .client_id = bg_kafka_cstr("busgate-discovery"),
                                .hdr_version = (uint8_t)bg_kafka_req_hdr_version(
                                    BG_KAFKA_API_METADATA, d->version)};
        bg_kafka_req_hdr_write(&wr, &h);
        const char *why = NULL;
        if (bg_kafka_encode(&bg_kafka_msg_metadata_req, d->version, b, &wr, &why) == BG_KAFKA_OK) {
            bg_kafka_frame_end(&wr, off);
            rc = wr.failed ? -1 : evbuffer_add(bg_kafka_up_output(d->up), wr.buf, wr.len);
        }
    }
    bg_wr_free(&wr);
    bg_kafka_arena_free(&a);
    return rc;
}

static void bg_kafka_disc__on_ready(void *arg)
{
    bg_kafka_discovery_t *d = arg;
    if (bg_kafka_disc__send(d) != 0)
        bg_kafka_disc__finish(d, 0);
}

static int bg_kafka_disc__on_frame(void *arg, struct evbuffer *in, size_t len)
{
    bg_kafka_discovery_t *d = arg;
    const uint8_t *p = evbuffer_pullup(in, (ssize_t)len);
    int32_t corr = 0;
    const char *why = NULL;
    int ok = 0;
    int off = p ? bg_kafka_resp_hdr_parse(
                      p + 4, len - 4, bg_kafka_resp_hdr_version(BG_KAFKA_API_METADATA, d->version),
                      &corr, NULL, &why)
                : -1;
    bg_kafka_arena_t a;
    bg_kafka_arena_init(&a, 16u << 20);
    bg_kafka_struct_t *r = NULL;
    if (off > 0 && corr == BG_KAFKA_DISCOVERY_CORR) {
        bg_rd_t rd;
        bg_rd_init(&rd, p + 4 + off, len - 4 - (size_t)off);
        ok = bg_kafka_decode(&bg_kafka_msg_metadata_resp, d->version, &rd, &a, &r) == BG_KAFKA_OK;
    }
    const bg_kafka_val_t *brokers = ok ? &r->f[BG_KAFKA_METADATA_RESP_BROKERS] : NULL;
    int32_t nbrokers = brokers ? brokers->a.n : 0; /* brokers lives in the arena */
    for (int32_t i = 0; i < nbrokers; i++) {
        const bg_kafka_struct_t *b = brokers->a.s[i];
        bg_slice_t host = b->f[BG_KAFKA_METADATA_RESP_BROKERS_HOST].s;
        if (host.len > 0)
            bg_kafka_global_learn_node(d->kw->g, (int32_t)b->f[BG_KAFKA_METADATA_RESP_BROKERS_NODE_ID].i,
                                       (const char *)host.p, (size_t)host.len,
                                       (int32_t)b->f[BG_KAFKA_METADATA_RESP_BROKERS_PORT].i);
    }
    bg_kafka_worker_open_ports(d->kw);
    bg_kafka_arena_free(&a);
    evbuffer_drain(in, len);
    if (!ok)
        bg_log_warn("kafka", "upstream discovery: unreadable Metadata response");
    else if (!d->done_once++)
        bg_log_info("kafka", "upstream discovery: %d broker(s)", (int)nbrokers);
    bg_kafka_disc__finish(d, ok);
    bg_kafka_up_set_reading(d->up, 0);
    return -1; /* stop reading: the connection is reaped */
}

static void bg_kafka_disc__on_failed(void *arg, const char *why)
{
    bg_kafka_disc__finish(arg, 0);
}

static const bg_kafka_up_cbs_t bg_kafka_disc__cbs = {
    .ready = bg_kafka_disc__on_ready,
    .frame = bg_kafka_disc__on_frame,
    .failed = bg_kafka_disc__on_failed,
};

/* Starts a round, or gives up one that outlived its deadline (the timer
 * is armed with the deadline while a round runs; finishing re-arms it). */
static void bg_kafka_disc__on_timer(evutil_socket_t fd, short what, void *arg)
{
    bg_kafka_discovery_t *d = arg;
    if (d->up) { /* not one of its callbacks: freed here */
        bg_log_warn("kafka", "upstream discovery: no answer within %d s; connecting again",
                    BG_KAFKA_DISCOVERY_DEADLINE_S);
        bg_kafka_up_free(d->up);
        d->up = NULL;
    }
    char why[400]; /* a connection that cannot start was logged; the next round retries */
    d->up = bg_kafka_up_connect(d->kw->w->base, d->kw->w->dns, d->kw->g, -1, &bg_kafka_disc__cbs, d,
                                why, sizeof why);
    bg_kafka_disc__schedule(d, d->up ? BG_KAFKA_DISCOVERY_DEADLINE_S : BG_KAFKA_DISCOVERY_RETRY_S);
}

bg_kafka_discovery_t *bg_kafka_discovery_start(bg_kafka_worker_t *kw)
{
    bg_kafka_discovery_t *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->kw = kw;
    d->timer = evtimer_new(kw->w->base, bg_kafka_disc__on_timer, d);
    d->reap = event_new(kw->w->base, -1, 0, bg_kafka_disc__on_reap, d);
    if (!d->timer || !d->reap) {
        bg_kafka_discovery_free(d);
        return NULL;
    }
    bg_kafka_disc__schedule(d, 0);
    return d;
}

void bg_kafka_discovery_free(bg_kafka_discovery_t *d)
{
    if (!d)
        return;
    bg_kafka_up_free(d->up);
    if (d->timer)
        event_free(d->timer);
    if (d->reap)
        event_free(d->reap);
    free(d);
}
