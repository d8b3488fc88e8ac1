"""build_model asks the dataset (or the model) what input it takes; one loader builder shards every split."""

import pytest
import torch
from torch.utils.data import TensorDataset

from pointcoc.engine.build import build_model, run_model_cfg
from pointcoc.engine.config import load_config
from pointcoc.engine.distributed import Dist
from pointcoc.engine.loaders import make_loader

CPU = torch.device("cpu")
POINTS = ["model.name=pointmlp_elite", "model.kwargs={k_neighbors: [8, 8, 8, 8]}", "data.num_points=64"]


def test_point_models_get_the_data_num_points_and_other_kinds_are_refused():
    config = load_config(None, POINTS)
    assert build_model(config, 3, "points").model_cfg.input_size == (64, 3)
    torch.manual_seed(0)
    asked = build_model(config, 3)  # input_kind None: the model says it takes points
    torch.manual_seed(0)
    told = build_model(config, 3, "points")
    assert asked.model_cfg == told.model_cfg
    with pytest.raises(ValueError, match="^model.name: pointmlp_elite takes points input but data.name "
                       "'procedural' yields image; choose"):  # fmt: skip
        build_model(config, 3, "image")
    images = load_config(None, ["model.name=coc_tiny"])
    with pytest.raises(ValueError, match="^model.name: coc_tiny takes image input but data.name "
                       "'procedural' yields points"):  # fmt: skip
        build_model(images, 3, "points")
    with pytest.raises(ValueError, match=r"^model.kwargs do not fit coc_tiny: .*'embed_dimz'"):
        build_model(load_config(None, ["model.name=coc_tiny", "model.kwargs={embed_dimz: 8}"]), 3)


def test_run_model_cfg_records_what_the_data_fed():
    config = load_config(None, [*POINTS[:2], "data.num_points=128"])
    model = build_model(config, 3, "points")
    assert run_model_cfg(model.model_cfg, config).input_size == (128, 3)
    images = load_config(None, ["model.name=coc_tiny", "data.image_recipe={mean: [0.5], std: [0.5]}"])
    cfg = build_model(images, 3, "image").model_cfg
    fed = run_model_cfg(cfg, images, (1, 28, 28))
    assert (fed.input_size, fed.mean, fed.std, fed.architecture) == ((1, 28, 28), (0.5,), (0.5,), "coc_tiny")


def test_one_loader_builder_shards_evaluation_and_training_across_ranks():
    data = TensorDataset(torch.arange(10).float(), torch.arange(10))
    seen = [torch.cat([y for _, y in make_loader(data, 3, device=CPU, dist=Dist(r, 3))]) for r in range(3)]
    assert sorted(torch.cat(seen).tolist()) == list(range(10))  # every sample once, none padded
    assert seen[1].tolist() == [1, 4, 7]
    train = [make_loader(data, 4, device=CPU, dist=Dist(r, 2), shuffle_seed=5) for r in range(2)]
    batches = [[y for _, y in loader] for loader in train]
    assert all(len(b) == 2 and all(len(y) == 2 for y in b) for b in batches)  # 4 // 2 per rank, 5 each
    drawn = torch.cat([y for b in batches for y in b]).tolist()
    assert len(set(drawn)) == 8  # the ranks draw disjoint samples
    again = [
        [y for _, y in make_loader(data, 4, device=CPU, dist=Dist(r, 2), shuffle_seed=5)] for r in (0, 1)
    ]
    assert all(torch.equal(a, b) for x, z in zip(batches, again) for a, b in zip(x, z))  # seeded order
    assert not train[0].pin_memory and train[0].num_workers == 0
