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
  "$dsinfer" eval "${threads[@]}" "${limit[@]}" --json --show-failures 1000 "$@" \
    > "$out/$name.json"
}
# 48 new tokens: a thinking-mode answer comes after ~20 tokens of reasoning ("The text says: The
# pass key is 66. So the pass key is 66.", then </think>); with 16, as before session 10, every
# thinking-mode prompt (a quarter of the set) counted as wrong.
run retrieval_dense --model "$model" --attention dense --tasks "$data/eval_retrieval.jsonl" --max-new 48
run retrieval_dsa --model "$model" --attention dsa --tasks "$data/eval_retrieval.jsonl" --max-new 48
run retrieval_dsa_untrained --model "$untrained" --attention dsa \
  --tasks "$data/eval_retrieval.jsonl" --max-new 48
run kv_dense --model "$model" --attention dense --tasks "$data/eval_kv.jsonl" --max-new 48
run kv_dsa --model "$model" --attention dsa --tasks "$data/eval_kv.jsonl" --max-new 48
run skills_dsa --model "$model" --attention dsa --tasks "$data/eval_arith.jsonl" \
  --tasks "$data/eval_skills.jsonl" --max-new 192
run text_dense --model "$model" --attention dense --text "$data/eval_text.jsonl" --mtp
run text_dsa --model "$model" --attention dsa --text "$data/eval_text.jsonl" --mtp
$PY - "$out" "$model" "$data" <<'PYEOF'
import json, sys
out, model, data = sys.argv[1], sys.argv[2], sys.argv[3]
r = {n: json.load(open(f"{out}/{n}.json")) for n in
     ["retrieval_dense", "retrieval_dsa", "retrieval_dsa_untrained", "kv_dense", "kv_dsa",
      "skills_dsa", "text_dense",
      "text_dsa"]}
def task(name, i=0):
    t = r[name]["tasks"][i]
    p = t["prompt_tokens"]
    return t, f'{100 * t["accuracy"]:.1f}% ({t["correct"]}/{t["n"]})', f'{p["min"]}–{p["max"]}'
def modes(name, file):
    """Accuracy in chat and in thinking mode (the failures are listed whole: --show-failures)."""
    t = r[name]["tasks"][0]
    rows = [json.loads(line) for line in open(f"{data}/{file}")][:t["n"]]
    failed = {f["line"] for f in t["failures"]}
    assert len(failed) == t["n"] - t["correct"], "evaluate.sh: not every failure is listed"
    acc = {}
    for mode in (False, True):
        lines = [i + 1 for i, e in enumerate(rows) if e["thinking"] == mode]
        ok = sum(i not in failed for i in lines)
        acc[mode] = f"{100 * ok / max(1, len(lines)):.0f}% of {len(lines)}"
    return f"{task(name)[1]}: chat {acc[False]}, thinking {acc[True]}"
cfg = json.load(open(f"{model}/config.json"))
print(f"Model `{model}` (index_topk {cfg.get('index_topk')}); every figure measured by `dsinfer eval`.\n")
print("| measure | dense | DSA (trained indexer) | DSA (indexer at its pre-warm-up init) |")
print("| --- | --- | --- | --- |")
_, _, dlen = task("retrieval_dense")
print(f"| retrieval accuracy, prompts of {dlen} tokens | {modes('retrieval_dense', 'eval_retrieval.jsonl')} "
      f"| {modes('retrieval_dsa', 'eval_retrieval.jsonl')} "
      f"| {modes('retrieval_dsa_untrained', 'eval_retrieval.jsonl')} |")
_, _, klen = task("kv_dense")
kd, ks = modes("kv_dense", "eval_kv.jsonl"), modes("kv_dsa", "eval_kv.jsonl")
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
