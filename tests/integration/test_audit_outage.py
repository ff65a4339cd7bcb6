"""Audit guarantees against a real Kafka broker that goes away.

A PRIVATE broker instance (its own ports, see scripts/kafka-up.sh) is both
busgate's upstream and the home of the audit topics, so it can be stopped
without disturbing the shared one. Three busgates run through one outage of
more than 30 seconds:
  A  normal: audit topic + spool; every event it wrote to its audit.file
     copy must be in the topic afterwards (by event id);
  B  block mode with its spool made unwritable: it must stop admitting
     (/readyz 503, requests refused with a retriable error), recover when the
     broker returns, and lose nothing it admitted;
  C  killed with SIGKILL while events sit in its spool, restarted: every
     spooled event must reach the topic.
During the outage the workload is what busgate decides without the broker:
client authentications (session start/end) and rejected tokens.
"""
import json
import os
import shutil
import signal
import struct
import time

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import NewTopic

from audit_env import (Instance, counter, decisions, drained, kafka, kafka_env, open_sessions,
                       produce_some, raw_session, ready, scrape, topic_ids)
from audit_env import admin as admin_of
from conftest import run_cli
from kafka_env import KafkaWire, client_conf, oidc_token, produce_v3_body, unique, wait_until

PLAIN = int(os.environ.get("BG_AUDIT_KAFKA_PLAIN_PORT", "18092"))
SASL = PLAIN + 1
ENV = kafka_env(PLAIN)
OUTAGE_S = 32

# Every test here checks the one scenario the module fixture runs (the
# outage is most of its time), so they run against one build only and in one
# pytest run: tests/integration/run.sh runs suites side by side, and two of
# them running the fixture at once would share the private broker's ports.
pytestmark = pytest.mark.single_build


def admin():
    return admin_of(PLAIN)


def authenticated(port, token):
    """A raw connection, authenticated."""
    return KafkaWire(port, timeout=10).login(token)


def produce_error(w, topic):
    """Produce v3 (acks=all, no records) for partition 0 of topic on the
    authenticated connection w: that partition's error code, or None when
    busgate closed the connection instead of answering."""
    try:
        resp = w.call(0, 3, produce_v3_body(topic, value=None))
        if resp is None:
            return None
        (nt,) = struct.unpack(">i", resp[:4])
        (nl,) = struct.unpack(">h", resp[4:6])
        off = 6 + nl
        (np_,) = struct.unpack(">i", resp[off:off + 4])
        assert nt == 1 and np_ == 1
        return struct.unpack(">h", resp[off + 8:off + 10])[0]
    finally:
        w.close()


def audit_topic_refuses(topics, refuse):
    """With message.timestamp.before.max.ms=0 the broker refuses every audit
    message stamped before it arrives (INVALID_TIMESTAMP) while it stays up
    for everything else. busgate treats that error as a failure that may pass
    (spooled or held, sent again), so what this phase shows does not depend
    on how long it lasts. (Not max.message.bytes below an event's size:
    busgate rightly dead-letters an event the topic refuses as too large
    when sent alone, so events left the topic whenever a spool drain ran
    before the limit was lifted. Not min.insync.replicas above the
    replication factor either: Kafka 4.x caps the minimum at it.)"""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
    op = AlterConfigOpType.SET if refuse else AlterConfigOpType.DELETE
    adm = admin()
    res = [ConfigResource(ConfigResource.Type.TOPIC, t, incremental_configs=[
        ConfigEntry("message.timestamp.before.max.ms", "0" if refuse else "",
                    incremental_operation=op)])
        for t in topics]
    for f in adm.incremental_alter_configs(res).values():
        f.result(30)


@pytest.fixture(scope="module")
def outage(tmp_path_factory):
    """Runs the whole scenario once; the tests below check its outcome."""
    base = tmp_path_factory.mktemp("audit-outage")
    names = {k: unique(f"it-aud-audit-{k}") for k in "ABC"}
    A = Instance(base, "A", names["A"], f"127.0.0.1:{SASL}")
    B = Instance(base, "B", names["B"], f"127.0.0.1:{SASL}")
    C = Instance(base, "C", names["C"], f"127.0.0.1:{SASL}")
    out = {"A": A, "B": B, "C": C}
    try:  # the broker is stopped below whatever fails from here on
        kafka("kafka-up.sh", ENV)
        adm = admin()  # must outlive the futures
        fs = adm.create_topics([NewTopic(t, num_partitions=3, replication_factor=1)
                                for t in names.values()])
        for f in fs.values():
            f.result(30)
        del adm
        for i in (A, B, C):
            i.start()
        token = oidc_token("svc-orders")
        for i in (A, B, C):
            assert produce_some(i, token) == [None] * 5
            raw_session(i.ports["listen"], "not-a-token")  # an auth_failure
            assert wait_until(lambda: drained(i), timeout=20)
        # The audit topic is busgate's own: a client cannot write it, even
        # when a rule would allow its name.
        errs = []
        p = Producer(client_conf(f"127.0.0.1:{A.ports['listen']}", token))
        p.produce(A.topic, value=b"forged", on_delivery=lambda e, m: errs.append(e))
        p.flush(30)
        del p
        out["forge_error"] = errs[0].code() if errs and errs[0] else None

        # B's spool becomes unwritable (a file where the directory was:
        # creating a segment fails even for root).
        shutil.rmtree(B.spool)
        B.spool.write_text("not a directory\n")

        # ---- phase 1: the broker (upstream and audit topic) stops for > 30 s.
        # busgate serves nobody without its upstream, so the events of this
        # phase are the session_end of every connection open at the stop.
        conns = [w for i in (A, B, C) for w in open_sessions(i, token, 10)]
        kafka("kafka-down.sh", ENV, "--keep-data")
        t0 = time.monotonic()
        assert wait_until(lambda: counter(A, "spooled") >= 10 and counter(C, "spooled") >= 10,
                          timeout=25)
        assert wait_until(lambda: ready(B.admin) == 503, timeout=25)
        out["b_admitting_phase1"] = scrape(B.admin, "busgate_audit_admitting")
        # C dies with events in its spool
        C.procs[-1].proc.send_signal(signal.SIGKILL)
        C.procs[-1].proc.wait(10)
        r = run_cli("audit", "tail", "-c", str(C.cfg), "--from", "spool", "--json")
        assert r.returncode == 0, r.stderr
        out["c_spooled"] = {json.loads(l)["event_id"] for l in r.stdout.splitlines()}
        for w in conns:
            w.close()
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - t0)))
        kafka("kafka-up.sh", ENV)
        C.start()
        out["c_restart_ms"] = int(time.time() * 1000)
        for i in (A, B, C):
            assert wait_until(lambda: drained(i), timeout=60), f"{i.dir.name} did not drain"
        assert ready(B.admin) == 200

        # ---- phase 2: only the audit topics fail; other traffic goes on
        # and is audited (A: to its spool) or refused (B: block mode).
        b_open = authenticated(B.ports["listen"], token)  # before B stops admitting
        audit_topic_refuses([A.topic, B.topic], True)
        spooled_before = counter(A, "spooled")
        t1 = time.monotonic()
        while time.monotonic() - t1 < 40 and not (
                ready(B.admin) == 503 and counter(A, "spooled") > spooled_before):
            assert produce_some(A, token, 2) == [None] * 2  # the data path still works
            raw_session(A.ports["listen"], "not-a-token")
            raw_session(B.ports["listen"], token)
            raw_session(C.ports["listen"], "not-a-token")  # C's topic is fine
            time.sleep(0.5)
        out["a_spooled_phase2"] = counter(A, "spooled") - spooled_before
        out["b_ready_phase2"] = ready(B.admin)
        out["b_refused_produce"] = produce_error(b_open, "it-aud-x")
        # A new login would go unrecorded: refused (the connection closes).
        out["b_login_answered"] = raw_session(B.ports["listen"], token)
        audit_topic_refuses([A.topic, B.topic], False)
        for i in (A, B, C):
            assert wait_until(lambda: drained(i), timeout=60), f"{i.dir.name} did not drain"
        out["b_ready_after"] = ready(B.admin)
        out["a_decisions_metric"] = decisions(A)
        yield out
    finally:
        rcs = {}
        for i in (A, B, C):
            for n, bg in enumerate(i.procs):
                rc = bg.stop()
                if not (i is C and n == 0):
                    rcs[f"{i.dir.name}{n}"] = rc
        kafka("kafka-down.sh", ENV)
        assert all(rc == 0 for rc in rcs.values()), rcs


def test_no_loss_through_outage(outage):
    A = outage["A"]
    # (the fixture keeps the broker down for OUTAGE_S > 30 s)
    assert outage["a_spooled_phase2"] > 0  # traffic went on, audited to the spool
    events = A.events()
    file_ids = {e["event_id"] for e in events}
    assert len(file_ids) == len(events)
    kinds = {e["kind"] for e in events}
    assert {"session_start", "session_end", "auth_failure", "decision"} <= kinds
    topic, _ = topic_ids(PLAIN, A.topic)
    assert topic == file_ids  # every event, by id, and none foreign
    assert not (A.spool / "rejected.jsonl").exists()  # none refused for good
    # one decision event per decision busgate counted
    assert sum(1 for e in events if e["kind"] == "decision") == outage["a_decisions_metric"]


def test_audit_topic_not_writable_by_clients(outage):
    assert outage["forge_error"] == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_crash_with_spooled_events(outage):
    C = outage["C"]
    spooled = outage["c_spooled"]
    assert spooled  # the kill happened with events in the spool
    topic, _ = topic_ids(PLAIN, C.topic)
    assert spooled <= topic
    # and everything the restarted process emitted
    after = {e["event_id"] for e in C.events() if e["time_ms"] >= outage["c_restart_ms"]}
    assert after and after <= topic


def test_block_mode_refuses_and_recovers(outage):
    B = outage["B"]
    assert outage["b_admitting_phase1"] == 0
    assert outage["b_ready_phase2"] == 503
    assert outage["b_refused_produce"] == 7  # REQUEST_TIMED_OUT: retriable
    assert outage["b_login_answered"] is None  # no unrecorded login
    assert outage["b_ready_after"] == 200
    topic, _ = topic_ids(PLAIN, B.topic)
    assert {e["event_id"] for e in B.events()} <= topic
