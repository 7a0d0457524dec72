"""A tiny real multirun (2 seeds × 2 fractions × 2 scorers) through the console script: collected
(prunerun-collect), turned into figures (prunerun-figures), re-launched (finished jobs skipped); a failing job does not stop the others."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import TINY
from test_cli import prunerun

from prunerun import collect
from prunerun.figures import FIGURES, list_figures
from prunerun.figures import cli as figures

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"

QUICK = [*TINY, "train.steps=12", "measure.every=6", "schedule.final_finetune_steps=2"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, data_root):
    root = tmp_path_factory.mktemp("sweep")
    args = ["-m", *QUICK, f"dataset.root={data_root}", "seed=0,1", "prune.fraction=0.1,0.2", "scorer=taylor,random",
            f"hydra.sweep.dir={root / 'sweep'}"]
    first = prunerun(*args, cwd=root)
    assert first.returncode == 0, first.stderr
    return root / "sweep", args, root


def test_every_job_completes_and_collects(sweep):
    folder, _, _ = sweep
    assert collect.main([str(folder)]) == 0
    table = pd.read_csv(folder / "results.csv")
    assert len(table) == 8 and (table["status"] == "complete").all()
    assert set(zip(table["seed"], table["fraction"], table["scorer"])) == {
        (s, f, c) for s in (0, 1) for f in (0.1, 0.2) for c in ("taylor", "random")}
    assert table["git_revision"].notna().all()
    record = json.loads((folder / "0" / "run.json").read_text())
    assert record["versions"]["torch"] and record["config"]["seed"] in (0, 1)


def test_figures_render_from_the_sweep(sweep, capsys):
    folder, _, root = sweep
    out = root / "figures"
    assert figures.main([str(folder), "--out", str(out)]) == 0
    report = capsys.readouterr().out
    assert "8 runs read" in report
    written = [line.split()[1].rstrip(":") for line in report.splitlines() if line.strip().startswith("wrote")]
    for name in written:
        kind = FIGURES.get(name).kind
        assert (out / f"{name}.{'csv' if kind == 'table' else 'png'}").stat().st_size > 0
    skipped = [line for line in report.splitlines() if line.strip().startswith("skipped")]
    assert all("+experiment=" in line or "no " in line for line in skipped)
    assert len(written) + len(skipped) == len(list_figures())


def test_the_scripts_still_work_as_thin_wrappers(sweep, tmp_path):
    folder, _, _ = sweep
    run = lambda script, *args: subprocess.run([sys.executable, str(SCRIPTS / script), *args],  # noqa: E731
                                               capture_output=True, text=True, timeout=300)
    collected = run("collect.py", str(folder), "--out", str(tmp_path / "results.csv"))
    assert collected.returncode == 0, collected.stderr
    assert "8 jobs: 8 complete" in collected.stdout
    assert (tmp_path / "results.csv").read_text() == collect.collect(folder).to_csv(index=False)
    drawn = run("figures.py", str(folder), "--out", str(tmp_path / "figures"), "--only", "mrp_fig2_penalties")
    assert drawn.returncode == 0, drawn.stderr
    assert "8 runs read" in drawn.stdout and "mrp_fig2_penalties" in drawn.stdout


def test_relaunching_skips_finished_jobs(sweep):
    folder, args, root = sweep
    stamps = {p: p.stat().st_mtime_ns for p in folder.glob("*/*.csv")}
    again = prunerun(*args, cwd=root)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("complete: skipped") == 8
    assert stamps == {p: p.stat().st_mtime_ns for p in folder.glob("*/*.csv")}


def test_a_failing_job_does_not_stop_the_others(tmp_path, data_root):
    sweep = tmp_path / "sweep"
    result = prunerun("-m", *QUICK, f"dataset.root={data_root}", "measure.subset=100000,64", f"hydra.sweep.dir={sweep}",
                      cwd=tmp_path)
    assert result.returncode == 1
    assert "1 job(s) of the sweep failed" in result.stderr and "measure.subset=100000 is larger" in result.stderr
    assert (sweep / "1" / "done.json").exists() and (sweep / "0" / "failed.json").exists()
    assert collect.main([str(sweep)]) == 0
    table = pd.read_csv(sweep / "results.csv").set_index("job")
    assert table.loc[0, "status"] == "failed" and "larger than the train split" in table.loc[0, "error"]
    assert table.loc[1, "status"] == "complete"
