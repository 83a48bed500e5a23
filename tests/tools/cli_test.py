#!/usr/bin/env python3
"""CLI integration tests for `dsinfer gen-model` / `inspect` / the default model.

usage: cli_test.py DSINFER SCRATCH_DIR CASE
Each case generates small checkpoints under SCRATCH_DIR (removed first) and checks exit codes
and messages. The safetensors edit is done here, in Python, independently of the C++ writer.
"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys


def run(args, env=None, expect_rc=0):
    p = subprocess.run(args, capture_output=True, text=True, env=env)
    if p.returncode != expect_rc:
        sys.exit(f"FAIL: {' '.join(args)} exited {p.returncode}, expected {expect_rc}\n"
                 f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def gen(dsinfer, out, *extra):
    return run([dsinfer, "gen-model", "--preset", "tiny", "--seed", "3", "--out", out, *extra])


def remove_tensor(shard_path, name):
    """Rewrites a safetensors file without tensor `name` (offsets recomputed)."""
    with open(shard_path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    meta = header.pop("__metadata__", None)
    assert name in header, name
    del header[name]
    new_header, chunks, offset = {}, [], 0
    for key, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, e = info["data_offsets"]
        chunks.append(body[b:e])
        new_header[key] = dict(info, data_offsets=[offset, offset + (e - b)])
        offset += e - b
    if meta is not None:
        new_header["__metadata__"] = meta
    raw = json.dumps(new_header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(shard_path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + b"".join(chunks))


def case_gen_and_inspect(dsinfer, tmp):
    out = os.path.join(tmp, "tiny")
    gen(dsinfer, out)  # the real tiny preset (full vocabulary)
    p = run([dsinfer, "inspect", out])
    for text in ["indexer (DSA): on, 4 heads x 64 dims, top-16", "vocab 129280", "usable: yes",
                 "MTP: 1 layer(s) in config, present"]:
        assert text in p.stdout, f"'{text}' not in:\n{p.stdout}"
    j = json.loads(run([dsinfer, "inspect", out, "--json", "--checksums"]).stdout)
    assert j["usable"] is True and j["missing"] == [] and j["bad"] == []
    index = json.load(open(os.path.join(out, "model.safetensors.index.json")))
    names = sorted(index["weight_map"])
    assert [t["name"] for t in j["tensors"]] == names
    assert sum(t["nbytes"] for t in j["tensors"]) == index["metadata"]["total_size"]
    assert all(len(t["fnv1a64"]) == 16 for t in j["tensors"])


def case_fp8_blocks_independent_reader(dsinfer, tmp):
    """Reads the shard with NumPy (no dsinfer code): every FP8 block's largest |code| is 448
    (scale = amax/448), scales are positive f32 of shape [ceil(out/128), ceil(in/128)], and
    the FNV-1a 64 of each tensor's bytes equals inspect's."""
    import numpy as np
    out = os.path.join(tmp, "tiny")
    gen(dsinfer, out, "--set", "vocab_size=1000")
    j = json.loads(run([dsinfer, "inspect", out, "--json", "--checksums"]).stdout)
    fnv = {t["name"]: t["fnv1a64"] for t in j["tensors"]}
    path = os.path.join(out, "model-00001-of-00001.safetensors")
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    e4m3 = np.array([(-1 if c >> 7 else 1) * ((c & 7) / 8 * 2.0 ** -6 if (c >> 3) & 15 == 0
                      else (1 + (c & 7) / 8) * 2.0 ** (((c >> 3) & 15) - 7)) for c in range(256)])
    blocks = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = body[b:e]
        if info["dtype"] != "F8_E4M3":
            continue
        rows, cols = info["shape"]
        codes = np.frombuffer(raw, np.uint8).reshape(rows, cols)
        sinfo = header[name + "_scale_inv"]
        assert sinfo["dtype"] == "F32" and sinfo["shape"] == [-(-rows // 128), -(-cols // 128)], name
        sb, se = sinfo["data_offsets"]
        scales = np.frombuffer(body[sb:se], np.float32).reshape(sinfo["shape"])
        assert (scales > 0).all(), name
        vals = np.abs(e4m3[codes])
        for i in range(scales.shape[0]):
            for k in range(scales.shape[1]):
                assert vals[i * 128:(i + 1) * 128, k * 128:(k + 1) * 128].max() == 448.0, (name, i, k)
                blocks += 1
    assert blocks == j["fp8_scales"]["count"], (blocks, j["fp8_scales"]["count"])
    # FNV-1a 64 of a few small tensors, computed here.
    small = [k for k, v in header.items() if k != "__metadata__" and
             v["data_offsets"][1] - v["data_offsets"][0] <= 4096][:20]
    for name in small:
        b, e = header[name]["data_offsets"]
        h = 0xcbf29ce484222325
        for byte in body[b:e]:
            h = ((h ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
        assert f"{h:016x}" == fnv[name], name


def case_missing_tensor(dsinfer, tmp):
    out = os.path.join(tmp, "tiny")
    gen(dsinfer, out, "--set", "vocab_size=1000")
    victim = "model.layers.2.self_attn.indexer.wk.weight_scale_inv"
    remove_tensor(os.path.join(out, "model-00001-of-00001.safetensors"), victim)
    index_path = os.path.join(out, "model.safetensors.index.json")
    index = json.load(open(index_path))
    del index["weight_map"][victim]
    json.dump(index, open(index_path, "w"))
    p = run([dsinfer, "inspect", out], expect_rc=2)
    assert victim in p.stderr, p.stderr
    assert "usable: NO" in p.stdout, p.stdout
    j = json.loads(run([dsinfer, "inspect", out, "--json"], expect_rc=2).stdout)
    assert j["missing"] == [victim], j["missing"]


def case_refuses_overwrite(dsinfer, tmp):
    out = os.path.join(tmp, "tiny")
    gen(dsinfer, out, "--set", "vocab_size=1000")
    before = open(os.path.join(out, "config.json")).read()
    p = run([dsinfer, "gen-model", "--preset", "tiny", "--out", out, "--set",
                      "num_hidden_layers=2"], expect_rc=1)
    assert "not empty" in p.stderr and "--force" in p.stderr, p.stderr
    assert open(os.path.join(out, "config.json")).read() == before
    run([dsinfer, "gen-model", "--preset", "tiny", "--out", out, "--force", "--set",
         "vocab_size=1000", "--set", "num_hidden_layers=2"])
    assert json.load(open(os.path.join(out, "config.json")))["num_hidden_layers"] == 2
    run([dsinfer, "inspect", out])
    p = run([dsinfer, "gen-model", "--preset", "tiny", "--out", os.path.join(tmp, "x"), "--set",
             "n_group=3"], expect_rc=1)
    assert "n_group" in p.stderr, p.stderr


def case_default_model(dsinfer, tmp):
    out = os.path.join(tmp, "default")
    gen(dsinfer, out)  # the real vocabulary: the main job tokenizes a chat prompt
    env = dict(os.environ, DSINFER_DEFAULT_MODEL=out)
    p = run([dsinfer], env=env)
    assert f"default model: {out}" in p.stdout and "usable: yes" in p.stdout, p.stdout
    # ... then generates text from it and reports the speed.
    assert "== generating" in p.stdout and "prompt: " in p.stdout, p.stdout
    assert re.search(r"decode: \d+ tokens, [0-9.]+ tok/s", p.stderr), p.stderr


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}

if __name__ == "__main__":
    dsinfer, tmp, case = sys.argv[1], sys.argv[2], sys.argv[3]
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    CASES[case](dsinfer, tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"ok: {case}")
