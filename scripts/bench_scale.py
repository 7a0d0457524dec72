"""The runner at the papers' scale: updates per second against a minimal hand-written loop.

For each paper setting, in one process: the runner's dense training (``Job.train`` with the
setting's dataset, model, batch and ``train.precision``) against a plain PyTorch loop with the same
model, optimizer, precision and batch on pre-loaded device tensors; the share of a runner step
spent drawing its batch; and the device-hours the paper's whole experiment would take at the
runner's speed (updates per run × runs). CIFAR-10 is written to a temporary folder as real
pickles (random pixels, torchvision's layout), so the runner's real data path (uint8 images on the
device, cropped and flipped there) is measured; Birds-200 and ImageNet settings use
``dataset=synthetic`` at their real shape and class count. Targets: runner ÷ hand loop ≥ 0.95 on
the CPU (small models), ≥ 0.9 on a GPU; data ≤ 5% of a step for the in-memory datasets.

    python scripts/bench_scale.py [--settings force mrp molchanov resnet50] [--device auto]
        [--precision fp32] [--steps 20] [--rounds 3] [--batch-scale 1.0] [--threads N]
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from torchvision.datasets import CIFAR10

from prunerun.cli import CONFIG_DIR
from prunerun.config import to_config
from prunerun.config.hydra import register_configs
from prunerun.precision import make_precision
from prunerun.runner import resolve_device
from prunerun.runner.job import build_job
from prunerun.train import make_optimizer

# setting → overrides, batch, and the paper's experiment: updates per run × runs (what it counts)
SETTINGS = {
    "force": (["model=vgg19_cifar", "dataset=cifar10"], 128, 123_200, 90,
              "FORCE: VGG-19 / CIFAR-10, 350 epochs × 352 updates; 5 methods × 6 sparsities × 3 seeds"),
    "mrp": (["model=medium_conv", "dataset=cifar10"], 64, 35_000, 8, "MRP: MEDIUM_CONV / CIFAR-10, 35k updates × 8 seeds"),
    "molchanov": (["model=vgg16", "dataset=synthetic", "dataset.image_size=224", "dataset.classes=200",
                   "dataset.train_size=2048"], 32, 120_000, 5,
                  "Molchanov: VGG-16 / Birds-200 224², ~4,000 maps one at a time × 30 updates; 5 criteria"),
    "resnet50": (["model=resnet50", "dataset=synthetic", "dataset.image_size=224", "dataset.classes=1000",
                  "dataset.train_size=2048"], 256, 450_450, 1, "ResNet-50 / ImageNet: 90 epochs × 5,005 updates"),
}


def write_cifar10(root: Path, per_batch: int = 2000) -> None:
    """CIFAR-10 pickles in torchvision's layout (random pixels), and their md5s registered."""
    folder = root / CIFAR10.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [name for name, _ in CIFAR10.train_list] + [CIFAR10.test_list[0][0]]
    for name in names:
        entry = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, per_batch).tolist()}
        (folder / name).write_bytes(pickle.dumps(entry))
    (folder / CIFAR10.meta["filename"]).write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    md5 = {path.name: hashlib.md5(path.read_bytes()).hexdigest() for path in folder.iterdir()}
    CIFAR10.train_list = [[name, md5[name]] for name, _ in CIFAR10.train_list]
    CIFAR10.test_list = [[name, md5[name]] for name, _ in CIFAR10.test_list]
    CIFAR10.meta = {**CIFAR10.meta, "md5": md5[CIFAR10.meta["filename"]]}


def build(setting: str, args, data_root: Path):
    overrides, batch, *_ = SETTINGS[setting]
    batch = max(1, round(batch * args.batch_scale))
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = to_config(compose("config", overrides=[
            *overrides, f"train.batch_size={batch}", f"train.precision={args.precision}", f"device={args.device}",
            f"dataset.root={data_root}", "dataset.val_size=0", "dataset.test_size=500", "measure.every=0",
            "train.lr=0.01", "cache.enabled=false"]))
    device = resolve_device(args.device)
    return build_job(cfg, data_root / "run", "", device, "unit"), batch, device


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, steps: int, device: torch.device) -> float:
    """Seconds per call of ``function`` over ``steps`` calls, after two warm-up calls."""
    for _ in range(2):
        function()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        function()
    sync(device)
    return (time.perf_counter() - start) / steps


def hand_loop_step(model, optimizer, x, y, precision):
    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with precision.autocast():
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        (loss if precision.scaler is None else precision.scaler.scale(loss)).backward()
        if precision.scaler is None:
            optimizer.step()
        else:
            precision.scaler.step(optimizer)
            precision.scaler.update()
    return step


def measure(setting: str, args, data_root: Path) -> dict:
    job, batch, device = build(setting, args, data_root)
    plain = copy.deepcopy(job.model).train()
    t = job.cfg.train
    optimizer = make_optimizer(plain, t.lr, t.momentum, t.weight_decay, t.optimizer)
    x, y = next(job.batches)
    hand = hand_loop_step(plain, optimizer, x.clone(), y.clone(), make_precision(args.precision, device))
    runner = lambda: job.train(1, t.lr, "train", job.optimizer)  # noqa: E731
    runner_s, hand_s = [], []
    for _ in range(args.rounds):  # interleaved, the best of each kept
        runner_s.append(timed(runner, args.steps, device))
        hand_s.append(timed(hand, args.steps, device))
    data_s = timed(lambda: next(job.batches), args.steps, device)
    return dict(batch=batch, runner=min(runner_s), hand=min(hand_s), data=data_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--steps", type=int, default=20, help="timed updates per measurement")
    parser.add_argument("--batch-scale", type=float, default=1.0, help="batch = the paper's × this (what fits)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved measurements of each loop, best kept")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    register_configs()
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{name}, {args.precision}, {args.steps} timed updates per measurement")
    print("| setting | batch | runner ms/update | hand loop ms/update | hand ÷ runner | data share of a step "
          "| paper's experiment | device-hours at this speed |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        write_cifar10(Path(folder))
        for setting in args.settings:
            r = measure(setting, args, Path(folder))
            *_, updates, runs, what = SETTINGS[setting]
            hours = r["runner"] * updates * runs / 3600 * SETTINGS[setting][1] / r["batch"]
            print(f"| {setting} | {r['batch']} | {1e3 * r['runner']:.1f} | {1e3 * r['hand']:.1f} | "
                  f"{r['hand'] / r['runner']:.3f} | {r['data'] / r['runner']:.1%} | {what} | {hours:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
