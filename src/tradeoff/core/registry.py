"""Registries by name, so a recipe can say ``nsga2``, ``ort``, ``latency`` or ``zdt1`` (timm-style).

Entries are registered by the module that defines them; ``modules`` lists where they live, so
a library is imported only when one of its entries is asked for (or when all names are listed).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def import_from(spec: str) -> Any:
    """``package.module:attribute`` to the object it names."""
    mod, _, attr = spec.strip().partition(":")
    if not mod or not attr:
        raise ValueError(f"{spec!r}: write package.module:function")
    try:
        module = importlib.import_module(mod)
    except ModuleNotFoundError as e:
        if e.name and (mod == e.name or mod.startswith(e.name + ".")):  # the module itself, not one it imports
            raise ValueError(f"No module named {e.name!r} for {spec!r} (searched the recipe's folder, the working "
                             f"directory and PYTHONPATH)") from None
        raise
    try:
        return getattr(module, attr)
    except AttributeError:
        public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise ValueError(f"{spec!r}: module {mod!r} has no {attr!r}"
                         + (f" (it has {', '.join(public[:12])})" if public else "")) from None


class Registry:
    def __init__(self, what: str, package: str, modules: dict[str, str] | list[str]):
        self.what = what                    # "workload", "runtime", ... for error messages
        self.package = package
        # name -> module, or modules to import before listing (when names are only known at import)
        self.modules = modules
        self.entries: dict[str, Callable[..., Any]] = {}

    def register(self, *names: str):
        def deco(obj):
            for n in names:
                self.entries[n] = obj
            return obj

        return deco

    def _import(self, module: str) -> None:
        importlib.import_module(f"{self.package}.{module}")

    def names(self) -> list[str]:
        if isinstance(self.modules, dict):
            return sorted(set(self.modules) | set(self.entries))
        for m in self.modules:
            self._import(m)
        return sorted(self.entries)

    def get(self, name: str, hint: str = "") -> Callable[..., Any]:
        if name not in self.entries:
            module = self.modules.get(name) if isinstance(self.modules, dict) else None
            if module:
                self._import(module)
            else:
                self.names()
        if name not in self.entries:
            raise ValueError(f"{self.what} {name!r} is not one of {', '.join(self.names())}{hint}")
        return self.entries[name]
