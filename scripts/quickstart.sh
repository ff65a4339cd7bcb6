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
usage() {
  echo "usage: scripts/quickstart.sh [--demo]"
  echo "  --demo  stop busgate after the demonstration (also without a terminal)"
}
# Refused before anything is installed or started: a mistyped --demo would
# otherwise leave busgate running.
for arg in "$@"; do
  case $arg in
    --demo) keep_running=0 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "scripts/quickstart.sh: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
  esac
done

echo "==== installing dependencies (first run only)"
scripts/install-deps.sh

echo "==== building"
cmake -S . -B build/plain -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/plain -j "$(nproc)" --target busgate >/dev/null
bg=build/plain/broker/busgate

config=examples/quickstart.yaml
echo "==== checking the configuration"
$bg check -c "$config"

# yaml SECTION KEY: the value of KEY inside the top-level SECTION of
# $config (its first occurrence, block or flow style, without quotes or a
# trailing comment); empty when absent. Not a YAML parser: enough for the
# few plain keys of our own file, so that editing it is all a change of
# ports takes.
yaml() {
  awk -v sec="$1" -v key="$2" '
    /^[^[:space:]#-][^:]*:/ { insec = (index($0, sec ":") == 1) }
    insec && match($0, "(^|[[:space:]{,])" key ":[[:space:]]*[^[:space:],}#]+") {
      v = substr($0, RSTART, RLENGTH)
      sub("^.*" key ":[[:space:]]*", "", v)
      gsub(/["\047]/, "", v)
      print v
      exit
    }' "$config"
}
# The addresses the demo uses, from $config: the Kafka listener, the admin
# listener and, for the embedded cluster of N brokers, the ports busgate
# serves its nodes 1..N on (broker_port_base + node id; the base defaults
# to the listen port + 1, as in busgate).
listen=$(yaml kafka listen)
admin=$(yaml admin listen)
nodes=$(yaml kafka embedded)
base=$(yaml kafka broker_port_base)
addr_re='^[^:]+:[0-9]+$'
if ! [[ "$listen" =~ $addr_re && "$admin" =~ $addr_re && "$nodes" =~ ^[0-9]+$ &&
  "$base" =~ ^[0-9]*$ ]]; then
  echo "cannot read kafka.listen and admin.listen (HOST:PORT), kafka.upstream.embedded (N)" \
    "and kafka.broker_port_base (PORT, optional) from $config:" \
    "got '$listen', '$admin', '$nodes', '$base'" >&2
  exit 1
fi
loopback() { # loopback HOST: HOST, or 127.0.0.1 for "listen on every address"
  if [ "$1" = 0.0.0.0 ]; then echo 127.0.0.1; else echo "$1"; fi
}
kafka_host=$(loopback "${listen%:*}") kafka_port=${listen##*:}
admin_host=$(loopback "${admin%:*}") admin_port=${admin##*:}
bootstrap=$kafka_host:$kafka_port
admin_url=http://$admin_host:$admin_port
[ -n "$base" ] || base=$((kafka_port + 1))
checks=("$kafka_host $kafka_port kafka.listen" "$admin_host $admin_port admin.listen")
for id in $(seq 1 "$nodes"); do
  checks+=("$kafka_host $((base + id)) kafka.broker_port_base + $id, embedded node $id")
done

# Whatever already listens on one of these ports would answer the demo's
# requests instead of this busgate, or keep it from starting: stop before
# touching the audit file. What holds the port is not guessed.
for check in "${checks[@]}"; do
  read -r h port what <<<"$check"
  if (exec 3<>"/dev/tcp/$h/$port") 2>/dev/null; then
    echo "port $port on $h ($what in $config) is already in use." \
      "This script checks that the ports $config gives busgate are free before starting it:" \
      "stop the process that holds this one (ss -ltnp 'sport = :$port' names it)," \
      "or edit $config to use other ports." >&2
    exit 1
  fi
done
log=$(mktemp -t busgate-quickstart.XXXXXX.log)
# This run's events go to a fresh file. The last run's are moved aside, not
# truncated, and only now that the checks passed and this script starts its
# own busgate: a run that stops earlier leaves them alone, and a busgate
# still writing the file (started by hand) goes on writing to the .prev.
audit=examples/quickstart-audit.jsonl
if [ -e "$audit" ]; then mv -f "$audit" "$audit.prev"; fi
# In a session of its own (setsid: no fork here, so $! is busgate), so that
# the terminal's Ctrl-C reaches this script alone, which says what happens
# and passes it on (see the end). When both got it, bash could skip the
# script's INT trap: it ignores a SIGINT its child handled without dying.
setsid $bg run -c "$config" 2>"$log" &
pid=$!
cleanup() { # the log is kept only when something failed: it says what
  local rc=$?
  kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  if [ "$rc" != 0 ]; then
    echo "busgate's log: $log" >&2
  else
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
  if curl -sf "$admin_url/readyz" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.1
done
kill -0 "$pid" 2>/dev/null || fail_with_log "busgate did not start"
[ "$ready" = 1 ] || fail_with_log "busgate is not ready after 10 s: \
$(curl -s "$admin_url/readyz" 2>&1 || echo "/readyz did not answer")"

mint() { # mint SUB GROUPS: a development token (tests and demos only)
  $bg token mint --key examples/dev-signing-key.pem --kid busgate-dev --iss busgate-dev \
    --aud busgate --sub "$1" --groups "$2" --ttl 3600
}
alice=$(mint alice producers,consumers)
kc() { # kc TOKEN kcat-args...: kcat through busgate, token as the SASL PLAIN password
  local token=$1; shift
  kcat -b "$bootstrap" -X security.protocol=SASL_PLAINTEXT -X sasl.mechanism=PLAIN \
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
$bg explain -c "$config" --sub alice --groups producers,consumers \
  --resource kafka:topic:payments --verb describe
echo "==== and the audit record of it"
$bg audit tail -c "$config" --sub alice | grep -m1 'payments' || true

if [ "$keep_running" = 1 ]; then state="is running"; else state="was running for this demo"; fi
cat <<TXT

busgate $state:
  Kafka bootstrap   $bootstrap (SASL PLAIN or OAUTHBEARER; the token is the password)
  admin             $admin_url/metrics
  audit events      $audit (this run's; the previous run's in $audit.prev)
  log               $([ "$keep_running" = 1 ] && echo "$log (removed when busgate stops cleanly)" ||
                        echo "(removed when busgate stops)")
  a token           TOKEN=\$($bg token mint --key examples/dev-signing-key.pem \\
                      --kid busgate-dev --iss busgate-dev --aud busgate --sub alice \\
                      --groups producers,consumers)
  produce           printf 'hello\\n' | kcat -b $bootstrap -X security.protocol=SASL_PLAINTEXT \\
                      -X sasl.mechanism=PLAIN -X sasl.username=svc -X sasl.password="\$TOKEN" \\
                      -X log_level=0 -P -t orders
  consume           kcat -b $bootstrap -X security.protocol=SASL_PLAINTEXT \\
                      -X sasl.mechanism=PLAIN -X sasl.username=svc -X sasl.password="\$TOKEN" \\
                      -X log_level=0 -C -t orders -o beginning -e -q
  more              README.md, "Try it with kcat"
TXT
if [ "$keep_running" = 1 ]; then
  echo "Press Ctrl-C to stop."
  # Ctrl-C reaches this script only (busgate has its own session): the trap
  # says what happens and sends busgate SIGINT, on which it drains and exits
  # by itself; a second one makes it stop at once. Without the trap this
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
    kill -INT "$pid" 2>/dev/null || true
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
  echo "(no terminal or --demo: stopping busgate. To keep it running, run scripts/quickstart.sh" \
    "in a terminal, or start it yourself: $bg run -c $config)"
fi
