#!/usr/bin/env bash
# busgate in five minutes on a fresh Debian machine:
#   installs what is missing, builds busgate, starts it in front of an
#   embedded 3-broker Kafka cluster (librdkafka's mock cluster, no Kafka
#   install needed) with examples/quickstart.yaml, and shows a client going
#   through it: an allowed produce and consume, and a refused produce.
# With a terminal attached busgate then keeps running until Ctrl-C;
# without one (or with --demo) it stops after the demonstration.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
keep_running=1
[ -t 0 ] || keep_running=0
[ "${1:-}" = "--demo" ] && keep_running=0

echo "==== installing dependencies (first run only)"
scripts/install-deps.sh

echo "==== building"
cmake -S . -B build/plain -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/plain -j "$(nproc)" --target busgate >/dev/null
bg=build/plain/broker/busgate

echo "==== checking the configuration"
$bg check -c examples/quickstart.yaml

# Another busgate (an earlier quickstart still running) would answer the
# demo's requests instead of this one: say so and stop before touching its
# audit file.
for port in 19092 19180 19101 19102 19103; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port on 127.0.0.1 is already in use (an earlier quickstart still running?):" \
      "stop that process first" >&2
    exit 1
  fi
done
log=$(mktemp -t busgate-quickstart.XXXXXX.log)
: > examples/quickstart-audit.jsonl # this run's events only
$bg run -c examples/quickstart.yaml 2>"$log" &
pid=$!
cleanup() {
  local rc=$?
  kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  if [ "$rc" != 0 ]; then
    echo "busgate's log: $log" >&2 # kept: it says what went wrong
  elif [ "$keep_running" != 1 ]; then
    rm -f "$log"
  fi
}
trap cleanup EXIT
fail_with_log() { # fail_with_log MESSAGE: the end of busgate's log, the message, exit 1
  tail -n 30 "$log" >&2
  echo "$1" >&2
  exit 1
}
ready=0
for _ in $(seq 1 100); do
  kill -0 "$pid" 2>/dev/null || fail_with_log "busgate did not start"
  if curl -sf http://127.0.0.1:19180/readyz >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.1
done
kill -0 "$pid" 2>/dev/null || fail_with_log "busgate did not start"
[ "$ready" = 1 ] || fail_with_log "busgate is not ready after 10 s: \
$(curl -s http://127.0.0.1:19180/readyz 2>&1 || echo "/readyz did not answer")"

mint() { # mint SUB GROUPS: a development token (tests and demos only)
  $bg token mint --key examples/dev-signing-key.pem --kid busgate-dev --iss busgate-dev \
    --aud busgate --sub "$1" --groups "$2" --ttl 3600
}
alice=$(mint alice producers,consumers)
kc() { # kc TOKEN kcat-args...: kcat through busgate, token as the SASL PLAIN password
  local token=$1; shift
  kcat -b 127.0.0.1:19092 -X security.protocol=SASL_PLAINTEXT -X sasl.mechanism=PLAIN \
    -X sasl.username=svc -X sasl.password="$token" -X log_level=0 "$@"
}

echo "==== alice (groups producers, consumers) produces to 'orders' through busgate"
printf 'order-1\norder-2\norder-3\n' | kc "$alice" -P -t orders
echo "==== alice consumes 'orders'"
kc "$alice" -C -t orders -o beginning -e -q
echo "==== alice tries to produce to 'payments' (no rule allows it)"
# kcat exits 1 when a delivery fails: keep its output, not its status.
denied=$(printf 'x\n' | kc "$alice" -P -t payments 2>&1 || true)
if printf '%s' "$denied" | grep -q -i "authoriz"; then
  echo "refused: TOPIC_AUTHORIZATION_FAILED, as the policy says"
else
  echo "unexpected: the produce to 'payments' was not refused" >&2
  exit 1
fi
echo "==== why? busgate explain (the client's first request, Metadata, needs describe)"
$bg explain -c examples/quickstart.yaml --sub alice --groups producers,consumers \
  --resource kafka:topic:payments --verb describe
echo "==== and the audit record of it"
$bg audit tail -c examples/quickstart.yaml --sub alice | grep -m1 'payments' || true

if [ "$keep_running" = 1 ]; then state="is running"; else state="was running for this demo"; fi
cat <<TXT

busgate $state:
  Kafka bootstrap   127.0.0.1:19092 (SASL PLAIN or OAUTHBEARER; the token is the password)
  admin             http://127.0.0.1:19180/metrics
  audit events      examples/quickstart-audit.jsonl (this run's)
  log               $([ "$keep_running" = 1 ] && echo "$log" || echo "(removed when busgate stops)")
  a token           $bg token mint --key examples/dev-signing-key.pem --kid busgate-dev \\
                      --iss busgate-dev --aud busgate --sub alice --groups producers,consumers
TXT
if [ "$keep_running" = 1 ]; then
  echo "Press Ctrl-C to stop."
  # Ctrl-C reaches busgate too (same process group): it drains and exits by
  # itself, and a second Ctrl-C makes it stop at once. Without the trap this
  # shell would exit at the first one, as if something had failed. wait
  # returns early on a trapped signal, so it is repeated while busgate runs;
  # the last wait gives busgate's own status (bash keeps the status of a
  # child it has already reaped).
  interrupts=0
  on_int() {
    interrupts=$((interrupts + 1))
    if [ "$interrupts" = 1 ]; then
      echo " stopping busgate (Ctrl-C again to stop at once)"
    else
      echo " stopping busgate now"
    fi
  }
  trap on_int INT
  while kill -0 "$pid" 2>/dev/null; do
    wait "$pid" || true
  done
  wait "$pid" && status=0 || status=$?
  trap - INT
  [ "$status" = 0 ] || fail_with_log "busgate exited with status $status"
  echo "busgate stopped."
else
  echo "(no terminal or --demo: stopping busgate; run scripts/quickstart.sh in a terminal to keep it)"
fi
