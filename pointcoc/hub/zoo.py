"""Every published CoC and PointMLP checkpoint: where it is, how it was saved, what it scored.

One :class:`PretrainedEntry` per file, named ``architecture.tag`` as in timm (``coc_tiny.official_in1k``).
Sources are the official READMEs (Context-Cluster at be9a03b and its March-2023 version, pointMLP-pytorch
at 1ab7f04, openmixup's ``configs/classification/imagenet/context_cluster/README.md``). Files on Google Drive
have no direct URL: they are fetched by hand and put into the cache under :attr:`PretrainedEntry.cache_name`.
No file was downloaded from here, so no sha256 is pinned: the first download prints the file's hash.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from ..cluster.op import Aggregation
from ..models.registry import list_models, register_pretrained

APACHE = "Apache-2.0 (the repository's licence; no separate terms for the weights)"
_CONTEXT_CLUSTER = "https://github.com/ma-xu/Context-Cluster"
_OPENMIXUP_RELEASE = "https://github.com/Westlake-AI/openmixup/releases/download/open-in1k-weights/"
_OPENMIXUP_PAGE = (
    "https://github.com/Westlake-AI/openmixup/tree/main/configs/classification/imagenet/context_cluster"
)
_SMILELAB_POINTMLP = "https://web.northeastern.edu/smilelab/xuma/pointMLP/checkpoints/fixstd/"
_IN1K = (
    "ImageNet-1k val (50,000 images), single 224 crop: shorter side resized to 248 (224 / 0.9), bicubic, "
    "centre crop 224, ImageNet mean/std"
)
_NO_VOTE = "no voting; the official scripts keep the epoch with the best test accuracy (selection on test)"
_MODELNET40 = f"ModelNet40 test split (2,468 shapes), 1024 points, {_NO_VOTE}"
_SCANOBJECTNN = f"ScanObjectNN PB_T50_RS test split (2,882 objects), 1024 points, {_NO_VOTE}"
_POINTMLP_FILE = (
    "URL = the published folder + best_checkpoint.pth, the file name the training script writes; the "
    "university server was down in April 2024 (pointMLP README)"
)


@dataclass(frozen=True)
class PretrainedEntry:
    """One published checkpoint file.

    ``url`` is a direct download (``None``: fetch by hand from ``page``); ``filename`` the published file name
    where known. ``layout`` and ``aggregation`` say how :func:`pointcoc.compat.load_official_checkpoint` reads
    it; ``metrics`` are the published figures (percent) under ``protocol``.
    """

    architecture: str
    tag: str
    page: str
    layout: str  # "timm" | "mmcv" | "pointmlp"
    aggregation: Aggregation
    num_classes: int
    dataset: str
    metrics: dict[str, float]
    protocol: str
    licence: str
    url: str | None = None
    filename: str | None = None
    sha256: str | None = None
    released: str = ""
    notes: str = ""

    @property
    def name(self) -> str:
        return f"{self.architecture}.{self.tag}"

    @property
    def cache_name(self) -> str:
        """The file's name in the cache: unique per entry (several files are all ``best_checkpoint.pth``)."""
        return f"{self.name}-{self.filename}" if self.filename else f"{self.name}.pth"

    @property
    def headline(self) -> str:
        """The published figures, e.g. ``top-1 73.2`` or ``OA 86.1, mAcc 84.4``."""
        labels = {"top1": "top-1", "top5": "top-5", "oa": "OA", "macc": "mAcc"}
        return ", ".join(f"{labels.get(k, k)} {v:.1f}" for k, v in self.metrics.items())


def _official_in1k(architecture: str, folder: str, top1: float) -> PretrainedEntry:
    return PretrainedEntry(
        architecture, "official_in1k", page=f"https://drive.google.com/drive/folders/{folder}",
        layout="timm", aggregation="similarity", num_classes=1000, dataset="imagenet-1k",
        metrics={"top1": top1}, protocol=_IN1K, licence=APACHE, released="2024-02-24",
        notes="the authors' re-train with the fixed normaliser (sim.sum) and Linear MLPs; Google Drive "
        "folder 'checkpoint & logs': download the checkpoint by hand",
    )  # fmt: skip


def _openmixup(architecture: str, top1: float) -> PretrainedEntry:
    filename = f"{architecture}_8xb256_ep300.pth"
    return PretrainedEntry(
        architecture, "openmixup_in1k", page=_OPENMIXUP_PAGE, url=_OPENMIXUP_RELEASE + filename,
        filename=filename, layout="mmcv", aggregation="count", num_classes=1000, dataset="imagenet-1k",
        metrics={"top1": top1}, protocol=_IN1K, licence=APACHE, released="2023 (release open-in1k-weights)",
        notes="trained by openmixup with the official recipe and the mask.sum normaliser",
    )  # fmt: skip


def _pointmlp(architecture: str, dataset: str, folder: str, oa: float, macc: float) -> PretrainedEntry:
    modelnet = dataset == "modelnet40"
    return PretrainedEntry(
        architecture, f"official_{dataset}", page=_SMILELAB_POINTMLP + folder,
        url=_SMILELAB_POINTMLP + folder + "best_checkpoint.pth", filename="best_checkpoint.pth",
        layout="pointmlp", aggregation="similarity", num_classes=40 if modelnet else 15,
        dataset=dataset, metrics={"oa": oa, "macc": macc},
        protocol=_MODELNET40 if modelnet else _SCANOBJECTNN, licence=APACHE, released="2022-02 (fixed std)",
        notes=_POINTMLP_FILE,
    )  # fmt: skip


ENTRIES: tuple[PretrainedEntry, ...] = (
    # Context-Cluster, ImageNet-1k: the Feb-2024 re-trains (README at be9a03b)
    _official_in1k("coc_tiny", "155Lfofxr7vpdcUxL8ZvzlrNX4cUlhn3J", 73.2),
    _official_in1k("coc_tiny_plain", "1HSZlO_XMkw6mM90Cqo3tVFxEUX8PvWCg", 73.8),
    _official_in1k("coc_small", "19zbCOS33We7HOjL575Di5wyuLbnDebdE", 78.1),
    _official_in1k("coc_medium", "1H3Fs3SVE0LFHuP6iP9nTg2_ZMrkfk9S8", 81.2),
    # The March-2023 release still reachable by URL (the one the seed demo downloaded); the other March-2023
    # files (tiny 71.8, small 77.5, medium 81.0) are in the pre-release fea_pos layout, which nothing loads.
    PretrainedEntry(
        "coc_tiny_plain",
        "official_in1k_2023_03",
        page=f"{_CONTEXT_CLUSTER} (README of March 2023)",
        url="https://web.northeastern.edu/smilelab/xuma/ContextCluster/checkpoints/coc_tiny_plain/"
        "coc_tiny_plain.pth.tar",
        filename="coc_tiny_plain.pth.tar",
        layout="timm",
        aggregation="count",
        num_classes=1000,
        dataset="imagenet-1k",
        metrics={"top1": 72.9},
        protocol=_IN1K,
        licence=APACHE,
        released="2023-03",
        notes="trained by the code of commit c8d7115 (mask.sum normaliser), superseded by the Feb-2024 "
        "re-train; the university server was down in 2024",
    ),  # fmt: skip
    # openmixup's own training runs (its README also lists the official March-2023 files, marked *)
    _openmixup("coc_tiny", 72.7),
    _openmixup("coc_tiny_plain", 73.2),
    _openmixup("coc_small", 77.7),
    # PointMLP (pointMLP-pytorch README, "fixed std" models) and PointMLP-CoC (Context-Cluster pointcloud/)
    _pointmlp("pointmlp", "modelnet40", "modelnet40/pointMLP-20220209053148-404/", 94.1, 91.5),
    _pointmlp("pointmlp", "scanobjectnn", "scanobjectnn/pointMLP-20220204021453/", 86.1, 84.4),
    _pointmlp(
        "pointmlp_elite", "scanobjectnn", "scanobjectnn/model313Elite-20220220015842-2956/", 84.1, 81.7
    ),
    PretrainedEntry(
        "pointmlp_coc",
        "official_scanobjectnn",
        page="https://drive.google.com/drive/folders/1R5nQTp9mnza3FdqA0FosRj_mzvn4He1F",
        layout="pointmlp",
        aggregation="similarity",
        num_classes=15,
        dataset="scanobjectnn",
        metrics={"oa": 86.2, "macc": 84.4},
        protocol=_SCANOBJECTNN,
        licence=APACHE,
        released="2023-03",
        notes="Context-Cluster pointcloud/README 'log & model' (Google Drive folder): download by hand",
    ),  # fmt: skip
)

_BY_NAME = {entry.name: entry for entry in ENTRIES}
for _architecture in sorted({entry.architecture for entry in ENTRIES}):
    register_pretrained(_architecture, [e.tag for e in ENTRIES if e.architecture == _architecture])


def list_pretrained(pattern: str = "*") -> list[str]:
    """Names ``architecture.tag`` of the published checkpoints matching a shell-style ``pattern``, in zoo
    order (an architecture's first entry is its default for ``pretrained=True``)."""
    return [entry.name for entry in ENTRIES if fnmatch.fnmatch(entry.name, pattern)]


def pretrained_entry(name: str, tag: str | None = None) -> PretrainedEntry:
    """The entry ``name`` (``architecture.tag``), or architecture ``name``'s entry ``tag`` (``None``: its
    default, the first listed)."""
    architecture, _, in_name = name.partition(".")
    tag = tag or in_name or None
    entries = [e for e in ENTRIES if e.architecture == architecture]
    if not entries:
        known = (
            f"unknown model {architecture!r}" if architecture not in list_models() else "none is published"
        )
        raise ValueError(
            f"no pretrained checkpoint for {architecture} ({known}); models with one: "
            f"{', '.join(sorted({e.architecture for e in ENTRIES}))}"
        )
    if tag is None:
        return entries[0]
    if f"{architecture}.{tag}" not in _BY_NAME:
        raise ValueError(
            f"{architecture} has no pretrained tag {tag!r}; its tags: {', '.join(e.tag for e in entries)}"
        )
    return _BY_NAME[f"{architecture}.{tag}"]
