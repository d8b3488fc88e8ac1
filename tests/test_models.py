"""What every registered model must do, parametrised over ``pointcoc.list_models()`` (timm's test_models).

Models are built small (fewer blocks, fewer points, small images) so the file runs quickly; what is checked
is the interface every model shares: forward, backward, input layouts and sizes, bad inputs,
``capture_clusters()`` and the declared ``model_cfg``. Nothing here needs ``../shared``: official
fixtures, parameter counts and MACs are checked in the family files.
"""

from __future__ import annotations

import json

import pytest
import torch

import pointcoc
from pointcoc.models import ModelCfg
from pointcoc.ops import gather_points

MODELS = pointcoc.list_models()
NUM_CLASSES = 5
IMAGE_SIZE = 64  # stage maps 16, 8, 4, 2
# Per family: constructor overrides that keep each variant's kind of stage (folds, centers, groups, heads)
# at a fraction of its cost.
SMALL = {
    "context_cluster": dict(layers=(1, 1, 1, 1)),
    "pointmlp": dict(num_points=128, k_neighbors=(16, 16, 16, 16)),  # 64, 32, 16, 8 anchors
    "pointnet": dict(num_points=128),
    "pointset_coc": dict(num_points=128),
}
FAMILY = {name: family for family in SMALL for name in pointcoc.list_models(family=family)}
POINT_MODELS = [n for n in MODELS if FAMILY.get(n) != "context_cluster"]
IMAGE_MODELS = pointcoc.list_models(family="context_cluster")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are small: one thread is as fast on an idle machine and several times faster on a
    loaded one, where more threads than free cores wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return pointcoc.create_model(name, num_classes=NUM_CLASSES, **{**SMALL[FAMILY[name]], **kwargs})


def example(model: torch.nn.Module, batch: int) -> torch.Tensor:
    """A batch in the model's declared input kind and layout (images at IMAGE_SIZE)."""
    if model.model_cfg.is_points:
        return model.example_input(batch)
    return model.example_input(batch, IMAGE_SIZE)


def test_every_registered_model_is_covered():
    assert sorted(FAMILY) == MODELS, "a new model family needs its small overrides in SMALL"
    assert len(MODELS) == len(set(MODELS)) == 15


def test_registry_names_and_errors():
    assert pointcoc.list_models("pointmlp_coc*") == ["pointmlp_coc", "pointmlp_coc_elite"]
    assert pointcoc.list_models(family="pointnet") == ["pointnet", "pointnet_vanilla"]
    assert pointcoc.list_models(family="pointset_coc") == ["pointset_coc", "pointset_coc_vanilla"]
    with pytest.raises(ValueError, match="unknown model 'pointmlp_cox'.*similar: pointmlp"):
        pointcoc.create_model("pointmlp_cox")


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward(name):
    model = build(name).train()
    x = example(model, 2).requires_grad_()
    logits = model(x)
    assert logits.shape == (2, NUM_CLASSES) and torch.isfinite(logits).all()
    logits.logsumexp(-1).sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, f"parameters without a finite gradient: {no_grad[:5]}"
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # no randomness left in eval mode


@pytest.mark.parametrize("name", MODELS)
def test_declared_interface(name):
    model = build(name)
    cfg = model.model_cfg
    assert cfg.architecture == name and name in pointcoc.list_models(family=cfg.family)
    assert cfg.num_classes == NUM_CLASSES and cfg.aggregation == "similarity"
    x = model.example_input(3)
    assert x.shape == (3, *cfg.input_size)
    if cfg.is_points:
        assert cfg.input_kind == "points" and cfg.input_size == (128, 3) and cfg.num_points == 128
        assert cfg.image_size is None and cfg.mean is None and cfg.std is None and cfg.crop_pct is None
        channels_first = build(name, input_layout="BCN")
        assert channels_first.example_input(3).shape == (3, 3, 128)
        assert channels_first.model_cfg.input_size == cfg.input_size
    else:
        assert cfg.input_kind == "image" and cfg.input_size == (3, 224, 224) and cfg.image_size == 224
        assert cfg.num_points is None and len(cfg.mean) == len(cfg.std) == 3 and min(cfg.std) > 0
        assert 0 < cfg.crop_pct <= 1 and cfg.interpolation == "bicubic"
    # the checkpoint form: plain JSON-able containers, and back
    assert ModelCfg.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize("name", MODELS)
def test_capture_clusters(name):
    model = build(name).eval()
    x = example(model, 2)
    with torch.no_grad():
        plain = model(x)
        with model.capture_clusters() as stages:
            out = model(x)
        recorded = dict(stages)
        model(x)  # outside the ``with``: nothing is recorded any more
    assert torch.equal(out, plain)  # capturing changes nothing
    assert stages == recorded
    mixers = model.cluster_mixers()
    assert not any(m.record_assignment or m.last_result is not None for m in mixers)
    cfg = model.model_cfg
    if not cfg.has_clusters:
        assert stages == {} and mixers == []
        return
    assert stages and list(stages) == list(range(len(stages)))
    # one block result per cluster mixer, in forward order, each with the mixer's heads
    assert [b.assignment.shape[1] for st in stages.values() for b in st.blocks] == [m.heads for m in mixers]
    for s, stage in stages.items():
        if cfg.is_points:
            n = stage.points.shape[1]
            points = [n]
            assert stage.points.shape == (2, n, 3) and stage.regions == (1, 1)
            if stage.point_idx is None:
                assert torch.equal(stage.points, x)
            else:
                assert stage.point_idx.shape == (2, n)
                assert torch.equal(stage.points, gather_points(x, stage.point_idx))
            assert stage.anchor_idx.shape == (2, stage.centers)
            assert stage.groups.shape[:2] == (2, stage.centers)
            assert 0 <= int(stage.groups.min()) and int(stage.groups.max()) < n
            assert torch.equal(stage.groups[..., 0], stage.anchor_idx)  # nearest first: the anchor itself
        else:
            side = IMAGE_SIZE // 4 // 2**s
            points = [side, side]
            assert stage.points is None and stage.groups is None and stage.anchor_idx is None
            assert all(fold >= 1 for fold in stage.regions)
        for block in stage.blocks:
            assignment, similarity = block.assignment, block.similarity
            assert assignment.dtype == torch.long and list(assignment.shape[2:]) == points
            assert similarity.shape == assignment.shape and assignment.shape[0] == 2
            assert int(assignment.min()) >= (-1 if stage.within_groups else 0)
            assert int(assignment.max()) < stage.centers
            joined = assignment >= 0
            assert ((similarity > 0) & (similarity < 1))[joined].all() and (similarity[~joined] == 0).all()


@pytest.mark.parametrize("name", POINT_MODELS)
def test_point_layouts_agree_and_points_are_a_set(name):
    model = build(name).eval()
    channels_first = build(name, input_layout="BCN").eval()
    channels_first.load_state_dict(model.state_dict())
    xyz = model.example_input(2)
    # FPS starts at point 0: a permutation that keeps point 0 first samples the same anchors and centers.
    order = torch.cat([torch.zeros(1, dtype=torch.long), 1 + torch.randperm(xyz.shape[1] - 1)])
    with torch.no_grad():
        out = model(xyz)
        torch.testing.assert_close(channels_first(xyz.transpose(1, 2)), out)
        torch.testing.assert_close(model(xyz[:, order]), out, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", POINT_MODELS)
def test_bad_point_inputs_are_refused(name):
    model = build(name)
    for bad in (torch.rand(2, 4, 30), torch.rand(128, 3)):
        with pytest.raises(ValueError, match=r"xyz must have shape \[B, N, 3\] \(input_layout='BNC'\)"):
            model(bad)
    xyz = model.example_input(2)
    xyz[1, 7, 2] = float("nan")
    with pytest.raises(ValueError, match="xyz contains 1 non-finite values"):
        model(xyz)
    with pytest.raises(ValueError, match="input_layout must be 'BNC'"):
        build(name, input_layout="NCB")


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_images_of_any_size_and_memory_format(name):
    model = build(name).eval()
    for size in [(72, 56), (50, 37), (4, 4)]:  # maps not divisible by the folds are padded inside
        x = torch.randn(1, 3, *size, requires_grad=True)
        out = model(x)
        assert out.shape == (1, NUM_CLASSES)
        out.sum().backward()
        assert torch.isfinite(x.grad).all()
    x = example(model, 2)
    with torch.no_grad():
        torch.testing.assert_close(model(x.to(memory_format=torch.channels_last)), model(x))


@pytest.mark.parametrize(
    "shape,match",
    [
        ((1, 4, 32, 32), r"x must be an image batch of shape \[B, 3, H, W\]"),
        ((3, 32, 32), r"x must be an image batch of shape \[B, 3, H, W\]"),
        ((1, 3, 3, 32), r"x must have H, W >= 4"),
    ],
)
@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_bad_images_are_refused(name, shape, match):
    with pytest.raises(ValueError, match=match):
        build(name)(torch.randn(*shape))


def _autograd_nodes(t: torch.Tensor) -> set[str]:
    seen, names, stack = set(), set(), [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(next_fn for next_fn, _ in node.next_functions)
    return names


@pytest.mark.parametrize("name", MODELS)
def test_no_in_place_op_on_a_view_in_training(name):
    # An in-place op (an activation, a residual add_) on a view of a layer's output routes the whole
    # gradient through CopySlices: a clone, a copy and a zero-filled as_strided per layer in backward.
    model = build(name).train()
    assert "CopySlices" not in _autograd_nodes(model(example(model, 2)))
