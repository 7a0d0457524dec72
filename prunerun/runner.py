"""The single runner: build → train dense (measuring penalties) → prune per schedule → fine-tune
→ evaluate → write CSVs and the run's plot."""
from __future__ import annotations

import logging
import random
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset
from tqdm import tqdm

from prunerun.config import Config
from prunerun.data import DataSplits, build_dataset
from prunerun.errors import UserError
from prunerun.figures.run_plots import plot_run
from prunerun.measure.flops import layer_costs, output_sizes
from prunerun.measure.penalties import PenaltyMeasurer
from prunerun.models import build_model
from prunerun.pruning import alive_units, remove_selected, unit_layers, units_kept, units_total
from prunerun.results import METRICS_COLUMNS, PENALTIES_COLUMNS, PRUNING_COLUMNS, CsvTable, check_fresh, run_identifiers
from prunerun.schedules import get_schedule
from prunerun.scorers import Scorer, ScoringContext, get_scorer
from prunerun.scorers.selection import units_to_remove
from prunerun.scorers.stats import finish_all, gather_stats
from prunerun.train import Batch, RunningMean, backward_only, endless_batches, evaluate, make_optimizer, train_step

log = logging.getLogger("prunerun")


def seed_everything(seed: int) -> None:
    """Seed every global generator at the start of a job (launchers reuse processes)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when present; a CUDA device must exist here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"device={name} is not a device name; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise UserError(f"device={name} but CUDA is not available here; use device=cpu or device=auto")
        if device.index is not None and device.index >= count:
            raise UserError(f"device={name} but this machine has {count} CUDA device(s); use cuda:0 to cuda:{count - 1}")
    return device


def to_device(splits: DataSplits, device: torch.device) -> DataSplits:
    move = lambda d: TensorDataset(*(t.to(device) for t in d.tensors))  # noqa: E731
    return DataSplits(move(splits.train), move(splits.val), move(splits.test), splits.num_classes, splits.input_shape)


@dataclass
class Run:
    """What the phases of one run share."""

    cfg: Config
    model: nn.Module
    data: DataSplits
    batches: Iterator[Batch]
    metrics: CsvTable
    pruning: CsvTable
    sizes: dict[str, tuple[int, ...]]
    step: int = 0

    def evaluate(self, split: str) -> tuple[float, float]:
        return evaluate(self.model, self.data.split(split), self.cfg.train.eval_batch_size)

    def train(self, updates: int, lr: float, phase: str, optimizer: torch.optim.Optimizer | None = None,
              on_step: Callable[[int], None] | None = None) -> torch.optim.Optimizer:
        """``updates`` SGD steps; logs running train and val metrics every ``train.eval_every`` steps."""
        t = self.cfg.train
        optimizer = optimizer or make_optimizer(self.model, lr, t.momentum, t.weight_decay)
        running = RunningMean()
        self.model.train()
        for _ in tqdm(range(updates), desc=phase, disable=None, leave=False):
            x, y = next(self.batches)
            running.add(*train_step(self.model, optimizer, x, y), len(y))
            self.step += 1
            if self.step % t.eval_every == 0:
                self._log_metrics(phase, running.pop())
            if on_step is not None:
                on_step(self.step)
        return optimizer

    def _log_metrics(self, phase: str, train_batches: tuple[float, float] | None) -> None:
        rows = []
        if train_batches is not None:
            rows.append(dict(phase=phase, step=self.step, split="train_batches", loss=train_batches[0], accuracy=train_batches[1]))
        val_loss, val_acc = self.evaluate("val")
        rows.append(dict(phase=phase, step=self.step, split="val", loss=val_loss, accuracy=val_acc))
        self.metrics.add(rows)
        self.model.train()

    def evaluate_all(self, phase: str) -> dict[str, tuple[float, float]]:
        """Loss and accuracy on train/val/test, recorded in metrics.csv."""
        results = {split: self.evaluate(split) for split in ("train", "val", "test")}
        self.metrics.add([dict(phase=phase, step=self.step, split=s, loss=l, accuracy=a) for s, (l, a) in results.items()])
        return results

    def record_pruning(self, iteration: int, phase: str) -> None:
        """Units kept, params and FLOPs per layer plus val/test accuracy, in pruning.csv."""
        (val_loss, val_acc), (test_loss, test_acc) = self.evaluate("val"), self.evaluate("test")
        scores = dict(val_loss=val_loss, val_accuracy=val_acc, test_loss=test_loss, test_accuracy=test_acc)
        costs = layer_costs(self.model, self.sizes)
        kept, total = units_kept(self.model), units_total(self.model)
        base = dict(iteration=iteration, step=self.step, phase=phase, **scores)
        rows = [
            dict(base, layer=layer.name, units_kept=kept[layer.name], units_total=total[layer.name],
                 params=costs[layer.producer][0], flops=costs[layer.producer][1])
            for layer in unit_layers(self.model)
        ]
        rows.append(dict(base, layer="total", units_kept=sum(kept.values()), units_total=sum(total.values()),
                         params=sum(p for p, _ in costs.values()), flops=sum(f for _, f in costs.values())))
        self.pruning.add(rows)


def prune_per_schedule(run: Run, scorer: Scorer, generator: torch.Generator) -> None:
    """Repeat {fine-tune while gathering statistics → score → remove}, then fine-tune."""
    cfg = run.cfg
    plan = get_schedule(cfg.schedule.name)(cfg.schedule, cfg.prune.fraction, sum(units_total(run.model).values()))
    needs_stats = scorer.needs_data or cfg.prune.mean_replacement
    optimizer = None
    run.record_pruning(0, "dense")
    for iteration, fraction in enumerate(tqdm(plan, desc="pruning", disable=None, leave=False), start=1):
        with gather_stats(run.model, scorer.per_example) if needs_stats else nullcontext({}) as collectors:
            if cfg.schedule.finetune_steps:
                optimizer = run.train(cfg.schedule.finetune_steps, cfg.prune.lr, "finetune", optimizer)
            elif needs_stats:
                backward_only(run.model, [next(run.batches) for _ in range(cfg.prune.score_batches)])
        stats = finish_all(collectors) if needs_stats else {}
        batches = [next(run.batches) for _ in range(cfg.prune.score_batches)] if scorer.needs_batches else []
        scores = scorer(ScoringContext(run.model, stats, generator, batches, cfg.scorer))
        remove = units_to_remove(scores, alive_units(run.model), fraction, cfg.prune.selection, cfg.prune.normalization)
        fills = {name: layer_stats.mean_z for name, layer_stats in stats.items()} if cfg.prune.mean_replacement else None
        remove_selected(run.model, remove, fills)
        run.record_pruning(iteration, "pruned")
    if plan and cfg.schedule.final_finetune_steps:
        run.train(cfg.schedule.final_finetune_steps, cfg.prune.lr, "finetune", optimizer)
        run.record_pruning(len(plan) + 1, "finetuned")


def run(cfg: Config, out_dir: Path, overrides: str = "") -> dict:
    """Run one experiment into ``out_dir``; returns the summary it prints."""
    check_fresh(out_dir)
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    scorer = get_scorer(cfg.scorer.name)
    get_schedule(cfg.schedule.name)
    data = to_device(build_dataset(cfg.dataset, cfg.seed), device)
    model = build_model(cfg.model.name, data.num_classes, data.input_shape).to(device)
    measurer = PenaltyMeasurer.create(cfg.measure, cfg.train, model, data, cfg.seed) if cfg.measure.every else None
    log.info("%s on %s (%d/%d/%d examples), device %s", cfg.model.name, cfg.dataset.name,
             *(len(data.split(s).tensors[1]) for s in ("train", "val", "test")), device)

    out_dir.mkdir(parents=True, exist_ok=True)
    ids = run_identifiers(cfg, overrides)
    penalties = CsvTable(out_dir / "penalties.csv", PENALTIES_COLUMNS, ids)
    run = Run(cfg, model, data, endless_batches(data.train, cfg.train.batch_size, torch.Generator().manual_seed(cfg.seed)),
              CsvTable(out_dir / "metrics.csv", METRICS_COLUMNS, ids),
              CsvTable(out_dir / "pruning.csv", PRUNING_COLUMNS, ids), output_sizes(model, data.input_shape))

    def measure(step: int) -> None:
        if measurer is not None and step % cfg.measure.every == 0:
            penalties.add(measurer(run.model, step))

    run.train(cfg.train.steps, cfg.train.lr, "train", on_step=measure)
    dense = run.evaluate_all("dense")
    prune_per_schedule(run, scorer, torch.Generator().manual_seed(cfg.seed + 1))
    pruned = run.evaluate_all("pruned")
    torch.save(run.model.state_dict(), out_dir / "model.pt")
    plot_run(out_dir)
    summary = dict(dense=dense, pruned=pruned, kept=units_kept(run.model), total=units_total(run.model), out_dir=out_dir)
    log_summary(summary)
    return summary


def log_summary(summary: dict) -> None:
    for phase in ("dense", "pruned"):
        loss, acc = summary[phase]["test"]
        log.info("%-6s test accuracy %.2f%%  loss %.4f", phase, 100 * acc, loss)
    kept = ", ".join(f"{name} {summary['kept'][name]}/{summary['total'][name]}" for name in summary["kept"])
    log.info("units kept: %s", kept)
    log.info("results in %s", summary["out_dir"])
