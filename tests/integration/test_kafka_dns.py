"""Upstream host names are resolved without stalling the worker: a broker
name whose lookup hangs must not hold up another session on the same
worker, and a name that does not resolve is reported with the resolver's
error.

Each test runs busgate against a scripted nameserver in a private mount
namespace (dns_env.py); without root they are skipped."""
import queue
import socket
import struct
import threading

import pytest

from dns_env import scripted_dns
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


@pytest.fixture
def fake():
    f = FakeKafka()
    yield f
    f.close()


@pytest.fixture
def dns(tmp_path):
    yield from scripted_dns(tmp_path, {SLOW: "127.0.0.1"}, held={SLOW})


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
