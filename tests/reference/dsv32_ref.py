#!/usr/bin/python3
"""NumPy reference of the DeepSeek-V3.2 forward pass (MLA + DSA indexer + MoE + MTP), f32.

Written from docs/model.md and docs/numerics.md (the f32 numerics contract) alone; it is the truth the
C++ engine's `--numerics f32` mode is tested against. With `numerics="bf16"` (`--numerics bf16`) it
rounds the activations to bf16 at the GEMM inputs docs/numerics.md "bf16 numerics" lists, the truth of
the engine's bf16 mode. Clarity over speed: the whole token sequence
is processed at once from position 0, each query row p attending over its own selected key set S_p
(dense: S_p = [0, p]; DSA: the indexer's top-k of [0, p]).

Section references (§) are to docs/model.md; "N§k" is item k of docs/numerics.md.

CLI:
  /usr/bin/python3 dsv32_ref.py --model DIR --ids 5,17,3 --out logits.npy
      [--attention dsa|dense] [--index-topk K] [--kv-cache f32|bf16|fp8]
      [--numerics f32|bf16]
      [--mtp-out mtp.npy] [--dump-dir DIR]
"""

import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_np import CheckpointFiles, bf16_round, e4m3_decode, e4m3_encode, to_f32  # noqa: E402

F32 = np.float32


# =============================================================================================
# Configuration (docs/model.md §1.2: HF config.json names)
# =============================================================================================
# Absent fields take the official DeepSeek-V3.2 values, except: absent `rope_scaling` = plain
# RoPE, `q_lora_rank: null` = no q low-rank path (q_proj), absent `index_*` = no indexer.
DEFAULTS = dict(
    vocab_size=129280, hidden_size=7168, intermediate_size=18432, moe_intermediate_size=2048,
    num_hidden_layers=61, num_nextn_predict_layers=1, num_attention_heads=128,
    q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
    n_routed_experts=256, n_shared_experts=1, num_experts_per_tok=8, first_k_dense_replace=3,
    moe_layer_freq=1, n_group=8, topk_group=4, scoring_func="sigmoid", norm_topk_prob=True,
    routed_scaling_factor=2.5, rms_norm_eps=1e-6, rope_theta=10000.0, rope_scaling=None,
    index_n_heads=None, index_head_dim=None, index_topk=None, quantization_config=None,
)


class Config:
    def __init__(self, d):
        for key, value in DEFAULTS.items():
            setattr(self, key, d.get(key, value))
        if self.scoring_func != "sigmoid":
            raise ValueError(f"config.json: scoring_func '{self.scoring_func}' is not supported (only sigmoid)")
        q = self.quantization_config or {}
        self.weight_block = list(q.get("weight_block_size", [128, 128]))

    @staticmethod
    def load(folder):
        with open(os.path.join(folder, "config.json")) as f:
            return Config(json.load(f))

    @property
    def qk_head_dim(self):
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def yarn(self):
        return self.rope_scaling is not None and self.rope_scaling.get("type", self.rope_scaling.get("rope_type")) == "yarn"

    def is_moe_layer(self, layer):  # N§2
        return self.n_routed_experts > 0 and layer >= self.first_k_dense_replace and layer % self.moe_layer_freq == 0


# =============================================================================================
# Scalar building blocks
# =============================================================================================
def rms_norm(x, w, eps):
    """N§2: x / sqrt(mean(x²) + eps) * w, in f32.  x [..., d], w [d]."""
    x = x.astype(F32)
    ms = np.mean(x * x, axis=-1, keepdims=True, dtype=F32)
    return (x / np.sqrt(ms + F32(eps))) * w


def layer_norm(x, w, b, eps):
    """N§5 indexer k_norm: population variance, weight and bias, f32.  x [..., d]."""
    mean = np.mean(x, axis=-1, keepdims=True, dtype=F32)
    xc = x - mean
    var = np.mean(xc * xc, axis=-1, keepdims=True, dtype=F32)
    return xc / np.sqrt(var + F32(eps)) * w + b


def silu(x):
    return x / (F32(1) + np.exp(-x))


def sigmoid(x):
    return F32(1) / (F32(1) + np.exp(-x))


def softmax_masked(scores, allowed):
    """Softmax over the last axis restricted to `allowed` (bool, broadcastable); f32."""
    s = np.where(allowed, scores, F32(-np.inf))
    m = np.max(s, axis=-1, keepdims=True)
    e = np.exp(s - m)
    return e / np.sum(e, axis=-1, keepdims=True, dtype=F32)


# ---------------------------------------------------------------------------------------------
# RoPE / YaRN (§4, N§3)
# ---------------------------------------------------------------------------------------------
def yarn_freqs(cfg):
    """freqs [d/2] f32: base frequencies, YaRN-blended when rope_scaling.type == 'yarn' (§4.1)."""
    d = cfg.qk_rope_head_dim
    base = float(cfg.rope_theta)
    freqs = F32(1) / (F32(base) ** (np.arange(0, d, 2, dtype=F32) / F32(d)))  # f32
    if not cfg.yarn:
        return freqs
    rs = cfg.rope_scaling
    factor, orig = float(rs["factor"]), float(rs["original_max_position_embeddings"])

    def corr(n):  # f64: the dim index whose wavelength makes n turns over orig positions
        return d * math.log(orig / (n * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(corr(float(rs.get("beta_fast", 32)))), 0)
    high = min(math.ceil(corr(float(rs.get("beta_slow", 1)))), d - 1)
    if low == high:  # [INF] avoid 0/0 (not reachable with the official config)
        high += 0.001
    ramp = np.clip((np.arange(d // 2, dtype=F32) - F32(low)) / F32(high - low), 0, 1).astype(F32)
    smooth = F32(1) - ramp
    return (freqs / F32(factor) * (F32(1) - smooth) + freqs * smooth).astype(F32)


def rope_tables(cfg, pos):
    """cos, sin [n, d/2] f32 of the f32 angle f32(pos)·freqs (correctly rounded cos/sin)."""
    angle = np.asarray(pos, dtype=F32)[:, None] * yarn_freqs(cfg)[None, :]  # f32
    return np.cos(angle.astype(np.float64)).astype(F32), np.sin(angle.astype(np.float64)).astype(F32)


def softmax_scale(cfg):
    """§3.2 / N§4: qk_head_dim^-0.5 · m², m = 0.1·mscale_all_dim·ln(factor) + 1 (f64 → f32)."""
    m = 1.0
    if cfg.yarn and float(cfg.rope_scaling["factor"]) > 1:
        m = 0.1 * float(cfg.rope_scaling.get("mscale_all_dim", 1.0)) * math.log(float(cfg.rope_scaling["factor"])) + 1
    return F32(cfg.qk_head_dim ** -0.5 * m * m)


def rope_interleaved(x, cos, sin):
    """§4.2 MLA layout: pairs (2j, 2j+1).  x [n, ..., d], cos/sin [n, d/2]."""
    c = cos.reshape(cos.shape[0], *([1] * (x.ndim - 2)), cos.shape[1])
    s = sin.reshape(c.shape)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def rope_halves(x, cos, sin):
    """§4.2 indexer layout (NeoX): pairs (j, j + d/2) over the FIRST d = 2·cos.shape[1] dims;
    the remaining dims pass through.  x [n, ..., D≥d]."""
    h = cos.shape[1]
    c = cos.reshape(cos.shape[0], *([1] * (x.ndim - 2)), h)
    s = sin.reshape(c.shape)
    x0, x1 = x[..., :h], x[..., h:2 * h]
    out = x.copy()
    out[..., :h] = x0 * c - x1 * s
    out[..., h:2 * h] = x0 * s + x1 * c
    return out


# ---------------------------------------------------------------------------------------------
# Hadamard and FP8 activation quantisation (§3.5, §6.2)
# ---------------------------------------------------------------------------------------------
def hadamard_matrix(d):
    """Sylvester H [d, d], H[i][j] = (-1)^popcount(i & j); d must be a power of two."""
    if d <= 0 or d & (d - 1):
        raise ValueError(f"index_head_dim {d} is not a power of two (Hadamard transform)")
    i = np.arange(d)
    bits = np.bitwise_and(i[:, None], i[None, :])
    parity = np.zeros_like(bits)
    while bits.any():
        parity ^= bits & 1
        bits = bits >> 1
    return np.where(parity == 1, -1.0, 1.0).astype(F32)


def hadamard_transform(x):
    """rotate_activation: y = H · v · d^-0.5 over the last axis (H symmetric)."""
    d = x.shape[-1]
    return (x @ hadamard_matrix(d)) * F32(d ** -0.5)


def ue8m0_scale(amax):
    """§6.2: v = max(amax, 1e-4) · f32(1/448) in f32; scale = 2^(exp(v) + (mantissa(v) != 0))."""
    v = (np.maximum(amax.astype(F32), F32(1e-4)) * F32(1.0 / 448.0)).astype(F32)
    bits = v.view(np.uint32)
    e = ((bits >> 23) & 0xFF).astype(np.int64) - 127 + ((bits & 0x7FFFFF) != 0)
    return ((e + 127).astype(np.uint32) << 23).view(F32)


def act_quant(x, block):
    """§6.2 act_quant with ue8m0 scales, groups of `block` along the last axis (a shorter last
    group if the size is not a multiple).  Returns (codes uint8 [..., N], scales f32 [..., nb])."""
    n = x.shape[-1]
    nb = -(-n // block)
    codes = np.empty(x.shape, dtype=np.uint8)
    scales = np.empty(x.shape[:-1] + (nb,), dtype=F32)
    for b in range(nb):
        g = x[..., b * block:(b + 1) * block]
        s = ue8m0_scale(np.max(np.abs(g), axis=-1))
        scales[..., b] = s
        codes[..., b * block:(b + 1) * block] = e4m3_encode(np.clip(g / s[..., None], -448, 448))
    return codes, scales


def act_dequant(codes, scales, block):
    """e4m3(codes) · scale of the code's block (f32)."""
    s = np.repeat(scales, block, axis=-1)[..., :codes.shape[-1]]
    return e4m3_decode(codes) * s


# =============================================================================================
# Weights (N§1)
# =============================================================================================
class Weights:
    def __init__(self, folder, cfg):
        self.files = CheckpointFiles(folder)
        self.cfg = cfg

    def has(self, name):
        return name in self.files

    def vector(self, name):
        """Norm weights/biases, router bias: BF16/F16/F32 -> f32."""
        if name not in self.files:
            raise KeyError(f"checkpoint has no tensor {name}")
        return self.files.f32(name)

    def linear(self, prefix):
        """`prefix.weight` [out, in] as f32; FP8 is dequantised with `prefix.weight_scale_inv`:
        W[i,j] = e4m3(q[i,j]) · scale[i//128, j//128]."""
        name = prefix + ".weight"
        if name not in self.files:
            raise KeyError(f"checkpoint has no tensor {name}")
        if self.files.dtype(name) != "F8_E4M3":
            return self.files.f32(name)
        q = self.files.raw(name)
        scale = self.files.f32(prefix + ".weight_scale_inv")
        br, bc = self.cfg.weight_block
        s = np.repeat(np.repeat(scale, br, axis=0), bc, axis=1)[:q.shape[0], :q.shape[1]]
        return e4m3_decode(q) * s

    def bf16_operand(self, prefix):
        """Whether `prefix.weight` is stored FP8 e4m3 or BF16: every value a bf16 number, the weights
        whose products bf16 numerics computes on bf16-rounded activations."""
        return self.files.dtype(prefix + ".weight") in ("F8_E4M3", "BF16")

    def rows(self, name, ids):
        """Selected rows of an embedding matrix as f32 (avoids decoding the full table)."""
        raw = self.files.raw(name)
        return to_f32(np.asarray(raw[np.asarray(ids)]), self.files.dtype(name))


# =============================================================================================
# The model
# =============================================================================================
class Model:
    def __init__(self, folder, attention="dsa", index_topk=None, kv_cache="f32", dump_dir=None,
                 numerics="f32"):
        self.cfg = Config.load(folder)
        self.w = Weights(folder, self.cfg)
        self.attention = attention
        self.index_topk = index_topk if index_topk is not None else self.cfg.index_topk
        if kv_cache not in ("f32", "bf16", "fp8"):
            raise ValueError(f"--kv-cache {kv_cache}: expected f32, bf16 or fp8")
        self.kv_cache = kv_cache
        if numerics not in ("f32", "bf16"):
            raise ValueError(f"--numerics {numerics}: expected f32 or bf16")
        self.numerics = numerics
        self.dump_dir = dump_dir
        self.stats = {}  # layer -> decision margins (diagnostics only: topk_margins, router_margins)
        if dump_dir:
            os.makedirs(dump_dir, exist_ok=True)

    def dump(self, layer, name, array):
        if self.dump_dir:
            fn = f"L{layer}.{name}.npy" if layer is not None else f"{name}.npy"
            np.save(os.path.join(self.dump_dir, fn), array)

    def proj(self, x, prefix):
        """x @ Wᵀ of the linear `prefix` [n, out] (f32).  bf16 numerics (numerics.md "bf16 numerics"):
        x is first rounded to bf16 (RNE) when W is FP8 or BF16 -- at exactly the GEMMs listed there
        (this function is called for those only); f32 numerics: x as is."""
        if self.numerics == "bf16" and self.w.bf16_operand(prefix):
            x = bf16_round(x)
        return x @ self.w.linear(prefix).T

    # ------------------------------------------------------------------------------------------
    # Attention: MLA (§3.1, N§4)
    # ------------------------------------------------------------------------------------------
    def q_proj(self, p, x):
        """q [n, H, nope+rope] and qr [n, q_lora] (None without q_lora)."""
        c = self.cfg
        if c.q_lora_rank is None:
            q = self.proj(x, p + "q_proj")                                             # [n, H*qk]
            qr = None
        else:
            qr = rms_norm(self.proj(x, p + "q_a_proj"),                                  # wq_a
                          self.w.vector(p + "q_a_layernorm.weight"), c.rms_norm_eps)     # q_norm [n, q_lora]
            q = self.proj(qr, p + "q_b_proj")                                            # wq_b [n, H*qk]
        return q.reshape(x.shape[0], c.num_attention_heads, c.qk_head_dim), qr

    def store_kv(self, c_lat, k_pe):
        """N§4 KV cache modes: what attention reads back for the latent c and k_pe."""
        if self.kv_cache == "bf16":
            return bf16_round(c_lat), bf16_round(k_pe)
        if self.kv_cache == "fp8":  # 656-byte layout: e4m3 latent + ue8m0 scales per 128, bf16 rope
            codes, scales = act_quant(c_lat, 128)
            return act_dequant(codes, scales, 128), bf16_round(k_pe)
        return c_lat, k_pe

    def wkv_b_split(self, p):
        """W_UK [H, nope, kv_lora], W_UV [H, v, kv_lora] from wkv_b viewed [H, nope+v, kv_lora]."""
        c = self.cfg
        w = self.w.linear(p + "kv_b_proj").reshape(c.num_attention_heads, c.qk_nope_head_dim + c.v_head_dim, c.kv_lora_rank)
        return w[:, :c.qk_nope_head_dim], w[:, c.qk_nope_head_dim:]

    def mla(self, layer, x, pos):
        """x [n, D] (attn_norm output) -> attention output [n, D]."""
        c = self.cfg
        p = f"model.layers.{layer}.self_attn."
        cos, sin = rope_tables(c, pos)                                                # [n, rope/2]
        q, qr = self.q_proj(p, x)                                                     # [n, H, qk]
        q_nope = q[..., :c.qk_nope_head_dim]                                          # [n, H, nope]
        q_pe = rope_interleaved(q[..., c.qk_nope_head_dim:], cos, sin)                # [n, H, rope]
        kv_a = self.proj(x, p + "kv_a_proj_with_mqa")                                 # wkv_a [n, kv_lora+rope]
        c_lat = rms_norm(kv_a[:, :c.kv_lora_rank], self.w.vector(p + "kv_a_layernorm.weight"), c.rms_norm_eps)
        k_pe = rope_interleaved(kv_a[:, c.kv_lora_rank:], cos, sin)                   # [n, rope], one head
        if qr is not None:
            self.dump(layer, "q_latent", qr)
        self.dump(layer, "kv_latent", c_lat)
        self.dump(layer, "k_pe", k_pe)
        c_cache, pe_cache = self.store_kv(c_lat, k_pe)                                # written BEFORE attention
        selected = self.select(layer, p, x, qr, pos)                                  # bool [n, n_ctx]
        w_uk, w_uv = self.wkv_b_split(p)
        o = mla_attention_absorbed(q_nope, q_pe, c_cache, pe_cache, w_uk, w_uv, selected, softmax_scale(c))
        out = self.proj(o.reshape(x.shape[0], -1), p + "o_proj")                      # wo [n, D]
        self.dump(layer, "attn_out", out)
        return out

    # ------------------------------------------------------------------------------------------
    # DSA: lightning indexer and top-k selection (§3.5, §3.6, N§5)
    # ------------------------------------------------------------------------------------------
    def uses_dsa(self, p, qr):
        return (self.attention == "dsa" and self.index_topk is not None and qr is not None
                and self.w.has(p + "indexer.wq_b.weight"))

    def select(self, layer, p, x, qr, pos):
        """selected[i, t]: key t is in S_{pos[i]}.  Keys are the call's rows (positions 0..n-1)."""
        n = x.shape[0]
        causal = np.arange(n)[None, :] <= np.asarray(pos)[:, None]                   # [n, n_ctx]
        if not self.uses_dsa(p, qr):
            return causal
        scores = np.where(causal, self.indexer(p, x, qr, pos), F32(-np.inf))          # [n, n_ctx]
        self.dump(layer, "index_scores", scores)
        selected = topk_select(scores, pos, self.index_topk)
        self.stats.setdefault(layer, {}).update(topk_margins(scores, pos, self.index_topk))
        k_max = min(self.index_topk, n)
        topk = np.full((n, k_max), -1, dtype=np.int32)
        for i in range(n):
            t = np.nonzero(selected[i])[0]
            topk[i, :len(t)] = t
        self.dump(layer, "topk", topk)
        return selected

    def indexer(self, p, x, qr, pos):
        """Index scores I [n, n_ctx] (only t <= p meaningful), N§5."""
        c = self.cfg
        n, h_i, d_i = x.shape[0], c.index_n_heads, c.index_head_dim
        cos, sin = rope_tables(c, pos)
        q = self.proj(qr, p + "indexer.wq_b").reshape(n, h_i, d_i)                   # [n, H_I, d_I]
        q = hadamard_transform(rope_halves(q, cos, sin))                              # rope on dims [0, rope)
        k = layer_norm(self.proj(x, p + "indexer.wk"),                                # [n, d_I]
                       self.w.vector(p + "indexer.k_norm.weight"), self.w.vector(p + "indexer.k_norm.bias"), 1e-6)
        k = hadamard_transform(rope_halves(k, cos, sin))
        block = min(128, d_i)
        q8, q_s = act_quant(q, block)                                                 # [n, H_I, d_I], [n, H_I, nb]
        k8, k_s = act_quant(k, block)                                                 # [n, d_I], [n, nb] (index-K cache)
        w = (x @ self.w.linear(p + "indexer.weights_proj").T) * F32(h_i ** -0.5) * F32(d_i ** -0.5)  # [n, H_I], f32 in both numerics
        return index_scores(e4m3_decode(q8), q_s, e4m3_decode(k8), k_s, w, block)

    # ------------------------------------------------------------------------------------------
    # FFN: dense MLP and MoE (§5, N§6)
    # ------------------------------------------------------------------------------------------
    def mlp(self, prefix, x):
        """SwiGLU: w2(silu(w1 x) * w3 x); w1 = gate_proj, w3 = up_proj, w2 = down_proj."""
        g = self.proj(x, prefix + "gate_proj")
        u = self.proj(x, prefix + "up_proj")
        return self.proj(silu(g) * u, prefix + "down_proj")

    def gate(self, p, x):
        """Router: expert ids [n, k] ascending and their weights [n, k] (§5.2, N§6)."""
        c = self.cfg
        s = sigmoid(x @ self.w.vector(p + "gate.weight").T)                            # [n, E] f32
        bias_name = p + "gate.e_score_correction_bias"
        has_bias = self.w.has(bias_name)
        bias = self.w.vector(bias_name) if has_bias else np.zeros(c.n_routed_experts, F32)
        self.stats.setdefault(int(p.split(".")[2]), {}).update(
            router_margins(s, bias, has_bias, c.n_group, c.topk_group, c.num_experts_per_tok))
        return route(s, bias, has_bias, c.n_group, c.topk_group, c.num_experts_per_tok,
                     c.norm_topk_prob, c.routed_scaling_factor)

    def moe(self, layer, x):
        p = f"model.layers.{layer}.mlp."
        experts, weights = self.gate(p, x)                                            # [n, k], [n, k]
        self.dump(layer, "router_experts", experts.astype(np.int32))
        self.dump(layer, "router_weights", weights)
        y = np.zeros_like(x)                                                          # [n, D] f32
        for e in range(self.cfg.n_routed_experts):                                    # ascending expert id
            rows, slot = np.nonzero(experts == e)
            if len(rows):
                y[rows] += weights[rows, slot][:, None] * self.mlp(f"{p}experts.{e}.", x[rows])
        if self.cfg.n_shared_experts > 0:
            y += self.mlp(p + "shared_experts.", x)                                   # shared expert last
        return y

    def ffn(self, layer, x):
        if self.cfg.is_moe_layer(layer):
            return self.moe(layer, x)
        return self.mlp(f"model.layers.{layer}.mlp.", x)

    # ------------------------------------------------------------------------------------------
    # Decoder layer, main model, MTP (§2, §7, N§2, N§7)
    # ------------------------------------------------------------------------------------------
    def decoder_layer(self, layer, h, pos):
        c = self.cfg
        p = f"model.layers.{layer}."
        x = rms_norm(h, self.w.vector(p + "input_layernorm.weight"), c.rms_norm_eps)   # attn_norm
        self.dump(layer, "attn_in", x)
        h = h + self.mla(layer, x, pos)
        x = rms_norm(h, self.w.vector(p + "post_attention_layernorm.weight"), c.rms_norm_eps)  # ffn_norm
        f = self.ffn(layer, x)
        self.dump(layer, "ffn_out", f)
        h = h + f
        self.dump(layer, "hidden", h)
        return h

    def forward(self, ids):
        """ids [n] -> (logits [n, vocab], g [n, D] = final-norm output, per-layer hidden RMS)."""
        c = self.cfg
        pos = np.arange(len(ids))
        h = self.w.rows("model.embed_tokens.weight", ids)                              # [n, D]
        rms = []
        for layer in range(c.num_hidden_layers):
            h = self.decoder_layer(layer, h, pos)
            rms.append(float(np.sqrt(np.mean(h.astype(np.float64) ** 2))))
        g = rms_norm(h, self.w.vector("model.norm.weight"), c.rms_norm_eps)
        self.dump(None, "final_norm", g)
        logits = g @ self.w.linear("lm_head").T                                        # [n, vocab]
        self.dump(None, "logits", logits)
        self.hidden_rms = rms
        return logits, g

    def has_mtp(self):
        L = self.cfg.num_hidden_layers
        return self.cfg.num_nextn_predict_layers >= 1 and self.w.has(f"model.layers.{L}.eh_proj.weight")

    def mtp(self, ids, g):
        """N§7: n-1 rows; row i (position i) predicts token i+2 from t_{i+1} and g_i."""
        c = self.cfg
        L = c.num_hidden_layers
        p = f"model.layers.{L}."
        ids = np.asarray(ids)
        if len(ids) < 2:
            return np.zeros((0, c.vocab_size), dtype=F32)
        emb_name = p + "embed_tokens.weight" if self.w.has(p + "embed_tokens.weight") else "model.embed_tokens.weight"
        e = rms_norm(self.w.rows(emb_name, ids[1:]), self.w.vector(p + "enorm.weight"), c.rms_norm_eps)
        hn = rms_norm(g[:-1], self.w.vector(p + "hnorm.weight"), c.rms_norm_eps)
        x0 = np.concatenate([e, hn], axis=-1) @ self.w.linear(p + "eh_proj").T        # embedding FIRST, [n-1, D]
        h = self.decoder_layer(L, x0, np.arange(len(ids) - 1))
        y = rms_norm(h, self.w.vector(p + "shared_head.norm.weight"), c.rms_norm_eps)
        head = p + "shared_head.head" if self.w.has(p + "shared_head.head.weight") else "lm_head"
        return y @ self.w.linear(head).T                                              # [n-1, vocab]


# =============================================================================================
# Pure functions used by the model (and tested on their own)
# =============================================================================================
def mla_attention_absorbed(q_nope, q_pe, c_cache, pe_cache, w_uk, w_uv, selected, scale):
    """Absorbed (MQA) MLA attention over each row's selected keys.
    q_nope [n, H, nope], q_pe [n, H, rope], c_cache [T, r], pe_cache [T, rope],
    w_uk [H, nope, r], w_uv [H, v, r], selected bool [n, T] -> o [n, H, v]."""
    q_abs = np.matmul(q_nope.transpose(1, 0, 2), w_uk)                               # [H, n, r] = W_UKᵀ q_nope
    scores = np.matmul(q_abs, c_cache.T) + np.matmul(q_pe.transpose(1, 0, 2), pe_cache.T)  # [H, n, T]
    prob = softmax_masked(scores * scale, selected[None])                            # [H, n, T]
    o_lat = np.matmul(prob, c_cache)                                                 # [H, n, r]
    o = np.matmul(o_lat, w_uv.transpose(0, 2, 1))                                    # [H, n, v]
    return o.transpose(1, 0, 2)


def mla_attention_naive(q_nope, q_pe, c_cache, pe_cache, w_uk, w_uv, selected, scale):
    """The same attention in MHA form: per-head keys/values materialised (for the self-test)."""
    k_nope = np.einsum("hdr,tr->htd", w_uk, c_cache)                                 # [H, T, nope]
    v = np.einsum("hdr,tr->htd", w_uv, c_cache)                                      # [H, T, v]
    n_heads = w_uk.shape[0]
    k = np.concatenate([k_nope, np.broadcast_to(pe_cache, (n_heads,) + pe_cache.shape)], axis=-1)
    q = np.concatenate([q_nope, q_pe], axis=-1).transpose(1, 0, 2)                   # [H, n, qk]
    prob = softmax_masked(np.matmul(q, k.transpose(0, 2, 1)) * scale, selected[None])
    return np.matmul(prob, v).transpose(1, 0, 2)


def index_scores(q8, q_s, k8, k_s, w, block):
    """I(p, t) = Σ_h w_h · ReLU(Σ_b q_s[h,b] · k_s(t)[b] · Σ_{d∈b} q8[h,d] · k8(t)[d]).
    q8 [n, H_I, d_I] and k8 [T, d_I] are e4m3 values; q_s [n, H_I, nb], k_s [T, nb], w [n, H_I]."""
    n, h_i, d_i = q8.shape
    total = np.zeros((n, h_i, k8.shape[0]), dtype=F32)                               # [n, H_I, T]
    for b in range(q_s.shape[-1]):
        sl = slice(b * block, (b + 1) * block)
        dots = np.matmul(q8[:, :, sl], k8[:, sl].T)                                  # [n, H_I, T]
        total += dots * q_s[:, :, b, None] * k_s[None, None, :, b]
    return np.einsum("nh,nht->nt", w, np.maximum(total, F32(0))).astype(F32)


def topk_select(scores, pos, index_topk):
    """S_p = top-min(index_topk, p+1) of scores[i, :p+1], ties -> lower t.  bool [n, T]."""
    n, n_ctx = scores.shape
    selected = np.zeros((n, n_ctx), dtype=bool)
    for i, p in enumerate(pos):
        k = min(index_topk, p + 1)
        if k == p + 1:
            selected[i, :p + 1] = True
        else:
            order = np.argsort(-scores[i, :p + 1], kind="stable")                    # stable: lower t first on ties
            selected[i, order[:k]] = True
    return selected


def topk_margins(scores, pos, index_topk):
    """Diagnostics: how far the indexer's top-k decisions are from ties.  For every row that is
    truly sparse (k < p + 1): gap = k-th best - (k+1)-th best score, relative to the row's score
    spread (std over t <= p)."""
    gaps, spreads = [], []
    for i, p in enumerate(pos):
        k = min(index_topk, p + 1)
        if k < p + 1:
            row = np.sort(scores[i, :p + 1].astype(np.float64))[::-1]
            gaps.append(row[k - 1] - row[k])
            spreads.append(row.std())
    if not gaps:
        return {}
    rel = np.array(gaps) / np.maximum(np.array(spreads), 1e-30)
    return {"index_spread": float(np.median(spreads)), "topk_rel_gap_min": float(rel.min()),
            "topk_rel_gap_p5": float(np.percentile(rel, 5)), "topk_exact_ties": int(np.sum(np.array(gaps) == 0)),
            "topk_rows": len(gaps)}


def group_scores(b, has_bias):
    """§5.2 group scores of b [n, G, per]: with a router bias the sum of each group's two largest
    values (one if the group has one expert), without one the group's largest value, as
    DeepSeek's `Gate` does (`amax` when `bias is None`)."""
    ranked = -np.sort(-b, axis=-1)
    return ranked[..., :2].sum(axis=-1) if has_bias else ranked[..., 0]


def router_margins(s, bias, has_bias, n_group, topk_group, top_k):
    """Diagnostics: per token, the gap between the last kept and the first dropped group score,
    and between the k-th and (k+1)-th biased expert score within the kept groups."""
    n, n_exp = s.shape
    per = n_exp // n_group
    b = (s + bias).astype(np.float64).reshape(n, n_group, per)
    gs = group_scores(b, has_bias)                                                    # [n, G]
    gs_sorted = -np.sort(-gs, axis=-1)
    out = {"router_b_spread": float(np.median(b.reshape(n, -1).std(axis=-1)))}
    if topk_group < n_group:
        out["group_gap_min"] = float((gs_sorted[:, topk_group - 1] - gs_sorted[:, topk_group]).min())
    keep = np.argsort(-gs, axis=-1, kind="stable")[:, :topk_group]
    kept = np.take_along_axis(b, keep[..., None], axis=1).reshape(n, -1)             # [n, topk_group·per]
    if kept.shape[1] > top_k:
        ranked = -np.sort(-kept, axis=-1)
        out["expert_gap_min"] = float((ranked[:, top_k - 1] - ranked[:, top_k]).min())
    return out


def route(s, bias, has_bias, n_group, topk_group, top_k, norm_topk_prob, scaling):
    """Group-limited sigmoid routing (§5.2, N§6).  s [n, E] sigmoid scores, bias [E] (zeros and
    has_bias False when the checkpoint has none).
    Returns (expert ids [n, k] ascending, weights [n, k] f32 in the same order)."""
    n, n_exp = s.shape
    b = (s + bias).astype(F32)                                                       # selection only
    grouped = b.reshape(n, n_group, n_exp // n_group)
    group_score = group_scores(grouped, has_bias)                                    # [n, G]
    keep = np.argsort(-group_score, axis=-1, kind="stable")[:, :topk_group]          # ties -> lower group
    group_ok = np.zeros((n, n_group), dtype=bool)
    np.put_along_axis(group_ok, keep, True, axis=-1)
    masked = np.where(np.repeat(group_ok, n_exp // n_group, axis=-1), b, F32(-np.inf))
    idx = np.sort(np.argsort(-masked, axis=-1, kind="stable")[:, :top_k], axis=-1)   # ties -> lower id
    w = np.take_along_axis(s, idx, axis=-1).astype(F32)
    if norm_topk_prob:
        w = w / np.sum(w, axis=-1, keepdims=True, dtype=F32)
    return idx, (w * F32(scaling)).astype(F32)


# =============================================================================================
# CLI
# =============================================================================================
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True, help="comma-separated token ids")
    ap.add_argument("--out", required=True, help="logits .npy, float32 [n_tokens, vocab]")
    ap.add_argument("--attention", choices=["dsa", "dense"], default="dsa")
    ap.add_argument("--index-topk", type=int, default=None)
    ap.add_argument("--kv-cache", choices=["f32", "bf16", "fp8"], default="f32")
    ap.add_argument("--numerics", choices=["f32", "bf16"], default="f32",
                    help="bf16: activations rounded to bf16 at the GEMM inputs of docs/numerics.md")
    ap.add_argument("--mtp-out", default=None)
    ap.add_argument("--dump-dir", default=None)
    ap.add_argument("--verbose", action="store_true",
                    help="print per-layer hidden RMS and top-k / router decision margins")
    a = ap.parse_args(argv)
    ids = [int(t) for t in a.ids.split(",") if t.strip()]
    model = Model(a.model, a.attention, a.index_topk, a.kv_cache, a.dump_dir, a.numerics)
    bad = [t for t in ids if not 0 <= t < model.cfg.vocab_size]
    if not ids or bad:
        sys.exit(f"--ids: need at least one id in [0, {model.cfg.vocab_size}); bad: {bad[:5]}")
    logits, g = model.forward(ids)
    np.save(a.out, logits.astype(F32))
    if a.verbose:
        print("hidden RMS per layer:", " ".join(f"{r:.4g}" for r in model.hidden_rms))
        for layer, st in sorted(model.stats.items()):
            print(f"L{layer}:", " ".join(f"{k}={v:.4g}" for k, v in st.items()))
    if a.mtp_out:
        if not model.has_mtp():
            sys.exit("--mtp-out: the checkpoint has no MTP layer")
        np.save(a.mtp_out, model.mtp(ids, g).astype(F32))
    return 0


if __name__ == "__main__":
    sys.exit(main())
