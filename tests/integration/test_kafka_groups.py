"""Consumer groups through busgate in front of the real broker: join,
consume, commit, and a new member resuming from the committed offset; a
denied group surfaces GROUP_AUTHORIZATION_FAILED; a classic JoinGroup's
consumer subscription needs describe on every topic it names."""
import struct
import time

from confluent_kafka import Consumer, KafkaError, Producer

from kafka_env import (ERR_GROUP_AUTHZ, ERR_TOPIC_AUTHZ, KAFKA_PLAIN, KafkaWire, audit_events,
                       busgate_config, client_conf, create_topics, cstr, kbytes, kstr, oidc_token,
                       scrape, unique, uvarint, wait_audit, wait_until)

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


def test_group_requests_refused_with_kafkas_code(start_busgate, tmp_path):
    """Raw requests as KafkaApis refuses them: SyncGroup, Heartbeat and
    LeaveGroup without read on the group, OffsetDelete without delete on it
    (read and describe are not enough) get GROUP_AUTHORIZATION_FAILED, and
    the connection stays open."""
    text, ports = busgate_config(tmp_path, RULES)
    start_busgate(text, wait_for_port=ports["listen"])
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    try:
        denied, readable = unique("other-g"), unique("it-g")
        member = struct.pack(">i", 1) + kstr("m") + kstr(None)  # generation, member, instance
        assert w.call_error(14, 3, kstr(denied) + member + struct.pack(">i", 0)) \
            == ERR_GROUP_AUTHZ  # SyncGroup v3, no assignments
        assert w.call_error(12, 3, kstr(denied) + member) == ERR_GROUP_AUTHZ  # Heartbeat v3
        assert w.call_error(13, 2, kstr(denied) + kstr("m")) == ERR_GROUP_AUTHZ  # LeaveGroup v2
        # OffsetDelete v0: group, [topic, [partition]]; the error code leads the response.
        for group in (denied, readable):
            body = kstr(group) + struct.pack(">i", 1) + kstr(unique("it-orders")) \
                + struct.pack(">ii", 1, 0)
            assert w.call_error(47, 0, body, at=0) == ERR_GROUP_AUTHZ, group
    finally:
        w.close()


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
    # busgate's refusal of a request it cannot take, as for an unreadable body
    assert (e["decision"].get("by"), e["result"].get("error_code"),
            e["result"].get("error_name")) == ("busgate", 42, "INVALID_REQUEST"), e
    assert bg.wait_log(lambda l: "a group named twice" in l.get("msg", ""))
    assert scrape(ports["admin"], "busgate_decisions_total",
                  {"protocol": "kafka", "effect": "deny"}) == 1


# ---- classic JoinGroup with protocol type "consumer" ----

ERR_INCONSISTENT_GROUP_PROTOCOL = 23
ERR_MEMBER_ID_REQUIRED = 79
ERR_REBALANCE_IN_PROGRESS = 27


def subscription(version, topics, owned=()):
    """A ConsumerProtocolSubscription (JoinGroup protocol metadata) at
    version 0-3: topics, null user data, owned partitions [(topic,
    [partitions])] from v1, generation -1 from v2, null rack from v3."""
    out = struct.pack(">hi", version, len(topics)) + b"".join(kstr(t) for t in topics)
    out += struct.pack(">i", -1)
    if version >= 1:
        out += struct.pack(">i", len(owned))
        for topic, parts in owned:
            out += kstr(topic) + struct.pack(">i", len(parts))
            out += b"".join(struct.pack(">i", p) for p in parts)
    if version >= 2:
        out += struct.pack(">i", -1)
    if version >= 3:
        out += kstr(None)
    return out


def join_group(w, group, member, protocols):
    """JoinGroup v5, protocol type "consumer", protocols [(name, metadata)]:
    (error code, generation, member id), or None when the connection closed."""
    body = kstr(group) + struct.pack(">ii", 10000, 10000) + kstr(member) + kstr(None)
    body += kstr("consumer") + struct.pack(">i", len(protocols))
    body += b"".join(kstr(name) + kbytes(meta) for name, meta in protocols)
    r = w.call(11, 5, body)
    if r is None:
        return None
    err, gen = struct.unpack(">hi", r[4:10])
    o = 10
    for _ in range(2):  # protocol name, leader
        o += 2 + max(struct.unpack(">h", r[o:o + 2])[0], 0)
    n = struct.unpack(">h", r[o:o + 2])[0]
    return err, gen, r[o + 2:o + 2 + max(n, 0)].decode()


def sync_group(w, group, gen, member):
    """SyncGroup v3 as a follower: (error code, {topic: [partitions]})."""
    body = kstr(group) + struct.pack(">i", gen) + kstr(member) + kstr(None) + struct.pack(">i", 0)
    r = w.call(14, 3, body)
    assert r is not None, "connection closed on SyncGroup"
    err, n = struct.unpack(">hi", r[4:10])
    a, out = r[10:10 + max(n, 0)], {}
    if len(a) >= 6:  # ConsumerProtocolAssignment: version, [topic, [partition]], user data
        o = 2
        for _ in range(struct.unpack(">i", a[o:o + 4])[0]):
            tl = struct.unpack(">h", a[o + 4:o + 6])[0]
            topic = a[o + 6:o + 6 + tl].decode()
            o += 6 + tl
            np = struct.unpack(">i", a[o:o + 4])[0]
            out[topic] = sorted(struct.unpack(f">{np}i", a[o + 4:o + 4 + 4 * np]))
            o += 4 + 4 * np
    return err, out


def heartbeat(w, group, gen, member):
    """Heartbeat v3: the error code."""
    body = kstr(group) + struct.pack(">i", gen) + kstr(member) + kstr(None)
    r = w.call(12, 3, body)
    assert r is not None, "connection closed on Heartbeat"
    return struct.unpack(">h", r[4:6])[0]


def classic_member_assignment(w, group, protocols, rounds=20):
    """Joins group as a classic member and follows its rebalances (join,
    sync, heartbeat until the broker asks to rejoin) until SyncGroup hands
    it a non-empty assignment, as a classic client would; that assignment,
    or {} after `rounds` joins."""
    member = ""
    for _ in range(rounds):
        r = join_group(w, group, member, protocols)
        assert r is not None, "connection closed on JoinGroup"
        err, gen, member = r
        if err in (ERR_MEMBER_ID_REQUIRED, ERR_REBALANCE_IN_PROGRESS):
            continue
        assert err == 0, r
        err, assignment = sync_group(w, group, gen, member)
        if err == 0 and assignment:
            return assignment
        assert err in (0, ERR_REBALANCE_IN_PROGRESS), err
        for _ in range(50):
            if err == ERR_REBALANCE_IN_PROGRESS:
                break
            time.sleep(0.1)
            err = heartbeat(w, group, gen, member)
            assert err in (0, ERR_REBALANCE_IN_PROGRESS), err
    return {}


def kip848_member(group, topics):
    """A KIP-848 consumer (group.protocol=consumer) straight on the broker,
    holding topics' partitions in group: the group busgate's client joins."""
    c = Consumer({"bootstrap.servers": KAFKA_PLAIN, "group.id": group,
                  "group.protocol": "consumer", "auto.offset.reset": "earliest"})
    c.subscribe(topics)
    assert wait_until(lambda: c.poll(0.2) is None and c.assignment(), timeout=30), \
        "the KIP-848 member got no assignment"
    return c


def join_decisions(audit, topic):
    return [e for e in audit_events(audit) if e["kind"] == "decision"
            and e["api"]["name"] == "JoinGroup"
            and any(r["type"] == "kafka:topic" and r["name"] == topic for r in e["resources"])]


def test_classic_join_into_kip848_group_needs_describe_on_its_topics(start_busgate, tmp_path):
    """A classic JoinGroup into a KIP-848 group: the broker (4.x) reads the
    member's ConsumerProtocolSubscription and assigns its topics' partitions
    itself, unchecked. Through busgate a subscription naming a topic the
    principal may not describe (here in the subscribed topics of one
    protocol and the owned partitions of another) is refused with
    TOPIC_AUTHORIZATION_FAILED and never reaches the broker, audited naming
    the topics checked; the member's hidden partitions stay with their
    owner. The same member subscribing to allowed topics only joins, and is
    assigned the allowed topic's partitions."""
    text, ports = busgate_config(tmp_path, RULES)
    start_busgate(text, wait_for_port=ports["listen"])
    allowed, hidden, group = unique("it-orders"), unique("it-hidden"), unique("it-g")
    create_topics([allowed, hidden], partitions=2)
    owner = kip848_member(group, [hidden])
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    try:
        r = join_group(w, group, "", [("range", subscription(0, [allowed, hidden])),
                                      ("cooperative-sticky",
                                       subscription(3, [allowed], owned=[(hidden, [0])]))])
        assert r is not None and r[0] == ERR_TOPIC_AUTHZ, r
        denied = wait_audit(ports["audit"], lambda e: e in join_decisions(ports["audit"], hidden))
        assert denied and all(e["decision"]["effect"] == "deny" and e["verb"] == "describe"
                              and e["result"]["error_code"] == ERR_TOPIC_AUTHZ
                              for e in denied), denied
        ok = join_decisions(ports["audit"], allowed)
        assert ok and all(e["decision"]["effect"] == "allow" for e in ok), ok

        assignment = classic_member_assignment(w, group, [("range", subscription(3, [allowed]))])
        assert assignment == {allowed: [0, 1]}, assignment
        assert all(tp.topic == hidden for tp in owner.assignment())
        assert len(owner.assignment()) == 2
    finally:
        w.close()
        owner.close()


def test_classic_consumer_joins_with_its_describable_topics(start_busgate, tmp_path):
    """A real classic consumer (librdkafka) subscribed to an allowed and a
    hidden topic: Metadata hides the second, so librdkafka leaves it out of
    its JoinGroup subscription, which busgate reads and checks topic by
    topic (audited); the consumer joins and consumes the allowed topic."""
    text, ports = busgate_config(tmp_path, RULES)
    start_busgate(text, wait_for_port=ports["listen"])
    boot = f"127.0.0.1:{ports['listen']}"
    token = oidc_token("svc-orders")
    allowed, hidden, group = unique("it-orders"), unique("it-hidden"), unique("it-g")
    create_topics([hidden])
    p = Producer(client_conf(boot, token))
    for i in range(3):
        p.produce(allowed, value=f"v{i}".encode(), partition=0)
    assert p.flush(30) == 0

    errors = []
    c = group_consumer(boot, token, group, error_cb=errors.append,
                       **{"partition.assignment.strategy": "cooperative-sticky"})
    c.subscribe([allowed, hidden])
    got, deadline = [], time.monotonic() + 30
    while len(got) < 3 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    assert got == [b"v0", b"v1", b"v2"], (got, [str(e) for e in errors])
    ok = wait_audit(ports["audit"], lambda e: e in join_decisions(ports["audit"], allowed))
    assert ok and all(e["decision"]["effect"] == "allow" and e["verb"] == "describe"
                      for e in ok), ok
    assert not join_decisions(ports["audit"], hidden)
    assert not [e for e in audit_events(ports["audit"]) if e["kind"] == "decision"
                and e["api"]["name"] == "JoinGroup" and e["decision"]["effect"] == "deny"]


def test_classic_join_with_unreadable_subscription_is_refused(start_busgate, tmp_path):
    """Protocol metadata under protocol type "consumer" that is no
    ConsumerProtocolSubscription: busgate cannot tell what a broker would
    read in it, so the join is refused with INCONSISTENT_GROUP_PROTOCOL,
    decided by busgate on the group with the reason; nothing reaches the
    broker (which would have answered MEMBER_ID_REQUIRED)."""
    text, ports = busgate_config(tmp_path, RULES)
    start_busgate(text, wait_for_port=ports["listen"])
    group = unique("it-g")
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    r = join_group(w, group, "", [("range", subscription(0, ["it-orders-x"])[:-1])])
    w.close()
    assert r is not None and r[0] == ERR_INCONSISTENT_GROUP_PROTOCOL, r
    refused = wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                         and e["api"]["name"] == "JoinGroup"
                         and e["result"]["error_code"] == ERR_INCONSISTENT_GROUP_PROTOCOL)
    assert len(refused) == 1, audit_events(ports["audit"])
    e = refused[0]
    assert e["decision"]["effect"] == "deny" and e["decision"].get("by") == "busgate", e
    assert e["resources"] == [{"type": "kafka:group", "name": group}], e
    assert "ConsumerProtocolSubscription: truncated" in e.get("detail", ""), e
