#!/usr/bin/env python3
"""Writes the fuzz seeds that stand at the parsers' limits (tests/fuzz/<target>_corpus/limit_*).

libFuzzer mutates what it is given and grows inputs slowly: from the small hand-written seeds it
never reaches a container nested 64 deep or a header with thousands of entries within the suite's
30 s per target. These seeds start it there: one at each nesting and count limit (accepted) and
one just past it (refused), and large headers and requests (still a few tens of KB each, so the
default -max_len, the largest seed, stays small). The limits are the parsers' documented ones:
JSON nesting 64 (format/json_util.h kMaxJsonDepth; safetensors headers 2), GGUF arrays nested 8
deep and 4 tensor dims (format/gguf.cc), config counts (format/config.cc RequireAtMost).
tests/unit/format/fuzz_seeds_test.cc and tests/unit/text/fuzz_seeds_test.cc check that each seed
is accepted or refused as its name says.

Run from anywhere: /usr/bin/python3 tests/fuzz/make_limit_seeds.py (deterministic output).
"""

import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_JSON_DEPTH = 64


def write(target, name, data):
    path = os.path.join(HERE, target + "_corpus", name)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(path, "wb") as f:
        f.write(data)


def depth(v, d=0):
    """Deepest container, the top-level value being depth 0 (json_util.h's definition)."""
    if isinstance(v, dict):
        return max([d] + [depth(x, d + 1) for x in v.values()])
    if isinstance(v, list):
        return max([d] + [depth(x, d + 1) for x in v])
    return d - 1


def schema_chain(levels, leaf_enum):
    """A JSON schema nesting `levels` objects through "properties"; the leaf optionally has an
    "enum" array (one more level), so any depth can be hit exactly."""
    v = {"type": "string", "enum": ["a", "b"]} if leaf_enum else {"type": "string"}
    for k in range(levels):
        v = {"type": "object", "properties": {"p%d" % k: v}, "required": ["p%d" % k]}
    return v


def exact(make, want):
    """`make(levels, leaf_enum)` whose depth is exactly `want`."""
    for levels in range(200):
        for leaf_enum in (False, True):
            v = make(levels, leaf_enum)
            if depth(v) == want:
                return v
    raise SystemExit("no value of depth %d" % want)


# ---- chat_fuzz: byte 0 selects request (even) / completion (odd), bit 1 thinking -------------

def chat_request(body, thinking=False):
    return bytes([2 if thinking else 0]) + json.dumps(body, ensure_ascii=False).encode("utf-8")


def tools_request(levels, leaf_enum):
    return {"model": "deepseek-v3.2",
            "messages": [{"role": "user", "content": "Find it."}],
            "tools": [{"type": "function",
                       "function": {"name": "find", "description": "deep schema",
                                    "parameters": schema_chain(levels, leaf_enum)}}]}


def response_format_request(levels, leaf_enum):
    return {"model": "deepseek-v3.2",
            "messages": [{"role": "user", "content": "Answer in JSON."}],
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "s", "strict": True,
                                                "schema": schema_chain(levels, leaf_enum)}}}


def arguments_request(arg_depth):
    # The arguments string is parsed on its own: {"q": [[...]]} nests arg_depth deep.
    args = '{"q": ' + "[" * arg_depth + "1" + "]" * arg_depth + "}"
    assert depth(json.loads(args)) == arg_depth
    return {"model": "deepseek-v3.2",
            "messages": [
                {"role": "user", "content": "Call it."},
                {"role": "assistant", "content": "",
                 "tool_calls": [{"id": "c1", "type": "function",
                                 "function": {"name": "f", "arguments": args}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "done"}]}


def large_conversation():
    """~60 KB: many turns with reasoning, tool calls (nested arguments) and tool results."""
    tools = [{"type": "function",
              "function": {"name": "tool_%d" % t, "description": "tool number %d" % t,
                           "parameters": schema_chain(3, True)}} for t in range(8)]
    messages = [{"role": "system", "content": "You are a careful assistant. " * 8}]
    for turn in range(120):
        messages.append({"role": "user", "content": "Question %d: what is %d + %d?" %
                         (turn, turn, turn * 7)})
        if turn % 3 == 0:
            args = json.dumps({"p2": {"p1": {"p0": "x%d" % turn}}})
            messages.append({"role": "assistant", "content": "",
                             "reasoning_content": "I should call tool_%d." % (turn % 8),
                             "tool_calls": [{"id": "call_%d" % turn, "type": "function",
                                             "function": {"name": "tool_%d" % (turn % 8),
                                                          "arguments": args}}]})
            messages.append({"role": "tool", "tool_call_id": "call_%d" % turn,
                             "content": "result %d ✓" % (turn * 8)})
        messages.append({"role": "assistant", "content": "It is %d. " % (turn * 8) + "ok " * 20,
                         "reasoning_content": "Adding: %d + %d = %d." % (turn, turn * 7, turn * 8)})
    return {"model": "deepseek-v3.2-reasoner", "messages": messages, "tools": tools}


def large_completion():
    """A long thinking completion with many DSML tool calls (odd byte 0: the parser)."""
    dsml = "｜DSML｜"
    calls = []
    for k in range(150):
        calls.append('<%sinvoke name="tool_%d">\n'
                     '<%sparameter name="city" string="true">City %d</%sparameter>\n'
                     '<%sparameter name="days" string="false">%d</%sparameter>\n'
                     '</%sinvoke>\n' % (dsml, k, dsml, k, dsml, dsml, k, dsml, dsml))
    text = ("Let me think. " * 200 + "</think>Here are the calls.\n\n<" + dsml +
            "function_calls>\n" + "".join(calls) + "</" + dsml + "function_calls>" +
            "<｜end▁of▁sentence｜>")
    return bytes([3]) + text.encode("utf-8")


def write_chat():
    for want, tag in ((MAX_JSON_DEPTH, "depth64"), (MAX_JSON_DEPTH + 1, "depth65")):
        write("chat_fuzz", "limit_tools_%s.json" % tag, chat_request(exact(tools_request, want)))
        write("chat_fuzz", "limit_response_format_%s.json" % tag,
              chat_request(exact(response_format_request, want), thinking=True))
    write("chat_fuzz", "limit_arguments_depth64.json",
          chat_request(arguments_request(MAX_JSON_DEPTH)))
    write("chat_fuzz", "limit_arguments_depth65.json",
          chat_request(arguments_request(MAX_JSON_DEPTH + 1)))
    write("chat_fuzz", "limit_large_conversation.json",
          chat_request(large_conversation(), thinking=True))
    write("chat_fuzz", "limit_large_completion.txt", large_completion())


# ---- config_fuzz ---------------------------------------------------------------------------

def base_config():
    with open(os.path.join(HERE, "config_fuzz_corpus", "v32.json")) as f:
        return json.load(f)


def nested_list(levels):
    v = [1]
    for _ in range(levels - 1):
        v = [v]
    return v


# format/config.cc RequireAtMost: each count at its upper bound.
CONFIG_BOUNDS = {
    "vocab_size": 1 << 24, "hidden_size": 1 << 18, "intermediate_size": 1 << 20,
    "moe_intermediate_size": 1 << 20, "num_hidden_layers": 1024, "num_nextn_predict_layers": 16,
    "num_attention_heads": 4096, "num_key_value_heads": 4096, "q_lora_rank": 1 << 16,
    "kv_lora_rank": 1 << 16, "qk_nope_head_dim": 4096, "qk_rope_head_dim": 4096,
    "v_head_dim": 4096, "max_position_embeddings": 1 << 24, "n_routed_experts": 16384,
    "n_shared_experts": 64, "index_n_heads": 4096, "index_head_dim": 4096,
    "index_topk": 1 << 24,
}


def write_config():
    for levels in (MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1):
        c = base_config()
        c["extra_nested"] = nested_list(levels)  # the top object is depth 0
        assert depth(c) == levels
        write("config_fuzz", "limit_depth%d.json" % levels, json.dumps(c))
    c = base_config()
    c.update(CONFIG_BOUNDS)
    write("config_fuzz", "limit_bounds.json", json.dumps(c))
    c["num_hidden_layers"] = 1025
    write("config_fuzz", "limit_bounds_over.json", json.dumps(c))
    c = base_config()
    for k in range(2000):
        c["x%04d" % k] = {"v": [k, k / 8]} if k % 10 == 0 else k
    text = json.dumps(c)
    write("config_fuzz", "limit_many_keys.json", text)
    # The same with its first key repeated at the end: a duplicate found after 2000 keys.
    write("config_fuzz", "limit_many_keys_duplicate.json",
          text[:-1] + ', "architectures": ["DeepseekV32ForCausalLM"]}')


# ---- safetensors_header_fuzz ---------------------------------------------------------------

DTYPES = [("F32", 4), ("F16", 2), ("BF16", 2), ("F8_E4M3", 1), ("I64", 8), ("U8", 1),
          ("BOOL", 1), ("F64", 8)]


def safetensors(header, data):
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return struct.pack("<Q", len(text)) + text + data


def write_safetensors():
    header = {"__metadata__": {"m%03d" % k: "value %d" % k for k in range(100)}}
    offset = 0
    for t in range(500):
        name, size = DTYPES[t % len(DTYPES)]
        shape = [[], [3], [2, 2], [1, 2, 1, 2]][t % 4]
        n = size
        for d in shape:
            n *= d
        header["model.layers.%d.w%d" % (t // 8, t % 8)] = {
            "dtype": name, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    write("safetensors_header_fuzz", "limit_many_tensors.safetensors",
          safetensors(header, bytes(k % 251 for k in range(offset))))
    # Shapes are the deepest containers allowed (depth 2): one level more is refused.
    write("safetensors_header_fuzz", "limit_depth3.safetensors",
          safetensors({"a": {"dtype": "F32", "shape": [[2]], "data_offsets": [0, 8]}},
                      bytes(8)))
    # numel fits 63 bits; numel × 8 bytes does not.
    write("safetensors_header_fuzz", "limit_shape_overflow.safetensors",
          safetensors({"a": {"dtype": "F64", "shape": [1 << 31, 1 << 31],
                             "data_offsets": [0, 8]}}, bytes(8)))


# ---- gguf_header_fuzz ----------------------------------------------------------------------

U8, U32, I32, F32, BOOL, STRING, ARRAY, U64, F64 = 0, 4, 5, 6, 7, 8, 9, 10, 12
GGML = {"F32": (0, 1, 4), "F16": (1, 1, 2), "Q8_0": (8, 32, 34), "Q4_K": (12, 256, 144),
        "Q6_K": (14, 256, 210), "BF16": (30, 1, 2), "Q4_0": (2, 32, 18)}


def gstr(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def kv(key, type_, value_bytes):
    return gstr(key) + struct.pack("<I", type_) + value_bytes


def garray(elem_type, items_bytes, count):
    return struct.pack("<IQ", elem_type, count) + items_bytes


def nested_array(levels):
    """`levels` arrays nested (the outermost is the value: depth 0), innermost of 2 u8."""
    v = garray(U8, b"\x01\x02", 2)
    for _ in range(levels - 1):
        v = garray(ARRAY, v, 1)
    return v


def gguf(kvs, tensors, data, n_kv=None, n_tensors=None, alignment=32):
    """kvs: encoded KVs; tensors: (name, dims, type name, offset)."""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors) if n_tensors is None else n_tensors,
                                len(kvs) if n_kv is None else n_kv)
    out += b"".join(kvs)
    for name, dims, tname, offset in tensors:
        out += gstr(name) + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", GGML[tname][0], offset)
    out += bytes(-len(out) % alignment)
    return out + data


def tensor_bytes(tname, dims):
    _, block, size = GGML[tname]
    n = 1
    for d in dims:
        n *= d
    return n // block * size


def write_gguf():
    arch = kv("general.architecture", STRING, gstr("deepseek2"))
    f32 = [("t", [8], "F32", 0)]
    for levels, tag in ((8, "8"), (9, "9")):
        write("gguf_header_fuzz", "limit_arrays_depth%s.gguf" % tag,
              gguf([arch, kv("nested", ARRAY, nested_array(levels))], f32, bytes(32)))
    write("gguf_header_fuzz", "limit_dims4.gguf",
          gguf([arch], [("t", [32, 2, 2, 2], "F32", 0)], bytes(32 * 8 * 4)))
    write("gguf_header_fuzz", "limit_dims5.gguf",
          gguf([arch], [("t", [32, 2, 2, 2, 1], "F32", 0)], bytes(32 * 8 * 4)))

    # A tokenizer-sized header: 2000 tokens with scores and types, keys of every type, and 120
    # tensors of the decodable types, each at the next 32-byte boundary.
    vocab = ["tok%d" % k if k % 5 else "▁wörd%d" % k for k in range(2000)]
    kvs = [arch,
           kv("tokenizer.ggml.model", STRING, gstr("gpt2")),
           kv("tokenizer.ggml.tokens", ARRAY, garray(STRING, b"".join(map(gstr, vocab)), 2000)),
           kv("tokenizer.ggml.scores", ARRAY,
              garray(F32, b"".join(struct.pack("<f", -k / 10) for k in range(2000)), 2000)),
           kv("tokenizer.ggml.token_type", ARRAY,
              garray(I32, b"".join(struct.pack("<i", 1 + k % 3) for k in range(2000)), 2000)),
           kv("general.alignment", U32, struct.pack("<I", 32)),
           kv("deepseek2.block_count", U32, struct.pack("<I", 61)),
           kv("deepseek2.rope.freq_base", F32, struct.pack("<f", 10000.0)),
           kv("deepseek2.context_length", U64, struct.pack("<Q", 163840)),
           kv("deepseek2.expert_weights_norm", BOOL, b"\x01"),
           kv("deepseek2.expert_weights_scale", F64, struct.pack("<d", 2.5))]
    tensors, data = [], b""
    kinds = [("F32", [16, 2]), ("F16", [32]), ("BF16", [8, 4]), ("Q8_0", [64, 2]),
             ("Q4_0", [32]), ("Q4_K", [256]), ("Q6_K", [256])]
    for t in range(120):
        tname, dims = kinds[t % len(kinds)]
        data += bytes(-len(data) % 32)
        # Deterministic, not all-zero bytes (scales of the quantised blocks included).
        n = tensor_bytes(tname, dims)
        tensors.append(("blk.%d.%s" % (t // 7, tname.lower()), dims, tname, len(data)))
        data += bytes((t * 31 + k * 7) % 256 for k in range(n))
    write("gguf_header_fuzz", "limit_large_header.gguf", gguf(kvs, tensors, data))

    # Counts at and past their bounds (each KV takes ≥ 13 bytes after the 24-byte preamble;
    # each tensor info ≥ 24): at the bound the count passes and parsing fails later (the zero
    # bytes read as a duplicate empty key, a tensor of 0 dims); one more is refused before
    # anything is allocated.
    body = kv("k", U8, b"\x01") + bytes(13 * 40)
    at = len(body) // 13
    write("gguf_header_fuzz", "limit_kv_count_at_bound.gguf",
          gguf([body], [], b"", n_kv=at, alignment=1))
    write("gguf_header_fuzz", "limit_kv_count_over_bound.gguf",
          gguf([body], [], b"", n_kv=at + 1, alignment=1))
    info = gstr("t") + struct.pack("<IQIQ", 1, 8, 0, 0)
    rest = info + bytes(24 * 40)
    write("gguf_header_fuzz", "limit_tensor_count_at_bound.gguf",
          gguf([rest], [], b"", n_kv=0, n_tensors=len(rest) // 24, alignment=1))
    write("gguf_header_fuzz", "limit_tensor_count_over_bound.gguf",
          gguf([rest], [], b"", n_kv=0, n_tensors=len(rest) // 24 + 1, alignment=1))


if __name__ == "__main__":
    write_chat()
    write_config()
    write_safetensors()
    write_gguf()
