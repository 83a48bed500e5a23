#!/usr/bin/env bash
# Reproduces dsinfer's demo model from a seed: tokenizer, data, DeepSeek-V3.2's three training
# stages (dense, indexer warm-up, sparse), export to the official HF layout, and the check that
# dsinfer's logits equal the PyTorch model's. docs/train.md lists every hyperparameter.
#
#   tools/train/train.sh [--smoke] [--seed S] [--work DIR] [--out DIR] [--threads N]
#
# --smoke: the whole pipeline at tiny sizes in a few minutes (the test suite runs it).
# Defaults: --seed 1, --work build/train (intermediate files), --out models/demo.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
smoke=0 seed=1 work=build/train out=models/demo threads=0
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --seed) seed=$2; shift ;;
    --work) work=$2; shift ;;
    --out) out=$2; shift ;;
    --threads) threads=$2; shift ;;
    *) echo "train.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
dsinfer=${DSINFER:-build/release/dsinfer}
# setup.sh is idempotent and quick when nothing is missing (it also installs the npm
# `tokenizers` binding that data.py encodes with).
scripts/setup.sh
[ -x "$dsinfer" ] || scripts/build.sh release dsinfer
mkdir -p "$work"
# The stages are capped by wall time: a busy machine silently buys a less-trained model
# (docs/train.md, "The machine must be idle").
read -r load1 _ < /proc/loadavg
echo "train.sh: load average $load1 at the start"
if [ "$smoke" -eq 0 ] && awk -v l="$load1" 'BEGIN { exit !(l > 0.5) }'; then
  echo "train.sh: WARNING: the machine is busy; the time-capped stages will train less" >&2
fi
stamp() { date +%s; }
t_start=$(stamp)

scale=full
[ "$smoke" -eq 1 ] && scale=small
echo "== tokenizer ($scale, seed $seed) =="
$PY tools/train/tokenizer.py --seed "$seed" --scale "$scale" --out "$work/tok"
echo "== data ($scale, seed $seed) =="
$PY tools/train/data.py --seed "$seed" --scale "$scale" --tokenizer "$work/tok" --out "$work/data"
vocab=$($PY -c "import json,sys; t=json.load(open(sys.argv[1])); print(max([v for v in t['model']['vocab'].values()] + [a['id'] for a in t['added_tokens']]) + 1)" "$work/tok/tokenizer.json")

common=(--data "$work/data" --seed "$seed" --threads "$threads" --log-every 10)
if [ "$smoke" -eq 1 ]; then
  # Tiny sizes: every stage and every module runs, in seconds. index_topk 32 ≤ 1/8 of the
  # 256-token long rows, so the sparse stage really selects.
  cat > "$work/config.json" <<EOF
{"vocab_size": $vocab, "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32,
 "num_hidden_layers": 2, "num_attention_heads": 2, "q_lora_rank": 32, "kv_lora_rank": 32,
 "qk_nope_head_dim": 16, "qk_rope_head_dim": 16, "v_head_dim": 16, "n_routed_experts": 8,
 "n_group": 4, "topk_group": 2, "index_n_heads": 2, "index_head_dim": 32, "index_topk": 32}
EOF
  rows=(--short 128 --long 3072 --short-rows 4 --long-rows 1 --long-every 4)
  dense=(--steps 8 --lr 3e-3 --warmup-steps 2 --probe-every 4
         --curriculum-steps 3 --drill-every 3 --drill-long-every 2)
  warm=(--steps 4 --lr 1e-3 --warmup-steps 1)
  sparse=(--steps 4 --lr 1e-3 --warmup-steps 1 --drill-every 3
          --drill-long-every 1)
else
  echo "{\"vocab_size\": $vocab}" > "$work/config.json"
  rows=(--short 512 --long 2816 --short-rows 8 --long-rows 1 --long-every 3)
  # The retrieval curriculum first (short pass key documents: ten distinct keys, then all 90;
  # each until 90% of the answers are right or 150 steps), then a batch of the mix's pass key
  # documents every second step, every second of them a long row with a 2K-token document (in
  # the sparse stage every one): without the drill the model sat at chance on retrieval for the
  # whole stage, or unlearnt it; with short documents only it answered 40% at 2K tokens
  # (docs/train.md, "The retrieval curriculum").
  dense=(--steps 4000 --minutes 50 --lr 3e-3 --warmup-steps 100 --curriculum-steps 150
         --curriculum-sets curriculum/ten_keys,curriculum/all_keys --drill-every 2
         --drill-long-every 2)
  warm=(--steps 400 --minutes 8 --lr 1e-3 --warmup-steps 20)
  sparse=(--steps 2000 --minutes 25 --lr 5e-4 --warmup-steps 20 --drill-every 2
          --drill-long-every 1)
fi
echo "== stage 1: dense training =="
$PY tools/train/train.py --stage dense --config "$work/config.json" --out "$work/dense.pt" \
  "${common[@]}" "${rows[@]}" "${dense[@]}"
echo "== stage 2: indexer warm-up =="
$PY tools/train/train.py --stage warmup --init "$work/dense.pt" --out "$work/warmup.pt" \
  "${common[@]}" "${rows[@]}" "${warm[@]}"
echo "== stage 3: sparse training =="
$PY tools/train/train.py --stage sparse --init "$work/warmup.pt" --out "$work/sparse.pt" \
  "${common[@]}" "${rows[@]}" "${sparse[@]}"
echo "== export =="
$PY tools/train/export.py --ckpt "$work/sparse.pt" --tokenizer "$work/tok" --out "$out"
# The ablation: the same model with its indexers reset to their pre-warm-up weights.
$PY tools/train/export.py --ckpt "$work/sparse.pt" --tokenizer "$work/tok" \
  --out "$work/indexer-untrained" --indexer-from-init
# The main job's prompts (`dsinfer` without arguments on this model, src/cli/demo_job.cc): a chat
# turn, a held-out thinking-mode sum, and a held-out long-context retrieval (≥ 2K tokens).
$PY - "$work/data" "$out/demo_prompts.jsonl" <<'PYEOF'
import json, sys
data, out = sys.argv[1], sys.argv[2]
def first(name, pred):
    for line in open(f"{data}/{name}"):
        t = json.loads(line)
        if pred(t):
            return t
    raise SystemExit(f"train.sh: no demo prompt in {name}")
arith = first("eval_arith.jsonl", lambda t: t["thinking"] and t["kind"] == "add")
retr = first("eval_retrieval.jsonl", lambda t: t["tokens"] >= 2048)
rows = [{"messages": [{"role": "user", "content": "Who are you?"}], "thinking": False,
         "answer": "", "kind": "chat"},
        dict(arith, kind="thinking"), dict(retr, kind="retrieval")]
with open(out, "w") as f:
    for r in rows:
        f.write(json.dumps({k: r[k] for k in ("messages", "thinking", "answer", "kind")},
                           ensure_ascii=False) + "\n")
PYEOF
echo "== check: dsinfer's logits equal the PyTorch model's =="
$PY tools/train/compare_engine.py --model "$out" --dsinfer "$dsinfer"
echo "train.sh: done in $(( $(stamp) - t_start )) s -> $out"
