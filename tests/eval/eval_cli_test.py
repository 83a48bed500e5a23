#!/usr/bin/python3
"""`dsinfer eval` end to end on a generated tiny checkpoint, against independent truths:

* tasks: the expected answers are what `dsinfer run -p` (greedy) prints for the same prompts,
  split into reasoning/content here in Python; a file of those answers must score 100%, a file
  of corrupted answers 0% (listing what the model said), a mixed file the right count per kind,
  and prompt token lengths must equal those of `chat-template` + `tokenize`; results must not
  depend on --batch;
* perplexity: exp(mean NLL) and top-1 accuracy computed here with NumPy (float64 log-softmax)
  from `dsinfer logits` of BOS + `tokenize`(text) + EOS, per document and per window with
  --window; with --mtp, the MTP head's top-1 accuracy on token i+2 and its agreement with the
  main model's argmax at i+1, from `logits --mtp-out`; --attention dense against `logits
  --attention dense`;
* bad files exit 1 naming file:line and the problem.

Usage: eval_cli_test.py --dsinfer BIN --work DIR
"""

import argparse
import json
import math
import os
import subprocess
import sys

import numpy as np

# Tolerance on mean NLL: both sides take float64 log-softmax of the same float32 logits (the
# batched forward is bitwise the single one), so only summation order differs (~1e-15).
NLL_RTOL = 1e-9


def call(cmd, stdin=None):
    p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n")
    return path


def content_of(generated, thinking):
    """The V3.2 completion split, for text without EOS or tool calls: content is everything in
    chat mode, and what follows the first </think> in thinking mode (nothing without one)."""
    if thinking:
        end = generated.find("</think>")
        generated = "" if end < 0 else generated[end + len("</think>"):]
    return generated.strip()


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsinfer", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    model = os.path.join(a.work, "tiny")
    if not os.path.exists(os.path.join(model, "config.json")):
        rc, _, err = call([a.dsinfer, "gen-model", "--preset", "tiny", "--seed", "7", "--out", model,
                           "--force"])
        assert rc == 0, err
    cfg = json.load(open(os.path.join(model, "config.json")))
    bos, eos = cfg["bos_token_id"], cfg["eos_token_id"]
    failures = 0

    def check(name, ok, detail=""):
        nonlocal failures
        failures += not ok
        print(f"[{'PASS' if ok else 'FAIL'}] {name} {detail}")

    def run_eval(*args):
        rc, out, err = call([a.dsinfer, "eval", "--model", model, "--json"] + list(args))
        if rc != 0:
            check("eval " + " ".join(args), False, err.strip()[-400:])
            return None
        return json.loads(out)

    # 1. Tasks: truth from `run -p` greedy.
    max_new = 5
    prompts = [("What is 2+2?", False, "arith"), ("Name a colour.", True, "chat"),
               ("The key is 71432. What is the key?", False, "retrieval"),
               ("Count to three.", True, "arith")]
    expected, lengths = [], []
    for text, thinking, _ in prompts:
        rc, out, err = call([a.dsinfer, "run", "--model", model, "-p", text, "-n", str(max_new)]
                            + (["--think"] if thinking else []))
        check(f"run -p {text!r}", rc == 0, err.strip()[-200:])
        expected.append(content_of(out[:-1], thinking))  # run ends its output with "\n"
        req = write_jsonl(os.path.join(a.work, "req.json"), [{
            "messages": [{"role": "user", "content": text}],
            "chat_template_kwargs": {"thinking": thinking}}])
        _, templ, _ = call([a.dsinfer, "chat-template", "--request", req])
        _, ids, _ = call([a.dsinfer, "tokenize", "--model", model], stdin=templ)
        lengths.append(len(json.loads(ids)))
    print("expected answers:", expected, "prompt lengths:", lengths)
    rows = [{"messages": [{"role": "user", "content": t}], "thinking": th, "answer": ans, "kind": k}
            for (t, th, k), ans in zip(prompts, expected)]
    good = write_jsonl(os.path.join(a.work, "good.jsonl"), rows)
    bad = write_jsonl(os.path.join(a.work, "bad.jsonl"),
                      [dict(r, answer=r["answer"] + "#") for r in rows])
    mixed = write_jsonl(os.path.join(a.work, "mixed.jsonl"),
                        [dict(r, answer=r["answer"] + ("#" if i % 2 else "")) for i, r in enumerate(rows)])
    r = run_eval("--tasks", good, "--tasks", bad, "--tasks", mixed, "--max-new", str(max_new))
    if r:
        g, b, m = r["tasks"]
        check("own greedy answers score 100%", g["correct"] == 4 and g["accuracy"] == 1.0, str(g["failures"]))
        check("corrupted answers score 0%", b["correct"] == 0 and b["n"] == 4)
        check("failures show what the model said",
              [f["got"] for f in b["failures"]] == expected and
              [f["expected"] for f in b["failures"]] == [x + "#" for x in expected] and
              all(f["generated_tokens"] == max_new or f["stopped_at_eos"] for f in b["failures"]),
              str(b["failures"]))
        kinds = {k: (v["n"], v["correct"]) for k, v in m["kinds"].items()}
        check("mixed file: per-kind counts", m["correct"] == 2 and
              kinds == {"arith": (2, 1), "chat": (1, 0), "retrieval": (1, 1)}, str(kinds))
        p = g["prompt_tokens"]
        check("prompt lengths == chat-template + tokenize",
              (p["min"], p["max"]) == (min(lengths), max(lengths)) and
              abs(p["mean"] - sum(lengths) / len(lengths)) < 1e-9, f"{p} vs {lengths}")
        check("generated tokens counted", g["generated_tokens"] == 4 * max_new or g["stopped_at_eos"] > 0)
        t = r["total"]
        kinds = {k: (v["n"], v["correct"]) for k, v in t["kinds"].items()}
        check("total over the three files", (t["n"], t["correct"]) == (12, 6) and
              kinds == {"arith": (6, 3), "chat": (3, 1), "retrieval": (3, 2)} and
              t["prompt_tokens"]["min"] == min(lengths), f"{t}")
        r1 = run_eval("--tasks", bad, "--max-new", str(max_new), "--batch", "1")
        check("--batch 1 gives the same answers as --batch 8",
              r1 is not None and r1["tasks"][0]["failures"] == b["failures"])
        r2 = run_eval("--tasks", good, "--max-new", str(max_new), "--limit", "2")
        check("--limit 2", r2 is not None and r2["tasks"][0]["n"] == 2)
        check("no total for one file", r2 is not None and "total" not in r2)

    # 2. Perplexity and MTP against `logits` + NumPy.
    texts = ["The quick brown fox jumps over the lazy dog, twice in a row, while nobody watches.",
             "Hello, 世界! A second document.",
             "Short."]
    docs = []
    for t in texts:
        _, ids, _ = call([a.dsinfer, "tokenize", "--model", model], stdin=t)
        docs.append([bos] + json.loads(ids) + [eos])
    # A pre-tokenized document on which the MTP head is right 6 times: each token i + 2 is the
    # MTP head's argmax at row i (that row depends on tokens ..i+1 only), so the MTP accuracy
    # checked below is not the trivial 0 of a random model on natural text.
    drafted = docs[1][:2]
    for _ in range(6):
        out, mtp_out = os.path.join(a.work, "l.npy"), os.path.join(a.work, "m.npy")
        rc, _, err = call([a.dsinfer, "logits", "--model", model, "--ids", ",".join(map(str, drafted)),
                           "--out", out, "--mtp-out", mtp_out])
        assert rc == 0, err
        drafted.append(int(np.load(mtp_out)[-1].argmax()))
    docs.append(drafted)
    # And one the main model predicts 5 times: its own greedy continuation (`run --ids`).
    rc, out, err = call([a.dsinfer, "run", "--model", model, "--ids", ",".join(map(str, docs[2])),
                         "-n", "5"])
    assert rc == 0, err
    docs.append(docs[2] + [int(t) for t in out.strip().split(",")])
    text_file = write_jsonl(os.path.join(a.work, "text.jsonl"),
                            [{"text": t} for t in texts] + [{"ids": d} for d in docs[3:]])
    print("document lengths:", [len(d) for d in docs])

    def truth(windows, attention="dsa"):
        nll, top1, n, mtp_ok, mtp_agree, mtp_n = 0.0, 0, 0, 0, 0, 0
        for w in windows:
            out, mtp_out = os.path.join(a.work, "l.npy"), os.path.join(a.work, "m.npy")
            rc, _, err = call([a.dsinfer, "logits", "--model", model, "--ids", ",".join(map(str, w)),
                               "--out", out, "--mtp-out", mtp_out, "--attention", attention])
            assert rc == 0, err
            logits, mtp = np.load(out), np.load(mtp_out)
            tgt = np.array(w[1:])
            lp = log_softmax(logits[:-1])
            nll -= lp[np.arange(len(tgt)), tgt].sum()
            top1 += int((logits[:-1].argmax(-1) == tgt).sum())
            n += len(tgt)
            k = len(w) - 2  # MTP rows i = 0..len-3 have a token i + 2
            draft = mtp[:k].argmax(-1)
            mtp_ok += int((draft == np.array(w[2:])).sum())
            mtp_agree += int((draft == logits[1:k + 1].argmax(-1)).sum())
            mtp_n += k
        return dict(nll=nll / n, ppl=math.exp(nll / n), top1=top1 / n, n=n,
                    mtp=mtp_ok / mtp_n, agree=mtp_agree / mtp_n, mtp_n=mtp_n)

    def compare(name, got, want):
        ok = (got["tokens"] == want["n"] and
              abs(got["mean_nll"] - want["nll"]) <= NLL_RTOL * want["nll"] and
              abs(got["perplexity"] - want["ppl"]) <= 1e-8 * want["ppl"] and
              abs(got["top1_accuracy"] - want["top1"]) < 1e-12 and
              got["mtp"]["predictions"] == want["mtp_n"] and
              abs(got["mtp"]["top1_accuracy"] - want["mtp"]) < 1e-12 and
              abs(got["mtp"]["agreement_with_main"] - want["agree"]) < 1e-12)
        check(name, ok, f"eval {got} vs numpy {want}")

    r = run_eval("--text", text_file, "--mtp")
    if r:
        want = truth(docs)
        compare("perplexity + MTP == numpy on logits", r["text"][0], want)
        check("top-1 and MTP accuracy are not trivially 0",
              want["mtp"] * want["mtp_n"] >= 6 and want["top1"] * want["n"] >= 5, str(want))
    w = 8  # windows of 8 tokens sharing one token: [0,8), [7,15), ...
    windows = [docs[0][s:s + w] for s in range(0, len(docs[0]) - 1, w - 1)]
    r = run_eval("--text", text_file, "--mtp", "--limit", "1", "--window", str(w))
    if r:
        check("--window splits into windows", r["text"][0]["windows"] == len(windows) > 2,
              f'{r["text"][0]["windows"]} vs {len(windows)}')
        compare("--window 8 == numpy per window", r["text"][0], truth(windows))
    r = run_eval("--text", text_file, "--mtp", "--limit", "1", "--attention", "dense")
    if r:
        dense = truth(docs[:1], "dense")
        compare("--attention dense == numpy on dense logits", r["text"][0], dense)
        check("dense differs from DSA past index_topk (16 tokens)",
              abs(dense["nll"] - truth(docs[:1])["nll"]) > 1e-6)

    # 3. Bad input: exit 1, naming file:line and the problem.
    def bad_file(name, lines):
        return write_jsonl(os.path.join(a.work, name), lines)

    ok_task = json.dumps(rows[0])
    USER_X = '{"messages": [{"role": "user", "content": "x"}]'
    cases = [
        (["--tasks", bad_file("e1.jsonl", [ok_task, "{not json"])], "e1.jsonl:2: invalid"),
        (["--tasks", bad_file("e2.jsonl", [ok_task, '{"messages": [], "answer": "1"}'])],
         'e2.jsonl:2: "messages" must be a non-empty array'),
        (["--tasks", bad_file("e3.jsonl", [USER_X + "}"])],
         'e3.jsonl:1: missing "answer"'),
        (["--tasks", bad_file("e4.jsonl", [USER_X + ', "answer": 5}'])],
         'e4.jsonl:1: "answer" must be a string'),
        (["--tasks", bad_file("e5.jsonl", [USER_X.replace("user", "pirate") + ', "answer": "5"}'])],
         "e5.jsonl:1: messages[0].role"),
        (["--tasks", bad_file("e6.jsonl", ['[1, 2]'])], "e6.jsonl:1: expected a JSON object"),
        (["--tasks", bad_file("e7.jsonl", ["", "  "])], "e7.jsonl: no entries"),
        (["--tasks", bad_file("e8.jsonl", [USER_X + ', "answer": "1", "thinking": "yes"}'])],
         'e8.jsonl:1: "thinking" must be true or false'),
        (["--text", bad_file("e9.jsonl", ['{"text": "a"}', '{"txt": "b"}'])],
         'e9.jsonl:2: expected exactly one of "text" and "ids"'),
        (["--text", bad_file("e10.jsonl", ['{"ids": [1, "x"]}'])], 'e10.jsonl:1: "ids" holds "x"'),
        (["--text", bad_file("e11.jsonl", ['{"ids": [1, 999999]}'])],
         "e11.jsonl:1: token id 999999 is beyond the model's vocab_size"),
        (["--text", bad_file("e12.jsonl", ['{"ids": [1, 2], "text": "a"}'])],
         'e12.jsonl:1: expected exactly one of "text" and "ids"'),
        (["--tasks", os.path.join(a.work, "missing.jsonl")], "missing.jsonl: cannot open"),
        (["--tasks", good, "--max-new", "5000"], "good.jsonl:1: prompt"),
        ([], "at least one --tasks or --text"),
    ]
    for args, needle in cases:
        rc, _, err = call([a.dsinfer, "eval", "--model", model] + args)
        check(f"bad input: {needle}", rc == 1 and needle in err, f"rc {rc}: {err.strip()[-300:]}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
