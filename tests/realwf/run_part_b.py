#!/usr/bin/env python3
"""ctest driver for ../shared/realwf Part B: real compositions and Python implementations through
the built wf-orchestrator (started by run_b.py against its mock wiki) and wf-evaluator, in one
implementation order (--order composition_first: objects_b.json; python_first:
objects_b_pyfirst.json; each is a ctest test of its own). Fails when the order passes fewer cases
than recorded in part_b_floor.json, when a case kills the orchestrator (run_b.py then restarts it
and reruns the case alone), or when the run does not end in time. Exit 77 (ctest: skipped) with
the reason when the realwf folder is absent.

Each call has a deadline of DEADLINE_S (the orchestrator's --request-timeout-ms; the default
20 s ended the two deeply recursive compositions, about 10 s each on an idle machine, in Z558 on
a loaded one). The run as a whole must end within RUN_TIMEOUT_S, which leaves one deadline's time
of the test's ctest TIMEOUT (1380 s) to start the evaluator and report."""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run_part_a import ready_evaluator  # noqa: E402

ORDERS = {"composition_first": "objects_b.json", "python_first": "objects_b_pyfirst.json"}
DEADLINE_S = 120
RUN_TIMEOUT_S = 1380 - DEADLINE_S


def run_b(args, objects, evaluator_url, out):
    """run_b.py for one order: ({id: result}, its output), or (None, its output) when it
    failed."""
    orchestrator_cmd = (f"{args.orchestrator} --port {{port}} --wiki-api-url {{wiki}} "
                        f"--evaluator-url {{evaluator}} --objects-dir '' --cache-ttl-ms 0 "
                        f"--request-timeout-ms {DEADLINE_S * 1000} --access-log false")
    # The HTTP timeout of each request is longer than the orchestrator's deadline, so that a call
    # ends in the orchestrator's Z558 answer rather than in the client giving up.
    cmd = [sys.executable, os.path.join(args.realwf, "run_b.py"), "--objects", objects,
           "--orchestrator-cmd", orchestrator_cmd, "--evaluator-url", evaluator_url,
           "--out", out, "--jobs", "2", "--examples", "2", "--timeout", str(DEADLINE_S + 15)]
    # In a session of its own: on time-out the orchestrator it started goes with it.
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           errors="replace", start_new_session=True)
    try:
        stdout, stderr = run.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        stdout, stderr = run.communicate()
        return None, f"{stdout}{stderr}\nrun_b.py did not end within {RUN_TIMEOUT_S} s"
    if run.returncode != 0 or not os.path.exists(out):
        return None, stdout + stderr
    with open(out, encoding="utf-8") as f:
        return {r["id"]: r for r in map(json.loads, f)}, stdout


def check_order(args, name, floor, evaluator_url, tmp):
    """Runs one order; returns the problems found (empty when fine)."""
    objects = os.path.join(args.realwf, name)
    out = os.path.join(tmp, name + ".results.jsonl")
    results, output = run_b(args, objects, evaluator_url, out)
    print(output)
    if results is None:
        return [f"{name}: run_b.py failed"]
    problems = []
    if "services restarted" in output:
        problems.append(f"{name}: the orchestrator died during the run (see 'services restarted')")
    crashed = [i for i, r in results.items() if r["status"] == "crash"]
    if crashed:
        problems.append(f"{name}: cases that kill the orchestrator: {crashed}")
    passed = sum(r["status"] == "pass" for r in results.values())
    print(f"Part B {name}: {passed} of {len(results)} cases pass (recorded floor {floor}; "
          f"F* engine 203 of 211)")
    if passed < floor:
        failing = sorted(i for i, r in results.items() if r["status"] != "pass")
        problems.append(f"{name}: {passed} pass, fewer than the recorded {floor}; failing: "
                        f"{', '.join(failing)[:3000]}")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--realwf", required=True, help="the ../shared/realwf folder")
    ap.add_argument("--evaluator", required=True, help="the wf-evaluator binary")
    ap.add_argument("--orchestrator", required=True, help="the wf-orchestrator binary")
    ap.add_argument("--order", required=True, choices=sorted(ORDERS),
                    help="which implementation comes first")
    ap.add_argument("--floor", default=os.path.join(HERE, "part_b_floor.json"))
    args = ap.parse_args()
    if not os.path.exists(os.path.join(args.realwf, "run_b.py")):
        print(f"SKIPPED: no {args.realwf}/run_b.py: the realwf sample is not beside this clone")
        return 77
    name = ORDERS[args.order]
    with open(args.floor, encoding="utf-8") as f:
        floor = json.load(f)["orders"][name]
    # Started here (not by run_b.py) so that the cases run once the sandboxes are ready.
    problems = []
    with ready_evaluator(args.evaluator) as base:
        if base is None:
            return 1
        with tempfile.TemporaryDirectory() as tmp:
            problems += check_order(args, name, floor, base + "/wikifunctions.org/v1/evaluate/",
                                    tmp)
    for p in problems:
        print("FAIL", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
