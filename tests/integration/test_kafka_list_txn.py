"""ListTransactions (api 66) with the real broker, raw requests.

Kafka checks nothing on the cluster for it and lists only the transactional
ids the caller may describe. busgate forwards it with its own credential, so
it filters the broker's answer the same way: another service's transactions
stay hidden, also from a principal that may describe the cluster."""
import struct

from confluent_kafka import Producer

from kafka_env import (KAFKA_PLAIN, KafkaWire, busgate_config, cstr, oidc_token, unique,
                       uvarint, wait_audit, wait_until)

RULES = """    - name: own-transactions
      subjects: [group:orders]
      resources: ["kafka:transactional-id:it-lt-mine-*", "kafka:cluster"]
      verbs: [describe]
      effect: allow
"""


def list_transactions(w, states=()):
    """ListTransactions v0: (error, [(transactional id, state)])."""
    body = uvarint(len(states) + 1) + b"".join(cstr(s) for s in states)
    body += uvarint(1) + uvarint(0)  # no producer id filter; no tagged fields
    rd = w.call_flex(66, 0, body)
    assert rd is not None, "busgate closed the connection"
    rd.i32()  # throttle
    err = rd.i16()
    for _ in range(rd.uvarint() - 1):
        rd.cstr()  # unknown state filters
    out = []
    for _ in range(rd.uvarint() - 1):
        txid = rd.cstr()
        rd.take(8)  # producer id
        out.append((txid, rd.cstr()))
        rd.tags()
    return err, out


def test_lists_only_transactions_the_principal_may_describe(start_busgate, tmp_path):
    mine, other = unique("it-lt-mine"), unique("it-lt-other")
    producers = []
    for txid in (mine, other):  # directly on the broker: each id registered
        p = Producer({"bootstrap.servers": KAFKA_PLAIN, "transactional.id": txid})
        p.init_transactions(30)
        producers.append(p)
    direct = KafkaWire(int(KAFKA_PLAIN.rsplit(":", 1)[1]))
    try:  # the broker itself lists both (what busgate's credential sees)
        assert wait_until(lambda: {mine, other} <= {t for t, _ in list_transactions(direct)[1]},
                          timeout=20)
    finally:
        direct.close()
    text, ports = busgate_config(tmp_path, RULES, mechanism="PLAIN")
    start_busgate(text, wait_for_port=ports["listen"])
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    try:
        err, listed = list_transactions(w)
        ids = {t for t, _ in listed}
        assert err == 0
        assert mine in ids, listed
        assert other not in ids, listed  # cluster describe does not widen it
        assert all(t.startswith("it-lt-mine-") for t in ids), listed
    finally:
        w.close()
    assert wait_audit(ports["audit"], lambda e: e.get("api", {}).get("name") == "ListTransactions"
                      and e["decision"]["effect"] == "allow"
                      and e["resources"] == [{"type": "kafka:transactional-id", "name": "*"}])
    del producers
