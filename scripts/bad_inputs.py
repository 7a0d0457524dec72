"""Try ~100 bad inputs on the installed ``prunerun`` command and print a markdown table: the input,
the exit status, seconds, lines on stderr and the message.

    python scripts/bad_inputs.py [--out table.md] [--only SUBSTRING]

Every case runs in a fresh folder with a small training (20 updates), so a case that is wrongly
accepted finishes quickly; data cases write the real on-disk formats (IDX, CIFAR pickles, class
folders) into a temp folder and break them. A row marked ✗ is a defect: a traceback, more than one
line, an exit status other than 2, or a file of the earlier run changed.
"""
from __future__ import annotations

import argparse
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

TINY = ["train.steps=20", "train.eval_every=10", "schedule.finetune_steps=3", "schedule.final_finetune_steps=6",
        "measure.every=10", "measure.subset=64", "measure.batch_size=32", "device=cpu"]
Setup = Callable[[Path], list[str]]  # writes what the case needs below a folder; returns extra overrides


def none(_: Path) -> list[str]:
    return []


def below_a_file(key: str) -> Setup:
    def setup(root: Path) -> list[str]:
        (root / "a_file").write_text("mine\n")
        return [f"{key}={root / 'a_file' / 'x'}"]
    return setup


def a_file_as(key: str) -> Setup:
    def setup(root: Path) -> list[str]:
        (root / "a_file").write_text("mine\n")
        return [f"{key}={root / 'a_file'}"]
    return setup


def missing_root(dataset: str) -> Setup:
    return lambda root: [f"dataset={dataset}", f"dataset.root={root / 'nothing_here'}"]


def mnist_idx(truncate: str | None = None, drop: str | None = None) -> Setup:
    """A real MNIST raw folder (the embedded MNIST-5k written as IDX files), then one file cut or removed."""
    def setup(root: Path) -> list[str]:
        from prunerun.data.mnist import ensure_mnist5k

        ensure_mnist5k(root / "mnist")
        raw = next((root / "mnist").rglob("train-images-idx3-ubyte")).parent
        if truncate:
            data = (raw / truncate).read_bytes()
            (raw / truncate).write_bytes(data[: len(data) // 3])
        if drop:
            (raw / drop).unlink()
        return ["dataset=mnist", f"dataset.root={root / 'mnist'}", "dataset.train_size=200", "dataset.test_size=100"]
    return setup


def cifar_pickles(truncate: str | None = None, garbage: str | None = None) -> Setup:
    """CIFAR-10's python folder with small real-format batches, then one cut or replaced by random bytes."""
    def setup(root: Path) -> list[str]:
        import numpy as np

        folder = root / "cifar" / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for name in names:
            batch = {b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), b"labels": list(range(10)) * 2}
            (folder / name).write_bytes(pickle.dumps(batch))
        (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [str(i).encode() for i in range(10)]}))
        if truncate:
            data = (folder / truncate).read_bytes()
            (folder / truncate).write_bytes(data[: len(data) // 2])
        if garbage:
            (folder / garbage).write_bytes(os.urandom(5000))
        return ["dataset=cifar10", f"dataset.root={root / 'cifar'}", "model=small_cnn_cifar", "dataset.train_size=60",
                "dataset.val_size=0", "dataset.test_size=-1", "measure.subset=32"]
    return setup


def image_folders(empty_class: bool = False, broken_image: bool = False) -> Setup:
    """An ImageNet layout (train/ and val/ with class folders of JPEGs), then one class emptied or one image cut."""
    def setup(root: Path) -> list[str]:
        from PIL import Image

        for split in ("train", "val"):
            for cls in ("n01", "n02"):
                folder = root / "imagenet" / split / cls
                folder.mkdir(parents=True)
                for i in range(3):
                    Image.new("RGB", (40, 40), (i * 60, 30, 90)).save(folder / f"{cls}_{i}.JPEG")
        if empty_class:
            for image in (root / "imagenet" / "train" / "n02").iterdir():
                image.unlink()
        if broken_image:
            image = root / "imagenet" / "train" / "n01" / "n01_0.JPEG"
            image.write_bytes(image.read_bytes()[:60])
        return ["dataset=imagenet", f"dataset.root={root / 'imagenet'}", "model=small_cnn_cifar", "dataset.image_size=32",
                "dataset.val_size=0", "measure.subset=2", "measure.batch_size=2", "train.batch_size=2", "train.steps=4",
                "train.eval_every=2", "measure.every=0", "prune.fraction=0.1"]
    return setup


def good_run(root: Path, *overrides: str) -> None:
    """A run that must succeed (the setting up of a case)."""
    subprocess.run(["prunerun", *TINY, *overrides], cwd=root, capture_output=True, check=True, timeout=600)


def finished_run_of(*overrides: str) -> Setup:
    """A folder holding the finished run of ``overrides``; the case then runs another config into it."""
    def setup(root: Path) -> list[str]:
        good_run(root, f"hydra.run.dir={root / 'run'}", *overrides)
        return []
    return setup


def corrupt_checkpoint(root: Path) -> list[str]:
    """An unfinished run of the same config, its dense.ckpt replaced by random bytes."""
    out = root / "run"
    good_run(root, f"hydra.run.dir={out}")
    (out / "done.json").unlink()
    (out / "dense.ckpt").write_bytes(os.urandom(2000))
    return []


def corrupt_cache_entry(root: Path) -> list[str]:
    good_run(root, f"hydra.run.dir={root / 'first'}", f"cache.dir={root / 'cache'}")
    for entry in (root / "cache").glob("*.pt"):
        entry.write_bytes(os.urandom(3000))
    return [f"cache.dir={root / 'cache'}"]


CASES: list[tuple[str, list[str], Setup]] = [
    # group choices
    *[(f"unknown {g}", [f"{g}=nope"], none) for g in ("dataset", "model", "scorer", "schedule")],
    ("typo of a scorer", ["scorer=tailor"], none),
    ("typo of a model", ["model=vgg"], none),
    ("unknown experiment", ["+experiment=nope"], none),
    ("unknown method", ["+method=nope"], none),
    ("empty group choice", ["scorer="], none),
    ("group chosen twice with +", ["+scorer=taylor"], none),
    ("group deleted", ["~scorer"], none),
    ("group deleted: model", ["~model"], none),
    # keys
    ("typo of a key", ["prune.fractoin=0.3"], none),
    ("typo of a key with +", ["+prune.fractoin=0.3"], none),
    ("typo of a key with ++", ["++train.stepz=3"], none),
    ("unknown section", ["+trian.steps=3"], none),
    ("unknown key in a dict value", ["train={a:1}"], none),
    ("unknown top-level key", ["+sead=1"], none),
    ("key with no name", ["=3"], none),
    ("deletion of nothing", ["~=0"], none),
    ("append with no key", ["+=[]"], none),
    # types and parsing
    ("float given text", ["prune.fraction=abc"], none),
    ("int given a float", ["train.steps=1.5"], none),
    ("int given text", ["seed=abc"], none),
    ("bool given text", ["prune.mean_replacement=maybe"], none),
    ("list given a scalar", ["measure.fractions=0.1"], none),
    ("unclosed bracket", ["scorer=["], none),
    ("unclosed quote", ["train.lr='0.1"], none),
    ("missing value interpolation", ["train.steps=${nope}"], none),
    ("sweep syntax without -m", ["seed=0,1"], none),
    # ranges and choices
    ("negative seed", ["seed=-1"], none),
    ("seed 2**40", ["seed=1099511627776"], none),
    ("fraction above 1", ["prune.fraction=1.5"], none),
    ("fraction 1", ["prune.fraction=1"], none),
    ("negative fraction", ["prune.fraction=-0.1"], none),
    ("fraction 0.999 of units", ["prune.fraction=0.999"], none),
    ("zero steps", ["train.steps=0"], none),
    ("negative steps", ["train.steps=-5"], none),
    ("zero batch", ["train.batch_size=0"], none),
    ("negative lr", ["train.lr=-1"], none),
    ("momentum 1.5", ["train.momentum=1.5"], none),
    ("zero eval_every", ["train.eval_every=0"], none),
    ("nan lr", ["train.lr=nan"], none),
    ("inf lr", ["train.lr=inf"], none),
    ("unknown device", ["device=tpu"], none),
    ("cuda on a machine without one", ["device=cuda"], none),
    ("cuda:9", ["device=cuda:9"], none),
    ("unknown selection", ["prune.selection=nope"], none),
    ("unknown normalization", ["prune.normalization=nope"], none),
    ("unknown level", ["prune.level=nope"], none),
    ("unknown decay", ["prune.decay=cubic"], none),
    ("unknown saliency loss", ["prune.saliency_loss=mse"], none),
    ("unknown measured scorer", ["measure.scorers=[nope]"], none),
    ("unknown correlated scorer", ["correlate.enabled=true", "correlate.scorers=[nope]"], none),
    ("unknown correlation reference", ["correlate.enabled=true", "correlate.reference=nope"], none),
    ("unknown measured layer", ["measure.layers=[conv9]"], none),
    ("measured fraction 1.5", ["measure.fractions=[1.5]"], none),
    ("negative measure.every", ["measure.every=-1"], none),
    ("measure subset larger than the split", ["measure.subset=100000"], none),
    ("unknown measure split", ["measure.split=dev"], none),
    ("unknown bn_mode", ["measure.bn_mode=frozen"], none),
    ("unknown weight scorer", ["measure.weight_scorers=[nope]"], none),
    ("correlation of a scheduled run", ["correlate.enabled=true", "schedule=scheduled"], none),
    ("scheduled step after the last update", ["schedule=scheduled", "schedule.at=[1000]", "schedule.at_unit=step",
                                              "schedule.fractions=[0.2]"], none),
    ("scheduled at and fractions of different lengths", ["schedule=scheduled", "schedule.at=[1,2]",
                                                         "schedule.fractions=[0.2]"], none),
    ("unknown at_unit", ["schedule=scheduled", "schedule.at_unit=week"], none),
    ("attack on an unknown layer", ["attack.layer=conv9"], none),
    ("attack on a unit out of range", ["attack.layer=conv1", "attack.unit=99"], none),
    ("negative split size", ["dataset.train_size=-3"], none),
    ("split sizes above the dataset", ["dataset.train_size=100000"], none),
    ("val_fraction 1", ["dataset.val_fraction=1.0"], none),
    ("image_size on MNIST", ["dataset.image_size=64"], none),
    ("unknown pretrained weights", ["model.weights=IMAGENET9"], none),
    ("model checkpoint that does not exist", ["model.checkpoint=/nonexistent.pt"], none),
    ("weight scorer at unit level", ["scorer=snip", "prune.level=unit"], none),
    # folders
    ("output folder below a file", [], below_a_file("hydra.run.dir")),
    ("output folder is a file", [], a_file_as("hydra.run.dir")),
    ("output folder under /proc", ["hydra.run.dir=/proc/prunerun"], none),
    ("sweep folder below a file", ["-m", "seed=0,1"], below_a_file("hydra.sweep.dir")),
    ("cache.dir is a file", [], a_file_as("cache.dir")),
    ("cache.dir below a file", [], below_a_file("cache.dir")),
    ("cache.dir under /proc", ["cache.dir=/proc/prunerun"], none),
    ("folder of finished results of another config", ["seed=1"], finished_run_of()),
    ("corrupt dense.ckpt of an unfinished run", [], corrupt_checkpoint),
    ("corrupt cache entry", [], corrupt_cache_entry),
    # sweeps
    ("bad swept value", ["-m", "prune.fraction=0.1,1.5"], none),
    ("bad swept group choice", ["-m", "scorer=taylor,nope"], none),
    ("bad swept seed", ["-m", "seed=0,-1"], none),
    ("sweep of an unparsable value", ["-m", "seed=0,["], none),
    # data
    *[(f"{d}: no data under root", [], missing_root(d)) for d in
      ("mnist", "cifar10", "cifar100", "imagenet", "tiny_imagenet", "birds200", "flowers102", "nvgesture")],
    ("mnist: truncated train images", [], mnist_idx(truncate="train-images-idx3-ubyte")),
    ("mnist: truncated test labels", [], mnist_idx(truncate="t10k-labels-idx1-ubyte")),
    ("mnist: test images missing", [], mnist_idx(drop="t10k-images-idx3-ubyte")),
    ("cifar10: truncated batch", [], cifar_pickles(truncate="data_batch_3")),
    ("cifar10: random bytes for the test batch", [], cifar_pickles(garbage="test_batch")),
    ("imagenet: a class folder without images", [], image_folders(empty_class=True)),
    ("imagenet: a truncated JPEG", [], image_folders(broken_image=True)),
    ("download for a dataset that cannot be downloaded", ["dataset=imagenet", "dataset.download=true"], none),
]


def run_case(name: str, args: list[str], setup: Setup, root: Path) -> dict:
    earlier = root / "earlier.csv"
    earlier.write_text("kept\n")
    extra = setup(root)
    sweep = "-m" in args
    out = [] if any(a.startswith("hydra.run.dir") for a in args + extra) or sweep else [f"hydra.run.dir={root / 'run'}"]
    sweep_dir = [] if any(a.startswith("hydra.sweep.dir") for a in args + extra) or not sweep else \
        [f"hydra.sweep.dir={root / 'sweep'}"]
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and p.suffix != ".log"}
    start = time.perf_counter()
    result = subprocess.run(["prunerun", *TINY, *extra, *args, *out, *sweep_dir], cwd=root, capture_output=True,
                            text=True, timeout=900)
    seconds = time.perf_counter() - start
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    changed = [p for p, data in before.items() if not p.exists() or p.read_bytes() != data]
    message = lines[-1] if lines else "(accepted)" if result.returncode == 0 else "(nothing)"
    good = result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr and not changed
    return {"case": name, "command": " ".join(args), "exit": result.returncode, "seconds": seconds, "lines": len(lines),
            "message": message.removeprefix("prunerun: error: "), "good": good or result.returncode == 0 and not changed,
            "changed": len(changed)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    rows = []
    for name, overrides, setup in CASES:
        if args.only not in name:
            continue
        root = Path(tempfile.mkdtemp(prefix="bad_input_"))
        try:
            rows.append(run_case(name, overrides, setup, root))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        row = rows[-1]
        print(f"{'✓' if row['good'] else '✗'} {row['case']}: exit {row['exit']}, {row['seconds']:.1f} s, "
              f"{row['message'][:140]}", file=sys.stderr)
    table = ["| | input | command line | exit | s | message |", "|---|---|---|---|---|---|"]
    table += [f"| {'✓' if r['good'] else '✗'} | {r['case']} | `{r['command']}` | {r['exit']} | {r['seconds']:.1f} | "
              f"{r['message'].replace('|', '/')} |" for r in rows]
    text = "\n".join(table) + f"\n\n{sum(r['good'] for r in rows)}/{len(rows)} as they should be\n"
    (args.out.write_text(text) if args.out else print(text))
    return 0 if all(r["good"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
