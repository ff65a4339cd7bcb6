#!/usr/bin/env bash
# Installs every Debian package busgate's build, tests and benchmarks need,
# and a Go toolchain recent enough for the franz-go interop client (see
# go_toolchain). Idempotent: what is already present is not touched. Runs as
# root or via sudo.
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
declare -A tools=([java]=default-jdk-headless [mvn]=maven [node]=nodejs [npm]=npm [go]=golang-go)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
for t in "${!tools[@]}"; do
  command -v "$t" >/dev/null 2>&1 || missing+=("${tools[$t]}")
done

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# go_recent: true when the go on PATH is 1.21 or newer. Such a go fetches
# the newer toolchain tests/interop/go/go.mod asks for by itself, through
# the Go module proxy (run-client.sh sets GOTOOLCHAIN=auto).
go_recent() {
  local v
  v="$(go env GOVERSION 2>/dev/null)" || return 1
  v="${v#go}"
  [[ "$v" =~ ^([0-9]+)\.([0-9]+) ]] || return 1
  [ "${BASH_REMATCH[1]}" -gt 1 ] || [ "${BASH_REMATCH[2]}" -ge 21 ]
}

# go_toolchain: Debian bookworm's golang-go is 1.19, too old for franz-go
# and for GOTOOLCHAIN. With it, fetch the toolchain go.mod names as the
# module golang.org/toolchain (through the Go module proxy, checked against
# sum.golang.org, as a newer go does itself) into /usr/local/lib/busgate-go
# and link /usr/local/bin/go to it.
go_toolchain() {
  go_recent && return 0
  local want arch mod dir tmp
  want="$(sed -n 's/^go //p' "$(dirname "$0")/../tests/interop/go/go.mod")"
  [ -n "$want" ] || { echo "install-deps: no go line in tests/interop/go/go.mod" >&2; exit 1; }
  arch="$(go env GOARCH)"
  mod="golang.org/toolchain@v0.0.1-go$want.linux-$arch"
  dir="/usr/local/lib/busgate-go/go$want"
  if [ ! -x "$dir/bin/go" ]; then
    tmp="$(mktemp -d)"
    if ! (cd "$tmp" && GOFLAGS= GO111MODULE=on GOMODCACHE="$tmp/mod" go mod download "$mod"); then
      chmod -R u+w "$tmp"; rm -rf "$tmp"
      echo "install-deps: could not fetch Go $want ($mod) through the Go module proxy;" \
        "the franz-go interop client needs Go 1.21 or newer on PATH" >&2
      exit 1
    fi
    $sudo mkdir -p "${dir%/*}"
    $sudo rm -rf "$dir.tmp"
    $sudo cp -r "$tmp/mod/$mod" "$dir.tmp"
    chmod -R u+w "$tmp"; rm -rf "$tmp"
    # Module zips keep no mode bits: the toolchain's programs need x again.
    $sudo chmod -R u+w,a+rX "$dir.tmp"
    $sudo chmod a+x "$dir.tmp"/bin/* "$dir.tmp"/pkg/tool/*/*
    $sudo mv "$dir.tmp" "$dir"
  fi
  $sudo ln -sfn "$dir/bin/go" /usr/local/bin/go
  hash -r
  go_recent || {
    echo "install-deps: Go $want is in $dir, but an older go comes first on PATH" >&2
    exit 1
  }
}
go_toolchain

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
