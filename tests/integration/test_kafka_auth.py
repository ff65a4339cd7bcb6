"""Authentication at busgate's Kafka listener, against the real broker:
what is allowed before SASL, the advertised Produce range, bad tokens (with
the reasons in the audit file), token expiry with and without
re-authentication, a bad token in a re-authentication, a request other
than SaslAuthenticate during one, a SaslAuthenticate after the login, a
malformed frame that closes only its own connection, and requests pipelined
behind a re-authentication as someone else or across the token's expiry."""
import struct
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from conftest import run_cli
from keys import make_rsa_key
from kafka_env import (ERR_SASL_AUTH_FAILED, ERR_TOPIC_AUTHZ, KAFKA_PLAIN, KAFKA_SASL, OIDC,
                       UPSTREAM_PASSWORD, UPSTREAM_USER, FlexReader, KafkaWire, audit_events,
                       busgate_config, claims, client_conf, create_topics, cstr, end_offset,
                       kbytes, kstr, local_issuer, metadata_v1_topics, oidc_token, pipelined,
                       produce_v3_body, scrape, sign_jwt, unique, wait_audit, wait_until)

RULES = """    - name: orders-topics
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

LOCAL_ISS = "https://it.local.test"


def start(start_busgate, tmp_path, **kw):
    text, ports = busgate_config(tmp_path, RULES, **kw)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    return bg, ports


def test_requests_before_authentication(start_busgate, tmp_path):
    bg, ports = start(start_busgate, tmp_path)

    # ApiVersions is answered before authentication, with SASL advertised.
    w = KafkaWire(ports["listen"])
    versions = w.api_versions()
    assert 17 in versions and 36 in versions and 3 in versions
    # Metadata before SASL: the connection is closed without a response.
    assert w.metadata_v1() is None
    w.close()

    # Metadata as the very first request: closed as well.
    w = KafkaWire(ports["listen"])
    w.send(3, 1, struct.pack(">i", -1))
    assert w.closed_by_peer()
    w.close()

    # A frame above the pre-authentication limit (64 KiB): closed before
    # busgate reads it whole.
    w = KafkaWire(ports["listen"])
    w.sock.sendall(struct.pack(">i", 70000) + struct.pack(">hhi", 18, 0, 1) + b"\0" * 1000)
    assert w.closed_by_peer()
    w.close()
    assert bg.wait_log(lambda l: l.get("msg", "") ==
                       "malformed request: api 18 (ApiVersionsRequest) version 0 offset 0: "
                       "request frame larger than allowed (size = 70000, limit 65536: "
                       "preauth_max_frame_bytes)"), bg.log_path.read_text()[-2000:]

    # After authentication the same size is fine: a 200 KB record goes through.
    token = oidc_token("svc-orders")
    w = KafkaWire(ports["listen"])
    w.api_versions()
    err, msg, lifetime = w.sasl_plain(token)
    assert err == 0, msg
    assert w.metadata_v1() is not None
    w.close()
    p = Producer(client_conf(f"127.0.0.1:{ports['listen']}", token))
    results = []
    p.produce(unique("it-orders"), value=b"x" * 200_000,
              on_delivery=lambda e, m: results.append(e))
    assert p.flush(30) == 0
    assert results == [None]


def _auth_errors(conf, timeout=15.0):
    """Connects a producer and returns the error events it reported."""
    errors = []
    conf = dict(conf, error_cb=errors.append)
    p = Producer(conf)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not any(
            e.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED)
            for e in errors):
        p.poll(0.2)
    return errors


def _assert_auth_failed(errors, reason):
    auth = [e for e in errors
            if e.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED)]
    assert auth, [str(e) for e in errors]
    assert any(reason in e.str() for e in auth), [e.str() for e in auth]


def test_api_versions_v5(start_busgate, tmp_path):
    """ApiVersions v5 (KIP-1242, what a Java 4.4 client opens with) is
    answered in its own version, not with UNSUPPORTED_VERSION and a retry;
    v6 still gets UNSUPPORTED_VERSION listing 0..5."""
    bg, ports = start(start_busgate, tmp_path)

    def call(version):
        w = KafkaWire(ports["listen"])
        # Request header v2 (flexible): key, version, correlation id, client
        # id, no tagged fields; body: software name and version, cluster id,
        # node id, no tagged fields (compact strings: length + 1).
        def cstr(v):
            return bytes([len(v) + 1]) + v
        head = struct.pack(">hhi", 18, version, 7) + struct.pack(">h", 6) + b"it-raw" + b"\0"
        body = cstr(b"it-raw") + cstr(b"1.0") + cstr(b"some-cluster") + struct.pack(">i", 1)
        payload = head + body + b"\0"
        w.sock.sendall(struct.pack(">i", len(payload)) + payload)
        r = w.recv()
        w.close()
        assert r is not None and r[0] == 7, r
        return r[1]

    body = call(5)
    err = struct.unpack(">h", body[:2])[0]
    assert err == 0, err
    # Compact array of (key int16, min int16, max int16, tagged fields).
    n, off, keys = body[2] - 1, 3, {}
    for _ in range(n):
        k, lo, hi = struct.unpack(">hhh", body[off:off + 6])
        keys[k] = (lo, hi)
        off += 7
    assert keys[18] == (0, 5) and 0 in keys and 36 in keys, keys
    body = call(6)  # answered in the v0 layout
    err, n = struct.unpack(">hi", body[:6])
    assert err == 35 and n == 1 and struct.unpack(">hhh", body[6:12]) == (18, 0, 5)


def _features(port, version):
    """(SupportedFeatures, FinalizedFeatures) of an ApiVersions v3/v4 answer
    on a fresh connection to port: {name: (min, max)} each."""
    w = KafkaWire(port)
    try:
        # Request header v2: the header's (empty) tagged fields lead the body.
        body = b"\x00" + cstr("it-raw") + cstr("1.0") + b"\x00"
        r = w.call(18, version, body)
    finally:
        w.close()
    assert r is not None
    rd = FlexReader(r)  # ApiVersions answers with response header v0
    assert rd.i16() == 0
    for _ in range(rd.uvarint() - 1):
        rd.i16(), rd.i16(), rd.i16()
        rd.tags()
    rd.i32()  # throttle time
    supported, finalized = {}, {}
    for _ in range(rd.uvarint()):
        tag, size = rd.uvarint(), rd.uvarint()
        end = rd.o + size
        if tag in (0, 2):  # SupportedFeatures, FinalizedFeatures
            into = supported if tag == 0 else finalized
            for _ in range(rd.uvarint() - 1):
                name = rd.cstr()
                a, b = rd.i16(), rd.i16()
                rd.tags()
                # FinalizedFeatures: MaxVersionLevel before MinVersionLevel
                into[name] = (a, b) if tag == 0 else (b, a)
        rd.o = end
    return supported, finalized


def test_api_versions_features_as_the_broker(start_busgate, tmp_path):
    """ApiVersions v4 through busgate lists the broker's SupportedFeatures,
    those whose MinVersion is 0 included (KAFKA-17011: the broker leaves
    them out below v4 only); v3 through busgate lists what the broker lists
    at v3. The first call waits for busgate's upstream, the second is
    answered from the versions kept from it."""
    bg, ports = start(start_busgate, tmp_path)
    bport = int(KAFKA_PLAIN.rsplit(":", 1)[1])
    direct4, direct3 = _features(bport, 4), _features(bport, 3)
    # the broker itself omits MinVersion 0 at v3; else this test shows nothing
    assert any(lo == 0 for lo, _ in direct4[0].values()), direct4
    assert direct3[0] == {k: v for k, v in direct4[0].items() if v[0] != 0}
    assert _features(ports["listen"], 4) == direct4
    assert _features(ports["listen"], 3) == direct3
    assert _features(ports["listen"], 4) == direct4


def test_produce_v0_listed_but_refused(start_busgate, tmp_path):
    """Produce v0-2 are gone since Kafka 4.0, yet a 4.x broker lists them
    (KAFKA-18659), because librdkafka up to 2.11 compresses only when the
    broker's Produce range includes v0. busgate lists the upstream's minimum
    too, and refuses a request below v3 as a broker refuses an unsupported
    version: the connection is closed."""
    bg, ports = start(start_busgate, tmp_path)
    up = KafkaWire(int(KAFKA_PLAIN.rsplit(":", 1)[1]))
    upstream = up.api_versions()[0]
    up.close()
    w = KafkaWire(ports["listen"])
    lo, hi = w.api_versions()[0]
    assert lo == upstream[0] == 0 and 9 <= hi <= upstream[1], (lo, hi, upstream)
    err, msg, _ = w.sasl_plain(oidc_token("svc-orders"))
    assert err == 0, msg
    # Produce v2: transactional id absent before v3; acks, timeout, no topics.
    w.send(0, 2, struct.pack(">hii", 1, 1000, 0))
    assert w.closed_by_peer()
    w.close()
    assert bg.wait_log(lambda l: "unsupported api 0 version 2" in l.get("msg", "")), \
        bg.log_path.read_text()[-2000:]


def test_bad_tokens(start_busgate, tmp_path):
    keydir = tmp_path / "keys"
    keydir.mkdir()
    pem, jwks = make_rsa_key(keydir)
    otherdir = tmp_path / "other"
    otherdir.mkdir()
    other_pem, _ = make_rsa_key(otherdir)  # same kid, different key
    bg, ports = start(start_busgate, tmp_path, extra_issuers=local_issuer(jwks, LOCAL_ISS))
    boot = f"127.0.0.1:{ports['listen']}"

    def mint(*extra):
        r = run_cli("token", "mint", "--key", str(pem), "--kid", "test-key-1", "--sub", "it-local",
                    "--groups", "orders", "--iss", LOCAL_ISS, *extra)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    # Control: a token from the local issuer with the right audience works.
    good = mint("--aud", "busgate")
    md = Producer(client_conf(boot, good)).list_topics(timeout=10)
    assert md.brokers

    now = int(time.time())
    expired = sign_jwt(pem, {"iss": LOCAL_ISS, "aud": "busgate", "sub": "it-local",
                             "groups": ["orders"], "iat": now - 900, "exp": now - 300,
                             "jti": uuid.uuid4().hex})
    wrong_aud = mint("--aud", "other")
    assert claims(wrong_aud)["aud"] in ("other", ["other"])
    bad_sig = sign_jwt(other_pem, {"iss": LOCAL_ISS, "aud": "busgate", "sub": "it-local",
                                   "groups": ["orders"], "iat": now, "exp": now + 600})

    _assert_auth_failed(_auth_errors(client_conf(boot, "not-a-jwt")), "malformed")
    _assert_auth_failed(_auth_errors(client_conf(boot, expired)), "expired")
    _assert_auth_failed(_auth_errors(client_conf(boot, wrong_aud)), "wrong_audience")
    _assert_auth_failed(_auth_errors(client_conf(boot, bad_sig)), "bad_signature")

    # OAUTHBEARER takes the RFC 7628 path (error challenge, 0x01, failure):
    # the client sees the failure too. The client-side expiry is in the
    # future so librdkafka sends the (server-side expired) token.
    def oauth_cb(_config):
        return expired, time.time() + 600
    conf = client_conf(boot, mechanism="OAUTHBEARER", oauth_cb=oauth_cb)
    errors = _auth_errors(conf)
    assert any(e.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED)
               for e in errors), [str(e) for e in errors]

    # On the wire: SaslAuthenticate answers SASL_AUTHENTICATION_FAILED with
    # the reason, then busgate closes the connection.
    w = KafkaWire(ports["listen"])
    w.api_versions()
    err, msg, _ = w.sasl_plain(expired)
    assert err == ERR_SASL_AUTH_FAILED and msg == "invalid token: expired", (err, msg)
    assert w.closed_by_peer()
    w.close()

    def reasons():
        return [e.get("auth_failure_reason") for e in audit_events(ports["audit"])
                if e["kind"] == "auth_failure"]
    want = {"malformed", "expired", "wrong_audience", "bad_signature"}
    assert wait_until(lambda: want <= set(reasons())), reasons()
    # expired: PLAIN, OAUTHBEARER and the raw client.
    assert wait_until(lambda: reasons().count("expired") >= 3), reasons()
    assert scrape(ports["admin"], "busgate_auth_failures_total", {"protocol": "kafka"}) >= 6
    # busgate never logs or audits the token itself.
    log_text = bg.log_path.read_text()
    audit_text = ports["audit"].read_text()
    for t in (expired, wrong_aud, bad_sig, good):
        assert t.split(".")[2] not in log_text and t.split(".")[2] not in audit_text


@pytest.mark.single_build
def test_reauthentication_and_expiry(start_busgate, tmp_path):
    """A client with 15 s tokens (svc-short) re-authenticates and keeps
    working for ~40 s; a raw client that does not re-authenticate is closed
    on its first request after its token expired, ApiVersions included."""
    bg, ports = start(start_busgate, tmp_path)
    boot = f"127.0.0.1:{ports['listen']}"
    topic = unique("it-orders")

    # The raw client: authenticates with a 15 s token and never again.
    short = oidc_token("svc-short")
    exp = claims(short)["exp"]
    raw = KafkaWire(ports["listen"])
    raw.api_versions()
    err, msg, lifetime = raw.sasl_plain(short)
    assert err == 0, msg
    assert 0 < lifetime <= 16_000
    assert raw.metadata_v1() is not None  # works while the token is valid
    # A second one that, after expiry, sends only ApiVersions (before, those
    # were answered for ever and kept the session and its upstream open).
    raw_av = KafkaWire(ports["listen"])
    raw_av.api_versions()
    assert raw_av.sasl_plain(short)[0] == 0

    oidc = {"sasl.oauthbearer.method": "oidc",
            "sasl.oauthbearer.client.id": "svc-short",
            "sasl.oauthbearer.client.secret": "svc-short-secret",
            "sasl.oauthbearer.token.endpoint.url": OIDC + "/token"}
    errors = []
    p = Producer(client_conf(boot, mechanism="OAUTHBEARER", error_cb=errors.append, **oidc))
    c = Consumer(client_conf(boot, mechanism="OAUTHBEARER", error_cb=errors.append,
                             **{"group.id": unique("it-g"), "enable.auto.commit": False,
                                "auto.offset.reset": "earliest", "session.timeout.ms": 6000},
                             **oidc))
    c.assign([TopicPartition(topic, 0, 0)])
    delivered, got = [], []
    sent = 0
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        p.produce(topic, value=f"r{sent}".encode(),
                  on_delivery=lambda e, m: delivered.append(e))
        sent += 1
        p.poll(0)
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
        elif m is not None and m.error().code() != KafkaError._PARTITION_EOF:
            errors.append(m.error())
    assert p.flush(30) == 0
    end = time.monotonic() + 20
    while len(got) < sent and time.monotonic() < end:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()

    assert errors == [], [str(e) for e in errors]
    assert delivered == [None] * sent
    assert got == [f"r{i}".encode() for i in range(sent)]

    # Re-authenticated on the same connection at least twice: some session
    # has two or more session_start events marked re-authenticated.
    events = wait_audit(ports["audit"], lambda e: e["kind"] == "session_start"
                        and e.get("detail") == "re-authenticated", count=2)
    reauth = {}
    for e in events:
        assert e["principal"]["sub"] == "svc-short"
        reauth[e["session_id"]] = reauth.get(e["session_id"], 0) + 1
    assert reauth and max(reauth.values()) >= 2, reauth

    # The raw client's token has expired by now: its next request closes it.
    assert time.time() > exp
    assert raw.metadata_v1() is None
    raw.close()
    assert raw_av.call(18, 0, b"") is None
    raw_av.close()
    assert bg.wait_log(lambda l: "token expired without re-authentication" in l.get("msg", ""))
    # Each close is audited as busgate's refusal of that request with
    # SASL_AUTHENTICATION_FAILED, and its session ends after it, saying why.
    why = "token expired without re-authentication"
    refused = wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                         and e.get("detail") == why, count=2)
    assert sorted(e["api"]["name"] for e in refused) == ["ApiVersions", "Metadata"], refused
    for ev in refused:
        assert ev["decision"]["effect"] == "deny" and ev["decision"]["by"] == "busgate", ev
        assert ev["result"].get("error_code") == 58, ev
        assert ev["result"].get("error_name") == "SASL_AUTHENTICATION_FAILED", ev
        assert ev["principal"]["sub"] == "svc-short", ev
        (end,) = wait_audit(ports["audit"], lambda e: e["kind"] == "session_end"
                            and e["session_id"] == ev["session_id"])
        assert end["seq"] > ev["seq"] and end["detail"] == why, end


def test_malformed_frame_closes_only_that_connection(start_busgate, tmp_path):
    bg, ports = start(start_busgate, tmp_path)
    boot = f"127.0.0.1:{ports['listen']}"
    token = oidc_token("svc-orders")
    topic = unique("it-orders")
    results = []
    p = Producer(client_conf(boot, token))
    p.produce(topic, value=b"before", on_delivery=lambda e, m: results.append(e))
    assert p.flush(30) == 0

    w = KafkaWire(ports["listen"])
    versions = w.api_versions()
    err, msg, _ = w.sasl_plain(token)
    assert err == 0, msg
    lo, hi = versions[0]
    version = 7 if lo <= 7 <= hi else lo  # a non-flexible Produce version
    assert version < 9
    # transactional_id claims 32767 bytes that are not there: reading stops
    # after its length, at byte 22 of the frame (size 4, header 16, length 2).
    w.send(0, version, b"\x7f\xff" + b"\x00" * 6)
    assert w.closed_by_peer()
    w.close()

    def logged(msg):
        line = bg.wait_log(lambda l: l.get("msg", "") == msg)
        assert line, bg.log_path.read_text()[-2000:]
    logged("malformed request: api 0 (ProduceRequest) version %d offset 22: truncated" % version)

    # The same before authentication, in what busgate answers itself: a
    # SaslHandshake whose mechanism claims 32767 bytes.
    w = KafkaWire(ports["listen"])
    w.send(17, 1, b"\x7f\xff" + b"PLAIN")
    assert w.closed_by_peer()
    w.close()
    logged("malformed request: api 17 (SaslHandshakeRequest) version 1 offset 22: truncated")
    # A header whose client id length is -2: reading stops after it.
    w = KafkaWire(ports["listen"])
    w.sock.sendall(struct.pack(">ihhih", 10, 18, 0, 1, -2))
    assert w.closed_by_peer()
    w.close()
    logged("malformed request: api 18 (ApiVersionsRequest) version 0 offset 14: "
           "bad request header: bad client_id length")
    # A frame of one byte: no API or version arrived to name.
    w = KafkaWire(ports["listen"])
    w.sock.sendall(struct.pack(">ib", 1, 0))
    assert w.closed_by_peer()
    w.close()
    logged("malformed request: api -1 (not received) version -1 offset 4: "
           "bad request header: truncated")

    # The other client, connected all along, keeps working; so does a new one.
    p.produce(topic, value=b"after", on_delivery=lambda e, m: results.append(e))
    assert p.flush(30) == 0
    q = Producer(client_conf(boot, token))
    q.produce(topic, value=b"new", on_delivery=lambda e, m: results.append(e))
    assert q.flush(30) == 0
    assert results == [None, None, None]
    assert scrape(ports["admin"], "busgate_protocol_errors_total", {"protocol": "kafka"}) == 4


def test_no_authentication_while_audit_is_down(start_busgate, tmp_path):
    """An authentication (successful or not) is an audit event: while the
    pipeline cannot record events (block mode, the only sink failing: here
    the audit file is /dev/full, no spool), busgate closes the connection at
    SaslAuthenticate instead of letting a login go unrecorded, and readiness
    says why."""
    text, ports = busgate_config(tmp_path, RULES)
    text = text.replace(f"  file: {ports['audit']}\n", "  file: /dev/full\n")
    assert "file: /dev/full" in text
    bg = start_busgate(text, wait_for_port=ports["listen"])
    token = oidc_token("svc-orders")
    # The first login is admitted; its session_start cannot be written.
    w = KafkaWire(ports["listen"])
    w.api_versions()
    assert w.sasl_plain(token)[0] == 0
    w.close()

    def not_ready():
        from conftest import http_get
        status, body = http_get(f"http://127.0.0.1:{ports['admin']}/readyz")
        return status == 503 and "audit" in body
    assert wait_until(not_ready), bg.log_path.read_text()[-2000:]
    for tok in (token, "not-a-token"):
        w = KafkaWire(ports["listen"])
        w.api_versions()
        assert w.sasl_plain(tok) is None, "authentication answered while audit is down"
        w.close()
    assert bg.wait_log(lambda l: "authentication refused" in l.get("msg", ""))


def _sasl_answer(body):
    """A SaslAuthenticate v1 response body: (error_code, error_message,
    auth_bytes, session_lifetime_ms)."""
    err, mlen = struct.unpack(">hh", body[:4])
    msg = body[4:4 + mlen].decode() if mlen >= 0 else None
    off = 4 + max(mlen, 0)
    blen = struct.unpack(">i", body[off:off + 4])[0]
    auth = body[off + 4:off + 4 + max(blen, 0)]
    off += 4 + max(blen, 0)
    return err, msg, auth, struct.unpack(">q", body[off:off + 8])[0]


def _sasl_exchange(w, auth_bytes):
    """SaslAuthenticate v1: (error_code, error_message, auth_bytes,
    session_lifetime_ms), or None when the connection was closed."""
    body = w.call(36, 1, kbytes(auth_bytes))
    return None if body is None else _sasl_answer(body)


def _sasl_authenticate(w, auth_bytes):
    """SaslAuthenticate v1: (error_code, error_message, session_lifetime_ms),
    or None when the connection was closed."""
    r = _sasl_exchange(w, auth_bytes)
    return None if r is None else (r[0], r[1], r[3])


def _bearer(token, authzid=None):
    """An OAUTHBEARER client first message (RFC 7628) carrying token."""
    gs2 = b"n," + (b"a=" + authzid.encode() if authzid is not None else b"") + b","
    return gs2 + b"\x01auth=Bearer " + token.encode() + b"\x01\x01"


def _handshake(w, mechanism):
    body = w.call(17, 1, kstr(mechanism))
    assert body is not None and struct.unpack(">h", body[:2])[0] == 0, body
    return w


@pytest.mark.parametrize("api, version, body, why", [
    (3, 1, struct.pack(">i", -1), "request before authentication"),
    (18, 0, b"", "unexpected ApiVersions request during SASL authentication"),
], ids=["Metadata", "ApiVersions"])
def test_only_sasl_authenticate_follows_a_reauthentication_handshake(start_busgate, tmp_path,
                                                                     api, version, body, why):
    """Once a SaslHandshake has started a re-authentication, the session is
    in SASL authentication again, as on Kafka's SaslServerAuthenticator: any
    request but SaslAuthenticate, ApiVersions included (answered before the
    handshake), closes the connection unanswered."""
    bg, ports = start(start_busgate, tmp_path, mechanism="PLAIN")
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    assert w.call(api, version, body) is not None  # before the handshake: answered
    _handshake(w, "PLAIN")  # the re-authentication starts
    assert w.call(api, version, body) is None
    w.close()
    assert bg.wait_log(lambda l: why in l.get("msg", ""))


def test_sasl_state_authzid_and_mechanism(start_busgate, tmp_path):
    """As Kafka's own SASL server: SaslAuthenticate before any handshake is
    ILLEGAL_SASL_STATE; a client asking to act as someone else (an
    authorization id other than the token's subject, or than the PLAIN user
    name) is refused; a re-authentication may not switch mechanisms."""
    bg, ports = start(start_busgate, tmp_path)
    token = oidc_token("svc-orders")
    sub = claims(token)["sub"]

    w = KafkaWire(ports["listen"])
    w.api_versions()
    err, msg, _ = _sasl_authenticate(w, b"\0it-raw\0" + token.encode())
    assert err == 34 and "without SaslHandshake" in msg, (err, msg)  # ILLEGAL_SASL_STATE
    assert w.closed_by_peer()
    w.close()

    def attempt(mechanism, auth_bytes):
        w = _handshake(KafkaWire(ports["listen"]), mechanism)
        r = _sasl_authenticate(w, auth_bytes)
        w.close()
        return r

    def bearer(authzid):
        return _bearer(token, authzid)

    # PLAIN: the authorization id may be empty or the user name.
    assert attempt("PLAIN", b"\0it-raw\0" + token.encode())[0] == 0
    assert attempt("PLAIN", b"it-raw\0it-raw\0" + token.encode())[0] == 0
    err, msg, _ = attempt("PLAIN", b"svc-admin\0it-raw\0" + token.encode())
    assert err == ERR_SASL_AUTH_FAILED and "authorization id" in msg, (err, msg)
    # OAUTHBEARER: the authorization id may be absent or the token's subject.
    assert attempt("OAUTHBEARER", bearer(None))[0] == 0
    assert attempt("OAUTHBEARER", bearer(sub))[0] == 0
    err, msg, _ = attempt("OAUTHBEARER", bearer(sub + "-other"))
    assert err == ERR_SASL_AUTH_FAILED and "authorization id" in msg, (err, msg)

    # Re-authentication with another mechanism: the handshake succeeds, the
    # SaslAuthenticate after it fails and the connection closes.
    w = KafkaWire(ports["listen"]).login(token)
    assert w.metadata_v1() is not None
    _handshake(w, "OAUTHBEARER")
    err, msg, _ = _sasl_authenticate(w, bearer(None))
    assert err == ERR_SASL_AUTH_FAILED and "re-authentication of mechanism 'PLAIN'" in msg, msg
    assert w.closed_by_peer()
    w.close()
    # A second handshake to ask for the first mechanism again is no way
    # around it: a handshake before the SaslAuthenticate closes the session.
    w = KafkaWire(ports["listen"]).login(token)
    _handshake(w, "OAUTHBEARER")
    assert w.call(17, 1, kstr("PLAIN")) is None
    w.close()

    def reasons():
        return [e.get("auth_failure_reason") for e in audit_events(ports["audit"])
                if e["kind"] == "auth_failure"]
    assert wait_until(lambda: reasons().count("authzid_mismatch") == 2), reasons()
    assert wait_until(lambda: reasons().count("mechanism_changed") == 1), reasons()


def test_clock_skew_accepts_but_does_not_extend(start_busgate, tmp_path):
    """The session lifetime is the time left on the token, no more. A token
    up to identity.clock_skew past its exp is accepted, but, as with Kafka's
    broker, the session still ends at exp, not a moment later: its lifetime
    is 1 ms and the next request without re-authentication closes it, one
    second after exp."""
    keydir = tmp_path / "keys"
    keydir.mkdir()
    pem, jwks = make_rsa_key(keydir)
    bg, ports = start(start_busgate, tmp_path, extra_issuers=local_issuer(jwks, LOCAL_ISS))
    now = int(time.time())
    fresh = sign_jwt(pem, {"iss": LOCAL_ISS, "aud": "busgate", "sub": "it-local",
                           "groups": ["orders"], "iat": now, "exp": now + 60})
    w = KafkaWire(ports["listen"])
    w.api_versions()
    before_ms = int(time.time() * 1000)
    err, msg, lifetime = w.sasl_plain(fresh)
    after_ms = int(time.time() * 1000)
    assert err == 0, msg
    exp_ms = (now + 60) * 1000
    assert exp_ms - after_ms <= lifetime <= exp_ms - before_ms, (lifetime, exp_ms - before_ms)
    w.close()
    late = sign_jwt(pem, {"iss": LOCAL_ISS, "aud": "busgate", "sub": "it-local",
                          "groups": ["orders"], "iat": now - 600, "exp": now - 1})
    w = KafkaWire(ports["listen"])
    w.api_versions()
    err, msg, lifetime = w.sasl_plain(late)
    assert err == 0, msg
    assert lifetime == 1
    assert w.metadata_v1() is None
    w.close()
    # Beyond the tolerance (30 s by default) it is refused.
    w = KafkaWire(ports["listen"])
    w.api_versions()
    older = sign_jwt(pem, {"iss": LOCAL_ISS, "aud": "busgate", "sub": "it-local",
                           "groups": ["orders"], "iat": now - 600, "exp": now - 60})
    err, msg, _ = w.sasl_plain(older)
    assert err == ERR_SASL_AUTH_FAILED and msg == "invalid token: expired", (err, msg)
    w.close()


def test_requests_before_a_reauthentication_answer_as_their_sender(start_busgate, tmp_path):
    """A request pipelined just before a re-authentication is filtered and
    audited under the token that sent it, not the next one (Kafka reads a
    connection's next request only after answering the last). Before the
    fix busgate switched identities while the earlier request was still at
    the broker: its answer was filtered with the new token's groups."""
    keydir = tmp_path / "keys"
    keydir.mkdir()
    pem, jwks = make_rsa_key(keydir)
    bg, ports = start(start_busgate, tmp_path, mechanism="PLAIN",
                      extra_issuers=local_issuer(jwks, LOCAL_ISS))

    def mint(*groups):
        args = ["token", "mint", "--key", str(pem), "--kid", "test-key-1", "--sub", "it-reauth",
                "--iss", LOCAL_ISS]
        r = run_cli(*(args + (["--groups", ",".join(groups)] if groups else [])))
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    with_orders, without = mint("orders"), mint()
    topic = unique("it-orders-reauth")
    w = KafkaWire(ports["listen"]).login(with_orders)
    # Metadata, then a re-authentication with a token of no groups, in one write.
    frames = b""
    for api, ver, body in ((3, 1, struct.pack(">i", 1) + kstr(topic)), (17, 1, kstr("PLAIN")),
                           (36, 1, kbytes(b"\0it-raw\0" + without.encode()))):
        w.corr += 1
        payload = struct.pack(">hhi", api, ver, w.corr) + kstr(w.client_id) + body
        frames += struct.pack(">i", len(payload)) + payload
    w.sock.sendall(frames)
    answers = [w.recv() for _ in range(3)]
    assert all(a is not None for a in answers), answers
    (err, name), = metadata_v1_topics(answers[0][1])
    assert name == topic and err != ERR_TOPIC_AUTHZ, err  # described under "orders"
    assert struct.unpack(">h", answers[2][1][:2])[0] == 0  # the re-authentication worked
    # After it, the same request is refused: the new token has no groups.
    (err, _), = metadata_v1_topics(w.metadata_v1([topic]))
    assert err == ERR_TOPIC_AUTHZ, err
    w.close()
    jti = {claims(t)["jti"]: t for t in (with_orders, without)}
    md = wait_audit(ports["audit"], lambda e: e["kind"] == "decision" and
                    e["api"]["name"] == "Metadata", count=2)
    md.sort(key=lambda e: e["seq"])
    assert jti[md[0]["principal"]["token_id"]] == with_orders and \
        md[0]["decision"]["effect"] == "allow", md[0]
    assert jti[md[1]["principal"]["token_id"]] == without and \
        md[1]["decision"]["effect"] == "deny", md[1]


def test_reauth_bad_oauthbearer_token_gets_challenge(start_busgate, tmp_path):
    """A re-authentication with a bad OAUTHBEARER token takes the RFC 7628
    sequence of a first login, as on Kafka's broker (which runs it through
    the same SASL server): error 0 with the error challenge, then, after the
    client's 0x01, SASL_AUTHENTICATION_FAILED and close. Before the fix
    busgate answered 58 at once."""
    bg, ports = start(start_busgate, tmp_path)
    token = oidc_token("svc-orders")
    w = KafkaWire(ports["listen"])
    w.api_versions()
    _handshake(w, "OAUTHBEARER")
    assert _sasl_exchange(w, _bearer(token))[0] == 0
    assert w.metadata_v1() is not None
    _handshake(w, "OAUTHBEARER")  # the re-authentication
    bad = token[:-4] + ("BBBB" if token.endswith("AAAA") else "AAAA")  # its signature broken
    err, msg, auth, lifetime = _sasl_exchange(w, _bearer(bad))
    assert (err, auth, lifetime) == (0, b'{"status":"invalid_token"}', 0), (err, msg, auth)
    err, msg, auth, _ = _sasl_exchange(w, b"\x01")
    assert err == ERR_SASL_AUTH_FAILED and msg == "invalid token: bad_signature", (err, msg)
    assert auth == b""
    assert w.closed_by_peer()
    w.close()
    # One auth_failure for the refused token, in the session that logged in
    # (whose end follows it); the token never reaches the audit.
    (start_ev,) = wait_audit(ports["audit"], lambda e: e["kind"] == "session_start")
    sid = start_ev["session_id"]
    (end,) = wait_audit(ports["audit"], lambda e: e["kind"] == "session_end"
                        and e["session_id"] == sid)
    failures = [e for e in audit_events(ports["audit"]) if e["kind"] == "auth_failure"]
    assert [(e["session_id"], e["auth_failure_reason"]) for e in failures] == \
        [(sid, "bad_signature")], failures
    assert start_ev["seq"] < failures[0]["seq"] < end["seq"]
    assert bad.split(".")[2] not in ports["audit"].read_text()


def test_sasl_authenticate_after_authentication(start_busgate, tmp_path):
    """A SaslAuthenticate with no SaslHandshake after a successful login: as
    Kafka's broker (asked here too), ILLEGAL_SASL_STATE (34) with Kafka's
    message, in order behind the requests before it, and the session goes
    on; audited as a refused login attempt (no_handshake). Before the fix
    busgate answered 34 "SaslAuthenticate without SaslHandshake" and closed.
    Once the token has expired it closes, as any request but a SaslHandshake."""
    # The broker's own answer, on its SASL listener.
    k = KafkaWire(int(KAFKA_SASL.split(":")[1]))
    k.api_versions()
    _handshake(k, "PLAIN")
    creds = b"\0" + UPSTREAM_USER.encode() + b"\0" + UPSTREAM_PASSWORD.encode()
    assert _sasl_authenticate(k, creds)[0] == 0
    kafka = _sasl_authenticate(k, b"\0x\0y")
    assert kafka is not None and kafka[0] == 34, kafka
    assert k.metadata_v1() is not None  # the connection goes on
    k.close()

    keydir = tmp_path / "keys"
    keydir.mkdir()
    pem, jwks = make_rsa_key(keydir)
    bg, ports = start(start_busgate, tmp_path, extra_issuers=local_issuer(jwks, LOCAL_ISS))
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    # Metadata, the SaslAuthenticate, Metadata, in one write: three answers in order.
    sent = []
    frames = b""
    for api, ver, body in ((3, 1, struct.pack(">i", -1)), (36, 1, kbytes(b"\0x\0y")),
                           (3, 1, struct.pack(">i", -1))):
        w.corr += 1
        sent.append(w.corr)
        payload = struct.pack(">hhi", api, ver, w.corr) + kstr(w.client_id) + body
        frames += struct.pack(">i", len(payload)) + payload
    w.sock.sendall(frames)
    answers = [w.recv() for _ in range(3)]
    assert all(a is not None for a in answers), answers
    assert [a[0] for a in answers] == sent
    err, msg, auth, _ = _sasl_answer(answers[1][1])
    assert (err, msg) == (kafka[0], kafka[1]), ((err, msg), kafka)
    assert auth == b""
    assert w.metadata_v1() is not None  # still authenticated
    (start_ev,) = wait_audit(ports["audit"], lambda e: e["kind"] == "session_start")
    sid = start_ev["session_id"]
    (failure,) = wait_audit(ports["audit"], lambda e: e["kind"] == "auth_failure")
    assert failure["session_id"] == sid and failure["auth_failure_reason"] == "no_handshake"
    w.close()
    (end,) = wait_audit(ports["audit"], lambda e: e["kind"] == "session_end"
                        and e["session_id"] == sid)
    assert end["detail"] == "client closed the connection", end

    # A token accepted within the clock skew after its exp: the session has
    # ended at once, so the SaslAuthenticate closes it and is refused.
    now = int(time.time())
    late = sign_jwt(pem, {"iss": LOCAL_ISS, "aud": "busgate", "sub": "it-local",
                          "groups": ["orders"], "iat": now - 600, "exp": now - 5})
    w = KafkaWire(ports["listen"]).login(late)
    assert _sasl_authenticate(w, b"\0x\0y") is None
    w.close()
    why = "token expired without re-authentication"
    (ev,) = wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                       and e.get("detail") == why)
    assert ev["api"]["name"] == "SaslAuthenticate" and ev["principal"]["sub"] == "it-local", ev
    assert ev["decision"]["effect"] == "deny" and ev["result"]["error_code"] == 58, ev


def local_minter(start_busgate, tmp_path):
    """busgate (PLAIN) trusting a local issuer besides the test provider, and
    mint(sub, *groups, ttl=600) for its tokens: (busgate, ports, mint)."""
    keydir = tmp_path / "keys"
    keydir.mkdir()
    pem, jwks = make_rsa_key(keydir)
    bg, ports = start(start_busgate, tmp_path, mechanism="PLAIN",
                      extra_issuers=local_issuer(jwks, LOCAL_ISS))

    def mint(sub, *groups, ttl=600):
        args = ["token", "mint", "--key", str(pem), "--kid", "test-key-1", "--sub", sub,
                "--iss", LOCAL_ISS, "--ttl", str(ttl)]
        r = run_cli(*(args + (["--groups", ",".join(groups)] if groups else [])))
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()
    return bg, ports, mint


def test_pipelined_reauthentication_as_another_subject_takes_nothing(start_busgate, tmp_path):
    """A principal with no grants re-authenticates with another subject's
    token (same issuer, a group that may write the topic) and pipelines a
    Produce behind it in the same write: the re-authentication is refused
    (58, "re-authentication must keep the same principal", as Kafka's
    broker refuses a changed principal), the connection closes without an
    answer to the Produce, and no record reaches the broker (red-team
    review: only a change of issuer was covered, one request at a time)."""
    bg, ports, mint = local_minter(start_busgate, tmp_path)
    topic = unique("it-orders-takeover")
    create_topics([topic])
    w = KafkaWire(ports["listen"]).login(mint("it-nobody"))
    try:
        pipelined(w, [(17, 1, kstr("PLAIN")),
                      (36, 1, kbytes(b"\0it-raw\0" + mint("it-writer", "orders").encode())),
                      (0, 3, produce_v3_body(topic))])
        assert w.recv() is not None  # the handshake
        _, auth = w.recv()
        err, mlen = struct.unpack(">hh", auth[:4])
        assert (err, auth[4:4 + mlen].decode()) == (
            ERR_SASL_AUTH_FAILED, "re-authentication must keep the same principal"), auth
        assert w.recv() is None  # closed: the Produce is not answered
    finally:
        w.close()
    assert wait_audit(ports["audit"], lambda e: e["kind"] == "auth_failure"
                      and e.get("auth_failure_reason") == "different_subject")
    assert not [e for e in audit_events(ports["audit"]) if e["kind"] == "decision"
                and e["api"]["name"] == "Produce"]
    assert end_offset(topic) == 0


def test_pipelined_produces_across_token_expiry(start_busgate, tmp_path):
    """Produce requests (acks 1 and acks 0) written without reading, every
    10 ms from a login with a 3 s token until 2 s past its expiry: none
    read after the expiry is forwarded (the first is refused with 58 and
    the connection closes), every one forwarded was read before the expiry
    (an acks=1 one's allow event, written at the response, less its
    latency; an acks=0 one by its place after those), and the broker holds
    exactly as many records as busgate
    allowed, so none went through unseen (red-team review: the expiry was
    covered with one request at a time)."""
    bg, ports, mint = local_minter(start_busgate, tmp_path)
    topic = unique("it-orders-expiry")
    create_topics([topic])
    token = mint("it-short", "orders", ttl=3)
    exp_ms = claims(token)["exp"] * 1000
    w = KafkaWire(ports["listen"]).login(token)
    try:
        with pytest.raises(OSError):
            for _ in range(1000):  # 10 s at most
                pipelined(w, [(0, 3, produce_v3_body(topic, acks=1)),
                              (0, 3, produce_v3_body(topic, acks=0))])
                time.sleep(0.01)
                if time.time() * 1000 > exp_ms + 2000:
                    w.sock.shutdown(2)  # busgate did not close: fail below
        while w.recv() is not None:
            pass
    finally:
        w.close()
    refused = wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                         and e.get("detail") == "token expired without re-authentication")
    assert len(refused) == 1 and refused[0]["time_ms"] >= exp_ms, refused
    produced = [e for e in audit_events(ports["audit"]) if e["kind"] == "decision"
                and e["api"]["name"] == "Produce" and e["decision"]["effect"] == "allow"]
    # An acks=1 Produce's event is written at its response: its request came
    # latency_us earlier (time_ms is whole milliseconds, hence the 1 ms).
    timed = [e for e in produced if e["result"].get("latency_us")]
    assert timed and all(e["time_ms"] * 1000 - e["result"]["latency_us"]
                         < (exp_ms + 1) * 1000 for e in timed), timed[-1]
    # An acks=0 Produce has no response: its event is written once the
    # responses before it went out, its time not when it was read. Requests
    # alternate acks=1, acks=0 (seq follows their order), so none allowed
    # comes after the last acks=1 read before the expiry but the acks=0
    # written with it.
    last = max(e["seq"] for e in timed)
    assert all(e["seq"] <= last + 1 for e in produced), (last, produced[-1])
    assert end_offset(topic) == len(produced)
