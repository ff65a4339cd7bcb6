"""Three brokers behind busgate (librdkafka's mock cluster in a child
process, tests/integration/mockcluster): a partition leader moves to
another broker while a client produces and consumes through busgate;
nothing is lost and the client only ever talks to busgate's ports."""
import os
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from kafka_env import (MockCluster, audit_events, busgate_config, client_conf, mockcluster_bin,
                       oidc_token, unique, wait_audit)
from test_audit_events import fields_of

RULES = """    - name: orders-topics
      subjects: [group:orders]
      resources: ["kafka:topic:it-orders-*"]
      verbs: [write, describe, read]
      effect: allow
    - name: orders-groups
      subjects: [group:orders]
      resources: ["kafka:group:it-*"]
      verbs: [read, describe]
      effect: allow
"""


def produce_batch(p, topic, prefix, n):
    results = []
    for i in range(n):
        p.produce(topic, value=f"{prefix}{i}".encode(), partition=0,
                  on_delivery=lambda e, m: results.append(e))
    assert p.flush(30) == 0
    return results


def consume(c, want, timeout=30.0):
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            assert m.error().code() == KafkaError._PARTITION_EOF, str(m.error())
            continue
        got.append(m.value())
    return got


def test_leader_move_behind_busgate(start_busgate, tmp_path):
    assert os.path.exists(mockcluster_bin()), \
        "build the bg_mockcluster target (tests/integration/mockcluster)"
    mock = MockCluster(3)
    try:
        _run(start_busgate, tmp_path, mock)
    finally:
        assert mock.close() == 0


def _run(start_busgate, tmp_path, mock):
    mock_addrs = mock.bootstrap.split(",")
    assert len(mock_addrs) == 3
    topic = unique("it-orders")
    assert mock.command(f"create {topic} 1 3") == "ok"

    text, ports = busgate_config(tmp_path, RULES, security="plaintext", upstream=mock_addrs)
    start_busgate(text, wait_for_port=ports["listen"])
    boot = f"127.0.0.1:{ports['listen']}"
    token = oidc_token("svc-orders")
    broker_ports = {ports["base"] + n for n in (1, 2, 3)}
    mock_ports = {int(a.rsplit(":", 1)[1]) for a in mock_addrs}

    p = Producer(client_conf(boot, token))
    c = Consumer(client_conf(boot, token, **{"group.id": unique("it-g"),
                                              "enable.auto.commit": False,
                                              "session.timeout.ms": 6000}))
    c.assign([TopicPartition(topic, 0, 0)])

    def leader():
        md = p.list_topics(topic=topic, timeout=10)
        assert {b.port for b in md.brokers.values()} == broker_ports
        assert all(b.host == "127.0.0.1" for b in md.brokers.values())
        assert not {b.port for b in md.brokers.values()} & mock_ports
        return md.topics[topic].partitions[0].leader

    old = leader()
    assert old in (1, 2, 3)
    assert produce_batch(p, topic, "a", 20) == [None] * 20
    assert consume(c, 20) == [f"a{i}".encode() for i in range(20)]

    new = old % 3 + 1
    assert mock.command(f"leader {topic} 0 {new}") == "ok"
    assert produce_batch(p, topic, "b", 20) == [None] * 20
    assert consume(c, 20) == [f"b{i}".encode() for i in range(20)]
    c.close()

    # The clients learned the new leader from busgate's rewritten metadata
    # (leader() asserts they only ever see busgate's ports, never the mock's)
    # and so reached it through busgate: the produce and consume after the
    # move succeeded.
    assert leader() == new

    # A fresh consumer reads everything from the start: nothing was lost.
    c2 = Consumer(client_conf(boot, token, **{"group.id": unique("it-g"),
                                               "enable.auto.commit": False,
                                               "session.timeout.ms": 6000}))
    c2.assign([TopicPartition(topic, 0, 0)])
    everything = consume(c2, 40)
    c2.close()
    assert everything == [f"a{i}".encode() for i in range(20)] + \
        [f"b{i}".encode() for i in range(20)]
    del p

    # Every audit event of the run (sessions on three brokers, a leader
    # move) conforms to the full JSON Schema, with the fields its kind needs.
    ends = wait_audit(ports["audit"], lambda e: e["kind"] == "session_end", count=3, timeout=20)
    assert ends, "no session_end for the producer and the consumers"
    events = audit_events(ports["audit"])
    assert {"session_start", "decision", "session_end"} <= {e["kind"] for e in events}
    assert [x for e in events for x in fields_of(e)] == []
