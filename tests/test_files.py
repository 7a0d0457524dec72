"""Atomic writes: the target is the old file or the new one, temp files never stay, and the
new file's permissions follow the umask like a plain open()."""
from __future__ import annotations

import os
import stat

import pytest

from prunerun.files import atomic_write
from prunerun.provenance import write_json
from prunerun.results import write_csv_atomic


def mode_of(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_write_replaces_the_file_with_umask_permissions(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old\n")
    previous = os.umask(0o027)
    try:
        write_csv_atomic(target, [{"a": 1, "b": 2}], ["a", "b"])
    finally:
        os.umask(previous)
    assert target.read_text() == "a,b\n1,2\n"
    assert mode_of(target) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_permissions_match_a_plain_open(tmp_path):
    (tmp_path / "plain.json").write_text("{}")
    write_json(tmp_path / "atomic.json", {})
    assert mode_of(tmp_path / "atomic.json") == mode_of(tmp_path / "plain.json")


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "state.pt"
    target.write_bytes(b"old")

    def half_then_fail(file) -> None:
        file.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, half_then_fail, "wb")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]
