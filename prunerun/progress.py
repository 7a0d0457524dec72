"""Progress of a long loop where the user can see it: a tqdm bar in a terminal; elsewhere (SLURM,
joblib, a log file) one log line every ``log.every_s`` seconds with the phase, the count done of
the total, the rate and the time left, so a job says what it is doing for its whole length."""
from __future__ import annotations

import logging
import sys
import time
from typing import Iterable, Iterator, TypeVar

Item = TypeVar("Item")
log = logging.getLogger("prunerun")
_every_s = [60.0]  # log.every_s of the job under way


def log_every(seconds: float) -> None:
    """Seconds between progress lines outside a terminal, for the job that starts now."""
    _every_s[0] = seconds


def duration(seconds: float) -> str:
    """``h:mm:ss`` (``m:ss`` under an hour)."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress(items: Iterable[Item], total: int, phase: str, unit: str = "updates") -> Iterator[Item]:
    """``items`` (``total`` of them) as they come, with a bar in a terminal or log lines elsewhere."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(items, total=total, desc=phase, unit=unit.rstrip("s"), leave=False)
        return
    start = last = time.monotonic()
    for done, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last >= _every_s[0] and done < total:
            rate = done / max(now - start, 1e-9)
            log.info("%s: %d/%d %s, %.3g %s/s, %s left", phase, done, total, unit, rate, unit,
                     duration((total - done) / rate))
            last = now
