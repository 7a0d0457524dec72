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
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from prunerun.config import Config, DatasetConfig, ModelConfig, ScheduleConfig, ScorerConfig, to_config
from prunerun.errors import UserError


def register_configs() -> None:
    """Store the schemas; each group file names its schema first in its defaults list."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="schema/dataset", name="base", node=DatasetConfig)
    cs.store(group="schema/model", name="base", node=ModelConfig)
    cs.store(group="schema/scorer", name="base", node=ScorerConfig)
    cs.store(group="schema/schedule", name="base", node=ScheduleConfig)


class ValidateSweep(Callback):
    """Before a multirun launches, validate every swept value of a plain key (``prune.fraction=
    0.1,1.5``), so a bad value fails at once instead of after the jobs before it have trained.
    Swept group choices (``scorer=a,b``) are checked by Hydra as each job composes. After the
    multirun, list the jobs that failed (the others ran to the end) and exit non-zero."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        base = copy.deepcopy(config)
        with open_dict(base):
            groups = set(base.hydra.runtime.choices)
            base.pop("hydra")
        for override in OverridesParser.create().parse_overrides(list(config.hydra.overrides.task)):
            key = override.key_or_group
            if not override.is_sweep_override() or key in groups or key.startswith("hydra."):
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
