"""What produced a run folder: ``run.json`` (config and its hash, git revision, package versions,
machine and its CPU thread count) at the start, ``done.json`` (the summary) when the run completes."""
from __future__ import annotations

import dataclasses
import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from prunerun.files import atomic_write

PACKAGES = ("prunerun", "torch", "torchvision", "hydra-core", "omegaconf", "numpy", "pandas", "scipy", "matplotlib")


def git_revision() -> str | None:
    """The commit of the prunerun checkout (``+dirty`` with uncommitted changes), None outside git."""
    source = Path(__file__).resolve().parent
    try:
        run = lambda *args: subprocess.run(["git", *args], cwd=source, capture_output=True, text=True, timeout=10)  # noqa: E731
        revision = run("rev-parse", "HEAD")
        if revision.returncode:
            return None
        dirty = run("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return revision.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str | None]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def write_json(path: Path, value: Any) -> None:
    """``value`` as indented JSON, written atomically (:func:`atomic_write`)."""
    text = json.dumps(value, indent=2, default=str) + "\n"
    atomic_write(path, lambda file: file.write(text))


def write_run_record(out_dir: Path, cfg, config_hash: str, overrides: str, device: torch.device) -> None:
    """run.json: the resolved config, its hash, the command-line overrides, revision and versions."""
    write_json(out_dir / "run.json", {
        "config_hash": config_hash, "overrides": overrides, "config": dataclasses.asdict(cfg),
        "git_revision": git_revision(), "versions": versions(), "python": sys.version.split()[0],
        "platform": platform.platform(), "device": str(device), "threads": torch.get_num_threads(),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })


def write_done(out_dir: Path, summary: dict) -> None:
    write_json(out_dir / "done.json", dict(summary, finished=datetime.now(timezone.utc).isoformat(timespec="seconds")))


def read_done(out_dir: Path) -> dict:
    return json.loads((out_dir / "done.json").read_text())
