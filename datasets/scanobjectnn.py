"""ScanObjectNN ``h5_files`` (main_split, main_split_nobg).

python -m datasets.scanobjectnn                     # print how to obtain it (request form, no mirror)
python -m datasets.scanobjectnn --check DATA/h5_files
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pointcoc.data import SCANOBJECTNN_VARIANTS, ScanObjectNN

from ._common import describe, run_check

STEPS = """ScanObjectNN is distributed by its authors after a terms-of-use request; there is no public mirror.
  1. Read the terms and fill in the request form linked from https://hkust-vgd.github.io/scanobjectnn/
  2. Download h5_files.zip from the link you receive by e-mail.
  3. Unpack it:  unzip h5_files.zip -d DATA   (gives DATA/h5_files/main_split, main_split_nobg, ...)
  4. Validate:   python -m datasets.scanobjectnn --check DATA/h5_files
  5. Use it:     build_dataset("scanobjectnn", "DATA/h5_files", split="train", variant="PB_T50_RS")
"""


def check(root: Path) -> None:
    """Load every variant present (with and without background) and report it."""
    found = 0
    for variant, (folder, _) in SCANOBJECTNN_VARIANTS.items():
        for background in (True, False) if variant.startswith("PB") else (folder == "main_split",):
            for split in ("train", "test"):
                try:
                    ScanObjectNN.file_for(root, split, variant, background)
                except FileNotFoundError:
                    continue
                ds = ScanObjectNN(root, split, variant, num_points=1, background=background)
                describe(f"{ds.file} [{variant}{'' if background else ', no background'}, {split}]", ds)
                found += 1
    if not found:
        raise FileNotFoundError(f"no ScanObjectNN h5 files under {root}/main_split or main_split_nobg; "
                                "point --check at the unpacked h5_files folder")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m datasets.scanobjectnn", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--check", metavar="ROOT", help="validate an existing h5_files folder and report")
    args = parser.parse_args(argv)
    if args.check:
        return run_check(check, args.check)
    print(STEPS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
