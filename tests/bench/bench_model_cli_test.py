#!/usr/bin/env python3
"""CLI integration tests for `dsinfer bench model` on a generated tiny model. No timing is asserted.

usage: bench_model_cli_test.py DSINFER SCRATCH_DIR CASE
output: one run with `-o json --output-err md`: the tests come in llama-bench's order with its
  names; every JSON object's statistics equal the mean and sample standard deviation recomputed
  here (Python's `statistics`) from its samples, and so does the markdown row of the same run;
  the model's size and parameter count equal a sum over the safetensors headers read here; the
  tokens given to the model match the requested shapes (timed = r × tokens, the context after
  each repetition = depth + tokens, the context filled only up to each new depth).
defaults: the default model (DSINFER_DEFAULT_MODEL), `--preset` generation, -r 1 (sd 0),
  --no-warmup, --attention dense alone, the stdout table's shape, `-t 2,1` (a row per thread
  count, no parallel region over the count, by DSINFER_THREAD_STATS), `--numerics f32,bf16`.
bad_input: bad options exit non-zero naming the culprit, before measuring anything.
"""
import glob
import json
import math
import os
import shutil
import statistics
import struct
import subprocess
import sys


def default_numerics():
    """`--numerics auto`: bf16 where the AVX512-BF16 path is usable (the CPU has it and no
    DSINFER_ISA below avx512 is forced), else f32."""
    with open("/proc/cpuinfo") as fh:
        flags = next((l.split() for l in fh if l.startswith("flags")), [])
    isa_ok = os.environ.get("DSINFER_ISA", "") in ("", "avx512")
    has = all(f in flags for f in ("avx512f", "avx512bw", "avx512vl", "avx512_bf16"))
    return "bf16" if has and isa_ok else "f32"


DEFAULT_NUMERICS = default_numerics()


def run(args, env=None, expect_rc=0):
    p = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    if (expect_rc == 0) != (p.returncode == 0):
        sys.exit(f"FAIL: {' '.join(args)} exited {p.returncode}, expected "
                 f"{'0' if expect_rc == 0 else 'non-zero'}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def gen_tiny(dsinfer, out):
    run([dsinfer, "gen-model", "--preset", "tiny", "--seed", "1", "--set", "vocab_size=1000",
         "--out", out, "--force"])
    return out


def header_totals(model_dir):
    """Bytes of every tensor and elements of every tensor but the FP8 scales, from the headers."""
    nbytes = params = 0
    for path in sorted(glob.glob(os.path.join(model_dir, "*.safetensors"))):
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        for name, t in header.items():
            if name == "__metadata__":
                continue
            begin, end = t["data_offsets"]
            nbytes += end - begin
            if not name.endswith("_scale_inv"):
                params += math.prod(t["shape"])
    return nbytes, params


def md_rows(text):
    """The table rows (cells) of a llama-bench style markdown table, header and rule skipped."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("|")]
    assert rows and rows[0] == [
        "model", "size", "params", "attention", "numerics", "acts", "threads", "test", "t/s"], rows
    assert set(rows[1][0]) <= set("-:") and rows[1][-1].endswith(":"), rows[1]
    return rows[2:]


def expected_tests(attentions, depths, prompts, gens):
    out = []
    for a in attentions:
        for d in depths:
            for p in prompts:
                out.append((a, d, p, 0))
            for n in gens:
                out.append((a, d, 0, n))
    return out


def name(d, p, n):
    s = f"pp{p}" if p else f"tg{n}"
    return f"{s} @ d{d}" if d else s


def check_stats(r):
    tokens = r["n_prompt"] or r["n_gen"]
    ns, ts = r["samples_ns"], r["samples_ts"]
    assert len(ns) == len(ts) == r["repetitions"], r
    for a, b in zip(ns, ts):
        assert a > 0 and math.isclose(b, tokens * 1e9 / a, rel_tol=1e-12), (a, b)
    sd = (lambda v: statistics.stdev(v) if len(v) > 1 else 0.0)
    assert math.isclose(r["avg_ts"], statistics.fmean(ts), rel_tol=1e-12), r
    assert math.isclose(r["stddev_ts"], sd(ts), rel_tol=1e-9, abs_tol=1e-9), r
    assert math.isclose(r["avg_ns"], statistics.fmean(ns), rel_tol=1e-12), r
    assert math.isclose(r["stddev_ns"], sd(ns), rel_tol=1e-9, abs_tol=1e-6), r
    return statistics.fmean(ts), sd(ts)


def case_output(dsinfer, scratch):
    model = gen_tiny(dsinfer, os.path.join(scratch, "tiny"))
    prompts, gens, depths, reps, batch = [24, 8], [3], [0, 40, 20], 2, 16
    p = run([dsinfer, "bench", "model", "--model", model, "-p", "24,8", "-n", "3", "-d", "0,40,20",
             "-r", str(reps), "-b", str(batch), "--threads", "1", "-o", "json", "--output-err", "md"])
    results = json.loads(p.stdout)
    want = expected_tests(["dsa", "dense"], depths, prompts, gens)
    got = [(r["attention"], r["n_depth"], r["n_prompt"], r["n_gen"]) for r in results]
    assert got == want, (got, want)
    nbytes, params = header_totals(model)
    valid = {}  # attention -> leading cache positions holding the context stream
    for r, (a, d, pp, n) in zip(results, want):
        assert r["test"] == name(d, pp, n), r["test"]
        assert r["model_size"] == nbytes and r["model_n_params"] == params, (r, nbytes, params)
        assert r["n_threads"] == 1 and r["n_batch"] == batch and r["type_kv"] == "f32", r
        assert r["numerics"] == DEFAULT_NUMERICS, r
        assert r["repetitions"] == reps and r["warmup"] is True, r
        tokens = pp or n
        check_stats(r)
        assert r["context_after"] == [d + tokens] * reps, r
        fwd = r["forward_tokens"]
        assert fwd["timed"] == reps * tokens, r
        assert fwd["warmup"] == (min(pp, batch) if pp else 1), r
        # The context holds one token stream; it is filled only where it does not reach d yet.
        have = valid.get(a, 0)
        assert fwd["depth"] == max(0, d - have), (r, have)
        valid[a] = d
    assert sum(r["forward_tokens"]["depth"] for r in results) == 2 * 40, results

    rows = md_rows(p.stderr)
    assert len(rows) == len(results), (rows, p.stderr)
    mib = f"{nbytes / 2**20:.2f} MiB"
    mparams = f"{params / 1e6:.2f} M"
    for row, r in zip(rows, results):
        mean, sd = check_stats(r)
        assert row[:8] == ["tiny", mib, mparams, r["attention"], DEFAULT_NUMERICS, "-", "1",
                           r["test"]], (row, r)
        assert r["block_acts"] == "-", r  # an FP8 model: no block weights
        md_mean, md_sd = (float(x) for x in row[8].split("±"))
        assert abs(md_mean - mean) <= 0.0051 and abs(md_sd - sd) <= 0.0051, (row, mean, sd)
    assert f"bench model [{len(results)}/{len(results)}]" in p.stderr, p.stderr  # progress
    assert "filling the context (40 tokens, 40 to compute)" in p.stderr, p.stderr


def case_defaults(dsinfer, scratch):
    model = gen_tiny(dsinfer, os.path.join(scratch, "tiny"))
    env = dict(os.environ, DSINFER_DEFAULT_MODEL=model)
    p = run([dsinfer, "bench", "model", "-p", "16", "-n", "2", "-r", "1", "--no-warmup",
             "--attention", "dense"], env=env)
    rows = md_rows(p.stdout)
    assert [r[3] for r in rows] == ["dense", "dense"] and [r[7] for r in rows] == ["pp16", "tg2"], rows
    for row in rows:
        assert row[8].endswith("± 0.00") and float(row[8].split("±")[0]) > 0, row
    assert "bench model [2/2]" in p.stderr and "|" not in p.stderr, p.stderr

    p = run([dsinfer, "bench", "model", "-p", "0", "-n", "2", "-r", "3", "--no-warmup",
             "-d", "1K", "-o", "json"], env=env)
    results = json.loads(p.stdout)
    assert [(r["attention"], r["test"]) for r in results] == [("dsa", "tg2 @ d1024"),
                                                               ("dense", "tg2 @ d1024")], results
    for r in results:
        check_stats(r)
        assert r["warmup"] is False and r["forward_tokens"] == {"depth": 1024, "warmup": 0,
                                                                "timed": 6}, r
        assert r["model_filename"] == model and r["context_after"] == [1026] * 3, r

    # -t takes a list (llama-bench's habit): a row per thread count; every parallel region of the
    # run used at most that many threads (counted by DSINFER_THREAD_STATS, docs/threads.md).
    stats = os.path.join(scratch, "stats.json")
    for threads, most in (("1", 1), ("2,1", 2)):
        p = run([dsinfer, "bench", "model", "-p", "8", "-n", "2", "-r", "1", "-t", threads,
                 "--attention", "dsa", "-o", "json"], env=dict(env, DSINFER_THREAD_STATS=stats))
        results = json.loads(p.stdout)
        want = [(int(t), name) for t in threads.split(",") for name in ("pp8", "tg2")]
        assert [(r["n_threads"], r["test"]) for r in results] == want, results
        with open(stats) as f:
            sites = json.load(f)["sites"]
        assert sites and all(s["max_team"] <= most and s["threads"] <= most for s in sites), sites
        assert all(s["started_by"] == ["main"] for s in sites), sites

    # --numerics f32,bf16: both in one run, the numerics loop inside the attention loop.
    p = run([dsinfer, "bench", "model", "-p", "8", "-n", "2", "-r", "1", "--attention", "dsa",
             "--numerics", "f32,bf16", "-o", "json"], env=env)
    results = json.loads(p.stdout)
    assert [(r["numerics"], r["test"]) for r in results] == [
        ("f32", "pp8"), ("f32", "tg2"), ("bf16", "pp8"), ("bf16", "tg2")], results
    for r in results:
        check_stats(r)

    # A GGUF (block weights): the acts column names what each test's block weights multiply —
    # --block-acts auto gives bf16 activations to the bf16-numerics tests on a CPU with
    # AVX512-BF16 and int8 ones to the rest; a forced mode applies to every test.
    gguf = os.path.join(scratch, "tiny-q8.gguf")
    run([dsinfer, "quantize", "--model", model, "--out", gguf, "--type", "Q8_0"])
    for flag, want in (("auto", {"f32": "int8", "bf16": "bf16" if DEFAULT_NUMERICS == "bf16" else "int8"}),
                       ("f32", {"f32": "f32", "bf16": "f32"}),
                       ("int8", {"f32": "int8", "bf16": "int8"})):
        p = run([dsinfer, "bench", "model", "--model", gguf, "-p", "8", "-n", "0", "-r", "1",
                 "--attention", "dsa", "--numerics", "f32,bf16", "--block-acts", flag,
                 "-o", "json", "--output-err", "md"])
        results = json.loads(p.stdout)
        assert [(r["numerics"], r["block_acts"]) for r in results] == [
            ("f32", want["f32"]), ("bf16", want["bf16"])], (flag, results)
        assert [(row[4], row[5]) for row in md_rows(p.stderr)] == [
            ("f32", want["f32"]), ("bf16", want["bf16"])], (flag, p.stderr)

    cache = os.path.join(scratch, "cache")
    env = dict(os.environ, XDG_CACHE_HOME=cache)
    for _ in range(2):  # generated once, reused the second time
        p = run([dsinfer, "bench", "model", "--preset", "tiny", "--set", "vocab_size=1000", "-p", "8",
                 "-n", "0", "-r", "1", "--attention", "dsa", "-o", "json"], env=env)
        results = json.loads(p.stdout)
        assert [r["test"] for r in results] == ["pp8"], results
    assert os.path.isfile(os.path.join(cache, "dsinfer", "tiny-seed0-vocab_size=1000", "config.json"))
    assert "generating" not in p.stderr, p.stderr


def case_bad_input(dsinfer, scratch):
    model = gen_tiny(dsinfer, os.path.join(scratch, "tiny"))  # max_position_embeddings 4096
    base = [dsinfer, "bench", "model", "--model", model, "-r", "1"]
    cases = [
        (["-p", "-1"], "-p: bad token count '-1'"),
        (["-p", "8,,4"], "empty item"),
        (["-d", "1.5K"], "-d"),
        (["-n", "4Q"], "-n"),
        (["-p", "99999999999999"], "too large"),
        (["-d", "999999999"], "max_position_embeddings"),
        (["-p", "0", "-n", "0"], "nothing to measure"),
        (["-d", "4000", "-p", "512"], "max_position_embeddings (4096)"),
        (["-d", "4000", "-p", "512"], "pp512 @ d4000 needs 4512 positions"),
        (["-n", "5000", "-p", "0"], "tg5000"),
        (["-r", "0"], "repetitions"),
        (["-t", "0"], "--threads: 0"),
        (["-t", "2,x"], "--threads: bad thread count 'x'"),
        (["-b", "0"], "batch-size"),
        (["--attention", "sparse"], "sparse"),
        (["-o", "xml"], "xml"),
        (["--output-err", "csv"], "csv"),
        (["--kv-cache", "f16"], "f16"),
        (["--numerics", "f16"], "--numerics: unknown numerics 'f16'"),
        (["--numerics", "f32,"], "--numerics: unknown numerics ''"),
        (["--preset", "tiny"], "not both"),
        (["--set", "vocab_size=10"], "--set"),
    ]
    for extra, needle in cases:
        p = run(base + extra, expect_rc=1)
        msg = p.stderr + p.stdout
        assert needle in msg, (extra, needle, msg)
        assert "bench model [" not in msg and "| model" not in msg, (extra, msg)
    p = run([dsinfer, "bench", "model", "--model", os.path.join(scratch, "missing")], expect_rc=1)
    assert "missing" in p.stderr, p.stderr


def main():
    dsinfer, scratch, case = sys.argv[1:4]
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    {"output": case_output, "defaults": case_defaults, "bad_input": case_bad_input}[case](dsinfer, scratch)
    print(f"PASS bench_model_{case}")


if __name__ == "__main__":
    main()
