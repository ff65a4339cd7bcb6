#!/usr/bin/env python3
"""Generates adapters/kafka/kafka_msgs.{h,c} from Kafka's JSON message definitions.

HOW TO RUN (only when moving to a newer Kafka; the output is committed and the
build never runs this script):

    # 1. get the definitions into a scratch directory outside the repository:
    #    the kafka-clients jar on Maven Central carries them as resources
    #    under common/message/
    SCRATCH=$(mktemp -d)
    mvn dependency:copy -Dartifact=org.apache.kafka:kafka-clients:4.4.0 -DoutputDirectory=$SCRATCH
    (cd $SCRATCH && unzip -o kafka-clients-4.4.0.jar 'common/message/*')
    # 2. generate (from the repository root)
    python3 adapters/kafka/gen/gen_kafka_msgs.py $SCRATCH/common/message \
        --kafka-version 4.4.0 --out adapters/kafka

Never commit the JSON files themselves. Python 3, standard library only.

Naming scheme of the generated field index constants (also documented in
kafka_msgs.h): BG_KAFKA_<MSG>_<REQ|RESP>_<FIELD>[_<FIELD>...], every part in
UPPER_SNAKE_CASE derived from the JSON CamelCase names, the path going through
nested struct fields; e.g. ProduceRequest TopicData.PartitionData.Records ->
BG_KAFKA_PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA_RECORDS. The value is the
field's index in its struct (JSON order).
"""
import argparse
import glob
import json
import os
import re
import sys

SCALARS = {
    "bool": "BOOL", "int8": "INT8", "int16": "INT16", "uint16": "UINT16",
    "int32": "INT32", "uint32": "UINT32", "int64": "INT64", "float64": "FLOAT64",
    "string": "STRING", "bytes": "BYTES", "records": "RECORDS", "uuid": "UUID",
}
VMAX = 0x7FFF


def strip_comments(text):
    """Removes // comments outside JSON strings (the files carry license headers)."""
    out, i, n, in_str = [], 0, len(text), False
    while i < n:
        c = text[i]
        if in_str:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_str = False
        elif c == '"':
            in_str = True
            out.append(c)
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def vrange(s):
    """'3+' -> (3, VMAX); '0-7' -> (0, 7); '5' -> (5, 5); 'none'/None -> (1, 0) (empty)."""
    if s is None or s == "none":
        return (1, 0)
    s = s.strip()
    if s.endswith("+"):
        return (int(s[:-1]), VMAX)
    if "-" in s:
        a, b = s.split("-")
        return (int(a), int(b))
    return (int(s), int(s))


def load_messages(indir):
    """Kafka's request and response definitions in indir, by api key, each
    request before its response."""
    msgs = []
    for path in sorted(glob.glob(os.path.join(indir, "*.json"))):
        with open(path, encoding="utf-8") as fh:
            j = json.loads(strip_comments(fh.read()))
        if "apiKey" in j and j.get("type") in ("request", "response"):
            msgs.append(j)
    if not msgs:
        sys.exit("no message definitions in %s" % indir)
    msgs.sort(key=lambda m: (m["apiKey"], m["type"] == "response"))
    return msgs


def snake(name):
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    return s.upper()


def c_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Gen:
    def __init__(self):
        self.defs = []      # C definitions, in dependency order
        self.consts = []    # (name, value, comment)
        self.const_names = set()

    def const(self, name, value, comment):
        if name in self.const_names:
            sys.exit("duplicate constant %s" % name)
        self.const_names.add(name)
        self.consts.append((name, value, comment))

    def default(self, f, base):
        d = f.get("default")
        if d is None or base in ("STRING", "BYTES", "RECORDS", "UUID", "ARRAY", "STRUCT"):
            return "0", "0.0", d == "null"
        if d == "null":
            return "0", "0.0", True
        if base == "BOOL":
            return ("1" if str(d).lower() == "true" else "0"), "0.0", False
        if base == "FLOAT64":
            return "0", repr(float(d)), False
        v = int(str(d), 0)
        lit = "INT64_C(%d)" % v if v >= -(2**63) + 1 else "INT64_MIN"
        return lit, "0.0", False

    def struct(self, cname, sname, fields, common, cpath):
        """Emits a struct descriptor named cname; returns its C name."""
        entries, tagged = [], []
        for idx, f in enumerate(fields):
            t = f["type"]
            is_arr = t.startswith("[]")
            et = t[2:] if is_arr else t
            sub = "NULL"
            path = cpath + "_" + snake(f["name"])
            self.const(path, idx, "%s %s" % (f["name"], t))
            if et in SCALARS:
                elem = "BG_KAFKA_T_" + SCALARS[et]
            else:
                sf = f.get("fields")
                if sf is None:
                    if et not in common:
                        sys.exit("unknown type %s in %s" % (et, cname))
                    sf = common[et]
                sub = "&" + self.struct(cname + "_" + f["name"], et, sf, common, path)
                elem = "BG_KAFKA_T_STRUCT"
            typ = "BG_KAFKA_T_ARRAY" if is_arr else elem
            if not is_arr:
                elem = "0"
            base = typ.replace("BG_KAFKA_T_", "")
            di, df, dnull = self.default(f, base)
            vmin, vmax = vrange(f.get("versions"))
            nmin, nmax = vrange(f.get("nullableVersions"))
            tmin, tmax = vrange(f.get("taggedVersions"))
            tag = f.get("tag", -1)
            if tag >= 0:
                tagged.append((tag, idx))
            flags = []
            if f.get("ignorable"):
                flags.append("BG_KAFKA_FF_IGNORABLE")
            if dnull:
                flags.append("BG_KAFKA_FF_DEF_NULL")
            entries.append(
                "    {%s, %s, %s, %s, %d, %d, %d, %d, %d, %d, %d, %s, %s, %s},"
                % (c_str(f["name"]), sub, di, df, vmin, vmax, nmin, nmax, tmin, tmax, tag,
                   typ, elem, " | ".join(flags) or "0"))
        tagged.sort()
        if len(tagged) > 64:
            sys.exit("%s: more than 64 tagged fields (the encoder's bound)" % cname)
        lines = ["static const bg_kafka_field_desc_t %s_f[] = {" % cname] + entries + ["};"]
        if tagged:
            lines.append("static const uint16_t %s_t[] = {%s};" % (
                cname, ", ".join(str(i) for _, i in tagged)))
        lines.append("static const bg_kafka_struct_desc_t %s = {%s, %s_f, %s, %d, %d};" % (
            cname, c_str(sname), cname, (cname + "_t") if tagged else "NULL", len(fields),
            len(tagged)))
        self.defs.append("\n".join(lines))
        return cname


def msg_prefix(name):
    if name.endswith("Request"):
        return snake(name[:-7]) + "_REQ", name[:-7], 0
    if name.endswith("Response"):
        return snake(name[:-8]) + "_RESP", name[:-8], 1
    sys.exit("cannot classify %s" % name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("indir", help="directory holding Kafka's *.json message definitions")
    ap.add_argument("--kafka-version", required=True)
    ap.add_argument("--out", required=True, help="output directory (adapters/kafka)")
    args = ap.parse_args()

    msgs = load_messages(args.indir)

    g = Gen()
    table, names = {}, {}
    for m in msgs:
        pfx, api, is_resp = msg_prefix(m["name"])
        if (m["type"] == "response") != bool(is_resp):
            sys.exit("type/name mismatch in %s" % m["name"])
        common = {c["name"]: c["fields"] for c in m.get("commonStructs", [])}
        cname = "bg_kafka__" + pfx.lower()
        g.struct(cname + "_body", m["name"], m.get("fields", []), common, "BG_KAFKA_" + pfx)
        vmin, vmax = vrange(m["validVersions"])
        fmin, fmax = vrange(m.get("flexibleVersions", "none"))
        if fmin > fmax:
            fmin = VMAX
        desc = "bg_kafka_msg_" + pfx.lower()
        g.defs.append(
            "const bg_kafka_msg_desc_t %s = {%s, %d, %d, %d, %d, %d, %d, &%s_body};" % (
                desc, c_str(m["name"]), m["apiKey"], is_resp,
                1 if m.get("latestVersionUnstable") else 0, vmin, vmax, fmin, cname))
        table[(m["apiKey"], is_resp)] = desc
        names[m["apiKey"]] = api
    max_key = max(k for k, _ in table)
    write_h(args, g, table, names, max_key)
    write_c(args, g, table, names, max_key)


HDR_TYPES = r"""
/* Wire types of a field (bg_kafka_field_desc_t.type / .elem). */
typedef enum {
    BG_KAFKA_T_BOOL = 1,
    BG_KAFKA_T_INT8,
    BG_KAFKA_T_INT16,
    BG_KAFKA_T_UINT16,
    BG_KAFKA_T_INT32,
    BG_KAFKA_T_UINT32,
    BG_KAFKA_T_INT64,
    BG_KAFKA_T_FLOAT64,
    BG_KAFKA_T_STRING,
    BG_KAFKA_T_BYTES,
    BG_KAFKA_T_RECORDS,
    BG_KAFKA_T_UUID,
    BG_KAFKA_T_ARRAY,  /* elem says the element type; elem STRUCT uses sub */
    BG_KAFKA_T_STRUCT, /* single nested struct (nullable ones carry an int8 marker) */
} bg_kafka_type_t;

#define BG_KAFKA_VMAX 0x7fff /* "N+" version ranges end here */

/* Field flags. */
#define BG_KAFKA_FF_IGNORABLE 0x01 /* may be dropped when absent in a version */
#define BG_KAFKA_FF_DEF_NULL 0x02  /* JSON default is null */

typedef struct bg_kafka_struct_desc_s bg_kafka_struct_desc_t;

/* One field. Version ranges are inclusive; an empty range has min > max. A
 * field is tagged in version v when v is in [tag_min, tag_max]. */
typedef struct bg_kafka_field_desc_s {
    const char *name;                  /* JSON name, e.g. "TopicData" */
    const bg_kafka_struct_desc_t *sub; /* STRUCT, or ARRAY of STRUCT; else NULL */
    int64_t def_i;                     /* default of integer / bool fields */
    double def_f;                      /* default of float64 fields */
    int16_t ver_min, ver_max;          /* versions where the field exists */
    int16_t null_min, null_max;        /* nullableVersions */
    int16_t tag_min, tag_max;          /* taggedVersions */
    int32_t tag;                       /* tag number, -1 when never tagged */
    uint8_t type;                      /* bg_kafka_type_t */
    uint8_t elem;                      /* element type for ARRAY, else 0 */
    uint8_t flags;                     /* BG_KAFKA_FF_* */
} bg_kafka_field_desc_t;

struct bg_kafka_struct_desc_s {
    const char *name;
    const bg_kafka_field_desc_t *fields;
    const uint16_t *tag_order; /* indices of fields with a tag, by ascending tag */
    uint16_t nfields, ntagged;
};

/* One request or response body (the header is handled by kafka_frame.h). */
typedef struct bg_kafka_msg_desc_s {
    const char *name;          /* "ProduceRequest" */
    int16_t api_key;
    uint8_t is_response;
    uint8_t latest_unstable;   /* valid_max is not yet a stable version */
    int16_t valid_min, valid_max;
    int16_t flex_min;          /* first flexible version; BG_KAFKA_VMAX when never */
    const bg_kafka_struct_desc_t *body;
} bg_kafka_msg_desc_t;

/* The descriptor of api_key's request (is_response 0) or response body;
 * NULL for an unknown api key. Static data: thread-safe, never freed. */
const bg_kafka_msg_desc_t *bg_kafka_msg_desc(int16_t api_key, int is_response);
/* "Produce", "Fetch", ...; NULL for an unknown api key. Static string. */
const char *bg_kafka_api_name(int16_t api_key);

/* 1 when version v is in the field's range [min, max]. */
static inline int bg_kafka_vin(int16_t v, int16_t min, int16_t max) { return v >= min && v <= max; }
"""


def write_h(args, g, table, names, max_key):
    o = []
    o.append("/* GENERATED by adapters/kafka/gen/gen_kafka_msgs.py from the Kafka %s message"
             % args.kafka_version)
    o.append(" * definitions (kafka-clients %s, the JSON files under common/message). Do not edit by hand."
             % args.kafka_version)
    o.append(" *")
    o.append(" * One descriptor per request/response body, consumed by kafka_codec.h.")
    o.append(" *")
    o.append(" * Field index constants: BG_KAFKA_<MSG>_<REQ|RESP>_<FIELD>[_<FIELD>...] is the")
    o.append(" * index of a field inside its struct (JSON order). Every part is the JSON")
    o.append(" * CamelCase name in UPPER_SNAKE_CASE, and the path goes through nested struct")
    o.append(" * fields: ProduceRequest TopicData[].PartitionData[].Records is")
    o.append(" * BG_KAFKA_PRODUCE_REQ_TOPIC_DATA_PARTITION_DATA_RECORDS (index in the")
    o.append(" * PartitionData struct). Use it as s->f[BG_KAFKA_...].")
    o.append(" * Api keys: BG_KAFKA_API_<NAME> (BG_KAFKA_API_PRODUCE = 0, ...).")
    o.append(" * Descriptors: bg_kafka_msg_<msg>_<req|resp> (e.g. bg_kafka_msg_produce_req). */")
    o.append("#ifndef BG_KAFKA_MSGS_H\n#define BG_KAFKA_MSGS_H\n")
    o.append("#include <stdint.h>\n")
    o.append("#define BG_KAFKA_DEFS_VERSION %s" % c_str(args.kafka_version))
    o.append(HDR_TYPES)
    o.append("/* Api keys. */")
    for k in sorted(names):
        o.append("#define BG_KAFKA_API_%s %d" % (snake(names[k]), k))
    o.append("#define BG_KAFKA_API_MAX_KEY %d\n" % max_key)
    o.append("/* Message descriptors. */")
    for (k, r), d in sorted(table.items()):
        o.append("extern const bg_kafka_msg_desc_t %s;" % d)
    o.append("\n/* Field indices. */")
    for name, val, comment in g.consts:
        o.append("#define %s %d /* %s */" % (name, val, comment))
    o.append("\n#endif")
    with open(os.path.join(args.out, "kafka_msgs.h"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(o) + "\n")


def write_c(args, g, table, names, max_key):
    o = []
    o.append("/* GENERATED by adapters/kafka/gen/gen_kafka_msgs.py from the Kafka %s message"
             % args.kafka_version)
    o.append(" * definitions (kafka-clients %s). Do not edit by hand. */" % args.kafka_version)
    o.append('#include "adapters/kafka/kafka_msgs.h"\n')
    o.append("#include <stddef.h>\n")
    o.extend(d + "\n" for d in g.defs)
    o.append("static const bg_kafka_msg_desc_t *const bg_kafka__table[%d][2] = {" % (max_key + 1))
    for k in range(max_key + 1):
        rq, rs = table.get((k, 0)), table.get((k, 1))
        if rq or rs:
            o.append("    [%d] = {%s, %s}," % (k, "&" + rq if rq else "NULL",
                                               "&" + rs if rs else "NULL"))
    o.append("};\n")
    o.append("static const char *const bg_kafka__names[%d] = {" % (max_key + 1))
    for k in sorted(names):
        o.append("    [%d] = %s," % (k, c_str(names[k])))
    o.append("};\n")
    o.append("""const bg_kafka_msg_desc_t *bg_kafka_msg_desc(int16_t api_key, int is_response)
{
    if (api_key < 0 || api_key > BG_KAFKA_API_MAX_KEY)
        return NULL;
    return bg_kafka__table[api_key][is_response ? 1 : 0];
}

const char *bg_kafka_api_name(int16_t api_key)
{
    if (api_key < 0 || api_key > BG_KAFKA_API_MAX_KEY)
        return NULL;
    return bg_kafka__names[api_key];
}""")
    with open(os.path.join(args.out, "kafka_msgs.c"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(o) + "\n")


if __name__ == "__main__":
    main()
