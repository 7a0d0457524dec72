"""Content hashes of configs: which results a folder holds, which dense state a cache entry is.

Plain JSON of the values, sorted keys, SHA-256 cut to 20 hex digits; no torch, so the command
line can check a run folder before anything heavy is imported.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any


def digest(value: Any) -> str:
    """A short, stable hash of a JSON-able ``value`` (anything else is hashed as its ``str``)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:20]


def config_hash(cfg) -> str:
    """Hash of the whole validated config: a folder's results belong to exactly one config."""
    return digest(dataclasses.asdict(cfg))
