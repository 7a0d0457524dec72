"""The wheel works on its own: built offline from a copy of the checkout, installed into a folder
of its own and run from outside the checkout, it carries the configs, ``python -m prunerun``
trains and prunes, and ``prunerun-figures``/``prunerun-collect`` read the run."""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from conftest import TINY

ROOT = Path(__file__).resolve().parent.parent
# Left out of the copy the wheel is built from (a checkout's build/ can hold stale modules that
# setuptools would ship again): these top-level folders, and caches and egg-info anywhere.
NOT_SOURCE_TOP = {".git", "build", "dist", "outputs", "multirun", ".pytest_cache", ".venv", ".whl"}


def not_source(folder: str, names: list[str]) -> set[str]:
    top = NOT_SOURCE_TOP if Path(folder) == ROOT else set()
    return {n for n in names if n in top or n == "__pycache__" or n.endswith(".egg-info")}


def missing_build_tooling() -> str | None:
    """Why ``pip wheel --no-build-isolation`` cannot build here, or None when it can."""
    if importlib.util.find_spec("pip") is None:
        return "pip is not installed"
    try:
        setuptools = tuple(int(part) for part in re.findall(r"\d+", version("setuptools"))[:2])
    except PackageNotFoundError:
        return "setuptools (the build backend) is not installed"
    if setuptools < (64, 0):
        return f"setuptools {version('setuptools')} is older than the 64 the build needs"
    if setuptools < (70, 1) and importlib.util.find_spec("wheel") is None:
        return f"setuptools {version('setuptools')} needs the wheel package to build wheels (pip install wheel)"
    return None


pytestmark = pytest.mark.skipif(missing_build_tooling() is not None, reason=str(missing_build_tooling()))


AS_MAIN_LISTING_MODULES = """import atexit, runpy, sys
def listing():
    files = sorted(m.__file__ for n, m in list(sys.modules.items())
                   if n.partition(".")[0] == "prunerun" and getattr(m, "__file__", None))
    open({listing!r}, "w").write("\\n".join(files))
atexit.register(listing)
runpy.run_module("prunerun", run_name="__main__", alter_sys=True)
"""


def run(*args, env=None, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, args))}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=not_source)
    pip_env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", tmp / "dist",
        source, env=pip_env)
    (built,) = (tmp / "dist").glob("prunerun-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel installed apart (``--target``); its dependencies come from this environment."""
    target = tmp_path_factory.mktemp("target")
    run(sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", target, wheel,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    return target


def test_the_wheel_ships_every_module_config_and_command(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        commands = archive.read(entry_points).decode()
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "prunerun").rglob("*.py") if "__pycache__" not in p.parts}
    configs = {"prunerun/conf/" + p.relative_to(ROOT / "conf").as_posix() for p in (ROOT / "conf").rglob("*.yaml")}
    assert "prunerun/conf/config.yaml" in configs and "prunerun/__main__.py" in modules
    # a subpackage missing from pyproject's [tool.setuptools] packages shows here
    assert not modules - names, f"modules missing from the wheel: {sorted(modules - names)}"
    assert not configs - names, f"configs missing from the wheel: {sorted(configs - names)}"
    for line in ("prunerun = prunerun.cli:main", "prunerun-figures = prunerun.figures.cli:main",
                 "prunerun-collect = prunerun.collect:main"):
        assert line in commands


def test_the_installed_wheel_runs_outside_the_checkout(installed, tmp_path, data_root):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(installed), PRUNERUN_CACHE=str(tmp_path / "cache"), PRUNERUN_DATA=str(data_root.parent),
               OMP_NUM_THREADS="1")
    python = lambda *args, **kw: run(sys.executable, *args, env=env, cwd=tmp_path, **kw)  # noqa: E731

    helped = python("-m", "prunerun", "--help").stdout
    assert "== Configuration groups ==" in helped and "mnist5k" in helped and "thesis_attack" in helped

    # `python -m prunerun` as runpy runs it, listing at exit the files of the prunerun modules it imported
    listing, out = tmp_path / "modules.txt", tmp_path / "run"
    trained = python("-c", AS_MAIN_LISTING_MODULES.format(listing=str(listing)), *TINY, f"hydra.run.dir={out}")
    assert "pruned test accuracy" in trained.stdout + trained.stderr
    for name in ("metrics.csv", "penalties.csv", "pruning.csv", "run.png", "done.json", ".hydra/config.yaml"):
        assert (out / name).is_file(), name
    files = [Path(line) for line in listing.read_text().splitlines()]
    assert len(files) > 20 and installed / "prunerun" / "runner" / "stages.py" in files
    assert all(f.is_relative_to(installed) for f in files) and not any(f.is_relative_to(ROOT) for f in files), files
    assert f"path: {installed / 'prunerun' / 'conf'}\n" in (out / ".hydra" / "hydra.yaml").read_text()
    assert any((tmp_path / "cache").iterdir())  # the dense model was cached where PRUNERUN_CACHE says

    bin_dir = installed / "bin"
    drawn = run(bin_dir / "prunerun-figures", out, "--out", tmp_path / "figures", env=env, cwd=tmp_path).stdout
    assert drawn.startswith("1 runs read;") and "wrote   molchanov_fig4_accuracy_vs_maps" in drawn
    assert (tmp_path / "figures" / "molchanov_fig4_accuracy_vs_maps.png").stat().st_size > 0
    collected = run(bin_dir / "prunerun-collect", out, env=env, cwd=tmp_path).stdout
    assert collected.startswith("1 jobs: 1 complete")
    assert (out / "results.csv").read_text().count("\n") == 2
