#!/usr/bin/env bash
# Stops the test RabbitMQ started by scripts/rabbitmq-up.sh (BG_RABBIT_PORT
# selects the instance): rabbitmqctl stop with a bounded wait, then SIGTERM /
# SIGKILL by pid file if the node is still there, then its private epmd.
# Removes the data directory unless --keep-data is given.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../tests/infra/common.sh
. "$here/../tests/infra/common.sh"
# shellcheck source=../tests/infra/rabbitmq/env.sh
. "$here/../tests/infra/rabbitmq/env.sh"

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

bg_lock "rabbitmq-$BG_RABBIT_PORT"
bg_rabbit_env
stop_s="${BG_RABBIT_STOP_TIMEOUT:-30}"

if bg_pid_alive "$RABBITMQ_PID_FILE" beam; then
    timeout "$stop_s" "$BG_RABBIT_SBIN/rabbitmqctl" -q -n "$BG_RABBIT_NODE" stop \
        "$RABBITMQ_PID_FILE" >/dev/null 2>&1 9>&- || true
    # stop PIDFILE waits for the process; this covers a CLI that timed out.
    if bg_stop_pid "$RABBITMQ_PID_FILE" beam 10; then
        bg_log "rabbitmq needed a signal to stop"
    fi
    echo "rabbitmq stopped"
else
    rm -f "$RABBITMQ_PID_FILE"
    echo "rabbitmq was not running"
fi

# epmd outlives the node. This one listens on our private port only, so
# killing it touches no other Erlang node.
if command -v epmd >/dev/null 2>&1 && timeout 5 epmd -port "$BG_RABBIT_EPMD_PORT" -names >/dev/null 2>&1; then
    timeout 5 epmd -port "$BG_RABBIT_EPMD_PORT" -kill >/dev/null 2>&1 || true
fi

if [ "$keep" -eq 0 ]; then
    rm -rf "$BG_RABBIT_RUN"
else
    echo "data kept in $BG_RABBIT_RUN"
fi
