"""Starts the real wf-orchestrator / wf-evaluator binaries on free loopback ports for tests.

Each service is started with --port 0; the harness reads its ECS JSON log from stdout, learns the
bound port (and the admin listener's, wf.admin.port) from the "listening on" line, keeps every log
line for inspection, and stops the service (SIGTERM, then SIGKILL after a grace period) when the test is done.
"""

import json
import os
import re
import shutil
import socket
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BIN_DIR = os.environ.get("WF_BIN_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build", "bin"))


class Service:
    """One running binary with its captured log lines."""

    def __init__(self, name, args, env=None, start_timeout=30.0):
        self.name = name
        self.lines = []  # raw stdout lines
        self.stderr_lines = []
        self.port = None
        self.admin_port = None  # the admin listener (/_admin/*), from the same log line
        self._port_ready = threading.Event()
        full_env = dict(os.environ)
        for k in ("PORT", "WIKI_API_URL", "FUNCTION_EVALUATOR_URL", "ORCHESTRATOR_CONFIG", "WF_CONFIG"):
            full_env.pop(k, None)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [os.path.join(BIN_DIR, name), "--port", "0"] + list(args),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env, text=True, errors="replace")
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        if not self._port_ready.wait(start_timeout):
            self.stop()
            raise RuntimeError(f"{name} did not report a port within {start_timeout}s; "
                               f"stdout: {self.lines[-20:]} stderr: {self.stderr_lines[-20:]}")
        self.base = f"http://127.0.0.1:{self.port}"
        self.admin = f"http://127.0.0.1:{self.admin_port}" if self.admin_port else None

    def _read_stdout(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if self.port is None:
                try:
                    j = json.loads(line)
                except ValueError:
                    continue
                if "server.port" in j:
                    self.admin_port = j.get("wf.admin.port") or None
                    self.port = j["server.port"]
                    self._port_ready.set()

    def _read_stderr(self):
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip("\n"))

    def log_records(self):
        """Every stdout line parsed as JSON (raises if one is not JSON)."""
        return [json.loads(l) for l in list(self.lines) if l.strip()]

    def stop(self, grace=10.0):
        """SIGTERM, wait up to `grace` seconds, then SIGKILL. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def request(method, url, body=None, headers=None, timeout=30.0):
    """Returns (status, headers dict lower-cased, body bytes)."""
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, {k.lower(): v for k, v in res.headers.items()}, res.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def post_json(url, obj, headers=None, timeout=30.0):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    status, hdrs, body = request("POST", url, json.dumps(obj), h, timeout)
    return status, hdrs, json.loads(body) if body else None


def evaluate(orchestrator, zobject, do_validate=False, headers=None, timeout=30.0):
    url = orchestrator.base + "/wikifunctions.org/v1/evaluate/"
    return post_json(url, {"zobject": zobject, "doValidate": do_validate}, headers, timeout)




def z6(s):
    return {"Z1K1": "Z6", "Z6K1": s}


def z9(s):
    return {"Z1K1": "Z9", "Z9K1": s}


def ref(v):
    """The ZID a canonical or normal reference names, else None."""
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and v.get("Z1K1") in ("Z9", {"Z1K1": "Z9", "Z9K1": "Z9"}):
        return v.get("Z9K1")
    return None


def text_of(v):
    """The text of a canonical or normal Z6, else None."""
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and ref(v.get("Z1K1")) == "Z6":
        return v.get("Z6K1")
    return None


def list_items(node):
    """The elements of a normal-form typed list (a linked list of K1/K2 nodes)."""
    out = []
    while isinstance(node, dict) and "K1" in node:
        out.append(node["K1"])
        node = node.get("K2")
    return out


def metadata(z22):
    """Z22K2 as {key: value}, for the canonical (typed list) and the normal (linked list) form."""
    meta = z22.get("Z22K2") if isinstance(z22, dict) else None
    if not isinstance(meta, dict):
        return {}
    node = meta.get("K1")
    pairs = node[1:] if isinstance(node, list) else list_items(node)
    return {text_of(pair["K1"]): pair["K2"] for pair in pairs}


class FakeServer:
    """A tiny HTTP server on a free loopback port whose answers a test scripts with `handler`.

    handler(method, path, headers, body) -> (status, content_type, body bytes), optionally with a
    fourth element, a dict of extra response headers, or None to drop the connection without
    answering. Records every request in `requests`.
    """

    def __init__(self, handler):
        self.requests = []
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _serve(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                outer.requests.append({"method": self.command, "path": self.path,
                                       "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                answer = handler(self.command, self.path, self.headers, body)
                if answer is None:
                    self.close_connection = True
                    return
                status, ctype, payload = answer[:3]
                self.send_response(status)
                for name, value in (answer[3] if len(answer) > 3 else {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _serve
            do_POST = _serve

        class Server(ThreadingHTTPServer):
            # The listen backlog. socketserver's default is 5: when a test sends a hundred calls
            # at once and the accepting thread is slow (a loaded machine), the kernel drops the
            # connections beyond it and the client retries them 1, 2, 4, ... 32 s later. Session
            # 14's CI lost 12 of 120 parked calls for over 60 s that way.
            request_queue_size = 1024

        self.server = Server(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def wait_until(predicate, timeout=10.0, interval=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


MEMCACHED = shutil.which("memcached") or "/usr/bin/memcached"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Memcached:
    """A real memcached on a free loopback port, stopped by the test (stop()).

    The port is found free, then memcached binds it: in between, another process can take it (a
    client's connection, another test's memcached under ctest -j). Then this memcached exits, and
    the port may even answer for the other one. Ready means that the memcached answering on the
    port is this one (the pid in its stats); when it exited instead, it starts again on another
    port."""

    def __init__(self, attempts=10, timeout=30):
        exits = []
        for _ in range(attempts):
            self.port = free_port()
            args = [MEMCACHED, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "16"]
            if os.geteuid() == 0:
                args += ["-u", "nobody"]  # memcached refuses to run as root without -u
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_until(lambda: self.proc.poll() is not None or self._pid() == self.proc.pid, timeout)
            if self.proc.poll() is None and self._pid() == self.proc.pid:
                return
            if self.proc.poll() is None:  # alive, and never answered within the timeout
                self.stop()
                raise RuntimeError(f"memcached did not answer on port {self.port} within {timeout} s")
            exits.append(f"port {self.port}: exit {self.proc.returncode}")
        raise RuntimeError(f"memcached did not start in {attempts} tries ({'; '.join(exits)})")

    def _pid(self):
        """The pid in the stats of the memcached answering on the port, or None."""
        try:
            m = re.search(rb"STAT pid (\d+)", self._command(b"stats", timeout=0.5))
        except OSError:
            return None
        return int(m.group(1)) if m else None

    @property
    def servers(self):
        return f"127.0.0.1:{self.port}"

    def _command(self, line, timeout=2):
        """The answer to one text-protocol command that ends with END."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as c:
            c.sendall(line + b"\r\n")
            data = b""
            while not data.endswith(b"END\r\n"):
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
        return data

    def items(self):
        """curr_items of memcached's stats (text protocol)."""
        m = re.search(rb"STAT curr_items (\d+)", self._command(b"stats"))
        return int(m.group(1)) if m else 0

    def values(self, pattern):
        """{key: value} of the stored keys that match the regular expression `pattern` (keys
        listed by `lru_crawler metadump all`, values read with get)."""
        keys = [urllib.parse.unquote(k.decode()) for k in
                re.findall(rb"^key=(\S+)", self._command(b"lru_crawler metadump all"), re.M)]
        out = {}
        for key in (k for k in keys if re.search(pattern, k)):
            m = re.search(rb"^VALUE \S+ \d+ \d+\r\n(.*?)\r\nEND", self._command(b"get " + key.encode()),
                          re.S | re.M)
            if m:
                out[key] = m.group(1).decode().strip()
        return out

    def freeze(self):
        """Stops the process (SIGSTOP): the kernel still takes connections, nothing answers."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self):
        """Continues a frozen process (SIGCONT)."""
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            os.kill(self.proc.pid, signal.SIGCONT)  # a frozen one handles SIGTERM once continued
            self.proc.wait(timeout=10)
