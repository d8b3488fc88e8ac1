import torch

import pointcoc
from pointcoc.models.pointnet import PointNet


def test_parameter_counts():
    # 3->64->64->64->128->1024 shared MLP (Linear+BN), 1024->512->256->k head; T-Net adds 3->64->128->1024
    # and 1024->512->256->9.
    assert sum(p.numel() for p in pointcoc.create_model("pointnet_vanilla").parameters()) == 819_624
    assert sum(p.numel() for p in pointcoc.create_model("pointnet").parameters()) == 1_622_705


def test_input_transform_starts_at_identity():
    model = PointNet(num_classes=3).eval()
    xyz = torch.rand(2, 30, 3)
    torch.testing.assert_close(model.transform(xyz), xyz)


def test_any_point_order_gives_the_same_output():
    # no sampling: every permutation of the points, not only those that keep point 0 first (test_models)
    model = PointNet(num_classes=3).eval()
    xyz = torch.rand(2, 96, 3)
    with torch.no_grad():
        torch.testing.assert_close(model(xyz[:, torch.randperm(96)]), model(xyz))
