"""One input through a model, and its cluster pictures: what ``main.py visualize``, the demo and the
TensorBoard hook all use."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.image_augment import ImageEvalTransform
from ..data.images import resize_center_crop
from ..models import StageClusters
from .image_clusters import display_side, image_clusters, prediction_panel, render_image_clusters
from .inputs import POINT_EXTENSIONS, input_kind, read_image, read_points, split_index
from .loading import VizModel, top_predictions
from .point_clusters import (
    PointLayer,
    cluster_layer,
    keeps_every_point,
    outside,
    point_clusters,
    survival,
    survival_layer,
)
from .point_html import layers_html
from .point_png import VIEWS, render_layers

OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".html")


@dataclass
class Visualization:
    picture: np.ndarray  # [H, W, 3] uint8: clusters over the image, or views of the point cloud
    predictions: list[tuple[str, float]]  # top-5 (name, probability); empty when class names are unknown
    summary: str  # one line: what is shown
    layers: list[PointLayer] = field(default_factory=list)  # point clouds: all stages, for the HTML view
    initial_layer: int = 0

    def html(self) -> str:
        return layers_html(self.layers, self.summary, self.initial_layer)

    def save(self, path: Path) -> None:
        """``.html``: the interactive view; a picture otherwise, images with the predictions beside them."""
        if check_output(path, bool(self.layers)).suffix.lower() == ".html":
            path.write_text(self.html())
            return
        from PIL import Image

        picture = self.picture
        if self.predictions and not self.layers:  # point pictures carry them in their title
            picture = prediction_panel(picture, self.predictions)
        Image.fromarray(picture).save(path)


def check_output(path: Path, points: bool) -> Path:
    """``path`` if it names a kind of output the input (a point cloud or not) has, in an existing folder."""
    if path.suffix.lower() not in OUTPUT_SUFFIXES or (path.suffix.lower() == ".html" and not points):
        raise ValueError(
            f"--out {path}: write {', '.join(OUTPUT_SUFFIXES[:-1])} or .html (point clouds only)"
        )
    if not path.parent.is_dir():
        raise ValueError(f"--out {path}: folder {path.parent} does not exist; create it first")
    return path


def choose(what: str, value: int | None, count: int, owner: str) -> int:
    """``value`` (``None``: the last) checked against ``count`` choices, refused in one line otherwise."""
    value = count - 1 if value is None else value
    if not 0 <= value < count:
        raise ValueError(f"{what} {value} is out of range: {owner} has {what}s 0-{count - 1}")
    return value


def visualize(
    viz: VizModel,
    source: str | Path,
    stage: int = 0,
    block: int | None = None,
    head: int = 0,
    alpha: float = 0.5,
    index: int | None = None,
) -> Visualization:
    """Cluster picture of ``(stage, block, head)`` (``block=None``: the stage's last) for one input file."""
    path, index = split_index(source, index)
    if input_for(viz, path, index) == "image":
        return _visualize_image(viz, read_image(path), stage, block, head, alpha)
    xyz = read_points(path, viz.cfg.num_points, index, viz.canonical)
    return _visualize_points(viz, xyz, path.name, stage, block, head)


def input_for(viz: VizModel, path: Path, index: int | None) -> str:
    """``"image"`` or ``"points"``: the kind of ``path``, refused in one line if ``viz``'s model takes the
    other kind (or an .h5 ``index`` is given for an image)."""
    kind = input_kind(path)
    if (kind == "points") != viz.is_points:
        wanted = f"a point cloud ({', '.join(POINT_EXTENSIONS)})" if viz.is_points else "an image"
        given = "a point cloud" if kind == "points" else "an image"
        model_kind = "a point" if viz.is_points else "an image"
        raise ValueError(f"{path.name} is {given} but {viz.name} is {model_kind} model; give {wanted}")
    if kind == "image" and index is not None:
        raise ValueError(f"--index {index} applies to .h5 point files only, not {path.name}")
    return kind


def image_model_input(viz: VizModel, image) -> tuple[torch.Tensor, np.ndarray]:
    """A Pillow image -> the model's input ``[1, 3, S, S]`` and the same square at display size, uint8 HWC.

    The shorter side is kept whole (resized, centre-cropped square): what is uploaded is what is shown.
    """
    side = viz.cfg.image_size
    x = ImageEvalTransform(viz.cfg.mean, viz.cfg.std)(resize_center_crop(image, side, side)[None])
    big = display_side(side)
    return x, resize_center_crop(image, big, big).permute(1, 2, 0).numpy()


def capture(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, StageClusters]]:
    """Logits and the captured stages of one input batch (no gradients)."""
    with torch.no_grad(), model.capture_clusters() as stages:
        logits = model(x)
    return logits, stages


def _visualize_image(
    viz: VizModel, image, stage: int, block: int | None, head: int, alpha: float
) -> Visualization:
    x, display = image_model_input(viz, image)
    logits, stages = capture(viz.model, x)
    stage = choose("stage", stage, len(stages), viz.name)
    blocks = stages[stage].blocks
    block = choose("block", block, len(blocks), f"stage {stage} of {viz.name}")
    head = choose("head", head, blocks[block].assignment.shape[1], f"stage {stage} of {viz.name}")
    clusters = image_clusters(stages[stage], block, head)
    regions = clusters.folds[0] * clusters.folds[1]
    summary = (
        f"{viz.name} ({viz.source}) stage {stage} block {block} head {head}: {regions} region(s) x "
        f"{clusters.centers} centers, {len(np.unique(clusters.assignment))} center colour(s) in use"
    )
    return Visualization(
        render_image_clusters(display, clusters, alpha), top_predictions(logits[0], viz.classes), summary
    )


def point_blocks(stage: StageClusters) -> int:
    """Blocks to choose from in a point stage: its cluster blocks (1 in stages without: the groups)."""
    return max(1, len(stage.blocks))


def point_heads(stages: dict[int, StageClusters]) -> int:
    """Heads every cluster block has (a head index must exist in all the layers drawn); 1 without any."""
    return min((block.assignment.shape[1] for s in stages.values() for block in s.blocks), default=1)


def point_layers(
    stages: dict[int, StageClusters], cloud: np.ndarray, head: int
) -> tuple[list[tuple[int, int]], list[PointLayer]]:
    """Every ``(stage, block)`` and its layer: the stage's points coloured by the center they joined, over
    the input points ``cloud`` ``[N, 3]`` that the stage does not cluster (in light grey)."""
    keys, layers = [], []
    for s in sorted(stages):
        stage = stages[s]
        for b in range(point_blocks(stage)):
            clusters = point_clusters(stage, b, head)
            what = f"{clusters.num_groups} " + (
                f"groups of {clusters.group_size}" if stage.within_groups else "centers"
            )
            keys.append((s, b))
            layers.append(cluster_layer(clusters, outside(stage, cloud), f"stage {s} block {b}: {what}"))
    return keys, layers


def _legend(stage: StageClusters) -> str:
    if not stage.within_groups:
        return "each point has the colour of the center it joined; outlined: the anchors that seeded them"
    joined = "most similar group" if stage.blocks else "nearest anchor's group"
    return f"a group is a cluster; outlined: its anchor; each point has the colour of its {joined}"


def _visualize_points(
    viz: VizModel, xyz: torch.Tensor, label: str, stage: int, block: int | None, head: int
) -> Visualization:
    logits, stages = capture(viz.model, xyz[None])
    stage = choose("stage", stage, len(stages), viz.name)
    block = choose("block", block, point_blocks(stages[stage]), f"stage {stage} of {viz.name}")
    head = choose("head", head, point_heads(stages), viz.name)
    cloud = xyz.cpu().numpy()
    keys, layers = point_layers(stages, cloud, head)
    chosen = keys.index((stage, block))
    if keeps_every_point(stages):
        # the fourth panel: the coarsest clusters next to finer ones, or the finest next to the coarsest
        extra = [layers[-1 if chosen != len(layers) - 1 else 0]] if len(layers) > 1 else []
    else:  # which points each sampling kept
        extra = [survival_layer(cloud, survival(stages, len(cloud)), len(stages))]
        layers.append(extra[0])
    views = [(layer, VIEWS[0]) for layer in extra]
    return _point_picture(viz, label, logits, layers, chosen, head, _legend(stages[stage]), views)


def _point_picture(
    viz: VizModel,
    label: str,
    logits: torch.Tensor,
    layers: list[PointLayer],
    chosen_index: int,
    head: int,
    legend: str,
    extra: list,
) -> Visualization:
    chosen = layers[chosen_index]
    predictions = top_predictions(logits[0], viz.classes)
    summary = f"{viz.name} ({viz.source}) on {label}: {chosen.name}, head {head}"
    title = "\n".join([
        f"{viz.name} on {label}: {chosen.name}, head {head}",
        legend,
        *(["top-5: " + ", ".join(f"{n} {p:.0%}" for n, p in predictions)] if predictions else []),
    ])  # fmt: skip
    picture = render_layers([(chosen, view) for view in VIEWS] + extra, title)
    return Visualization(picture, predictions, summary, layers, chosen_index)
