"""Every random stream of a run and its seed, in one table.

A run draws from these streams only (``seed`` is the config's ``seed``); each has a generator of
its own, so turning one on (a measurement, a scorer) never shifts another. The offsets are part of
what a run produces: changing one changes its CSV rows.

| stream | seed | what draws from it |
| --- | --- | --- |
| ``global`` | seed | torch/numpy/random global generators, set at the start of every job |
| ``split`` | seed | the dataset's train/val split (:func:`prunerun.data.build_dataset`) |
| ``subset`` | seed | the fixed subsets of ``measure``, ``correlate`` and ``attack`` |
| ``training`` | seed + 0 | order (and augmentation seeds) of the training minibatches |
| ``pruning`` | seed + 1 | scorers that draw (random, OBD probes), GRASP's class-balanced batches |
| ``correlate`` | seed + 2 | scorers that draw, in the correlation study |
| ``scoring`` | seed + 3 | the scoring minibatches (gradient-only passes, oracle/OBD/MI data) |
| ``saliency_reference`` | seed + 4 | fixed batches of the FORCE saliency ratio (one-shot SNIP) |
| ``synthetic`` | seed + 5 | ``dataset=synthetic``: class templates, then each split's labels and example seeds |
| ``measure`` | seed · 1,000,003 + step | scorers and fine-tuning batches of a penalty measurement at ``step`` |
| ``ties`` | 0 | the fixed order in which equal unit scores are taken (global selection) |
"""
from __future__ import annotations

import torch

OFFSETS = {"training": 0, "pruning": 1, "correlate": 2, "scoring": 3, "saliency_reference": 4, "synthetic": 5}
PER_STEP = 1_000_003  # measurements: a stream per (seed, step), far from the offsets above
TIES_SEED = 0


def stream_seed(seed: int, stream: str, step: int | None = None) -> int:
    """The seed of ``stream`` (see the table above); ``measure`` needs the ``step`` it measures at."""
    if stream in ("global", "split", "subset"):
        return seed
    if stream == "ties":
        return TIES_SEED
    if stream == "measure":
        if step is None:
            raise ValueError("the measure stream is seeded per step: give step=")
        return seed * PER_STEP + step
    return seed + OFFSETS[stream]


def generator(seed: int, stream: str, step: int | None = None) -> torch.Generator:
    """A fresh CPU generator for ``stream``."""
    return torch.Generator().manual_seed(stream_seed(seed, stream, step))
