"""Client-side TLS on busgate's Kafka listeners (kafka.tls): a client with
SASL_SSL and busgate's CA produces and consumes through busgate; a client
that does not trust the certificate cannot connect. A close without
close_notify is a close; an encrypted private key is refused at start-up."""
import ssl
import subprocess

import pytest
from confluent_kafka import Consumer, KafkaError, Producer

from conftest import busgate_bin, wait_audit
from kafka_env import KafkaWire, busgate_config, client_conf, oidc_token, unique

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


def tls_wire(port, ca, client=None, ragged=True):
    """A KafkaWire over TLS trusting ca (client: (cert, key) to present).
    ragged=False: a close without close_notify raises instead of reading as
    the end of the stream."""
    w = KafkaWire(port)
    ctx = ssl.create_default_context(cafile=str(ca))
    if client:
        ctx.load_cert_chain(str(client[0]), str(client[1]))
    w.sock = ctx.wrap_socket(w.sock, server_hostname="127.0.0.1", suppress_ragged_eofs=ragged)
    return w


def start_tls(start_busgate, tmp_path, kafka_extra="", tls_extra=""):
    cert, key = make_cert(tmp_path)
    tls = f"  tls: {{cert: {cert}, key: {key}{tls_extra}}}\n"
    text, ports = busgate_config(tmp_path, RULES, kafka_extra=tls + kafka_extra)
    return start_busgate(text, wait_for_port=ports["listen"]), ports, cert


def session_ends(ports, prefix, count=1):
    return wait_audit(ports["audit"], lambda e: e["kind"] == "session_end"
                      and e.get("detail", "").startswith(prefix), count=count)


def test_tcp_close_without_close_notify_is_a_close(start_busgate, tmp_path):
    """A TLS client closing its socket without close_notify ends the session
    as a close (OpenSSL 3 would report "unexpected eof while reading")."""
    bg, ports, cert = start_tls(start_busgate, tmp_path)
    w = tls_wire(ports["listen"], cert).login(oidc_token("svc-orders"))
    w.sock.close()  # Python's ssl sends close_notify only from unwrap()
    (end,) = session_ends(ports, "client ")
    assert end["detail"] == "client closed the connection", end
    assert not [l for l in bg.log_lines() if "client connection error" in l.get("msg", "")]


def test_encrypted_private_key_is_refused_at_start(tmp_path):
    """An encrypted private key stops `busgate run` at once with an error
    that says so (no pass phrase prompt, no OpenSSL "UI routines" error;
    stdin is not a terminal and there is no controlling terminal)."""
    cert, _ = make_cert(tmp_path)
    key = tmp_path / "encrypted.key"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-aes256", "-pass", "pass:x",
                    "-out", str(key)], check=True, capture_output=True)
    text, _ = busgate_config(tmp_path, RULES, kafka_extra=f"  tls: {{cert: {cert}, key: {key}}}\n")
    cfg = tmp_path / "busgate.yaml"
    cfg.write_text(text)
    r = subprocess.run([busgate_bin(), "run", "-c", str(cfg)], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=30, start_new_session=True)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert f"kafka.tls cert/key: encrypted private keys are not supported ({key})" in out, out
