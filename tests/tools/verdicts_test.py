#!/usr/bin/python3
"""`inspect`'s verdict equals whether the model loads (issue 16): for each way a checkpoint can be
stored or damaged, `inspect --json` is run next to the commands it judges for:

  * `usable_token_ids` must equal whether `logits --ids` loads the model (weights only);
  * `usable` must equal whether `run --raw -p` runs (weights and tokenizer);
  * when either refuses, both name the same tensor (or tokenizer.json).

The truth here is the commands' own exit status; the checkpoints are edited by this script with
the independent NumPy safetensors reader/writer (tests/reference/safetensors_np.py), not by
dsinfer's writer.

usage: verdicts_test.py DSINFER SCRATCH_DIR
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reference"))
import safetensors_np as st  # noqa: E402

SHARD = "model-00001-of-00001.safetensors"


def run(args):
    p = subprocess.run(args, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def load_all(model):
    """Every tensor of `model` as name -> (dtype, shape, array in storage dtype), in memory."""
    ck = st.CheckpointFiles(model)
    return {n: (ck.dtype(n), ck.shape(n), np.array(ck.raw(n))) for n in ck.names()}


def save_all(model, tensors):
    """Rewrites `model` as one shard (widest elements first, so F32 stays 4-byte aligned, as
    Hugging Face's writer orders a file) and its index."""
    for fn in os.listdir(model):
        if fn.endswith(".safetensors"):
            os.remove(os.path.join(model, fn))
    order = sorted(tensors, key=lambda n: -st.DTYPES[tensors[n][0]][1])
    st.write_safetensors(os.path.join(model, SHARD), {n: tensors[n] for n in order},
                         {"format": "pt"})
    with open(os.path.join(model, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": {n: SHARD for n in tensors}}, f)


def to_bf16_everywhere(t):
    """Every F8_E4M3 matrix dequantised (e4m3 · block scale, docs/model.md §6.1) and stored as
    BF16, its scale dropped: what DeepSeek's fp8_cast_bf16.py produces (config untouched)."""
    for name in [n for n in t if t[n][0] == "F8_E4M3"]:
        _, (rows, cols), codes = t[name]
        scale = t.pop(name + "_scale_inv")[2]
        full = np.repeat(np.repeat(scale, 128, 0), 128, 1)[:rows, :cols]
        t[name] = ("BF16", [rows, cols], st.bf16_encode(st.e4m3_decode(codes) * full))


def edit(t, name, dtype=None, shape=None, data=None):
    old_dtype, old_shape, old = t[name]
    t[name] = (dtype or old_dtype, shape or old_shape, old if data is None else data)


FP8 = "model.layers.1.mlp.experts.3.down_proj.weight"  # a routed expert's FP8 weight
NORM = "model.layers.0.self_attn.kv_a_layernorm.weight"
GATE = "model.layers.1.mlp.gate.weight"


def cases():
    """name -> (edit of the tensors or None, edit of the directory or None, culprit or None)."""
    def transposed(t, n=FP8):
        edit(t, n, shape=t[n][1][::-1])

    def scale_transposed(t):
        transposed(t, FP8 + "_scale_inv")

    def nan_scale(t):
        s = t[FP8 + "_scale_inv"][2].copy()
        s.flat[0] = np.nan
        edit(t, FP8 + "_scale_inv", data=s)

    def i32(t):
        rows, cols = t[GATE][1]
        edit(t, GATE, dtype="I32", data=np.zeros((rows, cols), np.int32))

    def f16_gate_f32_norm(t):  # other float storage the kernels compute with
        edit(t, GATE, dtype="F16", data=st.to_f32(t[GATE][2], "BF16").astype(np.float16))
        edit(t, NORM, dtype="F32", data=st.to_f32(t[NORM][2], "BF16"))

    def drop_tokenizer(d):
        os.remove(os.path.join(d, "tokenizer.json"))

    def break_tokenizer(d):
        p = os.path.join(d, "tokenizer.json")
        text = open(p, encoding="utf-8").read()
        open(p, "w", encoding="utf-8").write(text[:len(text) // 2])

    def mtp_partial(t):  # the MTP layer starts (eh_proj) but its o_proj is gone
        del t["model.layers.3.self_attn.o_proj.weight"]

    def mtp_indexer_absent(t):  # the MTP layer's indexer is optional: a dense MTP layer
        for n in [n for n in t if n.startswith("model.layers.3.self_attn.indexer.")]:
            del t[n]

    def mtp_absent(t):
        for n in [n for n in t if n.startswith("model.layers.3.")]:
            del t[n]

    return {
        "intact": (None, None, None),
        "bf16_where_fp8_expected": (to_bf16_everywhere, None, None),
        "f16_gate_f32_norm": (f16_gate_f32_norm, None, None),
        "missing_tokenizer": (None, drop_tokenizer, "tokenizer.json"),
        "broken_tokenizer": (None, break_tokenizer, "tokenizer.json"),
        "wrong_shape": (transposed, None, FP8),
        "missing_scale": (lambda t: t.pop(FP8 + "_scale_inv"), None, FP8 + "_scale_inv"),
        "scale_wrong_shape": (scale_transposed, None, FP8 + "_scale_inv"),
        "scale_not_finite": (nan_scale, None, FP8 + "_scale_inv"),
        "i32_weight": (i32, None, GATE),
        "missing_required": (lambda t: t.pop(NORM), None, NORM),
        "mtp_absent": (mtp_absent, None, None),
        "mtp_indexer_absent": (mtp_indexer_absent, None, None),
        "mtp_partial": (mtp_partial, None, "model.layers.3.self_attn.o_proj.weight"),
    }


def check_case(dsinfer, base, tmp, name, tensor_edit, dir_edit, culprit):
    model = os.path.join(tmp, name)
    shutil.copytree(base, model)
    if tensor_edit:
        t = load_all(model)
        tensor_edit(t)
        save_all(model, t)
    if dir_edit:
        dir_edit(model)
    rc_i, out_i, err_i = run([dsinfer, "inspect", model, "--json"])
    j = json.loads(out_i)
    j.setdefault("usable_token_ids", j["usable"])  # before issue 16: one verdict for both
    rc_l, _, err_l = run([dsinfer, "logits", "--model", model, "--ids", "0,5,7",
                          "--out", os.path.join(tmp, name + ".npy")])
    rc_r, _, err_r = run([dsinfer, "run", "--model", model, "--raw", "-p", "ab", "-n", "2"])
    problems = []
    if j["usable_token_ids"] != (rc_l == 0):
        problems.append(f"usable_token_ids {j['usable_token_ids']} but logits rc {rc_l}")
    if j["usable"] != (rc_r == 0):
        problems.append(f"usable {j['usable']} but run -p rc {rc_r}")
    if (rc_i == 0) != j["usable"]:
        problems.append(f"inspect rc {rc_i} but usable {j['usable']}")
    if culprit is None and not (j["usable"] and rc_l == 0 and rc_r == 0):
        problems.append("expected every command to run it")
    if culprit is not None:
        if j["usable"]:
            problems.append("expected inspect to refuse it")
        for what, err in [("inspect", err_i), ("run -p", err_r)] + \
                ([] if j["usable_token_ids"] else [("logits", err_l)]):
            if culprit not in err:
                problems.append(f"{what} does not name {culprit}")
    print(f"[{'FAIL' if problems else 'PASS'}] {name}: inspect usable={j['usable']} "
          f"token_ids={j['usable_token_ids']} rc={rc_i}; logits rc={rc_l}; run -p rc={rc_r}")
    for p in problems:
        print(f"    {p}")
    if problems:
        print(f"    inspect: {err_i.strip()[:400]}\n    logits: {err_l.strip()[:400]}\n"
              f"    run: {err_r.strip()[:400]}")
    return not problems


def main():
    dsinfer, tmp = sys.argv[1], sys.argv[2]
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    base = os.path.join(tmp, "base")
    # vocab 1000 keeps it small; "ab" after BOS encodes to ids below 1000 (0, 425).
    rc, _, err = run([dsinfer, "gen-model", "--preset", "tiny", "--seed", "3", "--out", base,
                      "--set", "vocab_size=1000"])
    assert rc == 0, err
    ok = all([check_case(dsinfer, base, tmp, n, *c) for n, c in cases().items()])
    # A BF16 conversion declared as such (no quantization_config): the generator writes BF16
    # projections without scales, and both accept it.
    bf16 = os.path.join(tmp, "bf16_config")
    rc, _, err = run([dsinfer, "gen-model", "--preset", "tiny", "--seed", "3", "--out", bf16,
                      "--set", "vocab_size=1000", "--set", "quantization_config=null"])
    assert rc == 0, err
    ok &= check_case(dsinfer, bf16, tmp, "bf16_generated", None, None, None)
    dtypes = {t["dtype"] for t in json.loads(run([dsinfer, "inspect", bf16, "--json"])[1])["tensors"]}
    if "F8_E4M3" in dtypes:
        print("[FAIL] quantization_config=null still wrote F8_E4M3 tensors")
        ok = False
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
