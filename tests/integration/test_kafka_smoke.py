"""Produce and consume through busgate in front of the real broker, with a
token from the test OIDC provider; a denied topic gives the client
TOPIC_AUTHORIZATION_FAILED."""
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from kafka_env import busgate_config, client_conf, oidc_token, unique, wait_audit

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
                      lambda e: e["kind"] == "decision" and e["decision"]["effect"] == "deny")
