"""Client-side TLS on busgate's Kafka listeners (kafka.tls): a client with
SASL_SSL and busgate's CA produces and consumes through busgate; a client
that does not trust the certificate cannot connect. busgate logs why a TLS
connection failed (OpenSSL's reason), takes a close without close_notify as
a close, ends its own TLS connections with close_notify, refuses an
encrypted private key at start-up and says in its start-up lines which legs
are TLS."""
import os
import socket
import ssl
import subprocess

import pytest
from confluent_kafka import Consumer, KafkaError, Producer

from conftest import busgate_bin, wait_audit
from kafka_env import (KAFKA_SSL, KafkaWire, busgate_config, client_conf,
                       kafka_ssl_listener_configured, kafka_tls_ca, oidc_token, unique, wait_until)
from test_amqp_tls import make_ca_and_leaf

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


def refused(connect):
    """True when the connection connect() makes is closed before its first
    answer: the handshake fails, or (TLS 1.3, where busgate checks a client
    certificate after the client's handshake is done) the first request does."""
    try:
        return connect().call(18, 0, b"") is None
    except (ssl.SSLError, OSError):
        return True


def session_ends(ports, prefix, count=1):
    return wait_audit(ports["audit"], lambda e: e["kind"] == "session_end"
                      and e.get("detail", "").startswith(prefix), count=count)


def test_tls_failures_say_openssl_reason(start_busgate, tmp_path):
    """A failed TLS connection is logged with OpenSSL's reason, as on the
    AMQP listener: plaintext to the TLS listener, no client certificate with
    client_ca, a client that does not trust busgate's certificate, a broken
    record after the login (also in that session's session_end detail)."""
    cca, ccert, ckey = make_ca_and_leaf(tmp_path / "clients", "DNS:client")
    bg, ports, cert = start_tls(start_busgate, tmp_path, tls_extra=f", client_ca: {cca}")
    (tmp_path / "other").mkdir()
    other, _ = make_cert(tmp_path / "other")

    def closed(why):
        return [l for l in bg.log_lines() if l.get("msg", "").startswith(
            "closing connection: client connection error: TLS ") and why in l["msg"]]

    plain = KafkaWire(ports["listen"])
    plain.send(18, 0, b"")
    assert plain.closed_by_peer(10)
    assert wait_until(lambda: closed("wrong version number")), bg.log_path.read_text()[-2000:]

    assert refused(lambda: tls_wire(ports["listen"], cert))
    assert wait_until(lambda: closed("peer did not return a certificate"))

    with pytest.raises(ssl.SSLCertVerificationError):
        tls_wire(ports["listen"], other, client=(ccert, ckey))
    assert wait_until(lambda: closed("alert unknown ca"))

    # The client with its certificate still gets in; a record it did not
    # encrypt (written past its TLS layer) ends its session with the reason.
    w = tls_wire(ports["listen"], cert, client=(ccert, ckey)).login(oidc_token("svc-orders"))
    assert w.metadata_v1([]) is not None
    raw = socket.socket(fileno=os.dup(w.sock.fileno()))
    raw.sendall(b"\x17\x03\x03\x00\x40" + os.urandom(64))
    with pytest.raises(ssl.SSLError, match="BAD_RECORD_MAC"):  # busgate's alert
        w.sock.recv(1)
    raw.close()
    (end,) = session_ends(ports, "client connection error: ")
    assert end["detail"].startswith("client connection error: TLS ") and \
        "bad record mac" in end["detail"], end
    assert closed("bad record mac")


def test_tcp_close_without_close_notify_is_a_close(start_busgate, tmp_path):
    """A TLS client closing its socket without close_notify ends the session
    as a close (OpenSSL 3 would report "unexpected eof while reading")."""
    bg, ports, cert = start_tls(start_busgate, tmp_path)
    w = tls_wire(ports["listen"], cert).login(oidc_token("svc-orders"))
    w.sock.close()  # Python's ssl sends close_notify only from unwrap()
    (end,) = session_ends(ports, "client ")
    assert end["detail"] == "client closed the connection", end
    assert not [l for l in bg.log_lines() if "client connection error" in l.get("msg", "")]


def test_busgate_sends_close_notify(start_busgate, tmp_path):
    """busgate ends its TLS connections with close_notify: in answer to the
    client's, after a refusal, at the idle timeout (a client that does not
    accept ragged EOFs reads each as a clean end, not an error)."""
    bg, ports, cert = start_tls(start_busgate, tmp_path, kafka_extra="  idle_timeout: 2s\n")
    w = tls_wire(ports["listen"], cert).login(oidc_token("svc-orders"))
    w.sock.unwrap()  # sends the client's close_notify and waits for busgate's
    w.close()

    w = tls_wire(ports["listen"], cert, ragged=False)
    err, _, _ = w.sasl_plain("not-a-token")
    assert err != 0
    assert w.sock.recv(1) == b""

    w = tls_wire(ports["listen"], cert, ragged=False).login(oidc_token("svc-orders"))
    w.sock.settimeout(15)
    assert w.sock.recv(1) == b""
    assert bg.wait_log(lambda l: l.get("msg") == "closing connection: idle timeout")


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


def test_startup_lines_say_tls(start_busgate, tmp_path):
    """busgate run's start-up lines say which Kafka legs are TLS, and that
    the upstream's certificate is not verified, in the AMQP adapter's words."""
    assert kafka_ssl_listener_configured(), f"the test broker has no SASL_SSL listener ({KAFKA_SSL})"
    cert, key = make_cert(tmp_path)
    text, ports = busgate_config(tmp_path, RULES, security="sasl_ssl", upstream=[KAFKA_SSL],
                                 upstream_tls={"ca": kafka_tls_ca(), "verify": False},
                                 kafka_extra=f"  tls: {{cert: {cert}, key: {key}}}\n")
    bg = start_busgate(text, wait_for_port=ports["listen"])
    want = f"listening on 127.0.0.1:{ports['listen']} (TLS), upstream {KAFKA_SSL} (TLS, not verified)"
    assert bg.wait_log(lambda l: l.get("msg") == want), bg.log_path.read_text()[-2000:]
    assert bg.wait_log(lambda l: l.get("msg", "").startswith("serving upstream broker ")
                       and l["msg"].endswith(" (TLS)"), timeout=20), bg.log_path.read_text()[-2000:]
