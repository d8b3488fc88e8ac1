"""Training writes cluster pictures of fixed validation samples to TensorBoard on the configured epochs
(the callback ``main.py`` passes to the engine)."""

from __future__ import annotations

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_engine_helpers import tiny_image_config, tiny_point_config

from main import training_callbacks
from pointcoc.engine import train as engine_train
from pointcoc.viz.colors import BORDER, cluster_colors


def train(config, out):
    """Training as ``main.py train`` runs it."""
    return engine_train(config, out, callbacks=training_callbacks(config))


def cluster_images(run) -> dict[str, list]:
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    return {tag: events.Images(tag) for tag in events.Tags()["images"] if tag.startswith("clusters/")}


def decode(event) -> np.ndarray:
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))


def test_point_runs_log_every_stage_of_each_sample_on_the_due_epochs(tmp_path):
    config = tiny_point_config("train.epochs=3", "model.name=pointmlp_coc_elite",
                               "log.cluster_images_every=2", "log.cluster_images=2")  # fmt: skip
    train(config, tmp_path)
    images = cluster_images(tmp_path)
    assert sorted(images) == ["clusters/sample_0", "clusters/sample_1"]
    for events in images.values():
        assert [e.step for e in events] == [1, 2, 3]  # the first, every 2nd, the last
        assert (events[0].width, events[0].height) == (720, 770)  # 4 stages in 2 x 2 panels, 1 title line
    # every stage-0 group of the 64-point clouds (32 anchors) is drawn in its own colour
    picture = decode(images["clusters/sample_0"][-1]).reshape(-1, 3)
    seen = {tuple(c) for c in np.unique(picture, axis=0)} & {tuple(c) for c in cluster_colors(32)}
    assert len(seen) >= 24


def test_image_runs_log_the_stages_side_by_side_and_zero_turns_it_off(tmp_path):
    train(tiny_image_config("log.cluster_images=3"), tmp_path / "on")
    images = cluster_images(tmp_path / "on")
    assert sorted(images) == [f"clusters/sample_{i}" for i in range(3)]
    event = images["clusters/sample_0"][0]
    # one stage, 8x8 digits drawn at 8 * 56 = 448 px; a 4x4 map, one region of 2x2 centers, no borders
    assert (event.step, event.width, event.height) == (1, 448, 448)
    picture = decode(event)
    assert not (picture == BORDER).all(axis=-1).all(axis=0).any()
    train(tiny_image_config("log.cluster_images_every=0"), tmp_path / "off")
    assert cluster_images(tmp_path / "off") == {}


@pytest.mark.parametrize("setting", ["log.cluster_image_every=2", "log.clusters=1"])
def test_unknown_log_keys_are_refused(setting):
    with pytest.raises(ValueError, match="unknown config key"):
        tiny_point_config(setting)


def test_point_set_runs_log_one_view_per_stage(tmp_path):
    config = tiny_point_config("train.epochs=1", "model.name=pointset_coc_vanilla", "model.kwargs={}",
                               "log.cluster_images_every=1", "log.cluster_images=1")  # fmt: skip
    train(config, tmp_path)
    (events,) = cluster_images(tmp_path).values()
    assert [e.step for e in events] == [1]
    picture = decode(events[0]).reshape(-1, 3)
    seen = {tuple(c) for c in np.unique(picture, axis=0)} & {tuple(c) for c in cluster_colors(16)}
    assert len(seen) >= 12  # the 16 stage-0 centers' colours (a few anchors hide behind others)
