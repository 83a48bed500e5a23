#!/usr/bin/python3
"""`dsinfer logits` / `dsinfer run` on bad input: exit status 1 and a message naming the culprit
(never a crash); plus the happy path's output shape and `run`'s greedy determinism.

Usage: cli_errors.py --dsinfer BIN --work DIR
"""

import argparse
import os
import subprocess
import sys

import numpy as np


def call(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return p.returncode, p.stdout, p.stderr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsinfer", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    model = os.path.join(a.work, "tiny")
    if not os.path.exists(os.path.join(model, "config.json")):
        rc, _, err = call([a.dsinfer, "gen-model", "--preset", "tiny", "--seed", "9", "--out", model,
                           "--force", "--set", "vocab_size=512", "--set", "max_position_embeddings=64"])
        assert rc == 0, err
    out = os.path.join(a.work, "out.npy")
    base = [a.dsinfer, "logits", "--out", out]
    with_model = ["--model", model]
    bad = [
        (with_model + ["--ids", "1,512"], "512"),          # id ≥ vocab_size
        (with_model + ["--ids", ""], "no token ids"),
        (with_model + ["--ids", "1,x,3"], "'x'"),
        (with_model + ["--ids", "1,-2"], "'-2'"),
        (with_model + ["--ids", ",".join(["1"] * 65)], "max_position_embeddings"),
        (with_model + ["--ids", "1,2,3", "--mode", "decode", "--prefill-len", "4"], "--prefill-len"),
        (["--ids", "1,2", "--model", os.path.join(a.work, "missing")], "config.json"),
    ]
    failures = 0
    for args, needle in bad:
        cmd = base + args
        rc, _, err = call(cmd)
        ok = rc == 1 and needle in err and "error" in err
        failures += not ok
        print(f"[{'PASS' if ok else 'FAIL'}] {' '.join(args)} -> rc {rc}: {err.strip()[:160]}")
    rc, _, err = call(base + with_model + ["--ids", "3,1,4,1,5", "--mode", "decode", "--prefill-len", "2"])
    shape = np.load(out).shape if rc == 0 else None
    ok = rc == 0 and shape == (5, 512)
    failures += not ok
    print(f"[{'PASS' if ok else 'FAIL'}] logits shape {shape}")
    runs = [call([a.dsinfer, "run", "--model", model, "--ids", "1,2,3", "-n", "5"]) for _ in range(2)]
    ids = runs[0][1].strip().split(",")
    ok = all(r[0] == 0 for r in runs) and runs[0][1] == runs[1][1] and len(ids) == 5 \
        and all(0 <= int(t) < 512 for t in ids) and "tok/s" in runs[0][2]
    failures += not ok
    print(f"[{'PASS' if ok else 'FAIL'}] run greedy: {runs[0][1].strip()} / {runs[0][2].strip()}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
