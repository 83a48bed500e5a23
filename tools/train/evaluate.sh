#!/usr/bin/env bash
# Measures the trained model's quality with `dsinfer eval` and prints the markdown table that
# docs/train.md records: retrieval at >= 2K tokens with dense attention, with DSA (the trained
# indexer) and with DSA on the indexer reset to its pre-warm-up weights (the ablation); key-value
# facts (dense, DSA);
# arithmetic and skills accuracy; held-out perplexity DSA vs dense with the MTP module's
# next-next-token accuracy.
#
#   tools/train/evaluate.sh [--model DIR] [--untrained DIR] [--data DIR] [--out DIR] [--limit N]
#                           [--threads N]
#
# Defaults: --model models/demo, --untrained build/train/indexer-untrained,
# --data build/train/data (train.sh writes all three), --out build/train/eval.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
model=models/demo untrained=build/train/indexer-untrained data=build/train/data out=build/train/eval
limit=() threads=()
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift ;;
    --untrained) untrained=$2; shift ;;
    --data) data=$2; shift ;;
    --out) out=$2; shift ;;
    --limit) limit=(--limit "$2"); shift ;;
    --threads) threads=(--threads "$2"); shift ;;
    *) echo "evaluate.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
dsinfer=${DSINFER:-build/release/dsinfer}
[ -x "$dsinfer" ] || { scripts/setup.sh && scripts/build.sh release dsinfer; }
mkdir -p "$out"
run() {  # run NAME dsinfer-eval-args...
  local name=$1
  shift
  echo "== $name: dsinfer eval $*" >&2
  "$dsinfer" eval "${threads[@]}" "${limit[@]}" --json "$@" > "$out/$name.json"
}
run retrieval_dense --model "$model" --attention dense --tasks "$data/eval_retrieval.jsonl" --max-new 16
run retrieval_dsa --model "$model" --attention dsa --tasks "$data/eval_retrieval.jsonl" --max-new 16
run retrieval_dsa_untrained --model "$untrained" --attention dsa \
  --tasks "$data/eval_retrieval.jsonl" --max-new 16
run kv_dense --model "$model" --attention dense --tasks "$data/eval_kv.jsonl" --max-new 16
run kv_dsa --model "$model" --attention dsa --tasks "$data/eval_kv.jsonl" --max-new 16
run skills_dsa --model "$model" --attention dsa --tasks "$data/eval_arith.jsonl" \
  --tasks "$data/eval_skills.jsonl" --max-new 192
run text_dense --model "$model" --attention dense --text "$data/eval_text.jsonl" --mtp
run text_dsa --model "$model" --attention dsa --text "$data/eval_text.jsonl" --mtp
$PY - "$out" "$model" <<'PYEOF'
import json, sys
out, model = sys.argv[1], sys.argv[2]
r = {n: json.load(open(f"{out}/{n}.json")) for n in
     ["retrieval_dense", "retrieval_dsa", "retrieval_dsa_untrained", "kv_dense", "kv_dsa",
      "skills_dsa", "text_dense",
      "text_dsa"]}
def task(name, i=0):
    t = r[name]["tasks"][i]
    p = t["prompt_tokens"]
    return t, f'{100 * t["accuracy"]:.1f}% ({t["correct"]}/{t["n"]})', f'{p["min"]}–{p["max"]}'
cfg = json.load(open(f"{model}/config.json"))
print(f"Model `{model}` (index_topk {cfg.get('index_topk')}); every figure measured by `dsinfer eval`.\n")
print("| measure | dense | DSA (trained indexer) | DSA (indexer at its pre-warm-up init) |")
print("| --- | --- | --- | --- |")
d, dacc, dlen = task("retrieval_dense")
s, sacc, _ = task("retrieval_dsa")
u, uacc, _ = task("retrieval_dsa_untrained")
print(f"| retrieval accuracy, prompts of {dlen} tokens | {dacc} | {sacc} | {uacc} |")
_, kd, klen = task("kv_dense")
_, ks, _ = task("kv_dsa")
print(f"| key-value facts (2-4 names, one asked), prompts of {klen} tokens | {kd} | {ks} | |")
td, ts = r["text_dense"]["text"][0], r["text_dsa"]["text"][0]
print(f'| held-out perplexity ({td["tokens"]} tokens) | {td["perplexity"]:.3f} | '
      f'{ts["perplexity"]:.3f} ({100 * (ts["perplexity"] / td["perplexity"] - 1):+.2f}%) | |')
print(f'| MTP top-1 (next-next token) | {100 * td["mtp"]["top1_accuracy"]:.1f}% | '
      f'{100 * ts["mtp"]["top1_accuracy"]:.1f}% | |')
print(f'| MTP agreement with the main head\'s next-next argmax | '
      f'{100 * td["mtp"]["agreement_with_main"]:.1f}% | '
      f'{100 * ts["mtp"]["agreement_with_main"]:.1f}% | |')
for i in range(len(r["skills_dsa"]["tasks"])):
    t, acc, lens = task("skills_dsa", i)
    name = t["file"].rsplit("/", 1)[-1]
    kinds = ", ".join(f'{k} {100 * v["accuracy"]:.0f}%' for k, v in t["kinds"].items())
    print(f"| `{name}` accuracy ({lens} tokens; {kinds}) | | {acc} | |")
PYEOF
