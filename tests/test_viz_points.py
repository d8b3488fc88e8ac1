"""Point-cloud capture and pictures: groups, centers and sampling as the forward pass made them."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from test_viz_helpers import POINT_CLASSES, SHARED_DATA, TINY_POINTS, point_checkpoint, sphere_ply

import main
import pointcoc
from pointcoc.viz import visualize
from pointcoc.viz.colors import CONTEXT, UNGROUPED, cluster_colors, hex_color
from pointcoc.viz.loading import VizModel
from pointcoc.viz.point_clusters import point_clusters, survival
from pointcoc.viz.visualize import capture

N = 256


def tiny_model(name: str = "pointmlp_coc_elite", **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return pointcoc.create_model(name, num_classes=6, num_points=N, **{**TINY_POINTS, **kwargs}).eval()


def cloud(seed: int = 0) -> torch.Tensor:
    return torch.rand(N, 3, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_cluster_layer_shows_every_group_and_colours_points_by_their_group():
    model = tiny_model()
    _, stages = capture(model, cloud()[None])
    for stage, samples in enumerate(model.stage_samples):
        clusters = point_clusters(stages[stage], 0, 0)
        assert clusters.num_groups == samples and clusters.group_size == 10
        groups = stages[stage].groups[0].numpy()
        held = clusters.owner >= 0
        assert all(i in groups[o] for i, o in enumerate(clusters.owner) if o >= 0)  # owners hold their points
        assert held.sum() == len(np.unique(groups))


def test_survival_counts_the_points_each_sampling_keeps():
    model = tiny_model()
    _, stages = capture(model, cloud()[None])
    depth = survival(stages, N)
    assert [(depth >= s).sum() for s in range(5)] == [N, *model.stage_samples]


@pytest.mark.parametrize("stage", [0, 2])
def test_picture_and_html_show_one_colour_per_group_of_the_stage(tmp_path, stage):
    model = tiny_model()
    viz = VizModel(model, "pointmlp_coc_elite", "random weights", None)
    result = visualize(viz, sphere_ply(tmp_path / "s.ply", n=2 * N), stage=stage)
    groups = model.stage_samples[stage]
    palette = {tuple(c) for c in cluster_colors(groups)}
    # the picture: opaque, unshaded markers keep their exact colours; every group's anchor is drawn
    flat = result.picture.reshape(-1, 3)
    seen = {tuple(c) for c in np.unique(flat, axis=0)} & palette
    assert len(seen) >= 0.9 * groups  # a few anchors hide behind others in every view
    # the HTML view: self-contained, its layers are every (stage, block) and the sampling
    html = result.html()
    assert "http" not in html and "<script src" not in html
    data = json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>', html, re.S)[1])
    blocks = [len(st.pre) for st in model.stages]
    assert len(data["layers"]) == sum(blocks) + 1
    layer = data["layers"][data["initial"]]
    assert layer["name"] == f"stage {stage} block {blocks[stage] - 1}: {groups} groups of 10"
    hexes = {hex_color(c) for c in palette}
    outlined = [c for c, o in zip(layer["colors"], layer["outlined"]) if o]
    assert len(outlined) == groups and set(outlined) == hexes  # one anchor per group, in its colour
    others = {hex_color(c) for c in (CONTEXT, UNGROUPED)}
    assert set(layer["colors"]) <= hexes | others
    assert len(layer["sizes"]) * 3 == len(layer["xyz"]) == 3 * N  # the stage's set + the input outside it


def test_a_model_without_cluster_blocks_shows_its_knn_groups(tmp_path):
    model = tiny_model("pointmlp_elite")
    viz = VizModel(model, "pointmlp_elite", "random weights", None)
    result = visualize(viz, sphere_ply(tmp_path / "s.ply", n=N), stage=1)
    assert "stage 1 block 0: 64 groups of 10" in result.summary
    assert len(result.layers) == len(model.stages) + 1  # one "block" per stage: its groups
    with pytest.raises(ValueError, match="block 1 is out of range: stage 1 of pointmlp_elite has blocks 0-0"):
        visualize(viz, sphere_ply(tmp_path / "s.ply", n=N), stage=1, block=1)


def test_cli_png_and_html_of_a_checkpoint_on_real_files(tmp_path, capsys):
    checkpoint = point_checkpoint(tmp_path / "points.pt", N)
    inputs = [sphere_ply(tmp_path / "binary.ply", n=700, binary=True)]
    samples = SHARED_DATA / "samples"
    for real in (samples / "off" / "ModelNet10" / "sofa" / "train" / "sofa_0001.off",
                 samples / "modelnet40_normal_resampled" / "airplane" / "airplane_0001.txt",
                 SHARED_DATA / "modelnet10_hdf5_1024" / "ply_data_train0.h5"):  # fmt: skip
        inputs += [real] if real.is_file() else []
    for path in inputs:
        spec = f"{path}:7" if path.suffix == ".h5" else str(path)
        png, page = tmp_path / f"{path.stem}.png", tmp_path / f"{path.stem}.html"
        code = main.main(["visualize", "--checkpoint", str(checkpoint), "--input", spec, "--stage", "1",
                          "--out", str(png), str(page)])  # fmt: skip
        out = capsys.readouterr().out
        assert code == 0, out
        assert f"on {path.name}: stage 1 block 0: 64 groups of 10" in out
        assert sum(name in out for name in POINT_CLASSES) == 5
        assert Image.open(png).size == (720, 810)  # 2 x 2 panels of 3.6 in, 3 title lines, at 100 dpi
        assert "64 groups of 10" in page.read_text()


def test_point_set_coc_colours_every_point_by_the_center_it_joined(tmp_path):
    torch.manual_seed(0)
    model = pointcoc.create_model("pointset_coc", num_classes=6, num_points=N).eval()
    viz = VizModel(model, "pointset_coc", "random weights", None)
    result = visualize(viz, sphere_ply(tmp_path / "s.ply", n=2 * N), stage=1, head=2)
    assert "stage 1 block 0: 8 centers" in result.summary and "head 2" in result.summary
    assert len(result.layers) == 2  # one block per stage, no sampling layer: every stage keeps every point
    # the layer's colours are the captured assignment's centers, read back through the palette
    xyz = torch.from_numpy(result.layers[1].points).float()[None]
    with torch.no_grad(), model.capture_clusters() as stages:
        model(xyz)
    palette = cluster_colors(8)
    layer = result.layers[1]
    anchors = stages[1].anchor_idx[0].numpy()
    assignment = stages[1].blocks[0].assignment[0, 2].numpy()
    plain = np.ones(N, dtype=bool)
    plain[anchors] = False
    assert (layer.colors[plain] == palette[assignment[plain]]).all()
    assert (layer.colors[anchors] == palette).all() and layer.outlined[anchors].all()
    assert layer.outlined.sum() == 8
    with pytest.raises(ValueError, match="head 4 is out of range: pointset_coc has heads 0-3"):
        visualize(viz, sphere_ply(tmp_path / "s.ply", n=N), head=4)
