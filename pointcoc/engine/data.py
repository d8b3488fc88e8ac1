"""Datasets of a run (train / val / test, held out from the training split when a set has no such split)
and the per-batch preparation that turns a loader batch into model inputs and soft targets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ..data import PointCloudDataset, build_dataset
from ..data._io import SplitError
from ..data.factory import is_image_dataset
from ..data.image_augment import ImageEvalTransform, ImageTrainAugment, smooth_one_hot
from ..models.model_cfg import InputKind
from .config import DataConfig

HOLDOUT_SEED = 0  # fixed, so the validation part stays the same whatever the run's seed


@dataclass
class RunData:
    train: Dataset
    val: Dataset
    test: Dataset | None
    classes: list[str]
    input_kind: InputKind  # what the datasets yield: point clouds or images

    @property
    def is_points(self) -> bool:
        return self.input_kind == "points"

    def eval_input_size(self) -> tuple[int, ...]:
        """Shape of one evaluation input (``[N, 3]`` points or ``[C, H, W]`` image)."""
        return tuple(self.val[0][0].shape)  # type: ignore[index]


def _run_data(train: Dataset, val: Dataset, test: Dataset | None) -> RunData:
    """The datasets, with the class names and input kind their (underlying) training set declares; an empty
    one is refused naming the setting that chose it."""
    parts = ((train, "data.train_split", "data.train_split"), (val, "data.val_split", "data.val_fraction"),
             (test, "data.split", "data.test_fraction"))  # fmt: skip
    for dataset, split_key, fraction_key in parts:
        if dataset is not None and len(dataset) == 0:  # type: ignore[arg-type]
            if isinstance(dataset, Subset):
                raise ValueError(f"{fraction_key}: the part held out is empty; raise it or use more data")
            raise ValueError(f"{split_key}: the split holds no samples; check the data")
    probe = train.dataset if isinstance(train, Subset) else train
    kind: InputKind = "points" if isinstance(probe, PointCloudDataset) else "image"
    return RunData(train, val, test, list(probe.classes), kind)  # type: ignore[attr-defined]


def dataset_labels(dataset: Dataset) -> np.ndarray:
    """The class label of every sample of ``dataset`` (a Subset: of its samples, in its order)."""
    if isinstance(dataset, Subset):
        return dataset_labels(dataset.dataset)[np.asarray(dataset.indices, dtype=np.int64)]
    return np.asarray(dataset.labels)  # type: ignore[attr-defined]


def holdout(labels: np.ndarray, fractions: tuple[float, ...], balanced: bool = False) -> list[np.ndarray]:
    """Deterministic split into ``fractions`` parts + the rest, cut per class from one seeded shuffle: part
    ``i`` takes ``round(fractions[i] * n_c)`` of class ``c`` (stratified). With ``balanced`` the first part
    (the validation part) takes the same ``round(fractions[0] * S / K)`` of every class instead; a class
    must keep at least as many for the other parts and training."""
    rng = np.random.default_rng(HOLDOUT_SEED)
    classes, counts = np.unique(labels, return_counts=True)
    per_class = int(round(fractions[0] * len(labels) / len(classes))) if balanced and fractions else 0
    if balanced and counts.min() < 2 * per_class:
        c = classes[counts.argmin()]
        raise ValueError(
            f"data.holdout balanced: class {c} has {counts.min()} samples and the validation part takes "
            f"{per_class} of every class, leaving fewer for training; lower data.val_fraction"
        )
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for c in classes:
        idx = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for i, frac in enumerate(fractions):
            n = per_class if balanced and i == 0 else int(round(frac * len(idx)))
            parts[i].append(idx[start : start + n])
            start += n
        parts[-1].append(idx[start:])
    return [np.sort(np.concatenate(p)) for p in parts]


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``S / (K * n_c)`` per class (0 for a class without samples): inverse class frequency, scaled so the
    average sample weighs 1 (scikit-learn's "balanced" class weights)."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return np.divide(len(labels), num_classes * counts, out=np.zeros(num_classes), where=counts > 0)


def make_dataset(data: DataConfig, key: str, augment: bool) -> Dataset:
    """The dataset of the split the config ``key`` names (``data.split``, ...), its first item drawn once
    (random state kept) so that ``data.kwargs`` a dataset or its transform cannot take are refused here,
    naming them, rather than in a loader's worker."""
    split = getattr(data, key.split(".")[1])
    extra = {}
    if augment and is_image_dataset(data.name):  # timm crops each image in the loader workers
        extra["crop"] = data.recipe().train_crop()
    try:
        dataset = build_dataset(
            data.name, data.root, split, num_points=data.num_points, augment=augment, **data.kwargs, **extra
        )
        with torch.random.fork_rng(devices=[]):
            if len(dataset):  # type: ignore[arg-type]
                dataset[0]
        return dataset
    except SplitError as exc:
        raise ValueError(f"{key}: {exc}") from None
    except (ValueError, OSError):  # ours name the file or key already
        raise
    except Exception as exc:
        if not data.kwargs:
            raise
        text = " ".join(str(exc).split())[:200]
        raise ValueError(
            f"data.kwargs do not fit {data.name}: {type(exc).__name__}: {text} (data.kwargs: {data.kwargs})"
        ) from None


def voting_views(data: DataConfig, test: Dataset) -> Dataset:
    """The test set again, with the training augmentation (for test-time voting; point sets only)."""
    if isinstance(test, Subset):
        return Subset(make_dataset(data, "data.train_split", True), test.indices)
    return make_dataset(data, "data.split", True)


def build_run_data(data: DataConfig, train: bool = True, protocol: str = "heldout") -> RunData:
    """The run's datasets; ``train=False`` (the ``test`` command) builds only the evaluated split.

    ``protocol="official"`` trains on the validation part too and selects on the test split (``val`` is the
    test split then); the test part held out of a one-split set is the same under both protocols."""
    if not train and data.split is not None:  # the test command: only the evaluated split is read
        test = make_dataset(data, "data.split", False)
        return _run_data(test, test, test)
    fractions = []
    if data.val_split is None:
        fractions.append(data.val_fraction)
    if data.split is None and data.test_fraction > 0:
        fractions.append(data.test_fraction)
    base_eval = make_dataset(data, "data.train_split", False) if fractions else None
    balanced = data.holdout == "balanced"  # the config check made sure it concerns a validation part
    parts = holdout(dataset_labels(base_eval), tuple(fractions), balanced) if base_eval is not None else []

    test: Dataset | None = None
    if data.split is not None:
        test = make_dataset(data, "data.split", False)
    elif data.test_fraction > 0:
        test = Subset(base_eval, parts[-2].tolist())
    if not train:
        if test is None:
            raise ValueError(
                "nothing to evaluate: set data.split (or data.test_fraction with data.split null)"
            )
        return _run_data(test, test, test)

    official = protocol == "official"  # the config check made sure there is a test split
    train_set = make_dataset(data, "data.train_split", data.augment)
    if fractions:
        keep = parts[-1]
        if official and data.val_split is None:  # no validation part: it is trained on
            keep = np.sort(np.concatenate([parts[0], keep]))
        train_set = Subset(train_set, keep.tolist())
    if official:
        return _run_data(train_set, test, test)  # type: ignore[arg-type]
    val = (
        Subset(base_eval, parts[0].tolist())
        if data.val_split is None
        else make_dataset(data, "data.val_split", False)
    )
    return _run_data(train_set, val, test)


def describe_split(data: DataConfig, dataset: Dataset) -> str:
    """What ``dataset`` (the evaluated split of ``data``) is, in words: set, folder, split, samples."""
    where = f"in {data.root}" if data.root is not None else "(embedded)"
    if data.split is not None:
        split = f"split {data.split!r}"
    else:
        split = f"the {data.test_fraction:g} held out of split {data.train_split!r}"
    return f"{data.name} {where}, {split}: {len(dataset)} samples"  # type: ignore[arg-type]


def pointmlp_targets(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """PointMLP's smoothing: ``1 - eps`` on the true class, ``eps / (K - 1)`` on each other class."""
    off = smoothing / (num_classes - 1)
    out = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return out.scatter_(1, labels.view(-1, 1), 1.0 - smoothing)


def soft_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over the batch of ``-sum_c w_c t_c log p_c`` (``weight`` ``[K]``: per-class factors ``w_c``,
    as ``torch.nn.functional.cross_entropy`` weighs soft targets; None: all 1)."""
    log_p = torch.log_softmax(logits.float(), dim=1)
    if weight is not None:
        log_p = log_p * weight
    return -(targets * log_p).sum(dim=1).mean()


class BatchPrep:
    """Loader batch -> (inputs, soft targets) for training and inputs for evaluation, on ``device``.

    Point sets are augmented per shape by their dataset; images as a batch here (kornia, on the device).
    """

    def __init__(self, run_data: RunData, data: DataConfig, smoothing: float, device: torch.device) -> None:
        self.device, self.smoothing, self.is_points = device, smoothing, run_data.is_points
        self.num_classes = len(run_data.classes)
        self.train_aug: ImageTrainAugment | None = None
        self.eval_tf: ImageEvalTransform | None = None
        if not self.is_points:
            recipe = data.recipe(label_smoothing=smoothing)
            if data.augment:
                self.train_aug = ImageTrainAugment(self.num_classes, recipe).to(device)
            self.eval_tf = ImageEvalTransform(recipe.mean, recipe.std).to(device)

    def train(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        if self.train_aug is not None:
            return self.train_aug(x, y)
        if self.is_points:
            return x, pointmlp_targets(y, self.num_classes, self.smoothing)
        return self.eval_tf(x), smooth_one_hot(y, self.num_classes, self.smoothing)

    def eval(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x if self.eval_tf is None else self.eval_tf(x)
