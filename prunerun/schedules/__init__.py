"""Schedule registry: ``schedule=NAME`` decides when and how much to prune (Torch-Pruning's "when").

A schedule is a pure function ``(ScheduleConfig, PruneConfig, total, steps_per_epoch) ->
list[PruneEvent]``; it never touches a model. An event says *when* (before training, after a
training update, or after dense training), *to which* cumulative fraction of all units (or weights),
and how many fine-tuning updates at which learning rate come first (the pruner gathers its
statistics during them). Each schedule names the levels it prunes at: units (gates) or weights
(masks). One-shot, iterative, scheduled, at-initialisation and gradual pruning are different
event lists for the same runner loop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from prunerun.counting import unit_count
from prunerun.registry import Registry

BEFORE_TRAINING = 0  # PruneEvent.after: before the first update
AFTER_TRAINING = None  # PruneEvent.after: once dense training is over


@dataclass(frozen=True)
class PruneEvent:
    """Prune to ``fraction`` after training update ``after`` (``BEFORE_TRAINING``, an update count,
    or ``AFTER_TRAINING``), first fine-tuning ``finetune`` updates at learning rate ``lr``."""

    fraction: float
    after: int | None
    finetune: int = 0
    lr: float | None = None


@dataclass(frozen=True)
class Schedule:
    name: str
    fn: Callable[..., list[PruneEvent]]
    levels: tuple[str, ...]  # "unit" and/or "weight"
    when: str  # "after_training" (units of the trained net), "at_init" or "during_training"

    def __call__(self, schedule_cfg, prune_cfg, total: int, steps_per_epoch: int = 1) -> list[PruneEvent]:
        return self.fn(schedule_cfg, prune_cfg, total, steps_per_epoch)


SCHEDULES: Registry[Schedule] = Registry("schedule")
get_schedule = SCHEDULES.get
list_schedules = SCHEDULES.names


def register_schedule(name: str, levels: tuple[str, ...] = ("unit",), when: str = "after_training"):
    """Register ``fn(ScheduleConfig, PruneConfig, total, steps_per_epoch) -> events`` as schedule ``name``."""
    return SCHEDULES.register(name, lambda key, fn: Schedule(key, fn, levels, when))


def fractions(events: list[PruneEvent]) -> list[float]:
    """The cumulative fractions of ``events``, in order."""
    return [event.fraction for event in events]


def _after_training(schedule, prune, targets: list[float]) -> list[PruneEvent]:
    return [PruneEvent(f, AFTER_TRAINING, schedule.finetune_steps, prune.lr) for f in targets]


@register_schedule("one_shot")
def one_shot(schedule, prune, total: int, steps_per_epoch: int = 1) -> list[PruneEvent]:
    """Remove ``prune.fraction`` of the units in one step."""
    return _after_training(schedule, prune, [prune.fraction] if unit_count(prune.fraction, total, prune.counting) > 0 else [])


@register_schedule("iterative")
def iterative(schedule, prune, total: int, steps_per_epoch: int = 1) -> list[PruneEvent]:
    """Remove ``units_per_step`` units per step until ``prune.fraction`` of them are gone
    (Molchanov et al. 2017 §2 uses one feature map per step)."""
    target = unit_count(prune.fraction, total, prune.counting)
    steps = math.ceil(target / schedule.units_per_step)
    return _after_training(schedule, prune, [min(i * schedule.units_per_step, target) / total
                                             for i in range(1, steps + 1)])


@register_schedule("at_init", levels=("weight",), when="at_init")
def at_init(schedule, prune, total: int, steps_per_epoch: int = 1) -> list[PruneEvent]:
    """One shot at initialisation, before training the masked net (SNIP, GRASP, random, magnitude)."""
    return [PruneEvent(prune.fraction, BEFORE_TRAINING)]


@register_schedule("gradual", levels=("weight",), when="at_init")
def gradual(schedule, prune, total: int, steps_per_epoch: int = 1) -> list[PruneEvent]:
    """``prune.steps`` = T steps at initialisation; the kept fraction after step t is κ^(t/T)
    (``exp``, de Jorge et al. 2021 §3.3) or 1 − t(1 − κ)/T (``linear``), κ = 1 − prune.fraction."""
    kept, steps = 1 - prune.fraction, prune.steps
    if prune.decay == "linear":
        targets = [t * prune.fraction / steps for t in range(1, steps + 1)]
    else:
        targets = [1 - kept ** (t / steps) for t in range(1, steps + 1)]
    return [PruneEvent(f, BEFORE_TRAINING) for f in targets]


@register_schedule("scheduled", levels=("weight", "unit"), when="during_training")
def scheduled(schedule, prune, total: int, steps_per_epoch: int = 1) -> list[PruneEvent]:
    """``schedule.fractions`` pruned after the times ``schedule.at`` (Evci thesis Table 2.2): epoch e
    ends at update e·steps_per_epoch (``at_unit=epoch``), or ``at`` counts updates (``at_unit=step``)."""
    scale = steps_per_epoch if schedule.at_unit == "epoch" else 1
    return [PruneEvent(f, int(when) * scale) for when, f in zip(schedule.at, schedule.fractions)]
