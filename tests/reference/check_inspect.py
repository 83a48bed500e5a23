#!/usr/bin/python3
"""Cross-check of `dsinfer inspect` against our own byte-by-byte checkpoint writer.

1. np_write_checkpoint writes a small complete checkpoint (config.json, 2 shards, index json;
   F8_E4M3 + F32 weight_scale_inv, BF16, F32 tensors) into a temporary folder.
2. `dsinfer inspect DIR --json --checksums` must find the weights loadable (`usable_token_ids`;
   the writer writes no tokenizer, so the exit status is 2, "token ids only"), and its `tensors` array (docs/inspect.md)
   must agree with what the writer wrote on every tensor: name, dtype, shape, nbytes and the
   FNV-1a 64 of the raw bytes (hex), computed here independently.
3. The same checkpoint with one required tensor removed must make `inspect` exit 2 and name the
   tensor on stderr.

4. With --f32-norms: the indexer's k_norm weight/bias stored as F32 instead of BF16 (their real
   dtype is unverified, docs/model.md §3.5; docs/numerics.md §1 says accept both) must also be usable.

Usage: check_inspect.py DSINFER_BINARY [--f32-norms]   (exit 0 = agreement; 1 = mismatches, printed)
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import np_write_checkpoint as writer  # noqa: E402

FNV_OFFSET, FNV_PRIME, MASK64 = 0xCBF29CE484222325, 0x100000001B3, (1 << 64) - 1
REMOVED = "model.layers.1.self_attn.kv_a_layernorm.weight"


def fnv1a64(data):
    """FNV-1a 64: for each byte, h ^= byte; h *= prime (mod 2^64)."""
    h = FNV_OFFSET
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & MASK64
    return h


def expected_tensors(written):
    out = {}
    for name, (dtype, shape, raw) in written.items():
        blob = np.ascontiguousarray(raw).tobytes()
        out[name] = {"dtype": dtype, "shape": [int(s) for s in shape], "nbytes": len(blob), "fnv1a64": fnv1a64(blob)}
    return out


def parse_hash(value):
    if isinstance(value, int):
        return value
    text = str(value).lower()
    return int(text[2:] if text.startswith("0x") else text, 16)


def compare(expected, report):
    problems = []
    got = {t["name"]: t for t in report["tensors"]}
    for name in sorted(set(expected) - set(got)):
        problems.append(f"{name}: written but not reported by inspect")
    for name in sorted(set(got) - set(expected)):
        problems.append(f"{name}: reported by inspect but not written")
    for name in sorted(set(expected) & set(got)):
        e, g = expected[name], got[name]
        for key in ("dtype", "shape", "nbytes"):
            if g.get(key) != e[key]:
                problems.append(f"{name}: {key} inspect={g.get(key)} writer={e[key]}")
        if "fnv1a64" not in g or parse_hash(g["fnv1a64"]) != e["fnv1a64"]:
            problems.append(f"{name}: fnv1a64 inspect={g.get('fnv1a64')} writer={e['fnv1a64']:016x}")
    return problems


def run(binary, folder, *extra):
    return subprocess.run([binary, "inspect", folder, *extra], capture_output=True, text=True, timeout=120)


def check_complete(binary, folder, cfg, f32_norms):
    written = writer.write_checkpoint(folder, cfg, seed=5, shards=2, f32_norms=f32_norms)
    r = run(binary, folder, "--json", "--checksums")
    # The writer writes no tokenizer: the weights must load (usable with token ids, exit 2 with
    # only the tokenizer named on stderr; docs/checkpoint.md).
    j = json.loads(r.stdout) if r.stdout.strip() else {}
    if r.returncode != 2 or not j.get("usable_token_ids") or "tokenizer.json" not in str(j.get("tokenizer_error")):
        return [f"inspect of the complete checkpoint (f32_norms={f32_norms}) exited {r.returncode}, "
                f"usable_token_ids {j.get('usable_token_ids')}: {r.stderr.strip()}"]
    problems = compare(expected_tensors(written), j)
    if not problems:
        print(f"inspect agrees with the writer on all {len(written)} tensors (f32_norms={f32_norms})")
    problems += check_bits(written, j)
    problems += check_memory(binary, folder, cfg, written, j)
    return problems


def check_memory(binary, folder, cfg, written, j):
    """The memory figure: the tensors as written + the per-head transposed key half of every
    kv_b (values and, for FP8, one f32 scale per 128 x 128 block; an FP8 kv_b is transposed only
    when its head stride and kv_lora_rank are multiples of 128) + the caches of the main
    layers at the context; and loading refuses, naming the figure, exactly when the memory
    available (DSINFER_MEMORY_AVAILABLE) is below it."""
    heads, r, nope = cfg["num_attention_heads"], cfg["kv_lora_rank"], cfg["qk_nope_head_dim"]
    copies = 0
    for name, (dtype, shape, raw) in written.items():
        stride = nope + cfg["v_head_dim"]
        if name.endswith(".self_attn.kv_b_proj.weight") and not (
                dtype == "F8_E4M3" and (stride % 128 or r % 128)):
            size = {"F8_E4M3": 1, "BF16": 2, "F32": 4}[dtype]
            copies += heads * r * nope * size
            if dtype == "F8_E4M3":
                copies += 4 * (heads * r // 128) * ((nope + 127) // 128)
    tensors = sum(len(np.ascontiguousarray(raw).tobytes()) for _, _, raw in written.values())
    context, layers = 4096, cfg["num_hidden_layers"]
    latent = r + cfg["qk_rope_head_dim"]
    idx = cfg.get("index_head_dim") or 0
    idx_bytes = idx + 4 * ((idx + 127) // 128) if idx and cfg.get("index_n_heads") else 0
    cache = {"f32": 4 * latent, "bf16": 2 * latent, "fp8": r + 4 * ((r + 127) // 128) + 2 * cfg["qk_rope_head_dim"]}
    want_cache = {k: layers * context * (v + idx_bytes) for k, v in cache.items()}
    problems = []
    if j.get("weight_copy_bytes") != copies or j.get("weights_resident_bytes") != tensors + copies:
        problems.append(f"inspect memory: copies {j.get('weight_copy_bytes')} resident "
                        f"{j.get('weights_resident_bytes')}, expected {copies} and {tensors + copies}")
    if j.get("context") != context or j.get("cache_bytes") != want_cache:
        problems.append(f"inspect cache at {j.get('context')}: {j.get('cache_bytes')}, expected {want_cache}")
    need = tensors + copies
    ids = ["logits", "--model", folder, "--ids", "1,2,3", "--out", os.path.join(folder, "l.npy")]
    for avail, ok in ((need, True), (need - 1, False)):
        p = subprocess.run([binary, *ids], capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, DSINFER_MEMORY_AVAILABLE=str(avail)))
        named = f"{tensors} bytes of tensors" in p.stderr and f"+ {copies} bytes of copies" in p.stderr
        if ok and p.returncode != 0:
            problems.append(f"logits with {avail} bytes available (= the figure) failed: {p.stderr.strip()}")
        if not ok and (p.returncode != 1 or not named):
            problems.append(f"logits with {avail} bytes available (1 below the figure) exited "
                            f"{p.returncode}, stderr {p.stderr.strip()!r}")
    if not problems:
        print(f"inspect memory: {tensors} bytes of tensors + {copies} of copies, caches at {context} "
              f"tokens {want_cache}; loading refuses with {need - 1} bytes available, runs with {need}")
    return problems


def check_bits(written, j):
    """Bits per weight: all bytes written over the elements of every tensor but the block scales;
    the routed experts' tensors apart."""
    import re
    expert = re.compile(r"\.mlp\.experts\.\d+\.")
    nbytes = weights = e_bytes = e_weights = 0
    for name, (dtype, shape, raw) in written.items():
        b = len(np.ascontiguousarray(raw).tobytes())
        w = 0 if name.endswith(".weight_scale_inv") else int(np.prod(shape))
        nbytes, weights = nbytes + b, weights + w
        if expert.search(name):
            e_bytes, e_weights = e_bytes + b, e_weights + w
    want = {"weights": weights, "routed_expert_bytes": e_bytes, "routed_expert_weights": e_weights}
    problems = [f"inspect {k} = {j.get(k)}, the writer wrote {v}" for k, v in want.items() if j.get(k) != v]
    bpw = 8 * nbytes / weights
    if abs(j.get("bits_per_weight", -1) - bpw) > 1e-9 * bpw:
        problems.append(f"inspect bits_per_weight = {j.get('bits_per_weight')}, expected {bpw}")
    if not problems:
        print(f"inspect: {bpw:.4f} bits per weight ({weights} weights, {e_weights} in routed experts "
              f"at {8 * e_bytes / e_weights:.4f}), as written")
    return problems


def check_missing(binary, folder, cfg):
    writer.write_checkpoint(folder, cfg, seed=5, shards=2, omit=[REMOVED])
    r = run(binary, folder, "--json", "--checksums")
    problems = []
    if r.returncode != 2:
        problems.append(f"inspect without {REMOVED} exited {r.returncode}, expected 2")
    if json.loads(r.stdout).get("usable_token_ids") is not False:
        problems.append(f"inspect without {REMOVED} calls the weights loadable")
    if REMOVED not in r.stderr:
        problems.append(f"inspect without {REMOVED} does not name it on stderr: {r.stderr.strip()!r}")
    if not problems:
        print(f"inspect exits 2 and names {REMOVED} when it is missing")
    return problems


def main(argv):
    ap = argparse.ArgumentParser(description="cross-check dsinfer inspect against the NumPy writer")
    ap.add_argument("binary")
    ap.add_argument("--f32-norms", action="store_true")
    a = ap.parse_args(argv[1:])
    cfg = json.loads(json.dumps(writer.SMALL_CONFIG))
    with tempfile.TemporaryDirectory(prefix="check_inspect_") as tmp:
        failures = check_complete(a.binary, os.path.join(tmp, "good"), cfg, False)
        failures += check_missing(a.binary, os.path.join(tmp, "missing"), cfg)
        if a.f32_norms:
            failures += check_complete(a.binary, os.path.join(tmp, "f32norms"), cfg, True)
        # Head stride and kv_lora_rank multiples of 128: kv_b's key half is copied at load.
        wide = dict(cfg, kv_lora_rank=128, qk_nope_head_dim=64, v_head_dim=64)
        failures += check_complete(a.binary, os.path.join(tmp, "kvb128"), wide, False)
    for f in failures:
        print("MISMATCH:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
