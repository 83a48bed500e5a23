#!/usr/bin/python3
"""C++ forward pass (`dsinfer logits`) against the NumPy reference (tests/reference/dsv32_ref.py).

Generates tiny checkpoints with `dsinfer gen-model` (seeds 1, 2, 3 and config variants), runs both
implementations on the same token ids and checks, per case (NUMERICS.md):
  * every row: max|Δlogit| / max|logit_ref| ≤ 1e-4,
  * top-1 agreement on every row,
  * indexer top-k sets identical in every layer (from --dump-dir; a difference is reported with
    whether the reference scores show an exact tie at the k-th place).
Cases cover sequence lengths 1, k-1, k, k+1 and ≥ 300 (k = index_topk), modes prefill / decode /
decode after a prefix / chunked prefill, DSA and dense attention, --index-topk, the f32 / bf16 / fp8
KV caches (against the reference's same mode) and the MTP logits. C++ and reference processes run
two at a time. Prints one line per case and a summary; exit status 1 on any failure.

Usage: compare_reference.py --dsinfer BIN --ref tests/reference/dsv32_ref.py --work DIR
"""

import argparse
import concurrent.futures as cf
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import time

import numpy as np

REL_TOL = 1e-4


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")


def gen_checkpoint(dsinfer, work, name, seed, sets):
    out = os.path.join(work, name)
    if os.path.exists(os.path.join(out, "model.safetensors.index.json")):
        return out  # cached from an earlier run of the same build tree
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [dsinfer, "gen-model", "--preset", "tiny", "--seed", str(seed), "--out", tmp, "--force"]
    for s in sets:
        cmd += ["--set", s]
    run(cmd)
    os.replace(tmp, out)
    return out


def token_ids(n, vocab, seed):
    rng = np.random.default_rng(seed)
    return [int(t) for t in rng.integers(0, vocab, size=n)]


class Case:
    def __init__(self, name, ckpt, ids, attention="dsa", topk=None, kv="f32", mode="prefill",
                 prefill_len=0, chunk=0, mtp=False, dump=False):
        self.__dict__.update(locals())
        del self.__dict__["self"]

    def common_args(self):
        a = ["--model", self.ckpt, "--ids", ",".join(map(str, self.ids)), "--attention", self.attention,
             "--kv-cache", self.kv]
        if self.topk is not None:
            a += ["--index-topk", str(self.topk)]
        return a

    def ref_key(self):  # the reference output depends only on these
        h = hashlib.sha1(repr((self.ckpt, self.ids, self.attention, self.topk, self.kv, self.mtp,
                               self.dump)).encode()).hexdigest()[:12]
        return h


def run_cpp(dsinfer, case, work):
    d = os.path.join(work, "out", case.name.replace(" ", "_"))
    os.makedirs(d, exist_ok=True)
    cmd = [dsinfer, "logits", "--out", os.path.join(d, "cpp.npy"), "--mode", case.mode] + case.common_args()
    if case.prefill_len:
        cmd += ["--prefill-len", str(case.prefill_len)]
    if case.chunk:
        cmd += ["--chunk", str(case.chunk)]
    if case.mtp:
        cmd += ["--mtp-out", os.path.join(d, "cpp_mtp.npy")]
    if case.dump:
        shutil.rmtree(os.path.join(d, "cpp_dump"), ignore_errors=True)
        cmd += ["--dump-dir", os.path.join(d, "cpp_dump")]
    run(cmd)
    return d


def run_ref(python, ref, case, work):
    d = os.path.join(work, "ref", case.ref_key())
    os.makedirs(d, exist_ok=True)
    cmd = [python, ref, "--out", os.path.join(d, "ref.npy")] + case.common_args()
    if case.mtp:
        cmd += ["--mtp-out", os.path.join(d, "ref_mtp.npy")]
    if case.dump:
        shutil.rmtree(os.path.join(d, "ref_dump"), ignore_errors=True)
        cmd += ["--dump-dir", os.path.join(d, "ref_dump")]
    run(cmd)
    return d


def compare_logits(cpp, ref):
    """(worst row max|Δ|/max|ref|, top-1 agreement fraction, rows)."""
    if cpp.shape != ref.shape:
        raise AssertionError(f"shape {cpp.shape} != reference {ref.shape}")
    if cpp.shape[0] == 0:
        return 0.0, 1.0, 0
    rel = np.abs(cpp - ref).max(axis=1) / np.abs(ref).max(axis=1)
    top1 = np.mean(cpp.argmax(axis=1) == ref.argmax(axis=1))
    return float(rel.max()), float(top1), cpp.shape[0]


def compare_topk(cpp_dir, ref_dir):
    """(rows compared, differing rows, note) over every L*.topk.npy."""
    rows, bad, notes = 0, 0, []
    for path in sorted(glob.glob(os.path.join(ref_dir, "L*.topk.npy"))):
        name = os.path.basename(path)
        other = os.path.join(cpp_dir, name)
        if not os.path.exists(other):
            raise AssertionError(f"C++ dump lacks {name}")
        r, c = np.load(path), np.load(other)
        scores = np.load(path.replace(".topk.npy", ".index_scores.npy"))
        for i in range(r.shape[0]):
            rows += 1
            rs, cs = set(r[i][r[i] >= 0].tolist()), set(c[i][c[i] >= 0].tolist())
            if rs != cs:
                bad += 1
                k = len(rs)
                row = np.sort(scores[i][np.isfinite(scores[i])])[::-1]
                tie = k < len(row) and row[k - 1] == row[k]
                notes.append(f"{name} row {i}: {len(rs ^ cs)} ids differ ({'exact tie' if tie else 'no tie'})")
    return rows, bad, notes


def build_cases(dsinfer, work):
    ck = {}
    jobs = {
        "seed1": (1, []),
        "seed2": (2, ["vocab_size=4096"]),
        "seed3": (3, ["vocab_size=4096"]),
        # MLA without q_lora, and no indexer (all three index_* null): dense attention.
        "noq_noidx": (4, ["vocab_size=4096", "q_lora_rank=null", "index_topk=null",
                          "index_n_heads=null", "index_head_dim=null"]),
        # Plain RoPE (no YaRN) with the indexer.
        "plain_rope": (5, ["vocab_size=4096", "rope_scaling=null"]),
    }
    with cf.ThreadPoolExecutor(2) as ex:
        futs = {n: ex.submit(gen_checkpoint, dsinfer, work, n, s, sets) for n, (s, sets) in jobs.items()}
        for n, f in futs.items():
            ck[n] = f.result()
    k = 16  # tiny preset index_topk
    cases = []
    s1 = ck["seed1"]
    v1 = 129280
    for n in (1, k - 1, k, k + 1):
        cases.append(Case(f"seed1 prefill len {n}", s1, token_ids(n, v1, n), mtp=n > 1))
    long1 = token_ids(320, v1, 11)
    cases.append(Case("seed1 prefill len 320 +mtp +dump", s1, long1, mtp=True, dump=True))
    mid = token_ids(48, v1, 12)
    cases += [
        Case("seed1 decode len 48 +mtp", s1, mid, mode="decode", mtp=True),
        Case("seed1 decode after prefix 20", s1, mid, mode="decode", prefill_len=20),
        Case("seed1 chunked 7", s1, mid, chunk=7, mtp=True),
        Case("seed1 dense len 48", s1, mid, attention="dense"),
        Case("seed1 index-topk 5 +dump", s1, mid, topk=5, dump=True),
        Case("seed1 kv bf16 decode", s1, mid, kv="bf16", mode="decode", prefill_len=9),
        Case("seed1 kv fp8", s1, mid, kv="fp8"),
        Case("seed1 kv fp8 chunked 5", s1, mid, kv="fp8", chunk=5),
    ]
    for name in ("seed2", "seed3"):
        ids = token_ids(300, 4096, 20 + len(cases))
        cases.append(Case(f"{name} prefill len 300 +mtp +dump", ck[name], ids, mtp=True, dump=True))
        cases.append(Case(f"{name} decode after prefix 290", ck[name], ids, mode="decode", prefill_len=290))
    ids = token_ids(300, 4096, 31)
    cases += [
        Case("noq_noidx prefill len 300 (dsa→dense) +mtp", ck["noq_noidx"], ids, mtp=True),
        Case("noq_noidx dense decode after prefix 280", ck["noq_noidx"], ids, attention="dense", mode="decode", prefill_len=280),
        Case("plain_rope prefill len 300 +dump", ck["plain_rope"], ids, dump=True),
        Case("plain_rope chunked 64", ck["plain_rope"], ids, chunk=64),
    ]
    return cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsinfer", required=True)
    ap.add_argument("--ref", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--python", default=sys.executable)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    t0 = time.time()
    cases = build_cases(a.dsinfer, os.path.join(a.work, "models"))
    print(f"checkpoints ready in {time.time() - t0:.1f} s", flush=True)
    refs = {}
    with cf.ThreadPoolExecutor(2) as ex:
        ref_futs = {}
        for c in cases:
            if c.ref_key() not in ref_futs:
                ref_futs[c.ref_key()] = ex.submit(run_ref, a.python, a.ref, c, a.work)
        cpp_futs = [ex.submit(run_cpp, a.dsinfer, c, a.work) for c in cases]
        for key, f in ref_futs.items():
            refs[key] = f.result()
        cpp = [f.result() for f in cpp_futs]
    failures = 0
    worst = 0.0
    for c, d in zip(cases, cpp):
        r = refs[c.ref_key()]
        msgs = []
        rel, top1, rows = compare_logits(np.load(os.path.join(d, "cpp.npy")), np.load(os.path.join(r, "ref.npy")))
        worst = max(worst, rel)
        ok = rel <= REL_TOL and top1 == 1.0
        msgs.append(f"logits rows {rows} rel {rel:.2e} top1 {top1 * 100:.0f}%")
        if c.mtp:
            mrel, mtop1, mrows = compare_logits(np.load(os.path.join(d, "cpp_mtp.npy")),
                                                np.load(os.path.join(r, "ref_mtp.npy")))
            worst = max(worst, mrel)
            ok = ok and mrel <= REL_TOL and mtop1 == 1.0
            msgs.append(f"mtp rows {mrows} rel {mrel:.2e} top1 {mtop1 * 100:.0f}%")
        if c.dump:
            trows, tbad, notes = compare_topk(os.path.join(d, "cpp_dump"), os.path.join(r, "ref_dump"))
            ok = ok and tbad == 0 and trows > 0
            msgs.append(f"topk sets {trows - tbad}/{trows} identical")
            msgs += notes[:5]
        failures += not ok
        print(f"[{'PASS' if ok else 'FAIL'}] {c.name}: " + "; ".join(msgs), flush=True)
    print(f"{len(cases) - failures}/{len(cases)} cases pass; worst row rel diff {worst:.2e} "
          f"(tolerance {REL_TOL:g}); {time.time() - t0:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
