import copy
import json
import pickle

import pytest
import torch
from test_engine_helpers import tiny_point_config

import main
from pointcoc.engine import checkpoint as ckpt
from pointcoc.engine import evaluate_checkpoint, load_trained_model, train
from pointcoc.engine.checkpoint import load_checkpoint, save_atomic


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint_last.pt"
    good = {"model": {"w": torch.ones(3)}, "config": {}, "epoch": 1}
    save_atomic(good, path)
    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.seek(0)
        f.truncate(10)  # half-written file, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"model": {"w": torch.zeros(3)}, "config": {}, "epoch": 2}, path)
    state = load_checkpoint(path)
    assert state["epoch"] == 1 and torch.equal(state["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_last.pt"]  # no temporary left behind


class RunsCode:
    def __reduce__(self):
        return (exec, ("open(__import__('os').environ['POINTCOC_MARKER'], 'w').write('ran')",))


def test_pickle_that_would_run_code_is_refused(tmp_path, monkeypatch):
    marker = tmp_path / "marker"
    monkeypatch.setenv("POINTCOC_MARKER", str(marker))
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"model": RunsCode(), "config": {}}, f, protocol=2)
    with pytest.raises(ValueError, match="was refused: it holds") as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value) and not marker.exists()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(tiny_point_config("train.epochs=1"), out)
    return out


def test_checkpoint_of_another_model_is_refused_naming_the_difference(trained_run, tmp_path, capsys):
    other = tiny_point_config("train.epochs=1", "model.name=pointmlp_coc_elite")
    with pytest.raises(ValueError, match=r"model\.name: 'pointmlp_elite' -> 'pointmlp_coc_elite'"):
        evaluate_checkpoint(other, trained_run / "checkpoint_best.pt", tmp_path)
    # through the command line: one line on stderr, exit status 2
    (tmp_path / "c.yaml").write_text("{}")
    code = main.main(["test", "--config", str(tmp_path / "c.yaml"), "--checkpoint",
                      str(trained_run / "checkpoint_best.pt"), "--out", str(tmp_path / "t")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err and "model.name" in err


def test_resume_with_another_config_is_refused(trained_run):
    with pytest.raises(ValueError, match=r"train\.lr: 0\.003 -> 0\.01"):
        train(tiny_point_config("train.epochs=1", "train.lr=0.01"), trained_run, resume=True)
    with pytest.raises(ValueError, match="already holds a run"):
        train(tiny_point_config("train.epochs=1"), trained_run)


def test_test_command_writes_plain_and_voted_metrics(trained_run, tmp_path):
    metrics = evaluate_checkpoint(
        tiny_point_config("train.epochs=1"), trained_run / "checkpoint_best.pt", tmp_path, votes=3
    )
    saved = json.loads((tmp_path / "metrics.json").read_text())
    for split in ("test", "test_votes"):
        assert set(saved[split]) == {"oa", "macc", "per_class"} and 0 <= saved[split]["oa"] <= 1
    assert saved["test"] == metrics["test"]
    with pytest.raises(ValueError, match="pass --overwrite"):
        evaluate_checkpoint(tiny_point_config("train.epochs=1"), trained_run / "checkpoint_best.pt", tmp_path)
    again = evaluate_checkpoint(
        tiny_point_config("train.epochs=1"), trained_run / "checkpoint_best.pt", tmp_path, 3, overwrite=True
    )
    assert again["test_votes"] == metrics["test_votes"]  # fixed seed: the same views every time


def test_checkpoints_hold_the_run_model_interface(trained_run):
    from pointcoc.models import ModelCfg

    state = load_checkpoint(trained_run / "checkpoint_best.pt")
    cfg = ModelCfg.from_dict(state["model_cfg"])
    assert (cfg.architecture, cfg.input_kind, cfg.num_classes, cfg.input_size) == (
        "pointmlp_elite", "points", 3, (64, 3)
    )  # fmt: skip
    assert state["config"] == tiny_point_config("train.epochs=1").to_dict()  # the YAML form, not objects


def old_format(state: dict) -> dict:
    """``state`` as the first engine wrote it: no model_cfg; a config without the keys added since
    (``log``, ``runtime.grad_checkpointing``) and with ``lr`` as YAML 1.1 left ``3e-3`` (a string)."""
    old = {k: v for k, v in state.items() if k != "model_cfg"}
    config = copy.deepcopy(state["config"])
    del config["log"], config["runtime"]["grad_checkpointing"]
    config["train"]["lr"] = "3e-3"
    return {**old, "config": config}


def test_checkpoints_written_before_model_cfg_still_load(trained_run, tmp_path):
    new = trained_run / "checkpoint_best.pt"
    old = tmp_path / "old.pt"
    save_atomic(old_format(load_checkpoint(new)), old)
    a, b = load_trained_model(new), load_trained_model(old)
    assert b.model_cfg == a.model_cfg and b.config == a.config and b.classes == a.classes
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    assert not b.model.training
    config = tiny_point_config("train.epochs=1")
    assert (
        evaluate_checkpoint(config, old, tmp_path / "t")["test"]
        == evaluate_checkpoint(config, new, tmp_path / "t2")["test"]
    )
    # a resumed run compares configs in their typed form: the string '3e-3' is the run's lr 0.003
    run = tmp_path / "run"
    run.mkdir()
    save_atomic(old_format(load_checkpoint(trained_run / "checkpoint_last.pt")), run / "checkpoint_last.pt")
    save_atomic(old_format(load_checkpoint(new)), run / "checkpoint_best.pt")
    resumed = train(tiny_point_config("train.epochs=1"), run, resume=True)
    assert resumed["val"] == json.loads((trained_run / "metrics.json").read_text())["val"]


def test_old_image_checkpoints_derive_size_and_normalisation_from_the_recipe(tmp_path):
    import pointcoc
    from pointcoc.engine.config import load_config

    recipe = "data.image_recipe={image_size: 32, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}"
    config = load_config(None, ["model.name=coc_tiny", recipe, "model.kwargs={layers: [1, 1, 1, 1]}"])
    torch.manual_seed(0)
    model = pointcoc.create_model("coc_tiny", num_classes=2, layers=[1, 1, 1, 1])
    state = {"model": model.state_dict(), "ema": None, "config": config.to_dict(), "classes": ["a", "b"]}
    save_atomic({**state, "epoch": 1}, tmp_path / "old.pt")
    cfg = load_trained_model(tmp_path / "old.pt").model_cfg
    assert (cfg.input_kind, cfg.input_size, cfg.mean, cfg.std) == (
        "image",
        (3, 32, 32),
        (0.5,) * 3,
        (0.25,) * 3,
    )
    assert cfg.crop_pct == model.model_cfg.crop_pct  # what the recipe does not say stays the model's

    # a run saved before timm's RandAugment replaced kornia's: its retired keys become auto_augment
    for retired, expected in (({"randaugment_m": 0}, None), ({"randaugment_m": 27, "randaugment_n": 2},
                                                              "rand-m9-n2-mstd0.5-inc1")):  # fmt: skip
        old = copy.deepcopy(state)
        old["config"]["data"]["image_recipe"].update(retired)
        save_atomic({**old, "epoch": 1}, tmp_path / "older.pt")
        trained = load_trained_model(tmp_path / "older.pt")
        assert trained.config.data.image_recipe["auto_augment"] == expected
        assert "randaugment_m" not in trained.config.data.image_recipe


def test_checkpoint_with_a_key_the_engine_does_not_know_is_refused_naming_the_file(trained_run, tmp_path):
    state = load_checkpoint(trained_run / "checkpoint_best.pt")
    state["config"]["train"]["lr_decay"] = 0.1
    save_atomic(state, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match=r"odd.pt \(its config\): unknown config key 'train.lr_decay'"):
        load_trained_model(tmp_path / "odd.pt")
