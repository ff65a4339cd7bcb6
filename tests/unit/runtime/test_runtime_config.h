/* Unit-test helper: a temporary busgate configuration whose identity section
 * trusts the development issuer (examples/jwks.json under BG_SOURCE_DIR),
 * for tests that run busgate's runtime in-process. The caller writes the
 * sections that follow and closes the file. */
#ifndef BG_TEST_RUNTIME_CONFIG_H
#define BG_TEST_RUNTIME_CONFIG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <setjmp.h>
#include <cmocka.h>

/* Creates /tmp/bg_t_NAME_XXXXXX (its path in path[cap]) with one worker and
 * the development issuer written; returns it open for writing. */
static inline FILE *bg_t_config_open(char *path, size_t cap, const char *name)
{
    const char *src = getenv("BG_SOURCE_DIR");
    assert_non_null(src);
    snprintf(path, cap, "/tmp/bg_t_%s_XXXXXX", name);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fprintf(f,
            "workers: 1\n"
            "identity:\n"
            "  issuers:\n"
            "    - issuer: busgate-dev\n"
            "      audiences: [busgate]\n"
            "      jwks_file: %s/examples/jwks.json\n",
            src);
    return f;
}

#endif
