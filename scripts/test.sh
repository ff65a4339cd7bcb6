#!/usr/bin/env bash
# Runs every busgate test suite on a fresh Debian machine:
#   1. installs what is missing (scripts/install-deps.sh),
#   2. builds twice — plain and with AddressSanitizer+UndefinedBehaviorSanitizer —
#      and runs the unit tests and fuzz seed corpora (ctest) in both, side by side,
#   3. builds the libFuzzer targets with clang and runs each briefly,
#   4. starts the real services (Apache Kafka in KRaft mode, an OIDC provider,
#      RabbitMQ) and runs the integration and interop suites against both builds
#      (side by side, see tests/integration/run.sh),
#   5. stops everything it started.
# Exits non-zero on any failure. Environment:
#   BG_FUZZ_SECONDS   seconds per fuzz target (default 15)
#   BG_SKIP_FUZZ=1    skip step 3;  BG_SKIP_INTEGRATION=1  skip step 4
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=$(nproc 2>/dev/null || echo 2)
fuzz_seconds=${BG_FUZZ_SECONDS:-15}

# shellcheck source=../tests/infra/common.sh
. tests/infra/common.sh   # bg_prefixed
step() { printf '\n==== %s\n' "$*"; }

step "dependencies"
scripts/install-deps.sh

build() { # build DIR cmake-args...
  local dir=$1; shift
  cmake -S "$root" -B "$dir" -G Ninja "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
}

step "build: plain"
build build/plain -DCMAKE_BUILD_TYPE=RelWithDebInfo
step "build: sanitized (ASan+UBSan)"
build build/asan -DCMAKE_BUILD_TYPE=Debug -DBG_SANITIZE=ON

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Both builds' unit tests side by side (most of their time is spent waiting
# on sockets and timers), each in its own loopback port range, every output
# line prefixed with its build.
step "unit tests + fuzz corpora: plain and sanitized, side by side"
unit() { # unit BUILD PORTS
  bg_prefixed "$1" env BG_TEST_PORTS="$2" ctest --test-dir "build/$1" --output-on-failure -j "$jobs"
}
unit plain 33000-33499 & plain_pid=$!
unit asan 33500-33999 & asan_pid=$!
unit_failed=0
wait "$plain_pid" || unit_failed=1
wait "$asan_pid" || unit_failed=1
[ "$unit_failed" = 0 ] || { echo "unit tests failed" >&2; exit 1; }

if [ "${BG_SKIP_FUZZ:-0}" != 1 ]; then
  step "fuzz: libFuzzer targets, ${fuzz_seconds}s each"
  CC=clang-14 build build/fuzz -DCMAKE_BUILD_TYPE=Debug -DBG_FUZZ=ON
  # One target per core at a time; each writes its own log, shown on failure.
  fuzz_one() { # fuzz_one NAME
    local name=$1 bin=build/fuzz/tests/fuzz/fuzz_$1 work unwind=1
    work=$(mktemp -d)
    cp -r "tests/fuzz/corpus/$name/." "$work/"
    # A leak inside libfyaml is suppressed by name (tests/fuzz/lsan.supp),
    # which needs ASan's full stack unwinding for the configuration parser.
    [ "$name" = config ] && unwind=0
    if LSAN_OPTIONS="suppressions=$PWD/tests/fuzz/lsan.supp" ASAN_OPTIONS="fast_unwind_on_malloc=$unwind" \
      "$bin" -seed=1 -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=0 \
      "$work" >"$work.log" 2>&1; then
      echo "fuzz_$name: ok"
      rm -rf "$work" "$work.log"
    else
      echo "fuzz_$name: FAILED"
      tail -50 "$work.log"
      return 1
    fi
  }
  ran=0 failed=0 running=0
  for src in tests/fuzz/*.cmake; do
    name=${src##*/}; name=${name%.cmake}
    # Every target is built and has its seed corpus: a missing one fails
    # the run instead of fuzzing nothing.
    [ -x "build/fuzz/tests/fuzz/fuzz_$name" ] || { echo "fuzz target fuzz_$name was not built" >&2; exit 1; }
    [ -d "tests/fuzz/corpus/$name" ] || { echo "no seed corpus tests/fuzz/corpus/$name" >&2; exit 1; }
    if [ "$running" -ge "$jobs" ]; then
      wait -n || failed=1
      running=$((running - 1))
    fi
    fuzz_one "$name" &
    running=$((running + 1))
    ran=$((ran + 1))
  done
  while [ "$running" -gt 0 ]; do
    wait -n || failed=1
    running=$((running - 1))
  done
  [ "$failed" = 0 ] || exit 1
  [ "$ran" -gt 0 ] || { echo "no fuzz targets found under tests/fuzz" >&2; exit 1; }
fi

if [ "${BG_SKIP_INTEGRATION:-0}" != 1 ]; then
  step "integration and interop suites"
  tests/integration/run.sh build/plain build/asan
fi

step "all suites passed"
