"""ModelNet40 in the official ``modelnet40_ply_hdf5_2048`` layout.

    python -m datasets.modelnet40 --root DATA          # download + unpack to DATA/modelnet40_ply_hdf5_2048
    python -m datasets.modelnet40 --check DATA/modelnet40_ply_hdf5_2048

The official host (shapenet.cs.stanford.edu) is gone; the PointMLP authors' GitHub release serves the same
zip. Its checksum is not published and could not be fetched from where this was written: the command prints
the sha256 it got; pass ``--sha256`` to pin a copy you trust.
"""

from __future__ import annotations

from pathlib import Path

from pointcoc.data import ModelNetH5

from ._common import describe, download, prepare_parser, run_check, unpack_zip

URL = "https://github.com/ma-xu/pointMLP-pytorch/releases/download/dataset/modelnet40_ply_hdf5_2048.zip"
FOLDER = "modelnet40_ply_hdf5_2048"
EXPECTED = {"train": 9843, "test": 2468}


def check(root: Path, expected: dict[str, int] | None = EXPECTED) -> None:
    """Load every split listed in ``root`` and report; warn when counts differ from the official ones."""
    splits = [s for s in ("train", "test") if (root / f"{s}_files.txt").is_file()]
    if not splits:
        raise FileNotFoundError(f"{root} has no train_files.txt or test_files.txt; is it the hdf5 folder?")
    for split in splits:
        ds = ModelNetH5(root, split, num_points=1)
        describe(f"{root} [{split}]", ds)
        if expected and split in expected and len(ds) != expected[split]:
            print(f"  note: the official {split} split has {expected[split]} shapes")


def main(argv: list[str] | None = None) -> int:
    parser, _ = prepare_parser("modelnet40", __doc__, "folder to download and unpack into")
    parser.add_argument("--sha256", help="expected sha256 of the zip")
    parser.add_argument("--url", default=URL)
    args = parser.parse_args(argv)
    if args.check:
        return run_check(check, args.check)
    root = Path(args.root).expanduser()
    archive = download(args.url, root / f"{FOLDER}.zip", f"sha256:{args.sha256}" if args.sha256 else None)
    target = unpack_zip(archive, root, FOLDER)
    return run_check(check, str(target))


if __name__ == "__main__":
    raise SystemExit(main())
