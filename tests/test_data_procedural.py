"""The embedded procedural shape set: deterministic, split-disjoint, fast, and not solvable from box size."""

from __future__ import annotations

import numpy as np

from pointcoc.data import build_dataset
from pointcoc.data.procedural import CLASSES, generate


def test_deterministic_and_disjoint() -> None:
    a, la = generate("val", per_class=3, num_points=256, seed=7)
    b, lb = generate("val", per_class=3, num_points=256, seed=7)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert a.shape == (3 * len(CLASSES), 256, 3) and a.dtype == np.float32
    assert not np.allclose(generate("val", per_class=3, num_points=256, seed=8)[0], a)
    assert not np.allclose(generate("test", per_class=3, num_points=256, seed=7)[0], a)
    assert np.isfinite(a).all() and abs(np.linalg.norm(a, axis=2).max() - 1) < 1e-5


def test_dataset_items() -> None:
    ds = build_dataset("procedural", split="test", num_points=128, per_class=2, classes=4)
    assert len(ds) == 8 and ds.classes == list(CLASSES[:4])
    x, y = ds[5]
    assert x.shape == (128, 3) and str(x.dtype) == "torch.float32" and str(y.dtype) == "torch.int64"


def test_bounding_box_is_not_enough() -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def extents(points: np.ndarray) -> np.ndarray:
        return np.sort(points.max(1) - points.min(1), axis=1)

    def shape_distribution(points: np.ndarray) -> np.ndarray:
        # D2 descriptor (Osada et al.): histogram of distances between random point pairs
        rng = np.random.default_rng(0)
        pairs = rng.integers(0, points.shape[1], (len(points), 1000, 2))
        d = np.linalg.norm(
            np.take_along_axis(points, pairs[..., :1], 1) - np.take_along_axis(points, pairs[..., 1:], 1),
            axis=2,
        )
        return np.stack([np.histogram(row, bins=16, range=(0, 2))[0] for row in d]) / 1000

    xtr, ytr = generate("train", per_class=60, num_points=512)
    xte, yte = generate("test", per_class=30, num_points=512)
    box = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(extents(xtr), ytr)
    box_acc = box.score(extents(xte), yte)
    geo = RandomForestClassifier(200, random_state=0).fit(shape_distribution(xtr), ytr)
    geo_acc = geo.score(shape_distribution(xte), yte)
    # chance is 1/11; the extents carry some signal but far from all of it, and geometry carries much more
    assert box_acc < 0.45, box_acc
    assert geo_acc > box_acc + 0.2, (box_acc, geo_acc)
