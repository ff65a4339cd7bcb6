"""A scripted nameserver and a private /etc/resolv.conf for busgate, for
the tests of upstream name lookups (busgate resolves on its worker loops
with evdns, which reads /etc/resolv.conf only).

scripted_dns() starts a ScriptedDns on a 127.x.y.z address, port 53, and
writes a resolv.conf naming it; busgate started with the returned object's
preexec as its preexec_fn runs in its own mount namespace with that file
bound over /etc/resolv.conf. That needs root (CAP_SYS_ADMIN and a port
below 1024): elsewhere scripted_dns() skips the test. The host's
/etc/resolv.conf is never touched (the namespace is private)."""
import ctypes
import os
import random
import socket
import struct
import subprocess
import threading

import pytest


class ScriptedDns:
    """A UDP nameserver on addr:53. An A query for a name in `records` is
    answered with its address (other types: no answer), anything else with
    NXDOMAIN. A query for a name in `held` is answered only after
    release(). seen: every name asked; asked[name] is set on its first
    query."""

    def __init__(self, records, held=()):
        self.records, self.held = dict(records), set(held)
        self.seen, self.asked = [], {}
        self.released = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(20):
            self.addr = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
            try:
                self.sock.bind((self.addr, 53))
                break
            except OSError as e:
                err = e
        else:
            raise err
        threading.Thread(target=self._serve, daemon=True).start()

    def event(self, name):
        return self.asked.setdefault(name, threading.Event())

    def release(self):
        self.released.set()

    def close(self):
        self.released.set()
        self.sock.close()

    def _serve(self):
        while True:
            try:
                q, peer = self.sock.recvfrom(1500)
            except OSError:
                return
            if len(q) < 12:
                continue
            labels, i = [], 12
            while i < len(q) and q[i]:
                labels.append(q[i + 1:i + 1 + q[i]].decode(errors="replace"))
                i += 1 + q[i]
            qtype, = struct.unpack(">H", q[i + 1:i + 3])
            name = ".".join(labels).lower()
            self.seen.append(name)
            self.event(name).set()
            question = q[12:i + 5]
            answer = self._answer(q[:2], question, name, qtype)
            if name in self.held:
                threading.Thread(target=self._later, args=(answer, peer), daemon=True).start()
                continue
            try:
                self.sock.sendto(answer, peer)
            except OSError:  # closed by the test between the query and the answer
                return

    def _later(self, answer, peer):
        self.released.wait()
        try:
            self.sock.sendto(answer, peer)
        except OSError:
            pass

    def _answer(self, qid, question, name, qtype):
        if name not in self.records:
            return qid + struct.pack(">HHHHH", 0x8183, 1, 0, 0, 0) + question  # NXDOMAIN
        rr = b""
        if qtype == 1:
            rr = struct.pack(">HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(self.records[name])
        return qid + struct.pack(">HHHHH", 0x8180, 1, 1 if rr else 0, 0, 0) + question + rr


def _private_resolv_conf(path):
    """A preexec_fn: the child gets its own mount namespace in which path is
    bound over /etc/resolv.conf."""
    libc = ctypes.CDLL(None, use_errno=True)
    CLONE_NEWNS, MS_REC, MS_PRIVATE, MS_BIND = 0x20000, 0x4000, 0x40000, 0x1000

    def pre():
        if libc.unshare(CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare")
        if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
            raise OSError(ctypes.get_errno(), "mount private")
        if libc.mount(str(path).encode(), b"/etc/resolv.conf", None, MS_BIND, None) != 0:
            raise OSError(ctypes.get_errno(), "mount bind")
    return pre


def scripted_dns(tmp_path, records, held=()):
    """A generator for a fixture: yields a started ScriptedDns (records and
    held as for ScriptedDns) whose .preexec runs a child with the private
    resolv.conf; closes it afterwards. Skips where that cannot be set up."""
    if os.geteuid() != 0:
        pytest.skip("needs root: a private /etc/resolv.conf and a nameserver on port 53")
    try:
        d = ScriptedDns(records, held=held)
    except OSError as e:
        pytest.skip(f"cannot run a nameserver on port 53: {e}")
    conf = tmp_path / "resolv.conf"
    # One long try: the C library's getaddrinfo (a blocking lookup) would
    # otherwise give up after 5 s and hide a stall.
    conf.write_text(f"nameserver {d.addr}\noptions timeout:30 attempts:1\n")
    d.preexec = _private_resolv_conf(conf)
    try:
        probe = subprocess.run(["cat", "/etc/resolv.conf"], capture_output=True, text=True,
                               preexec_fn=d.preexec)
    except (OSError, subprocess.SubprocessError):
        probe = None  # no mount namespace here (a container without CAP_SYS_ADMIN)
    if probe is None or d.addr not in probe.stdout:
        d.close()
        pytest.skip("cannot bind a private /etc/resolv.conf")
    yield d
    d.close()
