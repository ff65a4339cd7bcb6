"""TLS on both legs of the AMQP adapter.

Client leg (amqp.tls): pika over TLS to busgate with a self-signed
certificate publishes and consumes; a client that does not trust the
certificate, or speaks plaintext, gets nothing; with client_ca, only a
client presenting a certificate that CA signed gets in. A close without
close_notify is a close, not a TLS error; a client's close_notify is
answered.

Upstream leg (amqp.upstream.tls): a private RabbitMQ node with a TLS
listener (scripts/rabbitmq-up.sh, BG_RABBIT_TLS_*), its certificate signed
by a CA made here. busgate verifies it (readiness probe and client sessions
over TLS); a busgate that does not trust that CA, or a server whose
certificate names another host, fails closed: the client's login ends in a
connection.close, /readyz stays 503, and the log says why."""
import socket
import ssl
import subprocess
import threading

import pika
import pika.exceptions as pex
import pytest

from amqp_env import Issuer, PrivateRabbit, busgate_config, connect, rule, unique
from conftest import free_port, http_get, wait_port
from kafka_env import wait_until

ALL = ["read", "write", "create", "delete", "describe"]
POLICY = (rule("it-all", ["group:apps"], ["amqp:queue:tls.*"], ALL)
          + rule("default-exchange", ["group:apps"], ["amqp:exchange:amq.default"], ["write"]))


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_cert(d, name="busgate"):
    """A self-signed certificate for 127.0.0.1 (and its key), made with openssl."""
    d.mkdir(parents=True, exist_ok=True)
    cert, key = d / f"{name}.crt", d / f"{name}.key"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert))
    return cert, key


def make_ca_and_leaf(d, san, cn="leaf"):
    """(ca, cert, key): a fresh CA and a certificate it signed for san."""
    d.mkdir(parents=True, exist_ok=True)
    ca, ca_key = d / "ca.crt", d / "ca.key"
    cert, key, csr, ext = d / "leaf.crt", d / "leaf.key", d / "leaf.csr", d / "leaf.ext"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
            f"/CN=busgate test CA {d.name}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-keyout", str(ca_key), "-out", str(ca))
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
            "-keyout", str(key), "-out", str(csr))
    ext.write_text(f"subjectAltName={san}\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-set_serial", "7", "-days", "1", "-extfile", str(ext), "-out", str(cert))
    key.chmod(0o600)
    return ca, cert, key


def client_ctx(ca, cert=None, key=None):
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def tls_connect(port, token, ctx, **kw):
    return connect(port, token, ssl_options=pika.SSLOptions(ctx, "127.0.0.1"), **kw)


def roundtrip(conn, n=5):
    """Declares a queue, publishes n messages and consumes them back."""
    ch = conn.channel()
    q = unique("tls.q")
    ch.queue_declare(q, auto_delete=True)
    for i in range(n):
        ch.basic_publish("", q, f"m{i}".encode())
    got = []
    for _, _, body in ch.consume(q, auto_ack=True, inactivity_timeout=10):
        if body is None:
            break
        got.append(body)
        if len(got) == n:
            break
    ch.cancel()
    ch.close()
    return got


def listener_tls(cert, key, client_ca=None):
    ca = f", client_ca: {client_ca}" if client_ca else ""
    return f"  tls: {{cert: {cert}, key: {key}{ca}}}\n"


def upstream_tls_config(tmp_path, issuer, tls_port, ca):
    text, ports = busgate_config(tmp_path, issuer, POLICY, rabbit_port=tls_port)
    # The upstream mapping is the last one busgate_config writes under amqp.
    text = text.replace("    password: busgate-test-password\n",
                        f"    password: busgate-test-password\n    tls: {{ca: {ca}}}\n", 1)
    assert "tls: {ca:" in text
    return text, ports


def ready(admin):
    assert wait_port(admin), "admin listener not up"  # it may open after the AMQP one
    return http_get(f"http://127.0.0.1:{admin}/readyz")[0]


# ---- client leg ----

def test_client_tls_publish_consume(start_busgate, tmp_path):
    issuer = Issuer(tmp_path / "keys")
    cert, key = make_cert(tmp_path / "srv")
    text, ports = busgate_config(tmp_path, issuer, POLICY, extra_amqp=listener_tls(cert, key))
    bg = start_busgate(text, wait_for_port=ports["listen"])
    conn = tls_connect(ports["listen"], issuer.mint("alice", ["apps"]), client_ctx(cert))
    assert roundtrip(conn, 5) == [f"m{i}".encode() for i in range(5)]
    conn.close()
    assert bg.wait_log(lambda l: "(TLS)" in l.get("msg", ""))


def test_client_not_trusting_certificate_fails(start_busgate, tmp_path):
    issuer = Issuer(tmp_path / "keys")
    cert, key = make_cert(tmp_path / "srv")
    other, _ = make_cert(tmp_path / "other")
    text, ports = busgate_config(tmp_path, issuer, POLICY, extra_amqp=listener_tls(cert, key))
    start_busgate(text, wait_for_port=ports["listen"])
    token = issuer.mint("alice", ["apps"])
    with pytest.raises((pex.AMQPConnectionError, ssl.SSLError)) as ei:
        tls_connect(ports["listen"], token, client_ctx(other))
    assert "CERTIFICATE_VERIFY_FAILED" in repr(ei.value), repr(ei.value)
    # Plaintext AMQP to the TLS listener: no connection.start ever comes back.
    with pytest.raises(pex.AMQPConnectionError):
        connect(ports["listen"], token, stack_timeout=5, socket_timeout=3)
    # The listener still serves a client that trusts it.
    conn = tls_connect(ports["listen"], token, client_ctx(cert))
    assert roundtrip(conn, 1) == [b"m0"]
    conn.close()


def test_client_certificates_with_client_ca(start_busgate, tmp_path):
    issuer = Issuer(tmp_path / "keys")
    cert, key = make_cert(tmp_path / "srv")
    cca, ccert, ckey = make_ca_and_leaf(tmp_path / "clients", "DNS:svc.client", cn="svc")
    _, stray, stray_key = make_ca_and_leaf(tmp_path / "stray", "DNS:svc.client", cn="svc")
    text, ports = busgate_config(tmp_path, issuer, POLICY,
                                 extra_amqp=listener_tls(cert, key, client_ca=cca))
    bg = start_busgate(text, wait_for_port=ports["listen"])
    token = issuer.mint("alice", ["apps"])
    conn = tls_connect(ports["listen"], token, client_ctx(cert, ccert, ckey))
    assert roundtrip(conn, 2) == [b"m0", b"m1"]
    conn.close()
    def refused(why):
        return [l for l in bg.log_lines()
                if "client connection error: TLS" in l.get("msg", "") and why in l["msg"]]

    # busgate itself refuses each handshake, for the reason that fits.
    for ctx, why in ((client_ctx(cert), "peer did not return a certificate"),
                     (client_ctx(cert, stray, stray_key), "certificate verify failed")):
        with pytest.raises((pex.AMQPConnectionError, ssl.SSLError, OSError)):
            tls_connect(ports["listen"], token, ctx, stack_timeout=5)
        assert wait_until(lambda: refused(why)), bg.log_path.read_text()[-2000:]


# ---- upstream leg ----


@pytest.fixture(scope="module")
def tls_rabbit(tmp_path_factory):
    """A private RabbitMQ with a TLS listener: (tls_port, ca). Its
    certificate names 127.0.0.1 and is signed by ca."""
    d = tmp_path_factory.mktemp("rabbit-tls")
    ca, cert, key = make_ca_and_leaf(d, "IP:127.0.0.1", cn="rabbit")
    tls_port = free_port()
    rabbit = PrivateRabbit()
    rabbit.env.update(BG_RABBIT_TLS_PORT=str(tls_port), BG_RABBIT_TLS_CERT=str(cert),
                      BG_RABBIT_TLS_KEY=str(key))
    rabbit.up()
    try:
        assert wait_port(tls_port, timeout=10)
        yield tls_port, ca
    finally:
        rabbit.down()


def test_upstream_tls_verified(start_busgate, tmp_path, tls_rabbit):
    tls_port, ca = tls_rabbit
    issuer = Issuer(tmp_path / "keys")
    text, ports = upstream_tls_config(tmp_path, issuer, tls_port, ca)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    # The readiness probe logs in over TLS before any client.
    assert bg.wait_log(lambda l: "upstream login with busgate's credential works" in
                       l.get("msg", ""), timeout=20), bg.log_path.read_text()
    assert ready(ports["admin"]) == 200
    conn = connect(ports["listen"], issuer.mint("alice", ["apps"]))
    assert roundtrip(conn, 3) == [b"m0", b"m1", b"m2"]
    conn.close()
    assert bg.wait_log(lambda l: f"upstream 127.0.0.1:{tls_port} (TLS)" in l.get("msg", ""))


def assert_fails_closed(bg, ports, token, reason):
    # pika reports a close during its handshake as ProbableAuthenticationError
    # wrapping the broker's close: busgate's 320, not a login refusal.
    with pytest.raises(pex.AMQPConnectionError) as ei:
        connect(ports["listen"], token, stack_timeout=15)
    assert "320" in str(ei.value) and "CONNECTION_FORCED" in str(ei.value), repr(ei.value)
    assert bg.wait_log(lambda l: "TLS handshake failed" in l.get("msg", "") and
                       reason in l.get("msg", "")), bg.log_path.read_text()
    assert ready(ports["admin"]) == 503


def test_upstream_untrusted_certificate_fails_closed(start_busgate, tmp_path, tls_rabbit):
    tls_port, _ = tls_rabbit
    other_ca, _, _ = make_ca_and_leaf(tmp_path / "other", "IP:127.0.0.1")
    issuer = Issuer(tmp_path / "keys")
    text, ports = upstream_tls_config(tmp_path, issuer, tls_port, other_ca)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    assert_fails_closed(bg, ports, issuer.mint("alice", ["apps"]), "certificate verify failed")


class TlsStub:
    """A loopback TLS server that completes (or fails) handshakes, then
    closes: a stand-in broker whose certificate names another host."""

    def __init__(self, cert, key):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), str(key))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            c.settimeout(5)
            try:
                with self.ctx.wrap_socket(c, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def test_upstream_certificate_for_another_host_fails_closed(start_busgate, tmp_path):
    ca, cert, key = make_ca_and_leaf(tmp_path / "stub", "DNS:other.invalid", cn="other.invalid")
    stub = TlsStub(cert, key)
    try:
        issuer = Issuer(tmp_path / "keys")
        text, ports = upstream_tls_config(tmp_path, issuer, stub.port, ca)
        bg = start_busgate(text, wait_for_port=ports["listen"])
        assert_fails_closed(bg, ports, issuer.mint("alice", ["apps"]), "IP address mismatch")
    finally:
        stub.close()


def amqp_over_tls(port, ca):
    """A TLS socket to busgate that sent the AMQP protocol header and read
    busgate's connection.start frame (the handshake is done on both sides)."""
    s = client_ctx(ca).wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                   server_hostname="127.0.0.1")
    s.sendall(b"AMQP\x00\x00\x09\x01")
    f = s.makefile("rb")
    head = f.read(7)
    assert head[:1] == b"\x01", "no method frame"
    size = int.from_bytes(head[3:7], "big")
    assert len(f.read(size + 1)) == size + 1
    f.close()
    return s


def test_client_tcp_close_without_close_notify_is_a_close(start_busgate, tmp_path):
    """A TLS client closing its socket without close_notify is a client that
    closed the connection, not a TLS error (OpenSSL 3's "unexpected eof")."""
    issuer = Issuer(tmp_path / "keys")
    cert, key = make_cert(tmp_path / "srv")
    text, ports = busgate_config(tmp_path, issuer, POLICY, extra_amqp=listener_tls(cert, key))
    bg = start_busgate(text, wait_for_port=ports["listen"])
    amqp_over_tls(ports["listen"], cert).close()  # Python sends close_notify only from unwrap()
    assert bg.wait_log(lambda l: l.get("msg") == "client closed the connection"), \
        bg.log_path.read_text()[-2000:]
    assert not [l for l in bg.log_lines() if "TLS error" in l.get("msg", "")
                or "client connection error" in l.get("msg", "")]


def test_client_close_notify_is_answered(start_busgate, tmp_path):
    """busgate answers a TLS client's close_notify with its own."""
    issuer = Issuer(tmp_path / "keys")
    cert, key = make_cert(tmp_path / "srv")
    text, ports = busgate_config(tmp_path, issuer, POLICY, extra_amqp=listener_tls(cert, key))
    start_busgate(text, wait_for_port=ports["listen"])
    s = amqp_over_tls(ports["listen"], cert)
    s.unwrap().close()  # sends close_notify, waits for busgate's (SSLEOFError without it)
