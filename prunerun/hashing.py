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


WITHOUT_EFFECT = ("log",)  # sections that change what a job says, never what it computes


def config_hash(cfg) -> str:
    """Hash of the whole validated config but the sections of :data:`WITHOUT_EFFECT`: a folder's
    results belong to exactly one config."""
    values = dataclasses.asdict(cfg)
    return digest({key: value for key, value in values.items() if key not in WITHOUT_EFFECT})
