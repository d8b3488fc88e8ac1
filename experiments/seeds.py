"""One seed of one table row: its run directory, its state, and launching the engine on it.

``<out>/<table>/<row>/seed<S>/`` (``seed<S>-official/`` for a run of the official protocol) is a
``main.py train`` run directory, plus ``launch.log``, ``status.json``
(exit code and last output line of every launch, so a failure is reported rather than lost) and, for tables
with voting, ``votes/`` (a ``main.py test --votes`` run directory) and ``votes.log``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shlex
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

import torch
import yaml

from pointcoc.engine.config import RESUMABLE_CHANGES, RunConfig, differences
from pointcoc.engine.rundir import write_json

from .tables import Row, Table, has_test, resolve, run_overrides

MAIN = Path(__file__).resolve().parents[1] / "main.py"
DONE, FAILED, INCOMPLETE, MISSING = "done", "failed", "incomplete", "missing"


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when there is no such file."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is unreadable ({exc}); delete it to rerun this seed") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a {type(data).__name__}, not a JSON object; delete it to rerun")
    return data


@dataclass(frozen=True)
class SeedRun:
    table: Table
    row: Row
    seed: int
    path: Path
    overrides: tuple[str, ...]  # the --set items of this run
    config: RunConfig  # what they resolve to

    @property
    def protocol(self) -> str:
        return self.config.train.protocol

    @property
    def votes_path(self) -> Path:
        return self.path / "votes"

    def metrics(self) -> dict[str, Any] | None:
        """metrics.json of a finished training run, else None. An official-protocol run (``"protocol":
        "official"``, no validation split) is finished when it holds ``test_official``."""
        metrics = read_json(self.path / "metrics.json")
        if metrics is None:
            return None
        if metrics.get("protocol") == "official":
            splits = [metrics.get("test_official")]
        else:
            splits = [metrics.get("val", {}).get("last"), metrics.get("val", {}).get("best")]
            splits += [metrics.get("test")] if has_test(self.config) else []
        return metrics if all(isinstance(s, dict) and "oa" in s and "macc" in s for s in splits) else None

    def votes(self) -> dict[str, Any] | None:
        """The voted test metrics of this seed, else None."""
        metrics = read_json(self.votes_path / "metrics.json")
        return metrics.get("test_votes") if metrics is not None else None

    def wants_votes(self) -> bool:
        """Our vote is a heldout figure: it scores the best-on-validation checkpoint."""
        return self.table.votes > 0 and has_test(self.config) and self.protocol == "heldout"

    def status(self) -> dict[str, Any]:
        return read_json(self.path / "status.json") or {}

    def state(self) -> tuple[str, str]:
        """(done | failed | incomplete | missing, what to say about it)."""
        if self.metrics() is not None:
            return DONE, ""
        failure = self.status().get("train")
        if failure is not None and failure["returncode"] != 0:
            return (
                FAILED,
                f"exit {failure['returncode']}: {failure['last_line']} (log: {self.path / 'launch.log'})",
            )
        if (self.path / "checkpoint_last.pt").is_file():
            return (
                INCOMPLETE,
                "checkpoint_last.pt but no metrics.json: killed or still running (rerun resumes it)",
            )
        return MISSING, ""

    def check_config(self) -> None:
        """Refuse to skip or resume a run made with another config than this one."""
        saved = self.path / "config.yaml"
        if not saved.is_file():
            return
        old = RunConfig.from_dict(yaml.safe_load(saved.read_text()) or {}, source=str(saved)).to_dict()
        diff = differences(old, self.config.to_dict(), ignore=RESUMABLE_CHANGES)
        if diff:
            raise ValueError(
                f"{self.path} holds a run of another config ({'; '.join(diff[:3])}); delete it or choose "
                "another --out"
            )


def plan(
    table: Table,
    rows: list[Row],
    seeds: list[int],
    out: Path,
    smoke: bool,
    extra: list[str],
    protocols: tuple[str, ...] | None = None,
) -> list[SeedRun]:
    """Every row x protocol (default: the table's) x seed, in that order."""
    runs = []
    for row in rows:
        for protocol in protocols or table.protocols:
            for seed in seeds:
                overrides = run_overrides(table, row, seed, smoke, extra, protocol)
                name = f"seed{seed}" + ("" if protocol == "heldout" else f"-{protocol}")
                path = out / table.name / row.name / name
                runs.append(SeedRun(table, row, seed, path, tuple(overrides), resolve(row, overrides)))
    return runs


def engine_command(config: RunConfig, args: list[str]) -> list[str]:
    """``main.py ARGS``, through torchrun with one process per GPU when the run is on CUDA and several are
    visible (the engine keeps the global batch, so the result does not depend on the GPU count)."""
    from pointcoc.engine.build import resolve_device

    device = resolve_device(config.device)
    gpus = torch.cuda.device_count() if device.type == "cuda" and device.index is None else 1
    if gpus > 1:
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={gpus}",
            str(MAIN),
            *args,
        ]
    return [sys.executable, str(MAIN), *args]


def launch(command: list[str], log: Path) -> tuple[int, str, float]:
    """Run ``command``, its output echoed and appended to ``log``: (exit code, last output line, seconds)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    print("$ " + shlex.join(command), flush=True)
    start, last = time.perf_counter(), ""
    with open(log, "a") as f:
        f.write("$ " + shlex.join(command) + "\n")
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                f.write(line)
                sys.stdout.write(line)
                # a traceback or the engine's `error: ...` ends the output of a failed run
                last = line.strip() or last
    return proc.returncode, last, time.perf_counter() - start


class _Tee:
    """A text stream writing to a log file and echoing to another; it remembers the last non-blank line."""

    def __init__(self, log: TextIO, echo: TextIO) -> None:
        self.log, self.echo, self.tail = log, echo, ""

    def write(self, text: str) -> int:
        self.log.write(text)
        self.echo.write(text)
        self.tail = (self.tail + text)[-4096:]
        return len(text)

    def flush(self) -> None:
        self.log.flush()
        self.echo.flush()

    @property
    def last_line(self) -> str:
        return next((line.strip() for line in reversed(self.tail.splitlines()) if line.strip()), "")


@lru_cache(maxsize=1)
def _main_module() -> ModuleType:
    """``main.py``, loaded from its file (it is a script, not part of a package)."""
    spec = importlib.util.spec_from_file_location("pointcoc_main", MAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def launch_in_process(command: list[str], log: Path) -> tuple[int, str, float]:
    """:func:`launch` without a new process: ``main.main`` runs a plain ``main.py`` command here, its output
    echoed and appended to ``log`` alike, a traceback included. For ``--smoke``, whose runs are tiny: starting
    Python and torch again for each of them costs more than the run. The torch thread count a run sets is
    restored afterwards."""
    if command[:2] != [sys.executable, str(MAIN)]:
        raise ValueError(f"only a plain main.py command runs in this process, not: {shlex.join(command)}")
    log.parent.mkdir(parents=True, exist_ok=True)
    print("$ " + shlex.join(command), flush=True)
    threads, start = torch.get_num_threads(), time.perf_counter()
    with open(log, "a") as f:
        f.write("$ " + shlex.join(command) + "\n")
        out = _Tee(f, sys.stdout)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                code = _main_module().main(command[2:])
            except SystemExit as exc:  # argparse refusing the arguments
                code = exc.code if isinstance(exc.code, int) else 1
            except Exception:  # as a crashed process would: the traceback ends the output
                traceback.print_exc()
                code = 1
    torch.set_num_threads(threads)
    return code, out.last_line, time.perf_counter() - start


def _record(run: SeedRun, stage: str, command: list[str], result: tuple[int, str, float]) -> None:
    status = run.status()
    status[stage] = {
        "returncode": result[0],
        "last_line": result[1],
        "seconds": result[2],
        "command": command,
    }
    run.path.mkdir(parents=True, exist_ok=True)  # a launch that failed early may not have made it
    write_json(status, run.path / "status.json")


def train(run: SeedRun, in_process: bool = False) -> bool:
    """Train the seed unless it has finished; resume it when a killed run left checkpoint_last.pt.
    Returns whether it has finished. A failure is recorded in status.json, not raised. ``in_process``:
    through :func:`launch_in_process` instead of a new process."""
    if run.metrics() is not None:
        run.check_config()
        print(f"[{run.table.name}/{run.row.name}/seed{run.seed}] finished: skipped", flush=True)
        return True
    resume = (run.path / "checkpoint_last.pt").is_file()
    if resume:
        run.check_config()
    sets = [*run.overrides, "runtime.progress=false"]  # per-epoch lines only: the log stays readable
    args = ["train", "--config", str(run.row.config), "--out", str(run.path), "--set", *sets]
    command = engine_command(run.config, args + (["--resume"] if resume else []))
    # not train.log: the engine keeps that one in the run folder itself
    result = (launch_in_process if in_process else launch)(command, run.path / "launch.log")
    if result[0] == 0 and run.metrics() is None:
        result = (1, f"exit 0 but {run.path / 'metrics.json'} is missing or incomplete", result[2])
    _record(run, "train", command, result)
    return result[0] == 0


def vote(run: SeedRun, in_process: bool = False) -> bool:
    """``main.py test --votes N`` on the best-on-validation checkpoint, unless done. Returns success."""
    if run.votes() is not None:
        return True
    sets = [*run.overrides, "runtime.progress=false"]
    args = [
        "test",
        "--config",
        str(run.row.config),
        "--checkpoint",
        str(run.path / "checkpoint_best.pt"),
        "--votes",
        str(run.table.votes),
        "--out",
        str(run.votes_path),
        "--overwrite",  # an earlier attempt's results, without votes: only a test folder is overwritten
        "--set",
        *sets,
    ]
    command = engine_command(run.config, args)
    result = (launch_in_process if in_process else launch)(command, run.path / "votes.log")
    if result[0] == 0 and run.votes() is None:
        result = (1, f"exit 0 but {run.votes_path / 'metrics.json'} has no test_votes", result[2])
    _record(run, "votes", command, result)
    return result[0] == 0
