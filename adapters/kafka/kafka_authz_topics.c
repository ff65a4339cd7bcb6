/* The generic topic -> partition split/merge, written once and driven by the
 * field indices of each API's shape, and the classifiers of the APIs whose
 * resources are topics. Also the generic whole-request error response. */
#include <stdlib.h>
#include <string.h>

#include "adapters/kafka/kafka_authz-internal.h"

#define K(x) BG_KAFKA_##x

/* ---- error-entry values matching what Kafka itself returns ---- */

static void bg_kafka__fill_produce(bg_kafka_struct_t *p)
{
    /* ProduceResponse.PartitionResponse(error): base offset -1, no append time. */
    p->f[K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES_BASE_OFFSET)].i = -1;
    p->f[K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES_LOG_APPEND_TIME_MS)].i = -1;
    p->f[K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES_LOG_START_OFFSET)].i = -1;
}

static void bg_kafka__fill_fetch(bg_kafka_struct_t *p)
{
    /* FetchResponse.partitionResponse(error): offsets -1, MemoryRecords.EMPTY
     * (an empty, non-null records field). */
    static const uint8_t empty[1];
    p->f[K(FETCH_RESP_RESPONSES_PARTITIONS_HIGH_WATERMARK)].i = -1;
    p->f[K(FETCH_RESP_RESPONSES_PARTITIONS_LAST_STABLE_OFFSET)].i = -1;
    p->f[K(FETCH_RESP_RESPONSES_PARTITIONS_LOG_START_OFFSET)].i = -1;
    p->f[K(FETCH_RESP_RESPONSES_PARTITIONS_PREFERRED_READ_REPLICA)].i = -1;
    p->f[K(FETCH_RESP_RESPONSES_PARTITIONS_RECORDS)].s = (bg_slice_t){empty, 0};
}

static void bg_kafka__fill_list_offsets(bg_kafka_struct_t *p)
{
    p->f[K(LIST_OFFSETS_RESP_TOPICS_PARTITIONS_TIMESTAMP)].i = -1;
    p->f[K(LIST_OFFSETS_RESP_TOPICS_PARTITIONS_OFFSET)].i = -1;
    p->f[K(LIST_OFFSETS_RESP_TOPICS_PARTITIONS_LEADER_EPOCH)].i = -1;
}

static void bg_kafka__fill_olep(bg_kafka_struct_t *p)
{
    p->f[K(OFFSET_FOR_LEADER_EPOCH_RESP_TOPICS_PARTITIONS_LEADER_EPOCH)].i = -1;
    p->f[K(OFFSET_FOR_LEADER_EPOCH_RESP_TOPICS_PARTITIONS_END_OFFSET)].i = -1;
}

static void bg_kafka__fill_delete_records(bg_kafka_struct_t *p)
{
    p->f[K(DELETE_RECORDS_RESP_TOPICS_PARTITIONS_LOW_WATERMARK)].i = -1;
}

static void bg_kafka__fill_create_topics(bg_kafka_struct_t *t)
{
    t->f[K(CREATE_TOPICS_RESP_TOPICS_NUM_PARTITIONS)].i = -1;
    t->f[K(CREATE_TOPICS_RESP_TOPICS_REPLICATION_FACTOR)].i = -1;
}

/* ControllerApis.createTopics words its own refusal ("Authorization
 * failed."), not with the error's default message. */
static void bg_kafka__deny_create_topics(bg_kafka_struct_t *t, int16_t err)
{
    if (err == BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED)
        t->f[K(CREATE_TOPICS_RESP_TOPICS_ERROR_MESSAGE)].s = bg_kafka_cstr("Authorization failed.");
}

/* ControllerApis.deleteTopics: ApiError(TOPIC_AUTHORIZATION_FAILED), the
 * default message (v5+). */
static void bg_kafka__deny_delete_topics(bg_kafka_struct_t *t, int16_t err)
{
    bg_kafka__deny_message(t, K(DELETE_TOPICS_RESP_RESPONSES_ERROR_MESSAGE), err);
}

/* ---- shapes ---- */

static const bg_kafka__tp_shape_t bg_kafka__sh_produce = {
    K(PRODUCE_REQ_TOPIC_DATA), K(PRODUCE_REQ_TOPIC_DATA_NAME), K(PRODUCE_REQ_TOPIC_DATA_TOPIC_ID),
    K(PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA), K(PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA_INDEX),
    K(PRODUCE_RESP_RESPONSES), K(PRODUCE_RESP_RESPONSES_NAME), K(PRODUCE_RESP_RESPONSES_TOPIC_ID),
    K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES),
    K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES_INDEX),
    K(PRODUCE_RESP_RESPONSES_PARTITION_RESPONSES_ERROR_CODE), bg_kafka__fill_produce, NULL};

static const bg_kafka__tp_shape_t bg_kafka__sh_fetch = {
    K(FETCH_REQ_TOPICS), K(FETCH_REQ_TOPICS_TOPIC), K(FETCH_REQ_TOPICS_TOPIC_ID),
    K(FETCH_REQ_TOPICS_PARTITIONS), K(FETCH_REQ_TOPICS_PARTITIONS_PARTITION),
    K(FETCH_RESP_RESPONSES), K(FETCH_RESP_RESPONSES_TOPIC), K(FETCH_RESP_RESPONSES_TOPIC_ID),
    K(FETCH_RESP_RESPONSES_PARTITIONS), K(FETCH_RESP_RESPONSES_PARTITIONS_PARTITION_INDEX),
    K(FETCH_RESP_RESPONSES_PARTITIONS_ERROR_CODE), bg_kafka__fill_fetch, NULL};

static const bg_kafka__tp_shape_t bg_kafka__sh_list_offsets = {
    K(LIST_OFFSETS_REQ_TOPICS), K(LIST_OFFSETS_REQ_TOPICS_NAME), -1,
    K(LIST_OFFSETS_REQ_TOPICS_PARTITIONS), K(LIST_OFFSETS_REQ_TOPICS_PARTITIONS_PARTITION_INDEX),
    K(LIST_OFFSETS_RESP_TOPICS), K(LIST_OFFSETS_RESP_TOPICS_NAME), -1,
    K(LIST_OFFSETS_RESP_TOPICS_PARTITIONS), K(LIST_OFFSETS_RESP_TOPICS_PARTITIONS_PARTITION_INDEX),
    K(LIST_OFFSETS_RESP_TOPICS_PARTITIONS_ERROR_CODE), bg_kafka__fill_list_offsets, NULL};

static const bg_kafka__tp_shape_t bg_kafka__sh_olep = {
    K(OFFSET_FOR_LEADER_EPOCH_REQ_TOPICS), K(OFFSET_FOR_LEADER_EPOCH_REQ_TOPICS_TOPIC), -1,
    K(OFFSET_FOR_LEADER_EPOCH_REQ_TOPICS_PARTITIONS),
    K(OFFSET_FOR_LEADER_EPOCH_REQ_TOPICS_PARTITIONS_PARTITION),
    K(OFFSET_FOR_LEADER_EPOCH_RESP_TOPICS), K(OFFSET_FOR_LEADER_EPOCH_RESP_TOPICS_TOPIC), -1,
    K(OFFSET_FOR_LEADER_EPOCH_RESP_TOPICS_PARTITIONS),
    K(OFFSET_FOR_LEADER_EPOCH_RESP_TOPICS_PARTITIONS_PARTITION),
    K(OFFSET_FOR_LEADER_EPOCH_RESP_TOPICS_PARTITIONS_ERROR_CODE), bg_kafka__fill_olep, NULL};

static const bg_kafka__tp_shape_t bg_kafka__sh_create_topics = {
    K(CREATE_TOPICS_REQ_TOPICS), K(CREATE_TOPICS_REQ_TOPICS_NAME), -1, -1, -1,
    K(CREATE_TOPICS_RESP_TOPICS), K(CREATE_TOPICS_RESP_TOPICS_NAME), -1, -1, -1,
    K(CREATE_TOPICS_RESP_TOPICS_ERROR_CODE), bg_kafka__fill_create_topics,
    bg_kafka__deny_create_topics};

static const bg_kafka__tp_shape_t bg_kafka__sh_delete_topics = {
    K(DELETE_TOPICS_REQ_TOPICS), K(DELETE_TOPICS_REQ_TOPICS_NAME),
    K(DELETE_TOPICS_REQ_TOPICS_TOPIC_ID), -1, -1, K(DELETE_TOPICS_RESP_RESPONSES),
    K(DELETE_TOPICS_RESP_RESPONSES_NAME), K(DELETE_TOPICS_RESP_RESPONSES_TOPIC_ID), -1, -1,
    K(DELETE_TOPICS_RESP_RESPONSES_ERROR_CODE), NULL,
    bg_kafka__deny_delete_topics};

static const bg_kafka__tp_shape_t bg_kafka__sh_delete_records = {
    K(DELETE_RECORDS_REQ_TOPICS), K(DELETE_RECORDS_REQ_TOPICS_NAME), -1,
    K(DELETE_RECORDS_REQ_TOPICS_PARTITIONS),
    K(DELETE_RECORDS_REQ_TOPICS_PARTITIONS_PARTITION_INDEX), K(DELETE_RECORDS_RESP_TOPICS),
    K(DELETE_RECORDS_RESP_TOPICS_NAME), -1, K(DELETE_RECORDS_RESP_TOPICS_PARTITIONS),
    K(DELETE_RECORDS_RESP_TOPICS_PARTITIONS_PARTITION_INDEX),
    K(DELETE_RECORDS_RESP_TOPICS_PARTITIONS_ERROR_CODE), bg_kafka__fill_delete_records, NULL};

static const bg_kafka__tp_shape_t bg_kafka__sh_create_partitions = {
    K(CREATE_PARTITIONS_REQ_TOPICS), K(CREATE_PARTITIONS_REQ_TOPICS_NAME), -1, -1, -1,
    K(CREATE_PARTITIONS_RESP_RESULTS), K(CREATE_PARTITIONS_RESP_RESULTS_NAME), -1, -1, -1,
    K(CREATE_PARTITIONS_RESP_RESULTS_ERROR_CODE), NULL, NULL};

static const bg_kafka__tp_shape_t bg_kafka__sh_describe_producers = {
    K(DESCRIBE_PRODUCERS_REQ_TOPICS), K(DESCRIBE_PRODUCERS_REQ_TOPICS_NAME), -1,
    K(DESCRIBE_PRODUCERS_REQ_TOPICS_PARTITION_INDEXES), -1, K(DESCRIBE_PRODUCERS_RESP_TOPICS),
    K(DESCRIBE_PRODUCERS_RESP_TOPICS_NAME), -1, K(DESCRIBE_PRODUCERS_RESP_TOPICS_PARTITIONS),
    K(DESCRIBE_PRODUCERS_RESP_TOPICS_PARTITIONS_PARTITION_INDEX),
    K(DESCRIBE_PRODUCERS_RESP_TOPICS_PARTITIONS_ERROR_CODE), NULL, NULL};

static const bg_kafka__tp_shape_t bg_kafka__sh_metadata = {
    K(METADATA_REQ_TOPICS), K(METADATA_REQ_TOPICS_NAME), K(METADATA_REQ_TOPICS_TOPIC_ID), -1, -1,
    K(METADATA_RESP_TOPICS), K(METADATA_RESP_TOPICS_NAME), K(METADATA_RESP_TOPICS_TOPIC_ID), -1,
    -1, K(METADATA_RESP_TOPICS_ERROR_CODE), NULL, NULL};

static const bg_kafka__tp_shape_t bg_kafka__sh_dtp = {
    K(DESCRIBE_TOPIC_PARTITIONS_REQ_TOPICS), K(DESCRIBE_TOPIC_PARTITIONS_REQ_TOPICS_NAME), -1, -1,
    -1, K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS), K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_NAME),
    K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_TOPIC_ID), -1, -1,
    K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_ERROR_CODE), NULL, NULL};

/* Shapes for the generic per-entry error response (bg_kafka_authz_error_response). */
static const bg_kafka__tp_shape_t *bg_kafka__shape_of(int16_t api_key, int16_t ver)
{
    switch (api_key) {
    case BG_KAFKA_API_PRODUCE: return &bg_kafka__sh_produce;
    case BG_KAFKA_API_FETCH: return &bg_kafka__sh_fetch;
    case BG_KAFKA_API_LIST_OFFSETS: return &bg_kafka__sh_list_offsets;
    case BG_KAFKA_API_OFFSET_FOR_LEADER_EPOCH: return &bg_kafka__sh_olep;
    case BG_KAFKA_API_CREATE_TOPICS: return &bg_kafka__sh_create_topics;
    case BG_KAFKA_API_DELETE_TOPICS: return ver >= 6 ? &bg_kafka__sh_delete_topics : NULL;
    case BG_KAFKA_API_DELETE_RECORDS: return &bg_kafka__sh_delete_records;
    case BG_KAFKA_API_CREATE_PARTITIONS: return &bg_kafka__sh_create_partitions;
    case BG_KAFKA_API_DESCRIBE_PRODUCERS: return &bg_kafka__sh_describe_producers;
    case BG_KAFKA_API_DESCRIBE_TOPIC_PARTITIONS: return &bg_kafka__sh_dtp;
    default: return NULL;
    }
}

/* ---- the generic machinery ---- */

/* Byte order of two names, as Kafka's String.compareTo orders topic names
 * (which are ASCII). */
static int bg_kafka__name_cmp(bg_slice_t a, bg_slice_t b)
{
    size_t la = a.len > 0 ? (size_t)a.len : 0, lb = b.len > 0 ? (size_t)b.len : 0;
    int c =
        memcmp(a.p ? a.p : (const uint8_t *)"", b.p ? b.p : (const uint8_t *)"", la < lb ? la : lb);
    return c ? c : (la > lb) - (la < lb);
}

const bg_kafka_struct_desc_t *bg_kafka__rs_topic_desc(int16_t api_key,
                                                      const bg_kafka__tp_shape_t *sh)
{
    const bg_kafka_msg_desc_t *d = bg_kafka_msg_desc(api_key, 1);
    return d ? bg_kafka_sub_desc(d->body, sh->rs_topics) : NULL;
}

/* 1 when request topic t names a non-zero topic id. */
static int bg_kafka__by_id(const bg_kafka__az_t *az, const bg_kafka__tp_shape_t *sh,
                           const bg_kafka_struct_t *t)
{
    return sh->rq_id >= 0 && bg_kafka__has(t->desc, sh->rq_id, az->ver) &&
           !bg_kafka__uuid_zero(t->f[sh->rq_id].uuid);
}

int bg_kafka__topic_name(const bg_kafka__az_t *az, const bg_kafka__tp_shape_t *sh,
                         const bg_kafka_struct_t *t, bg_slice_t *name)
{
    /* A topic id, when one is given, is what the broker goes by (Metadata
     * v12+ with ids ignores the names), so it decides even next to a name. */
    int has_id = sh->rq_id >= 0 && bg_kafka__has(t->desc, sh->rq_id, az->ver);
    if (sh->rq_name >= 0 && bg_kafka__has(t->desc, sh->rq_name, az->ver) &&
        t->f[sh->rq_name].s.len >= 0 && !bg_kafka__by_id(az, sh, t)) {
        *name = t->f[sh->rq_name].s;
        return 1;
    }
    *name = bg_kafka_null_slice();
    bg_slice_t nm;
    if (!has_id || !az->ctx->topic_name ||
        !az->ctx->topic_name(az->ctx->topic_name_arg, t->f[sh->rq_id].uuid, &nm) || nm.len < 0)
        return 0;
    /* The callback's name lives for this call only; decisions outlive it. */
    uint8_t *copy = bg_kafka_arena_alloc(az->a, (size_t)nm.len + 1);
    if (!copy)
        return 0;
    if (nm.len)
        memcpy(copy, nm.p, (size_t)nm.len);
    *name = (bg_slice_t){copy, nm.len};
    return 1;
}

bg_kafka_struct_t *bg_kafka__tp_deny_entry(bg_kafka_arena_t *a, const bg_kafka__tp_shape_t *sh,
                                           const bg_kafka_struct_desc_t *rs_topic_desc,
                                           const bg_kafka_struct_t *rq_topic, bg_slice_t name,
                                           int16_t err)
{
    bg_kafka_struct_t *t = bg_kafka_struct_new(a, rs_topic_desc);
    if (!t)
        return NULL;
    if (sh->rs_name >= 0) /* share APIs name topics by id only */
        t->f[sh->rs_name].s = name;
    if (sh->rs_name >= 0 && name.len < 0 &&
        !(rs_topic_desc->fields[sh->rs_name].null_min <=
          rs_topic_desc->fields[sh->rs_name].null_max))
        t->f[sh->rs_name].s = (bg_slice_t){(const uint8_t *)"", 0};
    if (sh->rs_id >= 0 && sh->rq_id >= 0)
        memcpy(t->f[sh->rs_id].uuid, rq_topic->f[sh->rq_id].uuid, 16);
    if (sh->rs_parts < 0) {
        t->f[sh->rs_err].i = err;
        if (sh->fill)
            sh->fill(t);
        return t;
    }
    int32_t n = sh->rq_parts >= 0 ? bg_kafka__n(rq_topic, sh->rq_parts) : 0;
    bg_kafka_struct_t **ps = bg_kafka_array_new(a, t, sh->rs_parts, n);
    if (!ps)
        return NULL;
    for (int32_t i = 0; i < n; i++) {
        const bg_kafka_val_t *rp = &rq_topic->f[sh->rq_parts].a.v[i];
        int64_t idx = sh->rq_pidx >= 0 ? rq_topic->f[sh->rq_parts].a.s[i]->f[sh->rq_pidx].i
                                       : rp->i;
        ps[i]->f[sh->rs_pidx].i = idx;
        ps[i]->f[sh->rs_err].i = err;
        if (sh->fill)
            sh->fill(ps[i]);
    }
    return t;
}

void bg_kafka__tp_deny_values(const bg_kafka__tp_shape_t *sh, bg_kafka_struct_t *t, int16_t err)
{
    if (!sh->deny)
        return;
    if (sh->rs_parts < 0) {
        sh->deny(t, err);
        return;
    }
    for (int32_t i = 0; i < bg_kafka__n(t, sh->rs_parts); i++)
        sh->deny(t->f[sh->rs_parts].a.s[i], err);
}

/* Starts the denied bookkeeping at topic i: keep[] gets the allowed prefix. */
static int bg_kafka__split_begin(bg_kafka__az_t *az, bg_kafka_struct_t **el, int32_t n,
                                 int32_t i, bg_kafka_struct_t ***keep, bg_kafka__split_t *out)
{
    *keep = bg_kafka_arena_alloc(az->a, (size_t)n * sizeof **keep);
    out->denied = bg_kafka_arena_alloc(az->a, (size_t)n * sizeof *out->denied);
    if (!*keep || !out->denied) {
        az->oom = 1;
        return -1;
    }
    memcpy(*keep, el, (size_t)i * sizeof **keep);
    out->nallowed = i;
    return 0;
}

/* A v2 batch's attributes bit 4: the batch belongs to a transaction. */
#define BG_KAFKA__BATCH_TRANSACTIONAL 0x10

/* What a Produce partition's batch headers say: the records they carry (a
 * v2 batch (magic 2) counts its recordsCount, a legacy message (magic 0/1)
 * one), and whether one is transactional (*txn set; a v2 header's
 * attributes, legacy messages have no transactions). Only headers are
 * read, once per request; a batch cut short ends the walk (the broker
 * refuses such a request itself). */
static int64_t bg_kafka__batch_records(bg_slice_t rec, int *txn)
{
    int64_t n = 0;
    size_t len = rec.len > 0 ? (size_t)rec.len : 0, off = 0;
    while (len - off >= 12) {
        const uint8_t *b = rec.p + off;
        uint32_t blen = (uint32_t)b[8] << 24 | (uint32_t)b[9] << 16 | (uint32_t)b[10] << 8 | b[11];
        if (blen > len - off - 12)
            break;
        if (blen >= 49 && b[16] == 2) {
            int32_t c = (int32_t)((uint32_t)b[57] << 24 | (uint32_t)b[58] << 16 |
                                  (uint32_t)b[59] << 8 | b[60]);
            n += c > 0 ? c : 0;
            *txn |= (((uint32_t)b[21] << 8 | b[22]) & BG_KAFKA__BATCH_TRANSACTIONAL) != 0;
        } else {
            n += 1;
        }
        off += 12 + (size_t)blen;
    }
    return n;
}

static int64_t bg_kafka__topic_records(const bg_kafka_struct_t *t, int *txn)
{
    int64_t n = 0;
    int32_t np = bg_kafka__n(t, K(PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA));
    for (int32_t i = 0; i < np; i++)
        n += bg_kafka__batch_records(t->f[K(PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA)]
                                         .a.s[i]->f[K(PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA_RECORDS)]
                                         .s,
                                     txn);
    return n;
}

int bg_kafka__tp_split(bg_kafka__az_t *az, const bg_kafka__tp_shape_t *sh,
                       const bg_kafka_struct_desc_t *rs_topic_desc,
                       const bg_kafka_struct_t *parent, bg_verb_t verb, int16_t force_err,
                       bg_kafka__split_t *out)
{
    int32_t n = bg_kafka__n(parent, sh->rq_topics);
    bg_kafka_struct_t **el = parent->f[sh->rq_topics].a.s, **keep = NULL;
    memset(out, 0, sizeof *out);
    out->force = force_err;
    out->allowed = (bg_kafka_struct_t *)parent;
    out->nallowed = n;
    for (int32_t i = 0; i < n; i++) {
        const bg_kafka_struct_t *t = el[i];
        bg_slice_t name;
        int16_t err = force_err;
        int described = 0; /* a delete by id refused after describe passed */
        int known = bg_kafka__topic_name(az, sh, t, &name);
        az->last = 0;
        if (!err && !known) {
            err = BG_KAFKA_E_UNKNOWN_TOPIC_ID; /* never pass an unresolvable id through */
            bg_kafka__record_denied(az, BG_RES_KAFKA_TOPIC, name, verb, err, "unknown topic id");
        } else if (!err && verb == BG_VERB_DELETE && bg_kafka__by_id(az, sh, t) &&
                   !bg_kafka__decide(az, BG_RES_KAFKA_TOPIC, name, BG_VERB_DESCRIBE)) {
            /* Kafka deletes by id only what the principal may also describe
             * (the response would name the topic); it checks that first. */
            err = BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED;
        } else if (!err && !bg_kafka__decide(az, BG_RES_KAFKA_TOPIC, name, verb)) {
            err = BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED;
            described = verb == BG_VERB_DELETE;
        }
        if (az->topic_records && az->last)
            az->groups[az->last - 1].d.records += az->topic_records[i];
        if (!err) {
            if (keep)
                keep[out->nallowed++] = el[i];
            continue;
        }
        if (!keep && bg_kafka__split_begin(az, el, n, i, &keep, out) < 0)
            return -1;
        /* A topic asked for by id is refused without its name, as Kafka
         * does: the name would tell what the id is; unless the principal
         * may describe it (a delete refused after its describe check). */
        int hide = bg_kafka__by_id(az, sh, t) && !described;
        bg_kafka_struct_t *e = bg_kafka__tp_deny_entry(
            az->a, sh, rs_topic_desc, t, hide ? bg_kafka_null_slice() : name, err);
        if (!e) {
            az->oom = 1;
            return -1;
        }
        bg_kafka__tp_deny_values(sh, e, err);
        out->denied[out->ndenied++] = e;
    }
    if (!keep)
        return 0;
    out->allowed = bg_kafka_struct_clone(az->a, parent);
    if (!out->allowed) {
        az->oom = 1;
        return -1;
    }
    out->allowed->f[sh->rq_topics].a.s = keep;
    out->allowed->f[sh->rq_topics].a.n = out->nallowed;
    return 0;
}

int bg_kafka__tp_finish(bg_kafka__az_t *az, const bg_kafka__tp_shape_t *sh,
                        const bg_kafka__split_t *sp, int rewritten)
{
    bg_kafka_verdict_t *v = az->v;
    if (sp->ndenied == 0 && !sp->force) {
        v->action = rewritten ? BG_KAFKA_ACT_FORWARD_REWRITTEN : BG_KAFKA_ACT_FORWARD;
        v->request = rewritten ? sp->allowed : NULL;
        return 0;
    }
    if (sp->nallowed == 0) {
        bg_kafka_struct_t *r = bg_kafka__resp_new(az);
        if (!r)
            return -1;
        r->f[sh->rs_topics].a.s = sp->denied;
        r->f[sh->rs_topics].a.n = sp->ndenied;
        v->action = BG_KAFKA_ACT_RESPOND;
        v->response = r;
        return 0;
    }
    v->action = BG_KAFKA_ACT_FORWARD_REWRITTEN;
    v->request = sp->allowed;
    return bg_kafka__add_append(az, sh->rs_topics, -1, bg_kafka_null_slice(), -1, sp->denied,
                                sp->ndenied);
}

int bg_kafka__tp_apply(bg_kafka__az_t *az, const bg_kafka__tp_shape_t *sh, bg_verb_t verb,
                       int16_t force_err)
{
    bg_kafka__split_t sp;
    const bg_kafka_struct_desc_t *rd = bg_kafka__rs_topic_desc(az->hdr->api_key, sh);
    if (!rd || bg_kafka__tp_split(az, sh, rd, az->req, verb, force_err, &sp) < 0)
        return az->oom ? 0 : -1;
    return bg_kafka__tp_finish(az, sh, &sp, 0);
}

/* ---- classifiers ---- */

static const char bg_kafka__txn_without_id[] =
    "transactional records without a transactional id";

/* Produce: write on the transactional id when one is set, then on each
 * topic. Batches marked transactional in a request without a transactional
 * id are refused whole, as Kafka refuses them (no id to authorize: 53 for
 * every partition); which transactional id a batch's producer id belongs
 * to is left to the broker's partition verification (KIP-890). */
int bg_kafka__c_produce(bg_kafka__az_t *az)
{
    const bg_kafka_struct_t *r = az->req;
    int16_t force = 0;
    bg_slice_t txn = r->f[K(PRODUCE_REQ_TRANSACTIONAL_ID)].s;
    int32_t n = bg_kafka__n(r, K(PRODUCE_REQ_TOPIC_DATA));
    int64_t *records = bg_kafka_arena_alloc(az->a, (size_t)(n + 1) * sizeof *records);
    int transactional = 0;
    if (!records)
        return (az->oom = 1, 0);
    for (int32_t i = 0; i < n; i++)
        records[i] = bg_kafka__topic_records(r->f[K(PRODUCE_REQ_TOPIC_DATA)].a.s[i],
                                             &transactional);
    if (txn.len >= 0 && !bg_kafka__decide(az, BG_RES_KAFKA_TXN_ID, txn, BG_VERB_WRITE)) {
        force = BG_KAFKA_E_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    } else if (txn.len < 0 && transactional) {
        bg_kafka__record_denied(az, BG_RES_KAFKA_TXN_ID, bg_kafka_cstr(""), BG_VERB_WRITE,
                                BG_KAFKA_E_TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                                bg_kafka__txn_without_id);
        force = BG_KAFKA_E_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    }
    bg_kafka__split_t sp;
    const bg_kafka_struct_desc_t *rd = bg_kafka__rs_topic_desc(BG_KAFKA_API_PRODUCE,
                                                               &bg_kafka__sh_produce);
    az->topic_records = records;
    int split = bg_kafka__tp_split(az, &bg_kafka__sh_produce, rd, r, BG_VERB_WRITE, force, &sp);
    az->topic_records = NULL;
    if (split < 0)
        return 0;
    if (r->f[K(PRODUCE_REQ_ACKS)].i == 0) {
        /* No response can carry an error: Kafka itself closes the connection
         * when an acks=0 produce fails. */
        if (sp.ndenied || sp.force) { /* force: also with no topics at all */
            az->v->action = BG_KAFKA_ACT_CLOSE;
            az->v->close_reason = "acks=0 produce denied";
            return 0;
        }
        az->v->action = BG_KAFKA_ACT_FORWARD;
        az->v->no_response = 1;
        return 0;
    }
    return bg_kafka__tp_finish(az, &bg_kafka__sh_produce, &sp, 0);
}

/* Replica traffic: a request whose replica id is not a consumer's (-1). A
 * follower (id >= 0) is CLUSTER_ACTION in Kafka; the special negative ids
 * are the broker's own too: -3, the future local replica (a broker moving
 * a log between its directories), fetches to the log end, past the high
 * watermark and whatever the isolation level; a ListOffsets from any id
 * but -1 is answered without isolation, and from -2, the debugging id, by
 * a non-leader too. Consumers only ever send -1, so every other id is
 * refused for every topic, audited as a deny of alter on the cluster. */
#define BG_KAFKA__CONSUMER_REPLICA_ID (-1)

static int16_t bg_kafka__refuse_replica(bg_kafka__az_t *az, int64_t replica_id, const char *why)
{
    if (replica_id == BG_KAFKA__CONSUMER_REPLICA_ID)
        return 0;
    bg_kafka__record_denied(az, BG_RES_KAFKA_CLUSTER, bg_kafka_cstr(""), BG_VERB_ALTER,
                            BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED, why);
    return BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED;
}

/* Fetch names its replica in ReplicaId up to v14, in ReplicaState from v15
 * (a tagged field: absent, it is the consumer's -1). */
static int64_t bg_kafka__fetch_replica_id(const bg_kafka__az_t *az)
{
    const bg_kafka_struct_t *r = az->req;
    if (bg_kafka__has(r->desc, K(FETCH_REQ_REPLICA_ID), az->ver))
        return r->f[K(FETCH_REQ_REPLICA_ID)].i;
    const bg_kafka_struct_t *rs = r->f[K(FETCH_REQ_REPLICA_STATE)].st;
    if (!bg_kafka__has(r->desc, K(FETCH_REQ_REPLICA_STATE), az->ver) || !rs)
        return BG_KAFKA__CONSUMER_REPLICA_ID;
    return rs->f[K(FETCH_REQ_REPLICA_STATE_REPLICA_ID)].i;
}

int bg_kafka__c_fetch(bg_kafka__az_t *az)
{
    const bg_kafka_struct_t *r = az->req;
    int16_t force = bg_kafka__refuse_replica(az, bg_kafka__fetch_replica_id(az), "replica fetch");
    bg_kafka__split_t sp;
    const bg_kafka_struct_desc_t *rd = bg_kafka__rs_topic_desc(BG_KAFKA_API_FETCH,
                                                               &bg_kafka__sh_fetch);
    if (bg_kafka__tp_split(az, &bg_kafka__sh_fetch, rd, r, BG_VERB_READ, force, &sp) < 0)
        return 0;
    /* KIP-227 sessions: an incremental fetch names only changed partitions,
     * so busgate could not see (and authorize) what the broker returns from
     * the session. Force sessionless full fetches, on everything forwarded:
     * also a Fetch that names no topic at all, which would otherwise reach
     * (or close) any session on the broker whose id it names, another
     * client's or a follower's (the broker ties sessions to no principal). */
    int rewritten = 0;
    int forwarded = sp.nallowed > 0 || (sp.ndenied == 0 && !sp.force);
    if (az->ver >= 7 && forwarded &&
        (r->f[K(FETCH_REQ_SESSION_ID)].i != 0 || r->f[K(FETCH_REQ_SESSION_EPOCH)].i != -1)) {
        if ((!sp.allowed || sp.allowed == r) && !(sp.allowed = bg_kafka_struct_clone(az->a, r))) {
            az->oom = 1;
            return 0;
        }
        sp.allowed->f[K(FETCH_REQ_SESSION_ID)].i = 0;
        sp.allowed->f[K(FETCH_REQ_SESSION_EPOCH)].i = -1;
        sp.allowed->f[K(FETCH_REQ_FORGOTTEN_TOPICS_DATA)].a.n = 0;
        rewritten = 1;
    }
    return bg_kafka__tp_finish(az, &bg_kafka__sh_fetch, &sp, rewritten);
}

int bg_kafka__c_list_offsets(bg_kafka__az_t *az)
{
    int16_t force = bg_kafka__refuse_replica(
        az, az->req->f[K(LIST_OFFSETS_REQ_REPLICA_ID)].i, "replica request");
    return bg_kafka__tp_apply(az, &bg_kafka__sh_list_offsets, BG_VERB_DESCRIBE, force);
}

int bg_kafka__c_offset_for_leader_epoch(bg_kafka__az_t *az)
{
    /* ReplicaId exists from v3; v0-2 cannot name a replica. */
    int16_t force = 0;
    if (bg_kafka__has(az->req->desc, K(OFFSET_FOR_LEADER_EPOCH_REQ_REPLICA_ID), az->ver))
        force = bg_kafka__refuse_replica(
            az, az->req->f[K(OFFSET_FOR_LEADER_EPOCH_REQ_REPLICA_ID)].i, "replica request");
    return bg_kafka__tp_apply(az, &bg_kafka__sh_olep, BG_VERB_DESCRIBE, force);
}

/* ---- topics named more than once (CreateTopics, DeleteTopics) ----
 *
 * Kafka's controller looks for them before it authorizes anything: each
 * name given twice or more (in a DeleteTopics also each id given alone)
 * gets one INVALID_REQUEST entry, "Duplicate topic name." ("Duplicate topic
 * id."), and none of its copies is authorized or acted on. busgate does the
 * same before deciding, so the answer does not depend on the policy: none
 * of the copies is decided or forwarded, and each such name is audited once
 * as busgate's refusal.
 *
 * A DeleteTopics v6 entry with neither a name nor an id, or with both, is
 * refused on its own the same way (ControllerApis.deleteTopics), each such
 * entry with its own answer. A name whose topic's id is given more than
 * once is refused with "The provided topic name maps to an ID that was
 * already supplied." when the name may be deleted (Kafka says so only
 * then, not to tell an id's topic to whom may not delete it); a name next
 * to its topic's id given once goes upstream with it, and the broker
 * answers it so. */

#define BG_KAFKA__E_INVALID_REQUEST 42

/* An entry's key. */
enum {
    BG_KAFKA__DK_NONE,    /* a name-only API's entry without a name */
    BG_KAFKA__DK_NAME,    /* a name (DeleteTopics v6: with the zero id) */
    BG_KAFKA__DK_ID,      /* a non-zero id given alone */
    BG_KAFKA__DK_NEITHER, /* DeleteTopics v6: no name, the zero id */
    BG_KAFKA__DK_BOTH     /* DeleteTopics v6: a name and a non-zero id */
};

typedef struct {
    bg_slice_t key;
    int32_t kind, idx;
} bg_kafka__dkey_t;

static int bg_kafka__dkey_cmp(const void *a, const void *b)
{
    const bg_kafka__dkey_t *x = a, *y = b;
    int c = x->kind != y->kind ? (x->kind > y->kind) - (x->kind < y->kind)
                               : bg_kafka__name_cmp(x->key, y->key);
    return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

/* As Kafka's deleteTopics tells them apart: a non-zero id with no name is
 * an id; a name with the zero id is a name; neither and both are refused
 * (only where the entry has an id field). */
static bg_kafka__dkey_t bg_kafka__dkey_of(const bg_kafka__az_t *az, const bg_kafka__tp_shape_t *sh,
                                          const bg_kafka_struct_t *t, int32_t idx)
{
    int named = bg_kafka__has(t->desc, sh->rq_name, az->ver) && t->f[sh->rq_name].s.len >= 0;
    int by_id = bg_kafka__by_id(az, sh, t);
    if (by_id)
        return named ? (bg_kafka__dkey_t){t->f[sh->rq_name].s, BG_KAFKA__DK_BOTH, idx}
                     : (bg_kafka__dkey_t){{t->f[sh->rq_id].uuid, 16}, BG_KAFKA__DK_ID, idx};
    if (named)
        return (bg_kafka__dkey_t){t->f[sh->rq_name].s, BG_KAFKA__DK_NAME, idx};
    int has_id = sh->rq_id >= 0 && bg_kafka__has(t->desc, sh->rq_id, az->ver);
    return (bg_kafka__dkey_t){bg_kafka_null_slice(),
                              has_id ? BG_KAFKA__DK_NEITHER : BG_KAFKA__DK_NONE, idx};
}

/* Sorts keys (n) and marks dup[idx] for every name or id another one
 * equals: 2 on the first in request order, 1 on the others. Returns how
 * many keys are duplicated. */
static int32_t bg_kafka__mark_dups(bg_kafka__dkey_t *keys, int32_t n, uint8_t *dup)
{
    int32_t groups = 0;
    memset(dup, 0, (size_t)n + 1);
    if (n > 1)
        qsort(keys, (size_t)n, sizeof *keys, bg_kafka__dkey_cmp);
    for (int32_t i = 0, j; i < n; i = j) {
        int keyed = keys[i].kind == BG_KAFKA__DK_NAME || keys[i].kind == BG_KAFKA__DK_ID;
        for (j = i + 1; j < n && keyed && keys[j].kind == keys[i].kind &&
                        bg_kafka__slice_eq(keys[j].key, keys[i].key);
             j++)
            dup[keys[j].idx] = 1;
        if (j - i > 1) {
            dup[keys[i].idx] = 2;
            groups++;
        }
    }
    return groups;
}

/* An INVALID_REQUEST entry busgate answers itself, with name and id as
 * Kafka's controller gives them back and its message; audited once as
 * busgate's deny of verb on audit_name with reason. */
typedef struct {
    bg_slice_t name, audit_name;
    const uint8_t *id; /* NULL: the zero id */
    const char *message, *reason;
} bg_kafka__refusal_t;

static bg_kafka_struct_t *bg_kafka__refused_entry(bg_kafka__az_t *az,
                                                  const bg_kafka__tp_shape_t *sh,
                                                  const bg_kafka_struct_desc_t *rd, bg_verb_t verb,
                                                  int msg_idx, const bg_kafka__refusal_t *rf)
{
    bg_kafka_struct_t *e = bg_kafka_struct_new(az->a, rd);
    if (!e)
        return (az->oom = 1, NULL);
    e->f[sh->rs_name].s = rf->name;
    if (rf->id)
        memcpy(e->f[sh->rs_id].uuid, rf->id, 16);
    e->f[sh->rs_err].i = BG_KAFKA__E_INVALID_REQUEST;
    e->f[msg_idx].s = bg_kafka_cstr(rf->message);
    bg_kafka__record_denied(az, BG_RES_KAFKA_TOPIC, rf->audit_name, verb,
                            BG_KAFKA__E_INVALID_REQUEST, rf->reason);
    return e;
}

/* The one entry Kafka answers for a duplicated key, its audit record. */
static bg_kafka_struct_t *bg_kafka__dup_entry(bg_kafka__az_t *az, const bg_kafka__tp_shape_t *sh,
                                              const bg_kafka_struct_desc_t *rd,
                                              const bg_kafka_struct_t *t, bg_kafka__dkey_t k,
                                              bg_verb_t verb, int msg_idx)
{
    bg_kafka__refusal_t rf = {k.key, k.key, NULL, "Duplicate topic name.",
                              "duplicate topic name"};
    if (k.kind == BG_KAFKA__DK_ID) {
        rf = (bg_kafka__refusal_t){bg_kafka_null_slice(), bg_kafka_null_slice(), k.key.p,
                                   "Duplicate topic id.", "duplicate topic id"};
        bg_kafka__topic_name(az, sh, t, &rf.audit_name); /* for the audit record only */
    }
    return bg_kafka__refused_entry(az, sh, rd, verb, msg_idx, &rf);
}

/* A DeleteTopics v6 entry with neither a name nor an id, or with both: its
 * own answer, as given, never decided. */
static bg_kafka_struct_t *bg_kafka__invalid_entry(bg_kafka__az_t *az,
                                                  const bg_kafka__tp_shape_t *sh,
                                                  const bg_kafka_struct_desc_t *rd,
                                                  const bg_kafka_struct_t *t, bg_kafka__dkey_t k,
                                                  bg_verb_t verb, int msg_idx)
{
    bg_kafka__refusal_t rf = {bg_kafka_null_slice(), bg_kafka_null_slice(), NULL,
                              "Neither topic name nor id were specified.",
                              "neither topic name nor id"};
    if (k.kind == BG_KAFKA__DK_BOTH)
        rf = (bg_kafka__refusal_t){k.key, k.key, t->f[sh->rq_id].uuid,
                                   "You may not specify both topic name and topic id.",
                                   "both topic name and topic id"};
    return bg_kafka__refused_entry(az, sh, rd, verb, msg_idx, &rf);
}

/* Finds the duplicated entries of the topics of az->req (dup[], n + 1
 * bytes, as bg_kafka__mark_dups); *ndup their keys, *ninvalid the entries
 * with neither a name nor an id or with both. keys are n + 1. */
static int bg_kafka__find_dups(bg_kafka__az_t *az, const bg_kafka__tp_shape_t *sh,
                               bg_kafka__dkey_t **keys, uint8_t **dup, int32_t *ndup,
                               int32_t *ninvalid)
{
    int32_t n = bg_kafka__n(az->req, sh->rq_topics);
    *keys = bg_kafka_arena_alloc(az->a, (size_t)(n + 1) * sizeof **keys);
    *dup = bg_kafka_arena_alloc(az->a, (size_t)n + 1);
    if (!*keys || !*dup)
        return (az->oom = 1, -1);
    *ninvalid = 0;
    for (int32_t i = 0; i < n; i++) {
        (*keys)[i] = bg_kafka__dkey_of(az, sh, az->req->f[sh->rq_topics].a.s[i], i);
        *ninvalid += (*keys)[i].kind >= BG_KAFKA__DK_NEITHER;
    }
    *ndup = bg_kafka__mark_dups(*keys, n, *dup);
    return 0;
}

/* The names of the topics whose ids are given more than once, sorted
 * (key: the name, idx: the first entry with the id), in *out; *nout of
 * them. keys and dup as bg_kafka__find_dups left them. */
static int bg_kafka__dup_id_names(bg_kafka__az_t *az, const bg_kafka__tp_shape_t *sh,
                                  const bg_kafka__dkey_t *keys, const uint8_t *dup, int32_t n,
                                  bg_kafka__dkey_t **out, int32_t *nout)
{
    *nout = 0;
    *out = bg_kafka_arena_alloc(az->a, (size_t)(n + 1) * sizeof **out);
    if (!*out)
        return (az->oom = 1, -1);
    for (int32_t i = 0; i < n; i++) {
        bg_slice_t name;
        if (keys[i].kind != BG_KAFKA__DK_ID || dup[keys[i].idx] != 2 ||
            !bg_kafka__topic_name(az, sh, az->req->f[sh->rq_topics].a.s[keys[i].idx], &name))
            continue;
        (*out)[(*nout)++] = (bg_kafka__dkey_t){name, BG_KAFKA__DK_NAME, keys[i].idx};
    }
    if (*nout > 1)
        qsort(*out, (size_t)*nout, sizeof **out, bg_kafka__dkey_cmp);
    return 0;
}

/* The entry of a name whose topic's id is given more than once (ids, nids
 * as bg_kafka__dup_id_names), when the name may be deleted: Kafka's answer
 * for it; NULL otherwise (az->oom set when out of memory). */
static bg_kafka_struct_t *bg_kafka__maps_entry(bg_kafka__az_t *az, const bg_kafka__tp_shape_t *sh,
                                               const bg_kafka_struct_desc_t *rd,
                                               const bg_kafka__dkey_t *ids, int32_t nids,
                                               bg_kafka__dkey_t k, bg_verb_t verb, int msg_idx)
{
    int32_t lo = 0, hi = nids;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (bg_kafka__name_cmp(ids[mid].key, k.key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == nids || !bg_kafka__slice_eq(ids[lo].key, k.key) ||
        !bg_kafka__permits(az->ctx, BG_RES_KAFKA_TOPIC, k.key, verb))
        return NULL;
    bg_kafka__refusal_t rf = {
        k.key, k.key, az->req->f[sh->rq_topics].a.s[ids[lo].idx]->f[sh->rq_id].uuid,
        "The provided topic name maps to an ID that was already supplied.",
        "topic name maps to a duplicate topic id"};
    return bg_kafka__refused_entry(az, sh, rd, verb, msg_idx, &rf);
}

/* tp_apply for CreateTopics, CreatePartitions and DeleteTopics v6, what
 * Kafka refuses before authorizing answered first (msg_idx: the
 * ErrorMessage of a response entry). */
static int bg_kafka__tp_apply_unique(bg_kafka__az_t *az, const bg_kafka__tp_shape_t *sh,
                                     bg_verb_t verb, int msg_idx)
{
    const bg_kafka_struct_t *r = az->req;
    const bg_kafka_struct_desc_t *rd = bg_kafka__rs_topic_desc(az->hdr->api_key, sh);
    int32_t n = bg_kafka__n(r, sh->rq_topics), ndup, ninvalid, nids, nk = 0, nd = 0;
    bg_kafka__dkey_t *keys, *ids;
    uint8_t *dup;
    if (!rd || bg_kafka__find_dups(az, sh, &keys, &dup, &ndup, &ninvalid) < 0)
        return 0;
    if (!ndup && !ninvalid)
        return bg_kafka__tp_apply(az, sh, verb, 0);
    if (bg_kafka__dup_id_names(az, sh, keys, dup, n, &ids, &nids) < 0)
        return 0;
    bg_kafka_struct_t **el = r->f[sh->rq_topics].a.s;
    bg_kafka_struct_t **keep = bg_kafka_arena_alloc(az->a, (size_t)(n + 1) * sizeof *keep);
    bg_kafka_struct_t **den = bg_kafka_arena_alloc(az->a, (size_t)(n + 1) * sizeof *den);
    bg_kafka_struct_t *uniq = bg_kafka_struct_clone(az->a, r);
    if (!keep || !den || !uniq)
        return (az->oom = 1, 0);
    for (int32_t i = 0; i < n; i++) {
        bg_kafka__dkey_t k = bg_kafka__dkey_of(az, sh, el[i], i);
        bg_kafka_struct_t *e = NULL;
        if (dup[i] == 1)
            continue;
        if (dup[i] == 2)
            e = bg_kafka__dup_entry(az, sh, rd, el[i], k, verb, msg_idx);
        else if (k.kind >= BG_KAFKA__DK_NEITHER)
            e = bg_kafka__invalid_entry(az, sh, rd, el[i], k, verb, msg_idx);
        else if (k.kind == BG_KAFKA__DK_NAME && nids)
            e = bg_kafka__maps_entry(az, sh, rd, ids, nids, k, verb, msg_idx);
        if (az->oom)
            return 0;
        if (e)
            den[nd++] = e;
        else
            keep[nk++] = el[i];
    }
    uniq->f[sh->rq_topics].a.s = keep;
    uniq->f[sh->rq_topics].a.n = nk;
    bg_kafka__split_t sp;
    if (bg_kafka__tp_split(az, sh, rd, uniq, verb, 0, &sp) < 0)
        return 0;
    /* Kafka's order: busgate's own answers, then the refused topics. */
    if (sp.ndenied)
        memcpy(den + nd, sp.denied, (size_t)sp.ndenied * sizeof *den);
    sp.denied = den;
    sp.ndenied += nd;
    return bg_kafka__tp_finish(az, sh, &sp, 1);
}

int bg_kafka__c_create_topics(bg_kafka__az_t *az)
{
    return bg_kafka__tp_apply_unique(az, &bg_kafka__sh_create_topics, BG_VERB_CREATE,
                                     K(CREATE_TOPICS_RESP_TOPICS_ERROR_MESSAGE));
}

int bg_kafka__c_delete_records(bg_kafka__az_t *az)
{
    return bg_kafka__tp_apply(az, &bg_kafka__sh_delete_records, BG_VERB_DELETE, 0);
}

/* Duplicates first, as CreateTopics (ControllerApis.createPartitions). */
int bg_kafka__c_create_partitions(bg_kafka__az_t *az)
{
    return bg_kafka__tp_apply_unique(az, &bg_kafka__sh_create_partitions, BG_VERB_ALTER,
                                     K(CREATE_PARTITIONS_RESP_RESULTS_ERROR_MESSAGE));
}

int bg_kafka__c_describe_producers(bg_kafka__az_t *az)
{
    return bg_kafka__tp_apply(az, &bg_kafka__sh_describe_producers, BG_VERB_READ, 0);
}

/* DeleteTopics v1-5 names topics in a string array; v6 uses the shape. */
static int bg_kafka__delete_topic_names(bg_kafka__az_t *az)
{
    const bg_kafka_struct_t *r = az->req;
    const bg_kafka__tp_shape_t *sh = &bg_kafka__sh_delete_topics;
    int idx = K(DELETE_TOPICS_REQ_TOPIC_NAMES);
    int32_t n = bg_kafka__n(r, idx), nk = 0, nd = 0;
    const bg_kafka_val_t *names = r->f[idx].a.v;
    bg_kafka_val_t *keep = bg_kafka_arena_alloc(az->a, (size_t)(n + 1) * sizeof *keep);
    bg_kafka_struct_t **den = bg_kafka_arena_alloc(az->a, (size_t)(n + 1) * sizeof *den);
    bg_kafka__dkey_t *keys = bg_kafka_arena_alloc(az->a, (size_t)(n + 1) * sizeof *keys);
    uint8_t *dup = bg_kafka_arena_alloc(az->a, (size_t)n + 1);
    const bg_kafka_struct_desc_t *rd = bg_kafka__rs_topic_desc(BG_KAFKA_API_DELETE_TOPICS, sh);
    if (!keep || !den || !keys || !dup || !rd) {
        az->oom = 1;
        return 0;
    }
    for (int32_t i = 0; i < n; i++)
        keys[i] = (bg_kafka__dkey_t){names[i].s, BG_KAFKA__DK_NAME, i};
    bg_kafka__mark_dups(keys, n, dup);
    for (int32_t i = 0; i < n; i++) {
        bg_kafka_struct_t *e = NULL;
        if (dup[i] == 1)
            continue;
        if (dup[i] == 2) {
            e = bg_kafka__dup_entry(az, sh, rd, NULL,
                                    (bg_kafka__dkey_t){names[i].s, BG_KAFKA__DK_NAME, i},
                                    BG_VERB_DELETE, K(DELETE_TOPICS_RESP_RESPONSES_ERROR_MESSAGE));
        } else if (bg_kafka__decide(az, BG_RES_KAFKA_TOPIC, names[i].s, BG_VERB_DELETE)) {
            keep[nk++] = names[i];
            continue;
        } else if ((e = bg_kafka_struct_new(az->a, rd))) {
            e->f[K(DELETE_TOPICS_RESP_RESPONSES_NAME)].s = names[i].s;
            e->f[K(DELETE_TOPICS_RESP_RESPONSES_ERROR_CODE)].i =
                BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED;
            bg_kafka__deny_delete_topics(e, BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED);
        }
        if (!e) {
            az->oom = 1;
            return 0;
        }
        den[nd++] = e;
    }
    bg_kafka__split_t sp = {(bg_kafka_struct_t *)r, den, nd, nk, 0};
    if (nd && nk) {
        if (!(sp.allowed = bg_kafka_struct_clone(az->a, r))) {
            az->oom = 1;
            return 0;
        }
        sp.allowed->f[idx].a.v = keep;
        sp.allowed->f[idx].a.n = nk;
    }
    return bg_kafka__tp_finish(az, sh, &sp, 0);
}

int bg_kafka__c_delete_topics(bg_kafka__az_t *az)
{
    if (az->ver < 6)
        return bg_kafka__delete_topic_names(az);
    return bg_kafka__tp_apply_unique(az, &bg_kafka__sh_delete_topics, BG_VERB_DELETE,
                                     K(DELETE_TOPICS_RESP_RESPONSES_ERROR_MESSAGE));
}

/* Metadata: null topics (v1+) or an empty array (v0) = all topics: allowed,
 * and the response drops what the principal may not describe. Explicit
 * topics are split; denied ones come back as TOPIC_AUTHORIZATION_FAILED
 * entries without partitions, as Kafka does. Auto-creation stays on only
 * when the principal may create every named topic (a v0-3 request then
 * goes upstream as v4 with it off). Never answered locally: the client
 * needs the broker list. */
int bg_kafka__c_metadata(bg_kafka__az_t *az)
{
    const bg_kafka_struct_t *r = az->req;
    int32_t n = r->f[K(METADATA_REQ_TOPICS)].a.n;
    bg_kafka__filter_t f = {K(METADATA_RESP_TOPICS), K(METADATA_RESP_TOPICS_NAME), -1, -1, -1,
                            -1, bg_kafka_null_slice(), BG_RES_KAFKA_TOPIC, BG_VERB_DESCRIBE,
                            NULL, BG_KAFKA__NAMES_ONLY};
    if (n < 0 || (n == 0 && az->ver == 0)) {
        az->v->action = BG_KAFKA_ACT_FORWARD;
        return bg_kafka__add_listing(az, &f);
    }
    /* Lookups by topic id (a null name, or a non-zero id) exist from v12
     * (Kafka refuses them in v10-11); below v12 a denied entry could not
     * even carry the null name back, so such a request is refused. */
    for (int32_t i = 0; az->ver < 12 && i < n; i++) {
        const bg_kafka_struct_t *t = r->f[K(METADATA_REQ_TOPICS)].a.s[i];
        if (t->f[K(METADATA_REQ_TOPICS_NAME)].s.len < 0 ||
            (az->ver >= 10 && !bg_kafka__uuid_zero(t->f[K(METADATA_REQ_TOPICS_TOPIC_ID)].uuid)))
            return bg_kafka__fail(az, "Metadata topic id lookups need v12");
    }
    bg_kafka__split_t sp;
    const bg_kafka_struct_desc_t *rd = bg_kafka__rs_topic_desc(BG_KAFKA_API_METADATA,
                                                               &bg_kafka__sh_metadata);
    if (bg_kafka__tp_split(az, &bg_kafka__sh_metadata, rd, r, BG_VERB_DESCRIBE, 0, &sp) < 0)
        return 0;
    if (sp.nallowed == 0 && az->ver == 0)
        f.name_idx = -1; /* v0 cannot ask for no topics: ask for all, drop them all */
    else {
        f.err_idx = K(METADATA_RESP_TOPICS_ERROR_CODE);
        f.sub_idx = K(METADATA_RESP_TOPICS_PARTITIONS);
        f.ids = (bg_kafka__filter_ids_t){r, K(METADATA_REQ_TOPICS), K(METADATA_REQ_TOPICS_NAME),
                                         K(METADATA_REQ_TOPICS_TOPIC_ID),
                                         K(METADATA_RESP_TOPICS_TOPIC_ID)};
    }
    int rewritten = sp.ndenied > 0;
    /* A broker auto-creates named topics (auto.create.topics.enable) unless
     * the request says not to, which only v4+ can: v0-3 always ask. */
    if (az->ver < 4 || r->f[K(METADATA_REQ_ALLOW_AUTO_TOPIC_CREATION)].i) {
        int32_t na = bg_kafka__n(sp.allowed, K(METADATA_REQ_TOPICS));
        for (int32_t i = 0; i < na; i++) {
            bg_slice_t nm;
            const bg_kafka_struct_t *t = sp.allowed->f[K(METADATA_REQ_TOPICS)].a.s[i];
            if (bg_kafka__topic_name(az, &bg_kafka__sh_metadata, t, &nm) &&
                bg_kafka__permits(az->ctx, BG_RES_KAFKA_TOPIC, nm, BG_VERB_CREATE))
                continue;
            if (sp.allowed == r && !(sp.allowed = bg_kafka_struct_clone(az->a, r))) {
                az->oom = 1;
                return 0;
            }
            sp.allowed->f[K(METADATA_REQ_ALLOW_AUTO_TOPIC_CREATION)].i = 0;
            if (az->ver < 4)
                az->v->upstream_version = 4; /* the first version that can say it */
            rewritten = 1;
            break;
        }
    }
    az->v->action = rewritten ? BG_KAFKA_ACT_FORWARD_REWRITTEN : BG_KAFKA_ACT_FORWARD;
    az->v->request = rewritten ? sp.allowed : NULL;
    if (sp.ndenied && bg_kafka__add_append(az, K(METADATA_RESP_TOPICS), -1,
                                           bg_kafka_null_slice(), -1, sp.denied, sp.ndenied) < 0)
        return 0;
    return bg_kafka__add_filter(az, &f);
}

/* With a cursor, Kafka answers only the named topics at or after the
 * cursor's name (stubs for the denied ones included), and the cursor's topic
 * must be among the names. Once denied names are taken out, the split keeps
 * that shape: stubs and names before the cursor go; a denied cursor topic
 * gives way to the first allowed name after it, from its partition 0 (where
 * Kafka goes on after a topic it does not describe). */
static int bg_kafka__dtp_cursor(bg_kafka__az_t *az, bg_kafka__split_t *sp)
{
    const bg_kafka_struct_t *cur = az->req->f[K(DESCRIBE_TOPIC_PARTITIONS_REQ_CURSOR)].st;
    if (!cur || sp->ndenied == 0)
        return 0;
    bg_slice_t cname = cur->f[K(DESCRIBE_TOPIC_PARTITIONS_REQ_CURSOR_TOPIC_NAME)].s;
    int32_t k = 0, m = 0;
    for (int32_t i = 0; i < sp->ndenied; i++)
        if (bg_kafka__name_cmp(sp->denied[i]->f[K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_NAME)].s,
                               cname) >= 0)
            sp->denied[k++] = sp->denied[i];
    sp->ndenied = k;
    if (sp->nallowed == 0) {
        /* Answered here (tp_finish), also when every stub was before the
         * cursor: forwarded, an empty list would mean every topic. */
        sp->force = BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED;
        return 0;
    }
    bg_kafka_struct_t **al = sp->allowed->f[K(DESCRIBE_TOPIC_PARTITIONS_REQ_TOPICS)].a.s;
    int has_cursor = 0;
    bg_slice_t first = bg_kafka_null_slice();
    for (int32_t i = 0; i < sp->nallowed; i++) {
        bg_slice_t nm = al[i]->f[K(DESCRIBE_TOPIC_PARTITIONS_REQ_TOPICS_NAME)].s;
        if (bg_kafka__name_cmp(nm, cname) < 0)
            continue;
        al[m++] = al[i];
        has_cursor |= bg_kafka__slice_eq(nm, cname);
        if (first.len < 0 || bg_kafka__name_cmp(nm, first) < 0)
            first = nm;
    }
    sp->nallowed = m;
    sp->allowed->f[K(DESCRIBE_TOPIC_PARTITIONS_REQ_TOPICS)].a.n = m;
    if (m == 0) {
        /* Nothing to ask the broker: answered here with the stubs, if any.
         * Forwarded, an empty list would mean every topic. */
        sp->force = BG_KAFKA_E_TOPIC_AUTHORIZATION_FAILED;
        return 0;
    }
    if (has_cursor)
        return 0;
    bg_kafka_struct_t *nc = bg_kafka_struct_clone(az->a, cur);
    if (!nc) {
        az->oom = 1;
        return -1;
    }
    nc->f[K(DESCRIBE_TOPIC_PARTITIONS_REQ_CURSOR_TOPIC_NAME)].s = first;
    nc->f[K(DESCRIBE_TOPIC_PARTITIONS_REQ_CURSOR_PARTITION_INDEX)].i = 0;
    sp->allowed->f[K(DESCRIBE_TOPIC_PARTITIONS_REQ_CURSOR)].st = nc;
    return 0;
}

static const char bg_kafka__dtp_listing[] =
    "DescribeTopicPartitions without topic names is refused: name the topics";

/* DescribeTopicPartitions: explicit topics split like Metadata. The form
 * without names (all topics, paged) is refused: the broker pages over every
 * topic busgate's credential sees, so a short or empty page, or a cursor
 * naming a hidden topic, would show where hidden topics are, and a client
 * choosing the start cursor could find their names by bisection. Clients
 * list topics with Metadata and describe them by name (the Java Admin
 * client and kafka-topics do). The connection closes, as for a request
 * busgate cannot answer with an error; the refusal is audited. */
int bg_kafka__c_describe_topic_partitions(bg_kafka__az_t *az)
{
    bg_kafka__filter_t f = {K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS),
                            K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_NAME), -1, -1, -1, -1,
                            bg_kafka_null_slice(), BG_RES_KAFKA_TOPIC, BG_VERB_DESCRIBE, NULL,
                            BG_KAFKA__NAMES_ONLY};
    if (bg_kafka__n(az->req, K(DESCRIBE_TOPIC_PARTITIONS_REQ_TOPICS)) == 0) {
        bg_kafka__record_denied(az, BG_RES_KAFKA_TOPIC, bg_kafka_cstr("*"), BG_VERB_DESCRIBE,
                                bg_kafka__deny_error(BG_RES_KAFKA_TOPIC), bg_kafka__dtp_listing);
        az->v->action = BG_KAFKA_ACT_CLOSE;
        az->v->close_reason = bg_kafka__dtp_listing;
        return 0;
    }
    bg_kafka__split_t sp;
    const bg_kafka_struct_desc_t *rd = bg_kafka__rs_topic_desc(az->hdr->api_key,
                                                               &bg_kafka__sh_dtp);
    if (!rd || bg_kafka__tp_split(az, &bg_kafka__sh_dtp, rd, az->req, BG_VERB_DESCRIBE, 0, &sp) < 0 ||
        bg_kafka__dtp_cursor(az, &sp) < 0 ||
        /* a clone goes up even when every stub was before the cursor */
        bg_kafka__tp_finish(az, &bg_kafka__sh_dtp, &sp, sp.allowed != az->req) < 0 || az->oom)
        return az->oom ? 0 : -1;
    if (az->v->action == BG_KAFKA_ACT_RESPOND)
        return 0;
    /* Never forwarded without names: the broker would list every topic. */
    if (bg_kafka__n(az->v->request ? az->v->request : az->req,
                    K(DESCRIBE_TOPIC_PARTITIONS_REQ_TOPICS)) == 0)
        return -1;
    f.err_idx = K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_ERROR_CODE);
    f.sub_idx = K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_PARTITIONS);
    /* asked by name only: a denied entry's id is zeroed */
    f.ids = (bg_kafka__filter_ids_t){az->req, K(DESCRIBE_TOPIC_PARTITIONS_REQ_TOPICS),
                                     K(DESCRIBE_TOPIC_PARTITIONS_REQ_TOPICS_NAME), -1,
                                     K(DESCRIBE_TOPIC_PARTITIONS_RESP_TOPICS_TOPIC_ID)};
    return bg_kafka__add_filter(az, &f);
}

/* ---- the generic whole-request error response ---- */

bg_kafka_struct_t *bg_kafka__tp_error_response(const bg_kafka_req_hdr_t *hdr,
                                               const bg_kafka_struct_t *req,
                                               const bg_kafka__tp_shape_t *sh, int16_t err,
                                               bg_kafka_arena_t *a)
{
    const bg_kafka_msg_desc_t *d = bg_kafka_msg_desc(hdr->api_key, 1);
    const bg_kafka_struct_desc_t *rd = bg_kafka__rs_topic_desc(hdr->api_key, sh);
    bg_kafka_struct_t *resp = d && rd ? bg_kafka_struct_new(a, d->body) : NULL;
    int32_t n = bg_kafka__n(req, sh->rq_topics);
    bg_kafka_struct_t **ents = resp ? bg_kafka_array_new(a, resp, sh->rs_topics, n) : NULL;
    if (!ents)
        return NULL;
    for (int32_t i = 0; i < n; i++) {
        const bg_kafka_struct_t *t = req->f[sh->rq_topics].a.s[i];
        bg_slice_t name = bg_kafka_null_slice();
        if (sh->rq_name >= 0 && bg_kafka__has(t->desc, sh->rq_name, hdr->api_version))
            name = t->f[sh->rq_name].s;
        if (!(ents[i] = bg_kafka__tp_deny_entry(a, sh, rd, t, name, err)))
            return NULL;
    }
    return resp;
}

/* Metadata as Kafka's MetadataRequest.getErrorResponse builds it: an entry
 * for each named topic (its id as asked, a null name as ""), no partitions,
 * no brokers, and the top-level code from v13. Asked for all topics, a
 * response below v13 has nowhere to put the error: an answer without topics
 * would read as a cluster without topics (AdminClient.listTopics would
 * return it, a pattern subscription would drop its topics), so NULL. */
static bg_kafka_struct_t *bg_kafka__metadata_error(const bg_kafka_req_hdr_t *hdr,
                                                   const bg_kafka_struct_t *req, int16_t err,
                                                   bg_kafka_arena_t *a)
{
    const bg_kafka__tp_shape_t *sh = &bg_kafka__sh_metadata;
    const bg_kafka_struct_desc_t *body = bg_kafka_msg_desc(BG_KAFKA_API_METADATA, 1)->body;
    int32_t n = req->f[sh->rq_topics].a.n;
    if (n < 0 || (n == 0 && hdr->api_version == 0)) { /* all topics */
        bg_kafka_struct_t *resp = bg_kafka_struct_new(a, body);
        return resp && bg_kafka__set_top_error(body, hdr->api_version, resp, err) ? resp : NULL;
    }
    bg_kafka_struct_t *r = bg_kafka__tp_error_response(hdr, req, sh, err, a);
    if (!r)
        return NULL;
    for (int32_t i = 0; i < n; i++) {
        bg_kafka_struct_t *e = r->f[sh->rs_topics].a.s[i];
        if (e->f[sh->rs_name].s.len < 0)
            e->f[sh->rs_name].s = (bg_slice_t){(const uint8_t *)"", 0};
    }
    bg_kafka__set_top_error(body, hdr->api_version, r, err);
    return r;
}

/* What Kafka's own error response carries beside a top-level code where the
 * definition's defaults say otherwise: no coordinator node (Node.noNode():
 * id -1, port -1), no producer epoch, and from JoinGroup v7 a null
 * ProtocolName (JoinGroupRequest.getErrorResponse; "" before v7). */
static void bg_kafka__error_blanks(const bg_kafka_req_hdr_t *hdr, bg_kafka_struct_t *resp)
{
    int16_t api_key = hdr->api_key;
    if (api_key == BG_KAFKA_API_JOIN_GROUP && hdr->api_version >= 7) {
        resp->f[K(JOIN_GROUP_RESP_PROTOCOL_NAME)].s = bg_kafka_null_slice();
    } else if (api_key == BG_KAFKA_API_FIND_COORDINATOR) { /* v0-3 */
        resp->f[K(FIND_COORDINATOR_RESP_NODE_ID)].i = -1;
        resp->f[K(FIND_COORDINATOR_RESP_PORT)].i = -1;
    } else if (api_key == BG_KAFKA_API_INIT_PRODUCER_ID) {
        resp->f[K(INIT_PRODUCER_ID_RESP_PRODUCER_EPOCH)].i = -1;
    }
}

bg_kafka_struct_t *bg_kafka_authz_error_response(const bg_kafka_req_hdr_t *hdr,
                                                 const bg_kafka_struct_t *req, int16_t error_code,
                                                 bg_kafka_arena_t *arena)
{
    const bg_kafka_msg_desc_t *d = bg_kafka_msg_desc(hdr->api_key, 1);
    if (!d || !req || hdr->api_version < d->valid_min || hdr->api_version > d->valid_max)
        return NULL;
    if (hdr->api_key == BG_KAFKA_API_METADATA)
        return bg_kafka__metadata_error(hdr, req, error_code, arena);
    if (hdr->api_key == BG_KAFKA_API_ELECT_LEADERS ||
        hdr->api_key == BG_KAFKA_API_ALTER_PARTITION_REASSIGNMENTS)
        return bg_kafka__partition_admin_error(hdr, req, error_code, arena);
    bg_kafka_struct_t *resp = bg_kafka_struct_new(arena, d->body);
    if (!resp)
        return NULL;
    if (bg_kafka__set_top_error(d->body, hdr->api_version, resp, error_code)) {
        bg_kafka__error_blanks(hdr, resp);
        return resp;
    }
    const bg_kafka__tp_shape_t *sh = bg_kafka__shape_of(hdr->api_key, hdr->api_version);
    if (sh)
        return bg_kafka__tp_error_response(hdr, req, sh, error_code, arena);
    bg_kafka_struct_t *r = bg_kafka__error_entries_groups(hdr, req, error_code, arena);
    return r ? r : bg_kafka__error_entries_admin(hdr, req, error_code, arena);
}
