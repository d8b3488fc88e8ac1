"""Shared pieces of the preparation commands: download, checksum, atomic unpack, reports."""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Any


def file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, checksum: str | None) -> None:
    """Check ``checksum`` given as ``"sha256:<hex>"`` or ``"md5:<hex>"``; ``None`` only reports the sha256."""
    if checksum is None:
        print(
            f"  {path.name}: no known checksum; sha256 {file_digest(path, 'sha256')} (pin it with --sha256)"
        )
        return
    algorithm, _, expected = checksum.partition(":")
    actual = file_digest(path, algorithm)
    if actual != expected.lower():
        raise SystemExit(
            f"{path}: {algorithm} {actual} does not match the expected {expected}; delete the file and "
            "download again (or the mirror changed it: check before trusting it)"
        )
    print(f"  {path.name}: {algorithm} verified")


def download(url: str, dest: Path, checksum: str | None = None) -> Path:
    """Fetch ``url`` to ``dest`` via a temporary name (an interrupted download never looks complete)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file():
        print(f"  {dest} exists, not downloading again")
    else:
        print(f"  downloading {url}")
        tmp = dest.with_name(dest.name + ".part")
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise SystemExit(
                f"download of {url} failed ({exc}); retry, or fetch it by hand to {dest}"
            ) from None
        tmp.replace(dest)
    verify(dest, checksum)
    return dest


def unpack_zip(archive: Path, parent: Path, member: str) -> Path:
    """Extract ``archive`` into a temporary folder beside the target, then move ``member`` into ``parent``.

    The rename happens only after a complete extraction, so ``parent/member`` is either absent or whole.
    """
    target = parent / member
    if target.exists():
        print(f"  {target} exists, not unpacking again")
        return target
    with tempfile.TemporaryDirectory(dir=parent, prefix=".unpack-") as tmp:
        try:
            with zipfile.ZipFile(archive) as z:
                z.extractall(tmp)
        except zipfile.BadZipFile as exc:
            raise SystemExit(f"{archive} is not a valid zip ({exc}); delete it and download again") from None
        unpacked = Path(tmp) / member
        if not unpacked.is_dir():
            raise SystemExit(f"{archive} has no top-level folder {member!r}; it is not the expected archive")
        unpacked.rename(target)
    return target


def prepare_parser(module: str, doc: str, root_help: str) -> tuple[argparse.ArgumentParser, Any]:
    """The shared command line of the preparation scripts: ``--root DIR`` (prepare) or ``--check DIR``.

    Returns the parser and the mutually exclusive group, for scripts that add another mode to it.
    """
    parser = argparse.ArgumentParser(prog=f"python -m datasets.{module}", description=doc.split("\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--root", help=root_help)
    group.add_argument("--check", metavar="ROOT", help="validate an existing folder and report")
    return parser, group


def run_check(check, root: str) -> int:
    """Run a ``--check`` function, turning data errors into one line and exit status 1."""
    try:
        check(Path(root))
    except (ValueError, FileNotFoundError) as exc:
        print(f"check failed: {exc}", file=sys.stderr)
        return 1
    return 0


def describe(name: str, dataset) -> None:
    """Print counts, classes and per-class sizes of a loaded point or image dataset."""
    import numpy as np

    labels = np.asarray(dataset.labels)
    counts = np.bincount(labels, minlength=len(dataset.classes))
    print(f"{name}: {len(labels)} samples, {len(dataset.classes)} classes")
    if hasattr(dataset, "points"):
        print(f"  points per shape: {dataset.points.shape[1]}")
    print("  per class: " + ", ".join(f"{c} {n}" for c, n in zip(dataset.classes, counts)))
