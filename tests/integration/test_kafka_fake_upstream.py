"""What busgate sends its upstream and takes from it, seen from a scripted
broker (kafka_fake.py) rather than the real one: the exact bytes of a
forwarded request, and answers the real broker gives only when its cluster
changes."""
import socket
import struct
import threading
import time

import pytest

from kafka_env import KafkaWire, busgate_config, kstr, oidc_token
from kafka_fake import FakeKafka

RULES = """    - name: orders-everything
      subjects: [group:orders]
      resources: ["kafka:topic:*", "kafka:group:*", "kafka:cluster", "kafka:transactional-id:*"]
      verbs: [read, write, describe, create, delete, alter]
      effect: allow
"""


@pytest.fixture
def fake():
    f = FakeKafka()
    yield f
    f.close()


def start(start_busgate, tmp_path, fake, port_base=None):
    text, ports = busgate_config(tmp_path, RULES, security="plaintext", upstream=[fake.address],
                                 port_base=port_base)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    return bg, ports


def find_coordinator_v1(w, up, node, host, port):
    """FindCoordinator v1 for a group on w, answered on the fake broker's
    connection up (a FakeConn, or the FakeKafka whose next connection it
    is) with node at host:port. Returns ((error, node, host, port) as the
    client gets them, the connection)."""
    corr = w.send(10, 1, kstr("it-g-coord") + b"\x00")
    if isinstance(up, FakeKafka):
        up = up.conns.get(timeout=10)
    req = up.next()
    assert (req.api_key, req.corr) == (10, corr)
    up.reply(corr, struct.pack(">ih", 0, 0) + kstr(None) + struct.pack(">i", node) +
             kstr(host) + struct.pack(">i", port))
    r = w.recv()
    assert r is not None and r[0] == corr, r
    body = r[1]
    err, = struct.unpack(">h", body[4:6])
    mlen, = struct.unpack(">h", body[6:8])
    at = 8 + max(mlen, 0)
    got_node, hlen = struct.unpack(">ih", body[at:at + 6])
    got_host = body[at + 6:at + 6 + hlen].decode()
    got_port, = struct.unpack(">i", body[at + 6 + hlen:at + 10 + hlen])
    return (err, got_node, got_host, got_port), up


def send_flex(w, api_key, version, header_tags, body):
    """A flexible-version request (header v2) whose header's tagged section
    is header_tags, raw: the correlation id."""
    w.corr += 1
    payload = struct.pack(">hhi", api_key, version, w.corr) + kstr(w.client_id) + header_tags
    w.sock.sendall(struct.pack(">i", len(payload) + len(body)) + payload + body)
    return w.corr


def test_request_header_tags_are_not_forwarded(start_busgate, tmp_path, fake):
    """Kafka defines no request header tags: a request carrying one (tag 7,
    "abc") reaches the broker re-encoded with an empty header tag section,
    and is answered as usual."""
    bg, ports = start(start_busgate, tmp_path, fake)
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    # ListGroups v3: header tags {7: "abc"}; the body is its own empty tags.
    corr = send_flex(w, 16, 3, bytes([1, 7, 3]) + b"abc", b"\x00")
    up = fake.conns.get(timeout=10)
    req = up.next()
    assert (req.api_key, req.api_version, req.corr) == (16, 3, corr)
    assert req.client_id == w.client_id
    assert req.after_client_id == b"\x00\x00", req.after_client_id.hex()
    up.reply(corr, struct.pack(">ih", 0, 0) + b"\x01\x00", header_tags=True)  # no groups
    r = w.recv()
    assert r is not None and r[0] == corr, r
    w.close()


def test_responses_sent_before_the_broker_closed_reach_the_client(start_busgate, tmp_path, fake):
    """The broker answers every pipelined request, then closes its
    connection, while the client reads slowly: the answers busgate already
    holds for the client still reach it, in order, as they would from the
    broker itself (busgate used to drop its queued output when the broker's
    connection ended: the client got 519 of 600 in a review)."""
    text, ports = busgate_config(tmp_path, RULES, security="plaintext", upstream=[fake.address],
                                 kafka_extra="  max_inflight: 1000\n")
    start_busgate(text, wait_for_port=ports["listen"])
    w = KafkaWire(ports["listen"], timeout=30).login(oidc_token("svc-orders"))
    # Fetch v4: replica -1, max wait 500 ms, min 1 byte, max 1 MiB, isolation 0,
    # topic "t" partition 0 from offset 0.
    fetch = struct.pack(">iiiib", -1, 500, 1, 1 << 20, 0) + struct.pack(">i", 1) + kstr("t") + \
        struct.pack(">i", 1) + struct.pack(">iqi", 0, 0, 1 << 20)
    n, size = 600, 60000
    corrs = [w.send(1, 4, fetch) for _ in range(n)]
    up = fake.conns.get(timeout=10)
    reqs = [up.next() for _ in range(n)]

    def answer_all_then_close():
        for r in reqs:
            up.reply(r.corr, struct.pack(">i", 0) + b"\x00" * (size - 4))
        up.sock.shutdown(socket.SHUT_RDWR)
        up.sock.close()

    t = threading.Thread(target=answer_all_then_close)
    t.start()
    time.sleep(3)  # not reading: busgate holds megabytes of answers for us
    got = []
    while True:  # a slow reader: the broker's close comes while answers wait
        r = w.recv()
        if r is None:
            break
        got.append(r[0])
        time.sleep(0.004)
    t.join()
    assert got == corrs, (len(got), n)


def test_find_coordinator_on_a_new_broker_opens_its_port(start_busgate, tmp_path, fake):
    """The coordinator a FindCoordinator response names may be a broker no
    Metadata answer has named yet (node 7 here; discovery saw node 0 only):
    busgate learns it from that response, so the port it points the client
    at (broker_port_base + 7) is served, with node 7 as its upstream."""
    bg, ports = start(start_busgate, tmp_path, fake)
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    (err, node, host, port), _ = find_coordinator_v1(w, fake, 7, "127.0.0.1", fake.port)
    assert (err, node, port) == (0, 7, ports["base"] + 7), (err, node, host, port)
    w.close()
    # The client connects where it was pointed; busgate answers ApiVersions
    # there once its upstream connection to node 7 is up.
    w7 = KafkaWire(port)
    assert 10 in w7.api_versions()
    w7.close()


def test_a_broker_busgate_cannot_serve_is_never_pointed_at(start_busgate, tmp_path, fake):
    """Another process holds broker_port_base + 7 when node 7 is learned:
    busgate does not serve node 7, so a coordinator there is answered
    COORDINATOR_NOT_AVAILABLE (15) without an address; the other process
    never sees a client. The same for node 70000, whose port would be above
    65535 (librdkafka would wrap it to another port). Before, the client was
    sent to both ports."""
    from kafka_env import free_port_block
    base = free_port_block()
    squatter = socket.create_server(("127.0.0.1", base + 7))
    squatter.settimeout(0.5)
    try:
        bg, ports = start(start_busgate, tmp_path, fake, port_base=base)
        w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
        got, up = find_coordinator_v1(w, fake, 7, "127.0.0.1", fake.port)
        assert got == (15, -1, "", -1), got
        line = bg.wait_log(lambda l: l.get("msg", "").startswith("broker 7: ") and
                           "not served" in l.get("msg", ""))
        assert line is not None, bg.log_path.read_text()[-2000:]
        got, _ = find_coordinator_v1(w, up, 70000, "127.0.0.1", fake.port)
        assert got == (15, -1, "", -1), got
        w.close()
        with pytest.raises(socket.timeout):
            squatter.accept()
    finally:
        squatter.close()
