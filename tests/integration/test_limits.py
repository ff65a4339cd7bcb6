"""Client connection limits (the `limits` section): a connection over a cap
is closed at once and counted in busgate_connections_refused_total; one
peer's unauthenticated connections cannot keep others (another address, or
the same one once it has room) from logging in; the caps span adapters; the
descriptor reserve keeps the admin listener and the upstream connects of
sessions already accepted working while clients are refused. Real Kafka
and OIDC provider; loopback only (127.0.0.2 is loopback too); bounded
waits."""
import resource
import socket
import time

from amqp_env import RABBIT_PORT, connect as amqp_connect
from conftest import free_port, http_get, metric
from kafka_env import KafkaWire, busgate_config, oidc_token, wait_until

RULES = """    - name: limits-describe
      subjects: ["*"]
      resources: ["kafka:topic:it-limits-*"]
      verbs: [describe]
      effect: allow
"""


def wire_from(port, source, timeout=10.0):
    """A KafkaWire whose connection comes from the loopback address source."""
    return KafkaWire(port, timeout, client_id="it-limits", source=source)


def metrics(admin):
    status, body = http_get(f"http://127.0.0.1:{admin}/metrics", timeout=10)
    assert status == 200, body
    return body


def gauge(admin, name, **labels):
    return metric(metrics(admin), name, labels or None)


def refused(admin, protocol, reason):
    return gauge(admin, "busgate_connections_refused_total", protocol=protocol, reason=reason)


def wait_gauge(admin, value, name, **labels):
    assert wait_until(lambda: gauge(admin, name, **labels) == value), \
        f"{name}{labels} stayed {gauge(admin, name, **labels)}, not {value}"


def probe_let_go(admin):
    """Waits until busgate admitted the start-up probe of its Kafka port
    (wait_for_port's one connection) and let it go. An open count of 0
    alone does not say so: a loaded machine can leave the probe in the
    listen queue, to be admitted (and counted) among the test's own
    connections."""
    admitted = lambda: gauge(admin, "busgate_connections_total", protocol="kafka") or 0  # noqa: E731
    assert wait_until(lambda: admitted() >= 1), \
        "busgate never admitted the start-up probe of its Kafka port"
    wait_gauge(admin, 0, "busgate_connections_open", protocol="kafka")


def start(start_busgate, tmp_path, limits, extra=""):
    # auth_timeout far above every wait: a connection closed within the
    # test was closed by a limit, not for not logging in.
    text, ports = busgate_config(tmp_path, RULES, kafka_extra="  auth_timeout: 5m\n",
                                 extra=f"workers: 2\nlimits:\n{limits}{extra}")
    return start_busgate(text, wait_for_port=ports["listen"]), ports


def test_unauthenticated_cap_per_address(start_busgate, tmp_path):
    """Three idle connections from 127.0.0.1 fill its pre-auth share: the
    fourth is closed at once; 127.0.0.2 still gets in and logs in. Once one
    of the three leaves, a client from 127.0.0.1 logs in, and then it no
    longer counts against its address."""
    bg, ports = start(start_busgate, tmp_path,
                      "  max_unauthenticated_per_ip: 3\n  max_unauthenticated: 100\n")
    listen, admin = ports["listen"], ports["admin"]
    token = oidc_token("svc-orders")
    probe_let_go(admin)
    idle = [KafkaWire(listen) for _ in range(3)]
    wait_gauge(admin, 3, "busgate_connections_unauthenticated", protocol="kafka")
    over = KafkaWire(listen)
    assert over.closed_by_peer(timeout=10), "a fourth unauthenticated connection was kept"
    over.close()
    assert refused(admin, "kafka", "max_unauthenticated_per_ip") >= 1
    assert bg.wait_log(lambda l: "refused: limits.max_unauthenticated_per_ip (3)" in l["msg"])
    other = wire_from(listen, "127.0.0.2").login(token)
    assert other.metadata_v1([]) is not None
    wait_gauge(admin, 3, "busgate_connections_unauthenticated", protocol="kafka")
    idle.pop().close()
    wait_gauge(admin, 2, "busgate_connections_unauthenticated", protocol="kafka")
    mine = KafkaWire(listen).login(token)
    assert mine.metadata_v1([]) is not None
    # Authenticated, it makes room again for one more from 127.0.0.1.
    wait_gauge(admin, 2, "busgate_connections_unauthenticated", protocol="kafka")
    again = KafkaWire(listen)
    assert not again.closed_by_peer(timeout=1)
    wait_gauge(admin, 3, "busgate_connections_unauthenticated", protocol="kafka")
    assert gauge(admin, "busgate_connections_open", protocol="kafka") == 5
    for w in idle + [other, mine, again]:
        w.close()
    wait_gauge(admin, 0, "busgate_connections_open", protocol="kafka")
    wait_gauge(admin, 0, "busgate_connections_unauthenticated", protocol="kafka")


def test_global_cap_spans_adapters(start_busgate, tmp_path):
    """max_connections counts every protocol together: with Kafka clients
    holding all of it, Kafka and AMQP connections are closed at once, each
    counted under its protocol; /healthz and /metrics answer meanwhile; a
    slot given back is taken again, by an AMQP client that logs in (then
    no longer counted unauthenticated) and then by a Kafka one."""
    amqp = free_port()
    bg, ports = start(start_busgate, tmp_path, "  max_connections: 4\n",
                      extra=f"amqp:\n  listen: 127.0.0.1:{amqp}\n  upstream:\n"
                            f"    host: 127.0.0.1:{RABBIT_PORT}\n    vhost: /\n"
                            "    username: busgate\n    password: busgate-test-password\n")
    listen, admin = ports["listen"], ports["admin"]
    probe_let_go(admin)
    held = [KafkaWire(listen) for _ in range(3)]
    wait_gauge(admin, 3, "busgate_connections_open", protocol="kafka")
    a = socket.create_connection(("127.0.0.1", amqp), timeout=10)
    wait_gauge(admin, 1, "busgate_connections_unauthenticated", protocol="amqp")
    assert gauge(admin, "busgate_connections_unauthenticated", protocol="kafka") == 3
    assert gauge(admin, "busgate_connections_max") == 4
    k = KafkaWire(listen)
    assert k.closed_by_peer(timeout=10), "a Kafka connection over max_connections was kept"
    b = socket.create_connection(("127.0.0.1", amqp), timeout=10)
    b.settimeout(10)
    assert b.recv(1) == b"", "an AMQP connection over max_connections was kept"
    assert http_get(f"http://127.0.0.1:{admin}/healthz", timeout=10)[0] == 200
    assert refused(admin, "kafka", "max_connections") >= 1
    assert refused(admin, "amqp", "max_connections") >= 1
    a.close()
    wait_gauge(admin, 0, "busgate_connections_unauthenticated", protocol="amqp")
    token = oidc_token("svc-orders")
    # An AMQP client takes the slot and logs in: open, no longer unauthenticated.
    conn = amqp_connect(amqp, token)
    assert gauge(admin, "busgate_connections_open", protocol="amqp") == 1
    assert gauge(admin, "busgate_connections_unauthenticated", protocol="amqp") == 0
    conn.close()
    wait_gauge(admin, 0, "busgate_connections_open", protocol="amqp")
    w = KafkaWire(listen).login(token)
    assert w.metadata_v1([]) is not None
    for c in held + [k, w]:
        c.close()
    b.close()
    assert bg.proc.poll() is None


def test_descriptor_reserve(start_busgate, tmp_path):
    """With an open file limit of 256, 100 descriptors reserved and
    max_connections set above what that leaves (a warning at start-up), a
    flood of idle connections is refused once only the reserve is left: /healthz
    answers, and a client accepted before the flood still logs in (its
    upstream connection opens from the reserve)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    limit = 256 if hard == resource.RLIM_INFINITY or hard >= 256 else hard

    def low_nofile():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    text, ports = busgate_config(tmp_path, RULES, kafka_extra="  auth_timeout: 5m\n",
                                 extra="workers: 2\nlimits:\n  fd_reserve: 100\n"
                                       "  max_connections: 10000\n"
                                       "  max_unauthenticated_per_ip: 0\n")
    bg = start_busgate(text, wait_for_port=ports["listen"], preexec_fn=low_nofile)
    listen, admin = ports["listen"], ports["admin"]
    assert bg.wait_log(lambda l: l["msg"].startswith("limits.max_connections 10000: "))
    token = oidc_token("svc-orders")
    probe_let_go(admin)
    early = KafkaWire(listen)  # accepted, not logged in: no upstream connection yet
    wait_gauge(admin, 1, "busgate_connections_unauthenticated", protocol="kafka")
    flood = []
    try:
        while refused(admin, "kafka", "descriptors") == 0:
            assert len(flood) < limit, "no connection was refused for want of descriptors"
            flood.append(socket.create_connection(("127.0.0.1", listen), timeout=10))
            if len(flood) % 16 == 0:  # let busgate accept what is queued
                wait_until(lambda: gauge(admin, "busgate_connections_open", protocol="kafka")
                           + refused(admin, "kafka", "descriptors") >= len(flood) + 1)
        assert http_get(f"http://127.0.0.1:{admin}/healthz", timeout=10)[0] == 200
        early.login(token)
        assert early.metadata_v1([]) is not None, bg.log_path.read_text()[-3000:]
        assert bg.wait_log(lambda l: "refused: limits.fd_reserve (100)" in l["msg"])
    finally:
        for s in flood:
            s.close()
        early.close()
    assert bg.proc.poll() is None
