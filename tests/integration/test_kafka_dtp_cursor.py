"""DescribeTopicPartitions paging through all topics, with the real broker.

The broker computes each page and its NextCursor over every topic busgate's
credential sees. When the next page starts at a topic the principal may not
describe, busgate must not pass that topic's name on: it seals it, and
opens it again when the client sends the cursor back, so paging neither
leaks the name nor skips or repeats topics. A sealed cursor that does not
open (damaged, or from another busgate process) closes the connection.
Raw requests: no client library pages over all topics itself."""
import struct

from kafka_env import KafkaWire, busgate_config, create_topics, oidc_token, unique

RULES = """    - name: see-vis
      subjects: [group:orders]
      resources: ["kafka:topic:it-dtp-*-vis"]
      verbs: [describe]
      effect: allow
"""


def uvarint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def cstr(s):
    b = s.encode()
    return uvarint(len(b) + 1) + b


class Reader:
    def __init__(self, data):
        self.d, self.o = data, 0

    def take(self, n):
        v = self.d[self.o:self.o + n]
        self.o += n
        return v

    def i8(self):
        return struct.unpack(">b", self.take(1))[0]

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def uvarint(self):
        shift = n = 0
        while True:
            b = self.take(1)[0]
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n

    def cstr(self):
        n = self.uvarint() - 1
        return None if n < 0 else self.take(n).decode()

    def tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())

    def int_array(self):
        return [self.i32() for _ in range(self.uvarint() - 1)]


def dtp(w, cursor):
    """DescribeTopicPartitions v0 for all topics, one partition per page,
    starting at cursor (name, partition): (topic names, next cursor), or None
    when busgate closed the connection."""
    body = uvarint(1) + struct.pack(">i", 1)  # no topics = all; ResponsePartitionLimit 1
    body += struct.pack(">b", 1) + cstr(cursor[0]) + struct.pack(">i", cursor[1]) + uvarint(0)
    body += uvarint(0)
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
    names = []
    for _ in range(rd.uvarint() - 1):
        rd.i16()
        names.append(rd.cstr())
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
    return names, nxt


def test_cursor_naming_a_hidden_topic_is_sealed(start_busgate, tmp_path):
    u = unique("c")
    vis1, hid, vis3 = f"it-dtp-{u}-1-vis", f"it-dtp-{u}-2-hid", f"it-dtp-{u}-3-vis"
    create_topics([vis1, hid, vis3], partitions=1)
    text, ports = busgate_config(tmp_path, RULES, mechanism="PLAIN")
    start_busgate(text, wait_for_port=ports["listen"])
    token = oidc_token("svc-orders")
    w = KafkaWire(ports["listen"], timeout=10)
    w.api_versions()
    assert w.sasl_plain(token)[0] == 0

    names, nxt = dtp(w, (vis1, 0))
    assert names == [vis1]
    sealed = nxt[0]
    assert sealed.startswith("~busgate:") and hid not in sealed and u not in sealed
    assert nxt[1] == 0
    # Sent back, the sealed cursor pages on from the hidden topic: hidden from
    # the page, and the cursor after it names the next visible topic.
    names, nxt = dtp(w, (sealed, 0))
    assert names == []
    assert nxt == (vis3, 0)
    names, _ = dtp(w, nxt)
    assert names == [vis3]
    w.close()

    # A damaged sealed cursor is refused: the connection closes.
    w = KafkaWire(ports["listen"], timeout=10)
    w.api_versions()
    assert w.sasl_plain(token)[0] == 0
    bad = sealed[:-1] + ("0" if sealed[-1] != "0" else "1")
    assert dtp(w, (bad, 0)) is None
    w.close()
