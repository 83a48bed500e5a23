"""Exports a trained checkpoint (train.py's .pt) to the official Hugging Face layout.

  export.py --ckpt CKPT --tokenizer TOKDIR --out DIR [--indexer-from-init]

Writes DIR/config.json, generation_config.json, model.safetensors (+ index), and copies
tokenizer.json / tokenizer_config.json from TOKDIR. FP8 e4m3 with 128×128 block scales
(`weight_scale_inv`, f32) for exactly the projections the official checkpoint quantises
(docs/model.md §6.1); BF16 for embeddings, heads, norms, the router weight, the indexer's
`weights_proj` and `k_norm`, and the MTP `eh_proj`; F32 for the router bias. The MTP layer
(index num_hidden_layers) gets its own copies of the embedding and the head, as DeepSeek ships.

`--indexer-from-init` writes the indexers' pre-warm-up weights instead of the trained ones (the
ablation: DSA with an untrained indexer).
"""

import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fp8 import quant_weight  # noqa: E402


def bf16_bits(t: torch.Tensor) -> np.ndarray:
    """f32 → bf16 bit patterns, round to nearest even."""
    u = t.detach().float().contiguous().numpy().view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


# e4m3fn code of every exactly representable non-negative value (codes 0x00..0x7E).
def _e4m3_value(code):
    e, m = (code >> 3) & 0xF, code & 7
    return (m / 8.0) * 2.0**-6 if e == 0 else (1 + m / 8.0) * 2.0 ** (e - 7)


_E4M3_VALUES = np.array([_e4m3_value(c) for c in range(0x7F)], dtype=np.float32)


def e4m3_codes(values: torch.Tensor) -> np.ndarray:
    """Exact e4m3 values (as produced by fp8.e4m3_round) → uint8 codes."""
    v = values.detach().float().numpy()
    mag = np.abs(v)
    code = np.searchsorted(_E4M3_VALUES, mag).astype(np.uint8)
    if not np.array_equal(_E4M3_VALUES[np.minimum(code, 0x7E)], mag):
        raise ValueError("export: a value is not on the e4m3 grid")
    return np.where(v < 0, code | 0x80, code).astype(np.uint8)


class Writer:
    def __init__(self):
        self.tensors = []  # (name, dtype, shape, bytes)

    def bf16(self, name, t):
        self.tensors.append((name, "BF16", list(t.shape), bf16_bits(t).tobytes()))

    def f32(self, name, t):
        self.tensors.append((name, "F32", list(t.shape),
                             t.detach().float().contiguous().numpy().tobytes()))

    def fp8(self, name, w):
        _, codes, scale = quant_weight(w.detach().float())
        self.tensors.append((name + ".weight", "F8_E4M3", list(w.shape),
                             e4m3_codes(codes).tobytes()))
        self.tensors.append((name + ".weight_scale_inv", "F32", list(scale.shape),
                             scale.contiguous().numpy().astype(np.float32).tobytes()))

    def write(self, path):
        # Widest dtypes first so that every tensor is aligned to its element size.
        width = {"F32": 4, "BF16": 2, "F8_E4M3": 1}
        order = sorted(self.tensors, key=lambda t: -width[t[1]])
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for name, dtype, shape, data in order:
            header[name] = {"dtype": dtype, "shape": shape,
                            "data_offsets": [offset, offset + len(data)]}
            offset += len(data)
        h = json.dumps(header, separators=(",", ":")).encode()
        h += b" " * ((-len(h)) % 8)
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(h)))
            f.write(h)
            for *_, data in order:
                f.write(data)
        return offset


def export_layer(w: Writer, sd, src, dst, moe, n_experts):
    """One decoder layer: `src` prefix in the PyTorch state dict, `dst` HF prefix."""
    w.bf16(dst + "input_layernorm.weight", sd[src + "input_layernorm.weight"])
    w.bf16(dst + "post_attention_layernorm.weight", sd[src + "post_attention_layernorm.weight"])
    a, d = src + "attn.", dst + "self_attn."
    w.fp8(d + "q_a_proj", sd[a + "wq_a.weight"])
    w.bf16(d + "q_a_layernorm.weight", sd[a + "q_norm.weight"])
    w.fp8(d + "q_b_proj", sd[a + "wq_b.weight"])
    w.fp8(d + "kv_a_proj_with_mqa", sd[a + "wkv_a.weight"])
    w.bf16(d + "kv_a_layernorm.weight", sd[a + "kv_norm.weight"])
    w.fp8(d + "kv_b_proj", sd[a + "wkv_b.weight"])
    w.fp8(d + "o_proj", sd[a + "wo.weight"])
    w.fp8(d + "indexer.wq_b", sd[a + "indexer.wq_b.weight"])
    w.fp8(d + "indexer.wk", sd[a + "indexer.wk.weight"])
    w.bf16(d + "indexer.k_norm.weight", sd[a + "indexer.k_norm.weight"])
    w.bf16(d + "indexer.k_norm.bias", sd[a + "indexer.k_norm.bias"])
    w.bf16(d + "indexer.weights_proj.weight", sd[a + "indexer.weights_proj.weight"])
    f, m = src + "ffn.", dst + "mlp."

    def mlp(s, t):
        w.fp8(t + "gate_proj", sd[s + "w1.weight"])
        w.fp8(t + "up_proj", sd[s + "w3.weight"])
        w.fp8(t + "down_proj", sd[s + "w2.weight"])

    if not moe:
        mlp(f, m)
        return
    w.bf16(m + "gate.weight", sd[f + "gate.weight"])
    w.f32(m + "gate.e_score_correction_bias", sd[f + "gate.bias"])
    for e in range(n_experts):
        mlp(f"{f}experts.{e}.", f"{m}experts.{e}.")
    mlp(f + "shared_experts.", m + "shared_experts.")


def hf_config(c):
    return {
        "architectures": ["DeepseekV32ForCausalLM"],
        "model_type": "deepseek_v32",
        "vocab_size": c["vocab_size"],
        "hidden_size": c["hidden_size"],
        "intermediate_size": c["intermediate_size"],
        "moe_intermediate_size": c["moe_intermediate_size"],
        "num_hidden_layers": c["num_hidden_layers"],
        "num_nextn_predict_layers": c["num_nextn_predict_layers"],
        "num_attention_heads": c["num_attention_heads"],
        "num_key_value_heads": c["num_attention_heads"],
        "q_lora_rank": c["q_lora_rank"],
        "kv_lora_rank": c["kv_lora_rank"],
        "qk_nope_head_dim": c["qk_nope_head_dim"],
        "qk_rope_head_dim": c["qk_rope_head_dim"],
        "v_head_dim": c["v_head_dim"],
        "n_routed_experts": c["n_routed_experts"],
        "n_shared_experts": c["n_shared_experts"],
        "num_experts_per_tok": c["num_experts_per_tok"],
        "first_k_dense_replace": c["first_k_dense_replace"],
        "moe_layer_freq": 1,
        "n_group": c["n_group"],
        "topk_group": c["topk_group"],
        "topk_method": "noaux_tc",
        "scoring_func": "sigmoid",
        "norm_topk_prob": True,
        "routed_scaling_factor": c["routed_scaling_factor"],
        "rms_norm_eps": c["rms_norm_eps"],
        "rope_theta": c["rope_theta"],
        "rope_scaling": {"type": "yarn", "factor": c["rope_factor"],
                         "original_max_position_embeddings": c["rope_original_max"],
                         "beta_fast": c["rope_beta_fast"], "beta_slow": c["rope_beta_slow"],
                         "mscale": 1.0, "mscale_all_dim": 1.0},
        "max_position_embeddings": c["max_position_embeddings"],
        "bos_token_id": c["bos_token_id"],
        "eos_token_id": c["eos_token_id"],
        "tie_word_embeddings": False,
        "hidden_act": "silu",
        "torch_dtype": "bfloat16",
        "index_n_heads": c["index_n_heads"],
        "index_head_dim": c["index_head_dim"],
        "index_topk": c["index_topk"],
        "quantization_config": {"quant_method": "fp8", "fmt": "e4m3",
                                "activation_scheme": "dynamic",
                                "weight_block_size": [128, 128], "scale_fmt": "ue8m0"},
    }


def export(ckpt_path, tokenizer_dir, out, indexer_from_init=False):
    ck = torch.load(ckpt_path)
    c, sd = ck["config"], dict(ck["model"])
    if indexer_from_init:
        sd.update(ck["meta"]["indexer_init"])
    os.makedirs(out, exist_ok=True)
    w = Writer()
    w.bf16("model.embed_tokens.weight", sd["embed.weight"])
    n = c["num_hidden_layers"]
    for i in range(n):
        export_layer(w, sd, f"layers.{i}.", f"model.layers.{i}.",
                     i >= c["first_k_dense_replace"], c["n_routed_experts"])
    w.bf16("model.norm.weight", sd["norm.weight"])
    w.bf16("lm_head.weight", sd["head.weight"])
    if c["num_nextn_predict_layers"]:
        p = f"model.layers.{n}."
        w.bf16(p + "embed_tokens.weight", sd["embed.weight"])
        w.bf16(p + "enorm.weight", sd["mtp.enorm.weight"])
        w.bf16(p + "hnorm.weight", sd["mtp.hnorm.weight"])
        w.bf16(p + "eh_proj.weight", sd["mtp.eh_proj.weight"])
        export_layer(w, sd, "mtp.block.", p, n >= c["first_k_dense_replace"],
                     c["n_routed_experts"])
        w.bf16(p + "shared_head.norm.weight", sd["mtp.norm.weight"])
        w.bf16(p + "shared_head.head.weight", sd["head.weight"])
    total = w.write(os.path.join(out, "model.safetensors"))
    index = {"metadata": {"total_size": total},
             "weight_map": {t[0]: "model.safetensors" for t in sorted(w.tensors)}}
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(hf_config(c), f, indent=2)
    gen = {"_from_model_config": True, "bos_token_id": c["bos_token_id"],
           "eos_token_id": c["eos_token_id"], "do_sample": True, "temperature": 1.0,
           "top_p": 0.95}
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        src = os.path.join(tokenizer_dir, name)
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(out, name))
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--tokenizer", required=True, help="folder with tokenizer.json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--indexer-from-init", action="store_true")
    a = ap.parse_args()
    total = export(a.ckpt, a.tokenizer, a.out, a.indexer_from_init)
    print(f"export: {total / 1e6:.2f} MB of tensors -> {a.out}")


if __name__ == "__main__":
    main()
