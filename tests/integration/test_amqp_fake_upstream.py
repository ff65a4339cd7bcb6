"""The AMQP adapter's connection lifecycle against a scripted RabbitMQ
(amqp_wire.FakeRabbit), for what the real broker does only by chance: it
does not confirm a client's close (a memory or disk alarm stops it reading,
it goes away, it closes at the same moment), sends frames right behind its
open-ok, does not answer busgate's login or answers it out of order, or
sends frames busgate must not relay; and a client that disconnects
while its close is on its way to the broker."""
import signal
import struct
import threading
import time

import pika.exceptions as pex
import pytest

from amqp_env import Issuer, audit_events, busgate_config, connect, rule, wait_audit
from amqp_wire import (FakeRabbit, close_args, connection_close, expect_connection_close, frame,
                       handshake, header, login, ls, method, open_channel, publish, ss, table)
from conftest import http_get, wait_port_closed

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

    def make(script, probe=None, mechanisms="PLAIN"):
        fakes.append(FakeRabbit(script, probe, mechanisms))
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


def broker_script_ended(fake):
    """The session's connection to fake: its script has returned, without
    an error (an assertion in a script fails the test here)."""
    up = fake.next_conn()
    assert up.done.wait(10) and up.error is None, up.error


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
    broker_script_ended(fake)
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
        # Every worker's drain ran (each closes its listener first, in the
        # same callback as it asks its sessions to finish).
        assert wait_port_closed(ports["listen"]), "busgate did not drain"
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
    broker_script_ended(fake)


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


def test_broker_refusing_busgate_at_open_is_told_without_its_user(start_busgate, tmp_path,
                                                                  fake_rabbit):
    """RabbitMQ refuses busgate's own connection.open with a text naming
    busgate's upstream user (530 ... refused for user 'busgate'): the client
    gets busgate's 320, and neither the log nor the session_end detail
    names that user; the rest of RabbitMQ's text is kept."""
    text = "NOT_ALLOWED - access to vhost '/' refused for user 'busgate'"

    def script(up):
        up.answer_handshake(open_ok=False)
        up.send(connection_close(530, text))
        up.eof(10)
    fake = fake_rabbit(script)
    bg, ports, token = start(start_busgate, tmp_path, fake)
    with pytest.raises(pex.AMQPConnectionError) as ei:
        connect(ports["listen"], token)
    assert "'busgate'" not in repr(ei.value)
    end = session_end(ports)
    assert "530 NOT_ALLOWED - access to vhost '/' refused for busgate's upstream user" in end, end
    logged = [l["msg"] for l in bg.log_lines() if "530" in l.get("msg", "")]
    assert logged and not any("'busgate'" in m for m in logged), logged


START = method(0, 10, 10, struct.pack(">BB", 0, 9) + table([]) + ls("PLAIN") + ls("en_US"))
TUNE = method(0, 10, 30, struct.pack(">HIH", 2047, 131072, 0))
OPEN_OK = method(0, 10, 41, ss(""))
# What the broker sends after busgate's start-ok -> the reason in session_end.
BROKER_HANDSHAKE_NONSENSE = {
    "connection.start again": (START, "unexpected method during the handshake"),
    "connection.tune twice": (TUNE + TUNE, "unexpected method during the handshake"),
    "open-ok before busgate's open": (TUNE + OPEN_OK, "unexpected method during the handshake"),
    "frame above 4096 before tune": (struct.pack(">BHI", 1, 0, 4097) + b"\x00" * 64,
                                     "bad frame from the broker: frame larger than frame_max"),
}


@pytest.mark.parametrize("case", list(BROKER_HANDSHAKE_NONSENSE))
def test_broker_handshake_out_of_order_is_not_followed(start_busgate, tmp_path, fake_rabbit,
                                                       case):
    """busgate's own login to RabbitMQ goes start, tune, open-ok, each once
    and in that order, in frames of at most 4096 bytes until tune-ok (the
    protocol's frame-min-size): a broker that asks for the credential again
    (busgate would send its password a second time), tunes twice, says
    open-ok to an open busgate has not sent, or sends a larger frame is not
    followed. The broker leg fails at once, not at the handshake deadline,
    and session_end says why."""
    send, why = BROKER_HANDSHAKE_NONSENSE[case]

    def script(up):
        up.send(send)
        up.eof(30)
    fake = fake_rabbit(script)
    bg, ports, token = start(start_busgate, tmp_path, fake)
    r, mid, args = login(ports["listen"], token)
    try:
        while mid == (10, 30):  # busgate's tune, when the broker's first one came
            _, mid, args = r.method()
        assert mid == (10, 50), mid
        assert close_args(args)[:2] == (320, LOST), close_args(args)
    finally:
        r.close()
    assert session_end(ports) == f"320 {LOST} ({why})"


@pytest.mark.parametrize("offer, ok", [
    ("AMQPLAIN XPLAIN", False), ("PLAINX EXTERNAL", False), ("AMQPLAIN PLAIN EXTERNAL", True),
], ids=["XPLAIN", "PLAINX", "PLAIN among others"])
def test_broker_must_offer_plain_by_its_name(start_busgate, tmp_path, fake_rabbit, offer, ok):
    """busgate logs in to the broker with PLAIN only when connection.start
    names PLAIN in its space-separated list: a longer name that contains it
    is another mechanism, and busgate's start-ok (its credential) is not
    sent for it."""
    def script(up):
        up.answer_handshake()
        up.eof(30)
    fake = fake_rabbit(script, mechanisms=offer)
    bg, ports, token = start(start_busgate, tmp_path, fake)
    r, mid, args = login(ports["listen"], token)
    try:
        if ok:
            assert mid == (10, 30), mid  # busgate's tune: the broker leg is open
            fake.next_conn()
        else:
            while mid == (10, 30):
                _, mid, args = r.method()
            assert mid == (10, 50), mid
            assert close_args(args)[:2] == (320, LOST), close_args(args)
    finally:
        r.close()
    if not ok:
        assert session_end(ports) == f"320 {LOST} (the broker does not offer PLAIN)"


# ---- the broker leg ending or misbehaving while the session runs ----

MALFORMED = "CONNECTION_FORCED - malformed frame from the broker"
LOST = "CONNECTION_FORCED - busgate lost its connection to the broker"


@pytest.mark.parametrize("broker_tune, offer, upstream_heartbeat", [
    ((2047, 131072, 60), (2047, 65536, 5), 5),
    ((0, 32768, 3), (65535, 32768, 5), 3),
    ((100, 8192, 0), (100, 8192, 5), 5),
], ids=["broker above the settings", "broker below them", "broker without heartbeat"])
def test_tune_within_the_broker_and_the_settings(start_busgate, tmp_path, fake_rabbit,
                                                  broker_tune, offer, upstream_heartbeat):
    """busgate offers the client RabbitMQ's channel_max (0, no limit, as
    65535) and frame_max, the latter no larger than amqp.max_frame_bytes,
    and amqp.heartbeat whatever RabbitMQ asks. Its tune-ok to RabbitMQ
    carries the client's channel_max and frame_max, and amqp.heartbeat or
    RabbitMQ's when that is less (docs/amqp.md, Tune and Heartbeats). The
    real broker tunes 2047, 131072, 60, which busgate's defaults match: a
    scripted one tells the values apart."""
    tune_ok = {}

    def script(up):
        up.send(method(0, 10, 30, struct.pack(">HIH", *broker_tune)))
        tune_ok["args"] = struct.unpack(">HIH", up.expect(0, (10, 31))[:8])
        up.expect(0, (10, 40))
        up.send(method(0, 10, 41, ss("")))
    fake = fake_rabbit(script)
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(tmp_path, issuer, POLICY, rabbit_port=fake.port, heartbeat=5,
                                 extra_amqp="  max_frame_bytes: 64KiB\n")
    start_busgate(text, wait_for_port=ports["listen"])
    r, mid, args = login(ports["listen"], issuer.mint("alice", ["apps"]))
    try:
        assert mid == (10, 30), mid
        assert struct.unpack(">HIH", args[:8]) == offer
        r.send(method(0, 10, 31, struct.pack(">HIH", 7, 4096, 0)))
        r.send(method(0, 10, 40, ss("/") + ss("") + b"\x00"))
        r.expect(0, (10, 41))
        assert tune_ok["args"] == (7, 4096, upstream_heartbeat)
    finally:
        r.close()


def deliver(ch, tag="ctag"):
    return method(ch, 60, 60, ss(tag) + struct.pack(">Q", 1) + b"\x00" + ss("") + ss("fk.q"))


def running(start_busgate, tmp_path, fake_rabbit, after_open, *, caps=(), heartbeat=None):
    """A client with channel 1 open through busgate; the broker runs
    after_open(up) once it answered that channel.open. Returns (bg, ports,
    the client's Raw, the broker's port)."""
    opened = threading.Event()

    def script(up):
        up.answer_handshake(tune=(2047, 131072, heartbeat or 0))
        up.expect(1, (20, 10))
        up.send(method(1, 20, 11, ls("")))
        opened.wait(20)
        after_open(up)
    fake = fake_rabbit(script)
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(tmp_path, issuer, POLICY, rabbit_port=fake.port,
                                 heartbeat=heartbeat)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    r, _ = handshake(ports["listen"], issuer.mint("alice", ["apps"]), caps=caps)
    open_channel(r, 1)
    opened.set()
    return bg, ports, r, fake


def confirm_forced_close(r, args, reply):
    """The connection.close's arguments say 320 with reply; the client
    answers close-ok and busgate then closes its socket."""
    assert close_args(args)[:2] == (320, reply)
    r.send(method(0, 10, 51))
    assert r.eof(7.0)


def test_broker_closes_a_running_connection(start_busgate, tmp_path, fake_rabbit):
    """RabbitMQ closes a running connection (an operator's forced close):
    the client gets its close; busgate logs it once, naming the broker, and
    session_end says so. The broker hangs up right after busgate's close-ok:
    busgate still waits for the client's close-ok, as RabbitMQ would, rather
    than cutting the client's socket."""
    hung_up = threading.Event()

    def broker(up):
        up.send(connection_close(320, "CONNECTION_FORCED - Closed via management plugin"))
        up.expect(0, (10, 51))
        up.s.close()
        hung_up.set()
    bg, ports, r, fake = running(start_busgate, tmp_path, fake_rabbit, broker)
    try:
        code, text, _, _ = close_args(r.expect(0, (10, 50)))
        assert (code, text) == (320, "CONNECTION_FORCED - Closed via management plugin")
        assert hung_up.wait(10)
        # busgate sees the broker's EOF, and the client's socket stays open
        # (bounded: the close wait is 5 s).
        assert not r.eof(1.5), "the client's socket was closed before its close-ok"
        r.send(method(0, 10, 51))
        assert r.eof(7.0)
    finally:
        r.close()
    assert session_end(ports) == ("320 CONNECTION_FORCED - Closed via management plugin "
                                  "(closed by the broker)")
    lines = bg.warns("Closed via management plugin")
    assert [l["msg"] for l in lines] == [
        "the broker closed the connection: 320 CONNECTION_FORCED - Closed via management plugin"
    ], lines
    assert lines[0]["upstream"] == f"127.0.0.1:{fake.port}" and lines[0].get("session"), lines
    assert not bg.warns("closed by the broker", wait=False), bg.log_path.read_text()[-2000:]


# What the broker sends after channel 1 is open -> the start of session_end's reason.
BROKER_NONSENSE = {
    "deliver on a channel never opened": (
        deliver(5) + header(5, 3) + frame(3, 5, b"abc"), MALFORMED,
        "method on a channel that is not open (frame type 1, channel 5)"),
    "channel.close on a channel never opened": (
        method(7, 20, 40, struct.pack(">H", 404) + ss("NOT_FOUND") + struct.pack(">HH", 50, 10)),
        MALFORMED, "method on a channel that is not open (frame type 1, channel 7)"),
    "content with no delivery": (
        header(1, 3) + frame(3, 1, b"abc"), MALFORMED,
        "content frame with no delivery pending (frame type 2, channel 1)"),
    "unknown method on channel 0": (
        method(0, 99, 1, b"xyz"), MALFORMED, "unknown method (frame type 1, channel 0)"),
    "unknown method on channel 1": (
        method(1, 99, 1, b"xyz"), MALFORMED, "unknown method (frame type 1, channel 1)"),
    "heartbeat with a payload": (
        frame(8, 0, b"junk"), LOST, "bad frame from the broker: heartbeat with a payload"),
    "heartbeat on channel 1": (
        frame(8, 1, b""), LOST, "bad frame from the broker: heartbeat on a non-zero channel"),
    # The client's frame_max, 131072 here, bounds the broker's frames too:
    # refused from the header, not waited for.
    "frame above frame_max": (
        struct.pack(">BHI", 3, 1, 131073) + b"y" * 64, LOST,
        "bad frame from the broker: frame larger than frame_max"),
    "bad frame end": (
        frame(1, 1, struct.pack(">HHQB", 60, 80, 1, 0), end=b"\x00"), LOST,
        "bad frame from the broker: frame end octet is not 0xCE"),
}


@pytest.mark.parametrize("case", list(BROKER_NONSENSE))
def test_broker_frames_that_fit_no_state_are_not_relayed(start_busgate, tmp_path, fake_rabbit,
                                                         case):
    """Frames RabbitMQ never sends (on a channel the client never opened,
    content with no delivery, a method busgate does not know, a heartbeat
    with a payload or on a channel) would reach the client as if they
    answered something it did. The client gets connection.close 320 and
    nothing of them; the log and session_end say what came."""
    send, reply, why = BROKER_NONSENSE[case]

    def broker(up):
        up.send(send)
        up.eof(15)
    bg, ports, r, fake = running(start_busgate, tmp_path, fake_rabbit, broker)
    try:
        # Raw frames (Raw.method skips heartbeats): a relayed heartbeat
        # would come before the close.
        typ, ch, payload = r.frame()
        assert (typ, ch, struct.unpack(">HH", payload[:4])) == (1, 0, (10, 50)), (typ, ch, payload)
        confirm_forced_close(r, payload[4:], reply)
    finally:
        r.close()
    assert session_end(ports) == f"320 {reply} ({why})"
    lines = bg.warns(why)
    assert len(lines) == 1 and lines[0]["upstream"] == f"127.0.0.1:{fake.port}", lines


def test_broker_frames_the_client_expects_are_relayed(start_busgate, tmp_path, fake_rabbit):
    """What RabbitMQ sends unasked is relayed as it is: basic.return with
    its content, confirms (ack, nack), a consumer cancel, channel.flow,
    connection.blocked and unblocked; and, on a channel the client is
    closing, the delivery RabbitMQ sent before it saw the close is dropped
    and its close-ok reaches the client (no 320)."""
    unasked = [
        method(1, 60, 50, struct.pack(">H", 312) + ss("NO_ROUTE") + ss("fk.x") + ss("rk"))
        + header(1, 2) + frame(3, 1, b"hi"),
        method(1, 60, 80, struct.pack(">Q", 1) + b"\x00"),
        method(1, 60, 120, struct.pack(">Q", 2) + b"\x00"),
        method(1, 60, 30, ss("gone") + b"\x01"),
        method(1, 20, 20, b"\x01"),
        method(0, 10, 60, ss("low on memory")),
        method(0, 10, 61),
    ]

    def broker(up):
        up.send(b"".join(unasked))
        up.expect(1, (20, 40))  # the client's channel.close
        up.send(deliver(1) + header(1, 3) + frame(3, 1, b"abc") + method(1, 20, 41))
        assert up.serve()[0] == 200
        up.send(method(0, 10, 51))
    bg, ports, r, fake = running(start_busgate, tmp_path, fake_rabbit, broker,
                                 caps=["consumer_cancel_notify", "connection.blocked"])
    try:
        got = [r.frame() for _ in range(9)]
        want = [(1, 1, (60, 50)), (2, 1, None), (3, 1, None), (1, 1, (60, 80)),
                (1, 1, (60, 120)), (1, 1, (60, 30)), (1, 1, (20, 20)), (1, 0, (10, 60)),
                (1, 0, (10, 61))]
        assert [(t, c, struct.unpack(">HH", p[:4]) if t == 1 else None) for t, c, p in got] == want
        r.send(method(1, 20, 40, struct.pack(">H", 200) + ss("bye") + struct.pack(">HH", 0, 0)))
        r.expect(1, (20, 41))
        r.send(CLIENT_CLOSE)
        r.expect(0, (10, 51))
    finally:
        r.close()
    broker_script_ended(fake)
    assert session_end(ports) == "client closed the connection"


@pytest.mark.parametrize("how", ["missed heartbeats", "closed by the broker"])
def test_broker_connection_lost_logged_once(start_busgate, tmp_path, fake_rabbit, how):
    """The broker leg lost while the session runs: one warn line, with the
    session, the broker's address and the cause; the client gets busgate's
    usual 320, and session_end the cause too."""
    def broker(up):
        if how == "missed heartbeats":
            up.eof(30)  # reads busgate's heartbeats, sends none
        else:
            up.send(deliver(1) + header(1, 100000) + frame(3, 1, b"y" * 50000))
            up.s.close()
    bg, ports, r, fake = running(start_busgate, tmp_path, fake_rabbit, broker,
                                 heartbeat=2 if how == "missed heartbeats" else None)
    try:
        while True:  # the delivery's first frames, then the close
            typ, ch, p = r.frame(15)
            if typ == 1 and ch == 0:
                break
        assert struct.unpack(">HH", p[:4]) == (10, 50)
        confirm_forced_close(r, p[4:], LOST)
    finally:
        r.close()
    assert session_end(ports) == f"320 {LOST} ({how})"
    lines = bg.warns(how)
    assert [l["msg"] for l in lines] == [
        f"upstream connection lost: 127.0.0.1:{fake.port}: {how}"], lines
    assert lines[0].get("session") and lines[0]["upstream"] == f"127.0.0.1:{fake.port}", lines


@pytest.mark.single_build
def test_quiet_broker_leg_outlives_the_connect_timeout(start_busgate, tmp_path, fake_rabbit):
    """The broker leg's 10 s connect timeout bounds the connect and the
    login only: a session nobody speaks on for longer (a broker that sends
    no heartbeats, busgate's own every 30 s) goes on."""
    def broker(up):
        assert up.serve()[0] == 200
        up.send(method(0, 10, 51))
    bg, ports, r, fake = running(start_busgate, tmp_path, fake_rabbit, broker)
    try:
        time.sleep(11)  # past the connect timeout (not a measurement)
        open_channel(r, 2)
        r.send(CLIENT_CLOSE)
        r.expect(0, (10, 51))
    finally:
        r.close()
    broker_script_ended(fake)


@pytest.mark.single_build
def test_probe_retries_a_broker_that_never_sends_open_ok(start_busgate, tmp_path, fake_rabbit):
    """The readiness probe's first login: the broker tunes, reads tune-ok
    and open, then says nothing (no open-ok, no FIN). The login fails at the
    upstream's handshake deadline (15 s) and the probe retries; the next one
    is answered, and busgate becomes ready."""
    probes = []

    def probe(conn):
        probes.append(conn)
        conn.answer_handshake(open_ok=len(probes) > 1)
        conn.eof(60)
    fake = fake_rabbit(lambda up: up.eof(30), probe=probe)
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(tmp_path, issuer, POLICY, rabbit_port=fake.port)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    assert bg.wait_log(lambda l: l["msg"] == f"upstream 127.0.0.1:{fake.port}: handshake not "
                       "done within 15 s (no connection.open-ok from the broker)", timeout=25), \
        bg.log_path.read_text()[-2000:]
    assert bg.wait_log(lambda l: l["msg"] == "upstream login with busgate's credential works",
                       timeout=15), bg.log_path.read_text()[-2000:]
    assert http_get(f"http://127.0.0.1:{ports['admin']}/readyz")[0] == 200
    assert len(probes) == 2
