"""Checks that dsinfer runs an exported checkpoint exactly as the PyTorch model defines it.

  compare_engine.py --model DIR --dsinfer BIN [--ids-len N] [--seed S] [--tol 1e-4]

Loads DIR's safetensors with a small reader of its own (FP8 codes × block scales, BF16 → f32),
puts the weights into the PyTorch model (tools/train/model.py), runs it in f32 with the engine's
inference rules (indexer FP8 act_quant, ties to the lower key), and compares its logits and MTP
logits with `dsinfer logits` on the same token ids, for dense attention and for DSA with the
context past `index_topk`. Tolerance: per row max|Δ| / max|logit| ≤ tol (the forward-pass
tolerance of the engine's own reference comparison, docs/numerics.md). Exit 1 on failure.
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export  # noqa: E402
from model import Config, Transformer  # noqa: E402


def _e4m3_table():
    t = np.zeros(256, dtype=np.float32)
    for c in range(256):
        e, m = (c >> 3) & 0xF, c & 7
        v = (m / 8.0) * 2.0**-6 if e == 0 else (1 + m / 8.0) * 2.0 ** (e - 7)
        t[c] = -v if c & 0x80 else v
    return t


E4M3 = _e4m3_table()


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw, shape = data[b:e], info["shape"]
        if info["dtype"] == "F32":
            a = np.frombuffer(raw, dtype="<f4")
        elif info["dtype"] == "BF16":
            a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] == "F8_E4M3":
            a = E4M3[np.frombuffer(raw, dtype=np.uint8)]
        else:
            raise ValueError(f"{name}: dtype {info['dtype']}")
        out[name] = a.reshape(shape).astype(np.float32)
    return out


def dequantised(tensors):
    """HF name → f32 tensor with FP8 weights multiplied by their 128×128 block scales."""
    out = {}
    for name, a in tensors.items():
        if name.endswith("_scale_inv"):
            continue
        s = tensors.get(name + "_scale_inv")
        if s is not None:
            a = a * np.repeat(np.repeat(s, 128, 0), 128, 1)[: a.shape[0], : a.shape[1]]
        out[name] = torch.from_numpy(np.ascontiguousarray(a))
    return out


class _Names:
    """Collects the HF name → PyTorch state-dict key map by running the exporter on keys."""

    def __init__(self):
        self.map = {}

    def bf16(self, name, key):
        self.map[name] = key

    f32 = bf16

    def fp8(self, name, key):
        self.map[name + ".weight"] = key


class _Keys(dict):
    def __missing__(self, key):
        return key


def load_model(model_dir):
    hf = json.load(open(os.path.join(model_dir, "config.json")))
    c = Config(**{k: hf[k] for k in Config.__dataclass_fields__ if k in hf and
                  not k.startswith("rope_")})
    rs = hf["rope_scaling"]
    c.rope_factor, c.rope_original_max = rs["factor"], rs["original_max_position_embeddings"]
    c.rope_beta_fast, c.rope_beta_slow = rs["beta_fast"], rs["beta_slow"]
    c.rope_theta = hf["rope_theta"]
    model = Transformer(c)
    names = _Names()
    keys = _Keys()
    n = c.num_hidden_layers
    for i in range(n):
        export.export_layer(names, keys, f"layers.{i}.", f"model.layers.{i}.",
                            i >= c.first_k_dense_replace, c.n_routed_experts)
    names.map.update({"model.embed_tokens.weight": "embed.weight", "model.norm.weight":
                      "norm.weight", "lm_head.weight": "head.weight"})
    p = f"model.layers.{n}."
    export.export_layer(names, keys, "mtp.block.", p, n >= c.first_k_dense_replace,
                        c.n_routed_experts)
    names.map.update({p + "enorm.weight": "mtp.enorm.weight", p + "hnorm.weight":
                      "mtp.hnorm.weight", p + "eh_proj.weight": "mtp.eh_proj.weight",
                      p + "shared_head.norm.weight": "mtp.norm.weight"})
    tensors = {}
    for f in sorted(os.listdir(model_dir)):
        if f.endswith(".safetensors"):
            tensors.update(read_safetensors(os.path.join(model_dir, f)))
    weights = dequantised(tensors)
    sd = {}
    for name, key in names.map.items():
        sd[key] = weights[name]
    missing = model.load_state_dict(sd, strict=False)
    if missing.missing_keys or missing.unexpected_keys:
        raise SystemExit(f"compare: state dict mismatch {missing}")
    # FP8 weights are already on the grid: re-quantising them is the identity.
    return model.eval(), c


def engine_logits(binary, model_dir, ids, attention, workdir):
    out, mtp = os.path.join(workdir, "l.npy"), os.path.join(workdir, "m.npy")
    subprocess.run([binary, "logits", "--model", model_dir, "--ids", ",".join(map(str, ids)),
                    "--out", out, "--mtp-out", mtp, "--attention", attention,
                    "--kv-cache", "f32"], check=True, stdout=subprocess.DEVNULL)
    return np.load(out), np.load(mtp)


def rel_err(a, b):
    return float((np.abs(a - b).max(-1) / np.abs(b).max(-1)).max())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--dsinfer", required=True)
    ap.add_argument("--ids-len", type=int, default=0, help="default: 2 × index_topk + 17")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    torch.set_num_threads(1)
    model, c = load_model(a.model)
    n = a.ids_len or 2 * c.index_topk + 17
    rng = np.random.default_rng(a.seed)
    ids = [c.bos_token_id] + rng.integers(2, c.vocab_size, n - 1).tolist()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for attention in ("dense", "dsa"):
            want, want_mtp = engine_logits(a.dsinfer, a.model, ids, attention, tmp)
            mode = dict(attention=attention, kl=None, quantise=True, exact_ties=True)
            with torch.no_grad():
                logits, mtp, _ = model(torch.tensor([ids]), mode)
            e, em = rel_err(logits[0].numpy(), want), rel_err(mtp[0].numpy(), want_mtp)
            top1 = float((logits[0].numpy().argmax(-1) == want.argmax(-1)).mean())
            good = e <= a.tol and em <= a.tol
            ok &= good
            print(f"compare[{attention}] {n} tokens: logits max rel err {e:.2e}, MTP {em:.2e}, "
                  f"top-1 agreement {top1:.4f} (tolerance {a.tol:g}) {'ok' if good else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
