"""Driver of the black-box server tests: generates a tiny model (once per build tree), starts
`dsinfer serve` on a free loopback port with a test script, waits for /health, runs a test
file (default openai_client_test.mjs) under `node --test`, and always stops the server. Every
wait is bounded, so a broken server fails the test instead of hanging it.

usage: run_openai_test.py DSINFER NODE SOURCE_DIR WORK_DIR [TEST.mjs [SERVE_ARG...]]
  SERVE_ARGs replace the default scheduling flags (--parallel 2 --queue 2 --max-body 65536).
  With DSINFER_NEEDS_CHROMIUM=1 in the environment (the web chat test), the test gets the
  path of Debian's chromium as DSINFER_CHROMIUM; when chromium is missing the driver fails,
  unless apt has no chromium for this system at all: then it exits 77 (CTest: skipped).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

API_KEY = "test-key-123"
CTX = 1024
EOS = "<｜end▁of▁sentence｜>"
SCRIPT = [  # first match wins: the tool result rule must precede the tool-call rule
    {"match": "TOOL_RESULT_MARK", "completion": "It is 21 degrees in Paris." + EOS},
    {"match": "SCRIPT_THINK", "completion": "Let me think.</think>It is 4." + EOS},
    {"match": "SCRIPT_PLAIN", "completion": "Plain answer." + EOS},
    {"match": "SCRIPT_TOOL", "completion":
        "\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
        "<｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n"
        "</｜DSML｜invoke>\n</｜DSML｜function_calls>" + EOS},
]


def ensure_model(dsinfer, work):
    model = os.path.join(work, "tiny1")
    if os.path.exists(os.path.join(model, "model.safetensors.index.json")):
        return model
    tmp = model + ".tmp%d" % os.getpid()
    # One layer, no MTP: the server is under test, not the model; this keeps prefill of the
    # ~400-token tool prompts fast.
    subprocess.run([dsinfer, "gen-model", "--preset", "tiny", "--seed", "11", "--out", tmp,
                    "--set", "num_hidden_layers=1", "--set", "num_nextn_predict_layers=0",
                    "--force"], check=True, timeout=300, stdout=subprocess.DEVNULL)
    try:
        os.rename(tmp, model)
    except OSError:
        subprocess.run(["rm", "-rf", tmp], check=False)
    return model


DEFAULT_SERVE_ARGS = ["--parallel", "2", "--queue", "2", "--max-body", "65536"]


def start_server(dsinfer, model, script_path, log_path, serve_args):
    log = open(log_path, "w")
    # The key comes from the environment (DSINFER_API_KEY), not argv, where ps shows it.
    proc = subprocess.Popen(
        [dsinfer, "serve", "--model", model, "--host", "127.0.0.1", "--port", "0",
         "--ctx", str(CTX), "--test-script", script_path] + serve_args,
        stdout=log, stderr=log, env=dict(os.environ, DSINFER_API_KEY=API_KEY))
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited early:\n" + open(log_path).read())
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", open(log_path).read())
        if m:
            return proc, "http://127.0.0.1:" + m.group(1)
        time.sleep(0.1)
    raise RuntimeError("server did not start within 60 s:\n" + open(log_path).read())


def wait_health(url):
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("/health did not answer within 30 s")


def check_port_exclusive(dsinfer, model, script_path, work, url):
    """A second server on the same port must fail to bind (httplib's default SO_REUSEPORT let it
    share the port and take half the connections). Returns an error message or None."""
    port = url.rsplit(":", 1)[1]
    log_path = os.path.join(work, "second_server.log")
    with open(log_path, "w") as log:
        second = subprocess.Popen(
            [dsinfer, "serve", "--model", model, "--host", "127.0.0.1", "--port", port,
             "--ctx", str(CTX), "--test-script", script_path] + DEFAULT_SERVE_ARGS,
            stdout=log, stderr=log, env=dict(os.environ, DSINFER_API_KEY=API_KEY))
    try:
        rc = second.wait(timeout=60)
    except subprocess.TimeoutExpired:
        second.kill()
        second.wait(timeout=10)
        return "a second server on port %s kept running (port shared)" % port
    text = open(log_path).read()
    if rc == 0 or "cannot bind" not in text:
        return "second server: rc %d, log:\n%s" % (rc, text[-2000:])
    return None


SKIP = 77  # SKIP_RETURN_CODE of the tests that need chromium


def find_chromium():
    """The chromium executable, or exits: 77 (skip) when apt cannot install it on this system,
    1 when it could be installed but is not (scripts/setup.sh installs it)."""
    path = os.environ.get("DSINFER_CHROMIUM") or shutil.which("chromium")
    if path:
        return path
    candidate = None
    if shutil.which("apt-cache"):
        out = subprocess.run(["apt-cache", "policy", "chromium"], capture_output=True,
                             text=True, timeout=60).stdout
        m = re.search(r"Candidate:\s*(\S+)", out)
        if m and m.group(1) != "(none)":
            candidate = m.group(1)
    if candidate is None:
        print("SKIP: chromium is not installable here (no apt candidate for Debian's "
              "'chromium' package): the web chat browser test cannot run")
        sys.exit(SKIP)
    print("FAIL: chromium is installable (apt candidate %s) but not installed: run "
          "scripts/setup.sh" % candidate)
    sys.exit(1)


def main():
    dsinfer, node, source, work = sys.argv[1:5]
    test_file = sys.argv[5] if len(sys.argv) > 5 else "openai_client_test.mjs"
    serve_args = sys.argv[6:] or DEFAULT_SERVE_ARGS
    os.makedirs(work, exist_ok=True)
    extra_env = {}
    if os.environ.get("DSINFER_NEEDS_CHROMIUM") == "1":
        extra_env["DSINFER_CHROMIUM"] = find_chromium()
    model = ensure_model(dsinfer, work)
    script_path = os.path.join(work, "script.json")
    with open(script_path, "w", encoding="utf-8") as f:
        json.dump(SCRIPT, f, ensure_ascii=False)
    log_path = os.path.join(work, "server.log")
    proc, url = start_server(dsinfer, model, script_path, log_path, serve_args)
    try:
        wait_health(url)
        env = dict(os.environ, DSINFER_URL=url, DSINFER_API_KEY=API_KEY, DSINFER_CTX=str(CTX),
                   DSINFER_SOURCE_DIR=source, **extra_env)
        test = os.path.join(source, "tests", "server", test_file)
        rc = subprocess.run([node, "--test", "--test-timeout=120000", test], env=env,
                            timeout=150).returncode
        if test_file == "openai_client_test.mjs":
            problem = check_port_exclusive(dsinfer, model, script_path, work, url)
            if problem:
                print("FAIL: " + problem)
                rc = 1
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if rc != 0:
        print("---- server log ----\n" + open(log_path).read()[-4000:])
    return rc


if __name__ == "__main__":
    sys.exit(main())
