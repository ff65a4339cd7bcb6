/* Fuzz target: the configuration loader on arbitrary bytes. Whatever the
 * input, loading must not crash or leak, and a failed load must leave at
 * least one error message. ${file:}/${env:} references resolve against the
 * real environment (files are read bounded and non-blocking). */
#include <stdint.h>
#include <stdlib.h>

#include "broker/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bg_config_errors_t errs = {0};
    bg_config_t *c = bg_config_load_string("fuzz.yaml", (const char *)data, size, &errs);
    if (!c && errs.n == 0)
        abort();
    bg_config_free(c);
    bg_config_errors_clear(&errs);
    return 0;
}
