"""The Triton FPS kernel compiles ahead of time for the GPUs we target (sm_80, sm_90), on a machine without
one: every branch (register-resident and swept clouds), float32 and float64, 3-D points and 5-D image points,
so a codegen error surfaces in CI rather than in a GPU session."""

from __future__ import annotations

import importlib.util

import pytest
import torch

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")

# (points, dims): pointmlp's 1024 x 3 clouds stay in registers; 8192-point clouds and 5-D points at 2048
# exceed the tile and are swept in blocks
SHAPES = [(1024, 3), (8192, 3), (512, 5), (2048, 5)]


@pytest.mark.parametrize("arch", [80, 90])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,d", SHAPES)
def test_fps_kernel_compiles_for_gpu(arch, dtype, n, d):
    from pointcoc.ops.triton_fps import compile_ahead

    asm = compile_ahead(arch, dtype, n, d)
    ptx = asm["ptx"]
    assert f".target sm_{arch}" in ptx
    assert isinstance(asm["cubin"], bytes) and len(asm["cubin"]) > 1000
    element = "f32" if dtype == torch.float32 else "f64"
    assert "ld.global" in ptx and element in ptx
    assert "fma.rn" not in ptx  # no fused multiply-add: indices must match the torch path bit for bit


def test_both_kernel_branches_are_covered():
    from pointcoc.ops.triton_fps import launch_meta

    assert {launch_meta(n, d)["RESIDENT"] for n, d in SHAPES} == {True, False}
