"""Interop through busgate: Kafka clients nobody here wrote (the Java
kafka-clients, librdkafka via confluent-kafka, kafka-python, franz-go,
KafkaJS) produce, consume in a group (the classic protocol, and the Java,
librdkafka and franz-go clients with the KIP-848 consumer protocol), get
denied, administer topics and use transactions through busgate in front of
the real test broker.

Each test starts busgate, runs tests/interop/run-client.sh with a bounded
timeout and asserts on the client's one-line JSON result. The broker lets
every principal do everything (no ACLs, see docs/testing.md), so every
denial asserted here comes from busgate's policy; the audit file confirms it.
The Java program runs several scenarios per JVM (`suite`) to keep the JVM
starts down.
"""
import json
import os
import subprocess
import time

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import (AclBindingFilter, AclOperation, AclPermissionType,
                                   AdminClient, ConfigResource, NewTopic, ResourcePatternType,
                                   ResourceType)

from conftest import ROOT
from kafka_env import (KAFKA_PLAIN, OIDC, UPSTREAM_USER, audit_events, busgate_config,
                       oidc_token, unique)

RUN_CLIENT = str(ROOT / "tests" / "interop" / "run-client.sh")
TOKEN_URL = OIDC + "/token"
N = 20
# Bounds one client run (built beforehand by the interop_clients fixture);
# the clients bound each of their own waits by BG_INTEROP_TIMEOUT_MS.
CLIENT_TIMEOUT_MS = 30000
RUN_TIMEOUT_S = 120
BUILD_TIMEOUT_S = 900

RULES = """    - name: orders-interop-topics
      subjects: [group:orders]
      resources: ["kafka:topic:interop-*"]
      verbs: [write, read, describe, create]
      effect: allow
    - name: orders-interop-groups
      subjects: [group:orders]
      resources: ["kafka:group:interop-*"]
      verbs: [read, describe]
      effect: allow
    - name: orders-interop-txn
      subjects: [group:orders]
      resources: ["kafka:transactional-id:interop-tx-*"]
      verbs: [write, describe]
      effect: allow
"""

# Consumer settings per client library (its own key names); short sessions
# keep group rebalances quick.
CONSUMER_PROPS = {
    "java": "session.timeout.ms=6000\n",
    "rdkafka": "session.timeout.ms=6000\n",
    "kafka-python": "session_timeout_ms=6000\n",
    "franz-go": "session.timeout.ms=6000\n",
    "kafkajs": "sessionTimeout=6000\n",
}


@pytest.fixture(scope="module", autouse=True)
def interop_clients():
    """Builds the Java jar and the Go program, installs the Python venv and
    KafkaJS, once (cached across sessions), so no test's time bound includes
    a build."""
    for lang in ("java", "rdkafka", "franz-go", "kafkajs"):
        p = subprocess.run([RUN_CLIENT, lang, "--build"], capture_output=True, text=True,
                           timeout=BUILD_TIMEOUT_S)
        assert p.returncode == 0, f"building the {lang} interop client failed:\n{p.stderr[-4000:]}"


def client_env(tmp_path, lang, consumer=False, props=None, timeout_ms=CLIENT_TIMEOUT_MS):
    """Environment of one interop client run. consumer: pass CONSUMER_PROPS
    (kafka-python rejects them for a producer); props: these client
    properties instead."""
    env = {**os.environ, "BG_INTEROP_TIMEOUT_MS": str(timeout_ms)}
    env.pop("BG_INTEROP_PROPS_FILE", None)
    if consumer or props is not None:
        path = tmp_path / f"{lang}.properties"
        path.write_text(CONSUMER_PROPS[lang] if props is None else props)
        env["BG_INTEROP_PROPS_FILE"] = str(path)
    return env


def run_client(tmp_path, lang, bootstrap, creds, *scenario, consumer=False, props=None):
    """Runs one interop client; returns its parsed JSON result line."""
    env = client_env(tmp_path, lang, consumer, props)
    p = subprocess.run([RUN_CLIENT, lang, bootstrap, *creds, *scenario], capture_output=True,
                       text=True, timeout=RUN_TIMEOUT_S, env=env)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    assert lines, f"{lang} printed no result (exit {p.returncode}):\n{p.stdout}\n{p.stderr[-4000:]}"
    res = json.loads(lines[-1])
    res["_exit"] = p.returncode
    res["_stderr"] = p.stderr[-4000:]
    return res


def explain(res, bg=None):
    """Assertion message: the client's result and stderr, busgate's log tail."""
    msg = json.dumps({k: v for k, v in res.items() if k != "_stderr"}, indent=1)
    msg += "\n--- client stderr:\n" + res.get("_stderr", "")
    if bg is not None:
        msg += "\n--- busgate log:\n" + bg.log_path.read_text()[-4000:]
    return msg


def oauth_creds(client_id="svc-orders"):
    return ["OAUTHBEARER", TOKEN_URL, client_id, client_id + "-secret"]


def plain_creds(client_id="svc-orders"):
    # busgate ignores the PLAIN username; the password is the token.
    return ["PLAIN", "interop", oidc_token(client_id)]


@pytest.fixture
def gate(start_busgate, tmp_path):
    """busgate with the interop policy; returns (bootstrap, Busgate, ports)."""
    text, ports = busgate_config(tmp_path, RULES)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    return f"127.0.0.1:{ports['listen']}", bg, ports


def denied_in_audit(ports, name, *verbs, timeout=5.0):
    """True when busgate's audit file has a deny decision on resource name for
    one of verbs. Polls: the audit thread writes the file asynchronously."""
    deadline = time.monotonic() + timeout
    while True:
        for e in audit_events(ports["audit"]):
            if e.get("kind") == "decision" and e.get("verb") in verbs and \
                    e["decision"]["effect"] == "deny" and \
                    any(r.get("name") == name for r in e.get("resources", [])):
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def check_values(values, client, n):
    """Sampled record values are the JSON the producing client wrote."""
    assert values, "no values sampled"
    seqs = []
    for v in values:
        rec = json.loads(v)
        assert rec["client"] == client and 0 <= rec["seq"] < n
        seqs.append(rec["seq"])
    assert len(set(seqs)) == len(seqs), f"a record sampled twice: {sorted(seqs)}"


DENIED_ERRORS = {
    "java": ("TopicAuthorizationException", "GroupAuthorizationException"),
    "rdkafka": ("TOPIC_AUTHORIZATION_FAILED", "GROUP_AUTHORIZATION_FAILED"),
    "kafka-python": ("TopicAuthorizationFailedError", "GroupAuthorizationFailedError"),
    "franz-go": ("TOPIC_AUTHORIZATION_FAILED", "GROUP_AUTHORIZATION_FAILED"),
    "kafkajs": ("TOPIC_AUTHORIZATION_FAILED", "GROUP_AUTHORIZATION_FAILED"),
}


def java_round_trip(tmp_path, bootstrap, bg, ports, creds):
    """Produce N, consume them in a group, then three denials: produce to and
    consume from a topic outside the policy, consume with a group outside it."""
    topic, group, denied = unique("interop-java"), unique("interop-g"), unique("denied")
    res = run_client(tmp_path, "java", bootstrap, creds, "suite",
                     "produce", topic, str(N), "--",
                     "consume-group", topic, group, str(N), "--",
                     "produce-expect-denied", denied, "--",
                     "consume-expect-denied", denied, unique("interop-g"), "--",
                     "consume-expect-denied", topic, unique("other-g"), consumer=True)
    assert res["_exit"] == 0 and res["ok"], explain(res, bg)
    produced, consumed, no_write, no_read, no_group = res["steps"]
    assert produced["produced"] == N, explain(res, bg)
    assert consumed["consumed"] >= N and consumed.get("committed") is True, explain(res, bg)
    check_values(consumed["values"], "java", N)
    topic_err, group_err = DENIED_ERRORS["java"]
    assert no_write["error"] == topic_err and no_read["error"] == topic_err, explain(res, bg)
    assert no_group["error"] == group_err and no_group["consumed"] == 0, explain(res, bg)
    assert denied_in_audit(ports, denied, "write", "describe")
    assert denied_in_audit(ports, no_group["group"], "describe", "read")


def python_round_trip(tmp_path, lang, bootstrap, bg, ports, creds):
    """As java_round_trip, one client run per scenario (Python starts fast)."""
    topic, group, denied = unique(f"interop-{lang}"), unique("interop-g"), unique("denied")
    topic_err, _ = DENIED_ERRORS[lang]
    prod = run_client(tmp_path, lang, bootstrap, creds, "produce", topic, str(N))
    assert prod["_exit"] == 0 and prod["produced"] == N, explain(prod, bg)
    cons = run_client(tmp_path, lang, bootstrap, creds, "consume-group", topic, group, str(N),
                      consumer=True)
    assert cons["_exit"] == 0 and cons["consumed"] >= N and cons.get("committed"), \
        explain(cons, bg)
    check_values(cons["values"], lang, N)
    den = run_client(tmp_path, lang, bootstrap, creds, "produce-expect-denied", denied)
    assert den["_exit"] == 0 and den["error"] == topic_err, explain(den, bg)
    den = run_client(tmp_path, lang, bootstrap, creds, "consume-expect-denied", denied,
                     unique("interop-g"), consumer=True)
    assert den["_exit"] == 0 and den["error"] == topic_err and den["consumed"] == 0, \
        explain(den, bg)
    assert denied_in_audit(ports, denied, "write", "describe")


def test_java_oauthbearer_client_credentials(gate, tmp_path):
    bootstrap, bg, ports = gate
    java_round_trip(tmp_path, bootstrap, bg, ports, oauth_creds())


def test_java_plain_token_password(gate, tmp_path):
    bootstrap, bg, ports = gate
    java_round_trip(tmp_path, bootstrap, bg, ports, plain_creds())


def group_denial(tmp_path, lang, bootstrap, bg, ports, creds):
    """A group outside the policy on an allowed topic, made beforehand
    (KafkaJS's subscribe fails on a topic the same Metadata request has just
    auto-created): nothing consumed, the client names the group refusal,
    the deny audited. KafkaJS turns the refused FindCoordinator into
    KafkaJSGroupCoordinatorNotFound; its client reports the refusal KafkaJS
    logged as broker_error."""
    topic, other = unique(f"interop-{lang}"), unique("other-g")
    create_topic_directly(topic)
    den = run_client(tmp_path, lang, bootstrap, creds, "consume-expect-denied", topic, other,
                     consumer=True)
    group_err = DENIED_ERRORS[lang][1]
    if lang == "kafkajs":
        named = den["error"] == "KafkaJSGroupCoordinatorNotFound" and \
            den.get("broker_error") == group_err
    else:
        named = den["error"] == group_err
    assert den["_exit"] == 0 and named and den["consumed"] == 0, explain(den, bg)
    assert denied_in_audit(ports, other, "describe", "read")


@pytest.mark.parametrize("lang,login", [
    ("rdkafka", "oauthbearer"), ("rdkafka", "plain"),
    ("kafka-python", "oauthbearer"), ("kafka-python", "plain"),
    ("franz-go", "oauthbearer"), ("franz-go", "plain"),
    ("kafkajs", "oauthbearer"), ("kafkajs", "plain"),
])
def test_round_trip(gate, tmp_path, lang, login):
    """Produce, consume in a group, the topic denials, then the group
    denial. OAUTHBEARER: librdkafka's sasl.oauthbearer.method=oidc,
    kafka-python's token provider, franz-go's sasl/oauth and KafkaJS's
    oauthBearerProvider, each running the client-credentials grant against
    the test provider; PLAIN: the token as the password. KafkaJS sends older
    request versions than the Java client: Produce v7, Fetch v11, Metadata
    v6, JoinGroup v5."""
    bootstrap, bg, ports = gate
    creds = oauth_creds() if login == "oauthbearer" else plain_creds()
    python_round_trip(tmp_path, lang, bootstrap, bg, ports, creds)
    group_denial(tmp_path, lang, bootstrap, bg, ports, creds)


def audit_decision(ports, api, effect, name, timeout=5.0):
    """True when the audit file has a decision of api with effect on name."""
    deadline = time.monotonic() + timeout
    while True:
        for e in audit_events(ports["audit"]):
            if e.get("kind") == "decision" and e["api"]["name"] == api and \
                    e["decision"]["effect"] == effect and \
                    any(r.get("name") == name for r in e.get("resources", [])):
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


KIP848_RULES = RULES + """    - name: reporting-sees-interop-groups
      subjects: [group:reporting]
      resources: ["kafka:group:interop-*"]
      verbs: [describe]
      effect: allow
"""


def test_java_consumer_group_protocol(start_busgate, tmp_path):
    """The KIP-848 consumer protocol (group.protocol=consumer:
    ConsumerGroupHeartbeat, ConsumerGroupDescribe) through busgate: consume
    in a group, a denied topic and a denied group; then, while a member holds
    an assignment, the AdminClient describes the group for a principal that
    may see the topic and is refused for one that may describe the group but
    not the assigned topic."""
    text, ports = busgate_config(tmp_path, KIP848_RULES)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    bootstrap = f"127.0.0.1:{ports['listen']}"
    kip848 = "group.protocol=consumer\n"
    topic, group, denied = unique("interop-848"), unique("interop-g"), unique("denied")
    other_group = unique("other-g")
    res = run_client(tmp_path, "java", bootstrap, oauth_creds(), "suite",
                     "produce", topic, str(N), "--",
                     "consume-group", topic, group, str(N), "--",
                     "consume-expect-denied", denied, unique("interop-g"), "--",
                     "consume-expect-denied", topic, other_group, "--",
                     "consume-pattern-expect-denied", "interop-848.*", unique("interop-g"),
                     props=kip848)
    assert res["_exit"] == 0 and res["ok"], explain(res, bg)
    _, consumed, no_topic, no_group, no_pattern = res["steps"]
    assert consumed["consumed"] >= N and consumed.get("committed") is True, explain(res, bg)
    check_values(consumed["values"], "java", N)
    assert no_topic["error"] == "TopicAuthorizationException", explain(res, bg)
    assert no_group["error"] == "GroupAuthorizationException" and no_group["consumed"] == 0, \
        explain(res, bg)
    assert audit_decision(ports, "ConsumerGroupHeartbeat", "allow", group), explain(res, bg)
    # A pattern the broker would resolve under busgate's credential, against
    # every topic: refused even though every topic it names here is allowed.
    assert no_pattern["error"] == "TopicAuthorizationException", explain(res, bg)
    assert audit_decision(ports, "ConsumerGroupHeartbeat", "deny", "interop-848.*"), \
        explain(res, bg)
    # The coordinator lookup (describe group) is refused before any heartbeat.
    assert denied_in_audit(ports, other_group, "describe", "read"), explain(res, bg)
    assert audit_decision(ports, "ConsumerGroupHeartbeat", "deny", denied), explain(res, bg)

    # A member that stays: it waits for more records than there are.
    live = unique("interop-g")
    live_dir = tmp_path / "live"
    live_dir.mkdir()
    env = client_env(live_dir, "java", props=kip848, timeout_ms=300000)
    member = subprocess.Popen([RUN_CLIENT, "java", bootstrap, *oauth_creds(), "consume-group",
                               topic, live, str(N + 1000)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            seen = run_client(tmp_path, "java", bootstrap, oauth_creds(), "admin-describe-group",
                              live)
            # Until the member has joined, the group does not exist.
            assert seen["_exit"] == 0 or seen.get("error") == "GroupIdNotFoundException", \
                explain(seen, bg)
            if seen["_exit"] == 0 and seen["members"] >= 1 and topic in seen["topics"]:
                break
            assert time.monotonic() < deadline and member.poll() is None, explain(seen, bg)
            time.sleep(1)
        assert seen["type"].lower() == "consumer", explain(seen, bg)
        assert audit_decision(ports, "ConsumerGroupDescribe", "allow", live), explain(seen, bg)
        # svc-reporting may describe interop-* groups but no interop topic.
        hidden = run_client(tmp_path, "java", bootstrap, oauth_creds("svc-reporting"),
                            "admin-describe-group-expect-denied", live)
        assert hidden["_exit"] == 0 and hidden["error"] == "TopicAuthorizationException", \
            explain(hidden, bg)
        assert "message" in hidden and topic not in hidden["message"], explain(hidden, bg)
        refused = run_client(tmp_path, "java", bootstrap, oauth_creds("svc-reporting"),
                             "admin-describe-group-expect-denied", other_group)
        assert refused["_exit"] == 0 and refused["error"] == "GroupAuthorizationException", \
            explain(refused, bg)
    finally:
        member.kill()
        member.wait(timeout=30)


def create_topic_directly(name):
    """Creates a topic on the PLAINTEXT setup listener, bypassing busgate."""
    a = AdminClient({"bootstrap.servers": KAFKA_PLAIN})
    a.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)],
                    request_timeout=15)[name].result(20)


def topic_exists_directly(name):
    a = AdminClient({"bootstrap.servers": KAFKA_PLAIN})
    return name in a.list_topics(timeout=15).topics


def test_java_admin_list_create_delete(gate, tmp_path):
    bootstrap, bg, ports = gate
    hidden, visible = unique("hidden"), unique("interop-visible")
    created, victim = unique("interop-created"), unique("interop-victim")
    for t in (hidden, visible, victim):
        create_topic_directly(t)
    res = run_client(tmp_path, "java", bootstrap, oauth_creds(), "suite",
                     "admin-list-topics", "--",
                     "admin-create-topic", created, "--",
                     "admin-delete-topic-expect-denied", victim)
    assert res["_exit"] == 0 and res["ok"], explain(res, bg)
    listed, create, delete = res["steps"]
    assert visible in listed["topics"] and victim in listed["topics"], explain(res, bg)
    assert hidden not in listed["topics"], explain(res, bg)
    # Only topics the policy lets group:orders describe are visible.
    assert all(t.startswith("interop-") for t in listed["topics"]), explain(res, bg)
    assert create.get("created") is True, explain(res, bg)
    assert delete["error"] == "TopicAuthorizationException", explain(res, bg)
    assert topic_exists_directly(created)
    # Deletion is asynchronous on the broker, so this alone proves little; the
    # client's error and the audit deny say busgate answered it.
    assert topic_exists_directly(victim), "the denied delete reached the broker"
    assert denied_in_audit(ports, victim, "delete")


@pytest.mark.parametrize("lang", ["rdkafka", "franz-go"])
def test_kip848_consumer_group_protocol(gate, tmp_path, lang):
    """librdkafka and franz-go (ServerSideBalancer) with the KIP-848
    consumer protocol (group.protocol=consumer) through busgate: consume in
    a group; a denied topic and a denied group. franz-go asks for the
    topic's metadata before any heartbeat names it, so busgate refuses that
    Metadata; librdkafka's heartbeat naming it is refused."""
    bootstrap, bg, ports = gate
    kip848 = "group.protocol=consumer\n"
    topic, group = unique(f"interop-848-{lang}"), unique("interop-g")
    topic_err, group_err = DENIED_ERRORS[lang]
    prod = run_client(tmp_path, lang, bootstrap, oauth_creds(), "produce", topic, str(N))
    assert prod["_exit"] == 0 and prod["produced"] == N, explain(prod, bg)
    cons = run_client(tmp_path, lang, bootstrap, oauth_creds(), "consume-group", topic,
                      group, str(N), props=kip848)
    assert cons["_exit"] == 0 and cons["consumed"] >= N and cons.get("committed"), \
        explain(cons, bg)
    check_values(cons["values"], lang, N)
    assert audit_decision(ports, "ConsumerGroupHeartbeat", "allow", group), explain(cons, bg)
    denied, other = unique("denied"), unique("other-g")
    for t, g, err in ((denied, unique("interop-g"), topic_err), (topic, other, group_err)):
        den = run_client(tmp_path, lang, bootstrap, oauth_creds(), "consume-expect-denied",
                         t, g, props=kip848)
        assert den["_exit"] == 0 and den["error"] == err and den["consumed"] == 0, \
            explain(den, bg)
    api = "Metadata" if lang == "franz-go" else "ConsumerGroupHeartbeat"
    assert audit_decision(ports, api, "deny", denied), explain(den, bg)
    assert denied_in_audit(ports, other, "describe", "read")


OPS_RULES = RULES + """    - name: platform-admin-describes
      subjects: [group:platform-admin]
      resources: ["kafka:cluster", "kafka:topic:interop-*"]
      verbs: [describe]
      effect: allow
"""


def test_java_admin_authorized_operations(start_busgate, tmp_path):
    """describeTopics / describeCluster with includeAuthorizedOperations: the
    broker computes the operations for busgate's own credential; the client
    gets those its policy allows. DescribeCluster is open to every principal,
    as in Kafka."""
    text, ports = busgate_config(tmp_path, OPS_RULES)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    bootstrap = f"127.0.0.1:{ports['listen']}"
    topic = unique("interop-ops")
    create_topic_directly(topic)
    res = run_client(tmp_path, "java", bootstrap, oauth_creds(), "admin-describe-topic", topic)
    assert res["_exit"] == 0 and res["ok"], explain(res, bg)
    # group:orders: write, read, describe and create on interop-* topics;
    # describe covers DESCRIBE_CONFIGS.
    assert res["operations"] == ["CREATE", "DESCRIBE", "DESCRIBE_CONFIGS", "READ", "WRITE"], \
        explain(res, bg)
    # No cluster rule for group:orders: the broker list is open (the Java
    # AdminClient asks for it before describeTopics), the operations empty.
    assert "cluster_error" not in res and res["cluster_operations"] == [], explain(res, bg)
    res = run_client(tmp_path, "java", bootstrap, oauth_creds("svc-admin"),
                     "admin-describe-topic", topic)
    assert res["_exit"] == 0 and res["ok"], explain(res, bg)
    assert res["operations"] == ["DESCRIBE", "DESCRIBE_CONFIGS"], explain(res, bg)
    # IDEMPOTENT_WRITE is `write` on the cluster, which svc-admin lacks.
    assert sorted(res["cluster_operations"]) == ["DESCRIBE", "DESCRIBE_CONFIGS"], \
        explain(res, bg)


def test_java_transactions_by_transactional_id(gate, tmp_path):
    bootstrap, bg, ports = gate
    topic, group = unique("interop-txn"), unique("interop-g")
    allowed, denied = unique("interop-tx"), unique("other-tx")
    res = run_client(tmp_path, "java", bootstrap, oauth_creds(), "suite",
                     "txn-produce", allowed, topic, str(N), "--",
                     "consume-group", topic, group, str(N), "--",
                     "txn-produce-expect-denied", denied, topic, consumer=True)
    assert res["_exit"] == 0 and res["ok"], explain(res, bg)
    txn, consumed, refused = res["steps"]
    assert txn["produced"] == N, explain(res, bg)
    # read_committed: the records are visible only because the commit worked.
    assert consumed["consumed"] >= N, explain(res, bg)
    check_values(consumed["values"], "java", N)
    assert refused["error"] == "TransactionalIdAuthorizationException", explain(res, bg)
    assert denied_in_audit(ports, denied, "describe", "write")


TXN_ABORT_RULES = RULES + """    - name: platform-admin-aborts
      subjects: [group:platform-admin]
      resources: ["kafka:cluster", "kafka:topic:interop-*"]
      verbs: [alter, read, describe]
      effect: allow
"""


def test_java_admin_aborts_hanging_transaction(start_busgate, tmp_path):
    """kafka-transactions.sh abort through busgate (Admin describeProducers +
    abortTransaction, i.e. WriteTxnMarkers): a producer leaves a transaction
    open; svc-orders (no alter on the cluster) is refused; svc-admin aborts
    it and no open transaction is left."""
    text, ports = busgate_config(tmp_path, TXN_ABORT_RULES)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    bootstrap = f"127.0.0.1:{ports['listen']}"
    topic = unique("interop-hang")
    create_topic_directly(topic)
    hang = run_client(tmp_path, "java", bootstrap, oauth_creds(), "txn-hang",
                      unique("interop-tx"), topic)
    assert hang["_exit"] == 0 and hang["ok"], explain(hang, bg)
    refused = run_client(tmp_path, "java", bootstrap, oauth_creds(),
                         "admin-abort-hanging-expect-denied", topic)
    assert refused["_exit"] == 0 and refused["error"] == "ClusterAuthorizationException", \
        explain(refused, bg)
    assert audit_decision(ports, "WriteTxnMarkers", "deny", ""), explain(refused, bg)
    aborted = run_client(tmp_path, "java", bootstrap, oauth_creds("svc-admin"),
                         "admin-abort-hanging", topic)
    assert aborted["_exit"] == 0 and aborted["ok"], explain(aborted, bg)
    assert aborted["producer_id"] == refused["producer_id"] and aborted["open_after"] == 0, \
        explain(aborted, bg)
    assert audit_decision(ports, "WriteTxnMarkers", "allow", ""), explain(aborted, bg)


def test_rdkafka_admin_and_kafka_python_listing(gate, tmp_path):
    """librdkafka's AdminClient: list (hidden topic left out), create, delete
    denied; kafka-python's admin listing hides the same topic."""
    bootstrap, bg, ports = gate
    hidden, created, victim = unique("hidden"), unique("interop-created"), unique("interop-victim")
    for t in (hidden, victim):
        create_topic_directly(t)
    listed = run_client(tmp_path, "rdkafka", bootstrap, oauth_creds(), "admin-list-topics")
    assert listed["_exit"] == 0 and victim in listed["topics"], explain(listed, bg)
    assert hidden not in listed["topics"], explain(listed, bg)
    assert all(t.startswith("interop-") for t in listed["topics"]), explain(listed, bg)
    kp = run_client(tmp_path, "kafka-python", bootstrap, plain_creds(), "admin-list-topics")
    assert kp["_exit"] == 0 and victim in kp["topics"] and hidden not in kp["topics"], \
        explain(kp, bg)
    res = run_client(tmp_path, "rdkafka", bootstrap, oauth_creds(), "admin-create-topic", created)
    assert res["_exit"] == 0 and res.get("created") is True, explain(res, bg)
    res = run_client(tmp_path, "rdkafka", bootstrap, oauth_creds(),
                     "admin-delete-topic-expect-denied", victim)
    assert res["_exit"] == 0 and res["error"] == "TOPIC_AUTHORIZATION_FAILED", explain(res, bg)
    assert topic_exists_directly(created)
    # Deletion is asynchronous on the broker, so this alone proves little; the
    # client's error and the audit deny say busgate answered it.
    assert topic_exists_directly(victim), "the denied delete reached the broker"
    assert denied_in_audit(ports, victim, "delete")


def test_rdkafka_transactions_by_transactional_id(gate, tmp_path):
    bootstrap, bg, ports = gate
    topic, group = unique("interop-txn"), unique("interop-g")
    allowed, denied = unique("interop-tx"), unique("other-tx")
    txn = run_client(tmp_path, "rdkafka", bootstrap, plain_creds(), "txn-produce", allowed,
                     topic, str(N))
    assert txn["_exit"] == 0 and txn["produced"] == N, explain(txn, bg)
    cons = run_client(tmp_path, "rdkafka", bootstrap, plain_creds(), "consume-group", topic,
                      group, str(N), consumer=True)
    assert cons["_exit"] == 0 and cons["consumed"] >= N, explain(cons, bg)
    check_values(cons["values"], "rdkafka", N)
    den = run_client(tmp_path, "rdkafka", bootstrap, plain_creds(), "txn-produce-expect-denied",
                     denied, topic)
    assert den["_exit"] == 0 and den["error"] == "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", \
        explain(den, bg)
    assert denied_in_audit(ports, denied, "describe", "write")


@pytest.mark.parametrize("lang", ["java", "rdkafka", "kafka-python", "franz-go", "kafkajs"])
def test_principal_without_groups_is_denied(gate, tmp_path, lang):
    """svc-intruder authenticates (valid token) but no rule matches it: even
    a topic group:orders may write is denied."""
    bootstrap, bg, ports = gate
    topic = unique("interop-intruder")
    res = run_client(tmp_path, lang, bootstrap, plain_creds("svc-intruder"),
                     "produce-expect-denied", topic)
    assert res["_exit"] == 0 and res["error"] == DENIED_ERRORS[lang][0], explain(res, bg)
    assert denied_in_audit(ports, topic, "write", "describe")



ADMIN_RULES = RULES + """    - name: orders-alter-interop-alt
      subjects: [group:orders]
      resources: ["kafka:topic:interop-alt-*"]
      verbs: [alter]
      effect: allow
    - name: platform-admin-alters-cluster
      subjects: [group:platform-admin]
      resources: ["kafka:cluster"]
      verbs: [alter]
      effect: allow
"""

RETENTION = "3600000"


@pytest.fixture
def admin_gate(start_busgate, tmp_path):
    """busgate with ADMIN_RULES; returns (bootstrap, Busgate, ports)."""
    text, ports = busgate_config(tmp_path, ADMIN_RULES)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    return f"127.0.0.1:{ports['listen']}", bg, ports


def topic_config_directly(name, key):
    a = AdminClient({"bootstrap.servers": KAFKA_PLAIN})
    res = ConfigResource(ResourceType.TOPIC, name)
    return a.describe_configs([res], request_timeout=15)[res].result(20)[key].value


def partitions_directly(name):
    a = AdminClient({"bootstrap.servers": KAFKA_PLAIN})
    return len(a.list_topics(name, timeout=15).topics[name].partitions)


def acls_directly(**filt):
    """The broker's ACL bindings matching filt (resource_name, principal)."""
    a = AdminClient({"bootstrap.servers": KAFKA_PLAIN})
    f = AclBindingFilter(ResourceType.ANY, filt.get("resource_name"), ResourcePatternType.ANY,
                         filt.get("principal"), None, AclOperation.ANY, AclPermissionType.ANY)
    return a.describe_acls(f, request_timeout=15).result(20)


def test_java_admin_refusals(admin_gate, tmp_path):
    """The Java AdminClient meets busgate's refusals of admin requests:
    svc-orders may read, write, describe and create interop-* topics, alter
    only interop-alt-* ones, read and describe interop-* groups, and has
    nothing on the cluster. Each refusal reaches the client as Kafka's own
    exception class, and the broker's state is left as it was."""
    bootstrap, bg, ports = admin_gate
    topic, alt, hidden = unique("interop-adm"), unique("interop-alt"), unique("hidden")
    group, acl_user = unique("interop-g"), "User:" + unique("interop-acl")
    for t in (topic, alt, hidden):
        create_topic_directly(t)
    res = run_client(tmp_path, "java", bootstrap, oauth_creds(), "suite",
                     "produce", topic, "5", "--",
                     "consume-group", topic, group, "5", "--",
                     "admin-create-partitions-expect-denied", topic, "3", "--",
                     "admin-alter-topic-config-expect-denied", topic, "retention.ms", RETENTION,
                     "--",
                     "admin-alter-topic-config", alt, "retention.ms", RETENTION, "--",
                     "admin-describe-topic-config", topic, "--",
                     "admin-describe-topic-config-expect-denied", hidden, "--",
                     "admin-delete-records-expect-denied", topic, "5", "--",
                     "admin-delete-group-expect-denied", group, "--",
                     "admin-create-acls-expect-denied", f"TOPIC,{topic},{acl_user}", "--",
                     "admin-reassign-expect-denied", topic, "--",
                     "admin-elect-leaders-expect-denied", topic, consumer=True)
    assert res["_exit"] == 0 and res["ok"], explain(res, bg)
    (_, consumed, partitions, alter_denied, altered, described, describe_denied, records,
     delete_group, acls, reassign, elect) = res["steps"]
    assert consumed["consumed"] >= 5 and consumed.get("committed") is True, explain(res, bg)
    assert partitions["error"] == "TopicAuthorizationException", explain(res, bg)
    assert alter_denied["error"] == "TopicAuthorizationException", explain(res, bg)
    assert altered["ok"] and "error" not in altered, explain(res, bg)
    assert described["configs"] > 0, explain(res, bg)
    assert describe_denied["error"] == "TopicAuthorizationException", explain(res, bg)
    assert records["error"] == "TopicAuthorizationException", explain(res, bg)
    assert delete_group["error"] == "GroupAuthorizationException", explain(res, bg)
    # No alter on the cluster: the whole CreateAcls is refused, 31 per binding.
    assert [r["error"] for r in acls["results"]] == ["ClusterAuthorizationException"], \
        explain(res, bg)
    assert acls["results"][0]["message"] == "Cluster authorization failed.", explain(res, bg)
    assert reassign["error"] == "ClusterAuthorizationException", explain(res, bg)
    assert elect["error"] == "ClusterAuthorizationException", explain(res, bg)

    for api, name in (("CreatePartitions", topic), ("IncrementalAlterConfigs", topic),
                      ("DescribeConfigs", hidden), ("DeleteRecords", topic),
                      ("DeleteGroups", group), ("CreateAcls", ""),
                      ("AlterPartitionReassignments", ""), ("ElectLeaders", "")):
        assert audit_decision(ports, api, "deny", name), f"no {api} deny of {name!r} audited"
    assert audit_decision(ports, "IncrementalAlterConfigs", "allow", alt)
    # The broker's state: only the allowed change happened.
    assert partitions_directly(topic) == 1
    assert topic_config_directly(topic, "retention.ms") != RETENTION
    assert topic_config_directly(alt, "retention.ms") == RETENTION
    low, high = Consumer({"bootstrap.servers": KAFKA_PLAIN, "group.id": unique("check")}) \
        .get_watermark_offsets(TopicPartition(topic, 0), timeout=15)
    assert (low, high) == (0, 5), "the denied deleteRecords reached the broker"
    a = AdminClient({"bootstrap.servers": KAFKA_PLAIN})
    offsets = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                            request_timeout=15)[group].result(20)
    assert [(p.topic, p.offset) for p in offsets.topic_partitions] == [(topic, 5)], \
        "the denied deleteConsumerGroups reached the broker"
    assert acls_directly(principal=acl_user) == []


def test_java_admin_acl_refusals(admin_gate, tmp_path):
    """svc-admin may alter the cluster, yet busgate refuses the ACLs its own
    upstream credential would grant or be bound by (docs/kafka.md): one on
    the cluster, one for User:*, one naming busgate's own principal. The
    Java client gets ClusterAuthorizationException for each binding, with
    busgate's reason as the message; nothing reaches the broker."""
    bootstrap, bg, ports = admin_gate
    topic, acl_user = unique("interop-acl"), "User:" + unique("interop-acl")
    res = run_client(tmp_path, "java", bootstrap, oauth_creds("svc-admin"),
                     "admin-create-acls-expect-denied",
                     f"CLUSTER,kafka-cluster,{acl_user}", f"TOPIC,{topic},User:*",
                     f"TOPIC,{topic},User:{UPSTREAM_USER}")
    assert res["_exit"] == 0 and res["ok"], explain(res, bg)
    results = res["results"]
    assert [r["error"] for r in results] == ["ClusterAuthorizationException"] * 3, \
        explain(res, bg)
    assert results[0]["message"].startswith("ACL on the cluster, a user or a delegation token"), \
        explain(res, bg)
    assert results[1]["message"].startswith("ACL of any principal or User:*"), explain(res, bg)
    assert results[2]["message"] == "ACL naming busgate's upstream principal", explain(res, bg)
    assert audit_decision(ports, "CreateAcls", "deny", "")
    assert audit_decision(ports, "CreateAcls", "deny", topic)
    assert acls_directly(principal=acl_user) == []
    assert acls_directly(resource_name=topic) == []
