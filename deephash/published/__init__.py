"""The numbers the two papers publish, stored as data (JSON files beside this module).

* ``dseh_table1.json`` — DSEH Table 1: mAP at 16/32/48/64 bits per method and data set
  (rows not transcribed here are ``null`` with a note; never guessed);
* ``dseh_table2.json`` — DSEH Table 2: the ablation at 32 bits (``n_h``, ``map_l``, ``map_i``);
* ``dsrh_text.json`` — the numbers DSRH gives in its text (its results are figures), and
  the relative improvements the text quotes.

Every table is flattened into :class:`Record` s (paper, table, data set, method, bits,
metric, value), so a report can ask "what did a paper publish for this cell":

    >>> from deephash import published
    >>> published.value("dseh_table1", "nuswide21", "dseh", 32, "map")
    0.7312

Data set keys are the names of ``deephash.data`` (``cifar10``, ``nuswide21``,
``imagenet100``, ``coco``); method keys are registered method names; metric keys are
those of ``metrics.json`` (``map``, ``precision_radius_2``, ``n_h``, ``map_l``, ``map_i``).
The embedded sets stand in for real ones (:func:`reference_dataset`): a table printed for
``digits_multi`` shows the paper's NUS-WIDE numbers beside it, labelled as such.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any

from deephash import validation

_DIR = os.path.dirname(os.path.abspath(__file__))

DATASET_NAMES = {
    "cifar10": "CIFAR-10",
    "nuswide21": "NUS-WIDE",
    "imagenet100": "ImageNet",
    "coco": "MS-COCO",
    "digits": "digits (embedded)",
    "digits_multi": "digits_multi (embedded)",
}

# which real data set an embedded set stands in for, per paper
_STAND_INS = {
    "digits": {"dsrh": "cifar10", "dseh": "imagenet100"},
    "digits_multi": {"dsrh": "nuswide21", "dseh": "nuswide21"},
}

# which table each paper's experiment compares with
PAPER_TABLES = {"dsrh": ("dsrh_text",), "dseh": ("dseh_table1", "dseh_table2")}


@dataclasses.dataclass(frozen=True)
class Record:
    """One published number (``value`` None: not transcribed; ``note`` says why)."""

    paper: str
    table: str
    dataset: str
    method: str
    bits: int
    metric: str
    value: float | None
    note: str = ""


def available() -> list[str]:
    """Names of the published tables (JSON files here, without ``.json``)."""
    return sorted(f[:-5] for f in os.listdir(_DIR) if f.endswith(".json"))


@functools.lru_cache(maxsize=None)
def _load_cached(name: str) -> str:
    path = os.path.join(_DIR, f"{name}.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no published table {name!r} (expected {path}); available: {', '.join(available())}"
        )
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        json.loads(text)
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    return text


def load(name: str) -> dict:
    """The raw content of table ``name`` (a fresh copy)."""
    return json.loads(_load_cached(str(name)))


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def _flatten(name: str, doc: dict) -> list[Record]:
    """Records of one JSON document; accepts the layouts used by the files here:
    a list ``values`` of ``{dataset, method, bits, metric, value}`` dicts, or
    ``values[dataset][method]`` as a list aligned with ``bits`` (metric ``doc["metric"]``)
    or as a dict ``{metric: value}`` (at the single code length ``doc["bits"]``)."""
    paper = str(doc.get("paper", name))
    table = str(doc.get("table", name))
    values = doc.get("values", doc.get("records"))
    if isinstance(values, list):
        return [
            Record(
                paper,
                table,
                r["dataset"],
                r["method"],
                int(r["bits"]),
                r["metric"],
                _num(r.get("value")),
                str(r.get("where", r.get("note", ""))),
            )
            for r in values
        ]
    if not isinstance(values, dict):
        raise ValueError(f"published table {name!r}: 'values' must be a list or a dict")
    out: list[Record] = []
    for dataset, rows in values.items():
        for method, row in rows.items():
            where = f"published table {name!r}: {dataset}/{method}"
            cells = _cells(name, where, doc, row)
            out += [
                Record(paper, table, dataset, method, b, metric, _num(v), note)
                for b, metric, v, note in cells
            ]
    return out


def _cells(name: str, where: str, doc: dict, row) -> list[tuple]:
    """``(bits, metric, value, note)`` of one row of a ``values[dataset][method]`` table."""
    bits = doc.get("bits")
    null_note = str(doc.get("null_note", "not transcribed"))
    if isinstance(row, list) or row is None:
        if not isinstance(bits, list):
            raise ValueError(f"published table {name!r}: rows are lists but 'bits' is not a list")
        cells = row if row is not None else [None] * len(bits)
        if len(cells) != len(bits):
            raise ValueError(f"{where} has {len(cells)} values for {len(bits)} code lengths")
        metric = str(doc.get("metric", "map"))
        return [
            (int(b), metric, v, "" if v is not None else null_note) for b, v in zip(bits, cells)
        ]
    if not isinstance(row, dict):
        raise ValueError(f"{where} has an unreadable row")
    b = row.get("bits", bits)
    if not validation.is_int(b):
        raise ValueError(f"{where} needs one code length")
    return [
        (int(b), metric, v, "" if v is not None else null_note)
        for metric, v in row.items()
        if metric != "bits" and not isinstance(v, (dict, list, str))
    ]


def records(name: str | None = None) -> list[Record]:
    """All records of table ``name`` (every table when None)."""
    names = [name] if name is not None else available()
    out: list[Record] = []
    for n in names:
        out.extend(_flatten(n, load(n)))
    return out


def lookup(
    dataset: str,
    method: str | None = None,
    bits: int | None = None,
    metric: str | None = None,
    tables: tuple[str, ...] | None = None,
) -> list[Record]:
    """Records matching the given fields (None matches anything), from ``tables`` (all)."""
    out = []
    for name in tables if tables is not None else available():
        for r in records(name):
            if (
                r.dataset == dataset
                and (method is None or r.method == method)
                and (bits is None or r.bits == int(bits))
                and (metric is None or r.metric == metric)
            ):
                out.append(r)
    return out


def value(table: str, dataset: str, method: str, bits: int, metric: str = "map") -> float | None:
    """The published number of one cell of ``table`` (None when not transcribed);
    KeyError when the table has no such cell."""
    found = lookup(dataset, method, bits, metric, tables=(table,))
    if not found:
        raise KeyError(f"{table} has no cell {dataset}/{method}/{bits} bits/{metric}")
    return found[0].value


def relative_improvements(dataset: str | None = None) -> list[dict]:
    """The relative improvements quoted in DSRH's text (``dsrh_text.json``)."""
    items = load("dsrh_text").get("relative_improvements", [])
    return [dict(r) for r in items if dataset is None or r["dataset"] == dataset]


def reference_dataset(dataset: str, paper: str) -> str | None:
    """The real data set whose published numbers stand beside runs on ``dataset`` for
    ``paper`` ("dsrh" or "dseh"): itself when the paper used it, the stood-in set for the
    embedded sets, else None."""
    paper = str(paper).lower()
    if paper not in PAPER_TABLES:
        raise ValueError(f"unknown paper {paper!r}; known: {', '.join(PAPER_TABLES)}")
    if dataset in _STAND_INS:
        return _STAND_INS[dataset][paper]
    datasets: set[str] = set()
    for name in PAPER_TABLES[paper]:
        if name in available():
            datasets.update(r.dataset for r in records(name))
    return dataset if dataset in datasets else None


def dataset_name(dataset: str) -> str:
    """Display name of a data set key (e.g. ``nuswide21`` -> ``NUS-WIDE``)."""
    return DATASET_NAMES.get(dataset, dataset)


__all__ = [
    "Record",
    "available",
    "load",
    "records",
    "lookup",
    "value",
    "relative_improvements",
    "reference_dataset",
    "dataset_name",
    "DATASET_NAMES",
    "PAPER_TABLES",
]
