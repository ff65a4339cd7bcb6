#include <getopt.h>
#include <string.h>

#include "broker/cli.h"
#include "broker/config.h"

int bg_cli_config_opt(int argc, char **argv, int *i, const char **path)
{
    const char *a = argv[*i];
    if (strncmp(a, "--config=", 9) == 0) {
        *path = a + 9;
        return 1;
    }
    if (strcmp(a, "-c") != 0 && strcmp(a, "--config") != 0)
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *path = argv[++*i];
    return 1;
}

const char *bg_cli_config_arg(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++)
        if (bg_cli_config_opt(argc, argv, &i, &path) > 0)
            return path;
    return NULL;
}

const char *bg_cli_config_only(const char *cmd, int argc, char **argv, const char *usage)
{
    const char *path = NULL, *bad = NULL;
    int conf = 0, twice = 0;
    for (int i = 1; i < argc && !bad; i++) {
        const char *before = path, *word = argv[i];
        if ((conf = bg_cli_config_opt(argc, argv, &i, &path)) <= 0 || before) {
            bad = word;
            twice = conf > 0;
        }
    }
    if (bad && conf < 0) /* "-c" last: the option is known, its FILE is missing */
        fprintf(stderr, "busgate %s: %s needs a FILE\n", cmd, bad);
    else if (twice)
        bg_cli_once(cmd, "-c", 1);
    else if (bad)
        bg_cli_unexpected(cmd, bad);
    else if (!path)
        bg_cli_missing(cmd, "-c FILE");
    if (bad || !path) {
        fprintf(stderr, "%s", usage);
        return NULL;
    }
    return path;
}

bg_config_t *bg_cli_load_config(const char *path, FILE *out)
{
    bg_config_errors_t errs = {0};
    bg_config_t *cfg = bg_config_load(path, &errs);
    for (size_t i = 0; !cfg && i < errs.n; i++)
        fprintf(out, "%s\n", errs.msgs[i]);
    bg_config_errors_clear(&errs);
    return cfg;
}

/* The word getopt_long stopped at: an unknown or clustered short option by
 * its letter (its word may hold more), anything else as written. */
static void bg_cli__getopt_word(char **argv, char *out, size_t cap)
{
    const char *word = optind > 0 ? argv[optind - 1] : "";
    if (strncmp(word, "--", 2) != 0 && optopt)
        snprintf(out, cap, "-%c", optopt);
    else
        snprintf(out, cap, "%s", word);
}

int bg_cli_getopt_bad(const char *cmd, int c, char **argv)
{
    char word[128];
    bg_cli__getopt_word(argv, word, sizeof word);
    if (c == ':')
        fprintf(stderr, "busgate %s: missing the value of '%s'\n", cmd, word);
    else if (strchr(word, '=') && strncmp(word, "--", 2) == 0 && optopt)
        fprintf(stderr, "busgate %s: '%s': the option takes no value\n", cmd, word);
    else
        fprintf(stderr, "busgate %s: unknown option '%s'\n", cmd, word);
    return 2;
}

int bg_cli_missing(const char *cmd, const char *what)
{
    fprintf(stderr, "busgate %s: missing %s\n", cmd, what);
    return 2;
}

int bg_cli_unexpected(const char *cmd, const char *arg)
{
    fprintf(stderr, "busgate %s: unexpected argument '%s'\n", cmd, arg);
    return 2;
}

int bg_cli_once(const char *cmd, const char *name, int given)
{
    if (!given)
        return 0;
    fprintf(stderr, "busgate %s: %s given twice\n", cmd, name);
    return 2;
}

int bg_cli_take(const char *cmd, const char *name, char **slot, char *value)
{
    if (bg_cli_once(cmd, name, *slot != NULL) != 0)
        return 2;
    *slot = value;
    return 0;
}
