"""An AMQP session_end event's bytes_in and bytes_out are what the client
really sent and received: a counting relay sits between a pika client and
busgate, and the event must match its counts exactly, for a connection
that only opens and closes, one whose declare busgate refuses (busgate
closes the channel and consumes RabbitMQ's close-ok itself), and one that
publishes a message with a body. The event also says how the session
ended."""
import socket
import threading

import pika.exceptions as pex
import pytest

from amqp_env import Issuer, audit_events, busgate_config, connect, rule, unique
from kafka_env import wait_until


class CountingRelay:
    """Accepts one connection on a free local port and relays it to
    127.0.0.1:port, counting the bytes each way."""

    def __init__(self, port):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.upstream = port
        self.sent = self.received = 0  # by the client / to the client
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
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def nothing(conn):
    pass


def refused_declare(conn):
    with pytest.raises(pex.ChannelClosedByBroker):
        conn.channel().queue_declare("other.q")


def publish(conn):
    ch = conn.channel()
    q = unique("it.bytes")
    ch.queue_declare(q, auto_delete=True)
    ch.basic_publish("", q, b"x" * 1000)


@pytest.mark.parametrize("work", [nothing, refused_declare, publish])
def test_session_end_bytes_are_what_the_client_saw(start_busgate, tmp_path, work):
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(tmp_path, issuer,
                                 rule("it", ["group:apps"], ["amqp:queue:it.*", "amqp:exchange:amq.default"],
                                      ["read", "write", "create", "delete", "describe"]))
    start_busgate(text, wait_for_port=ports["listen"])
    relay = CountingRelay(ports["listen"])
    conn = connect(relay.port, issuer.mint("alice", ["apps"]))
    work(conn)
    conn.close()
    assert relay.done.wait(15), "the relayed connection did not end"

    def ends():
        return [e for e in audit_events(ports["audit"]) if e["kind"] == "session_end"]
    assert wait_until(lambda: len(ends()) == 1, timeout=15), audit_events(ports["audit"])
    result = ends()[0]["result"]
    assert (result["bytes_in"], result["bytes_out"]) == (relay.sent, relay.received), \
        (result, relay.sent, relay.received)
    assert ends()[0]["detail"] == "client closed the connection", ends()[0]
