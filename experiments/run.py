"""Run the paper's tables over several seeds and aggregate them.

python -m experiments.run --list                              the tables, their rows and default seeds
python -m experiments.run TABLE [TABLE ...] [--seeds 0 1 2] [--rows ROW ...] [--set key=value ...]
        [--protocols heldout official]                        train every row x protocol x seed (one
                                                              `main.py train` process each, through torchrun
                                                              when several GPUs are visible), vote where the
                                                              table does, then write
                                                              experiments/results/TABLE.{md,csv}
python -m experiments.run TABLE --aggregate-only              only rewrite the results from the run folders
python -m experiments.run --smoke [TABLE ...]                 every row end to end on tiny synthetic data,
                                                              into a new temporary folder, each run in this
                                                              process (what CI runs)

Runs live in OUT/<table>/<row>/seed<S>/ (official protocol: seed<S>-official/; OUT: --out, default
runs/experiments). A finished seed is skipped, a
killed one (checkpoint_last.pt, no metrics.json) is resumed, a failed one is recorded in its status.json and
shown as failed; rerunning the same command retries it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

# Busy-waiting OpenMP threads collapse on shared cores (see main.py); the cost measurement runs here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import aggregate, seeds  # noqa: E402
from .cost import row_cost  # noqa: E402
from .tables import PROTOCOLS, Row, Table, load_table, table_names  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def list_tables() -> str:
    lines = []
    for name in table_names():
        table = load_table(name)
        lines.append(f"{name:<14}{table.title}")
        lines.append(
            f"{'':<14}rows: {', '.join(r.name for r in table.rows)}; seeds: "
            f"{' '.join(map(str, table.seeds))}; protocols: {' '.join(table.protocols)}"
            + (f"; {table.votes} votes" if table.votes else "")
        )
    return "\n".join(lines)


def select_rows(tables: list[Table], names: list[str] | None) -> dict[str, list[Row]]:
    """Each table's rows to run: all, or those named by --rows (each must belong to one of the tables)."""
    if not names:
        return {t.name: list(t.rows) for t in tables}
    known = {r.name for t in tables for r in t.rows}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(
            f"--rows: {', '.join(unknown)} is in none of the tables {[t.name for t in tables]}; "
            f"their rows: {', '.join(sorted(known))}"
        )
    return {t.name: [r for r in t.rows if r.name in names] for t in tables}


def check_seeds(values: list[int]) -> list[int]:
    bad = [s for s in values if s < 0]
    if bad or len(set(values)) != len(values):
        raise ValueError(f"--seeds: give distinct non-negative integers, got {' '.join(map(str, values))}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.run", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("tables", nargs="*", metavar="TABLE", help="tables to run (see --list)")
    parser.add_argument("--list", action="store_true", help="name the tables and their rows")
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds (default: the table's, 0 1 2)")
    parser.add_argument("--rows", nargs="+", metavar="ROW", help="only these rows")
    parser.add_argument(
        "--protocols",
        nargs="+",
        choices=PROTOCOLS,
        help="the runs each seed gets (default: the table's protocols: heldout, and official where the "
        "published figures are of that protocol)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny synthetic data, one epoch, seed 0; every table when none is named",
    )
    parser.add_argument(
        "--out", type=Path, help="run folders (default runs/experiments; smoke: a new temp dir)"
    )
    parser.add_argument(
        "--results",
        type=Path,
        help="where TABLE.md/.csv go (default experiments/results; smoke: OUT/results)",
    )
    parser.add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="config override for every run, e.g. data.root=/data/h5_files",
    )
    parser.add_argument("--aggregate-only", action="store_true", help="write the results; train nothing")
    return parser


def run(args: argparse.Namespace, command: str) -> int:
    """Run and aggregate; returns 0 when every requested seed (and voting run) finished, else 1."""
    if args.list:
        print(list_tables())
        return 0
    if not args.tables and not args.smoke:
        raise ValueError("name a table (python -m experiments.run --list shows them) or pass --smoke")
    tables = [load_table(name) for name in (args.tables or table_names())]
    rows = select_rows(tables, args.rows)
    out = args.out or (
        Path(tempfile.mkdtemp(prefix="experiments-smoke-")) if args.smoke else Path("runs/experiments")
    )
    results = args.results or (out / "results" if args.smoke else RESULTS)
    complete = True
    for table in [t for t in tables if rows[t.name]]:
        chosen = check_seeds(args.seeds or ([0] if args.smoke else list(table.seeds)))
        protocols = tuple(dict.fromkeys(args.protocols)) if args.protocols else None
        runs = seeds.plan(table, rows[table.name], chosen, out, args.smoke, args.set, protocols)
        costs = {}
        for row in rows[table.name]:
            mine = [r for r in runs if r.row.name == row.name]
            for r in [] if args.aggregate_only else mine:
                if seeds.train(r, in_process=args.smoke) and r.wants_votes():
                    seeds.vote(r, in_process=args.smoke)
            costs[row.name] = next((c for c in map(row_cost, mine) if c is not None), None)
            md, csv_path = aggregate.write(table, runs, costs, results, command)
        for r in runs:
            complete &= r.state()[0] == seeds.DONE and (not r.wants_votes() or r.votes() is not None)
        print(f"{table.name}: {md} and {csv_path}", flush=True)
    print(f"runs in {out}" + ("" if complete else "; some seeds did not finish (see the Seeds section)"))
    return 0 if complete else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        return run(args, " ".join(["python -m experiments.run", *argv]))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
