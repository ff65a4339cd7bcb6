# Shared helpers for the Kafka benchmarks in bench/kafka/ (sourced).
# Builds the Release busgate, mints a development token, writes a busgate
# configuration in front of the test broker, and reads /proc for CPU and
# memory. Nothing here asserts timing: the scripts print numbers.
# shellcheck shell=bash

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../../tests/infra/common.sh
. "$BENCH_DIR/../../tests/infra/common.sh"

# Release build of busgate (override with BG_BUILD_DIR=an existing build dir).
BG_BUILD_DIR="${BG_BUILD_DIR:-$BG_REPO_ROOT/build/release}"
BUSGATE="$BG_BUILD_DIR/broker/busgate"

bench_build() {
    bg_need cmake ninja
    if [ ! -f "$BG_BUILD_DIR/CMakeCache.txt" ]; then
        cmake -S "$BG_REPO_ROOT" -B "$BG_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
    fi
    grep -q '^CMAKE_BUILD_TYPE:STRING=Release$' "$BG_BUILD_DIR/CMakeCache.txt" ||
        bg_log "warning: $BG_BUILD_DIR is not a Release build"
    cmake --build "$BG_BUILD_DIR" -j2 --target busgate kafka_produce_latency "$@" >/dev/null
}

# bench_token SUB: a development token signed by the example key (the
# issuer busgate-dev with examples/jwks.json; no OIDC provider involved).
bench_token() {
    "$BUSGATE" token mint --key "$BG_REPO_ROOT/examples/dev-signing-key.pem" --kid busgate-dev \
        --iss busgate-dev --aud busgate --sub "$1" --groups bench --ttl 14400
}

bench_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# bench_config FILE LISTEN_PORT BROKER_PORT_BASE ADMIN_PORT UPSTREAM AUDIT(0|1) [EXTRA]:
# busgate in front of UPSTREAM (SASL_PLAINTEXT, SCRAM-SHA-512 as user
# busgate), allowing everything on bench-* topics and groups to group bench.
bench_config() {
    local f="$1" listen="$2" base="$3" admin="$4" upstream="$5" audit="$6" extra="${7:-}"
    # Without audit the opt-out is written out: busgate refuses a listener
    # with no audit section (and warns at start-up about this one).
    local audit_section="audit: {enabled: false}"
    [ "$audit" = 1 ] && audit_section="audit:
  file: $(dirname "$f")/audit.jsonl"
    cat >"$f" <<EOF
log_level: warn
workers: ${BENCH_WORKERS:-0}
identity:
  issuers:
    - issuer: busgate-dev
      audiences: [busgate]
      jwks_file: $BG_REPO_ROOT/examples/jwks.json
kafka:
  listen: 127.0.0.1:$listen
  broker_port_base: $base
  upstream:
    bootstrap: [$upstream]
    security: sasl_plaintext
    sasl: {mechanism: SCRAM-SHA-512, username: $BG_KAFKA_USER, password: $BG_KAFKA_PASSWORD}
$extra
policy:
  default: deny
  rules:
    - name: bench
      subjects: [group:bench]
      resources: [kafka:topic:bench-*, kafka:group:bench-*]
      verbs: [read, write, describe, create, delete]
      effect: allow
$audit_section
admin:
  listen: 127.0.0.1:$admin
EOF
}

# bench_wait_ready ADMIN_PORT PID: until /readyz answers 200 (60 s).
bench_wait_ready() {
    local i
    for ((i = 0; i < 600; i++)); do
        curl -sf "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# CPU seconds (user+system) of PID so far.
bench_cpu_s() {
    local tck
    tck="$(getconf CLK_TCK)"
    awk -v t="$tck" '{ printf "%.2f\n", ($14 + $15) / t }' "/proc/$1/stat"
}

# bench_mem_kib PID FIELD: VmRSS / VmHWM in KiB.
bench_mem_kib() {
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

bench_loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# bench_machine_cpu: "BUSY WALL": CPU seconds every process on the machine
# has used so far (user, nice, system, irq, softirq; not idle, iowait or
# time the hypervisor stole) and seconds since boot. Two readings around a
# run give the machine CPU the run took, whoever used it.
bench_machine_cpu() {
    local tck
    tck="$(getconf CLK_TCK)"
    awk -v t="$tck" '$1 == "cpu" { printf "%.2f ", ($2 + $3 + $4 + $7 + $8) / t }' /proc/stat
    cut -d' ' -f1 /proc/uptime
}

# bench_machine_kv BUSY0 WALL0 BUSY1 WALL1: "machcpu=S busy=P" for a results
# line: the machine CPU seconds between the readings and the share of all
# cores they were busy (100 = every core busy the whole time).
bench_machine_kv() {
    awk -v b0="$1" -v w0="$2" -v b1="$3" -v w1="$4" -v n="$(nproc)" 'BEGIN {
        w = w1 - w0; printf "machcpu=%.2f\tbusy=%.1f", b1 - b0, (w > 0 ? 100 * (b1 - b0) / (w * n) : 0) }'
}
