"""Dense-model cache and resumable runs: sweeps do not retrain what they share, and a killed run
picks up where its last checkpoint stands.

The state after dense training — model, the training batch stream's position, every global random
generator, the step count and the CSV rows written so far — is saved twice:
- ``dense.ckpt`` in the run folder, until the run completes, so a re-launched run resumes there;
- ``<cache.dir>/<key>.pt``, content-addressed: the key hashes exactly what dense training depends
  on — dataset (but its worker count), model, train, seed, device type, the CPU thread count
  (``torch.get_num_threads()``: 1 and 2 threads train different weights) — plus the measurement and
  attack settings when they are on, since their rows are part of the state.
A run restored either way writes the same CSV rows as one that trained (tests/test_resume.py).
"""
from __future__ import annotations

import dataclasses
import logging
import random
import time
from pathlib import Path

import numpy as np
import torch

from prunerun.errors import UserError
from prunerun.files import atomic_write
from prunerun.hashing import digest
from prunerun.results import CsvTable

log = logging.getLogger("prunerun")
CACHE_FORMAT = 2  # bump when what a dense state holds, or how training runs, changes



def dense_key(cfg, device: torch.device) -> str:
    """Content address of the dense state (see the module docstring)."""
    dataset = {k: v for k, v in dataclasses.asdict(cfg.dataset).items() if k != "num_workers"}
    measured = cfg.measure.every > 0
    return digest({
        "format": CACHE_FORMAT, "dataset": dataset, "model": dataclasses.asdict(cfg.model),
        "train": cfg.train.key(), "seed": cfg.seed, "device": device.type,
        # CPU kernels split reductions by thread, so the trained weights depend on the thread count
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "measure": dataclasses.asdict(cfg.measure) if measured else None,
        "counting": cfg.prune.counting if measured else None,  # the penalty rows count units by it
        "scorer_options": {k: v for k, v in dataclasses.asdict(cfg.scorer).items() if k != "name"}
        if measured and cfg.measure.weight_scorers else None,
        "attack": dataclasses.asdict(cfg.attack) if cfg.attack.layer else None,
        # residual streams gated too: more gates in the state (absent when false: earlier keys stay valid)
        **({"coupled": True} if cfg.prune.coupled else {}),
    })


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def capture(run, tables: dict[str, CsvTable]) -> dict:
    """Everything a run needs to continue after dense training as if it had just trained."""
    return {
        "format": CACHE_FORMAT, "model": {k: v.detach().cpu() for k, v in run.model.state_dict().items()},
        "batches": run.batches.state(), "step": run.step, "rng": _rng_state(),
        "rows": {name: table.own_rows() for name, table in tables.items()},
    }


def restore(run, state: dict, tables: dict[str, CsvTable]) -> None:
    """Put ``state`` (from :func:`capture`) into ``run`` and its tables."""
    run.model.load_state_dict(state["model"])
    run.batches.restore(state["batches"])
    run.step = state["step"]
    _set_rng_state(state["rng"])
    for name, table in tables.items():
        table.add(state["rows"].get(name, []))


STALE_SECONDS = 3600  # a temp file this old beside a cache entry is a killed write, not one in progress


def save(state: dict, path: Path) -> None:
    """Write atomically (temp file + rename), so a kill never leaves half a checkpoint. Temp files
    that killed writes of the same entry left (``.NAME.XXXX.tmp``) go once they are an hour old:
    younger ones may be a concurrent run's write in progress (runs share a cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stray in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if time.time() - stray.stat().st_mtime > STALE_SECONDS:
                stray.unlink()
        except OSError:  # gone meanwhile
            pass
    atomic_write(path, lambda file: torch.save(state, file), "wb")


def load(path: Path) -> dict | None:
    """The state saved at ``path``, None when there is none; a corrupt file is a :class:`UserError`."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)  # our own file: RNG states are pickled
        if state.get("format") != CACHE_FORMAT:
            raise ValueError(f"format {state.get('format')!r}, expected {CACHE_FORMAT}")
    except Exception as err:
        raise UserError(f"checkpoint {path} is unreadable ({type(err).__name__}: {str(err).splitlines()[0][:120]}); "
                        "delete it and run again (the dense model is then retrained)") from None
    return state
