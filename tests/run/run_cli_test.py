#!/usr/bin/python3
"""`dsinfer run` end to end on a generated tiny checkpoint, checked against other commands:

* greedy `run --ids P -n 4` must produce the argmax of `dsinfer logits` rows over P + generated
  (an identity between the generation loop and the forward pass);
* `run -p TEXT` must be the ids path of the prompt that `chat-template` + `tokenize` give,
  detokenized (the text front end adds nothing but the encoding);
* `run --chat` must answer every turn and reuse the cached conversation on the next turn;
* bad combinations exit 1 naming the problem.

Usage: run_cli_test.py --dsinfer BIN --work DIR
"""

import argparse
import json
import os
import re
import subprocess
import sys

import numpy as np


def call(cmd, stdin=None):
    p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsinfer", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    model = os.path.join(a.work, "tiny")
    if not os.path.exists(os.path.join(model, "config.json")):
        rc, _, err = call([a.dsinfer, "gen-model", "--preset", "tiny", "--seed", "5", "--out", model,
                           "--force"])
        assert rc == 0, err
    failures = 0

    def check(name, ok, detail=""):
        nonlocal failures
        failures += not ok
        print(f"[{'PASS' if ok else 'FAIL'}] {name} {detail}")

    # 1. Greedy generation == argmax of the forward pass's logits.
    prompt = [0, 128803, 33310, 3, 342, 128804, 128799]
    rc, out, err = call([a.dsinfer, "run", "--model", model, "--ids", ",".join(map(str, prompt)),
                         "-n", "4"])
    gen = [int(t) for t in out.strip().split(",")] if rc == 0 else []
    check("run --ids exits 0 and prints 4 ids", rc == 0 and len(gen) == 4, err.strip()[-200:])
    npy = os.path.join(a.work, "logits.npy")
    rc, _, err = call([a.dsinfer, "logits", "--model", model, "--ids",
                       ",".join(map(str, prompt + gen[:-1])), "--out", npy])
    if rc == 0 and gen:
        logits = np.load(npy)
        want = [int(np.argmax(logits[len(prompt) - 1 + i])) for i in range(len(gen))]
        check("greedy run == argmax of logits rows", want == gen, f"{gen} vs {want}")
    else:
        check("logits for the identity", False, err)

    # 2. -p TEXT == chat-template + tokenize + run --ids, detokenized.
    text = "Hello, 世界! What is 1+1?"
    req = os.path.join(a.work, "req.json")
    with open(req, "w") as f:
        json.dump({"messages": [{"role": "user", "content": text}]}, f, ensure_ascii=False)
    rc1, templ, e1 = call([a.dsinfer, "chat-template", "--request", req])
    rc2, ids_json, e2 = call([a.dsinfer, "tokenize", "--model", model], stdin=templ)
    ids = json.loads(ids_json) if rc2 == 0 else []
    rc3, gen_ids, e3 = call([a.dsinfer, "run", "--model", model, "--ids", ",".join(map(str, ids)),
                             "-n", "6"])
    gen_ids = [int(t) for t in gen_ids.strip().split(",")] if rc3 == 0 else []
    eos = 1
    rc4, gen_text, e4 = call([a.dsinfer, "detokenize", "--model", model],
                             stdin=json.dumps([t for t in gen_ids if t != eos]))
    rc5, run_text, e5 = call([a.dsinfer, "run", "--model", model, "-p", text, "-n", "6"])
    ok = all(rc == 0 for rc in (rc1, rc2, rc3, rc4, rc5)) and run_text == gen_text.rstrip("\n") + "\n"
    check("run -p == template + tokenize + run --ids + detokenize", ok,
          repr(run_text) + " vs " + repr(gen_text) + (e1 + e2 + e3 + e4 + e5)[-300:])

    # 3. Interactive chat: every turn answered; later turns reuse the cache.
    rc, out, err = call([a.dsinfer, "run", "--model", model, "--chat", "-n", "5"],
                        stdin="first question\nsecond question\n/think\nthird, thinking\n")
    reused = [int(m) for m in re.findall(r"\((\d+) reused from cache\)", err)]
    check("run --chat answers 3 turns", rc == 0 and len(reused) == 3, err.strip()[-300:])
    check("run --chat reuses the conversation cache", len(reused) == 3 and reused[0] == 0
          and reused[1] > 0 and reused[2] > reused[1], str(reused))

    # 4. MTP speculative decoding (#12): greedy output identical with --spec mtp --draft 1 and 2,
    #    past index_topk (16 in the tiny preset: DSA selects), in --ids and --chat runs; the
    #    summary line reports acceptance and tokens per step.
    long_prompt = prompt + [(i * 7919) % 120000 + 100 for i in range(30)]
    base_args = [a.dsinfer, "run", "--model", model, "--ids", ",".join(map(str, long_prompt)),
                 "-n", "40", "--kv-cache", "fp8"]
    rc, want, err = call(base_args)
    check("run --ids (fp8, 40 tokens past index_topk)", rc == 0 and want.count(",") == 39, err[-200:])
    for n in ("1", "2"):
        rc, got, err = call(base_args + ["--spec", "mtp", "--draft", n])
        m = re.search(r"\[spec mtp, draft (\d+): (\d+) of (\d+) drafts accepted \(([\d.]+)%\), "
                      r"([\d.]+) tokens/step\]", err)
        check(f"run --spec mtp --draft {n} == without", rc == 0 and got == want,
              f"{got.strip()[:80]} vs {want.strip()[:80]} {err.strip()[-200:]}")
        check(f"run --spec mtp --draft {n} reports acceptance",
              m is not None and int(m.group(3)) > 0 and float(m.group(5)) >= 1.0, err.strip()[-200:])
    chat_in = "first question\nsecond question\n"
    rc, want, err = call([a.dsinfer, "run", "--model", model, "--chat", "-n", "12"], stdin=chat_in)
    rc2, got, err2 = call([a.dsinfer, "run", "--model", model, "--chat", "-n", "12", "--spec", "mtp",
                           "--draft", "2"], stdin=chat_in)
    reused = [int(m) for m in re.findall(r"\((\d+) reused from cache\)", err2)]
    check("run --chat --spec mtp == without (and reuses the conversation)",
          rc == 0 and rc2 == 0 and got == want and len(reused) == 2 and reused[1] > 0,
          repr(got[-120:]) + " vs " + repr(want[-120:]) + err2.strip()[-200:])

    # 5. Bad input.
    for args, needle in [(["-p", "x", "--ids", "1"], "exactly one of"),
                         ([], "exactly one of"),
                         (["-p", "x", "-n", "100000"], "max_position_embeddings")]:
        rc, _, err = call([a.dsinfer, "run", "--model", model] + args)
        check(f"run {' '.join(args)} fails naming '{needle}'", rc == 1 and needle in err, err.strip())
    rc, _, err = call([a.dsinfer, "run", "--model", model, "-p", "x", "--spec", "mtp", "--draft", "0"])
    check("run --spec mtp --draft 0 fails naming '--draft'", rc != 0 and "--draft" in err, err.strip())
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
