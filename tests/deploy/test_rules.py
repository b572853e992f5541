"""Static checks of deploy/prometheus: promtool check/test, structure, coverage, runbooks, metrics.

- `promtool check rules` and `promtool check config` accept the files;
- `promtool test rules deploy/prometheus/tests/alerts_test.yml` passes, and its cases of
  WfHighErrorRatio fail when that alert's threshold in alerts.yml is changed (so the unit tests
  really pin the rules; the full file runs once, the changed rules only with the cases of the
  changed alert);
- every alert has a severity label (critical|warning), summary, description and a runbook_url
  pointing to an existing section of docs/alerts.md (and docs/alerts.md documents no other alert);
- every alert is made to fire, and asserted not to fire, by the promtool unit tests;
- every metric the rules select is exposed by the services (docs/metrics.md or the sources), and
  every recording rule the alerts use is defined.

Skipped when promtool or PyYAML is missing.
Run: cd tests/deploy && python3 -m unittest -v test_rules
"""

import os
import re
import resource
import shutil
import subprocess
import tempfile
import unittest

import metric_names

try:
    import yaml
except ImportError:  # python3-yaml is a Debian package; without it the structural checks skip
    yaml = None

ROOT = metric_names.ROOT
PROM_DIR = os.path.join(ROOT, "deploy", "prometheus")
ALERTS = os.path.join(PROM_DIR, "alerts.yml")
RECORDING = os.path.join(PROM_DIR, "recording.yml")
UNIT_TESTS = os.path.join(PROM_DIR, "tests", "alerts_test.yml")
CONFIG = os.path.join(PROM_DIR, "prometheus.yml")
RUNBOOK = os.path.join(ROOT, "docs", "alerts.md")
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
HAVE_PROMTOOL = os.access(PROMTOOL, os.X_OK)
SEVERITIES = {"critical", "warning"}


def cpu_guard():
    """In the child: a promtool that spins is stopped by its CPU time (SIGXCPU, then SIGKILL)."""
    resource.setrlimit(resource.RLIMIT_CPU, (120, 121))


def promtool(*args, cwd=None):
    # `promtool test rules` is CPU work: about 7 s of CPU, 38 s of wall time at load ~16, and over
    # 120 s (the bound until session 16) under ctest -j4 beside busy loops. It is guarded on its
    # CPU time (120 s); the wall-clock bound only catches one that blocks, and stays below the
    # suite's ctest TIMEOUT (600 s) so that the failure names the command.
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=500, cwd=cwd,
                          preexec_fn=cpu_guard)


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def rules_of(path, kind):
    return [r for g in load(path)["groups"] for r in g["rules"] if kind in r]


def github_anchor(heading):
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    a = heading.strip().lower()
    a = re.sub(r"[^\w\- ]", "", a)
    return a.replace(" ", "-")


def runbook_anchors():
    with open(RUNBOOK, encoding="utf-8") as f:
        return {github_anchor(m.group(1)): m.group(1).strip()
                for m in re.finditer(r"^##\s+(.+)$", f.read(), re.M)}


@unittest.skipUnless(HAVE_PROMTOOL, "promtool is not installed")
class Promtool(unittest.TestCase):
    def test_check_rules(self):
        r = promtool("check", "rules", RECORDING, ALERTS)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_check_config(self):
        r = promtool("check", "config", CONFIG)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_unit_tests_pass(self):
        r = promtool("test", "rules", UNIT_TESTS)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("SUCCESS", r.stdout + r.stderr)

    def test_unit_tests_catch_a_changed_threshold(self):
        with open(ALERTS, encoding="utf-8") as f:
            text = f.read()
        needle = "          ) > 0.05\n"  # WfHighErrorRatio's 5% threshold
        self.assertEqual(text.count(needle), 1)
        tmp = tempfile.mkdtemp(prefix="wf-rules-")
        try:
            os.mkdir(os.path.join(tmp, "tests"))
            shutil.copy(RECORDING, tmp)
            if yaml is None:  # the whole file (the second full run the cases below spare)
                shutil.copy(UNIT_TESTS, os.path.join(tmp, "tests"))
            else:
                # Only the cases of the changed alert: test_unit_tests_pass runs every case on the
                # real rules once, and these are the ones the change must fail.
                tests = load(UNIT_TESTS)
                cases = [c for c in tests["tests"]
                         if any(t.get("alertname") == "WfHighErrorRatio" for t in c.get("alert_rule_test", []))]
                self.assertGreaterEqual(len(cases), 2)
                tests["tests"] = cases
                with open(os.path.join(tmp, "tests", "alerts_test.yml"), "w", encoding="utf-8") as f:
                    yaml.safe_dump(tests, f, sort_keys=False)
                # They pass on the real rules: what fails below is the changed threshold.
                shutil.copy(ALERTS, tmp)
                same = promtool("test", "rules", os.path.join(tmp, "tests", "alerts_test.yml"))
                self.assertEqual(same.returncode, 0, same.stdout + same.stderr)
            with open(os.path.join(tmp, "alerts.yml"), "w", encoding="utf-8") as f:
                f.write(text.replace(needle, "          ) > 0.5\n"))
            r = promtool("test", "rules", os.path.join(tmp, "tests", "alerts_test.yml"))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("WfHighErrorRatio", r.stdout + r.stderr)


@unittest.skipUnless(yaml is not None, "PyYAML (python3-yaml) is not installed")
class Structure(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.alerts = rules_of(ALERTS, "alert")
        cls.records = rules_of(RECORDING, "record")

    def test_alert_names_are_unique(self):
        names = [a["alert"] for a in self.alerts]
        self.assertEqual(len(names), len(set(names)), names)
        self.assertGreaterEqual(len(names), 15)

    def test_every_alert_has_severity_and_annotations(self):
        for a in self.alerts:
            with self.subTest(alert=a["alert"]):
                self.assertIn(a.get("labels", {}).get("severity"), SEVERITIES)
                ann = a.get("annotations", {})
                for key in ("summary", "description", "runbook_url"):
                    self.assertTrue(str(ann.get(key, "")).strip(), f"missing annotation {key}")

    def test_runbook_urls_point_to_sections_of_docs_alerts_md(self):
        anchors = runbook_anchors()
        prefixes = set()
        for a in self.alerts:
            with self.subTest(alert=a["alert"]):
                url = a["annotations"]["runbook_url"]
                prefix, _, anchor = url.partition("#")
                self.assertTrue(prefix.endswith("docs/alerts.md"), url)
                self.assertEqual(anchor, a["alert"].lower())
                self.assertIn(anchor, anchors, f"docs/alerts.md has no section '## {a['alert']}'")
                prefixes.add(prefix)
        self.assertEqual(len(prefixes), 1, f"all runbook URLs should share one prefix: {prefixes}")

    def test_docs_alerts_md_documents_only_existing_alerts(self):
        names = {a["alert"] for a in self.alerts}
        headings = set(runbook_anchors().values())
        documented = {h for h in headings if re.fullmatch(r"Wf\w+", h)}
        self.assertEqual(documented, names)
        with open(RUNBOOK, encoding="utf-8") as f:
            text = f.read()
        for name in names:
            section = text.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
            with self.subTest(alert=name):
                for part in ("Meaning", "Likely causes", "Check first", "Mitigate"):
                    self.assertIn(f"**{part}**", section)

    def test_rules_use_only_exposed_metrics_and_defined_recordings(self):
        known = metric_names.known_metrics()
        recorded = {r["record"] for r in self.records}
        for rule in self.alerts + self.records:
            name = rule.get("alert") or rule.get("record")
            for metric in metric_names.expr_metric_names(rule["expr"]):
                with self.subTest(rule=name, metric=metric):
                    if ":" in metric:
                        self.assertIn(metric, recorded, "recording rule not defined in recording.yml")
                    else:
                        self.assertTrue(metric_names.is_known(metric, known),
                                        "not in docs/metrics.md nor registered in the sources")

    def test_every_alert_fires_and_stays_quiet_in_the_unit_tests(self):
        fired, quiet = set(), set()
        for case in load(UNIT_TESTS)["tests"]:
            for t in case.get("alert_rule_test", []):
                (fired if t.get("exp_alerts") else quiet).add(t["alertname"])
        names = {a["alert"] for a in self.alerts}
        self.assertEqual(names - fired, set(), "alerts never made to fire")
        self.assertEqual(names - quiet, set(), "alerts never asserted not to fire")
        self.assertEqual((fired | quiet) - names, set(), "tests of alerts that do not exist")

    def test_unit_tests_load_both_rule_files(self):
        files = {os.path.normpath(os.path.join(os.path.dirname(UNIT_TESTS), f))
                 for f in load(UNIT_TESTS)["rule_files"]}
        self.assertEqual(files, {ALERTS, RECORDING})

    def test_scrape_config_job_names_match_the_rules(self):
        cfg = load(CONFIG)
        jobs = {j["job_name"] for j in cfg["scrape_configs"]}
        self.assertEqual(jobs, {"wf-orchestrator", "wf-evaluator"})
        self.assertEqual(set(cfg["rule_files"]), {"alerts.yml", "recording.yml"})


if __name__ == "__main__":
    unittest.main()
