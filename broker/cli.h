/* Sub-commands of the busgate binary. Each returns the process exit status
 * and prints to stdout/stderr. argv[0] is the sub-command name. */
#ifndef BG_CLI_H
#define BG_CLI_H

#include <stdio.h>

#include "broker/adapter.h"

int bg_cli_run(int argc, char **argv, const bg_adapter_t *const *adapters, size_t nadapters);
int bg_cli_check(int argc, char **argv);
int bg_cli_explain(int argc, char **argv);
int bg_cli_token(int argc, char **argv);
int bg_cli_audit(int argc, char **argv);

/* v[0..len) with its terminal controls made visible: C0 controls, DEL and
 * the C1 controls (U+0080..U+009F) become \xNN / \u00NN, and a backslash
 * \\ (so no text can pass for an escape). Values the CLI prints come from
 * clients and tokens (topics, client ids, token claims); printed raw, an
 * escape sequence or a newline in one could rewrite or forge the lines an
 * operator reads. Malloc'ed; NULL when nothing needs escaping (or out of
 * memory: the caller then has only the raw value). */
char *bg_cli_visible(const char *v, size_t len);

/* Prints the NUL-terminated s to f through bg_cli_visible; NULL prints
 * nothing. */
void bg_cli_print_visible(FILE *f, const char *s);

struct bg_config_s;
/* Loads path; on failure prints every error, one per line, to out and
 * returns NULL. */
struct bg_config_s *bg_cli_load_config(const char *path, FILE *out);

/* The configuration path when argv[1..] is exactly "-c FILE", "--config
 * FILE" or "--config=FILE". Otherwise prints what is wrong as "busgate
 * CMD: ..." and usage to stderr and returns NULL (the caller exits 2). */
const char *bg_cli_config_only(const char *cmd, int argc, char **argv, const char *usage);

/* The configuration option at argv[*i]: for "-c FILE", "--config FILE" or
 * "--config=FILE" sets *path, leaves *i on its last word and returns 1;
 * -1 for "-c" or "--config" without a FILE; 0 for anything else. */
int bg_cli_config_opt(int argc, char **argv, int *i, const char **path);

/* Finds "-c FILE" / "--config FILE" / "--config=FILE" in argv; NULL if absent. */
const char *bg_cli_config_arg(int argc, char **argv);

/* For commands parsed with getopt_long, with opterr = 0 and an optstring
 * that starts with ':' (getopt's own message would name the sub-command as
 * the program, or nothing at all): says on stderr what was wrong with the
 * option getopt_long just refused (c: its '?' or ':' answer) as
 * "busgate CMD: ...". Returns 2, the status of bad usage. */
int bg_cli_getopt_bad(const char *cmd, int c, char **argv);

/* "busgate CMD: missing WHAT" on stderr; returns 2. Every usage error says
 * what was wrong before the usage text. */
int bg_cli_missing(const char *cmd, const char *what);

/* "busgate CMD: unexpected argument 'ARG'" on stderr; returns 2. */
int bg_cli_unexpected(const char *cmd, const char *arg);

/* For an option that takes one value, seen again: given nonzero when it
 * was already given, and then "busgate CMD: NAME given twice" on stderr and
 * 2 (bad usage), else 0. Refused rather than the last one taken: "--verb
 * read --verb write" asks two questions and would answer one unsaid. */
int bg_cli_once(const char *cmd, const char *name, int given);

/* The value of the option NAME into *slot, through bg_cli_once: 0, or 2
 * when *slot was set already (then left as it was). */
int bg_cli_take(const char *cmd, const char *name, char **slot, char *value);

#endif
