"""The ``prunerun`` console script (and ``python -m prunerun``): Hydra's entry point, and the checks
that make every mistake one line and exit 2, with nothing earlier lost or rewritten.

A plain run (overrides only, no ``-m`` or other flag) is composed and validated here first, with
Hydra's compose API and before torch is imported: an unknown name, a bad value and an output
folder that cannot hold files or holds the finished results of another config all stop here,
before Hydra creates the folder or writes a file. Hydra's own errors (composition, parsing, an
unusable sweep folder) are caught and turned into one line too.
"""
from __future__ import annotations

import difflib
import os
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from prunerun.config import to_config, unknown_key
from prunerun.config.hydra import register_configs, save_hydra_files
from prunerun.errors import UserError
from prunerun.files import check_creatable
from prunerun.hashing import config_hash
from prunerun.results import folder_state, prepare_folder

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
MULTIRUN_FLAGS = ("-m", "--multirun")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        config = to_config(cfg)  # ranges, choices and unknown keys, before torch is imported
        if prepare_folder(out_dir, config_hash(config)) != "complete":
            save_hydra_files(out_dir, cfg, hydra_cfg)  # only once the folder is known to be this run's
        from prunerun.runner import run  # after validation: `--help` and a bad value stay fast

        run(config, out_dir, " ".join(hydra_cfg.overrides.task))
    except Exception as err:
        message = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
        print(f"prunerun: error: {message}", file=sys.stderr)
        if hydra_cfg.mode != RunMode.MULTIRUN:
            if not isinstance(err, UserError):  # a defect of prunerun: the whole traceback
                traceback.print_exc()
            sys.exit(2 if isinstance(err, UserError) else 1)
        # in a sweep a failing job is recorded and the others go on (prunerun.config.hydra.ValidateSweep lists them)
        from prunerun.provenance import write_json

        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / FAILED, {"error": message, "traceback": traceback.format_exc()})


def check_run(overrides: list[str]) -> None:
    """Compose and validate a plain run's config, and check its output folder (unless its name is
    known only to a running job), without writing anything."""
    from hydra import compose, initialize_config_dir

    with hydra_errors(overrides), initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3", job_name="prunerun"):
        composed = compose("config", overrides=overrides, return_hydra_config=True)
    with open_dict(composed):
        hydra_node = composed.pop("hydra")
    config = to_config(composed)
    try:
        out_dir = Path(str(hydra_node.run.dir))
    except OmegaConfBaseException:  # an interpolation only a running job resolves
        return
    check_creatable(out_dir, "hydra.run.dir")
    folder_state(out_dir, config_hash(config))  # the finished results of another config are refused here


@contextmanager
def hydra_errors(overrides: list[str]):
    """Turns what Hydra raises while it reads the command line, composes the config and sets up the
    output folder into one-line :class:`UserError`; ``overrides`` are the command line's. (A job's own
    errors never reach here: :func:`_main` reports them.)"""
    try:
        yield
    except UserError:
        raise
    except Exception as err:
        if isinstance(err, OSError) and not isinstance(err, HydraException):  # a missing config is an OSError too
            raise UserError(f"{err.filename or 'the output folder'} cannot be created or written "
                            f"({err.strerror or type(err).__name__}); give hydra.run.dir (hydra.sweep.dir for -m) "
                            "a writable folder") from None
        raise UserError(hydra_message(err, overrides)) from None


def hydra_message(err: Exception, overrides: list[str]) -> str:
    """One line for a composition or parse error: which override, what is wrong, what to do."""
    cause = err.__cause__
    unreadable = [(o, problem) for o in overrides if (problem := override_problem(o))]
    if unreadable:
        override, problem = unreadable[0]
        return f"cannot read the override {override!r}: {problem} (see https://hydra.cc/docs/advanced/override_grammar/basic)"
    if isinstance(err, MissingConfigException) and err.missing_cfg_file and "/" in err.missing_cfg_file:
        group, _, name = err.missing_cfg_file.rpartition("/")
        options = sorted(err.options or [p.stem for p in Path(CONFIG_DIR, group.lstrip("+")).glob("*.yaml")])
        close = difflib.get_close_matches(name, options, n=1)
        hint = f"; did you mean {group}={close[0]}?" if close else ""
        return f"{group}={name} is not one of the {group} options{hint} ({', '.join(options)})"
    key = getattr(cause, "full_key", None) or getattr(err, "full_key", None)
    if key and type(cause or err).__name__ in ("ConfigKeyError", "ConfigAttributeError"):
        message = unknown_key(str(key))
        if message:
            return message
    message = _one_line(err).removeprefix("Error merging override ")
    if not isinstance(err, (HydraException, OmegaConfBaseException)):
        message = f"cannot compose the config ({type(err).__name__}: {message})"
    if "appears more than once in the final defaults list" in message:
        message += "; a group already chosen is changed without +, as in scorer=NAME"
    return message + (f": {_one_line(cause)}" if cause is not None else "")


def override_problem(override: str) -> str | None:
    """What makes ``override`` unreadable by Hydra's grammar (or name no key), None when it reads."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides([override])[0]
    except Exception as err:
        return _one_line(err)
    return None if parsed.key_or_group else "it names no key"


def _one_line(err: BaseException) -> str:
    """The message's lines that say something (not OmegaConf's full_key/object_type or Hydra's hints)."""
    noise = ("full_key:", "reference_type=", "object_type=", "See https://", "Set the environment variable")
    lines = [line.strip() for line in str(err).splitlines()]
    return "; ".join(line for line in lines if line and not line.startswith(noise)).rstrip(".")


def main(argv: list[str] | None = None) -> None:
    """``prunerun [overrides…]``: a plain run is checked here first (:func:`check_run`); then Hydra
    runs it, or the sweep, help or config printing its flags ask for."""
    args = list(sys.argv[1:] if argv is None else argv)
    # `prunerun scorer=taylor -m seed=0,1`: argparse takes flags among the overrides only before them
    args = [a for a in args if a in MULTIRUN_FLAGS] + [a for a in args if a not in MULTIRUN_FLAGS]
    try:
        if not any(arg.startswith("-") for arg in args):
            check_run(args)
        os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # Hydra raises its errors, hydra_errors words them
        sys.argv = [sys.argv[0], *args]
        with hydra_errors(args):
            _main()
    except UserError as err:
        print(f"prunerun: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
