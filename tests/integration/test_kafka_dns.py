"""Upstream host names are resolved without stalling the worker: a broker
name whose lookup hangs must not hold up another session on the same
worker, and a name that does not resolve is reported with the resolver's
error.

busgate reads its nameservers from /etc/resolv.conf only, so each test runs
busgate in its own mount namespace with a resolv.conf bound over
/etc/resolv.conf that names a scripted nameserver (ScriptedDns, on a
127.x.y.z address, port 53). That needs root (CAP_SYS_ADMIN and a port
below 1024); elsewhere the tests are skipped. The host's /etc/resolv.conf
is never touched (the namespace is private)."""
import ctypes
import os
import queue
import random
import socket
import struct
import subprocess
import threading

import pytest

from kafka_env import KafkaWire, busgate_config, kstr, oidc_token
from kafka_fake import FakeKafka
from conftest import wait_port

RULES = """    - name: orders-everything
      subjects: [group:orders]
      resources: ["kafka:topic:*", "kafka:group:*", "kafka:cluster", "kafka:transactional-id:*"]
      verbs: [read, write, describe, create, delete, alter]
      effect: allow
"""

SLOW = "slow.busgate.test"


class ScriptedDns:
    """A UDP nameserver on addr:53. An A query for a name in `records` is
    answered with its address (other types: no answer), anything else with
    NXDOMAIN. A query for a name in `held` is answered only after
    release(). seen: every name asked; asked[name] is set on its first
    query."""

    def __init__(self, records, held=()):
        self.records, self.held = dict(records), set(held)
        self.seen, self.asked = [], {}
        self.released = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(20):
            self.addr = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
            try:
                self.sock.bind((self.addr, 53))
                break
            except OSError as e:
                err = e
        else:
            raise err
        threading.Thread(target=self._serve, daemon=True).start()

    def event(self, name):
        return self.asked.setdefault(name, threading.Event())

    def release(self):
        self.released.set()

    def close(self):
        self.released.set()
        self.sock.close()

    def _serve(self):
        while True:
            try:
                q, peer = self.sock.recvfrom(1500)
            except OSError:
                return
            if len(q) < 12:
                continue
            labels, i = [], 12
            while i < len(q) and q[i]:
                labels.append(q[i + 1:i + 1 + q[i]].decode(errors="replace"))
                i += 1 + q[i]
            qtype, = struct.unpack(">H", q[i + 1:i + 3])
            name = ".".join(labels).lower()
            self.seen.append(name)
            self.event(name).set()
            question = q[12:i + 5]
            answer = self._answer(q[:2], question, name, qtype)
            if name in self.held:
                threading.Thread(target=self._later, args=(answer, peer), daemon=True).start()
            else:
                self.sock.sendto(answer, peer)

    def _later(self, answer, peer):
        self.released.wait()
        try:
            self.sock.sendto(answer, peer)
        except OSError:
            pass

    def _answer(self, qid, question, name, qtype):
        if name not in self.records:
            return qid + struct.pack(">HHHHH", 0x8183, 1, 0, 0, 0) + question  # NXDOMAIN
        rr = b""
        if qtype == 1:
            rr = struct.pack(">HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(self.records[name])
        return qid + struct.pack(">HHHHH", 0x8180, 1, 1 if rr else 0, 0, 0) + question + rr


def _private_resolv_conf(path):
    """A preexec_fn: the child gets its own mount namespace in which path is
    bound over /etc/resolv.conf."""
    libc = ctypes.CDLL(None, use_errno=True)
    CLONE_NEWNS, MS_REC, MS_PRIVATE, MS_BIND = 0x20000, 0x4000, 0x40000, 0x1000

    def pre():
        if libc.unshare(CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare")
        if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
            raise OSError(ctypes.get_errno(), "mount private")
        if libc.mount(str(path).encode(), b"/etc/resolv.conf", None, MS_BIND, None) != 0:
            raise OSError(ctypes.get_errno(), "mount bind")
    return pre


@pytest.fixture
def fake():
    f = FakeKafka()
    yield f
    f.close()


@pytest.fixture
def dns(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root: a private /etc/resolv.conf and a nameserver on port 53")
    try:
        d = ScriptedDns({SLOW: "127.0.0.1"}, held={SLOW})
    except OSError as e:
        pytest.skip(f"cannot run a nameserver on port 53: {e}")
    conf = tmp_path / "resolv.conf"
    # One long try: the C library's getaddrinfo (the old, blocking lookup)
    # would otherwise give up after 5 s and hide the stall.
    conf.write_text(f"nameserver {d.addr}\noptions timeout:30 attempts:1\n")
    d.preexec = _private_resolv_conf(conf)
    try:
        probe = subprocess.run(["cat", "/etc/resolv.conf"], capture_output=True, text=True,
                               preexec_fn=d.preexec)
    except (OSError, subprocess.SubprocessError):
        probe = None  # no mount namespace here (a container without CAP_SYS_ADMIN)
    if probe is None or d.addr not in probe.stdout:
        d.close()
        pytest.skip("cannot bind a private /etc/resolv.conf")
    yield d
    d.close()


def start(start_busgate, tmp_path, fake, dns):
    # One worker: the sessions below share it.
    text, ports = busgate_config(tmp_path, RULES, security="plaintext", upstream=[fake.address],
                                 extra="workers: 1\n")
    bg = start_busgate(text, wait_for_port=ports["listen"], preexec_fn=dns.preexec)
    return bg, ports


def name_node_7(w, fake, host):
    """FindCoordinator on session w, answered by the fake broker with node 7
    at host:fake.port: busgate then serves node 7 on broker_port_base + 7."""
    corr = w.send(10, 1, kstr("it-g-dns") + b"\x00")
    up = fake.conns.get(timeout=10)
    req = up.next()
    assert (req.api_key, req.corr) == (10, corr)
    up.reply(corr, struct.pack(">ih", 0, 0) + kstr(None) + struct.pack(">i", 7) + kstr(host) +
             struct.pack(">i", fake.port))
    r = w.recv()
    assert r is not None and r[0] == corr, r
    return up


def list_groups(w, up, timeout=10):
    """ListGroups v1 on w, answered by the fake on up (a FakeConn, or the
    FakeKafka whose next new connection carries it): True when w got it."""
    corr = w.send(16, 1, b"")
    if isinstance(up, FakeKafka):
        up = up.conns.get(timeout=timeout)
    req = up.next(timeout)
    assert (req.api_key, req.corr) == (16, corr)
    up.reply(corr, struct.pack(">ihi", 0, 0, 0))
    r = w.recv()
    return r is not None and r[0] == corr


def test_slow_lookup_does_not_stall_the_worker(start_busgate, tmp_path, fake, dns):
    """A client on node 7's port logs in, so busgate looks up node 7's host,
    whose nameserver holds the answer. While it holds it, another session
    on the same (only) worker is still served; once the answer comes, node
    7's session reaches the broker at the resolved address. (With the
    blocking getaddrinfo the worker waited in the lookup and the other
    session's response did not come.)"""
    bg, ports = start(start_busgate, tmp_path, fake, dns)
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    up = name_node_7(w, fake, SLOW)
    assert wait_port(ports["base"] + 7)

    slow = KafkaWire(ports["base"] + 7, timeout=60)
    result = {}

    def slow_login():
        try:
            slow.login(oidc_token("svc-orders"))
            result["ok"] = list_groups(slow, fake, timeout=60)
        except Exception as e:  # reported by the assertion below
            result["error"] = repr(e)
    t = threading.Thread(target=slow_login, daemon=True)
    t.start()
    try:
        assert dns.event(SLOW).wait(20), f"busgate did not ask for {SLOW}: {dns.seen}"
        # The lookup is pending now; the worker must still serve w.
        try:
            served = list_groups(w, up)
        except (socket.timeout, queue.Empty):  # not forwarded, or not answered
            served = False
        assert served, "a session was stalled while another session's broker name was looked up"
    finally:
        dns.release()
    t.join(60)
    assert result.get("ok"), f"node 7's session did not reach the broker: {result}"
    w.close()
    slow.close()


def test_unresolvable_broker_name_logs_the_resolver_error(start_busgate, tmp_path, fake, dns):
    """A broker name the nameserver does not know: the connection fails and
    the log says the lookup failed, with the resolver's reason (not an
    unrelated errno text)."""
    bg, ports = start(start_busgate, tmp_path, fake, dns)
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    name_node_7(w, fake, "nonexistent.invalid")
    assert wait_port(ports["base"] + 7)
    c = KafkaWire(ports["base"] + 7)
    try:  # the login starts the upstream connection; its failure closes c
        c.login(oidc_token("svc-orders"))
    except (OSError, AssertionError):
        pass
    line = bg.wait_log(lambda l: l.get("msg", "").startswith("upstream nonexistent.invalid:"))
    assert line is not None, bg.log_path.read_text()[-3000:]
    assert "name lookup failed: " in line["msg"], line
    assert "nonexistent.invalid" in dns.seen
    c.close()
    w.close()


def test_localhost_resolves_from_hosts_without_a_nameserver(start_busgate, tmp_path, fake, dns):
    """`localhost` comes from /etc/hosts: node 7 at localhost is reached
    and the nameserver is never asked for it."""
    bg, ports = start(start_busgate, tmp_path, fake, dns)
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    name_node_7(w, fake, "localhost")
    assert wait_port(ports["base"] + 7)
    c = KafkaWire(ports["base"] + 7).login(oidc_token("svc-orders"))
    assert list_groups(c, fake)
    assert "localhost" not in dns.seen, dns.seen
    c.close()
    w.close()
