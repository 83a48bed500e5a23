#!/usr/bin/env bash
# llama.cpp as an independent oracle (docs/llamacpp.md). Debian 12 packages no llama.cpp and
# GitHub is out of reach here, but npm carries it: node-llama-cpp ships the llama.cpp source
# release it binds (a git bundle, llama/gitRelease.bundle) and @node-llama-cpp/linux-x64 the
# libraries built from it. Both tarballs are pinned by version and SHA-256.
#
#   scripts/llamacpp.sh          build/llamacpp/bin/llama_oracle (tests/llamacpp/llama_oracle.cc
#                                against the prebuilt libraries: llama.cpp's GGUF reader, its
#                                quantiser, ggml's block decoders and its deepseek2/deepseek32
#                                forward pass)
#   scripts/llamacpp.sh --bench  also builds llama.cpp's llama-bench and llama-quantize from
#                                the same source for this CPU (GGML_NATIVE; ~10 min on 2 cores)
#
# Does nothing that is already done. Needs node/npm, git, g++ (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

version=3.22.1
declare -A sha256=(
  [node-llama-cpp-$version.tgz]=a0d9dd80eacd2ab1cfe71aee57ac8a806487fd70b3d2a38fbec637752d9e5c5f
  [node-llama-cpp-linux-x64-$version.tgz]=0d953e1503d5ab4608d8ed5b739132308c81ac05ffeb760d2a7f30e08a9f90e0
)
out=build/llamacpp
bench=0
case "${1:-}" in
  "") ;;
  --bench) bench=1 ;;
  *) echo "usage: scripts/llamacpp.sh [--bench]" >&2; exit 2 ;;
esac
mkdir -p "$out/download" "$out/bin"

# 1. The two npm tarballs, checked against the pinned hashes.
for tgz in "${!sha256[@]}"; do
  if [ ! -f "$out/download/$tgz" ] || ! echo "${sha256[$tgz]}  $out/download/$tgz" | sha256sum -c --quiet - 2>/dev/null; then
    echo "llamacpp: fetching node-llama-cpp $version from npm"
    rm -f "$out/download/"*.tgz
    (cd "$out/download" && npm pack --silent --loglevel=error \
      "node-llama-cpp@$version" "@node-llama-cpp/linux-x64@$version" >/dev/null)
    break
  fi
done
for tgz in "${!sha256[@]}"; do
  echo "${sha256[$tgz]}  $out/download/$tgz" | sha256sum -c --quiet - \
    || { echo "llamacpp: $tgz does not have the pinned SHA-256" >&2; exit 1; }
done

# 2. Libraries and source.
if [ ! -f "$out/lib/.stamp-$version" ]; then
  rm -rf "$out/lib" "$out/unpack"
  mkdir -p "$out/lib" "$out/unpack"
  tar -xzf "$out/download/node-llama-cpp-linux-x64-$version.tgz" -C "$out/unpack" package/bins/linux-x64
  cp "$out/unpack/package/bins/linux-x64/"*.so "$out/lib/"
  tar -xzf "$out/download/node-llama-cpp-$version.tgz" -C "$out/unpack" \
    package/llama/gitRelease.bundle package/llama/llama.cpp.info.json
  rm -rf "$out/src"
  git clone -q "$out/unpack/package/llama/gitRelease.bundle" "$out/src" 2>/dev/null
  cp "$out/unpack/package/llama/llama.cpp.info.json" "$out/src.info.json"
  rm -rf "$out/unpack"
  touch "$out/lib/.stamp-$version"
fi

# 3. The oracle, against the prebuilt libraries (ggml loads its CPU backend variant for this
#    CPU from build/llamacpp/lib at run time; LLAMA_ORACLE_BACKENDS=DIR overrides).
oracle_src=tests/llamacpp/llama_oracle.cc
if [ ! -x "$out/bin/llama_oracle" ] || [ "$oracle_src" -nt "$out/bin/llama_oracle" ]; then
  echo "llamacpp: building $out/bin/llama_oracle"
  lib=$(cd "$out/lib" && pwd)
  g++ -std=c++17 -O2 -Wall -Wextra -I"$out/src/include" -I"$out/src/ggml/include" "$oracle_src" \
    -DLLAMA_ORACLE_LIB_DIR="\"$lib\"" -o "$out/bin/llama_oracle" -L"$lib" -l:libllama.v0.5.0.so -l:libggml.v0.5.0.so -l:libggml-base.so \
    -Wl,-rpath,"$lib"
fi

# 4. llama-bench and llama-quantize for side-by-side speed (not used by the test suite).
if [ "$bench" = 1 ] && [ ! -x "$out/bin/llama-bench" ]; then
  echo "llamacpp: building llama-bench and llama-quantize (GGML_NATIVE) in $out/src/build"
  cmake -S "$out/src" -B "$out/src/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF >/dev/null
  cmake --build "$out/src/build" --target llama-bench llama-quantize
  ln -sf "$(cd "$out/src/build/bin" && pwd)/llama-bench" "$out/bin/llama-bench"
  ln -sf "$(cd "$out/src/build/bin" && pwd)/llama-quantize" "$out/bin/llama-quantize"
fi
echo "llamacpp: $out/bin: $(ls "$out/bin" | tr '\n' ' ')"
