"""The alert and recording rules against a REAL Prometheus scraping the REAL services.

Starts wf-evaluator and wf-orchestrator (tests/integration/wfharness.py, free loopback ports), then
/usr/bin/prometheus on a free loopback port with a temporary configuration that scrapes both every
second and loads deploy/prometheus/recording.yml and a copy of deploy/prometheus/alerts.yml in which
only the `for:` durations are shortened to 1s (every expression is byte for byte the real one). It
checks that both targets are up, that every rule evaluates without error, that the services' series
arrive (requests sent through the orchestrator to the evaluator's sandboxes), that a healthy system
raises no alert, and then stops the evaluator and waits for WfServiceDown and, after more code
calls, WfEvaluatorUnreachable. Everything is bounded in time; every process is stopped and the
temporary directory removed at the end. Skipped when /usr/bin/prometheus or the binaries are missing.

Run: cd tests/deploy && WF_BIN_DIR=<build>/bin python3 -m unittest -v test_prometheus_live
"""

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import wfharness as h  # noqa: E402

PROMETHEUS = os.environ.get("WF_PROMETHEUS", "/usr/bin/prometheus")
RULES_DIR = os.path.join(ROOT, "deploy", "prometheus")
OBJECTS = os.path.join(ROOT, "orchestrator", "objects")
EVALUATE = "/wikifunctions.org/v1/evaluate/"
TOTAL_BUDGET_S = 85.0  # the whole class, start-up to tear-down
FOR_LINE = re.compile(r"^(\s*)for:\s*\S+\s*$")


def shorten_for(text, duration="1s"):
    """The rule file with every `for:` duration replaced, nothing else touched."""
    return "\n".join(FOR_LINE.sub(lambda m: f"{m.group(1)}for: {duration}", line)
                     for line in text.split("\n"))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binaries_present():
    return all(os.access(os.path.join(h.BIN_DIR, b), os.X_OK) for b in ("wf-orchestrator", "wf-evaluator"))


@unittest.skipUnless(os.access(PROMETHEUS, os.X_OK), f"{PROMETHEUS} is not installed")
@unittest.skipUnless(binaries_present(), f"wf-orchestrator / wf-evaluator not built in {h.BIN_DIR}")
class PrometheusLive(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.deadline = time.monotonic() + TOTAL_BUDGET_S
        cls.tmp = tempfile.mkdtemp(prefix="wf-prom-live-")
        cls.evaluator = cls.orchestrator = cls.prom = None
        cls.prom_log = None
        try:
            cls._start()
        except BaseException:
            cls._stop_all()
            raise

    @classmethod
    def _start(cls):
        cls.evaluator = h.Service("wf-evaluator", ["--pool-size", "2"])
        if not h.wait_until(lambda: h.request("GET", cls.evaluator.base + "/readyz")[0] == 200, 20):
            raise RuntimeError("wf-evaluator never became ready")
        cls.orchestrator = h.Service("wf-orchestrator", [
            "--evaluator-url", cls.evaluator.base + EVALUATE, "--objects-dir", OBJECTS,
            "--wiki-api-url", ""])

        with open(os.path.join(RULES_DIR, "alerts.yml"), encoding="utf-8") as f:
            cls.alerts_text = f.read()
        with open(os.path.join(cls.tmp, "alerts.yml"), "w", encoding="utf-8") as f:
            f.write(shorten_for(cls.alerts_text))
        shutil.copy(os.path.join(RULES_DIR, "recording.yml"), os.path.join(cls.tmp, "recording.yml"))
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": ["recording.yml", "alerts.yml"],
            "scrape_configs": [
                {"job_name": "wf-orchestrator",
                 "static_configs": [{"targets": [f"127.0.0.1:{cls.orchestrator.port}"]}]},
                {"job_name": "wf-evaluator",
                 "static_configs": [{"targets": [f"127.0.0.1:{cls.evaluator.port}"]}]},
            ],
        }
        # JSON is YAML: no YAML library needed.
        config_path = os.path.join(cls.tmp, "prometheus.yml")
        with open(config_path, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)

        # A free port can be taken between our probe and Prometheus' bind: retry a few times.
        for _ in range(3):
            port = free_port()
            cls.prom_log = open(os.path.join(cls.tmp, "prometheus.log"), "w+", encoding="utf-8")
            cls.prom = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config_path}",
                 f"--storage.tsdb.path={os.path.join(cls.tmp, 'data')}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
                 "--storage.tsdb.retention.time=1h"],
                stdout=cls.prom_log, stderr=subprocess.STDOUT, cwd=cls.tmp)
            cls.prom_base = f"http://127.0.0.1:{port}"

            def ready():
                if cls.prom.poll() is not None:
                    return True
                try:
                    return h.request("GET", cls.prom_base + "/-/ready", timeout=2)[0] == 200
                except OSError:
                    return False

            h.wait_until(ready, 20, 0.2)
            if cls.prom.poll() is None:
                break
            cls.prom_log.close()
            cls.prom = None
        if cls.prom is None or cls.prom.poll() is not None:
            raise RuntimeError("prometheus did not start: " + cls.log_tail())

    @classmethod
    def log_tail(cls):
        if cls.prom_log is None:
            return ""
        cls.prom_log.flush()
        with open(cls.prom_log.name, encoding="utf-8", errors="replace") as f:
            return f.read()[-3000:]

    @classmethod
    def _stop_all(cls):
        if cls.prom is not None and cls.prom.poll() is None:
            cls.prom.send_signal(signal.SIGTERM)
            try:
                cls.prom.wait(10)
            except subprocess.TimeoutExpired:
                cls.prom.kill()
                cls.prom.wait()
        if cls.prom_log is not None:
            cls.prom_log.close()
        for svc in (cls.orchestrator, cls.evaluator):
            if svc is not None:
                svc.stop(grace=5)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def tearDownClass(cls):
        cls._stop_all()

    # ---- helpers ------------------------------------------------------------------------------

    def remaining(self, cap):
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.fail("the live test ran out of its time budget")
        return min(cap, left)

    def api(self, path, **params):
        url = self.prom_base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        status, _, body = h.request("GET", url, timeout=5)
        self.assertEqual(status, 200, body[:500])
        doc = json.loads(body)
        self.assertEqual(doc["status"], "success", doc)
        return doc["data"]

    def query(self, expr):
        data = self.api("/api/v1/query", query=expr)
        self.assertEqual(data["resultType"], "vector", data)
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def wait_for(self, what, predicate, cap=20.0):
        if not h.wait_until(predicate, self.remaining(cap), 0.25):
            self.fail(f"timed out waiting for {what}\nprometheus log:\n{self.log_tail()}")

    def call(self, zobject):
        return h.evaluate(self.orchestrator, zobject, timeout=self.remaining(20))

    def alerts(self):
        return self.api("/api/v1/alerts")["alerts"]

    # ---- the test -----------------------------------------------------------------------------
    # One method: the steps depend on each other (the evaluator is stopped at the end).

    def test_rules_against_live_services(self):
        # 1. both targets are scraped and up
        def targets_up():
            active = self.api("/api/v1/targets")["activeTargets"]
            return len(active) == 2 and all(t["health"] == "up" for t in active)

        self.wait_for("both targets up", targets_up)
        up = {m["job"]: v for m, v in self.query("up")}
        self.assertEqual(up, {"wf-orchestrator": 1.0, "wf-evaluator": 1.0})

        # 2. traffic: code calls through the orchestrator into both sandboxes
        for zobject, expected in (
                ({"Z1K1": "Z7", "Z7K1": "Z10002", "Z10002K1": "hello"}, "HELLO"),
                ({"Z1K1": "Z7", "Z7K1": "Z10002", "Z10002K1": "abc"}, "ABC"),
                ({"Z1K1": "Z7", "Z7K1": "Z10003", "Z10003K1": "hello"}, "5")):
            status, _, z22 = self.call(zobject)
            self.assertEqual(status, 200, z22)
            self.assertEqual(z22["Z22K1"], expected, z22)

        # 3. their series reach Prometheus with the labels the rules and the dashboard select on
        def total(expr):
            return sum(v for _, v in self.query(expr))

        self.wait_for("evaluate requests in wf_http_requests_total", lambda: total(
            'wf_http_requests_total{job="wf-orchestrator", route="evaluate", method="POST", status="200"}') >= 3)
        self.wait_for("the evaluator's evaluate requests", lambda: total(
            'wf_http_requests_total{job="wf-evaluator", route="evaluate", method="POST", status="200"}') >= 3)
        self.wait_for("ok python evaluator calls", lambda: total(
            'wf_evaluator_calls_total{job="wf-orchestrator", language="python", outcome="ok"}') >= 2)
        self.wait_for("ok sandbox calls", lambda: total(
            'wf_evaluator_sandbox_calls_total{job="wf-evaluator", outcome="ok"}') >= 3)
        histogram = self.query(
            'wf_http_request_duration_seconds_bucket{job="wf-orchestrator", route="evaluate", le="2.5"}')
        self.assertTrue(histogram, "the le=\"2.5\" bucket the latency SLO relies on does not exist")
        builds = {m["service"] for m, _ in self.query("wf_build_info")}
        self.assertEqual(builds, {"wf-orchestrator", "wf-evaluator"})
        for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"):
            self.assertEqual({m["job"] for m, _ in self.query(name)}, {"wf-orchestrator", "wf-evaluator"}, name)

        # 4. the recording rules produce the SLO ratios from the real histogram. Its series exist
        #    from the start at 0, so the ratio of rates is recorded as NaN (0/0) from the second
        #    scrape on, and stays NaN until the rules are evaluated after a scrape that saw the
        #    counters grow (step 3 waited for that scrape, not for the next rule evaluation): wait
        #    until both services' ratios are numbers.
        def ratios():
            return dict((m["job"], v) for m, v in self.query("job:wf_evaluate_slow_requests:ratio_rate5m"))

        self.wait_for("the 5m slow-request ratio of both services, a number", lambda: (
            set(ratios()) == {"wf-orchestrator", "wf-evaluator"}
            and not any(math.isnan(v) for v in ratios().values())))
        for job, ratio in ratios().items():
            self.assertGreaterEqual(ratio, 0.0, job)
            self.assertLessEqual(ratio, 1.0, job)

        # 5. every rule of both files is loaded and evaluates without error
        expected_alerts = set(re.findall(r"^\s*- alert: (\w+)", self.alerts_text, re.M))
        with open(os.path.join(RULES_DIR, "recording.yml"), encoding="utf-8") as f:
            expected_records = set(re.findall(r"^\s*- record: (\S+)", f.read(), re.M))
        self.assertGreater(len(expected_alerts), 10)

        def all_rules():
            return [r for g in self.api("/api/v1/rules")["groups"] for r in g["rules"]]

        self.wait_for("every rule evaluated once", lambda: all(
            r.get("health") != "unknown" and not r.get("lastEvaluation", "").startswith("0001")
            for r in all_rules()))
        rules = all_rules()
        self.assertEqual({r["name"] for r in rules if r["type"] == "alerting"}, expected_alerts)
        self.assertEqual({r["name"] for r in rules if r["type"] == "recording"}, expected_records)
        bad = [(r["name"], r.get("health"), r.get("lastError")) for r in rules if r.get("health") != "ok"]
        self.assertEqual(bad, [], "rules that do not evaluate cleanly")
        shortened = [r for r in rules if r["type"] == "alerting" and r.get("duration", 0) not in (0, 1)]
        self.assertEqual(shortened, [], "the test copy should have for: 1s everywhere")

        # 6. every dashboard query runs against the real series (self.query asserts success);
        #    the core panels get data once two scrapes have seen the counters
        import test_dashboard  # noqa: E402 (same folder)
        dashboard = test_dashboard.queries(test_dashboard.load_dashboard())
        for _, expr in dashboard:
            self.query(test_dashboard.substitute(expr))
        core = ("Request rate by route and status", "Latency p99 by route", "Requests in flight",
                "Function calls by outcome", "Evaluator calls by language and outcome",
                "Sandbox calls by language and outcome", "CPU", "Resident memory", "File descriptors",
                "Running builds")
        for title in core:
            exprs = [test_dashboard.substitute(e) for t, e in dashboard if t == title]
            self.assertTrue(exprs, f"no dashboard panel {title!r}")
            self.wait_for(f"data in dashboard panel {title!r}",
                          lambda: any(self.query(e) for e in exprs), cap=10)

        # 7. a healthy system raises nothing
        self.assertEqual([(a["labels"]["alertname"], a["state"]) for a in self.alerts()], [],
                         "alerts while both services are healthy")

        # 8. the evaluator goes away: WfServiceDown fires for it
        self.evaluator.stop(grace=5)

        def alert_state(name, **labels):
            for a in self.alerts():
                if a["labels"].get("alertname") == name and all(a["labels"].get(k) == v for k, v in labels.items()):
                    return a["state"]
            return None

        self.wait_for("WfServiceDown for wf-evaluator", lambda: alert_state(
            "WfServiceDown", job="wf-evaluator") == "firing")
        down = [a for a in self.alerts() if a["labels"]["alertname"] == "WfServiceDown"]
        self.assertEqual(len(down), 1, down)
        self.assertEqual(down[0]["labels"]["severity"], "critical")
        self.assertTrue(down[0]["annotations"]["runbook_url"].endswith("docs/alerts.md#wfservicedown"))
        self.assertIn(f"127.0.0.1:{self.evaluator.port}", down[0]["annotations"]["summary"])

        # 9. code calls now fail on transport: WfEvaluatorUnreachable follows
        def unreachable_after_a_call():
            status, _, _ = self.call({"Z1K1": "Z7", "Z7K1": "Z10002", "Z10002K1": "x"})
            self.assertEqual(status, 200)  # the failure is a Z5 inside the envelope
            return alert_state("WfEvaluatorUnreachable", job="wf-orchestrator") in ("pending", "firing")

        self.wait_for("WfEvaluatorUnreachable for the orchestrator", unreachable_after_a_call, cap=30)
        self.assertGreater(sum(v for _, v in self.query(
            'wf_evaluator_calls_total{job="wf-orchestrator", outcome=~"transport|timeout"}')), 0)


class ShortenFor(unittest.TestCase):
    """The rewrite used above changes `for:` lines and nothing else."""

    def test_only_for_lines_change(self):
        with open(os.path.join(RULES_DIR, "alerts.yml"), encoding="utf-8") as f:
            text = f.read()
        out = shorten_for(text)
        before, after = text.split("\n"), out.split("\n")
        self.assertEqual(len(before), len(after))
        changed = [(a, b) for a, b in zip(before, after) if a != b]
        self.assertTrue(changed)
        for a, b in changed:
            self.assertRegex(a, r"^\s*for: \S+$")
            self.assertRegex(b, r"^\s*for: 1s$")
        self.assertEqual(len(changed) + sum(1 for b in before if b.strip() == "for: 1s"),
                         sum(1 for b in before if b.strip().startswith("for:")))


if __name__ == "__main__":
    unittest.main()
