"""main.py predict / test --pretrained / visualize --pretrained, and the official evaluation transform."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_compat_checkpoints import _openmixup_key
from test_data_imagenet import jpeg

import main
import pointcoc
from pointcoc.data.images import ImageFolder, eval_resize, resize_center_crop
from pointcoc.data.modelnet_h5 import SCANOBJECTNN_CLASSES
from pointcoc.hub import pretrained_entry
from pointcoc.utils.imagenet import imagenet1k_classes

WNIDS = [c.wnid for c in imagenet1k_classes()]
FOLDERS = ["n01530575", "n02085620", "n04037443"]  # brambling, Chihuahua, racer: not the first labels


def _names(lines: list[str]) -> list[str]:
    """The class names of ``main.py predict``'s ``"  12.34%  name"`` lines."""
    return [re.fullmatch(r" +\d+\.\d\d%  (.+)", line)[1] for line in lines]


def _gradient(width: int, height: int) -> Image.Image:
    x, y = np.meshgrid(np.arange(width), np.arange(height))
    pixels = np.stack([x % 256, y % 256, (x * 7 + y * 3) % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(pixels)


@pytest.mark.parametrize(
    "size,resized,box",
    [
        ((500, 375), (330, 248), (53, 12)),  # 248 * 500 / 375 = 330.7, truncated; (330 - 224) / 2 = 53
        ((375, 500), (248, 330), (12, 53)),
        ((640, 427), (371, 248), (74, 12)),  # 371.7 -> 371; (371 - 224) / 2 = 73.5, rounded to even: 74
        ((248, 248), (248, 248), (12, 12)),
    ],
)
def test_the_eval_transform_has_timms_sizes(size, resized, box):
    assert eval_resize(224, 0.9) == 248 and eval_resize(224, 0.95) == 235
    image = _gradient(*size)
    expected = image.resize(resized, Image.Resampling.BICUBIC).crop((*box, box[0] + 224, box[1] + 224))
    got = resize_center_crop(image, 248, 224)
    assert torch.equal(got, torch.from_numpy(np.array(expected)).permute(2, 0, 1))


def _image_folder(root: Path) -> Path:
    for c, wnid in enumerate(FOLDERS):
        (root / "val" / wnid).mkdir(parents=True)
        for i in range(2):
            (root / "val" / wnid / f"ILSVRC2012_val_{10 * c + i:08d}.JPEG").write_bytes(
                jpeg(c * 10 + i, (300, 240))
            )
    return root


def _biased_coc(favoured: list[str]) -> torch.nn.Module:
    """coc_tiny_plain whose head always ranks ``favoured`` classes first, in that order."""
    model = pointcoc.create_model("coc_tiny_plain", num_classes=1000)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
        for rank, wnid in enumerate(favoured):
            model.head.bias[WNIDS.index(wnid)] = 100.0 - rank
    return model


def test_predict_prints_the_top5_with_imagenet_names_for_images(tmp_path, capsys):
    favoured = ["n04037443", "n01440764", "n02085620", "n15075141", "n01530575"]
    path = tmp_path / "model_best.pth.tar"
    torch.save({"state_dict": _biased_coc(favoured).state_dict(), "args": argparse.Namespace()}, path)
    images = [tmp_path / "a.jpg", tmp_path / "b.png"]
    images[0].write_bytes(jpeg(1, (320, 200)))
    _gradient(180, 260).save(images[1])
    argv = ["predict", "--model", "coc_tiny_plain", "--pretrained", str(path)]
    assert main.main([*argv, *map(str, images)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"coc_tiny_plain ({path})"
    names = {c.wnid: c.words for c in imagenet1k_classes()}
    for i, image in enumerate(images):
        block = out[1 + 6 * i : 7 + 6 * i]
        assert block[0] == str(image)
        assert _names(block[1:]) == [names[w] for w in favoured]


def test_predict_names_point_cloud_classes_and_refuses_the_wrong_kind(tmp_path, capsys):
    source = pointcoc.create_model("pointmlp_elite", num_classes=15)
    path = tmp_path / "best_checkpoint.pth"
    torch.save({"net": {f"module.{k}": v for k, v in source.state_dict().items()}, "acc": 80.0}, path)
    cloud = tmp_path / "cloud.txt"
    np.savetxt(cloud, np.random.default_rng(0).normal(size=(1200, 3)))
    args = ["predict", "--model", "pointmlp_elite", "--pretrained", str(path)]
    assert main.main([*args, str(cloud)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == str(cloud) and len(lines) == 7
    assert set(_names(lines[2:])) <= set(SCANOBJECTNN_CLASSES)
    picture = tmp_path / "x.png"
    _gradient(50, 40).save(picture)
    assert main.main([*args, str(picture)]) == 2
    assert "x.png is an image but pointmlp_elite is a point model" in capsys.readouterr().err


def test_test_pretrained_scores_an_imagenet_folder_by_wnid(tmp_path, capsys, monkeypatch):
    root = _image_folder(tmp_path / "imagenet")
    # always ranks racer first (1 of 3 folders: top-1 2/6 images) and brambling among the top 5
    model = _biased_coc(["n04037443", "n01440764", "n01443537", "n01530575", "n15075141"])
    path = tmp_path / "coc.pth.tar"
    torch.save({"state_dict": model.state_dict()}, path)
    argv = ["test", "--model", "coc_tiny_plain", "--pretrained", str(path), "--set", f"data.root={root}"]
    assert main.main([*argv, "train.batch_size=4"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"coc_tiny_plain on {root / 'val'}: 6 images in 3 classes",
        f"top-1   33.33%   no published figure for {path}",
        "top-5   66.67%",
    ]
    # a zoo tag whose file is in the cache loads offline and is shown beside its published figure
    monkeypatch.setenv("POINTCOC_CACHE", str(tmp_path / "cache"))
    entry = pretrained_entry("coc_tiny_plain.openmixup_in1k")
    cached = tmp_path / "cache" / "checkpoints" / entry.cache_name
    cached.parent.mkdir(parents=True)
    state = {_openmixup_key(k): v for k, v in model.state_dict().items()}
    torch.save({"meta": {"mmcv_version": "1.7.1"}, "state_dict": state}, cached)
    argv = [
        "test",
        "--model",
        "coc_tiny_plain",
        "--pretrained",
        "openmixup_in1k",
        "--set",
        f"data.root={root}",
    ]
    assert main.main(argv) == 0
    assert "published 73.2 (coc_tiny_plain.openmixup_in1k: ImageNet-1k val" in capsys.readouterr().out
    (root / "val" / "cats").mkdir()
    (root / "val" / "cats" / "a.jpg").write_bytes(jpeg(0))
    assert main.main(argv) == 2
    assert "class folders cats are not ImageNet-1k WordNet ids" in capsys.readouterr().err
    assert main.main(["test", "--model", "coc_tiny_plain", "--set", "data.rot=x"]) == 2
    assert "KEY one of data.root" in capsys.readouterr().err
    assert main.main(["test", "--config", "x.yaml"]) == 2
    assert "test needs --config, --checkpoint and --out" in capsys.readouterr().err


def test_imagefolder_evaluation_uses_the_official_short_side(tmp_path):
    root = _image_folder(tmp_path / "imagenet")
    folder = ImageFolder(root / "val", 224, train=False)
    assert (folder.short_side, folder.image_size, folder.crop) == (248, 224, None)


def test_visualize_and_the_demo_accept_published_checkpoints(tmp_path, capsys):
    path = tmp_path / "coc.pth.tar"
    torch.save({"state_dict": _biased_coc(["n01530575"]).state_dict()}, path)
    image, out = tmp_path / "in.jpg", tmp_path / "out.png"
    image.write_bytes(jpeg(3, (240, 240)))
    argv = ["visualize", "--model", "coc_tiny_plain", "--pretrained", str(path), "--input", str(image)]
    assert main.main([*argv, "--out", str(out)]) == 0
    assert out.is_file() and "brambling, Fringilla montifringilla" in capsys.readouterr().out
    pytest.importorskip("gradio")
    from pointcoc.viz.demo import CheckpointFolder, build_app

    with pytest.raises(ValueError, match="coc_tiny has no pretrained tag 'nope'"):
        build_app(CheckpointFolder(tmp_path), 20.0, ["coc_tiny.nope"])
    assert build_app(CheckpointFolder(tmp_path), 20.0, ["coc_tiny.openmixup_in1k"]) is not None
