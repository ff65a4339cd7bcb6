"""busgate's own upstream connection to the real broker (kafka_upstream.c):
every SASL mechanism busgate speaks upstream (PLAIN, SCRAM-SHA-256,
SCRAM-SHA-512 with busgate's own SCRAM client), over plaintext and over TLS
verified against the test CA (scripts/kafka-up.sh's SASL_SSL listener), and
the failures: a CA that did not sign the broker's certificate, a wrong
upstream password. Re-authentication (KIP-368) against the broker's REAUTH
listener, whose logins last only a few seconds. Discovery uses the same connection, so a working
produce + consume also proves it (busgate only opens the per-broker port
after a Metadata response on its own connection).

Never sets audit.kafka_topic: busgate's audit sink is Debian's librdkafka
2.0.2, whose SCRAM fails against Kafka 4.x (docs/testing.md)."""
import re
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer

from conftest import http_get, wait_port
from kafka_env import (KAFKA_REAUTH, KAFKA_REAUTH_MS, KAFKA_SASL, KAFKA_SSL, KafkaWire,
                       busgate_config, client_conf, create_topics, kafka_listener_configured,
                       kafka_ssl_listener_configured, kafka_tls_ca, kstr, oidc_token, unique,
                       wait_until)

RULES = """    - name: upstream-orders
      subjects: [group:orders]
      resources: ["kafka:topic:up-*", "kafka:group:up-*"]
      verbs: [write, read, describe, create]
      effect: allow
"""

MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


@pytest.fixture(scope="module")
def ssl_broker():
    """The broker's SASL_SSL address and the test CA. A broker without the
    listener (started by an older kafka-up.sh) fails the tests with a hint,
    rather than skipping them: a skip would hide the upstream TLS tests."""
    host, port = KAFKA_SSL.rsplit(":", 1)
    if not kafka_ssl_listener_configured():
        pytest.fail(f"the test broker has no SASL_SSL listener ({KAFKA_SSL}); restart it: "
                    "scripts/kafka-down.sh --keep-data && scripts/kafka-up.sh")
    assert kafka_tls_ca().is_file(), f"test CA missing: {kafka_tls_ca()}"
    assert wait_port(int(port), timeout=10, host=host), f"SASL_SSL listener {KAFKA_SSL} down"
    return KAFKA_SSL, kafka_tls_ca()


def produce_consume(port, n=10):
    """Produces n records through busgate and reads them back in a group;
    returns the values read."""
    boot = f"127.0.0.1:{port}"
    token = oidc_token("svc-orders")
    topic = unique("up-t")
    p = Producer(client_conf(boot, token))
    results = []
    for i in range(n):
        p.produce(topic, value=f"u{i}".encode(), on_delivery=lambda e, m: results.append(e))
    assert p.flush(30) == 0
    assert results == [None] * n, results
    c = Consumer(client_conf(boot, token, **{"group.id": unique("up-g"),
                                              "auto.offset.reset": "earliest",
                                              "session.timeout.ms": 6000}))
    c.subscribe([topic])
    got = []
    for _ in range(60):
        m = c.poll(1.0)
        if m is not None and not m.error():
            got.append(m.value())
        if len(got) == n:
            break
    c.close()
    return sorted(got), sorted(f"u{i}".encode() for i in range(n))


def readyz(ports):
    return http_get(f"http://127.0.0.1:{ports['admin']}/readyz")[0]


def upstream_warnings(bg):
    return [l.get("msg", "") for l in bg.log_lines()
            if l.get("module") == "kafka" and "upstream" in l.get("msg", "")]


def assert_client_refused(bg, ports, logins=None):
    """A client connection is closed by busgate (its upstream cannot be
    made) before any request past its own login is answered, rather than
    answered or left hanging, and busgate stays up. ApiVersions before the
    client's login is answered when the broker's versions can be had
    without busgate's login (a wrong upstream password): busgate logs in
    with its credential only for a client that has authenticated. logins:
    a list that gets 1 for each client that got that far."""
    w = KafkaWire(ports["listen"], timeout=15)
    try:
        w.send(18, 0, b"")  # ApiVersions waits for the upstream's ranges
        if w.recv() is not None:
            auth = w.sasl_plain(oidc_token("svc-orders"))
            assert auth is None or auth[0] == 0, auth
            if logins is not None:
                logins.append(1)
            if auth is not None:
                w.send(3, 1, struct.pack(">i", 0))  # Metadata v1: waits for the upstream
                assert w.recv() is None, "busgate answered without an upstream"
    finally:
        w.close()
    assert bg.proc.poll() is None, "busgate exited"


def other_ca(tmp_path):
    """A CA certificate that did not sign the broker's certificate."""
    cert, key = tmp_path / "other-ca.crt", tmp_path / "other-ca.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=not the busgate test CA",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def ca_and_leaf(d, san, cn, name="n"):
    """(ca, cert, key): a fresh CA and a certificate it signed for san."""
    ca, ca_key = d / f"{name}-ca.crt", d / f"{name}-ca.key"
    cert, key, csr, ext = d / f"{name}.crt", d / f"{name}.key", d / f"{name}.csr", d / f"{name}.ext"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
            f"/CN={name}-ca", "-addext", "basicConstraints=critical,CA:TRUE",
            "-keyout", str(ca_key), "-out", str(ca))
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
            "-keyout", str(key), "-out", str(csr))
    ext.write_text(f"subjectAltName={san}\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-set_serial", "7", "-days", "1", "-extfile", str(ext), "-out", str(cert))
    key.chmod(0o600)
    return ca, cert, key


def cert_for_other_name(d):
    """(ca, cert, key): a fresh CA and a server certificate it signed for
    other.invalid only, so 127.0.0.1 does not match it."""
    return ca_and_leaf(d, "DNS:other.invalid", "other.invalid")


class TlsStub:
    """A loopback TLS server that completes handshakes and then closes: a
    stand-in broker for certificate checks that Kafka's listener cannot
    provoke (its certificate matches 127.0.0.1). Records each handshake's
    outcome and the server name (SNI) each client hello asked for (None:
    none). With client_ca, a client must present a certificate that CA
    signed."""

    def __init__(self, cert, key, client_ca=None):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), str(key))
        self.server_names = []
        self.ctx.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
        if client_ca:
            self.ctx.verify_mode = ssl.CERT_REQUIRED
            self.ctx.load_verify_locations(str(client_ca))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.outcomes = []
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            conn.settimeout(5)
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as t:
                    self.outcomes.append("ok")
                    data = t.recv(64)  # busgate's first request; then close
                    if data[4:6] == b"\x00\x12":
                        self.outcomes.append("api_versions")
            except (ssl.SSLError, OSError) as e:
                self.outcomes.append(f"error: {e}")
                conn.close()

    def close(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def tls_stub(tmp_path):
    ca, cert, key = cert_for_other_name(tmp_path)
    stub = TlsStub(cert, key)
    yield stub, ca
    stub.close()


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_sasl_plaintext_each_mechanism(start_busgate, tmp_path, mechanism):
    text, ports = busgate_config(tmp_path, RULES, mechanism=mechanism, upstream=[KAFKA_SASL])
    bg = start_busgate(text, wait_for_port=ports["listen"])
    got, want = produce_consume(ports["listen"])
    assert got == want
    assert wait_until(lambda: readyz(ports) == 200, timeout=10)
    assert not any("failed" in m for m in upstream_warnings(bg)), upstream_warnings(bg)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
def test_sasl_ssl_verified_by_test_ca(start_busgate, tmp_path, ssl_broker, mechanism):
    addr, ca = ssl_broker
    text, ports = busgate_config(tmp_path, RULES, mechanism=mechanism, security="sasl_ssl",
                                 upstream=[addr], upstream_tls={"ca": ca, "verify": True})
    bg = start_busgate(text, wait_for_port=ports["listen"])
    got, want = produce_consume(ports["listen"])
    assert got == want
    assert wait_until(lambda: readyz(ports) == 200, timeout=10)
    assert not any("failed" in m for m in upstream_warnings(bg)), upstream_warnings(bg)


def test_sasl_ssl_untrusted_broker_certificate(start_busgate, tmp_path, ssl_broker):
    addr, _ = ssl_broker
    text, ports = busgate_config(tmp_path, RULES, security="sasl_ssl", upstream=[addr],
                                 upstream_tls={"ca": other_ca(tmp_path)})
    bg = start_busgate(text, wait_for_port=ports["admin"])
    line = bg.wait_log(lambda l: l.get("msg", "").startswith(f"upstream {addr} ") and
                       "TLS handshake failed" in l.get("msg", ""))
    assert line, "no TLS failure logged:\n" + "\n".join(upstream_warnings(bg))
    assert line["level"] in ("warn", "error")
    # OpenSSL's reason and the certificate check's verdict, not errno's "Success".
    assert "certificate verify failed" in line["msg"], line
    assert "self-signed certificate in certificate chain" in line["msg"], line
    assert readyz(ports) == 503
    assert_client_refused(bg, ports)
    assert readyz(ports) == 503


def test_sasl_ssl_without_tls_to_ssl_listener_is_not_ready(start_busgate, tmp_path, ssl_broker):
    """sasl_plaintext against the TLS port: the broker drops the
    non-TLS bytes; busgate must log it and stay unready, not hang."""
    addr, _ = ssl_broker
    text, ports = busgate_config(tmp_path, RULES, upstream=[addr])
    bg = start_busgate(text, wait_for_port=ports["admin"])
    assert bg.wait_log(lambda l: l.get("msg", "").startswith(f"upstream {addr} ") and
                       "the broker answered with TLS" in l.get("msg", "")), \
        bg.log_path.read_text()
    assert readyz(ports) == 503
    assert_client_refused(bg, ports)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
def test_wrong_upstream_password(start_busgate, tmp_path, mechanism):
    text, ports = busgate_config(tmp_path, RULES, mechanism=mechanism, upstream=[KAFKA_SASL])
    text = text.replace("password: busgate-test-password", "password: not-the-password", 1)
    assert "not-the-password" in text
    bg = start_busgate(text, wait_for_port=ports["listen"])
    line = bg.wait_log(lambda l: "authentication with busgate's credential failed"
                       in l.get("msg", ""))
    assert line, bg.log_path.read_text()
    # The broker's own reason is passed on: error 58 with its message.
    assert "SaslAuthenticate error 58 SASL_AUTHENTICATION_FAILED" in line["msg"], line
    assert readyz(ports) == 503
    logins = []
    for _ in range(2):  # every client connection, not only the first
        assert_client_refused(bg, ports, logins)
    assert readyz(ports) == 503
    assert "not-the-password" not in bg.log_path.read_text()
    # Both clients had the broker's versions without busgate's login (it
    # logs in only for a client that authenticated; test_kafka_session_login
    # shows it never does for one that has not).
    assert logins == [1, 1]


def test_broker_certificate_for_another_host_is_refused(start_busgate, tmp_path, tls_stub):
    """verify on (the default): a certificate from the trusted CA that names
    another host fails the host check (SSL_set1_host, an IP address here)."""
    stub, ca = tls_stub
    text, ports = busgate_config(tmp_path, RULES, security="sasl_ssl",
                                 upstream=[f"127.0.0.1:{stub.port}"], upstream_tls={"ca": ca})
    bg = start_busgate(text, wait_for_port=ports["admin"])
    line = bg.wait_log(lambda l: "TLS handshake failed" in l.get("msg", ""))
    assert line, bg.log_path.read_text()
    assert "IP address mismatch" in line["msg"], line
    assert wait_until(lambda: stub.outcomes)
    assert "ok" not in stub.outcomes, stub.outcomes
    assert readyz(ports) == 503


@pytest.mark.parametrize("security", ["sasl_ssl", "ssl"])
def test_verify_false_accepts_any_certificate(start_busgate, tmp_path, tls_stub, security):
    """verify: false skips the certificate and hostname checks: the TLS
    handshake completes and busgate goes on to ApiVersions. security ssl
    (TLS without SASL) speaks TLS as sasl_ssl does: the stub reads the
    ApiVersions inside its TLS session, not plaintext bytes where a client
    hello belongs."""
    stub, _ = tls_stub
    text, ports = busgate_config(tmp_path, RULES, security=security,
                                 upstream=[f"127.0.0.1:{stub.port}"],
                                 upstream_tls={"verify": False})
    bg = start_busgate(text, wait_for_port=ports["admin"])
    assert wait_until(lambda: "api_versions" in stub.outcomes), stub.outcomes
    line = bg.wait_log(lambda l: l.get("msg", "").startswith("upstream 127.0.0.1:"))
    assert line and "TLS handshake failed" not in line["msg"], line
    assert readyz(ports) == 503


@pytest.mark.parametrize("host,server_name", [("localhost", "localhost"), ("127.0.0.1", None)])
def test_sni_names_the_broker_host_never_an_address(start_busgate, tmp_path, host, server_name):
    """busgate's client hello names the broker by the host it was given
    (SNI: a TLS router in front of the brokers picks the broker by it, and
    a broker with one certificate per name picks its certificate) and sends
    none for an IP address, which RFC 6066 leaves out of SNI. Either way the
    certificate verifies (it names both) and busgate goes on to ApiVersions."""
    ca, cert, key = ca_and_leaf(tmp_path, "DNS:localhost,IP:127.0.0.1", "localhost")
    stub = TlsStub(cert, key)
    try:
        text, ports = busgate_config(tmp_path, RULES, security="sasl_ssl",
                                     upstream=[f"{host}:{stub.port}"], upstream_tls={"ca": ca})
        start_busgate(text, wait_for_port=ports["admin"])
        assert wait_until(lambda: "api_versions" in stub.outcomes), stub.outcomes
        assert stub.server_names and set(stub.server_names) == {server_name}, stub.server_names
    finally:
        stub.close()


@pytest.mark.parametrize("with_cert", [True, False])
def test_client_certificate_is_presented_to_the_broker(start_busgate, tmp_path, with_cert):
    """kafka.upstream.tls cert and key: busgate presents its certificate to
    a broker that requires one (mutual TLS) and goes on to ApiVersions.
    Without them the same broker refuses busgate's handshake, so the stub
    does require the certificate."""
    ca, cert, key = ca_and_leaf(tmp_path, "IP:127.0.0.1", "broker")
    cca, ccert, ckey = ca_and_leaf(tmp_path, "DNS:busgate.client", "busgate", name="client")
    stub = TlsStub(cert, key, client_ca=cca)
    try:
        tls = {"ca": ca, "cert": ccert, "key": ckey} if with_cert else {"ca": ca}
        text, ports = busgate_config(tmp_path, RULES, security="sasl_ssl",
                                     upstream=[f"127.0.0.1:{stub.port}"], upstream_tls=tls)
        bg = start_busgate(text, wait_for_port=ports["admin"])
        if with_cert:
            assert wait_until(lambda: "api_versions" in stub.outcomes), stub.outcomes
        else:
            # TLS 1.3: the refusal comes as an alert after busgate's side is
            # done; busgate reads the alert, or only the close that follows it
            # (which it sees first depends on timing). The stub's outcome says
            # why it refused.
            line = bg.wait_log(lambda l: "alert certificate required" in l.get("msg", "")
                               or "closed by the broker" in l.get("msg", ""))
            assert line, bg.log_path.read_text()[-2000:]
            assert wait_until(lambda: stub.outcomes), stub.outcomes
            assert "ok" not in stub.outcomes, stub.outcomes
            assert any("CERTIFICATE" in o for o in stub.outcomes), stub.outcomes
        assert readyz(ports) == 503
    finally:
        stub.close()


def need_reauth_listener():
    if not kafka_listener_configured("REAUTH"):
        pytest.fail(f"the test broker has no REAUTH listener ({KAFKA_REAUTH}); restart it: "
                    "scripts/kafka-down.sh --keep-data && scripts/kafka-up.sh")


def reauth_lines(bg):
    return [l.get("msg", "") for l in bg.log_lines()
            if "re-authenticated (session lifetime" in l.get("msg", "")]


@pytest.mark.single_build
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
def test_upstream_reauthenticates_before_the_session_ends(start_busgate, tmp_path, mechanism):
    """The REAUTH listener's logins last KAFKA_REAUTH_MS (3 s), after which
    the broker closes a connection on its next request unless it logged in
    again. A producer and a consumer run through busgate for several
    lifetimes: every record arrives, in order, no busgate connection is
    lost, and busgate re-authenticated its upstream connections. The
    consumer's long polls are kept shorter than the time between the
    re-authentication and the end of the lifetime (at least 150 ms): a
    request sent before the re-authentication is due but that the broker
    takes up only after the lifetime ended closes the connection, as it
    would for Kafka's own clients (KIP-368)."""
    need_reauth_listener()
    text, ports = busgate_config(tmp_path, RULES, mechanism=mechanism, upstream=[KAFKA_REAUTH],
                                 extra="log_level: debug\n")
    bg = start_busgate(text, wait_for_port=ports["listen"])
    boot = f"127.0.0.1:{ports['listen']}"
    token = oidc_token("svc-orders")
    topic = unique("up-reauth")
    run_s = KAFKA_REAUTH_MS * 4 / 1000
    sent, errors = [], []

    def produce():
        p = Producer(client_conf(boot, token, **{"linger.ms": 5}))
        end = time.monotonic() + run_s
        i = 0
        while time.monotonic() < end:
            for _ in range(20):
                v = f"r{i:07d}".encode() + b"x" * 1000
                p.produce(topic, value=v, on_delivery=lambda e, m: errors.append(e) if e else None)
                sent.append(v)
                i += 1
            p.poll(0.05)
        assert p.flush(30) == 0

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    c = Consumer(client_conf(boot, token, **{"group.id": unique("up-reauth-g"),
                                              "auto.offset.reset": "earliest",
                                              "fetch.wait.max.ms": 50,
                                              "session.timeout.ms": 6000}))
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + run_s + 40
    while time.monotonic() < deadline and (t.is_alive() or len(got) < len(sent)):
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    t.join(1)
    assert not t.is_alive()
    assert errors == [], errors[:5]
    assert len(sent) > 0 and got == sent, (len(got), len(sent))
    msgs = [l.get("msg", "") for l in bg.log_lines()]
    assert not any("upstream connection lost" in m for m in msgs), \
        [m for m in msgs if "upstream" in m]
    reauths = reauth_lines(bg)
    # Each connection that lived through the run logged in again at least
    # three times (85-95 % of 3 s, over 12 s); the client's connections are
    # at least a producer's and a consumer's.
    assert len(reauths) >= 6, reauths
    # The lifetime logged is the one the broker gave, never more than its
    # connections.max.reauth.ms.
    lifetimes = [int(re.search(r"session lifetime (\d+) ms", m).group(1)) for m in reauths]
    assert all(0 < ms <= KAFKA_REAUTH_MS for ms in lifetimes), lifetimes


def fetch_v4(topic, wait_ms):
    """Fetch v4 of partition 0 from offset 0 that waits up to wait_ms for
    one byte (an empty topic: the full wait)."""
    body = struct.pack(">iiiib", -1, wait_ms, 1, 1 << 20, 0)
    body += struct.pack(">i", 1) + kstr(topic) + struct.pack(">i", 1)
    return body + struct.pack(">iqi", 0, 0, 1 << 20)


@pytest.mark.single_build
def test_upstream_reauth_waits_for_a_long_poll_and_keeps_held_requests(start_busgate,
                                                                       tmp_path):
    """Round after round, a Fetch that waits 2 s on an empty topic is
    followed 1.9 s later by a Metadata request. When a re-authentication
    becomes due while the Fetch is out, it waits for the Fetch's response;
    a Metadata request arriving meanwhile is held and then sent after the
    new login. Both are answered, in order, on the same connection. (Held
    requests once counted as outstanding, so the login never started and
    the Metadata request was never sent.)"""
    need_reauth_listener()
    text, ports = busgate_config(tmp_path, RULES, mechanism="PLAIN", upstream=[KAFKA_REAUTH],
                                 extra="log_level: debug\n")
    bg = start_busgate(text, wait_for_port=ports["listen"])
    topic = unique("up-reauth-poll")
    create_topics([topic])
    w = KafkaWire(ports["listen"], timeout=12)
    try:
        w.login(oidc_token("svc-orders"))
        end = time.monotonic() + KAFKA_REAUTH_MS * 4 / 1000
        rounds = 0
        while time.monotonic() < end:
            f = w.send(1, 4, fetch_v4(topic, 2000))
            time.sleep(1.9)
            m = w.send(3, 1, struct.pack(">i", 1) + kstr(topic))
            for corr in (f, m):
                r = w.recv()
                assert r is not None, f"connection closed in round {rounds}: " + \
                    "; ".join(l.get("msg", "") for l in bg.log_lines())
                assert r[0] == corr, (rounds, corr, r[0])
            rounds += 1
    finally:
        w.close()
    # One connection, logging in again every 2.55-2.85 s plus up to 2 s of
    # waiting for a Fetch: at least twice in 12 s.
    assert len(reauth_lines(bg)) >= 2, reauth_lines(bg)
    # The case the test is about happened: a re-authentication fell due with
    # the Fetch outstanding, and the Metadata request held meanwhile went out
    # after the new login.
    msgs = [l.get("msg", "") for l in bg.log_lines()]
    assert any(re.search(r"re-authentication due; [1-9]\d* response\(s\) awaited first", m)
               for m in msgs), [m for m in msgs if "re-auth" in m]
    assert any(re.search(r": [1-9]\d* byte\(s\) of requests held meanwhile sent now$", m)
               for m in msgs), \
        [m for m in msgs if "re-auth" in m or "held" in m]
