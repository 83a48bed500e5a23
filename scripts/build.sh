#!/usr/bin/env bash
# Configures and builds one CMake preset (release | asan-ubsan | fuzz | tsan) [targets...].
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-release}
shift || true
cmake --preset "$preset" >/dev/null
if [ $# -gt 0 ]; then
  cmake --build --preset "$preset" --target "$@"
else
  cmake --build --preset "$preset"
fi
