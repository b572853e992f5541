"""Shared pieces of the end-to-end benchmarks: start a service, run wrk, parse its figures."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
import wfharness  # noqa: E402

WRK = shutil.which("wrk") or "/usr/bin/wrk"


def start(name, args):
    return wfharness.Service(name, list(args) + ["--access-log", "false"])


def _to_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url, connections, seconds, body=None, threads=None):
    """Runs wrk and returns {rps, p50_ms, p99_ms, requests, errors}."""
    threads = threads or min(connections, 2)
    cmd = [WRK, "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency", url]
    script = None
    if body is not None:
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        script.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                     f"wrk.body = {json.dumps(body)}\n")
        script.close()
        cmd[1:1] = ["-s", script.name]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if script:
        os.unlink(script.name)
    res = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        res[key] = _to_ms(m.group(1), m.group(2))
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["errors"] = int(m.group(1)) if m else 0
    return res


def cpu_seconds(pid):
    """user+system CPU seconds of a process (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def measure(service, url, connections, seconds, body=None):
    """wrk figures plus the service's CPU ms per request over the run."""
    c0 = cpu_seconds(service.proc.pid)
    res = run_wrk(url, connections, seconds, body)
    c1 = cpu_seconds(service.proc.pid)
    res["cpu_ms_per_req"] = (c1 - c0) * 1000.0 / max(1, res["requests"])
    return res


def row(label, r, ceiling=None):
    ratio = f"{100.0 * r['rps'] / ceiling:6.1f}%" if ceiling else "      -"
    return (f"{label:<34} {r['rps']:>10.0f} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} "
            f"{r.get('cpu_ms_per_req', 0):>8.3f} {ratio} {r['errors']:>6}")


HEADER = f"{'scenario':<34} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms':>8} {'ceil %':>7} {'non2xx':>6}"


def settle():
    time.sleep(0.5)


# ---- additions for orchestrator_e2e / evaluator_e2e (compatible: nothing above changed) --------


def cpu_seconds_tree(pid):
    """CPU seconds of a process and of all its live descendants, each with its reaped children
    (cutime/cstime): a sandbox service, its zygotes and their warm children together."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in [pid] + descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(fields[i]) for i in (11, 12, 13, 14)) / tick
    return total


def children(pid):
    """Direct children of a process, from /proc/<pid>/task/*/children."""
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def descendants(pid):
    """Every live descendant of a process (depth first)."""
    out = []
    for c in children(pid):
        out.append(c)
        out += descendants(c)
    return out


def pss_mb(pid):
    """Proportional set size (shared pages split between the processes mapping them)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def median_result(results):
    """Element-wise median of several run_wrk/measure dicts."""
    import statistics
    out = {}
    for key in results[0]:
        values = [r[key] for r in results]
        out[key] = statistics.median(values) if isinstance(values[0], (int, float)) else values[0]
    return out


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def fcall(zid, **args):
    """A canonical Z7 of `zid` with its arguments named by local key: fcall("Z810", K1=..)."""
    return {"Z1K1": "Z7", "Z7K1": zid, **{zid + k: v for k, v in args.items()}}


# Issue 9's 14-call nest of built-ins (Z802/Z866/Z844/Z868/Z886/Z810/Z811/Z812/Z813, five deep),
# returning "World": the zobject of bench/orchestrator_e2e's and bench/orchestrator_cpu's "nest".
NEST_ZOBJECT = fcall(
    "Z802",
    K1=fcall("Z844",
             K1=fcall("Z813", K1=fcall("Z812", K1=fcall("Z810", K1="x", K2=["Z6"]))),
             K2=fcall("Z866",
                      K1=fcall("Z886", K1=fcall("Z868", K1="Hello")),
                      K2=fcall("Z811", K1=fcall("Z810", K1="Hello", K2=["Z6"])))),
    K2=fcall("Z886", K1=fcall("Z868", K1=fcall("Z811", K1=fcall("Z810", K1="World", K2=["Z6"])))),
    K3="else")
