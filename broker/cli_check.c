#include <stdio.h>
#include <string.h>

#include "broker/cli.h"
#include "broker/config.h"
#include "broker/snapshot.h"

/* Warns about each pair of issuers whose tokens get the same principal
 * names: policy subjects match names, not issuers, so with the same
 * subject_prefix a sub:NAME rule admits either issuer's NAME (likewise
 * groups_prefix and group:NAME). Legitimate (two providers of one
 * directory), hence a warning and not an error. */
static void bg_cli__warn_shared_names(const char *path, const bg_config_identity_t *id)
{
    for (size_t j = 1; j < id->nissuers; j++) {
        for (size_t i = 0; i < j; i++) {
            const bg_config_issuer_t *a = &id->issuers[i], *b = &id->issuers[j];
            int subs = strcmp(a->subject_prefix, b->subject_prefix) == 0;
            int groups = strcmp(a->groups_prefix, b->groups_prefix) == 0;
            if (!subs && !groups)
                continue;
            printf("%s: warning: identity.issuers[%zu] (%s) and identity.issuers[%zu] (%s) have "
                   "the same %s: their tokens share %s names (a policy subject %s matches "
                   "either issuer's token); set the prefixes apart unless both issuers are "
                   "one directory\n",
                   path, i, a->issuer, j, b->issuer,
                   subs && groups ? "subject_prefix and groups_prefix"
                   : subs         ? "subject_prefix"
                                  : "groups_prefix",
                   subs && groups ? "principal" : subs ? "subject" : "group",
                   subs && groups ? "sub:NAME or group:NAME" : subs ? "sub:NAME" : "group:NAME");
        }
    }
}

/* One prefix strictly starting another ("" starts every one): issuer a can
 * sign a token whose name, after its prefix, reads as one of b's (prefix ""
 * and a subject "partner/x" give the name b's prefix "partner/" gives to
 * "x"). Common (an internal issuer without a prefix beside a partner's),
 * hence a warning naming the rest of b's prefix that a's names must avoid. */
static void bg_cli__warn_prefix_overlap(const char *path, const bg_config_identity_t *id,
                                        const char *what)
{
    int subs = strcmp(what, "subject_prefix") == 0;
    for (size_t i = 0; i < id->nissuers; i++) {
        for (size_t j = 0; j < id->nissuers; j++) {
            const bg_config_issuer_t *a = &id->issuers[i], *b = &id->issuers[j];
            const char *pa = subs ? a->subject_prefix : a->groups_prefix;
            const char *pb = subs ? b->subject_prefix : b->groups_prefix;
            size_t la = strlen(pa);
            if (i == j || strlen(pb) <= la || strncmp(pa, pb, la) != 0)
                continue;
            printf("%s: warning: identity.issuers[%zu] (%s) %s '%s' starts identity.issuers[%zu] "
                   "(%s)'s '%s': a %s from the first that begins with '%s' gets a name of the "
                   "second's\n",
                   path, i, a->issuer, what, pa, j, b->issuer, pb, subs ? "subject" : "group",
                   pb + la);
        }
    }
}

/* busgate check -c FILE: 0 valid, 1 invalid (every error printed as
 * FILE:LINE:COL: message), 2 bad usage. Beyond the syntax and schema it
 * builds the snapshot, so an unreadable JWKS file is also reported. A valid
 * file may get warnings ("FILE: warning: ...") before "FILE: ok". */
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
    bg_cli__warn_shared_names(path, &cfg->identity);
    bg_cli__warn_prefix_overlap(path, &cfg->identity, "subject_prefix");
    bg_cli__warn_prefix_overlap(path, &cfg->identity, "groups_prefix");
    printf("%s: ok\n", path);
    bg_snapshot_release(s);
    return 0;
}
