/* Upstream responses through a whole session (test_kafka_session_util.h):
 * their size limit is kafka.max_response_bytes, not the request limit
 * kafka.max_frame_bytes; a decoded response's memory is sized from the
 * response itself; a response that breaks either limit, or whose body ends
 * before its frame, closes the session with nothing of it sent on. Two
 * responses in one read, a response whose first bytes or last bytes come
 * alone, and a request from the client while a response is spliced each
 * reach the client as the broker sent them, the Metadata one filtered. */
#include "test_kafka_session_util.h"

/* ---- Metadata v1 ---- */

typedef struct {
    int ntopics, nparts; /* every third topic is keep-NNN, the rest hide-NNN */
    int32_t node7_port;  /* when not 0: broker 7 too, at 127.0.0.1:node7_port */
} bg_t_md_t;

/* A Metadata v1 response body: broker 0 at 127.0.0.1:port, the topics of
 * md, each partition led by node 0 with three replicas (as a cluster with
 * replication factor 3 answers). */
static void bg_t_metadata_v1(bg_t_buf_t *b, int port, const bg_t_md_t *md)
{
    bg_t_i32(b, md->node7_port ? 2 : 1);
    bg_t_i32(b, 0), bg_t_str(b, "127.0.0.1"), bg_t_i32(b, port), bg_t_str(b, NULL);
    if (md->node7_port)
        bg_t_i32(b, 7), bg_t_str(b, "127.0.0.1"), bg_t_i32(b, md->node7_port), bg_t_str(b, NULL);
    bg_t_i32(b, 0); /* controller */
    bg_t_i32(b, md->ntopics);
    for (int t = 0; t < md->ntopics; t++) {
        char name[32];
        snprintf(name, sizeof name, "%s-%03d", t % 3 == 0 ? "keep" : "hide", t);
        bg_t_i16(b, 0), bg_t_str(b, name), bg_t_i8(b, 0);
        bg_t_i32(b, md->nparts);
        for (int p = 0; p < md->nparts; p++) {
            bg_t_i16(b, 0), bg_t_i32(b, p), bg_t_i32(b, 0);
            bg_t_i32(b, 3), bg_t_i32(b, 0), bg_t_i32(b, 1), bg_t_i32(b, 2); /* replicas */
            bg_t_i32(b, 3), bg_t_i32(b, 0), bg_t_i32(b, 1), bg_t_i32(b, 2); /* isr */
        }
    }
}

/* Reads the Metadata v1 response the client got (payload after the size
 * field): 1 when it lists broker 0 at busgate's port for node 0 and exactly
 * the keep-NNN topics of md, each with all its partitions. */
static int bg_t_check_filtered(bg_t_run_t *r, const bg_t_buf_t *f, int32_t corr,
                               const bg_t_md_t *md)
{
    const uint8_t *p = f->p, *end = f->p + f->len;
#define BG_T_NEED(n)                                                                            \
    if ((size_t)(end - p) < (size_t)(n))                                                       \
    return bg_t_check(r, 0, "the Metadata response ends early (%zu bytes)", f->len)
    BG_T_NEED(8);
    if (!bg_t_check(r, bg_t_get_i32(p) == corr, "wrong correlation id"))
        return 0;
    int32_t nb = bg_t_get_i32(p + 4);
    p += 8;
    if (!bg_t_check(r, nb == 1, "%d brokers, expected 1", nb))
        return 0;
    BG_T_NEED(6);
    int32_t node = bg_t_get_i32(p);
    int16_t hl = bg_t_get_i16(p + 4);
    p += 6;
    BG_T_NEED(hl + 6);
    int host_ok = hl == 9 && memcmp(p, "127.0.0.1", 9) == 0;
    int32_t port = bg_t_get_i32(p + hl);
    p += hl + 4 + 2; /* rack: null */
    if (!bg_t_check(r, node == 0 && host_ok && port == r->base_port,
                    "broker %d at port %d, expected node 0 at 127.0.0.1:%d", node, port,
                    r->base_port))
        return 0;
    BG_T_NEED(8);
    int32_t nt = bg_t_get_i32(p + 4);
    p += 8;
    int want = (md->ntopics + 2) / 3;
    if (!bg_t_check(r, nt == want, "%d topics, expected the %d keep-* ones", nt, want))
        return 0;
    for (int32_t t = 0; t < nt; t++) {
        BG_T_NEED(4);
        int16_t nl = bg_t_get_i16(p + 2);
        p += 4;
        BG_T_NEED(nl + 5);
        char name[64] = "";
        if (nl > 0 && nl < (int16_t)sizeof name)
            memcpy(name, p, (size_t)nl);
        int32_t np = bg_t_get_i32(p + nl + 1);
        p += nl + 5;
        if (!bg_t_check(r, strncmp(name, "keep-", 5) == 0 && np == md->nparts,
                        "topic '%s' with %d partitions", name, np))
            return 0;
        for (int32_t k = 0; k < np; k++) {
            BG_T_NEED(14);
            int32_t nrep = bg_t_get_i32(p + 10);
            p += 14;
            BG_T_NEED((size_t)nrep * 4 + 4);
            p += (size_t)nrep * 4;
            int32_t nisr = bg_t_get_i32(p);
            p += 4;
            BG_T_NEED((size_t)nisr * 4);
            p += (size_t)nisr * 4;
        }
    }
#undef BG_T_NEED
    return bg_t_check(r, p == end, "%zu bytes after the Metadata response", (size_t)(end - p));
}

/* One round on the client's fd: it asks for every topic (Metadata v1,
 * correlation id corr), the broker answers with md (its body left in b),
 * the client gets the keep-* topics. 1 when it did. */
static int bg_t_metadata_round(bg_t_run_t *r, int fd, int32_t corr, const bg_t_md_t *md,
                               bg_t_buf_t *b)
{
    bg_t_buf_t req = {0}, f = {0};
    bg_t_i32(&req, -1); /* v1: null = all topics */
    bg_t_cli_send(fd, 3, 1, corr, &req);
    bg_t_buf_free(&req);
    bg_t_req_t q = {0};
    int ok = 0;
    if (bg_t_up_next(r, 3, &q)) {
        b->len = 0;
        bg_t_metadata_v1(b, r->up_port, md);
        bg_t_up_reply(q.fd, q.corr, b);
        int rc = bg_t_read_frame(fd, &f, BG_T_WAIT_MS);
        ok = bg_t_check(r, rc > 0, "no Metadata response (%s)",
                        rc == 0 ? "busgate closed the connection" : "timeout") &&
             bg_t_check_filtered(r, &f, corr, md);
    }
    bg_t_buf_free(&f);
    return ok;
}

static void bg_t_scenario_metadata(bg_t_run_t *r)
{
    int fd = bg_t_cli_login(r);
    if (fd < 0)
        return;
    bg_t_buf_t b = {0};
    bg_t_metadata_round(r, fd, 10, r->arg, &b);
    bg_t_buf_free(&b);
    close(fd);
}

/* A Metadata response 60 times max_frame_bytes (4 KiB; 250 KB) is filtered
 * and delivered: responses are not held to the request limit. Before, every
 * response frame above max_frame_bytes + 1 KiB failed the upstream
 * connection ("response frame too large"). */
static void test_metadata_above_max_frame_bytes_is_filtered_and_delivered(void **state)
{
    (void)state;
    static const bg_t_md_t md = {.ntopics = 60, .nparts = 100};
    bg_t_run_t r = {.kafka_extra = "  max_frame_bytes: 4KiB\n",
                    .scenario = bg_t_scenario_metadata,
                    .arg = &md};
    bg_t_run(&r);
    bg_t_finish(&r, NULL);
}

/* A Metadata response of 1.04 MB, just within max_frame_bytes (1 MiB) + 1 KiB,
 * decodes to about 6.5 MB: more than the 5 MiB (4 x max_frame_bytes + 1 MiB)
 * a response's decoded tree was held to, so it was logged as "malformed
 * upstream response ... arena limit" and the session closed. Its memory is
 * now sized from the response itself: delivered. */
static void test_metadata_decoded_past_the_request_arena_is_delivered(void **state)
{
    (void)state;
    static const bg_t_md_t md = {.ntopics = 240, .nparts = 103};
    bg_t_run_t r = {.kafka_extra = "  max_frame_bytes: 1MiB\n",
                    .scenario = bg_t_scenario_metadata,
                    .arg = &md};
    bg_t_run(&r);
    bg_t_finish(&r, NULL);
}

/* ---- Fetch v4, cut through ---- */

static void bg_t_fetch_v4_req(bg_t_buf_t *b)
{
    bg_t_i32(b, -1), bg_t_i32(b, 500), bg_t_i32(b, 1), bg_t_i32(b, 1 << 20), bg_t_i8(b, 0);
    bg_t_i32(b, 1), bg_t_str(b, "keep-000");
    bg_t_i32(b, 1), bg_t_i32(b, 0), bg_t_i64(b, 0), bg_t_i32(b, 1 << 20);
}

/* A Fetch v4 response body for keep-000 partition 0 with nrec bytes of
 * records (never parsed on the way: the response is cut through). */
static void bg_t_fetch_v4_resp(bg_t_buf_t *b, size_t nrec)
{
    bg_t_i32(b, 0); /* throttle */
    bg_t_i32(b, 1), bg_t_str(b, "keep-000");
    bg_t_i32(b, 1), bg_t_i32(b, 0), bg_t_i16(b, 0), bg_t_i64(b, 0), bg_t_i64(b, 0);
    bg_t_i32(b, -1); /* aborted transactions: null */
    bg_t_i32(b, (int32_t)nrec);
    for (size_t i = 0; i < nrec; i++)
        bg_t_i8(b, (int8_t)(i * 31));
}

#define BG_T_MAX_RESPONSE (256u * 1024)

/* A 200 KB fetch response (50 times max_frame_bytes) reaches the client
 * byte for byte; the next announces max_response_bytes + 1 and sends part
 * of itself: the session closes and the client gets none of it. */
static void bg_t_scenario_too_large(bg_t_run_t *r)
{
    int fd = bg_t_cli_login(r);
    if (fd < 0)
        return;
    bg_t_buf_t req = {0}, body = {0}, f = {0};
    bg_t_fetch_v4_req(&req);
    bg_t_cli_send(fd, 1, 4, 20, &req);
    bg_t_req_t q = {0};
    if (!bg_t_up_next(r, 1, &q))
        goto out;
    bg_t_fetch_v4_resp(&body, 200000);
    bg_t_up_reply(q.fd, q.corr, &body);
    int rc = bg_t_read_frame(fd, &f, BG_T_WAIT_MS);
    if (!bg_t_check(r, rc > 0 && f.len == 4 + body.len && bg_t_get_i32(f.p) == 20 &&
                           memcmp(f.p + 4, body.p, body.len) == 0,
                    "the 200 KB fetch response did not arrive as sent (rc %d, %zu bytes)", rc,
                    f.len))
        goto out;
    bg_t_cli_send(fd, 1, 4, 21, &req);
    if (!bg_t_up_next(r, 1, &q))
        goto out;
    bg_t_buf_t raw = {0};
    bg_t_i32(&raw, (int32_t)BG_T_MAX_RESPONSE + 1);
    bg_t_i32(&raw, q.corr);
    bg_t_put(&raw, body.p, 4096);
    bg_t_up_send_raw(q.fd, raw.p, raw.len);
    bg_t_buf_free(&raw);
    bg_t_check(r, bg_t_cli_closed(fd),
               "the client got bytes of a response above max_response_bytes, or stayed "
               "connected");
out:
    bg_t_buf_free(&req);
    bg_t_buf_free(&body);
    bg_t_buf_free(&f);
    close(fd);
}

/* A broker the upstream names at a port outside 1..65535 (70000 here) is
 * not served: left out of the client's Metadata. Cut to 16 bits (4464)
 * the port was dialled for that node's connections, and the node was
 * advertised on busgate's port for it. */
static void test_broker_port_outside_tcp_is_not_served(void **state)
{
    (void)state;
    static const bg_t_md_t md = {.ntopics = 3, .nparts = 1, .node7_port = 70000};
    static const char *const want[] = {"broker 7: the broker names port 70000; not served", NULL};
    bg_t_run_t r = {.scenario = bg_t_scenario_metadata, .arg = &md};
    bg_t_run(&r);
    bg_t_finish(&r, want);
}

/* max_response_bytes bounds responses on its own: above max_frame_bytes
 * they pass, above max_response_bytes (a broker announcing a frame it should
 * not) the session is closed before any byte of it is sent on. */
static void test_response_above_max_response_bytes_fails_closed(void **state)
{
    (void)state;
    bg_t_run_t r = {.kafka_extra = "  max_frame_bytes: 4KiB\n"
                                   "  max_response_bytes: 256KiB\n",
                    .scenario = bg_t_scenario_too_large};
    bg_t_run(&r);
    bg_t_finish(&r, (const char *[]){"response frame larger than allowed (size = 262145, "
                                     "limit 262144: kafka.max_response_bytes)",
                                     NULL});
}

/* ---- a body shorter than its frame ---- */

/* One Metadata response as it should be, then one with 3 bytes after its
 * body: the first is delivered, the second closes the session unsent. */
static void bg_t_scenario_trailing(bg_t_run_t *r)
{
    static const bg_t_md_t md = {.ntopics = 3, .nparts = 2};
    int fd = bg_t_cli_login(r);
    if (fd < 0)
        return;
    bg_t_buf_t b = {0}, req = {0};
    bg_t_req_t q = {0};
    if (!bg_t_metadata_round(r, fd, 30, &md, &b))
        goto out;
    bg_t_i32(&req, -1);
    bg_t_cli_send(fd, 3, 1, 31, &req);
    if (!bg_t_up_next(r, 3, &q))
        goto out;
    bg_t_put(&b, "\x01\x02\x03", 3);
    bg_t_up_reply(q.fd, q.corr, &b);
    bg_t_check(r, bg_t_cli_closed(fd),
               "a Metadata response with bytes after its body was sent on, or the session "
               "stayed open");
out:
    bg_t_buf_free(&b);
    bg_t_buf_free(&req);
    close(fd);
}

/* A response whose body ends before its frame (a version mismatch or a
 * desynchronised broker) is refused as a malformed one is; before, the
 * rest was dropped and the re-encoded body sent on. */
static void test_response_with_bytes_after_the_body_fails_closed(void **state)
{
    (void)state;
    bg_t_run_t r = {.scenario = bg_t_scenario_trailing};
    bg_t_run(&r);
    bg_t_finish(&r, (const char *[]){"malformed upstream response: api 3 version 1",
                                     "3 bytes after the body", NULL});
}

/* ---- a recycled entry's arena ---- */

#define BG_T_INFLATING_NAMES 32000

/* A large Metadata response (it raises its entry's arena limit to 16 times
 * its size), then, on the same connection and so the same recycled entry, a
 * Metadata v1 request of 64 KB naming 32,000 empty topics: decoded, it
 * needs more than the request limit (4 x max_frame_bytes + 1 MiB), which
 * the entry must be back to. Before the reset, the raised limit let it
 * through. */
static void bg_t_scenario_recycled(bg_t_run_t *r)
{
    static const bg_t_md_t md = {.ntopics = 60, .nparts = 100};
    int fd = bg_t_cli_login(r);
    if (fd < 0)
        return;
    bg_t_buf_t b = {0}, req = {0};
    if (!bg_t_metadata_round(r, fd, 40, &md, &b))
        goto out;
    bg_t_i32(&req, BG_T_INFLATING_NAMES);
    for (int i = 0; i < BG_T_INFLATING_NAMES; i++)
        bg_t_str(&req, "");
    bg_t_cli_send(fd, 3, 1, 41, &req);
    bg_t_check(r, bg_t_cli_closed(fd), "a request decoded past the request limit was taken");
out:
    bg_t_buf_free(&b);
    bg_t_buf_free(&req);
    close(fd);
}

static void test_recycled_entry_is_back_to_the_request_limit(void **state)
{
    (void)state;
    bg_t_run_t r = {.kafka_extra = "  max_frame_bytes: 64KiB\n",
                    .scenario = bg_t_scenario_recycled};
    bg_t_run(&r);
    bg_t_finish(&r, (const char *[]){"malformed request: api 3 (MetadataRequest) version 1",
                                     "arena limit",
                                     NULL});
}

/* ---- how the broker's bytes arrive ---- */

static const bg_t_md_t bg_t_md_small = {.ntopics = 6, .nparts = 2};

/* A whole frame (size field, correlation id, body) into f. */
static void bg_t_response_frame(bg_t_buf_t *f, int32_t corr, const bg_t_buf_t *body)
{
    f->len = 0;
    bg_t_i32(f, (int32_t)(4 + body->len));
    bg_t_i32(f, corr);
    bg_t_put(f, body->p, body->len);
}

static void bg_t_sleep_ms(int ms)
{
    nanosleep(&(struct timespec){ms / 1000, (long)(ms % 1000) * 1000000}, NULL);
}

/* 1 when the client's next frame is corr's fetch response with body. */
static int bg_t_got_fetch(bg_t_run_t *r, int fd, int32_t corr, const bg_t_buf_t *body)
{
    bg_t_buf_t f = {0};
    int rc = bg_t_read_frame(fd, &f, BG_T_WAIT_MS);
    int ok = bg_t_check(r, rc > 0 && f.len == 4 + body->len && bg_t_get_i32(f.p) == corr &&
                               memcmp(f.p + 4, body->p, body->len) == 0,
                        "fetch response %d did not arrive as sent (rc %d, %zu bytes)", corr, rc,
                        f.len);
    bg_t_buf_free(&f);
    return ok;
}

/* 1 when the client's next frame is corr's Metadata response, filtered. */
static int bg_t_got_metadata(bg_t_run_t *r, int fd, int32_t corr)
{
    bg_t_buf_t f = {0};
    int rc = bg_t_read_frame(fd, &f, BG_T_WAIT_MS);
    int ok = bg_t_check(r, rc > 0, "no Metadata response %d (%s)", corr,
                        rc == 0 ? "busgate closed the connection" : "timeout") &&
             bg_t_check_filtered(r, &f, corr, &bg_t_md_small);
    bg_t_buf_free(&f);
    return ok;
}

/* A Fetch (cut through) and a Metadata request (filtered) in flight; the
 * broker answers both in one write. The fetch response ends where its frame
 * says, and the Metadata one is filtered (when the cut-through passed all
 * it had read, the Metadata response went out raw, as the fetch's: every
 * topic and the broker's own address). */
static void bg_t_scenario_two_in_one_read(bg_t_run_t *r)
{
    int fd = bg_t_cli_login(r);
    if (fd < 0)
        return;
    bg_t_buf_t req = {0}, md_req = {0}, body = {0}, md = {0}, f = {0}, both = {0};
    bg_t_req_t qf = {0}, qm = {0};
    bg_t_fetch_v4_req(&req);
    bg_t_cli_send(fd, 1, 4, 60, &req);
    bg_t_i32(&md_req, -1);
    bg_t_cli_send(fd, 3, 1, 61, &md_req);
    if (!bg_t_up_next(r, 1, &qf) || !bg_t_up_next(r, 3, &qm))
        goto out;
    bg_t_fetch_v4_resp(&body, 3000);
    bg_t_metadata_v1(&md, r->up_port, &bg_t_md_small);
    bg_t_response_frame(&f, qf.corr, &body);
    bg_t_put(&both, f.p, f.len);
    bg_t_response_frame(&f, qm.corr, &md);
    bg_t_put(&both, f.p, f.len);
    bg_t_up_send_raw(qf.fd, both.p, both.len);
    if (bg_t_got_fetch(r, fd, 60, &body))
        bg_t_got_metadata(r, fd, 61);
out:
    bg_t_buf_free(&req), bg_t_buf_free(&md_req), bg_t_buf_free(&body);
    bg_t_buf_free(&md), bg_t_buf_free(&f), bg_t_buf_free(&both);
    close(fd);
}

static void test_two_responses_in_one_read_stay_apart(void **state)
{
    (void)state;
    bg_t_run_t r = {.scenario = bg_t_scenario_two_in_one_read};
    bg_t_run(&r);
    bg_t_finish(&r, NULL);
}

/* A fetch response whose first 6 bytes (the size and half the correlation
 * id) come alone, then the rest; a Metadata response whose last 2 bytes
 * come alone. Both reach the client whole (busgate matched a response to
 * its request from fewer than 8 bytes and closed the session, or decoded a
 * Metadata response before its last bytes came). */
static void bg_t_scenario_split(bg_t_run_t *r)
{
    int fd = bg_t_cli_login(r);
    if (fd < 0)
        return;
    bg_t_buf_t req = {0}, body = {0}, md = {0}, f = {0};
    bg_t_req_t q = {0};
    bg_t_fetch_v4_req(&req);
    bg_t_cli_send(fd, 1, 4, 70, &req);
    if (!bg_t_up_next(r, 1, &q))
        goto out;
    bg_t_fetch_v4_resp(&body, 3000);
    bg_t_response_frame(&f, q.corr, &body);
    bg_t_up_send_raw(q.fd, f.p, 6);
    bg_t_sleep_ms(300); /* busgate reads the 6 bytes alone */
    bg_t_up_send_raw(q.fd, f.p + 6, f.len - 6);
    if (!bg_t_got_fetch(r, fd, 70, &body))
        goto out;
    req.len = 0;
    bg_t_i32(&req, -1);
    bg_t_cli_send(fd, 3, 1, 71, &req);
    if (!bg_t_up_next(r, 3, &q))
        goto out;
    bg_t_metadata_v1(&md, r->up_port, &bg_t_md_small);
    bg_t_response_frame(&f, q.corr, &md);
    bg_t_up_send_raw(q.fd, f.p, f.len - 2);
    bg_t_sleep_ms(300);
    bg_t_up_send_raw(q.fd, f.p + f.len - 2, 2);
    bg_t_got_metadata(r, fd, 71);
out:
    bg_t_buf_free(&req), bg_t_buf_free(&body), bg_t_buf_free(&md), bg_t_buf_free(&f);
    close(fd);
}

static void test_responses_split_across_reads_arrive_whole(void **state)
{
    (void)state;
    bg_t_run_t r = {.scenario = bg_t_scenario_split};
    bg_t_run(&r);
    bg_t_finish(&r, NULL);
}

/* A 300 KB fetch response: 100 KB of it come, the rest is spliced; while
 * the splice waits for the broker the client sends a Metadata request
 * (busgate reads the client and sets its reading of the broker again),
 * then the broker sends the rest and the Metadata response. The fetch
 * response arrives byte for byte and the Metadata one filtered (with the
 * broker's socket read by the buffered relay too, the splice's bytes were
 * taken by both). */
static void bg_t_scenario_request_while_spliced(bg_t_run_t *r)
{
    int fd = bg_t_cli_login(r);
    if (fd < 0)
        return;
    bg_t_buf_t req = {0}, body = {0}, md = {0}, f = {0}, mf = {0};
    bg_t_req_t q = {0}, qm = {0};
    const size_t first = 100000;
    uint8_t *got = NULL;
    bg_t_fetch_v4_req(&req);
    bg_t_cli_send(fd, 1, 4, 80, &req);
    if (!bg_t_up_next(r, 1, &q))
        goto out;
    bg_t_fetch_v4_resp(&body, 300000);
    bg_t_response_frame(&f, q.corr, &body);
    got = malloc(f.len);
    if (!bg_t_check(r, got != NULL, "out of memory"))
        goto out;
    bg_t_up_send_raw(q.fd, f.p, first);
    if (!bg_t_check(r, bg_t_read_all(fd, got, first, BG_T_WAIT_MS) > 0,
                    "the first 100 KB of the fetch response did not come"))
        goto out;
    req.len = 0;
    bg_t_i32(&req, -1);
    bg_t_cli_send(fd, 3, 1, 81, &req);
    if (!bg_t_up_next(r, 3, &qm))
        goto out;
    bg_t_up_send_raw(q.fd, f.p + first, f.len - first);
    bg_t_metadata_v1(&md, r->up_port, &bg_t_md_small);
    bg_t_response_frame(&mf, qm.corr, &md);
    bg_t_up_send_raw(qm.fd, mf.p, mf.len);
    if (!bg_t_check(r, bg_t_read_all(fd, got + first, f.len - first, BG_T_WAIT_MS) > 0,
                    "the rest of the fetch response did not come"))
        goto out;
    if (!bg_t_check(r, bg_t_get_i32(got + 4) == 80 && memcmp(got + 8, body.p, body.len) == 0,
                    "the spliced fetch response differs from the broker's"))
        goto out;
    bg_t_got_metadata(r, fd, 81);
out:
    free(got);
    bg_t_buf_free(&req), bg_t_buf_free(&body), bg_t_buf_free(&md), bg_t_buf_free(&f);
    bg_t_buf_free(&mf);
    close(fd);
}

static void test_a_request_while_a_response_is_spliced(void **state)
{
    (void)state;
    bg_t_run_t r = {.scenario = bg_t_scenario_request_while_spliced};
    bg_t_run(&r);
    bg_t_finish(&r, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metadata_above_max_frame_bytes_is_filtered_and_delivered),
        cmocka_unit_test(test_metadata_decoded_past_the_request_arena_is_delivered),
        cmocka_unit_test(test_response_above_max_response_bytes_fails_closed),
        cmocka_unit_test(test_response_with_bytes_after_the_body_fails_closed),
        cmocka_unit_test(test_recycled_entry_is_back_to_the_request_limit),
        cmocka_unit_test(test_broker_port_outside_tcp_is_not_served),
        cmocka_unit_test(test_two_responses_in_one_read_stay_apart),
        cmocka_unit_test(test_responses_split_across_reads_arrive_whole),
        cmocka_unit_test(test_a_request_while_a_response_is_spliced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
