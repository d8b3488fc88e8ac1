"""Farthest point sampling as one Triton kernel: the fast CUDA path, with no extension to build.

Imported lazily by :mod:`pointcoc.ops.backends` (this module needs triton). One program per cloud runs
the sequential sample loop on the GPU, so a call is one kernel launch instead of the pure-torch loop's
half a dozen launches per sample. It reproduces the torch path's indices exactly: the same running
minimum of squared distances initialised to ``INITIAL_DISTANCE``, coordinates' squares added left to
right as the torch path's ``sum(-1)`` does, no fused multiply-add, and the first index among equal
maxima, as ``torch.argmax`` picks. On CPU tensors it runs only under Triton's interpreter
(``TRITON_INTERPRET=1`` set before triton is imported), which is how the CPU test suite checks it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .constants import INITIAL_DISTANCE

# A cloud whose padded [N, D] tile has at most this many elements stays in registers for the whole
# loop (pointmlp's 1024 x 3 points: 4096); larger clouds are swept in blocks of this size each sample.
_TILE_ELEMENTS = 8192


@triton.jit
def _squared_distance(tile, centroid, cols, D: tl.constexpr):
    """``sum_j (tile[:, j] - centroid[j])^2`` added in order j = 0, 1, ...

    Each column is picked out by a masked sum (one non-zero term, so exact in any order) and the columns
    are then added sequentially: ``tl.sum`` over the whole row would add in tree order, which rounds
    differently from the torch path for D >= 4.
    """
    diff = tile - centroid[None, :]
    sq = diff * diff
    total = tl.sum(tl.where(cols[None, :] == 0, sq, 0.0), 1)
    for j in tl.static_range(1, D):
        total += tl.sum(tl.where(cols[None, :] == j, sq, 0.0), 1)
    return total


@triton.jit
def _first_argmax(values, offsets, n):
    """Offset of the first maximum of ``values`` (padding lanes hold -1 and never win)."""
    best = tl.max(values, 0)
    return tl.min(tl.where(values == best, offsets, n), 0)


@triton.jit
def _load_tile(points_ptr, rows, n, cols, D: tl.constexpr, stride_n, stride_d):
    """Coordinates ``[len(rows), BLOCK_D]`` of the given points, zero beyond N and D."""
    mask = (rows < n)[:, None] & (cols < D)[None, :]
    return tl.load(points_ptr + rows[:, None] * stride_n + cols[None, :] * stride_d, mask=mask, other=0.0)


@triton.jit
def _fps_kernel(
    points_ptr,
    dist_ptr,
    idx_ptr,
    n,
    num_samples,
    stride_b,
    stride_n,
    stride_d,
    D: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    RESIDENT: tl.constexpr,
):
    batch = tl.program_id(0).to(tl.int64)
    points_ptr += batch * stride_b
    dist_ptr += batch * n
    idx_ptr += batch * num_samples
    cols = tl.arange(0, BLOCK_D)
    col_ok = cols < D
    offs = tl.arange(0, BLOCK_N)
    farthest = tl.full([], 0, tl.int32)
    if RESIDENT:
        tile = _load_tile(points_ptr, offs, n, cols, D, stride_n, stride_d)
        dist = tl.load(dist_ptr + offs, mask=offs < n, other=-1.0)
        for i in range(num_samples):
            tl.store(idx_ptr + i, farthest.to(tl.int64))
            centroid = tl.load(points_ptr + farthest * stride_n + cols * stride_d, mask=col_ok, other=0.0)
            dist = tl.minimum(dist, _squared_distance(tile, centroid, cols, D))
            farthest = _first_argmax(dist, offs, n)
    else:
        for i in range(num_samples):
            tl.store(idx_ptr + i, farthest.to(tl.int64))
            centroid = tl.load(points_ptr + farthest * stride_n + cols * stride_d, mask=col_ok, other=0.0)
            best = tl.full([], -1.0, dist_ptr.dtype.element_ty)
            best_idx = tl.full([], 0, tl.int32)
            for start in range(0, n, BLOCK_N):
                block = start + offs
                valid = block < n
                tile = _load_tile(points_ptr, block, n, cols, D, stride_n, stride_d)
                dist = tl.load(dist_ptr + block, mask=valid, other=-1.0)
                dist = tl.minimum(dist, _squared_distance(tile, centroid, cols, D))
                tl.store(dist_ptr + block, dist, mask=valid)
                block_idx = _first_argmax(dist, block, n)
                block_best = tl.max(dist, 0)
                # Strictly greater: on a tie the earlier block, hence the lower index, keeps the sample.
                better = block_best > best
                best = tl.where(better, block_best, best)
                best_idx = tl.where(better, block_idx, best_idx)
            farthest = best_idx


def launch_meta(n: int, d: int) -> dict[str, int | bool]:
    """The kernel's compile-time parameters for clouds of ``n`` points in ``d`` dimensions: the whole cloud
    stays in registers (``RESIDENT``) when its padded tile fits, otherwise it is swept in blocks."""
    block_d = triton.next_power_of_2(d)
    resident = triton.next_power_of_2(n) * block_d <= _TILE_ELEMENTS
    block_n = triton.next_power_of_2(n) if resident else max(_TILE_ELEMENTS // block_d, 16)
    return {
        "D": d,
        "BLOCK_D": block_d,
        "BLOCK_N": block_n,
        "RESIDENT": resident,
        "num_warps": max(1, min(16, block_n * block_d // 512)),
    }


# a fused a*a+b would round differently from torch's separate square and sum
_COMPILE_OPTIONS = {"enable_fp_fusion": False}


def farthest_point_sample_triton(
    points: torch.Tensor, num_samples: int, initial: torch.Tensor | None = None
) -> torch.Tensor:
    """Indices ``[B, num_samples]`` of an FPS of float32/float64 ``points [B, N, D]`` from point 0.

    ``initial`` ``[B, N]``: the running minimum to start from (default ``INITIAL_DISTANCE``; negative
    entries are never chosen, which is how pointnet2_ops' near-origin skip is expressed). Arguments are
    validated by :func:`pointcoc.ops.farthest_point_sample`, which dispatches here.
    """
    b, n, d = points.shape
    if initial is None:
        dist = torch.full((b, n), INITIAL_DISTANCE, dtype=points.dtype, device=points.device)
    else:
        dist = initial.to(points.dtype).clone()
    idx = torch.empty(b, num_samples, dtype=torch.long, device=points.device)
    _fps_kernel[(b,)](
        points.detach(), dist, idx, n, num_samples, *points.stride(), **launch_meta(n, d), **_COMPILE_OPTIONS
    )
    return idx


def compile_ahead(arch: int, dtype: torch.dtype, n: int, d: int, warp_size: int = 32) -> dict[str, object]:
    """Compile the kernel for CUDA compute capability ``arch`` (80: A100, 90: H100/H200) without a GPU, with
    the parameters a launch on ``[B, n, d]`` clouds of ``dtype`` uses; returns Triton's assembly stages
    (``ptx``, ``cubin``, ...). Codegen errors surface here, on any machine, instead of at the first launch.
    """
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    meta = launch_meta(n, d)
    num_warps = meta.pop("num_warps")
    element = {torch.float32: "fp32", torch.float64: "fp64"}[dtype]
    pointers = {"points_ptr": f"*{element}", "dist_ptr": f"*{element}", "idx_ptr": "*i64"}
    signature = {
        name: pointers.get(name, "constexpr" if name in meta else "i32") for name in _fps_kernel.arg_names
    }
    source = ASTSource(fn=_fps_kernel, signature=signature, constexprs=meta)
    target = GPUTarget("cuda", arch, warp_size)
    return triton.compile(source, target=target, options={"num_warps": num_warps, **_COMPILE_OPTIONS}).asm
