"""The ``prunerun`` console script (and ``python -m prunerun``): Hydra's entry point and nothing else."""
from __future__ import annotations

import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from prunerun.config import to_config
from prunerun.config.hydra import register_configs
from prunerun.errors import UserError

register_configs()


def config_dir() -> Path:
    """The installed package's copy of the configs (``prunerun/conf``, shipped in the wheel) when it
    is there, else the checkout's ``conf/`` beside the package (editable install, or PYTHONPATH)."""
    package = Path(__file__).resolve().parent
    packaged = package / "conf"
    return packaged if (packaged / "config.yaml").is_file() else package.parent / "conf"


# An absolute path: from a console script Hydra would read a relative one as a package path.
CONFIG_DIR = str(config_dir())
FAILED = "failed.json"


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        (out_dir / FAILED).unlink(missing_ok=True)
        config = to_config(cfg)  # ranges, choices and unknown keys, before torch is imported
        from prunerun.runner import run  # after validation: `--help` and a bad value stay fast

        run(config, out_dir, " ".join(hydra_cfg.overrides.task))
    except Exception as err:
        message = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
        print(f"prunerun: error: {message}", file=sys.stderr)
        if hydra_cfg.mode != RunMode.MULTIRUN:
            if isinstance(err, UserError):
                sys.exit(2)
            raise
        # in a sweep a failing job is recorded and the others go on (prunerun.config.hydra.ValidateSweep lists them)
        from prunerun.provenance import write_json

        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / FAILED, {"error": message, "traceback": traceback.format_exc()})


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
