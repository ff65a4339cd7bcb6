#!/usr/bin/env bash
# Differential check of busgate's Kafka codec against Apache Kafka's own
# generated message classes (kafka-clients $BG_KAFKA_VERSION, the jar the
# test broker runs), in three parts:
#   1. every vector of tests/unit/kafka/kafka_vectors.inc is read by Kafka's
#      class for its message, consuming every byte, and written again to
#      the same bytes;
#   2. Kafka's default instance of every message at every version (null
#      defaults, tagged fields left out) decodes in busgate and re-encodes to
#      the same bytes, busgate's new struct encodes to them too, and busgate
#      accepts no version that Kafka does not know;
#   3. ROUNDS random bodies of every message at every version (nulls in
#      nullable fields, tagged fields set or left at their default, arrays of
#      0-2 elements), written by Kafka from JSON, decode in busgate consuming
#      every byte, with no tagged field unknown, and re-encode byte for byte.
# Usage: tests/interop/kafka-codec/run.sh BUILD_DIR
#   BG_KAFKA_ORACLE_SEED    random seed (default 1); printed, so a failure replays
#   BG_KAFKA_ORACLE_ROUNDS  random bodies per message and version (default 20)
# Exit 0 when all held; 1 with a "MISMATCH NAME vVERSION: ..." line for each
# failure; 2 on bad usage; 3 when the Kafka jars are not the version busgate's
# descriptors were generated from (nothing to compare).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../../infra/common.sh
. "$here/../../infra/common.sh"

[ $# -eq 1 ] || { sed -n '2,21p' "$0" >&2; exit 2; }
oracle="$1/tests/integration/kafka-codec-oracle/bg_kafka_codec_oracle"
[ -x "$oracle" ] || bg_die "$oracle is not built (cmake --build $1)"
seed="${BG_KAFKA_ORACLE_SEED:-1}"
rounds="${BG_KAFKA_ORACLE_ROUNDS:-20}"
defs="$(sed -n 's/^#define BG_KAFKA_DEFS_VERSION "\(.*\)"$/\1/p' "$BG_REPO_ROOT/adapters/kafka/kafka_msgs.h")"
if [ "$defs" != "$BG_KAFKA_VERSION" ]; then
    echo "kafka codec oracle: busgate's descriptors are from Kafka $defs, the jars are $BG_KAFKA_VERSION"
    exit 3
fi
bg_need java javac python3
bg_kafka_fetch
libs="$BG_KAFKA_HOME/libs/*"

# Compiled once per source and Kafka version into the cache (bg_build_once).
javac_build() { # OUT
    rm -f "$1"/*.class
    javac -nowarn -cp "$libs" -d "$1" "$here/KafkaCodecOracle.java" >&2 ||
        bg_die "javac of KafkaCodecOracle.java failed"
}
classes="$BUSGATE_CACHE/interop/kafka-codec"
bg_build_once interop-kafka-codec "$classes" "$classes/KafkaCodecOracle.class" \
    "$(bg_src_sum "$here" KafkaCodecOracle.java)-$BG_KAFKA_VERSION" javac_build "$classes" || exit 1

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "kafka codec oracle: kafka-clients $BG_KAFKA_VERSION, seed $seed, $rounds rounds"
"$oracle" vectors >"$work/vectors"
python3 -B "$here/gen_messages.py" "$BG_KAFKA_HOME/libs/kafka-clients-$BG_KAFKA_VERSION.jar" \
    "$seed" "$rounds" >"$work/random.json"
# Every part runs even after one failed, so a run lists all mismatches.
status=0
java -Xmx512m -XX:TieredStopAtLevel=1 -cp "$classes:$libs" KafkaCodecOracle \
    "$work/vectors" "$work/defaults" "$work/random.json" "$work/random" || status=1
[ -s "$work/defaults" ] && { "$oracle" defaults "$work/defaults" || status=1; }
[ -s "$work/random" ] && { "$oracle" check "$work/random" || status=1; }
[ "$status" = 0 ] || echo "kafka codec oracle: FAILED (seed $seed, $rounds rounds)"
exit "$status"
