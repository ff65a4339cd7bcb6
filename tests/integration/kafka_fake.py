"""A scripted Kafka upstream for tests that must see or shape exactly what
crosses busgate's upstream side: the frames busgate sends, and answers no
real broker gives on demand (a coordinator on a node the cluster's metadata
does not name).

It speaks plaintext only (busgate's `security: plaintext`). busgate's own
requests are answered here: ApiVersions (client id "busgate") and the
discovery Metadata (client id "busgate-discovery"), which names one broker,
node 0, at this listener. Every other request frame is recorded per
connection; a test answers it with FakeConn.reply or leaves it unanswered
(a broker holding a request)."""
import queue
import socket
import struct
import threading

from kafka_env import kstr, uvarint

# (api key, min, max) advertised: enough for busgate's handshake, discovery
# and the requests the tests send. Metadata v1 keeps the discovery answer
# simple (no tagged fields).
APIS = [(0, 3, 9), (1, 4, 11), (3, 0, 1), (10, 0, 3), (16, 0, 4), (17, 0, 1), (18, 0, 3),
        (36, 0, 1)]


def _read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


class FakeRequest:
    """One request frame as the fake broker received it. payload: the frame
    after its size field; after_client_id: the bytes after the header's
    client id (for header v2 this starts with the header's tagged fields)."""

    def __init__(self, payload):
        self.payload = payload
        self.api_key, self.api_version, self.corr = struct.unpack(">hhi", payload[:8])
        n = struct.unpack(">h", payload[8:10])[0]
        self.client_id = payload[10:10 + n].decode() if n > 0 else None
        self.after_client_id = payload[10 + max(n, 0):]


class FakeConn:
    """One connection busgate made to the fake broker."""

    def __init__(self, sock):
        self.sock = sock
        self.requests = queue.Queue()
        self.closed = threading.Event()

    def next(self, timeout=10.0):
        """The next request busgate forwarded (raises queue.Empty)."""
        return self.requests.get(timeout=timeout)

    def reply(self, corr, body, header_tags=False):
        """Sends a response: correlation id, an empty tagged section when
        header_tags (response header v1), then body."""
        payload = struct.pack(">i", corr) + (b"\x00" if header_tags else b"") + body
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)


class FakeKafka:
    """Listens on 127.0.0.1:port; conns: a FakeConn for each connection on
    which a request other than busgate's own arrived, in that order;
    accepts: how many connections busgate made. Its discovery answer names
    it broker `node`."""

    def __init__(self, apis=APIS, node=0, versions_max=None):
        self.apis = apis
        self.node = node
        # busgate's ApiVersions: with versions_max None, any version above 0
        # is refused without naming a range (busgate asks v0 again); with N,
        # a version above N is refused naming 0..N, as Kafka does, and
        # 1..N are answered in their own layout. versions_asked: each
        # version busgate asked, in order.
        self.versions_max = versions_max
        self.versions_asked = []
        self.accepts = 0
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.conns = queue.Queue()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def close(self):
        self.srv.close()

    def _accept(self):
        while True:
            try:
                sock, _ = self.srv.accept()
            except OSError:
                return
            self.accepts += 1
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock):
        conn = FakeConn(sock)
        announced = False
        while True:
            try:
                head = _read_exact(sock, 4)
                payload = head and _read_exact(sock, struct.unpack(">i", head)[0])
            except OSError:
                payload = None
            if not payload:
                conn.closed.set()
                return
            req = FakeRequest(payload)
            if self._own(conn, req):
                continue
            if not announced:
                announced = True
                self.conns.put(conn)
            conn.requests.put(req)

    def _own(self, conn, req):
        """Answers busgate's own requests; False for the others."""
        if req.api_key == 18 and req.client_id == "busgate":
            v = req.api_version
            self.versions_asked.append(v)
            if v > 0 and self.versions_max is None:  # UNSUPPORTED_VERSION, no range
                conn.reply(req.corr, struct.pack(">h", 35))
            elif v > (self.versions_max or 0):  # UNSUPPORTED_VERSION in the v0 layout
                conn.reply(req.corr, struct.pack(">hihhh", 35, 1, 18, 0, self.versions_max))
            elif v >= 3:  # flexible: compact array, tagged fields
                body = struct.pack(">h", 0) + uvarint(len(self.apis) + 1)
                body += b"".join(struct.pack(">hhh", *a) + b"\x00" for a in self.apis)
                conn.reply(req.corr, body + struct.pack(">i", 0) + b"\x00")
            else:
                body = struct.pack(">hi", 0, len(self.apis))
                body += b"".join(struct.pack(">hhh", *a) for a in self.apis)
                conn.reply(req.corr, body + (struct.pack(">i", 0) if v > 0 else b""))
            return True
        if req.api_key == 3 and req.client_id == "busgate-discovery":
            conn.reply(req.corr, metadata_v1([(self.node, "127.0.0.1", self.port)]))
            return True
        return False


def metadata_v1(brokers):
    """A Metadata v0/v1 response body listing brokers [(id, host, port)], no
    topics (v1: controller 0)."""
    body = struct.pack(">i", len(brokers))
    for node, host, port in brokers:
        body += struct.pack(">i", node) + kstr(host) + struct.pack(">i", port) + kstr(None)
    return body + struct.pack(">ii", 0, 0)
