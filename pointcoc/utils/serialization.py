"""The one safe ``torch.load`` and the one strict state-dict loader (engine checkpoints and official files).

``safe_load`` always uses ``weights_only=True``: tensors, plain containers and the few harmless types a caller
allows explicitly (``allowed_globals``, e.g. ``argparse.Namespace`` for timm's ``CheckpointSaver`` files); a
pickle that would run code is refused in one line naming the file. ``load_state_dict_strict`` loads every key
or raises one ValueError listing the missing, unexpected and mis-shaped keys.
"""

from __future__ import annotations

import argparse
import os
import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn

StateDict = dict[str, torch.Tensor]


def _numpy_scalar_globals() -> list[Any]:
    """What unpickling numpy scalars (``np.float64(0.5)``, e.g. an accuracy) and dtypes needs: the scalar
    constructor under its numpy 2 and numpy 1 names, ``np.dtype`` and the dtype classes it builds. None of
    them calls anything but numpy's constructors on plain values; arrays (``_reconstruct``) stay refused."""
    core = getattr(np, "_core", None) or np.core
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25: one class per dtype
    dtype_classes = [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")] if dtypes else []
    scalar = core.multiarray.scalar
    return [
        (scalar, "numpy._core.multiarray.scalar"),
        (scalar, "numpy.core.multiarray.scalar"),
        np.dtype,
        *dtype_classes,
    ]


# The harmless non-tensor types published checkpoint files hold: timm's CheckpointSaver stores its command
# line as an ``argparse.Namespace`` (plain values); older training scripts stored numpy scalars.
PUBLISHED_CHECKPOINT_GLOBALS: tuple[Any, ...] = (argparse.Namespace, *_numpy_scalar_globals())


def safe_load(path: str | os.PathLike, allowed_globals: Sequence[Any] = ()) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with one-line errors naming ``path``."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"checkpoint {path} does not exist")
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint {path} is not a file")
    try:
        with torch.serialization.safe_globals(list(allowed_globals)), warnings.catch_warnings():
            # a damaged file can look like a pickle of another protocol: refused below, not warned about
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, EOFError ... depending on the payload
        raise ValueError(f"{path} {_refusal(exc)}") from None


def _refusal(exc: Exception) -> str:
    """Why torch refused the file, in our words: never torch's advice to retry with weights_only=False."""
    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return (
            f"was refused: it holds {found.group(1)}, which only a full unpickle (able to run code) could "
            "load; pointcoc loads tensors and plain containers only (official checkpoint files: "
            "pointcoc.compat.load_official_checkpoint)"
        )
    found = re.search(r"failed reading zip archive: ([^.]+)", text) or re.search(
        r"WeightsUnpickler error:\s*([^\n]+)",
        text,  # the unpickler's own reason, without torch's advice
    )
    detail = (
        found.group(1) if found else f"{type(exc).__name__} {(text.strip().splitlines() or [''])[0][:120]}"
    )
    if "weights_only" in detail:  # torch's explanation of its loading modes, not what is wrong with the file
        detail = f"{type(exc).__name__}: it holds more than tensors and plain containers"
    return f"is not a readable torch checkpoint (corrupt or truncated: {detail})"


def load_state_dict_strict(model: nn.Module, state_dict: StateDict, source: str | os.PathLike) -> None:
    """Load strictly, or raise one ValueError naming ``source`` and listing missing, unexpected and
    mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(
        f"{k} {list(state_dict[k].shape)} vs {list(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if state_dict[k].shape != own[k].shape
    )
    if missing or unexpected or shapes:
        parts = [
            f"{name} ({len(keys)}): {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}"
            for name, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes))
            if keys
        ]
        raise ValueError(f"{os.fspath(source)} does not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True)
