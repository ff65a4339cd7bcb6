"""Consumers through busgate with a client that pipelines: basic.consume
frames sent back to back before any consume-ok (tags named by busgate), the
bound on consumers busgate tracks per channel (1024) and per connection
(4096), refused as RabbitMQ refuses one beyond its consumer_max_per_channel:
connection.close 530 NOT_ALLOWED with class/method 60/20, consumers decided
again after a reload, also next to a direct reply-to consumer, and the
reuse of a consumer tag refused.

The client is raw frames over a socket (pika's codec for marshalling only,
no pika connection logic): pika's own clients wait for each consume-ok."""
import signal
import socket
import time
from contextlib import contextmanager
from types import SimpleNamespace

import pika
import pytest
import pika.frame as pframe
import pika.spec as spec

from amqp_env import (RABBIT_PORT, UPSTREAM_PASSWORD, UPSTREAM_USER, Issuer, api_name,
                      busgate_config, connect, direct, rule, unique, wait_audit)
from kafka_env import scrape, wait_until

POLICY = (rule("cons", ["group:apps"], ["amqp:queue:it.cons-*"], ["read", "create", "delete", "describe"])
          + rule("default-exchange", ["group:apps"], ["amqp:exchange:amq.default"], ["write"]))


class RawClient:
    """An AMQP 0-9-1 client that sends exactly the frames it is told to."""

    def __init__(self, port, token, user="svc"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        self.expect(0, spec.Connection.Start)
        self.send(0, spec.Connection.StartOk(client_properties={"product": "raw"},
                                             response=b"\0" + user.encode() + b"\0" +
                                             token.encode()))
        tune = self.expect(0, spec.Connection.Tune)
        self.send(0, spec.Connection.TuneOk(tune.channel_max, tune.frame_max, 0))
        self.send(0, spec.Connection.Open(virtual_host="/"))
        self.expect(0, spec.Connection.OpenOk)

    def send(self, channel, *methods):
        """All methods in one write: pipelined."""
        self.sock.sendall(b"".join(pframe.Method(channel, m).marshal() for m in methods))

    def frame(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            used, f = pframe.decode_frame(self.buf)
            if f is not None:
                self.buf = self.buf[used:]
                if isinstance(f, pframe.Heartbeat):
                    continue
                return f
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            assert chunk, "busgate closed the socket"
            self.buf += chunk

    def expect(self, channel, cls):
        f = self.frame()
        assert isinstance(f, pframe.Method) and f.channel_number == channel and \
            isinstance(f.method, cls), f"expected {cls.NAME} on {channel}, got {f}"
        return f.method

    def open_channel(self, n):
        self.send(n, spec.Channel.Open())
        self.expect(n, spec.Channel.OpenOk)

    def close(self):
        self.sock.close()


def setup_queues(names):
    conn = direct()
    ch = conn.channel()
    for q in names:
        ch.queue_declare(q, auto_delete=False)
    return conn, ch


def start(start_busgate, tmp_path):
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(tmp_path, issuer, POLICY)
    start_busgate(text, wait_for_port=ports["listen"])
    return RawClient(ports["listen"], issuer.mint("alice", ["apps"]))


def test_pipelined_consumes_with_server_named_tags(start_busgate, tmp_path):
    qa, qb, qc = unique("it.cons-a"), unique("it.cons-b"), unique("it.cons-c")
    conn, ch = setup_queues([qa, qb, qc])
    try:
        raw = start(start_busgate, tmp_path)
        raw.open_channel(1)
        # Three consumes in one write; the third names no queue: the last
        # declared one (qc, passive declare pipelined before it).
        raw.send(1, spec.Basic.Consume(queue=qa, consumer_tag=""),
                 spec.Basic.Consume(queue=qb, consumer_tag=""),
                 spec.Queue.Declare(queue=qc, passive=True),
                 spec.Basic.Consume(queue="", consumer_tag=""))
        # RabbitMQ's queue process sends consume-ok, so the declare-ok may
        # overtake it; consume-oks keep their order among themselves (what
        # busgate's tag -> queue matching relies on, checked below).
        tags, declared = [], 0
        while len(tags) < 3 or not declared:
            f = raw.frame()
            assert isinstance(f, pframe.Method) and f.channel_number == 1, f
            if isinstance(f.method, spec.Basic.ConsumeOk):
                tags.append(f.method.consumer_tag)
            else:
                assert isinstance(f.method, spec.Queue.DeclareOk), f
                declared += 1
        assert len(set(tags)) == 3 and all(t.startswith("amq.ctag-") for t in tags), tags
        for q in (qa, qb, qc):
            ch.basic_publish("", q, q.encode())
        seen = {}
        while len(seen) < 3:
            f = raw.frame()
            if isinstance(f, pframe.Method) and isinstance(f.method, spec.Basic.Deliver):
                seen[f.method.consumer_tag] = f.method.routing_key
        assert seen == dict(zip(tags, (qa, qb, qc)))
        # Cancelling them, pipelined too, gets every cancel-ok back.
        raw.send(1, *(spec.Basic.Cancel(consumer_tag=t) for t in tags))
        got = []
        while len(got) < 3:
            f = raw.frame()
            if isinstance(f, pframe.Method) and isinstance(f.method, spec.Basic.CancelOk):
                got.append(f.method.consumer_tag)
        assert got == tags
        raw.close()
    finally:
        for q in (qa, qb, qc):
            ch.queue_delete(q)
        conn.close()


def expect_limit_close(raw, text):
    while True:
        f = raw.frame()
        if isinstance(f, pframe.Method) and isinstance(f.method, spec.Connection.Close):
            break
    m = f.method
    assert (m.reply_code, m.reply_text, m.class_id, m.method_id) == (530, text, 60, 20)
    raw.send(0, spec.Connection.CloseOk())


def test_consumers_per_channel_bounded(start_busgate, tmp_path):
    q = unique("it.cons-l")
    conn, ch = setup_queues([q])
    try:
        raw = start(start_busgate, tmp_path)
        raw.open_channel(1)
        raw.send(1, *(spec.Basic.Consume(queue=q, consumer_tag=f"c{i}", nowait=True)
                      for i in range(1025)))
        expect_limit_close(raw, "NOT_ALLOWED - reached maximum (1024) of consumers per channel")
        raw.close()
        # All 1025 were decided (allowed); the refused one is then audited
        # as busgate's own deny, as every refusal busgate makes itself.
        consumes = wait_audit(tmp_path / "audit.jsonl",
                              lambda e: api_name(e) == "basic.consume", count=1026)
        assert len(consumes) == 1026
        assert all(e["decision"]["effect"] == "allow" for e in consumes[:1025])
        deny = consumes[1025]
        assert deny["decision"]["effect"] == "deny", deny
        assert deny["result"]["error_code"] == 530, deny
        assert deny["detail"] == "NOT_ALLOWED - reached maximum (1024) of consumers per channel"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            n = ch.queue_declare(q, passive=True).method.consumer_count
            if n == 0:  # the connection is gone, and its consumers with it
                break
            time.sleep(0.1)
        assert n == 0
    finally:
        ch.queue_delete(q)
        conn.close()


def test_consumers_per_connection_bounded(start_busgate, tmp_path):
    q = unique("it.cons-l")
    conn, ch = setup_queues([q])
    try:
        raw = start(start_busgate, tmp_path)
        for n in range(1, 6):
            raw.open_channel(n)
        # 4 channels x 1024, each consume-ok awaited (pipelined per channel).
        for n in range(1, 5):
            raw.send(n, *(spec.Basic.Consume(queue=q, consumer_tag=f"c{n}-{i}")
                          for i in range(1024)))
        oks = 0
        while oks < 4096:
            f = raw.frame()
            assert isinstance(f, pframe.Method), f
            if isinstance(f.method, spec.Basic.ConsumeOk):
                oks += 1
        # A cancel makes room for exactly one more.
        raw.send(1, spec.Basic.Cancel(consumer_tag="c1-0"))
        raw.expect(1, spec.Basic.CancelOk)
        raw.send(5, spec.Basic.Consume(queue=q, consumer_tag="room"))
        assert raw.expect(5, spec.Basic.ConsumeOk).consumer_tag == "room"
        raw.send(5, spec.Basic.Consume(queue=q, consumer_tag="one-too-many"))
        expect_limit_close(raw, "NOT_ALLOWED - reached maximum (4096) of consumers per "
                                "connection")
        raw.close()
    finally:
        ch.queue_delete(q)
        conn.close()


def test_publishes_right_before_connection_close_reach_the_broker(start_busgate, tmp_path):
    """Publishes and connection.close in one write: busgate forwards the
    close behind them and answers close-ok only after RabbitMQ's close-ok, so
    none is lost (a close-ok at once would have let busgate drop the upstream
    with the publishes still unsent)."""
    q = unique("it.cons-close")
    conn, ch = setup_queues([q])
    try:
        raw = start(start_busgate, tmp_path)
        raw.open_channel(1)
        frames = []
        for i in range(200):
            body = f"m{i}".encode()
            frames.append(pframe.Method(1, spec.Basic.Publish(exchange="", routing_key=q)).marshal())
            frames.append(pframe.Header(1, len(body), spec.BasicProperties()).marshal())
            frames.append(pframe.Body(1, body).marshal())
        frames.append(pframe.Method(0, spec.Connection.Close(200, "bye", 0, 0)).marshal())
        raw.sock.sendall(b"".join(frames))
        raw.expect(0, spec.Connection.CloseOk)
        raw.close()
        deadline = time.monotonic() + 10
        while True:
            n = ch.queue_declare(q, passive=True).method.message_count
            if n == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert n == 200
    finally:
        ch.queue_delete(q)
        conn.close()


REPLY_TO = "amq.rabbitmq.reply-to"
REPLY_RULE = rule("reply-to", ["group:apps"], ["amqp:queue:" + REPLY_TO], ["read"])


def reload_without_read(bg, text):
    """Reloads busgate with the same rules minus read on it.cons-*."""
    narrow = text.replace('["read", "create", "delete", "describe"]',
                          '["create", "delete", "describe"]')
    assert narrow != text
    bg.config_path.write_text(narrow)
    bg.signal(signal.SIGHUP)
    assert bg.wait_log(lambda l: l.get("msg", "").startswith("reloaded"))


def next_method(raw, channel, forbidden=None):
    """The next method frame on channel other than a delivery (content
    frames and other channels' frames skipped); a delivered body equal to
    forbidden fails at once."""
    while True:
        f = raw.frame()
        if isinstance(f, pframe.Body) and f.channel_number == channel:
            assert f.fragment != forbidden, f"{forbidden!r} was delivered"
        if isinstance(f, pframe.Method) and f.channel_number == channel and \
                not isinstance(f.method, spec.Basic.Deliver):
            return f.method


def queued_body(ach, q):
    """The body of the next message in q, straight from RabbitMQ (waiting up
    to 5 s for one to come back to the queue), or None."""
    for _ in range(50):
        m = ach.basic_get(q, auto_ack=True)
        if m[0] is not None:
            return m[2]
        time.sleep(0.1)
    return None


def test_reload_after_reply_to_consume_ok_overtook(start_busgate, tmp_path):
    """Two consumes without a tag, pipelined: a queue's, then direct
    reply-to's. RabbitMQ answers the reply-to consume at once, ahead of the
    queue's consume-ok; busgate used to give each consume-ok to the oldest
    untagged consume, so it tracked the queue consumer under the reply-to
    consumer's tag, a cancel of that tag made it forget the queue consumer,
    and after a reload that took read on the queue away its deliveries kept
    coming. busgate now names both consumes itself and matches consume-oks
    by tag: the reload refuses the queue consumer (403, 60/20) before the
    message is relayed, and the message stays in the queue."""
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(tmp_path, issuer, POLICY + REPLY_RULE)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    q = unique("it.cons-rt")
    conn, ach = setup_queues([q])
    try:
        raw = RawClient(ports["listen"], issuer.mint("alice", ["apps"]))
        raw.open_channel(1)
        raw.send(1, spec.Basic.Consume(queue=q, consumer_tag=""),
                 spec.Basic.Consume(queue=REPLY_TO, consumer_tag="", no_ack=True))
        tags = [raw.expect(1, spec.Basic.ConsumeOk).consumer_tag for _ in range(2)]
        assert len(set(tags)) == 2 and all(t.startswith("amq.ctag-") for t in tags), tags
        # The queue consumer's tag is the one its delivery carries.
        ach.basic_publish("", q, b"before")
        f = raw.frame()
        assert isinstance(f, pframe.Method) and isinstance(f.method, spec.Basic.Deliver), f
        qtag = f.method.consumer_tag
        rtag = tags[1] if tags[0] == qtag else tags[0]
        raw.send(1, spec.Basic.Ack(delivery_tag=f.method.delivery_tag))
        raw.send(1, spec.Basic.Cancel(consumer_tag=rtag))  # ends the reply-to consumer
        m = next_method(raw, 1)
        assert isinstance(m, spec.Basic.CancelOk) and m.consumer_tag == rtag, m
        reload_without_read(bg, text)
        ach.basic_publish("", q, b"after")
        m = next_method(raw, 1, forbidden=b"after")
        assert isinstance(m, spec.Channel.Close), m
        assert (m.reply_code, m.class_id, m.method_id) == (403, 60, 20), m
        raw.send(1, spec.Channel.CloseOk())
        assert wait_audit(ports["audit"], lambda e: e.get("decision", {}).get("effect") == "deny"
                          and api_name(e) == "basic.consume"
                          and any(r.get("name") == q for r in e.get("resources", [])))
        raw.close()
        # unacknowledged: back in the queue once the channel closed
        assert queued_body(ach, q) == b"after"
    finally:
        ach.queue_delete(q)
        conn.close()


def test_reply_to_consumer_tag_cannot_be_reused(start_busgate, tmp_path):
    """RabbitMQ lets a queue consumer take the tag of the channel's direct
    reply-to consumer (which it keeps outside its consumer table), and a
    cancel of that tag ends the reply-to consumer: busgate forgot the queue
    consumer instead, so a reload did not stop its deliveries. busgate
    refuses a consume whose tag it already tracks on the channel, as
    RabbitMQ refuses the reuse of a tag: connection.close 530 NOT_ALLOWED
    'attempt to reuse consumer tag', class/method 60/20 (a connection error
    in RabbitMQ too); the consume never reaches RabbitMQ, and the refusal is
    audited."""
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(tmp_path, issuer, POLICY + REPLY_RULE)
    start_busgate(text, wait_for_port=ports["listen"])
    q = unique("it.cons-rt")
    conn, ach = setup_queues([q])
    try:
        # What RabbitMQ itself does (straight to it, busgate's credential):
        # both consumes take "T", and a cancel of "T" ends the reply-to
        # consumer; the queue consumer still gets deliveries.
        rabbit = RawClient(RABBIT_PORT, UPSTREAM_PASSWORD, user=UPSTREAM_USER)
        rabbit.open_channel(1)
        rabbit.send(1, spec.Basic.Consume(queue=REPLY_TO, consumer_tag="T", no_ack=True))
        assert rabbit.expect(1, spec.Basic.ConsumeOk).consumer_tag == "T"
        rabbit.send(1, spec.Basic.Consume(queue=q, consumer_tag="T", no_ack=True))
        assert rabbit.expect(1, spec.Basic.ConsumeOk).consumer_tag == "T"
        rabbit.send(1, spec.Basic.Cancel(consumer_tag="T"))
        assert rabbit.expect(1, spec.Basic.CancelOk).consumer_tag == "T"
        ach.basic_publish("", q, b"still")
        assert rabbit.expect(1, spec.Basic.Deliver).consumer_tag == "T"
        rabbit.close()
        raw = RawClient(ports["listen"], issuer.mint("alice", ["apps"]))
        raw.open_channel(1)
        raw.send(1, spec.Basic.Consume(queue=REPLY_TO, consumer_tag="T", no_ack=True))
        assert raw.expect(1, spec.Basic.ConsumeOk).consumer_tag == "T"
        raw.send(1, spec.Basic.Consume(queue=q, consumer_tag="T"))
        m = raw.expect(0, spec.Connection.Close)
        assert (m.reply_code, m.reply_text, m.class_id, m.method_id) == (
            530, "NOT_ALLOWED - attempt to reuse consumer tag 'T'", 60, 20), m
        raw.send(0, spec.Connection.CloseOk())
        raw.close()
        assert ach.queue_declare(q, passive=True).method.consumer_count == 0
        events = wait_audit(ports["audit"], lambda e: e.get("kind") == "decision"
                            and api_name(e) == "basic.consume"
                            and any(r.get("name") == q for r in e.get("resources", [])), count=2)
        assert [e["decision"]["effect"] for e in events] == ["allow", "deny"], events
        assert events[1]["result"]["error_code"] == 530, events[1]
        assert events[1]["result"]["error_name"] == "NOT_ALLOWED"
        assert events[1]["detail"] == "NOT_ALLOWED - attempt to reuse consumer tag 'T'"
    finally:
        ach.queue_delete(q)
        conn.close()


def test_nowait_cancel_keeps_the_tag_until_rabbitmq_saw_it(start_busgate, tmp_path):
    """A nowait basic.cancel goes to RabbitMQ as a waiting one: the tag is
    taken until RabbitMQ's cancel-ok, which the client (who asked for none)
    does not get. Ending the consumer at once let the client take the tag
    again while a basic.cancel RabbitMQ sent for the old consumer (its queue
    deleted) was on its way, and that late cancel then made busgate forget
    the new consumer. Reusing the tag right after the nowait cancel is
    refused (530); once RabbitMQ has answered, it is free."""
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(tmp_path, issuer, POLICY)
    start_busgate(text, wait_for_port=ports["listen"])
    q1, q2 = unique("it.cons-nw1"), unique("it.cons-nw2")
    conn, ach = setup_queues([q1, q2])
    try:
        raw = RawClient(ports["listen"], issuer.mint("alice", ["apps"]))
        raw.open_channel(1)
        raw.send(1, spec.Basic.Consume(queue=q1, consumer_tag="T"))
        assert raw.expect(1, spec.Basic.ConsumeOk).consumer_tag == "T"
        # cancel, then a synchronous method as a fence: its answer comes
        # after RabbitMQ's (kept back) cancel-ok, and nothing else comes.
        raw.send(1, spec.Basic.Cancel(consumer_tag="T", nowait=True),
                 spec.Basic.Qos(prefetch_count=5))
        f = raw.frame()
        assert isinstance(f, pframe.Method) and isinstance(f.method, spec.Basic.QosOk), f
        assert ach.queue_declare(q1, passive=True).method.consumer_count == 0
        # The tag is free now: taken again on another queue.
        raw.send(1, spec.Basic.Consume(queue=q2, consumer_tag="T"))
        assert raw.expect(1, spec.Basic.ConsumeOk).consumer_tag == "T"
        # A nowait cancel immediately followed by a consume with the tag:
        # refused, the consume never reaches RabbitMQ.
        raw.send(1, spec.Basic.Cancel(consumer_tag="T", nowait=True),
                 spec.Basic.Consume(queue=q1, consumer_tag="T", nowait=True))
        m = raw.expect(0, spec.Connection.Close)
        assert (m.reply_code, m.class_id, m.method_id) == (530, 60, 20), m
        raw.send(0, spec.Connection.CloseOk())
        raw.close()
        assert ach.queue_declare(q1, passive=True).method.consumer_count == 0
    finally:
        for q in (q1, q2):
            ach.queue_delete(q)
        conn.close()


def test_reload_refuses_a_live_consumer(start_busgate, tmp_path):
    """A consumer was allowed when it started; a reload takes the read
    away. Deliveries need no client method, so busgate decides the
    consumer again when the next one arrives: its channel is closed with
    403 and that message never reaches the client; unacknowledged, it goes
    back to the queue when the channel closes. (With auto-ack RabbitMQ
    counts it delivered as it sends it: see docs/amqp.md.) The
    connection's other channel goes on."""
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(tmp_path, issuer, POLICY)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    q = unique("it.cons-reload")
    admin = direct()
    ach = admin.channel()
    ach.queue_declare(q)
    conn = connect(ports["listen"], issuer.mint("alice", ["apps"]))
    try:
        ch, other = conn.channel(), conn.channel()
        got = []
        def on_message(c, m, p, body):
            got.append(body)
            c.basic_ack(m.delivery_tag)
        ch.basic_consume(q, on_message)
        ach.basic_publish("", q, b"before")
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.2)
        assert got == [b"before"]
        # The reload: the same rules without read on it.cons-*.
        bg.config_path.write_text(text.replace('["read", "create", "delete", "describe"]',
                                               '["create", "delete", "describe"]'))
        assert '["create", "delete", "describe"]' in bg.config_path.read_text()
        bg.signal(signal.SIGHUP)
        assert bg.wait_log(lambda l: l.get("msg", "").startswith("reloaded"))
        ach.basic_publish("", q, b"after")
        deadline = time.monotonic() + 10
        while ch.is_open and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.2)
        assert ch.is_closed
        assert got == [b"before"], got
        refused = wait_audit(ports["audit"], lambda e: e.get("decision", {}).get("effect") == "deny"
                             and api_name(e) == "basic.consume"
                             and any(r.get("name") == q for r in e.get("resources", [])))
        assert refused, "no audited refusal of the consumer"
        assert bg.wait_log(lambda l: "refused the consumers on channel" in l.get("msg", ""))
        assert other.is_open
        other.queue_declare(q, passive=True)  # describe is still allowed
        # Nothing lost: the message stays in the queue.
        assert queued_body(ach, q) == b"after"
    finally:
        conn.close()
        ach.queue_delete(q)
        admin.close()


def update_secret_refuses_consumer(start_busgate, tmp_path, channel_number=None, **params):
    """A consumer (on channel_number, else the first free one) of alice in
    apps, then an update-secret with a token of alice in no group the policy
    names: the same subject, so the connection stays, but busgate decides
    the consumer again at once and closes its channel 403 without waiting
    for a delivery, with an audited refusal of basic.consume."""
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(tmp_path, issuer, POLICY)
    start_busgate(text, wait_for_port=ports["listen"])
    conn = connect(ports["listen"], issuer.mint("alice", ["apps"], ttl=120), **params)
    try:
        ch = conn.channel(channel_number=channel_number)
        q = unique("it.cons-us")
        ch.queue_declare(q, auto_delete=True)
        ch.basic_consume(q, lambda *a: None, auto_ack=True)
        conn.update_secret(issuer.mint("alice", ["nobody"], ttl=120), "fewer groups")
        deadline = time.monotonic() + 10
        while ch.is_open and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.1)
        assert ch.is_closed, "the consumer was kept after update-secret took its group away"
        assert conn.is_open
        assert wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                          and e["decision"]["effect"] == "deny" and api_name(e) == "basic.consume"
                          and e["result"].get("error_code") == 403
                          and any(r.get("name") == q for r in e.get("resources", [])))
    finally:
        if conn.is_open:
            conn.close()


def test_update_secret_with_fewer_groups_refuses_live_consumer(start_busgate, tmp_path):
    """A new secret may allow less than the old one though the policy did
    not change: a live consumer its groups no longer allow is refused."""
    update_secret_refuses_consumer(start_busgate, tmp_path)


def test_update_secret_refuses_consumer_on_the_highest_channel(start_busgate, tmp_path):
    """The consumers are decided again on every channel up to channel_max
    inclusive: one on channel channel_max is not skipped."""
    update_secret_refuses_consumer(start_busgate, tmp_path, channel_number=3, channel_max=3)


@contextmanager
def vouched_session(start_busgate, tmp_path):
    """busgate trusting a second issuer next to the usual one, and a
    connection through it with a token of that issuer (alice in apps): a
    consumer (channel ch, bodies in got) on a new queue that has had one
    delivery, and a second channel (other) open. For the reloads that take
    away what vouched for the token. A namespace: bg, ports, text (the
    configuration), second (the issuer), token, conn, ch, other, got, q, and
    ach, a channel straight to RabbitMQ. Closes the connection and deletes
    the queue at the end."""
    issuer = Issuer(tmp_path / "keys")
    second = Issuer(tmp_path / "second", iss="https://amqp.it.second.test")
    text, ports = busgate_config(tmp_path, issuer, POLICY, more_issuers=[second])
    bg = start_busgate(text, wait_for_port=ports["listen"])
    q = unique("it.cons-vouched")
    admin = direct()
    ach = admin.channel()
    ach.queue_declare(q)
    token = second.mint("alice", ["apps"])
    conn = connect(ports["listen"], token)
    try:
        ch, other = conn.channel(), conn.channel()
        got = []
        ch.basic_consume(q, lambda c, m, p, body: (got.append(body), c.basic_ack(m.delivery_tag)))
        ach.basic_publish("", q, b"before")
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.2)
        assert got == [b"before"]
        yield SimpleNamespace(bg=bg, ports=ports, text=text, second=second, token=token,
                              conn=conn, ch=ch, other=other, got=got, q=q, ach=ach)
    finally:
        if conn.is_open:
            conn.close()
        ach.queue_delete(q)
        admin.close()


def reload_config(s, new_text):
    """Reloads s.bg (a vouched_session's) with new_text; returns once it has."""
    ok = {"result": "ok"}
    reloads = scrape(s.ports["admin"], "busgate_reloads_total", ok)
    s.bg.config_path.write_text(new_text)
    s.bg.signal(signal.SIGHUP)
    assert wait_until(lambda: scrape(s.ports["admin"], "busgate_reloads_total", ok) > reloads)


def busgate_deny(s, api, why, resource):
    """The one deny decision event of api ("basic.consume") in s's audit:
    busgate's, with why as its detail, on the named resource."""
    (ev,) = wait_audit(s.ports["audit"], lambda e: e["kind"] == "decision"
                       and e["decision"]["effect"] == "deny" and api_name(e) == api)
    assert ev["decision"]["by"] == "busgate" and "rule" not in ev["decision"], ev
    # busgate's own deny is enforced: never recorded as an audit-mode deny
    # that was let through.
    assert ev["decision"]["mode"] == "enforce", ev
    assert ev["detail"] == why, ev
    assert [r["name"] for r in ev["resources"]] == [resource], ev
    return ev


def assert_unvouched(s, why):
    """After a reload that took away what vouched for s.token: the connection
    stays open, but every decision is busgate's deny for why, though the
    policy allows it. The live consumer is refused at its next delivery
    (its channel closed, the message not relayed and back in the queue); a
    queue.declare (describe) and a publish are refused 403 naming why, each
    with its audit event; the refused publish never reaches the queue."""
    s.ach.basic_publish("", s.q, b"after")
    deadline = time.monotonic() + 10
    while s.ch.is_open and time.monotonic() < deadline:
        s.conn.process_data_events(time_limit=0.2)
    assert s.ch.is_closed and s.got == [b"before"], s.got
    busgate_deny(s, "basic.consume", why, s.q)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as ei:
        s.other.queue_declare(s.q, passive=True)
    assert ei.value.reply_code == 403 and f"(busgate: {why})" in ei.value.reply_text, ei.value
    pub = s.conn.channel()  # opening a channel needs no decision
    pub.confirm_delivery()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as ei:
        pub.basic_publish("", s.q, b"refused")
    assert ei.value.reply_code == 403 and f"(busgate: {why})" in ei.value.reply_text, ei.value
    busgate_deny(s, "basic.publish", why, "amq.default")
    assert s.conn.is_open
    assert queued_body(s.ach, s.q) == b"after"  # nothing lost
    assert s.ach.queue_declare(s.q, passive=True).method.message_count == 0


def test_reload_removing_the_issuer_denies_its_session(start_busgate, tmp_path):
    """An operator removes an issuer (its keys leaked) and reloads. A
    connection that logged in with that issuer's token stays open (a reload
    drops none), but every decision is then busgate's deny: its live
    consumer is refused at the next delivery, and methods the policy
    allows are refused 403 naming the reason. A reload that puts the issuer
    back lets the same connection go on."""
    with vouched_session(start_busgate, tmp_path) as s:
        without = s.text.replace(s.second.yaml(), "")
        assert s.second.iss not in without
        reload_config(s, without)
        assert_unvouched(s, "the token's issuer is no longer configured")
        reload_config(s, s.text)  # the issuer is back
        s.conn.channel().queue_declare(s.q, passive=True)


def test_reload_removing_the_audience_denies_its_session(start_busgate, tmp_path):
    """A reload that takes the token's audience out of its issuer's
    audiences (the issuer stays): the connection stays open, but every
    decision is busgate's deny naming the audience, as when the issuer is
    removed. The token no longer logs in; a token of the same issuer for
    the audience now accepted does, and the policy decides for it. A reload
    that accepts the audience again lets the same connection go on."""
    with vouched_session(start_busgate, tmp_path) as s:
        moved = s.text.replace(s.second.yaml(), s.second.yaml(audiences="someone-else"))
        assert moved != s.text
        reload_config(s, moved)
        assert_unvouched(s, "the token's audience is no longer accepted")
        with pytest.raises((pika.exceptions.ProbableAuthenticationError,
                            pika.exceptions.AuthenticationError)) as ei:
            connect(s.ports["listen"], s.token)
        assert "ACCESS_REFUSED" in str(ei.value)
        fresh = connect(s.ports["listen"], s.second.mint("alice", ["apps"], aud="someone-else"))
        try:
            fch = fresh.channel()
            fch.confirm_delivery()
            fch.basic_publish("", s.q, b"fresh")
        finally:
            fresh.close()
        assert queued_body(s.ach, s.q) == b"fresh"
        reload_config(s, s.text.replace(s.second.yaml(),
                                        s.second.yaml(audiences="someone-else, busgate")))
        s.conn.channel().queue_declare(s.q, passive=True)
