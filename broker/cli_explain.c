#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/cli.h"
#include "broker/config.h"
#include "policy/policy_explain.h"

/* Splits a comma list in place into out[]; returns the count. */
static size_t bg_cli__split(char *s, char **out, size_t max)
{
    size_t n = 0;
    for (char *tok = strtok(s, ","); tok && n < max; tok = strtok(NULL, ","))
        if (*tok)
            out[n++] = tok;
    return n;
}

/* Writes the whole explanation to stdout: sized by a first pass (the text
 * grows with every matching rule and mask, so no fixed buffer fits all).
 * 0, or -1 after printing why. */
static int bg_cli__explain_print(const bg_policy_t *p, const bg_policy_principal_t *pr,
                                 const bg_policy_resource_t *res, bg_verb_t verb, int json)
{
    int need = bg_policy_explain(p, pr, res, verb, NULL, 0, json);
    char *out = need >= 0 && need < INT32_MAX ? malloc((size_t)need + 1) : NULL;
    if (!out || bg_policy_explain(p, pr, res, verb, out, (size_t)need + 1, json) != need) {
        fprintf(stderr, "busgate explain: out of memory\n");
        free(out);
        return -1;
    }
    fwrite(out, 1, (size_t)need, stdout);
    free(out);
    return 0;
}

static int bg_cli__explain_usage(void)
{
    fprintf(stderr, "usage: busgate explain -c FILE --sub S [--groups a,b] --resource R "
                    "--verb V [--json]\n");
    return 2;
}

/* An option getopt_long refused: what was wrong, then the usage. */
static int bg_cli__explain_bad_option(int c, char **argv)
{
    bg_cli_getopt_bad("explain", c, argv);
    return bg_cli__explain_usage();
}

/* The options explain cannot do without, named in the order of the usage
 * line (all of the missing ones: one run of the command tells them all).
 * 0 when none is missing, else 2 after saying which. */
static int bg_cli__explain_missing(const char *path, const char *sub, const char *res,
                                   const char *verb)
{
    const char *names[] = {path ? NULL : "-c FILE", sub ? NULL : "--sub",
                           res ? NULL : "--resource", verb ? NULL : "--verb"};
    char what[64] = "";
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i])
            snprintf(what + strlen(what), sizeof what - strlen(what), "%s%s", *what ? ", " : "",
                     names[i]);
    return *what ? bg_cli_missing("explain", what) : 0;
}

/* The command line after the options: usage errors say what was wrong
 * first, then the usage. 0 when it is whole, else 2. */
static int bg_cli__explain_check(int argc, char **argv, const char *path, const char *sub,
                                 const char *res, const char *verb)
{
    int rc = optind < argc ? bg_cli_unexpected("explain", argv[optind])
                           : bg_cli__explain_missing(path, sub, res, verb);
    return rc ? bg_cli__explain_usage() : 0;
}

int bg_cli_explain(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"sub", required_argument, 0, 's'},
        {"groups", required_argument, 0, 'g'}, {"resource", required_argument, 0, 'r'},
        {"verb", required_argument, 0, 'v'},   {"json", no_argument, 0, 'j'},
        {0, 0, 0, 0}};
    char *path = NULL, *sub = NULL, *res_s = NULL, *verb_s = NULL;
    char *groups_s = NULL, **groups = NULL;
    int json = 0, c, twice = 0;
    optind = 1;
    opterr = 0; /* bg_cli_getopt_bad says what was wrong */
    while (!twice && (c = getopt_long(argc, argv, ":c:", opts, NULL)) != -1) {
        switch (c) {
        case 'c': twice = bg_cli_take("explain", "-c", &path, optarg); break;
        case 's': twice = bg_cli_take("explain", "--sub", &sub, optarg); break;
        case 'g': twice = bg_cli_take("explain", "--groups", &groups_s, optarg); break;
        case 'r': twice = bg_cli_take("explain", "--resource", &res_s, optarg); break;
        case 'v': twice = bg_cli_take("explain", "--verb", &verb_s, optarg); break;
        case 'j': json = 1; break;
        default: return bg_cli__explain_bad_option(c, argv);
        }
    }
    if (twice)
        return bg_cli__explain_usage();
    if (bg_cli__explain_check(argc, argv, path, sub, res_s, verb_s) != 0)
        return 2;
    bg_policy_resource_t res;
    bg_verb_t verb;
    const char *why = NULL;
    if (bg_policy_parse_resource(res_s, &res, &why) != 0) {
        fprintf(stderr, "busgate explain: --resource: %s\n", why);
        return 2;
    }
    if (bg_policy_parse_verb(verb_s, &verb, &why) != 0) {
        fprintf(stderr, "busgate explain: --verb: %s\n", why);
        return 2;
    }
    /* Every group, as the identity module passes every one: room for as many
     * as there are commas, plus one. */
    size_t maxg = 1;
    for (const char *q = groups_s; q && *q; q++)
        maxg += *q == ',';
    if (!(groups = calloc(maxg, sizeof *groups))) {
        fprintf(stderr, "busgate explain: out of memory\n");
        return 1;
    }
    size_t ng = groups_s ? bg_cli__split(groups_s, groups, maxg) : 0;

    bg_config_t *cfg = bg_cli_load_config(path, stderr);
    if (!cfg) {
        free(groups);
        return 1;
    }
    int rc = 1;
    char err[512];
    bg_policy_t *p = bg_policy_compile(bg_config_policy_spec(cfg), err, sizeof err);
    bg_policy_principal_t pr = {0};
    if (!p) {
        fprintf(stderr, "%s: %s\n", path, err);
        goto done;
    }
    if (bg_policy_principal_prepare(p, sub, (const char *const *)groups, ng, &pr) != 0) {
        fprintf(stderr, "busgate explain: out of memory\n");
        goto done;
    }
    if (bg_cli__explain_print(p, &pr, &res, verb, json) == 0)
        rc = 0;
done:
    bg_policy_principal_clear(&pr);
    if (p)
        bg_policy_free(p);
    bg_config_free(cfg);
    free(groups);
    return rc;
}
