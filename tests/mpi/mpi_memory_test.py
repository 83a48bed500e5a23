#!/usr/bin/python3
"""Each rank of an expert-parallel job holds about 1/N of the routed experts in memory, measured
(docs/mpi.md, "Memory per rank, measured"; issue #14).

`dsinfer logits --expert-memory` makes every rank measure, after loading and a forward pass,
the bytes of the routed experts' tensors (weights and block scales) that lie on pages mapped in
its own page tables (/proc/self/pagemap: what this process touched of the mmapped checkpoint,
not what the page cache holds), and rank 0 prints a line per rank. On a generated checkpoint
with larger experts (8 experts of 3 × 512 × 1024 FP8 weights, MoE layers 1, 2 and the MTP
layer, 37.8 MB of experts), the MTP head enabled so every MoE layer runs, and 64 prompt tokens so
every expert gets tokens:
  * the tensor sizes each process reports (its experts' bytes, all experts' bytes) equal the
    sums computed here from the safetensors headers (truth: the files);
  * one process (the control: the measurement sees a whole model when a whole model is used)
    has ≥ 95% of all expert bytes resident;
  * at `mpirun -np 2` rank r has ≥ 95% of its own experts' bytes resident, and of the other
    rank's experts at most the pages they share with tensors it keeps: two per run of the other
    rank's tensors in file order (each rank takes the others' pages out of its mapping; without
    that, readahead and fault-around, which on kernels ≥ 6.18 with ext4's large folios maps a
    whole folio of up to 2 MiB on one fault, put 3.7-6.4% of all expert bytes from the other
    rank in its memory); so its resident share is within 1 point of its expected share (50%).
    The checkpoint is dropped from the page cache first.
Prints one line per check; exit status 1 on any failure.

Usage: mpi_memory_test.py --dsinfer BIN --dsinfer-mpi BIN --mpirun MPIRUN --work DIR
"""

import json
import os
import re
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpi_logits_test import Checks, ENV, call, test_args, tiny_model  # noqa: E402,F401  (the launcher environment)

EXPERTS = 8
IDS = ",".join(str((i * 53) % 1000 + 2) for i in range(64))
LINE = re.compile(r"logits: rank (\d+) of (\d+): routed-expert bytes resident: own (\d+) of "
                  r"(\d+), others' (\d+), of all (\d+)")
EXPERT = re.compile(r"\.mlp\.experts\.(\d+)\.")
PAGE = os.sysconf("SC_PAGE_SIZE")


def expert_bytes(folder):
    """{expert id: bytes of its tensors, summed over layers} from the safetensors headers, and
    per file the expert of every tensor in file order (None for tensors of no routed expert)."""
    sizes, layout = {}, []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".safetensors"):
            continue
        with open(os.path.join(folder, name), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
        order = []
        for tensor, info in header.items():
            if tensor == "__metadata__":
                continue
            m = EXPERT.search(tensor)
            begin, end = info["data_offsets"]
            order.append((begin, int(m.group(1)) if m else None))
            if m:
                sizes[int(m.group(1))] = sizes.get(int(m.group(1)), 0) + end - begin
        layout.append([e for _, e in sorted(order)])
    return sizes, layout


def runs_of(layout, experts):
    """How many runs of consecutive tensors (in file order) belong to `experts`."""
    runs = 0
    for order in layout:
        for i, e in enumerate(order):
            if e in experts and (i == 0 or order[i - 1] not in experts):
                runs += 1
    return runs


def drop_from_page_cache(folder):
    for name in os.listdir(folder):
        if name.endswith(".safetensors"):
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def parse(out):
    return {int(m.group(1)): dict(ranks=int(m.group(2)), own=int(m.group(3)),
                                  share=int(m.group(4)), others=int(m.group(5)),
                                  all=int(m.group(6)))
            for m in LINE.finditer(out)}


def main():
    a = test_args()
    model = tiny_model(a.dsinfer, os.path.join(a.work, "wide_experts"), seed=11,
                       sets=("vocab_size=1024", "hidden_size=512", "moe_intermediate_size=1024"))
    check = Checks()

    sizes, layout = expert_bytes(model)
    total = sum(sizes.values())
    check(f"the checkpoint has {EXPERTS} experts' tensors ({total / 1e6:.1f} MB)",
          sorted(sizes) == list(range(EXPERTS)) and total > 30e6, str(sizes))
    args = ["logits", "--model", model, "--ids", IDS, "--mtp-out",
            os.path.join(a.work, "mtp.npy"), "--threads", "1", "--expert-memory"]

    rc, out, _ = call([a.dsinfer] + args + ["--out", os.path.join(a.work, "single.npy")])
    got = parse(out).get(0)
    check("one process reports its residency", rc == 0 and got is not None, out[-1500:])
    if got:
        check("  it holds every expert: sizes equal the headers' sums",
              got["share"] == total and got["all"] == total and got["others"] == 0, str(got))
        check(f"  ≥ 95% of all expert bytes resident ({100 * got['own'] / total:.1f}%)",
              got["own"] >= 0.95 * total, str(got))

    drop_from_page_cache(model)
    mpirun = [a.mpirun, "--oversubscribe", "--bind-to", "none", "-np", "2", a.dsinfer_mpi]
    rc, out, _ = call(mpirun + args + ["--out", os.path.join(a.work, "np2.npy")])
    lines = parse(out)
    check("mpirun -np 2: rank 0 reports both ranks", rc == 0 and sorted(lines) == [0, 1],
          out[-1500:])
    for r, got in sorted(lines.items()):
        first, end = EXPERTS * r // 2, EXPERTS * (r + 1) // 2
        share = sum(sizes[e] for e in range(first, end))
        check(f"  rank {r}: its experts {first}-{end - 1} are {share} bytes, as the headers say",
              got["share"] == share and got["all"] == total, str(got))
        check(f"  rank {r}: ≥ 95% of its own experts' bytes resident "
              f"({100 * got['own'] / share:.1f}%)", got["own"] >= 0.95 * share, str(got))
        others = set(range(EXPERTS)) - set(range(first, end))
        bound = 2 * PAGE * runs_of(layout, others)
        check(f"  rank {r}: of the other rank's experts at most the pages shared with kept "
              f"tensors, {bound} bytes ({got['others']} bytes, "
              f"{100 * got['others'] / total:.2f}% of all)", got["others"] <= bound, str(got))
        resident = (got["own"] + got["others"]) / total
        check(f"  rank {r}: resident share {100 * resident:.1f}% of all experts, expected "
              f"{100 * share / total:.1f}% ± 1", abs(resident - share / total) <= 0.01, str(got))

    return check.done("mpi_memory")


if __name__ == "__main__":
    sys.exit(main())
