"""Checks of the Grafana dashboard deploy/grafana/wikifunctions.json.

- it is valid JSON with the shape Grafana imports (title, uid, panels with unique ids, grid
  positions inside the 24-column grid, a Prometheus datasource variable);
- every metric name its queries use is exposed by the services (docs/metrics.md or registered in
  the sources) and every recording rule it uses is defined in deploy/prometheus/recording.yml, so
  the dashboard cannot silently drift from the code;
- it covers the signals the SRE asked for (traffic, errors, latency, saturation, evaluator calls,
  sandbox outcomes, process resources, wiki fetches);
- every query is valid PromQL once Grafana's variables are substituted (checked with
  `promtool check rules` on a generated rule file; skipped without promtool).

Run: cd tests/deploy && python3 -m unittest -v test_dashboard
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import metric_names

ROOT = metric_names.ROOT
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "wikifunctions.json")
RECORDING = os.path.join(ROOT, "deploy", "prometheus", "recording.yml")
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

# Grafana variables -> values that make the expression plain PromQL.
VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "$job": ".*", "$instance": ".*"}

# Signals the dashboard must show (metric names as used in queries).
REQUIRED = {
    "request rate / errors": "wf_http_requests_total",
    "latency per route": "wf_http_request_duration_seconds_bucket",
    "in-flight": "wf_http_requests_in_flight",
    "load shedding": "wf_http_rejected_total",
    "connections": "wf_http_connections_open",
    "evaluator calls by outcome and language": "wf_evaluator_calls_total",
    "sandbox outcomes": "wf_evaluator_sandbox_calls_total",
    "sandbox kills": "wf_evaluator_sandbox_kills_total",
    "process CPU": "process_cpu_seconds_total",
    "process RSS": "process_resident_memory_bytes",
    "process fds": "process_open_fds",
    "wiki fetch outcomes": "wf_wiki_fetch_requests_total",
    "per-user limit refusals": "wf_limits_refusals_total",
    "callers limited": "wf_limits_users_limited",
    "fair queue": "wf_limits_queued",
}


def load_dashboard():
    with open(DASHBOARD, encoding="utf-8") as f:
        return json.load(f)


def all_panels(dash):
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])  # collapsed rows keep their panels inside


def queries(dash):
    """(panel title, expr) of every query, including templating variable queries."""
    out = []
    for p in all_panels(dash):
        for t in p.get("targets", []):
            if t.get("expr"):
                out.append((p.get("title", "?"), t["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        text = q.get("query") if isinstance(q, dict) else q
        if v.get("type") == "query" and text:
            m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", text)
            out.append((f"variable {v['name']}", m.group(1) if m else text))
    return out


def substitute(expr):
    for k in sorted(VARIABLES, key=len, reverse=True):
        expr = expr.replace(k, VARIABLES[k])
    return expr


def recording_names():
    with open(RECORDING, encoding="utf-8") as f:
        return set(re.findall(r"^\s*- record:\s*(\S+)", f.read(), re.M))


class Dashboard(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dash = load_dashboard()

    def test_shape(self):
        d = self.dash
        for key in ("title", "uid", "panels", "schemaVersion", "templating"):
            self.assertIn(key, d)
        ids = [p["id"] for p in all_panels(d)]
        self.assertEqual(len(ids), len(set(ids)), "panel ids must be unique")
        for p in all_panels(d):
            with self.subTest(panel=p.get("title")):
                self.assertTrue(p.get("title"))
                g = p["gridPos"]
                self.assertGreaterEqual(g["x"], 0)
                self.assertLessEqual(g["x"] + g["w"], 24)
                if p["type"] != "row":
                    self.assertTrue(p.get("targets"), "a panel without queries")
                    self.assertEqual(p["datasource"]["uid"], "${datasource}")
        variables = {v["name"]: v for v in d["templating"]["list"]}
        self.assertEqual(variables["datasource"]["type"], "datasource")
        self.assertEqual(variables["datasource"]["query"], "prometheus")
        for name in ("job", "instance"):
            self.assertIn(name, variables)

    def test_every_metric_exists(self):
        known = metric_names.known_metrics()
        recorded = recording_names()
        seen = set()
        for title, expr in queries(self.dash):
            names = metric_names.expr_metric_names(substitute(expr))
            self.assertTrue(names, f"{title}: no metric found in {expr!r}")
            for name in names:
                seen.add(name)
                with self.subTest(panel=title, metric=name):
                    if ":" in name:
                        self.assertIn(name, recorded, "recording rule not defined in recording.yml")
                    else:
                        self.assertTrue(metric_names.is_known(name, known),
                                        "not in docs/metrics.md nor registered in the sources")
        self.assertGreaterEqual(len(seen), 15)

    def test_required_signals_are_shown(self):
        used = set()
        for _, expr in queries(self.dash):
            used |= metric_names.expr_metric_names(substitute(expr))
        for what, metric in REQUIRED.items():
            with self.subTest(signal=what):
                self.assertIn(metric, used)

    def test_detector_rejects_an_unknown_metric(self):
        # The check above must be able to fail: a made-up name is not known.
        known = metric_names.known_metrics()
        names = metric_names.expr_metric_names(substitute(
            'sum by (job) (rate(wf_made_up_total{job=~"$job"}[$__rate_interval]))'))
        self.assertEqual(names, {"wf_made_up_total"})
        self.assertFalse(metric_names.is_known("wf_made_up_total", known))

    @unittest.skipUnless(os.access(PROMTOOL, os.X_OK), "promtool is not installed")
    def test_queries_are_valid_promql(self):
        lines = ["groups:", "  - name: dashboard-queries", "    rules:"]
        for i, (_, expr) in enumerate(queries(self.dash)):
            lines.append(f"      - record: dashboard:query_{i}:check")
            lines.append(f"        expr: {json.dumps(substitute(expr))}")
        tmp = tempfile.mkdtemp(prefix="wf-dash-")
        try:
            path = os.path.join(tmp, "queries.yml")
            with open(path, "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
            r = subprocess.run([PROMTOOL, "check", "rules", path], capture_output=True, text=True, timeout=60)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
