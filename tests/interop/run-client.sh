#!/usr/bin/env bash
# Runs one interop scenario with a real Kafka client and prints its one-line
# JSON result; exit 0 when the scenario's expectation held, 1 when not.
#   tests/interop/run-client.sh java|rdkafka|kafka-python BOOTSTRAP MECHANISM CREDENTIALS... SCENARIO ARGS...
#   MECHANISM CREDENTIALS: PLAIN USER PASSWORD | SCRAM-SHA-256|SCRAM-SHA-512 USER PASSWORD
#                          | OAUTHBEARER TOKEN_URL CLIENT_ID SECRET | NONE
# Example:
#   tests/interop/run-client.sh java 127.0.0.1:39093 PLAIN busgate busgate-test-password produce t1 10
#   tests/interop/run-client.sh java|rdkafka|kafka-python --build   (build/install only)
# Builds the Java program / installs the Python clients into $BUSGATE_CACHE
# on first use (again when their sources change).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../infra/common.sh
. "$here/../infra/common.sh"

java_jar() {
    local out="$BUSGATE_CACHE/interop/java" sum
    sum="$(cd "$here/java" && find pom.xml src -type f | sort | xargs cat | sha256sum | cut -c1-16)"
    if [ "$(cat "$out/.built" 2>/dev/null)" != "$sum-$BG_KAFKA_VERSION" ] ||
        [ ! -f "$out/busgate-interop-java.jar" ]; then
        bg_need mvn java
        mkdir -p "$BUSGATE_CACHE/locks"
        exec 8>"$BUSGATE_CACHE/locks/interop-java.lock"
        flock -w 600 8 || bg_die "timed out waiting for the Java build lock"
        if [ "$(cat "$out/.built" 2>/dev/null)" != "$sum-$BG_KAFKA_VERSION" ]; then
            bg_log "building the Java interop client into $out"
            mvn -q -B -Dstyle.color=never -f "$here/java/pom.xml" package \
                -Dkafka.version="$BG_KAFKA_VERSION" -Dbg.build.dir="$out" >&2 ||
                bg_die "maven build of the Java interop client failed"
            echo "$sum-$BG_KAFKA_VERSION" >"$out/.built"
        fi
        exec 8>&-
    fi
    echo "$out/busgate-interop-java.jar"
}

[ $# -ge 2 ] || { sed -n '2,11p' "$0" >&2; exit 2; }
lang="$1"
shift
case "$lang" in
java)
    jar="$(java_jar)"
    [ "$1" != "--build" ] || { echo "$jar"; exit 0; }
    # The token URL must be allow-listed for Kafka >= 4.0; the program sets
    # it from its arguments unless BG_INTEROP_JAVA_OPTS says otherwise.
    # shellcheck disable=SC2086
    exec java ${BG_INTEROP_JAVA_OPTS:-} -Xmx256m -XX:TieredStopAtLevel=1 \
        -Dorg.slf4j.simpleLogger.defaultLogLevel="${BG_INTEROP_LOG_LEVEL:-warn}" \
        -jar "$jar" "$@"
    ;;
rdkafka | kafka-python)
    py="$("$BG_REPO_ROOT/tests/infra/python-venv.sh")"
    [ "$1" != "--build" ] || { echo "$py"; exit 0; }
    # -B: no __pycache__ in the checkout.
    exec "$py" -B "$here/python/${lang//-/_}_client.py" "$@"
    ;;
*)
    bg_die "unknown client '$lang' (java | rdkafka | kafka-python)"
    ;;
esac
