#!/usr/bin/env python3
"""ctest driver for ../shared/realwf Part A: runs run_a.py against the built wf-evaluator, then
fails unless every case that plain CPython passes (oracle_a.jsonl, status "pass") passes too.
Exit 77 (ctest: skipped) with the reason when the realwf folder is absent."""
import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base, proc, seconds=60):
    """True once GET /readyz answers 200 (both sandboxes started), False on timeout or exit."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


@contextlib.contextmanager
def ready_evaluator(binary):
    """Starts wf-evaluator on a free loopback port and yields its base URL once /readyz is 200
    (the port opens before the Python zygote is up: earlier calls would get 503), or None if it
    never gets ready; stops it on the way out."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    evaluator = subprocess.Popen([binary, "--port", str(port), "--access-log", "false"],
                                 stdout=subprocess.DEVNULL)
    try:
        if wait_ready(base, evaluator):
            yield base
        else:
            print(f"wf-evaluator on port {port} never became ready (exit {evaluator.poll()})")
            yield None
    finally:
        evaluator.terminate()
        try:
            evaluator.wait(timeout=15)
        except subprocess.TimeoutExpired:
            evaluator.kill()
            evaluator.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--realwf", required=True, help="the ../shared/realwf folder")
    ap.add_argument("--evaluator", required=True, help="the wf-evaluator binary")
    args = ap.parse_args()
    runner = os.path.join(args.realwf, "run_a.py")
    oracle_path = os.path.join(args.realwf, "oracle_a.jsonl")
    if not (os.path.exists(runner) and os.path.exists(oracle_path)):
        print(f"SKIPPED: no {runner} / oracle_a.jsonl: the realwf sample is not beside this clone")
        return 77
    # Started here (not by run_a.py --cmd) so that the cases run once the sandboxes are ready.
    with ready_evaluator(args.evaluator) as base:
        if base is None:
            return 1
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "results.jsonl")
            run = subprocess.run([sys.executable, runner, "--url", base + "/wikifunctions.org/v1/evaluate/",
                                  "--out", out, "--jobs", "2"], timeout=800)
            if run.returncode != 0 or not os.path.exists(out):
                print(f"run_a.py failed (exit {run.returncode})")
                return 1
            results = {}
            with open(out, encoding="utf-8") as f:
                for line in f:
                    r = json.loads(line)
                    results[r["id"]] = r
    with open(oracle_path, encoding="utf-8") as f:
        oracle = [json.loads(line) for line in f]
    must = [o["id"] for o in oracle if o["status"] == "pass"]
    missing = [i for i in must if results.get(i, {}).get("status") != "pass"]
    print(f"Part A: {sum(r['status'] == 'pass' for r in results.values())} of {len(results)} "
          f"cases pass; {len(must) - len(missing)} of the {len(must)} that plain CPython passes")
    for i in missing:
        r = results.get(i, {})
        print(f"  FAIL {i}: {r.get('status')} {json.dumps(r.get('value', r.get('error')))[:200]}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
