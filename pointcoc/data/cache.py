"""Preprocessed copies of slow-to-parse datasets, kept outside the user's data folder."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np


def default_cache_dir() -> Path:
    """``$POINTCOC_CACHE`` if set, else ``$XDG_CACHE_HOME/pointcoc`` (``~/.cache/pointcoc``)."""
    if os.environ.get("POINTCOC_CACHE"):
        return Path(os.environ["POINTCOC_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "pointcoc"


def cached_arrays(
    name: str,
    key: str,
    build: Callable[[], dict[str, np.ndarray]],
    cache_dir: str | Path | None = None,
) -> dict[str, np.ndarray]:
    """Load ``{name}-{hash(key)}.npz`` from the cache, or ``build()`` it and write it atomically.

    ``key`` must describe everything the arrays depend on (source path, file sizes/mtimes, parameters).
    """
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = folder / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    arrays = build()
    folder.mkdir(parents=True, exist_ok=True)
    # write then rename so that an interrupted run never leaves a half-written cache entry behind
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return arrays


def file_signature(paths: list[Path]) -> str:
    """Cheap content signature (path, size, mtime) so edited source files invalidate the cache."""
    parts = []
    for p in paths:
        st = p.stat()
        parts.append(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(parts)
