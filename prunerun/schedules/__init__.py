"""Schedule registry: ``schedule=NAME`` decides when and how much to prune.

A schedule is a pure function ``(ScheduleConfig, PruneConfig, total) -> list[float]``: the
cumulative fraction of all units (or weights) removed after each pruning step. Each schedule
names the levels it prunes at: units (gates) or weights (masks). The runner fine-tunes
``finetune_steps`` updates before every unit step (gathering the scorer's statistics during them);
weight schedules prune before training (``at_init``, ``gradual``) or during it (``scheduled``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from prunerun.errors import UserError
from prunerun.registry import Registry
from prunerun.scorers.units import SCORERS
from prunerun.scorers.weights import WEIGHT_SCORERS


@dataclass(frozen=True)
class Schedule:
    name: str
    fn: Callable[..., list[float]]
    levels: tuple[str, ...]  # "unit" and/or "weight"
    when: str  # "after_training" (units of the trained net), "at_init" or "during_training"

    def __call__(self, schedule_cfg, prune_cfg, total: int) -> list[float]:
        return self.fn(schedule_cfg, prune_cfg, total)


SCHEDULES: Registry[Schedule] = Registry("schedule")
get_schedule = SCHEDULES.get
list_schedules = SCHEDULES.names


def register_schedule(name: str, levels: tuple[str, ...] = ("unit",), when: str = "after_training"):
    """Register ``fn(ScheduleConfig, PruneConfig, total) -> cumulative fractions`` as schedule ``name``."""
    return SCHEDULES.register(name, lambda key, fn: Schedule(key, fn, levels, when))


@register_schedule("one_shot")
def one_shot(schedule, prune, total: int) -> list[float]:
    """Remove ``prune.fraction`` of the units in one step."""
    return [prune.fraction] if round(prune.fraction * total) > 0 else []


@register_schedule("iterative")
def iterative(schedule, prune, total: int) -> list[float]:
    """Remove ``units_per_step`` units per step until ``prune.fraction`` of them are gone
    (Molchanov et al. 2017 §2 uses one feature map per step)."""
    target = round(prune.fraction * total)
    steps = math.ceil(target / schedule.units_per_step)
    return [min(i * schedule.units_per_step, target) / total for i in range(1, steps + 1)]


@register_schedule("at_init", levels=("weight",), when="at_init")
def at_init(schedule, prune, total: int) -> list[float]:
    """One shot at initialisation, before training the masked net (SNIP, GRASP, random, magnitude)."""
    return [prune.fraction]


@register_schedule("gradual", levels=("weight",), when="at_init")
def gradual(schedule, prune, total: int) -> list[float]:
    """``prune.steps`` = T steps at initialisation; the kept fraction after step t is κ^(t/T)
    (``exp``, de Jorge et al. 2021 §3.3) or 1 − t(1 − κ)/T (``linear``), κ = 1 − prune.fraction."""
    kept, steps = 1 - prune.fraction, prune.steps
    if prune.decay == "linear":
        return [t * prune.fraction / steps for t in range(1, steps + 1)]
    return [1 - kept ** (t / steps) for t in range(1, steps + 1)]


@register_schedule("scheduled", levels=("weight", "unit"), when="during_training")
def scheduled(schedule, prune, total: int) -> list[float]:
    """``schedule.fractions``, pruned at the times ``schedule.at`` (Evci thesis Table 2.2)."""
    return list(schedule.fractions)


def scheduled_steps(schedule, steps_per_epoch: int) -> dict[int, float]:
    """Training update (1-based) → fraction pruned after it; epoch e ends at update e·steps_per_epoch."""
    scale = steps_per_epoch if schedule.at_unit == "epoch" else 1
    return {int(when) * scale: fraction for when, fraction in zip(schedule.at, schedule.fractions)}


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
