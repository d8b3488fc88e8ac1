import itertools

import pytest
import torch

from pointcoc.data.point_transforms import CanonicalPose


@pytest.mark.parametrize("perm", list(itertools.permutations(range(3))))
def test_canonical_pose_undoes_axis_permutations_and_signs(perm):
    g = torch.Generator().manual_seed(0)
    shape = torch.randn(400, 3, generator=g) * torch.tensor([3.0, 1.0, 2.0])
    shape = shape**2 * shape.sign() + torch.tensor([0.5, -1.0, 2.0])  # skewed, off-centre
    ref = CanonicalPose()(shape)
    for signs in itertools.product((1.0, -1.0), repeat=3):
        posed = shape[:, list(perm)] * torch.tensor(signs)
        torch.testing.assert_close(CanonicalPose()(posed), ref)
    assert torch.all(ref.var(0)[:-1] >= ref.var(0)[1:]) and torch.all((ref**3).mean(0) > 0)


def test_canonical_pose_moves_normals_with_the_axes():
    pts = torch.randn(100, 6)
    out = CanonicalPose()(pts)
    assert out.shape == (100, 6)
    torch.testing.assert_close(out[:, 3:].norm(dim=1), pts[:, 3:].norm(dim=1))
