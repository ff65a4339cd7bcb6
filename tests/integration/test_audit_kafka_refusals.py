"""Kafka connections busgate ends before it decides a request still leave
audit events (against the real broker, raw requests): a request of an
authenticated session refused by closing the connection (unsupported
version, unknown API, undecodable body) is one `decision` event with effect
`deny`, `by` `busgate` and the reason, and a connection that never got as
far as a token leaves an `auth_failure` with its reason. A forwarded
request's event carries the size of the broker's response, and a
session_end says how the session ended. A session's decision events follow
the order of its requests, also when busgate answers or refuses one itself
behind a request the broker holds. Every event is checked against the JSON
schema."""
import struct

import pytest

from kafka_env import (KafkaWire, audit_events, busgate_config, create_topics, kbytes, kstr,
                       oidc_token, produce_v3_body, unique, wait_until)
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


@pytest.mark.parametrize("api_key,version,body,api_name,detail,error_name", [
    (0, 2, b"\x00\x01\x00\x00\x13\x88\x00\x00\x00\x00", "Produce", "unsupported api 0 version 2",
     "UNSUPPORTED_VERSION"),
    (3, 99, b"\x00\x00\x00\x00", "Metadata", "unsupported api 3 version 99", "UNSUPPORTED_VERSION"),
    (999, 0, b"", "api-999", "malformed request: ", "INVALID_REQUEST"),
    (3, 1, b"\xff", "Metadata", "malformed request: ", "INVALID_REQUEST"),
])
def test_a_request_refused_by_closing_is_a_deny(gate, api_key, version, body, api_name, detail,
                                                error_name):
    sid = refused_after_login(gate, api_key, version, body)
    (ev,) = events_of(gate, lambda e: e["kind"] == "decision" and e["session_id"] == sid)
    assert ev["decision"]["effect"] == "deny" and ev["decision"]["by"] == "busgate", ev
    # enforced by busgate whatever the policy mode: never "would allow"
    assert (ev["decision"]["would"], ev["decision"]["mode"]) == ("deny", "enforce"), ev
    assert ev["api"]["name"] == api_name, ev
    assert ev["api"].get("version") == version, ev  # the request's, 0 included
    assert ev["detail"].startswith(detail), ev
    # refused, not let through (0): the code busgate records for the refusal
    codes = {"UNSUPPORTED_VERSION": 35, "INVALID_REQUEST": 42}
    assert ev["result"].get("error_code") == codes[error_name], ev
    assert ev["result"].get("error_name") == error_name, ev
    assert "resources" not in ev and "verb" not in ev, ev
    # the refused frame: size field, api key, version, correlation id, ..., body
    assert ev["result"]["bytes_in"] >= 4 + 8 + len(body), ev
    # the session's end still comes after it, and says how it ended
    (end,) = events_of(gate, lambda e: e["kind"] == "session_end" and e["session_id"] == sid)
    assert end["seq"] > ev["seq"]
    assert end["detail"].startswith(detail), end


OFFERED = ["OAUTHBEARER", "PLAIN"]  # busgate's mechanisms, listed as Kafka lists its enabled ones


@pytest.mark.parametrize("name,reason", [
    ("metadata_first", "unauthenticated_request"),
    ("authenticate_first", "no_handshake"),
    ("gssapi", "unsupported_mechanism"),
    ("handshake_v0", "unsupported_version"),
    ("handshake_twice", "unexpected_handshake"),
])
def test_a_connection_refused_before_a_token_is_an_auth_failure(gate, name, reason):
    """Each refusal answers as docs/kafka.md says, then closes: an unoffered
    mechanism gets UNSUPPORTED_SASL_MECHANISM (33) with the offered list; a
    v0 handshake, a second handshake (the first one answered) and a request
    other than SASL get no answer; a SaslAuthenticate without a handshake,
    ILLEGAL_SASL_STATE (34)."""
    w = KafkaWire(gate["listen"])
    w.api_versions()
    if name == "metadata_first":
        w.send(3, 1, struct.pack(">i", -1))
    elif name == "authenticate_first":
        r = w.call(36, 1, kbytes(b"\0u\0p"))
        assert r is not None and struct.unpack(">h", r[:2])[0] == 34, r
    elif name == "handshake_v0":
        assert w.sasl_handshake("PLAIN", version=0) is None
    elif name == "handshake_twice":
        assert w.sasl_handshake("PLAIN") == (0, OFFERED)
        assert w.sasl_handshake("PLAIN") is None
    else:
        assert w.sasl_handshake("GSSAPI") == (33, OFFERED)
    assert w.closed_by_peer(), "busgate did not close the connection"
    w.close()
    (ev,) = events_of(gate, lambda e: e["kind"] == "auth_failure")
    assert ev["auth_failure_reason"] == reason, ev
    assert "principal" not in ev and ev["peer"].startswith("127.0.0.1:"), ev


def test_a_refused_re_authentication_names_no_principal(gate):
    """A re-authentication whose token does not verify is an auth_failure
    like a first login's: without the principal the session had logged in
    as (the event would read as that principal's failed login)."""
    w = KafkaWire(gate["listen"]).login(oidc_token("svc-orders"))
    r = w.sasl_plain("not-a-token")
    assert r is None or r[0] != 0, r
    assert w.closed_by_peer(), "busgate did not close the connection"
    w.close()
    (ev,) = events_of(gate, lambda e: e["kind"] == "auth_failure")
    assert "principal" not in ev and ev["auth_failure_reason"], ev


def test_a_forwarded_request_records_the_response_size(gate):
    """The decision event has the request's version and the response's
    size; the session_end has the bytes each way as the client counted
    them (not swapped) and the requests it sent: ApiVersions,
    SaslHandshake, SaslAuthenticate and the Metadata."""
    w = KafkaWire(gate["listen"]).login(oidc_token("svc-orders"))
    sent = w.sent
    body = w.metadata_v1(["it-aud-size"])
    assert body is not None
    metadata_in = w.sent - sent
    w.close()
    (ev,) = events_of(gate, lambda e: e["kind"] == "decision" and e["api"]["name"] == "Metadata")
    # size field, correlation id, body: the frame the client got
    assert ev["result"]["bytes_out"] == 4 + 4 + len(body), (ev["result"], len(body))
    assert ev["result"]["bytes_in"] == metadata_in, (ev["result"], metadata_in)
    assert ev["api"]["version"] == 1, ev
    (end,) = events_of(gate, lambda e: e["kind"] == "session_end")
    assert end["detail"] == "client closed the connection", end
    assert (end["result"]["bytes_in"], end["result"]["bytes_out"]) == (w.sent, w.received), \
        (end["result"], w.sent, w.received)
    assert end["result"]["records"] == 4, end


# ---- a session's events in request order ----

ORDER_RULES = """    - name: orders-it-ord
      subjects: [group:orders]
      resources: ["kafka:topic:it-ord-*"]
      verbs: [read, write, describe]
      effect: allow
"""
HOLD_MS = 1500  # the broker holds a Fetch of an empty partition this long


def fetch_v4(topic, max_wait_ms):
    return (struct.pack(">iiiib", -1, max_wait_ms, 1, 1 << 20, 0) + struct.pack(">i", 1)
            + kstr(topic) + struct.pack(">i", 1) + struct.pack(">iqi", 0, 0, 1 << 20))


@pytest.fixture
def order_gate(start_busgate, tmp_path):
    text, ports = busgate_config(tmp_path, ORDER_RULES, mechanism="PLAIN")
    start_busgate(text, wait_for_port=ports["listen"])
    held, other = unique("it-ord"), unique("it-ord")
    create_topics([held, other])
    # A partition the broker only just created may be answered at once with
    # an error rather than held: wait until a Fetch of it finds it.
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    assert wait_until(lambda: fetch_error(w.call(1, 4, fetch_v4(held, 10))) == 0, timeout=15)
    w.close()
    return ports, held, other


def fetch_error(body):
    """The first partition's error code in a Fetch v4 response."""
    name_len = struct.unpack(">h", body[8:10])[0]
    return struct.unpack(">h", body[10 + name_len + 8:10 + name_len + 10])[0]


def fetch_records_size(body):
    """The first partition's record set size in a Fetch v4 response."""
    name_len = struct.unpack(">h", body[8:10])[0]
    off = 10 + name_len + 8 + 2 + 8 + 8  # partitions, index, error, high watermark, last stable
    naborted = struct.unpack(">i", body[off:off + 4])[0]
    off += 4 + max(naborted, 0) * 16
    return struct.unpack(">i", body[off:off + 4])[0]


def session_decisions(ports, sid, count):
    """The session's decision events, in seq order: (api, first resource)."""
    evs = events_of(ports, lambda e: e["kind"] == "decision" and e["session_id"] == sid, count)
    evs.sort(key=lambda e: e["seq"])
    return evs, [(e["api"]["name"], (e.get("resources") or [{}])[0].get("name")) for e in evs]


def session_id(ports):
    """The id of the test's own session: the second one (the fixture's
    warm-up had the first)."""
    return events_of(ports, lambda e: e["kind"] == "session_start", 2)[-1]["session_id"]


def test_events_follow_request_order_behind_a_held_fetch(order_gate):
    """A Fetch the broker holds, then requests busgate answers itself (a
    denied Fetch), forwards without a response (acks=0 Produce) and forwards
    (Metadata): the responses come in request order, and so do the events,
    the denied Fetch's latency running to its answer, after the hold."""
    ports, held, other = order_gate
    denied = unique("it-no")
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    c1 = w.send(1, 4, fetch_v4(held, HOLD_MS))
    c2 = w.send(1, 4, fetch_v4(denied, 10))
    w.send(0, 3, produce_v3_body(other, 0))
    c4 = w.send(3, 1, struct.pack(">i", 1) + kstr(held))
    got = [w.recv() for _ in range(3)]
    w.close()
    assert [r[0] for r in got if r] == [c1, c2, c4], got
    # The precondition: the broker held the Fetch. An empty partition, no
    # error and nothing returned: with min_bytes 1 it answers so only when
    # max_wait_ms has passed.
    assert fetch_error(got[0][1]) == 0 and fetch_records_size(got[0][1]) == 0, got[0]
    sid = session_id(ports)
    evs, order = session_decisions(ports, sid, 4)
    assert order == [("Fetch", held), ("Fetch", denied), ("Produce", other),
                     ("Metadata", held)], evs
    fetch, refused = evs[0], evs[1]
    assert fetch["result"]["latency_us"] >= HOLD_MS * 1000 * 9 // 10, fetch  # held, as above
    assert evs[2]["result"]["latency_us"] == 0, evs[2]  # acks=0: no response
    assert refused["result"]["error_name"] == "TOPIC_AUTHORIZATION_FAILED", refused
    # answered after the held Fetch's response, not at once
    assert refused["result"]["latency_us"] >= HOLD_MS * 1000 // 2, (fetch, refused)
    (end,) = events_of(ports, lambda e: e["kind"] == "session_end" and e["session_id"] == sid)
    assert end["seq"] > evs[-1]["seq"], (end, evs)


def test_a_closing_refusal_follows_the_held_fetch(order_gate):
    """A denied acks=0 Produce behind a held Fetch closes the connection
    after the Fetch's response: its event comes after the Fetch's."""
    ports, held, _ = order_gate
    denied = unique("it-no")
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    c1 = w.send(1, 4, fetch_v4(held, HOLD_MS))
    w.send(0, 3, produce_v3_body(denied, 0))
    r = w.recv()
    assert r is not None and r[0] == c1, r
    assert w.closed_by_peer(), "busgate did not close the connection"
    w.close()
    sid = session_id(ports)
    evs, order = session_decisions(ports, sid, 2)
    assert order == [("Fetch", held), ("Produce", denied)], evs
    assert evs[1]["decision"]["effect"] == "deny" and evs[1]["result"]["latency_us"] > 0, evs
    (end,) = events_of(ports, lambda e: e["kind"] == "session_end" and e["session_id"] == sid)
    assert end["seq"] > evs[-1]["seq"], (end, evs)


def test_unanswered_requests_keep_request_order(order_gate):
    """The client leaves while the broker holds its Fetch, a denied Fetch's
    answer queued behind it: neither answer reached it, and both events say
    so ("no response: session closed"), in request order."""
    ports, held, _ = order_gate
    denied = unique("it-no")
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    w.send(1, 4, fetch_v4(held, 5000))
    w.send(1, 4, fetch_v4(denied, 10))
    sid = session_id(ports)
    w.close()
    evs, order = session_decisions(ports, sid, 2)
    assert order == [("Fetch", held), ("Fetch", denied)], evs
    # the denied answer shares the held one's fate: both reached the client
    # (a broker that answered at once) or, as a rule, neither did
    assert evs[1].get("detail") == evs[0].get("detail"), evs
    assert evs[0].get("detail") in ("no response: session closed", None), evs


def test_a_refusal_before_a_decision_follows_the_held_fetch(order_gate):
    """A request busgate cannot take (Metadata v99) behind a held Fetch
    closes the connection at once: the Fetch never got its answer, and its
    event still comes before the refusal's."""
    ports, held, _ = order_gate
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    w.send(1, 4, fetch_v4(held, 5000))
    w.send(3, 99, struct.pack(">i", 0))
    sid = session_id(ports)
    assert w.closed_by_peer(), "busgate did not close the connection"
    w.close()
    evs, order = session_decisions(ports, sid, 2)
    assert order == [("Fetch", held), ("Metadata", None)], evs
    assert evs[0].get("detail") == "no response: session closed", evs
    assert evs[1]["detail"] == "unsupported api 3 version 99", evs
    assert evs[1]["result"]["error_name"] == "UNSUPPORTED_VERSION", evs
    (end,) = events_of(ports, lambda e: e["kind"] == "session_end" and e["session_id"] == sid)
    assert end["seq"] > evs[-1]["seq"], (end, evs)
