"""Random command lines (Hypothesis) through the checks of a plain run: each is accepted, or refused
with one line (the CLI prints it and exits 2); never a traceback, never a write.

300 command lines per run of the suite; a longer search: ``PRUNERUN_FUZZ_EXAMPLES=20000 pytest
tests/test_fuzz_cli.py --hypothesis-show-statistics`` (the statistics count accepted and refused lines)."""
from __future__ import annotations

import dataclasses
import os
import string
import typing

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="Hypothesis is in the dev extra: pip install -e '.[dev]'")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from prunerun import cli  # noqa: E402
from prunerun.config import Config  # noqa: E402
from prunerun.errors import UserError  # noqa: E402


def _fields() -> dict[str, object]:
    """Every option of the schema, dotted (``prune.fraction``), with its type."""
    found: dict[str, object] = {}
    for name, kind in typing.get_type_hints(Config).items():
        if dataclasses.is_dataclass(kind):
            found.update({f"{name}.{k}": hint for k, hint in typing.get_type_hints(kind).items()})
        else:
            found[name] = kind
    return found


FIELDS = _fields()
GROUPS = {"dataset": ["mnist5k", "cifar10", "imagenet", "nope"], "model": ["small_cnn", "vgg16", "resnet50", "x"],
          "scorer": ["taylor", "weight", "snip", "force", "oracle_loss", "mrs", "tailor"],
          "schedule": ["one_shot", "iterative", "scheduled", "gradual", "at_init", "later"],
          "+method": ["snip", "force", "grasp", "iter_snip", "nope"], "+experiment": ["mrp_penalties", "lr_attack", "x"]}
WORDS = ["auto", "cpu", "cuda", "cuda:7", "all", "global", "per_layer", "none", "l1", "l2", "minmax", "unit", "weight",
         "exp", "linear", "epoch", "step", "train", "val", "test", "eval", "conv1", "fc1", "taylor", "nope", "''"]
junk = st.text(alphabet=string.ascii_letters + string.digits + " _-.,:=+~[]{}()'\"$\\/*?!@#%^&|<>", max_size=12)
ints = st.one_of(st.integers(-3, 3000), st.integers(-2**40, 2**40)).map(str)
floats = st.one_of(st.floats(-0.5, 1.5), st.floats(allow_nan=True, allow_infinity=True)).map(repr)
anything = st.one_of(ints, floats, st.sampled_from(["true", "false", "null", "[]", "{}", "${seed}", "${nope}"]),
                     st.sampled_from(WORDS), junk)


def typed(hint) -> st.SearchStrategy[str]:
    """Values of the option's own type, mostly in and near its range."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is list:
        return st.lists(typed(args[0]), max_size=3).map(lambda xs: "[" + ",".join(xs) + "]")
    if type(None) in args:  # Optional[X]
        return st.one_of(st.just("null"), typed(next(a for a in args if a is not type(None))))
    return {int: ints, float: floats, bool: st.sampled_from(["true", "false"]), str: st.sampled_from(WORDS)}.get(hint,
                                                                                                             anything)


known = st.sampled_from(sorted(FIELDS)).flatmap(
    lambda k: st.tuples(st.just(k), st.one_of(typed(FIELDS[k]), typed(FIELDS[k]), typed(FIELDS[k]), anything)))
typo = st.tuples(st.sampled_from(sorted(FIELDS)).map(lambda k: k[:-1] + "z"), anything)
plain = st.builds(lambda prefix, kv: f"{prefix}{kv[0]}={kv[1]}", st.sampled_from(["", "", "", "", "+", "++"]),
                  st.one_of(known, known, known, known, typo))
group = st.sampled_from(sorted(GROUPS)).flatmap(
    lambda g: st.one_of(st.sampled_from(GROUPS[g]), st.sampled_from(GROUPS[g]), st.sampled_from(GROUPS[g]), junk)
    .map(lambda v: f"{g}={v}"))
deletion = st.sampled_from(sorted(FIELDS) + list(GROUPS)).map(lambda k: f"~{k}")
command_lines = st.lists(st.one_of(*[plain] * 8, group, group, group, deletion, junk), max_size=4)


@settings(max_examples=int(os.environ.get("PRUNERUN_FUZZ_EXAMPLES", 300)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides=command_lines)
def test_any_command_line_is_accepted_or_one_line(overrides, tmp_path, monkeypatch):
    """The property: :func:`prunerun.cli.check_run` accepts the overrides or raises a one-line
    :class:`UserError`; never another exception, never a write."""
    monkeypatch.chdir(tmp_path)
    try:
        cli.check_run([*overrides, f"hydra.run.dir={tmp_path / 'run'}"])
        event("accepted")
    except UserError as err:
        assert str(err) and "\n" not in str(err), repr(str(err))
        event("refused: " + " ".join(str(err).split()[1:4]))
    assert not (tmp_path / "run").exists()
