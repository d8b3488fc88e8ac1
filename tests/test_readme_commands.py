"""The README's commands, as a user copies them into a shell (issue #15).

Every ```bash block of README.md is split into commands the way a shell splits them (line continuations
joined, comments dropped, ``&&`` chains cut) and run in order, twice: from a stand-in for the repository root
(a folder of links to this checkout, so nothing is written into it, beside a link to ``../shared``) and from
another directory, where the repository's paths are given from there (``python /repo/main.py ... --config
/repo/experiments/...``) and the outputs (``runs/...``) land in that directory.

- ``python main.py ...`` runs through ``main.main(argv)`` in this process. The cheap ones run as written:
  ``list``, ``info``, ``test``, ``visualize``, ``train --resume``. Training on the procedural shapes (the main
  job and the ``train --config`` commands) runs with ``--set train.epochs=1 data.kwargs.per_class=4``
  appended,
  and ``test`` with ``--set data.kwargs.per_class=4``, so each takes seconds. The ModelNet40 command of the
  CUDA section gets a small ModelNet40-layout folder for its placeholder ``DIR`` and is run until its first
  epoch starts (config, data, model and optimiser built): a full epoch of PointMLP-CoC is not a test.
- ``python -c ...`` runs in a subprocess.
- Installs (``pip``, ``conda``, ``apt-get``) and ``python -m pytest`` (this suite) are not run: the extras and
  files they name must exist. Commands naming a published checkpoint by tag (``--pretrained TAG``) download
  it, which these machines cannot: they are parsed and their tag looked up in the zoo, not run (loading a
  checkpoint file and the download itself are tested in tests/test_hub.py and tests/test_predict.py).
A command of any other kind fails the test until it is taught here.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import main
import pointcoc
import pointcoc.engine
from pointcoc.engine import trainer

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PROCEDURAL = ["train.epochs=1", "data.kwargs.per_class=4"]
REPO_PATHS = ("experiments/", "docs/", "../shared/", "main.py")


def readme_commands() -> list[list[str]]:
    """The commands of README.md's bash blocks, each as the words a shell passes on."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words:
                cut = words.index("&&") if "&&" in words else len(words)
                commands.append(words[:cut])
                words = words[cut + 1 :]
    return commands


class Started(BaseException):
    """The run's first epoch began."""


def _start_only(*args, **kwargs):
    raise Started


def write_modelnet40(folder: Path) -> Path:
    """ModelNet40's hdf5 layout, 40 classes of random clouds of 1024 points: the README's placeholder DIR."""
    folder.mkdir()
    (folder / "shape_names.txt").write_text("".join(f"class{c}\n" for c in range(40)))
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 10), ("test", 1)):
        (folder / f"{split}_files.txt").write_text(f"ply_data_{split}0.h5\n")
        with h5py.File(folder / f"ply_data_{split}0.h5", "w") as f:
            f["data"] = rng.normal(size=(40 * per_class, 1024, 3)).astype(np.float32)
            f["label"] = np.repeat(np.arange(40, dtype=np.uint8), per_class)[:, None]
    return folder


def stand_in_root(tmp_path: Path) -> Path:
    """``tmp/work/repo``: links to every entry of the checkout but ``runs`` and ``docs/img`` (written by the
    commands), beside ``tmp/work/shared`` (a link to ``../shared``, when there is one)."""
    repo = tmp_path / "work" / "repo"
    (repo / "docs" / "img").mkdir(parents=True)
    for entry in ROOT.iterdir():
        if entry.name not in ("runs", "docs", ".git"):
            (repo / entry.name).symlink_to(entry)
    for entry in (ROOT / "docs").iterdir():
        if entry.name != "img":
            (repo / "docs" / entry.name).symlink_to(entry)
    if SHARED.is_dir():
        (tmp_path / "work" / "shared").symlink_to(SHARED)
    return repo


def check_install(words: list[str]) -> None:
    """An install step: the extras and files it names exist."""
    if words[:2] == ["pip", "install"]:
        extras = {e for w in words if (m := re.fullmatch(r"\.\[(.*)\]", w)) for e in m.group(1).split(",")}
        declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        assert extras <= set(declared), f"README installs unknown extras {extras - set(declared)}"
    elif words[:3] == ["conda", "env", "create"]:
        assert (ROOT / words[words.index("-f") + 1]).is_file()


def run_main(args: list[str], monkeypatch, capsys, repo: Path, cwd: Path, placeholder: Path) -> str:
    """One ``python main.py ARGS`` (see the module docstring); returns what it printed."""
    if "DIR" in [a.split("=", 1)[-1] for a in args]:  # the CUDA section's ModelNet40 run: until it starts
        args = [a.replace("=DIR", f"={placeholder}") for a in args]
        monkeypatch.setattr(trainer, "train_one_epoch", _start_only)
        with pytest.raises(Started):
            main.main(args)
        monkeypatch.undo()
        monkeypatch.chdir(cwd)
        return capsys.readouterr().out
    if not args:  # the main job: its recipe, shortened
        load = pointcoc.engine.load_config
        monkeypatch.setattr(pointcoc.engine, "load_config", lambda path, sets=None: load(path, PROCEDURAL))
        monkeypatch.setattr(main, "ROOT", repo)
        monkeypatch.setattr(main, "DEFAULT_CONFIG", repo / main.DEFAULT_CONFIG.relative_to(ROOT))
    elif args[0] == "train" and "--config" in args:
        args = [*args, "--set", *PROCEDURAL]
    elif args[0] == "test":
        args = [*args, "--set", PROCEDURAL[1]]
    code = main.main(args)
    printed = capsys.readouterr()
    monkeypatch.undo()
    monkeypatch.chdir(cwd)
    assert code == 0, f"main.py {shlex.join(args)} failed: {printed.err}"
    return printed.out


def _needs_download(words: list[str]) -> bool:
    """A command naming a published checkpoint by zoo tag: its arguments parse and the tag exists."""
    if "--pretrained" not in words:
        return False
    tag = words[words.index("--pretrained") + 1]
    if Path(tag).exists():
        return False
    args = main.build_parser().parse_args(words[2:])
    if tag != "PATH":  # the placeholder of a checkpoint file the reader has
        name = tag if "." in tag else f"{args.model}.{tag}"
        assert pointcoc.list_pretrained(name), f"README names an unknown checkpoint {name!r}"
    return True


def run_readme(tmp_path: Path, monkeypatch, capsys, cwd: Path, repo: Path, placeholder: Path) -> list[str]:
    """Every README command from ``cwd``; repository paths given from there. Returns the commands run."""
    monkeypatch.chdir(cwd)
    done = []
    for words in readme_commands():
        if cwd != repo:
            words = [str(repo / w) if w.startswith(REPO_PATHS) else w for w in words]
        if words[0] in ("pip", "conda", "apt-get", "{") or words[:3] == ["python", "-m", "pytest"]:
            check_install(words)
            continue
        if words[0] == "python" and words[1].endswith("main.py") and _needs_download(words):
            continue
        if words[0] == "python" and words[1].endswith("main.py"):
            if (
                any(w.startswith(str(SHARED)) or w.startswith("../shared") for w in words)
                and not SHARED.is_dir()
            ):
                continue  # reported by the skip in the test below
            run_main(words[2:], monkeypatch, capsys, repo, cwd, placeholder)
        elif words[:2] == ["python", "-c"]:
            env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
            subprocess.run([sys.executable, "-c", words[2]], cwd=cwd, env=env, check=True)
        else:
            pytest.fail(f"README command of an unknown kind: {shlex.join(words)}")
        done.append(shlex.join(words))
    return done


@pytest.mark.slow
def test_readme_commands_run_from_the_repository_root_and_from_another_directory(
    tmp_path, monkeypatch, capsys
):
    repo = stand_in_root(tmp_path)
    placeholder = write_modelnet40(tmp_path / "modelnet40_ply_hdf5_2048")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ran = run_readme(tmp_path, monkeypatch, capsys, repo, repo, placeholder)
    assert (repo / "runs" / "demo-test" / "metrics.json").is_file() and (
        repo / "runs" / "viz" / "table.html"
    ).is_file()
    again = run_readme(tmp_path, monkeypatch, capsys, elsewhere, repo, placeholder)
    assert len(again) == len(ran) >= 10 and (elsewhere / "runs" / "demo-test" / "metrics.json").is_file()
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: the README commands reading it were not run")
