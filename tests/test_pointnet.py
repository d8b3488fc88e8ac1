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


def test_shared_mlp_is_the_plain_sequence_of_its_layers():
    from pointcoc.layers import shared_mlp

    torch.manual_seed(0)
    mlp = shared_mlp((3, 8, 16), "relu").double().train()
    plain = torch.nn.Sequential(*mlp)  # the same modules, each applied after the other
    x = torch.randn(2, 20, 3, dtype=torch.float64)
    results = []
    for module in (mlp, plain):
        module.zero_grad(set_to_none=True)
        out = module(x)
        out.square().sum().backward()
        results.append((out.detach(), [p.grad for p in module.parameters()]))
    torch.testing.assert_close(results[0], results[1], rtol=1e-12, atol=1e-12)
    assert list(mlp.state_dict()) == list(plain.state_dict())
