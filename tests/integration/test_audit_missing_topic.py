"""The audit topic does not exist, on the real broker (which, like Kafka by
default, creates a topic a Metadata request asks it to, with the broker's
retention and min.insync.replicas): busgate runs and audits, the broker is
never asked to create the topic, the events wait in the spool, the log
names the topic and says to create it (at start-up, and when producing
finds it missing), and once the topic is made the spool drains into it.
Before, busgate's audit producer had the broker create the topic with its
defaults at start-up."""
import json

import pytest

from audit_env import Instance, drained, produce_some, topic_ids
from conftest import run_cli
from kafka_env import (KAFKA_PLAIN, KAFKA_SASL, broker_has_topic, delete_topics, kafka_topics,
                       oidc_token, unique, wait_until)

PLAIN_PORT = int(KAFKA_PLAIN.rsplit(":", 1)[1])


def _error_naming(topic, how):
    """A log-line predicate: the error that says topic is missing, found
    `how` ("at start-up", or the librdkafka error of a produce)."""
    def pred(line):
        msg = line.get("msg", "")
        return (line.get("level") == "error" and f"topic {topic} does not exist (" in msg
                and how in msg and "create it" in msg)
    return pred


def _spooled_writes(inst, data):
    """The spooled decisions on the data topic (busgate audit tail --from
    spool), by event id."""
    r = run_cli("audit", "tail", "-c", str(inst.cfg), "--from", "spool", "--json")
    events = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    return {e["event_id"]: e for e in events if e.get("kind") == "decision"
            and e.get("verb") == "write" and any(x.get("name") == data
                                                 for x in e.get("resources", []))}


@pytest.mark.single_build
def test_missing_audit_topic_is_not_created(kafka_topics, tmp_path):
    audit_topic = unique("it-aud-missing")
    data = kafka_topics(unique("it-aud-data"))
    inst = Instance(tmp_path, "a", audit_topic, KAFKA_SASL)
    try:
        bg = inst.start()
        # A client's requests are audited (the file copy has them at once),
        # and the topic is still not there.
        assert produce_some(inst, oidc_token("svc-orders"), n=3, topic=data) == [None] * 3
        assert wait_until(lambda: [e for e in inst.events() if e.get("verb") == "write"])
        assert not broker_has_topic(audit_topic)
        assert bg.wait_log(_error_naming(audit_topic, "at start-up")), \
            bg.log_path.read_text()[-3000:]

        # The events go to the spool.
        writes = wait_until(lambda: _spooled_writes(inst, data), timeout=60, interval=1)
        assert writes, bg.log_path.read_text()[-3000:]
        # librdkafka takes the topic for missing 30 s after the producer
        # started (its propagation window); a produce then names it.
        assert bg.wait_log(_error_naming(audit_topic, "UNKNOWN_TOPIC"), timeout=90), \
            bg.log_path.read_text()[-3000:]
        assert not broker_has_topic(audit_topic)

        # Made now, as an operator would: the spool drains into it.
        kafka_topics(audit_topic)
        assert wait_until(lambda: drained(inst), timeout=60), bg.log_path.read_text()[-3000:]
        ids, _ = topic_ids(PLAIN_PORT, audit_topic)
        assert set(writes) <= ids
        assert bg.wait_log(lambda l: l.get("msg", "") == f"audit kafka: topic {audit_topic} "
                           "exists now: delivering")
    finally:
        rcs = [(p.stop(), p) for p in inst.procs]
        delete_topics([audit_topic])  # also when a broken busgate had it made
        for rc, p in rcs:
            assert rc == 0, p.log_path.read_text()[-3000:]
