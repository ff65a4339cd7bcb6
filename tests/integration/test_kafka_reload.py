"""A policy reload applies to connections that are already open: the same
producer, on the same connection, is refused once the rule that allowed it
is gone. Sections only a restart applies are left alone, with a warning."""
import signal
import socket
import struct
import time
import urllib.request
from types import SimpleNamespace

import pytest

from confluent_kafka import KafkaError, Producer

from conftest import serve_json
from kafka_env import (ERR_TOPIC_AUTHZ, OIDC, FlexReader, KafkaWire, audit_events, busgate_config,
                       client_conf, end_offset, kafka_topics, kbytes, kstr, local_issuer,
                       metadata_v1_topics, oidc_token, pipelined, produce_v3_body, scrape,
                       sign_hs256, sign_jwt, unique, wait_audit, wait_until, with_audit_topic)
from keys import add_oct_key, make_rsa_key

DESCRIBE = """    - name: orders-describe
      subjects: [group:orders]
      resources: ["kafka:topic:it-orders-*"]
      verbs: [describe, create]
      effect: allow
"""
WRITE = """    - name: orders-write
      subjects: [group:orders]
      resources: ["kafka:topic:it-orders-*"]
      verbs: [write]
      effect: allow
"""


def test_reload_applies_to_open_connection(start_busgate, tmp_path):
    text, ports = busgate_config(tmp_path, DESCRIBE + WRITE)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    topic = unique("it-orders")
    p = Producer(client_conf(f"127.0.0.1:{ports['listen']}", oidc_token("svc-orders")))

    def produce(value):
        out = []
        p.produce(topic, value=value, partition=0, on_delivery=lambda e, m: out.append(e))
        p.flush(30)
        assert len(out) == 1
        return out[0]

    assert produce(b"before") is None
    kafka = {"protocol": "kafka"}
    conns = scrape(ports["admin"], "busgate_connections_total", kafka)
    open_now = scrape(ports["admin"], "busgate_connections_open", kafka)
    reloads = scrape(ports["admin"], "busgate_reloads_total", {"result": "ok"})

    # Same file (same ports) without the write rule. The describe rule
    # stays, so the refusal comes from the Produce itself, not from metadata.
    new_text = text.replace(WRITE, "")
    assert "orders-write" not in new_text and "orders-describe" in new_text
    bg.config_path.write_text(new_text)
    bg.signal(signal.SIGHUP)
    assert wait_until(lambda: scrape(ports["admin"], "busgate_reloads_total",
                                     {"result": "ok"}) > reloads), bg.log_path.read_text()[-2000:]

    err = produce(b"after")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    # Neither the producer's nor any other connection was dropped or added.
    assert scrape(ports["admin"], "busgate_connections_total", kafka) == conns
    assert scrape(ports["admin"], "busgate_connections_open", kafka) == open_now
    assert wait_audit(ports["audit"], lambda e: e["kind"] == "reload"
                      and e.get("detail", "").startswith("reloaded (SIGHUP)"))
    denied = wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                        and e["api"]["name"] == "Produce" and e["decision"]["effect"] == "deny")
    allowed = wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                         and e["api"]["name"] == "Produce" and e["decision"]["effect"] == "allow")
    # The refused Produce came on the connection that produced before.
    assert denied and allowed
    assert {e["session_id"] for e in denied} == {e["session_id"] for e in allowed}


EVERYTHING = """    - name: everything
      subjects: [group:orders]
      resources: ["kafka:topic:*"]
      verbs: [read, write, create, delete, alter, describe]
      effect: allow
"""


def test_reload_cannot_move_the_audit_topic(kafka_topics, start_busgate, tmp_path):
    """audit.kafka_topic is applied at start-up only: a reload that changes
    it logs that only a restart applies it, and the topic the running
    pipeline writes stays reserved, even under a rule that allows every
    verb on every topic."""
    first, second = kafka_topics(unique("busgate.audit")), unique("busgate.audit")
    text, ports = busgate_config(tmp_path, EVERYTHING, mechanism="PLAIN")
    bg = start_busgate(with_audit_topic(text, first), wait_for_port=ports["listen"])
    boot = f"127.0.0.1:{ports['listen']}"

    def produce(topic):
        """One record from a new producer (no cached metadata): its error."""
        p, out = Producer(client_conf(boot, oidc_token("svc-orders"))), []
        p.produce(topic, value=b"forged", on_delivery=lambda e, m: out.append(e))
        p.flush(30)
        assert len(out) == 1
        return out[0]

    def busgate_refusals():
        return len(wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                              and e["decision"]["effect"] == "deny" and e["verb"] == "write"
                              and any(r["name"] == first for r in e["resources"]), timeout=0))

    assert produce(first).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert wait_until(busgate_refusals)
    refused = busgate_refusals()
    reloads = scrape(ports["admin"], "busgate_reloads_total", {"result": "ok"})
    bg.config_path.write_text(with_audit_topic(text, second))
    bg.signal(signal.SIGHUP)
    assert wait_until(lambda: scrape(ports["admin"], "busgate_reloads_total",
                                     {"result": "ok"}) > reloads), bg.log_path.read_text()[-2000:]
    assert bg.wait_log(lambda l: l.get("msg", "").startswith("audit: changed, but only a restart "
                                                            "applies it")), \
        bg.log_path.read_text()[-2000:]
    err = produce(first)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    assert wait_until(lambda: busgate_refusals() > refused)


class _JwksServer:
    """Serves the test provider's key set from 127.0.0.1 until stopped: a
    stand-in for an identity provider that can be taken down."""

    def __init__(self):
        with urllib.request.urlopen(OIDC + "/jwks", timeout=10) as r:
            self.httpd = serve_json(r.read())
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/jwks"

    def stop(self):
        """Takes the provider down; stopping it again does nothing."""
        if self.httpd:
            self.httpd.shutdown()  # waits for the serving thread
            self.httpd.server_close()
            self.httpd = None


def test_reload_keeps_keys_while_provider_down(start_busgate, tmp_path):
    """A reload keeps the keys an unchanged jwks_url issuer already has: with
    the identity provider down, a new client still logs in after the reload
    (before, the reloaded configuration started with no keys and refused
    every login until a fetch succeeded)."""
    jwks = _JwksServer()
    try:
        text, ports = busgate_config(tmp_path, DESCRIBE + WRITE, mechanism="PLAIN")
        text = text.replace(f"jwks_url: {OIDC}/jwks", f"jwks_url: {jwks.url}")
        assert jwks.url in text
        bg = start_busgate(text, wait_for_port=ports["listen"])
        boot = f"127.0.0.1:{ports['listen']}"
        topic = unique("it-orders")

        def produce(client_id):
            """One record from a new producer (a new login): its error. The
            producer is gone on return (its connections closed)."""
            p, out = Producer(client_conf(boot, oidc_token("svc-orders"),
                                          **{"message.timeout.ms": 15000,
                                             "client.id": client_id})), []
            p.produce(topic, value=b"x", partition=0, on_delivery=lambda e, m: out.append(e))
            p.flush(30)
            assert len(out) == 1
            return out[0]

        assert produce(unique("it-before")) is None
        jwks.stop()
        reloads = scrape(ports["admin"], "busgate_reloads_total", {"result": "ok"})
        bg.config_path.write_text(text.replace("orders-describe", "orders-describe-v2"))
        bg.signal(signal.SIGHUP)
        assert wait_until(lambda: scrape(ports["admin"], "busgate_reloads_total",
                                         {"result": "ok"}) > reloads), \
            bg.log_path.read_text()[-2000:]
        after = unique("it-after")
        assert produce(after) is None, bg.log_path.read_text()[-2000:]

        def ended():
            """Every session the second producer started has ended: the
            events of its logins are all written by then."""
            evs = [e for e in audit_events(ports["audit"])
                   if e.get("client", {}).get("id") == after]
            starts = {e["session_id"] for e in evs if e["kind"] == "session_start"}
            return starts and starts <= {e["session_id"] for e in evs
                                         if e["kind"] == "session_end"}
        assert wait_until(ended), audit_events(ports["audit"])
        assert not [e for e in audit_events(ports["audit"]) if e["kind"] == "auth_failure"]
    finally:
        jwks.stop()


REVOKED_ISSUER = "https://it.revoked.test"
REVOKED_RULE = """    - name: rv-use
      subjects: ["sub:rv-user"]
      resources: ["kafka:topic:it-rv-*"]
      verbs: [describe, write]
      effect: allow
"""


def _plain_login(w, token):
    """SASL PLAIN with the token as the password on KafkaWire w: the
    SaslAuthenticate error code."""
    body = w.call(17, 1, kstr("PLAIN"))
    assert body is not None and struct.unpack(">h", body[:2])[0] == 0
    body = w.call(36, 1, kbytes(b"\0it-raw\0" + token.encode()))
    assert body is not None
    return struct.unpack(">h", body[:2])[0]


def _new_login(ports, token):
    """A new connection's SaslAuthenticate error code with token; the
    connection when it logged in, else None (closed)."""
    w = KafkaWire(ports["listen"])
    w.api_versions()
    err = _plain_login(w, token)
    if err:
        w.close()
        return err, None
    return err, w


def _reload(bg, ports, text):
    reloads = scrape(ports["admin"], "busgate_reloads_total", {"result": "ok"})
    bg.config_path.write_text(text)
    bg.signal(signal.SIGHUP)
    assert wait_until(lambda: scrape(ports["admin"], "busgate_reloads_total",
                                     {"result": "ok"}) > reloads), bg.log_path.read_text()[-2000:]


def _rv_claims(aud="busgate", **more):
    """Claims of a REVOKED_ISSUER token for rv-user, valid for an hour."""
    now = int(time.time())
    return {"iss": REVOKED_ISSUER, "aud": aud, "sub": "rv-user", "iat": now, "exp": now + 3600,
            **more}


def _revoked_issuer_session(start_busgate, kafka_topics, tmp_path, aud, hs256=False):
    """busgate with REVOKED_ISSUER trusted (its RSA key; with hs256 also a
    shared secret, under allow_hs256), and a PLAIN session of the issuer's
    token (audience aud; HS256-signed with hs256, else RS256) that has had
    Metadata and a Produce on a new topic allowed by REVOKED_RULE. A
    namespace: bg, ports, text (the configuration), issuer (its lines in
    text), jwks and pem (the issuer's keys), token, w (the session), topic."""
    topic = kafka_topics(unique("it-rv"))
    pem, jwks = make_rsa_key(tmp_path)
    secret = add_oct_key(jwks) if hs256 else None
    issuer = local_issuer(jwks, REVOKED_ISSUER, extra=["allow_hs256: true"] if hs256 else ())
    text, ports = busgate_config(tmp_path, REVOKED_RULE, mechanism="PLAIN", extra_issuers=issuer)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    tok = sign_hs256(secret, _rv_claims(aud)) if hs256 else sign_jwt(pem, _rv_claims(aud))
    err, w = _new_login(ports, tok)
    assert err == 0
    assert metadata_v1_topics(w.metadata_v1([topic])) == [(0, topic)]
    assert w.produce_v3(topic, b"before") == 0
    return SimpleNamespace(bg=bg, ports=ports, text=text, issuer=issuer, jwks=jwks, pem=pem,
                           token=tok, w=w, topic=topic)


def _busgate_denied(ports, why, api="Metadata"):
    """The one deny decision event of api (a Kafka API name) in the audit:
    busgate's for rv-user, with why as its detail and the entry refused
    TOPIC_AUTHORIZATION_FAILED."""
    (ev,) = wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                       and e["api"]["name"] == api and e["decision"]["effect"] == "deny")
    assert ev["principal"]["sub"] == "rv-user", ev
    assert ev["decision"]["by"] == "busgate" and "rule" not in ev["decision"], ev
    assert ev["detail"] == why, ev
    assert ev["result"]["error_code"] == 29, ev
    return ev


def test_reload_removing_the_issuer_denies_its_sessions(kafka_topics, start_busgate, tmp_path):
    """An operator removes an issuer (its keys leaked) and reloads. A session
    that logged in with that issuer's token keeps its connection (a reload
    drops none), but from its next request on every decision is busgate's
    deny, refused as a policy deny is (TOPIC_AUTHORIZATION_FAILED), until a
    reload puts the issuer back. A new login with the token is refused."""
    s = _revoked_issuer_session(start_busgate, kafka_topics, tmp_path, "busgate")
    bg, ports, w, topic = s.bg, s.ports, s.w, s.topic
    why = "the token's issuer is no longer configured"
    kafka = {"protocol": "kafka"}
    open_now = scrape(ports["admin"], "busgate_connections_open", kafka)
    denies = scrape(ports["admin"], "busgate_decisions_total",
                    {"protocol": "kafka", "effect": "deny"}) or 0

    without = s.text.replace(s.issuer, "")
    assert REVOKED_ISSUER not in without
    _reload(bg, ports, without)
    # The open session: answered, refused, and still open.
    assert metadata_v1_topics(w.metadata_v1([topic])) == [(29, topic)]
    assert scrape(ports["admin"], "busgate_connections_open", kafka) == open_now
    assert wait_until(lambda: scrape(ports["admin"], "busgate_decisions_total",
                                     {"protocol": "kafka", "effect": "deny"}) == denies + 1)
    ev = _busgate_denied(ports, why)
    assert ev["resources"] == [{"type": "kafka:topic", "name": topic}], ev
    # A listing open to every principal is empty, and a deny too.
    assert metadata_v1_topics(w.metadata_v1(None)) == []
    listing = wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                         and e["resources"] == [{"type": "kafka:topic", "name": "*"}])
    assert [(e["decision"]["effect"], e["decision"]["by"], e["detail"]) for e in listing] == \
        [("deny", "busgate", why)], listing
    # A new login with the token is refused (and so is a re-authentication).
    assert _new_login(ports, s.token) == (58, None)

    _reload(bg, ports, s.text)  # the issuer is back: decided by the policy again
    assert metadata_v1_topics(w.metadata_v1([topic])) == [(0, topic)]
    w.close()


def test_reload_removing_the_audience_denies_its_sessions(kafka_topics, start_busgate, tmp_path):
    """A reload that takes the token's audience out of its issuer's
    audiences (the issuer stays): a login with the token would be refused
    now, so the open session is denied everything by busgate, as when the
    issuer is removed, until a reload accepts the audience again."""
    s = _revoked_issuer_session(start_busgate, kafka_topics, tmp_path, ["busgate"])
    bg, ports, w, topic = s.bg, s.ports, s.w, s.topic
    kafka = {"protocol": "kafka"}
    open_now = scrape(ports["admin"], "busgate_connections_open", kafka)

    moved = s.text.replace(s.issuer, local_issuer(s.jwks, REVOKED_ISSUER, "someone-else"))
    assert moved != s.text
    _reload(bg, ports, moved)
    assert metadata_v1_topics(w.metadata_v1([topic])) == [(29, topic)]
    assert scrape(ports["admin"], "busgate_connections_open", kafka) == open_now
    _busgate_denied(ports, "the token's audience is no longer accepted")
    assert _new_login(ports, s.token) == (58, None)  # as a new login with the token is

    # One of the token's audiences among several: decided by the policy again.
    _reload(bg, ports, s.text.replace(s.issuer, local_issuer(s.jwks, REVOKED_ISSUER,
                                                             "someone-else, busgate")))
    assert metadata_v1_topics(w.metadata_v1([topic])) == [(0, topic)]
    w.close()


def test_reload_disallowing_hs256_denies_its_hs256_sessions(kafka_topics, start_busgate,
                                                            tmp_path):
    """A reload that turns allow_hs256 off for an issuer whose shared
    secret signed a session's HS256 token (the issuer, its RSA key and the
    audience stay): the session keeps its connection, but its next Metadata
    and Produce are busgate's deny naming the algorithm, though the policy
    allows both. Its token no longer logs in; the issuer's RS256 tokens
    still do, and are decided by the policy. Turning allow_hs256 back on
    lets the session be decided by the policy again."""
    s = _revoked_issuer_session(start_busgate, kafka_topics, tmp_path, "busgate", hs256=True)
    bg, ports, w, topic = s.bg, s.ports, s.w, s.topic
    why = "the token's algorithm is no longer allowed"
    kafka = {"protocol": "kafka"}
    open_now = scrape(ports["admin"], "busgate_connections_open", kafka)

    without = s.text.replace(s.issuer, local_issuer(s.jwks, REVOKED_ISSUER))
    assert "allow_hs256" in s.text and "allow_hs256" not in without
    _reload(bg, ports, without)
    assert metadata_v1_topics(w.metadata_v1([topic])) == [(29, topic)]
    assert w.produce_v3(topic, b"after") == 29
    assert scrape(ports["admin"], "busgate_connections_open", kafka) == open_now
    _busgate_denied(ports, why)
    ev = _busgate_denied(ports, why, "Produce")
    assert ev["verb"] == "write" and ev["resources"] == [{"type": "kafka:topic", "name": topic}]
    assert _new_login(ports, s.token) == (58, None)
    # A new login with an RS256 token of the same issuer: the policy decides.
    err, w2 = _new_login(ports, sign_jwt(s.pem, _rv_claims()))
    assert err == 0
    assert metadata_v1_topics(w2.metadata_v1([topic])) == [(0, topic)]
    assert w2.produce_v3(topic, b"rs256") == 0
    w2.close()

    _reload(bg, ports, s.text)
    assert w.produce_v3(topic, b"again") == 0
    w.close()


@pytest.mark.parametrize("changed", ["subject_claim: preferred_username", "groups_claim: roles"])
def test_reload_changing_the_claim_names_denies_its_sessions(kafka_topics, start_busgate,
                                                            tmp_path, changed):
    """A reload that changes the issuer's subject_claim (or groups_claim):
    the open session's names came from the old claim and cannot be
    recomputed without its token, so its next request is busgate's deny
    naming the change, though the policy allows it. A new login with a
    token that carries the new claim is decided by the policy; a reload back
    to the old claim lets the session be decided by the policy again."""
    s = _revoked_issuer_session(start_busgate, kafka_topics, tmp_path, "busgate")
    bg, ports, w, topic = s.bg, s.ports, s.w, s.topic

    renamed = s.text.replace(s.issuer, local_issuer(s.jwks, REVOKED_ISSUER, extra=[changed]))
    assert changed in renamed
    _reload(bg, ports, renamed)
    assert metadata_v1_topics(w.metadata_v1([topic])) == [(29, topic)]
    _busgate_denied(ports, "the issuer's subject or groups claim changed; log in again")
    err, w2 = _new_login(ports, sign_jwt(s.pem, _rv_claims(preferred_username="rv-user")))
    assert err == 0
    assert metadata_v1_topics(w2.metadata_v1([topic])) == [(0, topic)]
    w2.close()

    _reload(bg, ports, s.text)
    assert metadata_v1_topics(w.metadata_v1([topic])) == [(0, topic)]
    w.close()


def _produce_error(body, topic):
    """The error of partition 0 of topic in a Produce v3 answer."""
    r = FlexReader(body)
    assert r.i32() == 1 and r.take(r.i16()) == topic.encode() and r.i32() == 1, body
    assert r.i32() == 0, body
    return r.i16()


def test_reload_under_pipelined_produces(kafka_topics, start_busgate, tmp_path):
    """Produce requests (acks 1) written without reading across a reload that
    takes the write grant away: 200 in one write, the reload signalled once
    busgate answered the first of them, then one every 10 ms until it
    reports the reload done, then 50 more and a last one with acks 0. As
    docs/kafka.md says (each request decided by the policy current when it
    arrives, a reload drops no connection, a denied acks=0 Produce closes
    it): the answers, every acks-1 request's in request order, are 0s and
    then only TOPIC_AUTHORIZATION_FAILED, those written after the reload
    among the refused; the connection closes after them for the acks-0
    one; and the broker holds exactly one record per allow event, none
    after the first deny (red-team review: the reload was covered one
    request at a time)."""
    text, ports = busgate_config(tmp_path, DESCRIBE + WRITE)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    topic = kafka_topics(unique("it-orders"))
    w = KafkaWire(ports["listen"], timeout=15).login(oidc_token("svc-orders"))
    produce = (0, 3, produce_v3_body(topic, acks=1))
    reloads = scrape(ports["admin"], "busgate_reloads_total", {"result": "ok"})
    bg.config_path.write_text(text.replace(WRITE, ""))
    try:
        sent = pipelined(w, [produce] * 200)
        assert w.sock.recv(1, socket.MSG_PEEK), "closed before the first answer"
        bg.signal(signal.SIGHUP)
        for _ in range(1000):  # 10 s at most
            if scrape(ports["admin"], "busgate_reloads_total", {"result": "ok"}) > reloads:
                break
            sent += pipelined(w, [produce])
            time.sleep(0.01)
        else:
            pytest.fail("the reload did not finish: " + bg.log_path.read_text()[-2000:])
        after = pipelined(w, [produce] * 50)
        sent += after
        pipelined(w, [(0, 3, produce_v3_body(topic, acks=0))])
        answers = []
        try:
            while (r := w.recv()) is not None:
                answers.append(r)
            closed = True
        except TimeoutError:
            closed = False
    finally:
        w.close()
    assert [corr for corr, _ in answers] == sent, "not every acks-1 Produce was answered in order"
    errs = [_produce_error(body, topic) for _, body in answers]
    allowed = errs.count(0)
    assert errs == [0] * allowed + [ERR_TOPIC_AUTHZ] * (len(errs) - allowed), errs
    assert allowed >= 1 and all(errs[sent.index(c)] == ERR_TOPIC_AUTHZ for c in after), errs
    assert closed, "a denied acks=0 Produce did not close the connection"

    decided = wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                         and e["api"]["name"] == "Produce", count=len(sent) + 1)
    assert len({e["session_id"] for e in decided}) == 1
    effects = [e["decision"]["effect"] for e in decided]
    assert effects == ["allow"] * allowed + ["deny"] * (len(sent) + 1 - allowed), effects
    assert all(e["result"]["records"] == 1 for e in decided)
    assert decided[-1]["result"]["error_code"] == ERR_TOPIC_AUTHZ, decided[-1]
    assert end_offset(topic) == allowed
