"""Farthest point sampling (FPS)."""

from __future__ import annotations

import math

import torch

from ..utils.checks import check_count, check_point_set
from .backends import fps_backend, pytorch3d_ops, triton_fps
from .constants import INITIAL_DISTANCE

# pointnet2_ops never picks a point with |p|^2 <= this (a float32 |p|^2 compared with a C double literal).
NEAR_ORIGIN = 1e-3
# pointnet2_ops runs one CUDA block of min(2^floor(log2 N), 512) threads per cloud (opt_n_threads).
KERNEL_MAX_THREADS = 512


# torch.compile would unroll the sample loop num_samples times (minutes of tracing at 512 samples); the
# indices carry no gradient, so running FPS eagerly between compiled graphs costs only a graph split.
@torch.compiler.disable
def farthest_point_sample(
    points: torch.Tensor, num_samples: int, backend: str = "auto", skip_near_origin: bool = False
) -> torch.Tensor:
    """Indices ``[B, num_samples]`` of an FPS of ``points [B, N, D]``, starting at point 0.

    By default: the official pure-torch fallback with its start fixed at 0 (a running minimum of squared
    distances initialised to 1e10, the next sample being its first argmax). Works for any D (images are
    5-D point sets).

    ``skip_near_origin=True`` reproduces the CUDA kernel the official point models trained and were
    evaluated with (pointnet2_ops ``furthest_point_sample``), see :func:`_fps_pointnet2`: points with
    ``|p|^2 <= 1e-3`` are never chosen after the first sample, and equal distances are resolved in the
    kernel's thread order instead of by the lowest index. 3-D points only, computed in float32 as the kernel.

    ``backend``: ``"auto"`` (Triton on float32/float64 CUDA tensors when triton imports, else pytorch3d
    when it imports, else torch), or ``"torch"``, ``"pytorch3d"``, ``"triton"`` to force one; all three
    return the same indices. pytorch3d has no skip; with ``skip_near_origin`` ``"auto"`` uses Triton or torch.
    """
    check_point_set("points", points)
    check_count("num_samples", num_samples, points.shape[1], "points")
    if skip_near_origin:
        return _fps_pointnet2(points, num_samples, backend)
    chosen = fps_backend(backend, points)
    if chosen == "triton":
        return triton_fps().farthest_point_sample_triton(points, num_samples)
    if chosen == "pytorch3d":
        _, idx = pytorch3d_ops().sample_farthest_points(points, K=num_samples, random_start_point=False)
        return idx
    return _fps_torch(points, num_samples)


def kernel_order(n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The N point indices in the order in which pointnet2_ops' kernel prefers them among equal distances.

    Thread ``t`` of the block scans points ``t, t + T, t + 2T, ...`` keeping the first strict maximum; the
    shared-memory tree then halves the slots (``t`` against ``t + T/2``, ... , ``t`` against ``t + 1``),
    keeping slot ``t`` on a tie. So among tied threads the one whose id, read with its bits reversed, is
    smallest wins; within a thread the earliest point. Sorting by that key lets a plain first-argmax
    reproduce the kernel.
    """
    threads = max(min(1 << int(math.log(n) / math.log(2.0)), KERNEL_MAX_THREADS), 1)
    bits = threads.bit_length() - 1
    k = torch.arange(n)
    tid = k % threads
    reversed_tid = torch.zeros_like(tid)
    for bit in range(bits):
        reversed_tid |= ((tid >> bit) & 1) << (bits - 1 - bit)
    key = reversed_tid * ((n + threads - 1) // threads) + k // threads
    return torch.argsort(key).to(device)


def _fps_pointnet2(points: torch.Tensor, num_samples: int, backend: str) -> torch.Tensor:
    """pointnet2_ops' ``furthest_point_sampling_kernel`` (sampling_gpu.cu), decision for decision.

    The kernel starts at index 0 and keeps ``temp`` (initial 1e10) of float32 squared distances; a point
    with float32 ``x*x + y*y + z*z <= 1e-3`` (compared as a double) is skipped: never updated, never chosen
    (if every point is skipped, index 0 is returned again). Here skipped points hold a running minimum of
    -1, below any distance, and the cloud is permuted into :func:`kernel_order` so that the first argmax
    is the kernel's tie-break; the indices are mapped back. Squares are summed left to right without fused
    multiply-adds, as written in the kernel (nvcc's default contraction could round the last bit
    differently; that is not reproducible without the compiled extension).
    """
    if points.shape[-1] != 3:
        raise ValueError(
            f"skip_near_origin reproduces pointnet2_ops' 3-D kernel; points must be [B, N, 3], "
            f"got {list(points.shape)}"
        )
    if backend == "pytorch3d":
        raise ValueError("backend='pytorch3d' has no skip_near_origin; use 'auto', 'torch' or 'triton'")
    use_triton = fps_backend(backend, points) == "triton"  # "auto" may say pytorch3d: torch instead
    order = kernel_order(points.shape[1], points.device)
    pts = points.detach().float()[:, order].contiguous()
    squares = pts * pts
    magnitude = squares[..., 0] + squares[..., 1] + squares[..., 2]
    initial = torch.where(magnitude.double() <= NEAR_ORIGIN, -1.0, INITIAL_DISTANCE).float()
    if use_triton:
        idx = triton_fps().farthest_point_sample_triton(pts, num_samples, initial)
    else:
        idx = _fps_torch(pts, num_samples, initial)
    return order[idx]


def _fps_torch(points: torch.Tensor, num_samples: int, initial: torch.Tensor | None = None) -> torch.Tensor:
    b, n, d = points.shape
    # The loop is sequential by nature, so its cost is kernels per sample: six here, each writing into a
    # buffer allocated once, with no host sync. The coordinates are kept as planes [B, D, N]: summing the
    # squares over the middle dimension adds whole planes (vectorised, 3.5x faster on CPU than summing
    # [B, N, 3] rows) in the same left-to-right order, so the distances are bitwise the same.
    pts = points.detach()
    planes = pts.transpose(1, 2).contiguous()
    order = torch.zeros(num_samples, b, dtype=torch.long, device=pts.device)  # row i: the i-th samples
    if initial is None:
        min_dist = torch.full((b, n), INITIAL_DISTANCE, dtype=pts.dtype, device=pts.device)
    else:
        min_dist = initial.to(pts.dtype).clone()
    dist = torch.empty_like(min_dist)
    diff = torch.empty_like(planes)
    centroid = torch.empty(b, d, 1, dtype=pts.dtype, device=pts.device)
    for i in range(num_samples - 1):
        torch.gather(planes, 2, order[i].view(b, 1, 1).expand(b, d, 1), out=centroid)
        torch.sub(planes, centroid, out=diff)
        diff.mul_(diff)
        torch.sum(diff, 1, out=dist)
        torch.minimum(min_dist, dist, out=min_dist)
        torch.argmax(min_dist, -1, out=order[i + 1])
    return order.t().contiguous()
