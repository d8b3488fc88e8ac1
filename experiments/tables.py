"""The paper's tables as data: ``experiments/tables/<table>/table.yaml`` lists a table's rows, published
figures and smoke settings; ``experiments/tables/<table>/<row>.yaml`` is each row's training config.

A table is added by writing a folder with a ``table.yaml`` and one config per row; a row is added by writing
its config and listing it under ``rows:``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pointcoc.engine.config import RunConfig, load_config, parse_value

TABLES_DIR = Path(__file__).resolve().parent / "tables"
TABLE_FILE = "table.yaml"
SMOKE_FILE = "smoke.yaml"  # the --smoke overrides of each track
COST_FIGURES = ("params_m", "macs_g", "throughput")  # published model-cost figures, per row
# How a figure was selected. official: the published protocol, the best epoch on the very split that is
# reported (the test set for ScanObjectNN / ModelNet40, the validation set for ImageNet), with mAcc a
# separate maximum over epochs; heldout: ours, the epoch chosen on a held-out split, the test scored once.
PROTOCOLS = ("official", "heldout")
# Our figures (metrics.json of a run) that may headline a protocol in `compare:`.
COMPARABLE = ("test", "test_last", "test_official", "val_last", "val_best")
SOURCE_KEYS = ("source", "code", "protocol", "verified")


@dataclass(frozen=True)
class Metric:
    name: str  # as written in table.yaml's published figures and in the CSV columns
    key: str  # the key in metrics.json's per-split dictionaries
    label: str


# Top-1 accuracy is the overall accuracy, metrics.json's "oa".
TRACK_METRICS = {
    "points": (Metric("oa", "oa", "OA"), Metric("macc", "macc", "mAcc")),
    "images": (Metric("top1", "oa", "top-1"), Metric("top5", "top5", "top-5")),
}


@dataclass(frozen=True)
class Source:
    """Where a published figure comes from, which code produced it, under which protocol, and what in
    reach confirms it (or why nothing does)."""

    label: str  # the column name, e.g. "paper", "README 2024-02"
    source: str  # paper and table, or README, commit and date
    code: str  # the code version that produced the figures
    protocol: str  # official | heldout
    verified: str


@dataclass(frozen=True)
class Row:
    name: str
    config: Path
    published: dict[str, dict[str, float]]  # published source label -> figure name -> value
    smoke: dict[str, Any]  # extra dotted-key overrides for --smoke, after the table's


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    track: str  # points | images
    compare: dict[str, str]  # protocol -> our figure that a published figure of that protocol sits beside
    votes: int  # views of `main.py test --votes` after training; 0: no voting figure
    seeds: tuple[int, ...]  # the seeds run when --seeds is not given
    throughput_batch: int | None  # batch of the inference throughput measurement; None: not measured
    published: dict[str, Source]  # source label -> provenance
    smoke: dict[str, Any]  # dotted-key overrides that make every row tiny and synthetic (track's, table's)
    rows: tuple[Row, ...]
    notes: str
    protocols: tuple[str, ...] = ("heldout",)  # the runs each seed gets: one per protocol

    @property
    def metrics(self) -> tuple[Metric, ...]:
        return TRACK_METRICS[self.track]

    def row(self, name: str) -> Row:
        for row in self.rows:
            if row.name == name:
                return row
        raise ValueError(
            f"table {self.name!r} has no row {name!r}; its rows: {', '.join(r.name for r in self.rows)}"
        )


def table_names() -> list[str]:
    return sorted(p.parent.name for p in TABLES_DIR.glob(f"*/{TABLE_FILE}"))


def _check_keys(where: str, given: dict[str, Any], allowed: set[str], required: set[str]) -> None:
    unknown, missing = sorted(set(given) - allowed), sorted(required - set(given))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}")


def _load_row(path: Path, name: str, spec: dict[str, Any] | None, table: dict[str, Any]) -> Row:
    spec = spec or {}
    _check_keys(f"{path} rows.{name}", spec, {"published", "smoke"}, set())
    config = path.parent / f"{name}.yaml"
    if not config.is_file():
        raise ValueError(f"{path}: row {name!r} has no config {config}; write it or remove the row")
    published = spec.get("published") or {}
    names = {m.name for m in TRACK_METRICS[table["track"]]} | set(COST_FIGURES)
    for source, figures in published.items():
        if source not in table.get("published", {}):
            raise ValueError(f"{path} rows.{name}: published source {source!r} is not under published:")
        bad = sorted(set(figures) - names)
        if bad:
            raise ValueError(f"{path} rows.{name}: unknown published figure(s) {bad}; use {sorted(names)}")
    return Row(name, config, published, dict(spec.get("smoke") or {}))


def _load_source(path: Path, label: str, body: Any) -> Source:
    where = f"{path} published.{label}"
    if not isinstance(body, dict):
        raise ValueError(f"{where}: give {list(SOURCE_KEYS)}: where, which code, which protocol, checked how")
    _check_keys(where, body, set(SOURCE_KEYS), set(SOURCE_KEYS))
    if body["protocol"] not in PROTOCOLS:
        raise ValueError(f"{where}.protocol must be one of {list(PROTOCOLS)}, got {body['protocol']!r}")
    return Source(label, *(" ".join(str(body[k]).split()) for k in SOURCE_KEYS))


def load_table(name: str) -> Table:
    """The table ``name`` (a folder under experiments/tables), validated; errors name the file and key."""
    path = TABLES_DIR / name / TABLE_FILE
    if not path.is_file():
        raise ValueError(
            f"unknown table {name!r}; choose from {', '.join(table_names())} "
            "(python -m experiments.run --list)"
        )
    spec = yaml.safe_load(path.read_text()) or {}
    allowed = {
        "title",
        "track",
        "compare",
        "votes",
        "seeds",
        "throughput_batch",
        "published",
        "smoke",
        "rows",
        "notes",
        "protocols",
    }
    _check_keys(str(path), spec, allowed, {"title", "track", "compare", "rows"})
    if spec["track"] not in TRACK_METRICS:
        raise ValueError(f"{path}: track must be one of {sorted(TRACK_METRICS)}, got {spec['track']!r}")
    smoke = yaml.safe_load((TABLES_DIR / SMOKE_FILE).read_text())[spec["track"]]
    compare = spec["compare"]
    if not isinstance(compare, dict) or set(compare) != set(PROTOCOLS):
        raise ValueError(f"{path}: compare must map each protocol {list(PROTOCOLS)} to one of our figures")
    bad = sorted(str(v) for v in compare.values() if v not in COMPARABLE)
    if bad:
        raise ValueError(f"{path}: compare names unknown figure(s) {bad}; use {list(COMPARABLE)}")
    published = spec.get("published") or {}
    sources = {label: _load_source(path, label, body) for label, body in published.items()}
    votes = int(spec.get("votes", 0))
    if votes and spec["track"] != "points":
        raise ValueError(f"{path}: votes averages point-cloud views; set votes: 0 for an image table")
    protocols = tuple(spec.get("protocols", ["heldout"]))
    if not protocols or len(set(protocols)) != len(protocols) or not set(protocols) <= set(PROTOCOLS):
        raise ValueError(f"{path}: protocols must list distinct ones of {list(PROTOCOLS)}, got {protocols}")
    rows = tuple(_load_row(path, row, body, spec) for row, body in (spec["rows"] or {}).items())
    if not rows:
        raise ValueError(f"{path}: rows: is empty; list at least one row")
    return Table(
        name=name,
        title=str(spec["title"]),
        track=spec["track"],
        compare=dict(compare),
        votes=votes,
        seeds=tuple(int(s) for s in spec.get("seeds", (0, 1, 2))),
        throughput_batch=spec.get("throughput_batch"),
        published=sources,
        smoke={**smoke, **(spec.get("smoke") or {})},
        rows=rows,
        notes=str(spec.get("notes", "")).strip(),
        protocols=protocols,
    )


def run_overrides(
    table: Table, row: Row, seed: int, smoke: bool, extra: list[str], protocol: str = "heldout"
) -> list[str]:
    """The ``--set`` items of one seed's run: smoke settings (table, then row), the user's, the seed (and
    ``train.protocol=official`` for a run of that protocol)."""
    settings = {**table.smoke, **row.smoke} if smoke else {}
    official = ["train.protocol=official"] if protocol == "official" else []
    return [f"{k}={_cli_value(v)}" for k, v in settings.items()] + list(extra) + official + [f"seed={seed}"]


def _cli_value(value: Any) -> str:
    """``value`` as a ``--set`` value that parses back to it: a plain word when it would, else JSON (which
    is YAML flow syntax, how ``--set`` values are parsed)."""
    if isinstance(value, str) and parse_value(value) == value:
        return value
    return json.dumps(value)


def resolve(row: Row, overrides: list[str]) -> RunConfig:
    """The config a run of ``row`` trains with."""
    try:
        return load_config(row.config, overrides)
    except ValueError as exc:
        raise ValueError(f"row {row.name!r} ({row.config}): {exc}") from None


def has_test(config: RunConfig) -> bool:
    """Whether a run of ``config`` evaluates a test split (the engine's rule in build_run_data)."""
    return config.data.split is not None or config.data.test_fraction > 0
