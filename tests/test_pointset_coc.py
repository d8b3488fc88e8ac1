import pytest
import torch

import pointcoc
from pointcoc.cluster.reference import context_cluster_naive
from pointcoc.layers import SetClusterMixer
from pointcoc.models.pointset_coc import PointSetCoC, spatial_groups

POINTSET_MODELS = pointcoc.list_models(family="pointset_coc")


def test_family_is_registered():
    assert POINTSET_MODELS == ["pointset_coc", "pointset_coc_vanilla"]


@pytest.mark.parametrize("name", POINTSET_MODELS)
def test_forward_backward(name):
    model = pointcoc.create_model(name, num_classes=7, num_points=64)
    xyz = model.example_input(3)
    logits = model(xyz)
    assert logits.shape == (3, 7)
    logits.logsumexp(-1).sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"


@pytest.mark.parametrize("name", POINTSET_MODELS)
def test_layouts_agree_and_points_are_a_set(name):
    torch.manual_seed(0)
    model = pointcoc.create_model(name, num_classes=5).eval()
    channels_first = pointcoc.create_model(name, num_classes=5, input_layout="BCN").eval()
    channels_first.load_state_dict(model.state_dict())
    xyz = torch.rand(2, 96, 3)
    with torch.no_grad():
        out = model(xyz)
        torch.testing.assert_close(channels_first(xyz.transpose(1, 2)), out)
        # FPS starts at point 0, so a permutation that keeps point 0 first gives the same centers.
        order = torch.cat([torch.zeros(1, dtype=torch.long), 1 + torch.randperm(95)])
        torch.testing.assert_close(model(xyz[:, order]), out, rtol=1e-4, atol=1e-5)


def test_spatial_groups_are_anchor_neighbourhoods():
    torch.manual_seed(0)
    xyz = torch.rand(2, 40, 3)
    groups = spatial_groups(xyz, 8)
    assert groups.shape == (2, 8, 5)
    # Sorted by distance: every group starts with its anchor, and the anchors are distinct points.
    anchors = groups[..., 0]
    assert all(len(set(a.tolist())) == 8 for a in anchors)
    far = (xyz.unsqueeze(2) - xyz.gather(1, anchors.unsqueeze(-1).expand(-1, -1, 3)).unsqueeze(1)).norm(
        dim=-1
    )
    inside = far.gather(2, anchors.new_tensor(range(8)).expand(2, 40, 8))  # [B, N, 8] distance to anchor
    for b in range(2):
        for m in range(8):
            members = groups[b, m]
            radius = inside[b, members, m].max()
            outside = torch.ones(40, dtype=torch.bool)
            outside[members] = False
            assert (inside[b, outside, m] >= radius).all()


def test_mixer_equals_the_naive_operator_on_pooled_centers():
    torch.manual_seed(0)
    mixer = SetClusterMixer(12, heads=2, head_dim=5)
    x = torch.randn(3, 20, 12, requires_grad=True)
    groups = spatial_groups(torch.rand(3, 20, 3), 4)
    out = mixer(x, groups)
    out.square().sum().backward()
    grads = x.grad.clone(), mixer.sim_alpha.grad.clone()

    x.grad = None
    mixer.zero_grad()
    feats, values = mixer.f(x), mixer.v(x)
    b, n = 3, 20
    per_head = [slice(h * 5, (h + 1) * 5) for h in range(2)]
    outs = []
    for h in per_head:
        f, v = feats[..., h], values[..., h]
        centers = torch.stack([f[i, groups[i]].mean(1) for i in range(b)])
        value_centers = torch.stack([v[i, groups[i]].mean(1) for i in range(b)])
        outs.append(context_cluster_naive(f, v, centers, value_centers, mixer.sim_alpha, mixer.sim_beta).out)
    naive = mixer.proj(torch.cat(outs, dim=-1))
    torch.testing.assert_close(out, naive, rtol=1e-5, atol=1e-6)
    naive.square().sum().backward()
    torch.testing.assert_close(x.grad, grads[0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(mixer.sim_alpha.grad, grads[1], rtol=1e-4, atol=1e-6)
    assert out.shape == (b, n, 12)


def test_bad_configuration_and_inputs():
    with pytest.raises(ValueError, match="one value per stage"):
        PointSetCoC(dims=(32, 64), depths=(1,))
    with pytest.raises(ValueError, match="centers must be positive"):
        PointSetCoC(centers=(0, 8))
    model = PointSetCoC(num_classes=3)
    with pytest.raises(ValueError, match=r"xyz must have shape \[B, N, 3\]"):
        model(torch.rand(2, 4, 30))
    with pytest.raises(ValueError, match="non-finite"):
        model(torch.full((2, 30, 3), float("nan")))
    with pytest.raises(ValueError, match="num_samples"):
        model(torch.rand(2, 10, 3))  # fewer points than the 16 centers of stage 1
