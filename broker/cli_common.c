#include <string.h>

#include "broker/cli.h"
#include "broker/config.h"

const char *bg_cli_config_arg(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            return argv[i + 1];
        if (strncmp(argv[i], "--config=", 9) == 0)
            return argv[i] + 9;
    }
    return NULL;
}

const char *bg_cli_config_only(int argc, char **argv, const char *usage)
{
    const char *path = NULL, *bad = NULL;
    for (int i = 1; i < argc && !bad; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc &&
            !path)
            path = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0 && !path)
            path = argv[i] + 9;
        else
            bad = argv[i];
    }
    if (bad)
        fprintf(stderr, "busgate: unexpected argument '%s'\n", bad);
    else if (!path)
        fprintf(stderr, "busgate: missing -c FILE\n");
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
