# Shared settings and helpers for busgate's test infrastructure scripts.
# Sourced (not executed) by scripts/kafka-*.sh, scripts/oidc-*.sh and
# tests/interop/run-client.sh. Everything downloaded or generated lives under
# $BUSGATE_CACHE, never in the checkout; nothing here is machine-specific.
# shellcheck shell=bash

BG_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUSGATE_CACHE="${BUSGATE_CACHE:-$HOME/.cache/busgate}"

# Kafka: the newest 4.x on Maven Central when this was written. 3.9.x also
# works (kafka-tool.sh resolves the tool classes that moved between them).
BG_KAFKA_VERSION="${BG_KAFKA_VERSION:-4.4.0}"
BG_KAFKA_HOME="$BUSGATE_CACHE/kafka-$BG_KAFKA_VERSION"
BG_KAFKA_PLAIN_PORT="${BG_KAFKA_PLAIN_PORT:-17092}"
BG_KAFKA_SASL_PORT="${BG_KAFKA_SASL_PORT:-17093}"
BG_KAFKA_CONTROLLER_PORT="${BG_KAFKA_CONTROLLER_PORT:-17094}"
# Default PLAINTEXT + 3 (17095), not a fixed port: a private instance that
# only moves the other three ports (bench/, test_audit_outage.py) must not
# collide with the shared broker's SASL_SSL listener.
BG_KAFKA_SSL_PORT="${BG_KAFKA_SSL_PORT:-$((BG_KAFKA_PLAIN_PORT + 3))}"
# A second SASL_PLAINTEXT listener (PLAINTEXT + 4: 17096) whose logins last
# only BG_KAFKA_REAUTH_MS (connections.max.reauth.ms): the broker closes a
# connection on its first request after that unless it re-authenticated.
BG_KAFKA_REAUTH_PORT="${BG_KAFKA_REAUTH_PORT:-$((BG_KAFKA_PLAIN_PORT + 4))}"
BG_KAFKA_REAUTH_MS="${BG_KAFKA_REAUTH_MS:-3000}"
# Test CA and broker certificate (127.0.0.1, ::1, localhost) for the SASL_SSL
# listener: made once by scripts/kafka-up.sh and shared by every instance, so
# tests find the CA at $BG_KAFKA_TLS_DIR/ca.crt.
BG_KAFKA_TLS_DIR="$BUSGATE_CACHE/kafka-tls"
BG_KAFKA_KEYSTORE_PASSWORD="busgate-test-keystore"
# One run directory per instance (keyed by its PLAINTEXT port), so two
# instances on different ports do not share data or pid files.
BG_KAFKA_RUN="${BG_KAFKA_RUN_DIR:-$BUSGATE_CACHE/run/kafka-$BG_KAFKA_PLAIN_PORT}"
# busgate's own upstream credential on this throwaway loopback-only broker.
BG_KAFKA_USER="busgate"
BG_KAFKA_PASSWORD="busgate-test-password"

BG_OIDC_PORT="${BG_OIDC_PORT:-19400}"
BG_OIDC_HOME="$BUSGATE_CACHE/oidc"
BG_OIDC_RUN="$BUSGATE_CACHE/run/oidc-$BG_OIDC_PORT"

bg_log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
bg_die() { bg_log "error: $*"; exit 1; }

bg_need() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || bg_die "'$c' not found (scripts/install-deps.sh installs it)"
    done
}

# bg_src_sum DIR PATHS...: a short hash of the files under PATHS (relative
# to DIR), to build again when a source changes.
bg_src_sum() { (cd "$1" && shift && find "$@" -type f | sort | xargs cat | sha256sum | cut -c1-16); }

# bg_build_once NAME OUT ARTIFACT SUM CMD...: runs CMD (which builds
# ARTIFACT, a path under OUT) unless OUT/.built holds SUM and ARTIFACT
# exists; then records SUM. Concurrent callers are serialised by a flock on
# $BUSGATE_CACHE/locks/NAME.lock and check again under it, so one builds
# and the others use its result.
bg_build_once() {
    local name="$1" out="$2" artifact="$3" sum="$4"
    shift 4
    [ "$(cat "$out/.built" 2>/dev/null)" = "$sum" ] && [ -e "$artifact" ] && return 0
    bg_need flock
    mkdir -p "$BUSGATE_CACHE/locks" "$out"
    (
        flock -w 600 8 || bg_die "timed out waiting for the $name build lock"
        [ "$(cat "$out/.built" 2>/dev/null)" = "$sum" ] && [ -e "$artifact" ] && exit 0
        bg_log "building $name into $out"
        "$@" || exit 1
        echo "$sum" >"$out/.built"
    ) 8>"$BUSGATE_CACHE/locks/$name.lock"
}

# bg_pid_alive PIDFILE PATTERN: true when PIDFILE names a live process whose
# command line contains PATTERN (guards against a recycled pid).
bg_pid_alive() {
    local pid
    [ -f "$1" ] || return 1
    pid="$(cat "$1" 2>/dev/null)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$2"
}

# bg_stop_pid PIDFILE PATTERN [GRACE_SECONDS]: SIGTERM, then SIGKILL after
# the grace period. Only touches the process the pid file names.
bg_stop_pid() {
    local pidfile="$1" pattern="$2" grace="${3:-30}" pid i
    if ! bg_pid_alive "$pidfile" "$pattern"; then
        rm -f "$pidfile"
        return 1
    fi
    pid="$(cat "$pidfile")"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        bg_log "pid $pid still alive after ${grace}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$pidfile"
    return 0
}

# bg_lock NAME: serialises concurrent up/down calls for one instance; the
# lock is released when the calling script exits.
bg_lock() {
    mkdir -p "$BUSGATE_CACHE/locks"
    exec 9>"$BUSGATE_CACHE/locks/$1.lock"
    flock -w 300 9 || bg_die "timed out waiting for lock $1"
}

# bg_kafka_fetch: copies the broker, tools and client jars into
# $BG_KAFKA_HOME/libs once; later calls return at once. Holds its own lock
# (fd 8) so concurrent scripts do not fetch into the same directory.
bg_kafka_fetch() {
    [ -f "$BG_KAFKA_HOME/libs/.complete" ] && return 0
    bg_need mvn java
    mkdir -p "$BUSGATE_CACHE/locks" "$BG_KAFKA_HOME"
    exec 8>"$BUSGATE_CACHE/locks/kafka-fetch-$BG_KAFKA_VERSION.lock"
    flock -w 600 8 || bg_die "timed out waiting for the Kafka fetch lock"
    if [ ! -f "$BG_KAFKA_HOME/libs/.complete" ]; then
        bg_log "fetching Kafka $BG_KAFKA_VERSION jars into $BG_KAFKA_HOME/libs"
        rm -rf "$BG_KAFKA_HOME/libs.tmp"
        mvn -q -B -Dstyle.color=never -f "$BG_REPO_ROOT/tests/infra/kafka/pom.xml" \
            dependency:copy-dependencies \
            -Dkafka.version="$BG_KAFKA_VERSION" \
            -DoutputDirectory="$BG_KAFKA_HOME/libs.tmp" >&2 ||
            bg_die "maven could not fetch Kafka $BG_KAFKA_VERSION"
        rm -rf "$BG_KAFKA_HOME/libs"
        mv "$BG_KAFKA_HOME/libs.tmp" "$BG_KAFKA_HOME/libs"
        touch "$BG_KAFKA_HOME/libs/.complete"
    fi
    exec 8>&-
}

# bg_kafka_java CLASS ARGS...: runs a class from the cached Kafka jars.
bg_kafka_java() {
    local cls="$1"
    shift
    java ${BG_KAFKA_TOOL_OPTS:--Xmx256m -XX:TieredStopAtLevel=1 -Dorg.slf4j.simpleLogger.defaultLogLevel=warn} \
        -cp "$BG_KAFKA_HOME/libs/*" "$cls" "$@"
}

# bg_prefixed LABEL CMD...: runs CMD with each line of its output (stdout
# and stderr) prefixed "[LABEL] ", for runs side by side in one log; returns
# CMD's exit status.
bg_prefixed() {
  local label=$1 rc=0
  shift
  "$@" 2>&1 | sed -u "s/^/[$label] /" || rc=${PIPESTATUS[0]}
  return "$rc"
}

# bg_wait_listening PORT [TENTHS]: 0 once 127.0.0.1:PORT takes a
# connection, tried every tenth of a second TENTHS times (default 100);
# 1 if it never did.
bg_wait_listening() {
  local i
  for ((i = 0; i < ${2:-100}; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# bg_bench_order ROUND MODE...: the modes in the order round ROUND runs them,
# one per line: as given in odd rounds, reversed in even ones (A B, B A, ...),
# so a drift of the machine or of a broker still warming up over a run (a JIT
# compiling, the page cache filling) favours neither side of a pair of rounds.
bg_bench_order() {
  local round="$1" i
  shift
  if ((round % 2)); then
    printf '%s\n' "$@"
  else
    for ((i = $#; i >= 1; i--)); do printf '%s\n' "${!i}"; done
  fi
}

# bg_bench_pairs RESULTS KEY [FILTER [MODE [diff]]]: the benchmarks' paired
# view. For each round with both a mode=direct and a mode=MODE line (busgate
# unless given or empty; TSV of k=v, lines narrowed to those with the field
# FILTER, e.g. phase=produce, or none when empty), the ratio MODE/direct of
# KEY (with diff: MODE - direct, in KEY's unit, as for an added latency);
# prints them in round order and their median:
# "0.912 0.877 0.950 (median 0.912)". A run-to-run swing of the direct rate
# moves a mean of ratios taken over whole runs; the median of each round's
# own pair is the steadier figure.
bg_bench_pairs() {
  awk -F'\t' -v k="$2=" -v f="${3:-}" -v via="${4:-busgate}" -v diff="${5:-}" '
    function val(  i) { for (i = 1; i <= NF; i++) if (index($i, k) == 1) return substr($i, length(k) + 1); return "-" }
    function has(x,  i) { if (x == "") return 1; for (i = 1; i <= NF; i++) if ($i == x) return 1; return 0 }
    has(f) {
      m = ""; r = ""
      for (i = 1; i <= NF; i++) {
        if (index($i, "mode=") == 1) m = substr($i, 6)
        if (index($i, "round=") == 1) r = substr($i, 7)
      }
      v = val()
      if (v == "-" || r == "") next
      if (m == "direct") d[r] = v
      else if (m == via) b[r] = v
    }
    END {
      n = 0
      for (r in d) if ((r in b) && (diff != "" || d[r] + 0 > 0)) rounds[++n] = r + 0
      if (!n) { printf "-"; exit }
      for (i = 2; i <= n; i++) for (j = i; j > 1 && rounds[j - 1] > rounds[j]; j--) {
        t = rounds[j]; rounds[j] = rounds[j - 1]; rounds[j - 1] = t }
      fmt = diff != "" ? "%+.3f" : "%.3f"
      for (i = 1; i <= n; i++) {
        q[i] = diff != "" ? b[rounds[i]] - d[rounds[i]] : b[rounds[i]] / d[rounds[i]]
        s[i] = q[i]; printf fmt " ", q[i] }
      for (i = 2; i <= n; i++) for (j = i; j > 1 && s[j - 1] > s[j]; j--) {
        t = s[j]; s[j] = s[j - 1]; s[j - 1] = t }
      med = n % 2 ? s[(n + 1) / 2] : (s[n / 2] + s[n / 2 + 1]) / 2
      printf "(median " fmt ")", med
    }' "$1"
}
