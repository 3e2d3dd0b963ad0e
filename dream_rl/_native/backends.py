"""The one vocabulary of sequence-kernel backends, shared by DREAM's kernels and the GRU's.

``"auto"``
    the fastest kernel that applies: ``"native"`` on CPU (float32/float64, built), else ``"torch"``
    (or the framework's own fused module where that is faster, e.g. cuDNN's GRU on CUDA).
``"native"``
    the C++ kernel (CPU, float32/float64), compiled on first use; an error where it cannot run.
``"torch"``
    the same algorithm in pure PyTorch ops: any device, no compiler.
``"reference"``
    the definition the kernels are tested against: :meth:`DREAMCell.step` in a loop for DREAM,
    ``nn.GRU`` itself for the GRU.

The process-wide default starts from the ``DREAM_RL_BACKEND`` environment variable (``"auto"`` when
unset or unknown) and is changed with :func:`set_backend`; a cell or torso may name its own.
``DREAM_RL_NO_EXTENSION=1`` disables every C++ kernel (``"auto"`` then never picks ``"native"``).
"""

from __future__ import annotations

import os

from dream_rl.errors import KernelError

__all__ = ["BACKENDS", "check_backend", "get_backend", "set_backend"]

BACKENDS: tuple[str, ...] = ("auto", "native", "torch", "reference")

_default = os.environ.get("DREAM_RL_BACKEND", "auto").strip().lower() or "auto"
if _default not in BACKENDS:  # a bad environment value must not break the import
    _default = "auto"


def check_backend(name: object, what: str = "sequence") -> str:
    """``name`` if it is one of :data:`BACKENDS`, else :class:`~dream_rl.errors.KernelError`."""
    if name not in BACKENDS:
        raise KernelError(f"unknown {what} backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return str(name)


def set_backend(name: str) -> None:
    """Set the process-wide default backend of every sequence kernel (DREAM and GRU)."""
    global _default
    _default = check_backend(name)


def get_backend() -> str:
    """The process-wide default backend (see :func:`set_backend`)."""
    return _default
