"""Shared fixtures: a tiny gated net, a few batches, composed configs and the embedded data."""
from __future__ import annotations

import os
from pathlib import Path

# One thread per process: the suite starts runs in subprocesses (two at once with the joblib
# launcher), and OpenMP threads spinning against each other on a small machine slow everything.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from prunerun.config import to_config  # noqa: E402
from prunerun.config.hydra import register_configs  # noqa: E402
from prunerun.models.small_cnn import gated_small_cnn  # noqa: E402

CONF = str(Path(__file__).resolve().parent.parent / "conf")
register_configs()

# Small but real: every phase of the runner, a few steps each.
TINY = [
    "train.steps=20", "train.eval_every=10", "schedule.finetune_steps=3", "schedule.final_finetune_steps=6",
    "prune.fraction=0.1", "measure.every=10", "measure.subset=64", "measure.batch_size=32", "device=cpu",
]


@pytest.fixture(scope="session", autouse=True)
def dense_cache(tmp_path_factory) -> Path:
    """A dense-model cache of the session's own (runs in subprocesses inherit it too)."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["PRUNERUN_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """One MNIST-5k IDX folder shared by the whole session."""
    return tmp_path_factory.mktemp("data") / "mnist5k"


def compose_config(overrides: list[str] = ()):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.fixture
def tiny_config(data_root):
    """Compose the default config with TINY and extra overrides into a validated Config."""
    def make(*overrides: str):
        return to_config(compose_config(TINY + [f"dataset.root={data_root}", *overrides]))
    return make


@pytest.fixture
def tiny_net() -> torch.nn.Module:
    """The thesis's small CNN on 16×16 inputs (fc1 reads 16×1×1), in float64 for exact checks."""
    torch.manual_seed(0)
    return gated_small_cnn(in_channels=1, image_size=16, num_classes=10).double()


@pytest.fixture
def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Three batches of unequal size, so per-example scaling of the batch-mean loss is exercised."""
    generator = torch.Generator().manual_seed(1)
    return [
        (torch.randn(n, 1, 16, 16, generator=generator, dtype=torch.float64), torch.randint(0, 10, (n,), generator=generator))
        for n in (5, 3, 4)
    ]
