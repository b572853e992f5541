"""A mock Wikidata (Wikibase action API) for the integration tests, on a FakeServer.

It serves the hand-written entity JSON of tests/integration/wikidata/ (the documented Wikibase JSON
format) through the two requests the orchestrator makes:
  ?action=wbgetentities&format=json&ids=Q42|L7-F1   entities by id; forms and senses (L7-F1, L7-S1)
                                                     from their lexeme; unknown ids are "missing"
  ?action=query&list=search&srnamespace=146&srsearch=haswbstatement:P5137=Q146
                                                     lexemes having that statement (on the lexeme,
                                                     its forms or its senses)
`mode` switches behaviour: "ok", "slow" (answers after `delay` seconds, or when `release()` is
called: `hold()` holds every request until then), "rate_limited" (429), "error" (500).
`requests` records the entity ids of every wbgetentities request; `slow_answered` counts the slow
requests answered.
"""

import glob
import json
import os
import threading
import time
import urllib.parse

import wfharness as h

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wikidata")


def load_entities():
    entities = {}
    for path in sorted(glob.glob(os.path.join(FIXTURES, "*.json"))):
        with open(path, encoding="utf-8") as f:
            e = json.load(f)
        entities[e["id"]] = e
        for sub in e.get("forms", []) + e.get("senses", []):
            entities[sub["id"]] = sub
    return entities


def statement_values(entity):
    """(property, value id) of every statement of an entity whose value is an entity."""
    for prop, statements in entity.get("claims", {}).items():
        for s in statements:
            dv = s.get("mainsnak", {}).get("datavalue", {})
            if dv.get("type") == "wikibase-entityid":
                yield prop, dv["value"].get("id")


class MockWikidata:
    def __init__(self):
        self.entities = load_entities()
        self.mode = "ok"
        self.delay = 3.0
        self.entity_requests = []  # ids of each wbgetentities request
        self.search_requests = []
        self.slow_answered = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        self.server = h.FakeServer(self._handle)
        # A slow answer written after the orchestrator gave up is a broken pipe: expected here.
        self.server.server.handle_error = lambda request, address: None
        self.api = self.server.base + "/w/api.php"

    def hold(self):
        """Slow mode with a delay far beyond any test's wait: only the orchestrator can end a call
        before release()."""
        self.mode, self.delay = "slow", 600.0

    def release(self):
        self._release.set()

    def count_slow_answered(self):
        with self._lock:
            return self.slow_answered

    def close(self):
        self._release.set()
        self.server.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _handle(self, method, path, headers, body):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        if self.mode == "slow":
            self._release.wait(self.delay)
            with self._lock:
                self.slow_answered += 1
        if self.mode == "rate_limited":
            return 429, "application/json", b'{"error":{"code":"ratelimited"}}'
        if self.mode == "error":
            return 500, "text/plain", b"internal error"
        action = query.get("action", [""])[0]
        if action == "wbgetentities":
            return self._entities(query.get("ids", [""])[0].split("|"))
        if action == "query" and query.get("list", [""])[0] == "search":
            return self._search(query.get("srsearch", [""])[0])
        return 400, "application/json", json.dumps({"error": {"code": "badvalue"}}).encode()

    def _entities(self, ids):
        self.entity_requests.append(ids)
        out = {}
        for i in ids:
            if i in self.entities:
                out[i] = self.entities[i]
            else:
                out[i] = {"id": i, "missing": ""}
        return 200, "application/json", json.dumps({"entities": out, "success": 1}).encode()

    def _search(self, srsearch):
        self.search_requests.append(srsearch)
        prefix = "haswbstatement:"
        prop, _, value = srsearch[len(prefix):].partition("=") if srsearch.startswith(prefix) else ("", "", "")
        hits = []
        for lid, lexeme in self.entities.items():
            if lexeme.get("type") != "lexeme":
                continue
            parts = [lexeme] + lexeme.get("forms", []) + lexeme.get("senses", [])
            if any((prop, value) in set(statement_values(p)) for p in parts):
                hits.append({"ns": 146, "title": "Lexeme:" + lid, "pageid": int(lid[1:])})
        return 200, "application/json", json.dumps({"batchcomplete": "", "query": {"search": hits}}).encode()
