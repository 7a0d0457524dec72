"""Training callbacks: each one independent, called with the update count after every update of
dense training (OpenLTH's ``train(..., callbacks)``). In order: the learning-rate schedule, unit and
weight pruning penalties, unit traces, pruning at scheduled updates."""
from __future__ import annotations

from typing import NamedTuple

import torch

from prunerun.measure.penalties import SELECTED_COLUMNS, PenaltyMeasurer
from prunerun.measure.units import UNITS_COLUMNS, UnitTracker
from prunerun.measure.weight_penalties import WeightPenaltyMeasurer
from prunerun.runner.job import Callback, Job
from prunerun.schedules import PruneEvent
from prunerun.train import attach_lr_attack, learning_rate, make_optimizer, set_learning_rate


def learning_rates(optimizer: torch.optim.Optimizer, base: float, total: int, schedule: str, milestones=(),
                   gamma: float = 0.1, warmup: int = 0, start: int = 0) -> Callback:
    """The learning-rate schedule (:func:`prunerun.train.learning_rate`) of a phase that starts
    after update ``start``: after each update, the next update's rate."""
    return lambda step: set_learning_rate(optimizer, learning_rate(base, step - start, total, schedule, milestones,
                                                                   gamma, warmup))


def every(period: int, callback: Callback) -> Callback:
    """``callback`` after every ``period``-th update."""
    return lambda step: callback(step) if step % period == 0 else None


def unit_penalties(job: Job, measurer: PenaltyMeasurer) -> Callback:
    """penalties.csv (and selected.csv): pruning penalties of the unit scorers on a copy (MRP §4)."""
    selected = job.table("selected", SELECTED_COLUMNS) if job.cfg.measure.record_selected else None

    def measure(step: int) -> None:
        job.tables["penalties"].add(measurer(job.model, step))
        if selected is not None:
            selected.add(measurer.pop_selected())
    return measure


def weight_penalties(job: Job, measurer: WeightPenaltyMeasurer) -> Callback:
    """penalties.csv: pruning penalties of the weight scorers on a copy (thesis figs. 2.2–2.5)."""
    return lambda step: job.tables["penalties"].add(measurer(job.model, step))


def unit_traces(job: Job, tracker: UnitTracker) -> Callback:
    """units.csv: the attacked unit and its controls (thesis §3.3)."""
    table = job.table("units", UNITS_COLUMNS)
    return lambda step: table.add(tracker(job.model, step))


def prune_at_updates(job: Job, events: list[PruneEvent]) -> Callback:
    """Scheduled pruning: apply each event after its training update (Evci thesis Table 2.2)."""
    pending = {event.after: event for event in events}  # all within training (prunerun.runner.check_timeline)

    def prune(step: int) -> None:
        if step in pending:
            job.prune(pending[step], "scheduled")
    return prune


class Measurers(NamedTuple):
    unit: PenaltyMeasurer | None
    weight: WeightPenaltyMeasurer | None
    tracker: UnitTracker | None


def create_measurers(job: Job) -> Measurers:
    """What dense training measures, checked against the model and data before anything is written."""
    cfg, m = job.cfg, job.cfg.measure
    return Measurers(
        PenaltyMeasurer.create(m, cfg.train, job.model, job.data, cfg.seed, cfg.prune.counting) if m.every else None,
        WeightPenaltyMeasurer.create(m, cfg.scorer, job.model, job.data, cfg.seed) if m.every and m.weight_scorers else None,
        UnitTracker.create(cfg.attack, job.model, job.data, cfg.seed, m.batch_size) if cfg.attack.layer else None,
    )


def start_training(job: Job, measurers: Measurers) -> None:
    """The dense optimizer (the attack and the weight masks hooked on it) and the callbacks list:
    the learning-rate schedule (``train.schedule``), penalties, traces."""
    cfg = job.cfg
    t = cfg.train
    job.optimizer = make_optimizer(job.model, t.lr, t.momentum, t.weight_decay, t.optimizer)
    if measurers.tracker is not None:
        attach_lr_attack(job.optimizer, job.model.get_submodule(measurers.tracker.layer.producer).weight,
                         cfg.attack.unit, cfg.attack.attacks_at, cfg.attack.multiplier)
    job.pruner.attach(job.optimizer)  # weights: pruned entries stay zero through every update
    set_learning_rate(job.optimizer, learning_rate(t.lr, 0, t.steps, t.schedule, (), t.lr_gamma, t.warmup_steps))
    job.callbacks = [learning_rates(job.optimizer, t.lr, t.steps, t.schedule, list(t.lr_milestones), t.lr_gamma,
                                    t.warmup_steps)]
    if measurers.unit is not None:
        job.callbacks.append(every(cfg.measure.every, unit_penalties(job, measurers.unit)))
    if measurers.weight is not None:
        job.callbacks.append(every(cfg.measure.every, weight_penalties(job, measurers.weight)))
    if measurers.tracker is not None:
        job.callbacks.append(every(cfg.attack.record_every, unit_traces(job, measurers.tracker)))
