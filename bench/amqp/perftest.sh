#!/usr/bin/env bash
# AMQP pass-through benchmark: RabbitMQ PerfTest (the Java client) DIRECT to
# the test RabbitMQ (user busgate) versus THROUGH busgate (PLAIN with a
# development token as the password, busgate logs in upstream with its own
# credential), in the same run, alternating direct/busgate (busgate first
# in even rounds). One producer and
# one consumer, 1 KiB messages, publisher confirms, fixed duration per run.
# Prints msg/s sent and received, consumer and confirm latency p50/p99,
# busgate CPU and RSS, and busgate/direct ratios; it passes or fails nothing
# (see docs/benchmarks.md, "AMQP pass-through").
#
#   bench/amqp/perftest.sh
#
# Environment (defaults in brackets):
#   BENCH_SECONDS [20]     length of each PerfTest run (--time)
#   BENCH_ROUNDS [2]       direct/busgate pairs
#   BENCH_SIZE [1024]      message bytes (--size)
#   BENCH_CONFIRM [100]    max unconfirmed publishes in flight (--confirm)
#   BENCH_QOS [200]        consumer prefetch (--qos)
#   BENCH_RATE [0]         producer rate limit in msg/s (--rate; 0 = none)
#   BENCH_PERSISTENT [0]   1: persistent messages (--flag persistent; PerfTest
#                          then declares its queue durable), so RabbitMQ
#                          writes them to disk before it confirms them
#   BENCH_AUDIT [1]        1: busgate writes its audit file (as deployed);
#                          0: audit: {enabled: false} (no audit)
#   BENCH_WORKERS [0]      busgate worker threads (0 = one per core)
#   BENCH_RELAY [0]        1: also run each round through a bare TCP relay
#                          (bench/tcp_relay.c: no parsing, policy or audit),
#                          the cost of the extra hop alone on this machine
#   BENCH_PERF [0]         1: also `perf record -g` busgate during one more
#                          busgate run; the report lands in $BENCH_OUT/perf.txt
#   BENCH_JAVA_OPTS        PerfTest JVM options [-Xms256m -Xmx512m]
#   BENCH_OUT              directory for logs and results [a new temp dir]
#   BG_BUILD_DIR           busgate build dir [build/release, Release build]
# Uses the shared RabbitMQ of scripts/rabbitmq-up.sh (started if needed,
# never stopped); BG_RABBIT_PORT selects another instance. PerfTest and its
# dependencies are fetched from Maven Central by bench/amqp/pom.xml into
# $BUSGATE_CACHE/bench/amqp-perftest.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../../tests/infra/common.sh
. "$here/../../tests/infra/common.sh"
# shellcheck source=../../tests/infra/rabbitmq/env.sh
. "$here/../../tests/infra/rabbitmq/env.sh"

BG_BUILD_DIR="${BG_BUILD_DIR:-$BG_REPO_ROOT/build/release}"
BUSGATE="$BG_BUILD_DIR/broker/busgate"
seconds="${BENCH_SECONDS:-20}"
rounds="${BENCH_ROUNDS:-2}"
size="${BENCH_SIZE:-1024}"
confirm="${BENCH_CONFIRM:-100}"
qos="${BENCH_QOS:-200}"
rate="${BENCH_RATE:-0}"
persistent="${BENCH_PERSISTENT:-0}"
relay="${BENCH_RELAY:-0}"
relay_pid=""
audit="${BENCH_AUDIT:-1}"
java_opts="${BENCH_JAVA_OPTS:--Xms256m -Xmx512m}"
out="${BENCH_OUT:-$(mktemp -d -t bench-amqp-pt.XXXXXX)}"
results="$out/results.tsv"
lib="$BUSGATE_CACHE/bench/amqp-perftest/lib"
bg_pid=""

cleanup() {
    if [ -n "$relay_pid" ] && kill -0 "$relay_pid" 2>/dev/null; then
        kill -TERM "$relay_pid" 2>/dev/null || true
        wait "$relay_pid" 2>/dev/null || true
    fi
    if [ -n "$bg_pid" ] && kill -0 "$bg_pid" 2>/dev/null; then
        kill -TERM "$bg_pid" 2>/dev/null || true
        wait "$bg_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

build_busgate() {
    bg_need cmake ninja
    [ -f "$BG_BUILD_DIR/CMakeCache.txt" ] ||
        cmake -S "$BG_REPO_ROOT" -B "$BG_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
    grep -q '^CMAKE_BUILD_TYPE:STRING=Release$' "$BG_BUILD_DIR/CMakeCache.txt" ||
        bg_log "warning: $BG_BUILD_DIR is not a Release build"
    cmake --build "$BG_BUILD_DIR" -j2 --target busgate >/dev/null
    # A build directory configured before bench/relay.cmake existed learns
    # the target by configuring again.
    [ "$relay" = 0 ] || cmake --build "$BG_BUILD_DIR" -j2 --target tcp_relay >/dev/null 2>&1 ||
        { cmake -S "$BG_REPO_ROOT" -B "$BG_BUILD_DIR" >/dev/null &&
            cmake --build "$BG_BUILD_DIR" -j2 --target tcp_relay >/dev/null; }
}

# The bare relay in front of the test broker (BENCH_RELAY=1).
start_relay() {
    relay_port="$(free_port)"
    "$BG_BUILD_DIR/bench/tcp_relay" "$relay_port" 127.0.0.1 "$BG_RABBIT_PORT" &
    relay_pid=$!
    bg_wait_listening "$relay_port" || bg_die "tcp_relay did not listen"
}

# Fetches PerfTest's jars once (again when bench/amqp/pom.xml changes).
fetch_perftest() {
    local sum
    sum="$(sha256sum "$here/pom.xml" | cut -c1-16)"
    [ "$(cat "$lib/.fetched" 2>/dev/null)" = "$sum" ] && return 0
    bg_need mvn flock
    mkdir -p "$BUSGATE_CACHE/locks"
    exec 8>"$BUSGATE_CACHE/locks/bench-amqp-perftest.lock"
    flock -w 600 8 || bg_die "timed out waiting for the PerfTest fetch lock"
    if [ "$(cat "$lib/.fetched" 2>/dev/null)" != "$sum" ]; then
        bg_log "fetching RabbitMQ PerfTest into $lib"
        rm -rf "$lib"
        mvn -q -B -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$lib" >&2 || bg_die "fetching PerfTest failed"
        echo "$sum" >"$lib/.fetched"
    fi
    exec 8>&-
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

cpu_s() { # CPU seconds (user+system) of PID so far
    awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / t }' "/proc/$1/stat"
}

mem_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

broker_pid() { cat "$BG_RABBIT_RUN/rabbit.pid"; }

# busgate with the development issuer (examples/jwks.json, no OIDC provider)
# in front of the test broker, allowing everything on bench.* to group bench.
start_busgate() {
    # BENCH_AUDIT=0 writes the opt-out: busgate refuses a listener with no
    # audit section.
    local listen admin audit_section="audit: {enabled: false}"
    listen="$(free_port)"
    admin="$(free_port)"
    mkdir -p "$out/busgate"
    [ "$audit" = 1 ] && audit_section="audit:
  file: $out/busgate/audit.jsonl"
    cat >"$out/busgate/busgate.yaml" <<EOF
log_level: warn
workers: ${BENCH_WORKERS:-0}
identity:
  issuers:
    - issuer: busgate-dev
      audiences: [busgate]
      jwks_file: $BG_REPO_ROOT/examples/jwks.json
amqp:
  listen: 127.0.0.1:$listen
  upstream:
    host: 127.0.0.1:$BG_RABBIT_PORT
    vhost: "/"
    username: $BG_RABBIT_USER
    password: $BG_RABBIT_PASSWORD
policy:
  default: deny
  rules:
    - name: bench
      subjects: [group:bench]
      resources: [amqp:exchange:bench.*, amqp:queue:bench.*]
      verbs: [read, write, describe, create, delete]
      effect: allow
$audit_section
admin:
  listen: 127.0.0.1:$admin
EOF
    "$BUSGATE" run -c "$out/busgate/busgate.yaml" 2>"$out/busgate/busgate.log" &
    bg_pid=$!
    local i
    for ((i = 0; i < 600; i++)); do
        # /readyz reports the AMQP adapter ready only once a session reached
        # RabbitMQ; before the first client, wait for the listener instead.
        (exec 3<>"/dev/tcp/127.0.0.1/$listen") 2>/dev/null && break
        kill -0 "$bg_pid" 2>/dev/null || { cat "$out/busgate/busgate.log" >&2; bg_die "busgate exited"; }
        sleep 0.1
    done
    [ "$i" -lt 600 ] || bg_die "busgate did not listen"
    bg_port="$listen"
    # A development token (issuer busgate-dev) as the PLAIN password. It only
    # ever travels in PerfTest's environment (URI), never on a command line.
    bg_token="$("$BUSGATE" token mint --key "$BG_REPO_ROOT/examples/dev-signing-key.pem" \
        --kid busgate-dev --iss busgate-dev --aud busgate --sub bench --groups bench --ttl 14400)"
}

uri() { # uri MODE
    if [ "$1" = direct ]; then
        echo "amqp://$BG_RABBIT_USER:$BG_RABBIT_PASSWORD@127.0.0.1:$BG_RABBIT_PORT/%2F"
    elif [ "$1" = relay ]; then
        echo "amqp://$BG_RABBIT_USER:$BG_RABBIT_PASSWORD@127.0.0.1:$relay_port/%2F"
    else
        echo "amqp://bench:$bg_token@127.0.0.1:$bg_port/%2F"
    fi
}

proxy_cpu() { # proxy_cpu MODE: CPU seconds so far of the process in the path
    case "$1" in
        busgate) cpu_s "$bg_pid" ;;
        relay) cpu_s "$relay_pid" ;;
        *) echo 0 ;;
    esac
}

record() { # record MODE ROUND KEY=VALUE...: one results line (TSV of k=v)
    local IFS=$'\t'
    echo "mode=$1	round=$2	${*:3}" >>"$results"
}

# pct LOG KIND INDEX: a latency percentile (µs -> ms) from PerfTest's summary
# "KIND latency min/median/75th/95th/99th A/B/C/D/E µs"; INDEX 2 = median, 5 = p99.
pct() {
    awk -v k="$2 latency min/median" -v i="$3" 'index($0, k) {
        split($(NF - 1), v, "/"); printf "%.2f", v[i] / 1000 }' "$1" | tail -n 1
}

# steady LOG_CSV COLUMN: mean of a CSV column over the samples after the
# first 5 s (JIT warm-up of the client).
steady() {
    awk -F, -v c="$2" 'NR > 1 && $2 + 0 > 5 { s += $c; n++ } END { if (n) printf "%.0f", s / n; else printf "-" }' "$1"
}

# perftest MODE ROUND [LABEL]
perftest() {
    local mode="$1" round="$2" tag="${3:-$1-$2}" log csv c0 c1 b0 b1 load args
    log="$out/perftest-$tag.log"
    csv="$out/perftest-$tag.csv"
    args=(--producers 1 --consumers 1 --size "$size" --confirm "$confirm" --qos "$qos"
        --time "$seconds" --exchange bench.x --type direct --queue "bench.q-$tag-$$"
        --auto-delete true --flag mandatory --output-file "$csv" --id "$tag")
    [ "$rate" = 0 ] || args+=(--rate "$rate")
    [ "$persistent" = 0 ] || args+=(--flag persistent)
    load="$(loadavg)"
    c0="$(proxy_cpu "$mode")"
    b0="$(cpu_s "$(broker_pid)")"
    # shellcheck disable=SC2086
    URI="$(uri "$mode")" timeout $((seconds + 120)) java $java_opts -cp "$lib/*" \
        com.rabbitmq.perf.PerfTest "${args[@]}" >"$log" 2>&1 ||
        { tail -n 20 "$log" >&2; bg_die "PerfTest failed ($mode, log $log)"; }
    c1="$(proxy_cpu "$mode")"
    b1="$(cpu_s "$(broker_pid)")"
    local sent recv cp50 cp99 fp50 fp99 ssent srecv bgcpu brcpu
    sent="$(awk '/sending rate avg:/ { print $(NF - 1) }' "$log" | tail -n 1)"
    recv="$(awk '/receiving rate avg:/ { print $(NF - 1) }' "$log" | tail -n 1)"
    [ -n "$sent" ] && [ -n "$recv" ] || bg_die "no summary in $log"
    cp50="$(pct "$log" consumer 2)" cp99="$(pct "$log" consumer 5)"
    fp50="$(pct "$log" confirm 2)" fp99="$(pct "$log" confirm 5)"
    ssent="$(steady "$csv" 3)" srecv="$(steady "$csv" 7)"
    bgcpu="$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')"
    brcpu="$(awk -v a="$b0" -v b="$b1" 'BEGIN { printf "%.2f", b - a }')"
    [ "$tag" = "$mode-$round" ] && record "$mode" "$round" "sent=$sent" "recv=$recv" \
        "ssent=$ssent" "srecv=$srecv" "cp50=$cp50" "cp99=$cp99" "fp50=$fp50" "fp99=$fp99" \
        "bgcpu=$bgcpu" "brokercpu=$brcpu" "load=$load"
    printf '  %-7s round %s: sent %s, received %s msg/s (after 5 s: %s / %s); consumer latency p50 %s p99 %s ms; confirm p50 %s p99 %s ms; %s cpu %s s, broker cpu %s s (load %s)\n' \
        "$mode" "$round" "$sent" "$recv" "$ssent" "$srecv" "$cp50" "$cp99" "$fp50" "$fp99" \
        "$([ "$mode" = relay ] && echo relay || echo busgate)" "$bgcpu" "$brcpu" "$load"
}

mean() { # mean MODE KEY over the result lines
    awk -F'\t' -v m="mode=$1" -v k="$2=" '
        $1 == m { for (i = 1; i <= NF; i++) if (index($i, k) == 1) {
            v = substr($i, length(k) + 1); if (v != "-") { s += v; n++ } } }
        END { if (n) printf "%.2f", s / n; else printf "-" }' "$results"
}

per_msg() { # per_msg MODE CPUKEY: CPU microseconds per received message over the rounds
    awk -F'\t' -v m="mode=$1" -v k="$2=" -v secs="$seconds" '
        function val(key,  i) { for (i = 1; i <= NF; i++) if (index($i, key) == 1) return substr($i, length(key) + 1); return "-" }
        $1 == m { c = val(k); r = val("recv="); if (c != "-" && r + 0 > 0) { cpu += c; msgs += r * secs } }
        END { if (msgs > 0) printf "%.1f", cpu * 1e6 / msgs; else printf "-" }' "$results"
}

row() { # row LABEL KEY
    local d b r
    d="$(mean direct "$2")"
    b="$(mean busgate "$2")"
    r="$(awk -v d="$d" -v b="$b" 'BEGIN { if (d + 0 > 0 && b != "-") printf "%.3f", b / d; else printf "-" }')"
    printf '| %-34s | %10s | %10s | %s |\n' "$1" "$d" "$b" "$r"
}

summary() {
    echo
    echo "== summary (means over $rounds rounds; ${seconds} s each, $size B, 1 producer, 1 consumer, --confirm $confirm, --qos $qos$([ "$persistent" = 0 ] || echo ", persistent"))"
    printf '| %-34s | %10s | %10s | %s |\n' metric direct busgate "busgate/direct"
    printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..36})" ------------ ------------ -----
    row "sent msg/s" sent
    row "received msg/s" recv
    row "sent msg/s after 5 s" ssent
    row "received msg/s after 5 s" srecv
    row "consumer latency p50 ms" cp50
    row "consumer latency p99 ms" cp99
    row "confirm latency p50 ms" fp50
    row "confirm latency p99 ms" fp99
    row "broker CPU s per run" brokercpu
    printf '| %-34s | %10s | %10s | %s |\n' "busgate CPU s per run" - "$(mean busgate bgcpu)" ""
    printf '| %-34s | %10s | %10s | %s |\n' "busgate peak RSS (VmHWM) MiB" - \
        "$(($(mem_kib "$bg_pid" VmHWM) / 1024))" ""
    printf '| %-34s | %10s | %10s | %s |\n' "busgate RSS at end MiB" - \
        "$(($(mem_kib "$bg_pid" VmRSS) / 1024))" ""
    echo "per round, busgate/direct received msg/s: $(bg_bench_pairs "$results" recv)"
    echo "per round, busgate/direct received msg/s after 5 s: $(bg_bench_pairs "$results" srecv)"
    if [ "$relay" != 0 ]; then
        echo "bare relay: received msg/s $(mean relay recv), relay CPU s per run $(mean relay bgcpu)"
        echo "per round, relay/direct received msg/s: $(bg_bench_pairs "$results" recv "" relay)"
        echo "per round, relay/direct received msg/s after 5 s: $(bg_bench_pairs "$results" srecv "" relay)"
    fi
    local relay_cpu=""
    [ "$relay" = 0 ] || relay_cpu=", bare relay $(per_msg relay bgcpu)"
    echo "CPU µs per received message: busgate $(per_msg busgate bgcpu)$relay_cpu; RabbitMQ direct $(per_msg direct brokercpu), through busgate $(per_msg busgate brokercpu)"
    echo "target: received msg/s through busgate >= 0.9x direct"
    echo "results: $results   logs: $out"
}

# One more busgate run under `perf record -g`; the top of the report goes to
# $out/perf.txt.
profile() {
    bg_need perf
    perf record -g -o "$out/perf.data" -p "$bg_pid" -- sleep "$seconds" >/dev/null 2>&1 &
    local perf_pid=$!
    perftest busgate 0 perf
    wait "$perf_pid" || true
    perf report -i "$out/perf.data" --no-children --percent-limit 1 --stdio >"$out/perf.txt" 2>/dev/null || true
    echo "perf report: $out/perf.txt"
}

main() {
    bg_need java python3
    mkdir -p "$out"
    : >"$results"
    "$BG_REPO_ROOT/scripts/rabbitmq-up.sh" >/dev/null
    build_busgate
    fetch_perftest
    echo "busgate $BUSGATE (build type $(grep '^CMAKE_BUILD_TYPE:' "$BG_BUILD_DIR/CMakeCache.txt" | cut -d= -f2))"
    echo "PerfTest $(basename "$(ls "$lib"/perf-test-*.jar)" .jar), RabbitMQ on 127.0.0.1:$BG_RABBIT_PORT (pid $(broker_pid))"
    echo "machine: $(nproc) cpus, $(awk '/MemTotal/ {print int($2/1024)" MiB"}' /proc/meminfo), load $(loadavg)"
    start_busgate
    echo "busgate pid $bg_pid on 127.0.0.1:$bg_port; out $out"
    local r mode modes=(direct busgate)
    if [ "$relay" != 0 ]; then
        start_relay
        modes=(direct relay busgate)
        echo "bare relay pid $relay_pid on 127.0.0.1:$relay_port"
    fi
    for ((r = 1; r <= rounds; r++)); do
        for mode in $(bg_bench_order "$r" "${modes[@]}"); do
            perftest "$mode" "$r"
        done
    done
    summary
    [ "${BENCH_PERF:-0}" != 1 ] || profile
}

main "$@"
