#!/usr/bin/env bash
# Runs one interop scenario with a real Kafka client and prints its one-line
# JSON result; exit 0 when the scenario's expectation held, 1 when not.
#   tests/interop/run-client.sh java|rdkafka|kafka-python|franz-go|kafkajs BOOTSTRAP MECHANISM CREDENTIALS... SCENARIO ARGS...
#   MECHANISM CREDENTIALS: PLAIN USER PASSWORD | SCRAM-SHA-256|SCRAM-SHA-512 USER PASSWORD
#                          | OAUTHBEARER TOKEN_URL CLIENT_ID SECRET | NONE
# Example:
#   tests/interop/run-client.sh java 127.0.0.1:39093 PLAIN busgate busgate-test-password produce t1 10
#   tests/interop/run-client.sh java|rdkafka|kafka-python|franz-go|kafkajs --build   (build/install only)
# Builds the Java and Go programs / installs the Python clients / npm-installs
# KafkaJS into $BUSGATE_CACHE on first use (again when their sources change).
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

# go_bin: builds the franz-go program (tests/interop/go) into
# $BUSGATE_CACHE/interop/go once per source checksum and prints its path.
# Modules and build cache live under $BUSGATE_CACHE/go; go.sum pins every
# module (-mod=readonly), so a fresh machine needs only the Go module proxy.
# GOTOOLCHAIN=auto: a go older than go.mod's go line fetches that toolchain
# through the same proxy (golang.org/toolchain).
go_bin() {
    local out="$BUSGATE_CACHE/interop/go" bin sum
    bin="$out/busgate-interop-franz-go"
    sum="$(cd "$here/go" && find . -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' \) |
        sort | xargs cat | sha256sum | cut -c1-16)"
    if [ "$(cat "$out/.built" 2>/dev/null)" != "$sum" ] || [ ! -x "$bin" ]; then
        bg_need go
        mkdir -p "$BUSGATE_CACHE/locks" "$out"
        exec 8>"$BUSGATE_CACHE/locks/interop-go.lock"
        flock -w 600 8 || bg_die "timed out waiting for the Go build lock"
        if [ "$(cat "$out/.built" 2>/dev/null)" != "$sum" ] || [ ! -x "$bin" ]; then
            bg_log "building the franz-go interop client into $out"
            (cd "$here/go" &&
                export GOFLAGS=-mod=readonly GOTOOLCHAIN=auto GOWORK=off CGO_ENABLED=0 \
                    GOCACHE="$BUSGATE_CACHE/go/build" GOMODCACHE="$BUSGATE_CACHE/go/mod" &&
                go build -trimpath -buildvcs=false -o "$bin.tmp" . >&2) ||
                bg_die "go build of the franz-go interop client failed" \
                    "(scripts/install-deps.sh installs Go)"
            mv -f "$bin.tmp" "$bin"
            echo "$sum" >"$out/.built"
        fi
        exec 8>&-
    fi
    echo "$bin"
}

# The KafkaJS program and its locked dependencies, installed once per
# source checksum into $BUSGATE_CACHE/interop/kafkajs (npm's cache keeps
# later installs offline).
kafkajs_dir() {
    local out="$BUSGATE_CACHE/interop/kafkajs" sum
    sum="$(cd "$here/kafkajs" && cat package.json package-lock.json client.js | sha256sum | cut -c1-16)"
    if [ "$(cat "$out/.installed" 2>/dev/null)" != "$sum" ]; then
        bg_need node npm flock
        mkdir -p "$BUSGATE_CACHE/locks" "$out"
        exec 8>"$BUSGATE_CACHE/locks/interop-kafkajs.lock"
        flock -w 600 8 || bg_die "timed out waiting for the KafkaJS install lock"
        if [ "$(cat "$out/.installed" 2>/dev/null)" != "$sum" ]; then
            bg_log "installing KafkaJS into $out"
            cp "$here/kafkajs/package.json" "$here/kafkajs/package-lock.json" \
                "$here/kafkajs/client.js" "$out/"
            (cd "$out" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error >&2) ||
                bg_die "npm ci of the KafkaJS interop client failed"
            echo "$sum" >"$out/.installed"
        fi
        exec 8>&-
    fi
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
