"""The real wf-orchestrator over HTTP against a fake wiki and a fake evaluator (FakeServer).

Covers (orchestrator-api.md §2, §6, §7; errors.md):
  * wiki failures (HTTP 500, no answer before the request deadline, garbage JSON, ZID missing,
    connection dropped): each an HTTP 200 Z22 carrying the spec's Z5, and the service keeps serving;
  * evaluator failures (non-2xx, dropped connection, too slow, invalid JSON): the next
    implementation is tried; with none left the Z507 names the failure; past the deadline Z558;
  * what arrives at the peers: x-request-id, the caller's trace id in traceparent, and the Avro
    v0.0.4 body (decoded by hand here) with a positive remainingTime;
  * bad input (400, 415, deep nesting, non-Z7, null zobject, a Z5 as input);
  * the cross-request object cache (on with a long TTL, off with 0);
  * the wf_wiki_fetch_requests_total / wf_evaluator_calls_total outcome counters.

Run: cd tests/integration && WF_BIN_DIR=<build>/bin python3 -m unittest -v test_orchestrator_http
"""

import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wfharness as h  # noqa: E402
from wfharness import list_items, ref, text_of, z6, z9  # noqa: E402

meta_pairs = h.metadata

EVALUATE = "/wikifunctions.org/v1/evaluate/"
TRACE_ID = "5a1e0c9e3b2d4f6a8c7b9d0e1f2a3b4c"
TRACEPARENT = f"00-{TRACE_ID}-1122334455667788-01"


# ---- helpers -----------------------------------------------------------------------------------






def persisted(zid, value):
    """A canonical persisted Z2 as wikilambda_fetch serves it."""
    return {"Z1K1": "Z2", "Z2K1": z6(zid), "Z2K2": value,
            "Z2K3": {"Z1K1": "Z12", "Z12K1": ["Z11", {"Z1K1": "Z11", "Z11K1": "Z1002", "Z11K2": zid}]}}


def function(zid, impls, arg_type="Z6", ret="Z6"):
    return persisted(zid, {
        "Z1K1": "Z8",
        "Z8K1": ["Z17", {"Z1K1": "Z17", "Z17K1": arg_type, "Z17K2": zid + "K1",
                         "Z17K3": {"Z1K1": "Z12", "Z12K1": ["Z11"]}}],
        "Z8K2": ret, "Z8K3": ["Z20"], "Z8K4": ["Z14"] + list(impls), "Z8K5": zid})


def python_impl(zid, fn, code):
    return persisted(zid, {"Z1K1": "Z14", "Z14K1": fn,
                           "Z14K3": {"Z1K1": "Z16", "Z16K1": {"Z1K1": "Z61", "Z61K1": "python"},
                                     "Z16K2": code}})


def echo_composition(zid, fn):
    return persisted(zid, {"Z1K1": "Z14", "Z14K1": fn,
                           "Z14K2": {"Z1K1": "Z7", "Z7K1": "Z801",
                                     "Z801K1": {"Z1K1": "Z18", "Z18K1": fn + "K1"}}})


def wiki_answer(objects, path):
    """{zid: {"wikilambda_fetch": text}} for the zids of a wikilambda_fetch query that we hold."""
    query = urllib.parse.parse_qs(urllib.parse.urlparse(path).query)
    out = {}
    for zid in query.get("zids", [""])[0].split("|"):
        if zid in objects:
            out[zid] = {"wikilambda_fetch": json.dumps(objects[zid])}
    return out


def fetched_zids(request):
    query = urllib.parse.parse_qs(urllib.parse.urlparse(request["path"]).query)
    return query.get("zids", [""])[0].split("|")








def walk(v):
    yield v
    if isinstance(v, dict):
        for x in v.values():
            yield from walk(x)
    elif isinstance(v, list):
        for x in v:
            yield from walk(x)


def error_codes(err):
    """Every Z5K1 error type found anywhere in an error (nested, quoted in Z99 too)."""
    return [ref(n["Z5K1"]) for n in walk(err) if isinstance(n, dict) and "Z5K1" in n]


def error_texts(err):
    return " | ".join(n for n in walk(err) if isinstance(n, str))


def is_void(v):
    return ref(v) in ("Z24",) or v == {"Z1K1": "Z21"} or (isinstance(v, dict) and ref(v.get("Z1K1")) == "Z21")


def parse_metrics(text):
    """[(name, {label: value}, float)] of a Prometheus text exposition."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)', line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def metric(service, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    _, _, body = h.request("GET", service.base + "/metrics")
    return sum(v for n, l, v in parse_metrics(body.decode())
               if n == name and all(l.get(k) == x for k, x in labels.items()))


# ---- Avro (evaluator-api.md §2.1), decoded by hand ---------------------------------------------


class AvroReader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError(f"truncated at {self.pos}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def long(self):
        shift, acc = 0, 0
        while True:
            b = self.take(1)[0]
            acc |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return (acc >> 1) ^ -(acc & 1)

    def string(self):
        return self.take(self.long()).decode("utf-8")

    def boolean(self):
        b = self.take(1)[0]
        if b not in (0, 1):
            raise ValueError(f"bad boolean byte {b}")
        return b == 1

    def double(self):
        return struct.unpack("<d", self.take(8))[0]

    def map(self, value):
        out = {}
        while True:
            n = self.long()
            if n == 0:
                return out
            if n < 0:
                n = -n
                self.long()  # block size in bytes
            for _ in range(n):
                k = self.string()
                out[k] = value()

    def zobject(self, inner=False):
        # Outer union order [Z6, Z9, Z99, Z1]; inner (inside Z1.valueMap) [Z1, Z6, Z9, Z99].
        branch = self.long()
        kind = (["Z1", "Z6", "Z9", "Z99"] if inner else ["Z6", "Z9", "Z99", "Z1"])[branch]
        if kind == "Z6":
            return {"Z1K1": "Z6", "Z6K1": self.string()}
        if kind == "Z9":
            return {"Z1K1": "Z9", "Z9K1": self.string()}
        if kind == "Z99":
            return {"Z1K1": {"Z1K1": "Z9", "Z9K1": "Z99"}, "Z99K1": json.loads(self.string())}
        return self.map(lambda: self.zobject(inner=True))


def decode_code_request(body):
    """The v0.0.4 request the orchestrator sends, as a dict (raises on any deviation)."""
    r = AvroReader(body)
    n = r.take(1)[0]
    version = r.take(n).decode("ascii")
    out = {"version": version, "reentrant": r.boolean(), "remainingTime": r.double(),
           "codingLanguage": r.string(), "codeString": r.string(), "functionName": r.string(),
           "functionArguments": r.map(r.zobject)}
    if r.pos != len(body):
        raise ValueError(f"{len(body) - r.pos} trailing bytes")
    return out


# ---- the fake peers -----------------------------------------------------------------------------


class Scripted:
    """A FakeServer whose behaviour a test switches with `mode`. A "slow" request is held until
    the test sets `release` (at most `HOLD_S`, far beyond any test's wait), then answered:
    whatever ends a call before that is the orchestrator's doing. `slow_answered` counts the held
    requests answered so far."""

    HOLD_S = 300.0

    def __init__(self, answer):
        self.mode = "ok"
        self.release = threading.Event()
        self.answer = answer
        self.lock = threading.Lock()
        self.slow_answered = 0
        self.server = h.FakeServer(self._handle)
        # A slow answer written after the orchestrator gave up is a broken pipe: expected here.
        self.server.server.handle_error = lambda request, address: None

    def _handle(self, method, path, headers, body):
        mode = self.mode
        if mode == "http500":
            return 500, "text/plain", b"boom from the fake"
        if mode == "http503":
            return 503, "text/plain", b"busy"
        if mode == "drop":
            return None
        if mode == "garbage":
            return 200, "application/json", b"{this is not json"
        if mode == "slow":
            self.release.wait(self.HOLD_S)
            with self.lock:
                self.slow_answered += 1
            return self.answer(method, path, body)
        return self.answer(method, path, body)

    def count_slow_answered(self):
        with self.lock:
            return self.slow_answered

    @property
    def requests(self):
        return self.server.requests

    def close(self):
        self.release.set()
        self.server.close()


FN_FALLBACK = "Z20001"   # Python first, then a composition (echo of the argument)
FN_CODE_ONLY = "Z20002"  # Python only
STORED_STRING = "Z20050"  # a persisted string, for echo calls that need the wiki
OBJECTS = {
    FN_FALLBACK: function(FN_FALLBACK, ["Z20101", "Z20102"]),
    "Z20101": python_impl("Z20101", FN_FALLBACK, "def Z20001(Z20001K1):\n    return Z20001K1"),
    "Z20102": echo_composition("Z20102", FN_FALLBACK),
    FN_CODE_ONLY: function(FN_CODE_ONLY, ["Z20201"]),
    "Z20201": python_impl("Z20201", FN_CODE_ONLY, "def Z20002(Z20002K1):\n    return Z20002K1"),
    STORED_STRING: persisted(STORED_STRING, "a stored string"),
}

EVALUATOR_RESULT = {"Z1K1": z9("Z22"), "Z22K1": z6("from the fake evaluator"), "Z22K2": z9("Z24")}


def wiki_handler(objects):
    def answer(method, path, body):
        return 200, "application/json", json.dumps(wiki_answer(objects, path)).encode()
    return answer


def evaluator_handler(method, path, body):
    return 200, "application/json", json.dumps(EVALUATOR_RESULT).encode()


def echo(value):
    return {"Z1K1": "Z7", "Z7K1": "Z801", "Z801K1": value}


def start_orchestrator(wiki=None, evaluator=None, extra=(), result_cache=False):
    # The result cache is off unless a test is about it: the others count what reaches the fakes.
    args = ["--objects-dir", "", "--access-log", "true", "--result-cache", "true" if result_cache else "false"]
    if wiki is not None:
        args += ["--wiki-api-url", wiki.server.base + "/w/api.php"]
    if evaluator is not None:
        args += ["--evaluator-url", evaluator.server.base + EVALUATE]
    return h.Service("wf-orchestrator", args + list(extra))


class OrchestratorCase(unittest.TestCase):
    def assert_envelope(self, status, z22):
        self.assertEqual(status, 200, z22)
        self.assertIsInstance(z22, dict)
        self.assertIn(ref(z22.get("Z1K1")), ("Z22",), z22)
        return meta_pairs(z22)

    def assert_error(self, status, z22, code):
        meta = self.assert_envelope(status, z22)
        self.assertTrue(is_void(z22["Z22K1"]), f"expected no value: {json.dumps(z22)[:800]}")
        self.assertIn("errors", meta, json.dumps(z22)[:1500])
        err = meta["errors"]
        self.assertEqual(ref(err["Z5K1"]), code, json.dumps(err)[:1500])
        return err

    def assert_still_serving(self, service):
        status, _, _ = h.request("GET", service.base + "/healthz", timeout=10)
        self.assertEqual(status, 200)
        status, z22 = h.evaluate(service, echo("still here"), timeout=20)[0::2]
        self.assertEqual(status, 200)
        self.assertEqual(z22["Z22K1"], "still here")
        self.assertIsNone(service.proc.poll(), "the orchestrator exited")


# ---- wiki failures ------------------------------------------------------------------------------


class WikiFailures(OrchestratorCase):
    """orchestrator-api.md §6: a failed fetch is an exception → Z507 wrapping Z500; missing → Z504."""

    TIMEOUT_MS = 1500

    @classmethod
    def setUpClass(cls):
        cls.wiki = Scripted(wiki_handler(OBJECTS))
        cls.orch = start_orchestrator(cls.wiki, extra=["--cache-ttl-ms", "0",
                                                       "--request-timeout-ms", str(cls.TIMEOUT_MS)])

    @classmethod
    def tearDownClass(cls):
        cls.orch.stop()
        cls.wiki.close()

    def setUp(self):
        self.wiki.mode = "ok"
        self.wiki.release.clear()

    def call_needing_wiki(self, zid, headers=None, timeout=20):
        before = len(self.wiki.requests)
        status, _, z22 = h.evaluate(self.orch, echo(zid), headers=headers, timeout=timeout)
        asked = [r for r in self.wiki.requests[before:] if zid in fetched_zids(r)]
        self.assertTrue(asked, f"the wiki was never asked for {zid}")
        return status, z22

    def assert_wiki_works_again(self):
        """After a failure the next fetch must get its own answer (no stale pooled connection)."""
        self.wiki.mode = "ok"
        for _ in range(3):
            status, z22 = self.call_needing_wiki(STORED_STRING)
            self.assertEqual(status, 200)
            self.assertEqual(z22["Z22K1"], "a stored string", json.dumps(z22)[:1500])
        self.assert_still_serving(self.orch)

    def assert_exception_error(self, status, z22, needle):
        err = self.assert_error(status, z22, "Z507")
        codes = error_codes(err)
        self.assertIn("Z500", codes, json.dumps(err)[:1500])
        self.assertIn(needle, error_texts(err))
        return err

    def test_wiki_answers_a_good_object(self):
        status, z22 = self.call_needing_wiki(STORED_STRING)
        self.assert_envelope(status, z22)
        self.assertEqual(z22["Z22K1"], "a stored string")
        self.assertNotIn("errors", meta_pairs(z22))

    def test_http_500_is_z507_wrapping_z500(self):
        before = metric(self.orch, "wf_wiki_fetch_requests_total", outcome="http_error")
        self.wiki.mode = "http500"
        status, z22 = self.call_needing_wiki("Z20060")
        self.assert_exception_error(status, z22, "500")
        self.assertGreaterEqual(metric(self.orch, "wf_wiki_fetch_requests_total", outcome="http_error"),
                                before + 1)
        self.assert_wiki_works_again()

    def test_wiki_that_never_answers_gives_z558_at_the_deadline(self):
        before = metric(self.orch, "wf_wiki_fetch_requests_total", outcome="timeout")
        self.wiki.mode = "slow"
        answered = self.wiki.count_slow_answered()
        t0 = time.monotonic()
        # The wiki holds the fetch until the test releases it: only the deadline can end the call
        # before the client's 90 s hang guard (an orchestrator that waited for the fetch would
        # time out the client).
        status, z22 = self.call_needing_wiki("Z20061", timeout=90)
        elapsed = time.monotonic() - t0
        err = self.assert_error(status, z22, "Z558")
        self.assertEqual(text_of(err["Z5K2"]), "Function call timed out")
        self.assertEqual(self.wiki.count_slow_answered(), answered,
                         "the call ended when the wiki answered, not at its deadline")
        self.wiki.release.set()
        self.assertGreaterEqual(elapsed, self.TIMEOUT_MS / 1000.0 * 0.9)  # a timer never fires early
        self.assertTrue(h.wait_until(lambda: metric(self.orch, "wf_wiki_fetch_requests_total",
                                                    outcome="timeout") >= before + 1, 30))
        self.assert_wiki_works_again()

    def test_garbage_json_is_z507_wrapping_z500(self):
        before = metric(self.orch, "wf_wiki_fetch_requests_total", outcome="bad_json")
        self.wiki.mode = "garbage"
        status, z22 = self.call_needing_wiki("Z20062")
        self.assert_exception_error(status, z22, "JSON")
        self.assertGreaterEqual(metric(self.orch, "wf_wiki_fetch_requests_total", outcome="bad_json"),
                                before + 1)
        self.assert_wiki_works_again()

    def test_missing_zid_is_z504_naming_it(self):
        before = metric(self.orch, "wf_wiki_fetch_requests_total", outcome="ok")
        status, z22 = self.call_needing_wiki("Z20063")  # the fake wiki does not hold it
        err = self.assert_error(status, z22, "Z504")
        self.assertEqual(err["Z5K2"]["Z504K1"], z6("Z20063"))
        self.assertGreaterEqual(metric(self.orch, "wf_wiki_fetch_requests_total", outcome="ok"), before + 1)
        self.assert_still_serving(self.orch)

    def test_wiki_error_object_is_z504(self):
        # The wiki's all-or-nothing error object (no ZID keys at all).
        self.wiki.answer = lambda m, p, b: (200, "application/json", b'{"error":{"code":"bad"}}')
        try:
            status, z22 = self.call_needing_wiki(STORED_STRING)
        finally:
            self.wiki.answer = wiki_handler(OBJECTS)
        err = self.assert_error(status, z22, "Z504")
        self.assertEqual(err["Z5K2"]["Z504K1"], z6(STORED_STRING))

    def test_dropped_connection_is_z507_wrapping_z500(self):
        before = metric(self.orch, "wf_wiki_fetch_requests_total", outcome="transport")
        self.wiki.mode = "drop"
        status, z22 = self.call_needing_wiki("Z20064")
        self.assert_exception_error(status, z22, "could not be reached")
        self.assertGreaterEqual(metric(self.orch, "wf_wiki_fetch_requests_total", outcome="transport"),
                                before + 1)
        self.assert_wiki_works_again()

    def test_request_id_and_trace_reach_the_wiki(self):
        before = len(self.wiki.requests)
        status, z22 = self.call_needing_wiki(STORED_STRING, headers={"X-Request-Id": "itest-wiki-42",
                                                                     "traceparent": TRACEPARENT})
        self.assertEqual(status, 200)
        req = [r for r in self.wiki.requests[before:] if STORED_STRING in fetched_zids(r)][0]
        self.assertEqual(req["method"], "GET")
        self.assertTrue(req["path"].startswith("/w/api.php?"), req["path"])
        q = urllib.parse.parse_qs(urllib.parse.urlparse(req["path"]).query)
        self.assertEqual(q["action"], ["wikilambda_fetch"])
        self.assertEqual(q["format"], ["json"])
        self.assertEqual(req["headers"].get("x-request-id"), "itest-wiki-42")
        tp = req["headers"].get("traceparent", "")
        self.assertRegex(tp, r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
        self.assertEqual(tp.split("-")[1], TRACE_ID)

    def test_user_agent_names_the_orchestrator(self):
        # orchestrator-api.md §6 has "wikifunctions-function-orchestrator/0.7.0"; this service names
        # itself (wikifunctions-cpp-orchestrator/<version>): a product name and a version are required.
        before = len(self.wiki.requests)
        self.call_needing_wiki(STORED_STRING)
        ua = self.wiki.requests[before]["headers"].get("user-agent", "")
        self.assertRegex(ua, r"^wikifunctions-[\w-]*orchestrator/\d+\.\d+\.\d+")


# ---- evaluator failures -------------------------------------------------------------------------


class EvaluatorFailures(OrchestratorCase):
    """orchestrator-api.md §7: evaluator errors move on to the next implementation."""

    TIMEOUT_MS = 2500

    @classmethod
    def setUpClass(cls):
        cls.wiki = Scripted(wiki_handler(OBJECTS))
        cls.evaluator = Scripted(evaluator_handler)
        cls.orch = start_orchestrator(cls.wiki, cls.evaluator,
                                      ["--request-timeout-ms", str(cls.TIMEOUT_MS)])

    @classmethod
    def tearDownClass(cls):
        cls.orch.stop()
        cls.evaluator.close()
        cls.wiki.close()

    def setUp(self):
        self.evaluator.mode = "ok"
        self.evaluator.release.clear()

    def call(self, fn, arg="abc", headers=None, timeout=20):
        before = len(self.evaluator.requests)
        status, _, z22 = h.evaluate(self.orch, {"Z1K1": "Z7", "Z7K1": fn, fn + "K1": arg},
                                    headers=headers, timeout=timeout)
        self.assertGreater(len(self.evaluator.requests), before, "the evaluator was not called")
        return status, z22

    def assert_evaluator_works_again(self):
        self.evaluator.mode = "ok"
        for _ in range(3):
            status, z22 = self.call(FN_FALLBACK, "again")
            self.assertEqual(status, 200)
            self.assertEqual(z22["Z22K1"], "from the fake evaluator", json.dumps(z22)[:1500])
        self.assert_still_serving(self.orch)

    def outcome(self, outcome):
        return metric(self.orch, "wf_evaluator_calls_total", language="python", outcome=outcome)

    def test_evaluated_result_and_metadata(self):
        before = self.outcome("ok")
        status, z22 = self.call(FN_FALLBACK)
        meta = self.assert_envelope(status, z22)
        self.assertEqual(z22["Z22K1"], "from the fake evaluator")
        self.assertNotIn("errors", meta)
        self.assertEqual(text_of(meta["implementationType"]), "Evaluated")
        self.assertEqual(text_of(meta["implementationId"]), "Z20101")
        self.assertEqual(self.outcome("ok"), before + 1)

    def assert_fallback(self, status, z22):
        meta = self.assert_envelope(status, z22)
        self.assertEqual(z22["Z22K1"], "abc", json.dumps(z22)[:1000])
        self.assertNotIn("errors", meta)
        self.assertEqual(text_of(meta["implementationType"]), "Composition")
        self.assertEqual(text_of(meta["implementationId"]), "Z20102")

    def test_non_2xx_falls_back_then_names_the_status(self):
        before = self.outcome("http_error")
        self.evaluator.mode = "http500"
        self.assert_fallback(*self.call(FN_FALLBACK))
        status, z22 = self.call(FN_CODE_ONLY)
        err = self.assert_error(status, z22, "Z507")
        self.assertIn("Function evaluation failed with status 500", error_texts(err))
        self.assertIn("boom from the fake", error_texts(err))
        self.assertEqual(self.outcome("http_error"), before + 2)
        self.evaluator.mode = "http503"
        status, z22 = self.call(FN_CODE_ONLY)
        self.assertIn("Function evaluation failed with status 503",
                      error_texts(self.assert_error(status, z22, "Z507")))
        self.assert_evaluator_works_again()

    def test_dropped_connection_falls_back(self):
        before = self.outcome("transport")
        self.evaluator.mode = "drop"
        self.assert_fallback(*self.call(FN_FALLBACK))
        status, z22 = self.call(FN_CODE_ONLY)
        err = self.assert_error(status, z22, "Z507")
        self.assertTrue(error_texts(err).strip(), "the transport failure has a message")
        self.assertGreaterEqual(self.outcome("transport"), before + 2)
        self.assert_evaluator_works_again()

    def test_invalid_json_falls_back(self):
        before = self.outcome("bad_json")
        self.evaluator.mode = "garbage"
        self.assert_fallback(*self.call(FN_FALLBACK))
        status, z22 = self.call(FN_CODE_ONLY)
        err = self.assert_error(status, z22, "Z507")
        self.assertIn("invalid JSON", error_texts(err))
        self.assertEqual(self.outcome("bad_json"), before + 2)
        self.assert_evaluator_works_again()

    def test_slow_evaluator_gives_z558_at_the_deadline(self):
        before = self.outcome("timeout")
        self.evaluator.mode = "slow"
        answered = self.evaluator.count_slow_answered()
        t0 = time.monotonic()
        # The evaluator holds the call until the test releases it: only the deadline can end the
        # call before the client's 90 s hang guard.
        status, z22 = self.call(FN_FALLBACK, timeout=90)
        elapsed = time.monotonic() - t0
        err = self.assert_error(status, z22, "Z558")
        self.assertEqual(text_of(err["Z5K2"]), "Function call timed out")
        self.assertEqual(self.evaluator.count_slow_answered(), answered,
                         "the call ended when the evaluator answered, not at its deadline")
        self.evaluator.release.set()
        self.assertGreaterEqual(elapsed, self.TIMEOUT_MS / 1000.0 * 0.9)  # a timer never fires early
        self.assertTrue(h.wait_until(lambda: self.outcome("timeout") >= before + 1, 30))
        self.assert_evaluator_works_again()

    def test_request_id_trace_and_avro_body_reach_the_evaluator(self):
        before = len(self.evaluator.requests)
        t0 = time.monotonic()
        status, z22 = self.call(FN_FALLBACK, "héllo wörld",
                                headers={"X-Request-Id": "itest-eval-7", "traceparent": TRACEPARENT})
        self.assertEqual(status, 200)
        req = self.evaluator.requests[before]
        self.assertEqual(req["method"], "POST")
        self.assertEqual(req["path"], EVALUATE)
        self.assertEqual(req["headers"].get("content-type"), "application/octet-stream")
        self.assertEqual(req["headers"].get("x-request-id"), "itest-eval-7")
        self.assertEqual(req["headers"].get("traceparent", "").split("-")[1], TRACE_ID)
        body = req["body"]
        self.assertEqual(body[0], 5)
        self.assertEqual(body[1:6], b"0.0.4")
        self.assertEqual(body[6], 0, "reentrant is false")
        remaining = struct.unpack("<d", body[7:15])[0]
        self.assertGreater(remaining, 0.0)
        self.assertLessEqual(remaining, self.TIMEOUT_MS)
        self.assertGreater(remaining, self.TIMEOUT_MS - (time.monotonic() - t0) * 1000.0 - 50)
        decoded = decode_code_request(body)
        self.assertEqual(decoded["codingLanguage"], "python")
        self.assertEqual(decoded["functionName"], FN_FALLBACK)
        self.assertEqual(decoded["codeString"], "def Z20001(Z20001K1):\n    return Z20001K1")
        self.assertEqual(decoded["functionArguments"], {"Z20001K1": z6("héllo wörld")})

    def test_metrics_exposition_has_both_outcome_families(self):
        self.call(FN_FALLBACK)
        _, headers, body = h.request("GET", self.orch.base + "/metrics")
        samples = parse_metrics(body.decode())
        wiki = {l.get("outcome") for n, l, _ in samples if n == "wf_wiki_fetch_requests_total"}
        evaluator = {(l.get("language"), l.get("outcome")) for n, l, _ in samples if n == "wf_evaluator_calls_total"}
        self.assertIn("ok", wiki)
        self.assertLessEqual(wiki, {"ok", "http_error", "bad_json", "transport", "timeout", "cancelled"})
        self.assertIn(("python", "ok"), evaluator)
        self.assertLessEqual({o for _, o in evaluator},
                             {"ok", "http_error", "bad_json", "transport", "timeout", "cancelled",
                              "no_evaluator", "bad_request"})
        self.assertTrue(any(n == "wf_evaluator_call_duration_seconds_count" for n, _, _ in samples))
        if os.path.exists("/usr/bin/promtool"):
            r = subprocess.run(["/usr/bin/promtool", "check", "metrics"], input=body, capture_output=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())

    def test_no_evaluator_for_the_language(self):
        fn = dict(OBJECTS)
        fn["Z20301"] = persisted("Z20301", {"Z1K1": "Z14", "Z14K1": "Z20003", "Z14K3": {
            "Z1K1": "Z16", "Z16K1": {"Z1K1": "Z61", "Z61K1": "lua"}, "Z16K2": "function Z20003(x) return x end"}})
        fn["Z20003"] = function("Z20003", ["Z20301"])
        self.wiki.answer = wiki_handler(fn)
        try:
            status, _, z22 = h.evaluate(self.orch, {"Z1K1": "Z7", "Z7K1": "Z20003", "Z20003K1": "x"}, timeout=20)
        finally:
            self.wiki.answer = wiki_handler(OBJECTS)
        err = self.assert_error(status, z22, "Z507")
        self.assertIn("No evaluator is available for lua", error_texts(err))


# ---- thread names --------------------------------------------------------------------------------


class ThreadNames(OrchestratorCase):
    """Each thread says what it is (top -H, perf, ps -L and bench/slow_calls read the name): an
    unnamed thread shows its parent's name, wf-orchestrator, whatever it does."""

    def test_threads_are_named_by_their_role(self):
        with start_orchestrator(extra=["--io-threads", "2", "--worker-threads", "2"]) as orch:
            self.assert_still_serving(orch)
            task = f"/proc/{orch.proc.pid}/task"
            names = sorted(open(f"{task}/{tid}/comm").read().strip() for tid in os.listdir(task))
        for name in ("wf-loop-0", "wf-loop-1", "wf-engine-0", "wf-engine-1", "wf-retire"):
            self.assertIn(name, names)
        self.assertEqual(names.count("wf-loop-0"), 1, names)


# ---- bad input ----------------------------------------------------------------------------------


class BadInput(OrchestratorCase):
    @classmethod
    def setUpClass(cls):
        cls.orch = start_orchestrator()

    @classmethod
    def tearDownClass(cls):
        cls.orch.stop()

    def post(self, body, content_type="application/json"):
        return h.request("POST", self.orch.base + EVALUATE, body, {"Content-Type": content_type})

    def assert_problem(self, answer, status):
        got, headers, body = answer
        self.assertEqual(got, status, body[:500])
        self.assertTrue(headers.get("content-type", "").startswith("application/"), headers)
        j = json.loads(body)
        self.assertEqual(j["status"], status)
        self.assertTrue(j["detail"])

    def test_invalid_json_is_400(self):
        self.assert_problem(self.post('{"zobject": '), 400)
        self.assert_problem(self.post("\xff\xfe not json"), 400)

    def test_non_object_body_is_400(self):
        for body in ("[1, 2]", '"a string"', "42", "null"):
            with self.subTest(body=body):
                self.assert_problem(self.post(body), 400)

    def test_wrong_content_type_is_415(self):
        self.assert_problem(self.post(json.dumps({"zobject": echo("x")}), "text/plain"), 415)
        self.assert_problem(self.post(json.dumps({"zobject": echo("x")}), "application/xml"), 415)

    def test_urlencoded_form_is_accepted(self):
        body = urllib.parse.urlencode({"zobject": json.dumps(echo("form")), "doValidate": "false"})
        status, _, raw = self.post(body, "application/x-www-form-urlencoded")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(raw)["Z22K1"], "form")

    def test_deeply_nested_body_is_refused_and_the_service_lives(self):
        deep = "[" * 200000 + "]" * 200000
        self.assert_problem(self.post('{"zobject": ' + deep + "}"), 400)
        self.assert_still_serving(self.orch)

    def test_deep_zobject_is_z502_naming_the_limit(self):
        z = "leaf"
        for _ in range(300):
            z = {"Z1K1": "Z7", "Z7K1": "Z801", "Z801K1": z}
        status, _, z22 = h.evaluate(self.orch, z, timeout=20)
        err = self.assert_error(status, z22, "Z502")
        self.assertIn("deeper than the limit", error_texts(err))
        self.assert_still_serving(self.orch)

    def test_nested_calls_within_the_limit_work(self):
        z = "leaf"
        for _ in range(20):
            z = echo(z)
        status, _, z22 = h.evaluate(self.orch, z, timeout=20)
        self.assertEqual(status, 200)
        self.assertEqual(z22["Z22K1"], "leaf")

    def test_non_function_call_is_z539(self):
        for zobject in ("just a string", {"Z1K1": "Z6", "Z6K1": "x"}, ["Z6", "a"],
                        {"Z1K1": "Z40", "Z40K1": "Z41"}):
            with self.subTest(zobject=zobject):
                status, _, z22 = h.evaluate(self.orch, zobject)
                err = self.assert_error(status, z22, "Z539")
                self.assertIn("The provided object is not a function call", error_texts(err))

    def test_invalid_zobject_is_z502(self):
        status, _, z22 = h.evaluate(self.orch, {"Z1K1": "Z7", "Z7K1": "Z801", "Z801K1": 5})
        self.assertEqual(status, 200)
        err = meta_pairs(z22)["errors"]
        self.assertEqual(ref(err["Z5K1"]), "Z502")
        self.assertIn("Z521", error_codes(err))

    def test_null_or_missing_zobject_is_void_without_errors(self):
        for body in ({"zobject": None}, {}, {"doValidate": True}):
            with self.subTest(body=body):
                status, _, z22 = h.post_json(self.orch.base + EVALUATE, body)
                meta = self.assert_envelope(status, z22)
                self.assertTrue(is_void(z22["Z22K1"]), z22)
                self.assertNotIn("errors", meta)
                for key in ("orchestrationMemoryUsage", "orchestrationCpuUsage", "orchestrationStartTime",
                            "orchestrationEndTime", "orchestrationDuration", "orchestrationHostname"):
                    self.assertIn(key, meta)
                self.assertNotIn("implementationType", meta)

    def test_z5_input_is_returned_as_the_error(self):
        z5 = {"Z1K1": "Z5", "Z5K1": "Z507", "Z5K2": {"Z1K1": {"Z1K1": "Z7", "Z7K1": "Z885", "Z885K1": "Z507"},
                                                   "Z507K1": "given by the caller"}}
        status, _, z22 = h.evaluate(self.orch, z5)
        err = self.assert_error(status, z22, "Z507")
        self.assertIn("given by the caller", error_texts(err))

    def test_get_on_evaluate_is_ok(self):
        status, _, body = h.request("GET", self.orch.base + EVALUATE)
        self.assertEqual((status, body), (200, b"OK"))

    def test_bad_input_is_counted_and_service_keeps_serving(self):
        before = metric(self.orch, "wf_http_requests_total", route="evaluate", status="400")
        self.post("{nope")
        self.assertEqual(metric(self.orch, "wf_http_requests_total", route="evaluate", status="400"), before + 1)
        self.assert_still_serving(self.orch)


# ---- cache --------------------------------------------------------------------------------------


class Cache(OrchestratorCase):
    """docs/compatibility.md: a cross-request object cache, off with cache_ttl 0."""

    def fetches_of(self, wiki, zid):
        return sum(zid in fetched_zids(r) for r in wiki.requests)

    def run_twice(self, ttl_ms):
        wiki = Scripted(wiki_handler(OBJECTS))
        evaluator = Scripted(evaluator_handler)
        orch = start_orchestrator(wiki, evaluator, ["--cache-ttl-ms", str(ttl_ms)])
        try:
            for _ in range(2):
                status, _, z22 = h.evaluate(orch, {"Z1K1": "Z7", "Z7K1": FN_FALLBACK, FN_FALLBACK + "K1": "x"})
                self.assertEqual(status, 200)
                self.assertEqual(z22["Z22K1"], "from the fake evaluator")
                status, _, z22 = h.evaluate(orch, echo(STORED_STRING))
                self.assertEqual(z22["Z22K1"], "a stored string")
            return self.fetches_of(wiki, FN_FALLBACK), self.fetches_of(wiki, "Z20101"), \
                self.fetches_of(wiki, STORED_STRING), len(evaluator.requests)
        finally:
            orch.stop()
            evaluator.close()
            wiki.close()

    def test_long_ttl_fetches_once(self):
        fn, impl, stored, evaluations = self.run_twice(600000)
        self.assertEqual((fn, impl, stored), (1, 1, 1))
        self.assertEqual(evaluations, 2, "results are never cached, only objects")

    def test_zero_ttl_fetches_every_time(self):
        fn, impl, stored, evaluations = self.run_twice(0)
        self.assertEqual((fn, impl, stored), (2, 2, 2))
        self.assertEqual(evaluations, 2)


# ---- calls that wait do not hold a thread; cancellation ----------------------------------------


class HoldingEvaluator:
    """A fake evaluator that answers FN_FAST at once and holds FN_SLOW calls until `release` is set
    (at most `hold_seconds`), noticing when the orchestrator closes a held connection."""

    def __init__(self, hold_seconds=30.0):
        self.hold_seconds = hold_seconds
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.held = 0      # FN_SLOW requests received
        self.closed = 0    # held requests whose connection the orchestrator closed
        self.answered = 0  # held requests answered
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                name = decode_code_request(body)["functionName"]
                if name == FN_SLOW and not outer.hold(self.connection):
                    self.close_connection = True
                    return
                payload = json.dumps({"Z1K1": z9("Z22"), "Z22K1": z6(name + " done"),
                                      "Z22K2": z9("Z24")}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # the listen backlog: 200 connections arrive at once
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), H)
        self.server.handle_error = lambda request, address: None
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.server.base = self.base  # as start_orchestrator expects of a fake
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def hold(self, conn):
        """Waits for `release`; False when the peer closed the connection first."""
        with self.lock:
            self.held += 1
        end = time.monotonic() + self.hold_seconds
        while not self.release.is_set() and time.monotonic() < end:
            readable, _, _ = select.select([conn], [], [], 0.05)
            if readable and conn.recv(1, socket.MSG_PEEK) == b"":
                with self.lock:
                    self.closed += 1
                return False
        with self.lock:
            self.answered += 1
        return True

    def count(self, name):
        with self.lock:
            return getattr(self, name)

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


FN_SLOW = "Z20401"
FN_FAST = "Z20402"
ASYNC_OBJECTS = dict(OBJECTS)
for _fn, _impl in ((FN_SLOW, "Z20411"), (FN_FAST, "Z20412")):
    ASYNC_OBJECTS[_fn] = function(_fn, [_impl])
    ASYNC_OBJECTS[_impl] = python_impl(_impl, _fn, f"def {_fn}({_fn}K1):\n    return {_fn}K1")


def code_call(fn, arg="x"):
    return {"Z1K1": "Z7", "Z7K1": fn, fn + "K1": arg}


def raw_evaluate(orch, zobject, headers=()):
    """Sends an evaluate request on a plain socket and returns the socket without reading."""
    body = json.dumps({"zobject": zobject, "doValidate": False}).encode()
    sock = socket.create_connection(("127.0.0.1", orch.port), timeout=10)
    head = [f"POST {EVALUATE} HTTP/1.1", f"Host: 127.0.0.1:{orch.port}",
            "Content-Type: application/json", f"Content-Length: {len(body)}"] + list(headers)
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    return sock


def read_answer(sock, timeout=20):
    """(status, body) of the one HTTP answer on `sock` (sent by raw_evaluate)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"the connection closed before an answer: {data[:200]!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split(b" ", 2)[1]), body


class AsyncCalls(OrchestratorCase):
    """Issue 7: evaluations waiting on an evaluator hold no thread, so slow calls do not delay fast
    ones; a client that hangs up or a deadline that passes stops the evaluation and closes its
    outstanding evaluator request; each is counted and logged with the trace id."""

    SLOW = 200  # concurrent slow calls (the server's default limits allow 256 in progress)

    @classmethod
    def setUpClass(cls):
        cls.wiki = Scripted(wiki_handler(ASYNC_OBJECTS))
        cls.evaluator = HoldingEvaluator()
        cls.orch = start_orchestrator(cls.wiki, cls.evaluator, ["--request-timeout-ms", "60000"])

    @classmethod
    def tearDownClass(cls):
        cls.orch.stop()
        cls.evaluator.close()
        cls.wiki.close()

    def cancelled(self, reason, orch=None):
        return metric(orch or self.orch, "wf_orchestrator_evaluations_cancelled_total", reason=reason)

    def test_slow_calls_do_not_delay_fast_ones(self):
        self.evaluator.release.clear()
        held_before = self.evaluator.count("held")
        slow_done = []  # (monotonic time, status, value)

        users = iter(range(self.SLOW))

        def slow():
            # One user per call: one client with 200 calls in flight is what the per-user limits
            # refuse (docs/limits.md); 200 users with one each is the load this test is about.
            status, _, z22 = h.evaluate(self.orch, code_call(FN_SLOW), timeout=90,
                                        headers={"X-Wikifunctions-User": f"slow-{next(users)}"})
            slow_done.append((time.monotonic(), status, z22.get("Z22K1") if z22 else None))

        threads = [threading.Thread(target=slow, daemon=True) for _ in range(self.SLOW)]
        for t in threads:
            t.start()
        try:
            all_held = h.wait_until(lambda: self.evaluator.count("held") >= held_before + self.SLOW, 60)
            self.assertTrue(all_held, f"only {self.evaluator.count('held') - held_before} of {self.SLOW} "
                                      "slow calls reached the evaluator at the same time")
            fast_done = []
            for i in range(20):
                status, _, z22 = h.evaluate(self.orch, code_call(FN_FAST, f"fast {i}"), timeout=60)
                self.assertEqual(status, 200)
                self.assertEqual(z22["Z22K1"], FN_FAST + " done", json.dumps(z22)[:1000])
                fast_done.append(time.monotonic())
            self.assertEqual(slow_done, [], "a slow call finished before the fast ones")
        finally:
            self.evaluator.release.set()
            for t in threads:
                t.join(90)
        self.assertEqual(len(slow_done), self.SLOW)
        self.assertTrue(all(s == 200 and v == FN_SLOW + " done" for _, s, v in slow_done), slow_done[:3])
        self.assertLess(max(fast_done), min(t for t, _, _ in slow_done))

    def test_hang_up_cancels_the_evaluator_request(self):
        self.evaluator.release.clear()
        held, closed = self.evaluator.count("held"), self.evaluator.count("closed")
        before = self.cancelled("client_gone")
        sock = raw_evaluate(self.orch, code_call(FN_SLOW), [f"traceparent: {TRACEPARENT}"])
        try:
            self.assertTrue(h.wait_until(lambda: self.evaluator.count("held") > held, 20))
        finally:
            sock.close()
        self.assertTrue(h.wait_until(lambda: self.evaluator.count("closed") > closed, 20),
                        "the orchestrator kept its evaluator request open after the client hung up")
        self.assertTrue(h.wait_until(lambda: self.cancelled("client_gone") >= before + 1, 10))
        self.assertTrue(h.wait_until(lambda: any(
            r.get("event.action") == "evaluation-cancelled" and r.get("trace.id") == TRACE_ID
            and r.get("event.reason") == "client_gone" for r in self.orch.log_records()), 10))
        self.assert_still_serving(self.orch)

    def test_deadline_cancels_the_evaluator_request(self):
        # 4 s: on a loaded machine a freshly started orchestrator's first call (its wiki fetch
        # included) has taken over 1.5 s to reach the evaluator, and a deadline that passes
        # before the evaluator request is sent leaves nothing to close.
        orch = start_orchestrator(self.wiki, self.evaluator, ["--request-timeout-ms", "4000"])
        try:
            self.evaluator.release.clear()
            held, closed = self.evaluator.count("held"), self.evaluator.count("closed")
            before = self.cancelled("deadline", orch)
            status, _, z22 = h.evaluate(orch, code_call(FN_SLOW), timeout=30)
            err = self.assert_error(status, z22, "Z558")
            self.assertEqual(text_of(err["Z5K2"]), "Function call timed out")
            self.assertGreater(self.evaluator.count("held"), held,
                               "the deadline passed before the call reached the evaluator")
            self.assertTrue(h.wait_until(lambda: self.evaluator.count("closed") > closed, 20),
                            "the orchestrator kept its evaluator request open after the deadline")
            self.assertTrue(h.wait_until(lambda: self.cancelled("deadline", orch) >= before + 1, 10))
        finally:
            orch.stop()


    def test_shutdown_cancels_calls_past_the_grace_and_exits_zero(self):
        """SIGTERM with calls waiting on the evaluator: past the grace each is answered 503 naming
        the shutdown, its evaluator request is closed, and the process exits 0."""
        # Every other timer that could end the calls or the process is far beyond the 90 s hang
        # guard of stop(): the evaluator's hold, the deadline, the idle and header timeouts. An
        # exit within the guard is the grace's doing.
        orch = start_orchestrator(self.wiki, self.evaluator, [
            "--shutdown-grace-ms", "500", "--request-timeout-ms", "600000",
            "--idle-timeout-ms", "600000", "--header-timeout-ms", "600000"])
        self.evaluator.release.clear()
        self.evaluator.hold_seconds = 600.0
        held, closed = self.evaluator.count("held"), self.evaluator.count("closed")
        answered = self.evaluator.count("answered")
        socks = [raw_evaluate(orch, code_call(FN_SLOW)) for _ in range(3)]
        try:
            self.assertTrue(h.wait_until(lambda: self.evaluator.count("held") >= held + 3, 60))
            code = orch.stop(grace=90)
            self.assertEqual(code, 0, "\n".join(orch.lines[-20:] + orch.stderr_lines[-20:]))
            for sock in socks:
                status, body = read_answer(sock)
                self.assertEqual(status, 503, body[:500])
                self.assertIn(b"shutting_down", body)
            self.assertTrue(h.wait_until(lambda: self.evaluator.count("closed") >= closed + 3, 30),
                            "the orchestrator kept its evaluator requests open after it stopped")
            self.assertEqual(self.evaluator.count("answered"), answered,
                             "the evaluator answered a held call: the calls did not end at the grace")
            # The grace of 500 ms (not the default 10 s) is what the drain waited for, and its end
            # is what cancelled the three calls.
            records = orch.log_records()
            messages = [r.get("message", "") for r in records]
            self.assertTrue(any(m.startswith("draining") and "waiting up to 500 ms for 3 in-flight"
                                in m for m in messages), [m for m in messages if "drain" in m])
            self.assertIn("shutdown grace period over with 3 requests still in flight: cancelling them",
                          messages)
            self.assertTrue(any(r.get("event.action") == "evaluation-cancelled"
                                and r.get("event.reason") == "shutdown" for r in records))
        finally:
            self.evaluator.hold_seconds = 30.0
            self.evaluator.release.set()
            for sock in socks:
                sock.close()

    def test_shutdown_lets_calls_finish_within_the_grace(self):
        orch = start_orchestrator(self.wiki, self.evaluator, ["--shutdown-grace-ms", "20000"])
        self.evaluator.release.clear()
        held = self.evaluator.count("held")
        socks = [raw_evaluate(orch, code_call(FN_SLOW)) for _ in range(3)]
        try:
            self.assertTrue(h.wait_until(lambda: self.evaluator.count("held") >= held + 3, 20))
            orch.proc.send_signal(signal.SIGTERM)
            self.assertTrue(h.wait_until(lambda: any(
                "draining" in line for line in orch.lines), 10))
            self.evaluator.release.set()
            for sock in socks:
                status, body = read_answer(sock)
                self.assertEqual(status, 200, body[:500])
                self.assertEqual(json.loads(body)["Z22K1"], FN_SLOW + " done")
            self.assertEqual(orch.proc.wait(20), 0)
        finally:
            self.evaluator.release.set()
            for sock in socks:
                sock.close()
            orch.stop()

    def test_evaluations_in_progress_are_bounded(self):
        orch = start_orchestrator(self.wiki, self.evaluator, ["--max-pending-work", "2"])
        self.evaluator.release.clear()
        held = self.evaluator.count("held")
        socks = []
        try:
            socks = [raw_evaluate(orch, code_call(FN_SLOW)) for _ in range(2)]
            self.assertTrue(h.wait_until(lambda: self.evaluator.count("held") >= held + 2, 20))
            status, headers, body = h.request(
                "POST", orch.base + EVALUATE, json.dumps({"zobject": code_call(FN_FAST)}),
                {"Content-Type": "application/json"})
            self.assertEqual(status, 503, body[:500])
            self.assertEqual(headers.get("retry-after"), "1")
            self.assertIn(b"max_pending_work", body)
            # Calls of built-ins only run on the event loop and are not limited.
            self.assertEqual(h.evaluate(orch, echo("still"))[2]["Z22K1"], "still")
        finally:
            self.evaluator.release.set()
            for sock in socks:
                sock.close()
            orch.stop()


# ---- inputs that used to crash ------------------------------------------------------------------

DEFINITIONS_2026 = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                                 "..", "shared", "reference", "definitions-2026"))


def definitions_wiki_handler(extra):
    """A wiki serving the predefined objects of definitions-2026 (and `extra`)."""
    def answer(method, path, body):
        query = urllib.parse.parse_qs(urllib.parse.urlparse(path).query)
        out = {}
        for zid in query.get("zids", [""])[0].split("|"):
            if zid in extra:
                out[zid] = {"wikilambda_fetch": json.dumps(extra[zid])}
                continue
            file = os.path.join(DEFINITIONS_2026, zid + ".json")
            if re.fullmatch(r"Z[1-9]\d*", zid) and os.path.exists(file):
                with open(file) as f:
                    out[zid] = {"wikilambda_fetch": f.read()}
        return 200, "application/json", json.dumps(out).encode()
    return answer


LOOP = "Z20500"  # Z20500(x) = Z20500(x)
LOOP_OBJECTS = {LOOP: persisted(LOOP, {
    "Z1K1": "Z8",
    "Z8K1": ["Z17", {"Z1K1": "Z17", "Z17K1": "Z1", "Z17K2": LOOP + "K1", "Z17K3": {"Z1K1": "Z12", "Z12K1": ["Z11"]}}],
    "Z8K2": "Z1", "Z8K3": ["Z20"],
    "Z8K4": ["Z14", {"Z1K1": "Z14", "Z14K1": LOOP,
                     "Z14K2": {"Z1K1": "Z7", "Z7K1": LOOP, LOOP + "K1": {"Z1K1": "Z18", "Z18K1": LOOP + "K1"}}}],
    "Z8K5": LOOP})}


class NoCrash(OrchestratorCase):
    """Issue 7 item 5: a self-referential enum value and the deepest accepted call depth answer
    with a value or a Z5; the service keeps running."""

    @classmethod
    def setUpClass(cls):
        if not os.path.isdir(DEFINITIONS_2026):
            raise unittest.SkipTest(f"needs {DEFINITIONS_2026}")
        cls.wiki = Scripted(definitions_wiki_handler(LOOP_OBJECTS))
        cls.evaluator = Scripted(evaluator_handler)
        cls.orch = start_orchestrator(cls.wiki, cls.evaluator,
                                      ["--max-call-depth", "10000", "--max-steps", "100000000"])

    @classmethod
    def tearDownClass(cls):
        cls.orch.stop()
        cls.evaluator.close()
        cls.wiki.close()

    def test_enum_value_that_refers_to_itself_passed_to_code(self):
        z8 = {"Z1K1": "Z8",
              "Z8K1": ["Z17", {"Z1K1": "Z17", "Z17K1": "Z6020", "Z17K2": "Z10001K1",
                               "Z17K3": {"Z1K1": "Z12", "Z12K1": ["Z11"]}}],
              "Z8K2": "Z6", "Z8K3": ["Z20"],
              "Z8K4": ["Z14", {"Z1K1": "Z14", "Z14K1": "Z10001",
                               "Z14K3": {"Z1K1": "Z16", "Z16K1": {"Z1K1": "Z61", "Z61K1": "python-3"},
                                         "Z16K2": "def Z10001(Z10001K1):\n    return 'x'"}}],
              "Z8K5": "Z10001"}
        status, _, z22 = h.evaluate(self.orch, {"Z1K1": "Z7", "Z7K1": z8, "Z10001K1": "Z6021"}, timeout=30)
        self.assertEqual(status, 200)
        self.assertEqual(z22["Z22K1"], "from the fake evaluator", json.dumps(z22)[:1500])
        status, _, z22 = h.evaluate(self.orch, echo("Z6021"), timeout=30)
        self.assertEqual(status, 200)
        self.assertIn("Z6020", json.dumps(z22["Z22K1"]))
        self.assert_still_serving(self.orch)

    def test_deepest_accepted_call_depth_is_a_z5(self):
        status, _, z22 = h.evaluate(self.orch, {"Z1K1": "Z7", "Z7K1": LOOP, LOOP + "K1": "x"}, timeout=60)
        err = self.assert_error(status, z22, "Z507")
        self.assertIn("Call depth limit exceeded: more than 10000", error_texts(err))
        self.assert_still_serving(self.orch)


# ---- the wiki is authoritative ------------------------------------------------------------------


class WikiIsAuthoritative(OrchestratorCase):
    """With a wiki configured (and no --objects-dir) Z10001 comes from the wiki, not from the bundled
    example library (its ZIDs are real community functions on wikifunctions.org); without a wiki the
    example library, found beside the binary, is the default."""

    def test_with_a_wiki_its_z10001_wins(self):
        objects = {"Z10001": function("Z10001", ["Z10101"]), "Z10101": persisted("Z10101", {
            "Z1K1": "Z14", "Z14K1": "Z10001",
            "Z14K2": {"Z1K1": "Z7", "Z7K1": "Z801", "Z801K1": "the wiki's Z10001"}})}
        wiki = Scripted(wiki_handler(objects))
        orch = h.Service("wf-orchestrator", ["--wiki-api-url", wiki.server.base + "/w/api.php"])
        try:
            status, _, z22 = h.evaluate(orch, {"Z1K1": "Z7", "Z7K1": "Z10001", "Z10001K1": "abc"}, timeout=20)
        finally:
            orch.stop()
            wiki.close()
        self.assert_envelope(status, z22)
        self.assertEqual(z22["Z22K1"], "the wiki's Z10001", json.dumps(z22)[:1500])
        self.assertTrue(any("Z10001" in fetched_zids(r) for r in wiki.requests))

    def test_without_a_wiki_the_example_library_serves_z10001(self):
        orch = h.Service("wf-orchestrator", [])
        try:
            status, _, z22 = h.evaluate(orch, {"Z1K1": "Z7", "Z7K1": "Z10001", "Z10001K1": "abc"}, timeout=20)
        finally:
            orch.stop()
        self.assert_envelope(status, z22)
        self.assertEqual(z22["Z22K1"], "cba", json.dumps(z22)[:1500])


# ---- the result cache (docs/result-cache.md) ----------------------------------------------------


class ResultCache(OrchestratorCase):
    def setUp(self):
        self.objects = dict(OBJECTS)
        self.wiki = Scripted(wiki_handler(self.objects))
        self.evaluator = Scripted(evaluator_handler)
        self.services = []

    def tearDown(self):
        for s in self.services:
            s.stop()
        self.evaluator.close()
        self.wiki.close()

    def start(self, extra=(), cache_ttl_ms=0):
        s = start_orchestrator(self.wiki, self.evaluator, ["--cache-ttl-ms", str(cache_ttl_ms)] + list(extra),
                               result_cache=True)
        self.services.append(s)
        return s

    def code_call(self, orch, arg, body_extra=None, full=False):
        body = {"zobject": {"Z1K1": "Z7", "Z7K1": FN_CODE_ONLY, FN_CODE_ONLY + "K1": arg}, "doValidate": False}
        body.update(body_extra or {})
        status, _, raw = h.request("POST", orch.base + EVALUATE, json.dumps(body), {"Content-Type": "application/json"},
                                   timeout=30)
        z22 = json.loads(raw)
        meta = self.assert_envelope(status, z22)
        self.assertEqual(z22["Z22K1"], "from the fake evaluator", json.dumps(z22)[:1500])
        return (meta.get("resultCache"), meta) if full else meta.get("resultCache")

    def evaluator_calls(self):
        return len(self.evaluator.requests)

    def test_a_repeated_python_call_reaches_the_evaluator_once(self):
        orch = self.start()
        self.assertIsNone(self.code_call(orch, "a"))
        self.assertEqual(text_of(self.code_call(orch, "a")), "local")
        self.assertEqual(self.evaluator_calls(), 1)
        # "run again": the opt-out evaluates anew
        self.assertIsNone(self.code_call(orch, "a", {"resultCache": False}))
        self.assertEqual(self.evaluator_calls(), 2)
        metrics = h.request("GET", orch.base + "/metrics")[2].decode()
        self.assertRegex(metrics, r'wf_orchestrator_result_cache_hits_total\{tier="local"\} 1')

    def test_an_edit_on_the_wiki_is_not_served_stale(self):
        orch = self.start()
        self.code_call(orch, "a")
        self.objects["Z20201"] = python_impl("Z20201", FN_CODE_ONLY, "def Z20002(Z20002K1):\n    return 'edited'")
        self.assertIsNone(self.code_call(orch, "a"))
        self.assertEqual(self.evaluator_calls(), 2)
        self.assertEqual(text_of(self.code_call(orch, "a")), "local")
        self.assertEqual(self.evaluator_calls(), 2)

    def test_with_the_object_cache_on_a_repeated_body_is_served_with_the_run_metadata(self):
        # The object cache on: a repeated body is answered from stored text on the event loop
        # (docs/result-cache.md, "The fast path of a hit"); the answer is the one the run gave.
        orch = self.start(cache_ttl_ms=300000)
        tier, first = self.code_call(orch, "a", full=True)
        self.assertIsNone(tier)
        for _ in range(3):
            tier, meta = self.code_call(orch, "a", full=True)
            self.assertEqual(text_of(tier), "local")
            self.assertEqual(set(meta), set(first) | {"resultCache"})
            for key, value in first.items():
                if not key.startswith("orchestration"):
                    self.assertEqual(meta[key], value, key)
            self.assertRegex(text_of(meta["orchestrationCpuUsage"]), r"^\d+(\.\d+)? ms$")
        self.assertEqual(self.evaluator_calls(), 1)
        self.assertIsNone(self.code_call(orch, "a", {"resultCache": False}))  # the opt-out still runs
        self.assertEqual(self.evaluator_calls(), 2)
        metrics = h.request("GET", orch.base + "/metrics")[2].decode()
        self.assertRegex(metrics, r'wf_orchestrator_result_cache_hits_total\{tier="local"\} 3')
        self.assertRegex(metrics, r'wf_orchestrator_calls_total\{outcome="ok"\} 5')

    def test_with_the_object_cache_on_an_edit_is_served_once_the_object_cache_sees_it(self):
        orch = self.start(cache_ttl_ms=400)
        self.assertIsNone(self.code_call(orch, "a"))
        self.assertEqual(text_of(self.code_call(orch, "a")), "local")
        self.objects["Z20201"] = python_impl("Z20201", FN_CODE_ONLY, "def Z20002(Z20002K1):\n    return 'edited'")
        time.sleep(0.6)  # the object cache's entries expire: the edit is seen
        self.assertIsNone(self.code_call(orch, "a"))
        self.assertEqual(self.evaluator_calls(), 2)
        self.assertEqual(text_of(self.code_call(orch, "a")), "local")
        self.assertEqual(self.evaluator_calls(), 2)

    def test_memcached_shares_results_between_replicas_and_its_absence_costs_nothing(self):
        mc = h.Memcached()
        try:
            # The longest memcached timeout allowed: the default 20 ms measures a loaded machine
            # (B's lookup times out: a miss, and the evaluator is called twice). Its absence below
            # costs a refused connection, not the timeout.
            shared = ["--memcached-servers", mc.servers, "--memcached-timeout-ms", "1000"]
            a = self.start(shared)
            b = self.start(shared)
            self.assertIsNone(self.code_call(a, "shared"))
            # A stores in the background: wait until memcached holds the entry, then ask B.
            self.assertTrue(h.wait_until(lambda: mc.items() >= 1, 10), "A never stored its result")
            self.assertEqual(text_of(self.code_call(b, "shared")), "memcached")
            self.assertEqual(self.evaluator_calls(), 1)
        finally:
            mc.stop()
        # memcached gone: every call is answered, by the evaluator (a miss in both tiers, counted),
        # and no lookup waited for the 1 s timeout (a stopwatch over the five calls could not tell
        # one timeout per call from a slow machine): each call's time in the result cache, as the
        # orchestrator measured it, is under the timeout, which a lookup that waits for it reaches.
        before = self.evaluator_calls()
        metrics = lambda: h.request("GET", b.base + "/metrics")[2].decode()
        misses = lambda: float(re.search(r"^wf_orchestrator_result_cache_misses_total (\S+)$", metrics(), re.M)[1])
        misses_before = misses()
        memcached_hits = re.search(r'^wf_orchestrator_result_cache_hits_total\{tier="memcached"\} (\S+)$',
                                   metrics(), re.M)[1]
        for i in range(5):
            tier, meta = self.code_call(b, f"after {i}", full=True)
            self.assertIsNone(tier)
            cache_ms = float(text_of(meta["orchestrationCacheDuration"]).removesuffix(" ms"))
            self.assertLess(cache_ms, 1000, meta)
        self.assertEqual(self.evaluator_calls(), before + 5)
        self.assertEqual(misses(), misses_before + 5)
        self.assertRegex(metrics(), rf'wf_orchestrator_result_cache_hits_total\{{tier="memcached"\}} {memcached_hits}\n')


if __name__ == "__main__":
    unittest.main()
