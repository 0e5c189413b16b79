"""Lazy package attributes: the public names of a package are imported on first use, so `import ssdtrt` (or a
subpackage) imports neither torch nor a runtime and does no work."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from importlib import import_module
from typing import Any


def lazy_names(exports: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """{module: names it defines} → {name: module}."""
    return {name: module for module, names in exports.items() for name in names}


def lazy_getattr(package: str, names: Mapping[str, str], submodules: Collection[str] = ()) -> Callable[[str], Any]:
    """A module-level `__getattr__` for `package`: `names` maps an attribute to the module that defines it (see
    `lazy_names`), `submodules` are subpackage modules returned themselves; anything else is an AttributeError."""

    def __getattr__(name: str) -> Any:
        if name in submodules:
            return import_module(f"{package}.{name}")
        if name in names:
            return getattr(import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
