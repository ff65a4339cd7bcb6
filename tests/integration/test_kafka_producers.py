"""Producer features through busgate in front of the real broker:
idempotence, transactions (allowed and denied by transactional id), and
every compression codec, stored compressed as the client sent it (also from
Debian's kcat, whose librdkafka 2.0.2 compresses only when Produce v0 is
listed)."""
import struct
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from kafka_env import (ERR_CLUSTER_AUTHZ, ERR_GROUP_AUTHZ, ERR_TXN_ID_AUTHZ, KAFKA_PLAIN, KafkaWire,
                       audit_events, busgate_config, client_conf, kstr, oidc_token, unique,
                       wait_audit, wait_until)

CODECS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}

RULES = """    - name: orders-topics
      subjects: [group:orders]
      resources: ["kafka:topic:it-orders-*"]
      verbs: [write, describe, create, read]
      effect: allow
    - name: orders-groups
      subjects: [group:orders]
      resources: ["kafka:group:it-*"]
      verbs: [read, describe]
      effect: allow
    - name: orders-txn
      subjects: [group:orders]
      resources: ["kafka:transactional-id:it-tx-*"]
      verbs: [write, describe]
      effect: allow
"""


@pytest.fixture
def gate(start_busgate, tmp_path):
    text, ports = busgate_config(tmp_path, RULES)
    start_busgate(text, wait_for_port=ports["listen"])
    return f"127.0.0.1:{ports['listen']}", ports, oidc_token("svc-orders")


def read_all(boot, token, topic, want, timeout=30.0, **extra):
    """Values of partition 0 from the start until `want` arrived (or timeout),
    plus one more short poll to catch anything unexpected after them."""
    conf = {"group.id": unique("it-g"), "enable.auto.commit": False,
            "session.timeout.ms": 6000, "enable.partition.eof": True}
    conf.update(extra)
    c = Consumer(client_conf(boot, token, **conf))
    c.assign([TopicPartition(topic, 0, 0)])
    got, eof = [], False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (len(got) >= want and eof):
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            assert m.error().code() == KafkaError._PARTITION_EOF, str(m.error())
            eof = len(got) >= want
        else:
            got.append(m.value())
    c.close()
    return got


def test_idempotent_producer(gate):
    boot, ports, token = gate
    topic = unique("it-orders")
    p = Producer(client_conf(boot, token, **{"enable.idempotence": True}))
    results = []
    for i in range(50):
        p.produce(topic, value=f"i{i}".encode(), partition=0,
                  on_delivery=lambda e, m: results.append((e, m.offset())))
    assert p.flush(30) == 0
    assert [e for e, _ in results] == [None] * 50
    assert [o for _, o in results] == list(range(results[0][1], results[0][1] + 50))
    assert read_all(boot, token, topic, 50) == [f"i{i}".encode() for i in range(50)]
    shown = wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                       and e["api"]["name"] == "InitProducerId")
    assert shown and shown[0]["decision"]["effect"] == "allow", shown
    assert shown[0]["resources"] == [{"type": "kafka:topic", "name": "it-orders-"}], shown


def test_idempotent_producer_needs_some_write(gate):
    """KIP-679: without write on the cluster or on any topic, InitProducerId
    for an idempotent producer is CLUSTER_AUTHORIZATION_FAILED, as Kafka
    answers it; librdkafka makes that a fatal producer error."""
    boot, ports, _ = gate
    p = Producer(client_conf(boot, oidc_token("svc-reporting"), **{"enable.idempotence": True}))
    results = []
    p.produce(unique("it-orders"), value=b"x", partition=0,
              on_delivery=lambda e, m: results.append(e))
    p.flush(20)
    assert len(results) == 1 and results[0] is not None, results
    denied = wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                        and e["api"]["name"] == "InitProducerId")
    assert denied, "no InitProducerId decision"
    e = denied[0]
    assert e["decision"]["effect"] == "deny" and e["result"]["error_code"] == ERR_CLUSTER_AUTHZ, e
    assert e["resources"] == [{"type": "kafka:cluster", "name": ""}], e


def test_transactions_allowed_and_committed(gate):
    boot, ports, token = gate
    topic, txid = unique("it-orders"), unique("it-tx")
    p = Producer(client_conf(boot, token, **{"transactional.id": txid}))
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(3):
        p.produce(topic, value=f"aborted{i}".encode(), partition=0)
    assert p.flush(30) == 0  # written to the log before the abort (not purged)
    p.abort_transaction(30)
    p.begin_transaction()
    for i in range(5):
        p.produce(topic, value=f"t{i}".encode(), partition=0)
    p.commit_transaction(30)

    assert read_all(boot, token, topic, 5, **{"isolation.level": "read_committed"}) == \
        [f"t{i}".encode() for i in range(5)]
    # read_uncommitted sees the aborted records too: they did reach the log.
    assert len(read_all(boot, token, topic, 8, **{"isolation.level": "read_uncommitted"})) == 8

    def apis():
        return {e["api"]["name"] for e in audit_events(ports["audit"])
                if e["kind"] == "decision" and e["decision"]["effect"] == "allow"
                and any(r["type"] == "kafka:transactional-id" and r["name"] == txid
                        for r in e["resources"])}
    assert wait_until(lambda: {"InitProducerId", "AddPartitionsToTxn", "EndTxn"} <= apis()), apis()


def test_transactional_id_denied(gate):
    boot, ports, token = gate
    txid = unique("other-tx")
    p = Producer(client_conf(boot, token, **{"transactional.id": txid}))
    with pytest.raises(KafkaException) as ei:
        p.init_transactions(20)
    assert ei.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, \
        str(ei.value)
    denied = wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                        and e["decision"]["effect"] == "deny"
                        and any(r["name"] == txid for r in e["resources"]))
    assert denied and all(e["result"]["error_code"] == ERR_TXN_ID_AUTHZ for e in denied)


def test_transactional_requests_refused_with_kafkas_codes(gate):
    """Raw requests as KafkaApis refuses them: InitProducerId and EndTxn
    with a transactional id the principal may not write, and
    AddOffsetsToTxn with it, get TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    AddOffsetsToTxn with the id allowed but a group it may not read,
    GROUP_AUTHORIZATION_FAILED. The connection stays open."""
    _, ports, token = gate
    w = KafkaWire(ports["listen"]).login(token)
    try:
        denied, allowed = unique("other-tx"), unique("it-tx")
        readable, unreadable = unique("it-g"), unique("other-g")
        pid = struct.pack(">qh", 1, 0)  # producer id, epoch
        # InitProducerId v1: transactional id, timeout
        assert w.call_error(22, 1, kstr(denied) + struct.pack(">i", 60000)) == ERR_TXN_ID_AUTHZ
        # EndTxn v2: transactional id, producer id, epoch, committed
        assert w.call_error(26, 2, kstr(denied) + pid + b"\x01") == ERR_TXN_ID_AUTHZ
        # AddOffsetsToTxn v2: transactional id, producer id, epoch, group
        assert w.call_error(25, 2, kstr(denied) + pid + kstr(readable)) == ERR_TXN_ID_AUTHZ
        assert w.call_error(25, 2, kstr(allowed) + pid + kstr(unreadable)) == ERR_GROUP_AUTHZ
    finally:
        w.close()


def stored_codecs(topic):
    """Codec of each record batch of partition 0 as the broker stores it,
    read on the setup listener."""
    w = KafkaWire(int(KAFKA_PLAIN.rsplit(":", 1)[1]))
    try:
        return w.batch_codecs(topic)
    finally:
        w.close()


def test_compression_codecs(gate):
    boot, _, token = gate
    topic = unique("it-orders")
    want, codecs = [], []
    for codec in CODECS:
        p = Producer(client_conf(boot, token, **{"compression.type": codec, "linger.ms": 20}))
        results = []
        for i in range(20):
            v = (f'{{"codec":"{codec}","i":{i},"pad":"' + "abc" * 200 + '"}').encode()
            want.append(v)
            p.produce(topic, value=v, partition=0, on_delivery=lambda e, m: results.append(e))
        assert p.flush(30) == 0
        assert results == [None] * 20, (codec, results)
        codecs.append(CODECS[codec])
    assert read_all(boot, token, topic, len(want)) == want
    # Passed through as compressed batches, in the order the codecs were used.
    stored = stored_codecs(topic)
    assert stored and 0 not in stored, stored
    assert sorted(set(stored), key=stored.index) == codecs, stored


@pytest.mark.parametrize("codec", list(CODECS))
def test_kcat_compresses_through_busgate(gate, codec):
    """kcat (Debian's librdkafka 2.0.2) compresses only when the broker's
    Produce range includes v0; through busgate its batches arrive compressed."""
    boot, _, token = gate
    topic = unique("it-orders")
    lines = "".join(f"{codec} record {i} " + "xyz" * 100 + "\n" for i in range(50))
    p = subprocess.run(["kcat", "-b", boot, "-X", "security.protocol=SASL_PLAINTEXT",
                        "-X", "sasl.mechanism=PLAIN", "-X", "sasl.username=it",
                        "-X", f"sasl.password={token}", "-X", "linger.ms=50",
                        "-P", "-t", topic, "-p", "0", "-z", codec],
                       input=lines, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "not compressing" not in p.stderr, p.stderr[-2000:]
    stored = wait_until(lambda: stored_codecs(topic), timeout=10)
    assert stored and set(stored) == {CODECS[codec]}, (stored, p.stderr[-2000:])
