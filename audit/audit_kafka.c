/* Kafka topic sink: librdkafka idempotent producer (acks=all, in-order per
 * partition), key = session id so a session's events stay in one partition.
 * librdkafka runs its own threads; every callback of ours (delivery reports,
 * errors) is served by rd_kafka_poll/flush on the audit thread, so the sink
 * shares nothing with the workers. A record that fails delivery (message
 * timeout, purge at close, fatal error) is handed back to the pipeline, which
 * spools it. */
#include "audit/audit_sink.h"
#include "audit/audit_avro.h"

#include "broker/log.h"

#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Audit wants to notice an outage in seconds, not librdkafka's 5 minutes;
 * a record that times out goes to the spool, nothing is lost. */
#define BG_AUDIT_KAFKA_MSG_TIMEOUT "10000"

typedef struct bg_audit_kafka_s {
    bg_audit_sink_t base;
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    size_t out[2]; /* produced, no delivery report yet: [0] live, [1] drained */
    int down;  /* all brokers down, until a delivery succeeds */
    int purge; /* a failure was seen: fail the rest of the queue back now */
    bg_audit_avro_t *avro; /* audit.format avro: message values are Avro */
} bg_audit_kafka_t;

/* With Avro values the delivery report cannot rebuild the record from the
 * message, so the record (JSON form) rides along as the opaque. */
typedef struct bg_audit_kmsg_s {
    uint64_t order;
    int from_spool;
    uint32_t len;
    uint8_t rec[];
} bg_audit_kmsg_t;

static void bg_audit__kafka_dr_avro(bg_audit_kafka_t *k, const rd_kafka_message_t *m)
{
    bg_audit_kmsg_t *km = m->_private;
    bg_audit_sink_t *s = &k->base;
    k->out[km->from_spool ? 1 : 0]--;
    bg_audit_rec_t r = {km->rec, km->len, km->from_spool, km->order};
    if (m->err) {
        k->purge = 1;
        s->cb.failed(s->cb.core, &r);
    } else {
        k->down = 0;
        s->cb.delivered(s->cb.core, &r);
    }
    free(km);
}

static void bg_audit__kafka_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    bg_audit_kafka_t *k = opaque;
    if (k->avro) {
        bg_audit__kafka_dr_avro(k, m);
        return;
    }
    bg_audit_sink_t *s = &k->base;
    uintptr_t tag = (uintptr_t)m->_private; /* order << 1 | from_spool */
    k->out[tag & 1]--;
    uint8_t stack[4096], *buf = stack;
    size_t need = 2 + m->key_len + m->len;
    if (need > sizeof stack && !(buf = malloc(need)))
        return;
    bg_audit_rec_t r = {buf, 0, (int)(tag & 1), (uint64_t)(tag >> 1)};
    r.len = (uint32_t)bg_audit_rec_build(buf, need, m->key, m->key_len, m->payload, m->len);
    if (m->err) {
        k->purge = 1;
        s->cb.failed(s->cb.core, &r);
    } else {
        k->down = 0;
        s->cb.delivered(s->cb.core, &r);
    }
    if (buf != stack)
        free(buf);
}

static void bg_audit__kafka_err(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    bg_audit_kafka_t *k = opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        k->down = k->purge = 1;
    bg_log_warn("audit", "audit kafka: %s: %s", rd_kafka_err2name(err), reason);
}

/* librdkafka's own log lines go through busgate's logger (syslog levels). */
static void bg_audit__kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    bg_log_level_t l = level <= 3 ? BG_LOG_ERROR : level <= 5 ? BG_LOG_WARN
                       : level == 6 ? BG_LOG_INFO : BG_LOG_DEBUG;
    bg_log_fields(l, "audit", NULL, 0, "audit kafka: %s: %s", fac, buf);
}

static rd_kafka_resp_err_t bg_audit__kafka_produce_avro(bg_audit_kafka_t *k,
                                                       const bg_audit_rec_t *r, const char *key,
                                                       size_t kl, const char *json, size_t jl)
{
    uint8_t stack[8192], *buf = stack;
    size_t cap = jl + 64 > sizeof stack ? jl + 64 : sizeof stack; /* Avro is smaller */
    bg_audit_kmsg_t *km = malloc(sizeof *km + r->len);
    if (!km || (cap > sizeof stack && !(buf = malloc(cap)))) {
        free(km);
        return RD_KAFKA_RESP_ERR__FAIL;
    }
    size_t n = bg_audit_avro_encode(k->avro, json, jl, buf, cap);
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR__BAD_MSG;
    *km = (bg_audit_kmsg_t){r->order, r->from_spool, r->len};
    memcpy(km->rec, r->data, r->len);
    if (n)
        e = rd_kafka_producev(k->rk, RD_KAFKA_V_RKT(k->rkt), RD_KAFKA_V_KEY(key, kl),
                              RD_KAFKA_V_VALUE(buf, n), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_OPAQUE(km), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        k->out[r->from_spool ? 1 : 0]++;
    else
        free(km);
    if (buf != stack)
        free(buf);
    return e;
}

static rd_kafka_resp_err_t bg_audit__kafka_produce(bg_audit_kafka_t *k, const bg_audit_rec_t *r)
{
    size_t kl, jl;
    const char *key = bg_audit_rec_key(r, &kl), *json = bg_audit_rec_json(r, &jl);
    if (!json)
        return RD_KAFKA_RESP_ERR__BAD_MSG;
    if (k->avro)
        return bg_audit__kafka_produce_avro(k, r, key, kl, json, jl);
    rd_kafka_resp_err_t e = rd_kafka_producev(k->rk, RD_KAFKA_V_RKT(k->rkt), RD_KAFKA_V_KEY(key, kl),
                             RD_KAFKA_V_VALUE((void *)json, jl),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_OPAQUE((void *)(uintptr_t)(r->order << 1 | (r->from_spool ? 1 : 0))), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        k->out[r->from_spool ? 1 : 0]++; /* the delivery report decrements */
    return e;
}

/* Serves callbacks. After a failure, the messages still queued behind it
 * would only fail one by one at their timeout, after newer events had been
 * spooled; purging them now spools them in order (per partition, so per
 * session). In-flight ones may still have been written: a duplicate, never
 * a loss. The purge of in-flight requests completes asynchronously (and a
 * few messages may only fail at message.timeout.ms): the pipeline keeps
 * newer events out of the spool until pending() says none is left. */
static void bg_audit__kafka_serve(bg_audit_kafka_t *k)
{
    rd_kafka_poll(k->rk, 0);
    if (k->purge) {
        k->purge = 0;
        rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(k->rk, 0);
    }
}

static size_t bg_audit__kafka_write(bg_audit_sink_t *s, const bg_audit_rec_t *recs, size_t n)
{
    bg_audit_kafka_t *k = (bg_audit_kafka_t *)s;
    for (size_t i = 0; i < n; i++) {
        rd_kafka_resp_err_t e = bg_audit__kafka_produce(k, &recs[i]);
        /* librdkafka's queue is full: wait for delivery reports (up to
         * ~100 ms, back-pressure into the audit queue) rather than spill a
         * record that would be delivered a moment later. */
        for (int t = 0; e == RD_KAFKA_RESP_ERR__QUEUE_FULL && t < 20; t++) {
            rd_kafka_poll(k->rk, 5);
            e = bg_audit__kafka_produce(k, &recs[i]);
        }
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            bg_log_warn("audit", "audit kafka produce: %s", rd_kafka_err2name(e));
            return i;
        }
    }
    bg_audit__kafka_serve(k);
    return n;
}

static int bg_audit__kafka_flush(bg_audit_sink_t *s, int timeout_ms)
{
    bg_audit_kafka_t *k = (bg_audit_kafka_t *)s;
    return rd_kafka_flush(k->rk, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
}

static void bg_audit__kafka_poll(bg_audit_sink_t *s)
{
    bg_audit__kafka_serve((bg_audit_kafka_t *)s);
}

static size_t bg_audit__kafka_pending(bg_audit_sink_t *s, int from_spool)
{
    return ((bg_audit_kafka_t *)s)->out[from_spool ? 1 : 0];
}

static int bg_audit__kafka_up(bg_audit_sink_t *s) { return !((bg_audit_kafka_t *)s)->down; }

static void bg_audit__kafka_close(bg_audit_sink_t *s)
{
    bg_audit_kafka_t *k = (bg_audit_kafka_t *)s;
    if (rd_kafka_flush(k->rk, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* Purged messages come back as failed delivery reports: spooled. */
        rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(k->rk, 1000);
    }
    rd_kafka_topic_destroy(k->rkt);
    rd_kafka_destroy(k->rk);
    bg_audit_avro_free(k->avro);
    free(k);
}

int bg_audit_kafka_sink_avro(bg_audit_sink_t *s, int32_t schema_id, char *err, size_t errlen)
{
    bg_audit_kafka_t *k = (bg_audit_kafka_t *)s;
    if (!s || strcmp(s->name, "kafka") != 0 || k->avro)
        return -1;
    k->avro = bg_audit_avro_new(schema_id, err, errlen);
    return k->avro ? 0 : -1;
}

static int bg_audit__kafka_set(rd_kafka_conf_t *c, const char *key, const char *val, char *err,
                               size_t errlen)
{
    char why[256];
    if (!val)
        return 0;
    if (rd_kafka_conf_set(c, key, val, why, sizeof why) != RD_KAFKA_CONF_OK) {
        /* never echo the value: it may be the password */
        snprintf(err, errlen, "audit kafka: %s: %s", key, why);
        return -1;
    }
    return 0;
}

static rd_kafka_conf_t *bg_audit__kafka_conf(const bg_audit_kafka_conf_t *kc, char *err,
                                             size_t errlen)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    int bad = bg_audit__kafka_set(c, "bootstrap.servers", kc->bootstrap, err, errlen) ||
              bg_audit__kafka_set(c, "enable.idempotence", "true", err, errlen) ||
              bg_audit__kafka_set(c, "acks", "all", err, errlen) ||
              bg_audit__kafka_set(c, "linger.ms", "5", err, errlen) ||
              bg_audit__kafka_set(c, "message.timeout.ms", BG_AUDIT_KAFKA_MSG_TIMEOUT, err,
                                  errlen) ||
              bg_audit__kafka_set(c, "security.protocol", kc->security_protocol, err, errlen) ||
              bg_audit__kafka_set(c, "sasl.mechanism", kc->sasl_mechanism, err, errlen) ||
              bg_audit__kafka_set(c, "sasl.username", kc->username, err, errlen) ||
              bg_audit__kafka_set(c, "sasl.password", kc->password, err, errlen);
    for (size_t i = 0; !bad && i < kc->nprops; i++)
        bad = bg_audit__kafka_set(c, kc->props[2 * i], kc->props[2 * i + 1], err, errlen);
    if (bad) {
        rd_kafka_conf_destroy(c);
        return NULL;
    }
    return c;
}

bg_audit_sink_t *bg_audit_kafka_sink_new(const bg_audit_kafka_conf_t *kc, const char *topic,
                                         char *err, size_t errlen)
{
    char why[512];
    bg_audit_kafka_t *k = calloc(1, sizeof *k);
    rd_kafka_conf_t *c = k ? bg_audit__kafka_conf(kc, err, errlen) : NULL;
    if (!c) {
        if (!k)
            snprintf(err, errlen, "audit kafka: out of memory");
        free(k);
        return NULL;
    }
    rd_kafka_conf_set_opaque(c, k);
    rd_kafka_conf_set_dr_msg_cb(c, bg_audit__kafka_dr);
    rd_kafka_conf_set_error_cb(c, bg_audit__kafka_err);
    rd_kafka_conf_set_log_cb(c, bg_audit__kafka_log);
    if (!(k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, why, sizeof why))) {
        rd_kafka_conf_destroy(c);
        snprintf(err, errlen, "audit kafka: %s", why);
        free(k);
        return NULL;
    }
    if (!(k->rkt = rd_kafka_topic_new(k->rk, topic, NULL))) {
        snprintf(err, errlen, "audit kafka: topic %s: %s", topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
        rd_kafka_destroy(k->rk);
        free(k);
        return NULL;
    }
    k->base.name = "kafka";
    k->base.write = bg_audit__kafka_write;
    k->base.flush = bg_audit__kafka_flush;
    k->base.poll = bg_audit__kafka_poll;
    k->base.up = bg_audit__kafka_up;
    k->base.pending = bg_audit__kafka_pending;
    k->base.close = bg_audit__kafka_close;
    return &k->base;
}
