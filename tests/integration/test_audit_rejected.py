"""An audit topic that refuses some events for good, with a real broker.

The audit topic is created with max.message.bytes=4096. A Metadata request
naming 30 topics of 200 characters makes a decision event (it lists every
topic) that the broker refuses (MESSAGE_TOO_LARGE) however often it is
sent; a broker refuses the whole produce request, so the events sent
beside it are refused too.
busgate must not let that hold up the spool for ever (in block mode the
spool would fill and busgate would stop admitting everybody): the refused
group goes to the spool, the drain sends records one at a time, and the
records the broker refuses alone go to the dead-letter file
spool_dir/rejected.jsonl. Every event is in the topic or in that file, only
the oversized ones are in the file, and `busgate audit tail` shows them all.
"""
import json

from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from audit_env import Instance, counter, drained, topic_ids
from conftest import run_cli
from kafka_env import KAFKA_PLAIN, KAFKA_SASL, KafkaWire, client_conf, oidc_token, setup_admin, unique, \
    wait_until

def long_names():
    base = unique("zz-big")
    return [f"{base}-{i:03d}-".ljust(200, "x") for i in range(30)]


def create_small_topic(topic):
    admin = setup_admin()
    fs = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                       config={"max.message.bytes": "4096"})])
    for f in fs.values():
        f.result(30)


def produce(inst, token):
    p = Producer(client_conf(f"127.0.0.1:{inst.ports['listen']}", token))
    errs = []
    for _ in range(3):
        p.produce(unique("it-aud-data"), value=b"x", on_delivery=lambda e, m: errs.append(e))
    assert p.flush(30) == 0
    return errs


def test_events_too_large_for_the_topic_are_dead_lettered(tmp_path):
    topic = unique("busgate.audit-small")
    create_small_topic(topic)
    inst = Instance(tmp_path, "a", topic, KAFKA_SASL)
    bg = inst.start()
    try:
        token = oidc_token("svc-orders")
        assert produce(inst, token) == [None] * 3
        names = long_names()
        w = KafkaWire(inst.ports["listen"], timeout=10).login(token)
        assert w.metadata_v1(names) is not None  # the request itself is answered
        w.close()
        assert produce(inst, token) == [None] * 3
        assert wait_until(lambda: drained(inst) and counter(inst, "rejected") > 0, timeout=90), \
            bg.log_path.read_text()[-3000:]
        dead_file = inst.spool / "rejected.jsonl"
        dead = [json.loads(l) for l in dead_file.read_text().splitlines()]
        copy = {e["event_id"]: e for e in inst.events()}
        # The events naming the long topics are too large, and only those are in the file.
        big = {i for i, e in copy.items()
               if any(r.get("name") == names[0] for r in e.get("resources", []))}
        assert big
        assert {e["event_id"] for e in dead} == big
        ids, _ = topic_ids(int(KAFKA_PLAIN.rsplit(":", 1)[1]), topic)
        assert not ids & big
        assert ids | big == set(copy)  # nothing lost
        assert counter(inst, "rejected") == len(dead)
        assert counter(inst, "dropped") == 0
        assert "refused for good by the primary" in bg.log_path.read_text()
        # `audit tail` reads the topic, then the spool and its dead-letter file: all of it
        r = run_cli("audit", "tail", "-c", str(inst.cfg), "--json")
        assert r.returncode == 0, r.stderr
        assert {json.loads(l)["event_id"] for l in r.stdout.splitlines()} == set(copy)
        assert bg.stop() == 0, bg.log_path.read_text()[-3000:]
    finally:
        bg.stop()
