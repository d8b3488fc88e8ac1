"""What the experiment tables need from the engine: recipes with ``_base_``, top-5 accuracy, and every
shipped table row resolving to a config of a registered model (with and without the smoke settings)."""

from pathlib import Path

import numpy as np
import pytest

import pointcoc
from experiments.tables import load_table, resolve, run_overrides, table_names
from pointcoc.engine.config import load_config
from pointcoc.engine.evaluate import metrics_of
from pointcoc.engine.metrics import top_k_accuracy

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def test_base_recipes_apply_in_order_under_the_file(tmp_path):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "a.yaml").write_text(
        "model: {name: pointmlp, kwargs: {embed_dim: 16}}\ntrain: {lr: 0.5, epochs: 7}\n"
    )
    (tmp_path / "b.yaml").write_text("train: {epochs: 9, batch_size: 8}\n")
    row = tmp_path / "row.yaml"
    row.write_text(
        "_base_: [recipes/a.yaml, b.yaml]\ntrain: {lr: 0.25}\nmodel: {kwargs: {k_neighbors: [4]}}\n"
    )
    config = load_config(row, ["train.batch_size=4"])
    assert (config.train.lr, config.train.epochs, config.train.batch_size) == (0.25, 9, 4)
    # open dictionaries are replaced whole, as over the defaults
    assert (config.model.name, config.model.kwargs) == ("pointmlp", {"k_neighbors": [4]})

    (tmp_path / "single.yaml").write_text("_base_: recipes/a.yaml\n")
    assert load_config(tmp_path / "single.yaml").train.epochs == 7


def test_base_errors_name_the_file(tmp_path):
    (tmp_path / "loop.yaml").write_text("_base_: loop2.yaml\n")
    (tmp_path / "loop2.yaml").write_text("_base_: loop.yaml\n")
    with pytest.raises(ValueError, match="includes itself"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "gone.yaml").write_text("_base_: nowhere.yaml\n")
    with pytest.raises(ValueError, match=r"gone.yaml: _base_ file .*nowhere.yaml does not exist"):
        load_config(tmp_path / "gone.yaml")
    (tmp_path / "ok.yaml").write_text("train: {lr: 1}\n")
    (tmp_path / "typo.yaml").write_text("_base_: ok.yaml\ntrian: {lr: 1}\n")
    with pytest.raises(ValueError, match="unknown config key 'trian'"):
        load_config(tmp_path / "typo.yaml")


def test_top5_accuracy_by_hand():
    scores = np.array(
        [
            [0.50, 0.20, 0.10, 0.08, 0.06, 0.04, 0.02],  # label 0: top-1
            [0.40, 0.30, 0.10, 0.08, 0.06, 0.04, 0.02],  # label 4: rank 5, in the top 5
            [0.40, 0.30, 0.10, 0.08, 0.06, 0.04, 0.02],  # label 6: rank 7, not
        ]
    )
    labels = np.array([0, 4, 6])
    assert top_k_accuracy(scores, labels, 5) == pytest.approx(2 / 3)
    assert top_k_accuracy(scores, labels, 1) == pytest.approx(1 / 3)
    metrics, _ = metrics_of(scores, labels, [str(i) for i in range(7)])
    assert metrics["top5"] == pytest.approx(2 / 3) and metrics["oa"] == pytest.approx(1 / 3)
    # five classes or fewer: top-5 is 1 by construction, so it is left out
    few, _ = metrics_of(scores[:, :5], np.array([0, 4, 1]), [str(i) for i in range(5)])
    assert "top5" not in few


@pytest.mark.parametrize("name", table_names())
def test_every_table_row_resolves_to_a_registered_model(name):
    table = load_table(name)
    for row in table.rows:
        for smoke in (False, True):
            config = resolve(row, run_overrides(table, row, 3, smoke, []))
            assert config.seed == 3
            assert pointcoc.list_models(config.model.name) == [config.model.name]
            if smoke:  # the smoke settings reach the config intact through their --set form
                assert config.device == "cpu" and config.train.epochs == 1
                assert config.data.kwargs == {**table.smoke, **row.smoke}["data.kwargs"]


def test_table_rows_keep_their_recipes():
    sonn = load_table("scanobjectnn")
    epochs = {r.name: resolve(r, []).train.epochs for r in sonn.rows}
    assert epochs == {"pointmlp": 200, "pointmlp_elite": 200, "pointmlp_coc": 250}
    for row in load_table("modelnet10").rows:
        mn10 = resolve(row, [])
        recipe = load_config(EXPERIMENTS / "modelnet10" / f"{row.name}.yaml")
        assert mn10.data.kwargs == recipe.data.kwargs and mn10.train == recipe.train
        assert mn10.model == recipe.model
        assert (mn10.data.val_fraction, mn10.data.test_fraction) == (0.1, 0.2)
        # selected on validation mAcc over a class-balanced validation part (issue 16)
        assert (mn10.data.holdout, mn10.train.select_on) == ("balanced", "macc")
    images = {r.name: resolve(r, []).model.name for r in load_table("imagenet").rows}
    assert images == {n: n for n in ("coc_tiny", "coc_tiny_plain", "coc_small", "coc_medium")}
