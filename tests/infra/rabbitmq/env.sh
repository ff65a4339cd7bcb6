# Settings for busgate's private test RabbitMQ (scripts/rabbitmq-up.sh and
# scripts/rabbitmq-down.sh). Sourced after tests/infra/common.sh.
#
# The node is Debian's rabbitmq-server run directly (not the system service,
# not through /usr/sbin's wrapper, which would `su rabbitmq`): every path the
# node and its CLI tools use lives under one run directory owned by whoever
# runs the scripts, root included. HOME points there too, so the Erlang
# cookie is private; epmd gets its own port, so the instance shares nothing
# with a system RabbitMQ or another instance on another port.
# shellcheck shell=bash

# Every port of an instance lies in PORT..PORT+13 (the AMQP port, its epmd,
# the Erlang distribution port, rabbitmqctl's node on 11 ports), below the
# kernel's ephemeral range (32768 and up), where an outgoing connection of
# anything on the machine could hold one while the node starts. rabbitmqctl's
# node is placed explicitly: by default it takes 35672-35682.
BG_RABBIT_PORT="${BG_RABBIT_PORT:-16672}"
BG_RABBIT_EPMD_PORT="${BG_RABBIT_EPMD_PORT:-$((BG_RABBIT_PORT + 1))}"
BG_RABBIT_DIST_PORT="${BG_RABBIT_DIST_PORT:-$((BG_RABBIT_PORT + 2))}"
BG_RABBIT_CTL_PORT_MIN="${BG_RABBIT_CTL_PORT_MIN:-$((BG_RABBIT_PORT + 3))}"
BG_RABBIT_RUN="${BG_RABBIT_RUN_DIR:-$BUSGATE_CACHE/rabbitmq/$BG_RABBIT_PORT}"
BG_RABBIT_NODE="busgate-test-$BG_RABBIT_PORT@localhost"
# busgate's upstream credential on this throwaway loopback-only broker.
BG_RABBIT_USER="busgate"
BG_RABBIT_PASSWORD="busgate-test-password"
# Debian installs the real scripts here; /usr/sbin holds the su wrapper.
BG_RABBIT_SBIN="${BG_RABBIT_SBIN:-/usr/lib/rabbitmq/bin}"

# bg_rabbit_env: exports what rabbitmq-server and rabbitmqctl read.
bg_rabbit_env() {
    export HOME="$BG_RABBIT_RUN/home"
    export RABBITMQ_NODENAME="$BG_RABBIT_NODE"
    export RABBITMQ_CONF_ENV_FILE="$BG_RABBIT_RUN/rabbitmq-env.conf" # not /etc's
    export RABBITMQ_BASE="$BG_RABBIT_RUN"
    export RABBITMQ_CONFIG_FILE="$BG_RABBIT_RUN/rabbitmq.conf"
    export RABBITMQ_ADVANCED_CONFIG_FILE="$BG_RABBIT_RUN/advanced.config"
    export RABBITMQ_MNESIA_BASE="$BG_RABBIT_RUN/mnesia"
    export RABBITMQ_LOG_BASE="$BG_RABBIT_RUN/log"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$BG_RABBIT_RUN/enabled_plugins"
    export RABBITMQ_PLUGINS_EXPAND_DIR="$BG_RABBIT_RUN/plugins-expand"
    export RABBITMQ_PID_FILE="$BG_RABBIT_RUN/rabbit.pid"
    export RABBITMQ_DIST_PORT="$BG_RABBIT_DIST_PORT"
    export RABBITMQ_CTL_DIST_PORT_MIN="$BG_RABBIT_CTL_PORT_MIN"
    export RABBITMQ_CTL_DIST_PORT_MAX="$((BG_RABBIT_CTL_PORT_MIN + 10))"
    # Erlang distribution (node and CLI) on loopback only, like AMQP.
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    export ERL_EPMD_PORT="$BG_RABBIT_EPMD_PORT"
    export ERL_EPMD_ADDRESS="127.0.0.1"
}

# bg_rabbitmqctl ARGS...: rabbitmqctl against this instance. Its Erlang VM
# may spawn epmd, which must not inherit the scripts' lock fd (9).
bg_rabbitmqctl() {
    "$BG_RABBIT_SBIN/rabbitmqctl" -q -n "$BG_RABBIT_NODE" "$@" 9>&-
}
