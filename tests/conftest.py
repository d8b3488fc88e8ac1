from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

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
