"""Where RabbitMQ answers before it looks at any permission, the client gets
RabbitMQ's answer through busgate too, not busgate's 403: each test sends
the same raw frames straight to RabbitMQ and through busgate and compares
the closes. RabbitMQ's own close of a channel whose refusal busgate holds
reaches the client in place of that refusal (a failed publish is not
hidden); "" on a channel that declared no queue is 404; a passive declare
of "" is 404; immediate=true is connection.close 540; an exchange argument
that is not a longstr is RabbitMQ's 406."""
import struct
import time

import pytest

from amqp_env import (RABBIT_PORT, UPSTREAM_PASSWORD, UPSTREAM_USER, api_name, direct, rule,
                      start_gateway, unique, wait_audit)
from amqp_wire import close_args, handshake, header, method, open_channel, publish, ss, table

ALL = ["read", "write", "create", "delete", "describe"]


def policy():
    return (rule("first-all", ["group:apps"], ["amqp:queue:it.*", "amqp:exchange:it.*"], ALL)
            + rule("default-exchange", ["group:apps"], ["amqp:exchange:amq.default"], ["write"])
            + rule("no-secret", ["*"], ["amqp:exchange:it.secret*", "amqp:queue:it.secret*"],
                   ALL, effect="deny"))


@pytest.fixture
def gw(start_busgate, tmp_path):
    """(busgate, ports, issuer) with the policy above."""
    return start_gateway(start_busgate, tmp_path, policy())


def closes(r, timeout=1.5):
    """The channel.close / connection.close frames r gets within timeout:
    (channel, (class, method), (code, text, class, method))."""
    out = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return out
        try:
            ch, ids, args = r.method(left)
        except (TimeoutError, OSError, EOFError):
            return out
        if ids in ((20, 40), (10, 50)):
            out.append((ch, ids, close_args(args)))


def both(ports, issuer, frames):
    """The closes for frames (bytes, after channel 1 is open) straight from
    RabbitMQ and through busgate: {"direct": [...], "busgate": [...]}."""
    res = {}
    for who in ("direct", "busgate"):
        if who == "direct":
            r, _ = handshake(RABBIT_PORT, UPSTREAM_PASSWORD, user=UPSTREAM_USER)
        else:
            r, _ = handshake(ports["listen"], issuer.mint("first", ["apps"]))
        try:
            open_channel(r, 1)
            r.send(frames)
            res[who] = closes(r)
        finally:
            r.close()
    return res


def busgate_refusals(path, api, code):
    return wait_audit(path, lambda e: e["kind"] == "decision" and api_name(e) == api
                      and e["decision"]["effect"] == "deny"
                      and e["result"].get("error_code") == code)


def qbind(ch, q, x):
    return method(ch, 50, 20, struct.pack(">H", 0) + ss(q) + ss(x) + ss("k") + b"\x00"
                  + table([]))


def test_rabbitmqs_close_replaces_a_held_refusal(gw):
    """Pipelined in one write: a publish to an exchange the policy allows but
    that does not exist, then a queue.bind busgate refuses. RabbitMQ answers
    the publish with 404 and never reads the bind: the client gets that 404
    (RabbitMQ's code, text and class/method), not busgate's 403, which stays
    audited. Both legs then agree the channel is closed: after the client's
    one close-ok the channel number opens again and works."""
    bg, ports, issuer = gw
    missing, q = unique("it.first-missing"), unique("it.first-q")
    admin = direct()
    admin.channel().queue_declare(q, auto_delete=False)
    frames = publish(1, missing, "k") + header(1, 0) + qbind(1, q, "it.secret-x")
    try:
        res = both(ports, issuer, frames)
        assert res["direct"] == [(1, (20, 40), (404, f"NOT_FOUND - no exchange '{missing}' in "
                                                     "vhost '/'", 60, 40))], res
        assert res["busgate"] == res["direct"], res
        # The bind's refusal was busgate's decision: still in the audit.
        assert busgate_refusals(ports["audit"], "queue.bind", 403)
        r, _ = handshake(ports["listen"], issuer.mint("first", ["apps"]))
        try:
            open_channel(r, 1)
            r.send(frames)
            assert r.expect(1, (20, 40))[:2] == struct.pack(">H", 404)
            r.send(method(1, 20, 41))  # close-ok: answers the only close the client got
            open_channel(r, 1)  # free again on both legs
            r.send(method(1, 50, 10, struct.pack(">H", 0) + ss(q) + b"\x01" + table([])))
            r.expect(1, (50, 11))  # a stray close-ok upstream would have cost the connection
        finally:
            r.close()
    finally:
        admin.channel().queue_delete(q)
        admin.close()


@pytest.mark.parametrize("name,frame,ids", [
    ("basic.get", method(1, 60, 70, struct.pack(">H", 0) + ss("") + b"\x01"), (60, 70)),
    ("basic.consume", method(1, 60, 20, struct.pack(">H", 0) + ss("") + ss("t") + b"\x00"
                             + table([])), (60, 20)),
    ("queue.bind", qbind(1, "", "amq.direct"), (50, 20)),
    ("queue.unbind", method(1, 50, 50, struct.pack(">H", 0) + ss("") + ss("amq.direct")
                            + ss("k") + table([])), (50, 50)),
    ("queue.purge", method(1, 50, 30, struct.pack(">H", 0) + ss("") + b"\x00"), (50, 30)),
    ("queue.delete", method(1, 50, 40, struct.pack(">H", 0) + ss("") + b"\x00"), (50, 40)),
])
def test_empty_queue_name_without_a_declare(gw, name, frame, ids):
    """"" names the channel's last declared queue; on a channel that
    declared none RabbitMQ answers 404 "no previously declared queue" before
    any permission, and so does busgate, audited as its own refusal (404)."""
    bg, ports, issuer = gw
    res = both(ports, issuer, frame)
    assert res["direct"] == [(1, (20, 40), (404, "NOT_FOUND - no previously declared queue")
                              + ids)], res
    assert res["busgate"] == res["direct"], res
    ev = busgate_refusals(ports["audit"], name, 404)
    assert ev and ev[0]["decision"]["by"] == "busgate", ev
    assert ev[0]["result"]["error_name"] == "NOT_FOUND"


@pytest.mark.parametrize("declare_first", [False, True])
def test_passive_declare_of_empty_name(gw, declare_first):
    """A passive queue.declare of "" is taken literally by RabbitMQ (not the
    last declared queue, even right after a declare): 404 no queue ''."""
    bg, ports, issuer = gw
    q = unique("it.first-pq")
    frames = method(1, 50, 10, struct.pack(">H", 0) + ss("") + b"\x01" + table([]))
    if declare_first:  # auto-delete, then the passive declare of ""
        frames = method(1, 50, 10, struct.pack(">H", 0) + ss(q) + b"\x08" + table([])) + frames
    res = both(ports, issuer, frames)
    assert res["direct"] == [(1, (20, 40), (404, "NOT_FOUND - no queue '' in vhost '/'", 50,
                                            10))], res
    assert res["busgate"] == res["direct"], res
    assert busgate_refusals(ports["audit"], "queue.declare", 404)


@pytest.mark.parametrize("exchange", ["it.secret-x", "it.first-allowed"])
def test_immediate_publish(gw, exchange):
    """immediate=true: RabbitMQ closes the connection with 540 before it
    looks at the exchange or any permission; busgate too, for an exchange
    the policy refuses (it.secret-x) as for one it allows."""
    bg, ports, issuer = gw
    frames = (method(1, 60, 40, struct.pack(">H", 0) + ss(exchange) + ss("k") + b"\x02")
              + header(1, 0))
    res = both(ports, issuer, frames)
    assert res["direct"] == [(0, (10, 50), (540, "NOT_IMPLEMENTED - immediate=true", 60,
                                            40))], res
    assert res["busgate"] == res["direct"], res


@pytest.mark.parametrize("arg", ["x-dead-letter-exchange", "alternate-exchange"])
def test_exchange_argument_of_another_type(gw, arg):
    """An exchange argument given as a byte array, naming a refused exchange:
    RabbitMQ refuses the type (406) whatever the exchange and creates
    nothing, once create on the declared queue or exchange is allowed.
    busgate gives the same answer itself (audited as its own refusal),
    rather than forwarding an argument it cannot decide; before the fix it
    answered 403 for the exchange the bytes spelled."""
    bg, ports, issuer = gw
    value = struct.pack(">I", 9) + b"it.secret"
    if arg == "alternate-exchange":
        x = unique("it.first-x")
        frames = method(1, 40, 10, struct.pack(">H", 0) + ss(x) + ss("direct") + b"\x00"
                        + table([(arg, "x", value)]))
        what, ids = f"exchange '{x}'", (40, 10)
    else:
        x = unique("it.first-q")
        frames = method(1, 50, 10, struct.pack(">H", 0) + ss(x) + b"\x08"
                        + table([(arg, "x", value)]))
        what, ids = f"queue '{x}'", (50, 10)
    res = both(ports, issuer, frames)
    text = f"PRECONDITION_FAILED - invalid type 'binary' for arg '{arg}' in {what} in vhost '/'"
    assert res["direct"] == [(1, (20, 40), (406, text) + ids)], res
    assert res["busgate"] == res["direct"], res
    api = "exchange.declare" if arg == "alternate-exchange" else "queue.declare"
    assert busgate_refusals(ports["audit"], api, 406)


def test_argument_of_another_type_on_a_refused_declare(gw):
    """RabbitMQ checks create on the declared queue before the argument's
    type: a queue busgate refuses gets the 403, whatever its arguments."""
    bg, ports, issuer = gw
    r, _ = handshake(ports["listen"], issuer.mint("first", ["apps"]))
    try:
        open_channel(r, 1)
        r.send(method(1, 50, 10, struct.pack(">H", 0) + ss(unique("it.secret-q")) + b"\x08"
                      + table([("x-dead-letter-exchange", "x", struct.pack(">I", 4) + b"it.x")])))
        got = closes(r)
    finally:
        r.close()
    assert [(c, ids, args[0]) for c, ids, args in got] == [(1, (20, 40), 403)], got
