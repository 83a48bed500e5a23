"""`dsinfer serve --kv-cache`: how many tokens a --kv-budget admits, per cache type and attention
mode, against bytes per token computed here from config.json alone (docs/numerics.md §4/§5):

  latent row   f32: 4 (kv_lora_rank + rope)     bf16: 2 (kv_lora_rank + rope)
               fp8: kv_lora_rank e4m3 + 4 ceil(kv_lora_rank / 128) f32 scales + 2 rope (bf16)
  indexer key  (DSA only) index_head_dim e4m3 + 4 ceil(index_head_dim / 128) f32 scales
  per token    Σ over the cached layers (the main layers; with --spec mtp also the MTP layer)

The model has V3.2's cache dimensions (kv_lora_rank 512, rope 64, index_head_dim 128), so the
FP8 cache admits 2304 / 656 = 3.51x the tokens of f32 with dense attention and
(2304 + 132) / (656 + 132) = 3.09x with DSA (its FP8 indexer keys are the same in both).
The server prints "KV budget: P pages of B bytes (T tokens; ...)" before it listens.

usage: kv_budget_test.py DSINFER WORK_DIR
"""
import json
import math
import os
import re
import subprocess
import sys
import time

BUDGET = 64 << 20  # 64 MiB


def ensure_model(dsinfer, work):
    model = os.path.join(work, "v32dims")
    if os.path.exists(os.path.join(model, "model.safetensors.index.json")):
        return model
    tmp = model + ".tmp%d" % os.getpid()
    subprocess.run([dsinfer, "gen-model", "--preset", "tiny", "--seed", "3", "--out", tmp,
                    "--set", "num_hidden_layers=2", "--set", "kv_lora_rank=512",
                    "--set", "qk_rope_head_dim=64", "--set", "index_head_dim=128", "--force"],
                   check=True, timeout=300, stdout=subprocess.DEVNULL)
    try:
        os.rename(tmp, model)
    except OSError:
        subprocess.run(["rm", "-rf", tmp], check=False)
    return model


def bytes_per_token(cfg, kv_cache, dsa, mtp):
    r, rope = cfg["kv_lora_rank"], cfg["qk_rope_head_dim"]
    latent = {"f32": 4 * (r + rope), "bf16": 2 * (r + rope),
              "fp8": r + 4 * math.ceil(r / 128) + 2 * rope}[kv_cache]
    d = cfg["index_head_dim"]
    index = d + 4 * math.ceil(d / 128) if dsa else 0
    layers = cfg["num_hidden_layers"] + (cfg["num_nextn_predict_layers"] if mtp else 0)
    return layers * (latent + index)


def serve_budget(dsinfer, model, args, log_path):
    """Starts the server, reads its KV budget line, stops it: (pages, page bytes, tokens)."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen([dsinfer, "serve", "--model", model, "--host", "127.0.0.1",
                                 "--port", "0", "--kv-budget", str(BUDGET)] + args,
                                stdout=log, stderr=log)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            text = open(log_path).read()
            m = re.search(r"KV budget: (\d+) pages of (\d+) bytes \((\d+) tokens", text)
            if m:
                return tuple(int(g) for g in m.groups())
            if proc.poll() is not None:
                raise RuntimeError("server exited early:\n" + text)
            time.sleep(0.05)
        raise RuntimeError("no KV budget line within 60 s:\n" + open(log_path).read())
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    dsinfer, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    model = ensure_model(dsinfer, work)
    cfg = json.load(open(os.path.join(model, "config.json")))
    failures = []
    tokens = {}
    cases = [(kv, att, []) for kv in ("f32", "bf16", "fp8") for att in ("dense", "dsa")]
    cases.append(("fp8", "dsa", None))  # the default: no --kv-cache / --attention flags
    # With MTP speculation the MTP layer's rows live in the same pages.
    cases += [(kv, "dsa", ["--spec", "mtp"]) for kv in ("f32", "fp8")]
    for kv, att, extra in cases:
        args = ["--kv-cache", kv, "--attention", att] if extra is not None else []
        mtp = bool(extra)
        args += extra or []
        pages, page_bytes, toks = serve_budget(
            dsinfer, model, args, os.path.join(work, "serve_%s_%s_%d.log" % (kv, att, mtp)))
        want = 64 * bytes_per_token(cfg, kv, att == "dsa", mtp=mtp)
        name = "%s/%s%s" % (kv, att, " +mtp" if mtp else "" if extra is not None else " (default)")
        print("%-20s page %7d B (expected %7d), %4d pages, %6d tokens" %
              (name, page_bytes, want, pages, toks))
        if page_bytes != want:
            failures.append("%s: page of %d bytes, expected %d" % (name, page_bytes, want))
        if pages != BUDGET // want or toks != 64 * (BUDGET // want):
            failures.append("%s: %d pages / %d tokens, expected %d / %d" %
                            (name, pages, toks, BUDGET // want, 64 * (BUDGET // want)))
        tokens[name] = toks
    for att, mtp in (("dense", False), ("dsa", False), ("dsa", True)):
        sfx = att + (" +mtp" if mtp else "")
        ratio = tokens["fp8/" + sfx] / tokens["f32/" + sfx]
        want = bytes_per_token(cfg, "f32", att == "dsa", mtp) / \
            bytes_per_token(cfg, "fp8", att == "dsa", mtp)
        att = sfx
        print("%s: fp8 admits %.3fx the tokens of f32 (bytes ratio %.3f)" % (att, ratio, want))
        # Whole pages: the token ratio is the byte ratio up to one page of each budget.
        if abs(ratio - want) > want * 2.0 / tokens["f32/" + att] * 64:
            failures.append("%s: fp8/f32 token ratio %.4f, bytes ratio %.4f" % (att, ratio, want))
    if abs(tokens["fp8/dense"] / tokens["f32/dense"] - 3.5) > 0.05:
        failures.append("dense fp8/f32 ratio is not 3.5x with V3.2's dims")
    if failures:
        print("FAIL:\n  " + "\n  ".join(failures))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
