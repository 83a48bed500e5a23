"""Self-tests of the NumPy reference (plain unittest): every building block against its
definition or a known value, and end-to-end properties on small random checkpoints written with
our own safetensors writer.

Run: /usr/bin/python3 -m unittest discover -s tests/reference -p 'test_*.py'
"""

import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import dsv32_ref as ref  # noqa: E402
import np_write_checkpoint as writer  # noqa: E402
import safetensors_np as st  # noqa: E402

F32 = np.float32


def assert_rows_close(a, b, tol=1e-5):
    """Rows equal up to f32 rounding: max|a - b| ≤ tol · max|b| per row. The identities below
    (causality, DSA with a large top-k = dense) hold exactly in real arithmetic; NumPy's BLAS
    (OpenBLAS, installed for torch) may sum in an order that depends on the operands' shapes
    and alignment, so the same row computed twice can differ in its last bits."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    err = (np.abs(a - b).max(axis=-1) / np.abs(b).max(axis=-1)).max()
    assert err <= tol, f"rows differ by {err:.3g} of their max (tolerance {tol:g})"


def official_config():
    """docs/model.md §1.2 values (only the fields the RoPE/softmax-scale code reads)."""
    return ref.Config({"rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                                        "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}})


class E4M3Test(unittest.TestCase):
    def test_known_codes(self):
        t = st.E4M3_TABLE
        self.assertEqual(t[0x7E], 448.0)
        self.assertEqual(t[0xFE], -448.0)
        self.assertEqual(t[0x01], 2.0 ** -9)             # smallest subnormal
        self.assertEqual(t[0x07], 7 / 8 * 2.0 ** -6)     # largest subnormal
        self.assertEqual(t[0x08], 2.0 ** -6)             # smallest normal
        self.assertEqual(t[0x38], 1.0)
        self.assertEqual(t[0x39], 1.125)
        self.assertEqual(t[0x40], 2.0)
        self.assertEqual(t[0x7D], 416.0)
        self.assertEqual(t[0x00], 0.0)
        self.assertTrue(np.signbit(t[0x80]) and t[0x80] == 0.0)
        self.assertTrue(np.isnan(t[0x7F]) and np.isnan(t[0xFF]))
        self.assertEqual(int(np.isnan(t).sum()), 2)     # no other NaN, no infinity
        self.assertFalse(np.isinf(t).any())
        self.assertTrue(np.all(np.diff(t[:0x7F]) > 0))  # codes 0..126 increase strictly

    def test_round_trip_every_finite_code(self):
        codes = np.array([c for c in range(256) if c not in (0x7F, 0xFF)], dtype=np.uint8)
        np.testing.assert_array_equal(st.e4m3_encode(st.e4m3_decode(codes)), codes)

    def test_round_nearest_even_and_saturation(self):
        enc = lambda v: int(st.e4m3_encode(np.array([v]))[0])  # noqa: E731
        self.assertEqual(enc(1.0625), 0x38)        # tie between 1.0 (0x38) and 1.125 (0x39) -> even
        self.assertEqual(enc(1.1875), 0x3A)        # tie between 1.125 (0x39) and 1.25 (0x3A) -> even
        self.assertEqual(enc(1.07), 0x39)          # above the tie -> up
        self.assertEqual(enc(2.0 ** -10), 0x00)    # half the smallest subnormal -> 0 (even)
        self.assertEqual(enc(3 * 2.0 ** -10), 0x02)  # tie between 0x01 and 0x02 -> even
        self.assertEqual(enc(432.0), 0x7E)         # tie between 416 (0x7D) and 448 (0x7E) -> even
        self.assertEqual(enc(449.0), 0x7E)         # saturation, no infinity
        self.assertEqual(enc(1e30), 0x7E)
        self.assertEqual(enc(-1e30), 0xFE)
        self.assertEqual(enc(-1.0625), 0xB8)
        self.assertEqual(enc(float("nan")), 0x7F)

    def test_nearest_against_brute_force(self):
        rng = np.random.default_rng(0)
        x = rng.standard_normal(4000) * np.exp2(rng.integers(-12, 9, 4000))
        got = st.e4m3_decode(st.e4m3_encode(x)).astype(np.float64)
        finite = st.E4M3_TABLE[np.isfinite(st.E4M3_TABLE)].astype(np.float64)
        best = np.min(np.abs(np.clip(x, -448, 448)[:, None] - finite[None, :]), axis=1)
        np.testing.assert_array_equal(np.abs(np.clip(x, -448, 448) - got), best)


class BF16Test(unittest.TestCase):
    def test_round_nearest_even(self):
        x = np.array([1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8, 1 + 2.0 ** -8 + 2.0 ** -20, -3.0], dtype=F32)
        np.testing.assert_array_equal(st.bf16_round(x), np.array([1.0, 1 + 2.0 ** -6, 1 + 2.0 ** -7, -3.0], F32))
        self.assertEqual(int(st.bf16_encode(np.array([1.0], F32))[0]), 0x3F80)
        self.assertTrue(np.isnan(st.bf16_round(np.array([np.nan], F32))[0]))


class SafetensorsTest(unittest.TestCase):
    def test_round_trip_all_dtypes(self):
        rng = np.random.default_rng(1)
        tensors = {
            "a.f32": ("F32", [3, 5], rng.standard_normal((3, 5)).astype(F32)),
            "b.bf16": ("BF16", [7], st.bf16_encode(rng.standard_normal(7))),
            "c.f16": ("F16", [2, 2], rng.standard_normal((2, 2)).astype(np.float16)),
            "d.fp8": ("F8_E4M3", [3, 3], st.e4m3_encode(rng.standard_normal((3, 3)))),
            "e.i64": ("I64", [4], np.array([-1, 0, 2 ** 40, 7], dtype=np.int64)),
            "f.i32": ("I32", [1], np.array([-5], dtype=np.int32)),
            "g.u8": ("U8", [0], np.zeros(0, dtype=np.uint8)),
        }
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "x.safetensors")
            st.write_safetensors(path, tensors, metadata={"format": "pt"})
            with open(path, "rb") as f:
                blob = f.read()
            (n,) = struct.unpack("<Q", blob[:8])
            self.assertEqual((8 + n) % 8, 0)
            header = json.loads(blob[8:8 + n].decode())
            self.assertEqual(header["__metadata__"], {"format": "pt"})
            self.assertEqual(header["d.fp8"]["dtype"], "F8_E4M3")
            f = st.SafetensorsFile(path)
            self.assertEqual(f.metadata, {"format": "pt"})
            for name, (dtype, shape, raw) in tensors.items():
                self.assertEqual(f.info(name)["dtype"], dtype)
                self.assertEqual(list(f.raw(name).shape), shape)
                self.assertEqual(bytes(f.raw_bytes(name)), np.ascontiguousarray(raw).tobytes())
            np.testing.assert_array_equal(f.f32("b.bf16"), st.bf16_decode(tensors["b.bf16"][2]))
            np.testing.assert_array_equal(f.f32("d.fp8"), st.E4M3_TABLE[tensors["d.fp8"][2]])

    def test_truncated_file_is_an_error(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "bad.safetensors")
            with open(path, "wb") as f:
                f.write(struct.pack("<Q", 1000) + b"{}")
            with self.assertRaisesRegex(ValueError, "header length"):
                st.SafetensorsFile(path)

    def test_index_resolution_and_dequant(self):
        cfg = json.loads(json.dumps(writer.SMALL_CONFIG))
        with tempfile.TemporaryDirectory() as d:
            written = writer.write_checkpoint(d, cfg, seed=3, shards=2)
            files = st.CheckpointFiles(d)
            self.assertEqual(sorted(written), files.names())
            self.assertEqual(len({f.path for f in files.where.values()}), 2)
            w = ref.Weights(d, ref.Config(cfg))
            name = "model.layers.0.mlp.down_proj"           # [160, 136]: blocks (1, 1) exist
            dense = w.linear(name)
            q = written[name + ".weight"][2]
            s = written[name + ".weight_scale_inv"][2]
            self.assertEqual(list(s.shape), [2, 2])
            self.assertEqual(dense[150, 130], F32(st.E4M3_TABLE[q[150, 130]] * s[1, 1]))
            self.assertEqual(dense[5, 130], F32(st.E4M3_TABLE[q[5, 130]] * s[0, 1]))
            self.assertEqual(dense[150, 3], F32(st.E4M3_TABLE[q[150, 3]] * s[1, 0]))


class Fnv1aTest(unittest.TestCase):
    def test_known_vectors(self):
        import check_inspect
        self.assertEqual(check_inspect.fnv1a64(b""), 0xCBF29CE484222325)
        self.assertEqual(check_inspect.fnv1a64(b"a"), 0xAF63DC4C8601EC8C)
        self.assertEqual(check_inspect.fnv1a64(b"foobar"), 0x85944171F73967E8)


class RopeTest(unittest.TestCase):
    def test_yarn_freqs_match_model_md_table(self):
        f = ref.yarn_freqs(official_config())
        self.assertEqual(f.dtype, F32)
        self.assertEqual(len(f), 32)
        expect = {0: 1.0, 1: 0.749894, 11: 0.0390069, 22: 1.77828e-4, 23: 3.33380e-5, 31: 3.33380e-6}
        for i, v in expect.items():
            self.assertAlmostEqual(float(f[i]) / v, 1.0, delta=1e-5, msg=f"freqs[{i}]")
        self.assertAlmostEqual(float(f[16]), 0.0055, delta=0.0001)
        base = F32(1) / (F32(10000) ** (np.arange(0, 64, 2, dtype=F32) / F32(64)))
        np.testing.assert_array_equal(f[:11], base[:11])       # i <= 10 unchanged (low = 10)
        np.testing.assert_array_equal(f[23:], base[23:] / F32(40))  # i >= 23 divided by 40

    def test_softmax_scale(self):
        self.assertAlmostEqual(float(ref.softmax_scale(official_config())), 0.135233779, delta=2e-8)
        plain = ref.Config({})
        self.assertAlmostEqual(float(ref.softmax_scale(plain)), 192 ** -0.5, delta=1e-8)

    def test_layouts_differ_and_preserve_norms(self):
        cfg = official_config()
        rng = np.random.default_rng(2)
        pos = np.array([0, 1, 7, 300, 5000])
        cos, sin = ref.rope_tables(cfg, pos)
        x = rng.standard_normal((5, 3, 64)).astype(F32)
        a = ref.rope_interleaved(x, cos, sin)
        b = ref.rope_halves(x, cos, sin)
        np.testing.assert_array_equal(a[0], x[0])             # position 0 is the identity
        np.testing.assert_array_equal(b[0], x[0])
        self.assertGreater(np.abs(a[1:] - b[1:]).max(), 0.1)
        for y in (a, b):
            np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)
        # The interleaved pairs are (2j, 2j+1): rotating by θ = pos·freq[j] in that plane.
        j = 5
        th = np.float64(F32(pos[3]) * ref.yarn_freqs(cfg)[j])
        self.assertAlmostEqual(float(a[3, 0, 2 * j]), x[3, 0, 2 * j] * math.cos(th) - x[3, 0, 2 * j + 1] * math.sin(th), delta=1e-5)
        self.assertAlmostEqual(float(b[3, 0, j + 32]), x[3, 0, j] * math.sin(th) + x[3, 0, j + 32] * math.cos(th), delta=1e-5)

    def test_halves_only_touch_the_first_d_dims(self):
        cfg = official_config()
        cos, sin = ref.rope_tables(cfg, np.array([9]))
        x = np.random.default_rng(3).standard_normal((1, 2, 128)).astype(F32)
        y = ref.rope_halves(x, cos, sin)
        np.testing.assert_array_equal(y[..., 64:], x[..., 64:])
        self.assertGreater(np.abs(y[..., :64] - x[..., :64]).max(), 0.01)

    def test_relative_position(self):
        cfg = official_config()
        rng = np.random.default_rng(4)
        q, k = rng.standard_normal((2, 1, 64)).astype(F32)
        dots = []
        for m, n in ((10, 3), (110, 103)):
            c, s = ref.rope_tables(cfg, np.array([m, n]))
            qq = ref.rope_interleaved(np.stack([q[0], q[0]]), c, s)
            kk = ref.rope_interleaved(np.stack([k[0], k[0]]), c, s)
            dots.append(float(qq[0] @ kk[1]))
        self.assertAlmostEqual(dots[0], dots[1], delta=1e-4)


class HadamardAndQuantTest(unittest.TestCase):
    def test_orthonormal(self):
        for d in (1, 2, 4, 32, 128):
            h = ref.hadamard_matrix(d)
            np.testing.assert_array_equal(h @ h.T, d * np.eye(d, dtype=F32))
            np.testing.assert_array_equal(h, h.T)
        h = ref.hadamard_matrix(128)
        self.assertEqual(h[3, 5], -1.0)    # popcount(3 & 5) = 1
        self.assertEqual(h[3, 7], 1.0)     # popcount(3 & 7) = 2
        x = np.random.default_rng(5).standard_normal((4, 128)).astype(F32)
        np.testing.assert_allclose(np.linalg.norm(ref.hadamard_transform(x), axis=-1),
                                   np.linalg.norm(x, axis=-1), rtol=1e-5)
        with self.assertRaisesRegex(ValueError, "power of two"):
            ref.hadamard_matrix(96)

    def test_ue8m0_scales(self):
        amax = np.array([448.0, 449.0, 224.0, 1.0, 0.0, 1e-5], dtype=F32)
        s = ref.ue8m0_scale(amax)
        np.testing.assert_array_equal(s, np.array([1.0, 2.0, 0.5, 2.0 ** -8, 2.0 ** -22, 2.0 ** -22], F32))

    def test_act_quant(self):
        rng = np.random.default_rng(6)
        x = (rng.standard_normal((3, 300)) * np.array([[1e-3], [1.0], [1e3]])).astype(F32)
        codes, scales = ref.act_quant(x, 128)
        self.assertEqual(scales.shape, (3, 3))                # 128 + 128 + 44
        for r in range(3):
            for b in range(3):
                g = x[r, b * 128:(b + 1) * 128]
                self.assertEqual(scales[r, b], ref.ue8m0_scale(np.array([np.abs(g).max()], F32))[0])
                self.assertLessEqual(np.abs(g / scales[r, b]).max(), 448.0)
        y = ref.act_dequant(codes, scales, 128)
        # e4m3 has 3 mantissa bits: relative error <= 2^-4 for normal values.
        big = np.abs(x) > np.repeat(scales, 128, -1)[:, :300] * 2 ** -6
        np.testing.assert_array_less(np.abs(y - x)[big], np.abs(x)[big] * 2 ** -4 + 1e-30)


class AttentionTest(unittest.TestCase):
    def test_absorbed_equals_naive_mha(self):
        rng = np.random.default_rng(7)
        n, h, nope, rope, v, r = 9, 4, 16, 8, 12, 32
        args = [rng.standard_normal(s).astype(F32) for s in
                ((n, h, nope), (n, h, rope), (n, r), (n, rope), (h, nope, r), (h, v, r))]
        sel = rng.random((n, n)) < 0.5
        sel[np.arange(n), rng.integers(0, n, n)] = True       # every row non-empty
        a = ref.mla_attention_absorbed(*args, sel, F32(0.2))
        b = ref.mla_attention_naive(*args, sel, F32(0.2))
        self.assertEqual(a.shape, (n, h, v))
        # f32 summation order differs; tolerance relative to the output scale.
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())
        sel2 = sel.copy()
        sel2[3] = ~sel2[3] | (np.arange(n) == 0)
        self.assertGreater(np.abs(ref.mla_attention_absorbed(*args, sel2, F32(0.2))[3] - a[3]).max(), 1e-3)

    def test_topk_ties_go_to_lower_index(self):
        scores = np.array([[1, 2, 2, 2, 0, 5]], dtype=F32)
        sel = ref.topk_select(scores, [5], 3)
        np.testing.assert_array_equal(np.nonzero(sel[0])[0], [1, 2, 5])
        sel = ref.topk_select(scores, [3], 3)                 # k = min(3, 4) of t <= 3
        np.testing.assert_array_equal(np.nonzero(sel[0])[0], [1, 2, 3])
        sel = ref.topk_select(scores, [1], 3)                 # p + 1 <= k: all of [0, p]
        np.testing.assert_array_equal(np.nonzero(sel[0])[0], [0, 1])

    def test_index_scores_definition(self):
        rng = np.random.default_rng(8)
        n, hi, di, block = 5, 3, 256, 128
        q = rng.standard_normal((n, hi, di)).astype(F32)
        k = rng.standard_normal((n, di)).astype(F32)
        w = rng.standard_normal((n, hi)).astype(F32)
        q8, q_s = ref.act_quant(q, block)
        k8, k_s = ref.act_quant(k, block)
        got = ref.index_scores(st.e4m3_decode(q8), q_s, st.e4m3_decode(k8), k_s, w, block)
        qd = ref.act_dequant(q8, q_s, block).astype(np.float64)
        kd = ref.act_dequant(k8, k_s, block).astype(np.float64)
        want = np.einsum("nh,nht->nt", w, np.maximum(np.einsum("nhd,td->nht", qd, kd), 0))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


class GateTest(unittest.TestCase):
    def test_group_limited_routing(self):
        # 8 experts in 4 groups of 2; keep 2 groups, pick 2 experts.
        s = np.array([[0.9, 0.1, 0.6, 0.6, 0.5, 0.55, 0.2, 0.2]], dtype=F32)
        zero = np.zeros(8, F32)
        idx, w = ref.route(s, zero, True, 4, 2, 2, True, 2.5)
        # group sums 1.0, 1.2, 1.05, 0.4 -> groups 1, 2 kept; expert 0 (the best) is excluded.
        np.testing.assert_array_equal(idx, [[2, 3]])
        np.testing.assert_allclose(w, [[1.25, 1.25]], rtol=1e-6)
        idx, _ = ref.route(s, zero, True, 1, 1, 2, True, 2.5)       # no group limitation
        np.testing.assert_array_equal(idx, [[0, 2]])
        # The bias moves the selection, the weights still come from s.
        bias = np.array([0, 0, 0, 0, 0.3, 0.3, 0, 0], F32)
        idx, w = ref.route(s, bias, True, 4, 2, 2, True, 1.0)
        np.testing.assert_array_equal(idx, [[4, 5]])
        np.testing.assert_allclose(w, [[0.5 / 1.05, 0.55 / 1.05]], rtol=1e-6)
        idx, w = ref.route(s, bias, True, 4, 2, 2, False, 2.0)      # no normalisation
        np.testing.assert_allclose(w, [[1.0, 1.1]], rtol=1e-6)

    def test_without_bias_groups_ranked_by_maximum(self):
        # DeepSeek's Gate without a bias: group score = amax. Same scores as above: group maxima
        # 0.9, 0.6, 0.55, 0.2 -> groups 0, 1 kept (the top-2 sums keep 1, 2), experts 0 and 2
        # (0.6 tie -> lower id).
        s = np.array([[0.9, 0.1, 0.6, 0.6, 0.5, 0.55, 0.2, 0.2]], dtype=F32)
        idx, w = ref.route(s, np.zeros(8, F32), False, 4, 2, 2, True, 2.5)
        np.testing.assert_array_equal(idx, [[0, 2]])
        np.testing.assert_allclose(w, [[2.5 * 0.9 / 1.5, 2.5 * 0.6 / 1.5]], rtol=1e-6)
        m = ref.router_margins(s, np.zeros(8, F32), False, 4, 2, 2)
        self.assertAlmostEqual(m["group_gap_min"], 0.05, delta=1e-6)   # 0.6 (kept) - 0.55

    def test_margin_diagnostics(self):
        s = np.array([[0.9, 0.1, 0.6, 0.6, 0.5, 0.55, 0.2, 0.2]], dtype=F32)
        m = ref.router_margins(s, np.zeros(8, F32), True, 4, 2, 2)
        self.assertAlmostEqual(m["group_gap_min"], 0.05, delta=1e-6)   # 1.05 (kept) - 1.0 (dropped)
        self.assertAlmostEqual(m["expert_gap_min"], 0.05, delta=1e-6)  # 0.6 (chosen) - 0.55
        t = ref.topk_margins(np.array([[3, 1, 2, 2]], dtype=F32), [3], 2)
        self.assertEqual((t["topk_exact_ties"], t["topk_rows"]), (1, 1))

    def test_ties_lower_group_and_expert(self):
        s = np.full((1, 8), 0.5, dtype=F32)
        idx, w = ref.route(s, np.zeros(8, F32), True, 4, 2, 3, True, 3.0)
        np.testing.assert_array_equal(idx, [[0, 1, 2]])
        np.testing.assert_allclose(w, [[1.0, 1.0, 1.0]], rtol=1e-6)


def _rotate_pair(a, b, theta):
    return a * math.cos(theta) - b * math.sin(theta), a * math.sin(theta) + b * math.cos(theta)


def _scalar_e4m3(v):
    """Nearest e4m3 value by exhaustive search (ties -> even code), saturating."""
    v = max(-448.0, min(448.0, v))
    best = None
    for code in range(256):
        c = float(st.E4M3_TABLE[code])
        if math.isnan(c):
            continue
        key = (abs(v - c), code % 2, -(math.copysign(1, c) == math.copysign(1, v)))
        if best is None or key < best[0]:
            best = (key, c)
    return best[1]


class CompositionTest(unittest.TestCase):
    """Model.indexer / Model.mla against scalar loops written from docs/numerics.md §4/§5 (different
    code: explicit pair rotations, popcount Hadamard, exhaustive e4m3 rounding, per-head sums)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="dsv32_comp_")
        cfg = json.loads(json.dumps(writer.SMALL_CONFIG))
        writer.write_checkpoint(cls.tmp, cfg, seed=21, shards=1)
        cls.model = ref.Model(cls.tmp)
        rng = np.random.default_rng(22)
        cls.pos = np.array([0, 1, 2, 3, 60])
        cls.x = rng.standard_normal((5, cfg["hidden_size"])).astype(F32)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def test_indexer(self):
        m, c = self.model, self.model.cfg
        p = "model.layers.0.self_attn."
        qr = m.q_proj(p, self.x)[1].astype(np.float64)
        h_i, d_i, half = c.index_n_heads, c.index_head_dim, c.qk_rope_head_dim // 2
        wq, wk = m.w.linear(p + "indexer.wq_b").astype(np.float64), m.w.linear(p + "indexer.wk").astype(np.float64)
        wp = m.w.linear(p + "indexer.weights_proj").astype(np.float64)
        kw, kb = m.w.vector(p + "indexer.k_norm.weight"), m.w.vector(p + "indexer.k_norm.bias")
        freqs = ref.yarn_freqs(c)

        def prep(v, pos):  # halves RoPE on the first rope dims, Hadamard, e4m3 quantisation
            v = list(v)
            for j in range(half):
                v[j], v[j + half] = _rotate_pair(v[j], v[j + half], float(F32(pos) * freqs[j]))
            y = [sum(v[b] * (-1) ** bin(a & b).count("1") for b in range(d_i)) / math.sqrt(d_i) for a in range(d_i)]
            scale = 2.0 ** math.ceil(math.log2(max(max(abs(t) for t in y), 1e-4) / 448))
            return [_scalar_e4m3(t / scale) for t in y], scale

        keys = []
        for i, pos in enumerate(self.pos):
            k = wk @ self.x[i].astype(np.float64)
            k = (k - k.mean()) / math.sqrt(k.var() + 1e-6) * kw + kb
            keys.append(prep(k, pos))
        got = m.indexer(p, self.x, qr.astype(F32), self.pos)
        for i, pos in enumerate(self.pos):
            q = (wq @ qr[i]).reshape(h_i, d_i)
            w = wp @ self.x[i].astype(np.float64) / math.sqrt(h_i) / math.sqrt(d_i)
            heads = [prep(q[h], pos) for h in range(h_i)]
            for t in range(i + 1):
                k8, ks = keys[t]
                want = sum(w[h] * max(0.0, qs * ks * sum(a * b for a, b in zip(q8, k8))) for h, (q8, qs) in enumerate(heads))
                self.assertAlmostEqual(float(got[i, t]), want, delta=1e-4 * (1 + abs(want)), msg=f"I({i},{t})")

    def test_mla_dense(self):
        m, c = self.model, self.model.cfg
        p = "model.layers.0.self_attn."
        n_heads, nope, rope, v_dim, r = c.num_attention_heads, c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim, c.kv_lora_rank
        freqs = ref.yarn_freqs(c)
        x = self.x.astype(np.float64)
        wqa, wqb = m.w.linear(p + "q_a_proj").astype(np.float64), m.w.linear(p + "q_b_proj").astype(np.float64)
        wkva, wkvb = m.w.linear(p + "kv_a_proj_with_mqa").astype(np.float64), m.w.linear(p + "kv_b_proj").astype(np.float64)
        wo = m.w.linear(p + "o_proj").astype(np.float64)
        qn, kvn = m.w.vector(p + "q_a_layernorm.weight"), m.w.vector(p + "kv_a_layernorm.weight")
        rms = lambda v, w: v / math.sqrt(np.mean(v * v) + 1e-6) * w  # noqa: E731

        def rope_interleaved(v, pos):
            v = list(v)
            for j in range(rope // 2):
                v[2 * j], v[2 * j + 1] = _rotate_pair(v[2 * j], v[2 * j + 1], float(F32(pos) * freqs[j]))
            return np.array(v)

        keys, values, queries = [], [], []
        for i, pos in enumerate(self.pos):
            kv = wkva @ x[i]
            latent = rms(kv[:r], kvn)
            k_pe = rope_interleaved(kv[r:], pos)                    # rope part LAST in MLA
            per_head = wkvb.reshape(n_heads, nope + v_dim, r) @ latent
            keys.append([np.concatenate([per_head[h, :nope], k_pe]) for h in range(n_heads)])
            values.append([per_head[h, nope:] for h in range(n_heads)])
            q = (wqb @ rms(wqa @ x[i], qn)).reshape(n_heads, nope + rope)
            queries.append([np.concatenate([q[h, :nope], rope_interleaved(q[h, nope:], pos)]) for h in range(n_heads)])
        scale = float(ref.softmax_scale(c))
        want = []
        for i in range(len(self.pos)):   # dense causal: keys 0..i (the call's rows)
            out = []
            for h in range(n_heads):
                s = np.array([queries[i][h] @ keys[t][h] * scale for t in range(i + 1)])
                pr = np.exp(s - s.max())
                pr /= pr.sum()
                out.append(sum(pr[t] * values[t][h] for t in range(i + 1)))
            want.append(wo @ np.concatenate(out))
        m.attention = "dense"
        got = m.mla(0, self.x, self.pos)
        m.attention = "dsa"
        np.testing.assert_allclose(got, np.array(want), rtol=1e-4, atol=1e-4 * np.abs(want).max())


    def test_moe_and_dense_ffn(self):
        m, c = self.model, self.model.cfg
        x = self.x.astype(np.float64)
        silu = lambda v: v / (1 + np.exp(-v))  # noqa: E731

        def swiglu(prefix, v):  # down( silu(gate · v) * (up · v) )
            g = m.w.linear(prefix + "gate_proj").astype(np.float64) @ v
            u = m.w.linear(prefix + "up_proj").astype(np.float64) @ v
            return m.w.linear(prefix + "down_proj").astype(np.float64) @ (silu(g) * u)

        np.testing.assert_allclose(m.ffn(0, self.x), np.array([swiglu("model.layers.0.mlp.", v) for v in x]),
                                   rtol=1e-4, atol=1e-5)
        p = "model.layers.1.mlp."
        gate = m.w.vector(p + "gate.weight").astype(np.float64)
        bias = m.w.vector(p + "gate.e_score_correction_bias").astype(np.float64)
        want = []
        for v in x:
            s = 1 / (1 + np.exp(-(gate @ v)))
            b = s + bias
            groups = b.reshape(c.n_group, -1)
            gscore = np.sort(groups, axis=1)[:, -2:].sum(1)
            kept = sorted(range(c.n_group), key=lambda g: (-gscore[g], g))[:c.topk_group]
            per = c.n_routed_experts // c.n_group
            cand = [e for e in range(c.n_routed_experts) if e // per in kept]
            chosen = sorted(sorted(cand, key=lambda e: (-b[e], e))[:c.num_experts_per_tok])
            w = s[chosen] / s[chosen].sum() * c.routed_scaling_factor
            y = sum(wi * swiglu(f"{p}experts.{e}.", v) for wi, e in zip(w, chosen))
            want.append(y + swiglu(p + "shared_experts.", v))
        np.testing.assert_allclose(m.ffn(1, self.x), np.array(want), rtol=1e-4, atol=1e-5)


class EndToEndTest(unittest.TestCase):
    """Forward passes on small random checkpoints written with our own writer."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="dsv32_ref_")
        cls.cfg = json.loads(json.dumps(writer.SMALL_CONFIG))
        cls.dir = os.path.join(cls.tmp, "small")
        writer.write_checkpoint(cls.dir, cls.cfg, seed=11, shards=2, f32_norms=True)
        cls.ids = list(np.random.default_rng(9).integers(0, cls.cfg["vocab_size"], 24))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def run_model(self, folder=None, **kw):
        model = ref.Model(folder or self.dir, **kw)
        logits, g = model.forward(self.ids)
        return model, logits, g

    def test_logits_shape_and_magnitude(self):
        model, logits, g = self.run_model()
        self.assertEqual(logits.shape, (24, self.cfg["vocab_size"]))
        self.assertEqual(logits.dtype, F32)
        self.assertTrue(np.isfinite(logits).all())
        for r in model.hidden_rms:
            self.assertTrue(0.1 < r < 10, model.hidden_rms)

    def test_dsa_with_large_topk_equals_dense(self):
        _, dense, _ = self.run_model(attention="dense")
        _, big, _ = self.run_model(attention="dsa", index_topk=24)
        assert_rows_close(big, dense)
        _, sparse, _ = self.run_model(attention="dsa")  # index_topk 8 < 24 tokens
        assert_rows_close(sparse[:8], dense[:8])        # rows p < 8 select all of [0, p]
        self.assertGreater(np.abs(sparse[8:] - dense[8:]).max(), 1e-3)

    def test_causality(self):
        _, a, g = self.run_model()
        model = ref.Model(self.dir)
        ids2 = self.ids[:-1] + [(self.ids[-1] + 1) % self.cfg["vocab_size"]]
        b, g2 = model.forward(ids2)
        assert_rows_close(a[:-1], b[:-1])
        self.assertGreater(np.abs(a[-1] - b[-1]).max(), 1e-4)
        m1 = ref.Model(self.dir).mtp(self.ids, g)
        m2 = model.mtp(ids2, g2)
        self.assertEqual(m1.shape, (23, self.cfg["vocab_size"]))
        assert_rows_close(m1[:-1], m2[:-1])
        self.assertGreater(np.abs(m1[-1] - m2[-1]).max(), 1e-4)

    def test_mtp_concatenation_is_embedding_first(self):
        # Zero the second (hidden-state) half of eh_proj: MTP logits must then ignore g, the
        # main model's final-norm output, and still depend on the next token's embedding.
        model = ref.Model(self.dir)
        d = self.cfg["hidden_size"]
        linear = model.w.linear

        def patched(prefix):
            w = linear(prefix)
            if prefix.endswith("eh_proj"):
                w = w.copy()
                w[:, d:] = 0
            return w
        model.w.linear = patched
        _, g = ref.Model(self.dir).forward(self.ids)
        a = model.mtp(self.ids, g)
        b = model.mtp(self.ids, np.random.default_rng(0).standard_normal(g.shape).astype(F32))
        np.testing.assert_array_equal(a, b)
        ids2 = list(self.ids)
        ids2[5] = (ids2[5] + 1) % self.cfg["vocab_size"]
        c = model.mtp(ids2, g)
        self.assertGreater(np.abs(c[4] - a[4]).max(), 1e-4)   # row 4 reads t_5's embedding

    def test_kv_cache_modes(self):
        # Dense attention: with DSA a tiny perturbation can flip a near-tied top-k choice.
        _, f32, _ = self.run_model(attention="dense")
        rel = {}
        for mode, bound in (("bf16", 0.02), ("fp8", 0.4)):
            _, other, _ = self.run_model(attention="dense", kv_cache=mode)
            rel[mode] = np.abs(other - f32).max() / np.abs(f32).max()
            self.assertGreater(rel[mode], 0, mode)
            self.assertLess(rel[mode], bound, mode)
        self.assertLess(rel["bf16"], rel["fp8"])            # 8 mantissa bits beat 4

    def test_dumps_and_cli(self):
        dump = os.path.join(self.tmp, "dump")
        out, mtp = os.path.join(self.tmp, "l.npy"), os.path.join(self.tmp, "m.npy")
        subprocess.run([sys.executable, os.path.join(HERE, "dsv32_ref.py"), "--model", self.dir,
                        "--ids", ",".join(map(str, self.ids)), "--out", out, "--mtp-out", mtp,
                        "--dump-dir", dump], check=True)
        model, logits, g = self.run_model()
        np.testing.assert_array_equal(np.load(out), logits)
        np.testing.assert_array_equal(np.load(mtp), model.mtp(self.ids, g))
        n, d = 24, self.cfg["hidden_size"]
        expect = {"L0.attn_in": (n, d), "L0.q_latent": (n, 96), "L0.kv_latent": (n, 64), "L0.k_pe": (n, 16),
                  "L0.index_scores": (n, n), "L0.topk": (n, 8), "L0.attn_out": (n, d), "L0.ffn_out": (n, d),
                  "L1.router_experts": (n, 3), "L1.router_weights": (n, 3), "L2.hidden": (n, d),
                  "L3.hidden": (n - 1, d), "final_norm": (n, d), "logits": (n, 300)}
        for name, shape in expect.items():
            self.assertEqual(np.load(os.path.join(dump, name + ".npy")).shape, shape, name)
        self.assertFalse(os.path.exists(os.path.join(dump, "L0.router_experts.npy")))  # dense layer
        topk = np.load(os.path.join(dump, "L1.topk.npy"))
        self.assertEqual(topk.dtype, np.int32)
        np.testing.assert_array_equal(topk[2], [0, 1, 2, -1, -1, -1, -1, -1])
        scores = np.load(os.path.join(dump, "L1.index_scores.npy"))
        self.assertTrue(np.isneginf(scores[2, 3:]).all() and np.isfinite(scores[2, :3]).all())
        # The selected set is the top 8 of the row's scores.
        row = scores[20, :21]
        self.assertGreaterEqual(row[topk[20]].min(), np.delete(row, topk[20]).max())
        # The routed output is the weighted expert sum: weights are positive, normalised · 2.5.
        w = np.load(os.path.join(dump, "L1.router_weights.npy"))
        np.testing.assert_allclose(w.sum(-1), 2.5, rtol=1e-6)
        experts = np.load(os.path.join(dump, "L1.router_experts.npy"))
        self.assertTrue((np.diff(experts, axis=-1) > 0).all())       # ascending ids
        # The residual stream: hidden_L = (hidden_{L-1} + attn_out_L) + ffn_out_L, exactly.
        ld = lambda name: np.load(os.path.join(dump, name + ".npy"))  # noqa: E731
        np.testing.assert_array_equal(ld("L1.hidden"), (ld("L0.hidden") + ld("L1.attn_out")) + ld("L1.ffn_out"))

    def test_bf16_numerics(self):
        """numerics="bf16" (docs/numerics.md "bf16 numerics"): the activation of every listed GEMM
        -- and of no other product -- is rounded to bf16 before it; the value against an f64 product
        of an independently rounded input; the logits move, by the rounding's size only."""
        # DSA with index_topk = 24 tokens: the indexer runs, every row selects all its keys (no
        # near-tied choice can flip).
        model = ref.Model(self.dir, numerics="bf16", index_topk=24)
        called = set()
        proj = model.proj

        def spy(x, prefix):
            called.add(prefix.split(".")[-1])
            return proj(x, prefix)
        model.proj = spy
        logits, _ = model.forward(self.ids)
        self.assertEqual(called, {"q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "o_proj", "wq_b",
                                  "wk", "gate_proj", "up_proj", "down_proj"})
        _, f32, _ = self.run_model(index_topk=24)
        rel = np.abs(logits - f32).max() / np.abs(f32).max()
        self.assertGreater(rel, 0)
        self.assertLess(rel, 0.02)  # as the bf16 KV cache above: one rounding (≤ 2^-8) per value

        # One GEMM: bf16(x) by RNE to 8 significant bits computed in f64 (np.round ties to even).
        prefix = "model.layers.1.self_attn.q_a_proj"
        x = np.random.default_rng(5).standard_normal((4, self.cfg["hidden_size"])).astype(F32)
        _, e = np.frexp(x.astype(np.float64))
        quantum = np.ldexp(1.0, e - 8)
        w = model.w.linear(prefix).astype(np.float64)
        want = (np.round(x / quantum) * quantum) @ w.T
        magnitude = np.abs(np.round(x / quantum) * quantum) @ np.abs(w).T
        k = x.shape[1] + 1  # f32: K - 1 sums, one product, one dequantisation rounding per term
        gamma = k * 2.0 ** -24 / (1 - k * 2.0 ** -24)
        got = proj(x, prefix)
        self.assertTrue((np.abs(got - want) <= gamma * magnitude + 1e-30).all())
        unrounded = ref.Model(self.dir).proj(x, prefix)
        self.assertGreater((np.abs(unrounded - want) - gamma * magnitude).max(), 0)  # rounding visible
        with self.assertRaisesRegex(ValueError, "numerics"):
            ref.Model(self.dir, numerics="f16")

    def test_variants_without_q_lora_indexer_mtp(self):
        cfg = json.loads(json.dumps(self.cfg))
        cfg.update(q_lora_rank=None, index_n_heads=None, index_head_dim=None, index_topk=None,
                   num_nextn_predict_layers=0, rope_scaling=None, n_shared_experts=0)
        folder = os.path.join(self.tmp, "variant")
        written = writer.write_checkpoint(folder, cfg, seed=12, shards=1)
        self.assertIn("model.layers.0.self_attn.q_proj.weight", written)
        self.assertFalse(any("indexer" in k or "layers.3." in k or "shared_experts" in k for k in written))
        model, logits, _ = self.run_model(folder)
        self.assertTrue(np.isfinite(logits).all())
        self.assertFalse(model.has_mtp())

    def test_missing_tensor_is_named(self):
        folder = os.path.join(self.tmp, "missing")
        writer.write_checkpoint(folder, self.cfg, seed=13, shards=2, omit=["model.layers.1.self_attn.kv_a_layernorm.weight"])
        with self.assertRaisesRegex(KeyError, "model.layers.1.self_attn.kv_a_layernorm.weight"):
            self.run_model(folder)


if __name__ == "__main__":
    unittest.main()
