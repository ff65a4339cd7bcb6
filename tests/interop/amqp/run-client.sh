#!/usr/bin/env bash
# Runs one AMQP interop scenario with a real AMQP 0-9-1 client library and
# prints its one-line JSON result (see docs/testing.md, "AMQP interop").
#   tests/interop/amqp/run-client.sh node|java|c HOST PORT USER SCENARIO ARGS...
#     SCENARIO: roundtrip EXCHANGE QUEUE N | publish-denied EXCHANGE | consume-denied QUEUE
#   tests/interop/amqp/run-client.sh node|java|c --build   (build/install only; prints the program)
# The password (a token, through busgate) comes from BG_AMQP_PASSWORD.
# node installs amqplib into $BUSGATE_CACHE/interop/amqp-node and java builds
# a jar into $BUSGATE_CACHE/interop/amqp-java, on first use and again when
# their sources change. c runs the rabbitmq-c program built by CMake
# (target bg_amqp_interop_c) from $BG_AMQP_C_CLIENT, or under $BG_BUILD_DIR
# [build/plain].
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../../infra/common.sh
. "$here/../../infra/common.sh"

# src_sum DIR FILES...: a short hash of the sources, to rebuild on change.
src_sum() { (cd "$1" && shift && find "$@" -type f | sort | xargs cat | sha256sum | cut -c1-16); }

node_dir() {
    local out="$BUSGATE_CACHE/interop/amqp-node" sum
    sum="$(src_sum "$here/node" package.json package-lock.json client.js)"
    if [ "$(cat "$out/.installed" 2>/dev/null)" != "$sum" ]; then
        bg_need node npm flock
        mkdir -p "$BUSGATE_CACHE/locks" "$out"
        exec 8>"$BUSGATE_CACHE/locks/interop-amqp-node.lock"
        flock -w 600 8 || bg_die "timed out waiting for the amqplib install lock"
        if [ "$(cat "$out/.installed" 2>/dev/null)" != "$sum" ]; then
            bg_log "installing amqplib into $out"
            cp "$here/node/package.json" "$here/node/package-lock.json" "$here/node/client.js" "$out/"
            (cd "$out" && npm ci --no-audit --no-fund --loglevel=error >&2) ||
                bg_die "npm ci of the amqplib interop client failed"
            echo "$sum" >"$out/.installed"
        fi
        exec 8>&-
    fi
    echo "$out"
}

java_jar() {
    local out="$BUSGATE_CACHE/interop/amqp-java" sum
    sum="$(src_sum "$here/java" pom.xml src)"
    if [ "$(cat "$out/.built" 2>/dev/null)" != "$sum" ] || [ ! -f "$out/busgate-interop-amqp-java.jar" ]; then
        bg_need mvn java flock
        mkdir -p "$BUSGATE_CACHE/locks"
        exec 8>"$BUSGATE_CACHE/locks/interop-amqp-java.lock"
        flock -w 600 8 || bg_die "timed out waiting for the Java build lock"
        if [ "$(cat "$out/.built" 2>/dev/null)" != "$sum" ]; then
            bg_log "building the RabbitMQ Java client program into $out"
            mvn -q -B -Dstyle.color=never -f "$here/java/pom.xml" package -Dbg.build.dir="$out" >&2 ||
                bg_die "maven build of the AMQP Java interop client failed"
            echo "$sum" >"$out/.built"
        fi
        exec 8>&-
    fi
    echo "$out/busgate-interop-amqp-java.jar"
}

c_bin() {
    local b="${BG_AMQP_C_CLIENT:-${BG_BUILD_DIR:-$BG_REPO_ROOT/build/plain}/tests/integration/amqp-interop-c/bg_amqp_interop_c}"
    [ -x "$b" ] || bg_die "$b not found: build the CMake target bg_amqp_interop_c"
    echo "$b"
}

[ $# -ge 2 ] || { sed -n '2,12p' "$0" >&2; exit 2; }
lang="$1"
shift
case "$lang" in
node)
    dir="$(node_dir)"
    [ "$1" != "--build" ] || { echo "$dir/client.js"; exit 0; }
    exec node "$dir/client.js" "$@"
    ;;
java)
    jar="$(java_jar)"
    [ "$1" != "--build" ] || { echo "$jar"; exit 0; }
    # shellcheck disable=SC2086
    exec java ${BG_INTEROP_JAVA_OPTS:-} -Xmx128m -XX:TieredStopAtLevel=1 -Xshare:auto -jar "$jar" "$@"
    ;;
c)
    bin="$(c_bin)"
    [ "$1" != "--build" ] || { echo "$bin"; exit 0; }
    exec "$bin" "$@"
    ;;
*)
    bg_die "unknown client '$lang' (node | java | c)"
    ;;
esac
