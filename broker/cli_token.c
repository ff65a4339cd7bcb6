#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker/cli.h"
#include "broker/config.h"
#include "broker/identity.h"

#define BG_CLI_MAX_GROUPS 256
#define BG_CLI_MAX_PEM (1 << 20)

static char *bg_cli__read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(BG_CLI_MAX_PEM + 1);
    size_t n = buf ? fread(buf, 1, BG_CLI_MAX_PEM, f) : 0;
    fclose(f);
    if (!buf)
        return NULL;
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int bg_cli__mint_usage_to(FILE *f, int rc)
{
    fprintf(f,
            "usage: busgate token mint --key PEM [--kid K] --sub S [--groups a,b] [--ttl SECONDS]\n"
            "                          [--iss I] [--aud A]\n"
            "Signs a token with a local private key. For development and tests only:\n"
            "production tokens come from your OIDC provider.\n"
            "Defaults: no kid, --ttl 3600 (at most 366 days), --iss busgate-dev, --aud busgate.\n");
    return rc;
}

static int bg_cli__mint_usage(void) { return bg_cli__mint_usage_to(stderr, 2); }

/* An option getopt_long refused: what was wrong, then the usage. */
static int bg_cli__mint_bad_option(int c, char **argv)
{
    bg_cli_getopt_bad("token mint", c, argv);
    return bg_cli__mint_usage();
}

/* What is wrong with mint's command line once its options are read (a word
 * that is no option, then the options it needs), said before the usage.
 * 0 when nothing is, else 2. */
static int bg_cli__mint_check(int argc, char **argv, const char *key, const char *sub)
{
    if (optind < argc)
        bg_cli_unexpected("token mint", argv[optind]);
    else if (!key || !sub)
        bg_cli_missing("token mint", !key && !sub ? "--key, --sub" : !key ? "--key" : "--sub");
    else
        return 0;
    return bg_cli__mint_usage();
}

/* --ttl: whole seconds, 1 to 366 days. 0, or -1 after saying what is wrong. */
static int bg_cli__mint_ttl(const char *s, long long *ttl)
{
    char *end;
    *ttl = strtoll(s, &end, 10);
    if (*s && !*end && *ttl > 0 && *ttl <= 366LL * 86400)
        return 0;
    fprintf(stderr, "busgate token mint: --ttl: expected whole seconds from 1 to %lld, got '%s'\n",
            366LL * 86400, s);
    return -1;
}

static int bg_cli__mint(int argc, char **argv)
{
    static const struct option opts[] = {
        {"key", required_argument, 0, 'k'}, {"kid", required_argument, 0, 'i'},
        {"sub", required_argument, 0, 's'}, {"groups", required_argument, 0, 'g'},
        {"ttl", required_argument, 0, 't'}, {"iss", required_argument, 0, 'I'},
        {"aud", required_argument, 0, 'a'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    char *key = NULL, *kid = NULL, *sub = NULL, *iss = NULL, *aud = NULL, *ttl_s = NULL;
    char *groups_s = NULL, *groups[BG_CLI_MAX_GROUPS];
    long long ttl = 3600;
    int c, twice = 0;
    optind = 1;
    opterr = 0; /* bg_cli_getopt_bad says what was wrong */
    while (!twice && (c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'k': twice = bg_cli_take("token mint", "--key", &key, optarg); break;
        case 'i': twice = bg_cli_take("token mint", "--kid", &kid, optarg); break;
        case 's': twice = bg_cli_take("token mint", "--sub", &sub, optarg); break;
        case 'g': twice = bg_cli_take("token mint", "--groups", &groups_s, optarg); break;
        case 't': twice = bg_cli_take("token mint", "--ttl", &ttl_s, optarg); break;
        case 'I': twice = bg_cli_take("token mint", "--iss", &iss, optarg); break;
        case 'a': twice = bg_cli_take("token mint", "--aud", &aud, optarg); break;
        case 'h': return bg_cli__mint_usage_to(stdout, 0);
        default: return bg_cli__mint_bad_option(c, argv);
        }
    }
    if (twice)
        return bg_cli__mint_usage();
    if (ttl_s && bg_cli__mint_ttl(ttl_s, &ttl) != 0)
        return 2;
    if (bg_cli__mint_check(argc, argv, key, sub) != 0)
        return 2;
    if (!iss)
        iss = "busgate-dev";
    if (!aud)
        aud = "busgate";
    size_t ng = 0;
    for (char *tok = groups_s ? strtok(groups_s, ",") : NULL; tok; tok = strtok(NULL, ",")) {
        if (!*tok)
            continue;
        if (ng == BG_CLI_MAX_GROUPS) { /* the token would not say what was asked */
            fprintf(stderr, "busgate token mint: --groups: at most %d groups\n", BG_CLI_MAX_GROUPS);
            return 2;
        }
        groups[ng++] = tok;
    }
    size_t pem_len = 0;
    char *pem = bg_cli__read_file(key, &pem_len);
    if (!pem) {
        fprintf(stderr, "busgate token mint: cannot read %s\n", key);
        return 1;
    }
    char err[256] = "";
    char *tok = bg_identity_mint(pem, pem_len, kid, sub, (const char *const *)groups, ng, ttl, iss,
                                 aud, err, sizeof err);
    free(pem);
    if (!tok) {
        fprintf(stderr, "busgate token mint: %s\n", err);
        return 1;
    }
    printf("%s\n", tok);
    free(tok);
    return 0;
}

static int bg_cli__inspect_usage_to(FILE *f, int rc)
{
    fprintf(f, "usage: busgate token inspect -c FILE [--] TOKEN   (TOKEN - reads standard input)\n"
               "Exit 0 valid, 1 rejected or invalid configuration, 2 usage.\n");
    return rc;
}

/* Finds the config path and the one TOKEN in argv ("--" ends the options).
 * -1 when the command should go on, else the exit status after the usage
 * (2) or the help (0). An unknown option is named, never taken for the
 * token; no part of a token is printed. */
static int bg_cli__inspect_args(int argc, char **argv, const char **path, const char **token)
{
    int opts = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *before = *path;
        int conf = opts ? bg_cli_config_opt(argc, argv, &i, path) : 0;
        if (conf > 0 && before) {
            bg_cli_once("token inspect", "-c", 1);
            return bg_cli__inspect_usage_to(stderr, 2);
        } else if (conf < 0) {
            fprintf(stderr, "busgate token inspect: %s needs a FILE\n", a);
            return bg_cli__inspect_usage_to(stderr, 2);
        } else if (conf > 0) {
            continue;
        } else if (opts && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            return bg_cli__inspect_usage_to(stdout, 0);
        } else if (opts && strcmp(a, "--") == 0) {
            opts = 0;
        } else if (opts && a[0] == '-' && a[1]) {
            fprintf(stderr, "busgate token inspect: unknown option '%s'\n", a);
            return bg_cli__inspect_usage_to(stderr, 2);
        } else if (*token) {
            fprintf(stderr, "busgate token inspect: more than one TOKEN\n");
            return bg_cli__inspect_usage_to(stderr, 2);
        } else {
            *token = a;
        }
    }
    if (!*path || !*token)
        bg_cli_missing("token inspect", !*path && !*token ? "-c FILE, TOKEN"
                                        : !*path          ? "-c FILE"
                                                          : "TOKEN");
    return *path && *token ? -1 : bg_cli__inspect_usage_to(stderr, 2);
}

/* The principal, issuer and groups lines of inspect. The claims come from
 * the token (a trusted issuer may still sign what a user chose, such as a
 * display name as the subject): escaped as `audit tail` escapes values, so
 * a newline or an escape sequence in one cannot forge a line or drive the
 * terminal. */
static void bg_cli__print_claims(const bg_principal_t *p)
{
    fputs("principal: ", stdout);
    bg_cli_print_visible(stdout, p->sub);
    fputs("\nissuer: ", stdout);
    bg_cli_print_visible(stdout, p->issuer);
    fputs("\ngroups:", stdout);
    for (size_t i = 0; i < p->ngroups; i++) {
        fputs(i ? "," : " ", stdout);
        bg_cli_print_visible(stdout, p->groups[i]);
    }
}

/* busgate token inspect -c FILE TOKEN: 0 and the principal; 1 and
 * "rejected: <reason>", or 1 when the configuration is invalid (as check
 * and explain: the errors on stderr); 2 for bad usage. TOKEN "-" reads
 * standard input. */
static int bg_cli__inspect(int argc, char **argv)
{
    const char *path = NULL, *token = NULL;
    int usage = bg_cli__inspect_args(argc, argv, &path, &token);
    if (usage >= 0)
        return usage;
    static char stdin_tok[BG_IDENTITY_MAX_TOKEN * 64 + 2];
    if (strcmp(token, "-") == 0) {
        size_t n = fread(stdin_tok, 1, sizeof stdin_tok - 1, stdin);
        while (n && (stdin_tok[n - 1] == '\n' || stdin_tok[n - 1] == '\r'))
            n--;
        stdin_tok[n] = '\0';
        token = stdin_tok;
    }
    bg_config_t *cfg = bg_cli_load_config(path, stderr);
    if (!cfg)
        return 1;
    char err[512], detail[256] = "";
    int rc = 1;
    bg_identity_t *id = bg_identity_new(&cfg->identity, err, sizeof err);
    if (!id) {
        fprintf(stderr, "%s: %s\n", path, err);
        goto done;
    }
    bg_identity_wait_ready(id, 5000);
    bg_principal_t p = {0};
    bg_id_reason_t r = bg_identity_verify(id, token, strlen(token), (int64_t)time(NULL), &p,
                                          detail, sizeof detail);
    if (r != BG_ID_OK) {
        printf("rejected: %s%s%s%s\n", bg_id_reason_str(r), detail[0] ? " (" : "", detail,
               detail[0] ? ")" : "");
        rc = 1;
        goto done;
    }
    bg_cli__print_claims(&p);
    long long left = (long long)(p.exp - time(NULL));
    if (left >= 0)
        printf("\nexpires: %lld (in %lld s)\n", (long long)p.exp, left);
    else /* accepted only thanks to the clock skew tolerance */
        printf("\nexpires: %lld (expired %lld s ago; accepted within identity.clock_skew)\n",
               (long long)p.exp, -left);
    if (p.token_id) {
        fputs("token_id: ", stdout);
        bg_cli_print_visible(stdout, p.token_id);
        putchar('\n');
    }
    bg_principal_clear(&p);
    rc = 0;
done:
    if (id)
        bg_identity_free(id);
    bg_config_free(cfg);
    return rc;
}

int bg_cli_token(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "mint") == 0)
        return bg_cli__mint(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "inspect") == 0)
        return bg_cli__inspect(argc - 1, argv + 1);
    /* "busgate token --help" asks for this usage: answered, not refused. */
    int help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
    if (argc < 2)
        bg_cli_missing("token", "mint or inspect");
    else if (!help)
        fprintf(stderr, "busgate token: unknown token command '%s'\n", argv[1]);
    fprintf(help ? stdout : stderr,
            "usage: busgate token mint|inspect ...  (busgate token mint --help, "
            "busgate token inspect --help)\n");
    return help ? 0 : 2;
}
