"""Can a model learn to copy? The diagnostic behind docs/train.md, "Copying first".

Rows: BOS, N random tokens, a separator, the same N tokens. Trained with AdamW on the LM loss of
the whole row; prints the loss and accuracy on the copied half. Copy accuracy stays at chance
and then jumps when the copying (induction) mechanism forms; the step where it does is the
figure to compare.

  /usr/bin/python3 tools/train/copy_diag.py [--model ours|plain] [--layers 4] [--no-moe]
      [--lr 1e-3] [--steps 1200] [--f32]

`ours` is tools/train/model.py (MLA, RoPE, MoE, FP8 fake quantisation); `plain` a pre-norm
torch.nn.TransformerEncoder of the same width with learned positions (the control).
"""
import argparse
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import Config, Transformer  # noqa: E402

V, N, B = 512, 24, 16


class Plain(nn.Module):
    def __init__(self, layers, d=256, heads=4):
        super().__init__()
        self.emb, self.pos = nn.Embedding(V, d), nn.Embedding(2 * N + 2, d)
        layer = nn.TransformerEncoderLayer(d, heads, 4 * d, 0.0, batch_first=True,
                                           norm_first=True)
        self.tr, self.ln, self.out = nn.TransformerEncoder(layer, layers), nn.LayerNorm(d), \
            nn.Linear(d, V)

    def forward(self, t):
        L = t.shape[1]
        mask = torch.triu(torch.full((L, L), float("-inf")), 1)
        return self.out(self.ln(self.tr(self.emb(t) + self.pos(torch.arange(L)), mask=mask)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["ours", "plain"], default="ours")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--no-moe", action="store_true")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--f32", action="store_true", help="no bf16 autocast")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    if args.model == "ours":
        c = Config(vocab_size=V, num_hidden_layers=args.layers)
        if args.no_moe:
            c.first_k_dense_replace = args.layers
        m = Transformer(c)
        mode = dict(attention="dense", kl=None, quantise=True)

        def run(tok):
            return m(tok, mode, with_mtp=False)[0]
    else:
        m = Plain(args.layers)
        run = m
    opt = torch.optim.AdamW(m.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    t0 = time.time()
    for step in range(args.steps):
        x = torch.randint(10, V - 12, (B, N))
        tok = torch.cat([torch.zeros(B, 1, dtype=torch.long), x, torch.full((B, 1), 5), x], 1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=not args.f32):
            logits = run(tok)
        loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, V), tok[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        if step % 25 == 0:
            copied = logits[:, N + 1:-1].float()
            acc = (copied.argmax(-1) == tok[:, N + 2:]).float().mean().item()
            closs = F.cross_entropy(copied.reshape(-1, V), tok[:, N + 2:].reshape(-1)).item()
            print(f"step {step} copy-loss {closs:.3f} copy-acc {acc:.3f} "
                  f"({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
