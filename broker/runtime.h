/* The busgate process: configuration, snapshots, workers, signals, reload,
 * admin listener. */
#ifndef BG_RUNTIME_H
#define BG_RUNTIME_H

#include "broker/adapter.h"

/* Runs busgate with the configuration at path until SIGTERM/SIGINT (drain,
 * exit 0). SIGHUP, or a change of the file's contents, reloads: an invalid
 * new file keeps the old configuration running and logs every error. A
 * SIGHUP during start-up is held and reloads once the main loop runs; one
 * after the loop has stopped does nothing. On return the calling thread's
 * signal mask is restored and SIGHUP keeps a handler that does nothing
 * (SIGPIPE stays ignored). Main thread only: it owns the process's signals.
 * adapters: the protocol adapters linked into this binary. Returns the
 * process exit status (0 clean stop, 1 bad configuration, 2 start failure or
 * a failed main loop). */
int bg_runtime_run(const char *path, const bg_adapter_t *const *adapters, size_t nadapters);

#endif
