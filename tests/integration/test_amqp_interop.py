"""AMQP interop through busgate: client libraries nobody here wrote (amqplib
on Node, the RabbitMQ Java client, rabbitmq-c) publish with confirms,
consume, and get refused through busgate in front of the real test broker.

Each test starts busgate, runs tests/interop/amqp/run-client.sh with a
bounded timeout and asserts on the client's one-line JSON result, then
checks the broker directly (pika, busgate's own credential) and busgate's
audit file. busgate's upstream user may do everything on the broker, so every
403 asserted here comes from busgate's policy. pika is covered by
test_amqp.py. A module fixture installs/builds the clients first (cached in
$BUSGATE_CACHE, the C program under BG_BUILD_DIR), so no test's bound
includes a build.
"""
import json
import os
import subprocess

import pytest

from amqp_env import api_name, direct, rule, start_gateway, unique, wait_audit
from conftest import ROOT, build_dir

RUN_CLIENT = str(ROOT / "tests" / "interop" / "amqp" / "run-client.sh")
CLIENTS = ["node", "java", "c"]
# The name each program reports as "client".
REPORTED = {"node": "amqplib", "java": "java", "c": "rabbitmq-c"}
N = 200
CLIENT_TIMEOUT_MS = 20000  # every wait inside a client
RUN_TIMEOUT_S = 60
BUILD_TIMEOUT_S = 900
ALL = ["read", "write", "create", "delete", "describe"]


def policy():
    return (rule("interop-all", ["group:apps"],
                 ["amqp:exchange:interop.*", "amqp:queue:interop.*"], ALL)
            + rule("no-secret", ["*"],
                   ["amqp:exchange:interop.secret*", "amqp:queue:interop.secret*"], ALL,
                   effect="deny"))


def c_client_path():
    return build_dir() / "tests" / "integration" / "amqp-interop-c" / "bg_amqp_interop_c"


@pytest.fixture(scope="module", autouse=True)
def interop_clients():
    """Installs amqplib, builds the Java jar (both cached across sessions)
    and makes sure the rabbitmq-c program exists in BG_BUILD_DIR."""
    if not c_client_path().exists():
        p = subprocess.run(["cmake", "--build", str(build_dir()), "--target", "bg_amqp_interop_c"],
                           capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        assert p.returncode == 0, f"building bg_amqp_interop_c failed:\n{p.stdout[-4000:]}"
    for lang in CLIENTS:
        p = subprocess.run([RUN_CLIENT, lang, "--build"], capture_output=True, text=True,
                           timeout=BUILD_TIMEOUT_S, env=client_env(""))
        assert p.returncode == 0, f"building the {lang} client failed:\n{p.stderr[-4000:]}"


def client_env(token):
    env = {**os.environ, "BG_INTEROP_TIMEOUT_MS": str(CLIENT_TIMEOUT_MS),
           "BG_AMQP_PASSWORD": token, "BG_BUILD_DIR": str(build_dir())}
    env.pop("BG_AMQP_C_CLIENT", None)
    return env


def run_client(lang, port, token, user, *scenario):
    """Runs one client scenario through busgate; returns its parsed JSON line
    plus _exit and _stderr."""
    p = subprocess.run([RUN_CLIENT, lang, "127.0.0.1", str(port), user, *scenario],
                       capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=client_env(token))
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    assert lines, f"{lang} printed no result (exit {p.returncode}):\n{p.stdout}\n{p.stderr[-4000:]}"
    res = json.loads(lines[-1])
    res["_exit"], res["_stderr"] = p.returncode, p.stderr[-4000:]
    return res


def explain(res, bg):
    msg = json.dumps({k: v for k, v in res.items() if k != "_stderr"}, indent=1)
    return (msg + "\n--- client stderr:\n" + res["_stderr"] + "\n--- busgate log:\n"
            + bg.log_path.read_text()[-4000:])


@pytest.fixture
def gw(start_busgate, tmp_path):
    """(busgate, ports, issuer) with the interop policy."""
    return start_gateway(start_busgate, tmp_path, policy())


def assert_refused(res, bg, code_text, class_id, method_id, user):
    """The client saw RabbitMQ's own refusal, sent by busgate for rule
    no-secret, and its connection stayed usable."""
    assert res["_exit"] == 0 and res["ok"] is True, explain(res, bg)
    closed = res["closed"]
    assert closed and closed["code"] == 403, explain(res, bg)
    assert closed["text"].startswith("ACCESS_REFUSED - " + code_text), explain(res, bg)
    assert f"for user '{user}'" in closed["text"], explain(res, bg)
    assert "(busgate rule 'no-secret')" in closed["text"], explain(res, bg)
    assert (closed["class_id"], closed["method_id"]) == (class_id, method_id), explain(res, bg)
    assert res["connection_alive"] is True, explain(res, bg)


@pytest.mark.parametrize("lang", CLIENTS)
def test_publish_confirm_consume(gw, lang):
    bg, ports, issuer = gw
    x, q = unique(f"interop.{lang}-x"), unique(f"interop.{lang}-q")
    res = run_client(lang, ports["listen"], issuer.mint(f"svc-{lang}", ["apps"]), "svc",
                     "roundtrip", x, q, str(N))
    assert res["_exit"] == 0 and res["ok"] is True, explain(res, bg)
    assert res["client"] == REPORTED[lang]
    assert (res["published"], res["confirmed"], res["nacked"], res["consumed"]) == (N, N, 0, N), \
        explain(res, bg)
    assert res["in_order"] is True, explain(res, bg)
    # The client deleted both through busgate: gone on the broker.
    import pika.exceptions as pex
    conn = direct()
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        conn.channel().queue_declare(q, passive=True)
    assert ei.value.reply_code == 404
    conn.close()
    ev = wait_audit(ports["audit"], lambda e: api_name(e) == "basic.publish")
    assert ev and ev[0]["decision"]["effect"] == "allow"
    assert ev[0]["principal"]["sub"] == f"svc-{lang}"


@pytest.mark.parametrize("lang", CLIENTS)
def test_publish_to_denied_exchange(gw, lang):
    bg, ports, issuer = gw
    x, probe = unique(f"interop.secret-{lang}-x"), unique(f"interop.probe-{lang}")
    setup = direct()
    sch = setup.channel()
    sch.exchange_declare(x, "fanout")
    sch.queue_declare(probe)
    sch.queue_bind(probe, x)
    try:
        res = run_client(lang, ports["listen"], issuer.mint(f"svc-{lang}", ["apps"]), f"u-{lang}",
                         "publish-denied", x)
        assert_refused(res, bg, f"write access to exchange '{x}' in vhost '/'", 60, 40, f"u-{lang}")
        assert res["confirmed"] is False, explain(res, bg)
        # Refused whole: nothing reached the exchange.
        assert sch.queue_declare(probe, passive=True).method.message_count == 0
    finally:
        sch.queue_delete(probe)
        sch.exchange_delete(x)
        setup.close()
    ev = wait_audit(ports["audit"], lambda e: api_name(e) == "basic.publish" and
                    e["decision"]["effect"] == "deny")
    assert ev and ev[0]["decision"]["rule"] == "no-secret"
    assert ev[0]["resources"][0]["name"] == x


@pytest.mark.parametrize("lang", CLIENTS)
def test_consume_from_denied_queue(gw, lang):
    bg, ports, issuer = gw
    q = unique(f"interop.secret-{lang}-q")
    setup = direct()
    sch = setup.channel()
    sch.queue_declare(q)
    sch.basic_publish("", q, b"stays in the queue")
    try:
        res = run_client(lang, ports["listen"], issuer.mint(f"svc-{lang}", ["apps"]), f"u-{lang}",
                         "consume-denied", q)
        assert_refused(res, bg, f"read access to queue '{q}' in vhost '/'", 60, 20, f"u-{lang}")
        assert res["consume_ok"] is False, explain(res, bg)
        assert sch.queue_declare(q, passive=True).method.message_count == 1
    finally:
        sch.queue_delete(q)
        setup.close()
    ev = wait_audit(ports["audit"], lambda e: api_name(e) == "basic.consume" and
                    e["decision"]["effect"] == "deny")
    assert ev and ev[0]["decision"]["rule"] == "no-secret"
    assert ev[0]["resources"][0]["name"] == q
