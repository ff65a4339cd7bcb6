"""Share groups (KIP-932, "queues for Kafka") through busgate with Kafka's own
KafkaShareConsumer (tests/interop/java) in front of the real test broker:
ShareGroupHeartbeat, ShareFetch and ShareAcknowledge decided as Kafka
decides them, and a policy reload that takes reading a topic away from a
share consumer in the middle of its share session.

The broker lets every principal do everything (no ACLs, docs/testing.md):
every refusal asserted here is busgate's, and the audit file says so. A
share group starts at the latest offset unless the group says otherwise,
so each test first sets share.auto.offset.reset=earliest on its group
(IncrementalAlterConfigs through busgate: alter on the group).
"""
import json
import signal
import subprocess
import time

import pytest
from confluent_kafka import Producer

from kafka_env import (KAFKA_PLAIN, audit_events, busgate_config, create_topics, scrape,
                       unique, wait_audit, wait_until)
from test_kafka_interop import (RUN_CLIENT, client_env, explain, interop_clients,  # noqa: F401
                                oauth_creds, run_client)

N = 20
RULES = """    - name: share-topics
      subjects: [group:orders]
      resources: ["kafka:topic:share-*"]
      verbs: [write, read, describe, create]
      effect: allow
    - name: share-visible-topics
      subjects: [group:orders]
      resources: ["kafka:topic:share-ro-*"]
      verbs: [describe]
      effect: allow
    - name: share-groups
      subjects: [group:orders]
      resources: ["kafka:group:share-g-*"]
      verbs: [read, describe, alter]
      effect: allow
"""
# share-ro-* matches share-* too: the read-only topics come from a rule set
# in which share-* does not cover them.
RULES_RO = RULES.replace('["kafka:topic:share-*"]', '["kafka:topic:share-rw-*"]')


def decisions(ports, api, effect=None):
    return [e for e in audit_events(ports["audit"])
            if e.get("kind") == "decision" and e["api"]["name"] == api and
            (effect is None or e["decision"]["effect"] == effect)]


def names(e):
    return [r.get("name") for r in e.get("resources", [])]


def produce_direct(topic, seqs):
    """Records with the given seqs, straight to the broker (setup listener)."""
    p = Producer({"bootstrap.servers": KAFKA_PLAIN})
    for s in seqs:
        p.produce(topic, value=json.dumps({"seq": s, "client": "it"}, separators=(",", ":")).encode(),
                  partition=0)
    assert p.flush(30) == 0


@pytest.mark.single_build
def test_java_share_consumer(start_busgate, tmp_path):
    """A share consumer consumes an allowed topic through busgate; one
    subscribed to a topic it may not describe is refused at the heartbeat,
    one whose topic it may describe but not read is refused at ShareFetch,
    and one in a group it may not use at the coordinator lookup."""
    text, ports = busgate_config(tmp_path, RULES_RO)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    bootstrap = f"127.0.0.1:{ports['listen']}"
    topic, group = unique("share-rw"), unique("share-g")
    ro_topic, ro_group = unique("share-ro"), unique("share-g")
    denied, other_group = unique("denied"), unique("other-g")
    create_topics([topic, ro_topic, denied])
    produce_direct(ro_topic, range(5))
    earliest = ("share.auto.offset.reset", "earliest")
    res = run_client(tmp_path, "java", bootstrap, oauth_creds(), "suite",
                     "admin-set-group-config", group, *earliest, "--",
                     "admin-set-group-config", ro_group, *earliest, "--",
                     "produce", topic, str(N), "--",
                     "share-consume", topic, group, str(N), "--",
                     "share-consume-expect-denied", denied, unique("share-g"), "--",
                     "share-consume-expect-denied", ro_topic, ro_group, "--",
                     "share-consume-expect-denied", topic, other_group)
    assert res["_exit"] == 0 and res["ok"], explain(res, bg)
    _, _, _, consumed, no_describe, no_read, no_group = res["steps"]
    assert consumed["consumed"] >= N and consumed.get("committed") is True, explain(res, bg)
    assert sorted(set(consumed["seqs"])) == list(range(N)), explain(res, bg)

    assert no_describe["error"] == "TopicAuthorizationException", explain(res, bg)
    assert no_describe["consumed"] == 0, explain(res, bg)
    assert no_read["error"] == "TopicAuthorizationException", explain(res, bg)
    assert no_read["consumed"] == 0, explain(res, bg)
    assert no_group["error"] == "GroupAuthorizationException", explain(res, bg)
    assert no_group["consumed"] == 0, explain(res, bg)

    # The audit file: the allowed share group at every step, and each refusal
    # where Kafka makes it.
    assert wait_audit(ports["audit"], lambda e: e.get("kind") == "decision" and
                      e["api"]["name"] == "ShareAcknowledge" or
                      e.get("kind") == "decision" and e["api"]["name"] == "ShareFetch" and
                      topic in names(e) and e["decision"]["effect"] == "allow"), explain(res, bg)
    beats = decisions(ports, "ShareGroupHeartbeat")
    assert any(group in names(e) and e["decision"]["effect"] == "allow" for e in beats), \
        explain(res, bg)
    assert any(denied in names(e) and e["decision"]["effect"] == "deny" for e in beats), \
        explain(res, bg)
    fetch_denied = [e for e in decisions(ports, "ShareFetch", "deny") if ro_topic in names(e)]
    assert fetch_denied and fetch_denied[0]["verb"] == "read", explain(res, bg)
    assert not any(ro_topic in names(e) for e in decisions(ports, "ShareFetch", "allow")), \
        explain(res, bg)
    assert any(other_group in names(e) for e in decisions(ports, "FindCoordinator", "deny")), \
        explain(res, bg)


@pytest.mark.single_build
def test_reload_ends_share_session_reads(start_busgate, tmp_path):
    """A share consumer in the middle of its share session: once a reload
    takes reading its topic away, its incremental ShareFetch (which names no
    partition, yet would fetch from all of them) is answered
    SHARE_SESSION_NOT_FOUND; the session it opens again is refused the
    topic; not one record produced after the reload reaches it."""
    text, ports = busgate_config(tmp_path, RULES)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    bootstrap = f"127.0.0.1:{ports['listen']}"
    topic, group = unique("share-rl"), unique("share-g")
    create_topics([topic])
    produce_direct(topic, range(N))
    res = run_client(tmp_path, "java", bootstrap, oauth_creds(), "admin-set-group-config",
                     group, "share.auto.offset.reset", "earliest")
    assert res["_exit"] == 0, explain(res, bg)

    env = client_env(tmp_path, "java", timeout_ms=60000)
    env["BG_INTEROP_SHARE_UNTIL_DENIED"] = "1"
    out = tmp_path / "consumer.out"
    with open(out, "w") as fout:
        consumer = subprocess.Popen([RUN_CLIENT, "java", bootstrap, *oauth_creds(),
                                     "share-consume", topic, group, str(N)],
                                    stdout=fout, stderr=subprocess.STDOUT, env=env)
    try:
        # Several ShareFetch requests of the group allowed: the consumer's
        # share session is open and its requests are incremental.
        assert wait_audit(ports["audit"], lambda e: e.get("kind") == "decision" and
                          e["api"]["name"] == "ShareFetch" and group in names(e) and
                          e["decision"]["effect"] == "allow", count=4, timeout=60), \
            out.read_text()[-4000:]
        reloads = scrape(ports["admin"], "busgate_reloads_total", {"result": "ok"})
        # Keep describe (the heartbeat goes on passing): reading is what goes.
        new_text = text.replace("verbs: [write, read, describe, create]",
                                "verbs: [write, describe, create]")
        assert new_text != text
        bg.config_path.write_text(new_text)
        bg.signal(signal.SIGHUP)
        assert wait_until(lambda: scrape(ports["admin"], "busgate_reloads_total",
                                         {"result": "ok"}) > reloads)
        # The first ShareFetch decided after the reload: the session reset.
        reset = wait_audit(ports["audit"], lambda e: e.get("kind") == "decision" and
                           e["api"]["name"] == "ShareFetch" and
                           e["decision"]["effect"] == "deny" and
                           e["result"]["error_code"] == 122, timeout=30)
        assert reset, json.dumps(decisions(ports, "ShareFetch")[-5:], indent=1)
        produce_direct(topic, range(1000, 1000 + N))
        consumer.wait(timeout=120)
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait(timeout=30)
    lines = [l for l in out.read_text().splitlines() if l.startswith("{")]
    assert lines, out.read_text()[-4000:]
    got = json.loads(lines[-1])
    assert got["ok"] and got["error"] == "TopicAuthorizationException", out.read_text()[-4000:]
    assert sorted(set(got["seqs"])) == list(range(N)), got  # nothing after the reload
    # The session the client opened again was refused the topic by ShareFetch.
    assert any(topic in names(e) and e["verb"] == "read" and e["result"]["error_code"] == 29
               for e in decisions(ports, "ShareFetch", "deny")), \
        json.dumps(decisions(ports, "ShareFetch")[-5:], indent=1)


DESCRIBE_RULES = RULES + """    - name: reporting-sees-share-groups
      subjects: [group:reporting]
      resources: ["kafka:group:share-g-*"]
      verbs: [describe]
      effect: allow
"""


@pytest.mark.single_build
def test_java_describe_share_group(start_busgate, tmp_path):
    """While a share consumer is a member, the AdminClient's
    describeShareGroups (ShareGroupDescribe) shows the member and its topic
    to svc-orders; svc-reporting, which may describe share-g-* groups but no
    share-* topic, is refused with TopicAuthorizationException (the group is
    hidden), and a group it may not describe with GroupAuthorizationException."""
    text, ports = busgate_config(tmp_path, DESCRIBE_RULES)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    bootstrap = f"127.0.0.1:{ports['listen']}"
    topic, group = unique("share-d"), unique("share-g")
    create_topics([topic])
    env = client_env(tmp_path, "java", timeout_ms=300000)
    member = subprocess.Popen([RUN_CLIENT, "java", bootstrap, *oauth_creds(), "share-consume",
                               topic, group, "1000"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            seen = run_client(tmp_path, "java", bootstrap, oauth_creds(),
                              "admin-describe-share-group", group)
            # Until the member has joined, the group does not exist.
            assert seen["_exit"] == 0 or seen.get("error") == "GroupIdNotFoundException", \
                explain(seen, bg)
            if seen["_exit"] == 0 and seen["members"] >= 1 and topic in seen["topics"]:
                break
            assert time.monotonic() < deadline and member.poll() is None, explain(seen, bg)
            time.sleep(1)
        assert any(group in names(e) and e["decision"]["effect"] == "allow"
                   for e in decisions(ports, "ShareGroupDescribe")), explain(seen, bg)
        hidden = run_client(tmp_path, "java", bootstrap, oauth_creds("svc-reporting"),
                            "admin-describe-share-group-expect-denied", group)
        assert hidden["_exit"] == 0 and hidden["error"] == "TopicAuthorizationException", \
            explain(hidden, bg)
        assert topic not in hidden.get("message", ""), explain(hidden, bg)
        other = unique("other-g")
        refused = run_client(tmp_path, "java", bootstrap, oauth_creds("svc-reporting"),
                             "admin-describe-share-group-expect-denied", other)
        assert refused["_exit"] == 0 and refused["error"] == "GroupAuthorizationException", \
            explain(refused, bg)
    finally:
        member.kill()
        member.wait(timeout=30)
