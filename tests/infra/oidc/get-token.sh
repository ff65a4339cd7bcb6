#!/usr/bin/env bash
# Prints an access token for one of the test OIDC provider's clients.
#   tests/infra/oidc/get-token.sh CLIENT_ID [--claims]
# --claims prints the decoded JWT payload instead (to check iss/aud/groups/exp).
set -euo pipefail
# shellcheck source=../common.sh
. "$(dirname "$0")/../common.sh"

[ $# -ge 1 ] || { echo "usage: ${0##*/} CLIENT_ID [--claims]" >&2; exit 2; }
client="$1"
resp="$(curl -fsS -m 10 -u "$client:$client-secret" -d grant_type=client_credentials \
    "http://127.0.0.1:$BG_OIDC_PORT/token")" || bg_die "token request for $client failed"
token="$(printf '%s' "$resp" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
if [ "${2:-}" = "--claims" ]; then
    printf '%s' "$token" | python3 -c '
import base64, json, sys
p = sys.stdin.read().split(".")[1]
print(json.dumps(json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))), sort_keys=True))'
else
    printf '%s\n' "$token"
fi
