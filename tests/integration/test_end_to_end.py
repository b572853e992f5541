"""Both real services together: wf-orchestrator → wf-evaluator, with the example library.

The orchestrator loads orchestrator/objects (no wiki) and sends code to the real evaluator. Checks
Python and JavaScript functions through the orchestrator, a composition that calls code, the trace id
of one request in both services' ECS logs, and then runs the live part of test_examples.py (every
example tester, as written and once per implementation) against these two services.

Run: cd tests/integration && WF_BIN_DIR=<build>/bin python3 -m unittest -v test_end_to_end
"""

import importlib
import json
import os
import secrets
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import wfharness as h  # noqa: E402

OBJECTS = os.path.normpath(os.path.join(HERE, "..", "..", "orchestrator", "objects"))
EVALUATE = "/wikifunctions.org/v1/evaluate/"
TRUE = {"Z1K1": "Z40", "Z40K1": "Z41"}
FALSE = {"Z1K1": "Z40", "Z40K1": "Z42"}


def meta_pairs(z22):
    """Z22K2 of a canonical envelope as {key: text or value}."""
    out = {}
    meta = z22.get("Z22K2")
    if isinstance(meta, dict) and isinstance(meta.get("K1"), list):
        for pair in meta["K1"][1:]:
            v = pair["K2"]
            out[pair["K1"]] = v["Z6K1"] if isinstance(v, dict) and v.get("Z1K1") == "Z6" else v
    return out


class Services:
    evaluator = None
    orchestrator = None
    users = 0

    @classmethod
    def acquire(cls):
        if cls.users == 0:
            cls.evaluator = h.Service("wf-evaluator", ["--pool-size", "2"])
            try:
                if not h.wait_until(lambda: h.request("GET", cls.evaluator.base + "/readyz")[0] == 200, 30):
                    raise RuntimeError("wf-evaluator never became ready")
                cls.orchestrator = h.Service("wf-orchestrator", [
                    "--evaluator-url", cls.evaluator.base + EVALUATE, "--objects-dir", OBJECTS,
                    "--wiki-api-url", ""])
            except Exception:
                cls.evaluator.stop()
                raise
        cls.users += 1
        return cls.orchestrator, cls.evaluator

    @classmethod
    def release(cls):
        cls.users -= 1
        if cls.users == 0:
            cls.orchestrator.stop()
            cls.evaluator.stop()


class EndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.orch, cls.evaluator = Services.acquire()

    @classmethod
    def tearDownClass(cls):
        Services.release()

    def call(self, zobject, headers=None):
        status, _, z22 = h.evaluate(self.orch, zobject, headers=headers, timeout=45)
        self.assertEqual(status, 200, z22)
        meta = meta_pairs(z22)
        self.assertNotIn("errors", meta, json.dumps(meta.get("errors"))[:1500])
        return z22["Z22K1"], meta

    def assert_evaluated(self, meta, impl):
        self.assertEqual(meta["implementationType"], "Evaluated")
        self.assertEqual(meta["implementationId"], impl)
        # The evaluator's own metadata comes back through the orchestrator (orchestrator-api.md §3).
        for key in ("evaluationMemoryUsage", "evaluationCpuUsage", "evaluationStartTime", "evaluationEndTime",
                    "evaluationDuration", "evaluationHostname", "executionCpuUsage"):
            self.assertIn(key, meta)
        self.assertIn("orchestrationDuration", meta)

    def test_python_function(self):
        value, meta = self.call({"Z1K1": "Z7", "Z7K1": "Z10002", "Z10002K1": "hello wörld"})
        self.assertEqual(value, "HELLO WÖRLD")
        self.assert_evaluated(meta, "Z10202")

    def test_javascript_function(self):
        value, meta = self.call({"Z1K1": "Z7", "Z7K1": "Z10003", "Z10003K1": "hello"})
        self.assertEqual(value, "5")
        self.assert_evaluated(meta, "Z10303")

    def test_python_with_a_list_argument(self):
        value, meta = self.call({"Z1K1": "Z7", "Z7K1": "Z10021", "Z10021K1": ["Z6", "a", "b", "c"]})
        self.assertEqual(value, "3")
        self.assert_evaluated(meta, "Z10221")

    def test_javascript_boolean_result(self):
        value, meta = self.call({"Z1K1": "Z7", "Z7K1": "Z10007", "Z10007K1": "",
                                 })  # composition first: Z866("", "")
        self.assertEqual(value, TRUE)
        self.assertEqual(meta["implementationType"], "Composition")

    def test_composition_that_calls_code(self):
        # Z10004 is palindrome = Z866(text, Z10001(text)); Z10001 runs Python first.
        for text, expected in (("racecar", TRUE), ("abc", FALSE)):
            with self.subTest(text=text):
                value, meta = self.call({"Z1K1": "Z7", "Z7K1": "Z10004", "Z10004K1": text})
                self.assertEqual(value, expected)
                self.assertEqual(meta["implementationType"], "Composition")
                self.assertEqual(meta["implementationId"], "Z10104")

    def test_code_errors_come_back_as_z5(self):
        with open(os.path.join(OBJECTS, "Z10002.json"), encoding="utf-8") as f:
            z8 = json.load(f)["Z2K2"]
        z8["Z8K4"] = ["Z14", {"Z1K1": "Z14", "Z14K1": "Z10002", "Z14K3": {
            "Z1K1": "Z16", "Z16K1": "Z610", "Z16K2": "def Z10002(Z10002K1):\n    raise ValueError('bad input')"}}]
        status, _, z22 = h.evaluate(self.orch, {"Z1K1": "Z7", "Z7K1": z8, "Z10002K1": "x"}, timeout=45)
        self.assertEqual(status, 200)
        self.assertEqual(z22["Z22K1"], "Z24")
        err = meta_pairs(z22)["errors"]
        self.assertIn("bad input", json.dumps(err))

    def test_trace_id_appears_in_both_logs(self):
        trace = secrets.token_hex(16)
        request_id = "e2e-" + secrets.token_hex(6)
        value, _ = self.call({"Z1K1": "Z7", "Z7K1": "Z10002", "Z10002K1": "trace me"},
                             headers={"traceparent": f"00-{trace}-{secrets.token_hex(8)}-01",
                                      "X-Request-Id": request_id})
        self.assertEqual(value, "TRACE ME")

        def lines_with_trace(svc):
            return [r for r in svc.log_records() if r.get("trace.id") == trace]

        for svc in (self.orch, self.evaluator):
            with self.subTest(service=svc.name):
                self.assertTrue(h.wait_until(lambda: lines_with_trace(svc), 10),
                                f"no {svc.name} log line carries trace.id {trace}")
                records = lines_with_trace(svc)
                self.assertTrue(all(r["service.name"] == svc.name for r in records))
                self.assertTrue(any(r.get("url.path", "").endswith("/v1/evaluate/") for r in records), records)
                self.assertTrue(any(request_id in json.dumps(r) for r in records),
                                f"the request id is not in {svc.name}'s lines: {records}")
        # The evaluator's span is a child of the orchestrator's: same trace, different span.
        o_spans = {r.get("span.id") for r in lines_with_trace(self.orch)}
        e_spans = {r.get("span.id") for r in lines_with_trace(self.evaluator)}
        self.assertFalse(o_spans & e_spans, (o_spans, e_spans))

    def test_orchestrator_metrics_count_evaluator_calls(self):
        def ok_calls():
            _, _, body = h.request("GET", self.orch.base + "/metrics")
            total = 0.0
            for line in body.decode().splitlines():
                if line.startswith("wf_evaluator_calls_total{") and 'outcome="ok"' in line \
                        and 'language="python"' in line:
                    total += float(line.rsplit(" ", 1)[1])
            return total

        before = ok_calls()
        self.call({"Z1K1": "Z7", "Z7K1": "Z10002", "Z10002K1": "count"})
        self.assertEqual(ok_calls(), before + 1)


class ForwardedCaller(unittest.TestCase):
    """Issue 7: the orchestrator forwards the user it identified (X-Wikifunctions-Caller) and the
    evaluator, trusting its loopback peer, queues sandbox children per user, not per orchestrator:
    two users' calls of the same code are two flows, each with its own share of children."""

    SLOW = "def Z10002(Z10002K1):\n    import time\n    time.sleep(60)\n    return Z10002K1"

    def start(self, evaluator_args):
        evaluator = h.Service("wf-evaluator", [
            "--pool-size", "2", "--languages", "python", "--sandbox-children-per-flow", "1",
            "--sandbox-queue-wait-ms", "60000", "--timeout-ms", "60000"] + evaluator_args)
        self.addCleanup(evaluator.stop)
        self.assertTrue(h.wait_until(lambda: h.request("GET", evaluator.base + "/readyz")[0] == 200, 30))
        orch = h.Service("wf-orchestrator", [
            "--evaluator-url", evaluator.base + EVALUATE, "--objects-dir", OBJECTS,
            "--wiki-api-url", ""])
        self.addCleanup(orch.stop)
        return orch, evaluator

    def hold_slow_call(self, orch, user, n):
        """Sends the slow call as `user` on a connection it keeps open (closing it cancels it)."""
        import socket
        with open(os.path.join(OBJECTS, "Z10002.json"), encoding="utf-8") as f:
            z8 = json.load(f)["Z2K2"]
        z8["Z8K4"] = ["Z14", {"Z1K1": "Z14", "Z14K1": "Z10002", "Z14K3": {
            "Z1K1": "Z16", "Z16K1": "Z610", "Z16K2": self.SLOW}}]
        body = json.dumps({"zobject": {"Z1K1": "Z7", "Z7K1": z8, "Z10002K1": f"{user} {n}"},
                           "doValidate": False}).encode()
        sock = socket.create_connection(("127.0.0.1", orch.port), timeout=10)
        self.addCleanup(sock.close)
        sock.sendall(b"POST " + EVALUATE.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nX-Wikifunctions-User: " + user.encode()
                     + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        return sock

    def metric(self, evaluator, name, labels='language="python"'):
        _, _, body = h.request("GET", evaluator.base + "/metrics")
        for line in body.decode().splitlines():
            if line.startswith(name + "{" + labels + "} "):
                return float(line.split()[-1])
        return None

    def queued_at_cap(self, evaluator):
        return self.metric(evaluator, "wf_evaluator_sandbox_queued_calls",
                           'language="python",reason="flow_cap"')

    def test_two_users_through_one_orchestrator_are_two_flows(self):
        orch, evaluator = self.start([])
        socks = [self.hold_slow_call(orch, user, n) for user in ("Alice", "Bob") for n in range(2)]
        # Each user's flow holds its one child and queues its second call.
        self.assertTrue(h.wait_until(lambda: self.metric(evaluator, "wf_evaluator_sandbox_children_held") == 2
                                     and self.queued_at_cap(evaluator) == 2, 20),
                        [self.metric(evaluator, "wf_evaluator_sandbox_children_held"),
                         self.queued_at_cap(evaluator)])
        self.assertEqual(self.metric(evaluator, "wf_evaluator_sandbox_callers"), 2)
        self.assertEqual(self.metric(evaluator, "wf_evaluator_sandbox_flows"), 2)
        self.assertEqual(self.metric(evaluator, "wf_evaluator_sandbox_flows_at_cap"), 2)
        for sock in socks:
            sock.close()
        self.assertTrue(h.wait_until(
            lambda: self.metric(evaluator, "wf_evaluator_sandbox_children_held") == 0, 15))

    def test_an_untrusted_peer_is_one_caller_whatever_user_it_names(self):
        # The evaluator trusts no peer: the orchestrator's address is the one caller, as before.
        orch, evaluator = self.start(["--caller-trusted-peers", "192.0.2.0/24"])
        socks = [self.hold_slow_call(orch, user, n) for user in ("Alice", "Bob") for n in range(2)]
        self.assertTrue(h.wait_until(
            lambda: self.metric(evaluator, "wf_evaluator_sandbox_children_held") == 1
            and self.queued_at_cap(evaluator) == 3, 20),
            [self.metric(evaluator, "wf_evaluator_sandbox_children_held"), self.queued_at_cap(evaluator)])
        self.assertEqual(self.metric(evaluator, "wf_evaluator_sandbox_callers"), 1)
        self.assertEqual(self.metric(evaluator, "wf_evaluator_sandbox_flows"), 1)
        for sock in socks:
            sock.close()


class LiveExamples(unittest.TestCase):
    """test_examples.LiveOrchestratorTest against the services above (one test per live method)."""

    @classmethod
    def setUpClass(cls):
        cls.orch, _ = Services.acquire()
        os.environ["WF_ORCHESTRATOR_URL"] = cls.orch.base
        # The module reads WF_ORCHESTRATOR_URL when imported (its skip decorator too).
        if "test_examples" in sys.modules:
            cls.examples = importlib.reload(sys.modules["test_examples"])
        else:
            cls.examples = importlib.import_module("test_examples")
        cls.examples.URL = cls.orch.base

    @classmethod
    def tearDownClass(cls):
        os.environ.pop("WF_ORCHESTRATOR_URL", None)
        Services.release()

    def evaluate_requests(self):
        _, _, body = h.request("GET", self.orch.base + "/metrics")
        return sum(float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
                   if line.startswith("wf_http_requests_total{") and 'route="evaluate"' in line)

    def run_live(self, method, min_calls):
        before = self.evaluate_requests()
        case = self.examples.LiveOrchestratorTest(method)
        result = unittest.TestResult()
        case.run(result)
        self.assertFalse(result.skipped, result.skipped)
        self.assertEqual(result.testsRun, 1)
        problems = [f"{test}: {text}" for test, text in result.failures + result.errors]
        self.assertTrue(result.wasSuccessful(), "\n".join(problems)[:6000])
        # It really went through this orchestrator (two calls per tester: the call and its validator).
        h.wait_until(lambda: self.evaluate_requests() - before >= min_calls, 30)
        self.assertGreaterEqual(self.evaluate_requests() - before, min_calls)

    def _all_testers(self):
        return [t for fn in self.examples.functions() for t in self.examples.testers(fn)]

    def test_testers_as_written(self):
        self.run_live("test_testers_as_written", 2 * len(self._all_testers()))

    def test_testers_per_implementation(self):
        ex = self.examples
        runs = sum(len(ex.implementations(ex.value(t)["Z20K1"])) for t in self._all_testers())
        self.assertGreater(runs, len(self._all_testers()))
        self.run_live("test_testers_per_implementation", 2 * runs)

    def test_implementation_metadata(self):
        self.run_live("test_implementation_metadata", 1)

    def test_the_library_has_code_of_both_languages(self):
        kinds = {self.examples.impl_kind(i) for fn in self.examples.functions()
                 for i in self.examples.implementations(fn)}
        self.assertLessEqual({"python", "javascript", "composition"}, kinds)


if __name__ == "__main__":
    unittest.main()
