#!/usr/bin/env python3
"""librdkafka (confluent-kafka) interop client for busgate's tests.

Same command line and scenarios as the Java program, except `suite` (a
Python run starts fast enough on its own); see interop_common.py.
OAUTHBEARER uses librdkafka's built-in OIDC client-credentials flow
(sasl.oauthbearer.method=oidc), which needs the PyPI wheel's librdkafka.
Errors are reported by librdkafka error name (e.g. TOPIC_AUTHORIZATION_FAILED).
"""
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

import interop_common as ic

CLIENT = "rdkafka"
DENIED = {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED,
          KafkaError.CLUSTER_AUTHORIZATION_FAILED,
          KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED}


def base_config(bootstrap, auth):
    c = {"bootstrap.servers": bootstrap, "client.id": "busgate-interop-rdkafka"}
    if auth.mechanism == "NONE":
        c["security.protocol"] = "PLAINTEXT"
    else:
        c["security.protocol"] = "SASL_PLAINTEXT"
        c["sasl.mechanisms"] = auth.mechanism
    if auth.mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        c["sasl.username"] = auth.user
        c["sasl.password"] = auth.password
    elif auth.mechanism == "OAUTHBEARER":
        c["sasl.oauthbearer.method"] = "oidc"
        c["sasl.oauthbearer.token.endpoint.url"] = auth.token_url
        c["sasl.oauthbearer.client.id"] = auth.client_id
        c["sasl.oauthbearer.client.secret"] = auth.secret
    c.update(ic.extra_props())
    return c


def record_error(out, err):
    """err: KafkaError. Returns True when it is an authorization failure."""
    out["error"] = err.name()
    out["message"] = err.str()
    return err.code() in DENIED


def kafka_error(exc):
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


class ErrorTrap:
    """error_cb collecting fatal/authentication errors so a run fails fast."""

    def __init__(self):
        self.err = None

    def __call__(self, err):
        if self.err is None and (err.fatal() or err.code() in (
                KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED) or
                err.code() in DENIED):
            self.err = err


def flush(p, trap):
    """Flushes within the timeout, giving up early on an authentication error."""
    deadline = time.monotonic() + ic.timeout_s()
    remaining = len(p)
    while remaining and time.monotonic() < deadline and trap.err is None:
        remaining = p.flush(0.5)
    return remaining


def produce(bootstrap, auth, out, topic, n, idempotent=False, txn_id=None):
    conf = base_config(bootstrap, auth)
    conf.setdefault("acks", "all")
    conf.setdefault("linger.ms", 5)
    conf.setdefault("message.timeout.ms", int(ic.timeout_s() * 1000))
    conf["enable.idempotence"] = idempotent
    trap = ErrorTrap()
    conf["error_cb"] = trap
    if txn_id:
        conf["transactional.id"] = txn_id
        out["transactional_id"] = txn_id
    out["topic"] = topic
    acked, errors, partitions = [0], [], set()

    def on_delivery(err, msg):
        if err is None:
            acked[0] += 1
            partitions.add(msg.partition())
        else:
            errors.append(err)

    p = Producer(conf)
    if txn_id:
        p.init_transactions(ic.timeout_s())
        p.begin_transaction()
    for i in range(n):
        p.produce(topic, key="k-%d" % i, value=ic.value(i, CLIENT), on_delivery=on_delivery)
        p.poll(0)
    if txn_id:
        p.commit_transaction(ic.timeout_s())
    remaining = flush(p, trap)
    out.update(produced=acked[0], partitions=sorted(partitions))
    if errors or trap.err:
        record_error(out, errors[0] if errors else trap.err)
        return False
    if remaining:
        out.update(error="TIMEOUT", message="%d messages not delivered" % remaining)
    return acked[0] == n


def txn_produce_expect_denied(bootstrap, auth, out, txn_id, topic):
    """A transaction with a transactional id the principal may not use must fail."""
    conf = base_config(bootstrap, auth)
    conf.setdefault("message.timeout.ms", int(ic.timeout_s() * 1000))
    conf["transactional.id"] = txn_id
    out.update(transactional_id=txn_id, topic=topic)
    p = Producer(conf)
    try:
        p.init_transactions(ic.timeout_s())
        p.begin_transaction()
        p.produce(topic, key="k", value=ic.value(0, CLIENT))
        p.commit_transaction(ic.timeout_s())
    except KafkaException as e:
        err = kafka_error(e)
        if err is None:
            raise
        return record_error(out, err)
    out["error"] = None
    return False


def produce_expect_denied(bootstrap, auth, out, topic):
    conf = base_config(bootstrap, auth)
    conf.setdefault("message.timeout.ms", int(ic.timeout_s() * 1000))
    trap = ErrorTrap()
    conf["error_cb"] = trap
    out["topic"] = topic
    errors = []
    p = Producer(conf)
    p.produce(topic, key="k", value=ic.value(0, CLIENT),
              on_delivery=lambda err, msg: errors.append(err))
    flush(p, trap)
    err = (errors[0] if errors else None) or trap.err
    if err is None:
        out["error"] = None
        return False
    return record_error(out, err)


def consumer(bootstrap, auth, group, trap):
    conf = base_config(bootstrap, auth)
    conf.update({"group.id": group, "enable.auto.commit": False, "error_cb": trap})
    conf.setdefault("auto.offset.reset", "earliest")
    conf.setdefault("isolation.level", "read_committed")
    # The KIP-848 protocol takes the session timeout from the broker and
    # refuses the client setting.
    if str(conf.get("group.protocol", "classic")).lower() != "consumer":
        conf.setdefault("session.timeout.ms", 10000)
    return Consumer(conf)


def consume_group(bootstrap, auth, out, topic, group, n):
    out.update(topic=topic, group=group)
    trap = ErrorTrap()
    c = consumer(bootstrap, auth, group, trap)
    c.subscribe([topic])
    got, sample, deadline = 0, [], time.monotonic() + ic.timeout_s()
    try:
        while got < n and time.monotonic() < deadline and trap.err is None:
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                record_error(out, msg.error())
                break
            got += 1
            if len(sample) < 5:
                sample.append(msg.value().decode("utf-8", "replace"))
        if got:
            c.commit(asynchronous=False)
            out["committed"] = True
    finally:
        out.update(consumed=got, values=sample)
        c.close()
    if trap.err and "error" not in out:
        record_error(out, trap.err)
    return got >= n


def consume_expect_denied(bootstrap, auth, out, topic, group):
    out.update(topic=topic, group=group)
    trap = ErrorTrap()
    c = consumer(bootstrap, auth, group, trap)
    c.subscribe([topic])
    got, deadline = 0, time.monotonic() + ic.timeout_s()
    try:
        while time.monotonic() < deadline and trap.err is None:
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() in DENIED:
                    out["consumed"] = got
                    return record_error(out, msg.error())
                continue
            got += 1
    finally:
        c.close()
    out["consumed"] = got
    if trap.err:
        return record_error(out, trap.err)
    out["error"] = None
    return False


def admin(bootstrap, auth):
    return AdminClient(base_config(bootstrap, auth))


def admin_list_topics(bootstrap, auth, out):
    md = admin(bootstrap, auth).list_topics(timeout=ic.timeout_s())
    # Like the Java Admin.listTopics(): internal topics are left out.
    out["topics"] = sorted(t for t in md.topics if not t.startswith("__"))
    return True


def admin_create_topic(bootstrap, auth, out, topic):
    out["topic"] = topic
    a = admin(bootstrap, auth)  # must outlive the future
    fut = a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)],
                          request_timeout=ic.timeout_s())[topic]
    try:
        fut.result(ic.timeout_s())
    except KafkaException as e:
        record_error(out, kafka_error(e))
        return False
    out["created"] = True
    return True


def admin_delete_topic(bootstrap, auth, out, topic, expect_denied):
    out["topic"] = topic
    a = admin(bootstrap, auth)  # must outlive the future
    fut = a.delete_topics([topic], request_timeout=ic.timeout_s())[topic]
    try:
        fut.result(ic.timeout_s())
    except KafkaException as e:
        denied = record_error(out, kafka_error(e))
        return denied if expect_denied else False
    out["deleted"] = True
    return not expect_denied


SCENARIOS = {
    "produce": lambda b, a, s, o: produce(b, a, o, ic.arg(s, 1), ic.count(s, 2)),
    "idempotent-produce": lambda b, a, s, o: produce(b, a, o, ic.arg(s, 1), ic.count(s, 2), True),
    "txn-produce": lambda b, a, s, o: produce(b, a, o, ic.arg(s, 2), ic.count(s, 3), True,
                                              ic.arg(s, 1)),
    "txn-produce-expect-denied":
        lambda b, a, s, o: txn_produce_expect_denied(b, a, o, ic.arg(s, 1), ic.arg(s, 2)),
    "consume-group": lambda b, a, s, o: consume_group(b, a, o, ic.arg(s, 1), ic.arg(s, 2),
                                                      ic.count(s, 3)),
    "produce-expect-denied": lambda b, a, s, o: produce_expect_denied(b, a, o, ic.arg(s, 1)),
    "consume-expect-denied": lambda b, a, s, o: consume_expect_denied(b, a, o, ic.arg(s, 1),
                                                                      ic.arg(s, 2)),
    "admin-list-topics": lambda b, a, s, o: admin_list_topics(b, a, o),
    "admin-create-topic": lambda b, a, s, o: admin_create_topic(b, a, o, ic.arg(s, 1)),
    "admin-delete-topic": lambda b, a, s, o: admin_delete_topic(b, a, o, ic.arg(s, 1), False),
    "admin-delete-topic-expect-denied":
        lambda b, a, s, o: admin_delete_topic(b, a, o, ic.arg(s, 1), True),
}

if __name__ == "__main__":
    ic.main(CLIENT, list(SCENARIOS),
            lambda b, a, s, o: SCENARIOS[s[0]](b, a, s, o))
