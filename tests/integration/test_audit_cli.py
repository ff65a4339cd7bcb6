"""busgate audit tail / replay over a real Kafka workload: the audit file
written by busgate is read back as one line per event and as a session
timeline in order."""
import io
import json
import os
import select
import signal
import struct
import subprocess
import time

import fastavro
import pytest
from confluent_kafka import KafkaError, Producer

from audit_env import ROOT, topic_values

from conftest import busgate_bin, free_port, run_cli
from keys import make_rsa_key
from kafka_env import (KAFKA_PLAIN, audit_events, busgate_config, claims, client_conf, crc32c,
                       kafka_topics, oidc_token, unique, wait_audit)

RULES = """    - name: orders-write
      subjects: [group:orders]
      resources: ["kafka:topic:it-aud-*"]
      verbs: [write, describe, create]
      effect: allow
"""


def _workload(tmp_path, start_busgate):
    text, ports = busgate_config(tmp_path, RULES)
    cfg = tmp_path / "busgate.yaml"
    start_busgate(text, wait_for_port=ports["listen"])
    token = oidc_token("svc-orders")
    boot = f"127.0.0.1:{ports['listen']}"
    p = Producer(client_conf(boot, token))
    res = {}
    topic = unique("it-aud")
    for i in range(5):
        p.produce(topic, value=b"v%d" % i,
                  on_delivery=lambda e, m: res.setdefault(m.topic(), []).append(e))
    assert p.flush(30) == 0
    p.produce("payments", value=b"x",
              on_delivery=lambda e, m: res.setdefault(m.topic(), []).append(e))
    p.flush(30)
    assert [str(e) for e in res[topic]] == ["None"] * 5
    assert res["payments"][0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    del p  # closes its connections: session_end events
    ends = wait_audit(ports["audit"], lambda e: e["kind"] == "session_end", timeout=20)
    assert ends
    return cfg, ports, claims(token)["sub"]


def test_replay_and_tail(start_busgate, tmp_path):
    cfg, ports, sub = _workload(tmp_path, start_busgate)
    # the session where "payments" was denied (at Metadata: the client then
    # fails the message without producing), once it has ended
    # (the client saw the refusal before busgate's audit thread wrote it down:
    # wait for the event rather than read the file once)
    deny = wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                      and e["decision"]["effect"] == "deny", timeout=20)
    assert deny
    sid = deny[0]["session_id"]
    ended = wait_audit(ports["audit"], lambda e: e["kind"] == "session_end"
                       and e["session_id"] == sid, timeout=20)
    assert ended
    mine = [e for e in audit_events(ports["audit"]) if e.get("session_id") == sid]

    r = run_cli("audit", "replay", "-c", str(cfg), sid)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"session {sid} (kafka,")
    body = lines[1:]
    assert len(body) == len(mine)
    # in seq order, whatever order the file has
    seqs = [int(l.split(" #")[1].split()[0]) for l in body]
    assert seqs == sorted(e["seq"] for e in mine)
    start = next(i for i, l in enumerate(body) if "authenticated as " + sub in l)
    assert "connected from 127.0.0.1:" in body[start]
    assert "issuer http://127.0.0.1:" in body[start]
    produce = [i for i, l in enumerate(body) if " Produce v" in l]
    assert produce and all(start < i for i in produce)
    assert all(" record(s) " in body[i] for i in produce), [body[i] for i in produce]
    denied = [l for l in body if "kafka:topic:payments -> deny" in l]
    assert denied and "TOPIC_AUTHORIZATION_FAILED" in denied[0]
    assert body[-1].split(" ", 2)[2].startswith("ended: ")
    assert "request(s)" in body[-1]

    # --json: the same events and nothing else, one JSON object per line in
    # seq order, so the output goes straight to jq (the timeline's header
    # line came first before)
    r = run_cli("audit", "replay", "-c", str(cfg), "--json", sid)
    assert r.returncode == 0, r.stderr
    got = [json.loads(l) for l in r.stdout.splitlines()]
    assert [e["seq"] for e in got] == sorted(e["seq"] for e in mine)
    assert {e["event_id"] for e in got} == {e["event_id"] for e in mine}

    # tail --sub filters, --json prints the raw events, each once
    r = run_cli("audit", "tail", "-c", str(cfg), "--sub", sub, "--json")
    assert r.returncode == 0, r.stderr
    got = [json.loads(l) for l in r.stdout.splitlines()]
    want = {e["event_id"] for e in audit_events(ports["audit"])
            if e.get("principal", {}).get("sub") == sub}
    assert got and {e["event_id"] for e in got} == want
    assert len(got) == len(want)
    assert all(e["principal"]["sub"] == sub for e in got)

    r = run_cli("audit", "tail", "-c", str(cfg), "--sub", "nobody-" + unique("x"))
    assert r.returncode == 0 and r.stdout == ""

    # readable lines: time, protocol, short session, #seq, sub, kind, body
    r = run_cli("audit", "tail", "-c", str(cfg), "--session", sid)
    assert r.returncode == 0, r.stderr
    tl = r.stdout.splitlines()
    assert len(tl) == len(mine)
    assert all(l.split()[1] == "kafka" and l.split()[2] == sid[:8] for l in tl)
    assert any(f" {sub} decision Produce v" in l and "-> allow (rule 'orders-write' " in l
               for l in tl)
    assert any(f" {sub} decision Metadata v" in l and "payments -> deny (default) 29 " in l
               for l in tl)


def without_nulls(value):
    """The event with its null values and empty arrays left out (the Avro
    form has every field, null or empty where the JSON form omits it)."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None and v != []}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def test_replay_unknown_session_fails(start_busgate, tmp_path):
    text, ports = busgate_config(tmp_path, RULES)
    cfg = tmp_path / "busgate.yaml"
    cfg.write_text(text)
    (tmp_path / "audit.jsonl").write_text("")
    r = run_cli("audit", "replay", "-c", str(cfg), "no-such-session")
    assert r.returncode == 1
    assert "no events" in r.stderr


def test_tail_reads_an_avro_topic(kafka_topics, start_busgate, tmp_path):
    """audit.format: avro in the Confluent wire format: `busgate audit tail`
    reads the topic's Avro messages back as the same events the JSON file
    copy holds."""
    from kafka_env import with_audit_topic
    topic = kafka_topics(unique("busgate.audit-avro"))
    text, ports = busgate_config(tmp_path, RULES, mechanism="PLAIN")
    text = with_audit_topic(text, topic).replace(
        f"  kafka_topic: {topic}\n", f"  kafka_topic: {topic}\n  format: avro\n  avro_schema_id: 9\n")
    assert "format: avro" in text
    cfg = tmp_path / "busgate.yaml"
    start_busgate(text, wait_for_port=ports["listen"])
    token = oidc_token("svc-orders")
    p = Producer(client_conf(f"127.0.0.1:{ports['listen']}", token))
    p.produce(unique("it-aud"), value=b"v")
    assert p.flush(30) == 0
    del p
    assert wait_audit(ports["audit"], lambda e: e["kind"] == "session_end", timeout=20)
    sub = claims(token)["sub"]

    def mine():
        return {e["event_id"]: e for e in audit_events(ports["audit"])
                if e.get("principal", {}).get("sub") == sub}

    def tail():
        r = run_cli("audit", "tail", "-c", str(cfg), "--from", "kafka", "--sub", sub, "--json")
        assert r.returncode == 0, r.stderr
        assert "malformed" not in r.stderr, r.stderr
        return [json.loads(l) for l in r.stdout.splitlines()]

    from kafka_env import wait_until
    # The topic catches up with the file copy (both are written by the same
    # audit thread, the topic through Kafka's acknowledgements).
    got = wait_until(lambda: (lambda g: g if {e["event_id"] for e in g} == set(mine()) else None)(
        tail()), timeout=30)
    assert got, "the Avro topic did not give back the file's events"
    want = mine()
    for e in got:  # same fields and values as the JSON copy
        assert e == want[e["event_id"]], (e, want[e["event_id"]])

    # A second, independent Avro implementation (fastavro, not avro-c)
    # reads every message on the topic with audit/busgate-audit.avsc: the
    # Confluent header names schema id 9, and each record carries the same
    # values as the JSON copy of the event (absent fields are null there).
    schema = fastavro.parse_schema(json.loads((ROOT / "audit" / "busgate-audit.avsc").read_text()))
    values = topic_values(int(KAFKA_PLAIN.rsplit(":", 1)[1]), topic)
    assert values
    everything = {e["event_id"]: e for e in audit_events(ports["audit"])}
    for v in values:
        assert v[0] == 0 and struct.unpack(">I", v[1:5])[0] == 9, v[:5]
        body = io.BytesIO(v[5:])
        rec = fastavro.schemaless_reader(body, schema)
        assert body.read() == b"", "bytes left after the record"
        assert rec["event_id"] in everything, rec
        assert without_nulls(rec) == without_nulls(everything[rec["event_id"]]), rec


def test_replay_refuses_an_ambiguous_prefix(tmp_path):
    """A session-id prefix that matches two sessions is refused, naming
    both, instead of merging them into one timeline; the full id works."""
    text, ports = busgate_config(tmp_path, RULES)
    cfg = tmp_path / "busgate.yaml"
    cfg.write_text(text)
    events = [{"event_id": f"e{i}", "kind": "session_start", "time_ms": 1000 + i,
               "session_id": sid, "seq": 1, "protocol": "kafka", "peer": "127.0.0.1:1"}
              for i, sid in enumerate(("abc1-one", "abc2-two"))]
    (tmp_path / "audit.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    r = run_cli("audit", "replay", "-c", str(cfg), "abc")
    assert r.returncode == 1
    assert "names several sessions" in r.stderr and "abc1-one" in r.stderr \
        and "abc2-two" in r.stderr, r.stderr
    r = run_cli("audit", "replay", "-c", str(cfg), "abc2-two")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("session abc2-two ")


def test_replay_json_prints_only_the_events(tmp_path):
    """`audit replay --json` prints the session's events alone, one JSON
    object per line in seq order, each equal to the event written: no
    header line (before, "session ... (kafka, instance ..., N event(s))"
    came first on stdout and `| jq` failed on it)."""
    text, ports = busgate_config(tmp_path, RULES)
    cfg = tmp_path / "busgate.yaml"
    cfg.write_text(text)
    events = [{"event_id": f"e{seq}", "kind": kind, "time_ms": 1000 + seq, "session_id": "s-json",
               "seq": seq, "protocol": "kafka", "instance": "i1"}
              for seq, kind in ((3, "session_end"), (1, "session_start"), (2, "decision"))]
    other = dict(events[0], event_id="e9", session_id="s-other")
    (tmp_path / "audit.jsonl").write_text("".join(json.dumps(e) + "\n"
                                                  for e in events + [other]))
    r = run_cli("audit", "replay", "--json", "-c", str(cfg), "s-json")
    assert r.returncode == 0, r.stderr
    got = [json.loads(l) for l in r.stdout.splitlines()]
    assert got == sorted(events, key=lambda e: e["seq"]), r.stdout
    # the readable timeline keeps its header
    r = run_cli("audit", "replay", "-c", str(cfg), "s-json")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "session s-json (kafka, instance i1, 3 event(s))", r.stdout


def test_without_c_reads_busgate_config_or_says_what_is_missing(tmp_path):
    """design.md writes -c as optional for `audit tail/replay`: without it
    they read $BUSGATE_CONFIG, else /etc/busgate/busgate.yaml; a default
    that does not exist is named, with -c, and exits 1."""
    text, _ = busgate_config(tmp_path, RULES)
    cfg = tmp_path / "busgate.yaml"
    cfg.write_text(text)
    ev = {"event_id": "e1", "kind": "session_start", "time_ms": 1000, "session_id": "s-env",
          "seq": 1, "protocol": "kafka", "instance": "i1"}
    (tmp_path / "audit.jsonl").write_text(json.dumps(ev) + "\n")
    env = dict(os.environ, BUSGATE_CONFIG=str(cfg))
    r = run_cli("audit", "replay", "--json", "s-env", env=env)
    assert r.returncode == 0, r.stderr
    assert [json.loads(l) for l in r.stdout.splitlines()] == [ev], r.stdout
    r = run_cli("audit", "tail", "--json", env=env)
    assert r.returncode == 0 and json.loads(r.stdout) == ev, (r.stdout, r.stderr)
    # -c wins over the variable
    env["BUSGATE_CONFIG"] = str(tmp_path / "nowhere.yaml")
    r = run_cli("audit", "tail", "--json", "-c", str(cfg), env=env)
    assert r.returncode == 0 and json.loads(r.stdout) == ev, (r.stdout, r.stderr)
    r = run_cli("audit", "tail", env=env)
    assert r.returncode == 1 and r.stdout == "", r.stdout
    assert r.stderr.splitlines()[0] == (
        f"busgate audit: no -c FILE given and BUSGATE_CONFIG={tmp_path / 'nowhere.yaml'}"
        " does not exist"), r.stderr
    if not os.path.exists("/etc/busgate/busgate.yaml"):
        # unset, or set but empty: the default
        for value in (None, ""):
            env.pop("BUSGATE_CONFIG", None)
            if value is not None:
                env["BUSGATE_CONFIG"] = value
            r = run_cli("audit", "replay", "s-env", env=env)
            assert r.returncode == 1, r.stderr
            assert "the default configuration /etc/busgate/busgate.yaml does not exist" \
                " (set BUSGATE_CONFIG or pass -c FILE)" in r.stderr.splitlines()[0], r.stderr


def test_tail_names_who_decided(tmp_path):
    """A decision without a rule reads `(default)` when the policy's default
    decided, and `(busgate)` when busgate decided itself (decision.by; its
    reason is the event's detail): a filtered topic listing under a
    deny-by-default policy must not read as allowed by default, and a
    policy decision with a note (session closed) is still the policy's.
    busgate's own deny over a rule that allows reads `(busgate; the policy
    would allow by rule ...)`: it read `(rule ...)`, as if the rule denied."""
    text, ports = busgate_config(tmp_path, RULES)
    cfg = tmp_path / "busgate.yaml"
    cfg.write_text(text)
    base = {"kind": "decision", "time_ms": 1000, "session_id": "s-who", "protocol": "kafka",
            "verb": "describe", "api": {"name": "Metadata", "version": 12}}
    events = [dict(base, event_id="e1", seq=1,
                   resources=[{"type": "kafka:topic", "name": "*"}],
                   decision={"effect": "allow", "would": "allow", "mode": "enforce",
                             "by": "busgate"},
                   detail="listing: entries the principal may not describe are left out"),
              dict(base, event_id="e2", seq=2,
                   resources=[{"type": "kafka:topic", "name": "payments"}],
                   decision={"effect": "deny", "would": "deny", "mode": "enforce"}),
              # a policy decision with a note (its session closed first)
              dict(base, event_id="e3", seq=3,
                   resources=[{"type": "kafka:topic", "name": "orders"}],
                   decision={"effect": "allow", "would": "allow", "mode": "enforce"},
                   detail="no response: session closed"),
              # busgate's own deny over a rule that allows (a masked read)
              dict(base, event_id="e4", seq=4, protocol="amqp", verb="read",
                   api={"name": "basic.get"},
                   resources=[{"type": "amqp:queue", "name": "invoices"}],
                   decision={"effect": "deny", "would": "allow", "mode": "enforce",
                             "rule": "invoice-workers", "rule_file": "busgate.yaml",
                             "rule_line": 98, "by": "busgate"},
                   result={"error_code": 403, "error_name": "ACCESS_REFUSED", "bytes_in": 20,
                           "records": 0},
                   detail="a mask applies, and this build cannot mask message bodies")]
    (tmp_path / "audit.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    r = run_cli("audit", "tail", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 4, r.stdout
    assert "kafka:topic:* -> allow (busgate)" in lines[0] and "(default)" not in lines[0]
    assert "kafka:topic:payments -> deny (default)" in lines[1]
    assert "kafka:topic:orders -> allow (default)" in lines[2]
    # not "-> deny (rule 'invoice-workers' ...)", which reads as that rule's deny
    assert "amqp:queue:invoices -> deny (busgate; the policy would allow by rule " \
        "'invoice-workers' busgate.yaml:98) 403 ACCESS_REFUSED (a mask applies" in lines[3], lines[3]
    r = run_cli("audit", "replay", "-c", str(cfg), "s-who")
    assert r.returncode == 0, r.stderr
    assert "#4 basic.get read amqp:queue:invoices -> deny (busgate; the policy would allow by " \
        "rule 'invoice-workers' busgate.yaml:98)" in r.stdout, r.stdout


def test_tail_and_replay_show_parts(tmp_path):
    """An event busgate split into parts (too large for one record) reads
    `#seq part k/n` in `tail` and `replay`; replay puts the parts in order
    whatever order they were read in (they share seq and time)."""
    text, ports = busgate_config(tmp_path, RULES)
    cfg = tmp_path / "busgate.yaml"
    cfg.write_text(text)
    base = {"kind": "decision", "time_ms": 1000, "session_id": "s-parts", "protocol": "kafka",
            "seq": 2, "parts": 3, "verb": "read", "api": {"name": "Fetch", "version": 12},
            "decision": {"effect": "allow", "would": "allow", "mode": "enforce"}}
    parts = [dict(base, event_id=f"e{k}", part=k,
                  resources=[{"type": "kafka:topic", "name": f"t{k}"}]) for k in (1, 2, 3)]
    other = [{"event_id": "e0", "kind": "session_start", "time_ms": 900, "session_id": "s-parts",
              "seq": 1, "protocol": "kafka", "peer": "127.0.0.1:1"},
             dict(base, event_id="e9", seq=3, time_ms=1001, resources=[{"type": "kafka:topic",
                                                                       "name": "t9"}])]
    del other[1]["parts"]
    written = [parts[2], other[0], parts[0], other[1], parts[1]]
    (tmp_path / "audit.jsonl").write_text("".join(json.dumps(e) + "\n" for e in written))
    r = run_cli("audit", "tail", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    assert [ln.split(" ", 3)[3] for ln in r.stdout.splitlines()] == [
        "#2 part 3/3 - decision Fetch v12 read kafka:topic:t3 -> allow (default)",
        "#1 - session_start connected from 127.0.0.1:1, authenticated as ",
        "#2 part 1/3 - decision Fetch v12 read kafka:topic:t1 -> allow (default)",
        "#3 - decision Fetch v12 read kafka:topic:t9 -> allow (default)",
        "#2 part 2/3 - decision Fetch v12 read kafka:topic:t2 -> allow (default)"], r.stdout
    r = run_cli("audit", "replay", "-c", str(cfg), "s-parts")
    assert r.returncode == 0, r.stderr
    body = r.stdout.splitlines()[1:]
    assert [ln.split(" ", 1)[1] for ln in body] == [
        "#1 connected from 127.0.0.1:1, authenticated as ",
        "#2 part 1/3 Fetch v12 read kafka:topic:t1 -> allow (default)",
        "#2 part 2/3 Fetch v12 read kafka:topic:t2 -> allow (default)",
        "#2 part 3/3 Fetch v12 read kafka:topic:t3 -> allow (default)",
        "#3 Fetch v12 read kafka:topic:t9 -> allow (default)"], r.stdout
    r = run_cli("audit", "replay", "--json", "-c", str(cfg), "s-parts")
    assert r.returncode == 0, r.stderr
    got = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert [e["event_id"] for e in got] == ["e0", "e1", "e2", "e3", "e9"], r.stdout


def test_tail_shows_control_characters_escaped(tmp_path):
    """Names in events come from clients: `audit tail` and `replay` print
    their control characters (escape sequences, newlines, NUL, C1 controls)
    escaped, so a name cannot erase or forge the lines an operator reads;
    `--json` keeps the event exact."""
    text, ports = busgate_config(tmp_path, RULES)
    cfg = tmp_path / "busgate.yaml"
    cfg.write_text(text)
    evil = "x\x1b[1A\x1b[2K\n2026-01-01T00:00:00.000Z kafka forged\x00\u009b \\x0a"
    ev = {"event_id": "e1", "kind": "decision", "time_ms": 1000, "session_id": "s-evil",
          "seq": 1, "protocol": "kafka", "principal": {"sub": "mallory\r", "groups": ["g\x07"]},
          "resources": [{"type": "kafka:topic", "name": evil}], "verb": "describe",
          "decision": {"effect": "deny", "would": "deny", "mode": "enforce"}}
    (tmp_path / "audit.jsonl").write_text(json.dumps(ev) + "\n")
    for args in (("tail",), ("replay", "s-evil")):
        r = run_cli("audit", *args, "-c", str(cfg))
        assert r.returncode == 0, r.stderr
        out = r.stdout
        assert not any(c in out for c in "\x1b\r\x00\x07\u009b"), repr(out)
        assert "\\x1b[1A" in out and "\\x0a2026" in out and "\\u009b" in out, repr(out)
        assert "\\\\x0a" in out, repr(out)  # a backslash in the data is doubled
        body = [ln for ln in out.splitlines() if "kafka:topic" in ln]
        assert len(body) == 1 and "forged" in body[0], repr(out)
    r = run_cli("audit", "tail", "--json", "-c", str(cfg))
    assert r.returncode == 0 and json.loads(r.stdout) == ev, r.stdout


def _raw_frame(payload):
    """One spool record: [u32 len][u32 crc32c(len bytes + payload)][payload]."""
    n = struct.pack("<I", len(payload))
    return n + struct.pack("<I", crc32c(n + payload)) + payload


def _frame(event):
    """The spool record of event: payload [u16 key len][key = session id]
    [JSON] (see docs/audit.md)."""
    key = event["session_id"].encode()
    return _raw_frame(struct.pack("<H", len(key)) + key + json.dumps(event).encode())


def _spool_setup(tmp_path, n):
    """A configuration whose audit spool is an empty directory, and n
    decision events of session s1 with seq 0..n-1 to write into it."""
    text, _ = busgate_config(tmp_path, RULES)
    spool = tmp_path / "spool"
    spool.mkdir()
    text = text.replace("\naudit:\n", f"\naudit:\n  spool_dir: {spool}\n", 1)
    cfg = tmp_path / "busgate.yaml"
    cfg.write_text(text)
    ev = [{"event_id": f"00000000-0000-4000-8000-00000000000{i}", "kind": "decision",
           "session_id": "s1", "seq": i, "time_ms": 1}
          for i in range(n)]
    return cfg, spool, ev


def test_tail_spool_torn_tail_and_dead_letters(tmp_path):
    """`audit tail --from spool` reads the records after the ack position,
    says of a half-written record at the end of the newest segment that it
    is not whole yet (not "corrupt"), still reports real damage in an older
    segment as corrupt, and then shows the dead-letter file's events."""
    cfg, spool, ev = _spool_setup(tmp_path, 6)
    (spool / "spool-000001.seg").write_bytes(_frame(ev[0]) + b"\x07" * 20 + _frame(ev[1]))
    last = _frame(ev[3])
    (spool / "spool-000002.seg").write_bytes(_frame(ev[2]) + last[:len(last) // 2])
    (spool / "rejected.jsonl").write_text(json.dumps(ev[4]) + "\n")
    r = run_cli("audit", "tail", "-c", str(cfg), "--from", "spool", "--json")
    assert r.returncode == 0, r.stderr
    got = [json.loads(l)["seq"] for l in r.stdout.splitlines()]
    assert got == [0, 1, 2, 4]
    assert "skipped 20 corrupt byte(s) at offset" in r.stderr
    assert f"the last {len(last) // 2} byte(s) of the newest segment are not a whole record" \
        in r.stderr
    assert r.stderr.count("corrupt") == 1


def test_tail_spool_ignores_stray_names(tmp_path):
    """Files beside the segments whose names only look like one (a backup
    copy, a negative or too large number, a segment busgate moved aside as
    unreadable) are not read as segments: before,
    `spool-4294967295.seg.bak` made `audit tail --from spool` loop for ever.
    A far but well-formed segment number does not make it walk every
    number below it. The real segments are still shown."""
    cfg, spool, ev = _spool_setup(tmp_path, 3)
    (spool / "spool-000001.seg").write_bytes(_frame(ev[0]) + _frame(ev[1]))
    (spool / "spool-2000000000.seg").write_bytes(_frame(ev[2]))
    for stray in ("spool-4294967295.seg.bak", "spool--1.seg", "spool-4294967295.seg",
                  "spool-1.seg", "spool-000001.seg.unreadable",
                  "spool-000001.seg.unreadable.1"):
        (spool / stray).write_bytes(b"\x07" * 20)
    r = run_cli("audit", "tail", "-c", str(cfg), "--from", "spool", "--json", timeout=20)
    assert r.returncode == 0, r.stderr
    assert [json.loads(l)["seq"] for l in r.stdout.splitlines()] == [0, 1, 2]
    assert "corrupt" not in r.stderr, r.stderr


def test_unknown_source_is_bad_usage(tmp_path):
    """`--from` names kafka, file or spool: anything else is bad usage
    (exit 2, as docs/audit.md says), not an unreadable source (exit 1,
    which a known source the configuration lacks still gets)."""
    text, ports = busgate_config(tmp_path, RULES)
    cfg = tmp_path / "busgate.yaml"
    cfg.write_text(text)
    r = run_cli("audit", "tail", "-c", str(cfg), "--from", "foo")
    assert r.returncode == 2, r.stderr
    assert "usage" in r.stderr
    assert "--from: expected kafka, file or spool, got 'foo'" in r.stderr, r.stderr
    r = run_cli("audit", "tail", "-c", str(cfg), "--from", "spool")
    assert r.returncode == 1, r.stderr
    assert "--from spool: audit.spool_dir is not set" in r.stderr, r.stderr
    # Every usage error says what was wrong before the usage text.
    r = run_cli("audit", "tail", "-c", str(cfg), "--from=foo")
    assert r.returncode == 2, r.stderr
    assert "--from: expected kafka, file or spool, got 'foo'" in r.stderr, r.stderr
    r = run_cli("audit", "tail", "-c", str(cfg), "--from=spool")
    assert r.returncode == 1, r.stderr
    assert "--from spool: audit.spool_dir is not set" in r.stderr, r.stderr
    for args, why in ((["--bogus"], "unknown option '--bogus'"),
                      (["--sub"], "missing the value of '--sub'"),
                      (["--sub="], "missing the value of '--sub='"),
                      (["--json=yes"], "unknown option '--json=yes'"),
                      (["--bogus=1"], "unknown option '--bogus=1'")):
        r = run_cli("audit", "tail", "-c", str(cfg), *args)
        assert r.returncode == 2 and why in r.stderr.splitlines()[0], r.stderr
    r = run_cli("audit", "replay", "-c", str(cfg))
    assert r.returncode == 2 and "name the SESSION" in r.stderr, r.stderr
    # a replay is the whole session: no --sub to leave events of it out
    for extra in (["--sub", "a"], ["--follow"]):
        r = run_cli("audit", "replay", "-c", str(cfg), "s1", *extra)
        assert r.returncode == 2 and "replay takes neither --follow nor --sub" in r.stderr, \
            (extra, r.stderr)


def test_tail_spool_damage_not_taken_for_a_torn_append(tmp_path):
    """Megabytes of damage at the end of the newest segment are reported as
    corrupt, not as "not a whole record yet" (a torn append is at most one
    record), and scanning them is cheap: a 2 MiB run of bytes that read as a
    960 KiB length at every fourth offset took minutes of CPU before (the
    work bound itself is checked by the unit test test_resync_work_bounded;
    the timeout here only keeps a regression from hanging the suite)."""
    cfg, spool, ev = _spool_setup(tmp_path, 3)
    junk = b"\x00\x00\x0f\x00" * (1 << 19)
    (spool / "spool-000001.seg").write_bytes(_frame(ev[0]) + junk + _frame(ev[1]) + _frame(ev[2]))
    (spool / "spool-000002.seg").write_bytes(_frame(ev[0]) + junk)
    r = run_cli("audit", "tail", "-c", str(cfg), "--from", "spool", "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    assert [json.loads(l)["seq"] for l in r.stdout.splitlines()] == [0, 1, 2]
    assert f"skipped {len(junk)} corrupt byte(s) at offset" in r.stderr, r.stderr
    assert r.stderr.count("corrupt") == 2 and "not a whole record" not in r.stderr, r.stderr


def test_tail_spool_unreadable_segment_fails(tmp_path):
    """A segment that cannot be read (here a directory named like one) is
    reported and makes the command exit 1 (it was skipped in silence, exit
    0); the segments around it are still shown."""
    cfg, spool, ev = _spool_setup(tmp_path, 2)
    (spool / "spool-000001.seg").write_bytes(_frame(ev[0]))
    (spool / "spool-000002.seg").mkdir()
    (spool / "spool-000003.seg").write_bytes(_frame(ev[1]))
    r = run_cli("audit", "tail", "-c", str(cfg), "--from", "spool", "--json")
    assert r.returncode == 1, r.stderr
    assert [json.loads(l)["seq"] for l in r.stdout.splitlines()] == [0, 1]
    assert "spool-000002.seg: not a regular file" in r.stderr, r.stderr


def test_tail_default_sources_fail_on_a_missing_spool(tmp_path):
    """With the default sources (here the file, then the spool), a spool
    directory that cannot be read makes `audit tail` exit 1, after the
    file's events (it exited 0). busgate creates the directory when it
    starts, so a missing one is a wrong path, not an empty spool; an empty
    directory is fine."""
    cfg, spool, ev = _spool_setup(tmp_path, 1)
    (tmp_path / "audit.jsonl").write_text(json.dumps(ev[0]) + "\n")
    r = run_cli("audit", "tail", "-c", str(cfg), "--json")
    assert r.returncode == 0, r.stderr
    assert [json.loads(l)["seq"] for l in r.stdout.splitlines()] == [0]
    spool.rmdir()
    r = run_cli("audit", "tail", "-c", str(cfg), "--json")
    assert r.returncode == 1, r.stderr
    assert [json.loads(l)["seq"] for l in r.stdout.splitlines()] == [0]
    assert f"spool {spool}: No such file or directory" in r.stderr, r.stderr


def _read_lines_until(proc, want, timeout=20.0):
    """Lines of proc's stdout (binary pipe) until want of them, or timeout."""
    got, buf = [], b""
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if not ready:
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        got += [json.loads(l) for l in lines if l]
    return got


def _audit_topic_setup(tmp_path, prefix):
    """A fresh one-partition audit topic named from prefix, a configuration
    file naming it, and a producer to write events into it by hand.
    Returns (admin client, topic, configuration path, producer)."""
    from confluent_kafka.admin import NewTopic
    from audit_env import admin
    from kafka_env import with_audit_topic
    topic = unique(prefix)
    a = admin(int(KAFKA_PLAIN.rsplit(":", 1)[1]))
    a.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    # PLAIN: librdkafka 2.0 (Debian's) cannot do SCRAM against Kafka 4.x
    text, _ = busgate_config(tmp_path, RULES, mechanism="PLAIN")
    cfg = tmp_path / "busgate.yaml"
    cfg.write_text(with_audit_topic(text, topic))
    return a, topic, cfg, Producer({"bootstrap.servers": KAFKA_PLAIN})


def _tail_follow(tmp_path, cfg, source):
    """`busgate audit tail --from SOURCE --follow --json` on cfg, its stderr
    to a file. Returns the process and said(): its stderr so far."""
    err = open(tmp_path / "tail.err", "w+")
    proc = subprocess.Popen([busgate_bin(), "audit", "tail", "-c", str(cfg), "--from", source,
                             "--follow", "--json"], stdout=subprocess.PIPE, stderr=err)

    def said():
        err.seek(0)
        return err.read()
    return proc, said


def test_tail_follow_file_truncated_or_replaced(tmp_path):
    """`audit tail --follow` of the file goes on after a copy-truncate
    rotation (it waited past the new end for ever) and after another file
    takes the path, reading each from its start and saying so on stderr."""
    cfg, spool, ev = _spool_setup(tmp_path, 1)
    log = tmp_path / "audit.jsonl"
    evs = [dict(ev[0], event_id=f"00000000-0000-4000-8000-0000000001{i:02}", seq=i)
           for i in range(4)]
    log.write_text("".join(json.dumps(e) + "\n" for e in evs[:2]))
    p, said = _tail_follow(tmp_path, cfg, "file")
    try:
        assert [e["seq"] for e in _read_lines_until(p, 2)] == [0, 1]
        log.write_text(json.dumps(evs[2]) + "\n")  # truncated, then one shorter line
        assert [e["seq"] for e in _read_lines_until(p, 1)] == [2]
        log.rename(tmp_path / "audit.jsonl.1")
        log.write_text(json.dumps(evs[3]) + "\n")
        assert [e["seq"] for e in _read_lines_until(p, 1)] == [3]
    finally:
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=10)
    text = said()
    assert rc == 0, text
    # once each: a file that did not change is not taken for a truncated one
    # (its size equal to what was read is no truncation)
    assert text.count(f"{log} was truncated; reading it again from its start") == 1, text
    assert text.count(f"{log} was replaced; reading the new file from its start") == 1, text


@pytest.mark.single_build
def test_tail_unreachable_topic_says_why_without_librdkafka_lines(tmp_path):
    """An audit topic whose brokers do not answer: `audit tail` gives up
    after the 10 s it waits for the topic's partitions (exit 1) with one
    line of its own that carries librdkafka's reason, as docs/audit.md
    says. Before, librdkafka's own log lines (%3|...|FAIL|...) came first
    on stderr and busgate's message named no cause."""
    _, jwks = make_rsa_key(tmp_path)
    dead = free_port()  # nothing listens there
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
identity:
  issuers:
    - issuer: busgate-dev
      audiences: [busgate]
      jwks_file: {jwks}
kafka:
  listen: 127.0.0.1:{free_port()}
  upstream:
    bootstrap: [127.0.0.1:{dead}]
policy:
  default: deny
audit:
  kafka_topic: busgate-audit
""")
    t0 = time.monotonic()
    r = run_cli("audit", "tail", "-c", str(cfg), "--from", "kafka", timeout=30)
    took = time.monotonic() - t0
    lines = r.stderr.splitlines()
    assert r.returncode == 1 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    assert not [l for l in lines if l.startswith("%")], r.stderr
    assert lines and lines[0].startswith(
        "busgate audit: topic busgate-audit: Local: Broker transport failure (librdkafka: "), r.stderr
    assert f"127.0.0.1:{dead}" in lines[0] and "Connection refused" in lines[0], r.stderr
    # It waited for the partitions (the claim), not given up at once; the
    # upper bound is run_cli's timeout.
    assert took >= 9, took


def test_tail_follow_topic_reads_partitions_added_later(tmp_path):
    """`audit tail --follow` of the topic reads partitions added to it while
    it runs (busgate keys events by session, so new sessions land on them):
    it assigned the partitions once at its start and never saw the events
    on the new ones."""
    from confluent_kafka.admin import NewPartitions
    a, topic, cfg, p = _audit_topic_setup(tmp_path, "busgate.audit-grow")

    def put(partition, seq):
        # the producer's metadata must know the partition (it may be new)
        from kafka_env import wait_until
        assert wait_until(lambda: partition in p.list_topics(topic, timeout=10).topics[topic].partitions,
                          timeout=30)
        ev = {"event_id": f"00000000-0000-4000-8000-{seq:012d}", "seq": seq, "kind": "decision",
              "time": "2026-11-28T00:00:00.000Z", "instance": "it", "session_id": "s-grow"}
        p.produce(topic, json.dumps(ev).encode(), partition=partition)
        assert p.flush(30) == 0

    tail, said = _tail_follow(tmp_path, cfg, "kafka")

    try:
        put(0, 1)
        assert [e["seq"] for e in _read_lines_until(tail, 1, timeout=30)] == [1], said()
        a.create_partitions([NewPartitions(topic, 3)])[topic].result(30)
        put(2, 2)
        put(1, 3)
        got = _read_lines_until(tail, 2, timeout=40)
        assert sorted(e["seq"] for e in got) == [2, 3], (got, said())
    finally:
        tail.send_signal(signal.SIGINT)
        rc = tail.wait(timeout=15)
        a.delete_topics([topic])[topic].result(30)
    assert rc == 0, said()


def test_session_and_sub_filters_take_whole_names(tmp_path):
    """`--session ID` takes the events of the sessions whose id is ID or
    begins with it, never of one that only shares all but its last
    character; `--sub S` takes exactly the principal S, not one whose name
    begins with S (alice-admin is not alice). So neither `tail` nor `replay`
    attributes another session's or another principal's events to the one
    asked for."""
    text, _ = busgate_config(tmp_path, RULES)
    cfg = tmp_path / "busgate.yaml"
    cfg.write_text(text)
    events = [{"event_id": f"e{i}", "kind": "session_start", "time_ms": 1000 + i,
               "session_id": sid, "seq": 1, "protocol": "kafka", "principal": {"sub": sub}}
              for i, (sid, sub) in enumerate((("s-a1", "alice"), ("s-a2", "alice-admin"),
                                              ("s-b", "alic")))]
    (tmp_path / "audit.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))

    def tail(*args):
        r = run_cli("audit", "tail", "-c", str(cfg), "--json", *args)
        assert r.returncode == 0, r.stderr
        return [json.loads(ln)["event_id"] for ln in r.stdout.splitlines()]

    assert tail("--session", "s-a1") == ["e0"]
    assert tail("--session", "s-a") == ["e0", "e1"]  # a prefix names both
    assert tail("--sub", "alice") == ["e0"]
    assert tail("--sub", "alic") == ["e2"]
    # --NAME=VALUE is the same option, as in the commands parsed by getopt
    assert tail("--session=s-a1") == ["e0"]
    assert tail("--sub=alic", "--from=file") == ["e2"]
    r = run_cli("audit", "replay", "-c", str(cfg), "--json", "s-a1")
    assert r.returncode == 0, r.stderr
    assert [json.loads(ln)["event_id"] for ln in r.stdout.splitlines()] == ["e0"], r.stdout
    r = run_cli("audit", "replay", f"--config={cfg}", "--json", "--session=s-a2")
    assert r.returncode == 0, r.stderr
    assert [json.loads(ln)["event_id"] for ln in r.stdout.splitlines()] == ["e1"], r.stdout


def test_an_event_in_the_file_and_the_spool_is_shown_once(tmp_path):
    """An event delivered to the file and still in the spool (at-least-once:
    its ack position was not written before a crash) is shown once by
    `tail`, and `replay` counts it once in its timeline; an event of the
    spool alone is still shown."""
    cfg, spool, ev = _spool_setup(tmp_path, 3)
    (tmp_path / "audit.jsonl").write_text("".join(json.dumps(e) + "\n" for e in ev[:2]))
    (spool / "spool-000001.seg").write_bytes(_frame(ev[1]) + _frame(ev[2]) + _frame(ev[1]))
    r = run_cli("audit", "tail", "-c", str(cfg), "--json")
    assert r.returncode == 0, r.stderr
    assert [json.loads(ln)["seq"] for ln in r.stdout.splitlines()] == [0, 1, 2], r.stdout
    r = run_cli("audit", "replay", "-c", str(cfg), "s1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].endswith(" 3 event(s))") and len(lines) == 4, r.stdout


def test_tail_file_last_line_without_newline_is_not_an_event_yet(tmp_path):
    """Without --follow, a last line of the file without its newline is an
    event busgate is still writing: not shown, and not reported as a
    malformed event (taking it as a line cut its last byte)."""
    cfg, spool, ev = _spool_setup(tmp_path, 2)
    (tmp_path / "audit.jsonl").write_text(json.dumps(ev[0]) + "\n" + json.dumps(ev[1]) + " ")
    r = run_cli("audit", "tail", "-c", str(cfg), "--from", "file", "--json")
    assert r.returncode == 0, r.stderr
    assert [json.loads(ln)["seq"] for ln in r.stdout.splitlines()] == [0], r.stdout
    assert r.stderr == "", r.stderr


def test_from_file_reads_the_file_alone(tmp_path):
    """`--from file` reads one source: an event waiting in the spool is not
    shown (without --from it is, after the file's)."""
    cfg, spool, ev = _spool_setup(tmp_path, 2)
    (tmp_path / "audit.jsonl").write_text(json.dumps(ev[0]) + "\n")
    (spool / "spool-000001.seg").write_bytes(_frame(ev[1]))
    r = run_cli("audit", "tail", "-c", str(cfg), "--from", "file", "--json")
    assert r.returncode == 0, r.stderr
    assert [json.loads(ln)["seq"] for ln in r.stdout.splitlines()] == [0], r.stdout
    r = run_cli("audit", "tail", "-c", str(cfg), "--json")
    assert r.returncode == 0, r.stderr
    assert [json.loads(ln)["seq"] for ln in r.stdout.splitlines()] == [0, 1], r.stdout


def _ack(spool, seg, off):
    """spool.ack as busgate writes it: SEGNO OFFSET CRC-32C (hex) of the two."""
    pos = b"%010d %020d" % (seg, off)
    (spool / "spool.ack").write_bytes(pos + b" %08x\n" % crc32c(pos))


def test_tail_spool_starts_at_the_ack_position(tmp_path):
    """`--from spool` shows the records from the ack position on (delivered
    ones are not waiting): from an offset inside a segment, from the next
    segment when the position is at a segment's end, with an earlier
    version's CRC-less line too; a CRC-less line past every segment may be
    stale and shows everything."""
    cfg, spool, ev = _spool_setup(tmp_path, 4)
    (spool / "spool-000001.seg").write_bytes(_frame(ev[0]) + _frame(ev[1]))
    (spool / "spool-000002.seg").write_bytes(_frame(ev[2]) + _frame(ev[3]))

    def seqs():
        r = run_cli("audit", "tail", "-c", str(cfg), "--from", "spool", "--json")
        assert r.returncode == 0, r.stderr
        return [json.loads(ln)["seq"] for ln in r.stdout.splitlines()]

    assert seqs() == [0, 1, 2, 3]
    _ack(spool, 2, len(_frame(ev[2])))
    assert seqs() == [3]
    _ack(spool, 1, len(_frame(ev[0]) + _frame(ev[1])))
    assert seqs() == [2, 3]
    (spool / "spool.ack").write_text(f"2 {len(_frame(ev[2]))}\n")
    assert seqs() == [3]
    (spool / "spool.ack").write_text("3 0\n")
    assert seqs() == [0, 1, 2, 3]


def test_tail_spool_cut_record_not_at_the_newest_end_is_corrupt(tmp_path):
    """A record cut short is "not a whole record yet" only at the end of the
    newest segment (busgate may be appending it). At the end of an older
    segment (a crash, then a new segment) and inside the newest one (records
    follow it) it is damage, reported as corrupt at its offset."""
    cfg, spool, ev = _spool_setup(tmp_path, 5)
    f = [_frame(e) for e in ev]
    cut1, cut3 = f[1][:len(f[1]) // 2], f[3][:len(f[3]) // 2]
    (spool / "spool-000001.seg").write_bytes(f[0] + cut1)
    (spool / "spool-000002.seg").write_bytes(f[2] + cut3 + f[4])
    r = run_cli("audit", "tail", "-c", str(cfg), "--from", "spool", "--json")
    assert r.returncode == 0, r.stderr
    assert [json.loads(ln)["seq"] for ln in r.stdout.splitlines()] == [0, 2, 4], r.stdout
    assert r.stderr.splitlines() == [
        "busgate audit: spool: spool-000001.seg: "
        f"skipped {len(cut1)} corrupt byte(s) at offset {len(f[0])}",
        "busgate audit: spool: spool-000002.seg: "
        f"skipped {len(cut3)} corrupt byte(s) at offset {len(f[2])}"], \
        r.stderr


def test_tail_spool_says_where_in_the_segment_and_what_it_skipped(tmp_path):
    """Past an ack position inside a segment, damage is reported at its
    offset in the segment (it was the offset after the ack position, so
    the bytes shown there were another record's), and a record whose CRC
    holds but that carries no event (its key reaches its end) is reported
    as skipped rather than dropped unsaid."""
    cfg, spool, ev = _spool_setup(tmp_path, 3)
    f0, f1, f2 = (_frame(e) for e in ev)
    junk = b"\x07" * 20
    key_past = _raw_frame(struct.pack("<H", 300) + b"s1{}")  # a key longer than the record
    key_only = _raw_frame(struct.pack("<H", 2) + b"s1")  # a key and no event
    (spool / "spool-000001.seg").write_bytes(f0 + f1 + junk + f2 + key_past + key_only)
    _ack(spool, 1, len(f0))
    r = run_cli("audit", "tail", "-c", str(cfg), "--from", "spool", "--json")
    assert r.returncode == 0, r.stderr
    assert [json.loads(ln)["seq"] for ln in r.stdout.splitlines()] == [1, 2], r.stdout
    at = len(f0 + f1)
    assert r.stderr.splitlines() == [
        f"busgate audit: spool: spool-000001.seg: skipped 20 corrupt byte(s) at offset {at}",
        "busgate audit: spool: spool-000001.seg: skipped a record without an event at offset "
        f"{at + 20 + len(f2)}",
        "busgate audit: spool: spool-000001.seg: skipped a record without an event at offset "
        f"{at + 20 + len(f2) + len(key_past)}"], r.stderr

def test_tail_escapes_every_control_character_alone(tmp_path):
    """Each byte bg_cli_visible escapes is escaped also when it is the only
    one in a value (the escape decision is made per value): a backslash
    (else a name "x\\x1b" would read as an escaped ESC), DEL, 0x1f, and the
    first and last C1 controls U+0080 and U+009F."""
    text, ports = busgate_config(tmp_path, RULES)
    cfg = tmp_path / "busgate.yaml"
    cfg.write_text(text)
    names = ["bs\\x1b", "del\x7f", "us\x1f", "pad\u0080", "apc\u009f", "plain ~"]
    ev = {"event_id": "e1", "kind": "decision", "time_ms": 1000, "session_id": "s-one",
          "seq": 1, "protocol": "kafka", "verb": "describe",
          "resources": [{"type": "kafka:topic", "name": n} for n in names],
          "decision": {"effect": "deny", "would": "deny", "mode": "enforce"}}
    (tmp_path / "audit.jsonl").write_text(json.dumps(ev) + "\n")
    r = run_cli("audit", "tail", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    assert ("kafka:topic:bs\\\\x1b,kafka:topic:del\\x7f,kafka:topic:us\\x1f,"
            "kafka:topic:pad\\u0080,kafka:topic:apc\\u009f,kafka:topic:plain ~ ->") in r.stdout, \
        repr(r.stdout)


def test_tail_follow_topic_goes_on_past_a_quiet_spell(tmp_path):
    """`audit tail --follow` of the topic waits for events however long the
    topic is quiet: the 15 s after which `tail` without --follow gives up
    on a silent topic do not apply (a quiet night must not end an
    auditor's follow). The topic is quiet for 17 s here."""
    a, topic, cfg, p = _audit_topic_setup(tmp_path, "busgate.audit-quiet")

    def put(seq):
        ev = {"event_id": f"00000000-0000-4000-8000-{seq:012d}", "seq": seq, "kind": "decision",
              "time_ms": 1000 + seq, "instance": "it", "session_id": "s-quiet"}
        p.produce(topic, json.dumps(ev).encode(), partition=0)
        assert p.flush(30) == 0

    tail, said = _tail_follow(tmp_path, cfg, "kafka")

    try:
        put(1)
        assert [e["seq"] for e in _read_lines_until(tail, 1, timeout=30)] == [1], said()
        time.sleep(17)
        assert tail.poll() is None, said()
        put(2)
        assert [e["seq"] for e in _read_lines_until(tail, 1, timeout=30)] == [2], said()
    finally:
        tail.send_signal(signal.SIGINT)
        rc = tail.wait(timeout=15)
        a.delete_topics([topic])[topic].result(30)
    assert rc == 0, said()
