"""The life of one client connection at busgate's Kafka listener, against
the real broker, with raw wire clients: backpressure on the answers busgate
builds itself, ApiVersions before SASL as Kafka's broker allows it, what a
request gets while the audit pipeline refuses events, and when a session
ends (idle timeout, closing)."""
import select
import socket
import struct
import time

import pytest

from confluent_kafka import Producer

from conftest import cpu_seconds, http_get
from kafka_env import (KafkaWire, busgate_config, client_conf, create_topics, kstr, oidc_token,
                       produce_v3_body, scrape, unique, wait_until)

RULES = """    - name: orders-topics
      subjects: [group:orders]
      resources: ["kafka:topic:it-orders-*"]
      verbs: [write, describe, create, read]
      effect: allow
"""


def start(start_busgate, tmp_path, **kw):
    text, ports = busgate_config(tmp_path, RULES, **kw)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    return bg, ports


def requests_total(ports):
    return scrape(ports["admin"], "busgate_requests_total", {"protocol": "kafka"}) or 0


def send_until_stalled(sock, data, stall=3.0, limit=120.0):
    """Sends data on a non-blocking socket until all of it is taken or the
    kernel takes nothing more for `stall` seconds (or `limit` passes): the
    number of bytes taken."""
    sock.setblocking(False)
    sent, deadline = 0, time.monotonic() + limit
    while sent < len(data) and time.monotonic() < deadline:
        try:
            sent += sock.send(data[sent:sent + (1 << 20)])
            continue
        except BlockingIOError:
            pass
        except (ConnectionResetError, BrokenPipeError):
            break  # closed by busgate meanwhile (e.g. its write timeout): stalled for good
        _, writable, _ = select.select([], [sock], [], stall)
        if not writable:
            break
    sock.setblocking(True)
    return sent


def api_versions_flood(first, n):
    """n ApiVersions v0 requests with a null client id (14 bytes each, ~300
    back), correlation ids first.."""
    return b"".join(struct.pack(">ihhih", 10, 18, 0, first + i, -1) for i in range(n))


def open_connections(ports):
    return scrape(ports["admin"], "busgate_connections_open", {"protocol": "kafka"})


def fetch_v4(topic, max_wait_ms, max_bytes=8 << 20):
    """A Fetch v4 body: partition 0 of topic from offset 0."""
    part = struct.pack(">iqi", 0, 0, max_bytes)
    topics = struct.pack(">i", 1) + kstr(topic) + struct.pack(">i", 1) + part
    return struct.pack(">iiiib", -1, max_wait_ms, 1, max_bytes, 0) + topics


def wait_stable(read, limit=60.0, interval=1.0, times=3):
    """read() once it has returned the same value `times` times in a row
    (bounded by limit)."""
    deadline = time.monotonic() + limit
    last, same = read(), 1
    while same < times and time.monotonic() < deadline:
        time.sleep(interval)
        now = read()
        same = same + 1 if now == last else 1
        last = now
    return last


def test_second_api_versions_before_sasl_closes(start_busgate, tmp_path):
    """As Kafka's SaslServerAuthenticator: one ApiVersions before SASL (an
    UNSUPPORTED_VERSION answer does not count, the client retries lower); a
    second one closes the connection, so an unauthenticated client cannot
    make busgate build answers it never reads. Once authenticated, ApiVersions
    is answered as often as asked, as the broker does."""
    bg, ports = start(start_busgate, tmp_path)
    w = KafkaWire(ports["listen"])
    # Above busgate's range (request header v2: client id, no tags):
    # UNSUPPORTED_VERSION in the v0 layout.
    payload = struct.pack(">hhih", 18, 9, 99, 6) + b"it-raw" + b"\0" + b"\0"
    w.sock.sendall(struct.pack(">i", len(payload)) + payload)
    r = w.recv()
    assert r is not None and r[0] == 99 and struct.unpack(">h", r[1][:2])[0] == 35, r
    w.api_versions()
    assert w.call(18, 0, b"") is None, "a second ApiVersions before SASL was answered"
    w.close()
    assert bg.wait_log(lambda l: "unexpected ApiVersions" in l.get("msg", ""))

    # Between SaslHandshake and SaslAuthenticate: closed as well.
    w = KafkaWire(ports["listen"])
    w.api_versions()
    assert struct.unpack(">h", w.call(17, 1, b"\x00\x05PLAIN")[:2])[0] == 0
    assert w.call(18, 0, b"") is None
    w.close()

    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    for _ in range(3):
        w.api_versions()
    w.close()


def test_answers_the_client_does_not_read_pause_reading(start_busgate, tmp_path):
    """A client that sends requests busgate answers itself (ApiVersions after
    authentication; denials are the same) and never reads the answers: busgate
    stops reading its requests once the answers waiting for it pass the 16 MiB
    output watermark, instead of buffering answers without bound, and reads
    again once the client catches up."""
    bg, ports = start(start_busgate, tmp_path)
    w = KafkaWire(ports["listen"], timeout=60)
    # The kernel's share of unread answers stays small (far below the
    # bound); smaller buffers make loopback TCP crawl once reading starts.
    w.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 10)
    w.login(oidc_token("svc-orders"))
    resp_len = 4 + 4 + len(w.call(18, 0, b""))
    base = requests_total(ports)

    # ApiVersions v0 with a null client id: 14 bytes for ~400 back.
    n = 150_000
    first = w.corr + 1
    sent = send_until_stalled(w.sock, api_versions_flood(first, n))
    processed = wait_stable(lambda: requests_total(ports)) - base
    # Answers busgate built while nobody read them: the 16 MiB watermark,
    # busgate's socket send buffer (at most 4 MiB by default) and the
    # in-flight limit's worth (~21 MiB); without backpressure all n of them
    # (~44 MB).
    assert processed * resp_len < 32 << 20, (processed, sent, resp_len)
    assert processed < n

    # Reading the answers lets busgate read the rest: every request sent is
    # answered, in order.
    expect = first
    total = sent // 14
    while expect < first + total:
        r = w.recv()
        assert r is not None, f"closed after {expect - first} of {total} answers"
        assert r[0] == expect
        expect += 1
    w.close()


def test_acks0_produce_while_audit_is_down_closes(start_busgate, tmp_path):
    """While the audit pipeline refuses events (block mode, its only sink
    failing: the audit file is /dev/full), a request that expects a
    response gets REQUEST_TIMED_OUT; an acks=0 produce expects none, and an
    answer would carry a correlation id the client never waits for, so the
    connection closes instead, as Kafka closes it when such a produce
    fails."""
    text, ports = busgate_config(tmp_path, RULES)
    text = text.replace(f"  file: {ports['audit']}\n", "  file: /dev/full\n")
    assert "file: /dev/full" in text
    bg = start_busgate(text, wait_for_port=ports["listen"])
    # Logged in while admitting; its session_start cannot be written.
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))

    def not_ready():
        status, body = http_get(f"http://127.0.0.1:{ports['admin']}/readyz")
        return status == 503 and "audit" in body
    assert wait_until(not_ready), bg.log_path.read_text()[-2000:]

    resp = w.call(0, 3, produce_v3_body("it-orders-audit-down", 1, value=None))
    assert resp is not None, "closed on an acks=1 produce"
    off = 4 + 2 + len("it-orders-audit-down") + 4 + 4  # topics, name, partitions, index
    assert struct.unpack(">h", resp[off:off + 2])[0] == 7  # REQUEST_TIMED_OUT
    w.send(0, 3, produce_v3_body("it-orders-audit-down", 0, value=None))
    assert w.closed_by_peer(), "an acks=0 produce was answered"
    w.close()
    assert bg.wait_log(lambda l: "audit pipeline unavailable" in l.get("msg", ""))


@pytest.mark.single_build
def test_closing_session_whose_client_does_not_read_ends(start_busgate, tmp_path):
    """A session closing after its last responses (here: a denied acks=0
    produce) whose client never reads them is closed anyway after a grace
    of 10 s; reading (and with it the idle timeout) is off by then."""
    bg, ports = start(start_busgate, tmp_path)
    w = KafkaWire(ports["listen"], timeout=60)
    w.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 10)
    w.login(oidc_token("svc-orders"))
    # ~13 MB of answers: more than the kernel holds, under the 16 MiB mark.
    n = 45_000
    data = api_versions_flood(w.corr + 1, n)
    corr = w.corr + n + 1
    payload = (struct.pack(">hhi", 0, 3, corr) + kstr("it-raw") +
               produce_v3_body("it-denied", 0, value=None))
    data += struct.pack(">i", len(payload)) + payload
    assert send_until_stalled(w.sock, data) == len(data)
    assert bg.wait_log(lambda l: "acks=0 produce denied" in l.get("msg", ""), timeout=60)
    assert bg.wait_log(lambda l: "last responses not taken" in l.get("msg", ""), timeout=30), \
        bg.log_path.read_text()[-2000:]
    assert wait_until(lambda: open_connections(ports) == 0)
    w.close()


def test_idle_timeout_waits_for_pending_requests(start_busgate, tmp_path):
    """idle_timeout does not end a session whose client waits for the broker
    (here a fetch that waits 4 s for data, with idle_timeout 1 s); once
    nothing is pending, the silent client is closed."""
    bg, ports = start(start_busgate, tmp_path, kafka_extra="  idle_timeout: 1s\n")
    topic = unique("it-orders-idle")
    create_topics([topic])
    token = oidc_token("svc-orders")  # before the socket: idle_timeout runs from accept
    w = KafkaWire(ports["listen"], timeout=30).login(token)
    corr = w.send(1, 4, fetch_v4(topic, 4000))
    r = w.recv()
    assert r is not None, "closed while the fetch was pending: " + bg.log_path.read_text()[-1000:]
    assert r[0] == corr
    assert w.closed_by_peer(timeout=15)
    w.close()
    assert bg.wait_log(lambda l: l.get("msg", "") == "closing connection: idle timeout")


def test_idle_timeout_closes_a_client_that_stops_reading(start_busgate, tmp_path):
    """A client that sends requests and never reads the answers: once
    busgate stops reading it (its output above the watermark), the client
    is still closed after idle_timeout without taking any output."""
    bg, ports = start(start_busgate, tmp_path, kafka_extra="  idle_timeout: 1s\n")
    token = oidc_token("svc-orders")  # before the socket: idle_timeout runs from accept
    w = KafkaWire(ports["listen"], timeout=30)
    w.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 10)
    w.login(token)
    send_until_stalled(w.sock, api_versions_flood(w.corr + 1, 100_000))
    assert bg.wait_log(lambda l: "idle timeout: the client reads no responses" in l.get("msg", ""),
                       timeout=60), bg.log_path.read_text()[-1000:]
    assert wait_until(lambda: open_connections(ports) == 0)
    w.close()


@pytest.mark.parametrize("inflight", [100, 1], ids=["reading", "reading-paused"])
def test_idle_timeout_closes_a_stalled_fetch_response(start_busgate, tmp_path, inflight):
    """A multi-megabyte fetch response moves to the client as it arrives
    (spliced in the kernel on plain TCP); a client that stops reading it
    halfway is closed after idle_timeout, though its request is in flight.
    Also when busgate has stopped reading the client meanwhile (its
    in-flight limit reached): the splice's own wait for the client ends."""
    bg, ports = start(start_busgate, tmp_path,
                      kafka_extra=f"  idle_timeout: 1s\n  max_inflight: {inflight}\n")
    topic = unique("it-orders-stall")
    create_topics([topic])
    token = oidc_token("svc-orders")
    p = Producer(client_conf(f"127.0.0.1:{ports['listen']}", token, **{"linger.ms": 20}))
    for _ in range(2000):
        p.produce(topic, value=b"x" * 4096)
    assert p.flush(60) == 0
    del p
    # scraped before the socket: idle_timeout (1 s) runs from accept
    spliced = scrape(ports["admin"], "busgate_bytes_spliced_total", {"protocol": "kafka"}) or 0
    w = KafkaWire(ports["listen"], timeout=30)
    w.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 10)
    w.login(token)
    peer = "%s:%d" % w.sock.getsockname()
    w.send(1, 4, fetch_v4(topic, 500))
    head = w._read(8)
    size = struct.unpack(">i", head[:4])[0]
    assert size > 6 << 20
    reasons = ("closing connection: idle timeout",
               "closing connection: idle timeout: the client reads no responses")
    line = bg.wait_log(lambda l: l.get("peer") == peer and l.get("msg", "") in reasons,
                       timeout=30)
    assert line, bg.log_path.read_text()[-1000:]
    if inflight == 1:  # no read timeout armed: only the splice's wait can end it
        assert line["msg"] == reasons[1], line
    # the response did go through the kernel relay
    assert (scrape(ports["admin"], "busgate_bytes_spliced_total", {"protocol": "kafka"}) or 0) \
        > spliced
    # What the kernels held, then the end: the response was cut short.
    got = 4
    try:
        while got < 4 + size:
            chunk = w.sock.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
    except ConnectionResetError:
        pass
    assert got < 4 + size
    w.close()


def produce_v3_split(topic, denied, denied_bytes):
    """A Produce v3 body naming an allowed topic (a few bytes) and a denied
    one (denied_bytes of records): busgate splits it, forwarding the allowed
    part and keeping the whole request until the broker answers."""
    def part(name, records):
        return kstr(name) + struct.pack(">ii", 1, 0) + struct.pack(">i", len(records)) + records
    return (kstr(None) + struct.pack(">hi", 1, 5000) + struct.pack(">i", 2) +
            part(topic, b"\0" * 100) + part(denied, b"\1" * denied_bytes))


@pytest.mark.single_build
def test_kept_request_copies_count_against_the_memory_cap(start_busgate, tmp_path):
    """Split Produces pipelined behind a fetch the broker holds: each keeps
    its whole request frame until the broker answers it (which the broker
    does only after the fetch: it serves a connection's requests in order).
    Those copies count against the connection's memory cap (max_frame_bytes
    + 64 MiB = 72 MiB here), so busgate stops reading the client instead of
    taking all 160 MiB; once the broker answers, it reads the rest."""
    bg, ports = start(start_busgate, tmp_path, kafka_extra="  max_frame_bytes: 8MiB\n")
    topic = unique("it-orders-mem")
    create_topics([topic])
    w = KafkaWire(ports["listen"], timeout=60).login(oidc_token("svc-orders"))
    # The 160 MiB are built before the fetch, whose 20 s must cover only the
    # sending below (at most 3 + 10 s).
    n, size = 40, 4 << 20
    first = w.corr + 2  # the fetch takes w.corr + 1
    parts = []
    for i in range(n):
        payload = (struct.pack(">hhi", 0, 3, first + i) + kstr("it-raw") +
                   produce_v3_split(topic, "it-denied-mem", size))
        parts.append(struct.pack(">i", len(payload)) + payload)
    data = b"".join(parts)
    del parts
    # No data: held for 20 s, well past the sending below even on a loaded machine.
    fetch = w.send(1, 4, fetch_v4(topic, 20000))
    assert fetch == first - 1
    sent = send_until_stalled(w.sock, data, stall=3.0, limit=10.0)
    # The cap and the kernels' socket buffers; without the copies counted,
    # everything (160 MiB).
    assert sent < 120 << 20, f"{sent >> 20} MiB taken behind an unanswered fetch"
    w.sock.sendall(data[sent:])
    r = w.recv()
    assert r is not None and r[0] == fetch, r
    for i in range(n):
        r = w.recv()
        assert r is not None and r[0] == first + i, (i, r)
    w.close()


@pytest.mark.parametrize("reset", [False, True], ids=["close", "reset"])
def test_client_closing_while_reading_is_paused_ends_the_session(start_busgate, tmp_path, reset):
    """A client whose reading busgate paused (here at max_inflight 2, both
    requests fetches the broker holds for 30 s, a third waiting unread)
    closes its connection, or resets it: the session ends at once, without
    waiting for the broker to answer and reading to resume, and busgate
    does not spin meanwhile (epoll reports a reset as readable, which a
    watch that may not read would see again and again)."""
    bg, ports = start(start_busgate, tmp_path, kafka_extra="  max_inflight: 2\n")
    topic = unique("it-orders-hangup")
    create_topics([topic])
    w = KafkaWire(ports["listen"], timeout=30).login(oidc_token("svc-orders"))
    peer = "%s:%d" % w.sock.getsockname()
    for _ in range(3):  # the third waits in busgate's input: reading is paused
        w.send(1, 4, fetch_v4(topic, 30000))
    assert wait_until(lambda: requests_total(ports) >= 5)  # ApiVersions, SASL x2, 2 fetches
    time.sleep(0.5)
    assert open_connections(ports) == 1
    if reset:
        w.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    cpu0 = cpu_seconds(bg.proc.pid)
    w.close()
    assert wait_until(lambda: open_connections(ports) == 0, timeout=5), \
        "session still open 5 s after its client closed: " + bg.log_path.read_text()[-1000:]
    time.sleep(1)
    assert cpu_seconds(bg.proc.pid) - cpu0 < 1.0, "busgate spun after the client left"
    assert not bg.wait_log(lambda l: l.get("peer") == peer and "idle" in l.get("msg", ""),
                           timeout=0.1)
