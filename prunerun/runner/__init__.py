"""One pruning timeline: build → train with callbacks → prune at the schedule's events → evaluate →
write CSVs and the run's plot.

A schedule's events fall before training (pruning at initialisation: SNIP, GRASP, FORCE), during it
(scheduled pruning), or after dense training (one-shot and iterative pruning of units, each step
after fine-tuning); the pruner (units or weights) applies them the same way wherever they fall.
"""
from __future__ import annotations

import logging
from pathlib import Path

from prunerun.config import Config
from prunerun.errors import UserError
from prunerun.files import check_writable
from prunerun.hashing import config_hash
from prunerun.progress import log_every
from prunerun.provenance import read_done, write_run_record
from prunerun.runner.callbacks import create_measurers, start_training
from prunerun.runner.job import Job, build_job, load_plugins, open_tables, pruning_level, resolve_device, seed_everything
from prunerun.runner.stages import (DENSE_CHECKPOINT, correlate_criteria, correlation_data, finish, prune_after_training,
                                    prune_before_training, saved_dense_state, train_dense, train_while_pruning)
from prunerun.results import prepare_folder
from prunerun.schedules import AFTER_TRAINING, BEFORE_TRAINING, PruneEvent, get_schedule

log = logging.getLogger("prunerun")
__all__ = ["DENSE_CHECKPOINT", "Job", "pruning_level", "resolve_device", "run", "seed_everything"]


def run(cfg: Config, out_dir: Path, overrides: str = "") -> dict:
    """Run one experiment into ``out_dir``; returns the summary it prints. A folder holding the
    completed run of the same config is skipped; an unfinished one resumes from its checkpoint; an
    unfinished run of another config is moved aside (:func:`prunerun.results.prepare_folder`)."""
    digest = config_hash(cfg)
    if prepare_folder(out_dir, digest) == "complete":
        log.info("%s already holds this run, complete: skipped", out_dir)
        return read_done(out_dir)
    job = start(cfg, out_dir, overrides, digest)
    events = job.events()
    if job.schedule.when == "after_training":
        train_dense(job, job.saved_dense)
        dense = job.evaluate_all("dense")
        if job.correlation is not None:
            correlate_criteria(job, job.correlation)
        prune_after_training(job, events)
    else:
        dense = None
        prune_before_training(job, [event for event in events if event.after == BEFORE_TRAINING])
        train_while_pruning(job, [event for event in events if event.after not in (BEFORE_TRAINING, AFTER_TRAINING)])
    return finish(job, dense)


def check_timeline(cfg: Config, events: list[PruneEvent]) -> None:
    """Every event during training falls within it (a step after the last update would never prune)."""
    late = [event.after for event in events if event.after not in (BEFORE_TRAINING, AFTER_TRAINING)
            and event.after > cfg.train.steps]
    if late:
        raise UserError(f"schedule.at={list(cfg.schedule.at)} (at_unit={cfg.schedule.at_unit}) prunes after updates "
                        f"{late}, past the last of train.steps={cfg.train.steps}; raise train.steps or lower schedule.at")


def start(cfg: Config, out_dir: Path, overrides: str, digest: str) -> Job:
    """Check the config against the registries, build the job and everything it measures (a bad
    setting fails here, before anything is written), then open the run folder."""
    seed_everything(cfg.seed)
    log_every(cfg.log.every_s)
    device = resolve_device(cfg.device)
    load_plugins(cfg)
    level = pruning_level(cfg.schedule.name, cfg.scorer.name, cfg.prune.level)
    if cfg.correlate.enabled and get_schedule(cfg.schedule.name).when != "after_training":
        raise UserError(f"correlate.enabled studies the dense trained net; schedule={cfg.schedule.name} prunes "
                        "before or during training: use schedule=one_shot or iterative")
    job = build_job(cfg, out_dir, overrides, device, level)
    check_timeline(cfg, job.events())
    measurers = create_measurers(job)
    job.correlation = correlation_data(job) if cfg.correlate.enabled else None
    if job.schedule.when == "after_training" and cfg.cache.enabled:
        check_writable(cfg.cache.dir, "cache.dir")  # before dense training, whose result it stores
    job.saved_dense = saved_dense_state(job) if job.schedule.when == "after_training" else None
    log.info("%s on %s (%d/%d/%d examples), device %s, pruning %ss by %s (%s)", cfg.model.label, cfg.dataset.name,
             *(len(job.data.split(s)) for s in ("train", "val", "test")), device, level, cfg.scorer.name,
             cfg.schedule.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_run_record(out_dir, cfg, digest, overrides, device)
    open_tables(job)
    start_training(job, measurers)
    return job
