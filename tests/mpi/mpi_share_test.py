#!/usr/bin/python3
"""Ranks that hold only their share of the checkpoint (docs/mpi.md, issue #14): `dsinfer
split-experts` writes, for each rank of an N-rank job, a checkpoint folder with every tensor but
the routed experts and, of those, only that rank's (ExpertRangeOf); each rank of the job loads
its own folder (here on one machine with mpirun's MPMD syntax `-np 1 A : -np 1 B`; across
machines each machine's copy at the same path).

Truth: the whole checkpoint (the generated tiny one: 8 experts in layers 1, 2 and the MTP layer)
and `dsinfer logits` in one process on it. Checks:
  * each share holds exactly the non-expert tensors and its rank's experts (the assignment
    recomputed here: rank r of N holds experts [8r/N, 8(r+1)/N)), each tensor's dtype, shape and
    bytes equal to the source's (read by this script's own safetensors reader), the other files
    copied, and its index naming the share;
  * `mpirun` with one share per rank gives logits and MTP logits bitwise equal to one process on
    the whole checkpoint: 2 ranks (DSA prefill with MTP, decode) and 3 ranks (uneven 2/3/3), and
    2 ranks where rank 0 loads the whole checkpoint and rank 1 its share;
  * a GGUF file (`quantize --type Q8_0`, experts stacked) at -np 2: logits bitwise those of
    one process on the same file;
  * errors: a share loaded by one process, or by the wrong rank (shares swapped), ends with a
    message naming the share; --ranks above the expert count and an existing output folder
    without --force are refused naming the problem.
Prints one line per check; exit status 1 on any failure.

Usage: mpi_share_test.py --dsinfer BIN --dsinfer-mpi BIN --mpirun MPIRUN --work DIR
"""

import json
import os
import re
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpi_memory_test import LINE, expert_bytes  # noqa: E402
from mpi_logits_test import (  # noqa: E402
    EXPERTS, IDS, Checks, call, same_bits, test_args, tiny_model)

EXPERT = re.compile(r"\.mlp\.experts\.(\d+)\.")


def read_tensors(folder):
    """{name: (dtype, shape, bytes)} of every tensor in the folder's *.safetensors files."""
    out = {}
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".safetensors"):
            continue
        with open(os.path.join(folder, name), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
            data = f.read()
        for tensor, info in header.items():
            if tensor == "__metadata__":
                continue
            begin, end = info["data_offsets"]
            out[tensor] = (info["dtype"], info["shape"], data[begin:end])
    return out


def main():
    a = test_args()
    model = tiny_model(a.dsinfer, os.path.join(a.work, "tiny"))
    mpirun = [a.mpirun, "--oversubscribe", "--bind-to", "none"]
    ids = ",".join(map(str, IDS))
    check = Checks()

    def out(tag):
        return os.path.join(a.work, tag + ".npy")

    def logits(folder, tag, extra):
        return ["logits", "--model", folder, "--ids", ids, "--out", out(tag), "--threads", "1",
                "--mtp-out", out(tag + ".mtp")] + extra

    source = read_tensors(model)
    shares = os.path.join(a.work, "shares")
    for ranks in (2, 3):
        rc, text, _ = call([a.dsinfer, "split-experts", "--model", model, "--out", shares,
                            "--ranks", str(ranks), "--force"])
        check(f"split-experts --ranks {ranks}", rc == 0, text[-1500:])
        for r in range(ranks):
            folder = os.path.join(shares, f"rank-{r}-of-{ranks}")
            first, end = EXPERTS * r // ranks, EXPERTS * (r + 1) // ranks
            want = {t for t in source
                    if not EXPERT.search(t) or first <= int(EXPERT.search(t).group(1)) < end}
            try:
                got = read_tensors(folder)
                index = json.load(open(os.path.join(folder, "model.safetensors.index.json")))
            except OSError as e:
                check(f"  rank {r} of {ranks}: share readable", False, str(e))
                continue
            check(f"  rank {r} of {ranks}: exactly the other tensors and experts {first}-{end - 1}",
                  set(got) == want and set(index["weight_map"]) == want,
                  f"extra {sorted(set(got) - want)[:5]}, missing {sorted(want - set(got))[:5]}")
            check(f"  rank {r} of {ranks}: every tensor's dtype, shape and bytes as the source's",
                  all(got[t] == source[t] for t in got))
            check(f"  rank {r} of {ranks}: the index names the share, the other files copied",
                  index["metadata"].get("dsinfer_expert_share") == {"rank": r, "ranks": ranks}
                  and os.path.exists(os.path.join(folder, "config.json"))
                  and os.path.exists(os.path.join(folder, "tokenizer.json")))

    topk = ["--attention", "dsa", "--index-topk", "5"]
    cases = {"prefill": topk, "decode": topk + ["--mode", "decode", "--prefill-len", "6"]}
    for case, extra in cases.items():
        rc, text, _ = call([a.dsinfer] + logits(model, case + ".whole", extra))
        check(f"one process, whole checkpoint, {case}", rc == 0, text[-1500:])

    def share(r, ranks):
        return os.path.join(shares, f"rank-{r}-of-{ranks}")

    runs = [("prefill", [share(0, 2), share(1, 2)]), ("decode", [share(0, 2), share(1, 2)]),
            ("prefill", [share(0, 3), share(1, 3), share(2, 3)]),
            ("prefill", [model, share(1, 2)])]
    for case, folders in runs:
        tag = f"{case}.{len(folders)}.{'mixed' if folders[0] == model else 'shares'}"
        cmd = list(mpirun)
        # With 3 shares, each rank's resident experts too ("of all": the sum over the shares).
        memory = ["--expert-memory"] if len(folders) == 3 else []
        for i, folder in enumerate(folders):
            cmd += ([":"] if i else []) + ["-np", "1", a.dsinfer_mpi] + logits(folder, tag,
                                                                               cases[case]) + memory
        rc, text, _ = call(cmd)
        if len(folders) == 3:
            got = [(int(m.group(1)), int(m.group(3)), int(m.group(6))) for m in LINE.finditer(text)]
            want = expert_bytes(model)[0]
            check("  --expert-memory on shares: every rank's own experts and all experts' bytes "
                  "as the whole checkpoint's headers say",
                  [(r, own) for r, own, _ in got] == [
                      (r, sum(want[e] for e in range(EXPERTS * r // 3, EXPERTS * (r + 1) // 3)))
                      for r in range(3)] and all(a_ == sum(want.values()) for _, _, a_ in got),
                  text[-1500:])
        what = "rank 0 whole, rank 1 its share" if folders[0] == model else "each rank its share"
        ok = rc == 0 and same_bits(out(tag), out(case + ".whole")) and same_bits(
            out(tag + ".mtp"), out(case + ".whole.mtp"))
        check(f"mpirun, {len(folders)} ranks, {what}, {case}: logits and MTP logits == one "
              f"process on the whole checkpoint, bitwise", ok, text[-1500:])

    # A GGUF file (Q8_0 blocks, experts stacked per layer) across ranks: each rank computes with
    # its experts' slices of the stacked tensors.
    gguf = os.path.join(a.work, "tiny_q8_0.gguf")
    rc, text, _ = call([a.dsinfer, "quantize", "--model", model, "--out", gguf, "--type", "Q8_0"])
    check("quantize --type Q8_0", rc == 0, text[-800:])
    gguf_args = ["logits", "--model", gguf, "--ids", ids, "--threads", "1"] + topk
    rc1, text1, _ = call([a.dsinfer] + gguf_args + ["--out", out("gguf.one")])
    rc2, text2, _ = call(mpirun + ["-np", "2", a.dsinfer_mpi] + gguf_args +
                         ["--out", out("gguf.np2")])
    check("mpirun -np 2 on a Q8_0 GGUF file: logits == one process's on it, bitwise",
          rc1 == 0 and rc2 == 0 and same_bits(out("gguf.np2"), out("gguf.one"))
          and "expert parallel over 2 MPI ranks" in text2, (text1 + text2)[-1500:])

    rc, text, _ = call([a.dsinfer] + logits(share(0, 2), "bad.one", []))
    check("a share loaded by one process is refused naming it",
          rc == 1 and "holds only rank 0 of 2's share of the routed experts" in text, text[-800:])
    cmd = mpirun + ["-np", "1", a.dsinfer_mpi] + logits(share(1, 2), "bad.swap", []) + [
        ":", "-np", "1", a.dsinfer_mpi] + logits(share(0, 2), "bad.swap", [])
    rc, text, secs = call(cmd)
    # Both ranks refuse; whichever reports first ends the job (Open MPI may kill the other
    # before it prints), so either rank's message names the mismatch.
    check(f"shares swapped between the ranks: the job ends ({secs:.1f} s) naming the mismatch",
          rc not in (0, None) and secs < 60 and any(
              f"but this process is rank {r} of 2" in text for r in (0, 1)), text[-800:])
    rc, text, _ = call([a.dsinfer, "split-experts", "--model", model, "--out", shares,
                        "--ranks", "9"])
    check("--ranks 9 for 8 experts is refused", rc == 1 and "--ranks 9: must be in [1, 8]" in text,
          text[-500:])
    rc, text, _ = call([a.dsinfer, "split-experts", "--model", model, "--out", shares,
                        "--ranks", "2", "--rank", "1"])
    check("an existing share folder without --force is refused",
          rc == 1 and "rank-1-of-2 exists: pass --force" in text, text[-500:])
    sys.exit(check.done("mpi_share"))


if __name__ == "__main__":
    main()
