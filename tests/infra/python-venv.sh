#!/usr/bin/env bash
# Creates (once) the Python virtualenv with the Kafka clients the interop
# programs use, in $BUSGATE_CACHE/venv, and prints its python path.
# Re-installs only when tests/infra/python-requirements.txt changes.
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

venv="$BUSGATE_CACHE/venv"
req="$BG_REPO_ROOT/tests/infra/python-requirements.txt"
bg_need python3 flock
bg_lock venv
sum="$(sha256sum "$req" | cut -c1-16)"
if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$sum" ]; then
    bg_log "installing Python Kafka clients into $venv"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >&2 ||
        bg_die "pip install failed"
    echo "$sum" >"$venv/.installed"
fi
echo "$venv/bin/python"
