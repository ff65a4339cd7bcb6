"""The AMQP adapter's connection lifecycle against a scripted RabbitMQ
(amqp_wire.FakeRabbit), for what the real broker does only by chance: it
does not confirm a client's close (a memory or disk alarm stops it reading,
it goes away, it closes at the same moment), sends frames right behind its
open-ok, or does not answer busgate's login; and a client that disconnects
while its close is on its way to the broker."""
import signal
import struct
import threading
import time

import pika.exceptions as pex
import pytest

from amqp_env import Issuer, audit_events, busgate_config, connect, rule, wait_audit
from amqp_wire import (FakeRabbit, connection_close, expect_connection_close, frame, handshake,
                       header, login, ls, method, open_channel, publish, ss)

ALL = ["read", "write", "create", "delete", "describe"]
POLICY = (rule("fake-all", ["group:apps"], ["amqp:queue:fk.*", "amqp:exchange:fk.*"], ALL)
          + rule("default-exchange", ["group:apps"], ["amqp:exchange:amq.default"], ["write"]))
CLIENT_CLOSE = connection_close(200, "bye")
SHUTDOWN = connection_close(320, "CONNECTION_FORCED - broker forced connection closure with "
                                 "reason 'shutdown'")
UNCONFIRMED = "CONNECTION_FORCED - broker did not confirm the close"
NO_ANSWER = "CONNECTION_FORCED - broker did not answer"


@pytest.fixture
def fake_rabbit():
    fakes = []

    def make(script):
        fakes.append(FakeRabbit(script))
        return fakes[-1]
    yield make
    for f in fakes:
        f.close()


def start(start_busgate, tmp_path, fake):
    """busgate in front of fake; returns (Busgate, ports, a client token)."""
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(tmp_path, issuer, POLICY, rabbit_port=fake.port)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    return bg, ports, issuer.mint("alice", ["apps"])


def session_end(ports):
    """The detail of the (one) session_end event."""
    ev = wait_audit(ports["audit"], lambda e: e["kind"] == "session_end")
    assert ev, audit_events(ports["audit"])
    return ev[0].get("detail", "")


def open_ok_then_stop_reading(release):
    """A broker that opens channel 1, then reads nothing until release is
    set, as RabbitMQ does not during a memory or disk alarm."""
    def script(up):
        up.answer_handshake()
        up.expect(1, (20, 10))
        up.send(method(1, 20, 11, ls("")))
        release.wait(30)
    return script


@pytest.mark.parametrize("broker", ["stops reading", "connection lost", "closes too"])
def test_client_close_the_broker_does_not_confirm(start_busgate, tmp_path, fake_rabbit, broker):
    """A close-ok tells the client that the broker processed everything it
    sent before its close. busgate forwards the close behind those frames
    and answers the client only with the broker's close-ok. When none comes
    (no close-ok within 5 s, the broker connection lost) the client gets
    connection.close 320 instead, and when the broker closed the connection
    itself, its close: never a close-ok for publishes that may be lost."""
    release = threading.Event()

    def script(up):
        up.answer_handshake()
        assert up.serve()[0] == 200  # the client's close, after its publish
        assert up.publishes == 1
        if broker == "connection lost":
            up.close()
        else:
            up.send(SHUTDOWN)
            up.expect(0, (10, 51))  # busgate's close-ok to it
    fake = fake_rabbit(open_ok_then_stop_reading(release) if broker == "stops reading" else script)
    bg, ports, token = start(start_busgate, tmp_path, fake)
    r, _ = handshake(ports["listen"], token)
    try:
        open_channel(r, 1)
        r.send(publish(1, "", "fk.q") + header(1, 5) + frame(3, 1, b"hello") + CLIENT_CLOSE)
        if broker == "closes too":
            expect_connection_close(r, 320, "CONNECTION_FORCED - broker forced connection closure")
        else:
            expect_connection_close(r, 320, UNCONFIRMED, timeout=15)
    finally:
        release.set()
        r.close()
    up = fake.next_conn()
    assert up.done.wait(10) and up.error is None, up.error
    detail = session_end(ports)
    if broker == "closes too":
        assert detail == "client closed the connection; the broker closed it too", detail
    else:
        assert detail.startswith("320 " + UNCONFIRMED + " ("), detail
        assert bg.wait_log(lambda l: l["msg"].startswith(
            "the broker did not confirm the client's close: ")), bg.log_path.read_text()[-2000:]


def test_pika_close_raises_when_the_broker_does_not_confirm(start_busgate, tmp_path,
                                                           fake_rabbit):
    """pika's close() returns quietly only on close-ok; on busgate's 320 it
    raises, so the application learns that its last publishes may be lost."""
    def script(up):
        up.answer_handshake()
        up.serve()  # channel.open and channel.close answered, the connection.close not
        up.eof(30)
    fake = fake_rabbit(script)
    bg, ports, token = start(start_busgate, tmp_path, fake)
    conn = connect(ports["listen"], token)
    ch = conn.channel()
    ch.basic_publish("", "fk.q", b"hello")
    with pytest.raises(pex.ConnectionClosedByBroker) as ei:
        conn.close()
    assert (ei.value.reply_code, ei.value.reply_text) == (320, UNCONFIRMED), ei.value


@pytest.mark.parametrize("client", ["disconnects", "stays silent"])
def test_client_quiet_after_its_close_the_broker_still_gets_everything(start_busgate, tmp_path,
                                                                       fake_rabbit, client):
    """A client that sends its publishes and its close, then disconnects
    without waiting for close-ok, or stays silent past its heartbeat timeout
    (1 s heartbeats: two intervals): the publishes still queued in busgate
    for a broker that is not reading reach it once it reads again, the close
    behind them, and the broker's close-ok ends the session."""
    n, size = 112, 64 << 10  # 7 MiB: more than the sockets hold, less than busgate's 8 MiB bound
    release = threading.Event()
    seen = {}

    def script(up):
        open_ok_then_stop_reading(release)(up)
        seen["close"] = up.serve()
        up.send(method(0, 10, 51))
    fake = fake_rabbit(script)
    bg, ports, token = start(start_busgate, tmp_path, fake)
    r, _ = handshake(ports["listen"], token, heartbeat=1)
    try:
        open_channel(r, 1)
        one = publish(1, "", "fk.q") + header(1, size) + frame(3, 1, b"x" * size)
        r.send(one * n + CLIENT_CLOSE)
        sid = bg.wait_log(lambda l: l["msg"] == "authenticated with PLAIN")["session"]
        if client == "disconnects":
            r.close()
            # busgate read all of it (what it holds for the broker is below
            # its bound) and saw the client go.
            assert bg.wait_log(lambda l: l.get("session") == sid and l["msg"] in (
                "client disconnected after its close: waiting for the broker's close-ok",
                "client closed the connection")), bg.log_path.read_text()[-2000:]
        else:
            # Two heartbeat intervals and the check's own second go by.
            assert not bg.wait_log(lambda l: l.get("session") == sid and
                                   l["msg"] == "client missed heartbeats", timeout=3.5)
        release.set()
        up = fake.next_conn()
        assert up.done.wait(15) and up.error is None, up.error
        assert (up.publishes, seen["close"][0]) == (n, 200)
        if client == "stays silent":
            r.expect(0, (10, 51))
    finally:
        release.set()
        r.close()
    assert session_end(ports) == "client closed the connection"


def test_stop_lets_a_client_close_under_way_finish(start_busgate, tmp_path, fake_rabbit):
    """A stop (SIGTERM) while a client's close waits for the broker's
    close-ok does not cut in with its own 320: the close finishes (close-ok
    from the broker, so close-ok to the client), then busgate exits."""
    got_close, release = threading.Event(), threading.Event()

    def script(up):
        up.answer_handshake()
        up.serve()
        got_close.set()
        release.wait(20)
        up.send(method(0, 10, 51))
    fake = fake_rabbit(script)
    bg, ports, token = start(start_busgate, tmp_path, fake)
    r, _ = handshake(ports["listen"], token)
    try:
        open_channel(r, 1)
        r.send(publish(1, "", "fk.q") + header(1, 5) + frame(3, 1, b"hello") + CLIENT_CLOSE)
        assert got_close.wait(10)
        bg.signal(signal.SIGTERM)
        assert bg.wait_log(lambda l: l["msg"].startswith("signal 15: draining"))
        time.sleep(0.5)  # the workers' drain runs (not a measurement)
        release.set()
        r.expect(0, (10, 51))
        assert r.eof(7.0)
    finally:
        release.set()
        r.close()
    assert bg.proc.wait(timeout=30) == 0


@pytest.mark.parametrize("after", ["connection.close", "connection.blocked"])
def test_broker_frames_right_behind_open_ok_reach_the_client(start_busgate, tmp_path,
                                                            fake_rabbit, after):
    """RabbitMQ may send a frame right behind its open-ok (a close when it
    is shutting down, connection.blocked in an alarm), which can reach
    busgate before the client's connection.open does: busgate opens the
    broker leg as soon as the client's tune-ok arrives. Such frames wait
    for the client's open-ok, then follow it, never dropped."""
    sent = threading.Event()
    follow = SHUTDOWN if after == "connection.close" else method(0, 10, 60, ss("low on memory"))

    def script(up):
        up.answer_handshake(after_open_ok=follow)
        sent.set()
        if after == "connection.close":
            up.expect(0, (10, 51))  # busgate's close-ok to it
        else:
            up.serve()
            up.send(method(0, 10, 51))
    fake = fake_rabbit(script)
    bg, ports, token = start(start_busgate, tmp_path, fake)
    r, mid, args = login(ports["listen"], token, caps=["connection.blocked"])
    try:
        assert mid == (10, 30), mid
        cmax, fmax, _ = struct.unpack(">HIH", args[:8])
        r.send(method(0, 10, 31, struct.pack(">HIH", cmax, fmax, 0)))
        assert sent.wait(10)
        time.sleep(0.3)  # busgate reads them before the client's open (not a measurement)
        r.send(method(0, 10, 40, ss("/") + ss("") + b"\x00"))
        r.expect(0, (10, 41))
        if after == "connection.close":
            expect_connection_close(r, 320, "CONNECTION_FORCED - broker forced connection closure")
        else:
            assert r.expect(0, (10, 60)) == ss("low on memory")
            open_channel(r, 1)  # the connection goes on
            r.send(CLIENT_CLOSE)
            r.expect(0, (10, 51))
    finally:
        r.close()
    up = fake.next_conn()
    assert up.done.wait(10) and up.error is None, up.error


@pytest.mark.single_build
def test_broker_silent_after_the_login_pika_learns_why(start_busgate, tmp_path, fake_rabbit):
    """The broker takes busgate's start-ok and never tunes. At the handshake
    deadline (10 s) the client, which had logged in, gets connection.close
    320 rather than a dropped socket: pika still calls it a probable
    authentication error (any close before tune is one to pika), but one
    that carries busgate's reason."""
    fake = fake_rabbit(lambda up: up.eof(30))
    bg, ports, token = start(start_busgate, tmp_path, fake)
    with pytest.raises(pex.AMQPConnectionError) as ei:
        connect(ports["listen"], token)
    assert f"(320) '{NO_ANSWER}'" in repr(ei.value), repr(ei.value)
    assert session_end(ports) == "320 " + NO_ANSWER


@pytest.mark.single_build
def test_broker_without_open_ok_closes_the_client_with_320(start_busgate, tmp_path,
                                                           fake_rabbit):
    """The broker tunes but never answers busgate's connection.open: at the
    handshake deadline the client gets connection.close 320."""
    def script(up):
        up.answer_handshake(open_ok=False)
        up.eof(30)
    fake = fake_rabbit(script)
    bg, ports, token = start(start_busgate, tmp_path, fake)
    r, mid, args = login(ports["listen"], token)
    try:
        assert mid == (10, 30), mid
        cmax, fmax, _ = struct.unpack(">HIH", args[:8])
        r.send(method(0, 10, 31, struct.pack(">HIH", cmax, fmax, 0))
               + method(0, 10, 40, ss("/") + ss("") + b"\x00"))
        expect_connection_close(r, 320, NO_ANSWER, timeout=15)
    finally:
        r.close()
    assert session_end(ports) == "320 " + NO_ANSWER
