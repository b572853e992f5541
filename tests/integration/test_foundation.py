"""Foundation behaviour of both real binaries over HTTP: health, errors, ids, metrics, logs, drain."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import wfharness as h  # noqa: E402

PROMTOOL = "/usr/bin/promtool"
ECS_FIELDS = ("@timestamp", "log.level", "message", "ecs.version", "service.name", "service.version")


def raw_exchange(port, data, timeout=5.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


class BothServices(unittest.TestCase):
    """Checks that hold for wf-orchestrator and wf-evaluator alike."""

    @classmethod
    def setUpClass(cls):
        cls.services = [h.Service("wf-orchestrator", ["--max-body-bytes", "4096"]),
                        h.Service("wf-evaluator", ["--max-body-bytes", "4096", "--pool-size", "1"])]

    @classmethod
    def tearDownClass(cls):
        for s in cls.services:
            s.stop()

    def test_health_ready_info_openapi(self):
        for s in self.services:
            with self.subTest(service=s.name):
                status, _, body = h.request("GET", s.base + "/healthz")
                self.assertEqual(status, 200)
                self.assertEqual(json.loads(body), {"status": "ok"})
                self.assertTrue(h.wait_until(lambda: h.request("GET", s.base + "/readyz")[0] == 200))
                status, _, body = h.request("GET", s.base + "/_info")
                info = json.loads(body)
                self.assertEqual(info["name"], s.name)
                self.assertTrue(info["version"])
                self.assertTrue(info["commit"])
                status, _, body = h.request("GET", s.base + "/openapi.json")
                doc = json.loads(body)
                self.assertTrue(doc["openapi"].startswith("3."))
                self.assertIn("/{domain}/v1/evaluate/", doc["paths"])
                self.assertIn("/metrics", doc["paths"])

    def assert_json_error(self, status, body, expected_status):
        self.assertEqual(status, expected_status)
        j = json.loads(body)
        self.assertEqual(j["status"], expected_status)
        self.assertTrue(j["type"])
        self.assertTrue(j["detail"])

    def test_json_error_bodies(self):
        for s in self.services:
            with self.subTest(service=s.name):
                status, _, body = h.request("GET", s.base + "/no/such/route")
                self.assert_json_error(status, body, 404)
                status, headers, body = h.request("DELETE", s.base + "/healthz")
                self.assert_json_error(status, body, 405)
                self.assertIn("GET", headers.get("allow", ""))
                status, _, body = h.request("POST", s.base + "/wikifunctions.org/v1/evaluate/", "x" * 5000,
                                            {"Content-Type": "application/json"})
                self.assert_json_error(status, body, 413)
                out = raw_exchange(s.port, b"GARBAGE\r\n\r\n")
                self.assertTrue(out.startswith(b"HTTP/1.1 400"), out)
                self.assert_json_error(400, out.split(b"\r\n\r\n", 1)[1], 400)
                out = raw_exchange(s.port, b"POST /wikifunctions.org/v1/evaluate/ HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertTrue(out.startswith(b"HTTP/1.1 411"), out)

    def test_request_id_echo_and_generation(self):
        for s in self.services:
            with self.subTest(service=s.name):
                _, headers, _ = h.request("GET", s.base + "/healthz", headers={"X-Request-Id": "abc-123"})
                self.assertEqual(headers.get("x-request-id"), "abc-123")
                _, headers, _ = h.request("GET", s.base + "/healthz")
                self.assertEqual(len(headers.get("x-request-id", "")), 32)
                tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                _, headers, _ = h.request("GET", s.base + "/healthz", headers={"traceparent": tp})
                self.assertTrue(headers["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-"))

    def test_metrics_pass_promtool(self):
        for s in self.services:
            with self.subTest(service=s.name):
                h.request("GET", s.base + "/healthz")
                h.request("GET", s.base + "/nope")
                status, headers, body = h.request("GET", s.base + "/metrics")
                self.assertEqual(status, 200)
                self.assertTrue(headers["content-type"].startswith("text/plain"))
                text = body.decode()
                for needle in ('wf_http_requests_total{method="GET",route="healthz",status="200"}',
                               'wf_http_requests_total{method="GET",route="unmatched",status="404"}',
                               "wf_http_request_duration_seconds_bucket", "wf_http_requests_in_flight",
                               "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
                               "process_start_time_seconds", "process_threads", "wf_build_info{"):
                    self.assertIn(needle, text)
                if os.path.exists(PROMTOOL):
                    r = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True)
                    self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())

    def test_every_metric_is_documented(self):
        docs = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "metrics.md")).read()
        # Exercise each service once so that lazily created series exist.
        orchestrator, evaluator = self.services
        h.evaluate(orchestrator, {"Z1K1": "Z7", "Z7K1": "Z801", "Z801K1": "x"})
        h.post_json(evaluator.base + "/wikifunctions.org/v1/evaluate/",
                    {"codingLanguage": "python-3", "codeString": "def Z1(Z1K1):\n    return Z1K1",
                     "functionName": "Z1", "functionArguments": {"Z1K1": {"Z1K1": "Z6", "Z6K1": "x"}}})
        for s in self.services:
            with self.subTest(service=s.name):
                text = h.request("GET", s.base + "/metrics")[2].decode()
                names = [l.split()[2] for l in text.splitlines() if l.startswith("# TYPE ")]
                self.assertTrue(names)
                missing = [n for n in names if f"`{n}`" not in docs]
                self.assertEqual(missing, [], "metrics missing from docs/metrics.md")

    def test_every_log_line_is_ecs_json(self):
        for s in self.services:
            with self.subTest(service=s.name):
                h.request("GET", s.base + "/healthz", headers={
                    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
                h.request("GET", s.base + "/missing\"quote")
                self.assertTrue(h.wait_until(lambda: any("url.path" in l for l in s.lines)))
                records = s.log_records()  # raises if any line is not JSON
                self.assertGreaterEqual(len(records), 2)
                for r in records:
                    for f in ECS_FIELDS:
                        self.assertIn(f, r, r)
                    self.assertEqual(r["ecs.version"], "1.11.0")
                    self.assertEqual(r["service.name"], s.name)
                access = [r for r in records if r.get("url.path") == "/healthz"]
                self.assertTrue(access)
                a = access[-1]
                self.assertEqual(a["http.request.method"], "GET")
                self.assertEqual(a["http.response.status_code"], 200)
                self.assertIsInstance(a["event.duration"], int)
                self.assertEqual(a["trace.id"], "4bf92f3577b34da6a3ce929d0e0e4736")
                self.assertEqual(len(a["span.id"]), 16)

    def test_log_level_changes_at_run_time(self):
        for s in self.services:
            with self.subTest(service=s.name):
                json_type = {"Content-Type": "application/json"}
                # Only on the admin listener: the main port does not know the route.
                status, _, _ = h.request("GET", s.base + "/_admin/log-level")
                self.assertEqual(status, 404)
                status, _, _ = h.request("PUT", s.base + "/_admin/log-level", '{"level":"warn"}', json_type)
                self.assertEqual(status, 404)
                status, _, body = h.request("GET", s.admin + "/_admin/log-level")
                self.assertEqual(json.loads(body)["level"], "info")
                # The lines of earlier requests (other tests' /healthz among them) may still be on
                # their way from the service's output to s.lines on a loaded machine: wait for the
                # access line of a request of this test's own, then count from there.
                sync = f"log-level-sync-{s.name}"
                h.request("GET", s.base + "/_info/version", headers={"X-Request-Id": sync})
                self.assertTrue(h.wait_until(lambda: any(sync in l for l in s.lines), 30))
                before = next(i for i, l in enumerate(s.lines) if sync in l) + 1
                status, _, body = h.request("PUT", s.admin + "/_admin/log-level", '{"level":"warn"}', json_type)
                self.assertEqual(status, 200)
                h.request("GET", s.base + "/healthz")  # an info access line: now suppressed
                status, _, body = h.request("PUT", s.admin + "/_admin/log-level", '{"level":"loud"}', json_type)
                self.assertEqual(status, 400)
                h.request("PUT", s.admin + "/_admin/log-level", '{"level":"info"}', json_type)
                # Lines are written before their responses: once "log level set to info" is there,
                # a /healthz access line would be before it.
                marker = '"message":"log level set to info"'
                self.assertTrue(h.wait_until(lambda: any(marker in l for l in s.lines[before:]), 30))
                lines = s.lines[before:]
                upto = next(i for i, l in enumerate(lines) if marker in l)
                self.assertFalse(any('"url.path":"/healthz"' in l for l in lines[:upto]))

    def test_no_cors_headers_unless_configured(self):
        for s in self.services:
            with self.subTest(service=s.name):
                for path in ("/healthz", "/metrics"):
                    _, headers, _ = h.request("GET", s.base + path)
                    self.assertNotIn("access-control-allow-origin", headers)


class CommandLine(unittest.TestCase):
    def run_bin(self, name, args, env=None):
        e = dict(os.environ)
        e.update(env or {})
        return subprocess.run([os.path.join(h.BIN_DIR, name)] + args, capture_output=True, text=True,
                              timeout=30, env=e)

    def test_help_lists_options_with_defaults(self):
        r = self.run_bin("wf-orchestrator", ["--help"])
        self.assertEqual(r.returncode, 0)
        for needle in ("--port", "default: 6254", "PORT", "--wiki-api-url", "WIKI_API_URL", "--evaluator-url",
                       "FUNCTION_EVALUATOR_URL", "--config FILE"):
            self.assertIn(needle, r.stdout)
        r = self.run_bin("wf-evaluator", ["--help"])
        self.assertEqual(r.returncode, 0)
        self.assertIn("default: 6927", r.stdout)

    def test_bad_configuration_fails_with_a_message_that_names_the_fix(self):
        r = self.run_bin("wf-orchestrator", ["--port", "99999"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("port", r.stderr)
        self.assertIn("0 to 65535", r.stderr)
        r = self.run_bin("wf-orchestrator", [], {"WIKI_API_URL": "ftp://x"})
        self.assertEqual(r.returncode, 2)
        self.assertIn("WIKI_API_URL", r.stderr)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write("prot: 1\n")
        r = self.run_bin("wf-evaluator", ["--config", f.name])
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown key 'prot'", r.stderr)

    def test_port_from_environment_and_config_file(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write("log_level: debug\naccess_log: true\n")
        s = h.Service("wf-orchestrator", ["--config", f.name])
        try:
            # The config file's log level is the service's: the admin surface reports it (a debug
            # line need not appear at start, so the log is not what is checked).
            status, _, _ = h.request("GET", s.base + "/healthz")
            self.assertEqual(status, 200)
            status, _, body = h.request("GET", s.admin + "/_admin/log-level")
            self.assertEqual(json.loads(body)["level"], "debug")
        finally:
            s.stop()


    def test_admin_token_and_cors_origin(self):
        with tempfile.NamedTemporaryFile("w", suffix=".token", delete=False) as f:
            f.write("0123456789abcdef0123456789abcdef\n")
        s = h.Service("wf-orchestrator", ["--admin-token-file", f.name, "--cors-origin", "https://example.org"])
        try:
            self.assertEqual(h.request("GET", s.admin + "/_admin/log-level")[0], 401)
            status, _, body = h.request("GET", s.admin + "/_admin/log-level",
                                        headers={"Authorization": "Bearer 0123456789abcdef0123456789abcdef"})
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(body)["level"], "info")
            status, headers, _ = h.evaluate(s, {"Z1K1": "Z7", "Z7K1": "Z801", "Z801K1": "hi"})
            self.assertEqual(status, 200)
            self.assertEqual(headers.get("access-control-allow-origin"), "https://example.org")
            _, headers, _ = h.request("GET", s.base + "/healthz")
            self.assertNotIn("access-control-allow-origin", headers)
        finally:
            s.stop()
            os.unlink(f.name)

    def test_admin_listener_off_loopback_needs_a_token(self):
        r = self.run_bin("wf-orchestrator", ["--port", "0", "--admin-address", "0.0.0.0"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("--admin-token-file", r.stderr)
        r = self.run_bin("wf-evaluator", ["--port", "0", "--admin-token-file", "/nonexistent/token"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("/nonexistent/token", r.stderr)

    def test_a_bad_caller_trusted_peers_entry_is_named(self):
        r = self.run_bin("wf-evaluator", ["--port", "0", "--caller-trusted-peers", "10.0.0.0/8,orchestra"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("caller_trusted_peers", r.stderr)
        self.assertIn("'orchestra' is not an address or CIDR", r.stderr)

    def test_documented_example_configs_load(self):
        docs = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "config")
        for name, binary in (("orchestrator.yaml", "wf-orchestrator"), ("evaluator.yaml", "wf-evaluator")):
            with self.subTest(config=name):
                # Flags win over the file: --port 0 (added by the harness) replaces the file's port.
                s = h.Service(binary, ["--config", os.path.join(docs, name), "--pool-size", "1"]
                              if binary == "wf-evaluator" else ["--config", os.path.join(docs, name)])
                try:
                    self.assertNotIn(s.port, (6254, 6927))
                    self.assertEqual(h.request("GET", s.base + "/healthz")[0], 200)
                finally:
                    self.assertEqual(s.stop(), 0)


class FailureEvents(unittest.TestCase):
    def test_a_failing_wiki_is_logged_with_the_request_trace(self):
        with h.FakeServer(lambda *a: (500, "text/plain", b"down")) as wiki:
            s = h.Service("wf-orchestrator", ["--wiki-api-url", wiki.base + "/w/api.php", "--cache-ttl-ms", "0"])
            try:
                tp = "00-11111111111111111111111111111111-2222222222222222-01"
                status, _, z22 = h.evaluate(s, {"Z1K1": "Z7", "Z7K1": "Z10099999"}, headers={"traceparent": tp})
                self.assertEqual(status, 200)
                self.assertTrue(h.wait_until(lambda: any("wiki fetch failed" in l for l in s.lines), 30))
                event = [r for r in s.log_records() if r["message"].startswith("wiki fetch failed")][0]
                self.assertEqual(event["log.level"], "warn")
                self.assertEqual(event["trace.id"], "11111111111111111111111111111111")
                self.assertIn("500", event["error.message"])
                self.assertEqual(event["event.outcome"], "failure")
            finally:
                s.stop()


class Drain(unittest.TestCase):
    def test_sigterm_lets_the_slow_request_finish_and_exits_zero(self):
        # A wiki that takes 1.5 s to answer keeps one evaluate request in flight.
        def slow_wiki(method, path, headers, body):
            time.sleep(1.5)
            return 200, "application/json", b"{}"

        with h.FakeServer(slow_wiki) as wiki:
            # The drain delay is the window in which /readyz must be seen to say 503 (after it the
            # listener closes and a poll is refused): 1.5 s was all a loaded machine had to handle
            # the signal and answer the first poll.
            s = h.Service("wf-orchestrator", ["--wiki-api-url", wiki.base + "/w/api.php", "--shutdown-delay-ms", "6000",
                                              "--cache-ttl-ms", "0"])
            result = {}

            def call():
                result["answer"] = h.evaluate(s, {"Z1K1": "Z7", "Z7K1": "Z10099999"})

            t = threading.Thread(target=call)
            t.start()
            self.assertTrue(h.wait_until(lambda: len(wiki.requests) > 0, 10))
            s.proc.send_signal(15)
            # While the drain delay runs, readiness says no but the server still answers.
            answers = []
            self.assertTrue(h.wait_until(
                lambda: answers.append(h.request("GET", s.base + "/readyz")) or answers[-1][0] == 503, 5))
            self.assertIn("draining", json.loads(answers[-1][2])["reason"])
            t.join(20)
            self.assertIn("answer", result)
            status, _, z22 = result["answer"]
            self.assertEqual(status, 200)
            self.assertIn("Z22K1", z22)
            self.assertEqual(s.proc.wait(15), 0)
            self.assertTrue(any("draining" in l for l in s.lines))


if __name__ == "__main__":
    unittest.main()
