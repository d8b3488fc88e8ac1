"""Downloads into the checkpoint cache: atomic, with a progress bar and the sha256 checked.

The cache is ``$POINTCOC_CACHE/checkpoints`` when ``POINTCOC_CACHE`` is set (the root of pointcoc's other
caches), else torch.hub's ``checkpoints`` folder (``$TORCH_HOME/hub/checkpoints``, ``~/.cache/torch/...``).
A file is written to a temporary name beside its target and renamed only when complete and verified, so the
cache never holds a partial or unverified file; every failure is one line naming the URL and where to put
the file by hand.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.request
from pathlib import Path

import torch
from tqdm import tqdm


def checkpoint_dir() -> Path:
    """Where downloaded checkpoints are kept (see the module docstring)."""
    if os.environ.get("POINTCOC_CACHE"):
        return Path(os.environ["POINTCOC_CACHE"]).expanduser() / "checkpoints"
    return Path(torch.hub.get_dir()) / "checkpoints"


class DownloadError(ValueError):
    """A download that failed or did not verify; nothing was written to the cache."""


def _by_hand(url: str, dest: Path) -> str:
    return (
        f"nothing was cached. Fetch {url} by hand and save it as {dest}, or pass its path as pretrained=PATH"
    )


def download_file(
    url: str, dest: str | os.PathLike, sha256: str | None = None, progress: bool = True
) -> Path:
    """Fetch ``url`` to ``dest`` atomically, checking ``sha256`` (``None``: print the hash, to pin it).

    Shows a progress bar on stderr when ``progress``. Raises :class:`DownloadError` (one line) when the server
    cannot be reached, the connection is cut before the announced length, or the hash does not match.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp, digest, received = Path(tmp_name), hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    total = int(response.headers.get("Content-Length") or 0) or None
                    with tqdm(
                        total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
                        disable=not progress, file=sys.stderr,
                    ) as bar:  # fmt: skip
                        while chunk := response.read(1 << 20):
                            out.write(chunk)
                            digest.update(chunk)
                            received += len(chunk)
                            bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as exc:  # unreachable, refused, timeout, HTTP error
                reason = " ".join(str(exc).split()) or type(exc).__name__
                raise DownloadError(f"download of {url} failed ({reason}); {_by_hand(url, dest)}") from None
        if total is not None and received != total:
            raise DownloadError(
                f"download of {url} was cut after {received:,} of {total:,} bytes; {_by_hand(url, dest)}"
            )
        actual = digest.hexdigest()
        if sha256 is not None and actual != sha256.lower():
            raise DownloadError(
                f"{url} has sha256 {actual}, not the pinned {sha256}: the file changed or was corrupted "
                f"(check the source before trusting it); {_by_hand(url, dest)}"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    if sha256 is None:
        print(
            f"{dest.name}: sha256 {actual} (not pinned in the zoo; pin it to check later downloads)",
            file=sys.stderr,
        )
    return dest
