"""Schedule registry: ``schedule=NAME`` decides when and how much to prune.

A schedule is a pure function ``(ScheduleConfig, fraction, total_units) -> list[float]``: the
cumulative fraction of all units removed after each pruning step. The runner fine-tunes
``finetune_steps`` updates before every step (gathering the scorer's statistics during them).
"""
from __future__ import annotations

import math
from typing import Callable

from prunerun.registry import Registry

SCHEDULES: Registry[Callable[..., list[float]]] = Registry("schedule")
register_schedule = SCHEDULES.register
get_schedule = SCHEDULES.get
list_schedules = SCHEDULES.names


@register_schedule("one_shot")
def one_shot(cfg, fraction: float, total_units: int) -> list[float]:
    """Remove ``fraction`` of the units in one step."""
    return [fraction] if round(fraction * total_units) > 0 else []


@register_schedule("iterative")
def iterative(cfg, fraction: float, total_units: int) -> list[float]:
    """Remove ``units_per_step`` units per step until ``fraction`` of them are gone
    (Molchanov et al. 2017 §2 uses one feature map per step)."""
    target = round(fraction * total_units)
    steps = math.ceil(target / cfg.units_per_step)
    return [min(i * cfg.units_per_step, target) / total_units for i in range(1, steps + 1)]
