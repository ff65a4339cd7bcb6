"""busgate's AMQP 0-9-1 adapter in front of a real RabbitMQ, driven by pika:
publish/consume, denials as RabbitMQ's own (channel.close 403 with the
rule's name, the connection's other channels unharmed), resource methods
allowed and denied, confirms, basic.return, large bodies, tokens."""
import pika
import pika.exceptions as pex
import pytest

from amqp_env import (Issuer, api_name, busgate_config, connect, direct, get_one, rule,
                      start_gateway, unique, wait_audit)
from conftest import http_get, metric

ALL = ["read", "write", "create", "delete", "describe"]


def policy():
    return (
        rule("it-all", ["group:apps"], ["amqp:queue:it.*", "amqp:exchange:it.*"], ALL)
        + rule("default-exchange", ["group:apps"], ["amqp:exchange:amq.default"], ["write"])
        + rule("server-named", ["group:apps"], ["amqp:queue:amq.gen-*"], ["create", "read"])
        + rule("no-secret", ["*"], ["amqp:queue:it.secret*", "amqp:exchange:it.secret*"], ALL,
               effect="deny")
        + rule("declare-only", ["group:decl"], ["amqp:queue:dl.*", "amqp:exchange:dl.*"],
               ["create"])
        + rule("dl-sink", ["group:decl"], ["amqp:exchange:dl.sink"], ["write"])
        + rule("peek-own", ["group:peek"], ["amqp:queue:pk.*"], ["create", "read"])
        + rule("peek-look", ["group:peek"], ["amqp:queue:look.*"], ["describe"]))


@pytest.fixture
def gw(start_busgate, tmp_path):
    """(busgate, ports, issuer) with the policy above."""
    return start_gateway(start_busgate, tmp_path, policy())


def closed_by_broker(fn):
    """Runs fn, which must fail with a channel close from the broker; returns it."""
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        fn()
    return ei.value


def test_publish_and_consume(gw):
    bg, ports, issuer = gw
    q = unique("it.q")
    conn = connect(ports["listen"], issuer.mint("alice", ["apps"]))
    ch = conn.channel()
    ch.queue_declare(q, auto_delete=True)
    for i in range(5):
        ch.basic_publish("", q, f"m{i}".encode(), pika.BasicProperties(headers={"n": i}))
    got = []
    for method, props, body in ch.consume(q, auto_ack=False, inactivity_timeout=5):
        assert method is not None, f"only {len(got)} messages arrived"
        got.append((body, props.headers["n"]))
        ch.basic_ack(method.delivery_tag)
        if len(got) == 5:
            break
    ch.cancel()
    assert got == [(f"m{i}".encode(), i) for i in range(5)]
    conn.close()
    ev = wait_audit(ports["audit"], lambda e: api_name(e) == "basic.publish")
    assert ev and ev[0]["decision"]["effect"] == "allow"
    assert ev[0]["principal"]["sub"] == "alice"
    assert wait_audit(ports["audit"], lambda e: e.get("kind") == "session_end")


def test_publish_to_denied_exchange(gw):
    bg, ports, issuer = gw
    x, q = unique("it.secret-x"), unique("it.probe")
    setup = direct()
    sch = setup.channel()
    sch.exchange_declare(x, "fanout", auto_delete=False)
    sch.queue_declare(q)
    sch.queue_bind(q, x)
    try:
        conn = connect(ports["listen"], issuer.mint("alice", ["apps"]))
        ch1, ch2 = conn.channel(), conn.channel()
        ch1.basic_publish(x, "", b"must not arrive")
        err = closed_by_broker(lambda: ch1.queue_declare(unique("it.q"), auto_delete=True))
        assert err.reply_code == 403
        assert err.reply_text.startswith("ACCESS_REFUSED - write access to exchange '" + x)
        assert "for user 'svc'" in err.reply_text and "rule 'no-secret'" in err.reply_text
        assert len(err.reply_text.encode()) <= 255
        assert ch1.is_closed and conn.is_open
        # The connection's other channel still works, and so does a new one.
        q2 = unique("it.q")
        ch2.queue_declare(q2, auto_delete=True)
        ch2.basic_publish("", q2, b"ok")
        assert get_one(conn, conn.channel(), q2) == b"ok"
        conn.close()
        # Nothing of the refused publish reached the broker.
        assert sch.queue_declare(q, passive=True).method.message_count == 0
    finally:
        sch.queue_delete(q)
        sch.exchange_delete(x)
        setup.close()
    ev = wait_audit(ports["audit"], lambda e: api_name(e) == "basic.publish" and
                    e["decision"]["effect"] == "deny")
    assert ev and ev[0]["decision"]["rule"] == "no-secret"
    assert ev[0]["resources"][0]["name"] == x


def test_close_crossing_a_refusal_or_broker_close(gw):
    """A client that closes its channel right after a publish crosses the
    channel.close that refuses it (busgate's 403, or RabbitMQ's 404 for a
    missing exchange). Every close is answered on each leg, the connection
    stays open and the channel number can be used again."""
    bg, ports, issuer = gw
    conn = connect(ports["listen"], issuer.mint("alice", ["apps"]))
    secret, missing = unique("it.secret-x"), unique("it.missing-x")
    for exchange in (secret, missing):
        for _ in range(3):
            ch = conn.channel()
            number = ch.channel_number
            ch.basic_publish(exchange, "", b"x")
            try:
                ch.close()  # written before the refusal is read: the closes cross
            except (pex.ChannelClosedByBroker, pex.ChannelWrongStateError):
                pass
            assert conn.is_open, exchange
            again = conn.channel()
            assert again.channel_number == number
            q = unique("it.q")
            again.queue_declare(q, auto_delete=True)
            again.basic_publish("", q, b"ok")
            assert get_one(conn, again, q) == b"ok"
            again.close()
    assert conn.is_open
    conn.close()

    # Each round's publish was decided as expected: busgate refused the one
    # to the secret exchange itself (rule no-secret), and forwarded the one to
    # the missing exchange, which RabbitMQ refused (its 404 and busgate's 403
    # look alike to the client).
    def publishes(exchange, effect):
        return wait_audit(ports["audit"], lambda e: api_name(e) == "basic.publish"
                          and e["decision"]["effect"] == effect
                          and e["resources"][0]["name"] == exchange, count=3)
    refused = publishes(secret, "deny")
    assert len(refused) == 3 and all(e["decision"]["rule"] == "no-secret" for e in refused), \
        refused
    forwarded = publishes(missing, "allow")
    assert len(forwarded) == 3 and all(e["decision"]["rule"] == "it-all" for e in forwarded), \
        forwarded


def test_consume_from_denied_queue(gw):
    bg, ports, issuer = gw
    q = unique("it.secret-q")
    setup = direct()
    setup.channel().queue_declare(q)
    try:
        conn = connect(ports["listen"], issuer.mint("alice", ["apps"]))
        ch = conn.channel()
        err = closed_by_broker(lambda: ch.basic_consume(q, lambda *a: None))
        assert err.reply_code == 403 and f"read access to queue '{q}'" in err.reply_text
        ch = conn.channel()
        err = closed_by_broker(lambda: ch.basic_get(q))
        assert err.reply_code == 403
        # A principal outside group apps is refused by the default policy.
        bob = connect(ports["listen"], issuer.mint("bob", ["others"]))
        err = closed_by_broker(lambda: bob.channel().basic_get(unique("it.q")))
        assert "busgate default policy" in err.reply_text
        bob.close()
        conn.close()
    finally:
        setup.channel().queue_delete(q)
        setup.close()


MASKS = ("  masks:\n    - name: pii\n"
         "      resources: [\"amqp:queue:it.pii*\", \"amqp:exchange:it.pii*\"]\n"
         "      fields: [customer.email]\n      except: [group:fraud]\n")


def test_masked_queue_and_exchange_refused(start_busgate, tmp_path):
    """This build has no masking engine: bodies a mask covers never cross
    busgate. Consume and get on a masked queue and publish to a masked
    exchange are refused with 403 naming the mask; declaring them is not
    (binding to the masked exchange is refused too:
    test_queue_bind_from_masked_exchange_refused); the mask's except group
    is not affected."""
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(tmp_path, issuer, policy() + MASKS)
    start_busgate(text, wait_for_port=ports["listen"])
    q, x = unique("it.pii-q"), unique("it.pii-x")
    conn = connect(ports["listen"], issuer.mint("alice", ["apps"]))
    ch = conn.channel()
    ch.exchange_declare(x, "fanout", auto_delete=True)
    ch.queue_declare(q, auto_delete=True)
    err = closed_by_broker(lambda: ch.basic_get(q))
    assert err.reply_code == 403 and f"read access to queue '{q}'" in err.reply_text
    assert "busgate mask 'pii'" in err.reply_text, err.reply_text
    ch = conn.channel()
    ch.basic_publish(x, "", b'{"customer":{"email":"a@example.com"}}')
    err = closed_by_broker(lambda: ch.queue_declare(unique("it.q"), auto_delete=True))
    assert err.reply_code == 403 and f"write access to exchange '{x}'" in err.reply_text
    assert conn.is_open
    # The except group binds, publishes and reads the clear body.
    fraud = connect(ports["listen"], issuer.mint("carol", ["apps", "fraud"]))
    fch = fraud.channel()
    fch.queue_bind(q, x)
    fch.basic_publish(x, "", b'{"customer":{"email":"a@example.com"}}')
    assert get_one(fraud, fch, q) == b'{"customer":{"email":"a@example.com"}}'
    # alice's refused publish never reached the queue: only carol's was there.
    assert fch.queue_declare(q, passive=True).method.message_count == 0
    fraud.close()
    conn.close()
    ev = wait_audit(ports["audit"], lambda e: api_name(e) == "basic.get" and
                    e["decision"]["effect"] == "deny")
    assert ev and ev[0]["detail"].startswith("a mask applies"), ev


def test_queue_bind_from_masked_exchange_refused(start_busgate, tmp_path):
    """A queue bound to a masked exchange gets its bodies, and a queue the
    mask does not cover is consumed unmasked: queue.bind is refused on the
    exchange's read as a consume of a masked queue is (403 naming the mask,
    audited like it), and no binding reaches RabbitMQ. The except group
    still binds."""
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(tmp_path, issuer, policy() + MASKS)
    start_busgate(text, wait_for_port=ports["listen"])
    x, tap = unique("it.pii-x"), unique("it.tap-q")
    setup = direct()
    sch = setup.channel()
    sch.exchange_declare(x, "fanout")
    sch.queue_declare(tap)
    try:
        conn = connect(ports["listen"], issuer.mint("alice", ["apps"]))
        ch = conn.channel()
        err = closed_by_broker(lambda: ch.queue_bind(tap, x))
        assert err.reply_code == 403 and f"read access to exchange '{x}'" in err.reply_text
        assert "busgate mask 'pii'" in err.reply_text, err.reply_text
        assert conn.is_open
        conn.close()
        # Not bound: a message published to x does not reach tap.
        sch.confirm_delivery()
        sch.basic_publish(x, "", b'{"customer":{"email":"a@example.com"}}')
        assert sch.queue_declare(tap, passive=True).method.message_count == 0
        fraud = connect(ports["listen"], issuer.mint("carol", ["apps", "fraud"]))
        fraud.channel().queue_bind(tap, x)
        fraud.close()
        sch.basic_publish(x, "", b'{"customer":{"email":"a@example.com"}}')
        assert sch.queue_declare(tap, passive=True).method.message_count == 1
    finally:
        sch.queue_delete(tap)
        sch.exchange_delete(x)
        setup.close()
    ev = wait_audit(ports["audit"], lambda e: api_name(e) == "queue.bind" and
                    e["decision"]["effect"] == "deny")
    assert ev and ev[0]["detail"].startswith("a mask applies"), ev
    assert ev[0]["resources"][0]["name"] == x and ev[0]["verb"] == "read", ev
    assert ev[0]["decision"]["rule"] == "it-all" and ev[0]["decision"]["by"] == "busgate", ev
    assert ev[0]["result"]["error_code"] == 403, ev


def test_names_with_control_characters_refused(gw):
    """RabbitMQ strips CR and LF from the names of deletes, declares and
    binds: "it.sec\\nret-q" would escape the deny on it.secret* and delete
    it.secret-q. busgate refuses such names whatever the rules say."""
    bg, ports, issuer = gw
    q = unique("it.secret-q")
    setup = direct()
    sch = setup.channel()
    sch.queue_declare(q)
    try:
        conn = connect(ports["listen"], issuer.mint("alice", ["apps"]))
        ch = conn.channel()
        sneaky = q[:6] + "\n" + q[6:]
        err = closed_by_broker(lambda: ch.queue_delete(sneaky))
        assert err.reply_code == 403, err
        assert "names with control characters are refused" in err.reply_text, err.reply_text
        assert conn.is_open
        conn.close()
        assert sch.queue_declare(q, passive=True).method.queue == q  # still there
    finally:
        sch.queue_delete(q)
        setup.close()


def test_declare_bind_purge_delete(gw):
    bg, ports, issuer = gw
    conn = connect(ports["listen"], issuer.mint("alice", ["apps"]))
    ch = conn.channel()
    x, q = unique("it.x"), unique("it.q")
    # Allowed: the whole life of an exchange and a queue.
    ch.exchange_declare(x, "direct")
    ch.exchange_declare(x, "direct", passive=True)
    ch.queue_declare(q)
    ch.queue_bind(q, x, "k")
    ch.confirm_delivery()  # the publish returns once RabbitMQ has routed it
    ch.basic_publish(x, "k", b"routed")
    assert ch.queue_purge(q).method.message_count == 1
    ch.queue_unbind(q, x, "k")
    x2 = unique("it.x")
    ch.exchange_declare(x2, "fanout")
    ch.exchange_bind(x2, x, "k")
    ch.exchange_unbind(x2, x, "k")
    ch.exchange_delete(x2)
    # Server-named queue: decided as amq.gen-* (create), then read by its name.
    gen = ch.queue_declare("", exclusive=True).method.queue
    assert gen.startswith("amq.gen-")
    ch.basic_get("")  # "" = the channel's last declared queue (amq.gen-...)
    # Denied, each on a fresh channel of the same connection.
    secret_x = unique("it.secret-x")
    cases = [
        (lambda c: c.queue_declare(unique("other.q")), "create access to queue 'other.q"),
        (lambda c: c.exchange_declare(secret_x, "direct"), "create access to exchange 'it.secret"),
        (lambda c: c.exchange_declare("amq.direct", "direct", passive=True),
         "describe access to exchange 'amq.direct'"),
        (lambda c: c.queue_bind(q, "amq.direct", "k"), "read access to exchange 'amq.direct'"),
        (lambda c: c.queue_purge(unique("it.secret-q")), "delete access to queue 'it.secret"),
        (lambda c: c.queue_delete(unique("it.secret-q")), "delete access to queue 'it.secret"),
        (lambda c: c.exchange_delete(secret_x), "delete access to exchange 'it.secret"),
        (lambda c: c.exchange_bind(secret_x, x, "k"), "write access to exchange 'it.secret"),
        # Routes out of what may not be read, into what may not be written.
        (lambda c: c.exchange_bind(x, secret_x, "k"), "read access to exchange 'it.secret"),
        (lambda c: c.queue_bind(unique("it.secret-q"), x, "k"),
         "write access to queue 'it.secret"),
    ]
    for call, text in cases:
        c = conn.channel()
        err = closed_by_broker(lambda: call(c))
        assert err.reply_code == 403 and text in err.reply_text, err.reply_text
    # After all that, the first channel is still fine.
    ch.queue_delete(q)
    ch.exchange_delete(x)
    conn.close()
    # bob may not declare server-named queues.
    bob = connect(ports["listen"], issuer.mint("bob", ["others"]))
    err = closed_by_broker(lambda: bob.channel().queue_declare("", exclusive=True))
    assert "create access to queue 'amq.gen-'" in err.reply_text
    bob.close()


def test_empty_name_after_a_passive_declare_names_that_queue(gw):
    """RabbitMQ makes a passive declare's queue the channel's last declared
    queue too (shown on RabbitMQ alone first). So after declaring a queue of
    its own, a principal that may only describe another queue cannot read
    that one by a passive declare of it and basic.get "": busgate decides
    the "" as the queue RabbitMQ will take, and refuses the read on it."""
    bg, ports, issuer = gw
    admin = direct()
    ach = admin.channel()
    victim, own = unique("look.q"), unique("pk.q")
    try:
        ach.queue_declare(victim)
        ach.queue_declare(own)
        ach.basic_publish("", victim, b"secret")
        ach.queue_declare(own)
        ach.queue_declare(victim, passive=True)
        assert get_one(admin, ach, "") == b"secret"  # RabbitMQ alone: "" is the victim
        ach.basic_publish("", victim, b"secret")
        dave = connect(ports["listen"], issuer.mint("dave", ["peek"]))
        ch = dave.channel()
        ch.queue_declare(own)
        assert ch.queue_declare(victim, passive=True).method.message_count == 1
        err = closed_by_broker(lambda: ch.basic_get(""))
        assert err.reply_code == 403 and f"read access to queue '{victim}'" in err.reply_text, \
            err.reply_text
        dave.close()
        events = wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                            and e["verb"] == "read" and e["decision"]["effect"] == "deny"
                            and any(r["name"] == victim for r in e["resources"]))
        assert events and all("rule" not in e["decision"] for e in events), events  # default
        assert ach.queue_declare(victim, passive=True).method.message_count == 1
    finally:
        ach.queue_delete(victim)
        ach.queue_delete(own)
        admin.close()


def test_declare_arguments_that_move_messages_need_read(gw):
    """A dead-letter or alternate exchange moves messages out of what is
    declared: RabbitMQ checks read on it besides write on that exchange, so
    a principal that may create a queue but not read it cannot drain it into
    an exchange of its own. Allowed with read (alice), refused without
    (carol), naming the read."""
    bg, ports, issuer = gw
    admin = direct()
    ach = admin.channel()
    sink = "dl.sink"
    ach.exchange_declare(sink, "fanout")
    carol = connect(ports["listen"], issuer.mint("carol", ["decl"]))
    q, x, plain = unique("dl.q"), unique("dl.x"), unique("dl.plain")
    try:
        carol.channel().queue_declare(plain)  # create alone is enough
        err = closed_by_broker(lambda: carol.channel().queue_declare(
            q, arguments={"x-dead-letter-exchange": sink, "x-message-ttl": 0}))
        assert err.reply_code == 403 and f"read access to queue '{q}'" in err.reply_text, \
            err.reply_text
        err = closed_by_broker(lambda: carol.channel().exchange_declare(
            x, "direct", arguments={"alternate-exchange": sink}))
        assert err.reply_code == 403 and f"read access to exchange '{x}'" in err.reply_text, \
            err.reply_text
        alice = connect(ports["listen"], issuer.mint("alice", ["apps"]))
        aq = unique("it.q")
        alice.channel().queue_declare(aq, arguments={"x-dead-letter-exchange": "it.sink"})
        alice.channel().queue_delete(aq)
        alice.close()
    finally:
        carol.close()
        ach.queue_delete(plain)
        ach.exchange_delete(sink)
        admin.close()


def test_confirms_10000_and_returns(gw):
    bg, ports, issuer = gw
    q = unique("it.q")
    conn = connect(ports["listen"], issuer.mint("alice", ["apps"]))
    ch = conn.channel()
    ch.queue_declare(q, auto_delete=True)
    ch.confirm_delivery()
    for i in range(10000):
        ch.basic_publish("", q, b"%d" % i)  # waits for each ack: raises on a nack
    assert ch.queue_declare(q, passive=True).method.message_count == 10000
    # mandatory + unroutable: the broker's basic.return reaches the client.
    with pytest.raises(pex.UnroutableError):
        ch.basic_publish("", unique("it.nowhere"), b"x", mandatory=True)
    ch.queue_delete(q)
    conn.close()
    status, body = http_get(f"http://127.0.0.1:{ports['admin']}/metrics")
    assert status == 200
    allowed = metric(body, "busgate_decisions_total", {"protocol": "amqp", "effect": "allow"})
    assert allowed is not None and allowed >= 10000


def test_large_message_5mib(gw):
    bg, ports, issuer = gw
    q = unique("it.q")
    body = bytes(range(256)) * (5 * 1024 * 4)  # 5 MiB, many frames of frame_max
    conn = connect(ports["listen"], issuer.mint("alice", ["apps"]))
    ch = conn.channel()
    ch.queue_declare(q, auto_delete=True)
    ch.confirm_delivery()
    ch.basic_publish("", q, body)
    m = ch.basic_get(q, auto_ack=True)
    assert m[0] is not None and len(m[2]) == len(body) and m[2] == body
    conn.close()


def test_bad_tokens_and_vhost(gw):
    bg, ports, issuer = gw
    port = ports["listen"]
    for token in ("not-a-jwt", issuer.expired("alice", ["apps"]),
                  issuer.mint("alice", ["apps"], aud="other")):
        with pytest.raises((pex.ProbableAuthenticationError, pex.AuthenticationError)) as ei:
            connect(port, token)
        assert "ACCESS_REFUSED" in str(ei.value)
    reasons = {e["auth_failure_reason"] for e in wait_audit(
        ports["audit"], lambda e: e.get("kind") == "auth_failure", count=3)}
    assert {"malformed", "expired", "wrong_audience"} <= reasons
    # The vhost must be the configured upstream vhost.
    with pytest.raises(pex.ProbableAccessDeniedError) as ei:
        connect(port, issuer.mint("alice", ["apps"]), vhost="other")
    assert "(530) 'NOT_ALLOWED - vhost other not found'" in str(ei.value)
    # Nor one it begins with: "" is not "/" (RabbitMQ has no vhost "").
    with pytest.raises(pex.ProbableAccessDeniedError) as ei:
        connect(port, issuer.mint("alice", ["apps"]), vhost="")
    assert "(530) 'NOT_ALLOWED - vhost  not found'" in str(ei.value)
    # And a good token still works afterwards.
    connect(port, issuer.mint("alice", ["apps"])).close()


def test_user_id_property_refused(gw):
    """RabbitMQ checks a message's user_id against the user that logged in,
    which upstream is busgate's own for every client: a client could
    publish messages "validated" as busgate's identity, and a wrong value
    drew RabbitMQ's 406 naming busgate's upstream user. busgate refuses a
    publish that sets user_id itself: channel.close 406 in its own words,
    nothing of the message reaches RabbitMQ, the connection lives on, and
    the refusal is audited after the policy's allow."""
    bg, ports, issuer = gw
    q = unique("it.q")
    conn = connect(ports["listen"], issuer.mint("alice", ["apps"]))
    ch = conn.channel()
    ch.queue_declare(q, auto_delete=True)
    for user in ("busgate", "alice"):  # busgate's upstream user, and another
        ch.basic_publish("", q, b"as " + user.encode(), pika.BasicProperties(user_id=user))
        err = closed_by_broker(lambda: ch.queue_declare(q, passive=True))
        assert (err.reply_code, err.reply_text) == (
            406, "PRECONDITION_FAILED - user_id property is not supported through busgate"), err
        ch = conn.channel()
    ch.basic_publish("", q, b"plain", pika.BasicProperties(app_id="it"))
    assert get_one(conn, ch, q) == b"plain"  # the only message that arrived
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    assert conn.is_open
    conn.close()
    events = wait_audit(ports["audit"], lambda e: e.get("kind") == "decision"
                        and api_name(e) == "basic.publish", count=5)
    assert [e["decision"]["effect"] for e in events] == ["allow", "deny", "allow", "deny",
                                                         "allow"], events
    deny = events[1]
    assert deny["result"]["error_code"] == 406 and deny["verb"] == "write", deny
    assert deny["result"]["error_name"] == "PRECONDITION_FAILED"
    assert deny["detail"] == ("PRECONDITION_FAILED - user_id property is not supported "
                              "through busgate")
    assert "rule" not in deny["decision"]


def test_body_over_max_body_bytes(start_busgate, tmp_path):
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(tmp_path, issuer, policy(),
                                 extra_amqp="  max_body_bytes: 1MiB\n")
    start_busgate(text, wait_for_port=ports["listen"])
    conn = connect(ports["listen"], issuer.mint("alice", ["apps"]))
    ch = conn.channel()
    q = unique("it.q")
    ch.queue_declare(q, auto_delete=True)
    ch.basic_publish("", q, b"x" * (1 << 20))  # at the limit: fine
    # One byte more: refused on its channel as RabbitMQ refuses a message
    # over its max_message_size (406); the connection lives on.
    ch.basic_publish("", q, b"x" * ((1 << 20) + 1))
    err = closed_by_broker(lambda: ch.queue_declare(q, passive=True))
    assert err.reply_code == 406, err
    assert err.reply_text.startswith(
        f"PRECONDITION_FAILED - message size {(1 << 20) + 1} is larger than configured max size "
        f"{1 << 20}"), err.reply_text
    assert conn.is_open
    ch2 = conn.channel()
    assert ch2.queue_declare(q, passive=True).method.message_count == 1  # only the first
    conn.close()
