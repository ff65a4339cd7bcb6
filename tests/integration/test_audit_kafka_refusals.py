"""Kafka connections busgate ends before it decides a request still leave
audit events (against the real broker, raw requests): a request of an
authenticated session refused by closing the connection (unsupported
version, unknown API, undecodable body) is one `decision` event with effect
`deny`, `by` `busgate` and the reason, and a connection that never got as
far as a token leaves an `auth_failure` with its reason. A forwarded
request's event carries the size of the broker's response, and a
session_end says how the session ended. Every event is checked against the
JSON schema."""
import struct

import pytest

from kafka_env import KafkaWire, audit_events, busgate_config, kbytes, kstr, oidc_token, wait_until
from test_audit_events import check

RULES = """    - name: orders-everything
      subjects: [group:orders]
      resources: ["kafka:topic:*"]
      verbs: [describe]
      effect: allow
"""


@pytest.fixture
def gate(start_busgate, tmp_path):
    text, ports = busgate_config(tmp_path, RULES, mechanism="PLAIN")
    start_busgate(text, wait_for_port=ports["listen"])
    return ports


def events_of(ports, predicate, count=1):
    assert wait_until(lambda: len([e for e in audit_events(ports["audit"]) if predicate(e)]) >= count,
                      timeout=15), audit_events(ports["audit"])
    found = [e for e in audit_events(ports["audit"]) if predicate(e)]
    for e in found:
        assert check(e) == [], (e, check(e))
    return found


def refused_after_login(ports, api_key, version, body):
    """Logs in, sends one raw request, expects the connection closed: the
    session's id (from its session_start event)."""
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    w.send(api_key, version, body)
    assert w.closed_by_peer(), "busgate did not close the connection"
    w.close()
    starts = events_of(ports, lambda e: e["kind"] == "session_start")
    return starts[-1]["session_id"]


@pytest.mark.parametrize("api_key,version,body,api_name,detail", [
    (0, 2, b"\x00\x01\x00\x00\x13\x88\x00\x00\x00\x00", "Produce", "unsupported api 0 version 2"),
    (999, 0, b"", "api-999", "malformed request: "),
    (3, 1, b"\xff", "Metadata", "malformed request: "),
])
def test_a_request_refused_by_closing_is_a_deny(gate, api_key, version, body, api_name, detail):
    sid = refused_after_login(gate, api_key, version, body)
    (ev,) = events_of(gate, lambda e: e["kind"] == "decision" and e["session_id"] == sid)
    assert ev["decision"]["effect"] == "deny" and ev["decision"]["by"] == "busgate", ev
    assert ev["api"]["name"] == api_name, ev
    assert ev["detail"].startswith(detail), ev
    assert "resources" not in ev and "verb" not in ev, ev
    # the refused frame: size field, api key, version, correlation id, ..., body
    assert ev["result"]["bytes_in"] >= 4 + 8 + len(body), ev
    # the session's end still comes after it, and says how it ended
    (end,) = events_of(gate, lambda e: e["kind"] == "session_end" and e["session_id"] == sid)
    assert end["seq"] > ev["seq"]
    assert end["detail"].startswith(detail), end


@pytest.mark.parametrize("name,reason", [
    ("metadata_first", "unauthenticated_request"),
    ("authenticate_first", "no_handshake"),
    ("gssapi", "unsupported_mechanism"),
    ("handshake_v0", "unsupported_version"),
    ("handshake_twice", "unexpected_handshake"),
])
def test_a_connection_refused_before_a_token_is_an_auth_failure(gate, name, reason):
    w = KafkaWire(gate["listen"])
    w.api_versions()
    if name == "metadata_first":
        w.send(3, 1, struct.pack(">i", -1))
    elif name == "authenticate_first":
        w.send(36, 1, kbytes(b"\0u\0p"))
    elif name == "handshake_v0":
        w.send(17, 0, kstr("PLAIN"))
    elif name == "handshake_twice":
        w.send(17, 1, kstr("PLAIN"))
        w.send(17, 1, kstr("PLAIN"))
    else:
        w.send(17, 1, kstr("GSSAPI"))
    w.sock.settimeout(10)
    while w.recv() is not None:  # an error answer may come first
        pass
    w.close()
    (ev,) = events_of(gate, lambda e: e["kind"] == "auth_failure")
    assert ev["auth_failure_reason"] == reason, ev
    assert "principal" not in ev and ev["peer"].startswith("127.0.0.1:"), ev


def test_a_forwarded_request_records_the_response_size(gate):
    w = KafkaWire(gate["listen"]).login(oidc_token("svc-orders"))
    body = w.metadata_v1(["it-aud-size"])
    assert body is not None
    w.close()
    (ev,) = events_of(gate, lambda e: e["kind"] == "decision" and e["api"]["name"] == "Metadata")
    # size field, correlation id, body: the frame the client got
    assert ev["result"]["bytes_out"] == 4 + 4 + len(body), (ev["result"], len(body))
    assert ev["result"]["bytes_in"] > 0
    (end,) = events_of(gate, lambda e: e["kind"] == "session_end")
    assert end["detail"] == "client closed the connection", end
