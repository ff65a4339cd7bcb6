#!/usr/bin/env bash
# Starts the loopback OIDC provider (tests/infra/oidc/server.js, oidc-provider
# 9.x from the npm registry) for busgate's tests. Idempotent: npm installs
# into $BUSGATE_CACHE/oidc once (again only when package.json or the lock
# file change); a provider already running on this port is left alone.
#
#   issuer  http://127.0.0.1:$BG_OIDC_PORT (19400)
#   token   $issuer/token   (client_credentials; client_secret_basic or _post)
#   jwks    $issuer/jwks    (also written to $BUSGATE_CACHE/oidc/keys/jwks-public.json)
#   clients svc-orders svc-reporting svc-admin svc-intruder svc-short,
#           secret "<client_id>-secret"
set -euo pipefail
# shellcheck source=../tests/infra/common.sh
. "$(dirname "$0")/../tests/infra/common.sh"

timeout_s="${BG_OIDC_START_TIMEOUT:-30}"
src="$BG_REPO_ROOT/tests/infra/oidc"
pidfile="$BG_OIDC_RUN/oidc.pid"
issuer="http://127.0.0.1:$BG_OIDC_PORT"

# install: the checkout only holds package.json, the lock file and
# server.js; node_modules lives in the cache, keyed by their checksum.
install() {
    local sum
    sum="$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -c1-16)"
    mkdir -p "$BG_OIDC_HOME"
    if [ "$(cat "$BG_OIDC_HOME/.installed" 2>/dev/null)" != "$sum" ]; then
        bg_log "installing oidc-provider into $BG_OIDC_HOME"
        cp "$src/package.json" "$src/package-lock.json" "$BG_OIDC_HOME/"
        (cd "$BG_OIDC_HOME" && npm ci --no-audit --no-fund --loglevel=error >&2) ||
            bg_die "npm ci failed in $BG_OIDC_HOME"
        echo "$sum" >"$BG_OIDC_HOME/.installed"
    fi
    # Always refreshed so an edited server.js takes effect on the next start.
    cp "$src/server.js" "$BG_OIDC_HOME/server.js"
}

discovery_ok() {
    curl -fsS -m 2 "$issuer/.well-known/openid-configuration" 2>/dev/null |
        grep -qF "\"issuer\":\"$issuer\""
}

wait_ready() {
    local deadline=$((SECONDS + timeout_s))
    while ((SECONDS < deadline)); do
        kill -0 "$(cat "$pidfile")" 2>/dev/null ||
            { tail -n 20 "$BG_OIDC_RUN/oidc.log" >&2; bg_die "provider exited during start-up"; }
        discovery_ok && return 0
        sleep 0.2
    done
    tail -n 20 "$BG_OIDC_RUN/oidc.log" >&2
    bg_die "provider not ready after ${timeout_s}s (log: $BG_OIDC_RUN/oidc.log)"
}

print_endpoints() {
    echo "oidc provider up (pid $(cat "$pidfile"))"
    echo "  issuer $issuer"
    echo "  token  $issuer/token"
    echo "  jwks   $issuer/jwks"
    echo "  jwks file $BG_OIDC_HOME/keys/jwks-public.json"
    echo "  log    $BG_OIDC_RUN/oidc.log"
}

main() {
    bg_need node npm curl flock
    mkdir -p "$BG_OIDC_RUN"
    bg_lock "oidc-$BG_OIDC_PORT"
    if bg_pid_alive "$pidfile" "$BG_OIDC_HOME/server.js"; then
        wait_ready
        print_endpoints
        return 0
    fi
    install
    # The signing key is created once in the cache and kept across restarts,
    # so a restarted provider keeps its kid.
    BG_OIDC_PORT="$BG_OIDC_PORT" BG_OIDC_STATE="$BG_OIDC_HOME/keys" \
        setsid node "$BG_OIDC_HOME/server.js" </dev/null >>"$BG_OIDC_RUN/oidc.log" 2>&1 9>&- &
    echo $! >"$pidfile"
    wait_ready
    print_endpoints
}

main "$@"
