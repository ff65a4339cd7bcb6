"""AMQP 0-9-1 on the wire for the integration suites: frame builders, a raw
client (what pika cannot send), and FakeRabbit, a scripted RabbitMQ for
answers the real broker gives only by chance (no close-ok, frames right
behind its open-ok, silence during the handshake).

Everything listens and connects on 127.0.0.1 only; every read is bounded."""
import queue
import socket
import struct
import threading
import time

from conftest import free_port

# ---- frames ----


def ss(s):
    b = s.encode() if isinstance(s, str) else s
    return bytes([len(b)]) + b


def ls(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">I", len(b)) + b


def table(entries):
    """entries: [(key, type letter, encoded value)]"""
    body = b"".join(ss(k) + t.encode() + v for k, t, v in entries)
    return struct.pack(">I", len(body)) + body


def frame(typ, ch, payload, end=b"\xce"):
    return struct.pack(">BHI", typ, ch, len(payload)) + payload + end


def method(ch, cls, meth, args=b""):
    return frame(1, ch, struct.pack(">HH", cls, meth) + args)


def publish(ch, exchange, rk):
    return method(ch, 60, 40, struct.pack(">H", 0) + ss(exchange) + ss(rk) + b"\x00")


def header(ch, size, flags=0):
    return frame(2, ch, struct.pack(">HHQH", 60, 0, size, flags))


def connection_close(code, text, cls=0, meth=0):
    return method(0, 10, 50, struct.pack(">H", code) + ss(text) + struct.pack(">HH", cls, meth))


CHANNEL_OPEN = (20, 10)


def close_args(args):
    code = struct.unpack(">H", args[:2])[0]
    tlen = args[2]
    text = args[3:3 + tlen].decode()
    cls, meth = struct.unpack(">HH", args[3 + tlen:7 + tlen])
    return code, text, cls, meth


# ---- either end of a connection ----


class Raw:
    """Frames over a socket: a client connected to port, or (sock) the
    accepted end of a connection."""

    def __init__(self, port=None, timeout=10.0, sock=None):
        self.s = sock or socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, b):
        self.s.sendall(b)

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame in time")
            self.s.settimeout(left)
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk

    def read_exact(self, n, timeout=10.0):
        self._fill(n, time.monotonic() + timeout)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        self._fill(7, deadline)
        typ, ch, size = struct.unpack(">BHI", self.buf[:7])
        self._fill(7 + size + 1, deadline)
        payload, end = self.buf[7:7 + size], self.buf[7 + size]
        self.buf = self.buf[8 + size:]
        assert end == 0xCE
        return typ, ch, payload

    def method(self, timeout=10.0):
        """Next method frame (heartbeats skipped): (channel, (class, method), args)."""
        deadline = time.monotonic() + timeout
        while True:
            typ, ch, p = self.frame(max(0.01, deadline - time.monotonic()))
            if typ == 8:
                continue
            assert typ == 1, f"frame type {typ}"
            return ch, struct.unpack(">HH", p[:4]), p[4:]

    def expect(self, ch, ids, timeout=10.0):
        got_ch, got, args = self.method(timeout)
        assert (got_ch, got) == (ch, ids), f"got {got} on {got_ch}, expected {ids} on {ch}"
        return args

    def eof(self, timeout=10.0):
        """True once the peer closed (frames before that are skipped)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.frame(max(0.01, deadline - time.monotonic()))
        except EOFError:
            return True
        except (TimeoutError, socket.timeout):
            return False

    def close(self):
        self.s.close()


# ---- client side ----


def login(port, token, *, mechanism="PLAIN", caps=(), user="svc", timeout=10.0):
    """A raw client through its start-ok. Returns (Raw, (class, method),
    args) of busgate's answer: tune, or connection.close when refused."""
    r = Raw(port)
    r.send(b"AMQP\x00\x00\x09\x01")
    r.expect(0, (10, 10))  # start
    props = table([("product", "S", ls("busgate-edge-test")),
                   ("capabilities", "F", table([(c, "t", b"\x01") for c in caps]))])
    if mechanism == "AMQPLAIN":
        response = ss("LOGIN") + b"S" + ls(user) + ss("PASSWORD") + b"S" + ls(token)
    else:
        response = b"\x00" + user.encode() + b"\x00" + token.encode()
    r.send(method(0, 10, 11, props + ss(mechanism) + ls(response) + ss("en_US")))
    _, mid, args = r.method(timeout)
    return r, mid, args


def handshake(port, token, *, mechanism="PLAIN", caps=(), heartbeat=0, user="svc"):
    """A raw client through connection.open-ok. Returns (Raw, frame_max)."""
    r, mid, args = login(port, token, mechanism=mechanism, caps=caps, user=user)
    if mid == (10, 50):
        return r, close_args(args)
    assert mid == (10, 30), mid  # tune
    channel_max, frame_max, _ = struct.unpack(">HIH", args[:8])
    r.send(method(0, 10, 31, struct.pack(">HIH", channel_max, frame_max, heartbeat)))
    r.send(method(0, 10, 40, ss("/") + ss("") + b"\x00"))
    r.expect(0, (10, 41))
    return r, frame_max


def open_channel(r, ch):
    r.send(method(ch, *CHANNEL_OPEN, ss("")))
    r.expect(ch, (20, 11))


def expect_connection_close(r, code, prefix, timeout=10.0):
    args = r.expect(0, (10, 50), timeout)
    got_code, text, _, _ = close_args(args)
    assert got_code == code and text.startswith(prefix), (got_code, text)
    try:
        r.send(method(0, 10, 51))  # close-ok (busgate may have hung up already)
    except OSError:
        pass
    assert r.eof(7.0)
    return text


# ---- a scripted RabbitMQ ----


class FakeRabbitConn(Raw):
    """One connection busgate made to a FakeRabbit, seen from the broker's
    side, handed to the script once busgate's start-ok has been read.
    publishes: the basic.publish methods serve() received."""

    def __init__(self, sock, mechanisms="PLAIN"):
        super().__init__(sock=sock)
        self.mechanisms = mechanisms
        self.publishes = 0
        self.error = None
        self.done = threading.Event()
        self.start_ok = b""

    def read_login(self):
        """Protocol header, connection.start sent, busgate's start-ok read."""
        assert self.read_exact(8) == b"AMQP\x00\x00\x09\x01"
        start = struct.pack(">BB", 0, 9) + table([]) + ls(self.mechanisms) + ls("en_US")
        self.send(method(0, 10, 10, start))
        self.start_ok = self.expect(0, (10, 11))

    def for_session(self):
        """busgate logs in for a client session with the client's
        capabilities and always consumer_cancel_notify; its readiness
        probe with none of them."""
        return b"consumer_cancel_notify" in self.start_ok

    def answer_handshake(self, *, tune=(2047, 131072, 0), open_ok=True, after_open_ok=b""):
        """tune, then busgate's tune-ok and open read, then open-ok followed
        by after_open_ok in one write (nothing with open_ok=False)."""
        self.send(method(0, 10, 30, struct.pack(">HIH", *tune)))
        self.expect(0, (10, 31))  # tune-ok
        self.expect(0, (10, 40))  # open
        if open_ok:
            self.send(method(0, 10, 41, ss("")) + after_open_ok)

    def serve(self, timeout=30.0):
        """Answers channel.open and channel.close and counts publishes until
        busgate's connection.close (returned: (code, text, class, method))."""
        deadline = time.monotonic() + timeout
        while True:
            typ, ch, p = self.frame(max(0.01, deadline - time.monotonic()))
            if typ != 1:
                continue
            mid = struct.unpack(">HH", p[:4])
            if mid == (20, 10):
                self.send(method(ch, 20, 11, ls("")))
            elif mid == (20, 40):
                self.send(method(ch, 20, 41))
            elif mid == (60, 40):
                self.publishes += 1
            elif mid == (10, 50):
                return close_args(p[4:])


class FakeRabbit:
    """Listens on 127.0.0.1:port (from free_port). busgate's readiness
    probe is logged in and let go (or handed to probe(conn), when given,
    after its start-ok); each connection busgate makes for a
    client session is handed to script(conn), a FakeRabbitConn after its
    start-ok, on a thread of its own, and queued in conns. An exception in
    a script is kept in conn.error (the test sees busgate's side of it);
    conn.done is set when the script returns. mechanisms: what its
    connection.start offers."""

    def __init__(self, script, probe=None, mechanisms="PLAIN"):
        self.script = script
        self.mechanisms = mechanisms
        self.probe = probe  # None: the readiness probe's connections are answered in full
        self.port = free_port()
        self.srv = socket.socket()
        # A small receive buffer: what busgate sends while a script does not
        # read stays in busgate, not in this socket.
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        self.srv.bind(("127.0.0.1", self.port))
        self.srv.listen(16)
        # accept() waits in short rounds, and close() stops the thread before
        # it closes the socket: a thread blocked in accept() on a socket
        # closed under it would retry (after a signal) on the same descriptor
        # number, by then another test's socket, and take its connections.
        self.srv.settimeout(0.1)
        self.conns = queue.Queue()
        self._all = []
        self._stopping = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self):
        while not self._stopping.is_set():
            try:
                sock, _ = self.srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sock.settimeout(None)
            conn = FakeRabbitConn(sock, self.mechanisms)
            self._all.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn):
        try:
            conn.read_login()
            if not conn.for_session():
                if self.probe:
                    self.probe(conn)
                    return
                conn.answer_handshake()
                conn.eof(30.0)
                return
            self.conns.put(conn)
            self.script(conn)
        except Exception as e:  # noqa: BLE001 - reported through conn.error
            conn.error = e
        finally:
            conn.done.set()

    def next_conn(self, timeout=15.0):
        """The next session connection (queue.Empty when none came)."""
        return self.conns.get(timeout=timeout)

    def close(self):
        self._stopping.set()
        self._acceptor.join(5)
        self.srv.close()
        for c in self._all:
            c.close()
