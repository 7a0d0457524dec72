"""One registry type for every component: names → builders, errors that list the choices."""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from prunerun.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """``@registry.register("name")`` adds an entry; ``registry.get("name")`` looks it up."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, wrap: Callable[[str, Callable], T] | None = None) -> Callable:
        """Decorator storing the function (or ``wrap(name, function)``) under ``name``."""
        def decorator(fn: Callable) -> Callable:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = fn if wrap is None else wrap(name, fn)
            return fn

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str, key: str | None = None) -> T:
        """The entry ``name``; ``key`` is the config entry that named it, for the error message."""
        if name not in self._entries:
            where = f"{key} has " if key else ""
            raise UserError(f"{where}unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}")
        return self._entries[name]

    def __contains__(self, name: str) -> bool:
        return name in self._entries
