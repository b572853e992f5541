"""wf-fake-evaluator answers what bench/slow_calls' asyncio fake answers (ctest
integration.fake_evaluator; WF_BIN_DIR names the binaries' directory, as for tests/integration).

Byte for byte on the same requests; with --answer-file, what bench/orchestrator_cpu's asyncio
fake answers (a real evaluator's Z22), at once and after a hold; a slow call held (counted in /stats' "held") then answered, or
counted "closed" when its client hangs up first; hundreds held at once; bad requests answered with
their error and the connection closed. Loopback only; no assertion on how long anything took
beyond "a held call is not answered before its shortest hold"."""
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
BIN_DIR = os.environ.get("WF_BIN_DIR", os.path.join(HERE, "..", "..", "build", "bin"))
SLOW_CALLS = os.path.join(HERE, "..", "slow_calls")
ORCHESTRATOR_CPU = os.path.join(HERE, "..", "orchestrator_cpu")
EVALUATE = "/wikifunctions.org/v1/evaluate/"
BOUND_S = 60  # the overall bound of every wait for a condition (a loaded machine is slow)


def start(kind, hold, tmp, extra=()):
    """Starts a fake with `hold` s ± 20%; returns (process, port). kind: cpp (with `extra` flags),
    python (bench/slow_calls'), python-cpu (bench/orchestrator_cpu's: `hold` exactly, every call)."""
    port_file = os.path.join(tmp, kind + "-port")
    cmd = {"cpp": [os.path.join(BIN_DIR, "wf-fake-evaluator"), "--port-file", port_file,
                   "--hold", str(hold)] + list(extra),
           "python": [sys.executable, SLOW_CALLS, "--serve-fake-evaluator", port_file, "--hold",
                      str(hold)],
           "python-cpu": [sys.executable, ORCHESTRATOR_CPU, "--serve-fake", port_file, "--hold",
                          str(hold)]}[kind]
    proc = subprocess.Popen(cmd)
    end = time.monotonic() + BOUND_S
    while not os.path.exists(port_file):
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            raise AssertionError(f"{cmd} did not report its port (status {proc.poll()})")
        time.sleep(0.02)
    with open(port_file) as f:
        return proc, int(f.read())


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=BOUND_S)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def request(method, path, body=b""):
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def split_answer(data):
    """(answer, rest) when `data` starts with a whole answer (its head and a Content-Length body),
    else None."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    length = re.search(rb"\r\ncontent-length:[ \t]*(\d+)", data[:end], re.IGNORECASE)
    total = end + 4 + (int(length.group(1)) if length else 0)
    return (data[:total], data[total:]) if len(data) >= total else None


def read_answer(sock, buffered=b""):
    """One answer's bytes and what was read past it (a pipelined answer's start)."""
    data = buffered
    while (parts := split_answer(data)) is None:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed after {data[:300]!r}")
        data += chunk
    return parts


def stats(port):
    with connect(port) as s:
        s.sendall(request("GET", "/stats"))
        answer, _ = read_answer(s)
    return json.loads(answer.partition(b"\r\n\r\n")[2])


def wait_for(what, condition):
    end = time.monotonic() + BOUND_S
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"not within {BOUND_S} s: {what}")
        time.sleep(0.02)


def closed_by_peer(sock):
    """True once the peer has closed the connection (recv gives b"" after any bytes it sent)."""
    sock.settimeout(BOUND_S)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


class FakeEvaluatorTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            p.kill()
            p.wait()
        self.tmp.cleanup()

    def fake(self, kind, hold, extra=()):
        proc, port = start(kind, hold, self.tmp.name, extra)
        self.procs.append(proc)
        return port

    def test_answer_file_gives_the_same_bytes_as_orchestrator_cpus_fake(self):
        """bench/orchestrator_cpu --fake cpp: with its canned Z22 as --answer-file, the C++ fake
        answers what the asyncio fake of orchestrator_cpu answers, at once (--hold 0) and for a
        held call (under /slow/, as orchestrator_cpu --call slow sends them)."""
        answer_file = os.path.join(self.tmp.name, "answer.json")
        canned = subprocess.run([sys.executable, "-c", (
            "import importlib.machinery, json, sys; "
            f"m = importlib.machinery.SourceFileLoader('ocpu', {ORCHESTRATOR_CPU!r}).load_module(); "
            "sys.stdout.write(json.dumps(m.canned_z22(), separators=(',', ':')))")],
            capture_output=True, check=True, timeout=BOUND_S).stdout
        self.assertIn(b'"Z6K1":"HELLO"', canned)
        with open(answer_file, "wb") as f:
            f.write(canned)
        body = b'{"codingLanguage":"python-3","functionName":"Z10002"}'
        answers = {}
        for kind, hold, path in (("python-cpu", 0, EVALUATE), ("cpp", 0, EVALUATE),
                                 ("python-cpu", 0.05, EVALUATE), ("cpp", 0.05, "/slow" + EVALUATE)):
            extra = ["--jitter", "0", "--answer-file", answer_file] if kind == "cpp" else []
            port = self.fake(kind, hold, extra)
            with connect(port) as s:
                s.sendall(request("POST", path, body))
                answer, rest = read_answer(s)
                self.assertEqual(rest, b"")
                answers[(kind, hold)] = answer
        self.assertTrue(answers[("cpp", 0)].endswith(b"\r\n\r\n" + canned), answers[("cpp", 0)][:300])
        self.assertEqual(answers[("cpp", 0)], answers[("python-cpu", 0)])
        self.assertEqual(answers[("cpp", 0.05)], answers[("python-cpu", 0.05)])
        self.assertEqual(stats(port), {"held": 0, "answered": 1, "closed": 0})

    def test_an_unreadable_answer_file_stops_the_start(self):
        missing = os.path.join(self.tmp.name, "missing.json")
        empty = os.path.join(self.tmp.name, "empty.json")
        open(empty, "w").close()
        for path in (missing, empty):
            r = subprocess.run([os.path.join(BIN_DIR, "wf-fake-evaluator"), "--port-file",
                                os.path.join(self.tmp.name, "port"), "--answer-file", path],
                               capture_output=True, text=True, timeout=BOUND_S)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(f"cannot read an answer from {path}", r.stderr)
            self.assertFalse(os.path.exists(os.path.join(self.tmp.name, "port")))

    def test_same_bytes_as_the_asyncio_fake(self):
        """Fast call, /stats, a held slow call, /stats again: on one keep-alive connection each,
        the C++ and the asyncio fake answer the same bytes."""
        body = b'{"codingLanguage":"python-3","functionName":"Z1"}'
        script = [request("POST", "/fast" + EVALUATE, body), request("GET", "/stats"),
                  request("POST", "/slow" + EVALUATE, body), request("GET", "/stats"),
                  request("POST", "/other", b"")]
        answers = {}
        for kind in ("cpp", "python"):
            port = self.fake(kind, 0.05)
            with connect(port) as s:
                answers[kind] = []
                for r in script:
                    s.sendall(r)
                    answers[kind].append(read_answer(s)[0])
        self.assertEqual(answers["cpp"], answers["python"])
        self.assertIn(b'"Z6K1": "done"', answers["cpp"][0])
        self.assertTrue(answers["cpp"][3].endswith(b'{"held": 0, "answered": 1, "closed": 0}'))

    def test_slow_call_held_then_answered(self):
        hold = 0.5
        port = self.fake("cpp", hold)
        with connect(port) as s:
            sent = time.monotonic()
            s.sendall(request("POST", "/slow" + EVALUATE, b"{}"))
            wait_for("the call held", lambda: stats(port)["held"] == 1)
            answer, rest = read_answer(s)
            self.assertGreaterEqual(time.monotonic() - sent, hold * 0.8)
            self.assertIn(b'"Z6K1": "done"', answer)
            self.assertEqual(rest, b"")
            self.assertEqual(stats(port), {"held": 0, "answered": 1, "closed": 0})
            # The connection stays open for the next call.
            s.sendall(request("POST", "/fast" + EVALUATE, b"{}"))
            self.assertIn(b'"Z6K1": "done"', read_answer(s)[0])

    def test_hang_up_while_held_counts_closed(self):
        port = self.fake("cpp", 600)  # never answered within the test
        s = connect(port)
        s.sendall(request("POST", "/slow" + EVALUATE, b"{}"))
        wait_for("the call held", lambda: stats(port)["held"] == 1)
        s.close()
        wait_for("the hang-up counted", lambda: stats(port) == {"held": 0, "answered": 0, "closed": 1})
        # Bytes sent on while a call is held end it too (as the asyncio fake's read(1) does).
        with connect(port) as s:
            s.sendall(request("POST", "/slow" + EVALUATE, b"{}"))
            wait_for("the call held", lambda: stats(port)["held"] == 1)
            s.sendall(request("POST", "/fast" + EVALUATE, b"{}"))
            self.assertTrue(closed_by_peer(s))
        self.assertEqual(stats(port), {"held": 0, "answered": 0, "closed": 2})

    def test_many_held_at_once_each_answered_once(self):
        n, hold = 300, 1.0
        port = self.fake("cpp", hold)
        socks = [connect(port) for _ in range(n)]
        try:
            for s in socks:
                s.sendall(request("POST", "/slow" + EVALUATE, b"{}"))
            wait_for(f"{n} answered", lambda: stats(port)["answered"] == n)
            for s in socks:
                answer, rest = read_answer(s)
                self.assertIn(b'"Z6K1": "done"', answer)
                self.assertEqual(rest, b"")
            self.assertEqual(stats(port), {"held": 0, "answered": n, "closed": 0})
        finally:
            for s in socks:
                s.close()

    def test_pipelined_requests_answered_in_order(self):
        port = self.fake("cpp", 600)
        with connect(port) as s:
            s.sendall(request("POST", "/fast" + EVALUATE, b"{}") + request("GET", "/stats"))
            first, rest = read_answer(s)
            second, rest = read_answer(s, rest)
            self.assertIn(b'"Z6K1": "done"', first)
            self.assertTrue(second.endswith(b'{"held": 0, "answered": 0, "closed": 0}'))

    def test_bad_requests_get_their_error_and_a_close(self):
        port = self.fake("cpp", 600)
        cases = [(b"GARBAGE\r\n\r\n", b"400 Bad Request", b"not an HTTP/1.x request line"),
                 (b"POST /fast/ HTTP/1.1\r\nContent-Length: x1\r\n\r\n", b"400 Bad Request",
                  b"Content-Length is not a number"),
                 (b"POST /fast/ HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
                  b"413 Content Too Large", b"a body over 16 MiB"),
                 (b"POST /fast/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"501 Not Implemented",
                  b"Content-Length"),
                 (b"GET /stats HTTP/1.1\r\nX: " + b"a" * (70 << 10), b"431 Request Header Fields Too Large",
                  b"64 KiB")]
        for data, status, why in cases:
            with self.subTest(status=status, why=why), connect(port) as s:
                s.sendall(data)
                answer, _ = read_answer(s)
                self.assertTrue(answer.startswith(b"HTTP/1.1 " + status + b"\r\n"), answer)
                self.assertIn(b"Connection: close", answer)
                self.assertIn(why, answer)
                self.assertTrue(closed_by_peer(s))
        self.assertEqual(stats(port), {"held": 0, "answered": 0, "closed": 0})


if __name__ == "__main__":
    unittest.main()
