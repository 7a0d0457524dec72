"""What the stages of one run share: the built job (data, model, pruner, streams, tables) and the
few things every stage does with it — train with callbacks, prune at an event, record a row."""
from __future__ import annotations

import copy
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from prunerun.config import Config
from prunerun.data import DATASETS, DataSplits, build_dataset
from prunerun.errors import UserError
from prunerun.pruning.flops import output_sizes
from prunerun.pruning import propagate_fill, remove_units
from prunerun.pruning.units import alive_units, gate_of, unit_layers
from prunerun.models import build_model
from prunerun.plugins import load_plugin
from prunerun.precision import Precision, make_precision
from prunerun.progress import progress
from prunerun.pruners import Pruner, UnitPruner, WeightPruner
from prunerun.pruners.weights import balanced_batches, fixed_batches
from prunerun.results import METRICS_COLUMNS, PENALTIES_COLUMNS, PRUNING_COLUMNS, CsvTable, run_identifiers
from prunerun.schedules import BEFORE_TRAINING, PruneEvent, Schedule, get_schedule, list_schedules
from prunerun.scorers.units import SCORERS
from prunerun.scorers.units.selection import check_reachable
from prunerun.scorers.weights import WEIGHT_SCORERS
from prunerun.seeds import generator
from prunerun.types import Batch
from prunerun.train import BatchStream, RunningMean, evaluate, make_optimizer, set_learning_rate, train_step

log = logging.getLogger("prunerun")
Callback = Callable[[int], None]  # called with the update count after every training update


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


def load_plugins(cfg: Config) -> None:
    """Import the modules of a dataset or scorer of the user's own (``dataset.target``, ``scorer.target``)."""
    load_plugin(cfg.dataset.target, cfg.dataset.name, (DATASETS,), "dataset.target")
    load_plugin(cfg.scorer.target, cfg.scorer.name, (SCORERS, WEIGHT_SCORERS), "scorer.target")


def pruning_level(schedule_name: str, scorer_name: str, level: str = "auto") -> str:
    """``unit`` or ``weight``: what ``schedule`` prunes with ``scorer`` (``prune.level``; ``auto``
    takes the schedule's only level, or for ``scheduled`` the weight version of a scorer when one exists)."""
    schedule = get_schedule(schedule_name)
    if level == "auto":
        level = schedule.levels[0] if len(schedule.levels) == 1 else (
            "weight" if scorer_name in WEIGHT_SCORERS else "unit")
    if level not in schedule.levels:
        fitting = [name for name in list_schedules() if level in get_schedule(name).levels]
        raise UserError(f"schedule={schedule_name} prunes {' or '.join(schedule.levels)}s, not {level}s; "
                        f"use prune.level={schedule.levels[0]} or one of schedule={', '.join(fitting)}")
    registry = WEIGHT_SCORERS if level == "weight" else SCORERS
    if scorer_name not in registry:
        other = "unit" if level == "weight" else "weight"
        fitting = [name for name in list_schedules() if other in get_schedule(name).levels]
        raise UserError(f"scorer={scorer_name} has no {level}-level version and schedule={schedule_name} prunes "
                        f"{level}s; pick a schedule that prunes {other}s ({', '.join(fitting)}) or a {level}-level "
                        f"scorer: {', '.join(registry.names())}")
    return level


@dataclass
class Job:
    """One run's state; the stages in ``prunerun/runner/stages.py`` read and advance it."""

    cfg: Config
    out_dir: Path
    device: torch.device
    schedule: Schedule
    data: DataSplits
    model: nn.Module
    pruner: Pruner
    batches: BatchStream  # training updates
    score_batches: BatchStream  # scoring passes: a stream of their own, so scorers do not shift training
    tables: dict[str, CsvTable]
    ids: dict
    sizes: dict[str, tuple[int, ...]]
    optimizer: torch.optim.Optimizer | None = None
    callbacks: list[Callback] = field(default_factory=list)  # after every update of dense training
    correlation: tuple | None = None  # criteria and fixed batches of the correlation study
    saved_dense: tuple | None = None  # (state, path) of a saved dense model, read before anything is written
    pending: tuple | None = None  # (iteration, phase, step) of a pruning step not yet recorded (prune.eval_every)
    precision: Precision = field(default_factory=Precision)  # train.precision
    compiled: nn.Module | None = None  # train.compile: the model's compiled forward, for dense training
    step: int = 0

    def events(self) -> list[PruneEvent]:
        cfg = self.cfg
        steps_per_epoch = -(-len(self.data.train) // cfg.train.batch_size)
        return self.schedule(cfg.schedule, cfg.prune, sum(self.pruner.total().values()), steps_per_epoch)

    def table(self, name: str, columns: list[str]) -> CsvTable:
        """The run's CSV ``name`` (created, header only, on first use)."""
        if name not in self.tables:
            self.tables[name] = CsvTable(self.out_dir / f"{name}.csv", columns, self.ids)
        return self.tables[name]

    def evaluate(self, split: str, model: nn.Module | None = None) -> tuple[float, float]:
        return evaluate(self.model if model is None else model, self.data.split(split), self.cfg.train.eval_batch_size,
                        precision=self.precision)

    def evaluate_all(self, phase: str) -> dict[str, tuple[float, float]]:
        """Loss and accuracy on train/val/test, recorded in metrics.csv."""
        results = {split: self.evaluate(split) for split in ("train", "val", "test")}
        self.tables["metrics"].add([dict(phase=phase, step=self.step, split=s, loss=l, accuracy=a)
                                    for s, (l, a) in results.items()])
        return results

    def train(self, updates: int, lr: float | None, phase: str, optimizer: torch.optim.Optimizer | None = None,
              callbacks: list[Callback] = ()) -> torch.optim.Optimizer:
        """``updates`` steps of ``optimizer`` (else a new one of ``train.optimizer``) starting at ``lr``
        (None: the optimizer's own, which a schedule callback sets), then each callback after every
        update; running train and val metrics every ``train.eval_every``."""
        t = self.cfg.train
        if optimizer is None:
            optimizer = make_optimizer(self.model, lr, t.momentum, t.weight_decay, t.optimizer)
        if lr is not None:  # a reused optimizer takes this phase's rate
            set_learning_rate(optimizer, lr)
        running = RunningMean()
        self.model.train()
        forward = self.compiled if phase == "train" and self.compiled is not None else self.model
        for _ in progress(range(updates), updates, phase):
            x, y = next(self.batches)
            if t.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            loss, correct = train_step(forward, optimizer, x, y, self.precision)
            self.step += 1
            if not torch.isfinite(loss):
                rate = optimizer.param_groups[0]["lr"]
                raise UserError(f"the training loss is {float(loss)} at update {self.step} ({phase}, learning rate "
                                f"{rate:g}); nothing is cached: lower train.lr (prune.lr when fine-tuning) or check the data")
            running.add(loss, correct, len(y))
            if self.step % t.eval_every == 0:
                self._log_metrics(phase, running.pop())
            for callback in callbacks:
                callback(self.step)
        return optimizer

    def _log_metrics(self, phase: str, train_batches: tuple[float, float] | None) -> None:
        rows = []
        if train_batches is not None:
            rows.append(dict(phase=phase, step=self.step, split="train_batches", loss=train_batches[0],
                             accuracy=train_batches[1]))
        val_loss, val_acc = self.evaluate("val")
        rows.append(dict(phase=phase, step=self.step, split="val", loss=val_loss, accuracy=val_acc))
        self.tables["metrics"].add(rows)
        self.model.train()

    def prune(self, event: PruneEvent, phase: str, eval_every: int = 1) -> int:
        """Apply ``event`` with the pruner; returns the model's FLOPs. The result is recorded (val and
        test evaluated) after the first step and every ``eval_every``-th; another is kept pending
        until the next step or :meth:`record_pending`, so the last step is always recorded."""
        last_step = self.pruner.prune_to(event.fraction, at_init=event.after == BEFORE_TRAINING)
        iteration, self.pending = self.pruner.iteration, None
        if iteration == 1 or iteration % eval_every == 0:
            return self.record(iteration, phase, last_step)
        self.pending = (iteration, phase, last_step)
        return self.pruner.rows(last_step)[-1]["flops"]

    def record_pending(self) -> None:
        """Record the last pruning step if :meth:`prune` left it pending (the model as it stands)."""
        if self.pending is not None:
            self.record(*self.pending)
            self.pending = None

    def add_pruning_rows(self, rows: list[dict], model: nn.Module | None = None, **base) -> list[dict]:
        """pruning.csv: ``rows`` (per layer) of ``model`` (the run's by default) with its val/test loss
        and accuracy, the update count and ``base`` on each."""
        (val_loss, val_acc), (test_loss, test_acc) = self.evaluate("val", model), self.evaluate("test", model)
        base = dict(base, step=self.step, val_loss=val_loss, val_accuracy=val_acc, test_loss=test_loss,
                    test_accuracy=test_acc)
        rows = [dict(base, **row) for row in rows]
        self.tables["pruning"].add(rows)
        return rows

    def record(self, iteration: int, phase: str, last_step=None) -> int:
        """pruning.csv: the pruner's rows after ``iteration`` steps; returns the model's FLOPs."""
        rows = self.add_pruning_rows(self.pruner.rows(last_step), iteration=iteration, phase=phase)
        empty = [row["layer"] for row in rows[:-1] if row.get("empty")]
        if empty:
            log.warning("layers with no weight left: %s (prune.allow_empty_layers=false keeps one in each)",
                        ", ".join(empty))
        return rows[-1]["flops"]


def check_fractions(cfg: Config, model: nn.Module) -> None:
    """Before any training: every fraction of units the run prunes to can be reached with each layer
    keeping a unit (with ``prune.target_flops``, ``prune.fraction`` is only a cap and is not checked)."""
    sizes = {name: int(mask.numel()) for name, mask in alive_units(model).items()}
    if get_schedule(cfg.schedule.name).when == "during_training":
        wanted = [("schedule.fractions", f) for f in cfg.schedule.fractions]
    else:
        wanted = [("prune.fraction", cfg.prune.fraction)] if cfg.prune.target_flops is None else []
    for key, fraction in wanted:
        check_reachable(fraction, sizes, cfg.prune.selection, cfg.prune.counting, key, cfg.model.name)


def check_mean_replacement(cfg: Config, model: nn.Module, level: str) -> None:
    """A UserError, before training, where mean replacement could not be shrunk away at the end: a copy
    with one unit of every layer filled with 1 must fold into its consumers (a fill scaled by a
    squeeze-excite gate, or read through a zero-padded pool past the gate, reaches them varying)."""
    if not (cfg.prune.mean_replacement and level == "unit" and any(l.consumers for l in unit_layers(model))):
        return
    probe = copy.deepcopy(model)
    for layer in unit_layers(probe):
        units = gate_of(probe, layer).keep.numel()
        if units > 1:
            remove_units(probe, layer, torch.tensor([0]), torch.ones(len(layer.gates), units))
    try:
        propagate_fill(probe, exact_borders=True)
    except ValueError as error:
        raise UserError(f"prune.mean_replacement=true could not be shrunk away in this model at the end: {error} "
                        f"(prune.mean_replacement=false)") from None


def check_coupled(cfg: Config, model: nn.Module, level: str) -> None:
    """A UserError, before training, for what cannot yet handle residual streams pruned as one group
    (``prune.coupled=true``: a layer whose units lie in several maps, each gated)."""
    if not any(layer.sites for layer in unit_layers(model)):
        return
    scorers = [("scorer", cfg.scorer.name)] if level == "unit" else []
    scorers += [("measure.scorers", name) for name in cfg.measure.scorers] if cfg.measure.every else []
    for option, name in scorers:
        if not SCORERS.get(name).tied_maps:
            raise UserError(f"{option} has {name}, which scores units in one map, and prune.coupled=true gives "
                            f"residual streams one map per block; use taylor, mrs, activation_mean, weight or "
                            f"random, or prune.coupled=false")
    for enabled, option in ((cfg.correlate.enabled, "correlate.enabled"), (bool(cfg.attack.layer), "attack.layer")):
        if enabled:
            raise UserError(f"{option} studies layers with one gate, and prune.coupled=true gives residual streams "
                            f"several; set prune.coupled=false for it")


def build_pruner(cfg: Config, level: str, model: nn.Module, data: DataSplits, score_batches: BatchStream,
                 sizes: dict[str, tuple[int, ...]]) -> Pruner:
    """The pruner of ``level`` for the configured scorer, drawing from the pruning stream."""
    stream = generator(cfg.seed, "pruning")
    if level == "unit":  # ranking once (schedule.rescore=false) is a choice of pruning after training only
        rescore = cfg.schedule.rescore or get_schedule(cfg.schedule.name).when != "after_training"
        check_fractions(cfg, model)
        return UnitPruner(model, SCORERS.get(cfg.scorer.name), cfg.prune, cfg.scorer, stream,
                          lambda: next(score_batches), sizes, rescore=rescore)

    def balanced(count: int) -> list[Batch]:
        return balanced_batches(data.train, data.num_classes, cfg.scorer.samples_per_class, count, stream)

    def reference() -> list[Batch]:
        fixed = generator(cfg.seed, "saliency_reference")
        return fixed_batches(data.train, cfg.train.batch_size, cfg.prune.num_batches, fixed)

    return WeightPruner(model, WEIGHT_SCORERS.get(cfg.scorer.name), cfg.prune, cfg.scorer, stream,
                        lambda: next(score_batches), sizes, balanced, reference)


def build_job(cfg: Config, out_dir: Path, overrides: str, device: torch.device, level: str) -> Job:
    """Data and model on ``device``, the pruner, both batch streams and the always-written tables."""
    data = build_dataset(cfg.dataset, cfg.seed).to(device)
    model = build_model(cfg.model.name, data.num_classes, data.input_shape, cfg.model.weights,
                        cfg.model.checkpoint, cfg.builder_options()).to(device)
    stream = lambda name: BatchStream(data.train, cfg.train.batch_size, generator(cfg.seed, name))  # noqa: E731
    batches, score_batches = stream("training"), stream("scoring")
    sizes = output_sizes(model, data.input_shape)
    check_coupled(cfg, model, level)
    check_mean_replacement(cfg, model, level)
    pruner = build_pruner(cfg, level, model, data, score_batches, sizes)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    compiled = torch.compile(model) if cfg.train.compile else None
    return Job(cfg, out_dir, device, get_schedule(cfg.schedule.name), data, model, pruner, batches, score_batches,
               {}, run_identifiers(cfg, overrides), sizes, precision=make_precision(cfg.train.precision, device),
               compiled=compiled)


def open_tables(job: Job) -> None:
    """metrics.csv, pruning.csv and penalties.csv exist in every run folder, header first."""
    for name, columns in (("metrics", METRICS_COLUMNS), ("pruning", PRUNING_COLUMNS), ("penalties", PENALTIES_COLUMNS)):
        job.table(name, columns)
