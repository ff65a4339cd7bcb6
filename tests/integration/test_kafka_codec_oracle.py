"""busgate's Kafka codec against Apache Kafka's own generated message
classes: tests/interop/kafka-codec/run.sh (what it checks is in its header
and in docs/testing.md, "Kafka codec oracle"). No service needs to run, only
the Kafka jars scripts/kafka-up.sh fetches; the busgate half
(bg_kafka_codec_oracle) comes from the build under test, so the sanitized
build checks the codec too.
"""
import re
import subprocess

import pytest

from conftest import ROOT, build_dir

RUN = str(ROOT / "tests" / "interop" / "kafka-codec" / "run.sh")


def test_codec_agrees_with_kafka_classes():
    # 600 s: a cold cache first fetches the Kafka jars and compiles the Java half.
    p = subprocess.run([RUN, str(build_dir())], capture_output=True, text=True, timeout=600)
    if p.returncode == 3:
        pytest.skip(p.stdout.strip())
    mismatches = [l for l in p.stdout.splitlines() if l.startswith("MISMATCH")]
    assert p.returncode == 0 and not mismatches, (
        "kafka codec oracle failed (exit %d, %d mismatches):\n%s\n%s" %
        (p.returncode, len(mismatches), "\n".join(mismatches[:40]),
         p.stdout[-2000:] + p.stderr[-2000:]))
    # Every part covered everything: Kafka read one vector per message and
    # version (as many as its default instances), and busgate checked every
    # default instance and random body Kafka wrote.
    counts = dict(re.findall(r"^(kafka \w+|busgate \w+): (\d+)", p.stdout, re.M))
    assert counts["kafka vectors"] == counts["kafka defaults"] != "0", p.stdout
    assert counts["busgate defaults"] == counts["kafka defaults"], p.stdout
    assert counts["busgate check"] == counts["kafka random"] != "0", p.stdout
