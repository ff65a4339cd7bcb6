"""Shared fixtures for busgate's integration suites.

The suites run against a built busgate binary (BG_BUILD_DIR, default
build/plain) and, where they need them, real services started by
tests/integration/run.sh (Apache Kafka, an OIDC provider, RabbitMQ); their
addresses arrive in BG_* environment variables. Everything listens on
127.0.0.1 only and every wait is bounded.
"""
import collections
import contextlib
import http.server
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "single_build: a test whose time goes to waiting out real-time deadlines (an outage,"
        " token lifetimes, heartbeats, handshake deadlines) or to a JVM client, not to"
        " busgate's code: tests/integration/run.sh runs it against the last build it is"
        " given only (the sanitized one in CI).")
    config.addinivalue_line(
        "markers",
        "exclusive: a test that changes the shared brokers' state for everyone (RabbitMQ's"
        " memory alarm) or reads their global state: tests/integration/run.sh runs it alone,"
        " after the builds' suites that run side by side.")


def build_dir():
    return Path(os.environ.get("BG_BUILD_DIR", ROOT / "build" / "plain"))


def busgate_bin():
    return str(build_dir() / "broker" / "busgate")


# Ports handed out recently, oldest first. Only the recent ones are kept
# apart: a run reserves a 65-port block per busgate, and remembering every
# block of a run used up the range below the ephemeral ports (CI: "no free
# port block"). Older ports are handed out again once they are free (their
# tests are long done); port_is_free() still guards against bound ones.
_HANDED_OUT = collections.OrderedDict()
_HANDED_OUT_KEEP = 3000


def _remember(ports):
    for p in ports:
        _HANDED_OUT[p] = True
        _HANDED_OUT.move_to_end(p)
    while len(_HANDED_OUT) > _HANDED_OUT_KEEP:
        _HANDED_OUT.popitem(last=False)


def port_ceiling():
    """The first port of the kernel's ephemeral range (outgoing connections
    take their local ports from it)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def rss_mib(pid):
    """Resident memory of process pid, MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def small_asan_quarantine(monkeypatch):
    """For a busgate started after it: under AddressSanitizer freed memory
    waits in a quarantine (256 MiB by default) before reuse; kept small, RSS
    shows what busgate really holds. No effect on other builds."""
    asan = os.environ.get("ASAN_OPTIONS")
    monkeypatch.setenv("ASAN_OPTIONS", (asan + ":" if asan else "") + "quarantine_size_mb=4")


@contextlib.contextmanager
def unread_flood(port, batch, max_bytes=128 << 20, seconds=20):
    """Sends batch again and again to 127.0.0.1:port on a connection that
    never reads its answers, until the peer stops taking bytes (2 s without
    progress), max_bytes or seconds. Yields (bytes sent, stalled) with the
    connection still open."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    sent, off, start, last = 0, 0, time.monotonic(), time.monotonic()
    try:
        while sent < max_bytes and time.monotonic() - start < seconds and \
                time.monotonic() - last < 2:
            try:
                n = s.send(memoryview(batch)[off:])
                sent, off, last = sent + n, (off + n) % len(batch), time.monotonic()
            except BlockingIOError:
                time.sleep(0.01)
        yield sent, time.monotonic() - last >= 2
    finally:
        s.close()


def port_is_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def port_range(block=False):
    """(lo, hi): where free_port (block: free_port_block) picks ports, hi
    excluded. BG_TEST_PORTS=LO-HI (inclusive) keeps a run inside a range of
    its own (several runs on one machine): single ports from its top
    quarter, blocks from the rest, so that the ports of one busgate do not
    leave its block no room; by default from 20000 to 100 below the
    ephemeral range."""
    env = os.environ.get("BG_TEST_PORTS")
    if env:
        lo, _, hi = env.partition("-")
        lo, hi = int(lo), int(hi) + 1
        split = hi - (hi - lo) // 4
        return (lo, split) if block else (split, hi)
    hi = port_ceiling() - 100
    return (20000 if hi > 22000 else 1024), hi


def _handed_out(tries):
    """The ports a pick must avoid: every one handed out lately, or after
    500 tries (a small BG_TEST_PORTS range used up) only the last 10, those
    of the busgate being configured now; older ones are used again once
    free."""
    if tries < 500 or not os.environ.get("BG_TEST_PORTS"):
        return _HANDED_OUT
    return set(list(_HANDED_OUT)[-10:])


def free_port():
    """A free loopback port below the ephemeral range and not handed out
    recently in this run. A port picked inside the ephemeral range (bind to 0)
    can be taken by some client's outgoing connection before busgate binds
    it: CI saw "Address already in use" that way."""
    lo, hi = port_range()
    for tries in range(1000):
        p = random.randrange(lo, hi)
        if p not in _handed_out(tries) and port_is_free(p):
            _remember([p])
            return p
    raise RuntimeError("no free port below the ephemeral range")


def free_port_block(size):
    """A base B with B..B+size-1 free and not handed out recently (reserved
    as a whole), below the ephemeral range."""
    lo, hi = port_range(block=True)
    hi -= size
    for tries in range(1000):
        base = random.randrange(lo, hi)
        block = range(base, base + size)
        recent = _handed_out(tries)
        if not any(p in recent for p in block) and all(port_is_free(p) for p in block):
            _remember(block)
            return base
    raise RuntimeError("no free port block below the ephemeral range")


def cpu_seconds(pid):
    """A process's user + system CPU time so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # fields from the 3rd on
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_port(port, timeout=20.0, host="127.0.0.1"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def wait_port_closed(port, timeout=10.0, host="127.0.0.1"):
    """True once a connection to port is refused: every listener on it
    closed (busgate's workers each close their own when they drain)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=2).close()
        except ConnectionRefusedError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def serve_json(body, port=0):
    """An HTTP server on 127.0.0.1:port (0: any free port) answering every
    GET with body as JSON, until its shutdown(): a stand-in JWKS endpoint.
    Its port is server_port."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass
    httpd = http.server.HTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def http_get(url, timeout=5.0):
    """Returns (status, body) for a GET; HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(text, name, labels=None):
    """Value of one Prometheus sample in exposition text, or None."""
    want = name if not labels else name + "{" + ",".join(
        f'{k}="{v}"' for k, v in labels.items()) + "}"
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, val = line.rpartition(" ")
        if key == want:
            return float(val)
    return None


def audit_events(path):
    """The events in a JSON-lines audit file. A last line without its newline
    is still being written by busgate's audit thread: it is left out."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f if l.endswith("\n") and l.strip()]


def wait_audit(path, predicate, count=1, timeout=10.0):
    """The audit events matching predicate once at least `count` of them
    are in the file (the audit thread writes asynchronously); [] after
    timeout."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in audit_events(path) if predicate(e)]
        if len(found) >= count or time.monotonic() >= deadline:
            return found if len(found) >= count else []
        time.sleep(0.1)


def keepalive_timers(pid, remote_port):
    """For each established TCP connection process pid holds to 127.0.0.1
    or ::1 port remote_port: True when its keepalive timer runs. The kernel
    shows a socket's timer in /proc/net/tcp{,6} ("tr" 2 with "when" in
    clock ticks: the keepalive timer counts down from tcp_keepalive_time,
    7200 s by default; a delayed-ACK timer, the other kind shown as 2, is
    under a second)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                col = line.split()
                rem_port = int(col[2].rsplit(":", 1)[1], 16)
                if col[3] != "01" or rem_port != remote_port or col[9] not in inodes:
                    continue  # 01: ESTABLISHED
                tr, when = col[5].split(":")
                found.append(tr == "02" and int(when, 16) > 60 * os.sysconf("SC_CLK_TCK"))
    return found


def run_cli(*args, input=None, timeout=60, env=None):
    """busgate with args; env, when given, is the whole environment."""
    return subprocess.run([busgate_bin(), *args], capture_output=True, text=True,
                          input=input, timeout=timeout, env=env)


class Busgate:
    """A running `busgate run -c FILE` process with its log lines."""

    def __init__(self, config_path, log_path, preexec_fn=None):
        self.config_path = Path(config_path)
        self.log_path = Path(log_path)
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen([busgate_bin(), "run", "-c", str(config_path)],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=preexec_fn)

    def log_lines(self):
        # busgate writes to the file descriptor directly; nothing to flush here.
        # A last line without its newline may be half written: left for later.
        return [json.loads(l) for l in self.log_path.read_text().split("\n")[:-1] if l.strip()]

    def wait_log(self, predicate, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log_lines():
                if predicate(line):
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        return None

    def warns(self, needle, wait=True):
        """The warn lines whose message holds needle. busgate's log thread
        writes a line after the session queued it (the client may have had
        its close, and the audit its session_end, first): with wait, a
        bounded poll until one such line is there."""
        def match(l):
            return l.get("level") == "warn" and needle in l.get("msg", "")
        if wait:
            self.wait_log(match, timeout=10)
        return [l for l in self.log_lines() if match(l)]

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=20.0):
        if self.log.closed:
            return self.proc.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def start_busgate(tmp_path):
    started = []

    def start(config_text, wait_for_port=None, name="busgate.yaml", preexec_fn=None):
        cfg = tmp_path / name
        cfg.write_text(config_text)
        bg = Busgate(cfg, tmp_path / (name + ".log"), preexec_fn=preexec_fn)
        started.append(bg)
        if wait_for_port is not None:
            assert wait_port(wait_for_port), "busgate did not listen:\n" + \
                bg.log_path.read_text()
        return bg

    yield start
    for bg in started:
        rc = bg.stop()
        # A sanitizer report makes busgate exit non-zero: fail the test on it.
        assert rc == 0, f"busgate exited {rc}:\n" + bg.log_path.read_text()[-4000:]
