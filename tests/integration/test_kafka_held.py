"""Requests that arrive before busgate's upstream connection is ready are
held, then checked against the upstream's versions and forwarded in order.

busgate answers SASL itself, so a client that skips ApiVersions can be
authenticated and pipeline its first requests while busgate's own
connection to the broker is still being set up. A TCP proxy that starts
relaying only after a delay sits between busgate and librdkafka's mock
cluster (tests/integration/mockcluster), so that window is seconds long and
the test is deterministic. The proxy also records every request frame
busgate sends upstream."""
import os
import socket
import struct
import threading
import time

import pytest

from kafka_env import (KafkaWire, MockCluster, busgate_config, free_port, kbytes, kstr,
                       mockcluster_bin, oidc_token, unique, wait_audit)

# create: the held Metadata v1 names a topic; without create busgate would
# prepare it as v4 (no auto-creation), which the mock cluster cannot take.
RULES = """    - name: orders-topics
      subjects: [group:orders]
      resources: ["kafka:topic:it-orders-*"]
      verbs: [write, describe, read, create]
      effect: allow
"""
DELAY = 2.0


class DelayProxy:
    """Accepts on 127.0.0.1:port; each connection is relayed to target only
    after `delay` seconds. requests: (api_key, version) of every request
    frame seen from the accepted side, per connection."""

    def __init__(self, target, delay, stall_first_metadata=False):
        self.target = target
        self.delay = delay
        # the first connection's first Metadata request (and what follows)
        # is swallowed: an upstream that went silent after the handshake
        self.stall_first_metadata = stall_first_metadata
        self.port = free_port()
        self.requests = []
        self.lock = threading.Lock()
        self.stopping = False
        self.srv = socket.create_server(("127.0.0.1", self.port))
        self.srv.settimeout(0.2)
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            seen = []
            with self.lock:
                self.requests.append(seen)
                stall = self.stall_first_metadata and len(self.requests) == 1
            t = threading.Thread(target=self._serve, args=(conn, seen, stall), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, conn, seen, stall=False):
        deadline = time.monotonic() + self.delay
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(0.05)
        host, port = self.target.rsplit(":", 1)
        try:
            up = socket.create_connection((host, int(port)), timeout=5)
        except OSError:
            conn.close()
            return
        back = threading.Thread(target=self._pump, args=(up, conn, None), daemon=True)
        back.start()
        self._pump(conn, up, seen, stall)
        back.join(5)

    def _pump(self, src, dst, seen, stall=False):
        """Relays src to dst; with seen, records each request frame. With
        stall, relays whole frames up to the first Metadata request, then
        nothing more (the frames are read and dropped)."""
        src.settimeout(0.2)
        buf, swallowing = b"", False
        while not self.stopping:
            try:
                data = src.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            if seen is not None:
                buf += data
                out = b""
                while len(buf) >= 8 and len(buf) >= 4 + struct.unpack(">i", buf[:4])[0]:
                    size = struct.unpack(">i", buf[:4])[0]
                    seen.append(struct.unpack(">hh", buf[4:8]))
                    swallowing = swallowing or (stall and seen[-1][0] == 3)
                    if not swallowing:
                        out += buf[:4 + size]
                    buf = buf[4 + size:]
                if stall:
                    data = out  # whole frames only, none from the Metadata on
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def seen(self):
        with self.lock:
            return [list(r) for r in self.requests]

    def close(self):
        self.stopping = True
        self.srv.close()
        for t in self.threads:
            t.join(5)


def _setup(start_busgate, tmp_path):
    assert os.path.exists(mockcluster_bin()), \
        "build the bg_mockcluster target (tests/integration/mockcluster)"
    mock = MockCluster(1)
    topic = unique("it-orders")
    assert mock.command(f"create {topic} 1 1") == "ok"
    proxy = DelayProxy(mock.bootstrap.split(",")[0], DELAY)
    text, ports = busgate_config(tmp_path, RULES, security="plaintext",
                                 upstream=[f"127.0.0.1:{proxy.port}"])
    bg = start_busgate(text, wait_for_port=ports["listen"])
    return mock, proxy, bg, ports, topic


def _pipeline_sasl(w, token):
    """Sends SaslHandshake v1 and SaslAuthenticate v1 without waiting."""
    return [w.send(17, 1, kstr("PLAIN")), w.send(36, 1, kbytes(b"\0it\0" + token.encode()))]


def _expect_sasl_ok(w, corrs):
    for corr in corrs:
        r = w.recv()
        assert r is not None and r[0] == corr, r
        assert struct.unpack(">h", r[1][:2])[0] == 0, f"SASL step {corr} failed"


def _discovered(bg, timeout=DELAY + 20):
    """Waits until busgate's own discovery connection (through the proxy)
    has learned the broker."""
    assert bg.wait_log(lambda l: "upstream discovery: 1 broker(s)" in l.get("msg", ""),
                       timeout=timeout), bg.log_path.read_text()[-2000:]


def test_held_request_is_forwarded_once_upstream_ready(start_busgate, tmp_path):
    mock, proxy, bg, ports, topic = _setup(start_busgate, tmp_path)
    try:
        _discovered(bg)  # busgate's own metadata connection is through
        n_before = len(proxy.seen())
        t0 = time.monotonic()  # before the connect: the hold can only look longer
        w = KafkaWire(ports["listen"], timeout=DELAY + 10)
        corrs = _pipeline_sasl(w, oidc_token("svc-orders"))
        md = w.send(3, 1, struct.pack(">i", 1) + kstr(topic))
        _expect_sasl_ok(w, corrs)
        r = w.recv()
        held_for = time.monotonic() - t0
        assert r is not None and r[0] == md, "Metadata not answered in order"
        body = r[1]
        nbrokers = struct.unpack(">i", body[:4])[0]
        assert nbrokers == 1
        # The one topic, with no error: the broker answered, not busgate.
        assert kstr(topic) in body
        off = body.index(kstr(topic)) - 2
        assert struct.unpack(">h", body[off:off + 2])[0] == 0
        assert held_for >= DELAY - 0.5, f"answered after {held_for:.2f}s: was it held?"
        w.close()
        # On the session's own upstream connection, the Metadata went after
        # busgate's ApiVersions.
        sessions = [r for r in proxy.seen()[n_before:] if (3, 1) in r]
        assert len(sessions) == 1, proxy.seen()
        assert sessions[0].index((3, 1)) > sessions[0].index(next(x for x in sessions[0]
                                                                   if x[0] == 18))
        assert wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                          and e["api"]["name"] == "Metadata"
                          and e["decision"]["effect"] == "allow")
    finally:
        proxy.close()
        assert mock.close() == 0


@pytest.mark.single_build
def test_discovery_recovers_from_a_silent_upstream(start_busgate, tmp_path):
    """busgate's broker discovery connects at start; this upstream completes
    the handshake, then never answers the Metadata request. Discovery gives
    the round up after its deadline and connects again (and learns the
    broker), instead of waiting on that connection for good."""
    mock = MockCluster(1)
    proxy = DelayProxy(mock.bootstrap.split(",")[0], 0, stall_first_metadata=True)
    try:
        text, ports = busgate_config(tmp_path, RULES, security="plaintext",
                                     upstream=[f"127.0.0.1:{proxy.port}"])
        bg = start_busgate(text, wait_for_port=ports["listen"])
        _discovered(bg, timeout=40)
        assert bg.wait_log(lambda l: "no answer within" in l.get("msg", ""), timeout=1)
        first = proxy.seen()[0]
        assert any(k == 3 for k, _ in first), first  # the stalled round did ask
    finally:
        proxy.close()
        assert mock.close() == 0


def test_held_request_the_upstream_cannot_take_closes(start_busgate, tmp_path):
    """Produce v8 is within busgate's range but beyond the mock's (v0-7):
    once the upstream's versions are known, the held request closes the
    connection, as a broker closes on a version it does not support, and
    nothing of it goes upstream."""
    mock, proxy, bg, ports, topic = _setup(start_busgate, tmp_path)
    try:
        _discovered(bg)
        n_before = len(proxy.seen())
        w = KafkaWire(ports["listen"], timeout=DELAY + 10)
        corrs = _pipeline_sasl(w, oidc_token("svc-orders"))
        produce = struct.pack(">h", -1)  # transactional id: null
        produce += struct.pack(">hi", 1, 5000)  # acks, timeout
        produce += struct.pack(">i", 1) + kstr(topic) + struct.pack(">i", 1)
        produce += struct.pack(">ii", 0, -1)  # partition 0, records: null
        w.send(0, 8, produce)
        _expect_sasl_ok(w, corrs)
        assert w.closed_by_peer(DELAY + 10), "connection not closed"
        w.close()
        time.sleep(0.5)
        after = proxy.seen()[n_before:]
        assert after, "busgate made no upstream connection for the session"
        assert not any(k == 0 for r in after for k, _ in r), after
        log = bg.log_path.read_text()
        assert "unsupported api 0 version 8" in log, log[-2000:]
    finally:
        proxy.close()
        assert mock.close() == 0
