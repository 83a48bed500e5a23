#!/usr/bin/env bash
# The whole test suite: set-up, Release build + unit/integration tests (C++, Python reference,
# node oracles, all registered in CTest), the ASan/UBSan build of the unit tests, and the
# libFuzzer targets for a bounded time. Prints one closing line "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# llama.cpp, the oracle of tests/llamacpp (from npm's node-llama-cpp: docs/llamacpp.md).
scripts/llamacpp.sh

# Each stage's wall time is printed, so the suite's budget (30 min on 2 cores) can be watched.
stage_start=$SECONDS
stage_done() {  # stage_done NAME
  echo "== $1 took $((SECONDS - stage_start)) s (suite so far: $SECONDS s)"
  stage_start=$SECONDS
}
stage_done "set-up"

passed=0
failed=0
run_ctest() {  # run_ctest PRESET [ctest args...]
  local preset=$1
  shift
  local log
  log=$(mktemp)
  local rc=0
  ctest --test-dir "build/$preset" --output-on-failure -j2 "$@" 2>&1 | tee "$log" || rc=$?
  local total fails
  total=$(sed -n 's/.*tests failed out of \([0-9]\+\).*/\1/p' "$log" | tail -1)
  fails=$(sed -n 's/.*, \([0-9]\+\) tests failed out of.*/\1/p' "$log" | tail -1)
  if [ -z "$total" ]; then
    echo "test.sh: ctest for $preset ran no tests or crashed" >&2
    failed=$((failed + 1))
  else
    passed=$((passed + total - fails))
    failed=$((failed + fails))
  fi
  rm -f "$log"
  [ "$rc" -eq 0 ] || echo "test.sh: failures in $preset"
}

echo "== Release build =="
scripts/build.sh release
stage_done "Release build"
run_ctest release
stage_done "Release tests"

# The ASan/UBSan and fuzz stages build only what they run: the unit-test binaries (one per
# tests/unit/<layer> folder) and the fuzz targets (tests/fuzz/*_fuzz.cc).
unit_targets=()
for d in tests/unit/*/; do
  compgen -G "$d*_test.cc" >/dev/null && unit_targets+=("$(basename "$d")_tests")
done
fuzz_targets=()
for f in tests/fuzz/*_fuzz.cc; do fuzz_targets+=("$(basename "$f" .cc)"); done

# clang, like the TSan and fuzz stages: it builds these binaries in about 360 s where GCC took
# about 550 s on the 2-core machine (the suite's budget is 30 minutes).
echo "== ASan/UBSan build (clang) =="
scripts/build.sh asan-ubsan "${unit_targets[@]}"
stage_done "ASan/UBSan build"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  run_ctest asan-ubsan -L unit
stage_done "ASan/UBSan tests"

# ThreadSanitizer (clang, LLVM's OpenMP runtime with its Archer tool: docs/threads.md) over the
# unit tests of the layers whose code runs on several threads: base (thread roles), runtime
# (forward passes in OpenMP regions, KV page pool, prefix cache) and server (the engine and its
# scheduler, speculative decoding, the HTTP handlers and the HTTP layer over sockets), and the
# canary that shows TSan sees our threads (tests/threads/tsan_canary.cc). Only these binaries
# are built, so `-L unit` runs exactly their tests.
echo "== ThreadSanitizer build =="
scripts/build.sh tsan base_tests runtime_tests server_tests tsan_canary
stage_done "ThreadSanitizer build"
run_ctest tsan -L unit
stage_done "ThreadSanitizer tests"

echo "== libFuzzer targets (clang) =="
scripts/build.sh fuzz "${fuzz_targets[@]}"
stage_done "fuzz build"
run_ctest fuzz -L fuzz
stage_done "fuzz runs"

echo "Summary: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
