# The Python side of wf_python_runtime: ZObject <-> native conversions and the driver that runs
# one call (evaluator-api.md §5.1, §5.3). Executed once in the zygote as module `_wf_driver`;
# every sandbox child then calls `run_call` exactly once.
#
# Deliberate differences from the original executor (see python_runtime.h):
#  * user code runs in ONE namespace dict, so top-level imports and helpers are visible inside
#    the function;
#  * print()/sys.stdout/sys.stderr go to a bounded buffer (returned as captured output) instead
#    of corrupting the result; sys.stdin is empty;
#  * an exception without arguments is reported by its type name (e.g. "ValueError").

import builtins
import gc
import io
import json
import sys

_json_loads_full = json.loads
_json_dumps = json.dumps
# Every line of Python a child runs writes to the pages of the function and code objects it runs
# (reference counts): one copy-on-write fault each, per call. So the two JSON steps of a call go
# straight to the C scanner and encoder, past json.loads/decode/raw_decode and json.dumps/
# JSONEncoder.__init__/encode/iterencode (-30 page faults per call). The results are the same:
# whatever the scanner does not take whole (leading or trailing whitespace, a BOM, no value) goes
# to json.loads, which reads it or raises as before.
_scan_once = json.decoder.JSONDecoder().scan_once
_make_encoder = json.encoder.c_make_encoder
_encode_default = json.JSONEncoder().default
_encode_string = json.encoder.encode_basestring


def _json_loads(text):
    try:
        value, end = _scan_once(text, 0)
    except StopIteration:
        return _json_loads_full(text)
    return value if end == len(text) else _json_loads_full(text)


class ZObject:
    """A ZObject that has no native Python counterpart: its original Z1K1, one attribute per key."""

    def __init__(self, Z1K1, **keys):
        self.Z1K1 = Z1K1
        for key, value in keys.items():
            setattr(self, key, value)

    def __repr__(self):
        keys = ", ".join(f"{key}={value!r}" for key, value in sorted(_zobject_items(self)))
        return f"ZObject(Z1K1={self.Z1K1!r}{', ' if keys else ''}{keys})"


class ZPair:
    """A Z882 pair: K1, K2 and (when it came from a ZObject) the original Z1K1."""

    def __init__(self, K1, K2, Z1K1=None):
        self.K1 = K1
        self.K2 = K2
        self.Z1K1 = Z1K1

    def __repr__(self):
        return f"ZPair({self.K1!r}, {self.K2!r})"


class _DebugLog:
    """What `Wikifunctions.Debug` collected during one call: at most `limit` characters over at
    most _MAX_DEBUG_ENTRIES entries; what does not fit is replaced by one closing marker."""

    def __init__(self, limit):
        self.entries = []
        self._left = limit
        self._truncated = False

    def add(self, text):
        if self._truncated:
            return
        if len(self.entries) >= _MAX_DEBUG_ENTRIES or len(text) > self._left:
            self.entries.append("... (debug log truncated)")
            self._truncated = True
            return
        self.entries.append(text)
        self._left -= len(text)


_MAX_DEBUG_ENTRIES = 100
_debug_log = _DebugLog(0)


class _Wikifunctions:
    """`Wikifunctions` (alias `W`) as the production evaluator provides it: Debug adds a line to
    the call's debug log (metadata key executorDebugLogs); Call needs reentrant mode, which this
    service lacks."""

    @staticmethod
    def Debug(*values):
        _debug_log.add(" ".join(str(value) for value in values))

    @staticmethod
    def Call(*args, **kwargs):
        raise RuntimeError("Non-reentrant executor tried to call back to the orchestrator")


Wikifunctions = W = _Wikifunctions()


def _zobject_items(zobject):
    return [(key, value) for key, value in vars(zobject).items() if key != "Z1K1"]


# ---- ZObject -> Python -----------------------------------------------------------------------


def _type_zid(z1k1):
    """ZID of a type: a bare string, a Z9 reference, a Z7 call (its Z7K1), a literal Z4 (its
    Z4K1) or a literal Z8 (its Z8K5)."""
    if isinstance(z1k1, str):
        return z1k1
    kind = _type_zid(z1k1.get("Z1K1"))
    if kind == "Z9":
        return z1k1.get("Z9K1")
    if kind == "Z7":
        return _type_zid(z1k1.get("Z7K1"))
    if kind == "Z4":
        return _type_zid(z1k1.get("Z4K1"))
    if kind == "Z8":
        return _type_zid(z1k1.get("Z8K5"))
    return kind


class ZReference(str):
    """A Z9 reference (e.g. an enum value such as "Z6021" passed to an argument typed Z1): the
    ZID as a str (so `value == "Z6021"` works), with Z1K1 "Z9" and Z9K1; returned, it stays a
    reference."""

    @property
    def Z1K1(self):
        return "Z9"

    @property
    def Z9K1(self):
        return str(self)

    def __repr__(self):
        return f"ZReference({str(self)!r})"


def _deserialize(zobject):
    if isinstance(zobject, list):
        # A typed list written as an array, [element type, elements...] (docs/compatibility.md
        # "Long lists"): what our orchestrator sends for long list arguments.
        return [_deserialize(item) for item in zobject[1:]]
    z1k1 = zobject.get("Z1K1")
    if z1k1 == "Z9":
        return ZReference(zobject.get("Z9K1"))
    zid = _type_zid(z1k1)
    if zid == "Z6":
        return zobject.get("Z6K1")
    if zid == "Z40":
        return zobject.get("Z40K1").get("Z9K1") == "Z41"
    if zid == "Z21":
        return None
    if zid == "Z881":
        items = []
        node = zobject
        while node is not None and "K1" in node:
            items.append(_deserialize(node.get("K1")))
            node = node.get("K2")
        return items
    if zid == "Z882":
        return ZPair(_deserialize(zobject.get("K1")), _deserialize(zobject.get("K2")), z1k1)
    if zid == "Z883":
        return {pair.K1: pair.K2 for pair in _deserialize(zobject.get("K1"))}
    keys = {key: _deserialize(value) for key, value in zobject.items() if key != "Z1K1"}
    return ZObject(z1k1, **keys)


# ---- Python -> ZObject -----------------------------------------------------------------------


def _ref(zid):
    return {"Z1K1": "Z9", "Z9K1": zid}


def _call_type(function, **arguments):
    call = {"Z1K1": _ref("Z7"), "Z7K1": _ref(function)}
    call.update(arguments)
    return call


def _common_type(types):
    if types and all(t == types[0] for t in types):
        return types[0]
    return _ref("Z1")


# A result list longer than this is written as the array [element type, elements...] (the
# canonical list form; docs/compatibility.md "Long lists"): in normal form it nests one level per
# element, deeper than json.dumps can recurse and the evaluator's decoder accepts.
_LONG_LIST = 64


def _typed_list(items, flat=False):
    item_type = _common_type([item["Z1K1"] for item in items])
    if flat and len(items) > _LONG_LIST:
        return [item_type, *items]
    list_type = _call_type("Z881", Z881K1=item_type)
    node = {"Z1K1": list_type}
    for item in reversed(items):
        node = {"Z1K1": list_type, "K1": item, "K2": node}
    return node


class _Unserializable(Exception):
    pass


def _unserializable(value):
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return _Unserializable(f"Could not serialize input Python object: {text}")


def _serialize(value):
    if isinstance(value, ZReference):
        return _ref(str(value))
    if isinstance(value, str):
        return {"Z1K1": "Z6", "Z6K1": value}
    if isinstance(value, bool):
        return {"Z1K1": _ref("Z40"), "Z40K1": _ref("Z41" if value else "Z42")}
    if value is None:
        return {"Z1K1": _ref("Z21")}
    if isinstance(value, ZPair):
        first = _serialize(value.K1)
        second = _serialize(value.K2)
        z1k1 = value.Z1K1
        if z1k1 is None:
            z1k1 = _call_type("Z882", Z882K1=first["Z1K1"], Z882K2=second["Z1K1"])
        return {"Z1K1": z1k1, "K1": first, "K2": second}
    if isinstance(value, ZObject):
        result = {"Z1K1": value.Z1K1}
        for key, item in sorted(_zobject_items(value), key=lambda pair: pair[0]):
            result[key] = _serialize(item)
        return result
    if isinstance(value, dict):
        pairs = [_serialize(ZPair(key, item)) for key, item in value.items()]
        key_type = _common_type([pair["K1"]["Z1K1"] for pair in pairs])
        value_type = _common_type([pair["K2"]["Z1K1"] for pair in pairs])
        map_type = _call_type("Z883", Z883K1=key_type, Z883K2=value_type)
        return {"Z1K1": map_type, "K1": _typed_list(pairs, flat=True)}
    if isinstance(value, (int, float, complex, bytes, bytearray)):
        raise _unserializable(value)
    try:
        iterator = iter(value)
    except TypeError:
        raise _unserializable(value) from None
    return _typed_list([_serialize(item) for item in iterator], flat=True)


# ---- Envelopes ----------------------------------------------------------------------------------


def _metadata(entries):
    """A Z883(Z6, Z1) map of (key, ZObject) entries; Z24 when there are none."""
    if not entries:
        return _ref("Z24")
    key_type, value_type = _ref("Z6"), _ref("Z1")
    pair_type = _call_type("Z882", Z882K1=key_type, Z882K2=value_type)
    list_type = _call_type("Z881", Z881K1=pair_type)
    node = {"Z1K1": list_type}
    for key, value in reversed(entries):
        pair = {"Z1K1": pair_type, "K1": {"Z1K1": "Z6", "Z6K1": key}, "K2": value}
        node = {"Z1K1": list_type, "K1": pair, "K2": node}
    return {"Z1K1": _call_type("Z883", Z883K1=key_type, Z883K2=value_type), "K1": node}


def _debug_entries():
    if not _debug_log.entries:
        return []
    lines = [{"Z1K1": "Z6", "Z6K1": line} for line in _debug_log.entries]
    return [("executorDebugLogs", _typed_list(lines))]


def _success(result):
    return {"Z1K1": _ref("Z22"), "Z22K1": result, "Z22K2": _metadata(_debug_entries())}


def _failure(message):
    error = {"Z1K1": _ref("Z5"), "Z5K2": {"Z1K1": "Z6", "Z6K1": message}}
    metadata = _metadata([("errors", error)] + _debug_entries())
    return {"Z1K1": _ref("Z22"), "Z22K1": _ref("Z24"), "Z22K2": metadata}


def _message(error):
    """e.args[0] as the original executor reported it; the type name when there is none."""
    try:
        if error.args:
            first = error.args[0]
            return first if isinstance(first, str) else str(first)
    except Exception:
        pass
    return type(error).__name__


class _BoundedText(io.TextIOBase):
    """sys.stdout/sys.stderr during a call: keeps the first `limit` characters."""

    def __init__(self, limit):
        # No super().__init__(): io.TextIOBase has none of its own (object's), and calling it
        # through super() cost every call a few page faults.
        self._parts = []
        self._left = limit

    def writable(self):
        return True

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if self._left > 0:
            piece = text[: self._left]
            self._parts.append(piece)
            self._left -= len(piece)
        return len(text)

    def getvalue(self):
        return "".join(self._parts)


def _encode(envelope):
    """json.dumps(envelope, ensure_ascii=False, separators=(",", ":")) as UTF-8."""
    if _make_encoder is not None:
        # What JSONEncoder.iterencode passes the C encoder for those options; a fresh markers
        # dict for the circular-reference check, as each dumps has. It returns the text in chunks
        # (a new one every ~100,000 characters), which JSONEncoder.encode joins.
        encode = _make_encoder({}, _encode_default, _encode_string, None, ":", ",", False, False, True)
        text = "".join(encode(envelope, 0))
    else:
        text = _json_dumps(envelope, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Surrogates (e.g. '\ud800'): join valid pairs, replace lone ones with U+FFFD, so the
        # result is valid UTF-8 and valid JSON for every parser.
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return text.encode("utf-8")


# ---- Type converters (docs/compatibility.md "Type converters") ------------------------------
# A plan says how one value crosses between ZObject and Python: {"converter": {"functionName",
# "code"}} runs a Z46 (to code) or Z64 (from code) converter on the value itself; {"list": plan}
# applies `plan` to each element of a typed list; {"pair": [plan, plan]} to the K1 and K2 of a
# typed pair (Z882), {"map": [plan, plan]} to the keys and values of a typed map (Z883), and
# {"keys": {key: plan}} to the keys of an instance of a type that has no converter of its own
# (a null plan: the default conversion). Values without a plan use the default conversions above.


class _ConverterError(Exception):
    pass


class _Converters:
    def __init__(self, converters_json):
        spec = _json_loads(converters_json) if converters_json else {}
        if not isinstance(spec, dict):
            spec = {}
        self.arguments = spec.get("arguments") or {}
        self.result = spec.get("result")
        self._functions = {}

    def _function(self, converter):
        name = converter.get("functionName")
        key = (name, converter.get("code"))
        function = self._functions.get(key)
        if function is None:
            namespace = _namespace()
            exec(compile(converter.get("code", ""), f"<converter {name}>", "exec"), namespace)
            function = namespace.get(name)
            if not callable(function):
                raise _ConverterError(f"Type converter {name}: its code defines no function {name}")
            self._functions[key] = function
        return name, function

    def _apply(self, converter, value):
        name, function = self._function(converter)
        try:
            return function(value)
        except MemoryError:
            raise
        except Exception as error:
            raise _ConverterError(f"Type converter {name} failed: {_message(error)}") from None

    def to_native(self, plan, zobject):
        if not isinstance(plan, dict):
            return _deserialize(zobject)
        if "converter" in plan:
            return self._apply(plan["converter"], zobject)
        if "list" in plan:
            return [self.to_native(plan["list"], item) for item in _list_elements(zobject)]
        if not isinstance(zobject, dict) or zobject.get("Z1K1") == "Z9":
            return _deserialize(zobject)
        if "pair" in plan:
            first, second = _two_plans(plan["pair"])
            return ZPair(
                self.to_native(first, zobject.get("K1")),
                self.to_native(second, zobject.get("K2")),
                zobject.get("Z1K1"),
            )
        if "map" in plan:
            entry = {"pair": _two_plans(plan["map"])}
            pairs = [self.to_native(entry, item) for item in _list_elements(zobject.get("K1"))]
            return {pair.K1: pair.K2 for pair in pairs}
        if "keys" in plan and isinstance(plan["keys"], dict):
            plans = plan["keys"]
            keys = {
                key: self.to_native(plans.get(key), value)
                for key, value in zobject.items()
                if key != "Z1K1"
            }
            return ZObject(zobject.get("Z1K1"), **keys)
        return _deserialize(zobject)

    def from_native(self, plan, value):
        if not isinstance(plan, dict):
            return _serialize(value)
        if "converter" in plan:
            zobject = self._apply(plan["converter"], value)
            if not isinstance(zobject, dict) or "Z1K1" not in zobject:
                name = plan["converter"].get("functionName")
                raise _ConverterError(
                    f"Type converter {name} returned {_unserializable(zobject)} instead of a "
                    "ZObject (a dict with Z1K1)"
                )
            return zobject
        if "list" in plan:
            if isinstance(value, (str, bytes, dict)):
                raise _unserializable(value)
            return _typed_list(
                [self.from_native(plan["list"], item) for item in value], flat=True
            )
        if "pair" in plan:
            return self._pair_from_native(_two_plans(plan["pair"]), value)
        if "map" in plan:
            if not isinstance(value, dict):
                raise _unserializable(value)
            entry = _two_plans(plan["map"])
            pairs = [self._pair_from_native(entry, ZPair(k, v)) for k, v in value.items()]
            key_type = _common_type([_type_of(pair["K1"]) for pair in pairs])
            value_type = _common_type([_type_of(pair["K2"]) for pair in pairs])
            map_type = _call_type("Z883", Z883K1=key_type, Z883K2=value_type)
            return {"Z1K1": map_type, "K1": _typed_list(pairs, flat=True)}
        if "keys" in plan and isinstance(plan["keys"], dict) and isinstance(value, ZObject):
            plans = plan["keys"]
            result = {"Z1K1": value.Z1K1}
            for key, item in sorted(_zobject_items(value), key=lambda pair: pair[0]):
                result[key] = self.from_native(plans.get(key), item)
            return result
        if isinstance(plan.get("native"), dict):
            # A result declared Z1: the plan of the value's native type (Z64K4: "int", ...);
            # the elements of a list or tuple each by theirs.
            chosen = _native_plan(plan["native"], value)
            if isinstance(chosen, dict):
                return self.from_native(chosen, value)
            if isinstance(value, (list, tuple)):
                return _typed_list([self.from_native(plan, item) for item in value], flat=True)
        return _serialize(value)


    def _pair_from_native(self, plans, value):
        """A ZPair (or a 2-tuple) as a Z882 whose K1 and K2 follow `plans`."""
        if isinstance(value, ZPair):
            first, second, z1k1 = value.K1, value.K2, value.Z1K1
        elif isinstance(value, tuple) and len(value) == 2:
            (first, second), z1k1 = value, None
        else:
            raise _unserializable(value)
        first = self.from_native(plans[0], first)
        second = self.from_native(plans[1], second)
        if z1k1 is None:
            z1k1 = _call_type("Z882", Z882K1=_type_of(first), Z882K2=_type_of(second))
        return {"Z1K1": z1k1, "K1": first, "K2": second}


def _two_plans(plans):
    """The [first, second] plans of a pair or map plan; a missing one is the default (None)."""
    if isinstance(plans, list) and len(plans) == 2:
        return plans
    return [None, None]


def _list_elements(zobject):
    """The elements of a typed list in normal form, or written as [element type, elements...]."""
    if isinstance(zobject, list):
        return zobject[1:]
    items = []
    node = zobject
    while isinstance(node, dict) and "K1" in node:
        items.append(node.get("K1"))
        node = node.get("K2")
    return items


def _type_of(zobject):
    """The Z1K1 of a serialized value (a long list written as an array: its list type)."""
    if isinstance(zobject, list):
        return _call_type("Z881", Z881K1=zobject[0])
    return zobject["Z1K1"]


def _native_plan(native, value):
    """The plan of `value`'s native type in a {"native": ...} map; for a negative number the
    plan named "-" + its type first (Natural number vs Integer)."""
    name = type(value).__name__
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        chosen = native.get("-" + name)
        if isinstance(chosen, dict):
            return chosen
    return native.get(name)


def _namespace():
    return {
        "__name__": "__main__",
        "__builtins__": builtins,
        "ZObject": ZObject,
        "ZPair": ZPair,
        "ZReference": ZReference,
        "Wikifunctions": Wikifunctions,
        "W": W,
    }


def run_call(code, function_name, arguments_json, converters_json, captured_limit):
    """Runs one call. Returns (ok, z22 utf-8 bytes, captured utf-8 bytes, out_of_memory)."""
    global _debug_log
    captured = _BoundedText(captured_limit)
    _debug_log = _DebugLog(captured_limit)
    saved = (sys.stdout, sys.stderr, sys.stdin)
    sys.stdout = sys.stderr = captured
    sys.stdin = io.StringIO("")
    out_of_memory = False
    try:
        try:
            arguments = _json_loads(arguments_json)
            converters = _Converters(converters_json)
            namespace = _namespace()
            exec(compile(code, "<code>", "exec"), namespace)
            try:
                function = namespace[function_name]
            except KeyError:
                raise NameError(f"name '{function_name}' is not defined") from None
            plans = converters.arguments
            keywords = {
                key: converters.to_native(plans.get(key), value) for key, value in arguments.items()
            }
            result = function(**keywords)
            z22 = _encode(_success(converters.from_native(converters.result, result)))
        except BaseException as error:  # noqa: B902 - user code may raise anything
            out_of_memory = isinstance(error, MemoryError)
            error.__traceback__ = None
            z22 = _encode(_failure(_message(error)))
    finally:
        sys.stdout, sys.stderr, sys.stdin = saved
    return (True, z22, captured.getvalue().encode("utf-8", "replace"), out_of_memory)


# ---- Modules (docs/compatibility.md "Modules") -----------------------------------------------
# Children read no files. Pure-Python standard modules are kept as marshalled code compiled in the
# zygote and executed only when a call imports them (no per-call cost otherwise); extension
# modules they need are loaded in the zygote. Modules that need the network or processes import
# as stand-ins whose functions fail with a clear error; anything else fails to import with a
# message that says why.


class _StoredLoader:
    def __init__(self, marshalled):
        self._marshalled = marshalled

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        import marshal

        exec(marshal.loads(self._marshalled), module.__dict__)


class _UnavailableLoader:
    def __init__(self, forward):
        self._forward = forward

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        name = module.__name__
        forward = self._forward

        def __getattr__(attribute):
            if attribute.startswith("__"):
                raise AttributeError(attribute)
            if forward is not None:
                source = sys.modules.get(forward) or __import__(forward, fromlist=["_"])
                if hasattr(source, attribute):
                    return getattr(source, attribute)

            def unavailable(*args, **kwargs):
                raise RuntimeError(
                    f"{name}.{attribute} is not available: Wikifunctions code runs without "
                    "network access, processes or files"
                )

            unavailable.__name__ = attribute
            return unavailable

        module.__getattr__ = __getattr__


class _ModuleStore:
    def __init__(self):
        self.stored = {}
        self.unavailable = {}

    def find_spec(self, name, path=None, target=None):
        import importlib.machinery as machinery

        if name in self.unavailable:
            return machinery.ModuleSpec(name, _UnavailableLoader(self.unavailable[name]))
        entry = self.stored.get(name)
        if entry is None:
            return None
        marshalled, is_package, origin = entry
        spec = machinery.ModuleSpec(
            name, _StoredLoader(marshalled), origin=origin, is_package=is_package
        )
        return spec


class _Refuse:
    """Last on sys.meta_path: a module nobody serves fails with the reason."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        top = name.partition(".")[0]
        if top in sys.stdlib_module_names:
            why = "this standard module is not preloaded in the evaluator (children read no files)"
        else:
            why = "only the Python standard library is available in Wikifunctions code"
        raise ModuleNotFoundError(f"No module named '{name}': {why}", name=name)


# Extension modules never loaded: OpenSSL (libcrypto) alone added ~0.1 ms of fork/exit CPU to
# every call; without it hashlib and hmac use CPython's built-in md5/sha1/sha2/sha3/blake2.
_NOT_LOADED = ("_hashlib", "_ssl")


def _modules_imported_by(names):
    """The modules that importing `names` adds, as [name, is_source] pairs, found in a forked
    process so that none of them runs here (what runs here stays in every child's memory)."""
    import os
    import importlib
    import importlib.machinery as machinery

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            for name in _NOT_LOADED:
                sys.modules[name] = None  # as in the children: the import fails, a fallback runs
            before = set(sys.modules)
            for name in names:
                try:
                    importlib.import_module(name)
                except Exception:
                    pass  # absent from this installation: its import fails with the reason later
            found = []
            for name in sorted(set(sys.modules) - before):
                loader = getattr(getattr(sys.modules[name], "__spec__", None), "loader", None)
                found.append([name, isinstance(loader, machinery.SourceFileLoader)])
            data = memoryview(_json_dumps(found).encode())
            while data:
                data = data[os.write(write_end, data) :]
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    while True:
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_end)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    return _json_loads(b"".join(chunks).decode()) if chunks else []


def _spec_without_running(name):
    """The file spec of `name` found without importing its parent packages."""
    import importlib.machinery as machinery

    parent, _, _ = name.rpartition(".")
    path = None
    if parent:
        parent_spec = _spec_without_running(parent)
        path = parent_spec.submodule_search_locations if parent_spec else None
        if path is None:
            return None
    return machinery.PathFinder.find_spec(name, path)


def install_modules(stored_names, unavailable):
    """In the zygote: find what importing `stored_names` needs (in a forked process), load the
    extension modules among them here, keep the pure-Python ones as marshalled code that runs
    only when a call imports it; `unavailable` maps a module name to the module whose attributes
    its stand-in forwards (or None). Returns the names kept as code."""
    import importlib
    import importlib.machinery as machinery
    import marshal

    store = _ModuleStore()
    found = _modules_imported_by(stored_names)
    for name, is_source in found:
        if is_source or name in _NOT_LOADED:
            continue
        try:
            importlib.import_module(name)
        except Exception:
            pass
    for name, is_source in found:
        if not is_source or name in sys.modules:
            continue
        spec = _spec_without_running(name)
        if spec is None or not isinstance(spec.loader, machinery.SourceFileLoader):
            continue
        code = spec.loader.get_code(name)
        store.stored[name] = (
            marshal.dumps(code),
            spec.submodule_search_locations is not None,
            spec.origin,
        )
        del code
    store.unavailable = dict(unavailable)
    sys.meta_path[:] = [
        store,
        *[finder for finder in sys.meta_path if finder is not machinery.PathFinder],
        _Refuse,
    ]
    sys.path_importer_cache.clear()
    return sorted(store.stored)


def freeze():
    gc.collect()
    gc.freeze()
