"""Group listing and cluster administration through busgate in front of the
real broker: ListGroups shows only the groups the principal may describe,
ACL changes that could touch the reserved audit topic are refused entry by
entry (busgate's upstream user is a super user on the test broker, so
anything forwarded would really happen), and re-authentication must keep
the same principal, issuer included."""
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   AdminClient, ResourcePatternType, ResourceType)

from conftest import run_cli
from keys import make_rsa_key
from kafka_env import (ERR_CLUSTER_AUTHZ, ERR_SASL_AUTH_FAILED, KAFKA_PLAIN, KafkaWire,
                       audit_events, busgate_config, client_conf, create_topics, kafka_topics,
                       local_issuer, oidc_token, setup_admin, unique, wait_audit, wait_until,
                       with_audit_topic)

RULES = """    - name: orders-see-some-groups
      subjects: [group:orders]
      resources: ["kafka:group:it-lg-ok-*"]
      verbs: [describe]
      effect: allow
    - name: admin-cluster
      subjects: [group:platform-admin]
      resources: ["kafka:cluster"]
      verbs: [describe, alter]
      effect: allow
"""


def start(start_busgate, tmp_path, text_fn=None, **kw):
    text, ports = busgate_config(tmp_path, RULES, **kw)
    if text_fn:
        text = text_fn(text)
    bg = start_busgate(text, wait_for_port=ports["listen"])
    return bg, ports, f"127.0.0.1:{ports['listen']}"


def _make_group(group, topic):
    """A group with a committed offset (state Empty), made on the broker directly."""
    c = Consumer({"bootstrap.servers": KAFKA_PLAIN, "group.id": group,
                  "enable.auto.commit": False, "session.timeout.ms": 6000})
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    finally:
        c.close()


def _listed(admin):
    res = admin.list_consumer_groups(request_timeout=15).result(timeout=20)
    return {g.group_id for g in res.valid}


def test_list_groups_shows_only_describable_groups(start_busgate, tmp_path):
    topic = unique("it-lg-topic")
    create_topics([topic])
    ok, hidden = unique("it-lg-ok"), unique("it-lg-no")
    _make_group(ok, topic)
    _make_group(hidden, topic)
    # Control: the broker itself lists both.
    assert wait_until(lambda: {ok, hidden} <= _listed(setup_admin()))

    bg, ports, boot = start(start_busgate, tmp_path)
    orders = AdminClient(client_conf(boot, oidc_token("svc-orders")))
    seen = wait_until(lambda: (lambda s: s if ok in s else None)(_listed(orders)))
    assert seen and ok in seen
    assert hidden not in seen
    assert all(g.startswith("it-lg-ok-") for g in seen), seen

    # Describe on the cluster: every group, as from the broker.
    admin = AdminClient(client_conf(boot, oidc_token("svc-admin")))
    assert wait_until(lambda: {ok, hidden} <= _listed(admin))

    # Hidden groups are not audited one by one (as topics hidden from
    # Metadata): the filtered listing is audited as an allow on group "*",
    # the cluster-wide listing as the cluster decision.
    assert wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                      and e["api"]["name"] == "ListGroups" and e["decision"]["effect"] == "allow"
                      and e["resources"][0] == {"type": "kafka:group", "name": "*"}
                      and "listing" in e.get("detail", "")
                      and e["decision"].get("by") == "busgate")
    assert wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                      and e["api"]["name"] == "ListGroups" and e["decision"]["effect"] == "allow"
                      and e["resources"][0]["type"] == "kafka:cluster"
                      and "by" not in e["decision"])  # the policy decided that one
    assert not [e for e in audit_events(ports["audit"])
                if any(r.get("name") == hidden for r in e.get("resources", []))]


def _acl(topic, principal, pattern=ResourcePatternType.LITERAL):
    return AclBinding(ResourceType.TOPIC, topic, pattern, principal, "*", AclOperation.READ,
                      AclPermissionType.ALLOW)


def _broker_acls(topic):
    flt = AclBindingFilter(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, None, None,
                           AclOperation.ANY, AclPermissionType.ANY)
    admin = setup_admin()  # must outlive the future
    return admin.describe_acls(flt, request_timeout=15).result(timeout=20)


def _error_code(fut):
    try:
        fut.result(timeout=20)
        return 0
    except KafkaException as e:
        return e.args[0].code()


def test_acls_on_the_audit_topic_are_refused(kafka_topics, start_busgate, tmp_path):
    audit_topic = kafka_topics(unique("busgate.audit"))
    other = unique("it-acl")
    principal = "User:" + unique("it-nobody")
    setup = setup_admin()
    try:
        bg, ports, boot = start(start_busgate, tmp_path, mechanism="PLAIN",
                                text_fn=lambda t: with_audit_topic(t, audit_topic))
        admin = AdminClient(client_conf(boot, oidc_token("svc-admin")))

        # CreateAcls: the audit topic's entry refused, the other one forwarded.
        futs = admin.create_acls([_acl(audit_topic, principal), _acl(other, principal)],
                                 request_timeout=15)
        codes = {b.name: _error_code(f) for b, f in futs.items()}
        assert codes == {audit_topic: ERR_CLUSTER_AUTHZ, other: 0}, codes
        # A prefix of the audit topic is refused too.
        futs = admin.create_acls([_acl(audit_topic[:8], principal, ResourcePatternType.PREFIXED)],
                                 request_timeout=15)
        assert [_error_code(f) for f in futs.values()] == [ERR_CLUSTER_AUTHZ]
        assert _broker_acls(audit_topic) == []
        assert wait_until(lambda: len(_broker_acls(other)) == 1)

        # DeleteAcls: an ACL on the audit topic (made directly on the broker)
        # survives a delete through busgate; the other topic's goes.
        for f in setup.create_acls([_acl(audit_topic, principal)], request_timeout=15).values():
            f.result(timeout=20)
        assert wait_until(lambda: len(_broker_acls(audit_topic)) == 1)
        flt = [AclBindingFilter(ResourceType.TOPIC, name, ResourcePatternType.LITERAL, principal,
                                None, AclOperation.ANY, AclPermissionType.ANY)
               for name in (audit_topic, other)]
        futs = admin.delete_acls(flt, request_timeout=15)
        codes = {b.name: _error_code(f) for b, f in futs.items()}
        assert codes == {audit_topic: ERR_CLUSTER_AUTHZ, other: 0}, codes
        assert wait_until(lambda: _broker_acls(other) == [])
        assert len(_broker_acls(audit_topic)) == 1

        denies = wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                            and e["api"]["name"] in ("CreateAcls", "DeleteAcls")
                            and e["decision"]["effect"] == "deny"
                            and e["result"]["error_code"] == ERR_CLUSTER_AUTHZ, count=3)
        assert denies and all("rule" not in e["decision"] for e in denies), denies
        assert all(e.get("detail") == "reserved audit topic" for e in denies), denies
        assert all(e["decision"].get("by") == "busgate" for e in denies), denies
    finally:
        flt = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, principal, None,
                               AclOperation.ANY, AclPermissionType.ANY)
        for f in setup.delete_acls([flt], request_timeout=15).values():
            f.result(timeout=20)


LOCAL_A = "https://it-a.local.test"
LOCAL_B = "https://it-b.local.test"


def test_reauthentication_keeps_the_issuer(start_busgate, tmp_path):
    keys = {}
    for iss, d in ((LOCAL_A, "a"), (LOCAL_B, "b")):
        (tmp_path / d).mkdir()
        keys[iss] = make_rsa_key(tmp_path / d)
    issuers = local_issuer(keys[LOCAL_A][1], LOCAL_A) + local_issuer(keys[LOCAL_B][1], LOCAL_B)
    bg, ports, boot = start(start_busgate, tmp_path, extra_issuers=issuers)

    def mint(iss):
        r = run_cli("token", "mint", "--key", str(keys[iss][0]), "--kid", "test-key-1", "--sub",
                    "it-same", "--groups", "orders", "--iss", iss, "--aud", "busgate")
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    w = KafkaWire(ports["listen"])
    try:
        w.api_versions()
        assert w.sasl_plain(mint(LOCAL_A))[0] == 0
        # Control: a fresh token of the same issuer and sub re-authenticates.
        assert w.sasl_plain(mint(LOCAL_A))[0] == 0
        assert w.metadata_v1() is not None
        # Same sub, other trusted issuer: another principal, refused and closed.
        err, msg, _ = w.sasl_plain(mint(LOCAL_B))
        assert (err, msg) == (ERR_SASL_AUTH_FAILED,
                              "re-authentication must keep the same principal")
        assert w.closed_by_peer()
    finally:
        w.close()
    # The refused re-authentication is on the audit record.
    assert wait_audit(ports["audit"], lambda e: e["kind"] == "auth_failure"
                      and e.get("auth_failure_reason") == "different_subject")
    # The other issuer's token is fine on a connection of its own.
    w = KafkaWire(ports["listen"])
    try:
        w.api_versions()
        assert w.sasl_plain(mint(LOCAL_B))[0] == 0
    finally:
        w.close()


def test_broker_configs_do_not_show_upstream_addresses(start_busgate, tmp_path):
    """DescribeConfigs of a broker through busgate: the listeners, the
    controller quorum and other host-bearing configurations come back as
    Kafka shows a sensitive one (no value), so the client cannot connect to
    the broker past busgate; other configurations keep their values. The
    broker itself (control) shows the addresses."""
    from confluent_kafka.admin import ConfigResource
    bg, ports, boot = start(start_busgate, tmp_path)
    admin = AdminClient(client_conf(boot, oidc_token("svc-admin")))
    md = admin.list_topics(timeout=15)
    bid = str(next(iter(md.brokers)))

    def configs(client):
        res = ConfigResource(ConfigResource.Type.BROKER, bid)
        return admin_result(client.describe_configs([res]))

    def admin_result(futures):
        (fut,) = futures.values()
        return fut.result(timeout=20)

    direct = configs(setup_admin())
    assert "127.0.0.1:" in (direct["advertised.listeners"].value or ""), direct["advertised.listeners"]
    through = configs(admin)
    for key in ("advertised.listeners", "listeners", "controller.quorum.voters"):
        if key in direct and direct[key].value:
            assert through[key].value is None, (key, through[key].value)
            assert through[key].is_sensitive, key
    leaked = [k for k, c in through.items() if c.value and "127.0.0.1:" in c.value]
    assert not leaked, leaked
    assert through["log.retention.ms"].value == direct["log.retention.ms"].value
