#!/usr/bin/env bash
# Starts the real services the integration suites need, runs the suites once
# per busgate build given on the command line, and stops the services again
# (also on failure). Usage: tests/integration/run.sh BUILD_DIR [BUILD_DIR...]
#
# The builds' suites run side by side, each in a port range of its own (the
# tests mostly wait on sockets and deadlines, so two runs share the cores
# well); each output line is prefixed with its build's name. Tests marked
# single_build (see conftest.py) run against the last build only: their time
# goes to waiting out real-time deadlines, the same for every build, and the
# last build (the sanitized one in CI) checks them too. Tests marked
# exclusive change or read the shared brokers' global state and run
# afterwards, one build after the other, with nothing beside them.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR..." >&2; exit 2; }

# shellcheck source=../infra/common.sh
. tests/infra/common.sh   # bg_prefixed
py=$(tests/infra/python-venv.sh)   # prints the venv's python

cleanup() {
  scripts/kafka-down.sh >/dev/null 2>&1 || true
  scripts/oidc-down.sh >/dev/null 2>&1 || true
  scripts/rabbitmq-down.sh >/dev/null 2>&1 || true
}
trap cleanup EXIT
scripts/kafka-up.sh
scripts/oidc-up.sh
scripts/rabbitmq-up.sh

# The tests' port range (BG_TEST_PORTS=LO-HI, default 20000 up to 100 below
# the kernel's ephemeral range), cut into one slice per run side by side.
if [ -n "${BG_TEST_PORTS:-}" ]; then
  lo=${BG_TEST_PORTS%-*} hi=${BG_TEST_PORTS#*-}
else
  lo=20000 hi=$(($(cut -f1 /proc/sys/net/ipv4/ip_local_port_range) - 101))
fi

# suite BUILD_DIR PORTS MARKS: one pytest run, its lines prefixed with the
# build's name (and the marks when they select single_build or exclusive tests).
suite() {
  local b=$1 ports=$2 marks=$3 name
  name=$(basename "$b")
  case $marks in single_build*|exclusive*) name="$name ${marks%% *}" ;; esac
  echo "---- integration suites against $b (-m '$marks', ports $ports)"
  local rc=0
  bg_prefixed "$name" env BG_BUILD_DIR="$root/$b" BG_TEST_PORTS="$ports" \
    "$py" -u -m pytest -q -p no:cacheprovider -m "$marks" tests/integration || rc=$?
  # 5 (no test selected) is fine for the exclusive tests only: a build may
  # have none left to run.
  [ "$rc" = 0 ] || { [ "$rc" = 5 ] && [ "${marks%% *}" = exclusive ]; }
}

# One run per build without the single_build tests, and one more of the
# last build with only them, all side by side.
runs=()
for b in "$@"; do runs+=("$b|not exclusive and not single_build"); done
runs+=("${!#}|single_build and not exclusive")
slice=$(((hi - lo + 1) / ${#runs[@]}))
[ "$slice" -ge 2000 ] || { echo "port range $lo-$hi is too small for ${#runs[@]} runs" >&2; exit 2; }
status=0
n=0 pids=()
for r in "${runs[@]}"; do
  first=$((lo + n * slice))
  n=$((n + 1))
  suite "${r%%|*}" "$first-$((first + slice - 1))" "${r#*|}" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || status=1; done

n=0
for b in "$@"; do
  n=$((n + 1))
  marks="exclusive"
  [ "$n" -lt $# ] && marks="$marks and not single_build"
  suite "$b" "$lo-$hi" "$marks" || status=1
done
exit $status
