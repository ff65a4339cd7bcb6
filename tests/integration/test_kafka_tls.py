"""Client-side TLS on busgate's Kafka listeners (kafka.tls): a client with
SASL_SSL and busgate's CA produces and consumes through busgate; a client
that does not trust the certificate cannot connect."""
import subprocess

import pytest
from confluent_kafka import Consumer, KafkaError, Producer

from kafka_env import busgate_config, client_conf, oidc_token, unique

RULES = """    - name: tls-orders
      subjects: [group:orders]
      resources: ["kafka:topic:tls-*", "kafka:group:tls-*"]
      verbs: [write, read, describe, create]
      effect: allow
"""


def make_cert(d):
    """A self-signed certificate for 127.0.0.1 (and its key), made with openssl."""
    cert, key = d / "busgate.crt", d / "busgate.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_sasl_ssl_produce_consume(start_busgate, tmp_path):
    cert, key = make_cert(tmp_path)
    text, ports = busgate_config(tmp_path, RULES,
                                 kafka_extra=f"  tls: {{cert: {cert}, key: {key}}}\n")
    start_busgate(text, wait_for_port=ports["listen"])
    boot = f"127.0.0.1:{ports['listen']}"
    token = oidc_token("svc-orders")
    topic = unique("tls-t")
    tls = {"security.protocol": "SASL_SSL", "ssl.ca.location": str(cert)}
    p = Producer(client_conf(boot, token, **tls))
    results = []
    for i in range(10):
        p.produce(topic, value=f"v{i}".encode(), on_delivery=lambda e, m: results.append(e))
    assert p.flush(30) == 0
    assert results == [None] * 10

    c = Consumer(client_conf(boot, token, **tls, **{"group.id": unique("tls-g"),
                                                    "auto.offset.reset": "earliest",
                                                    "session.timeout.ms": 6000}))
    c.subscribe([topic])
    got = []
    for _ in range(60):
        m = c.poll(1.0)
        if m is not None and not m.error():
            got.append(m.value())
        if len(got) == 10:
            break
    c.close()
    assert sorted(got) == sorted(f"v{i}".encode() for i in range(10))


@pytest.mark.single_build
def test_untrusted_certificate_is_refused(start_busgate, tmp_path):
    cert, key = make_cert(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    other_cert, _ = make_cert(other)
    text, ports = busgate_config(tmp_path, RULES,
                                 kafka_extra=f"  tls: {{cert: {cert}, key: {key}}}\n")
    start_busgate(text, wait_for_port=ports["listen"])
    boot = f"127.0.0.1:{ports['listen']}"
    errors = []
    p = Producer(client_conf(boot, oidc_token("svc-orders"),
                             **{"security.protocol": "SASL_SSL",
                                "ssl.ca.location": str(other_cert),
                                "error_cb": lambda e: errors.append(e)}))
    p.produce(unique("tls-t"), value=b"x")
    p.flush(8)
    assert errors, "a client that does not trust busgate's certificate connected"
    # The client itself refused busgate's certificate (not: busgate was down).
    assert any(e.code() == KafkaError._SSL and "certificate verify failed" in e.str()
               for e in errors), errors
