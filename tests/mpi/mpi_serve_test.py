#!/usr/bin/python3
"""`mpirun -np N dsinfer-mpi serve` serves across the ranks of an expert-parallel job
(docs/mpi.md, issue #14): rank 0 runs the HTTP server, tokenizer and scheduler; every rank's
engine runs the same rounds with its own share of the routed experts.

Truth: `dsinfer serve` in one process on the same generated tiny checkpoint (the tokenizer's
whole vocabulary), the same flags, the same requests through the official openai npm client
(mpi_serve_client.mjs: four at once with --parallel 2 so two queue, one streamed, one sampled
with a seed, one in thinking mode, then a prefix-cache hit). Checks that
  * the job at -np 2 gives every request the same text, finish reason and cache hits as one
    process (and -np 3, an uneven 2/3/3 split, with --spec mtp --draft 2 against one process
    with the same flags);
  * rank 0 reports the assignment at start and its expert exchanges at the end;
  * SIGTERM to rank 0 shuts the whole job down cleanly (mpirun exits 0, no rank left);
  * SIGKILL of rank 1 while a request streams ends the job within 10 s naming the killed rank,
    with no rank left running.
Prints one line per check; exit status 1 on any failure.

Usage: mpi_serve_test.py --dsinfer BIN --dsinfer-mpi BIN --mpirun MPIRUN --work DIR
                         --node NODE --source DIR
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpi_killed_rank_test import rank_pids, running  # noqa: E402
from mpi_logits_test import Checks, ENV, tiny_model  # noqa: E402  (the launcher environment)


def start(cmd, log_path):
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=ENV)
    deadline = time.time() + 120
    while time.time() < deadline:
        text = open(log_path).read()
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", text)
        if m:
            return proc, "http://127.0.0.1:" + m.group(1)
        if proc.poll() is not None:
            raise RuntimeError("server exited early:\n" + text[-3000:])
        time.sleep(0.1)
    stop(proc, signal.SIGKILL)
    raise RuntimeError("server did not start within 120 s:\n" + open(log_path).read()[-3000:])


def stop(proc, sig=signal.SIGTERM, timeout=60):
    """Sends `sig` and waits; returns the exit code (None: killed after the timeout)."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
        return None


def main():
    ap = argparse.ArgumentParser()
    for flag in ("--dsinfer", "--dsinfer-mpi", "--mpirun", "--work", "--node", "--source"):
        ap.add_argument(flag, required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    model = tiny_model(a.dsinfer, os.path.join(a.work, "tiny_full_vocab"), sets=())
    check = Checks()

    def client(url):
        p = subprocess.run([a.node, os.path.join(a.source, "tests/mpi/mpi_serve_client.mjs")],
                           capture_output=True, text=True, timeout=300,
                           env=dict(ENV, DSINFER_URL=url, DSINFER_SOURCE_DIR=a.source))
        if p.returncode != 0:
            return None, p.stderr[-2000:]
        return json.loads(p.stdout), ""

    serve = ["serve", "--model", model, "--host", "127.0.0.1", "--port", "0", "--threads", "1",
             "--parallel", "2", "--kv-budget", "64M"]
    mpirun = [a.mpirun, "--oversubscribe", "--bind-to", "none"]
    cases = [("", [], (2,)), (" --spec mtp --draft 2", ["--spec", "mtp", "--draft", "2"], (3,))]
    for label, extra, ranks_list in cases:
        proc, url = start([a.dsinfer] + serve + extra, os.path.join(a.work, "one.log"))
        want, err = client(url)
        rc = stop(proc)
        check(f"one process{label}: the client's requests answered", want is not None, err)
        check(f"one process{label}: SIGTERM exits 0", rc == 0, f"rc {rc}")
        if want is None:
            continue
        check(f"  the second long prompt hit the prefix cache ({want['long_again']['cached']})",
              want["long_again"]["cached"] == 64)
        for ranks in ranks_list:
            log_path = os.path.join(a.work, f"mpi{ranks}.log")
            proc, url = start(mpirun + ["-np", str(ranks), a.dsinfer_mpi] + serve + extra, log_path)
            got, err = client(url)
            check(f"mpirun -np {ranks} serve{label}: the same answers as one process",
                  got == want, f"\nwant {want}\ngot  {got}\n{err}")
            pids = rank_pids(proc.pid)
            check(f"  {ranks} ranks running", sorted(pids) == list(range(ranks)), str(pids))
            if 0 in pids:
                os.kill(pids[0], signal.SIGTERM)  # rank 0 drains and stops every rank
            try:
                rc = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                rc = stop(proc, signal.SIGKILL)
            log = open(log_path).read()
            check("  SIGTERM to rank 0: the job ends cleanly (mpirun exits 0)", rc == 0,
                  f"rc {rc}\n{log[-2000:]}")
            check("  no rank left running", not any(running(p) for p in pids.values()))
            m = re.search(r"rank 0 spent [0-9.]+ s in (\d+) expert exchanges", log)
            check(f"  across ranks (expert parallel over {ranks} MPI ranks; exchanges reported)",
                  f"expert parallel over {ranks} MPI ranks" in log and m is not None
                  and int(m.group(1)) > 0, log[-1500:])

    # A rank killed while a request streams ends the job within seconds, naming it.
    log_path = os.path.join(a.work, "killed.log")
    proc, url = start(mpirun + ["-np", "2", a.dsinfer_mpi] + serve, log_path)
    body = json.dumps({"model": "deepseek-v3.2", "max_tokens": 4000, "stream": True,
                       "messages": [{"role": "user", "content": "Count to a thousand."}]}).encode()
    first = threading.Event()

    def stream():
        req = urllib.request.Request(url + "/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                for _ in r:
                    first.set()
        except OSError:
            pass
        first.set()

    t = threading.Thread(target=stream, daemon=True)
    t.start()
    first.wait(timeout=60)
    pids = rank_pids(proc.pid)
    t0 = time.monotonic()
    if 1 in pids:
        os.kill(pids[1], signal.SIGKILL)
    try:
        rc = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        rc = stop(proc, signal.SIGKILL)
    took = time.monotonic() - t0
    log = open(log_path).read()
    check(f"SIGKILL of rank 1 mid-request: the job ended in {took:.1f} s (< 10 s), not 0",
          rc not in (0, None), f"rc {rc}\n{log[-2000:]}")
    check("  the message names the killed rank",
          re.search(r"rank 1 .*(killed|signal 9|ended)", log, re.S) is not None, log[-2000:])
    time.sleep(0.5)
    check("  no rank left running", not any(running(p) for p in pids.values()))
    t.join(timeout=30)
    sys.exit(check.done("mpi_serve"))


if __name__ == "__main__":
    main()
