"""Every option of every config group composes and validates; bad values fail with one clear line."""
from __future__ import annotations

import subprocess
import sys

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from prunerun.config import to_config
from prunerun.data import list_datasets
from prunerun.errors import UserError
from prunerun.models import list_models
from prunerun.runner import pruning_level
from prunerun.schedules import list_schedules
from prunerun.scorers.units import list_scorers
from prunerun.scorers.weights import list_weight_scorers

from conftest import CONF, compose_config

GROUPS = ("dataset", "model", "scorer", "schedule")


def group_options(group: str) -> list[str]:
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return GlobalHydra.instance().config_loader().get_group_options(group)


def test_group_files_and_registries_agree():
    assert group_options("dataset") == list_datasets()
    assert group_options("model") == list_models()
    assert group_options("scorer") == sorted(set(list_scorers()) | set(list_weight_scorers()))
    assert group_options("schedule") == list_schedules()


REQUIRED = {"torchvision": ["model.arch=resnet18"], "custom": ["model.target=tests.plugin_models:tiny_net"]}


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in group_options(g)])
def test_every_option_composes_and_validates(group, option):
    cfg = to_config(compose_config([f"{group}={option}", *REQUIRED.get(option, [])]))
    assert getattr(cfg, group).name == option


@pytest.mark.parametrize("override,message", [
    ("prune.fraction=1.0", r"prune.fraction=1.0 is outside \[0, 1\)"),
    ("prune.fraction=-0.1", "outside"),
    ("prune.normalization=l3", "prune.normalization='l3' is not one of none, l1, l2"),
    ("prune.selection=best", "not one of global, per_layer"),
    ("measure.fractions=[0.1,1.2]", "every fraction must lie in"),
    ("measure.split=dev", "measure.split='dev'"),
    ("schedule.units_per_step=0", "schedule.units_per_step=0 must be >= 1"),
    ("schedule=scheduled schedule.at=[3,2] schedule.fractions=[0.1,0.2]", "must be increasing"),
    ("schedule=scheduled schedule.at=[2] schedule.fractions=[0.1,0.2]", "one fraction per time"),
    ("schedule=scheduled schedule.fractions=[0.5,0.4,0.8,0.9]", "not decrease"),
    ("prune.decay=cosine", "prune.decay='cosine' is not one of exp, linear"),
    ("prune.level=neuron", "prune.level"),
    ("prune.num_batches=0", "prune.num_batches=0 must be >= 1"),
    ("scorer.temperature=0", "scorer.temperature=0"),
    ("train.momentum=1.0", "train.momentum"),
    ("device=tpu", "device='tpu'"),
    ("seed=-1", r"seed=-1 must be in \[0, 2\*\*32\)"),
    ("seed=1099511627776", r"seed=1099511627776 must be in \[0, 2\*\*32\)"),
    ("+prune.fractoin=0.3", r"^prune.fractoin is not an option; did you mean prune.fraction\?$"),
    ("+measure.scorer=[taylor]", r"^measure.scorer is not an option; did you mean measure.scorers\?$"),
    ("+lerning_rate=0.1", r"^lerning_rate is not an option; the options are dataset, model, scorer"),
])
def test_out_of_range_values_are_refused(override, message):
    with pytest.raises(UserError, match=message):
        to_config(compose_config(override.split()))


@pytest.mark.parametrize("preset", group_options("experiment"))
def test_every_experiment_preset_composes_and_validates(preset):
    cfg = to_config(compose_config([f"+experiment={preset}"]))
    assert cfg != to_config(compose_config())


@pytest.mark.parametrize("method", group_options("method"))
def test_every_method_sets_a_weight_scorer_and_schedule(method):
    cfg = to_config(compose_config([f"method={method}"]))
    assert cfg.scorer.name == method and cfg.schedule.name in ("at_init", "gradual")
    assert pruning_level(cfg.schedule.name, cfg.scorer.name) == "weight"


def test_wrong_types_fail_at_compose_time():
    with pytest.raises(Exception, match="Error merging override prune.fraction=abc"):
        compose_config(["prune.fraction=abc"])


def test_the_schemas_import_no_hydra():
    """Scorers and measurers read config sections; only prunerun.config.hydra may pull Hydra in."""
    code = ("import sys, prunerun.config; assert 'hydra' not in sys.modules, 'hydra imported'; "
            "import prunerun.config.hydra; assert 'hydra' in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_a_bad_value_fails_on_the_command_line_before_torch_is_imported(tmp_path):
    """Validation runs before the runner (and torch) is imported: one line, exit 2."""
    code = ("import sys; sys.argv = ['prunerun', 'prune.fraction=2', 'hydra.run.dir=" + str(tmp_path / "run") + "']\n"
            "from prunerun.cli import main\n"
            "try:\n    main()\nexcept SystemExit as exit:\n    print('exit', exit.code, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.stdout.strip() == "exit 2 False", done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        "prunerun: error: prune.fraction=2.0 is outside [0, 1): give the fraction of units to remove, e.g. prune.fraction=0.3"]
