"""The AMQP upstream's host name is resolved without stalling the worker:
while its lookup hangs, a new client on the same worker is still greeted,
a session waiting for it goes on once the answer comes, and busgate stops
cleanly with lookups still pending. A name that does not resolve is
reported with the resolver's error.

Each test runs busgate against a scripted nameserver in a private mount
namespace (dns_env.py); without root they are skipped."""
import socket
import struct
import threading
import time

import pytest

from amqp_env import RABBIT_PORT, Issuer, busgate_config, connect, rule, unique
from dns_env import scripted_dns

SLOW = "slow-rabbit.busgate.test"


@pytest.fixture
def dns(tmp_path):
    yield from scripted_dns(tmp_path, {SLOW: "127.0.0.1"}, held={SLOW})


def start(start_busgate, tmp_path, dns, host):
    """busgate with one worker (everything below shares it) in front of
    the test RabbitMQ, named host."""
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(tmp_path, issuer,
                                 rule("all", ["*"], ["amqp:queue:*", "amqp:exchange:*"],
                                      ["read", "write", "create", "describe", "delete"]))
    text = text.replace("workers: 2", "workers: 1")
    text = text.replace(f"host: 127.0.0.1:{RABBIT_PORT}", f"host: {host}:{RABBIT_PORT}")
    assert "workers: 1" in text and f"host: {host}:" in text
    bg = start_busgate(text, wait_for_port=ports["listen"], preexec_fn=dns.preexec)
    return bg, ports, issuer


def greeted(port, timeout=10):
    """True when busgate answers a fresh client's protocol header with
    connection.start within timeout seconds."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        c.sendall(b"AMQP\x00\x00\x09\x01")
        head = b""
        try:
            while len(head) < 11:
                chunk = c.recv(11 - len(head))
                if not chunk:
                    return False
                head += chunk
        except socket.timeout:
            return False
        ftype, channel, _size, cls, meth = struct.unpack(">BHIHH", head)
        return (ftype, channel, cls, meth) == (1, 0, 10, 10)


def connect_in_thread(port, token):
    """A pika login through busgate on a thread; returns (thread, result):
    result["conn"] once connection.open-ok came, result["error"] if not."""
    result = {}

    def run():
        try:
            result["conn"] = connect(port, token, socket_timeout=60, stack_timeout=60,
                                     blocked_timeout=None)
        except Exception as e:  # reported by the caller's assertion
            result["error"] = repr(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


def test_slow_upstream_lookup_does_not_stall_the_worker(start_busgate, tmp_path, dns):
    """The readiness probe and a client's login both wait on the held
    lookup; meanwhile a new client is greeted on the same (only) worker.
    Once the answer comes, the waiting client's connection opens and works.
    (A blocking getaddrinfo held the worker in the probe's lookup: no
    greeting came.)"""
    bg, ports, issuer = start(start_busgate, tmp_path, dns, SLOW)
    assert dns.event(SLOW).wait(20), f"busgate did not ask for {SLOW}: {dns.seen}"
    t, result = connect_in_thread(ports["listen"], issuer.mint("svc-a"))
    try:
        assert greeted(ports["listen"]), "a new client was not greeted while the upstream name was looked up"
        assert "conn" not in result and "error" not in result, result
    finally:
        dns.release()
    t.join(60)
    assert "conn" in result, f"the waiting client's connection did not open: {result}"
    conn = result["conn"]
    ch = conn.channel()
    q = unique("it-dns")
    ch.queue_declare(q, auto_delete=True)
    ch.basic_publish("", q, b"after the lookup")
    deadline = time.monotonic() + 10
    body = None
    while body is None and time.monotonic() < deadline:
        body = ch.basic_get(q, auto_ack=True)[2]
    assert body == b"after the lookup"
    conn.close()


def test_stop_with_lookups_pending(start_busgate, tmp_path, dns):
    """SIGTERM while the probe's and a client's lookups are still held:
    busgate ends the waiting client and exits 0 within its drain bound
    (under AddressSanitizer a leak or a use after free of the pending
    lookup would make the exit status non-zero)."""
    bg, ports, issuer = start(start_busgate, tmp_path, dns, SLOW)
    assert dns.event(SLOW).wait(20), f"busgate did not ask for {SLOW}: {dns.seen}"
    time.sleep(0.5)  # the probe's queries (A and AAAA) are all in
    probe_queries = dns.seen.count(SLOW)
    t, result = connect_in_thread(ports["listen"], issuer.mint("svc-a"))
    deadline = time.monotonic() + 10
    while dns.seen.count(SLOW) == probe_queries and time.monotonic() < deadline:
        time.sleep(0.05)  # the client's own lookup
    assert dns.seen.count(SLOW) > probe_queries, dns.seen
    started = time.monotonic()
    rc = bg.stop(timeout=30)
    assert rc == 0, bg.log_path.read_text()[-3000:]
    assert time.monotonic() - started < 25
    t.join(30)
    assert "error" in result, f"the client waiting for the upstream was not ended: {result}"


def test_unresolvable_upstream_name_logs_the_resolver_error(start_busgate, tmp_path, dns):
    """An upstream name the nameserver does not know: the log says the
    lookup failed with the resolver's reason, and a client's login is
    refused rather than left waiting."""
    bg, ports, issuer = start(start_busgate, tmp_path, dns, "nonexistent.invalid")
    line = bg.wait_log(lambda l: l.get("msg", "").startswith("upstream nonexistent.invalid:"))
    assert line is not None, bg.log_path.read_text()[-3000:]
    assert "name lookup failed: " in line["msg"], line
    assert "nonexistent.invalid" in dns.seen
    t, result = connect_in_thread(ports["listen"], issuer.mint("svc-a"))
    t.join(40)
    assert "320" in result.get("error", ""), f"a login without an upstream was not closed with 320: {result}"
