"""`dsinfer chat-template` against DeepSeek's golden chat-encoding fixture, byte for byte.

Usage: cli_chat_template_test.py DSINFER_BINARY FIXTURE_DIR
The fixture's test_output.txt ends with one newline that the encoder does not write (a
text-file convention); the CLI prints the prompt exactly, so that newline is removed here.
"""
import json
import os
import subprocess
import sys
import tempfile

EOS = "<｜end▁of▁sentence｜>"


def run(binary, args, stdin=None):
    return subprocess.run([binary, "chat-template", *args], input=stdin, capture_output=True,
                          timeout=60)


def main():
    binary, fixture = sys.argv[1], sys.argv[2]
    with open(os.path.join(fixture, "test_input.json"), encoding="utf-8") as f:
        data = json.load(f)
    with open(os.path.join(fixture, "test_output.txt"), "rb") as f:
        expected = f.read()
    assert expected.endswith((EOS + "\n").encode()), "unexpected end of test_output.txt"
    expected = expected[:-1]
    failures = []

    # 1. Request-level `tools` (OpenAI style), thinking through chat_template_kwargs, from a file.
    request = dict(data, chat_template_kwargs={"thinking": True})
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
        json.dump(request, f, ensure_ascii=False)
        path = f.name
    try:
        r = run(binary, ["--model", "/nonexistent", "--request", path])
    finally:
        os.unlink(path)
    if r.returncode != 0 or r.stdout != expected:
        failures.append(f"request-level tools: rc={r.returncode} stderr={r.stderr!r} "
                        f"({len(r.stdout)} bytes vs {len(expected)} expected)")

    # 2. Tools attached to messages[0] as in DeepSeek's encoder, thinking.type, from stdin.
    messages = [dict(m) for m in data["messages"]]
    messages[0]["tools"] = data["tools"]
    request = {"messages": messages, "thinking": {"type": "enabled"}}
    r = run(binary, ["--request", "-"], stdin=json.dumps(request).encode())
    if r.returncode != 0 or r.stdout != expected:
        failures.append(f"messages[0].tools: rc={r.returncode} stderr={r.stderr!r}")

    # 3. A bad request: exit code 1 and a message naming the field.
    bad = {"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]}
    r = run(binary, ["--request", "-"], stdin=json.dumps(bad).encode())
    if r.returncode != 1 or b"messages[1].role" not in r.stderr or r.stdout:
        failures.append(f"bad role: rc={r.returncode} stderr={r.stderr!r}")

    for f in failures:
        print("FAIL:", f)
    if failures:
        sys.exit(1)
    print("chat-template matches DeepSeek's golden fixture byte for byte")


if __name__ == "__main__":
    main()
