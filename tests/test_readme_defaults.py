"""The README's Configuration tables document the schema: every key of the config dataclasses is
listed once, with the dataclass's default, written as on the command line and read back with
Hydra's override parser (``5e-4`` is 0.0005, ``[]`` an empty list, ``null`` None)."""
from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import MISSING

from prunerun.config import Config

README = Path(__file__).resolve().parent.parent / "README.md"
PER_OPTION = "*per option*"  # the default cell of a key that each option's file of the group sets
UNSET = object()  # a field without a default in its dataclass (omegaconf's MISSING)
KEYS_CELL = re.compile(r"`[^`]+`(\s*,\s*`[^`]+`)*")
# prose such as "`scorer.bins` (10)": a numeric default quoted next to its key
INLINE_DEFAULT = re.compile(r"`([a-z_]+\.[a-z_]+)` \((-?\d[\w.+-]*)[,:)]")


def _default(f: dataclasses.Field) -> object:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    assert f.default is not dataclasses.MISSING, f"{f.name} has no default at all"
    return UNSET if f.default == MISSING else f.default


def schema_defaults() -> tuple[dict[str, object], dict[str, object]]:
    """Dotted key → dataclass default, for the sections (with the top-level keys) and for the
    groups (fields of dataclasses the config leaves MISSING, filled by a group option)."""
    hints = typing.get_type_hints(Config)
    sections: dict[str, object] = {}
    groups: dict[str, object] = {}
    for top in dataclasses.fields(Config):
        kind = hints[top.name]
        if not dataclasses.is_dataclass(kind):
            sections[top.name] = _default(top)
            continue
        target = sections if top.default_factory is not dataclasses.MISSING else groups
        for f in dataclasses.fields(kind):
            target[f"{top.name}.{f.name}"] = _default(f)
    return sections, groups


def _section(text: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of any level."""
    match = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#+ |\Z)", text, re.M | re.S)
    assert match, f"README has no heading {heading!r}"
    return match.group(1)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def _split_values(cell: str) -> list[str]:
    """Split at commas outside brackets, braces and backticks: ``[], 0.1`` → ``[]``, ``0.1``."""
    parts, depth, quoted, current = [], 0, False, ""
    for ch in cell:
        if ch == "`":
            quoted = not quoted
        elif not quoted and ch in "[{(":
            depth += 1
        elif not quoted and ch in "]})":
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [p.strip() for p in [*parts, current]]


def _parse(value: str) -> object:
    if value == PER_OPTION:
        return UNSET
    value = value.strip("`")
    return OverridesParser.create().parse_override(f"key={value}").value()


def _same(doc: object, code: object) -> bool:
    """Equal as values: 5e-4 == 0.0005 and 0 == 0.0, but true is not 1 and null only None."""
    if code is UNSET or code is None or isinstance(code, bool):
        return doc is code
    if isinstance(code, (int, float)):
        return isinstance(doc, (int, float)) and not isinstance(doc, bool) and doc == code
    if isinstance(code, (list, tuple)):
        return isinstance(doc, list) and len(doc) == len(code) and all(map(_same, doc, code))
    return type(doc) is type(code) and doc == code


def _show(value: object) -> str:
    return PER_OPTION if value is UNSET else repr(value)


def table_problems(text: str, heading: str, expected: dict[str, object]) -> list[str]:
    """Every disagreement between the ``key | default | meaning`` table under ``heading`` and
    ``expected`` (dotted key → dataclass default), one line each naming the keys."""
    lines = [line for line in _section(text, heading).splitlines() if line.startswith("|")]
    assert len(lines) > 2 and _cells(lines[0]) == ["key", "default", "meaning"], \
        f"no `| key | default | meaning |` table under {heading!r}"
    problems, seen = [], set()
    for line in lines[2:]:
        cells = _cells(line)
        if len(cells) != 3:
            problems.append(f"row with {len(cells)} cells instead of 3: {line}")
            continue
        keys_cell, defaults_cell, meaning = cells
        if not KEYS_CELL.fullmatch(keys_cell):
            problems.append(f"key cell is not a list of `keys`: {keys_cell}")
            continue
        keys = re.findall(r"`([^`]+)`", keys_cell)
        values = _split_values(defaults_cell)
        if len(values) != len(keys):
            problems.append(f"{', '.join(keys)}: {len(keys)} keys but {len(values)} defaults ({defaults_cell})")
            continue
        if not meaning:
            problems.append(f"{', '.join(keys)}: no meaning given")
        for key, value in zip(keys, values):
            if key in seen:
                problems.append(f"{key}: listed twice")
            seen.add(key)
            if key not in expected:
                problems.append(f"{key}: in the README but not a field of the dataclasses")
                continue
            try:
                doc = _parse(value)
            except Exception as err:  # the override grammar refused it
                problems.append(f"{key}: README default {value!r} does not parse ({str(err).splitlines()[0]})")
                continue
            if not _same(doc, expected[key]):
                problems.append(f"{key}: README says {value}, the dataclass default is {_show(expected[key])}")
    for key in expected:
        if key not in seen:
            problems.append(f"{key}: no row (default {_show(expected[key])}); add `{key}` | default | meaning")
    return problems


def _configuration(text: str) -> str:
    """The whole "## Configuration" part, its ### subsections included."""
    match = re.search(r"^## Configuration\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, "README has no ## Configuration"
    return match.group(1)


def inline_problems(text: str, expected: dict[str, object]) -> tuple[int, list[str]]:
    """Numeric defaults quoted in the Configuration prose, e.g. "`scorer.bins` (10)"."""
    found, problems = 0, []
    for key, value in INLINE_DEFAULT.findall(_configuration(text)):
        found += 1
        if key not in expected:
            problems.append(f"{key} ({value}): not a field of the dataclasses")
        elif not _same(_parse(value), expected[key]):
            problems.append(f"{key} ({value}): the dataclass default is {_show(expected[key])}")
    return found, problems


def _fail_with(problems: list[str], what: str) -> None:
    assert not problems, f"{what} disagrees with prunerun/config.py:\n  " + "\n  ".join(problems)


def test_sections_table_lists_every_section_key_with_its_dataclass_default():
    sections, _ = schema_defaults()
    assert {"seed", "device", "train.steps", "cache.dir"} <= set(sections)
    _fail_with(table_problems(README.read_text(), "Sections", sections), "README table 'Sections'")


def test_group_options_table_lists_every_group_key_with_its_dataclass_default():
    _, groups = schema_defaults()
    assert {"scorer.bins", "schedule.at", "dataset.root", "model.weights"} <= set(groups)
    _fail_with(table_problems(README.read_text(), "Group options", groups), "README table 'Group options'")


def test_defaults_quoted_in_the_configuration_prose_match():
    sections, groups = schema_defaults()
    found, problems = inline_problems(README.read_text(), {**sections, **groups})
    assert found >= 5, f"only {found} inline defaults found: has the prose or the pattern changed?"
    _fail_with(problems, "a default quoted in the README's Configuration part")


def test_the_check_names_a_changed_default_a_missing_row_and_an_undocumented_field():
    text = README.read_text()
    sections, groups = schema_defaults()
    changed = text.replace("| `train.steps` | 2000 |", "| `train.steps` | 3000 |")
    changed = changed.replace("| 32, 0.01, 0.9, 5e-4 |", "| 32, 0.02, 0.9, 5e-4 |")
    changed = changed.replace("| `model.weights` | null |", "| `model.weights` | imagenet |")
    changed = changed.replace("| `scorer.name` | *per option* |", "| `scorer.name` | taylor |")
    changed = re.sub(r"^\| `measure\.batch_size` \|.*\n", "", changed, flags=re.M)
    changed = changed.replace("`scorer.bins` (10)", "`scorer.bins` (12)")
    assert changed.count("\n") < text.count("\n")  # the row really went

    problems = table_problems(changed, "Sections", {**sections, "train.new_option": 1})
    flagged = {line.split(":")[0] for line in problems}
    assert flagged == {"train.steps", "train.lr", "measure.batch_size", "train.new_option"}, problems
    assert "train.steps: README says 3000, the dataclass default is 2000" in problems

    flagged = {line.split(":")[0] for line in table_problems(changed, "Group options", groups)}
    assert flagged == {"model.weights", "scorer.name"}

    _, problems = inline_problems(changed, groups)
    assert problems == ["scorer.bins (12): the dataclass default is 10"]


def test_values_compare_as_values():
    assert _same(_parse("5e-4"), 0.0005) and _same(_parse("0"), 0.0) and _same(_parse("[]"), [])
    assert _same(_parse("null"), None) and _same(_parse("true"), True) and _same(_parse("[all]"), ["all"])
    assert not _same(_parse("1"), True) and not _same(_parse("none"), None) and not _same(_parse("0"), False)
    assert _same(_parse("`${oc.env:PRUNERUN_CACHE,outputs/cache}`"), "${oc.env:PRUNERUN_CACHE,outputs/cache}")
    assert _split_values("true, `${a,b}`, [x, y], 5e-4") == ["true", "`${a,b}`", "[x, y]", "5e-4"]
