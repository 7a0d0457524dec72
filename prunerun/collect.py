"""One table for a sweep: ``prunerun-collect SWEEP_DIR [--out results.csv]``.

A row per job folder (one holding ``.hydra/``): its overrides, ``status`` — complete (done.json),
failed (failed.json, with the error) or incomplete (still running, or killed: re-launch the same
sweep to resume it) — the run's identifying config values (run.json) and its test results
(done.json). Failed and incomplete jobs are listed on the terminal as well.

Reads JSON and YAML text only: no torch, no training code.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from prunerun.config import ModelConfig
from prunerun.results import is_superseded


def model_label(model: dict) -> str:
    """``ModelConfig.label`` of a saved model section (older run.json files lack the newer keys)."""
    fields = ModelConfig.__dataclass_fields__
    return ModelConfig(**{key: value for key, value in model.items() if key in fields}).label


def job_row(job: Path) -> dict:
    overrides = (job / ".hydra" / "overrides.yaml")
    row = {"job": job.name, "overrides": " ".join(
        line.removeprefix("- ").strip() for line in overrides.read_text().splitlines() if line.strip()
    ) if overrides.exists() else ""}
    if (job / "run.json").exists():
        record = json.loads((job / "run.json").read_text())
        config = record["config"]
        row.update(seed=config["seed"], dataset=config["dataset"]["name"], model=model_label(config["model"]),
                   scorer=config["scorer"]["name"], schedule=config["schedule"]["name"],
                   fraction=config["prune"]["fraction"], git_revision=record.get("git_revision"))
    if (job / "done.json").exists():
        done = json.loads((job / "done.json").read_text())
        row["status"] = "complete"
        for phase in ("dense", "pruned"):
            if done.get(phase):
                row[f"{phase}_test_loss"], row[f"{phase}_test_accuracy"] = done[phase]["test"]
        row["kept"], row["total"] = sum(done["kept"].values()), sum(done["total"].values())
        row["level"] = done.get("level")
    elif (job / "failed.json").exists():
        row.update(status="failed", error=json.loads((job / "failed.json").read_text())["error"])
    else:
        row["status"] = "incomplete"
    return row


def collect(sweep_dir: Path) -> pd.DataFrame:
    """The table of every job folder below ``sweep_dir``."""
    jobs = sorted({p.parent for p in sweep_dir.rglob(".hydra") if not is_superseded(p)},
                  key=lambda p: (len(p.parts), str(p)))
    return pd.DataFrame([job_row(job) for job in jobs])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prunerun-collect", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="default: SWEEP_DIR/results.csv")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"collect: error: no such folder: {args.sweep_dir}", file=sys.stderr)
        return 2
    table = collect(args.sweep_dir)
    if table.empty:
        print(f"collect: error: no job folders (with .hydra/) below {args.sweep_dir}", file=sys.stderr)
        return 2
    out = args.out or args.sweep_dir / "results.csv"
    table.to_csv(out, index=False)
    counts = table["status"].value_counts()
    print(f"{len(table)} jobs: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("complete", "failed", "incomplete"))
          + f" → {out}")
    for _, row in table[table["status"] != "complete"].iterrows():
        print(f"  {row['status']:10s} {row['job']}: {row['overrides']}" + (f" — {row['error']}" if row.get("error") else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
