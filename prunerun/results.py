"""Tidy CSV outputs: long format, the run's identifying config values on every row, atomic writes."""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunerun.errors import UserError

if TYPE_CHECKING:
    import pandas as pd
from prunerun.files import atomic_write


def run_identifiers(cfg, overrides: str = "") -> dict[str, Any]:
    """The config values that tell runs of a sweep apart, as leading CSV columns; ``overrides``
    (the job's command-line overrides) separates sweeps over any other value."""
    return {
        "seed": cfg.seed,
        "dataset": cfg.dataset.name,
        "model": getattr(cfg.model, "label", cfg.model.name),  # torchvision.resnet18, custom:pkg.mod:fn
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


# Everything a run writes in its folder but Hydra's job log (which grows across attempts): what
# tells a folder's state, and what is moved aside from an unfinished run of another config.
RUN_FILES = (*RESULT_FILES, "run.json", "done.json", "failed.json", "dense.ckpt", "model.pt", "pruned.pt", "run.png",
             ".hydra")
SUPERSEDED = ".superseded"  # where set_aside moves them


def folder_state(out_dir: Path, config_hash: str) -> str:
    """What ``out_dir`` holds for the config hashed ``config_hash``:

    - ``fresh``: nothing of any run (or no folder yet);
    - ``resume``: an unfinished run of the same config, continued from its checkpoint;
    - ``complete``: the finished run of the same config (done.json), which is skipped;
    - ``leftovers``: an unfinished run (failed, killed or never started) of another config, or
      files of no known run: :func:`set_aside` moves them away so the folder can be reused.

    The finished run of another config is refused (:class:`UserError`): a run never replaces results.
    """
    recorded = None
    if (out_dir / "run.json").exists():
        try:
            recorded = json.loads((out_dir / "run.json").read_text()).get("config_hash")
        except (ValueError, AttributeError):
            recorded = "unreadable"
    if recorded == config_hash:
        return "complete" if (out_dir / "done.json").exists() else "resume"
    if (out_dir / "done.json").exists():
        found = [name for name in RESULT_FILES if (out_dir / name).exists()] or ["done.json"]
        raise UserError(
            f"{out_dir} already holds the finished results of another config ({', '.join(found)}); pick a new "
            "folder with hydra.run.dir=... (or hydra.sweep.dir=...) or move the old one away"
        )
    # .hydra/ alone is no run's output: the command line writes it just before the run starts
    return "leftovers" if [p for p in _run_files(out_dir) if p.name != ".hydra"] else "fresh"


def _run_files(out_dir: Path) -> list[Path]:
    """The files of :data:`RUN_FILES` in ``out_dir`` (any other file there is the user's and stays)."""
    return [out_dir / name for name in RUN_FILES if (out_dir / name).exists()]


def set_aside(out_dir: Path) -> Path | None:
    """Move what an unfinished run left in ``out_dir`` (:data:`RUN_FILES`: CSVs, run.json, failed.json,
    checkpoint, ``.hydra/``…) into ``out_dir/.superseded/<n>/``, never deleting any of it. Returns the
    new folder, None if there was nothing to move."""
    entries = _run_files(out_dir)
    if not entries:
        return None
    parent = out_dir / SUPERSEDED
    parent.mkdir(exist_ok=True)
    target = parent / str(1 + max((int(p.name) for p in parent.iterdir() if p.name.isdigit()), default=0))
    target.mkdir()
    for path in entries:
        path.rename(target / path.name)
    return target


def remove_stray_temp_files(folder: Path) -> None:
    """Delete the temp files of atomic writes killed midway (``.NAME.XXXX.tmp``, see
    :func:`prunerun.files.atomic_write`): half-written copies, never results."""
    for name in RUN_FILES:
        for path in folder.glob(f".{name}.*.tmp"):
            path.unlink(missing_ok=True)


def prepare_folder(out_dir: Path, config_hash: str) -> str:
    """Make ``out_dir`` ready for the run of ``config_hash``: the state of :func:`folder_state`, with
    ``leftovers`` set aside (then ``fresh``), stray temp files removed and, on resuming, the earlier
    attempt's failed.json dropped."""
    state = folder_state(out_dir, config_hash)
    if out_dir.is_dir():
        remove_stray_temp_files(out_dir)
    if state == "leftovers":
        moved = set_aside(out_dir)
        logging.getLogger("prunerun").info("%s held an unfinished run of another config: moved to %s", out_dir, moved)
        state = "fresh"
    if state == "resume":
        (out_dir / "failed.json").unlink(missing_ok=True)
    return state


def is_superseded(path: Path) -> bool:
    """Whether ``path`` lies in a folder :func:`set_aside` made (readers of results skip those)."""
    return SUPERSEDED in Path(path).parts


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
    return sorted(run for run in runs if not is_superseded(run))


def load_tables(paths: list[Path]) -> dict[str, pd.DataFrame]:
    """CSV name (``metrics``, ``penalties``…) → that CSV concatenated over every run found below
    ``paths``, with a ``run_dir`` column; a CSV no run has is absent."""
    import pandas as pd  # not needed by a run, which only writes CSVs

    frames: dict[str, list] = {}
    for run in find_runs(paths):
        for name in RESULT_FILES:
            file = run / name
            if file.exists() and file.stat().st_size:
                frame = pd.read_csv(file)
                if len(frame):
                    frames.setdefault(name.removesuffix(".csv"), []).append(frame.assign(run_dir=str(run)))
    return {name: pd.concat(parts, ignore_index=True, sort=False) for name, parts in frames.items()}
