"""Names that moved to another module: one module ``__getattr__`` that still resolves them, with a warning."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["moved_names"]


def moved_names(module: str, names: Iterable[str], target: str) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` (PEP 562) for ``module``: each of ``names`` is taken from ``target``
    on first access, with a ``DeprecationWarning``. ``target`` is imported only then, so the old module
    need not import the new one (which may import the old)."""
    moved = frozenset(names)

    def __getattr__(name: str) -> Any:
        if name in moved:
            warnings.warn(f"{module}.{name} moved to {target}; import it from there", DeprecationWarning, stacklevel=2)
            return getattr(importlib.import_module(target), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
