"""Lazy package exports (PEP 562): names that a package re-exports are imported on first use, not at import.

A package's ``__init__`` states which submodule holds each public name; ``import package`` then costs nothing,
and ``package.Name`` (or ``from package import Name``) imports only the submodule that defines ``Name``. Used
where a submodule pulls in a heavy library (torch-harmonics, xarray) that other names of the package do not need.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, tuple[str, ...]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package`` whose submodule ``exports[module]`` defines those names.

    Example: ``__getattr__, __dir__, __all__ = lazy_exports(__name__, {"fcn3": ("FCN3",)})`` in an ``__init__``.
    """
    where = {name: module for module, names in exports.items() for name in names}
    names = sorted(where)

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{where[name]}", package), name)
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return names

    return __getattr__, __dir__, names
