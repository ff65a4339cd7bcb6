"""The life of an AMQP connection through busgate: heartbeats kept on each
leg, token expiry and connection.update-secret (also pipelined between
publishes), and the broker restarted under a connected client."""
import signal
import struct
import time
import uuid

import pika.exceptions as pex
import pytest

from amqp_env import (AUDIENCE, RABBIT_PORT, Issuer, PrivateRabbit, audit_down_gateway, audit_events,
                      busgate_config, connect, direct, get_one, rule, unique, start_gateway,
                      wait_audit, wait_not_admitting)
from amqp_wire import (close_args, frame, handshake, header, ls, method, open_channel, publish,
                       ss, table)
from conftest import keepalive_timers

ALL = ["read", "write", "create", "delete", "describe"]
POLICY = (rule("it-all", ["group:apps"], ["amqp:queue:it.*", "amqp:exchange:it.*"], ALL)
          + rule("default-exchange", ["group:apps"], ["amqp:exchange:amq.default"], ["write"]))


def roundtrip(conn, q=None):
    """Declares a queue, publishes and reads one message back on conn."""
    ch = conn.channel()
    q = q or unique("it.q")
    ch.queue_declare(q, auto_delete=True)
    ch.basic_publish("", q, b"ping")
    body = get_one(conn, ch, q)
    if body is not None:
        ch.close()
    return body


@pytest.mark.single_build
def test_idle_connection_kept_by_heartbeats(start_busgate, tmp_path):
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(tmp_path, issuer, POLICY, heartbeat=2)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    conn = connect(ports["listen"], issuer.mint("alice", ["apps"]), heartbeat=2)
    assert conn._impl.params.heartbeat == 2
    # Idle through 3+ heartbeat intervals on both legs (a silent leg is
    # closed after 2 intervals), servicing heartbeats only.
    conn.sleep(7)
    assert conn.is_open
    assert roundtrip(conn) == b"ping"
    conn.close()
    # busgate closed nobody for missed heartbeats meanwhile.
    assert not bg.wait_log(lambda l: "heartbeat" in l.get("msg", ""), timeout=0.5)


def test_expiry_closes_and_update_secret_extends(start_busgate, tmp_path):
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(tmp_path, issuer, POLICY)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    port = ports["listen"]
    # Minted first (each mint is a process): the 3 s between the short
    # tokens' issue and their exp cover only the two logins.
    fresh = issuer.mint("alice", ["apps"], ttl=120)
    t_short, t_kept = issuer.mint("alice", ["apps"], ttl=3), issuer.mint("alice", ["apps"], ttl=3)
    short, kept = connect(port, t_short), connect(port, t_kept)
    # kept gets a fresh token before the first one expires.
    kept.update_secret(fresh, "token refresh")
    with pytest.raises(pex.ConnectionClosedByBroker) as ei:
        for _ in range(100):
            short.sleep(0.1)
    assert ei.value.reply_code == 320 and "credential expired" in ei.value.reply_text, ei.value
    assert bg.wait_log(lambda l: "credential expired" in l.get("msg", "")), \
        bg.log_path.read_text()[-2000:]
    # The audit says how that session ended.
    assert wait_audit(ports["audit"], lambda e: e["kind"] == "session_end" and
                      e.get("detail", "").startswith("320 CONNECTION_FORCED - credential expired")), \
        audit_events(ports["audit"])
    assert kept.is_open and roundtrip(kept) == b"ping"
    # Another subject's token cannot take over the connection.
    with pytest.raises((pex.ConnectionClosedByBroker, pex.StreamLostError)):
        kept.update_secret(issuer.mint("mallory", ["apps"], ttl=120), "takeover")
        kept.sleep(1)
    ev = wait_audit(ports["audit"], lambda e: e.get("kind") == "session_start" and
                    e.get("detail") == "secret updated")
    assert ev and ev[0]["principal"]["sub"] == "alice"
    assert wait_audit(ports["audit"], lambda e: e.get("auth_failure_reason") ==
                      "different_subject")


def test_update_secret_from_another_issuer_closes(start_busgate, tmp_path):
    """A principal is (issuer, sub): the same sub from a second trusted
    issuer is someone else and cannot take over the connection."""
    issuer = Issuer(tmp_path / "keys")
    other = Issuer(tmp_path / "other-keys", iss="https://other-idp.example")
    text, ports = busgate_config(tmp_path, issuer, POLICY, more_issuers=[other])
    start_busgate(text, wait_for_port=ports["listen"])
    conn = connect(ports["listen"], issuer.mint("alice", ["apps"]))
    # The other issuer's tokens are good on their own.
    fresh = connect(ports["listen"], other.mint("alice", ["apps"]))
    assert roundtrip(fresh) == b"ping"
    fresh.close()
    with pytest.raises((pex.ConnectionClosedByBroker, pex.StreamLostError)):
        conn.update_secret(other.mint("alice", ["apps"], ttl=120), "takeover")
        conn.sleep(1)
    assert wait_audit(ports["audit"], lambda e: e.get("auth_failure_reason") ==
                      "different_subject")


def test_update_secret_refusal_is_530_not_allowed(start_busgate, tmp_path):
    """A refused update-secret (another subject's token) closes the
    connection with 530 NOT_ALLOWED naming connection.update-secret, as
    RabbitMQ does; its auth_failure event names no principal (the refused
    token's subject is not the session's, and the session's is not who
    failed), and no client id either: on AMQP that is the token's
    client_id claim, here the session's (its session_start has it)."""
    _, ports, issuer = start_gateway(start_busgate, tmp_path, POLICY)
    now = int(time.time())
    token = issuer.sign({"iss": issuer.iss, "aud": AUDIENCE, "sub": "alice", "groups": ["apps"],
                         "client_id": "alice-svc", "iat": now, "exp": now + 120,
                         "jti": uuid.uuid4().hex})
    r, _ = handshake(ports["listen"], token)
    try:
        r.send(method(0, 10, 70, ls(issuer.mint("mallory", ["apps"], ttl=120)) + ss("takeover")))
        code, text, cls, meth = close_args(r.expect(0, (10, 50)))
        assert (code, cls, meth) == (530, 10, 70), (code, text, cls, meth)
        assert text.startswith("NOT_ALLOWED - new secret was refused"), text
    finally:
        r.close()
    (ev,) = wait_audit(ports["audit"], lambda e: e.get("kind") == "auth_failure")
    assert ev["auth_failure_reason"] == "different_subject", ev
    assert not (ev.get("principal") or {}).get("sub"), ev
    assert not (ev.get("client") or {}).get("id"), ev
    (start,) = wait_audit(ports["audit"], lambda e: e.get("kind") == "session_start")
    assert start["client"]["id"] == "alice-svc", start


def test_update_secret_pipelined_between_publishes(start_busgate, tmp_path):
    """An update-secret written in one go between two publishes: the
    publish after it is decided with the new token. Alice's own token
    without her group refuses the second publish (403 on its channel, the
    first one delivered); a principal without grants that sends Alice's
    token and a publish behind it gets 530 and publishes nothing
    (red-team review: update-secret was covered one method at a time)."""
    _, ports, issuer = start_gateway(start_busgate, tmp_path, POLICY)
    q = unique("it.us-pipe")
    ctl = direct()
    cch = ctl.channel()
    cch.queue_declare(q, auto_delete=False)

    def pub(ch, data):
        return publish(ch, "", q) + header(ch, len(data)) + frame(3, ch, data)

    def queued():
        return cch.queue_declare(q, passive=True).method.message_count

    try:
        r, _ = handshake(ports["listen"], issuer.mint("alice", ["apps"]))
        open_channel(r, 1)
        r.send(pub(1, b"1") + method(0, 10, 70, ls(issuer.mint("alice", [])) + ss("fewer"))
               + pub(1, b"2"))
        r.expect(0, (10, 71))
        code, text, cls, meth = close_args(r.expect(1, (20, 40)))
        assert (code, cls, meth) == (403, 60, 40), text
        r.close()
        assert queued() == 1

        r, _ = handshake(ports["listen"], issuer.mint("mallory", []))
        open_channel(r, 1)
        r.send(method(0, 10, 70, ls(issuer.mint("alice", ["apps"])) + ss("takeover"))
               + pub(1, b"3"))
        code, text, cls, meth = close_args(r.expect(0, (10, 50)))
        assert (code, cls, meth) == (530, 10, 70), text
        r.close()
        assert queued() == 1
    finally:
        cch.queue_delete(q)
        ctl.close()
    publishes = [e for e in audit_events(ports["audit"]) if e["kind"] == "decision"
                 and e["api"]["name"] == "basic.publish"]
    assert [(e["principal"]["sub"], e["decision"]["effect"]) for e in publishes] == \
        [("alice", "allow"), ("alice", "deny")], publishes


def test_update_secret_while_audit_is_down_closes_320(start_busgate, tmp_path):
    """An update-secret is an audit event (session_start "secret
    updated"): while the pipeline cannot record events it is not accepted
    unrecorded; the connection is closed with 320 CONNECTION_FORCED, as a
    login is refused then."""
    _, ports, issuer = audit_down_gateway(start_busgate, tmp_path, POLICY)
    r, _ = handshake(ports["listen"], issuer.mint("alice", ["apps"], ttl=120))
    try:
        assert wait_not_admitting(ports)
        r.send(method(0, 10, 70, ls(issuer.mint("alice", ["apps"], ttl=300)) + ss("refresh")))
        code, text, cls, meth = close_args(r.expect(0, (10, 50)))
        assert code == 320, (code, text, cls, meth)
        assert text == "CONNECTION_FORCED - busgate cannot record audit events now; retry", text
    finally:
        r.close()


def test_prefix_reload_renames_in_reply_texts(start_busgate, tmp_path):
    """A client that logged in without a user name is named by its principal
    in refusals. A reload that gives its issuer a subject_prefix renames it
    there too, whether the next thing the connection does is a method or an
    update-secret (which takes the new configuration itself)."""
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(tmp_path, issuer, POLICY)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    a = connect(ports["listen"], issuer.mint("alice", ["apps"]), user="")
    b = connect(ports["listen"], issuer.mint("alice", ["apps"]), user="")
    new = text.replace(f"jwks_file: {issuer.jwks}\n",
                       f"jwks_file: {issuer.jwks}\n      subject_prefix: p/\n"
                       f"      groups_prefix: p/\n")
    assert new != text
    bg.config_path.write_text(new)
    bg.signal(signal.SIGHUP)
    assert bg.wait_log(lambda l: l.get("msg", "").startswith("reloaded"))
    b.update_secret(issuer.mint("alice", ["apps"], ttl=120), "token refresh")
    for conn in (a, b):
        ch = conn.channel()
        with pytest.raises(pex.ChannelClosedByBroker) as ei:
            ch.queue_declare(unique("it.q"), auto_delete=True)  # group p/apps: no rule
        assert ei.value.reply_code == 403 and "'p/alice'" in ei.value.reply_text, ei.value
        conn.close()


def test_broker_leg_has_tcp_keepalive(start_busgate, tmp_path):
    """busgate's connection to RabbitMQ turns TCP keepalive on, as for
    Kafka's brokers: a broker host that vanished without a FIN is found
    even when heartbeats are off (heartbeat 0)."""
    bg, ports, issuer = start_gateway(start_busgate, tmp_path, POLICY)
    conn = connect(ports["listen"], issuer.mint("svc", ["apps"]), heartbeat=0)
    try:
        assert roundtrip(conn) == b"ping"
        timers = keepalive_timers(bg.proc.pid, RABBIT_PORT)
        assert timers and all(timers), timers
    finally:
        conn.close()


@pytest.mark.single_build
def test_broker_restart_under_a_client(start_busgate, tmp_path):
    rabbit = PrivateRabbit()
    rabbit.up()
    try:
        issuer = Issuer(tmp_path / "keys")
        text, ports = busgate_config(tmp_path, issuer, POLICY, rabbit_port=rabbit.port,
                                     heartbeat=5)
        start_busgate(text, wait_for_port=ports["listen"])
        port = ports["listen"]
        conn = connect(port, issuer.mint("alice", ["apps"]))
        assert roundtrip(conn) == b"ping"
        rabbit.down(keep_data=True)
        # busgate closes the client's connection with 320, as RabbitMQ does
        # when it shuts down, and waits for the close-ok.
        with pytest.raises(pex.ConnectionClosedByBroker) as ei:
            for _ in range(200):
                conn.sleep(0.1)
        assert ei.value.reply_code == 320, ei.value
        rabbit.up()
        again = connect(port, issuer.mint("alice", ["apps"]), attempts=10)
        assert roundtrip(again) == b"ping"
        again.close()
    finally:
        rabbit.down()


def test_second_sigterm_stops_at_once(start_busgate, tmp_path):
    """SIGTERM drains: an open client gets connection.close 320 and busgate
    waits for its close-ok (up to 5 s). A second SIGTERM stops at once: the
    worker closes the session that is still open and busgate exits 0 (the
    second signal used to be ignored)."""
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(tmp_path, issuer, POLICY)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    # An idle pika connection reads nothing until it is used: it never
    # answers busgate's connection.close.
    conn = connect(ports["listen"], issuer.mint("alice", ["apps"]))
    assert conn.is_open
    bg.signal(signal.SIGTERM)
    assert bg.wait_log(lambda l: "busgate is shutting down" in l["msg"], timeout=5), \
        bg.log_path.read_text()[-2000:]
    bg.signal(signal.SIGTERM)
    assert bg.proc.wait(timeout=30) == 0
    msgs = [l["msg"] for l in bg.log_lines()]
    assert "signal 15 again: stopping now, closing open sessions" in msgs, msgs
    assert any(m.endswith("drain deadline passed with 1 session(s) open") for m in msgs), msgs
    assert msgs[-1] == "stopped", msgs
