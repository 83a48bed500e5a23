"""Checks the training recipe's bookkeeping on a smoke run of tools/train/train.sh:

* stage 1 (dense) never touches the indexers: they still equal the saved pre-warm-up weights;
* stage 2 (indexer warm-up) changes the indexers and nothing else (gate biases included);
* stage 3 (sparse) trains everything;
* the ablation export (--indexer-from-init) holds exactly the pre-warm-up indexer weights;
* the smoke run's log shows the retrieval probes ran (tests/train/ctest.cmake passes the log);
* the retrieval curriculum's sets hold pass key documents with keys in their ranges and no
  evaluation question, the drill is the mix's pass key documents (short and long, both modes,
  the thinking-mode ones three times), and the log
  shows the three sets and the drill (short and long rows) ran;
* the main job (`dsinfer`, no arguments) on the smoke model shows its demo sections;
* tools/train/evaluate_numerics.sh runs every variant on the smoke model (bounds below);
* document masking: a packed row's logits (and MTP logits) equal each document's run alone;
* the FP8 rounding used for training and export equals an independent e4m3 encoder
  (tests/reference/safetensors_np.py) on random values, every rounding midpoint and the
  subnormal range.

Usage: stages_check.py WORK_DIR [LOG [DSINFER]]   (the --work folder of a finished train.sh
       --smoke run, the run's output, and dsinfer to run the main job on WORK_DIR/model)
"""
import json
import os
import re
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "train"))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
from fp8 import e4m3_round  # noqa: E402
from safetensors_np import e4m3_decode, e4m3_encode  # noqa: E402
import compare_engine  # noqa: E402

failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


work = sys.argv[1]
ck = {s: torch.load(os.path.join(work, s + ".pt")) for s in ("dense", "warmup", "sparse")}
init = ck["dense"]["meta"]["indexer_init"]
sd = {s: {k: v for k, v in c["model"].items()} for s, c in ck.items()}
idx = [k for k in sd["dense"] if ".indexer." in k and "hadamard" not in k]
other = [k for k in sd["dense"] if k not in idx]
check(len(idx) > 0 and all(torch.equal(sd["dense"][k], init[k]) for k in idx),
      f"dense stage left the {len(idx)} indexer tensors at their initial values")
changed_w = [k for k in idx if not torch.equal(sd["warmup"][k], sd["dense"][k])]
check(len(changed_w) == len(idx), f"warm-up changed the indexers ({len(changed_w)} of {len(idx)} tensors)")
still = [k for k in other if not torch.equal(sd["warmup"][k], sd["dense"][k])]
check(not still, f"warm-up changed nothing else (changed: {still[:3]})")
trained = [k for k in other if k.endswith("weight") and not torch.equal(sd["sparse"][k], sd["warmup"][k])]
check(len(trained) > len([k for k in other if k.endswith("weight")]) // 2,
      f"sparse stage trained the model ({len(trained)} weight tensors changed)")
stages = [r["stage"] for r in ck["sparse"]["meta"]["stages"]]
check(stages == ["dense", "warmup", "sparse"], f"stage record {stages}")

# The ablation export carries the pre-warm-up indexer.
model, _ = compare_engine.load_model(os.path.join(work, "indexer-untrained"))
got = model.state_dict()
from fp8 import quant_weight  # noqa: E402
bad = []
for k in idx:
    want = init[k].float()
    if k.endswith(("wq_b.weight", "wk.weight")):
        want = quant_weight(want)[0]
    else:  # stored as BF16
        want = want.to(torch.bfloat16).float()
    if not torch.equal(got[k], want):
        bad.append(k)
check(not bad, f"ablation export holds the pre-warm-up indexer ({len(idx) - len(bad)}/{len(idx)})")

if len(sys.argv) > 2:
    log = open(sys.argv[2]).read()
    check("train[dense] step 4 probe retrieval_short-acc" in log
          and "train[sparse] probe retrieval_short-acc" in log,
          "the smoke log shows the retrieval probes")
    check(all(f"train[{name}]: 3 steps, answer accuracy" in log
              for name in ("curriculum/ten_keys", "curriculum/all_keys", "drill"))
          and re.search(r"train\[dense\]: 2 drill batches, answer accuracy \S+; 1 of them long",
                        log)
          and re.search(r"train\[sparse\]: 1 drill batches, answer accuracy \S+; 1 of them long",
                        log),
          "the smoke log shows the retrieval curriculum's three sets and the drill (short and "
          "long rows)")

# The retrieval curriculum's sets hold what data.py's docstring says: pass key documents whose
# answer (after </think>, before EOS) is a key of the set's range, never an evaluation question;
# the drill is exactly the mix's chat-mode pass key documents, short and long, in order.
from tokenizer import ASSISTANT, END_THINK, EOS, USER  # noqa: E402


def jsonl(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


data_dir = os.path.join(work, "data")
asked = {e["messages"][0]["content"] for name in os.listdir(data_dir)
         if name.startswith("eval_") and name != "eval_text.jsonl"
         for e in jsonl(os.path.join(data_dir, name))}
for name, lo, hi in (("curriculum/ten_keys", 10, 19), ("curriculum/all_keys", 10, 99)):
    rows = jsonl(os.path.join(data_dir, name, "train.jsonl"))
    keys = [int(r["text"].rsplit(END_THINK, 1)[1].split(EOS)[0]) for r in rows]
    questions = [r["text"].split(USER, 1)[1].split(ASSISTANT)[0] for r in rows]
    check(len(rows) > 0 and all(lo <= k <= hi for k in keys) and len(set(keys)) > 1
          and not asked & set(questions)
          and all(r["kind"].startswith("passkey_curriculum") for r in rows),
          f"{name}: {len(rows)} pass key documents, keys {min(keys)}-{max(keys)} "
          f"(range {lo}-{hi}), no evaluation question")
# The drill: the mix's pass key documents in both modes, each thinking-mode one three times.
mix = [r for r in jsonl(os.path.join(data_dir, "train.jsonl"))
       if r["kind"].startswith("passkey_") and not r["kind"].startswith("passkey_curriculum")]
want = [r for r in mix for _ in range(3 if r["kind"].endswith("_think") else 1)]
n_long = sum(r["kind"].startswith("passkey_long") for r in mix)
n_think = sum(r["kind"].endswith("_think") for r in mix)
check(jsonl(os.path.join(data_dir, "drill", "train.jsonl")) == want and 0 < n_long < len(mix)
      and 0 < n_think < len(mix) and {r["kind"] for r in mix} == {
          "passkey_short", "passkey_long", "passkey_short_think", "passkey_long_think"},
      f"drill: the mix's {len(mix)} pass key documents ({n_long} long, {n_think} in thinking "
      f"mode, those three times)")

# Document masking: a packed row's logits equal those of its documents run one by one (each from
# position 0), in dense and DSA attention (index_topk below the documents' lengths), with the
# trained smoke model, in f32.
from model import Config, Transformer  # noqa: E402
cfg = Config(**ck["sparse"]["config"])
net = Transformer(cfg)
net.load_state_dict(ck["sparse"]["model"])
net.eval()
g = torch.Generator().manual_seed(5)
lens = [cfg.index_topk + 9, 2 * cfg.index_topk + 3, 7]
docs = [torch.cat([torch.tensor([cfg.bos_token_id]),
                   torch.randint(10, cfg.vocab_size, (n - 1,), generator=g)]) for n in lens]
packed = torch.cat(docs)[None]
worst = {}
with torch.no_grad():
    for attention in ("dense", "dsa"):
        mode = dict(attention=attention, kl=None, quantise=True, exact_ties=True, documents=True)
        lp, mp, _ = net(packed, mode)
        err, off = 0.0, 0
        for d in docs:
            la, ma, _ = net(d[None], dict(mode, documents=False))
            n = len(d)
            err = max(err, float((lp[0, off:off + n] - la[0]).abs().max() / la.abs().max()),
                      float((mp[0, off:off + n - 1] - ma[0]).abs().max() / ma.abs().max()))
            off += n
        worst[attention] = err
check(all(e <= 1e-5 for e in worst.values()),
      f"document masking: packed rows equal their documents alone (max rel err dense "
      f"{worst['dense']:.1e}, dsa {worst['dsa']:.1e}; tolerance 1e-5)")

# --answer-weight's targets: exactly the tokens after </think> up to the answer's EOS, in chat and
# thinking mode, in a packed row (hand-written expectation).
import train  # noqa: E402
from tokenizer import ASSISTANT, END_THINK, SPECIAL_TOKENS, THINK, USER  # noqa: E402
S = {t: SPECIAL_TOKENS.index(t) for t in (USER, ASSISTANT, THINK, END_THINK)}
row = torch.tensor([[0, S[USER], 50, S[ASSISTANT], S[END_THINK], 60, 61, 1,
                     0, S[USER], 50, S[ASSISTANT], S[THINK], 70, 71, S[END_THINK], 62, 1, 1]])
want = [0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0]
check(train.answer_targets(row, 0, 1).int().tolist() == [want],
      "answer targets: the answer tokens and their EOS, not the prompt, reasoning or padding")

# The main job on a trained model (`dsinfer` without arguments, the default model being the
# smoke model): its three demo prompts, retrieval with DSA and dense, each with a cost.
if len(sys.argv) > 3:
    import subprocess
    model_dir = os.path.join(work, "model")
    p = subprocess.run([sys.argv[3]], capture_output=True, text=True,
                       env=dict(os.environ, DSINFER_DEFAULT_MODEL=model_dir))
    out = p.stdout
    want = ["== chat ==", "== thinking mode ==",
            "== long-context retrieval: DSA vs dense attention ==", "expected answer:",
            "  DSA   answer", "  dense answer", "USD/1M", "== DSA vs dense attention"]
    missing = [w for w in want if w not in out]
    check(p.returncode == 0 and not missing,
          f"main job on the trained (smoke) model: exit {p.returncode}, sections missing: "
          f"{missing}" + (f"\n{out}\n{p.stderr}" if missing or p.returncode else ""))

# tools/train/evaluate_numerics.sh on the smoke model: every variant measured (IQ4_XS, ours and
# llama.cpp's: IQ4_NL fallbacks throughout at these row sizes), each one's KL to
# the reference far below a broken path's, the bf16 KV cache closer than the FP8 one, and the
# Q4_K_M file's logits those of the Q8_0 file (the smoke model's rows of 32-128 are not whole
# 256-blocks, so quantize falls back to Q8_0 for every K-quant matrix).
if len(sys.argv) > 3:
    import subprocess
    num = os.path.join(work, "numerics")
    p = subprocess.run([os.path.join(ROOT, "tools", "train", "evaluate_numerics.sh"),
                        "--model", os.path.join(work, "model"), "--data",
                        os.path.join(work, "data"), "--out", num, "--limit", "4",
                        "--threads", "1"],
                       capture_output=True, text=True, env=dict(os.environ, DSINFER=sys.argv[3]))
    names = ["fp8", "numerics_bf16", "kv_bf16", "kv_fp8", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M",
             "IQ4_XS", "Q8_0_int8", "Q4_K_M_int8", "IQ4_XS_int8"]
    # llama.cpp's IQ4_XS file, when scripts/llamacpp.sh has built the oracle (the suite does)
    if os.access(os.path.join(ROOT, "build", "llamacpp", "bin", "llama_oracle"), os.X_OK):
        names += ["IQ4_XS_llama", "IQ4_XS_llama_int8"]
    s = json.load(open(os.path.join(num, "summary.json"))) if p.returncode == 0 else {}
    # A broken path (a wrong scale or layout) gives a KL of order 1 or more; bf16 KV entries
    # have a step 16x finer than e4m3's, so they must stay closer to the reference.
    # IQ4_XS puts every matrix (attention too) at 4.25 bits: measured 4.3e-2 on the smoke model,
    # whose training time varies with the machine, so its bound is wider — still far below 1.
    bound = {n: 0.2 for n in names if n.startswith("IQ4_XS")}
    check(p.returncode == 0 and list(s) == names and s["fp8"]["mean_kl"] == 0
          and all(np.isfinite(v["perplexity"]) and v["mean_kl"] <= bound.get(n, 0.05)
                  for n, v in s.items())
          and s["kv_bf16"]["mean_kl"] < s["kv_fp8"]["mean_kl"]
          and np.array_equal(np.load(os.path.join(num, "Q8_0.logits.npy")),
                             np.load(os.path.join(num, "Q4_K_M.logits.npy"))),
          "evaluate_numerics.sh on the smoke model: " + (", ".join(
              f"{n} KL {v['mean_kl']:.1e}" for n, v in s.items()) or p.stdout + p.stderr))

rng = np.random.default_rng(0)
x = np.concatenate([rng.standard_normal(100000) * s for s in (1e-4, 1e-2, 1, 100, 1000)])
grid = e4m3_decode(np.arange(0, 127, dtype=np.uint8)).astype(np.float64)
mids = (grid[1:] + grid[:-1]) / 2
x = np.concatenate([x, mids, -mids, grid, [0.0, 448.0, 449.0, 1e9, -1e9]]).astype(np.float32)
a = e4m3_round(torch.from_numpy(x)).numpy()
b = e4m3_decode(e4m3_encode(x.astype(np.float64)))
check(np.array_equal(a, b), f"e4m3 rounding equals the reference encoder on {len(x)} values "
      f"({int((a != b).sum())} differ)")
sys.exit(1 if failures else 0)
