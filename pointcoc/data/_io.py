"""Input validation for dataset files: every problem becomes one line naming the file and the fix.

h5py and Pillow raise long tracebacks whose last line rarely says which file was bad or what to do, so
every read of user data goes through these helpers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class SplitError(ValueError):
    """A split name the dataset does not have (callers add which setting chose it)."""


def require_dir(path: str | Path, what: str, hint: str) -> Path:
    """``path`` as a Path, or FileNotFoundError saying what was expected there and how to get it."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{what} folder {path} does not exist; {hint}")
    return path


def require_file(path: str | Path, what: str, hint: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} is missing; {hint}")
    return path


def read_lines(path: Path) -> list[str]:
    """Non-empty, stripped lines of a small text file (class lists, split lists)."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_h5(path: Path, keys: tuple[str, ...], hint: str) -> dict[str, np.ndarray]:
    """Read whole datasets ``keys`` from an HDF5 file, turning h5py's errors into one clear line."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            names = sorted(f.keys())
            missing = [k for k in keys if not isinstance(f.get(k), h5py.Dataset)]
            arrays = {} if missing else {k: np.asarray(f[k][()]) for k in keys}
    # h5py reports a damaged file as any of these, depending on which structure the damage hit
    except (OSError, KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(
            f"{path} is not a readable HDF5 file (truncated or corrupt: {_first_line(exc)}); {hint}"
        ) from None
    if missing:
        raise ValueError(
            f"{path} lacks the dataset(s) {missing} (has {names}); this is not a file of the expected "
            f"layout: {hint}"
        )
    return arrays


def check_labels(labels: np.ndarray, num_classes: int, source: Path, hint: str) -> np.ndarray:
    """Flatten labels to int64 and require ``0 <= label < num_classes``."""
    labels = np.asarray(labels).reshape(-1)
    if labels.dtype.kind not in "iuf":
        raise ValueError(f"{source} holds labels of type {labels.dtype}, expected integers; {hint}")
    if labels.size and (not np.issubdtype(labels.dtype, np.integer)):
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ValueError(f"{source} holds non-integer labels; {hint}")
    labels = labels.astype(np.int64)
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        raise ValueError(
            f"{source} has {int(bad.sum())} label(s) outside [0, {num_classes}) (e.g. {int(labels[bad][0])}) "
            f"for its {num_classes}-name class list; {hint}"
        )
    return labels


def check_points(points: np.ndarray, source: Path, num_points: int | None, hint: str) -> np.ndarray:
    """Require float ``[S, P, 3+]`` finite coordinates with at least ``num_points`` points per shape."""
    points = np.asarray(points)
    if points.dtype.kind not in "iuf":
        raise ValueError(f"{source} holds point data of type {points.dtype}, expected numbers; {hint}")
    if points.ndim != 3 or points.shape[-1] < 3:
        raise ValueError(
            f"{source} holds point data of shape {list(points.shape)}, expected [shapes, points, 3]; {hint}"
        )
    if num_points is not None and points.shape[1] < num_points:
        raise ValueError(
            f"{source} has {points.shape[1]} points per shape but num_points={num_points} was requested; "
            f"ask for at most {points.shape[1]} points"
        )
    finite = np.isfinite(points).all(axis=(1, 2))
    if not finite.all():
        raise ValueError(
            f"{source} has non-finite coordinates (NaN/Inf) in {int((~finite).sum())} shape(s), first at "
            "index "
            f"{int(np.argmin(finite))}; re-create the file or drop those shapes"
        )
    return points


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
