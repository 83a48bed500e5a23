#!/usr/bin/python3
"""Writes a small but complete DeepSeek-V3.2-style checkpoint with random weights, byte by byte
(safetensors_np writer): config.json, N shards, model.safetensors.index.json.

The tensor list is derived from docs/model.md §8.1 (HF names) and §7 (MTP layer `num_hidden_layers`):
FP8 (F8_E4M3 + F32 `weight_scale_inv` [ceil(out/128), ceil(in/128)]) for every projection,
BF16 embeddings / head / router / indexer.weights_proj / eh_proj, F32 router bias, norms BF16 or F32.

CLI:  np_write_checkpoint.py --out DIR [--seed S] [--shards 2] [--omit TENSOR] [--set key=value]
Library: tensor_table(cfg), write_checkpoint(dir, cfg, seed, shards, omit) -> {name: (dtype, shape, raw)}
"""

import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_np import bf16_encode, e4m3_encode, write_safetensors  # noqa: E402

# A small config that still exercises every feature: q_lora, YaRN, an indexer with top-k smaller
# than the test sequences, dense + MoE layers, group-limited routing, shared expert, MTP, and
# dimensions that are not multiples of the 128 FP8 block (hidden 160, 576-like wkv_a rows).
SMALL_CONFIG = {
    "architectures": ["DeepseekV32ForCausalLM"], "model_type": "deepseek_v32",
    "vocab_size": 300, "hidden_size": 160, "intermediate_size": 136, "moe_intermediate_size": 48,
    "num_hidden_layers": 3, "num_nextn_predict_layers": 1, "num_attention_heads": 4,
    "num_key_value_heads": 4, "q_lora_rank": 96, "kv_lora_rank": 64, "qk_nope_head_dim": 32,
    "qk_rope_head_dim": 16, "v_head_dim": 24, "n_routed_experts": 8, "n_shared_experts": 1,
    "num_experts_per_tok": 3, "first_k_dense_replace": 1, "moe_layer_freq": 1, "n_group": 4,
    "topk_group": 2, "topk_method": "noaux_tc", "scoring_func": "sigmoid", "norm_topk_prob": True,
    "routed_scaling_factor": 2.5, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
    "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                     "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
    "max_position_embeddings": 163840, "bos_token_id": 0, "eos_token_id": 1,
    "tie_word_embeddings": False, "hidden_act": "silu", "torch_dtype": "bfloat16",
    "index_n_heads": 4, "index_head_dim": 32, "index_topk": 8,
    "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                            "weight_block_size": [128, 128], "scale_fmt": "ue8m0"},
}


def _get(cfg, key, default):
    return cfg.get(key, default)


def is_moe_layer(cfg, layer):
    return cfg["n_routed_experts"] > 0 and layer >= cfg["first_k_dense_replace"] and layer % _get(cfg, "moe_layer_freq", 1) == 0


def layer_tensors(cfg, layer):
    """(name, kind, shape) of one decoder layer: kind ∈ linear, norm, bias, gate, gate_bias, bf16."""
    d, h = cfg["hidden_size"], cfg["num_attention_heads"]
    nope, rope, v, r = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"], cfg["kv_lora_rank"]
    p = f"model.layers.{layer}."
    out = [(p + "input_layernorm.weight", "norm", [d]), (p + "post_attention_layernorm.weight", "norm", [d])]
    a = p + "self_attn."
    if cfg.get("q_lora_rank") is None:
        out.append((a + "q_proj", "linear", [h * (nope + rope), d]))
    else:
        ql = cfg["q_lora_rank"]
        out += [(a + "q_a_proj", "linear", [ql, d]), (a + "q_a_layernorm.weight", "norm", [ql]),
                (a + "q_b_proj", "linear", [h * (nope + rope), ql])]
    out += [(a + "kv_a_proj_with_mqa", "linear", [r + rope, d]), (a + "kv_a_layernorm.weight", "norm", [r]),
            (a + "kv_b_proj", "linear", [h * (nope + v), r]), (a + "o_proj", "linear", [d, h * v])]
    if cfg.get("index_topk") is not None:
        hi, di = cfg["index_n_heads"], cfg["index_head_dim"]
        ql = cfg["q_lora_rank"]
        out += [(a + "indexer.wq_b", "linear", [hi * di, ql]), (a + "indexer.wk", "linear", [di, d]),
                (a + "indexer.k_norm.weight", "norm_f32", [di]), (a + "indexer.k_norm.bias", "bias", [di]),
                (a + "indexer.weights_proj.weight", "bf16", [hi, d])]
    m = p + "mlp."
    if is_moe_layer(cfg, layer):
        e, mi = cfg["n_routed_experts"], cfg["moe_intermediate_size"]
        out += [(m + "gate.weight", "gate", [e, d]), (m + "gate.e_score_correction_bias", "gate_bias", [e])]
        for x in range(e):
            out += _mlp(f"{m}experts.{x}.", d, mi)
        if cfg["n_shared_experts"] > 0:
            out += _mlp(m + "shared_experts.", d, mi * cfg["n_shared_experts"])
    else:
        out += _mlp(m, d, cfg["intermediate_size"])
    return out


def _mlp(p, d, inter):
    return [(p + "gate_proj", "linear", [inter, d]), (p + "up_proj", "linear", [inter, d]),
            (p + "down_proj", "linear", [d, inter])]


def tensor_table(cfg):
    """Every tensor of the checkpoint as (name, kind, shape); linears are prefixes (the writer
    emits `.weight` F8_E4M3 + `.weight_scale_inv` F32)."""
    d, vocab, n_layers = cfg["hidden_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    out = [("model.embed_tokens.weight", "embed", [vocab, d])]
    for layer in range(n_layers):
        out += layer_tensors(cfg, layer)
    for k in range(_get(cfg, "num_nextn_predict_layers", 0)):
        L = n_layers + k
        p = f"model.layers.{L}."
        out += [(p + "embed_tokens.weight", "embed", [vocab, d]), (p + "enorm.weight", "norm", [d]),
                (p + "hnorm.weight", "norm", [d]), (p + "eh_proj.weight", "bf16", [d, 2 * d]),
                (p + "shared_head.norm.weight", "norm", [d]), (p + "shared_head.head.weight", "head", [vocab, d])]
        out += layer_tensors(cfg, L)
    out += [("model.norm.weight", "norm", [d]), ("lm_head.weight", "head", [vocab, d])]
    return out


def _bf16(x):
    return ("BF16", list(x.shape), bf16_encode(x.astype(np.float32)))


def _fp8_linear(rng, shape, block):
    """Random FP8 linear with std ≈ 1/sqrt(in): codes ~ e4m3(N(0, 16²)), per-block scale
    jittered (deliberately not a power of two; docs/model.md §6.1 says do not assume it)."""
    out_f, in_f = shape
    codes = e4m3_encode(rng.standard_normal(shape) * 16.0)
    grid = [math.ceil(out_f / block[0]), math.ceil(in_f / block[1])]
    scale = (1.0 / (16.0 * math.sqrt(in_f))) * rng.uniform(0.7, 1.3, size=grid)
    return ("F8_E4M3", list(shape), codes), ("F32", grid, scale.astype(np.float32))


def random_tensors(cfg, seed, f32_norms=False):
    """{name: (dtype, shape, raw storage array)} for the whole table, deterministic in `seed`.
    The indexer's LayerNorm (k_norm weight and bias) is BF16 like every norm, or F32 with
    `f32_norms` (its real dtype is unverified, docs/model.md §3.5; docs/numerics.md §1: accept both)."""
    rng = np.random.default_rng(seed)
    block = cfg.get("quantization_config", {}).get("weight_block_size", [128, 128])
    d = cfg["hidden_size"]
    out = {}
    for name, kind, shape in tensor_table(cfg):
        if kind == "linear":
            out[name + ".weight"], out[name + ".weight_scale_inv"] = _fp8_linear(rng, shape, block)
        elif kind == "embed":
            out[name] = _bf16(rng.standard_normal(shape))
        elif kind in ("head", "gate", "bf16"):
            out[name] = _bf16(rng.standard_normal(shape) / math.sqrt(shape[1]))
        elif kind == "norm":
            out[name] = _bf16(1.0 + 0.1 * rng.standard_normal(shape))
        elif kind == "norm_f32":
            v = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
            out[name] = ("F32", shape, v) if f32_norms else _bf16(v)
        elif kind == "bias":
            v = (0.05 * rng.standard_normal(shape)).astype(np.float32)
            out[name] = ("F32", shape, v) if f32_norms else _bf16(v)
        elif kind == "gate_bias":
            out[name] = ("F32", shape, (0.05 * rng.standard_normal(shape)).astype(np.float32))
        else:
            raise ValueError(kind)
    assert d > 0
    return out


def write_checkpoint(folder, cfg, seed=1, shards=2, omit=(), f32_norms=False):
    """Writes config.json, `shards` safetensors files (tensors split in table order) and the
    index. Returns the written tensors {name: (dtype, shape, raw)} (omitted ones excluded)."""
    os.makedirs(folder, exist_ok=True)
    tensors = {k: v for k, v in random_tensors(cfg, seed, f32_norms).items() if k not in set(omit)}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    names = list(tensors)
    per = math.ceil(len(names) / shards)
    weight_map, total = {}, 0
    for s in range(shards):
        fn = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[s * per:(s + 1) * per]}
        write_safetensors(os.path.join(folder, fn), part, metadata={"format": "pt"})
        for n, (dt, shape, raw) in part.items():
            weight_map[n] = fn
            total += np.asarray(raw).nbytes
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    return tensors


def parse_set(cfg, kv):
    key, value = kv.split("=", 1)
    cfg[key] = json.loads(value)


def main(argv=None):
    ap = argparse.ArgumentParser(description="write a small random DeepSeek-V3.2 checkpoint")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--omit", action="append", default=[], help="leave this tensor out")
    ap.add_argument("--set", action="append", default=[], help="config override key=JSON")
    ap.add_argument("--f32-norms", action="store_true", help="indexer k_norm weight/bias as F32")
    a = ap.parse_args(argv)
    cfg = json.loads(json.dumps(SMALL_CONFIG))
    for kv in a.set:
        parse_set(cfg, kv)
    write_checkpoint(a.out, cfg, a.seed, a.shards, a.omit, a.f32_norms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
