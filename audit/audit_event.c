/* Helpers that fill events for the adapters. */
#include <string.h>

#include "audit/audit.h"
#include "broker/identity.h"

static const char *bg_audit__opt(const char *s) { return s && s[0] ? s : NULL; }

void bg_audit_event_session(bg_audit_event_t *ev, bg_audit_kind_t kind, const char *session_id,
                            uint64_t *seq, const char *protocol, const char *peer,
                            const struct bg_principal_s *p, const char *client_id,
                            const char *sw_name, const char *sw_version)
{
    memset(ev, 0, sizeof *ev);
    ev->kind = kind;
    ev->session_id = session_id;
    ev->seq = ++*seq;
    ev->has = BG_AUDIT_HAS_SEQ;
    ev->protocol = protocol;
    ev->peer = peer;
    if (p) {
        ev->principal.sub = p->sub;
        ev->principal.groups = (const char *const *)p->groups;
        ev->principal.ngroups = p->ngroups;
        ev->principal.issuer = p->issuer;
        ev->principal.token_id = p->token_id;
    }
    ev->client_id = bg_audit__opt(client_id);
    ev->client_software_name = bg_audit__opt(sw_name);
    ev->client_software_version = bg_audit__opt(sw_version);
}

void bg_audit_decision_set(bg_audit_decision_t *d, const bg_policy_decision_t *pd)
{
    d->effect = pd->effect;
    d->would = pd->would;
    d->mode = pd->mode;
    d->rule = d->rule_file = d->enforced_rule = d->enforced_rule_file = NULL;
    d->rule_line = d->enforced_rule_line = 0;
    if (pd->rule) {
        d->rule = bg_policy_rule_name(pd->rule);
        d->rule_file = bg_policy_rule_file(pd->rule);
        d->rule_line = bg_policy_rule_line(pd->rule);
    }
    /* In enforce mode rule is the enforced rule: said once. */
    if (pd->mode == BG_MODE_AUDIT && pd->enforced && pd->enforced != pd->rule) {
        d->enforced_rule = bg_policy_rule_name(pd->enforced);
        d->enforced_rule_file = bg_policy_rule_file(pd->enforced);
        d->enforced_rule_line = bg_policy_rule_line(pd->enforced);
    }
}
