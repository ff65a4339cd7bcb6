"""DescribeTopicPartitions (api 75) with the real broker, raw requests.

Named topics page as Kafka pages them: the denied one is answered
TOPIC_AUTHORIZATION_FAILED by busgate, the others are forwarded and paged by
the broker with the client's cursor. The form without names (all topics)
is refused, because the broker would page over every topic busgate's
credential sees: a cursor naming a hidden topic, or a page short of its
limit, would show where hidden topics are, and a client choosing the start
cursor could find their names by bisection."""
import struct

from kafka_env import (FlexReader as Reader, KafkaWire, busgate_config, create_topics, cstr,
                       oidc_token, unique, uvarint, wait_audit)

RULES = """    - name: see-vis
      subjects: [group:orders]
      resources: ["kafka:topic:it-dtp-*-vis"]
      verbs: [describe]
      effect: allow
"""


def dtp(w, topics, cursor=None, limit=1, unknown_tag=False):
    """DescribeTopicPartitions v0 for topics ([] = all), limit partitions per
    page, starting at cursor (name, partition): ([(error, name)], next
    cursor), or None when busgate closed the connection. unknown_tag: the
    request also carries a top-level tagged field no Kafka version defines."""
    body = uvarint(len(topics) + 1) + b"".join(cstr(t) + uvarint(0) for t in topics)
    body += struct.pack(">i", limit)
    if cursor is None:
        body += struct.pack(">b", -1)
    else:
        body += struct.pack(">b", 1) + cstr(cursor[0]) + struct.pack(">i", cursor[1]) + uvarint(0)
    body += uvarint(1) + uvarint(99) + uvarint(1) + b"\x00" if unknown_tag else uvarint(0)
    w.corr += 1
    payload = struct.pack(">hhi", 75, 0, w.corr) + struct.pack(">h", 6) + b"it-raw" + uvarint(0)
    payload += body  # request header v2: client id, then tagged fields
    w.sock.sendall(struct.pack(">i", len(payload)) + payload)
    r = w.recv()
    if r is None:
        return None
    assert r[0] == w.corr
    rd = Reader(r[1])
    rd.tags()  # response header v1
    rd.i32()  # throttle
    out = []
    for _ in range(rd.uvarint() - 1):
        err = rd.i16()
        out.append((err, rd.cstr()))
        rd.take(16 + 1)  # topic id, is internal
        for _ in range(rd.uvarint() - 1):
            rd.i16(), rd.i32(), rd.i32(), rd.i32()
            rd.int_array(), rd.int_array(), rd.int_array(), rd.int_array(), rd.int_array()
            rd.tags()
        rd.i32()  # authorized operations
        rd.tags()
    nxt = None
    if rd.i8() >= 0:
        nxt = (rd.cstr(), rd.i32())
        rd.tags()
    return out, nxt


def test_named_topics_page_and_all_topics_refused(start_busgate, tmp_path):
    u = unique("c")
    vis1, hid, vis3 = f"it-dtp-{u}-1-vis", f"it-dtp-{u}-2-hid", f"it-dtp-{u}-3-vis"
    create_topics([vis1, hid, vis3], partitions=1)
    text, ports = busgate_config(tmp_path, RULES, mechanism="PLAIN")
    start_busgate(text, wait_for_port=ports["listen"])
    token = oidc_token("svc-orders")
    w = KafkaWire(ports["listen"], timeout=10).login(token)
    # Named topics, one page per partition, the cursor handed back each time.
    topics, nxt = dtp(w, [vis1, hid, vis3])
    assert (29, hid) in topics  # TOPIC_AUTHORIZATION_FAILED, from busgate
    assert (0, vis1) in topics and nxt == (vis3, 0)
    topics, nxt = dtp(w, [vis1, hid, vis3], nxt)
    assert (0, vis3) in topics and (0, vis1) not in topics
    assert (29, hid) not in topics  # before the cursor: not answered, as in Kafka
    assert nxt is None
    # A cursor naming the denied topic: its stub, then the allowed topics
    # after it, as Kafka pages (the broker never sees the denied name).
    topics, nxt = dtp(w, [vis1, hid, vis3], (hid, 0), limit=10)
    assert sorted(topics) == [(0, vis3), (29, hid)], topics
    assert nxt is None
    topics, nxt = dtp(w, [vis1, hid], (hid, 0), limit=10)  # nothing allowed after it
    assert topics == [(29, hid)] and nxt is None
    # A cursor after every name: nothing to answer, and never forwarded as
    # an empty list (which the broker would read as every topic).
    assert dtp(w, [vis1, hid], (vis3, 0), limit=10) == ([], None)
    # Only a denied name, before the cursor: the same (before, it went up
    # as an empty list and the broker listed every topic after the cursor).
    assert dtp(w, [hid], (vis3, 0), limit=10) == ([], None)
    # A tagged field busgate does not know is left out upstream (the request
    # is re-encoded without it) and the request is answered as usual.
    plain = dtp(w, [vis1, vis3])
    assert plain is not None and (0, vis1) in plain[0]
    assert dtp(w, [vis1, vis3], unknown_tag=True) == plain
    # All topics: refused, the connection closes, the refusal is audited.
    assert dtp(w, [], (vis1, 0)) is None
    w.close()
    assert wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
               and e.get("api", {}).get("name") == "DescribeTopicPartitions"
               and e["decision"]["effect"] == "deny"
               and "name the topics" in e.get("detail", ""), timeout=10)
