"""FP8 (e4m3fn) rounding for training and export, written from docs/model.md §6.

Everything here works on float32 torch tensors and returns float32 values that are exactly
representable as `e4m3 code × scale`:

* `e4m3_round(x)`: round-to-nearest-even onto the e4m3fn grid (1 sign, 4 exponent bits with
  bias 7, 3 mantissa bits, subnormals down to 2^-9, no infinity, saturating at ±448).
* `quant_weight(w)`: the checkpoint's weight format: 128×128 blocks along [out, in], one scale
  per block. We choose power-of-two scales `2^ceil(log2(amax / 448))` so that every dequantised
  weight `code × scale` is also exactly a bf16 number (training runs under bf16 autocast; the
  engine dequantises in f32: both then see the same weight).
* `act_quant(x, block)`: DeepSeek's activation quantisation with ue8m0 scales (§6.2), used by
  the lightning indexer on q and k.
* `fake_quant_weight(w)`: `quant_weight` with a straight-through gradient (quantisation-aware
  training: the model trains on exactly the weights it is exported with).
"""

import torch

E4M3_MAX = 448.0
BLOCK = 128


def e4m3_round(x: torch.Tensor) -> torch.Tensor:
    """Nearest e4m3fn value (ties to even mantissa), saturating to ±448."""
    _, e = torch.frexp(x)  # |x| in [2^(e-1), 2^e)
    # Binade exponent e-1; subnormals share the step of the lowest normal binade (2^-6).
    step = torch.ldexp(torch.ones_like(x), (e - 4).clamp(min=-9))  # 3 mantissa bits
    q = torch.round(x / step) * step  # half to even; x / step is exact
    return q.clamp(-E4M3_MAX, E4M3_MAX)


def pow2_ceil(v: torch.Tensor) -> torch.Tensor:
    """2^ceil(log2(v)) for positive f32 v, exactly (ue8m0 rounding, §6.2)."""
    m, e = torch.frexp(v)  # v = m · 2^e, m in [0.5, 1)
    e = torch.where(m == 0.5, e - 1, e)
    return torch.ldexp(torch.ones_like(v), e)


def _blocks(w: torch.Tensor):
    out, inp = w.shape
    po, pi = (-out) % BLOCK, (-inp) % BLOCK
    wp = torch.nn.functional.pad(w, (0, pi, 0, po))  # zero padding (docs/model.md §6.1)
    ro, ri = wp.shape[0] // BLOCK, wp.shape[1] // BLOCK
    return wp.view(ro, BLOCK, ri, BLOCK), (out, inp)


def quant_weight(w: torch.Tensor):
    """[out, in] f32 → (dequantised f32 [out, in], codes-as-values [out, in], scales [ro, ri])."""
    wb, (out, inp) = _blocks(w.float())
    amax = wb.abs().amax(dim=(1, 3))  # [ro, ri]
    scale = pow2_ceil((amax / E4M3_MAX).clamp(min=2.0**-126))
    codes = e4m3_round(wb / scale[:, None, :, None])
    rows = wb.shape[0] * BLOCK
    deq = (codes * scale[:, None, :, None]).reshape(rows, -1)[:out, :inp]
    return deq, codes.reshape(rows, -1)[:out, :inp], scale


class _FakeQuant(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w):
        return quant_weight(w)[0].to(w.dtype)

    @staticmethod
    def backward(ctx, g):
        return g


def fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    return _FakeQuant.apply(w)


def act_quant(x: torch.Tensor, block: int) -> torch.Tensor:
    """Per-`block` (last dim) e4m3 quantisation with ue8m0 scales, returned dequantised (f32).

    amax = max(max|x_g|, 1e-4); s = 2^ceil(log2(amax · (1/448))); q = e4m3(clamp(x/s, ±448)).
    """
    shape = x.shape
    g = x.float().reshape(*shape[:-1], shape[-1] // block, block)
    amax = g.abs().amax(dim=-1, keepdim=True).clamp(min=1e-4)
    s = pow2_ceil(amax * torch.tensor(1.0 / 448.0, dtype=torch.float32))
    q = e4m3_round((g / s).clamp(-E4M3_MAX, E4M3_MAX))
    return (q * s).reshape(shape)


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, block):
        return act_quant(x, block).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        return g, None


def act_quant_ste(x: torch.Tensor, block: int) -> torch.Tensor:
    return _StraightThrough.apply(x, block)
