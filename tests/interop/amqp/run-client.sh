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

# Each client is built (or installed) once per source checksum into
# $BUSGATE_CACHE/interop/amqp-LANG (bg_build_once, tests/infra/common.sh).

node_install() { # OUT
    bg_need node npm
    cp "$here/node/package.json" "$here/node/package-lock.json" "$here/node/client.js" "$1/"
    (cd "$1" && npm ci --no-audit --no-fund --loglevel=error >&2) ||
        bg_die "npm ci of the amqplib interop client failed"
}

node_dir() {
    local out="$BUSGATE_CACHE/interop/amqp-node"
    bg_build_once interop-amqp-node "$out" "$out/node_modules/amqplib" \
        "$(bg_src_sum "$here/node" package.json package-lock.json client.js)" \
        node_install "$out" || exit 1
    echo "$out"
}

java_build() { # OUT
    bg_need mvn java
    mvn -q -B -Dstyle.color=never -f "$here/java/pom.xml" package -Dbg.build.dir="$1" >&2 ||
        bg_die "maven build of the AMQP Java interop client failed"
}

java_jar() {
    local out="$BUSGATE_CACHE/interop/amqp-java"
    bg_build_once interop-amqp-java "$out" "$out/busgate-interop-amqp-java.jar" \
        "$(bg_src_sum "$here/java" pom.xml src)" java_build "$out" || exit 1
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
