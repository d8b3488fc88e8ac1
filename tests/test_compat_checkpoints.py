"""Published checkpoint layouts: timm CheckpointSaver, openmixup/mmcv, pointMLP; normalisers; safe loading."""

import argparse
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED
from test_image_models import mini

import pointcoc
from pointcoc.compat import load_official_checkpoint, read_official_checkpoint, set_aggregation
from pointcoc.layers import ClusterMixer

PUBLISHED = SHARED / "fixtures" / "published"
CASES = ["pub_official_timm", "pub_official_2023_03", "pub_openmixup_tiny_plain"]
EXPECTED_AGGREGATION = {
    "pub_official_timm": "similarity",
    "pub_official_2023_03": "count",
    "pub_openmixup_tiny_plain": "count",
}


def published_case(case: str) -> tuple[Path, dict]:
    path = PUBLISHED / f"{case}.ckpt"
    if not path.is_file():
        pytest.skip(f"published checkpoint fixture {path} is absent (../shared not mounted)")
    return path, torch.load(PUBLISHED / f"{case}.expect.pt", weights_only=True)


@pytest.mark.parametrize("case", CASES)
def test_published_files_reproduce_the_publishing_codes_logits(case):
    path, expect = published_case(case)
    model = pointcoc.create_model(expect["model"], num_classes=1000)
    load_official_checkpoint(model, path, **expect["load_kwargs"]).eval()
    assert model.model_cfg.aggregation == EXPECTED_AGGREGATION[case]
    with torch.no_grad():
        torch.testing.assert_close(model(expect["input"]), expect["output"], atol=1e-4, rtol=1e-4)
        # The other normaliser moves the logits far beyond the tolerance: it is part of the weights.
        other = {"similarity": "count", "count": "similarity"}[model.model_cfg.aggregation]
        assert (set_aggregation(model, other)(expect["input"]) - expect["output"]).abs().max() > 0.1


def test_published_layouts_are_detected():
    layouts = {case: read_official_checkpoint(published_case(case)[0]).layout for case in CASES}
    assert layouts == {
        "pub_official_timm": "timm",
        "pub_official_2023_03": "timm",
        "pub_openmixup_tiny_plain": "mmcv",
    }


class _RunsCode:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_pickle_that_runs_code_is_refused_beside_the_allowed_types(tmp_path, capsys):
    path = tmp_path / "evil.pth.tar"
    state = mini().state_dict()
    torch.save({"state_dict": state, "args": argparse.Namespace(model="coc_tiny"), "x": _RunsCode()}, path)
    with pytest.raises(ValueError, match=r"evil\.pth\.tar was refused: it holds print"):
        load_official_checkpoint(mini(), path)
    assert "must never run" not in capsys.readouterr().out
    # numpy arrays need numpy's array reconstructor, which stays outside the allowed types
    torch.save({"state_dict": state, "acc": np.zeros(3)}, path)
    with pytest.raises(ValueError, match="was refused: it holds numpy"):
        load_official_checkpoint(mini(), path)


def test_numpy_scalars_of_numpy_1_and_2_load(tmp_path):
    path = tmp_path / "best_checkpoint.pth"
    state = mini().state_dict()
    torch.save(
        {"state_dict": state, "acc": np.float64(73.2), "epoch": np.int64(3), "dtype": np.dtype("float32")},
        path,
        _use_new_zipfile_serialization=False,  # the pickle is then stored plainly, to rename its globals
    )
    load_official_checkpoint(mini(), path)
    # numpy 1 wrote the scalar constructor as numpy.core.multiarray.scalar (protocol 2: text GLOBAL opcodes)
    raw = path.read_bytes()
    assert b"numpy._core.multiarray\nscalar" in raw
    path.write_bytes(raw.replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar"))
    load_official_checkpoint(mini(), path)


def _openmixup_key(key: str) -> str:
    if key.startswith("head."):
        return "head.fc." + key.removeprefix("head.")
    return "backbone." + key.replace(".norm1.", ".gn1.").replace(".norm2.", ".gn2.")


def test_openmixup_layout_converts_keys_implies_count_and_reads_its_ema_buffers(tmp_path):
    source, ema = mini(), mini()
    state = {_openmixup_key(k): v for k, v in source.state_dict().items()}
    params = {name for name, _ in source.named_parameters()}
    # openmixup's EMAHook registers the average of each parameter as a top-level buffer
    state.update(
        {"ema_" + _openmixup_key(k).replace(".", "_"): v for k, v in ema.state_dict().items() if k in params}
    )
    path = tmp_path / "coc_mini_8xb256.pth"
    torch.save(
        {"meta": {"mmcv_version": "1.7.1", "CLASSES": None}, "state_dict": state, "optimizer": {}}, path
    )
    model = load_official_checkpoint(mini(), path)
    assert model.model_cfg.aggregation == "count"
    assert all(m.aggregation == "count" for m in model.modules() if isinstance(m, ClusterMixer))
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    averaged = load_official_checkpoint(mini(), path, use_ema=True)
    for key, value in ema.state_dict().items():
        expected = value if key in params else source.state_dict()[key]  # buffers are not averaged
        assert torch.equal(averaged.state_dict()[key], expected), key
    # the caller's word wins over the layout's
    assert (
        load_official_checkpoint(mini(), path, aggregation="similarity").model_cfg.aggregation == "similarity"
    )


def test_timm_layout_takes_the_ema_only_when_asked(tmp_path):
    plain, ema = mini(), mini()
    prefixed = {f"module.{k}": v for k, v in ema.state_dict().items()}
    path = tmp_path / "model_best.pth.tar"
    torch.save({"epoch": 3, "state_dict": plain.state_dict(), "state_dict_ema": prefixed, "version": 2}, path)
    for use_ema, source in ((False, plain), (True, ema)):
        model = load_official_checkpoint(mini(), path, use_ema=use_ema)
        for key, value in source.state_dict().items():
            assert torch.equal(model.state_dict()[key], value), key
        assert model.model_cfg.aggregation == "similarity"
    torch.save({"epoch": 3, "state_dict": plain.state_dict()}, path)
    with pytest.raises(ValueError, match=r"model_best\.pth\.tar \(timm layout\) has no 'state_dict_ema'"):
        load_official_checkpoint(mini(), path, use_ema=True)
    with pytest.raises(ValueError, match="holds no separate EMA weights"):
        torch.save({"net": plain.state_dict()}, path)
        load_official_checkpoint(mini(), path, use_ema=True)


def test_conv1x1_mlps_of_the_pre_june_2023_code_load_as_linear_and_imply_count(tmp_path):
    source = mini()
    state = {
        k: v[..., None, None] if ".mlp.fc" in k and k.endswith("weight") else v
        for k, v in source.state_dict().items()
    }
    path = tmp_path / "coc_conv_mlp.pth.tar"
    torch.save({"state_dict": state}, path)
    model = load_official_checkpoint(mini(aggregation="similarity"), path)
    assert model.model_cfg.aggregation == "count"
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_pre_release_fea_pos_layout_is_refused_naming_its_replacements(tmp_path):
    state = {**mini().state_dict(), "fea_pos": torch.zeros(224, 224, 2)}
    path = tmp_path / "coc_tiny_pre.pth.tar"
    torch.save({"state_dict": state, "args": argparse.Namespace(model="coc_tiny")}, path)
    with pytest.raises(ValueError) as err:
        load_official_checkpoint(mini(), path)
    message = str(err.value)
    assert "pre-release" in message and "fea_pos" in message and "\n" not in message
    assert "coc_tiny.official_in1k" in message and "coc_tiny_plain.official_in1k_2023_03" in message


def test_a_typo_in_the_normaliser_and_odd_entries_are_refused(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save(mini().state_dict(), path)
    with pytest.raises(ValueError, match="aggregation must be one of"):
        load_official_checkpoint(mini(), path, aggregation="sim")
    torch.save({"state_dict": {"a": 1}}, path)
    with pytest.raises(ValueError, match=r"ckpt\.pth: the weights hold non-tensors \(a\)"):
        load_official_checkpoint(mini(), path)
    torch.save([1, 2], path)
    with pytest.raises(ValueError, match=r"ckpt\.pth: expected a dict checkpoint, got list"):
        load_official_checkpoint(mini(), path)
    path.write_bytes(pickle.dumps({"state_dict": {}}, protocol=2))  # not a torch.save file at all
    with pytest.raises(ValueError, match=r"ckpt\.pth (is not a readable torch checkpoint|was refused)"):
        load_official_checkpoint(mini(), path)
