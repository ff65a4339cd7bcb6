"""Interop through busgate: Kafka clients nobody here wrote (the Java
kafka-clients, librdkafka via confluent-kafka, kafka-python) produce,
consume in a group, get denied, administer topics and use transactions
through busgate in front of the real test broker.

Each test starts busgate, runs tests/interop/run-client.sh with a bounded
timeout and asserts on the client's one-line JSON result. The broker lets
every principal do everything (no ACLs, see docs/testing.md), so every
denial asserted here comes from busgate's policy; the audit file confirms it.
The Java program runs several scenarios per JVM (`suite`) to keep the JVM
starts down.
"""
import json
import os
import subprocess

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import ROOT
from kafka_env import (KAFKA_PLAIN, OIDC, audit_events, busgate_config, oidc_token,
                       unique)

RUN_CLIENT = str(ROOT / "tests" / "interop" / "run-client.sh")
TOKEN_URL = OIDC + "/token"
N = 20
# Bounds one client run; the clients bound each of their own waits by
# BG_INTEROP_TIMEOUT_MS. The first Java run may build the jar (Maven).
CLIENT_TIMEOUT_MS = 30000
RUN_TIMEOUT_S = 240

RULES = """    - name: orders-interop-topics
      subjects: [group:orders]
      resources: ["kafka:topic:interop-*"]
      verbs: [write, read, describe, create]
      effect: allow
    - name: orders-interop-groups
      subjects: [group:orders]
      resources: ["kafka:group:interop-*"]
      verbs: [read, describe]
      effect: allow
    - name: orders-interop-txn
      subjects: [group:orders]
      resources: ["kafka:transactional-id:interop-tx-*"]
      verbs: [write, describe]
      effect: allow
"""

# Consumer settings per client library (its own key names); short sessions
# keep group rebalances quick.
CONSUMER_PROPS = {
    "java": "session.timeout.ms=6000\n",
    "rdkafka": "session.timeout.ms=6000\n",
    "kafka-python": "session_timeout_ms=6000\n",
}


def run_client(tmp_path, lang, bootstrap, creds, *scenario, consumer=False):
    """Runs one interop client; returns its parsed JSON result line.
    consumer: pass CONSUMER_PROPS (kafka-python rejects them for a producer)."""
    env = {**os.environ, "BG_INTEROP_TIMEOUT_MS": str(CLIENT_TIMEOUT_MS)}
    env.pop("BG_INTEROP_PROPS_FILE", None)
    if consumer:
        props = tmp_path / f"{lang}.properties"
        props.write_text(CONSUMER_PROPS[lang])
        env["BG_INTEROP_PROPS_FILE"] = str(props)
    p = subprocess.run([RUN_CLIENT, lang, bootstrap, *creds, *scenario], capture_output=True,
                       text=True, timeout=RUN_TIMEOUT_S, env=env)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    assert lines, f"{lang} printed no result (exit {p.returncode}):\n{p.stdout}\n{p.stderr[-4000:]}"
    res = json.loads(lines[-1])
    res["_exit"] = p.returncode
    res["_stderr"] = p.stderr[-4000:]
    return res


def explain(res, bg=None):
    """Assertion message: the client's result and stderr, busgate's log tail."""
    msg = json.dumps({k: v for k, v in res.items() if k != "_stderr"}, indent=1)
    msg += "\n--- client stderr:\n" + res.get("_stderr", "")
    if bg is not None:
        msg += "\n--- busgate log:\n" + bg.log_path.read_text()[-4000:]
    return msg


def oauth_creds(client_id="svc-orders"):
    return ["OAUTHBEARER", TOKEN_URL, client_id, client_id + "-secret"]


def plain_creds(client_id="svc-orders"):
    # busgate ignores the PLAIN username; the password is the token.
    return ["PLAIN", "interop", oidc_token(client_id)]


@pytest.fixture
def gate(start_busgate, tmp_path):
    """busgate with the interop policy; returns (bootstrap, Busgate, ports)."""
    text, ports = busgate_config(tmp_path, RULES)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    return f"127.0.0.1:{ports['listen']}", bg, ports


def denied_in_audit(ports, name, verb):
    """True when busgate's audit file has a deny decision for resource name."""
    for e in audit_events(ports["audit"]):
        if e.get("kind") != "decision" or e.get("verb") != verb:
            continue
        if e["decision"]["effect"] == "deny" and \
                any(r.get("name") == name for r in e.get("resources", [])):
            return True
    return False


def check_values(values, client, n):
    """Sampled record values are the JSON the producing client wrote."""
    assert values, "no values sampled"
    for v in values:
        rec = json.loads(v)
        assert rec["client"] == client and 0 <= rec["seq"] < n


def java_round_trip(tmp_path, bootstrap, bg, ports, creds):
    topic, group, denied = unique("interop-java"), unique("interop-g"), unique("denied")
    res = run_client(tmp_path, "java", bootstrap, creds, "suite",
                     "produce", topic, str(N), "--",
                     "consume-group", topic, group, str(N), "--",
                     "produce-expect-denied", denied, consumer=True)
    assert res["_exit"] == 0 and res["ok"], explain(res, bg)
    produced, consumed, refused = res["steps"]
    assert produced["produced"] == N, explain(res, bg)
    assert consumed["consumed"] >= N and consumed.get("committed") is True, explain(res, bg)
    check_values(consumed["values"], "java", N)
    assert refused["error"] == "TopicAuthorizationException", explain(res, bg)
    assert denied_in_audit(ports, denied, "write") or denied_in_audit(ports, denied, "describe")


def python_round_trip(tmp_path, lang, bootstrap, bg, ports, creds, denied_error):
    topic, group, denied = unique(f"interop-{lang}"), unique("interop-g"), unique("denied")
    prod = run_client(tmp_path, lang, bootstrap, creds, "produce", topic, str(N))
    assert prod["_exit"] == 0 and prod["produced"] == N, explain(prod, bg)
    cons = run_client(tmp_path, lang, bootstrap, creds, "consume-group", topic, group, str(N),
                      consumer=True)
    assert cons["_exit"] == 0 and cons["consumed"] >= N and cons.get("committed"), \
        explain(cons, bg)
    check_values(cons["values"], lang, N)
    den = run_client(tmp_path, lang, bootstrap, creds, "produce-expect-denied", denied)
    assert den["_exit"] == 0 and den["error"] == denied_error, explain(den, bg)
    assert denied_in_audit(ports, denied, "write") or denied_in_audit(ports, denied, "describe")


def test_java_oauthbearer_client_credentials(gate, tmp_path):
    bootstrap, bg, ports = gate
    java_round_trip(tmp_path, bootstrap, bg, ports, oauth_creds())


def test_java_plain_token_password(gate, tmp_path):
    bootstrap, bg, ports = gate
    java_round_trip(tmp_path, bootstrap, bg, ports, plain_creds())


def test_rdkafka_oauthbearer_oidc(gate, tmp_path):
    bootstrap, bg, ports = gate
    python_round_trip(tmp_path, "rdkafka", bootstrap, bg, ports, oauth_creds(),
                      "TOPIC_AUTHORIZATION_FAILED")


def test_rdkafka_plain_token_password(gate, tmp_path):
    bootstrap, bg, ports = gate
    python_round_trip(tmp_path, "rdkafka", bootstrap, bg, ports, plain_creds(),
                      "TOPIC_AUTHORIZATION_FAILED")


def test_kafka_python_plain_token_password(gate, tmp_path):
    bootstrap, bg, ports = gate
    python_round_trip(tmp_path, "kafka-python", bootstrap, bg, ports, plain_creds(),
                      "TopicAuthorizationFailedError")


def test_kafka_python_oauthbearer_token_provider(gate, tmp_path):
    bootstrap, bg, ports = gate
    python_round_trip(tmp_path, "kafka-python", bootstrap, bg, ports, oauth_creds(),
                      "TopicAuthorizationFailedError")


def create_topic_directly(name):
    """Creates a topic on the PLAINTEXT setup listener, bypassing busgate."""
    a = AdminClient({"bootstrap.servers": KAFKA_PLAIN})
    a.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)],
                    request_timeout=15)[name].result(20)


def topic_exists_directly(name):
    a = AdminClient({"bootstrap.servers": KAFKA_PLAIN})
    return name in a.list_topics(timeout=15).topics


def test_java_admin_list_create_delete(gate, tmp_path):
    bootstrap, bg, ports = gate
    hidden, visible = unique("hidden"), unique("interop-visible")
    created, victim = unique("interop-created"), unique("interop-victim")
    for t in (hidden, visible, victim):
        create_topic_directly(t)
    res = run_client(tmp_path, "java", bootstrap, oauth_creds(), "suite",
                     "admin-list-topics", "--",
                     "admin-create-topic", created, "--",
                     "admin-delete-topic-expect-denied", victim)
    assert res["_exit"] == 0 and res["ok"], explain(res, bg)
    listed, create, delete = res["steps"]
    assert visible in listed["topics"] and victim in listed["topics"], explain(res, bg)
    assert hidden not in listed["topics"], explain(res, bg)
    # Only topics the policy lets group:orders describe are visible.
    assert all(t.startswith("interop-") for t in listed["topics"]), explain(res, bg)
    assert create.get("created") is True, explain(res, bg)
    assert delete["error"] == "TopicAuthorizationException", explain(res, bg)
    assert topic_exists_directly(created)
    assert topic_exists_directly(victim), "the denied delete reached the broker"
    assert denied_in_audit(ports, victim, "delete")


def test_java_transactions_by_transactional_id(gate, tmp_path):
    bootstrap, bg, ports = gate
    topic, group = unique("interop-txn"), unique("interop-g")
    allowed, denied = unique("interop-tx"), unique("other-tx")
    res = run_client(tmp_path, "java", bootstrap, oauth_creds(), "suite",
                     "txn-produce", allowed, topic, str(N), "--",
                     "consume-group", topic, group, str(N), "--",
                     "txn-produce-expect-denied", denied, topic, consumer=True)
    assert res["_exit"] == 0 and res["ok"], explain(res, bg)
    txn, consumed, refused = res["steps"]
    assert txn["produced"] == N, explain(res, bg)
    # read_committed: the records are visible only because the commit worked.
    assert consumed["consumed"] >= N, explain(res, bg)
    check_values(consumed["values"], "java", N)
    assert refused["error"] == "TransactionalIdAuthorizationException", explain(res, bg)
    assert denied_in_audit(ports, denied, "describe") or denied_in_audit(ports, denied, "write")
