"""Trains the demo model in DeepSeek-V3.2's stages (docs/train.md has every hyperparameter).

  dense   — the whole model (not the indexer) with dense attention, next-token + MTP loss,
            aux-loss-free router balancing (a per-expert bias nudged toward the mean load).
  warmup  — indexer warm-up: everything else frozen, dense attention, the indexer trained on the
            KL divergence to the main attention (summed over heads, L1-normalised).
  sparse  — top-k selection active (DSA): the model trained on the selected tokens (LM + MTP
            loss), the indexer on the KL over the selected set, its input detached.

Usage: train.py --stage dense|warmup|sparse --data DIR --out CKPT [--init CKPT] [--steps N] ...
Data: DIR/train.bin (uint16 token ids, documents back to back, each starting with BOS) and
DIR/train_docs.npy (int64 start offset of every document).
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import Config, Transformer  # noqa: E402
from tokenizer import END_THINK, SPECIAL_TOKENS  # noqa: E402


# ---------------------------------------------------------------------------------------------
# Data: documents packed into rows of two lengths (short and long), never cut
# ---------------------------------------------------------------------------------------------
class Packer:
    """Packs whole documents into rows: documents longer than `short` get a `long` row each
    (topped up with short documents), the others share `short` rows. Padding is masked."""

    def __init__(self, data_dir, short, long, seed, pad_id):
        self.ids = np.memmap(os.path.join(data_dir, "train.bin"), dtype=np.uint16, mode="r")
        starts = np.load(os.path.join(data_dir, "train_docs.npy")).astype(np.int64)
        ends = np.append(starts[1:], len(self.ids))
        lens = ends - starts
        keep = lens <= long
        if not keep.all():
            print(f"train: {int((~keep).sum())} documents longer than {long} tokens skipped",
                  file=sys.stderr)
        self.starts, self.lens = starts[keep], lens[keep]
        if not len(self.starts):
            sys.exit(f"train: {data_dir} has no document of at most {long} tokens")
        self.short, self.long, self.pad = short, long, pad_id
        self.rng = np.random.default_rng(seed)
        self.long_docs = np.nonzero(self.lens > short)[0]
        self.short_docs = np.nonzero(self.lens <= short)[0]
        self.long_tokens = int(self.lens[self.long_docs].sum())
        self.short_tokens = int(self.lens[self.short_docs].sum())
        self._pos = {"short": 0, "long": 0}
        self._order = {"short": self.rng.permutation(self.short_docs),
                       "long": self.rng.permutation(self.long_docs)}

    def _next(self, pool):
        """The next document of `pool` ("short" or "long"), reshuffled after each pass."""
        docs = self.short_docs if pool == "short" else self.long_docs
        if self._pos[pool] >= len(self._order[pool]):
            self._order[pool], self._pos[pool] = self.rng.permutation(docs), 0
        d = self._order[pool][self._pos[pool]]
        self._pos[pool] += 1
        return d

    def _row(self, length, first=None):
        row = np.full(length, self.pad, dtype=np.int64)
        mask = np.zeros(length, dtype=bool)
        n = 0
        docs = [first] if first is not None else []
        while True:
            d = docs.pop() if docs else self._next("short")
            ln = int(self.lens[d])
            if n + ln > length:
                break
            row[n:n + ln] = self.ids[self.starts[d]:self.starts[d] + ln]
            mask[n:n + ln] = True
            n += ln
        return row, mask

    def batch(self, kind, rows):
        length = self.long if kind == "long" else self.short
        out = [self._row(length, self._next("long") if kind == "long" else None)
               for _ in range(rows)]
        tok = torch.from_numpy(np.stack([r for r, _ in out]))
        mask = torch.from_numpy(np.stack([m for _, m in out]))
        return tok, mask


# ---------------------------------------------------------------------------------------------
# The retrieval probe
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def retrieval_accuracy(model, rows, mode, pad_id):
    """Share of held-out pass key prompts whose next-token argmax is the answer's first token
    (data.py's probe_retrieval.json: prompts right-padded into one batch)."""
    if not rows:
        return float("nan")
    L = max(len(r["ids"]) for r in rows)
    tok = torch.full((len(rows), L), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        tok[i, :len(r["ids"])] = torch.tensor(r["ids"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(tok, mode, with_mtp=False)[0]
    last = torch.tensor([len(r["ids"]) - 1 for r in rows])
    pred = logits[torch.arange(len(rows)), last].argmax(-1)
    return float((pred == torch.tensor([r["answer"] for r in rows])).float().mean())


# ---------------------------------------------------------------------------------------------
# Training loop
# ---------------------------------------------------------------------------------------------
END_THINK_ID = SPECIAL_TOKENS.index(END_THINK)


def answer_targets(tok, bos_id, eos_id):
    """[B, L-1] bool: target t+1 is part of an assistant answer — after the latest `</think>`
    with no BOS or EOS since (the answer's EOS included)."""
    L = tok.shape[1]
    idx = torch.arange(L).expand_as(tok)
    zero = torch.zeros_like(idx)
    last_end = torch.where(tok == END_THINK_ID, idx, zero - 1).cummax(1).values
    last_cut = torch.where((tok == bos_id) | (tok == eos_id), idx, zero - 1).cummax(1).values
    return (last_end > last_cut)[:, :-1]


def lm_losses(model, tok, mask, mode, mtp_weight, answer_weight=1.0):
    logits, mtp_logits, kl = model(tok, mode, with_mtp=mtp_weight > 0)
    V = logits.shape[-1]
    valid = mask[:, 1:] & mask[:, :-1]
    lm = F.cross_entropy(logits[:, :-1].reshape(-1, V).float(), tok[:, 1:].reshape(-1),
                         reduction="none")
    weight = valid.float()
    if answer_weight != 1.0:  # the answers' tokens count answer_weight times (--answer-weight)
        c = model.c
        weight = weight * torch.where(answer_targets(tok, c.bos_token_id, c.eos_token_id),
                                      answer_weight, 1.0)
    lm = (lm * weight.reshape(-1)).sum() / valid.sum().clamp(min=1)
    # The first token of every answer (the one after `</think>`): how many the model predicts
    # (argmax, before this step's update), the retrieval curriculum's measure.
    first = valid & (tok[:, :-1] == END_THINK_ID)
    with torch.no_grad():
        hits = (logits[:, :-1].argmax(-1) == tok[:, 1:]) & first
    answers = (int(hits.sum()), int(first.sum()))
    mtp = torch.zeros(())
    if mtp_logits is not None:
        mvalid = mask[:, 2:] & mask[:, 1:-1] & mask[:, :-2]
        mtp = F.cross_entropy(mtp_logits[:, :-1].reshape(-1, V).float(), tok[:, 2:].reshape(-1),
                              reduction="none")
        mtp = (mtp * mvalid.reshape(-1)).sum() / mvalid.sum().clamp(min=1)
    return lm, mtp, kl, answers


def param_groups(model, stage, weight_decay):
    """Which parameters a stage trains: dense — all but the indexers; warmup — only the
    indexers; sparse — all. Norms, biases and the embedding get no weight decay."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        is_indexer = ".indexer." in name
        train = (stage == "dense" and not is_indexer) or (stage == "warmup" and is_indexer) \
            or stage == "sparse"
        p.requires_grad_(train)
        if not train:
            continue
        (decay if p.dim() == 2 and "embed" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def balance_update(model, gamma):
    """Aux-loss-free balancing (DeepSeek-V3): bias += γ·sign(mean load − load) per expert."""
    for moe in model.moe_layers():
        if moe.load is None:
            continue
        load = moe.load.float()
        moe.gate.bias += gamma * torch.sign(load.mean() - load)
        moe.load = None


def lr_at(step, steps, peak, warmup, time_frac=0.0):
    """Linear warm-up over `warmup` steps, then a cosine from the peak down to 10% of it as the
    stage's budget is spent: the larger of the fraction of its steps and `time_frac`, the
    fraction of its wall-time cap (so a time-capped stage still ends annealed)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = min(1.0, max((step - warmup) / max(1, steps - warmup), time_frac))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))  # cosine to 10%


def curriculum_phase(args, name, warm_up, model, opt, train_step, t0):
    """Trains on the pass key documents of DATA/name (one of data.py's curriculum sets) until
    the model answers them: a small model trained on the mix sits at chance on retrieval for
    the whole stage; with ten distinct keys it learns to fetch the key in ~40 steps, then to
    map all 90 keys, then keys in more filler (docs/train.md, "The retrieval curriculum").
    The LR warms up over 20 steps in the first set only. Returns the steps and tokens used."""
    cur = Packer(os.path.join(args.data, name), args.curriculum_len, args.curriculum_len,
                 args.seed + 2, pad_id=model.c.eos_token_id)
    window, tokens, step = [], 0, 0
    for step in range(args.curriculum_steps):
        for g in opt.param_groups:
            g["lr"] = args.curriculum_lr * (min(1.0, (step + 1) / 20) if warm_up else 1.0)
        tok, mask = cur.batch("short", args.curriculum_rows)
        lm, _, _, answers = train_step(tok, mask)
        tokens += int(mask.sum())
        window = (window + [answers])[-10:]
        acc = sum(h for h, _ in window) / max(1, sum(n for _, n in window))
        if (step + 1) % args.log_every == 0:
            print(f"train[{name}] step {step + 1}/{args.curriculum_steps} lm {lm.item():.4f} "
                  f"answer-acc {acc:.3f} elapsed {(time.time() - t0) / 60:.1f} min", flush=True)
        if len(window) == 10 and acc >= args.curriculum_target:
            break
    print(f"train[{name}]: {step + 1} steps, answer accuracy {acc:.3f} over the last "
          f"{len(window)}, {(time.time() - t0) / 60:.1f} min", flush=True)
    return step + 1, tokens


def save(args, cfg, model, meta, step, tokens, elapsed):
    """Writes the checkpoint atomically with this stage's record appended."""
    record = {"stage": args.stage, "steps": step + 1, "tokens": tokens,
              "minutes": round(elapsed / 60, 2), "args": vars(args)}
    meta = dict(meta, stages=meta["stages"] + [record])
    torch.save({"config": cfg.to_dict(), "model": model.state_dict(), "meta": meta},
               args.out + ".tmp")
    os.replace(args.out + ".tmp", args.out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--stage", choices=["dense", "warmup", "sparse"], required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--init", help="checkpoint to continue from (required after dense)")
    ap.add_argument("--config", help="JSON of Config fields overriding the defaults (dense)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--minutes", type=float, default=0, help="stop after this wall time")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup-steps", type=int, default=50)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--short", type=int, default=512, help="short row length")
    ap.add_argument("--long", type=int, default=2816, help="long row length")
    ap.add_argument("--short-rows", type=int, default=8)
    ap.add_argument("--long-rows", type=int, default=2)
    ap.add_argument("--long-every", type=int, default=2, help="a long batch every N steps")
    ap.add_argument("--mtp-weight", type=float, default=0.3)
    ap.add_argument("--answer-weight", type=float, default=1.0,
                    help="LM loss weight of the assistant answers' tokens (after </think>)")
    ap.add_argument("--kl-weight", type=float, default=1.0)
    ap.add_argument("--balance-gamma", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--curriculum-steps", type=int, default=0,
                    help="dense stage: the retrieval curriculum first, each of its sets for at "
                         "most this many steps, ended early once the first answer token's "
                         "accuracy over 10 steps reaches --curriculum-target (0: none)")
    ap.add_argument("--curriculum-sets", default="curriculum/ten_keys,curriculum/all_keys,drill",
                    help="comma-separated subdirectories of DATA (data.py's) run in turn as the "
                         "curriculum")
    ap.add_argument("--curriculum-target", type=float, default=0.9)
    ap.add_argument("--curriculum-lr", type=float, default=3e-3,
                    help="the curriculum's LR (after a 20-step linear warm-up)")
    ap.add_argument("--curriculum-rows", type=int, default=8)
    ap.add_argument("--curriculum-len", type=int, default=256, help="its row length")
    ap.add_argument("--drill-every", type=int, default=0,
                    help="every Nth step of the stage is a batch of DATA/drill (the mix's pass "
                         "key documents) instead of the mix (0: never)")
    ap.add_argument("--drill-long-every", type=int, default=0,
                    help="every Nth drill batch is --long-rows long rows, each holding one long "
                         "pass key document (0: the drill is short documents only)")
    ap.add_argument("--probe-every", type=int, default=100,
                    help="print the accuracy on the held-out pass key prompts every N steps")
    ap.add_argument("--save-every-min", type=float, default=10,
                    help="also save the checkpoint every this many minutes")
    args = ap.parse_args()

    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    torch.manual_seed(args.seed)
    if args.init:
        ck = torch.load(args.init)
        cfg = Config(**ck["config"])
        model = Transformer(cfg)
        model.load_state_dict(ck["model"])
        meta = ck.get("meta", {})
    else:
        if args.stage != "dense":
            sys.exit("train.py: --init is required for the warmup and sparse stages")
        cfg = Config(**(json.load(open(args.config)) if args.config else {}))
        model = Transformer(cfg)
        # The pre-warm-up indexer, kept for the ablation (DSA with an untrained indexer).
        meta = {}
    if args.stage == "dense" and "indexer_init" not in meta:
        meta["indexer_init"] = {k: v.clone() for k, v in model.state_dict().items()
                                if ".indexer." in k}
    meta.setdefault("stages", [])

    packer = Packer(args.data, args.short, args.long, args.seed + 1, pad_id=cfg.eos_token_id)
    print(f"train[{args.stage}]: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, "
          f"data {packer.short_tokens + packer.long_tokens} tokens "
          f"({len(packer.long_docs)} long docs, {len(packer.short_docs)} short)", flush=True)
    opt = torch.optim.AdamW(param_groups(model, args.stage, args.weight_decay), lr=args.lr,
                            betas=(0.9, 0.95), eps=1e-8)
    attention = "dsa" if args.stage == "sparse" else "dense"
    kl_mode = None if args.stage == "dense" else args.stage
    # documents=True: a packed row's documents do not see each other and each starts at
    # position 0, as every prompt does in the engine (docs/train.md, "Document masking").
    mode = dict(attention=attention, kl=kl_mode, quantise=True, documents=True)
    t0 = last_save = time.time()
    tokens_seen = 0
    probe_mode = dict(mode, kl=None)
    probe_path = os.path.join(args.data, "probe_retrieval.json")
    retrieval_probe = json.load(open(probe_path)) if os.path.exists(probe_path) else {}

    def probe_line():
        parts = []
        for name, rows in retrieval_probe.items():
            r = retrieval_accuracy(model, rows, probe_mode, cfg.eos_token_id)
            parts.append(f"{name}-acc {r:.3f} ({len(rows)})")
        return " ".join(parts) or f"(no {probe_path})"

    def train_step(tok, mask):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lm, mtp, kl, answers = lm_losses(model, tok, mask, mode, args.mtp_weight,
                                             args.answer_weight)
            if args.stage == "warmup":  # only the indexers train: the KL is the whole loss
                loss = args.kl_weight * kl
            else:
                loss = lm + args.mtp_weight * mtp
                if kl is not None:
                    loss = loss + args.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
        opt.step()
        if args.stage != "warmup":
            balance_update(model, args.balance_gamma)
        return lm, mtp, kl, answers

    print(f"train[{args.stage}] probe {probe_line()} at the start", flush=True)
    if args.stage == "dense" and args.curriculum_steps > 0:
        for i, name in enumerate(args.curriculum_sets.split(",")):
            tokens_seen += curriculum_phase(args, name, i == 0, model, opt, train_step, t0)[1]
        opt.state.clear()  # the main schedule starts afresh (AdamW moments of the curriculum)
    drill = Packer(os.path.join(args.data, "drill"), args.short, args.long, args.seed + 3,
                   pad_id=cfg.eos_token_id) if args.drill_every else None
    if drill is not None and args.drill_long_every and not len(drill.long_docs):
        sys.exit(f"train: --drill-long-every needs long pass key documents (over {args.short} "
                 f"tokens) in {os.path.join(args.data, 'drill')}; it has none")
    log = {"lm": 0.0, "mtp": 0.0, "kl": 0.0, "n": 0, "drill": [0, 0]}
    # First answer tokens right and answers, of all drill batches and of the long ones; batches.
    drill_total = {"all": [0, 0], "long": [0, 0], "batches": 0, "long_batches": 0}
    step = 0
    for step in range(args.steps):
        if args.minutes and time.time() - t0 > args.minutes * 60:
            print(f"train[{args.stage}]: time budget reached at step {step}", flush=True)
            break
        is_drill = drill is not None and step % args.drill_every == args.drill_every - 1
        drill_long = (is_drill and args.drill_long_every > 0 and
                      drill_total["batches"] % args.drill_long_every == 0)
        if drill_long:
            tok, mask = drill.batch("long", args.long_rows)
        elif is_drill:
            tok, mask = drill.batch("short", args.short_rows)
        else:
            kind = "long" if (len(packer.long_docs) and step % args.long_every == 0) else "short"
            tok, mask = packer.batch(kind, args.long_rows if kind == "long" else args.short_rows)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr, args.warmup_steps,
                            (time.time() - t0) / (args.minutes * 60) if args.minutes else 0.0)
        lm, mtp, kl, answers = train_step(tok, mask)
        if is_drill:
            log["drill"] = [log["drill"][0] + answers[0], log["drill"][1] + answers[1]]
            for key in ("all", "long") if drill_long else ("all",):
                drill_total[key] = [drill_total[key][0] + answers[0],
                                    drill_total[key][1] + answers[1]]
            drill_total["batches"] += 1
            drill_total["long_batches"] += int(drill_long)
        tokens_seen += int(mask.sum())
        log["lm"] += lm.item()
        log["mtp"] += mtp.item()
        log["kl"] += kl.item() if kl is not None else 0.0
        log["n"] += 1
        if (step + 1) % args.log_every == 0:
            n = log["n"]
            el = time.time() - t0
            print(f"train[{args.stage}] step {step + 1}/{args.steps} lm {log['lm'] / n:.4f} "
                  f"mtp {log['mtp'] / n:.4f} kl {log['kl'] / n:.4f} "
                  f"lr {opt.param_groups[0]['lr']:.2e} tok/s {tokens_seen / el:.0f} "
                  f"elapsed {el / 60:.1f} min" +
                  (f" drill answer-acc {log['drill'][0] / max(1, log['drill'][1]):.3f}"
                   if drill is not None else ""), flush=True)
            log = {"lm": 0.0, "mtp": 0.0, "kl": 0.0, "n": 0, "drill": [0, 0]}
        if args.probe_every and (step + 1) % args.probe_every == 0:
            print(f"train[{args.stage}] step {step + 1} probe {probe_line()}", flush=True)
        if time.time() - last_save > args.save_every_min * 60:
            save(args, cfg, model, meta, step, tokens_seen, time.time() - t0)
            last_save = time.time()
    elapsed = time.time() - t0
    save(args, cfg, model, meta, step, tokens_seen, elapsed)
    print(f"train[{args.stage}]: {step + 1} steps, {tokens_seen} tokens in {elapsed / 60:.1f} min "
          f"-> {args.out}", flush=True)
    if drill is not None:
        acc = {k: drill_total[k][0] / max(1, drill_total[k][1]) for k in ("all", "long")}
        print(f"train[{args.stage}]: {drill_total['batches']} drill batches, answer accuracy "
              f"{acc['all']:.3f}; {drill_total['long_batches']} of them long rows, answer accuracy "
              f"{acc['long']:.3f}", flush=True)


if __name__ == "__main__":
    main()
