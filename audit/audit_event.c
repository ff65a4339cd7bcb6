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
