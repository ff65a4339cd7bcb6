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
# The Debian package starts RabbitMQ as a system service; the tests run their own.
if [[ " ${missing[*]} " == *" rabbitmq-server "* ]]; then
  $sudo service rabbitmq-server stop >/dev/null 2>&1 || true
  pkill -x epmd >/dev/null 2>&1 || true
fi
