#!/usr/bin/env python3
"""kafka-python (pure Python) interop client for busgate's tests.

Same command line as the other interop programs (see interop_common.py);
scenarios: produce, consume-group, produce-expect-denied,
consume-expect-denied, admin-list-topics. OAUTHBEARER uses a token provider
that fetches a client-credentials token with urllib (kafka-python has no
OIDC client of its own). Errors are reported by kafka-python exception
class name (e.g. TopicAuthorizationFailedError).
"""
import base64
import json
import threading
import time
import urllib.parse
import urllib.request

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import AuthorizationError, TopicAuthorizationFailedError

try:  # kafka-python 3.x
    from kafka.net.sasl.oauth import AbstractTokenProvider
except ImportError:  # kafka-python 2.1/2.2, then 2.0
    try:
        from kafka.sasl.oauth import AbstractTokenProvider
    except ImportError:
        from kafka.oauth.abstract import AbstractTokenProvider

import interop_common as ic

CLIENT = "kafka-python"


class ClientCredentialsTokenProvider(AbstractTokenProvider):
    """OAuth 2.0 client-credentials grant (RFC 6749 4.4) with HTTP Basic auth;
    the token is reused until 30 s before it expires."""

    def __init__(self, token_url, client_id, secret):
        super().__init__()
        self.token_url, self.client_id, self.secret = token_url, client_id, secret
        self._lock = threading.Lock()
        self._token, self._expires = None, 0.0

    def token(self):
        with self._lock:
            if self._token is None or time.time() > self._expires - 30:
                self._fetch()
            return self._token

    def _fetch(self):
        basic = base64.b64encode(("%s:%s" % (urllib.parse.quote(self.client_id, safe=""),
                                             urllib.parse.quote(self.secret, safe=""))).encode())
        req = urllib.request.Request(
            self.token_url, data=b"grant_type=client_credentials", method="POST",
            headers={"Authorization": "Basic " + basic.decode(),
                     "Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = json.load(resp)
        self._token = body["access_token"]
        self._expires = time.time() + float(body.get("expires_in", 300))


def base_config(bootstrap, auth):
    c = {"bootstrap_servers": bootstrap.split(","), "client_id": "busgate-interop-kafka-python",
         "request_timeout_ms": int(min(ic.timeout_s(), 30) * 1000)}
    if auth.mechanism == "NONE":
        c["security_protocol"] = "PLAINTEXT"
    else:
        c["security_protocol"] = "SASL_PLAINTEXT"
        c["sasl_mechanism"] = auth.mechanism
    if auth.mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        c["sasl_plain_username"] = auth.user
        c["sasl_plain_password"] = auth.password
    elif auth.mechanism == "OAUTHBEARER":
        c["sasl_oauth_token_provider"] = ClientCredentialsTokenProvider(
            auth.token_url, auth.client_id, auth.secret)
    for k, v in ic.extra_props().items():
        c[k] = int(v) if v.isdigit() else v
    return c


def record_error(out, exc):
    out["error"] = type(exc).__name__
    out["message"] = str(exc)
    return isinstance(exc, AuthorizationError)


def produce(bootstrap, auth, out, topic, n):
    out["topic"] = topic
    conf = base_config(bootstrap, auth)
    conf.setdefault("acks", "all")
    conf.setdefault("max_block_ms", int(ic.timeout_s() * 1000))
    p = KafkaProducer(**conf)
    acked, partitions = 0, set()
    try:
        futures = [p.send(topic, key=b"k-%d" % i, value=ic.value(i, CLIENT).encode())
                   for i in range(n)]
        p.flush(timeout=ic.timeout_s())
        for f in futures:
            md = f.get(timeout=ic.timeout_s())
            partitions.add(md.partition)
            acked += 1
    finally:
        out.update(produced=acked, partitions=sorted(partitions))
        p.close(timeout=5)
    return acked == n


def produce_expect_denied(bootstrap, auth, out, topic):
    out["topic"] = topic
    conf = base_config(bootstrap, auth)
    conf.setdefault("max_block_ms", int(ic.timeout_s() * 1000))
    p = None
    try:
        p = KafkaProducer(**conf)
        p.send(topic, key=b"k", value=ic.value(0, CLIENT).encode()).get(timeout=ic.timeout_s())
        out["error"] = None
        return False
    except Exception as e:  # kafka-python raises the broker error class
        return record_error(out, e)
    finally:
        if p is not None:
            p.close(timeout=5)


def consumer(bootstrap, auth, group):
    conf = base_config(bootstrap, auth)
    conf.update(group_id=group, enable_auto_commit=False)
    conf.setdefault("auto_offset_reset", "earliest")
    conf.setdefault("isolation_level", "read_committed")
    conf.setdefault("session_timeout_ms", 10000)
    return KafkaConsumer(**conf)


def consume_group(bootstrap, auth, out, topic, group, n):
    out.update(topic=topic, group=group)
    c = consumer(bootstrap, auth, group)
    got, sample = 0, []
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + ic.timeout_s()
        while got < n and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=500).values():
                for r in recs:
                    got += 1
                    if len(sample) < 5:
                        sample.append(r.value.decode("utf-8", "replace"))
        if got:
            c.commit()
            out["committed"] = True
    finally:
        out.update(consumed=got, values=sample)
        c.close()
    return got >= n


def consume_expect_denied(bootstrap, auth, out, topic, group):
    out.update(topic=topic, group=group)
    got = 0
    c = None
    try:
        c = consumer(bootstrap, auth, group)
        c.subscribe([topic])
        deadline = time.monotonic() + ic.timeout_s()
        while time.monotonic() < deadline:
            got += sum(len(v) for v in c.poll(timeout_ms=500).values())
            # kafka-python 3.x logs a topic authorization failure from a
            # metadata response instead of raising it from poll(); its
            # cluster metadata still records the topic as unauthorized.
            unauthorized = getattr(c._client.cluster, "unauthorized_topics", set())
            if topic in unauthorized:
                raise TopicAuthorizationFailedError(topic)
        out.update(consumed=got, error=None)
        return False
    except Exception as e:
        out["consumed"] = got
        return record_error(out, e)
    finally:
        if c is not None:
            c.close()


def admin_list_topics(bootstrap, auth, out):
    a = KafkaAdminClient(**base_config(bootstrap, auth))
    try:
        out["topics"] = sorted(t for t in a.list_topics() if not t.startswith("__"))
    finally:
        a.close()
    return True


SCENARIOS = {
    "produce": lambda b, a, s, o: produce(b, a, o, ic.arg(s, 1), ic.count(s, 2)),
    "consume-group": lambda b, a, s, o: consume_group(b, a, o, ic.arg(s, 1), ic.arg(s, 2),
                                                      ic.count(s, 3)),
    "produce-expect-denied": lambda b, a, s, o: produce_expect_denied(b, a, o, ic.arg(s, 1)),
    "consume-expect-denied": lambda b, a, s, o: consume_expect_denied(b, a, o, ic.arg(s, 1),
                                                                      ic.arg(s, 2)),
    "admin-list-topics": lambda b, a, s, o: admin_list_topics(b, a, o),
}

if __name__ == "__main__":
    ic.main(CLIENT, list(SCENARIOS), lambda b, a, s, o: SCENARIOS[s[0]](b, a, s, o))
