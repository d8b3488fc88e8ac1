"""The ImageNet-1k classes, shipped as package data (``imagenet1k_classes.tsv``): label order, WordNet ids and
names, for naming the predictions of the ImageNet checkpoints and checking prepared ImageNet folders."""

from __future__ import annotations

import functools
from importlib import resources
from typing import NamedTuple


class ImageNetClass(NamedTuple):
    wnid: str  # WordNet id, the folder name of the class (n01440764)
    words: str  # its lemmas, e.g. "tench, Tinca tinca"


@functools.lru_cache(maxsize=1)
def imagenet1k_classes() -> tuple[ImageNetClass, ...]:
    """The 1000 classes in label order (WordNet ids sorted, as ``ImageFolder`` numbers class folders)."""
    text = (resources.files("pointcoc.utils") / "imagenet1k_classes.tsv").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    return tuple(ImageNetClass(wnid, words) for _, wnid, words in rows)
