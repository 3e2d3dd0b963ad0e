"""Make ``RecurrentPPO("MlpDreamPolicy", env)`` work after ``import dream_rl`` without importing SB3 eagerly.

SB3 resolves a policy string through the algorithm's ``policy_aliases``; :mod:`dream_rl.sb3.policies`
adds dream-rl's names there when it is imported. ``import dream_rl`` must stay light (the DREAM library
and the CLI's ``--help`` need no SB3), so :func:`install` defers that import to the moment
``sb3_contrib`` itself is imported: at once if it already is, else through a ``sys.meta_path`` finder
that wraps ``sb3_contrib``'s loader and imports the policies right after the package has loaded.
This is the one import hook in dream-rl; it does nothing else.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

__all__ = ["install"]

_TRIGGER = "sb3_contrib"
_POLICIES = "dream_rl.sb3.policies"


class _LoaderThenRegister(importlib.abc.Loader):
    """Runs ``sb3_contrib``'s own loader, then imports dream-rl's policies (which register the aliases)."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        importlib.import_module(_POLICIES)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != _TRIGGER:
            return None
        sys.meta_path.remove(self)  # one shot: find the real spec without this finder
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _LoaderThenRegister(spec.loader)
        return spec


def install() -> None:
    """Register dream-rl's policy names with ``RecurrentPPO`` now or when ``sb3_contrib`` is imported."""
    if _TRIGGER in sys.modules:
        importlib.import_module(_POLICIES)
    elif not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
