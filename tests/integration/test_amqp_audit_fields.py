"""The result of an AMQP decision event holds only what busgate measured:
no bytes_out and no latency_us (docs/audit.md: both are Kafka's, since
busgate does not match RabbitMQ's answers to the methods that caused them),
rather than zeros that read as measured; `busgate audit replay` and
`tail` then print no duration for those decisions, while session_end
keeps its bytes_out and duration. Each decision counts the message a
basic.publish carries and no other; the client's software is pika's name
and version as it sent them; an allowed method has no error code, also
where an audit-mode rule would deny it; a refusal counts as a deny in the
decision metrics too."""
import re

import pika
import pika.exceptions as pex
import pytest

DURATION = re.compile(r" \d+(\.\d)?(us|ms|s)( |$)")  # as replay prints latency_us

from amqp_env import Issuer, busgate_config, connect, rule, start_gateway, unique, wait_audit
from audit_env import scrape
from conftest import run_cli


def test_amqp_decisions_leave_unmeasured_fields_out(start_busgate, tmp_path):
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(
        tmp_path, issuer,
        rule("it", ["group:apps"], ["amqp:queue:it.*", "amqp:exchange:amq.default"],
             ["read", "write", "create", "delete", "describe"]))
    cfg = tmp_path / "busgate.yaml"
    cfg.write_text(text)
    start_busgate(text, wait_for_port=ports["listen"])
    conn = connect(ports["listen"], issuer.mint("alice", ["apps"]))
    ch = conn.channel()
    q = unique("it.fields")
    ch.queue_declare(q, auto_delete=True)
    ch.basic_publish("", q, b"x" * 10)
    with pytest.raises(pex.ChannelClosedByBroker):
        conn.channel().queue_declare("other.q")  # refused: 403
    conn.close()

    ends = wait_audit(ports["audit"], lambda e: e["kind"] == "session_end")
    assert ends
    sid = ends[0]["session_id"]
    decisions = wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                           and e["session_id"] == sid, count=3)
    assert {d["api"]["name"] for d in decisions} >= {"queue.declare", "basic.publish"}, decisions
    assert any(d["result"].get("error_code") == 403 for d in decisions), decisions
    for d in decisions:
        assert "bytes_out" not in d["result"] and "latency_us" not in d["result"], d
        assert d["result"]["bytes_in"] > 0, d
        assert d["result"].get("records", 0) == (d["api"]["name"] == "basic.publish"), d
        # connection.start-ok's client properties: product, then version
        assert (d["client"]["software_name"], d["client"]["software_version"]) == \
            ("Pika Python Client Library", pika.__version__), d["client"]
    # the decision metrics count the refusal as the event does (a deny)
    denies = [d for d in decisions if d["decision"]["effect"] == "deny"]
    assert len(denies) == 1, decisions
    assert scrape(ports["admin"], "busgate_decisions_total",
                  {"protocol": "amqp", "effect": "deny"}) == 1
    # the session's end measured both
    assert ends[0]["result"]["bytes_out"] > 0 and ends[0]["result"]["latency_us"] > 0, ends[0]

    r = run_cli("audit", "replay", "-c", str(cfg), sid)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"session {sid} (amqp,"), lines
    shown = [l for l in lines if " queue.declare " in l or " basic.publish " in l]
    assert len(shown) >= 3, lines
    for line in shown:
        # the code (and its name), no duration after it
        assert not DURATION.search(line), line
        assert "0us" not in line, line
    assert re.search(r"ended: .* request\(s\), \d+(\.\d)?(us|ms|s)", lines[-1]), lines[-1]

    r = run_cli("audit", "tail", "-c", str(cfg), "--session", sid)
    assert r.returncode == 0, r.stderr
    tail = [l for l in r.stdout.splitlines() if " decision " in l]
    assert len(tail) == len(decisions), r.stdout
    assert not any(DURATION.search(l) for l in tail), tail


def test_busgate_limit_refusal_is_recorded_as_its_enforced_deny(start_busgate, tmp_path):
    """A publish the policy allows but busgate itself refuses (a user_id
    property that is not the login's: 406) is recorded as busgate's
    enforced deny: would deny, never "would allow", which would read as the
    policy's verdict overridden. Its one record is counted, as the allowed
    publish's is."""
    import pika
    _, ports, issuer = start_gateway(
        start_busgate, tmp_path,
        rule("it", ["group:apps"], ["amqp:queue:it.*", "amqp:exchange:amq.default"],
             ["read", "write", "create", "delete", "describe"]))
    conn = connect(ports["listen"], issuer.mint("alice", ["apps"]))
    ch = conn.channel()
    q = unique("it.limit")
    ch.queue_declare(q, auto_delete=True)
    ch.confirm_delivery()
    ch.basic_publish("", q, b"ok")
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.basic_publish("", q, b"x", pika.BasicProperties(user_id="someone"))
    assert ei.value.reply_code == 406, ei.value
    conn.close()
    pubs = wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                      and e["api"]["name"] == "basic.publish", count=2)
    refused = [e for e in pubs if e["result"].get("error_code") == 406]
    allowed = [e for e in pubs if e["decision"]["effect"] == "allow"]
    assert len(refused) == 1 and allowed, pubs
    d = refused[0]["decision"]
    assert (d["effect"], d["would"], d["mode"], d.get("by")) == \
        ("deny", "deny", "enforce", "busgate"), d
    # A rule's decision names the rule, not busgate.
    assert all("by" not in e["decision"] and e["decision"].get("rule") for e in allowed), allowed
    assert all(e["result"].get("records") == 1 for e in refused + allowed), pubs


def test_amqp_audit_rule_names_the_enforced_rule(start_busgate, tmp_path):
    """An audit-mode deny over an enforced allow: the declare goes through,
    and its decision event names the audit rule (rule) and the rule that let
    it through (decision.enforced); a declare only the allow matches has no
    decision.enforced (rule is the enforced rule)."""
    issuer = Issuer(tmp_path / "keys")
    rules = rule("it", ["group:apps"], ["amqp:queue:it.*"], ["create", "delete", "describe"])
    rules += rule("would-deny", ["group:apps"], ["amqp:queue:it.watch.*"], ["create"],
                  effect="deny") + "      mode: audit\n"
    text, ports = busgate_config(tmp_path, issuer, rules)
    start_busgate(text, wait_for_port=ports["listen"])
    conn = connect(ports["listen"], issuer.mint("alice", ["apps"]))
    ch = conn.channel()
    watched, plain = unique("it.watch.q"), unique("it.plain")
    ch.queue_declare(watched, auto_delete=True)  # allowed: the deny is audit-mode only
    ch.queue_declare(plain, auto_delete=True)
    conn.close()

    def declared(name):
        got = wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                         and e["api"]["name"] == "queue.declare"
                         and [r["name"] for r in e["resources"]] == [name])
        assert len(got) == 1, (name, got)
        assert got[0]["result"].get("error_code", 0) == 0, got[0]  # allowed: no 403
        return got[0]["decision"]
    lines = text.splitlines()
    line_it, line_deny = lines.index("    - name: it") + 1, lines.index("    - name: would-deny") + 1
    d = declared(watched)
    where = d["rule_file"]
    assert d == {"effect": "allow", "would": "deny", "rule": "would-deny", "rule_file": where,
                 "rule_line": line_deny, "mode": "audit",
                 "enforced": {"rule": "it", "rule_file": where, "rule_line": line_it}}, d
    d = declared(plain)
    assert d == {"effect": "allow", "would": "allow", "rule": "it", "rule_file": where,
                 "rule_line": line_it, "mode": "enforce"}, d
