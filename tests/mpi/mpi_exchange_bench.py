#!/usr/bin/python3
"""Benchmark: the time per token an expert-parallel job spends in the MoE exchange at N = 2 on
loopback, next to docs/mpi.md's network estimate for the same model (issue #14).

The model is one MoE layer of DeepSeek-V3.2's dimensions (the `layer671b` preset: hidden 7168,
256 routed experts, 8 per token, 128 heads) with a vocabulary of 1024 and the experts' inner
width cut to 128 so the checkpoint stays near 1 GB: the exchange moves rows of `hidden` floats,
so its bytes per token are those of the full model's MoE layers. Runs, each with one thread per
rank: one process (decode), `mpirun -np 2` decode (one exchange per token) and prefill (one
exchange for all tokens). From rank 0's report: bytes received per token (against the estimate
k · hidden · 4 · (N − 1)/N), and the least of the ranks' exchange times (a rank's time includes
waiting for the slower rank; the least is the closest to the transfer itself).

Not a CTest test (timings are measured, never asserted). Usage:
  mpi_exchange_bench.py --dsinfer BIN --dsinfer-mpi BIN --mpirun MPIRUN --work DIR [--tokens 32]
"""

import argparse
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpi_logits_test import ENV, call  # noqa: E402  (the launcher environment)

HIDDEN, K, MOE_LAYERS_671B = 7168, 8, 58
STATS = re.compile(r"in (\d+) expert exchanges and received ([\d.]+) MB \((\d+) bytes per "
                   r"token\); time in the exchanges per rank \(waiting included\): ([^;]+); the "
                   r"least per token: ([\d.]+) us")
RUN = re.compile(r"logits: (\d+) tokens in ([\d.]+) s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsinfer", required=True)
    ap.add_argument("--dsinfer-mpi", required=True)
    ap.add_argument("--mpirun", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--tokens", type=int, default=32)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    model = os.path.join(a.work, "layer671b_narrow_experts")
    if not os.path.exists(os.path.join(model, "config.json")):
        t0 = time.monotonic()
        rc, out, _ = call([a.dsinfer, "gen-model", "--preset", "layer671b", "--seed", "3",
                           "--set", "vocab_size=1024", "--set", "moe_intermediate_size=128",
                           "--out", model, "--force"], timeout=1800)
        assert rc == 0, out
        print(f"generated {model} in {time.monotonic() - t0:.0f} s")
    ids = ",".join(str((i * 37) % 1000 + 3) for i in range(a.tokens))
    base = ["logits", "--model", model, "--ids", ids, "--threads", "1"]
    mpirun = [a.mpirun, "--oversubscribe", "--bind-to", "none", "-np", "2", a.dsinfer_mpi]

    rc, out, _ = call([a.dsinfer] + base + ["--mode", "decode", "--out",
                                            os.path.join(a.work, "one.npy")], timeout=1800)
    m = RUN.search(out)
    assert rc == 0 and m, out[-2000:]
    one = float(m.group(2)) / int(m.group(1))
    print(f"one process, decode: {1e3 * one:.1f} ms per token")

    estimate = K * HIDDEN * 4 * (2 - 1) / 2  # bytes per token per MoE layer, each direction
    print(f"docs/mpi.md estimate at N = 2: {estimate:.0f} bytes per token per MoE layer; "
          + ", ".join(f"{estimate * 8 / (g * 1e9) * 1e6:.1f} us at {g} Gb/s" for g in (10, 25, 100))
          + f" (x {MOE_LAYERS_671B} MoE layers for the whole model)")
    for mode in ("decode", "prefill"):
        rc, out, _ = call(mpirun + base + ["--mode", mode, "--out",
                                           os.path.join(a.work, f"np2.{mode}.npy")], timeout=1800)
        s, r = STATS.search(out), RUN.search(out)
        assert rc == 0 and s and r, out[-2000:]
        tokens, secs = int(r.group(1)), float(r.group(2))
        per_token_bytes, least_us = int(s.group(3)), float(s.group(5))
        rate = per_token_bytes / (least_us * 1e-6) if least_us > 0 else float("inf")
        print(f"mpirun -np 2, {mode}: {1e3 * secs / tokens:.1f} ms per token, "
              f"{s.group(1)} exchanges, {per_token_bytes} bytes received per token "
              f"({per_token_bytes / estimate:.2f} x the estimate; routing decides), exchange time "
              f"per rank {s.group(4).strip()}, least {least_us:.1f} us per token "
              f"({100 * least_us * 1e-6 / (secs / tokens):.1f}% of the step; "
              f"{rate / 1e6:.1f} MB/s effective)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
