/* Readiness: worker 0 logs in to RabbitMQ with busgate's own credential at
 * start-up (retrying every few seconds until it works), so /readyz does not
 * wait for a first client — a load balancer that sends traffic only to
 * ready instances would otherwise never send any. The connection is closed
 * once open-ok arrived. It is an ordinary upstream connection
 * (bg_amqp_up_connect), so with amqp.upstream.tls it is TLS and verified
 * like every session's: a broker certificate that does not verify keeps
 * busgate not ready. A login that does not reach open-ok within the
 * upstream's handshake deadline (15 s) fails too, and is retried. */
#include <event2/event.h>
#include <stdlib.h>

#include "adapters/amqp/amqp_probe.h"
#include "adapters/amqp/amqp_upstream.h"
#include "broker/log.h"

#define BG_AMQP_PROBE_RETRY_S 5

struct bg_amqp_probe_s {
    bg_amqp_worker_t *aw;
    bg_amqp_up_t *up;
    struct event *timer; /* connects (again) */
    struct event *reap;  /* frees a finished connection outside its callbacks */
};

static void bg_amqp_probe__finish(bg_amqp_probe_t *p, int ok)
{
    if (p->up)
        bg_amqp_up_detach(p->up);
    event_active(p->reap, 0, 0);
    if (!ok) {
        struct timeval tv = {BG_AMQP_PROBE_RETRY_S, 0};
        event_add(p->timer, &tv);
    }
}

static void bg_amqp_probe__tuned(void *arg, uint16_t channel_max, uint32_t frame_max,
                                 uint16_t heartbeat)
{
    bg_amqp_probe_t *p = arg;
    if (bg_amqp_up_tune_ok(p->up, channel_max, frame_max, 0) != 0)
        bg_amqp_probe__finish(p, 0);
}

static void bg_amqp_probe__ready(void *arg)
{
    bg_log_info("amqp", "upstream login with busgate's credential works");
    bg_amqp_probe__finish(arg, 1);
}

static int bg_amqp_probe__frame(void *arg, struct evbuffer *in, const bg_amqp_frame_t *f,
                                size_t frame_len)
{
    bg_amqp_probe__finish(arg, 1);
    return -1; /* nothing is expected after open-ok */
}

static void bg_amqp_probe__failed(void *arg, const char *where, const char *why)
{
    bg_amqp_probe_t *p = arg;
    bg_log_warn("amqp", "upstream %s: %s", where, why);
    bg_amqp_probe__finish(p, 0);
}

static const bg_amqp_up_cbs_t bg_amqp_probe__cbs = {
    .tuned = bg_amqp_probe__tuned,
    .ready = bg_amqp_probe__ready,
    .frame = bg_amqp_probe__frame,
    .failed = bg_amqp_probe__failed,
};

static void bg_amqp_probe__on_reap(evutil_socket_t fd, short what, void *arg)
{
    bg_amqp_probe_t *p = arg;
    bg_amqp_up_free(p->up);
    p->up = NULL;
}

static void bg_amqp_probe__on_timer(evutil_socket_t fd, short what, void *arg)
{
    bg_amqp_probe_t *p = arg;
    if (p->up || atomic_load(&p->aw->g->upstream_seen_ok))
        return;
    p->up = bg_amqp_up_connect(p->aw->w->base, p->aw->w->dns, p->aw->g, 0, &bg_amqp_probe__cbs, p);
    if (!p->up) {
        struct timeval tv = {BG_AMQP_PROBE_RETRY_S, 0};
        event_add(p->timer, &tv);
    }
}

bg_amqp_probe_t *bg_amqp_probe_start(bg_amqp_worker_t *aw)
{
    bg_amqp_probe_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->aw = aw;
    p->timer = evtimer_new(aw->w->base, bg_amqp_probe__on_timer, p);
    p->reap = event_new(aw->w->base, -1, 0, bg_amqp_probe__on_reap, p);
    if (!p->timer || !p->reap) {
        bg_amqp_probe_free(p);
        return NULL;
    }
    struct timeval now = {0, 0};
    event_add(p->timer, &now);
    return p;
}

void bg_amqp_probe_free(bg_amqp_probe_t *p)
{
    if (!p)
        return;
    bg_amqp_up_free(p->up);
    if (p->timer)
        event_free(p->timer);
    if (p->reap)
        event_free(p->reap);
    free(p);
}
