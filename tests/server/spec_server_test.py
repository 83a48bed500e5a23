"""`dsinfer serve --spec mtp` (#12): greedy completions through the server are identical with
MTP speculative decoding (--draft 1 and 2) and without it, for prompts short, past index_topk
(DSA selects) and past a 64-token page sent twice (the second adopts cached pages, MTP rows
included), several at once (batched); /metrics reports the drafts, acceptance and tokens per
step; a sampled request with the per-request top_k = 1 (temperature 1.3) gives the greedy text
through rejection sampling. The truth is the same server without --spec.

usage: spec_server_test.py DSINFER WORK_DIR
"""
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request


def ensure_model(dsinfer, work):
    model = os.path.join(work, "tiny2mtp")
    if os.path.exists(os.path.join(model, "model.safetensors.index.json")):
        return model
    tmp = model + ".tmp%d" % os.getpid()
    subprocess.run([dsinfer, "gen-model", "--preset", "tiny", "--seed", "13", "--out", tmp,
                    "--set", "num_hidden_layers=2", "--force"],
                   check=True, timeout=300, stdout=subprocess.DEVNULL)
    try:
        os.rename(tmp, model)
    except OSError:
        subprocess.run(["rm", "-rf", tmp], check=False)
    return model


class Server:
    def __init__(self, dsinfer, model, args, log_path):
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [dsinfer, "serve", "--model", model, "--host", "127.0.0.1", "--port", "0",
             "--parallel", "4"] + args, stdout=self.log, stderr=self.log)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited early:\n" + open(log_path).read())
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", open(log_path).read())
            if m:
                self.url = "http://127.0.0.1:" + m.group(1)
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not start:\n" + open(log_path).read())

    def complete(self, prompt, max_tokens, **extra):
        body = json.dumps({"model": "deepseek-v3.2", "prompt": prompt, "max_tokens": max_tokens,
                           "temperature": 0, **extra}).encode()
        req = urllib.request.Request(self.url + "/v1/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.load(r)["choices"][0]["text"]

    def metrics(self):
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as r:
            text = r.read().decode()
        return {m.group(1): float(m.group(2))
                for m in re.finditer(r"^(dsinfer_\w+) ([-\d.e+]+)$", text, re.M)}

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def run_batch(server, prompts, max_tokens):
    out = [None] * len(prompts)

    def one(i):
        out[i] = server.complete(prompts[i], max_tokens)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return out


def main():
    dsinfer, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    model = ensure_model(dsinfer, work)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    prompts = ["Hello there",
               " ".join(words * 3),                                   # past index_topk (16)
               " ".join(w + str(i) for i, w in enumerate(words * 8))]  # > 64 tokens
    prompts.append(prompts[2])  # the same long prompt again: prefix-cache hit
    failures = []
    plain = Server(dsinfer, model, [], os.path.join(work, "plain.log"))
    try:
        want = [plain.complete(p, 24) for p in prompts]
    finally:
        plain.stop()
    for draft in ("1", "2"):
        spec = Server(dsinfer, model, ["--spec", "mtp", "--draft", draft],
                      os.path.join(work, "spec%s.log" % draft))
        try:
            got = run_batch(spec, prompts[:3], 24) + [spec.complete(prompts[3], 24)]
            # Sampling with top_k = 1 (a per-request field) keeps only the argmax, in the target
            # and in the draft distribution: rejection sampling must give the greedy text.
            top1 = spec.complete(prompts[1], 24, temperature=1.3, top_k=1, seed=5)
            m = spec.metrics()
        finally:
            spec.stop()
        print("draft %s: drafts %d, accepted %d, acceptance %.3f, tokens/step %.3f, "
              "cache hit tokens %d" % (draft, m.get("dsinfer_spec_draft_tokens_total", -1),
                                       m.get("dsinfer_spec_accepted_tokens_total", -1),
                                       m.get("dsinfer_spec_acceptance_rate", -1),
                                       m.get("dsinfer_decode_tokens_per_step", -1),
                                       m.get("dsinfer_engine_prompt_cache_hit_tokens_total", -1)))
        for i, (g, w) in enumerate(zip(got, want)):
            if g != w:
                failures.append("draft %s prompt %d: %r != %r" % (draft, i, g, w))
        if top1 != want[1]:
            failures.append("draft %s: top_k 1 at temperature 1.3: %r != greedy %r"
                            % (draft, top1, want[1]))
        if not m.get("dsinfer_spec_draft_tokens_total", 0) > 0:
            failures.append("draft %s: no drafts in /metrics" % draft)
        if not m.get("dsinfer_decode_tokens_per_step", 0) >= 1.0:
            failures.append("draft %s: tokens per step missing" % draft)
        if not m.get("dsinfer_engine_prompt_cache_hit_tokens_total", 0) >= 64:
            failures.append("draft %s: the repeated prompt did not hit the prefix cache" % draft)
    if failures:
        print("FAIL:\n  " + "\n  ".join(failures))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
