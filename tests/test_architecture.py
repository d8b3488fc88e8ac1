"""The package's layers (docs/architecture.md): every module of ``pointcoc`` imports only from its own package
and the layers below it, function-level imports included; no model family imports another; the point-set ops
import one another without a circle. Read from the source (ast), so nothing is imported and a lazy upward
import is caught too."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import pointcoc

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(pointcoc.__file__).resolve().parent

# Layer of each subpackage of pointcoc, lowest first; a module may import its own package and any package of
# a lower layer. compat (official constructors and checkpoints for our models) sits beside data: both use at
# most the models. hub (published weights: zoo, downloads, models built with them) uses compat, data and the
# models; the engine, which may start from published weights, sits above it. The root ``pointcoc``
# re-exports hub's ``create_model``, so importing it counts as importing ``hub``.
LAYERS: dict[str, int] = {
    "utils": 0,
    "ops": 1,
    "cluster": 1,
    "layers": 2,
    "models": 3,
    "compat": 4,
    "data": 4,
    "hub": 5,
    "engine": 6,
    "viz": 7,
}
ROOT_LAYER = LAYERS["hub"]


def modules(path: Path = PACKAGE, prefix: str = "pointcoc.") -> Iterator[tuple[str, Path, bool]]:
    """(dotted name, file, is a package) of every module under ``path``, found without importing any."""
    for info in pkgutil.iter_modules([str(path)], prefix):
        leaf = info.name.rsplit(".", 1)[-1]
        if info.ispkg:
            yield info.name, path / leaf / "__init__.py", True
            yield from modules(path / leaf, info.name + ".")
        else:
            yield info.name, path / f"{leaf}.py", False


ALL = list(modules())
KNOWN = {name for name, _, _ in ALL} | {"pointcoc"}


def imported(name: str, file: Path, is_package: bool) -> set[str]:
    """Absolute names of the pointcoc modules (or packages) that ``file`` imports anywhere in it, relative
    imports resolved."""
    package = name if is_package else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # `from pkg import sub` may name a submodule: keep both, unknown names are filtered below
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif _is_import_module_call(node):
            found.add(node.args[0].value)
    return {m for m in found if m in KNOWN and m != name}


def _is_import_module_call(node: ast.AST) -> bool:
    """``importlib.import_module("pointcoc....")``: a lazy import by name (the ops' optional kernels)."""
    return (
        isinstance(node, ast.Call)
        and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Constant)
        and str(node.args[0].value).startswith("pointcoc")
    )


def layer(module: str) -> tuple[str, int]:
    """(package, layer) of a pointcoc module; the root package counts as the hub it re-exports."""
    parts = module.split(".")
    if len(parts) == 1:
        return "pointcoc", ROOT_LAYER
    if parts[1] not in LAYERS:
        pytest.fail(
            f"{module} belongs to no layer: add its package to LAYERS here and to docs/architecture.md"
        )
    return parts[1], LAYERS[parts[1]]


def test_every_subpackage_has_a_layer():
    packages = {name.split(".")[1] for name, _, _ in ALL}
    assert packages == set(LAYERS), "update LAYERS and docs/architecture.md"


@pytest.mark.parametrize("package", list(LAYERS))
def test_package_imports_only_its_own_and_lower_layers(package):
    upward = []
    for name, file, is_package in ALL:
        if name.split(".")[1] != package:
            continue
        own = LAYERS[package]
        for target in sorted(imported(name, file, is_package)):
            target_package, target_layer = layer(target)
            if target_package != package and target_layer >= own:
                upward.append(f"{name} imports {target} (layer {target_layer} >= {own})")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_model_file_imports_another():
    families = {name: (file, pkg) for name, file, pkg in ALL if "@register_model" in file.read_text()}
    assert len(families) >= 4 and all(name.startswith("pointcoc.models.") for name in families)
    crossing = {
        name: sorted(imported(name, file, pkg) & set(families)) for name, (file, pkg) in families.items()
    }
    assert not any(crossing.values()), crossing


def test_engine_import_loads_no_viz_module():
    code = "import pointcoc.engine, sys; assert not any(m.startswith('pointcoc.viz') for m in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (module -> modules it imports), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_ops_modules_import_one_another_without_a_circle():
    # a lazy import still runs on first use, so function-level imports count here too
    ops = {name: (file, pkg) for name, file, pkg in ALL if name.startswith("pointcoc.ops.")}
    graph = {name: imported(name, file, pkg) & set(ops) for name, (file, pkg) in ops.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_import_reader_sees_relative_lazy_and_by_name_imports(tmp_path):
    source = tmp_path / "fake.py"
    source.write_text(
        "import torch\nfrom ..utils import checks\nfrom . import trainer\n"
        "def later():\n    from ..viz.tensorboard import ClusterPictures\n"
        "    importlib.import_module('pointcoc.ops.triton_fps')\n"
    )
    found = imported("pointcoc.engine.fake", source, is_package=False)
    assert found == {
        "pointcoc.utils", "pointcoc.utils.checks", "pointcoc.engine", "pointcoc.engine.trainer",
        "pointcoc.viz.tensorboard", "pointcoc.ops.triton_fps",
    }  # fmt: skip
    assert layer("pointcoc.viz.tensorboard") == ("viz", 7) and layer("pointcoc") == ("pointcoc", 5)


def test_cycle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
