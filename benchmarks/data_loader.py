"""Data-loader throughput: samples/s through a DataLoader, training transforms on.

Run from the repository root::

    python -m benchmarks.data_loader                                   # embedded procedural shapes
    python -m benchmarks.data_loader --name modelnet10 --root ../shared/data/modelnet10_hdf5_1024 --workers 2
"""

from __future__ import annotations

import argparse
import time

from pointcoc.data import build_dataset, build_loader


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", default="procedural")
    parser.add_argument("--root", default=None)
    parser.add_argument("--split", default="train")
    parser.add_argument("--num-points", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--pin-memory", action="store_true")
    parser.add_argument("--epochs", type=int, default=2, help="the first epoch includes worker start-up")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    kwargs = {} if args.name in ("imagefolder", "mnist", "digits") else {"num_points": args.num_points}
    dataset = build_dataset(args.name, args.root, args.split, **kwargs)
    print(f"{args.name}: {len(dataset)} samples loaded in {time.perf_counter() - start:.2f} s")
    loader = build_loader(dataset, args.batch_size, train=True, num_workers=args.workers,
                          pin_memory=args.pin_memory, seed=0)  # fmt: skip
    for epoch in range(args.epochs):
        start, seen = time.perf_counter(), 0
        for batch, _ in loader:
            seen += batch.shape[0]
        elapsed = time.perf_counter() - start
        print(f"epoch {epoch}: {seen} samples in {elapsed:.2f} s = {seen / elapsed:,.0f} samples/s "
              f"(workers={args.workers}, pin_memory={args.pin_memory}, batch={args.batch_size})")  # fmt: skip


if __name__ == "__main__":
    main()
