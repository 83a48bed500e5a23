"""The C++ GGUF reader and block decoders against the independent NumPy ones (gguf_np.py).

Writes GGUF files with NumPy (v3 with the default alignment, v3 with general.alignment = 64,
v2), covering every metadata value type (arrays of each scalar type, of strings, nested arrays,
empty ones) and several tensors of each decodable ggml type whose blocks include edge cases
(zero, negative, subnormal and largest f16 scales, extreme quants and 6-bit scales). Runs
`dsinfer gguf-dump FILE --out-dir DIR` and requires the same metadata (types and exact values),
the same tensor infos, and dequantised values bit-identical to NumPy's.

usage: check_gguf.py path/to/dsinfer
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

import gguf_np as g

V = g.Value


def metadata(alignment=None):
    f32 = lambda x: float(np.float32(x))
    m = [("general.architecture", V(g.STRING, "deepseek2")),
         ("general.name", V(g.STRING, "tiny ü ∑ 模型")),
         ("empty.string", V(g.STRING, "")),
         ("u8", V(g.UINT8, 255)), ("i8", V(g.INT8, -128)),
         ("u16", V(g.UINT16, 65535)), ("i16", V(g.INT16, -32768)),
         ("u32", V(g.UINT32, 4294967295)), ("i32", V(g.INT32, -2147483648)),
         ("u64", V(g.UINT64, 2**64 - 1)), ("i64", V(g.INT64, -2**63)),
         ("f32", V(g.FLOAT32, f32(0.1))), ("f32.tiny", V(g.FLOAT32, f32(1e-45))),
         ("f64", V(g.FLOAT64, 0.1)), ("f64.big", V(g.FLOAT64, -1.7976931348623157e308)),
         ("bool.true", V(g.BOOL, True)), ("bool.false", V(g.BOOL, False)),
         ("tokenizer.ggml.tokens", V(g.ARRAY, ["<s>", "", "hello", "ü"], g.STRING)),
         ("tokenizer.ggml.scores", V(g.ARRAY, [f32(-1.5), 0.0, f32(3.25e-3)], g.FLOAT32)),
         ("tokenizer.ggml.token_type", V(g.ARRAY, [1, 3, -2147483648], g.INT32)),
         ("arr.u8", V(g.ARRAY, [0, 7, 255], g.UINT8)), ("arr.i8", V(g.ARRAY, [-128, 127], g.INT8)),
         ("arr.u16", V(g.ARRAY, [65535], g.UINT16)), ("arr.i16", V(g.ARRAY, [-2], g.INT16)),
         ("arr.u32", V(g.ARRAY, [1, 2**32 - 1], g.UINT32)),
         ("arr.u64", V(g.ARRAY, [2**64 - 1, 0], g.UINT64)),
         ("arr.i64", V(g.ARRAY, [-2**63, 5], g.INT64)),
         ("arr.f64", V(g.ARRAY, [1e-300, -0.0], g.FLOAT64)),
         ("arr.bool", V(g.ARRAY, [True, False, True], g.BOOL)),
         ("arr.empty", V(g.ARRAY, [], g.UINT32)),
         ("arr.nested", V(g.ARRAY, [V(g.ARRAY, [1, 2, 3], g.UINT32),
                                    V(g.ARRAY, ["x", "yz"], g.STRING),
                                    V(g.ARRAY, [V(g.ARRAY, [-1], g.INT8)], g.ARRAY),
                                    V(g.ARRAY, [], g.FLOAT32)], g.ARRAY))]
    if alignment is not None:
        m.insert(1, ("general.alignment", V(g.UINT32, alignment)))
    return m


def tensors(rng):
    """Several tensors of each type; dims in ggml order (dims[0] contiguous)."""
    out = []
    f32 = rng.standard_normal(7 * 2 * 3).astype("<f4")
    f32[:6] = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45]
    out.append(("f32.3d", g.F32, [7, 2, 3], f32.tobytes()))
    out.append(("f32.vec", g.F32, [5], rng.standard_normal(5).astype("<f4").tobytes()))
    f16 = g.random_f16(rng, 5 * 4)
    f16[:6] = np.array([0x0000, 0x8000, 0x0001, 0x83FF, 0x7BFF, 0xFC00], np.uint16).view(np.float16)
    out.append(("f16.2d", g.F16, [5, 4], f16.tobytes()))
    bf16 = rng.integers(0, 65536, 6 * 3, dtype=np.uint16)
    bf16[:4] = [0x7FC1, 0xFF80, 0x0001, 0x8000]     # NaN with payload, -inf, subnormal, -0
    out.append(("bf16.2d", g.BF16, [6, 3], bf16.astype("<u2").tobytes()))
    for type_, name in ((g.Q8_0, "q8_0"), (g.Q4_0, "q4_0"), (g.Q4_1, "q4_1"), (g.Q5_0, "q5_0"),
                        (g.Q5_1, "q5_1"), (g.Q4_K, "q4_k"), (g.Q5_K, "q5_k"), (g.Q6_K, "q6_k"),
                        (g.Q2_K, "q2_k"), (g.Q3_K, "q3_k"), (g.IQ4_NL, "iq4_nl"),
                        (g.IQ4_XS, "iq4_xs")):
        _, blk, _ = g.GGML_TYPES[type_]
        out.append((name + ".edges", type_, [blk * 4, 2], g.edge_blocks(type_, 8, rng)))
        out.append((name + ".row", type_, [blk * 3], g.edge_blocks(type_, 3, rng)))
        out.append((name + ".3d", type_, [blk, 3, 2], g.edge_blocks(type_, 6, rng)))
    out.append(("empty", g.Q4_K, [256, 0], b""))
    return out


def expected_json_value(v):
    if v.type != g.ARRAY:
        return v.value
    items = [expected_json_value(i) for i in v.value] if v.elem == g.ARRAY else v.value
    return {"elem_type": g.TYPE_NAMES[v.elem], "items": items}


def check_file(dsinfer, path, meta, specs, version, alignment, work):
    infos = g.write_gguf(path, meta, specs, version=version)
    out_dir = os.path.join(work, os.path.basename(path) + ".npy")
    res = subprocess.run([dsinfer, "gguf-dump", path, "--out-dir", out_dir],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    ref = g.read_gguf(path)   # the independent reader, for the layout figures
    assert got["version"] == version and ref["version"] == version
    assert got["alignment"] == alignment == ref["alignment"], (got["alignment"], alignment)
    assert got["data_offset"] == ref["data_offset"] and got["data_offset"] % alignment == 0
    assert len(got["metadata"]) == len(meta)
    for entry, (key, v) in zip(got["metadata"], meta):
        want = {"key": key, "type": g.TYPE_NAMES[v.type], "value": expected_json_value(v)}
        assert entry == want, (entry, want)
    assert len(got["tensors"]) == len(specs)
    counts = {}
    for k, (t, info, spec) in enumerate(zip(got["tensors"], infos, specs)):
        name, type_, dims, raw = spec
        assert t == {"name": name, "type": g.GGML_TYPES[type_][0], "dims": dims,
                     "offset": info["offset"], "nbytes": len(raw)}, (t, info)
        want = g.tensor_f32(ref, ref["tensors"][k])
        assert bytes(g.tensor_raw(ref, ref["tensors"][k])) == raw, name
        have = np.load(os.path.join(out_dir, f"{k}.npy"))
        assert have.shape == want.shape == tuple(dims[::-1]), (name, have.shape, want.shape)
        diff = np.count_nonzero(have.view(np.uint32) != want.view(np.uint32))
        assert diff == 0, f"{name}: {diff} of {want.size} values differ from NumPy"
        tn = g.GGML_TYPES[type_][0]
        counts[tn] = counts.get(tn, 0) + want.size
    return counts


def main():
    dsinfer = sys.argv[1]
    rng = np.random.default_rng(13)
    total = {}
    with tempfile.TemporaryDirectory() as work:
        for version, alignment in ((3, None), (3, 64), (2, None)):
            path = os.path.join(work, f"v{version}_a{alignment}.gguf")
            counts = check_file(dsinfer, path, metadata(alignment), tensors(rng), version,
                                alignment or g.DEFAULT_ALIGNMENT, work)
            for k, n in counts.items():
                total[k] = total.get(k, 0) + n
        # The C++ error path through the CLI: a truncated copy names the culprit.
        with open(path, "rb") as f:
            data = f.read()
        cut = os.path.join(work, "cut.gguf")
        with open(cut, "wb") as f:
            f.write(data[:len(data) - 100])
        res = subprocess.run([dsinfer, "gguf-dump", cut], capture_output=True, text=True)
        assert res.returncode == 1 and "iq4_xs.3d" in res.stderr and "outside" in res.stderr, res.stderr
    print("bit-identical values per type:", ", ".join(f"{k} {n}" for k, n in sorted(total.items())))
    print(f"check_gguf: OK (3 files: v3 align 32, v3 align 64, v2; 31 or 32 metadata keys, "
          f"{len(tensors(np.random.default_rng(0)))} tensors each)")


if __name__ == "__main__":
    main()
