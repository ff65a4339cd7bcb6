"""An AMQP session_end event's bytes_in, bytes_out and records are what the
client really sent and received: a counting relay sits between a pika
client and busgate, and the event must match its counts exactly (records:
the method frames the client sent, the handshake's included, read from
the relayed bytes), for a connection that only opens and closes, one
whose declare busgate refuses (busgate closes the channel and consumes
RabbitMQ's close-ok itself), one that publishes a message with a body,
one that updates its secret, and one busgate closes when its token
expires (a raw client's close-ok included). busgate_requests_total counts
the same methods. The event also says how the session ended."""
import struct
import socket
import threading

import pika.exceptions as pex
import pytest

from amqp_env import Issuer, audit_events, busgate_config, connect, rule, unique
from amqp_wire import expect_connection_close, handshake, open_channel
from audit_env import scrape
from kafka_env import wait_until


class CountingRelay:
    """Accepts one connection on a free local port and relays it to
    127.0.0.1:port, counting the bytes each way."""

    def __init__(self, port):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.upstream = port
        self.sent = self.received = 0  # by the client / to the client
        self.sent_bytes = bytearray()  # what the client sent, for client_methods()
        self.done = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        client, _ = self.listener.accept()
        self.listener.close()
        server = socket.create_connection(("127.0.0.1", self.upstream))
        pumps = [threading.Thread(target=self._pump, args=(client, server, "sent"), daemon=True),
                 threading.Thread(target=self._pump, args=(server, client, "received"), daemon=True)]
        for p in pumps:
            p.start()
        for p in pumps:
            p.join()
        client.close()
        server.close()
        self.done.set()

    def _pump(self, src, dst, counter):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                setattr(self, counter, getattr(self, counter) + len(data))
                if counter == "sent":
                    self.sent_bytes += data
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def client_methods(data):
    """The method frames in what a client sent (its protocol header, then
    whole frames), counted from the bytes alone: (count, [(class, method)])."""
    assert data[:8] == b"AMQP\x00\x00\x09\x01", data[:8]
    off, names = 8, []
    while off < len(data):
        typ, _channel, size = struct.unpack_from(">BHI", data, off)
        assert off + 7 + size < len(data) and data[off + 7 + size] == 0xCE, (off, size)
        if typ == 1:
            names.append(struct.unpack_from(">HH", data, off + 7))
        off += 7 + size + 1
    return len(names), names


def nothing(conn, issuer):
    pass


def refused_declare(conn, issuer):
    with pytest.raises(pex.ChannelClosedByBroker):
        conn.channel().queue_declare("other.q")


def update_secret(conn, issuer):
    conn.update_secret(issuer.mint("alice", ["apps"]), "token refresh")


def publish(conn, issuer):
    ch = conn.channel()
    q = unique("it.bytes")
    ch.queue_declare(q, auto_delete=True)
    ch.basic_publish("", q, b"x" * 1000)


def _gateway(start_busgate, tmp_path):
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(tmp_path, issuer,
                                 rule("it", ["group:apps"], ["amqp:queue:it.*", "amqp:exchange:amq.default"],
                                      ["read", "write", "create", "delete", "describe"]))
    start_busgate(text, wait_for_port=ports["listen"])
    return issuer, ports


def _the_session_end(ports, relay):
    """The one session_end event, once written, after its result was
    checked against the relay's counts."""
    assert relay.done.wait(15), "the relayed connection did not end"

    def ends():
        return [e for e in audit_events(ports["audit"]) if e["kind"] == "session_end"]
    assert wait_until(lambda: len(ends()) == 1, timeout=15), audit_events(ports["audit"])
    result = ends()[0]["result"]
    assert (result["bytes_in"], result["bytes_out"]) == (relay.sent, relay.received), \
        (result, relay.sent, relay.received)
    methods, names = client_methods(bytes(relay.sent_bytes))
    # start-ok, tune-ok, open and close are the least a client sends
    assert {(10, 11), (10, 31), (10, 40)} <= set(names), names
    assert result["records"] == methods, (result, names)
    # a single session through this busgate: the metric holds its methods
    assert scrape(ports["admin"], "busgate_requests_total", {"protocol": "amqp"}) == methods
    return ends()[0]


@pytest.mark.parametrize("work", [nothing, refused_declare, publish, update_secret])
def test_session_end_bytes_are_what_the_client_saw(start_busgate, tmp_path, work):
    issuer, ports = _gateway(start_busgate, tmp_path)
    relay = CountingRelay(ports["listen"])
    conn = connect(relay.port, issuer.mint("alice", ["apps"]))
    work(conn, issuer)
    conn.close()
    end = _the_session_end(ports, relay)
    assert end["detail"] == "client closed the connection", end
    assert (10, 50) in client_methods(bytes(relay.sent_bytes))[1]  # its close


def test_session_end_counts_the_close_ok_of_a_busgate_close(start_busgate, tmp_path):
    """busgate closes the connection when the token expires; the client's
    close-ok after that close is read, so it counts in bytes_in and records
    (a raw client: pika does not answer a broker's close)."""
    issuer, ports = _gateway(start_busgate, tmp_path)
    relay = CountingRelay(ports["listen"])
    r, _ = handshake(relay.port, issuer.mint("alice", ["apps"], ttl=3))
    open_channel(r, 1)
    expect_connection_close(r, 320, "CONNECTION_FORCED - credential expired", timeout=15)
    r.close()
    end = _the_session_end(ports, relay)
    assert end["detail"].startswith("320 CONNECTION_FORCED - credential expired"), end
    assert client_methods(bytes(relay.sent_bytes))[1][-1] == (10, 51)  # close-ok
