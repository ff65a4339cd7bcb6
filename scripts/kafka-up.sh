#!/usr/bin/env bash
# Starts a single-node Apache Kafka (KRaft, combined broker+controller) on
# loopback for busgate's tests. Idempotent: the jars are fetched once into
# $BUSGATE_CACHE (default ~/.cache/busgate); a broker already running from
# this run directory is left alone; an existing data directory (kept by
# `kafka-down.sh --keep-data`) is reused with its cluster id and topics.
#
# Listeners (all 127.0.0.1):
#   PLAINTEXT      $BG_KAFKA_PLAIN_PORT (17092)  setup and checks, no auth
#   SASL_PLAINTEXT $BG_KAFKA_SASL_PORT  (17093)  SCRAM-SHA-512, SCRAM-SHA-256, PLAIN
#   CONTROLLER     $BG_KAFKA_CONTROLLER_PORT (17094)
#   SASL_SSL       $BG_KAFKA_SSL_PORT   (PLAINTEXT + 3: 17095)  same mechanisms and user, TLS with
#                  the test CA $BUSGATE_CACHE/kafka-tls/ca.crt (made once)
#   REAUTH         $BG_KAFKA_REAUTH_PORT (PLAINTEXT + 4: 17096)  SASL_PLAINTEXT as above, but a
#                  login lasts $BG_KAFKA_REAUTH_MS ms (3000): connections must re-authenticate
#   RELAY          only with BG_KAFKA_RELAY_PORT and BG_KAFKA_RELAY_FRONT_PORT set
#                  (bench/kafka/passthrough.sh, BENCH_RELAY=1): SASL_PLAINTEXT PLAIN on
#                  RELAY_PORT, advertised at RELAY_FRONT_PORT, where a bare TCP relay
#                  forwards to it, so that clients stay on the relay after bootstrap
# User busgate / busgate-test-password on every SASL mechanism.
# BG_KAFKA_OAUTH=1 adds OAUTHBEARER (tokens of scripts/oidc-up.sh's provider).
#
# A second broker for the same cluster (tests that stop one broker of two):
# BG_KAFKA_JOIN=PORT (node id BG_KAFKA_NODE_ID, default 2) with this node's
# own BG_KAFKA_PLAIN_PORT/SASL/SSL ports starts a broker-only node that joins
# the running instance whose PLAINTEXT port is PORT; its controller and
# cluster id are read from that instance's run directory
# (BG_KAFKA_JOIN_RUN_DIR, default the instance's default one). kafka-down.sh
# with the same variables stops it.
set -euo pipefail
# shellcheck source=../tests/infra/common.sh
. "$(dirname "$0")/../tests/infra/common.sh"

timeout_s="${BG_KAFKA_START_TIMEOUT:-60}"
oauth="${BG_KAFKA_OAUTH:-0}"
join="${BG_KAFKA_JOIN:-}" # PLAINTEXT port of the instance a broker-only node joins
node_id="${BG_KAFKA_NODE_ID:-$([ -n "$join" ] && echo 2 || echo 1)}"
# The joined instance's run directory (its default one unless given).
join_run="${BG_KAFKA_JOIN_RUN_DIR:-$BUSGATE_CACHE/run/kafka-$join}"
join_voters() {
    [ -f "$join_run/server.properties" ] || bg_die "no instance to join: $join_run"
    sed -n 's/^controller.quorum.voters=//p' "$join_run/server.properties"
}
oidc_issuer="http://127.0.0.1:$BG_OIDC_PORT"
run="$BG_KAFKA_RUN"
if [ -n "$join" ] && { [ "$node_id" = 1 ] || [ "$run" = "$join_run" ]; }; then
    bg_die "a joining node needs a node id other than 1 and its own run directory"
fi
pidfile="$run/kafka.pid"
props="$run/server.properties"
if [ -n "${BG_KAFKA_RELAY_PORT:-}" ] && [ -z "${BG_KAFKA_RELAY_FRONT_PORT:-}" ]; then
    bg_die "BG_KAFKA_RELAY_PORT needs BG_KAFKA_RELAY_FRONT_PORT (the port the relay listens on)"
fi

# has_ssl_listener: the running broker's properties have the SASL_SSL
# listener (a broker started by an older kafka-up.sh does not).
has_ssl_listener() {
    grep -q '^listeners=.*SASL_SSL://' "$props" 2>/dev/null
}

# ssl_port_of_props: the SASL_SSL port the running broker was started with
# (BG_KAFKA_SSL_PORT may differ in the caller's environment).
ssl_port_of_props() {
    grep '^listeners=' "$props" | sed -n 's/.*SASL_SSL:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p'
}

print_endpoints() {
    echo "kafka $BG_KAFKA_VERSION up (pid $(cat "$pidfile"))"
    echo "  PLAINTEXT      127.0.0.1:$BG_KAFKA_PLAIN_PORT"
    echo "  SASL_PLAINTEXT 127.0.0.1:$BG_KAFKA_SASL_PORT ($(grep '^sasl.enabled.mechanisms=' "$props" | cut -d= -f2); user $BG_KAFKA_USER)"
    if has_ssl_listener; then
        echo "  SASL_SSL       127.0.0.1:$(ssl_port_of_props) (same mechanisms and user)"
        echo "  CA             $BG_KAFKA_TLS_DIR/ca.crt"
    else
        echo "  SASL_SSL       not on this broker (started before the listener existed;"
        echo "                 restart: scripts/kafka-down.sh --keep-data && scripts/kafka-up.sh)"
    fi
    if grep -q '^listeners=.*REAUTH://' "$props" 2>/dev/null; then
        echo "  REAUTH         $(grep '^listeners=' "$props" | sed -n 's/.*REAUTH:\/\/\(127\.0\.0\.1:[0-9]*\).*/\1/p') (SASL_PLAINTEXT; logins last $(sed -n 's/^listener.name.reauth.plain.connections.max.reauth.ms=//p' "$props") ms)"
    fi
    if grep -q '^listeners=.*RELAY://' "$props" 2>/dev/null; then
        echo "  RELAY          $(grep '^listeners=' "$props" | sed -n 's/.*RELAY:\/\/\(127\.0\.0\.1:[0-9]*\).*/\1/p') advertised at $(grep '^advertised.listeners=' "$props" | sed -n 's/.*RELAY:\/\/\(127\.0\.0\.1:[0-9]*\).*/\1/p') (SASL_PLAINTEXT PLAIN)"
    fi
    if [ -z "$join" ]; then
        echo "  CONTROLLER     127.0.0.1:$BG_KAFKA_CONTROLLER_PORT"
    else
        echo "  node $node_id, joined the instance at 127.0.0.1:$join ($(join_voters))"
    fi
    echo "  client configs $run/client-{plain,scram-sha-256,scram-sha-512}.properties"
    has_ssl_listener &&
        echo "                 $run/client-sasl-ssl-{plain,scram-sha-256,scram-sha-512}.properties"
    echo "  log            $run/kafka.log"
}

# make_tls_material: a test CA and a broker certificate signed by it for
# 127.0.0.1, ::1 and localhost, plus the PKCS12 keystore Kafka loads. Made
# once into $BG_KAFKA_TLS_DIR (shared by all instances, kept by
# kafka-down.sh) and remade only when missing or expiring within a day.
# Holds its own lock (fd 7): instances on other ports may start concurrently.
make_tls_material() {
    local d="$BG_KAFKA_TLS_DIR" tmp
    tls_material_ok && return 0
    mkdir -p "$BUSGATE_CACHE/locks"
    exec 7>"$BUSGATE_CACHE/locks/kafka-tls.lock"
    flock -w 120 7 || bg_die "timed out waiting for the Kafka TLS lock"
    if ! tls_material_ok; then
        bg_log "making the test CA and broker certificate in $d"
        tmp="$(mktemp -d "${d%/}.tmp.XXXXXX")"
        gen_tls_material "$tmp" || { rm -rf "$tmp"; bg_die "openssl could not make the test certificates"; }
        rm -rf "$d"
        mv "$tmp" "$d"
    fi
    exec 7>&-
}

tls_material_ok() {
    local d="$BG_KAFKA_TLS_DIR"
    [ -s "$d/ca.crt" ] && [ -s "$d/broker.p12" ] && [ -s "$d/broker.crt" ] &&
        openssl x509 -checkend 86400 -noout -in "$d/broker.crt" >/dev/null 2>&1 &&
        openssl x509 -checkend 86400 -noout -in "$d/ca.crt" >/dev/null 2>&1
}

# gen_tls_material DIR: the files themselves (openssl only, no JVM start).
gen_tls_material() {
    local d="$1"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=busgate test CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$d/ca.key" -out "$d/ca.crt" 2>"$d/openssl.log" &&
        openssl req -new -newkey rsa:2048 -nodes -subj "/CN=localhost" \
            -keyout "$d/broker.key" -out "$d/broker.csr" 2>>"$d/openssl.log" &&
        printf '%s\n' "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost" \
            "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
            "extendedKeyUsage=serverAuth" >"$d/broker.ext" &&
        openssl x509 -req -in "$d/broker.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
            -set_serial "0x$(openssl rand -hex 16)" -days 3650 -extfile "$d/broker.ext" \
            -out "$d/broker.crt" 2>>"$d/openssl.log" &&
        openssl pkcs12 -export -in "$d/broker.crt" -inkey "$d/broker.key" -certfile "$d/ca.crt" \
            -name broker -passout "pass:$BG_KAFKA_KEYSTORE_PASSWORD" \
            -out "$d/broker.p12" 2>>"$d/openssl.log" ||
        { cat "$d/openssl.log" >&2; return 1; }
    chmod 0600 "$d/ca.key" "$d/broker.key" "$d/broker.p12"
    chmod 0755 "$d" # mktemp made it 0700; the CA is for every test to read
    rm -f "$d/broker.csr" "$d/broker.ext" "$d/openssl.log"
}

# relay_listener PART: the RELAY listener's entry in listeners (PART=bind),
# advertised.listeners (advertised) or the protocol map (map); nothing
# unless BG_KAFKA_RELAY_PORT is set.
relay_listener() {
    [ -n "${BG_KAFKA_RELAY_PORT:-}" ] || return 0
    case "$1" in
        bind) echo ",RELAY://127.0.0.1:$BG_KAFKA_RELAY_PORT" ;;
        advertised) echo ",RELAY://127.0.0.1:$BG_KAFKA_RELAY_FRONT_PORT" ;;
        map) echo ",RELAY:SASL_PLAINTEXT" ;;
    esac
}

# relay_properties JAAS: the RELAY listener's login settings (PLAIN only).
relay_properties() {
    [ -n "${BG_KAFKA_RELAY_PORT:-}" ] || return 0
    echo "listener.name.relay.sasl.enabled.mechanisms=PLAIN"
    echo "listener.name.relay.plain.sasl.jaas.config=$1"
}

# oauth_properties: with BG_KAFKA_OAUTH=1 the SASL listeners also accept
# OAUTHBEARER tokens from the test OIDC provider (scripts/oidc-up.sh must be
# running first: the broker fetches its JWKS). This lets the interop clients'
# OAUTHBEARER paths be checked against Kafka itself, without busgate.
oauth_properties() {
    [ "$oauth" = 1 ] || return 0
    cat <<EOF
listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;
listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class=org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler
listener.name.sasl_ssl.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;
listener.name.sasl_ssl.oauthbearer.sasl.server.callback.handler.class=org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler
listener.name.reauth.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;
listener.name.reauth.oauthbearer.sasl.server.callback.handler.class=org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler
sasl.oauthbearer.jwks.endpoint.url=$oidc_issuer/jwks
sasl.oauthbearer.expected.audience=busgate
sasl.oauthbearer.expected.issuer=$oidc_issuer
EOF
}

write_properties() {
    local jaas_plain mechs="SCRAM-SHA-512,SCRAM-SHA-256,PLAIN"
    [ "$oauth" = 1 ] && mechs+=",OAUTHBEARER"
    jaas_plain="org.apache.kafka.common.security.plain.PlainLoginModule required"
    jaas_plain+=" username=\"$BG_KAFKA_USER\" password=\"$BG_KAFKA_PASSWORD\""
    jaas_plain+=" user_$BG_KAFKA_USER=\"$BG_KAFKA_PASSWORD\";"
    local roles=broker,controller voters="1@127.0.0.1:$BG_KAFKA_CONTROLLER_PORT"
    local controller=",CONTROLLER://127.0.0.1:$BG_KAFKA_CONTROLLER_PORT"
    if [ -n "$join" ]; then
        voters="$(join_voters)" || exit 1
        [ -n "$voters" ] || bg_die "no controller in $join_run/server.properties"
        roles=broker controller=""
    fi
    cat >"$props" <<EOF
# Generated by scripts/kafka-up.sh; rewritten on every start.
process.roles=$roles
node.id=$node_id
controller.quorum.voters=$voters
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$BG_KAFKA_PLAIN_PORT,SASL_PLAINTEXT://127.0.0.1:$BG_KAFKA_SASL_PORT,SASL_SSL://127.0.0.1:$BG_KAFKA_SSL_PORT,REAUTH://127.0.0.1:$BG_KAFKA_REAUTH_PORT$(relay_listener bind)$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$BG_KAFKA_PLAIN_PORT,SASL_PLAINTEXT://127.0.0.1:$BG_KAFKA_SASL_PORT,SASL_SSL://127.0.0.1:$BG_KAFKA_SSL_PORT,REAUTH://127.0.0.1:$BG_KAFKA_REAUTH_PORT$(relay_listener advertised)
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,REAUTH:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT$(relay_listener map)
inter.broker.listener.name=PLAINTEXT
sasl.enabled.mechanisms=$mechs
listener.name.sasl_plaintext.sasl.enabled.mechanisms=$mechs
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.plain.sasl.jaas.config=$jaas_plain
# SASL_SSL: the same mechanisms and users (SCRAM credentials are cluster-wide),
# server certificate from the test CA; clients need no certificate.
listener.name.sasl_ssl.sasl.enabled.mechanisms=$mechs
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=$jaas_plain
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$BG_KAFKA_TLS_DIR/broker.p12
listener.name.sasl_ssl.ssl.keystore.password=$BG_KAFKA_KEYSTORE_PASSWORD
listener.name.sasl_ssl.ssl.key.password=$BG_KAFKA_KEYSTORE_PASSWORD
listener.name.sasl_ssl.ssl.client.auth=none
# REAUTH: SASL_PLAINTEXT with short logins (re-authentication tests).
listener.name.reauth.sasl.enabled.mechanisms=$mechs
listener.name.reauth.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.reauth.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.reauth.plain.sasl.jaas.config=$jaas_plain
listener.name.reauth.scram-sha-512.connections.max.reauth.ms=$BG_KAFKA_REAUTH_MS
listener.name.reauth.scram-sha-256.connections.max.reauth.ms=$BG_KAFKA_REAUTH_MS
listener.name.reauth.plain.connections.max.reauth.ms=$BG_KAFKA_REAUTH_MS
$(relay_properties "$jaas_plain")
# ACLs can be set (kafka-tool.sh acls) but nothing is denied until one is.
# ANONYMOUS (PLAINTEXT and CONTROLLER listeners) stays a super user so an ACL
# a test sets can never cut the broker off from its own controller.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=true
super.users=User:ANONYMOUS;User:$BG_KAFKA_USER
$(oauth_properties)
log.dirs=$run/data
num.partitions=1
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.segment.bytes=16777216
log.retention.check.interval.ms=60000
EOF
}

# write_client_configs: Java client settings for the SASL listeners, for
# kafka-tool.sh's --command-config / --producer.config / --consumer.config:
# client-MECH.properties (SASL_PLAINTEXT) and client-sasl-ssl-MECH.properties.
write_client_configs() {
    local m module f lower
    for m in PLAIN SCRAM-SHA-256 SCRAM-SHA-512; do
        module=org.apache.kafka.common.security.scram.ScramLoginModule
        [ "$m" = PLAIN ] && module=org.apache.kafka.common.security.plain.PlainLoginModule
        lower="$(echo "$m" | tr '[:upper:]' '[:lower:]')"
        f="$run/client-$lower.properties"
        cat >"$f" <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=$m
sasl.jaas.config=$module required username="$BG_KAFKA_USER" password="$BG_KAFKA_PASSWORD";
EOF
        cat >"$run/client-sasl-ssl-$lower.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=$m
sasl.jaas.config=$module required username="$BG_KAFKA_USER" password="$BG_KAFKA_PASSWORD";
ssl.truststore.type=PEM
ssl.truststore.location=$BG_KAFKA_TLS_DIR/ca.crt
EOF
    done
}

# format_storage: only for a fresh data dir; a kept one keeps its cluster id.
format_storage() {
    local cluster_id scram=()
    if [ -f "$run/data/meta.properties" ]; then
        bg_log "reusing data in $run/data ($(grep '^cluster.id=' "$run/data/meta.properties"))"
        return 0
    fi
    # A Kafka Uuid is 16 random bytes in URL-safe base64 without padding;
    # generated here to save a JVM start for `kafka-storage random-uuid`.
    cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    # One id in 64 starts with '-', which the tool's argument parser takes
    # for an option ("expected one argument"): start it with 'A' instead
    # (still 16 bytes in base64, only the first byte's top bits change).
    cluster_id="${cluster_id/#-/A}"
    if [ -n "$join" ]; then # the cluster's own id; SCRAM users live in its metadata
        [ -f "$join_run/data/meta.properties" ] || bg_die "no instance to join: $join_run"
        cluster_id="$(sed -n 's/^cluster.id=//p' "$join_run/data/meta.properties")"
    else
        for m in SCRAM-SHA-512 SCRAM-SHA-256; do
            scram+=(--add-scram "$m=[name=$BG_KAFKA_USER,password=$BG_KAFKA_PASSWORD]")
        done
    fi
    rm -rf "$run/data"
    bg_kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$props" \
        "${scram[@]}" >"$run/format.log" 2>&1 ||
        { cat "$run/format.log" >&2; bg_die "kafka-storage format failed"; }
}

wait_ready() {
    local deadline=$((SECONDS + timeout_s))
    while ((SECONDS < deadline)); do
        # kill -0, not bg_pid_alive: right after the fork the child has not
        # exec'd java yet, so its command line is still this script's.
        if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            tail -n 40 "$run/kafka.log" >&2 || true
            bg_die "broker exited during start-up (log: $run/kafka.log)"
        fi
        if kcat -b "127.0.0.1:$BG_KAFKA_PLAIN_PORT" -L -m 2 2>/dev/null |
            grep -q "broker $node_id at 127.0.0.1:$BG_KAFKA_PLAIN_PORT" && ssl_ready; then
            return 0
        fi
        sleep 0.5
    done
    tail -n 40 "$run/kafka.log" >&2 || true
    bg_die "broker not ready after ${timeout_s}s (log: $run/kafka.log)"
}

# ssl_ready: the SASL_SSL listener completes a TLS handshake (verified
# against the test CA) and a PLAIN login. True for a broker without it.
# PLAIN because Debian's kcat cannot do SCRAM against Kafka 4.x.
ssl_ready() {
    local port
    has_ssl_listener || return 0
    port="$(ssl_port_of_props)"
    kcat -b "127.0.0.1:$port" -X security.protocol=SASL_SSL -X sasl.mechanisms=PLAIN \
        -X sasl.username="$BG_KAFKA_USER" -X sasl.password="$BG_KAFKA_PASSWORD" \
        -X ssl.ca.location="$BG_KAFKA_TLS_DIR/ca.crt" -L -m 2 2>/dev/null |
        grep -q "broker $node_id at 127.0.0.1:$port"
}

main() {
    bg_need java kcat flock openssl
    mkdir -p "$run"
    bg_lock "kafka-$BG_KAFKA_PLAIN_PORT"
    if bg_pid_alive "$pidfile" kafka.Kafka; then
        wait_ready
        print_endpoints
        return 0
    fi
    bg_kafka_fetch
    make_tls_material
    write_properties
    write_client_configs
    format_storage
    # New session: the broker must not get the caller's terminal signals;
    # it must not inherit the lock descriptor either (9>&-), or it would hold
    # the lock for its whole life.
    KAFKA_HEAP="${BG_KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
    # shellcheck disable=SC2086
    setsid java $KAFKA_HEAP -XX:+UseG1GC -Djava.awt.headless=true \
        -Dorg.apache.kafka.sasl.oauthbearer.allowed.urls="$oidc_issuer/jwks" \
        -Dorg.slf4j.simpleLogger.showDateTime=true \
        -Dorg.slf4j.simpleLogger.dateTimeFormat="yyyy-MM-dd'T'HH:mm:ss.SSS" \
        -cp "$BG_KAFKA_HOME/libs/*" kafka.Kafka "$props" \
        </dev/null >>"$run/kafka.log" 2>&1 9>&- &
    echo $! >"$pidfile"
    wait_ready
    print_endpoints
}

main "$@"
