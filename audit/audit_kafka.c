/* Kafka topic sink: librdkafka idempotent producer (acks=all, in-order per
 * partition), key = session id so a session's events stay in one partition.
 * librdkafka runs its own threads; every callback of ours (delivery reports,
 * errors) is served by rd_kafka_poll/flush on the audit thread, so the sink
 * shares nothing with the workers. A record that fails delivery (message
 * timeout, purge at close, fatal error) is handed back to the pipeline, which
 * spools it; one whose content the broker refuses (too large for the topic)
 * is handed back as rejected. After a fatal error (the idempotent producer
 * cannot go on, e.g. its producer id was refused) the producer is replaced
 * by a new one from the same configuration.
 * busgate never creates the audit topic (allow.auto.create.topics is off,
 * whatever the extra properties say): a topic that does not exist is an
 * outage like any other (its events are spooled) and an error in the log
 * that names it, once a minute, and once at start-up from a metadata
 * request made on a thread of its own (busgate does not wait for it). */
#include "audit/audit_sink.h"
#include "audit/audit_avro.h"

#include "broker/log.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Audit wants to notice an outage in seconds, not librdkafka's 5 minutes;
 * a record that times out goes to the spool, nothing is lost. */
#define BG_AUDIT_KAFKA_MSG_TIMEOUT "10000"
/* The start-up look at the topic: tried for this long while no broker
 * answers, in slices short enough for close to wait for. */
#define BG_AUDIT_KAFKA_CHECK_MS 30000
#define BG_AUDIT_KAFKA_CHECK_SLICE_MS 500
/* A missing topic is logged at most this often. */
#define BG_AUDIT_KAFKA_MISSING_LOG_MS 60000

typedef struct bg_audit_kafka_s {
    bg_audit_sink_t base;
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    rd_kafka_conf_t *conf; /* template for a replacement producer */
    char *topic;
    int64_t renew_at;      /* monotonic ms: next try to replace a fatal producer */
    int fatal;             /* the error callback saw a fatal error */
    size_t out[2]; /* produced, no delivery report yet: [0] live, [1] drained */
    int down;  /* all brokers down, until a delivery succeeds */
    int purge; /* a failure was seen: fail the rest of the queue back now */
    bg_audit_avro_t *avro; /* audit.format avro: message values are Avro */
    struct bg_audit_kmsg_s *kmsgs; /* Avro: the opaques librdkafka holds */
    int missing;                   /* the topic was found missing, until a delivery */
    int64_t missing_log_at;        /* monotonic ms: next missing-topic log due */
    pthread_t check_th;            /* the start-up look at the topic (kafka_check) */
    int check_started;
    atomic_int check_stop;
} bg_audit_kafka_t;

/* With Avro values the delivery report cannot rebuild the record from the
 * message, so the record (JSON form) rides along as the opaque. The sink
 * owns it: librdkafka frees no opaque, and a message still unreported when
 * the producer is destroyed never comes back, so every copy handed to
 * librdkafka is also on the sink's list until its report (or the destroy). */
typedef struct bg_audit_kmsg_s {
    struct bg_audit_kmsg_s *prev, *next;
    uint64_t order;
    int from_spool;
    uint32_t len;
    uint8_t rec[];
} bg_audit_kmsg_t;

static void bg_audit__kafka_kmsg_link(bg_audit_kafka_t *k, bg_audit_kmsg_t *km)
{
    km->prev = NULL;
    km->next = k->kmsgs;
    if (k->kmsgs)
        k->kmsgs->prev = km;
    k->kmsgs = km;
}

static void bg_audit__kafka_kmsg_unlink(bg_audit_kafka_t *k, bg_audit_kmsg_t *km)
{
    if (km->prev)
        km->prev->next = km->next;
    else
        k->kmsgs = km->next;
    if (km->next)
        km->next->prev = km->prev;
}

/* Errors about the record itself: sending it again gets the same answer. */
static int bg_audit__kafka_permanent(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || e == RD_KAFKA_RESP_ERR_INVALID_RECORD ||
           e == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE ||
           e == RD_KAFKA_RESP_ERR__BAD_MSG; /* ours: not a record, or no Avro form */
    /* Not INVALID_TIMESTAMP: busgate sets no timestamp, so it means clock
     * skew between this host and the broker, which can be fixed. */
}

/* The topic does not exist: the broker's answer, or librdkafka's once
 * metadata said so. */
static int bg_audit__kafka_missing_err(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || e == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
}

static int64_t bg_audit__kafka_mono_ms(void);

static void bg_audit__kafka_missing_log(const char *topic, const char *how)
{
    bg_log_error("audit",
                 "audit kafka: topic %s does not exist (%s); busgate does not create it: create "
                 "it with its retention (docs/audit.md, \"The audit topic\"); until then its "
                 "events are spooled (audit.spool_dir) or held as audit.on_failure says",
                 topic, how);
}

/* Audit thread. Logged at most once a minute: every record and every drain
 * round fails the same way while the topic is missing. */
static void bg_audit__kafka_missing(bg_audit_kafka_t *k, rd_kafka_resp_err_t e)
{
    int64_t now = bg_audit__kafka_mono_ms();
    k->missing = 1;
    if (now < k->missing_log_at)
        return;
    k->missing_log_at = now + BG_AUDIT_KAFKA_MISSING_LOG_MS;
    bg_audit__kafka_missing_log(k->topic, rd_kafka_err2name(e));
}

/* Reports one outcome to the pipeline. r->data NULL: the record could not
 * be rebuilt (out of memory); the pipeline counts it. */
static void bg_audit__kafka_outcome(bg_audit_kafka_t *k, const bg_audit_rec_t *r,
                                    rd_kafka_resp_err_t e)
{
    bg_audit_sink_t *s = &k->base;
    k->out[r->from_spool ? 1 : 0]--;
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        k->down = 0;
        if (k->missing) {
            k->missing = 0;
            k->missing_log_at = 0;
            bg_log_info("audit", "audit kafka: topic %s exists now: delivering", k->topic);
        }
        s->cb.delivered(s->cb.core, r);
        return;
    }
    if (bg_audit__kafka_missing_err(e))
        bg_audit__kafka_missing(k, e);
    if (bg_audit__kafka_permanent(e))
        s->cb.rejected(s->cb.core, r, rd_kafka_err2name(e));
    else
        s->cb.failed(s->cb.core, r);
}

static void bg_audit__kafka_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    bg_audit_kafka_t *k = opaque;
    if (k->avro) {
        bg_audit_kmsg_t *km = m->_private;
        if (m->err)
            k->purge = 1;
        bg_audit__kafka_kmsg_unlink(k, km);
        bg_audit__kafka_outcome(k, &(bg_audit_rec_t){km->rec, km->len, km->from_spool, km->order},
                                m->err);
        free(km);
        return;
    }
    uintptr_t tag = (uintptr_t)m->_private; /* order << 1 | from_spool */
    uint8_t stack[4096], *buf = stack;
    size_t need = 2 + m->key_len + m->len;
    if (need > sizeof stack)
        buf = malloc(need);
    bg_audit_rec_t r = {buf, 0, (int)(tag & 1), (uint64_t)(tag >> 1)};
    if (buf)
        r.len = (uint32_t)bg_audit_rec_build(buf, need, m->key, m->key_len, m->payload, m->len);
    if (m->err)
        k->purge = 1;
    bg_audit__kafka_outcome(k, &r, m->err);
    if (buf != stack)
        free(buf);
}

static void bg_audit__kafka_err(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    bg_audit_kafka_t *k = opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        k->down = k->purge = 1;
    if (err == RD_KAFKA_RESP_ERR__FATAL)
        k->fatal = 1;
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
    *km = (bg_audit_kmsg_t){NULL, NULL, r->order, r->from_spool, r->len};
    memcpy(km->rec, r->data, r->len);
    if (n)
        e = rd_kafka_producev(k->rk, RD_KAFKA_V_RKT(k->rkt), RD_KAFKA_V_KEY(key, kl),
                              RD_KAFKA_V_VALUE(buf, n), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_OPAQUE(km), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        k->out[r->from_spool ? 1 : 0]++;
        bg_audit__kafka_kmsg_link(k, km);
    } else {
        free(km);
    }
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
static int64_t bg_audit__kafka_mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int bg_audit__kafka_open(bg_audit_kafka_t *k, char *err, size_t errlen);
static void bg_audit__kafka_free(bg_audit_kafka_t *k);
static void bg_audit__kafka_check_join(bg_audit_kafka_t *k);

/* Call after rd_kafka_destroy: no delivery report can come any more, and a
 * record still unreported never will be. Each is reported failed, so the
 * pipeline counts it instead of it vanishing uncounted. With Avro values
 * the sink still holds the record's JSON copy (then freed): a live one goes
 * to the spool like any failed record. Otherwise the bytes are gone with
 * the message: a live one is counted as dropped, a drained one fails its
 * drain round, so the spool is not acked past it. */
static void bg_audit__kafka_orphans(bg_audit_kafka_t *k)
{
    while (k->kmsgs) {
        bg_audit_kmsg_t *km = k->kmsgs;
        bg_audit__kafka_kmsg_unlink(k, km);
        bg_audit__kafka_outcome(k, &(bg_audit_rec_t){km->rec, km->len, km->from_spool, km->order},
                                RD_KAFKA_RESP_ERR__PURGE_QUEUE);
        free(km);
    }
    for (int sp = 0; sp < 2; sp++)
        while (k->out[sp] > 0)
            bg_audit__kafka_outcome(k, &(bg_audit_rec_t){NULL, 0, sp, 0},
                                    RD_KAFKA_RESP_ERR__PURGE_QUEUE);
}

/* A fatal error leaves the producer refusing everything for good. Every
 * record it still holds is failed back (spooled), and a new producer from
 * the same configuration takes over, tried again every 5 s if it cannot be
 * made. Duplicates are possible (the same event ids). A record whose purge
 * is not reported within 10 s is reported failed after the destroy (see
 * kafka_orphans). */
static void bg_audit__kafka_renew(bg_audit_kafka_t *k)
{
    char why[512];
    if (k->rk) {
        rd_kafka_resp_err_t fe = rd_kafka_fatal_error(k->rk, why, sizeof why);
        if (fe == RD_KAFKA_RESP_ERR_NO_ERROR)
            return;
        bg_log_error("audit", "audit kafka: fatal error %s: %s; replacing the producer",
                     rd_kafka_err2name(fe), why);
        rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        for (int i = 0; i < 100 && k->out[0] + k->out[1] > 0; i++)
            rd_kafka_poll(k->rk, 100);
        bg_audit__kafka_check_join(k);
        rd_kafka_topic_destroy(k->rkt);
        rd_kafka_destroy(k->rk); /* serves no callback: what is not reported now never is */
        k->rk = NULL;
        k->rkt = NULL;
        k->down = 1;
        bg_audit__kafka_orphans(k);
    }
    int64_t now = bg_audit__kafka_mono_ms();
    if (now < k->renew_at)
        return;
    k->renew_at = now + 5000;
    if (bg_audit__kafka_open(k, why, sizeof why) != 0)
        bg_log_error("audit", "%s", why);
    else
        bg_log_info("audit", "audit kafka: new producer started");
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
    if (!k->rk || k->fatal) {
        k->fatal = 0;
        bg_audit__kafka_renew(k);
        if (!k->rk)
            return;
    }
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
    if (!k->rk) /* replacing a fatal producer: spooled meanwhile */
        return 0;
    for (size_t i = 0; i < n; i++) {
        rd_kafka_resp_err_t e = bg_audit__kafka_produce(k, &recs[i]);
        /* librdkafka's queue is full: wait for delivery reports (up to
         * ~100 ms, back-pressure into the audit queue) rather than spill a
         * record that would be delivered a moment later. */
        for (int t = 0; e == RD_KAFKA_RESP_ERR__QUEUE_FULL && t < 20; t++) {
            rd_kafka_poll(k->rk, 5);
            e = bg_audit__kafka_produce(k, &recs[i]);
        }
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR && bg_audit__kafka_permanent(e)) {
            k->out[recs[i].from_spool ? 1 : 0]++; /* taken, and its outcome is known */
            bg_audit__kafka_outcome(k, &recs[i], e);
        } else if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            k->fatal |= e == RD_KAFKA_RESP_ERR__FATAL;
            if (bg_audit__kafka_missing_err(e))
                bg_audit__kafka_missing(k, e);
            else
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
    if (!k->rk)
        return 0; /* nothing is pending without a producer */
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
    bg_audit__kafka_check_join(k);
    if (k->rk && rd_kafka_flush(k->rk, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* Purged messages come back as failed delivery reports: spooled. */
        rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(k->rk, 1000);
    }
    /* Destroyed first, as on a renewal (see kafka_orphans). */
    if (k->rkt)
        rd_kafka_topic_destroy(k->rkt);
    if (k->rk)
        rd_kafka_destroy(k->rk);
    k->rkt = NULL;
    k->rk = NULL;
    bg_audit__kafka_orphans(k);
    bg_audit__kafka_free(k);
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
    /* After the extra properties, so none of them can turn it back on: a
     * missing audit topic made by the broker would have its defaults
     * (7 days' retention, min.insync.replicas 1), not the retention the
     * operator set (docs/audit.md, "The audit topic"). */
    if (!bad)
        bad = bg_audit__kafka_set(c, "allow.auto.create.topics", "false", err, errlen);
    if (bad) {
        rd_kafka_conf_destroy(c);
        return NULL;
    }
    return c;
}

/* The start-up look at the topic, on a thread of its own: a metadata
 * request waits for a broker, and busgate does not wait for it. It asks
 * in short slices until a broker answers (at most BG_AUDIT_KAFKA_CHECK_MS),
 * so that kafka_check_join returns soon. It reads k->rk, k->rkt and
 * k->topic only, which stay until the join; librdkafka's calls are
 * thread-safe. Nothing is logged when no broker answers: the outage says
 * so. */
static void *bg_audit__kafka_check_main(void *arg)
{
    bg_audit_kafka_t *k = arg;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR__TIMED_OUT;
    for (int t = 0; t < BG_AUDIT_KAFKA_CHECK_MS / BG_AUDIT_KAFKA_CHECK_SLICE_MS &&
                    !atomic_load(&k->check_stop);
         t++) {
        e = rd_kafka_metadata(k->rk, 0, k->rkt, &md, BG_AUDIT_KAFKA_CHECK_SLICE_MS);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR || !md)
        return NULL;
    const rd_kafka_metadata_topic_t *t = md->topic_cnt == 1 ? &md->topics[0] : NULL;
    if (t && bg_audit__kafka_missing_err(t->err))
        bg_audit__kafka_missing_log(k->topic, "at start-up");
    else if (t && t->err)
        bg_log_warn("audit", "audit kafka: topic %s: %s", k->topic, rd_kafka_err2name(t->err));
    else if (t)
        bg_log_info("audit", "audit kafka: topic %s: %d partition(s)", k->topic, t->partition_cnt);
    rd_kafka_metadata_destroy(md);
    return NULL;
}

/* Waits for the start-up look at the topic to end (within about a
 * slice): before k->rk goes. */
static void bg_audit__kafka_check_join(bg_audit_kafka_t *k)
{
    if (!k->check_started)
        return;
    atomic_store(&k->check_stop, 1);
    pthread_join(k->check_th, NULL);
    k->check_started = 0;
}

/* Starts a producer (and topic handle) from the kept configuration. */
static int bg_audit__kafka_open(bg_audit_kafka_t *k, char *err, size_t errlen)
{
    char why[512];
    rd_kafka_conf_t *c = rd_kafka_conf_dup(k->conf);
    if (!c || !(k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, why, sizeof why))) {
        if (c)
            rd_kafka_conf_destroy(c);
        snprintf(err, errlen, "audit kafka: %s", c ? why : "out of memory");
        return -1;
    }
    if (!(k->rkt = rd_kafka_topic_new(k->rk, k->topic, NULL))) {
        snprintf(err, errlen, "audit kafka: topic %s: %s", k->topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
        rd_kafka_destroy(k->rk);
        k->rk = NULL;
        return -1;
    }
    k->down = 0;
    return 0;
}

static void bg_audit__kafka_free(bg_audit_kafka_t *k)
{
    bg_audit__kafka_check_join(k);
    if (k->rkt)
        rd_kafka_topic_destroy(k->rkt);
    if (k->rk)
        rd_kafka_destroy(k->rk);
    if (k->conf)
        rd_kafka_conf_destroy(k->conf);
    bg_audit_avro_free(k->avro);
    free(k->topic);
    free(k);
}

bg_audit_sink_t *bg_audit_kafka_sink_new(const bg_audit_kafka_conf_t *kc, const char *topic,
                                         char *err, size_t errlen)
{
    bg_audit_kafka_t *k = calloc(1, sizeof *k);
    if (!k || !(k->topic = strdup(topic))) {
        snprintf(err, errlen, "audit kafka: out of memory");
        free(k);
        return NULL;
    }
    if (!(k->conf = bg_audit__kafka_conf(kc, err, errlen))) {
        bg_audit__kafka_free(k);
        return NULL;
    }
    rd_kafka_conf_set_opaque(k->conf, k);
    rd_kafka_conf_set_dr_msg_cb(k->conf, bg_audit__kafka_dr);
    rd_kafka_conf_set_error_cb(k->conf, bg_audit__kafka_err);
    rd_kafka_conf_set_log_cb(k->conf, bg_audit__kafka_log);
    if (bg_audit__kafka_open(k, err, errlen) != 0) {
        bg_audit__kafka_free(k);
        return NULL;
    }
    /* Without the thread only the start-up log line is missing. */
    k->check_started = pthread_create(&k->check_th, NULL, bg_audit__kafka_check_main, k) == 0;
    k->base.name = "kafka";
    k->base.write = bg_audit__kafka_write;
    k->base.flush = bg_audit__kafka_flush;
    k->base.poll = bg_audit__kafka_poll;
    k->base.up = bg_audit__kafka_up;
    k->base.pending = bg_audit__kafka_pending;
    k->base.close = bg_audit__kafka_close;
    return &k->base;
}
