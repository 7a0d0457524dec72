"""The DataLoader path against a plain torchvision DataLoader, same transforms and workers.

ImageNet in its plain class-folder layout is written to a temporary folder (random JPEGs of
``--side`` pixels); prunerun's training split (``dataset=imagenet``: random-resized crop 224 and
flip, seeded per example, one persistent DataLoader per batch stream) and torchvision's
``ImageFolder`` + ``DataLoader(shuffle=True, persistent_workers=True)`` with the same transform each
make full passes, interleaved, after one warm-up pass each (files in the page cache). Prints the
seconds per batch and prunerun's throughput ÷ torchvision's (target ≥ 0.95), for each worker count.

    python scripts/bench_data.py [--images 1024] [--batch 64] [--side 256] [--workers 0 2] [--rounds 3]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from prunerun.config import DatasetConfig
from prunerun.data import build_dataset
from prunerun.data.images import crop_transforms
from prunerun.train import iterate_batches


def write_images(root: Path, count: int, side: int, classes: int = 8) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", count), ("val", classes)):
        for i in range(n):
            folder = root / split / f"class{i % classes}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.JPEG", quality=90)


def seconds_per_batch(batches) -> float:
    start, count = time.perf_counter(), 0
    for _ in batches:
        count += 1
    return (time.perf_counter() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="*", default=[0, 2])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.images} JPEGs of {args.side}², batch {args.batch}, random-resized crop 224 + flip, "
          f"{torch.get_num_threads()} threads")
    print("| workers | prunerun s/batch | torchvision s/batch | prunerun ÷ torchvision throughput |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        write_images(Path(folder), args.images, args.side)
        for workers in args.workers:
            cfg = DatasetConfig(name="imagenet", root=folder, augment=True, val_size=0, num_workers=workers)
            train = build_dataset(cfg, seed=0).train
            plain = DataLoader(ImageFolder(str(Path(folder) / "train"), crop_transforms(224, True)[0]),
                               batch_size=args.batch, shuffle=True, num_workers=workers,
                               persistent_workers=workers > 0)
            stream = torch.Generator().manual_seed(0)
            ours = lambda: iterate_batches(train, args.batch, stream)  # noqa: E731
            times = {"ours": [], "theirs": []}
            seconds_per_batch(ours()), seconds_per_batch(plain)  # warm-up: page cache, workers started
            for _ in range(args.rounds):
                times["ours"].append(seconds_per_batch(ours()))
                times["theirs"].append(seconds_per_batch(plain))
            mine, theirs = min(times["ours"]), min(times["theirs"])
            print(f"| {workers} | {mine:.4f} | {theirs:.4f} | {theirs / mine:.3f} |", flush=True)


if __name__ == "__main__":
    main()
