"""Where to take the random resized crop of full-resolution images: in the loader workers or batched.

Both ways decode every JPEG at full resolution and cut the same crop (timm's parameters, drawn once per
image and replayed), then resize it to 224:
- ``worker``: Pillow crops and resizes the decoded image (what ``ImageFolder`` does in each worker);
- ``batched``: the decoded image becomes a uint8 tensor (full resolution: images differ in size, so they
  travel to the augmentation step uncropped) and torch crops and resizes it there, here on the CPU.
Per image, median of ``--repeats`` rounds; the ratio batched / worker is printed. Images: ImageNet-sized
JPEGs (500x375 and 375x500 at quality 90, the ImageNet median size is about 500x400) made from the photos
in ../shared/data/photos.

Run from the repository root::

    python -m benchmarks.image_crop
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from pointcoc.data.images import RandomResizedCrop, load_rgb, pil_to_tensor

PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "photos"


def imagenet_like_jpegs(count: int) -> list[bytes]:
    from PIL import Image

    sources = [load_rgb(PHOTOS / n) for n in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")]
    out = []
    for i in range(count):
        size = (500, 375) if i % 2 == 0 else (375, 500)
        buffer = io.BytesIO()
        sources[i % len(sources)].resize(size, Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def decode(data: bytes):
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def worker_crop(data: bytes, box: tuple[int, int, int, int], crop: RandomResizedCrop) -> torch.Tensor:
    from PIL import Image

    top, left, h, w = box
    image = decode(data).crop((left, top, left + w, top + h))
    return pil_to_tensor(image.resize((crop.size, crop.size), Image.Resampling.BICUBIC))


def batched_crop(data: bytes, box: tuple[int, int, int, int], crop: RandomResizedCrop) -> torch.Tensor:
    full = pil_to_tensor(decode(data))  # what the loader would hand over
    top, left, h, w = box
    region = full[None, :, top : top + h, left : left + w].float()
    resized = F.interpolate(region, (crop.size, crop.size), mode="bicubic", antialias=True)
    return resized[0].round_().clamp_(0, 255).to(torch.uint8)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a loader worker uses 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    crop = RandomResizedCrop(224, interpolation="bicubic")
    jpegs = imagenet_like_jpegs(args.images)
    boxes = [crop.params(*decode(j).size) for j in jpegs]
    timings: dict[str, list[float]] = {"decode only": [], "worker": [], "batched": []}
    ways = {
        "decode only": lambda j, b: decode(j),
        "worker": lambda j, b: worker_crop(j, b, crop),
        "batched": lambda j, b: batched_crop(j, b, crop),
    }
    for _ in range(args.repeats):
        for name, way in ways.items():
            start = time.perf_counter()
            for j, b in zip(jpegs, boxes):
                way(j, b)
            timings[name].append((time.perf_counter() - start) / len(jpegs) * 1e3)
    median = {name: statistics.median(t) for name, t in timings.items()}
    for name, ms in median.items():
        print(f"{name:12s} {ms:7.2f} ms / image")
    print(f"batched / worker: {median['batched'] / median['worker']:.2f}x "
          f"({args.images} images, {args.repeats} rounds, {args.threads} torch thread(s))")  # fmt: skip


if __name__ == "__main__":
    main()
