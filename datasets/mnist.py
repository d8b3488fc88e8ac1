"""MNIST in its original idx format.

python -m datasets.mnist --root DATA/mnist      # download the 4 gz files (md5-verified)
python -m datasets.mnist --check DATA/mnist
"""

from __future__ import annotations

from pathlib import Path

from pointcoc.data import MNIST

from ._common import describe, download, prepare_parser, run_check

# The files LeCun's site served, as mirrored by torchvision's S3 bucket; md5s as published by torchvision.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
FILES = {
    "train-images-idx3-ubyte.gz": "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "md5:d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "md5:9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "md5:ec29112dd5afa0611ce80d1b7f02629c",
}


def check(root: Path) -> None:
    """Report each split present: ``train-``/``t10k-`` prefixed pairs, or an unprefixed pair."""
    found = 0
    for split in ("train", "test", None):
        try:
            ds = MNIST(root, split)
        except FileNotFoundError:
            continue
        describe(f"{root} [{split or 'unprefixed files'}]", ds)
        print(f"  image size: {tuple(ds.images.shape[2:])}")
        found += 1
    if not found:
        raise FileNotFoundError(
            f"no MNIST idx files in {root}; fetch them with `python -m datasets.mnist --root DIR`"
        )


def fetch(root: Path) -> None:
    for name, checksum in FILES.items():
        for i, mirror in enumerate(MIRRORS):
            try:
                download(mirror + name, root / name, checksum)
                break
            except SystemExit as exc:
                if i == len(MIRRORS) - 1:
                    raise
                print(f"  {exc}; trying the next mirror")


def main(argv: list[str] | None = None) -> int:
    parser, _ = prepare_parser("mnist", __doc__, "folder to download into")
    args = parser.parse_args(argv)
    if args.check:
        return run_check(check, args.check)
    fetch(Path(args.root).expanduser())
    return run_check(check, args.root)


if __name__ == "__main__":
    raise SystemExit(main())
