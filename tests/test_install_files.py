"""The install files say what the README promises: a CUDA conda environment that resolves to a current
torch (no retired channels, no pytorch-cuda pin, no test-only extras), with pyproject.toml's torch floor."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _torch_requirement(requirements: list[str]) -> str:
    found = [r for r in requirements if re.match(r"torch\b", r.replace(" ", ""))]
    assert len(found) == 1, f"expected one torch requirement, got {found}"
    return found[0].split("#")[0].replace(" ", "")


def test_environment_yml_resolves_to_a_current_cuda_torch():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"][0] == "conda-forge"
    assert not {"pytorch", "nvidia", "defaults"} & set(env["channels"]), env["channels"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert not any(d.split("=")[0].split(">")[0] in ("pytorch", "pytorch-cuda", "cudatoolkit") for d in conda)
    assert "pip" in conda
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip and not any("[" in p and ("dev" in p or "test" in p) for p in pip), pip
    assert not any(p.startswith("triton") for p in pip)

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert _torch_requirement(pip) == _torch_requirement(project["dependencies"])


def test_readme_says_how_a_cuda_user_installs():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## On a CUDA machine", 1)
    assert len(section) == 2, "README lacks the 'On a CUDA machine' section"
    body = section[1].split("\n## ", 1)[0]
    assert "conda env create -f environment.yml" in body and "conda activate pointcoc" in body
