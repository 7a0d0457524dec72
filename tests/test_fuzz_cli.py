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


def _keys() -> list[str]:
    keys = []
    for name, kind in typing.get_type_hints(Config).items():
        if dataclasses.is_dataclass(kind):
            keys += [f"{name}.{field.name}" for field in dataclasses.fields(kind)]
        else:
            keys.append(name)
    return keys


KEYS = _keys()
GROUPS = {"dataset": ["mnist5k", "cifar10", "synthetic", "nope"], "model": ["small_cnn", "vgg16", "resnet50", "x"],
          "scorer": ["taylor", "weight", "snip", "force", "oracle_loss", "mrs", "tailor"],
          "schedule": ["one_shot", "iterative", "scheduled", "gradual", "at_init", "later"],
          "+method": ["snip", "force", "grasp", "iter_snip", "nope"], "+experiment": ["mrp_penalties", "lr_attack", "x"]}
text = st.text(alphabet=string.ascii_letters + string.digits + " _-.,:=+~[]{}()'\"$\\/*?!@#%^&|<>", max_size=12)
values = st.one_of(
    st.integers(-2**40, 2**40).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["true", "false", "null", "[]", "[1,2]", "{}", "auto", "cuda", "cpu", "cuda:7", "all", "global",
                     "per_layer", "none", "l2", "units", "weights", "${seed}", "${nope}", "''"]),
    text,
)
key = st.one_of(st.sampled_from(KEYS), st.sampled_from(KEYS).map(lambda k: k[:-1] + "z"), text.filter(bool))
plain = st.builds(lambda prefix, k, v: f"{prefix}{k}={v}", st.sampled_from(["", "", "", "+", "++"]), key, values)
group = st.sampled_from(sorted(GROUPS)).flatmap(
    lambda g: st.one_of(st.sampled_from(GROUPS[g]), text).map(lambda v: f"{g}={v}"))
deletion = st.sampled_from(KEYS + list(GROUPS)).map(lambda k: f"~{k}")
command_lines = st.lists(st.one_of(plain, plain, group, deletion, text), max_size=4)


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
