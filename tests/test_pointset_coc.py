import pytest
import torch

import pointcoc
from pointcoc.cluster.reference import context_cluster_naive
from pointcoc.layers import SetClusterMixer
from pointcoc.models.pointset_coc import PointSetCoC, spatial_groups
from pointcoc.ops import farthest_point_sample, gather_points


def test_spatial_groups_are_anchor_neighbourhoods():
    torch.manual_seed(0)
    xyz = torch.rand(2, 40, 3)
    anchor_idx, groups = spatial_groups(xyz, 8)
    assert anchor_idx.shape == (2, 8) and groups.shape == (2, 8, 5)
    assert all(len(set(a.tolist())) == 8 for a in anchor_idx)  # distinct anchors
    assert torch.equal(groups[..., 0], anchor_idx)  # sorted by distance: the anchor comes first
    for b in range(2):
        distance = torch.cdist(xyz[b, anchor_idx[b]], xyz[b])  # [8, 40], written out independently
        for m in range(8):
            outside = torch.ones(40, dtype=torch.bool)
            outside[groups[b, m]] = False
            assert distance[m, outside].min() >= distance[m, groups[b, m]].max()


def test_mixer_equals_the_naive_operator_on_pooled_centers():
    torch.manual_seed(0)
    mixer = SetClusterMixer(12, heads=2, head_dim=5)
    x = torch.randn(3, 20, 12, requires_grad=True)
    _, groups = spatial_groups(torch.rand(3, 20, 3), 4)
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
    with pytest.raises(ValueError, match="centers must be positive"):
        PointSetCoC(centers=(0, 8))
    with pytest.raises(ValueError, match=r"depths must give one value per stage \(2\), got \[1\]"):
        PointSetCoC(dims=(32, 64), depths=(1,))
    with pytest.raises(ValueError, match="num_samples"):
        PointSetCoC(num_classes=3)(torch.rand(2, 10, 3))  # fewer points than the 16 centers of stage 1


def test_parameter_counts_and_input_transform():
    # embed 3->64->64, stage blocks at 64 and 128 (mixer f/v/proj, MLP x2, two norms), 64->128 transition,
    # 128->1024 lift, 1024->512->256->40 head; the T-Net is PointNet's (803,081 parameters).
    vanilla = pointcoc.create_model("pointset_coc_vanilla")
    full = pointcoc.create_model("pointset_coc")
    assert sum(p.numel() for p in vanilla.parameters()) == 960_620
    assert sum(p.numel() for p in full.parameters()) - 960_620 == sum(
        p.numel() for p in full.transform.parameters()
    )
    assert vanilla.transform is None


def test_capture_clusters_reads_the_forward_assignments():
    torch.manual_seed(0)
    model = pointcoc.create_model("pointset_coc_vanilla", num_classes=4, heads=(2, 2)).eval()
    xyz = torch.rand(3, 64, 3)
    with torch.no_grad(), model.capture_clusters() as stages:
        out = model(xyz)
    assert sorted(stages) == [0, 1]
    for s, centers in enumerate(model.centers):
        stage = stages[s]
        assert stage.centers == centers and not stage.within_groups and stage.point_idx is None
        assert stage.groups.shape == (3, centers, 64 // centers)
        assert torch.equal(stage.anchor_idx, farthest_point_sample(xyz, centers))
        (block,) = stage.blocks
        assert block.assignment.shape == (3, 2, 64) and int(block.assignment.max()) < centers
    # The recorded stage-0 assignment is the one the mixer's own inputs give.
    mixer = model.stages[0][0].token_mixer
    feats = model.stages[0][0].norm1(model.transitions[0](model.embed(xyz)))
    f = mixer.split_heads(mixer.f(feats))
    centers = mixer.split_heads(gather_points(mixer.f(feats), stages[0].groups).mean(2))
    cosine = torch.nn.functional.cosine_similarity(f.unsqueeze(2), centers.unsqueeze(1), dim=-1)
    assert torch.equal(stages[0].blocks[0].assignment, cosine.argmax(-1).reshape(3, 2, 64))
    similarity = torch.sigmoid(mixer.sim_beta + mixer.sim_alpha * cosine.amax(-1)).reshape(3, 2, 64)
    torch.testing.assert_close(stages[0].blocks[0].similarity, similarity)
    # nothing is kept after the with, and capturing does not change the output
    assert mixer.last_result is None and not mixer.record_assignment
    with torch.no_grad():
        torch.testing.assert_close(model(xyz), out)
