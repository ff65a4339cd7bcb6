"""The result of an AMQP decision event holds only what busgate measured:
no bytes_out and no latency_us (docs/audit.md: both are Kafka's, since
busgate does not match RabbitMQ's answers to the methods that caused them),
rather than zeros that read as measured; `busgate audit replay` and
`tail` then print no duration for those decisions, while session_end
keeps its bytes_out and duration."""
import re

import pika.exceptions as pex
import pytest

DURATION = re.compile(r" \d+(\.\d)?(us|ms|s)( |$)")  # as replay prints latency_us

from amqp_env import Issuer, busgate_config, connect, rule, unique, wait_audit
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
