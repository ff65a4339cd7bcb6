#!/usr/bin/env bash
# Runs one of Kafka's command-line tools from the jars scripts/kafka-up.sh
# cached (same BG_KAFKA_VERSION), without a Kafka distribution on the machine.
#   scripts/kafka-tool.sh ALIAS|CLASS [ARGS...]
# Example:
#   scripts/kafka-tool.sh topics --bootstrap-server 127.0.0.1:17092 --create --topic t1
# For the SASL listener pass --command-config (or --consumer.config /
# --producer.config) with one of the client-*.properties files kafka-up.sh
# writes into its run directory.
# Several tools moved from the Scala `kafka.*` packages to
# `org.apache.kafka.tools.*` between 3.x and 4.x: an alias resolves to the
# first candidate class present in the cached jars.
set -euo pipefail
# shellcheck source=../tests/infra/common.sh
. "$(dirname "$0")/../tests/infra/common.sh"

declare -A aliases=(
    [topics]="org.apache.kafka.tools.TopicCommand kafka.admin.TopicCommand"
    [console-producer]="org.apache.kafka.tools.ConsoleProducer kafka.tools.ConsoleProducer"
    [console-consumer]="org.apache.kafka.tools.consumer.ConsoleConsumer kafka.tools.ConsoleConsumer"
    [producer-perf-test]="org.apache.kafka.tools.ProducerPerformance"
    [consumer-perf-test]="org.apache.kafka.tools.ConsumerPerformance kafka.tools.ConsumerPerformance"
    [configs]="org.apache.kafka.tools.ConfigCommand kafka.admin.ConfigCommand"
    [acls]="org.apache.kafka.tools.AclCommand kafka.admin.AclCommand"
    [consumer-groups]="org.apache.kafka.tools.consumer.group.ConsumerGroupCommand kafka.admin.ConsumerGroupCommand"
    [get-offsets]="org.apache.kafka.tools.GetOffsetShell kafka.tools.GetOffsetShell"
    [delete-records]="org.apache.kafka.tools.DeleteRecordsCommand kafka.admin.DeleteRecordsCommand"
    [transactions]="org.apache.kafka.tools.TransactionsCommand"
    [broker-api-versions]="org.apache.kafka.tools.BrokerApiVersionsCommand kafka.admin.BrokerApiVersionsCommand"
    [metadata-quorum]="org.apache.kafka.tools.MetadataQuorumCommand"
    [features]="org.apache.kafka.tools.FeatureCommand kafka.admin.FeatureCommand"
    [storage]="kafka.tools.StorageTool"
)

usage() {
    echo "usage: ${0##*/} ALIAS|FULLY.QUALIFIED.Class [ARGS...]" >&2
    echo "aliases: $(printf '%s\n' "${!aliases[@]}" | sort | tr '\n' ' ')" >&2
    exit 2
}

# class_index: one class file name a line from Kafka's own jars, built once.
class_index() {
    local idx="$BG_KAFKA_HOME/classes.idx" j
    if [ ! -s "$idx" ]; then
        for j in "$BG_KAFKA_HOME"/libs/kafka*.jar; do
            unzip -Z1 "$j" '*.class'
        done >"$idx.tmp" 2>/dev/null
        mv "$idx.tmp" "$idx"
    fi
    echo "$idx"
}

resolve() {
    local c idx
    idx="$(class_index)"
    for c in ${aliases[$1]}; do
        if grep -qxF "${c//.//}.class" "$idx"; then
            echo "$c"
            return 0
        fi
    done
    bg_die "no class for '$1' in Kafka $BG_KAFKA_VERSION (tried: ${aliases[$1]})"
}

[ $# -ge 1 ] || usage
bg_need java unzip
bg_kafka_fetch
name="$1"
shift
if [ -n "${aliases[$name]+x}" ]; then
    cls="$(resolve "$name")"
elif [[ "$name" == *.* ]]; then
    cls="$name"
else
    usage
fi
bg_kafka_java "$cls" "$@"
