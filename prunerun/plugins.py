"""Your own datasets and scorers, without editing the package.

A plugin is a Python module that registers its entries with prunerun's own decorators
(``@register_dataset(NAME)`` from ``prunerun.data``, ``@register_scorer(NAME, ...)`` from
``prunerun.scorers.units``), plus one YAML file per entry in a config folder of your own
(``myconf/dataset/NAME.yaml``, ``myconf/scorer/NAME.yaml``) that names the module as
``target: package.module:function``. Put the folder on Hydra's search path
(``hydra.searchpath=[file:///abs/path/myconf]``) and the module on ``PYTHONPATH``: then
``dataset=NAME`` and ``scorer=NAME`` work as the built-in ones do. ``examples/plugins/`` holds one
of each; the README shows the command.
"""
from __future__ import annotations

from prunerun.errors import UserError
from prunerun.registry import Registry
from prunerun.targets import import_target


def load_plugin(target: str | None, name: str, registries: tuple[Registry, ...], key: str) -> None:
    """Import ``target`` (if set), which must register ``name`` in one of ``registries``; ``key`` names
    the config entry."""
    if target is None:
        return
    found = import_target(target, key)
    if not any(name in registry for registry in registries):
        kind = registries[0].kind
        raise UserError(f"{key}={target} imported, but registered no {kind} named {name!r}; decorate "
                        f"{getattr(found, '__name__', target)} with @register_{kind}({name!r})")
