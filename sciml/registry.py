"""Problem registry backed by Python entry points (group ``sciml.problems``).

A third-party distribution adds a problem by declaring, in its own ``pyproject.toml``::

    [project.entry-points."sciml.problems"]
    my-problem = "my_pkg.my_module:MyProblem"

``sciml/`` never imports a problem module by name; it only walks this group. Names and aliases are
case-insensitive and must be unique across all installed distributions.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

from sciml.errors import SciMLError, UsageError
from sciml.problem import ProblemSpec

GROUP = "sciml.problems"


class RegistryError(SciMLError):
    """The installed problems are inconsistent (duplicate names, broken entry points)."""


class Registry:
    """Name -> problem class, built from entry points.

    Parameters
    ----------
    eps
        Entry points to load; by default every entry point of group ``sciml.problems`` installed.
    """

    def __init__(self, eps: Iterable[EntryPoint] | None = None) -> None:
        if eps is None:
            eps = entry_points(group=GROUP)
        self._by_name: dict[str, type[ProblemSpec]] = {}
        self._canonical: dict[str, type[ProblemSpec]] = {}
        origin: dict[str, str] = {}
        for ep in eps:
            try:
                cls = ep.load()
            except Exception as exc:  # a broken plugin must say which one it is
                raise RegistryError(f"cannot load problem entry point {ep.name!r} ({ep.value}): {exc}") from exc
            if not (isinstance(cls, type) and issubclass(cls, ProblemSpec)):
                raise RegistryError(f"entry point {ep.name!r} ({ep.value}) is not a ProblemSpec subclass")
            if cls.name.lower() != ep.name.lower():
                raise RegistryError(f"entry point {ep.name!r} loads a problem named {cls.name!r}; they must match")
            for key in (cls.name, *cls.aliases):
                k = key.lower()
                if k in self._by_name:
                    raise RegistryError(f"duplicate problem name {key!r}: registered by {origin[k]} and by {ep.value}")
                self._by_name[k] = cls
                origin[k] = ep.value
            self._canonical[cls.name] = cls

    def names(self) -> list[str]:
        """Canonical problem names, sorted."""
        return sorted(self._canonical)

    def problems(self) -> list[type[ProblemSpec]]:
        return [self._canonical[n] for n in self.names()]

    def get(self, name: str) -> type[ProblemSpec]:
        """Problem class for ``name`` or an alias; unknown names suggest the closest match."""
        try:
            return self._by_name[name.lower()]
        except KeyError:
            close = difflib.get_close_matches(name.lower(), list(self._by_name), n=1)
            hint = f"; did you mean {self._by_name[close[0]].name!r}?" if close else ""
            raise UsageError(f"unknown problem {name!r}{hint} (see: sciml list)") from None
