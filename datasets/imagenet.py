"""ImageNet-1k (ILSVRC2012) from the official archives, arranged into class folders.

    python -m datasets.imagenet --root DATA/imagenet                 # the three archives are in DATA/imagenet
    python -m datasets.imagenet --root DATA/imagenet --archives DIR  # ... or in DIR
    python -m datasets.imagenet --check DATA/imagenet

The archives come from image-net.org after registration (no download here): ``ILSVRC2012_img_train.tar``
(one tar per class, ``n01440764.tar`` holding ``n01440764_*.JPEG``), ``ILSVRC2012_img_val.tar`` (50,000
``ILSVRC2012_val_*.JPEG``, flat) and ``ILSVRC2012_devkit_t12.tar.gz``. Of the devkit, two files are
read: ``data/meta.mat`` (MATLAB struct array ``synsets``: one row per WordNet synset with ``ILSVRC2012_ID``,
``WNID``, ``words``, ``num_children``, ...; the 1000 classes are the rows with ``num_children == 0``, numbered
1..1000 by ``ILSVRC2012_ID``, which is not the sorted-WNID label order) and
``data/ILSVRC2012_validation_ground_truth.txt`` (50,000 lines: line i is the ``ILSVRC2012_ID`` of
``ILSVRC2012_val_{i:08d}.JPEG``). The result is ``ROOT/train/<wnid>/*.JPEG`` and ``ROOT/val/<wnid>/*.JPEG``,
the layout of the official README (and of torchvision's ``ImageFolder``); each split is written into a
temporary folder beside it and renamed into place only when complete.
"""

from __future__ import annotations

import io
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from pointcoc.utils.imagenet import imagenet1k_classes

from ._common import prepare_parser, run_check

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
DEVKIT = "ILSVRC2012_devkit_t12.tar.gz"
EXPECTED = {"train": 1_281_167, "val": 50_000, "classes": 1000}
_WNID = re.compile(r"n\d{8}")
_VAL_IMAGE = re.compile(r"ILSVRC2012_val_(\d{8})\.JPEG")


def read_devkit(devkit: Path) -> tuple[dict[int, str], list[int]]:
    """``({ILSVRC2012_ID: wnid} of the leaf synsets, [ILSVRC2012_ID of val image 1, 2, ...])``."""
    from scipy.io import loadmat  # scikit-learn's dependency, so always installed with pointcoc

    meta = truth = None
    try:
        with tarfile.open(devkit, "r:gz") as tar:
            for member in tar:
                if member.name.endswith("data/meta.mat"):
                    meta = tar.extractfile(member).read()
                elif member.name.endswith("data/ILSVRC2012_validation_ground_truth.txt"):
                    truth = tar.extractfile(member).read().decode()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise SystemExit(f"{devkit} is not a readable .tar.gz ({exc}); download it again") from None
    if meta is None or truth is None:
        raise SystemExit(
            f"{devkit} lacks data/meta.mat or data/ILSVRC2012_validation_ground_truth.txt; is it the "
            f"ILSVRC2012 devkit ({DEVKIT})?"
        )
    synsets = loadmat(io.BytesIO(meta), squeeze_me=True)["synsets"]
    leaves = synsets[synsets["num_children"] == 0]
    id_to_wnid = {int(i): str(w) for i, w in zip(leaves["ILSVRC2012_ID"], leaves["WNID"])}
    labels = [int(line) for line in truth.split()]
    unknown = sorted(set(labels) - set(id_to_wnid))
    if unknown:
        raise SystemExit(f"{devkit}: the validation ground truth names ids {unknown[:5]} that meta.mat lacks")
    return id_to_wnid, labels


def _regular_files(tar: tarfile.TarFile) -> Iterator[tuple[str, IO[bytes]]]:
    """``(base name, contents)`` of every regular file of a streamed tar; links and folders are skipped, and
    only the base name is used, so no member can write outside its class folder."""
    for member in tar:
        if member.isfile():
            yield Path(member.name).name, tar.extractfile(member)


def _write(source: IO[bytes], dest: Path) -> None:
    with open(dest, "wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)


def _staged(target: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.partial-"))


def arrange_train(archive: Path, target: Path) -> None:
    """``ILSVRC2012_img_train.tar`` (a tar of per-class tars) -> ``target/<wnid>/*.JPEG``."""
    staging = _staged(target)
    try:
        with tarfile.open(archive, "r|") as outer:
            for name, inner in _regular_files(outer):
                wnid = name.removesuffix(".tar")
                if not name.endswith(".tar") or not _WNID.fullmatch(wnid):
                    raise SystemExit(
                        f"{archive}: unexpected member {name!r}; expected n<8 digits>.tar per class"
                    )
                (staging / wnid).mkdir()
                with tarfile.open(fileobj=inner, mode="r|") as per_class:
                    for image, data in _regular_files(per_class):
                        _write(data, staging / wnid / image)
                print(f"  train {wnid}: {sum(1 for _ in (staging / wnid).iterdir())} images")
        staging.rename(target)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise SystemExit(f"{archive} could not be read to the end ({exc}); download it again") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def arrange_val(archive: Path, target: Path, id_to_wnid: dict[int, str], labels: list[int]) -> None:
    """``ILSVRC2012_img_val.tar`` (flat) -> ``target/<wnid>/ILSVRC2012_val_*.JPEG`` by the devkit's labels."""
    staging = _staged(target)
    try:
        for wnid in set(id_to_wnid.values()):
            (staging / wnid).mkdir()
        with tarfile.open(archive, "r|") as tar:
            for name, data in _regular_files(tar):
                match = _VAL_IMAGE.fullmatch(name)
                if not match or not 1 <= int(match[1]) <= len(labels):
                    raise SystemExit(
                        f"{archive}: {name!r} is not one of the {len(labels):,} validation images "
                        "the devkit's ground truth lists"
                    )
                _write(data, staging / id_to_wnid[labels[int(match[1]) - 1]] / name)
        staging.rename(target)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise SystemExit(f"{archive} could not be read to the end ({exc}); download it again") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def prepare(root: Path, archives: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    paths = {name: archives / name for name in (TRAIN_TAR, VAL_TAR, DEVKIT)}
    missing = [name for name, path in paths.items() if not path.is_file()]
    if missing:
        raise SystemExit(
            f"{archives} lacks {', '.join(missing)}; download the ILSVRC2012 archives from image-net.org "
            "(registration, non-commercial research terms) and put them there"
        )
    id_to_wnid, labels = read_devkit(paths[DEVKIT])
    print(f"  devkit: {len(id_to_wnid)} classes, {len(labels):,} validation labels")
    for split, arrange in (
        ("train", lambda target: arrange_train(paths[TRAIN_TAR], target)),
        ("val", lambda target: arrange_val(paths[VAL_TAR], target, id_to_wnid, labels)),
    ):
        target = root / split
        if target.exists():
            print(f"  {target} exists, not arranging again")
        else:
            print(f"  arranging {split} into {target}")
            arrange(target)


def check(root: Path, expected: dict[str, int] = EXPECTED) -> None:
    """Count the images of ``root/train`` and ``root/val`` per class and report; then raise, in one line, on
    counts other than ``expected`` or class folders that are not ImageNet-1k WordNet ids."""
    known = {c.wnid for c in imagenet1k_classes()}
    splits = [s for s in ("train", "val") if (root / s).is_dir()]
    if not splits:
        raise FileNotFoundError(f"{root} has no train/ or val/ folder; prepare it with --root")
    problems = []
    for split in splits:
        folders = sorted(p for p in (root / split).iterdir() if p.is_dir())
        counts = [sum(1 for f in p.iterdir() if f.is_file()) for p in folders]
        total = sum(counts)
        print(
            f"{root / split}: {total:,} images in {len(folders)} classes "
            f"({min(counts, default=0)} to {max(counts, default=0)} per class)"
        )
        odd = [p.name for p in folders if p.name not in known]
        if odd:
            problems.append(f"{root / split}: {', '.join(odd[:5])} are not ImageNet-1k class folders (wnid)")
        elif (total, len(folders)) != (expected[split], expected["classes"]):
            problems.append(
                f"{root / split} has {total:,} images in {len(folders)} classes, the official {split} split "
                f"{expected[split]:,} in {expected['classes']}"
            )
    if problems:
        raise ValueError("; ".join(problems) + ": an archive was incomplete or a folder changed")


def main(argv: list[str] | None = None) -> int:
    parser, _ = prepare_parser("imagenet", __doc__, "folder to write train/ and val/ into")
    parser.add_argument("--archives", help="folder holding the three ILSVRC2012 archives (default: --root)")
    args = parser.parse_args(argv)
    if args.check:
        return run_check(check, args.check)
    root = Path(args.root).expanduser()
    prepare(root, Path(args.archives).expanduser() if args.archives else root)
    return run_check(check, str(root))


if __name__ == "__main__":
    raise SystemExit(main())
