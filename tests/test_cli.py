"""The console script in a subprocess: a run, a 2-job multirun, and bad inputs."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import TINY


def prunerun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["prunerun", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_single_run_writes_csvs_and_png(tmp_path, data_root):
    out = tmp_path / "run"
    result = prunerun(*TINY, f"dataset.root={data_root}", f"hydra.run.dir={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("metrics.csv", "penalties.csv", "pruning.csv", "run.png", ".hydra/config.yaml"):
        assert (out / name).is_file(), name
    assert "test accuracy" in result.stdout and str(out) in result.stdout


def test_two_job_multirun_with_the_joblib_launcher(tmp_path, data_root):
    sweep = tmp_path / "sweep"
    result = prunerun("-m", "hydra/launcher=local", "hydra.launcher.n_jobs=2", *TINY, f"dataset.root={data_root}",
                      "seed=0,1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for job in ("0", "1"):
        assert (sweep / job / "pruning.csv").is_file()
    assert (sweep / "0" / "metrics.csv").read_text() != (sweep / "1" / "metrics.csv").read_text()
    assert "JoblibLauncher" in (sweep / "multirun.yaml").read_text()


def test_a_bad_swept_value_stops_the_sweep_before_any_job(tmp_path, data_root):
    sweep = tmp_path / "sweep"
    result = prunerun("-m", *TINY, f"dataset.root={data_root}", "prune.fraction=0.1,1.5", f"hydra.sweep.dir={sweep}",
                      cwd=tmp_path)
    assert result.returncode == 2
    assert "prune.fraction=1.5 is outside [0, 1)" in result.stderr and "Traceback" not in result.stderr
    assert not sweep.exists()


@pytest.mark.parametrize("override,message,found_by_the_command_line", [
    ("scorer=nope", "scorer=nope is not one of the scorer options", True),
    ("prune.fraction=abc", "prune.fraction=abc: Value 'abc' of type 'str' could not be converted to Float", True),
    ("prune.fraction=1.5", "prune.fraction=1.5 is outside [0, 1)", True),
    ("measure.subset=100000", "measure.subset=100000 is larger than the train split", False),
    ("dataset=mnist", "MNIST not found", False),
])
def test_bad_input_gives_one_clear_line_and_exit_2(tmp_path, data_root, override, message, found_by_the_command_line):
    root = tmp_path / "missing" if override == "dataset=mnist" else data_root
    earlier = tmp_path / "earlier.csv"
    earlier.write_text("kept\n")
    result = prunerun(*TINY, f"dataset.root={root}", override, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("prunerun: error: ")
    assert message in result.stderr
    assert earlier.read_text() == "kept\n"
    assert not (tmp_path / "run" / "metrics.csv").exists()
    # a config error stops before Hydra makes the folder; a data error after it, with its .hydra/ and log only
    assert (tmp_path / "run").exists() != found_by_the_command_line
