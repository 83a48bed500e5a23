#!/usr/bin/env bash
# Tokenizer throughput, dsinfer vs Hugging Face's `tokenizers` (Rust core, node binding), on the
# same corpus and tokenizer.json, in one run, one thread each. Prints both and the ratio.
# Usage: bench/tokenizer_vs_hf.sh [CORPUS_JSONL]   (default: the 6,000-line golden corpus)
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-tests/text/golden/corpus.jsonl}
dsinfer=build/release/dsinfer
[ -x "$dsinfer" ] || { echo "build first: scripts/build.sh release dsinfer" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A tiny checkpoint carries the real V3.2 tokenizer files (renamed added tokens).
"$dsinfer" gen-model --preset tiny --seed 0 --set vocab_size=129280 --out "$tmp/m" >/dev/null 2>&1
ours=$(OMP_NUM_THREADS=1 "$dsinfer" bench tokenizer --tokenizer "$tmp/m/tokenizer.json" --corpus "$corpus" --json)
theirs=$(RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false node bench/tokenizer_hf.mjs "$tmp/m/tokenizer.json" "$corpus")
echo "$ours"
echo "$theirs"
/usr/bin/python3 - "$ours" "$theirs" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert a["tokens"] == b["tokens"], f"token counts differ: {a['tokens']} vs {b['tokens']}"
print(f"dsinfer {a['mb_per_s']:.2f} MB/s vs HF tokenizers {b['mb_per_s']:.2f} MB/s "
      f"on {a['bytes']/1e6:.2f} MB, {a['tokens']} tokens: ratio {a['mb_per_s']/b['mb_per_s']:.2f}x")
PY
