"""Atomic file writes: every output file is either its old version or its new one, never half.

The content goes to a temp file beside the target (same file system), which is renamed over the
target only once it is complete; a failed or killed write leaves the target as it was and
removes its temp file. The new file gets the permissions a plain ``open(path, "w")`` would give
(``0o666`` less the umask), not the ``0o600`` of a temp file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

from prunerun.errors import UserError


def atomic_write(path: str | Path, write: Callable[[IO[Any]], None], mode: str = "w", **open_kwargs: Any) -> None:
    """Call ``write(file)`` on a temp file opened with ``mode`` beside ``path``, then rename it to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **open_kwargs) as file:
            write(file)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt too: no temp file is left behind
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask; read from /proc where possible, since ``os.umask`` can only be read by setting it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_writable(folder: str | Path, key: str) -> None:
    """Create ``folder`` if needed and write a probe file there; a folder that cannot hold files is a
    :class:`UserError` naming the config ``key``, raised before any work is done."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _probe(folder)
    except OSError as err:
        raise UserError(f"{key}={folder} cannot hold files ({err.strerror or type(err).__name__}); "
                        f"give {key} a writable folder") from None


def check_creatable(folder: str | Path, key: str) -> None:
    """Like :func:`check_writable`, but creating nothing: ``folder``'s nearest existing ancestor is a
    folder that takes a file (a probe, removed at once)."""
    folder = existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{key}={folder} lies below the file {existing}; give {key} a folder")
    try:
        _probe(existing)
    except OSError as err:
        raise UserError(f"{key}={folder}: {existing} cannot hold files ({err.strerror or type(err).__name__}); "
                        f"give {key} a writable folder") from None


def _probe(folder: Path) -> None:
    with tempfile.TemporaryFile(dir=folder):
        pass
