import pytest

from pointcoc.engine.config import DEFAULTS, differences, load_config, parse_overrides, parse_value


def test_values_are_typed():
    assert parse_value("3") == 3 and isinstance(parse_value("3"), int)
    assert parse_value("1e-3") == pytest.approx(1e-3)  # YAML 1.1 would leave this a string
    assert parse_value("0.5") == 0.5
    assert parse_value("true") is True and parse_value("null") is None and parse_value("") is None
    assert parse_value("[8, 8, 16]") == [8, 8, 16]
    assert parse_value("{a: 1}") == {"a": 1}
    assert parse_value("pointmlp_coc") == "pointmlp_coc"


def test_overrides_use_dotted_keys_and_win_over_the_file(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train: {lr: 0.5, epochs: 7}\nmodel: {name: pointmlp, kwargs: {embed_dim: 16}}\n")
    config = load_config(recipe, ["train.lr=2e-3", "model.kwargs.k_neighbors=[4,4,4,4]", "seed=9"])
    assert config["train"]["lr"] == pytest.approx(2e-3) and config["train"]["epochs"] == 7
    assert config["model"] == {"name": "pointmlp", "kwargs": {"embed_dim": 16, "k_neighbors": [4, 4, 4, 4]}}
    assert config["seed"] == 9 and config["data"]["name"] == DEFAULTS["data"]["name"]
    assert DEFAULTS["train"]["lr"] == 0.1  # defaults are not mutated


def test_unknown_keys_and_malformed_overrides_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown config key 'train.lrr'"):
        load_config(None, ["train.lrr=1"])
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["train.lr"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("trian: {lr: 1}\n")
    with pytest.raises(ValueError, match="unknown config key 'trian'"):
        load_config(bad)


def test_differences_name_the_keys():
    a = load_config(None, [])
    b = load_config(None, ["model.name=pointmlp", "runtime.threads=2"])
    assert differences(a, b, ignore=("runtime",)) == ["model.name: 'pointmlp_coc_elite' -> 'pointmlp'"]


def test_shipped_recipes_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "experiments"
    recipes = (
        sorted(root.glob("configs/*.yaml"))
        + sorted(root.glob("modelnet10/*.yaml"))
        + sorted(root.glob("mnist/*.yaml"))
    )
    assert len(recipes) >= 7
    for path in recipes:
        load_config(path)
    mn40 = load_config(root / "configs" / "modelnet40.yaml")["train"]
    assert (mn40["lr"], mn40["weight_decay"], mn40["epochs"], mn40["min_lr"]) == (0.1, 2e-4, 300, 0.005)


def test_grad_checkpointing_is_switched_on_or_refused():
    from types import SimpleNamespace

    from pointcoc.engine.config import load_config
    from pointcoc.engine.trainer import build_model

    images = SimpleNamespace(is_points=False, classes=["a", "b"])
    config = load_config(None, ["model.name=coc_tiny", "runtime.grad_checkpointing=true"])
    assert build_model(config, len(images.classes), images.is_points).grad_checkpointing
    points = SimpleNamespace(is_points=True, classes=["a", "b"])
    config = load_config(None, ["model.name=pointmlp_elite", "runtime.grad_checkpointing=true"])
    with pytest.raises(ValueError, match="runtime.grad_checkpointing: pointmlp_elite does not support it"):
        build_model(config, len(points.classes), points.is_points)
