#!/usr/bin/python3
"""`--threads N` is honoured by every parallel region, counted, not timed.

With DSINFER_THREAD_STATS=FILE, dsinfer records for every marked OpenMP parallel region (26
sites in kernels, model, tools and benchmarks) how many distinct team members ran work and the
largest team it ran with, and writes them as JSON at exit (on SIGTERM for the server). For
gen-model, logits, run, eval and serve (whose forward passes run on the engine's own worker thread)
on a generated tiny checkpoint:

* `--threads 1`: every region ran with a team of 1;
* `--threads 2`: no region ran with more than 2, and the regions that carry the work (the
  linear layers, the checkpoint generator) ran on 2 distinct threads;
* no `--threads`: the team size is the number of CPUs in the affinity mask (under
  `taskset -c 0`: 1), as sched_getaffinity reports it;
* which threads start the parallel regions (each region's team member 0, by the role the
  thread gave itself): the main thread for the one-shot commands; in the server, the engine's
  worker runs every forward pass and no region is ever started by an HTTP connection thread,
  with `--parallel 2` and two concurrent requests (one streamed) so several HTTP threads are
  busy while the model computes.

Usage: threads_test.py --dsinfer BIN --work DIR
"""

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

failures = 0


def check(name, ok, detail=""):
    global failures
    failures += not ok
    print(f"[{'PASS' if ok else 'FAIL'}] {name} {detail}", flush=True)


def env_with_stats(path):
    env = dict(os.environ, DSINFER_THREAD_STATS=path)
    env.pop("OMP_NUM_THREADS", None)  # the default under test is the affinity mask
    return env


def run_stats(cmd, path, prefix=()):
    if os.path.exists(path):
        os.remove(path)
    p = subprocess.run(list(prefix) + cmd, env=env_with_stats(path), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stderr[-2000:]}")
    with open(path) as f:
        return json.load(f)


def serve_stats(dsinfer, model, threads, path, work):
    if os.path.exists(path):
        os.remove(path)
    log_path = os.path.join(work, f"serve{threads}.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([dsinfer, "serve", "--model", model, "--host", "127.0.0.1",
                                 "--port", "0", "--threads", str(threads), "--model-name", "threads-test",
                                 "--parallel", "2", "--max-connections", "8"],
                                env=env_with_stats(path), stdout=log, stderr=log)
    try:
        url, deadline = None, time.time() + 60
        while url is None and time.time() < deadline and proc.poll() is None:
            m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", open(log_path).read())
            url = m.group(1) if m else time.sleep(0.1)
        if url is None:
            raise RuntimeError("server did not start:\n" + open(log_path).read())
        def ask(stream):
            body = json.dumps({"model": "threads-test", "max_tokens": 4, "temperature": 0,
                               "stream": stream,
                               "messages": [{"role": "user", "content": "count the threads " * 8}]})
            req = urllib.request.Request(url + "/v1/chat/completions", data=body.encode(),
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=120) as r:
                    text = r.read().decode()
            except urllib.error.HTTPError as e:
                raise RuntimeError(f"HTTP {e.code}: {e.read().decode()[:500]}") from None
            if stream:
                assert text.rstrip().endswith("data: [DONE]"), text[-300:]
            else:
                assert json.loads(text)["usage"]["completion_tokens"] >= 1, text

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            for f in [pool.submit(ask, False), pool.submit(ask, True)]:
                f.result()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with open(path) as f:
        return json.load(f)


def describe(stats):
    return ", ".join(f"{s['site']} {s['threads']}/{s['max_team']}"
                     for s in sorted(stats["sites"], key=lambda s: s["site"]))


def check_starters(name, stats, allowed, required):
    """Every region was started by a thread of an `allowed` role; the `required` role started some."""
    sites = stats["sites"]
    bad = [f"{s['site']} by {s['started_by']}" for s in sites if not set(s["started_by"]) <= allowed]
    check(f"{name}: parallel regions started only by {sorted(allowed)}", not bad, f"{bad}")
    seen = sorted({r for s in sites for r in s["started_by"]})
    check(f"{name}: the {required} thread started regions", required in seen, f"(roles: {seen})")


def check_run(name, stats, n, busy_prefixes):
    sites = stats["sites"]
    check(f"{name}: compute_threads == {n}", stats["compute_threads"] == n,
          f"(got {stats['compute_threads']})")
    check(f"{name}: parallel regions ran", len(sites) > 0, describe(stats))
    over = [s["site"] for s in sites if s["max_team"] > n or s["threads"] > n]
    check(f"{name}: no region used more than {n} threads", not over, f"over: {over}")
    if n == 1 or not busy_prefixes:
        return
    busy = [s for s in sites if s["site"].startswith(busy_prefixes)]
    full = [s["site"] for s in busy if s["threads"] == n and s["max_team"] == n]
    check(f"{name}: the working regions ({'|'.join(busy_prefixes)}*) ran on {n} threads",
          bool(busy) and bool(full), f"on {n}: {full}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsinfer", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    stats_path = os.path.join(a.work, "stats.json")
    model = os.path.join(a.work, "tiny")
    gen = [a.dsinfer, "gen-model", "--preset", "tiny", "--seed", "9", "--force"]
    small = model + ".small"  # --threads 1 on a small vocabulary (the server needs the full one)
    stats = run_stats(gen + ["--set", "vocab_size=4096", "--out", small, "--threads", "1"],
                      stats_path)
    check_run("gen-model --threads 1", stats, 1, ("gen.",))
    shutil.rmtree(small, ignore_errors=True)
    stats = run_stats(gen + ["--out", model, "--threads", "2"], stats_path)
    check_run("gen-model --threads 2", stats, 2, ("gen.",))

    ids = ",".join(str(7 + 13 * i % 4000) for i in range(40))  # > index_topk 16: DSA selects
    logits = [a.dsinfer, "logits", "--model", model, "--ids", ids,
              "--out", os.path.join(a.work, "logits.npy")]
    run = [a.dsinfer, "run", "--model", model, "--ids", ids, "-n", "4"]
    text = os.path.join(a.work, "text.jsonl")
    with open(text, "w") as f:
        f.write(json.dumps({"ids": [int(t) for t in ids.split(",")]}) + "\n")
    evaluate = [a.dsinfer, "eval", "--model", model, "--text", text, "--json"]
    for n in (1, 2):
        stats = run_stats(logits + ["--threads", str(n)], stats_path)
        check_run(f"logits --threads {n}", stats, n, ("linear.",))
        check_starters(f"logits --threads {n}", stats, {"main"}, "main")
        check_run(f"run --threads {n}", run_stats(run + ["--threads", str(n)], stats_path),
                  n, ("linear.",))
        check_run(f"eval --threads {n}", run_stats(evaluate + ["--threads", str(n)], stats_path),
                  n, ("linear.",))
        stats = serve_stats(a.dsinfer, model, n, stats_path, a.work)
        check_run(f"serve --threads {n}", stats, n, ("linear.",))
        # The model loads on the main thread; every forward pass runs on the engine's worker.
        check_starters(f"serve --threads {n}", stats, {"main", "engine"}, "engine")
        linear = [s for s in stats["sites"] if s["site"].startswith("linear.")]
        check(f"serve --threads {n}: the linear layers ran from the engine's worker only",
              bool(linear) and all(s["started_by"] == ["engine"] for s in linear),
              f"{[(s['site'], s['started_by']) for s in linear]}")

    cores = len(os.sched_getaffinity(0))
    stats = run_stats(logits, stats_path)
    check_run(f"logits, default = {cores} cores in the affinity mask", stats, cores, ())
    if shutil.which("taskset"):
        first = min(os.sched_getaffinity(0))
        stats = run_stats(logits, stats_path, prefix=("taskset", "-c", str(first)))
        check_run("logits under taskset -c (one core), default", stats, 1, ("linear.",))
    print(f"{'FAILED' if failures else 'OK'}: {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
