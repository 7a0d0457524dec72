"""The stages of a run, in the order :func:`prunerun.runner.run` calls them. Each reads and advances
the :class:`Job`; a stage whose output is already there (a dense checkpoint, a cache entry) restores
it instead of recomputing."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from prunerun.checkpoint import capture, dense_key, restore
from prunerun.checkpoint import load as load_state
from prunerun.checkpoint import save as save_state
from prunerun.files import atomic_write
from prunerun.measure.latency import latency_rows
from prunerun.progress import progress
from prunerun.provenance import write_done
from prunerun.pruners.sparse_units import sparse_unit_rows, without_sparse_units
from prunerun.pruning.export import save_pruned
from prunerun.results import CORRELATION_COLUMNS, SCORES_COLUMNS, TIMING_COLUMNS
from prunerun.runner.callbacks import learning_rates, prune_at_updates
from prunerun.runner.job import Job
from prunerun.schedules import PruneEvent
from prunerun.scorers.units import get_scorer, list_scorers
from prunerun.seeds import stream_seed
from prunerun.train import iterate_batches, make_optimizer

log = logging.getLogger("prunerun")
DENSE_CHECKPOINT = "dense.ckpt"


def correlate(*args, **kwargs):
    """:func:`prunerun.measure.correlation.correlate`, imported (with scipy) by the runs that correlate."""
    from prunerun.measure.correlation import correlate as correlate_all

    return correlate_all(*args, **kwargs)


def plot_run(out_dir: Path) -> None:
    """:func:`prunerun.figures.run_plots.plot_run`, imported (with matplotlib) once a run has finished."""
    from prunerun.figures.run_plots import plot_run as plot

    plot(out_dir)


def dense_sources(job: Job) -> tuple[Path, Path | None]:
    """Where a dense state may be: the run folder's checkpoint, then the cache entry of its dense key."""
    cfg = job.cfg
    return job.out_dir / DENSE_CHECKPOINT, Path(cfg.cache.dir) / f"{dense_key(cfg, job.device)}.pt" if cfg.cache.enabled else None


def saved_dense_state(job: Job) -> tuple[dict, Path] | None:
    """The first saved dense state and where it came from; read before the run writes anything, so
    that a corrupt file stops the run with the folder's results as they were."""
    for source in dense_sources(job):
        state = load_state(source) if source is not None else None
        if state is not None:
            return state, source
    return None


def train_dense(job: Job, saved: tuple[dict, Path] | None) -> None:
    """Dense training, or its saved state (:func:`saved_dense_state`: a re-launched run's checkpoint,
    or another run of a sweep in the cache). A fresh state is saved to both."""
    cfg, (checkpoint, cache) = job.cfg, dense_sources(job)
    tables = {name: job.tables[name] for name in ("metrics", "penalties", "units", "selected") if name in job.tables}
    if saved is not None:
        restore(job, saved[0], tables)
        log.info("dense model (step %d) restored from %s", job.step, saved[1])
        return
    job.train(cfg.train.steps, None, "train", job.optimizer, job.callbacks)
    state = capture(job, tables)
    save_state(state, checkpoint)
    if cache is not None:
        save_state(state, cache)


def correlation_data(job: Job) -> tuple[list, list]:
    """The criteria (reference included) and fixed batches of the correlation study, checked up front."""
    c = job.cfg.correlate
    scorers = [get_scorer(name, "correlate.scorers") for name in c.scorers or list_scorers()]
    if c.reference not in c.scorers:
        scorers.append(get_scorer(c.reference, "correlate.reference"))
    scorers = list({scorer.name: scorer for scorer in scorers}.values())
    subset = job.data.fixed_subset(c.split, c.subset, job.cfg.seed, "correlate")
    return scorers, list(iterate_batches(subset, job.cfg.measure.batch_size))


def correlate_criteria(job: Job, study: tuple[list, list]) -> None:
    """scores.csv and correlation.csv: every criterion and the reference on one fixed subset."""
    c = job.cfg.correlate
    scores, correlations = correlate(job.model, *study, job.cfg.scorer, stream_seed(job.cfg.seed, "correlate"), c.reference, list(c.normalizations))
    job.table("scores", SCORES_COLUMNS).add(scores)
    job.table("correlation", CORRELATION_COLUMNS).add(correlations)
    for row in correlations:
        if row["scope"] == "all_layers" and row["normalization"] in ("none", "l2"):
            log.info("spearman vs %s  %-16s %-5s all layers %.3f", c.reference, row["criterion"], row["normalization"],
                     row["spearman"])


def prune_after_training(job: Job, events: list[PruneEvent]) -> None:
    """Event after event: fine-tune (the pruner observing) → prune, until the plan or the FLOPs target
    is reached; then the final fine-tuning (Molchanov et al. 2017 §2)."""
    cfg = job.cfg
    if cfg.prune.flops_lambda and cfg.prune.selection == "per_layer":
        log.warning("prune.flops_lambda changes nothing with prune.selection=per_layer: "
                    "Θ_flops is the same for every unit of a layer; use prune.selection=global")
    flops, target, optimizer = job.record(0, "dense"), cfg.prune.target_flops, None
    for event in progress(events, len(events), "pruning", "steps"):
        if target is not None and flops <= target:
            break
        with job.pruner.observe():  # the scorer's statistics from the fine-tuning updates, if any
            if event.finetune:
                optimizer = job.train(event.finetune, event.lr, "finetune", optimizer)
        flops = job.prune(event, "pruned", cfg.prune.eval_every)
    job.record_pending()
    if target is not None and flops > target:
        log.warning("prune.target_flops=%g not reached: prune.fraction=%g stopped pruning at %d FLOPs; raise prune.fraction",
                    target, cfg.prune.fraction, flops)
    steps = cfg.schedule.final_finetune_steps
    if job.pruner.iteration and steps:
        optimizer = optimizer or make_optimizer(job.model, cfg.prune.lr, cfg.train.momentum, cfg.train.weight_decay,
                                                cfg.train.optimizer)
        rates = learning_rates(optimizer, cfg.prune.lr, steps, cfg.prune.final_schedule, start=job.step)
        job.train(steps, cfg.prune.lr, "finetune", optimizer, [rates])
        job.record(job.pruner.iteration + 1, "finetuned")


def prune_before_training(job: Job, events: list[PruneEvent]) -> None:
    """Pruning at initialisation (SNIP, GRASP, Iterative SNIP, FORCE): step after step on the untrained net."""
    if not events:
        return
    job.pruner.start_at_init(len(events))
    job.record(0, "init")
    for event in progress(events, len(events), "masks", "steps"):
        job.prune(event, "pruned", job.cfg.prune.eval_every)
    job.record_pending()


def train_while_pruning(job: Job, events: list[PruneEvent]) -> None:
    """Training with the pruning events that fall during it (scheduled pruning), then the trained
    net's row: unit runs number it as a step of its own, weight runs as the last mask's."""
    cfg, unit_level = job.cfg, job.pruner.level == "unit"
    if unit_level:
        job.record(0, "dense")
    job.train(cfg.train.steps, None, "train", job.optimizer, [*job.callbacks, prune_at_updates(job, events)])
    job.record(len(events) + 1 if unit_level else job.pruner.iteration, "trained")
    if not unit_level:
        job.table("timing", TIMING_COLUMNS).add([job.pruner.timing_row()])
        if cfg.schedule.f_nz:
            remove_sparse_units(job, list(cfg.schedule.f_nz))


def remove_sparse_units(job: Job, f_values: list[float]) -> None:
    """pruning.csv rows (phase ``f_nz``) of the trained net without its sparse units, one per f."""
    batches = [next(job.score_batches) for _ in range(job.cfg.prune.score_batches)]
    for f, model in without_sparse_units(job.model, f_values, batches):
        job.add_pruning_rows(sparse_unit_rows(model, job.sizes), model, iteration=None, phase="f_nz", f_nz=f)


def finish(job: Job, dense: dict | None) -> dict:
    """Evaluate, save the model (units: also the physically smaller one), plot; the run's summary."""
    cfg, out_dir = job.cfg, job.out_dir
    pruned = job.evaluate_all("pruned")
    atomic_write(out_dir / "model.pt", lambda file: torch.save(job.model.state_dict(), file), "wb")
    if job.pruner.level == "unit":  # the physically smaller network, loadable with the model builder alone
        small = save_pruned(job.model, out_dir / "pruned.pt", cfg.model.name, job.data.num_classes, job.data.input_shape,
                            cfg.builder_options())
        if cfg.measure.latency:
            job.table("timing", TIMING_COLUMNS).add(latency_rows(
                job.model, job.data.input_shape, cfg.measure.latency_batch_size, repeats=cfg.measure.latency_repeats,
                shrunk=small))
    plot_run(out_dir)
    summary = dict(dense=dense, pruned=pruned, kept=job.pruner.kept(), total=job.pruner.total(),
                   level=job.pruner.level, out_dir=str(out_dir))
    write_done(out_dir, summary)
    (out_dir / DENSE_CHECKPOINT).unlink(missing_ok=True)
    log_summary(summary)
    return summary


def log_summary(summary: dict) -> None:
    for phase in ("dense", "pruned"):
        if summary[phase] is not None:
            loss, acc = summary[phase]["test"]
            log.info("%-6s test accuracy %.2f%%  loss %.4f", phase, 100 * acc, loss)
    kept = ", ".join(f"{name} {summary['kept'][name]}/{summary['total'][name]}" for name in summary["kept"])
    log.info("%ss kept: %s", summary["level"], kept)
    log.info("results in %s", summary["out_dir"])
