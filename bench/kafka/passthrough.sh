#!/usr/bin/env bash
# Kafka pass-through benchmark: Kafka's own producer-perf-test and
# consumer-perf-test DIRECT to the test broker's SASL listener (PLAIN, user
# busgate) versus THROUGH busgate (client PLAIN with a development token,
# busgate SCRAM-SHA-512 upstream), alternating direct/busgate (busgate
# first in even rounds, after an unrecorded warm-up produce), then the
# producer again at half the direct maximum rate for latency, and a
# librdkafka probe (bench/kafka/produce_latency.c) at the same rate for
# microsecond delivery and request round-trip percentiles. Prints numbers
# and busgate/direct ratios; it passes or fails nothing (see
# docs/benchmarks.md, "Kafka pass-through").
#
#   bench/kafka/passthrough.sh
#
# Environment (defaults in brackets):
#   BENCH_RECORDS [1500000]   records per throughput run
#   BENCH_RECORD_SIZE [1024]  bytes per record
#   BENCH_ROUNDS [2]          direct/busgate pairs
#   BENCH_WARMUP [1]          1: first one unrecorded produce of a fifth of
#                             BENCH_RECORDS (BENCH_PROBE_ONLY: one probe run)
#                             each way, while the broker's JIT warms up;
#                             rounds alternate which side runs first either way
#   BENCH_PARTITIONS [6]      partitions of each (fresh) bench topic
#   BENCH_ACKS [all]          producer acks
#   BENCH_LAT_SECONDS [20]    length of each half-rate latency run
#   BENCH_AUDIT [1]           1: busgate writes its audit file (as deployed);
#                             0: no audit (audit: {enabled: false});
#                             both: a second busgate without
#                             audit runs too (mode "noaudit") and a table
#                             compares auditing on vs off in the same run
#   BENCH_CONSUME_ONLY [0]    1: produce one topic directly, then only consume
#                             it, alternating direct/busgate, BENCH_ROUNDS times
#   BENCH_PROBE_ONLY [0]      1: only the latency probe, at BENCH_PROBE_RATE
#   BENCH_PROBE_RATE [40000]  records/s of the probe when run alone
#   BENCH_WORKERS [0]         busgate worker threads (0 = one per core)
#   BENCH_RELAY [0]           1: also run every phase through a bare TCP relay
#                             (bench/tcp_relay.c: no parsing, policy or audit),
#                             mode "relay": the cost of an extra hop alone;
#                             splice: the same relay moving bytes with splice(2),
#                             never through its own memory (tcp_relay --splice). The
#                             broker needs its RELAY listener, advertised at the
#                             relay's port: BG_KAFKA_RELAY_PORT [PLAINTEXT + 5]
#                             and BG_KAFKA_RELAY_FRONT_PORT [PLAINTEXT + 6] are
#                             passed to scripts/kafka-up.sh; a broker already
#                             running without them must be stopped first
#   BENCH_JAVA_OPTS           JVM options of the perf tools [-Xms512m -Xmx512m]
#   BENCH_OUT                 directory for logs and results [a new temp dir]
#   BG_BUILD_DIR              busgate build dir [build/release, Release build]
# Uses the shared broker of scripts/kafka-up.sh (started if needed, never
# stopped); BG_KAFKA_PLAIN_PORT/BG_KAFKA_SASL_PORT select another instance.
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

records="${BENCH_RECORDS:-1500000}"
size="${BENCH_RECORD_SIZE:-1024}"
rounds="${BENCH_ROUNDS:-2}"
warmup="${BENCH_WARMUP:-1}"
parts="${BENCH_PARTITIONS:-6}"
acks="${BENCH_ACKS:-all}"
lat_seconds="${BENCH_LAT_SECONDS:-20}"
audit="${BENCH_AUDIT:-1}"
consume_only="${BENCH_CONSUME_ONLY:-0}"
probe_only="${BENCH_PROBE_ONLY:-0}"
relay="${BENCH_RELAY:-0}"
java_opts="${BENCH_JAVA_OPTS:--Xms512m -Xmx512m -Dorg.slf4j.simpleLogger.defaultLogLevel=warn}"
admin_java_opts="-Xmx256m -XX:TieredStopAtLevel=1 -Dorg.slf4j.simpleLogger.defaultLogLevel=warn"
out="${BENCH_OUT:-$(mktemp -d -t bench-kafka-pt.XXXXXX)}"
runid="$(date +%s)-$$"
plain="127.0.0.1:$BG_KAFKA_PLAIN_PORT"
sasl="127.0.0.1:$BG_KAFKA_SASL_PORT"
results="$out/results.tsv"
tool="$BG_REPO_ROOT/scripts/kafka-tool.sh"
declare -A bg_pids=() bg_boots=()
modes=(direct busgate)
[ "$audit" = both ] && modes+=(noaudit)
[ "$relay" = 0 ] || modes+=(relay)
topics_made=()

cleanup() {
    local t
    local p
    for p in "${bg_pids[@]}"; do
        if kill -0 "$p" 2>/dev/null; then
            kill -TERM "$p" 2>/dev/null || true
            wait "$p" 2>/dev/null || true
        fi
    done
    for t in "${topics_made[@]}"; do topic_delete "$t" || true; done
}
trap cleanup EXIT

topic_create() {
    BG_KAFKA_TOOL_OPTS="$admin_java_opts" "$tool" topics --bootstrap-server "$plain" --create \
        --topic "$1" --partitions "$parts" --replication-factor 1 >/dev/null
    topics_made+=("$1")
}

topic_delete() {
    local t="$1" keep=() x
    BG_KAFKA_TOOL_OPTS="$admin_java_opts" "$tool" topics --bootstrap-server "$plain" --delete \
        --topic "$t" >/dev/null 2>&1 || true
    for x in "${topics_made[@]}"; do [ "$x" = "$t" ] || keep+=("$x"); done
    topics_made=("${keep[@]+"${keep[@]}"}")
}

# start_busgate NAME AUDIT(0|1): a busgate in $out/NAME, its pid and
# bootstrap in bg_pids[NAME] / bg_boots[NAME].
start_busgate() {
    local name="$1" with_audit="$2" listen base admin dir="$out/$1"
    listen="$(bench_free_port)"
    admin="$(bench_free_port)"
    base="$(bench_free_port)"
    mkdir -p "$dir"
    bench_config "$dir/busgate.yaml" "$listen" "$base" "$admin" "$sasl" "$with_audit"
    "$BUSGATE" run -c "$dir/busgate.yaml" 2>"$dir/busgate.log" &
    bg_pids[$name]=$!
    bench_wait_ready "$admin" "${bg_pids[$name]}" || {
        cat "$dir/busgate.log" >&2
        bg_die "busgate ($name) did not become ready"
    }
    bg_boots[$name]="127.0.0.1:$listen"
    # The token is the PLAIN password; the file stays in the private $out.
    cat >"$dir/client.properties" <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=PLAIN
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="bench" password="$(bench_token bench)";
EOF
}

# start_relay: the bare relay (BENCH_RELAY=1) on the broker's advertised
# RELAY port, in front of its RELAY listener; its pid in bg_pids[relay].
start_relay() {
    grep -q "^listeners=.*RELAY://127.0.0.1:$BG_KAFKA_RELAY_PORT" "$BG_KAFKA_RUN/server.properties" &&
        grep -q "^advertised.listeners=.*RELAY://127.0.0.1:$BG_KAFKA_RELAY_FRONT_PORT" \
            "$BG_KAFKA_RUN/server.properties" ||
        bg_die "the running broker has no RELAY listener on $BG_KAFKA_RELAY_PORT advertised at" \
            "$BG_KAFKA_RELAY_FRONT_PORT: stop it (scripts/kafka-down.sh --keep-data) and run again"
    local flags=()
    [ "$relay" = splice ] && flags=(--splice)
    "$BG_BUILD_DIR/bench/tcp_relay" "${flags[@]}" "$BG_KAFKA_RELAY_FRONT_PORT" 127.0.0.1 "$BG_KAFKA_RELAY_PORT" \
        2>"$out/relay.log" &
    bg_pids[relay]=$!
    bg_wait_listening "$BG_KAFKA_RELAY_FRONT_PORT" ||
        bg_die "tcp_relay did not listen on $BG_KAFKA_RELAY_FRONT_PORT"
}

# endpoint MODE: "bootstrap client.properties" for direct, the relay or a busgate.
endpoint() {
    if [ "$1" = direct ]; then
        echo "$sasl $BG_KAFKA_RUN/client-plain.properties"
    elif [ "$1" = relay ]; then
        echo "127.0.0.1:$BG_KAFKA_RELAY_FRONT_PORT $BG_KAFKA_RUN/client-plain.properties"
    else
        echo "${bg_boots[$1]} $out/$1/client.properties"
    fi
}

# mode_cpu MODE: CPU seconds of MODE's busgate (or the relay) so far (0 for direct).
mode_cpu() {
    if [ "$1" = direct ]; then echo 0; else bench_cpu_s "${bg_pids[$1]}"; fi
}

broker_pid() { cat "$BG_KAFKA_RUN/kafka.pid"; }

# record PHASE MODE ROUND KEY=VALUE...: one results line (TSV of k=v).
record() {
    local IFS=$'\t'
    echo "phase=$1	mode=$2	round=$3	${*:4}" >>"$results"
}

# produce MODE ROUND PHASE TOPIC NUM THROUGHPUT
produce() {
    local mode="$1" round="$2" phase="$3" topic="$4" num="$5" tput="$6"
    local bs cfg log c0 c1 b0 b1 m0 m1 w0 w1 load line metrics=()
    read -r bs cfg < <(endpoint "$mode")
    log="$out/$phase-$mode-$round.log"
    [ "$phase" = halfrate ] && metrics=(--print-metrics)
    load="$(bench_loadavg)"
    c0="$(mode_cpu "$mode")"
    b0="$(bench_cpu_s "$(broker_pid)")"
    read -r m0 w0 < <(bench_machine_cpu)
    BG_KAFKA_TOOL_OPTS="$java_opts" "$tool" producer-perf-test --topic "$topic" \
        --num-records "$num" --record-size "$size" --throughput "$tput" \
        --producer-props bootstrap.servers="$bs" acks="$acks" compression.type=lz4 \
        --command-config "$cfg" "${metrics[@]}" >"$log" 2>&1 ||
        { tail -n 20 "$log" >&2; bg_die "producer-perf-test failed ($mode, log $log)"; }
    c1="$(mode_cpu "$mode")"
    b1="$(bench_cpu_s "$(broker_pid)")"
    read -r m1 w1 < <(bench_machine_cpu)
    # "N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max
    # latency, P50 ms 50th, P95 ms 95th, P99 ms 99th, P999 ms 99.9th."
    line="$(grep 'records sent,' "$log" | tail -n 1)"
    [ -n "$line" ] || bg_die "no summary in $log"
    local rps mbps avg p50 p99 reqlat
    rps="$(sed -E 's/.* ([0-9.]+) records\/sec.*/\1/' <<<"$line")"
    mbps="$(sed -E 's/.*\(([0-9.]+) MB\/sec\).*/\1/' <<<"$line")"
    avg="$(sed -E 's/.* ([0-9.]+) ms avg latency.*/\1/' <<<"$line")"
    p50="$(sed -E 's/.* ([0-9.]+) ms 50th.*/\1/' <<<"$line")"
    p99="$(sed -E 's/.* ([0-9.]+) ms 99th.*/\1/' <<<"$line")"
    # producer-metrics:request-latency-avg: mean produce request round trip
    # in ms with decimals (the percentiles above are whole milliseconds).
    reqlat="$(awk '$1 ~ /^producer-metrics:request-latency-avg:/ { print $NF }' "$log" | head -n 1)"
    record "$phase" "$mode" "$round" "rps=$rps" "mbps=$mbps" "avg=$avg" "p50=$p50" "p99=$p99" \
        "reqlat=${reqlat:--}" "bgcpu=$(awk -v a="$c0" -v b="$c1" 'BEGIN{printf "%.2f", b-a}')" \
        "brokercpu=$(awk -v a="$b0" -v b="$b1" 'BEGIN{printf "%.2f", b-a}')" "load=$load" \
        "$(bench_machine_kv "$m0" "$w0" "$m1" "$w1")"
    printf '  %-8s %-7s round %s: %s records/s, %s MB/s, latency avg %s p50 %s p99 %s ms, req-lat avg %s ms, busgate cpu %.2f s, broker cpu %.2f s (load %s)\n' \
        "$phase" "$mode" "$round" "$rps" "$mbps" "$avg" "$p50" "$p99" "${reqlat:--}" \
        "$(awk -v a="$c0" -v b="$c1" 'BEGIN{print b-a}')" "$(awk -v a="$b0" -v b="$b1" 'BEGIN{print b-a}')" "$load"
}

# consume MODE ROUND TOPIC NUM
consume() {
    local mode="$1" round="$2" topic="$3" num="$4"
    local bs cfg log c0 c1 b0 b1 m0 m1 w0 w1 load line
    read -r bs cfg < <(endpoint "$mode")
    log="$out/consume-$mode-$round.log"
    load="$(bench_loadavg)"
    c0="$(mode_cpu "$mode")"
    b0="$(bench_cpu_s "$(broker_pid)")"
    read -r m0 w0 < <(bench_machine_cpu)
    BG_KAFKA_TOOL_OPTS="$java_opts" "$tool" consumer-perf-test --bootstrap-server "$bs" \
        --topic "$topic" --num-records "$num" --group "bench-g-$runid-$mode-$round" \
        --command-config "$cfg" --timeout 60000 >"$log" 2>&1 ||
        { tail -n 20 "$log" >&2; bg_die "consumer-perf-test failed ($mode, log $log)"; }
    c1="$(mode_cpu "$mode")"
    b1="$(bench_cpu_s "$(broker_pid)")"
    read -r m1 w1 < <(bench_machine_cpu)
    # start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg,
    # nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
    line="$(grep -E '^[0-9]{4}-' "$log" | tail -n 1)"
    [ -n "$line" ] || bg_die "no summary in $log"
    local n mbps rps reb
    IFS=', ' read -r -a f <<<"$(tr -s ' ' <<<"$line")"
    # The dates contain a space ("2026-01-01 10:00:00:000"): count from the end.
    local k=${#f[@]}
    n="${f[k - 6]}"
    reb="${f[k - 4]}"
    mbps="${f[k - 2]}"
    rps="${f[k - 1]}"
    [ "${n%.*}" -ge "$num" ] || bg_log "warning: consumed $n of $num records ($mode round $round)"
    record consume "$mode" "$round" "rps=$rps" "mbps=$mbps" "rebalance_ms=$reb" \
        "bgcpu=$(awk -v a="$c0" -v b="$c1" 'BEGIN{printf "%.2f", b-a}')" \
        "brokercpu=$(awk -v a="$b0" -v b="$b1" 'BEGIN{printf "%.2f", b-a}')" "load=$load" \
        "$(bench_machine_kv "$m0" "$w0" "$m1" "$w1")"
    printf '  consume  %-7s round %s: %s records/s, %s MB/s (fetch phase), rebalance %s ms, busgate cpu %.2f s, broker cpu %.2f s (load %s)\n' \
        "$mode" "$round" "$rps" "$mbps" "$reb" "$(awk -v a="$c0" -v b="$c1" 'BEGIN{print b-a}')" \
        "$(awk -v a="$b0" -v b="$b1" 'BEGIN{print b-a}')" "$load"
}

# latency MODE ROUND TOPIC RATE: the librdkafka probe at RATE records/s.
latency() { # latency MODE ROUND TOPIC RATE [PHASE, default latency]
    local mode="$1" round="$2" topic="$3" rate="$4" phase="${5:-latency}" bs cfg user pass log line c0 c1
    read -r bs cfg < <(endpoint "$mode")
    if [ "$mode" = direct ] || [ "$mode" = relay ]; then
        user="$BG_KAFKA_USER" pass="$BG_KAFKA_PASSWORD"
    else
        user=bench pass="$(bench_token bench)"
    fi
    log="$out/$phase-$mode-$round.log"
    c0="$(mode_cpu "$mode")"
    "$BG_BUILD_DIR/bench/kafka_produce_latency" "$bs" "$user" "$pass" "$topic" "$rate" \
        "$lat_seconds" "$size" >"$log" 2>&1 ||
        { tail -n 20 "$log" >&2; bg_die "kafka_produce_latency failed ($mode, log $log)"; }
    c1="$(mode_cpu "$mode")"
    line="$(grep '^delivered=' "$log" | tail -n 1)"
    [ -n "$line" ] || bg_die "no summary in $log"
    local kv k v kvs=()
    for kv in $line; do
        k="${kv%%=*}" v="${kv#*=}"
        case "$k" in dr_mean_us | dr_p50_us | dr_p99_us | rtt_p50_us | rtt_p99_us)
            kvs+=("$k=$(awk -v x="$v" 'BEGIN { printf "%.3f", x / 1000 }')") ;;
        esac
    done
    record "$phase" "$mode" "$round" "${kvs[@]}" "load=$(bench_loadavg)" \
        "bgcpu=$(awk -v a="$c0" -v b="$c1" 'BEGIN{printf "%.2f", b-a}')"
    printf '  %-8s %-7s round %s: %s\n' "$phase" "$mode" "$round" "$line"
}

# mean PHASE MODE KEY: mean of KEY over the matching result lines.
mean() {
    awk -F'\t' -v p="phase=$1" -v m="mode=$2" -v k="$3=" '
        $1 == p && $2 == m { for (i = 1; i <= NF; i++) if (index($i, k) == 1) {
            v = substr($i, length(k) + 1); if (v != "-") { s += v; n++ } } }
        END { if (n) printf "%.2f", s / n; else printf "-" }' "$results"
}

# per_record PHASE [MODE [KEY]]: MODE's (busgate's) mean KEY (bgcpu: its own
# CPU; machcpu: the machine's) per run of PHASE over the records a run
# moves, in µs.
per_record() {
    awk -v c="$(mean "$1" "${2:-busgate}" "${3:-bgcpu}")" -v n="$records" \
        'BEGIN { if (c != "-" && n > 0) printf "%.2f", c * 1e6 / n; else printf "-" }'
}

# machine_lines PHASE...: for each PHASE, the machine's CPU per record and
# how busy its cores were, each mode; with BENCH_RELAY=1 also the relay's
# ratios to direct and its own CPU per record.
machine_lines() {
    local ph m line
    for ph in "$@"; do
        line=""
        for m in "${modes[@]}"; do
            line+=" $m $(per_record "$ph" "$m" machcpu) ($(mean "$ph" "$m" busy) % busy);"
        done
        echo "$ph: machine CPU µs per record (every process) and cores busy:${line%;}"
        [ "$relay" = 0 ] && continue
        echo "$ph: per round, relay/direct records/s: $(bg_bench_pairs "$results" rps "phase=$ph" relay)"
        echo "$ph: relay CPU µs per record $(per_record "$ph" relay), busgate $(per_record "$ph")"
    done
}

row() { # row LABEL PHASE KEY [added]
    local d b r
    d="$(mean "$2" direct "$3")"
    b="$(mean "$2" busgate "$3")"
    r="$(awk -v d="$d" -v b="$b" 'BEGIN { if (d + 0 > 0 && b != "-") printf "%.3f", b / d; else printf "-" }')"
    if [ "${4:-}" = added ]; then
        r="$r (added $(awk -v d="$d" -v b="$b" 'BEGIN { printf "%+.2f ms", b - d }'))"
    fi
    printf '| %-36s | %10s | %10s | %s |\n' "$1" "$d" "$b" "$r"
}

# row_audit LABEL PHASE KEY: busgate with audit vs without, same run.
row_audit() {
    local on off r
    on="$(mean "$2" busgate "$3")"
    off="$(mean "$2" noaudit "$3")"
    r="$(awk -v a="$on" -v b="$off" 'BEGIN { if (b + 0 > 0 && a != "-") printf "%.3f", a / b; else printf "-" }')"
    printf '| %-36s | %10s | %10s | %s |\n' "$1" "$on" "$off" "$r"
}

# audit_table: only with BENCH_AUDIT=both.
audit_table() {
    [ "$audit" = both ] || return 0
    echo
    echo "== auditing on vs off (two busgates, same run)"
    printf '| %-36s | %10s | %10s | %s |\n' metric "audit on" "audit off" "on/off"
    printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..38})" ------------ ------------ -----
    row_audit "produce records/s" produce rps
    row_audit "consume records/s (fetch phase)" consume rps
    row_audit "probe delivery latency p50 ms" latency dr_p50_us
    row_audit "probe delivery latency p99 ms" latency dr_p99_us
    row_audit "busgate CPU s per produce run" produce bgcpu
    row_audit "busgate CPU s per consume run" consume bgcpu
    row_audit "busgate CPU s per probe run" latency bgcpu
}

summary() {
    local hwm rss
    hwm="$(bench_mem_kib "${bg_pids[busgate]}" VmHWM)"
    rss="$(bench_mem_kib "${bg_pids[busgate]}" VmRSS)"
    echo
    echo "== summary (means over $rounds rounds; $records x $size B records, lz4, acks=$acks, $parts partitions)"
    printf '| %-36s | %10s | %10s | %s |\n' metric direct busgate "busgate/direct"
    printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..38})" ------------ ------------ -----
    row "produce records/s" produce rps
    row "produce MB/s" produce mbps
    row "produce latency avg ms" produce avg
    row "produce latency p50 ms" produce p50
    row "produce latency p99 ms" produce p99
    row "consume records/s (fetch phase)" consume rps
    row "consume MB/s (fetch phase)" consume mbps
    row "half rate ($half rec/s) latency avg ms" halfrate avg added
    row "half rate p50 ms" halfrate p50 added
    row "half rate p99 ms" halfrate p99 added
    row "half rate request-latency-avg ms" halfrate reqlat added
    row "probe delivery latency mean ms" latency dr_mean_us added
    row "probe delivery latency p50 ms" latency dr_p50_us added
    row "probe delivery latency p99 ms" latency dr_p99_us added
    row "probe request round trip p50 ms" latency rtt_p50_us added
    row "probe request round trip p99 ms" latency rtt_p99_us added
    row "broker CPU s per produce run" produce brokercpu
    row "broker CPU s per consume run" consume brokercpu
    printf '| %-36s | %10s | %10s | %s |\n' "busgate CPU s per produce run" - "$(mean produce busgate bgcpu)" ""
    printf '| %-36s | %10s | %10s | %s |\n' "busgate CPU s per consume run" - "$(mean consume busgate bgcpu)" ""
    printf '| %-36s | %10s | %10s | %s |\n' "busgate CPU s per half-rate run" - "$(mean halfrate busgate bgcpu)" ""
    printf '| %-36s | %10s | %10s | %s |\n' "busgate peak RSS (VmHWM) MiB" - "$((hwm / 1024))" ""
    printf '| %-36s | %10s | %10s | %s |\n' "busgate RSS at end MiB" - "$((rss / 1024))" ""
    echo "per round, busgate/direct produce records/s: $(bg_bench_pairs "$results" rps phase=produce)"
    echo "per round, busgate/direct consume records/s: $(bg_bench_pairs "$results" rps phase=consume)"
    echo "per round, probe delivery p99 added ms: $(bg_bench_pairs "$results" dr_p99_us phase=latency "" diff)"
    echo "busgate CPU µs per record: produce $(per_record produce), consume $(per_record consume)"
    machine_lines produce consume
    [ "$relay" = 0 ] ||
        echo "per round, relay probe delivery p99 added ms: $(bg_bench_pairs "$results" dr_p99_us phase=latency relay diff)"
    echo "targets: throughput ratio >= 0.95 both ways; half-rate p99 added <= 0.2 ms"
    echo "(producer-perf-test percentiles are whole milliseconds: a p99 difference of 0 means < 1 ms)"
    audit_table
    echo "results: $results   logs: $out"
}

# The latency probe at $half records/s, alternating direct/busgate; alone
# (BENCH_PROBE_ONLY=1) it prints its own rows.
probe_rounds() {
    local r mode t
    echo "latency probe: $half records/s for $lat_seconds s (after a 3 s warm-up)"
    if [ "$probe_only" = 1 ] && [ "$warmup" != 0 ]; then
        for mode in "${modes[@]}"; do # the broker's first seconds, unrecorded
            t="bench-pt-$runid-probe-warmup-$mode"
            topic_create "$t"
            latency "$mode" 0 "$t" "$half" warmup
            topic_delete "$t"
        done
    fi
    for ((r = 1; r <= rounds; r++)); do
        for mode in $(bg_bench_order "$r" "${modes[@]}"); do
            t="bench-pt-$runid-probe-$mode-$r"
            topic_create "$t"
            latency "$mode" "$r" "$t" "$half"
            topic_delete "$t"
        done
    done
    [ "$probe_only" = 1 ] || return 0
    echo
    printf '| %-36s | %10s | %10s | %s |\n' metric direct busgate "busgate/direct"
    row "probe delivery latency mean ms" latency dr_mean_us added
    row "probe delivery latency p50 ms" latency dr_p50_us added
    row "probe delivery latency p99 ms" latency dr_p99_us added
    row "probe request round trip p50 ms" latency rtt_p50_us added
    row "probe request round trip p99 ms" latency rtt_p99_us added
    printf '| %-36s | %10s | %10s | %s |\n' "busgate CPU s per probe run" - "$(mean latency busgate bgcpu)" ""
    echo "per round, probe delivery p99 added ms: $(bg_bench_pairs "$results" dr_p99_us phase=latency "" diff)"
    [ "$relay" = 0 ] ||
        echo "per round, relay probe delivery p99 added ms: $(bg_bench_pairs "$results" dr_p99_us phase=latency relay diff)"
    audit_table
}

# One topic, produced once directly, consumed BENCH_ROUNDS times each way
# with a new group per run (the records are in the page cache for all).
consume_rounds() {
    local r mode t="bench-pt-$runid-consume"
    topic_create "$t"
    produce direct 0 produce "$t" "$records" -1
    for ((r = 1; r <= rounds; r++)); do
        for mode in $(bg_bench_order "$r" "${modes[@]}"); do
            consume "$mode" "$r" "$t" "$records"
        done
    done
    topic_delete "$t"
    echo
    printf '| %-36s | %10s | %10s | %s |\n' metric direct busgate "busgate/direct"
    row "consume records/s (fetch phase)" consume rps
    row "consume MB/s (fetch phase)" consume mbps
    row "broker CPU s per consume run" consume brokercpu
    printf '| %-36s | %10s | %10s | %s |\n' "busgate CPU s per consume run" - "$(mean consume busgate bgcpu)" ""
    echo "per round, busgate/direct consume records/s: $(bg_bench_pairs "$results" rps phase=consume)"
    machine_lines consume
    audit_table
    echo "results: $results   logs: $out"
}

main() {
    bg_need java curl python3
    mkdir -p "$out"
    : >"$results"
    if [ "$relay" != 0 ]; then # scripts/kafka-up.sh gives the broker its RELAY listener
        export BG_KAFKA_RELAY_PORT="${BG_KAFKA_RELAY_PORT:-$((BG_KAFKA_PLAIN_PORT + 5))}"
        export BG_KAFKA_RELAY_FRONT_PORT="${BG_KAFKA_RELAY_FRONT_PORT:-$((BG_KAFKA_PLAIN_PORT + 6))}"
    fi
    "$BG_REPO_ROOT/scripts/kafka-up.sh" >/dev/null
    if [ "$relay" = 0 ]; then bench_build; else bench_build tcp_relay; fi
    echo "busgate $BUSGATE (build type $(grep '^CMAKE_BUILD_TYPE:' "$BG_BUILD_DIR/CMakeCache.txt" | cut -d= -f2))"
    echo "machine: $(nproc) cpus, $(awk '/MemTotal/ {print int($2/1024)" MiB"}' /proc/meminfo), load $(bench_loadavg)"
    start_busgate busgate "$( [ "$audit" = 0 ] && echo 0 || echo 1)"
    [ "$audit" = both ] && start_busgate noaudit 0
    local m
    for m in "${!bg_boots[@]}"; do echo "busgate ($m) pid ${bg_pids[$m]} on ${bg_boots[$m]}"; done
    if [ "$relay" != 0 ]; then
        start_relay
        echo "relay ($([ "$relay" = splice ] && echo splice || echo read/write)) pid ${bg_pids[relay]} on 127.0.0.1:$BG_KAFKA_RELAY_FRONT_PORT -> $BG_KAFKA_RELAY_PORT"
    fi
    echo "broker pid $(broker_pid); out $out"
    local r mode t
    if [ "$consume_only" = 1 ]; then
        consume_rounds
        return
    fi
    if [ "$probe_only" = 1 ]; then
        half="${BENCH_PROBE_RATE:-40000}"
        probe_rounds
        return
    fi
    if [ "$warmup" != 0 ]; then
        for mode in "${modes[@]}"; do
            t="bench-pt-$runid-warmup-$mode"
            topic_create "$t"
            produce "$mode" 0 warmup "$t" "$((records / 5))" -1
            topic_delete "$t"
        done
    fi
    for ((r = 1; r <= rounds; r++)); do
        for mode in $(bg_bench_order "$r" "${modes[@]}"); do
            t="bench-pt-$runid-$mode-$r"
            topic_create "$t"
            produce "$mode" "$r" produce "$t" "$records" -1
            consume "$mode" "$r" "$t" "$records"
            topic_delete "$t"
        done
    done
    half="$(awk -v x="$(mean produce direct rps)" 'BEGIN { printf "%d", x / 2 }')"
    local n=$((half * lat_seconds))
    echo "half-rate runs: --throughput $half, $n records each"
    for ((r = 1; r <= rounds; r++)); do
        for mode in $(bg_bench_order "$r" "${modes[@]}"); do
            t="bench-pt-$runid-lat-$mode-$r"
            topic_create "$t"
            produce "$mode" "$r" halfrate "$t" "$n" "$half"
            topic_delete "$t"
        done
    done
    probe_rounds
    summary
}

main "$@"
