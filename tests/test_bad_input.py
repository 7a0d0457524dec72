"""Bad input from the command line: one line, exit 2, nothing earlier lost or rewritten.

In-process through :func:`prunerun.cli.main` where the mistake is found before Hydra starts (fast),
in a subprocess where it takes a real run. Random command lines: tests/test_fuzz_cli.py.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY
from prunerun import cli
from prunerun.collect import collect
from prunerun.errors import UserError


def bad(capsys, *args: str) -> str:
    """Run the command line in-process; it must exit 2 with one line on stderr, which is returned."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(list(args))
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("prunerun: error: "), err
    return err.removeprefix("prunerun: error: ")


@pytest.mark.parametrize("override,message", [
    ("scorer=nope", "scorer=nope is not one of the scorer options"),
    ("scorer=tailor", "did you mean scorer=taylor?"),
    ("model=vgg", "did you mean model=vgg19?"),
    ("+experiment=nope", "experiment=nope is not one of the experiment options"),
    ("scorer=", "scorer= is not one of the scorer options"),
    ("prune.fractoin=0.3", "prune.fractoin is not an option; did you mean prune.fraction?"),
    ("+prune.fractoin=0.3", "prune.fractoin is not an option; did you mean prune.fraction?"),
    ("train={a:1}", "train.a is not an option"),
    ("prune.fraction=abc", "prune.fraction=abc: Value 'abc' of type 'str' could not be converted to Float"),
    ("scorer=[", "cannot read the override 'scorer=['"),
    ("+scorer=taylor", "a group already chosen is changed without +"),
    ("~scorer", "scorer is not set"),
    ("seed=-1", "seed=-1 must be in [0, 2**32)"),
    ("seed=1099511627776", "seed=1099511627776 must be in [0, 2**32)"),
    ("prune.fraction=1.5", "prune.fraction=1.5 is outside [0, 1)"),
])
def test_a_config_error_is_one_line_before_anything_is_written(capsys, tmp_path, monkeypatch, override, message):
    monkeypatch.chdir(tmp_path)
    assert message in bad(capsys, override, f"hydra.run.dir={tmp_path / 'run'}")
    assert list(tmp_path.iterdir()) == []  # not even the folder


def test_config_errors_are_found_before_torch_is_imported(tmp_path):
    code = ("import sys\nfrom prunerun.cli import main\ntry:\n    main(['seed=-1'])\nexcept SystemExit as e:\n"
            "    print(e.code, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["2", "False"], result.stderr


def test_an_output_folder_below_a_file_or_unwritable_is_refused_at_once(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("mine\n")
    assert "lies below the file" in bad(capsys, f"hydra.run.dir={tmp_path / 'a_file' / 'run'}")
    assert "cannot hold files" in bad(capsys, "hydra.run.dir=/proc/prunerun/run")
    assert "cannot be created or written (Not a directory)" in bad(
        capsys, "-m", "seed=0,1", f"hydra.sweep.dir={tmp_path / 'a_file' / 'sweep'}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


@pytest.mark.skipif(not hasattr(sys, "getwindowsversion") and __import__("os").geteuid() == 0,
                    reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_refused_at_once(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert "cannot hold files" in bad(capsys, f"hydra.run.dir={locked / 'run'}")


def test_a_bad_swept_group_choice_stops_the_sweep_before_any_job(capsys, tmp_path):
    sweep = tmp_path / "sweep"
    assert "scorer=nope is not one of the scorer options" in bad(
        capsys, "-m", "scorer=taylor,nope", f"hydra.sweep.dir={sweep}")
    assert not sweep.exists()


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["prunerun", *TINY, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "prunerun.log"}


def test_a_folder_of_finished_results_is_refused_with_its_provenance_untouched(tmp_path, data_root):
    out = tmp_path / "run"
    assert run(f"dataset.root={data_root}", f"hydra.run.dir={out}", cwd=tmp_path).returncode == 0
    before = snapshot(out)
    refused = run(f"dataset.root={data_root}", f"hydra.run.dir={out}", "seed=1", cwd=tmp_path)
    assert refused.returncode == 2 and "already holds the finished results of another config" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert snapshot(out) == before  # .hydra/config.yaml and overrides.yaml too


def test_a_failed_run_of_another_config_is_moved_aside_and_the_folder_reused(tmp_path, data_root):
    out = tmp_path / "sweep" / "0"
    failed = run(f"dataset.root={data_root}", f"hydra.run.dir={out}", "train.lr=1e12", cwd=tmp_path)
    assert failed.returncode == 2 and "the training loss is" in failed.stderr and "learning rate 1e+12" in failed.stderr
    assert (out / "metrics.csv").read_text().count("\n") == 1  # header only: the failed run left its tables
    left = snapshot(out)
    (out / ".pruning.csv.k2j4h5.tmp").write_text("half a file")  # a write killed midway

    fixed = run(f"dataset.root={data_root}", f"hydra.run.dir={out}", cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert (out / "done.json").exists() and not list(out.glob(".*.tmp"))
    aside = out / ".superseded" / "1"
    assert snapshot(aside) == left  # moved, byte for byte, nothing deleted
    assert "train.lr=1e12" in (aside / ".hydra" / "overrides.yaml").read_text()
    assert "train.lr=1e12" not in (out / ".hydra" / "overrides.yaml").read_text()
    jobs = collect(tmp_path / "sweep")
    assert list(jobs["job"]) == ["0"] and list(jobs["status"]) == ["complete"]


def test_run_json_and_the_cache_key_hold_the_thread_count(tiny_config, tmp_path):
    import torch

    from prunerun.checkpoint import dense_key
    from prunerun.hashing import config_hash
    from prunerun.provenance import write_run_record

    cfg, threads = tiny_config(), torch.get_num_threads()
    try:
        keys = []
        for n in (1, 2):
            torch.set_num_threads(n)
            keys.append(dense_key(cfg, torch.device("cpu")))
            write_run_record(tmp_path, cfg, config_hash(cfg), "", torch.device("cpu"))
            assert json.loads((tmp_path / "run.json").read_text())["threads"] == n
    finally:
        torch.set_num_threads(threads)
    assert keys[0] != keys[1]


def test_a_cache_write_removes_the_stale_temp_files_of_killed_writes_only(tmp_path):
    import os
    import time

    from prunerun.checkpoint import STALE_SECONDS, save

    stale, fresh = tmp_path / ".abc.pt.old111.tmp", tmp_path / ".abc.pt.new222.tmp"
    for path in (stale, fresh):
        path.write_bytes(b"half")
    past = time.time() - STALE_SECONDS - 60
    os.utime(stale, (past, past))
    save({"format": 1}, tmp_path / "abc.pt")
    assert not stale.exists() and fresh.exists()  # a young one may be another run's write in progress
    assert (tmp_path / "abc.pt").is_file()


def test_a_multirun_flag_after_overrides_is_taken(capsys, tmp_path):
    """``prunerun scorer=taylor -m seed=0,1``: argparse would refuse the overrides after the flag."""
    assert "scorer=nope is not one of the scorer options" in bad(
        capsys, "seed=0", "-m", "scorer=taylor,nope", f"hydra.sweep.dir={tmp_path / 'sweep'}")
