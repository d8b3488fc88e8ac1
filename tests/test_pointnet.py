import pytest
import torch

import pointcoc
from pointcoc.models.pointnet import PointNet

POINTNET_MODELS = pointcoc.list_models(family="pointnet")


def test_family_is_registered():
    assert POINTNET_MODELS == ["pointnet", "pointnet_vanilla"]


@pytest.mark.parametrize("name", POINTNET_MODELS)
def test_forward_backward(name):
    model = pointcoc.create_model(name, num_classes=7, num_points=64)
    xyz = model.example_input(3)
    logits = model(xyz)
    assert logits.shape == (3, 7)
    logits.logsumexp(-1).sum().backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None]


@pytest.mark.parametrize("name", POINTNET_MODELS)
def test_layouts_agree_and_points_are_a_set(name):
    torch.manual_seed(0)
    model = pointcoc.create_model(name, num_classes=5).eval()
    official = pointcoc.create_model(name, num_classes=5, input_layout="BCN").eval()
    official.load_state_dict(model.state_dict())
    xyz = torch.rand(2, 50, 3)
    with torch.no_grad():
        out = model(xyz)
        torch.testing.assert_close(official(xyz.transpose(1, 2)), out)
        torch.testing.assert_close(model(xyz[:, torch.randperm(50)]), out, rtol=1e-5, atol=1e-5)


def test_parameter_counts():
    # 3->64->64->64->128->1024 shared MLP (Linear+BN), 1024->512->256->k head; T-Net adds 3->64->128->1024
    # and 1024->512->256->9.
    assert sum(p.numel() for p in pointcoc.create_model("pointnet_vanilla").parameters()) == 819_624
    assert sum(p.numel() for p in pointcoc.create_model("pointnet").parameters()) == 1_622_705


def test_input_transform_starts_at_identity():
    model = PointNet(num_classes=3).eval()
    xyz = torch.rand(2, 30, 3)
    torch.testing.assert_close(model.transform(xyz), xyz)


def test_bad_inputs():
    model = PointNet(num_classes=3)
    with pytest.raises(ValueError, match=r"xyz must have shape \[B, N, 3\]"):
        model(torch.rand(2, 4, 30))
    with pytest.raises(ValueError, match="non-finite"):
        model(torch.full((2, 30, 3), float("nan")))
    with pytest.raises(ValueError, match="input_layout"):
        PointNet(input_layout="NCB")
