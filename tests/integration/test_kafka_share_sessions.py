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
SHARE_ACKNOWLEDGE = 79
SHARE_GROUP_DESCRIBE = 77
DESCRIBE_SHARE_GROUP_OFFSETS = 90
SHARE_SESSION_NOT_FOUND = 122
INVALID_REQUEST = 42
TOPIC_AUTHORIZATION_FAILED = 29


def member_id():
    """A member id as Kafka's clients make them (a Uuid in URL-safe base64)."""
    return base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()


# The coordinator is still loading, or not there yet: asked again.
COORDINATOR_NOT_READY = (14, 15, 16)
FIND_COORDINATOR = 10


def join(wire, group, member, topic, limit_s=30):
    """ShareGroupHeartbeat v1: member joins group subscribed to topic (a
    name, or a list of them; the broker's share partition needs the group
    to exist and the topic subscribed). A FindCoordinator
    first, as clients send it: on a fresh broker it is what makes the
    group coordinator's topic, without which the heartbeat gets
    NOT_COORDINATOR."""
    body = heartbeat_body(group, member, [topic] if isinstance(topic, str) else topic)
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


def heartbeat_body(group, member, topics):
    """ShareGroupHeartbeat v1 of a member joining (epoch 0), no rack,
    subscribed to topics."""
    body = cstr(group) + cstr(member) + struct.pack(">i", 0) + uvarint(0)
    return body + uvarint(len(topics) + 1) + b"".join(cstr(t) for t in topics) + b"\x00"


def share_fetch(wire, group, member, epoch, topics=(), acks=False, wait_ms=1000):
    """ShareFetch v1 naming partition 0 of each topic id in topics (with one
    acknowledgement batch each when acks): (top-level error, record bytes
    received in all), or None when the connection closed."""
    got = share_fetch_partitions(wire, group, member, epoch, topics, acks, wait_ms)
    return None if got is None else (got[0], sum(p[2] for p in got[1].values()))


def share_fetch_partitions(wire, group, member, epoch, topics=(), acks=False, wait_ms=1000):
    """ShareFetch v1 naming partition 0 of each topic id in topics; acks: an
    acknowledgement batch on each, (first, last) offsets accepted (True:
    0-0). (top-level error, {(topic id, partition): (error, acknowledge
    error, record bytes, records acquired)}), or None when the connection
    closed."""
    if acks is True:
        acks = (0, 0)
    body = cstr(group) + cstr(member) + struct.pack(">iiiiii", epoch, wait_ms, 1, 1 << 20, 500, 500)
    body += uvarint(len(topics) + 1)
    for tid in topics:
        batches = uvarint(1)
        if acks:
            batches = uvarint(2) + struct.pack(">qq", *acks) + uvarint(2) + b"\x01" + b"\x00"
        body += tid + uvarint(2) + struct.pack(">i", 0) + batches + b"\x00" + b"\x00"
    body += uvarint(1) + b"\x00"  # no forgotten topics, no tags
    rd = wire.call_flex(SHARE_FETCH, 1, body)
    if rd is None:
        return None
    return read_share_fetch(rd)


def share_acknowledge(wire, group, member, epoch, tid, first, last):
    """ShareAcknowledge v1 accepting offsets first-last of partition 0 of
    topic id tid: (top-level error, {(topic id, partition): error}), or None
    when the connection closed."""
    body = cstr(group) + cstr(member) + struct.pack(">i", epoch) + uvarint(2) + tid
    body += uvarint(2) + struct.pack(">i", 0) + uvarint(2) + struct.pack(">qq", first, last)
    body += uvarint(2) + b"\x01" + b"\x00" * 4  # accept; batch, partition, topic, request tags
    rd = wire.call_flex(SHARE_ACKNOWLEDGE, 1, body)
    if rd is None:
        return None
    rd.i32()
    err = rd.i16()
    rd.cstr()

    def partition(perr):
        rd.i32(), rd.i32(), rd.tags()  # current leader
        return perr

    return err, read_share_partitions(rd, partition)


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
    """(top-level error, {(topic id, partition): (error, acknowledge error,
    record bytes, records acquired)}) of a ShareFetch v1 response."""
    rd.i32()
    err = rd.i16()
    rd.cstr()
    rd.i32()  # acquisition lock timeout

    def partition(perr):
        ack_err = rd.i16()
        rd.cstr()
        rd.i32(), rd.i32(), rd.tags()  # current leader
        n = max(rd.uvarint() - 1, 0)
        rd.take(n)
        acquired = 0
        for _ in range(rd.uvarint() - 1):
            first, last, _ = struct.unpack(">qqh", rd.take(8 + 8 + 2))
            acquired += last - first + 1
            rd.tags()
        return perr, ack_err, n, acquired

    return err, read_share_partitions(rd, partition)


def read_share_partitions(rd: FlexReader, partition):
    """The topics array of a ShareFetch or ShareAcknowledge v1 response:
    {(topic id, partition): partition(error)}, partition reading the rest
    of each partition's fields (after its index, error code and message)
    up to its tags, which are read here."""
    parts = {}
    for _ in range(rd.uvarint() - 1):
        tid = rd.take(16)
        for _ in range(rd.uvarint() - 1):
            idx, perr = rd.i32(), rd.i16()
            rd.cstr()
            parts[(tid, idx)] = partition(perr)
            rd.tags()
        rd.tags()
    return parts


def share_from_earliest(group, lock_ms=None):
    """share.auto.offset.reset=earliest on group, straight to the broker (a
    share group starts at the latest offset otherwise); lock_ms: how long a
    member holds the records it acquired (share.record.lock.duration.ms)."""
    from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource,
                                       ResourceType)
    admin = setup_admin()  # must outlive the futures
    entries = [ConfigEntry("share.auto.offset.reset", "earliest",
                           incremental_operation=AlterConfigOpType.SET)]
    if lock_ms is not None:
        entries.append(ConfigEntry("share.record.lock.duration.ms", str(lock_ms),
                                   incremental_operation=AlterConfigOpType.SET))
    res = ConfigResource(ResourceType.GROUP, group, incremental_configs=entries)
    for f in admin.incremental_alter_configs([res]).values():
        f.result(30)


def broker_share_offset(group, topic):
    """DescribeShareGroupOffsets v1 of partition 0 of topic in group, asked
    of the broker itself (setup listener): (start offset, lag); (-1, -1)
    while the broker has written no state for the share partition (nothing
    acknowledged nor released yet), lag 0 once every record is."""
    w = KafkaWire(int(KAFKA_PLAIN.rsplit(":", 1)[1]))
    try:
        body = uvarint(2) + cstr(group) + uvarint(2) + cstr(topic)
        body += uvarint(2) + struct.pack(">i", 0) + b"\x00" + b"\x00" + b"\x00"
        rd = w.call_flex(DESCRIBE_SHARE_GROUP_OFFSETS, 1, body)
    finally:
        w.close()
    assert rd is not None, "the broker closed on DescribeShareGroupOffsets"
    rd.i32()
    assert rd.uvarint() - 1 == 1 and rd.cstr() == group
    assert rd.uvarint() - 1 == 1 and rd.cstr() == topic
    rd.take(16)
    assert rd.uvarint() - 1 == 1
    idx, start, _, lag, err = rd.i32(), rd.take(8), rd.i32(), rd.take(8), rd.i16()
    assert idx == 0 and err == 0, (idx, err, rd.cstr())
    return struct.unpack(">q", start)[0], struct.unpack(">q", lag)[0]


def broker_share_members(group):
    """ShareGroupDescribe v1 of group, asked of the broker itself: {member
    id: subscribed topic names}."""
    w = KafkaWire(int(KAFKA_PLAIN.rsplit(":", 1)[1]))
    try:
        rd = w.call_flex(SHARE_GROUP_DESCRIBE, 1, uvarint(2) + cstr(group) + b"\x00" + b"\x00")
    finally:
        w.close()
    assert rd is not None, "the broker closed on ShareGroupDescribe"
    rd.i32()
    assert rd.uvarint() - 1 == 1
    err, _, name = rd.i16(), rd.cstr(), rd.cstr()
    assert err == 0 and name == group, (err, name)
    rd.cstr(), rd.i32(), rd.i32(), rd.cstr()  # state, epochs, assignor
    members = {}
    for _ in range(rd.uvarint() - 1):
        mid = rd.cstr()
        rd.cstr(), rd.i32(), rd.cstr(), rd.cstr()  # rack, epoch, client id and host
        members[mid] = [rd.cstr() for _ in range(rd.uvarint() - 1)]
        for _ in range(rd.uvarint() - 1):  # assignment
            rd.take(16), rd.cstr()
            rd.take(4 * (rd.uvarint() - 1))
            rd.tags()
        rd.tags(), rd.tags()
    return members


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


def acquire_all(wire, group, member, topics, opened, n, limit_s=30):
    """Incremental ShareFetches of the session wire opened on topics (ids;
    opened: the answer to its epoch 0) until member holds all n records of
    partition 0 of each; the next epoch. A share partition loads on its
    first fetch, which may take longer than one fetch's wait."""
    held = {t: opened[1].get((t, 0), (0, 0, 0, 0))[3] for t in topics}
    epoch = 1
    deadline = time.monotonic() + limit_s
    while any(v < n for v in held.values()):
        assert time.monotonic() < deadline, held
        got = share_fetch_partitions(wire, group, member, epoch, wait_ms=2000)
        epoch += 1
        assert got is not None and got[0] == 0, got
        for (tid, _), part in got[1].items():
            assert part[0] == 0, part
            held[tid] += part[3]
    return epoch


def test_share_acknowledgements_of_a_refused_topic_never_reach_the_broker(start_busgate,
                                                                          tmp_path):
    """svc-orders' member acquires every record of two share-x topics.
    svc-reporting (read on the group and on share-y-*, nothing on share-x-*)
    sends a heartbeat of its own subscribing to the first, then takes the
    member's session by opening it again from its own connection (the
    broker keys it by member alone) and accepts the member's records: of the
    first topic in a ShareFetch, of the second in a ShareAcknowledge. Each
    is answered TOPIC_AUTHORIZATION_FAILED (in the ShareFetch also as the
    acknowledge error) and audited as a deny of the topic, and none reaches
    the broker: its share partitions record no acknowledgement and the
    member of the heartbeat is not in the group. svc-orders' own
    acknowledgements then reach it, which shows what the broker would have
    recorded."""
    n = 3
    m = SharedMember(start_busgate, tmp_path)
    ports, topic, group, member, a, b = m.ports, m.topic, m.group, m.member, m.a, m.b
    second = unique("share-x")
    create_topics([second])
    share_from_earliest(group, lock_ms=60000)  # the member holds them throughout
    outsider = member_id()
    try:
        join(a, group, member, [topic, second])
        produce_direct(topic, n)
        produce_direct(second, n)
        t1, t2 = topic_id(a, topic), topic_id(a, second)
        opened = share_fetch_partitions(a, group, member, 0, [t1, t2], wait_ms=0)
        assert opened is not None and opened[0] == 0, opened
        acquire_all(a, group, member, [t1, t2], opened, n)

        rd = b.call_flex(SHARE_GROUP_HEARTBEAT, 1, heartbeat_body(group, outsider, [topic]))
        assert rd is not None, "connection closed on ShareGroupHeartbeat"
        rd.i32()
        assert rd.i16() == TOPIC_AUTHORIZATION_FAILED

        assert share_fetch(b, group, member, 0, wait_ms=0) == (0, 0)  # an empty session
        fetched = share_fetch_partitions(b, group, member, 1, [t1], acks=(0, n - 1), wait_ms=0)
        assert fetched == (0, {(t1, 0): (TOPIC_AUTHORIZATION_FAILED, TOPIC_AUTHORIZATION_FAILED,
                                         0, 0)}), fetched
        acked = share_acknowledge(b, group, member, 2, t2, 0, n - 1)
        assert acked == (0, {(t2, 0): TOPIC_AUTHORIZATION_FAILED}), acked

        # The broker: nothing acknowledged (no state written yet, or all n
        # records still owed), and no member subscribed by svc-reporting.
        for t in (topic, second):
            assert broker_share_offset(group, t) in ((-1, -1), (0, n)), t
        assert outsider not in broker_share_members(group)

        # The member's own acknowledgements, through busgate, do reach it.
        assert share_fetch(a, group, member, 0, [t1, t2], wait_ms=0) == (0, 0)
        assert share_acknowledge(a, group, member, 1, t1, 0, n - 1) == (0, {(t1, 0): 0})
        assert share_acknowledge(a, group, member, 2, t2, 0, n - 1) == (0, {(t2, 0): 0})
        for t in (topic, second):
            assert broker_share_offset(group, t)[1] == 0, t
    finally:
        m.close()
    for api, t in (("ShareGroupHeartbeat", topic), ("ShareFetch", topic),
                   ("ShareAcknowledge", second)):
        assert wait_audit(ports["audit"], lambda e, api=api, t=t: e.get("kind") == "decision" and
                          e["api"]["name"] == api and e["decision"]["effect"] == "deny" and
                          e["principal"]["sub"] == "svc-reporting" and
                          t in [r.get("name") for r in e.get("resources", [])] and
                          e["result"]["error_code"] == TOPIC_AUTHORIZATION_FAILED), api
