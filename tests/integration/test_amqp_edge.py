"""Edges of busgate's AMQP adapter against the real RabbitMQ, mostly over a
raw socket (what pika cannot send): AMQPLAIN login, a client that stops
sending heartbeats, connection.blocked relayed only to clients that asked
for it, consumer cancel notifications, the channel-reopen hold after a
refusal, and malformed frames after the handshake (each answered with
connection.close and the right code, busgate staying healthy and bounded)."""
import contextlib
import json
import re
import socket
import struct
import subprocess
import time

import pytest

from amqp_env import (RABBIT_PORT, UPSTREAM_PASSWORD, UPSTREAM_USER, Issuer, api_name,
                      audit_down_gateway, busgate_config, connect, direct, get_one, rule,
                      start_gateway, unique, wait_audit, wait_not_admitting)
from amqp_wire import (CHANNEL_OPEN, close_args, expect_connection_close, frame, handshake,
                       header, login, ls, method, open_channel, publish, ss, table)
from conftest import ROOT, build_dir, cpu_seconds, http_get

ALL = ["read", "write", "create", "delete", "describe"]


def policy():
    return (rule("edge-all", ["group:apps"], ["amqp:queue:it.*", "amqp:exchange:it.*"], ALL)
            + rule("default-exchange", ["group:apps"], ["amqp:exchange:amq.default"], ["write"])
            + rule("no-secret", ["*"], ["amqp:exchange:it.secret*"], ALL, effect="deny"))


@pytest.fixture
def gw(start_busgate, tmp_path):
    """(busgate, ports, issuer) with the policy above."""
    return start_gateway(start_busgate, tmp_path, policy())


def healthy(ports, issuer):
    """busgate answers /healthz and serves a new client end to end."""
    status, _ = http_get(f"http://127.0.0.1:{ports['admin']}/healthz")
    assert status == 200
    conn = connect(ports["listen"], issuer.mint("bob", ["apps"]))
    ch = conn.channel()
    q = unique("it.edge-ok")
    ch.queue_declare(q, auto_delete=True)
    ch.basic_publish("", q, b"still fine")
    assert get_one(conn, ch, q) == b"still fine"
    conn.close()


# ---- tests ----

def test_amqplain_login(gw):
    bg, ports, issuer = gw
    r, fmax = handshake(ports["listen"], issuer.mint("carol", ["apps"]), mechanism="AMQPLAIN",
                        user="carol-login")
    assert isinstance(fmax, int) and fmax >= 4096
    open_channel(r, 1)
    q = unique("it.edge-amqplain")
    r.send(method(1, 50, 10, struct.pack(">H", 0) + ss(q) + b"\x08" + table([])))  # auto-delete
    r.expect(1, (50, 11))
    r.close()
    assert bg.wait_log(lambda l: "authenticated with AMQPLAIN" in l.get("msg", ""))
    # A bad token over AMQPLAIN gets RabbitMQ's refusal, naming the mechanism.
    r, refused = handshake(ports["listen"], "not-a-jwt", mechanism="AMQPLAIN")
    code, text, _, _ = refused
    assert code == 403 and "mechanism AMQPLAIN" in text
    r.close()


@pytest.mark.parametrize("name", ["frame_max 0", "frame_max above", "frame_max below 4096",
                                  "channel_max 0", "channel_max above"])
def test_tune_ok_outside_the_offer_is_refused(gw, name):
    """As RabbitMQ (rabbit_reader validate_negotiated_integer_value): a
    tune-ok whose frame_max or channel_max is 0 ("no limit") or above what
    was offered is refused with 530 NOT_ALLOWED, not taken as the offer (the
    client would then send frames larger than busgate accepts)."""
    bg, ports, issuer = gw
    r, mid, args = login(ports["listen"], issuer.mint("ada", ["apps"]))
    assert mid == (10, 30), mid
    cmax, fmax, _ = struct.unpack(">HIH", args[:8])
    assert 0 < cmax < 65535 and 4096 <= fmax < 2**32 - 1, (cmax, fmax)
    sent, text = {
        "frame_max 0": ((cmax, 0), f"frame_max = 0 is higher than the maximum allowed value ({fmax})"),
        "frame_max above": ((cmax, fmax + 1),
                            f"frame_max = {fmax + 1} is higher than the maximum allowed value ({fmax})"),
        "frame_max below 4096": ((cmax, 4095),
                                 "frame_max = 4095 is lower than the minimum allowed value (4096)"),
        "channel_max 0": ((0, fmax), "channel_max = 0 (no limit) is higher than the maximum "
                                     f"allowed value ({cmax})"),
        "channel_max above": ((cmax + 1, fmax), f"channel_max = {cmax + 1} is higher than the "
                                                f"maximum allowed value ({cmax})"),
    }[name]
    r.send(method(0, 10, 31, struct.pack(">HIH", *sent, 0)))
    r.send(method(0, 10, 40, ss("/") + ss("") + b"\x00"))  # pipelined, as clients do
    code, got, cls, meth = close_args(r.expect(0, (10, 50)))
    assert (code, got, cls, meth) == (530, "NOT_ALLOWED - negotiated " + text, 10, 31)
    r.send(method(0, 10, 51))
    assert r.eof(7.0)
    r.close()
    # Values within the offer are taken, and the negotiated frame_max holds
    # as RabbitMQ holds it: a payload of exactly the client's frame_max (a
    # whole frame 8 bytes larger) is relayed, and RabbitMQ takes it.
    r, mid, args = login(ports["listen"], issuer.mint("ada", ["apps"]))
    r.send(method(0, 10, 31, struct.pack(">HIH", 1, 8192, 0)))
    r.send(method(0, 10, 40, ss("/") + ss("") + b"\x00"))
    r.expect(0, (10, 41))
    open_channel(r, 1)
    q = unique("it.tune")
    r.send(method(1, 50, 10, struct.pack(">H", 0) + ss(q) + b"\x08" + table([])))  # auto-delete
    r.expect(1, (50, 11))
    body = b"b" * 8192
    r.send(publish(1, "", q) + header(1, len(body)) + frame(3, 1, body))
    r.send(method(1, 60, 70, struct.pack(">H", 0) + ss(q) + b"\x01"))  # basic.get, no-ack
    r.expect(1, (60, 71))  # get-ok
    r.frame()  # header
    got_body = b""
    while len(got_body) < len(body):  # RabbitMQ's own frames stay within 8192
        typ, ch, p = r.frame()
        assert (typ, ch) == (3, 1) and len(p) <= 8192 - 8, (typ, ch, len(p))
        got_body += p
    assert got_body == body
    # A payload one byte larger is refused, by busgate as by RabbitMQ.
    r.send(publish(1, "", q) + header(1, 8193) + frame(3, 1, b"b" * 8193))
    expect_connection_close(r, 501, "FRAME_ERROR")
    r.close()


@pytest.mark.parametrize("name", ["start-ok again", "channel.open before open"])
def test_out_of_place_before_open_is_refused(gw, name):
    """After the login and before open-ok busgate takes tune-ok, open and
    close on channel 0 (busgate's own codes there: RabbitMQ drops the
    connection). A second start-ok is no second login, with another token
    and another connection to RabbitMQ: 503 COMMAND_INVALID naming it. A
    frame on another channel, whatever method it carries, is 505
    UNEXPECTED_FRAME (docs/amqp.md, Reply codes)."""
    bg, ports, issuer = gw
    r, mid, _ = login(ports["listen"], issuer.mint("ada", ["apps"]))
    assert mid == (10, 30), mid
    if name == "start-ok again":
        response = b"\x00eve\x00" + issuer.mint("eve", ["apps"]).encode()
        r.send(method(0, 10, 11, table([]) + ss("PLAIN") + ls(response) + ss("en_US")))
        want = (503, "COMMAND_INVALID - unexpected connection.start-ok during the handshake",
                10, 11)
    else:
        r.send(method(1, *CHANNEL_OPEN, ss("")))
        want = (505, "UNEXPECTED_FRAME - only connection methods before open-ok", 0, 0)
    assert close_args(r.expect(0, (10, 50))) == want
    r.send(method(0, 10, 51))
    assert r.eof(7.0)
    r.close()
    assert not bg.wait_log(lambda l: "sub" in l and l.get("sub") == "eve", timeout=0.5)


def test_frames_pipelined_behind_open_wait_for_open_ok(gw):
    """A client may send its first channel's methods right behind
    connection.open, without waiting for open-ok (RabbitMQ takes them).
    busgate holds them until RabbitMQ's open-ok is relayed, then relays
    them. They arrive while busgate waits for that open-ok: the whole send
    is read at once, and busgate's own open to RabbitMQ leaves only once
    that read has been processed."""
    bg, ports, issuer = gw
    r, mid, args = login(ports["listen"], issuer.mint("pip", ["apps"]))
    assert mid == (10, 30), mid
    cmax, fmax, _ = struct.unpack(">HIH", args[:8])
    q = unique("it.pipelined")
    r.send(method(0, 10, 31, struct.pack(">HIH", cmax, fmax, 0))
           + method(0, 10, 40, ss("/") + ss("") + b"\x00")
           + method(1, *CHANNEL_OPEN, ss(""))
           + method(1, 50, 10, struct.pack(">H", 0) + ss(q) + b"\x08" + table([]))  # auto-delete
           + publish(1, "", q) + header(1, 9) + frame(3, 1, b"pipelined")
           + method(1, 60, 70, struct.pack(">H", 0) + ss(q) + b"\x01"))  # basic.get, no-ack
    r.expect(0, (10, 41))
    r.expect(1, (20, 11))
    r.expect(1, (50, 11))
    r.expect(1, (60, 71))  # get-ok
    r.frame()  # header
    assert r.frame() == (3, 1, b"pipelined")
    r.close()


class StuckBroker:
    """An AMQP server that logs busgate in and tunes, then never answers
    connection.open: busgate waits for an open-ok that does not come."""

    def __init__(self):
        from conftest import free_port
        import threading
        self.port = free_port()
        self.ls = socket.create_server(("127.0.0.1", self.port))
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        import threading
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._session, args=(c,), daemon=True).start()

    def _session(self, c):
        start = (struct.pack(">BB", 0, 9) + table([]) + ls("PLAIN") + ls("en_US"))
        try:
            c.recv(8)  # protocol header
            c.sendall(method(0, 10, 10, start))
            c.recv(65536)  # start-ok
            c.sendall(method(0, 10, 30, struct.pack(">HIH", 2047, 131072, 0)))
            while c.recv(65536):  # tune-ok, open, heartbeats: never answered
                pass
        except OSError:
            pass

    def close(self):
        self.ls.close()
        for c in self.conns:
            c.close()


@pytest.mark.single_build
def test_client_flooding_while_open_ok_is_awaited_is_bounded(start_busgate, tmp_path):
    """While busgate waits for the broker's open-ok it does not process the
    client's later frames, and does not read past its read watermark
    either: a client that floods then is not read (busgate idle, not
    spinning over input it cannot process) and is dropped at the handshake
    deadline (10 s). Two clients that never log in (one silent, one that
    stops after the protocol header) are dropped at the same deadline, each
    with an auth_failure event (reason timeout)."""
    broker = StuckBroker()
    try:
        issuer = Issuer(tmp_path / "keys")
        text, ports = busgate_config(tmp_path, issuer, policy(), rabbit_port=broker.port)
        bg = start_busgate(text, wait_for_port=ports["listen"])
        silent = socket.create_connection(("127.0.0.1", ports["listen"]), timeout=15)
        header_only = socket.create_connection(("127.0.0.1", ports["listen"]), timeout=15)
        header_only.sendall(b"AMQP\x00\x00\x09\x01")
        peers = {"127.0.0.1:%d" % c.getsockname()[1] for c in (silent, header_only)}
        r, mid, args = login(ports["listen"], issuer.mint("flo", ["apps"]))
        assert mid == (10, 30), mid
        cmax, fmax, _ = struct.unpack(">HIH", args[:8])
        r.send(method(0, 10, 31, struct.pack(">HIH", cmax, fmax, 0))
               + method(0, 10, 40, ss("/") + ss("") + b"\x00"))
        unit = method(1, *CHANNEL_OPEN, ss(""))
        sent = send_until_not_read(r, unit, unit * 8192)
        # The read watermark (max_frame_bytes + 1 MiB) and socket buffers.
        assert sent < 16 << 20, f"busgate took {sent >> 20} MiB before open-ok"
        assert_idle(bg, 3)
        try:
            assert r.eof(15.0)  # the handshake deadline, no open-ok
        except ConnectionResetError:
            pass  # closed with the flood unread
        r.close()
        for c in (silent, header_only):
            with contextlib.suppress(ConnectionResetError):
                while c.recv(4096):
                    pass  # connection.start, then the close
            c.close()
        timeouts = wait_audit(ports["audit"], lambda e: e["kind"] == "auth_failure"
                              and e.get("peer") in peers, count=2)
        assert sorted(e["auth_failure_reason"] for e in timeouts) == ["timeout", "timeout"], timeouts
        status, _ = http_get(f"http://127.0.0.1:{ports['admin']}/healthz")
        assert status == 200
    finally:
        broker.close()


def test_client_without_heartbeats_is_dropped(gw):
    bg, ports, issuer = gw
    token = issuer.mint("dave", ["apps"])
    # A client that keeps its heartbeat (1 s) stays.
    alive, _ = handshake(ports["listen"], token, heartbeat=1)
    # Before the handshake: busgate's silence clock starts during it, so the
    # time measured from here can only overstate the silence at the drop.
    t0 = time.monotonic()
    silent, _ = handshake(ports["listen"], token, heartbeat=1)
    dropped_at = None
    silent.s.settimeout(0.25)
    while time.monotonic() - t0 < 6.0 and dropped_at is None:
        alive.send(frame(8, 0, b""))  # every round: at least 4 per second
        try:
            if not silent.s.recv(4096):  # busgate's own heartbeats arrive meanwhile
                dropped_at = time.monotonic() - t0
        except socket.timeout:
            pass
    assert dropped_at is not None, "a client silent for 6 heartbeat intervals was kept"
    assert dropped_at >= 1.5, dropped_at  # not at once: after missed heartbeats
    assert bg.wait_log(lambda l: "client missed heartbeats" in l.get("msg", "")), \
        bg.log_path.read_text()[-2000:]
    # The one that kept sending heartbeats is still served.
    open_channel(alive, 1)
    alive.close()


def rabbitmqctl(*args):
    cmd = ('. tests/infra/common.sh; . tests/infra/rabbitmq/env.sh; bg_rabbit_env; '
           'bg_rabbitmqctl "$@"')
    return subprocess.run(["bash", "-c", cmd, "rabbitmqctl", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def memory_alarm_on():
    r = rabbitmqctl("eval", "rabbit_alarm:get_alarms().")
    return r.returncode == 0 and "memory" in r.stdout


@contextlib.contextmanager
def memory_alarm():
    """RabbitMQ's memory alarm in effect (it has then also sent it to its
    connections) for the block, on the shared broker; afterwards its own
    watermark is back and the alarm has cleared, or this fails: an alarm left
    set would block every later publish of the suite."""
    cur = rabbitmqctl("eval", "vm_memory_monitor:get_vm_memory_high_watermark().")
    assert cur.returncode == 0, cur.stderr
    text = cur.stdout.strip()
    absolute = re.fullmatch(r"\{absolute,\s*(\d+)\}", text)
    if absolute:
        previous = ["absolute", absolute.group(1)]
    else:
        float(text)  # a relative watermark, or the test cannot restore it
        previous = [text]
    try:
        r = rabbitmqctl("set_vm_memory_high_watermark", "0.0000001")
        assert r.returncode == 0, r.stderr
        t0 = time.monotonic()
        while time.monotonic() - t0 < 15 and not memory_alarm_on():
            time.sleep(0.2)
        assert memory_alarm_on(), "RabbitMQ did not raise its memory alarm"
        yield
    finally:
        for _ in range(3):
            r = rabbitmqctl("set_vm_memory_high_watermark", *previous)
            if r.returncode == 0:
                break
        assert r.returncode == 0, r.stderr
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30 and memory_alarm_on():
            time.sleep(0.2)
        assert not memory_alarm_on(), "RabbitMQ's memory alarm stayed on"


@pytest.mark.exclusive
def test_connection_blocked_only_with_capability(gw):
    bg, ports, issuer = gw
    q = unique("it.edge-blocked")
    setup = direct()
    setup.channel().queue_declare(q)
    token = issuer.mint("erin", ["apps"])
    asked, _ = handshake(ports["listen"], token, caps=["connection.blocked"])
    plain, _ = handshake(ports["listen"], token)
    for r in (asked, plain):
        open_channel(r, 1)
    with memory_alarm():
        # RabbitMQ blocks a connection when it publishes during the alarm.
        for r in (asked, plain):
            r.send(publish(1, "", q) + header(1, 1) + frame(3, 1, b"x"))
        args = asked.expect(0, (10, 60), timeout=10)
        assert args[1:1 + args[0]]  # the reason
        with pytest.raises((TimeoutError, socket.timeout)):
            plain.method(timeout=2.0)
    asked.expect(0, (10, 61), timeout=10)
    # Both publishes went through once the alarm cleared.
    ch = setup.channel()
    for _ in range(100):
        if ch.queue_declare(q, passive=True).method.message_count == 2:
            break
        time.sleep(0.1)
    assert ch.queue_declare(q, passive=True).method.message_count == 2
    ch.queue_delete(q)
    setup.close()
    asked.close()
    plain.close()


def test_consumer_cancel_notification(gw):
    bg, ports, issuer = gw
    q = unique("it.edge-cancel")
    conn = connect(ports["listen"], issuer.mint("fay", ["apps"]))
    ch = conn.channel()
    ch.queue_declare(q)
    cancelled = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = ch.basic_consume(q, lambda *a: None)
    setup = direct()
    setup.channel().queue_delete(q)
    setup.close()
    deadline = time.monotonic() + 10
    while not cancelled and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.2)
    assert cancelled == [tag]
    # The channel and connection stay usable.
    q2 = unique("it.edge-cancel")
    ch.queue_declare(q2, auto_delete=True)
    conn.close()


def test_reopen_after_refusal_pipelined(gw):
    bg, ports, issuer = gw
    r, _ = handshake(ports["listen"], issuer.mint("gus", ["apps"]))
    open_channel(r, 1)
    # A refused publish, then the client's own channel.close, its close-ok to
    # the refusal and a reopen of the same number in one write, all before
    # RabbitMQ has confirmed busgate's close of the channel: the refusal and
    # the close-ok come back, and the open waits for RabbitMQ, then succeeds.
    r.send(publish(1, "it.secret-x", "k") + header(1, 0)
           + method(1, 20, 40, struct.pack(">H", 200) + ss("bye") + struct.pack(">HH", 0, 0))
           + method(1, 20, 41) + method(1, *CHANNEL_OPEN, ss("")))
    code, text, cls, meth = close_args(r.expect(1, (20, 40)))
    assert (code, cls, meth) == (403, 60, 40) and "rule 'no-secret'" in text
    r.expect(1, (20, 41))
    r.expect(1, (20, 11))
    q = unique("it.edge-reopen")
    r.send(method(1, 50, 10, struct.pack(">H", 0) + ss(q) + b"\x08" + table([])))
    r.expect(1, (50, 11))
    r.close()


def nested_table(depth):
    t = table([])
    for _ in range(depth - 1):
        t = table([("k", "F", t)])
    return t


BAD_AFTER_HANDSHAKE = [
    # A heartbeat, well formed but for its end octet: busgate takes
    # heartbeats itself, so RabbitMQ (which refuses a frame relayed with a
    # bad end octet as it came) is not there to catch it.
    ("bad frame end", lambda: frame(8, 0, b"", end=b"\x00"), 501, "FRAME_ERROR"),
    ("oversized frame", lambda: struct.pack(">BHI", 1, 1, 1 << 24) + b"\x00" * 64, 501,
     "FRAME_ERROR"),
    ("unknown frame type", lambda: frame(7, 1, b"abc"), 501, "FRAME_ERROR"),
    ("content header with continuation flag",
     lambda: publish(1, "", "k") + header(1, 1, flags=1), 502, "SYNTAX_ERROR"),
    ("table nested too deep",
     lambda: method(1, 50, 10, struct.pack(">H", 0) + ss(unique("it.edge")) + b"\x08"
                    + nested_table(12)), 506, "RESOURCE_ERROR"),
    ("unknown method", lambda: method(1, 60, 99), 540, "NOT_IMPLEMENTED"),
    ("basic method on channel 0", lambda: method(0, 60, 10, struct.pack(">IHB", 0, 1, 0)), 504,
     "CHANNEL_ERROR"),
    ("body without a publish", lambda: frame(3, 1, b"x"), 505, "UNEXPECTED_FRAME"),
    # RabbitMQ's reader: an empty heartbeat on a channel and content on
    # channel 0 are unexpected frames (505); a heartbeat with a payload is a
    # frame it cannot read (501).
    ("heartbeat on a channel", lambda: frame(8, 1, b""), 505, "UNEXPECTED_FRAME"),
    ("heartbeat with a payload", lambda: frame(8, 0, b"x"), 501, "FRAME_ERROR"),
    ("body on channel 0", lambda: frame(3, 0, b"x"), 505, "UNEXPECTED_FRAME"),
    # Content longer than its header's body size: never relayed as part of
    # a message (RabbitMQ 3.10 gave no answer to it within seconds).
    ("body longer than its header says",
     lambda: publish(1, "", "k") + header(1, 3) + frame(3, 1, b"12345"), 505, "UNEXPECTED_FRAME"),
]


@pytest.mark.parametrize("name,payload,code,prefix", BAD_AFTER_HANDSHAKE,
                         ids=[c[0] for c in BAD_AFTER_HANDSHAKE])
def test_malformed_after_handshake(gw, name, payload, code, prefix):
    bg, ports, issuer = gw
    r, _ = handshake(ports["listen"], issuer.mint("hal", ["apps"]))
    open_channel(r, 1)
    r.send(payload())
    expect_connection_close(r, code, prefix)
    r.close()
    healthy(ports, issuer)


# Malformed input RabbitMQ 3.10 answers with a code of its own choosing
# (among them 501 for arguments that do not fill their frame, 503 for a
# connection method on an open channel, 504 for one out of place on channel
# 0, 505 for content on a channel that expects a method): busgate answers
# each with the same code and class/method ids, whatever its text.
SAME_AS_RABBITMQ = [
    ("truncated method", lambda: method(1, 60, 10, b"\0\0")),
    ("bytes after the arguments", lambda: method(1, 60, 10, struct.pack(">IHB", 0, 1, 0) + b"\x07")),
    ("method id cut short", lambda: frame(1, 1, b"\x00\x3c")),
    ("table running past its frame",
     lambda: method(1, 50, 10, struct.pack(">H", 0) + ss("it.q") + b"\x08" + struct.pack(">I", 99))),
    ("content header of another class",
     lambda: publish(1, "", "it.q") + frame(2, 1, struct.pack(">HHQH", 50, 0, 0, 0))),
    ("content header with a weight",
     lambda: publish(1, "", "it.q") + frame(2, 1, struct.pack(">HHQH", 60, 1, 0, 0))),
    ("content header cut short",
     lambda: publish(1, "", "it.q") + frame(2, 1, struct.pack(">HH", 60, 0) + b"\0")),
    ("connection method on an open channel", lambda: method(1, 10, 51)),
    ("connection method on a channel not opened", lambda: method(2, 10, 51)),
    ("close-ok nobody asked for", lambda: method(0, 10, 51)),
    ("server method on channel 0", lambda: method(0, 10, 60, ss("x"))),
    ("server method on a channel", lambda: method(1, 60, 21, ss("x"))),
    ("channel method on channel 0", lambda: method(0, 20, 10, ss(""))),
    ("content header on a channel not opened",
     lambda: frame(2, 2, struct.pack(">HHQH", 60, 0, 0, 0))),
    ("body on a channel not opened", lambda: frame(3, 2, b"x")),
    # mid-content: RabbitMQ's command assembler names the publish (60/40)
    ("method where the content header belongs",
     lambda: publish(1, "", "it.q") + method(1, 20, 40, struct.pack(">H", 200) + ss("") + b"\0" * 4)),
    ("body where the content header belongs", lambda: publish(1, "", "it.q") + frame(3, 1, b"x")),
    ("method where the body belongs",
     lambda: publish(1, "", "it.q") + header(1, 5) + method(1, 20, 40,
                                                             struct.pack(">H", 200) + ss("") + b"\0" * 4)),
    ("second content header", lambda: publish(1, "", "it.q") + header(1, 5) + header(1, 5)),
]


def rabbitmq_answer(payload, channels=(1,)):
    """RabbitMQ's own connection.close for payload sent right after its
    handshake and the opening of channels (each open-ok read first;
    busgate's upstream credential): (code, class, method)."""
    r, mid, args = login(RABBIT_PORT, UPSTREAM_PASSWORD, user=UPSTREAM_USER)
    try:
        assert mid == (10, 30), mid
        cmax, fmax, _ = struct.unpack(">HIH", args[:8])
        r.send(method(0, 10, 31, struct.pack(">HIH", cmax, fmax, 0))
               + method(0, 10, 40, ss("/") + ss("") + b"\x00"))
        r.expect(0, (10, 41))
        for ch in channels:
            open_channel(r, ch)
        r.send(payload)
        code, _, cls, meth = close_args(r.expect(0, (10, 50)))
        return code, cls, meth
    finally:
        r.close()


def same_close_as_rabbitmq(gw, payload, channels=(1,)):
    """payload, sent after the handshake and the opening of channels (each
    open-ok read first), gets from busgate the (code, class, method) of
    RabbitMQ's own connection.close for it."""
    bg, ports, issuer = gw
    want = rabbitmq_answer(payload(), channels=channels)
    r, _ = handshake(ports["listen"], issuer.mint("hal", ["apps"]))
    try:
        for ch in channels:
            open_channel(r, ch)
        r.send(payload())
        code, text, cls, meth = close_args(r.expect(0, (10, 50)))
        assert (code, cls, meth) == want, (text, want)
    finally:
        r.close()


@pytest.mark.parametrize("name,payload", SAME_AS_RABBITMQ, ids=[c[0] for c in SAME_AS_RABBITMQ])
def test_malformed_input_gets_rabbitmqs_reply_code(gw, name, payload):
    same_close_as_rabbitmq(gw, payload)


# With channels 1 and 2 both open, each open-ok read before the input is
# sent (on both sides, so nothing depends on when a channel.open lands):
# content on the other channel than the one whose publish expects it.
SAME_AS_RABBITMQ_TWO_CHANNELS = [
    ("body on another open channel where the content header belongs",
     lambda: publish(1, "", "it.q") + frame(3, 2, b"x")),
    ("body on another open channel mid content",
     lambda: publish(1, "", "it.q") + header(1, 3) + frame(3, 2, b"abc")),
    ("content header on another open channel mid content",
     lambda: publish(1, "", "it.q") + header(2, 3)),
    ("body on another open channel mid body",
     lambda: publish(1, "", "it.q") + header(1, 3) + frame(3, 1, b"a") + frame(3, 2, b"bc")),
]


@pytest.mark.parametrize("name,payload", SAME_AS_RABBITMQ_TWO_CHANNELS,
                         ids=[c[0] for c in SAME_AS_RABBITMQ_TWO_CHANNELS])
def test_content_on_another_open_channel_gets_rabbitmqs_reply_code(gw, name, payload):
    """Content state is per channel: a frame on channel 2 is not taken for
    the content channel 1's publish expects, and RabbitMQ's close (505,
    no method named: channel 2 expects a method) is busgate's too."""
    same_close_as_rabbitmq(gw, payload, channels=(1, 2))


def sanitized_build():
    cache = build_dir() / "CMakeCache.txt"
    return cache.exists() and "BG_SANITIZE:BOOL=ON" in cache.read_text()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_garbage_after_frame_error_is_discarded(gw):
    """After a framing error busgate cannot find frames any more; what the
    client keeps sending must be discarded, not buffered until the close
    times out. (RSS is not comparable under ASan, whose quarantine keeps
    freed memory: there only the behaviour is checked.)"""
    bg, ports, issuer = gw
    r, _ = handshake(ports["listen"], issuer.mint("ivy", ["apps"]))
    before = rss_kb(bg.proc.pid)
    r.send(method(0, 10, 50, b"")[:-1] + b"\x00")  # bad frame end
    junk = b"\x01" * (1 << 20)
    sent, t0 = 0, time.monotonic()
    r.s.settimeout(0.5)
    try:
        while sent < (256 << 20) and time.monotonic() - t0 < 3.0:
            sent += r.s.send(junk)
    except (socket.timeout, OSError):
        pass
    time.sleep(0.3)  # let busgate read what is in flight
    grown = rss_kb(bg.proc.pid) - before
    r.close()
    if not sanitized_build():
        assert grown < 64 * 1024, f"busgate grew {grown >> 10} MiB on {sent >> 20} MiB of junk"
    healthy(ports, issuer)


@pytest.mark.exclusive
def test_blocked_publisher_keeps_its_heartbeat(gw):
    """A publisher RabbitMQ blocks (memory alarm) fills busgate's upstream
    buffer; busgate then stops reading the client, so the client's
    heartbeats sit unread. That must not count as missed heartbeats
    (RabbitMQ, too, pauses its heartbeat monitor on a blocked connection):
    once the alarm clears the publish completes on the same connection."""
    import threading
    bg, ports, issuer = gw
    q = unique("it.edge-bp")
    setup = direct()
    setup.channel().queue_declare(q)
    r, frame_max = handshake(ports["listen"], issuer.mint("jo", ["apps"]),
                             caps=["connection.blocked"], heartbeat=1)
    open_channel(r, 1)
    size = 24 << 20
    chunk = frame_max - 8
    body = b"b" * chunk
    errors = []
    # The client heartbeats until it publishes (setting the alarm takes
    # seconds of rabbitmqctl on a loaded machine: 3 silent intervals would
    # end the session first); publish_big then sends one after each frame.
    beating = threading.Event()

    def beat():
        while not beating.wait(0.3):
            r.send(frame(8, 0, b""))
    hb = threading.Thread(target=beat)
    hb.start()

    def publish_big():
        try:
            r.s.settimeout(30)
            r.send(publish(1, "", q) + header(1, size))
            left = size
            while left:
                n = min(chunk, left)
                r.send(frame(3, 1, body[:n]) + frame(8, 0, b""))
                left -= n
        except OSError as e:
            errors.append(e)

    t = threading.Thread(target=publish_big)
    try:
        with memory_alarm():
            beating.set()
            hb.join(5)
            t.start()
            t0, states = time.monotonic(), ""
            while time.monotonic() - t0 < 4.5:  # > 4 heartbeat intervals, busgate not reading
                if "blocked" not in states:
                    states = rabbitmqctl("list_connections", "state").stdout
                time.sleep(0.2)
            # RabbitMQ did block busgate's publishing connection meanwhile.
            assert "blocked" in states, states
    finally:
        beating.set()
    t.join(30)
    assert not t.is_alive() and not errors, errors
    ch = setup.channel()
    for _ in range(100):
        if ch.queue_declare(q, passive=True).method.message_count == 1:
            break
        time.sleep(0.1)
    assert ch.queue_declare(q, passive=True).method.message_count == 1
    ch.queue_delete(q)
    setup.close()
    r.close()


def test_slow_consumer_keeps_upstream_heartbeat(start_busgate, tmp_path):
    """A consumer that stops reading while deliveries pour in fills
    busgate's output to it; busgate then stops reading RabbitMQ, whose
    heartbeats sit unread in the socket. That silence must not count as
    RabbitMQ missing heartbeats: the client, which keeps sending its own,
    gets every message once it reads again, on the same connection."""
    import threading
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(tmp_path, issuer, policy(), heartbeat=1)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    q = unique("it.edge-slow")
    setup = direct()
    sch = setup.channel()
    sch.queue_declare(q)
    n, size = 32, 1 << 20
    for i in range(n):
        sch.basic_publish("", q, bytes([i]) * size)
    r, _ = handshake(ports["listen"], issuer.mint("jo", ["apps"]), heartbeat=1)
    stop = threading.Event()

    def beat():  # the client's own heartbeats go on while it does not read
        while not stop.wait(0.3):
            try:
                r.send(frame(8, 0, b""))
            except OSError:
                return
    t = threading.Thread(target=beat)
    t.start()
    try:
        open_channel(r, 1)
        # basic.consume, no-ack: RabbitMQ sends all 32 MiB at once.
        r.send(method(1, 60, 20, struct.pack(">H", 0) + ss(q) + ss("slow") + b"\x02" +
                      table([])))
        r.expect(1, (60, 21))
        time.sleep(5)  # > 4 heartbeat intervals without reading
        got, body = 0, 0
        deadline = time.monotonic() + 60
        while got < n and time.monotonic() < deadline:
            typ, ch, p = r.frame(30)
            if typ == 1:
                assert struct.unpack(">HH", p[:4]) == (60, 60), struct.unpack(">HH", p[:4])
                got += 1
            elif typ == 3:
                body += len(p)
        assert got == n and body >= (n - 1) * size, (got, body)
    finally:
        stop.set()
        t.join(5)
        sch.queue_delete(q)
        setup.close()
        r.close()
    assert not bg.wait_log(lambda l: "missed heartbeats" in l.get("msg", ""), timeout=0.5), \
        bg.log_path.read_text()[-2000:]


def test_consumers_of_deleted_queues_are_not_counted(gw):
    """A client without consumer_cancel_notify consumes from a queue and
    deletes it, again and again, on one channel. RabbitMQ ends those
    consumers; busgate (which asks RabbitMQ for cancel notifications and
    keeps them from this client) must not count them toward its
    1024-per-channel bound and refuse the 1025th consume."""
    bg, ports, issuer = gw
    r, _ = handshake(ports["listen"], issuer.mint("jo", ["apps"]))
    open_channel(r, 1)
    prefix = unique("it.edge-del")
    for i in range(1030):
        q = f"{prefix}-{i}"
        r.send(method(1, 50, 10, struct.pack(">H", 0) + ss(q) + b"\x00" + table([]))
               + method(1, 60, 20, struct.pack(">H", 0) + ss(q) + ss(f"c{i}") + b"\x00"
                        + table([]))
               + method(1, 50, 40, struct.pack(">H", 0) + ss(q) + b"\x00"))
        # RabbitMQ may send the delete-ok before the consume-ok; never a
        # basic.cancel to this client.
        got = sorted(r.method()[:2] for _ in range(3))
        assert got == [(1, (50, 11)), (1, (50, 41)), (1, (60, 21))], (i, got)
    q = f"{prefix}-last"
    r.send(method(1, 50, 10, struct.pack(">H", 0) + ss(q) + b"\x08" + table([])))
    r.expect(1, (50, 11))
    r.send(method(1, 60, 20, struct.pack(">H", 0) + ss(q) + ss("last") + b"\x00" + table([])))
    r.expect(1, (60, 21))
    r.close()


def test_name_with_nul_audited_whole(gw):
    """AMQP names are length-prefixed, so a NUL is just a byte: a refused
    queue.declare of such a name is audited with the name whole, not cut at
    the NUL (and nothing after it taken from elsewhere)."""
    bg, ports, issuer = gw
    r, _ = handshake(ports["listen"], issuer.mint("jo", ["apps"]))
    open_channel(r, 1)
    name = "denied.q\0" + "Q" * 60
    r.send(method(1, 50, 10, struct.pack(">H", 0) + ss(name) + b"\x00" + table([])))
    code, text, cls, meth = close_args(r.expect(1, (20, 40)))
    assert (code, cls, meth) == (403, 50, 10), (code, text)
    r.close()
    found = wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                       and e["decision"]["effect"] == "deny"
                       and e["resources"][0]["name"].startswith("denied.q"))
    assert found, "no decision event"
    assert found[0]["resources"] == [{"type": "amqp:queue", "name": name}], found[0]["resources"]


def test_no_login_while_audit_is_down(start_busgate, tmp_path):
    """A login is an audit event: while the pipeline cannot record events
    (block mode, the only sink failing: the audit file is /dev/full, no
    spool), a new connection is closed with 320 CONNECTION_FORCED instead
    of logging in unrecorded."""
    import pika.exceptions as pex
    bg, ports, issuer = audit_down_gateway(
        start_busgate, tmp_path, rule("all", ["group:apps"], ["amqp:queue:it.*"], ["read"]))
    first = connect(ports["listen"], issuer.mint("alice", ["apps"]))  # admitted, not recordable
    first.close()
    assert wait_not_admitting(ports), bg.log_path.read_text()[-2000:]
    # pika reports a close before open-ok as a probable authentication error,
    # carrying the broker's close.
    with pytest.raises((pex.ConnectionClosedByBroker, pex.ProbableAuthenticationError)) as ei:
        connect(ports["listen"], issuer.mint("alice", ["apps"]))
    assert "(320) 'CONNECTION_FORCED - busgate cannot record audit events" in repr(ei.value), \
        repr(ei.value)


def test_method_while_audit_is_down_closes_the_connection(start_busgate, tmp_path):
    """A client logged in while the audit pipeline admitted; then it stops
    admitting (block mode, the audit file is /dev/full). A method that needs
    a decision cannot be recorded: the connection is closed with 320
    CONNECTION_FORCED and the method's class/method ids, as a login is
    refused then. Never a channel.close 506: 506 RESOURCE_ERROR is a
    connection (hard) error in AMQP 0-9-1, which no broker puts in a
    channel.close. A method that needs no decision still goes through."""
    _, ports, issuer = audit_down_gateway(start_busgate, tmp_path, policy())
    r, _ = handshake(ports["listen"], issuer.mint("alice", ["apps"]))
    try:
        assert wait_not_admitting(ports)
        open_channel(r, 1)
        r.send(method(1, 60, 10, struct.pack(">IHB", 0, 1, 0)))  # basic.qos: no decision
        r.expect(1, (60, 11))
        r.send(method(1, 50, 10, struct.pack(">H", 0) + ss(unique("it.edge-noaudit")) + b"\x00"
                      + table([])))
        code, text, cls, meth = close_args(r.expect(0, (10, 50)))
        assert (code, cls, meth) == (320, 50, 10), (code, text, cls, meth)
        assert text == "CONNECTION_FORCED - busgate cannot record audit events now; retry"
        r.send(method(0, 10, 51))
        assert r.eof(7.0)
    finally:
        r.close()


def test_client_that_never_reads_its_answers_is_not_read(gw):
    """After a refusal every channel.close the client sends on that channel
    is answered by busgate itself (close-ok). A client that keeps sending
    them and never reads must stop being read once its answers fill
    busgate's output, not grow busgate's memory without bound."""
    bg, ports, issuer = gw
    r, _ = handshake(ports["listen"], issuer.mint("ivy", ["apps"]))
    open_channel(r, 1)
    r.send(publish(1, "it.secret-x", "k"))
    code, _, _, _ = close_args(r.expect(1, (20, 40)))
    assert code == 403
    before = rss_kb(bg.proc.pid)
    close = method(1, 20, 40, struct.pack(">H", 200) + ss("bye") + struct.pack(">HH", 0, 0))
    batch = close * 50000  # 1 MiB
    limit, sent = 150 << 20, 0
    r.s.settimeout(3.0)
    try:
        while sent < limit:
            sent += r.s.send(batch)
    except (socket.timeout, OSError):
        pass
    grown = rss_kb(bg.proc.pid) - before
    r.close()
    # busgate's output cap (8 MiB) plus the sockets' buffers hold a few tens
    # of MiB of these; busgate must have stopped reading long before 150.
    assert sent < limit, f"busgate read all {sent >> 20} MiB"
    if not sanitized_build():
        assert grown < 64 * 1024, f"busgate grew {grown >> 10} MiB on {sent >> 20} MiB"
    healthy(ports, issuer)


def test_auto_ack_deliveries_before_a_refusal_are_not_lost(gw):
    """An auto-ack consumer and a refused publish on the same channel.
    RabbitMQ counts an auto-ack message delivered as it sends it, so what it
    sent before it saw busgate's close of the channel must still reach the
    client, ahead of the refusal: every message is either received or still
    in the queue."""
    bg, ports, issuer = gw
    q, total = unique("it.edge-noack"), 3000
    admin = direct()
    ach = admin.channel()
    ach.queue_declare(q)
    for i in range(total):
        ach.basic_publish("", q, b"m%05d" % i)
    r, _ = handshake(ports["listen"], issuer.mint("hal", ["apps"]))
    try:
        open_channel(r, 1)
        # basic.consume no-ack (bit 1), then at once a publish busgate refuses.
        r.send(method(1, 60, 20, struct.pack(">H", 0) + ss(q) + ss("c1") + b"\x02" + table([]))
               + publish(1, "it.secret-x", "k") + header(1, 0))
        received, refused = 0, None
        deadline = time.monotonic() + 30
        while refused is None and time.monotonic() < deadline:
            typ, ch, p = r.frame(timeout=max(0.1, deadline - time.monotonic()))
            if typ == 1 and struct.unpack(">HH", p[:4]) == (60, 60):
                received += 1
            elif typ == 1 and struct.unpack(">HH", p[:4]) == (20, 40):
                refused = close_args(p[4:])
        assert refused and refused[0] == 403, refused
        r.send(method(1, 20, 41))
        left = ach.queue_declare(q, passive=True).method.message_count
        assert received + left == total, (received, left)
    finally:
        r.close()
        ach.queue_delete(q)
        admin.close()


def test_hung_consumer_is_dropped_for_missed_heartbeats(gw):
    """A consumer that stops reading and sending: busgate's output to it
    fills up and busgate stops reading it too, but it must still be dropped
    for missed heartbeats (it is not taking its output), not kept for ever
    with its unacknowledged messages."""
    bg, ports, issuer = gw
    q = unique("it.edge-hung")
    admin = direct()
    ach = admin.channel()
    ach.queue_declare(q)
    body = b"x" * (1 << 20)
    for _ in range(48):
        ach.basic_publish("", q, body)
    r, _ = handshake(ports["listen"], issuer.mint("ida", ["apps"]), heartbeat=1)
    try:
        open_channel(r, 1)
        r.send(method(1, 60, 20, struct.pack(">H", 0) + ss(q) + ss("h1") + b"\x00" + table([])))
        r.expect(1, (60, 21))
        # From now on the client neither reads nor sends anything.
        line = bg.wait_log(lambda l: "client missed heartbeats" in l.get("msg", ""), timeout=20)
        assert line, "the hung consumer was not dropped"
    finally:
        r.close()
        ach.queue_delete(q)
        admin.close()


def test_reload_mid_publish_body_stops_deliveries_at_once(start_busgate, tmp_path):
    """An auto-ack consumer whose client stops part-way through a publish
    body on the same channel; a reload then takes read on the queue away.
    The client decides when that body ends, so busgate must not wait for it:
    the consumer is refused (403, 60/20) at once and no delivery of the
    queue reaches the client any more. The rest of the body still goes to
    RabbitMQ, whole, followed by busgate's close of the channel: the message
    arrives and the connection goes on."""
    import signal
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(tmp_path, issuer, policy())
    bg = start_busgate(text, wait_for_port=ports["listen"])
    q, sink = unique("it.edge-rlq"), unique("it.edge-rls")
    admin = direct()
    ach = admin.channel()
    ach.queue_declare(q)
    ach.queue_declare(sink)
    r, _ = handshake(ports["listen"], issuer.mint("alice", ["apps"]))
    try:
        open_channel(r, 1)
        r.send(method(1, 60, 20, struct.pack(">H", 0) + ss(q) + ss("T1") + b"\x02" + table([])))
        r.expect(1, (60, 21))
        ach.basic_publish("", q, b"before")
        r.expect(1, (60, 60))  # allowed still: delivered
        assert r.frame()[0] == 2 and r.frame()[0] == 3
        # A publish of 1000 bytes, 10 of them sent.
        r.send(publish(1, "", sink) + header(1, 1000) + frame(3, 1, b"x" * 10))
        time.sleep(0.3)
        no_read = policy().replace(json.dumps(ALL), json.dumps(ALL[1:]), 1)  # edge-all's read
        assert no_read != policy()
        bg.config_path.write_text(text.replace(policy(), no_read))
        bg.signal(signal.SIGHUP)
        assert bg.wait_log(lambda l: l.get("msg", "").startswith("reloaded"))
        for i in range(3):
            ach.basic_publish("", q, b"after%d" % i)
        seen, refused = [], None
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                typ, ch, p = r.frame(timeout=max(0.05, deadline - time.monotonic()))
            except (TimeoutError, socket.timeout):
                break
            if typ == 1:
                mid = struct.unpack(">HH", p[:4])
                seen.append(mid)
                if mid == (20, 40):
                    refused = close_args(p[4:])
        assert (60, 60) not in seen, f"deliveries after the reload: {seen}"
        assert refused and (refused[0], refused[2], refused[3]) == (403, 60, 20), refused
        # The body's rest, then the client's close-ok: the publish arrives
        # whole and the channel number is usable again.
        r.send(frame(3, 1, b"y" * 990) + method(1, 20, 41))
        open_channel(r, 1)
        assert get_one(admin, ach, sink) == b"x" * 10 + b"y" * 990
    finally:
        r.close()
        ach.queue_delete(q)
        ach.queue_delete(sink)
        admin.close()


def test_consumer_tags_with_nul_are_matched_whole(gw):
    """A consumer tag is a shortstr: a NUL in it is just a byte. 1025 rounds
    of basic.consume + basic.cancel with tags 't\\0N' leave no consumer
    behind, so the next consume is not refused with 530 NOT_ALLOWED (a tag
    cut at the NUL never matched its consume-ok or cancel-ok, and every
    round stayed counted toward the 1024-per-channel bound)."""
    bg, ports, issuer = gw
    q = unique("it.edge-nultag")
    admin = direct()
    ach = admin.channel()
    ach.queue_declare(q)
    r, _ = handshake(ports["listen"], issuer.mint("jo", ["apps"]))
    try:
        open_channel(r, 1)
        for i in range(1025):
            tag = b"t\0%d" % i
            r.send(method(1, 60, 20, struct.pack(">H", 0) + ss(q) + ss(tag) + b"\x02"
                          + table([])))
            assert r.expect(1, (60, 21)) == ss(tag), i
            r.send(method(1, 60, 30, ss(tag) + b"\x00"))
            assert r.expect(1, (60, 31)) == ss(tag), i
        r.send(method(1, 60, 20, struct.pack(">H", 0) + ss(q) + ss("last") + b"\x02"
                      + table([])))
        r.expect(1, (60, 21))
    finally:
        r.close()
        ach.queue_delete(q)
        admin.close()


def decisions_for(path, api, name, count):
    return wait_audit(path, lambda e: e["kind"] == "decision" and api_name(e) == api
                      and any(r.get("name") == name for r in e.get("resources", [])), count)


def test_audit_error_code_only_on_the_refused_check(gw):
    """A queue.bind whose queue write is allowed and whose exchange read is
    refused: two decision events, and only the refused one carries
    error_code 403; the allowed check's result has no error."""
    bg, ports, issuer = gw
    q, x = unique("it.edge-bindq"), unique("it.secret-bindx")
    r, _ = handshake(ports["listen"], issuer.mint("jo", ["apps"]))
    try:
        open_channel(r, 1)
        r.send(method(1, 50, 20, struct.pack(">H", 0) + ss(q) + ss(x) + ss("k") + b"\x00"
                      + table([])))
        code, text, cls, meth = close_args(r.expect(1, (20, 40)))
        assert (code, cls, meth) == (403, 50, 20), (code, text)
    finally:
        r.close()
    qev = decisions_for(ports["audit"], "queue.bind", q, 1)
    xev = decisions_for(ports["audit"], "queue.bind", x, 1)
    assert qev and xev, "no decision events"
    assert qev[0]["decision"]["effect"] == "allow" and qev[0]["verb"] == "write"
    assert qev[0]["result"].get("error_code", 0) == 0, qev[0]["result"]
    assert "error_name" not in qev[0]["result"], qev[0]["result"]
    assert xev[0]["decision"]["effect"] == "deny" and xev[0]["verb"] == "read"
    assert xev[0]["result"]["error_code"] == 403, xev[0]["result"]
    assert xev[0]["result"]["error_name"] == "ACCESS_REFUSED"


def test_message_too_large_is_audited(gw):
    """A publish the policy allows, whose header announces more than
    max_body_bytes (128 MiB by default): refused with channel.close 406 as
    RabbitMQ refuses it, and the refusal is in the audit, as a deny decision
    of its own with error_code 406 and the reason, after the policy's
    allow."""
    bg, ports, issuer = gw
    q = unique("it.edge-big")
    size = 200 << 20
    r, _ = handshake(ports["listen"], issuer.mint("jo", ["apps"]))
    try:
        open_channel(r, 1)
        r.send(publish(1, "it.edge-x", q) + header(1, size))
        code, text, cls, meth = close_args(r.expect(1, (20, 40)))
        assert (code, cls, meth) == (406, 60, 40), (code, text)
    finally:
        r.close()
    events = decisions_for(ports["audit"], "basic.publish", "it.edge-x", 2)
    events = [e for e in events if e["session_id"] == events[-1]["session_id"]]
    assert [e["decision"]["effect"] for e in events] == ["allow", "deny"], events
    allow, deny = events
    assert allow["result"].get("error_code", 0) == 0
    assert deny["verb"] == "write" and deny["resources"] == allow["resources"]
    assert deny["result"]["error_code"] == 406, deny["result"]
    assert deny["result"]["error_name"] == "PRECONDITION_FAILED"
    assert f"message size {size} is larger than configured max size" in deny["detail"]
    assert "rule" not in deny["decision"]


def send_until_not_read(r, unit, batch):
    """Sends batch (repeats of unit) until busgate takes nothing more for
    3 s, or 512 MiB went: the bytes sent, asserting busgate stopped."""
    sent, limit = 0, 512 << 20
    r.s.settimeout(3.0)  # no progress for that long: busgate stopped reading
    try:
        while sent < limit:
            sent += r.s.send(batch[sent % len(unit):])
    except socket.timeout:
        pass
    assert sent < limit, f"busgate read all {sent >> 20} MiB"
    return sent


def assert_idle(bg, seconds=5):
    """busgate uses well under a CPU-second over `seconds`: holding a
    client it does not read, it must not spin."""
    before = cpu_seconds(bg.proc.pid)
    time.sleep(seconds)
    used = cpu_seconds(bg.proc.pid) - before
    assert used < 1.0, f"busgate used {used:.1f} CPU-seconds in {seconds} s holding one client"


@pytest.mark.single_build
def test_publisher_that_never_reads_its_returns_leaves_busgate_idle(gw):
    """Mandatory publishes nothing routes come back as basic.return. A
    client that sends them and never reads fills busgate's output to it,
    then its unprocessed input up to the read watermark. busgate must then
    stop reading it (idle, not re-running its read callback for nothing),
    and go on once the client reads again: every publish is returned."""
    import threading
    bg, ports, issuer = gw
    r, frame_max = handshake(ports["listen"], issuer.mint("kim", ["apps"]))
    open_channel(r, 1)
    n = 100_000
    assert frame_max >= n + 8, frame_max
    rk = unique("it.edge-nowhere")  # no such queue: every publish is returned
    one = (method(1, 60, 40, struct.pack(">H", 0) + ss("") + ss(rk) + b"\x01")  # mandatory
           + header(1, n) + frame(3, 1, b"r" * n))
    sent = send_until_not_read(r, one, one * 16)
    assert_idle(bg)
    # The client reads again: what it sent is processed, every publish returned.
    rest = -sent % len(one)
    total = (sent + rest) // len(one)
    errors = []

    def finish():
        try:
            r.s.sendall(one[len(one) - rest:])
        except OSError as e:
            errors.append(e)
    t = threading.Thread(target=finish)
    t.start()
    returned, deadline = 0, time.monotonic() + 120
    while returned < total and time.monotonic() < deadline:
        typ, _, p = r.frame(timeout=30)
        if typ == 1:
            assert struct.unpack(">HH", p[:4]) == (60, 50), struct.unpack(">HH", p[:4])
            returned += 1
    t.join(30)
    assert returned == total and not errors, (returned, total, errors)
    r.close()
    healthy(ports, issuer)


@pytest.mark.single_build
def test_consumer_that_stopped_reading_leaves_busgate_idle(gw):
    """The same with deliveries: a consumer that stops reading while it
    goes on sending (heartbeats here) fills busgate's output to it, then
    its unprocessed input. busgate must stop reading it, stay idle (nothing
    upstream holds it back, so nothing else stops the read callback) and
    go on once the client reads: every message arrives."""
    import threading
    bg, ports, issuer = gw
    q, n = unique("it.edge-stopped"), 32
    admin = direct()
    ach = admin.channel()
    ach.queue_declare(q)
    for i in range(n):
        ach.basic_publish("", q, bytes([i]) * (1 << 20))
    r, _ = handshake(ports["listen"], issuer.mint("max", ["apps"]))
    try:
        open_channel(r, 1)
        # basic.consume, no-ack: RabbitMQ sends all 32 MiB at once.
        r.send(method(1, 60, 20, struct.pack(">H", 0) + ss(q) + ss("stopped") + b"\x02"
                      + table([])))
        r.expect(1, (60, 21))
        beat = frame(8, 0, b"")
        sent = send_until_not_read(r, beat, beat * 65536)
        assert_idle(bg)
        rest = -sent % len(beat)
        t = threading.Thread(target=lambda: r.s.sendall(beat[len(beat) - rest:]))
        t.start()
        got, body, deadline = 0, 0, time.monotonic() + 120
        while body < n << 20 and time.monotonic() < deadline:
            typ, _, p = r.frame(timeout=30)
            if typ == 1:
                assert struct.unpack(">HH", p[:4]) == (60, 60), struct.unpack(">HH", p[:4])
                got += 1
            elif typ == 3:
                body += len(p)
        t.join(30)
        assert (got, body) == (n, n << 20), (got, body)
        open_channel(r, 2)  # its heartbeats were processed: the connection goes on
    finally:
        r.close()
        ach.queue_delete(q)
        admin.close()

def test_client_silent_inside_a_frame_is_dropped(gw):
    """A client that sends the start of a frame and then nothing is as dead
    as one that sends nothing: busgate's heartbeats to it, and the
    unprocessed bytes it holds, must not keep it alive."""
    bg, ports, issuer = gw
    r, _ = handshake(ports["listen"], issuer.mint("lee", ["apps"]), heartbeat=1)
    open_channel(r, 1)
    r.send(b"\x01\x00\x01")  # 3 bytes of a frame header, then silence
    assert r.eof(10.0), "a client silent for 10 heartbeat intervals was kept"
    assert bg.wait_log(lambda l: "client missed heartbeats" in l.get("msg", "")), \
        bg.log_path.read_text()[-2000:]
    r.close()


def test_channel_above_channel_max_closes_with_504(gw):
    """AMQP 0-9-1 makes channel_max the highest channel number: a channel.open
    above the negotiated value ends the connection with 504 CHANNEL_ERROR
    naming channel.open (RabbitMQ 3.10 would open it; docs/amqp.md, Reply
    codes). The channel at channel_max itself opens."""
    _, ports, issuer = gw
    r, mid, args = login(ports["listen"], issuer.mint("svc-edge", ["apps"]))
    assert mid == (10, 30), mid
    channel_max, frame_max, _ = struct.unpack(">HIH", args[:8])
    assert 0 < channel_max < 65535, channel_max
    r.send(method(0, 10, 31, struct.pack(">HIH", channel_max, frame_max, 0)))
    r.send(method(0, 10, 40, ss("/") + ss("") + b"\x00"))
    r.expect(0, (10, 41))
    open_channel(r, channel_max)
    r.send(method(channel_max + 1, *CHANNEL_OPEN, ss("")))
    code, text, cls, mth = close_args(r.expect(0, (10, 50)))
    assert (code, text, cls, mth) == (504, "CHANNEL_ERROR - channel number out of range",
                                      20, 10), (code, text, cls, mth)
    healthy(ports, issuer)
