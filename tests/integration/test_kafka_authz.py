"""Authorization through busgate in front of the real broker: denied
produce and consume, topics hidden from Metadata, requests that are partly
allowed (split and merged), and the reserved topics (the audit topic,
Kafka's internal topics)."""
import struct
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from kafka_env import (ERR_TOPIC_AUTHZ, KAFKA_PLAIN, KafkaWire, audit_events, broker_has_topic,
                       busgate_config, client_conf, create_topics, metadata_v1_topics,
                       kafka_topics, oidc_token, produce_v13, setup_admin, topic_id, unique,
                       uvarint, wait_audit, wait_until, with_audit_topic)

RULES = """    - name: orders-topics
      subjects: [group:orders]
      resources: ["kafka:topic:it-orders-*"]
      verbs: [write, describe, create, read]
      effect: allow
    - name: orders-see-ledger
      subjects: [group:orders]
      resources: ["kafka:topic:it-ledger-*"]
      verbs: [describe]
      effect: allow
    - name: orders-groups
      subjects: [group:orders]
      resources: ["kafka:group:it-*"]
      verbs: [read, describe]
      effect: allow
"""


def start(start_busgate, tmp_path, rules=RULES, **kw):
    text, ports = busgate_config(tmp_path, rules, **kw)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    return bg, ports, f"127.0.0.1:{ports['listen']}"


def consumer(boot, token, **extra):
    conf = {"group.id": unique("it-g"), "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "session.timeout.ms": 6000}
    conf.update(extra)
    return Consumer(client_conf(boot, token, **conf))


def _poll(boot, token, partitions, done, timeout=20):
    """Consumes the partitions (assigned) through busgate until
    done(messages, errors) or timeout; returns (messages, errors)."""
    errors, got = [], []
    c = consumer(boot, token, error_cb=errors.append)
    c.assign(partitions)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done(got, errors):
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            errors.append(m.error())
        else:
            got.append(m)
    c.close()
    return got, errors


def test_denied_produce_and_consume(start_busgate, tmp_path):
    secret = unique("it-secret")
    create_topics([secret])
    _, ports, boot = start(start_busgate, tmp_path)
    token = oidc_token("svc-orders")

    results = []
    p = Producer(client_conf(boot, token))
    p.produce(secret, value=b"x", on_delivery=lambda e, m: results.append(e))
    p.flush(30)
    assert len(results) == 1 and results[0] is not None
    assert results[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    errors = []
    c = consumer(boot, token, error_cb=errors.append)
    c.subscribe([secret])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not errors:
        m = c.poll(0.5)
        if m is not None and m.error():
            errors.append(m.error())
        assert m is None or m.error(), "consumed from a denied topic"
    c.close()
    assert any(e.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED for e in errors), \
        [str(e) for e in errors]

    denied = wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                        and e["decision"]["effect"] == "deny"
                        and any(r["name"] == secret for r in e.get("resources", [])))
    # The topic is hidden (describe denied), so the client's own metadata
    # lookups were refused before any Produce or Fetch could be sent.
    assert "describe" in {e["verb"] for e in denied}, denied
    assert all(e["result"]["error_code"] == ERR_TOPIC_AUTHZ for e in denied)


def test_metadata_hides_denied_topics(start_busgate, tmp_path):
    allowed, hidden = unique("it-orders"), unique("it-secret")
    create_topics([allowed, hidden])
    # The broker itself has both.
    direct = setup_admin().list_topics(timeout=10).topics
    assert allowed in direct and hidden in direct
    _, _, boot = start(start_busgate, tmp_path)
    p = Producer(client_conf(boot, oidc_token("svc-orders")))

    md = p.list_topics(timeout=10)
    assert allowed in md.topics and md.topics[allowed].error is None
    assert hidden not in md.topics
    # Nothing outside what the principal may describe is listed.
    assert all(t.startswith(("it-orders-", "it-ledger-")) for t in md.topics), sorted(md.topics)
    for b in md.brokers.values():
        assert b.host == "127.0.0.1"

    one = p.list_topics(topic=hidden, timeout=10).topics[hidden]
    assert one.error is not None and one.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert not one.partitions
    assert p.list_topics(topic=allowed, timeout=10).topics[allowed].error is None


def _one_request_both(events, api, allowed, denied):
    """True when one request of `api` produced both an allow for `allowed`
    and a deny for `denied`: decision groups of one request are consecutive
    in their session and share the request's bytes_in."""
    by_session = {}
    for e in events:
        if e["kind"] == "decision" and e["api"]["name"] == api:
            by_session.setdefault(e["session_id"], []).append(e)
    for evs in by_session.values():
        evs.sort(key=lambda e: e["seq"])
        for a, b in zip(evs, evs[1:]):
            same = (b["seq"] == a["seq"] + 1 and
                    a["result"].get("bytes_in") == b["result"].get("bytes_in"))
            pair = {(a["decision"]["effect"], r["name"]) for r in a["resources"]} | \
                   {(b["decision"]["effect"], r["name"]) for r in b["resources"]}
            if same and ("allow", allowed) in pair and ("deny", denied) in pair:
                return True
    return False


def test_partly_denied_produce_and_fetch(start_busgate, tmp_path):
    """ledger topics are describable but neither writable nor readable, so
    the client batches them with allowed topics in one request."""
    allowed, ledger = unique("it-orders"), unique("it-ledger")
    create_topics([allowed, ledger])
    # Something to fetch from the ledger topic (written directly).
    direct = Producer({"bootstrap.servers": KAFKA_PLAIN})
    direct.produce(ledger, value=b"secret")
    assert direct.flush(30) == 0

    _, ports, boot = start(start_busgate, tmp_path)
    token = oidc_token("svc-orders")
    p = Producer(client_conf(boot, token, **{"linger.ms": 100}))
    p.list_topics(timeout=10)  # metadata and connection first
    for t in (allowed, ledger):
        p.list_topics(topic=t, timeout=10)
    results = {}
    for i in range(5):
        for t in (allowed, ledger):
            p.produce(t, value=f"{t}-{i}".encode(),
                      on_delivery=lambda e, m: results.setdefault(m.topic(), []).append(e))
    assert p.flush(30) == 0
    assert results[allowed] == [None] * 5
    assert len(results[ledger]) == 5
    assert all(e is not None and e.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
               for e in results[ledger]), results[ledger]
    assert wait_until(lambda: _one_request_both(audit_events(ports["audit"]), "Produce",
                                                allowed, ledger))

    msgs, errors = _poll(boot, token, [TopicPartition(allowed, 0, 0),
                                       TopicPartition(ledger, 0, 0)],
                         lambda got, errs: len(got) >= 5 and errs)
    assert all(m.topic() == allowed for m in msgs), "fetched from a denied topic"
    assert [m.value() for m in msgs] == [f"{allowed}-{i}".encode() for i in range(5)]
    assert any(e.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED for e in errors), \
        [str(e) for e in errors]
    assert wait_until(lambda: _one_request_both(audit_events(ports["audit"]), "Fetch",
                                                allowed, ledger))


EVERYTHING_ON_TOPICS = """    - name: everything
      subjects: [group:orders]
      resources: ["kafka:topic:*"]
      verbs: [write, describe, create, read, delete, alter]
      effect: allow
"""


def produce_to_reserved(ports, reserved, conf=None, key=None):
    """Produces one record to a new topic and one to the reserved topic
    through busgate, as a principal allowed every verb on kafka:topic:*:
    the first is delivered, the second refused with TOPIC_AUTHORIZATION_FAILED
    by busgate itself (no rule named in its deny events, which are
    returned)."""
    p = Producer(client_conf(f"127.0.0.1:{ports['listen']}", oidc_token("svc-orders"),
                             **(conf or {})))
    results = []
    other = unique("it-any")
    p.produce(other, value=b"ok", on_delivery=lambda e, m: results.append((m.topic(), e)))
    p.produce(reserved, key=key, value=b"forged",
              on_delivery=lambda e, m: results.append((m.topic(), e)))
    p.flush(30)
    got = dict(results)
    assert got[other] is None
    assert got[reserved] is not None
    assert got[reserved].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    denies = wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                        and e["decision"]["effect"] == "deny" and e["verb"] == "write"
                        and any(r["name"] == reserved for r in e["resources"]))
    assert denies and all("rule" not in e["decision"] for e in denies), denies
    assert all(e["result"]["error_code"] == ERR_TOPIC_AUTHZ for e in denies)
    return denies


def _audit_topic_values(audit_topic):
    """The values of audit_topic, read to its end on the PLAINTEXT listener
    once a decision event is there (a forged record would follow the
    events written before it)."""
    c = Consumer({"bootstrap.servers": KAFKA_PLAIN, "group.id": unique("it-audit"),
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    c.subscribe([audit_topic])
    values, at_end = [], False
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (at_end and any(b'"decision"' in v
                                                               for v in values)):
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            at_end = m.error().code() == KafkaError._PARTITION_EOF
        else:
            at_end = False
            values.append(m.value())
    c.close()
    assert at_end, "the audit topic was not read to its end"
    assert any(b'"decision"' in v for v in values)
    return values


def test_audit_topic_is_reserved(kafka_topics, start_busgate, tmp_path):
    audit_topic = kafka_topics(unique("busgate.audit"))
    text, ports = busgate_config(tmp_path, EVERYTHING_ON_TOPICS, mechanism="PLAIN")
    start_busgate(with_audit_topic(text, audit_topic), wait_for_port=ports["listen"])
    produce_to_reserved(ports, audit_topic)
    # The events themselves reached the topic through busgate's sink, and
    # the forged record did not.
    assert b"forged" not in _audit_topic_values(audit_topic)


def test_audit_topic_by_id_is_reserved(kafka_topics, start_busgate, tmp_path):
    """The audit topic named by its topic id, which a principal that may
    describe it learns from Metadata v12 (busgate learns it on the way):
    Produce v13 to it and DeleteTopics v6 of it are refused by busgate as
    by name (29, "reserved audit topic"), whatever the policy allows; the
    broker never sees them (no record appended, the topic still there)."""
    audit_topic = kafka_topics(unique("busgate.audit"))
    text, ports = busgate_config(tmp_path, EVERYTHING_ON_TOPICS, mechanism="PLAIN")
    start_busgate(with_audit_topic(text, audit_topic), wait_for_port=ports["listen"])
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    try:
        tid = topic_id(w, audit_topic)
        assert produce_v13(w, tid) == [(tid, [(0, ERR_TOPIC_AUTHZ)])]
        # DeleteTopics v6: one entry by id (null name), timeout 10 s.
        rd = w.call_flex(20, 6, uvarint(2) + uvarint(0) + tid + b"\x00"
                         + struct.pack(">i", 10000) + b"\x00")
        assert rd is not None, "busgate closed on DeleteTopics"
        rd.i32()  # throttle
        assert rd.uvarint() - 1 == 1
        rd.cstr()
        assert rd.take(16) == tid and rd.i16() == ERR_TOPIC_AUTHZ
    finally:
        w.close()
    for verb in ("write", "delete"):
        denies = wait_audit(ports["audit"], lambda e, verb=verb: e["kind"] == "decision"
                            and e["verb"] == verb and e["decision"]["effect"] == "deny"
                            and any(r["name"] == audit_topic for r in e["resources"]))
        assert denies and all(e.get("detail") == "reserved audit topic"
                              and "rule" not in e["decision"]
                              and e["result"]["error_code"] == ERR_TOPIC_AUTHZ
                              for e in denies), denies
    assert broker_has_topic(audit_topic)
    # Only busgate's events are in it: record_batch()'s value "x" is not.
    assert b"x" not in _audit_topic_values(audit_topic)


def test_internal_topic_is_reserved(start_busgate, tmp_path):
    """Kafka's internal topics are reserved like the audit topic. A broker
    appends to __consumer_offsets for any principal with write on it whose
    request's client id is "__admin_client", and busgate passes client ids
    on: without the reservation, write on kafka:topic:* would forge any
    group's committed offsets."""
    text, ports = busgate_config(tmp_path, EVERYTHING_ON_TOPICS, mechanism="PLAIN")
    start_busgate(text, wait_for_port=ports["listen"])
    # A key of no group-coordinator record type (version 0x7fff): should the
    # record ever get through, the coordinator skips it when it loads the
    # partition instead of failing on it.
    denies = produce_to_reserved(ports, "__consumer_offsets", {"client.id": "__admin_client"},
                                 key=b"\x7f\xff")
    assert all(e.get("detail") == "reserved Kafka internal topic" for e in denies), denies


MASKED_RULES = RULES + """    - name: reporting-reads-pii
      subjects: [group:reporting]
      resources: ["kafka:topic:it-orders-pii-*"]
      verbs: [read, describe]
      effect: allow
    - name: reporting-groups
      subjects: [group:reporting]
      resources: ["kafka:group:it-*"]
      verbs: [read, describe]
      effect: allow
  masks:
    - name: pii
      resources: ["kafka:topic:it-orders-pii-*"]
      fields: [customer.email]
      except: [group:reporting]
"""


def _consume(boot, token, topic, want):
    """Polls topic from the start until want records or an error arrive;
    returns (values, errors)."""
    msgs, errors = _poll(boot, token, [TopicPartition(topic, 0, 0)],
                         lambda got, errs: len(got) >= want or errs)
    return [m.value() for m in msgs], errors


def test_masked_topic_is_not_read_unmasked(start_busgate, tmp_path):
    """This build has no masking engine: a topic a mask applies to can be
    written, but reading it is refused (fail closed) except for the mask's
    except group, which would see clear values anyway."""
    topic = unique("it-orders-pii")
    create_topics([topic])
    _, ports, boot = start(start_busgate, tmp_path, rules=MASKED_RULES)
    orders = oidc_token("svc-orders")

    p = Producer(client_conf(boot, orders))
    p.produce(topic, value=b'{"customer":{"email":"a@example.com"}}')
    assert p.flush(30) == 0

    got, errors = _consume(boot, orders, topic, 1)
    assert got == [], "read a masked topic unmasked"
    assert any(e.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED for e in errors), \
        [str(e) for e in errors]
    refused = wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                         and e["api"]["name"] == "Fetch" and e["decision"]["effect"] == "deny"
                         and any(r["name"] == topic for r in e.get("resources", [])))
    assert refused, "no audited Fetch refusal"
    assert refused[0]["detail"] == "masked topic: no masking in this build", refused[0]
    assert refused[0]["decision"]["rule"] == "orders-topics"

    got, errors = _consume(boot, oidc_token("svc-reporting"), topic, 1)
    assert got == [b'{"customer":{"email":"a@example.com"}}'], [str(e) for e in errors]


def test_metadata_v1_does_not_auto_create_what_may_not_be_created(start_busgate, tmp_path):
    """Metadata v0-3 cannot say "do not auto-create", and the test broker
    auto-creates named topics (auto.create.topics.enable=true). A topic the
    principal may describe but not create must not be created through
    busgate's credential; one it may create is, as Kafka would."""
    from kafka_env import KafkaWire
    _, ports, _ = start(start_busgate, tmp_path, mechanism="PLAIN")
    token = oidc_token("svc-orders")
    w = KafkaWire(ports["listen"], timeout=10).login(token)
    ledger, orders = unique("it-ledger"), unique("it-orders")
    topics = metadata_v1_topics(w.metadata_v1([ledger]))
    assert topics == [(3, ledger)]  # UNKNOWN_TOPIC_OR_PARTITION, answered at v1
    w.metadata_v1([orders])
    w.close()
    admin = setup_admin()
    assert wait_until(lambda: orders in admin.list_topics(timeout=10).topics, timeout=15)
    assert ledger not in admin.list_topics(timeout=10).topics
