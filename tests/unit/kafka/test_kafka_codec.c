/* Kafka codec: bounded reader/writer, descriptors, framing and headers
 * (with bytes captured from librdkafka 2.0.2 / kcat), tree building, tagged
 * fields, and one negative test per malformed-input case. */
#include "adapters/kafka/kafka_frame.h"
#include "kafka_long_name.h"
#include "test_kafka_codec_util.h"

/* Captured on loopback from `kcat -L` / `kcat -P` (librdkafka 2.0.2): frame
 * payloads without the size prefix. */
static const char CAP_APIVERSIONS_V3_REQ[] =
    "0012000300000001000772646b61666b61000b6c696272646b61666b6106322e302e3200";
static const char CAP_METADATA_V4_REQ[] =
    "0003000400000002000772646b61666b610000000100066f726465727301";
/* ApiVersions v3 response (header v0) that librdkafka accepted in that run. */
static const char CAP_APIVERSIONS_V3_RESP[] =
    "00000001000013000000000009000001000000"
    "0c000002000000070000030000000c000008000000080000090000000800000a0000000400000b0000000700000c"
    "0000000400000d0000000400000e0000000500001100000001000012000000030000130000000700001400000006"
    "000016000000040000240000000200003c00000001000000000000";

/* ---- bytes.h ---- */

static void test_rd_scalars(void **state)
{
    uint8_t b[64];
    size_t n = kt_hex("ff 8001 80000001 0102030405060708 3ff0000000000000", b, sizeof b);
    bg_rd_t rd;
    bg_rd_init(&rd, b, n);
    assert_int_equal(bg_rd_i8(&rd), -1);
    assert_int_equal(bg_rd_u16(&rd), 0x8001);
    assert_int_equal(bg_rd_i32(&rd), (int32_t)0x80000001);
    assert_true(bg_rd_i64(&rd) == 0x0102030405060708LL);
    assert_true(bg_rd_f64(&rd) == 1.0);
    assert_int_equal(rd.err, 0);
    assert_int_equal(bg_rd_left(&rd), 0);
    /* sticky error: reads past the end return 0 and do not move p */
    assert_int_equal(bg_rd_i32(&rd), 0);
    assert_int_equal(rd.err, 1);
    assert_string_equal(rd.why, "truncated");
    const uint8_t *p = rd.p;
    bg_rd_init(&rd, b, 1);
    (void)bg_rd_i16(&rd);
    assert_ptr_equal(rd.p, b); /* failing read leaves p at its start */
    assert_int_equal(bg_rd_i8(&rd), 0);
    assert_ptr_equal(rd.p, b);
    (void)p;
}

static void test_rd_varints(void **state)
{
    uint8_t b[64];
    /* 0, 127, 128 (80 01), 300 (ac 02), zigzag -1 (01), zigzag 1 (02), UINT32_MAX */
    size_t n = kt_hex("00 7f 8001 ac02 01 02 ffffffff0f", b, sizeof b);
    bg_rd_t rd;
    bg_rd_init(&rd, b, n);
    assert_int_equal(bg_rd_uvarint(&rd), 0);
    assert_int_equal(bg_rd_uvarint(&rd), 127);
    assert_int_equal(bg_rd_uvarint(&rd), 128);
    assert_int_equal(bg_rd_uvarint(&rd), 300);
    assert_int_equal(bg_rd_varint(&rd), -1);
    assert_int_equal(bg_rd_varint(&rd), 1);
    assert_int_equal(bg_rd_uvarint(&rd), UINT32_MAX);
    assert_int_equal(rd.err, 0);
    assert_int_equal(rd.noncanon, 0);

    n = kt_hex("ffffffff1f", b, sizeof b); /* > 32 bits */
    bg_rd_init(&rd, b, n);
    (void)bg_rd_uvarint(&rd);
    assert_string_equal(rd.why, "bad varint");
    n = kt_hex("ffffffffffffffffffff01", b, sizeof b); /* 11 bytes */
    bg_rd_init(&rd, b, n);
    (void)bg_rd_uvarlong(&rd);
    assert_string_equal(rd.why, "bad varint");
    n = kt_hex("8080", b, sizeof b); /* unterminated */
    bg_rd_init(&rd, b, n);
    (void)bg_rd_uvarint(&rd);
    assert_string_equal(rd.why, "truncated varint");
    n = kt_hex("8000", b, sizeof b); /* overlong zero */
    bg_rd_init(&rd, b, n);
    assert_int_equal(bg_rd_uvarint(&rd), 0);
    assert_int_equal(rd.err, 0);
    assert_int_equal(rd.noncanon, 1);
    n = kt_hex("feffffffffffffffff01", b, sizeof b); /* zigzag varlong INT64_MAX */
    bg_rd_init(&rd, b, n);
    assert_true(bg_rd_varlong(&rd) == INT64_MAX);
}

static void test_rd_sub_and_bytes(void **state)
{
    uint8_t b[] = {1, 2, 3, 4, 5};
    bg_rd_t rd, sub;
    bg_rd_init(&rd, b, sizeof b);
    assert_int_equal(bg_rd_sub(&rd, 3, &sub), 1);
    assert_int_equal(bg_rd_left(&sub), 3);
    assert_int_equal(bg_rd_left(&rd), 2);
    (void)bg_rd_i32(&sub);
    assert_int_equal(sub.err, 1);
    assert_int_equal(rd.err, 0); /* sub errors stay in sub */
    bg_slice_t s = bg_rd_bytes(&rd, 2);
    assert_ptr_equal(s.p, b + 3);
    assert_int_equal(s.len, 2);
    s = bg_rd_bytes(&rd, -1);
    assert_null(s.p);
    assert_string_equal(rd.why, "negative length");
    bg_rd_init(&rd, b, 2);
    assert_int_equal(bg_rd_sub(&rd, 3, &sub), 0);
    assert_int_equal(sub.err, 1);
}

static void test_wr(void **state)
{
    bg_wr_t wr;
    bg_wr_init(&wr, 1, 0);
    size_t off = bg_wr_reserve_i32(&wr);
    bg_wr_i8(&wr, -1);
    bg_wr_i16(&wr, 0x1234);
    bg_wr_i64(&wr, -2);
    bg_wr_uvarint(&wr, 300);
    bg_wr_varint(&wr, -1);
    bg_wr_varlong(&wr, INT64_MAX);
    bg_wr_bytes(&wr, "ab", 2);
    bg_wr_patch_i32(&wr, off, (int32_t)(wr.len - 4));
    uint8_t want[64];
    size_t n = kt_hex("0000001a ff 1234 fffffffffffffffe ac02 01 feffffffffffffffff01 6162", want,
                      sizeof want);
    assert_int_equal(wr.failed, 0);
    assert_int_equal(wr.len, n);
    assert_memory_equal(wr.buf, want, n);
    bg_wr_free(&wr);

    bg_wr_init(&wr, 0, 6); /* bounded: the 7th byte fails, sticky */
    bg_wr_i32(&wr, 1);
    bg_wr_i16(&wr, 1);
    assert_int_equal(wr.failed, 0);
    bg_wr_i8(&wr, 1);
    assert_int_equal(wr.failed, 1);
    bg_wr_reset(&wr);
    bg_wr_uvarint(&wr, 1);
    assert_int_equal(wr.failed, 0);
    bg_wr_free(&wr);
}

/* ---- descriptors ---- */

static void test_descriptors(void **state)
{
    const bg_kafka_msg_desc_t *d = bg_kafka_msg_desc(BG_KAFKA_API_PRODUCE, 0);
    assert_ptr_equal(d, &bg_kafka_msg_produce_req);
    assert_ptr_equal(bg_kafka_msg_desc(BG_KAFKA_API_PRODUCE, 1), &bg_kafka_msg_produce_resp);
    assert_null(bg_kafka_msg_desc(-1, 0));
    assert_null(bg_kafka_msg_desc(BG_KAFKA_API_MAX_KEY + 1, 0));
    assert_string_equal(bg_kafka_api_name(BG_KAFKA_API_FETCH), "Fetch");
    assert_string_equal(bg_kafka_api_name(BG_KAFKA_API_API_VERSIONS), "ApiVersions");
    assert_null(bg_kafka_api_name(30000));
    assert_int_equal(BG_KAFKA_API_SASL_AUTHENTICATE, 36);
    assert_int_equal(bg_kafka_msg_sasl_handshake_req.flex_min, BG_KAFKA_VMAX); /* "none" */
    assert_int_equal(bg_kafka_msg_metadata_req.flex_min, 9);
    const bg_kafka_field_desc_t *f =
        &bg_kafka_msg_produce_req.body->fields[BG_KAFKA_PRODUCE_REQ_TOPIC_DATA];
    assert_string_equal(f->name, "TopicData");
    assert_int_equal(f->type, BG_KAFKA_T_ARRAY);
    assert_int_equal(f->elem, BG_KAFKA_T_STRUCT);
    assert_string_equal(f->sub->fields[BG_KAFKA_PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA]
                            .sub->fields[BG_KAFKA_PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA_RECORDS]
                            .name,
                        "Records");
    /* every api key with a request also has a response with the same range */
    int n = 0;
    for (int k = 0; k <= BG_KAFKA_API_MAX_KEY; k++) {
        const bg_kafka_msg_desc_t *rq = bg_kafka_msg_desc((int16_t)k, 0);
        const bg_kafka_msg_desc_t *rs = bg_kafka_msg_desc((int16_t)k, 1);
        assert_true((rq == NULL) == (rs == NULL));
        if (!rq)
            continue;
        n++;
        assert_int_equal(rq->api_key, k);
        assert_int_equal(rs->is_response, 1);
        assert_non_null(bg_kafka_api_name((int16_t)k));
    }
    assert_true(n >= 80);
}

/* ---- framing and headers ---- */

static void test_frame_peek(void **state)
{
    uint8_t b[16] = {0, 0, 0, 3, 'a', 'b', 'c', 0, 0};
    uint32_t size = 0;
    assert_int_equal(bg_kafka_frame_peek(b, 3, 100, &size), 0);
    assert_int_equal(bg_kafka_frame_peek(b, 6, 100, &size), 0);
    assert_int_equal(size, 3);
    assert_int_equal(bg_kafka_frame_peek(b, 7, 100, &size), 7);
    assert_int_equal(bg_kafka_frame_peek(b, 9, 100, &size), 7);
    assert_int_equal(bg_kafka_frame_peek(b, 7, 2, &size), -1); /* too large */
    uint8_t neg[4] = {0xff, 0xff, 0xff, 0xfe};
    assert_int_equal(bg_kafka_frame_peek(neg, 4, 100, &size), -1);
    uint8_t zero[4] = {0};
    assert_int_equal(bg_kafka_frame_peek(zero, 4, 100, &size), 4);
}

static void test_captured_api_versions(void **state)
{
    uint8_t b[256];
    size_t n = kt_hex(CAP_APIVERSIONS_V3_REQ, b, sizeof b);
    bg_kafka_req_hdr_t h;
    const char *why = NULL;
    int off = bg_kafka_req_hdr_parse(b, n, &h, &why);
    assert_int_equal(off, 18);
    assert_int_equal(h.api_key, BG_KAFKA_API_API_VERSIONS);
    assert_int_equal(h.api_version, 3);
    assert_int_equal(h.correlation_id, 1);
    assert_int_equal(h.hdr_version, 2);
    assert_true(kt_slice_eq(h.client_id, "rdkafka"));
    assert_int_equal(h.tagged.len, 1);
    bg_kafka_struct_t *s = kt_roundtrip(&bg_kafka_msg_api_versions_req, 3, b + off, n - off);
    assert_true(kt_slice_eq(KT_S(s, BG_KAFKA_API_VERSIONS_REQ_CLIENT_SOFTWARE_NAME), "librdkafka"));
    assert_true(kt_slice_eq(KT_S(s, BG_KAFKA_API_VERSIONS_REQ_CLIENT_SOFTWARE_VERSION), "2.0.2"));
    bg_wr_t wr;
    bg_wr_init(&wr, 0, 0);
    bg_kafka_req_hdr_write(&wr, &h);
    assert_int_equal(wr.len, (size_t)off);
    assert_memory_equal(wr.buf, b, (size_t)off);
    bg_wr_free(&wr);

    n = kt_hex(CAP_APIVERSIONS_V3_RESP, b, sizeof b);
    int hv = bg_kafka_resp_hdr_version(BG_KAFKA_API_API_VERSIONS, 3);
    assert_int_equal(hv, 0); /* ApiVersions responses keep header v0 */
    int32_t corr;
    off = bg_kafka_resp_hdr_parse(b, n, hv, &corr, NULL, &why);
    assert_int_equal(off, 4);
    assert_int_equal(corr, 1);
    s = kt_roundtrip(&bg_kafka_msg_api_versions_resp, 3, b + off, n - off);
    assert_int_equal(KT_A(s, BG_KAFKA_API_VERSIONS_RESP_API_KEYS).n, 18);
    bg_kafka_struct_t *last = KT_A(s, BG_KAFKA_API_VERSIONS_RESP_API_KEYS).s[17];
    assert_int_equal(KT_I(last, BG_KAFKA_API_VERSIONS_RESP_API_KEYS_API_KEY), 60);
}

static void test_captured_metadata(void **state)
{
    uint8_t b[256];
    size_t n = kt_hex(CAP_METADATA_V4_REQ, b, sizeof b);
    bg_kafka_req_hdr_t h;
    const char *why;
    int off = bg_kafka_req_hdr_parse(b, n, &h, &why);
    assert_int_equal(off, 17);
    assert_int_equal(h.hdr_version, 1);
    assert_int_equal(h.api_key, BG_KAFKA_API_METADATA);
    assert_int_equal(h.api_version, 4);
    bg_kafka_struct_t *s = kt_roundtrip(&bg_kafka_msg_metadata_req, 4, b + off, n - off);
    assert_true(kt_slice_eq(
        KT_S(KT_A(s, BG_KAFKA_METADATA_REQ_TOPICS).s[0], BG_KAFKA_METADATA_REQ_TOPICS_NAME),
        "orders"));
    assert_int_equal(KT_I(s, BG_KAFKA_METADATA_REQ_ALLOW_AUTO_TOPIC_CREATION), 1);
}

static void test_header_versions(void **state)
{
    assert_int_equal(bg_kafka_req_hdr_version(BG_KAFKA_API_METADATA, 8), 1);
    assert_int_equal(bg_kafka_req_hdr_version(BG_KAFKA_API_METADATA, 9), 2);
    assert_int_equal(bg_kafka_req_hdr_version(BG_KAFKA_API_METADATA, 100), 2);
    assert_int_equal(bg_kafka_req_hdr_version(BG_KAFKA_API_SASL_HANDSHAKE, 1), 1);
    assert_int_equal(bg_kafka_resp_hdr_version(BG_KAFKA_API_FETCH, 12), 1);
    assert_int_equal(bg_kafka_resp_hdr_version(BG_KAFKA_API_FETCH, 11), 0);
    assert_int_equal(bg_kafka_resp_hdr_version(BG_KAFKA_API_API_VERSIONS, 4), 0);
    assert_int_equal(bg_kafka_req_hdr_version(9999, 0), -1);
    assert_int_equal(bg_kafka_resp_hdr_version(-5, 0), -1);

    /* response header v1 round trip with the frame helpers */
    bg_wr_t wr;
    bg_wr_init(&wr, 0, 0);
    size_t f = bg_kafka_frame_begin(&wr);
    bg_kafka_resp_hdr_write(&wr, 1, 77);
    bg_kafka_frame_end(&wr, f);
    uint8_t want[16];
    size_t n = kt_hex("00000005 0000004d 00", want, sizeof want);
    assert_int_equal(wr.len, n);
    assert_memory_equal(wr.buf, want, n);
    int32_t corr;
    bg_slice_t tags;
    assert_int_equal(bg_kafka_resp_hdr_parse(wr.buf + 4, wr.len - 4, 1, &corr, &tags, NULL), 5);
    assert_int_equal(corr, 77);
    assert_int_equal(tags.len, 1);
    bg_wr_free(&wr);
}

static void test_header_errors(void **state)
{
    uint8_t b[64];
    bg_kafka_req_hdr_t h;
    const char *why = NULL;
    /* unknown api key: ids still reported */
    size_t n = kt_hex("2710 0001 0000002a ffff", b, sizeof b);
    assert_int_equal(bg_kafka_req_hdr_parse(b, n, &h, &why), BG_KAFKA_ERR_UNKNOWN_API);
    assert_int_equal(h.api_key, 10000);
    assert_int_equal(h.correlation_id, 42);
    assert_int_equal(h.err_offset, 0);
    /* truncated before the correlation id, and inside client_id: the offset
     * is where reading stopped */
    n = kt_hex("0003 0004 0000", b, sizeof b);
    assert_int_equal(bg_kafka_req_hdr_parse(b, n, &h, &why), BG_KAFKA_ERR_TRUNCATED);
    assert_int_equal(h.err_offset, 4);
    n = kt_hex("0003 0004 00000001 0005 6162", b, sizeof b);
    assert_int_equal(bg_kafka_req_hdr_parse(b, n, &h, &why), BG_KAFKA_ERR_TRUNCATED);
    assert_int_equal(h.err_offset, 10);
    /* client_id length -2 */
    n = kt_hex("0003 0004 00000001 fffe", b, sizeof b);
    assert_int_equal(bg_kafka_req_hdr_parse(b, n, &h, &why), BG_KAFKA_ERR_MALFORMED);
    assert_int_equal(h.err_offset, 10);
    /* null client_id is fine; v2 tagged section with a bad varint is not */
    n = kt_hex("0003 0004 00000001 ffff", b, sizeof b);
    assert_int_equal(bg_kafka_req_hdr_parse(b, n, &h, &why), 10);
    assert_int_equal(h.client_id.len, -1);
    n = kt_hex("0003 000c 00000001 ffff ffffffffff", b, sizeof b);
    assert_true(bg_kafka_req_hdr_parse(b, n, &h, &why) < 0);
    assert_string_equal(why, "bad varint");
    /* tagged count larger than the input */
    n = kt_hex("0003 000c 00000001 ffff 05 00", b, sizeof b);
    assert_int_equal(bg_kafka_req_hdr_parse(b, n, &h, &why), BG_KAFKA_ERR_MALFORMED);
    assert_int_equal(h.err_offset, 11);
    int32_t corr;
    assert_int_equal(bg_kafka_resp_hdr_parse(b, 3, 0, &corr, NULL, &why), BG_KAFKA_ERR_TRUNCATED);
}

/* ---- building trees ---- */

static void test_build_produce_error_response(void **state)
{
    bg_kafka_struct_t *r = bg_kafka_struct_new(&kt_arena, bg_kafka_msg_produce_resp.body);
    assert_non_null(r);
    bg_kafka_struct_t **t = bg_kafka_array_new(&kt_arena, r, BG_KAFKA_PRODUCE_RESP_RESPONSES, 1);
    assert_non_null(t);
    t[0]->f[BG_KAFKA_PRODUCE_RESP_RESPONSES_NAME].s = bg_kafka_cstr("orders");
    bg_kafka_struct_t **p =
        bg_kafka_array_new(&kt_arena, t[0], BG_KAFKA_PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES, 2);
    assert_non_null(p);
    for (int i = 0; i < 2; i++) {
        p[i]->f[BG_KAFKA_PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES_INDEX].i = i;
        p[i]->f[BG_KAFKA_PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES_ERROR_CODE].i = 29;
        p[i]->f[BG_KAFKA_PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES_BASE_OFFSET].i = -1;
    }
    /* defaults from the JSON */
    assert_int_equal(
        KT_I(p[0], BG_KAFKA_PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES_LOG_APPEND_TIME_MS), -1);
    assert_int_equal(
        KT_S(p[0], BG_KAFKA_PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES_ERROR_MESSAGE).len, -1);

    kt_vec_t v;
    kt_init(&v, 0); /* v7: classic */
    kt_arr(&v, 1), kt_str(&v, "orders"), kt_arr(&v, 2);
    for (int i = 0; i < 2; i++)
        kt_i32(&v, i), kt_i16(&v, 29), kt_i64(&v, -1), kt_i64(&v, -1), kt_i64(&v, -1);
    kt_i32(&v, 0);
    bg_wr_t wr;
    bg_wr_init(&wr, 0, 0);
    const char *why = NULL;
    assert_int_equal(bg_kafka_encode(&bg_kafka_msg_produce_resp, 7, r, &wr, &why), BG_KAFKA_OK);
    assert_int_equal(wr.len, v.n);
    assert_memory_equal(wr.buf, v.b, v.n);

    /* v10 (flexible): CurrentLeader at its default is not written */
    kt_init(&v, 1);
    kt_arr(&v, 1), kt_str(&v, "orders"), kt_arr(&v, 2);
    for (int i = 0; i < 2; i++)
        kt_i32(&v, i), kt_i16(&v, 29), kt_i64(&v, -1), kt_i64(&v, -1), kt_i64(&v, -1),
            kt_arr(&v, 0), kt_str(&v, NULL), kt_tags0(&v);
    kt_tags0(&v), kt_i32(&v, 0), kt_tags0(&v);
    bg_wr_reset(&wr);
    assert_int_equal(bg_kafka_encode(&bg_kafka_msg_produce_resp, 10, r, &wr, &why), BG_KAFKA_OK);
    assert_int_equal(wr.len, v.n);
    assert_memory_equal(wr.buf, v.b, v.n);
    bg_wr_free(&wr);
}

static void test_split_request(void **state)
{
    /* Produce v3 with two topics; keep only the second via a shallow clone. */
    kt_vec_t v;
    kt_init(&v, 0);
    kt_str(&v, NULL), kt_i16(&v, 1), kt_i32(&v, 100);
    kt_arr(&v, 2);
    kt_str(&v, "denied"), kt_arr(&v, 1), kt_i32(&v, 0), kt_bytes(&v, "xx", 2);
    kt_str(&v, "allowed"), kt_arr(&v, 1), kt_i32(&v, 3), kt_bytes(&v, "yyy", 3);
    bg_kafka_struct_t *s = KT_RT(bg_kafka_msg_produce_req, 3, v);
    bg_kafka_struct_t *c = bg_kafka_struct_clone(&kt_arena, s);
    c->f[BG_KAFKA_PRODUCE_REQ_TOPIC_DATA].a.n = 1;
    c->f[BG_KAFKA_PRODUCE_REQ_TOPIC_DATA].a.s = &s->f[BG_KAFKA_PRODUCE_REQ_TOPIC_DATA].a.s[1];
    kt_vec_t want;
    kt_init(&want, 0);
    kt_str(&want, NULL), kt_i16(&want, 1), kt_i32(&want, 100);
    kt_arr(&want, 1), kt_str(&want, "allowed"), kt_arr(&want, 1), kt_i32(&want, 3),
        kt_bytes(&want, "yyy", 3);
    bg_wr_t wr;
    bg_wr_init(&wr, 0, 0);
    const char *why;
    assert_int_equal(bg_kafka_encode(&bg_kafka_msg_produce_req, 3, c, &wr, &why), BG_KAFKA_OK);
    assert_int_equal(wr.len, want.n);
    assert_memory_equal(wr.buf, want.b, want.n);
    /* the original is untouched */
    assert_int_equal(s->f[BG_KAFKA_PRODUCE_REQ_TOPIC_DATA].a.n, 2);
    bg_wr_free(&wr);
}

static void test_tagged_merge_order(void **state)
{
    /* ApiVersions v3 response: known tags 1 and 3 set (0 and 2 at their
     * defaults, so not written); kept-raw tags 2 and 9 merge in tag order. */
    bg_kafka_struct_t *s = bg_kafka_struct_new(&kt_arena, bg_kafka_msg_api_versions_resp.body);
    s->f[BG_KAFKA_API_VERSIONS_RESP_FINALIZED_FEATURES_EPOCH].i = 2;
    s->f[BG_KAFKA_API_VERSIONS_RESP_ZK_MIGRATION_READY].i = 1;
    bg_kafka_tagged_t unk[2] = {{2, {(const uint8_t *)"\x07", 1}}, {9, {(const uint8_t *)"", 0}}};
    s->unknown = unk;
    s->nunknown = 2;
    bg_wr_t wr;
    bg_wr_init(&wr, 0, 0);
    const char *why;
    assert_int_equal(bg_kafka_encode(&bg_kafka_msg_api_versions_resp, 3, s, &wr, &why),
                     BG_KAFKA_OK);
    uint8_t want[64];
    size_t n =
        kt_hex("0000 01 00000000 04 0108 0000000000000002 020107 030101 0900", want, sizeof want);
    assert_int_equal(wr.len, n);
    assert_memory_equal(wr.buf, want, n);
    /* v0 has no tagged section at all */
    bg_wr_reset(&wr);
    assert_int_equal(bg_kafka_encode(&bg_kafka_msg_api_versions_resp, 0, s, &wr, &why),
                     BG_KAFKA_OK);
    assert_int_equal(wr.len, 6);
    bg_wr_free(&wr);
}

/* Tagged fields the descriptor does not know: flagged on the reader, kept
 * raw, and gone after bg_kafka_struct_drop_unknown (the session does not
 * pass them upstream). Also inside an array element. */
static void test_tagged_unknown_dropped(void **state)
{
    uint8_t b[64];
    bg_rd_t rd;
    bg_kafka_struct_t *s;
    /* ApiVersions v3 response: one api key entry carrying unknown tag 7,
     * then a top-level unknown tag 9 */
    size_t n = kt_hex("0000 02 0003 0000 0009 01 070100 00000000 01 090100", b, sizeof b);
    bg_rd_init(&rd, b, n);
    assert_int_equal(bg_kafka_decode(&bg_kafka_msg_api_versions_resp, 3, &rd, &kt_arena, &s),
                     BG_KAFKA_OK);
    assert_int_equal(rd.unknown_tags, 1);
    assert_int_equal(s->nunknown, 1);
    bg_kafka_struct_t *e = s->f[BG_KAFKA_API_VERSIONS_RESP_API_KEYS].a.s[0];
    assert_int_equal(e->nunknown, 1);
    assert_int_equal(bg_kafka_struct_drop_unknown(s, 0), 1);
    assert_int_equal(bg_kafka_struct_drop_unknown(s, 0), 0);
    assert_int_equal(e->nunknown, 0);
    bg_wr_t wr;
    bg_wr_init(&wr, 0, 0);
    const char *why;
    assert_int_equal(bg_kafka_encode(&bg_kafka_msg_api_versions_resp, 3, s, &wr, &why),
                     BG_KAFKA_OK);
    uint8_t want[64];
    size_t wn = kt_hex("0000 02 0003 0000 0009 00 00000000 00", want, sizeof want);
    assert_int_equal(wr.len, wn);
    assert_memory_equal(wr.buf, want, wn);
    bg_wr_free(&wr);
    /* an unknown tag inside a struct that is itself a known tagged field
     * (SupportedFeatures, tag 0): flagged through the sub-reader */
    n = kt_hex("0000 01 00000000 01 00 0b 02 0266 0001 0002 01070100", b, sizeof b);
    bg_rd_init(&rd, b, n);
    assert_int_equal(bg_kafka_decode(&bg_kafka_msg_api_versions_resp, 3, &rd, &kt_arena, &s),
                     BG_KAFKA_OK);
    assert_int_equal(rd.unknown_tags, 1);
    assert_int_equal(bg_kafka_struct_drop_unknown(s, 0), 1);
    /* known tags only: not flagged */
    n = kt_hex("0000 01 00000000 01 0108 0000000000000002", b, sizeof b);
    bg_rd_init(&rd, b, n);
    assert_int_equal(bg_kafka_decode(&bg_kafka_msg_api_versions_resp, 3, &rd, &kt_arena, &s),
                     BG_KAFKA_OK);
    assert_int_equal(rd.unknown_tags, 0);
}

static void test_tagged_noncanonical(void **state)
{
    uint8_t b[64];
    bg_rd_t rd;
    bg_kafka_struct_t *s;
    /* tags out of order (3 before 1): decodes, flagged non-canonical */
    size_t n = kt_hex("0000 01 00000000 02 030101 0108 0000000000000002", b, sizeof b);
    bg_rd_init(&rd, b, n);
    assert_int_equal(bg_kafka_decode(&bg_kafka_msg_api_versions_resp, 3, &rd, &kt_arena, &s),
                     BG_KAFKA_OK);
    assert_int_equal(rd.noncanon, 1);
    assert_int_equal(KT_I(s, BG_KAFKA_API_VERSIONS_RESP_FINALIZED_FEATURES_EPOCH), 2);
    /* known tag at its default value (-1) */
    n = kt_hex("0000 01 00000000 01 0108 ffffffffffffffff", b, sizeof b);
    bg_rd_init(&rd, b, n);
    assert_int_equal(bg_kafka_decode(&bg_kafka_msg_api_versions_resp, 3, &rd, &kt_arena, &s),
                     BG_KAFKA_OK);
    assert_int_equal(rd.noncanon, 1);
    /* known tag whose declared size is larger than its value */
    n = kt_hex("0000 01 00000000 01 0302 0100", b, sizeof b);
    bg_rd_init(&rd, b, n);
    assert_int_equal(bg_kafka_decode(&bg_kafka_msg_api_versions_resp, 3, &rd, &kt_arena, &s),
                     BG_KAFKA_ERR_MALFORMED);
    assert_string_equal(rd.why, "tagged field size mismatch");
    /* bool 2 reads as true, flagged */
    n = kt_hex("0000 01 00000000 01 030102", b, sizeof b);
    bg_rd_init(&rd, b, n);
    assert_int_equal(bg_kafka_decode(&bg_kafka_msg_api_versions_resp, 3, &rd, &kt_arena, &s),
                     BG_KAFKA_OK);
    assert_int_equal(rd.noncanon, 1);
    assert_int_equal(KT_I(s, BG_KAFKA_API_VERSIONS_RESP_ZK_MIGRATION_READY), 1);
}

/* ---- negative tests ---- */

static int decode_hex(const bg_kafka_msg_desc_t *d, int16_t ver, const char *hex, bg_rd_t *rd,
                      uint8_t *buf, size_t cap)
{
    size_t n = kt_hex(hex, buf, cap);
    bg_rd_init(rd, buf, n);
    bg_kafka_struct_t *s;
    int rc = bg_kafka_decode(d, ver, rd, &kt_arena, &s);
    if (rc != BG_KAFKA_OK)
        assert_null(s);
    return rc;
}

static void test_huge_counts(void **state)
{
    uint8_t b[64];
    bg_rd_t rd;
    /* SaslHandshake response: 2^31-1 mechanisms in 2 bytes */
    assert_int_equal(
        decode_hex(&bg_kafka_msg_sasl_handshake_resp, 1, "0000 7fffffff 0000", &rd, b, sizeof b),
        BG_KAFKA_ERR_MALFORMED);
    assert_string_equal(rd.why, "array count exceeds input");
    assert_int_equal(rd.p - b, 6); /* offset after the count */
    /* negative count other than -1, and null where not nullable */
    assert_int_equal(
        decode_hex(&bg_kafka_msg_sasl_handshake_resp, 1, "0000 fffffffe", &rd, b, sizeof b),
        BG_KAFKA_ERR_MALFORMED);
    assert_int_equal(
        decode_hex(&bg_kafka_msg_sasl_handshake_resp, 1, "0000 ffffffff", &rd, b, sizeof b),
        BG_KAFKA_ERR_MALFORMED);
    assert_string_equal(rd.why, "null in non-nullable array");
    /* compact count (varint 2^32-1) in a flexible version */
    assert_int_equal(decode_hex(&bg_kafka_msg_describe_cluster_resp, 0,
                                "00000000 0000 00 01 00000001 ffffffff0f", &rd, b, sizeof b),
                     BG_KAFKA_ERR_MALFORMED);
    /* string length beyond the input */
    assert_int_equal(decode_hex(&bg_kafka_msg_sasl_handshake_req, 1, "7fff 6162", &rd, b, sizeof b),
                     BG_KAFKA_ERR_TRUNCATED);
    /* string length -2 */
    assert_int_equal(decode_hex(&bg_kafka_msg_sasl_handshake_req, 1, "fffe", &rd, b, sizeof b),
                     BG_KAFKA_ERR_MALFORMED);
    /* tagged field count larger than the input */
    assert_int_equal(
        decode_hex(&bg_kafka_msg_describe_cluster_req, 0, "00 7f 00", &rd, b, sizeof b),
        BG_KAFKA_ERR_MALFORMED);
}

static void test_bad_varints(void **state)
{
    uint8_t b[64];
    bg_rd_t rd;
    /* DescribeCluster v0 request: bool, then a tagged count of 6 bytes */
    assert_int_equal(
        decode_hex(&bg_kafka_msg_describe_cluster_req, 0, "00 ffffffffff01", &rd, b, sizeof b),
        BG_KAFKA_ERR_MALFORMED);
    assert_string_equal(rd.why, "bad varint");
    assert_int_equal(rd.p - b, 1);
    /* unterminated varint at the end: truncated */
    assert_int_equal(decode_hex(&bg_kafka_msg_describe_cluster_req, 0, "00 80", &rd, b, sizeof b),
                     BG_KAFKA_ERR_TRUNCATED);
    /* compact string length varint too large */
    assert_int_equal(
        decode_hex(&bg_kafka_msg_sasl_authenticate_req, 2, "ffffffff7f", &rd, b, sizeof b),
        BG_KAFKA_ERR_MALFORMED);
}

static void test_version_range(void **state)
{
    uint8_t b[8];
    bg_rd_t rd;
    assert_int_equal(decode_hex(&bg_kafka_msg_produce_req, 2, "", &rd, b, sizeof b),
                     BG_KAFKA_ERR_VERSION);
    assert_string_equal(rd.why, "unsupported version");
    assert_int_equal(decode_hex(&bg_kafka_msg_produce_req, 14, "", &rd, b, sizeof b),
                     BG_KAFKA_ERR_VERSION);
    assert_int_equal(decode_hex(&bg_kafka_msg_api_versions_req, -1, "", &rd, b, sizeof b),
                     BG_KAFKA_ERR_VERSION);
    bg_kafka_struct_t *s = bg_kafka_struct_new(&kt_arena, bg_kafka_msg_produce_req.body);
    bg_wr_t wr;
    bg_wr_init(&wr, 0, 0);
    const char *why = NULL;
    assert_int_equal(bg_kafka_encode(&bg_kafka_msg_produce_req, 99, s, &wr, &why),
                     BG_KAFKA_ERR_VERSION);
    assert_string_equal(why, "unsupported version");
    bg_wr_free(&wr);
}

static void test_encode_errors(void **state)
{
    bg_wr_t wr;
    bg_wr_init(&wr, 0, 0);
    const char *why = NULL;
    /* null mechanism (not nullable) */
    bg_kafka_struct_t *s = bg_kafka_struct_new(&kt_arena, bg_kafka_msg_sasl_handshake_req.body);
    s->f[BG_KAFKA_SASL_HANDSHAKE_REQ_MECHANISM].s = bg_kafka_null_slice();
    assert_int_equal(bg_kafka_encode(&bg_kafka_msg_sasl_handshake_req, 1, s, &wr, &why),
                     BG_KAFKA_ERR_ENCODE);
    assert_string_equal(why, "null in non-nullable field");
    /* a struct of the wrong descriptor in an array */
    bg_kafka_struct_t *r = bg_kafka_struct_new(&kt_arena, bg_kafka_msg_produce_resp.body);
    bg_kafka_struct_t **t = bg_kafka_array_new(&kt_arena, r, BG_KAFKA_PRODUCE_RESP_RESPONSES, 1);
    t[0] = s;
    assert_int_equal(bg_kafka_encode(&bg_kafka_msg_produce_resp, 8, r, &wr, &why),
                     BG_KAFKA_ERR_ENCODE);
    assert_string_equal(why, "struct of the wrong descriptor");
    /* array helpers refuse non-array / wrong element kinds */
    assert_null(bg_kafka_array_new(&kt_arena, r, BG_KAFKA_PRODUCE_RESP_THROTTLE_TIME_MS, 1));
    assert_null(bg_kafka_array_vals(&kt_arena, r, BG_KAFKA_PRODUCE_RESP_RESPONSES, 1));
    /* writer bound reached */
    bg_wr_t small;
    bg_wr_init(&small, 0, 3);
    s->f[BG_KAFKA_SASL_HANDSHAKE_REQ_MECHANISM].s = bg_kafka_cstr("PLAIN");
    assert_int_equal(bg_kafka_encode(&bg_kafka_msg_sasl_handshake_req, 1, s, &small, &why),
                     BG_KAFKA_ERR_ENCODE);
    assert_string_equal(why, "writer failed");
    bg_wr_free(&small);
    bg_wr_free(&wr);
}

/* A synthetic self-nesting descriptor: each level is a nullable struct. */
static const bg_kafka_struct_desc_t deep_desc;
static const bg_kafka_field_desc_t deep_fields[] = {
    {"Next", &deep_desc, 0, 0.0, 0, BG_KAFKA_VMAX, 0, BG_KAFKA_VMAX, 1, 0, -1, BG_KAFKA_T_STRUCT, 0,
     BG_KAFKA_FF_DEF_NULL},
};
static const bg_kafka_struct_desc_t deep_desc = {"Deep", deep_fields, NULL, 1, 0};

static void test_nesting_depth(void **state)
{
    uint8_t b[64];
    memset(b, 1, sizeof b); /* 64 "present" markers: deeper than the bound */
    bg_rd_t rd;
    bg_rd_init(&rd, b, sizeof b);
    bg_kafka_struct_t *s;
    assert_int_equal(bg_kafka_decode_struct(&deep_desc, 0, 0, &rd, &kt_arena, &s),
                     BG_KAFKA_ERR_LIMIT);
    assert_string_equal(rd.why, "nesting too deep");
    /* within the bound it decodes and re-encodes */
    b[10] = 0xff;
    bg_rd_init(&rd, b, 11);
    assert_int_equal(bg_kafka_decode_struct(&deep_desc, 0, 0, &rd, &kt_arena, &s), BG_KAFKA_OK);
    bg_wr_t wr;
    bg_wr_init(&wr, 0, 0);
    const char *why;
    assert_int_equal(bg_kafka_encode_struct(&deep_desc, 0, 0, s, &wr, &why), BG_KAFKA_OK);
    assert_int_equal(wr.len, 11);
    assert_memory_equal(wr.buf, b, 11);
    bg_wr_free(&wr);
}

static void test_arena_limit(void **state)
{
    /* 1000 empty strings (2 bytes each) cost 16 KB of values: over a 4 KB limit... */
    kt_vec_t v;
    kt_init(&v, 0);
    kt_i16(&v, 0), kt_arr(&v, 1000);
    for (int i = 0; i < 1000; i++)
        kt_str(&v, "");
    bg_kafka_arena_t a;
    bg_kafka_arena_init(&a, 4096);
    bg_rd_t rd;
    bg_rd_init(&rd, v.b, v.n);
    bg_kafka_struct_t *s;
    assert_int_equal(bg_kafka_decode(&bg_kafka_msg_sasl_handshake_resp, 1, &rd, &a, &s),
                     BG_KAFKA_ERR_LIMIT);
    assert_string_equal(rd.why, "arena limit");
    bg_kafka_arena_free(&a);
    /* ...and fine with the default limit; reset keeps working */
    bg_kafka_arena_init(&a, 0);
    for (int round = 0; round < 3; round++) {
        bg_rd_init(&rd, v.b, v.n);
        assert_int_equal(bg_kafka_decode(&bg_kafka_msg_sasl_handshake_resp, 1, &rd, &a, &s),
                         BG_KAFKA_OK);
        assert_int_equal(KT_A(s, BG_KAFKA_SASL_HANDSHAKE_RESP_MECHANISMS).n, 1000);
        bg_kafka_arena_reset(&a);
    }
    void *big = bg_kafka_arena_alloc(&a, 1 << 20); /* larger than a block */
    assert_non_null(big);
    memset(big, 0, 1 << 20);
    bg_kafka_arena_free(&a);
}

/* The audit's copy of a request's resource names goes past the arena's
 * limit (the decoded tree may have used it all up; an event must never lose
 * a name), by at most the copy and one block; the limit stays in force for
 * everything else. */
static void test_arena_alloc_past_limit(void **state)
{
    bg_kafka_arena_t a;
    bg_kafka_arena_init(&a, 4096);
    assert_non_null(bg_kafka_arena_alloc(&a, 4000));
    assert_null(bg_kafka_arena_alloc(&a, 200)); /* the limit is used up */
    for (size_t n = 200; n <= (200u << 10); n *= 32) {
        size_t before = a.total;
        char *p = bg_kafka_arena_alloc_past_limit(&a, n);
        assert_non_null(p);
        memset(p, 'x', n);
        assert_true(a.total <= before + n + (64u << 10) + 8);
        assert_int_equal(a.limit, 4096);
        assert_null(bg_kafka_arena_alloc(&a, 128u << 10)); /* no new block */
    }
    assert_null(bg_kafka_arena_alloc_past_limit(&a, SIZE_MAX / 2));
    bg_kafka_arena_free(&a);
}

/* ---- mutation review of the codec (kafka_codec.c) ---- */

/* A null length where the field is not nullable is malformed, classic
 * (int16 -1) and compact (uvarint 0) alike: Kafka's parsers refuse it, and a
 * request busgate read with a null name would be decided on no name. */
static void test_null_in_non_nullable_string(void **state)
{
    uint8_t b[64];
    bg_rd_t rd;
    assert_int_equal(decode_hex(&bg_kafka_msg_sasl_handshake_req, 1, "ffff", &rd, b, sizeof b),
                     BG_KAFKA_ERR_MALFORMED);
    assert_string_equal(rd.why, "null in non-nullable field");
    assert_int_equal(decode_hex(&bg_kafka_msg_sasl_authenticate_req, 2, "00 00", &rd, b, sizeof b),
                     BG_KAFKA_ERR_MALFORMED);
    assert_string_equal(rd.why, "null in non-nullable field");
    /* Produce v9: null transactional id (nullable), acks, timeout, one topic
     * whose name is null (not nullable) */
    assert_int_equal(decode_hex(&bg_kafka_msg_produce_req, 9, "00 0001 00001388 02 00 01 00 00",
                                &rd, b, sizeof b),
                     BG_KAFKA_ERR_MALFORMED);
    assert_string_equal(rd.why, "null in non-nullable field");
}

/* A compact string's length can say more than 32767 bytes, which Kafka's
 * readers refuse ("string field ... had invalid length"): busgate refuses it
 * too, and takes 32767. Compact bytes have no such bound. */
static void test_compact_string_length_bound(void **state)
{
    static uint8_t b[32800];
    for (int32_t n = 32767; n <= 32768; n++) {
        /* DescribeTopicPartitions v0: topics [name of n bytes], limit 10, no cursor */
        static const uint8_t tail[] = {0x00, 0x00, 0x00, 0x00, 0x0a, 0xff, 0x00};
        size_t k = kt_long_name_body(b, n, tail, sizeof tail);
        bg_rd_t rd;
        bg_kafka_struct_t *s;
        bg_rd_init(&rd, b, k);
        int rc = bg_kafka_decode(&bg_kafka_msg_describe_topic_partitions_req, 0, &rd, &kt_arena, &s);
        if (n == 32767) {
            assert_int_equal(rc, BG_KAFKA_OK);
            assert_int_equal(bg_rd_left(&rd), 0);
        } else {
            assert_int_equal(rc, BG_KAFKA_ERR_MALFORMED);
            assert_string_equal(rd.why, "string too long");
        }
    }
}

/* A nullable struct's marker: Kafka reads any negative byte as null and
 * anything else, 0 included, as present. busgate reads the same (flagging 0
 * as non-canonical): reading 0 as null would leave the struct's bytes to be
 * read as what follows it, where the broker reads a cursor naming a topic. */
static void test_nullable_struct_marker_zero(void **state)
{
    uint8_t b[64];
    bg_rd_t rd;
    bg_kafka_struct_t *s;
    /* DescribeTopicPartitions v0: topics ["a"], limit 10, Cursor {"t", 5} */
    size_t n = kt_hex("02 0261 00 0000000a 00 0274 00000005 00 00", b, sizeof b);
    bg_rd_init(&rd, b, n);
    assert_int_equal(
        bg_kafka_decode(&bg_kafka_msg_describe_topic_partitions_req, 0, &rd, &kt_arena, &s),
        BG_KAFKA_OK);
    assert_int_equal(bg_rd_left(&rd), 0);
    assert_int_equal(rd.noncanon, 1);
    const bg_kafka_struct_t *cur = s->f[BG_KAFKA_DESCRIBE_TOPIC_PARTITIONS_REQ_CURSOR].st;
    assert_non_null(cur);
    assert_true(kt_slice_eq(KT_S(cur, BG_KAFKA_DESCRIBE_TOPIC_PARTITIONS_REQ_CURSOR_TOPIC_NAME),
                            "t"));
    assert_int_equal(KT_I(cur, BG_KAFKA_DESCRIBE_TOPIC_PARTITIONS_REQ_CURSOR_PARTITION_INDEX), 5);
    /* the canonical marker 1 is the same cursor; 0xff is null */
    b[8] = 0x01;
    s = kt_roundtrip(&bg_kafka_msg_describe_topic_partitions_req, 0, b, n);
    assert_non_null(s->f[BG_KAFKA_DESCRIBE_TOPIC_PARTITIONS_REQ_CURSOR].st);
    n = kt_hex("02 0261 00 0000000a ff 00", b, sizeof b);
    s = kt_roundtrip(&bg_kafka_msg_describe_topic_partitions_req, 0, b, n);
    assert_null(s->f[BG_KAFKA_DESCRIBE_TOPIC_PARTITIONS_REQ_CURSOR].st);
}

/* A tag repeated: the last one counts (as in Kafka's generated readers) and
 * the input is flagged non-canonical (it re-encodes once). */
static void test_tagged_repeated(void **state)
{
    uint8_t b[64];
    bg_rd_t rd;
    bg_kafka_struct_t *s;
    size_t n = kt_hex("0000 01 00000000 02 0108 0000000000000002 0108 0000000000000003", b,
                      sizeof b);
    bg_rd_init(&rd, b, n);
    assert_int_equal(bg_kafka_decode(&bg_kafka_msg_api_versions_resp, 3, &rd, &kt_arena, &s),
                     BG_KAFKA_OK);
    assert_int_equal(rd.noncanon, 1);
    assert_int_equal(KT_I(s, BG_KAFKA_API_VERSIONS_RESP_FINALIZED_FEATURES_EPOCH), 3);
}

/* Unknown tagged fields are dropped at every depth, not only the top and
 * its array elements: Produce v9's partitions are two arrays down, and a
 * tag left there would reach the broker (the session forwards the request
 * as it came when nothing was dropped). */
static void test_tagged_unknown_dropped_deep(void **state)
{
    kt_vec_t v;
    kt_init(&v, 1);
    kt_str(&v, NULL), kt_i16(&v, 1), kt_i32(&v, 5000);
    kt_arr(&v, 1);
    kt_str(&v, "t");
    kt_arr(&v, 1);
    kt_i32(&v, 0), kt_bytes(&v, NULL, -1);
    kt_vec_t val;
    kt_init(&val, 1);
    kt_str(&val, "x");
    kt_uv(&v, 1), kt_tag(&v, 7, &val); /* the partition's unknown tag 7 */
    kt_tags0(&v);                       /* topic */
    kt_tags0(&v);                       /* request */
    bg_rd_t rd;
    bg_rd_init(&rd, v.b, v.n);
    bg_kafka_struct_t *s;
    assert_int_equal(bg_kafka_decode(&bg_kafka_msg_produce_req, 9, &rd, &kt_arena, &s),
                     BG_KAFKA_OK);
    assert_int_equal(rd.unknown_tags, 1);
    const bg_kafka_struct_t *p = KT_A(KT_A(s, BG_KAFKA_PRODUCE_REQ_TOPIC_DATA).s[0],
                                      BG_KAFKA_PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA)
                                     .s[0];
    assert_int_equal(p->nunknown, 1);
    assert_int_equal(bg_kafka_struct_drop_unknown(s, 0), 1);
    assert_int_equal(p->nunknown, 0);
    bg_wr_t wr;
    bg_wr_init(&wr, 0, 0);
    const char *why;
    assert_int_equal(bg_kafka_encode(&bg_kafka_msg_produce_req, 9, s, &wr, &why), BG_KAFKA_OK);
    assert_int_equal(wr.len, v.n - 4); /* the tag, its size and its 2 bytes; count 0 */
    assert_null(memchr(wr.buf, 'x', wr.len));
    bg_wr_free(&wr);
}

/* A classic string is at most 32767 bytes (int16 length): one more cannot
 * be encoded (it would go out as a negative length). */
static void test_encode_string_length_bound(void **state)
{
    static char mech[32769];
    memset(mech, 'M', sizeof mech - 1);
    bg_kafka_struct_t *s = bg_kafka_struct_new(&kt_arena, bg_kafka_msg_sasl_handshake_req.body);
    bg_wr_t wr;
    bg_wr_init(&wr, 0, 0);
    const char *why = NULL;
    s->f[BG_KAFKA_SASL_HANDSHAKE_REQ_MECHANISM].s = (bg_slice_t){(const uint8_t *)mech, 32767};
    assert_int_equal(bg_kafka_encode(&bg_kafka_msg_sasl_handshake_req, 1, s, &wr, &why),
                     BG_KAFKA_OK);
    assert_int_equal(wr.len, 2 + 32767);
    bg_wr_reset(&wr);
    s->f[BG_KAFKA_SASL_HANDSHAKE_REQ_MECHANISM].s = (bg_slice_t){(const uint8_t *)mech, 32768};
    assert_int_equal(bg_kafka_encode(&bg_kafka_msg_sasl_handshake_req, 1, s, &wr, &why),
                     BG_KAFKA_ERR_ENCODE);
    assert_string_equal(why, "string too long");
    bg_wr_free(&wr);
}

/* A known tagged field of exactly 128 bytes: its size is the two-byte
 * varint 80 01 (the continuation bit set on 0x80 itself). ApiVersions v3
 * response, SupportedFeatures (tag 0) holding one feature named with 121
 * bytes: count, name, min, max, tags = 1 + 122 + 2 + 2 + 1. */
static void test_tagged_field_of_128_bytes(void **state)
{
    kt_vec_t val, v;
    char name[122];
    memset(name, 'f', 121);
    name[121] = 0;
    kt_init(&val, 1);
    kt_arr(&val, 1), kt_str(&val, name), kt_i16(&val, 1), kt_i16(&val, 2), kt_tags0(&val);
    assert_int_equal(val.n, 128);
    kt_init(&v, 1);
    kt_i16(&v, 0), kt_arr(&v, 0), kt_i32(&v, 0);
    kt_uv(&v, 1), kt_tag(&v, 0, &val);
    assert_int_equal(v.b[v.n - 130], 0x80); /* the size: 80 01 */
    bg_kafka_struct_t *s = KT_RT(bg_kafka_msg_api_versions_resp, 3, v);
    assert_int_equal(KT_A(s, BG_KAFKA_API_VERSIONS_RESP_SUPPORTED_FEATURES).n, 1);
}

/* A non-nullable struct left null is an encoding error, not a crash. */
static void test_encode_null_struct(void **state)
{
    const bg_kafka_msg_desc_t *d = &bg_kafka_msg_fetch_snapshot_req;
    bg_kafka_struct_t *s = bg_kafka_struct_new(&kt_arena, d->body);
    bg_kafka_struct_t **t = bg_kafka_array_new(&kt_arena, s, BG_KAFKA_FETCH_SNAPSHOT_REQ_TOPICS, 1);
    assert_non_null(t);
    bg_kafka_struct_t **p =
        bg_kafka_array_new(&kt_arena, t[0], BG_KAFKA_FETCH_SNAPSHOT_REQ_TOPICS_PARTITIONS, 1);
    assert_non_null(p);
    bg_wr_t wr;
    bg_wr_init(&wr, 0, 0);
    const char *why = NULL;
    assert_int_equal(bg_kafka_encode(d, 0, s, &wr, &why), BG_KAFKA_OK);
    bg_wr_reset(&wr);
    p[0]->f[BG_KAFKA_FETCH_SNAPSHOT_REQ_TOPICS_PARTITIONS_SNAPSHOT_ID].st = NULL;
    assert_int_equal(bg_kafka_encode(d, 0, s, &wr, &why), BG_KAFKA_ERR_ENCODE);
    assert_string_equal(why, "null in non-nullable struct");
    bg_wr_free(&wr);
}

/* The nesting bound is exact: structs at depths 0 to BG_KAFKA_MAX_DEPTH
 * decode, one level more is refused. */
static void test_nesting_depth_bound(void **state)
{
    uint8_t b[BG_KAFKA_MAX_DEPTH + 2];
    bg_rd_t rd;
    bg_kafka_struct_t *s;
    memset(b, 1, sizeof b);
    b[BG_KAFKA_MAX_DEPTH] = 0xff; /* the struct at depth MAX_DEPTH has no Next */
    bg_rd_init(&rd, b, BG_KAFKA_MAX_DEPTH + 1);
    assert_int_equal(bg_kafka_decode_struct(&deep_desc, 0, 0, &rd, &kt_arena, &s), BG_KAFKA_OK);
    b[BG_KAFKA_MAX_DEPTH] = 1, b[BG_KAFKA_MAX_DEPTH + 1] = 0xff;
    bg_rd_init(&rd, b, BG_KAFKA_MAX_DEPTH + 2);
    assert_int_equal(bg_kafka_decode_struct(&deep_desc, 0, 0, &rd, &kt_arena, &s),
                     BG_KAFKA_ERR_LIMIT);
    assert_string_equal(rd.why, "nesting too deep");
}

/* The arena's limit bounds its total, not only each block: blocks that each
 * fit under it stop once together they would pass it. */
static void test_arena_limit_total(void **state)
{
    bg_kafka_arena_t a;
    bg_kafka_arena_init(&a, 128u << 10);
    assert_non_null(bg_kafka_arena_alloc(&a, 4000));  /* the first 4 KiB block */
    assert_non_null(bg_kafka_arena_alloc(&a, 60000)); /* a 64 KiB block: 68 KiB */
    assert_null(bg_kafka_arena_alloc(&a, 60000));     /* another: 132 KiB > 128 KiB */
    assert_true(a.total <= a.limit);
    bg_kafka_arena_free(&a);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, kt_setup, kt_teardown)
    const struct CMUnitTest tests[] = {
        T(test_rd_scalars),
        T(test_rd_varints),
        T(test_rd_sub_and_bytes),
        T(test_wr),
        T(test_descriptors),
        T(test_frame_peek),
        T(test_captured_api_versions),
        T(test_captured_metadata),
        T(test_header_versions),
        T(test_header_errors),
        T(test_build_produce_error_response),
        T(test_split_request),
        T(test_tagged_merge_order),
        T(test_tagged_unknown_dropped),
        T(test_tagged_noncanonical),
        T(test_huge_counts),
        T(test_bad_varints),
        T(test_version_range),
        T(test_encode_errors),
        T(test_nesting_depth),
        T(test_arena_limit),
        T(test_arena_alloc_past_limit),
        T(test_null_in_non_nullable_string),
        T(test_compact_string_length_bound),
        T(test_nullable_struct_marker_zero),
        T(test_tagged_repeated),
        T(test_tagged_unknown_dropped_deep),
        T(test_encode_string_length_bound),
        T(test_tagged_field_of_128_bytes),
        T(test_encode_null_struct),
        T(test_nesting_depth_bound),
        T(test_arena_limit_total),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
