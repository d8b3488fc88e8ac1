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


@pytest.fixture(scope="session")
def official_variants() -> dict:
    path = FIXTURES / "variants.json"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return json.loads(path.read_text())["variants"]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
