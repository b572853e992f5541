#!/usr/bin/env python3
"""Refreshes the bundled definitions (definitions/, definitions/fallback/) from WikiLambda's 2026
initial content (../shared/reference/definitions-2026). What it does, and why, is in
docs/builtins.md: built-ins served from memory take the 2026 text; the 2023-only objects stay;
the three enum functions without an implementation get ours; new types, error types and
languages become fallbacks (used only when no wiki has them). Run from anywhere:
    orchestrator/engine/refresh_definitions.py [path/to/definitions-2026]
"""
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
INTERNAL = HERE / "definitions"
FALLBACK = INTERNAL / "fallback"
SOURCE = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[2] / "shared/reference/definitions-2026"

# New built-in functions and their implementations, served from memory like the 2023 ones.
NEW_INTERNAL = """Z850 Z851 Z852 Z853 Z854 Z950 Z951 Z952 Z953 Z954 Z872 Z873 Z876 Z972 Z973 Z976
Z877 Z977 Z189 Z289 Z832 Z932 Z861 Z961 Z862 Z962 Z884 Z894 Z184""".split()
# definitions-2026 lists no implementation for these; the engine's built-ins are named like the
# Wikidata family's (Z6884 -> Z6984, Z6894 -> Z6994, Z6184 -> Z6284).
OUR_IMPLEMENTATIONS = {"Z884": ("Z984", "Typed enum of ZObject references"),
                       "Z894": ("Z994", "Same enum instance"),
                       "Z184": ("Z284", "Validate instance of enum type")}
# New types and the Z5xx error types of 2026: fallbacks. The Wikidata family (Z6xxx) and the
# community objects (>= Z10000) are left to their own work.
NEW_FALLBACK_TYPES = "Z25 Z46 Z64 Z89 Z96 Z310".split()


def read(path):
    return json.loads(path.read_text(encoding="utf-8"))


def write(path, value):
    """Writes compact JSON, as the other bundled files; an unchanged object is left as it is."""
    if path.exists() and read(path) == value:
        return
    path.write_text(json.dumps(value, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")


def is_type(z2):
    """The built-in types keep their 2023 text: 2026 adds Z4K4 and Z3K4 (docs/builtins.md)."""
    value = z2.get("Z2K2")
    return isinstance(value, dict) and value.get("Z1K1") == "Z4"


def zid_number(name):
    return int(name[1:]) if name[1:].isdigit() else -1


def main():
    if not (SOURCE / "Z850.json").exists():
        sys.exit(f"no definitions-2026 at {SOURCE}: pass its path")
    for path in sorted(INTERNAL.glob("Z*.json")):
        new = SOURCE / path.name
        if new.exists() and not is_type(read(path)):
            write(path, read(new))
    for zid in NEW_INTERNAL:
        z2 = read(SOURCE / f"{zid}.json")
        if zid in OUR_IMPLEMENTATIONS:
            impl, label = OUR_IMPLEMENTATIONS[zid]
            z2["Z2K2"]["Z8K4"] = ["Z14", impl]
            write(INTERNAL / f"{impl}.json", {
                "Z1K1": "Z2", "Z2K1": {"Z1K1": "Z6", "Z6K1": impl},
                "Z2K2": {"Z1K1": "Z14", "Z14K1": zid, "Z14K4": {"Z1K1": "Z6", "Z6K1": impl}},
                "Z2K3": {"Z1K1": "Z12", "Z12K1": ["Z11", {"Z1K1": "Z11", "Z11K1": "Z1002",
                                                          "Z11K2": f"Built-in implementation of {label}"}]}})
        write(INTERNAL / f"{zid}.json", z2)
    for path in sorted(FALLBACK.glob("Z*.json")):
        new = SOURCE / path.name
        if new.exists():
            write(path, read(new))
    languages = read(INTERNAL / "naturalLanguages.json")
    for path in sorted(SOURCE.glob("Z*.json"), key=lambda p: zid_number(p.stem)):
        zid = path.stem
        if (INTERNAL / path.name).exists() or (FALLBACK / path.name).exists():
            continue
        z2 = read(path)
        value = z2.get("Z2K2")
        kind = value.get("Z1K1") if isinstance(value, dict) else None
        n = zid_number(zid)
        if zid in NEW_FALLBACK_TYPES or (kind == "Z50" and 500 <= n < 600) or kind == "Z60":
            write(FALLBACK / path.name, z2)
        if kind == "Z60":
            codes = [value.get("Z60K1")] + [c for c in (value.get("Z60K2") or [])[1:]]
            for code in codes:
                if isinstance(code, str) and code not in languages:
                    languages[code] = zid
    write(INTERNAL / "naturalLanguages.json", languages)


if __name__ == "__main__":
    main()
