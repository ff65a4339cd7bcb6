"""AMQP-side helpers for the integration suites: tokens from a local issuer,
busgate configurations in front of the test RabbitMQ, pika connections
through busgate, and a private RabbitMQ node for tests that restart it.

Services (started by tests/integration/run.sh, see docs/testing.md):
  RabbitMQ  127.0.0.1:$BG_RABBIT_PORT (16672), user busgate
The helpers are written to be reused by other suites (interop clients,
benchmarks): nothing here depends on pytest beyond the fixtures' callers.
"""
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

from conftest import (ROOT, audit_events, free_port, free_port_block, http_get,  # noqa: F401
                      run_cli, wait_audit)
from keys import make_rsa_key

RABBIT_PORT = int(os.environ.get("BG_RABBIT_PORT", "16672"))
UPSTREAM_USER = "busgate"
UPSTREAM_PASSWORD = "busgate-test-password"  # the test broker's fixed credential
ISSUER = "https://amqp.it.local.test"
AUDIENCE = "busgate"


class Issuer:
    """A local token issuer: an RSA key and its JWKS file; tokens are minted
    with `busgate token mint` (or signed by hand for expired ones)."""

    def __init__(self, directory: Path, iss=ISSUER):
        directory.mkdir(parents=True, exist_ok=True)
        self.pem, self.jwks = make_rsa_key(directory)
        self.iss = iss

    def yaml(self, audiences=AUDIENCE):
        """This issuer as an identity.issuers entry (4-space indented);
        audiences: the YAML list's items."""
        return (f"    - issuer: {self.iss}\n      audiences: [{audiences}]\n"
                f"      jwks_file: {self.jwks}\n")

    def mint(self, sub, groups=(), ttl=600, aud=AUDIENCE):
        args = ["token", "mint", "--key", str(self.pem), "--kid", "test-key-1", "--sub", sub,
                "--iss", self.iss, "--aud", aud, "--ttl", str(ttl)]
        if groups:
            args += ["--groups", ",".join(groups)]
        r = run_cli(*args)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def sign(self, claims):
        """A token over arbitrary claims (e.g. an exp in the past)."""
        from kafka_env import sign_jwt
        return sign_jwt(self.pem, claims)

    def expired(self, sub, groups=()):
        now = int(time.time())
        return self.sign({"iss": self.iss, "aud": AUDIENCE, "sub": sub, "groups": list(groups),
                          "iat": now - 900, "exp": now - 300, "jti": uuid.uuid4().hex})


def rule(name, subjects, resources, verbs, effect="allow"):
    return (f"    - name: {name}\n      subjects: {json.dumps(list(subjects))}\n"
            f"      resources: {json.dumps(list(resources))}\n"
            f"      verbs: {json.dumps(list(verbs))}\n      effect: {effect}\n")


def busgate_config(tmp_path, issuer, rules, *, default="deny", mode="enforce", heartbeat=None,
                   rabbit_port=None, vhost="/", extra_amqp="", extra="", more_issuers=()):
    """Returns (yaml_text, ports) for busgate's AMQP listener in front of the
    test broker. rules: text from rule(). ports: listen, admin, audit (the
    JSON-lines audit file path)."""
    listen, admin = free_port(), free_port()
    audit = tmp_path / "audit.jsonl"
    hb = f"  heartbeat: {heartbeat}\n" if heartbeat is not None else ""
    text = f"""
workers: 2
identity:
  issuers:
{issuer.yaml()}{"".join(i.yaml() for i in more_issuers)}amqp:
  listen: 127.0.0.1:{listen}
  upstream:
    host: 127.0.0.1:{rabbit_port or RABBIT_PORT}
    vhost: "{vhost}"
    username: {UPSTREAM_USER}
    password: {UPSTREAM_PASSWORD}
{hb}{extra_amqp}policy:
  default: {default}
  mode: {mode}
  rules:
{rules}
audit:
  file: {audit}
admin:
  listen: 127.0.0.1:{admin}
{extra}"""
    return text, {"listen": listen, "admin": admin, "audit": audit}


def start_gateway(start_busgate, tmp_path, rules):
    """busgate in front of the test broker with rules (a fresh issuer):
    (busgate, ports, issuer), for the suites' gateway fixtures."""
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(tmp_path, issuer, rules)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    return bg, ports, issuer


def audit_down_gateway(start_busgate, tmp_path, rules):
    """start_gateway's busgate whose audit pipeline cannot record events
    (block mode, the only sink failing: the audit file is /dev/full, no
    spool). It admits until its first event fails to be written:
    wait_not_admitting(ports) waits for that."""
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(tmp_path, issuer, rules)
    text = text.replace(f"  file: {ports['audit']}\n", "  file: /dev/full\n")
    assert "file: /dev/full" in text
    bg = start_busgate(text, wait_for_port=ports["listen"])
    return bg, ports, issuer


def wait_not_admitting(ports, timeout=15.0):
    """True once busgate's /readyz says 503 naming the audit pipeline;
    False after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = http_get(f"http://127.0.0.1:{ports['admin']}/readyz")
        if status == 503 and "audit" in body:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def connect(port, token, *, user="svc", heartbeat=None, vhost="/", blocked_timeout=None,
            attempts=1, **params):
    """A pika BlockingConnection to busgate on 127.0.0.1:port with the token
    as the PLAIN password."""
    import pika
    kw = dict(host="127.0.0.1", port=port, virtual_host=vhost,
              credentials=pika.PlainCredentials(user, token), socket_timeout=10,
              connection_attempts=attempts, retry_delay=0.5, blocked_connection_timeout=blocked_timeout,
              stack_timeout=20)
    if heartbeat is not None:
        kw["heartbeat"] = heartbeat
    kw.update(params)
    return pika.BlockingConnection(pika.ConnectionParameters(**kw))


def get_one(conn, ch, queue, tries=100):
    """basic.get (auto-ack) on ch until a message arrives, at most `tries`
    times 50 ms apart, servicing conn meanwhile: the body, or None."""
    for _ in range(tries):
        m = ch.basic_get(queue, auto_ack=True)
        if m[0]:
            return m[2]
        conn.sleep(0.05)
    return None


def direct(port=None, **params):
    """A pika connection straight to the test broker (setup and checks)."""
    import pika
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=port or RABBIT_PORT,
        credentials=pika.PlainCredentials(UPSTREAM_USER, UPSTREAM_PASSWORD),
        socket_timeout=10, **params))


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class PrivateRabbit:
    """A RabbitMQ node of its own (scripts/rabbitmq-up.sh on another port),
    for tests that stop and restart the broker under busgate without
    disturbing the shared one."""

    PORTS = 14  # its AMQP port and the 13 after it (tests/infra/rabbitmq/env.sh)

    def __init__(self, port=None):
        self.port = port or free_port_block(self.PORTS)
        self.env = dict(os.environ, BG_RABBIT_PORT=str(self.port))

    def _run(self, script, *args, timeout=120):
        r = subprocess.run([str(ROOT / "scripts" / script), *args], env=self.env,
                           capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"{script} failed:\n{r.stderr[-2000:]}"

    def up(self):
        self._run("rabbitmq-up.sh")

    def down(self, keep_data=False):
        self._run("rabbitmq-down.sh", *(["--keep-data"] if keep_data else []))


def api_name(event):
    """The method name of an audit event ("basic.publish"), or None."""
    a = event.get("api")
    return a.get("name") if isinstance(a, dict) else a
