#!/usr/bin/python3
"""The generator's `tiny` preset through the independent NumPy reference.

`dsinfer gen-model --preset tiny --seed 1` (vocabulary reduced to 1024 to keep the test fast) must
produce a checkpoint that this folder's reader and forward pass accept, and whose activations stay
O(1) with router / indexer decisions far from f32-level near-ties, so that the C++ engine can be
compared with the reference without spurious top-k flips:
  * logits (300 tokens, DSA) and MTP logits finite;
  * hidden RMS of every layer in [0.5, 2];
  * indexer score spread (median per-row std) > 0.1;
  * router: smallest gap at the kept/dropped group boundary and at the k-th/(k+1)-th expert
    > 1e-5 (f32 rounding noise of the biased scores is ~1e-7).

Usage: check_gen_tiny.py DSINFER_BINARY    (exit 0 = all hold; 1 = a violation)
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dsv32_ref as ref  # noqa: E402


def check(folder):
    problems = []
    model = ref.Model(folder)
    ids = list(np.random.default_rng(1).integers(0, model.cfg.vocab_size, 300))
    logits, g = model.forward(ids)
    mtp = model.mtp(ids, g) if model.has_mtp() else np.zeros((0, 1), np.float32)
    if not (np.isfinite(logits).all() and np.isfinite(mtp).all()):
        problems.append("non-finite logits")
    print("hidden RMS per layer:", " ".join(f"{r:.4g}" for r in model.hidden_rms))
    for i, r in enumerate(model.hidden_rms):
        if not 0.5 <= r <= 2.0:
            problems.append(f"layer {i}: hidden RMS {r:.4g} outside [0.5, 2]")
    for layer, stats in sorted(model.stats.items()):
        print(f"L{layer}:", " ".join(f"{k}={v:.4g}" for k, v in stats.items()))
        if stats.get("index_spread", 1.0) <= 0.1:
            problems.append(f"layer {layer}: indexer score spread {stats['index_spread']:.3g} <= 0.1")
        for key in ("group_gap_min", "expert_gap_min"):
            if key in stats and stats[key] <= 1e-5:
                problems.append(f"layer {layer}: router {key} {stats[key]:.3g} <= 1e-5 (near-tie)")
    return problems


def main(argv):
    ap = argparse.ArgumentParser(description="the tiny preset through the NumPy reference")
    ap.add_argument("binary")
    a = ap.parse_args(argv[1:])
    with tempfile.TemporaryDirectory(prefix="gen_tiny_") as tmp:
        folder = os.path.join(tmp, "tiny")
        subprocess.run([a.binary, "gen-model", "--preset", "tiny", "--seed", "1", "--set", "vocab_size=1024",
                        "--out", folder], check=True, capture_output=True, timeout=300)
        problems = check(folder)
    for p in problems:
        print("PROBLEM:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
