"""The Wikidata built-ins through a real wf-orchestrator against a mock Wikidata (mock_wikidata.py,
serving hand-written entity JSON in the documented Wikibase format): fetching an item, a lexeme,
its forms and senses; a missing entity; no Wikidata configured; a slow, failing or rate-limiting
Wikidata; the object cache and single flight; lexeme search and sitelinks (docs/wikidata.md).
"""

import json
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mock_wikidata  # noqa: E402
import wfharness as h  # noqa: E402


def zs(s):
    """A string as canonical JSON must write an id: "Q42" alone would be read as a reference."""
    return {"Z1K1": "Z6", "Z6K1": s}


def wref(type_zid, entity_id):
    return {"Z1K1": type_zid, type_zid + "K1": zs(entity_id)}


def call(fn, *args):
    c = {"Z1K1": "Z7", "Z7K1": fn}
    for i, a in enumerate(args, 1):
        c[f"{fn}K{i}"] = a
    return c


def text(v):
    """The text of a canonical string, or the ZID of a canonical reference."""
    if isinstance(v, dict) and v.get("Z1K1") in ("Z6", "Z9"):
        return v.get("Z6K1", v.get("Z9K1"))
    return v


def enum_id(v):
    """The ZID an enum value names: the reference, or the identity of the (expanded) instance."""
    for _ in range(8):
        if not isinstance(v, dict) or v.get("Z1K1") in ("Z6", "Z9"):
            return text(v)
        v = v.get(str(v.get("Z1K1")) + "K1")
    return v


def items(canonical_list):
    assert isinstance(canonical_list, list), canonical_list
    return canonical_list[1:]


def ref_id(reference):
    """The id in a canonical Wikidata reference ({"Z1K1": "Z6091", "Z6091K1": ...})."""
    return text(reference[reference["Z1K1"] + "K1"])


LANGUAGES = {"Z1002": "en", "Z1430": "de", "Z1004": "fr"}


def language(v):
    """The code of a Z60: the result may hold the reference (Z1002) or, expanded, the object."""
    if isinstance(v, dict) and "Z60K1" in v:
        return text(v["Z60K1"])
    return LANGUAGES.get(text(v), text(v))


def labels(z12):
    return {language(t["Z11K1"]): text(t["Z11K2"]) for t in items(z12["Z12K1"])}


def metric_sum(service, name, **labels_wanted):
    _, _, body = h.request("GET", service.base + "/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels_wanted.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


class WikidataCase(unittest.TestCase):
    extra = ()

    def setUp(self):
        self.wikidata = mock_wikidata.MockWikidata()
        self.addCleanup(self.wikidata.close)
        self.orch = h.Service("wf-orchestrator", ["--objects-dir", "", "--result-cache", "false",
                                                  "--wikidata-api-url", self.wikidata.api] + list(self.extra))
        self.addCleanup(self.orch.stop)

    def run_call(self, zobject, timeout=30.0):
        status, _, z22 = h.evaluate(self.orch, zobject, timeout=timeout)
        self.assertEqual(status, 200, z22)
        return z22

    def value(self, zobject):
        z22 = self.run_call(zobject)
        self.assertNotIn("errors", h.metadata(z22), json.dumps(z22)[:2000])
        return z22["Z22K1"]

    def error(self, zobject, timeout=30.0):
        z22 = self.run_call(zobject, timeout)
        self.assertEqual(z22["Z22K1"], "Z24", json.dumps(z22)[:2000])
        err = h.metadata(z22).get("errors")
        self.assertIsNotNone(err, z22)
        return err


class FetchTest(WikidataCase):
    def test_item_with_labels_statements_and_sitelinks(self):
        item = self.value(call("Z6821", wref("Z6091", "Q42")))
        self.assertEqual(item["Z1K1"], "Z6001")
        self.assertEqual(ref_id(item["Z6001K1"]), "Q42")
        self.assertEqual(labels(item["Z6001K2"])["en"], "Douglas Adams")
        self.assertEqual(labels(item["Z6001K3"])["de"], "britischer Schriftsteller")
        statements = {ref_id(s["Z6003K2"]): s for s in items(item["Z6001K5"])}
        self.assertEqual(set(statements), {"P31", "P569", "P2048", "P625", "P1559", "P214", "P40", "P1196"})
        p31 = statements["P31"]
        self.assertEqual(ref_id(p31["Z6003K1"]), "Q42")
        self.assertEqual(ref_id(p31["Z6003K3"]), "Q5")
        self.assertEqual(enum_id(p31["Z6003K4"]), "Z6042")
        source = items(items(p31["Z6003K6"])[0]["Z6008K1"])[0]
        self.assertEqual(ref_id(source["Z6007K2"]), "Q5375741")
        self.assertEqual(enum_id(statements["P569"]["Z6003K4"]), "Z6041")
        birth = statements["P569"]["Z6003K3"]
        self.assertEqual(birth["Z1K1"], "Z6064")
        self.assertEqual(text(birth["Z6064K1"]["Z6061K1"]), "+1952-03-11")
        height = statements["P2048"]["Z6003K3"]
        self.assertEqual([text(height["Z6010K1"]["Z19677K2"]["Z13518K1"]),
                          text(height["Z6010K1"]["Z19677K3"]["Z13518K1"])], ["49", "25"])  # 1.96
        self.assertEqual(ref_id(height["Z6010K4"]), "Q11573")
        self.assertEqual(len(items(statements["P2048"]["Z6003K5"])), 1)  # the qualifier
        self.assertEqual(text(statements["P214"]["Z6003K3"]), "113230702")
        self.assertEqual(statements["P1559"]["Z6003K3"]["Z1K1"], "Z11")
        self.assertEqual(enum_id(statements["P40"]["Z6003K7"]), "Z6023")
        self.assertNotIn("Z6003K3", statements["P40"])
        self.assertEqual(enum_id(statements["P1196"]["Z6003K7"]), "Z6022")
        links = {text(s["Z6039K1"]): s for s in items(item["Z6001K6"])}
        self.assertEqual(set(links), {"enwiki", "dewiki", "enwikiquote", "commonswiki"})
        self.assertEqual(text(links["enwikiquote"]["Z6039K3"]), "wikiquote")
        self.assertEqual(text(links["enwiki"]["Z6039K5"]), "https://en.wikipedia.org/wiki/Douglas_Adams")
        self.assertEqual(self.wikidata.entity_requests, [["Q42"]])

    def test_property(self):
        prop = self.value(call("Z6822", wref("Z6092", "P31")))
        self.assertEqual(prop["Z1K1"], "Z6002")
        self.assertEqual(labels(prop["Z6002K2"])["en"], "instance of")
        self.assertEqual(ref_id(items(prop["Z6002K5"])[0]["Z6003K3"]), "P2")

    def test_lexeme_forms_and_senses(self):
        lexeme = self.value(call("Z6825", wref("Z6095", "L7")))
        self.assertEqual(lexeme["Z1K1"], "Z6005")
        self.assertEqual(labels(lexeme["Z6005K2"]), {"en": "cat"})
        self.assertEqual(language(lexeme["Z6005K3"]), "en")
        self.assertEqual(ref_id(lexeme["Z6005K4"]), "Q1084")
        forms = items(lexeme["Z6005K7"])
        self.assertEqual([ref_id(f["Z6004K1"]) for f in forms], ["L7-F1", "L7-F2"])
        self.assertEqual(labels(forms[1]["Z6004K3"]), {"en": "cats"})
        self.assertEqual([ref_id(g) for g in items(forms[1]["Z6004K4"])], ["Q146786"])
        senses = items(lexeme["Z6005K6"])
        self.assertEqual(labels(senses[0]["Z6006K2"])["en"], "domesticated feline")
        self.assertEqual(ref_id(items(senses[0]["Z6006K3"])[0]["Z6003K3"]), "Q146")

        form = self.value(call("Z6824", wref("Z6094", "L7-F2")))
        self.assertEqual(form["Z1K1"], "Z6004")
        self.assertEqual(ref_id(form["Z6004K2"]), "L7")
        self.assertEqual(text(items(form["Z6004K5"])[0]["Z6003K3"]), "kæts")
        sense = self.value(call("Z6826", wref("Z6096", "L8-S1")))
        self.assertEqual(sense["Z1K1"], "Z6006")
        translation = [s for s in items(sense["Z6006K3"]) if ref_id(s["Z6003K2"]) == "P5972"][0]
        self.assertEqual(translation["Z6003K3"]["Z1K1"], "Z6096")

    def test_missing_entity_is_a_z5(self):
        err = self.error(call("Z6821", wref("Z6091", "Q999999")))
        self.assertEqual(err["Z5K1"], "Z550")
        self.assertIn("Q999999", json.dumps(err))
        err = self.error(call("Z6825", wref("Z6095", "L999")))
        self.assertEqual(err["Z5K1"], "Z550")

    def test_fetch_entities_filtered(self):
        answer = self.value(call("Z6820", ["Z1", wref("Z6091", "Q42"), wref("Z6095", "L7")],
                                 ["Z6030", "Z6033", "Z6036"], ["Z60", "Z1430"], ["Z6092", wref("Z6092", "P31")]))
        pairs = {text(p["K1"]): p["K2"] for p in items(answer["K1"])}
        self.assertEqual(set(pairs), {"Q42", "L7"})
        self.assertEqual(labels(pairs["Q42"]["Z6001K2"]), {"de": "Douglas Adams"})
        self.assertEqual(items(pairs["Q42"]["Z6001K3"]["Z12K1"]), [])  # descriptions not asked
        self.assertEqual([ref_id(s["Z6003K2"]) for s in items(pairs["Q42"]["Z6001K5"])], ["P31"])
        self.assertEqual(self.wikidata.entity_requests, [["Q42", "L7"]])  # one batch

    def test_values_of_unknown_type_are_left_out_with_a_z598_warning(self):
        for fetch in (call("Z6821", wref("Z6091", "Q64")),
                      call("Z6820", ["Z1", wref("Z6091", "Q64")], ["Z6030"], ["Z60"], ["Z6092"])):
            with self.subTest(function=fetch["Z7K1"]):
                z22 = self.run_call(fetch)
                meta = h.metadata(z22)
                self.assertNotIn("errors", meta, json.dumps(z22)[:2000])
                item = z22["Z22K1"] if fetch["Z7K1"] == "Z6821" else items(z22["Z22K1"]["K1"])[0]["K2"]
                statements = items(item["Z6001K5"])
                self.assertEqual([ref_id(s["Z6003K2"]) for s in statements], ["P31"])
                self.assertEqual(items(statements[0]["Z6003K5"]), [])  # its qualifier: unknown type
                warnings = meta.get("warnings")
                self.assertIsInstance(warnings, list, json.dumps(meta)[:2000])
                self.assertEqual(warnings[0], "Z5")
                by_property = {}
                for w in warnings[1:]:
                    self.assertEqual(w["Z5K1"], "Z598")
                    what, value = text(w["Z5K2"]["Z598K1"]), text(w["Z5K2"]["Z598K2"])
                    by_property[what.split()[3]] = (what, json.loads(value))
                self.assertEqual(set(by_property), {"P9998", "P9999"})
                self.assertIn("score-notation", by_property["P9999"][0])
                self.assertIn("Q64", by_property["P9999"][0])
                self.assertEqual(by_property["P9999"][1]["value"], {"notes": "c4 d4 e4"})

    def test_known_values_give_no_warnings(self):
        z22 = self.run_call(call("Z6821", wref("Z6091", "Q42")))
        self.assertNotIn("warnings", h.metadata(z22))

    def test_equality_of_fetched_items(self):
        q42 = call("Z6821", wref("Z6091", "Q42"))
        same = self.value(call("Z6801", q42, q42))
        self.assertEqual(text(same["Z40K1"]), "Z41")
        lexeme_l7, lexeme_l8 = call("Z6825", wref("Z6095", "L7")), call("Z6825", wref("Z6095", "L8"))
        self.assertEqual(text(self.value(call("Z6805", lexeme_l7, lexeme_l8))["Z40K1"]), "Z42")

    def test_lexeme_search_by_language(self):
        found = self.value(call("Z6830", wref("Z6091", "Q146"), wref("Z6092", "P5137"), "Z1002"))
        self.assertEqual([ref_id(r) for r in items(found)], ["L7"])
        found = self.value(call("Z6830", wref("Z6091", "Q146"), wref("Z6092", "P5137"), "Z1430"))
        self.assertEqual([ref_id(r) for r in items(found)], ["L8"])
        found = self.value(call("Z6831", wref("Z6096", "L7-S1"), wref("Z6092", "P5972"), "Z1430"))
        self.assertEqual([ref_id(r) for r in items(found)], ["L8"])
        self.assertIn("haswbstatement:P5137=Q146", self.wikidata.search_requests)

    def test_sitelinks_filtered(self):
        links = self.value(call("Z6839", wref("Z6091", "Q42"), ["Z6", "wiki"], ["Z60"]))
        self.assertEqual(sorted(text(s["Z6039K1"]) for s in items(links)), ["dewiki", "enwiki"])
        links = self.value(call("Z6839", wref("Z6091", "Q42"), ["Z6"], ["Z60", "Z1002"]))
        self.assertEqual(sorted(text(s["Z6039K1"]) for s in items(links)), ["enwiki", "enwikiquote"])

    def test_cached_and_single_flight(self):
        self.wikidata.mode, self.wikidata.delay = "slow", 1.0
        results = []

        def one():
            results.append(self.run_call(call("Z6821", wref("Z6091", "Q42")), timeout=30))

        threads = [threading.Thread(target=one) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(len(results), 5)
        for z22 in results:
            self.assertEqual(z22["Z22K1"]["Z1K1"], "Z6001", json.dumps(z22)[:1000])
        self.assertEqual(self.wikidata.entity_requests, [["Q42"]])  # one fetch for five calls
        self.value(call("Z6821", wref("Z6091", "Q42")))
        self.assertEqual(len(self.wikidata.entity_requests), 1)  # then from the object cache
        self.assertGreaterEqual(metric_sum(self.orch, "wf_wikidata_requests_total",
                                           operation="entities", outcome="ok"), 1)


class FailureTest(WikidataCase):
    # The call's deadline is far beyond the client's 90 s hang guard, and the mock holds the
    # request until released: only the 400 ms Wikidata timeout can end the call in time.
    extra = ("--wikidata-timeout-ms", "400", "--request-timeout-ms", "600000")

    def test_slow_wikidata_ends_at_the_deadline(self):
        self.wikidata.hold()
        start = time.monotonic()
        err = self.error(call("Z6821", wref("Z6091", "Q42")), timeout=90)
        elapsed = time.monotonic() - start
        self.assertEqual(self.wikidata.count_slow_answered(), 0, "the mock answered: nothing timed out")
        self.wikidata.release()
        self.assertEqual(err["Z5K1"], "Z500")
        self.assertIn("did not answer within the time allowed (wikidata_timeout_ms 400", json.dumps(err))
        self.assertGreaterEqual(elapsed, 0.4 * 0.9)  # a timer never fires early
        self.assertGreaterEqual(metric_sum(self.orch, "wf_wikidata_requests_total", outcome="timeout"), 1)

    def test_rate_limited_and_server_error(self):
        self.wikidata.mode = "rate_limited"
        self.assertEqual(self.error(call("Z6821", wref("Z6091", "Q42")))["Z5K1"], "Z567")
        self.wikidata.mode = "error"
        err = self.error(call("Z6821", wref("Z6091", "Q42")))
        self.assertEqual(err["Z5K1"], "Z500")
        self.assertIn("answered 500", json.dumps(err))
        self.wikidata.mode = "ok"  # a failure is not cached
        self.assertEqual(self.value(call("Z6821", wref("Z6091", "Q42")))["Z1K1"], "Z6001")


class CallDeadlineTest(WikidataCase):
    # The Wikidata timeout is far beyond the client's 90 s hang guard, and the mock holds the
    # request until released: only the call's 800 ms deadline can end it in time.
    extra = ("--request-timeout-ms", "800", "--wikidata-timeout-ms", "600000")

    def test_the_calls_deadline_bounds_the_wikidata_request(self):
        self.wikidata.hold()
        start = time.monotonic()
        status, _, z22 = h.evaluate(self.orch, call("Z6821", wref("Z6091", "Q42")), timeout=90)
        elapsed = time.monotonic() - start
        self.assertEqual(self.wikidata.count_slow_answered(), 0, "the mock answered: nothing timed out")
        self.wikidata.release()
        self.assertEqual(status, 200, z22)
        err = h.metadata(z22).get("errors")
        self.assertIsNotNone(err, z22)
        self.assertEqual(h.ref(err["Z5K1"]), "Z558", json.dumps(err)[:1000])
        self.assertEqual(h.text_of(err["Z5K2"]), "Function call timed out", json.dumps(err)[:1000])
        self.assertGreaterEqual(elapsed, 0.8 * 0.9)  # a timer never fires early
        self.assertTrue(h.wait_until(lambda: metric_sum(
            self.orch, "wf_wikidata_requests_total", outcome="timeout") >= 1, 30))


class NotConfiguredTest(unittest.TestCase):
    def test_no_wikidata_url_is_a_clear_z5(self):
        with h.Service("wf-orchestrator", ["--objects-dir", ""]) as orch:
            status, _, z22 = h.evaluate(orch, call("Z6821", wref("Z6091", "Q42")), timeout=90)
            self.assertEqual(status, 200)
            err = h.metadata(z22)["errors"]
            self.assertEqual(err["Z5K1"], "Z500")
            self.assertIn("--wikidata-api-url", json.dumps(err))
            # Refused before any request was tried (none counted, whatever its outcome): not a
            # timeout or a failed connection to some default address.
            self.assertEqual(metric_sum(orch, "wf_wikidata_requests_total"), 0)


if __name__ == "__main__":
    unittest.main()
