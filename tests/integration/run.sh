#!/usr/bin/env bash
# Starts the real services the integration suites need, runs the suites once
# per busgate build given on the command line (the single_build tests against
# the last one only), and stops the services again
# (also on failure). Usage: tests/integration/run.sh BUILD_DIR [BUILD_DIR...]
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR..." >&2; exit 2; }

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

# Tests marked single_build (see conftest.py) run against the last build
# only: their time is spent waiting out real-time deadlines, the same for
# every build, and the last build (the sanitized one in CI) checks them too.
status=0
n=0
for b in "$@"; do
  n=$((n + 1))
  select=()
  if [ "$n" -lt $# ]; then
    select=(-m "not single_build")
    echo "---- integration suites against $b (without the single_build tests)"
  else
    echo "---- integration suites against $b"
  fi
  BG_BUILD_DIR="$root/$b" "$py" -m pytest -q -p no:cacheprovider "${select[@]}" tests/integration || status=1
done
exit $status
