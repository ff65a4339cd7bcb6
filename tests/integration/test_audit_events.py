"""Every kind of audit event a real workload makes, for Kafka and for AMQP,
checked against audit/audit-event.schema.json and for the fields each kind
must carry: session_start (principal, peer, client), decision (API, and
its version for Kafka, resources, verb, decision, result), session_end (bytes and
records, duration as latency_us), auth_failure (reason and peer, no
principal), reload (detail). Approval and admin events need approvals,
which this build does not have."""
import json
import re
import signal
from pathlib import Path

import pika.exceptions as pex
from jsonschema import Draft202012Validator
from confluent_kafka import Producer

import amqp_env
from audit_env import raw_session
from conftest import run_cli
from kafka_env import (KafkaWire, audit_events, busgate_config, client_conf, metadata_v1_topics,
                       oidc_token, unique, wait_audit, wait_until)

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "audit" / "audit-event.schema.json").read_text())

KAFKA_RULES = """    - name: orders-write
      subjects: [group:orders]
      resources: ["kafka:topic:it-ev-*"]
      verbs: [write, describe, create]
      effect: allow
"""


VALIDATOR = Draft202012Validator(SCHEMA)


def check(value):
    """Every way the event breaks audit/audit-event.schema.json, by a full
    JSON Schema (Draft 2020-12) validator; an empty list when it conforms."""
    return [f"{'.'.join(map(str, e.absolute_path)) or '$'}: {e.message}"
            for e in VALIDATOR.iter_errors(value)]


def test_the_schema_is_a_valid_draft_2020_12_schema():
    """The schema file itself is valid (a broken one would let every event
    pass), and it refuses what the events must never be."""
    Draft202012Validator.check_schema(SCHEMA)
    good = {"event_id": "0b6a3f1e-5c2d-4e8f-9a1b-2c3d4e5f6a7b", "kind": "reload", "time_ms": 1, "detail": "reloaded"}
    assert check(good) == [] and check({k: v for k, v in good.items() if k != "detail"}) == []
    assert check(dict(good, event_id="e1")), "an event id that is no UUID v4 passed"
    assert check(dict(good, time_ms="1")), "a string time_ms passed"
    assert check(dict(good, kind="sideways")), "an unknown kind passed"
    assert check(dict(good, surplus=1)), "an unknown field passed"
    assert check({k: v for k, v in good.items() if k != "event_id"}), "no event_id passed"


def fields_of(e):
    """Problems with the fields the event's kind must carry."""
    k, out = e["kind"], []

    def need(cond, what):
        if not cond:
            out.append(f"{k} {e['event_id']}: {what}")

    need(check(e) == [], f"schema: {check(e)}")
    need(isinstance(e.get("instance"), str) and e["instance"], "instance")
    if k != "reload":
        need(e.get("protocol") in ("kafka", "amqp") and e.get("session_id"), "protocol/session")
        need(re.match(r"^127\.0\.0\.1:\d+$", e.get("peer", "")), "peer")
        need(isinstance(e.get("seq"), int), "seq")
    if k in ("session_start", "decision", "session_end"):
        p = e.get("principal", {})
        need(p.get("sub") and p.get("issuer") and p.get("token_id"), "principal")
    if k == "decision":
        api = e.get("api", {})  # AMQP methods have no version of their own
        need(api.get("name") and ("version" in api or e["protocol"] == "amqp"), "api")
        need(e.get("resources") and e.get("verb"), "resources/verb")
        need(e.get("decision", {}).get("effect") in ("allow", "deny"), "decision")
        need("error_code" in e.get("result", {}), "result")
    if k == "session_start":  # the client says its software, both protocols
        c = e.get("client", {})
        need(c.get("software_name") and c.get("software_version"), "client software")
    if k == "session_end":
        r = e.get("result", {})
        need(r.get("bytes_in", 0) > 0 and "bytes_out" in r and "records" in r, "bytes/records")
        need(r.get("latency_us", -1) >= 0, "duration")
    if k == "auth_failure":
        need(e.get("auth_failure_reason") and "principal" not in e, "reason, no principal")
    if k == "reload":
        need(e.get("detail", "").startswith("reloaded"), "detail")
    return out


def kinds(events):
    return {e["kind"] for e in events}


def test_kafka_event_kinds(start_busgate, tmp_path):
    text, ports = busgate_config(tmp_path, KAFKA_RULES, mechanism="PLAIN")
    bg = start_busgate(text, wait_for_port=ports["listen"])
    token = oidc_token("svc-orders")
    p = Producer(client_conf(f"127.0.0.1:{ports['listen']}", token))
    errs = []
    for topic in (unique("it-ev"), "payments"):
        p.produce(topic, value=b"v", on_delivery=lambda e, m: errs.append(e))
        p.flush(30)
    del p
    assert errs[0] is None and errs[1] is not None  # one allowed, one denied
    assert raw_session(ports["listen"], "not-a-token") not in (None, 0)
    bg.signal(signal.SIGHUP)
    want = {"session_start", "decision", "session_end", "auth_failure", "reload"}
    assert wait_until(lambda: want <= kinds(audit_events(ports["audit"])), timeout=20), \
        kinds(audit_events(ports["audit"]))
    events = audit_events(ports["audit"])
    assert {e["decision"]["effect"] for e in events if e["kind"] == "decision"} == {"allow", "deny"}
    assert [p for e in events for p in fields_of(e)] == []
    # The Produce decision counts the one record sent (the denied topic never
    # gets that far: its Metadata is refused first).
    produced = [e for e in events if e["kind"] == "decision" and e["api"]["name"] == "Produce"]
    assert [(e["decision"]["effect"], e["result"]["records"]) for e in produced] == \
        [("allow", 1)], produced


def test_kafka_huge_names_split_into_parts(start_busgate, tmp_path):
    """A Metadata request whose first three topic names are huge (32000
    bytes each, control bytes that take six bytes of JSON apiece: more than
    one record can hold) is recorded whole: its decision is written as parts, each within
    a record and valid against the schema, with the same seq and decision,
    part/parts right, and every name once and in order, the ordinary topic
    behind the huge ones included (before, only the first name was kept)."""
    text, ports = busgate_config(tmp_path, KAFKA_RULES, mechanism="PLAIN")
    start_busgate(text, wait_for_port=ports["listen"])
    huge = ["\x01" * 31999 + c for c in "abc"]
    names = huge + [unique("it-denied")]  # denied too: the same decision as the huge ones
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    try:
        assert w.metadata_v1(names) is not None
    finally:
        w.close()

    def metadata_parts():
        got = [e for e in audit_events(ports["audit"])
               if e["kind"] == "decision" and e["api"]["name"] == "Metadata" and "parts" in e]
        return got if got and len(got) == got[0]["parts"] else None
    parts = wait_until(metadata_parts, timeout=20)
    assert parts, [e.get("api") for e in audit_events(ports["audit"])]
    lines = [ln for ln in open(ports["audit"], encoding="utf-8") if '"parts":' in ln]
    assert all(len(ln.encode()) - 1 < 512 * 1024 for ln in lines)
    assert [p for e in parts for p in fields_of(e)] == []
    assert len(parts) >= 2
    assert [e["part"] for e in parts] == list(range(1, len(parts) + 1))
    assert len({e["event_id"] for e in parts}) == len(parts)
    common = [{k: v for k, v in e.items() if k not in ("event_id", "part", "resources")}
              for e in parts]
    assert all(c == common[0] for c in common), common
    assert [r["name"] for e in parts for r in e["resources"]] == names
    assert "detail" not in parts[0]


def test_kafka_metadata_too_large_to_audit_is_refused(start_busgate, tmp_path):
    """A Metadata naming more than an audit event records (60 names of
    32767 control bytes: about 11.8 MB of audit JSON for 2 MB of request)
    is refused by busgate: every topic POLICY_VIOLATION (44), and one
    decision event of one record, by busgate, naming some of the names and
    saying why. Before, it was forwarded and recorded as about 30 parts."""
    text, ports = busgate_config(tmp_path, KAFKA_RULES, mechanism="PLAIN")
    start_busgate(text, wait_for_port=ports["listen"])
    names = ["\x01" * 32762 + "%05d" % i for i in range(60)]
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    try:
        body = w.metadata_v1(names)
    finally:
        w.close()
    assert body is not None
    topics = metadata_v1_topics(body)
    assert [e for e, _ in topics] == [44] * 60

    def metadata_events():
        got = [e for e in audit_events(ports["audit"])
               if e["kind"] == "decision" and e["api"]["name"] == "Metadata"]
        return got or None
    evs = wait_until(metadata_events, timeout=20)
    assert evs and len(evs) == 1, evs and [e.get("parts") for e in evs]
    ev = evs[0]
    assert "parts" not in ev
    assert ev["decision"]["by"] == "busgate" and ev["decision"]["effect"] == "deny"
    assert ev["result"]["error_code"] == 44
    assert ev["detail"].startswith("request names 60 resources (")
    assert ev["detail"].endswith("more than busgate records (8 MiB): refused")
    assert 0 < len(ev["resources"]) < 60
    assert [r["name"] for r in ev["resources"]] == names[:len(ev["resources"])]
    assert fields_of(ev) == []


AUDIT_OVER_ENFORCED_RULES = """    - name: hold-describe
      subjects: [group:orders]
      resources: ["kafka:topic:it-held-*"]
      verbs: [describe]
      effect: hold
      approvers: [group:sre]
    - name: allow-describe
      subjects: [group:orders]
      resources: ["kafka:topic:it-open-*"]
      verbs: [describe]
      effect: allow
    - name: would-deny
      subjects: [group:orders]
      resources: ["kafka:topic:it-held-*", "kafka:topic:it-open-*"]
      verbs: [describe]
      effect: deny
      mode: audit
    - name: plain-allow
      subjects: [group:orders]
      resources: ["kafka:topic:it-plain-*"]
      verbs: [describe]
      effect: allow
"""


def line_of(text, rule):
    """The 1-based line of the config text that starts rule's entry."""
    return text.splitlines().index(f"    - name: {rule}") + 1


def test_kafka_audit_rule_names_the_enforced_rule(start_busgate, tmp_path):
    """An audit-mode deny reported over an enforced rule: the event says
    which rule's effect was applied (decision.enforced) besides the audit
    rule, for an enforced hold (refused: no approvals in this build) and an
    enforced allow; an enforce-mode decision has no decision.enforced (rule
    is that rule). `busgate audit tail` names both rules, and `busgate
    explain` says the same."""
    text, ports = busgate_config(tmp_path, AUDIT_OVER_ENFORCED_RULES)
    cfg = tmp_path / "busgate.yaml"
    cfg.write_text(text)
    start_busgate(text, wait_for_port=ports["listen"])
    held, open_, plain = unique("it-held"), unique("it-open"), unique("it-plain")
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    try:
        codes = {n: e for e, n in metadata_v1_topics(w.metadata_v1([held, open_, plain]))}
    finally:
        w.close()
    assert codes[held] == 29 and codes[open_] != 29 and codes[plain] != 29, codes
    evs = {}
    for name in (held, open_, plain):
        got = wait_audit(ports["audit"], lambda e, n=name: e["kind"] == "decision"
                         and [r["name"] for r in e.get("resources", [])] == [n])
        assert len(got) == 1, (name, got)
        evs[name] = got[0]
        assert fields_of(got[0]) == []
    # rule_file is the file the rules were loaded from, as for rule
    where = evs[held]["decision"]["rule_file"]

    def enforced(rule):
        return {"rule": rule, "rule_file": where, "rule_line": line_of(text, rule)}
    d = evs[held]["decision"]
    assert d == {"effect": "deny", "would": "deny", "rule": "would-deny", "rule_file": where,
                 "rule_line": line_of(text, "would-deny"), "mode": "audit", "by": "busgate",
                 "enforced": enforced("hold-describe")}, d
    assert evs[held]["detail"] == "hold: no approvals in this build"
    d = evs[open_]["decision"]
    assert d == {"effect": "allow", "would": "deny", "rule": "would-deny", "rule_file": where,
                 "rule_line": line_of(text, "would-deny"), "mode": "audit",
                 "enforced": enforced("allow-describe")}, d
    d = evs[plain]["decision"]
    assert d == {"effect": "allow", "would": "allow", "rule": "plain-allow", "rule_file": where,
                 "rule_line": line_of(text, "plain-allow"), "mode": "enforce"}, d

    r = run_cli("audit", "tail", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    line = [ln for ln in r.stdout.splitlines() if f"kafka:topic:{held} ->" in ln]
    assert len(line) == 1, r.stdout
    assert (f"-> deny [audit mode, would deny] (audit rule 'would-deny' {where}:"
            f"{line_of(text, 'would-deny')}; enforced by 'hold-describe' {where}:"
            f"{line_of(text, 'hold-describe')})") in line[0], line[0]
    line = [ln for ln in r.stdout.splitlines() if f"kafka:topic:{plain} ->" in ln]
    assert len(line) == 1 and f"-> allow (rule 'plain-allow' {where}:" in line[0], r.stdout

    r = run_cli("explain", "-c", str(cfg), "--sub", "svc-orders", "--groups", "orders",
                "--resource", f"kafka:topic:{held}", "--verb", "describe", "--json")
    assert r.returncode == 0, r.stderr
    x = json.loads(r.stdout)
    assert (x["rule"]["name"], x["enforced_rule"]["name"], x["would"], x["mode"]) == \
        ("would-deny", "hold-describe", "deny", "audit"), x
    assert x["refused_by_build"], x


def test_amqp_event_kinds(start_busgate, tmp_path):
    issuer = amqp_env.Issuer(tmp_path / "keys")
    rules = amqp_env.rule("it-all", ["group:apps"], ["amqp:queue:it.*", "amqp:exchange:it.*"],
                          ["read", "write", "create", "delete", "describe"])
    rules += amqp_env.rule("default-exchange", ["group:apps"], ["amqp:exchange:amq.default"],
                           ["write"])
    text, ports = amqp_env.busgate_config(tmp_path, issuer, rules)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    q = unique("it.ev")
    conn = amqp_env.connect(ports["listen"], issuer.mint("alice", ["apps"]))
    ch = conn.channel()
    ch.queue_declare(q, auto_delete=True)
    ch.basic_publish("", q, b"m")
    assert amqp_env.get_one(conn, ch, q) == b"m"
    try:
        conn.channel().queue_declare(unique("other.q"))  # not in the policy: 403
        raise AssertionError("declare of a denied queue was not refused")
    except pex.ChannelClosedByBroker as e:
        assert e.reply_code == 403
    conn.close()
    try:
        amqp_env.connect(ports["listen"], "not-a-token").close()
        raise AssertionError("a bad token was accepted")
    except pex.AMQPConnectionError:
        pass
    bg.signal(signal.SIGHUP)
    want = {"session_start", "decision", "session_end", "auth_failure", "reload"}
    assert wait_until(lambda: want <= kinds(amqp_env.audit_events(ports["audit"])), timeout=20), \
        kinds(amqp_env.audit_events(ports["audit"]))
    events = amqp_env.audit_events(ports["audit"])
    assert {e["decision"]["effect"] for e in events if e["kind"] == "decision"} == {"allow", "deny"}
    assert [p for e in events for p in fields_of(e)] == []
    published = [e for e in events
                 if e["kind"] == "decision" and e["api"]["name"] == "basic.publish"]
    assert [e["result"]["records"] for e in published] == [1], published


TWO_ENFORCED_RULES = """    - name: allow-a
      subjects: [group:orders]
      resources: ["kafka:topic:it-ga-*"]
      verbs: [describe]
      effect: allow
    - name: allow-b
      subjects: [group:orders]
      resources: ["kafka:topic:it-gb-*"]
      verbs: [describe]
      effect: allow
    - name: would-deny
      subjects: [group:orders]
      resources: ["kafka:topic:it-ga-*", "kafka:topic:it-gb-*"]
      verbs: [describe]
      effect: deny
      mode: audit
"""


def test_each_resource_keeps_its_enforced_rule(start_busgate, tmp_path):
    """One Metadata naming two topics that one audit-mode rule covers and two
    enforce-mode rules allow: the resources of a Kafka request share an
    event only when their decision is the same, `enforced` included, so each
    topic's event names the rule applied to it (before, both topics were in
    one event naming the first topic's rule)."""
    text, ports = busgate_config(tmp_path, TWO_ENFORCED_RULES)
    start_busgate(text, wait_for_port=ports["listen"])
    a, b = unique("it-ga"), unique("it-gb")
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    try:
        metadata_v1_topics(w.metadata_v1([a, b]))
    finally:
        w.close()
    got = wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                     and any(r["name"] in (a, b) for r in e.get("resources", [])))
    per_topic = {}
    for e in got:
        for r in e["resources"]:
            per_topic[r["name"]] = e["decision"].get("enforced", {}).get("rule")
    assert per_topic == {a: "allow-a", b: "allow-b"}, [
        ([r["name"] for r in e["resources"]], e["decision"]) for e in got]
