#include <stdio.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "broker/cli.h"
#include "broker/config.h"
#include "broker/config_kafka_client.h"
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

#define BG_CLI_TRACE_EXCHANGE "amq.rabbitmq.trace"

/* The first of rule r's resources that matches RabbitMQ's trace exchange
 * with verb read among its verbs, or NULL. */
static const char *bg_cli__reads_trace(const bg_policy_rule_spec_t *r)
{
    bg_policy_resource_t trace = {BG_RES_AMQP_EXCHANGE, NULL, 0, BG_CLI_TRACE_EXCHANGE,
                                  sizeof BG_CLI_TRACE_EXCHANGE - 1};
    if (!(r->verbs & (1u << BG_VERB_READ)))
        return NULL;
    for (size_t i = 0; i < r->nresources; i++)
        if (bg_policy_pattern_matches(r->resources[i], &trace))
            return r->resources[i];
    return NULL;
}

/* Warns about each allow rule (and an allow default) that grants read on
 * amq.rabbitmq.trace: RabbitMQ creates that exchange in every vhost, and
 * with tracing on (rabbitmqctl trace_on) it gets a copy of every message
 * published and delivered there, also of queues the principal may not
 * read; a queue bound to it reads them all. busgate decides a bind to it
 * like any other, so the grant is the whole gate. Broad patterns
 * (amqp:exchange:*, amq.*) match it by accident, hence a warning. None when
 * an enforced deny for "*" covers it: that outranks every allow. Called
 * only for a configuration with an amqp section: without one no principal
 * reaches RabbitMQ through busgate. */
static void bg_cli__warn_trace_exchange(const char *path, const bg_policy_spec_t *p)
{
    for (size_t i = 0; i < p->nrules; i++) {
        const bg_policy_rule_spec_t *r = &p->rules[i];
        if (p->mode == BG_MODE_AUDIT || r->effect != BG_EFFECT_DENY || r->mode == BG_MODE_AUDIT ||
            !bg_cli__reads_trace(r))
            continue;
        for (size_t k = 0; k < r->nsubjects; k++)
            if (strcmp(r->subjects[k], "*") == 0)
                return;
    }
    static const char why[] = "while tracing is on (rabbitmqctl trace_on) it gets a copy of "
                              "every message published and delivered on the vhost, also of "
                              "queues the principal may not read, and read lets a principal "
                              "bind a queue of its own to it";
    static const char deny[] = "deny read on amqp:exchange:amq.rabbitmq.* to \"*\"";
    if (p->mode == BG_MODE_AUDIT) { /* nothing is refused, whatever the rules say */
        printf("%s: warning: policy mode audit refuses nothing, so every principal may read "
               "RabbitMQ's " BG_CLI_TRACE_EXCHANGE ": %s\n",
               path, why);
        return;
    }
    for (size_t i = 0; i < p->nrules; i++) {
        const bg_policy_rule_spec_t *r = &p->rules[i];
        /* an allow rule in mode audit only records: it grants nothing */
        const char *res = r->effect == BG_EFFECT_ALLOW && r->mode != BG_MODE_AUDIT
                              ? bg_cli__reads_trace(r)
                              : NULL;
        if (res)
            printf("%s: warning: policy rule '%s' (line %d) allows read on %s, which matches "
                   "RabbitMQ's " BG_CLI_TRACE_EXCHANGE ": %s; narrow the pattern, or %s\n",
                   path, r->name, r->line, res, why, deny);
    }
    if (p->default_effect == BG_EFFECT_ALLOW)
        printf("%s: warning: policy default allow grants read on RabbitMQ's "
               BG_CLI_TRACE_EXCHANGE ": %s; %s\n",
               path, why, deny);
}

/* A rule that says mode enforce in a policy of mode audit enforces nothing:
 * the policy's mode wins (docs/policy.md), which the rule's author may not
 * have meant. */
static void bg_cli__warn_overridden_modes(const char *path, const bg_policy_spec_t *p)
{
    for (size_t i = 0; p->mode == BG_MODE_AUDIT && i < p->nrules; i++)
        if (p->rules[i].mode == BG_MODE_ENFORCE)
            printf("%s: warning: policy rule '%s' (line %d) says mode enforce, but policy mode "
                   "audit refuses nothing: the rule is only recorded\n",
                   path, p->rules[i].name, p->rules[i].line);
}

/* busgate's own credentials where anyone on the network path can take
 * them: SASL PLAIN without TLS, RabbitMQ's PLAIN login without TLS, or TLS
 * that does not check who answers, to a host that is not loopback. */
static void bg_cli__warn_clear_credentials(const char *path, const bg_config_t *c)
{
    static const char spy[] = "anyone on the network path can read busgate's password";
    static const char pose[] =
        "anyone on the network path can pose as the broker and take busgate's credential";
    const bg_config_kafka_t *k = &c->kafka;
    for (size_t i = 0; k->enabled && i < k->upstream.nbootstrap; i++) {
        const char *h = k->upstream.bootstrap[i].host;
        if (bg_config_host_is_loopback(h, strlen(h)))
            continue;
        if (k->upstream.security == BG_SEC_SASL_PLAINTEXT && k->upstream.sasl_mechanism &&
            strcmp(k->upstream.sasl_mechanism, "PLAIN") == 0)
            printf("%s: warning: kafka.upstream: SASL PLAIN without TLS to %s: %s (use "
                   "security: sasl_ssl)\n",
                   path, h, spy);
        if (k->upstream.tls.enabled && !k->upstream.tls.verify)
            printf("%s: warning: kafka.upstream.tls.verify is false for %s: %s\n", path, h, pose);
        break; /* once for the bootstrap list */
    }
    const bg_config_amqp_t *a = &c->amqp;
    const char *h = a->enabled ? a->upstream.host.host : NULL;
    if (h && !bg_config_host_is_loopback(h, strlen(h))) {
        if (!a->upstream.tls.enabled)
            printf("%s: warning: amqp.upstream: no tls to %s: %s (add amqp.upstream.tls)\n", path,
                   h, spy);
        else if (!a->upstream.tls.verify)
            printf("%s: warning: amqp.upstream.tls.verify is false for %s: %s\n", path, h, pose);
    }
}

/* busgate check -c FILE: 0 valid, 1 invalid (every error printed as
 * FILE:LINE:COL: message, or FILE: message for the snapshot's errors, which
 * have no position: an unreadable JWKS file), 2 bad usage. Beyond the syntax and schema it
 * builds the snapshot, so an unreadable JWKS file is also reported. A valid
 * file may get warnings ("FILE: warning: ...") before "FILE: ok". */
int bg_cli_check(int argc, char **argv)
{
    const char *path = bg_cli_config_only("check", argc, argv, "usage: busgate check -c FILE\n");
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
    if (cfg->amqp.enabled)
        bg_cli__warn_trace_exchange(path, bg_config_policy_spec(cfg));
    bg_cli__warn_overridden_modes(path, bg_config_policy_spec(cfg));
    bg_cli__warn_clear_credentials(path, cfg);
    char scram[512];
    if (bg_config_kafka_client_scram_warning(cfg, rd_kafka_version(), scram, sizeof scram))
        printf("%s: warning: %s\n", path, scram);
    const char *unbuilt[3];
    for (size_t i = 0, n = bg_config_unbuilt(cfg, unbuilt); i < n; i++)
        printf("%s: warning: %s\n", path, unbuilt[i]);
    const char *off = bg_config_audit_off(cfg);
    if (off)
        printf("%s: warning: %s\n", path, off);
    printf("%s: ok\n", path);
    bg_snapshot_release(s);
    return 0;
}
