#!/usr/bin/env python3
"""ctest driver for ../shared/realwf Part A: runs run_a.py against the built wf-evaluator, then
fails unless every case that plain CPython passes (oracle_a.jsonl, status "pass") passes too.
Exit 77 (ctest: skipped) with the reason when the realwf folder is absent."""
import argparse
import json
import os
import subprocess
import sys
import tempfile


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
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "results.jsonl")
        cmd = f"exec {args.evaluator} --port {{port}} --access-log false"
        run = subprocess.run([sys.executable, runner, "--cmd", cmd, "--out", out, "--jobs", "2"],
                             timeout=800)
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
