"""busgate decides requests that name a topic by id (Produce v13, Fetch v13+,
OffsetCommit v10, DeleteTopics v6, ...) on the name it learned for that id
from the broker's Metadata and DescribeTopicPartitions answers. It learns
only from entries the broker answered without an error: Kafka's error form
of a Metadata answer (MetadataRequest.getErrorResponse) copies each request
entry's name and id, so a client that may only describe a topic could
otherwise name its id as it likes (a name it may write) and have every
later request by that id decided on that name, for every principal. A
scripted broker gives the error answer here (a real one gives it when
handling the request throws)."""
import queue
import struct
import threading

import pytest

from kafka_env import KafkaWire, busgate_config, cstr, oidc_token, produce_v13, uvarint
from kafka_fake import FakeKafka

RULES = """    - name: orders-may-describe-the-victim
      subjects: [group:orders]
      resources: ["kafka:topic:tid-v-*"]
      verbs: [describe]
      effect: allow
    - name: orders-own-topics
      subjects: [group:orders]
      resources: ["kafka:topic:tid-a-*"]
      verbs: [write, describe]
      effect: allow
"""
VICTIM_ID = bytes(range(1, 17))
VICTIM = "tid-v-secret"
TOPIC_AUTHORIZATION_FAILED = 29


def metadata_v12_response(port, topics):
    """Metadata v12 response body: broker 0 at port; topics [(error, name, id, partitions)]."""
    body = struct.pack(">i", 0) + uvarint(2) + struct.pack(">i", 0) + cstr("127.0.0.1")
    body += struct.pack(">i", port) + uvarint(0) + b"\x00"
    body += uvarint(0) + struct.pack(">i", 0)  # cluster id null, controller 0
    body += uvarint(len(topics) + 1)
    for err, name, tid, nparts in topics:
        body += struct.pack(">h", err) + (uvarint(0) if name is None else cstr(name)) + tid
        body += b"\x00" + uvarint(nparts + 1)
        for p in range(nparts):
            body += struct.pack(">hiii", 0, p, 0, 0) + uvarint(2) + struct.pack(">i", 0)
            body += uvarint(2) + struct.pack(">i", 0) + uvarint(1) + b"\x00"
        body += struct.pack(">i", -2147483648) + b"\x00"
    return body + b"\x00"


class Fake12(FakeKafka):
    """Answers busgate's own discovery Metadata itself; everything else is
    left to the test."""

    def _own(self, conn, req):
        if req.api_key == 3 and req.client_id == "busgate-discovery":
            conn.reply(req.corr, metadata_v12_response(self.port, []), header_tags=True)
            return True
        return super()._own(conn, req)


@pytest.fixture
def fake():
    f = Fake12(apis=[(0, 3, 13), (3, 0, 12), (17, 0, 1), (18, 0, 3), (20, 0, 6), (36, 0, 1)])
    yield f
    f.close()


def next_request(fake, seen, timeout=10.0):
    """The next request forwarded on any of busgate's connections to the fake."""
    for _ in range(int(timeout / 0.7)):
        for c in seen:
            try:
                return c, c.requests.get(timeout=0.2)
            except queue.Empty:
                pass
        try:
            seen.append(fake.conns.get(timeout=0.5))
        except queue.Empty:
            pass
    raise AssertionError("busgate forwarded nothing")


def forwarded_within(seen, timeout):
    for c in seen:
        try:
            return c, c.requests.get(timeout=timeout)
        except queue.Empty:
            pass
    return None, None


def metadata_v12(wire, entries):
    """Sends Metadata v12 for [(name or None, id)]; its correlation id."""
    body = uvarint(len(entries) + 1)
    for name, tid in entries:
        body += tid + (uvarint(0) if name is None else cstr(name)) + b"\x00"
    body += b"\x00\x00\x00"  # no auto-create, no authorized operations, no tags
    wire.corr += 1
    head = struct.pack(">hhi", 3, 12, wire.corr) + struct.pack(">h", 6) + b"it-raw" + b"\x00"
    wire.sock.sendall(struct.pack(">i", len(head) + len(body)) + head + body)
    return wire.corr


def test_error_entries_teach_no_topic_id(start_busgate, tmp_path, fake):
    text, ports = busgate_config(tmp_path, RULES, security="plaintext", upstream=[fake.address])
    start_busgate(text, wait_for_port=ports["listen"])
    w = KafkaWire(ports["listen"], timeout=10).login(oidc_token("svc-orders"))
    seen = []

    # The victim by name, answered normally: busgate learns its id.
    corr = metadata_v12(w, [(VICTIM, bytes(16))])
    conn, req = next_request(fake, seen)
    assert req.api_key == 3
    conn.reply(req.corr, metadata_v12_response(fake.port, [(0, VICTIM, VICTIM_ID, 1)]),
               header_tags=True)
    assert w.recv()[0] == corr
    # Produce by its id is decided on its name: refused, nothing forwarded.
    assert produce_v13(w, VICTIM_ID) == [(VICTIM_ID, [(0, TOPIC_AUTHORIZATION_FAILED)])]

    # By id (describe allowed) with a name of the client's choosing next to
    # it; the broker answers in Kafka's error form, echoing the entry.
    corr = metadata_v12(w, [("tid-a-mine", VICTIM_ID)])
    conn, req = next_request(fake, seen)
    assert req.api_key == 3, req.api_key
    conn.reply(req.corr, metadata_v12_response(fake.port, [(-1, "tid-a-mine", VICTIM_ID, 0)]),
               header_tags=True)
    assert w.recv()[0] == corr

    # A normal answer naming the victim's id otherwise (a broker never
    # renames a topic id) does not rename it either.
    corr = metadata_v12(w, [(None, VICTIM_ID)])
    conn, req = next_request(fake, seen)
    conn.reply(req.corr, metadata_v12_response(fake.port, [(0, "tid-a-other", VICTIM_ID, 1)]),
               header_tags=True)
    assert w.recv()[0] == corr

    # Produce by the victim's id is still decided on the victim's name:
    # refused by busgate, nothing forwarded. Before the fix it was
    # forwarded, decided as a write on "tid-a-mine".
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", produce_v13(w, VICTIM_ID)))
    t.start()
    t.join(3)
    conn, forwarded = forwarded_within(seen, 0.5)
    if forwarded is not None:  # answer it so that the client thread ends
        body = uvarint(2) + VICTIM_ID + uvarint(2) + struct.pack(">ihqqq", 0, 0, 0, -1, 0)
        body += uvarint(1) + uvarint(0) + b"\x00" + b"\x00" + struct.pack(">i", 0) + b"\x00"
        conn.reply(forwarded.corr, body, header_tags=True)
        t.join(5)
    w.close()
    assert forwarded is None, "Produce v13 by the victim's id was forwarded"
    assert out.get("r") == [(VICTIM_ID, [(0, TOPIC_AUTHORIZATION_FAILED)])], out


def test_delete_by_an_unknown_id_is_answered_as_kafka_does(start_busgate, tmp_path, fake):
    """DeleteTopics v6 by an id busgate never learned: UNKNOWN_TOPIC_ID with
    Kafka's message for it, no name, nothing forwarded."""
    text, ports = busgate_config(tmp_path, RULES, security="plaintext", upstream=[fake.address])
    start_busgate(text, wait_for_port=ports["listen"])
    w = KafkaWire(ports["listen"], timeout=10).login(oidc_token("svc-orders"))
    unknown = bytes(range(40, 56))
    body = uvarint(2) + uvarint(0) + unknown + b"\x00" + struct.pack(">i", 10000) + b"\x00"
    rd = w.call_flex(20, 6, body)
    assert rd is not None, "busgate closed the connection"
    rd.i32()  # throttle time
    entries = []
    for _ in range(rd.uvarint() - 1):
        entries.append((rd.cstr(), rd.take(16), rd.i16(), rd.cstr()))
        rd.tags()
    w.close()
    assert entries == [(None, unknown, 100, "This server does not host this topic ID.")], entries
    seen = []
    while True:  # busgate's connections to the fake: none got the request
        try:
            seen.append(fake.conns.get(timeout=0.5))
        except queue.Empty:
            break
    assert forwarded_within(seen, 0.5) == (None, None)
