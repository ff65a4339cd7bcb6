#!/usr/bin/env bash
# Stops the OIDC provider started by scripts/oidc-up.sh (same BG_OIDC_PORT).
# The signing key in $BUSGATE_CACHE/oidc/keys is kept for the next start.
set -euo pipefail
# shellcheck source=../tests/infra/common.sh
. "$(dirname "$0")/../tests/infra/common.sh"

bg_lock "oidc-$BG_OIDC_PORT"
if bg_stop_pid "$BG_OIDC_RUN/oidc.pid" "$BG_OIDC_HOME/server.js" 10; then
    echo "oidc provider stopped"
else
    echo "oidc provider was not running"
fi
rm -rf "$BG_OIDC_RUN"
