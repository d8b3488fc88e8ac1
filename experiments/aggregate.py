"""Tables of results over seeds: ``<results>/<table>.md`` and ``<results>/<table>.csv``.

Every figure is the mean ± sample standard deviation (ddof = 1) over the seeds that finished, in percent;
with one seed the deviation is "—". Seeds that failed, were killed or never ran are listed as such.

A run's metrics.json says its protocol (``"protocol"``: ``"heldout"``, the default, or ``"official"``; a run
without metrics is of the protocol it was planned with). Seeds of official runs are listed as ``S official``.
Heldout runs give ``val.last``, ``val.best``, ``test`` (best-on-validation weights) and ``test_last`` (last
epoch); official runs give ``test_official`` (``oa``: the best test epoch's OA, ``macc``: the separate
maximum of test mAcc over epochs). Runs may record ``distributed``: ``processes``, ``batch_per_process``,
``sync_bn``. Each column is filled from the runs that have it; a published figure's Δ is taken against our
figure of the same protocol (the table's ``compare:``).
"""

from __future__ import annotations

import csv
import io
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .seeds import DONE, FAILED, INCOMPLETE, MISSING, SeedRun, read_json
from .tables import COST_FIGURES, Metric, Source, Table, has_test

DASH = "—"
STATES = (DONE, FAILED, INCOMPLETE, MISSING)
COST_LABELS = {"params_m": "params (M)", "macs_g": "MACs (G)", "throughput": "throughput (/s)"}


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof = 1; None for a single value)."""
    if not values:
        raise ValueError("mean_std needs at least one value")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def format_stat(values: Sequence[float], n_done: int) -> str:
    """``mean ± std``, with ``(n=k)`` when fewer than the row's ``n_done`` finished seeds have the figure."""
    if not values:
        return DASH
    mean, std = mean_std(values)
    cell = f"{mean:.2f} ± {DASH if std is None else f'{std:.2f}'}"
    return cell if len(values) == n_done else f"{cell} (n={len(values)})"


@dataclass(frozen=True)
class SeedResult:
    seed: int
    state: str  # done | failed | incomplete | missing
    detail: str  # why, for a seed that is not done
    metrics: dict[str, Any] | None
    votes: dict[str, Any] | None  # metrics.json's test_votes of the voting run
    votes_failure: str | None
    environment: dict[str, Any] | None
    planned: str = "heldout"  # the protocol the run was launched with

    @property
    def protocol(self) -> str:
        return str((self.metrics or {}).get("protocol", self.planned))

    @property
    def label(self) -> str:
        """The seed, naming the protocol when it is not the default one."""
        return str(self.seed) + ("" if self.protocol == "heldout" else f" {self.protocol}")

    def split(self, figure: str) -> dict[str, Any] | None:
        """The per-split metrics behind a figure column (val_last, val_best, test, test_last, test_votes,
        test_official)."""
        if self.metrics is None:
            return None
        if figure == "test_votes":
            return self.votes
        if figure.startswith("val_"):
            return (self.metrics.get("val") or {}).get(figure.removeprefix("val_"))
        return self.metrics.get(figure)

    def distributed(self) -> str | None:
        """``processes x batch per process`` (and SyncBN) of the run, when it recorded them."""
        d = (self.metrics or {}).get("distributed")
        if not d:
            return None
        return f"{d['processes']} × {d['batch_per_process']}" + (", SyncBN" if d.get("sync_bn") else "")


def collect(run: SeedRun) -> SeedResult:
    state, detail = run.state()
    done = state == DONE
    failure = run.status().get("votes") or {}
    votes = run.votes() if done else None
    votes_failure = None
    if done and run.wants_votes() and votes is None and failure.get("returncode"):
        votes_failure = (
            f"exit {failure['returncode']}: {failure['last_line']} (log: {run.path / 'votes.log'})"
        )
    return SeedResult(
        seed=run.seed,
        state=state,
        detail=detail,
        metrics=run.metrics(),
        votes=votes,
        votes_failure=votes_failure,
        environment=read_json(run.path / "environment.json") if done else None,
        planned=run.protocol,
    )


@dataclass(frozen=True)
class RowResult:
    name: str
    model: str
    seeds: tuple[SeedResult, ...]
    published: dict[str, dict[str, float]]
    cost: dict[str, Any] | None  # experiments.cost.row_cost's record

    @property
    def done(self) -> list[SeedResult]:
        return [s for s in self.seeds if s.state == DONE]

    def done_in(self, protocol: str) -> int:
        return sum(s.protocol == protocol for s in self.done)

    def values(self, figure: str, metric: Metric, protocol: str | None = None) -> list[float]:
        """One figure of one metric over the finished seeds (of ``protocol``) that have it, in percent."""
        splits = (s.split(figure) for s in self.done if protocol in (None, s.protocol))
        return [100.0 * float(m[metric.key]) for m in splits if m is not None and metric.key in m]

    def seeds_in(self, state: str) -> list[str]:
        return [s.label for s in self.seeds if s.state == state]

    def cost_value(self, name: str) -> float | None:
        if self.cost is None:
            return None
        if name == "params_m":
            return self.cost["params"] / 1e6
        if name == "macs_g":
            return self.cost["macs"] / 1e9
        return self.cost["throughput"]["samples_per_s"] if self.cost["throughput"] else None

    def timing(self) -> tuple[list[float], list[float]]:
        """Training minutes per finished seed, and peak memory (MiB: CUDA allocated, else CPU RSS)."""
        minutes = [
            s.metrics["timing"]["train_s"] / 60 for s in self.done if s.metrics and "timing" in s.metrics
        ]
        peaks = []
        for s in self.done:
            memory = (s.metrics or {}).get("peak_memory") or {}
            peak = memory.get("cuda_max_allocated_mb") or memory.get("cpu_max_rss_mb")
            if peak is not None:
                peaks.append(float(peak))
        return minutes, peaks


@dataclass(frozen=True)
class Column:
    name: str  # the column's name in the CSV; the figure, unless `figure` names it
    label: str
    protocol: str  # the runs that produce it: heldout | official
    figure: str = ""  # a key of metrics.json (see the module docstring), when not the name

    @property
    def split(self) -> str:
        return self.figure or self.name


def figure_columns(table: Table, runs: Sequence[SeedRun]) -> list[Column]:
    """The figure columns: validation last / best; when runs test, the heldout test figures (best-on-val
    weights, last epoch, votes) and the official protocol's best test epoch and last epoch."""
    out = [Column("val_last", "val last", "heldout"), Column("val_best", "val best", "heldout")]
    if any(has_test(r.config) for r in runs):
        out += [Column("test", "test", "heldout"), Column("test_last", "test, last epoch", "heldout")]
        if table.votes:
            out.append(Column("test_votes", f"test, {table.votes} votes", "heldout"))
        out.append(Column("test_official", "official: test, best epoch", "official"))
        out.append(Column("official_last", "official: test, last epoch", "official", "test_last"))
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _num(x: float | None, digits: int = 4) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def _general(x: float | None) -> str:
    # costs span 1e-5 (a smoke model's GMACs) to 1e4 (throughput): six significant figures, not decimals
    return "" if x is None else f"{x:.6g}"


def _cell(x: float | None, digits: int) -> str:
    return DASH if x is None else f"{x:.{digits}f}"


def _cost_cell(name: str, x: float | None) -> str:
    # params and MACs to three significant figures, as published; throughput to 0.1 per second
    return DASH if x is None else f"{x:.1f}" if name == "throughput" else f"{x:.3g}"


def _seeds(seeds: list[str]) -> str:
    return " ".join(map(str, seeds))


def _md_table(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    return lines + ["| " + " | ".join(line) + " |" for line in body]


def _machines(rows: list[RowResult]) -> str:
    seen: dict[str, None] = {}  # an insertion-ordered set
    for row in rows:
        for s in row.done:
            env = s.environment or {}
            where = env.get("gpu") or f"CPU ({env.get('platform')}, {env.get('threads')} torch threads)"
            torch_version = env.get("versions", {}).get("torch")
            seen[f"{where}, torch {torch_version}, code {env.get('git_commit')}"] = None
    return "; ".join(seen) or "nothing yet (no seed finished)"


@dataclass(frozen=True)
class Layout:
    """What a table's sections show: the figure columns, the published sources, the compared figure."""

    table: Table
    columns: list[Column]

    def label(self, figure: str) -> str:
        return next((c.label for c in self.columns if c.name == figure), figure)

    @property
    def sources(self) -> list[str]:
        # a table without any published figure still shows the column, filled with dashes
        return list(self.table.published) or ["published"]

    def compared(self, source: str) -> str:
        """Our figure a published source's figures are compared with: the one of its protocol."""
        published = self.table.published.get(source)
        return self.table.compare["official" if published is None else published.protocol]


def _provenance(source: Source) -> str:
    return (
        f"- Published, **{source.label}** ({source.protocol} protocol): {source.source} Code: {source.code} "
        f"Checked: {source.verified}"
    )


def _header(layout: Layout, rows: list[RowResult], command: str) -> list[str]:
    table = layout.table
    votes = f"; test, {table.votes} votes: those weights, {table.votes} augmented views averaged (fixed seed)"
    official, heldout = (layout.label(table.compare[p]) for p in ("official", "heldout"))
    md = [
        f"# {table.title}",
        "",
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
        "Mean ± sample standard deviation (ddof = 1) over the seeds that finished, in %; n: how many "
        f"(± {DASH}: one). val last / val best: the validation split at the last epoch / at the "
        "best-on-validation epoch (the model selection); test: evaluated once, with the best-on-validation "
        f"weights; test, last epoch: the last epoch's weights{votes if table.votes else ''}. Two protocols: "
        f"**official** (the published one: the best epoch on the reported split, mAcc a separate maximum "
        f'over epochs) headlines "{official}"; **heldout** (ours: selection on a held-out split) '
        f'headlines "{heldout}". n heldout / n official: finished runs of each. Δ: our figure of the '
        "source's protocol minus the published one.",
        "",
    ]
    md += [_provenance(source) for source in table.published.values()]
    md += [] if table.published else [f"- Published: {DASH} (none exists for this table)"]
    md += ["", table.notes] if table.notes else []
    return md + ["", f"Measured on: {_machines(rows)}."]


def _metric_section(layout: Layout, metric: Metric, rows: list[RowResult], csv_rows: list[dict]) -> list[str]:
    header = ["row", "n heldout", "n official"] + [c.label for c in layout.columns]
    for source in layout.sources:
        header += [source, f"Δ {source}"]
    body = []
    for r, line in zip(rows, csv_rows):
        cells = [r.name, str(r.done_in("heldout")), str(r.done_in("official"))]
        for column in layout.columns:
            values = r.values(column.split, metric, column.protocol)
            cells.append(format_stat(values, r.done_in(column.protocol)))
            mean, std = mean_std(values) if values else (None, None)
            stem = f"{metric.name}_{column.name}"
            line.update({f"{stem}_mean": _num(mean), f"{stem}_std": _num(std), f"{stem}_n": str(len(values))})
        for source in layout.sources:
            ours = r.values(layout.compared(source), metric)
            published = r.published.get(source, {}).get(metric.name)
            diff = mean_std(ours)[0] - published if published is not None and ours else None
            cells += [_cell(published, 1), DASH if diff is None else f"{diff:+.2f}"]
            line[f"{metric.name}_{_slug(source)}"] = _num(published, 2)
            line[f"{metric.name}_{_slug(source)}_diff"] = _num(diff)
        body.append(cells)
    return ["", f"## {metric.label} (%)", ""] + _md_table(header, body)


def _cost_section(layout: Layout, rows: list[RowResult], csv_rows: list[dict]) -> list[str]:
    sources = [
        s for s in layout.sources if any(set(COST_FIGURES) & set(r.published.get(s, {})) for r in rows)
    ]
    header = ["row", "model"]
    for name in COST_FIGURES:
        header += [COST_LABELS[name]] + [f"{name.split('_')[0]}, {s}" for s in sources]
    header += ["throughput measured with", "processes × batch / process"]
    header += ["train time / seed (min, no evaluation)", "peak memory (MiB)"]
    body = []
    for r, line in zip(rows, csv_rows):
        cells = [r.name, r.model]
        for name in COST_FIGURES:
            cells.append(_cost_cell(name, r.cost_value(name)))
            line[name] = _general(r.cost_value(name))
            for source in sources:
                published = r.published.get(source, {}).get(name)
                cells.append(_cost_cell(name, published))
                line[f"{name}_{_slug(source)}"] = _general(published)
        measured = (r.cost or {}).get("throughput")
        how = (
            f"{measured['device']}, batch {measured['batch']}, {measured['threads']} threads"
            if measured
            else ""
        )
        minutes, peaks = r.timing()
        peak = max(peaks) if peaks else None
        layouts = "; ".join(dict.fromkeys(d for d in (s.distributed() for s in r.done) if d))
        cells += [how or DASH, layouts or DASH, format_stat(minutes, len(r.done)), _cell(peak, 0)]
        line["throughput_measured_with"] = how
        line["processes_x_batch"] = layouts
        line["train_min_mean"] = _num(mean_std(minutes)[0] if minutes else None)
        line["peak_memory_mib_max"] = _num(peak, 0)
        body.append(cells)
    note = (
        "Parameters and MACs per sample of the trained model at its input size (MACs as `main.py info` "
        "counts them); throughput: eval-mode float32 forwards per second, measured once after training. "
        "processes × batch / process: how each run trained (BatchNorm sees the per-process batch unless "
        f"SyncBN is on; {DASH}: not recorded by the run)."
    )
    return ["", "## Model and cost", "", note, ""] + _md_table(header, body)


def _seeds_section(rows: list[RowResult]) -> list[str]:
    body = [
        [r.name, _seeds([s.label for s in r.seeds])] + [_seeds(r.seeds_in(st)) or DASH for st in STATES]
        for r in rows
    ]
    md = ["", "## Seeds", ""] + _md_table(["row", "seeds", *STATES], body)
    problems = [
        f"- {r.name} seed {s.label}: {s.state}: {s.detail}" for r in rows for s in r.seeds if s.detail
    ]
    problems += [
        f"- {r.name} seed {s.label}: voting failed: {s.votes_failure}"
        for r in rows
        for s in r.seeds
        if s.votes_failure
    ]
    return md + (["", *problems] if problems else [])


def render(layout: Layout, rows: list[RowResult], command: str) -> tuple[str, str]:
    """The markdown and CSV text of a table."""
    csv_rows = [
        {
            "table": layout.table.name,
            "row": r.name,
            "model": r.model,
            "seeds": _seeds([s.label for s in r.seeds]),
        }
        | {state: _seeds(r.seeds_in(state)) for state in STATES}
        for r in rows
    ]
    md = _header(layout, rows, command)
    for metric in layout.table.metrics:
        md += _metric_section(layout, metric, rows, csv_rows)
    md += _cost_section(layout, rows, csv_rows) + _seeds_section(rows)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(csv_rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows)
    return "\n".join(md) + "\n", text.getvalue()


def write(
    table: Table,
    runs: Sequence[SeedRun],
    costs: dict[str, dict[str, Any] | None],
    results: Path,
    command: str,
) -> tuple[Path, Path]:
    """Collect ``runs`` (one table's) and write ``results/<table>.md`` and ``.csv``; returns their paths."""
    rows = []
    for name in dict.fromkeys(r.row.name for r in runs):  # the rows, in table order
        mine = [r for r in runs if r.row.name == name]
        model = mine[0].config.model.name
        seeds = tuple(collect(r) for r in mine)
        rows.append(RowResult(name, model, seeds, mine[0].row.published, costs.get(name)))
    md, csv_text = render(Layout(table, figure_columns(table, runs)), rows, command)
    results.mkdir(parents=True, exist_ok=True)
    md_path, csv_path = results / f"{table.name}.md", results / f"{table.name}.csv"
    md_path.write_text(md)
    csv_path.write_text(csv_text)
    return md_path, csv_path
