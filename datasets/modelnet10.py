"""ModelNet10: Princeton's mesh release, sampled into the ``modelnet40_ply_hdf5_2048`` layout.

    python -m datasets.modelnet10 --root DATA                 # download ModelNet10.zip, sample to hdf5
    python -m datasets.modelnet10 --convert DATA/ModelNet10 --out DATA/modelnet10_hdf5_1024
    python -m datasets.modelnet10 --check DATA/modelnet10_hdf5_1024

Sampling: area-weighted uniform points on each mesh, centred and scaled into the unit sphere (the official
hdf5 convention), one seeded stream per mesh so that the output is reproducible. No pose alignment.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from pointcoc.data.mesh import sample_meshes

from ._common import download, prepare_parser, run_check, unpack_zip
from .modelnet40 import check as check_h5

URL = "http://3dvision.princeton.edu/projects/2014/3DShapeNets/ModelNet10.zip"
EXPECTED = {"train": 3991, "test": 908}


def check(root: Path) -> None:
    check_h5(root, EXPECTED)


def convert(off_root: Path, out: Path, points: int = 1024, seed: int = 0) -> Path:
    """Sample ``<off_root>/<class>/<split>/*.off`` into ``out`` (written in a temp folder, then renamed)."""
    import h5py

    if out.exists():
        raise SystemExit(f"{out} exists; remove it or pick another --out")
    if not off_root.is_dir():
        raise SystemExit(f"{off_root} does not exist; download ModelNet10.zip first (see --root)")
    classes = sorted(p.name for p in off_root.iterdir() if p.is_dir())
    if not classes:
        raise SystemExit(f"{off_root} has no class folders; expected <class>/<split>/*.off")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".convert-") as tmp:
        staging = Path(tmp) / out.name
        staging.mkdir()
        (staging / "shape_names.txt").write_text("\n".join(classes) + "\n")
        for split in ("train", "test"):
            files = [f for c in classes for f in sorted((off_root / c / split).glob("*.off"))]
            if not files:
                continue
            print(f"  sampling {len(files)} {split} meshes to {points} points")
            labels = np.asarray([classes.index(f.parent.parent.name) for f in files], dtype=np.uint8)[:, None]
            with h5py.File(staging / f"ply_data_{split}0.h5", "w") as h5:
                h5.create_dataset("data", data=sample_meshes(files, points, seed))
                h5.create_dataset("label", data=labels)
            (staging / f"{split}_files.txt").write_text(f"{out.name}/ply_data_{split}0.h5\n")
        shutil.move(str(staging), out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser, group = prepare_parser(
        "modelnet10", __doc__, "folder to download ModelNet10.zip into and write the hdf5 folder in"
    )
    group.add_argument("--convert", metavar="OFF_ROOT", help="sample an existing ModelNet10 mesh folder")
    parser.add_argument("--out", help="output folder for --convert")
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--sha256", help="expected sha256 of ModelNet10.zip")
    args = parser.parse_args(argv)
    if args.check:
        return run_check(check, args.check)
    if args.convert:
        if not args.out:
            parser.error("--convert needs --out")
        out = convert(Path(args.convert).expanduser(), Path(args.out).expanduser(), args.points)
    else:
        root = Path(args.root).expanduser()
        archive = download(URL, root / "ModelNet10.zip", f"sha256:{args.sha256}" if args.sha256 else None)
        meshes = unpack_zip(archive, root, "ModelNet10")
        out = convert(meshes, root / f"modelnet10_hdf5_{args.points}", args.points)
    return run_check(check, str(out))


if __name__ == "__main__":
    raise SystemExit(main())
