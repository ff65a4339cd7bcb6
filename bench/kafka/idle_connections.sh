#!/usr/bin/env bash
# Idle-connection memory benchmark: N authenticated, idle Kafka client
# connections held open to busgate (bench/kafka/idle_conns.c), busgate in
# front of the real test broker. Reports busgate's RSS before and with the
# connections, per connection, and the CPU the handshakes cost. The issue's
# target is RSS <= 256 MiB at 10,000 connections; this script prints numbers
# and passes or fails nothing (see docs/benchmarks.md, "Idle connections").
#
#   bench/kafka/idle_connections.sh [N]        # N defaults to 10000
#
# busgate opens one upstream connection per client connection, so it needs
# 2N descriptors (plus a few dozen), and the broker N more. The soft limit is
# raised to the hard one; when the hard limit is too small N is lowered to
# fit and the script says so.
# Environment: BENCH_HOLD_SECONDS [10] how long to hold the connections
# before the final reading; BENCH_MAX_PENDING [64] handshakes in flight;
# BENCH_AUDIT [1]; BENCH_WORKERS [0]; BENCH_OUT [a new temp dir];
# BG_BUILD_DIR [build/release]; BENCH_PRIVATE_BROKER=1 starts (and then
# stops) a private broker on ports 19192-19194 instead of using the shared one.
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

n="${1:-10000}"
hold_s="${BENCH_HOLD_SECONDS:-10}"
max_pending="${BENCH_MAX_PENDING:-64}"
out="${BENCH_OUT:-$(mktemp -d -t bench-kafka-idle.XXXXXX)}"
private="${BENCH_PRIVATE_BROKER:-0}"
bg_pid=""
cl_pid=""

cleanup() {
    if [ -n "$cl_pid" ] && kill -0 "$cl_pid" 2>/dev/null; then
        kill -TERM "$cl_pid" 2>/dev/null || true
        wait "$cl_pid" 2>/dev/null || true
    fi
    if [ -n "$bg_pid" ] && kill -0 "$bg_pid" 2>/dev/null; then
        kill -TERM "$bg_pid" 2>/dev/null || true
        wait "$bg_pid" 2>/dev/null || true
    fi
    if [ "$private" = 1 ]; then
        "$BG_REPO_ROOT/scripts/kafka-down.sh" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

if [ "$private" = 1 ]; then
    # Re-source with the private ports so BG_KAFKA_RUN points at its run dir.
    export BG_KAFKA_PLAIN_PORT=19192 BG_KAFKA_SASL_PORT=19193 BG_KAFKA_CONTROLLER_PORT=19194
    unset BG_KAFKA_RUN_DIR
    # shellcheck source=common.sh
    . "$(dirname "$0")/common.sh"
fi

fit_fd_limits() {
    ulimit -n "$(ulimit -Hn)"
    local lim need
    lim="$(ulimit -n)"
    need=$((2 * n + 128)) # limits.fd_reserve (128) stays out of clients' reach
    if [ "$lim" != unlimited ] && [ "$need" -gt "$lim" ]; then
        local fit=$(((lim - 128) / 2))
        echo "NOTE: busgate needs 2N+128 = $need descriptors but the hard limit here is $lim" \
            "(raising it needs CAP_SYS_RESOURCE): N lowered from $n to $fit"
        n="$fit"
    fi
}

check_broker() {
    local pid soft used
    pid="$(cat "$BG_KAFKA_RUN/kafka.pid")"
    soft="$(awk '/^Max open files/ { print $4 }' "/proc/$pid/limits")"
    used="$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
    echo "broker pid $pid: $used descriptors open, limit $soft"
    if [ "$soft" != unlimited ] && [ $((used + n + 256)) -gt "$soft" ]; then
        bg_die "the broker cannot take $n more connections (limit $soft, $used used);" \
            "rerun with BENCH_PRIVATE_BROKER=1 from a shell whose hard limit is higher"
    fi
}

start_busgate() {
    local listen base admin
    listen="$(bench_free_port)"
    admin="$(bench_free_port)"
    base="$(bench_free_port)"
    mkdir -p "$out"
    bench_config "$out/busgate.yaml" "$listen" "$base" "$admin" "127.0.0.1:$BG_KAFKA_SASL_PORT" \
        "${BENCH_AUDIT:-1}"
    "$BUSGATE" run -c "$out/busgate.yaml" 2>"$out/busgate.log" &
    bg_pid=$!
    bench_wait_ready "$admin" "$bg_pid" || {
        cat "$out/busgate.log" >&2
        bg_die "busgate did not become ready"
    }
    bg_port="$listen"
    bg_admin="$admin"
}

count_fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

main() {
    bg_need curl python3
    fit_fd_limits
    "$BG_REPO_ROOT/scripts/kafka-up.sh" >/dev/null
    bench_build kafka_idle_conns
    local client="$BG_BUILD_DIR/bench/kafka_idle_conns"
    [ -x "$client" ] || bg_die "$client was not built"
    check_broker
    start_busgate
    sleep 2 # let start-up allocations settle before the baseline
    local rss0 hwm0 cpu0 bfd0 t0
    rss0="$(bench_mem_kib "$bg_pid" VmRSS)"
    hwm0="$(bench_mem_kib "$bg_pid" VmHWM)"
    cpu0="$(bench_cpu_s "$bg_pid")"
    bfd0="$(count_fds "$(cat "$BG_KAFKA_RUN/kafka.pid")")"
    echo "busgate pid $bg_pid (Release: $BUSGATE), $n connections, load $(bench_loadavg)"
    echo "baseline: VmRSS $(mib "$rss0") MiB, VmHWM $(mib "$hwm0") MiB"
    bench_token idle >"$out/token"
    "$client" 127.0.0.1 "$bg_port" "$n" "$out/token" 3600 "$max_pending" >"$out/client.out" 2>"$out/client.err" &
    cl_pid=$!
    t0=$SECONDS
    while ! grep -q '^READY' "$out/client.out" 2>/dev/null; do
        kill -0 "$cl_pid" 2>/dev/null || { cat "$out/client.err" >&2; bg_die "idle_conns exited"; }
        ((SECONDS - t0 < 900)) || bg_die "connections not established after 900 s"
        sleep 1
    done
    local cpu1 load
    cpu1="$(bench_cpu_s "$bg_pid")"
    load="$(bench_loadavg)"
    grep '^READY' "$out/client.out"
    sleep "$hold_s"
    local rss1 hwm1 fds bfd1 open
    rss1="$(bench_mem_kib "$bg_pid" VmRSS)"
    hwm1="$(bench_mem_kib "$bg_pid" VmHWM)"
    fds="$(count_fds "$bg_pid")"
    bfd1="$(count_fds "$(cat "$BG_KAFKA_RUN/kafka.pid")")"
    open="$(curl -sf "http://127.0.0.1:$bg_admin/metrics" |
        awk '$1 ~ /^busgate_connections_open/ && /kafka/ { print $2 }' | head -n 1)"
    local auth
    auth="$(sed -nE 's/^READY authenticated=([0-9]+).*/\1/p' "$out/client.out")"
    echo
    echo "== idle connections (busgate Release, load at handshake end $load)"
    echo "| metric | value |"
    echo "|---|---|"
    echo "| connections requested / authenticated | $n / $auth |"
    echo "| busgate open connections metric | ${open:--} |"
    echo "| busgate descriptors | $fds |"
    echo "| broker descriptors added | $((bfd1 - bfd0)) |"
    echo "| busgate VmRSS before | $(mib "$rss0") MiB |"
    echo "| busgate VmRSS holding | $(mib "$rss1") MiB |"
    echo "| busgate VmHWM (peak) | $(mib "$hwm1") MiB |"
    echo "| RSS per connection | $(awk -v a="$rss0" -v b="$rss1" -v n="${auth:-0}" \
        'BEGIN { if (n > 0) printf "%.1f KiB", (b - a) / n; else printf "-" }') |"
    echo "| RSS extrapolated to 10,000 | $(awk -v a="$rss0" -v b="$rss1" -v n="${auth:-0}" \
        'BEGIN { if (n > 0) printf "%.1f MiB", (a + (b - a) / n * 10000) / 1024; else printf "-" }') |"
    echo "| busgate CPU during the handshakes | $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f s", b - a }') |"
    echo "| handshake wall time | $(sed -nE 's/.*seconds=([0-9.]+).*/\1/p' "$out/client.out") s |"
    echo "target: VmRSS <= 256 MiB with 10,000 idle authenticated connections"
    echo "logs: $out"
}

main "$@"
