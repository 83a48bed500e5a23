#!/usr/bin/env python3
"""CLI integration tests for `dsinfer bench layer` on a generated tiny model.

usage: bench_layer_cli_test.py DSINFER SCRATCH_DIR CASE
json_and_plot: one JSON object per (phase, attention, position, batch), each consistent
  (ms_per_token ↔ tokens_per_s ↔ usd_per_mtok at the given price), and an SVG that parses as
  XML with one polyline per curve; table: the human table has a row per case and the ratio
  column; bad_input: bad options exit non-zero naming the culprit; preset_cache: --preset
  generates its model once under $XDG_CACHE_HOME/dsinfer/ and reuses it; main_job: `dsinfer`
  without arguments ends with the DSA-vs-dense table; verify: --phase verify runs 1 + N rows
  per sequence for each --draft N and prints the verify-vs-decode lines.
"""
import json
import math
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

SVG = "{http://www.w3.org/2000/svg}"


def run(args, env=None, expect_rc=0):
    p = subprocess.run(args, capture_output=True, text=True, env=env)
    if (expect_rc == 0) != (p.returncode == 0):
        sys.exit(f"FAIL: {' '.join(args)} exited {p.returncode}, expected "
                 f"{'0' if expect_rc == 0 else 'non-zero'}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def gen_tiny(dsinfer, out):
    run([dsinfer, "gen-model", "--preset", "tiny", "--seed", "1", "--set", "vocab_size=1000",
         "--out", out])
    return out


def close(a, b, rel=1e-9):
    return math.isclose(a, b, rel_tol=rel, abs_tol=0)


def case_json_and_plot(dsinfer, scratch):
    model = gen_tiny(dsinfer, os.path.join(scratch, "tiny"))
    plot = os.path.join(scratch, "out.svg")
    price = 2.5
    p = run([dsinfer, "bench", "layer", "--model", model, "--positions", "0,64", "--batch", "2",
             "--chunk", "8", "--usd-per-hour", str(price), "--min-time", "0", "--json",
             "--plot", plot])
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    keys = {(r["phase"], r["attention"], r["position"], r["batch"]) for r in rows}
    want = {(ph, a, pos, b) for a in ("dsa", "dense") for pos in (0, 64)
            for ph, b in (("decode", 2), ("decode", 1), ("prefill", 1))}
    assert keys == want and len(rows) == len(want), (sorted(keys), len(rows))
    for r in rows:
        assert r["bench"] == "layer" and r["synthetic_cache"] is True, r
        assert r["chunk"] == (8 if r["phase"] == "prefill" else 1), r
        assert r["tokens_per_step"] == r["batch"] * r["chunk"], r
        ms = r["ms_per_token"]
        assert ms > 0 and close(r["step_ms"], ms * r["tokens_per_step"]), r
        assert close(r["tokens_per_s"], 1000 / ms), r
        assert close(r["usd_per_mtok"], ms / 1000 / 3600 * price * 1e6), r
        assert r["usd_per_hour"] == price and r["step_ms"] <= r["median_step_ms"], r
        assert r["reps"] >= 3 and r["timing"] == "min" and r["layer"] == 1, r
        assert r["isa"] in ("scalar", "avx2", "avx512") and r["threads"] >= 1, r
    assert "bench layer [12/12]" in p.stderr, p.stderr  # progress on stderr

    root = ET.parse(plot).getroot()
    assert root.tag == SVG + "svg", root.tag
    lines = root.findall(f".//{SVG}polyline")
    labels = sorted(pl.find(f"{SVG}title").text for pl in lines)
    assert labels == sorted(["DSA, batch 2", "DSA, batch 1", "dense, batch 2", "dense, batch 1",
                             "DSA, chunk 8", "dense, chunk 8"]), labels
    for pl in lines:
        pts = pl.get("points").split()
        assert len(pts) == 2, pts  # positions 0 and 64
        for xy in pts:
            x, y = map(float, xy.split(","))
            assert math.isfinite(x) and math.isfinite(y), xy
    texts = "".join(t.text or "" for t in root.iter(SVG + "text"))
    assert "Prefill" in texts and "Decode" in texts and "synthetic" in texts, texts


def case_table(dsinfer, scratch):
    model = gen_tiny(dsinfer, os.path.join(scratch, "tiny"))
    p = run([dsinfer, "bench", "layer", "--model", model, "--positions", "0,1K",
             "--phase", "decode", "--batch", "3", "--min-time", "0"])
    out = p.stdout
    assert "synthetic values" in out and "0.15 USD/hour" in out, out
    assert "dense/DSA" in out, out
    rows = [l for l in out.splitlines() if l.startswith("decode ") and "|" in l]
    assert len(rows) == 4, out  # batch 3 and 1 × positions 0 and 1K
    assert any(" 1K " in r for r in rows), out
    assert "decode at 1K (batch 3): DSA" in out, out
    # One attention mode: no ratio column.
    p = run([dsinfer, "bench", "layer", "--model", model, "--positions", "16",
             "--attention", "dense", "--phase", "prefill", "--chunk", "4", "--min-time", "0"])
    assert "dense/DSA" not in p.stdout and "prefill " in p.stdout, p.stdout


def case_verify(dsinfer, scratch):
    # --phase verify: 1 + N rows per sequence for each --draft N, at every batch; the JSON
    # carries the draft count, and the text ends with the verify-vs-decode line of each.
    model = gen_tiny(dsinfer, os.path.join(scratch, "tiny"))
    base = [dsinfer, "bench", "layer", "--model", model, "--positions", "64", "--attention", "dsa",
            "--phase", "decode,verify", "--draft", "1,2", "--batch", "2", "--min-time", "0"]
    rows = [json.loads(line) for line in run(base + ["--json"]).stdout.splitlines()]
    got = sorted((r["phase"], r["batch"], r["chunk"], r["drafts"]) for r in rows)
    want = sorted([("decode", b, 1, 0) for b in (2, 1)] +
                  [("verify", b, 1 + n, n) for b in (2, 1) for n in (1, 2)])
    assert got == want, got
    for r in rows:
        assert r["tokens_per_step"] == r["batch"] * r["chunk"], r
        assert close(r["step_ms"], r["ms_per_token"] * r["tokens_per_step"]), r
    out = run(base).stdout
    lines = [l for l in out.splitlines() if l.startswith("verify batch")]
    assert len(lines) == 4, out
    assert any(l.startswith("verify batch 2, 1+2 rows at 64 (dsa): step ") for l in lines), out
    for l in lines:
        assert "pays above acceptance" in l and "experts read" in l, l
    p = run([a for a in base if a != "1,2" and a != "--draft"] + ["--draft", "0"], expect_rc=1)
    assert "--draft" in p.stderr, p.stderr


def case_bad_input(dsinfer, scratch):
    model = gen_tiny(dsinfer, os.path.join(scratch, "tiny"))
    base = [dsinfer, "bench", "layer", "--model", model]
    for extra, needle in [
        (["--positions", "4Q"], "bad position '4Q'"),
        (["--positions", "0,,4K"], "empty item"),
        (["--attention", "sparse"], "unknown attention 'sparse'"),
        (["--phase", "train"], "unknown phase 'train'"),
        (["--positions", "4K"], "max_position_embeddings (4096)"),  # 4K + chunk 512 > 4096
        (["--kv-cache", "int4"], "int4"),
        (["--layer", "7"], "--layer 7"),
        (["--preset", "tiny"], "not both"),
    ]:
        p = run(base + extra, expect_rc=1)
        assert needle in p.stderr, (extra, p.stderr)
        assert "Traceback" not in p.stderr and "terminate" not in p.stderr, p.stderr
    p = run([dsinfer, "bench", "layer", "--model", os.path.join(scratch, "nope")], expect_rc=1)
    assert "nope" in p.stderr, p.stderr
    p = run(base + ["--batch", "0"], expect_rc=1)
    assert "--batch" in p.stderr, p.stderr


def case_preset_cache(dsinfer, scratch):
    env = dict(os.environ, XDG_CACHE_HOME=scratch)
    args = [dsinfer, "bench", "layer", "--preset", "tiny", "--set", "vocab_size=1000",
            "--positions", "0", "--phase", "decode", "--attention", "dsa", "--batch", "1",
            "--min-time", "0", "--json"]
    p1 = run(args, env=env)
    model = os.path.join(scratch, "dsinfer", "tiny-seed0-vocab_size=1000")
    assert os.path.isfile(os.path.join(model, "config.json")), os.listdir(scratch)
    assert "generating a model (preset tiny, seed 0, vocab_size=1000)" in p1.stderr, p1.stderr
    assert json.loads(p1.stdout.splitlines()[0])["model"] == model, p1.stdout
    p2 = run(args, env=env)
    assert "generating" not in p2.stderr, p2.stderr  # reused


def case_main_job(dsinfer, scratch):
    # The main job ends with the DSA-vs-dense table; on tiny (top-16) at positions 0, 32, 128.
    model = os.path.join(scratch, "default")
    run([dsinfer, "gen-model", "--preset", "tiny", "--seed", "1", "--out", model])  # real vocab
    p = run([dsinfer], env=dict(os.environ, DSINFER_DEFAULT_MODEL=model))
    out = p.stdout
    table = out[out.index("== DSA vs dense attention"):]
    assert "top 16" in table and "synthetic values" in table, table
    rows = [l.split() for l in table.splitlines() if "|" in l and not l.startswith("phase")]
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("decode", "8", "1", "0"), ("decode", "8", "1", "32"), ("decode", "8", "1", "128"),
        ("prefill", "1", "32", "0"), ("prefill", "1", "32", "32"), ("prefill", "1", "32", "128")
    ], table
    assert all(r[-1].endswith("x") for r in rows), table  # dense/DSA ratio on every row
    assert "decode at 128 (batch 8): DSA" in table and "prefill at 128 (chunk 32): DSA" in table


def main():
    dsinfer, scratch, case = sys.argv[1:4]
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    globals()["case_" + case](dsinfer, scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"bench_layer {case}: ok")


if __name__ == "__main__":
    main()
