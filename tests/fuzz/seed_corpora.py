#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/<target>/ from the repository's own test data
(orchestrator/objects, the bundled definitions) and, when ../shared is beside the repository, the
evaluator conformance requests. Run once; the corpora are committed, with whatever regression
inputs fuzzing found (named regress-*) added by hand.

    tests/fuzz/seed_corpora.py
"""
import base64
import glob
import hashlib
import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "fuzz" / "corpus"
CASES = REPO.parent / "shared" / "conformance" / "cases" / "evaluator"


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / ("seed-" + hashlib.sha1(data).hexdigest()[:16])).write_bytes(data)


def small_objects(limit=12):
    files = sorted(glob.glob(str(REPO / "orchestrator" / "objects" / "Z*.json")))
    files += sorted(glob.glob(str(REPO / "orchestrator" / "engine" / "definitions" / "Z*.json")))
    out = [Path(f).read_text() for f in files]
    out.sort(key=len)
    return out[:limit] + out[-3:]


def zobjects():
    calls = [
        {"Z1K1": "Z7", "Z7K1": "Z801", "Z801K1": "hi"},
        {"Z1K1": "Z7", "Z7K1": "Z802", "Z802K1": {"Z1K1": "Z40", "Z40K1": "Z41"}, "Z802K2": "a", "Z802K3": "b"},
        {"Z1K1": "Z7", "Z7K1": "Z10001", "Z10001K1": ["Z6", "a", "b"]},
        {"Z1K1": {"Z1K1": "Z9", "Z9K1": "Z7"}, "Z7K1": {"Z1K1": "Z9", "Z9K1": "Z801"},
         "Z801K1": {"Z1K1": "Z6", "Z6K1": "x"}},
        {"Z1K1": "Z99", "Z99K1": {"a": [1, 2.5, True, None]}},
        ["Z1", "Z6", {"Z1K1": "Z11", "Z11K1": "Z1002", "Z11K2": "text"}],
        {"Z1K1": "Z5", "Z5K1": "Z507", "Z5K2": {"Z1K1": "Z507", "Z507K1": "msg"}},
    ]
    return [json.dumps(c) for c in calls] + small_objects()


def main():
    for z in zobjects():
        put("zobject_parse", z)
        put("zobject_forms", z)
    put("zobject_parse", "[" * 80 + "]" * 80)
    # Evaluator request bodies: Avro (all versions) and JSON.
    for f in sorted(CASES.glob("*.json")) if CASES.is_dir() else []:
        c = json.loads(f.read_text())
        if "request_body_base64" in c:
            body = base64.b64decode(c["request_body_base64"])
            put("avro_decode", body)
            put("call_request", body)
        elif isinstance(c.get("request"), dict):
            put("call_request", json.dumps(c["request"]))
    put("call_request", json.dumps({
        "codingLanguage": "python-3", "codeString": "def Z1802(Z1802K1):\n    return Z1802K1",
        "functionName": "Z1802", "functionArguments": {"Z1802K1": {"Z1K1": "Z6", "Z6K1": "s"}}}))
    # HTTP: two bytes of limits (header 64 + 64*b0, body 16*b1), then the request.
    reqs = [
        b"GET /_info HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /wikifunctions.org/v1/evaluate/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 26\r\n\r\n{\"zobject\":\"Z801\",\"a\":1}\r\n",
        b"POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"PUT /_admin/log-level HTTP/1.1\r\nContent-Length: 4\r\nx-request-id: abc\r\n"
        b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\ninfo",
        b"GET / HTTP/1.0\r\n" + b"X-Long: " + b"a" * 300 + b"\r\n\r\n",
    ]
    for r in reqs:
        put("http_request", bytes([4, 8]) + r)
        put("http_request", bytes([255, 255]) + r)
    # Wiki answers: {"Z801": {"wikilambda_fetch": "<Z2 JSON text>"}, ...}.
    objs = small_objects(6)
    for i, text in enumerate(objs):
        zid = json.loads(text).get("Z2K1", {}).get("Z6K1", "Z1") if text.startswith("{") else "Z1"
        put("wiki_response", json.dumps({zid: {"wikilambda_fetch": text}, "Z801": {"wikilambda_fetch": objs[0]}}))
    put("wiki_response", json.dumps({"error": {"code": "badvalue"}}))
    put("wiki_response", json.dumps({"Z1": {"wikilambda_fetch": "{"}, "Z2": "x"}))
    # Evaluator answers: one byte (which call), then the Z22 the evaluator sent.
    z22s = [
        {"Z1K1": "Z22", "Z22K1": "x", "Z22K2": "Z24"},
        {"Z1K1": {"Z1K1": "Z9", "Z9K1": "Z22"}, "Z22K1": {"Z1K1": "Z6", "Z6K1": "ok"},
         "Z22K2": {"Z1K1": {"Z1K1": "Z7", "Z7K1": "Z883", "Z883K1": "Z6", "Z883K2": "Z1"},
                   "K1": ["Z882", {"Z1K1": {"Z1K1": "Z7", "Z7K1": "Z882", "Z882K1": "Z6", "Z882K2": "Z1"},
                                   "K1": "evaluationDuration", "K2": "3 ms"}]}},
        {"Z1K1": "Z22", "Z22K1": "Z24", "Z22K2": {"Z1K1": {"Z1K1": "Z7", "Z7K1": "Z883", "Z883K1": "Z6",
                                                          "Z883K2": "Z1"},
                                                 "K1": ["Z882", {"Z1K1": {"Z1K1": "Z7", "Z7K1": "Z882",
                                                                         "Z882K1": "Z6", "Z882K2": "Z1"},
                                                                "K1": "errors",
                                                                "K2": {"Z1K1": "Z5", "Z5K1": "Z507",
                                                                       "Z5K2": "boom"}}]}},
        {"Z1K1": "Z22", "Z22K1": ["Z6", "a"], "Z22K2": "Z23"},
        {"Z22K1": {"Z1K1": "Z40", "Z40K1": "Z41"}},
    ]
    for z in z22s:
        put("evaluator_response", b"\x00" + json.dumps(z).encode())
        put("evaluator_response", b"\x01" + json.dumps(z).encode())
    put("evaluator_response", b"\x00not json")


if __name__ == "__main__":
    main()
