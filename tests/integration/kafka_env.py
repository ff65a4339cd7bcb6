"""Kafka-side helpers for the integration suites: tokens from the test OIDC
provider, busgate configurations in front of the real test broker, and
confluent-kafka clients pointed at busgate.

Services (started by tests/integration/run.sh, see docs/testing.md):
  Kafka SASL_PLAINTEXT  127.0.0.1:$BG_KAFKA_SASL_PORT (39093), user busgate
  Kafka PLAINTEXT       127.0.0.1:$BG_KAFKA_PLAIN_PORT (39092), setup only
  OIDC provider         http://127.0.0.1:$BG_OIDC_PORT (39400)
"""
import base64
import json
import os
import urllib.parse
import urllib.request
import uuid

from conftest import free_port

KAFKA_SASL = f"127.0.0.1:{os.environ.get('BG_KAFKA_SASL_PORT', '39093')}"
KAFKA_PLAIN = f"127.0.0.1:{os.environ.get('BG_KAFKA_PLAIN_PORT', '39092')}"
OIDC = f"http://127.0.0.1:{os.environ.get('BG_OIDC_PORT', '39400')}"
UPSTREAM_USER = "busgate"
UPSTREAM_PASSWORD = "busgate-test-password"


def oidc_token(client_id):
    """A client-credentials access token (a JWT) for client_id."""
    data = urllib.parse.urlencode({"grant_type": "client_credentials"}).encode()
    req = urllib.request.Request(OIDC + "/token", data=data)
    basic = base64.b64encode(f"{client_id}:{client_id}-secret".encode()).decode()
    req.add_header("Authorization", "Basic " + basic)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())["access_token"]


def claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def busgate_config(tmp_path, rules, *, default="deny", mode="enforce", mechanism="SCRAM-SHA-512",
                   upstream=None, security="sasl_plaintext", extra_issuers="", extra=""):
    """Returns (yaml_text, ports) for busgate in front of the test broker.

    ports: dict with listen, base (broker_port_base), admin; audit: the
    JSON-lines audit file path."""
    listen, admin = free_port(), free_port()
    base = free_port_block()
    upstream = upstream or [KAFKA_SASL]
    sasl = ""
    if security.startswith("sasl"):
        sasl = (f"    sasl: {{mechanism: {mechanism}, username: {UPSTREAM_USER}, "
                f"password: {UPSTREAM_PASSWORD}}}\n")
    audit = tmp_path / "audit.jsonl"
    text = f"""
identity:
  issuers:
    - issuer: {OIDC}
      audiences: [busgate]
      jwks_url: {OIDC}/jwks
{extra_issuers}
kafka:
  listen: 127.0.0.1:{listen}
  broker_port_base: {base}
  upstream:
    bootstrap: [{", ".join(upstream)}]
    security: {security}
{sasl}policy:
  default: {default}
  mode: {mode}
  rules:
{rules}
audit:
  file: {audit}
admin:
  listen: 127.0.0.1:{admin}
{extra}"""
    return text, {"listen": listen, "base": base, "admin": admin, "audit": audit}


def free_port_block(size=64):
    """A base port B such that B+1..B+size are free now (best effort)."""
    import socket
    for _ in range(50):
        base = free_port()
        if base + size > 65000:
            continue
        ok = True
        for p in range(base + 1, base + size):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port block")


def client_conf(bootstrap, token=None, mechanism="PLAIN", **extra):
    """confluent-kafka settings for a client going through busgate with a
    token as the PLAIN password (or OAUTHBEARER via oauth_cb)."""
    conf = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mechanism, "socket.timeout.ms": 10000,
            "message.timeout.ms": 15000, "metadata.max.age.ms": 5000}
    if mechanism == "PLAIN":
        conf["sasl.username"] = "ignored"
        conf["sasl.password"] = token
    conf.update(extra)
    return conf


def audit_events(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]
