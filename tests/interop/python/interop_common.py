"""Shared argument parsing and result printing for busgate's Python interop clients.

Command line (same as the Java program):
  PROG BOOTSTRAP PLAIN|SCRAM-SHA-256|SCRAM-SHA-512 USER PASSWORD SCENARIO ARGS...
  PROG BOOTSTRAP OAUTHBEARER TOKEN_URL CLIENT_ID SECRET SCENARIO ARGS...
  PROG BOOTSTRAP NONE SCENARIO ARGS...
Prints one JSON line; exit 0 when the scenario's expectation held, 1 when
not, 2 on bad usage. BG_INTEROP_TIMEOUT_MS (default 30000) bounds every
wait; BG_INTEROP_PROPS_FILE names extra client settings (key=value lines,
the client library's own names).
"""
import json
import os
import sys
import traceback


class Usage(Exception):
    """Bad command line: exit 2."""


class Auth:
    """Parsed security settings, independent of the client library."""

    def __init__(self, mechanism, user=None, password=None, token_url=None,
                 client_id=None, secret=None):
        self.mechanism = mechanism
        self.user = user
        self.password = password
        self.token_url = token_url
        self.client_id = client_id
        self.secret = secret

    @property
    def principal(self):
        return self.user if self.user is not None else self.client_id


def parse(argv):
    """Returns (bootstrap, Auth, scenario_args) or raises Usage."""
    if len(argv) < 3:
        raise Usage("too few arguments")
    bootstrap, mech = argv[0], argv[1].upper()
    rest = argv[2:]
    if mech == "NONE":
        auth = Auth(mech)
    elif mech in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        if len(rest) < 2:
            raise Usage("%s needs USER PASSWORD" % mech)
        auth, rest = Auth(mech, user=rest[0], password=rest[1]), rest[2:]
    elif mech == "OAUTHBEARER":
        if len(rest) < 3:
            raise Usage("OAUTHBEARER needs TOKEN_URL CLIENT_ID SECRET")
        auth = Auth(mech, token_url=rest[0], client_id=rest[1], secret=rest[2])
        rest = rest[3:]
    else:
        raise Usage("unknown mechanism " + argv[1])
    if not rest:
        raise Usage("no scenario")
    return bootstrap, auth, rest


def timeout_s():
    return int(os.environ.get("BG_INTEROP_TIMEOUT_MS", "30000")) / 1000.0


def extra_props():
    """key=value lines from BG_INTEROP_PROPS_FILE (values stay strings)."""
    path = os.environ.get("BG_INTEROP_PROPS_FILE")
    props = {}
    if not path:
        return props
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                props[k.strip()] = v.strip()
    return props


def value(seq, client):
    """The record value every interop client writes: JSON with PII-like fields."""
    return json.dumps({"seq": seq, "client": client,
                       "customer": {"email": "user%d@example.com" % seq},
                       "card": {"number": "4111111111111111"}}, separators=(",", ":"))


def arg(args, i):
    if i >= len(args):
        raise Usage("scenario %s needs more arguments" % args[0])
    return args[i]


def count(args, i):
    try:
        n = int(arg(args, i))
    except ValueError:
        raise Usage("N must be a number")
    if n < 1:
        raise Usage("N must be >= 1")
    return n


def main(client_name, scenarios, run):
    """Runs run(bootstrap, auth, args, out) -> bool and prints the result line."""
    out = {"client": client_name}
    try:
        bootstrap, auth, args = parse(sys.argv[1:])
        out.update(mechanism=auth.mechanism, principal=auth.principal, scenario=args[0])
        if args[0] not in scenarios:
            raise Usage("unknown scenario " + args[0])
        ok = bool(run(bootstrap, auth, args, out))
    except Usage as e:
        sys.stderr.write("usage: %s BOOTSTRAP MECHANISM CREDENTIALS... SCENARIO ARGS...\n"
                         "  scenarios: %s\nerror: %s\n"
                         % (os.path.basename(sys.argv[0]), " | ".join(scenarios), e))
        sys.exit(2)
    except Exception as e:  # the result line must still be printed
        traceback.print_exc(file=sys.stderr)
        out.setdefault("error", type(e).__name__)
        out.setdefault("message", str(e))
        ok = False
    out["ok"] = ok
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    # Library threads must not keep the process alive.
    os._exit(0 if ok else 1)
