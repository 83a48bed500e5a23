"""DeepSeek-V3.2 in PyTorch, for training our demo model on a CPU.

Written from docs/model.md (the model specification), independently of the C++ engine: MLA with
a low-rank query, interleaved YaRN RoPE, the lightning indexer (halves-RoPE, LayerNorm with bias,
Hadamard, FP8 act_quant, ReLU head sum), DeepSeek Sparse Attention as a top-k key mask,
MoE with sigmoid scores, group-limited routing and a bias for aux-loss-free balancing, a shared
expert, and the MTP module (embedding first, main hidden after the final norm).

Training form: naive (non-absorbed) MLA over the whole sequence with a causal mask; DSA selects
`min(index_topk, p + 1)` keys per query p by the indexer's scores (ties: lower index, as the
engine). FP8 weights are fake-quantised (straight-through) so training sees the exported weights.

Shapes: B batch, L tokens, H heads, D hidden.
"""

import math
from dataclasses import dataclass, field, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F

from fp8 import fake_quant_weight, act_quant_ste

ATTN_CHUNK = 512  # query rows per attention block in training


@dataclass
class Config:
    vocab_size: int = 4096
    hidden_size: int = 256
    intermediate_size: int = 768
    moe_intermediate_size: int = 256
    num_hidden_layers: int = 4
    num_nextn_predict_layers: int = 1
    num_attention_heads: int = 4
    q_lora_rank: int = 128
    kv_lora_rank: int = 128
    qk_nope_head_dim: int = 64
    qk_rope_head_dim: int = 32
    v_head_dim: int = 64
    n_routed_experts: int = 16
    n_shared_experts: int = 1
    num_experts_per_tok: int = 2
    first_k_dense_replace: int = 1
    n_group: int = 4
    topk_group: int = 2
    routed_scaling_factor: float = 2.5
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_factor: float = 4.0
    rope_original_max: int = 1024
    rope_beta_fast: float = 32.0
    rope_beta_slow: float = 1.0
    max_position_embeddings: int = 4096
    index_n_heads: int = 4
    index_head_dim: int = 64
    index_topk: int = 256
    bos_token_id: int = 0
    eos_token_id: int = 1

    @property
    def qk_head_dim(self):
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    def to_dict(self):
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------
class Linear(nn.Module):
    """A bias-free linear. `fp8`: stored as FP8 (e4m3, 128×128 block scales) in the
    checkpoint, so trained on its fake-quantised weight; otherwise BF16 (autocast rounds it)."""

    def __init__(self, inp, out, fp8, std=None):
        super().__init__()
        self.fp8 = fp8
        self.weight = nn.Parameter(torch.empty(out, inp))
        nn.init.normal_(self.weight, std=std if std is not None else inp**-0.5)

    def forward(self, x):
        return F.linear(x, fake_quant_weight(self.weight) if self.fp8 else self.weight)


def Fp8Linear(inp, out, std=None):
    return Linear(inp, out, fp8=True, std=std)


def Bf16Linear(inp, out, std=None):
    return Linear(inp, out, fp8=False, std=std)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)) * self.weight


def rope_freqs(c: Config, positions: int) -> tuple:
    """cos, sin [positions, rope/2] of the YaRN-scaled frequencies (docs/model.md §4.1)."""
    d = c.qk_rope_head_dim
    freqs = 1.0 / (c.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))

    def corr(n):
        return d * math.log(c.rope_original_max / (n * 2 * math.pi)) / (2 * math.log(c.rope_theta))

    low = max(math.floor(corr(c.rope_beta_fast)), 0)
    high = min(math.ceil(corr(c.rope_beta_slow)), d - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(d // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    smooth = 1 - ramp
    freqs = freqs / c.rope_factor * (1 - smooth) + freqs * smooth
    angle = torch.outer(torch.arange(positions, dtype=torch.float32), freqs)
    return torch.cos(angle), torch.sin(angle)


def rope_interleaved(x, cos, sin):
    """x [..., L, (H,) d] pairs (2j, 2j+1); cos/sin [L, d/2] broadcast over heads."""
    x0, x1 = x[..., 0::2].float(), x[..., 1::2].float()
    y0 = x0 * cos - x1 * sin
    y1 = x0 * sin + x1 * cos
    return torch.stack((y0, y1), dim=-1).flatten(-2)


def rope_halves(x, cos, sin):
    """Non-interleaved (NeoX) pairs (j, j + d/2), the indexer's layout."""
    h = x.shape[-1] // 2
    x0, x1 = x[..., :h].float(), x[..., h:].float()
    return torch.cat((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)


def hadamard_matrix(n):
    i = torch.arange(n)
    bits = (i[:, None] & i[None, :])
    pop = torch.zeros_like(bits)
    for b in range(int(math.log2(n)) + 1):
        pop += (bits >> b) & 1
    return (1.0 - 2.0 * (pop % 2)).float() * n**-0.5  # symmetric, orthonormal


def softmax_scale(c: Config):
    m = 0.1 * math.log(c.rope_factor) + 1.0 if c.rope_factor > 1 else 1.0
    return c.qk_head_dim**-0.5 * m * m


# ---------------------------------------------------------------------------------------------
# Lightning indexer
# ---------------------------------------------------------------------------------------------
class Indexer(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.c = c
        hi, di = c.index_n_heads, c.index_head_dim
        self.wq_b = Fp8Linear(c.q_lora_rank, hi * di)
        self.wk = Fp8Linear(c.hidden_size, di)
        self.k_norm = nn.LayerNorm(di, eps=1e-6)
        self.weights_proj = Bf16Linear(c.hidden_size, hi)
        self.register_buffer("hadamard", hadamard_matrix(di), persistent=False)

    def project(self, x, qr, cos, sin, quantise):
        """q [B,L,hi,di], k [B,L,di] (post-RoPE, post-Hadamard, FP8-rounded when `quantise`)
        and the head weights w [B,L,hi] with every constant folded in."""
        c = self.c
        B, L, _ = x.shape
        hi, di, r = c.index_n_heads, c.index_head_dim, c.qk_rope_head_dim
        q = self.wq_b(qr).float().view(B, L, hi, di)
        q = torch.cat((rope_halves(q[..., :r], cos.unsqueeze(-2), sin.unsqueeze(-2)), q[..., r:]), -1)
        k = self.k_norm(self.wk(x).float())
        k = torch.cat((rope_halves(k[..., :r], cos, sin), k[..., r:]), -1)
        q, k = q @ self.hadamard, k @ self.hadamard
        block = min(128, di)
        if quantise:  # the engine's FP8 scoring; straight-through for the gradient
            q, k = act_quant_ste(q, block), act_quant_ste(k, block)
        w = self.weights_proj(x.float()).float() * (hi**-0.5 * di**-0.5)  # [B,L,hi]
        return q, k, w

    @staticmethod
    def scores(q, k, w, s0, s1):
        """I [B, s1-s0, s1] for queries s0..s1-1 over keys 0..s1-1 (f32, -inf where t > p)."""
        B, _, hi, di = q.shape
        C = s1 - s0
        dt = torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else torch.float32
        out = []
        for b in range(B):  # [C*hi, di] · [di, s1]: one 2-D product per sequence
            dots = torch.mm(q[b, s0:s1].reshape(C * hi, di).to(dt), k[b, :s1].T.to(dt))
            out.append((dots.float().relu().view(C, hi, s1) * w[b, s0:s1, :, None]).sum(1))
        future = torch.ones(C, s1, dtype=torch.bool).triu(s0 + 1)
        return torch.stack(out).masked_fill(future, float("-inf"))


def topk_mask(scores, k, s0=0, exact_ties=False):
    """Boolean [B,C,N] of the selected keys for queries p = s0..s0+C-1: the top min(k, p+1)
    causal keys by score (`scores` has -inf where t > p). With `exact_ties`, equal scores go
    to the lower key index (the engine's rule); training leaves exact ties to torch.topk."""
    B, C, N = scores.shape
    causal = torch.ones(C, N, dtype=torch.bool).tril(s0)
    if k >= N:
        return causal.expand(B, C, N)
    if exact_ties:
        idx = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]
    else:
        idx = torch.topk(scores, k, dim=-1, sorted=False).indices  # [B,C,k]
    sel = torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, idx, True)
    return sel & causal


# ---------------------------------------------------------------------------------------------
# MLA
# ---------------------------------------------------------------------------------------------
class MLA(nn.Module):
    def __init__(self, c: Config, layer: int):
        super().__init__()
        self.c = c
        self.layer = layer
        H = c.num_attention_heads
        self.wq_a = Fp8Linear(c.hidden_size, c.q_lora_rank)
        self.q_norm = RMSNorm(c.q_lora_rank, c.rms_norm_eps)
        self.wq_b = Fp8Linear(c.q_lora_rank, H * c.qk_head_dim)
        self.wkv_a = Fp8Linear(c.hidden_size, c.kv_lora_rank + c.qk_rope_head_dim)
        self.kv_norm = RMSNorm(c.kv_lora_rank, c.rms_norm_eps)
        self.wkv_b = Fp8Linear(c.kv_lora_rank, H * (c.qk_nope_head_dim + c.v_head_dim))
        self.wo = Fp8Linear(H * c.v_head_dim, c.hidden_size,
                            std=(H * c.v_head_dim) ** -0.5 / math.sqrt(2 * c.num_hidden_layers))
        self.indexer = Indexer(c)
        self.scale = softmax_scale(c)

    def forward(self, x, cos, sin, mode):
        """mode: dict(attention='dense'|'dsa', kl=None|'dense'|'sparse', quantise=bool).
        Returns (out [B,L,D], kl_loss or None)."""
        c = self.c
        B, L, _ = x.shape
        H, dn, dr, dv = c.num_attention_heads, c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim
        qr = self.q_norm(self.wq_a(x))  # [B,L,q_lora]
        q = self.wq_b(qr).view(B, L, H, dn + dr)
        q_nope, q_pe = q[..., :dn], rope_interleaved(q[..., dn:], cos.unsqueeze(-2), sin.unsqueeze(-2))
        kv = self.wkv_a(x)
        ckv = self.kv_norm(kv[..., : c.kv_lora_rank])  # [B,L,kv_lora]
        k_pe = rope_interleaved(kv[..., c.kv_lora_rank:], cos, sin)  # [B,L,dr]
        kvb = self.wkv_b(ckv).view(B, L, H, dn + dv)
        k_nope, v = kvb[..., :dn], kvb[..., dn:]
        # Per-head [q_nope | q_pe] · [k_nope | k_pe]: one 2-D product per (batch, head), which
        # runs through oneDNN in bf16 (batched products do not, on this torch).
        qh = torch.cat((q_nope, q_pe.to(q_nope.dtype)), -1).transpose(1, 2)  # [B,H,L,dn+dr]
        kh = torch.cat((k_nope, k_pe.to(k_nope.dtype)[:, :, None].expand(B, L, H, dr)), -1)
        kh = kh.transpose(1, 2)  # [B,H,L,dn+dr]
        vh = v.transpose(1, 2)  # [B,H,L,dv]
        use_index = mode["attention"] == "dsa" or mode["kl"] is not None
        if use_index:
            xi, qri = (x.detach(), qr.detach()) if mode["kl"] else (x, qr)
            iq, ik, iw = self.indexer.project(xi, qri, cos, sin, mode["quantise"])
        outs, kl_sum = [], 0.0
        # bf16 under autocast (scores and softmax in bf16, as DeepSeek's reference), else f32.
        dt = torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else torch.float32
        qs, ks, vs = (qh * self.scale).to(dt), kh.to(dt), vh.to(dt)
        # Queries in chunks of ATTN_CHUNK over their causal keys only (about half the work of
        # a full L×L product at long lengths, and a bounded score matrix); one 2-D product
        # chain per (sequence, head), which is several times faster than batched products here.
        for s0 in range(0, L, ATTN_CHUNK):
            s1 = min(L, s0 + ATTN_CHUNK)
            allowed = torch.ones(s1 - s0, s1, dtype=torch.bool).tril(s0).expand(B, -1, -1)
            same = None
            if mode.get("doc") is not None:  # packed documents: no attention across them
                doc = mode["doc"]
                same = doc[:, s0:s1, None] == doc[:, None, :s1]  # [B,C,s1]
                allowed = allowed & same
            forced = mode.get("forced_topk")
            if use_index:
                index_scores = Indexer.scores(iq, ik, iw, s0, s1)  # [B,C,s1]
                if same is not None:
                    index_scores = index_scores.masked_fill(~same, float("-inf"))
                if "record" in mode:
                    mode["record"].setdefault(self.layer, []).append(index_scores.detach())
                if forced is not None:  # a given selection (checking the rest of the layer)
                    allowed = forced[self.layer][:, s0:s1, :s1]
                elif mode["attention"] == "dsa":
                    with torch.no_grad():
                        allowed = topk_mask(index_scores.detach(), c.index_topk, s0,
                                            mode.get("exact_ties", False))
                        if same is not None:
                            allowed = allowed & same
            bias = torch.zeros(allowed.shape, dtype=dt).masked_fill(~allowed, float("-inf"))
            chunk = []
            for b in range(B):
                heads, p_sum = [], 0.0
                for h in range(H):
                    p = torch.softmax(torch.mm(qs[b, h, s0:s1], ks[b, h, :s1].T) + bias[b], -1)
                    heads.append(torch.mm(p, vs[b, h, :s1]))  # [C,dv]
                    if mode["kl"] is not None:
                        p_sum = p_sum + p.detach().float()
                chunk.append(torch.stack(heads))
                if mode["kl"] is not None:
                    # Target: the main attention summed over heads, L1-normalised (detached).
                    target = p_sum / p_sum.sum(-1, keepdim=True)
                    ok = allowed[b]
                    logq = torch.log_softmax(index_scores[b].masked_fill(~ok, float("-inf")), -1)
                    logq = logq.masked_fill(~ok, 0.0)
                    logt = torch.log(target.clamp(min=1e-30)).masked_fill(~ok, 0.0)
                    kl_sum = kl_sum + (target * (logt - logq)).sum()
            outs.append(torch.stack(chunk))  # [B,H,C,dv]
        o = torch.cat(outs, dim=2).transpose(1, 2).reshape(B, L, H * dv).to(v.dtype)
        out = self.wo(o)
        kl = kl_sum / (B * L) if mode["kl"] is not None else None
        return out, kl


# ---------------------------------------------------------------------------------------------
# FFN / MoE
# ---------------------------------------------------------------------------------------------
class MLP(nn.Module):
    def __init__(self, dim, inter, n_layers):
        super().__init__()
        self.w1 = Fp8Linear(dim, inter)
        self.w3 = Fp8Linear(dim, inter)
        self.w2 = Fp8Linear(inter, dim, std=inter**-0.5 / math.sqrt(2 * n_layers))

    def forward(self, x):
        return self.w2(F.silu(self.w1(x).float()).to(x.dtype) * self.w3(x))


class Gate(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.c = c
        self.weight = nn.Parameter(torch.empty(c.n_routed_experts, c.hidden_size))
        nn.init.normal_(self.weight, std=c.hidden_size**-0.5)
        # Aux-loss-free balancing bias: used for selection only, updated outside the gradient.
        self.register_buffer("bias", torch.zeros(c.n_routed_experts))

    def forward(self, x):
        """x [T,D] → (expert ids [T,k], weights [T,k] f32)."""
        c = self.c
        s = torch.sigmoid(F.linear(x.float(), self.weight.float()))  # [T,E]
        b = s + self.bias
        T, E = s.shape
        if c.n_group > 1:
            g = b.view(T, c.n_group, E // c.n_group).topk(2, dim=-1).values.sum(-1)  # [T,G]
            keep = g.topk(c.topk_group, dim=-1).indices
            gmask = torch.ones(T, c.n_group, dtype=torch.bool).scatter_(1, keep, False)
            b = b.masked_fill(gmask.repeat_interleave(E // c.n_group, dim=1), float("-inf"))
        idx = b.topk(c.num_experts_per_tok, dim=-1).indices
        w = s.gather(1, idx)
        w = w / w.sum(-1, keepdim=True) * c.routed_scaling_factor
        return idx, w


class MoE(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.c = c
        self.gate = Gate(c)
        self.experts = nn.ModuleList(MLP(c.hidden_size, c.moe_intermediate_size,
                                         c.num_hidden_layers) for _ in range(c.n_routed_experts))
        self.shared_experts = MLP(c.hidden_size, c.n_shared_experts * c.moe_intermediate_size,
                                  c.num_hidden_layers)
        self.load = None  # tokens per expert in the last forward (for the balancing update)

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        idx, w = self.gate(x)
        y = torch.zeros(x.shape, dtype=torch.float32)
        counts = torch.bincount(idx.flatten(), minlength=self.c.n_routed_experts)
        self.load = counts.detach()
        for e in range(self.c.n_routed_experts):
            if counts[e] == 0:
                continue
            tok, slot = torch.nonzero(idx == e, as_tuple=True)
            ye = self.experts[e](x[tok]).float() * w[tok, slot, None]
            y.index_add_(0, tok, ye)
        y = y + self.shared_experts(x).float()
        return y.view(shape)


class Block(nn.Module):
    def __init__(self, c: Config, layer: int):
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.attn = MLA(c, layer)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.moe = layer >= c.first_k_dense_replace
        self.ffn = MoE(c) if self.moe else MLP(c.hidden_size, c.intermediate_size,
                                                   c.num_hidden_layers)

    def forward(self, h, cos, sin, mode):
        a, kl = self.attn(self.input_layernorm(h), cos, sin, mode)
        h = h + a.float()
        h = h + self.ffn(self.post_attention_layernorm(h)).float()
        return h, kl


class MTP(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.enorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.hnorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.eh_proj = Bf16Linear(2 * c.hidden_size, c.hidden_size)
        self.block = Block(c, c.num_hidden_layers)
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)


class Transformer(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.c = c
        self.embed = nn.Embedding(c.vocab_size, c.hidden_size)
        nn.init.normal_(self.embed.weight, std=1.0)
        self.layers = nn.ModuleList(Block(c, i) for i in range(c.num_hidden_layers))
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.head = Bf16Linear(c.hidden_size, c.vocab_size, std=c.hidden_size**-0.5)
        self.mtp = MTP(c) if c.num_nextn_predict_layers else None

    def moe_layers(self):
        blocks = list(self.layers) + ([self.mtp.block] if self.mtp else [])
        return [b.ffn for b in blocks if b.moe]

    def forward(self, tokens, mode, with_mtp=True):
        """tokens [B,L] → (logits [B,L,V], mtp_logits [B,L-1,V] or None, kl sum or None).
        MTP row i (inputs: token i+1 and the main hidden i) predicts token i+2.
        mode["documents"]: the rows pack documents that each start with BOS; every document
        is then attended to and positioned (RoPE from 0) on its own, as the engine runs it."""
        B, L = tokens.shape
        cos, sin = rope_freqs(self.c, L)
        if mode.get("documents"):
            idx = torch.arange(L).expand(B, L)
            starts = torch.where(tokens == self.c.bos_token_id, idx, torch.zeros_like(idx))
            pos = idx - starts.cummax(1).values  # position within the document
            cos, sin = cos[pos], sin[pos]  # [B,L,rope/2]
            doc = (tokens == self.c.bos_token_id).long().cumsum(1)
            mode = dict(mode, doc=doc)
        h = self.embed(tokens).float()
        kls = []
        for blk in self.layers:
            h, kl = blk(h, cos, sin, mode)
            if kl is not None:
                kls.append(kl)
        g = self.norm(h)  # [B,L,D]
        logits = self.head(g)
        mtp_logits = None
        if with_mtp and self.mtp is not None and L > 1:
            m = self.mtp
            e = m.enorm(self.embed(tokens[:, 1:]).float())
            x0 = m.eh_proj(torch.cat((e, m.hnorm(g[:, :-1])), dim=-1)).float()
            mmode = dict(mode, doc=mode["doc"][:, : L - 1]) if mode.get("doc") is not None \
                else mode
            hm, kl = m.block(x0, cos[..., : L - 1, :], sin[..., : L - 1, :], mmode)
            if kl is not None:
                kls.append(kl)
            mtp_logits = self.head(m.norm(hm))
        kl = torch.stack(kls).sum() if kls else None
        return logits, mtp_logits, kl
