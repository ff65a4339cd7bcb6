/* The Kafka sink in Avro mode when librdkafka is destroyed with messages it
 * never reported (at close, and when a fatal error replaces the producer).
 * Each message carries a malloc'ed JSON copy of its record as the opaque;
 * librdkafka frees no opaque, so the sink must report and free what is left.
 *
 * Against librdkafka's mock cluster, a broker round trip of 60 s keeps the
 * records in flight; rd_kafka_purge is replaced (below) by one that does
 * nothing, which is the case the sink guards against: a purge whose reports
 * do not come within the sink's bound. Under LeakSanitizer (BG_SANITIZE) a
 * copy not freed fails the binary; without it the callbacks still show
 * every record reported once, with its bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <string.h>
#include <unistd.h>

/* Purges nothing: the messages stay in flight until the destroy. */
static rd_kafka_resp_err_t bg_audit_test_purge(rd_kafka_t *rk, int flags)
{
    (void)rk;
    (void)flags;
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

#define rd_kafka_purge bg_audit_test_purge
#include "audit/audit_kafka.c"
#undef rd_kafka_purge

#define TOPIC "busgate.audit"
#define NREC 20

typedef struct outcomes_s {
    int delivered, failed, failed_with_bytes, rejected;
    uint64_t orders; /* bit i: a failed record with order i came back */
} outcomes_t;

static void on_delivered(void *core, const bg_audit_rec_t *r)
{
    ((outcomes_t *)core)->delivered++;
}

static void on_failed(void *core, const bg_audit_rec_t *r)
{
    outcomes_t *o = core;
    size_t jl;
    o->failed++;
    if (r->data && bg_audit_rec_json(r, &jl) && strstr(bg_audit_rec_json(r, &jl), "\"decision\"")) {
        o->failed_with_bytes++;
        o->orders |= 1ull << r->order;
    }
}

static void on_rejected(void *core, const bg_audit_rec_t *r, const char *why)
{
    ((outcomes_t *)core)->rejected++;
}

typedef struct env_s {
    rd_kafka_t *mrk;
    rd_kafka_mock_cluster_t *mc;
    bg_audit_sink_t *s;
    outcomes_t o;
} env_t;

/* A sink in Avro mode on a one-broker mock cluster; one record delivered
 * first, so the producer has its id and the metadata before the broker
 * turns slow. */
static void env_start(env_t *e)
{
    char err[512] = "";
    memset(e, 0, sizeof *e);
    e->mrk = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), err, sizeof err);
    assert_non_null(e->mrk);
    e->mc = rd_kafka_mock_cluster_new(e->mrk, 1);
    assert_int_equal(rd_kafka_mock_topic_create(e->mc, TOPIC, 1, 1), 0);
    const char *props[] = {"message.timeout.ms", "120000"};
    bg_audit_kafka_conf_t kc = {.bootstrap = rd_kafka_mock_cluster_bootstraps(e->mc),
                                .props = props, .nprops = 1};
    if (!(e->s = bg_audit_kafka_sink_new(&kc, TOPIC, err, sizeof err)))
        fail_msg("%s", err);
    assert_int_equal(bg_audit_kafka_sink_avro(e->s, -1, err, sizeof err), 0);
    e->s->cb = (bg_audit_sink_cb_t){&e->o, on_delivered, on_failed, on_rejected};
}

/* Writes NREC records (orders 1..NREC) and waits until the broker has them
 * in flight. */
static void env_write_slow(env_t *e)
{
    bg_audit_rec_t recs[NREC];
    uint8_t bufs[NREC][1024];
    for (int i = 0; i < NREC; i++) {
        char json[900];
        bg_audit_event_t ev = {.kind = BG_AUDIT_EV_DECISION, .session_id = "s0",
                               .seq = (uint64_t)i, .has = BG_AUDIT_HAS_SEQ};
        size_t jl = bg_audit_encode_json(&ev, "inst", json, sizeof json);
        assert_true(jl > 0);
        recs[i] = (bg_audit_rec_t){bufs[i], 0, 0, (uint64_t)i + 1};
        recs[i].len = (uint32_t)bg_audit_rec_build(bufs[i], sizeof bufs[i], "s0", 2, json, jl);
        assert_true(recs[i].len > 0);
    }
    assert_int_equal(e->s->write(e->s, recs, 1), 1);
    assert_int_equal(e->s->flush(e->s, 10000), 0);
    assert_int_equal(e->o.delivered, 1);
    rd_kafka_mock_broker_set_rtt(e->mc, 1, 60000);
    assert_int_equal(e->s->write(e->s, recs + 1, NREC - 1), NREC - 1);
    for (int i = 0; i < 10; i++) { /* linger.ms is 5: the request goes out */
        e->s->poll(e->s);
        usleep(50000);
    }
    assert_int_equal(e->s->pending(e->s, 0), NREC - 1);
}

static void env_stop(env_t *e)
{
    rd_kafka_mock_cluster_destroy(e->mc);
    rd_kafka_destroy(e->mrk);
}

/* Close: flush (5 s) and the purge fail to report the records in flight;
 * after the destroy each is reported failed with its record, and freed. */
static void test_close_reports_and_frees_unreported(void **state)
{
    env_t e;
    env_start(&e);
    env_write_slow(&e);
    e.s->close(e.s);
    assert_int_equal(e.o.failed, NREC - 1);
    assert_int_equal(e.o.failed_with_bytes, NREC - 1); /* spoolable, not lost */
    assert_int_equal(e.o.rejected, 0);
    for (int i = 2; i <= NREC; i++)
        assert_true(e.o.orders & (1ull << i));
    env_stop(&e);
}

/* A fatal error replaces the producer; the purge reports nothing within its
 * 10 s wait, so the records are reported (and freed) after the destroy. */
static void test_renewal_reports_and_frees_unreported(void **state)
{
    env_t e;
    env_start(&e);
    env_write_slow(&e);
    bg_audit_kafka_t *k = (bg_audit_kafka_t *)e.s;
    assert_int_equal(rd_kafka_test_fatal_error(k->rk, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                                               "test"),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    for (int i = 0; i < 100 && e.o.failed < NREC - 1; i++) {
        e.s->poll(e.s); /* the error callback, then the renewal */
        usleep(20000);
    }
    assert_int_equal(e.o.failed, NREC - 1);
    assert_int_equal(e.o.failed_with_bytes, NREC - 1);
    assert_int_equal(e.s->pending(e.s, 0), 0);
    e.s->close(e.s);
    env_stop(&e);
}

int main(void)
{
    if (!getenv("BG_AUDIT_TEST_LOG"))
        bg_log_set_level(BG_LOG_OFF);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_close_reports_and_frees_unreported),
        cmocka_unit_test(test_renewal_reports_and_frees_unreported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
