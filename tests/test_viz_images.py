"""Image cluster pictures: one colour per center of the stage's proposal grid, borders on the region folds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from test_viz_helpers import IMAGE_CLASSES, TINY_COC, image_checkpoint, real_photo, smooth_image

import main
import pointcoc
from pointcoc.viz import load_checkpoint_model, visualize
from pointcoc.viz.colors import BORDER, cluster_colors
from pointcoc.viz.loading import VizModel
from pointcoc.viz.visualize import image_model_input


def tiny_viz(name: str = "coc_tiny", **kwargs) -> VizModel:
    torch.manual_seed(0)
    return VizModel(
        pointcoc.create_model(name, **{**TINY_COC, **kwargs}).eval(), name, "random weights", None
    )


def border_lines(picture: np.ndarray) -> tuple[list[int], list[int]]:
    """Rows and columns drawn entirely in the border colour."""
    full = (picture == BORDER).all(axis=-1)
    return np.flatnonzero(full.all(axis=1)).tolist(), np.flatnonzero(full.all(axis=0)).tolist()


def colours(picture: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(c) for c in np.unique(picture.reshape(-1, 3), axis=0)}


def captured(viz: VizModel, path, stage: int, block: int, head: int) -> np.ndarray:
    """The assignment map straight from the model's capture API, for comparison."""
    x, _ = image_model_input(viz, Image.open(path).convert("RGB"))
    with torch.no_grad(), viz.model.capture_clusters() as stages:
        viz.model(x)
    return stages[stage].blocks[block].assignment[0, head].numpy()


# (stage, regions per side, centers per region): CoC-Tiny folds 8/4/2/1 with 2x2 proposals at 224 px,
# drawn at 448 px, so a region boundary every 448 / folds pixels, two pixels wide
@pytest.mark.parametrize("stage, folds", [(0, 8), (1, 4), (2, 2), (3, 1)])
def test_colours_are_the_stage_centers_and_borders_follow_its_folds(tmp_path, stage, folds):
    viz = tiny_viz()
    path = smooth_image(tmp_path / "smooth.png")
    result = visualize(viz, path, stage=stage, block=0, head=1, alpha=1.0)
    picture = result.picture
    assert picture.shape == (448, 448, 3)
    step = 448 // folds
    expected = sorted(p for k in range(1, folds) for p in (k * step - 1, k * step))
    assert border_lines(picture) == (expected, expected)
    used = np.unique(captured(viz, path, stage, 0, 1))
    assert set(used) <= set(range(4))  # 2x2 centers per region
    assert colours(picture) - {BORDER} == {tuple(c) for c in cluster_colors(4)[used]}
    assert f"{folds * folds} region(s) x 4 centers, {len(used)} center colour(s)" in result.summary


def test_without_regions_every_center_of_the_map_has_its_colour(tmp_path):
    viz = tiny_viz("coc_tiny_plain")  # one region, 4x4 = 16 centers in stage 0
    path = smooth_image(tmp_path / "smooth.png")
    picture = visualize(viz, path, stage=0, alpha=1.0).picture
    used = np.unique(captured(viz, path, 0, 0, 0))
    assert border_lines(picture) == ([], [])
    assert len(used) > 4 and used.max() < 16
    assert colours(picture) == {tuple(c) for c in cluster_colors(16)[used]}


def test_maps_padded_to_the_folds_keep_borders_at_the_region_size(tmp_path):
    # 200 px -> a 50x50 stage-0 map, clustered padded to 56x56: regions of 7 cells, 8 px per cell at 400 px
    viz = tiny_viz()
    viz.model.model_cfg = dataclasses.replace(viz.model.model_cfg, input_size=(3, 200, 200))
    picture = visualize(viz, smooth_image(tmp_path / "s.png"), stage=0, block=0, alpha=1.0).picture
    assert picture.shape == (400, 400, 3)
    expected = sorted(p for k in range(1, 8) for p in (56 * k - 1, 56 * k))
    assert border_lines(picture) == (expected, expected)


def test_alpha_blends_between_the_image_and_the_colours(tmp_path):
    viz = tiny_viz()
    path = real_photo(tmp_path, "coffee")
    _, display = image_model_input(viz, Image.open(path).convert("RGB"))
    plain = visualize(viz, path, stage=3, alpha=0.0).picture  # stage 3: no borders
    assert np.array_equal(plain, display)
    half = visualize(viz, path, stage=3, alpha=0.5).picture.astype(int)
    full = visualize(viz, path, stage=3, alpha=1.0).picture.astype(int)
    assert np.abs(half - (display.astype(int) + full) / 2).max() <= 1


def test_cli_writes_the_picture_with_top5_predictions_of_a_checkpoint(tmp_path, capsys):
    checkpoint = image_checkpoint(tmp_path / "image.pt")
    photo, out = real_photo(tmp_path, "astronaut"), tmp_path / "clusters.png"
    code = main.main(["visualize", "--checkpoint", str(checkpoint), "--input", str(photo), "--stage", "1",
                      "--alpha", "1", "--out", str(out)])  # fmt: skip
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    predicted = [line.split(maxsplit=1) for line in lines[1:6]]
    assert [name for _, name in predicted] and all(name in IMAGE_CLASSES for _, name in predicted)
    probs = [float(p.rstrip("%")) / 100 for p, _ in predicted]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-3
    picture = np.asarray(Image.open(out).convert("RGB"))
    assert picture.shape[0] == 448 and picture.shape[1] > 448  # the prediction panel on the right
    expected = sorted(p for k in (1, 2, 3) for p in (112 * k - 1, 112 * k))
    assert border_lines(picture[:, :448]) == (expected, expected)
    viz = load_checkpoint_model(checkpoint)
    assert viz.classes == IMAGE_CLASSES and not viz.model.training


@pytest.mark.parametrize(
    "args, message",
    [
        (["--stage", "4"], "stage 4 is out of range: coc_tiny has stages 0-3"),
        (["--stage", "1", "--block", "4"], "block 4 is out of range: stage 1 of coc_tiny has blocks 0-3"),
        (["--head", "4"], "head 4 is out of range: stage 0 of coc_tiny has heads 0-3"),
        (["--alpha", "1.5"], "alpha must be in [0, 1], got 1.5"),
        (["--index", "3"], "--index 3 applies to .h5 point files only"),
    ],
)
def test_bad_choices_are_refused_in_one_line(tmp_path, capsys, args, message):
    path = smooth_image(tmp_path / "s.png")
    code = main.main(
        ["visualize", "--model", "coc_tiny", "--input", str(path), "--out", str(tmp_path / "o.png"), *args]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "o.png").exists()
