"""Dense-model cache, resuming a killed run, skipping a finished one: the CSV rows never change."""
from __future__ import annotations

import logging

import pytest

import prunerun.runner as runner_module
from prunerun.errors import UserError
from prunerun.runner import DENSE_CHECKPOINT, run

CSVS = ("metrics.csv", "penalties.csv", "pruning.csv")
SMALL = ("train.steps=30", "measure.every=15", "prune.fraction=0.15")


def csv_texts(folder) -> dict[str, str]:
    return {name: (folder / name).read_text() for name in CSVS}


@pytest.fixture
def uninterrupted(tiny_config, tmp_path):
    """A run that trained its own dense model (cache off): the reference rows."""
    out = tmp_path / "reference"
    run(tiny_config(*SMALL, "cache.enabled=false"), out, "same")
    return csv_texts(out)


def test_a_cached_dense_model_gives_the_rows_of_a_trained_one(tiny_config, tmp_path, uninterrupted, caplog):
    cache = tmp_path / "cache"
    run(tiny_config(*SMALL, f"cache.dir={cache}"), tmp_path / "first", "same")  # trains, fills the cache
    assert len(list(cache.glob("*.pt"))) == 1
    with caplog.at_level(logging.INFO, logger="prunerun"):
        run(tiny_config(*SMALL, f"cache.dir={cache}"), tmp_path / "second", "same")
    assert "restored from" in caplog.text
    assert csv_texts(tmp_path / "first") == csv_texts(tmp_path / "second") == uninterrupted
    # a run that differs only after dense training (scorer, fraction) shares the entry
    run(tiny_config(*SMALL, f"cache.dir={cache}", "scorer=random", "prune.fraction=0.3"), tmp_path / "third")
    assert len(list(cache.glob("*.pt"))) == 1
    run(tiny_config(*SMALL, f"cache.dir={cache}", "train.lr=0.02"), tmp_path / "fourth")
    assert len(list(cache.glob("*.pt"))) == 2


def test_a_killed_run_resumes_with_the_same_rows(tiny_config, tmp_path, uninterrupted, monkeypatch, caplog):
    out = tmp_path / "killed"
    cfg = tiny_config(*SMALL, "cache.enabled=false")
    calls = []

    def killed_while_pruning(job, events):
        calls.append(1)
        job.record(0, "dense")  # some rows of the pruning phase were written, then the kill
        raise KeyboardInterrupt

    monkeypatch.setattr(runner_module, "prune_after_training", killed_while_pruning)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out, "same")
    assert calls and (out / DENSE_CHECKPOINT).exists() and not (out / "done.json").exists()
    monkeypatch.undo()
    with caplog.at_level(logging.INFO, logger="prunerun"):
        run(cfg, out, "same")  # resumes from dense.ckpt
    assert f"restored from {out / DENSE_CHECKPOINT}" in caplog.text
    assert csv_texts(out) == uninterrupted
    assert (out / "done.json").exists() and not (out / DENSE_CHECKPOINT).exists()


def test_a_complete_run_is_skipped_and_another_config_refused(tiny_config, tmp_path):
    out = tmp_path / "run"
    first = run(tiny_config(*SMALL), out)
    stamps = {name: (out / name).stat().st_mtime_ns for name in CSVS}
    again = run(tiny_config(*SMALL), out)
    assert again["pruned"]["test"] == list(first["pruned"]["test"]) and again["kept"] == first["kept"]
    assert stamps == {name: (out / name).stat().st_mtime_ns for name in CSVS}
    with pytest.raises(UserError, match="already holds the finished results of another config"):
        run(tiny_config(*SMALL, "seed=1"), out)


def test_a_corrupt_checkpoint_is_one_clear_error(tiny_config, tmp_path):
    cache = tmp_path / "cache"
    run(tiny_config(*SMALL, f"cache.dir={cache}"), tmp_path / "first")
    entry = next(cache.glob("*.pt"))
    entry.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"checkpoint .* is unreadable .*delete it and run again"):
        run(tiny_config(*SMALL, f"cache.dir={cache}"), tmp_path / "second")


def test_a_corrupt_run_checkpoint_stops_the_run_and_keeps_the_folders_rows(tiny_config, tmp_path, monkeypatch):
    out = tmp_path / "killed"
    cfg = tiny_config(*SMALL, "cache.enabled=false")

    def killed_while_pruning(job, events):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner_module, "prune_after_training", killed_while_pruning)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out, "same")
    monkeypatch.undo()
    before = csv_texts(out)
    assert before["metrics.csv"].count("\n") > 1 and before["penalties.csv"].count("\n") > 1  # dense training's rows
    (out / DENSE_CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"checkpoint .*dense.ckpt is unreadable"):
        run(cfg, out, "same")
    assert csv_texts(out) == before


def test_a_non_finite_loss_stops_training_and_caches_nothing(tiny_config, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(UserError, match=r"^the training loss is (nan|inf|-inf) at update \d+ \(train, learning rate 1e\+12\)"):
        run(tiny_config(*SMALL, "train.lr=1e12", f"cache.dir={cache}"), tmp_path / "run")
    assert not any(cache.glob("*.pt")) and not (tmp_path / "run" / DENSE_CHECKPOINT).exists()


@pytest.mark.parametrize("where", ["a file", "below a file"])
def test_a_cache_dir_that_cannot_hold_files_is_refused_before_training(tiny_config, tmp_path, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    cache = blocker if where == "a file" else blocker / "cache"
    with pytest.raises(UserError, match=rf"^cache.dir={cache} cannot hold files \(.*\); give cache.dir a writable folder$"):
        run(tiny_config(*SMALL, f"cache.dir={cache}"), tmp_path / "run")
    assert not (tmp_path / "run").exists()
