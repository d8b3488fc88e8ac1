"""``farthest_point_sample(..., skip_near_origin=True)`` against a plain-Python transcription of
pointnet2_ops' CUDA kernel (``reference.farthest_point_sample_pointnet2_kernel``) and hand-worked clouds."""

from __future__ import annotations

import pytest
import torch

import pointcoc
from pointcoc.compat import official_model
from pointcoc.ops import farthest_point_sample
from pointcoc.ops.reference import farthest_point_sample_pointnet2_kernel as kernel
from pointcoc.ops.sampling import kernel_order


def skip(points: torch.Tensor, s: int) -> torch.Tensor:
    return farthest_point_sample(points, s, backend="torch", skip_near_origin=True)


def test_near_origin_point_is_never_chosen():
    # Seen from point 0, the point at 0.01 on the x axis is farthest (0.98): pointnet2_ops skips it.
    cloud = torch.tensor([[[1.0, 0, 0], [0.5, 0, 0], [0.8, 0.3, 0], [0.01, 0, 0], [0.3, 0, 0]]])
    assert farthest_point_sample(cloud, 3, backend="torch").tolist() == [[0, 3, 1]]
    assert skip(cloud, 3).tolist() == [[0, 4, 2]] == kernel(cloud, 3).tolist()


def test_threshold_compares_a_float_with_a_double():
    # float32 |p|^2 of this point is float32(1e-3) = 0.00100000005 > 1e-3 (double): the kernel keeps it;
    # a comparison in float32 would drop it.
    near = torch.tensor([0.03, 0.0100000035, 0.0])
    magnitude = near[0] * near[0] + near[1] * near[1] + near[2] * near[2]
    assert magnitude == torch.tensor(1e-3) and float(magnitude) > 1e-3
    cloud = torch.stack([torch.tensor([0.2, 0.0, 0.0]), torch.tensor([0.15, 0.0, 0.0]), near])[None]
    assert skip(cloud, 2).tolist() == [[0, 2]] == kernel(cloud, 2).tolist()
    inside = cloud.clone()
    inside[0, 2, 1] = 0.0099999  # just below: skipped
    assert skip(inside, 2).tolist() == [[0, 1]] == kernel(inside, 2).tolist()


def test_ties_follow_the_kernel_thread_order():
    # 8 points, 8 threads of one point each; points 1..7 coincide, so all are equally far from point 0.
    # The tree reduction keeps the lower slot on ties: the winner is the thread whose id has the smallest
    # bit-reversed value among the tied ones, 4 (100 -> 001); then every distance is 0 and thread 0 wins.
    cloud = torch.tensor([[[1.0, 0, 0]] + [[-1.0, 0, 0]] * 7])
    assert farthest_point_sample(cloud, 3, backend="torch").tolist() == [[0, 1, 0]]
    assert skip(cloud, 3).tolist() == [[0, 4, 0]] == kernel(cloud, 3).tolist()


def test_kernel_order_of_a_strided_block():
    # N = 12 runs 8 threads: thread t owns points t and t + 8; bit-reversed thread ids 0,4,2,6,1,5,3,7.
    assert kernel_order(12).tolist() == [0, 8, 4, 2, 10, 6, 1, 9, 5, 3, 11, 7]


def test_all_points_near_origin_repeat_index_zero():
    cloud = torch.rand(2, 10, 3) * 0.01
    assert skip(cloud, 4).tolist() == [[0] * 4] * 2 == kernel(cloud, 4).tolist()


@pytest.mark.parametrize("n,s", [(7, 7), (33, 20), (100, 50), (600, 12)])
def test_matches_kernel_transcription_on_clouds_with_near_origin_points(n, s):
    g = torch.Generator().manual_seed(n)
    cloud = torch.rand(3, n, 3, generator=g) * 2 - 1
    near = torch.rand(3, n, generator=g) < 0.2
    cloud[near] *= 0.02  # |p| <= 0.035: most of these are skipped, a few sit just outside the threshold
    cloud[1, 0] = 0.001  # the start itself near the origin
    cloud[2, : n // 2] = cloud[2, n // 2 : 2 * (n // 2)]  # duplicates: ties among distinct indices
    got = skip(cloud, s)
    assert torch.equal(got, kernel(cloud, s))
    skipped = (cloud.double() ** 2).sum(-1) <= 1e-3
    assert skipped[0].any() and not skipped[0].gather(0, got[0, 1:]).any()


def test_rejects_what_the_kernel_cannot_do():
    with pytest.raises(ValueError, match=r"3-D kernel; points must be \[B, N, 3\]"):
        farthest_point_sample(torch.rand(1, 8, 5), 2, skip_near_origin=True)
    with pytest.raises(ValueError, match="'pytorch3d' has no skip_near_origin"):
        farthest_point_sample(torch.rand(1, 8, 3), 2, backend="pytorch3d", skip_near_origin=True)


def test_model_switch_is_recorded_and_official_builders_turn_it_on():
    xyz = torch.rand(2, 64, 3) * 2 - 1
    xyz[:, 5:20] *= 0.01
    kw = dict(num_points=64, embed_dim=8, k_neighbors=(4, 4, 4, 4), pre_blocks=(1,) * 4, pos_blocks=(1,) * 4)
    model = pointcoc.create_model("pointmlp", num_classes=5, fps_skip_near_origin=True, **kw)
    assert model.config["fps_skip_near_origin"] is True
    with model.eval().capture_clusters() as stages:
        model(xyz)
    assert torch.equal(stages[0].anchor_idx, skip(xyz, 32))
    official = official_model("classification_ScanObjectNN.models.pointmlp.Model", {"class_num": 15})
    assert official.config["fps_skip_near_origin"] is True
    assert pointcoc.create_model("pointmlp").config["fps_skip_near_origin"] is False
