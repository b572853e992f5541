"""Metric names: which ones the services define, and which ones a PromQL expression uses.

Shared by test_rules.py, test_dashboard.py and test_prometheus_live.py so that neither the alert
rules nor the Grafana dashboard can silently drift away from the metrics the code exposes.
"""

import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
SOURCE_DIRS = ("src", "include", "orchestrator", "evaluator")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
# Series Prometheus itself attaches to every target.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added"}

_NAME_CALL = re.compile(r'\.Name\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"')
# The process collector builds its families by name (src/obs/metrics.cc: gauge_family("process_...")).
_PROCESS_LITERAL = re.compile(r'"(process_[a-z0-9_]+)"')
_DOC_NAME = re.compile(r"`([a-zA-Z_:][a-zA-Z0-9_:]*)`")
_METRIC_SHAPE = re.compile(r"^(wf|process)_[a-z0-9_]+$")


def documented_metrics(path=os.path.join(ROOT, "docs", "metrics.md")):
    """Names in the first column of the tables of docs/metrics.md."""
    names = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("|"):
                cells = line.split("|")
                if len(cells) > 2:
                    names.update(n for n in _DOC_NAME.findall(cells[1]) if _METRIC_SHAPE.match(n))
    return names


def source_metrics(root=ROOT):
    """Names registered in the C++ sources (`.Name("...")`) plus the process_* collector's."""
    names = set()
    for d in SOURCE_DIRS:
        for dirpath, _, files in os.walk(os.path.join(root, d)):
            for fn in files:
                if not fn.endswith((".cc", ".h", ".cpp", ".hpp")):
                    continue
                with open(os.path.join(dirpath, fn), encoding="utf-8", errors="replace") as f:
                    text = f.read()
                names.update(_NAME_CALL.findall(text))
                if os.path.join("src", "obs") in dirpath:
                    names.update(_PROCESS_LITERAL.findall(text))
    return names


def known_metrics():
    return documented_metrics() | source_metrics() | SYNTHETIC


def is_known(name, known):
    if name in known:
        return True
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in known:
            return True
    return False


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_LABEL_LISTS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
             "bool", "offset", "inf", "nan", "Inf", "NaN", "atan2",
             # aggregation operators, which may be followed by `by (...)` before their '('
             "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
             "bottomk", "topk", "quantile"}


def expr_metric_names(expr):
    """Metric (and recording rule) names selected by a PromQL expression.

    Strings, label matchers, range/subquery brackets and label lists of by/without/on/ignoring/
    group_* are removed first; what remains are function names (followed by '('), keywords,
    numbers and selector names.
    """
    s = _STRING.sub('""', expr)
    s = _BRACES.sub("{}", s)
    s = _BRACKETS.sub("[]", s)
    s = _LABEL_LISTS.sub(r"\1()", s)
    names = set()
    for m in _IDENT.finditer(s):
        name, call = m.group(1), m.group(2)
        if call or name in _KEYWORDS:
            continue
        names.add(name)
    return names
