#!/usr/bin/env bash
# Stops the test broker started by scripts/kafka-up.sh: the instance whose
# PLAINTEXT port is BG_KAFKA_PLAIN_PORT (default 17092, the shared one; its
# run directory and lock are keyed by that port alone). SIGTERM, then SIGKILL
# after a bounded wait; only the process its pid file names.
# Removes the data directory unless --keep-data is given; a later kafka-up.sh
# then restarts the same cluster (same cluster id, topics and offsets).
# The test CA and broker certificate ($BUSGATE_CACHE/kafka-tls) are shared by
# every instance and always kept.
set -euo pipefail
# shellcheck source=../tests/infra/common.sh
. "$(dirname "$0")/../tests/infra/common.sh"

keep=0
for a in "$@"; do
    case "$a" in
    --keep-data) keep=1 ;;
    -h | --help)
        echo "usage: ${0##*/} [--keep-data]"
        exit 0
        ;;
    *) bg_die "unknown argument: $a" ;;
    esac
done

bg_lock "kafka-$BG_KAFKA_PLAIN_PORT"
if bg_stop_pid "$BG_KAFKA_RUN/kafka.pid" kafka.Kafka "${BG_KAFKA_STOP_TIMEOUT:-30}"; then
    echo "kafka stopped"
else
    echo "kafka was not running"
fi
if [ "$keep" -eq 0 ]; then
    rm -rf "$BG_KAFKA_RUN"
else
    echo "data kept in $BG_KAFKA_RUN/data"
fi
