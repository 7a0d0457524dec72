"""The ``prunerun`` console script: Hydra's entry point and nothing else."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from prunerun.config import register_configs, to_config
from prunerun.errors import UserError

register_configs()
# An absolute path: from a console script Hydra would read a relative one as a package path.
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _main(cfg: DictConfig) -> None:
    from prunerun.runner import run  # after Hydra parsed the command line: `--help` stays fast

    try:
        hydra_cfg = HydraConfig.get()
        run(to_config(cfg), Path(hydra_cfg.runtime.output_dir), " ".join(hydra_cfg.overrides.task))
    except UserError as err:
        print(f"prunerun: error: {err}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
