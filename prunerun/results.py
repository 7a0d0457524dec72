"""Tidy CSV outputs: long format, the run's identifying config values on every row, atomic writes."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pandas as pd

from prunerun.errors import UserError
from prunerun.files import atomic_write


def run_identifiers(cfg, overrides: str = "") -> dict[str, Any]:
    """The config values that tell runs of a sweep apart, as leading CSV columns; ``overrides``
    (the job's command-line overrides) separates sweeps over any other value."""
    return {
        "seed": cfg.seed,
        "dataset": cfg.dataset.name,
        "model": cfg.model.name,
        "scorer": cfg.scorer.name,
        "schedule": cfg.schedule.name,
        "fraction": cfg.prune.fraction,
        "mean_replacement": cfg.prune.mean_replacement,
        "normalization": cfg.prune.normalization,
        "selection": cfg.prune.selection,
        "overrides": overrides,
    }


def write_csv_atomic(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Write ``rows`` under a header of ``columns`` to ``path`` atomically (:func:`atomic_write`)."""

    def write(file) -> None:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)

    atomic_write(path, write, "w", newline="")


class CsvTable:
    """A CSV that grows by rows; every :meth:`add` rewrites the file atomically.

    An identifier whose name is also a table column (``scorer`` in penalties.csv is the measured
    scorer) is kept as ``run_<name>``.
    """

    def __init__(self, path: Path, columns: list[str], identifiers: dict[str, Any]) -> None:
        self.path = path
        self.identifiers = {(f"run_{k}" if k in columns else k): v for k, v in identifiers.items()}
        self.columns = list(self.identifiers) + list(columns)
        self.rows: list[dict[str, Any]] = []
        write_csv_atomic(self.path, self.rows, self.columns)  # header only: every run has all CSVs

    def add(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            unknown = set(row) - set(self.columns)
            if unknown:
                raise KeyError(f"{self.path.name}: unknown columns {sorted(unknown)}")
            self.rows.append({**self.identifiers, **row})
        write_csv_atomic(self.path, self.rows, self.columns)

    def own_rows(self) -> list[dict[str, Any]]:
        """The rows as they were added, without the run's identifiers."""
        return [{k: v for k, v in row.items() if k not in self.identifiers} for row in self.rows]


RESULT_FILES = ("metrics.csv", "penalties.csv", "pruning.csv", "scores.csv", "correlation.csv", "units.csv", "timing.csv",
                "selected.csv")


def folder_state(out_dir: Path, config_hash: str) -> str:
    """``fresh``, ``resume`` (an unfinished run of the same config) or ``complete`` (done.json is
    there); a folder holding results of another config, or of no known one, is refused so that a
    run never overwrites earlier results."""
    found = [name for name in RESULT_FILES if (out_dir / name).exists()]
    recorded = None
    if (out_dir / "run.json").exists():
        recorded = json.loads((out_dir / "run.json").read_text()).get("config_hash")
    if recorded == config_hash:
        return "complete" if (out_dir / "done.json").exists() else "resume"
    if found or recorded is not None:
        raise UserError(
            f"{out_dir} already holds results of another config ({', '.join(found) or 'run.json'}); pick a new "
            "folder with hydra.run.dir=... (or hydra.sweep.dir=...) or move the old one away"
        )
    return "fresh"


METRICS_COLUMNS = ["phase", "step", "split", "loss", "accuracy"]
PENALTIES_COLUMNS = [
    "step", "level", "scorer", "fraction", "layer", "mean_replacement", "finetune_steps",
    "loss_before", "loss_after", "delta_loss",
]
SCORES_COLUMNS = ["criterion", "normalization", "layer", "unit", "kept", "value"]
CORRELATION_COLUMNS = ["criterion", "normalization", "scope", "spearman"]
# Unit runs fill units_*; weight runs fill weights_*, empty (no weight left), pruned/recovered (by the
# last gradual step, FORCE fig. 9) and saliency_ratio (FORCE saliency ÷ one-shot SNIP's, figs. 4, 6);
# f_nz rows record the removal of sparse units after scheduled weight pruning (thesis fig. 2.11).
PRUNING_COLUMNS = [
    "iteration", "step", "phase", "layer", "units_kept", "units_total", "weights_kept", "weights_total", "empty",
    "pruned", "recovered", "saliency_ratio", "f_nz", "params", "flops",
    "val_loss", "val_accuracy", "test_loss", "test_accuracy",
]
# phase "mask": wall time to compute weight masks (num_batches per step, steps); phase "latency":
# median inference time of one batch of batch_size for variant "dense" or "shrunk" (flops, params per example).
TIMING_COLUMNS = ["phase", "variant", "seconds", "batch_size", "num_batches", "steps", "flops", "params", "device"]


def find_runs(paths: list[Path]) -> list[Path]:
    """Every run folder (one holding metrics.csv) at or below ``paths``, sorted."""
    runs = set()
    for path in paths:
        path = Path(path)
        if (path / "metrics.csv").exists():
            runs.add(path)
        runs.update(found.parent for found in path.rglob("metrics.csv"))
    return sorted(runs)


def load_tables(paths: list[Path]) -> dict[str, pd.DataFrame]:
    """CSV name (``metrics``, ``penalties``…) → that CSV concatenated over every run found below
    ``paths``, with a ``run_dir`` column; a CSV no run has is absent."""
    frames: dict[str, list] = {}
    for run in find_runs(paths):
        for name in RESULT_FILES:
            file = run / name
            if file.exists() and file.stat().st_size:
                frame = pd.read_csv(file)
                if len(frame):
                    frames.setdefault(name.removesuffix(".csv"), []).append(frame.assign(run_dir=str(run)))
    return {name: pd.concat(parts, ignore_index=True, sort=False) for name, parts in frames.items()}
