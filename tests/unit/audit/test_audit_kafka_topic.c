/* The audit Kafka sink and its topic: busgate never has the broker create
 * it, and a missing topic is an outage that the log names.
 *
 * A topic a Metadata request makes a broker create (Kafka's
 * auto.create.topics.enable, on by default) gets the broker's defaults,
 * 7 days' retention and min.insync.replicas 1, not the retention the
 * operator must set on it (docs/audit.md, "The audit topic"), and
 * librdkafka's producer asks for creation by default. librdkafka's mock
 * cluster cannot show it (it speaks Metadata v0-2, which has no such
 * flag, and creates whatever a request names), so a fake broker here
 * answers ApiVersions, InitProducerId and Metadata v4-8 (every topic
 * unknown) and records the AllowAutoTopicCreation flag of every Metadata
 * request that names the topic. The sink is driven without the pipeline;
 * on it too: a record librdkafka refuses at produce, and brokers all down.
 * What the whole of busgate does with a missing topic against a real
 * broker: tests/integration/test_audit_missing_topic.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "audit/audit_kafka.c"

#define BG_T_TOPIC "busgate.audit"
#define BG_T_FAKE_CONNS 8

typedef struct bg_t_fake_s {
    int lfd, port;
    pthread_t th;
    atomic_int stop;
    atomic_int named;      /* Metadata requests that named BG_T_TOPIC */
    atomic_int auto_asked; /* ... of them with AllowAutoTopicCreation true */
} bg_t_fake_t;

typedef struct {
    uint8_t b[512];
    size_t n;
} bg_t_out_t;

static void bg_t_put(bg_t_out_t *o, const void *p, size_t n)
{
    if (o->n + n <= sizeof o->b)
        memcpy(o->b + o->n, p, n);
    o->n += n;
}

static void bg_t_put16(bg_t_out_t *o, int16_t v)
{
    uint8_t x[2] = {(uint8_t)((uint16_t)v >> 8), (uint8_t)v};
    bg_t_put(o, x, 2);
}

static void bg_t_put32(bg_t_out_t *o, int32_t v)
{
    uint32_t u = (uint32_t)v;
    uint8_t x[4] = {(uint8_t)(u >> 24), (uint8_t)(u >> 16), (uint8_t)(u >> 8), (uint8_t)u};
    bg_t_put(o, x, 4);
}

static void bg_t_putstr(bg_t_out_t *o, const char *s, size_t n)
{
    bg_t_put16(o, (int16_t)n);
    bg_t_put(o, s, n);
}

static int16_t bg_t_get16(const uint8_t *p)
{
    return (int16_t)((uint16_t)p[0] << 8 | p[1]);
}

static int32_t bg_t_get32(const uint8_t *p)
{
    return (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
}

/* Sends o (a response body after the correlation id) as one frame. */
static void bg_t_reply(int fd, int32_t corr, const bg_t_out_t *o)
{
    bg_t_out_t f = {.n = 0};
    bg_t_put32(&f, (int32_t)(o->n + 4));
    bg_t_put32(&f, corr);
    bg_t_put(&f, o->b, o->n);
    if (f.n <= sizeof f.b)
        (void)send(fd, f.b, f.n, MSG_NOSIGNAL);
}

/* Metadata v4-8 (non-flexible): records whether it names BG_T_TOPIC and asks
 * for creation, and answers every topic it names UNKNOWN_TOPIC_OR_PART. */
static void bg_t_fake_metadata(bg_t_fake_t *fk, int fd, int16_t ver, int32_t corr, const uint8_t *p,
                               const uint8_t *end)
{
    bg_t_out_t o = {.n = 0};
    int32_t n = p + 4 <= end ? bg_t_get32(p) : 0;
    const uint8_t *names = p + 4, *q = names;
    int named = 0;
    for (int32_t i = 0; i < n && q + 2 <= end; i++) {
        int16_t l = bg_t_get16(q);
        named |= l == (int16_t)strlen(BG_T_TOPIC) && q + 2 + l <= end &&
                 memcmp(q + 2, BG_T_TOPIC, l) == 0;
        q += 2 + (l > 0 ? l : 0);
    }
    if (named && q < end) {
        atomic_fetch_add(&fk->named, 1);
        if (*q)
            atomic_fetch_add(&fk->auto_asked, 1);
    }
    bg_t_put32(&o, 0); /* throttle */
    bg_t_put32(&o, 1); /* one broker: this one, node 1 */
    bg_t_put32(&o, 1), bg_t_putstr(&o, "127.0.0.1", 9), bg_t_put32(&o, fk->port),
        bg_t_put16(&o, -1);
    bg_t_put16(&o, -1); /* no cluster id */
    bg_t_put32(&o, 1);  /* controller */
    bg_t_put32(&o, n > 0 ? n : 0);
    q = names;
    for (int32_t i = 0; i < n && q + 2 <= end; i++) {
        int16_t l = bg_t_get16(q);
        bg_t_put16(&o, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
        bg_t_putstr(&o, (const char *)q + 2, l > 0 ? (size_t)l : 0);
        uint8_t internal = 0;
        bg_t_put(&o, &internal, 1);
        bg_t_put32(&o, 0); /* no partitions */
        if (ver >= 8)
            bg_t_put32(&o, INT32_MIN); /* topic authorized operations */
        q += 2 + (l > 0 ? l : 0);
    }
    if (ver >= 8)
        bg_t_put32(&o, INT32_MIN); /* cluster authorized operations */
    bg_t_reply(fd, corr, &o);
}

/* One request frame (after its size field). */
static void bg_t_fake_request(bg_t_fake_t *fk, int fd, const uint8_t *p, size_t len)
{
    if (len < 10)
        return;
    int16_t api = bg_t_get16(p), ver = bg_t_get16(p + 2);
    int32_t corr = bg_t_get32(p + 4);
    int16_t cid = bg_t_get16(p + 8);
    const uint8_t *body = p + 10 + (cid > 0 ? cid : 0), *end = p + len;
    bg_t_out_t o = {.n = 0};
    if (api == 18 && ver > 0) { /* UNSUPPORTED_VERSION in the v0 layout: v0 comes next */
        bg_t_put16(&o, 35), bg_t_put32(&o, 1), bg_t_put16(&o, 18), bg_t_put16(&o, 0),
            bg_t_put16(&o, 0);
    } else if (api == 18) {
        bg_t_put16(&o, 0), bg_t_put32(&o, 3);
        bg_t_put16(&o, 18), bg_t_put16(&o, 0), bg_t_put16(&o, 0);
        bg_t_put16(&o, 3), bg_t_put16(&o, 4), bg_t_put16(&o, 8);
        bg_t_put16(&o, 22), bg_t_put16(&o, 0), bg_t_put16(&o, 1);
    } else if (api == 22) { /* InitProducerId v0-1: producer id 1, epoch 0 */
        bg_t_put32(&o, 0), bg_t_put16(&o, 0), bg_t_put32(&o, 0), bg_t_put32(&o, 1),
            bg_t_put16(&o, 0);
    } else if (api == 3 && body <= end) {
        bg_t_fake_metadata(fk, fd, ver, corr, body, end);
        return;
    } else {
        return; /* left unanswered */
    }
    bg_t_reply(fd, corr, &o);
}

/* Reads whole frames from fd into buf (have bytes held); 0 when closed. */
static int bg_t_fake_read(bg_t_fake_t *fk, int fd, uint8_t *buf, size_t *have)
{
    ssize_t r = recv(fd, buf + *have, 65536 - *have, 0);
    if (r <= 0)
        return 0;
    *have += (size_t)r;
    while (*have >= 4) {
        int32_t n = bg_t_get32(buf);
        if (n < 0 || n > 65536 - 4)
            return 0;
        if (*have < 4 + (size_t)n)
            break;
        bg_t_fake_request(fk, fd, buf + 4, (size_t)n);
        memmove(buf, buf + 4 + n, *have - 4 - (size_t)n);
        *have -= 4 + (size_t)n;
    }
    return 1;
}

static void *bg_t_fake_main(void *arg)
{
    bg_t_fake_t *fk = arg;
    struct pollfd pf[1 + BG_T_FAKE_CONNS];
    static uint8_t bufs[BG_T_FAKE_CONNS][65536];
    size_t have[BG_T_FAKE_CONNS] = {0};
    int nc = 0;
    pf[0] = (struct pollfd){.fd = fk->lfd, .events = POLLIN};
    while (!atomic_load(&fk->stop)) {
        if (poll(pf, 1 + (nfds_t)nc, 100) <= 0)
            continue;
        for (int i = 0; i < nc; i++)
            if (pf[1 + i].revents && !bg_t_fake_read(fk, pf[1 + i].fd, bufs[i], &have[i])) {
                close(pf[1 + i].fd);
                pf[1 + i].fd = -1; /* poll skips it */
            }
        if ((pf[0].revents & POLLIN) && nc < BG_T_FAKE_CONNS) {
            int fd = accept(fk->lfd, NULL, NULL);
            if (fd >= 0)
                pf[1 + nc++] = (struct pollfd){.fd = fd, .events = POLLIN};
        }
    }
    for (int i = 0; i < nc; i++)
        if (pf[1 + i].fd >= 0)
            close(pf[1 + i].fd);
    return NULL;
}

static void bg_t_fake_start(bg_t_fake_t *fk)
{
    memset(fk, 0, sizeof *fk);
    fk->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    assert_int_equal(bind(fk->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fk->lfd, 8), 0);
    assert_int_equal(getsockname(fk->lfd, (struct sockaddr *)&a, &al), 0);
    fk->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&fk->th, NULL, bg_t_fake_main, fk), 0);
}

static void bg_t_fake_stop(bg_t_fake_t *fk)
{
    atomic_store(&fk->stop, 1);
    pthread_join(fk->th, NULL);
    close(fk->lfd);
}

/* ---- the sink's outcomes and log ---- */

typedef struct bg_t_outcomes_s {
    atomic_int delivered, failed, rejected;
} bg_t_outcomes_t;

static void bg_t_on_delivered(void *core, const bg_audit_rec_t *r)
{
    ((bg_t_outcomes_t *)core)->delivered++;
}
static void bg_t_on_failed(void *core, const bg_audit_rec_t *r)
{
    ((bg_t_outcomes_t *)core)->failed++;
}
static void bg_t_on_rejected(void *core, const bg_audit_rec_t *r, const char *why)
{
    ((bg_t_outcomes_t *)core)->rejected++;
}

static char bg_t_log_path[4096];

/* Lines of the log file at path that hold both a and b. */
static int bg_t_log_lines(const char *path, const char *a, const char *b)
{
    char *t = calloc(1, 1 << 20);
    assert_non_null(t);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(t, 1, (1 << 20) - 1, f);
    fclose(f);
    t[n] = '\0';
    int lines = 0;
    for (char *l = strtok(t, "\n"); l; l = strtok(NULL, "\n"))
        lines += strstr(l, a) && strstr(l, b);
    free(t);
    return lines;
}

#define BG_T_WAIT_UNTIL(cond)                                                                      \
    do {                                                                                           \
        int ok_ = 0;                                                                               \
        for (int w_ = 0; w_ < 1500 && !(ok_ = (cond)); w_++)                                       \
            usleep(10000);                                                                         \
        assert_true(ok_);                                                                          \
    } while (0)

/* A sink on the fake broker with props; its log goes to bg_t_log_path. */
static bg_audit_sink_t *bg_t_sink_start(bg_t_fake_t *fk, bg_t_outcomes_t *o,
                                        const char *const *props, size_t nprops, FILE **logf)
{
    char boot[64], err[512] = "";
    snprintf(boot, sizeof boot, "127.0.0.1:%d", fk->port);
    snprintf(bg_t_log_path, sizeof bg_t_log_path, "/tmp/bg-audit-kafka-topic-XXXXXX");
    int fd = mkstemp(bg_t_log_path);
    assert_true(fd >= 0);
    *logf = fdopen(fd, "w");
    bg_log_set_fd(fd);
    bg_log_set_level(BG_LOG_INFO);
    bg_audit_kafka_conf_t kc = {.bootstrap = boot, .props = props, .nprops = nprops};
    bg_audit_sink_t *s = bg_audit_kafka_sink_new(&kc, BG_T_TOPIC, err, sizeof err);
    if (!s)
        fail_msg("%s", err);
    s->cb = (bg_audit_sink_cb_t){o, bg_t_on_delivered, bg_t_on_failed, bg_t_on_rejected};
    return s;
}

static void bg_t_sink_stop(bg_audit_sink_t *s, FILE *logf)
{
    s->close(s);
    bg_log_set_level(BG_LOG_OFF);
    bg_log_set_fd(2);
    fclose(logf);
    unlink(bg_t_log_path);
}

/* Before, every Metadata request of the producer asked the broker to
 * create the topic, also the one at start-up; now none does, not even
 * when the extra properties ask for it, and the start-up look at the
 * topic logs that it is missing. */
static void test_topic_is_never_created(void **state)
{
    (void)state;
    bg_t_fake_t fk;
    bg_t_fake_start(&fk);
    bg_t_outcomes_t o = {0};
    FILE *logf;
    const char *props[] = {"allow.auto.create.topics", "true"};
    bg_audit_sink_t *s = bg_t_sink_start(&fk, &o, props, 1, &logf);
    BG_T_WAIT_UNTIL(atomic_load(&fk.named) > 0);
    assert_int_equal(atomic_load(&fk.auto_asked), 0);
    BG_T_WAIT_UNTIL(bg_t_log_lines(bg_t_log_path,
                                   "topic " BG_T_TOPIC " does not exist (at start-up)",
                                   "create it") == 1);
    assert_int_equal(atomic_load(&fk.auto_asked), 0);
    bg_t_sink_stop(s, logf);
    bg_t_fake_stop(&fk);
}

/* Records for a missing topic fail (the pipeline spools them), and the
 * log names the topic once a minute, not once a record or a write. */
static void test_missing_topic_fails_records_and_is_logged_once(void **state)
{
    (void)state;
    bg_t_fake_t fk;
    bg_t_fake_start(&fk);
    bg_t_outcomes_t o = {0};
    FILE *logf;
    /* No propagation window: librdkafka takes the topic for missing at the
     * first answer, not 30 s after the producer started. */
    const char *props[] = {"topic.metadata.propagation.max.ms", "0"};
    bg_audit_sink_t *s = bg_t_sink_start(&fk, &o, props, 1, &logf);
    uint8_t rec[64];
    static const char json[] = "{\"kind\":\"decision\"}";
    bg_audit_rec_t r = {
        rec, (uint32_t)bg_audit_rec_build(rec, sizeof rec, "s1", 2, json, sizeof json - 1), 0, 1};
    /* Taken while librdkafka does not know yet, failed once it does; or
     * refused at once when it knew already. */
    size_t taken = s->write(s, &r, 1);
    BG_T_WAIT_UNTIL(
        (s->poll(s), atomic_load(&o.failed) == (int)taken &&
                         bg_t_log_lines(bg_t_log_path, "topic " BG_T_TOPIC " does not exist (",
                                        "UNKNOWN_TOPIC") == 1));
    r.order = 2;
    assert_int_equal(s->write(s, &r, 1), 0); /* librdkafka knows now: refused */
    s->poll(s);
    assert_int_equal(atomic_load(&o.delivered), 0);
    assert_int_equal(
        bg_t_log_lines(bg_t_log_path, "topic " BG_T_TOPIC " does not exist (", "UNKNOWN_TOPIC"), 1);
    bg_t_sink_stop(s, logf);
    bg_t_fake_stop(&fk);
}

/* A record librdkafka refuses at once for its content (larger than
 * message.max.bytes) is taken, reported rejected, and leaves nothing
 * pending. Before its outcome is reported the sink counts it as produced:
 * without that count the report took the pending count below zero (it
 * wraps), and the pipeline, which waits for no live record pending before
 * it spools or drains, would have parked every later record for ever. */
static void test_record_refused_at_produce_is_rejected_not_pending(void **state)
{
    (void)state;
    bg_t_fake_t fk;
    bg_t_fake_start(&fk);
    bg_t_outcomes_t o = {0};
    FILE *logf;
    const char *props[] = {"message.max.bytes", "1000"};
    bg_audit_sink_t *s = bg_t_sink_start(&fk, &o, props, 1, &logf);
    static char json[2100];
    memset(json, ' ', sizeof json - 1);
    json[0] = '{', json[sizeof json - 2] = '}';
    static uint8_t rec[2200];
    bg_audit_rec_t r = {
        rec, (uint32_t)bg_audit_rec_build(rec, sizeof rec, "s1", 2, json, sizeof json - 1), 0, 1};
    assert_true(r.len > 0);
    assert_int_equal(s->write(s, &r, 1), 1);
    assert_int_equal(atomic_load(&o.rejected), 1);
    assert_int_equal(atomic_load(&o.failed), 0);
    assert_int_equal(s->pending(s, 0), 0);
    r.from_spool = 1; /* a drained one alike */
    assert_int_equal(s->write(s, &r, 1), 1);
    assert_int_equal(atomic_load(&o.rejected), 2);
    assert_int_equal(s->pending(s, 1), 0);
    assert_int_equal(s->pending(s, 0), 0);
    bg_t_sink_stop(s, logf);
    bg_t_fake_stop(&fk);
}

/* No broker answers (the port is closed): the sink says it is down, so
 * the pipeline spools new records at once instead of handing them to
 * librdkafka, where they would wait out message.timeout.ms (10 s) parked
 * in memory, up to the queue's bound and then refused or dropped. */
static void test_all_brokers_down_is_down(void **state)
{
    (void)state;
    bg_t_fake_t fk;
    bg_t_fake_start(&fk);
    bg_t_fake_stop(&fk); /* its port is closed now */
    bg_t_outcomes_t o = {0};
    FILE *logf;
    bg_audit_sink_t *s = bg_t_sink_start(&fk, &o, NULL, 0, &logf);
    assert_int_equal(s->up(s), 1); /* nothing known yet */
    BG_T_WAIT_UNTIL((s->poll(s), s->up(s) == 0));
    bg_t_sink_stop(s, logf);
}

int main(void)
{
    bg_log_set_level(BG_LOG_OFF);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topic_is_never_created),
        cmocka_unit_test(test_missing_topic_fails_records_and_is_logged_once),
        cmocka_unit_test(test_record_refused_at_produce_is_rejected_not_pending),
        cmocka_unit_test(test_all_brokers_down_is_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
