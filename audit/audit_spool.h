/* busgate audit spool: a local append-only FIFO of audit records.
 *
 * Directory layout: spool-NNNNNN.seg segment files (rotated at a size) and
 * spool.ack, the read position "SEGNO OFFSET\n" of the first record not yet
 * delivered (fixed width, overwritten in place and synced: no new disk
 * block is needed to move it, even on a full disk).
 *
 * Record frame, little-endian:
 *   [u32 length][u32 crc32c(length bytes || payload)][payload: length bytes]
 * with 1 <= length <= BG_AUDIT_SPOOL_MAX_RECORD. The CRC covers the length so
 * that zero-filled or random regions do not parse as records.
 *
 * Recovery: a frame whose length is out of range, runs past the end, or whose
 * CRC does not match is corrupt (a crash mid-write, a flipped bit). The reader
 * counts it, logs it, and resyncs by scanning forward byte by byte for the next
 * offset where a whole frame validates; records after the damage are kept.
 * The CRC work spent on offsets that do not validate is bounded (see
 * BG_AUDIT_SPOOL_RESYNC_BASE); an offset past the bound is not checked but
 * counted as part of the corrupt region.
 * A writer never appends to a segment that existed before it opened the spool
 * (it starts a new one), so a torn tail stays a tail. Segment numbers are
 * never reused (a new segment is numbered past both the last on disk and the
 * acknowledged position), and a position that names a deleted segment is
 * corrected and persisted on open, so a stale spool.ack never skips records.
 * Open refuses a spool whose next segment number would pass
 * BG_AUDIT_SPOOL_SEG_MAX (such a segment would be invisible after a restart).
 *
 * Segments that go away or cannot be read: a segment deleted while the spool
 * is open is read past, and the counts of bytes (on disk, unread) are taken
 * again from the directory, so no phantom backlog is left. A segment that is
 * not a regular file is moved aside at once, one whose reads fail
 * BG_AUDIT_SPOOL_READ_TRIES times in a row then (renamed NAME.unreadable, or
 * NAME.unreadable.N when that exists, beside the others, counted, logged),
 * so it cannot hold up the segments after it. Failures of the process (out
 * of descriptors or memory, an interrupted call) are not held against a
 * segment: the read is retried. The active segment deleted under the writer
 * is found by bg_audit_spool_check.
 *
 * Not thread-safe: one owner (the audit thread). */
#ifndef BG_AUDIT_SPOOL_H
#define BG_AUDIT_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#define BG_AUDIT_SPOOL_HDR 8u
#define BG_AUDIT_SPOOL_MAX_RECORD (1u << 20)

/* CRC-32C (Castagnoli), continuing from crc (start with 0). */
uint32_t bg_audit_crc32c(uint32_t crc, const void *p, size_t n);

/* Called for every valid record found by the scan: payload view (borrowed
 * from the scanned buffer) at offset off of the frame. Return 0 to go on, non-0
 * to stop the scan. */
typedef int (*bg_audit_spool_rec_cb)(void *arg, const uint8_t *payload, size_t len, size_t off);
/* Called for every corrupt region [off, off+len) skipped. May be NULL. */
typedef void (*bg_audit_spool_bad_cb)(void *arg, size_t off, size_t len);

/* Pure frame parser: walks buf[0..len) calling rec for each valid record in
 * order and bad for each skipped region (including a truncated tail).
 * Returns the offset where it stopped: len, or the end of the record whose
 * callback asked to stop. Allocates nothing; buf is any bytes (fuzzed). */
size_t bg_audit_spool_scan(const uint8_t *buf, size_t len, bg_audit_spool_rec_cb rec,
                           bg_audit_spool_bad_cb bad, void *arg);

/* Bound on the CRC bytes one scan (or one read of a segment) spends on
 * offsets whose frame does not validate: BASE plus PER_BYTE for every byte
 * before the offset checked. Damage whose bytes read as lengths in range at
 * every offset would otherwise cost a CRC of up to 1 MiB per byte. Real
 * damage needs a small part of it (JSON payloads hold no such bytes). */
#define BG_AUDIT_SPOOL_RESYNC_BASE (2u * (BG_AUDIT_SPOOL_HDR + BG_AUDIT_SPOOL_MAX_RECORD))
#define BG_AUDIT_SPOOL_RESYNC_PER_BYTE 256u

/* Test hook: the bytes the frame parser has run its CRC over in the calling
 * thread, valid frames and rejected candidates alike. */
uint64_t bg_audit_spool_crc_work(void);

/* 1 when p[0..n), an unparsed end of a segment, could be one append cut
 * short (being written, or torn by a crash): shorter than a header, or a
 * length in range that runs past its end. 0 for anything else, which is
 * damage: a torn append is at most one frame. */
int bg_audit_spool_torn(const uint8_t *p, size_t n);

/* Writes the frame header of payload p[0..n) into hdr. */
void bg_audit_spool_frame(uint8_t hdr[BG_AUDIT_SPOOL_HDR], const uint8_t *p, uint32_t n);

typedef struct bg_audit_spool_s bg_audit_spool_t;

/* Segment numbers stay below this, so the next one never wraps. */
#define BG_AUDIT_SPOOL_SEG_MAX 0x7fffffffu

/* 1 when name is a segment's file name exactly as busgate writes it
 * ("spool-%06u.seg", nothing after it, 0 < number <= BG_AUDIT_SPOOL_SEG_MAX),
 * with its number in *n; 0 for anything else (a stray "spool-7.seg.bak"). */
int bg_audit_spool_seg_no(const char *name, uint32_t *n);

/* The segment numbers in dir, ascending, in *out (malloc'ed, the caller
 * frees it; NULL when there are none) and their count in *n. Walk these,
 * never the range between the lowest and the highest: a stray name may
 * make it wide. -1 when dir cannot be listed or out of memory. */
int bg_audit_spool_segs(const char *dir, uint32_t **out, size_t *n);

/* The lowest and highest segment numbers in dir (*hi = 0: none). -1 when
 * dir cannot be listed. */
int bg_audit_spool_list(const char *dir, uint32_t *lo, uint32_t *hi);

/* Reads dir/spool.ack. 0: none, or its CRC does not match (a torn
 * overwrite); 1: a position; 2: the CRC-less line of earlier versions
 * (trusted only where it cannot skip records). */
int bg_audit_spool_read_ack(const char *dir, uint32_t *aseg, uint64_t *aoff);
/* The same on the file's first n bytes (fewer than 64), as read from disk. */
int bg_audit_spool_parse_ack(const char *text, size_t n, uint32_t *aseg, uint64_t *aoff);

/* Opens (creating) dir. max_bytes bounds the total segment bytes on disk (0 =
 * unbounded); seg_bytes is the rotation size (0 = 8 MiB). Reads spool.ack.
 * Returns NULL with err filled on failure. */
bg_audit_spool_t *bg_audit_spool_open(const char *dir, uint64_t max_bytes, uint64_t seg_bytes,
                                      char *err, size_t errlen);

/* Appends one record (one write(2) of header+payload). Returns 0, or -1 when
 * the spool is full or the write failed (nothing partial is left behind).
 * Not synced: call bg_audit_spool_sync. */
int bg_audit_spool_append(bg_audit_spool_t *sp, const uint8_t *p, size_t n);

/* fdatasync of the active segment when it has unsynced bytes. Returns 0 or -1. */
int bg_audit_spool_sync(bg_audit_spool_t *sp);

/* Bytes appended since the last successful sync (0: all on disk). */
uint64_t bg_audit_spool_unsynced(const bg_audit_spool_t *sp);

/* fsync of the spool directory (a new file's entry beside the segments,
 * e.g. the dead-letter file). Returns 0 or -1. */
int bg_audit_spool_sync_dir(const bg_audit_spool_t *sp);

/* Reads of a regular segment that fail this many times in a row (one per
 * drain round, with its backoff: about 8 s) move it aside. */
#define BG_AUDIT_SPOOL_READ_TRIES 5u

/* A segment moved aside takes the first free name of NAME.unreadable,
 * NAME.unreadable.1, ... up to this many names (an earlier file is never
 * replaced); when all are taken it is skipped as when the rename fails. */
#define BG_AUDIT_SPOOL_ASIDE_NAMES 100u

/* Segments that can be neither read nor moved aside are skipped until the
 * restart (read as missing, never deleted), up to this many; at the next
 * such segment the read stops (the drain retries) rather than forget one
 * and let the acknowledgement delete it. */
#define BG_AUDIT_SPOOL_SKIP_MAX 16u

/* Reads up to max records after the read cursor, calling cb for each (payload
 * borrowed for the call) and advancing the cursor past each. Corrupt regions
 * are skipped (counted, logged). Returns the number of records passed to cb
 * (the records before a segment that cannot be read, when there are any),
 * or -1 when the segment at the cursor cannot be read (logged; see
 * BG_AUDIT_SPOOL_READ_TRIES). */
int bg_audit_spool_read(bg_audit_spool_t *sp, size_t max, bg_audit_spool_rec_cb cb, void *arg);

/* Persists the cursor: everything read so far is delivered; deletes segments
 * that are entirely behind it. Returns 0 or -1. */
int bg_audit_spool_ack(bg_audit_spool_t *sp);

/* Moves the cursor back to the last acked position (a drain failed). */
void bg_audit_spool_rewind(bg_audit_spool_t *sp);

/* 1 when there is nothing after the cursor. */
int bg_audit_spool_empty(const bg_audit_spool_t *sp);

uint64_t bg_audit_spool_bytes(const bg_audit_spool_t *sp);      /* on disk */
uint64_t bg_audit_spool_corrupt(const bg_audit_spool_t *sp);    /* regions skipped */
uint64_t bg_audit_spool_unreadable(const bg_audit_spool_t *sp); /* segments moved aside */

/* Checks that the active segment is still in the directory. When it was
 * deleted (st_nlink 0), logs it, closes it (the next append starts a new
 * one) and returns the number of records in it that were not acknowledged:
 * lost. 0 otherwise. Call it periodically (the audit thread: with its sync). */
uint64_t bg_audit_spool_check(bg_audit_spool_t *sp);

/* Closes (syncing) and frees. NULL is a no-op. */
void bg_audit_spool_close(bg_audit_spool_t *sp);

#endif
