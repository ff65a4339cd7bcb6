/* Secrets from ${env:}/${file:} are wiped before their memory goes back to
 * the allocator: the expansion buffer as it grows, and the config's arena
 * in bg_config_free. Linked with --wrap=free and --wrap=realloc: while a
 * test watches, every block handed to free() or realloc() is searched for
 * the secret at the moment of the call, while it is still allocated (the
 * test never reads freed memory). Only references from busgate's own
 * static libraries and this file are wrapped; libfyaml and libc are not,
 * and the YAML text holds only the reference, never the secret. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <malloc.h>

#include "broker/config.h"

void __real_free(void *p);
void *__real_realloc(void *p, size_t n);

static const char *bg_t_secret; /* what to look for; NULL: not watching */
static int bg_t_leaks;          /* blocks handed back still holding it */

static void bg_t_check(void *p)
{
    if (!p || !bg_t_secret)
        return;
    if (memmem(p, malloc_usable_size(p), bg_t_secret, strlen(bg_t_secret)))
        bg_t_leaks++;
}

void __wrap_free(void *p)
{
    bg_t_check(p);
    __real_free(p);
}

void *__wrap_realloc(void *p, size_t n)
{
    bg_t_check(p); /* realloc frees the old block when it moves it */
    return __real_realloc(p, n);
}

#define BG_T_SECRET "s3cret-Q7vX2mZp9Lk4Rt8W" /* 24 bytes */

/* An AMQP upstream whose password is the secret, followed by enough text
 * that the expansion buffer grows again after the secret is in it. */
static const char bg_t_yaml[] =
    "identity:\n"
    "  issuers:\n"
    "    - issuer: https://idp.example\n"
    "      audiences: [busgate]\n"
    "      jwks_file: jwks.json\n"
    "amqp:\n"
    "  listen: 127.0.0.1:15672\n"
    "  upstream:\n"
    "    host: rabbit:5672\n"
    "    username: u\n"
    "    password: \"${env:BG_T_SECRET}${env:BG_T_SECRET}${env:BG_T_SECRET}"
    "-and-a-suffix-long-enough-to-make-the-expansion-buffer-grow-once-more-after-the-secret-"
    "is-in-it-0123456789012345678901234567890123456789012345678901234567890123456789\"\n"
    "audit: {enabled: false}\n";

static bg_config_t *bg_t_load(void)
{
    bg_config_errors_t errs = {0};
    bg_config_t *c = bg_config_load_string("t.yaml", bg_t_yaml, strlen(bg_t_yaml), &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "  error: %s\n", errs.msgs[i]);
    bg_config_errors_clear(&errs);
    assert_non_null(c);
    assert_non_null(strstr(c->amqp.upstream.password, BG_T_SECRET));
    return c;
}

/* Growing the buffer a value is expanded into (bg_cfg__buf_add) used
 * realloc, which handed the block holding the secret back unwiped. */
static void test_expansion_buffer_wiped_as_it_grows(void **state)
{
    (void)state;
    bg_t_secret = BG_T_SECRET;
    bg_t_leaks = 0;
    bg_config_t *c = bg_t_load();
    bg_t_secret = NULL;
    bg_config_free(c);
    assert_int_equal(bg_t_leaks, 0);
}

/* bg_config_free freed the arena holding the expanded password unwiped. */
static void test_config_free_wipes_the_arena(void **state)
{
    (void)state;
    bg_config_t *c = bg_t_load();
    bg_t_secret = BG_T_SECRET;
    bg_t_leaks = 0;
    bg_config_free(c);
    bg_t_secret = NULL;
    assert_int_equal(bg_t_leaks, 0);
}

int main(void)
{
    setenv("BG_T_SECRET", BG_T_SECRET, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expansion_buffer_wiped_as_it_grows),
        cmocka_unit_test(test_config_free_wipes_the_arena),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
