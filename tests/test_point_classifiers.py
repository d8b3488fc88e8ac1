"""What every global point classifier (PointNet, point-set CoC) must do, parametrised over their variants."""

import pytest
import torch

import pointcoc

POINTNET_MODELS = pointcoc.list_models(family="pointnet")
POINTSET_MODELS = pointcoc.list_models(family="pointset_coc")


def test_families_are_registered():
    assert POINTNET_MODELS == ["pointnet", "pointnet_vanilla"]
    assert POINTSET_MODELS == ["pointset_coc", "pointset_coc_vanilla"]


@pytest.mark.parametrize("name", POINTNET_MODELS + POINTSET_MODELS)
def test_forward_backward(name):
    model = pointcoc.create_model(name, num_classes=7, num_points=64)
    xyz = model.example_input(3)
    logits = model(xyz)
    assert logits.shape == (3, 7)
    logits.logsumexp(-1).sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"


@pytest.mark.parametrize("name", POINTNET_MODELS + POINTSET_MODELS)
def test_layouts_agree_and_points_are_a_set(name):
    torch.manual_seed(0)
    model = pointcoc.create_model(name, num_classes=5).eval()
    channels_first = pointcoc.create_model(name, num_classes=5, input_layout="BCN").eval()
    channels_first.load_state_dict(model.state_dict())
    xyz = torch.rand(2, 96, 3)
    if name in POINTSET_MODELS:
        # FPS starts at point 0, so only a permutation that keeps point 0 first gives the same centers.
        order, rtol = torch.cat([torch.zeros(1, dtype=torch.long), 1 + torch.randperm(95)]), 1e-4
    else:
        order, rtol = torch.randperm(96), 1e-5
    with torch.no_grad():
        out = model(xyz)
        torch.testing.assert_close(channels_first(xyz.transpose(1, 2)), out)
        torch.testing.assert_close(model(xyz[:, order]), out, rtol=rtol, atol=1e-5)
