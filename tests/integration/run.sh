#!/usr/bin/env bash
# Starts the real services the integration suites need, runs the suites once
# per busgate build given on the command line, and stops the services again
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

status=0
for b in "$@"; do
  echo "---- integration suites against $b"
  BG_BUILD_DIR="$root/$b" "$py" -m pytest -q -p no:cacheprovider tests/integration || status=1
done
exit $status
