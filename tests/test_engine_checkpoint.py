import pickle

import pytest
import torch
from test_engine_helpers import tiny_point_config

import main
from pointcoc.engine import checkpoint as ckpt
from pointcoc.engine import evaluate_checkpoint, train
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
    with pytest.raises(ValueError, match="weights_only=True refused it") as err:
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
    import json

    saved = json.loads((tmp_path / "metrics.json").read_text())
    for split in ("test", "test_votes"):
        assert set(saved[split]) == {"oa", "macc", "per_class"} and 0 <= saved[split]["oa"] <= 1
    assert saved["test"] == metrics["test"]
    again = evaluate_checkpoint(
        tiny_point_config("train.epochs=1"), trained_run / "checkpoint_best.pt", tmp_path, votes=3
    )
    assert again["test_votes"] == metrics["test_votes"]  # fixed seed: the same views every time
