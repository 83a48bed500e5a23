#!/usr/bin/python3
"""Training and evaluation data for dsinfer's own small DeepSeek-V3.2 model.

    /usr/bin/python3 tools/train/data.py --tokenizer TOKDIR --out DIR [--seed S]
                                         [--scale small|full] [--no-encode]

Writes into DIR (see tools/train/README.md for the mix and the sizes):
  train.jsonl            {"text", "kind"}: complete documents. Chat ones are in DeepSeek-V3.2's
                         chat encoding (BOS, <｜User｜>q<｜Assistant｜>, </think> in chat mode or
                         <think>reasoning</think> in thinking mode, answer, EOS); plain English
                         ones are BOS + text + EOS.
  train.bin              uint16 token ids of train.jsonl's documents, concatenated (each starts
                         with BOS), by Hugging Face's tokenizer (encode.mjs), unless --no-encode
  train_docs.npy         int64 start offset of each document in train.bin
  curriculum/ten_keys/   train.jsonl, train.bin, train_docs.npy of the retrieval curriculum's
                         first set: pass key documents of 30-150 tokens whose keys are 10-19;
  curriculum/all_keys/   its second: 20-70 tokens, keys 10-99
  drill/                 the same three files of the drill: train.jsonl's pass key documents,
                         short and long, in both modes, each thinking-mode one three times
                         (train.py --drill-every)
  eval_retrieval.jsonl   {"messages", "thinking", "answer", "kind", "tokens", "depth"}: pass key
                         retrieval at 2098-2550 tokens (tokens: of the prompt; depth: where the
                         asked fact sits, 0-1); eval_retrieval_short.jsonl: 80-250 tokens;
                         eval_kv.jsonl: key-value facts at 2098-2550 tokens
  probe_retrieval.json   held-out pass key prompts as ids with their answer's id (train.py's
                         probe)
  eval_arith.jsonl, eval_skills.jsonl   exact-answer tasks in the same format
  eval_text.jsonl        {"text", "source"}: held-out English for perplexity
  stats.json             documents and tokens by kind, bytes per token, the sources

Everything is a function of --seed and --scale: the generators draw from random.Random streams
named after the seed and the purpose; the evaluation sets use their own streams and the
held-out English (one fortune or chapter in ten, chosen by a hash of its text, not by the
seed), and no training document asks a question of an evaluation set.

The English comes from two Debian packages (scripts/setup.sh installs them): the fortune-cookie
collection of `fortunes` and `fortunes-min` (BSD licence) and the World English Bible of
`sword-text-web` (public domain). Plain-English documents are half Bible chapters, half packed
fortunes; the retrieval filler is both. chat_samples.jsonl (requests and the texts this file
makes of them) is for tests/text/own_tokenizer_check.mjs.
"""
import argparse
import hashlib
import html
import json
import os
import random
import re
import struct
import subprocess
import sys
import time
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from tokenizer import (ASSISTANT, BOS, END_THINK, EOS, THINK, USER,  # noqa: E402
                       Encoder)

FORTUNE_DIR = "/usr/share/games/fortunes"
# Every text file of fortunes + fortunes-min except the pictures (art, ascii-art).
FORTUNE_FILES = [
    "computers", "cookie", "debian", "definitions", "disclaimer", "drugs", "education",
    "ethnic", "food", "fortunes", "goedel", "humorists", "kids", "knghtbrd", "law", "linux",
    "linuxcookie", "literature", "love", "magic", "medicine", "men-women", "miscellaneous",
    "news", "paradoxum", "people", "perl", "pets", "platitudes", "politics", "pratchett",
    "riddles", "science", "songs-poems", "sports", "startrek", "tao", "translate-me", "wisdom",
    "work", "zippy",
]
WEB_DIR = "/usr/share/sword/modules/texts/ztext/engWEB2015eb"
SOURCES = {
    "fortunes": "Debian packages fortunes and fortunes-min 1:1.99.1-7.3 "
                "(/usr/share/games/fortunes; BSD licence)",
    "web": "Debian package sword-text-web 426.0-1: the World English Bible "
           f"({WEB_DIR}; public domain)",
}

# Token budgets of train.jsonl by kind, as fractions of the total (tokens of our tokenizer).
MIX = {"retrieval": 0.45, "english": 0.20, "skills": 0.20, "recall": 0.05, "chat": 0.10}
RECALL_RANGE = (20, 200)    # tokens of the passage a recall task repeats
SCALES = {  # total training tokens, eval set sizes, share of the English for the tokenizer
    "small": {"tokens": 150_000, "n_eval": 16, "n_eval_text": 40, "tok_english": 0.15,
              "curriculum_docs": 500},
    "full": {"tokens": 15_000_000, "n_eval": 200, "n_eval_text": 400, "tok_english": 1.0,
             "curriculum_docs": 20_000},
}
# The drill: the mix's pass key documents, each thinking-mode one this many times.
DRILL_KINDS = ("passkey_short", "passkey_long", "passkey_short_think", "passkey_long_think")
DRILL_THINK_REPEAT = 3
# The retrieval curriculum (train.py --curriculum-sets, in this order): pass key documents of
# this many tokens (the needle, the question, some filler) with keys drawn from this range.
CURRICULUM = [("curriculum/ten_keys", (30, 150), (10, 19)),
              ("curriculum/all_keys", (20, 70), (10, 99))]
WEB_MAX_CHARS = 7000        # longer chapters are cut into parts (~1800 tokens at most)
LONG_RANGE = (2048, 2600)   # tokens of a long retrieval document
SHORT_RANGE = (30, 300)     # tokens of a short one (several fit a 512-token training row)
LONG_SHARE = 0.1            # of the training retrieval documents (the rest are short)
KV_SHARE = 0.25             # of the training retrieval documents: key-value facts


def rng_for(seed, stream):
    return random.Random(f"dsinfer-data/{seed}/{stream}")


# ---------------------------------------------------------------------------------------------
# English

def load_fortunes():
    """All fortunes (cleaned), each once, in file order."""
    if not os.path.isdir(FORTUNE_DIR):
        raise SystemExit(f"data: {FORTUNE_DIR} not found: install the Debian packages fortunes "
                         "and fortunes-min (scripts/setup.sh does)")
    seen, out = set(), []
    for name in FORTUNE_FILES:
        path = os.path.join(FORTUNE_DIR, name)
        with open(path, "rb") as f:
            raw = f.read()
        for chunk in raw.split(b"\n%\n"):
            try:
                text = chunk.decode("utf-8")
            except UnicodeDecodeError:
                continue
            text = "\n".join(line.rstrip() for line in text.strip("\n%").split("\n")).strip("\n")
            if len(text) < 20 or any(ord(c) < 32 and c not in "\n\t" for c in text):
                continue
            letters = sum(c.isalpha() for c in text)
            if letters < 0.6 * len(text.replace(" ", "").replace("\n", "")):
                continue  # pictures, tables, code
            if text not in seen:
                seen.add(text)
                out.append(text)
    return out


def _osis_to_text(osis):
    """OSIS markup of a chapter → plain text, paragraphs separated by blank lines."""
    s = re.sub(r"<note\b.*?</note>|<title\b.*?</title>", "", osis, flags=re.S)
    s = re.sub(r'<div\b[^>]*type="x-p"[^>]*/>|<lg\b[^>]*/>', "\n\n", s)
    s = re.sub(r"<l\b[^>]*eID=[^>]*/>", "\n", s)
    s = html.unescape(re.sub(r"<[^>]+>", "", s))
    lines = [" ".join(line.split()) for line in s.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _parts(text, max_chars):
    """`text` cut at paragraph boundaries into parts of at most about `max_chars`."""
    parts, cur = [], ""
    for p in text.split("\n\n"):
        if cur and len(cur) + 2 + len(p) > max_chars:
            parts.append(cur)
            cur = ""
        cur = cur + "\n\n" + p if cur else p
    return parts + ([cur] if cur else [])


def load_web(max_books=None):
    """The chapters of the World English Bible, long ones cut in parts (SWORD zText module: per
    book, a zlib block of OSIS text; .bzs holds each block's offset, size and uncompressed
    size)."""
    if not os.path.isdir(WEB_DIR):
        raise SystemExit(f"data: {WEB_DIR} not found: install the Debian package "
                         "sword-text-web (scripts/setup.sh does)")
    chapters = []
    for part in ("nt", "ot"):
        with open(os.path.join(WEB_DIR, f"{part}.bzs"), "rb") as f:
            index = f.read()
        with open(os.path.join(WEB_DIR, f"{part}.bzz"), "rb") as f:
            blocks = f.read()
        for i in range(len(index) // 12):
            if max_books is not None and i >= max_books:
                break
            offset, size, _ = struct.unpack_from("<III", index, 12 * i)
            book = zlib.decompress(blocks[offset:offset + size]).decode("utf-8")
            for chapter in re.split(r"<chapter\b[^>]*sID=[^>]*/>", book)[1:]:
                for text in _parts(_osis_to_text(chapter), WEB_MAX_CHARS):
                    if 200 <= len(text) <= 2 * WEB_MAX_CHARS:  # (a glossary without breaks)
                        chapters.append(text)
        if max_books is not None:
            break  # scale small: a few New Testament books
    return chapters


def is_held_out(text):
    return hashlib.sha256(text.encode()).digest()[0] % 10 == 0


def split_held_out(texts):
    """(train, held_out): one text in ten is held out, chosen by the hash of the text."""
    train, held = [], []
    for t in texts:
        (held if is_held_out(t) else train).append(t)
    return train, held


def english_split(scale="full"):
    """{"fortunes": (train, held_out), "web": (train, held_out)}: fortunes, and chapters of the
    World English Bible (at scale small only the first Gospels')."""
    return {"fortunes": split_held_out(load_fortunes()),
            "web": split_held_out(load_web(max_books=2 if scale == "small" else None))}


def filler_units(fortunes, chapters):
    """Retrieval filler: fortunes and Bible paragraphs of 40-500 characters on one line,
    without digits."""
    out = []
    for t in fortunes + [p for c in chapters for p in c.split("\n\n")]:
        s = " ".join(t.split())
        if (40 <= len(s) <= 500 and not any(c.isdigit() for c in s) and
                all(c.isascii() or c in "’‘“”—" for c in s)):
            out.append(s)
    return out


def vocabulary_words(fortunes):
    """Lower-case words of 3-9 letters that occur at least 3 times (for the word skills)."""
    counts = {}
    for t in fortunes:
        for w in t.split():
            w = w.strip(".,;:!?\"'()-").lower()
            if 3 <= len(w) <= 9 and w.isascii() and w.isalpha():
                counts[w] = counts.get(w, 0) + 1
    return sorted(w for w, c in counts.items() if c >= 3)


# ---------------------------------------------------------------------------------------------
# The V3.2 chat encoding (the subset used here; src/text/chat_encoding.cc has all of it)

def chat_prompt(question, thinking):
    """The prompt of one user turn, as `dsinfer chat-template` renders it."""
    return BOS + USER + question + ASSISTANT + (THINK if thinking else END_THINK)


def chat_document(question, answer, thinking, reasoning=None):
    """A complete training document: the prompt, the assistant's turn, EOS."""
    if thinking:
        assert reasoning, "a thinking-mode turn needs its reasoning"
        return chat_prompt(question, True) + reasoning + END_THINK + answer + EOS
    return chat_prompt(question, False) + answer + EOS


def chat_request(question, answer=None, thinking=False, reasoning=None):
    """The OpenAI chat request whose V3.2 encoding is chat_prompt / chat_document."""
    messages = [{"role": "user", "content": question}]
    if answer is not None:
        msg = {"role": "assistant", "content": answer}
        if thinking:
            msg["reasoning_content"] = reasoning
        messages.append(msg)
    return {"messages": messages, "thinking": {"type": "enabled" if thinking else "disabled"}}


# ---------------------------------------------------------------------------------------------
# Tasks. Each generator returns a dict: question, answer, reasoning, kind.

NAMES = ["Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Irene", "Jack",
         "Karen", "Leo", "Maria", "Nina", "Oscar", "Paul", "Quinn", "Rosa", "Sam", "Tina",
         "Uma", "Victor", "Wendy", "Yusuf", "Zoe"]


def digit_words(n):
    return list(reversed(str(n)))


def addition(rng):
    a = rng.randint(10 ** rng.choice([0, 1, 1, 2, 2, 2]), 999)
    b = rng.randint(10 ** rng.choice([0, 1, 1, 2, 2, 2]), 999)
    q = rng.choice(["What is {a} + {b}?", "Compute {a} + {b}.", "{a} + {b} = ?",
                    "Add {a} and {b}.", "What is the sum of {a} and {b}?"]).format(a=a, b=b)
    steps, carry = [], 0
    da, db = digit_words(a), digit_words(b)
    places = ["Ones", "Tens", "Hundreds", "Thousands"]
    for i in range(max(len(da), len(db))):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        s = x + y + carry
        term = f"{x} + {y}" + (f" + {carry}" if carry else "")
        steps.append(f"{places[i]}: {term} = {s}, write {s % 10}" +
                     (", carry 1." if s >= 10 else "."))
        carry = s // 10
    if carry:
        steps.append(f"{places[len(steps)]}: write the carry 1.")
    reasoning = (f"I add {a} and {b} digit by digit from the right. " + " ".join(steps) +
                 f" So {a} + {b} = {a + b}.")
    return {"question": q, "answer": str(a + b), "reasoning": reasoning, "kind": "add"}


def subtraction(rng):
    a = rng.randint(10 ** rng.choice([1, 1, 2, 2, 2]), 999)
    b = rng.randint(0, a)
    q = rng.choice(["What is {a} - {b}?", "Compute {a} - {b}.", "{a} - {b} = ?",
                    "Subtract {b} from {a}.", "What is {a} minus {b}?"]).format(a=a, b=b)
    steps, borrow = [], 0
    da, db = digit_words(a), digit_words(b)
    places = ["Ones", "Tens", "Hundreds"]
    for i in range(len(da)):
        x = int(da[i]) - borrow
        y = int(db[i]) if i < len(db) else 0
        term = f"{da[i]} - {y}" + (" - 1" if borrow else "")
        if x < y:
            steps.append(f"{places[i]}: {term} is negative, borrow ten: {x + 10} - {y} = "
                         f"{x + 10 - y}.")
            borrow = 1
        else:
            steps.append(f"{places[i]}: {term} = {x - y}.")
            borrow = 0
    reasoning = (f"I subtract {b} from {a} digit by digit from the right. " + " ".join(steps) +
                 f" So {a} - {b} = {a - b}.")
    return {"question": q, "answer": str(a - b), "reasoning": reasoning, "kind": "sub"}


def copy_word(rng, words):
    w = rng.choice(words)
    q = rng.choice(["Repeat this word: {w}", "Say the word {w}.", "Copy the word: {w}",
                    "Please repeat: {w}"]).format(w=w)
    reasoning = f"The word is {w}. Repeating it gives {w}."
    return {"question": q, "answer": w, "reasoning": reasoning, "kind": "copy"}


def reverse_word(rng, words):
    w = rng.choice(words)
    r = w[::-1]
    q = rng.choice(["Reverse the letters of the word {w}.", "Spell {w} backwards.",
                    "Write the word {w} in reverse."]).format(w=w)
    reasoning = (f"The letters of {w} are {', '.join(w)}. Backwards they are "
                 f"{', '.join(r)}. So the reversed word is {r}.")
    return {"question": q, "answer": r, "reasoning": reasoning, "kind": "reverse"}


def count_letters(rng, words):
    w = rng.choice(words)
    q = rng.choice(["How many letters are in the word {w}?",
                    "Count the letters of {w}."]).format(w=w)
    listed = ", ".join(f"{c} ({i + 1})" for i, c in enumerate(w))
    reasoning = f"I count the letters of {w}: {listed}. That makes {len(w)}."
    return {"question": q, "answer": str(len(w)), "reasoning": reasoning, "kind": "count"}


def larger(rng):
    a = rng.randint(1, 999)
    b = rng.randint(1, 999)
    while b == a:
        b = rng.randint(1, 999)
    q = rng.choice(["Which number is larger, {a} or {b}?", "Which is bigger: {a} or {b}?",
                    "What is the larger of {a} and {b}?"]).format(a=a, b=b)
    hi, lo = max(a, b), min(a, b)
    if len(str(a)) != len(str(b)):
        why = f"{hi} has {len(str(hi))} digits and {lo} has {len(str(lo))}"
    else:
        i = next(i for i in range(len(str(a))) if str(a)[i] != str(b)[i])
        why = (f"both have {len(str(a))} digits, and at the first digit where they differ "
               f"{str(hi)[i]} is more than {str(lo)[i]}")
    reasoning = f"Compare {a} and {b}: {why}. So {hi} is larger."
    return {"question": q, "answer": str(hi), "reasoning": reasoning, "kind": "larger"}


def skill_task(rng, words):
    k = rng.random()
    if k < 0.30:
        return addition(rng)
    if k < 0.55:
        return subtraction(rng)
    if k < 0.67:
        return copy_word(rng, words)
    if k < 0.79:
        return reverse_word(rng, words)
    if k < 0.89:
        return count_letters(rng, words)
    return larger(rng)


CHAT_TURNS = [
    (["Hello!", "Hello", "Hi!", "Hi there.", "Hey!", "Good morning!", "Good evening!"],
     ["Hello! How can I help you today?", "Hi! What can I do for you?",
      "Hello! What would you like to talk about?"],
     "The user greets me. I greet them back and offer help."),
    (["How are you?", "How are you doing today?", "How is it going?"],
     ["I am doing well, thank you. How can I help you?",
      "Fine, thanks for asking! What can I do for you?"],
     "The user asks how I am. I answer politely and offer help."),
    (["Who are you?", "What are you?", "What is your name?", "Tell me about yourself."],
     ["I am a small language model that dsinfer runs. I can chat, do simple arithmetic, and "
      "find facts hidden in long texts.",
      "I am a small demo model of the DeepSeek-V3.2 architecture, trained to answer short "
      "questions."],
     "The user asks who I am. I describe myself briefly."),
    (["What can you do?", "How can you help me?", "What are you good at?"],
     ["I can add and subtract numbers, spell words backwards, and find a pass key or a code "
      "hidden in a long text. Just ask!",
      "I can answer short questions: sums and differences, word puzzles, and facts hidden in "
      "long passages."],
     "The user asks what I can do. I list my skills."),
    (["Thank you!", "Thanks.", "Thanks a lot!", "Great, thank you."],
     ["You are welcome!", "Glad I could help!", "You're welcome. Anything else?"],
     "The user thanks me. I reply kindly."),
    (["Goodbye!", "Bye.", "See you later!", "Good night!"],
     ["Goodbye! Have a nice day.", "Bye! Come back any time.", "See you!"],
     "The user says goodbye. I say goodbye too."),
]
QUOTE_ASKS = ["Tell me a quote.", "Say something wise.", "Tell me a fortune.",
              "Give me a saying.", "Share a thought with me."]


def chat_quotes(fortunes):
    """Short fortunes fit to answer "Tell me a quote." (no IRC logs: no '<')."""
    return [t for t in fortunes if len(t) < 200 and t.count("\n") <= 2 and "<" not in t]


def chat_task(rng, quotes):
    if rng.random() < 0.4:
        quote = rng.choice(quotes)
        return {"question": rng.choice(QUOTE_ASKS), "answer": quote, "kind": "chat",
                "reasoning": "The user wants a saying. I pick one I know and share it."}
    asks, answers, reasoning = rng.choice(CHAT_TURNS)
    return {"question": rng.choice(asks), "answer": rng.choice(answers), "kind": "chat",
            "reasoning": reasoning}


class Filler:
    """Filler units with their token counts (each counted as it appears: after a space)."""

    def __init__(self, units, enc):
        self.units = units
        self.enc = enc
        self.counts = [None] * len(units)

    def count(self, i):
        if self.counts[i] is None:
            self.counts[i] = self.enc.count(" " + self.units[i])
        return self.counts[i]


def retrieval_task(rng, filler, target, enc, kv, keys=(10, 99)):
    """A pass key (kv=False) or 2-4 key-value facts hidden in filler, asked at the end, about
    `target` tokens long as a complete chat-mode training document; a pass key is drawn from
    `keys` (inclusive)."""
    if kv:
        names = rng.sample(NAMES, rng.randint(2, 4))
        codes = rng.sample(range(10, 100), len(names))
        needles = [f"The code of {n} is {c}." for n, c in zip(names, codes)]
        ask = rng.randrange(len(names))
        intro = rng.choice(["Some codes of people are hidden in the text below. Remember them.",
                            "Read the text below. It mentions the codes of some people."])
        question = f"What is the code of {names[ask]}?"
        answer = str(codes[ask])
        reasoning = f"The text says: The code of {names[ask]} is {answer}. So the answer is {answer}."
        kind = "kv"
    else:
        # Two digits: one token (tokenizer.py makes every two-digit string a token), and the
        # only number in the prompt (the filler has no digits), as in the usual pass key test.
        key = rng.randint(*keys)
        needles = [f"The pass key is {key}. Remember it. {key} is the pass key."]
        ask = 0
        intro = rng.choice([
            "There is an important pass key hidden inside a lot of irrelevant text. Find it "
            "and memorize it. I will quiz you about it.",
            "A pass key is hidden somewhere in the text below. Remember it."])
        question = rng.choice(["What is the pass key?", "What is the pass key in the text?"])
        answer = str(key)
        reasoning = f"The text says: The pass key is {key}. So the pass key is {key}."
        kind = "passkey"
    skeleton = chat_document(f"{intro}\n\n{' '.join(needles)}\n\n{question}", answer, False)
    budget = target - enc.count(skeleton)
    chosen, total, tries = [], 0, 0
    while tries < 200 and total < budget - 8:
        i = rng.randrange(len(filler.units))
        c = filler.count(i)
        tries += 1
        if total + c <= budget:
            chosen.append(filler.units[i])
            total += c
    for n in needles:  # each at a random depth
        chosen.insert(rng.randint(0, len(chosen)), n)
    q = f"{intro}\n\n{' '.join(chosen)}\n\n{question}"
    depth = chosen.index(needles[ask]) / max(1, len(chosen) - 1)
    return {"question": q, "answer": answer, "reasoning": reasoning, "kind": kind,
            "depth": round(depth, 3)}


class Counted:
    """Texts with their token counts, counted on first use."""

    def __init__(self, texts, enc):
        self.texts, self.enc, self.counts = texts, enc, [None] * len(texts)

    def count(self, i):
        if self.counts[i] is None:
            self.counts[i] = self.enc.count(self.texts[i])
        return self.counts[i]


def recall_task(rng, filler, enc):
    """Repeat a passage of filler text (RECALL_RANGE tokens) word for word. Every answer token
    is a copy of an earlier one: the densest signal for the copying (induction) mechanism that
    retrieval needs, which a small model otherwise learns only from the few answer tokens of
    each retrieval document (docs/train.md, "Copying first")."""
    target = rng.randint(*RECALL_RANGE)
    chosen, total, tries = [], 0, 0
    while tries < 50 and total < target:
        i = rng.randrange(len(filler.units))
        tries += 1
        if total + filler.count(i) <= RECALL_RANGE[1]:
            chosen.append(filler.units[i])
            total += filler.count(i)
    passage = " ".join(chosen)
    q = rng.choice(["Repeat this text exactly:", "Copy the following text word for word:",
                    "Say this back to me:"]) + "\n\n" + passage
    reasoning = "The user wants the text repeated exactly. I copy it word for word."
    return {"question": q, "answer": passage, "reasoning": reasoning, "kind": "recall"}


def english_document(rng, fortunes, chapters):
    """Half of the time a Bible chapter, else random fortunes (blank-line separated) up to
    100-1500 tokens; and the document's token count (estimated: the parts' counts plus one per
    separator, BOS and EOS)."""
    if rng.random() < 0.5:
        i = rng.randrange(len(chapters.texts))
        return BOS + chapters.texts[i] + EOS, chapters.count(i) + 2, "english_web"
    target = rng.randint(100, 1500)
    parts, total = [], 0
    while total < target:
        i = rng.randrange(len(fortunes.texts))
        parts.append(fortunes.texts[i])
        total += fortunes.count(i) + 1
    return BOS + "\n\n".join(parts) + EOS, total + 1, "english_fortunes"


# ---------------------------------------------------------------------------------------------

def tokenizer_corpus(seed, scale):
    """The texts the BPE merges are learnt from: the English training split (at scale small a
    hash-chosen part of it) and a sample of the synthetic documents (their special tokens are
    cut out by the trainer)."""
    split = english_split(scale)
    fortunes, chapters = split["fortunes"][0], split["web"][0]
    share = SCALES[scale]["tok_english"]
    texts = [t for t in fortunes + chapters
             if hashlib.sha256(t.encode()).digest()[1] < 256 * share] if share < 1 else \
        fortunes + chapters
    rng = rng_for(seed, "tokenizer")
    words = vocabulary_words(fortunes)
    quotes = chat_quotes(fortunes)
    n = 1500 if scale == "full" else 600
    for _ in range(n):
        t = skill_task(rng, words)
        texts.append(chat_document(t["question"], t["answer"], True, t["reasoning"]))
        t = chat_task(rng, quotes)
        texts.append(chat_document(t["question"], t["answer"], True, t["reasoning"]))
    units = filler_units(fortunes, [])
    for _ in range(n // 10):  # retrieval wording, without the filler (it is English already)
        kv = rng.random() < 0.5
        names = rng.sample(NAMES, 3)
        texts.append(" ".join(f"The code of {n} is {rng.randint(10, 99)}." for n in names) +
                     f" What is the code of {names[0]}? The pass key is "
                     f"{rng.randint(10, 99)}. Remember it. " + rng.choice(units))
    return texts


def eval_entry(task, thinking, enc):
    prompt = chat_prompt(task["question"], thinking)
    entry = {"messages": [{"role": "user", "content": task["question"]}], "thinking": thinking,
             "answer": task["answer"], "kind": task["kind"], "tokens": enc.count(prompt)}
    if "depth" in task:  # retrieval: where the asked fact sits, 0 = first filler unit, 1 = last
        entry["depth"] = task["depth"]
    return entry


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def generate(args):
    t0 = time.time()
    enc = Encoder(args.tokenizer)
    cfg = SCALES[args.scale]
    split = english_split(args.scale)
    (train_en, held_en), (train_web, held_web) = split["fortunes"], split["web"]
    words = vocabulary_words(train_en)
    quotes = chat_quotes(train_en)
    fill_train = Filler(filler_units(train_en, train_web), enc)
    fill_held = Filler(filler_units(held_en, held_web), enc)
    os.makedirs(args.out, exist_ok=True)

    # Evaluation sets first: the training generators skip their questions.
    n = cfg["n_eval"]
    rng = rng_for(args.seed, "eval")
    evals = {"retrieval": [], "retrieval_short": [], "kv": [], "arith": [], "skills": []}
    for i in range(n):
        for name, rnge, kv in (("retrieval", LONG_RANGE, False),
                               ("retrieval_short", SHORT_RANGE, False), ("kv", LONG_RANGE, True)):
            target = rng.randint(rnge[0] + 50, rnge[1] - 50)
            t = retrieval_task(rng, fill_held, target, enc, kv)
            evals[name].append(eval_entry(t, i % 4 == 3, enc))
        evals["arith"].append(eval_entry(addition(rng) if i % 2 == 0 else subtraction(rng),
                                         i % 4 >= 2, enc))
        t = [copy_word, reverse_word, count_letters][i % 3](rng, words) if i % 4 else larger(rng)
        evals["skills"].append(eval_entry(t, (i // 4) % 2 == 1, enc))
    held_questions = {e["messages"][0]["content"] for v in evals.values() for e in v}
    for name, rows in evals.items():
        write_jsonl(os.path.join(args.out, f"eval_{name}.jsonl"), rows)
    ppl = ([{"text": t, "source": "fortunes"} for t in held_en[:cfg["n_eval_text"]]] +
           [{"text": t, "source": "web"} for t in held_web[:cfg["n_eval_text"] // 8]])
    write_jsonl(os.path.join(args.out, "eval_text.jsonl"), ppl)

    # Training documents, kind by kind up to the token budget of the mix.
    docs = []
    est = {}
    for kind, share in MIX.items():
        rng = rng_for(args.seed, f"train/{kind}")
        budget = share * cfg["tokens"]
        total, made = 0, []
        fortunes, chapters = Counted(train_en, enc), Counted(train_web, enc)
        while total < budget:
            if kind == "english":
                text, tokens, sub = english_document(rng, fortunes, chapters)
                made.append((text, sub))
                total += tokens
                continue
            if kind == "retrieval":
                long_ = rng.random() < LONG_SHARE
                rnge = LONG_RANGE if long_ else SHORT_RANGE
                target = rng.randint(rnge[0] + 50, rnge[1] - 50)
                t = retrieval_task(rng, fill_train, target, enc, rng.random() < KV_SHARE)
                t["kind"] += "_long" if long_ else "_short"
                thinking = rng.random() < 0.25
                tokens = target
            elif kind == "recall":
                t = recall_task(rng, fill_train, enc)
                thinking = rng.random() < 0.25
                tokens = None
            else:
                t = skill_task(rng, words) if kind == "skills" else chat_task(rng, quotes)
                thinking = rng.random() < 0.5
                tokens = None
            if t["question"] in held_questions:
                continue
            text = chat_document(t["question"], t["answer"], thinking, t["reasoning"])
            made.append((text, t["kind"] + ("_think" if thinking else "")))
            total += tokens if tokens is not None else enc.count(text)
        est[kind] = total
        docs.extend(made)
    rng = rng_for(args.seed, "shuffle")
    rng.shuffle(docs)
    write_jsonl(os.path.join(args.out, "train.jsonl"),
                [{"text": text, "kind": kind} for text, kind in docs])
    print(f"data: {len(docs)} training documents (~{sum(est.values()) / 1e6:.2f}M tokens), "
          f"eval sets of {n}, in {time.time() - t0:.1f} s", file=sys.stderr)
    # The retrieval curriculum's sets (short pass key documents: first ten distinct keys, then
    # all 90) and the drill (the mix's own pass key documents in both modes, short and long, a
    # batch of them every few steps so that retrieval, once formed, keeps enough examples not to
    # be unlearnt, and sees enough long documents to work at 2K tokens). No held-out question
    # is asked (checked as for the mix).
    sets = {}
    for name, rnge, keys in CURRICULUM:
        rng = rng_for(args.seed, name)
        made = []
        while len(made) < cfg["curriculum_docs"]:
            t = retrieval_task(rng, fill_train, rng.randint(*rnge), enc, False, keys)
            thinking = rng.random() < 0.25
            if t["question"] in held_questions:
                continue
            made.append((chat_document(t["question"], t["answer"], thinking, t["reasoning"]),
                         "passkey_curriculum" + ("_think" if thinking else "")))
        sets[name] = made
    # The drill holds the thinking-mode ones DRILL_THINK_REPEAT times: a quarter of the mix's pass
    # key documents, they become half the drill (a thinking-mode answer comes after ~20 tokens of
    # reasoning, the harder retrieval: with chat-mode documents alone, 34% dense against 98%).
    sets["drill"] = [(text, kind) for text, kind in docs if kind in DRILL_KINDS
                     for _ in range(DRILL_THINK_REPEAT if kind.endswith("_think") else 1)]
    for name, made in sets.items():
        os.makedirs(os.path.join(args.out, name), exist_ok=True)
        write_jsonl(os.path.join(args.out, name, "train.jsonl"),
                    [{"text": text, "kind": kind} for text, kind in made])
    samples = chat_samples(args.seed, words, quotes, fill_train, enc)
    return docs, sets, evals, ppl, samples



def chat_samples(seed, words, quotes, filler, enc):
    """Requests and the texts data.py makes of them (prompts and complete documents), every
    task kind in both modes: tests/text/own_tokenizer_check.mjs renders the requests with
    `dsinfer chat-template` and requires the same bytes."""
    rng = rng_for(seed, "chat-samples")
    tasks = [addition(rng), subtraction(rng), copy_word(rng, words), reverse_word(rng, words),
             count_letters(rng, words), larger(rng), chat_task(rng, quotes),
             retrieval_task(rng, filler, 400, enc, False), retrieval_task(rng, filler, 400, enc, True)]
    rows = []
    for t in tasks:
        for thinking in (False, True):
            rows.append({"request": chat_request(t["question"], None, thinking),
                         "text": chat_prompt(t["question"], thinking)})
            rows.append({"request": chat_request(t["question"], t["answer"], thinking,
                                                 t["reasoning"]),
                         "text": chat_document(t["question"], t["answer"], thinking,
                                               t["reasoning"])})
    return rows


def encode(args, docs, out):
    """out/train.jsonl → out/train.bin + out/train_docs.npy through encode.mjs; returns the
    lengths."""
    t0 = time.time()
    bin_path = os.path.join(out, "train.bin")
    len_path = os.path.join(out, "train_lengths.tmp")
    subprocess.run(["node", os.path.join(HERE, "encode.mjs"), args.tokenizer,
                    os.path.join(out, "train.jsonl"), bin_path, len_path], check=True)
    lengths = np.fromfile(len_path, dtype=np.uint32).astype(np.int64)
    os.remove(len_path)
    if len(lengths) != len(docs):
        raise SystemExit(f"data: encode.mjs gave {len(lengths)} lengths for {len(docs)} documents")
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    ids = np.memmap(bin_path, dtype=np.uint16, mode="r")
    if ids.shape[0] != int(lengths.sum()):
        raise SystemExit(f"data: {bin_path} has {ids.shape[0]} ids, lengths say {lengths.sum()}")
    if len(starts) and not np.all(ids[starts] == 0):
        raise SystemExit("data: a document does not start with BOS (id 0)")
    np.save(os.path.join(out, "train_docs.npy"), starts)
    print(f"data: train.bin: {ids.shape[0]} tokens, encoded in {time.time() - t0:.1f} s",
          file=sys.stderr)
    return lengths


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer", required=True, help="directory with tokenizer.json")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scale", choices=list(SCALES), default="full")
    ap.add_argument("--no-encode", action="store_true", help="skip train.bin / train_docs.npy")
    args = ap.parse_args()
    t0 = time.time()
    docs, sets, evals, ppl, samples = generate(args)
    enc = Encoder(args.tokenizer)
    write_jsonl(os.path.join(args.out, "chat_samples.jsonl"), samples)
    # train.py's retrieval probe: held-out pass key prompts (no thinking) as ids, with the id
    # the answer starts with, so a training log shows when retrieval forms.
    probe = {}
    for name in ("retrieval_short", "retrieval"):
        rows = [e for e in evals[name] if not e["thinking"]][:32 if name == "retrieval_short" else 4]
        probe[name] = [{"ids": enc.encode(chat_prompt(e["messages"][0]["content"], False)),
                        "answer": enc.encode(e["answer"])[0]} for e in rows]
    with open(os.path.join(args.out, "probe_retrieval.json"), "w") as f:
        json.dump(probe, f)
    stats = {"seed": args.seed, "scale": args.scale, "sources": SOURCES, "mix": MIX,
             "documents": len(docs)}
    if not args.no_encode:
        lengths = encode(args, docs, args.out)
        for name, made in sets.items():
            n = encode(args, made, os.path.join(args.out, name))
            stats[name] = {"documents": len(made), "tokens": int(n.sum())}
            spec = [c for c in CURRICULUM if c[0] == name]
            if spec:
                stats[name].update(tokens_range=list(spec[0][1]), keys=list(spec[0][2]))
        by_kind = {}
        for (text, kind), n in zip(docs, lengths):
            k = by_kind.setdefault(kind, {"documents": 0, "tokens": 0, "min": n, "max": n})
            k["documents"] += 1
            k["tokens"] += int(n)
            k["min"], k["max"] = int(min(k["min"], n)), int(max(k["max"], n))
        stats["tokens"] = int(lengths.sum())
        stats["by_kind"] = dict(sorted(by_kind.items()))
        groups = {}
        for kind, k in by_kind.items():
            g = ("retrieval" if kind.startswith(("passkey", "kv")) else "english"
                 if kind.startswith("english") else "chat" if kind.startswith("chat")
                 else "recall" if kind.startswith("recall") else "skills")
            groups[g] = groups.get(g, 0) + k["tokens"]
        stats["tokens_by_group"] = {g: {"tokens": n, "share": round(n / stats["tokens"], 3)}
                                    for g, n in sorted(groups.items())}
        for source in ("fortunes", "web"):
            en = [(t, n) for (t, kind), n in zip(docs, lengths) if kind == "english_" + source]
            stats[f"bytes_per_token_train_{source}"] = round(
                sum(len(t[len(BOS):-len(EOS)].encode()) for t, _ in en) /
                max(1, sum(int(n) - 2 for _, n in en)), 3)
    held_tokens = {}
    for source in ("fortunes", "web"):
        texts = [r["text"] for r in ppl if r["source"] == source]
        held_tokens[source] = sum(enc.count(t) for t in texts)
        stats[f"bytes_per_token_held_out_{source}"] = round(
            sum(len(t.encode()) for t in texts) / max(1, held_tokens[source]), 3)
    stats["eval"] = {name: {"entries": len(rows),
                            "tokens_min": min(r["tokens"] for r in rows),
                            "tokens_max": max(r["tokens"] for r in rows)}
                     for name, rows in evals.items()}
    stats["eval"]["text"] = {"entries": len(ppl), "tokens": held_tokens}
    stats["seconds"] = round(time.time() - t0, 1)
    with open(os.path.join(args.out, "stats.json"), "w") as f:
        json.dump(stats, f, indent=2)
        f.write("\n")
    print(json.dumps(stats, indent=2))


if __name__ == "__main__":
    main()
