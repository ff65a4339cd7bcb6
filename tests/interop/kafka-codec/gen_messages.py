#!/usr/bin/env python3
"""Random Kafka messages for the codec oracle (run.sh in this folder).

Usage: gen_messages.py KAFKA_CLIENTS_JAR SEED ROUNDS

Prints ROUNDS random bodies of every message at every valid version, one a
line: NAME API_KEY IS_RESPONSE VERSION JSON, the JSON in the shape Kafka's
generated JsonConverters read. The definitions come from the jar itself
(common/message/*.json), the ones its classes were generated from. Values
reach for the encodings' edges: nulls in nullable fields, tagged fields set
or left at their default, arrays of 0-2 elements, integers at their bounds.
The same jar, seed and rounds give the same lines. Standard library only.
"""
import base64
import json
import os
import random
import sys
import zipfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "..", "adapters", "kafka", "gen"))
from gen_kafka_msgs import strip_comments, vrange  # noqa: E402

INTS = {"int8": (-2**7, 2**7 - 1), "int16": (-2**15, 2**15 - 1), "uint16": (0, 2**16 - 1),
        "int32": (-2**31, 2**31 - 1), "uint32": (0, 2**32 - 1), "int64": (-2**63, 2**63 - 1)}


def load_messages(jar):
    """The request and response definitions in the jar, by api key."""
    with zipfile.ZipFile(jar) as z:
        names = sorted(n for n in z.namelist()
                       if n.startswith("common/message/") and n.endswith(".json"))
        defs = [json.loads(strip_comments(z.read(n).decode("utf-8"))) for n in names]
    msgs = [d for d in defs if "apiKey" in d and d.get("type") in ("request", "response")]
    if not msgs:
        sys.exit("no message definitions in %s" % jar)
    return sorted(msgs, key=lambda m: (m["apiKey"], m["type"] == "response"))


def within(v, rng):
    lo, hi = vrange(rng)
    return lo <= v <= hi


def random_bytes(rnd, n):
    return bytes(rnd.randint(0, 255) for _ in range(n))


def scalar(rnd, t):
    if t == "bool":
        return rnd.random() < 0.5
    if t in INTS:
        lo, hi = INTS[t]
        return rnd.choice([0, 1, hi, rnd.randint(lo, hi)] + ([-1, lo] if lo < 0 else []))
    if t == "float64":
        return rnd.choice([0.0, 1.5, -2.25, 1e300])
    if t == "string":
        return "".join(rnd.choice("ab._-Z9") for _ in range(rnd.randint(0, 4)))
    if t in ("bytes", "records"):
        return base64.b64encode(random_bytes(rnd, rnd.randint(0, 5))).decode()
    if t == "uuid":  # the zero uuid now and then: Kafka's default
        raw = random_bytes(rnd, 16) if rnd.random() < 0.8 else bytes(16)
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")
    raise ValueError("unknown type " + t)


def struct(rnd, fields, common, v, depth):
    """One struct at version v; nesting past depth 4 gets empty arrays."""
    out = {}
    for f in fields:
        if not within(v, f["versions"]) or ("tag" in f and rnd.random() < 0.4):
            continue  # absent in v, or a tagged field left at its default
        key = f["name"][0].lower() + f["name"][1:]
        if within(v, f.get("nullableVersions")) and rnd.random() < 0.3:
            out[key] = None
            continue
        t = f["type"]
        elem = t[2:] if t.startswith("[]") else t
        sub = f.get("fields") or common.get(elem)
        one = (lambda: struct(rnd, sub, common, v, depth + 1)) if sub else (lambda: scalar(rnd, elem))
        out[key] = [one() for _ in range(rnd.randint(0, 2 if depth < 4 else 0))] \
            if t.startswith("[]") else one()
    return out


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    jar, seed, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rnd = random.Random(seed)
    msgs = load_messages(jar)
    for _ in range(rounds):
        for m in msgs:
            common = {c["name"]: c["fields"] for c in m.get("commonStructs", [])}
            lo, hi = vrange(m["validVersions"])
            for v in range(lo, hi + 1):
                body = struct(rnd, m["fields"], common, v, 0)
                print(m["name"], m["apiKey"], int(m["type"] == "response"), v,
                      json.dumps(body, separators=(",", ":")))


if __name__ == "__main__":
    main()
