#!/usr/bin/env python3
"""`dsinfer bench gemv|gemm --json` on small shapes with a given roofline (no measuring).

usage: bench_linear_test.py DSINFER
Checks every line is one JSON object with the documented keys, that the counts follow from the
shape (bytes = FP8 codes + f32 block scales, flops = 2·n·rows·cols), that gbps / gflops /
fraction_of_roofline (and, for gemm, fraction_of_bf16_peak) follow from bytes, flops, seconds
and the peak of the line's numerics (f32 FMA for f32, BF16 dot for bf16, the VNNI int8 dot for
`.i8` block weights on a CPU with VNNI — the line's roofline_int8_gops, else null), that `gemm` measures
the f32 and the bf16-activation GEMM side by side, and that bad options fail cleanly.
"""
import json
import math
import subprocess
import sys

GBPS, GFLOPS, BF16_GFLOPS, INT8_GOPS = 30.0, 200.0, 400.0, 800.0
KEYS = {"bench", "shape", "rows", "cols", "n", "dtype", "bytes", "flops", "seconds", "gbps",
        "gweights_per_s", "gflops", "fraction_of_roofline", "bound", "roofline_gbps", "roofline_gflops", "roofline_int8_gops",
        "isa", "threads", "weights"}
GEMV_KEYS = KEYS | {"numerics"}
GEMM_KEYS = GEMV_KEYS | {"roofline_bf16_gflops", "fraction_of_bf16_peak"}


def cpu_has_vnni():
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("flags"):
                return "avx512_vnni" in line.split()
    return False


CPU_VNNI = cpu_has_vnni()


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


def check_lines(out, bench, shapes, ns, bytes_per_elem, scales, numerics=("f32",),
                bf16_peak=None):
    lines = [l for l in out.splitlines() if l.strip()]
    expected = [(name, r, c, n, num) for (name, r, c) in shapes for n in ns for num in numerics]
    if len(lines) != len(expected):
        fail(f"{bench}: {len(lines)} lines, expected {len(expected)}:\n{out}")
    for line, (name, rows, cols, n, num) in zip(lines, expected):
        j = json.loads(line)
        keys = GEMM_KEYS if bench == "gemm" else GEMV_KEYS
        if set(j) != keys:
            fail(f"keys {sorted(j)} != {sorted(keys)}")
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
        # The int8 peak (the one given) is in every line of a run with .i8 types on VNNI.
        int8 = j["dtype"].endswith(".i8")
        if j["roofline_int8_gops"] not in (INT8_GOPS, None) or (
                int8 and (j["roofline_int8_gops"] is not None) != CPU_VNNI):
            fail(f"roofline_int8_gops: {j}")
        peak = BF16_GFLOPS if num == "bf16" else INT8_GOPS if int8 and CPU_VNNI else GFLOPS
        mem_t, fma_t = j["bytes"] / (GBPS * 1e9), j["flops"] / (peak * 1e9)
        if not close(j["fraction_of_roofline"], max(mem_t, fma_t) / t):
            fail(f"fraction_of_roofline: {j}")
        if j["bound"] != ("memory" if mem_t >= fma_t else "compute"):
            fail(f"bound: {j}")
        if (j["roofline_gbps"], j["roofline_gflops"]) != (GBPS, GFLOPS):
            fail(f"roofline not the one given: {j}")
        isas = ("avx512bf16",) if num == "bf16" else ("scalar", "avx2", "avx512")
        if j["isa"] not in isas or j["threads"] < 1:
            fail(f"isa/threads: {j}")
        if j["weights"] != "synthetic":
            fail(f"weights: {j}")
        if j["numerics"] != num:
            fail(f"numerics {j['numerics']}, expected {num}")
        if bench == "gemm":
            if bf16_peak is not None:
                if j["roofline_bf16_gflops"] != bf16_peak:
                    fail(f"bf16 peak not the one given: {j}")
                if not close(j["fraction_of_bf16_peak"], j["gflops"] / bf16_peak):
                    fail(f"fraction_of_bf16_peak: {j}")


def main():
    dsinfer = sys.argv[1]
    roof = ["--roofline-gbps", str(GBPS), "--roofline-gflops", str(GFLOPS),
            "--roofline-int8-gops", str(INT8_GOPS), "--json", "--seconds", "0.02"]
    shapes = [("a", 256, 512), ("odd", 100, 300)]
    shape_args = sum((["--shape", f"{n}={r}x{c}"] for n, r, c in shapes), [])
    p = run([dsinfer, "bench", "gemv", *shape_args, "--n", "1,3", *roof])
    check_lines(p.stdout, "gemv", shapes, [1, 3], 1, True)
    bf16_roof = ["--roofline-bf16-gflops", str(BF16_GFLOPS)]
    p = run([dsinfer, "bench", "gemm", *shape_args, "--n", "9", "--dtype", "bf16",
             "--numerics", "f32", *roof, *bf16_roof])
    check_lines(p.stdout, "gemm", shapes, [9], 2, False, bf16_peak=BF16_GFLOPS)
    # Both numerics side by side, FP8 weights: needs the AVX512-BF16 path (else a clear error).
    args = [dsinfer, "bench", "gemm", *shape_args, "--n", "9,16", "--numerics", "f32,bf16",
            *roof, *bf16_roof]
    p = subprocess.run(args, capture_output=True, text=True, timeout=50)
    if p.returncode == 0:
        check_lines(p.stdout, "gemm", shapes, [9, 16], 1, True, ("f32", "bf16"), BF16_GFLOPS)
    elif p.returncode != 1 or "AVX512-BF16" not in p.stderr:
        fail(f"--numerics f32,bf16 exited {p.returncode}: {p.stderr}")
    # gemv in both numerics, and each bf16 kernel forced (the GEMV and the GEMM give the same
    # bits; kernels/linear_bf16.h).
    for kernel in ("auto", "gemv", "gemm"):
        args = [dsinfer, "bench", "gemv", *shape_args, "--n", "1,3", "--numerics", "f32,bf16",
                "--bf16-kernel", kernel, *roof, *bf16_roof]
        p = subprocess.run(args, capture_output=True, text=True, timeout=50)
        if p.returncode == 0:
            check_lines(p.stdout, "gemv", shapes, [1, 3], 1, True, ("f32", "bf16"))
        elif p.returncode != 1 or "AVX512-BF16" not in p.stderr:
            fail(f"gemv --numerics f32,bf16 --bf16-kernel {kernel} exited {p.returncode}: "
                 f"{p.stderr}")
    # Weight types side by side in one run: bytes are whole ggml blocks per row (Q8_0: 34 bytes
    # per 32 weights; Q4_K: 144 per 256; Q5_K: 176; Q6_K: 210), lines ordered shape, then dtype, then n.
    blocks = [("a", 256, 512)]
    p = run([dsinfer, "bench", "gemv", "--shape", "a=256x512", "--n", "1,3",
             "--dtype", "fp8,q8_0,q4_k,q8_0.i8,q4_k.i8,q5_k.i8,q6_k.i8", *roof])
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    want = [(d, n) for d in ("fp8", "q8_0", "q4_k", "q8_0.i8", "q4_k.i8", "q5_k.i8", "q6_k.i8")
            for n in (1, 3)]
    if [(j["dtype"], j["n"]) for j in lines] != want:
        fail(f"dtype/n order {[(j['dtype'], j['n']) for j in lines]} != {want}")
    per_row = {"fp8": 512, "q8_0": 16 * 34, "q4_k": 2 * 144, "q8_0.i8": 16 * 34,
               "q4_k.i8": 2 * 144, "q5_k.i8": 2 * 176, "q6_k.i8": 2 * 210}
    for (d, _), j in zip(want, lines):
        check_lines(json.dumps(j), "gemv", blocks, [j["n"]], per_row[d] / 512, d == "fp8")
    # gemm: block and bf16 weights in one run (f32 numerics: the block types have no bf16 form).
    p = run([dsinfer, "bench", "gemm", "--shape", "a=256x512", "--n", "9", "--dtype", "bf16,q8_0",
             "--numerics", "f32", *roof, *bf16_roof])
    lines = p.stdout.splitlines()
    if [json.loads(l)["dtype"] for l in lines] != ["bf16", "q8_0"]:
        fail(f"gemm bf16,q8_0: {p.stdout}")
    check_lines(lines[0], "gemm", blocks, [9], 2, False, bf16_peak=BF16_GFLOPS)
    check_lines(lines[1], "gemm", blocks, [9], 16 * 34 / 512, False, bf16_peak=BF16_GFLOPS)
    for bad, culprit in ((["--shape", "w1=2048by7168"], "w1=2048by7168"),
                         (["--shape", "w=0x5"], "w=0x5"),
                         (["--dtype", "int4"], "int4"),
                         (["--shape", "odd=16x300", "--dtype", "q4_k"], "odd")):
        p = run([dsinfer, "bench", "gemv", *bad, *roof], expect_rc=1)
        if culprit not in p.stderr:
            fail(f"error for {bad} does not name '{culprit}': {p.stderr}")
    for bad, culprit in ((["--numerics", "f16"], "f16"),
                         (["--bf16-kernel", "tiled"], "tiled"),
                         (["--numerics", "bf16", "--dtype", "f32"], "--dtype f32"),
                         (["--numerics", "bf16", "--dtype", "q4_k,fp8"], "--dtype q4_k")):
        p = run([dsinfer, "bench", "gemm", "--shape", "a=64x64", *bad, *roof, *bf16_roof],
                expect_rc=1)
        if culprit not in p.stderr:
            fail(f"error for {bad} does not name '{culprit}': {p.stderr}")
    print("ok")


if __name__ == "__main__":
    main()
