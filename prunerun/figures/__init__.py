"""Paper figures made from run CSVs alone (never from training code).

A figure is a function ``tables -> matplotlib Figure`` (or ``-> pandas DataFrame`` for a table,
``kind="table"``) registered with :func:`register_figure`; ``tables`` maps a CSV name (``metrics``,
``penalties``, ``pruning``, ``scores``, ``correlation``, ``units``, ``timing``) to that CSV
concatenated over every run found. A figure whose data is not there raises :class:`SkipFigure`
with the reason (and the preset that produces the data); ``scripts/figures.py`` reports it.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from prunerun.registry import Registry

Tables = dict[str, pd.DataFrame]


class SkipFigure(Exception):
    """The CSVs hold no data for this figure; the message says what is missing and how to get it."""


@dataclass(frozen=True)
class Figure:
    name: str  # file stem, e.g. "mrp_fig2_penalties"
    fn: Callable[[Tables], object]
    needs: tuple[str, ...]  # CSV names that must be present and non-empty
    preset: str  # the experiment preset that produces the data
    kind: str = "figure"  # "figure" (PNG + PDF) or "table" (CSV + Markdown)

    def __call__(self, tables: Tables):
        missing = [name for name in self.needs if tables.get(name) is None or tables[name].empty]
        if missing:
            raise SkipFigure(f"no {', '.join(n + '.csv' for n in missing)} rows (run +experiment={self.preset})")
        return self.fn(tables)


FIGURES: Registry[Figure] = Registry("figure")
list_figures = FIGURES.names
get_figure = FIGURES.get


def register_figure(name: str, needs: tuple[str, ...], preset: str, kind: str = "figure"):
    """Register ``fn(tables)`` as figure ``name`` (needs: CSV names; preset: what makes the data)."""
    return FIGURES.register(name, lambda key, fn: Figure(key, fn, tuple(needs), preset, kind))


def require(frame: pd.DataFrame, condition: pd.Series, what: str, preset: str) -> pd.DataFrame:
    """Rows of ``frame`` where ``condition`` holds, or :class:`SkipFigure` naming ``what`` is missing."""
    rows = frame[condition]
    if rows.empty:
        raise SkipFigure(f"no {what} (run +experiment={preset})")
    return rows


def load_figures() -> None:
    """Import every module of this package, registering its figures."""
    for module in pkgutil.iter_modules(__path__):
        if module.name not in ("style",):
            importlib.import_module(f"{__name__}.{module.name}")
