"""Hydra's side of the config: the schemas stored in the ConfigStore, and the sweep callback.

Kept apart from the schemas (:mod:`prunerun.config`) so that code reading a config section
(scorers, measurers) does not import Hydra.
"""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from prunerun.config import Config, DatasetConfig, ModelConfig, ScheduleConfig, ScorerConfig, to_config
from prunerun.errors import UserError
from prunerun.files import atomic_write


def register_configs() -> None:
    """Store the schemas; each group file names its schema first in its defaults list."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="schema/dataset", name="base", node=DatasetConfig)
    cs.store(group="schema/model", name="base", node=ModelConfig)
    cs.store(group="schema/scorer", name="base", node=ScorerConfig)
    cs.store(group="schema/schedule", name="base", node=ScheduleConfig)


HYDRA_FILES = ".hydra"  # conf/config.yaml sets hydra.output_subdir: null, so Hydra itself writes none


def save_hydra_files(out_dir: Path, cfg: DictConfig, hydra_cfg: DictConfig) -> None:
    """The job's ``.hydra/`` (config.yaml, hydra.yaml, overrides.yaml), as Hydra writes them, but only
    once the folder is known to be this run's: Hydra's own copy would be written before that check
    and overwrite the provenance of a folder that is then refused."""
    folder = out_dir / HYDRA_FILES
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "config.yaml": cfg,
        "hydra.yaml": OmegaConf.create({"hydra": OmegaConf.to_container(hydra_cfg, resolve=False)}),
        "overrides.yaml": OmegaConf.create(list(hydra_cfg.overrides.task)),
    }
    for name, node in files.items():
        text = OmegaConf.to_yaml(node)
        atomic_write(folder / name, lambda file: file.write(text))


class ValidateSweep(Callback):
    """Before a multirun launches, validate every swept value of a plain key (``prune.fraction=
    0.1,1.5``) and every swept group choice (``scorer=taylor,nope``), so a bad value fails at once
    instead of after the jobs before it have trained. After the multirun, list the jobs that failed
    (the others ran to the end) and exit non-zero."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        base = copy.deepcopy(config)
        with open_dict(base):
            groups = set(base.hydra.runtime.choices)
            base.pop("hydra")
        for override in OverridesParser.create().parse_overrides(list(config.hydra.overrides.task)):
            key = override.key_or_group
            if not override.is_sweep_override() or key.startswith("hydra."):
                continue
            if key in groups:
                self._check_choices(key, [str(value) for value in override.sweep_iterator()])
                continue
            for value in override.sweep_iterator():
                trial = copy.deepcopy(base)
                try:
                    OmegaConf.update(trial, key, value, merge=True)
                    to_config(trial)
                except UserError as err:
                    self._fail(str(err))
                except Exception as err:
                    self._fail(f"{key}={value}: {str(err).splitlines()[0]}")

    def _check_choices(self, group: str, values: list[str]) -> None:
        options = GlobalHydra.instance().config_loader().get_group_options(group)
        unknown = [value for value in values if value not in options]
        if unknown:
            self._fail(f"{group}={unknown[0]} is not one of the {group} options ({', '.join(sorted(options))})")

    @staticmethod
    def _fail(message: str) -> None:
        print(f"prunerun: error: {message} (no job of the sweep was started)", file=sys.stderr)
        sys.exit(2)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """List the jobs that failed (each left failed.json in its folder); exit 1 if any did."""
        sweep_dir = Path(config.hydra.sweep.dir)
        failed = sorted(sweep_dir.glob("*/failed.json"), key=lambda p: str(p))
        if failed:
            lines = [f"  {p.parent}: {json.loads(p.read_text())['error']}" for p in failed]
            print(f"prunerun: {len(failed)} job(s) of the sweep failed:\n" + "\n".join(lines), file=sys.stderr)
            sys.exit(1)
