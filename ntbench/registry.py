"""One small registry type shared by strategies, adapters and tasks.

Unknown names fail with the list of allowed values and a "did you mean" hint, so a typo in a
suite or on the command line is caught with a message a user can act on.
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, replace
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """A name that no registry entry (or alias) matches."""

    def __init__(self, kind: str, name: str, allowed: list[str]):
        self.kind, self.name, self.allowed = kind, name, allowed
        close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}.{hint} Allowed values: {', '.join(allowed)}")

    def __str__(self) -> str:  # KeyError would otherwise print the repr of the message
        return self.args[0]


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    description: str
    aliases: tuple[str, ...] = ()


class Registry(Generic[T]):
    """Name -> object map with aliases, duplicate detection and optional type checking.

    Args:
        kind: what the entries are ("activation strategy", "adapter", ...), used in messages.
        base: if given, registered classes must be subclasses of it.
    """

    def __init__(self, kind: str, base: type | None = None):
        self.kind = kind
        self.base = base
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, obj: T | None = None, *, description: str = "",
                 aliases: tuple[str, ...] = ()) -> Any:
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted."""
        if obj is None:
            def decorator(o: T) -> T:
                self.register(name, o, description=description, aliases=aliases)
                return o
            return decorator
        if self.base is not None and not isinstance(obj, _Lazy) and not (isinstance(obj, type) and issubclass(obj, self.base)):
            raise TypeError(f"{self.kind} {name!r} must be a subclass of {self.base.__name__}")
        for key in (name, *aliases):
            if key in self._entries or key in self._aliases:
                existing = self._entries.get(key) or self._entries[self._aliases[key]]
                if existing.obj is obj:  # re-importing the same module is harmless
                    return obj
                raise ValueError(f"{self.kind} {key!r} is already registered")
        desc = description or (getattr(obj, "__doc__", None) or "").strip().split("\n")[0]
        self._entries[name] = Entry(name, obj, desc, tuple(aliases))
        for alias in aliases:
            self._aliases[alias] = name
        return obj

    def register_lazy(self, name: str, target: str, *, description: str, aliases: tuple[str, ...] = ()) -> None:
        """Register ``"package.module:attribute"`` under ``name`` without importing it.

        The module is imported when the entry is first looked up. Why: an entry implemented in a
        higher layer (the ``micro`` backbone preset needs the data cache and its own training recipe)
        can be named here without this registry's module importing it, so importing the registry
        has no side effects and the import graph keeps one direction.
        """
        self.register(name, _Lazy(target), description=description, aliases=aliases)

    def _resolved(self, name: str) -> Entry[T]:
        entry = self._entries[name]
        if isinstance(entry.obj, _Lazy):
            obj = entry.obj.load()
            if self.base is not None and not (isinstance(obj, type) and issubclass(obj, self.base)):
                raise TypeError(f"{self.kind} {name!r} must be a subclass of {self.base.__name__}")
            entry = self._entries[name] = replace(entry, obj=obj)
        return entry

    def canonical(self, name: str) -> str:
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        raise UnknownNameError(self.kind, name, self.names())

    def get(self, name: str) -> T:
        return self._resolved(self.canonical(name)).obj

    def entry(self, name: str) -> Entry[T]:
        return self._resolved(self.canonical(name))

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class _Lazy:
    """A registry entry not imported yet: ``"package.module:attribute"``."""

    target: str

    def load(self) -> Any:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


def lazy(loader: Callable[[], None]) -> Callable[[], None]:
    """Run ``loader`` once (plugin discovery is deferred until a registry is first used)."""
    done = False

    def run() -> None:
        nonlocal done
        if not done:
            done = True
            loader()
    return run
