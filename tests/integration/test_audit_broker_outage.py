"""No audit event lost while the broker holding the audit topic is down and
other traffic goes on.

A private two-broker Kafka cluster (scripts/kafka-up.sh, the second node
broker-only): the audit topic lives on broker 2 only, the data topic on
broker 1 only. busgate produces through broker 1 the whole time; broker 2
stops for more than 30 seconds. Every decision busgate makes meanwhile is
audited into its spool (the audit producer's messages time out) and drained
once broker 2 is back: the topic then holds exactly one distinct event id
per event busgate wrote to its file copy, and one decision event per
decision busgate counted.
"""
import os
import time

import pytest
from confluent_kafka.admin import NewTopic

from audit_env import (Instance, admin, counter, decisions, drained, kafka, kafka_env,
                       produce_some, raw_session, topic_ids)
from kafka_env import oidc_token, unique, wait_until

PLAIN1 = int(os.environ.get("BG_AUDIT2_KAFKA_PLAIN_PORT", "18192"))
PLAIN2 = PLAIN1 + 10
ENV1 = kafka_env(PLAIN1)
ENV2 = kafka_env(PLAIN2, node_id=2, join=PLAIN1)
OUTAGE_S = 32


def _both_brokers(adm):
    return len(adm.list_topics(timeout=10).brokers) == 2


@pytest.fixture(scope="module")
def broker_outage(tmp_path_factory):
    base = tmp_path_factory.mktemp("audit-broker-outage")
    out = {}
    inst = None
    try:
        kafka("kafka-up.sh", ENV1)
        kafka("kafka-up.sh", ENV2)
        adm = admin(PLAIN1)
        assert wait_until(lambda: _both_brokers(adm), timeout=30)
        audit_topic, data = unique("it-aud-audit2"), unique("it-aud-data2")
        fs = adm.create_topics([NewTopic(audit_topic, 2, -1, replica_assignment=[[2], [2]]),
                                NewTopic(data, 1, -1, replica_assignment=[[1]])])
        for f in fs.values():
            f.result(30)
        inst = Instance(base, "A", audit_topic, f"127.0.0.1:{PLAIN1 + 1}")
        inst.start()
        token = oidc_token("svc-orders")
        assert produce_some(inst, token, topic=data) == [None] * 5
        assert wait_until(lambda: drained(inst), timeout=30)

        # Broker 2 (the audit topic's only replica) stops; broker 1 serves on.
        kafka("kafka-down.sh", ENV2, "--keep-data")
        t0, wall0, rounds = time.monotonic(), int(time.time() * 1000), 0
        while time.monotonic() - t0 < OUTAGE_S:
            assert produce_some(inst, token, 2, topic=data) == [None] * 2
            # an auth failure too: refused by SaslAuthenticate, not cut off
            assert raw_session(inst.ports["listen"], "not-a-token") not in (None, 0)
            rounds += 1
            time.sleep(0.5)
        out["window_ms"] = (wall0, int(time.time() * 1000))
        out["rounds"] = rounds
        out["spooled"] = counter(inst, "spooled")
        kafka("kafka-up.sh", ENV2)
        assert wait_until(lambda: drained(inst), timeout=90), "did not drain"
        out["decisions"] = decisions(inst)
        out["events"] = inst.events()
        out["topic"] = topic_ids(PLAIN1, audit_topic)
        yield out
    finally:
        rc = inst.procs[-1].stop() if inst and inst.procs else 0
        kafka("kafka-down.sh", ENV2)
        kafka("kafka-down.sh", ENV1)
        assert rc == 0


@pytest.mark.single_build
def test_no_loss_while_the_audit_broker_is_down(broker_outage):
    o = broker_outage
    assert o["spooled"] > 0  # audited meanwhile, into the spool
    events = o["events"]
    # Traffic went on through broker 1 during the outage, and each of its
    # bad logins is there: one auth_failure per round, timed in the outage.
    lo, hi = o["window_ms"]
    during = [e for e in events if lo <= e["time_ms"] <= hi]
    assert sum(e["kind"] == "auth_failure" for e in during) == o["rounds"]
    assert any(e["kind"] == "decision" for e in during)
    ids = {e["event_id"] for e in events}
    assert len(ids) == len(events)
    topic, _ = o["topic"]
    assert topic == ids  # every event busgate wrote down reached the topic, by id
    assert sum(1 for e in events if e["kind"] == "decision") == o["decisions"]
    assert {"decision", "auth_failure", "session_start", "session_end"} <= \
        {e["kind"] for e in events}
