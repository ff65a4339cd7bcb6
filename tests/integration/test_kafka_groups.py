"""Consumer groups through busgate in front of the real broker: join,
consume, commit, and a new member resuming from the committed offset; a
denied group surfaces GROUP_AUTHORIZATION_FAILED."""
import time

from confluent_kafka import Consumer, KafkaError, Producer

from kafka_env import (ERR_GROUP_AUTHZ, KafkaWire, audit_events, busgate_config, client_conf,
                       cstr, oidc_token, scrape, unique, uvarint, wait_audit, wait_until)

RULES = """    - name: orders-topics
      subjects: [group:orders]
      resources: ["kafka:topic:it-orders-*"]
      verbs: [write, describe, create, read]
      effect: allow
    - name: orders-groups
      subjects: [group:orders]
      resources: ["kafka:group:it-*"]
      verbs: [read, describe]
      effect: allow
"""


def group_consumer(boot, token, group, **extra):
    conf = {"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False,
            "session.timeout.ms": 6000}
    conf.update(extra)
    return Consumer(client_conf(boot, token, **conf))


def poll_values(c, want, timeout=30.0):
    """Messages (value, offset) until `want` arrived or timeout passed."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        assert not m.error() or m.error().code() == KafkaError._PARTITION_EOF, str(m.error())
        if not m.error():
            got.append((m.value(), m.offset()))
    return got


def test_group_commit_and_resume(start_busgate, tmp_path):
    text, ports = busgate_config(tmp_path, RULES)
    start_busgate(text, wait_for_port=ports["listen"])
    boot = f"127.0.0.1:{ports['listen']}"
    token = oidc_token("svc-orders")
    topic, group = unique("it-orders"), unique("it-g")

    p = Producer(client_conf(boot, token))
    for i in range(10):
        p.produce(topic, value=f"v{i}".encode(), partition=0)
    assert p.flush(30) == 0

    c = group_consumer(boot, token, group)
    c.subscribe([topic])
    first = poll_values(c, 6)
    assert [v for v, _ in first] == [f"v{i}".encode() for i in range(6)]
    # Commit after the sixth message: the next member starts at offset 6.
    committed = c.commit(offsets=None, asynchronous=False)
    assert committed and committed[0].offset == first[-1][1] + 1 and committed[0].error is None
    c.close()

    c2 = group_consumer(boot, token, group)
    c2.subscribe([topic])
    rest = poll_values(c2, 4)
    # One extra poll window: nothing already committed comes again.
    extra = poll_values(c2, 1, timeout=2.0)
    c2.close()
    assert [v for v, _ in rest] == [f"v{i}".encode() for i in range(6, 10)]
    assert rest[0][1] == committed[0].offset
    assert extra == []

    want = {"FindCoordinator", "JoinGroup", "SyncGroup", "OffsetCommit", "OffsetFetch"}

    def apis():
        return {e["api"]["name"] for e in audit_events(ports["audit"])
                if e["kind"] == "decision" and e["decision"]["effect"] == "allow"
                and any(r["name"] == group for r in e["resources"])}
    assert wait_until(lambda: want <= apis()), apis()


def test_group_denied(start_busgate, tmp_path):
    text, ports = busgate_config(tmp_path, RULES)
    start_busgate(text, wait_for_port=ports["listen"])
    boot = f"127.0.0.1:{ports['listen']}"
    token = oidc_token("svc-orders")
    topic, group = unique("it-orders"), unique("other-g")
    p = Producer(client_conf(boot, token))
    p.produce(topic, value=b"x")
    assert p.flush(30) == 0

    errors = []
    c = group_consumer(boot, token, group, error_cb=errors.append)
    c.subscribe([topic])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(
            e.code() == KafkaError.GROUP_AUTHORIZATION_FAILED for e in errors):
        m = c.poll(0.5)
        if m is not None and m.error():
            errors.append(m.error())
        assert m is None or m.error(), "consumed as a member of a denied group"
    c.close()
    assert any(e.code() == KafkaError.GROUP_AUTHORIZATION_FAILED for e in errors), \
        [str(e) for e in errors]
    denied = wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                        and e["decision"]["effect"] == "deny"
                        and any(r["type"] == "kafka:group" and r["name"] == group
                                for r in e["resources"]))
    assert denied and all(e["result"]["error_code"] == ERR_GROUP_AUTHZ for e in denied), denied


def test_offset_fetch_naming_a_group_twice_is_audited(start_busgate, tmp_path):
    """OffsetFetch v8 naming one group twice is refused by closing the
    connection before any decision is recorded (the response could not be
    filtered per entry); that refusal still leaves one deny event, with the
    reason, and counts as a denied decision."""
    text, ports = busgate_config(tmp_path, RULES)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    group = unique("it-g")
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    entry = cstr(group) + uvarint(0) + uvarint(0)  # all topics (null), no tags
    body = uvarint(3) + entry + entry + b"\x00" + uvarint(0)  # require_stable, no tags
    assert w.call_flex(9, 8, body) is None, "answered"
    w.close()
    found = wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                       and e["api"]["name"] == "OffsetFetch")
    assert len(found) == 1, audit_events(ports["audit"])
    e = found[0]
    assert e["api"]["version"] == 8
    assert e["decision"]["effect"] == "deny", e
    assert "a group named twice in one OffsetFetch" in e.get("detail", ""), e
    assert bg.wait_log(lambda l: "a group named twice" in l.get("msg", ""))
    assert scrape(ports["admin"], "busgate_decisions_total",
                  {"protocol": "kafka", "effect": "deny"}) == 1
