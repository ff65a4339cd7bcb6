"""Share sessions across connections (KIP-932), with raw ShareFetch requests
through busgate in front of the real test broker.

The broker keys a share session by (group, member) alone and takes an
incremental ShareFetch from any connection whose epoch matches. busgate
lets only the connection that opened the session use it: a principal that
may read the group but not the topic, naming another principal's member
id from its own connection, must get no record of that topic.

The broker lets every principal do everything (no ACLs, docs/testing.md):
every refusal asserted here is busgate's.
"""
import base64
import json
import os
import struct
import time

from confluent_kafka import Producer

from kafka_env import (KAFKA_PLAIN, FlexReader, KafkaWire, audit_events, busgate_config, cstr,
                       create_topics, oidc_token, setup_admin, topic_id, unique, uvarint,
                       wait_audit)

RULES = """    - name: orders-read-share-topics
      subjects: [group:orders]
      resources: ["kafka:topic:share-x-*"]
      verbs: [read, describe]
      effect: allow
    - name: reporting-reads-its-own-topics
      subjects: [group:reporting]
      resources: ["kafka:topic:share-y-*"]
      verbs: [read, describe]
      effect: allow
    - name: both-use-share-groups
      subjects: [group:orders, group:reporting]
      resources: ["kafka:group:share-g-*"]
      verbs: [read, describe]
      effect: allow
"""
SHARE_FETCH = 78
SHARE_GROUP_HEARTBEAT = 76
SHARE_SESSION_NOT_FOUND = 122
INVALID_REQUEST = 42


def member_id():
    """A member id as Kafka's clients make them (a Uuid in URL-safe base64)."""
    return base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()


# The coordinator is still loading, or not there yet: asked again.
COORDINATOR_NOT_READY = (14, 15, 16)
FIND_COORDINATOR = 10


def join(wire, group, member, topic, limit_s=30):
    """ShareGroupHeartbeat v1: member joins group subscribed to topic (the
    broker's share partition needs the group to exist). A FindCoordinator
    first, as clients send it: on a fresh broker it is what makes the
    group coordinator's topic, without which the heartbeat gets
    NOT_COORDINATOR."""
    body = cstr(group) + cstr(member) + struct.pack(">i", 0) + uvarint(0)
    body += uvarint(2) + cstr(topic) + b"\x00"
    deadline = time.monotonic() + limit_s
    while True:
        find = struct.pack(">b", 0) + uvarint(2) + cstr(group) + b"\x00"
        assert wire.call_flex(FIND_COORDINATOR, 4, find) is not None, \
            "connection closed on FindCoordinator"
        rd = wire.call_flex(SHARE_GROUP_HEARTBEAT, 1, body)
        assert rd is not None, "connection closed on ShareGroupHeartbeat"
        rd.i32()
        err = rd.i16()
        if err not in COORDINATOR_NOT_READY or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert err == 0, (err, rd.cstr())


def share_fetch(wire, group, member, epoch, topics=(), acks=False, wait_ms=1000):
    """ShareFetch v1 naming partition 0 of each topic id in topics (with one
    acknowledgement batch each when acks): (top-level error, record bytes
    received in all), or None when the connection closed."""
    body = cstr(group) + cstr(member) + struct.pack(">iiiiii", epoch, wait_ms, 1, 1 << 20, 500, 500)
    body += uvarint(len(topics) + 1)
    for tid in topics:
        batches = uvarint(1)
        if acks:  # offsets 0-0 accepted
            batches = uvarint(2) + struct.pack(">qq", 0, 0) + uvarint(2) + b"\x01" + b"\x00"
        body += tid + uvarint(2) + struct.pack(">i", 0) + batches + b"\x00" + b"\x00"
    body += uvarint(1) + b"\x00"  # no forgotten topics, no tags
    rd = wire.call_flex(SHARE_FETCH, 1, body)
    if rd is None:
        return None
    return read_share_fetch(rd)


def share_fetch_records(wire, group, member, epoch, limit_s=30):
    """Incremental ShareFetches from epoch on until one brings records or
    fails: its (error, record bytes). The first share use on a fresh broker
    makes its share-state topic and loads the share partition first, which
    can take longer than one fetch's wait on a loaded machine."""
    deadline = time.monotonic() + limit_s
    while True:
        got = share_fetch(wire, group, member, epoch, wait_ms=3000)
        epoch += 1
        if got is None or got[0] != 0 or got[1] > 0 or time.monotonic() > deadline:
            return got


def read_share_fetch(rd: FlexReader):
    rd.i32()
    err = rd.i16()
    rd.cstr()
    rd.i32()  # acquisition lock timeout
    got = 0
    for _ in range(rd.uvarint() - 1):
        rd.take(16)
        for _ in range(rd.uvarint() - 1):
            rd.i32(), rd.i16(), rd.cstr(), rd.i16(), rd.cstr()
            rd.i32(), rd.i32(), rd.tags()  # current leader
            n = rd.uvarint() - 1
            got += max(n, 0)
            rd.take(max(n, 0))
            for _ in range(rd.uvarint() - 1):
                rd.take(8 + 8 + 2)
                rd.tags()
            rd.tags()
        rd.tags()
    return err, got


def share_from_earliest(group):
    """share.auto.offset.reset=earliest on group, straight to the broker (a
    share group starts at the latest offset otherwise)."""
    from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource,
                                       ResourceType)
    admin = setup_admin()  # must outlive the futures
    res = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry("share.auto.offset.reset", "earliest",
                    incremental_operation=AlterConfigOpType.SET)])
    for f in admin.incremental_alter_configs([res]).values():
        f.result(30)


def produce_direct(topic, n):
    p = Producer({"bootstrap.servers": KAFKA_PLAIN})
    for i in range(n):
        p.produce(topic, value=json.dumps({"seq": i}).encode(), partition=0)
    assert p.flush(30) == 0


class SharedMember:
    """busgate with two connections: a (svc-orders, may read topic) and b
    (svc-reporting, may read the group and own, not topic), one share group
    reading from the earliest offset, and a member id for a's session."""

    def __init__(self, start_busgate, tmp_path):
        text, self.ports = busgate_config(tmp_path, RULES)
        start_busgate(text, wait_for_port=self.ports["listen"])
        self.topic, self.own = unique("share-x"), unique("share-y")
        self.group = unique("share-g")
        create_topics([self.topic, self.own])
        share_from_earliest(self.group)
        self.member = member_id()
        port = self.ports["listen"]
        self.a = KafkaWire(port, timeout=20).login(oidc_token("svc-orders"))
        self.b = KafkaWire(port, timeout=20).login(oidc_token("svc-reporting"))

    def close(self):
        self.a.close()
        self.b.close()


def test_share_session_used_from_another_connection(start_busgate, tmp_path):
    """svc-orders opens a share session on the topic it may read. From its
    own connection, svc-reporting (read on the group, not on the topic)
    names the same member: first in a new session the broker would refuse
    (it acknowledges), then incrementally at the session's epoch. busgate
    answers both itself and forwards neither, so the broker never fetches
    svc-orders' session for svc-reporting; svc-orders' session goes on."""
    m = SharedMember(start_busgate, tmp_path)
    ports, topic, own, group, member, a, b = (m.ports, m.topic, m.own, m.group, m.member, m.a,
                                             m.b)
    try:
        t_id = topic_id(a, topic)
        own_id = topic_id(b, own)
        join(a, group, member, topic)
        opened = share_fetch(a, group, member, 0, [t_id], wait_ms=0)
        assert opened == (0, 0), opened
        produce_direct(topic, 20)

        # A new session that acknowledges: Kafka answers INVALID_REQUEST.
        opened = share_fetch(b, group, member, 0, [own_id], acks=True, wait_ms=200)
        assert opened is not None and opened[0] == INVALID_REQUEST, opened
        # Incremental, at the epoch svc-orders' session is at: nothing named,
        # everything the broker's session holds would be fetched.
        stolen = share_fetch(b, group, member, 1)
        assert stolen == (SHARE_SESSION_NOT_FOUND, 0), stolen
        assert wait_audit(ports["audit"], lambda e: e.get("kind") == "decision" and
                          e["api"]["name"] == "ShareFetch" and
                          e["decision"]["effect"] == "deny" and
                          e["result"]["error_code"] == SHARE_SESSION_NOT_FOUND)

        # svc-orders' own session was not disturbed: its incremental fetch
        # gets the records.
        got = share_fetch_records(a, group, member, 1)
        assert got is not None and got[0] == 0 and got[1] > 0, got
    finally:
        m.close()
    fetched = [e for e in audit_events(ports["audit"])
               if e.get("kind") == "decision" and e["api"]["name"] == "ShareFetch" and
               e["decision"]["effect"] == "allow" and topic in
               [r.get("name") for r in e.get("resources", [])]]
    assert fetched, "svc-orders' ShareFetch of the topic was not audited as allowed"


def test_share_session_opened_again_elsewhere(start_busgate, tmp_path):
    """svc-reporting opens a new session for svc-orders' member from its own
    connection, one busgate forwards (it names nothing; the broker accepts
    it and replaces svc-orders' session with an empty one). svc-reporting
    then holds that empty session and fetches nothing from it; svc-orders'
    incremental fetch is answered SHARE_SESSION_NOT_FOUND by busgate (its
    session is gone), and the session it opens again fetches the
    records."""
    m = SharedMember(start_busgate, tmp_path)
    ports, topic, own, group, member, a, b = (m.ports, m.topic, m.own, m.group, m.member, m.a,
                                             m.b)
    try:
        t_id = topic_id(a, topic)
        join(a, group, member, topic)
        opened = share_fetch(a, group, member, 0, [t_id], wait_ms=0)
        assert opened == (0, 0), opened
        produce_direct(topic, 20)

        other = share_fetch(b, group, member, 0, wait_ms=0)
        assert other == (0, 0), other
        assert share_fetch(b, group, member, 1, wait_ms=500) == (0, 0)
        assert share_fetch(a, group, member, 1) == (SHARE_SESSION_NOT_FOUND, 0)

        again = share_fetch(a, group, member, 0, [t_id], wait_ms=3000)
        assert again is not None and again[0] == 0, again
        more = (0, 0) if again[1] else share_fetch_records(a, group, member, 1)
        assert more is not None and more[0] == 0, more
        assert again[1] + more[1] > 0, (again, more)
    finally:
        m.close()
