"""ImageNet preparation from tiny archives in the official ILSVRC2012 layout (train tar of per-class tars,
flat val tar, devkit with meta.mat and the validation ground truth)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets import imagenet

# Three leaf classes whose ILSVRC2012_IDs are not in sorted-WNID order (as in the real devkit), and a parent.
SYNSETS = [(1, "n02119789", "kit fox", 0), (2, "n01440764", "tench", 0), (3, "n15075141", "toilet tissue", 0)]
PARENT = (1001, "n00001740", "entity", 3)
TRAIN = {"n02119789": 3, "n01440764": 2, "n15075141": 1}
VAL_IDS = [2, 1, 3, 1, 2]  # line i: the ILSVRC2012_ID of ILSVRC2012_val_0000000i.JPEG
TINY = {"train": sum(TRAIN.values()), "val": len(VAL_IDS), "classes": len(TRAIN)}


def jpeg(seed: int, size: tuple[int, int] = (40, 30)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _meta_mat() -> bytes:
    from scipy.io import savemat

    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height"]
    synsets = np.zeros((len(SYNSETS) + 1, 1), dtype=[(f, "O") for f in fields])
    for row, (ident, wnid, words, children) in enumerate([*SYNSETS, PARENT]):
        kids = np.arange(1, children + 1, dtype=float)
        synsets[row, 0] = (float(ident), wnid, words, f"gloss of {words}", float(children), kids, 0.0)
    buffer = io.BytesIO()
    savemat(buffer, {"synsets": synsets})
    return buffer.getvalue()


def write_archives(folder: Path) -> Path:
    """The three ILSVRC2012 archives with tiny contents, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / imagenet.TRAIN_TAR, "w") as outer:
        for c, (wnid, n) in enumerate(TRAIN.items()):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as tar:
                for i in range(n):
                    _add(tar, f"{wnid}_{i}.JPEG", jpeg(10 * c + i))
            _add(outer, f"{wnid}.tar", inner.getvalue())
    with tarfile.open(folder / imagenet.VAL_TAR, "w") as tar:
        for i in range(len(VAL_IDS)):
            _add(tar, f"ILSVRC2012_val_{i + 1:08d}.JPEG", jpeg(100 + i))
    with tarfile.open(folder / imagenet.DEVKIT, "w:gz") as tar:
        _add(tar, "ILSVRC2012_devkit_t12/data/meta.mat", _meta_mat())
        truth = "".join(f"{ident}\n" for ident in VAL_IDS).encode()
        _add(tar, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", truth)
        _add(tar, "ILSVRC2012_devkit_t12/COPYING", b"devkit licence text")
    return folder


def test_devkit_maps_ids_to_wnids_through_meta_mat(tmp_path):
    archives = write_archives(tmp_path / "archives")
    id_to_wnid, labels = imagenet.read_devkit(archives / imagenet.DEVKIT)
    assert id_to_wnid == {1: "n02119789", 2: "n01440764", 3: "n15075141"}  # the parent synset is not a class
    assert labels == VAL_IDS


def test_prepare_arranges_class_folders_and_check_counts(tmp_path, capsys):
    archives = write_archives(tmp_path / "archives")
    root = tmp_path / "imagenet"
    imagenet.prepare(root, archives)
    assert sorted(p.name for p in root.iterdir()) == ["train", "val"]  # no staging folder left
    for wnid, n in TRAIN.items():
        assert len(list((root / "train" / wnid).glob(f"{wnid}_*.JPEG"))) == n
    by_class = {p.name: sorted(f.name for f in p.iterdir()) for p in (root / "val").iterdir()}
    assert by_class == {
        "n01440764": ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000005.JPEG"],
        "n02119789": ["ILSVRC2012_val_00000002.JPEG", "ILSVRC2012_val_00000004.JPEG"],
        "n15075141": ["ILSVRC2012_val_00000003.JPEG"],
    }
    assert (root / "val" / "n15075141" / "ILSVRC2012_val_00000003.JPEG").read_bytes() == jpeg(102)
    imagenet.check(root, TINY)
    report = capsys.readouterr().out
    assert f"{root / 'train'}: 6 images in 3 classes (1 to 3 per class)" in report
    assert f"{root / 'val'}: 5 images in 3 classes (1 to 2 per class)" in report
    imagenet.prepare(root, archives)  # a second run keeps what is there
    assert "exists, not arranging again" in capsys.readouterr().out


def test_command_reports_counts_that_differ_from_the_official_ones(tmp_path, capsys):
    archives = write_archives(tmp_path / "archives")
    root = tmp_path / "imagenet"
    assert imagenet.main(["--root", str(root), "--archives", str(archives)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"check failed: {root / 'train'} has 6 images in 3 classes, the official train split 1,281,167 in "
        f"1000; {root / 'val'} has 5 images in 3 classes, the official val split 50,000 in 1000: an archive "
        "was incomplete or a folder changed"
    )
    (root / "val" / "tench").mkdir()
    assert imagenet.main(["--check", str(root)]) == 1
    assert "tench are not ImageNet-1k class folders" in capsys.readouterr().err
    assert imagenet.main(["--check", str(tmp_path / "nowhere")]) == 1


def test_a_truncated_archive_leaves_no_split_folder(tmp_path):
    archives = write_archives(tmp_path / "archives")
    train = archives / imagenet.TRAIN_TAR
    train.write_bytes(train.read_bytes()[: train.stat().st_size // 2])
    root = tmp_path / "imagenet"
    with pytest.raises(SystemExit, match="could not be read to the end"):
        imagenet.prepare(root, archives)
    assert list(root.iterdir()) == []
    (archives / imagenet.VAL_TAR).unlink()
    with pytest.raises(SystemExit, match=f"lacks {imagenet.VAL_TAR}; download the ILSVRC2012 archives"):
        imagenet.prepare(root, archives)
