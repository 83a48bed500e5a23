#!/usr/bin/python3
"""Byte-level BPE tokenizer for dsinfer's own small DeepSeek-V3.2 model.

    /usr/bin/python3 tools/train/tokenizer.py --out DIR [--seed S] [--scale small|full]
                                              [--vocab-size 4096]

writes DIR/tokenizer.json (Hugging Face format) and DIR/tokenizer_config.json. The
normalizer, pre-tokenizer, post-processor and decoder are DeepSeek-V3's (copied as data from
its tokenizer.json; tests/text/own_tokenizer_check.mjs checks they still match). The vocabulary:

    ids 0..8    the special tokens of V3.2's chat encoding (SPECIAL_TOKENS below)
    ids 9..264  the 256 ByteLevel byte symbols, in byte order (no byte can be unknown)
    ids 265..   the BPE merges' results, in merge order, up to --vocab-size ids in total

The merges are learnt by a plain BPE trainer (this file) on the tokenizer corpus of data.py:
the English training split plus a sample of the synthetic task and chat documents, with the
special-token strings cut out. Words are the pre-tokenizer's pieces; every step merges the pair
with the highest count, ties broken by the smaller (left id, right id), so the output is a pure
function of the corpus (and so of --seed and --scale).

`Encoder` encodes text with the written tokenizer.json in Python (same pre-tokenizer regexes
through the `regex` module, same rank-ordered merges) for data.py's length measurements; the
exact ids of the training data come from Hugging Face's own tokenizer (encode.mjs).
"""
import argparse
import heapq
import json
import os
import sys
import time
from collections import Counter

import regex

# DeepSeek-V3.2's chat markers (src/text/chat_markers.h) and V3's BOS/EOS/pad, at fixed ids.
SPECIAL_TOKENS = [
    "<｜begin▁of▁sentence｜>",  # 0  BOS
    "<｜end▁of▁sentence｜>",    # 1  EOS
    "<｜▁pad▁｜>",              # 2
    "<｜User｜>",               # 3
    "<｜Assistant｜>",          # 4
    "<think>",                  # 5
    "</think>",                 # 6
    "<｜search▁begin｜>",       # 7
    "<｜search▁end｜>",         # 8
]
BOS, EOS, PAD, USER, ASSISTANT, THINK, END_THINK = SPECIAL_TOKENS[:7]

# DeepSeek-V3 tokenizer.json blocks, verbatim.
V3_NORMALIZER = {"type": "Sequence", "normalizers": []}
V3_PRE_TOKENIZER = {
    "type": "Sequence",
    "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated",
         "invert": False},
        {"type": "Split", "pattern": {"Regex": "[一-龥぀-ゟ゠-ヿ]+"}, "behavior": "Isolated",
         "invert": False},
        {"type": "Split",
         "pattern": {"Regex": "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|"
                              "[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|"
                              "\\s*[\r\n]+|\\s+(?!\\S)|\\s+"},
         "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
         "use_regex": False},
    ],
}
V3_POST_PROCESSOR = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                     "use_regex": True}
V3_DECODER = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
              "use_regex": True}


def byte_level_chars():
    """GPT-2's byte → character table (HF pre_tokenizers/byte_level.rs bytes_char)."""
    out, n = [], 0
    for b in range(256):
        if ord("!") <= b <= ord("~") or 0xA1 <= b <= 0xAC or b >= 0xAE:
            out.append(chr(b))
        else:
            out.append(chr(256 + n))
            n += 1
    return out


BYTE_CHARS = byte_level_chars()


class PreTokenizer:
    """The V3 pre-tokenizer: three Isolated regex splits, then bytes → ByteLevel characters."""

    def __init__(self, config=V3_PRE_TOKENIZER):
        self.splits = []
        for p in config["pretokenizers"]:
            if p["type"] == "Split":
                assert p["behavior"] == "Isolated" and not p["invert"], p
                self.splits.append(regex.compile(p["pattern"]["Regex"]))
            else:
                assert p["type"] == "ByteLevel" and not p["use_regex"], p

    def words(self, text):
        pieces = [text]
        for rx in self.splits:
            out = []
            for piece in pieces:
                at = 0
                for m in rx.finditer(piece):
                    if m.start() > at:
                        out.append(piece[at:m.start()])
                    out.append(m.group())
                    at = m.end()
                if at < len(piece):
                    out.append(piece[at:])
            pieces = out
        return ["".join(BYTE_CHARS[b] for b in p.encode("utf-8")) for p in pieces if p]


SPECIAL_RX = regex.compile("|".join(regex.escape(t) for t in SPECIAL_TOKENS))


def plain_segments(text):
    """The text between special-token strings (what the BPE model sees)."""
    return [s for s in SPECIAL_RX.split(text) if s]


def train_merges(texts, n_tokens, log=None):
    """Learns BPE merges (pairs of symbol strings) from `texts` until they make `n_tokens` new
    tokens (two merges can make the same string, e.g. (ab, c) and (a, bc): it is one token)."""
    pre = PreTokenizer()
    counts = Counter()
    for text in texts:
        for seg in plain_segments(text):
            counts.update(pre.words(seg))
    symbols = list(BYTE_CHARS)  # symbol id → string
    sym_id = {s: i for i, s in enumerate(symbols)}
    words, freq = [], []
    for w in sorted(counts):  # sorted: the word order (and so everything) is input-order free
        words.append([sym_id[c] for c in w])
        freq.append(counts[w])
    pair_count = Counter()
    where = {}
    for wi, w in enumerate(words):
        for p in zip(w, w[1:]):
            pair_count[p] += freq[wi]
            where.setdefault(p, set()).add(wi)
    heap = [(-c, p) for p, c in pair_count.items()]
    heapq.heapify(heap)
    merges = []

    def merge(a, b):
        """Adds the merge (a, b) and applies it to every word holding the pair."""
        pair = (a, b)
        new = sym_id.get(symbols[a] + symbols[b])
        if new is None:
            new = sym_id[symbols[a] + symbols[b]] = len(symbols)
            symbols.append(symbols[a] + symbols[b])
        merges.append((symbols[a], symbols[b]))
        changed = set()
        for wi in sorted(where.pop(pair, ())):
            w = words[wi]
            f = freq[wi]
            if not any(w[i] == a and w[i + 1] == b for i in range(len(w) - 1)):
                continue
            for p in zip(w, w[1:]):
                pair_count[p] -= f
                changed.add(p)
            merged, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    merged.append(new)
                    i += 2
                else:
                    merged.append(w[i])
                    i += 1
            words[wi] = merged
            for p in zip(merged, merged[1:]):
                pair_count[p] += f
                changed.add(p)
                where.setdefault(p, set()).add(wi)
        pair_count.pop(pair, None)
        for p in changed:
            c = pair_count.get(p, 0)
            if c > 0 and p != pair:
                heapq.heappush(heap, (-c, p))

    # Every two-digit string is one token (merges 0..99, whatever their counts): the retrieval
    # task's pass key is a two-digit number, so its answer is one token (docs/train.md).
    for d1 in "0123456789":
        for d2 in "0123456789":
            merge(sym_id[d1], sym_id[d2])
    while len(symbols) - 256 < n_tokens and heap:
        neg, pair = heapq.heappop(heap)
        if -neg != pair_count.get(pair, 0) or neg == 0:
            continue  # stale entry
        merge(*pair)
        if log and len(merges) % 500 == 0:
            log(f"  {len(merges)} merges, last {merges[-1]!r} x{-neg}")
    if len(symbols) - 256 < n_tokens:
        raise SystemExit(f"tokenizer: the corpus allows only {len(symbols) - 256} merged tokens, "
                         f"{n_tokens} wanted: give it more text or a smaller --vocab-size")
    return merges


def tokenizer_json(merges):
    vocab = {}
    for t in SPECIAL_TOKENS:
        vocab[t] = len(vocab)
    for c in BYTE_CHARS:
        vocab[c] = len(vocab)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, t in enumerate(SPECIAL_TOKENS)]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": V3_NORMALIZER,
        "pre_tokenizer": V3_PRE_TOKENIZER,
        "post_processor": V3_POST_PROCESSOR,
        "decoder": V3_DECODER,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "vocab": vocab,
            "merges": [f"{a} {b}" for a, b in merges],
        },
    }


def added_token(content):
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True,
            "rstrip": False, "single_word": False}


def tokenizer_config(model_max_length):
    """DeepSeek-V3's tokenizer_config.json minus the chat template (V3.2 ships none)."""
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": added_token(BOS),
        "clean_up_tokenization_spaces": False,
        "eos_token": added_token(EOS),
        "legacy": True,
        "model_max_length": model_max_length,
        "pad_token": added_token(EOS),
        "sp_model_kwargs": {},
        "unk_token": None,
        "tokenizer_class": "LlamaTokenizerFast",
    }


def write(out_dir, merges, model_max_length):
    os.makedirs(out_dir, exist_ok=True)
    for name, obj in (("tokenizer.json", tokenizer_json(merges)),
                      ("tokenizer_config.json", tokenizer_config(model_max_length))):
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=2)
            f.write("\n")


class Encoder:
    """tokenizer.json → ids, in Python (HF semantics for this file's kind of tokenizer)."""

    def __init__(self, tok_dir):
        with open(os.path.join(tok_dir, "tokenizer.json"), encoding="utf-8") as f:
            j = json.load(f)
        self.vocab = j["model"]["vocab"]
        self.ranks = {tuple(m.split(" ")): r for r, m in enumerate(j["model"]["merges"])}
        self.added = {t["content"]: t["id"] for t in j["added_tokens"]}
        self.added_rx = regex.compile("(" + "|".join(
            regex.escape(t) for t in sorted(self.added, key=len, reverse=True)) + ")")
        self.pre = PreTokenizer(j["pre_tokenizer"])
        self.cache = {}
        self.id_to_token = {i: t for t, i in self.vocab.items()}

    def _word(self, w):
        ids = self.cache.get(w)
        if ids is not None:
            return ids
        parts = list(w)
        while len(parts) > 1:
            best, at = None, -1
            for i in range(len(parts) - 1):
                r = self.ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best is None or r < best):
                    best, at = r, i
            if best is None:
                break
            a, b = parts[at], parts[at + 1]
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids = [self.vocab[p] for p in parts]
        self.cache[w] = ids
        return ids

    def encode(self, text):
        out = []
        for seg in self.added_rx.split(text):
            if not seg:
                continue
            if seg in self.added:
                out.append(self.added[seg])
            else:
                for w in self.pre.words(seg):
                    out.extend(self._word(w))
        return out

    def count(self, text):
        return len(self.encode(text))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--seed", type=int, default=1, help="seed of data.py's tokenizer corpus")
    ap.add_argument("--scale", choices=["small", "full"], default="full")
    ap.add_argument("--vocab-size", type=int, default=4096, help="total ids, specials included")
    ap.add_argument("--model-max-length", type=int, default=2816)
    args = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import data  # noqa: E402  (same folder)

    t0 = time.time()
    texts = data.tokenizer_corpus(args.seed, args.scale)
    n_tokens = args.vocab_size - len(SPECIAL_TOKENS) - 256
    print(f"tokenizer: {sum(len(t.encode()) for t in texts) / 1e6:.2f} MB of corpus, "
          f"{n_tokens} merged tokens to learn", file=sys.stderr)
    merges = train_merges(texts, n_tokens, log=lambda s: print(s, file=sys.stderr))
    write(args.out, merges, args.model_max_length)
    print(f"tokenizer: wrote {args.out}/tokenizer.json ({args.vocab_size} ids) in "
          f"{time.time() - t0:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
