"""The single runner: build → train (measuring penalties) → prune per schedule → fine-tune → evaluate
→ write CSVs and the run's plot. Units are pruned after dense training (one_shot, iterative) or
during it (scheduled); weights at initialisation (at_init, gradual) or during training (scheduled)."""
from __future__ import annotations

import logging
import math
import random
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from prunerun.config import Config
from prunerun.data import DataSplits, build_dataset
from prunerun.errors import UserError
from prunerun.figures.run_plots import plot_run
from prunerun.pruning.flops import layer_costs, output_sizes, unit_layer_costs
from prunerun.measure.latency import latency_rows
from prunerun.measure.penalties import SELECTED_COLUMNS, PenaltyMeasurer
from prunerun.measure.units import UNITS_COLUMNS, UnitTracker
from prunerun.models import build_model
from prunerun.pruning import alive_units, remove_selected, unit_layers, units_kept, units_total
from prunerun.pruning.export import save_pruned
from prunerun.measure.weight_penalties import WeightPenaltyMeasurer
from prunerun.checkpoint import capture, config_hash, dense_key, restore
from prunerun.checkpoint import load as load_state
from prunerun.checkpoint import save as save_state
from prunerun.provenance import read_done, write_done, write_run_record
from prunerun.results import (CORRELATION_COLUMNS, METRICS_COLUMNS, PENALTIES_COLUMNS, PRUNING_COLUMNS, SCORES_COLUMNS,
                              TIMING_COLUMNS, CsvTable, folder_state, run_identifiers)
from prunerun.schedules import get_schedule, pruning_level, scheduled_steps
from prunerun.measure.correlation import correlate
from prunerun.scorers.units import Scorer, ScoringContext, get_scorer, list_scorers
from prunerun.scorers.units.selection import flops_penalty, units_ranked, units_to_remove
from prunerun.scorers.units.stats import finish_all, gather_stats
from prunerun.scorers.weights import get_weight_scorer
from prunerun.weight_pruning import WeightPruner, remove_sparse_units
from prunerun.train import (Batch, RunningMean, attach_lr_attack, backward_only, BatchStream, evaluate,
                            iterate_batches, make_optimizer, train_step)

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


@dataclass
class Run:
    """What the phases of one run share."""

    cfg: Config
    model: nn.Module
    data: DataSplits
    batches: Iterator[Batch]  # training updates
    score_batches: Iterator[Batch]  # scoring passes: a stream of their own, so scorers do not shift training
    metrics: CsvTable
    pruning: CsvTable
    sizes: dict[str, tuple[int, ...]]
    step: int = 0

    def evaluate(self, split: str) -> tuple[float, float]:
        return self.evaluate_model(self.model, split)

    def evaluate_model(self, model: nn.Module, split: str) -> tuple[float, float]:
        return evaluate(model, self.data.split(split), self.cfg.train.eval_batch_size)

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

    def record_pruning(self, iteration: int, phase: str) -> int:
        """Units kept, params and FLOPs per layer plus val/test accuracy, in pruning.csv; returns total FLOPs."""
        (val_loss, val_acc), (test_loss, test_acc) = self.evaluate("val"), self.evaluate("test")
        scores = dict(val_loss=val_loss, val_accuracy=val_acc, test_loss=test_loss, test_accuracy=test_acc)
        costs, per_layer = layer_costs(self.model, self.sizes), unit_layer_costs(self.model, self.sizes)
        kept, total = units_kept(self.model), units_total(self.model)
        base = dict(iteration=iteration, step=self.step, phase=phase, **scores)
        rows = [
            dict(base, layer=layer.name, units_kept=kept[layer.name], units_total=total[layer.name],
                 params=per_layer[layer.name][0], flops=per_layer[layer.name][1])
            for layer in unit_layers(self.model)
        ]
        flops = sum(f for _, f in costs.values())
        rows.append(dict(base, layer="total", units_kept=sum(kept.values()), units_total=sum(total.values()),
                         params=sum(p for p, _ in costs.values()), flops=flops))
        self.pruning.add(rows)
        return flops


def prune_per_schedule(run: Run, scorer: Scorer, generator: torch.Generator) -> None:
    """Repeat {fine-tune while gathering statistics → score → remove} until the plan or the FLOPs
    target is reached, then fine-tune. With ``schedule.rescore=false`` the first ranking is kept."""
    cfg = run.cfg
    plan = get_schedule(cfg.schedule.name)(cfg.schedule, cfg.prune, sum(units_total(run.model).values()))
    optimizer, scores, stats, iteration = None, None, {}, 0
    if cfg.prune.flops_lambda and cfg.prune.selection == "per_layer":
        log.warning("prune.flops_lambda changes nothing with prune.selection=per_layer: "
                    "Θ_flops is the same for every unit of a layer; use prune.selection=global")
    flops = run.record_pruning(0, "dense")
    for iteration, fraction in enumerate(tqdm(plan, desc="pruning", disable=None, leave=False), start=1):
        if cfg.prune.target_flops is not None and flops <= cfg.prune.target_flops:
            iteration -= 1
            break
        rescore = scores is None or cfg.schedule.rescore
        needs_stats = rescore and (scorer.needs_data or cfg.prune.mean_replacement)
        with gather_stats(run.model, scorer.per_example, scorer.moments) if needs_stats else nullcontext({}) as collectors:
            if cfg.schedule.finetune_steps:
                optimizer = run.train(cfg.schedule.finetune_steps, cfg.prune.lr, "finetune", optimizer)
            elif needs_stats:
                backward_only(run.model, [next(run.score_batches) for _ in range(cfg.prune.score_batches)])
        alive = alive_units(run.model)
        penalty = flops_penalty(run.model, run.sizes, cfg.prune.flops_lambda)
        if rescore:
            stats = finish_all(collectors) if needs_stats else {}
            batches = [next(run.score_batches) for _ in range(cfg.prune.score_batches)] if scorer.needs_batches else []
            scores = scorer(ScoringContext(run.model, stats, generator, batches, cfg.scorer))
            if not cfg.schedule.rescore:  # freeze the first ranking: normalised and penalised once
                scores = units_ranked(scores, alive, cfg.prune.normalization, penalty)
        if cfg.schedule.rescore:
            remove = units_to_remove(scores, alive, fraction, cfg.prune.selection, cfg.prune.normalization, penalty)
        else:
            remove = units_to_remove(scores, alive, fraction, cfg.prune.selection)
        fills = {name: layer_stats.mean_z for name, layer_stats in stats.items()} if cfg.prune.mean_replacement else None
        remove_selected(run.model, remove, fills)
        flops = run.record_pruning(iteration, "pruned")
    if cfg.prune.target_flops is not None and flops > cfg.prune.target_flops:
        log.warning("prune.target_flops=%g not reached: prune.fraction=%g stopped pruning at %d FLOPs; raise prune.fraction",
                    cfg.prune.target_flops, cfg.prune.fraction, flops)
    if iteration and cfg.schedule.final_finetune_steps:
        run.train(cfg.schedule.final_finetune_steps, cfg.prune.lr, "finetune", optimizer)
        run.record_pruning(iteration + 1, "finetuned")


def prune_units_to(run: Run, scorer: Scorer, fraction: float, generator: torch.Generator, iteration: int) -> None:
    """Scheduled unit step: score on ``prune.score_batches`` gradient-only passes, then remove units
    until ``fraction`` of all are gone."""
    cfg = run.cfg
    needs_stats = scorer.needs_data or cfg.prune.mean_replacement
    with gather_stats(run.model, scorer.per_example, scorer.moments) if needs_stats else nullcontext({}) as collectors:
        if needs_stats:
            backward_only(run.model, [next(run.score_batches) for _ in range(cfg.prune.score_batches)])
    stats = finish_all(collectors) if needs_stats else {}
    batches = [next(run.score_batches) for _ in range(cfg.prune.score_batches)] if scorer.needs_batches else []
    scores = scorer(ScoringContext(run.model, stats, generator, batches, cfg.scorer))
    penalty = flops_penalty(run.model, run.sizes, cfg.prune.flops_lambda)
    remove = units_to_remove(scores, alive_units(run.model), fraction, cfg.prune.selection, cfg.prune.normalization, penalty)
    remove_selected(run.model, remove, {n: s.mean_z for n, s in stats.items()} if cfg.prune.mean_replacement else None)
    run.record_pruning(iteration, "scheduled")


def correlation_setup(cfg: Config, data: DataSplits) -> tuple[list[Scorer], list[Batch]]:
    """The criteria (reference included) and fixed batches of the correlation study, checked up front."""
    c = cfg.correlate
    scorers = [get_scorer(name) for name in dict.fromkeys([*(c.scorers or list_scorers()), c.reference])]
    subset = data.fixed_subset(c.split, c.subset, cfg.seed, "correlate")
    return scorers, list(iterate_batches(subset, cfg.measure.batch_size))


def correlate_criteria(run: Run, setup: tuple[list[Scorer], list[Batch]], out_dir: Path, ids: dict) -> None:
    """scores.csv and correlation.csv: every criterion and the reference on one fixed subset."""
    c = run.cfg.correlate
    scores, correlations = correlate(run.model, *setup, run.cfg.scorer, run.cfg.seed + 2, c.reference,
                                     list(c.normalizations))
    CsvTable(out_dir / "scores.csv", SCORES_COLUMNS, ids).add(scores)
    CsvTable(out_dir / "correlation.csv", CORRELATION_COLUMNS, ids).add(correlations)
    for row in correlations:
        if row["scope"] == "all_layers" and row["normalization"] in ("none", "l2"):
            log.info("spearman vs %s  %-16s %-5s all layers %.3f", c.reference, row["criterion"], row["normalization"],
                     row["spearman"])


def run(cfg: Config, out_dir: Path, overrides: str = "") -> dict:
    """Run one experiment into ``out_dir``; returns the summary it prints. A folder holding the
    completed run of the same config is skipped; an unfinished one resumes from its checkpoint."""
    digest = config_hash(cfg)
    if folder_state(out_dir, digest) == "complete":
        summary = read_done(out_dir)
        log.info("%s already holds this run, complete: skipped", out_dir)
        return summary
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    schedule = get_schedule(cfg.schedule.name)
    level = pruning_level(cfg.schedule.name, cfg.scorer.name, cfg.prune.level)
    scorer = get_weight_scorer(cfg.scorer.name) if level == "weight" else get_scorer(cfg.scorer.name)
    if cfg.correlate.enabled and schedule.when != "after_training":
        raise UserError(f"correlate.enabled studies the dense trained net; schedule={schedule.name} prunes "
                        "before or during training: use schedule=one_shot or iterative")
    data = build_dataset(cfg.dataset, cfg.seed).to(device)
    model = build_model(cfg.model.name, data.num_classes, data.input_shape, cfg.model.weights,
                        cfg.model.checkpoint).to(device)
    measurer = PenaltyMeasurer.create(cfg.measure, cfg.train, model, data, cfg.seed) if cfg.measure.every else None
    weight_measurer = (WeightPenaltyMeasurer.create(cfg.measure, cfg.scorer, model, data, cfg.seed)
                       if cfg.measure.every and cfg.measure.weight_scorers else None)
    correlation = correlation_setup(cfg, data) if cfg.correlate.enabled else None
    tracker = UnitTracker.create(cfg.attack, model, data, cfg.seed, cfg.measure.batch_size) if cfg.attack.layer else None
    log.info("%s on %s (%d/%d/%d examples), device %s, pruning %ss by %s (%s)", cfg.model.name, cfg.dataset.name,
             *(len(data.split(s)) for s in ("train", "val", "test")), device, level, scorer.name, schedule.name)

    out_dir.mkdir(parents=True, exist_ok=True)
    write_run_record(out_dir, cfg, digest, overrides, device)
    ids = run_identifiers(cfg, overrides)
    penalties = CsvTable(out_dir / "penalties.csv", PENALTIES_COLUMNS, ids)
    selected = (CsvTable(out_dir / "selected.csv", SELECTED_COLUMNS, ids)
                if measurer is not None and cfg.measure.record_selected else None)
    batches = lambda offset: BatchStream(data.train, cfg.train.batch_size, torch.Generator().manual_seed(cfg.seed + offset))  # noqa: E731
    run = Run(cfg, model, data, batches(0), batches(3),
              CsvTable(out_dir / "metrics.csv", METRICS_COLUMNS, ids),
              CsvTable(out_dir / "pruning.csv", PRUNING_COLUMNS, ids), output_sizes(model, data.input_shape))

    units = CsvTable(out_dir / "units.csv", UNITS_COLUMNS, ids) if tracker is not None else None
    optimizer = make_optimizer(model, cfg.train.lr, cfg.train.momentum, cfg.train.weight_decay)
    if tracker is not None:
        attach_lr_attack(optimizer, model.get_submodule(tracker.layer.producer).weight, cfg.attack.unit,
                         cfg.attack.attacks_at, cfg.attack.multiplier)
    lr_schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(cfg.train.lr_milestones), cfg.train.lr_gamma)
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    pruner = WeightPruner.create(run, scorer, generator) if level == "weight" else None
    if pruner is not None:
        pruner.masks.attach(optimizer)  # pruned weights stay zero through every update
    if schedule.when == "at_init":
        pruner.prune_at_init(schedule(cfg.schedule, cfg.prune, sum(pruner.totals.values())))
    scheduled = scheduled_steps(cfg.schedule, math.ceil(len(data.train) / cfg.train.batch_size)) if schedule.when == "during_training" else {}

    def on_step(step: int) -> None:
        lr_schedule.step()
        if measurer is not None and step % cfg.measure.every == 0:
            penalties.add(measurer(run.model, step))
            if selected is not None:
                selected.add(measurer.pop_selected())
        if weight_measurer is not None and step % cfg.measure.every == 0:
            penalties.add(weight_measurer(run.model, step))
        if tracker is not None and step % cfg.attack.record_every == 0:
            units.add(tracker(run.model, step))
        if step in scheduled:
            if pruner is not None:
                pruner.prune_to(scheduled[step])
            else:
                prune_units_to(run, scorer, scheduled[step], generator, list(scheduled).index(step) + 1)

    if schedule.when == "after_training":
        optional = {"units": units, "selected": selected}
        tables = {"metrics": run.metrics, "penalties": penalties,
                  **{name: table for name, table in optional.items() if table is not None}}
        train_dense(run, out_dir, dense_key(cfg, device), tables,
                    lambda: run.train(cfg.train.steps, cfg.train.lr, "train", optimizer, on_step=on_step))
        dense = run.evaluate_all("dense")
        if correlation is not None:
            correlate_criteria(run, correlation, out_dir, ids)
        prune_per_schedule(run, scorer, generator)
    else:
        dense = None
        if pruner is None:
            run.record_pruning(0, "dense")
        run.train(cfg.train.steps, cfg.train.lr, "train", optimizer, on_step=on_step)
        if pruner is not None:
            pruner.record("trained")
            CsvTable(out_dir / "timing.csv", TIMING_COLUMNS, ids).add([pruner.timing_row()])
            if cfg.schedule.f_nz:
                remove_sparse_units(run, list(cfg.schedule.f_nz))
        else:
            run.record_pruning(len(scheduled) + 1, "trained")
    pruned = run.evaluate_all("pruned")
    torch.save(run.model.state_dict(), out_dir / "model.pt")
    if pruner is None:  # units: the physically smaller network, loadable with the model builder alone
        small = save_pruned(run.model, out_dir / "pruned.pt", cfg.model.name, data.num_classes, data.input_shape)
        if cfg.measure.latency:
            CsvTable(out_dir / "timing.csv", TIMING_COLUMNS, ids).add(latency_rows(
                run.model, data.input_shape, cfg.measure.latency_batch_size, repeats=cfg.measure.latency_repeats,
                shrunk=small))
    plot_run(out_dir)
    if pruner is not None:
        kept, total = {n.removesuffix(".weight"): k for n, k in pruner.masks.kept().items()}, {
            n.removesuffix(".weight"): t for n, t in pruner.totals.items()}
    else:
        kept, total = units_kept(run.model), units_total(run.model)
    summary = dict(dense=dense, pruned=pruned, kept=kept, total=total, level=level, out_dir=str(out_dir))
    write_done(out_dir, summary)
    (out_dir / DENSE_CHECKPOINT).unlink(missing_ok=True)
    log_summary(summary)
    return summary


DENSE_CHECKPOINT = "dense.ckpt"


def train_dense(run: Run, out_dir: Path, key: str, tables: dict[str, CsvTable], train: Callable[[], object]) -> None:
    """Dense training, or its saved state: the run folder's checkpoint (a re-launched run) or the
    cache entry of the same dense key (another run of a sweep). A fresh state is saved to both."""
    cache = Path(run.cfg.cache.dir) / f"{key}.pt" if run.cfg.cache.enabled else None
    for source in (out_dir / DENSE_CHECKPOINT, cache):
        state = load_state(source) if source is not None else None
        if state is not None:
            restore(run, state, tables)
            log.info("dense model (step %d) restored from %s", run.step, source)
            return
    train()
    state = capture(run, tables)
    save_state(state, out_dir / DENSE_CHECKPOINT)
    if cache is not None:
        save_state(state, cache)


def log_summary(summary: dict) -> None:
    for phase in ("dense", "pruned"):
        if summary[phase] is not None:
            loss, acc = summary[phase]["test"]
            log.info("%-6s test accuracy %.2f%%  loss %.4f", phase, 100 * acc, loss)
    kept = ", ".join(f"{name} {summary['kept'][name]}/{summary['total'][name]}" for name in summary["kept"])
    log.info("%ss kept: %s", summary["level"], kept)
    log.info("results in %s", summary["out_dir"])
