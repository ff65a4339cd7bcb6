"""Group listing and cluster administration through busgate in front of the
real broker: ListGroups shows only the groups the principal may describe,
ACL changes that could touch the reserved audit topic are refused entry by
entry (busgate's upstream user is a super user on the test broker, so
anything forwarded would really happen), topic requests Kafka's controller
refuses as they are (a name twice in CreatePartitions, DeleteTopics v6
entries) are answered as the broker itself answers them, and
re-authentication must keep the same principal, issuer included."""
import struct

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   AdminClient, ResourcePatternType, ResourceType)

from conftest import run_cli
from keys import make_rsa_key
from kafka_env import (ERR_CLUSTER_AUTHZ, ERR_SASL_AUTH_FAILED, ERR_TOPIC_AUTHZ, KAFKA_PLAIN,
                       UPSTREAM_USER, KafkaWire, audit_events, busgate_config, client_conf, cstr,
                       create_topics, kafka_topics, kstr, local_issuer, oidc_token, setup_admin,
                       topic_id, unique, uvarint, wait_audit, wait_until, with_audit_topic)

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
    - name: orders-delete-some-topics
      subjects: [group:orders]
      resources: ["kafka:topic:it-dt-*"]
      verbs: [describe, delete]
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


# org.apache.kafka.common ACL codes
RT_ANY, RT_TOPIC, RT_GROUP, RT_CLUSTER, RT_USER = 1, 2, 3, 4, 7
PT_LITERAL = 3
OP_ANY, OP_READ, OP_ALTER, OP_CREATE_TOKENS = 1, 3, 7, 13
PERM_ANY, PERM_ALLOW = 1, 3
BUSGATE = "User:" + UPSTREAM_USER


def _err_msg(resp, off):
    """An ACL result's error code and nullable message at off: (err, msg, next off)."""
    err, ml = struct.unpack(">hh", resp[off:off + 4])
    off += 4
    return err, resp[off:off + ml].decode() if ml >= 0 else None, off + max(ml, 0)


def _create_acls_raw(w, creations):
    """CreateAcls v1: creations [(rtype, name, principal, op)], literal,
    host *, allow. Returns [(error_code, message)] in request order."""
    body = struct.pack(">i", len(creations))
    for rt, name, pr, op in creations:
        body += struct.pack(">b", rt) + kstr(name) + struct.pack(">b", PT_LITERAL) + kstr(pr) + \
            kstr("*") + struct.pack(">bb", op, PERM_ALLOW)
    resp = w.call(30, 1, body)
    assert resp is not None, "connection closed on CreateAcls"
    off, out = 8, []
    for _ in range(struct.unpack(">i", resp[4:8])[0]):
        err, msg, off = _err_msg(resp, off)
        out.append((err, msg))
    return out


def _acl_filter(rt, name, principal):
    return struct.pack(">b", rt) + kstr(name) + struct.pack(">b", PT_LITERAL) + kstr(principal) + \
        kstr(None) + struct.pack(">bb", OP_ANY, PERM_ANY)


def _delete_acls_raw(w, filters):
    """DeleteAcls v1: filters [(rtype, name, principal)] (None: any).
    Returns [(error_code, message, matching ACLs deleted)]."""
    body = struct.pack(">i", len(filters)) + b"".join(_acl_filter(*f) for f in filters)
    resp = w.call(31, 1, body)
    assert resp is not None, "connection closed on DeleteAcls"
    off, out = 8, []
    for _ in range(struct.unpack(">i", resp[4:8])[0]):
        err, msg, off = _err_msg(resp, off)
        n = struct.unpack(">i", resp[off:off + 4])[0]
        off += 4
        for _ in range(n):  # err, msg, type, name, pattern, principal, host, op, perm
            for skip in (2, "s", 1, "s", 1, "s", "s", 2):
                if skip == "s":
                    off += 2 + max(struct.unpack(">h", resp[off:off + 2])[0], 0)
                else:
                    off += skip
        out.append((err, msg, n))
    return out


def _count_acls(w, rt, name, principal):
    """DescribeAcls v1 on the broker directly: how many ACLs match."""
    resp = w.call(29, 1, _acl_filter(rt, name, principal))
    off = 4
    assert struct.unpack(">h", resp[off:off + 2])[0] == 0
    off += 2
    ml = struct.unpack(">h", resp[off:off + 2])[0]
    off += 2 + max(ml, 0)
    total = 0
    nres = struct.unpack(">i", resp[off:off + 4])[0]
    off += 4
    for _ in range(nres):
        off += 1
        nl = struct.unpack(">h", resp[off:off + 2])[0]
        off += 2 + nl + 1
        nacl = struct.unpack(">i", resp[off:off + 4])[0]
        off += 4
        total += nacl
        for _ in range(nacl):
            for _k in range(2):
                ml = struct.unpack(">h", resp[off:off + 2])[0]
                off += 2 + max(ml, 0)
            off += 2
    return total


ACL_TYPE_REASON = ("ACL on the cluster, a user or a delegation token: busgate's upstream "
                   "credential would grant it")
ACL_SELF_REASON = "ACL naming busgate's upstream principal"
ACL_ANY_PRINCIPAL_REASON = ("ACL of any principal or User:*: it would apply to busgate's own "
                            "principal too")


def test_acls_beyond_topics_are_refused(start_busgate, tmp_path):
    """busgate's upstream user is a super user on the test broker: an ACL
    on the CLUSTER (its principal could then, connecting directly, alter the
    audit topic) or CREATE_TOKENS on User:busgate (a delegation token for
    busgate's own identity), a binding for busgate's own principal, and a
    DeleteAcls filter of any principal (it would delete busgate's ACLs too)
    are refused entry by entry even with `alter` on the cluster; a group ACL
    of another principal goes through."""
    accomplice = "User:" + unique("it-accomplice")
    group = unique("it-acl-group")
    bg, ports, boot = start(start_busgate, tmp_path, mechanism="PLAIN")
    direct = KafkaWire(int(KAFKA_PLAIN.rsplit(":", 1)[1]))
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-admin"))
    try:
        res = _create_acls_raw(w, [
            (RT_CLUSTER, "kafka-cluster", accomplice, OP_ALTER),
            (RT_USER, BUSGATE, accomplice, OP_CREATE_TOKENS),
            (RT_GROUP, group, BUSGATE, OP_READ),
            (RT_GROUP, group, accomplice, OP_READ),
        ])
        assert res[:3] == [(ERR_CLUSTER_AUTHZ, ACL_TYPE_REASON),
                           (ERR_CLUSTER_AUTHZ, ACL_TYPE_REASON),
                           (ERR_CLUSTER_AUTHZ, ACL_SELF_REASON)], res
        assert res[3][0] == 0, res  # the broker's own answer
        assert wait_until(lambda: _count_acls(direct, RT_GROUP, group, accomplice) == 1)
        assert _count_acls(direct, RT_CLUSTER, "kafka-cluster", accomplice) == 0
        assert _count_acls(direct, RT_USER, BUSGATE, accomplice) == 0
        assert _count_acls(direct, RT_GROUP, group, BUSGATE) == 0

        # Deleting: any principal, User:* and any resource type are refused;
        # naming the principal works.
        res = _delete_acls_raw(w, [(RT_GROUP, group, None), (RT_GROUP, group, "User:*"),
                                   (RT_ANY, group, accomplice)])
        assert [r[:2] for r in res] == [(ERR_CLUSTER_AUTHZ, ACL_ANY_PRINCIPAL_REASON),
                                        (ERR_CLUSTER_AUTHZ, ACL_ANY_PRINCIPAL_REASON),
                                        (ERR_CLUSTER_AUTHZ, res[2][1])], res
        assert res[2][1].startswith("ACL of any or an unknown resource type"), res
        assert _count_acls(direct, RT_GROUP, group, accomplice) == 1
        res = _delete_acls_raw(w, [(RT_GROUP, group, accomplice)])
        assert [(r[0], r[2]) for r in res] == [(0, 1)], res
        assert wait_until(lambda: _count_acls(direct, RT_GROUP, group, accomplice) == 0)

        denies = wait_audit(ports["audit"], lambda e: e["kind"] == "decision"
                            and e["api"]["name"] in ("CreateAcls", "DeleteAcls")
                            and e["decision"]["effect"] == "deny", count=4)
        details = {e.get("detail") for e in denies}
        assert {ACL_TYPE_REASON, ACL_SELF_REASON, ACL_ANY_PRINCIPAL_REASON} <= details, details
        assert all(e["decision"].get("by") == "busgate" and e["result"]["error_code"] == 31
                   for e in denies), denies
    finally:
        _delete_acls_raw(direct, [(RT_CLUSTER, "kafka-cluster", accomplice),
                                  (RT_USER, BUSGATE, accomplice), (RT_GROUP, group, accomplice),
                                  (RT_GROUP, group, BUSGATE)])
        w.close()
        direct.close()


def test_partition_admin_refused_lists_every_partition(start_busgate, tmp_path):
    """Without `alter` on the cluster, ElectLeaders v1 and
    AlterPartitionReassignments are answered as Kafka's getErrorResponse
    does: the top-level 31 and every requested partition with 31 (the Java
    Admin takes an answer without them for "too less results")."""
    topic = unique("it-elect")
    create_topics([topic], partitions=2)
    bg, ports, boot = start(start_busgate, tmp_path, mechanism="PLAIN")
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    try:
        body = struct.pack(">bi", 0, 1) + kstr(topic) + struct.pack(">iiii", 2, 0, 1, 10000)
        resp = w.call(43, 1, body)
        assert resp is not None
        off = 4
        err, nres = struct.unpack(">hi", resp[off:off + 6])
        off += 6
        assert (err, nres) == (ERR_CLUSTER_AUTHZ, 1)
        nl = struct.unpack(">h", resp[off:off + 2])[0]
        assert resp[off + 2:off + 2 + nl].decode() == topic
        off += 2 + nl
        parts = []
        for _ in range(struct.unpack(">i", resp[off:off + 4])[0]):
            pid, perr, ml = struct.unpack(">ihh", resp[off + 4:off + 12])
            parts.append((pid, perr))
            off += 8 + max(ml, 0)
        assert parts == [(0, ERR_CLUSTER_AUTHZ), (1, ERR_CLUSTER_AUTHZ)], parts

        # AlterPartitionReassignments v0 (flexible): timeout, topics.
        body = struct.pack(">i", 10000) + uvarint(2) + cstr(topic) + uvarint(3)
        for p in (0, 1):
            body += struct.pack(">i", p) + uvarint(2) + struct.pack(">i", 1) + b"\x00"
        body += b"\x00\x00"
        rd = w.call_flex(45, 0, body)
        assert rd is not None
        rd.i32()  # throttle
        assert rd.i16() == ERR_CLUSTER_AUTHZ
        rd.cstr()
        assert rd.uvarint() - 1 == 1
        assert rd.cstr() == topic
        parts = []
        for _ in range(rd.uvarint() - 1):
            pid, perr = rd.i32(), rd.i16()
            parts.append((pid, perr, rd.cstr()))
            rd.tags()
        assert parts == [(p, ERR_CLUSTER_AUTHZ, "Cluster authorization failed.") for p in (0, 1)]
    finally:
        w.close()


def _create_partitions_raw(w, names):
    """CreatePartitions v1 (validate only, count 3): [(name, error, message)]."""
    body = struct.pack(">i", len(names))
    for n in names:
        body += kstr(n) + struct.pack(">ii", 3, -1)
    resp = w.call(37, 1, body + struct.pack(">ib", 10000, 1))
    assert resp is not None
    off, out = 8, []
    for _ in range(struct.unpack(">i", resp[4:8])[0]):
        nl = struct.unpack(">h", resp[off:off + 2])[0]
        name = resp[off + 2:off + 2 + nl].decode()
        off += 2 + nl
        err, ml = struct.unpack(">hh", resp[off:off + 4])
        off += 4
        out.append((name, err, resp[off:off + ml].decode() if ml >= 0 else None))
        off += max(ml, 0)
    return out


def test_create_partitions_duplicate_name_as_kafka(start_busgate, tmp_path):
    """CreatePartitions naming a topic twice: one INVALID_REQUEST "Duplicate
    topic name." entry before anything is authorized, as the broker itself
    answers; another topic of the request is still decided."""
    topic, other = unique("it-cp-dup"), unique("it-cp-other")
    create_topics([topic, other])
    bg, ports, boot = start(start_busgate, tmp_path, mechanism="PLAIN")
    direct = KafkaWire(int(KAFKA_PLAIN.rsplit(":", 1)[1]))
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    try:
        kafka = _create_partitions_raw(direct, [topic, topic])
        assert kafka == [(topic, 42, "Duplicate topic name.")], kafka
        assert _create_partitions_raw(w, [topic, topic]) == kafka
        assert _create_partitions_raw(w, [topic, other, topic]) == [
            (topic, 42, "Duplicate topic name."), (other, ERR_TOPIC_AUTHZ, None)]
    finally:
        w.close()
        direct.close()


def _dt_order(entry):
    name, tid, err, msg = entry
    return name or "", tid, err, msg or ""


def _delete_topics_v6_raw(w, entries):
    """DeleteTopics v6 of entries [(name or None, id bytes)]: the answer's
    entries [(name, id hex, error, message)], sorted (Kafka shuffles them)."""
    body = uvarint(len(entries) + 1)
    for name, tid in entries:
        body += (uvarint(0) if name is None else cstr(name)) + tid + b"\x00"
    rd = w.call_flex(20, 6, body + struct.pack(">i", 10000) + b"\x00")
    assert rd is not None, "connection closed on DeleteTopics"
    rd.i32()  # throttle
    out = []
    for _ in range(rd.uvarint() - 1):
        out.append((rd.cstr(), rd.take(16).hex(), rd.i16(), rd.cstr()))
        rd.tags()
    return sorted(out, key=_dt_order)


def test_delete_topics_v6_invalid_entries_as_kafka(kafka_topics, start_busgate, tmp_path):
    """DeleteTopics v6 entries Kafka's controller refuses before it deletes
    anything: neither a name nor an id, both a name and an id (also of a
    topic the principal may not delete), a name or an id twice, a name next
    to its own topic's id (given once, or twice). busgate answers each with
    the broker's code and message, and no topic is deleted by either."""
    a, b, c, d, e = (unique("it-dt") for _ in range(5))
    x = unique("it-dx")  # not the principal's to delete
    kafka_topics(a, b, c, d, e, x)
    bg, ports, boot = start(start_busgate, tmp_path, mechanism="PLAIN")
    direct = KafkaWire(int(KAFKA_PLAIN.rsplit(":", 1)[1]))
    w = KafkaWire(ports["listen"]).login(oidc_token("svc-orders"))
    try:
        ids = {t: topic_id(w, t) for t in (a, b, c, d, e)}  # busgate learns them
        ids[x] = topic_id(direct, x)
        zero = bytes(16)
        entries = [(None, zero), (None, zero), (a, ids[a]), (x, ids[x]), (b, zero), (b, zero),
                   (None, ids[c]), (None, ids[c]), (d, zero), (None, ids[d]), (e, zero),
                   (None, ids[e]), (None, ids[e])]
        kafka = _delete_topics_v6_raw(direct, entries)
        neither = (None, zero.hex(), 42, "Neither topic name nor id were specified.")
        maps = "The provided topic name maps to an ID that was already supplied."
        assert kafka == sorted([
            neither, neither,
            (a, ids[a].hex(), 42, "You may not specify both topic name and topic id."),
            (x, ids[x].hex(), 42, "You may not specify both topic name and topic id."),
            (b, zero.hex(), 42, "Duplicate topic name."),
            (None, ids[c].hex(), 42, "Duplicate topic id."),
            (d, ids[d].hex(), 42, maps),
            (e, ids[e].hex(), 42, maps),
            (None, ids[e].hex(), 42, "Duplicate topic id."),
        ], key=_dt_order), kafka
        assert _delete_topics_v6_raw(w, entries) == kafka
        # Nothing was deleted, by the broker or through busgate.
        for t in (a, b, c, d, e, x):
            assert topic_id(direct, t) == ids[t], t
    finally:
        w.close()
        direct.close()


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
