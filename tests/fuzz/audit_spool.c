/* Fuzz target: the audit spool frame parser (bg_audit_spool_scan) on
 * arbitrary bytes, as a damaged segment file would present them. Checks the
 * parser's invariants: records and skipped regions tile the input in order,
 * every reported record really validates, record views stay in bounds, and
 * the CRC work stays within the resync budget.
 * The input's first bytes also go to the spool.ack reader, as a torn or
 * damaged acknowledged-position file would present them. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit_sink.h"
#include "audit/audit_spool.h"

typedef struct bg_fuzz_state_s {
    const uint8_t *buf;
    size_t size;
    size_t next; /* where the next record or bad region must start */
} bg_fuzz_state_t;

static int bg_fuzz__rec(void *arg, const uint8_t *p, size_t len, size_t off)
{
    bg_fuzz_state_t *st = arg;
    uint8_t hdr[BG_AUDIT_SPOOL_HDR];
    if (off != st->next || p != st->buf + off + BG_AUDIT_SPOOL_HDR || len == 0 ||
        len > BG_AUDIT_SPOOL_MAX_RECORD || off + BG_AUDIT_SPOOL_HDR + len > st->size)
        abort();
    bg_audit_spool_frame(hdr, p, (uint32_t)len);
    if (memcmp(hdr, st->buf + off, sizeof hdr) != 0)
        abort();
    /* the pipeline reads the key/JSON views out of every drained record */
    bg_audit_rec_t r = {p, (uint32_t)len, 1, 0};
    size_t kl, jl;
    const char *k = bg_audit_rec_key(&r, &kl), *j = bg_audit_rec_json(&r, &jl);
    if ((k && (const uint8_t *)k + kl > p + len) || (j && (const uint8_t *)j + jl != p + len))
        abort();
    st->next = off + BG_AUDIT_SPOOL_HDR + len;
    return 0;
}

static void bg_fuzz__bad(void *arg, size_t off, size_t len)
{
    bg_fuzz_state_t *st = arg;
    if (off != st->next || len == 0 || off + len > st->size)
        abort();
    st->next = off + len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Resync work is linear (bounded per byte), but each input should stay
     * quick so the fuzzer explores, not waits. */
    if (size > 1 << 16)
        return 0;
    uint32_t aseg = 0;
    uint64_t aoff = 0;
    int ack = bg_audit_spool_parse_ack((const char *)data, size < 63 ? size : 63, &aseg, &aoff);
    if (ack < 0 || ack > 2 || (ack != 0 && aseg == 0))
        abort();
    bg_fuzz_state_t st = {data, size, 0};
    uint64_t work = bg_audit_spool_crc_work();
    size_t end = bg_audit_spool_scan(data, size, bg_fuzz__rec, bg_fuzz__bad, &st);
    if (end != size || st.next != size)
        abort();
    /* CRC work: the records found (at most size) and the resync budget */
    work = bg_audit_spool_crc_work() - work;
    if (work > BG_AUDIT_SPOOL_RESYNC_BASE + (uint64_t)(BG_AUDIT_SPOOL_RESYNC_PER_BYTE + 1) * size)
        abort();
    /* an unparsed end classed as torn is at most one frame */
    if (bg_audit_spool_torn(data, size) && size >= BG_AUDIT_SPOOL_HDR + BG_AUDIT_SPOOL_MAX_RECORD)
        abort();
    return 0;
}
