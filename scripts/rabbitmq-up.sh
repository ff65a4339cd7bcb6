#!/usr/bin/env bash
# Starts a private RabbitMQ (Debian's rabbitmq-server) for busgate's tests on
# 127.0.0.1:${BG_RABBIT_PORT:-16672}, with user busgate (full permissions on
# vhost /) and no guest user, no plugins. Idempotent: when the instance is
# already up it only prints the port. Prints the AMQP port on stdout.
# Works as root: the node runs as the caller, with all state under
# ${BUSGATE_CACHE:-$HOME/.cache/busgate}/rabbitmq/PORT (see
# tests/infra/rabbitmq/env.sh). Stop it with scripts/rabbitmq-down.sh.
# Optional TLS listener (off unless BG_RABBIT_TLS_PORT is set): also serve
# AMQPS on 127.0.0.1:$BG_RABBIT_TLS_PORT with the PEM files
# BG_RABBIT_TLS_CERT and BG_RABBIT_TLS_KEY (no client certificates asked).
# Only read when the node starts: an instance already up keeps its listeners.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../tests/infra/common.sh
. "$here/../tests/infra/common.sh"
# shellcheck source=../tests/infra/rabbitmq/env.sh
. "$here/../tests/infra/rabbitmq/env.sh"

timeout_s="${BG_RABBIT_START_TIMEOUT:-90}"
[ -x "$BG_RABBIT_SBIN/rabbitmq-server" ] ||
    bg_die "$BG_RABBIT_SBIN/rabbitmq-server not found (scripts/install-deps.sh installs rabbitmq-server)"
bg_need erl epmd timeout sed

bg_lock "rabbitmq-$BG_RABBIT_PORT"
bg_rabbit_env

# bg_rabbit_ready: the node's pid is alive and its AMQP port accepts.
bg_rabbit_ready() {
    bg_pid_alive "$RABBITMQ_PID_FILE" beam &&
        (exec 3<>"/dev/tcp/127.0.0.1/$BG_RABBIT_PORT") 2>/dev/null
}

if bg_rabbit_ready; then
    bg_log "rabbitmq already running on 127.0.0.1:$BG_RABBIT_PORT"
    echo "$BG_RABBIT_PORT"
    exit 0
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$BG_RABBIT_PORT") 2>/dev/null; then
    bg_die "port $BG_RABBIT_PORT is taken by another process"
fi

# A node left half-started (crash, killed script) is stopped before a retry.
if bg_pid_alive "$RABBITMQ_PID_FILE" beam; then
    bg_stop_pid "$RABBITMQ_PID_FILE" beam 20 || true
fi

mkdir -p "$HOME" "$RABBITMQ_MNESIA_BASE" "$RABBITMQ_LOG_BASE" "$RABBITMQ_PLUGINS_EXPAND_DIR"
chmod 700 "$BG_RABBIT_RUN" "$HOME"
: >"$RABBITMQ_CONF_ENV_FILE"
echo '[].' >"$RABBITMQ_ENABLED_PLUGINS_FILE" # no management plugin, no plugins at all
sed -e "s/@PORT@/$BG_RABBIT_PORT/" -e "s/@USER@/$BG_RABBIT_USER/" \
    -e "s/@PASSWORD@/$BG_RABBIT_PASSWORD/" \
    "$here/../tests/infra/rabbitmq/rabbitmq.conf.in" >"$RABBITMQ_CONFIG_FILE"
if [ -n "${BG_RABBIT_TLS_PORT:-}" ]; then
    [ -r "${BG_RABBIT_TLS_CERT:-}" ] && [ -r "${BG_RABBIT_TLS_KEY:-}" ] ||
        bg_die "BG_RABBIT_TLS_PORT needs readable BG_RABBIT_TLS_CERT and BG_RABBIT_TLS_KEY"
    cat >>"$RABBITMQ_CONFIG_FILE" <<EOF
listeners.ssl.1 = 127.0.0.1:$BG_RABBIT_TLS_PORT
ssl_options.certfile = $BG_RABBIT_TLS_CERT
ssl_options.keyfile = $BG_RABBIT_TLS_KEY
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
EOF
fi
if [ ! -s "$HOME/.erlang.cookie" ]; then
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$HOME/.erlang.cookie")
    chmod 400 "$HOME/.erlang.cookie"
fi

# The pid file of a node that failed to start would read as this start
# failing at once (see the wait loop below).
rm -f "$RABBITMQ_PID_FILE"
start=$SECONDS
bg_log "starting rabbitmq node $BG_RABBIT_NODE on 127.0.0.1:$BG_RABBIT_PORT"
# Run from the run dir so stray files land there. 9>&-: the daemon (and the
# epmd it spawns) must not inherit the lock fd, or it would hold the lock
# for its whole life.
(cd "$BG_RABBIT_RUN" && "$BG_RABBIT_SBIN/rabbitmq-server" -detached \
    >>"$RABBITMQ_LOG_BASE/startup.log" 2>&1 9>&-) ||
    bg_die "rabbitmq-server -detached failed (see $RABBITMQ_LOG_BASE)"

# await_startup fails at once while the node is not yet registered with
# epmd, so retry it in short slices until the deadline.
while :; do
    if timeout 30 "$BG_RABBIT_SBIN/rabbitmqctl" -q -n "$BG_RABBIT_NODE" await_startup \
        --timeout 20 >/dev/null 2>&1 9>&-; then
        break
    fi
    # The node writes its pid early; once written, a dead pid means it
    # gave up (port in use, bad config): no point waiting for the deadline.
    if [ -s "$RABBITMQ_PID_FILE" ] && ! bg_pid_alive "$RABBITMQ_PID_FILE" beam; then
        bg_log "rabbitmq exited during startup; last log lines:"
        tail -n 20 "$RABBITMQ_LOG_BASE/$BG_RABBIT_NODE.log" >&2 2>/dev/null || true
        exit 1
    fi
    if [ $((SECONDS - start)) -ge "$timeout_s" ]; then
        bg_log "rabbitmq did not start within ${timeout_s}s; last log lines:"
        tail -n 20 "$RABBITMQ_LOG_BASE"/*.log >&2 2>/dev/null || true
        exit 1
    fi
    sleep 0.5
done

# The config created busgate on the first boot of this data dir; make sure
# of the end state anyway (a data dir from an older run may differ).
users="$(bg_rabbitmqctl list_users 2>/dev/null | awk '{print $1}')"
if ! grep -qx "$BG_RABBIT_USER" <<<"$users"; then
    bg_rabbitmqctl add_user "$BG_RABBIT_USER" "$BG_RABBIT_PASSWORD" >/dev/null
    bg_rabbitmqctl set_permissions -p / "$BG_RABBIT_USER" '.*' '.*' '.*' >/dev/null
fi
if grep -qx guest <<<"$users"; then
    bg_rabbitmqctl delete_user guest >/dev/null
fi
for _ in $(seq 1 50); do
    bg_rabbit_ready && break
    sleep 0.2
done
bg_rabbit_ready || bg_die "node started but port $BG_RABBIT_PORT does not accept"
if [ -n "${BG_RABBIT_TLS_PORT:-}" ] &&
    ! (exec 3<>"/dev/tcp/127.0.0.1/$BG_RABBIT_TLS_PORT") 2>/dev/null; then
    bg_die "node started but its TLS port $BG_RABBIT_TLS_PORT does not accept"
fi
bg_log "rabbitmq ready on 127.0.0.1:$BG_RABBIT_PORT after $((SECONDS - start))s (user $BG_RABBIT_USER)"
echo "$BG_RABBIT_PORT"
