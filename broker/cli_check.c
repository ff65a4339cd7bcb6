#include <stdio.h>
#include <string.h>

#include "broker/cli.h"
#include "broker/config.h"
#include "broker/snapshot.h"

/* busgate check -c FILE: 0 valid, 1 invalid (every error printed as
 * FILE:LINE:COL: message), 2 bad usage. Beyond the syntax and schema it
 * builds the snapshot, so an unreadable JWKS file is also reported. */
int bg_cli_check(int argc, char **argv)
{
    const char *path = bg_cli_config_only(argc, argv, "usage: busgate check -c FILE\n");
    if (!path)
        return 2;
    bg_config_t *cfg = bg_cli_load_config(path, stdout);
    if (!cfg)
        return 1;
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
