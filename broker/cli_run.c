#include <stdio.h>

#include "broker/cli.h"
#include "broker/runtime.h"

int bg_cli_run(int argc, char **argv, const bg_adapter_t *const *adapters, size_t nadapters)
{
    const char *path = bg_cli_config_only("run", argc, argv, "usage: busgate run -c FILE\n");
    if (!path)
        return 2;
    return bg_runtime_run(path, adapters, nadapters);
}
