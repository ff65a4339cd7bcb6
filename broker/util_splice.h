/* Kernel-side relay of a known number of bytes from one socket to another
 * through a pipe (splice(2)): a proxy that forwards a large body untouched
 * need not copy it into its own memory and back. Linux only; plain sockets
 * only (TLS bytes must pass through the TLS library).
 *
 * One relay per object at a time, driven by the object's own events on the
 * event base: bg_util_splice_start() returns at once, the bytes move as the
 * source has them and the destination takes them, and `done` is called once
 * at the end. Nothing beyond the n bytes is read from the source. While a
 * relay runs, the caller must neither read the source nor write the
 * destination itself. splice(2) has no MSG_NOSIGNAL: the process must ignore
 * SIGPIPE (busgate does), or a destination whose peer left kills it.
 *
 * Lives on one event loop thread; not thread-safe. */
#ifndef BG_UTIL_SPLICE_H
#define BG_UTIL_SPLICE_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

typedef struct bg_util_splice_s bg_util_splice_t;

typedef enum {
    BG_UTIL_SPLICE_DONE = 0,   /* all n bytes reached the destination */
    BG_UTIL_SPLICE_SRC_EOF,    /* the source closed before n bytes came */
    BG_UTIL_SPLICE_SRC_ERROR,  /* reading the source failed (errno in `err`) */
    BG_UTIL_SPLICE_DST_ERROR,  /* writing the destination failed (errno in `err`) */
} bg_util_splice_result_t;

/* Called once when a relay ends, from the event loop (never from inside
 * bg_util_splice_start). `moved`: bytes that reached the destination. The
 * callee may free sp. */
typedef void (*bg_util_splice_done_fn)(void *arg, bg_util_splice_result_t rc, int err,
                                       uint64_t moved);

/* A relay object on base. Each relay makes its own pipe (256 KiB asked for)
 * and closes it at the end. NULL when out of memory. */
bg_util_splice_t *bg_util_splice_new(struct event_base *base);
/* Stops a running relay without calling done, closes the pipe. NULL is a no-op. */
void bg_util_splice_free(bg_util_splice_t *sp);

/* Starts moving n (> 0) bytes from the socket src to the socket dst (both
 * non-blocking). Returns 0, or -1 (errno set) when a relay is already
 * running, the pipe cannot be made or is smaller than 64 KiB (the per-user
 * pipe page limit reached), or the events cannot be added; nothing was read
 * then and the caller relays the bytes itself. */
int bg_util_splice_start(bg_util_splice_t *sp, int src, int dst, uint64_t n,
                         bg_util_splice_done_fn done, void *arg);

/* The longest a relay waits for the destination to take more bytes (0,
 * the default: no limit); past it the relay ends with DST_ERROR and
 * ETIMEDOUT. A peer that stops reading cannot hold the relay for ever. */
void bg_util_splice_set_write_timeout(bg_util_splice_t *sp, int ms);

/* 1 while a relay runs. */
int bg_util_splice_busy(const bg_util_splice_t *sp);
/* Bytes the running (or last) relay has written to the destination so far. */
uint64_t bg_util_splice_moved(const bg_util_splice_t *sp);

#endif
