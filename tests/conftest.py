from __future__ import annotations

import json
import os
from pathlib import Path

# As in main.py: OpenMP threads that busy-wait collapse when other processes share the cores (measured at
# load average 7 on 2 cores: test_bench's point-model test took 52 s instead of 3.7 s). Must precede the
# first import of torch; the tests' subprocesses inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURES = SHARED / "fixtures" / "official"


def load_fixture(name: str) -> dict:
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"official fixture {path} is absent")
    # Our own trusted golden files; the project's checkpoint loading itself uses weights_only=True.
    return torch.load(path, weights_only=False)


def train_step(module: torch.nn.Module, x: torch.Tensor, grad_out: torch.Tensor, forward=None) -> tuple:
    """Output, input gradient and parameter gradients (by name) of one forward (``forward`` or the module)
    and backward of ``grad_out``."""
    module.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_()
    out = (forward or module)(x)
    out.backward(grad_out)
    return out.detach(), x.grad, {n: p.grad for n, p in module.named_parameters()}


def assert_mixer_route_is_the_official_graph(mixer, x: torch.Tensor, grad_out: torch.Tensor, routed=True):
    """A cluster mixer's training route (v and proj through the centers) must give the values and every
    gradient of the same mixer on the official graph (any other ``cluster_op`` takes it), in float64."""
    import functools

    from pointcoc.cluster import context_cluster

    assert mixer._through_centers(x.detach().requires_grad_()) == routed
    short = train_step(mixer, x, grad_out)
    mixer.cluster_op = functools.partial(context_cluster)  # not the operator itself: the official graph
    assert not mixer._through_centers(x.detach().requires_grad_())
    official = train_step(mixer, x, grad_out)
    mixer.cluster_op = context_cluster
    torch.testing.assert_close(short[:2], official[:2], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(short[2], official[2], rtol=1e-10, atol=1e-12)


@pytest.fixture(scope="session")
def official_variants() -> dict:
    path = FIXTURES / "variants.json"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return json.loads(path.read_text())["variants"]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
