"""Readiness of the AMQP adapter: busgate logs in to RabbitMQ with its own
credential at start-up, so /readyz turns 200 before any client connected;
with a wrong upstream password it stays 503 and says why."""
import json
import time

from amqp_env import Issuer, busgate_config, rule
from conftest import http_get, wait_port


def _wait_ready(admin, want, timeout=15.0):
    # The admin listener may open a moment after the AMQP one.
    assert wait_port(admin, timeout=timeout), "admin listener not up"
    deadline = time.monotonic() + timeout
    status, body = http_get(f"http://127.0.0.1:{admin}/readyz")
    while status != want and time.monotonic() < deadline:
        time.sleep(0.1)
        status, body = http_get(f"http://127.0.0.1:{admin}/readyz")
    return status, body


def test_ready_before_any_client(start_busgate, tmp_path):
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(tmp_path, issuer, rule("r", ["*"], ["amqp:queue:x"], ["read"]))
    start_busgate(text, wait_for_port=ports["listen"])
    status, body = _wait_ready(ports["admin"], 200)
    assert status == 200, body


def test_not_ready_with_a_wrong_upstream_password(start_busgate, tmp_path):
    issuer = Issuer(tmp_path / "keys")
    text, ports = busgate_config(tmp_path, issuer, rule("r", ["*"], ["amqp:queue:x"], ["read"]))
    text = text.replace("busgate-test-password", "not-the-password")
    assert "not-the-password" in text
    bg = start_busgate(text, wait_for_port=ports["listen"])
    assert wait_port(ports["admin"]), "admin listener not up"
    # A login attempt has failed (not merely not happened yet).
    failed = bg.wait_log(lambda l: l.get("msg", "").startswith("upstream ") and
                         "ACCESS_REFUSED" in l.get("msg", ""))
    assert failed, bg.log_path.read_text()[-2000:]
    status, body = http_get(f"http://127.0.0.1:{ports['admin']}/readyz")
    assert status == 503
    assert json.loads(body)["reason"] == "amqp"
    assert bg.proc.poll() is None
