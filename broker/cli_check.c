#include <stdio.h>

#include "broker/cli.h"
#include "broker/config.h"
#include "broker/snapshot.h"

/* busgate check -c FILE: 0 valid, 1 invalid (every error printed as
 * FILE:LINE:COL: message), 2 bad usage. Beyond the syntax and schema it
 * builds the snapshot, so an unreadable JWKS file is also reported. */
int bg_cli_check(int argc, char **argv)
{
    const char *path = bg_cli_config_arg(argc, argv);
    if (!path || argc != 3) {
        fprintf(stderr, "usage: busgate check -c FILE\n");
        return 2;
    }
    bg_config_errors_t errs = {0};
    bg_config_t *cfg = bg_config_load(path, &errs);
    if (!cfg) {
        for (size_t i = 0; i < errs.n; i++)
            printf("%s\n", errs.msgs[i]);
        bg_config_errors_clear(&errs);
        return 1;
    }
    bg_config_errors_clear(&errs);
    char err[512];
    bg_snapshot_t *s = bg_snapshot_build(cfg, err, sizeof err);
    if (!s) {
        printf("%s: %s\n", path, err);
        return 1;
    }
    printf("%s: ok\n", path);
    bg_snapshot_release(s);
    return 0;
}
