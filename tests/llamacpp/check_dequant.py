#!/usr/bin/python3
"""The NumPy block decoders (tests/reference/gguf_np.py) against ggml's own, bit for bit.

ggml's decoders (`llama_oracle dequant`: ggml's GGUF reader and each type's `to_float`, the
reference decoders of the prebuilt ggml-base) are the definition the format's files are written
for; gguf_np's are written from the layout text. Two sources of blocks:
  1. edges.gguf, written by gguf_np: every type gguf_np decodes, with gguf_np.edge_blocks (zero,
     negative, subnormal and largest f16 scales, all-0 and all-1 quant bytes, random bytes), plus
     blocks whose f16 scale is +inf, -inf or NaN, and F16/BF16 tensors of every 16-bit pattern.
  2. llama.cpp's quantiser on a small model-like F32 file (llama architecture, one layer: the
     quantiser reads hyperparameters and picks types by tensor name): Q8_0, Q4_K_M, Q4_0, Q3_K_M,
     Q2_K, Q5_K_M, Q6_K, IQ4_XS. `attn_output` and `ffn_down` have 128 columns, not whole
     256-blocks, so the mixes hold llama.cpp's fallback types (Q5_0, Q5_1, Q4_0, Q8_0, IQ4_NL).
Every tensor of every file: gguf_np's `dequantize` = ggml's decoding, as f32 bit patterns (a NaN
equals any NaN: ggml and NumPy may quiet a signalling NaN's payload differently); a failure names
the file, tensor and first differing element. Prints the ggml types covered and the quantised
files' tensor types.

usage: check_dequant.py --oracle LLAMA_ORACLE --work DIR
"""

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "gguf"))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import check_gguf_model as cg  # noqa: E402
import gguf_np as g  # noqa: E402

MIXES = ("Q8_0", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K", "Q5_K_M", "Q6_K", "IQ4_XS")
# Types the quantised files must hold between them (llama.cpp's choices, not ours; measured on
# the pinned release: Q5_0 is Q4_K's and Q3_K's fallback for 128 columns, Q5_1 Q5_K's, Q4_0
# Q2_K's, Q8_0 Q6_K's and IQ4_NL IQ4_XS's).
MUST_COVER = {"Q8_0", "Q4_0", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS", "IQ4_NL"}
N_EMBD, N_FF, N_VOCAB, N_HEAD = 256, 128, 1024, 2
# The gguf_model test's helpers (run a command, record a check, remove scratch once its checks
# passed).
run, check, discard, FAILS = cg.run, cg.check, cg.discard, cg.FAILS


def edges_file(path, rng):
    """Every gguf_np type: 16 edge blocks (4 rows of 4), 3 blocks whose f16 scales are +inf,
    -inf, NaN; for F16 and BF16 all 65,536 bit patterns."""
    tensors = []
    every16 = np.arange(65536, dtype="<u2").tobytes()
    for type_, (name, blk, size) in sorted(g.GGML_TYPES.items()):
        if type_ == g.F32:
            continue
        if blk == 1:
            tensors.append((f"{name}.all", type_, [256, 256], every16))
            continue
        tensors.append((f"{name}.edges", type_, [blk * 4, 4], g.edge_blocks(type_, 16, rng)))
        b = np.frombuffer(g.edge_blocks(type_, 3, rng), np.uint8).reshape(3, size).copy()
        for i, bits in enumerate((0x7C00, 0xFC00, 0x7E01)):   # +inf, -inf, a NaN as every f16 field
            for off in _f16_offsets(type_):
                b[i, off:off + 2] = np.array([bits], "<u2").view(np.uint8)
        tensors.append((f"{name}.nonfinite", type_, [blk, 3], b.tobytes()))
    g.write_gguf(path, [("general.alignment", g.Value(g.UINT32, 32))], tensors)


def _f16_offsets(type_):
    """Byte offsets of a block's f16 scales (d, and dmin where the type has one)."""
    return {g.Q8_0: [0], g.Q4_0: [0], g.Q4_1: [0, 2], g.Q5_0: [0], g.Q5_1: [0, 2], g.Q4_K: [0, 2],
            g.Q5_K: [0, 2], g.Q6_K: [208], g.Q2_K: [80, 82], g.Q3_K: [108], g.IQ4_NL: [0],
            g.IQ4_XS: [0]}[type_]


def model_file(path, rng):
    """A one-layer llama-architecture F32 file: what llama.cpp's quantiser needs to pick its mix
    (hyperparameters, tensor names). attn_output and ffn_down have 128 input columns."""
    meta = [("general.architecture", g.Value(g.STRING, "llama")),
            ("general.alignment", g.Value(g.UINT32, 32)),
            ("llama.context_length", g.Value(g.UINT32, 64)),
            ("llama.embedding_length", g.Value(g.UINT32, N_EMBD)),
            ("llama.block_count", g.Value(g.UINT32, 1)),
            ("llama.feed_forward_length", g.Value(g.UINT32, N_FF)),
            ("llama.attention.head_count", g.Value(g.UINT32, N_HEAD)),
            ("llama.attention.head_count_kv", g.Value(g.UINT32, 1)),
            ("llama.rope.dimension_count", g.Value(g.UINT32, N_EMBD // N_HEAD)),
            ("llama.attention.layer_norm_rms_epsilon", g.Value(g.FLOAT32, 1e-5))]
    head = N_FF // N_HEAD
    shapes = {"token_embd.weight": [N_EMBD, N_VOCAB], "blk.0.attn_norm.weight": [N_EMBD],
              "blk.0.attn_q.weight": [N_EMBD, N_FF], "blk.0.attn_k.weight": [N_EMBD, head],
              "blk.0.attn_v.weight": [N_EMBD, head], "blk.0.attn_output.weight": [N_FF, N_EMBD],
              "blk.0.ffn_norm.weight": [N_EMBD], "blk.0.ffn_gate.weight": [N_EMBD, N_FF],
              "blk.0.ffn_up.weight": [N_EMBD, N_FF], "blk.0.ffn_down.weight": [N_FF, N_EMBD],
              "output_norm.weight": [N_EMBD], "output.weight": [N_EMBD, N_VOCAB]}
    tensors = []
    for name, dims in shapes.items():
        # Row scales over 2^-8..2^4 so the blocks' f16 scales span a range.
        rows = dims[1] if len(dims) == 2 else 1
        x = rng.standard_normal((rows, dims[0])) * np.exp2(rng.uniform(-8, 4, (rows, 1)))
        tensors.append((name, g.F32, dims, x.astype("<f4").tobytes()))
    g.write_gguf(path, meta, tensors)


def compare_file(oracle, path, out_dir):
    """gguf_np vs `llama_oracle dequant` on every tensor of `path`; {tensor: ggml type name}."""
    os.makedirs(out_dir, exist_ok=True)
    lines = run([oracle, "dequant", path, "--out", out_dir]).stdout.split("\n")
    theirs_types = dict(line.split()[:2] for line in lines if line.strip())
    r = g.read_gguf(path)
    types, bad = {}, []
    for t in r["tensors"]:
        name, tn = t["name"], g.GGML_TYPES[t["type"]][0]
        types[name] = tn
        with np.errstate(invalid="ignore", over="ignore"):
            mine = g.tensor_f32(r, t)
        theirs = np.load(os.path.join(out_dir, name.replace("/", "_") + ".npy"))
        if theirs_types.get(name, "").upper() != tn or theirs.shape != mine.shape:
            bad.append(f"{name}: ggml says {theirs_types.get(name)} {theirs.shape}, gguf_np {tn} {mine.shape}")
            continue
        a, b = mine.reshape(-1), theirs.reshape(-1)
        differ = (a.view(np.uint32) != b.view(np.uint32)) & ~(np.isnan(a) & np.isnan(b))
        if differ.any():
            i = int(np.argmax(differ))
            bad.append(f"{name} ({tn}): {int(differ.sum())} of {a.size} differ, first element {i}: "
                       f"gguf_np {a[i]!r} (0x{a.view(np.uint32)[i]:08x}) vs ggml {b[i]!r} "
                       f"(0x{b.view(np.uint32)[i]:08x})")
    check(not bad, f"{os.path.basename(path)}: {len(r['tensors'])} tensors bitwise equal to ggml's "
          f"decoding" + "".join("\n     " + x for x in bad))
    return types


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--oracle", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    if not os.access(a.oracle, os.X_OK):
        print(f"FAIL {a.oracle} does not exist: run scripts/llamacpp.sh (scripts/test.sh does)")
        return 1
    os.makedirs(a.work, exist_ok=True)
    rng = np.random.default_rng(23)
    start = time.time()
    covered = set()

    edges = os.path.join(a.work, "edges.gguf")
    edges_file(edges, rng)
    covered |= set(compare_file(a.oracle, edges, os.path.join(a.work, "edges")).values())
    discard(edges, os.path.join(a.work, "edges"))

    src = os.path.join(a.work, "model-F32.gguf")
    model_file(src, rng)
    quantised, in_iq4_xs = set(), set()
    for mix in MIXES:
        path = os.path.join(a.work, f"llama-{mix}.gguf")
        run([a.oracle, "quantize", src, path, mix])
        types = compare_file(a.oracle, path, os.path.join(a.work, mix))
        by_type = {}
        for name, tn in types.items():
            by_type.setdefault(tn, []).append(name)
        print(f"     llama.cpp {mix}: " + "; ".join(f"{tn}: {', '.join(n)}" for tn, n in sorted(by_type.items())),
              flush=True)
        quantised |= set(types.values())
        if mix == "IQ4_XS":
            in_iq4_xs = set(types.values())
        discard(path, os.path.join(a.work, mix))
    missing = MUST_COVER - quantised
    check(not missing, f"llama.cpp's mixes hold {', '.join(sorted(quantised))}"
          + (f"; missing {', '.join(sorted(missing))}" if missing else ""))
    covered |= quantised
    print(f"     types compared: {', '.join(sorted(covered))}; IQ4_NL in llama.cpp's IQ4_XS file: "
          f"{'yes' if 'IQ4_NL' in in_iq4_xs else 'no'}; {time.time() - start:.1f} s")
    print(f"{len(FAILS)} failed" if FAILS else "all passed")
    discard(a.work)
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
