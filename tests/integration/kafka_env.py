"""Kafka-side helpers for the integration suites: tokens from the test OIDC
provider, busgate configurations in front of the real test broker, and
confluent-kafka clients pointed at busgate.

Services (started by tests/integration/run.sh, see docs/testing.md):
  Kafka SASL_PLAINTEXT  127.0.0.1:$BG_KAFKA_SASL_PORT (17093), user busgate
  Kafka PLAINTEXT       127.0.0.1:$BG_KAFKA_PLAIN_PORT (17092), setup only
  Kafka SASL_SSL        127.0.0.1:$BG_KAFKA_SSL_PORT (PLAINTEXT + 3: 17095), user busgate,
                        server certificate from the test CA (kafka_tls_ca())
  Kafka REAUTH          127.0.0.1:$BG_KAFKA_REAUTH_PORT (PLAINTEXT + 4: 17096), SASL_PLAINTEXT
                        whose logins last $BG_KAFKA_REAUTH_MS (3000) ms
  OIDC provider         http://127.0.0.1:$BG_OIDC_PORT (19400)
"""
import base64
import hashlib
import hmac
import json
import os
import socket
import struct
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import audit_events, build_dir, free_port, wait_audit  # noqa: F401
from conftest import free_port_block as conftest_free_port_block

KAFKA_SASL = f"127.0.0.1:{os.environ.get('BG_KAFKA_SASL_PORT', '17093')}"
KAFKA_PLAIN = f"127.0.0.1:{os.environ.get('BG_KAFKA_PLAIN_PORT', '17092')}"
# kafka-up.sh's default: the PLAINTEXT port + 3 (tests/infra/common.sh).
KAFKA_SSL = "127.0.0.1:" + os.environ.get(
    "BG_KAFKA_SSL_PORT", str(int(KAFKA_PLAIN.rsplit(":", 1)[1]) + 3))
KAFKA_REAUTH = "127.0.0.1:" + os.environ.get(
    "BG_KAFKA_REAUTH_PORT", str(int(KAFKA_PLAIN.rsplit(":", 1)[1]) + 4))
KAFKA_REAUTH_MS = int(os.environ.get("BG_KAFKA_REAUTH_MS", "3000"))
OIDC = f"http://127.0.0.1:{os.environ.get('BG_OIDC_PORT', '19400')}"
UPSTREAM_USER = "busgate"
UPSTREAM_PASSWORD = "busgate-test-password"


def oidc_token(client_id):
    """A client-credentials access token (a JWT) for client_id."""
    data = urllib.parse.urlencode({"grant_type": "client_credentials"}).encode()
    req = urllib.request.Request(OIDC + "/token", data=data)
    basic = base64.b64encode(f"{client_id}:{client_id}-secret".encode()).decode()
    req.add_header("Authorization", "Basic " + basic)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())["access_token"]


def claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def busgate_config(tmp_path, rules, *, default="deny", mode="enforce", mechanism="SCRAM-SHA-512",
                   upstream=None, security="sasl_plaintext", extra_issuers="", extra="",
                   kafka_extra="", upstream_tls=None, port_base=None):
    """Returns (yaml_text, ports) for busgate in front of the test broker.

    ports: dict with listen, base (broker_port_base), admin; audit: the
    JSON-lines audit file path. kafka_extra: lines added to the kafka
    section (two-space indented), e.g. a tls block. upstream_tls: a dict
    written as kafka.upstream.tls (e.g. {"ca": kafka_tls_ca()}); use it with
    security ssl/sasl_ssl and upstream=[KAFKA_SSL]. port_base: the
    broker_port_base to use (default: a free block of 64 ports)."""
    listen, admin = free_port(), free_port()
    base = port_base if port_base is not None else free_port_block()
    upstream = upstream or [KAFKA_SASL]
    sasl = ""
    if security.startswith("sasl"):
        sasl = (f"    sasl: {{mechanism: {mechanism}, username: {UPSTREAM_USER}, "
                f"password: {UPSTREAM_PASSWORD}}}\n")
    audit = tmp_path / "audit.jsonl"
    text = f"""
identity:
  issuers:
    - issuer: {OIDC}
      audiences: [busgate]
      jwks_url: {OIDC}/jwks
{extra_issuers}
kafka:
  listen: 127.0.0.1:{listen}
  broker_port_base: {base}
{kafka_extra}  upstream:
    bootstrap: [{", ".join(upstream)}]
    security: {security}
{sasl}{_upstream_tls_yaml(upstream_tls)}policy:
  default: {default}
  mode: {mode}
  rules:
{rules}
audit:
  file: {audit}
admin:
  listen: 127.0.0.1:{admin}
{extra}"""
    return text, {"listen": listen, "base": base, "admin": admin, "audit": audit}


def _upstream_tls_yaml(tls):
    if not tls:
        return ""
    items = ", ".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}"
                      for k, v in tls.items())
    return f"    tls: {{{items}}}\n"


def busgate_cache():
    """The test-infrastructure cache (tests/infra/common.sh: BUSGATE_CACHE)."""
    return Path(os.environ.get("BUSGATE_CACHE", Path.home() / ".cache" / "busgate"))


def kafka_tls_ca():
    """The test CA that signed the broker's SASL_SSL certificate: made once
    by scripts/kafka-up.sh at $BUSGATE_CACHE/kafka-tls/ca.crt."""
    return busgate_cache() / "kafka-tls" / "ca.crt"


def kafka_listener_configured(name):
    """True when the running test broker was started with listener name
    ("SASL_SSL", "REAUTH"): a broker started by an older kafka-up.sh may
    lack it."""
    props = busgate_cache() / "run" / f"kafka-{KAFKA_PLAIN.rsplit(':', 1)[1]}" / \
        "server.properties"
    try:
        return f"{name}://" in props.read_text()
    except OSError:
        return False


def kafka_ssl_listener_configured():
    return kafka_listener_configured("SASL_SSL")


def free_port_block(size=64):
    """A base port B such that B..B+size are free (busgate's per-broker
    ports are B + node id), below the ephemeral range."""
    return conftest_free_port_block(size + 1)


def client_conf(bootstrap, token=None, mechanism="PLAIN", **extra):
    """confluent-kafka settings for a client going through busgate with a
    token as the PLAIN password (or OAUTHBEARER via oauth_cb)."""
    conf = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mechanism, "socket.timeout.ms": 10000,
            "message.timeout.ms": 15000, "metadata.max.age.ms": 5000}
    if mechanism == "PLAIN":
        conf["sasl.username"] = "ignored"
        conf["sasl.password"] = token
    conf.update(extra)
    return conf


# ---- additions for the functional Kafka suites (test_kafka_*.py) ----

ERR_TOPIC_AUTHZ = 29
ERR_GROUP_AUTHZ = 30
ERR_TXN_ID_AUTHZ = 53
ERR_CLUSTER_AUTHZ = 31
ERR_SASL_AUTH_FAILED = 58


def setup_admin():
    """An AdminClient on the broker's PLAINTEXT setup listener (no busgate)."""
    from confluent_kafka.admin import AdminClient
    return AdminClient({"bootstrap.servers": KAFKA_PLAIN, "socket.timeout.ms": 10000})


def create_topics(names, partitions=1, timeout=30):
    """Creates topics directly on the broker (setup listener) and waits."""
    from confluent_kafka.admin import NewTopic
    admin = setup_admin()  # must outlive the futures
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names],
        operation_timeout=timeout)
    for f in futures.values():
        f.result(timeout)


def delete_topics(names, timeout=30):
    """Deletes topics directly on the broker (setup listener) and waits; a
    topic that is gone already is no error."""
    from confluent_kafka import KafkaException
    admin = setup_admin()  # must outlive the futures
    for f in admin.delete_topics(list(names), operation_timeout=timeout).values():
        try:
            f.result(timeout)
        except KafkaException as e:
            if e.args[0].code() != 3:  # UNKNOWN_TOPIC_OR_PART
                raise


def broker_has_topic(name):
    """True when the broker has topic name. Asks for every topic: a
    Metadata request that names a missing topic could have the broker
    create it (auto.create.topics.enable)."""
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": KAFKA_PLAIN, "socket.timeout.ms": 10000,
                         "allow.auto.create.topics": False})
    return name in admin.list_topics(timeout=10).topics


@pytest.fixture
def kafka_topics():
    """make(*names, partitions=1): creates topics on the broker (setup
    listener) for one test, and deletes them after it. busgate never creates
    its audit topic, so a test that sets audit.kafka_topic makes it here
    first. Name this fixture before start_busgate in the test's arguments:
    the topics then go only after the test's busgate has stopped."""
    made = []

    def make(*names, partitions=1):
        create_topics(names, partitions)
        made.extend(names)
        return names[0] if len(names) == 1 else names

    yield make
    if made:
        delete_topics(made)


def with_audit_topic(config_text, topic):
    """busgate_config() text with audit.kafka_topic set (the file stays).
    busgate does not create the topic: make it first (kafka_topics)."""
    assert "\naudit:\n  file:" in config_text
    return config_text.replace("\naudit:\n  file:",
                               f"\naudit:\n  kafka_topic: {topic}\n  file:", 1)


def scrape(admin_port, name, labels=None):
    """One busgate metric from /metrics on the admin listener (None if absent)."""
    from conftest import http_get, metric
    status, body = http_get(f"http://127.0.0.1:{admin_port}/metrics")
    assert status == 200, body
    return metric(body, name, labels)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt_signing_input(claims_obj, kid, alg):
    header = {"alg": alg, "typ": "JWT", "kid": kid}
    return (b64url(json.dumps(header).encode()) + "." +
            b64url(json.dumps(claims_obj).encode()))


def sign_jwt(pem, claims_obj, kid="test-key-1", alg="RS256"):
    """An RS256 JWT over claims_obj signed with the PEM private key through
    the openssl command line: lets tests make tokens `busgate token mint`
    refuses to (an exp in the past)."""
    signing_input = _jwt_signing_input(claims_obj, kid, alg)
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(pem)],
                         input=signing_input.encode(), capture_output=True, check=True).stdout
    return signing_input + "." + b64url(sig)


def sign_hs256(secret, claims_obj, kid="test-hmac-1"):
    """An HS256 JWT over claims_obj keyed with the shared secret (bytes), as
    an issuer with allow_hs256 accepts (keys.add_oct_key): `busgate token
    mint` signs with RSA keys only."""
    signing_input = _jwt_signing_input(claims_obj, kid, "HS256")
    sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(sig)


def local_issuer(jwks_path, issuer="https://it.local.test", audiences="busgate", extra=()):
    """An identity.issuers entry (for busgate_config(extra_issuers=...))
    trusting a local JWKS file. extra: more of the entry's settings, each
    "key: value" (e.g. "allow_hs256: true")."""
    return (f"    - issuer: {issuer}\n      audiences: [{audiences}]\n"
            f"      jwks_file: {jwks_path}\n" + "".join(f"      {e}\n" for e in extra))


def mockcluster_bin():
    return str(build_dir() / "tests" / "integration" / "mockcluster" / "bg_mockcluster")


class MockCluster:
    """tests/integration/mockcluster: librdkafka's mock cluster in a child
    process, driven line by line."""

    def __init__(self, brokers=3):
        self.proc = subprocess.Popen([mockcluster_bin(), str(brokers)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self.bootstrap = self._line()
        assert self.bootstrap, "mock cluster did not start"

    def _line(self, timeout=30.0):
        """The mock cluster's next output line ('' after timeout: one line
        answers each command, so nothing is left buffered between calls)."""
        import select
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return self.proc.stdout.readline().strip() if ready else ""

    def command(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._line()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


# ---- a minimal Kafka wire client for raw-socket tests ----

def kstr(s):
    """A Kafka (non-compact) nullable string."""
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def kbytes(b):
    return struct.pack(">i", len(b)) + b


def uvarint(n):
    """Unsigned varint (flexible versions: lengths, tag counts)."""
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def cstr(s):
    """Compact string: uvarint(len + 1), then the bytes."""
    b = s.encode()
    return uvarint(len(b) + 1) + b


def crc32c(data):
    """CRC-32C (Castagnoli), as record batches and busgate's spool use it."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def produce_v3_body(topic, acks=-1, value=b"x", timeout_ms=5000):
    """A Produce v3 request body: no transactional id, partition 0 of topic
    with one record of value, or null records when value is None."""
    records = struct.pack(">i", -1) if value is None else kbytes(record_batch(value))
    return (kstr(None) + struct.pack(">hi", acks, timeout_ms) + struct.pack(">i", 1) +
            kstr(topic) + struct.pack(">ii", 1, 0) + records)


def record_batch(value=b"x"):
    """A v2 record batch of one record (no key, no headers), CRC filled in."""
    def zigzag(n):
        return uvarint((n << 1) ^ (n >> 63))
    rec = b"\x00" + zigzag(0) + zigzag(0) + zigzag(-1) + zigzag(len(value)) + value + zigzag(0)
    rec = zigzag(len(rec)) + rec
    now = int(time.time() * 1000)
    tail = struct.pack(">hiqqqhii", 0, 0, now, now, -1, -1, -1, 1) + rec
    body = struct.pack(">ib", -1, 2) + struct.pack(">I", crc32c(tail)) + tail
    return struct.pack(">qi", 0, len(body)) + body


class FlexReader:
    """Reads the compact/flexible encodings of KIP-482 responses."""

    def __init__(self, data):
        self.d, self.o = data, 0

    def take(self, n):
        v = self.d[self.o:self.o + n]
        self.o += n
        return v

    def i8(self):
        return struct.unpack(">b", self.take(1))[0]

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def uvarint(self):
        shift = n = 0
        while True:
            b = self.take(1)[0]
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n

    def cstr(self):
        n = self.uvarint() - 1
        return None if n < 0 else self.take(n).decode()

    def tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())

    def int_array(self):
        return [self.i32() for _ in range(self.uvarint() - 1)]


def metadata_v1_topics(body):
    """(error code, name) of each topic in a Metadata v1 response body."""
    o = 0

    def i16():
        nonlocal o
        o += 2
        return struct.unpack(">h", body[o - 2:o])[0]

    def i32():
        nonlocal o
        o += 4
        return struct.unpack(">i", body[o - 4:o])[0]

    def string():
        nonlocal o
        n = i16()
        s = body[o:o + max(n, 0)].decode()
        o += max(n, 0)
        return s

    for _ in range(i32()):  # brokers: node id, host, port, rack
        i32(), string(), i32(), string()
    i32()  # controller id
    out = []
    for _ in range(i32()):
        err, name = i16(), string()
        o += 1  # is_internal
        for _ in range(i32()):  # partitions: error, index, leader, replicas, isr
            i16(), i32(), i32()
            for _ in range(2):
                for _ in range(i32()):
                    i32()
        out.append((err, name))
    return out


class KafkaWire:
    """One TCP connection speaking request header v1 (non-flexible APIs
    only) and reading response header v0. Every read is bounded. sent and
    received count the bytes each way. source: the loopback address to
    connect from (None: the system's choice)."""

    def __init__(self, port, timeout=10.0, client_id="it-raw", source=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.settimeout(timeout)
        self.client_id = client_id
        self.corr = 0
        self.sent = self.received = 0

    def close(self):
        self.sock.close()

    def send(self, api_key, version, body):
        self.corr += 1
        payload = struct.pack(">hhi", api_key, version, self.corr) + kstr(self.client_id) + body
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)
        self.sent += 4 + len(payload)
        return self.corr

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
            self.received += len(chunk)
        return buf

    def recv(self):
        """(correlation id, body) of the next response, or None when the
        peer closed the connection."""
        try:
            head = self._read(4)
            if head is None:
                return None
            size = struct.unpack(">i", head)[0]
            data = self._read(size)
        except ConnectionResetError:
            return None
        if data is None:
            return None
        return struct.unpack(">i", data[:4])[0], data[4:]

    def call(self, api_key, version, body):
        corr = self.send(api_key, version, body)
        r = self.recv()
        if r is None:
            return None
        assert r[0] == corr, f"correlation id {r[0]} != {corr}"
        return r[1]

    def call_flex(self, api_key, version, body):
        """A flexible-version request (header v2: client id, no tags): the
        response body after its header's tagged fields, as a FlexReader, or
        None when the peer closed the connection."""
        self.corr += 1
        payload = struct.pack(">hhi", api_key, version, self.corr) + kstr(self.client_id)
        self.sock.sendall(struct.pack(">i", len(payload) + 1 + len(body)) + payload + b"\x00"
                          + body)
        self.sent += 4 + len(payload) + 1 + len(body)
        r = self.recv()
        if r is None:
            return None
        assert r[0] == self.corr, f"correlation id {r[0]} != {self.corr}"
        rd = FlexReader(r[1])
        rd.tags()
        return rd

    def closed_by_peer(self, timeout=10.0):
        """True when the peer closes the connection (EOF or reset) within
        timeout without sending anything more."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def api_versions(self):
        """ApiVersions v0: {api_key: (min, max)}; raises on an error code."""
        body = self.call(18, 0, b"")
        assert body is not None, "connection closed on ApiVersions"
        err, n = struct.unpack(">hi", body[:6])
        assert err == 0, f"ApiVersions error {err}"
        out = {}
        for i in range(n):
            k, lo, hi = struct.unpack(">hhh", body[6 + 6 * i:12 + 6 * i])
            out[k] = (lo, hi)
        return out

    def call_error(self, api_key, version, body, at=4):
        """The int16 error code at byte `at` of the response body (4: after
        throttle_time_ms); the connection must stay open for the answer."""
        r = self.call(api_key, version, body)
        assert r is not None, f"connection closed on api {api_key} v{version}"
        return struct.unpack(">h", r[at:at + 2])[0]

    def sasl_handshake(self, mechanism, version=1):
        """SaslHandshake: (error_code, [mechanisms]) as the answer lists
        them, or None when the connection was closed without one."""
        body = self.call(17, version, kstr(mechanism))
        if body is None:
            return None
        err, n = struct.unpack(">hi", body[:6])
        off, mechs = 6, []
        for _ in range(n):
            ln = struct.unpack(">h", body[off:off + 2])[0]
            mechs.append(body[off + 2:off + 2 + ln].decode())
            off += 2 + ln
        assert off == len(body), body
        return err, mechs

    def sasl_plain(self, token):
        """SaslHandshake v1 PLAIN then SaslAuthenticate v1 with the token as
        the password: (error_code, error_message, session_lifetime_ms), or
        None when the connection was closed."""
        r = self.sasl_handshake("PLAIN")
        if r is None:
            return None
        assert r[0] == 0, "SaslHandshake refused PLAIN"
        body = self.call(36, 1, kbytes(b"\0it-raw\0" + token.encode()))
        if body is None:
            return None
        err, mlen = struct.unpack(">hh", body[:4])
        off = 4
        msg = None
        if mlen >= 0:
            msg = body[off:off + mlen].decode()
            off += mlen
        blen = struct.unpack(">i", body[off:off + 4])[0]
        off += 4 + max(blen, 0)
        lifetime = struct.unpack(">q", body[off:off + 8])[0]
        return err, msg, lifetime

    def login(self, token):
        """ApiVersions, then PLAIN with token, which must succeed; self."""
        self.api_versions()
        r = self.sasl_plain(token)
        assert r is not None and r[0] == 0, f"authentication failed: {r}"
        return self

    def metadata_v1(self, topics=None):
        """Metadata v1 for the named topics (None: all); the raw response
        body, or None when the connection was closed."""
        if topics is None:
            body = struct.pack(">i", -1)
        else:
            body = struct.pack(">i", len(topics)) + b"".join(kstr(t) for t in topics)
        return self.call(3, 1, body)

    def produce_v3(self, topic, value=b"x"):
        """Produce v3 (acks=all) of one record to partition 0 of topic: that
        partition's error code, or None when the connection was closed."""
        resp = self.call(0, 3, produce_v3_body(topic, value=value))
        if resp is None:
            return None
        r = FlexReader(resp)
        assert r.i32() == 1
        name = r.take(r.i16())
        assert name == topic.encode() and r.i32() == 1 and r.i32() == 0, resp
        return r.i16()

    def batch_codecs(self, topic, partition=0, max_bytes=4 << 20):
        """Fetch v4 of one partition from offset 0 (on a listener without
        SASL): the compression codec of each record batch as it is stored,
        0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd."""
        body = struct.pack(">iiiib", -1, 1000, 1, max_bytes, 0)  # replica, wait, min, max, isolation
        body += struct.pack(">i", 1) + kstr(topic) + struct.pack(">i", 1)
        body += struct.pack(">iqi", partition, 0, max_bytes)
        resp = self.call(1, 4, body)
        assert resp is not None, "connection closed on Fetch"
        off = 4 + 4  # throttle, topics
        tlen = struct.unpack(">h", resp[off:off + 2])[0]
        off += 2 + tlen + 4 + 4  # name, partitions, partition index
        err = struct.unpack(">h", resp[off:off + 2])[0]
        assert err == 0, f"Fetch error {err}"
        off += 2 + 8 + 8  # error, high watermark, last stable offset
        naborted = struct.unpack(">i", resp[off:off + 4])[0]
        off += 4 + max(naborted, 0) * 16
        rlen = struct.unpack(">i", resp[off:off + 4])[0]
        records, codecs, pos = resp[off + 4:off + 4 + max(rlen, 0)], [], 0
        while pos + 23 <= len(records):
            blen = struct.unpack(">i", records[pos + 8:pos + 12])[0]
            if pos + 12 + blen > len(records):
                break  # a partial batch at the end of the fetch
            attrs = struct.unpack(">h", records[pos + 21:pos + 23])[0]
            codecs.append(attrs & 7)
            pos += 12 + blen
        return codecs


def produce_v13(wire, tid):
    """Produce v13 (acks 1) of one record to partition 0 of topic id tid:
    [(topic id, [(partition, error)])], or None when busgate closed."""
    batch = record_batch()
    body = uvarint(0) + struct.pack(">hi", 1, 5000) + uvarint(2) + tid + uvarint(2)
    body += struct.pack(">i", 0) + uvarint(len(batch) + 1) + batch + b"\x00" + b"\x00" + b"\x00"
    rd = wire.call_flex(0, 13, body)
    if rd is None:
        return None
    out = []
    for _ in range(rd.uvarint() - 1):
        t = rd.take(16)
        parts = []
        for _ in range(rd.uvarint() - 1):
            idx, err = rd.i32(), rd.i16()
            rd.take(24)  # base offset, log append time, log start offset
            for _ in range(rd.uvarint() - 1):  # record errors
                rd.i32(), rd.cstr(), rd.tags()
            rd.cstr()
            rd.tags()
            parts.append((idx, err))
        rd.tags()
        out.append((t, parts))
    return out


def topic_id(wire, topic):
    """The topic id the Metadata v12 answer on wire (busgate or the broker)
    gives for topic; busgate learns it on the way."""
    body = uvarint(2) + bytes(16) + cstr(topic) + b"\x00" + b"\x00\x00" + b"\x00"
    rd = wire.call_flex(3, 12, body)  # Metadata v12
    assert rd is not None, "connection closed on Metadata"
    rd.i32()  # throttle
    for _ in range(rd.uvarint() - 1):  # brokers
        rd.i32(), rd.cstr(), rd.i32(), rd.cstr(), rd.tags()
    rd.cstr(), rd.i32()  # cluster id, controller
    assert rd.uvarint() - 1 == 1
    err, name, tid = rd.i16(), rd.cstr(), rd.take(16)
    assert err == 0 and name == topic, (err, name)
    return tid


def end_offset(topic, partition=0):
    """The broker's high watermark of a partition, asked on the setup
    listener: how many records busgate let reach it."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": KAFKA_PLAIN, "group.id": unique("it-watermark")})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=15)[1]
    finally:
        c.close()


def pipelined(wire, requests):
    """The frames of requests ((api key, version, body), header v1) in one
    write, without reading: their correlation ids."""
    frames, ids = b"", []
    for api, ver, body in requests:
        wire.corr += 1
        payload = struct.pack(">hhi", api, ver, wire.corr) + kstr(wire.client_id) + body
        frames += struct.pack(">i", len(payload)) + payload
        ids.append(wire.corr)
    wire.sock.sendall(frames)
    wire.sent += len(frames)
    return ids


def wait_until(predicate, timeout=15.0, interval=0.1):
    """Polls predicate() until it is truthy or timeout passes; its last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value
