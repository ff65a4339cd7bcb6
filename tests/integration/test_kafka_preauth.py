"""Before a client authenticates, busgate holds nothing at the broker for
it: no upstream connection (so no login under busgate's credential) for a
socket that only connects, or only asks ApiVersions once busgate knows the
broker's versions; a client that does not authenticate within
kafka.auth_timeout is closed; SASL frames, a re-authentication's too, are
capped at preauth_max_frame_bytes; and one that streams requests busgate
answers itself without reading the answers holds only a little of busgate's
memory."""
import fcntl
import os
import signal
import socket
import struct
import subprocess
import termios
import time

import pytest

import kafka_fake
from conftest import busgate_bin, free_port, http_get, metric, rss_mib, unread_flood, wait_port
from kafka_env import KAFKA_SASL, KafkaWire, busgate_config, kbytes, kstr, oidc_token

RULES = """    - name: orders-topics
      subjects: [group:orders]
      resources: ["kafka:topic:it-orders-*"]
      verbs: [describe]
      effect: allow
"""


def upstream_sockets(pid, port):
    """busgate's TCP connections (established or opening) to 127.0.0.1:port,
    from /proc: its socket inodes matched against the kernel's table."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    n = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            remote_port = int(cols[2].split(":")[1], 16)
            if remote_port == port and cols[3] in ("01", "02") and cols[9] in inodes:
                n += 1
    return n


def test_no_upstream_before_authentication(start_busgate, tmp_path):
    text, ports = busgate_config(tmp_path, RULES, kafka_extra="  auth_timeout: 2s\n")
    bg = start_busgate(text, wait_for_port=ports["listen"])
    up_port = int(KAFKA_SASL.rsplit(":", 1)[1])
    # One client authenticates: its upstream connection teaches busgate the
    # broker's versions.
    token = oidc_token("svc-orders")  # fetched before any socket: auth_timeout runs from accept
    first = KafkaWire(ports["listen"]).login(token)
    assert first.metadata_v1([]) is not None
    first.close()
    before = upstream_sockets(bg.proc.pid, up_port)
    silent = [KafkaWire(ports["listen"]) for _ in range(10)]
    asking = [KafkaWire(ports["listen"]) for _ in range(10)]
    for w in asking:  # answered from what busgate already knows
        assert 18 in w.api_versions()
    after = upstream_sockets(bg.proc.pid, up_port)
    # Before the fix: one upstream login per accepted socket (+20). Discovery
    # may open one connection of its own meanwhile.
    assert after - before <= 1, (before, after)
    # None authenticates within auth_timeout (2 s): each is closed.
    for w in silent + asking:
        assert w.closed_by_peer(timeout=15), "unauthenticated client still open"
        w.close()
    # Logged before the close, but by the log thread: it may lag a little.
    assert bg.wait_log(lambda line: "not authenticated within kafka.auth_timeout"
                       in line.get("msg", "")), bg.log_path.read_text()[-2000:]
    # An authenticated client is not closed by auth_timeout.
    ok = KafkaWire(ports["listen"]).login(token)
    assert not ok.closed_by_peer(timeout=3)
    assert ok.metadata_v1([]) is not None
    ok.close()


def test_first_api_versions_waits_for_the_broker(start_busgate, tmp_path):
    """Before any upstream connection, ApiVersions still gets the broker's
    versions: busgate connects for it, once."""
    text, ports = busgate_config(tmp_path, RULES)
    start_busgate(text, wait_for_port=ports["listen"])
    w = KafkaWire(ports["listen"])
    versions = w.api_versions()
    assert versions[0][1] >= 9 and 36 in versions, versions  # Produce, SaslAuthenticate
    r = w.sasl_plain(oidc_token("svc-orders"))
    assert r is not None and r[0] == 0, r
    body = w.metadata_v1([])
    assert body is not None and struct.unpack(">i", body[:4])[0] >= 1  # brokers listed
    w.close()


def test_broker_with_a_large_node_id(start_busgate, tmp_path):
    """Node ids are the brokers' own (ZooKeeper-era ids start at 1001): what
    busgate keeps of a broker's versions must not depend on the id being
    small, or its unauthenticated clients would make busgate log in again."""
    node = 300
    fake = kafka_fake.FakeKafka(node=node)
    try:
        # Only broker_port_base + 300 is served: a free port, not a block of 301.
        port = free_port()
        text, ports = busgate_config(tmp_path, RULES, security="plaintext",
                                     upstream=[fake.address], port_base=port - node)
        start_busgate(text, wait_for_port=ports["listen"])
        assert wait_port(port)
        KafkaWire(port).login(oidc_token("svc-orders")).close()
        before = fake.accepts
        asking = [KafkaWire(port) for _ in range(10)]
        for w in asking:
            assert 18 in w.api_versions()
        assert fake.accepts == before, (before, fake.accepts)
        for w in asking:
            w.close()
    finally:
        fake.close()


def _in_sasl_authentication(port, token):
    """A connection past its SaslHandshake (PLAIN): a login's when token is
    None, else a re-authentication's after logging in with token."""
    w = KafkaWire(port)
    if token is None:
        w.api_versions()
    else:
        w.login(token)
    body = w.call(17, 1, kstr("PLAIN"))
    assert body is not None and struct.unpack(">h", body[:2])[0] == 0, body
    return w


@pytest.mark.parametrize("reauth", [False, True], ids=["login", "reauthentication"])
def test_sasl_frames_are_capped_at_preauth_max_frame_bytes(start_busgate, tmp_path, reauth):
    """From the SaslHandshake until SaslAuthenticate succeeds, a login's or a
    re-authentication's (Kafka caps SASL frames by
    sasl.server.max.receive.size either way), frames are capped at
    preauth_max_frame_bytes (64 KiB): a size field of exactly the limit is
    read (a SaslAuthenticate, answered 58 for its bad token), one byte more
    closes the connection before the frame is read (auth_timeout is far)."""
    text, ports = busgate_config(tmp_path, RULES, kafka_extra="  auth_timeout: 60s\n")
    bg = start_busgate(text, wait_for_port=ports["listen"])
    token = oidc_token("svc-orders") if reauth else None
    w = _in_sasl_authentication(ports["listen"], token)
    head = struct.pack(">hhi", 36, 1, 99) + kstr(w.client_id)
    plain = b"\0it-raw\0"
    plain += b"x" * (65536 - len(head) - 4 - len(plain))
    frame = head + kbytes(plain)
    assert len(frame) == 65536
    w.sock.sendall(struct.pack(">i", len(frame)) + frame)
    r = w.recv()
    assert r is not None and r[0] == 99, "closed: read as too large"
    assert struct.unpack(">h", r[1][:2])[0] == 58, r
    w.close()
    w = _in_sasl_authentication(ports["listen"], token)
    w.sock.sendall(struct.pack(">i", 65537) + head + b"\0" * 1000)
    assert w.closed_by_peer()
    w.close()
    assert bg.wait_log(lambda l: "limit 65536: preauth_max_frame_bytes" in l.get("msg", ""))


def test_unread_answers_before_login_hold_little_memory(start_busgate, tmp_path,
                                                       small_asan_quarantine):
    """ApiVersions at a version busgate does not speak is answered
    (UNSUPPORTED_VERSION) again and again before a login, as Kafka does. A
    client that streams such requests and never reads: busgate stops reading
    it once a little is queued for it. Before the fix each ~20-byte answer
    kept a 1 KiB+ buffer of its own under a 16 MiB byte limit: over 1 GiB
    for one connection."""
    text, ports = busgate_config(tmp_path, RULES, kafka_extra="  auth_timeout: 60s\n")
    bg = start_busgate(text, wait_for_port=ports["listen"])
    before = rss_mib(bg.proc.pid)
    p = struct.pack(">hhi", 18, 99, 1) + kstr("flood") + b"\x00"
    w = KafkaWire(ports["listen"])
    w.sock.sendall(struct.pack(">i", len(p)) + p)
    r = w.recv()
    assert r is not None and struct.unpack(">h", r[1][:2])[0] == 35, r  # UNSUPPORTED_VERSION
    answer = 8 + len(r[1])
    w.close()
    with unread_flood(ports["listen"], (struct.pack(">i", len(p)) + p) * 16384) as (sent, stalled):
        grown = rss_mib(bg.proc.pid) - before
        assert stalled, f"busgate still reading after {sent} bytes"
        assert grown < 128, f"busgate grew by {grown} MiB for {sent} bytes of requests"
        # What busgate read (not what the kernels took): its answers stop
        # at the 256 KiB pre-login watermark plus what its socket's send
        # buffer holds (at most tcp_wmem's maximum), far below the 16 MiB of
        # an authenticated session.
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            wmem_max = int(f.read().split()[2])
        status, body = http_get(f"http://127.0.0.1:{ports['admin']}/metrics", timeout=10)
        assert status == 200
        answered = metric(body, "busgate_requests_total", {"protocol": "kafka"}) - 1
        assert answered * answer < (512 << 10) + wmem_max < 16 << 20, (answered, sent)


def pipe_bytes(fd):
    """Bytes waiting in the pipe whose read end is fd."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def test_unread_stderr_blocks_no_client(tmp_path):
    """busgate's standard error is a pipe nobody reads (a stalled log
    shipper) and clients make it log a line per connection (a bad frame
    before login). The pipe fills; busgate goes on serving: an
    authenticated client's request and a new client's ApiVersions are
    answered, /healthz says ok, and SIGTERM still ends busgate (status 0).
    Before the fix every worker blocked writing to the pipe: the requests
    went unanswered and SIGTERM did not end busgate (nor did the main
    thread, logging the signal). What is dropped and counted when the
    queue in between fills too: tests/unit/core/test_log.c."""
    text, ports = busgate_config(tmp_path, RULES)
    cfg = tmp_path / "busgate.yaml"
    cfg.write_text(text)
    proc = subprocess.Popen([busgate_bin(), "run", "-c", str(cfg)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        fd = proc.stderr.fileno()
        size = fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
        assert wait_port(ports["listen"]) and wait_port(ports["admin"])
        client = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
        assert client.metadata_v1([]) is not None
        # Each bad connection is closed with a warning line of about 300
        # bytes. Bad connections are made until the pipe is full (the last
        # page may be part full): a fixed number is not enough when busgate
        # refuses some unlogged (more than limits.max_unauthenticated_per_ip
        # still open on a loaded machine; one warning per interval).
        deadline = time.monotonic() + 60
        while pipe_bytes(fd) < size - 8192:
            assert time.monotonic() < deadline, (pipe_bytes(fd), size)
            try:
                with socket.create_connection(("127.0.0.1", ports["listen"]), timeout=2) as s:
                    s.sendall(struct.pack(">i", 1 << 30))
            except OSError:
                time.sleep(0.05)  # busgate no longer accepts (before the fix)
        assert client.metadata_v1([]) is not None
        fresh = KafkaWire(ports["listen"])
        assert 18 in fresh.api_versions()
        fresh.close()
        client.close()
        status, body = http_get(f"http://127.0.0.1:{ports['admin']}/healthz", timeout=10)
        assert status == 200, body
        status, body = http_get(f"http://127.0.0.1:{ports['admin']}/metrics", timeout=10)
        assert metric(body, "busgate_log_lines_dropped_total") is not None, body
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0  # the drain, then at most a short flush of the log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()
