#!/usr/bin/python3
"""Expert parallelism over MPI (docs/mpi.md, issue #14), end to end on a generated tiny checkpoint
(8 routed experts, 2 per token, MoE layers 1, 2 and the MTP layer).

Truth: the single-process `dsinfer logits` of the same checkpoint, ids and schedule. Checks:
  * `mpirun -np 2`, `-np 3` (uneven: 2/3/3 experts) and `-np 4` (oversubscribed) `dsinfer-mpi
    logits` equal it bitwise (every float32 bit), in prefill, decode, decode after a prefill,
    chunked prefill, DSA (with a top-k smaller than the context, so selection is real) and dense
    attention, and the MTP logits; plain `dsinfer` under mpirun hands over to dsinfer-mpi;
  * the assignment rank 0 reports is ⌊r·E/N⌋.. (recomputed here), and the test ids route tokens
    to every rank's experts (from the single process's --dump-dir), so every rank's share counts;
  * each rank reads only its own experts: rank 0 gets a copy of the checkpoint whose other
    experts' bytes (weights and block scales) are overwritten with NaN, rank 1 the mirror copy,
    and the logits still equal the clean single process's (which fails on either copy);
  * failures at start end the job within seconds with a message naming the rank: a rank whose
    config differs, a rank whose model folder is missing, a rank whose shard is truncated; a
    command that does not run across ranks (`inspect`) refuses;
  * one exchange per MoE layer per forward call (the count rank 0 reports).
OpenMP runs one thread per rank (and in the single process). Prints one line per check; exit
status 1 on any failure.

Usage: mpi_logits_test.py --dsinfer BIN --dsinfer-mpi BIN --mpirun MPIRUN --work DIR
"""

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time

import numpy as np

IDS = [5, 17, 3, 901, 44, 230, 7, 7, 612, 88, 301, 19, 450, 2]
EXPERTS = 8  # the tiny preset's n_routed_experts
ENV = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
           OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           # containers often forbid the cross-process copy (CMA); shared memory copies instead
           OMPI_MCA_btl_vader_single_copy_mechanism="none")
if not shutil.which("ssh") and not shutil.which("rsh"):
    # Open MPI 4 refuses to start without an ssh/rsh agent even for local ranks; the "isolated"
    # launcher starts local ranks only (all this test needs).
    ENV["OMPI_MCA_plm"] = "isolated"
FAIL_SECONDS = 60  # a failure at start must end the whole job well within this


class Checks:
    """`check(name, ok, detail)` prints one [PASS]/[FAIL] line (the detail on failure) and counts
    the failures; `done(test)` prints the count and returns the exit status."""

    def __init__(self):
        self.failures = 0

    def __call__(self, name, ok, detail=""):
        self.failures += not ok
        print(f"[{'PASS' if ok else 'FAIL'}] {name}" + (f": {detail}" if detail and not ok else ""))
        sys.stdout.flush()

    def done(self, test):
        print(f"{test}: {self.failures} failures")
        return 1 if self.failures else 0


def call(cmd, timeout=180):
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=ENV, timeout=timeout)
        return p.returncode, p.stdout + p.stderr, time.monotonic() - t0
    except subprocess.TimeoutExpired as e:
        return None, f"timed out after {timeout} s: {e}", time.monotonic() - t0


def test_args(description=None):
    """The arguments every MPI test takes (the binaries, mpirun, a work folder, created)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--dsinfer", required=True)
    ap.add_argument("--dsinfer-mpi", required=True)
    ap.add_argument("--mpirun", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    return a


def tiny_model(dsinfer, folder, seed=7, sets=("vocab_size=1024",)):
    """A generated tiny checkpoint in `folder` (made once; later runs reuse it)."""
    if not os.path.exists(os.path.join(folder, "config.json")):
        cmd = [dsinfer, "gen-model", "--preset", "tiny", "--seed", str(seed)]
        for kv in sets:
            cmd += ["--set", kv]
        rc, out, _ = call(cmd + ["--out", folder, "--force"])
        assert rc == 0, out
    return folder


def expected_assignment(ranks):
    parts = []
    for r in range(ranks):
        first, end = EXPERTS * r // ranks, EXPERTS * (r + 1) // ranks
        parts.append(f"rank {r}: " + (f"experts {first}-{end - 1}" if end > first else "no experts"))
    return ", ".join(parts)


def same_bits(a_path, b_path):
    a, b = np.load(a_path), np.load(b_path)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def overwrite_experts(folder, keep):
    """Overwrites, in every shard of `folder`, the bytes of each routed expert's tensors (weights
    and block scales) whose expert id is not in `keep` with 0xFF (NaN in e4m3, bf16 and f32)."""
    pattern = re.compile(r"\.mlp\.experts\.(\d+)\.")
    touched = 0
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".safetensors"):
            continue
        path = os.path.join(folder, name)
        with open(path, "r+b") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
            for tensor, info in header.items():
                m = pattern.search(tensor)
                if tensor == "__metadata__" or not m or int(m.group(1)) in keep:
                    continue
                begin, end = info["data_offsets"]
                f.seek(8 + n + begin)
                f.write(b"\xff" * (end - begin))
                touched += 1
    return touched


def copy_checkpoint(src, dst, link_shards):
    """A copy of `src` in `dst`: shards copied (or symlinked), every other file copied."""
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    for name in os.listdir(src):
        s, d = os.path.join(src, name), os.path.join(dst, name)
        if name.endswith(".safetensors") and link_shards:
            os.symlink(os.path.abspath(s), d)
        else:
            shutil.copyfile(s, d)


def main():
    a = test_args()
    model = tiny_model(a.dsinfer, os.path.join(a.work, "tiny"))
    mpirun = [a.mpirun, "--oversubscribe", "--bind-to", "none"]
    ids = ",".join(map(str, IDS))
    check = Checks()

    def out_path(tag):
        return os.path.join(a.work, tag + ".npy")

    def logits_args(model_dir, out, extra):
        return ["logits", "--model", model_dir, "--ids", ids, "--out", out, "--threads", "1"] + extra

    # Schedules × attention; each case's single-process logits are the truth.
    topk = ["--attention", "dsa", "--index-topk", "5"]  # 5 < 14 tokens: DSA selects
    cases = {
        "prefill-dsa": topk + ["--mtp-out", "MTP"],
        "decode-dsa": topk + ["--mode", "decode", "--prefill-len", "6"],
        "chunked-dsa": topk + ["--chunk", "4"],
        "prefill-dense": ["--attention", "dense"],
        "decode-dense": ["--attention", "dense", "--mode", "decode"],
    }
    # One exchange per MoE layer (layers 1 and 2, and the MTP layer when it runs) per forward
    # call: 1 prefill; 1 + 8 decode steps; 4 chunks; 1 prefill; 14 decode steps.
    exchanges = {"prefill-dsa": 2 + 1, "decode-dsa": 9 * 2, "chunked-dsa": 4 * 2,
                 "prefill-dense": 2, "decode-dense": 14 * 2}
    # (case, ranks, binary): -np 2 everywhere, 3 (uneven) and 4 (oversubscribed) on some; plain
    # dsinfer under mpirun once (it must hand over to dsinfer-mpi).
    runs = [(c, 2, a.dsinfer_mpi) for c in cases if c != "prefill-dense"]
    runs += [("prefill-dense", 2, a.dsinfer), ("prefill-dsa", 4, a.dsinfer_mpi),
             ("decode-dense", 4, a.dsinfer_mpi), ("chunked-dsa", 3, a.dsinfer_mpi)]

    def with_mtp(extra, tag):
        return [out_path(tag + ".mtp") if x == "MTP" else x for x in extra]

    for case, extra in cases.items():
        dump = ["--dump-dir", os.path.join(a.work, "dump")] if case == "prefill-dense" else []
        rc, out, _ = call([a.dsinfer] + logits_args(model, out_path(case + ".single"),
                                                     with_mtp(extra, case + ".single") + dump))
        check(f"single process {case}", rc == 0, out[-1500:])

    # The ids must route tokens to every rank's experts at 2, 3 and 4 ranks.
    used = set()
    for layer in (1, 2):
        path = os.path.join(a.work, "dump", f"L{layer}.router_experts.npy")
        if os.path.exists(path):
            used |= set(np.load(path).ravel().tolist())
    for ranks in (2, 3, 4):
        empty = [r for r in range(ranks)
                 if not used & set(range(EXPERTS * r // ranks, EXPERTS * (r + 1) // ranks))]
        check(f"the test ids reach every rank's experts at -np {ranks}", not empty,
              f"ranks without routed tokens: {empty} (experts used: {sorted(used)})")

    for case, ranks, binary in runs:
        tag = f"{case}.np{ranks}" + (".plain" if binary == a.dsinfer else "")
        rc, out, secs = call(mpirun + ["-np", str(ranks), binary] +
                             logits_args(model, out_path(tag), with_mtp(cases[case], tag)))
        if rc != 0:
            check(f"mpirun -np {ranks} {os.path.basename(binary)} {case}", False, out[-1500:])
            continue
        ok = same_bits(out_path(tag), out_path(case + ".single"))
        if "--mtp-out" in cases[case]:
            ok = ok and same_bits(out_path(tag + ".mtp"), out_path(case + ".single.mtp"))
        check(f"mpirun -np {ranks} {os.path.basename(binary)} {case} == single process, bitwise"
              f" ({secs:.1f} s)", ok)
        check(f"  assignment reported at -np {ranks}", expected_assignment(ranks) in out,
              f"expected '{expected_assignment(ranks)}' in: {out[-600:]}")
        m = re.search(r"in (\d+) expert exchanges", out)
        check(f"  one exchange per MoE layer per forward call ({exchanges[case]})",
              m is not None and int(m.group(1)) == exchanges[case], out[-600:])

    # Each rank reads only its own experts (np 2: rank 0 holds 0-3, rank 1 holds 4-7).
    poisoned = {}
    for rank, keep in ((0, range(0, 4)), (1, range(4, 8))):
        d = os.path.join(a.work, f"only_rank{rank}")
        copy_checkpoint(model, d, link_shards=False)
        touched = overwrite_experts(d, set(keep))
        check(f"rank {rank}'s copy has the other experts poisoned", touched > 0, "no tensors")
        poisoned[rank] = d
    tag = "prefill-dsa.shares"
    extra = [x for x in cases["prefill-dsa"] if x not in ("--mtp-out", "MTP")]
    rc, out, _ = call(mpirun + ["-np", "1", a.dsinfer_mpi] +
                      logits_args(poisoned[0], out_path(tag), extra) +
                      [":", "-np", "1", a.dsinfer_mpi] +
                      logits_args(poisoned[1], out_path(tag), extra))
    check("each rank reads only its own experts (poisoned copies) == single process, bitwise",
          rc == 0 and same_bits(out_path(tag), out_path("prefill-dsa.single")), out[-1500:])
    rc, out, _ = call([a.dsinfer] + logits_args(poisoned[0], out_path("poisoned.single"), extra))
    check("  the poison bites: one process on rank 0's copy fails or differs",
          rc != 0 or not same_bits(out_path("poisoned.single"), out_path("prefill-dsa.single")))

    # Failures at start: the job ends within seconds, naming the rank.
    other_config = os.path.join(a.work, "other_config")
    copy_checkpoint(model, other_config, link_shards=True)
    with open(os.path.join(other_config, "config.json")) as f:
        cfg = json.load(f)
    cfg["rms_norm_eps"] = cfg.get("rms_norm_eps", 1e-6) * 10
    with open(os.path.join(other_config, "config.json"), "w") as f:
        json.dump(cfg, f)
    truncated = os.path.join(a.work, "truncated")
    copy_checkpoint(model, truncated, link_shards=True)
    shard = sorted(n for n in os.listdir(truncated) if n.endswith(".safetensors"))[0]
    os.remove(os.path.join(truncated, shard))
    with open(os.path.join(model, shard), "rb") as src, \
            open(os.path.join(truncated, shard), "wb") as dst:
        dst.write(src.read(4096))
    missing = os.path.join(a.work, "no_such_model")
    for what, rank1_dir, want in (
            ("a rank whose config differs", other_config, ["rank 1's config", "differs"]),
            ("a rank whose model folder is missing", missing, ["rank 1 of 2", missing]),
            ("a rank whose shard is truncated", truncated,
             ["rank 1 of 2", os.path.join(truncated, shard)])):
        rc, out, secs = call(mpirun + ["-np", "1", a.dsinfer_mpi] +
                             logits_args(model, out_path("fail"), []) +
                             [":", "-np", "1", a.dsinfer_mpi] +
                             logits_args(rank1_dir, out_path("fail"), []), timeout=120)
        ok = rc not in (0, None) and secs < FAIL_SECONDS and all(w in out for w in want)
        check(f"{what}: the job stops in {secs:.1f} s naming it", ok,
              f"rc {rc}, wanted {want} in: {out[-1500:]}")
    rc, out, secs = call(mpirun + ["-np", "2", a.dsinfer_mpi, "inspect", model], timeout=120)
    check("`inspect` refuses to run once per rank", rc not in (0, None) and
          "does not run across MPI ranks" in out, f"rc {rc}: {out[-800:]}")

    return check.done("mpi_logits")


if __name__ == "__main__":
    sys.exit(main())
