"""``package.module:name`` strings from the config, imported with one clear line when they fail."""
from __future__ import annotations

import importlib
from typing import Any

from prunerun.errors import UserError


def import_target(spec: str, key: str) -> Any:
    """The object ``spec`` (``package.module:attribute``) names; ``key`` is the config entry that gave it."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UserError(f"{key}={spec!r} is not package.module:function; e.g. {key}=mypackage.models:build")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # an import may fail in any way; the user needs the cause in one line
        message = str(error).splitlines()[0] if str(error) else ""
        raise UserError(f"{key}={spec} does not import ({type(error).__name__}: {message}); put {module_name} on "
                        f"PYTHONPATH or install it") from None
    found = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise UserError(f"{key}={spec}: module {module_name} has no {attribute!r}")
        found = getattr(found, part)
    return found
