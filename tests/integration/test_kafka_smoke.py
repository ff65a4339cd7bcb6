"""Produce and consume through busgate in front of the real broker, with a
token from the test OIDC provider; a denied topic gives the client
TOPIC_AUTHORIZATION_FAILED."""
import hashlib
import os
import socket
import struct
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from kafka_env import (KafkaWire, busgate_config, client_conf, create_topics, kstr, oidc_token,
                       scrape, unique, wait_audit)

RULES = """    - name: orders-write
      subjects: [group:orders]
      resources: ["kafka:topic:it-orders-*"]
      verbs: [write, describe, create, read]
      effect: allow
    - name: orders-groups
      subjects: [group:orders]
      resources: ["kafka:group:it-*"]
      verbs: [read, describe]
      effect: allow
"""


def test_produce_consume_and_denial(start_busgate, tmp_path):
    text, ports = busgate_config(tmp_path, RULES)
    start_busgate(text, wait_for_port=ports["listen"])
    boot = f"127.0.0.1:{ports['listen']}"
    token = oidc_token("svc-orders")
    topic = unique("it-orders")
    p = Producer(client_conf(boot, token))
    errors = []
    for i in range(20):
        p.produce(topic, value=f"m{i}".encode(), on_delivery=lambda e, m: errors.append(e))
    assert p.flush(30) == 0
    assert errors == [None] * 20

    c = Consumer(client_conf(boot, token, **{"group.id": unique("it-g"),
                                              "auto.offset.reset": "earliest",
                                              "session.timeout.ms": 6000}))
    c.subscribe([topic])
    got = []
    for _ in range(60):
        m = c.poll(1.0)
        if m is not None and not m.error():
            got.append(m.value())
        if len(got) == 20:
            break
    c.close()
    assert sorted(got) == sorted(f"m{i}".encode() for i in range(20))

    denied = []
    p.produce("payments", value=b"x", on_delivery=lambda e, m: denied.append(e))
    p.flush(30)
    assert denied and denied[0] is not None
    assert denied[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # Audit events are written by the audit thread, shortly after the decision.
    assert wait_audit(ports["audit"],
                      lambda e: e["kind"] == "decision" and e["decision"]["effect"] == "deny"
                      and any(r["name"] == "payments" for r in e.get("resources", [])))


def test_large_fetch_responses_arrive_whole(start_busgate, tmp_path):
    """Fetch responses of about a megabyte (many 4 KiB records) reach a
    consumer group intact and in order while the consumer's commits and
    heartbeats share the connection; with both legs plain TCP most of those
    bytes move socket to socket in the kernel (busgate_bytes_spliced_total)."""
    text, ports = busgate_config(tmp_path, RULES)
    start_busgate(text, wait_for_port=ports["listen"])
    boot = f"127.0.0.1:{ports['listen']}"
    token = oidc_token("svc-orders")
    topic = unique("it-orders-big")
    create_topics([topic], partitions=2)
    count, size = 3000, 4096
    sent = {}
    p = Producer(client_conf(boot, token, **{"linger.ms": 20}))
    for i in range(count):
        value = i.to_bytes(4, "big") + os.urandom(size - 4)
        sent[i] = hashlib.sha256(value).digest()
        p.produce(topic, key=str(i).encode(), value=value)
        if i % 500 == 0:
            p.poll(0)
    assert p.flush(60) == 0

    c = Consumer(client_conf(boot, token, **{"group.id": unique("it-g-big"),
                                              "auto.offset.reset": "earliest",
                                              "enable.auto.commit": True,
                                              "auto.commit.interval.ms": 100,
                                              "session.timeout.ms": 6000}))
    c.subscribe([topic])
    got, last_offset = {}, {}
    deadline = time.monotonic() + 90
    while len(got) < count and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is None or m.error():
            continue
        assert m.offset() > last_offset.get(m.partition(), -1)  # in order per partition
        last_offset[m.partition()] = m.offset()
        i = int.from_bytes(m.value()[:4], "big")
        got[i] = hashlib.sha256(m.value()).digest()
    c.close()
    assert len(got) == count
    assert got == sent

    spliced = scrape(ports["admin"], "busgate_bytes_spliced_total", {"protocol": "kafka"})
    out = scrape(ports["admin"], "busgate_bytes_out_total", {"protocol": "kafka"})
    assert spliced > (count * size) // 2, (spliced, out)
    assert out > spliced  # response headers and the other responses are copied


def _fetch_v4(topic, max_bytes):
    """A Fetch v4 body: partition 0 of topic from offset 0."""
    part = struct.pack(">iqi", 0, 0, max_bytes)
    topics = struct.pack(">i", 1) + kstr(topic) + struct.pack(">i", 1) + part
    return struct.pack(">iiiib", -1, 500, 1, max_bytes, 0) + topics


def test_client_gone_mid_fetch_response(start_busgate, tmp_path):
    """A client that leaves (reset) while a multi-megabyte fetch response is
    still moving to it costs only its own connection: busgate logs why, the
    next client gets the whole response, and busgate exits cleanly (the
    sanitizer builds fail the test on any memory error)."""
    text, ports = busgate_config(tmp_path, RULES)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    boot = f"127.0.0.1:{ports['listen']}"
    token = oidc_token("svc-orders")
    topic = unique("it-orders-gone")
    create_topics([topic], partitions=1)
    p = Producer(client_conf(boot, token, **{"linger.ms": 20}))
    for i in range(1500):
        p.produce(topic, value=os.urandom(4096))
    assert p.flush(60) == 0

    def authenticated():
        w = KafkaWire(ports["listen"])
        w.api_versions()
        assert w.sasl_plain(token)[0] == 0
        return w

    gone = authenticated()
    gone.send(1, 4, _fetch_v4(topic, 8 << 20))
    head = gone._read(8)
    assert head is not None
    assert struct.unpack(">i", head[:4])[0] > 4 << 20  # most of the 6 MB still to come
    gone.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    gone.close()  # reset, with the response mostly unsent
    # Whichever notices first (the client socket's error event or the
    # splice's failed write) closes that session.
    assert bg.wait_log(lambda l: l.get("msg", "").startswith("closing connection")
                       and ("client connection" in l["msg"] or "cannot send a response" in l["msg"]),
                       timeout=15)

    w = authenticated()
    corr = w.send(1, 4, _fetch_v4(topic, 8 << 20))
    r = w.recv()
    assert r is not None and r[0] == corr
    body = r[1]
    # throttle_time_ms, 1 topic, its name, 1 partition, partition 0, error 0
    off = 4 + 4 + 2 + len(topic.encode()) + 4
    pidx, err = struct.unpack(">ih", body[off:off + 6])
    assert (pidx, err) == (0, 0)
    assert len(body) > 4 << 20
    w.close()
    assert bg.proc.poll() is None
    # The whole response above went through the splice path.
    assert scrape(ports["admin"], "busgate_bytes_spliced_total", {"protocol": "kafka"}) > 4 << 20
