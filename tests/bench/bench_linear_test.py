#!/usr/bin/env python3
"""`dsinfer bench gemv|gemm --json` on small shapes with a given roofline (no measuring).

usage: bench_linear_test.py DSINFER
Checks every line is one JSON object with the documented keys, that the counts follow from the
shape (bytes = FP8 codes + f32 block scales, flops = 2·n·rows·cols), that gbps / gflops /
fraction_of_roofline follow from bytes, flops and seconds, and that bad options fail cleanly.
"""
import json
import math
import subprocess
import sys

GBPS, GFLOPS = 30.0, 200.0
KEYS = {"bench", "shape", "rows", "cols", "n", "dtype", "bytes", "flops", "seconds", "gbps",
        "gweights_per_s", "gflops", "fraction_of_roofline", "bound", "roofline_gbps", "roofline_gflops", "isa",
        "threads", "weights"}


def fail(msg):
    sys.exit("FAIL: " + msg)


def run(args, expect_rc=0):
    p = subprocess.run(args, capture_output=True, text=True, timeout=50)
    if p.returncode != expect_rc:
        fail(f"{' '.join(args)} exited {p.returncode}, expected {expect_rc}\n"
             f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def close(a, b, rel=1e-9):
    return math.isclose(a, b, rel_tol=rel, abs_tol=0.0)


def check_lines(out, bench, shapes, ns, bytes_per_elem, scales):
    lines = [l for l in out.splitlines() if l.strip()]
    if len(lines) != len(shapes) * len(ns):
        fail(f"{bench}: {len(lines)} lines, expected {len(shapes) * len(ns)}:\n{out}")
    expected = [(name, r, c, n) for (name, r, c) in shapes for n in ns]
    for line, (name, rows, cols, n) in zip(lines, expected):
        j = json.loads(line)
        if set(j) != KEYS:
            fail(f"keys {sorted(j)} != {sorted(KEYS)}")
        if (j["bench"], j["shape"], j["rows"], j["cols"], j["n"]) != (bench, name, rows, cols, n):
            fail(f"unexpected measurement {j}")
        scale_bytes = 4 * -(-rows // 128) * -(-cols // 128) if scales else 0
        if j["bytes"] != rows * cols * bytes_per_elem + scale_bytes:
            fail(f"bytes {j['bytes']} for {rows}x{cols}")
        if j["flops"] != 2 * n * rows * cols:
            fail(f"flops {j['flops']} for n={n} {rows}x{cols}")
        t = j["seconds"]
        if not (0 < t < 1):
            fail(f"seconds {t}")
        if (not close(j["gbps"], j["bytes"] / t / 1e9) or not close(j["gflops"], j["flops"] / t / 1e9)
                or not close(j["gweights_per_s"], rows * cols / t / 1e9)):
            fail(f"rates do not follow from bytes/flops/seconds: {j}")
        mem_t, fma_t = j["bytes"] / (GBPS * 1e9), j["flops"] / (GFLOPS * 1e9)
        if not close(j["fraction_of_roofline"], max(mem_t, fma_t) / t):
            fail(f"fraction_of_roofline: {j}")
        if j["bound"] != ("memory" if mem_t >= fma_t else "compute"):
            fail(f"bound: {j}")
        if (j["roofline_gbps"], j["roofline_gflops"]) != (GBPS, GFLOPS):
            fail(f"roofline not the one given: {j}")
        if j["isa"] not in ("scalar", "avx2", "avx512") or j["threads"] < 1:
            fail(f"isa/threads: {j}")
        if j["weights"] != "synthetic":
            fail(f"weights: {j}")


def main():
    dsinfer = sys.argv[1]
    roof = ["--roofline-gbps", str(GBPS), "--roofline-gflops", str(GFLOPS), "--json",
            "--seconds", "0.02"]
    shapes = [("a", 256, 512), ("odd", 100, 300)]
    shape_args = sum((["--shape", f"{n}={r}x{c}"] for n, r, c in shapes), [])
    p = run([dsinfer, "bench", "gemv", *shape_args, "--n", "1,3", *roof])
    check_lines(p.stdout, "gemv", shapes, [1, 3], 1, True)
    p = run([dsinfer, "bench", "gemm", *shape_args, "--n", "9", "--dtype", "bf16", *roof])
    check_lines(p.stdout, "gemm", shapes, [9], 2, False)
    # Weight types side by side in one run: bytes are whole ggml blocks per row (Q8_0: 34 bytes
    # per 32 weights; Q4_K: 144 per 256), lines ordered shape, then dtype, then n.
    blocks = [("a", 256, 512)]
    p = run([dsinfer, "bench", "gemv", "--shape", "a=256x512", "--n", "1,3",
             "--dtype", "fp8,q8_0,q4_k,q8_0.i8,q4_k.i8", *roof])
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    want = [(d, n) for d in ("fp8", "q8_0", "q4_k", "q8_0.i8", "q4_k.i8") for n in (1, 3)]
    if [(j["dtype"], j["n"]) for j in lines] != want:
        fail(f"dtype/n order {[(j['dtype'], j['n']) for j in lines]} != {want}")
    per_row = {"fp8": 512, "q8_0": 16 * 34, "q4_k": 2 * 144, "q8_0.i8": 16 * 34, "q4_k.i8": 2 * 144}
    for (d, _), j in zip(want, lines):
        check_lines(json.dumps(j), "gemv", blocks, [j["n"]], per_row[d] / 512, d == "fp8")
    for bad, culprit in ((["--shape", "w1=2048by7168"], "w1=2048by7168"),
                         (["--shape", "w=0x5"], "w=0x5"),
                         (["--dtype", "int4"], "int4"),
                         (["--shape", "odd=16x300", "--dtype", "q4_k"], "odd")):
        p = run([dsinfer, "bench", "gemv", *bad, *roof], expect_rc=1)
        if culprit not in p.stderr:
            fail(f"error for {bad} does not name '{culprit}': {p.stderr}")
    print("ok")


if __name__ == "__main__":
    main()
