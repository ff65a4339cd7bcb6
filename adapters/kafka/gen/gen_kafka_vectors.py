#!/usr/bin/env python3
"""Generates tests/unit/kafka/kafka_vectors.inc: one byte vector per Kafka
message at every valid version, with the field values it
carries, written from Kafka's JSON message definitions by an encoder of its
own (the protocol guide's encodings), independent of busgate's C codec.

tests/unit/kafka/test_kafka_vectors.c decodes every vector with busgate's
descriptors, compares each field's value with the listing, and re-encodes
it byte for byte. A descriptor that puts a field at the wrong place, reads
it with the wrong encoding, or gets its presence wrong in any version fails
there (null values and omitted default tagged fields are not covered by
these vectors).

HOW TO RUN (with gen_kafka_msgs.py, only when moving to a newer Kafka; the
output is committed and the build never runs this script):

    # the JSON definitions in a scratch directory, as for gen_kafka_msgs.py
    python3 adapters/kafka/gen/gen_kafka_vectors.py $SCRATCH/common/message \\
        --kafka-version 4.4.0 --out tests/unit/kafka/kafka_vectors.inc

Values are deterministic and differ from each field's default (so tagged
fields are written), arrays of structs hold one element and arrays of
scalars two, nothing is null. Python 3, standard library only.
"""
import argparse
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_kafka_msgs import load_messages, vrange  # noqa: E402

SCALAR = {"bool", "int8", "int16", "uint16", "int32", "uint32", "int64", "float64", "string",
          "bytes", "records", "uuid"}


def uvarint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def within(v, rng):
    lo, hi = vrange(rng)
    return lo <= v <= hi


class Vector:
    """Encodes one message body at one version and lists its values."""

    def __init__(self, common, version, flexible):
        self.common = common
        self.v = version
        self.flex = flexible
        self.n = 0
        self.dump = []

    def scalar(self, t, f, path):
        """(bytes, listed value) of a fresh value of scalar type t."""
        self.n += 1
        n = self.n
        d = f.get("default")
        if t == "bool":
            val = not (str(d).lower() == "true")
            return struct.pack(">?", val), str(int(val))
        if t == "float64":
            val = n + 0.5
            if d is not None and float(d) == val:
                val += 1
            return struct.pack(">d", val), format(val, ".17g")
        if t in ("string", "bytes", "records", "uuid"):
            if t == "uuid":
                raw = bytes([n % 250 + 1] * 15 + [0x5A])
            elif t == "string":
                raw = ("s%d" % n).encode()
            elif t == "bytes":
                raw = bytes([n % 256, 0xAB])
            else:
                raw = ("REC%d" % n).encode()
            if t == "uuid":
                return raw, raw.hex()
            if t == "string":
                ln = uvarint(len(raw) + 1) if self.flex else struct.pack(">h", len(raw))
                return ln + raw, raw.decode()
            ln = uvarint(len(raw) + 1) if self.flex else struct.pack(">i", len(raw))
            return ln + raw, raw.hex()
        fmt, base = {"int8": (">b", 0), "int16": (">h", 1000), "uint16": (">H", 2000),
                     "int32": (">i", 100000), "uint32": (">I", 3000000000),
                     "int64": (">q", 10 ** 12)}[t]
        val = (n % 100 + 1) if t == "int8" else base + n
        if d is not None and str(d) != "null" and int(str(d), 0) == val:
            val += 1
        return struct.pack(fmt, val), str(val)

    def value(self, f, path):
        """Bytes of field f (not its tag/size) at self.v; appends to the dump."""
        t = f["type"]
        if t.startswith("[]"):
            et = t[2:]
            if et in SCALAR:
                out = bytearray(uvarint(3) if self.flex else struct.pack(">i", 2))
                self.dump.append("%s#=2" % path)
                for i in range(2):
                    b, s = self.scalar(et, {}, path)
                    out += b
                    self.dump.append("%s[%d]=%s" % (path, i, s))
                return bytes(out)
            self.dump.append("%s#=1" % path)
            head = uvarint(2) if self.flex else struct.pack(">i", 1)
            return head + self.struct(self.fields_of(f, et), path + "[0]")
        if t in SCALAR:
            b, s = self.scalar(t, f, path)
            self.dump.append("%s=%s" % (path, s))
            return b
        marker = struct.pack(">b", 1) if within(self.v, f.get("nullableVersions")) else b""
        return marker + self.struct(self.fields_of(f, t), path)

    def fields_of(self, f, t):
        if "fields" in f:
            return f["fields"]
        if t not in self.common:
            sys.exit("unknown type %s" % t)
        return self.common[t]

    def struct(self, fields, path):
        """Regular fields in order, then (flexible) the tagged section."""
        out, tagged = bytearray(), []
        for f in fields:
            sub = (path + "." if path else "") + f["name"]
            if self.flex and "tag" in f and within(self.v, f.get("taggedVersions")):
                tagged.append((f["tag"], f, sub))
            elif within(self.v, f.get("versions")) and "tag" not in f:
                out += self.value(f, sub)
        if self.flex:
            # listed in field order (as the C walker goes), written by tag
            enc = {}
            for tag, f, sub in tagged:
                enc[tag] = self.value(f, sub)
            out += uvarint(len(enc))
            for tag in sorted(enc):
                out += uvarint(tag) + uvarint(len(enc[tag])) + enc[tag]
        return bytes(out)


def c_bytes(b):
    rows = []
    for i in range(0, len(b), 16):
        rows.append("    " + ", ".join("0x%02x" % c for c in b[i:i + 16]) + ",")
    return "\n".join(rows) if rows else "    0,"


def c_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("indir")
    ap.add_argument("--kafka-version", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    msgs = load_messages(args.indir)
    defs, rows = [], []
    for m in msgs:
        lo, hi = vrange(m["validVersions"])
        if lo > hi:
            continue  # removed from Kafka
        common = {c["name"]: c["fields"] for c in m.get("commonStructs", [])}
        for ver in range(lo, hi + 1):
            vec = Vector(common, ver, within(ver, m.get("flexibleVersions", "none")))
            body = vec.struct(m.get("fields", []), "")
            k = len(rows)
            defs.append("static const uint8_t kv_b%d[] = {\n%s\n};" % (k, c_bytes(body)))
            defs.append("static const char kv_d%d[] =\n%s;" % (
                k, "\n".join("    " + c_str(line + "\n") for line in vec.dump) or '    ""'))
            rows.append("    {%s, %d, %d, %d, kv_b%d, %d, kv_d%d}," % (
                c_str(m["name"]), m["apiKey"], 1 if m["type"] == "response" else 0, ver, k,
                len(body), k))
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write("/* GENERATED by adapters/kafka/gen/gen_kafka_vectors.py from the Kafka %s "
                 "message\n * definitions. Do not edit by hand. */\n\n" % args.kafka_version)
        fh.write("\n".join(defs) + "\n\n")
        fh.write("static const kv_vector_t kv_vectors[] = {\n%s\n};\n" % "\n".join(rows))


if __name__ == "__main__":
    main()
