"""Helpers for the audit outage suites: private Kafka instances (their own
ports, so they can be stopped without disturbing the shared broker),
busgate instances with an audit topic and a spool, and readers of the audit
topic and of busgate's audit metrics."""
import json
import os
import re
import subprocess
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from conftest import Busgate, http_get, metric, wait_port
from kafka_env import (KafkaWire, audit_events, busgate_config, client_conf, unique,
                       with_audit_topic)

ROOT = Path(__file__).resolve().parents[2]

RULES = """    - name: orders-write
      subjects: [group:orders]
      resources: ["kafka:topic:it-aud-*"]
      verbs: [write, describe, create]
      effect: allow
"""


def kafka_env(plain, node_id=1, join=None):
    """The environment of scripts/kafka-up.sh for a private instance whose
    PLAINTEXT port is plain (SASL plain+1, controller plain+2, SASL_SSL
    plain+3, REAUTH plain+4); node_id 2 with join (the first node's PLAINTEXT port) makes it
    a broker-only node of that instance's cluster."""
    env = dict(os.environ, BG_KAFKA_PLAIN_PORT=str(plain), BG_KAFKA_SASL_PORT=str(plain + 1),
               BG_KAFKA_CONTROLLER_PORT=str(plain + 2), BG_KAFKA_SSL_PORT=str(plain + 3),
               BG_KAFKA_REAUTH_PORT=str(plain + 4))
    if join:
        env.update(BG_KAFKA_NODE_ID=str(node_id), BG_KAFKA_JOIN=str(join))
    return env


def kafka(script, env, *args):
    """Runs scripts/kafka-up.sh or kafka-down.sh with env. One retry: a
    start right after a stop can find the old process still letting go of
    its data directory."""
    for attempt in (1, 2):
        r = subprocess.run([str(ROOT / "scripts" / script), *args], env=env, timeout=120,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode == 0:
            return
        time.sleep(3)
    raise AssertionError(f"{script} failed: {r.stderr[-2000:]}{_broker_log(r.stderr)}")


def _broker_log(stderr):
    """The end of the broker log kafka-up.sh names in its error, read now:
    the fixture's stop removes the run directory with it."""
    m = re.search(r"\(log: (\S+)\)", stderr)
    if not m or not os.path.exists(m.group(1)):
        return ""
    with open(m.group(1), errors="replace") as f:
        return "\n--- broker log (end) ---\n" + f.read()[-4000:]


def admin(plain):
    return AdminClient({"bootstrap.servers": f"127.0.0.1:{plain}", "socket.timeout.ms": 10000})


def topic_values(plain, topic, timeout=60):
    """Every message value in the topic, read from the beginning to the end
    of each partition (PLAINTEXT listener, no busgate)."""
    md = admin(plain).list_topics(topic, timeout=10)
    parts = list(md.topics[topic].partitions)
    c = Consumer({"bootstrap.servers": f"127.0.0.1:{plain}", "group.id": unique("it-aud-read"),
                  "enable.auto.commit": False, "enable.partition.eof": True})
    c.assign([TopicPartition(topic, p, 0) for p in parts])  # offset 0: the beginning
    values, eof = [], set()
    deadline = time.monotonic() + timeout
    while len(eof) < len(parts) and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
            continue
        values.append(m.value())
    c.close()
    assert len(eof) == len(parts), "topic not read to its end"
    return values


def topic_ids(plain, topic, timeout=60):
    """Every event id in the (JSON) audit topic, and the message count."""
    values = topic_values(plain, topic, timeout)
    return {json.loads(v)["event_id"] for v in values}, len(values)


def scrape(port, name, labels=None):
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    return metric(body, name, labels) if status == 200 else None


def ready(port):
    return http_get(f"http://127.0.0.1:{port}/readyz")[0]


def raw_session(port, token):
    """Authenticates once on a raw connection and closes it: a session_start
    and a session_end (or an auth_failure for a bad token). Returns the
    SaslAuthenticate error code, or None when the connection failed."""
    try:
        w = KafkaWire(port, timeout=5)
        try:
            w.api_versions()
            r = w.sasl_plain(token)
            return None if r is None else r[0]
        finally:
            w.close()
    except (OSError, AssertionError):
        return None


class Instance:
    """A busgate with an audit topic and a spool in front of upstream."""

    def __init__(self, base, name, topic, upstream, extra=""):
        self.dir = base / name
        self.dir.mkdir()
        text, self.ports = busgate_config(self.dir, RULES, mechanism="PLAIN", upstream=[upstream])
        text = with_audit_topic(text, topic)
        self.spool = self.dir / "spool"
        text = text.replace("\naudit:\n", f"\naudit:\n  spool_dir: {self.spool}\n{extra}", 1)
        self.cfg = self.dir / "busgate.yaml"
        self.cfg.write_text(text)
        self.topic = topic
        self.procs = []

    def start(self):
        bg = Busgate(self.cfg, self.dir / f"busgate-{len(self.procs)}.log")
        self.procs.append(bg)
        assert wait_port(self.ports["listen"]), bg.log_path.read_text()[-3000:]
        assert wait_port(self.ports["admin"])
        return bg

    @property
    def admin(self):
        return self.ports["admin"]

    def events(self):
        return audit_events(self.ports["audit"])


def produce_some(inst, token, n=5, topic=None):
    """n records through busgate (to a new it-aud-data-* topic unless
    topic is given); the delivery errors."""
    p = Producer(client_conf(f"127.0.0.1:{inst.ports['listen']}", token))
    errs = []
    topic = topic or unique("it-aud-data")
    for i in range(n):
        p.produce(topic, value=b"x", on_delivery=lambda e, m: errs.append(e))
    assert p.flush(30) == 0
    return errs


def open_sessions(inst, token, n):
    """n authenticated raw connections, left open (each ends with a
    session_end event when busgate closes it)."""
    return [KafkaWire(inst.ports["listen"], timeout=10).login(token) for _ in range(n)]


def counter(inst, outcome):
    return scrape(inst.admin, "busgate_audit_events_total", {"outcome": outcome}) or 0


def drained(inst):
    return (scrape(inst.admin, "busgate_audit_spool_bytes") == 0 and
            scrape(inst.admin, "busgate_audit_queue_depth") == 0 and
            scrape(inst.admin, "busgate_audit_admitting") == 1 and
            counter(inst, "delivered") + counter(inst, "drained") >= counter(inst, "emitted"))


def decisions(inst):
    """busgate's own count of Kafka decisions (all effects)."""
    return sum(scrape(inst.admin, "busgate_decisions_total",
                      {"protocol": "kafka", "effect": e}) or 0 for e in ("allow", "deny", "hold"))
