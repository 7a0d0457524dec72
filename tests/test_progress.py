"""Progress outside a terminal: one log line every log.every_s seconds with the count, the rate and
the time left, computed here from a clock the test controls."""
from __future__ import annotations

import logging

import pytest

from prunerun import progress as progress_module
from prunerun.hashing import config_hash
from prunerun.progress import duration, log_every, progress


def test_a_line_every_period_with_rate_and_time_left(monkeypatch, caplog):
    clock = iter([0.0, 10.0, 20.0, 30.0, 40.0, 50.0])  # start, then one reading after each item
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(progress_module.sys.stderr, "isatty", lambda: False, raising=False)
    log_every(20)
    with caplog.at_level(logging.INFO, logger="prunerun"):
        assert list(progress(range(5), 5, "train")) == [0, 1, 2, 3, 4]
    lines = [record.getMessage() for record in caplog.records]
    # 20 s after the start (2 done: 0.1/s, 3 left → 30 s), then 20 s later (4 done); none at the end
    assert lines == ["train: 2/5 updates, 0.1 updates/s, 0:30 left", "train: 4/5 updates, 0.1 updates/s, 0:10 left"]
    log_every(60)


def test_durations_read_as_clock_times():
    assert [duration(s) for s in (5, 75, 3600 + 62)] == ["0:05", "1:15", "1:01:02"]


def test_the_log_period_is_not_part_of_the_config_hash(tiny_config):
    assert config_hash(tiny_config("log.every_s=5")) == config_hash(tiny_config())
    assert config_hash(tiny_config("seed=1")) != config_hash(tiny_config())


def test_a_negative_period_is_refused(tiny_config):
    with pytest.raises(Exception, match="log.every_s=-1.0 must be >= 0"):
        tiny_config("log.every_s=-1")
