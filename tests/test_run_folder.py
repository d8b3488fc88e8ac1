"""Run folders through the command line: results are never overwritten, one writer at a time (a lock with
the writer's pid, stale once that process is gone), the console is logged, and a run resumes from its
folder alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_engine_helpers import tiny_point_config

import main
from pointcoc.engine import Callback
from pointcoc.engine.runfolder import LOCK

ROOT = Path(__file__).resolve().parents[1]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> content)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_point_config("train.epochs=1").to_dict()))
    return path


@pytest.fixture(scope="module")
def cli_run(recipe, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main.main(["train", "--config", str(recipe), "--out", str(out)]) == 0
    return out


def test_test_into_a_training_run_leaves_every_file_byte_identical(cli_run, recipe, capsys):
    before = snapshot(cli_run)
    assert {"checkpoint_best.pt", "metrics.json", "config.yaml", "train.log"} <= set(before)
    checkpoint = str(cli_run / "checkpoint_best.pt")
    for extra in ([], ["--overwrite"]):
        code = main.main(["test", "--config", str(recipe), "--checkpoint", checkpoint, "--out", str(cli_run),
                          *extra])  # fmt: skip
        assert code == 2 and "is not the folder of a `main.py test`" in one_line_error(capsys)
    assert main.main(["train", "--config", str(recipe), "--out", str(cli_run)]) == 2
    assert "pass --resume" in one_line_error(capsys)
    assert snapshot(cli_run) == before  # nothing changed, nothing added (no lock, no log)


def test_test_writes_a_new_folder_and_replaces_only_its_own_results_when_told(
    cli_run, recipe, tmp_path, capsys
):
    out = tmp_path / "eval"
    args = [
        "test",
        "--config",
        str(recipe),
        "--checkpoint",
        str(cli_run / "checkpoint_best.pt"),
        "--out",
        str(out),
    ]
    assert main.main(args) == 0
    printed = capsys.readouterr().out
    assert "on procedural (embedded), split 'test': 12 samples" in printed  # what was evaluated
    assert sorted(p.name for p in out.iterdir()) == [
        "config.yaml",
        "environment.json",
        "metrics.json",
        "test.log",
    ]
    assert (out / "test.log").read_text() == printed  # the console, no more, no less
    first = (out / "metrics.json").read_bytes()
    assert main.main(args) == 2 and "pass --overwrite" in one_line_error(capsys)
    assert (out / "metrics.json").read_bytes() == first
    assert main.main([*args, "--overwrite"]) == 0


class StopAt(Callback):
    """Interrupts training at the end of an epoch, before its checkpoint_last.pt (like a kill)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, epoch, state, metrics) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_resume_needs_only_the_run_folder_from_any_directory(recipe, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    monkeypatch.setattr(main, "training_callbacks", lambda config: [StopAt(2)])
    assert main.main(["train", "--config", str(recipe), "--out", str(out), "--set", "train.epochs=3"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"
    assert not (out / LOCK).exists() and not (out / "metrics.json").exists()
    monkeypatch.setattr(main, "training_callbacks", lambda config: [])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main.main(["train", "--resume", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"resuming from epoch 2 of 3 ({out / 'checkpoint_last.pt'})")
    log = (out / "train.log").read_text()
    assert "epoch 1/3" in log and "interrupted" in log and log.endswith(printed)  # both processes, in order
    assert "\r" not in log  # no progress bars: the output was no terminal
    assert [r["epoch"] for r in json.loads((out / "metrics.json").read_text())["history"]] == [1, 2, 3]


def test_resume_without_a_run_is_one_line(tmp_path, capsys):
    assert main.main(["train", "--resume", "--out", str(tmp_path / "none")]) == 2
    assert "run folder" in one_line_error(capsys)
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.yaml").write_text("{}")
    assert main.main(["train", "--resume", "--out", str(tmp_path / "cfg")]) == 2
    assert "holds no checkpoint_last.pt" in one_line_error(capsys)


HOLDER = """
import sys
from pointcoc.engine.runfolder import open_run_folder
with open_run_folder(sys.argv[1], "train.log", lambda folder: None):
    print("held", flush=True)
    sys.stdin.read()
"""


def _hold(folder: Path) -> subprocess.Popen:
    """A process holding ``folder`` until its stdin closes (it has said so when this returns)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    assert holder.stdout.readline() == "held\n"
    return holder


def test_a_second_writer_is_refused_while_the_first_lives(recipe, tmp_path, capsys):
    out = tmp_path / "run"
    holder = _hold(out)
    try:
        assert main.main(["train", "--config", str(recipe), "--out", str(out)]) == 2
        err = one_line_error(capsys)
        assert f"is being written by another process (pid {holder.pid} " in err
        assert not (out / "checkpoint_last.pt").exists()
    finally:
        holder.stdin.close()
        assert holder.wait() == 0
    assert not (out / LOCK).exists()  # released on exit
    assert main.main(["train", "--config", str(recipe), "--out", str(out)]) == 0


def test_a_lock_left_by_a_killed_writer_is_taken_over(recipe, tmp_path):
    out = tmp_path / "run"
    holder = _hold(out)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (out / LOCK).read_text().split()[0] == str(holder.pid)  # left behind by the crash
    assert main.main(["train", "--config", str(recipe), "--out", str(out)]) == 0
    assert not (out / LOCK).exists()
