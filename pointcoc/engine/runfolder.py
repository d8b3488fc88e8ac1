"""Guarding a run folder while a command writes it: what may be written where, one writer at a time, and
a log of what the console showed.

Results are never overwritten. ``train`` refuses a folder holding results (checkpoints, ``metrics.json``)
unless it resumes it; ``test`` writes to a new folder, or with ``overwrite`` to a previous test's folder,
and never to a folder holding anything else (a training run's files stay byte-identical). A folder holding
only the log of an attempt that failed before writing results is reused, its log appended.

One process writes a folder at a time: the writer keeps its pid and host in ``FOLDER/.lock`` and removes
it on exit. Another writer is refused while that process is alive; a lock whose process has died (a crash,
``kill -9``) is stale and taken over. Everything written to stdout and stderr meanwhile is appended to the
folder's log (``train.log``, ``test.log``), progress bars excepted (they go to the terminal only).
"""

from __future__ import annotations

import os
import socket
import sys
import traceback
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Any, Callable

from .distributed import is_main

LOCK = ".lock"
TRAINING_RESULTS = ("checkpoint_last.pt", "checkpoint_best.pt", "metrics.json")
TEST_FILES = frozenset({"config.yaml", "environment.json", "metrics.json", "test.log", LOCK})

_held: set[Path] = set()  # folders this process holds


class Tee:
    """A text stream writing to the console stream and to a log file."""

    def __init__(self, console: IO[str], log: IO[str]) -> None:
        self.console, self.log = console, log

    def write(self, text: str) -> int:
        self.log.write(text)
        return self.console.write(text)

    def flush(self) -> None:
        self.log.flush()
        self.console.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...: the console's
        return getattr(self.console, name)


def console(stream: IO[str]) -> IO[str]:
    """The terminal side of ``stream``: where progress bars go, never into a log."""
    return stream.console if isinstance(stream, Tee) else stream


def check_train_folder(out: Path, resume: bool) -> None:
    """Refuse, in one line, an ``--out`` that ``train`` (``resume``: ``train --resume``) must not write."""
    _check_is_folder(out)
    if resume:
        if not (out / "checkpoint_last.pt").is_file():
            raise ValueError(
                f"--resume: {out} holds no checkpoint_last.pt (no epoch of a run finished there); "
                "train without --resume"
            )
        return
    held = [name for name in TRAINING_RESULTS if (out / name).exists()]
    if held:
        raise ValueError(
            f"{out} already holds a run's results ({', '.join(held)}); pass --resume to continue that run or "
            "choose another --out"
        )


def check_test_folder(out: Path, overwrite: bool) -> None:
    """Refuse, in one line, an ``--out`` that ``test`` must not write (``overwrite``: a previous test's)."""
    _check_is_folder(out)
    if not out.is_dir():
        return
    other = sorted(p.name for p in out.iterdir() if p.name not in TEST_FILES or not p.is_file())
    if other:
        raise ValueError(
            f"{out} is not the folder of a `main.py test` (it holds {', '.join(other[:3])}"
            f"{', ...' if len(other) > 3 else ''}); give a new --out, e.g. {out}-test"
        )
    if (out / "metrics.json").exists() and not overwrite:
        raise ValueError(
            f"{out} holds a previous test's results; pass --overwrite to replace them or choose another --out"
        )


def _check_is_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")


@contextmanager
def open_run_folder(out: str | Path, log_name: str, check: Callable[[Path], None]) -> Iterator[Path]:
    """Hold ``out`` for writing (after ``check(out)`` accepted it) and log the console into ``log_name``.

    Nested calls for a folder this process holds pass through (``main.py`` opens the folder around the
    engine's ``train``, which opens it too), and only the main process of a distributed run holds it."""
    out = Path(out)
    key = out.resolve()
    if key in _held or not is_main():
        yield out
        return
    check(out)
    out.mkdir(parents=True, exist_ok=True)
    lock = out / LOCK
    _acquire(lock)
    _held.add(key)
    try:
        with open(out / log_name, "a", buffering=1) as log:  # line-buffered: a killed run keeps its lines
            stdout, stderr = sys.stdout, sys.stderr
            sys.stdout, sys.stderr = Tee(stdout, log), Tee(stderr, log)
            try:
                yield out
            except BaseException as exc:
                log.write(_failure(exc))
                raise
            finally:
                sys.stdout, sys.stderr = stdout, stderr
    finally:
        _held.discard(key)
        _release(lock)


def open_training_folder(out: str | Path, resume: bool = False) -> AbstractContextManager[Path]:
    """``out`` held for ``train`` (``resume``: ``train --resume``), its console logged to ``train.log``."""
    return open_run_folder(out, "train.log", lambda folder: check_train_folder(folder, resume))


def open_test_folder(out: str | Path, overwrite: bool = False) -> AbstractContextManager[Path]:
    """``out`` held for ``test`` (``overwrite``: a previous test's folder), its console in ``test.log``."""
    return open_run_folder(out, "test.log", lambda folder: check_test_folder(folder, overwrite))


def _failure(exc: BaseException) -> str:
    """What the log keeps of a failure: the one line the console got for an error the user can fix, the
    traceback for anything else."""
    if isinstance(exc, (ValueError, OSError)):
        return f"error: {exc}\n"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted\n"
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _owner(lock: Path) -> tuple[int, str] | None:
    """(pid, host) written in ``lock``; None when it is unreadable or not ours in form."""
    try:
        pid, host = lock.read_text().split()[:2]
        return int(pid), host
    except (OSError, ValueError):
        return None


def _alive(pid: int, host: str) -> bool:
    """Whether the process holding a lock may still run: certainly on another host or platform (it cannot
    be checked from here), never when it is this process (its pid reused after a crash)."""
    if host != socket.gethostname() or os.name != "posix":
        return True
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _acquire(lock: Path) -> None:
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(lock)
            if owner is not None and _alive(*owner):
                raise ValueError(
                    f"{lock.parent} is being written by another process (pid {owner[0]} on {owner[1]}); "
                    f"wait for it to end or choose another --out (delete {lock} if that process is gone)"
                ) from None
            lock.unlink(missing_ok=True)  # stale: its process died without removing it
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()} {socket.gethostname()}\n")
        return
    raise ValueError(f"could not take {lock}: other processes keep creating it; choose another --out")


def _release(lock: Path) -> None:
    if _owner(lock) == (os.getpid(), socket.gethostname()):
        lock.unlink(missing_ok=True)
