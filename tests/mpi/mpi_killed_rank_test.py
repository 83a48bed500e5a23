#!/usr/bin/python3
"""A rank killed in the middle of an expert-parallel job ends the whole job within seconds, with
a message naming the rank (docs/mpi.md, "A rank that dies"; issue #14).

On a generated tiny checkpoint, `mpirun -np N dsinfer-mpi logits --mode decode` runs a long
decode (thousands of steps, two expert exchanges each). Once rank 0 has announced the run
(loading and the checkpoint comparison are over) and the ranks are exchanging, the test sends
SIGKILL to one rank (found by pid among mpirun's children: only processes this test started)
and checks, for rank 1 of 2 and for rank 0 of 3 (oversubscribed):
  * mpirun exits within KILL_BOUND seconds of the kill, with a non-zero status (the job had
    not finished on its own: it was still running at the kill);
  * the output names the killed rank — a surviving rank's "rank K of N (pid P, on this
    machine) ended while this rank waited for it" with the pid the test killed, or mpirun's own
    "process rank K with PID 0 on node ... exited on signal 9" (whichever comes first; the test
    says which);
  * no rank process is left running.
Truth: the pid the test killed and the clock. Prints one line per check; exit status 1 on any
failure.

Usage: mpi_killed_rank_test.py --dsinfer BIN --dsinfer-mpi BIN --mpirun MPIRUN --work DIR
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpi_logits_test import Checks, ENV, test_args, tiny_model  # noqa: E402  (the launcher environment of the MPI tests)

KILL_BOUND = 10.0  # seconds from the kill to mpirun's exit
START_BOUND = 60.0  # seconds for the job to load and announce the run
STEPS = 4000  # decode steps: far longer than START_BOUND + KILL_BOUND on any machine here


def rank_pids(parent):
    """{rank: pid} of the processes mpirun (`parent`) started (it forks local ranks itself)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            if int(stat[stat.rindex(")") + 2:].split()[1]) != parent:
                continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            if b"OMPI_COMM_WORLD_RANK" in env:
                found[int(env[b"OMPI_COMM_WORLD_RANK"])] = int(entry)
        except (OSError, ValueError, IndexError):
            continue  # a process that ended meanwhile
    return found


def running(pid):
    """True if `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        return stat[stat.rindex(")") + 2] not in "ZX"
    except OSError:
        return False


def kill_case(a, model, ranks, victim, check):
    mpirun = [a.mpirun, "--oversubscribe", "--bind-to", "none", "-np", str(ranks)]
    ids = ",".join(str((i * 37) % 1000 + 3) for i in range(STEPS))
    cmd = mpirun + [a.dsinfer_mpi, "logits", "--model", model, "--ids", ids, "--mode", "decode",
                    "--out", os.path.join(a.work, "killed.npy"), "--threads", "1"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
                         start_new_session=True)
    lines, started = [], threading.Event()

    def read():
        for line in p.stdout:
            lines.append(line)
            if "expert parallel over" in line:
                started.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    name = f"rank {victim} of {ranks} killed (SIGKILL) mid-run"
    pids = {}
    try:
        if not started.wait(START_BOUND) or p.poll() is not None:
            check(name, False, f"the job did not announce its run: {''.join(lines)[-1500:]}")
            return
        pids = rank_pids(p.pid)
        time.sleep(0.5)  # into the decode loop: the ranks are exchanging
        if len(pids) != ranks or p.poll() is not None:
            check(name, False, f"rank processes {pids}, job status {p.poll()}: "
                               f"{''.join(lines)[-1500:]}")
            return
        os.kill(pids[victim], signal.SIGKILL)
        t0 = time.monotonic()
        try:
            p.wait(timeout=KILL_BOUND + 20)
        except subprocess.TimeoutExpired:
            pass
        secs = time.monotonic() - t0
        reader.join(timeout=5)
        out = "".join(lines)
        ended = p.poll() is not None
        check(f"{name}: mpirun exits in {secs:.1f} s (bound {KILL_BOUND:.0f} s)",
              ended and secs <= KILL_BOUND, f"still running: {not ended}; {out[-1500:]}")
        check("  with a non-zero status", ended and p.returncode != 0, f"status {p.returncode}")
        pid = pids[victim]
        ours = re.search(rf"rank {victim} of {ranks} \(pid {pid}\b", out)
        # mpirun 4.1 names the rank but prints "PID 0" (its record of the pid is gone by then).
        theirs = re.search(rf"process rank {victim} with PID \d+ on node \S+ exited on signal 9",
                           out)
        who = "a surviving rank, with its pid" if ours else "mpirun" if theirs else "nobody"
        check(f"  the output names rank {victim} (named by {who})",
              bool(ours or theirs), out[-1500:])
        time.sleep(0.2)
        left = [r for r, q in pids.items() if running(q)]
        check("  no rank process is left running", not left, f"still running: ranks {left}")
    finally:
        if p.poll() is None:  # clean up after a failure: only what this test started
            for q in pids.values():
                try:
                    os.kill(q, signal.SIGKILL)
                except OSError:
                    pass
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def main():
    a = test_args()
    model = tiny_model(a.dsinfer, os.path.join(a.work, "tiny"))
    check = Checks()

    kill_case(a, model, ranks=2, victim=1, check=check)
    kill_case(a, model, ranks=3, victim=0, check=check)
    return check.done("mpi_killed_rank")


if __name__ == "__main__":
    sys.exit(main())
