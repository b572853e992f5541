"""Type converters and long lists through both real services (issue 10 items 1 and 5).

wf-orchestrator reads a temporary objects directory: a number type Z10100 whose converters
(Z4K7/Z4K8, like Natural number Z13518's Z13531/Z13532 and Z13519) turn it into a Python int /
JavaScript BigInt and back, and functions that take and return it, lists of it, and plain
strings. Between the orchestrator and the real wf-evaluator sits a recording proxy, so each test
sees what the orchestrator sent (the JSON body with typeConverters, or Avro when nothing needs
converting) as well as the answer.

Run: cd tests/integration && WF_BIN_DIR=<build>/bin python3 -m unittest -v test_converters
"""

import json
import os
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import wfharness as h  # noqa: E402

EVALUATE = "/wikifunctions.org/v1/evaluate/"

TO_INT = "def Z10101(Z10101K1):\n\treturn int(Z10101K1['Z10100K1']['Z6K1'])"
FROM_INT = ("def Z10102(Z10102K1):\n\treturn {'Z1K1': {'Z1K1': 'Z9', 'Z9K1': 'Z10100'},\n"
            "\t\t'Z10100K1': {'Z1K1': 'Z6', 'Z6K1': str(Z10102K1)}}")
TO_BIGINT = "function Z10103(Z10103K1) {\n\treturn BigInt(Z10103K1.Z10100K1.Z6K1);\n}"
FROM_BIGINT = ("function Z10104(Z10104K1) {\n\treturn {Z1K1: {Z1K1: 'Z9', Z9K1: 'Z10100'}, "
               "Z10100K1: {Z1K1: 'Z6', Z6K1: Z10104K1.toString()}};\n}")


def label(text):
    return {"Z1K1": "Z12", "Z12K1": ["Z11", {"Z1K1": "Z11", "Z11K1": "Z1002", "Z11K2": text}]}


def persisted(zid, value):
    return {"Z1K1": "Z2", "Z2K1": {"Z1K1": "Z6", "Z6K1": zid}, "Z2K2": value, "Z2K3": label(zid)}


def converter(kind, zid, language, code):
    return {"Z1K1": kind, kind + "K1": zid, kind + "K2": "Z10100",
            kind + "K3": {"Z1K1": "Z16", "Z16K1": language, "Z16K2": code},
            kind + "K4": "int" if language == "Z610" else "BigInt"}


def function(zid, arg_types, returns, impl_zid, language, code):
    args = ["Z17"] + [{"Z1K1": "Z17", "Z17K1": t, "Z17K2": "%sK%d" % (zid, i + 1), "Z17K3": label("a")}
                      for i, t in enumerate(arg_types)]
    z8 = {"Z1K1": "Z8", "Z8K1": args, "Z8K2": returns, "Z8K3": ["Z20"], "Z8K4": ["Z14", impl_zid],
          "Z8K5": zid}
    z14 = {"Z1K1": "Z14", "Z14K1": zid,
           "Z14K3": {"Z1K1": "Z16", "Z16K1": language, "Z16K2": code}}
    return {zid: persisted(zid, z8), impl_zid: persisted(impl_zid, z14)}


def list_of(t):
    return {"Z1K1": "Z7", "Z7K1": "Z881", "Z881K1": t}


def objects():
    number = {"Z1K1": "Z4", "Z4K1": "Z10100",
              "Z4K2": ["Z3", {"Z1K1": "Z3", "Z3K1": "Z6", "Z3K2": "Z10100K1", "Z3K3": label("value")}],
              "Z4K3": "Z101", "Z4K5": "Z10199",  # a renderer nobody has: never needed
              "Z4K7": ["Z46", "Z10103", "Z10101"], "Z4K8": ["Z64", "Z10104", "Z10102"]}
    out = {
        "Z10100": persisted("Z10100", number),
        "Z10101": persisted("Z10101", converter("Z46", "Z10101", "Z610", TO_INT)),
        "Z10102": persisted("Z10102", converter("Z64", "Z10102", "Z610", FROM_INT)),
        "Z10103": persisted("Z10103", converter("Z46", "Z10103", "Z600", TO_BIGINT)),
        "Z10104": persisted("Z10104", converter("Z64", "Z10104", "Z600", FROM_BIGINT)),
        "Z610": persisted("Z610", {"Z1K1": "Z61", "Z61K1": "python-3"}),
        "Z600": persisted("Z600", {"Z1K1": "Z61", "Z61K1": "javascript-es2020"}),
    }
    # add(a, b) in Python: ints in, an int out.
    out.update(function("Z10110", ["Z10100", "Z10100"], "Z10100", "Z10210", "Z610",
                        "def Z10110(Z10110K1, Z10110K2):\n\treturn Z10110K1 + Z10110K2"))
    # describe(a) in JavaScript: a BigInt in, a string out.
    out.update(function("Z10111", ["Z10100"], "Z6", "Z10211", "Z600",
                        "function Z10111(Z10111K1) {\n\treturn typeof Z10111K1 + ':' + Z10111K1;\n}"))
    # double each(list) in Python: a list of ints in and out.
    out.update(function("Z10112", [list_of("Z10100")], list_of("Z10100"), "Z10212", "Z610",
                        "def Z10112(Z10112K1):\n\treturn [2 * x for x in Z10112K1]"))
    # successor(a) in JavaScript: a BigInt in and out.
    out.update(function("Z10113", ["Z10100"], "Z10100", "Z10213", "Z600",
                        "function Z10113(Z10113K1) {\n\treturn Z10113K1 + 1n;\n}"))
    # add(any, any) -> any in Python and in JavaScript: converted by the values' types.
    out.update(function("Z10115", ["Z1", "Z1"], "Z1", "Z10215", "Z610",
                        "def Z10115(Z10115K1, Z10115K2):\n\treturn Z10115K1 + Z10115K2"))
    out.update(function("Z10116", ["Z1", "Z1"], "Z1", "Z10216", "Z600",
                        "function Z10116(Z10116K1, Z10116K2) {\n\treturn Z10116K1 + Z10116K2;\n}"))
    # count and last(list of strings) in Python: no converter.
    out.update(function("Z10114", [list_of("Z6")], "Z6", "Z10214", "Z610",
                        "def Z10114(Z10114K1):\n\treturn '%d %s' % (len(Z10114K1), Z10114K1[-1])"))
    # Stand-ins for the initial content's Natural number (Z13518) and Integer (Z16683), one string
    # key each, with from-code converters: what native integers in results declared Z1 become.
    for zid, k64py, k64js in (("Z13518", "Z13532", "Z13520"), ("Z16683", "Z16687", "Z16686")):
        out[zid] = persisted(zid, {
            "Z1K1": "Z4", "Z4K1": zid, "Z4K3": "Z101",
            "Z4K2": ["Z3", {"Z1K1": "Z3", "Z3K1": "Z6", "Z3K2": zid + "K1", "Z3K3": label("value")}],
            "Z4K8": ["Z64", k64js, k64py]})
        out[k64py] = persisted(k64py, {
            "Z1K1": "Z64", "Z64K1": k64py, "Z64K2": zid, "Z64K4": "int",
            "Z64K3": {"Z1K1": "Z16", "Z16K1": "Z610", "Z16K2": (
                "def %s(%sK1):\n\treturn {'Z1K1': {'Z1K1': 'Z9', 'Z9K1': '%s'}, "
                "'%sK1': {'Z1K1': 'Z6', 'Z6K1': str(%sK1)}}" % (k64py, k64py, zid, zid, k64py))}})
        out[k64js] = persisted(k64js, {
            "Z1K1": "Z64", "Z64K1": k64js, "Z64K2": zid, "Z64K4": "BigInt",
            "Z64K3": {"Z1K1": "Z16", "Z16K1": "Z600", "Z16K2": (
                "function %s(%sK1) {\n\treturn {Z1K1: {Z1K1: 'Z9', Z9K1: '%s'}, "
                "%sK1: {Z1K1: 'Z6', Z6K1: %sK1.toString()}};\n}" % (k64js, k64js, zid, zid, k64js))}})
    # Results declared Z1 holding native integers, with no converted argument to go by.
    out.update(function("Z10117", ["Z6"], "Z1", "Z10217", "Z610",
                        "def Z10117(Z10117K1):\n\treturn [len(Z10117K1), -len(Z10117K1)]"))
    out.update(function("Z10118", ["Z6"], "Z1", "Z10218", "Z600",
                        "function Z10118(Z10118K1) {\n\treturn [BigInt(Z10118K1.length), "
                        "-BigInt(Z10118K1.length)];\n}"))
    out.update(function("Z10119", ["Z6"], list_of("Z1"), "Z10219", "Z610",
                        "def Z10119(Z10119K1):\n\treturn list(range(int(Z10119K1)))"))
    # n strings (a result list of any length) in Python and in JavaScript.
    out.update(function("Z10120", ["Z6"], list_of("Z6"), "Z10220", "Z610",
                        "def Z10120(Z10120K1):\n\treturn ['s%d' % i for i in range(int(Z10120K1))]"))
    out.update(function("Z10121", ["Z6"], list_of("Z6"), "Z10221", "Z600",
                        "function Z10121(Z10121K1) {\n\treturn Array.from({length: Number(Z10121K1)}, "
                        "(_, i) => 's' + i);\n}"))
    # A type without converters whose key is a number (Z10300), and functions taking and returning
    # it, a typed pair and a typed map of numbers, in Python and in JavaScript.
    out["Z10300"] = persisted("Z10300", {
        "Z1K1": "Z4", "Z4K1": "Z10300", "Z4K3": "Z101",
        "Z4K2": ["Z3", {"Z1K1": "Z3", "Z3K1": "Z10100", "Z3K2": "Z10300K1", "Z3K3": label("count")},
                 {"Z1K1": "Z3", "Z3K1": "Z6", "Z3K2": "Z10300K2", "Z3K3": label("name")}]})
    pair, map_ = pair_type("Z10100", "Z6"), map_type("Z6", "Z10100")
    for zid, types, code in (
            ("Z10130", ["Z10300"], "def Z10130(Z10130K1):\n\tZ10130K1.Z10300K1 += 1\n"
                                   "\tZ10130K1.Z10300K2 += type(Z10130K1.Z10300K1).__name__\n\treturn Z10130K1"),
            ("Z10131", ["Z10300"], "function Z10131(Z10131K1) {\n\tZ10131K1.Z10300K1 += 1n;\n"
                                   "\tZ10131K1.Z10300K2 += typeof Z10131K1.Z10300K1;\n\treturn Z10131K1;\n}"),
            ("Z10132", [pair], "def Z10132(Z10132K1):\n\treturn ZPair(2 * Z10132K1.K1, "
                               "Z10132K1.K2 + type(Z10132K1.K1).__name__)"),
            ("Z10133", [pair], "function Z10133(Z10133K1) {\n\treturn new ZPair(2n * Z10133K1.K1, "
                               "Z10133K1.K2 + typeof Z10133K1.K1);\n}"),
            ("Z10134", [map_], "def Z10134(Z10134K1):\n\treturn {k + ':' + type(v).__name__: v + 1 "
                               "for k, v in Z10134K1.items()}"),
            ("Z10135", [map_], "function Z10135(Z10135K1) {\n\tconst out = new Map();\n"
                               "\tfor (const [k, v] of Z10135K1) out.set(k + ':' + typeof v, v + 1n);\n"
                               "\treturn out;\n}")):
        language = "Z610" if code.startswith("def") else "Z600"
        out.update(function(zid, types, types[0], "Z%d" % (int(zid[1:]) + 100), language, code))
    # What a reference passed to an argument typed Z1 is in Python and in JavaScript: arguments are
    # evaluated, so the enum value Z6021 arrives as its instance, whose identity key ends in a
    # reference (walked the way the wiki's Sign converters walk Z16659K1).
    out.update(function("Z10140", ["Z1"], "Z6", "Z10240", "Z610",
                        "def Z10140(Z10140K1):\n\tidentity = Z10140K1\n"
                        "\twhile not isinstance(identity, str):\n\t\tidentity = identity.Z6020K1\n"
                        "\treturn '%s %s %s %s' % (type(Z10140K1).__name__, type(identity).__name__, "
                        "identity == 'Z6021', identity.Z9K1)"))
    out.update(function("Z10141", ["Z1"], "Z6", "Z10241", "Z600",
                        "function Z10141(Z10141K1) {\n\tlet identity = Z10141K1;\n"
                        "\twhile (identity.Z1K1 !== 'Z9') identity = identity.Z6020K1;\n"
                        "\treturn [Z10141K1.constructor.name, identity.Z1K1, identity.Z9K1].join(' ');\n}"))
    return out


def pair_type(first, second):
    return {"Z1K1": "Z7", "Z7K1": "Z882", "Z882K1": first, "Z882K2": second}


def map_type(key, value):
    return {"Z1K1": "Z7", "Z7K1": "Z883", "Z883K1": key, "Z883K2": value}


def number(n):
    return {"Z1K1": "Z10100", "Z10100K1": str(n)}


class Converters(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="wf-converters-")
        for zid, obj in objects().items():
            with open(os.path.join(cls.dir, zid + ".json"), "w", encoding="utf-8") as f:
                json.dump(obj, f)
        cls.evaluator = h.Service("wf-evaluator", ["--pool-size", "2"])
        try:
            if not h.wait_until(lambda: h.request("GET", cls.evaluator.base + "/readyz")[0] == 200, 30):
                raise RuntimeError("wf-evaluator never became ready")

            def forward(method, path, headers, body):
                status, hdrs, answer = h.request(
                    method, cls.evaluator.base + path, body,
                    {"Content-Type": headers.get("Content-Type", "application/octet-stream")}, 60)
                return status, hdrs.get("content-type", "application/json"), answer

            cls.proxy = h.FakeServer(forward)
            cls.orchestrator = h.Service("wf-orchestrator", [
                "--evaluator-url", cls.proxy.base + EVALUATE, "--objects-dir", cls.dir,
                "--wiki-api-url", ""])
        except Exception:
            cls.evaluator.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.orchestrator.stop()
        cls.proxy.close()
        cls.evaluator.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def call(self, zobject):
        """The answer's value and the one request the orchestrator sent to the evaluator."""
        before = len(self.proxy.requests)
        status, _, z22 = h.evaluate(self.orchestrator, zobject, timeout=60)
        self.assertEqual(status, 200, z22)
        errors = h.metadata(z22).get("errors")
        self.assertIsNone(errors, json.dumps(errors)[:1500])
        sent = self.proxy.requests[before:]
        self.assertEqual(len(sent), 1, [r["path"] for r in sent])
        return z22["Z22K1"], sent[0]

    def sent_json(self, request):
        self.assertEqual(request["headers"].get("content-type"), "application/json")
        return json.loads(request["body"])

    def test_python_arguments_and_result_convert(self):
        value, sent = self.call({"Z1K1": "Z7", "Z7K1": "Z10110", "Z10110K1": number(2), "Z10110K2": number(40)})
        self.assertEqual(value, number(42))
        body = self.sent_json(sent)
        plan = {"converter": {"functionName": "Z10101", "code": TO_INT, "nativeType": "int"}}
        self.assertEqual(body["typeConverters"], {
            "arguments": {"Z10110K1": plan, "Z10110K2": plan},
            "result": {"converter": {"functionName": "Z10102", "code": FROM_INT, "nativeType": "int"}}})

    def test_javascript_argument_converts_to_bigint(self):
        value, sent = self.call({"Z1K1": "Z7", "Z7K1": "Z10111", "Z10111K1": number(7)})
        self.assertEqual(value, "bigint:7")
        body = self.sent_json(sent)
        self.assertEqual(body["typeConverters"],
                         {"arguments": {"Z10111K1": {"converter": {"functionName": "Z10103", "code": TO_BIGINT,
                                                                   "nativeType": "BigInt"}}}})

    def test_javascript_result_converts_from_bigint(self):
        value, _ = self.call({"Z1K1": "Z7", "Z7K1": "Z10113", "Z10113K1": number(99)})
        self.assertEqual(value, number(100))

    def test_arguments_and_result_declared_z1_convert_by_type(self):
        for fn in ("Z10115", "Z10116"):
            with self.subTest(function=fn):
                value, sent = self.call({"Z1K1": "Z7", "Z7K1": fn, fn + "K1": number(20), fn + "K2": number(22)})
                self.assertEqual(value, number(42))
                self.assertIn("native", self.sent_json(sent)["typeConverters"]["result"])

    def test_lists_convert_element_wise(self):
        value, sent = self.call({"Z1K1": "Z7", "Z7K1": "Z10112",
                                 "Z10112K1": ["Z10100", number(1), number(2), number(3)]})
        self.assertEqual(value, ["Z10100", number(2), number(4), number(6)])
        body = self.sent_json(sent)
        self.assertEqual(body["typeConverters"]["arguments"]["Z10112K1"],
                         {"list": {"converter": {"functionName": "Z10101", "code": TO_INT, "nativeType": "int"}}})
        self.assertEqual(body["typeConverters"]["result"],
                         {"list": {"converter": {"functionName": "Z10102", "code": FROM_INT, "nativeType": "int"}}})

    def test_keys_of_a_type_without_converters_convert_by_their_types(self):
        plan_to = {"converter": {"functionName": "Z10101", "code": TO_INT, "nativeType": "int"}}
        for fn, native in (("Z10130", "int"), ("Z10131", "bigint")):
            with self.subTest(function=fn):
                value, sent = self.call({"Z1K1": "Z7", "Z7K1": fn,
                                         fn + "K1": {"Z1K1": "Z10300", "Z10300K1": number(41), "Z10300K2": "n:"}})
                self.assertEqual(value, {"Z1K1": "Z10300", "Z10300K1": number(42), "Z10300K2": "n:" + native})
                conv = self.sent_json(sent)["typeConverters"]
                self.assertEqual(set(conv["arguments"][fn + "K1"]["keys"]), {"Z10300K1"})
                self.assertEqual(set(conv["result"]["keys"]), {"Z10300K1"})
                if fn == "Z10130":
                    self.assertEqual(conv["arguments"][fn + "K1"]["keys"]["Z10300K1"], plan_to)

    def test_typed_pairs_convert_element_wise(self):
        for fn, native in (("Z10132", "int"), ("Z10133", "bigint")):
            with self.subTest(function=fn):
                value, sent = self.call({"Z1K1": "Z7", "Z7K1": fn, fn + "K1": {
                    "Z1K1": pair_type("Z10100", "Z6"), "K1": number(21), "K2": "x:"}})
                self.assertEqual(value, {"Z1K1": pair_type("Z10100", "Z6"), "K1": number(42), "K2": "x:" + native})
                conv = self.sent_json(sent)["typeConverters"]
                self.assertEqual(conv["arguments"][fn + "K1"]["pair"][1], None)
                self.assertEqual(conv["result"]["pair"][1], None)
                self.assertIn("converter", conv["result"]["pair"][0])

    def test_typed_maps_convert_keys_and_values(self):
        entry = pair_type("Z6", "Z10100")
        for fn, native in (("Z10134", "int"), ("Z10135", "bigint")):
            with self.subTest(function=fn):
                value, sent = self.call({"Z1K1": "Z7", "Z7K1": fn, fn + "K1": {
                    "Z1K1": map_type("Z6", "Z10100"),
                    "K1": [entry, {"Z1K1": entry, "K1": "a", "K2": number(1)},
                           {"Z1K1": entry, "K1": "b", "K2": number(9)}]}})
                self.assertEqual(value, {"Z1K1": map_type("Z6", "Z10100"),
                                         "K1": [entry, {"Z1K1": entry, "K1": "a:" + native, "K2": number(2)},
                                                {"Z1K1": entry, "K1": "b:" + native, "K2": number(10)}]})
                conv = self.sent_json(sent)["typeConverters"]
                self.assertEqual(conv["arguments"][fn + "K1"]["map"][0], None)
                self.assertIn("converter", conv["arguments"][fn + "K1"]["map"][1])

    def test_references_reach_code_typed_z1_as_their_objects_with_references_inside(self):
        for fn, expected in (("Z10140", "ZObject ZReference True Z6021"), ("Z10141", "ZObject Z9 Z6021")):
            with self.subTest(function=fn):
                value, _ = self.call({"Z1K1": "Z7", "Z7K1": fn, fn + "K1": "Z6021"})
                self.assertEqual(value, expected)

    def test_no_converter_keeps_avro(self):
        value, sent = self.call({"Z1K1": "Z7", "Z7K1": "Z10114", "Z10114K1": ["Z6", "a", "b"]})
        self.assertEqual(value, "2 b")
        self.assertEqual(sent["headers"].get("content-type"), "application/octet-stream")
        self.assertNotIn(b"typeConverters", sent["body"])

    def test_lists_of_any_length_reach_python(self):
        for n in (30, 1000, 10000):
            with self.subTest(n=n):
                items = ["s%d" % i for i in range(n)]
                value, sent = self.call({"Z1K1": "Z7", "Z7K1": "Z10114", "Z10114K1": ["Z6"] + items})
                self.assertEqual(value, "%d s%d" % (n, n - 1))
                # Longer than 64 elements: the JSON body with the list as an array.
                long_list = n > 64
                self.assertEqual(sent["headers"].get("content-type"),
                                 "application/json" if long_list else "application/octet-stream")

    def test_native_integers_in_z1_results_become_natural_numbers_or_integers(self):
        natural = {"Z1K1": "Z13518", "Z13518K1": "3"}
        integer = {"Z1K1": "Z16683", "Z16683K1": "-3"}
        for fn in ("Z10117", "Z10118"):
            with self.subTest(function=fn):
                value, sent = self.call({"Z1K1": "Z7", "Z7K1": fn, fn + "K1": "abc"})
                self.assertEqual(value, ["Z1", natural, integer])
                native = self.sent_json(sent)["typeConverters"]["result"]["native"]
                name = "int" if fn == "Z10117" else "BigInt"
                self.assertEqual(native[name]["converter"]["functionName"],
                                 "Z13532" if fn == "Z10117" else "Z13520")
                self.assertEqual(native["-" + name]["converter"]["functionName"],
                                 "Z16687" if fn == "Z10117" else "Z16686")

    def test_results_declared_list_of_z1_convert_element_wise_at_any_length(self):
        for n in (3, 10000):
            with self.subTest(n=n):
                value, sent = self.call({"Z1K1": "Z7", "Z7K1": "Z10119", "Z10119K1": str(n)})
                self.assertEqual(value, ["Z13518"] + [{"Z1K1": "Z13518", "Z13518K1": str(i)} for i in range(n)])
                self.assertIn("list", self.sent_json(sent)["typeConverters"]["result"])

    def test_result_lists_of_any_length_come_back_from_python_and_javascript(self):
        for fn in ("Z10120", "Z10121"):
            for n in (30, 1000, 10000):
                with self.subTest(function=fn, n=n):
                    value, _ = self.call({"Z1K1": "Z7", "Z7K1": fn, fn + "K1": str(n)})
                    self.assertEqual(value, ["Z6"] + ["s%d" % i for i in range(n)])

    def test_lists_of_any_length_reach_z812(self):
        for n in (30, 1000, 10000):
            with self.subTest(n=n):
                items = ["s%d" % i for i in range(n)]
                status, _, z22 = h.evaluate(self.orchestrator,
                                            {"Z1K1": "Z7", "Z7K1": "Z812", "Z812K1": ["Z6"] + items}, timeout=60)
                self.assertEqual(status, 200)
                self.assertEqual(z22["Z22K1"], ["Z6"] + items[1:])


if __name__ == "__main__":
    unittest.main()
