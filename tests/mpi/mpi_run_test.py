#!/usr/bin/python3
"""`mpirun -np N dsinfer-mpi run` generates across the ranks of an expert-parallel job (docs/mpi.md,
issue #14): rank 0 tokenizes, samples and prints; its serving engine leads the other ranks'
(EngineReplica, as `serve` across ranks), every rank running the same forward passes with its own
experts.

Truth: `dsinfer run` in one process (the serving engine) on the same generated tiny checkpoint
(vocabulary 1024 for ids; the tokenizer's whole vocabulary for text), same prompt and options. Checks that the standard output is the same, byte for byte, for
  * greedy generation from token ids (`--ids`, the ids printed) at -np 2 and -np 3 (uneven);
  * greedy generation from a text prompt (`-p`, chat encoding, the text printed) at -np 2;
  * seeded temperature sampling (`--temp 0.8 --top-p 0.9 --seed 5`) at -np 2: rank 0's sampler
    draws from bitwise the same logits as one process's;
  * MTP speculative decoding (`--spec mtp --draft 2`) at -np 2 and -np 3;
  * greedy from ids on a Q8_0 GGUF file of the same checkpoint at -np 2;
  * a three-turn `--chat` on standard input at -np 2 (one process reuses the conversation through
    its engine session; across ranks, where sessions do not run, the prefix cache reuses its whole
    64-token pages — none here: the same text either way);
and that the job really ran across ranks (rank 0's report names the assignment and a non-zero
count of expert exchanges). Prints one line per check; exit status 1 on any failure.

Usage: mpi_run_test.py --dsinfer BIN --dsinfer-mpi BIN --mpirun MPIRUN --work DIR
"""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpi_logits_test import Checks, ENV, call, test_args, tiny_model  # noqa: E402  (the launcher environment)

IDS = "5,17,3,901,44,230,7,7,612,88"


def run(cmd, timeout=300, stdin=None):
    try:
        p = subprocess.run(cmd, input=stdin, stdin=None if stdin else subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
                           timeout=timeout)
        return p.returncode, p.stdout, p.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired:
        return None, b"", f"timed out after {timeout} s"


def main():
    a = test_args()
    model = tiny_model(a.dsinfer, os.path.join(a.work, "tiny"))
    # Text prompts need the tokenizer's whole vocabulary (the chat encoding's special tokens).
    full = os.path.join(a.work, "tiny_full_vocab")
    if not os.path.exists(os.path.join(full, "config.json")):
        rc, out, _ = call([a.dsinfer, "gen-model", "--preset", "tiny", "--seed", "7", "--out", full,
                           "--force"])
        assert rc == 0, out
    check = Checks()
    gguf = os.path.join(a.work, "tiny_q8_0.gguf")
    rc, out, _ = call([a.dsinfer, "quantize", "--model", model, "--out", gguf, "--type", "Q8_0"])
    check("quantize --type Q8_0 (a GGUF file runs across ranks too)", rc == 0, out[-800:])

    mpirun = [a.mpirun, "--oversubscribe", "--bind-to", "none"]
    cases = [
        ("greedy --ids", model, ["--ids", IDS, "-n", "12"], (2, 3)),
        ("greedy -p", full, ["-p", "Why is the sky blue?", "-n", "12"], (2,)),
        ("sampled --ids", model, ["--ids", IDS, "-n", "12", "--temp", "0.8", "--top-p", "0.9",
                                  "--seed", "5"], (2,)),
        ("--spec mtp --draft 2", model, ["--ids", IDS, "-n", "16", "--spec", "mtp", "--draft", "2"],
         (2, 3)),
        ("--chat, three turns", full, ["--chat", "-n", "10"], (2,)),
        ("greedy --ids, Q8_0 GGUF file", gguf, ["--ids", IDS, "-n", "12"], (2,)),
    ]
    chat = b"Why is the sky blue?\nAnd the sea?\n/think\nSay it in one word.\n"
    for name, folder, extra, ranks_list in cases:
        args = ["run", "--model", folder, "--threads", "1"] + extra
        stdin = chat if "--chat" in extra else None
        rc, want, err = run([a.dsinfer] + args, stdin=stdin)
        check(f"one process, {name}", rc == 0 and len(want) > 1, err[-1500:])
        if name == "greedy --ids":
            n = len(want.decode().strip().split(","))
            check(f"  it generated several tokens ({n})", n > 1, want.decode())
        if "--chat" in extra:
            check("  three answers", want.count(b"\n") >= 3, want.decode(errors="replace"))
        for ranks in ranks_list:
            rc, got, err = run(mpirun + ["-np", str(ranks), a.dsinfer_mpi] + args, stdin=stdin)
            check(f"mpirun -np {ranks} run, {name}: the same output as one process",
                  rc == 0 and got == want, f"rc {rc}\nwant {want!r}\ngot  {got!r}\n{err[-1500:]}")
            m = re.search(rf"expert parallel over {ranks} MPI ranks .*in (\d+) expert exchanges",
                          err)
            check("  across ranks (the assignment and the exchanges reported)",
                  m is not None and int(m.group(1)) > 0, err[-800:])
    return check.done("mpi_run")


if __name__ == "__main__":
    sys.exit(main())
