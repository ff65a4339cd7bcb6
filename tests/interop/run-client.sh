#!/usr/bin/env bash
# Runs one interop scenario with a real Kafka client and prints its one-line
# JSON result; exit 0 when the scenario's expectation held, 1 when not.
#   tests/interop/run-client.sh java|rdkafka|kafka-python|franz-go|kafkajs BOOTSTRAP MECHANISM CREDENTIALS... SCENARIO ARGS...
#   MECHANISM CREDENTIALS: PLAIN USER PASSWORD | SCRAM-SHA-256|SCRAM-SHA-512 USER PASSWORD
#                          | OAUTHBEARER TOKEN_URL CLIENT_ID SECRET | NONE
# Example:
#   tests/interop/run-client.sh java 127.0.0.1:17093 PLAIN busgate busgate-test-password produce t1 10
#   tests/interop/run-client.sh java|rdkafka|kafka-python|franz-go|kafkajs --build   (build/install only)
# Builds the Java and Go programs / installs the Python clients / npm-installs
# KafkaJS into $BUSGATE_CACHE on first use (again when their sources change).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../infra/common.sh
. "$here/../infra/common.sh"

# Each client is built (or installed) once per source checksum into
# $BUSGATE_CACHE/interop/LANG (bg_build_once, tests/infra/common.sh).

java_build() { # OUT
    bg_need mvn java
    mvn -q -B -Dstyle.color=never -f "$here/java/pom.xml" package \
        -Dkafka.version="$BG_KAFKA_VERSION" -Dbg.build.dir="$1" >&2 ||
        bg_die "maven build of the Java interop client failed"
}

java_jar() {
    local out="$BUSGATE_CACHE/interop/java"
    bg_build_once interop-java "$out" "$out/busgate-interop-java.jar" \
        "$(bg_src_sum "$here/java" pom.xml src)-$BG_KAFKA_VERSION" java_build "$out" || exit 1
    echo "$out/busgate-interop-java.jar"
}

# Modules and build cache live under $BUSGATE_CACHE/go; go.sum pins every
# module (-mod=readonly), so a fresh machine needs only the Go module proxy.
# GOTOOLCHAIN=auto: a go older than go.mod's go line fetches that toolchain
# through the same proxy (golang.org/toolchain).
go_build() { # BIN
    bg_need go
    (cd "$here/go" &&
        export GOFLAGS=-mod=readonly GOTOOLCHAIN=auto GOWORK=off CGO_ENABLED=0 \
            GOCACHE="$BUSGATE_CACHE/go/build" GOMODCACHE="$BUSGATE_CACHE/go/mod" &&
        go build -trimpath -buildvcs=false -o "$1.tmp" . >&2) ||
        bg_die "go build of the franz-go interop client failed" \
            "(scripts/install-deps.sh installs Go)"
    mv -f "$1.tmp" "$1"
}

go_bin() {
    local out="$BUSGATE_CACHE/interop/go"
    bg_build_once interop-go "$out" "$out/busgate-interop-franz-go" \
        "$(bg_src_sum "$here/go" .)" go_build "$out/busgate-interop-franz-go" || exit 1
    echo "$out/busgate-interop-franz-go"
}

# npm's cache keeps later installs offline.
kafkajs_install() { # OUT
    bg_need node npm
    cp "$here/kafkajs/package.json" "$here/kafkajs/package-lock.json" "$here/kafkajs/client.js" "$1/"
    (cd "$1" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error >&2) ||
        bg_die "npm ci of the KafkaJS interop client failed"
}

kafkajs_dir() {
    local out="$BUSGATE_CACHE/interop/kafkajs"
    bg_build_once interop-kafkajs "$out" "$out/node_modules/kafkajs" \
        "$(bg_src_sum "$here/kafkajs" package.json package-lock.json client.js)" \
        kafkajs_install "$out" || exit 1
    echo "$out"
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
franz-go)
    bin="$(go_bin)"
    [ "$1" != "--build" ] || { echo "$bin"; exit 0; }
    exec "$bin" "$@"
    ;;
kafkajs)
    dir="$(kafkajs_dir)"
    [ "$1" != "--build" ] || {
        echo "$dir/client.js (kafkajs $(cd "$dir" && node -p 'require("kafkajs/package.json").version'), node $(node --version))"
        exit 0
    }
    exec node "$dir/client.js" "$@"
    ;;
*)
    bg_die "unknown client '$lang' (java | rdkafka | kafka-python | franz-go | kafkajs)"
    ;;
esac
