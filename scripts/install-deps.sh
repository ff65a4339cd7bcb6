#!/usr/bin/env bash
# Installs every Debian package busgate's build, tests and benchmarks need.
# Idempotent: what is already present is not touched. Runs as root or via sudo.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git curl ca-certificates procps
  clang-14 libclang-rt-14-dev llvm-14
  libevent-dev libssl-dev librdkafka-dev librabbitmq-dev libavro-dev
  libjwt-dev libcmocka-dev libfyaml-dev libjansson-dev libsqlite3-dev
  libcurl4-openssl-dev zlib1g-dev libsnappy-dev liblz4-dev libzstd-dev
  python3 python3-pika rabbitmq-server kcat
)
# Toolchains that may come from elsewhere on the machine: only install the
# Debian package when the command is missing.
declare -A tools=([java]=default-jdk-headless [mvn]=maven [node]=nodejs [npm]=npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
for t in "${!tools[@]}"; do
  command -v "$t" >/dev/null 2>&1 || missing+=("${tools[$t]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"

# stop_idle_epmd: stops Erlang's port mapper (epmd, on ERL_EPMD_PORT or
# 4369) when no Erlang node is registered with it. epmd is shared by every
# Erlang node of the machine, so one another node uses is left running
# (said on stderr). A node that has just stopped may take a moment to
# leave it: asked again for up to 5 s.
stop_idle_epmd() {
  command -v epmd >/dev/null 2>&1 || return 0
  local names
  for _ in $(seq 1 10); do
    names=$(timeout 5 epmd -names 2>/dev/null) || return 0 # none running (or it hangs)
    if ! grep -q '^name ' <<<"$names"; then
      timeout 5 epmd -kill >/dev/null 2>&1 || true
      return 0
    fi
    sleep 0.5
  done
  echo "install-deps: leaving epmd running: Erlang nodes are registered with it:" \
    "$(grep '^name ' <<<"$names" | tr '\n' ' ')" >&2
}

# The Debian package starts RabbitMQ as a system service, and with it epmd;
# the tests run their own. Stop the service, then epmd if nothing else uses it.
if [[ " ${missing[*]} " == *" rabbitmq-server "* ]]; then
  $sudo service rabbitmq-server stop >/dev/null 2>&1 || true
  stop_idle_epmd
fi
