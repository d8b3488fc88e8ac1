import re

import pytest

from pointcoc.engine.config import RunConfig, differences, load_config, parse_overrides, parse_value


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
    assert config.train.lr == pytest.approx(2e-3) and config.train.epochs == 7
    assert config.to_dict()["model"] == {
        "name": "pointmlp",
        "kwargs": {"embed_dim": 16, "k_neighbors": [4, 4, 4, 4]},
    }
    assert config.seed == 9 and config.data.name == RunConfig().data.name
    assert RunConfig().train.lr == 0.1 and RunConfig().model.kwargs == {}  # defaults are not mutated


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
    a = load_config(None, []).to_dict()
    b = load_config(None, ["model.name=pointmlp", "runtime.threads=2"]).to_dict()
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
    mn40 = load_config(root / "configs" / "modelnet40.yaml").train
    assert (mn40.lr, mn40.weight_decay, mn40.epochs, mn40.min_lr) == (0.1, 2e-4, 300, 0.005)


def test_grad_checkpointing_is_switched_on_or_refused():
    from pointcoc.engine.build import build_model

    config = load_config(None, ["model.name=coc_tiny", "runtime.grad_checkpointing=true"])
    assert build_model(config, 2, "image").grad_checkpointing
    config = load_config(None, ["model.name=pointmlp_elite", "runtime.grad_checkpointing=true"])
    with pytest.raises(ValueError, match="runtime.grad_checkpointing: pointmlp_elite does not support it"):
        build_model(config, 2, "points")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("train.lr=abc", "train.lr: expected a number, got 'abc'"),
        ("train.epochs=2.5", "train.epochs: expected an integer, got 2.5"),
        ("seed=abc", "seed: expected an integer, got 'abc'"),
        ("runtime.compile=1", "runtime.compile: expected true or false, got 1"),
        ("train.grad_clip=high", "train.grad_clip: expected a number or null, got 'high'"),
        ("train.optimizer=adam", "train.optimizer: expected one of 'sgd', 'adamw', got 'adam'"),
        ("train.amp=fp32", "train.amp: expected one of 'bf16', 'fp16' or null, got 'fp32'"),
        ("train.betas=[0.9]", "train.betas: expected a list of 2 values, each a number, got [0.9]"),
        ("data.kwargs=3", "data.kwargs: expected a mapping, got 3"),
        ("data.root=7", "data.root: expected a string or null, got 7"),
        ("train.eval_every=0", "train.eval_every: expected at least 1, got 0"),
        ("data.val_fraction=1.5", "data.val_fraction: expected in [0, 1), got 1.5"),
        ("device=gpu", "device: expected auto, cpu, cuda or cuda:N, got 'gpu'"),
        ("data.image_recipe={imgsize: 8}", "data.image_recipe: unknown key 'imgsize'"),
    ],
)
def test_values_are_checked_once_at_load_naming_the_key(setting, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        load_config(None, [setting])


def test_values_are_converted_once_at_load(tmp_path):
    recipe = tmp_path / "r.yaml"
    # YAML 1.1 reads 1e-3 (no dot) as a string and 2 as an int: both become the float the key wants
    recipe.write_text("train: {lr: 1e-3, min_lr: 0, epochs: 4.0, betas: [0, 0.5]}\n")
    config = load_config(recipe, ["train.amp=bf16", "data.split=null"])
    train = config.train
    assert (train.lr, train.min_lr, train.epochs, train.betas) == (1e-3, 0.0, 4, (0.0, 0.5))
    assert isinstance(train.min_lr, float) and isinstance(train.epochs, int) and train.amp == "bf16"
    assert config.data.split is None
    with pytest.raises(Exception, match="cannot assign"):  # frozen: converted once, never edited in place
        config.train.lr = 1.0  # type: ignore[misc]


def test_to_dict_round_trips_and_keeps_the_yaml_form(tmp_path):
    import yaml

    from pointcoc.engine.config import save_config

    config = load_config(None, ["train.betas=[0.8, 0.9]", "model.kwargs={k_neighbors: [8, 8]}"])
    data = config.to_dict()
    assert list(data) == ["seed", "device", "model", "data", "train", "runtime", "log"]
    assert data["train"]["betas"] == [0.8, 0.9] and RunConfig.from_dict(data) == config
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == data
    # a config saved before a key existed gets its default; a key the engine does not know is refused
    del data["log"], data["runtime"]["grad_checkpointing"]
    assert RunConfig.from_dict(data) == config
    with pytest.raises(ValueError, match="^old.pt: unknown config key 'train.warmup'"):
        RunConfig.from_dict({"train": {"warmup": 1}}, source="old.pt")
