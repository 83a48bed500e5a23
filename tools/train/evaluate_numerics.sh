#!/usr/bin/env bash
# The trained model in each storage format and numerics dsinfer offers, against its own FP8
# checkpoint run in f32 numerics with an f32 KV cache (the reference): GGUF files made by
# `dsinfer quantize` (Q8_0, Q6_K, Q5_K_M, Q4_K_M with exact f32 activations, `--block-acts f32`;
# Q8_0, Q4_K_M and IQ4_XS also with int8 activations, the default; IQ4_XS made by llama.cpp's
# quantiser, both ways), `--numerics bf16`, and the bf16 and FP8 KV caches. For each, measured by
# dsinfer in DSA mode: held-out perplexity, pass key retrieval at 2K tokens, and the KL divergence
# and top-1 agreement of its next-token distributions with the reference's over 2,048 tokens of
# held-out text (one prefill) (docs/gguf.md and docs/numerics.md show the table). Prints the
# table; OUT/summary.json holds the same figures.
#
#   tools/train/evaluate_numerics.sh [--model DIR] [--data DIR] [--out DIR] [--limit N]
#                                    [--threads N]
#
# Defaults (in the repository): --model models/demo, --data build/train/data (train.sh writes it),
# --out build/train/numerics. --limit N: the first N retrieval prompts and text documents.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3
model=$root/models/demo data=$root/build/train/data out=$root/build/train/numerics
limit=() threads=()
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift ;;
    --data) data=$2; shift ;;
    --out) out=$2; shift ;;
    --limit) limit=(--limit "$2"); shift ;;
    --threads) threads=(--threads "$2"); shift ;;
    *) echo "evaluate_numerics.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
# Paths are taken as given (relative to the current directory); dsinfer is $DSINFER, else the
# repository's Release build (built first if missing).
dsinfer=${DSINFER:-$root/build/release/dsinfer}
[ -x "$dsinfer" ] || [ -n "${DSINFER:-}" ] ||
  { "$root/scripts/setup.sh" && "$root/scripts/build.sh" release dsinfer; }
[ -x "$dsinfer" ] || { echo "evaluate_numerics.sh: $dsinfer is not an executable" >&2; exit 1; }
for f in "$model/config.json" "$data/eval_text.jsonl" "$data/eval_retrieval.jsonl"; do
  [ -f "$f" ] || { echo "evaluate_numerics.sh: $f is missing (tools/train/train.sh writes it)" >&2
                   exit 1; }
done
mkdir -p "$out"

# The KL text: BOS, then held-out documents joined by blank lines, cut at 2,048 tokens (fewer
# if the held-out text is shorter, as at the smoke scale).
$PY - "$data/eval_text.jsonl" > "$out/kl_text.txt" <<'PYEOF'
import json, sys
docs = [json.loads(line)["text"] for line in open(sys.argv[1])]
sys.stdout.write("\n\n".join(docs[:200]))
PYEOF
"$dsinfer" tokenize --model "$model" < "$out/kl_text.txt" > "$out/kl_ids.json"
ids=$($PY - "$model/config.json" "$out/kl_ids.json" <<'PYEOF'
import json, sys
bos = json.load(open(sys.argv[1]))["bos_token_id"]
ids = json.load(open(sys.argv[2]))
assert len(ids) >= 127, f"evaluate_numerics.sh: only {len(ids)} tokens of held-out text"
print(",".join(str(i) for i in [bos] + ids[:2047]))
PYEOF
)

variants=()
measure() {  # measure NAME MODEL [env NAME=VALUE] -- dsinfer args...
  local name=$1 m=$2
  shift 2
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  echo "== $name: $m $* ${envs[*]}" >&2
  env "${envs[@]}" "$dsinfer" logits "${threads[@]}" --model "$m" --ids "$ids" \
    --out "$out/$name.logits.npy" "$@"
  env "${envs[@]}" "$dsinfer" eval "${threads[@]}" "${limit[@]}" --json --model "$m" "$@" \
    --text "$data/eval_text.jsonl" --tasks "$data/eval_retrieval.jsonl" --max-new 48 \
    > "$out/$name.json"
  variants+=("$name=$m")
}
measure fp8 "$model" --
measure numerics_bf16 "$model" -- --numerics bf16
measure kv_bf16 "$model" -- --kv-cache bf16
measure kv_fp8 "$model" -- --kv-cache fp8
for type in Q8_0 Q6_K Q5_K_M Q4_K_M IQ4_XS; do
  "$dsinfer" quantize "${threads[@]}" --model "$model" --out "$out/$type.gguf" --type "$type" \
    > /dev/null
  measure "$type" "$out/$type.gguf" -- --block-acts f32
done
measure Q8_0_int8 "$out/Q8_0.gguf" -- --block-acts int8
measure Q4_K_M_int8 "$out/Q4_K_M.gguf" -- --block-acts int8
measure IQ4_XS_int8 "$out/IQ4_XS.gguf" -- --block-acts int8
# IQ4_XS as llama.cpp's own quantiser makes it (its own scale search, and its own exceptions to
# the base type for a few tensors), from an F32 GGUF of the model (when scripts/llamacpp.sh has
# built the oracle; skipped otherwise).
oracle=$root/build/llamacpp/bin/llama_oracle
if [ -x "$oracle" ]; then
  "$dsinfer" quantize "${threads[@]}" --model "$model" --out "$out/F32.gguf" --type F32 > /dev/null
  "$oracle" quantize "$out/F32.gguf" "$out/IQ4_XS_llama.gguf" IQ4_XS \
    > "$out/IQ4_XS_llama.quantize.log" 2>&1 || { cat "$out/IQ4_XS_llama.quantize.log" >&2; exit 1; }
  rm -f "$out/F32.gguf"
  measure IQ4_XS_llama "$out/IQ4_XS_llama.gguf" -- --block-acts f32
  measure IQ4_XS_llama_int8 "$out/IQ4_XS_llama.gguf" -- --block-acts int8
else
  echo "evaluate_numerics.sh: no $oracle (scripts/llamacpp.sh builds it): IQ4_XS skipped" >&2
fi

$PY - "$out" "$model" "${variants[@]}" <<'PYEOF'
import json, os, sys
import numpy as np
out, model, variants = sys.argv[1], sys.argv[2], [v.split("=", 1) for v in sys.argv[3:]]
LABEL = {"fp8": "FP8 checkpoint, f32 numerics, f32 KV cache (reference)",
         "numerics_bf16": "`--numerics bf16`", "kv_bf16": "`--kv-cache bf16`",
         "kv_fp8": "`--kv-cache fp8` (serve's default)", "Q8_0_int8": "Q8_0, int8 activations",
         "Q4_K_M_int8": "Q4_K_M, int8 activations",
         "IQ4_XS_int8": "IQ4_XS, int8 activations",
         "IQ4_XS_llama": "IQ4_XS (llama.cpp's quantiser)",
         "IQ4_XS_llama_int8": "IQ4_XS (llama.cpp's quantiser), int8 activations"}

def weight_bytes(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)
                   if f.endswith(".safetensors"))
    return os.path.getsize(path)

def logp(x):
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))

ref = logp(np.load(f"{out}/fp8.logits.npy"))
base = json.load(open(f"{out}/fp8.json"))["text"][0]["perplexity"]
print(f"Model `{model}`, DSA; KL and top-1 over {ref.shape[0]} positions of held-out text.\n")
print("| variant | weights (MiB) | held-out perplexity | retrieval at 2K tokens "
      "| mean KL(ref ‖ variant) | max KL | top-1 agreement |")
print("| --- | --- | --- | --- | --- | --- | --- |")
summary = {}
for name, path in variants:
    r = json.load(open(f"{out}/{name}.json"))
    t, x = r["tasks"][0], r["text"][0]
    lp = logp(np.load(f"{out}/{name}.logits.npy"))
    kl = (np.exp(ref) * (ref - lp)).sum(axis=-1)
    agree = (ref.argmax(-1) == lp.argmax(-1)).mean()
    ppl = x["perplexity"]
    delta = "" if name == "fp8" else f" ({100 * (ppl / base - 1):+.2f}%)"
    print(f"| {LABEL.get(name, name)} | {weight_bytes(path) / 2**20:.1f} | {ppl:.3f}{delta} "
          f"| {100 * t['accuracy']:.1f}% ({t['correct']}/{t['n']}) | {kl.mean():.2e} "
          f"| {kl.max():.2e} | {100 * agree:.1f}% |")
    summary[name] = {"weights_bytes": weight_bytes(path), "perplexity": ppl,
                     "retrieval_accuracy": t["accuracy"], "mean_kl": float(kl.mean()),
                     "max_kl": float(kl.max()), "top1_agreement": float(agree)}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
PYEOF
